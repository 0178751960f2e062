package syncer

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/ipsfhir/ipsfhir/adapter/store"
)

// pushLedger is one push's view of the ledger. The rows of the client's
// records are read at once (store.LedgerGetMany) before the writes, for
// the reads that need the ledger as it is when a record's turn comes:
// the mapping's references to other records (Options.Reference), whether
// the note was released (Options.NoteReleased), and the first read of a
// record in pushBundle and writeResource (Engine.ledgerRow). It wraps the
// store the push uses, so that every ledger row the push writes (through
// any path: a write's attempt, its answer, a settled conflict, a merge)
// is dropped from the rows read, and a later read of it goes to the store
// and sees that write.
//
// LedgerGet is not served from the rows read: the reads that must see what
// other workers wrote a moment ago (freshAttempts before a row is written
// back, the re-reads that settle a conflict) still read the store. A row
// another worker writes during the push is seen by the first reads later
// than it would be read one by one; those are the same races as between a
// read and a write today, and the same checks catch them (If-Match, the
// attempts joined by freshAttempts, the search before a create, the client
// version read again after the rows and before a write refused as stale
// goes again).
type pushLedger struct {
	store.Store
	conn string

	mu   sync.Mutex
	read map[string]bool              // keys read at once (found or not), not written since
	rows map[string]store.LedgerEntry // of those, the ones the ledger holds
}

// prefetch reads the rows of keys in one query, for the reads of
// ledgerRow. Keys already read are read again.
func (l *pushLedger) prefetch(ctx context.Context, keys []string) error {
	rows, err := l.Store.LedgerGetMany(ctx, l.conn, keys)
	if err != nil {
		return fmt.Errorf("%w: ledger: %w", errStore, err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.read == nil {
		l.read, l.rows = map[string]bool{}, map[string]store.LedgerEntry{}
	}
	for _, k := range keys {
		l.read[k] = true
		delete(l.rows, k)
		if r, ok := rows[k]; ok {
			l.rows[k] = r
		}
	}
	return nil
}

// LedgerPut writes through and forgets the row read for the key.
func (l *pushLedger) LedgerPut(ctx context.Context, e store.LedgerEntry) error {
	if e.Connection == l.conn {
		l.mu.Lock()
		delete(l.read, e.Key)
		delete(l.rows, e.Key)
		l.mu.Unlock()
	}
	return l.Store.LedgerPut(ctx, e)
}

// cached returns the row read at once for key: ok says whether the push
// has it (read, and not written since), found whether the ledger has it.
func (l *pushLedger) cached(conn, key string) (e store.LedgerEntry, found, ok bool) {
	if conn != l.conn {
		return e, false, false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.read[key] {
		return e, false, false
	}
	e, found = l.rows[key]
	// The caller's copy: slices are not shared with the rows read.
	e.Attempted, e.Base = slices.Clone(e.Attempted), slices.Clone(e.Base)
	return e, found, true
}

// ledgerRow reads the ledger row of key, as LedgerGet does, from the rows
// the push read at once when it has them (see pushLedger), else from the
// store.
func (e *Engine) ledgerRow(ctx context.Context, conn, key string) (store.LedgerEntry, error) {
	if l, ok := e.Store.(*pushLedger); ok {
		if row, found, ok := l.cached(conn, key); ok {
			if !found {
				return store.LedgerEntry{}, fmt.Errorf("store: ledger get: %w", store.ErrNotFound)
			}
			return row, nil
		}
	}
	return e.Store.LedgerGet(ctx, conn, key)
}

// prefetchLedger reads the rows of keys at once, when the push has a
// pushLedger.
func (e *Engine) prefetchLedger(ctx context.Context, keys []string) error {
	if l, ok := e.Store.(*pushLedger); ok {
		return l.prefetch(ctx, keys)
	}
	return nil
}
