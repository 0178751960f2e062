package api

import (
	"crypto/sha256"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ipsfhir/ipsfhir/adapter/plan"
	"github.com/ipsfhir/ipsfhir/adapter/store"
	"github.com/ipsfhir/ipsfhir/adapter/store/sqlite"
	"github.com/ipsfhir/ipsfhir/ips"
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
