package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ipsfhir/ipsfhir/adapter/store"
)

const ledgerColumns = `connection, key, client_id, resource_type, resource_id, version_id, content_hash, updated_at, attempted, base`

func scanLedger(row pgx.Row) (store.LedgerEntry, error) {
	var (
		e         store.LedgerEntry
		attempted string
		base      string
	)
	err := row.Scan(&e.Connection, &e.Key, &e.ClientID, &e.ResourceType, &e.ResourceID, &e.VersionID, &e.ContentHash, &e.UpdatedAt, &attempted, &base)
	if base != "" {
		e.Base = []byte(base)
	}
	e.UpdatedAt = e.UpdatedAt.UTC()
	e.Attempted = store.SplitAttempted(attempted)
	return e, err
}

// LedgerGet returns the entry for a business identifier, or store.ErrNotFound.
func (s *Store) LedgerGet(ctx context.Context, connection, key string) (store.LedgerEntry, error) {
	e, err := scanLedger(s.pool.QueryRow(ctx, `SELECT `+ledgerColumns+` FROM ledger WHERE connection = $1 AND key = $2`, connection, key))
	if isNoRows(err) {
		return store.LedgerEntry{}, fmt.Errorf("store: ledger get: %w", store.ErrNotFound)
	}
	if err != nil {
		return store.LedgerEntry{}, storeErr(ctx, "ledger get", err)
	}
	return e, nil
}

// LedgerGetMany returns the entries of keys on a connection, by key, in
// one query (see store.Store).
func (s *Store) LedgerGetMany(ctx context.Context, connection string, keys []string) (map[string]store.LedgerEntry, error) {
	out := make(map[string]store.LedgerEntry, len(keys))
	if len(keys) == 0 {
		return out, nil
	}
	rows, err := s.pool.Query(ctx, `SELECT `+ledgerColumns+` FROM ledger WHERE connection = $1 AND key = ANY($2)`, connection, keys)
	if err != nil {
		return nil, storeErr(ctx, "ledger get many", err)
	}
	defer rows.Close()
	for rows.Next() {
		e, err := scanLedger(rows)
		if err != nil {
			return nil, storeErr(ctx, "ledger get many", err)
		}
		out[e.Key] = e
	}
	if err := rows.Err(); err != nil {
		return nil, storeErr(ctx, "ledger get many", err)
	}
	return out, nil
}

// LedgerByResource finds the entry for an EHR resource, or
// store.ErrNotFound. Should two keys name the same resource, the most
// recently updated entry wins.
func (s *Store) LedgerByResource(ctx context.Context, connection, resourceType, resourceID string) (store.LedgerEntry, error) {
	e, err := scanLedger(s.pool.QueryRow(ctx, `SELECT `+ledgerColumns+` FROM ledger
		WHERE connection = $1 AND resource_type = $2 AND resource_id = $3
		ORDER BY updated_at DESC, key LIMIT 1`, connection, resourceType, resourceID))
	if isNoRows(err) {
		return store.LedgerEntry{}, fmt.Errorf("store: ledger by resource: %w", store.ErrNotFound)
	}
	if err != nil {
		return store.LedgerEntry{}, storeErr(ctx, "ledger by resource", err)
	}
	return e, nil
}

// LedgerPending lists a client's entries of resourceType without a
// resource id, oldest first (see store.Store).
func (s *Store) LedgerPending(ctx context.Context, connection, clientID, resourceType string) ([]store.LedgerEntry, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+ledgerColumns+` FROM ledger
		WHERE connection = $1 AND resource_type = $2 AND resource_id = '' AND client_id = $3
		ORDER BY updated_at, key`, connection, resourceType, clientID)
	if err != nil {
		return nil, storeErr(ctx, "ledger pending", err)
	}
	defer rows.Close()
	var out []store.LedgerEntry
	for rows.Next() {
		e, err := scanLedger(rows)
		if err != nil {
			return nil, storeErr(ctx, "ledger pending", err)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, storeErr(ctx, "ledger pending", err)
	}
	return out, nil
}

// LedgerPut inserts or replaces the entry for (connection, key). A zero
// UpdatedAt means now.
func (s *Store) LedgerPut(ctx context.Context, e store.LedgerEntry) error {
	if e.Connection == "" || e.Key == "" {
		return errors.New("store: ledger put: connection and key are required")
	}
	if e.UpdatedAt.IsZero() {
		e.UpdatedAt = time.Now()
	}
	_, err := s.pool.Exec(ctx, `INSERT INTO ledger (`+ledgerColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
		ON CONFLICT (connection, key) DO UPDATE SET
			client_id = excluded.client_id,
			resource_type = excluded.resource_type,
			resource_id = excluded.resource_id,
			version_id = excluded.version_id,
			content_hash = excluded.content_hash,
			updated_at = excluded.updated_at,
			attempted = excluded.attempted,
			base = excluded.base`,
		e.Connection, e.Key, e.ClientID, e.ResourceType, e.ResourceID, e.VersionID, e.ContentHash, micros(e.UpdatedAt), store.JoinAttempted(e.Attempted), string(e.Base))
	if err != nil {
		return storeErr(ctx, "ledger put", err)
	}
	return nil
}

// Watermark returns how far polling of a resource type has read on a
// connection, or the zero time.
func (s *Store) Watermark(ctx context.Context, connection, resourceType string) (time.Time, error) {
	var at time.Time
	err := s.pool.QueryRow(ctx, `SELECT at FROM watermarks WHERE connection = $1 AND resource_type = $2`, connection, resourceType).Scan(&at)
	if isNoRows(err) {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, storeErr(ctx, "watermark", err)
	}
	return at.UTC(), nil
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
	_, err := s.pool.Exec(ctx, `INSERT INTO watermarks AS w (connection, resource_type, at) VALUES ($1, $2, $3)
		ON CONFLICT (connection, resource_type) DO UPDATE SET at = GREATEST(w.at, excluded.at)`,
		connection, resourceType, micros(at))
	if err != nil {
		return storeErr(ctx, "set watermark", err)
	}
	return nil
}

// AddConflict records a conflict and returns its id. A zero CreatedAt means
// now. It is normally open (no Resolution); one recorded already resolved
// gets ResolvedAt now unless given.
func (s *Store) AddConflict(ctx context.Context, c store.Conflict) (int64, error) {
	if err := store.CheckConflict(c); err != nil {
		return 0, storeErr(ctx, "add conflict", err)
	}
	now := time.Now()
	if c.CreatedAt.IsZero() {
		c.CreatedAt = now
	}
	var resolvedAt *time.Time
	if c.Resolution != "" {
		if c.ResolvedAt.IsZero() {
			c.ResolvedAt = now
		}
		t := micros(c.ResolvedAt)
		resolvedAt = &t
	}
	var id int64
	err := s.pool.QueryRow(ctx, `INSERT INTO conflicts
		(connection, client_id, key, field, ips_value, ehr_value, winner, resolution, created_at, resolved_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id`,
		c.Connection, c.ClientID, c.Key, c.Field, c.IPSValue, c.EHRValue, c.Winner, c.Resolution,
		micros(c.CreatedAt), resolvedAt).Scan(&id)
	if err != nil {
		return 0, storeErr(ctx, "add conflict", err)
	}
	return id, nil
}

// Conflicts lists a connection's conflicts ("" for all connections), open
// ones only unless all, oldest first.
func (s *Store) Conflicts(ctx context.Context, connection string, all bool) ([]store.Conflict, error) {
	rows, _ := s.pool.Query(ctx, `SELECT id, connection, client_id, key, field, ips_value, ehr_value, winner, resolution, created_at, resolved_at
		FROM conflicts
		WHERE ($1 = '' OR connection = $1) AND ($2 OR resolution = '')
		ORDER BY id`, connection, all)
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.Conflict, error) {
		var (
			c        store.Conflict
			resolved *time.Time
		)
		err := row.Scan(&c.ID, &c.Connection, &c.ClientID, &c.Key, &c.Field, &c.IPSValue, &c.EHRValue, &c.Winner, &c.Resolution, &c.CreatedAt, &resolved)
		c.CreatedAt = c.CreatedAt.UTC()
		c.ResolvedAt = utc(resolved)
		return c, err
	})
	if err != nil {
		return nil, storeErr(ctx, "conflicts", err)
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
	return s.write(ctx, "resolve conflict", func(tx pgx.Tx) error {
		var current string
		err := tx.QueryRow(ctx, `SELECT resolution FROM conflicts WHERE id = $1 FOR UPDATE`, id).Scan(&current)
		if isNoRows(err) {
			return fmt.Errorf("conflict %d: %w", id, store.ErrNotFound)
		}
		if err != nil {
			return err
		}
		if current != "" {
			return fmt.Errorf("conflict %d is already resolved: %w", id, store.ErrConflict)
		}
		_, err = tx.Exec(ctx, `UPDATE conflicts SET resolution = $1, resolved_at = now() WHERE id = $2`, resolution, id)
		return err
	})
}
