package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ipsfhir/ipsfhir/adapter/api"
	"github.com/ipsfhir/ipsfhir/adapter/plan"
	"github.com/ipsfhir/ipsfhir/adapter/store"
	"github.com/ipsfhir/ipsfhir/adapter/syncer"
	"github.com/ipsfhir/ipsfhir/conformance/check"
	"github.com/ipsfhir/ipsfhir/conformance/peer"
	"github.com/ipsfhir/ipsfhir/internal/jsoncase"
	"github.com/ipsfhir/ipsfhir/ips"
)

// wantLowerCamel fails t for every member name of doc that is not
// lowerCamel. FHIR resources (at the fhir paths) and keys that are data
// (at the data paths: objects the code writes from a Go map, whose keys
// are connection names, failure reasons …) are exempt; see jsoncase.
func wantLowerCamel(t *testing.T, what string, doc []byte, ex jsoncase.Exempt) {
	t.Helper()
	problems, err := jsoncase.Check(doc, ex)
	if err != nil {
		t.Errorf("%s: %v\n%.300s", what, err, doc)
		return
	}
	for _, p := range problems {
		t.Errorf("%s: %s", what, p)
	}
}

// TestJSONNamesOfTypes checks the Go types the CLI and the service encode
// as JSON, with everything reachable from them: every field has a
// lowerCamel JSON name. It finds a field left without a json tag even
// where no test output holds a value for it.
func TestJSONNamesOfTypes(t *testing.T) {
	t.Parallel()
	for _, p := range jsoncase.CheckTypes(
		passSummary{}, importSummary{}, readiness{}, // sync --once --json, import --json, /readyz
		check.Report{},                                            // check --json
		plan.Plan{},                                               // /admin/connections/{name}/plan
		store.DeadLetter{}, store.Conflict{}, store.ReasonCount{}, // /admin
		syncer.ConnectionStatus{},
		ips.Caseload{}, // /api/v1 and the caseload file
		api.ErrorBody{},
	) {
		t.Error(p)
	}
}

// TestJSONOutputsAreLowerCamel produces every JSON output of the CLI and
// the service it can (with data in the maps and lists: failures, dead
// letters, a conflict, a failing connection) and checks the names in each.
func TestJSONOutputsAreLowerCamel(t *testing.T) {
	t.Parallel()
	srv := peer.StartForTest(t, peer.Options{Args: []string{"--quiet"}})
	dir := t.TempDir()
	keyOf := func(k string) string { s := sha256.Sum256([]byte(k)); return hex.EncodeToString(s[:]) }
	cfg := filepath.Join(dir, "ipsfhir.yaml")
	// The EHR knows none of the sample's patients: every push fails, and
	// with one attempt becomes a dead letter.
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`program: {id: riverside-ips}
store: {driver: sqlite, dsn: ips.db}
server: {listen: "127.0.0.1:0"}
consent: {ehr: true, hie: true}
sync: {maxAttempts: 1}
apiKeys:
  - {name: jordan, role: specialist, sha256: %s}
  - {name: ops, role: admin, sha256: %s}
connections:
  - {name: clinic, fhirBaseUrl: %q, enabled: true, auth: {type: none}}
  - {name: down-clinic, fhirBaseUrl: %q, enabled: true, auth: {type: none}}
`, keyOf("spec-key"), keyOf("admin-key"), srv.BaseURL, closedPortURL(t))), 0o644); err != nil {
		t.Fatal(err)
	}
	sample := repoFile("testdata", "caseload-sample.json")
	cli := func(args ...string) []byte {
		t.Helper()
		code, stdout, stderr := ipsfhir(t, "", args...)
		if stdout == "" && !slices.Contains(args, "--out") {
			t.Fatalf("%s: exit %d and no output\n%s", strings.Join(args, " "), code, stderr)
		}
		return []byte(stdout)
	}

	wantLowerCamel(t, "import --json", cli("import", "--config", cfg, "--json", sample), jsoncase.Exempt{})
	// push.failures is a map from failure reason to count.
	wantLowerCamel(t, "sync --once --json", cli("sync", "--config", cfg, "--once", "--json"),
		jsoncase.Exempt{Data: []string{"push.failures", "connections[].push.failures"}})
	wantLowerCamel(t, "check --json", cli("check", "--json", "--capability-statement", repoFile("testdata", "ehr-capabilities", "epic-r4-sandbox-2026-07.json")), jsoncase.Exempt{})
	mapped := filepath.Join(dir, "bundle.json")
	cli("map", "--in", sample, "--out", mapped)
	invalid := filepath.Join(dir, "goal.json")
	if err := os.WriteFile(invalid, []byte(`{"resourceType":"Goal","status":"sideways"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	// A valid file, an invalid one (with its OperationOutcome), one not there.
	wantLowerCamel(t, "validate --json", cli("validate", "--json", mapped, invalid, filepath.Join(dir, "missing.json")), jsoncase.Exempt{FHIR: []string{"[].outcome"}})
	wantLowerCamel(t, "report --json", cli("report", "--config", cfg, "--quarter", "2026Q3", "--json"), jsoncase.Exempt{FHIR: []string{""}})
	cli("export", "--config", cfg, "--identified", "--out", filepath.Join(dir, "export"))
	manifest, err := os.ReadFile(filepath.Join(dir, "export", "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	wantLowerCamel(t, "export's manifest.json", manifest, jsoncase.Exempt{})

	// An open conflict for /admin/conflicts, as a pull records one.
	st := openSQLite(t, filepath.Join(dir, "ips.db"))
	if _, err := st.AddConflict(t.Context(), store.Conflict{Connection: "clinic", ClientID: "c-001", Key: "urn:ipsfhir:riverside-ips:goal|c-001/g1",
		Field: "status", IPSValue: "active", EHRValue: "completed", Winner: "ips"}); err != nil {
		t.Fatal(err)
	}
	st.Close()

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	base, stderr, _ := startServe(t, ctx, cfg)
	call := func(method, path, key string) (int, []byte) {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, nil)
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		req.Header.Set("Prefer", "respond-async")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	// The live connection connects (the admin plan needs it); the dead
	// one shows its failures in /readyz.
	for deadline := time.Now().Add(30 * time.Second); ; {
		_, body := call("GET", "/admin/connections", "admin-key")
		_, ready := call("GET", "/readyz", "")
		if strings.Contains(string(body), `"clinic"`) && strings.Contains(string(ready), `"failures"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the connections did not settle:\n%s\n%s\n%s", body, ready, stderr.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	_, page := call("GET", "/api/v1/clients?limit=1", "spec-key")
	id := strings.SplitN(strings.SplitN(string(page), `"id":"`, 2)[1], `"`, 2)[0]
	for _, c := range []struct {
		method, path, key string
		want              int
		ex                jsoncase.Exempt
	}{
		{"GET", "/readyz", "", 200, jsoncase.Exempt{}},
		{"GET", "/admin/connections", "admin-key", 200, jsoncase.Exempt{}},
		{"GET", "/admin/connections/clinic/plan", "admin-key", 200, jsoncase.Exempt{}},
		{"GET", "/admin/dead-letters", "admin-key", 200, jsoncase.Exempt{}},
		{"GET", "/admin/dead-letters?connection=nobody", "admin-key", 200, jsoncase.Exempt{}},
		{"GET", "/admin/failures", "admin-key", 200, jsoncase.Exempt{}},
		{"GET", "/admin/conflicts", "admin-key", 200, jsoncase.Exempt{}},
		{"POST", "/admin/connections/clinic/reconcile", "admin-key", 202, jsoncase.Exempt{}},
		{"GET", "/admin/connections/nobody/plan", "admin-key", 404, jsoncase.Exempt{}},
		{"GET", "/api/v1/clients?limit=2", "spec-key", 200, jsoncase.Exempt{}},
		{"GET", "/api/v1/clients/" + id, "spec-key", 200, jsoncase.Exempt{}},
		{"GET", "/api/v1/clients/" + id + "/goals", "spec-key", 200, jsoncase.Exempt{}},
		{"GET", "/api/v1/clients/" + id + "/supports", "spec-key", 200, jsoncase.Exempt{}},
		{"GET", "/api/v1/clients/" + id + "/jobs", "spec-key", 200, jsoncase.Exempt{}},
		{"GET", "/api/v1/clients/nobody", "spec-key", 404, jsoncase.Exempt{}},
		{"GET", "/admin/connections", "spec-key", 403, jsoncase.Exempt{}},
	} {
		code, body := call(c.method, c.path, c.key)
		if code != c.want {
			t.Errorf("%s %s: %d, want %d\n%.300s", c.method, c.path, code, c.want, body)
			continue
		}
		wantLowerCamel(t, c.method+" "+c.path, body, c.ex)
	}
	for _, path := range []string{"/admin/dead-letters", "/admin/failures", "/admin/conflicts"} {
		if _, body := call("GET", path, "admin-key"); !strings.Contains(string(body), `"connection":"`) {
			t.Errorf("GET %s holds no entry: its names went unchecked\n%.300s", path, body)
		}
	}

	// The API's description: every property of every schema it documents
	// (bodies this test does not produce too).
	_, doc := call("GET", "/api/v1/openapi.json", "")
	var openapi any
	if err := json.Unmarshal(doc, &openapi); err != nil {
		t.Fatal(err)
	}
	properties := 0
	var walk func(v any, path string)
	walk = func(v any, path string) {
		switch x := v.(type) {
		case map[string]any:
			if ps, ok := x["properties"].(map[string]any); ok {
				for name := range ps {
					properties++
					if !jsoncase.IsLowerCamel(name) {
						t.Errorf("openapi.json %s: property %q is not lowerCamel", path, name)
					}
				}
			}
			for k, e := range x {
				walk(e, path+"/"+k)
			}
		case []any:
			for i, e := range x {
				walk(e, fmt.Sprintf("%s/%d", path, i))
			}
		}
	}
	walk(openapi, "#")
	if properties < 20 {
		t.Errorf("openapi.json documents %d properties: its schemas went unchecked", properties)
	}

	// The Bulk Data manifest of $export.
	req, _ := http.NewRequest("GET", base+"/fhir/$export", nil)
	req.Header.Set("Authorization", "Bearer admin-key")
	req.Header.Set("Prefer", "respond-async")
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusAccepted {
		t.Fatalf("$export kick-off: %v %v", resp, err)
	}
	resp.Body.Close()
	status := strings.TrimPrefix(resp.Header.Get("Content-Location"), base)
	for deadline := time.Now().Add(20 * time.Second); ; {
		code, body := call("GET", status, "admin-key")
		if code == http.StatusOK {
			wantLowerCamel(t, "$export manifest", body, jsoncase.Exempt{})
			break
		}
		if code != http.StatusAccepted || time.Now().After(deadline) {
			t.Fatalf("$export status: %d %s", code, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
