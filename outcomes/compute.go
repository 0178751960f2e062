package outcomes

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/ipsfhir/ipsfhir/ips"
)

// DefaultThreshold is the default small-cell threshold: counts from 1 to 10
// are withheld.
const DefaultThreshold = 11

// Options configure Compute.
type Options struct {
	// Program is the reporting program's id (config program.id). It names
	// the program stratum and scopes the specialist codes. Required.
	Program string
	// SpecialistKey is the program's secret key of the specialist codes
	// (config reports.specialistKey; see SpecialistCode), at least
	// MinSpecialistKeyBytes long. nil: the reports are not broken down by
	// specialist at all (no specialist stratifier), because a code made
	// without a secret could be recomputed from a staff list.
	SpecialistKey []byte
	// Threshold is the small-cell threshold: counts from 1 to Threshold-1
	// are withheld. 0 means DefaultThreshold; 1 withholds nothing (for a
	// program's own eyes only).
	Threshold int
	// Protection is the least number of values every withheld small count
	// must still be able to take given everything the reports publish
	// (interval reasoning over all cells, strata and reports of the
	// quarter). 0 means DefaultProtection. It is capped at Threshold-1, the
	// most a count known to be small can range over, and at least 2 is
	// enforced wherever the threshold allows it: never a single value.
	Protection int
	// Audience is who the reports are for. Required: AudienceProgram (the
	// program's own report: every client served is counted) or AudienceHIE
	// (what leaves for an HIE: only clients whose consent allows it).
	Audience Audience
	// Consents reports whether a client's de-identified outcomes may go to
	// HIEs (config.Consent.AllowsHIE). For AudienceHIE, required: clients
	// for whom it returns false are not counted anywhere. For
	// AudienceProgram it is not used.
	Consents func(*ips.Client) bool
	// Date is when the reports are produced, their MeasureReport.date
	// (kept in UTC, to the second). Required: the package has no clock.
	Date time.Time
}

// Errors of Compute. None quotes client data.
var (
	ErrNoProgram     = errors.New("outcomes: the program id is required (1 to 64 letters, digits, '-' or '.')")
	ErrNoConsent     = errors.New("outcomes: Options.Consents is required for an HIE's reports: only clients whose consent allows HIE reporting may be counted")
	ErrNoAudience    = errors.New("outcomes: Options.Audience is required: AudienceProgram (the program's own report) or AudienceHIE (what leaves for an HIE)")
	ErrBadThreshold  = errors.New("outcomes: the suppression threshold must be at least 1")
	ErrBadProtection = errors.New("outcomes: the protection range must be at least 2 values")
	ErrBadQuarter    = errors.New("outcomes: the quarter is not valid")
	ErrMixedCurrency = errors.New("outcomes: competitive jobs held in the quarter are paid in more than one currency; earnings cannot be added up")
	ErrSpecialistKey = fmt.Errorf("outcomes: the specialist key is too short: at least %d bytes", MinSpecialistKeyBytes)
	ErrNoDate        = errors.New("outcomes: the date the reports are produced is required (MeasureReport.date)")
)

// MinSpecialistKeyBytes is the shortest specialist key accepted: 32 bytes,
// such as the 64 hex digits of openssl rand -hex 32.
const MinSpecialistKeyBytes = 32

var programPattern = regexp.MustCompile(`^[A-Za-z0-9\-.]{1,64}$`)

// SpecialistCode is the stable pseudonymous code that stands for an
// employment specialist in reports: "es-" and the first 10 hex digits of
// HMAC-SHA256 under the program's secret key of the program id, a newline,
// and the specialist as recorded (spaces trimmed and collapsed,
// lower-cased), or "unassigned" when none is recorded. Staff names never
// appear in reports. The same key gives a specialist the same code every
// quarter; without the key nobody can compute a code from a name, and
// another key gives codes that cannot be linked to these. The program,
// which holds the key, can compute its own staff's codes (ipsfhir report
// --specialist-codes). It fails with ErrSpecialistKey for a key shorter
// than MinSpecialistKeyBytes.
func SpecialistCode(key []byte, program, specialist string) (string, error) {
	if len(key) < MinSpecialistKeyBytes {
		return "", ErrSpecialistKey
	}
	s := normalSpecialist(specialist)
	if s == "" {
		return "unassigned", nil
	}
	m := hmac.New(sha256.New, key)
	m.Write([]byte(program + "\n" + s))
	return "es-" + hex.EncodeToString(m.Sum(nil)[:5]), nil
}

// normalSpecialist is a specialist as recorded with spaces trimmed and
// collapsed, lower-cased: "" when none is recorded.
func normalSpecialist(s string) string {
	return strings.ToLower(strings.Join(strings.Fields(s), " "))
}

// tally is what one stratum (or the whole program) contributes.
type tally struct {
	n        [cellEarn]int // counts of the cells D to R90
	earnings float64
	wages    []float64 // one per N1 client: hourly wage in the quarter
	days     []int     // one per C client: days to first employer contact
	jobDays  []int     // one per G client: days from enrollment to the first competitive job
	tenure   []float64 // one per N1 client: weeks in the longest competitive job held
	// specialists: the specialists recorded for the clients served
	// (normalized names; "" for none)
	specialists map[string]bool
}

func (t *tally) add(o *tally) {
	for i := range t.n {
		t.n[i] += o.n[i]
	}
	t.earnings += o.earnings
	t.wages = append(t.wages, o.wages...)
	t.days = append(t.days, o.days...)
	t.jobDays = append(t.jobDays, o.jobDays...)
	t.tenure = append(t.tenure, o.tenure...)
	for s := range o.specialists {
		if t.specialists == nil {
			t.specialists = map[string]bool{}
		}
		t.specialists[s] = true
	}
}

// computed is one quarter of one program, before it becomes reports.
type computed struct {
	quarter    Quarter
	program    string
	audience   Audience
	excluded   map[string]int // clients left out, by reason
	threshold  int
	protection int
	// stratified: broken down by specialist (a specialist key was given,
	// and the strata could be protected)
	stratified bool
	// strataWithheld: a key was given, but the breakdown could not be
	// protected and is left out
	strataWithheld bool
	currency       string   // of the wages; "" when nobody worked competitively
	strata         []string // specialist codes, sorted
	levels         []*tally // [0] the program, [1+i] strata[i]
	hidden         withheld
}

// Compute counts a program's clients for a quarter and returns its summary
// MeasureReports, one per measure in Measures order, with small cells
// withheld. It reads only its arguments: no clock, no I/O.
func Compute(clients []*ips.Client, q Quarter, o Options) ([]*Report, error) {
	if o.Date.IsZero() {
		return nil, ErrNoDate
	}
	c, err := compute(clients, q, o)
	if err != nil {
		return nil, err
	}
	rs := c.reports()
	for _, r := range rs {
		r.Date = reportDate(o.Date)
	}
	return rs, nil
}

// reportDate is t as a report keeps it: in UTC, to the second (what
// MeasureReport.date shows).
func reportDate(t time.Time) time.Time { return t.UTC().Truncate(time.Second) }

// computeOver counts window w; the reports it makes are of quarter q.
func computeOver(clients []*ips.Client, q Quarter, w window, o Options) (*computed, error) {
	if !programPattern.MatchString(o.Program) {
		return nil, ErrNoProgram
	}
	switch {
	case o.Audience != AudienceProgram && o.Audience != AudienceHIE:
		return nil, ErrNoAudience
	case o.Audience == AudienceHIE && o.Consents == nil:
		return nil, ErrNoConsent
	}
	if o.Threshold == 0 {
		o.Threshold = DefaultThreshold
	}
	if o.Threshold < 1 {
		return nil, ErrBadThreshold
	}
	if o.Protection == 0 {
		o.Protection = DefaultProtection
	}
	if o.Protection < 2 {
		return nil, ErrBadProtection
	}
	o.Protection = min(o.Protection, max(o.Threshold-1, 1))
	if !q.Valid() {
		return nil, ErrBadQuarter
	}
	stratified := o.SpecialistKey != nil
	if stratified && len(o.SpecialistKey) < MinSpecialistKeyBytes {
		return nil, ErrSpecialistKey
	}
	byStratum := map[string]*tally{}
	currencies := map[string]bool{}
	excluded := map[string]int{}
	for _, cl := range clients {
		if cl == nil {
			continue
		}
		reason := leftOut(cl, w)
		if reason == "" && o.Audience == AudienceHIE && !o.Consents(cl) {
			reason = ExcludedNoHIEConsent
		}
		if reason != "" {
			excluded[reason]++
			continue
		}
		code := ""
		if stratified {
			var err error
			if code, err = SpecialistCode(o.SpecialistKey, o.Program, cl.Specialist); err != nil {
				return nil, err
			}
		}
		t := byStratum[code]
		if t == nil {
			t = &tally{}
			byStratum[code] = t
		}
		count(t, cl, w, currencies)
	}
	if len(currencies) > 1 {
		return nil, ErrMixedCurrency
	}
	c := &computed{quarter: q, program: o.Program, audience: o.Audience, excluded: excluded, threshold: o.Threshold, protection: o.Protection, stratified: stratified, levels: []*tally{{}}}
	for cur := range currencies {
		c.currency = cur
	}
	// Unstratified, everyone is in one stratum of code "", which the
	// suppression audit sees like any other (its unknowns are per stratum)
	// and the reports leave out.
	for code := range byStratum {
		c.strata = append(c.strata, code)
	}
	slices.Sort(c.strata)
	for _, code := range c.strata {
		c.levels = append(c.levels, byStratum[code])
		c.levels[0].add(byStratum[code])
	}
	hidden, err := suppress(c.levels, c.threshold, c.protection)
	if errors.Is(err, errCannotProtect) && c.stratified {
		// Specialist caseloads so small that no pattern of withheld cells
		// keeps every small count from being narrowed down (ten
		// specialists with one client each, say): the quarter is reported
		// without the breakdown by specialist, as if no key were given.
		all := &tally{}
		all.add(c.levels[0])
		c.stratified, c.strataWithheld = false, true
		c.strata, c.levels = []string{""}, []*tally{c.levels[0], all}
		hidden, err = suppress(c.levels, c.threshold, c.protection)
	}
	if err != nil {
		return nil, err
	}
	c.hidden = hidden
	return c, nil
}

// count adds one client of the caseload served in the window to t.
//
// A client with several enrollment episodes is one client: counted once
// in each cell. What is measured from an enrollment is measured from the
// episode's: a job falls in the latest episode enrolled on or before its
// start, "first job since enrollment" is the first of that episode, and
// the days to it or to a first employer contact run from that episode's
// enrollment (see docs/OUTCOMES.md, Who is counted).
func count(t *tally, c *ips.Client, q window, currencies map[string]bool) {
	t.n[cellD]++
	ens := c.Enrollments()

	var (
		competitive, twenty bool
		earnings, hours     float64
		wages               []float64
		longest             = -1 // days in the longest competitive job held
		// per episode: the first job, and the first competitive job, since
		// its enrollment
		firstJob  = make([]ips.Date, len(ens))
		firstComp = make([]*ips.Job, len(ens))
	)
	for _, j := range c.Jobs {
		if j == nil || j.Start.IsZero() {
			continue
		}
		if q.Contains(j.Start) {
			t.n[cellJ]++
		}
		if k := episodeOf(ens, j.Start); k >= 0 {
			if firstJob[k].IsZero() || j.Start.Before(firstJob[k]) {
				firstJob[k] = j.Start
			}
			if j.Competitive && (firstComp[k] == nil || j.Start.Before(firstComp[k].Start)) {
				firstComp[k] = j
			}
		}
		if !j.Competitive || !j.Overlaps(q.Start(), q.End()) {
			continue
		}
		competitive = true
		if j.HoursPerWeek >= 20 {
			twenty = true
		}
		longest = max(longest, tenureDays(j, q))
		weeks := float64(daysInQuarter(j, q)) / 7
		earnings += j.HoursPerWeek * j.HourlyWage.Value * weeks
		hours += j.HoursPerWeek * weeks
		wages = append(wages, j.HourlyWage.Value)
		currencies[j.HourlyWage.Currency] = true
	}
	if slices.ContainsFunc(firstJob, q.Contains) {
		t.n[cellF]++
	}
	if competitive {
		t.n[cellN1]++
		t.earnings += earnings
		wage := 0.0
		if hours > 0 {
			wage = earnings / hours
		} else { // no hours recorded: the plain mean of the wages
			for _, w := range wages {
				wage += w
			}
			wage /= float64(len(wages))
		}
		t.wages = append(t.wages, wage)
		t.tenure = append(t.tenure, float64(longest)/7)
	}
	if twenty {
		t.n[cellN2]++
	}
	countFirstCompetitiveJobs(t, c, ens, firstComp, q)
	if t.specialists == nil {
		t.specialists = map[string]bool{}
	}
	t.specialists[normalSpecialist(c.Specialist)] = true

	// E: enrolled in the window (once, however many episodes began in
	// it); the first employer contact is measured from the first of them.
	k := slices.IndexFunc(ens, func(e ips.Episode) bool { return q.Contains(e.EnrolledOn) })
	if k < 0 {
		return
	}
	enrolled := ens[k].EnrolledOn
	t.n[cellE]++
	var first ips.Date
	for _, s := range c.Supports {
		if s == nil || !s.CountsAsEmployerContact() || s.Date.IsZero() || s.Date.Before(enrolled) {
			continue
		}
		if !supportDone(s) {
			continue
		}
		if first.IsZero() || s.Date.Before(first) {
			first = s.Date
		}
	}
	if first.IsZero() {
		return
	}
	d := daysBetween(enrolled, first)
	t.n[cellC]++
	t.days = append(t.days, d)
	if d <= 30 {
		t.n[cellW]++
	}
}

// episodeOf is the index of the enrollment a day falls in: the latest
// enrolled on or before it, or -1 before the first.
func episodeOf(ens []ips.Episode, d ips.Date) int {
	k := -1
	for i, e := range ens {
		if !d.Before(e.EnrolledOn) {
			k = i
		}
	}
	return k
}

// supportDone reports whether a support was given (completed, or in
// progress), not only planned or cancelled.
func supportDone(s *ips.Support) bool {
	return s.Status == ips.SupportCompleted || s.Status == ips.SupportInProgress
}

// RetentionDays is how long after its start a first competitive job must
// still be held to count as kept (ips-job-retention-90d).
const RetentionDays = 90

// countFirstCompetitiveJobs counts the G, B, R and R90 cells of a client
// whose first competitive job since each enrollment is firstComp[k] (nil
// where an episode has none). A client is counted once in each cell: by
// the first episode whose first competitive job started in the window (G,
// and B for it), and by the first whose job reached its 90th day in it (R,
// and R90 for it).
func countFirstCompetitiveJobs(t *tally, c *ips.Client, ens []ips.Episode, firstComp []*ips.Job, q window) {
	for k, j := range firstComp {
		if j == nil || !q.Contains(j.Start) {
			continue
		}
		t.n[cellG]++
		t.jobDays = append(t.jobDays, daysBetween(ens[k].EnrolledOn, j.Start))
		for _, s := range c.Supports {
			if s != nil && s.Type == ips.SupportBenefitsPlanning && supportDone(s) && !s.Date.IsZero() && s.Date.Before(j.Start) {
				t.n[cellB]++
				break
			}
		}
		break
	}
	for _, j := range firstComp {
		if j == nil {
			continue
		}
		if day := j.Start.AddDays(RetentionDays); q.Contains(day) {
			t.n[cellR]++
			if j.Current() || !j.End.Before(day) {
				t.n[cellR90]++
			}
			break
		}
	}
}

// tenureDays is how many days a competitive job held in the window had
// lasted by its end or by the window's last day, whichever comes first,
// both ends included.
func tenureDays(j *ips.Job, q window) int {
	to := q.End()
	if !j.Current() && j.End.Before(to) {
		to = j.End
	}
	return daysBetween(j.Start, to) + 1
}

// daysInQuarter counts the days of the quarter the job was held, both ends
// included.
func daysInQuarter(j *ips.Job, q window) int {
	from, to := j.Start, q.End()
	if from.Before(q.Start()) {
		from = q.Start()
	}
	if !j.Current() && j.End.Before(to) {
		to = j.End
	}
	if to.Before(from) {
		return 0
	}
	return daysBetween(from, to) + 1
}

// daysBetween is the number of days from a to b.
func daysBetween(a, b ips.Date) int {
	return int(b.Time().Sub(a.Time()) / (24 * time.Hour))
}
