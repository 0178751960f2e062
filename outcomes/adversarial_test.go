package outcomes

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"gonum.org/v1/gonum/mat"
	"gonum.org/v1/gonum/optimize/convex/lp"

	"github.com/ipsfhir/ipsfhir/ips"
	"github.com/ipsfhir/ipsfhir/ips/synth"
)

// An attacker independent of the audit: it reads the published FHIR JSON
// (readPublished) and works on its own model: one unknown per level and
// base count (D, N1, N2, E, C, W, F, J, G, B, R, R90), the nesting of the
// counts as inequalities (N2 ≤ N1 ≤ D, W ≤ C ≤ E ≤ D, F ≤ D, F ≤ J,
// B ≤ G ≤ D, R90 ≤ R ≤ D, G ≤ N1, G ≤ J, R90 ≤ N1), the strata
// adding up to the program, every shown number, every withheld count at
// least 1 (zeros are shown) and, as the worst case, at most threshold−1
// where it is small in truth, which the marks do not say. A difference such
// as D−N1 is a combination of two unknowns. It solves the programs with
// this package's simplex (TestSimplexAgreesWithGonum holds that to gonum's)
// and, where the program is small, with gonum's as well.

var baseCounts = []string{"D", "N1", "N2", "E", "C", "W", "F", "J", "G", "B", "R", "R90"}

// lpAttack returns the least and the most the published numbers allow for
// each of the quantities asked (level, quantity).
func lpAttack(t *testing.T, pub published, levels []string, real published, threshold int, ask [][2]string) map[[2]string]interval {
	t.Helper()
	all := append([]string{""}, levels...)
	idx := map[[2]string]int{}
	for _, l := range all {
		for _, q := range baseCounts {
			idx[[2]string{l, q}] = len(idx)
		}
	}
	n := len(idx)
	type row struct {
		coef  map[int]float64
		b     float64
		slack float64 // 0 =, +1 ≤, -1 ≥
	}
	var rows []row
	at := func(l, q string) int { return idx[[2]string{l, q}] }
	for _, l := range all {
		for _, p := range [][2]string{{"N2", "N1"}, {"N1", "D"}, {"W", "C"}, {"C", "E"}, {"E", "D"}, {"F", "D"}, {"F", "J"},
			{"B", "G"}, {"G", "D"}, {"R90", "R"}, {"R", "D"}, {"G", "N1"}, {"G", "J"}, {"R90", "N1"}} {
			rows = append(rows, row{coef: map[int]float64{at(l, p[0]): 1, at(l, p[1]): -1}, slack: 1})
		}
		// Differences shown as such (the caseload on the first day, D−E).
		for q, v := range pub[l] {
			if x, y, ok := strings.Cut(q, "-"); ok {
				rows = append(rows, row{coef: map[int]float64{at(l, x): 1, at(l, y): -1}, b: v})
			}
		}
		for _, q := range baseCounts {
			k := at(l, q)
			if v, ok := pub[l][q]; ok {
				rows = append(rows, row{coef: map[int]float64{k: 1}, b: v})
				continue
			}
			rows = append(rows, row{coef: map[int]float64{k: 1}, b: 1, slack: -1})
			if v := real[l][q]; v >= 1 && v < float64(threshold) {
				rows = append(rows, row{coef: map[int]float64{k: 1}, b: float64(threshold - 1), slack: 1})
			}
		}
	}
	if len(levels) > 0 {
		for _, q := range baseCounts {
			coef := map[int]float64{at("", q): 1}
			for _, l := range levels {
				coef[at(l, q)] = -1
			}
			rows = append(rows, row{coef: coef})
		}
	}
	slacks := 0
	for _, r := range rows {
		if r.slack != 0 {
			slacks++
		}
	}
	cols := n + slacks
	a := make([][]float64, len(rows))
	b := make([]float64, len(rows))
	k := n
	for i, r := range rows {
		a[i] = make([]float64, cols)
		for j, c := range r.coef {
			a[i][j] = c
		}
		if r.slack != 0 {
			a[i][k] = r.slack
			k++
		}
		b[i] = r.b
	}
	tab, err := feasible(a, b, cols)
	if err != nil {
		t.Fatalf("attacker: the published numbers have no solution: %v", err)
	}
	// One scratch for every question, as the audit does: a fresh copy of
	// the tableau per question made most of the package's allocations,
	// and under -race each is checked when allocated and freed.
	var scratch tableau
	out := map[[2]string]interval{}
	for _, key := range ask {
		c := make([]float64, cols)
		x, y, diff := strings.Cut(key[1], "-")
		c[at(key[0], x)] = 1
		if diff {
			c[at(key[0], y)] = -1
		}
		lo, _ := tab.minimizeIn(&scratch, c)
		for j := range c {
			c[j] = -c[j]
		}
		hi, bounded := tab.minimizeIn(&scratch, c)
		hi = -hi
		if !bounded {
			hi = math.Inf(1)
		}
		out[key] = interval{math.Ceil(lo - 1e-6), math.Floor(hi + 1e-6)}
	}
	if cols <= 200 {
		// Small enough for gonum's simplex (full row rank: rows without
		// a slack of their own get one fixed at zero by an extra row).
		crossCheck(t, a, b, cols, out, func(key [2]string) []float64 {
			c := make([]float64, cols)
			x, y, diff := strings.Cut(key[1], "-")
			c[at(key[0], x)] = 1
			if diff {
				c[at(key[0], y)] = -1
			}
			return c
		})
	}
	return out
}

// crossCheck solves the attacker's minima again with gonum's lp.Simplex,
// where its rows are independent, and wants the same answers.
func crossCheck(t *testing.T, a [][]float64, b []float64, cols int, got map[[2]string]interval, cost func([2]string) []float64) {
	t.Helper()
	if len(a) > cols {
		return // more rows than columns: dependent, gonum cannot take them
	}
	dense := mat.NewDense(len(a), cols, nil)
	for i := range a {
		dense.SetRow(i, a[i])
	}
	for key, iv := range got {
		want, _, err := lp.Simplex(cost(key), dense, b, 1e-9, nil)
		if err != nil {
			return // dependent rows: gonum cannot say
		}
		if math.Ceil(want-1e-6) != iv.lo {
			t.Errorf("attacker: least %v: %v, gonum %v", key, iv.lo, want)
		}
	}
}

// checkProtected publishes the reports of clients at a threshold and fails
// t for every small count the LP attacker narrows to fewer than
// DefaultProtection values (or the threshold−1 a small count can range
// over, when that is fewer). It returns how many small counts it checked.
func checkProtected(t *testing.T, name string, clients []*ips.Client, q Quarter, threshold int) int {
	t.Helper()
	b, err := BundleJSON(computeT(t, clients, q, threshold))
	if err != nil {
		t.Fatal(err)
	}
	pub, levels := readPublished(t, b)
	real := truth(t, clients, q)
	var ask [][2]string
	for _, l := range append([]string{""}, levels...) {
		for _, qn := range attackQuantities {
			v := real[l][qn]
			if _, shown := pub[l][qn]; qn == "EARN" || shown || v < 1 || v >= float64(threshold) {
				continue
			}
			ask = append(ask, [2]string{l, qn})
		}
	}
	iv := lpAttack(t, pub, levels, real, threshold, ask)
	need := float64(min(DefaultProtection, threshold-1))
	checked := 0
	for key, x := range iv {
		v := real[key[0]][key[1]]
		if v < x.lo || v > x.hi {
			t.Fatalf("%s: attacker bug: %s of %q = %v outside [%v, %v]", name, key[1], key[0], v, x.lo, x.hi)
		}
		checked++
		if x.hi-x.lo+1 < need {
			t.Errorf("%s: %s of %q (%v) is withheld but the published numbers narrow it to [%v, %v]", name, key[1], key[0], v, x.lo, x.hi)
		}
	}
	return checked
}

// onePerSpecialist is a caseload where every client has a specialist of
// their own, the case that pinned 360 withheld cells of a 2026Q3 report
// under the old audit: every stratum is 1, so each is the program's total
// less the shown strata, and a reader who knows a withheld count is at
// least 1 finds each one exactly.
//
// Some find a first competitive job in the quarter (G), some of those after
// benefits planning (B), and some enrolled in March reach their first
// job's 90th day in the quarter (R), still in it or not (R90).
func onePerSpecialist(n int) []*ips.Client {
	var cs []*ips.Client
	for i := range n {
		enrolled := "2026-07-01"
		if i%5 == 1 {
			enrolled = "2026-03-02"
		}
		c := client(fmt.Sprintf("p%02d", i), fmt.Sprintf("Specialist %02d", i), enrolled)
		if i%2 == 0 {
			c.Jobs = []*ips.Job{job("j1", "2026-07-15", "", 25, 17, true)}
		}
		if i%5 == 1 {
			end := ""
			if i%10 == 1 {
				end = "2026-05-20"
			}
			c.Jobs = append(c.Jobs, job("j0", "2026-04-10", end, 20, 16, true))
		}
		if i%3 == 0 {
			c.Supports = []*ips.Support{contact("s1", "2026-07-08", ips.SupportCompleted)}
		}
		if i%4 == 0 {
			c.Supports = append(c.Supports, benefits("s2", "2026-07-10", ips.SupportCompleted))
		}
		cs = append(cs, c)
	}
	return cs
}

// allButOneStratumZero: one specialist has every client who did anything;
// the others' strata are all zeros but their caseload.
func allButOneStratumZero() []*ips.Client {
	var cs []*ips.Client
	for i := range 14 {
		c := client(fmt.Sprintf("a%02d", i), "Busy Specialist", "2026-07-02")
		c.Jobs = []*ips.Job{job("j1", "2026-08-01", "", 22, 18, true)}
		c.Supports = []*ips.Support{contact("s1", "2026-07-10", ips.SupportCompleted)}
		cs = append(cs, c)
	}
	for i := range 3 {
		cs = append(cs, client(fmt.Sprintf("b%02d", i), fmt.Sprintf("Quiet Specialist %d", i), "2025-01-10"))
	}
	return cs
}

// justAboveThreshold: program totals of 11 to 13 (shown at threshold 11),
// split over strata of 5 to 7, so that the total minus one stratum is the
// other, and a difference of two shown totals is small.
func justAboveThreshold() []*ips.Client {
	var cs []*ips.Client
	for i := range 12 {
		sp := "North Team"
		if i%2 == 1 {
			sp = "South Team"
		}
		c := client(fmt.Sprintf("t%02d", i), sp, "2026-07-01")
		if i < 11 {
			c.Jobs = []*ips.Job{job("j1", "2026-07-20", "", 15+float64(i), 16, true)}
		}
		if i < 11 {
			c.Supports = []*ips.Support{contact("s1", "2026-07-05", ips.SupportCompleted)}
		}
		if i < 10 { // G = 11 first competitive jobs, B = 10 after benefits planning
			c.Supports = append(c.Supports, benefits("s2", "2026-07-06", ips.SupportCompleted))
		}
		cs = append(cs, c)
	}
	return cs
}

// The adversarial caseloads hold small counts of every kind, the new
// measures' included, so the attack asks about each.
func TestAdversarialCaseloadsHoldEverySmallCount(t *testing.T) {
	seen := map[string]bool{}
	for _, cs := range [][]*ips.Client{onePerSpecialist(12), onePerSpecialist(30), allButOneStratumZero(), justAboveThreshold()} {
		for _, v := range truth(t, cs, q3) {
			for _, q := range baseCounts {
				if v[q] >= 1 && v[q] < DefaultThreshold {
					seen[q] = true
				}
			}
		}
	}
	for _, q := range baseCounts {
		if !seen[q] {
			t.Errorf("no adversarial caseload has a small %s", q)
		}
	}
}

func TestAdversarialCaseloadsLeaveNoSmallCountNarrowed(t *testing.T) {
	for _, tc := range []struct {
		name    string
		clients []*ips.Client
	}{
		{"one client per specialist, 12", onePerSpecialist(12)},
		{"one client per specialist, 30", onePerSpecialist(30)},
		{"all zeros but one stratum", allButOneStratumZero()},
		{"totals just above the threshold", justAboveThreshold()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			for _, th := range []int{5, DefaultThreshold} {
				if n := checkProtected(t, fmt.Sprintf("%s, threshold %d", tc.name, th), tc.clients, q3, th); n == 0 {
					t.Errorf("threshold %d: no small count to check; the caseload tests nothing", th)
				}
			}
		})
	}
}

func TestSyntheticCaseloadsLeaveNoSmallCountNarrowed(t *testing.T) {
	for seed := range uint64(4) {
		n := 40 + int(seed)*45
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			t.Parallel()
			cl := synth.Generate(rand.New(rand.NewPCG(seed, 11)), n)
			for _, th := range []int{5, DefaultThreshold} {
				checkProtected(t, fmt.Sprintf("seed %d, %d clients, threshold %d", seed, n, th), cl.Clients, q3, th)
			}
		})
	}
}

// TestTheOldAuditPinnedOnePerSpecialist shows what the interval reasoning
// fixes: with only the small counts withheld and every complement the old
// rule chose, a reader who knows withheld counts are at least 1 pins the
// strata of a one-client-per-specialist caseload. Here, the same reader
// with the rule as it is now finds nothing narrower than the protection.
func TestTheOldAuditPinnedOnePerSpecialist(t *testing.T) {
	clients := onePerSpecialist(12)
	// Primary suppression only, as the old rule left a row whose total is
	// shown and whose strata are all small: the total pins them.
	rs := computeT(t, clients, q3, 1)
	for _, r := range rs {
		for gi := range r.Groups {
			for si := range r.Groups[gi].Stratifiers {
				s := &r.Groups[gi].Stratifiers[si]
				if s.Code != StratifierSpecialist {
					continue
				}
				for i := range s.Strata {
					for k := range s.Strata[i].Populations {
						if c := &s.Strata[i].Populations[k]; c.Value >= 1 && c.Value < DefaultThreshold {
							c.State = Masked
						}
					}
					s.Strata[i].Score.State = Masked
				}
			}
		}
	}
	b, err := BundleJSON(rs)
	if err != nil {
		t.Fatal(err)
	}
	pub, levels := readPublished(t, b)
	var ask [][2]string
	for _, l := range levels {
		for _, qn := range baseCounts {
			if _, shown := pub[l][qn]; !shown {
				ask = append(ask, [2]string{l, qn})
			}
		}
	}
	iv := lpAttack(t, pub, levels, truth(t, clients, q3), DefaultThreshold, ask)
	pinned := 0
	for _, x := range iv {
		if x.lo == x.hi {
			pinned++
		}
	}
	if pinned == 0 {
		t.Fatal("the attacker pins nothing even in a pattern that withholds only the small counts; it proves nothing")
	}
	t.Logf("primary suppression alone: %d withheld stratum counts pinned", pinned)
	checkProtected(t, "one client per specialist, the rule as it is", clients, q3, DefaultThreshold)
}
