package api_test

import (
	"crypto/sha256"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ipsfhir/ipsfhir/adapter/api"
	"github.com/ipsfhir/ipsfhir/adapter/store"
	"github.com/ipsfhir/ipsfhir/adapter/store/postgres"
	"github.com/ipsfhir/ipsfhir/adapter/store/sqlite"
	"github.com/ipsfhir/ipsfhir/adapter/store/storetest"
	"github.com/ipsfhir/ipsfhir/adapter/telemetry/telemetrytest"
)

// forEachStore runs f against a fresh SQLite store and, when
// IPSFHIR_TEST_POSTGRES_DSN is set, a fresh PostgreSQL schema.
func forEachStore(t *testing.T, f func(t *testing.T, st store.Store)) {
	t.Run("sqlite", func(t *testing.T) {
		st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "ips.db"))
		if err != nil {
			t.Fatalf("open sqlite: %v", err)
		}
		t.Cleanup(func() { st.Close() })
		f(t, st)
	})
	t.Run("postgres", func(t *testing.T) {
		st, err := postgres.Open(t.Context(), storetest.PostgresDSN(t))
		if err != nil {
			t.Fatalf("open postgres: %v", err)
		}
		t.Cleanup(func() { st.Close() })
		f(t, st)
	})
}

// API keys of the test callers, one per role.
const (
	specialistKey = "test-key-specialist-0001"
	clinicianKey  = "test-key-clinician-0002"
	adminKey      = "test-key-admin-0003"
	hieKey        = "test-key-hie-0004"
)

func sum(key string) []byte {
	s := sha256.Sum256([]byte(key))
	return s[:]
}

// harness is the API over a real store, served by httptest.
type harness struct {
	t     *testing.T
	st    store.Store
	srv   *httptest.Server
	logs  *telemetrytest.Buffer
	mu    sync.Mutex
	conns []string
}

func newHarness(t *testing.T, st store.Store) *harness {
	return newHarnessOver(t, st, st)
}

// newHarnessOver serves the API over s (which may wrap st) and keeps st for
// checks.
func newHarnessOver(t *testing.T, st store.Store, s api.Store) *harness {
	h := &harness{t: t, st: st, logs: &telemetrytest.Buffer{}, conns: []string{"clinic-a", "clinic-b"}}
	handler := api.New(api.Options{
		Store: s,
		Connections: func() []string {
			h.mu.Lock()
			defer h.mu.Unlock()
			return append([]string(nil), h.conns...)
		},
		Keys: []api.Key{
			{Name: "jordan", Role: api.RoleSpecialist, SHA256: sum(specialistKey)},
			{Name: "dr-okafor", Role: api.RoleClinician, SHA256: sum(clinicianKey)},
			{Name: "ehr-admin", Role: api.RoleAdmin, SHA256: sum(adminKey)},
			{Name: "state-hie", Role: api.RoleHIE, SHA256: sum(hieKey)},
		},
		Logger: slog.New(slog.NewJSONHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Audit:  st,
	})
	h.srv = httptest.NewServer(handler)
	t.Cleanup(h.srv.Close)
	return h
}

func (h *harness) setConnections(c ...string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.conns = c
}

// response is what a test needs of an HTTP response.
type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) issues(t *testing.T) []api.Issue {
	t.Helper()
	var b api.ErrorBody
	if err := json.Unmarshal(r.body, &b); err != nil {
		t.Fatalf("error body is not {issues: [...]}: %v\n%s", err, r.body)
	}
	return b.Issues
}

func (r response) paths(t *testing.T) []string {
	var out []string
	for _, i := range r.issues(t) {
		out = append(out, i.Path)
	}
	return out
}

// do sends a request with the specialist's key unless a header sets
// another; headers are name, value pairs ("Authorization", "" drops it).
func (h *harness) do(method, path, body string, headers ...string) response {
	h.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(h.t.Context(), method, h.srv.URL+path, rd)
	if err != nil {
		h.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+specialistKey)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		if headers[i+1] == "" {
			req.Header.Del(headers[i])
		} else {
			req.Header.Set(headers[i], headers[i+1])
		}
	}
	resp, err := h.srv.Client().Do(req)
	if err != nil {
		h.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		h.t.Fatal(err)
	}
	// Every answer is one openapi.json promises.
	api.CheckOpenAPI(h.t, req, resp.StatusCode, resp.Header, b)
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

// want fails the test unless r has the status.
func want(t *testing.T, r response, status int, what string) {
	t.Helper()
	if r.status != status {
		t.Fatalf("%s: status %d, want %d\n%s", what, r.status, status, r.body)
	}
}

// depth is the store's outbox depth per connection, zero counts dropped.
func (h *harness) depth() map[string]int {
	h.t.Helper()
	d, err := h.st.OutboxDepth(h.t.Context())
	if err != nil {
		h.t.Fatal(err)
	}
	out := map[string]int{}
	for k, v := range d {
		if v > 0 {
			out[k] = v
		}
	}
	return out
}

// drain leases and completes every pending outbox item.
func (h *harness) drain() {
	h.t.Helper()
	for conn := range h.depth() {
		items, err := h.st.Lease(h.t.Context(), conn, "test", 1000, time.Minute)
		if err != nil {
			h.t.Fatal(err)
		}
		for _, it := range items {
			if err := h.st.Complete(h.t.Context(), it); err != nil {
				h.t.Fatal(err)
			}
		}
	}
	if d := h.depth(); len(d) != 0 {
		h.t.Fatalf("outbox not drained: %v", d)
	}
}

// clientJSON is a valid client with one goal, support and job; mrn,
// goal and employer let tests plant values.
func clientJSON(id, mrn, goal, employer string) string {
	return `{
  "id": "` + id + `",
  "patient": {"system": "urn:oid:2.16.840.1.113883.3.9999.1", "value": "` + mrn + `"},
  "enrolledOn": "2026-01-05",
  "specialist": "Jordan Reyes",
  "goals": [{"id": "g1", "description": "` + goal + `", "status": "active", "targetHoursPerWeek": 20, "start": "2026-01-06", "due": "2026-07-01"}],
  "supports": [{"id": "s1", "type": "job-development", "status": "planned", "date": "2026-01-10", "goal": "g1"}],
  "jobs": [{"id": "j1", "employer": "` + employer + `", "title": "Baker's assistant", "start": "2026-03-02", "hoursPerWeek": 22.5, "hourlyWage": {"value": 17, "currency": "USD"}, "competitive": true}]
}`
}
