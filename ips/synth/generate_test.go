package synth

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"regexp"
	"slices"
	"sort"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ipsfhir/ipsfhir/ips"
)

func newRand(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, 0)) }

// roundTrip encodes cl and decodes the result, as a program writing a
// caseload file and reading it back would.
func roundTrip(t *testing.T, cl *ips.Caseload) *ips.Caseload {
	t.Helper()
	var buf bytes.Buffer
	if err := ips.Encode(&buf, cl); err != nil {
		t.Fatalf("Encode: %v", err)
	}
	got, err := ips.Decode(&buf)
	if err != nil {
		t.Fatalf("Decode of the encoded caseload: %v", err)
	}
	return got
}

func TestGenerateIsValidAndSurvivesTheFileFormat(t *testing.T) {
	for _, n := range []int{0, 1, 2, 3, 4, 7, 15, 40} {
		for seed := range uint64(30) {
			for _, every := range []bool{false, true} {
				if every && n < 4 {
					continue
				}
				t.Run(fmt.Sprintf("n=%d/seed=%d/every=%v", n, seed, every), func(t *testing.T) {
					cl := GenerateWithOptions(newRand(seed), n, Options{EveryValue: every})
					if len(cl.Clients) != n {
						t.Fatalf("got %d clients, want %d", len(cl.Clients), n)
					}
					if err := ips.Validate(cl); err != nil {
						t.Fatalf("Validate: %v", err)
					}
					got := roundTrip(t, cl)
					// Exactly equal, not only equal once normalized: the
					// generator emits nothing the file format would change.
					if diff := cmp.Diff(cl, got); diff != "" {
						t.Errorf("Encode then Decode changed the caseload (-generated +decoded):\n%s", diff)
					}
					if diff := cmp.Diff(ips.Normalize(cl), ips.Normalize(got)); diff != "" {
						t.Errorf("normalized caseloads differ (-generated +decoded):\n%s", diff)
					}
					checkInvariants(t, cl, DefaultAsOf)
				})
			}
		}
	}
}

func TestGenerateIsDeterministic(t *testing.T) {
	encode := func(cl *ips.Caseload) string {
		var buf bytes.Buffer
		if err := ips.Encode(&buf, cl); err != nil {
			t.Fatal(err)
		}
		return buf.String()
	}
	a := encode(Generate(newRand(7), 30))
	b := encode(Generate(newRand(7), 30))
	if a != b {
		t.Error("the same seed gave two different caseloads")
	}
	if c := encode(Generate(newRand(8), 30)); a == c {
		t.Error("two seeds gave the same caseload")
	}
}

func TestGenerateWithAsOf(t *testing.T) {
	asOf := ips.MustDate("2025-03-31")
	for seed := range uint64(20) {
		cl := GenerateWithOptions(newRand(seed), 40, Options{AsOf: asOf, EveryValue: true})
		if err := ips.Validate(cl); err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		checkInvariants(t, cl, asOf)
	}
}

func TestEveryValueNeedsOneClientPerClientStatus(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("EveryValue with 3 clients did not panic")
		}
	}()
	GenerateWithOptions(newRand(1), 3, Options{EveryValue: true})
}

func TestEveryValueCoversEveryEnumeration(t *testing.T) {
	for _, n := range []int{4, 5, 8, 30} {
		for seed := range uint64(50) {
			cl := GenerateWithOptions(newRand(seed), n, Options{EveryValue: true})
			if missing := CoverageGaps(cl); len(missing) > 0 {
				t.Errorf("n=%d seed=%d: missing %v", n, seed, missing)
			}
		}
	}
}

var (
	mrnRE      = regexp.MustCompile(`^MRN[0-9]{7}$`)
	idRE       = regexp.MustCompile(`^[A-Za-z0-9\-.]{1,64}$`)
	codeSystem = map[string]bool{systemCensusOccupation: true, systemCensusIndustry: true, systemODH: true}
)

// checkInvariants checks the rules every generated caseload keeps, beyond
// validity: the course of each client hangs together in time the way an IPS
// record does.
func checkInvariants(t *testing.T, cl *ips.Caseload, asOf ips.Date) {
	t.Helper()
	mrns := map[string]bool{}
	for _, c := range cl.Clients {
		errorf := func(format string, args ...any) {
			t.Helper()
			t.Errorf("client %s: %s", c.ID, fmt.Sprintf(format, args...))
		}
		if c.Patient.System != PatientSystem || !mrnRE.MatchString(c.Patient.Value) {
			errorf("patient identifier %q|%q is not a synthetic MRN", c.Patient.System, c.Patient.Value)
		}
		if mrns[c.Patient.Value] {
			errorf("MRN used twice")
		}
		mrns[c.Patient.Value] = true
		e := c.EnrolledOn
		if e.Before(asOf.AddDays(-1000)) || !e.Before(asOf) {
			errorf("enrolled on %s, outside the 1000 days before %s", e, asOf)
		}
		if !c.ReferredOn.IsZero() && e.Before(c.ReferredOn) {
			errorf("enrolled before referral")
		}
		st := c.EffectiveStatus()
		if (st == ips.ClientClosed) != !c.ClosedOn.IsZero() {
			errorf("status %s with closedOn %q", st, c.ClosedOn)
		}
		if c.Status == "" && st != ips.ClientActive && st != ips.ClientClosed {
			errorf("status left to default but means %s", st)
		}
		last := asOf
		if st == ips.ClientClosed {
			last = c.ClosedOn
			if asOf.Before(last) {
				errorf("closed after the as-of day")
			}
		}
		for _, g := range c.Goals {
			if !idRE.MatchString(g.ID) || g.Description == "" {
				errorf("goal %q malformed", g.ID)
			}
			if g.Start.Before(e) || last.Before(g.Start) {
				errorf("goal %s starts %s, outside the enrollment %s..%s", g.ID, g.Start, e, last)
			}
			if !goalStatusFits(st, g.Status) {
				errorf("goal %s is %s while the client is %s", g.ID, g.Status, st)
			}
			if !achievementFits(g.Status, g.Achievement) {
				errorf("goal %s is %s with achievement %q", g.ID, g.Status, g.Achievement)
			}
			for _, n := range g.Notes {
				if !n.Date.IsZero() && (n.Date.Before(g.Start) || asOf.Before(n.Date)) {
					errorf("goal %s has a note dated %s", g.ID, n.Date)
				}
			}
		}
		for _, s := range c.Supports {
			if s.Date.Before(e) {
				errorf("support %s dated %s, before enrollment", s.ID, s.Date)
			}
			switch s.Status {
			case ips.SupportPlanned:
				if !asOf.Before(s.Date) || st == ips.ClientClosed {
					errorf("support %s planned on %s (as of %s, client %s)", s.ID, s.Date, asOf, st)
				}
			case ips.SupportInProgress:
				if st != ips.ClientActive || asOf.Before(s.Date) {
					errorf("support %s in progress on %s for a client who is %s", s.ID, s.Date, st)
				}
			case ips.SupportCompleted:
				if last.Before(s.Date) {
					errorf("support %s completed on %s, after %s", s.ID, s.Date, last)
				}
			case ips.SupportCancelled:
				if asOf.Before(s.Date) && st == ips.ClientClosed {
					errorf("support %s cancelled in the future of a closed file", s.ID)
				}
			}
			if s.Goal != "" {
				g := c.Goal(s.Goal)
				if g == nil || g.Status == ips.GoalEnteredInError || g.Status == ips.GoalRejected {
					errorf("support %s serves goal %q, which is missing, in error or rejected", s.ID, s.Goal)
				} else if s.Date.Before(g.Start) {
					errorf("support %s predates the goal it serves", s.ID)
				}
			}
			if s.Type == ips.SupportFollowAlongOnJob && s.Status != ips.SupportPlanned && s.Status != ips.SupportCancelled &&
				!slices.ContainsFunc(c.Jobs, func(j *ips.Job) bool { return j.Overlaps(s.Date, s.Date) }) {
				errorf("follow-along on the job on %s, when no job was held", s.Date)
			}
		}
		working := false
		for _, j := range c.Jobs {
			if last.Before(j.Start) || (!j.End.IsZero() && (j.End.Before(j.Start) || last.Before(j.End))) {
				errorf("job %s held %s..%s, outside what the file covers (to %s)", j.ID, j.Start, j.End, last)
			}
			if j.Start.Before(e) && !j.Overlaps(e, e) {
				errorf("job %s ended before enrollment; only a job held at referral predates it", j.ID)
			}
			if j.EndReason != "" && j.Current() {
				errorf("job %s has an end reason but no end", j.ID)
			}
			if j.HoursPerWeek < 8 || j.HoursPerWeek > 40 {
				errorf("job %s: %v hours a week", j.ID, j.HoursPerWeek)
			}
			if j.DaysPerWeek != 0 && (j.DaysPerWeek > 7 || j.HoursPerWeek/float64(j.DaysPerWeek) > 12) {
				errorf("job %s: %v hours over %d days", j.ID, j.HoursPerWeek, j.DaysPerWeek)
			}
			w := j.HourlyWage
			if w.Currency != "USD" || w.Value < 9 || w.Value > 28 || (j.Competitive && w.Value < 12.5) {
				errorf("job %s pays %v %s an hour (competitive: %v)", j.ID, w.Value, w.Currency, j.Competitive)
			}
			if j.Disclosed != nil && ((c.Disclosure == ips.DisclosureNone && *j.Disclosed) || (c.Disclosure == ips.DisclosureFull && !*j.Disclosed)) {
				errorf("job %s disclosed=%v against the client's choice %s", j.ID, *j.Disclosed, c.Disclosure)
			}
			for _, cd := range []*ips.Coding{j.Occupation, j.Industry} {
				if cd != nil && (!codeSystem[cd.System] || cd.Code == "" || cd.Display == "") {
					errorf("job %s coded %+v", j.ID, *cd)
				}
			}
			working = working || j.Current()
		}
		// Follow-along supports are time-unlimited: someone working now
		// is being supported now.
		if st == ips.ClientActive && working && !slices.ContainsFunc(c.Supports, func(s *ips.Support) bool {
			return s.Type == ips.SupportFollowAlongOnJob && s.Status == ips.SupportInProgress
		}) {
			errorf("works now but has no follow-along in progress")
		}
		for k, snap := range c.Employment {
			if k == 0 && snap.Date != e {
				errorf("first employment status on %s, not at enrollment", snap.Date)
			}
			if k > 0 && !c.Employment[k-1].Date.Before(snap.Date) {
				errorf("employment statuses out of order")
			}
			if k > 0 && c.Employment[k-1].Status == snap.Status {
				errorf("employment status %s repeated on %s", snap.Status, snap.Date)
			}
			if last.Before(snap.Date) {
				errorf("employment status dated %s, after %s", snap.Date, last)
			}
			held := slices.ContainsFunc(c.Jobs, func(j *ips.Job) bool { return j.Overlaps(snap.Date, snap.Date) })
			if held != (snap.Status == ips.Employed) {
				errorf("employment status %s on %s, but holding a job that day: %v", snap.Status, snap.Date, held)
			}
		}
	}
}

// TestSampleIsConsistent: the published sample tells a consistent story.
func TestSampleIsConsistent(t *testing.T) {
	checkInvariants(t, GenerateSample(), DefaultAsOf)
}

// TestGenerateLooksLikeIPS checks a large caseload against what IPS programs
// report, so tests built on generated data see realistic proportions.
func TestGenerateLooksLikeIPS(t *testing.T) {
	cl := Generate(newRand(2024), 3000)
	checkInvariants(t, cl, DefaultAsOf)

	inRange := func(what string, got, lo, hi float64) {
		t.Helper()
		t.Logf("%s = %.3f", what, got)
		if got < lo || got > hi {
			t.Errorf("%s = %.3f, want within [%.2f, %.2f]", what, got, lo, hi)
		}
	}
	var (
		clients, engagedMonth, rapid     int
		jobs, competitive, twenty, ended int
		endedWithReason, withJobs, multi int
		longEnrolled, longEmployed       int
		byYear                           = map[int]int{}
		status                           = map[ips.ClientStatus]int{}
		firstJobDays                     []int
		descriptions                     = map[string]bool{}
	)
	for _, c := range cl.Clients {
		clients++
		st := c.EffectiveStatus()
		status[st]++
		byYear[c.EnrolledOn.Year]++
		for _, g := range c.Goals {
			descriptions[g.Description] = true
		}
		last := DefaultAsOf
		if st == ips.ClientClosed {
			last = c.ClosedOn
		}
		// Rapid job search: contact with employers within 30 days.
		if st != ips.ClientReferred && days(c.EnrolledOn, last) >= 30 && !slices.ContainsFunc(c.Jobs, func(j *ips.Job) bool { return j.Start.Before(c.EnrolledOn) }) {
			engagedMonth++
			if slices.ContainsFunc(c.Supports, func(s *ips.Support) bool {
				return (s.Type == ips.SupportEmployerContact || s.Type == ips.SupportJobDevelopment) && days(c.EnrolledOn, s.Date) <= 30
			}) {
				rapid++
			}
		}
		if len(c.Jobs) > 0 {
			withJobs++
		}
		if len(c.Jobs) > 1 {
			multi++
		}
		if st != ips.ClientReferred && days(c.EnrolledOn, last) >= 365 {
			longEnrolled++
			if slices.ContainsFunc(c.Jobs, func(j *ips.Job) bool { return j.Competitive && j.Overlaps(c.EnrolledOn, last) }) {
				longEmployed++
			}
		}
		first := -1
		for _, j := range c.Jobs {
			jobs++
			if j.Competitive {
				competitive++
			}
			if j.HoursPerWeek >= 20 {
				twenty++
			}
			if !j.Current() {
				ended++
				if j.EndReason != "" {
					endedWithReason++
				}
			}
			if !j.Start.Before(c.EnrolledOn) && (first < 0 || days(c.EnrolledOn, j.Start) < first) {
				first = days(c.EnrolledOn, j.Start)
			}
		}
		if first >= 0 {
			firstJobDays = append(firstJobDays, first)
		}
	}
	for _, y := range []int{2024, 2025, 2026} {
		inRange(fmt.Sprintf("share enrolled in %d", y), float64(byYear[y])/float64(clients), 0.2, 0.45)
	}
	inRange("share enrolled in 2024-2026", float64(byYear[2024]+byYear[2025]+byYear[2026])/float64(clients), 1, 1)
	inRange("share active", float64(status[ips.ClientActive])/float64(clients), 0.45, 0.7)
	for _, st := range clientStatuses {
		inRange("share "+string(st), float64(status[st])/float64(clients), 0.04, 0.7)
	}
	inRange("rapid search: employer contact within 30 days", float64(rapid)/float64(engagedMonth), 0.85, 0.95)
	inRange("competitive share of jobs", float64(competitive)/float64(jobs), 0.85, 0.97)
	inRange("share of jobs at 20+ hours a week", float64(twenty)/float64(jobs), 0.55, 0.75)
	inRange("share of jobs ended", float64(ended)/float64(jobs), 0.3, 0.75)
	inRange("share of ended jobs with a reason", float64(endedWithReason)/float64(ended), 0.85, 0.97)
	inRange("share of working clients with several jobs", float64(multi)/float64(withJobs), 0.1, 0.45)
	// IPS trials: about 60% competitively employed over 18-24 months.
	inRange("share of clients enrolled a year or more who worked competitively", float64(longEmployed)/float64(longEnrolled), 0.45, 0.8)
	sort.Ints(firstJobDays)
	inRange("median days from enrollment to first job", float64(firstJobDays[len(firstJobDays)/2]), 60, 130)
	inRange("distinct goal descriptions", float64(len(descriptions)), 40, 1000)
}

// TestGenerateExercisesOptionalFields makes sure each optional field is both
// present and absent in a generated caseload, so code reading them meets both.
func TestGenerateExercisesOptionalFields(t *testing.T) {
	cl := Generate(newRand(99), 400)
	count := map[string][2]int{} // field -> [absent, present]
	note := func(field string, present bool) {
		c := count[field]
		if present {
			c[1]++
		} else {
			c[0]++
		}
		count[field] = c
	}
	for _, c := range cl.Clients {
		note("client.referredOn", !c.ReferredOn.IsZero())
		note("client.closedOn", !c.ClosedOn.IsZero())
		note("client.status", c.Status != "")
		note("client.specialist", c.Specialist != "")
		note("client.consent", c.Consent != nil)
		if c.Consent != nil {
			note("client.consent.ehr", c.Consent.EHR != nil)
			note("client.consent.hie", c.Consent.HIE != nil)
		}
		note("client.disclosure", c.Disclosure != "")
		note("client.preferences", c.Preferences != nil)
		if p := c.Preferences; p != nil {
			note("preferences.jobTypes", len(p.JobTypes) > 1) // one is always there
			note("preferences.hoursPerWeek", p.HoursPerWeek != nil)
			note("preferences.schedule", p.Schedule != "")
			note("preferences.location", p.Location != "")
		}
		note("client.goals", len(c.Goals) > 0)
		note("client.supports", len(c.Supports) > 0)
		note("client.jobs", len(c.Jobs) > 0)
		note("client.employmentStatus", len(c.Employment) > 0)
		for _, g := range c.Goals {
			note("goal.achievement", g.Achievement != "")
			note("goal.targetHoursPerWeek", g.TargetHoursPerWeek != nil)
			note("goal.due", !g.Due.IsZero())
			note("goal.notes", len(g.Notes) > 0)
			for _, n := range g.Notes {
				note("note.date", !n.Date.IsZero())
			}
		}
		for _, s := range c.Supports {
			note("support.goal", s.Goal != "")
			note("support.note", s.Note != "")
		}
		for _, j := range c.Jobs {
			note("job.occupation", j.Occupation != nil)
			note("job.industry", j.Industry != nil)
			note("job.end", !j.End.IsZero())
			if !j.End.IsZero() {
				note("job.endReason", j.EndReason != "")
			}
			note("job.daysPerWeek", j.DaysPerWeek != 0)
			note("job.disclosed", j.Disclosed != nil)
			note("job.competitive", j.Competitive)
		}
	}
	for field, c := range count {
		if c[0] == 0 || c[1] == 0 {
			t.Errorf("%s: absent %d times, present %d times; want both", field, c[0], c[1])
		}
	}
	if len(count) < 30 {
		t.Errorf("only %d fields counted", len(count))
	}

	programs := map[string]bool{}
	for seed := range uint64(40) {
		p := Generate(newRand(seed), 1).Program
		switch {
		case p == nil:
			programs["none"] = true
		case p.Name == "":
			programs["id only"] = true
		default:
			programs["id and name"] = true
		}
	}
	if len(programs) != 3 {
		t.Errorf("caseload program forms seen: %v, want none, id only, id and name", programs)
	}
}
