package outcomes

import (
	"math"
	"math/big"
	"math/rand/v2"
	"slices"
	"testing"
)

// num agrees with big.Rat, including where int64 would overflow.
func TestNumIsExact(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	pick := func() (num, *big.Rat) {
		var n, d int64
		switch r.IntN(3) {
		case 0:
			n, d = r.Int64N(7)-3, r.Int64N(5)+1
		case 1:
			n, d = r.Int64N(math.MaxInt64/4)-math.MaxInt64/8, r.Int64N(math.MaxInt64/4)+1
		default:
			n, d = r.Int64N(1<<20)-1<<19, r.Int64N(1<<20)+1
		}
		x := small(n, d)
		if r.IntN(4) == 0 { // sometimes start big
			x = num{r: big.NewRat(n, d)}
		}
		return x, big.NewRat(n, d)
	}
	for range 5000 {
		x, bx := pick()
		y, by := pick()
		check := func(op string, got num, want *big.Rat) {
			if got.big().Cmp(want) != 0 {
				t.Fatalf("%s: %v, want %v", op, got.big(), want)
			}
			if got.r == nil && (got.d <= 0 || gcd(got.n, got.d) > 1 && got.n != 0) {
				t.Fatalf("%s: %d/%d not in lowest terms", op, got.n, got.d)
			}
		}
		check("mul", x.mul(y), new(big.Rat).Mul(bx, by))
		check("add", x.add(y), new(big.Rat).Add(bx, by))
		check("neg", x.neg(), new(big.Rat).Neg(bx))
		if !y.isZero() {
			check("quo", x.quo(y), new(big.Rat).Quo(bx, by))
		}
		if x.isZero() != (bx.Sign() == 0) {
			t.Fatal("isZero")
		}
	}
}

func TestBasisDerives(t *testing.T) {
	v := func(kv ...int) vec {
		out := vec{}
		for i := 0; i < len(kv); i += 2 {
			out[kv[i]] = small(int64(kv[i+1]), 1)
		}
		return out
	}
	// x+y, y+z, x+z known: x = ((x+y) − (y+z) + (x+z)) / 2 is derivable,
	// with all three.
	b := &basis{}
	b.add(10, v(0, 1, 1, 1))
	b.add(11, v(1, 1, 2, 1))
	b.add(12, v(0, 1, 2, 1))
	ids, ok := b.derive(v(0, 1))
	slices.Sort(ids)
	if !ok || !slices.Equal(ids, []int{10, 11, 12}) {
		t.Errorf("x: %v %v", ids, ok)
	}
	// Only x+y and y+z: neither x nor z, but x−z is.
	b = &basis{}
	b.add(10, v(0, 1, 1, 1))
	b.add(11, v(1, 1, 2, 1))
	if _, ok := b.derive(v(0, 1)); ok {
		t.Error("x derived from x+y and y+z")
	}
	if ids, ok := b.derive(v(0, 1, 2, -1)); !ok || len(ids) != 2 {
		t.Errorf("x−z: %v %v", ids, ok)
	}
	// A dependent equation adds nothing.
	b.add(12, v(0, 2, 1, 2))
	if len(b.rows) != 2 {
		t.Errorf("%d rows", len(b.rows))
	}
}
