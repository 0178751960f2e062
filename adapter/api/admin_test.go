package api

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ipsfhir/ipsfhir/adapter/plan"
	"github.com/ipsfhir/ipsfhir/adapter/store"
	"github.com/ipsfhir/ipsfhir/adapter/store/postgres"
	"github.com/ipsfhir/ipsfhir/adapter/store/sqlite"
	"github.com/ipsfhir/ipsfhir/adapter/store/storetest"
	"github.com/ipsfhir/ipsfhir/adapter/syncer"
	"github.com/ipsfhir/ipsfhir/ips"
	"github.com/ipsfhir/ipsfhir/mappings"
)

func TestAdminEndpoints(t *testing.T) {
	ctx := t.Context()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "a.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	epic, err := os.ReadFile(filepath.Join("..", "..", "testdata", "ehr-capabilities", "epic-r4-sandbox-2026-07.json"))
	if err != nil {
		t.Fatal(err)
	}
	p, err := plan.Build(epic, plan.Options{})
	if err != nil {
		t.Fatal(err)
	}
	// One client whose push keeps failing: a dead letter to replay.
	c := &ips.Client{ID: "c1", Patient: ips.Identifier{System: "s", Value: "v"}, EnrolledOn: ips.MustDate("2026-01-05")}
	if _, err := st.SaveClients(ctx, []store.Stored{{Client: c}}, []string{"epic"}); err != nil {
		t.Fatal(err)
	}
	items, _ := st.Lease(ctx, "epic", "w", 1, time.Minute)
	if dead, err := st.Fail(ctx, items[0], "ehr: update Goal: not-allowed (HTTP 405)", time.Now(), 1); err != nil || !dead {
		t.Fatalf("fail: %v %v", dead, err)
	}
	key := func(k string) []byte { s := sha256.Sum256([]byte(k)); return s[:] }
	h := New(Options{Store: st, Keys: []Key{{Name: "root", Role: RoleAdmin, SHA256: key("admin-key")}, {Name: "es", Role: RoleSpecialist, SHA256: key("es-key")}},
		Admin:   &Admin{Store: st, Plans: func() map[string]*plan.Plan { return map[string]*plan.Plan{"epic": p} }},
		Metrics: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("# metrics\n")) })})
	call := func(method, path, key string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(method, path, nil)
		req.Header.Set("Authorization", "Bearer "+key)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		checkOpenAPI(t, req, rec.Code, rec.Header(), rec.Body.Bytes())
		return rec
	}
	if rec := call("GET", "/admin/connections/epic/plan", "admin-key"); rec.Code != 200 {
		t.Errorf("plan: %d %s", rec.Code, rec.Body)
	} else {
		var got plan.Plan
		if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil || got.Concept(plan.Goal).Path != plan.InNote {
			t.Errorf("plan body: %v %+v", err, got.Concept(plan.Goal))
		}
	}
	if rec := call("GET", "/admin/connections/epic/plan", "es-key"); rec.Code != http.StatusForbidden {
		t.Errorf("specialist reading a plan: %d, want 403", rec.Code)
	}
	if rec := call("GET", "/metrics", "es-key"); rec.Code != http.StatusForbidden {
		t.Errorf("specialist reading metrics: %d, want 403", rec.Code)
	}
	if rec := call("GET", "/metrics", "admin-key"); rec.Code != 200 {
		t.Errorf("admin reading metrics: %d", rec.Code)
	}
	rec := call("GET", "/admin/dead-letters", "admin-key")
	var dl struct{ DeadLetters []store.DeadLetter }
	if err := json.Unmarshal(rec.Body.Bytes(), &dl); err != nil || len(dl.DeadLetters) != 1 {
		t.Fatalf("dead letters: %d %s", rec.Code, rec.Body)
	}
	id := dl.DeadLetters[0].ID

	// What is failing, grouped by reason: here the one dead letter.
	rec = call("GET", "/admin/failures", "admin-key")
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `{"connection":"epic","reason":"ehr: update Goal: not-allowed (HTTP 405)","pending":0,"dead":1}`) {
		t.Errorf("failures: %d %s", rec.Code, rec.Body)
	}
	if rec := call("GET", "/admin/failures?connection=other", "admin-key"); rec.Code != http.StatusOK || strings.TrimSpace(rec.Body.String()) != `{"failures":[]}` {
		t.Errorf("failures of a connection with none: %d %s", rec.Code, rec.Body)
	}
	if rec := call("GET", "/admin/failures", "es-key"); rec.Code != http.StatusForbidden {
		t.Errorf("specialist reading failures: %d, want 403", rec.Code)
	}
	if rec := call("POST", "/admin/dead-letters/"+itoa(id)+"/replay", "admin-key"); rec.Code != http.StatusNoContent {
		t.Errorf("replay: %d %s", rec.Code, rec.Body)
	}
	if depth, _ := st.OutboxDepth(ctx); depth["epic"] != 1 {
		t.Errorf("after replay the outbox holds %v, want the item back", depth)
	}
	if rec := call("POST", "/admin/dead-letters/"+itoa(id)+"/replay", "admin-key"); rec.Code != http.StatusNotFound {
		t.Errorf("replaying twice: %d, want 404", rec.Code)
	}
	if rec := call("GET", "/admin/connections/nope/plan", "admin-key"); rec.Code != http.StatusNotFound {
		t.Errorf("unknown connection: %d", rec.Code)
	}

	// Reconcile queues every client not already pending: the replayed c1
	// is pending, c2 is not.
	c2 := &ips.Client{ID: "c2", Patient: ips.Identifier{System: "s", Value: "v2"}, EnrolledOn: ips.MustDate("2026-01-05")}
	if _, err := st.SaveClients(ctx, []store.Stored{{Client: c2}}, nil); err != nil {
		t.Fatal(err)
	}
	if rec := call("POST", "/admin/connections/epic/reconcile", "es-key"); rec.Code != http.StatusForbidden {
		t.Errorf("specialist reconciling: %d, want 403", rec.Code)
	}
	if rec := call("POST", "/admin/connections/nope/reconcile", "admin-key"); rec.Code != http.StatusNotFound {
		t.Errorf("reconcile of an unknown connection: %d, want 404", rec.Code)
	}
	rec = call("POST", "/admin/connections/epic/reconcile", "admin-key")
	var rc struct{ Queued int }
	if err := json.Unmarshal(rec.Body.Bytes(), &rc); rec.Code != http.StatusAccepted || err != nil || rc.Queued != 1 {
		t.Errorf("reconcile: %d %s; want 202 with one client queued", rec.Code, rec.Body)
	}
	if depth, _ := st.OutboxDepth(ctx); depth["epic"] != 2 {
		t.Errorf("after reconcile the outbox holds %v, want both clients", depth)
	}
}

func itoa(i int64) string { b, _ := json.Marshal(i); return string(b) }

// TestAdminListsAreNeverNull: with nothing connected and nothing failing,
// every admin list is an empty JSON array, not null (scripts iterate them).
func TestAdminListsAreNeverNull(t *testing.T) {
	st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "a.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	key := sha256.Sum256([]byte("admin-key"))
	h := New(Options{Store: st, Keys: []Key{{Name: "root", Role: RoleAdmin, SHA256: key[:]}},
		Admin: &Admin{Store: st, Plans: func() map[string]*plan.Plan { return nil }}})
	for path, field := range map[string]string{
		"/admin/connections":  "connections",
		"/admin/dead-letters": "deadLetters",
		"/admin/failures":     "failures",
		"/admin/conflicts":    "conflicts",
	} {
		req := httptest.NewRequest("GET", path, nil)
		req.Header.Set("Authorization", "Bearer admin-key")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		checkOpenAPI(t, req, rec.Code, rec.Header(), rec.Body.Bytes())
		var body map[string]json.RawMessage
		if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || rec.Code != 200 {
			t.Fatalf("%s: %d %s", path, rec.Code, rec.Body)
		}
		if got := string(body[field]); got != "[]" {
			t.Errorf("%s: %q is %s, want []", path, field, got)
		}
	}
}

// TestAdminJSONIsLowerCamel: dead letters and conflicts name their fields
// in lowerCamel, as every other JSON the service writes.
func TestAdminJSONIsLowerCamel(t *testing.T) {
	for _, v := range []any{store.DeadLetter{ID: 1, FailedAt: time.Now()}, store.Conflict{ID: 1, CreatedAt: time.Now()}} {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		for k := range m {
			if k == "" || strings.ToLower(k[:1]) != k[:1] || strings.Contains(k, "_") {
				t.Errorf("%T field %q is not lowerCamel", v, k)
			}
		}
	}
}

// TestAdminResolveAppliesTheChosenValue: with Admin.ResolveConflict wired
// to the sync engine, as serve wires it, keeping a side makes its value
// stand in the IPS record (204), keeping the side that was applied only
// closes, a conflict whose record changed since is 409 with code conflict
// and path resolution, kept-ehr of a whole-resource conflict 409 with code
// not-supported, and nothing is changed by either; a note closes; a
// resolved conflict is 409 and a missing one 404, as before.
func TestAdminResolveAppliesTheChosenValue(t *testing.T) {
	for _, name := range []string{"sqlite", "postgres"} {
		t.Run(name, func(t *testing.T) {
			var st store.Store
			var err error
			if name == "sqlite" {
				st, err = sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "a.db"))
			} else {
				st, err = postgres.Open(t.Context(), storetest.PostgresDSN(t))
			}
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			testAdminResolve(t, st)
		})
	}
}

func testAdminResolve(t *testing.T, st store.Store) {
	ctx := t.Context()
	const ipsWords, ehrWords, laterWords = "Work at the bakery", "Work in a kitchen", "Drive for a delivery firm"
	c := &ips.Client{ID: "c1", Patient: ips.Identifier{System: "s", Value: "v"}, EnrolledOn: ips.MustDate("2026-01-05"), Goals: []*ips.Goal{
		{ID: "g1", Description: ipsWords, Status: ips.GoalCancelled, Start: ips.MustDate("2026-02-01")},
		{ID: "g2", Description: laterWords, Status: ips.GoalActive, Start: ips.MustDate("2026-02-01")},
	}}
	if _, err := st.SaveClients(ctx, []store.Stored{{Client: c}}, nil); err != nil {
		t.Fatal(err)
	}
	o := mappings.Options{Program: "p"}
	key := func(k mappings.Key) string { return k.System() + "|" + k.Value() }
	add := func(k mappings.Key, field, ipsValue, ehrValue, winner string) string {
		id, err := st.AddConflict(ctx, store.Conflict{Connection: "epic", ClientID: "c1", Key: key(k), Field: field, IPSValue: ipsValue, EHRValue: ehrValue, Winner: winner})
		if err != nil {
			t.Fatal(err)
		}
		return itoa(id)
	}
	g1, g2 := o.GoalKey(c, c.Goals[0]), o.GoalKey(c, c.Goals[1])
	status := add(g1, "status", "on-hold", "cancelled", "ehr") // the EHR's applied
	desc := add(g1, "description", ipsWords, ehrWords, "ips")  // the IPS side's applied
	stale := add(g2, "description", ipsWords, ehrWords, "ips") // edited since
	resource := add(o.JobKey(c, &ips.Job{ID: "j1"}), "resource", "ipsfhir content 0123456789ab", "changed in the EHR (version 3)", "ips")

	engine := &syncer.Engine{Store: st}
	h := New(Options{Store: st, Keys: []Key{{Name: "root", Role: RoleAdmin, SHA256: sum256("admin-key")}},
		Admin: &Admin{Store: st, ResolveConflict: func(ctx context.Context, id int64, resolution string) (syncer.Resolution, error) {
			return engine.ResolveConflict(ctx, id, resolution, []string{"epic"})
		}}})
	resolve := func(id, resolution string) (int, ErrorBody) {
		req := httptest.NewRequest("POST", "/admin/conflicts/"+id+"/resolve?resolution="+url.QueryEscape(resolution), nil)
		req.Header.Set("Authorization", "Bearer admin-key")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		checkOpenAPI(t, req, rec.Code, rec.Header(), rec.Body.Bytes())
		var body ErrorBody
		if rec.Code != http.StatusNoContent {
			if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || len(body.Issues) != 1 {
				t.Fatalf("%s %s: %d %s", id, resolution, rec.Code, rec.Body)
			}
			for _, v := range []string{ipsWords, ehrWords, laterWords, "on-hold", "cancelled"} {
				if strings.Contains(rec.Body.String(), v) {
					t.Errorf("the answer names a value (%q): %s", v, rec.Body)
				}
			}
		}
		return rec.Code, body
	}
	goals := func() (*ips.Goal, *ips.Goal, store.Version) {
		got, v, err := st.GetClient(ctx, "c1")
		if err != nil {
			t.Fatal(err)
		}
		return got.Goal("g1"), got.Goal("g2"), v
	}
	open := func() map[string]string {
		all, err := st.Conflicts(ctx, "", true)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]string{}
		for _, cf := range all {
			out[itoa(cf.ID)] = cf.Resolution
		}
		return out
	}
	_, _, v0 := goals()

	// Refused, nothing changed: the record changed since; kept-ehr of a
	// whole resource.
	for _, kept := range []string{"kept-ips", "kept-ehr"} {
		if code, body := resolve(stale, kept); code != http.StatusConflict || body.Issues[0].Code != "conflict" || body.Issues[0].Path != "resolution" {
			t.Errorf("%s of a stale conflict: %d %+v; want 409 conflict at resolution", kept, code, body)
		}
	}
	if code, body := resolve(resource, "kept-ehr"); code != http.StatusConflict || body.Issues[0].Code != "not-supported" || body.Issues[0].Path != "resolution" {
		t.Errorf("kept-ehr of a resource conflict: %d %+v; want 409 not-supported at resolution", code, body)
	}
	if _, g2, v := goals(); v != v0 || g2.Description != laterWords {
		t.Errorf("a refused resolution changed the record: version %d → %d", v0, v)
	}
	if got := open(); got[stale] != "" || got[resource] != "" {
		t.Errorf("a refused resolution closed a conflict: %v", got)
	}

	// Keeping the side that was applied only closes.
	if code, _ := resolve(status, "kept-ehr"); code != http.StatusNoContent {
		t.Errorf("kept-ehr of the applied side: %d", code)
	}
	if code, _ := resolve(resource, "kept-ips"); code != http.StatusNoContent {
		t.Errorf("kept-ips of a resource conflict: %d", code)
	}
	if _, _, v := goals(); v != v0 {
		t.Errorf("keeping the applied side saved the client: version %d → %d", v0, v)
	}
	if depth, _ := st.OutboxDepth(ctx); depth["epic"] != 0 {
		t.Errorf("keeping the applied side queued the client: %v", depth)
	}

	// Keeping the other side writes it to the IPS record and queues it.
	if code, _ := resolve(desc, "kept-ehr"); code != http.StatusNoContent {
		t.Errorf("kept-ehr: %d", code)
	}
	if g1, _, v := goals(); g1.Description != ehrWords || g1.Status != ips.GoalCancelled || v != v0+1 {
		t.Errorf("after kept-ehr: %q %s at version %d", g1.Description, g1.Status, v)
	}
	if depth, _ := st.OutboxDepth(ctx); depth["epic"] != 1 {
		t.Errorf("after kept-ehr the outbox holds %v, want the client", depth)
	}

	// A note closes the stale one; resolving again is 409, a missing one 404.
	if code, _ := resolve(stale, "set by hand"); code != http.StatusNoContent {
		t.Errorf("a note: %d", code)
	}
	if got := open(); got[status] != "kept-ehr" || got[desc] != "kept-ehr" || got[stale] != "set by hand" || got[resource] != "kept-ips" {
		t.Errorf("resolutions %v", got)
	}
	if code, body := resolve(desc, "kept-ips"); code != http.StatusConflict || body.Issues[0].Code != "conflict" || body.Issues[0].Path != "" {
		t.Errorf("resolving twice: %d %+v; want 409 conflict", code, body)
	}
	if code, _ := resolve("987654", "kept-ehr"); code != http.StatusNotFound {
		t.Errorf("a missing conflict: %d, want 404", code)
	}
	if g1, _, _ := goals(); g1.Description != ehrWords {
		t.Errorf("resolving again rewrote the record: %q", g1.Description)
	}
}

func sum256(k string) []byte { s := sha256.Sum256([]byte(k)); return s[:] }
