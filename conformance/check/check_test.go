package check

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/ipsfhir/ipsfhir/adapter/ehr"
)

func capabilityFile(name string) string {
	return filepath.Join("..", "..", "testdata", "ehr-capabilities", name)
}

const (
	epicFile   = "epic-r4-sandbox-2026-07.json"
	oracleFile = "oracle-health-millennium-r4-2026-08.json"
)

func readStatement(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(capabilityFile(name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// result returns the result with id, failing t if there is none.
func result(t *testing.T, rep *Report, id string) Result {
	t.Helper()
	for _, r := range rep.Results {
		if r.ID == id {
			return r
		}
	}
	t.Fatalf("no result %s; have %s", id, ids(rep))
	return Result{}
}

func ids(rep *Report) string {
	var s []string
	for _, r := range rep.Results {
		s = append(s, r.ID)
	}
	return strings.Join(s, " ")
}

// want checks a result's status, blocking flag and that its reason says
// each of says.
func want(t *testing.T, rep *Report, id string, s Status, blocking bool, says ...string) {
	t.Helper()
	r := result(t, rep, id)
	if r.Status != s || r.Blocking != blocking {
		t.Errorf("%s: %s (blocking %v), want %s (blocking %v): %s", id, r.Status, r.Blocking, s, blocking, r.Reason)
	}
	for _, w := range says {
		if !strings.Contains(r.Reason, w) {
			t.Errorf("%s: reason %q does not say %q", id, r.Reason, w)
		}
	}
}

func run(t *testing.T, o Options) *Report {
	t.Helper()
	rep, err := Run(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	checkReasons(t, rep)
	return rep
}

// checkReasons holds every report to the rules for reasons: one line, no
// URL with a query string, nothing from a response body.
func checkReasons(t *testing.T, rep *Report) {
	t.Helper()
	seen := map[string]bool{}
	for _, r := range rep.Results {
		if seen[r.ID] {
			t.Errorf("result %s reported twice", r.ID)
		}
		seen[r.ID] = true
		if r.Reason == "" || strings.ContainsAny(r.Reason, "\n\r") {
			t.Errorf("%s: reason %q is not one line", r.ID, r.Reason)
		}
		for _, f := range strings.Fields(r.Reason) {
			if strings.Contains(f, "://") && strings.Contains(f, "?") {
				t.Errorf("%s: reason quotes a URL with a query: %q", r.ID, r.Reason)
			}
		}
		if !containsGroup(r.Group) {
			t.Errorf("%s: unknown group %q", r.ID, r.Group)
		}
	}
}

func containsGroup(g string) bool {
	for _, x := range Groups {
		if x == g {
			return true
		}
	}
	return false
}

func TestOfflineEpic(t *testing.T) {
	rep := run(t, Options{Statement: readStatement(t, epicFile)})
	if !rep.Ready {
		t.Errorf("Epic's statement blocks sync: %v", rep.Count().Blocking)
	}
	for _, r := range rep.Results {
		if r.Group == GroupConnectivity || r.Group == GroupAuth || strings.HasSuffix(r.ID, ".search") || strings.HasSuffix(r.ID, ".live") {
			if (r.Status != Skip || r.Reason != "offline") && r.Status != Omit {
				t.Errorf("%s: %s %q offline, want skip \"offline\"", r.ID, r.Status, r.Reason)
			}
		}
	}
	want(t, rep, "metadata.read", Skip, true, "offline")
	want(t, rep, "metadata.statement", Pass, true, "Epic")
	want(t, rep, "metadata.fhir-version", Pass, true, "4.0.1")
	want(t, rep, "metadata.formats", Pass, true, "json")
	want(t, rep, "resources.Goal.declared", Pass, false, "read, search-type")
	want(t, rep, "write-paths.employment-goal", Pass, false, "chart note", "Goal is not writable here (declares read, search-type)")
	want(t, rep, "write-paths.ips-plan", Pass, false, "chart note")
	want(t, rep, "write-paths.chart-note", Pass, false, "native DocumentReference")
	want(t, rep, "write-paths.referral-intake", Pass, false, "ServiceRequest")
	want(t, rep, "bundles.transaction", Fail, false, "transaction not declared")
	want(t, rep, "bundles.batch", Fail, false, "batch not declared")
	want(t, rep, "conditional.DocumentReference", Fail, false, "neither conditionalCreate nor conditionalUpdate", "searches by identifier")
	want(t, rep, "versioning.DocumentReference", Fail, false, "no versioning")
	want(t, rep, "change-detection.ServiceRequest", Pass, false, "authored")
	want(t, rep, "change-detection.DocumentReference", Pass, false, "_lastupdated")
	want(t, rep, "change-detection.Goal", Omit, false, "does not read Goal back")
	want(t, rep, "smart.declared", Pass, false, "SMART-on-FHIR")
	want(t, rep, "smart.discovery", Skip, false, "offline")
	want(t, rep, "write-tests", Skip, false, "offline")
	if rep.Plan == nil || rep.Plan.Bundles != "none" || rep.Plan.Software != "Epic May 2026" {
		t.Errorf("plan %+v", rep.Plan)
	}
}

func TestOfflineOracle(t *testing.T) {
	rep := run(t, Options{Statement: readStatement(t, oracleFile)})
	if !rep.Ready {
		t.Errorf("Oracle's statement blocks sync: %v", rep.Count().Blocking)
	}
	want(t, rep, "metadata.statement", Pass, true, "CapabilityStatement")
	want(t, rep, "write-paths.employment-goal", Pass, false, "chart note")
	want(t, rep, "bundles.batch", Pass, false, "batch declared")
	want(t, rep, "bundles.transaction", Fail, false, "transaction not declared")
	want(t, rep, "conditional.DocumentReference", Fail, false, "no identifier search", "searches the patient's DocumentReference")
	want(t, rep, "change-detection.ServiceRequest", Pass, false, "_lastUpdated")
	want(t, rep, "resources.Patient.declared", Pass, false, "searches identifier")
}

func TestOfflineStatementsThatBlock(t *testing.T) {
	for name, tc := range map[string]struct {
		doc, id string
		says    string
	}{
		"STU3":        {`{"resourceType":"CapabilityStatement","fhirVersion":"3.0.2","format":["json"],"rest":[{"mode":"server"}]}`, "metadata.fhir-version", "declares FHIR 3.0.2"},
		"a Patient":   {`{"resourceType":"Patient","id":"x"}`, "metadata.statement", "a Patient, not a CapabilityStatement"},
		"HTML":        {`<html>login</html>`, "metadata.statement", "not JSON"},
		"client only": {`{"resourceType":"CapabilityStatement","fhirVersion":"4.0.1","rest":[{"mode":"client"}]}`, "metadata.statement", "no rest entry with mode server"},
		"XML only":    {`{"resourceType":"CapabilityStatement","fhirVersion":"4.0.1","format":["xml"],"rest":[{"mode":"server"}]}`, "metadata.formats", "not JSON"},
	} {
		t.Run(name, func(t *testing.T) {
			rep := run(t, Options{Statement: []byte(tc.doc)})
			want(t, rep, tc.id, Fail, true, tc.says)
			if rep.Ready {
				t.Error("ready, want not ready")
			}
			if tc.id != "metadata.formats" && rep.Plan != nil {
				t.Error("a plan from a statement that is not R4")
			}
		})
	}
}

func TestOptionsThatCannotWork(t *testing.T) {
	st := readStatement(t, epicFile)
	for name, o := range map[string]Options{
		"both":                          {Statement: st, BaseURL: "https://ehr.example/fhir"},
		"neither":                       {},
		"test patient offline":          {Statement: st, TestPatient: "p1"},
		"write tests without a patient": {BaseURL: "https://ehr.example/fhir", WriteTests: true},
		"patient id with a query":       {BaseURL: "https://ehr.example/fhir", TestPatient: "p1?x=y"},
		"bearer without a token":        {BaseURL: "https://ehr.example/fhir", Auth: Auth{Type: AuthBearer}},
		"credentials over remote http":  {BaseURL: "http://ehr.example/fhir", Auth: Auth{Type: AuthBearer, Provider: ehr.Bearer("x")}},
	} {
		if _, err := Run(t.Context(), o); !errors.Is(err, ErrOptions) {
			t.Errorf("%s: %v, want ErrOptions", name, err)
		}
	}
}

// smallStatement declares Patient read and search by identifier, and Goal
// read and search by patient, nothing written.
const smallStatement = `{"resourceType":"CapabilityStatement","fhirVersion":"4.0.1","kind":"instance","format":["json"],
 "rest":[{"mode":"server","resource":[
  {"type":"Patient","interaction":[{"code":"read"},{"code":"search-type"}],"searchParam":[{"name":"identifier"}]},
  {"type":"Goal","interaction":[{"code":"read"},{"code":"search-type"}],"searchParam":[{"name":"patient"}]}]}]}`

// fakeEHR serves smallStatement, answers reads with 404 and searches with
// an empty Bundle, and, when token is set, refuses every FHIR request but
// /metadata without "Bearer "+token with 401.
func fakeEHR(token string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/fhir+json")
		if r.URL.Path == "/fhir/metadata" {
			_, _ = w.Write([]byte(smallStatement))
			return
		}
		if token != "" && r.Header.Get("Authorization") != "Bearer "+token {
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"login"}]}`))
			return
		}
		if strings.Count(r.URL.Path, "/") > 2 {
			w.WriteHeader(http.StatusNotFound)
			_, _ = w.Write([]byte(`{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"not-found"}]}`))
			return
		}
		_, _ = w.Write([]byte(`{"resourceType":"Bundle","type":"searchset","entry":[]}`))
	})
}

func TestTLSVerification(t *testing.T) {
	srv := httptest.NewUnstartedServer(fakeEHR(""))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshake
	srv.StartTLS()
	defer srv.Close()

	rep := run(t, Options{BaseURL: srv.URL + "/fhir"})
	want(t, rep, "connectivity.reachable", Pass, true)
	want(t, rep, "connectivity.tls", Fail, true, "TLS verification failed", "unknown authority", "caFile")
	want(t, rep, "metadata.read", Skip, true)
	if rep.Ready || rep.Plan != nil {
		t.Errorf("ready %v with an untrusted certificate", rep.Ready)
	}

	ca := filepath.Join(t.TempDir(), "ca.pem")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(ca, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	rep = run(t, Options{BaseURL: srv.URL + "/fhir", CAFile: ca})
	want(t, rep, "connectivity.tls", Pass, true, "https", "verified")
	want(t, rep, "metadata.statement", Pass, true)
	want(t, rep, "resources.Goal.search", Pass, false, "Bundle of 0")
	// The fake EHR takes no writes: that alone blocks, not TLS.
	if b := rep.Count().Blocking; !slices.Equal(b, []string{"write-paths.any"}) {
		t.Errorf("blocking with the CA trusted: %v; want only write-paths.any", b)
	}
}

func TestMetadataNotACapabilityStatement(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/fhir+json")
		_, _ = w.Write([]byte(`{"resourceType":"Bundle","type":"searchset","entry":[{"resource":{"resourceType":"Patient","name":[{"family":"Planted"}]}}]}`))
	}))
	defer srv.Close()
	rep := run(t, Options{BaseURL: srv.URL + "/fhir"})
	want(t, rep, "connectivity.reachable", Pass, true)
	want(t, rep, "connectivity.tls", Pass, true, "warning: plain http", "loopback")
	want(t, rep, "metadata.read", Pass, true)
	want(t, rep, "metadata.statement", Fail, true, "a Bundle, not a CapabilityStatement")
	want(t, rep, "auth", Skip, false, "no usable R4 CapabilityStatement")
	if rep.Ready {
		t.Error("ready without a CapabilityStatement")
	}
	var buf bytes.Buffer
	if err := WriteText(&buf, rep); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(buf.String(), "Planted") {
		t.Errorf("the report quotes the response body:\n%s", buf.String())
	}
	if !strings.Contains(buf.String(), "not ready: metadata.statement blocks sync") {
		t.Errorf("no verdict naming the blocking test:\n%s", buf.String())
	}
}

func TestMetadataStatus(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	defer srv.Close()
	rep := run(t, Options{BaseURL: srv.URL + "/wrong"})
	want(t, rep, "connectivity.reachable", Pass, true, "HTTP 404")
	want(t, rep, "metadata.read", Fail, true, "HTTP 404", "FHIR R4 base")
}

func TestUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	rep := run(t, Options{BaseURL: "http://" + addr + "/fhir"})
	r := result(t, rep, "connectivity.reachable")
	if (r.Status != Fail && r.Status != Error) || !r.Blocking || !strings.Contains(r.Reason, "cannot reach the EHR") {
		t.Errorf("closed port: %+v", r)
	}
	if rep.Ready {
		t.Error("ready although unreachable")
	}
}

func TestUnauthorized(t *testing.T) {
	srv := httptest.NewServer(fakeEHR("good-token"))
	defer srv.Close()
	base := srv.URL + "/fhir"

	rep := run(t, Options{BaseURL: base})
	want(t, rep, "auth.accepted", Fail, true, "refused a request without credentials", "HTTP 401", "configure bearer or smart-backend")
	want(t, rep, "resources.Goal.search", Skip, false, "authentication does not work")
	if rep.Ready {
		t.Error("ready although every request is refused")
	}

	rep = run(t, Options{BaseURL: base, Auth: Auth{Type: AuthBearer, Provider: ehr.Bearer("stale-token")}})
	want(t, rep, "auth.token", Pass, true, "static bearer token")
	want(t, rep, "auth.accepted", Fail, true, "refused the token", "HTTP 401")
	if rep.Ready {
		t.Error("ready with a refused token")
	}

	rep = run(t, Options{BaseURL: base, Auth: Auth{Type: AuthBearer, Provider: ehr.Bearer("good-token")}})
	want(t, rep, "auth.accepted", Pass, true, "accepted the token")
	want(t, rep, "auth.invalid-token", Pass, false, "answered 401")
	want(t, rep, "resources.Goal.search", Pass, false, "a made-up patient id", "Bundle of 0")
	want(t, rep, "resources.Patient.search", Pass, true, "a made-up identifier")
	want(t, rep, "resources.Observation.search", Omit, false, "not declared")
	want(t, rep, "write-paths.employment-goal", Fail, false, "none:")
	want(t, rep, "conditional", Omit, false)
	want(t, rep, "smart", Omit, false)
	// The token works; the fake EHR takes no writes, which alone blocks.
	want(t, rep, "write-paths.any", Fail, true, "nothing can be written")
	if b := rep.Count().Blocking; !slices.Equal(b, []string{"write-paths.any"}) {
		t.Errorf("blocking: %v; want only write-paths.any", b)
	}
	var buf bytes.Buffer
	if err := WriteText(&buf, rep); err != nil {
		t.Fatal(err)
	}
	if v := buf.String(); !strings.Contains(v, "not ready: nothing can be written to this EHR") || strings.Contains(v, "\nready:") {
		t.Errorf("verdict does not say plainly that nothing can be written:\n%s", v)
	}
}

func TestJSONShape(t *testing.T) {
	rep := run(t, Options{Statement: readStatement(t, oracleFile)})
	b, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Results []map[string]any `json:"results"`
		Plan    map[string]any   `json:"plan"`
		Ready   *bool            `json:"ready"`
	}
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if len(got.Results) == 0 || got.Plan["concepts"] == nil || got.Ready == nil {
		t.Fatalf("JSON %s", b)
	}
	for _, k := range []string{"id", "group", "status", "reason", "blocking"} {
		if _, ok := got.Results[0][k]; !ok {
			t.Errorf("result has no %q: %v", k, got.Results[0])
		}
	}
}

// TestSMARTTokenEndpointOnAnotherOrigin: an EHR whose
// .well-known/smart-configuration names a token endpoint on another origin
// blocks sync until the token URL is configured, the check names both
// origins, and no client assertion reaches the other host meanwhile.
func TestSMARTTokenEndpointOnAnotherOrigin(t *testing.T) {
	var tokenRequests atomic.Int32
	elsewhere := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tokenRequests.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"access_token":"good-token","token_type":"bearer","expires_in":300}`))
	}))
	defer elsewhere.Close()
	ehrSite := fakeEHR("good-token")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/fhir/.well-known/smart-configuration" {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"token_endpoint":"` + elsewhere.URL + `/token","grant_types_supported":["client_credentials"],` +
				`"token_endpoint_auth_methods_supported":["private_key_jwt"],"token_endpoint_auth_signing_alg_values_supported":["ES384"]}`))
			return
		}
		ehrSite.ServeHTTP(w, r)
	}))
	defer srv.Close()
	base := srv.URL + "/fhir"
	key, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	smart := func(tokenURL string) Auth {
		p, err := ehr.NewSMARTBackend(ehr.SMARTOptions{ClientID: "c1", Key: ehr.SigningKey{Key: key}, Scopes: []string{"system/Goal.rs"}, TokenURL: tokenURL})
		if err != nil {
			t.Fatal(err)
		}
		return Auth{Type: AuthSMARTBackend, Provider: p, Alg: "ES384", TokenURL: tokenURL}
	}

	rep := run(t, Options{BaseURL: base, Auth: smart("")})
	// httptest URLs are origins already: http, 127.0.0.1 and a port.
	want(t, rep, "smart.token-endpoint", Fail, true, "on origin "+elsewhere.URL, "not the FHIR base's "+srv.URL, "set tokenUrl")
	want(t, rep, "auth.token", Fail, true, "another origin", "not sent", "tokenUrl")
	if rep.Ready {
		t.Error("ready although the token endpoint is on another origin")
	}
	if n := tokenRequests.Load(); n != 0 {
		t.Fatalf("the check sent %d token requests to another origin", n)
	}

	// Configured, the endpoint is the administrator's choice: it is used.
	rep = run(t, Options{BaseURL: base, Auth: smart(elsewhere.URL + "/token")})
	want(t, rep, "auth.token", Pass, true, "token obtained")
	want(t, rep, "smart.token-endpoint", Pass, false)
	if n := tokenRequests.Load(); n == 0 {
		t.Error("the configured token URL was not used")
	}
	// The fake EHR takes no writes: that alone blocks, not the token.
	if b := rep.Count().Blocking; !slices.Equal(b, []string{"write-paths.any"}) {
		t.Errorf("blocking with the token URL configured: %v; want only write-paths.any", b)
	}
}

// TestTreatmentPlanLinkIsReported: the check says whether the IPS plan can
// be linked to the treatment plan, and fails the line where CarePlan
// cannot be searched by patient; the specialist not being writable is
// not a failure (the plan and the note name them).
func TestTreatmentPlanLinkIsReported(t *testing.T) {
	rep := run(t, Options{Statement: readStatement(t, epicFile)})
	want(t, rep, "write-paths.treatment-plan", Pass, false, "CarePlan search by patient", "context.related")
	want(t, rep, "write-paths.specialist", Omit, false, "Practitioner is not writable here")
	want(t, rep, "write-paths.care-team", Omit, false, "no care team")

	st := strings.Replace(string(readStatement(t, epicFile)), `"type":"CarePlan"`, `"type":"CarePlanX"`, 1)
	if st == string(readStatement(t, epicFile)) {
		t.Fatal("the statement's CarePlan entry was not found")
	}
	rep = run(t, Options{Statement: []byte(st)})
	want(t, rep, "write-paths.treatment-plan", Fail, false, "cannot be searched by patient")
}
