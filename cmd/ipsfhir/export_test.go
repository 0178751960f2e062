package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestExportCommand: the HIE's files written to a directory, de-identified
// by default, every line valid, only consenting clients, a manifest; the
// program's identified copy on request; clear refusals.
func TestExportCommand(t *testing.T) {
	t.Parallel()
	cfg := reportStore(t, "riverside-ips", "consent: {hie: true}\nexport: {pseudonymKey: {file: pseudonym.key}}\n")
	if err := os.WriteFile(filepath.Join(filepath.Dir(cfg), "pseudonym.key"), []byte(strings.Repeat("p", 48)), 0o600); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "hie")
	code, stdout, stderr := ipsfhir(t, "", "export", "--config", cfg, "--out", out, "--recipient", "state-hie")
	if code != exitOK || !strings.Contains(stdout, "de-identified") {
		t.Fatalf("export: exit %d\n%s%s", code, stdout, stderr)
	}
	var m struct {
		TransactionTime string
		Deidentified    bool
		Output          []struct {
			Type, URL string
			Count     int
		}
	}
	data, err := os.ReadFile(filepath.Join(out, "manifest.json"))
	if err != nil || json.Unmarshal(data, &m) != nil || !m.Deidentified || len(m.Output) == 0 || m.TransactionTime == "" {
		t.Fatalf("manifest: %v %s", err, data)
	}
	caseload, _ := os.ReadFile(outcomesCaseload)
	for _, o := range m.Output {
		if o.Type == "DocumentReference" {
			t.Error("chart notes in a de-identified export")
		}
		file := filepath.Join(out, o.URL)
		body, err := os.ReadFile(file)
		if err != nil || strings.Count(string(body), "\n") != o.Count {
			t.Errorf("%s: %v, %d lines, manifest says %d", o.URL, err, strings.Count(string(body), "\n"), o.Count)
		}
		if strings.Contains(string(body), "MRN-") || strings.Contains(string(body), "Rivera") {
			t.Errorf("%s names a patient or a specialist", o.URL)
		}
		if code, vo, ve := ipsfhir(t, "", "validate", file); code != exitOK {
			t.Errorf("validate %s: exit %d\n%s%s", o.URL, code, ve, vo)
		}
	}
	if !strings.Contains(string(caseload), "MRN-") {
		t.Fatal("the test caseload has no MRN- identifiers: the check above proves nothing")
	}

	// The program's own identified copy, one type.
	own := filepath.Join(t.TempDir(), "own")
	code, _, stderr = ipsfhir(t, "", "export", "--config", cfg, "--out", own, "--identified", "--type", "CarePlan")
	if code != exitOK {
		t.Fatalf("--identified: exit %d\n%s", code, stderr)
	}
	plans, err := os.ReadFile(filepath.Join(own, "CarePlan.ndjson"))
	if err != nil || !strings.Contains(string(plans), "MRN-") {
		t.Errorf("the identified export does not name patients: %v", err)
	}
	// The plan's narrative names the program as configured (program.name).
	if !strings.Contains(string(plans), "<b>IPS supported employment plan</b> (riverside-ips IPS).") {
		t.Error("the plan narrative does not name the program (config program.name)")
	}
	if _, err := os.Stat(filepath.Join(own, "Observation.ndjson")); !os.IsNotExist(err) {
		t.Error("--type CarePlan wrote Observations too")
	}

	// Refusals.
	for name, args := range map[string][]string{
		"no --out":                        {"export", "--config", cfg, "--recipient", "state-hie"},
		"bad --since":                     {"export", "--config", cfg, "--out", out, "--recipient", "state-hie", "--since", "last week"},
		"unknown type":                    {"export", "--config", cfg, "--out", out, "--recipient", "state-hie", "--type", "Patient"},
		"notes in a de-identified export": {"export", "--config", cfg, "--out", out, "--recipient", "state-hie", "--type", "DocumentReference"},
		"no --recipient":                  {"export", "--config", cfg, "--out", out},
		"--recipient with --identified":   {"export", "--config", cfg, "--out", out, "--identified", "--recipient", "state-hie"},
	} {
		if code, _, _ := ipsfhir(t, "", args...); code != exitUsage {
			t.Errorf("%s: exit %d, want 2", name, code)
		}
	}
	noKey := reportStore(t, "riverside-ips", "consent: {hie: true}\n")
	if code, _, stderr := ipsfhir(t, "", "export", "--config", noKey, "--out", out, "--recipient", "state-hie"); code != exitUsage || !strings.Contains(stderr, "export.pseudonymKey") {
		t.Errorf("no key: exit %d %s", code, stderr)
	}
	// An export that fails leaves --out as it was: the previous export's
	// files, no temporary file, nothing half-written. Here a directory
	// stands where the Observations would go.
	again := filepath.Join(t.TempDir(), "again")
	if code, _, stderr := ipsfhir(t, "", "export", "--config", cfg, "--out", again, "--recipient", "state-hie"); code != exitOK {
		t.Fatalf("export: exit %d\n%s", code, stderr)
	}
	if err := os.Remove(filepath.Join(again, "Observation.ndjson")); err != nil {
		t.Fatal(err)
	}
	before := map[string][]byte{}
	written, err := os.ReadDir(again)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range written {
		data, err := os.ReadFile(filepath.Join(again, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		before[e.Name()] = data
	}
	if _, ok := before["CarePlan.ndjson"]; !ok {
		t.Fatalf("the export wrote %v: want CarePlans, written before the Observations", slices.Collect(maps.Keys(before)))
	}
	if err := os.Mkdir(filepath.Join(again, "Observation.ndjson"), 0o700); err != nil {
		t.Fatal(err)
	}
	code, _, stderr = ipsfhir(t, "", "export", "--config", cfg, "--out", again, "--recipient", "other-hie")
	if code != exitFindings || !strings.Contains(stderr, "nothing was replaced") {
		t.Errorf("export over a directory: exit %d, want 1\n%s", code, stderr)
	}
	es, err := os.ReadDir(again)
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != len(before)+1 {
		t.Errorf("after the failed export --out holds %d entries, want %d", len(es), len(before)+1)
	}
	for _, e := range es {
		if strings.HasPrefix(e.Name(), ".") {
			t.Errorf("a temporary file is left: %s", e.Name())
		}
	}
	for name, data := range before {
		if now, err := os.ReadFile(filepath.Join(again, name)); err != nil || !bytes.Equal(now, data) {
			t.Errorf("%s changed though the export failed (%v)", name, err)
		}
	}

	// --since after everything: nothing to export, still a manifest.
	empty := filepath.Join(t.TempDir(), "empty")
	if code, stdout, stderr := ipsfhir(t, "", "export", "--config", cfg, "--out", empty, "--recipient", "state-hie", "--since", "2999-01-01"); code != exitOK || !strings.Contains(stdout, "exported 0 resources") {
		t.Errorf("--since in the future: exit %d\n%s%s", code, stdout, stderr)
	}
}

// TestExportRecipients: the files' pseudonyms are scoped per recipient.
// Two recipients cannot join their files; the same recipient gets the same
// pseudonyms every time; an hie key's name gives that key's scope (its
// pseudonymScope when set), so keys configured into one scope share them.
func TestExportRecipients(t *testing.T) {
	t.Parallel()
	sum := func(k string) string { s := sha256.Sum256([]byte(k)); return hex.EncodeToString(s[:]) }
	cfg := reportStore(t, "riverside-ips", "consent: {hie: true}\nexport: {pseudonymKey: {file: pseudonym.key}}\napiKeys:\n"+
		"  - {name: state-hie, role: hie, sha256: "+sum("a")+", pseudonymScope: regional}\n"+
		"  - {name: county-hie, role: hie, sha256: "+sum("b")+", pseudonymScope: regional}\n"+
		"  - {name: city-hie, role: hie, sha256: "+sum("c")+"}\n")
	if err := os.WriteFile(filepath.Join(filepath.Dir(cfg), "pseudonym.key"), []byte(strings.Repeat("p", 48)), 0o600); err != nil {
		t.Fatal(err)
	}
	// subjects exports for a recipient and returns the patient pseudonyms
	// of its Observations, and the manifest's scope.
	subjects := func(recipient string) (map[string]bool, string) {
		t.Helper()
		out := filepath.Join(t.TempDir(), "out")
		if code, stdout, stderr := ipsfhir(t, "", "export", "--config", cfg, "--out", out, "--recipient", recipient, "--type", "Observation"); code != exitOK {
			t.Fatalf("--recipient %s: exit %d\n%s%s", recipient, code, stdout, stderr)
		}
		var m struct{ PseudonymScope string }
		if data, err := os.ReadFile(filepath.Join(out, "manifest.json")); err != nil || json.Unmarshal(data, &m) != nil {
			t.Fatalf("manifest: %v", err)
		}
		data, err := os.ReadFile(filepath.Join(out, "Observation.ndjson"))
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]bool{}
		for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
			var g struct {
				Subject struct{ Identifier struct{ Value string } }
			}
			if err := json.Unmarshal([]byte(line), &g); err != nil || g.Subject.Identifier.Value == "" {
				t.Fatalf("an Observation line without a pseudonym: %v", err)
			}
			got[g.Subject.Identifier.Value] = true
		}
		if len(got) < 2 {
			t.Fatalf("%d pseudonyms: too few to compare", len(got))
		}
		return got, m.PseudonymScope
	}
	city, scope := subjects("city-hie")
	if scope != "city-hie" {
		t.Errorf("city-hie's scope is %q, want its name", scope)
	}
	if again, _ := subjects("city-hie"); !maps.Equal(city, again) {
		t.Error("the same recipient gets other pseudonyms in another export")
	}
	state, scope := subjects("state-hie")
	if scope != "regional" {
		t.Errorf("state-hie's scope is %q, want its pseudonymScope", scope)
	}
	if county, _ := subjects("county-hie"); !maps.Equal(state, county) {
		t.Error("two keys configured into one scope get different pseudonyms")
	}
	if regional, _ := subjects("regional"); !maps.Equal(state, regional) {
		t.Error("the scope's name does not give the scope's pseudonyms")
	}
	archive, _ := subjects("university-archive") // no key: a scope of its own
	for p := range city {
		if state[p] || archive[p] {
			t.Errorf("two recipients share the pseudonym %s", p)
		}
	}
	for p := range state {
		if archive[p] {
			t.Errorf("two recipients share the pseudonym %s", p)
		}
	}
}
