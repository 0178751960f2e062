package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ipsfhir/ipsfhir/adapter/store"
)

// leaseSQL picks due items of a connection that hold no live lease and
// locks them. SKIP LOCKED makes a concurrent Lease, in this process or
// another replica, pass over the rows this one has locked instead of
// waiting for them. An item that another Lease locked and committed after
// this statement's snapshot was taken is locked in its new version and the
// WHERE clause is checked again against it (READ COMMITTED re-check), so a
// lease just taken is never taken twice, and an item completed in the
// meantime drops out. Arguments: connection, n.
const leaseSQL = `SELECT id, client_id, attempts, generation
FROM outbox
WHERE connection = $1 AND due_at <= now()
  AND (leased_until IS NULL OR leased_until <= now())
ORDER BY due_at, id
LIMIT $2
FOR UPDATE SKIP LOCKED`

// Lease claims up to n due items of connection for owner. The database's
// clock decides when items are due and when leases end, so replicas whose
// clocks disagree still agree on who holds what.
func (s *Store) Lease(ctx context.Context, connection, owner string, n int, lease time.Duration) ([]store.OutboxItem, error) {
	if err := store.CheckLease(connection, owner, n, lease); err != nil {
		return nil, storeErr(ctx, "lease", err)
	}
	var items []store.OutboxItem
	err := s.write(ctx, "lease", func(tx pgx.Tx) error {
		rows, _ := tx.Query(ctx, leaseSQL, connection, n)
		var err error
		items, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.OutboxItem, error) {
			it := store.OutboxItem{Connection: connection, Owner: owner}
			err := row.Scan(&it.ID, &it.ClientID, &it.Attempts, &it.Generation)
			return it, err
		})
		if err != nil || len(items) == 0 {
			return err
		}
		ids := make([]int64, len(items))
		for i, it := range items {
			ids[i] = it.ID
		}
		_, err = tx.Exec(ctx, `UPDATE outbox
			SET owner = $2, leased_until = now() + $3 * interval '1 microsecond'
			WHERE id = ANY($1)`, ids, owner, lease.Microseconds())
		return err
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

// heldItem locks item's row and checks that item.Owner still holds its
// lease: ErrNotFound if the row is gone, ErrConflict if the lease was lost
// (it expired and another owner took the item) or already given back. The
// lease lives on the row, so one row lock covers both.
func heldItem(ctx context.Context, tx pgx.Tx, item store.OutboxItem) (outboxRow, error) {
	var (
		r     outboxRow
		owner *string
	)
	err := tx.QueryRow(ctx, `SELECT connection, client_id, generation, attempts, owner FROM outbox WHERE id = $1 FOR UPDATE`, item.ID).
		Scan(&r.connection, &r.clientID, &r.generation, &r.attempts, &owner)
	if isNoRows(err) {
		return r, fmt.Errorf("item %d: %w", item.ID, store.ErrNotFound)
	}
	if err != nil {
		return r, err
	}
	if owner == nil || *owner != item.Owner {
		return r, fmt.Errorf("item %d: lease not held by this owner: %w", item.ID, store.ErrConflict)
	}
	return r, nil
}

// Complete removes a leased item, or, when the client was saved during the
// lease (a newer generation), leaves it pending for the newer content; the
// save already made it due and reset its attempts.
func (s *Store) Complete(ctx context.Context, item store.OutboxItem) error {
	return s.write(ctx, "complete", func(tx pgx.Tx) error {
		r, err := heldItem(ctx, tx, item)
		if err != nil {
			return err
		}
		if r.generation != item.Generation {
			_, err = tx.Exec(ctx, `UPDATE outbox SET owner = NULL, leased_until = NULL WHERE id = $1`, item.ID)
			return err
		}
		if _, err = tx.Exec(ctx, `DELETE FROM outbox WHERE id = $1`, item.ID); err != nil {
			return err
		}
		return finishLoad(ctx, tx, r.connection)
	})
}

// Renew makes a held lease last lease from now (see store.Store).
func (s *Store) Renew(ctx context.Context, item store.OutboxItem, lease time.Duration) error {
	if err := store.CheckLease(item.Connection, item.Owner, 1, lease); err != nil {
		return storeErr(ctx, "renew", err)
	}
	return s.write(ctx, "renew", func(tx pgx.Tx) error {
		if _, err := heldItem(ctx, tx, item); err != nil {
			return err
		}
		// The database's clock, as Lease's.
		_, err := tx.Exec(ctx, `UPDATE outbox SET leased_until = now() + $1 * interval '1 microsecond' WHERE id = $2`, lease.Microseconds(), item.ID)
		return err
	})
}

// finishLoad records the end of connection's initial load when none of its
// items is left, in the transaction that removed one. While the load runs
// it locks the connection's row first, so that of two workers removing the
// last two items at once the second waits for the first to commit and then
// sees no item left (its next statement reads what was committed by then);
// without the lock each would still see the other's item and neither
// would record the end. Once the load is finished nothing is locked.
func finishLoad(ctx context.Context, tx pgx.Tx, connection string) error {
	var one int
	err := tx.QueryRow(ctx, `SELECT 1 FROM connections
		WHERE name = $1 AND load_total IS NOT NULL AND load_finished_at IS NULL
		FOR UPDATE`, connection).Scan(&one)
	if isNoRows(err) {
		return nil
	}
	if err != nil {
		return err
	}
	_, err = tx.Exec(ctx, `UPDATE connections c SET load_finished_at = now()
		WHERE c.name = $1 AND c.load_total IS NOT NULL AND c.load_finished_at IS NULL
		  AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.connection = $1 AND o.created_at <= c.seeded_at)`, connection)
	return err
}

// LoadProgress reports connection's initial load from its connections row
// and the load's items still pending.
func (s *Store) LoadProgress(ctx context.Context, connection string) (store.LoadProgress, error) {
	var (
		started  time.Time
		total    *int32
		finished *time.Time
		pending  int64
		now      time.Time
	)
	err := s.pool.QueryRow(ctx, `
		SELECT c.seeded_at, c.load_total, c.load_finished_at,
		       CASE WHEN c.load_finished_at IS NULL
		            THEN (SELECT count(*) FROM outbox o WHERE o.connection = c.name AND o.created_at <= c.seeded_at)
		            ELSE 0 END,
		       now()
		FROM connections c WHERE c.name = $1`, connection).Scan(&started, &total, &finished, &pending, &now)
	if isNoRows(err) || err == nil && total == nil {
		return store.LoadProgress{}, storeErr(ctx, "load progress", fmt.Errorf("connection %s: no initial load recorded: %w", connection, store.ErrNotFound))
	}
	if err != nil {
		return store.LoadProgress{}, storeErr(ctx, "load progress", err)
	}
	return store.NewLoadProgress(int(*total), int(pending), started.UTC(), utc(finished), now.UTC()), nil
}

// Fail records a failed attempt. Attempts count failures of the current
// content: when the client was saved during the lease, the failed push was
// of stale content, so it is not counted and the item cannot die of it.
func (s *Store) Fail(ctx context.Context, item store.OutboxItem, reason string, retryAt time.Time, maxAttempts int) (bool, error) {
	if maxAttempts <= 0 {
		return false, errors.New("store: fail: maxAttempts must be positive")
	}
	dead := false
	err := s.write(ctx, "fail", func(tx pgx.Tx) error {
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
			if _, err := tx.Exec(ctx, `INSERT INTO dead_letters (id, connection, client_id, attempts, reason, failed_at) VALUES ($1, $2, $3, $4, $5, now())`,
				item.ID, r.connection, r.clientID, attempts, reason); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `DELETE FROM outbox WHERE id = $1`, item.ID); err != nil {
				return err
			}
			if err := finishLoad(ctx, tx, r.connection); err != nil {
				return err
			}
			dead = true
		} else if _, err := tx.Exec(ctx, `UPDATE outbox SET attempts = $1, due_at = $2, last_error = $3, owner = NULL, leased_until = NULL WHERE id = $4`,
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
	rows, _ := s.pool.Query(ctx, `SELECT connection, count(*) FROM outbox GROUP BY connection`)
	out := map[string]int{}
	var (
		c string
		n int
	)
	_, err := pgx.ForEachRow(rows, []any{&c, &n}, func() error {
		out[c] = n
		return nil
	})
	if err != nil {
		return nil, storeErr(ctx, "outbox depth", err)
	}
	return out, nil
}

// OldestPending returns when each connection's oldest pending item was enqueued.
func (s *Store) OldestPending(ctx context.Context) (map[string]time.Time, error) {
	rows, _ := s.pool.Query(ctx, `SELECT connection, min(created_at) FROM outbox GROUP BY connection`)
	out := map[string]time.Time{}
	var (
		c  string
		at time.Time
	)
	_, err := pgx.ForEachRow(rows, []any{&c, &at}, func() error {
		out[c] = at.UTC()
		return nil
	})
	if err != nil {
		return nil, storeErr(ctx, "oldest pending", err)
	}
	return out, nil
}

// DeadLetters lists a connection's dead letters ("" for all), oldest first.
func (s *Store) DeadLetters(ctx context.Context, connection string) ([]store.DeadLetter, error) {
	rows, _ := s.pool.Query(ctx, `
		SELECT id, connection, client_id, attempts, reason, failed_at FROM dead_letters
		WHERE $1 = '' OR connection = $1
		ORDER BY failed_at, id`, connection)
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.DeadLetter, error) {
		var d store.DeadLetter
		err := row.Scan(&d.ID, &d.Connection, &d.ClientID, &d.Attempts, &d.Reason, &d.FailedAt)
		d.FailedAt = d.FailedAt.UTC()
		return d, err
	})
	if err != nil {
		return nil, storeErr(ctx, "dead letters", err)
	}
	return out, nil
}

// FailureReasons groups failing items and dead letters by connection and
// reason, largest group first; ties are ordered COLLATE "C", bytewise as
// in the SQLite store, whatever the database's collation.
func (s *Store) FailureReasons(ctx context.Context, connection string) ([]store.ReasonCount, error) {
	rows, _ := s.pool.Query(ctx, `
		SELECT connection, reason, sum(pending)::int, sum(dead)::int FROM (
			SELECT connection, last_error AS reason, 1 AS pending, 0 AS dead FROM outbox
			WHERE attempts > 0 AND ($1 = '' OR connection = $1)
			UNION ALL
			SELECT connection, reason, 0, 1 FROM dead_letters
			WHERE $1 = '' OR connection = $1
		) f
		GROUP BY connection, reason
		ORDER BY sum(pending) + sum(dead) DESC, connection COLLATE "C", reason COLLATE "C"`, connection)
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.ReasonCount, error) {
		var r store.ReasonCount
		err := row.Scan(&r.Connection, &r.Reason, &r.Pending, &r.Dead)
		return r, err
	})
	if err != nil {
		return nil, storeErr(ctx, "failure reasons", err)
	}
	return out, nil
}

// Replay turns a dead letter back into a pending item with no failures
// counted, due now; if the client already has a pending item on that
// connection (it was saved since), the dead letter coalesces into it.
func (s *Store) Replay(ctx context.Context, id int64) error {
	return s.write(ctx, "replay", func(tx pgx.Tx) error {
		var conn, clientID string
		err := tx.QueryRow(ctx, `DELETE FROM dead_letters WHERE id = $1 RETURNING connection, client_id`, id).Scan(&conn, &clientID)
		if isNoRows(err) {
			return fmt.Errorf("dead letter %d: %w", id, store.ErrNotFound)
		}
		if err != nil {
			return err
		}
		if _, err = tx.Exec(ctx, enqueueSQL, conn, clientID); err != nil {
			return err
		}
		return s.notify(ctx, tx, conn)
	})
}

// SeedConnections queues every client for each connection newly enabled
// and forgets the connections no longer enabled. The table lock makes
// replicas starting together take turns: the second finds nothing new.
func (s *Store) SeedConnections(ctx context.Context, enabled []string) (map[string]int, error) {
	conns, err := store.Connections(enabled)
	if err != nil {
		return nil, storeErr(ctx, "seed connections", err)
	}
	if conns == nil {
		conns = []string{}
	}
	out := map[string]int{}
	err = s.write(ctx, "seed connections", func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `LOCK TABLE connections IN SHARE ROW EXCLUSIVE MODE`); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM connections WHERE NOT (name = ANY($1))`, conns); err != nil {
			return err
		}
		for _, c := range conns {
			tag, err := tx.Exec(ctx, `INSERT INTO connections (name, seeded_at) VALUES ($1, now()) ON CONFLICT (name) DO NOTHING`, c)
			if err != nil {
				return err
			}
			if tag.RowsAffected() == 0 {
				continue
			}
			if out[c], err = enqueueAll(ctx, tx, c); err != nil {
				return err
			}
			// The load is everything pending for c now, items left from
			// before it was disabled included.
			if _, err := tx.Exec(ctx, `UPDATE connections SET
				load_total = (SELECT count(*) FROM outbox WHERE connection = $1 AND created_at <= now()),
				load_finished_at = NULL
				WHERE name = $1`, c); err != nil {
				return err
			}
			if err := finishLoad(ctx, tx, c); err != nil {
				return err
			}
			if err := s.notify(ctx, tx, c); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// EnqueueAll queues every client for connection.
func (s *Store) EnqueueAll(ctx context.Context, connection string) (int, error) {
	if _, err := store.Connections([]string{connection}); err != nil {
		return 0, storeErr(ctx, "enqueue all", err)
	}
	var n int
	err := s.write(ctx, "enqueue all", func(tx pgx.Tx) (err error) {
		if n, err = enqueueAll(ctx, tx, connection); err != nil {
			return err
		}
		return s.notify(ctx, tx, connection)
	})
	return n, err
}

func enqueueAll(ctx context.Context, tx pgx.Tx, connection string) (int, error) {
	tag, err := tx.Exec(ctx, `INSERT INTO outbox (connection, client_id, due_at, created_at)
		SELECT $1, id, now(), now() FROM clients
		ON CONFLICT (connection, client_id) DO NOTHING`, connection)
	if err != nil {
		return 0, err
	}
	return int(tag.RowsAffected()), nil
}

// Enqueue queues one client for one connection again, as a save would for
// that connection alone: a pending item gets a new generation, attempts
// reset and is due now. A client that no longer exists is left alone.
func (s *Store) Enqueue(ctx context.Context, connection, clientID string) error {
	if _, err := store.Connections([]string{connection}); err != nil {
		return storeErr(ctx, "enqueue", err)
	}
	return s.write(ctx, "enqueue", func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO outbox AS o (connection, client_id, due_at, created_at)
			SELECT $1, id, now(), now() FROM clients WHERE id = $2
			ON CONFLICT (connection, client_id) DO UPDATE SET
				generation = o.generation + 1,
				attempts = 0,
				due_at = LEAST(o.due_at, excluded.due_at)`, connection, clientID)
		if err != nil {
			return err
		}
		return s.notify(ctx, tx, connection)
	})
}
