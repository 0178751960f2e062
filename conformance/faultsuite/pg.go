package faultsuite

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net/url"
	"os"
	"strings"

	"github.com/jackc/pgx/v5"
)

// PostgresEnv names the environment variable with the DSN of a PostgreSQL
// server the suite may create schemas in (the same one the store's tests
// use).
const PostgresEnv = "IPSFHIR_TEST_POSTGRES_DSN"

// PostgresServerDSN returns $IPSFHIR_TEST_POSTGRES_DSN, or "".
func PostgresServerDSN() string { return os.Getenv(PostgresEnv) }

// NewPostgresSchema creates a fresh schema for one run on the server at
// serverDSN and returns a DSN whose connections work in it (search_path),
// and a function that drops it. Runs never see each other's tables, and
// every replica of a run shares the one schema, as replicas of a
// deployment share one database.
func NewPostgresSchema(ctx context.Context, serverDSN string) (dsn string, drop func(context.Context) error, err error) {
	if serverDSN == "" {
		return "", nil, errors.New("faultsuite: no PostgreSQL server: set " + PostgresEnv)
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	schema := "ipsfhir_faultsuite_" + hex.EncodeToString(b[:])
	ident := pgx.Identifier{schema}.Sanitize()
	if err := pgExec(ctx, serverDSN, "CREATE SCHEMA "+ident); err != nil {
		return "", nil, err
	}
	drop = func(ctx context.Context) error { return pgExec(ctx, serverDSN, "DROP SCHEMA "+ident+" CASCADE") }
	if strings.HasPrefix(serverDSN, "postgres://") || strings.HasPrefix(serverDSN, "postgresql://") {
		u, err := url.Parse(serverDSN)
		if err != nil {
			_ = drop(ctx)
			return "", nil, errors.New("faultsuite: " + PostgresEnv + " is not a valid URL")
		}
		q := u.Query()
		q.Set("search_path", schema)
		u.RawQuery = q.Encode()
		return u.String(), drop, nil
	}
	return serverDSN + " search_path=" + schema, drop, nil
}

// pgExec runs one statement on its own connection. pgx's errors name the
// server's address, so the error says only which step failed.
func pgExec(ctx context.Context, dsn, sql string) error {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return &safeError{"faultsuite: PostgreSQL: cannot connect to the server in " + PostgresEnv, err}
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, sql); err != nil {
		return &safeError{"faultsuite: PostgreSQL: schema statement failed", err}
	}
	return nil
}
