package outcomes

import (
	"errors"
	"fmt"
	"slices"

	"github.com/ipsfhir/ipsfhir/ips"
)

// window is the span of days a computation counts: a Quarter, or a
// rollingYear. A client is active in it when enrolled on or before its last
// day and not closed before its first; every "in the quarter" of the
// measures reads "in the window".
type window interface {
	Start() ips.Date
	End() ips.Date
	Contains(ips.Date) bool
}

// rollingYear is the four calendar quarters (twelve months) ending with last.
type rollingYear struct{ last Quarter }

func (r rollingYear) Start() ips.Date { return r.last.Add(-3).Start() }
func (r rollingYear) End() ips.Date   { return r.last.End() }
func (r rollingYear) Contains(d ips.Date) bool {
	return !d.IsZero() && !d.Before(r.Start()) && !r.End().Before(d)
}

// compute counts a calendar quarter.
func compute(clients []*ips.Client, q Quarter, o Options) (*computed, error) {
	return computeOver(clients, q, q, o)
}

// ErrRollingNotFHIR: a rolling report is for the program's own charts and
// tables; the FHIR output publishes calendar quarters only.
var ErrRollingNotFHIR = errors.New("outcomes: a rolling four-quarter report is not written as a MeasureReport; only calendar quarters are published")

// ComputeRolling is Compute over the twelve months ending with quarter q
// (q and the three quarters before it) instead of q alone, for the groups
// RollingGroup allows: a client counts when active at any time in those
// months, works competitively when they held a competitive job on any of
// their days, and so on. The reports have Rolling set and Quarter q; a
// report keeps only its rolling groups, and a measure without any is left
// out. They go through the same small-cell suppression as a quarter's,
// audited on their own. Shown beside quarterly figures they are not
// protected by that alone (the periods are linked): a page of quarters and
// years is made with ComputeTrend. A small program whose quarterly figures
// are all withheld may still get a rolling one.
//
// Rolling reports are not published as FHIR: JSON and BundleJSON refuse
// them (ErrRollingNotFHIR).
func ComputeRolling(clients []*ips.Client, q Quarter, o Options) ([]*Report, error) {
	all, err := rollingReports(clients, q, o)
	if err != nil {
		return nil, err
	}
	var out []*Report
	for _, r := range all {
		r.Groups = slices.DeleteFunc(r.Groups, func(g Group) bool { return !RollingGroup(g.Code) })
		if len(r.Groups) > 0 {
			out = append(out, r)
		}
	}
	return out, nil
}

// RollingGroup reports whether a group has twelve-month figures: those
// whose counts are of the clients served, or working, at any time in the
// months (D, N1, N2), and their medians. A client on the caseload all year
// is one client in the year and one in each quarter, so these counts are
// not the sums of the quarters' (ComputeTrend audits the links they do
// have). The others' are: the clients enrolled in the year are those
// enrolled in each quarter added up, and so are the first jobs, the job
// starts, the first competitive jobs, the 90th days and the earnings; and
// the caseload on the year's first day is that of its first quarter. Such a
// year says nothing the quarters do not, but where they are withheld, so
// those groups have no rolling figure.
func RollingGroup(code string) bool {
	switch code {
	case GroupCompetitiveEmployment, GroupCompetitiveEmployment20h, GroupMedianHourlyWage, GroupMedianJobTenure:
		return true
	}
	return false
}

// rollingReports are the reports of every group over the twelve months
// ending with q, before ComputeRolling keeps the rolling groups.
func rollingReports(clients []*ips.Client, q Quarter, o Options) ([]*Report, error) {
	if o.Date.IsZero() {
		return nil, ErrNoDate
	}
	if !q.Valid() || !q.Add(-3).Valid() {
		return nil, ErrBadQuarter
	}
	c, err := computeOver(clients, q, rollingYear{q}, o)
	if err != nil {
		return nil, err
	}
	rs := c.reports()
	for _, r := range rs {
		r.Date = reportDate(o.Date)
		r.Rolling = true
	}
	return rs, nil
}

// Period is the first and last day a report covers: its quarter's, or for a
// rolling report the twelve months ending with its quarter.
func (r *Report) Period() (start, end ips.Date) {
	if r.Rolling {
		w := rollingYear{r.Quarter}
		return w.Start(), w.End()
	}
	return r.Quarter.Start(), r.Quarter.End()
}

// Completeness says how much of a quarter lies before a given day.
type Completeness int

const (
	// Complete: the quarter ended before the day.
	Complete Completeness = iota
	// Unfinished: the day is one of the quarter's days, so its figures
	// cover part of it only and will change.
	Unfinished
	// Future: the quarter starts after the day; there is nothing to count
	// yet.
	Future
)

// CompletenessOn places q against today (the caller's clock: this package
// has none).
func (q Quarter) CompletenessOn(today ips.Date) Completeness {
	switch {
	case today.Before(q.Start()):
		return Future
	case !q.End().Before(today):
		return Unfinished
	}
	return Complete
}

// Warning is what a report of quarter q, made on today, must say about its
// completeness, or "" for a quarter that has ended.
func (q Quarter) Warning(today ips.Date) string {
	switch q.CompletenessOn(today) {
	case Future:
		return fmt.Sprintf("WARNING: %s has not started (it starts %s, after %s): there is nothing to report yet.", q, q.Start(), today)
	case Unfinished:
		return fmt.Sprintf("WARNING: %s is not over (it ends %s): these figures count %s to %s only and will change.", q, q.End(), q.Start(), today)
	}
	return ""
}
