package chart

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/ipsfhir/ipsfhir/outcomes"
)

// Every number the page and the chart show is written by one of these, so
// that one kind of figure reads the same everywhere:
//
//	rate     one decimal and a percent sign: "41.2%", "50.0%"
//	count    a whole number with thousands separators: "1,234"
//	money    the currency code and two decimals: "USD 12,345.67"
//	wage     money per hour: "USD 16.25 an hour"
//	days     up to one decimal: "1 day", "12 days", "12.5 days"
//
// and a cell that has no number reads "withheld" (suppressed), "none" (no
// one to measure: a rate over nobody, a median of no one) or "not
// available" (not computable). A withheld cell is never shown as a number.
const (
	textWithheld = "withheld"
	textNone     = "none"
	textNA       = "not available"
)

// formatPct formats a percentage (0–100) to one decimal: "41.2%".
func formatPct(v float64) string {
	r := math.Round(v*10) / 10
	if r == 0 {
		r = 0 // no "-0.0%"
	}
	return strconv.FormatFloat(r, 'f', 1, 64) + "%"
}

// formatCount writes n with thousands separators: "1,234".
func formatCount(n int) string {
	s := strconv.Itoa(n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, r := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(r)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// formatMoney writes an amount with its currency code: "USD 12,345.67".
func formatMoney(v float64, currency string) string {
	cents := int64(math.Round(math.Abs(v) * 100))
	s := fmt.Sprintf("%s.%02d", formatCount(int(cents/100)), cents%100)
	if v < 0 && cents != 0 {
		s = "-" + s
	}
	if currency == "" {
		return s
	}
	return currency + " " + s
}

// formatWage writes an hourly wage: "USD 16.25 an hour".
func formatWage(v float64, currency string) string { return formatMoney(v, currency) + " an hour" }

// formatDays writes a number of days to one decimal: "1 day", "12.5 days".
func formatDays(v float64) string { return formatUnit(v, "day", "days") }

// formatUnit is a number to one decimal and its unit, singular for 1.
func formatUnit(v float64, one, many string) string {
	r := math.Round(v*10) / 10
	s := strconv.FormatFloat(r, 'f', -1, 64)
	if r == 1 {
		return s + " " + one
	}
	return s + " " + many
}

// countCell is a report's count as the page shows it.
func countCell(c outcomes.Count) string {
	switch c.State {
	case outcomes.Exact:
		return formatCount(c.Value)
	case outcomes.Masked:
		return textWithheld
	case outcomes.AtLeast:
		return "at least " + formatCount(c.Value)
	case outcomes.Unsupported:
		return textNA
	}
	return textNone
}

// scoreKind is how a group's score reads.
type scoreKind int

const (
	kindNone  scoreKind = iota // a cohort: counts only
	kindRate                   // a proportion 0–1
	kindWage                   // currency per hour, Unit "USD/h"
	kindMoney                  // an amount, Unit "USD"
	kindDays
	kindWeeks    // weeks, Unit "wk"
	kindCaseload // clients per specialist
)

// scoreCell is a report's score as the page shows it.
func scoreCell(k scoreKind, s outcomes.Score) string {
	switch s.State {
	case outcomes.Masked:
		return textWithheld
	case outcomes.Unsupported:
		return textNA
	case outcomes.Exact, outcomes.AtLeast:
	default:
		return textNone
	}
	var v string
	switch k {
	case kindRate:
		v = formatPct(100 * s.Value)
	case kindWage:
		v = formatWage(s.Value, strings.TrimSuffix(s.Unit, "/h"))
	case kindMoney:
		v = formatMoney(s.Value, s.Unit)
	case kindDays:
		v = formatDays(s.Value)
	case kindWeeks:
		v = formatUnit(s.Value, "week", "weeks")
	case kindCaseload:
		v = formatUnit(s.Value, "client", "clients")
	default:
		return textNone
	}
	if s.State == outcomes.AtLeast {
		v = "at least " + v
	}
	return v
}

// countOf formats an optional head count of a Point: "withheld" when nil.
func countOf(n *int) string {
	if n == nil {
		return textWithheld
	}
	return formatCount(*n)
}
