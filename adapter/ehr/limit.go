package ehr

import (
	"context"
	"io"
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

const (
	defaultMaxConcurrency  = 4
	defaultMaxThrottleWait = 10 * time.Minute
	// minRate is the floor of the rate a throttled connection slows down
	// to, and the least it recovers by per second.
	minRate = 0.5
	// recoverShare is the share of its target rate a throttled connection
	// recovers by per second: from half the target, 10 s to get back.
	recoverShare = 0.05
	// sendRing is how many recent send times the limiter keeps, to tell the
	// rate a connection without a configured rate was sending at when the
	// EHR throttled it.
	sendRing = 64
)

// limiter paces one connection's requests (every attempt, retries
// included): at most maxConcurrency in flight, at most the effective rate
// per second, and none at all while the EHR has asked the connection to
// wait. The effective rate is the configured one (0: none) until the EHR
// throttles (a 429, or a 503 with Retry-After); each throttle halves it
// (not below minRate), and answers that are not throttles raise it again
// additively (see succeeded) until it is back at the configured rate or,
// with none configured, at twice the rate the connection was sending at
// when first throttled, where the limit is lifted again.
type limiter struct {
	sem        chan struct{}
	configured float64 // requests per second; 0 = unlimited
	maxPause   time.Duration

	mu      sync.Mutex
	bucket  *rate.Limiter
	current float64 // effective rate; 0 = unlimited
	ceiling float64 // where recovery ends; 0 = the configured rate
	// pauseUntil holds every request of the connection back: the EHR's
	// Retry-After, for the whole connection rather than the one request.
	pauseUntil time.Time
	// decreased is when the rate was last halved: answers to requests sent
	// before it say nothing about the halved rate, so they do not halve it
	// again (four requests in flight throttled together halve it once).
	decreased time.Time
	// changed is when the rate last changed, for the recovery.
	changed time.Time
	sends   [sendRing]time.Time
	nsends  int
	// now is the clock of throttled and succeeded (tests set it).
	now func() time.Time
}

func newLimiter(concurrency int, perSecond float64, maxPause time.Duration) *limiter {
	l := &limiter{sem: make(chan struct{}, concurrency), configured: perSecond, current: perSecond, maxPause: maxPause, now: time.Now}
	l.bucket = rate.NewLimiter(limitOf(perSecond), 1)
	return l
}

func limitOf(perSecond float64) rate.Limit {
	if perSecond <= 0 {
		return rate.Inf
	}
	return rate.Limit(perSecond)
}

// acquire waits until a request may be sent: a free slot, the end of any
// pause, and a token of the rate. It returns when the request was sent (to
// be passed to throttled) and the function that frees the slot.
func (l *limiter) acquire(ctx context.Context) (sent time.Time, release func(), err error) {
	select {
	case l.sem <- struct{}{}:
	case <-ctx.Done():
		return time.Time{}, nil, ctx.Err()
	}
	var once sync.Once
	release = func() { once.Do(func() { <-l.sem }) }
	for {
		if err := l.waitPause(ctx); err != nil {
			release()
			return time.Time{}, nil, err
		}
		l.mu.Lock()
		bucket := l.bucket
		l.mu.Unlock()
		if err := bucket.Wait(ctx); err != nil {
			release()
			if ctx.Err() != nil {
				err = ctx.Err()
			}
			return time.Time{}, nil, err
		}
		l.mu.Lock()
		now := time.Now()
		if now.Before(l.pauseUntil) {
			// Throttled while this request waited for its token.
			l.mu.Unlock()
			continue
		}
		l.sends[l.nsends%sendRing] = now
		l.nsends++
		l.mu.Unlock()
		return now, release, nil
	}
}

func (l *limiter) waitPause(ctx context.Context) error {
	for {
		l.mu.Lock()
		d := time.Until(l.pauseUntil)
		l.mu.Unlock()
		if d <= 0 {
			return nil
		}
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// throttled records that the EHR throttled a request sent at sent, asking
// for retryAfter (0: it did not say): the whole connection pauses that long
// (at most maxPause), and the rate halves unless it was halved after the
// request was sent.
func (l *limiter) throttled(sent time.Time, retryAfter time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if retryAfter > 0 {
		if until := now.Add(min(retryAfter, l.maxPause)); until.After(l.pauseUntil) {
			l.pauseUntil = until
		}
	}
	if sent.Before(l.decreased) {
		return
	}
	l.decreased, l.changed = now, now
	from := l.current
	if from == 0 {
		from = l.observed()
		l.ceiling = 2 * from
	}
	l.setRate(max(from/2, minRate))
}

// succeeded records an answer that was not a throttle: the rate grows back
// additively, by recoverShare of its target per second since the last
// change (at least minRate per second), until it is back at the target.
func (l *limiter) succeeded() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.current == 0 || l.current == l.configured {
		return
	}
	target := l.configured
	if target == 0 {
		target = l.ceiling
	}
	now := l.now()
	next := l.current + now.Sub(l.changed).Seconds()*max(target*recoverShare, minRate)
	l.changed = now
	switch {
	case next < target:
	case l.configured > 0:
		next = l.configured
	default:
		next = 0 // lifted
	}
	l.setRate(next)
}

func (l *limiter) setRate(r float64) {
	l.current = r
	// SetLimit keeps the bucket's state, so a rate that rises does not
	// release a burst.
	l.bucket.SetLimit(limitOf(r))
}

// observed is the rate of the recent sends, per second (mu held); with too
// few to tell, a rate of one per second per slot.
func (l *limiter) observed() float64 {
	n := min(l.nsends, sendRing)
	if n >= 2 {
		last := l.sends[(l.nsends-1)%sendRing]
		first := l.sends[(l.nsends-n)%sendRing]
		if span := last.Sub(first).Seconds(); span > 0 {
			return float64(n-1) / span
		}
	}
	return float64(cap(l.sem))
}

// rate is the effective rate per second, 0 when unlimited.
func (l *limiter) rate() float64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	if math.IsInf(l.current, 0) {
		return 0
	}
	return l.current
}

// releaseBody frees the request's slot (and ends its attempt's context)
// when the response body is closed: the request is in flight until its
// answer has been read.
type releaseBody struct {
	io.ReadCloser
	done func()
}

func (b *releaseBody) Close() error {
	err := b.ReadCloser.Close()
	b.done()
	return err
}
