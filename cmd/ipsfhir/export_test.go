package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestExportCommand: the HIE's files written to a directory, de-identified
// by default, every line valid, only consenting clients, a manifest; the
// program's identified copy on request; clear refusals.
func TestExportCommand(t *testing.T) {
	cfg := reportStore(t, "riverside-ips", "consent: {hie: true}\nexport: {pseudonymKey: {file: pseudonym.key}}\n")
	if err := os.WriteFile(filepath.Join(filepath.Dir(cfg), "pseudonym.key"), []byte(strings.Repeat("p", 48)), 0o600); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "hie")
	code, stdout, stderr := ipsfhir(t, "", "export", "--config", cfg, "--out", out)
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
	if _, err := os.Stat(filepath.Join(own, "Observation.ndjson")); !os.IsNotExist(err) {
		t.Error("--type CarePlan wrote Observations too")
	}

	// Refusals.
	for name, args := range map[string][]string{
		"no --out":                        {"export", "--config", cfg},
		"bad --since":                     {"export", "--config", cfg, "--out", out, "--since", "last week"},
		"unknown type":                    {"export", "--config", cfg, "--out", out, "--type", "Patient"},
		"notes in a de-identified export": {"export", "--config", cfg, "--out", out, "--type", "DocumentReference"},
	} {
		if code, _, _ := ipsfhir(t, "", args...); code != exitUsage {
			t.Errorf("%s: exit %d, want 2", name, code)
		}
	}
	noKey := reportStore(t, "riverside-ips", "consent: {hie: true}\n")
	if code, _, stderr := ipsfhir(t, "", "export", "--config", noKey, "--out", out); code != exitUsage || !strings.Contains(stderr, "export.pseudonymKey") {
		t.Errorf("no key: exit %d %s", code, stderr)
	}
	// --since after everything: nothing to export, still a manifest.
	empty := filepath.Join(t.TempDir(), "empty")
	if code, stdout, stderr := ipsfhir(t, "", "export", "--config", cfg, "--out", empty, "--since", "2999-01-01"); code != exitOK || !strings.Contains(stdout, "exported 0 resources") {
		t.Errorf("--since in the future: exit %d\n%s%s", code, stdout, stderr)
	}
}
