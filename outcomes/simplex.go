package outcomes

import (
	"errors"
	"math"
	"slices"
)

// A dense two-phase simplex for the suppression audit's linear programs.
//
// The audit asks the same question of one polytope many times: the least
// and the most each small count can be. Phase 1 (finding a feasible corner)
// runs once per polytope; each question is then a short phase 2 from that
// corner, on a copy of the tableau. gonum's lp.Simplex solves each program
// from scratch and refactors its basis every iteration; on the audit's
// programs it was ~9 ms a solve against well under 1 ms here (see
// BenchmarkSuppress*), which decides whether a quarter with many
// specialists takes seconds or minutes. The tests check this solver
// against gonum's on every polytope they build.

// The race detector and the tableau: feasibleIn, pivot and optimize are
// marked //go:norace. Their loops touch every entry of a tableau on every
// pivot, and under -race each touch is a call into the detector: the
// package's tests took about ten times as long with -race as without, and
// the directive took them from 266 s of CPU to 160 s (`go test -race
// ./outcomes`, back to back on the same loaded machine, 2026-12-03).
// minimizeIn stays checked where the memory is shared: it writes the whole
// scratch copy (a range write the detector sees) before optimize works on
// it, and a component's tableau is only read after feasibleIn returns it.
// So two goroutines sharing a scratch would still be reported, at that
// copy.

// simplexEps is the tolerance of the pivots and the optimality test. The
// audit's coefficients are 0 and ±1 and its right-hand sides whole numbers
// below a few thousand, so tableau entries stay well scaled.
const simplexEps = 1e-9

var errInfeasible = errors.New("simplex: infeasible")

// tableau is a feasible basic solution of A·z = b, z ≥ 0, in tableau form:
// rows m, columns n (the variables) plus the right-hand side.
type tableau struct {
	m, n  int
	t     []float64 // m rows of n+1: the rows of B⁻¹A and B⁻¹b
	basis []int     // the basic variable of each row
	nz    []int     // pivot's scratch: the pivot row's non-zero columns
}

func (t *tableau) at(i, j int) float64 { return t.t[i*(t.n+1)+j] }
func (t *tableau) rhs(i int) float64   { return t.t[i*(t.n+1)+t.n] }

// feasible runs phase 1 on A·z = b (rows of length n), z ≥ 0. Redundant
// equalities are dropped; an infeasible system is errInfeasible.
func feasible(a [][]float64, b []float64, n int) (*tableau, error) {
	var work []float64
	return feasibleIn(&work, a, b, n)
}

// lpWork is the simplex's working memory for one audit's polytopes,
// reused from one to the next (an audit runs on one goroutine): the copy
// of a component's tableau that each range question works on
// (minimizeIn), and phase 1's tableau of each component (feasibleIn).
// Allocating them afresh was most of what an audit allocated.
type lpWork struct {
	scratch tableau
	phase1  []float64
}

// feasibleIn is feasible with phase 1's tableau (m rows of n+m+1: every
// row has its artificial) made in *work, whose memory is reused from one
// call to the next: an audit builds hundreds of polytopes, and this was
// most of what it allocated. The tableau returned is new memory.
//
//go:norace
func feasibleIn(work *[]float64, a [][]float64, b []float64, n int) (*tableau, error) {
	m := len(a)
	w := n + m // with one artificial per row
	size := m * (w + 1)
	if cap(*work) < size {
		*work = make([]float64, size)
	}
	t := &tableau{m: m, n: w, t: (*work)[:size], basis: make([]int, m)}
	clear(t.t)
	for i, row := range a {
		sign := 1.0
		if b[i] < 0 {
			sign = -1
		}
		for j, x := range row {
			t.t[i*(w+1)+j] = sign * x
		}
		t.t[i*(w+1)+n+i] = 1
		t.t[i*(w+1)+w] = sign * b[i]
		t.basis[i] = n + i
	}
	cost := make([]float64, w)
	for j := n; j < w; j++ {
		cost[j] = 1
	}
	obj, _ := t.optimize(cost, w)
	if obj > 1e-7 {
		return nil, errInfeasible
	}
	// Artificials left in the basis (at zero): pivot each out on a real
	// column, or drop its row, which the others imply.
	for i := 0; i < t.m; i++ {
		if t.basis[i] < n {
			continue
		}
		piv := -1
		for j := range n {
			if math.Abs(t.at(i, j)) > 1e-7 {
				piv = j
				break
			}
		}
		if piv >= 0 {
			t.pivot(i, piv)
			continue
		}
		t.dropRow(i)
		i--
	}
	// Drop the artificial columns.
	out := &tableau{m: t.m, n: n, t: make([]float64, t.m*(n+1)), basis: slices.Clone(t.basis)}
	for i := range t.m {
		copy(out.t[i*(n+1):i*(n+1)+n], t.t[i*(w+1):i*(w+1)+n])
		out.t[i*(n+1)+n] = t.rhs(i)
	}
	return out, nil
}

func (t *tableau) dropRow(i int) {
	w := t.n + 1
	t.t = append(t.t[:i*w], t.t[(i+1)*w:]...)
	t.basis = append(t.basis[:i], t.basis[i+1:]...)
	t.m--
}

// pivot makes column j basic in row r.
//
//go:norace
func (t *tableau) pivot(r, j int) {
	w := t.n + 1
	pr := t.t[r*w : (r+1)*w]
	inv := 1 / pr[j]
	// The pivot row is sparse (the audit's rows name a few leaves each):
	// only its non-zero entries change the other rows.
	t.nz = t.nz[:0]
	for k := range pr {
		if pr[k] != 0 {
			pr[k] *= inv
			t.nz = append(t.nz, k)
		}
	}
	pr[j] = 1
	for i := range t.m {
		if i == r {
			continue
		}
		row := t.t[i*w : (i+1)*w]
		f := row[j]
		if f == 0 {
			continue
		}
		for _, k := range t.nz {
			row[k] -= f * pr[k]
		}
		row[j] = 0
	}
	t.basis[r] = j
}

// minimize runs phase 2 for cost over the first cols columns, in place,
// and returns the optimum; bounded is false when it is −∞.
//
//go:norace
func (t *tableau) optimize(cost []float64, cols int) (opt float64, bounded bool) {
	// Reduced costs d_j = c_j − c_B·column j, kept up to date by pivots.
	d := make([]float64, cols)
	copy(d, cost[:cols])
	obj := 0.0
	for i, bv := range t.basis {
		cb := 0.0
		if bv < len(cost) {
			cb = cost[bv]
		}
		if cb == 0 {
			continue
		}
		for j := range cols {
			d[j] -= cb * t.at(i, j)
		}
		obj += cb * t.rhs(i)
	}
	bland := false
	for iter := 0; ; iter++ {
		if iter > 50*(t.m+cols) {
			bland = true // cycling guard: Bland's rule always terminates
		}
		enter := -1
		for j := range cols {
			if d[j] < -simplexEps && (enter < 0 || (!bland && d[j] < d[enter])) {
				enter = j
				if bland {
					break
				}
			}
		}
		if enter < 0 {
			return obj, true
		}
		leave, best := -1, math.Inf(1)
		for i := range t.m {
			if a := t.at(i, enter); a > simplexEps {
				ratio := t.rhs(i) / a
				if ratio < best-simplexEps || (ratio < best+simplexEps && leave >= 0 && t.basis[i] < t.basis[leave]) {
					leave, best = i, ratio
				}
			}
		}
		if leave < 0 {
			return math.Inf(-1), false
		}
		f := d[enter]
		t.pivot(leave, enter)
		for j := range cols {
			if a := t.at(leave, j); a != 0 {
				d[j] -= f * a
			}
		}
		d[enter] = 0
		obj += f * t.rhs(leave)
	}
}

// minimizeIn returns the least of cost·z over the polytope, and whether it
// is bounded. It works on a copy of the tableau made in scratch (t is
// unchanged), whose memory is reused from one call to the next: the audit
// asks thousands of range questions of one polytope.
func (t *tableau) minimizeIn(scratch *tableau, cost []float64) (float64, bool) {
	scratch.m, scratch.n = t.m, t.n
	scratch.t = append(scratch.t[:0], t.t...)
	scratch.basis = append(scratch.basis[:0], t.basis...)
	return scratch.optimize(cost, t.n)
}
