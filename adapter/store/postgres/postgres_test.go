package postgres_test

import (
	"context"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ipsfhir/ipsfhir/adapter/store"
	"github.com/ipsfhir/ipsfhir/adapter/store/postgres"
	"github.com/ipsfhir/ipsfhir/adapter/store/storetest"
	"github.com/ipsfhir/ipsfhir/ips"
)

func open(t *testing.T, dsn string) *postgres.Store {
	t.Helper()
	s, err := postgres.Open(t.Context(), dsn)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s
}

func TestStore(t *testing.T) {
	storetest.PostgresServer(t)
	var (
		mu   sync.Mutex
		dsns = map[*testing.T]string{} // each test's schema
	)
	storetest.Run(t, func(t *testing.T) store.Store {
		t.Helper()
		mu.Lock()
		dsn, ok := dsns[t]
		if !ok {
			dsn = storetest.PostgresDSN(t)
			dsns[t] = dsn
		}
		mu.Unlock()
		return open(t, dsn)
	})
}

// TestReplicas opens one database through four pools at once, as replicas
// starting together would (the migration runs once, under the advisory
// lock), then has workers on two of them lease from one outbox.
func TestReplicas(t *testing.T) {
	dsn := storetest.PostgresDSN(t)
	stores := make([]*postgres.Store, 4)
	errs := make([]error, len(stores))
	var wg sync.WaitGroup
	for i := range stores {
		wg.Go(func() { stores[i], errs[i] = postgres.Open(t.Context(), dsn) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("Open %d of %d at once: %v", i+1, len(stores), err)
		}
		t.Cleanup(func() { stores[i].Close() })
	}

	conn, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var applied, first int
	if err := conn.QueryRow(t.Context(), `SELECT count(*), min(version) FROM schema_migrations`).Scan(&applied, &first); err != nil {
		t.Fatalf("read schema_migrations: %v", err)
	}
	entries, err := os.ReadDir("migrations")
	if err != nil {
		t.Fatal(err)
	}
	if applied != len(entries) || first != 1 {
		t.Errorf("schema_migrations has %d rows from version %d, want %d from 1", applied, first, len(entries))
	}

	storetest.LeaseFromReplicas(t, []store.Store{stores[0], stores[1]})
}

// TestLeaseSkipsLockedRows holds a client's lease row locked in an open
// transaction, as a replica in the middle of leasing would, and checks that
// Lease passes over it at once rather than waiting.
func TestLeaseSkipsLockedRows(t *testing.T) {
	ctx := t.Context()
	dsn := storetest.PostgresDSN(t)
	s := open(t, dsn)
	defer s.Close()
	var batch []store.Stored
	for _, id := range []string{"c1", "c2"} {
		batch = append(batch, store.Stored{Client: &ips.Client{ID: id}})
	}
	if _, err := s.SaveClients(ctx, batch, []string{"a"}); err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(context.Background())
	if _, err := tx.Exec(ctx, `SELECT 1 FROM client_leases WHERE client_id = 'c1' FOR UPDATE`); err != nil {
		t.Fatal(err)
	}
	lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	items, err := s.Lease(lctx, "a", "w1", 10, time.Minute)
	if err != nil {
		t.Fatalf("Lease beside a locked row: %v", err)
	}
	if len(items) != 1 || items[0].ClientID != "c2" {
		t.Errorf("Lease beside a locked row = %+v, want only c2", items)
	}
}

func TestOpenRejectsBadDSN(t *testing.T) {
	_, err := postgres.Open(t.Context(), "postgres://user:s3cret@127.0.0.1:1/x?sslmode=bogus")
	if err == nil {
		t.Fatal("Open with a bad DSN: no error")
	}
	if strings.Contains(err.Error(), "s3cret") {
		t.Errorf("error %q shows the password", err)
	}
}
