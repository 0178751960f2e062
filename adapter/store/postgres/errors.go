package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/ipsfhir/ipsfhir/adapter/store"
)

// storeErr is how an operation returns an error: prefixed "store: op: ",
// and, when the database cannot be reached, as store.ErrUnavailable with a
// short reason in place of pgx's message, which names the server's address,
// user and database. ctx is the operation's: an error caused by the caller
// giving up (cancelled, or past its own deadline) is not an outage.
func storeErr(ctx context.Context, op string, err error) error {
	if reason, ok := unreachable(ctx, err); ok {
		return fmt.Errorf("store: %s: %w", op, store.Unavailable(reason))
	}
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) {
		// The caller gave up while a connection was being made (any other
		// failed connection is unreachable): say that, not where to.
		return fmt.Errorf("store: %s: connect: %w", op, ctx.Err())
	}
	return fmt.Errorf("store: %s: %w", op, err)
}

// unreachable reports whether err says the database cannot be reached,
// and why, in a few constant words.
func unreachable(ctx context.Context, err error) (string, bool) {
	if err == nil || ctx.Err() != nil {
		return "", false
	}
	var ce *pgconn.ConnectError
	connecting := errors.As(err, &ce)
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch {
		case pe.Code == "57P01": // admin_shutdown
			return "server shutting down", true
		case pe.Code == "57P02": // crash_shutdown
			return "server restarting after a crash", true
		case pe.Code == "57P03": // cannot_connect_now
			return "server starting up or shutting down", true
		case pe.Code == "53300": // too_many_connections
			return "too many connections", true
		case strings.HasPrefix(pe.Code, "08"): // connection exception
			return "connection failure", true
		case connecting:
			// Authentication, an unknown database: nothing answers
			// this process's queries until an operator acts.
			return "server refused the connection", true
		}
		return "", false
	}
	var (
		dns *net.DNSError
		ne  net.Error
	)
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused", true
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset", true
	case errors.Is(err, syscall.EPIPE), errors.Is(err, syscall.ECONNABORTED):
		return "connection broken", true
	case errors.Is(err, syscall.ENETUNREACH), errors.Is(err, syscall.EHOSTUNREACH):
		return "network unreachable", true
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, pgconn.ErrConnClosed):
		return "connection closed", true
	case errors.As(err, &dns):
		return "server name not found", true
	case pgconn.Timeout(err):
		// The caller's context is live, so this is connect_timeout or
		// the network's own timeout.
		return "timeout", true
	case errors.As(err, &ne):
		return "network error", true
	case connecting:
		return "cannot connect", true
	}
	return "", false
}
