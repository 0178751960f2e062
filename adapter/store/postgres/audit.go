package postgres

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ipsfhir/ipsfhir/adapter/store"
)

// AddAudit records an audit entry.
func (s *Store) AddAudit(ctx context.Context, e store.AuditEntry) error {
	if err := store.CheckAudit(e); err != nil {
		return storeErr(ctx, "add audit", err)
	}
	if e.At.IsZero() {
		e.At = time.Now()
	}
	_, err := s.pool.Exec(ctx, `INSERT INTO audit
		(at, caller, role, action, route, connection, resource_type, records, status)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
		micros(e.At), e.Caller, e.Role, e.Action, e.Route, e.Connection, e.ResourceType, e.Records, e.Status)
	if err != nil {
		return storeErr(ctx, "add audit", err)
	}
	return nil
}

// Audit lists audit entries, oldest first.
func (s *Store) Audit(ctx context.Context, q store.AuditQuery) ([]store.AuditEntry, error) {
	var since, until *time.Time
	if !q.Since.IsZero() {
		t := micros(q.Since)
		since = &t
	}
	if !q.Until.IsZero() {
		t := micros(q.Until)
		until = &t
	}
	rows, _ := s.pool.Query(ctx, `SELECT id, at, caller, role, action, route, connection, resource_type, records, status
		FROM audit
		WHERE id > $1 AND ($2 = '' OR caller = $2) AND ($3::timestamptz IS NULL OR at >= $3) AND ($4::timestamptz IS NULL OR at <= $4)
		ORDER BY id LIMIT $5`, q.After, q.Caller, since, until, q.LimitOf())
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.AuditEntry, error) {
		var e store.AuditEntry
		err := row.Scan(&e.ID, &e.At, &e.Caller, &e.Role, &e.Action, &e.Route, &e.Connection, &e.ResourceType, &e.Records, &e.Status)
		e.At = e.At.UTC()
		return e, err
	})
	if err != nil {
		return nil, storeErr(ctx, "audit", err)
	}
	if out == nil {
		out = []store.AuditEntry{}
	}
	return out, nil
}

// PruneAudit deletes entries older than before.
func (s *Store) PruneAudit(ctx context.Context, before time.Time) (int64, error) {
	tag, err := s.pool.Exec(ctx, `DELETE FROM audit WHERE at < $1`, micros(before))
	if err != nil {
		return 0, storeErr(ctx, "prune audit", err)
	}
	return tag.RowsAffected(), nil
}
