package storetest

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ipsfhir/ipsfhir/adapter/store"
	"github.com/ipsfhir/ipsfhir/ips"
)

func testOutboxCoalesces(t *testing.T, s *suite) {
	ctx := t.Context()
	st := s.openStore(t)
	c := minimalClient("c1")
	save(t, st, []string{"a", "b"}, c)
	wantDepth(t, st, map[string]int{"a": 1, "b": 1})
	v := resave(t, st, []string{"a", "b"}, c, 1)
	resave(t, st, []string{"a", "a"}, c, v)
	wantDepth(t, st, map[string]int{"a": 1, "b": 1})

	it := leaseOne(t, st, "a", "w1")
	want := store.OutboxItem{ID: it.ID, Connection: "a", ClientID: "c1", Attempts: 0, Owner: "w1", Generation: it.Generation}
	if diff := cmp.Diff(want, it); diff != "" {
		t.Errorf("leased item (-want +got):\n%s", diff)
	}
	if err := st.Complete(ctx, it); err != nil {
		t.Fatalf("Complete: %v", err)
	}
	wantDepth(t, st, map[string]int{"b": 1})

	// A save with no connections enqueues nothing.
	resave(t, st, nil, c, 3)
	wantDepth(t, st, map[string]int{"b": 1})
}

func testCompleteKeepsItemSavedDuringLease(t *testing.T, s *suite) {
	ctx := t.Context()
	st := s.openStore(t)
	c := minimalClient("c1")
	save(t, st, []string{"a"}, c)
	it := leaseOne(t, st, "a", "w1")
	c.Specialist = "changed during the push"
	resave(t, st, []string{"a"}, c, 1)
	if got := lease(t, st, "a", "w2", 10, time.Minute); len(got) != 0 {
		t.Fatalf("a save released the lease: w2 leased %+v", got)
	}
	if err := st.Complete(ctx, it); err != nil {
		t.Fatalf("Complete: %v", err)
	}
	wantDepth(t, st, map[string]int{"a": 1})

	it2 := leaseOne(t, st, "a", "w2")
	if it2.ClientID != "c1" || it2.Generation <= it.Generation || it2.Attempts != 0 {
		t.Errorf("item after a save during the lease: %+v; want client c1, generation above %d, no attempts", it2, it.Generation)
	}
	if err := st.Complete(ctx, it2); err != nil {
		t.Fatalf("Complete: %v", err)
	}
	wantDepth(t, st, map[string]int{})
	wantErrIs(t, "second Complete", st.Complete(ctx, it2), store.ErrNotFound)
}

// testLeasePerConnection: a client's items on different connections are
// leased, failed and completed independently, so that a slow or failing EHR
// does not hold up the client's push to the others; within one connection
// the item stays exclusive until its lease expires.
func testLeasePerConnection(t *testing.T, s *suite) {
	ctx := t.Context()
	st := s.openStore(t)
	save(t, st, []string{"a", "b"}, minimalClient("c1"))
	const d = 1500 * time.Millisecond
	start := time.Now()
	items := lease(t, st, "a", "w1", 10, d)
	if len(items) != 1 || items[0].ClientID != "c1" {
		t.Fatalf("Lease on a = %+v, want c1", items)
	}
	ia := items[0]
	ib := leaseOne(t, st, "b", "w2")
	if ib.ClientID != "c1" || ib.ID == ia.ID {
		t.Fatalf("leased %+v on b while c1 is leased on a, want c1's item on b", ib)
	}
	if other := lease(t, st, "a", "w3", 10, time.Minute); time.Since(start) < d && len(other) != 0 {
		t.Fatalf("w3 leased %+v on a while w1's lease runs", other)
	}

	// b's item fails and is retried while a's stays out.
	if dead, err := st.Fail(ctx, ib, "HTTP 503", time.Now().Add(-time.Second), 5); err != nil || dead {
		t.Fatalf("Fail on b while a is leased = %v, %v", dead, err)
	}
	ib = leaseOne(t, st, "b", "w2")
	if ib.ClientID != "c1" || ib.Attempts != 1 {
		t.Fatalf("b after a failure: %+v, want c1 with one attempt", ib)
	}

	// a's lease expires: another owner takes it over, and its first owner
	// has lost it; b's lease is untouched by either.
	var ia2 store.OutboxItem
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(50 * time.Millisecond) {
		if got := lease(t, st, "a", "w3", 10, time.Minute); len(got) > 0 {
			if len(got) != 1 || got[0].ID != ia.ID {
				t.Fatalf("after expiry w3 leased %+v, want item %d", got, ia.ID)
			}
			ia2 = got[0]
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("w1's lease of %v on a never expired", d)
		}
	}
	wantErrIs(t, "Complete by the owner of an expired, re-leased lease", st.Complete(ctx, ia), store.ErrConflict)
	if got := lease(t, st, "b", "w4", 10, time.Minute); len(got) != 0 {
		t.Fatalf("w4 leased %+v on b while w2's lease runs", got)
	}
	if err := st.Complete(ctx, ib); err != nil {
		t.Fatalf("Complete on b while a is leased: %v", err)
	}
	wantDepth(t, st, map[string]int{"a": 1})
	if err := st.Complete(ctx, ia2); err != nil {
		t.Fatalf("Complete on a: %v", err)
	}
	wantDepth(t, st, map[string]int{})
}

// testLeaseOrderAndLimit: oldest due first, at most n.
func testLeaseOrderAndLimit(t *testing.T, s *suite) {
	ctx := t.Context()
	st := s.openStore(t)
	for _, id := range []string{"c5", "c3", "c1", "c4", "c2"} {
		save(t, st, []string{"a"}, minimalClient(id))
	}
	var got []string
	for _, n := range []int{2, 10} {
		for _, it := range lease(t, st, "a", "w1", n, time.Minute) {
			got = append(got, it.ClientID)
		}
	}
	if diff := cmp.Diff([]string{"c5", "c3", "c1", "c4", "c2"}, got); diff != "" {
		t.Errorf("lease order (-want +got):\n%s", diff)
	}
	if got := lease(t, st, "nowhere", "w1", 10, time.Minute); len(got) != 0 {
		t.Errorf("lease on a connection with no items: %+v", got)
	}
	for _, bad := range []struct {
		conn, owner string
		n           int
		d           time.Duration
	}{{"a", "w1", 0, time.Minute}, {"a", "w1", 1, 0}, {"a", "", 1, time.Minute}, {"", "w1", 1, time.Minute}} {
		if _, err := st.Lease(ctx, bad.conn, bad.owner, bad.n, bad.d); err == nil {
			t.Errorf("Lease(%q, %q, %d, %v): no error", bad.conn, bad.owner, bad.n, bad.d)
		}
	}
}

func testLeaseExpiry(t *testing.T, s *suite) {
	ctx := t.Context()
	st := s.openStore(t)
	save(t, st, []string{"a"}, minimalClient("c1"))
	const d = 1500 * time.Millisecond
	start := time.Now()
	items := lease(t, st, "a", "w1", 1, d)
	if len(items) != 1 {
		t.Fatalf("leased %d items, want 1", len(items))
	}
	it := items[0]
	other := lease(t, st, "a", "w2", 1, time.Minute)
	if time.Since(start) < d && len(other) != 0 {
		t.Fatalf("w2 leased %+v while w1's lease runs", other)
	}
	time.Sleep(time.Until(start.Add(d + 200*time.Millisecond)))
	it2 := leaseOne(t, st, "a", "w2")
	if it2.ID != it.ID || it2.Owner != "w2" {
		t.Fatalf("after expiry w2 leased %+v, want item %d", it2, it.ID)
	}
	wantErrIs(t, "Complete by the owner of an expired, re-leased lease", st.Complete(ctx, it), store.ErrConflict)
	_, err := st.Fail(ctx, it, "too late", time.Now(), 3)
	wantErrIs(t, "Fail by the owner of an expired, re-leased lease", err, store.ErrConflict)
	if err := st.Complete(ctx, it2); err != nil {
		t.Fatalf("Complete by the new owner: %v", err)
	}
	wantDepth(t, st, map[string]int{})

	// A lease that expired but was not taken over can still be completed.
	save(t, st, []string{"a"}, minimalClient("c2"))
	items = lease(t, st, "a", "w3", 1, 50*time.Millisecond)
	if len(items) != 1 {
		t.Fatalf("leased %d items, want 1", len(items))
	}
	time.Sleep(100 * time.Millisecond)
	if err := st.Complete(ctx, items[0]); err != nil {
		t.Errorf("Complete after an expiry nobody acted on: %v", err)
	}
	wantDepth(t, st, map[string]int{})
}

// testLeaseRenewed: Renew keeps an item from being taken over for another
// lease, takes back a lease that ran out untaken, and refuses an item
// another owner took over or that is gone.
func testLeaseRenewed(t *testing.T, s *suite) {
	ctx := t.Context()
	st := s.openStore(t)
	save(t, st, []string{"a"}, minimalClient("c1"))
	items := lease(t, st, "a", "w1", 1, 50*time.Millisecond)
	if len(items) != 1 {
		t.Fatalf("leased %d items, want 1", len(items))
	}
	it := items[0]
	time.Sleep(100 * time.Millisecond) // ran out; nobody took it
	if err := st.Renew(ctx, it, time.Minute); err != nil {
		t.Fatalf("Renew of a lease that ran out untaken: %v", err)
	}
	if other := lease(t, st, "a", "w2", 1, time.Minute); len(other) != 0 {
		t.Fatalf("w2 leased %+v after w1 renewed its lease", other)
	}
	if err := st.Renew(ctx, it, 0); err == nil {
		t.Error("Renew for no time: no error")
	}

	// Taken over after it ran out: Renew refuses, the new owner keeps it.
	if err := st.Renew(ctx, it, 50*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	it2 := leaseOne(t, st, "a", "w2")
	if it2.ID != it.ID {
		t.Fatalf("w2 leased %+v, want item %d", it2, it.ID)
	}
	wantErrIs(t, "Renew by the owner of a lease taken over", st.Renew(ctx, it, time.Minute), store.ErrConflict)
	if err := st.Complete(ctx, it2); err != nil {
		t.Fatalf("Complete by the new owner: %v", err)
	}
	wantErrIs(t, "Renew of a completed item", st.Renew(ctx, it2, time.Minute), store.ErrNotFound)
	wantDepth(t, st, map[string]int{})
}

func testLeaseConcurrent(t *testing.T, s *suite) {
	LeaseFromReplicas(t, []store.Store{s.openStore(t)})
}

// LeaseFromReplicas has 8 workers, spread over stores (one database seen
// through several Store values, as adapter replicas see it), lease from 200
// items (50 clients on 4 connections) at once. It checks that each item is
// leased and completed exactly once and that a client never has two items
// out at the same time on one connection. The database must be empty.
func LeaseFromReplicas(t *testing.T, stores []store.Store) {
	ctx := t.Context()
	connections := []string{"a", "b", "c", "d"}
	const clients, workers = 50, 8
	const total = clients * 4
	var batch []store.Stored
	for i := range clients {
		batch = append(batch, store.Stored{Client: minimalClient(fmt.Sprintf("c%02d", i))})
	}
	if _, err := stores[0].SaveClients(ctx, batch, connections); err != nil {
		t.Fatalf("SaveClients: %v", err)
	}
	wantDepth(t, stores[len(stores)-1], map[string]int{"a": clients, "b": clients, "c": clients, "d": clients})

	var (
		mu        sync.Mutex
		out       = map[[2]string]string{} // (connection, client) → owner holding its item
		leased    = map[int64]int{}
		completed = map[int64]int{}
		done      atomic.Int64
		wg        sync.WaitGroup
	)
	deadline := time.Now().Add(2 * time.Minute)
	for w := range workers {
		st := stores[w%len(stores)]
		owner := fmt.Sprintf("store%d/w%d", w%len(stores), w)
		wg.Go(func() {
			for i := 0; done.Load() < total; i++ {
				if time.Now().After(deadline) {
					t.Errorf("%s: gave up with %d of %d items done", owner, done.Load(), total)
					return
				}
				items, err := st.Lease(ctx, connections[(w+i)%len(connections)], owner, 3, time.Minute)
				if err != nil {
					t.Errorf("%s: Lease: %v", owner, err)
					return
				}
				if len(items) == 0 {
					time.Sleep(time.Millisecond)
					continue
				}
				mu.Lock()
				for _, it := range items {
					k := [2]string{it.Connection, it.ClientID}
					if holder, ok := out[k]; ok {
						t.Errorf("%s leased item %d of client %s on %s, which %s holds an item of there", owner, it.ID, it.ClientID, it.Connection, holder)
					}
					out[k] = owner
					leased[it.ID]++
				}
				mu.Unlock()
				time.Sleep(200 * time.Microsecond) // the push
				for _, it := range items {
					// Give the client up before Complete: once Complete
					// commits, another worker may lease its next item.
					mu.Lock()
					delete(out, [2]string{it.Connection, it.ClientID})
					mu.Unlock()
					if err := st.Complete(ctx, it); err != nil {
						t.Errorf("%s: Complete(%d): %v", owner, it.ID, err)
						return
					}
					mu.Lock()
					completed[it.ID]++
					mu.Unlock()
					done.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if len(leased) != total || len(completed) != total {
		t.Errorf("%d items leased and %d completed, want %d", len(leased), len(completed), total)
	}
	for id, n := range leased {
		if n != 1 || completed[id] != 1 {
			t.Errorf("item %d leased %d times and completed %d times, want once", id, n, completed[id])
		}
	}
	for _, st := range stores {
		wantDepth(t, st, map[string]int{})
	}
}

func testFailRetryDeadLetterReplay(t *testing.T, s *suite) {
	ctx := t.Context()
	st := s.openStore(t)
	start := time.Now()
	save(t, st, []string{"a"}, minimalClient("c1"))
	var id int64
	for attempt := 1; attempt <= 3; attempt++ {
		it := leaseOne(t, st, "a", "w1")
		id = it.ID
		if it.Attempts != attempt-1 {
			t.Errorf("attempt %d: item has Attempts %d, want %d", attempt, it.Attempts, attempt-1)
		}
		dead, err := st.Fail(ctx, it, fmt.Sprintf("EHR answered 503 (attempt %d)", attempt), time.Now().Add(-time.Second), 3)
		if err != nil {
			t.Fatalf("Fail: %v", err)
		}
		if dead != (attempt == 3) {
			t.Errorf("attempt %d of 3: dead = %v", attempt, dead)
		}
	}
	wantDepth(t, st, map[string]int{})
	if got := lease(t, st, "a", "w1", 10, time.Minute); len(got) != 0 {
		t.Fatalf("leased a dead letter: %+v", got)
	}

	// A second dead letter, later, on another connection.
	save(t, st, []string{"b"}, minimalClient("c2"))
	if dead, err := st.Fail(ctx, leaseOne(t, st, "b", "w1"), "HTTP 400", time.Now(), 1); err != nil || !dead {
		t.Fatalf("Fail with maxAttempts 1 = %v, %v; want dead", dead, err)
	}

	dls, err := st.DeadLetters(ctx, "")
	if err != nil {
		t.Fatalf("DeadLetters: %v", err)
	}
	if len(dls) != 2 {
		t.Fatalf("DeadLetters(\"\") = %+v, want 2", dls)
	}
	want := store.DeadLetter{ID: id, Connection: "a", ClientID: "c1", Attempts: 3, Reason: "EHR answered 503 (attempt 3)", FailedAt: dls[0].FailedAt}
	if diff := cmp.Diff(want, dls[0]); diff != "" {
		t.Errorf("first dead letter (-want +got):\n%s", diff)
	}
	if dls[0].FailedAt.Before(start.Add(-time.Second)) || dls[0].FailedAt.After(time.Now().Add(time.Second)) {
		t.Errorf("FailedAt %v is not the time of the failure", dls[0].FailedAt)
	}
	if dls[1].ClientID != "c2" || dls[1].Connection != "b" || dls[1].Attempts != 1 || dls[1].FailedAt.Before(dls[0].FailedAt) {
		t.Errorf("second dead letter %+v; want c2 on b, 1 attempt, not before the first", dls[1])
	}
	for conn, n := range map[string]int{"a": 1, "b": 1, "c": 0} {
		got, err := st.DeadLetters(ctx, conn)
		if err != nil || len(got) != n {
			t.Errorf("DeadLetters(%q) = %d, %v; want %d", conn, len(got), err, n)
		}
	}

	if err := st.Replay(ctx, id); err != nil {
		t.Fatalf("Replay: %v", err)
	}
	wantErrIs(t, "second Replay", st.Replay(ctx, id), store.ErrNotFound)
	wantDepth(t, st, map[string]int{"a": 1})
	it := leaseOne(t, st, "a", "w1")
	if it.ClientID != "c1" || it.Attempts != 0 {
		t.Errorf("replayed item %+v; want c1 with no attempts", it)
	}
	if err := st.Complete(ctx, it); err != nil {
		t.Fatalf("Complete: %v", err)
	}

	// Replaying a dead letter of a client that has a pending item again
	// coalesces into it.
	resave(t, st, []string{"b"}, minimalClient("c2"), 1)
	if err := st.Replay(ctx, dls[1].ID); err != nil {
		t.Fatalf("Replay: %v", err)
	}
	wantDepth(t, st, map[string]int{"b": 1})
	if got, err := st.DeadLetters(ctx, ""); err != nil || len(got) != 0 {
		t.Errorf("DeadLetters after replays = %+v, %v; want none", got, err)
	}
}

// testFailBackoffAndSave: a failed item waits for retryAt, unless the client
// is saved again: new content is pushed at once, with its own attempts.
func testFailBackoffAndSave(t *testing.T, s *suite) {
	ctx := t.Context()
	st := s.openStore(t)
	c := minimalClient("c1")
	save(t, st, []string{"a"}, c)
	it := leaseOne(t, st, "a", "w1")
	if dead, err := st.Fail(ctx, it, "timeout", time.Now().Add(time.Hour), 5); err != nil || dead {
		t.Fatalf("Fail = %v, %v", dead, err)
	}
	if got := lease(t, st, "a", "w1", 10, time.Minute); len(got) != 0 {
		t.Fatalf("leased an item before its retry time: %+v", got)
	}
	wantDepth(t, st, map[string]int{"a": 1})
	resave(t, st, []string{"a"}, c, 1)
	it2 := leaseOne(t, st, "a", "w1")
	if it2.Attempts != 0 || it2.Generation <= it.Generation {
		t.Errorf("item after a save during backoff: %+v; want no attempts, generation above %d", it2, it.Generation)
	}
}

// testFailOfStaleGenerationNotCounted: a push that failed while the client
// was saved again was of old content; it does not count against the new.
func testFailOfStaleGenerationNotCounted(t *testing.T, s *suite) {
	ctx := t.Context()
	st := s.openStore(t)
	c := minimalClient("c1")
	save(t, st, []string{"a"}, c)
	it := leaseOne(t, st, "a", "w1")
	resave(t, st, []string{"a"}, c, 1)
	dead, err := st.Fail(ctx, it, "HTTP 422", time.Now().Add(-time.Second), 1)
	if err != nil || dead {
		t.Fatalf("Fail of a stale generation = %v, %v; want not dead", dead, err)
	}
	it2 := leaseOne(t, st, "a", "w1")
	if it2.Attempts != 0 {
		t.Errorf("Attempts = %d after a failure of stale content, want 0", it2.Attempts)
	}
	dead, err = st.Fail(ctx, it2, "HTTP 422", time.Now().Add(-time.Second), 1)
	if err != nil || !dead {
		t.Errorf("Fail of the current generation with maxAttempts 1 = %v, %v; want dead", dead, err)
	}
}

func testOutboxNotFound(t *testing.T, s *suite) {
	ctx := t.Context()
	st := s.openStore(t)
	ghost := store.OutboxItem{ID: 987654, Connection: "a", ClientID: "c1", Owner: "w1", Generation: 1}
	wantErrIs(t, "Complete of a missing item", st.Complete(ctx, ghost), store.ErrNotFound)
	_, err := st.Fail(ctx, ghost, "x", time.Now(), 3)
	wantErrIs(t, "Fail of a missing item", err, store.ErrNotFound)
	wantErrIs(t, "Replay of a missing dead letter", st.Replay(ctx, 987654), store.ErrNotFound)
	dls, err := st.DeadLetters(ctx, "")
	if err != nil || len(dls) != 0 {
		t.Errorf("DeadLetters of an empty store = %+v, %v", dls, err)
	}

	save(t, st, []string{"a"}, minimalClient("c1"))
	it := leaseOne(t, st, "a", "w1")
	if err := st.Complete(ctx, it); err != nil {
		t.Fatalf("Complete: %v", err)
	}
	_, err = st.Fail(ctx, it, "x", time.Now(), 3)
	wantErrIs(t, "Fail of a completed item", err, store.ErrNotFound)

	// An item that is pending but not leased by the caller is not its to complete.
	save(t, st, []string{"b"}, minimalClient("c2"))
	it = leaseOne(t, st, "b", "w1")
	notMine := it
	notMine.Owner = "w2"
	wantErrIs(t, "Complete by another owner", st.Complete(ctx, notMine), store.ErrConflict)
	if _, err := st.Fail(ctx, it, "x", time.Now(), 0); err == nil {
		t.Error("Fail with maxAttempts 0: no error")
	}
}

func testOutboxDepth(t *testing.T, s *suite) {
	ctx := t.Context()
	st := s.openStore(t)
	wantDepth(t, st, map[string]int{})
	save(t, st, []string{"a", "b"}, minimalClient("c1"), minimalClient("c2"))
	save(t, st, []string{"b"}, minimalClient("c3"))
	wantDepth(t, st, map[string]int{"a": 2, "b": 3})
	it := lease(t, st, "a", "w1", 1, time.Minute)[0]
	wantDepth(t, st, map[string]int{"a": 2, "b": 3}) // leased items are not done
	if err := st.Complete(ctx, it); err != nil {
		t.Fatalf("Complete: %v", err)
	}
	wantDepth(t, st, map[string]int{"a": 1, "b": 3})
}

func testOldestPending(t *testing.T, s *suite) {
	ctx := t.Context()
	st := s.openStore(t)
	got, err := st.OldestPending(ctx)
	if err != nil || len(got) != 0 {
		t.Fatalf("empty outbox: %v, %v; want nothing pending", got, err)
	}
	before := time.Now().Add(-time.Second) // store clocks (PostgreSQL's) may lag ours a little
	save(t, st, []string{"a", "b"}, minimalClient("c1"))
	first, err := st.OldestPending(ctx)
	if err != nil || len(first) != 2 || first["a"].Before(before) || first["a"].After(time.Now().Add(time.Second)) {
		t.Fatalf("after one save: %v, %v", first, err)
	}
	// Saving the client again coalesces into the same item, which keeps
	// its first enqueue time: the lag keeps growing for a client that
	// keeps changing but never gets delivered.
	time.Sleep(20 * time.Millisecond)
	c, v, _ := st.GetClient(ctx, "c1")
	if _, err := st.SaveClients(ctx, []store.Stored{{Client: c, Version: v}}, []string{"a", "b"}); err != nil {
		t.Fatal(err)
	}
	again, _ := st.OldestPending(ctx)
	if !again["a"].Equal(first["a"]) {
		t.Errorf("oldest pending moved from %v to %v on a re-save", first["a"], again["a"])
	}
	it := lease(t, st, "a", "w1", 1, time.Minute)[0]
	if err := st.Complete(ctx, it); err != nil {
		t.Fatal(err)
	}
	done, _ := st.OldestPending(ctx)
	if _, ok := done["a"]; ok || len(done) != 1 {
		t.Errorf("after delivering a's item: %v, want only b pending", done)
	}
}

// testSeedConnection: a connection enabled after clients were saved gets
// all of them once; one disabled and enabled again gets them all again (the
// saves in between queued nothing for it); EnqueueAll queues every client
// not already pending.
func testSeedConnection(t *testing.T, s *suite) {
	ctx := t.Context()
	st := s.openStore(t)
	save(t, st, nil, minimalClient("a"), minimalClient("b"), minimalClient("c"))

	seeded, err := st.SeedConnections(ctx, []string{"late", "early"})
	if err != nil || seeded["late"] != 3 || seeded["early"] != 3 {
		t.Fatalf("SeedConnections first time = %v, %v; want 3 each", seeded, err)
	}
	if seeded, err := st.SeedConnections(ctx, []string{"late", "early"}); err != nil || seeded["late"] != 0 || seeded["early"] != 0 {
		t.Errorf("SeedConnections again = %v, %v; want nothing queued", seeded, err)
	}
	items, err := st.Lease(ctx, "late", "w", 10, time.Minute)
	if err != nil || len(items) != 3 {
		t.Fatalf("Lease after seeding: %d items, %v; want 3", len(items), err)
	}
	for _, it := range items[:2] {
		if err := st.Complete(ctx, it); err != nil {
			t.Fatal(err)
		}
	}
	// c is still leased (pending); a and b are done.
	n, err := st.EnqueueAll(ctx, "late")
	if err != nil || n != 2 {
		t.Errorf("EnqueueAll with one item pending = %d, %v; want 2", n, err)
	}
	depth, err := st.OutboxDepth(ctx)
	if err != nil || depth["late"] != 3 {
		t.Errorf("outbox depth after EnqueueAll = %v, %v; want 3 on late", depth, err)
	}

	// "early" is disabled for a while (a start without it), then enabled
	// again: everything is queued again.
	drain := func(conn string) {
		t.Helper()
		items, err := st.Lease(ctx, conn, "w2", 10, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		for _, it := range items {
			if err := st.Complete(ctx, it); err != nil {
				t.Fatal(err)
			}
		}
	}
	// c is still leased on late: that does not hold up its item on early,
	// so draining early leaves nothing there.
	drain("early")
	wantDepth(t, st, map[string]int{"late": 3})
	if _, err := st.SeedConnections(ctx, []string{"late"}); err != nil {
		t.Fatal(err)
	}
	save(t, st, []string{"late"}, minimalClient("d")) // queued for late only
	seeded, err = st.SeedConnections(ctx, []string{"late", "early"})
	if err != nil || seeded["early"] != 4 || seeded["late"] != 0 {
		t.Errorf("re-enabling early = %v, %v; want all 4 clients queued for it and nothing new for late", seeded, err)
	}
	if _, err := st.SeedConnections(ctx, []string{""}); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("SeedConnections with an empty name = %v, want ErrInvalid", err)
	}
	if _, err := st.EnqueueAll(ctx, ""); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("EnqueueAll(\"\") = %v, want ErrInvalid", err)
	}
}

// testFailureReasons: failing items and dead letters grouped by connection
// and reason, largest group first, ties in byte order; items whose client
// was saved since their failure, and items that never failed, do not count.
func testFailureReasons(t *testing.T, s *suite) {
	ctx := t.Context()
	st := s.openStore(t)
	reasons := func(connection string) []store.ReasonCount {
		t.Helper()
		got, err := st.FailureReasons(ctx, connection)
		if err != nil {
			t.Fatalf("FailureReasons(%q): %v", connection, err)
		}
		return got
	}
	if got := reasons(""); len(got) != 0 {
		t.Errorf("FailureReasons of an empty store = %+v", got)
	}

	ids := []string{"c1", "c2", "c3", "c4", "c5"}
	var clients []*ips.Client
	for _, id := range ids {
		clients = append(clients, minimalClient(id))
	}
	save(t, st, []string{"a", "b"}, clients...)
	type failure struct {
		reason string
		max    int
	}
	// Per connection and client: how its item fails (max 1: it dies), or
	// nothing (it is completed).
	plan := map[string]map[string]failure{
		"a": {"c1": {"HTTP 503", 5}, "c2": {"HTTP 503", 5}, "c3": {"HTTP 400", 1}, "c4": {"HTTP 503", 5}, "c5": {"HTTP 400", 5}},
		"b": {"c1": {"HTTP 503", 1}, "c2": {"connect timeout", 5}},
	}
	for _, conn := range []string{"a", "b"} {
		items := lease(t, st, conn, "w1", 10, time.Minute)
		if len(items) != len(ids) {
			t.Fatalf("leased %d items on %s, want %d", len(items), conn, len(ids))
		}
		for _, it := range items {
			f, ok := plan[conn][it.ClientID]
			if !ok {
				if err := st.Complete(ctx, it); err != nil {
					t.Fatal(err)
				}
				continue
			}
			dead, err := st.Fail(ctx, it, f.reason, time.Now().Add(time.Hour), f.max)
			if err != nil || dead != (f.max == 1) {
				t.Fatalf("Fail(%s on %s) = %v, %v", it.ClientID, conn, dead, err)
			}
		}
	}
	// c4 is saved again: its new content has not failed yet.
	resave(t, st, []string{"a"}, clients[3], 1)

	all := []store.ReasonCount{
		{Connection: "a", Reason: "HTTP 400", Pending: 1, Dead: 1},
		{Connection: "a", Reason: "HTTP 503", Pending: 2},
		{Connection: "b", Reason: "HTTP 503", Dead: 1},
		{Connection: "b", Reason: "connect timeout", Pending: 1},
	}
	if diff := cmp.Diff(all, reasons("")); diff != "" {
		t.Errorf("FailureReasons(\"\") (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(all[2:], reasons("b")); diff != "" {
		t.Errorf("FailureReasons(\"b\") (-want +got):\n%s", diff)
	}
	if got := reasons("nowhere"); len(got) != 0 {
		t.Errorf("FailureReasons(\"nowhere\") = %+v", got)
	}

	// A replayed dead letter is pending again with no failures counted.
	dls, err := st.DeadLetters(ctx, "b")
	if err != nil || len(dls) != 1 {
		t.Fatalf("DeadLetters(\"b\") = %+v, %v", dls, err)
	}
	if err := st.Replay(ctx, dls[0].ID); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(all[3:], reasons("b")); diff != "" {
		t.Errorf("FailureReasons(\"b\") after a replay (-want +got):\n%s", diff)
	}
}

// testEnqueue: Enqueue queues one client for one connection without a new
// client version; during a lease it keeps the item for another push, as a
// save does; a missing client is ignored.
func testEnqueue(t *testing.T, s *suite) {
	ctx := t.Context()
	st := s.openStore(t)
	c := minimalClient("c1")
	save(t, st, nil, c)
	wantDepth(t, st, map[string]int{})
	if err := st.Enqueue(ctx, "a", "c1"); err != nil {
		t.Fatalf("Enqueue: %v", err)
	}
	wantDepth(t, st, map[string]int{"a": 1})
	if _, v, err := st.GetClient(ctx, "c1"); err != nil || v != 1 {
		t.Errorf("client version %d after Enqueue (%v), want 1", v, err)
	}
	it := leaseOne(t, st, "a", "w1")
	if err := st.Enqueue(ctx, "a", "c1"); err != nil {
		t.Fatalf("Enqueue during the lease: %v", err)
	}
	if err := st.Complete(ctx, it); err != nil {
		t.Fatalf("Complete: %v", err)
	}
	wantDepth(t, st, map[string]int{"a": 1})
	if err := st.Enqueue(ctx, "a", "no-such-client"); err != nil {
		t.Errorf("Enqueue of a missing client: %v", err)
	}
	wantDepth(t, st, map[string]int{"a": 1})
}
