package syncer

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ipsfhir/ipsfhir/adapter/ehr"
	"github.com/ipsfhir/ipsfhir/conformance/faultproxy"
	"github.com/ipsfhir/ipsfhir/conformance/peer"
	"github.com/ipsfhir/ipsfhir/ips"
	"github.com/ipsfhir/ipsfhir/ips/synth"
)

// inFlightEHR counts the calls in flight at once.
type inFlightEHR struct {
	EHR
	now, most atomic.Int32
}

func (e *inFlightEHR) enter() func() {
	n := e.now.Add(1)
	for {
		m := e.most.Load()
		if n <= m || e.most.CompareAndSwap(m, n) {
			break
		}
	}
	return func() { e.now.Add(-1) }
}

func (e *inFlightEHR) Read(ctx context.Context, t, id string) (*ehr.Response, error) {
	defer e.enter()()
	return e.EHR.Read(ctx, t, id)
}

func (e *inFlightEHR) Search(ctx context.Context, t string, q url.Values) ([]ehr.Entry, error) {
	defer e.enter()()
	return e.EHR.Search(ctx, t, q)
}

func (e *inFlightEHR) Create(ctx context.Context, t string, body []byte, ifNoneExist string) (*ehr.Response, error) {
	defer e.enter()()
	return e.EHR.Create(ctx, t, body, ifNoneExist)
}

func (e *inFlightEHR) Update(ctx context.Context, t, target string, body []byte, ifMatch string) (*ehr.Response, error) {
	defer e.enter()()
	return e.EHR.Update(ctx, t, target, body, ifMatch)
}

func (e *inFlightEHR) Transaction(ctx context.Context, bundle []byte, idempotent bool) (*ehr.Response, error) {
	defer e.enter()()
	return e.EHR.Transaction(ctx, bundle, idempotent)
}

// TestConnectionWorkers: a connection whose Workers is more than the
// schedule's is pushed by that many workers, so its EHR client's
// concurrency can be used; and the workers share the outbox (16 consenting
// clients, leased 16/4 at a time by each worker) rather than the first
// one leasing them all and the others none.
func TestConnectionWorkers(t *testing.T) {
	t.Parallel()
	r := newRigWith(t, peer.Options{Latency: 50 * time.Millisecond}, func(cl *ips.Caseload) {
		more := synth.Generate(rand.New(rand.NewPCG(7, 7)), 8)
		for i, c := range more.Clients {
			c.ID = fmt.Sprintf("w%03d", i)
			c.Patient.Value = "W" + c.Patient.Value
			c.Consent = &ips.Consent{EHR: new(true)}
			cl.Clients = append(cl.Clients, c)
		}
	})
	counted := &inFlightEHR{EHR: r.conn.EHR}
	r.conn.EHR = counted
	r.conn.Workers = 4
	r.enqueueAll(t)
	run := NewRunner(r.engine, Schedule{Workers: 1}, Connector{Name: "clinic", Connect: func(context.Context) (*Connection, error) { return r.conn, nil }})
	res := run.Once(t.Context(), 1)
	if len(res) != 1 || len(res[0].Failures) != 0 || res[0].Push.Failed != 0 || res[0].Push.Items == 0 {
		t.Fatalf("once: %+v", res)
	}
	if m := counted.most.Load(); m < 3 || m > 4 {
		t.Fatalf("at most %d EHR calls in flight at once; want the connection's 4 workers at work (3 or 4)", m)
	}
}

// TestThrottledPushSucceeds: an EHR that answers 429 with Retry-After slows
// the push down; it fails no item and dead-letters nothing, even with
// MaxAttempts 1 on both the client and the outbox.
func TestThrottledPushSucceeds(t *testing.T) {
	t.Parallel()
	r := newRig(t, "")
	p := r.proxiedWith(t, faultproxy.Options{Seed: 1, RetryAfter: time.Second}, ehr.Options{MaxAttempts: 1})
	r.engine.MaxAttempts = 1
	// Four 429s among the push's first eight requests (a request that
	// fires one rule is not counted by the later ones): the first, the
	// third, then the fifth and sixth, one request's retry answered 429
	// again. A lease's searches and transaction are joined, so a push of
	// the rig's clients makes few requests.
	var rules []*faultproxy.Rule
	for _, n := range []int{1, 2, 3, 3} {
		rules = append(rules, p.Nth(faultproxy.Match{}, n, faultproxy.Kind429))
	}
	r.enqueueAll(t)
	s, err := r.engine.PushParallel(t.Context(), 2)
	if err != nil || s.Failed != 0 || s.DeadLettered != 0 || s.Items == 0 {
		t.Fatalf("push under throttling: %+v %v", s, err)
	}
	for i, rule := range rules {
		select {
		case <-rule.Done():
		default:
			t.Fatalf("429 number %d was never sent: the test proves nothing (%+v)", i+1, p.Stats())
		}
	}
	if dl, err := r.store.DeadLetters(t.Context(), ""); err != nil || len(dl) != 0 {
		t.Fatalf("dead letters %+v %v, want none", dl, err)
	}
	if got := p.Stats().Faults[faultproxy.Kind429]; got != len(rules) {
		t.Fatalf("%d 429s answered, want %d", got, len(rules))
	}
}
