package sqlite

import (
	"errors"
	"fmt"

	msqlite "modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/ipsfhir/ipsfhir/adapter/store"
)

// storeErr is how an operation returns an error: prefixed "store: op: ",
// and, when the database cannot be used right now, as store.ErrUnavailable
// with a short reason in place of SQLite's message, which may name the
// file.
func storeErr(op string, err error) error {
	if reason, ok := unavailable(err); ok {
		return fmt.Errorf("store: %s: %w", op, store.Unavailable(reason))
	}
	return fmt.Errorf("store: %s: %w", op, err)
}

// unavailable reports whether err says the database cannot be used right
// now, and why, in a few constant words: another process held the file's
// write lock for longer than busy_timeout, or the file cannot be opened
// (its directory is gone, permissions, no file descriptors left).
func unavailable(err error) (string, bool) {
	var se *msqlite.Error
	if !errors.As(err, &se) {
		return "", false
	}
	switch se.Code() & 0xff { // the primary code of an extended one
	case sqlite3.SQLITE_BUSY:
		return "database busy", true
	case sqlite3.SQLITE_CANTOPEN:
		return "cannot open the database file", true
	}
	return "", false
}
