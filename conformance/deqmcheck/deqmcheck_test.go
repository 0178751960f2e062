package deqmcheck

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var (
	profilePath   = filepath.Join("..", "..", "testdata", "outcomes", "deqm", "StructureDefinition-summary-measurereport-deqm.xml")
	extensionPath = filepath.Join("..", "..", "testdata", "outcomes", "deqm", "StructureDefinition-extension-measureScoring.json")
)

func load(t *testing.T) *Profile {
	t.Helper()
	p, err := Load(profilePath, extensionPath)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// good is a small summary report that meets the profile: a proportion with
// a stratifier, one stratum count withheld the way ipsfhir withholds it.
const good = `{
  "resourceType": "MeasureReport",
  "meta": {"profile": ["http://hl7.org/fhir/us/davinci-deqm/StructureDefinition/summary-measurereport-deqm"]},
  "extension": [{"url": "http://hl7.org/fhir/us/davinci-deqm/StructureDefinition/extension-measureScoring",
    "valueCodeableConcept": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/measure-scoring", "code": "proportion"}]}}],
  "status": "complete",
  "type": "summary",
  "measure": "https://example.org/Measure/m|1.0.0",
  "date": "2026-10-20T09:30:00Z",
  "reporter": {"type": "Organization", "identifier": {"system": "urn:example", "value": "org"}},
  "period": {"start": "2026-07-01", "end": "2026-09-30"},
  "improvementNotation": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/measure-improvement-notation", "code": "increase"}]},
  "group": [{
    "id": "g",
    "code": {"coding": [{"system": "urn:example", "code": "g"}]},
    "population": [
      {"code": {"coding": [{"code": "denominator"}]}, "count": 40},
      {"code": {"coding": [{"code": "numerator"}]}, "count": 17}
    ],
    "measureScore": {"value": 0.425, "unit": "1", "system": "http://unitsofmeasure.org", "code": "1"},
    "stratifier": [{
      "code": [{"coding": [{"system": "urn:example", "code": "s"}]}],
      "stratum": [{
        "value": {"coding": [{"system": "urn:example", "code": "a"}]},
        "population": [
          {"code": {"coding": [{"code": "denominator"}]}, "_count": {"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/data-absent-reason", "valueCode": "masked"}]}},
          {"code": {"coding": [{"code": "numerator"}]}, "count": 0}
        ]
      }]
    }]
  }]
}`

func edited(t *testing.T, f func(m map[string]any)) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(good), &m); err != nil {
		t.Fatal(err)
	}
	f(m)
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func group(m map[string]any) map[string]any { return m["group"].([]any)[0].(map[string]any) }

func stratumPopulation(m map[string]any, i int) map[string]any {
	st := group(m)["stratifier"].([]any)[0].(map[string]any)["stratum"].([]any)[0].(map[string]any)
	return st["population"].([]any)[i].(map[string]any)
}

func TestGoodReportPasses(t *testing.T) {
	res := load(t).Check([]byte(good))
	if len(res.Problems) != 0 || len(res.Empty) != 0 {
		t.Errorf("problems %q, empty %q", res.Problems, res.Empty)
	}
}

// Each rule of the profile, broken once, is caught where it is broken.
func TestEachRuleIsEnforced(t *testing.T) {
	p := load(t)
	for _, tc := range []struct {
		name, want string
		f          func(m map[string]any)
	}{
		{"no date", "MeasureReport: 0 of MeasureReport.date, at least 1", func(m map[string]any) { delete(m, "date") }},
		{"no reporter", "MeasureReport: 0 of MeasureReport.reporter, at least 1", func(m map[string]any) { delete(m, "reporter") }},
		{"a practitioner reporter", "MeasureReport.reporter: does not refer to a Organization", func(m map[string]any) {
			m["reporter"] = map[string]any{"reference": "Practitioner/p"}
		}},
		{"an individual report", "MeasureReport.type: not the fixed code summary", func(m map[string]any) { m["type"] = "individual" }},
		{"a status not in the value set", "MeasureReport.status: code not in the required value set", func(m map[string]any) { m["status"] = "final" }},
		{"a subject", "MeasureReport: 1 of MeasureReport.subject, at most 0", func(m map[string]any) { m["subject"] = map[string]any{"reference": "Group/g"} }},
		{"evaluated resources", "MeasureReport: 1 of MeasureReport.evaluatedResource, at most 0", func(m map[string]any) {
			m["evaluatedResource"] = []any{map[string]any{"reference": "Observation/o"}}
		}},
		{"no period", "MeasureReport: 0 of MeasureReport.period, at least 1", func(m map[string]any) { delete(m, "period") }},
		{"no group", "MeasureReport: 0 of MeasureReport.group, at least 1", func(m map[string]any) { delete(m, "group") }},
		{"an unversioned measure", "MeasureReport.measure: deqm-0", func(m map[string]any) { m["measure"] = "https://example.org/Measure/m" }},
		{"a period in years", "MeasureReport.period: deqm-1", func(m map[string]any) { m["period"] = map[string]any{"start": "2026", "end": "2026"} }},
		{"no improvement notation", "MeasureReport: deqm-2", func(m map[string]any) { delete(m, "improvementNotation") }},
		{"no scoring", "MeasureReport: deqm-3", func(m map[string]any) { delete(m, "extension") }},
		{"scoring on the report and a group", "MeasureReport: deqm-3", func(m map[string]any) { group(m)["extension"] = m["extension"] }},
		{"a rate in percent", "MeasureReport.group[0]: deqm-6", func(m map[string]any) {
			group(m)["measureScore"] = map[string]any{"value": 42.5, "unit": "%"}
		}},
		{"a count and a countQuantity", "MeasureReport.group[0].population[0]: deqm-8", func(m map[string]any) {
			pop := group(m)["population"].([]any)[0].(map[string]any)
			pop["extension"] = []any{map[string]any{"url": "http://hl7.org/fhir/StructureDefinition/measurereport-countQuantity", "valueQuantity": map[string]any{"value": 40}}}
		}},
		{"a stratum population without a count", "MeasureReport.group[0].stratifier[0].stratum[0].population[1]: 0 of MeasureReport.group.stratifier.stratum.population.count, at least 1", func(m map[string]any) {
			delete(stratumPopulation(m, 1), "count")
		}},
		{"a stratum population without a count (deqm-9)", "MeasureReport.group[0].stratifier[0].stratum[0].population[1]: deqm-9", func(m map[string]any) {
			delete(stratumPopulation(m, 1), "count")
		}},
		{"a population without a code", "MeasureReport.group[0].population[1]: 0 of MeasureReport.group.population.code, at least 1", func(m map[string]any) {
			delete(group(m)["population"].([]any)[1].(map[string]any), "code")
		}},
		{"two stratifier codes", "MeasureReport.group[0].stratifier[0]: 2 of MeasureReport.group.stratifier.code, at most 1", func(m map[string]any) {
			s := group(m)["stratifier"].([]any)[0].(map[string]any)
			s["code"] = append(s["code"].([]any), s["code"].([]any)[0])
		}},
		{"a stratifier of components and a code", "MeasureReport.group[0].stratifier[0]: deqm-7", func(m map[string]any) {
			st := group(m)["stratifier"].([]any)[0].(map[string]any)["stratum"].([]any)[0].(map[string]any)
			st["component"] = []any{map[string]any{"code": map[string]any{"text": "c"}, "value": map[string]any{"text": "v"}}}
		}},
		{"scoring as a code", "MeasureReport.extension[0]: valueCode is not of the types [CodeableConcept]", func(m map[string]any) {
			m["extension"] = []any{map[string]any{"url": "http://hl7.org/fhir/us/davinci-deqm/StructureDefinition/extension-measureScoring", "valueCode": "proportion"}}
		}},
		{"scoring from another code system", "MeasureReport.extension[0]: valueCodeableConcept has no code from its value set", func(m map[string]any) {
			m["extension"] = []any{map[string]any{"url": "http://hl7.org/fhir/us/davinci-deqm/StructureDefinition/extension-measureScoring",
				"valueCodeableConcept": map[string]any{"coding": []any{map[string]any{"system": "urn:example", "code": "proportion"}}}}}
		}},
		{"two scorings", "MeasureReport: 2 of MeasureReport.extension:scoring, at most 1", func(m map[string]any) {
			m["extension"] = append(m["extension"].([]any), m["extension"].([]any)[0])
		}},
	} {
		res := p.Check(edited(t, tc.f))
		found := false
		for _, pr := range res.Problems {
			found = found || strings.HasPrefix(pr, tc.want)
		}
		if !found {
			t.Errorf("%s: problems %q, want %q", tc.name, res.Problems, tc.want)
		}
	}
}

// A proportion with no score value makes deqm-6 empty, not false: listed
// apart from the problems.
func TestDEQM6WithoutAScoreIsEmpty(t *testing.T) {
	res := load(t).Check(edited(t, func(m map[string]any) {
		group(m)["measureScore"] = map[string]any{"extension": []any{map[string]any{
			"url": "http://hl7.org/fhir/StructureDefinition/data-absent-reason", "valueCode": "masked"}}}
	}))
	if len(res.Problems) != 0 || len(res.Empty) != 1 || res.Empty[0] != "MeasureReport.group[0]: deqm-6" {
		t.Errorf("problems %q, empty %q", res.Problems, res.Empty)
	}
}

// Load refuses a profile that says what the checker does not check, so a
// change of the profile cannot pass unnoticed.
func TestLoadRefusesWhatItDoesNotCheck(t *testing.T) {
	orig, err := os.ReadFile(profilePath)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, old, new string }{
		{"a changed constraint", `start.toString().length()&gt;9`, `start.toString().length()&gt;4`},
		{"an unknown constraint", `<key value="deqm-7"/>`, `<key value="deqm-77"/>`},
		{"an element property", `<path value="MeasureReport.date"/>`, `<path value="MeasureReport.date"/><maxLength value="10"/>`},
		{"a target profile", `qicore-organization`, `qicore-practitioner`},
		{"a required binding", `http://hl7.org/fhir/ValueSet/measure-report-status`, `http://example.org/ValueSet/other`},
	} {
		s := string(orig)
		if !strings.Contains(s, tc.old) {
			t.Fatalf("%s: the profile has no %q", tc.name, tc.old)
		}
		path := filepath.Join(t.TempDir(), "sd.xml")
		if err := os.WriteFile(path, []byte(strings.Replace(s, tc.old, tc.new, 1)), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := Load(path, extensionPath); err == nil {
			t.Errorf("%s: loaded", tc.name)
		}
	}
}
