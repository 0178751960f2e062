package outcomes

import (
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"
)

// Table formats reports (of one quarter) as plain text for people: per
// measure group, a row for the whole report, one per program when there
// are several, and one per specialist. Withheld cells read "withheld",
// whatever the reason they were withheld; an aggregate's lower bounds read
// "≥ N". Under the heading it says who the reports are for and how many
// clients were left out of the counts, a line per reason. Reports
// suppressed with a threshold below DefaultThreshold are for
// the program's own eyes: the table's first and last lines say "NOT FOR
// RELEASE (threshold N)".
func Table(reports []*Report) string {
	var b strings.Builder
	if len(reports) == 0 {
		return "no reports\n"
	}
	r0 := reports[0]
	mark := ""
	if t := r0.Threshold; t > 0 && t < DefaultThreshold {
		shown := fmt.Sprintf("counts of %d to %d are shown", t, DefaultThreshold-1)
		if t == DefaultThreshold-1 {
			shown = fmt.Sprintf("counts of %d are shown", t)
		}
		mark = fmt.Sprintf("NOT FOR RELEASE (threshold %d): %s, which a release withholds.\n", t, shown)
		b.WriteString(mark)
	}
	who := "program " + r0.Program
	if r0.Program == "" {
		who = fmt.Sprintf("%d programs", len(programsOf(r0)))
	}
	start, end := r0.Period()
	span := r0.Quarter.String()
	if r0.Rolling {
		span = "the 12 months ending with " + span
	}
	fmt.Fprintf(&b, "IPS supported-employment outcomes: %s, %s (%s to %s)\n", who, span, start, end)
	switch t := r0.Threshold; {
	case r0.Program == "" && t > 1:
		fmt.Fprintf(&b, "The programs withheld their small counts (1 to %d at least) and the cells that would reveal them; sums that include one read \"≥ n\", at least n.\n", t-1)
	case t > 1:
		fmt.Fprintf(&b, "Counts from 1 to %d are withheld, and so are the cells that would reveal them; all read \"withheld\".\n", t-1)
	case t == 1:
		b.WriteString("Nothing is withheld (threshold 1): not for release outside the program.\n")
	}
	writeExcluded(&b, r0)
	for _, r := range reports {
		m := measureByID(r.Measure)
		if m == nil {
			continue
		}
		for gi := range m.groups {
			gd := &m.groups[gi]
			g := r.Group(gd.code)
			if g == nil {
				continue
			}
			fmt.Fprintf(&b, "\n%s: %s (%s)\n", m.title, gd.title, m.id)
			tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
			var cols []string
			head := []string{""}
			for _, p := range gd.populations {
				if p.label != "" {
					cols = append(cols, p.code)
					head = append(head, p.label)
				}
			}
			if gd.score != scoreNone {
				head = append(head, gd.scoreLabel)
			}
			width := len("all")
			for _, s := range g.Stratifiers {
				for _, st := range s.Strata {
					width = max(width, len(s.Code)+1+len(st.Code))
				}
			}
			row := func(label string, pops []Count, s Score) {
				cells := []string{fmt.Sprintf("%-*s", width, label)}
				for _, c := range cols {
					cells = append(cells, countText(countOf(pops, c)))
				}
				if gd.score != scoreNone {
					cells = append(cells, scoreText(gd, s))
				}
				fmt.Fprintln(tw, strings.Join(cells, "\t")+"\t")
			}
			head[0] = strings.Repeat(" ", width)
			fmt.Fprintln(tw, strings.Join(head, "\t")+"\t")
			row("all", g.Populations, g.Score)
			if s := g.Stratifier(StratifierProgram); s != nil && len(s.Strata) > 1 {
				for _, st := range s.Strata {
					row("program "+st.Code, st.Populations, st.Score)
				}
			}
			if s := g.Stratifier(StratifierSpecialist); s != nil {
				for _, st := range s.Strata {
					row("specialist "+st.Code, st.Populations, st.Score)
				}
			}
			_ = tw.Flush()
		}
	}
	if mark != "" {
		b.WriteString("\n" + mark)
	}
	return b.String()
}

func countText(c Count) string {
	switch c.State {
	case Exact:
		return strconv.Itoa(c.Value)
	case Masked:
		return "withheld"
	case AtLeast:
		return "≥ " + strconv.Itoa(c.Value)
	}
	return "–"
}

func scoreText(gd *groupDef, s Score) string {
	var v string
	switch s.State {
	case Exact, AtLeast:
		switch gd.score {
		case scoreRate:
			v = strconv.FormatFloat(s.Value*100, 'f', 1, 64) + "%"
		case scoreMedianDays:
			v = strconv.FormatFloat(s.Value, 'f', -1, 64) + " days"
		case scoreMedianWeeks:
			v = strconv.FormatFloat(s.Value, 'f', -1, 64) + " weeks"
		case scoreMeanCaseload:
			v = strconv.FormatFloat(s.Value, 'f', -1, 64) + " clients"
		default:
			v = strconv.FormatFloat(s.Value, 'f', 2, 64) + " " + s.Unit
		}
		if s.State == AtLeast {
			v = "≥ " + v
		}
		return v
	case Masked:
		return "withheld"
	case Unsupported:
		return "n/a"
	}
	return "–"
}

// writeExcluded says who the reports are for and how many clients they
// left out, a line per reason.
func writeExcluded(b *strings.Builder, r *Report) {
	switch r.Audience {
	case AudienceProgram:
		b.WriteString("The program's own report: every client served in the quarter is counted, whatever their HIE consent. Not for an HIE (ipsfhir report --for hie writes that).\n")
	case AudienceHIE:
		b.WriteString("For HIEs: only clients whose consent allows HIE reporting are counted.\n")
	}
	if len(r.Excluded) == 0 {
		return
	}
	b.WriteString("\nClients left out of the counts\n")
	tw := tabwriter.NewWriter(b, 0, 0, 2, ' ', 0)
	for _, e := range r.Excluded {
		text := excludedTitles[e.Reason]
		if text == "" {
			text = e.Reason
		}
		n := "withheld"
		if e.State == Exact {
			n = strconv.Itoa(e.Value)
		}
		fmt.Fprintf(tw, "  %s\t%s\n", text, n)
	}
	_ = tw.Flush()
	if r.Audience == AudienceHIE {
		b.WriteString("  (Reports for HIEs withhold these counts: with the program's own figures they would describe the clients who did not consent.)\n")
	}
}
