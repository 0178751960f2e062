package storetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/ipsfhir/ipsfhir/adapter/store"
)

// wakeWait bounds how long a test waits for a wake that must come. It is a
// deadline against hanging, not a latency asserted: BenchmarkChangeLatency
// in adapter/syncer measures that.
const wakeWait = 30 * time.Second

// WaitWake fails t unless ch is woken within a generous deadline; what
// names what should have woken it.
func WaitWake(t testing.TB, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(wakeWait):
		t.Fatalf("%s did not wake the outbox watcher", what)
	}
}

// Drain empties ch of a pending wake.
func Drain(ch <-chan struct{}) {
	select {
	case <-ch:
	default:
	}
}

// WatchReady returns once st's watching works: a save on a connection of
// its own has woken a watcher. A store may wake every watcher when it
// starts listening (PostgreSQL does); after this, such a start-up wake
// cannot be mistaken for the wake a test waits for.
func WatchReady(t testing.TB, st store.Store) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	ch := st.WatchOutbox(ctx, "watch-ready")
	var v store.Version
	if _, got, err := st.GetClient(t.Context(), "watch-ready"); err == nil {
		v = got
	} else if !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("GetClient: %v", err)
	}
	if _, err := st.SaveClients(t.Context(), []store.Stored{{Client: minimalClient("watch-ready"), Version: v}}, []string{"watch-ready"}); err != nil {
		t.Fatalf("SaveClients: %v", err)
	}
	WaitWake(t, ch, "a save")
}

// testWatchOutbox: every way an item is enqueued or made due wakes the
// watchers of its connection.
func testWatchOutbox(t *testing.T, s *suite) {
	ctx := t.Context()
	st := s.openStore(t)
	WatchReady(t, st)
	a := st.WatchOutbox(ctx, "a")
	a2 := st.WatchOutbox(ctx, "a")
	b := st.WatchOutbox(ctx, "b")
	Drain(a)
	Drain(a2)
	Drain(b)

	save(t, st, []string{"a"}, minimalClient("c1"))
	WaitWake(t, a, "SaveClients")
	WaitWake(t, a2, "SaveClients (second watcher)")

	// Many saves before the watcher reads: wakes coalesce, and the
	// channel still holds one.
	for i := range 3 {
		resave(t, st, []string{"a"}, minimalClient("c1"), store.Version(i+1))
	}
	WaitWake(t, a, "a resave")

	it := leaseOne(t, st, "a", "w")
	if err := st.Complete(ctx, it); err != nil {
		t.Fatal(err)
	}
	Drain(a)
	if err := st.Enqueue(ctx, "a", "c1"); err != nil {
		t.Fatal(err)
	}
	WaitWake(t, a, "Enqueue")

	it = leaseOne(t, st, "a", "w")
	if dead, err := st.Fail(ctx, it, "HTTP 400", time.Now(), 1); err != nil || !dead {
		t.Fatalf("Fail = %v, %v; want a dead letter", dead, err)
	}
	Drain(a)
	if err := st.Replay(ctx, it.ID); err != nil {
		t.Fatal(err)
	}
	WaitWake(t, a, "Replay")

	if _, err := st.EnqueueAll(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	WaitWake(t, b, "EnqueueAll")

	c := st.WatchOutbox(ctx, "c")
	if _, err := st.SeedConnections(ctx, []string{"a", "b", "c"}); err != nil {
		t.Fatal(err)
	}
	WaitWake(t, c, "SeedConnections")

	// A watch whose context ended is not woken (and is let go).
	ended, cancel := context.WithCancel(ctx)
	d := st.WatchOutbox(ended, "d")
	cancel()
	d2 := st.WatchOutbox(ctx, "d")
	save(t, st, []string{"d"}, minimalClient("c2"))
	WaitWake(t, d2, "a save on d")
	select {
	case <-d:
		// Possible only if the wake raced the cancellation; the next
		// save must not wake it again.
	default:
	}
	Drain(d)
	resave(t, st, []string{"d"}, minimalClient("c2"), 1)
	WaitWake(t, d2, "a second save on d")
	select {
	case <-d:
		t.Error("a watch whose context ended was woken")
	default:
	}
}
