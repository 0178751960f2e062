package outcomes

import (
	"errors"
	"math"
	"slices"
	"strings"
)

// Small-cell suppression (see the package doc for the rule and why).
//
// The audit models one quarter's counts of one program exactly: every count
// any report shows is a sum of "leaves", the counts of the disjoint pieces
// the nested sets cut each stratum into, and the total is the sum of the
// strata. Every count from 1 to threshold−1 is withheld (primary). Then,
// for each small count (withheld, or one of the differences of nested
// counts no report shows, such as the active clients who did not work),
// interval reasoning (interval.go) finds the least and the most a reader
// can conclude it is from everything shown; while that range holds fewer
// than Protection values, one more cell is withheld (complementary). Last,
// each complement is shown again if every small count stays protected.
//
// Earnings are not audited on their own: a program's or a stratum's
// earnings are withheld exactly when its count of competitively employed
// clients is. That count's pattern already keeps every small count from
// being the only withheld cell of the strata sum, which is the one relation
// earnings are in; and it keeps a shown amount from telling that a withheld
// count is not small.

// Leaves: per stratum, the disjoint pieces of the nested sets.
const (
	leafN2         = iota // held a competitive job of 20+ hours
	leafN1Under20         // N1 − N2
	leafNotN1             // D − N1
	leafW                 // first employer contact within 30 days
	leafCLate             // C − W
	leafENoContact        // E − C
	leafNotE              // D − E
	leafF                 // first job since enrollment started in the quarter
	leafNotF              // D − F
	leafJOther            // J − F: job starts that were not a client's first
	leafGB                // B: first competitive job started, benefits planning before it
	leafGNoB              // G − B
	leafNotG              // D − G
	leafR90               // R90: first competitive job reached 90 days, still held then
	leafRLost             // R − R90
	leafNotR              // D − R
	numLeaves
)

// numCounts is the number of counts reports show: the cells before cellEarn.
const numCounts = int(cellEarn)

// formDef is a count as a sum of leaves less a sum of others (minus, only
// for a difference of counts from two cuts, one known to contain the
// other). The first numCounts forms are the counts reports show, in cell
// order; the rest are the differences of nested shown counts, which no
// report shows but subtraction would reveal.
type formDef struct {
	name   string
	leaves []int
	minus  []int
}

var forms = []formDef{
	cellD:   {"D", []int{leafN2, leafN1Under20, leafNotN1}, nil},
	cellN1:  {"N1", []int{leafN2, leafN1Under20}, nil},
	cellN2:  {"N2", []int{leafN2}, nil},
	cellE:   {"E", []int{leafW, leafCLate, leafENoContact}, nil},
	cellC:   {"C", []int{leafW, leafCLate}, nil},
	cellW:   {"W", []int{leafW}, nil},
	cellF:   {"F", []int{leafF}, nil},
	cellJ:   {"J", []int{leafF, leafJOther}, nil},
	cellG:   {"G", []int{leafGB, leafGNoB}, nil},
	cellB:   {"B", []int{leafGB}, nil},
	cellR:   {"R", []int{leafR90, leafRLost}, nil},
	cellR90: {"R90", []int{leafR90}, nil},
	// Differences of nested counts.
	numCounts + 0:  {"D-N1", []int{leafNotN1}, nil},
	numCounts + 1:  {"D-N2", []int{leafN1Under20, leafNotN1}, nil},
	numCounts + 2:  {"N1-N2", []int{leafN1Under20}, nil},
	numCounts + 3:  {"D-E", []int{leafNotE}, nil},
	numCounts + 4:  {"D-C", []int{leafENoContact, leafNotE}, nil},
	numCounts + 5:  {"D-W", []int{leafCLate, leafENoContact, leafNotE}, nil},
	numCounts + 6:  {"E-C", []int{leafENoContact}, nil},
	numCounts + 7:  {"E-W", []int{leafCLate, leafENoContact}, nil},
	numCounts + 8:  {"C-W", []int{leafCLate}, nil},
	numCounts + 9:  {"D-F", []int{leafNotF}, nil},
	numCounts + 10: {"J-F", []int{leafJOther}, nil},
	numCounts + 11: {"D-G", []int{leafNotG}, nil},
	numCounts + 12: {"D-B", []int{leafGNoB, leafNotG}, nil},
	numCounts + 13: {"G-B", []int{leafGNoB}, nil},
	numCounts + 14: {"D-R", []int{leafNotR}, nil},
	numCounts + 15: {"D-R90", []int{leafRLost, leafNotR}, nil},
	numCounts + 16: {"R-R90", []int{leafRLost}, nil},
	// Differences across cuts, of counts one contains the other's
	// (containments).
	numCounts + 17: {"N1-G", []int{leafN2, leafN1Under20}, []int{leafGB, leafGNoB}},
	numCounts + 18: {"J-G", []int{leafF, leafJOther}, []int{leafGB, leafGNoB}},
	numCounts + 19: {"N1-R90", []int{leafN2, leafN1Under20}, []int{leafR90}},
}

// identities hold in every stratum whatever the data: the five ways of
// cutting D add up to the same D.
var identities = [][2][]int{
	{{leafN2, leafN1Under20, leafNotN1}, {leafW, leafCLate, leafENoContact, leafNotE}},
	{{leafN2, leafN1Under20, leafNotN1}, {leafF, leafNotF}},
	{{leafN2, leafN1Under20, leafNotN1}, {leafGB, leafGNoB, leafNotG}},
	{{leafN2, leafN1Under20, leafNotN1}, {leafR90, leafRLost, leafNotR}},
}

// containments hold in every stratum whatever the data, between counts of
// different cuts: the first is at most the second. G ≤ N1 and R90 ≤ N1: a
// competitive job that started in the period, or was still held on its
// 90th day in it, was held in the period. G ≤ J: each G client's first
// competitive job is one of the period's job starts. (F ≤ J is within the
// J cut.) Whatever else a reader knows about how the cuts meet follows
// from these: the counts shown never say which clients are in two cuts.
var containments = [][2]cell{
	{cellG, cellN1},
	{cellG, cellJ},
	{cellR90, cellN1},
}

// leafCells says what each leaf is in counts a report shows: the first
// cell less the second (noCell: nothing), two neighbours in one cut.
var leafCells = [numLeaves][2]cell{
	leafN2:         {cellN2, noCell},
	leafN1Under20:  {cellN1, cellN2},
	leafNotN1:      {cellD, cellN1},
	leafW:          {cellW, noCell},
	leafCLate:      {cellC, cellW},
	leafENoContact: {cellE, cellC},
	leafNotE:       {cellD, cellE},
	leafF:          {cellF, noCell},
	leafNotF:       {cellD, cellF},
	leafJOther:     {cellJ, cellF},
	leafGB:         {cellB, noCell},
	leafGNoB:       {cellG, cellB},
	leafNotG:       {cellD, cellG},
	leafR90:        {cellR90, noCell},
	leafRLost:      {cellR, cellR90},
	leafNotR:       {cellD, cellR},
}

// noCell: a leaf that is a shown count itself.
const noCell cell = -1

// leafCount is one of a stratum's leaves.
func (t *tally) leafCount(l int) int {
	c := leafCells[l]
	n := t.n[c[0]]
	if c[1] != noCell {
		n -= t.n[c[1]]
	}
	return n
}

// leafShown reports whether a stratum's leaf is known from that stratum's
// shown counts alone: both counts it is the difference of are shown.
func leafShown(hidden *[numShown]bool, l int) bool {
	c := leafCells[l]
	return !hidden[c[0]] && (c[1] == noCell || !hidden[c[1]])
}

// withheld says which shown cells a level withholds; level 0 is the whole
// program, level 1+s is stratum s.
type withheld [][numShown]bool

// errCannotProtect: no more cells can be withheld, and a small count is
// still not protected.
var errCannotProtect = errors.New("outcomes: small-cell suppression cannot protect every small count")

// suppress decides which cells to withhold so that every small count keeps
// at least protection possible values (see interval.go). levels[0] is the
// program's total, levels[1:] its strata, which partition it.
func suppress(levels []*tally, threshold, protection int) (withheld, error) {
	a := &audit{levels: levels, threshold: threshold, protection: protection}
	hidden := make(withheld, len(levels))
	for l := range levels {
		for c := range numCounts {
			hidden[l][c] = a.sensitive(l, c)
		}
	}
	// The small counts to protect: withheld cells and differences of
	// nested counts, at every level.
	// Strata first, the program's totals last: a stratum's protection
	// usually comes from other strata, and the totals are the figures most
	// readers want.
	var targets []target
	for i := range levels {
		l := (i + 1) % len(levels)
		for f := range forms {
			if a.sensitive(l, f) {
				targets = append(targets, target{level: l, form: f})
			}
		}
	}
	// Withholding a cell only widens what a reader can conclude, so a
	// count once protected stays protected while more cells are withheld:
	// each target is settled once, in order.
	// The polytope is built again only when a cell is withheld.
	p, err := a.polytope(hidden)
	if err != nil {
		return nil, err
	}
	for _, t := range targets {
		for {
			lo, hi := p.rng(a.vector(t.level, t.form))
			if a.wide(lo, hi) {
				break
			}
			c, err := a.complement(hidden, t, lo, hi)
			if err != nil {
				return nil, err
			}
			hidden[c/numCounts][c%numCounts] = true
			if p, err = a.polytope(hidden); err != nil {
				return nil, err
			}
		}
	}
	// A cell withheld early may have become unnecessary once later ones
	// were: show again, most informative first, every complement whose
	// showing leaves every small count protected.
	var complements []int
	for l := range levels {
		for c := range numCounts {
			if hidden[l][c] && !a.sensitive(l, c) {
				complements = append(complements, l*numCounts+c)
			}
		}
	}
	slices.SortFunc(complements, func(x, y int) int {
		switch {
		case a.cheaper(y, x):
			return -1
		case a.cheaper(x, y):
			return 1
		}
		return 0
	})
	for _, id := range complements {
		l, c := id/numCounts, id%numCounts
		hidden[l][c] = false
		ok, err := a.allProtected(hidden, targets)
		if err != nil {
			return nil, err
		}
		if !ok {
			hidden[l][c] = true
		}
	}
	for l := range hidden {
		hidden[l][cellEarn] = hidden[l][cellN1]
	}
	return hidden, nil
}

type audit struct {
	levels     []*tally
	threshold  int
	protection int
	// components are the polytopes' parts built so far, by their rows
	// (see polytope): one audit builds hundreds of polytopes that differ
	// in a few rows.
	components map[string]*component
	lp         lpWork
}

// target is a small count to protect: form f at a level.
type target struct{ level, form int }

// wide reports whether a range holds at least a.protection whole numbers.
func (a *audit) wide(lo, hi int) bool { return hi == math.MaxInt || hi-lo+1 >= a.protection }

func (a *audit) allProtected(hidden withheld, targets []target) (bool, error) {
	p, err := a.polytope(hidden)
	if err != nil {
		return false, err
	}
	for _, t := range targets {
		if t.form < numCounts && !hidden[t.level][t.form] {
			return false, nil
		}
		if !a.wide(p.rng(a.vector(t.level, t.form))) {
			return false, nil
		}
	}
	return true, nil
}

// complement picks the next cell to withhold for target t, whose range is
// now [lo0, hi0]: among the shown non-zero cells, in the order below, the
// first whose withholding widens t's range; the first of all when no single
// one does (several together will).
func (a *audit) complement(hidden withheld, t target, lo0, hi0 int) (int, error) {
	// Candidates by how directly they bear on t, then by cost: the cells
	// of t's own level that share a leaf with it, the same cells in the
	// strata (a stratum is the total minus the others; a total is the sum
	// of the strata), the program's totals, then the rest.
	related := func(c int) bool {
		if x, y, ok := strings.Cut(forms[t.form].name, "-"); ok && (forms[c].name == x || forms[c].name == y) {
			return true // one of the two counts a difference is made of
		}
		for _, l := range forms[c].leaves {
			if slices.Contains(forms[t.form].leaves, l) {
				return true
			}
		}
		return false
	}
	tier := func(id int) int {
		l, c := id/numCounts, id%numCounts
		switch {
		case l == t.level && related(c):
			return 0
		case l != 0 && related(c):
			return 1
		case l == 0 && related(c):
			return 2
		}
		return 3
	}
	// A zero is never withheld: zeros are shown, so a reader takes every
	// withheld cell for at least 1, and a withheld zero would only make
	// that reasoning wrong in ways the audit cannot count on.
	var cands []int
	for l := range a.levels {
		for c := range numCounts {
			if !hidden[l][c] && a.levels[l].n[c] != 0 {
				cands = append(cands, l*numCounts+c)
			}
		}
	}
	if len(cands) == 0 {
		return 0, errCannotProtect
	}
	slices.SortFunc(cands, func(x, y int) int {
		if tx, ty := tier(x), tier(y); tx != ty {
			return tx - ty
		}
		switch {
		case a.cheaper(x, y):
			return -1
		case a.cheaper(y, x):
			return 1
		}
		return 0
	})
	v := a.vector(t.level, t.form)
	for _, id := range cands {
		l, c := id/numCounts, id%numCounts
		hidden[l][c] = true
		p, err := a.polytope(hidden)
		hidden[l][c] = false
		if err != nil {
			return 0, err
		}
		lo, hi := p.rng(v)
		if lo < lo0 || hi > hi0 {
			return id, nil
		}
	}
	return cands[0], nil
}

// small reports whether a count must not be shown: 1 to threshold-1.
func (a *audit) small(n int) bool { return n >= 1 && n < a.threshold }

// sensitive reports whether the form at a level is a small count.
func (a *audit) sensitive(level, f int) bool {
	return a.small(a.levels[level].formCount(f))
}

// formCount is form f's value in a tally.
func (t *tally) formCount(f int) int {
	n := 0
	for _, l := range forms[f].leaves {
		n += t.leafCount(l)
	}
	for _, l := range forms[f].minus {
		n -= t.leafCount(l)
	}
	return n
}

// vector is the form at a level over the unknowns (stratum, leaf).
func (a *audit) vector(level, f int) vec {
	v := vec{}
	strata := []int{level - 1}
	if level == 0 {
		strata = strata[:0]
		for s := range len(a.levels) - 1 {
			strata = append(strata, s)
		}
	}
	for _, s := range strata {
		for _, l := range forms[f].leaves {
			v[s*numLeaves+l] = 1
		}
		for _, l := range forms[f].minus {
			v[s*numLeaves+l] = -1
		}
	}
	return v
}

// cheaper orders candidate complements, cheapest first: a stratum before
// the program's total (the total is the figure most readers want), a
// non-zero count before a zero (withholding a zero protects little), a
// small count before a large one (less information lost), then a fixed
// order.
func (a *audit) cheaper(x, y int) bool {
	kx, ky := a.costKey(x), a.costKey(y)
	for i := range kx {
		if kx[i] != ky[i] {
			return kx[i] < ky[i]
		}
	}
	return false
}

func (a *audit) costKey(id int) [5]int {
	level, c := id/numCounts, id%numCounts
	size := a.levels[level].n[c]
	total, zero := 0, 0
	if level == 0 {
		total = 1
	}
	if size == 0 {
		zero = 1
	}
	return [5]int{total, zero, size, c, level}
}
