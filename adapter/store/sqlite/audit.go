package sqlite

import (
	"context"
	"database/sql"
	"time"

	"github.com/ipsfhir/ipsfhir/adapter/store"
)

// AddAudit records an audit entry.
func (s *Store) AddAudit(ctx context.Context, e store.AuditEntry) error {
	if err := store.CheckAudit(e); err != nil {
		return storeErr("add audit", err)
	}
	if e.At.IsZero() {
		e.At = time.Now()
	}
	return s.write(ctx, "add audit", func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO audit
			(at, caller, role, action, route, connection, resource_type, records, status)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			micros(e.At), e.Caller, e.Role, e.Action, e.Route, e.Connection, e.ResourceType, e.Records, e.Status)
		return err
	})
}

// Audit lists audit entries, oldest first.
func (s *Store) Audit(ctx context.Context, q store.AuditQuery) ([]store.AuditEntry, error) {
	var since, until int64 = 0, 1<<63 - 1
	if !q.Since.IsZero() {
		since = micros(q.Since)
	}
	if !q.Until.IsZero() {
		until = micros(q.Until)
	}
	rows, err := s.r.QueryContext(ctx, `SELECT id, at, caller, role, action, route, connection, resource_type, records, status
		FROM audit
		WHERE id > ?1 AND (?2 = '' OR caller = ?2) AND at >= ?3 AND at <= ?4
		ORDER BY id LIMIT ?5`, q.After, q.Caller, since, until, q.LimitOf())
	if err != nil {
		return nil, storeErr("audit", err)
	}
	defer rows.Close()
	out := []store.AuditEntry{}
	for rows.Next() {
		var (
			e  store.AuditEntry
			at int64
		)
		if err := rows.Scan(&e.ID, &at, &e.Caller, &e.Role, &e.Action, &e.Route, &e.Connection, &e.ResourceType, &e.Records, &e.Status); err != nil {
			return nil, storeErr("audit", err)
		}
		e.At = fromMicros(at)
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, storeErr("audit", err)
	}
	return out, nil
}

// PruneAudit deletes entries older than before.
func (s *Store) PruneAudit(ctx context.Context, before time.Time) (int64, error) {
	var n int64
	err := s.write(ctx, "prune audit", func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM audit WHERE at < ?`, micros(before))
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	return n, err
}
