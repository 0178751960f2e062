package fhirapi_test

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/ipsfhir/ipsfhir/adapter/fhirapi"
	"github.com/ipsfhir/ipsfhir/adapter/store"
)

const appOrigin = "https://app.example.org"

// csvHeader splits a comma-separated header.
func csvHeader(h string) []string {
	var out []string
	for _, v := range strings.Split(h, ",") {
		out = append(out, strings.TrimSpace(v))
	}
	return out
}

// statementCORS reports the statement's security.cors.
func statementCORS(t *testing.T, body []byte) bool {
	t.Helper()
	var cs struct {
		Rest []struct {
			Security struct {
				CORS bool `json:"cors"`
			} `json:"security"`
		} `json:"rest"`
	}
	if err := json.Unmarshal(body, &cs); err != nil || len(cs.Rest) != 1 {
		t.Fatalf("statement: %v", err)
	}
	return cs.Rest[0].Security.CORS
}

// TestCORS: browser apps of the configured origins may call /fhir: a
// preflight is answered before authentication, with the methods and
// headers a FHIR client sends; answers name the exact origin, never *, and
// let the app read Content-Location, Location, ETag, X-Progress and
// Retry-After. Other origins get no CORS headers at all.
func TestCORS(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(o *fhirapi.Options) {
		o.CORSOrigins = []string{appOrigin}
		o.Audit = o.Store.(store.Auditor)
	})

	pre := h.do(http.MethodOptions, "/fhir/Goal/_search", "", nil, "Origin", appOrigin,
		"Access-Control-Request-Method", "POST", "Access-Control-Request-Headers", "authorization, content-type, prefer, x-medplum")
	hd := pre.header
	methods, headers := csvHeader(hd.Get("Access-Control-Allow-Methods")), csvHeader(hd.Get("Access-Control-Allow-Headers"))
	if pre.status != http.StatusNoContent || hd.Get("Access-Control-Allow-Origin") != appOrigin || hd.Get("Access-Control-Allow-Credentials") != "true" ||
		!slices.Contains(methods, "POST") || !slices.Contains(methods, "DELETE") || !slices.Contains(methods, "GET") ||
		!slices.Contains(headers, "Authorization") || !slices.Contains(headers, "Content-Type") || !slices.Contains(headers, "Prefer") || !slices.Contains(headers, "X-Medplum") ||
		!slices.Contains(hd.Values("Vary"), "Origin") {
		t.Errorf("preflight: %d %v", pre.status, hd)
	}

	// A search and an export kick-off from the app: readable, with the
	// headers the app needs exposed.
	r := h.do(http.MethodGet, "/fhir/Goal?_count=1", clinicianKey, nil, "Origin", appOrigin)
	expose := csvHeader(r.header.Get("Access-Control-Expose-Headers"))
	for _, want := range []string{"Content-Location", "Location", "ETag", "X-Progress", "Retry-After"} {
		if !slices.Contains(expose, want) {
			t.Errorf("search: %s not exposed: %v", want, expose)
		}
	}
	if r.status != http.StatusOK || r.header.Get("Access-Control-Allow-Origin") != appOrigin || !slices.Contains(r.header.Values("Vary"), "Origin") {
		t.Errorf("search from the app: %d %v", r.status, r.header)
	}
	k := h.do(http.MethodPost, "/fhir/$export?_type=Goal", hieKey, nil, "Origin", appOrigin, "Prefer", "respond-async")
	if k.status != http.StatusAccepted || k.header.Get("Access-Control-Allow-Origin") != appOrigin || k.header.Get("Content-Location") == "" {
		t.Errorf("kick-off from the app: %d %v", k.status, k.header)
	}
	h.wait(k.header.Get("Content-Location"), hieKey)
	// Without a key, the app can read the 401 and its challenge.
	if r := h.do(http.MethodGet, "/fhir/Goal", "", nil, "Origin", appOrigin); r.status != http.StatusUnauthorized || r.header.Get("Access-Control-Allow-Origin") != appOrigin {
		t.Errorf("401 from the app: %d %v", r.status, r.header)
	}
	meta := h.do(http.MethodGet, "/fhir/metadata", "", nil, "Origin", appOrigin)
	if !statementCORS(t, meta.body) || meta.header.Get("Access-Control-Allow-Origin") != appOrigin {
		t.Errorf("metadata from the app: security.cors %v, %v", statementCORS(t, meta.body), meta.header)
	}

	// Other origins, and requests without one: no CORS headers.
	for _, tc := range []struct{ method, path, origin string }{
		{http.MethodOptions, "/fhir/Goal/_search", "https://evil.example.org"},
		{http.MethodOptions, "/fhir/Goal/_search", "https://app.example.org:8443"},
		{http.MethodOptions, "/fhir/Goal/_search", "http://app.example.org"},
		{http.MethodGet, "/fhir/Goal", "https://evil.example.org"},
		{http.MethodGet, "/fhir/metadata", "https://evil.example.org"},
		{http.MethodGet, "/fhir/Goal", ""},
	} {
		r := h.do(tc.method, tc.path, clinicianKey, nil, "Origin", tc.origin, "Access-Control-Request-Method", "POST")
		for name := range r.header {
			if strings.HasPrefix(name, "Access-Control-") {
				t.Errorf("%s %s from %q: %s: %s", tc.method, tc.path, tc.origin, name, r.header.Get(name))
			}
		}
		if tc.method == http.MethodOptions && r.status == http.StatusNoContent {
			t.Errorf("%s %s from %q: the preflight was answered", tc.method, tc.path, tc.origin)
		}
	}
	if logs := h.tel.Logs(); !strings.Contains(logs, `"method":"OPTIONS","route":"/fhir/{preflight}","status":204`) {
		t.Errorf("the access log does not name the preflight:\n%s", logs)
	}
	// The audit trail has the app's calls, not its preflights: they read
	// nothing and name no caller.
	entries, err := h.st.Audit(t.Context(), store.AuditQuery{})
	if err != nil {
		t.Fatal(err)
	}
	var routes []string
	for _, e := range entries {
		routes = append(routes, e.Route)
	}
	if slices.Contains(routes, "/fhir/{preflight}") || !slices.Contains(routes, "/fhir/Goal") {
		t.Errorf("audit trail routes %v: want the search, and no preflight", routes)
	}

	// Without configured origins: none, and security.cors false.
	plain := newHarness(t)
	if r := plain.do(http.MethodOptions, "/fhir/Goal", "", nil, "Origin", appOrigin, "Access-Control-Request-Method", "GET"); r.header.Get("Access-Control-Allow-Origin") != "" || r.status == http.StatusNoContent {
		t.Errorf("no origins configured: %d %v", r.status, r.header)
	}
	if statementCORS(t, plain.get("/fhir/metadata", "").body) {
		t.Error("security.cors true with no origins configured")
	}
}
