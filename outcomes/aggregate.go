package outcomes

import (
	"cmp"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"time"
)

// InputError is a problem with one input of an aggregation; Index is its
// position (from 0) among the inputs, so a caller can name the file.
type InputError struct {
	Index int
	Err   error
}

func (e *InputError) Error() string { return fmt.Sprintf("input %d: %v", e.Index+1, e.Err) }
func (e *InputError) Unwrap() error { return e.Err }

// AggregateOptions configure an aggregation.
type AggregateOptions struct {
	// Date is when the aggregate is produced, its MeasureReport.date (kept
	// in UTC, to the second). Required: the package has no clock.
	Date time.Time
	// Reporter identifies the organization that publishes the aggregate
	// (an HIE, a state agency), its MeasureReport.reporter. Optional, but
	// without it the aggregate names no reporter and so does not claim the
	// DEQM Summary MeasureReport profile, which requires one. The system
	// is an absolute URI other than SystemProgram (an aggregate is not a
	// program's report); the value is 1 to 256 printable ASCII characters
	// without spaces.
	Reporter Identifier
}

// ErrProgramAudience is the error of an aggregation input that is a
// program's own report (AudienceProgram): it counts clients whose consent
// does not allow HIE reporting, so it is not for an HIE to add up.
var ErrProgramAudience = errors.New("is a program's own report, which counts clients without HIE consent: aggregate the reports written for HIEs (ipsfhir report --json --for hie)")

// ErrBadReporter is the error of an aggregation whose Reporter is not a
// usable identifier. It quotes neither part.
var ErrBadReporter = errors.New("outcomes: the reporter must be an identifier with a system (an absolute URI other than " + SystemProgram + ") and a value (1 to 256 printable characters, no spaces)")

var (
	uriPattern        = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9+.\-]*:[!-~]+$`)
	identifierPattern = regexp.MustCompile(`^[!-~]{1,256}$`)
)

// validReporter reports whether id can be an aggregate's reporter.
func validReporter(id Identifier) bool {
	return id.System != SystemProgram && uriPattern.MatchString(id.System) && identifierPattern.MatchString(id.Value)
}

// Aggregate adds up summary MeasureReports of several programs for the same
// measure and quarter (JSON, one MeasureReport per input, as Report.JSON
// writes them) into one MeasureReport: counts add, rates are recomputed,
// strata are kept per program and per specialist. A sum that includes a
// withheld count is not exact: it is reported withheld, with the sum of the
// cells shown as a lower bound, and a score built on it is withheld too.
// Medians cannot be added up and are reported unsupported. The aggregate's
// date and reporter come from o. Inputs of another measure or quarter, a
// program counted twice, or a program's own report (ErrProgramAudience)
// are errors of type *InputError.
func Aggregate(reports [][]byte, o AggregateOptions) ([]byte, error) {
	rs := make([]*Report, 0, len(reports))
	for i, data := range reports {
		got, err := ParseJSON(data)
		if err != nil {
			return nil, &InputError{Index: i, Err: err}
		}
		if len(got) != 1 {
			return nil, &InputError{Index: i, Err: errors.New("holds more than one MeasureReport")}
		}
		rs = append(rs, got[0])
	}
	agg, err := AggregateReports(rs, o)
	if err != nil {
		return nil, err
	}
	return agg.JSON()
}

// AggregateBundles is Aggregate for inputs that are each a MeasureReport or
// a Bundle of them (what `ipsfhir report --json` writes): every input must
// hold the same measures, each once, for the same quarter. It returns one
// aggregate per measure, in Measures order.
func AggregateBundles(docs [][]byte, o AggregateOptions) ([]*Report, error) {
	if len(docs) == 0 {
		return nil, errors.New("outcomes: nothing to aggregate")
	}
	if err := o.Validate(); err != nil {
		return nil, err
	}
	byMeasure := make([]map[string]*Report, len(docs))
	for i, data := range docs {
		rs, err := ParseJSON(data)
		if err != nil {
			return nil, &InputError{Index: i, Err: err}
		}
		byMeasure[i] = map[string]*Report{}
		for _, r := range rs {
			if byMeasure[i][r.Measure] != nil {
				return nil, &InputError{Index: i, Err: fmt.Errorf("holds measure %s twice", r.Measure)}
			}
			byMeasure[i][r.Measure] = r
		}
	}
	var out []*Report
	for _, id := range Measures() {
		var rs []*Report
		for i := range docs {
			r, ok := byMeasure[i][id]
			switch {
			case ok && i > 0 && len(rs) == 0:
				return nil, &InputError{Index: i, Err: fmt.Errorf("holds measure %s, which input 1 does not", id)}
			case !ok && len(rs) > 0:
				return nil, &InputError{Index: i, Err: fmt.Errorf("lacks measure %s, which input 1 holds", id)}
			case ok:
				rs = append(rs, r)
			}
		}
		if len(rs) == 0 {
			continue
		}
		agg, err := AggregateReports(rs, o)
		if err != nil {
			return nil, err
		}
		out = append(out, agg)
	}
	return out, nil
}

// AggregateReports is Aggregate on parsed reports. Inputs may themselves be
// aggregates, as long as no program is in two of them.
func AggregateReports(rs []*Report, o AggregateOptions) (*Report, error) {
	if len(rs) == 0 {
		return nil, errors.New("outcomes: nothing to aggregate")
	}
	if err := o.Validate(); err != nil {
		return nil, err
	}
	first := rs[0]
	m := measureByID(first.Measure)
	if m == nil {
		return nil, &InputError{Index: 0, Err: fmt.Errorf("unknown measure %q", first.Measure)}
	}
	out := &Report{Measure: m.id, Quarter: first.Quarter, Date: reportDate(o.Date), Reporter: o.Reporter, Audience: AudienceHIE}
	// Every input withholds its exclusion counts (an HIE's reports do), so
	// the aggregate states the reasons and withholds the counts too.
	for _, reason := range ExcludedReasons(AudienceHIE) {
		out.Excluded = append(out.Excluded, Exclusion{Reason: reason, State: Masked})
	}
	seen := map[string]int{}
	for i, r := range rs {
		switch {
		case r.Measure != m.id:
			return nil, &InputError{Index: i, Err: fmt.Errorf("is a report of measure %s, not %s as input 1 is", r.Measure, m.id)}
		case r.Quarter != first.Quarter:
			return nil, &InputError{Index: i, Err: fmt.Errorf("is for %s, not %s as input 1 is", r.Quarter, first.Quarter)}
		case r.Audience == AudienceProgram:
			return nil, &InputError{Index: i, Err: ErrProgramAudience}
		}
		programs := programsOf(r)
		if len(programs) == 0 {
			return nil, &InputError{Index: i, Err: errors.New("names no program")}
		}
		for _, p := range programs {
			if j, dup := seen[p]; dup {
				return nil, &InputError{Index: i, Err: fmt.Errorf("counts program %s, which input %d counts too", p, j+1)}
			}
			seen[p] = i
		}
		if r.Threshold > 0 && (out.Threshold == 0 || r.Threshold < out.Threshold) {
			out.Threshold = r.Threshold
		}
	}
	for gi := range m.groups {
		gd := &m.groups[gi]
		groups := make([]*Group, len(rs))
		for i, r := range rs {
			if groups[i] = r.Group(gd.code); groups[i] == nil {
				return nil, &InputError{Index: i, Err: fmt.Errorf("has no group %s", gd.code)}
			}
		}
		g, err := aggregateGroup(gd, rs, groups)
		if err != nil {
			return nil, err
		}
		out.Groups = append(out.Groups, g)
	}
	return out, nil
}

// Validate says what is wrong with o, if anything: ErrNoDate, or
// ErrBadReporter.
func (o AggregateOptions) Validate() error {
	if o.Date.IsZero() {
		return ErrNoDate
	}
	if o.Reporter != (Identifier{}) && !validReporter(o.Reporter) {
		return ErrBadReporter
	}
	return nil
}

// programsOf lists the programs a report counts: its program strata, or
// the reporting program.
func programsOf(r *Report) []string {
	var out []string
	if len(r.Groups) > 0 {
		if s := r.Groups[0].Stratifier(StratifierProgram); s != nil {
			for _, st := range s.Strata {
				out = append(out, st.Code)
			}
		}
	}
	if len(out) == 0 && r.Program != "" {
		out = append(out, r.Program)
	}
	return out
}

func aggregateGroup(gd *groupDef, rs []*Report, groups []*Group) (Group, error) {
	g := Group{Code: gd.code}
	for _, pd := range gd.populations {
		sum := Count{Population: pd.code, State: Exact}
		for _, in := range groups {
			v, exact := lowerBound(in, pd.code)
			sum.Value += v
			if !exact {
				sum.State = AtLeast
			}
		}
		g.Populations = append(g.Populations, sum)
	}
	score, err := aggregateScore(gd, &g, groups)
	if err != nil {
		return Group{}, err
	}
	g.Score = score

	prog := Stratifier{Code: StratifierProgram}
	spec := Stratifier{Code: StratifierSpecialist}
	specSeen := map[[2]string]bool{}
	for i, in := range groups {
		if s := in.Stratifier(StratifierProgram); s != nil {
			prog.Strata = append(prog.Strata, cloneStrata(s.Strata)...)
		} else {
			prog.Strata = append(prog.Strata, Stratum{System: SystemProgram, Code: rs[i].Program, Populations: slices.Clone(in.Populations), Score: in.Score})
		}
		if s := in.Stratifier(StratifierSpecialist); s != nil {
			for _, st := range s.Strata {
				k := [2]string{st.System, st.Code}
				if specSeen[k] {
					return Group{}, &InputError{Index: i, Err: fmt.Errorf("group %s: a specialist stratum is also in another input", gd.code)}
				}
				specSeen[k] = true
			}
			spec.Strata = append(spec.Strata, cloneStrata(s.Strata)...)
		}
	}
	byCoding := func(a, b Stratum) int { return cmp.Or(cmp.Compare(a.System, b.System), cmp.Compare(a.Code, b.Code)) }
	slices.SortFunc(prog.Strata, byCoding)
	slices.SortFunc(spec.Strata, byCoding)
	g.Stratifiers = []Stratifier{prog, spec}
	return g, nil
}

func cloneStrata(ss []Stratum) []Stratum {
	out := make([]Stratum, len(ss))
	for i, s := range ss {
		s.Populations = slices.Clone(s.Populations)
		out[i] = s
	}
	return out
}

// lowerBound is the most an input group's population is known to be at
// least: the count when it is shown (exact), else the best of its own lower
// bound and the sums of the strata shown in each stratifier (strata
// partition the group, and a withheld cell is at least 0).
func lowerBound(g *Group, population string) (int, bool) {
	c := g.Count(population)
	if c.State == Exact {
		return c.Value, true
	}
	best := 0
	if c.State == AtLeast {
		best = c.Value
	}
	for _, s := range g.Stratifiers {
		sum := 0
		for _, st := range s.Strata {
			if sc := st.Count(population); sc.State == Exact || sc.State == AtLeast {
				sum += sc.Value
			}
		}
		best = max(best, sum)
	}
	return best, false
}

func aggregateScore(gd *groupDef, g *Group, groups []*Group) (Score, error) {
	switch gd.score {
	case scoreRate:
		num, den := g.Count(PopulationNumerator), g.Count(PopulationDenominator)
		switch {
		case num.State != Exact || den.State != Exact:
			return Score{State: Masked}, nil
		case den.Value == 0:
			return Score{}, nil
		}
		return Score{Value: round(float64(num.Value)/float64(den.Value), 4), State: Exact}, nil
	case scoreMedianWage, scoreMedianDays, scoreMedianWeeks, scoreMeanCaseload:
		// Medians do not add up; nor does a mean per specialist, whose
		// number of specialists the reports do not carry.
		if n := g.Count(PopulationMeasure); n.State == Exact && n.Value == 0 {
			return Score{}, nil
		}
		return Score{State: Unsupported}, nil
	case scoreTotalEarnings:
		return addEarnings(g, groups)
	}
	return Score{}, nil
}

// addEarnings adds the inputs' total earnings, all in one currency.
func addEarnings(g *Group, groups []*Group) (Score, error) {
	sum := Score{State: Exact}
	anyone := false
	for i, in := range groups {
		s := in.Score
		if s.Unit != "" {
			if sum.Unit != "" && s.Unit != sum.Unit {
				return Score{}, &InputError{Index: i, Err: errors.New("earnings are in another currency than input 1's")}
			}
			sum.Unit = s.Unit
		}
		switch s.State {
		case Exact:
			sum.Value += s.Value
			anyone = true
			continue
		case NoValue:
			if n := in.Count(PopulationMeasure); n.State == Exact && n.Value == 0 {
				continue // nobody worked: earnings 0
			}
		case AtLeast:
			sum.Value += s.Value
			anyone = true
			sum.State = AtLeast
			continue
		}
		// Withheld: the strata shown are a lower bound.
		sum.State = AtLeast
		anyone = true
		best := 0.0
		for _, st := range in.Stratifiers {
			part := 0.0
			for _, x := range st.Strata {
				if x.Score.State == Exact || x.Score.State == AtLeast {
					part += x.Score.Value
					if sum.Unit == "" {
						sum.Unit = x.Score.Unit
					}
				}
			}
			best = max(best, part)
		}
		sum.Value += best
	}
	if !anyone {
		return Score{}, nil
	}
	if n := g.Count(PopulationMeasure); n.State == Exact && n.Value == 0 {
		return Score{}, nil
	}
	sum.Value = round(sum.Value, 2)
	return sum, nil
}
