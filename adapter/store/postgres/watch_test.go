package postgres_test

import (
	"strconv"
	"testing"
	"time"

	"github.com/ipsfhir/ipsfhir/adapter/store"
	"github.com/ipsfhir/ipsfhir/adapter/store/postgres"
	"github.com/ipsfhir/ipsfhir/adapter/store/storetest"
	"github.com/ipsfhir/ipsfhir/ips"
)

// TestWatchAcrossReplicas: a save through one Store wakes the push workers
// watching through another on the same database (replicas), through
// NOTIFY, and not those of a Store in another schema.
func TestWatchAcrossReplicas(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	dsn := storetest.PostgresDSN(t)
	a, b := open(t, dsn), open(t, dsn)
	defer a.Close()
	defer b.Close()
	other := open(t, storetest.PostgresDSN(t))
	defer other.Close()
	storetest.WatchReady(t, a)
	storetest.WatchReady(t, other)
	wa := a.WatchOutbox(ctx, "ehr")
	wo := other.WatchOutbox(ctx, "ehr")
	storetest.Drain(wa)
	storetest.Drain(wo)

	if _, err := b.SaveClients(ctx, []store.Stored{{Client: &ips.Client{ID: "c1"}}}, []string{"ehr"}); err != nil {
		t.Fatal(err)
	}
	storetest.WaitWake(t, wa, "a save through another Store")
	// The save through a was seen by a; by then the notification of b's
	// save reached other too, if it were going to.
	storetest.WatchReady(t, other)
	select {
	case <-wo:
		t.Error("a save in one schema woke a watcher of another")
	default:
	}
}

// TestWatchListenerReconnects: when the server ends the listener's
// connection, the Store connects again, wakes its watchers (what was sent
// meanwhile is lost) and hears notifications again.
func TestWatchListenerReconnects(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	dsn := storetest.PostgresDSN(t)
	a, b := open(t, dsn), open(t, dsn)
	defer a.Close()
	defer b.Close()
	storetest.WatchReady(t, a)
	w := a.WatchOutbox(ctx, "ehr")
	pid := postgres.ListenerPID(a)
	if pid == 0 {
		t.Fatal("no listener connection after a wake")
	}
	storetest.Drain(w)

	if err := storetest.PostgresExec(ctx, dsn, `SELECT pg_terminate_backend(`+strconv.FormatUint(uint64(pid), 10)+`, 10000)`); err != nil {
		t.Fatalf("terminate the listener's connection: %v", err)
	}
	storetest.WaitWake(t, w, "the listener's reconnection")
	deadline := time.Now().Add(30 * time.Second)
	for p := postgres.ListenerPID(a); p == 0 || p == pid; p = postgres.ListenerPID(a) {
		if time.Now().After(deadline) {
			t.Fatalf("listener pid %d after its connection %d was ended; want a new one", p, pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
	storetest.Drain(w)
	if _, err := b.SaveClients(ctx, []store.Stored{{Client: &ips.Client{ID: "c1"}}}, []string{"ehr"}); err != nil {
		t.Fatal(err)
	}
	storetest.WaitWake(t, w, "a save after the listener reconnected")
}
