package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ipsfhir/ipsfhir/ips"
	"github.com/ipsfhir/ipsfhir/ips/ipstest"
	"github.com/ipsfhir/ipsfhir/mappings"
)

// ipsfhir runs the CLI in-process as a user would from a shell.
func ipsfhir(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(context.Background(), args, strings.NewReader(stdin), &out, &errb)
	return code, out.String(), errb.String()
}

func repoFile(parts ...string) string {
	return filepath.Join(append([]string{"..", ".."}, parts...)...)
}

func TestMapSampleValidatesAndReadsBack(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	bundle := filepath.Join(dir, "bundle.json")
	sample := repoFile("testdata", "caseload-sample.json")

	for _, bt := range []string{"collection", "transaction"} {
		code, _, stderr := ipsfhir(t, "", "map", "--in", sample, "--out", bundle, "--bundle-type", bt)
		if code != exitOK {
			t.Fatalf("map --bundle-type %s: exit %d: %s", bt, code, stderr)
		}
		code, stdout, stderr := ipsfhir(t, "", "validate", bundle)
		if code != exitOK {
			t.Fatalf("validate the %s Bundle map wrote: exit %d\n%s\n%s", bt, code, stderr, stdout)
		}
	}

	back := filepath.Join(dir, "back.json")
	if code, _, stderr := ipsfhir(t, "", "map", "--reverse", "--in", bundle, "--out", back); code != exitOK {
		t.Fatalf("map --reverse: exit %d: %s", code, stderr)
	}
	f, err := os.Open(back)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got, err := ips.Decode(f)
	if err != nil {
		t.Fatalf("map --reverse wrote an invalid caseload: %v", err)
	}
	if d := cmp.Diff(mappings.InFHIR(ipstest.Sample(t)), ips.Normalize(got)); d != "" {
		t.Errorf("reverse mapping did not return the input (-in +out):\n%s", d)
	}
}

func TestMapBadCaseloadWritesNothing(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	out := filepath.Join(dir, "bundle.json")
	if err := os.WriteFile(out, []byte("previous content"), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, doc  string
		code       int
		mustSay    []string
		mustNotSay []string
	}{
		{"wrong type", `{"clients":[{"id":"c1","patient":{"system":"s","value":"MRN-PLANTED-7731"},"enrolledOn":"2026-01-05",
			"jobs":[{"id":"j1","employer":"Zanzibar Quokka Diner","title":"Cook","start":"2026-02-01","hoursPerWeek":"twenty","hourlyWage":{"value":15,"currency":"USD"},"competitive":true}]}]}`,
			exitFindings, []string{"clients[0].jobs[0].hoursPerWeek", "must be a number", "nothing was written"}, []string{"MRN-PLANTED-7731", "Zanzibar", "twenty"}},
		{"unknown field", `{"clients":[{"id":"c1","patient":{"system":"s","value":"MRN-PLANTED-7731"},"enrolledOn":"2026-01-05","favouriteColour":"teal"}]}`,
			exitFindings, []string{"clients[0].favouriteColour: unknown field"}, []string{"MRN-PLANTED-7731", "teal"}},
		{"not JSON", `{"clients": [`, exitUsage, []string{"not valid JSON"}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in := filepath.Join(dir, "in.json")
			if err := os.WriteFile(in, []byte(tc.doc), 0o644); err != nil {
				t.Fatal(err)
			}
			code, stdout, stderr := ipsfhir(t, "", "map", "--in", in, "--out", out)
			if code != tc.code {
				t.Errorf("exit %d, want %d; stderr:\n%s", code, tc.code, stderr)
			}
			for _, s := range tc.mustSay {
				if !strings.Contains(stderr, s) {
					t.Errorf("stderr lacks %q:\n%s", s, stderr)
				}
			}
			for _, s := range tc.mustNotSay {
				if strings.Contains(stderr+stdout, s) {
					t.Errorf("output echoes patient data %q", s)
				}
			}
			if data, _ := os.ReadFile(out); string(data) != "previous content" {
				t.Error("a failed map changed the output file")
			}
			entries, _ := os.ReadDir(dir)
			if len(entries) != 2 {
				t.Errorf("a failed map left files behind: %v", entries)
			}
		})
	}
}

func TestMapFromStdinToStdout(t *testing.T) {
	t.Parallel()
	doc := `{"clients":[{"id":"c1","patient":{"system":"s","value":"v"},"enrolledOn":"2026-01-05"}]}`
	code, stdout, stderr := ipsfhir(t, doc, "map", "--in", "-")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var b map[string]any
	if err := json.Unmarshal([]byte(stdout), &b); err != nil || b["resourceType"] != "Bundle" {
		t.Fatalf("stdout is not a Bundle: %v", err)
	}
}

func TestValidateExitCodesAndOutcome(t *testing.T) {
	t.Parallel()
	valid := repoFile("testdata", "golden", "goal-active.json")
	invalids, _ := filepath.Glob(repoFile("testdata", "fhir", "invalid", "*.json"))
	if len(invalids) == 0 {
		t.Fatal("no invalid FHIR fixtures found")
	}
	invalid := invalids[0]

	if code, _, stderr := ipsfhir(t, "", "validate", valid); code != exitOK || !strings.Contains(stderr, "valid") {
		t.Errorf("valid file: exit %d, %s", code, stderr)
	}
	code, stdout, _ := ipsfhir(t, "", "validate", valid, invalid)
	if code != exitFindings {
		t.Errorf("one invalid file: exit %d, want 1", code)
	}
	var oo map[string]any
	if err := json.Unmarshal([]byte(stdout), &oo); err != nil || oo["resourceType"] != "OperationOutcome" {
		t.Errorf("stdout is not one OperationOutcome: %v\n%s", err, stdout)
	}
	if code, _, _ := ipsfhir(t, "", "validate", valid, filepath.Join(t.TempDir(), "missing.json")); code != exitUsage {
		t.Errorf("unreadable file: exit %d, want 2", code)
	}
	if code, _, _ := ipsfhir(t, "not json", "validate", "-"); code != exitUsage {
		t.Errorf("non-JSON input: exit %d, want 2", code)
	}
	code, stdout, _ = ipsfhir(t, "", "validate", "--json", valid, invalid)
	var results []struct {
		File  string
		Valid bool
	}
	if err := json.Unmarshal([]byte(stdout), &results); err != nil || len(results) != 2 || !results[0].Valid || results[1].Valid || code != exitFindings {
		t.Errorf("--json: exit %d, %v, %s", code, err, stdout)
	}
}

// TestValidateInheritedBinding: validate refuses an employment status whose
// value breaks the binding ips-employment-status inherits from ODH, and
// says which element and which value set. A SNOMED CT finding alone also
// breaks ips-employment-status's own v3 pattern: two issues, each naming the
// profile that states its rule.
func TestValidateInheritedBinding(t *testing.T) {
	t.Parallel()
	file := repoFile("testdata", "fhir", "invalid", "employment-status-snomed-only.json")
	code, stdout, stderr := ipsfhir(t, "", "validate", file)
	if code != exitFindings || !strings.Contains(stderr, "invalid (2 errors)") {
		t.Fatalf("exit %d, want 1\n%s", code, stderr)
	}
	var oo struct {
		Issue []struct {
			Code        string
			Diagnostics string
			Expression  []string
		}
	}
	if err := json.Unmarshal([]byte(stdout), &oo); err != nil || len(oo.Issue) != 2 {
		t.Fatalf("want two issues: %v\n%s", err, stdout)
	}
	for _, is := range oo.Issue {
		if !slices.Equal(is.Expression, []string{"Observation.valueCodeableConcept"}) {
			t.Errorf("issue not on the value: %+v", is)
		}
	}
	if is := oo.Issue[0]; is.Code != "code-invalid" ||
		!strings.Contains(is.Diagnostics, "http://terminology.hl7.org/ValueSet/v3-employmentStatusODH") ||
		!strings.Contains(is.Diagnostics, "profile odh-EmploymentStatus (inherited by ips-employment-status) binds Observation.valueCodeableConcept (required)") {
		t.Errorf("issue does not name the element and the binding: %+v", is)
	}
	if is := oo.Issue[1]; is.Code != "value" || !strings.Contains(is.Diagnostics, "profile ips-employment-status requires (a code from http://terminology.hl7.org/CodeSystem/v3-ObservationValue)") {
		t.Errorf("issue does not name ips-employment-status's own rule: %+v", is)
	}
}

// TestValidateProvenance: the Provenance the adapter writes beside each
// resource validates against ips-provenance and the US Core Provenance it
// inherits; one whose Device acts on no one's behalf breaks US Core's
// provenance-1.
func TestValidateProvenance(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"provenance.json", "provenance-transaction.json"} {
		if code, stdout, stderr := ipsfhir(t, "", "validate", repoFile("testdata", "golden", name)); code != exitOK || stdout != "" || !strings.HasSuffix(stderr, ": valid\n") {
			t.Errorf("%s: exit %d\n%s\n%s", name, code, stderr, stdout)
		}
	}
	code, stdout, _ := ipsfhir(t, "", "validate", repoFile("testdata", "fhir", "invalid", "provenance-no-organization.json"))
	if code != exitFindings || !strings.Contains(stdout, "constraint provenance-1 of profile us-core-provenance (inherited by ips-provenance)") {
		t.Errorf("a Device on no one's behalf: exit %d\n%s", code, stdout)
	}
}

// TestValidateMustSupport: --must-support lists what a resource leaves out,
// as information that does not make it invalid.
func TestValidateMustSupport(t *testing.T) {
	t.Parallel()
	note := repoFile("testdata", "golden", "plan-note.json")
	if code, stdout, stderr := ipsfhir(t, "", "validate", note); code != exitOK || stdout != "" || !strings.HasSuffix(stderr, ": valid\n") {
		t.Errorf("without the flag: exit %d\n%s\n%s", code, stderr, stdout)
	}
	code, stdout, stderr := ipsfhir(t, "", "validate", "--must-support", note)
	if code != exitOK || !strings.Contains(stderr, "valid (0 errors, 3 must-support elements left out)") {
		t.Errorf("exit %d\n%s", code, stderr)
	}
	if !strings.Contains(stdout, `"severity": "information"`) || !strings.Contains(stdout, "DocumentReference.context.encounter (profile us-core-documentreference)") {
		t.Errorf("stdout:\n%s", stdout)
	}
}

// TestValidateNDJSON: Bulk Data output is checked line by line, each line
// named by its number.
func TestValidateNDJSON(t *testing.T) {
	t.Parallel()
	var lines []string
	for _, f := range []string{repoFile("testdata", "golden", "goal-active.json"), repoFile("testdata", "fhir", "invalid", "careplan-no-subject.json")} {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var c bytes.Buffer
		if err := json.Compact(&c, data); err != nil {
			t.Fatal(err)
		}
		lines = append(lines, c.String())
	}
	file := filepath.Join(t.TempDir(), "Goal.ndjson")
	if err := os.WriteFile(file, []byte(lines[0]+"\n\n"+lines[1]+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := ipsfhir(t, "", "validate", file)
	if code != exitFindings || !strings.Contains(stderr, file+":1: valid") || !strings.Contains(stderr, file+":3: invalid") {
		t.Errorf("NDJSON with one bad line: exit %d\n%s", code, stderr)
	}
	if code, _, stderr := ipsfhir(t, lines[0]+"\n", "validate", "--ndjson", "-"); code != exitOK || !strings.Contains(stderr, "-:1: valid") {
		t.Errorf("--ndjson from stdin: exit %d\n%s", code, stderr)
	}
}

func TestHelpAndUsage(t *testing.T) {
	t.Parallel()
	for _, cmd := range []string{"demo", "map", "validate"} {
		code, stdout, _ := ipsfhir(t, "", cmd, "--help")
		if code != exitOK || !strings.Contains(stdout, "Usage: ipsfhir "+cmd) {
			t.Errorf("%s --help: exit %d\n%s", cmd, code, stdout)
		}
	}
	if code, stdout, _ := ipsfhir(t, "", "--help"); code != exitOK || !strings.Contains(stdout, "Individual Placement and Support") {
		t.Errorf("--help: exit %d\n%s", code, stdout)
	}
	if code, _, stderr := ipsfhir(t, "", "frobnicate"); code != exitUsage || !strings.Contains(stderr, "unknown command") {
		t.Errorf("unknown command: exit %d, %s", code, stderr)
	}
	if code, _, _ := ipsfhir(t, "", "map", "--bundle-type", "batch", "--in", "x"); code != exitUsage {
		t.Errorf("bad --bundle-type: exit %d, want 2", code)
	}
	if code, _, _ := ipsfhir(t, "", "map"); code != exitUsage {
		t.Errorf("map without --in: exit %d, want 2", code)
	}
}

func TestDemo(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	code, stdout, stderr := ipsfhir(t, "", "demo", "--out", dir, "--serve=false")
	if code != exitOK {
		t.Fatalf("demo: exit %d\n%s\n%s", code, stdout, stderr)
	}
	for _, want := range []string{"30 clients", "every resource passes", "IPS SUPPORTED EMPLOYMENT PLAN", "CURRENT WORK"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("demo output lacks %q:\n%s", want, stdout)
		}
	}
	for _, f := range []string{"caseload.json", "bundle.json"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("demo did not write %s: %v", f, err)
		}
	}
	// The demo's caseload is the published sample.
	written, _ := os.ReadFile(filepath.Join(dir, "caseload.json"))
	sample, _ := os.ReadFile(repoFile("testdata", "caseload-sample.json"))
	if !bytes.Equal(written, sample) {
		t.Error("demo caseload differs from testdata/caseload-sample.json")
	}
}
