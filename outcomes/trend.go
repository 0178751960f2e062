package outcomes

import (
	"slices"

	"github.com/ipsfhir/ipsfhir/ips"
)

// The trend page's audit: what one page of quarters shows, audited
// together.
//
// Each quarter and each twelve-month period is suppressed on its own
// (suppress.go). A page that shows several of them side by side publishes
// more than each does alone, because the periods are linked:
//
//   - the clients served in a year are those on the caseload on its first
//     day and those enrolled in it: D_y(q) = D(q−3) + E(q−2) + E(q−1) +
//     E(q), an equation between the year's served count and four
//     quarters' counts (≤ when a client counted in the year was enrolled
//     again in it: one person, two enrollment episodes);
//   - the clients served in a quarter and not in the one before were
//     enrolled in it: D(q) ≤ D(q−1) + E(q);
//   - whoever was served, or worked, in a quarter was served, or worked,
//     in each year that contains it: D_y ≥ D(q), N1_y ≥ N1(q), N2_y ≥ N2(q).
//
// ComputeTrend models the page's program-level counts (the page shows no
// strata) as one polytope over count variables, every quarter's nesting and
// containments and the relations above included, with the three quarters
// before the first (which the first years reach back to) as unknowns, and
// asks for every small count the page withholds, and every difference of
// nested counts, the least and the most it can be. Where a range holds
// fewer than Protection values, it withholds more on the page: the counts
// the small count is made of first, then a year's figure (the page's own
// addition), then a quarter's.

// Trend is one quarter of a trend page: the quarter's reports and those of
// the twelve months ending with it (ComputeRolling's groups), as the page
// may show them together.
type Trend struct {
	Quarter Quarter
	Reports []*Report
	Rolling []*Report
}

// rollingCells are the counts a page shows of a twelve-month period.
var rollingCells = []cell{cellD, cellN1, cellN2}

// ComputeTrend computes the quarters' reports and their twelve-month
// reports for a page that shows them side by side, and withholds what the
// page must so that no small count it withholds can be narrowed, from
// everything it shows, below the protection range (see above). The
// reports are for the page: a quarter's program-level figures may be
// withheld here and shown in its own MeasureReports, which are audited
// alone (publish one or the other for a quarter, or both knowing that).
// quarters must be consecutive, in order.
func ComputeTrend(clients []*ips.Client, quarters []Quarter, o Options) ([]Trend, error) {
	if o.Date.IsZero() {
		return nil, ErrNoDate
	}
	for i, q := range quarters {
		if !q.Valid() || !q.Add(-3).Valid() || (i > 0 && q != quarters[i-1].Add(1)) {
			return nil, ErrBadQuarter
		}
	}
	qs := make([]*computed, len(quarters))
	ys := make([]*computed, len(quarters))
	for i, q := range quarters {
		var err error
		if qs[i], err = compute(clients, q, o); err != nil {
			return nil, err
		}
		if ys[i], err = computeOver(clients, q, rollingYear{q}, o); err != nil {
			return nil, err
		}
	}
	if len(quarters) > 0 {
		t := &trendAudit{quarters: qs, years: ys, threshold: qs[0].threshold, protection: qs[0].protection,
			reenrolled: reenrolledIn(clients, quarters, o)}
		if err := t.suppress(); err != nil {
			return nil, err
		}
	}
	out := make([]Trend, len(quarters))
	for i, q := range quarters {
		out[i] = Trend{Quarter: q, Reports: qs[i].reports()}
		for _, r := range ys[i].reports() {
			r.Groups = slices.DeleteFunc(r.Groups, func(g Group) bool { return !RollingGroup(g.Code) })
			if len(r.Groups) > 0 {
				out[i].Rolling = append(out[i].Rolling, r)
			}
		}
		for _, r := range append(slices.Clone(out[i].Reports), out[i].Rolling...) {
			r.Date = reportDate(o.Date)
		}
		for _, r := range out[i].Rolling {
			r.Rolling = true
		}
	}
	return out, nil
}

// trendAudit is the page's audit. Variables: for each of the quarters and
// the three before them (before), every count of numCounts; then for each
// year, its rollingCells.
type trendAudit struct {
	quarters, years       []*computed
	threshold, protection int
	// reenrolled[i]: a client counted in year i was enrolled again in it,
	// so D_y < D(q−3) + E(q−2) + E(q−1) + E(q) (see reenrolledIn).
	reenrolled []bool
	lp         lpWork
}

// reenrolledIn says, for the year ending with each quarter, whether a
// client counted in it is counted more than once in D(q−3) + E(q−2) +
// E(q−1) + E(q): served in its first quarter and enrolled again later in
// it, or enrolled in two of its later quarters (a client with several
// enrollment episodes). Otherwise, every client served in the year is in
// exactly one of those terms (one served in a later quarter and not in
// the first was enrolled in that quarter or the one between), and the
// year's D is their sum.
func reenrolledIn(clients []*ips.Client, quarters []Quarter, o Options) []bool {
	out := make([]bool, len(quarters))
	for i, q := range quarters {
		for _, c := range clients {
			if c == nil || len(c.Enrollments()) < 2 || (o.Audience == AudienceHIE && !o.Consents(c)) {
				continue
			}
			ens := c.Enrollments()
			n := 0
			if served(ens, q.Add(-3)) {
				n++
			}
			for j := -2; j <= 0; j++ {
				if slices.ContainsFunc(ens, func(e ips.Episode) bool { return q.Add(j).Contains(e.EnrolledOn) }) {
					n++
				}
			}
			if n > 1 {
				out[i] = true
				break
			}
		}
	}
	return out
}

// before is how many quarters before the first the years reach back to.
const before = 3

func (t *trendAudit) qvar(i int, c cell) int { return (i+before)*numCounts + int(c) }

func (t *trendAudit) yvar(i int, c cell) int {
	return (len(t.quarters)+before)*numCounts + i*len(rollingCells) + slices.Index(rollingCells, c)
}

func (t *trendAudit) nvars() int {
	return (len(t.quarters)+before)*numCounts + len(t.years)*len(rollingCells)
}

// trendTarget is a small count to protect: a linear form over the
// variables.
type trendTarget struct {
	v vec
}

// suppress withholds on the page until every small count is protected.
func (t *trendAudit) suppress() error {
	a := &audit{threshold: t.threshold, protection: t.protection}
	var targets []trendTarget
	for i, c := range t.quarters {
		for f := range forms {
			if n := c.levels[0].formCount(f); a.small(n) {
				targets = append(targets, trendTarget{v: t.formVec(i, f)})
			}
		}
	}
	for i, y := range t.years {
		n := y.levels[0].n
		for _, c := range rollingCells {
			if a.small(n[c]) {
				targets = append(targets, trendTarget{v: vec{t.yvar(i, c): 1}})
			}
		}
		for _, d := range [][2]cell{{cellD, cellN1}, {cellN1, cellN2}, {cellD, cellN2}} {
			if a.small(n[d[0]] - n[d[1]]) {
				targets = append(targets, trendTarget{v: vec{t.yvar(i, d[0]): 1, t.yvar(i, d[1]): -1}})
			}
		}
	}
	if len(targets) == 0 {
		return nil
	}
	p, err := t.polytope()
	if err != nil {
		return err
	}
	for _, tg := range targets {
		for {
			lo, hi := p.rng(tg.v)
			if a.wide(lo, hi) {
				break
			}
			withheld, err := t.withholdFor(tg, lo, hi)
			if err != nil {
				return err
			}
			if !withheld {
				return errCannotProtect
			}
			if p, err = t.polytope(); err != nil {
				return err
			}
		}
	}
	return nil
}

// withholdFor withholds one more shown non-zero count on the page for a
// target whose range is [lo0, hi0]: a year's count before a quarter's,
// the first whose withholding widens the range (the first of all when
// none does alone). It reports false when nothing is left to withhold.
func (t *trendAudit) withholdFor(tg trendTarget, lo0, hi0 int) (bool, error) {
	type cand struct {
		c    *computed
		cell cell
		v    int // its variable
	}
	// The target's own counts first, then the years' (the page's
	// addition), then the quarters'.
	var direct, yearly, quarterly []cand
	for i, y := range t.years {
		for _, c := range rollingCells {
			if !y.hidden[0][c] && y.levels[0].n[c] != 0 {
				yearly = append(yearly, cand{y, c, t.yvar(i, c)})
			}
		}
	}
	for i, q := range t.quarters {
		for c := range cell(numCounts) {
			if !q.hidden[0][c] && q.levels[0].n[c] != 0 {
				quarterly = append(quarterly, cand{q, c, t.qvar(i, c)})
			}
		}
	}
	for _, k := range append(slices.Clone(yearly), quarterly...) {
		if _, ok := tg.v[k.v]; ok {
			direct = append(direct, k)
		}
	}
	cands := append(append(direct, yearly...), quarterly...)
	if len(cands) == 0 {
		return false, nil
	}
	// Trying every candidate is a polytope each: the first few suffice
	// in practice, and withholding the first is always progress.
	for _, k := range cands[:min(len(cands), 16)] {
		k.c.hidden[0][k.cell] = true
		p, err := t.polytope()
		if err != nil {
			return false, err
		}
		if lo, hi := p.rng(tg.v); lo < lo0 || hi > hi0 {
			t.hide(k.c, k.cell)
			return true, nil
		}
		k.c.hidden[0][k.cell] = false
	}
	t.hide(cands[0].c, cands[0].cell)
	return true, nil
}

// hide withholds a program-level count on the page, and the earnings with
// the working count, as the reports do.
func (t *trendAudit) hide(c *computed, x cell) {
	c.hidden[0][x] = true
	if x == cellN1 {
		c.hidden[0][cellEarn] = true
	}
}

// formVec is form f of quarter i over the count variables: each leaf is
// the difference of two counts (leafCells).
func (t *trendAudit) formVec(i, f int) vec {
	v := vec{}
	add := func(l int, sign float64) {
		c := leafCells[l]
		v[t.qvar(i, c[0])] += sign
		if c[1] != noCell {
			v[t.qvar(i, c[1])] -= sign
		}
	}
	for _, l := range forms[f].leaves {
		add(l, 1)
	}
	for _, l := range forms[f].minus {
		add(l, -1)
	}
	for k, x := range v {
		if x == 0 {
			delete(v, k)
		}
	}
	return v
}

// trendNesting: the first count is at most the second, in every period:
// each leaf that is the difference of two counts (leafCells), and the
// containments between cuts.
var trendNesting = func() [][2]cell {
	var out [][2]cell
	for _, lc := range leafCells {
		if lc[1] != noCell {
			out = append(out, [2]cell{lc[1], lc[0]})
		}
	}
	return append(out, containments...)
}()

// polytope is what a reader of the page knows, as the audit's polytope
// type (its leaves are the count variables here, all ≥ 0).
func (t *trendAudit) polytope() (*polytope, error) {
	type row struct {
		v     vec
		b     float64
		slack float64
	}
	var rows []row
	le := func(v vec, b float64) { rows = append(rows, row{v: v, b: b, slack: 1}) }
	eq := func(v vec, b float64) { rows = append(rows, row{v: v, b: b}) }
	for i := -before; i < len(t.quarters); i++ {
		for _, n := range trendNesting {
			le(vec{t.qvar(i, n[0]): 1, t.qvar(i, n[1]): -1}, 0)
		}
		if i > -before {
			// D(q) ≤ D(q−1) + E(q)
			le(vec{t.qvar(i, cellD): 1, t.qvar(i-1, cellD): -1, t.qvar(i, cellE): -1}, 0)
		}
	}
	known := func(c *computed, x cell, v int) {
		n := c.levels[0].n[x]
		switch {
		case !c.hidden[0][x]:
			eq(vec{v: 1}, float64(n))
		case n >= 1:
			rows = append(rows, row{v: vec{v: 1}, b: 1, slack: -1})
			if n < t.threshold {
				le(vec{v: 1}, float64(t.threshold-1))
			}
		}
	}
	for i, q := range t.quarters {
		for x := range cell(numCounts) {
			known(q, x, t.qvar(i, x))
		}
	}
	for i, y := range t.years {
		for _, x := range rollingCells {
			known(y, x, t.yvar(i, x))
		}
		le(vec{t.yvar(i, cellN2): 1, t.yvar(i, cellN1): -1}, 0)
		le(vec{t.yvar(i, cellN1): 1, t.yvar(i, cellD): -1}, 0)
		// D_y = D(q−3) + E(q−2) + E(q−1) + E(q); with a client enrolled
		// again in the year, only ≤ holds (and D_y ≥ D(q−3), E(q) from
		// the containments below).
		if t.reenrolled[i] {
			le(vec{t.yvar(i, cellD): 1, t.qvar(i-3, cellD): -1, t.qvar(i-2, cellE): -1, t.qvar(i-1, cellE): -1, t.qvar(i, cellE): -1}, 0)
		} else {
			eq(vec{t.yvar(i, cellD): 1, t.qvar(i-3, cellD): -1, t.qvar(i-2, cellE): -1, t.qvar(i-1, cellE): -1, t.qvar(i, cellE): -1}, 0)
		}
		for j := i - 3; j <= i; j++ {
			for _, x := range rollingCells {
				le(vec{t.qvar(j, x): 1, t.yvar(i, x): -1}, 0)
			}
		}
	}
	// One component: the periods are chained.
	comp := &component{col: map[int]int{}, scratch: &t.lp.scratch}
	nslack := 0
	for _, r := range rows {
		if r.slack != 0 {
			nslack++
		}
	}
	for k := range t.nvars() {
		comp.col[k] = k
	}
	comp.cols = t.nvars() + nslack
	m := make([][]float64, len(rows))
	b := make([]float64, len(rows))
	s := t.nvars()
	for i, r := range rows {
		m[i] = make([]float64, comp.cols)
		for k, x := range r.v {
			m[i][k] += x
		}
		if r.slack != 0 {
			m[i][s] = r.slack
			s++
		}
		b[i] = r.b
	}
	tab, err := feasibleIn(&t.lp.phase1, m, b, comp.cols)
	if err != nil {
		return nil, errAudit
	}
	comp.tab = tab
	p := &polytope{comp: map[int]*component{}, known: map[int]float64{}, comps: []*component{comp}}
	for k := range t.nvars() {
		p.comp[k] = comp
	}
	return p, nil
}
