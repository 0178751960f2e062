package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ipsfhir/ipsfhir/adapter/store"

	msqlite "modernc.org/sqlite" // registers the "sqlite" database/sql driver
	sqlite3 "modernc.org/sqlite/lib"
)

var _ store.Store = (*Store)(nil)

// Store is the IPS store in one SQLite file. It is safe for concurrent use.
type Store struct {
	// w is the only connection that writes: database/sql queues writers on
	// it, so goroutines of this process never meet SQLITE_BUSY, and its
	// transactions BEGIN IMMEDIATE, so another process on the same file
	// waits (busy_timeout) instead of failing halfway through.
	w *sql.DB
	// r serves reads that need no write lock; in WAL mode they run beside
	// the writer on a consistent snapshot.
	r *sql.DB

	// rstmts and wstmts keep the hot queries prepared (see stmts.go).
	rstmts readStmts
	wstmts map[string]*sql.Stmt

	// watch wakes this process's push workers (WatchOutbox); another
	// process on the same file is not woken, and polls.
	watch store.Watchers

	closeOnce sync.Once
	closeErr  error
}

// WatchOutbox returns a channel woken after this Store committed an
// enqueue for connection (see store.Store). Writes by other processes on
// the same file do not wake it.
func (s *Store) WatchOutbox(ctx context.Context, connection string) <-chan struct{} {
	return s.watch.Watch(ctx, connection)
}

// busyTimeout is how long a connection waits for another process's write
// lock before SQLITE_BUSY.
const busyTimeout = 10 * time.Second

// Open opens (creating if needed) the SQLite database at path and brings its
// schema up to date. path is a file name; in-memory databases are refused
// because the store keeps separate reader and writer connections.
func Open(ctx context.Context, path string) (*Store, error) {
	return open(ctx, path, busyTimeout)
}

// open is Open with the busy wait as a parameter, so that tests can see it
// run out without waiting for the real one.
func open(ctx context.Context, path string, busy time.Duration) (*Store, error) {
	// The driver reads its settings from a query after '?' and would treat
	// "file:" names as SQLite URIs, so only plain names are accepted.
	if path == "" || path == ":memory:" || strings.HasPrefix(path, "file:") || strings.Contains(path, "?") {
		return nil, errors.New("store: open sqlite: path must be a plain file name")
	}
	pragmas := url.Values{}
	pragmas.Add("_pragma", "busy_timeout("+strconv.FormatInt(busy.Milliseconds(), 10)+")")
	pragmas.Add("_pragma", "foreign_keys(1)")
	// NORMAL is durable across application crashes in WAL mode; a power
	// loss may lose the last commits, never corrupt the file.
	pragmas.Add("_pragma", "synchronous(NORMAL)")

	wq := url.Values{"_txlock": {"immediate"}}
	for k, v := range pragmas {
		wq[k] = v
	}
	w, err := sql.Open("sqlite", path+"?"+wq.Encode())
	if err != nil {
		return nil, storeErr("open sqlite", err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	w.SetConnMaxIdleTime(0)
	if err := w.PingContext(ctx); err != nil {
		w.Close()
		return nil, storeErr("open sqlite", err)
	}
	if err := walMode(ctx, w, busy); err != nil {
		w.Close()
		return nil, err
	}
	if err := migrate(ctx, w); err != nil {
		w.Close()
		return nil, err
	}

	rq := url.Values{}
	for k, v := range pragmas {
		rq[k] = v
	}
	rq.Add("_pragma", "query_only(1)")
	r, err := sql.Open("sqlite", path+"?"+rq.Encode())
	if err != nil {
		w.Close()
		return nil, storeErr("open sqlite", err)
	}
	r.SetMaxOpenConns(max(4, runtime.GOMAXPROCS(0)))
	if err := r.PingContext(ctx); err != nil {
		w.Close()
		r.Close()
		return nil, storeErr("open sqlite", err)
	}
	ws, err := prepareWrites(ctx, w)
	if err != nil {
		w.Close()
		r.Close()
		return nil, err
	}
	return &Store{w: w, r: r, rstmts: readStmts{db: r}, wstmts: ws}, nil
}

// Close closes the database. Calling it again returns the first result.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		errs := []error{s.rstmts.close()}
		for _, st := range s.wstmts {
			errs = append(errs, st.Close())
		}
		s.closeErr = errors.Join(append(errs, s.r.Close(), s.w.Close())...)
		if s.closeErr != nil {
			s.closeErr = fmt.Errorf("store: close: %w", s.closeErr)
		}
	})
	return s.closeErr
}

// walMode switches the file to write-ahead logging, which is persistent, so
// that readers never block the writer nor the writer readers. SQLite answers
// SQLITE_BUSY at once, without the busy handler, when another process is
// switching the same new file at the same moment, so this retries for as
// long as busy_timeout would have waited.
func walMode(ctx context.Context, w *sql.DB, busy time.Duration) error {
	deadline := time.Now().Add(busy)
	for wait := 5 * time.Millisecond; ; wait = min(2*wait, 200*time.Millisecond) {
		var mode string
		err := w.QueryRowContext(ctx, `PRAGMA journal_mode = WAL`).Scan(&mode)
		if err == nil {
			if !strings.EqualFold(mode, "wal") {
				return fmt.Errorf("store: open sqlite: journal mode is %s, not WAL", mode)
			}
			return nil
		}
		var se *msqlite.Error
		if !errors.As(err, &se) || se.Code()&0xff != sqlite3.SQLITE_BUSY || time.Now().After(deadline) {
			return storeErr("open sqlite: set WAL mode", err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("store: open sqlite: set WAL mode: %w", ctx.Err())
		case <-time.After(wait):
		}
	}
}

// write runs fn in a write transaction (BEGIN IMMEDIATE) and commits it if
// fn returns nil. Errors are wrapped with the operation name.
func (s *Store) write(ctx context.Context, op string, fn func(tx *sql.Tx) error) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return storeErr(op, err)
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return storeErr(op, err)
	}
	if err := tx.Commit(); err != nil {
		return storeErr(op, err)
	}
	return nil
}

//go:embed migrations/*.sql
var migrations embed.FS

// migrate applies the migrations not yet recorded in schema_migrations, all
// in one IMMEDIATE transaction: another process opening the same file waits
// for it and then finds nothing left to do.
func migrate(ctx context.Context, w *sql.DB) error {
	ms, err := store.LoadMigrations(migrations, "migrations")
	if err != nil {
		return storeErr("migrate", err)
	}
	tx, err := w.BeginTx(ctx, nil)
	if err != nil {
		return storeErr("migrate", err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    INTEGER NOT NULL PRIMARY KEY,
		name       TEXT    NOT NULL,
		applied_at INTEGER NOT NULL
	) STRICT`); err != nil {
		return storeErr("migrate", err)
	}
	applied := map[int]bool{}
	rows, err := tx.QueryContext(ctx, `SELECT version FROM schema_migrations`)
	if err != nil {
		return storeErr("migrate", err)
	}
	for rows.Next() {
		var v int
		if err := rows.Scan(&v); err != nil {
			rows.Close()
			return storeErr("migrate", err)
		}
		applied[v] = true
	}
	if err := rows.Err(); err != nil {
		return storeErr("migrate", err)
	}
	rows.Close()
	for _, m := range ms {
		if applied[m.Version] {
			continue
		}
		if _, err := tx.ExecContext(ctx, m.SQL); err != nil {
			return storeErr("migrate "+m.Name, err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)`,
			m.Version, m.Name, micros(time.Now())); err != nil {
			return storeErr("migrate "+m.Name, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return storeErr("migrate", err)
	}
	return nil
}

// micros is how times are stored: Unix microseconds, the precision
// PostgreSQL keeps, truncated (never rounded up).
func micros(t time.Time) int64 { return t.UnixMicro() }

// fromMicros is the inverse of micros, in UTC.
func fromMicros(us int64) time.Time { return time.UnixMicro(us).UTC() }

// fromNullMicros maps NULL to the zero time.
func fromNullMicros(us sql.NullInt64) time.Time {
	if !us.Valid {
		return time.Time{}
	}
	return fromMicros(us.Int64)
}
