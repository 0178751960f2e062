package syncer

import (
	"math/rand/v2"
	"time"
)

// RetrySchedule spaces the retries of a failing outbox item on one
// connection: Initial after the first failure, doubling up to Max, each
// delay then spread by up to ±Jitter (a fraction: 0.2 is ±20%) so that
// items that failed together do not come back together. An EHR's
// Retry-After can lengthen a delay, never shorten it.
type RetrySchedule struct {
	Initial time.Duration
	Max     time.Duration
	Jitter  float64
}

// DefaultRetry is the schedule of a connection that configures none:
// 30 s, 1 min, 2 min … up to 1 h, ±20%.
var DefaultRetry = RetrySchedule{Initial: 30 * time.Second, Max: time.Hour, Jitter: 0.2}

func (r RetrySchedule) orDefault() RetrySchedule {
	if r.Initial <= 0 {
		r.Initial = DefaultRetry.Initial
	}
	if r.Max <= 0 {
		r.Max = max(DefaultRetry.Max, r.Initial)
	}
	if r.Jitter < 0 || r.Jitter >= 1 {
		r.Jitter = DefaultRetry.Jitter
	}
	return r
}

// Delay is how long to wait before attempt+1, after attempt failures (1 for
// the first failure), given the EHR's Retry-After (0 when it sent none).
func (r RetrySchedule) Delay(attempt int, retryAfter time.Duration) time.Duration {
	r = r.orDefault()
	d := r.Initial
	for i := 1; i < attempt && d < r.Max; i++ {
		d *= 2
	}
	d = min(d, r.Max)
	if r.Jitter > 0 {
		spread := float64(d) * r.Jitter
		d += time.Duration(spread * (2*rand.Float64() - 1))
	}
	return max(d, retryAfter)
}
