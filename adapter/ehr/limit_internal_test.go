package ehr

import (
	"testing"
	"time"
)

// TestLimiterAIMD: a throttle halves the rate once for the requests that
// were in flight together, pauses the connection for the Retry-After (at
// most maxPause), and the rate grows back additively to the configured
// one; with none configured, the limit is lifted again.
func TestLimiterAIMD(t *testing.T) {
	t.Parallel()
	clock := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	l := newLimiter(4, 10, time.Minute)
	l.now = func() time.Time { return clock }
	sent := clock
	clock = clock.Add(time.Millisecond)
	l.throttled(sent, 2*time.Second)
	if r := l.rate(); r != 5 {
		t.Fatalf("rate %v after a throttle, want 5 (half of 10)", r)
	}
	if want := clock.Add(2 * time.Second); !l.pauseUntil.Equal(want) {
		t.Fatalf("paused until %v, want %v", l.pauseUntil, want)
	}
	// Another answer to a request sent before the halving: no second one.
	l.throttled(sent, time.Hour)
	if r := l.rate(); r != 5 {
		t.Fatalf("rate %v after a second throttle of the same burst, want 5", r)
	}
	if want := clock.Add(time.Minute); !l.pauseUntil.Equal(want) {
		t.Fatalf("an hour's Retry-After paused until %v, want %v (maxPause)", l.pauseUntil, want)
	}
	clock = clock.Add(time.Second)
	l.succeeded()
	if r := l.rate(); r != 5.5 {
		t.Fatalf("rate %v a second after, want 5.5 (5%% of 10 per second)", r)
	}
	// A request sent after the halving, throttled: halved again, floored.
	for range 10 {
		sent = clock
		clock = clock.Add(time.Millisecond)
		l.throttled(sent, 0)
	}
	if r := l.rate(); r != minRate {
		t.Fatalf("rate %v after many throttles, want the floor %v", r, minRate)
	}
	clock = clock.Add(time.Hour)
	l.succeeded()
	if r := l.rate(); r != 10 {
		t.Fatalf("rate %v long after, want the configured 10", r)
	}

	u := newLimiter(4, 0, time.Minute)
	u.now = func() time.Time { return clock }
	if r := u.rate(); r != 0 {
		t.Fatalf("unlimited rate %v, want 0", r)
	}
	u.throttled(clock.Add(-time.Millisecond), 0)
	if r := u.rate(); r <= 0 {
		t.Fatalf("rate %v after a throttle of an unlimited connection, want a limit", r)
	}
	clock = clock.Add(time.Hour)
	u.succeeded()
	if r := u.rate(); r != 0 {
		t.Fatalf("rate %v long after, want 0 (lifted)", r)
	}
}
