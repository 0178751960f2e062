package postgres_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"maps"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
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

// closedPort returns a port on 127.0.0.1 that nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	ln.Close()
	return port
}

// noAddress fails t if err's text holds a secret or where the server is.
func noAddress(t *testing.T, what string, err error, secrets ...string) {
	t.Helper()
	for _, s := range append(secrets, "127.0.0.1", "localhost", "postgres://", "user=", "database=") {
		if s != "" && strings.Contains(err.Error(), s) {
			t.Errorf("%s: error %q shows %q", what, err, s)
		}
	}
}

// TestOpenUnreachable opens a store on a port nothing listens on: the
// error is store.ErrUnavailable, and says so without the DSN, the address
// or the password.
func TestOpenUnreachable(t *testing.T) {
	port := closedPort(t)
	for _, dsn := range []string{
		"postgres://ipsuser:s3cret@127.0.0.1:" + port + "/ipsdb?sslmode=disable&connect_timeout=10",
		"host=127.0.0.1 port=" + port + " user=ipsuser password=s3cret dbname=ipsdb sslmode=disable connect_timeout=10",
	} {
		_, err := postgres.Open(t.Context(), dsn)
		if !errors.Is(err, store.ErrUnavailable) {
			t.Fatalf("Open on a closed port: %v, want ErrUnavailable", err)
		}
		noAddress(t, "Open on a closed port", err, "s3cret", port, "ipsuser", "ipsdb")
		if !strings.Contains(err.Error(), "connection refused") {
			t.Errorf("Open on a closed port: %q does not say the connection was refused", err)
		}
	}
}

// TestServerGone opens a store through a proxy and then takes the proxy
// away, as an outage would: every operation fails with
// store.ErrUnavailable, patient-free and without the server's address.
func TestServerGone(t *testing.T) {
	ctx := t.Context()
	proxy, dsn := storetest.StartPostgresProxy(t, storetest.PostgresDSN(t))
	s := open(t, dsn)
	defer s.Close()
	c := &ips.Client{ID: "c1", Patient: ips.Identifier{System: "s", Value: "MRN-PLANTED-1"}}
	if _, err := s.SaveClients(ctx, []store.Stored{{Client: c}}, []string{"a"}); err != nil {
		t.Fatal(err)
	}
	it, err := s.Lease(ctx, "a", "w1", 1, time.Minute)
	if err != nil || len(it) != 1 {
		t.Fatalf("Lease = %v, %v", it, err)
	}
	proxy.Stop()

	ops := map[string]func() error{
		"GetClient":   func() error { _, _, err := s.GetClient(ctx, "c1"); return err },
		"ListClients": func() error { _, err := s.ListClients(ctx, "", 10); return err },
		"SaveClients": func() error {
			_, err := s.SaveClients(ctx, []store.Stored{{Client: c, Version: 1}}, []string{"a"})
			return err
		},
		"Lease":          func() error { _, err := s.Lease(ctx, "a", "w2", 1, time.Minute); return err },
		"Complete":       func() error { return s.Complete(ctx, it[0]) },
		"OutboxDepth":    func() error { _, err := s.OutboxDepth(ctx); return err },
		"DeadLetters":    func() error { _, err := s.DeadLetters(ctx, ""); return err },
		"FailureReasons": func() error { _, err := s.FailureReasons(ctx, ""); return err },
		"LedgerGet":      func() error { _, err := s.LedgerGet(ctx, "a", "k"); return err },
		"LedgerGetMany":  func() error { _, err := s.LedgerGetMany(ctx, "a", []string{"k", "l"}); return err },
	}
	for name, op := range ops {
		err := op()
		if !errors.Is(err, store.ErrUnavailable) {
			t.Errorf("%s with the server gone: %v, want ErrUnavailable", name, err)
			continue
		}
		t.Logf("%s: %v", name, err)
		noAddress(t, name, err, "MRN-PLANTED-1")
	}

	// A caller that gave up is not an outage, even while there is one.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	_, err = s.OutboxDepth(cctx)
	if !errors.Is(err, context.Canceled) || errors.Is(err, store.ErrUnavailable) {
		t.Errorf("OutboxDepth with a cancelled context: %v, want context.Canceled and not ErrUnavailable", err)
	} else {
		noAddress(t, "OutboxDepth with a cancelled context", err)
	}
}

// TestServerEndsConnection has the server end the store's connection, as
// it does to every client when it shuts down (pg_terminate_backend sends
// the same "terminating connection due to administrator command"): the
// next operation fails with store.ErrUnavailable, and, once the pool has
// let the dead connection go, the store works again.
func TestServerEndsConnection(t *testing.T) {
	ctx := t.Context()
	var b [6]byte
	_, _ = rand.Read(b[:])
	app := "ipsfhir-test-" + hex.EncodeToString(b[:])
	dsn := storetest.PostgresDSN(t)
	// One connection, named so that only it is ended.
	appDSN := dsn + " application_name=" + app + " pool_max_conns=1"
	if u, err := url.Parse(dsn); err == nil && u.Scheme != "" {
		q := u.Query()
		q.Set("application_name", app)
		q.Set("pool_max_conns", "1")
		u.RawQuery = q.Encode()
		appDSN = u.String()
	}
	s := open(t, appDSN)
	defer s.Close()
	if _, err := s.OutboxDepth(ctx); err != nil {
		t.Fatal(err)
	}
	if err := storetest.PostgresExec(ctx, dsn, `SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity WHERE application_name = '`+app+`'`); err != nil {
		t.Fatalf("terminate the store's connection: %v", err)
	}
	_, err := s.OutboxDepth(ctx)
	if !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("OutboxDepth on a connection the server ended: %v, want ErrUnavailable", err)
	}
	t.Logf("OutboxDepth: %v", err)
	if _, err := s.OutboxDepth(ctx); err != nil {
		t.Errorf("OutboxDepth once the server is back: %v", err)
	}
}
