package outcomes

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ipsfhir/ipsfhir/ips"
)

// aggAt are the options of the tests' aggregations: produced a week after
// the programs' reports, by no named reporter.
var aggAt = AggregateOptions{Date: producedAt.Add(7 * 24 * time.Hour)}

func masked() Count { return Count{State: Masked} }

// rateReport builds an ips-competitive-employment report by hand: total
// served and working, and strata as {code, served, working}.
func rateReport(prog string, q Quarter, threshold int, served, working Count, strata ...[3]any) *Report {
	pops := func(d, n Count) []Count {
		d.Population = PopulationInitial
		d2 := d
		d2.Population = PopulationDenominator
		n.Population = PopulationNumerator
		return []Count{d, d2, n}
	}
	score := func(d, n Count) Score {
		if d.State == Exact && n.State == Exact && d.Value > 0 {
			return Score{Value: round(float64(n.Value)/float64(d.Value), 4), State: Exact}
		}
		return Score{State: Masked}
	}
	g := Group{Code: GroupCompetitiveEmployment, Populations: pops(served, working), Score: score(served, working)}
	g.Stratifiers = []Stratifier{{Code: StratifierProgram, Strata: []Stratum{{System: SystemProgram, Code: prog, Populations: pops(served, working), Score: score(served, working)}}}}
	spec := Stratifier{Code: StratifierSpecialist}
	for _, s := range strata {
		d, n := s[1].(Count), s[2].(Count)
		spec.Strata = append(spec.Strata, Stratum{System: SpecialistSystem(prog), Code: s[0].(string), Populations: pops(d, n), Score: score(d, n)})
	}
	g.Stratifiers = append(g.Stratifiers, spec)
	return &Report{Measure: MeasureCompetitiveEmployment, Quarter: q, Program: prog, Threshold: threshold, Groups: []Group{g}}
}

func TestAggregateAddsAndFlagsWithheldSums(t *testing.T) {
	// Riverside shows its totals; Eastside withholds its working count
	// (small stratum es-d) but shows es-c's 12.
	river := rateReport("riverside-ips", q3, 11, exact(40), exact(17),
		[3]any{"es-a", masked(), masked()}, [3]any{"es-b", masked(), masked()})
	east := rateReport("eastside-ips", q3, 5, exact(30), masked(),
		[3]any{"es-c", exact(18), exact(12)}, [3]any{"es-d", exact(12), masked()})
	agg, err := AggregateReports([]*Report{river, east}, aggAt)
	if err != nil {
		t.Fatal(err)
	}
	g := agg.Group(GroupCompetitiveEmployment)
	// Served: 40 + 30, exact. Working: 17 + (at least 12) = at least 29,
	// never shown as 29. The rate cannot be computed.
	checkCounts(t, "aggregate", g.Populations, exact(70), exact(70), Count{Value: 29, State: AtLeast})
	checkScore(t, "aggregate", g.Score, Masked, 0, "")
	if agg.Program != "" || agg.Threshold != 5 || agg.Quarter != q3 {
		t.Errorf("aggregate: program %q threshold %d quarter %v", agg.Program, agg.Threshold, agg.Quarter)
	}
	// Strata: the programs' totals, and every specialist stratum as it was.
	ps := g.Stratifier(StratifierProgram).Strata
	if len(ps) != 2 || ps[0].Code != "eastside-ips" || ps[1].Code != "riverside-ips" {
		t.Fatalf("program strata %+v", ps)
	}
	checkCounts(t, "riverside stratum", ps[1].Populations, exact(40), exact(40), exact(17))
	checkScore(t, "riverside stratum", ps[1].Score, Exact, 0.425, "")
	checkCounts(t, "eastside stratum", ps[0].Populations, exact(30), exact(30), masked())
	ss := g.Stratifier(StratifierSpecialist).Strata
	if len(ss) != 4 || ss[0].System != SpecialistSystem("eastside-ips") || ss[0].Code != "es-c" || ss[3].Code != "es-b" {
		t.Fatalf("specialist strata %+v", ss)
	}
	checkCounts(t, "es-c", ss[0].Populations, exact(18), exact(18), exact(12))

	// An aggregate aggregates again: with a third program showing 25 of 50.
	north := rateReport("northside-ips", q3, 11, exact(50), exact(25))
	again, err := AggregateReports([]*Report{agg, north}, aggAt)
	if err != nil {
		t.Fatal(err)
	}
	checkCounts(t, "aggregate of aggregate", again.Group(GroupCompetitiveEmployment).Populations, exact(120), exact(120), Count{Value: 54, State: AtLeast})
	if n := len(again.Group(GroupCompetitiveEmployment).Stratifier(StratifierProgram).Strata); n != 3 {
		t.Errorf("%d program strata", n)
	}
	// When every count is shown, the rate is recomputed: (17+25)/(40+50).
	exactAgg, err := AggregateReports([]*Report{river, north}, aggAt)
	if err != nil {
		t.Fatal(err)
	}
	checkScore(t, "exact aggregate", exactAgg.Group(GroupCompetitiveEmployment).Score, Exact, 0.4667, "")

	// What Aggregate writes is valid FHIR that says "at least", not 29.
	data, err := agg.JSON()
	if err != nil {
		t.Fatal(err)
	}
	validate(t, newValidator(t), "aggregate", data)
	if !strings.Contains(string(data), `"valueInteger": 29`) || !strings.Contains(string(data), ExtLowerBound) || strings.Contains(string(data), `"count": 29`) {
		t.Errorf("the lower bound is not written as one:\n%s", data)
	}
	back, err := ParseJSON(data)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]*Report{agg}, back); d != "" {
		t.Errorf("aggregate does not read back:\n%s", d)
	}
}

func TestAggregateErrorsNameTheInput(t *testing.T) {
	river := rateReport("riverside-ips", q3, 11, exact(40), exact(17))
	east := rateReport("eastside-ips", q3, 11, exact(30), exact(12))
	lastQ := rateReport("eastside-ips", q3.Add(-1), 11, exact(30), exact(12))
	other := rateReport("eastside-ips", q3, 11, exact(30), exact(12))
	other.Measure = MeasureCompetitiveEmployment20h
	other.Groups[0].Code = GroupCompetitiveEmployment20h
	for _, tc := range []struct {
		name  string
		in    []*Report
		index int
		say   string
	}{
		{"another quarter", []*Report{river, lastQ}, 1, "2026Q2"},
		{"another measure", []*Report{river, east, other}, 2, MeasureCompetitiveEmployment20h},
		{"a program twice", []*Report{river, east, river}, 2, "riverside-ips"},
	} {
		_, err := AggregateReports(tc.in, aggAt)
		var ie *InputError
		if !errors.As(err, &ie) || ie.Index != tc.index || !strings.Contains(err.Error(), tc.say) {
			t.Errorf("%s: %v, want an error about input %d saying %q", tc.name, err, tc.index+1, tc.say)
		}
	}
	// Aggregate, from JSON, names unreadable inputs by position too.
	good, _ := river.JSON()
	_, err := Aggregate([][]byte{good, []byte(`{"resourceType": "Patient"}`)}, aggAt)
	var ie *InputError
	if !errors.As(err, &ie) || ie.Index != 1 || !errors.Is(err, ErrNotReport) {
		t.Errorf("unreadable input: %v", err)
	}
}

// Two programs' full Bundles (what `ipsfhir report --json` writes) add up
// measure by measure.
func TestAggregateBundles(t *testing.T) {
	river := constructed()
	east := constructed()
	for _, c := range east.Clients {
		c.Specialist = "East " + c.Specialist
	}
	bundle := func(cl *ips.Caseload, prog string, q Quarter) []byte {
		rs, err := Compute(cl.Clients, q, Options{Program: prog, Threshold: 1, Audience: AudienceHIE, Consents: hieDefaultYes, SpecialistKey: testSpecialistKey, Date: producedAt})
		if err != nil {
			t.Fatal(err)
		}
		b, err := BundleJSON(rs)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	a, b := bundle(river, "riverside-ips", q3), bundle(east, "eastside-ips", q3)
	aggs, err := AggregateBundles([][]byte{a, b}, aggAt)
	if err != nil {
		t.Fatal(err)
	}
	if len(aggs) != len(Measures()) {
		t.Fatalf("%d aggregates", len(aggs))
	}
	// Every count doubles; rates stay; earnings double; medians cannot be added.
	p, s := at(t, aggs, MeasureCompetitiveEmployment, GroupCompetitiveEmployment, "")
	checkCounts(t, "competitive", p, exact(80), exact(80), exact(34))
	checkScore(t, "competitive", s, Exact, 0.425, "")
	p, _ = at(t, aggs, MeasureJobStarts, GroupJobStarts, "")
	checkCounts(t, "job starts", p, exact(18))
	p, s = at(t, aggs, MeasureEarnings, GroupTotalEarnings, "")
	checkCounts(t, "earnings", p, exact(80), exact(34))
	checkScore(t, "earnings", s, Exact, 125080, "USD")
	_, s = at(t, aggs, MeasureEarnings, GroupMedianHourlyWage, "")
	checkScore(t, "wage", s, Unsupported, 0, "")
	p, s = at(t, aggs, MeasureEmployerContact30d, GroupEmployerContact30d, "")
	checkCounts(t, "contact", p, exact(30), exact(30), exact(16))
	checkScore(t, "contact", s, Exact, 0.5333, "")
	for _, r := range aggs {
		data, err := r.JSON()
		if err != nil {
			t.Fatal(err)
		}
		validate(t, newValidator(t), r.Measure, data)
		if n := len(r.Groups[0].Stratifier(StratifierSpecialist).Strata); n != 4 {
			t.Errorf("%s: %d specialist strata", r.Measure, n)
		}
	}

	// Withheld earnings make the sum a lower bound.
	a11 := func() []byte {
		rs := computeT(t, river.Clients, q3, DefaultThreshold)
		out, _ := BundleJSON(rs)
		return out
	}()
	aggs, err = AggregateBundles([][]byte{a11, b}, aggAt)
	if err != nil {
		t.Fatal(err)
	}
	// Riverside at threshold 11 shows its total earnings (62540); Eastside
	// shows everything: exact. Its 20h count is withheld: at least
	// Eastside's 12.
	_, s = at(t, aggs, MeasureEarnings, GroupTotalEarnings, "")
	checkScore(t, "earnings", s, Exact, 125080, "USD")
	p, s = at(t, aggs, MeasureCompetitiveEmployment20h, GroupCompetitiveEmployment20h, "")
	checkCounts(t, "20h", p, exact(80), exact(80), Count{Value: 12, State: AtLeast})
	checkScore(t, "20h", s, Masked, 0, "")

	// A quarter that differs, or a measure missing, is an error about that input.
	_, err = AggregateBundles([][]byte{a, bundle(east, "eastside-ips", q3.Add(1))}, aggAt)
	var ie *InputError
	if !errors.As(err, &ie) || ie.Index != 1 || !strings.Contains(err.Error(), "2026Q4") {
		t.Errorf("another quarter: %v", err)
	}
	one, _ := reportOf(t, computeT(t, east.Clients, q3, 1), MeasureJobStarts).JSON()
	if _, err = AggregateBundles([][]byte{a, one}, aggAt); !errors.As(err, &ie) || ie.Index != 1 {
		t.Errorf("a missing measure: %v", err)
	}
}
