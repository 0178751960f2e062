package outcomes

import (
	"math"
	"math/rand/v2"
	"testing"

	"gonum.org/v1/gonum/mat"
	"gonum.org/v1/gonum/optimize/convex/lp"
)

// TestSimplexAgreesWithGonum solves random bounded programs of the audit's
// shape (0/±1 rows, whole right-hand sides, slack columns) with this
// package's simplex and with gonum's lp.Simplex, and wants the same optima.
func TestSimplexAgreesWithGonum(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	checked := 0
	for trial := 0; trial < 300; trial++ {
		nv := 3 + rng.IntN(10)
		x := make([]float64, nv) // a feasible point, so the program is feasible
		for j := range x {
			x[j] = float64(rng.IntN(6))
		}
		var rows [][]float64
		var b []float64
		var slack []float64
		for i := 0; i < 2+rng.IntN(2*nv); i++ {
			r := make([]float64, nv)
			for j := range r {
				switch rng.IntN(4) {
				case 0:
					r[j] = 1
				case 1:
					r[j] = -1
				}
			}
			v := 0.0
			for j := range r {
				v += r[j] * x[j]
			}
			kind := rng.IntN(3) // 0 =, 1 ≥ (v-1), 2 ≤ (v+2)
			switch kind {
			case 0:
				b = append(b, v)
				slack = append(slack, 0)
			case 1:
				b = append(b, v-1)
				slack = append(slack, -1)
			case 2:
				b = append(b, v+2)
				slack = append(slack, 1)
			}
			rows = append(rows, r)
		}
		// Bound every variable so both directions are bounded.
		for j := range nv {
			r := make([]float64, nv)
			r[j] = 1
			rows, b, slack = append(rows, r), append(b, 8), append(slack, 1)
		}
		ns := 0
		for _, s := range slack {
			if s != 0 {
				ns++
			}
		}
		cols := nv + ns
		a := make([][]float64, len(rows))
		k := nv
		for i, r := range rows {
			a[i] = make([]float64, cols)
			copy(a[i], r)
			if slack[i] != 0 {
				a[i][k] = slack[i]
				k++
			}
		}
		tab, err := feasible(a, b, cols)
		if err != nil {
			t.Fatalf("trial %d: a feasible program reported infeasible", trial)
		}
		c := make([]float64, cols)
		for j := range nv {
			c[j] = float64(rng.IntN(5) - 2)
		}
		got, bounded := tab.minimize(c)
		if !bounded {
			t.Fatalf("trial %d: unbounded, though every variable is bounded", trial)
		}
		// gonum wants full row rank: keep the rows of a independent set.
		dense := mat.NewDense(len(a), cols, nil)
		for i := range a {
			dense.SetRow(i, a[i])
		}
		want, _, err := lp.Simplex(c, dense, b, 1e-10, nil)
		if err != nil {
			continue // singular (dependent rows): gonum cannot say
		}
		checked++
		if math.Abs(got-want) > 1e-6 {
			t.Errorf("trial %d: minimum %v, gonum %v", trial, got, want)
		}
	}
	if checked < 100 {
		t.Errorf("only %d programs compared", checked)
	}
}

// minimize is minimizeIn with a scratch of its own, for the tests that
// ask one question at a time.
func (t *tableau) minimize(cost []float64) (float64, bool) {
	return t.minimizeIn(&tableau{}, cost)
}
