package syncer

import (
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/ipsfhir/ipsfhir/adapter/ehr"
)

// TestRetryScheduleDoublesWithJitterAndHonoursRetryAfter: the delays double
// from Initial up to Max, spread by at most ±Jitter; an EHR's Retry-After
// lengthens a delay and never shortens it.
func TestRetryScheduleDoublesWithJitterAndHonoursRetryAfter(t *testing.T) {
	t.Parallel()
	r := RetrySchedule{Initial: 10 * time.Second, Max: time.Minute, Jitter: 0.2}
	for attempt, base := range map[int]time.Duration{1: 10 * time.Second, 2: 20 * time.Second, 3: 40 * time.Second, 4: time.Minute, 9: time.Minute} {
		lo, hi := time.Duration(float64(base)*0.8), time.Duration(float64(base)*1.2)
		seen := map[time.Duration]bool{}
		for range 200 {
			d := r.Delay(attempt, 0)
			if d < lo || d > hi {
				t.Fatalf("attempt %d: delay %s outside [%s, %s]", attempt, d, lo, hi)
			}
			seen[d] = true
		}
		if len(seen) < 2 {
			t.Errorf("attempt %d: no jitter (always %v)", attempt, seen)
		}
	}
	if d := r.Delay(1, 5*time.Minute); d != 5*time.Minute {
		t.Errorf("Retry-After 5m on a 10s delay gave %s, want 5m", d)
	}
	if d := r.Delay(4, time.Second); d < 48*time.Second {
		t.Errorf("a short Retry-After shortened the delay to %s", d)
	}
	if d := (RetrySchedule{}).Delay(1, 0); d < 24*time.Second || d > 36*time.Second {
		t.Errorf("default first delay %s, want 30s ±20%%", d)
	}
}

// TestFailureReasonsGroup: the reason stored on a failed item names the
// operation, a kind and the status, never the socket addresses a transport
// error quotes, so items that failed the same way read the same.
func TestFailureReasonsGroup(t *testing.T) {
	t.Parallel()
	reset := func(port int) error {
		return &ehr.Error{Op: "update Goal", Kind: ehr.KindTransient, Attempts: 3,
			Err: &net.OpError{Op: "read", Net: "tcp", Source: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port},
				Addr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8080}, Err: syscall.ECONNRESET}}
	}
	a, b := reasonOf(reset(34710)), reasonOf(reset(34711))
	if a != b || a != "update Goal: reset" {
		t.Errorf("reasons %q and %q; want both %q", a, b, "update Goal: reset")
	}
	got := reasonOf(&ehr.Error{Op: "create Goal", Kind: ehr.KindInvalid, Status: 422, IssueCodes: []string{"invalid"}})
	if got != "create Goal: invalid (HTTP 422) issues invalid" {
		t.Errorf("reason %q", got)
	}
}
