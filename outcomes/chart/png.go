package chart

import (
	"fmt"
	"image/color"
	"io"
	"math"

	stdfont "golang.org/x/image/font"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/font"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/text"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// The PNG is 1600×900 pixels (16:9, a full slide). Lengths below are in
// points (1/72 inch); at 96 DPI the page is 1200×675 points.
const (
	pixelWidth  = 1600
	pixelHeight = 900
	pngDPI      = 96

	pageW     vg.Length = pixelWidth * 72 / pngDPI
	pageH     vg.Length = pixelHeight * 72 / pngDPI
	margin    vg.Length = 28
	rightGut  vg.Length = 150 // room for the benchmark labels
	lineWidth vg.Length = 3.5
	bannerH   vg.Length = 54 // a not-for-release banner: 72 px
)

var (
	ink      = color.RGBA{0x22, 0x22, 0x22, 0xff}
	inkSoft  = color.RGBA{0x55, 0x55, 0x55, 0xff}
	gridCol  = color.RGBA{0xe2, 0xe2, 0xe2, 0xff}
	axisCol  = color.RGBA{0x88, 0x88, 0x88, 0xff}
	rateCol  = color.RGBA{0x0b, 0x4f, 0x8a, 0xff} // dark blue
	rollCol  = color.RGBA{0x5b, 0x2c, 0x83, 0xff} // dark purple, dotted
	warnCol  = color.RGBA{0x8a, 0x4b, 0x00, 0xff} // dark amber
	bandCol  = color.RGBA{0xee, 0xee, 0xee, 0xff}
	bandText = color.RGBA{0x66, 0x66, 0x66, 0xff}
	white    = color.RGBA{0xff, 0xff, 0xff, 0xff}

	// The not-for-release mark: white on a dark red that no series or
	// benchmark uses, and the same red, faint, across the plot.
	bannerCol    = color.RGBA{0xb0, 0x00, 0x20, 0xff}
	watermarkCol = color.NRGBA{0xb0, 0x00, 0x20, 0x36}

	// Benchmark colours differ in hue and, for readers who cannot tell the
	// hues apart, in dash pattern; all are dark enough for text on white.
	benchStyles = []draw.LineStyle{
		{Color: color.RGBA{0xb3, 0x36, 0x12, 0xff}, Width: 2.25, Dashes: []vg.Length{3, 4}},        // minimal
		{Color: color.RGBA{0x9a, 0x5b, 0x00, 0xff}, Width: 2.25, Dashes: []vg.Length{10, 5}},       // average
		{Color: color.RGBA{0x00, 0x7a, 0x5e, 0xff}, Width: 2.25, Dashes: []vg.Length{16, 4, 3, 4}}, // excellent
	}
)

func sans(size vg.Length, weight stdfont.Weight, style stdfont.Style, c color.Color) text.Style {
	return text.Style{
		Color:   c,
		Font:    font.From(font.Font{Typeface: "Liberation", Variant: "Sans", Weight: weight, Style: style}, size),
		XAlign:  draw.XLeft,
		YAlign:  draw.YBottom,
		Handler: plot.DefaultTextHandler,
	}
}

func regular(size vg.Length, c color.Color) text.Style {
	return sans(size, stdfont.WeightNormal, stdfont.StyleNormal, c)
}

func bold(size vg.Length, c color.Color) text.Style {
	return sans(size, stdfont.WeightBold, stdfont.StyleNormal, c)
}

func italic(size vg.Length, c color.Color) text.Style {
	return sans(size, stdfont.WeightNormal, stdfont.StyleItalic, c)
}

func aligned(s text.Style, x draw.XAlignment, y draw.YAlignment) text.Style {
	s.XAlign, s.YAlign = x, y
	return s
}

// WritePNG draws the quarterly competitive-employment rate of pts as a
// 1600×900 PNG: the rate as a line with labelled points on a 0–100% axis,
// the IPS benchmarks as labelled horizontal reference lines, and withheld
// quarters as shaded gaps. title heads the chart (one line; too long a title
// is shortened with an ellipsis). With a threshold below DefaultThreshold,
// NotForRelease is written in a red banner across the top and another
// across the bottom, and faintly across the plot, so that cropping one edge
// leaves it in place.
func WritePNG(w io.Writer, title string, pts []Point, opts ...Option) error {
	s := settingsOf(opts)
	qs, err := prepare(pts)
	if err != nil {
		return err
	}
	cv := vgimg.NewWith(vgimg.UseWH(pageW, pageH), vgimg.UseDPI(pngDPI))
	dc := draw.New(cv)

	ceiling, floor := pageH, vg.Length(0)
	mark := s.mark()
	if mark != "" {
		drawBanner(dc, pageH-bannerH, mark)
		drawBanner(dc, 0, mark)
		ceiling, floor = pageH-bannerH, bannerH
	}
	top := drawHeader(dc, cleanLabel(title), qs, s, ceiling)
	bottom := drawFooter(dc, qs, s, floor)

	p := newPlot(qs, pageW-2*margin-rightGut)
	area := draw.Crop(dc, margin, -(margin + rightGut), bottom, -(pageH - top))
	p.Draw(area)
	if mark != "" {
		drawWatermark(area, mark)
	}

	if _, err := (vgimg.PngCanvas{Canvas: cv}).WriteTo(w); err != nil {
		return fmt.Errorf("chart: writing PNG: %w", err)
	}
	return nil
}

// drawBanner fills a full-width band from y up with the not-for-release
// colour and writes mark across it.
func drawBanner(dc draw.Canvas, y vg.Length, mark string) {
	r := vg.Rectangle{Min: vg.Point{X: 0, Y: y}, Max: vg.Point{X: pageW, Y: y + bannerH}}
	dc.SetColor(bannerCol)
	dc.Fill(r.Path())
	ts := aligned(bold(32, white), draw.XCenter, draw.YCenter)
	dc.FillText(ts, vg.Point{X: pageW / 2, Y: y + bannerH/2}, fit(ts, mark, pageW-2*margin))
}

// drawWatermark writes mark faintly along the diagonal of the plot area,
// as large as fits, over what is drawn: a crop that keeps the figures
// keeps it.
func drawWatermark(c draw.Canvas, mark string) {
	w, h := c.Max.X-c.Min.X, c.Max.Y-c.Min.Y
	diag := vg.Length(math.Hypot(float64(w), float64(h)))
	ts := aligned(bold(100, watermarkCol), draw.XCenter, draw.YCenter)
	if tw := ts.Width(mark); tw > 0.7*diag {
		ts.Font.Size = ts.Font.Size * 0.7 * diag / tw
	}
	ts.Rotation = math.Atan2(float64(h), float64(w))
	c.FillText(ts, c.Center(), mark)
}

// drawHeader draws the title, subtitle and legend across the top of the page,
// below ceiling, and returns the y coordinate below which the plot may go.
func drawHeader(dc draw.Canvas, title string, qs []quarter, s settings, ceiling vg.Length) vg.Length {
	y := ceiling - margin
	ts := aligned(bold(26, ink), draw.XLeft, draw.YTop)
	if title == "" {
		title = "Competitive employment rate"
	}
	title = fit(ts, title, pageW-2*margin)
	dc.FillText(ts, vg.Point{X: margin, Y: y}, title)
	y -= ts.Height(title) + 10

	ss := aligned(regular(16, inkSoft), draw.XLeft, draw.YTop)
	sub := "Competitive employment rate by quarter, against the IPS benchmarks"
	if sp := span(qs); sp != "" {
		sub += " · " + sp
	}
	sub = fit(ss, sub, pageW-2*margin)
	dc.FillText(ss, vg.Point{X: margin, Y: y}, sub)
	y -= ss.Height(sub) + 18

	ws := aligned(bold(17, warnCol), draw.XLeft, draw.YTop)
	for _, w := range append(statusWarnings(qs), s.warnings...) {
		w = fit(ws, "Warning: "+w, pageW-2*margin)
		dc.FillText(ws, vg.Point{X: margin, Y: y}, w)
		y -= ws.Height(w) + 8
	}
	if y != ceiling-margin {
		y -= 6
	}

	// Legend: one row of sample + label pairs.
	ls := aligned(regular(15, ink), draw.XLeft, draw.YCenter)
	mid := y - ls.Height("Mg")/2
	x := margin
	const sample = 34
	item := func(label string, drawSample func(x0, x1 vg.Length)) {
		drawSample(x, x+sample)
		x += sample + 8
		dc.FillText(ls, vg.Point{X: x, Y: mid}, label)
		x += ls.Width(label) + 28
	}
	item("Competitive employment rate", func(x0, x1 vg.Length) {
		dc.StrokeLine2(draw.LineStyle{Color: rateCol, Width: lineWidth}, x0, mid, x1, mid)
		drawMarker(dc, vg.Point{X: (x0 + x1) / 2, Y: mid}, 5.5)
	})
	if hasRolling(qs) {
		item("12-month rate", func(x0, x1 vg.Length) {
			dc.StrokeLine2(rollStyle, x0, mid, x1, mid)
			drawRollMarker(dc, vg.Point{X: (x0 + x1) / 2, Y: mid}, 5.5)
		})
	}
	for i, b := range benchmarks {
		item(b.Label(), func(x0, x1 vg.Length) {
			dc.StrokeLine2(benchStyles[i], x0, mid, x1, mid)
		})
	}
	if withheld(qs) > 0 {
		item(withheldNote(s), func(x0, x1 vg.Length) {
			r := vg.Rectangle{Min: vg.Point{X: x0 + 6, Y: mid - 10}, Max: vg.Point{X: x1 - 6, Y: mid + 10}}
			dc.SetColor(bandCol)
			dc.Fill(r.Path())
			dc.SetLineStyle(draw.LineStyle{Color: axisCol, Width: 0.75})
			dc.Stroke(r.Path())
		})
	}
	return mid - ls.Height("Mg")/2 - 24
}

// drawFooter writes the notes at the bottom of the page, above floor, and
// returns the y coordinate above which the plot may go.
func drawFooter(dc draw.Canvas, qs []quarter, s settings, floor vg.Length) vg.Length {
	ns := aligned(regular(13, inkSoft), draw.XLeft, draw.YBottom)
	notes := []string{
		"Benchmarks: published IPS quarterly competitive-employment rates — 31% minimal, 41% average, 50% excellent. n: people served in the quarter.",
	}
	if line := s.asOfLine(); line != "" {
		notes = append(notes, line)
	}
	if withheld(qs) > 0 {
		notes = append(notes, fmt.Sprintf(
			"Shaded quarters are withheld to protect privacy: a count was fewer than %d, or would reveal one that was. They are gaps, not zero.",
			s.threshold))
	}
	y := floor + margin - 8
	for i := len(notes) - 1; i >= 0; i-- {
		n := fit(ns, notes[i], pageW-2*margin)
		dc.FillText(ns, vg.Point{X: margin, Y: y}, n)
		y += ns.Height(n) + 5
	}
	return y + 10
}

// newPlot builds the plot proper: axes, grid, withheld bands, benchmark lines
// and the rate series. width is the approximate width it will be drawn in,
// used to decide whether the quarter labels need turning.
func newPlot(qs []quarter, width vg.Length) *plot.Plot {
	p := plot.New()
	p.BackgroundColor = nil

	p.Y.Min, p.Y.Max = 0, 100
	var yt plot.ConstantTicks
	for v := 0; v <= 100; v += 10 {
		yt = append(yt, plot.Tick{Value: float64(v), Label: fmt.Sprintf("%d%%", v)})
	}
	p.Y.Tick.Marker = yt
	p.Y.Label.Text = "Competitive employment rate"
	p.Y.Label.Padding = 10

	n := len(qs)
	p.X.Min, p.X.Max = -0.5, float64(max(n, 1))-0.5
	p.X.Label.Text = "Quarter"
	p.X.Label.Padding = 8

	for _, a := range []*plot.Axis{&p.X, &p.Y} {
		a.Label.TextStyle = aligned(bold(15, inkSoft), draw.XCenter, draw.YBottom)
		a.Tick.Label = regular(15, ink)
		a.LineStyle = draw.LineStyle{Color: axisCol, Width: 1}
		a.Tick.LineStyle = draw.LineStyle{Color: axisCol, Width: 1}
		a.Tick.Length = 5
		a.Padding = 0
	}
	p.X.Tick.Label = aligned(p.X.Tick.Label, draw.XCenter, draw.YTop)
	p.Y.Tick.Label = aligned(p.Y.Tick.Label, draw.XRight, draw.YCenter)
	p.X.Tick.Marker, p.X.Tick.Label = quarterTicks(qs, p.X.Tick.Label, width-90)

	grid := plotter.NewGrid()
	grid.Vertical.Color = nil
	grid.Horizontal = draw.LineStyle{Color: gridCol, Width: 1}

	p.Add(grid, bands{qs}, refLines{}, rolling{qs}, series{qs})
	return p
}

// quarterTicks labels each quarter on the x axis. When the labels would
// collide they are turned 45°, and when even that is too crowded only every
// k-th quarter is labelled, counting back from the latest, which always is.
func quarterTicks(qs []quarter, sty text.Style, width vg.Length) (plot.ConstantTicks, text.Style) {
	if len(qs) == 0 {
		return nil, sty
	}
	slot := width / vg.Length(len(qs))
	widest := vg.Length(0)
	for _, q := range qs {
		widest = max(widest, sty.Width(q.Label), sty.Width(tickNote(q)))
	}
	step := 1
	if widest+10 > slot {
		sty.Rotation = math.Pi / 4
		sty.XAlign, sty.YAlign = draw.XRight, draw.YTop
		// Rotated labels need about a line height of room each.
		if need := sty.Height("Mg") * 1.6; need > slot {
			step = int(math.Ceil(float64(need / slot)))
		}
	}
	ticks := make(plot.ConstantTicks, len(qs))
	for i, q := range qs {
		ticks[i] = plot.Tick{Value: float64(i)}
		if (len(qs)-1-i)%step == 0 {
			ticks[i].Label = q.Label + "\n" + tickNote(q)
			if st := statusNote(q.Status); st != "" {
				ticks[i].Label += "\n(" + st + ")"
			}
		}
	}
	return ticks, sty
}

// tickNote is the line under a quarter's label: its n (people served).
func tickNote(q quarter) string {
	if q.Served == nil {
		return "n withheld"
	}
	return "n = " + formatCount(*q.Served)
}

var rollStyle = draw.LineStyle{Color: rollCol, Width: 3, Dashes: []vg.Length{2, 5}}

// rolling draws the rate over the 12 months ending with each quarter: a
// dotted line with triangle markers, broken where withheld, labelled at the
// latest point and wherever the quarter's own rate is withheld.
type rolling struct{ qs []quarter }

func (r rolling) Plot(c draw.Canvas, p *plot.Plot) {
	trX, trY := p.Transforms(&c)
	var line []vg.Point
	flush := func() {
		if len(line) > 1 {
			c.StrokeLines(rollStyle, line)
		}
		line = nil
	}
	last := -1
	for i, q := range r.qs {
		if q.Roll == nil || !q.Roll.HasRate {
			flush()
			continue
		}
		line = append(line, vg.Point{X: trX(float64(i)), Y: trY(q.Roll.Pct)})
		last = i
	}
	flush()
	vs := aligned(bold(15, rollCol), draw.XCenter, draw.YTop)
	for i, q := range r.qs {
		if q.Roll == nil || !q.Roll.HasRate {
			continue
		}
		pt := vg.Point{X: trX(float64(i)), Y: trY(q.Roll.Pct)}
		drawRollMarker(c, pt, 5)
		if i != last && q.HasRate {
			continue
		}
		label := formatPct(q.Roll.Pct) + " (12 mo)"
		at := vg.Point{X: pt.X, Y: pt.Y - 12}
		sty := vs
		if at.Y-sty.Height(label) < c.Min.Y {
			sty.YAlign = draw.YBottom
			at.Y = pt.Y + 12
		}
		rect := sty.Rectangle(label).Add(at)
		rect.Min, rect.Max = rect.Min.Sub(vg.Point{X: 3, Y: 1}), rect.Max.Add(vg.Point{X: 3, Y: 1})
		shift := max(c.Min.X+2-rect.Min.X, 0) - max(rect.Max.X-c.Max.X, 0)
		at.X += shift
		rect = rect.Add(vg.Point{X: shift})
		c.SetColor(color.NRGBA{0xff, 0xff, 0xff, 0xe6})
		c.Fill(rect.Path())
		c.FillText(sty, at, label)
	}
}

// drawRollMarker draws a rolling-rate point: a triangle with a white ring.
func drawRollMarker(c draw.Canvas, pt vg.Point, radius vg.Length) {
	c.DrawGlyphNoClip(draw.GlyphStyle{Color: white, Radius: radius * 1.45, Shape: draw.PyramidGlyph{}}, pt)
	c.DrawGlyphNoClip(draw.GlyphStyle{Color: rollCol, Radius: radius * 1.1, Shape: draw.PyramidGlyph{}}, pt)
}

// bands shades each withheld quarter and labels it "withheld".
type bands struct{ qs []quarter }

func (b bands) Plot(c draw.Canvas, p *plot.Plot) {
	trX, _ := p.Transforms(&c)
	ts := aligned(italic(14, bandText), draw.XCenter, draw.YBottom)
	for i, q := range b.qs {
		if q.HasRate {
			continue
		}
		x0, x1 := trX(float64(i)-0.42), trX(float64(i)+0.42)
		r := vg.Rectangle{Min: vg.Point{X: x0, Y: c.Min.Y}, Max: vg.Point{X: x1, Y: c.Max.Y}}
		c.SetColor(bandCol)
		c.Fill(r.Path())
		s := ts
		pt := vg.Point{X: (x0 + x1) / 2, Y: c.Min.Y + 8}
		if s.Width("withheld")+8 > x1-x0 {
			s.Rotation = math.Pi / 2
			s.XAlign, s.YAlign = draw.XLeft, draw.YCenter
		}
		c.FillText(s, pt, "withheld")
	}
	if len(b.qs) == 0 {
		ms := aligned(italic(18, bandText), draw.XCenter, draw.YCenter)
		c.FillText(ms, vg.Point{X: c.Center().X, Y: c.Y(0.75)}, "No quarters to show")
	}
}

// refLines draws the benchmark reference lines across the plot and labels
// them in the gutter to the right of it.
type refLines struct{}

func (refLines) Plot(c draw.Canvas, p *plot.Plot) {
	_, trY := p.Transforms(&c)
	for i, b := range benchmarks {
		y := trY(b.Percent)
		c.StrokeLine2(benchStyles[i], c.Min.X, y, c.Max.X, y)
		ls := aligned(bold(16, benchStyles[i].Color), draw.XLeft, draw.YCenter)
		c.FillText(ls, vg.Point{X: c.Max.X + 10, Y: y}, b.Label())
	}
}

// series draws the rate line, broken at withheld quarters, with a marker and
// a value label on every reported quarter.
type series struct{ qs []quarter }

func (s series) Plot(c draw.Canvas, p *plot.Plot) {
	trX, trY := p.Transforms(&c)
	ls := draw.LineStyle{Color: rateCol, Width: lineWidth}
	for _, run := range s.runs() {
		if len(run) < 2 {
			continue
		}
		line := make([]vg.Point, len(run))
		for k, i := range run {
			line[k] = vg.Point{X: trX(float64(i)), Y: trY(s.qs[i].Pct)}
		}
		c.StrokeLines(ls, line)
	}
	// Markers shrink when quarters are packed tight, so the line between
	// them stays visible.
	radius := min(max(0.22*(trX(1)-trX(0)), 2.5), 5.5)
	for i, q := range s.qs {
		if q.HasRate {
			drawMarker(c, vg.Point{X: trX(float64(i)), Y: trY(q.Pct)}, radius)
		}
	}

	// Value labels. When there is not room to label every quarter, only the
	// first and latest reported quarters are labelled (the HTML table has
	// every figure).
	vs := aligned(bold(15, rateCol), draw.XCenter, draw.YBottom)
	first, last, widest := -1, -1, vg.Length(0)
	for i, q := range s.qs {
		if q.HasRate {
			if first < 0 {
				first = i
			}
			last = i
			widest = max(widest, vs.Width(formatPct(q.Pct)))
		}
	}
	crowded := trX(1)-trX(0) < widest+8
	for i, q := range s.qs {
		if !q.HasRate || (crowded && i != first && i != last) {
			continue
		}
		pt := vg.Point{X: trX(float64(i)), Y: trY(q.Pct)}
		label := formatPct(q.Pct)
		sty := vs
		h := sty.Height(label)
		// Above the point, clear of the line, unless the point is a dip
		// (every reported neighbour higher) or there is no room above.
		below := s.dip(i)
		if pt.Y+12+h > c.Max.Y {
			below = true
		}
		if pt.Y-12-h < c.Min.Y {
			below = false
		}
		at := vg.Point{X: pt.X, Y: pt.Y + 12}
		if below {
			sty.YAlign = draw.YTop
			at.Y = pt.Y - 12
		}
		// A white backing keeps the label legible over grid and benchmark
		// lines; keep it clear of the axis and the benchmark labels.
		r := sty.Rectangle(label).Add(at)
		r.Min, r.Max = r.Min.Sub(vg.Point{X: 3, Y: 1}), r.Max.Add(vg.Point{X: 3, Y: 1})
		shift := max(c.Min.X+2-r.Min.X, 0) - max(r.Max.X-c.Max.X, 0)
		at.X += shift
		r = r.Add(vg.Point{X: shift})
		c.SetColor(color.NRGBA{0xff, 0xff, 0xff, 0xe6})
		c.Fill(r.Path())
		c.FillText(sty, at, label)
	}
}

// runs returns the indexes of the quarters joined by the line: each run is
// a maximal stretch of consecutive reported quarters, so a withheld quarter
// breaks the line instead of pulling it to zero.
func (s series) runs() [][]int {
	var runs [][]int
	var run []int
	for i, q := range s.qs {
		if q.HasRate {
			run = append(run, i)
			continue
		}
		if len(run) > 0 {
			runs = append(runs, run)
		}
		run = nil
	}
	if len(run) > 0 {
		runs = append(runs, run)
	}
	return runs
}

// dip reports whether quarter i has at least one reported neighbour and
// every reported neighbour is higher, so the line rises away from it on
// both sides and its label reads best underneath.
func (s series) dip(i int) bool {
	n := 0
	for _, j := range []int{i - 1, i + 1} {
		if j < 0 || j >= len(s.qs) || !s.qs[j].HasRate {
			continue
		}
		if s.qs[j].Pct <= s.qs[i].Pct {
			return false
		}
		n++
	}
	return n > 0
}

// drawMarker draws a rate point: a filled dot with a thin white ring that
// separates it from lines behind it.
func drawMarker(c draw.Canvas, pt vg.Point, radius vg.Length) {
	c.DrawGlyphNoClip(draw.GlyphStyle{Color: white, Radius: radius * 1.35, Shape: draw.CircleGlyph{}}, pt)
	c.DrawGlyphNoClip(draw.GlyphStyle{Color: rateCol, Radius: radius, Shape: draw.CircleGlyph{}}, pt)
}

// fit shortens s with an ellipsis until it fits in width.
func fit(sty text.Style, s string, width vg.Length) string {
	if sty.Width(s) <= width {
		return s
	}
	r := []rune(s)
	for len(r) > 0 && sty.Width(string(r)+"…") > width {
		r = r[:len(r)-1]
	}
	return string(r) + "…"
}
