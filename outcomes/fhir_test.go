package outcomes

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ipsfhir/ipsfhir/conformance/artifacts"
	"github.com/ipsfhir/ipsfhir/mappings"
)

func newValidator(t *testing.T) *mappings.Validator {
	t.Helper()
	v, err := mappings.NewValidator()
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func validate(t *testing.T, v *mappings.Validator, name string, data []byte) {
	t.Helper()
	issues, err := v.ValidateJSON(data)
	if err != nil || len(issues) != 0 {
		t.Errorf("%s: %v %+v", name, err, issues)
	}
}

func TestReportsAreValidFHIRAndReadBack(t *testing.T) {
	v := newValidator(t)
	for _, th := range []int{1, DefaultThreshold} {
		rs := computeT(t, constructed().Clients, q3, th)
		b, err := BundleJSON(rs)
		if err != nil {
			t.Fatal(err)
		}
		validate(t, v, "bundle", b)
		for _, r := range rs {
			data, err := r.JSON()
			if err != nil {
				t.Fatal(err)
			}
			validate(t, v, r.Measure, data)
			back, err := ParseJSON(data)
			if err != nil {
				t.Fatalf("%s: %v", r.Measure, err)
			}
			if d := cmp.Diff([]*Report{r}, back); d != "" {
				t.Errorf("%s does not read back (-wrote +read):\n%s", r.Measure, d)
			}
		}
		back, err := ParseJSON(b)
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(rs, back); d != "" {
			t.Errorf("the Bundle does not read back:\n%s", d)
		}
	}
}

// Nothing about a client, and no specialist's name, leaves in a report.
func TestReportsCarryNoPatientData(t *testing.T) {
	cl := constructed()
	rs := computeT(t, cl.Clients, q3, 1)
	b, err := BundleJSON(rs)
	if err != nil {
		t.Fatal(err)
	}
	out := string(b) + Table(rs)
	for _, c := range cl.Clients {
		for _, s := range []string{`"` + c.ID + `"`, c.Patient.Value, c.Patient.System, c.EnrolledOn.String()} {
			if s == q3.Start().String() || s == q3.End().String() {
				continue // the report's period
			}
			if strings.Contains(out, s) {
				t.Errorf("a report shows %q", s)
			}
		}
		for _, j := range c.Jobs {
			if strings.Contains(out, j.Employer) {
				t.Errorf("a report names an employer")
			}
		}
	}
	for _, s := range []string{alex, sam, "Alex", "Rivera", "Sam", "Chen"} {
		if strings.Contains(out, s) {
			t.Errorf("a report names specialist %q", s)
		}
	}
}

// A withheld count has no count and a data-absent-reason of masked; a
// withheld score has no value.
func TestWithheldCellsInJSON(t *testing.T) {
	rs := computeT(t, constructed().Clients, q3, DefaultThreshold)
	data, err := reportOf(t, rs, MeasureCompetitiveEmployment20h).JSON()
	if err != nil {
		t.Fatal(err)
	}
	var mr struct {
		Group []struct {
			Population   []map[string]json.RawMessage
			MeasureScore map[string]json.RawMessage
		}
	}
	if err := json.Unmarshal(data, &mr); err != nil {
		t.Fatal(err)
	}
	num := mr.Group[0].Population[2]
	if _, ok := num["count"]; ok {
		t.Errorf("withheld numerator has a count: %s", data)
	}
	want := `{"extension":[{"url":"http://hl7.org/fhir/StructureDefinition/data-absent-reason","valueCode":"masked"}]}`
	if got := compact(t, num["_count"]); got != want {
		t.Errorf("_count = %s, want %s", got, want)
	}
	if _, ok := mr.Group[0].MeasureScore["value"]; ok {
		t.Error("withheld score has a value")
	}
	if got := compact(t, mr.Group[0].MeasureScore["extension"]); !strings.Contains(got, `"masked"`) {
		t.Errorf("withheld score: %s", got)
	}
}

func compact(t *testing.T, raw json.RawMessage) string {
	t.Helper()
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// The published Measures say what measures.go computes.
func TestMeasuresAgreeWithArtifacts(t *testing.T) {
	v := newValidator(t)
	ms, err := artifacts.Measures()
	if err != nil {
		t.Fatal(err)
	}
	type coding struct{ System, Code string }
	type concept struct{ Coding []coding }
	byURL := map[string]artifacts.Artifact{}
	for _, a := range ms {
		byURL[a.URL] = a
		validate(t, v, a.Path, a.Data)
	}
	if len(ms) != len(measureDefs) {
		t.Errorf("%d Measures published, %d computed", len(ms), len(measureDefs))
	}
	for _, def := range measureDefs {
		a, ok := byURL[MeasureURL(def.id)]
		if !ok {
			t.Errorf("measure %s is not published", def.id)
			continue
		}
		var m struct {
			Version             string
			Scoring             concept
			ImprovementNotation concept
			Group               []struct {
				Code       concept
				Population []struct{ Code concept }
				Stratifier []struct{ Code concept }
			}
		}
		if err := json.Unmarshal(a.Data, &m); err != nil {
			t.Fatal(err)
		}
		if m.Version != MeasureVersion {
			t.Errorf("%s: version %s", def.id, m.Version)
		}
		if got := m.Scoring.Coding; len(got) != 1 || got[0] != (coding{"http://terminology.hl7.org/CodeSystem/measure-scoring", def.scoring}) {
			t.Errorf("%s: scoring %v, want %s", def.id, got, def.scoring)
		}
		if got := m.ImprovementNotation.Coding; len(got) != 1 || got[0] != (coding{SystemImprovementNotation, def.improvement}) {
			t.Errorf("%s: improvement %v, want %s", def.id, got, def.improvement)
		}
		if len(m.Group) != len(def.groups) {
			t.Fatalf("%s: %d groups, want %d", def.id, len(m.Group), len(def.groups))
		}
		for i, g := range m.Group {
			gd := def.groups[i]
			if g.Code.Coding[0] != (coding{SystemOutcome, gd.code}) {
				t.Errorf("%s: group %d is %v, want %s", def.id, i, g.Code.Coding, gd.code)
			}
			var pops, want []string
			for _, p := range g.Population {
				if c := p.Code.Coding[0]; c.Code != "measure-observation" {
					pops = append(pops, c.Code)
				}
			}
			for _, p := range gd.populations {
				want = append(want, p.code)
			}
			if !slices.Equal(pops, want) {
				t.Errorf("%s/%s: populations %v, want %v", def.id, gd.code, pops, want)
			}
			var strat []string
			for _, s := range g.Stratifier {
				strat = append(strat, s.Code.Coding[0].Code)
			}
			if !slices.Equal(strat, []string{StratifierProgram, StratifierSpecialist}) {
				t.Errorf("%s/%s: stratifiers %v", def.id, gd.code, strat)
			}
		}
	}
}

// The two extensions reports use are published with the URLs the code
// writes, and the reports that carry them validate (the validator checks
// published extensions wherever they appear).
func TestExtensionsArePublished(t *testing.T) {
	all, err := artifacts.All()
	if err != nil {
		t.Fatal(err)
	}
	for _, url := range []string{ExtLowerBound, ExtSuppressionThreshold} {
		a, ok := artifacts.ByURL(all, url)
		if !ok || a.ResourceType != "StructureDefinition" {
			t.Errorf("%s is not published as a StructureDefinition", url)
		}
	}
}

func TestParseJSONRejects(t *testing.T) {
	rs := computeT(t, constructed().Clients, q3, DefaultThreshold)
	good, err := reportOf(t, rs, MeasureCompetitiveEmployment).JSON()
	if err != nil {
		t.Fatal(err)
	}
	edit := func(f func(m map[string]any)) []byte {
		var m map[string]any
		if err := json.Unmarshal(good, &m); err != nil {
			t.Fatal(err)
		}
		f(m)
		b, _ := json.Marshal(m)
		return b
	}
	group := func(m map[string]any) map[string]any { return m["group"].([]any)[0].(map[string]any) }
	for _, tc := range []struct {
		name, path string
		data       []byte
	}{
		{"not JSON", "", []byte("MRN-SECRET {")},
		{"a Patient", "", []byte(`{"resourceType": "Patient", "id": "MRN-SECRET"}`)},
		{"another measure", "MeasureReport.measure", edit(func(m map[string]any) { m["measure"] = "https://example.org/Measure/MRN-SECRET" })},
		{"not a quarter", "MeasureReport.period", edit(func(m map[string]any) { m["period"] = map[string]any{"start": "2026-07-01", "end": "2026-08-31"} })},
		{"individual report", "MeasureReport", edit(func(m map[string]any) { m["type"] = "individual" })},
		{"no count", "MeasureReport.group[0].population[0].count", edit(func(m map[string]any) {
			delete(group(m)["population"].([]any)[0].(map[string]any), "count")
		})},
		{"negative count", "MeasureReport.group[0].population[0].count", edit(func(m map[string]any) {
			group(m)["population"].([]any)[0].(map[string]any)["count"] = -3
		})},
		{"wrong group", "MeasureReport.group[0].code", edit(func(m map[string]any) {
			group(m)["code"] = map[string]any{"coding": []any{map[string]any{"system": SystemOutcome, "code": "job-starts"}}}
		})},
		{"bad reporter", "MeasureReport.reporter.identifier.value", edit(func(m map[string]any) {
			m["reporter"] = map[string]any{"identifier": map[string]any{"system": SystemProgram, "value": "MRN SECRET"}}
		})},
		{"empty Bundle", "Bundle", []byte(`{"resourceType": "Bundle", "type": "collection"}`)},
	} {
		_, err := ParseJSON(tc.data)
		if err == nil {
			t.Errorf("%s: accepted", tc.name)
			continue
		}
		if strings.Contains(err.Error(), "SECRET") {
			t.Errorf("%s: the error quotes the input: %v", tc.name, err)
		}
		var pe *ParseError
		switch {
		case tc.path == "" && !errors.Is(err, ErrNotReport):
			t.Errorf("%s: %v, want ErrNotReport", tc.name, err)
		case tc.path != "" && (!errors.As(err, &pe) || pe.Path != tc.path):
			t.Errorf("%s: %v, want an error at %s", tc.name, err, tc.path)
		}
	}
}
