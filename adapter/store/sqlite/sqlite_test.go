package sqlite_test

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/ipsfhir/ipsfhir/adapter/store"
	"github.com/ipsfhir/ipsfhir/adapter/store/sqlite"
	"github.com/ipsfhir/ipsfhir/adapter/store/storetest"
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
