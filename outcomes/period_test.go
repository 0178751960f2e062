package outcomes

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/ipsfhir/ipsfhir/ips"
)

// rollingCaseload is a hand-built caseload whose twelve months ending with
// 2026Q3 (2025-10-01 to 2026-09-30) and whose 2026Q3 are counted by hand:
//
//	r1  enrolled 2025-01-15, closed 2025-09-30: before the window, not counted
//	r2  enrolled 2025-06-01, closed 2025-12-31; competitive job 2025-11-01 to
//	    2025-12-15, 20 h at 15 (45 days): in the year only
//	r3  enrolled 2026-02-10, employer contact after 10 days; competitive job
//	    2026-05-01 to 2026-06-30, 10 h at 16 (61 days): working in the year,
//	    not in Q3
//	r4  enrolled 2026-07-05, employer contact after 46 days; competitive job
//	    from 2026-09-01, 25 h at 18 (30 days in Q3): in both
//	r5  enrolled 2024-01-01; a job that is not competitive from 2026-01-01
//	r6  enrolled 2026-10-01: after the window, not counted
//
// Year: D 4 (r2–r5), N1 3 (r2 r3 r4), N2 2 (r2 r4), E 2 (r3 r4), C 2, W 1
// (r3), F 4 and J 4 (each of r2–r5 started a first job in it); rate 3/4;
// median days (10+46)/2 = 28; wages 15, 16, 18, median 16; earnings
// 20·15·45/7 + 10·16·61/7 + 25·18·30/7 = 5251.43.
// 2026Q3: D 3 (r3 r4 r5), N1 1, N2 1, E 1, C 1, W 0, F 1, J 1; rate 1/3.
func rollingCaseload() []*ips.Client {
	r1 := client("r1", alex, "2025-01-15")
	r1.ClosedOn = d("2025-09-30")
	r1.Jobs = []*ips.Job{job("j1", "2025-03-01", "2025-06-30", 30, 20, true)}
	r2 := client("r2", alex, "2025-06-01")
	r2.ClosedOn = d("2025-12-31")
	r2.Jobs = []*ips.Job{job("j2", "2025-11-01", "2025-12-15", 20, 15, true)}
	r3 := client("r3", alex, "2026-02-10")
	r3.Supports = []*ips.Support{contact("s3", "2026-02-20", ips.SupportCompleted)}
	r3.Jobs = []*ips.Job{job("j3", "2026-05-01", "2026-06-30", 10, 16, true)}
	r4 := client("r4", alex, "2026-07-05")
	r4.Supports = []*ips.Support{contact("s4", "2026-08-20", ips.SupportCompleted)}
	r4.Jobs = []*ips.Job{job("j4", "2026-09-01", "", 25, 18, true)}
	r5 := client("r5", alex, "2024-01-01")
	r5.Jobs = []*ips.Job{job("j5", "2026-01-01", "", 15, 14, false)}
	r6 := client("r6", alex, "2026-10-01")
	r6.Jobs = []*ips.Job{job("j6", "2026-10-02", "", 30, 20, true)}
	return []*ips.Client{r1, r2, r3, r4, r5, r6}
}

// The year's figures of every group, computed (ComputeRolling then keeps
// the rolling groups, see TestComputeRollingKeepsWhatQuartersDoNotAddUpTo).
func TestComputeRollingCountsTheYear(t *testing.T) {
	o := Options{Program: program, Audience: AudienceProgram, Threshold: 1, Consents: hieDefaultYes, Date: producedAt}
	year, err := rollingReports(rollingCaseload(), q3, o)
	if err != nil {
		t.Fatal(err)
	}
	quarter, err := Compute(rollingCaseload(), q3, o)
	if err != nil {
		t.Fatal(err)
	}
	type want struct {
		d, n1, n2, e, c, w, f, j int
		rate, rate20, rate30     float64
		days, wage, earn         float64
	}
	for _, tc := range []struct {
		name string
		rs   []*Report
		want want
	}{
		{"year", year, want{4, 3, 2, 2, 2, 1, 4, 4, 0.75, 0.5, 0.5, 28, 16, 5251.43}},
		{"2026Q3", quarter, want{3, 1, 1, 1, 1, 0, 1, 1, 0.3333, 0.3333, 0, 46, 18, 1928.57}},
	} {
		w := tc.want
		p, s := at(t, tc.rs, MeasureCompetitiveEmployment, GroupCompetitiveEmployment, "")
		checkCounts(t, tc.name+" competitive", p, exact(w.d), exact(w.d), exact(w.n1))
		checkScore(t, tc.name+" competitive", s, Exact, w.rate, "")
		p, s = at(t, tc.rs, MeasureCompetitiveEmployment20h, GroupCompetitiveEmployment20h, "")
		checkCounts(t, tc.name+" 20h", p, exact(w.d), exact(w.d), exact(w.n2))
		checkScore(t, tc.name+" 20h", s, Exact, w.rate20, "")
		p, _ = at(t, tc.rs, MeasureJobStarts, GroupJobStarts, "")
		checkCounts(t, tc.name+" job starts", p, exact(w.j))
		p, _ = at(t, tc.rs, MeasureJobStarts, GroupClientsFirstJob, "")
		checkCounts(t, tc.name+" first jobs", p, exact(w.f))
		p, s = at(t, tc.rs, MeasureEmployerContact30d, GroupEmployerContact30d, "")
		checkCounts(t, tc.name+" contact 30d", p, exact(w.e), exact(w.e), exact(w.w))
		checkScore(t, tc.name+" contact 30d", s, Exact, w.rate30, "")
		p, s = at(t, tc.rs, MeasureDaysToEmployerContact, GroupMedianDaysToContact, "")
		checkCounts(t, tc.name+" days", p, exact(w.e), exact(w.c))
		checkScore(t, tc.name+" days", s, Exact, w.days, "d")
		_, s = at(t, tc.rs, MeasureEarnings, GroupMedianHourlyWage, "")
		checkScore(t, tc.name+" wage", s, Exact, w.wage, "USD/h")
		_, s = at(t, tc.rs, MeasureEarnings, GroupTotalEarnings, "")
		checkScore(t, tc.name+" earnings", s, Exact, w.earn, "USD")
	}
	for _, r := range year {
		start, end := r.Period()
		if !r.Rolling || r.Quarter != q3 || start != d("2025-10-01") || end != d("2026-09-30") {
			t.Errorf("%s: rolling %v quarter %v period %s to %s", r.Measure, r.Rolling, r.Quarter, start, end)
		}
	}
	for _, r := range quarter {
		if start, end := r.Period(); r.Rolling || start != d("2026-07-01") || end != d("2026-09-30") {
			t.Errorf("%s: rolling %v period %s to %s", r.Measure, r.Rolling, start, end)
		}
	}
	// The year's distinct clients are not the sum of its quarters': r5 is
	// counted in all four quarters and once in the year.
	sum := 0
	for i := 0; i < 4; i++ {
		rs, err := Compute(rollingCaseload(), q3.Add(-i), o)
		if err != nil {
			t.Fatal(err)
		}
		sum += reportOf(t, rs, MeasureCompetitiveEmployment).Group(GroupCompetitiveEmployment).Count(PopulationDenominator).Value
	}
	if sum != 9 {
		t.Errorf("the four quarters served %d, want 2+2+2+3 = 9 (the year: 4 distinct clients)", sum)
	}
}

// A program too small for any quarterly figure still gets a rolling one:
// four cohorts of 6 clients, each on the caseload for one quarter only, 3
// of each working 25 hours a week. Each quarter: 6 served, 3 working, all
// withheld. The year: 24 served, 12 working, 50%.
func TestComputeRollingShowsWhatQuartersWithhold(t *testing.T) {
	var cs []*ips.Client
	for k := 0; k < 4; k++ {
		q := q3.Add(-k)
		for i := 0; i < 6; i++ {
			c := client(fmt.Sprintf("k%d-%d", k, i), alex, q.Start().String())
			c.ClosedOn = q.End()
			if i < 3 {
				c.Jobs = []*ips.Job{job("j", q.Start().AddDays(10).String(), q.End().String(), 25, 17, true)}
			}
			cs = append(cs, c)
		}
	}
	o := Options{Program: program, Audience: AudienceProgram, Consents: hieDefaultYes, Date: producedAt}
	for k := 0; k < 4; k++ {
		rs, err := Compute(cs, q3.Add(-k), o)
		if err != nil {
			t.Fatal(err)
		}
		if s := reportOf(t, rs, MeasureCompetitiveEmployment).Group(GroupCompetitiveEmployment).Score; s.State != Masked {
			t.Errorf("%s: quarterly rate %v %v, want withheld", q3.Add(-k), s.State, s.Value)
		}
	}
	year, err := ComputeRolling(cs, q3, o)
	if err != nil {
		t.Fatal(err)
	}
	p, s := at(t, year, MeasureCompetitiveEmployment, GroupCompetitiveEmployment, "")
	checkCounts(t, "year", p, exact(24), exact(24), exact(12))
	checkScore(t, "year", s, Exact, 0.5, "")
	// The year is suppressed like a quarter: its 20-hour count equals its
	// working count, fine; but a year of 6 clients withholds everything.
	small, err := ComputeRolling(cs[:6], q3, o)
	if err != nil {
		t.Fatal(err)
	}
	if s := reportOf(t, small, MeasureCompetitiveEmployment).Group(GroupCompetitiveEmployment).Score; s.State != Masked {
		t.Errorf("a year of 6 clients: rate %v, want withheld", s.State)
	}
}

func TestComputeRollingErrors(t *testing.T) {
	o := Options{Program: program, Audience: AudienceProgram, Consents: hieDefaultYes, Date: producedAt}
	if _, err := ComputeRolling(nil, Quarter{Year: 2026, Q: 5}, o); !errors.Is(err, ErrBadQuarter) {
		t.Errorf("quarter 5: %v", err)
	}
	if _, err := ComputeRolling(nil, Quarter{Year: 1, Q: 2}, o); !errors.Is(err, ErrBadQuarter) {
		t.Errorf("a year starting before year 1: %v", err)
	}
	if _, err := ComputeRolling(nil, q3, Options{Program: program, Audience: AudienceProgram, Consents: hieDefaultYes}); !errors.Is(err, ErrNoDate) {
		t.Errorf("no date: %v", err)
	}
	rs, err := ComputeRolling(rollingCaseload(), q3, o)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rs[0].JSON(); !errors.Is(err, ErrRollingNotFHIR) {
		t.Errorf("JSON of a rolling report: %v", err)
	}
	if _, err := BundleJSON(rs); !errors.Is(err, ErrRollingNotFHIR) {
		t.Errorf("BundleJSON of rolling reports: %v", err)
	}
}

func TestQuarterCompleteness(t *testing.T) {
	for _, tc := range []struct {
		today string
		want  Completeness
		warn  string
	}{
		{"2026-06-30", Future, "2026Q3 has not started (it starts 2026-07-01, after 2026-06-30)"},
		{"2026-07-01", Unfinished, "2026Q3 is not over (it ends 2026-09-30): these figures count 2026-07-01 to 2026-07-01 only"},
		{"2026-09-30", Unfinished, "count 2026-07-01 to 2026-09-30 only and will change"},
		{"2026-10-01", Complete, ""},
	} {
		got := q3.CompletenessOn(d(tc.today))
		w := q3.Warning(d(tc.today))
		if got != tc.want || (tc.warn == "") != (w == "") || !strings.Contains(w, tc.warn) {
			t.Errorf("%s: %v %q, want %v %q", tc.today, got, w, tc.want, tc.warn)
		}
	}
}

func TestTableOfRollingReportsSaysSo(t *testing.T) {
	rs, err := ComputeRolling(rollingCaseload(), q3, Options{Program: program, Audience: AudienceProgram, Threshold: 1, Consents: hieDefaultYes, Date: producedAt})
	if err != nil {
		t.Fatal(err)
	}
	if tab := Table(rs); !strings.Contains(tab, "the 12 months ending with 2026Q3 (2025-10-01 to 2026-09-30)") {
		t.Errorf("table of a rolling year:\n%s", tab)
	}
}

// ComputeRolling keeps only the groups whose year is not the sum of its
// quarters: the year's enrollments, say, are the quarters' added up, so
// with three quarters shown the fourth would be their difference.
func TestComputeRollingKeepsWhatQuartersDoNotAddUpTo(t *testing.T) {
	o := Options{Program: program, Audience: AudienceProgram, Threshold: 1, Consents: hieDefaultYes, Date: producedAt}
	cl := constructed().Clients
	all, err := rollingReports(cl, q3, o)
	if err != nil {
		t.Fatal(err)
	}
	// Why: additive counts of the year are the sums of the quarters'.
	for _, add := range []struct{ measure, group, population string }{
		{MeasureEmployerContact30d, GroupEmployerContact30d, PopulationDenominator},
		{MeasureJobStarts, GroupJobStarts, PopulationInitial},
		{MeasureJobStarts, GroupClientsFirstJob, PopulationInitial},
		{MeasureBenefitsPlanning, GroupBenefitsPlanning, PopulationDenominator},
		{MeasureJobRetention90d, GroupJobRetention90d, PopulationDenominator},
	} {
		sum := 0
		for i := range 4 {
			rs, err := Compute(cl, q3.Add(-i), o)
			if err != nil {
				t.Fatal(err)
			}
			sum += reportOf(t, rs, add.measure).Group(add.group).Count(add.population).Value
		}
		if y := reportOf(t, all, add.measure).Group(add.group).Count(add.population).Value; y != sum || y == 0 {
			t.Errorf("%s: the year %d, the quarters %d: want them equal and not 0 (the reason the group has no rolling figure)", add.group, y, sum)
		}
	}
	year, err := ComputeRolling(cl, q3, o)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range year {
		if !r.Rolling {
			t.Errorf("%s: not marked rolling", r.Measure)
		}
		for _, g := range r.Groups {
			got = append(got, g.Code)
		}
	}
	want := []string{GroupCompetitiveEmployment, GroupCompetitiveEmployment20h, GroupMedianHourlyWage, GroupMedianJobTenure}
	if !slices.Equal(got, want) {
		t.Errorf("rolling groups %v, want %v", got, want)
	}
}
