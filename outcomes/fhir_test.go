package outcomes

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

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

// validate checks data against base R4 and the ipsfhir extensions. The
// validator does not know the DEQM profile and warns where a report claims
// it (DEQM is checked by checkDEQM); every other issue fails.
func validate(t *testing.T, v *mappings.Validator, name string, data []byte) {
	t.Helper()
	issues, err := v.ValidateJSON(data)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	deqmClaimed := strings.Contains(string(data), `"`+ProfileDEQMSummary+`"`)
	for _, is := range issues {
		atClaim := is.Path == "MeasureReport.meta.profile[0]" || strings.HasSuffix(is.Path, ".ofType(MeasureReport).meta.profile[0]")
		if deqmClaimed && atClaim && is.Severity == "warning" && is.Code == "not-supported" {
			continue
		}
		t.Errorf("%s: %+v", name, is)
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
		{"a reporter that is no identifier", "MeasureReport.reporter.identifier", edit(func(m map[string]any) {
			m["reporter"] = map[string]any{"identifier": map[string]any{"system": "MRN SECRET", "value": "x"}}
		})},
		{"not a date", "MeasureReport.date", edit(func(m map[string]any) { m["date"] = "MRN-SECRET" })},
		// 42.5 "%" must not be read as a rate of 42.5.
		{"a rate in percent", "MeasureReport.group[0].measureScore", edit(func(m map[string]any) {
			group(m)["measureScore"] = map[string]any{"value": 42.5, "unit": "%", "system": "http://unitsofmeasure.org", "code": "%"}
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

// What a measure engine or an HIE reads besides the counts: when, by whom,
// how scored, in what units, and which populations of the Measure.
func TestReportsSayWhenWhoAndInWhatUnits(t *testing.T) {
	// A time in another zone, with nanoseconds: the report shows UTC, to the second.
	at := time.Date(2026, 10, 20, 11, 30, 15, 999, time.FixedZone("CEST", 2*3600))
	rs, err := Compute(constructed().Clients, q3, Options{Program: program, Threshold: 1, Audience: AudienceHIE, Consents: hieDefaultYes, Date: at})
	if err != nil {
		t.Fatal(err)
	}
	type quantity struct {
		Value              *float64
		Unit, System, Code string
	}
	type report struct {
		Meta      struct{ Profile []string }
		Extension []struct {
			URL                  string
			ValueCodeableConcept struct {
				Coding []struct{ System, Code string }
			}
		}
		Date     string
		Reporter struct {
			Type       string
			Identifier struct{ System, Value string }
		}
		Group []struct {
			ID         string
			Population []struct {
				ID   string
				Code struct{ Coding []struct{ Code string } }
			}
			MeasureScore *quantity
			Stratifier   []struct {
				Stratum []struct {
					Population   []map[string]json.RawMessage
					MeasureScore *quantity
				}
			}
		}
	}
	units := map[string]quantity{}
	for _, r := range rs {
		data, err := r.JSON()
		if err != nil {
			t.Fatal(err)
		}
		var got report
		if err := json.Unmarshal(data, &got); err != nil {
			t.Fatal(err)
		}
		m := measureByID(r.Measure)
		if !slices.Equal(got.Meta.Profile, []string{ProfileDEQMSummary}) {
			t.Errorf("%s: meta.profile %v", r.Measure, got.Meta.Profile)
		}
		if got.Date != "2026-10-20T09:30:15Z" {
			t.Errorf("%s: date %q", r.Measure, got.Date)
		}
		if got.Reporter.Type != "Organization" || got.Reporter.Identifier.System != SystemProgram || got.Reporter.Identifier.Value != program {
			t.Errorf("%s: reporter %+v", r.Measure, got.Reporter)
		}
		if e := got.Extension[0]; e.URL != ExtDEQMMeasureScoring || len(e.ValueCodeableConcept.Coding) != 1 ||
			e.ValueCodeableConcept.Coding[0].System != SystemMeasureScoring || e.ValueCodeableConcept.Coding[0].Code != m.scoring {
			t.Errorf("%s: scoring extension %+v, want %s", r.Measure, e, m.scoring)
		}
		for gi, g := range got.Group {
			if g.ID != m.groups[gi].code {
				t.Errorf("%s: group id %q", r.Measure, g.ID)
			}
			for _, p := range g.Population {
				if want := m.groups[gi].code + "-" + p.Code.Coding[0].Code; p.ID != want {
					t.Errorf("%s: population id %q, want %q", r.Measure, p.ID, want)
				}
			}
			for _, s := range g.Stratifier {
				for _, st := range s.Stratum {
					for _, p := range st.Population {
						if _, ok := p["id"]; ok {
							t.Errorf("%s: a stratum population has an id (ids are unique in a resource)", r.Measure)
						}
					}
					if st.MeasureScore != nil && st.MeasureScore.Value != nil && g.MeasureScore != nil &&
						(st.MeasureScore.System != g.MeasureScore.System || st.MeasureScore.Code != g.MeasureScore.Code) {
						t.Errorf("%s: a stratum's score unit differs from the group's", r.Measure)
					}
				}
			}
			if g.MeasureScore != nil {
				units[m.groups[gi].code] = *g.MeasureScore
			}
		}
	}
	ucum, iso := "http://unitsofmeasure.org", "urn:iso:std:iso:4217"
	for group, want := range map[string]quantity{
		GroupCompetitiveEmployment:    {Unit: "1", System: ucum, Code: "1"},
		GroupCompetitiveEmployment20h: {Unit: "1", System: ucum, Code: "1"},
		GroupEmployerContact30d:       {Unit: "1", System: ucum, Code: "1"},
		GroupMedianDaysToContact:      {Unit: "d", System: ucum, Code: "d"},
		GroupMedianHourlyWage:         {Unit: "USD/h", System: iso, Code: "USD"},
		GroupTotalEarnings:            {Unit: "USD", System: iso, Code: "USD"},
	} {
		got := units[group]
		if got.Value == nil || got.Unit != want.Unit || got.System != want.System || got.Code != want.Code {
			t.Errorf("%s: score %+v, want unit %s %s|%s", group, got, want.Unit, want.System, want.Code)
		}
	}
}

// An aggregate is dated by its options; it names a reporter, and claims
// DEQM, only when given one, and reads back with it.
func TestAggregateDateAndReporter(t *testing.T) {
	river := reportOf(t, computeT(t, constructed().Clients, q3, 1), MeasureCompetitiveEmployment)
	east := rateReport("eastside-ips", q3, 11, exact(30), exact(12))
	agg, err := AggregateReports([]*Report{river, east}, aggAt)
	if err != nil {
		t.Fatal(err)
	}
	data, err := agg.JSON()
	if err != nil {
		t.Fatal(err)
	}
	if !agg.Date.Equal(aggAt.Date) || !strings.Contains(string(data), `"date": "2026-10-27T09:30:00Z"`) {
		t.Errorf("aggregate date %v", agg.Date)
	}
	if strings.Contains(string(data), `"reporter"`) || strings.Contains(string(data), ProfileDEQMSummary) {
		t.Errorf("an aggregate without a reporter names one or claims DEQM:\n%.600s", data)
	}

	hie := aggAt
	hie.Reporter = Identifier{System: "https://hie.example.org/id", Value: "east-region"}
	agg, err = AggregateReports([]*Report{river, east}, hie)
	if err != nil {
		t.Fatal(err)
	}
	data, err = agg.JSON()
	if err != nil {
		t.Fatal(err)
	}
	validate(t, newValidator(t), "aggregate with a reporter", data)
	var head struct {
		Meta     struct{ Profile []string }
		Reporter map[string]any
	}
	if err := json.Unmarshal(data, &head); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"type": "Organization", "identifier": map[string]any{"system": "https://hie.example.org/id", "value": "east-region"}}
	if d := cmp.Diff(want, head.Reporter); d != "" || !slices.Equal(head.Meta.Profile, []string{ProfileDEQMSummary}) {
		t.Errorf("reporter (-want +got):\n%s\nprofile %v", d, head.Meta.Profile)
	}
	back, err := ParseJSON(data)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]*Report{agg}, back); d != "" {
		t.Errorf("the aggregate does not read back:\n%s", d)
	}
	// Aggregated again by another HIE, the reporter is the new one's.
	again, err := AggregateReports(back, AggregateOptions{Date: aggAt.Date, Reporter: Identifier{System: "urn:oid:2.16.840.1.113883.19.5", Value: "state"}})
	if err != nil || again.Reporter.Value != "state" || again.Program != "" {
		t.Errorf("aggregate of an aggregate: %+v %v", again, err)
	}

	for _, tc := range []struct {
		name string
		o    AggregateOptions
		want error
	}{
		{"no date", AggregateOptions{Reporter: hie.Reporter}, ErrNoDate},
		{"no system", AggregateOptions{Date: aggAt.Date, Reporter: Identifier{Value: "east-region"}}, ErrBadReporter},
		{"relative system", AggregateOptions{Date: aggAt.Date, Reporter: Identifier{System: "hie", Value: "east-region"}}, ErrBadReporter},
		{"no value", AggregateOptions{Date: aggAt.Date, Reporter: Identifier{System: "https://hie.example.org/id"}}, ErrBadReporter},
		{"a space", AggregateOptions{Date: aggAt.Date, Reporter: Identifier{System: "https://hie.example.org/id", Value: "east region"}}, ErrBadReporter},
		{"a program", AggregateOptions{Date: aggAt.Date, Reporter: Identifier{System: SystemProgram, Value: "riverside-ips"}}, ErrBadReporter},
	} {
		if _, err := AggregateReports([]*Report{river, east}, tc.o); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
		if _, err := AggregateBundles([][]byte{data}, tc.o); !errors.Is(err, tc.want) {
			t.Errorf("AggregateBundles, %s: %v, want %v", tc.name, err, tc.want)
		}
	}
}

// Reports written before they carried a date, a scoring, a reporter type,
// ids and units (ipsfhir before DEQM) still read, so they can be aggregated
// with new ones.
func TestParseJSONReadsEarlierReports(t *testing.T) {
	rs := computeT(t, constructed().Clients, q3, 1)
	for _, r := range rs {
		data, err := r.JSON()
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal(data, &m); err != nil {
			t.Fatal(err)
		}
		delete(m, "date")
		delete(m["meta"].(map[string]any), "profile")
		delete(m["reporter"].(map[string]any), "type")
		m["extension"] = m["extension"].([]any)[1:] // the threshold only
		for _, g := range m["group"].([]any) {
			g := g.(map[string]any)
			delete(g, "id")
			for _, p := range g["population"].([]any) {
				delete(p.(map[string]any), "id")
			}
			// Rates had no unit then (the measures with other units are
			// either of that time with units, or newer).
			if s, ok := g["measureScore"].(map[string]any); ok && s["code"] == "1" {
				delete(s, "unit")
				delete(s, "system")
				delete(s, "code")
			}
		}
		old, _ := json.Marshal(m)
		back, err := ParseJSON(old)
		if err != nil {
			t.Fatalf("%s: %v", r.Measure, err)
		}
		want := *r
		want.Date = time.Time{}
		if d := cmp.Diff([]*Report{&want}, back); d != "" {
			t.Errorf("%s (-want +got):\n%s", r.Measure, d)
		}
	}
}
