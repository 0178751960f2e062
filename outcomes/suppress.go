package outcomes

import (
	"errors"
	"slices"
)

// Small-cell suppression (see the package doc for the rule and why).
//
// The audit models one quarter's counts of one program exactly: every count
// any report shows is a sum of "leaves", the counts of the disjoint pieces
// the nested sets cut each stratum into, and the total is the sum of the
// strata. A cell is withheld when its value is small; the audit then asks,
// with exact linear algebra, whether any small cell (shown-but-withheld, or
// one of the differences of nested counts no report shows, such as the
// active clients who did not work) is a linear combination of the cells
// still shown. If one is, one more cell of that combination is withheld,
// and the audit runs again, until no small cell can be derived. Last, each
// withheld cell that is not small is shown again if that reveals nothing.
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
	numLeaves
)

// numCounts is the number of counts reports show: the cells before cellEarn.
const numCounts = int(cellEarn)

// formDef is a count as a sum of leaves. The first numCounts forms are the
// counts reports show, in cell order; the rest are the differences of
// nested shown counts, which no report shows but subtraction would reveal.
type formDef struct {
	name   string
	leaves []int
}

var forms = []formDef{
	cellD:  {"D", []int{leafN2, leafN1Under20, leafNotN1}},
	cellN1: {"N1", []int{leafN2, leafN1Under20}},
	cellN2: {"N2", []int{leafN2}},
	cellE:  {"E", []int{leafW, leafCLate, leafENoContact}},
	cellC:  {"C", []int{leafW, leafCLate}},
	cellW:  {"W", []int{leafW}},
	cellF:  {"F", []int{leafF}},
	cellJ:  {"J", []int{leafF, leafJOther}},
	// Differences of nested counts.
	numCounts + 0:  {"D-N1", []int{leafNotN1}},
	numCounts + 1:  {"D-N2", []int{leafN1Under20, leafNotN1}},
	numCounts + 2:  {"N1-N2", []int{leafN1Under20}},
	numCounts + 3:  {"D-E", []int{leafNotE}},
	numCounts + 4:  {"D-C", []int{leafENoContact, leafNotE}},
	numCounts + 5:  {"D-W", []int{leafCLate, leafENoContact, leafNotE}},
	numCounts + 6:  {"E-C", []int{leafENoContact}},
	numCounts + 7:  {"E-W", []int{leafCLate, leafENoContact}},
	numCounts + 8:  {"C-W", []int{leafCLate}},
	numCounts + 9:  {"D-F", []int{leafNotF}},
	numCounts + 10: {"J-F", []int{leafJOther}},
}

// identities hold in every stratum whatever the data: the three ways of
// cutting D add up to the same D.
var identities = [][2][]int{
	{{leafN2, leafN1Under20, leafNotN1}, {leafW, leafCLate, leafENoContact, leafNotE}},
	{{leafN2, leafN1Under20, leafNotN1}, {leafF, leafNotF}},
}

// leafCount is one of a stratum's leaves.
func (t *tally) leafCount(l int) int {
	n := &t.n
	switch l {
	case leafN2:
		return n[cellN2]
	case leafN1Under20:
		return n[cellN1] - n[cellN2]
	case leafNotN1:
		return n[cellD] - n[cellN1]
	case leafW:
		return n[cellW]
	case leafCLate:
		return n[cellC] - n[cellW]
	case leafENoContact:
		return n[cellE] - n[cellC]
	case leafNotE:
		return n[cellD] - n[cellE]
	case leafF:
		return n[cellF]
	case leafNotF:
		return n[cellD] - n[cellF]
	case leafJOther:
		return n[cellJ] - n[cellF]
	}
	return 0
}

// withheld says which shown cells a level withholds; level 0 is the whole
// program, level 1+s is stratum s.
type withheld [][numShown]bool

var errCannotProtect = errors.New("outcomes: internal error: small-cell suppression found no cell to withhold")

// suppress decides which cells to withhold. levels[0] is the program's
// total, levels[1:] its strata, which partition it.
func suppress(levels []*tally, threshold int) (withheld, error) {
	a := &audit{levels: levels, threshold: threshold}
	hidden := make(withheld, len(levels))
	for l := range levels {
		for c := range numCounts {
			hidden[l][c] = a.sensitive(l, c)
		}
	}
	// Withhold one more cell at a time until no small cell can be derived.
	for {
		ids, ok := a.disclosure(hidden)
		if !ok {
			break
		}
		best := -1
		for _, id := range ids {
			if id >= len(levels)*numCounts {
				continue // an identity, not a cell
			}
			if best < 0 || a.cheaper(id, best) {
				best = id
			}
		}
		if best < 0 {
			return nil, errCannotProtect
		}
		hidden[best/numCounts][best%numCounts] = true
	}
	// A cell withheld early may have become unnecessary once later ones
	// were: show again, most informative first, every complement whose
	// showing reveals nothing.
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
		if _, ok := a.disclosure(hidden); ok {
			hidden[l][c] = true
		}
	}
	for l := range hidden {
		hidden[l][cellEarn] = hidden[l][cellN1]
	}
	return hidden, nil
}

type audit struct {
	levels    []*tally
	threshold int
}

// disclosure finds a small count that the counts shown (all but hidden)
// determine, and returns the equations of one derivation of it: counts
// (id level·numCounts + cell) and identities (ids from len(levels)·numCounts).
func (a *audit) disclosure(hidden withheld) ([]int, bool) {
	b := a.span(hidden)
	for l := range a.levels {
		for f := range forms {
			if !a.sensitive(l, f) || (f < numCounts && !hidden[l][f]) {
				continue
			}
			if ids, ok := b.derive(a.vector(l, f)); ok {
				return ids, true
			}
		}
	}
	return nil, false
}

// small reports whether a count must not be shown: 1 to threshold-1.
func (a *audit) small(n int) bool { return n >= 1 && n < a.threshold }

// sensitive reports whether the form at a level is a small count.
func (a *audit) sensitive(level, f int) bool {
	t := a.levels[level]
	n := 0
	for _, l := range forms[f].leaves {
		n += t.leafCount(l)
	}
	return a.small(n)
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
			v[s*numLeaves+l] = one()
		}
	}
	return v
}

// span is what the counts shown and the identities make known.
func (a *audit) span(hidden withheld) *basis {
	b := &basis{}
	id := len(a.levels) * numCounts
	for s := range len(a.levels) - 1 {
		for _, eq := range identities {
			v := vec{}
			for _, l := range eq[0] {
				v[s*numLeaves+l] = one()
			}
			for _, l := range eq[1] {
				v[s*numLeaves+l] = one().neg()
			}
			b.add(id, v)
			id++
		}
	}
	for l := range a.levels {
		for c := range numCounts {
			if !hidden[l][c] {
				b.add(l*numCounts+c, a.vector(l, c))
			}
		}
	}
	return b
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
