package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ipsfhir/ipsfhir/adapter/store"
)

// ConnectionSettings lists the connections enabled or disabled from the
// console, in byte order of name.
func (s *Store) ConnectionSettings(ctx context.Context) ([]store.ConnectionSetting, error) {
	rows, err := s.pool.Query(ctx, `SELECT name, enabled, changed_by, changed_at FROM connection_settings ORDER BY name COLLATE "C"`)
	if err != nil {
		return nil, storeErr(ctx, "connection settings", err)
	}
	defer rows.Close()
	var out []store.ConnectionSetting
	for rows.Next() {
		var c store.ConnectionSetting
		if err := rows.Scan(&c.Name, &c.Enabled, &c.By, &c.At); err != nil {
			return nil, storeErr(ctx, "connection settings", err)
		}
		c.At = c.At.UTC()
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, storeErr(ctx, "connection settings", err)
	}
	return out, nil
}

// SetConnectionSetting records that a connection was enabled or disabled.
func (s *Store) SetConnectionSetting(ctx context.Context, c store.ConnectionSetting) error {
	if c.Name == "" || c.By == "" {
		return storeErr(ctx, "set connection setting", fmt.Errorf("%w: a setting needs a connection and who changed it", store.ErrInvalid))
	}
	return s.write(ctx, "set connection setting", func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO connection_settings (name, enabled, changed_by, changed_at) VALUES ($1, $2, $3, $4)
			ON CONFLICT (name) DO UPDATE SET enabled = $2, changed_by = $3, changed_at = $4`, c.Name, c.Enabled, c.By, c.At)
		return err
	})
}

// ClearConnectionSetting forgets what was recorded for a connection.
func (s *Store) ClearConnectionSetting(ctx context.Context, name string) error {
	return s.write(ctx, "clear connection setting", func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `DELETE FROM connection_settings WHERE name = $1`, name)
		return err
	})
}

// StartReadinessCheck records that a readiness check began, unless one
// that has not finished began less than running before at.
func (s *Store) StartReadinessCheck(ctx context.Context, connection, by string, at time.Time, running time.Duration) error {
	if connection == "" || by == "" {
		return storeErr(ctx, "start readiness check", fmt.Errorf("%w: a check needs a connection and who runs it", store.ErrInvalid))
	}
	at = at.Truncate(time.Microsecond)
	return s.write(ctx, "start readiness check", func(tx pgx.Tx) error {
		// One statement: of replicas starting at once, the first inserts
		// (or replaces a finished or abandoned run) and the others find
		// its run and replace nothing.
		var ok bool
		err := tx.QueryRow(ctx, `INSERT INTO readiness_checks (connection, started_at, started_by, finished_at, report, problem)
			VALUES ($1, $2, $3, NULL, NULL, '')
			ON CONFLICT (connection) DO UPDATE SET started_at = $2, started_by = $3, finished_at = NULL, report = NULL, problem = ''
			WHERE readiness_checks.finished_at IS NOT NULL OR readiness_checks.started_at <= $4
			RETURNING true`, connection, at, by, at.Add(-running)).Scan(&ok)
		if isNoRows(err) {
			return fmt.Errorf("a readiness check of the connection is running: %w", store.ErrConflict)
		}
		return err
	})
}

// FinishReadinessCheck records the outcome of the run that began at started.
func (s *Store) FinishReadinessCheck(ctx context.Context, connection string, started, at time.Time, report []byte, problem string) error {
	return s.write(ctx, "finish readiness check", func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE readiness_checks SET finished_at = $1, report = $2, problem = $3
			WHERE connection = $4 AND started_at = $5 AND finished_at IS NULL`, at, jsonOrNil(report), problem, connection, started.Truncate(time.Microsecond))
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("that readiness check is no longer the latest: %w", store.ErrNotFound)
		}
		return nil
	})
}

// jsonOrNil passes a JSON document to a jsonb column, NULL for none.
func jsonOrNil(b []byte) any {
	if b == nil {
		return nil
	}
	return string(b)
}

// ReadinessCheck returns the latest readiness check of a connection.
func (s *Store) ReadinessCheck(ctx context.Context, connection string) (store.ReadinessCheck, error) {
	c := store.ReadinessCheck{Connection: connection}
	var finished *time.Time
	var report *string
	err := s.pool.QueryRow(ctx, `SELECT started_at, started_by, finished_at, report::text, problem FROM readiness_checks WHERE connection = $1`, connection).
		Scan(&c.Started, &c.By, &finished, &report, &c.Problem)
	if isNoRows(err) {
		return c, fmt.Errorf("store: readiness check: %w", store.ErrNotFound)
	}
	if err != nil {
		return c, storeErr(ctx, "readiness check", err)
	}
	c.Started = c.Started.UTC()
	if finished != nil {
		c.Finished = finished.UTC()
	}
	if report != nil {
		c.Report = []byte(*report)
	}
	return c, nil
}
