// Package chart renders the quarterly competitive-employment rate of an IPS
// (Individual Placement and Support) program for people who are not going to
// read a table: a PNG trend chart sized for a slide (WritePNG), and a
// self-contained, accessible HTML page that embeds that chart next to the
// numbers it was drawn from (WriteHTML).
//
// Both outputs set the rate against the published IPS quarterly benchmarks:
// 31% minimal, 41% average and 50% excellent. Quarters whose figures were
// withheld by small-cell suppression are shown as gaps and labelled
// "withheld", never as zero.
//
// Figures suppressed with a threshold below DefaultThreshold (Threshold) are
// for the program's own eyes, and both outputs say so where no reader can
// miss it: "NOT FOR RELEASE (threshold N)" in a banner at the top and at the
// bottom of the PNG and across its plot, and in the HTML page's title and
// banners.
//
// Output is deterministic: the same input produces byte-identical PNG and
// HTML, so reports can be diffed and cached.
package chart

import (
	"fmt"
	"math"
	"strings"
	"time"
	"unicode"

	"github.com/ipsfhir/ipsfhir/outcomes"
)

// Point is one quarter of a program's employment outcome.
//
// A nil field was withheld by small-cell suppression; it is shown as
// "withheld" (a gap in the chart), never as zero.
//
// Rate is the competitive-employment rate, Working ÷ Served, either as the
// proportion 0–1 that the ips-competitive-employment measure scores (0.415)
// or as a percentage 0–100 (41.5). Which one is recognised per series: from
// Working ÷ Served where both counts are present, otherwise a series in which
// no rate exceeds 1 is taken as proportions. Both are drawn and tabled as
// percentages.
type Point struct {
	Quarter         string
	Served, Working *int
	Rate            *float64
	// Rolling is the same over the 12 months ending with the quarter
	// (outcomes.ComputeRolling), or nil when not computed. Its rate is
	// recognised as a proportion or a percentage like the quarters'.
	Rolling *Rolling
	// Status says whether the quarter was over when the figures were
	// computed; a quarter not over (or not started) is marked as such.
	Status outcomes.Completeness
}

// Rolling is a competitive-employment figure over the 12 months ending with
// a quarter. A nil field was withheld.
type Rolling struct {
	Served, Working *int
	Rate            *float64
}

// DefaultThreshold is the small-cell threshold N quoted in the "withheld:
// fewer than N" notes unless Threshold says otherwise: the measures'
// default (counts of 1 to 10 withheld).
const DefaultThreshold = 11

// Option adjusts a chart or page.
type Option func(*settings)

// Threshold sets the small-cell threshold the notes quote; it should be the
// one the reports were suppressed with. Below DefaultThreshold, the chart
// and page are marked not for release (NotForRelease).
func Threshold(n int) Option { return func(s *settings) { s.threshold = n } }

// NotForRelease is the mark of figures suppressed with a threshold below
// DefaultThreshold, "NOT FOR RELEASE (threshold 5)", or "" for a threshold
// of DefaultThreshold or more.
func NotForRelease(threshold int) string {
	if threshold >= DefaultThreshold {
		return ""
	}
	return fmt.Sprintf("NOT FOR RELEASE (threshold %d)", threshold)
}

// releaseNote says why a mark is there, in a sentence.
func releaseNote(threshold int) string {
	shown := fmt.Sprintf("Counts of %d to %d people are shown", threshold, DefaultThreshold-1)
	if threshold == DefaultThreshold-1 {
		shown = fmt.Sprintf("Counts of %d people are shown", threshold)
	}
	return fmt.Sprintf("%s, which a release withholds (counts of 1 to %d never leave the program). For the program's own use only.", shown, DefaultThreshold-1)
}

// Section adds a section after the figures on the HTML page (the program's
// fidelity review, say): a heading and paragraphs of plain text, escaped.
func Section(heading string, paragraphs ...string) Option {
	return func(s *settings) {
		s.sections = append(s.sections, htmlSection{Heading: heading, Paragraphs: paragraphs})
	}
}

type settings struct {
	threshold int
	sections  []htmlSection
	quarters  []QuarterReports
	asOf      time.Time
	source    string
	warnings  []string
}

// mark is the not-for-release mark of these settings, or "".
func (s settings) mark() string { return NotForRelease(s.threshold) }

func settingsOf(opts []Option) settings {
	s := settings{threshold: DefaultThreshold}
	for _, o := range opts {
		o(&s)
	}
	if s.threshold < 1 {
		s.threshold = DefaultThreshold
	}
	return s
}

// benchmark is one published IPS quarterly competitive-employment benchmark.
type benchmark struct {
	Percent float64
	Name    string // "minimal", "average", "excellent"
	Meaning string // for the HTML explanation
}

// Label is the text drawn on the reference line, e.g. "41% average".
func (b benchmark) Label() string { return fmt.Sprintf("%g%% %s", b.Percent, b.Name) }

// benchmarks are the published IPS benchmarks, lowest first.
var benchmarks = []benchmark{
	{31, "minimal", "meets the minimal IPS benchmark."},
	{41, "average", "meets the average IPS benchmark, the rate a typical IPS program reaches."},
	{50, "excellent", "meets the excellent IPS benchmark, the rate high-performing IPS programs reach."},
}

// level names the highest benchmark a percentage reaches, for the HTML table.
func level(pct float64) string {
	name := "Below minimal"
	for _, b := range benchmarks {
		if pct >= b.Percent {
			name = strings.ToUpper(b.Name[:1]) + b.Name[1:]
		}
	}
	return name
}

// quarter is a Point after validation, with the rate in percent.
type quarter struct {
	Label           string
	Served, Working *int
	Pct             float64 // valid only when HasRate
	HasRate         bool
	Status          outcomes.Completeness
	// The 12 months ending with the quarter: Roll is nil when not computed.
	Roll *quarter
}

// hasRolling reports whether any quarter has a rolling figure.
func hasRolling(qs []quarter) bool {
	for _, q := range qs {
		if q.Roll != nil {
			return true
		}
	}
	return false
}

// prepare validates pts and converts rates to percent.
func prepare(pts []Point) ([]quarter, error) {
	qs, err := prepareSeries(pts, "")
	if err != nil {
		return nil, err
	}
	var rolls []Point
	for _, p := range pts {
		if p.Rolling != nil {
			rolls = append(rolls, Point{Quarter: p.Quarter, Served: p.Rolling.Served, Working: p.Rolling.Working, Rate: p.Rolling.Rate})
		}
	}
	rs, err := prepareSeries(rolls, "12 months to ")
	if err != nil {
		return nil, err
	}
	k := 0
	for i, p := range pts {
		qs[i].Status = p.Status
		if p.Rolling != nil {
			qs[i].Roll = &rs[k]
			k++
		}
	}
	return qs, nil
}

func prepareSeries(pts []Point, what string) ([]quarter, error) {
	scale := rateScale(pts)
	qs := make([]quarter, len(pts))
	for i, p := range pts {
		q := quarter{Label: cleanLabel(p.Quarter), Served: p.Served, Working: p.Working}
		if q.Label == "" {
			return nil, fmt.Errorf("chart: point %d has no quarter label", i)
		}
		for _, c := range []struct {
			name string
			v    *int
		}{{"served", p.Served}, {"working", p.Working}} {
			if c.v != nil && *c.v < 0 {
				return nil, fmt.Errorf("chart: %squarter %q: negative %s count %d", what, q.Label, c.name, *c.v)
			}
		}
		if p.Rate != nil {
			r := *p.Rate * scale
			if math.IsNaN(r) || r < 0 || r > 100+1e-9 {
				return nil, fmt.Errorf("chart: %squarter %q: rate %v is not a percentage between 0 and 100", what, q.Label, *p.Rate)
			}
			q.Pct, q.HasRate = math.Min(r, 100), true
		}
		qs[i] = q
	}
	return qs, nil
}

// rateScale returns 100 when the rates in pts are fractions (0–1) and 1 when
// they are already percentages. Quarters with both counts settle it: a rate
// that matches Working ÷ Served (to two decimals) is a fraction, one that
// matches it ×100 (to a whole percent) is a percentage. Without that evidence
// a series in which no rate exceeds 1 is taken as fractions: an IPS program
// employing at most 1% of its caseload in every quarter is not plausible.
func rateScale(pts []Point) float64 {
	var frac, pct int
	maxRate := math.Inf(-1)
	for _, p := range pts {
		if p.Rate == nil {
			continue
		}
		r := *p.Rate
		maxRate = math.Max(maxRate, r)
		if p.Served == nil || p.Working == nil || *p.Served <= 0 || *p.Working <= 0 {
			continue
		}
		f := float64(*p.Working) / float64(*p.Served)
		switch {
		case math.Abs(r-f) <= 0.0051:
			frac++
		case math.Abs(r-100*f) <= 0.51:
			pct++
		}
	}
	switch {
	case frac > pct:
		return 100
	case pct > frac:
		return 1
	case maxRate >= 0 && maxRate <= 1:
		return 100
	default:
		return 1
	}
}

// cleanLabel makes caller-supplied text safe to draw on one line: control
// characters (newlines included) become spaces, runs of space collapse.
func cleanLabel(s string) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || unicode.IsSpace(r) {
			return ' '
		}
		return r
	}, s)
	return strings.Join(strings.Fields(s), " ")
}

// withheld counts the quarters with no rate to plot.
func withheld(qs []quarter) int {
	n := 0
	for _, q := range qs {
		if !q.HasRate {
			n++
		}
	}
	return n
}

func withheldNote(s settings) string {
	return fmt.Sprintf("withheld: fewer than %d", s.threshold)
}

// span describes the quarters covered: "2024 Q1 to 2025 Q4", or the one
// quarter, or "" when there are none.
func span(qs []quarter) string {
	switch {
	case len(qs) == 0:
		return ""
	case qs[0].Label == qs[len(qs)-1].Label:
		return qs[0].Label
	default:
		return qs[0].Label + " to " + qs[len(qs)-1].Label
	}
}
