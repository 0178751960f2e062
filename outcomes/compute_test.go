package outcomes

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ipsfhir/ipsfhir/ips"
	"github.com/ipsfhir/ipsfhir/ips/synth"
)

const program = "riverside-ips"

// producedAt is when the tests' reports are produced (MeasureReport.date).
var producedAt = time.Date(2026, 10, 20, 9, 30, 0, 0, time.UTC)

// testSpecialistKey is the specialist key the tests report with, unless a
// test says otherwise.
var testSpecialistKey = []byte("outcomes-test-specialist-key-0123456789")

// specialistCode is SpecialistCode under testSpecialistKey.
func specialistCode(t *testing.T, program, specialist string) string {
	t.Helper()
	code, err := SpecialistCode(testSpecialistKey, program, specialist)
	if err != nil {
		t.Fatal(err)
	}
	return code
}

func computeT(t *testing.T, clients []*ips.Client, q Quarter, threshold int) []*Report {
	t.Helper()
	rs, err := Compute(clients, q, Options{Program: program, Threshold: threshold, Audience: AudienceHIE, Consents: hieDefaultYes, SpecialistKey: testSpecialistKey, Date: producedAt})
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

func reportOf(t *testing.T, rs []*Report, measure string) *Report {
	t.Helper()
	for _, r := range rs {
		if r.Measure == measure {
			return r
		}
	}
	t.Fatalf("no report of %s", measure)
	return nil
}

// at returns a group's populations and score for the whole report
// (stratum "") or a specialist's stratum.
func at(t *testing.T, rs []*Report, measure, group, specialist string) ([]Count, Score) {
	t.Helper()
	g := reportOf(t, rs, measure).Group(group)
	if g == nil {
		t.Fatalf("%s has no group %s", measure, group)
	}
	if specialist == "" {
		return g.Populations, g.Score
	}
	code := specialistCode(t, program, specialist)
	for _, st := range g.Stratifier(StratifierSpecialist).Strata {
		if st.Code == code {
			if st.System != SpecialistSystem(program) {
				t.Errorf("stratum system %s", st.System)
			}
			return st.Populations, st.Score
		}
	}
	t.Fatalf("%s/%s: no stratum for %s", measure, group, specialist)
	return nil, Score{}
}

func exact(n int) Count { return Count{Value: n, State: Exact} }

var withheldCount = Count{State: Masked}

func checkCounts(t *testing.T, where string, got []Count, want ...Count) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d populations, want %d", where, len(got), len(want))
	}
	for i := range want {
		if got[i].State != want[i].State || got[i].Value != want[i].Value {
			t.Errorf("%s: %s = %v %d, want %v %d", where, got[i].Population, got[i].State, got[i].Value, want[i].State, want[i].Value)
		}
	}
}

func checkScore(t *testing.T, where string, got Score, state State, value float64, unit string) {
	t.Helper()
	if got.State != state || math.Abs(got.Value-value) > 1e-9 || got.Unit != unit {
		t.Errorf("%s: score %v %v %q, want %v %v %q", where, got.State, got.Value, got.Unit, state, value, unit)
	}
}

// With threshold 1 nothing is withheld, so every number of the constructed
// caseload can be checked against the hand count in caseload_test.go.
func TestComputeCountsByConstruction(t *testing.T) {
	rs := computeT(t, constructed().Clients, q3, 1)
	if len(rs) != 11 {
		t.Fatalf("%d reports", len(rs))
	}
	type row struct {
		who                              string
		d, n1, n2, e, c, w, f, j         int
		rate, rate20, rate30, earn, wage float64
		days                             float64
		g, b, r, r90                     int
		jobDays, weeks, caseload         float64
	}
	for _, r := range []row{
		{"", 40, 17, 12, 15, 12, 8, 6, 9, 0.425, 0.3, 0.5333, 62540.00, 16, 17, 4, 2, 2, 1, 269.5, 38.4, 12.5},
		{alex, 32, 14, 10, 12, 10, 7, 5, 7, 0.4375, 0.3125, 0.5833, 49791.43, 16, 17, 4, 2, 2, 1, 269.5, 32.6, 20},
		{sam, 8, 3, 2, 3, 2, 1, 1, 2, 0.375, 0.25, 0.3333, 12748.57, 16, 22.5, 0, 0, 0, 0, 0, 38.4, 5},
	} {
		who := r.who
		if who == "" {
			who = "all"
		}
		p, s := at(t, rs, MeasureCompetitiveEmployment, GroupCompetitiveEmployment, r.who)
		checkCounts(t, who+" competitive", p, exact(r.d), exact(r.d), exact(r.n1))
		checkScore(t, who+" competitive", s, Exact, r.rate, "")
		p, s = at(t, rs, MeasureCompetitiveEmployment20h, GroupCompetitiveEmployment20h, r.who)
		checkCounts(t, who+" 20h", p, exact(r.d), exact(r.d), exact(r.n2))
		checkScore(t, who+" 20h", s, Exact, r.rate20, "")
		p, s = at(t, rs, MeasureJobStarts, GroupJobStarts, r.who)
		checkCounts(t, who+" job starts", p, exact(r.j))
		checkScore(t, who+" job starts", s, NoValue, 0, "")
		p, _ = at(t, rs, MeasureJobStarts, GroupClientsFirstJob, r.who)
		checkCounts(t, who+" first jobs", p, exact(r.f))
		p, s = at(t, rs, MeasureEarnings, GroupMedianHourlyWage, r.who)
		checkCounts(t, who+" wage", p, exact(r.d), exact(r.n1))
		checkScore(t, who+" wage", s, Exact, r.wage, "USD/h")
		p, s = at(t, rs, MeasureEarnings, GroupTotalEarnings, r.who)
		checkCounts(t, who+" earnings", p, exact(r.d), exact(r.n1))
		checkScore(t, who+" earnings", s, Exact, r.earn, "USD")
		p, s = at(t, rs, MeasureEmployerContact30d, GroupEmployerContact30d, r.who)
		checkCounts(t, who+" contact 30d", p, exact(r.e), exact(r.e), exact(r.w))
		checkScore(t, who+" contact 30d", s, Exact, r.rate30, "")
		p, s = at(t, rs, MeasureDaysToEmployerContact, GroupMedianDaysToContact, r.who)
		checkCounts(t, who+" days", p, exact(r.e), exact(r.c))
		checkScore(t, who+" days", s, Exact, r.days, "d")

		p, s = at(t, rs, MeasureDaysToCompetitiveJob, GroupMedianDaysToJob, r.who)
		checkCounts(t, who+" days to job", p, exact(r.d), exact(r.g))
		if r.g == 0 {
			checkScore(t, who+" days to job", s, NoValue, 0, "")
		} else {
			checkScore(t, who+" days to job", s, Exact, r.jobDays, "d")
		}
		p, s = at(t, rs, MeasureJobTenure, GroupMedianJobTenure, r.who)
		checkCounts(t, who+" tenure", p, exact(r.d), exact(r.n1))
		checkScore(t, who+" tenure", s, Exact, r.weeks, "wk")
		p, s = at(t, rs, MeasureJobRetention90d, GroupJobRetention90d, r.who)
		checkCounts(t, who+" retention", p, exact(r.r), exact(r.r), exact(r.r90))
		p2, s2 := at(t, rs, MeasureBenefitsPlanning, GroupBenefitsPlanning, r.who)
		checkCounts(t, who+" benefits planning", p2, exact(r.g), exact(r.g), exact(r.b))
		if r.r == 0 {
			checkScore(t, who+" retention", s, NoValue, 0, "")
			checkScore(t, who+" benefits planning", s2, NoValue, 0, "")
		} else {
			checkScore(t, who+" retention", s, Exact, float64(r.r90)/float64(r.r), "")
			checkScore(t, who+" benefits planning", s2, Exact, float64(r.b)/float64(r.g), "")
		}
		p, s = at(t, rs, MeasureCaseloadSize, GroupCaseloadSize, r.who)
		checkCounts(t, who+" caseload", p, exact(r.d-r.e), exact(r.d-r.e))
		checkScore(t, who+" caseload", s, Exact, r.caseload, "{clients}")
	}
	// One program stratum, equal to the whole; two specialist strata,
	// sorted by code, named by code only.
	for _, r := range rs {
		for _, g := range r.Groups {
			ps := g.Stratifier(StratifierProgram)
			if ps == nil || len(ps.Strata) != 1 || ps.Strata[0].Code != program || ps.Strata[0].System != SystemProgram {
				t.Fatalf("%s/%s: program stratifier %+v", r.Measure, g.Code, ps)
			}
			checkCounts(t, r.Measure+" program stratum", ps.Strata[0].Populations, g.Populations...)
			ss := g.Stratifier(StratifierSpecialist)
			if ss == nil || len(ss.Strata) != 2 || ss.Strata[0].Code > ss.Strata[1].Code {
				t.Fatalf("%s/%s: specialist stratifier %+v", r.Measure, g.Code, ss)
			}
		}
		if r.Program != program || r.Quarter != q3 || r.Threshold != 1 {
			t.Errorf("report %s: program %q quarter %v threshold %d", r.Measure, r.Program, r.Quarter, r.Threshold)
		}
	}
}

// With the default threshold, the constructed caseload shows exactly the
// program's served (40), working (17) and enrolled (15) counts, the rate
// 17/40, the median wage and the total earnings of the 17; the rest is
// small or would reveal a small count:
//   - Sam Chen's counts are all 1 to 10, so Alex Rivera's are withheld too
//     (each is the total minus Sam Chen's);
//   - N1−N2 = 5 works under 20 hours, so N2 (12) is withheld;
//   - E−C = 3 enrolled clients have no contact yet, so C (12) is withheld;
//   - W (8), F (6) and J (9) are small.
func TestComputeSuppressesByConstruction(t *testing.T) {
	rs := computeT(t, constructed().Clients, q3, 0)
	p, s := at(t, rs, MeasureCompetitiveEmployment, GroupCompetitiveEmployment, "")
	checkCounts(t, "all competitive", p, exact(40), exact(40), exact(17))
	checkScore(t, "all competitive", s, Exact, 0.425, "")
	p, s = at(t, rs, MeasureCompetitiveEmployment20h, GroupCompetitiveEmployment20h, "")
	checkCounts(t, "all 20h", p, exact(40), exact(40), withheldCount)
	checkScore(t, "all 20h", s, Masked, 0, "")
	p, _ = at(t, rs, MeasureJobStarts, GroupJobStarts, "")
	checkCounts(t, "all job starts", p, withheldCount)
	p, _ = at(t, rs, MeasureJobStarts, GroupClientsFirstJob, "")
	checkCounts(t, "all first jobs", p, withheldCount)
	p, s = at(t, rs, MeasureEarnings, GroupMedianHourlyWage, "")
	checkCounts(t, "all wage", p, exact(40), exact(17))
	checkScore(t, "all wage", s, Exact, 16, "USD/h")
	p, s = at(t, rs, MeasureEarnings, GroupTotalEarnings, "")
	checkCounts(t, "all earnings", p, exact(40), exact(17))
	checkScore(t, "all earnings", s, Exact, 62540, "USD")
	p, s = at(t, rs, MeasureEmployerContact30d, GroupEmployerContact30d, "")
	checkCounts(t, "all contact", p, exact(15), exact(15), withheldCount)
	checkScore(t, "all contact", s, Masked, 0, "")
	p, s = at(t, rs, MeasureDaysToEmployerContact, GroupMedianDaysToContact, "")
	checkCounts(t, "all days", p, exact(15), withheldCount)
	checkScore(t, "all days", s, Masked, 0, "")
	// The new measures: G (4), R (2) and R90 (1) are small, so their
	// rates and the median days are withheld; B is 0 and shown, which is
	// safe (zeros are always shown). The median weeks are of the 17
	// working, shown with them. D−E = 25 is shown with D and E, 12.5 per
	// specialist.
	p, s = at(t, rs, MeasureDaysToCompetitiveJob, GroupMedianDaysToJob, "")
	checkCounts(t, "all days to job", p, exact(40), withheldCount)
	checkScore(t, "all days to job", s, Masked, 0, "")
	p, s = at(t, rs, MeasureJobTenure, GroupMedianJobTenure, "")
	checkCounts(t, "all tenure", p, exact(40), exact(17))
	checkScore(t, "all tenure", s, Exact, 38.4, "wk")
	p, s = at(t, rs, MeasureJobRetention90d, GroupJobRetention90d, "")
	checkCounts(t, "all retention", p, withheldCount, withheldCount, withheldCount)
	checkScore(t, "all retention", s, Masked, 0, "")
	p, s = at(t, rs, MeasureBenefitsPlanning, GroupBenefitsPlanning, "")
	checkCounts(t, "all benefits planning", p, withheldCount, withheldCount, withheldCount)
	checkScore(t, "all benefits planning", s, Masked, 0, "")
	p, s = at(t, rs, MeasureCaseloadSize, GroupCaseloadSize, "")
	checkCounts(t, "all caseload", p, exact(25), exact(25))
	checkScore(t, "all caseload", s, Exact, 12.5, "{clients}")

	// Each specialist's counts are withheld, but for zeros (Sam Chen has no
	// first competitive job, so his G, B, R and R90 are 0); so is every
	// score that is not of nobody.
	for _, who := range []string{alex, sam} {
		for _, r := range rs {
			for _, g := range r.Groups {
				p, s := at(t, rs, r.Measure, g.Code, who)
				for _, c := range p {
					if c.State != Masked && (c.State != Exact || c.Value != 0 || who != sam) {
						t.Errorf("%s %s/%s: %s shown", who, r.Measure, g.Code, c.Population)
					}
				}
				if s.State != Masked && s.State != NoValue {
					t.Errorf("%s %s/%s: score %v", who, r.Measure, g.Code, s.State)
				}
			}
		}
	}
}

func TestComputeCountsOnlyConsentingActiveClients(t *testing.T) {
	cl := constructed()
	base := computeT(t, cl.Clients, q3, 1)
	d := func(rs []*Report) int {
		p, _ := at(t, rs, MeasureCompetitiveEmployment, GroupCompetitiveEmployment, "")
		return p[0].Value
	}
	if d(base) != 40 {
		t.Fatalf("served %d", d(base))
	}
	// The program default decides for clients who gave no answer.
	rs, err := Compute(cl.Clients, q3, Options{Program: program, Threshold: 1, SpecialistKey: testSpecialistKey, Date: producedAt, Audience: AudienceHIE, Consents: func(c *ips.Client) bool {
		return c.Consent != nil && c.Consent.HIE != nil && *c.Consent.HIE
	}})
	if err != nil {
		t.Fatal(err)
	}
	if got := d(rs); got != 1 { // a32 alone said yes
		t.Errorf("default no: served %d, want 1", got)
	}
	// The quarter before: a01–a12, b4–b6 were not enrolled yet, x1 was
	// still open, x2 not yet enrolled; a31 (closed 1 July) was active.
	if got := d(computeT(t, cl.Clients, q3.Add(-1), 1)); got != 40-12-3+1 {
		t.Errorf("2026Q2: served %d, want %d", got, 40-12-3+1)
	}
	// The quarter after: a31 closed in Q3 is gone; x2 enrolled on 1 October is in.
	if got := d(computeT(t, cl.Clients, q3.Add(1), 1)); got != 40-1+1 {
		t.Errorf("2026Q4: served %d, want %d", got, 40)
	}
}

func TestComputeErrors(t *testing.T) {
	cl := constructed()
	ok := Options{Program: program, Audience: AudienceHIE, Consents: hieDefaultYes, Date: producedAt}
	for _, tc := range []struct {
		name string
		o    Options
		q    Quarter
		want error
	}{
		{"no program", Options{Audience: AudienceHIE, Consents: hieDefaultYes, Date: producedAt}, q3, ErrNoProgram},
		{"bad program", Options{Program: "a b", Audience: AudienceHIE, Consents: hieDefaultYes, Date: producedAt}, q3, ErrNoProgram},
		{"no consent filter", Options{Program: program, Audience: AudienceHIE, Date: producedAt}, q3, ErrNoConsent},
		{"no audience", Options{Program: program, Consents: hieDefaultYes, Date: producedAt}, q3, ErrNoAudience},
		{"unknown audience", Options{Program: program, Audience: 7, Consents: hieDefaultYes, Date: producedAt}, q3, ErrNoAudience},
		{"negative threshold", Options{Program: program, Audience: AudienceHIE, Consents: hieDefaultYes, Threshold: -1, Date: producedAt}, q3, ErrBadThreshold},
		{"no date", Options{Program: program, Audience: AudienceHIE, Consents: hieDefaultYes}, q3, ErrNoDate},
		{"bad quarter", ok, Quarter{Year: 2026, Q: 5}, ErrBadQuarter},
	} {
		if _, err := Compute(cl.Clients, tc.q, tc.o); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	// Wages in two currencies cannot be added; the error names none.
	cl.Clients[20].Jobs[0].HourlyWage.Currency = "CAD"
	_, err := Compute(cl.Clients, q3, ok)
	if !errors.Is(err, ErrMixedCurrency) {
		t.Fatalf("mixed currencies: %v", err)
	}
	for _, c := range cl.Clients {
		if strings.Contains(err.Error(), c.Patient.Value) || strings.Contains(err.Error(), c.ID) {
			t.Errorf("error names a client: %v", err)
		}
	}
	// A job outside the quarter in another currency is not added, so fine.
	cl = constructed()
	cl.Clients[27].Jobs[0].HourlyWage.Currency = "CAD" // a28: starts in October
	if _, err := Compute(cl.Clients, q3, ok); err != nil {
		t.Errorf("a currency outside the quarter: %v", err)
	}
}

func TestComputeDoesNotChangeItsInput(t *testing.T) {
	cl := constructed()
	before := Table(computeT(t, cl.Clients, q3, 1))
	again := constructed()
	computeT(t, cl.Clients, q3, 0)
	if after := Table(computeT(t, cl.Clients, q3, 1)); after != before {
		t.Error("a second run differs")
	}
	for i := range cl.Clients {
		if cl.Clients[i].ID != again.Clients[i].ID || len(cl.Clients[i].Jobs) != len(again.Clients[i].Jobs) {
			t.Fatal("Compute changed the clients")
		}
	}
}

func TestSpecialistCode(t *testing.T) {
	code := func(key []byte, program, specialist string) string {
		t.Helper()
		c, err := SpecialistCode(key, program, specialist)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	a := code(testSpecialistKey, program, "Dana Whitfield")
	if len(a) != len("es-")+10 || !strings.HasPrefix(a, "es-") || strings.Contains(a, "Dana") {
		t.Errorf("code %q", a)
	}
	// The documented formula: HMAC-SHA256(key, program "\n" name), 10 hex digits.
	m := hmac.New(sha256.New, testSpecialistKey)
	m.Write([]byte(program + "\ndana whitfield"))
	if want := "es-" + hex.EncodeToString(m.Sum(nil))[:10]; a != want {
		t.Errorf("code %s, want %s", a, want)
	}
	// Without the key, the old unkeyed hash of the name gives nothing away.
	unkeyed := sha256.Sum256([]byte(program + "\ndana whitfield"))
	if a == "es-"+hex.EncodeToString(unkeyed[:5]) {
		t.Error("the code is the unkeyed SHA-256 of the name: anyone can recompute it")
	}
	if b := code(testSpecialistKey, program, "  dana   WHITFIELD "); b != a {
		t.Errorf("spacing and case change the code: %s, %s", a, b)
	}
	if b := code(testSpecialistKey, "other-program", "Dana Whitfield"); b == a {
		t.Error("codes are not scoped by program")
	}
	if code(testSpecialistKey, program, "Marcus Ortega") == a {
		t.Error("two specialists share a code")
	}
	// Another key: codes that cannot be linked to these.
	other := []byte("another-programs-specialist-key-987654321")
	if b := code(other, program, "Dana Whitfield"); b == a {
		t.Error("two keys give the same code")
	}
	if got := code(testSpecialistKey, program, " "); got != "unassigned" {
		t.Errorf("no specialist: %q", got)
	}
	for _, k := range [][]byte{nil, []byte("short"), testSpecialistKey[:MinSpecialistKeyBytes-1]} {
		if c, err := SpecialistCode(k, program, "Dana Whitfield"); !errors.Is(err, ErrSpecialistKey) || c != "" {
			t.Errorf("a %d-byte key: %q, %v", len(k), c, err)
		}
	}
}

// Stable across quarters: the same key gives a specialist the same code in
// every quarter's report; another key, other codes throughout.
func TestSpecialistCodesAcrossQuarters(t *testing.T) {
	cl := constructed()
	codes := func(q Quarter, key []byte) []string {
		rs, err := Compute(cl.Clients, q, Options{Program: program, Threshold: 1, Audience: AudienceHIE, Consents: hieDefaultYes, SpecialistKey: key, Date: producedAt})
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, st := range rs[0].Groups[0].Stratifier(StratifierSpecialist).Strata {
			out = append(out, st.Code)
		}
		return out
	}
	q2, q3codes := codes(q3.Add(-1), testSpecialistKey), codes(q3, testSpecialistKey)
	if len(q3codes) < 2 || !slices.Equal(q2, q3codes) {
		t.Errorf("2026Q2 codes %v, 2026Q3 codes %v: want the same", q2, q3codes)
	}
	other := codes(q3, []byte("another-programs-specialist-key-987654321"))
	for _, c := range other {
		if slices.Contains(q3codes, c) {
			t.Errorf("code %s under two keys", c)
		}
	}
}

// Without a specialist key the reports are not broken down by specialist
// (a code without a secret could be recomputed from staff names); the
// program's figures are computed and suppressed as before.
func TestComputeWithoutSpecialistKey(t *testing.T) {
	cl := constructed()
	for _, threshold := range []int{1, 11} {
		rs, err := Compute(cl.Clients, q3, Options{Program: program, Threshold: threshold, Audience: AudienceHIE, Consents: hieDefaultYes, Date: producedAt})
		if err != nil {
			t.Fatal(err)
		}
		keyed := computeT(t, cl.Clients, q3, threshold)
		for i, r := range rs {
			for gi, g := range r.Groups {
				if g.Stratifier(StratifierSpecialist) != nil {
					t.Errorf("threshold %d: %s/%s is broken down by specialist without a key", threshold, r.Measure, g.Code)
				}
				if s := g.Stratifier(StratifierProgram); s == nil || len(s.Strata) != 1 {
					t.Errorf("threshold %d: %s/%s has no program stratum", threshold, r.Measure, g.Code)
				}
				if threshold == 1 {
					checkCounts(t, r.Measure+"/"+g.Code, g.Populations, keyed[i].Groups[gi].Populations...)
				}
			}
		}
		b, err := BundleJSON(rs)
		if err != nil {
			t.Fatal(err)
		}
		validate(t, newValidator(t), "unstratified", b)
		for _, c := range cl.Clients {
			if c.Specialist != "" && strings.Contains(string(b), c.Specialist) {
				t.Errorf("the report names %s", c.Specialist)
			}
		}
	}
	p, _ := at(t, computeT(t, cl.Clients, q3, 1), MeasureCompetitiveEmployment, GroupCompetitiveEmployment, "")
	checkCounts(t, "keyed", p, exact(40), exact(40), exact(17))
	if _, err := Compute(cl.Clients, q3, Options{Program: program, Audience: AudienceHIE, Consents: hieDefaultYes, SpecialistKey: []byte("short"), Date: producedAt}); !errors.Is(err, ErrSpecialistKey) {
		t.Errorf("a short key: %v", err)
	}
}

// Unstratified reports protect the program's small counts too: the
// attacker of suppress_test.go, given the program as its only stratum,
// pins down none of them.
func TestComputeWithoutSpecialistKeyDisclosesNothing(t *testing.T) {
	check := func(name string, clients []*ips.Client, q Quarter, threshold int) int {
		t.Helper()
		rs, err := Compute(clients, q, Options{Program: program, Threshold: threshold, Audience: AudienceHIE, Consents: hieDefaultYes, Date: producedAt})
		if err != nil {
			t.Fatal(err)
		}
		pub := published{"": {}}
		for _, r := range rs {
			for _, g := range r.Groups {
				for _, c := range g.Populations {
					if qn, ok := attackSources[[3]string{r.Measure, g.Code, c.Population}]; ok && c.State == Exact {
						pub[""][qn] = float64(c.Value)
					}
				}
				if qn, ok := attackSources[[3]string{r.Measure, g.Code, "score"}]; ok && g.Score.State == Exact {
					pub[""][qn] = math.Round(g.Score.Value * 100)
				}
			}
		}
		pub["all"] = pub[""] // the one stratum is the program
		iv := attack(pub, []string{"all"})
		real := truth(t, clients, q)[""]
		hidden := 0
		for _, qn := range attackQuantities {
			v := real[qn]
			small := v >= 1 && v < float64(threshold)
			if qn == "EARN" {
				small = real["N1"] >= 1 && real["N1"] < float64(threshold)
			}
			_, shown := pub[""][qn]
			if !shown && len(qn) <= 2 {
				hidden++
			}
			if shown && small {
				t.Errorf("%s: %s is small (%v) and shown", name, qn, v)
			}
			if x := iv[[2]string{"", qn}]; small && !shown && x.hi-x.lo < 0.5 {
				t.Errorf("%s: %s (%v) is withheld but the shown counts pin it to [%v, %v]", name, qn, v, x.lo, x.hi)
			}
		}
		return hidden
	}
	// 45 served, 40 working: the 5 not working are protected.
	var cl []*ips.Client
	for i := range 45 {
		c := &ips.Client{ID: fmt.Sprintf("c%02d", i), EnrolledOn: d("2025-01-01"), Specialist: "Alex Rivera"}
		if i < 40 {
			c.Jobs = []*ips.Job{{Start: d("2025-06-01"), Competitive: true, HoursPerWeek: 25, HourlyWage: ips.Money{Value: 16, Currency: "USD"}}}
		}
		cl = append(cl, c)
	}
	if n := check("40 of 45 working", cl, q3, DefaultThreshold); n == 0 {
		t.Error("nothing withheld: 45 served and 40 working reveal the 5 not working")
	}
	for seed := range uint64(4) {
		n := 40 + int(seed)*37
		syn := synth.Generate(rand.New(rand.NewPCG(seed, 7)), n)
		for _, th := range []int{5, DefaultThreshold} {
			check(fmt.Sprintf("seed %d, %d clients, threshold %d", seed, n, th), syn.Clients, q3, th)
		}
	}
}

func TestQuarter(t *testing.T) {
	for _, s := range []string{"2026Q3", "2026q3", "2026-Q3"} {
		q, err := ParseQuarter(s)
		if err != nil || q != q3 {
			t.Errorf("ParseQuarter(%q) = %v, %v", s, q, err)
		}
	}
	for _, s := range []string{"", "2026Q5", "2026Q0", "26Q3", "2026 Q3", "Q3 2026", "0000Q1"} {
		if _, err := ParseQuarter(s); err == nil {
			t.Errorf("ParseQuarter(%q) accepted", s)
		}
	}
	if q3.String() != "2026Q3" || q3.Start() != d("2026-07-01") || q3.End() != d("2026-09-30") {
		t.Errorf("%s: %s to %s", q3, q3.Start(), q3.End())
	}
	q1 := Quarter{Year: 2026, Q: 1}
	if q1.End() != d("2026-03-31") || q1.Add(-1) != (Quarter{Year: 2025, Q: 4}) || q1.Add(-5) != (Quarter{Year: 2024, Q: 4}) || q1.Add(7) != (Quarter{Year: 2027, Q: 4}) {
		t.Errorf("quarter arithmetic: %s %s %s %s", q1.End(), q1.Add(-1), q1.Add(-5), q1.Add(7))
	}
	if !q3.Contains(d("2026-07-01")) || !q3.Contains(d("2026-09-30")) || q3.Contains(d("2026-06-30")) || q3.Contains(d("2026-10-01")) || q3.Contains(ips.Date{}) {
		t.Error("Contains")
	}
	if QuarterOf(d("2026-12-31")) != (Quarter{Year: 2026, Q: 4}) || !q1.Before(q3) || q3.Before(q1) {
		t.Error("QuarterOf or Before")
	}
}

func TestComputeNobody(t *testing.T) {
	rs := computeT(t, nil, q3, 0)
	p, s := at(t, rs, MeasureCompetitiveEmployment, GroupCompetitiveEmployment, "")
	checkCounts(t, "nobody", p, exact(0), exact(0), exact(0))
	checkScore(t, "nobody", s, NoValue, 0, "")
	_, s = at(t, rs, MeasureEarnings, GroupMedianHourlyWage, "")
	checkScore(t, "nobody's wage", s, NoValue, 0, "")
	b, err := BundleJSON(rs)
	if err != nil {
		t.Fatal(err)
	}
	validate(t, newValidator(t), "nobody", b)
	if !strings.Contains(string(b), `"not-applicable"`) {
		t.Error("an empty rate is not marked not-applicable")
	}
}

// TestTableNotForRelease: a table suppressed below the release threshold
// says NOT FOR RELEASE on its first and last lines; at 11 it does not.
func TestTableNotForRelease(t *testing.T) {
	cl := constructed()
	for _, tc := range []struct {
		threshold int
		mark      string
	}{
		{5, "NOT FOR RELEASE (threshold 5): counts of 5 to 10 are shown"},
		{1, "NOT FOR RELEASE (threshold 1): counts of 1 to 10 are shown"},
		{10, "NOT FOR RELEASE (threshold 10): counts of 10 are shown"},
		{11, ""},
		{20, ""},
	} {
		lines := strings.Split(strings.TrimSuffix(Table(computeT(t, cl.Clients, q3, tc.threshold)), "\n"), "\n")
		first, last := lines[0], lines[len(lines)-1]
		if tc.mark == "" {
			if strings.Contains(strings.Join(lines, "\n"), "NOT FOR RELEASE") {
				t.Errorf("threshold %d: marked not for release", tc.threshold)
			}
			continue
		}
		if !strings.HasPrefix(first, tc.mark) || !strings.HasPrefix(last, tc.mark) {
			t.Errorf("threshold %d: first line %q, last line %q; want both to start %q", tc.threshold, first, last, tc.mark)
		}
	}
}

// TestRapidSearchCountsFaceToFaceContactsOnTheClientsBehalf: the first
// employer contact is the first face-to-face contact with an employer on
// the client's behalf (fidelity item SV4), whether recorded as an
// employer-contact or a job-development support; a phone call, or a
// contact on the program's own behalf, is not one.
func TestRapidSearchCountsFaceToFaceContactsOnTheClientsBehalf(t *testing.T) {
	faceToFace := &ips.Contact{Mode: ips.ContactFaceToFace, OnBehalfOf: ips.ContactForClient}
	phone := &ips.Contact{Mode: ips.ContactPhone, OnBehalfOf: ips.ContactForClient}
	forProgram := &ips.Contact{Mode: ips.ContactFaceToFace, OnBehalfOf: ips.ContactForProgram}
	support := func(id string, typ ips.SupportType, date string, c *ips.Contact) *ips.Support {
		return &ips.Support{ID: id, Type: typ, Status: ips.SupportCompleted, Date: d(date), Contact: c}
	}
	var cs []*ips.Client
	for i, ss := range [][]*ips.Support{
		// Job development, face to face for the client, on day 10: counts.
		{support("s1", ips.SupportJobDevelopment, "2026-07-11", faceToFace)},
		// A phone call on day 5, face to face on day 40: the latter, late.
		{support("s1", ips.SupportEmployerContact, "2026-07-06", phone), support("s2", ips.SupportEmployerContact, "2026-08-10", faceToFace)},
		// The program's own visit on day 3: not this client's contact.
		{support("s1", ips.SupportEmployerContact, "2026-07-04", forProgram)},
		// An employer contact with no contact recorded, day 20: counts,
		// as before the mode was recorded.
		{support("s1", ips.SupportEmployerContact, "2026-07-21", nil)},
		// Job development with no contact recorded: not a contact.
		{support("s1", ips.SupportJobDevelopment, "2026-07-08", nil)},
	} {
		c := client(fmt.Sprintf("r%02d", i+1), alex, "2026-07-01")
		c.Supports = ss
		cs = append(cs, c)
	}
	rs := computeT(t, cs, q3, 1)
	p, _ := at(t, rs, MeasureEmployerContact30d, GroupEmployerContact30d, "")
	// E 5 enrolled; W 2 within 30 days (r01 on day 10, r04 on day 20).
	checkCounts(t, "contact within 30 days", p, exact(5), exact(5), exact(2))
	p, s := at(t, rs, MeasureDaysToEmployerContact, GroupMedianDaysToContact, "")
	// C 3 contacted at all (r01 day 10, r02 day 40, r04 day 20): median 20.
	checkCounts(t, "days to contact", p, exact(5), exact(3))
	checkScore(t, "days to contact", s, Exact, 20, "d")
}
