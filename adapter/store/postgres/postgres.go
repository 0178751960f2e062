package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ipsfhir/ipsfhir/adapter/store"
)

var _ store.Store = (*Store)(nil)

// Store is the IPS store in a PostgreSQL database. It is safe for
// concurrent use, and several Stores (replicas) may share one database.
type Store struct {
	pool *pgxpool.Pool
	// schema is where the tables are (current_schema()), which
	// notifications name (see notify).
	schema string
	// connConfig opens the listener's own connection.
	connConfig *pgx.ConnConfig

	// watch, listenOnce … are the WatchOutbox listener (watch.go).
	watch        store.Watchers
	listenOnce   sync.Once
	stopListener context.CancelFunc
	listenerDone chan struct{}
	listenerPID  atomic.Uint32

	closeOnce sync.Once
}

// Open connects to the database named by dsn (a libpq URL or key=value
// string, as pgx accepts it) and brings its schema up to date. The schema
// lives in the first schema of the connection's search_path.
func Open(ctx context.Context, dsn string) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// pgx's parse errors quote the DSN, host and all, redacting only
		// what it recognises as a password.
		return nil, errors.New("store: open postgres: the DSN does not parse (see the pgx and libpq connection string formats)")
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, storeErr(ctx, "open postgres", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, storeErr(ctx, "open postgres", err)
	}
	if err := migrate(ctx, pool); err != nil {
		pool.Close()
		return nil, err
	}
	var schema string
	if err := pool.QueryRow(ctx, `SELECT current_schema()`).Scan(&schema); err != nil {
		pool.Close()
		return nil, storeErr(ctx, "open postgres", err)
	}
	return &Store{pool: pool, schema: schema, connConfig: cfg.ConnConfig}, nil
}

// Close stops the listener, if WatchOutbox started one, and closes the
// pool, waiting for connections in use to be returned. Calling it again
// does nothing.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.listenOnce.Do(func() {}) // no listener starts after this
		if s.stopListener != nil {
			s.stopListener()
			<-s.listenerDone
		}
		s.pool.Close()
	})
	return nil
}

// write runs fn in a READ COMMITTED transaction and commits it if fn
// returns nil. Errors are wrapped with the operation name.
func (s *Store) write(ctx context.Context, op string, fn func(tx pgx.Tx) error) error {
	if err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{}, fn); err != nil {
		return storeErr(ctx, op, err)
	}
	return nil
}

//go:embed migrations/*.sql
var migrations embed.FS

// migrate applies the migrations not yet recorded in schema_migrations, all
// in one transaction that first takes an advisory lock on the schema: a
// replica starting at the same moment waits for it, then finds nothing left
// to do. DDL is transactional in PostgreSQL, so a failed migration leaves
// the schema as it was.
func migrate(ctx context.Context, pool *pgxpool.Pool) error {
	ms, err := store.LoadMigrations(migrations, "migrations")
	if err != nil {
		return storeErr(ctx, "migrate", err)
	}
	err = pgx.BeginTxFunc(ctx, pool, pgx.TxOptions{}, func(tx pgx.Tx) error {
		// The lock is per schema, so that stores in other schemas of the
		// same database (tests, other programs) do not queue behind it.
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext('ipsfhir schema migrations'), hashtext(coalesce(current_schema(), '')))`); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
			version    integer     PRIMARY KEY,
			name       text        NOT NULL,
			applied_at timestamptz NOT NULL DEFAULT now()
		)`); err != nil {
			return err
		}
		rows, _ := tx.Query(ctx, `SELECT version FROM schema_migrations`)
		versions, err := pgx.CollectRows(rows, pgx.RowTo[int32])
		if err != nil {
			return err
		}
		applied := map[int]bool{}
		for _, v := range versions {
			applied[int(v)] = true
		}
		for _, m := range ms {
			if applied[m.Version] {
				continue
			}
			// Without arguments pgx uses the simple protocol, which runs
			// a file of several statements.
			if _, err := tx.Exec(ctx, m.SQL); err != nil {
				return fmt.Errorf("%s: %w", m.Name, err)
			}
			if _, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version, name) VALUES ($1, $2)`, m.Version, m.Name); err != nil {
				return fmt.Errorf("%s: %w", m.Name, err)
			}
		}
		return nil
	})
	if err != nil {
		return storeErr(ctx, "migrate", err)
	}
	return nil
}

// micros truncates t to the microseconds PostgreSQL keeps, so that both
// stores truncate rather than round.
func micros(t time.Time) time.Time { return t.Truncate(time.Microsecond) }

// utc returns a stored time in UTC, or the zero time for NULL.
func utc(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.UTC()
}

// isUniqueViolation reports whether err is a unique-constraint violation of
// the named index.
func isUniqueViolation(err error, index string) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23505" && pe.ConstraintName == index
}

// isNoRows reports whether err is pgx's "no rows".
func isNoRows(err error) bool { return errors.Is(err, pgx.ErrNoRows) }
