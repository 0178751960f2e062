package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ipsfhir/ipsfhir/adapter/store"
	"github.com/ipsfhir/ipsfhir/ips"
)

// GetClient returns a client and its version, or store.ErrNotFound.
func (s *Store) GetClient(ctx context.Context, id string) (*ips.Client, store.Version, error) {
	var (
		v   int64
		doc []byte
	)
	err := s.pool.QueryRow(ctx, `SELECT version, doc FROM clients WHERE id = $1`, id).Scan(&v, &doc)
	if isNoRows(err) {
		// The id is not echoed: it names no client, so it may be anything
		// a caller typed, such as a medical record number.
		return nil, 0, fmt.Errorf("store: get client: %w", store.ErrNotFound)
	}
	if err != nil {
		return nil, 0, storeErr(ctx, "get client", err)
	}
	c, err := store.DecodeClient(id, doc)
	if err != nil {
		return nil, 0, storeErr(ctx, "get client", err)
	}
	return c, store.Version(v), nil
}

// CountClients returns how many clients the store holds.
func (s *Store) CountClients(ctx context.Context) (int, error) {
	var n int
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM clients`).Scan(&n); err != nil {
		return 0, storeErr(ctx, "count clients", err)
	}
	return n, nil
}

// ListClients returns up to limit clients with ids greater than after, in
// id order (byte order: the column is COLLATE "C").
func (s *Store) ListClients(ctx context.Context, after string, limit int) ([]store.Stored, error) {
	if limit <= 0 {
		return nil, errors.New("store: list clients: limit must be positive")
	}
	rows, _ := s.pool.Query(ctx, `SELECT id, version, doc, updated_at FROM clients WHERE id > $1 ORDER BY id LIMIT $2`, after, limit)
	out, err := pgx.CollectRows(rows, scanStored)
	if err != nil {
		return nil, storeErr(ctx, "list clients", err)
	}
	return out, nil
}

// scanStored reads a row of id, version, doc, updated_at.
func scanStored(row pgx.CollectableRow) (store.Stored, error) {
	var (
		id  string
		v   int64
		doc []byte
		at  time.Time
	)
	if err := row.Scan(&id, &v, &doc, &at); err != nil {
		return store.Stored{}, err
	}
	c, err := store.DecodeClient(id, doc)
	return store.Stored{Client: c, Version: store.Version(v), UpdatedAt: at.UTC()}, err
}

// ClientByPatient returns the client with patient identifier system|value.
func (s *Store) ClientByPatient(ctx context.Context, system, value string) (store.Stored, error) {
	rows, _ := s.pool.Query(ctx, `SELECT id, version, doc, updated_at FROM clients WHERE patient_key = $1`, system+"|"+value)
	st, err := pgx.CollectExactlyOneRow(rows, scanStored)
	if isNoRows(err) {
		return store.Stored{}, fmt.Errorf("store: client by patient: %w", store.ErrNotFound)
	}
	if err != nil {
		return store.Stored{}, storeErr(ctx, "client by patient", err)
	}
	return st, nil
}

// saveChunk is how many clients go to the server in one round trip.
const saveChunk = 200

// SaveClients writes clients and enqueues an outbox item for each client on
// each connection, in one transaction. Clients are written in id order, so
// two overlapping saves lock rows in the same order and cannot deadlock;
// versions come back in input order.
func (s *Store) SaveClients(ctx context.Context, clients []store.Stored, connections []string) ([]store.Version, error) {
	docs, order, err := store.EncodeBatch(clients)
	if err != nil {
		return nil, storeErr(ctx, "save clients", err)
	}
	conns, err := store.Connections(connections)
	if err != nil {
		return nil, storeErr(ctx, "save clients", err)
	}
	versions := make([]store.Version, len(clients))
	err = s.write(ctx, "save clients", func(tx pgx.Tx) error {
		for chunk := range slices.Chunk(order, saveChunk) {
			b := &pgx.Batch{}
			for _, i := range chunk {
				c := clients[i]
				id := c.Client.ID
				key := store.PatientKey(c.Client)
				if key != nil {
					b.Queue(`SELECT id FROM clients WHERE patient_key = $1 AND id <> $2`, *key, id).
						QueryRow(func(row pgx.Row) error {
							var other string
							if err := row.Scan(&other); isNoRows(err) {
								return nil
							} else if err != nil {
								return fmt.Errorf("client %s: %w", id, err)
							}
							return store.PatientConflict(id, other)
						})
				}
				if c.Version == 0 {
					// DO NOTHING, not an error, so that the conflict is
					// told apart from other failures by RETURNING no row.
					b.Queue(`INSERT INTO clients (id, version, doc, updated_at, patient_key) VALUES ($1, 1, $2, now(), $3)
						ON CONFLICT (id) DO NOTHING RETURNING version`, id, docs[i], key).
						QueryRow(func(row pgx.Row) error {
							var v int64
							if err := row.Scan(&v); isNoRows(err) {
								return fmt.Errorf("client %s exists: %w", id, store.ErrConflict)
							} else if err != nil {
								return fmt.Errorf("client %s: %w", id, err)
							}
							versions[i] = store.Version(v)
							return nil
						})
				} else {
					b.Queue(`UPDATE clients SET version = version + 1, doc = $2, updated_at = now(), patient_key = $4
						WHERE id = $1 AND version = $3 RETURNING version`, id, docs[i], int64(c.Version), key).
						QueryRow(func(row pgx.Row) error {
							var v int64
							if err := row.Scan(&v); isNoRows(err) {
								return fmt.Errorf("client %s is not at version %d: %w", id, c.Version, store.ErrConflict)
							} else if err != nil {
								return fmt.Errorf("client %s: %w", id, err)
							}
							versions[i] = store.Version(v)
							return nil
						})
				}
				for _, conn := range conns {
					b.Queue(enqueueSQL, conn, id)
				}
			}
			// Close runs the callbacks in order and returns the first error;
			// the transaction then rolls back everything, earlier chunks too.
			if err := tx.SendBatch(ctx, b).Close(); err != nil {
				if isUniqueViolation(err, "clients_patient_key") {
					// Another replica saved a client for the same
					// patient between the check and the write.
					return fmt.Errorf("a client already has a patient identifier in this save: %w", store.ErrConflict)
				}
				return err
			}
		}
		if len(clients) > 0 {
			for _, conn := range conns {
				if err := s.notify(ctx, tx, conn); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return versions, nil
}

// enqueueSQL adds the outbox item for (connection, client), or coalesces
// into the pending one: a new generation, whose failures have not been
// counted yet, due no later than now (an item backing off is retried at once
// with the new content; one already due keeps its place in the queue).
// Arguments: connection, client id.
const enqueueSQL = `INSERT INTO outbox AS o (connection, client_id, due_at, created_at)
VALUES ($1, $2, now(), now())
ON CONFLICT (connection, client_id) DO UPDATE SET
	generation = o.generation + 1,
	attempts = 0,
	due_at = LEAST(o.due_at, excluded.due_at)`
