package outcomes

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
)

// Interval reasoning for the suppression audit: what a reader can conclude
// about a withheld count from everything a quarter's reports publish.
//
// The reader's knowledge is modelled as a polytope over the leaves (every
// stratum's disjoint pieces, see suppress.go), all ≥ 0:
//
//   - each shown count equals its value (strata and the program's total, in
//     all reports together, zeros included);
//   - the identities: the five ways of cutting a stratum's caseload add up
//     to the same number;
//   - the containments: a count of one cut is at most a count of another
//     that contains it (G ≤ N1, G ≤ J, R90 ≤ N1);
//   - each withheld count that is not zero is at least 1 (zeros are shown,
//     so a withheld cell is known not to be zero);
//   - each withheld count that is small (primary) is at most threshold−1:
//     the reader is assumed to know which withheld cells are small, the
//     worst case, though the marks do not say.
//
// For a small count (withheld, or a difference of two nested counts that no
// report shows) the least and the most it can be on that polytope are two
// linear programs. The count is protected when that range holds at least
// Protection whole numbers. The programs are relaxations (a reader who
// reasons over whole numbers may narrow a range further only where the
// polytope's corners are not whole; the tests attack the adversarial
// caseloads' published JSON with a linear model of their own).

// vec is a sparse linear form over the leaves (stratum·numLeaves + leaf):
// absent keys are zero. Coefficients are 0 and ±1.
type vec map[int]float64

// DefaultProtection is the least number of values a withheld small count
// must remain able to take, given everything published: 3.
const DefaultProtection = 3

// errAudit is a polytope without a point: the published counts are always
// feasible (the data satisfy them), so this is an internal error.
var errAudit = errors.New("outcomes: internal error: the suppression audit's linear program failed")

// polytope is the reader's knowledge for one pattern of withheld cells.
// Its constraints fall apart into independent parts (components: no
// constraint shares a leaf with another component's), each kept in the
// standard form the simplex takes: A·z = b, z ≥ 0, where z is the
// component's leaves followed by one slack per inequality, at a feasible
// corner (phase 1 done). A form's least and most are the sums of its
// parts' in each component.
type polytope struct {
	comps []*component
	// comp is each constrained leaf's component.
	comp map[int]*component
	// known are the leaves a stratum's own shown counts give (see
	// leafShown), with their values: the rows use them as constants, and
	// the linear programs are only over the rest (a presolve: the polytope
	// is the same).
	known map[int]float64
}

// component is one independent part of a polytope.
type component struct {
	tab     *tableau
	col     map[int]int // leaf → column
	cols    int
	scratch *tableau // reused by the range questions: the audit's (one goroutine)
	// ranges are the answers given on this component, by cost vector:
	// the audit asks the same questions of the same parts many times.
	ranges map[string]compRange
}

type compRange struct {
	min, max float64
	bounded  bool
}

// maxComponents bounds an audit's cache of components (their tableaux).
const maxComponents = 512

// polytope builds the reader's knowledge when hidden is withheld.
func (a *audit) polytope(hidden withheld) (*polytope, error) {
	type row struct {
		v     vec
		b     float64
		slack float64 // 0 equality, -1 for ≥, +1 for ≤
	}
	var rows []row
	known := map[int]float64{}
	for s := range len(a.levels) - 1 {
		for l := range numLeaves {
			if leafShown(&hidden[s+1], l) {
				known[s*numLeaves+l] = float64(a.levels[s+1].leafCount(l))
			}
		}
	}
	// add appends the row v·z (= ≥ ≤ by slack) b with the known leaves
	// moved to the right-hand side; a row left with no unknown holds on the
	// data and says nothing more.
	add := func(r row) {
		for k, x := range r.v {
			if val, ok := known[k]; ok {
				r.b -= x * val
				delete(r.v, k)
			}
		}
		if len(r.v) > 0 {
			rows = append(rows, r)
		}
	}
	for s := range len(a.levels) - 1 {
		dShown := !hidden[s+1][cellD]
		for _, id := range identities {
			v := vec{}
			for _, l := range id[1] {
				v[s*numLeaves+l] = -1
			}
			if dShown {
				// The cut adds up to the D shown (id[0] is D's own form,
				// whose row is there): the cuts stay independent parts.
				add(row{v: v, b: -float64(a.levels[s+1].n[cellD])})
				continue
			}
			for _, l := range id[0] {
				v[s*numLeaves+l] = 1
			}
			add(row{v: v})
		}
		for _, c := range containments {
			v := vec{}
			for _, l := range forms[c[0]].leaves {
				v[s*numLeaves+l] += 1
			}
			for _, l := range forms[c[1]].leaves {
				v[s*numLeaves+l] -= 1
			}
			add(row{v: v, slack: 1}) // c[0] − c[1] ≤ 0
		}
	}
	for l := range a.levels {
		for c := range numCounts {
			v, n := a.vector(l, c), a.levels[l].n[c]
			switch {
			case len(v) == 0: // a level with no strata
			case !hidden[l][c]:
				add(row{v: v, b: float64(n)})
			case n >= 1:
				add(row{v: v, b: 1, slack: -1})
				if a.small(n) {
					add(row{v: a.vector(l, c), b: float64(a.threshold - 1), slack: 1})
				}
			}
		}
	}
	p := &polytope{comp: map[int]*component{}, known: known}
	// Components: union-find over the leaves the rows share.
	parent := map[int]int{}
	var find func(int) int
	find = func(k int) int {
		if parent[k] != k {
			parent[k] = find(parent[k])
		}
		return parent[k]
	}
	for _, r := range rows {
		first := -1
		for _, k := range slices.Sorted(maps.Keys(r.v)) {
			if _, ok := parent[k]; !ok {
				parent[k] = k
			}
			if first < 0 {
				first = k
			} else {
				parent[find(k)] = find(first)
			}
		}
	}
	rowsOf := map[int][]row{}
	var roots []int
	for _, r := range rows {
		var k0 int
		for k := range r.v {
			k0 = k
			break
		}
		root := find(k0)
		if _, ok := rowsOf[root]; !ok {
			roots = append(roots, root)
		}
		rowsOf[root] = append(rowsOf[root], r)
	}
	for _, root := range roots {
		rs := rowsOf[root]
		// A component with exactly the rows of one built before (most of
		// the polytope, when one cell more is withheld or shown) is that
		// component: its feasible corner and its answers are reused.
		var fp strings.Builder
		for _, r := range rs {
			for _, k := range slices.Sorted(maps.Keys(r.v)) {
				fmt.Fprintf(&fp, "%d:%g,", k, r.v[k])
			}
			fmt.Fprintf(&fp, "=%g/%g;", r.b, r.slack)
		}
		if c, ok := a.components[fp.String()]; ok {
			for k := range c.col {
				p.comp[k] = c
			}
			p.comps = append(p.comps, c)
			continue
		}
		c := &component{col: map[int]int{}, ranges: map[string]compRange{}, scratch: &a.lp.scratch}
		nslack := 0
		for _, r := range rs {
			for _, k := range slices.Sorted(maps.Keys(r.v)) {
				if _, ok := c.col[k]; !ok {
					c.col[k] = len(c.col)
					p.comp[k] = c
				}
			}
			if r.slack != 0 {
				nslack++
			}
		}
		c.cols = len(c.col) + nslack
		m := make([][]float64, len(rs))
		b := make([]float64, len(rs))
		sl := len(c.col)
		for i, r := range rs {
			m[i] = make([]float64, c.cols)
			for k, x := range r.v {
				m[i][c.col[k]] = x
			}
			if r.slack != 0 {
				m[i][sl] = r.slack
				sl++
			}
			b[i] = r.b
		}
		tab, err := feasibleIn(&a.lp.phase1, m, b, c.cols)
		if err != nil {
			// The data satisfy every constraint: this cannot happen.
			return nil, errAudit
		}
		c.tab = tab
		p.comps = append(p.comps, c)
		if a.components == nil || len(a.components) >= maxComponents {
			a.components = map[string]*component{}
		}
		a.components[fp.String()] = c
	}
	return p, nil
}

// rng is the least and the most form v can be on the polytope, as whole
// numbers (math.MaxInt when it is unbounded above).
func (p *polytope) rng(v vec) (lo, hi int) {
	konst := 0.0 // the known leaves' part of v
	costs := map[*component][]float64{}
	var order []*component
	for _, k := range slices.Sorted(maps.Keys(v)) {
		x := v[k]
		if val, ok := p.known[k]; ok {
			konst += x * val
			continue
		}
		c, ok := p.comp[k]
		if !ok {
			// A leaf no constraint mentions can be anything.
			return 0, math.MaxInt
		}
		if costs[c] == nil {
			costs[c] = make([]float64, c.cols)
			order = append(order, c)
		}
		costs[c][c.col[k]] = x
	}
	minSum, maxSum, bounded := konst, konst, true
	for _, c := range order {
		cost := costs[c]
		key := fmt.Sprint(cost)
		r, ok := c.ranges[key]
		if !ok {
			r.min, _ = c.tab.minimizeIn(c.scratch, cost) // bounded: every leaf is at least 0
			for j := range cost {
				cost[j] = -cost[j]
			}
			var maxF float64
			maxF, r.bounded = c.tab.minimizeIn(c.scratch, cost)
			r.max = -maxF
			if c.ranges != nil {
				c.ranges[key] = r
			}
		}
		minSum += r.min
		bounded = bounded && r.bounded
		maxSum += r.max
	}
	lo = int(math.Ceil(minSum - 1e-6))
	if !bounded {
		return lo, math.MaxInt
	}
	return lo, int(math.Floor(maxSum + 1e-6))
}
