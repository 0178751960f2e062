package api_test

import (
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ipsfhir/ipsfhir/adapter/api"
	"github.com/ipsfhir/ipsfhir/adapter/store"
	"github.com/ipsfhir/ipsfhir/adapter/store/sqlite"
)

const appOrigin = "https://app.example.org"

// corsServer is the records API over a real SQLite store, allowing
// appOrigin, with /admin, /metrics and the audit trail.
func corsServer(t *testing.T) (*httptest.Server, store.Store) {
	t.Helper()
	st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "ips.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	srv := httptest.NewServer(api.New(api.Options{
		Store:       st,
		Keys:        []api.Key{{Name: "jordan", Role: api.RoleSpecialist, SHA256: sum(specialistKey)}, {Name: "ehr-admin", Role: api.RoleAdmin, SHA256: sum(adminKey)}},
		Admin:       &api.Admin{Store: st},
		Metrics:     http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("# metrics\n")) }),
		Audit:       st,
		CORSOrigins: []string{appOrigin, "http://localhost:3000/"},
	}))
	t.Cleanup(srv.Close)
	return srv, st
}

func send(t *testing.T, srv *httptest.Server, method, path, body string, header ...string) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

// listed splits a comma-separated header.
func listed(h string) []string {
	var out []string
	for _, v := range strings.Split(h, ",") {
		out = append(out, strings.TrimSpace(v))
	}
	return out
}

// TestCORSRecordsAPI: a browser app of a configured origin may call
// /api/v1 (preflight answered before authentication; its own origin back,
// never *; Location and ETag readable); another origin gets no CORS
// headers, and neither do /admin and /metrics.
func TestCORSRecordsAPI(t *testing.T) {
	t.Parallel()
	srv, st := corsServer(t)
	pre := send(t, srv, http.MethodOptions, "/api/v1/clients/c1", "", "Origin", appOrigin,
		"Access-Control-Request-Method", "PUT", "Access-Control-Request-Headers", "authorization, content-type, if-match")
	h := pre.Header
	if pre.StatusCode != http.StatusNoContent || h.Get("Access-Control-Allow-Origin") != appOrigin || h.Get("Access-Control-Allow-Credentials") != "true" ||
		!slices.Contains(listed(h.Get("Access-Control-Allow-Methods")), "PUT") ||
		!slices.Contains(listed(h.Get("Access-Control-Allow-Headers")), "If-Match") ||
		!slices.Contains(h.Values("Vary"), "Origin") || h.Get("Access-Control-Max-Age") == "" {
		t.Errorf("preflight: %d %v", pre.StatusCode, h)
	}
	// The configured http://localhost:3000/ matches the origin browsers send.
	if r := send(t, srv, http.MethodOptions, "/api/v1/clients", "", "Origin", "http://localhost:3000", "Access-Control-Request-Method", "POST"); r.Header.Get("Access-Control-Allow-Origin") != "http://localhost:3000" {
		t.Errorf("a configured origin with a trailing slash: %v", r.Header)
	}

	client := `{"id":"c1","patient":{"system":"urn:oid:2.16.840.1.113883.3.9999.1","value":"MRN1"},"enrolledOn":"2026-07-02"}`
	created := send(t, srv, http.MethodPost, "/api/v1/clients", client, "Origin", appOrigin, "Authorization", "Bearer "+specialistKey, "Content-Type", "application/json")
	h = created.Header
	expose := listed(h.Get("Access-Control-Expose-Headers"))
	if created.StatusCode != http.StatusCreated || h.Get("Access-Control-Allow-Origin") != appOrigin || !slices.Contains(expose, "Location") || !slices.Contains(expose, "ETag") {
		t.Errorf("create from the app: %d %v", created.StatusCode, h)
	}
	// A 401 is readable by the app too: it can tell the key is wrong.
	if r := send(t, srv, http.MethodGet, "/api/v1/clients", "", "Origin", appOrigin); r.StatusCode != http.StatusUnauthorized || r.Header.Get("Access-Control-Allow-Origin") != appOrigin {
		t.Errorf("401 from the app: %d %v", r.StatusCode, r.Header)
	}

	// The audit trail has the app's calls, not its preflights: they read
	// nothing and name no caller.
	entries, err := st.Audit(t.Context(), store.AuditQuery{})
	if err != nil {
		t.Fatal(err)
	}
	var routes []string
	for _, e := range entries {
		routes = append(routes, e.Route)
	}
	if slices.Contains(routes, "/api/v1/{preflight}") || !slices.Contains(routes, "/api/v1/clients") {
		t.Errorf("audit trail routes %v: want the create, and no preflight", routes)
	}

	for _, tc := range []struct{ method, path, origin string }{
		{http.MethodOptions, "/api/v1/clients", "https://evil.example.org"},
		{http.MethodGet, "/api/v1/clients", "https://evil.example.org"},
		{http.MethodOptions, "/api/v1/clients", "https://app.example.org.evil.example"},
		{http.MethodOptions, "/api/v1/clients", "null"},
		{http.MethodGet, "/api/v1/clients", ""},
		{http.MethodOptions, "/admin/connections", appOrigin},
		{http.MethodGet, "/metrics", appOrigin},
	} {
		r := send(t, srv, tc.method, tc.path, "", "Origin", tc.origin, "Access-Control-Request-Method", "GET", "Authorization", "Bearer "+adminKey)
		for k := range r.Header {
			if strings.HasPrefix(k, "Access-Control-") {
				t.Errorf("%s %s from %q: %s: %s", tc.method, tc.path, tc.origin, k, r.Header.Get(k))
			}
		}
		if tc.method == http.MethodOptions && r.StatusCode == http.StatusNoContent {
			t.Errorf("%s %s from %q: a preflight answered", tc.method, tc.path, tc.origin)
		}
	}
}

// TestNoCORSByDefault: without configured origins, nobody gets CORS
// headers, and preflights are not answered.
func TestNoCORSByDefault(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	r := h.do(http.MethodOptions, "/api/v1/clients", "", "Origin", appOrigin, "Access-Control-Request-Method", "POST")
	for k := range r.header {
		if strings.HasPrefix(k, "Access-Control-") {
			t.Errorf("%s: %s", k, r.header.Get(k))
		}
	}
	if r.status == http.StatusNoContent {
		t.Error("a preflight answered")
	}
}
