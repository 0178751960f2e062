package outcomes

import (
	"errors"
	"maps"
	"math"
	"slices"
)

// Interval reasoning for the suppression audit: what a reader can conclude
// about a withheld count from everything a quarter's reports publish.
//
// The reader's knowledge is modelled as a polytope over the leaves (every
// stratum's disjoint pieces, see suppress.go), all ≥ 0:
//
//   - each shown count equals its value (strata and the program's total, in
//     all reports together, zeros included);
//   - the identities: the three ways of cutting a stratum's caseload add up
//     to the same number;
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

// polytope is the reader's knowledge for one pattern of withheld cells, in
// the standard form the simplex takes: A·z = b, z ≥ 0, where z is the
// leaves that appear in a constraint followed by one slack per inequality,
// at a feasible corner (phase 1 done).
type polytope struct {
	tab  *tableau // nil when there are no constraints at all
	col  map[int]int
	cols int
}

// polytope builds the reader's knowledge when hidden is withheld.
func (a *audit) polytope(hidden withheld) (*polytope, error) {
	type row struct {
		v     vec
		b     float64
		slack float64 // 0 equality, -1 for ≥, +1 for ≤
	}
	var rows []row
	for s := range len(a.levels) - 1 {
		for _, id := range identities {
			v := vec{}
			for _, l := range id[0] {
				v[s*numLeaves+l] = 1
			}
			for _, l := range id[1] {
				v[s*numLeaves+l] = -1
			}
			rows = append(rows, row{v: v})
		}
	}
	for l := range a.levels {
		for c := range numCounts {
			v, n := a.vector(l, c), a.levels[l].n[c]
			switch {
			case len(v) == 0: // a level with no strata
			case !hidden[l][c]:
				rows = append(rows, row{v: v, b: float64(n)})
			case n >= 1:
				rows = append(rows, row{v: v, b: 1, slack: -1})
				if a.small(n) {
					rows = append(rows, row{v: v, b: float64(a.threshold - 1), slack: 1})
				}
			}
		}
	}
	p := &polytope{col: map[int]int{}}
	for _, r := range rows {
		for _, k := range slices.Sorted(maps.Keys(r.v)) {
			if _, ok := p.col[k]; !ok {
				p.col[k] = len(p.col)
			}
		}
	}
	nslack := 0
	for _, r := range rows {
		if r.slack != 0 {
			nslack++
		}
	}
	p.cols = len(p.col) + nslack
	if len(rows) == 0 {
		return p, nil
	}
	m := make([][]float64, len(rows))
	b := make([]float64, len(rows))
	s := len(p.col)
	for i, r := range rows {
		m[i] = make([]float64, p.cols)
		for k, x := range r.v {
			m[i][p.col[k]] = x
		}
		if r.slack != 0 {
			m[i][s] = r.slack
			s++
		}
		b[i] = r.b
	}
	tab, err := feasible(m, b, p.cols)
	if err != nil {
		// The data satisfy every constraint: this cannot happen.
		return nil, errAudit
	}
	p.tab = tab
	return p, nil
}

// rng is the least and the most form v can be on the polytope, as whole
// numbers (math.MaxInt when it is unbounded above).
func (p *polytope) rng(v vec) (lo, hi int) {
	c := make([]float64, p.cols)
	for k, x := range v {
		j, ok := p.col[k]
		if !ok {
			// A leaf no constraint mentions can be anything.
			return 0, math.MaxInt
		}
		c[j] = x
	}
	if p.tab == nil {
		return 0, math.MaxInt
	}
	minF, _ := p.tab.minimize(c) // bounded: every leaf is at least 0
	lo = int(math.Ceil(minF - 1e-6))
	for j := range c {
		c[j] = -c[j]
	}
	maxF, bounded := p.tab.minimize(c)
	if !bounded {
		return lo, math.MaxInt
	}
	return lo, int(math.Floor(-maxF + 1e-6))
}
