package outcomes

import (
	"math/rand/v2"
	"testing"

	"gonum.org/v1/gonum/mat"
	"gonum.org/v1/gonum/optimize/convex/lp"

	"github.com/ipsfhir/ipsfhir/ips/synth"
)

// Benchmarks of the suppression audit. Each pair is read as a ratio in one
// run (docs/BENCHMARKS.md): a report's computation with the audit against
// the same computation with nothing to withhold (threshold 1, the
// ceiling); and one range question (least and most) on a polytope by the
// package's simplex against gonum's lp.Simplex, both from the same
// feasible corner.

func benchCompute(b *testing.B, n, threshold int) {
	cl := synth.Generate(rand.New(rand.NewPCG(5, 5)), n)
	o := Options{Program: program, Audience: AudienceHIE, Threshold: threshold, Consents: hieDefaultYes, SpecialistKey: testSpecialistKey, Date: producedAt}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Compute(cl.Clients, q3, o); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCompute400Clients(b *testing.B)                { benchCompute(b, 400, DefaultThreshold) }
func BenchmarkCompute400ClientsNothingWithheld(b *testing.B) { benchCompute(b, 400, 1) }

// onePerSpecialistPolytope is the audit's polytope for 30 specialists with
// one client each, every small count withheld, and one range question.
func onePerSpecialistPolytope(b *testing.B) (*audit, withheld, vec) {
	c, err := compute(onePerSpecialist(30), q3, Options{Program: program, Audience: AudienceHIE, Threshold: 1, Consents: hieDefaultYes, SpecialistKey: testSpecialistKey, Date: producedAt})
	if err != nil {
		b.Fatal(err)
	}
	a := &audit{levels: c.levels, threshold: DefaultThreshold, protection: DefaultProtection}
	hidden := make(withheld, len(c.levels))
	for l := range c.levels {
		for x := range numCounts {
			hidden[l][x] = a.sensitive(l, x)
		}
	}
	return a, hidden, a.vector(1, int(cellD))
}

func BenchmarkRangeOwnSimplex(b *testing.B) {
	a, hidden, v := onePerSpecialistPolytope(b)
	p, err := a.polytope(hidden)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		p.rng(v)
	}
}

func BenchmarkRangeGonumSimplex(b *testing.B) {
	a, hidden, v := onePerSpecialistPolytope(b)
	p, err := a.polytope(hidden)
	if err != nil {
		b.Fatal(err)
	}
	// The same program, from the same feasible corner: the tableau's rows
	// (independent, as gonum needs) and its basis, of the component the
	// stratum's caseload is in.
	var comp *component
	for k := range v {
		if _, known := p.known[k]; known {
			continue
		}
		if comp == nil {
			comp = p.comp[k]
		}
		if comp == nil || p.comp[k] != comp {
			b.Fatal("the range question's unknown leaves are not in one component")
		}
	}
	if comp == nil {
		b.Fatal("every leaf of the range question is known")
	}
	rows, cols := comp.tab.m, comp.tab.n
	dense := mat.NewDense(rows, cols, nil)
	bb := make([]float64, rows)
	for i := range rows {
		for j := range cols {
			dense.Set(i, j, comp.tab.at(i, j))
		}
		bb[i] = comp.tab.rhs(i)
	}
	c := make([]float64, cols)
	for k, x := range v {
		if j, ok := comp.col[k]; ok {
			c[j] = x
		}
	}
	neg := make([]float64, cols)
	for j := range c {
		neg[j] = -c[j]
	}
	for b.Loop() {
		if _, _, err := lp.Simplex(c, dense, bb, 1e-9, comp.tab.basis); err != nil {
			b.Fatal(err)
		}
		if _, _, err := lp.Simplex(neg, dense, bb, 1e-9, comp.tab.basis); err != nil {
			b.Fatal(err)
		}
	}
}
