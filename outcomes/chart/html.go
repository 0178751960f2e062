package chart

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"html/template"
	"image/png"
	"io"
	"strings"
)

// WriteHTML writes a self-contained, accessible HTML page: title as the
// heading, the chart pngData embedded as a data: URI with alt text that
// describes the trend, a table of every quarter (Served, Working and Rate,
// or "withheld" for suppressed figures), and an explanation of the IPS
// benchmark bands. The page loads nothing from elsewhere and has no
// JavaScript; everything caller-supplied is HTML-escaped. With a
// threshold below DefaultThreshold the page is marked NotForRelease: at the
// start of its title, in a banner above the heading and in another at the
// end, and in the chart's alt text.
//
// pngData is normally what WritePNG wrote for the same title and pts; when it
// is nil, WriteHTML draws the chart itself. Anything that is not a PNG image
// is an error.
func WriteHTML(w io.Writer, title string, pts []Point, pngData []byte, opts ...Option) error {
	s := settingsOf(opts)
	qs, err := prepare(pts)
	if err != nil {
		return err
	}
	title = cleanLabel(title)
	if pngData == nil {
		var buf bytes.Buffer
		if err := WritePNG(&buf, title, pts, opts...); err != nil {
			return err
		}
		pngData = buf.Bytes()
	}
	cfg, err := png.DecodeConfig(bytes.NewReader(pngData))
	if err != nil {
		return fmt.Errorf("chart: pngData is not a PNG image: %w", err)
	}

	page := htmlPage{
		Title: title,
		Span:  span(qs),
		// html/template would entity-escape every "+" of the base64 in a
		// URL attribute; the whole attribute is built here instead, from
		// base64 (A–Z a–z 0–9 + / =), which needs no escaping.
		ImageSrc:     template.HTMLAttr(`src="data:image/png;base64,` + base64.StdEncoding.EncodeToString(pngData) + `"`),
		Width:        cfg.Width,
		Height:       cfg.Height,
		Alt:          describe(qs, s),
		Mark:         s.mark(),
		Withheld:     withheld(qs),
		MinCell:      s.threshold,
		MinCellLess1: s.threshold - 1,
		Sections:     s.sections,
		AsOf:         s.asOfLine(),
		Warnings:     append(statusWarnings(qs), s.warnings...),
		Rolling:      hasRolling(qs),
		Measures:     measureTables(s.quarters),
	}
	page.AnyWithheld = page.Withheld > 0 || strings.Contains(fmt.Sprint(page.Measures), textWithheld)
	if page.Title == "" {
		page.Title = "Competitive employment rate"
	}
	if page.Mark != "" {
		page.MarkNote = releaseNote(s.threshold)
		page.Alt = page.Mark + ". " + page.Alt
	}
	for _, q := range qs {
		r := htmlRow{Quarter: q.Label, Status: statusNote(q.Status), Served: countOf(q.Served), Working: countOf(q.Working), Rate: textWithheld, Level: "not rated"}
		if q.HasRate {
			r.Rate, r.Level = formatPct(q.Pct), level(q.Pct)
		}
		if q.Roll != nil {
			r.RollServed, r.RollWorking, r.RollRate = countOf(q.Roll.Served), countOf(q.Roll.Working), textWithheld
			if q.Roll.HasRate {
				r.RollRate = formatPct(q.Roll.Pct)
			}
		} else if page.Rolling {
			r.RollServed, r.RollWorking, r.RollRate = textNA, textNA, textNA
		}
		page.Rows = append(page.Rows, r)
	}
	for i, b := range benchmarks {
		band := htmlBand{Label: b.Label(), Meaning: b.Meaning, Range: fmt.Sprintf("%g%% or more", b.Percent)}
		if i+1 < len(benchmarks) {
			band.Range = fmt.Sprintf("%g%% to under %g%%", b.Percent, benchmarks[i+1].Percent)
		}
		page.Bands = append(page.Bands, band)
	}
	page.Below = fmt.Sprintf("under %g%%", benchmarks[0].Percent)

	var buf bytes.Buffer
	if err := pageTmpl.Execute(&buf, page); err != nil {
		return fmt.Errorf("chart: rendering HTML: %w", err)
	}
	if _, err := buf.WriteTo(w); err != nil {
		return fmt.Errorf("chart: writing HTML: %w", err)
	}
	return nil
}

type htmlPage struct {
	Title, Span   string
	Mark          string // NotForRelease, or ""
	MarkNote      string // why the mark is there
	ImageSrc      template.HTMLAttr
	Width, Height int
	Alt           string
	Rows          []htmlRow
	Withheld      int
	MinCell       int
	MinCellLess1  int
	Bands         []htmlBand
	Below         string
	Sections      []htmlSection
	AsOf          string
	Warnings      []string
	Rolling       bool
	Measures      []htmlMeasure
	AnyWithheld   bool
}

type htmlSection struct {
	Heading    string
	Paragraphs []string
}

type htmlRow struct {
	Quarter, Status, Served, Working, Rate, Level string
	RollServed, RollWorking, RollRate             string
}

type htmlBand struct{ Label, Range, Meaning string }

// describe is the chart's alt text: what the chart shows and what the trend
// is, in words, for readers who cannot see it.
func describe(qs []quarter, s settings) string {
	var b strings.Builder
	if len(qs) == 0 {
		return "Chart of the quarterly competitive employment rate: no quarters reported."
	}
	fmt.Fprintf(&b, "Line chart of the competitive employment rate by quarter, %s, against the IPS benchmarks of 31%% (minimal), 41%% (average) and 50%% (excellent). ", span(qs))

	var rep []quarter
	for _, q := range qs {
		if q.HasRate {
			rep = append(rep, q)
		}
	}
	switch len(rep) {
	case 0:
		fmt.Fprintf(&b, "Every quarter was withheld (fewer than %d), so no rate is shown.", s.threshold)
		return b.String()
	case 1:
		fmt.Fprintf(&b, "The only reported quarter, %s, had a rate of %s, %s.", rep[0].Label, formatPct(rep[0].Pct), standing(rep[0].Pct))
	default:
		first, last := rep[0], rep[len(rep)-1]
		d := last.Pct - first.Pct
		switch {
		case formatPct(first.Pct) == formatPct(last.Pct):
			fmt.Fprintf(&b, "The rate was %s in both %s and %s", formatPct(first.Pct), first.Label, last.Label)
		case d > 0:
			fmt.Fprintf(&b, "The rate rose %s percentage points, from %s in %s to %s in %s", points(d), formatPct(first.Pct), first.Label, formatPct(last.Pct), last.Label)
		default:
			fmt.Fprintf(&b, "The rate fell %s percentage points, from %s in %s to %s in %s", points(-d), formatPct(first.Pct), first.Label, formatPct(last.Pct), last.Label)
		}
		fmt.Fprintf(&b, "; the latest reported quarter is %s.", standing(last.Pct))
		if len(rep) > 2 {
			hi, lo := rep[0], rep[0]
			for _, q := range rep[1:] {
				if q.Pct > hi.Pct {
					hi = q
				}
				if q.Pct < lo.Pct {
					lo = q
				}
			}
			fmt.Fprintf(&b, " Highest: %s in %s; lowest: %s in %s.", formatPct(hi.Pct), hi.Label, formatPct(lo.Pct), lo.Label)
		}
	}
	if n := len(qs) - len(rep); n > 0 {
		fmt.Fprintf(&b, " %d of %d quarters withheld (fewer than %d)", n, len(qs), s.threshold)
		if n <= 6 {
			var names []string
			for _, q := range qs {
				if !q.HasRate {
					names = append(names, q.Label)
				}
			}
			fmt.Fprintf(&b, ": %s", strings.Join(names, ", "))
		}
		b.WriteString("; they are gaps in the line, not zero.")
	}
	return b.String()
}

// standing places a rate against the benchmarks, in words.
func standing(pct float64) string {
	bs := benchmarks
	switch {
	case pct < bs[0].Percent:
		return fmt.Sprintf("below the %s benchmark", bs[0].Label())
	case pct >= bs[len(bs)-1].Percent:
		return fmt.Sprintf("at or above the %s benchmark", bs[len(bs)-1].Label())
	}
	for i := len(bs) - 2; i >= 0; i-- {
		if pct >= bs[i].Percent {
			return fmt.Sprintf("at or above the %s benchmark but below %s", bs[i].Label(), bs[i+1].Label())
		}
	}
	return ""
}

// points formats a difference in percentage points.
func points(d float64) string {
	return strings.TrimSuffix(formatPct(d), "%")
}

var pageTmpl = template.Must(template.New("page").Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{with .Mark}}{{.}} · {{end}}{{.Title}}</title>
<style>
body { margin: 0; background: #fff; color: #222; font: 1rem/1.5 "Liberation Sans", Arial, Helvetica, sans-serif; }
main { max-width: 70rem; margin: 0 auto; padding: 1.5rem; }
h1 { font-size: 1.75rem; line-height: 1.25; margin: 0 0 .25rem; }
h2 { font-size: 1.25rem; margin: 2rem 0 .5rem; }
.lede { color: #555; margin: 0 0 1rem; }
figure { margin: 0; }
img { display: block; max-width: 100%; height: auto; border: 1px solid #ddd; }
figcaption { color: #555; font-size: .9rem; margin-top: .5rem; }
table { border-collapse: collapse; min-width: 60%; }
caption { text-align: left; font-weight: bold; padding: .25rem 0; }
th, td { border: 1px solid #ccc; padding: .35rem .75rem; text-align: left; }
thead th { background: #f2f2f2; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.withheld { color: #555; font-style: italic; }
dt { font-weight: bold; margin-top: .5rem; }
dd { margin-left: 1.5rem; }
.not-for-release { margin: 0 0 1.25rem; padding: .75rem 1rem; border: 4px solid #6d0014; background: #b00020; color: #fff; font-size: 1.05rem; -webkit-print-color-adjust: exact; print-color-adjust: exact; }
.not-for-release strong { display: block; font-size: 1.75rem; letter-spacing: .04em; }
.not-for-release.end { margin: 2rem 0 0; }
.asof { color: #444; margin: 0 0 1rem; }
.warning { margin: 0 0 1.25rem; padding: .75rem 1rem; border: 3px solid #8a4b00; background: #fff4e0; color: #222; }
.warning p { margin: .25rem 0; }
.status { display: block; font-weight: normal; font-size: .85rem; color: #8a4b00; }
.about { color: #444; margin: 0 0 .5rem; }
.table-wrap { overflow-x: auto; }
</style>
</head>
<body>
<main>
{{- with .Mark}}
<p class="not-for-release" role="note"><strong>{{.}}</strong> {{$.MarkNote}}</p>
{{- end}}
<h1>{{.Title}}</h1>
<p class="lede">Competitive employment rate by quarter{{with .Span}}, {{.}}{{end}}, against the IPS benchmarks{{if .Measures}}, and the program’s other outcome measures{{end}}.</p>
{{- with .AsOf}}
<p class="asof">{{.}}</p>
{{- end}}
{{- with .Warnings}}
<div class="warning" role="note" aria-label="Warnings">
{{- range .}}
<p><strong>Warning:</strong> {{.}}</p>
{{- end}}
</div>
{{- end}}
<figure>
<img {{.ImageSrc}} width="{{.Width}}" height="{{.Height}}" alt="{{.Alt}}">
<figcaption>Dashed lines mark the IPS benchmarks.{{if .Rolling}} The dotted line is the rate over the 12 months ending with each quarter.{{end}}{{if .Withheld}} Shaded quarters are withheld.{{end}} Under each quarter, n is the number of people served. Every figure is in the table below.</figcaption>
</figure>
<h2>Quarterly figures</h2>
<div class="table-wrap">
<table>
<caption>Competitive employment by quarter{{if .Rolling}}, and over the 12 months ending with each quarter{{end}}</caption>
<thead>
<tr><th scope="col">Quarter</th><th scope="col">People served</th><th scope="col">Working in a competitive job</th><th scope="col">Competitive employment rate</th><th scope="col">IPS benchmark reached</th>{{if .Rolling}}<th scope="col">People served, 12 months</th><th scope="col">Working, 12 months</th><th scope="col">Rate, 12 months</th>{{end}}</tr>
</thead>
<tbody>
{{- range .Rows}}
<tr><th scope="row">{{.Quarter}}{{with .Status}} <span class="status">{{.}}</span>{{end}}</th>{{template "cell" .Served}}{{template "cell" .Working}}{{template "cell" .Rate}}<td{{if eq .Level "not rated"}} class="withheld"{{end}}>{{.Level}}</td>{{if $.Rolling}}{{template "cell" .RollServed}}{{template "cell" .RollWorking}}{{template "cell" .RollRate}}{{end}}</tr>
{{- else}}
<tr><td colspan="5">No quarters reported.</td></tr>
{{- end}}
</tbody>
</table>
</div>
{{- if .Rolling}}
<p>“12 months”: the same measure computed over the twelve months ending with the quarter (the quarter and the three before it): everyone on the caseload at any time in them, and whoever held a competitive job on any of their days. It is withheld on its own terms, like a quarter; a program too small for quarterly figures often has yearly ones. A year’s counts of people served or working are of distinct people, so they are not the sums of its quarters. The other measures have no 12-month figure: their year would be the sum of the quarters’ (enrollments, job starts, first jobs, earnings), and a withheld quarter could be worked out from it.</p>
{{- end}}
{{- range .Measures}}
<section aria-labelledby="{{.ID}}">
<h2 id="{{.ID}}">{{.Heading}}</h2>
<p class="about">{{.About}}{{if .NoRolling}} No 12-month figure: the year’s count is the sum of the quarters’.{{end}}</p>
<div class="table-wrap">
<table>
<caption>{{.Heading}} by quarter{{if .Rolling}}, and over the 12 months ending with each quarter{{end}}</caption>
<thead>
<tr><th scope="col">Quarter</th>{{range .Head}}<th scope="col">{{.}}</th>{{end}}</tr>
</thead>
<tbody>
{{- range .Rows}}
<tr><th scope="row">{{.Quarter}}{{with .Status}} <span class="status">{{.}}</span>{{end}}</th>{{range .Cells}}{{template "cell" .}}{{end}}</tr>
{{- end}}
</tbody>
</table>
</div>
</section>
{{- end}}
{{- if .AnyWithheld}}
<p>“withheld”: fewer than {{.MinCell}}. To protect the privacy of the people counted, a count from 1 to {{.MinCellLess1}} is withheld, and so is any figure from which a withheld count could be worked out. A withheld quarter is a gap in the chart, not zero.</p>
{{- end}}
<h2>IPS benchmarks</h2>
<p>The IPS quarterly competitive-employment benchmarks divide a quarter’s rate into bands:</p>
<dl>
<dt>Below minimal</dt><dd>{{.Below}}: below the minimal benchmark.</dd>
{{- range .Bands}}
<dt>{{.Label}}</dt><dd>{{.Range}}: {{.Meaning}}</dd>
{{- end}}
</dl>
{{- range .Sections}}
<h2>{{.Heading}}</h2>
{{- range .Paragraphs}}
<p>{{.}}</p>
{{- end}}
{{- end}}
{{- with .Mark}}
<p class="not-for-release end" role="note"><strong>{{.}}</strong> {{$.MarkNote}}</p>
{{- end}}
</main>
</body>
</html>
{{define "cell"}}<td class="num{{if or (eq . "withheld") (eq . "none") (eq . "not available")}} withheld{{end}}">{{.}}</td>{{end}}`))
