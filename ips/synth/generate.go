package synth

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ipsfhir/ipsfhir/ips"
)

// PatientSystem is the identifier system of generated patients, a made-up OID
// so that no generated identifier passes for a real EHR's.
const PatientSystem = "urn:oid:2.16.840.1.113883.3.9999.1"

// DefaultAsOf is the day generated caseloads are a snapshot of, a quarter end.
// Enrollments then spread from early 2024 to late September 2026. Treat it as
// a constant.
var DefaultAsOf = ips.Date{Year: 2026, Month: time.September, Day: 30}

// RiversideProgram returns the fictional program of the sample caseload.
func RiversideProgram() *ips.Program {
	return &ips.Program{ID: "riverside-ips", Name: "Riverside Community Mental Health IPS Program"}
}

// The sample caseload is GenerateSample's: SampleClients clients from a
// generator seeded rand.NewPCG(SampleSeed, SampleSeed), every value used.
const (
	SampleSeed    = 135
	SampleClients = 30
)

// GenerateSample returns the caseload checked in as
// testdata/caseload-sample.json (see Sample), built afresh.
func GenerateSample() *ips.Caseload {
	cl := GenerateWithOptions(rand.New(rand.NewPCG(SampleSeed, SampleSeed)), SampleClients, Options{EveryValue: true})
	cl.Program = RiversideProgram()
	return cl
}

// Options tune GenerateWithOptions. The zero value is what Generate uses.
type Options struct {
	// AsOf is the day the caseload is a snapshot of: only planned supports,
	// the cancelled ones they became, and goal due dates lie after it. Zero
	// means DefaultAsOf.
	AsOf ips.Date

	// EveryValue makes the caseload use every value of every enumeration in
	// the model: client, goal, achievement, support and employment statuses,
	// support types, job end reasons and disclosure choices. It also makes
	// sure at least two clients held several jobs. It needs n >= 4, one
	// client per client status.
	EveryValue bool
}

// Generate returns a valid synthetic caseload of n clients. The same r state
// gives the same caseload.
func Generate(r *rand.Rand, n int) *ips.Caseload { return GenerateWithOptions(r, n, Options{}) }

// GenerateWithOptions is Generate with knobs.
func GenerateWithOptions(r *rand.Rand, n int, o Options) *ips.Caseload {
	if n < 0 {
		panic("synth: negative number of clients")
	}
	if o.EveryValue && n < len(clientStatuses) {
		panic(fmt.Sprintf("synth: EveryValue needs at least %d clients, got %d", len(clientStatuses), n))
	}
	g := &gen{r: r, asOf: o.AsOf, mrns: map[string]bool{}}
	if g.asOf.IsZero() {
		g.asOf = DefaultAsOf
	}
	// About one specialist per 18 clients: IPS caseloads stay at 20 or fewer.
	g.specialists = specialistNames[:min(len(specialistNames), max(1, (n+17)/18))]

	// Clients is required, so an empty caseload is [] rather than null.
	cl := &ips.Caseload{Program: g.program(), Clients: make([]*ips.Client, 0, n)}
	stories := make([]*story, n)
	for i := range stories {
		st := g.clientStatus()
		if o.EveryValue && i < len(clientStatuses) {
			st = clientStatuses[i]
		}
		stories[i] = g.client(st)
	}
	if o.EveryValue {
		g.coverEveryValue(stories)
	}
	// Ids follow enrollment order, as a program numbering its clients would.
	slices.SortStableFunc(stories, func(a, b *story) int { return a.c.EnrolledOn.Compare(b.c.EnrolledOn) })
	width := max(3, len(strconv.Itoa(n)))
	for i, s := range stories {
		s.c.ID = fmt.Sprintf("c%0*d", width, i+1)
		s.finish()
		cl.Clients = append(cl.Clients, s.c)
	}
	return cl
}

var clientStatuses = []ips.ClientStatus{ips.ClientActive, ips.ClientClosed, ips.ClientOnHold, ips.ClientReferred}

type gen struct {
	r           *rand.Rand
	asOf        ips.Date
	mrns        map[string]bool
	specialists []string
}

// story is a client being generated, with what the model does not record but
// the rest of the generation depends on.
type story struct {
	c      *ips.Client
	status ips.ClientStatus // effective status; c.Status may be left to default
	kind   *jobKind         // the work the client wants
	// last is the last day the program worked with the client: the as-of
	// day, the day a hold began, or the closing day.
	last    ips.Date
	asOf    ips.Date
	nilf    bool // not in the labor force at enrollment
	records bool // the program records employment status snapshots
	links   map[*ips.Support]*ips.Goal
	primary *ips.Goal
}

func (g *gen) chance(p float64) bool { return g.r.Float64() < p }

// between returns a uniform integer in [lo, hi].
func (g *gen) between(lo, hi int) int {
	if hi <= lo {
		return lo
	}
	return lo + g.r.IntN(hi-lo+1)
}

func pick[T any](g *gen, xs []T) T { return xs[g.r.IntN(len(xs))] }

// weighted picks xs[i] with probability proportional to ws[i].
func weighted[T any](g *gen, xs []T, ws []int) T {
	total := 0
	for _, w := range ws {
		total += w
	}
	n := g.r.IntN(total)
	for i, w := range ws {
		if n < w {
			return xs[i]
		}
		n -= w
	}
	return xs[len(xs)-1]
}

func days(from, to ips.Date) int { return int(to.Time().Sub(from.Time()).Hours() / 24) }

func minDate(a, b ips.Date) ips.Date {
	if a.Before(b) {
		return a
	}
	return b
}

func ptr[T any](v T) *T { return &v }

func (g *gen) program() *ips.Program {
	switch n := g.r.IntN(8); {
	case n == 0:
		return nil
	case n == 1:
		return &ips.Program{ID: "riverside-ips"}
	default:
		return RiversideProgram()
	}
}

func (g *gen) clientStatus() ips.ClientStatus {
	return weighted(g, clientStatuses, []int{58, 22, 8, 12})
}

func (g *gen) mrn() string {
	for {
		v := "MRN" + strconv.Itoa(g.between(1000000, 9999999))
		if !g.mrns[v] {
			g.mrns[v] = true
			return v
		}
	}
}

func (g *gen) client(st ips.ClientStatus) *story {
	c := &ips.Client{Patient: ips.Identifier{System: PatientSystem, Value: g.mrn()}}
	s := &story{c: c, status: st, asOf: g.asOf, last: g.asOf, links: map[*ips.Support]*ips.Goal{}}
	switch st {
	case ips.ClientReferred:
		c.EnrolledOn = g.asOf.AddDays(-g.between(1, 21))
	case ips.ClientActive:
		c.EnrolledOn = g.asOf.AddDays(-g.between(7, 1000))
	case ips.ClientOnHold:
		c.EnrolledOn = g.asOf.AddDays(-g.between(60, 1000))
		s.last = c.EnrolledOn.AddDays(g.between(30, days(c.EnrolledOn, g.asOf)-7))
	case ips.ClientClosed:
		c.EnrolledOn = g.asOf.AddDays(-g.between(90, 1000))
		c.ClosedOn = c.EnrolledOn.AddDays(g.between(60, days(c.EnrolledOn, g.asOf)-14))
		s.last = c.ClosedOn
	}
	// Status may be left out where the format's default gives the same.
	c.Status = st
	if (st == ips.ClientClosed && g.chance(0.25)) || (st == ips.ClientActive && g.chance(0.3)) {
		c.Status = ""
	}
	if g.chance(0.8) {
		c.ReferredOn = c.EnrolledOn.AddDays(-g.between(0, 30))
	}
	if g.chance(0.9) {
		c.Specialist = pick(g, g.specialists)
	}
	if g.chance(0.7) {
		c.Consent = &ips.Consent{}
		if g.chance(0.8) {
			c.Consent.EHR = ptr(g.chance(0.85))
		}
		if g.chance(0.6) {
			c.Consent.HIE = ptr(g.chance(0.6))
		}
	}
	if g.chance(0.75) {
		c.Disclosure = weighted(g, disclosures, []int{20, 30, 25, 25})
	}
	s.kind = pick(g, competitiveKinds)
	if g.chance(0.75) {
		g.preferences(s)
	}
	s.nilf = g.chance(0.2)
	s.records = g.chance(0.85)
	if st == ips.ClientReferred {
		g.referred(s)
	} else {
		g.engaged(s)
	}
	return s
}

var disclosures = []ips.Disclosure{ips.DisclosureNone, ips.DisclosurePartial, ips.DisclosureFull, ips.DisclosureUndecided}

func (g *gen) preferences(s *story) {
	p := &ips.WorkPreferences{JobTypes: []string{s.kind.pref}}
	if g.chance(0.5) {
		if other := pick(g, competitiveKinds).pref; other != s.kind.pref {
			p.JobTypes = append(p.JobTypes, other)
		}
	}
	if g.chance(0.6) {
		p.HoursPerWeek = ptr(pick(g, []float64{10, 15, 20, 20, 25, 30, 40}))
	}
	if g.chance(0.5) {
		p.Schedule = pick(g, schedules)
	}
	if g.chance(0.5) {
		p.Location = pick(g, locations)
	}
	s.c.Preferences = p
}

// referred: on the caseload, not yet engaged. The career profile is booked.
func (g *gen) referred(s *story) {
	c := s.c
	span := days(c.EnrolledOn, g.asOf)
	var goal *ips.Goal
	if g.chance(0.55) {
		goal = g.newGoal(s, g.goalWords(s), c.EnrolledOn.AddDays(g.between(0, span)))
		goal.Status = weighted(g, []ips.GoalStatus{ips.GoalProposed, ips.GoalPlanned, ips.GoalAccepted}, []int{70, 15, 15})
	}
	if g.chance(0.9) {
		g.support(s, ips.SupportCareerProfile, ips.SupportPlanned, g.asOf.AddDays(g.between(1, 10)), goal)
	}
	if g.chance(0.4) {
		g.support(s, ips.SupportBenefitsPlanning, ips.SupportPlanned, g.asOf.AddDays(g.between(3, 21)), goal)
	}
	if g.chance(0.3) {
		g.support(s, ips.SupportTeamMeeting, ips.SupportCompleted, c.EnrolledOn.AddDays(g.between(0, span)), nil)
	}
}

// engaged: active, on hold or closed; the full IPS course up to s.last.
func (g *gen) engaged(s *story) {
	c := s.c
	e, last := c.EnrolledOn, s.last
	span := days(e, last)
	st := s.status

	// The career profile starts at the first meeting, and the first goal with it.
	profile := e.AddDays(g.between(0, min(10, span)))
	if g.chance(0.92) {
		s.primary = g.newGoal(s, g.goalWords(s), profile)
	}
	g.support(s, ips.SupportCareerProfile, g.doneOrGoing(s, profile, 14), profile, s.primary)

	if g.chance(0.6) {
		d := e.AddDays(g.between(3, 45))
		if !last.Before(d) {
			g.support(s, ips.SupportBenefitsPlanning, g.doneOrGoing(s, d, 14), d, s.primary)
		}
	}
	if g.chance(0.45) {
		d := e.AddDays(g.between(5, 60))
		if !last.Before(d) {
			g.support(s, ips.SupportDisclosurePlanning, ips.SupportCompleted, d, s.primary)
		}
	}
	for range g.weightedCount([]int{40, 30, 20, 10}) {
		g.support(s, ips.SupportTeamMeeting, ips.SupportCompleted, e.AddDays(g.between(0, span)), nil)
	}
	if g.chance(0.12) {
		d := e.AddDays(g.between(0, span))
		g.support(s, ips.SupportEducation, g.doneOrGoing(s, d, 30), d, nil)
	}
	if g.chance(0.12) {
		g.support(s, pick(g, ips.SupportTypes), ips.SupportCancelled, e.AddDays(g.between(0, span)), nil)
	}

	g.jobSearch(s)

	g.primaryGoalStatus(s)
	if s.primary != nil && g.chance(0.35) {
		g.secondaryGoal(s)
	}

	switch st {
	case ips.ClientActive:
		if g.chance(0.7) {
			employed := s.currentJob() != nil
			for range g.between(1, 2) {
				t := pick(g, []ips.SupportType{ips.SupportTeamMeeting, ips.SupportBenefitsPlanning, ips.SupportJobDevelopment, ips.SupportInterviewPreparation})
				if employed {
					t = pick(g, []ips.SupportType{ips.SupportTeamMeeting, ips.SupportFollowAlongOffJob, ips.SupportFollowAlongOnJob, ips.SupportBenefitsPlanning})
				}
				g.support(s, t, ips.SupportPlanned, g.asOf.AddDays(g.between(1, 21)), s.primary)
			}
		}
	case ips.ClientOnHold:
		if g.chance(0.3) {
			g.support(s, ips.SupportTeamMeeting, ips.SupportPlanned, g.asOf.AddDays(g.between(1, 30)), nil)
		}
	case ips.ClientClosed:
		// What was booked when the file closed.
		if g.chance(0.25) {
			types := []ips.SupportType{ips.SupportTeamMeeting, ips.SupportJobDevelopment, ips.SupportBenefitsPlanning}
			if s.currentJob() != nil {
				types = append(types, ips.SupportFollowAlongOffJob)
			}
			t := pick(g, types)
			g.support(s, t, ips.SupportCancelled, c.ClosedOn.AddDays(g.between(1, 13)), nil)
		}
	}
}

// weightedCount returns i with probability ws[i] / sum(ws).
func (g *gen) weightedCount(ws []int) int {
	idx := make([]int, len(ws))
	for i := range idx {
		idx[i] = i
	}
	return weighted(g, idx, ws)
}

// doneOrGoing is the status of a support begun on d: still in progress if it
// began less than recent days before the as-of day and the client is active.
func (g *gen) doneOrGoing(s *story, d ips.Date, recent int) ips.SupportStatus {
	if s.status == ips.ClientActive && days(d, g.asOf) < recent {
		return ips.SupportInProgress
	}
	return ips.SupportCompleted
}

func (s *story) currentJob() *ips.Job {
	for _, j := range s.c.Jobs {
		if j.Current() {
			return j
		}
	}
	return nil
}

// jobSearch runs rapid job search from enrollment: the first employer contact
// within about a month, job development until a job starts, follow-along
// while it lasts, and a new search when it ends.
func (g *gen) jobSearch(s *story) {
	c := s.c
	e, last := c.EnrolledOn, s.last
	var job *ips.Job

	// A few are referred while already working, to help keep the job.
	if g.chance(0.05) {
		job = g.job(s, e.AddDays(-g.between(30, 700)), e)
	}
	first := e.AddDays(g.between(2, 28))
	if g.chance(0.1) {
		first = e.AddDays(g.between(31, 75))
	}
	searchFrom := first
	if job == nil || !job.Current() {
		if !last.Before(first) {
			g.support(s, ips.SupportEmployerContact, ips.SupportCompleted, first, s.primary)
		}
		if job != nil {
			if d := job.End.AddDays(g.between(3, 21)); first.Before(d) {
				searchFrom = d
			}
		}
	}
	for k := 0; job == nil || !job.Current(); k++ {
		p := 0.62
		if k > 0 {
			p = 0.5
		}
		start := searchFrom.AddDays(g.between(7, 60) + g.between(7, 90))
		if k >= 3 || !g.chance(p) || !start.Before(last) {
			g.ongoingSearch(s, searchFrom)
			return
		}
		g.searchSupports(s, searchFrom, start)
		job = g.job(s, start, start)
		if !job.Current() {
			searchFrom = job.End.AddDays(g.between(3, 21))
		}
	}
	if g.chance(0.12) {
		// A second, part-time job alongside the first.
		if start := job.Start.AddDays(g.between(30, 200)); start.Before(last) && !start.Before(e) {
			g.job(s, start, start)
		}
	}
}

// ongoingSearch adds the job development of a search still under way at s.last.
func (g *gen) ongoingSearch(s *story, from ips.Date) {
	last := s.last
	if last.Before(from) {
		return
	}
	// Weekly at first, then about monthly through a long search. For an
	// active client the last fortnight is the search still in progress.
	active := s.status == ips.ClientActive
	done := last
	if active {
		done = g.asOf.AddDays(-15)
	}
	n := 0
	for d := from; !done.Before(d); n++ {
		g.support(s, ips.SupportJobDevelopment, ips.SupportCompleted, d, s.primary)
		if n < 4 {
			d = d.AddDays(g.between(7, 30))
		} else {
			d = d.AddDays(g.between(21, 60))
		}
	}
	if active {
		d := g.asOf.AddDays(-g.between(0, 14))
		if d.Before(from) {
			d = from
		}
		g.support(s, ips.SupportJobDevelopment, ips.SupportInProgress, d, s.primary)
	}
}

// searchSupports adds what an employment specialist does between the start of
// a search and the job it finds.
func (g *gen) searchSupports(s *story, from, found ips.Date) {
	n := 0
	for d := from.AddDays(g.between(0, 5)); d.Before(found) && n < 4; d = d.AddDays(g.between(7, 30)) {
		g.support(s, ips.SupportJobDevelopment, ips.SupportCompleted, d, s.primary)
		n++
	}
	for range g.between(0, 2) {
		if d := from.AddDays(g.between(0, days(from, found)-1)); d.Before(found) {
			g.support(s, ips.SupportEmployerContact, ips.SupportCompleted, d, s.primary)
		}
	}
	if g.chance(0.55) {
		if d := found.AddDays(-g.between(2, 10)); !d.Before(from) {
			g.support(s, ips.SupportInterviewPreparation, ips.SupportCompleted, d, s.primary)
		}
	}
	if g.chance(0.25) {
		if d := found.AddDays(-g.between(0, 7)); !d.Before(s.c.EnrolledOn) {
			g.support(s, ips.SupportTransportation, ips.SupportCompleted, d, nil)
		}
	}
}

// endReasonWeights follow ips.JobEndReasons: quit with or without a plan,
// fired, laid off, temporary job ended, hospitalized, other.
var endReasonWeights = []int{22, 16, 16, 12, 8, 10, 16}

// job adds a job starting on start, with the follow-along it gets. The job
// lasts from held on (start, or enrollment for a job the client came in with)
// for its own course, and is current if that would end after s.last.
func (g *gen) job(s *story, start, held ips.Date) *ips.Job {
	c := s.c
	k := s.kind
	switch {
	case g.chance(0.07):
		k = pick(g, nonCompetitiveKinds)
	case g.chance(0.35):
		k = pick(g, competitiveKinds)
	}
	// A second job held alongside a first is other work, elsewhere.
	if cur := s.currentJob(); cur != nil {
		for k.title == cur.Title || slices.Contains(k.employers, cur.Employer) {
			k = pick(g, competitiveKinds)
		}
	}
	j := &ips.Job{Employer: pick(g, k.employers), Title: k.title, Start: start, Competitive: k.competitive}
	if k.occupation != nil && g.chance(0.7) {
		j.Occupation = ptr(*k.occupation)
	}
	if k.industry != nil && g.chance(0.55) {
		j.Industry = ptr(*k.industry)
	}
	if len(c.Jobs) > 0 && c.Jobs[len(c.Jobs)-1].Current() {
		j.HoursPerWeek = pick(g, partTime) // a second job fits around the first
	} else {
		j.HoursPerWeek = g.hours()
	}
	if g.chance(0.6) {
		d := max(1, int((j.HoursPerWeek+7)/8))
		if d < 7 && j.HoursPerWeek/float64(d+1) >= 3 && g.chance(0.4) {
			d++
		}
		j.DaysPerWeek = min(d, 7)
	}
	j.HourlyWage = ips.Money{Value: float64(g.between(k.wageCents[0]/25, k.wageCents[1]/25)*25) / 100, Currency: "USD"}
	if g.chance(0.5) {
		switch c.Disclosure {
		case ips.DisclosureNone:
			j.Disclosed = ptr(false)
		case ips.DisclosureFull:
			j.Disclosed = ptr(true)
		default:
			j.Disclosed = ptr(g.chance(0.4))
		}
	}
	// Most jobs end within a year or two; short ones are common.
	var end ips.Date
	switch {
	case k.fixedDays > 0:
		end = start.AddDays(k.fixedDays)
	case g.chance(0.45):
		end = held.AddDays(g.between(10, 90))
	default:
		end = held.AddDays(g.between(60, 900))
	}
	if end.Before(held) {
		end = held.AddDays(g.between(10, 90))
	}
	if end.Before(s.last) {
		j.End = end
		if k.fixedDays > 0 {
			j.EndReason = "temporary-job-ended"
		} else if g.chance(0.9) {
			j.EndReason = weighted(g, ips.JobEndReasons, endReasonWeights)
		}
	}
	c.Jobs = append(c.Jobs, j)
	g.followAlong(s, j)
	return j
}

var (
	partTime = []float64{8, 10, 12, 12.5, 15, 16, 18}
	fullish  = []float64{20, 20, 22.5, 24, 25, 28, 30, 32, 35, 37.5, 40, 40}
)

// hours: about two-thirds of working IPS clients work 20 or more hours a week.
func (g *gen) hours() float64 {
	if g.chance(0.67) {
		return pick(g, fullish)
	}
	return pick(g, partTime)
}

// followAlong adds the time-unlimited supports a job gets while it lasts.
func (g *gen) followAlong(s *story, j *ips.Job) {
	e := s.c.EnrolledOn
	from := j.Start
	if from.Before(e) {
		from = e
	}
	until := s.last
	if !j.Current() {
		until = minDate(j.End, s.last)
	}
	// Follow-along never ends while the job lasts: for an active client the
	// latest contact is still in progress, and the earlier ones precede it.
	var going ips.Date
	if j.Current() && s.status == ips.ClientActive {
		going = g.asOf.AddDays(-g.between(0, 30))
		if going.Before(from) {
			going = from
		}
		until = going.AddDays(-1)
	}
	n := 0
	for d := from.AddDays(g.between(2, 14)); !until.Before(d) && n < 3; d = d.AddDays(g.between(14, 45)) {
		g.support(s, ips.SupportFollowAlongOnJob, ips.SupportCompleted, d, s.primary)
		n++
	}
	if !going.IsZero() {
		g.support(s, ips.SupportFollowAlongOnJob, ips.SupportInProgress, going, s.primary)
	}
	if g.chance(0.4) && !until.Before(from) {
		g.support(s, ips.SupportFollowAlongOffJob, ips.SupportCompleted, from.AddDays(g.between(0, days(from, until))), s.primary)
	}
	if g.chance(0.3) {
		if d := from.AddDays(g.between(7, 30)); !until.Before(d) {
			g.support(s, ips.SupportBenefitsPlanning, ips.SupportCompleted, d, s.primary)
		}
	}
}

func (g *gen) support(s *story, t ips.SupportType, st ips.SupportStatus, d ips.Date, goal *ips.Goal) *ips.Support {
	sp := &ips.Support{Type: t, Status: st, Date: d}
	if t == ips.SupportEmployerContact {
		// The stories' employer contacts are the specialist meeting an
		// employer about work for the client (see supportNotes).
		sp.Contact = &ips.Contact{Mode: ips.ContactFaceToFace, OnBehalfOf: ips.ContactForClient}
	}
	if g.chance(0.4) {
		sp.Note = pick(g, supportNotes[t])
	}
	// Link to the goal the support serves, when the goal already existed.
	if goal != nil && !d.Before(goal.Start) && g.chance(0.7) {
		s.links[sp] = goal
	}
	s.c.Supports = append(s.c.Supports, sp)
	return sp
}

// goalWords is an employment goal in the client's own words.
func (g *gen) goalWords(s *story) string {
	if len(s.kind.goals) > 0 && g.chance(0.7) {
		return pick(g, s.kind.goals)
	}
	return pick(g, genericGoals)
}

func (g *gen) newGoal(s *story, words string, start ips.Date) *ips.Goal {
	goal := &ips.Goal{Description: words, Start: start, Status: ips.GoalActive}
	if g.chance(0.65) {
		h := pick(g, []float64{10, 15, 20, 20, 25, 30, 40})
		if p := s.c.Preferences; p != nil && p.HoursPerWeek != nil {
			h = *p.HoursPerWeek
		}
		// The client's words win over the preference form.
		switch {
		case strings.Contains(words, "full-time") || strings.Contains(words, "full time"):
			h = 40
		case strings.Contains(words, "20 hours"):
			h = 20
		case strings.Contains(words, "few") || strings.Contains(words, "part time") || strings.Contains(words, "weekends"):
			h = min(h, pick(g, []float64{10, 12, 15, 20}))
		}
		goal.TargetHoursPerWeek = &h
	}
	if g.chance(0.5) {
		goal.Due = start.AddDays(g.between(90, 365))
	}
	if g.chance(0.4) {
		for range g.between(1, 2) {
			n := ips.Note{Text: pick(g, goalNotes)}
			if g.chance(0.8) {
				n.Date = start.AddDays(g.between(0, max(0, days(start, s.last))))
			}
			goal.Notes = append(goal.Notes, n)
		}
		// Dated notes in order; an undated one stays where it was written.
		if len(goal.Notes) == 2 && !goal.Notes[0].Date.IsZero() && goal.Notes[1].Date.Before(goal.Notes[0].Date) {
			goal.Notes[0], goal.Notes[1] = goal.Notes[1], goal.Notes[0]
		}
	}
	s.c.Goals = append(s.c.Goals, goal)
	return goal
}

// achievements compatible with each lifecycle status, "" meaning none given.
var achievementsFor = map[ips.GoalStatus][]ips.GoalAchievement{
	ips.GoalProposed:       {""},
	ips.GoalPlanned:        {""},
	ips.GoalAccepted:       {""},
	ips.GoalActive:         {"", "in-progress", "improving", "worsening", "no-change", "sustaining"},
	ips.GoalOnHold:         {"", "no-progress", "no-change"},
	ips.GoalCompleted:      {"", "achieved", "sustaining"},
	ips.GoalCancelled:      {"", "not-achieved", "not-attainable", "no-progress"},
	ips.GoalEnteredInError: {""},
	ips.GoalRejected:       {""},
}

// achievementFits reports whether a goal's achievement status is one the
// generator pairs with its lifecycle status (a goal not yet started has no
// achievement; a completed one was achieved or is being sustained, ...).
func achievementFits(s ips.GoalStatus, a ips.GoalAchievement) bool {
	return slices.Contains(achievementsFor[s], a)
}

// primaryGoalStatus settles the first goal once the jobs are known.
func (g *gen) primaryGoalStatus(s *story) {
	goal := s.primary
	if goal == nil {
		return
	}
	// The goal is competitive work: a sheltered or time-limited job does not meet it.
	cur := s.currentJob()
	working := cur != nil && cur.Competitive
	switch s.status {
	case ips.ClientActive:
		if working && g.chance(0.45) {
			goal.Status, goal.Achievement = ips.GoalCompleted, weighted(g, []ips.GoalAchievement{"achieved", "sustaining", ""}, []int{70, 20, 10})
		} else if working {
			goal.Status, goal.Achievement = ips.GoalActive, weighted(g, []ips.GoalAchievement{"sustaining", "improving", "in-progress", ""}, []int{40, 25, 20, 15})
		} else {
			goal.Status, goal.Achievement = ips.GoalActive, weighted(g, []ips.GoalAchievement{"in-progress", "no-change", "improving", "worsening", ""}, []int{40, 15, 15, 7, 23})
		}
	case ips.ClientOnHold:
		goal.Status, goal.Achievement = ips.GoalOnHold, weighted(g, []ips.GoalAchievement{"no-progress", "no-change", ""}, []int{50, 15, 35})
	case ips.ClientClosed:
		if slices.ContainsFunc(s.c.Jobs, func(j *ips.Job) bool { return j.Competitive }) {
			goal.Status, goal.Achievement = ips.GoalCompleted, weighted(g, []ips.GoalAchievement{"achieved", "sustaining", ""}, []int{70, 20, 10})
		} else {
			goal.Status, goal.Achievement = ips.GoalCancelled, weighted(g, []ips.GoalAchievement{"not-achieved", "not-attainable", "no-progress", ""}, []int{40, 15, 15, 30})
		}
	}
}

// goalStatusesFor are the lifecycle statuses a goal may have while its client
// has the given status: a closed file has no open goal, a referred client has
// none under way yet.
var goalStatusesFor = map[ips.ClientStatus][]ips.GoalStatus{
	ips.ClientReferred: {ips.GoalProposed, ips.GoalPlanned, ips.GoalAccepted, ips.GoalEnteredInError, ips.GoalRejected},
	ips.ClientActive:   ips.GoalStatuses,
	ips.ClientOnHold:   {ips.GoalProposed, ips.GoalAccepted, ips.GoalOnHold, ips.GoalCompleted, ips.GoalCancelled, ips.GoalEnteredInError, ips.GoalRejected},
	ips.ClientClosed:   {ips.GoalCompleted, ips.GoalCancelled, ips.GoalEnteredInError, ips.GoalRejected},
}

// goalStatusFits reports whether a goal may have status gs while its client's
// effective status is cs, as the generator keeps them.
func goalStatusFits(cs ips.ClientStatus, gs ips.GoalStatus) bool {
	return slices.Contains(goalStatusesFor[cs], gs)
}

// secondaryGoal adds a later goal: more hours, a class, a licence.
func (g *gen) secondaryGoal(s *story) {
	var choices []ips.GoalStatus
	for _, gs := range goalStatusesFor[s.status] {
		if gs != ips.GoalActive && gs != ips.GoalCompleted {
			choices = append(choices, gs)
		}
	}
	if s.status == ips.ClientActive && s.primary.Status == ips.GoalCompleted {
		choices = append(choices, ips.GoalActive, ips.GoalActive, ips.GoalActive)
	}
	g.addGoal(s, pick(g, choices), "")
}

// addGoal adds a goal with the given status and an achievement that fits it
// (a random one when a is "").
func (g *gen) addGoal(s *story, gs ips.GoalStatus, a ips.GoalAchievement) *ips.Goal {
	e := s.c.EnrolledOn
	var unused []laterGoal
	for _, lg := range laterGoals {
		if lg.working && s.currentJob() == nil {
			continue
		}
		if !slices.ContainsFunc(s.c.Goals, func(goal *ips.Goal) bool { return goal.Description == lg.words }) {
			unused = append(unused, lg)
		}
	}
	var lg laterGoal
	switch {
	case gs == ips.GoalEnteredInError && len(s.c.Goals) > 0:
		lg.words = pick(g, s.c.Goals).Description // entered twice
	case s.status == ips.ClientReferred || len(s.c.Goals) == 0 || len(unused) == 0:
		lg.words = g.goalWords(s) // a first goal
	default:
		lg = pick(g, unused)
	}
	from, to := e, minDate(s.last, g.asOf)
	if cur := s.currentJob(); lg.working && cur != nil && e.Before(cur.Start) {
		from = cur.Start // a goal about the job comes once there is one
	}
	goal := g.newGoal(s, lg.words, from.AddDays(g.between(0, days(from, to))))
	goal.TargetHoursPerWeek = nil
	if lg.hours > 0 {
		goal.TargetHoursPerWeek = ptr(lg.hours)
	}
	goal.Status = gs
	if a == "" {
		a = pick(g, achievementsFor[gs])
	}
	goal.Achievement = a
	if gs == ips.GoalEnteredInError {
		goal.Notes = []ips.Note{{Text: "Entered twice by mistake.", Date: goal.Start}}
	}
	return goal
}

// finish puts the client's records in order, numbers them and records the
// employment status history the jobs imply.
func (s *story) finish() {
	c := s.c
	slices.SortStableFunc(c.Goals, func(a, b *ips.Goal) int { return a.Start.Compare(b.Start) })
	for i, goal := range c.Goals {
		goal.ID = "g" + strconv.Itoa(i+1)
	}
	slices.SortStableFunc(c.Supports, func(a, b *ips.Support) int { return a.Date.Compare(b.Date) })
	for i, sp := range c.Supports {
		sp.ID = "s" + strconv.Itoa(i+1)
		sp.Goal = ""
		if goal := s.links[sp]; goal != nil && goal.Status != ips.GoalEnteredInError && goal.Status != ips.GoalRejected {
			sp.Goal = goal.ID
		}
	}
	slices.SortStableFunc(c.Jobs, func(a, b *ips.Job) int { return a.Start.Compare(b.Start) })
	for i, j := range c.Jobs {
		j.ID = "j" + strconv.Itoa(i+1)
	}
	c.Employment = nil
	if s.records {
		c.Employment = s.snapshots()
	}
}

// snapshots derives the employment status history from the jobs: a snapshot
// at enrollment and wherever the status changes, up to s.last.
func (s *story) snapshots() []ips.EmploymentSnapshot {
	c := s.c
	e := c.EnrolledOn
	dates := []ips.Date{e}
	for _, j := range c.Jobs {
		dates = append(dates, j.Start)
		if !j.Current() {
			dates = append(dates, j.End.AddDays(1))
		}
	}
	if s.nilf {
		// Joining IPS is joining the labor force: the search makes it official.
		var search ips.Date
		for _, sp := range c.Supports {
			if (sp.Type == ips.SupportEmployerContact || sp.Type == ips.SupportJobDevelopment) && (search.IsZero() || sp.Date.Before(search)) {
				search = sp.Date
			}
		}
		if !search.IsZero() {
			dates = append(dates, search)
		}
	}
	slices.SortFunc(dates, func(a, b ips.Date) int { return a.Compare(b) })
	dates = slices.Compact(dates)
	var out []ips.EmploymentSnapshot
	for _, d := range dates {
		if d.Before(e) || s.last.Before(d) {
			continue
		}
		st := s.statusOn(d)
		if len(out) > 0 && out[len(out)-1].Status == st {
			continue
		}
		out = append(out, ips.EmploymentSnapshot{Date: d, Status: st})
	}
	return out
}

func (s *story) statusOn(d ips.Date) ips.EmploymentStatus {
	c := s.c
	var lastEnded *ips.Job
	for _, j := range c.Jobs {
		if j.Overlaps(d, d) {
			return ips.Employed
		}
		if !j.Current() && j.End.Before(d) && (lastEnded == nil || lastEnded.End.Before(j.End)) {
			lastEnded = j
		}
	}
	if lastEnded != nil && lastEnded.EndReason == "hospitalized" {
		return ips.NotInLaborForce
	}
	if s.nilf && d == c.EnrolledOn {
		return ips.NotInLaborForce
	}
	return ips.Unemployed
}
