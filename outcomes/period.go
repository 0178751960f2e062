package outcomes

import (
	"errors"
	"fmt"

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
// (q and the three quarters before it) instead of q alone: a client counts
// when active at any time in those months, works competitively when they
// held a competitive job on any of their days, is newly enrolled when
// enrolled in them, and so on for every measure. The reports have Rolling
// set and Quarter q. They go through the same small-cell suppression as a
// quarter's, audited on their own: a year's counts of distinct clients are
// not the sums of its quarters' counts, so nothing links them linearly to
// the quarterly reports. A small program whose quarterly figures are all
// withheld may still get a rolling one.
//
// Rolling reports are not published as FHIR: JSON and BundleJSON refuse
// them (ErrRollingNotFHIR).
func ComputeRolling(clients []*ips.Client, q Quarter, o Options) ([]*Report, error) {
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
