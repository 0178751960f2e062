package outcomes

import (
	"testing"

	"github.com/ipsfhir/ipsfhir/ips"
)

// episodesCaseload is built by hand so that each client tests one rule of
// how enrollment episodes count (docs/OUTCOMES.md, Who is counted), in
// 2026Q3 (1 July to 30 September).
func episodesCaseload() []*ips.Client {
	d := ips.MustDate
	usd := func(v float64) ips.Money { return ips.Money{Value: v, Currency: "USD"} }
	pid := func(v string) ips.Identifier { return ips.Identifier{System: "urn:x", Value: v} }
	return []*ips.Client{
		// Re-enrolled in the quarter: counted once; the first job and the
		// first competitive job of the new episode started in it, 31 days
		// after its enrollment; first employer contact 5 days after it. The
		// earlier episode's job started before the quarter.
		{ID: "a", Patient: pid("a"), Status: ips.ClientActive, ReferredOn: d("2026-07-01"), EnrolledOn: d("2026-07-15"),
			PastEpisodes: []*ips.Episode{{EnrolledOn: d("2025-01-10"), ClosedOn: d("2025-06-30")}},
			Jobs: []*ips.Job{
				{ID: "j1", Employer: "e", Title: "t", Start: d("2025-03-01"), End: d("2025-05-01"), HoursPerWeek: 10, HourlyWage: usd(15), Competitive: true},
				{ID: "j2", Employer: "e", Title: "t", Start: d("2026-08-15"), HoursPerWeek: 25, HourlyWage: usd(16), Competitive: true},
			},
			Supports: []*ips.Support{{ID: "s1", Type: ips.SupportEmployerContact, Status: ips.SupportCompleted, Date: d("2026-07-20")}}},
		// Closed in the quarter and referred again, waiting: served in the
		// quarter through the closed episode.
		{ID: "b", Patient: pid("b"), Status: ips.ClientReferred, ReferredOn: d("2026-08-01"),
			PastEpisodes: []*ips.Episode{{EnrolledOn: d("2026-01-05"), ClosedOn: d("2026-07-10")}}},
		// Referred again, waiting, the earlier episode closed before the
		// quarter: referred, not served.
		{ID: "c", Patient: pid("c"), Status: ips.ClientReferred, ReferredOn: d("2026-08-01"),
			PastEpisodes: []*ips.Episode{{EnrolledOn: d("2025-01-05"), ClosedOn: d("2025-12-31")}}},
		// A referral closed without enrollment: never enrolled.
		{ID: "d", Patient: pid("d"), Status: ips.ClientClosed, ReferredOn: d("2026-07-01"), ClosedOn: d("2026-07-20"), ClosedReason: "declined"},
		// A new referral, waiting.
		{ID: "e", Patient: pid("e"), Status: ips.ClientReferred, ReferredOn: d("2026-09-01")},
		// The first competitive job of the earlier episode reaches its
		// 90th day in the quarter, still held; enrolled again in June.
		{ID: "f", Patient: pid("f"), Status: ips.ClientActive, EnrolledOn: d("2026-06-20"),
			PastEpisodes: []*ips.Episode{{EnrolledOn: d("2026-01-05"), ClosedOn: d("2026-05-31")}},
			Jobs:         []*ips.Job{{ID: "j1", Employer: "e", Title: "t", Start: d("2026-04-15"), HoursPerWeek: 15, HourlyWage: usd(15), Competitive: true}}},
		// Out of the program over the whole quarter, between two episodes.
		{ID: "g", Patient: pid("g"), Status: ips.ClientActive, EnrolledOn: d("2026-10-05"),
			PastEpisodes: []*ips.Episode{{EnrolledOn: d("2025-01-01"), ClosedOn: d("2026-03-31")}}},
	}
}

// TestEpisodesCountByConstruction: a client is served in a quarter when
// any of their enrollment episodes overlaps it, and counted once; what is
// measured from enrollment is measured from the episode's.
func TestEpisodesCountByConstruction(t *testing.T) {
	clients := episodesCaseload()
	if err := ips.Validate(&ips.Caseload{Clients: clients}); err != nil {
		t.Fatal(err)
	}
	c, err := compute(clients, q3, Options{Program: program, Threshold: 1, Audience: AudienceProgram, Date: producedAt})
	if err != nil {
		t.Fatal(err)
	}
	got := c.levels[0]
	want := map[cell]int{cellD: 3, cellE: 1, cellC: 1, cellW: 1, cellF: 1, cellJ: 1, cellN1: 2, cellN2: 1, cellG: 1, cellB: 0, cellR: 1, cellR90: 1}
	names := map[cell]string{cellD: "D", cellE: "E", cellC: "C", cellW: "W", cellF: "F", cellJ: "J", cellN1: "N1", cellN2: "N2", cellG: "G", cellB: "B", cellR: "R", cellR90: "R90"}
	for x, n := range want {
		if got.n[x] != n {
			t.Errorf("%s = %d, want %d", names[x], got.n[x], n)
		}
	}
	if len(got.days) != 1 || got.days[0] != 5 {
		t.Errorf("days to first employer contact %v, want [5] (from the new episode's enrollment)", got.days)
	}
	if len(got.jobDays) != 1 || got.jobDays[0] != 31 {
		t.Errorf("days to first competitive job %v, want [31] (from the new episode's enrollment)", got.jobDays)
	}
	wantExcluded := map[string]int{ExcludedReferred: 2, ExcludedNoEnrollmentDate: 1, ExcludedClosedBefore: 1}
	for _, r := range ExcludedReasons(AudienceProgram) {
		if c.excluded[r] != wantExcluded[r] {
			t.Errorf("excluded %s = %d, want %d", r, c.excluded[r], wantExcluded[r])
		}
	}
}

// TestTrendWithReenrolledClients: clients served in a year's first
// quarter and enrolled again later in it are one client each in the year,
// so the year's served count is less than D(q−3) + E(q−2) + E(q−1) + E(q).
// The page's audit must not take the equation as given: with those counts
// shown it would have no solution, and the page could not be made.
func TestTrendWithReenrolledClients(t *testing.T) {
	d := ips.MustDate
	var clients []*ips.Client
	for _, id := range []string{"r1", "r2", "r3"} {
		clients = append(clients, &ips.Client{ID: id, Patient: ips.Identifier{System: "urn:x", Value: id}, Status: ips.ClientActive, EnrolledOn: d("2026-05-01"),
			PastEpisodes: []*ips.Episode{{EnrolledOn: d("2025-10-05"), ClosedOn: d("2026-01-31")}}})
	}
	for _, id := range []string{"s1", "s2", "s3"} {
		clients = append(clients, &ips.Client{ID: id, Patient: ips.Identifier{System: "urn:x", Value: id}, EnrolledOn: d("2025-11-01")})
	}
	// One client working in the last quarter: a small count to protect,
	// so the audit runs.
	clients[5].Jobs = []*ips.Job{{ID: "j1", Employer: "e", Title: "t", Start: d("2026-08-01"), HoursPerWeek: 20,
		HourlyWage: ips.Money{Value: 16, Currency: "USD"}, Competitive: true}}
	quarters := []Quarter{q3.Add(-3), q3.Add(-2), q3.Add(-1), q3}
	trend, err := ComputeTrend(clients, quarters, Options{Program: program, Threshold: 3, Audience: AudienceProgram, Date: producedAt})
	if err != nil {
		t.Fatalf("ComputeTrend: %v", err)
	}
	dy := -1
	for _, r := range trend[3].Rolling {
		if r.Measure == MeasureCompetitiveEmployment {
			dy = r.Groups[0].Populations[0].Value
		}
	}
	if dy != 6 {
		t.Errorf("the year's served count is %d, want 6 (six people, three of them enrolled twice)", dy)
	}
}
