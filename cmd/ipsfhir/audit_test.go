package main

import (
	"context"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/ipsfhir/ipsfhir/adapter/store"
	"github.com/ipsfhir/ipsfhir/adapter/store/sqlite"
)

// TestPruneAuditKeepsTheRetention: serve's pruning deletes audit entries
// older than audit.retention at once, keeps newer ones, and stops with
// its context.
func TestPruneAuditKeepsTheRetention(t *testing.T) {
	t.Parallel()
	st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "ips.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	now := time.Now()
	for _, at := range []time.Time{now.Add(-48 * time.Hour), now.Add(-time.Hour)} {
		if err := st.AddAudit(t.Context(), store.AuditEntry{At: at, Caller: "jordan", Action: "R", Route: "/api/v1/clients/{id}", Records: 1, Status: 200}); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		pruneAudit(ctx, st, 24*time.Hour, time.Hour, slog.New(slog.DiscardHandler))
	}()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		left, err := st.Audit(t.Context(), store.AuditQuery{})
		if err != nil {
			t.Fatal(err)
		}
		if len(left) == 1 {
			if left[0].At.Before(now.Add(-2 * time.Hour)) {
				t.Errorf("the entry kept is the old one: %+v", left[0])
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("entries after pruning: %d, want the one within the retention", len(left))
		}
	}
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("pruneAudit did not stop with its context")
	}
}
