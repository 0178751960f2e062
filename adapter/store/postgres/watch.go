package postgres

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// notifyChannel is the NOTIFY channel of outbox enqueues. Its payload is
// the schema and the connection name, separated by a space: stores in
// other schemas of the same database (tests, other deployments) hear each
// other's notifications and ignore them.
const notifyChannel = "ipsfhir_outbox"

// maxPayload keeps notifications under PostgreSQL's 8000-byte limit, past
// which pg_notify fails, and the transaction with it. A connection whose
// name would not fit is not notified; its workers poll.
const maxPayload = 7000

// notify queues, in tx, the wake of the push workers of connection on every
// Store of this database and schema. PostgreSQL delivers it when tx
// commits, and only then, and folds repeats within one transaction.
func (s *Store) notify(ctx context.Context, tx pgx.Tx, connection string) error {
	payload := s.schema + " " + connection
	if len(payload) > maxPayload {
		return nil
	}
	_, err := tx.Exec(ctx, `SELECT pg_notify($1, $2)`, notifyChannel, payload)
	return err
}

// WatchOutbox returns a channel woken after any Store on this database and
// schema committed an enqueue for connection (see store.Store). The first
// call starts the Store's listener: one connection of its own, outside the
// pool, that LISTENs until Close and reconnects, with backoff, when it is
// lost. Every (re)connection wakes all watchers, since notifications sent
// while no listener was connected are lost.
func (s *Store) WatchOutbox(ctx context.Context, connection string) <-chan struct{} {
	s.listenOnce.Do(s.startListener)
	return s.watch.Watch(ctx, connection)
}

func (s *Store) startListener() {
	ctx, cancel := context.WithCancel(context.Background())
	s.stopListener = cancel
	s.listenerDone = make(chan struct{})
	go func() {
		defer close(s.listenerDone)
		s.listen(ctx)
	}()
}

// Listener timing: a silent connection is pinged every listenIdle; a lost
// one is reconnected after listenRetry, doubling up to listenRetryMax.
const (
	listenIdle     = 30 * time.Second
	listenRetry    = 100 * time.Millisecond
	listenRetryMax = 5 * time.Second
)

// listen keeps a LISTEN connection until ctx ends.
func (s *Store) listen(ctx context.Context) {
	wait := listenRetry
	for {
		if s.listenSession(ctx) {
			wait = listenRetry
		}
		if ctx.Err() != nil {
			return
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		wait = min(2*wait, listenRetryMax)
	}
}

// listenSession connects, LISTENs and passes notifications on until the
// connection fails or ctx ends; it reports whether it got as far as
// listening.
func (s *Store) listenSession(ctx context.Context) bool {
	conn, err := pgx.ConnectConfig(ctx, s.connConfig.Copy())
	if err != nil {
		return false
	}
	defer func() {
		closeCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		conn.Close(closeCtx)
		s.listenerPID.Store(0)
	}()
	if _, err := conn.Exec(ctx, "LISTEN "+notifyChannel); err != nil {
		return false
	}
	// Whatever was enqueued while no listener was connected went unheard.
	s.watch.NotifyAll()
	s.listenerPID.Store(conn.PgConn().PID())
	prefix := s.schema + " "
	for {
		waitCtx, cancel := context.WithTimeout(ctx, listenIdle)
		n, err := conn.WaitForNotification(waitCtx)
		cancel()
		switch {
		case err == nil:
			if c, ok := strings.CutPrefix(n.Payload, prefix); ok && n.Channel == notifyChannel {
				s.watch.Notify(c)
			}
		case ctx.Err() != nil:
			return true
		case errors.Is(err, context.DeadlineExceeded) && !conn.IsClosed():
			// Quiet for a while: make sure the connection still
			// works, since a dead peer may never say so.
			pingCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
			err := conn.Ping(pingCtx)
			cancel()
			if err != nil {
				return true
			}
		default:
			return true
		}
	}
}
