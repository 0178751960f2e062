package console

import (
	"math"
	"net"
	"net/http"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Failed sign-ins are throttled per client address: signInBurst failures
// at once, then one more every signInEvery. While an address is
// throttled, every sign-in from it is refused with 429, the right key too
// (so the answer says nothing of a guess). A key is 128 bits or more, so
// this is not what keeps it from being guessed; it keeps a script from
// hammering the form, the store's audit trail with it.
const (
	signInBurst = 10
	signInEvery = 6 * time.Second
	// maxThrottled bounds how many addresses are remembered; those whose
	// allowance has refilled are forgotten first.
	maxThrottled = 4096
)

// throttle counts failed sign-ins per address.
type throttle struct {
	mu  sync.Mutex
	m   map[string]*rate.Limiter
	now func() time.Time
}

func newThrottle(now func() time.Time) *throttle {
	return &throttle{m: map[string]*rate.Limiter{}, now: now}
}

// clientAddr is the address a request came from, without its port. Behind
// a reverse proxy it is the proxy's, so the allowance is shared by
// everyone signing in through it.
func clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// wait is how long addr must wait before it may try to sign in again; 0
// when it may now.
func (t *throttle) wait(addr string) time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	l := t.m[addr]
	if l == nil {
		return 0
	}
	tokens := l.TokensAt(t.now())
	if tokens >= 1 {
		return 0
	}
	return time.Duration(math.Ceil((1 - tokens) * float64(signInEvery)))
}

// failed counts a failed sign-in of addr.
func (t *throttle) failed(addr string) {
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	l := t.m[addr]
	if l == nil {
		if len(t.m) >= maxThrottled {
			t.forget(now)
		}
		l = rate.NewLimiter(rate.Every(signInEvery), signInBurst)
		t.m[addr] = l
	}
	l.AllowN(now, 1)
}

// forget drops the addresses whose allowance has refilled, and if that is
// not enough, all of them: a flood of addresses must not grow the map
// without bound (at worst it resets the count).
func (t *throttle) forget(now time.Time) {
	for a, l := range t.m {
		if l.TokensAt(now) >= signInBurst {
			delete(t.m, a)
		}
	}
	if len(t.m) >= maxThrottled {
		clear(t.m)
	}
}
