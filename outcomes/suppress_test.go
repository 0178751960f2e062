package outcomes

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/ipsfhir/ipsfhir/ips"
	"github.com/ipsfhir/ipsfhir/ips/synth"
)

// The attacker below is independent of the audit in suppress.go: it reads
// only the published FHIR JSON, knows how the measures' counts relate (the
// nested sets, strata adding up to the total), assumes nothing about a
// withheld cell but that it is not negative, and narrows every unknown to
// an interval by propagating those relations until nothing changes. A
// small count (1 to threshold-1) whose interval shrinks to one value has
// been disclosed.

// quantities the attacker reasons about, per level (the program, or a
// specialist stratum).
var attackQuantities = []string{"D", "N1", "N2", "E", "C", "W", "F", "J", "G", "B", "R", "R90", "EARN",
	"D-N1", "N1-N2", "D-N2", "D-E", "E-C", "C-W", "E-W", "D-C", "D-W", "D-F", "J-F",
	"D-G", "G-B", "D-B", "D-R", "R-R90", "D-R90", "N1-G", "J-G", "N1-R90"}

// attackRelations: the first equals the sum of the rest, in every level.
var attackRelations = [][]string{
	{"D", "N1", "D-N1"}, {"N1", "N2", "N1-N2"}, {"D-N2", "N1-N2", "D-N1"}, {"D", "N2", "D-N2"},
	{"D", "E", "D-E"}, {"E", "C", "E-C"}, {"C", "W", "C-W"}, {"E-W", "C-W", "E-C"}, {"E", "W", "E-W"},
	{"D-C", "E-C", "D-E"}, {"D", "C", "D-C"}, {"D-W", "C-W", "D-C"}, {"D", "W", "D-W"},
	{"D", "F", "D-F"}, {"J", "F", "J-F"},
	{"D", "G", "D-G"}, {"G", "B", "G-B"}, {"D", "B", "D-B"}, {"D-B", "G-B", "D-G"},
	{"D", "R", "D-R"}, {"R", "R90", "R-R90"}, {"D", "R90", "D-R90"}, {"D-R90", "R-R90", "D-R"},
	{"N1", "G", "N1-G"}, {"J", "G", "J-G"}, {"N1", "R90", "N1-R90"},
}

// where each published number lands: measure, group, population (or
// "score") -> quantity.
var attackSources = map[[3]string]string{
	{MeasureCompetitiveEmployment, GroupCompetitiveEmployment, PopulationInitial}:           "D",
	{MeasureCompetitiveEmployment, GroupCompetitiveEmployment, PopulationDenominator}:       "D",
	{MeasureCompetitiveEmployment, GroupCompetitiveEmployment, PopulationNumerator}:         "N1",
	{MeasureCompetitiveEmployment20h, GroupCompetitiveEmployment20h, PopulationInitial}:     "D",
	{MeasureCompetitiveEmployment20h, GroupCompetitiveEmployment20h, PopulationDenominator}: "D",
	{MeasureCompetitiveEmployment20h, GroupCompetitiveEmployment20h, PopulationNumerator}:   "N2",
	{MeasureJobStarts, GroupJobStarts, PopulationInitial}:                                   "J",
	{MeasureJobStarts, GroupClientsFirstJob, PopulationInitial}:                             "F",
	{MeasureEarnings, GroupMedianHourlyWage, PopulationInitial}:                             "D",
	{MeasureEarnings, GroupMedianHourlyWage, PopulationMeasure}:                             "N1",
	{MeasureEarnings, GroupTotalEarnings, PopulationInitial}:                                "D",
	{MeasureEarnings, GroupTotalEarnings, PopulationMeasure}:                                "N1",
	{MeasureEarnings, GroupTotalEarnings, "score"}:                                          "EARN",
	{MeasureEmployerContact30d, GroupEmployerContact30d, PopulationInitial}:                 "E",
	{MeasureEmployerContact30d, GroupEmployerContact30d, PopulationDenominator}:             "E",
	{MeasureEmployerContact30d, GroupEmployerContact30d, PopulationNumerator}:               "W",
	{MeasureDaysToEmployerContact, GroupMedianDaysToContact, PopulationInitial}:             "E",
	{MeasureDaysToEmployerContact, GroupMedianDaysToContact, PopulationMeasure}:             "C",
	{MeasureDaysToCompetitiveJob, GroupMedianDaysToJob, PopulationInitial}:                  "D",
	{MeasureDaysToCompetitiveJob, GroupMedianDaysToJob, PopulationMeasure}:                  "G",
	{MeasureJobTenure, GroupMedianJobTenure, PopulationInitial}:                             "D",
	{MeasureJobTenure, GroupMedianJobTenure, PopulationMeasure}:                             "N1",
	{MeasureJobRetention90d, GroupJobRetention90d, PopulationInitial}:                       "R",
	{MeasureJobRetention90d, GroupJobRetention90d, PopulationDenominator}:                   "R",
	{MeasureJobRetention90d, GroupJobRetention90d, PopulationNumerator}:                     "R90",
	{MeasureBenefitsPlanning, GroupBenefitsPlanning, PopulationInitial}:                     "G",
	{MeasureBenefitsPlanning, GroupBenefitsPlanning, PopulationDenominator}:                 "G",
	{MeasureBenefitsPlanning, GroupBenefitsPlanning, PopulationNumerator}:                   "B",
	{MeasureCaseloadSize, GroupCaseloadSize, PopulationInitial}:                             "D-E",
	{MeasureCaseloadSize, GroupCaseloadSize, PopulationMeasure}:                             "D-E",
}

// published is what the reports show, by level ("" for the program) and
// quantity; absent means withheld.
type published map[string]map[string]float64

// readPublished collects what a Bundle shows, and fails t if the same
// quantity is shown in one place and withheld or different in another, or
// a rate or median is shown next to a withheld count.
func readPublished(t *testing.T, bundle []byte) (published, []string) {
	t.Helper()
	rs, err := ParseJSON(bundle)
	if err != nil {
		t.Fatal(err)
	}
	pub := published{}
	hidden := map[[2]string]bool{}
	var levels []string
	seen := map[string]bool{"": true}
	note := func(where string, level, q string, c Count) {
		if c.State != Exact {
			hidden[[2]string{level, q}] = true
			return
		}
		if pub[level] == nil {
			pub[level] = map[string]float64{}
		}
		if v, ok := pub[level][q]; ok && v != float64(c.Value) {
			t.Errorf("%s: %s of %q shown as %v and as %d", where, q, level, v, c.Value)
		}
		pub[level][q] = float64(c.Value)
	}
	for _, r := range rs {
		for _, g := range r.Groups {
			visit := func(level string, pops []Count, s Score) {
				where := r.Measure + "/" + g.Code + "/" + level
				for _, c := range pops {
					if q, ok := attackSources[[3]string{r.Measure, g.Code, c.Population}]; ok {
						note(where, level, q, c)
					}
				}
				if q, ok := attackSources[[3]string{r.Measure, g.Code, "score"}]; ok {
					if s.State == Exact {
						note(where, level, q, Count{Value: int(math.Round(s.Value * 100)), State: Exact})
					} else {
						hidden[[2]string{level, q}] = true
					}
				}
				if s.State == Exact {
					for _, c := range pops {
						if c.State != Exact && c.Population != PopulationInitial {
							t.Errorf("%s: a score is shown next to a withheld %s", where, c.Population)
						}
					}
				}
			}
			visit("", g.Populations, g.Score)
			var strata []Stratum
			if sp := g.Stratifier(StratifierSpecialist); sp != nil {
				strata = sp.Strata // absent when the breakdown is left out
			}
			for _, st := range strata {
				if !seen[st.Code] {
					seen[st.Code] = true
					levels = append(levels, st.Code)
				}
				visit(st.Code, st.Populations, st.Score)
			}
		}
	}
	for k := range hidden {
		if _, shown := pub[k[0]][k[1]]; shown {
			t.Errorf("%s of %q is shown in one report and withheld in another", k[1], k[0])
		}
	}
	return pub, levels
}

type interval struct{ lo, hi float64 }

// attack narrows every quantity of every level to an interval.
func attack(pub published, levels []string) map[[2]string]interval {
	all := append([]string{""}, levels...)
	iv := map[[2]string]interval{}
	for _, l := range all {
		for _, q := range attackQuantities {
			iv[[2]string{l, q}] = interval{0, math.Inf(1)}
			if v, ok := pub[l][q]; ok {
				iv[[2]string{l, q}] = interval{v, v}
			}
		}
	}
	type relation [][2]string // first = sum of the rest
	var rels []relation
	for _, l := range all {
		for _, r := range attackRelations {
			var rel relation
			for _, q := range r {
				rel = append(rel, [2]string{l, q})
			}
			rels = append(rels, rel)
		}
	}
	for _, q := range attackQuantities {
		if len(levels) == 0 {
			break // no breakdown published
		}
		rel := relation{{"", q}}
		for _, l := range levels {
			rel = append(rel, [2]string{l, q})
		}
		rels = append(rels, rel)
	}
	tighten := func(k [2]string, lo, hi float64) bool {
		cur := iv[k]
		if k[1] != "EARN" { // counts are whole numbers
			lo, hi = math.Ceil(lo-1e-9), math.Floor(hi+1e-9)
		}
		changed := false
		if lo > cur.lo+1e-9 {
			cur.lo, changed = lo, true
		}
		if hi < cur.hi-1e-9 {
			cur.hi, changed = hi, true
		}
		iv[k] = cur
		return changed
	}
	for round := 0; round < 1000; round++ {
		changed := false
		for _, rel := range rels {
			sumLo, sumHi := 0.0, 0.0
			for _, k := range rel[1:] {
				sumLo += iv[k].lo
				sumHi += iv[k].hi
			}
			x := iv[rel[0]]
			changed = tighten(rel[0], sumLo, sumHi) || changed
			for _, k := range rel[1:] {
				otherLo, otherHi := sumLo-iv[k].lo, sumHi-iv[k].hi
				changed = tighten(k, x.lo-otherHi, x.hi-otherLo) || changed
			}
		}
		if !changed {
			break
		}
	}
	return iv
}

// truth is every quantity's true value, straight from the counts.
func truth(t *testing.T, clients []*ips.Client, q Quarter) published {
	t.Helper()
	c, err := compute(clients, q, Options{Program: program, Threshold: 1, Audience: AudienceHIE, Consents: hieDefaultYes, SpecialistKey: testSpecialistKey})
	if err != nil {
		t.Fatal(err)
	}
	pub := published{}
	for i, tl := range c.levels {
		level := ""
		if i > 0 {
			level = c.strata[i-1]
		}
		v := map[string]float64{"EARN": math.Round(round(tl.earnings, 2) * 100)}
		for x, name := range []string{"D", "N1", "N2", "E", "C", "W", "F", "J", "G", "B", "R", "R90"} {
			v[name] = float64(tl.n[x])
		}
		for _, r := range attackRelations {
			if _, ok := v[r[2]]; !ok {
				v[r[2]] = v[r[0]] - v[r[1]]
			}
		}
		pub[level] = v
	}
	return pub
}

// checkNoDisclosure runs the attacker on the reports of clients at a
// threshold and fails t for every small count it pins down. It returns how
// many cells were withheld, for the caller's sanity checks.
func checkNoDisclosure(t *testing.T, name string, clients []*ips.Client, q Quarter, threshold int) int {
	t.Helper()
	rs := computeT(t, clients, q, threshold)
	b, err := BundleJSON(rs)
	if err != nil {
		t.Fatal(err)
	}
	pub, levels := readPublished(t, b)
	real := truth(t, clients, q)
	iv := attack(pub, levels)
	hiddenN := 0
	for _, l := range append([]string{""}, levels...) {
		for _, qn := range attackQuantities {
			v := real[l][qn]
			_, shown := pub[l][qn]
			small := v >= 1 && v < float64(threshold)
			if qn == "EARN" {
				n1 := real[l]["N1"]
				small = n1 >= 1 && n1 < float64(threshold)
			}
			if shown && small {
				t.Errorf("%s: %s of %q is small (%v) and shown", name, qn, l, v)
			}
			if !shown && qn != "EARN" && len(qn) <= 2 {
				hiddenN++
			}
			if x := iv[[2]string{l, qn}]; small && !shown && x.hi-x.lo < 0.5 {
				t.Errorf("%s: %s of %q (%v) is withheld but the shown counts pin it to [%v, %v]", name, qn, l, v, x.lo, x.hi)
			}
			if x := iv[[2]string{l, qn}]; v < x.lo-1e-6 || v > x.hi+1e-6 {
				t.Fatalf("%s: attacker bug: %s of %q = %v outside [%v, %v]", name, qn, l, v, x.lo, x.hi)
			}
		}
	}
	return hiddenN
}

func TestNoSmallCellCanBeDerivedConstructed(t *testing.T) {
	if n := checkNoDisclosure(t, "constructed", constructed().Clients, q3, DefaultThreshold); n == 0 {
		t.Fatal("nothing withheld: the attacker had nothing to find")
	}
	// The attacker does find what a naive rule leaves open: withhold only
	// the small counts of the constructed caseload, and Sam Chen's served
	// count is the total minus Alex Rivera's.
	rs := computeT(t, constructed().Clients, q3, 1)
	naive := map[string]bool{}
	for _, r := range rs {
		for gi := range r.Groups {
			g := &r.Groups[gi]
			mask := func(level string, pops []Count, s *Score) {
				s.State = Masked // scores play no part in this
				for i := range pops {
					if pops[i].Value >= 1 && pops[i].Value < DefaultThreshold {
						pops[i].State = Masked
						naive[level] = true
					}
				}
			}
			mask("", g.Populations, &g.Score)
			for _, s := range g.Stratifiers {
				for i := range s.Strata {
					mask(s.Strata[i].Code, s.Strata[i].Populations, &s.Strata[i].Score)
				}
			}
		}
	}
	b, err := BundleJSON(rs)
	if err != nil {
		t.Fatal(err)
	}
	pub, levels := readPublished(t, b)
	iv := attack(pub, levels)
	samD := iv[[2]string{specialistCode(t, program, sam), "D"}]
	if samD.lo != 8 || samD.hi != 8 {
		t.Errorf("the attacker missed Sam Chen's served count: %v", samD)
	}
}

func TestNoSmallCellCanBeDerivedSynthetic(t *testing.T) {
	for seed := range uint64(8) {
		n := 40 + int(seed)*37
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			t.Parallel()
			cl := synth.Generate(rand.New(rand.NewPCG(seed, 7)), n)
			for _, qs := range []string{"2026Q1", "2026Q3"} {
				q, _ := ParseQuarter(qs)
				for _, th := range []int{5, DefaultThreshold} {
					checkNoDisclosure(t, fmt.Sprintf("seed %d, %d clients, %s, threshold %d", seed, n, qs, th), cl.Clients, q, th)
				}
			}
		})
	}
}

// tallies builds levels for suppress directly: strata counts, total summed.
func tallies(strata ...[cellEarn]int) []*tally {
	levels := []*tally{{}}
	for _, n := range strata {
		t := &tally{n: n}
		levels = append(levels, t)
		levels[0].add(t)
	}
	return levels
}

func hiddenCells(h withheld, c cell) []bool {
	out := make([]bool, len(h))
	for l := range h {
		out[l] = h[l][c]
	}
	return out
}

func TestSuppressRule(t *testing.T) {
	// [D N1 N2 E C W F J]
	for _, tc := range []struct {
		name      string
		threshold int
		strata    [][cellEarn]int
		cell      cell
		want      []bool // total, strata...
	}{
		{"nothing small", 11, [][cellEarn]int{{30}, {20}}, cellD, []bool{false, false, false}},
		{"threshold 1 withholds nothing", 1, [][cellEarn]int{{30, 25}, {5, 3}}, cellN1, []bool{false, false, false}},
		// The small stratum, and the smallest other stratum as its complement.
		{"one small stratum of three", 11, [][cellEarn]int{{30}, {20}, {5}}, cellD, []bool{false, false, true, true}},
		// With two strata, both go: each is the total minus the other.
		{"one small stratum of two", 11, [][cellEarn]int{{32, 14}, {8, 3}}, cellD, []bool{false, true, true}},
		// A small total is withheld, and the strata adding up to it.
		{"small total", 11, [][cellEarn]int{{6}, {3}}, cellD, []bool{true, true, true}},
		// 45 of 55 working: 10 not working, small, so the working count
		// goes at every level where served minus working is small, and
		// served stays.
		{"small complement", 11, [][cellEarn]int{{30, 25}, {25, 20}}, cellN1, []bool{true, true, true}},
		{"small complement keeps served", 11, [][cellEarn]int{{30, 25}, {25, 20}}, cellD, []bool{false, false, false}},
		// A zero is shown, and is no complement while others can serve.
		{"zero shown", 11, [][cellEarn]int{{30, 0}, {20, 0}, {15, 4}}, cellN1, []bool{true, false, false, true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, err := suppress(tallies(tc.strata...), tc.threshold, DefaultProtection)
			if err != nil {
				t.Fatal(err)
			}
			got := hiddenCells(h, tc.cell)
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("%s withheld %v, want %v", forms[tc.cell].name, got, tc.want)
			}
			for l := range h {
				if h[l][cellEarn] != h[l][cellN1] {
					t.Errorf("level %d: earnings withheld %v, working count withheld %v", l, h[l][cellEarn], h[l][cellN1])
				}
			}
		})
	}
}

// Every cell withheld that is not small is needed: showing it alone would
// let a reader narrow some small count below the protection range. (Small
// counts are withheld by the rule itself.)
func TestEveryComplementIsNeeded(t *testing.T) {
	check := func(name string, clients []*ips.Client, q Quarter, threshold int) {
		c, err := compute(clients, q, Options{Program: program, Threshold: threshold, Audience: AudienceHIE, Consents: hieDefaultYes, SpecialistKey: testSpecialistKey})
		if err != nil {
			t.Fatal(err)
		}
		a := &audit{levels: c.levels, threshold: threshold, protection: DefaultProtection}
		var targets []target
		for l := range c.levels {
			for f := range forms {
				if a.sensitive(l, f) {
					targets = append(targets, target{l, f})
				}
			}
		}
		if ok, err := a.allProtected(c.hidden, targets); err != nil || !ok {
			t.Fatalf("%s: the final pattern leaves a small count unprotected (%v)", name, err)
		}
		complements := 0
		for l := range c.hidden {
			for x := range numCounts {
				if !c.hidden[l][x] || a.sensitive(l, x) {
					continue
				}
				complements++
				c.hidden[l][x] = false
				if ok, err := a.allProtected(c.hidden, targets); err != nil || ok {
					t.Errorf("%s: level %d %s (%d) is withheld but showing it leaves every small count protected (%v)", name, l, forms[x].name, c.levels[l].n[x], err)
				}
				c.hidden[l][x] = true
			}
		}
		if complements == 0 {
			t.Errorf("%s: no complements at all; the test proves nothing", name)
		}
	}
	check("constructed", constructed().Clients, q3, DefaultThreshold)
	for seed := range uint64(4) {
		cl := synth.Generate(rand.New(rand.NewPCG(seed, 9)), 120)
		check(fmt.Sprintf("seed %d", seed), cl.Clients, q3, DefaultThreshold)
	}
}
