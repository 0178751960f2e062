package api

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
	"github.com/google/go-cmp/cmp"
	"github.com/gorilla/mux"

	"github.com/ipsfhir/ipsfhir/adapter/plan"
	"github.com/ipsfhir/ipsfhir/adapter/store"
	"github.com/ipsfhir/ipsfhir/adapter/store/sqlite"
	"github.com/ipsfhir/ipsfhir/ips"
)

// loadOpenAPI parses and validates openapi.json once per test binary.
var loadOpenAPI = sync.OnceValues(func() (*openapi3.T, error) {
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(openAPI)
	if err != nil {
		return nil, err
	}
	return doc, doc.Validate(loader.Context)
})

var openAPIRouter = sync.OnceValues(func() (routers.Router, error) {
	doc, err := loadOpenAPI()
	if err != nil {
		return nil, err
	}
	return gorillamux.NewRouter(doc)
})

func openAPIDoc(t testing.TB) *openapi3.T {
	t.Helper()
	doc, err := loadOpenAPI()
	if err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	return doc
}

// operations lists the document's operations as "METHOD /path".
func operations(doc *openapi3.T) map[string]*openapi3.Operation {
	out := map[string]*openapi3.Operation{}
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			out[method+" "+path] = op
		}
	}
	return out
}

// checkOpenAPI fails the test unless openapi.json documents the response
// for the request: its status is among the operation's responses, and its
// body and headers are of the documented types. Requests no documented
// operation matches (a path no route serves, a method a path does not
// allow) are not checked here: TestOpenAPIMatchesRouter holds the
// documented operations to the routes.
func checkOpenAPI(t testing.TB, req *http.Request, status int, header http.Header, body []byte) {
	t.Helper()
	router, err := openAPIRouter()
	if err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	route, params, err := router.FindRoute(req)
	if err != nil {
		return
	}
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route},
		Status:                 status,
		Header:                 header,
		Options:                &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
	}
	in.SetBodyBytes(body)
	if err := openapi3filter.ValidateResponse(context.Background(), in); err != nil {
		t.Errorf("%s %s answered %d as openapi.json does not say: %v\n%s", req.Method, route.Path, status, err, body)
	}
}

// TestOpenAPIMatchesRouter: every route the router registers, with its
// method, is an operation of openapi.json, and every operation is a route.
// noAudit stands for an audit trail in a router that is walked, never
// served.
type noAudit struct{ store.Auditor }

// oneExport stands for the facade's exports where the API's routing and
// roles are tested: one finished export, "job-1", that can be cancelled
// (the facade's own tests cover its exports).
type oneExport struct{}

func (oneExport) ExportJobs() []ExportJob {
	at := time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC)
	return []ExportJob{{ID: "job-1", Owner: "hie", State: "complete", StartedAt: at, FinishedAt: at.Add(time.Minute), ExpiresAt: at.Add(time.Hour), Files: 3}}
}

func (oneExport) CancelExport(id string) bool { return id == "job-1" }

func TestOpenAPIMatchesRouter(t *testing.T) {
	a := &api{admin: &Admin{Exports: oneExport{}}, metrics: http.NotFoundHandler(), audit: noAudit{}}
	routed := map[string]bool{}
	err := a.router().Walk(func(route *mux.Route, _ *mux.Router, _ []*mux.Route) error {
		tpl, err := route.GetPathTemplate()
		if err != nil {
			return err
		}
		methods, err := route.GetMethods()
		if err != nil {
			return err
		}
		for _, m := range methods {
			routed[m+" "+tpl] = true
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walk the router: %v", err)
	}
	documented := operations(openAPIDoc(t))
	var missing, extra []string
	for op := range routed {
		if documented[op] == nil {
			missing = append(missing, op)
		}
	}
	for op := range documented {
		if !routed[op] {
			extra = append(extra, op)
		}
	}
	sort.Strings(missing)
	sort.Strings(extra)
	if len(missing) > 0 {
		t.Errorf("routes openapi.json does not describe:\n  %s", strings.Join(missing, "\n  "))
	}
	if len(extra) > 0 {
		t.Errorf("operations in openapi.json no route serves:\n  %s", strings.Join(extra, "\n  "))
	}
	if len(routed) < 20 {
		t.Errorf("the walk found %d routes; the router has more", len(routed))
	}
}

// TestOpenAPIDocument: openapi.json is a valid OpenAPI 3.1 document
// (kin-openapi's validation: references resolve, every operation has
// responses, schemas are schemas), and says for each operation who may
// call it and what a caller without a key or with the wrong role gets.
func TestOpenAPIDocument(t *testing.T) {
	doc := openAPIDoc(t)
	if doc.OpenAPI != "3.1.0" {
		t.Errorf("openapi is %q, want 3.1.0", doc.OpenAPI)
	}
	if doc.Components == nil || doc.Components.SecuritySchemes["apiKey"] == nil || doc.Components.SecuritySchemes["apiKey"].Value.Scheme != "bearer" {
		t.Error("no bearer security scheme apiKey")
	}
	tags := map[string]bool{}
	for _, tag := range doc.Tags {
		tags[tag.Name] = true
	}
	ids := map[string]string{}
	for name, op := range operations(doc) {
		if op.Responses == nil || op.Responses.Len() == 0 {
			t.Errorf("%s: no responses", name)
		}
		if op.OperationID == "" || op.Summary == "" || op.Description == "" {
			t.Errorf("%s: operationId, summary and description are required here", name)
		}
		if prev, dup := ids[op.OperationID]; dup {
			t.Errorf("%s and %s share operationId %s", name, prev, op.OperationID)
		}
		ids[op.OperationID] = name
		if len(op.Tags) != 1 || !tags[op.Tags[0]] {
			t.Errorf("%s: tags %v, want one of the document's tags", name, op.Tags)
		}
		roles, err := opRoles(op)
		if err != nil {
			t.Errorf("%s: %v", name, err)
		}
		public := op.Security != nil && len(*op.Security) == 0
		if public != (len(roles) == 0) {
			t.Errorf("%s: x-roles %v but security %v: an operation is public exactly when no role is listed", name, roles, op.Security)
		}
		if !public && (op.Responses.Status(401) == nil || op.Responses.Status(403) == nil) {
			t.Errorf("%s: needs a key but documents no 401 or 403", name)
		}
	}
}

// opRoles returns an operation's x-roles, each a role the API knows.
func opRoles(op *openapi3.Operation) ([]Role, error) {
	raw, ok := op.Extensions["x-roles"]
	if !ok {
		return nil, errString("no x-roles")
	}
	list, ok := raw.([]any)
	if !ok {
		return nil, errString("x-roles is not a list")
	}
	var out []Role
	for _, v := range list {
		s, _ := v.(string)
		if r := Role(s); !slices.Contains([]Role{RoleSpecialist, RoleClinician, RoleAdmin, RoleHIE, RoleDirector}, r) {
			return nil, errString("x-roles holds " + s + ", which is no role")
		} else {
			out = append(out, r)
		}
	}
	return out, nil
}

type errString string

func (e errString) Error() string { return string(e) }

// TestOpenAPICopiesCaseloadSchema: the request and response bodies that are
// caseload JSON (client, goal, support, job and what they use) are the
// caseload schema's own definitions, so what the document promises is what
// ips.Decode checks.
func TestOpenAPICopiesCaseloadSchema(t *testing.T) {
	var caseload struct {
		Defs map[string]any `json:"$defs"`
	}
	if err := json.Unmarshal(ips.Schema, &caseload); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Components struct {
			Schemas map[string]any `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal(openAPI, &doc); err != nil {
		t.Fatal(err)
	}
	if len(caseload.Defs) == 0 {
		t.Fatal("the caseload schema has no $defs")
	}
	for name, def := range caseload.Defs {
		want := rewriteRefs(def)
		if diff := cmp.Diff(want, doc.Components.Schemas[name]); diff != "" {
			t.Errorf("components.schemas.%s differs from $defs.%s of ips/caseload.schema.json (with #/$defs/ refs as #/components/schemas/): copy it over (-caseload +openapi.json):\n%s", name, name, diff)
		}
	}
}

// rewriteRefs returns v with every "#/$defs/X" reference made
// "#/components/schemas/X".
func rewriteRefs(v any) any {
	switch v := v.(type) {
	case map[string]any:
		out := map[string]any{}
		for k, x := range v {
			if s, ok := x.(string); ok && k == "$ref" && strings.HasPrefix(s, "#/$defs/") {
				x = "#/components/schemas/" + strings.TrimPrefix(s, "#/$defs/")
			}
			out[k] = rewriteRefs(x)
		}
		return out
	case []any:
		out := make([]any, len(v))
		for i, x := range v {
			out[i] = rewriteRefs(x)
		}
		return out
	}
	return v
}

// roleKeys are API keys of every role, for tests of this package that call
// New directly.
var roleKeys = map[Role]string{
	RoleSpecialist: "openapi-specialist-key",
	RoleClinician:  "openapi-clinician-key",
	RoleAdmin:      "openapi-admin-key",
	RoleHIE:        "openapi-hie-key",
	RoleDirector:   "openapi-director-key",
}

func keysOfEveryRole() []Key {
	var out []Key
	for role, k := range roleKeys {
		s := sha256.Sum256([]byte(k))
		out = append(out, Key{Name: string(role), Role: role, SHA256: s[:]})
	}
	return out
}

// fullHandler is New with records, /admin (one connection, epic) and
// /metrics over a fresh SQLite store.
func fullHandler(t *testing.T) http.Handler {
	t.Helper()
	st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "a.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	epic, err := os.ReadFile(filepath.Join("..", "..", "testdata", "ehr-capabilities", "epic-r4-sandbox-2026-07.json"))
	if err != nil {
		t.Fatal(err)
	}
	p, err := plan.Build(epic, plan.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return New(Options{Store: st, Keys: keysOfEveryRole(),
		Admin:   &Admin{Store: st, Plans: func() map[string]*plan.Plan { return map[string]*plan.Plan{"epic": p} }, Exports: oneExport{}},
		Metrics: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("# metrics\n")) }),
		Audit:   st})
}

// TestOpenAPIRolesAreEnforced calls every documented operation with a key
// of each role and with none: the roles in its x-roles get past
// authorization, every other role gets 403, no key gets 401, and a public
// operation answers without a key.
func TestOpenAPIRolesAreEnforced(t *testing.T) {
	h := fullHandler(t)
	for name, op := range operations(openAPIDoc(t)) {
		method, path, _ := strings.Cut(name, " ")
		allowed, err := opRoles(op)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		public := len(allowed) == 0
		url := strings.NewReplacer("{rid}", "r1", "{name}", "epic").Replace(path)
		if strings.HasPrefix(path, "/admin/") {
			url = strings.ReplaceAll(url, "{id}", "1")
		}
		url = strings.ReplaceAll(url, "{id}", "c1")
		for _, role := range []Role{"", RoleSpecialist, RoleClinician, RoleAdmin, RoleHIE, RoleDirector} {
			var body io.Reader
			if method == http.MethodPost || method == http.MethodPut {
				body = strings.NewReader("{}")
			}
			req := httptest.NewRequest(method, url, body)
			if role != "" {
				req.Header.Set("Authorization", "Bearer "+roleKeys[role])
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			checkOpenAPI(t, req, rec.Code, rec.Header(), rec.Body.Bytes())
			who := string(role)
			if who == "" {
				who = "no key"
			}
			switch {
			case public && rec.Code != http.StatusOK:
				t.Errorf("%s with %s: %d, want 200 from a public operation", name, who, rec.Code)
			case public:
			case role == "" && rec.Code != http.StatusUnauthorized:
				t.Errorf("%s without a key: %d, want 401", name, rec.Code)
			case role == "":
			case slices.Contains(allowed, role) && (rec.Code == http.StatusForbidden || rec.Code == http.StatusUnauthorized):
				t.Errorf("%s with %s: %d, but x-roles lets %s in", name, who, rec.Code, who)
			case !slices.Contains(allowed, role) && rec.Code != http.StatusForbidden:
				t.Errorf("%s with %s: %d, want 403: x-roles %v does not list it", name, who, rec.Code, allowed)
			}
		}
	}
}

// TestOpenAPIServed: GET /api/v1/openapi.json answers the document as JSON,
// to anyone: without a key, and with a key of any role.
func TestOpenAPIServed(t *testing.T) {
	h := fullHandler(t)
	for _, key := range []string{"", roleKeys[RoleHIE], "not-a-key"} {
		req := httptest.NewRequest(http.MethodGet, openAPIPath, nil)
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			t.Fatalf("GET %s with key %q: %d %s", openAPIPath, key, rec.Code, rec.Body)
		}
		if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
			t.Errorf("Content-Type %q, want application/json", ct)
		}
		var served struct {
			OpenAPI string         `json:"openapi"`
			Paths   map[string]any `json:"paths"`
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &served); err != nil || served.OpenAPI != "3.1.0" || served.Paths["/api/v1/clients"] == nil {
			t.Errorf("the body is not the OpenAPI document: %v %.200s", err, rec.Body)
		}
		if rec.Body.String() != string(openAPI) {
			t.Error("the body is not openapi.json as embedded")
		}
	}
	// The description is public; nothing else becomes so.
	for _, path := range []string{"/api/v1/clients", "/api/v1/openapi.json/../clients", "/api/v1/openapi.jsonx", "/admin/connections"} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		if rec.Code != http.StatusUnauthorized {
			t.Errorf("GET %s without a key: %d, want 401", path, rec.Code)
		}
	}
}
