package api_test

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/ipsfhir/ipsfhir/adapter/api"
	"github.com/ipsfhir/ipsfhir/adapter/plan"
	"github.com/ipsfhir/ipsfhir/adapter/store/postgres"
	"github.com/ipsfhir/ipsfhir/adapter/store/storetest"
	"github.com/ipsfhir/ipsfhir/adapter/telemetry/telemetrytest"
)

// TestStoreUnavailable serves the API over a PostgreSQL store whose server
// goes away (a proxy in front of the shared server stops; the server keeps
// running for everyone else): records and /admin answer 503 "store
// unavailable" with Retry-After instead of a bare 500, and the log says
// why without saying where the server is.
func TestStoreUnavailable(t *testing.T) {
	proxy, dsn := storetest.StartPostgresProxy(t, storetest.PostgresDSN(t))
	st, err := postgres.Open(t.Context(), dsn)
	if err != nil {
		t.Fatalf("open postgres: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	h := &harness{t: t, st: st, logs: &telemetrytest.Buffer{}}
	h.srv = httptest.NewServer(api.New(api.Options{
		Store:  st,
		Keys:   []api.Key{{Name: "jordan", Role: api.RoleSpecialist, SHA256: sum(specialistKey)}, {Name: "ehr-admin", Role: api.RoleAdmin, SHA256: sum(adminKey)}},
		Logger: slog.New(slog.NewJSONHandler(h.logs, nil)),
		Admin:  &api.Admin{Store: st, Plans: func() map[string]*plan.Plan { return map[string]*plan.Plan{"clinic-a": {Bundles: "none"}} }},
	}))
	t.Cleanup(h.srv.Close)
	want(t, h.do("POST", "/api/v1/clients", clientJSON("c1", "MRN1", "g", "e")), http.StatusCreated, "create before the outage")
	want(t, h.do("GET", "/admin/connections", "", "Authorization", "Bearer "+adminKey), http.StatusOK, "admin before the outage")

	proxy.Stop()
	for _, req := range []struct{ method, path, body, key string }{
		{"GET", "/admin/connections", "", adminKey},
		{"GET", "/admin/dead-letters", "", adminKey},
		{"GET", "/api/v1/clients", "", specialistKey},
		{"GET", "/api/v1/clients/c1", "", specialistKey},
		{"PUT", "/api/v1/clients/c1", clientJSON("c1", "MRN1", "g", "e"), specialistKey},
	} {
		r := h.do(req.method, req.path, req.body, "Authorization", "Bearer "+req.key)
		want(t, r, http.StatusServiceUnavailable, req.method+" "+req.path+" with the store gone")
		if is := r.issues(t); len(is) != 1 || is[0].Code != "transient" || is[0].Message != "store unavailable" {
			t.Errorf("%s %s: issues %+v, want one transient \"store unavailable\"", req.method, req.path, is)
		}
		if ra := r.header.Get("Retry-After"); ra == "" || strings.Trim(ra, "0123456789") != "" {
			t.Errorf("%s %s: Retry-After %q, want seconds", req.method, req.path, ra)
		}
	}
	log := h.logs.String()
	if !strings.Contains(log, "store unavailable: connection") {
		t.Errorf("the log does not say why the store failed:\n%s", log)
	}
	for _, s := range []string{"127.0.0.1", "MRN1", "postgres://"} {
		if strings.Contains(log, s) {
			t.Errorf("the log holds %q:\n%s", s, log)
		}
	}
}
