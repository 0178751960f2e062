package storetest

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/ipsfhir/ipsfhir/adapter/store"
)

// testAudit: entries round-trip, filter by caller and time, page by id,
// refuse what cannot be an audit record, and are pruned by age.
func testAudit(t *testing.T, s *suite) {
	ctx := t.Context()
	st := s.openStore(t)
	if got, err := st.Audit(ctx, store.AuditQuery{}); err != nil || got == nil || len(got) != 0 {
		t.Fatalf("Audit of an empty trail = %v, %v; want an empty list", got, err)
	}
	t0 := time.Date(2026, 11, 1, 9, 0, 0, 0, time.UTC)
	in := []store.AuditEntry{
		{At: t0, Caller: "specialist-ui", Role: "specialist", Action: "R", Route: "/api/v1/clients/{id}", ResourceType: "clients", Records: 1, Status: 200},
		{At: t0.Add(time.Hour), Caller: "hie", Role: "hie", Action: "E", Route: "/fhir/$export", Records: 0, Status: 202},
		{At: t0.Add(2 * time.Hour), Caller: "sync", Action: "U", Route: "push", Connection: "clinic-a", Records: 12, Status: 200},
		{At: t0.Add(3 * time.Hour), Caller: "", Action: "R", Route: "/fhir/Goal", ResourceType: "Goal", Status: 401},
	}
	for _, e := range in {
		if err := st.AddAudit(ctx, e); err != nil {
			t.Fatalf("AddAudit: %v", err)
		}
	}
	for _, bad := range []store.AuditEntry{
		{Action: "X", Route: "/fhir/Goal", Status: 200},
		{Action: "R", Status: 200},
		{Action: "R", Route: "/fhir/Goal", Status: 200, Records: -1},
		{Action: "R", Route: "/fhir/Goal"},
	} {
		if err := st.AddAudit(ctx, bad); err == nil {
			t.Errorf("AddAudit(%+v) accepted", bad)
		}
	}
	ignoreID := cmpopts.IgnoreFields(store.AuditEntry{}, "ID")
	got, err := st.Audit(ctx, store.AuditQuery{})
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(in, got, ignoreID); d != "" {
		t.Errorf("Audit (-want +got):\n%s", d)
	}
	if hie, _ := st.Audit(ctx, store.AuditQuery{Caller: "hie"}); len(hie) != 1 || hie[0].Route != "/fhir/$export" {
		t.Errorf("Audit by caller hie = %+v", hie)
	}
	if mid, _ := st.Audit(ctx, store.AuditQuery{Since: t0.Add(time.Hour), Until: t0.Add(2 * time.Hour)}); len(mid) != 2 || mid[0].Caller != "hie" || mid[1].Caller != "sync" {
		t.Errorf("Audit from 10:00 to 11:00 = %+v", mid)
	}
	page, _ := st.Audit(ctx, store.AuditQuery{Limit: 2})
	rest, _ := st.Audit(ctx, store.AuditQuery{After: page[len(page)-1].ID})
	if len(page) != 2 || len(rest) != 2 || rest[0].Caller != "sync" {
		t.Errorf("pages of 2: %+v then %+v", page, rest)
	}

	if n, err := st.PruneAudit(ctx, t0.Add(90*time.Minute)); err != nil || n != 2 {
		t.Errorf("PruneAudit before 10:30 = %d, %v; want 2", n, err)
	}
	left, _ := st.Audit(ctx, store.AuditQuery{})
	if d := cmp.Diff(in[2:], left, ignoreID); d != "" {
		t.Errorf("after pruning (-want +got):\n%s", d)
	}
}
