package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"sync"
)

// SQLite parses a query every time it is prepared, and database/sql
// prepares a query at every call that is not a *sql.Stmt. For the small
// lookups the sync makes for every resource (a ledger row, a client) the
// parse cost more than the lookup: in a CPU profile of the syncer's tests
// preparing was a fifth of all the time. So the queries run most often
// are prepared once per connection and kept until Close.

// maxReadStmts bounds the reader's cache: queries are constants, so this
// is never reached unless a query is built with values in it, which then
// runs unprepared.
const maxReadStmts = 64

// readStmts prepares reader queries on first use and keeps them.
type readStmts struct {
	db *sql.DB
	mu sync.Mutex
	m  map[string]*sql.Stmt
}

// get returns query prepared, or nil when it cannot be kept (the caller
// then runs it unprepared, which reports any error).
func (c *readStmts) get(ctx context.Context, query string) *sql.Stmt {
	c.mu.Lock()
	st, ok := c.m[query]
	full := len(c.m) >= maxReadStmts
	c.mu.Unlock()
	if ok || full {
		return st
	}
	// Not under the lock: preparing waits for a free connection, which a
	// goroutine holding rows open may need the lock to give back.
	st, err := c.db.PrepareContext(ctx, query)
	if err != nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if prev, ok := c.m[query]; ok {
		st.Close()
		return prev
	}
	if c.m == nil {
		c.m = map[string]*sql.Stmt{}
	}
	c.m[query] = st
	return st
}

func (c *readStmts) close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var errs []error
	for _, st := range c.m {
		errs = append(errs, st.Close())
	}
	c.m = nil
	return errors.Join(errs...)
}

// queryRow is s.r.QueryRowContext with the query prepared once.
func (s *Store) queryRow(ctx context.Context, query string, args ...any) *sql.Row {
	if st := s.rstmts.get(ctx, query); st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	return s.r.QueryRowContext(ctx, query, args...)
}

// query is s.r.QueryContext with the query prepared once.
func (s *Store) query(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if st := s.rstmts.get(ctx, query); st != nil {
		return st.QueryContext(ctx, args...)
	}
	return s.r.QueryContext(ctx, query, args...)
}

// hotWrites are the writer's statements prepared at Open. They cannot be
// prepared on first use: the writer has one connection, which the
// transaction wanting the statement holds, so preparing would wait on
// itself. tx.StmtContext reuses the statement on that connection.
var hotWrites = []string{qLedgerPut, qCompleteRelease, qCompleteDelete}

func prepareWrites(ctx context.Context, w *sql.DB) (map[string]*sql.Stmt, error) {
	m := map[string]*sql.Stmt{}
	for _, q := range hotWrites {
		st, err := w.PrepareContext(ctx, q)
		if err != nil {
			for _, st := range m {
				st.Close()
			}
			return nil, storeErr("open sqlite: prepare", err)
		}
		m[q] = st
	}
	return m, nil
}

// txExec is tx.ExecContext, with the statement prepared at Open where it
// is one of hotWrites.
func (s *Store) txExec(ctx context.Context, tx *sql.Tx, query string, args ...any) (sql.Result, error) {
	if st := s.wstmts[query]; st != nil {
		return tx.StmtContext(ctx, st).ExecContext(ctx, args...)
	}
	return tx.ExecContext(ctx, query, args...)
}
