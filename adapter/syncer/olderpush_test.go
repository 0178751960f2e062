package syncer

import (
	"bytes"
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/ipsfhir/ipsfhir/adapter/ehr"
	"github.com/ipsfhir/ipsfhir/adapter/store"
	"github.com/ipsfhir/ipsfhir/ips"
)

// planWrites runs before once, just before the first CarePlan update or
// transaction it passes on.
type planWrites struct {
	EHR
	before func()
	once   sync.Once
}

func (p *planWrites) Update(ctx context.Context, t, target string, body []byte, ifMatch string) (*ehr.Response, error) {
	if t == "CarePlan" {
		p.once.Do(p.before)
	}
	return p.EHR.Update(ctx, t, target, body, ifMatch)
}

func (p *planWrites) Transaction(ctx context.Context, bundle []byte, idempotent bool) (*ehr.Response, error) {
	p.once.Do(p.before)
	return p.EHR.Transaction(ctx, bundle, idempotent)
}

// TestAnOlderCopyIsNotWrittenOverANewerPush: two workers push the same
// client, the first one's lease having run out while it was slow (under
// load, with hung requests, one client's push can outlive the lease). The
// slow worker holds the client as it
// was; the other pushes the client's newer content first. The slow one's
// CarePlan write then meets 412, and what the EHR holds is the adapter's
// own content, the newer one: writing the older copy again with the
// version just read put the older support note back in the EHR, with
// nothing left in the outbox to correct it (seen in the fault suite's
// four-replica scenario: "stale: CarePlan plan.support.note").
//
// The other worker's push may also come before the slow one reads the
// ledger rows of the client's records: the rows then hold the newer write
// and its version, and the older copy's write would go with that version
// as If-Match, which the EHR takes ("before the ledger read").
func TestAnOlderCopyIsNotWrittenOverANewerPush(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, bundles string
		beforeLedger  bool
	}{
		{"one by one", "none", false},
		{"transaction", "transaction", false},
		{"before the ledger read", "none", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			testOlderCopy(t, tc.bundles, tc.beforeLedger)
		})
	}
}

// storeHook runs one function once, just before the first read of the
// kind set: beforeLedger before the first read of several ledger rows at
// once (a push's, before its writes), beforeClient before the first client
// read (the start of a push).
type storeHook struct {
	store.Store
	beforeLedger, beforeClient func()
	once                       sync.Once
}

func (h *storeHook) LedgerGetMany(ctx context.Context, conn string, keys []string) (map[string]store.LedgerEntry, error) {
	if h.beforeLedger != nil {
		h.once.Do(h.beforeLedger)
	}
	return h.Store.LedgerGetMany(ctx, conn, keys)
}

func (h *storeHook) GetClient(ctx context.Context, id string) (*ips.Client, store.Version, error) {
	if h.beforeClient != nil {
		h.once.Do(h.beforeClient)
	}
	return h.Store.GetClient(ctx, id)
}

func testOlderCopy(t *testing.T, bundles string, beforeLedger bool) {
	r := newRig(t, "")
	ctx := t.Context()
	r.conn.Plan.Bundles = bundles
	r.pushAll(t)
	var c *ips.Client
	for _, cc := range consenting(r.cl) {
		if len(cc.Supports) > 0 {
			c = cc
			break
		}
	}
	if c == nil {
		t.Fatal("no consenting client with a support")
	}
	setNote := func(note string) {
		t.Helper()
		st, v, err := r.store.GetClient(ctx, c.ID)
		if err != nil {
			t.Fatal(err)
		}
		st.Supports[0].Note = note
		if _, err := r.store.SaveClients(ctx, []store.Stored{{Client: st, Version: v}}, []string{"clinic"}); err != nil {
			t.Fatal(err)
		}
	}
	setNote("Older note written first")

	other := &Engine{Store: r.store, Owner: "other-worker", Lease: time.Minute, MaxAttempts: 3,
		Logger:      slog.New(slog.NewTextHandler(t.Output(), nil)),
		Connections: []*Connection{{Name: "clinic", Plan: r.conn.Plan, EHR: r.client, Mapping: r.conn.Mapping, ConsentDefault: true, Retry: r.conn.Retry}}}
	raced := false
	race := func() {
		// The slow worker is about to write the plan (or to read the
		// ledger): meanwhile the specialist edits the note again and the
		// other worker, finding the item's lease run out, pushes the
		// newer content.
		setNote("Newer note written second")
		s, err := other.PushOnce(ctx)
		if err != nil || s.Written == 0 {
			t.Errorf("the other worker's push: %+v %v; want the newer plan written", s, err)
		}
		raced = true
	}
	if beforeLedger {
		r.engine.Store = &storeHook{Store: r.store, beforeLedger: race}
	} else {
		r.conn.EHR = &planWrites{EHR: r.conn.EHR, before: race}
	}
	r.engine.Lease = time.Millisecond // the slow worker's lease runs out at once
	if _, err := r.engine.PushOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if !raced {
		t.Fatal("the slow worker wrote no CarePlan (or read no ledger rows); the test did not set up the race")
	}

	le, err := r.store.LedgerGet(ctx, "clinic", ledgerKey(r.conn.Mapping.PlanKey(c)))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := r.client.Read(ctx, "CarePlan", le.ResourceID)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(resp.Body, []byte("Newer note written second")) || bytes.Contains(resp.Body, []byte("Older note written first")) {
		t.Errorf("the EHR's CarePlan (version %s) holds the older copy's support note: the slow worker wrote over the newer push", resp.VersionID)
	}

	// Whatever is still queued converges on the newer content.
	r.engine.Lease = time.Minute
	makeDue(t, r)
	if s, err := r.engine.PushOnce(ctx); err != nil || s.Failed != 0 {
		t.Fatalf("next push: %+v %v", s, err)
	}
	if resp, err = r.client.Read(ctx, "CarePlan", le.ResourceID); err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(resp.Body, []byte("Newer note written second")) {
		t.Errorf("after the next push the EHR's CarePlan does not hold the newer support note")
	}
}

// TestABatchItemTakenOverIsNotPushed: a worker leases several clients'
// items at once and pushes them one after another, so when the first ones
// take long (a hung EHR) the lease of the last runs out before they start,
// and another worker may take them over: both then pushed the same client
// at once, the race TestAnOlderCopyIsNotWrittenOverANewerPush is about.
// Now an item whose lease has run half out is renewed before it starts,
// and one another worker took over is left to it. Both when the clients
// are pushed one by one and when their transactions are joined (joint.go).
func TestABatchItemTakenOverIsNotPushed(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		bundles   string
		takenOver bool
	}{{"none", true}, {"none", false}, {"transaction", true}, {"transaction", false}} {
		takenOver := tc.takenOver
		name := tc.bundles + ", taken over"
		if !takenOver {
			name = tc.bundles + ", not taken over"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			r := newRig(t, "")
			ctx := t.Context()
			r.conn.Plan.Bundles = tc.bundles
			r.pushAll(t)
			makeDue(t, r) // every client queued again
			queued := len(r.cl.Clients)
			var taken []store.OutboxItem
			r.engine.Store = &storeHook{Store: r.store, beforeClient: func() {
				if !takenOver {
					return
				}
				// The first push is slow: its batch's leases run out and
				// another worker takes the items over.
				time.Sleep(20 * time.Millisecond)
				items, err := r.store.Lease(ctx, "clinic", "other-worker", 100, time.Minute)
				if err != nil {
					t.Error(err)
				}
				taken = items
			}}
			r.engine.Lease = time.Millisecond // runs out before the second item starts
			s, err := r.engine.PushOnce(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if !takenOver {
				if s.Items != queued {
					t.Errorf("pushed %d items, want all %d (each renewed before it started)", s.Items, queued)
				}
				wantOutboxEmpty(t, r)
				return
			}
			if len(taken) != queued {
				t.Fatalf("the other worker took over %d items, want all %d; the test did not set up the race", len(taken), queued)
			}
			if s.Items != 1 {
				t.Errorf("the slow worker pushed %d items, want only the one it had started: the rest were another worker's", s.Items)
			}
		})
	}
}

func wantOutboxEmpty(t *testing.T, r *rig) {
	t.Helper()
	depth, err := r.store.OutboxDepth(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if depth["clinic"] != 0 {
		t.Errorf("outbox holds %d items after the push, want none", depth["clinic"])
	}
}
