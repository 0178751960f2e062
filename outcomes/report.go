package outcomes

import (
	"math"
	"slices"
	"time"
)

// State says what a report holds for a count or a score.
type State int

const (
	// NoValue: there is nothing to show (the score of a cohort group, a
	// rate over nobody, a median of no one).
	NoValue State = iota
	// Exact: Value is the value.
	Exact
	// Masked: withheld by small-cell suppression. The report does not say
	// whether the cell itself was small or was withheld to protect another.
	Masked
	// AtLeast: a sum over several reports that includes withheld cells;
	// Value is a lower bound (the sum of the cells shown), never the value.
	AtLeast
	// Unsupported: cannot be computed from the inputs (the median of an
	// aggregate: medians do not add up).
	Unsupported
)

var stateNames = [...]string{NoValue: "no value", Exact: "exact", Masked: "withheld", AtLeast: "at least", Unsupported: "unsupported"}

func (s State) String() string {
	if s < 0 || int(s) >= len(stateNames) {
		return "unknown"
	}
	return stateNames[s]
}

// Report is one summary MeasureReport: one measure, one quarter, one
// program (or, from Aggregate, several). Its FHIR form is what JSON writes
// and ParseJSON reads.
type Report struct {
	Measure   string // a Measure id, e.g. MeasureCompetitiveEmployment
	Quarter   Quarter
	Program   string // the reporting program; "" on an aggregate
	Threshold int    // the small-cell threshold (the smallest of the inputs' on an aggregate)
	// Date is when the report was produced (MeasureReport.date), in UTC to
	// the second: Options.Date or AggregateOptions.Date. A report ParseJSON
	// read without one has none.
	Date time.Time
	// Reporter is the organization that publishes an aggregate
	// (MeasureReport.reporter), from AggregateOptions.Reporter; zero on a
	// program's own report, whose reporter is the program
	// (SystemProgram|Program).
	Reporter Identifier
	Groups   []Group
	// Audience is who the report is for: AudienceProgram counts every
	// client served, AudienceHIE only those whose consent allows HIE
	// reporting. ParseJSON reads a report that states no exclusions (one of
	// an earlier version, which counted consenting clients only) as
	// AudienceHIE.
	Audience Audience
	// Excluded says how many clients were left out of the counts and why,
	// one entry per reason the audience's reports state
	// (ExcludedReasons), in that order; see exclusions for what is shown.
	Excluded []Exclusion
	// BreakdownWithheld: a specialist key was given, but the specialists'
	// caseloads were too small for any pattern of withheld cells to
	// protect them, so the breakdown by specialist is left out.
	BreakdownWithheld bool
	// Rolling: the report covers the twelve months ending with Quarter
	// (ComputeRolling), not the quarter alone. Period gives its days.
	Rolling bool
}

// Identifier is a FHIR Identifier: a system (an absolute URI) and a value.
type Identifier struct {
	System, Value string
}

// Group is one group of a report: its populations and score for the whole
// report, and the same broken down by program and by specialist.
type Group struct {
	Code        string
	Populations []Count
	Score       Score
	Stratifiers []Stratifier
}

// Stratifier is one breakdown of a group.
type Stratifier struct {
	Code   string // StratifierProgram or StratifierSpecialist
	Strata []Stratum
}

// Stratum is one part of a breakdown, named by a coding: the program
// (SystemProgram|program id) or the specialist (SpecialistSystem(program)|code).
type Stratum struct {
	System, Code string
	Populations  []Count
	Score        Score
}

// Count is one population count.
type Count struct {
	Population string // a measure-population code
	Value      int    // the count when Exact; a lower bound when AtLeast
	State      State
}

// Score is a group's measureScore. Unit is "" for a proportion (written as
// UCUM 1), a currency code ("USD") for earnings, the currency per hour
// ("USD/h") for wages and "d" for days.
type Score struct {
	Value float64
	Unit  string
	State State
}

// Group returns the report's group with a code, or nil.
func (r *Report) Group(code string) *Group {
	for i := range r.Groups {
		if r.Groups[i].Code == code {
			return &r.Groups[i]
		}
	}
	return nil
}

// Count returns the group's count of a population (State NoValue if it has none).
func (g *Group) Count(population string) Count { return countOf(g.Populations, population) }

// Stratifier returns the group's stratifier with a code, or nil.
func (g *Group) Stratifier(code string) *Stratifier {
	for i := range g.Stratifiers {
		if g.Stratifiers[i].Code == code {
			return &g.Stratifiers[i]
		}
	}
	return nil
}

// Count returns the stratum's count of a population (State NoValue if it has none).
func (s *Stratum) Count(population string) Count { return countOf(s.Populations, population) }

func countOf(cs []Count, population string) Count {
	for _, c := range cs {
		if c.Population == population {
			return c
		}
	}
	return Count{Population: population}
}

// reports turns the computed counts into one report per measure.
func (c *computed) reports() []*Report {
	out := make([]*Report, 0, len(measureDefs))
	for mi := range measureDefs {
		m := &measureDefs[mi]
		r := &Report{Measure: m.id, Quarter: c.quarter, Program: c.program, Threshold: c.threshold, Audience: c.audience, Excluded: c.exclusions(), BreakdownWithheld: c.strataWithheld}
		for gi := range m.groups {
			g := &m.groups[gi]
			pops, score := c.cells(0, g)
			grp := Group{Code: g.code, Populations: pops, Score: score}
			grp.Stratifiers = append(grp.Stratifiers, Stratifier{Code: StratifierProgram,
				Strata: []Stratum{{System: SystemProgram, Code: c.program, Populations: slices.Clone(pops), Score: score}}})
			if c.stratified {
				spec := Stratifier{Code: StratifierSpecialist}
				for i, code := range c.strata {
					p, s := c.cells(i+1, g)
					spec.Strata = append(spec.Strata, Stratum{System: SpecialistSystem(c.program), Code: code, Populations: p, Score: s})
				}
				grp.Stratifiers = append(grp.Stratifiers, spec)
			}
			r.Groups = append(r.Groups, grp)
		}
		out = append(out, r)
	}
	return out
}

// cells are a group's counts and score at one level, as suppression left them.
func (c *computed) cells(level int, g *groupDef) ([]Count, Score) {
	t, hidden := c.levels[level], c.hidden[level]
	pops := make([]Count, len(g.populations))
	for i, p := range g.populations {
		n, masked := t.count(p.cell, &hidden)
		pops[i] = Count{Population: p.code, Value: n, State: Exact}
		if masked {
			pops[i] = Count{Population: p.code, State: Masked}
		}
	}
	var s Score
	switch g.score {
	case scoreRate:
		num, den := t.n[g.num], t.n[g.den]
		switch {
		case hidden[g.num] || hidden[g.den]:
			s.State = Masked
		case den > 0:
			s = Score{Value: round(float64(num)/float64(den), 4), State: Exact}
		}
	case scoreMedianWage:
		s = c.median(t.wages, hidden[g.num], 2)
		if s.State == Exact {
			s.Unit = c.currency + "/h"
		}
	case scoreTotalEarnings:
		switch {
		case hidden[cellEarn]:
			s = Score{State: Masked}
		case t.n[cellN1] > 0:
			s = Score{Value: round(t.earnings, 2), Unit: c.currency, State: Exact}
		}
	case scoreMedianDays:
		days := t.days
		if g.num == cellG {
			days = t.jobDays
		}
		s = c.median(intsToFloats(days), hidden[g.num], 1)
		if s.State == Exact {
			s.Unit = "d"
		}
	case scoreMedianWeeks:
		s = c.median(t.tenure, hidden[g.num], 1)
		if s.State == Exact {
			s.Unit = "wk"
		}
	case scoreMeanCaseload:
		n, masked := t.count(g.num, &hidden)
		k := len(t.specialists)
		if t.specialists[""] {
			k-- // clients with no specialist are on the caseload, but no one's
		}
		switch {
		case masked:
			s.State = Masked
		case n > 0 && k > 0:
			s = Score{Value: round(float64(n)/float64(k), 1), Unit: "{clients}", State: Exact}
		}
	}
	return pops, s
}

// count is a cell's count at a level and whether it is withheld
// (cellOnCaseload: D − E, withheld unless both are shown).
func (t *tally) count(c cell, hidden *[numShown]bool) (int, bool) {
	if c == cellOnCaseload {
		return t.n[cellD] - t.n[cellE], hidden[cellD] || hidden[cellE]
	}
	return t.n[c], hidden[c]
}

// median is withheld for fewer clients than the threshold, and whenever
// the count of clients it is of is withheld: a median shown next to a
// withheld count would tell that the count is not small, and "no median"
// that it is zero.
func (c *computed) median(xs []float64, countHidden bool, decimals int) Score {
	switch {
	case countHidden:
		return Score{State: Masked}
	case len(xs) == 0:
		return Score{}
	case len(xs) < c.threshold:
		return Score{State: Masked}
	}
	return Score{Value: round(median(xs), decimals), State: Exact}
}

// median is the middle value, or the mean of the two middle values.
func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

func intsToFloats(xs []int) []float64 {
	out := make([]float64, len(xs))
	for i, x := range xs {
		out[i] = float64(x)
	}
	return out
}

func round(x float64, decimals int) float64 {
	p := math.Pow10(decimals)
	return math.Round(x*p) / p
}
