package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/ipsfhir/ipsfhir/adapter/ehr"
	"github.com/ipsfhir/ipsfhir/conformance/peer"
)

var (
	epicStatement   = repoFile("testdata", "ehr-capabilities", "epic-r4-sandbox-2026-07.json")
	oracleStatement = repoFile("testdata", "ehr-capabilities", "oracle-health-millennium-r4-2026-08.json")
)

// checkLine returns the text report's line for result id: status and reason.
func checkLine(t *testing.T, out, id string) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^  (\S+)\s+` + regexp.QuoteMeta(id) + `\s+(.*)$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no line for %s in:\n%s", id, out)
	}
	return m[1] + " " + m[2]
}

func TestCheckOffline(t *testing.T) {
	t.Parallel()
	code, out, stderr := ipsfhir(t, "", "check", "--capability-statement", epicStatement)
	if code != exitOK {
		t.Fatalf("Epic: exit %d, want 0 (nothing blocks sync)\n%s%s", code, out, stderr)
	}
	for id, want := range map[string]string{
		"connectivity.reachable":      "skip offline",
		"auth.token":                  "skip offline",
		"resources.Goal.search":       "skip offline",
		"metadata.fhir-version":       "pass FHIR 4.0.1 (R4)",
		"write-paths.employment-goal": "pass falls back to the chart note: Goal is not writable here (declares read, search-type)",
		"bundles.batch":               "FAIL batch not declared",
		"bundles.transaction":         "FAIL transaction not declared",
		"write-tests":                 "skip offline",
		// The plan travels in the note, which relates to the treatment
		// plan; Epic takes no Practitioner, so the specialist is named.
		"write-paths.treatment-plan": "pass read from CarePlan: the patient's active treatment plan is found by a CarePlan search by patient",
		"write-paths.specialist":     "omit not written: Practitioner is not writable here (declares read, search-type)",
	} {
		if got := checkLine(t, out, id); !strings.HasPrefix(got, want) {
			t.Errorf("%s: %q, want it to start %q", id, got, want)
		}
	}
	plan := out[strings.Index(out, "sync plan for Epic May 2026"):]
	if !regexp.MustCompile(`(?m)^  employment-goal\s+chart-note \(DocumentReference\)\s+Goal is not writable here`).MatchString(plan) {
		t.Errorf("the plan summary does not show the goal's path and why:\n%s", plan)
	}
	// What the administrator can change, and how each type is kept from
	// duplicates and overwrites and how changes are found.
	for _, want := range []string{
		"you can: map the site's code in connections[].codes.job-outcome to write it as Observation",
		"you can: set connections[].overrides.referral-intake to none",
		"strategies:",
		"DocumentReference  idempotency ledger+search-identifier; concurrency read-compare-write; changes found by _lastUpdated (_lastupdated)",
		"ServiceRequest     changes found by date-parameter (authored)",
		"provenance         Provenance declares read, not create: no Provenance is written",
	} {
		if !strings.Contains(plan, want) {
			t.Errorf("the plan summary lacks %q:\n%s", want, plan)
		}
	}
	if !strings.Contains(out, "\nready: sync can run") {
		t.Errorf("no verdict:\n%s", out)
	}

	code, out, _ = ipsfhir(t, "", "check", "--capability-statement", oracleStatement, "--json")
	if code != exitOK {
		t.Fatalf("Oracle --json: exit %d", code)
	}
	var rep struct {
		Results []struct{ ID, Group, Status, Reason string } `json:"results"`
		Plan    struct {
			Bundles  string `json:"bundles"`
			Concepts []struct{ Concept, Path, Why string }
		} `json:"plan"`
		Ready bool `json:"ready"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("--json output: %v\n%s", err, out)
	}
	if !rep.Ready || rep.Plan.Bundles != "batch" || len(rep.Plan.Concepts) != 11 {
		t.Errorf("Oracle: ready %v, bundles %q, %d concepts", rep.Ready, rep.Plan.Bundles, len(rep.Plan.Concepts))
	}
	statuses := map[string]string{}
	for _, r := range rep.Results {
		statuses[r.ID] = r.Status
	}
	if statuses["bundles.batch"] != "pass" || statuses["bundles.transaction"] != "fail" || statuses["metadata.statement"] != "pass" {
		t.Errorf("Oracle results: %v", statuses)
	}
}

func TestCheckNotR4IsExit1(t *testing.T) {
	t.Parallel()
	f := filepath.Join(t.TempDir(), "stu3.json")
	if err := os.WriteFile(f, []byte(`{"resourceType":"CapabilityStatement","fhirVersion":"3.0.2","format":["json"],"rest":[{"mode":"server"}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, _ := ipsfhir(t, "", "check", "--capability-statement", f)
	if code != exitFindings {
		t.Errorf("exit %d, want 1", code)
	}
	if !strings.Contains(out, "not ready: metadata.fhir-version blocks sync") || !strings.Contains(out, "sync plan: none") {
		t.Errorf("output:\n%s", out)
	}
	// Standard input works too.
	data, _ := os.ReadFile(epicStatement)
	if code, _, stderr := ipsfhir(t, string(data), "check", "--capability-statement", "-"); code != exitOK {
		t.Errorf("from stdin: exit %d: %s", code, stderr)
	}
}

func TestCheckUsageErrors(t *testing.T) {
	t.Setenv("IPSFHIR_CHECK_TEST_TOKEN", "not-a-real-token")
	dir := t.TempDir()
	cfg := filepath.Join(dir, "ipsfhir.yaml")
	if err := os.WriteFile(cfg, []byte("connections:\n  - {name: clinic, fhirBaseUrl: \"http://127.0.0.1:9/fhir\", auth: {type: none}}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for name, args := range map[string][]string{
		"no EHR":                        {},
		"both --ehr and a statement":    {"--ehr", "http://127.0.0.1:9/fhir", "--capability-statement", epicStatement},
		"both --config and --ehr":       {"--ehr", "http://127.0.0.1:9/fhir", "--config", cfg, "--connection", "clinic"},
		"unreadable statement":          {"--capability-statement", filepath.Join(dir, "missing.json")},
		"bad flag":                      {"--capability-statement", epicStatement, "--frobnicate"},
		"extra argument":                {"--capability-statement", epicStatement, "extra"},
		"write tests without a patient": {"--ehr", "http://127.0.0.1:9/fhir", "--write-tests"},
		"test patient offline":          {"--capability-statement", epicStatement, "--test-patient", "p1"},
		"bad test patient id":           {"--ehr", "http://127.0.0.1:9/fhir", "--test-patient", "p 1"},
		"unknown auth":                  {"--ehr", "http://127.0.0.1:9/fhir", "--auth", "basic"},
		"bearer without --token-env":    {"--ehr", "http://127.0.0.1:9/fhir", "--auth", "bearer"},
		"token env unset":               {"--ehr", "http://127.0.0.1:9/fhir", "--auth", "bearer", "--token-env", "IPSFHIR_CHECK_TEST_UNSET_VAR"},
		"token env with auth none":      {"--ehr", "http://127.0.0.1:9/fhir", "--token-env", "X"},
		"smart without a key":           {"--ehr", "http://127.0.0.1:9/fhir", "--auth", "smart-backend", "--client-id", "c"},
		"unreadable private key":        {"--ehr", "http://127.0.0.1:9/fhir", "--auth", "smart-backend", "--client-id", "c", "--private-key", filepath.Join(dir, "nokey.pem")},
		"auth flags with --config":      {"--config", cfg, "--connection", "clinic", "--auth", "none"},
		"config without connection":     {"--config", cfg},
		"unknown connection":            {"--config", cfg, "--connection", "nope"},
		"unreadable config":             {"--config", filepath.Join(dir, "missing.yaml"), "--connection", "clinic"},
		"not a URL":                     {"--ehr", "ehr.example.org"},
		"credentials over remote http":  {"--ehr", "http://ehr.example.org/fhir", "--auth", "bearer", "--token-env", "IPSFHIR_CHECK_TEST_TOKEN"},
	} {
		code, out, stderr := ipsfhir(t, "", append([]string{"check"}, args...)...)
		if code != exitUsage {
			t.Errorf("%s: exit %d, want 2\n%s%s", name, code, out, stderr)
		}
		if stderr == "" {
			t.Errorf("%s: no message on stderr", name)
		}
	}
}

func TestCheckHelp(t *testing.T) {
	t.Parallel()
	code, out, _ := ipsfhir(t, "", "check", "--help")
	if code != exitOK {
		t.Fatalf("--help: exit %d", code)
	}
	for _, w := range []string{"-ehr", "-auth", "-token-env", "-client-id", "-private-key", "-key-id", "-scopes", "-token-url", "-ca-file", "-config", "-connection",
		"-capability-statement", "-test-patient", "-write-tests", "-json", "pass", "fail", "error", "skip", "omit", "Exit 0", "writes NOTHING"} {
		if !strings.Contains(out, w) {
			t.Errorf("--help does not mention %q", w)
		}
	}
	if _, out, _ := ipsfhir(t, "", "--help"); !regexp.MustCompile(`(?m)^  check\s`).MatchString(out) {
		t.Errorf("ipsfhir --help does not list check:\n%s", out)
	}
}

// TestCheckLive runs the command against the peer: a configured connection
// with write tests, and SMART Backend Services given by flags.
func TestCheckLive(t *testing.T) {
	t.Parallel()
	srv := peer.StartForTest(t, peer.Options{Args: []string{"--quiet"}})
	c, err := ehr.New(ehr.Options{BaseURL: srv.BaseURL})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Create(t.Context(), "Patient", []byte(`{"resourceType":"Patient"}`), "")
	if err != nil {
		t.Fatal(err)
	}
	pid := resp.ResourceID
	dir := t.TempDir()

	cfg := filepath.Join(dir, "ipsfhir.yaml")
	// The test patient and an override come from the connection's keys.
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf("connections:\n  - {name: clinic, fhirBaseUrl: %q, auth: {type: none}, testPatient: %q, overrides: {employment-goal: chart-note}}\n", srv.BaseURL, pid)), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, stderr := ipsfhir(t, "", "check", "--config", cfg, "--connection", "clinic", "--write-tests", "--json")
	if code != exitOK {
		t.Fatalf("--config: exit %d\n%s%s", code, out, stderr)
	}
	var rep struct {
		Results []struct{ ID, Status, Reason string } `json:"results"`
		Ready   bool                                  `json:"ready"`
		Plan    struct {
			Concepts []struct{ Concept, Path string } `json:"concepts"`
		} `json:"plan"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err)
	}
	for _, c := range rep.Plan.Concepts {
		if c.Concept == "employment-goal" && c.Path != "chart-note" {
			t.Errorf("the connection's override is not in the checked plan: employment-goal %s", c.Path)
		}
	}
	if len(rep.Plan.Concepts) == 0 {
		t.Error("no plan in the check's JSON")
	}
	for _, r := range rep.Results {
		if r.Status != "pass" && r.Status != "omit" {
			t.Errorf("%s: %s: %s", r.ID, r.Status, r.Reason)
		}
		if strings.Contains(r.Reason, pid) {
			t.Errorf("%s names the test patient", r.ID)
		}
	}
	if entries, err := c.Search(t.Context(), "Goal", url.Values{"patient": {"Patient/" + pid}}); err != nil || len(entries) != 0 {
		t.Errorf("after --write-tests the peer holds %d Goals for the test patient (%v)", len(entries), err)
	}

	key, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(dir, "key.pem")
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, stderr = ipsfhir(t, "", "check", "--ehr", srv.BaseURL, "--auth", "smart-backend", "--client-id", "ipsfhir-test",
		"--private-key", keyFile, "--scopes", "system/Goal.rs system/Patient.rs")
	if code != exitOK {
		t.Fatalf("--ehr smart-backend: exit %d\n%s%s", code, out, stderr)
	}
	for id, want := range map[string]string{
		"auth.token":         "pass token obtained",
		"smart.signing-alg":  "pass token_endpoint_auth_signing_alg_values_supported lists ES384",
		"auth.invalid-token": "FAIL the EHR did not refuse an invalid token",
		"write-tests":        "skip needs write tests",
	} {
		if got := checkLine(t, out, id); !strings.HasPrefix(got, want) {
			t.Errorf("%s: %q, want it to start %q", id, got, want)
		}
	}

	// An EHR that cannot be reached blocks sync: exit 1.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + l.Addr().String() + "/fhir"
	l.Close()
	if code, out, _ := ipsfhir(t, "", "check", "--ehr", closed); code != exitFindings || !strings.Contains(out, "not ready: connectivity.reachable") {
		t.Errorf("unreachable EHR: exit %d\n%s", code, out)
	}
}
