package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/ipsfhir/ipsfhir/adapter/store"
	"github.com/ipsfhir/ipsfhir/ips"
)

// GetClient returns a client and its version, or store.ErrNotFound.
func (s *Store) GetClient(ctx context.Context, id string) (*ips.Client, store.Version, error) {
	var (
		v   int64
		doc []byte
	)
	err := s.queryRow(ctx, `SELECT version, doc FROM clients WHERE id = ?`, id).Scan(&v, &doc)
	if errors.Is(err, sql.ErrNoRows) {
		// The id is not echoed: it names no client, so it may be anything
		// a caller typed, such as a medical record number.
		return nil, 0, fmt.Errorf("store: get client: %w", store.ErrNotFound)
	}
	if err != nil {
		return nil, 0, storeErr("get client", err)
	}
	c, err := store.DecodeClient(id, doc)
	if err != nil {
		return nil, 0, storeErr("get client", err)
	}
	return c, store.Version(v), nil
}

// CountClients returns how many clients the store holds.
func (s *Store) CountClients(ctx context.Context) (int, error) {
	var n int
	if err := s.r.QueryRowContext(ctx, `SELECT count(*) FROM clients`).Scan(&n); err != nil {
		return 0, storeErr("count clients", err)
	}
	return n, nil
}

// ListClients returns up to limit clients with ids greater than after, in
// id order (byte order, as in the PostgreSQL store).
func (s *Store) ListClients(ctx context.Context, after string, limit int) ([]store.Stored, error) {
	if limit <= 0 {
		return nil, errors.New("store: list clients: limit must be positive")
	}
	rows, err := s.r.QueryContext(ctx, `SELECT id, version, doc, updated_at FROM clients WHERE id > ? ORDER BY id LIMIT ?`, after, limit)
	if err != nil {
		return nil, storeErr("list clients", err)
	}
	defer rows.Close()
	var out []store.Stored
	for rows.Next() {
		var (
			id  string
			v   int64
			doc []byte
			at  int64
		)
		if err := rows.Scan(&id, &v, &doc, &at); err != nil {
			return nil, storeErr("list clients", err)
		}
		c, err := store.DecodeClient(id, doc)
		if err != nil {
			return nil, storeErr("list clients", err)
		}
		out = append(out, store.Stored{Client: c, Version: store.Version(v), UpdatedAt: fromMicros(at)})
	}
	if err := rows.Err(); err != nil {
		return nil, storeErr("list clients", err)
	}
	return out, nil
}

// ClientByPatient returns the client with patient identifier system|value.
func (s *Store) ClientByPatient(ctx context.Context, system, value string) (store.Stored, error) {
	var (
		id  string
		v   int64
		doc []byte
		at  int64
	)
	err := s.queryRow(ctx, `SELECT id, version, doc, updated_at FROM clients WHERE patient_key = ?`, system+"|"+value).Scan(&id, &v, &doc, &at)
	if errors.Is(err, sql.ErrNoRows) {
		return store.Stored{}, fmt.Errorf("store: client by patient: %w", store.ErrNotFound)
	}
	if err != nil {
		return store.Stored{}, storeErr("client by patient", err)
	}
	c, err := store.DecodeClient(id, doc)
	if err != nil {
		return store.Stored{}, storeErr("client by patient", err)
	}
	return store.Stored{Client: c, Version: store.Version(v), UpdatedAt: fromMicros(at)}, nil
}

// SaveClients writes clients and enqueues an outbox item for each client on
// each connection, in one transaction. Clients are written in id order, as
// in the PostgreSQL store; versions come back in input order.
func (s *Store) SaveClients(ctx context.Context, clients []store.Stored, connections []string) ([]store.Version, error) {
	docs, order, err := store.EncodeBatch(clients)
	if err != nil {
		return nil, storeErr("save clients", err)
	}
	conns, err := store.Connections(connections)
	if err != nil {
		return nil, storeErr("save clients", err)
	}
	versions := make([]store.Version, len(clients))
	err = s.write(ctx, "save clients", func(tx *sql.Tx) error {
		now := micros(time.Now())
		insert, err := tx.PrepareContext(ctx, `INSERT INTO clients (id, version, doc, updated_at, patient_key) VALUES (?, 1, ?, ?, ?) ON CONFLICT (id) DO NOTHING`)
		if err != nil {
			return err
		}
		defer insert.Close()
		update, err := tx.PrepareContext(ctx, `UPDATE clients SET version = version + 1, doc = ?, updated_at = ?, patient_key = ? WHERE id = ? AND version = ? RETURNING version`)
		if err != nil {
			return err
		}
		defer update.Close()
		holder, err := tx.PrepareContext(ctx, `SELECT id FROM clients WHERE patient_key = ? AND id <> ?`)
		if err != nil {
			return err
		}
		defer holder.Close()
		enqueue, err := tx.PrepareContext(ctx, enqueueSQL)
		if err != nil {
			return err
		}
		defer enqueue.Close()

		for _, i := range order {
			c := clients[i]
			id := c.Client.ID
			key := store.PatientKey(c.Client)
			if key != nil {
				var other string
				err := holder.QueryRowContext(ctx, *key, id).Scan(&other)
				if err == nil {
					return store.PatientConflict(id, other)
				}
				if !errors.Is(err, sql.ErrNoRows) {
					return fmt.Errorf("client %s: %w", id, err)
				}
			}
			if c.Version == 0 {
				res, err := insert.ExecContext(ctx, id, string(docs[i]), now, key)
				if err != nil {
					return fmt.Errorf("client %s: %w", id, err)
				}
				if n, err := res.RowsAffected(); err != nil {
					return fmt.Errorf("client %s: %w", id, err)
				} else if n == 0 {
					return fmt.Errorf("client %s exists: %w", id, store.ErrConflict)
				}
				versions[i] = 1
			} else {
				var v int64
				err := update.QueryRowContext(ctx, string(docs[i]), now, key, id, int64(c.Version)).Scan(&v)
				if errors.Is(err, sql.ErrNoRows) {
					return fmt.Errorf("client %s is not at version %d: %w", id, c.Version, store.ErrConflict)
				}
				if err != nil {
					return fmt.Errorf("client %s: %w", id, err)
				}
				versions[i] = store.Version(v)
			}
			for _, conn := range conns {
				if _, err := enqueue.ExecContext(ctx, conn, id, now, now); err != nil {
					return fmt.Errorf("client %s: enqueue: %w", id, err)
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(clients) > 0 {
		for _, c := range conns {
			s.watch.Notify(c)
		}
	}
	return versions, nil
}

// enqueueSQL adds the outbox item for (connection, client), or coalesces
// into the pending one: a new generation, whose failures have not been
// counted yet, due no later than now (an item backing off is retried at once
// with the new content; one already due keeps its place in the queue).
// Arguments: connection, client id, now, now.
const enqueueSQL = `INSERT INTO outbox (connection, client_id, generation, attempts, due_at, created_at)
VALUES (?, ?, 1, 0, ?, ?)
ON CONFLICT (connection, client_id) DO UPDATE SET
	generation = generation + 1,
	attempts = 0,
	due_at = MIN(due_at, excluded.due_at)`
