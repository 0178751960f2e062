package outcomes

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/ipsfhir/ipsfhir/ips"
)

// denominatorCaseload: 2026Q3 of a program that served 10 clients, 4 of
// whom worked competitively in the quarter, plus 3 referred to it and
// not enrolled (status referred; the format requires an enrollment date,
// which is set, as a referral import or a careless entry would set it,
// and one has a job recorded), 2 closed before the quarter, 1 enrolled
// after it and 1 with no enrollment date. The right rate is 4/10 = 40%,
// not 4/13. Clients n1 and n2 (one working) declined HIE sharing.
func denominatorCaseload() []*ips.Client {
	var cs []*ips.Client
	add := func(id, enrolled string) *ips.Client {
		c := &ips.Client{ID: id, Patient: ips.Identifier{System: "urn:test", Value: id}, Specialist: "Alex Rivera"}
		if enrolled != "" {
			c.EnrolledOn = d(enrolled)
		}
		cs = append(cs, c)
		return c
	}
	no := false
	for i := 1; i <= 10; i++ {
		c := add(fmt.Sprintf("c%02d", i), "2026-01-15")
		if i <= 4 {
			c.Jobs = []*ips.Job{job("j1", "2026-05-01", "", 20, 16, true)}
		}
		if i == 4 || i == 5 {
			c.Consent = &ips.Consent{HIE: &no}
		}
		if i == 6 {
			c.Status = ips.ClientOnHold // on hold is still on the caseload
		}
	}
	for i := 1; i <= 3; i++ {
		c := add(fmt.Sprintf("r%d", i), "2026-08-01")
		c.ReferredOn, c.Status = d("2026-07-20"), ips.ClientReferred
		if i == 1 {
			c.Jobs = []*ips.Job{job("j1", "2026-08-10", "", 20, 16, true)}
		}
	}
	for i := 1; i <= 2; i++ {
		c := add(fmt.Sprintf("x%d", i), "2025-01-15")
		c.ClosedOn, c.Status = d("2026-06-30"), ips.ClientClosed
		c.Jobs = []*ips.Job{job("j1", "2026-05-01", "", 20, 16, true)}
	}
	add("later", "2026-10-01")
	add("nodate", "")
	return cs
}

func excludedOf(r *Report) map[string]Exclusion {
	out := map[string]Exclusion{}
	for _, e := range r.Excluded {
		out[e.Reason] = e
	}
	return out
}

func TestReferredClientsAreNotServed(t *testing.T) {
	cs := denominatorCaseload()
	nobody := func(*ips.Client) bool { return false }
	rs, err := Compute(cs, q3, Options{Program: program, Threshold: 1, Audience: AudienceProgram, Consents: nobody, Date: producedAt})
	if err != nil {
		t.Fatal(err)
	}
	g := reportOf(t, rs, MeasureCompetitiveEmployment).Group(GroupCompetitiveEmployment)
	if d, n := g.Count(PopulationDenominator), g.Count(PopulationNumerator); d != (Count{PopulationDenominator, 10, Exact}) || n != (Count{PopulationNumerator, 4, Exact}) {
		t.Errorf("served %v, working %v; want 10 and 4 (referred clients are not served; the program's own report ignores HIE consent)", d, n)
	}
	if g.Score != (Score{Value: 0.4, State: Exact}) {
		t.Errorf("rate %v, want 0.4 (4 of 10), not 4/13", g.Score)
	}
	r := reportOf(t, rs, MeasureCompetitiveEmployment)
	if r.Audience != AudienceProgram {
		t.Errorf("audience %v", r.Audience)
	}
	want := []Exclusion{
		{ExcludedNoEnrollmentDate, 1, Exact},
		{ExcludedReferred, 3, Exact},
		{ExcludedEnrolledAfter, 1, Exact},
		{ExcludedClosedBefore, 2, Exact},
	}
	if fmt.Sprint(r.Excluded) != fmt.Sprint(want) {
		t.Errorf("excluded %v, want %v", r.Excluded, want)
	}
	// The first job of a referred client is not a job start of the program.
	js := reportOf(t, rs, MeasureJobStarts).Group(GroupJobStarts)
	if c := js.Count(PopulationInitial); c.Value != 0 {
		t.Errorf("job starts %v: a referred client's job was counted", c)
	}

	// For an HIE, the two who declined are left out too: 3 of 8.
	rs, err = Compute(cs, q3, Options{Program: program, Threshold: 1, Audience: AudienceHIE, Consents: hieDefaultYes, Date: producedAt})
	if err != nil {
		t.Fatal(err)
	}
	r = reportOf(t, rs, MeasureCompetitiveEmployment)
	g = r.Group(GroupCompetitiveEmployment)
	if d, n := g.Count(PopulationDenominator), g.Count(PopulationNumerator); d.Value != 8 || n.Value != 3 {
		t.Errorf("HIE: served %v, working %v; want 8 and 3", d, n)
	}
	// Reasons stated, every count withheld, even at threshold 1.
	if len(r.Excluded) != len(ExcludedReasons(AudienceHIE)) {
		t.Fatalf("HIE exclusions %v", r.Excluded)
	}
	for i, e := range r.Excluded {
		if e.Reason != ExcludedReasons(AudienceHIE)[i] || e.State != Masked || e.Value != 0 {
			t.Errorf("HIE exclusion %v: want reason %s withheld", e, ExcludedReasons(AudienceHIE)[i])
		}
	}
}

// Exclusion counts of the program's own report are withheld from 1 to
// threshold-1, zeros and large counts are shown, and none but zeros when
// the served count is withheld.
func TestExclusionCountsAreSuppressed(t *testing.T) {
	var cs []*ips.Client
	for i := range 30 {
		c := &ips.Client{ID: fmt.Sprintf("c%d", i), EnrolledOn: d("2026-01-15")}
		switch {
		case i < 5:
			c.Status = ips.ClientReferred // 5 referred: small
		case i < 17:
			c.ClosedOn = d("2026-03-31") // 12 closed before: shown
		}
		c.Jobs = []*ips.Job{job("j1", "2026-02-01", "", 20, 16, i%2 == 0)}
		cs = append(cs, c)
	}
	rs, err := Compute(cs, q3, Options{Program: program, Audience: AudienceProgram, Date: producedAt})
	if err != nil {
		t.Fatal(err)
	}
	got := excludedOf(rs[0])
	if g := rs[0].Group(GroupCompetitiveEmployment); g.Count(PopulationDenominator) != (Count{PopulationDenominator, 13, Exact}) {
		t.Fatalf("served %v, want 13 shown", g.Count(PopulationDenominator))
	}
	for reason, want := range map[string]Exclusion{
		ExcludedNoEnrollmentDate: {ExcludedNoEnrollmentDate, 0, Exact},
		ExcludedReferred:         {ExcludedReferred, 0, Masked},
		ExcludedEnrolledAfter:    {ExcludedEnrolledAfter, 0, Exact},
		ExcludedClosedBefore:     {ExcludedClosedBefore, 12, Exact},
	} {
		if got[reason] != want {
			t.Errorf("%s: %v, want %v", reason, got[reason], want)
		}
	}
	for _, r := range rs {
		if _, ok := excludedOf(r)[ExcludedNoHIEConsent]; ok {
			t.Errorf("%s: a program's own report states HIE consent exclusions", r.Measure)
		}
	}

	// Served 3 (withheld): the 12 closed must not be shown, or the
	// store's total minus the counts shown would give the 3.
	rs, err = Compute(cs[:20], q3, Options{Program: program, Audience: AudienceProgram, Date: producedAt})
	if err != nil {
		t.Fatal(err)
	}
	if g := rs[0].Group(GroupCompetitiveEmployment); g.Count(PopulationDenominator).State != Masked {
		t.Fatalf("served %v, want withheld", g.Count(PopulationDenominator))
	}
	if got := excludedOf(rs[0]); got[ExcludedClosedBefore].State != Masked || got[ExcludedEnrolledAfter] != (Exclusion{ExcludedEnrolledAfter, 0, Exact}) {
		t.Errorf("with the served count withheld: %v", rs[0].Excluded)
	}
}

// The exclusions survive JSON; a program's own report is refused by
// aggregation, an HIE's is aggregated with the reasons stated and the
// counts withheld.
func TestExclusionsInFHIR(t *testing.T) {
	cs := denominatorCaseload()
	for _, a := range []Audience{AudienceProgram, AudienceHIE} {
		rs, err := Compute(cs, q3, Options{Program: program, Threshold: 1, Audience: a, Consents: hieDefaultYes, Date: producedAt})
		if err != nil {
			t.Fatal(err)
		}
		data, err := BundleJSON(rs)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(data), ExtExcluded) {
			t.Fatalf("%v: no %s in the JSON", a, ExtExcluded)
		}
		back, err := ParseJSON(data)
		if err != nil {
			t.Fatal(err)
		}
		for i, r := range back {
			if r.Audience != a || fmt.Sprint(r.Excluded) != fmt.Sprint(rs[i].Excluded) {
				t.Errorf("%v %s: read back %v %v, want %v", a, r.Measure, r.Audience, r.Excluded, rs[i].Excluded)
			}
		}
		_, err = AggregateBundles([][]byte{data}, aggAt)
		if a == AudienceProgram {
			var ie *InputError
			if !errors.As(err, &ie) || !errors.Is(err, ErrProgramAudience) {
				t.Errorf("aggregating a program's own report: %v, want ErrProgramAudience", err)
			}
			continue
		}
		aggs, err := AggregateBundles([][]byte{data}, aggAt)
		if err != nil {
			t.Fatal(err)
		}
		for _, agg := range aggs {
			if agg.Audience != AudienceHIE || len(agg.Excluded) != len(ExcludedReasons(AudienceHIE)) {
				t.Errorf("aggregate %s: %v %v", agg.Measure, agg.Audience, agg.Excluded)
			}
			for _, e := range agg.Excluded {
				if e.State != Masked {
					t.Errorf("aggregate %s shows exclusion %v", agg.Measure, e)
				}
			}
		}
	}
}

func TestParseExcludedErrors(t *testing.T) {
	rs, err := Compute(denominatorCaseload(), q3, Options{Program: program, Threshold: 1, Audience: AudienceProgram, Date: producedAt})
	if err != nil {
		t.Fatal(err)
	}
	data, err := rs[0].JSON()
	if err != nil {
		t.Fatal(err)
	}
	good := string(data)
	for name, bad := range map[string]string{
		"unknown reason": strings.Replace(good, `"valueCode": "referred-not-enrolled"`, `"valueCode": "Zanzibar"`, 1),
		"reason twice":   strings.Replace(good, `"valueCode": "referred-not-enrolled"`, `"valueCode": "no-enrollment-date"`, 1),
		"no count":       strings.Replace(good, `"url": "count"`, `"url": "reason"`, 1),
		"negative count": strings.Replace(good, `"valueUnsignedInt": 3`, `"valueUnsignedInt": -3`, 1),
	} {
		if bad == good {
			t.Fatalf("%s: the replacement did not apply", name)
		}
		_, err := ParseJSON([]byte(bad))
		var pe *ParseError
		if !errors.As(err, &pe) || !strings.Contains(pe.Path, ".extension") || strings.Contains(err.Error(), "Zanzibar") {
			t.Errorf("%s: %v, want a ParseError naming the extension and quoting nothing", name, err)
		}
	}
}

// The table says who the report is for and has a line per reason.
func TestTableStatesExclusions(t *testing.T) {
	rs, err := Compute(denominatorCaseload(), q3, Options{Program: program, Threshold: 1, Audience: AudienceProgram, Date: producedAt})
	if err != nil {
		t.Fatal(err)
	}
	tab := Table(rs)
	for _, want := range []string{"The program's own report", "Clients left out of the counts", "referred, not enrolled (status referred)  3", "closed before the quarter", "no enrollment date recorded"} {
		if !strings.Contains(tab, want) {
			t.Errorf("table lacks %q:\n%s", want, tab)
		}
	}
	rs, err = Compute(denominatorCaseload(), q3, Options{Program: program, Threshold: 1, Audience: AudienceHIE, Consents: hieDefaultYes, Date: producedAt})
	if err != nil {
		t.Fatal(err)
	}
	tab = Table(rs)
	for _, want := range []string{"For HIEs", "no consent to HIE reporting", "withheld"} {
		if !strings.Contains(tab, want) {
			t.Errorf("HIE table lacks %q:\n%s", want, tab)
		}
	}
}
