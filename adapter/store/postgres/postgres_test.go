package postgres_test

import (
	"context"
	"errors"
	"maps"
	"os"
	"path/filepath"
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

// TestLeaseSkipsLockedRows holds an outbox item locked in an open
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
	if _, err := tx.Exec(ctx, `SELECT 1 FROM outbox WHERE client_id = 'c1' FOR UPDATE`); err != nil {
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

// TestLeasesSurviveItemLeaseMigration builds a database as version 3 left
// it, with one item leased in client_leases and one whose lease expired,
// and opens it: migration 0004 moves the live lease onto the item, so its
// owner can still complete it and nobody else can take it meanwhile.
func TestLeasesSurviveItemLeaseMigration(t *testing.T) {
	ctx := t.Context()
	dsn := storetest.PostgresDSN(t)
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, `CREATE TABLE schema_migrations (
		version    integer     PRIMARY KEY,
		name       text        NOT NULL,
		applied_at timestamptz NOT NULL DEFAULT now()
	)`); err != nil {
		t.Fatal(err)
	}
	for v, name := range []string{"0001_init.sql", "0002_patient_key.sql", "0003_connections.sql"} {
		b, err := os.ReadFile(filepath.Join("migrations", name))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := conn.Exec(ctx, string(b)); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if _, err := conn.Exec(ctx, `INSERT INTO schema_migrations (version, name) VALUES ($1, $2)`, v+1, name); err != nil {
			t.Fatal(err)
		}
	}
	for _, stmt := range []string{
		`INSERT INTO clients (id, version, doc, updated_at) VALUES ('c1', 1, '{"id":"c1"}', now()), ('c2', 1, '{"id":"c2"}', now())`,
		`INSERT INTO outbox (id, connection, client_id, due_at, created_at) OVERRIDING SYSTEM VALUE
			VALUES (7, 'a', 'c1', now(), now()), (8, 'b', 'c1', now(), now()), (9, 'a', 'c2', now(), now())`,
		`INSERT INTO client_leases VALUES ('c1', 7, 'w1', now() + interval '1 hour'), ('c2', 9, 'w9', now() - interval '1 hour')`,
	} {
		if _, err := conn.Exec(ctx, stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}

	s := open(t, dsn)
	defer s.Close()
	// Item 7 stays w1's; 8 (c1 on b) and 9 (an expired lease) are free.
	got := map[string]int64{}
	for _, conn := range []string{"a", "b"} {
		items, err := s.Lease(ctx, conn, "w2", 10, time.Minute)
		if err != nil {
			t.Fatalf("Lease(%s): %v", conn, err)
		}
		for _, it := range items {
			got[conn+"/"+it.ClientID] = it.ID
		}
	}
	if want := map[string]int64{"b/c1": 8, "a/c2": 9}; !maps.Equal(got, want) {
		t.Errorf("leased after the migration: %v, want %v", got, want)
	}
	if err := s.Complete(ctx, store.OutboxItem{ID: 7, Connection: "a", ClientID: "c1", Owner: "w1", Generation: 1}); err != nil {
		t.Errorf("Complete by the owner of a lease taken before the migration: %v", err)
	}
	if _, err := s.Fail(ctx, store.OutboxItem{ID: 9, Connection: "a", ClientID: "c2", Owner: "w9", Generation: 1}, "x", time.Now(), 3); !errors.Is(err, store.ErrConflict) {
		t.Errorf("Fail by the owner of an expired lease taken over since: %v, want ErrConflict", err)
	}
}
