package storetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// PostgresEnv names the environment variable holding the DSN of a
// PostgreSQL server tests may create schemas in. .ci/run sets it; on a
// machine without it PostgreSQL tests skip and say how to run them.
const PostgresEnv = "IPSFHIR_TEST_POSTGRES_DSN"

// PostgresServer returns the server's DSN, or skips t.
func PostgresServer(t testing.TB) string {
	t.Helper()
	dsn := os.Getenv(PostgresEnv)
	if dsn == "" {
		t.Skipf("PostgreSQL tests skipped: set %s to a database they may create schemas in, e.g.\n"+
			"\t%s='postgres://postgres@127.0.0.1:5432/test?sslmode=disable' go test -race ./...", PostgresEnv, PostgresEnv)
	}
	return dsn
}

// PostgresDSN creates a schema of t's own, drops it when t ends, and returns
// a DSN whose connections work in it (search_path), so tests, parallel
// packages and reruns never see each other's tables. It skips t when no
// server is configured.
func PostgresDSN(t testing.TB) string {
	t.Helper()
	dsn := PostgresServer(t)
	var b [6]byte
	_, _ = rand.Read(b[:])
	schema := fmt.Sprintf("ipsfhir_test_%d_%s", os.Getpid(), hex.EncodeToString(b[:]))
	ident := pgx.Identifier{schema}.Sanitize()
	if err := PostgresExec(context.Background(), dsn, "CREATE SCHEMA "+ident); err != nil {
		t.Fatalf("create test schema: %v", err)
	}
	t.Cleanup(func() {
		// t.Context is already cancelled when cleanups run.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := PostgresExec(ctx, dsn, "DROP SCHEMA "+ident+" CASCADE"); err != nil {
			t.Errorf("drop test schema: %v", err)
		}
	})
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			t.Fatalf("%s is not a valid URL", PostgresEnv)
		}
		q := u.Query()
		q.Set("search_path", schema)
		u.RawQuery = q.Encode()
		return u.String()
	}
	// pgx sends parameters it does not know as run-time settings.
	return dsn + " search_path=" + schema
}

// PostgresExec runs one statement on its own connection.
func PostgresExec(ctx context.Context, dsn, sql string) error {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, sql)
	return err
}
