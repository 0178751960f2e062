package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/ipsfhir/ipsfhir/adapter/store"
)

const ledgerColumns = `connection, key, client_id, resource_type, resource_id, version_id, content_hash, updated_at, attempted, base`

func scanLedger(row interface{ Scan(dest ...any) error }) (store.LedgerEntry, error) {
	var (
		e         store.LedgerEntry
		at        int64
		attempted string
		base      string
	)
	err := row.Scan(&e.Connection, &e.Key, &e.ClientID, &e.ResourceType, &e.ResourceID, &e.VersionID, &e.ContentHash, &at, &attempted, &base)
	if base != "" {
		e.Base = []byte(base)
	}
	e.UpdatedAt = fromMicros(at)
	e.Attempted = store.SplitAttempted(attempted)
	return e, err
}

// LedgerGet returns the entry for a business identifier, or store.ErrNotFound.
func (s *Store) LedgerGet(ctx context.Context, connection, key string) (store.LedgerEntry, error) {
	e, err := scanLedger(s.queryRow(ctx, `SELECT `+ledgerColumns+` FROM ledger WHERE connection = ? AND key = ?`, connection, key))
	if errors.Is(err, sql.ErrNoRows) {
		return store.LedgerEntry{}, fmt.Errorf("store: ledger get: %w", store.ErrNotFound)
	}
	if err != nil {
		return store.LedgerEntry{}, storeErr("ledger get", err)
	}
	return e, nil
}

// LedgerGetMany returns the entries of keys on a connection, by key, in
// one read (see store.Store).
func (s *Store) LedgerGetMany(ctx context.Context, connection string, keys []string) (map[string]store.LedgerEntry, error) {
	out := make(map[string]store.LedgerEntry, len(keys))
	// SQLite limits the variables of one statement: a long list is read
	// in parts (one query for the keys of one client).
	const chunk = 500
	for i := 0; i < len(keys); i += chunk {
		part := keys[i:min(i+chunk, len(keys))]
		args := make([]any, 0, len(part)+1)
		args = append(args, connection)
		for _, k := range part {
			args = append(args, k)
		}
		rows, err := s.r.QueryContext(ctx, `SELECT `+ledgerColumns+` FROM ledger WHERE connection = ? AND key IN (?`+strings.Repeat(", ?", len(part)-1)+`)`, args...)
		if err != nil {
			return nil, storeErr("ledger get many", err)
		}
		for rows.Next() {
			e, err := scanLedger(rows)
			if err != nil {
				rows.Close()
				return nil, storeErr("ledger get many", err)
			}
			out[e.Key] = e
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return nil, storeErr("ledger get many", err)
		}
	}
	return out, nil
}

// LedgerByResource finds the entry for an EHR resource, or
// store.ErrNotFound. Should two keys name the same resource, the most
// recently updated entry wins.
func (s *Store) LedgerByResource(ctx context.Context, connection, resourceType, resourceID string) (store.LedgerEntry, error) {
	e, err := scanLedger(s.queryRow(ctx, `SELECT `+ledgerColumns+` FROM ledger
		WHERE connection = ? AND resource_type = ? AND resource_id = ?
		ORDER BY updated_at DESC, key LIMIT 1`, connection, resourceType, resourceID))
	if errors.Is(err, sql.ErrNoRows) {
		return store.LedgerEntry{}, fmt.Errorf("store: ledger by resource: %w", store.ErrNotFound)
	}
	if err != nil {
		return store.LedgerEntry{}, storeErr("ledger by resource", err)
	}
	return e, nil
}

// LedgerPending lists a client's entries of resourceType without a
// resource id, oldest first (see store.Store).
func (s *Store) LedgerPending(ctx context.Context, connection, clientID, resourceType string) ([]store.LedgerEntry, error) {
	rows, err := s.query(ctx, `SELECT `+ledgerColumns+` FROM ledger
		WHERE connection = ? AND resource_type = ? AND resource_id = '' AND client_id = ?
		ORDER BY updated_at, key`, connection, resourceType, clientID)
	if err != nil {
		return nil, storeErr("ledger pending", err)
	}
	defer rows.Close()
	var out []store.LedgerEntry
	for rows.Next() {
		e, err := scanLedger(rows)
		if err != nil {
			return nil, storeErr("ledger pending", err)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, storeErr("ledger pending", err)
	}
	return out, nil
}

// qLedgerPut inserts or replaces a ledger row (prepared at Open).
const qLedgerPut = `INSERT INTO ledger (` + ledgerColumns + `) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (connection, key) DO UPDATE SET
				client_id = excluded.client_id,
				resource_type = excluded.resource_type,
				resource_id = excluded.resource_id,
				version_id = excluded.version_id,
				content_hash = excluded.content_hash,
				updated_at = excluded.updated_at,
				attempted = excluded.attempted,
				base = excluded.base`

// LedgerPut inserts or replaces the entry for (connection, key). A zero
// UpdatedAt means now.
func (s *Store) LedgerPut(ctx context.Context, e store.LedgerEntry) error {
	if e.Connection == "" || e.Key == "" {
		return errors.New("store: ledger put: connection and key are required")
	}
	if e.UpdatedAt.IsZero() {
		e.UpdatedAt = time.Now()
	}
	return s.write(ctx, "ledger put", func(tx *sql.Tx) error {
		_, err := s.txExec(ctx, tx, qLedgerPut,
			e.Connection, e.Key, e.ClientID, e.ResourceType, e.ResourceID, e.VersionID, e.ContentHash, micros(e.UpdatedAt), store.JoinAttempted(e.Attempted), string(e.Base))
		return err
	})
}

// Watermark returns how far polling of a resource type has read on a
// connection, or the zero time.
func (s *Store) Watermark(ctx context.Context, connection, resourceType string) (time.Time, error) {
	var at int64
	err := s.queryRow(ctx, `SELECT at FROM watermarks WHERE connection = ? AND resource_type = ?`, connection, resourceType).Scan(&at)
	if errors.Is(err, sql.ErrNoRows) {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, storeErr("watermark", err)
	}
	return fromMicros(at), nil
}

// SetWatermark moves a watermark forward; an earlier time is ignored. It
// keeps microseconds, truncating, so a poller may re-read an instant but
// never skips one.
func (s *Store) SetWatermark(ctx context.Context, connection, resourceType string, at time.Time) error {
	if connection == "" || resourceType == "" {
		return errors.New("store: set watermark: connection and resource type are required")
	}
	if at.IsZero() {
		return nil
	}
	return s.write(ctx, "set watermark", func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO watermarks (connection, resource_type, at) VALUES (?, ?, ?)
			ON CONFLICT (connection, resource_type) DO UPDATE SET at = MAX(at, excluded.at)`,
			connection, resourceType, micros(at))
		return err
	})
}

// AddConflict records a conflict and returns its id. A zero CreatedAt means
// now. It is normally open (no Resolution); one recorded already resolved
// gets ResolvedAt now unless given.
func (s *Store) AddConflict(ctx context.Context, c store.Conflict) (int64, error) {
	if err := store.CheckConflict(c); err != nil {
		return 0, storeErr("add conflict", err)
	}
	now := time.Now()
	if c.CreatedAt.IsZero() {
		c.CreatedAt = now
	}
	var resolvedAt sql.NullInt64
	if c.Resolution != "" {
		if c.ResolvedAt.IsZero() {
			c.ResolvedAt = now
		}
		resolvedAt = sql.NullInt64{Int64: micros(c.ResolvedAt), Valid: true}
	}
	var id int64
	err := s.write(ctx, "add conflict", func(tx *sql.Tx) error {
		return tx.QueryRowContext(ctx, `INSERT INTO conflicts
			(connection, client_id, key, field, ips_value, ehr_value, winner, resolution, created_at, resolved_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
			c.Connection, c.ClientID, c.Key, c.Field, c.IPSValue, c.EHRValue, c.Winner, c.Resolution,
			micros(c.CreatedAt), resolvedAt).Scan(&id)
	})
	if err != nil {
		return 0, err
	}
	return id, nil
}

// Conflicts lists a connection's conflicts ("" for all connections), open
// ones only unless all, oldest first.
func (s *Store) Conflicts(ctx context.Context, connection string, all bool) ([]store.Conflict, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT id, connection, client_id, key, field, ips_value, ehr_value, winner, resolution, created_at, resolved_at
		FROM conflicts
		WHERE (?1 = '' OR connection = ?1) AND (?2 OR resolution = '')
		ORDER BY id`, connection, all)
	if err != nil {
		return nil, storeErr("conflicts", err)
	}
	defer rows.Close()
	var out []store.Conflict
	for rows.Next() {
		var (
			c        store.Conflict
			created  int64
			resolved sql.NullInt64
		)
		if err := rows.Scan(&c.ID, &c.Connection, &c.ClientID, &c.Key, &c.Field, &c.IPSValue, &c.EHRValue, &c.Winner, &c.Resolution, &created, &resolved); err != nil {
			return nil, storeErr("conflicts", err)
		}
		c.CreatedAt = fromMicros(created)
		c.ResolvedAt = fromNullMicros(resolved)
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, storeErr("conflicts", err)
	}
	return out, nil
}

// ResolveConflict closes an open conflict: store.ErrNotFound if there is
// none with id, store.ErrConflict if it was resolved already (another
// administrator got there first).
func (s *Store) ResolveConflict(ctx context.Context, id int64, resolution string) error {
	if resolution == "" {
		return errors.New("store: resolve conflict: empty resolution")
	}
	return s.write(ctx, "resolve conflict", func(tx *sql.Tx) error {
		var current string
		err := tx.QueryRowContext(ctx, `SELECT resolution FROM conflicts WHERE id = ?`, id).Scan(&current)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("conflict %d: %w", id, store.ErrNotFound)
		}
		if err != nil {
			return err
		}
		if current != "" {
			return fmt.Errorf("conflict %d is already resolved: %w", id, store.ErrConflict)
		}
		_, err = tx.ExecContext(ctx, `UPDATE conflicts SET resolution = ?, resolved_at = ? WHERE id = ?`, resolution, micros(time.Now()), id)
		return err
	})
}
