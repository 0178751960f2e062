package ehr

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// attemptTransport sits under retryablehttp, so it sees every attempt: it
// counts them, remembers how the last one ended (for the error kind), and
// logs each one without its URL, headers or body.
type attemptTransport struct {
	next http.RoundTripper
	c    *Client
}

func (t *attemptTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	cs := stateFrom(req.Context())
	if cs == nil {
		return t.next.RoundTrip(req)
	}
	if err := req.Context().Err(); err != nil {
		return nil, err // not sent
	}
	// The connection's limiter first: a slot, the end of any pause the
	// EHR asked for, a token of the rate. Only then does the attempt's
	// timeout start.
	sent, release, err := t.c.lim.acquire(req.Context())
	if err != nil {
		return nil, err // not sent
	}
	actx, cancel := context.WithTimeout(req.Context(), t.c.timeout)
	done := func() { cancel(); release() }
	cs.attempts++
	start := time.Now()
	resp, err := t.next.RoundTrip(req.WithContext(actx))
	if err != nil {
		if req.Context().Err() == nil && actx.Err() == context.DeadlineExceeded && !notSent(err) {
			err = attemptTimeout{}
		}
		done()
	} else {
		resp.Body = &releaseBody{ReadCloser: resp.Body, done: done}
		if throttle(resp) {
			d, _ := retryAfter(resp.Header, time.Now())
			t.c.lim.throttled(sent, d)
		} else {
			t.c.lim.succeeded()
		}
	}
	attrs := []slog.Attr{
		slog.String("connection", t.c.conn),
		slog.String("method", cs.method),
		slog.String("resource_type", cs.resourceType),
		slog.Int("attempt", cs.attempts),
	}
	if err != nil {
		cs.status, cs.transportErr = 0, err
		cs.ambiguous = !notSent(err) && !isCertError(err) && !isProtocolError(err)
		attrs = append(attrs, slog.String("cause", transportCause(err)))
	} else {
		cs.status, cs.transportErr = resp.StatusCode, nil
		cs.ambiguous = resp.StatusCode == http.StatusBadGateway || resp.StatusCode == http.StatusGatewayTimeout
		attrs = append(attrs, slog.Int("status", resp.StatusCode))
	}
	if cs.ambiguous {
		cs.unanswered = true
	}
	attrs = append(attrs, slog.Duration("duration", time.Since(start)))
	t.c.log.LogAttrs(req.Context(), slog.LevelDebug, "ehr attempt", attrs...)
	return resp, err
}

// checkRetry is retryablehttp's CheckRetry. It retries only what is safe to
// repeat and worth repeating:
//   - transport failures, for requests safe to repeat, or for any request
//     when the connection was never made (nothing was sent);
//   - 429 and 503, for any request: the server says it did not process it;
//   - any other 5xx but 501, for reads (GET, HEAD, a search via POST): a
//     read changes nothing, and one 500 from a busy EHR should cost a
//     backoff, not the call;
//   - 502 and 504, for writes safe to repeat only: a gateway answered and
//     the EHR behind it may have applied the request.
//
// A Retry-After beyond MaxRetryAfter, or beyond the context's deadline,
// stops the retries instead of being waited out. Either way the last 429
// or 503's Retry-After is kept for the Error.
//
// It also enforces MaxAttempts (retryablehttp's own bound is set out of
// reach): a 429 is free, not counted, while the call has been throttled
// for less than MaxThrottleWait.
func (c *Client) checkRetry(ctx context.Context, resp *http.Response, err error) (bool, error) {
	cs := stateFrom(ctx)
	if cs == nil {
		return false, ctx.Err()
	}
	// Only the final answer's Retry-After reaches the caller.
	cs.retryAfter = 0
	if err == nil && (resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable) {
		if d, ok := retryAfter(resp.Header, time.Now()); ok {
			cs.retryAfter = d
		}
	}
	if ctx.Err() != nil {
		return false, ctx.Err()
	}
	if err != nil {
		if isCertError(err) || isProtocolError(err) {
			return false, nil
		}
		return (cs.idempotent || notSent(err)) && c.attemptsLeft(cs), nil
	}
	switch code := resp.StatusCode; {
	case code == http.StatusTooManyRequests, code == http.StatusServiceUnavailable:
		d := cs.retryAfter
		if d > 0 {
			if d > c.maxRetryAfter {
				return false, nil
			}
			if deadline, ok := ctx.Deadline(); ok && time.Until(deadline) < d {
				return false, nil
			}
		}
		if code == http.StatusTooManyRequests {
			// Slowing down, not failing: the attempt is free while the
			// call has been throttled for less than MaxThrottleWait. A
			// 503 is an outage, however politely announced: it counts.
			now := time.Now()
			if cs.throttledSince.IsZero() {
				cs.throttledSince = now
			}
			if now.Sub(cs.throttledSince)+d <= c.maxThrottleWait {
				cs.free++
				return true, nil
			}
		}
		return c.attemptsLeft(cs), nil
	case cs.read && code >= 500 && code != http.StatusNotImplemented:
		// 501: the EHR does not do this at all (KindNotAllowed).
		return c.attemptsLeft(cs), nil
	case code == http.StatusBadGateway, code == http.StatusGatewayTimeout:
		return cs.idempotent && c.attemptsLeft(cs), nil
	}
	return false, nil
}

// attemptsLeft reports whether the call may make another attempt: the
// attempts that count (all but the free throttled ones) are fewer than
// MaxAttempts.
func (c *Client) attemptsLeft(cs *callState) bool {
	return cs.attempts-cs.free < c.maxAttempts
}

// throttle reports an answer that asks the client to slow down: a 429, or
// a 503 with Retry-After. A 503 without one is an outage.
func throttle(resp *http.Response) bool {
	switch resp.StatusCode {
	case http.StatusTooManyRequests:
		return true
	case http.StatusServiceUnavailable:
		return resp.Header.Get("Retry-After") != ""
	}
	return false
}

// attemptTimeout is the error of an attempt that ran out of
// Options.Timeout: a timeout (net.Error), not the caller's context ending.
type attemptTimeout struct{}

func (attemptTimeout) Error() string   { return "attempt timed out" }
func (attemptTimeout) Timeout() bool   { return true }
func (attemptTimeout) Temporary() bool { return true }

// Is makes an attempt timeout a context.DeadlineExceeded, as net/http's
// own client timeout is.
func (attemptTimeout) Is(target error) bool { return target == context.DeadlineExceeded }

// backoff is retryablehttp's Backoff: the server's Retry-After when it sent
// one (checkRetry has already refused those above the cap), otherwise
// capped exponential backoff with jitter. retryablehttp stops waiting when
// the request's context ends.
func (c *Client) backoff(lo, hi time.Duration, attempt int, resp *http.Response) time.Duration {
	if resp != nil {
		if d, ok := retryAfter(resp.Header, time.Now()); ok {
			return min(d, c.maxRetryAfter)
		}
	}
	d := hi
	if attempt < 30 && lo<<attempt < hi {
		d = lo << attempt
	}
	// "Equal jitter": half fixed, half random, so waits grow but replicas
	// that failed together do not come back together.
	half := d / 2
	return half + rand.N(half+1)
}

// retryAfter parses Retry-After: delay-seconds or an HTTP date.
func retryAfter(h http.Header, now time.Time) (time.Duration, bool) {
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0, false
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs < 0 {
			return 0, false
		}
		if secs > int64(24*time.Hour/time.Second) {
			secs = int64(24 * time.Hour / time.Second)
		}
		return time.Duration(secs) * time.Second, true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	if d := t.Sub(now); d > 0 {
		return d, true
	}
	return 0, true
}

// notSent reports whether err happened before a connection existed, so the
// server cannot have seen the request.
func notSent(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// isCertError reports a failed TLS verification: a configuration problem
// (missing CA, wrong host) that retrying cannot fix.
func isCertError(err error) bool {
	if err == nil {
		return false
	}
	var cv *tls.CertificateVerificationError
	var ua x509.UnknownAuthorityError
	var he x509.HostnameError
	var ci x509.CertificateInvalidError
	return errors.As(err, &cv) || errors.As(err, &ua) || errors.As(err, &he) || errors.As(err, &ci)
}

// isProtocolError reports a server that does not speak TLS where we expect
// it (an http:// server behind an https:// base URL).
func isProtocolError(err error) bool {
	var rh tls.RecordHeaderError
	return errors.As(err, &rh)
}

// transportCause is the cause token of a transport failure: knownCause's,
// or "connection" for one it does not recognise.
func transportCause(err error) string {
	if c := knownCause(err); c != "" {
		return c
	}
	return causeConnection
}

// knownCause classifies err as one of the transport cause tokens (see
// Error.Cause), or "" when it is none of them.
func knownCause(err error) string {
	var ne net.Error
	var dns *net.DNSError
	var alert tls.AlertError
	switch {
	case err == nil:
		return ""
	case errors.Is(err, context.Canceled):
		return causeCanceled
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return causeTimeout
	case isCertError(err), isProtocolError(err), errors.As(err, &alert):
		return causeTLS
	case errors.As(err, &dns):
		return causeDNS
	case errors.Is(err, syscall.ECONNREFUSED):
		return causeRefused
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE), errors.Is(err, syscall.ECONNABORTED):
		return causeReset
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return causeEOF
	case errors.As(err, &ne):
		return causeConnection
	}
	return ""
}
