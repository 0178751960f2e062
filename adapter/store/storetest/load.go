package storetest

import (
	"testing"
	"time"

	"github.com/ipsfhir/ipsfhir/adapter/store"
)

// testInitialLoad: a connection's seeded caseload is its initial load;
// pushed items and dead letters count as done, later saves of other
// clients do not join it, and it finishes when the last of its items
// leaves the outbox. Enabling the connection again starts a new load.
func testInitialLoad(t *testing.T, s *suite) {
	ctx := t.Context()
	st := s.openStore(t)
	progress := func(conn string) store.LoadProgress {
		t.Helper()
		p, err := st.LoadProgress(ctx, conn)
		if err != nil {
			t.Fatalf("LoadProgress(%s): %v", conn, err)
		}
		return p
	}
	before := time.Now().Add(-time.Second)
	save(t, st, nil, minimalClient("c1"), minimalClient("c2"), minimalClient("c3"))
	wantErrIs(t, "LoadProgress before seeding", func() error { _, err := st.LoadProgress(ctx, "a"); return err }(), store.ErrNotFound)
	if _, err := st.SeedConnections(ctx, []string{"a"}); err != nil {
		t.Fatal(err)
	}
	p := progress("a")
	if p.Total != 3 || p.Done != 0 || !p.Finished.IsZero() || p.Estimated || p.Rate != 0 {
		t.Errorf("just seeded: %+v; want 0 of 3, no estimate", p)
	}
	if p.Started.Before(before) || p.Started.After(time.Now().Add(time.Second)) {
		t.Errorf("Started %v is not when the connection was seeded", p.Started)
	}
	// A client created after the seeding is not part of the load.
	save(t, st, []string{"a"}, minimalClient("c4"))
	if p := progress("a"); p.Total != 3 || p.Done != 0 {
		t.Errorf("after a new client: %+v; want 0 of 3", p)
	}

	items := map[string]store.OutboxItem{}
	for _, it := range lease(t, st, "a", "w", 10, time.Minute) {
		items[it.ClientID] = it
	}
	if len(items) != 4 {
		t.Fatalf("leased %d items, want 4", len(items))
	}
	if err := st.Complete(ctx, items["c1"]); err != nil {
		t.Fatal(err)
	}
	if dead, err := st.Fail(ctx, items["c2"], "HTTP 400", time.Now(), 1); err != nil || !dead {
		t.Fatalf("Fail = %v, %v; want a dead letter", dead, err)
	}
	if err := st.Complete(ctx, items["c4"]); err != nil {
		t.Fatal(err)
	}
	// c3 saved again while pending stays part of the load.
	resave(t, st, []string{"a"}, minimalClient("c3"), 1)
	p = progress("a")
	if p.Total != 3 || p.Done != 2 || !p.Finished.IsZero() {
		t.Errorf("one pushed, one dead, one pending: %+v; want 2 of 3 done (a dead letter is done)", p)
	}
	if !p.Estimated || p.Rate <= 0 || p.Remaining <= 0 {
		t.Errorf("two of three done: %+v; want a rate and an estimate of the time left", p)
	}

	// c3's lease predates its save: completing it keeps the item.
	if err := st.Complete(ctx, items["c3"]); err != nil {
		t.Fatal(err)
	}
	if p := progress("a"); p.Done != 2 || !p.Finished.IsZero() {
		t.Errorf("after completing stale content: %+v; want still 2 of 3", p)
	}
	if err := st.Complete(ctx, leaseOne(t, st, "a", "w")); err != nil {
		t.Fatal(err)
	}
	p = progress("a")
	if p.Total != 3 || p.Done != 3 || p.Finished.IsZero() || p.Finished.Before(p.Started) || p.Remaining != 0 || !p.Estimated {
		t.Errorf("all pushed: %+v; want 3 of 3, finished, nothing left", p)
	}
	finished := p.Finished
	// Work after the load leaves it as it was.
	resave(t, st, []string{"a"}, minimalClient("c1"), 1)
	if err := st.Complete(ctx, leaseOne(t, st, "a", "w")); err != nil {
		t.Fatal(err)
	}
	if p := progress("a"); p.Done != 3 || !p.Finished.Equal(finished) {
		t.Errorf("after the load: %+v; want it finished at %v", p, finished)
	}

	// Disabled, then enabled again: the whole caseload is a new load.
	if _, err := st.SeedConnections(ctx, nil); err != nil {
		t.Fatal(err)
	}
	wantErrIs(t, "LoadProgress of a disabled connection", func() error { _, err := st.LoadProgress(ctx, "a"); return err }(), store.ErrNotFound)
	if _, err := st.SeedConnections(ctx, []string{"a"}); err != nil {
		t.Fatal(err)
	}
	if p := progress("a"); p.Total != 4 || p.Done != 0 || !p.Finished.IsZero() {
		t.Errorf("enabled again: %+v; want 0 of 4", p)
	}
}
