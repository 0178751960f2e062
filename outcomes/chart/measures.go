package chart

import (
	"fmt"
	"time"

	"github.com/ipsfhir/ipsfhir/outcomes"
)

// QuarterReports is one quarter of a program's outcomes, as the page's
// measure sections show them.
type QuarterReports struct {
	Quarter outcomes.Quarter
	// Status: whether the quarter was over on the day the report was made
	// (Quarter.CompletenessOn, with the caller's today).
	Status outcomes.Completeness
	// Reports are the quarter's reports (outcomes.Compute), one per measure.
	Reports []*outcomes.Report
	// Rolling are the reports of the 12 months ending with the quarter
	// (outcomes.ComputeRolling), or nil.
	Rolling []*outcomes.Report
}

// Points is the competitive-employment series of quarters, for WritePNG and
// WriteHTML: served, working and the rate of each quarter and of the 12
// months ending with it, nil where withheld.
func Points(quarters []QuarterReports) []Point {
	pts := make([]Point, 0, len(quarters))
	for _, q := range quarters {
		p := Point{Quarter: q.Quarter.String(), Status: q.Status}
		p.Served, p.Working, p.Rate = competitive(q.Reports)
		if q.Rolling != nil {
			r := &Rolling{}
			r.Served, r.Working, r.Rate = competitive(q.Rolling)
			p.Rolling = r
		}
		pts = append(pts, p)
	}
	return pts
}

// competitive reads the competitive-employment figures of reports.
func competitive(rs []*outcomes.Report) (served, working *int, rate *float64) {
	for _, r := range rs {
		if r.Measure != outcomes.MeasureCompetitiveEmployment {
			continue
		}
		g := r.Group(outcomes.GroupCompetitiveEmployment)
		if g == nil {
			return
		}
		if c := g.Count(outcomes.PopulationDenominator); c.State == outcomes.Exact {
			v := c.Value
			served = &v
		}
		if c := g.Count(outcomes.PopulationNumerator); c.State == outcomes.Exact {
			v := c.Value
			working = &v
		}
		if g.Score.State == outcomes.Exact {
			v := g.Score.Value
			rate = &v
		}
	}
	return
}

// Reports adds a section per measure to the HTML page, after the
// competitive-employment rate: each quarter's figures (and, where given,
// the 12 months ending with it), in quarter order.
func Reports(quarters []QuarterReports) Option {
	return func(s *settings) { s.quarters = quarters }
}

// AsOf says when and from what the figures were computed: the page and the
// chart carry "As of 2026-10-20 from SOURCE" (source such as "the ipsfhir
// store of program riverside-ips"). The package has no clock: the caller
// passes the day.
func AsOf(day time.Time, source string) Option {
	return func(s *settings) { s.asOf, s.source = day, cleanLabel(source) }
}

// Warning adds a warning the page shows above the figures and the chart
// under its title (a fidelity review more than a year old, say).
func Warning(text string) Option {
	return func(s *settings) { s.warnings = append(s.warnings, cleanLabel(text)) }
}

// asOfLine is the "As of" line, or "" without AsOf.
func (s settings) asOfLine() string {
	if s.asOf.IsZero() {
		return ""
	}
	line := "As of " + s.asOf.Format(time.DateOnly)
	if s.source != "" {
		line += " from " + s.source
	}
	return line + "."
}

// statusWarnings are the warnings about quarters that were not over.
func statusWarnings(qs []quarter) []string {
	var out []string
	for _, q := range qs {
		switch q.Status {
		case outcomes.Unfinished:
			out = append(out, fmt.Sprintf("%s is not over: its figures count only the days so far and will change.", q.Label))
		case outcomes.Future:
			out = append(out, fmt.Sprintf("%s has not started: there is nothing to count yet.", q.Label))
		}
	}
	return out
}

// statusNote is the short mark of a quarter that was not over.
func statusNote(st outcomes.Completeness) string {
	switch st {
	case outcomes.Unfinished:
		return "not over"
	case outcomes.Future:
		return "not started"
	}
	return ""
}

// A measureSection is how the page shows one group of a measure.
type measureSection struct {
	measure, group string
	heading, about string
	cols           []sectionCol
	score          string // column heading of the score; "" for a cohort
	kind           scoreKind
}

type sectionCol struct{ population, label string }

// measureSections are the page's sections after the competitive-employment
// rate, in outcomes.Measures order.
var measureSections = []measureSection{
	{outcomes.MeasureCompetitiveEmployment20h, outcomes.GroupCompetitiveEmployment20h,
		"Competitive employment of 20 or more hours a week", "People served who held a competitive job of 20 or more hours a week on any day of the period.",
		[]sectionCol{{outcomes.PopulationDenominator, "People served"}, {outcomes.PopulationNumerator, "Working 20+ hours a week"}}, "Rate", kindRate},
	{outcomes.MeasureJobStarts, outcomes.GroupJobStarts,
		"Job starts", "Jobs that started in the period (a count of jobs, not people).",
		[]sectionCol{{outcomes.PopulationInitial, "Jobs started"}}, "", kindNone},
	{outcomes.MeasureJobStarts, outcomes.GroupClientsFirstJob,
		"First jobs", "People whose first job since enrollment started in the period.",
		[]sectionCol{{outcomes.PopulationInitial, "People starting a first job"}}, "", kindNone},
	{outcomes.MeasureEarnings, outcomes.GroupMedianHourlyWage,
		"Median hourly wage", "The median of the hourly wages of the people working competitively.",
		[]sectionCol{{outcomes.PopulationMeasure, "People working"}}, "Median hourly wage", kindWage},
	{outcomes.MeasureEarnings, outcomes.GroupTotalEarnings,
		"Total earnings", "What the people working competitively earned in the period, from their hours and wages.",
		[]sectionCol{{outcomes.PopulationMeasure, "People working"}}, "Total earnings", kindMoney},
	{outcomes.MeasureEmployerContact30d, outcomes.GroupEmployerContact30d,
		"First employer contact within 30 days", "People enrolled in the period whose first contact with an employer came within 30 days of enrollment.",
		[]sectionCol{{outcomes.PopulationDenominator, "People enrolled"}, {outcomes.PopulationNumerator, "Contact within 30 days"}}, "Rate", kindRate},
	{outcomes.MeasureDaysToEmployerContact, outcomes.GroupMedianDaysToContact,
		"Days to first employer contact", "The median number of days from enrollment to the first employer contact, of the people enrolled in the period who had one.",
		[]sectionCol{{outcomes.PopulationInitial, "People enrolled"}, {outcomes.PopulationMeasure, "Contacted"}}, "Median", kindDays},
	{outcomes.MeasureDaysToCompetitiveJob, outcomes.GroupMedianDaysToJob,
		"Days to first competitive job", "The median number of days from enrollment to the start of the first competitive job, of the people whose first competitive job since enrollment started in the period.",
		[]sectionCol{{outcomes.PopulationMeasure, "People starting a first competitive job"}}, "Median", kindDays},
	{outcomes.MeasureJobTenure, outcomes.GroupMedianJobTenure,
		"Job tenure", "The median number of weeks the people working competitively had held their longest competitive job, to its end or to the period's last day.",
		[]sectionCol{{outcomes.PopulationMeasure, "People working"}}, "Median", kindWeeks},
	{outcomes.MeasureJobRetention90d, outcomes.GroupJobRetention90d,
		"First competitive job kept 90 days", "People whose first competitive job since enrollment reached its 90th day in the period, and those still in it on that day.",
		[]sectionCol{{outcomes.PopulationDenominator, "Reached 90 days"}, {outcomes.PopulationNumerator, "Still working"}}, "Rate", kindRate},
	{outcomes.MeasureBenefitsPlanning, outcomes.GroupBenefitsPlanning,
		"Benefits planning before the first competitive job", "People whose first competitive job since enrollment started in the period, and those who had benefits planning before it started.",
		[]sectionCol{{outcomes.PopulationDenominator, "First competitive job"}, {outcomes.PopulationNumerator, "Benefits planning first"}}, "Rate", kindRate},
	{outcomes.MeasureCaseloadSize, outcomes.GroupCaseloadSize,
		"Caseload size", "People on the caseload on the period's first day, per employment specialist (the IPS fidelity scale's limit is 20 for a full-time specialist).",
		[]sectionCol{{outcomes.PopulationMeasure, "On the caseload"}}, "Per specialist", kindCaseload},
}

// htmlMeasure is one measure section of the page.
type htmlMeasure struct {
	ID, Heading, About string
	Head               []string // column headings after "Quarter"
	Rows               []htmlMeasureRow
	// Rolling: the 12-month columns are shown; NoRolling: the page has
	// them, and this measure does not (outcomes.RollingGroup).
	Rolling, NoRolling bool
}

type htmlMeasureRow struct {
	Quarter, Status string
	Cells           []string
}

// measureTables builds the sections from the quarters' reports.
func measureTables(quarters []QuarterReports) []htmlMeasure {
	if len(quarters) == 0 {
		return nil
	}
	rolling := false
	for _, q := range quarters {
		rolling = rolling || q.Rolling != nil
	}
	var out []htmlMeasure
	for i, ms := range measureSections {
		secRolling := rolling && outcomes.RollingGroup(ms.group)
		m := htmlMeasure{ID: fmt.Sprintf("measure-%d", i+1), Heading: ms.heading, About: ms.about, Rolling: secRolling, NoRolling: rolling && !secRolling}
		var head []string
		for _, c := range ms.cols {
			head = append(head, c.label)
		}
		if ms.score != "" {
			head = append(head, ms.score)
		}
		m.Head = head
		if secRolling {
			for _, h := range head {
				m.Head = append(m.Head, h+", 12 months")
			}
		}
		for _, q := range quarters {
			row := htmlMeasureRow{Quarter: q.Quarter.String(), Status: statusNote(q.Status)}
			row.Cells = ms.cells(q.Reports)
			if secRolling {
				row.Cells = append(row.Cells, ms.cells(q.Rolling)...)
			}
			m.Rows = append(m.Rows, row)
		}
		out = append(out, m)
	}
	return out
}

// cells are the section's figures in reports: "not available" throughout
// when the reports do not have the group.
func (ms measureSection) cells(rs []*outcomes.Report) []string {
	n := len(ms.cols)
	if ms.score != "" {
		n++
	}
	var g *outcomes.Group
	for _, r := range rs {
		if r.Measure == ms.measure {
			g = r.Group(ms.group)
		}
	}
	out := make([]string, 0, n)
	if g == nil {
		for range n {
			out = append(out, textNA)
		}
		return out
	}
	for _, c := range ms.cols {
		out = append(out, countCell(g.Count(c.population)))
	}
	if ms.score != "" {
		out = append(out, scoreCell(ms.kind, g.Score))
	}
	return out
}
