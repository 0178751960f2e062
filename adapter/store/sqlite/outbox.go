package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/ipsfhir/ipsfhir/adapter/store"
)

// Lease claims up to n due items of connection for owner. It runs in a write
// transaction, and this process has one write connection whose transactions
// BEGIN IMMEDIATE: no other lease, in this process or another on the same
// file, can read the same free items before this one has marked them taken.
func (s *Store) Lease(ctx context.Context, connection, owner string, n int, lease time.Duration) ([]store.OutboxItem, error) {
	if err := store.CheckLease(connection, owner, n, lease); err != nil {
		return nil, storeErr("lease", err)
	}
	var items []store.OutboxItem
	err := s.write(ctx, "lease", func(tx *sql.Tx) error {
		items = nil
		// Read the clock only once the write lock is held, so time spent
		// waiting for it does not eat into the lease.
		now := time.Now()
		rows, err := tx.QueryContext(ctx, `
			SELECT id, client_id, attempts, generation
			FROM outbox
			WHERE connection = ? AND due_at <= ?
			  AND (leased_until IS NULL OR leased_until <= ?)
			ORDER BY due_at, id
			LIMIT ?`, connection, micros(now), micros(now), n)
		if err != nil {
			return err
		}
		for rows.Next() {
			it := store.OutboxItem{Connection: connection, Owner: owner}
			if err := rows.Scan(&it.ID, &it.ClientID, &it.Attempts, &it.Generation); err != nil {
				rows.Close()
				return err
			}
			items = append(items, it)
		}
		if err := rows.Err(); err != nil {
			return err
		}
		rows.Close()
		until := micros(now.Add(lease))
		for _, it := range items {
			if _, err := tx.ExecContext(ctx, `UPDATE outbox SET owner = ?, leased_until = ? WHERE id = ?`,
				owner, until, it.ID); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return items, nil
}

// outboxRow is an outbox row as Complete and Fail see it.
type outboxRow struct {
	connection, clientID string
	generation           int64
	attempts             int
}

// heldItem reads item's row and checks that item.Owner still holds its
// lease: ErrNotFound if the row is gone, ErrConflict if the lease was lost
// (it expired and another owner took the item) or already given back.
func heldItem(ctx context.Context, tx *sql.Tx, item store.OutboxItem) (outboxRow, error) {
	var (
		r     outboxRow
		owner sql.NullString
	)
	err := tx.QueryRowContext(ctx, `SELECT connection, client_id, generation, attempts, owner FROM outbox WHERE id = ?`, item.ID).
		Scan(&r.connection, &r.clientID, &r.generation, &r.attempts, &owner)
	if errors.Is(err, sql.ErrNoRows) {
		return r, fmt.Errorf("item %d: %w", item.ID, store.ErrNotFound)
	}
	if err != nil {
		return r, err
	}
	if !owner.Valid || owner.String != item.Owner {
		return r, fmt.Errorf("item %d: lease not held by this owner: %w", item.ID, store.ErrConflict)
	}
	return r, nil
}

// Complete removes a leased item, or, when the client was saved during the
// lease (a newer generation), leaves it pending for the newer content; the
// save already made it due and reset its attempts.
// Complete's statements, prepared at Open.
const (
	qCompleteRelease = `UPDATE outbox SET owner = NULL, leased_until = NULL WHERE id = ?`
	qCompleteDelete  = `DELETE FROM outbox WHERE id = ?`
)

func (s *Store) Complete(ctx context.Context, item store.OutboxItem) error {
	return s.write(ctx, "complete", func(tx *sql.Tx) error {
		r, err := heldItem(ctx, tx, item)
		if err != nil {
			return err
		}
		if r.generation != item.Generation {
			_, err = s.txExec(ctx, tx, qCompleteRelease, item.ID)
			return err
		}
		if _, err = s.txExec(ctx, tx, qCompleteDelete, item.ID); err != nil {
			return err
		}
		return finishLoad(ctx, tx, r.connection)
	})
}

// Renew makes a held lease last lease from now (see store.Store).
func (s *Store) Renew(ctx context.Context, item store.OutboxItem, lease time.Duration) error {
	if err := store.CheckLease(item.Connection, item.Owner, 1, lease); err != nil {
		return storeErr("renew", err)
	}
	return s.write(ctx, "renew", func(tx *sql.Tx) error {
		if _, err := heldItem(ctx, tx, item); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `UPDATE outbox SET leased_until = ? WHERE id = ?`, micros(time.Now().Add(lease)), item.ID)
		return err
	})
}

// finishLoad records the end of connection's initial load when none of its
// items is left, in the transaction that removed one.
func finishLoad(ctx context.Context, tx *sql.Tx, connection string) error {
	_, err := tx.ExecContext(ctx, `UPDATE connections SET load_finished_at = ?2
		WHERE name = ?1 AND load_total IS NOT NULL AND load_finished_at IS NULL
		  AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.connection = ?1 AND o.created_at <= connections.seeded_at)`,
		connection, micros(time.Now()))
	return err
}

// LoadProgress reports connection's initial load from its connections row
// and the load's items still pending.
func (s *Store) LoadProgress(ctx context.Context, connection string) (store.LoadProgress, error) {
	var (
		started  int64
		total    sql.NullInt64
		finished sql.NullInt64
		pending  int
	)
	err := s.r.QueryRowContext(ctx, `
		SELECT c.seeded_at, c.load_total, c.load_finished_at,
		       CASE WHEN c.load_finished_at IS NULL
		            THEN (SELECT count(*) FROM outbox o WHERE o.connection = c.name AND o.created_at <= c.seeded_at)
		            ELSE 0 END
		FROM connections c WHERE c.name = ?`, connection).Scan(&started, &total, &finished, &pending)
	if errors.Is(err, sql.ErrNoRows) || err == nil && !total.Valid {
		return store.LoadProgress{}, storeErr("load progress", fmt.Errorf("connection %s: no initial load recorded: %w", connection, store.ErrNotFound))
	}
	if err != nil {
		return store.LoadProgress{}, storeErr("load progress", err)
	}
	return store.NewLoadProgress(int(total.Int64), pending, fromMicros(started), fromNullMicros(finished), time.Now()), nil
}

// Fail records a failed attempt. Attempts count failures of the current
// content: when the client was saved during the lease, the failed push was
// of stale content, so it is not counted and the item cannot die of it.
func (s *Store) Fail(ctx context.Context, item store.OutboxItem, reason string, retryAt time.Time, maxAttempts int) (bool, error) {
	if maxAttempts <= 0 {
		return false, errors.New("store: fail: maxAttempts must be positive")
	}
	dead := false
	err := s.write(ctx, "fail", func(tx *sql.Tx) error {
		dead = false
		r, err := heldItem(ctx, tx, item)
		if err != nil {
			return err
		}
		attempts := r.attempts
		if r.generation == item.Generation {
			attempts++
		}
		if attempts >= maxAttempts {
			if _, err := tx.ExecContext(ctx, `INSERT INTO dead_letters (id, connection, client_id, attempts, reason, failed_at) VALUES (?, ?, ?, ?, ?, ?)`,
				item.ID, r.connection, r.clientID, attempts, reason, micros(time.Now())); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, `DELETE FROM outbox WHERE id = ?`, item.ID); err != nil {
				return err
			}
			if err := finishLoad(ctx, tx, r.connection); err != nil {
				return err
			}
			dead = true
		} else if _, err := tx.ExecContext(ctx, `UPDATE outbox SET attempts = ?, due_at = ?, last_error = ?, owner = NULL, leased_until = NULL WHERE id = ?`,
			attempts, micros(retryAt), reason, item.ID); err != nil {
			return err
		}
		return nil
	})
	if err != nil {
		return false, err
	}
	return dead, nil
}

// OutboxDepth counts items not yet done (pending, leased or backing off)
// per connection; connections with none are absent.
func (s *Store) OutboxDepth(ctx context.Context) (map[string]int, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT connection, count(*) FROM outbox GROUP BY connection`)
	if err != nil {
		return nil, storeErr("outbox depth", err)
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var (
			c string
			n int
		)
		if err := rows.Scan(&c, &n); err != nil {
			return nil, storeErr("outbox depth", err)
		}
		out[c] = n
	}
	if err := rows.Err(); err != nil {
		return nil, storeErr("outbox depth", err)
	}
	return out, nil
}

// OldestPending returns when each connection's oldest pending item was enqueued.
func (s *Store) OldestPending(ctx context.Context) (map[string]time.Time, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT connection, min(created_at) FROM outbox GROUP BY connection`)
	if err != nil {
		return nil, storeErr("oldest pending", err)
	}
	defer rows.Close()
	out := map[string]time.Time{}
	for rows.Next() {
		var (
			c  string
			us int64
		)
		if err := rows.Scan(&c, &us); err != nil {
			return nil, storeErr("oldest pending", err)
		}
		out[c] = fromMicros(us)
	}
	if err := rows.Err(); err != nil {
		return nil, storeErr("oldest pending", err)
	}
	return out, nil
}

// DeadLetters lists a connection's dead letters ("" for all), oldest first.
func (s *Store) DeadLetters(ctx context.Context, connection string) ([]store.DeadLetter, error) {
	rows, err := s.r.QueryContext(ctx, `
		SELECT id, connection, client_id, attempts, reason, failed_at FROM dead_letters
		WHERE ?1 = '' OR connection = ?1
		ORDER BY failed_at, id`, connection)
	if err != nil {
		return nil, storeErr("dead letters", err)
	}
	defer rows.Close()
	var out []store.DeadLetter
	for rows.Next() {
		var (
			d  store.DeadLetter
			at int64
		)
		if err := rows.Scan(&d.ID, &d.Connection, &d.ClientID, &d.Attempts, &d.Reason, &at); err != nil {
			return nil, storeErr("dead letters", err)
		}
		d.FailedAt = fromMicros(at)
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, storeErr("dead letters", err)
	}
	return out, nil
}

// FailureReasons groups failing items and dead letters by connection and
// reason, largest group first (SQLite compares text bytewise, as the
// PostgreSQL store does with COLLATE "C").
func (s *Store) FailureReasons(ctx context.Context, connection string) ([]store.ReasonCount, error) {
	rows, err := s.r.QueryContext(ctx, `
		SELECT connection, reason, sum(pending), sum(dead) FROM (
			SELECT connection, last_error AS reason, 1 AS pending, 0 AS dead FROM outbox
			WHERE attempts > 0 AND (?1 = '' OR connection = ?1)
			UNION ALL
			SELECT connection, reason, 0, 1 FROM dead_letters
			WHERE ?1 = '' OR connection = ?1
		)
		GROUP BY connection, reason
		ORDER BY sum(pending) + sum(dead) DESC, connection, reason`, connection)
	if err != nil {
		return nil, storeErr("failure reasons", err)
	}
	defer rows.Close()
	var out []store.ReasonCount
	for rows.Next() {
		var r store.ReasonCount
		if err := rows.Scan(&r.Connection, &r.Reason, &r.Pending, &r.Dead); err != nil {
			return nil, storeErr("failure reasons", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, storeErr("failure reasons", err)
	}
	return out, nil
}

// Replay turns a dead letter back into a pending item with no failures
// counted, due now; if the client already has a pending item on that
// connection (it was saved since), the dead letter coalesces into it.
func (s *Store) Replay(ctx context.Context, id int64) error {
	var conn string
	err := s.write(ctx, "replay", func(tx *sql.Tx) error {
		var clientID string
		err := tx.QueryRowContext(ctx, `DELETE FROM dead_letters WHERE id = ? RETURNING connection, client_id`, id).Scan(&conn, &clientID)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("dead letter %d: %w", id, store.ErrNotFound)
		}
		if err != nil {
			return err
		}
		now := micros(time.Now())
		_, err = tx.ExecContext(ctx, enqueueSQL, conn, clientID, now, now)
		return err
	})
	if err == nil {
		s.watch.Notify(conn)
	}
	return err
}

// SeedConnections queues every client for each connection newly enabled
// and forgets the connections no longer enabled.
func (s *Store) SeedConnections(ctx context.Context, enabled []string) (map[string]int, error) {
	conns, err := store.Connections(enabled)
	if err != nil {
		return nil, storeErr("seed connections", err)
	}
	out := map[string]int{}
	err = s.write(ctx, "seed connections", func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, `SELECT name FROM connections`)
		if err != nil {
			return err
		}
		var known []string
		for rows.Next() {
			var n string
			if err := rows.Scan(&n); err != nil {
				rows.Close()
				return err
			}
			known = append(known, n)
		}
		if err := rows.Close(); err != nil {
			return err
		}
		for _, n := range known {
			if !slices.Contains(conns, n) {
				if _, err := tx.ExecContext(ctx, `DELETE FROM connections WHERE name = ?`, n); err != nil {
					return err
				}
			}
		}
		now := micros(time.Now())
		for _, c := range conns {
			if slices.Contains(known, c) {
				continue
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO connections (name, seeded_at) VALUES (?, ?)`, c, now); err != nil {
				return err
			}
			if out[c], err = enqueueAll(ctx, tx, c, now); err != nil {
				return err
			}
			// The load is everything pending for c now, items left from
			// before it was disabled included.
			if _, err := tx.ExecContext(ctx, `UPDATE connections SET
				load_total = (SELECT count(*) FROM outbox WHERE connection = ?1 AND created_at <= ?2),
				load_finished_at = NULL
				WHERE name = ?1`, c, now); err != nil {
				return err
			}
			if err := finishLoad(ctx, tx, c); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for c := range out {
		s.watch.Notify(c)
	}
	return out, nil
}

// EnqueueAll queues every client for connection.
func (s *Store) EnqueueAll(ctx context.Context, connection string) (int, error) {
	if _, err := store.Connections([]string{connection}); err != nil {
		return 0, storeErr("enqueue all", err)
	}
	var n int
	err := s.write(ctx, "enqueue all", func(tx *sql.Tx) (err error) {
		n, err = enqueueAll(ctx, tx, connection, micros(time.Now()))
		return err
	})
	if err == nil {
		s.watch.Notify(connection)
	}
	return n, err
}

func enqueueAll(ctx context.Context, tx *sql.Tx, connection string, now int64) (int, error) {
	res, err := tx.ExecContext(ctx, `INSERT INTO outbox (connection, client_id, generation, attempts, due_at, created_at)
		SELECT ?, id, 1, 0, ?, ? FROM clients WHERE true
		ON CONFLICT (connection, client_id) DO NOTHING`, connection, now, now)
	if err != nil {
		return 0, err
	}
	k, err := res.RowsAffected()
	return int(k), err
}

// Enqueue queues one client for one connection again, as a save would for
// that connection alone: a pending item gets a new generation, attempts
// reset and is due now. A client that no longer exists is left alone.
func (s *Store) Enqueue(ctx context.Context, connection, clientID string) error {
	if _, err := store.Connections([]string{connection}); err != nil {
		return storeErr("enqueue", err)
	}
	now := micros(time.Now())
	err := s.write(ctx, "enqueue", func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO outbox (connection, client_id, generation, attempts, due_at, created_at)
			SELECT ?, id, 1, 0, ?, ? FROM clients WHERE id = ?
			ON CONFLICT (connection, client_id) DO UPDATE SET
				generation = generation + 1,
				attempts = 0,
				due_at = MIN(due_at, excluded.due_at)`, connection, now, now, clientID)
		return err
	})
	if err == nil {
		s.watch.Notify(connection)
	}
	return err
}
