package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/ipsfhir/ipsfhir/adapter/store"
)

// ConnectionSettings lists the connections enabled or disabled from the
// console, in byte order of name.
func (s *Store) ConnectionSettings(ctx context.Context) ([]store.ConnectionSetting, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT name, enabled, changed_by, changed_at FROM connection_settings ORDER BY name`)
	if err != nil {
		return nil, storeErr("connection settings", err)
	}
	defer rows.Close()
	var out []store.ConnectionSetting
	for rows.Next() {
		var (
			c  store.ConnectionSetting
			at int64
		)
		if err := rows.Scan(&c.Name, &c.Enabled, &c.By, &at); err != nil {
			return nil, storeErr("connection settings", err)
		}
		c.At = fromMicros(at)
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, storeErr("connection settings", err)
	}
	return out, nil
}

// SetConnectionSetting records that a connection was enabled or disabled.
func (s *Store) SetConnectionSetting(ctx context.Context, c store.ConnectionSetting) error {
	if c.Name == "" || c.By == "" {
		return storeErr("set connection setting", fmt.Errorf("%w: a setting needs a connection and who changed it", store.ErrInvalid))
	}
	return s.write(ctx, "set connection setting", func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO connection_settings (name, enabled, changed_by, changed_at) VALUES (?1, ?2, ?3, ?4)
			ON CONFLICT (name) DO UPDATE SET enabled = ?2, changed_by = ?3, changed_at = ?4`, c.Name, c.Enabled, c.By, micros(c.At))
		return err
	})
}

// ClearConnectionSetting forgets what was recorded for a connection.
func (s *Store) ClearConnectionSetting(ctx context.Context, name string) error {
	return s.write(ctx, "clear connection setting", func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `DELETE FROM connection_settings WHERE name = ?`, name)
		return err
	})
}

// StartReadinessCheck records that a readiness check began, unless one
// that has not finished began less than running before at.
func (s *Store) StartReadinessCheck(ctx context.Context, connection, by string, at time.Time, running time.Duration) error {
	if connection == "" || by == "" {
		return storeErr("start readiness check", fmt.Errorf("%w: a check needs a connection and who runs it", store.ErrInvalid))
	}
	return s.write(ctx, "start readiness check", func(tx *sql.Tx) error {
		// One statement: the first of two runs inserts (or replaces a
		// finished or abandoned run), the second finds it and replaces
		// nothing.
		var ok bool
		err := tx.QueryRowContext(ctx, `INSERT INTO readiness_checks (connection, started_at, started_by, finished_at, report, problem)
			VALUES (?1, ?2, ?3, NULL, NULL, '')
			ON CONFLICT (connection) DO UPDATE SET started_at = ?2, started_by = ?3, finished_at = NULL, report = NULL, problem = ''
			WHERE readiness_checks.finished_at IS NOT NULL OR readiness_checks.started_at <= ?4
			RETURNING true`, connection, micros(at), by, micros(at.Add(-running))).Scan(&ok)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("a readiness check of the connection is running: %w", store.ErrConflict)
		}
		return err
	})
}

// FinishReadinessCheck records the outcome of the run that began at started.
func (s *Store) FinishReadinessCheck(ctx context.Context, connection string, started, at time.Time, report []byte, problem string) error {
	return s.write(ctx, "finish readiness check", func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE readiness_checks SET finished_at = ?, report = ?, problem = ?
			WHERE connection = ? AND started_at = ? AND finished_at IS NULL`, micros(at), report, problem, connection, micros(started))
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n == 0 {
			return errors.Join(err, fmt.Errorf("that readiness check is no longer the latest: %w", store.ErrNotFound))
		}
		return nil
	})
}

// ReadinessCheck returns the latest readiness check of a connection.
func (s *Store) ReadinessCheck(ctx context.Context, connection string) (store.ReadinessCheck, error) {
	c := store.ReadinessCheck{Connection: connection}
	var started int64
	var finished sql.NullInt64
	err := s.r.QueryRowContext(ctx, `SELECT started_at, started_by, finished_at, report, problem FROM readiness_checks WHERE connection = ?`, connection).
		Scan(&started, &c.By, &finished, &c.Report, &c.Problem)
	if errors.Is(err, sql.ErrNoRows) {
		return c, fmt.Errorf("store: readiness check: %w", store.ErrNotFound)
	}
	if err != nil {
		return c, storeErr("readiness check", err)
	}
	c.Started, c.Finished = fromMicros(started), fromNullMicros(finished)
	return c, nil
}
