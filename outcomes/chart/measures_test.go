package chart

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/ipsfhir/ipsfhir/outcomes"
)

// quarterOf builds a quarter's reports by hand: competitive employment
// 12 of 30 (or all withheld), wages withheld.
func quarterOf(q outcomes.Quarter, st outcomes.Completeness, shown bool) QuarterReports {
	ce := outcomes.Group{Code: outcomes.GroupCompetitiveEmployment,
		Populations: []outcomes.Count{{Population: outcomes.PopulationDenominator, Value: 1230, State: outcomes.Exact}, {Population: outcomes.PopulationNumerator, Value: 500, State: outcomes.Exact}},
		Score:       outcomes.Score{Value: 0.4065, State: outcomes.Exact}}
	if !shown {
		ce.Populations = []outcomes.Count{{Population: outcomes.PopulationDenominator, State: outcomes.Masked}, {Population: outcomes.PopulationNumerator, State: outcomes.Masked}}
		ce.Score = outcomes.Score{State: outcomes.Masked}
	}
	wage := outcomes.Group{Code: outcomes.GroupMedianHourlyWage, Populations: []outcomes.Count{{Population: outcomes.PopulationMeasure, State: outcomes.Masked}}, Score: outcomes.Score{State: outcomes.Masked}}
	earn := outcomes.Group{Code: outcomes.GroupTotalEarnings, Populations: []outcomes.Count{{Population: outcomes.PopulationMeasure, Value: 500, State: outcomes.Exact}}, Score: outcomes.Score{Value: 123456.7, Unit: "USD", State: outcomes.Exact}}
	days := outcomes.Group{Code: outcomes.GroupMedianDaysToContact, Score: outcomes.Score{Value: 12, Unit: "d", State: outcomes.Exact}}
	rs := []*outcomes.Report{
		{Measure: outcomes.MeasureCompetitiveEmployment, Quarter: q, Groups: []outcomes.Group{ce}},
		{Measure: outcomes.MeasureEarnings, Quarter: q, Groups: []outcomes.Group{wage, earn}},
		{Measure: outcomes.MeasureDaysToEmployerContact, Quarter: q, Groups: []outcomes.Group{days}},
	}
	roll := []*outcomes.Report{{Measure: outcomes.MeasureCompetitiveEmployment, Quarter: q, Rolling: true, Groups: []outcomes.Group{{Code: outcomes.GroupCompetitiveEmployment,
		Populations: []outcomes.Count{{Population: outcomes.PopulationDenominator, Value: 40, State: outcomes.Exact}, {Population: outcomes.PopulationNumerator, Value: 18, State: outcomes.Exact}},
		Score:       outcomes.Score{Value: 0.45, State: outcomes.Exact}}}}}
	return QuarterReports{Quarter: q, Status: st, Reports: rs, Rolling: roll}
}

func TestPageCoversEveryMeasure(t *testing.T) {
	q := outcomes.Quarter{Year: 2026, Q: 3}
	quarters := []QuarterReports{quarterOf(q.Add(-1), outcomes.Complete, false), quarterOf(q, outcomes.Unfinished, true)}
	pts := Points(quarters)
	if *pts[1].Served != 1230 || pts[0].Rate != nil || *pts[0].Rolling.Rate != 0.45 || pts[1].Status != outcomes.Unfinished {
		t.Fatalf("points %+v", pts)
	}
	var buf bytes.Buffer
	asOf := time.Date(2026, 8, 20, 0, 0, 0, 0, time.UTC)
	if err := WriteHTML(&buf, "T", pts, nil, Reports(quarters), AsOf(asOf, "the ipsfhir store of program p"), Warning("the fidelity review is old")); err != nil {
		t.Fatal(err)
	}
	page := buf.String()
	for _, want := range []string{
		"As of 2026-08-20 from the ipsfhir store of program p.",
		"<strong>Warning:</strong> 2026Q3 is not over",
		"<strong>Warning:</strong> the fidelity review is old",
		`2026Q3 <span class="status">not over</span>`,
		">1,230<", ">40.7%<", ">45.0%<", // quarter rate, 12-month rate
		"Median hourly wage", "Total earnings", ">USD 123,456.70<", ">12 days<",
		"Competitive employment of 20 or more hours a week", // absent from the reports: not available
		">not available<",
	} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	// 2026Q2's competitive figures are withheld, its 12 months are not.
	row := page[strings.Index(page, "<th scope=\"row\">2026Q2"):]
	row = row[:strings.Index(row, "</tr>")]
	if strings.Count(row, ">withheld<") != 3 || !strings.Contains(row, ">45.0%<") {
		t.Errorf("2026Q2 row: %s", row)
	}
	// The chart of a 2-quarter series with one rolling figure draws.
	var png bytes.Buffer
	if err := WritePNG(&png, "T", pts, AsOf(asOf, "x")); err != nil || png.Len() == 0 {
		t.Fatal(err)
	}
}

// Only the measures whose year is not the sum of its quarters get
// 12-month columns; the others say why they have none.
func TestOnlyRollingGroupsHaveTwelveMonthColumns(t *testing.T) {
	q := outcomes.Quarter{Year: 2026, Q: 3}
	tables := measureTables([]QuarterReports{quarterOf(q, outcomes.Complete, true)})
	if len(tables) != len(measureSections) {
		t.Fatalf("%d sections", len(tables))
	}
	for i, m := range tables {
		ms := measureSections[i]
		twelve := 0
		for _, h := range m.Head {
			if strings.HasSuffix(h, ", 12 months") {
				twelve++
			}
		}
		want := outcomes.RollingGroup(ms.group)
		if (twelve > 0) != want || m.Rolling != want || m.NoRolling == want {
			t.Errorf("%s: %d 12-month columns, rolling %v, no rolling %v; want rolling %v", ms.group, twelve, m.Rolling, m.NoRolling, want)
		}
		for _, r := range m.Rows {
			if len(r.Cells) != len(m.Head) {
				t.Errorf("%s: %d cells under %d headings", ms.group, len(r.Cells), len(m.Head))
			}
		}
	}
}
