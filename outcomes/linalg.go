package outcomes

import (
	"math"
	"math/big"
	"math/bits"
)

// Exact linear algebra over the rationals, for the suppression audit: is a
// small count a linear combination of the counts shown? Coefficients start
// as 0 and ±1 and stay small, so a number is an int64 fraction until an
// operation would overflow, and a big.Rat from then on: exact either way,
// and fast in the usual case.

// num is an exact rational: n/d with d > 0 in lowest terms, or r when r is
// not nil.
type num struct {
	n, d int64
	r    *big.Rat
}

func one() num { return num{n: 1, d: 1} }

func (x num) isZero() bool {
	if x.r != nil {
		return x.r.Sign() == 0
	}
	return x.n == 0
}

func (x num) big() *big.Rat {
	if x.r != nil {
		return x.r
	}
	return big.NewRat(x.n, x.d)
}

func fromBig(r *big.Rat) num {
	if r.Num().IsInt64() && r.Denom().IsInt64() {
		n, d := r.Num().Int64(), r.Denom().Int64()
		if n != math.MinInt64 && d != math.MinInt64 {
			return num{n: n, d: d}
		}
	}
	return num{r: r}
}

// mul64 multiplies, reporting false on overflow.
func mul64(a, b int64) (int64, bool) {
	if a == 0 || b == 0 {
		return 0, true
	}
	neg := (a < 0) != (b < 0)
	hi, lo := bits.Mul64(abs64(a), abs64(b))
	if hi != 0 || lo > math.MaxInt64 {
		return 0, false
	}
	if neg {
		return -int64(lo), true
	}
	return int64(lo), true
}

func abs64(a int64) uint64 {
	if a < 0 {
		return uint64(-a)
	}
	return uint64(a)
}

func gcd(a, b int64) int64 {
	if a < 0 {
		a = -a
	}
	if b < 0 {
		b = -b
	}
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

func small(n, d int64) num {
	if d < 0 {
		n, d = -n, -d
	}
	if g := gcd(n, d); g > 1 {
		n, d = n/g, d/g
	}
	if n == 0 {
		d = 1
	}
	return num{n: n, d: d}
}

// inRange keeps int64 fractions away from MinInt64, whose negation overflows.
func inRange(v int64) bool { return v > math.MinInt64/2 && v < math.MaxInt64/2 }

func (x num) mul(y num) num {
	if x.r == nil && y.r == nil {
		g1, g2 := gcd(x.n, y.d), gcd(y.n, x.d)
		if g1 == 0 {
			g1 = 1
		}
		if g2 == 0 {
			g2 = 1
		}
		n, ok1 := mul64(x.n/g1, y.n/g2)
		d, ok2 := mul64(x.d/g2, y.d/g1)
		if ok1 && ok2 && inRange(n) && inRange(d) {
			return small(n, d)
		}
	}
	return fromBig(new(big.Rat).Mul(x.big(), y.big()))
}

func (x num) add(y num) num {
	if x.r == nil && y.r == nil {
		g := gcd(x.d, y.d)
		a, ok1 := mul64(x.n, y.d/g)
		b, ok2 := mul64(y.n, x.d/g)
		d, ok3 := mul64(x.d, y.d/g)
		if ok1 && ok2 && ok3 && inRange(a) && inRange(b) && inRange(d) && inRange(a+b) {
			return small(a+b, d)
		}
	}
	return fromBig(new(big.Rat).Add(x.big(), y.big()))
}

func (x num) neg() num {
	if x.r != nil {
		return num{r: new(big.Rat).Neg(x.r)}
	}
	return num{n: -x.n, d: x.d}
}

// quo divides; y is never zero here (a pivot).
func (x num) quo(y num) num {
	if y.r != nil {
		return fromBig(new(big.Rat).Quo(x.big(), y.r))
	}
	return x.mul(small(y.d, y.n))
}

// vec is a sparse vector: absent keys are zero, present ones never are.
type vec map[int]num

func (v vec) clone() vec {
	out := make(vec, len(v))
	for k, x := range v {
		out[k] = x
	}
	return out
}

// addScaled sets v to v + k·w.
func (v vec) addScaled(w vec, k num) {
	for i, x := range w {
		t := k.mul(x)
		if cur, ok := v[i]; ok {
			t = cur.add(t)
		}
		if t.isZero() {
			delete(v, i)
		} else {
			v[i] = t
		}
	}
}

func (v vec) minKey() (int, bool) {
	first, ok := 0, false
	for k := range v {
		if !ok || k < first {
			first, ok = k, true
		}
	}
	return first, ok
}

// basis is the span of a set of equations in row echelon form. Each row
// keeps the combination of input equations it was made from, so that a
// derivation can name the equations it uses.
type basis struct {
	rows []basisRow
}

type basisRow struct {
	pivot int
	v     vec
	from  vec // input equation id -> coefficient
}

// add puts equation v, known by id, into the span.
func (b *basis) add(id int, v vec) {
	r, from := v.clone(), vec{id: one()}
	b.reduce(r, from)
	if p, ok := r.minKey(); ok {
		b.rows = append(b.rows, basisRow{pivot: p, v: r, from: from})
	}
}

// reduce subtracts from v the rows' multiples that clear their pivots,
// recording the combination in from. Rows were reduced by every earlier row
// when added, so a later row never brings back an earlier pivot.
func (b *basis) reduce(v, from vec) {
	for _, r := range b.rows {
		c, ok := v[r.pivot]
		if !ok {
			continue
		}
		k := c.quo(r.v[r.pivot]).neg()
		v.addScaled(r.v, k)
		from.addScaled(r.from, k)
	}
}

// derive reports whether target is in the span and, if it is, the ids of
// the input equations one derivation of it uses.
func (b *basis) derive(target vec) ([]int, bool) {
	v, from := target.clone(), vec{}
	b.reduce(v, from)
	if len(v) != 0 {
		return nil, false
	}
	ids := make([]int, 0, len(from))
	for id := range from {
		ids = append(ids, id)
	}
	return ids, true
}
