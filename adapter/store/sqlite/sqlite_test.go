package sqlite_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ipsfhir/ipsfhir/adapter/store"
	"github.com/ipsfhir/ipsfhir/adapter/store/sqlite"
	"github.com/ipsfhir/ipsfhir/adapter/store/storetest"
	"github.com/ipsfhir/ipsfhir/ips"
)

func TestStore(t *testing.T) {
	var (
		mu    sync.Mutex
		paths = map[*testing.T]string{} // each test's database file
	)
	storetest.Run(t, func(t *testing.T) store.Store {
		t.Helper()
		mu.Lock()
		path, ok := paths[t]
		if !ok {
			path = filepath.Join(t.TempDir(), "ips.db")
			paths[t] = path
		}
		mu.Unlock()
		s, err := sqlite.Open(t.Context(), path)
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		return s
	})
}

// TestTwoStoresOnOneFile opens the same file twice, as two processes would,
// and has both lease at once: the file's write lock (BEGIN IMMEDIATE, with
// busy_timeout) keeps the leases exclusive and no call fails with
// SQLITE_BUSY.
func TestTwoStoresOnOneFile(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "ips.db")
	var stores [2]*sqlite.Store
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range stores {
		wg.Go(func() { stores[i], errs[i] = sqlite.Open(ctx, path) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("Open %d: %v", i, err)
		}
		t.Cleanup(func() { stores[i].Close() })
	}
	storetest.LeaseFromReplicas(t, []store.Store{stores[0], stores[1]})
}

func TestOpenRefusesURIsAndMemory(t *testing.T) {
	for _, p := range []string{"", ":memory:", "file:x.db", "x.db?mode=ro"} {
		if s, err := sqlite.Open(context.Background(), p); err == nil {
			s.Close()
			t.Errorf("Open(%q): no error", p)
		}
	}
}

// TestOpenIsIdempotent opens one file again and again: the migrations run
// once and are recorded once.
func TestOpenIsIdempotent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ips.db")
	for range 3 {
		s, err := sqlite.Open(t.Context(), path)
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		if err := s.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		if err := s.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
	}
	db, err := sql.Open("sqlite", path+"?_pragma=query_only(1)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var applied, first int
	if err := db.QueryRow(`SELECT count(*), min(version) FROM schema_migrations`).Scan(&applied, &first); err != nil {
		t.Fatalf("read schema_migrations: %v", err)
	}
	entries, err := os.ReadDir("migrations")
	if err != nil {
		t.Fatal(err)
	}
	if applied != len(entries) || first != 1 {
		t.Errorf("schema_migrations has %d rows from version %d, want %d from 1", applied, first, len(entries))
	}
	var mode string
	if err := db.QueryRow(`PRAGMA journal_mode`).Scan(&mode); err != nil || mode != "wal" {
		t.Errorf("journal mode = %q, %v; want wal", mode, err)
	}
}

// TestLeasesSurviveItemLeaseMigration builds a database as version 3 left
// it, with one item leased in client_leases and one whose lease expired,
// and opens it: migration 0004 moves the live lease onto the item, so its
// owner can still complete it and nobody else can take it meanwhile.
func TestLeasesSurviveItemLeaseMigration(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "ips.db")
	db, err := sql.Open("sqlite", path+"?_pragma=foreign_keys(1)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, `CREATE TABLE schema_migrations (
		version    INTEGER NOT NULL PRIMARY KEY,
		name       TEXT    NOT NULL,
		applied_at INTEGER NOT NULL
	) STRICT`); err != nil {
		t.Fatal(err)
	}
	for v, name := range []string{"0001_init.sql", "0002_patient_key.sql", "0003_connections.sql"} {
		b, err := os.ReadFile(filepath.Join("migrations", name))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := db.ExecContext(ctx, string(b)); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if _, err := db.ExecContext(ctx, `INSERT INTO schema_migrations VALUES (?, ?, 0)`, v+1, name); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Now()
	for _, stmt := range []string{
		`INSERT INTO clients (id, version, doc, updated_at) VALUES ('c1', 1, '{"id":"c1"}', 0), ('c2', 1, '{"id":"c2"}', 0)`,
		`INSERT INTO outbox (id, connection, client_id, due_at, created_at) VALUES (7, 'a', 'c1', 0, 0), (8, 'b', 'c1', 0, 0), (9, 'a', 'c2', 0, 0)`,
		fmt.Sprintf(`INSERT INTO client_leases VALUES ('c1', 7, 'w1', %d), ('c2', 9, 'w9', %d)`, now.Add(time.Hour).UnixMicro(), now.Add(-time.Hour).UnixMicro()),
	} {
		if _, err := db.ExecContext(ctx, stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
	db.Close()

	s, err := sqlite.Open(ctx, path)
	if err != nil {
		t.Fatalf("Open of a version 3 database: %v", err)
	}
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

// TestBusyIsUnavailable holds the file's write lock from another
// connection, as another process writing would, past the store's busy
// wait: the store's write fails with store.ErrUnavailable, without the
// file's name, and succeeds once the lock is let go.
func TestBusyIsUnavailable(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	path := filepath.Join(dir, "ips.db")
	s, err := sqlite.OpenWithBusyTimeout(ctx, path, 100*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, `BEGIN IMMEDIATE`); err != nil {
		t.Fatal(err)
	}
	batch := []store.Stored{{Client: &ips.Client{ID: "c1"}}}
	_, err = s.SaveClients(ctx, batch, []string{"a"})
	if !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("SaveClients while another connection holds the write lock: %v, want ErrUnavailable", err)
	}
	if strings.Contains(err.Error(), dir) || !strings.Contains(err.Error(), "database busy") {
		t.Errorf("error %q: want the reason, not the file", err)
	}
	if _, err := conn.ExecContext(ctx, `ROLLBACK`); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SaveClients(ctx, batch, []string{"a"}); err != nil {
		t.Errorf("SaveClients once the lock is let go: %v", err)
	}
}

// TestUnopenableIsUnavailable opens a file in a directory that does not
// exist: store.ErrUnavailable, without the file's name.
func TestUnopenableIsUnavailable(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "gone")
	_, err := sqlite.Open(t.Context(), filepath.Join(dir, "ips.db"))
	if !errors.Is(err, store.ErrUnavailable) || strings.Contains(err.Error(), dir) {
		t.Errorf("Open in a missing directory: %v, want ErrUnavailable without the path", err)
	}
}

// TestPreparedReadsSeeEveryWrite: the hot reads are prepared once and
// kept (stmts.go). A kept statement must hold no snapshot between calls,
// or a reader would go on seeing the ledger as it was: every read sees the
// write before it, whether this store or another on the same file (another
// process) wrote it.
func TestPreparedReadsSeeEveryWrite(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "ips.db")
	a, err := sqlite.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	b, err := sqlite.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	for i := range 50 {
		writer := []*sqlite.Store{a, b}[i%2]
		want := fmt.Sprintf("v%d", i)
		if err := writer.LedgerPut(ctx, store.LedgerEntry{Connection: "clinic", Key: "urn:k|1", ClientID: "c1", ResourceType: "Goal", ResourceID: "g1", VersionID: want}); err != nil {
			t.Fatal(err)
		}
		// Several reads at once, so more than one reader connection holds
		// the prepared statement.
		var wg sync.WaitGroup
		for range 4 {
			wg.Go(func() {
				for _, reader := range []*sqlite.Store{a, b} {
					e, err := reader.LedgerGet(ctx, "clinic", "urn:k|1")
					if err != nil {
						t.Error(err)
						return
					}
					if e.VersionID != want {
						t.Errorf("write %d: read version %q, want %q", i, e.VersionID, want)
					}
					if _, err := reader.LedgerByResource(ctx, "clinic", "Goal", "g1"); err != nil {
						t.Error(err)
					}
				}
			})
		}
		wg.Wait()
	}
	// A closed store's kept statements are gone with it: closing again is
	// harmless, and reads fail rather than reach a closed database.
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := a.LedgerGet(ctx, "clinic", "urn:k|1"); err == nil {
		t.Error("LedgerGet on a closed store succeeded")
	}
}
