package outcomes

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"time"

	"github.com/ipsfhir/ipsfhir/ips"
)

// Quarter is a calendar quarter: Q1 is January to March, Q4 October to
// December. Its String form, "2026Q3", is what ParseQuarter reads.
type Quarter struct {
	Year int
	Q    int // 1 to 4
}

var quarterPattern = regexp.MustCompile(`^([0-9]{4})-?[Qq]([1-4])$`)

// errBadQuarter says what a quarter looks like; the rejected text is not
// patient data, but it is not echoed either, like every other parse error.
var errBadQuarter = errors.New("not a quarter (want YYYYQn, e.g. 2026Q3)")

// ParseQuarter reads "2026Q3" (also "2026-Q3" and a lower-case q).
func ParseQuarter(s string) (Quarter, error) {
	m := quarterPattern.FindStringSubmatch(s)
	if m == nil {
		return Quarter{}, errBadQuarter
	}
	y, _ := strconv.Atoi(m[1])
	q, _ := strconv.Atoi(m[2])
	if y < 1 {
		return Quarter{}, errBadQuarter
	}
	return Quarter{Year: y, Q: q}, nil
}

// QuarterOf returns the quarter a date falls in.
func QuarterOf(d ips.Date) Quarter { return Quarter{Year: d.Year, Q: (int(d.Month)-1)/3 + 1} }

// Valid reports whether q names a quarter (Q from 1 to 4, a positive year).
func (q Quarter) Valid() bool { return q.Year >= 1 && q.Year <= 9999 && q.Q >= 1 && q.Q <= 4 }

// String formats q as "2026Q3".
func (q Quarter) String() string { return fmt.Sprintf("%04dQ%d", q.Year, q.Q) }

// Start is the quarter's first day.
func (q Quarter) Start() ips.Date {
	return ips.Date{Year: q.Year, Month: time.Month(3*(q.Q-1) + 1), Day: 1}
}

// End is the quarter's last day.
func (q Quarter) End() ips.Date { return q.Add(1).Start().AddDays(-1) }

// Add returns the quarter n quarters after q (before it when n < 0).
func (q Quarter) Add(n int) Quarter {
	i := q.Year*4 + q.Q - 1 + n
	y, r := i/4, i%4
	if r < 0 {
		y, r = y-1, r+4
	}
	return Quarter{Year: y, Q: r + 1}
}

// Contains reports whether d is one of the quarter's days.
func (q Quarter) Contains(d ips.Date) bool {
	return !d.IsZero() && !d.Before(q.Start()) && !q.End().Before(d)
}

// Before reports whether q is earlier than o.
func (q Quarter) Before(o Quarter) bool {
	return q.Year < o.Year || (q.Year == o.Year && q.Q < o.Q)
}
