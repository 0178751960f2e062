package chart

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"

	"golang.org/x/net/html"
	"golang.org/x/net/html/atom"
)

func ip(v int) *int         { return &v }
func fp(v float64) *float64 { return &v }

// samplePoints is two years of a growing program with two quarters withheld:
// one with only Working suppressed, one with everything suppressed.
func samplePoints() []Point {
	return []Point{
		{Quarter: "2024 Q1", Served: ip(48), Working: ip(13), Rate: fp(27.1)},
		{Quarter: "2024 Q2", Served: ip(52), Working: ip(17), Rate: fp(32.7)},
		{Quarter: "2024 Q3", Served: ip(44), Working: nil, Rate: nil},
		{Quarter: "2024 Q4", Served: ip(55), Working: ip(21), Rate: fp(38.2)},
		{Quarter: "2025 Q1", Served: ip(58), Working: ip(25), Rate: fp(43.1)},
		{Quarter: "2025 Q2", Served: ip(61), Working: ip(28), Rate: fp(45.9)},
		{Quarter: "2025 Q3", Served: nil, Working: nil, Rate: nil},
		{Quarter: "2025 Q4", Served: ip(63), Working: ip(33), Rate: fp(52.4)},
	}
}

func renderPNG(t *testing.T, title string, pts []Point) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := WritePNG(&buf, title, pts); err != nil {
		t.Fatalf("WritePNG: %v", err)
	}
	return buf.Bytes()
}

func TestWritePNGSizeAndBenchmarkLines(t *testing.T) {
	t.Parallel()
	img, err := png.Decode(bytes.NewReader(renderPNG(t, "Sample program", samplePoints())))
	if err != nil {
		t.Fatalf("output is not a PNG: %v", err)
	}
	if got := img.Bounds().Size(); got != (image.Point{X: pixelWidth, Y: pixelHeight}) {
		t.Fatalf("size = %v, want %dx%d", got, pixelWidth, pixelHeight)
	}
	if img.At(2, 2) != (color.RGBA{0xff, 0xff, 0xff, 0xff}) && !isWhite(img.At(2, 2)) {
		t.Errorf("background at corner = %v, want white", img.At(2, 2))
	}

	// Each benchmark is a long horizontal run of its own colour: the row
	// where that colour is most common must be mostly covered by it.
	rows := make([]int, len(benchStyles))
	for i, ls := range benchStyles {
		row, n := densestRow(img, ls.Color)
		if n < pixelWidth/5 {
			t.Fatalf("benchmark %s: densest row %d has only %d pixels of its colour; no reference line drawn", benchmarks[i].Label(), row, n)
		}
		rows[i] = row
	}
	// Higher benchmarks are higher on the page (smaller y), and the gaps
	// between them are in proportion to the percentages: a linear 0–100 axis.
	if !(rows[2] < rows[1] && rows[1] < rows[0]) {
		t.Fatalf("benchmark rows (minimal, average, excellent) = %v, want decreasing y", rows)
	}
	per := float64(rows[0]-rows[1]) / (benchmarks[1].Percent - benchmarks[0].Percent)
	want := per * (benchmarks[2].Percent - benchmarks[1].Percent)
	if got := float64(rows[1] - rows[2]); math.Abs(got-want) > 2 {
		t.Errorf("average→excellent gap = %vpx, want ≈%.1fpx (%.2fpx per point)", got, want, per)
	}
	// A 0–100% axis taller than half the image: 10 points is tens of pixels.
	if per*100 < pixelHeight/2 {
		t.Errorf("100 percentage points span only %.0fpx", per*100)
	}

	// The line pixels really are drawn, not background.
	for i, row := range rows {
		nonBackground := 0
		for x := 0; x < pixelWidth; x++ {
			if !isWhite(img.At(x, row)) {
				nonBackground++
			}
		}
		if nonBackground < pixelWidth/2 {
			t.Errorf("benchmark %s row %d: only %d non-background pixels", benchmarks[i].Label(), row, nonBackground)
		}
	}

	// The rate series and the withheld bands are drawn.
	if _, n := densestRow(img, rateCol); n == 0 {
		t.Error("no pixels in the rate colour")
	}
	if col, n := densestCol(img, bandCol); n < pixelHeight/3 {
		t.Errorf("no withheld band drawn although two quarters are withheld (column %d: %d px)", col, n)
	}
}

func TestWritePNGNoBandWithoutWithheld(t *testing.T) {
	t.Parallel()
	pts := slices.DeleteFunc(samplePoints(), func(p Point) bool { return p.Rate == nil })
	img, err := png.Decode(bytes.NewReader(renderPNG(t, "All reported", pts)))
	if err != nil {
		t.Fatal(err)
	}
	if col, n := densestCol(img, bandCol); n > pixelHeight/10 {
		t.Errorf("band drawn (column %d, %d px) with nothing withheld", col, n)
	}
}

func TestWritePNGDeterministic(t *testing.T) {
	t.Parallel()
	a := renderPNG(t, "Sample program", samplePoints())
	b := renderPNG(t, "Sample program", samplePoints())
	if !bytes.Equal(a, b) {
		t.Fatal("two renderings of the same input differ")
	}
}

func TestWritePNGConcurrent(t *testing.T) {
	t.Parallel()
	want := renderPNG(t, "Sample program", samplePoints())
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for i := range errs {
		wg.Go(func() {
			var buf bytes.Buffer
			if err := WritePNG(&buf, "Sample program", samplePoints()); err != nil {
				errs[i] = err
			} else if !bytes.Equal(buf.Bytes(), want) {
				errs[i] = errors.New("concurrent rendering differs")
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
}

// Rates given as fractions draw the same chart as rates given as percents.
func TestFractionRatesMatchPercent(t *testing.T) {
	t.Parallel()
	pct := samplePoints()
	frac := samplePoints()
	for i := range frac {
		if frac[i].Rate != nil {
			frac[i].Rate = fp(*frac[i].Rate / 100)
		}
	}
	if !bytes.Equal(renderPNG(t, "x", pct), renderPNG(t, "x", frac)) {
		t.Error("fraction rates draw a different chart from the same rates in percent")
	}
}

func TestRateScale(t *testing.T) {
	for _, tc := range []struct {
		name string
		pts  []Point
		want float64
	}{
		{"percent from counts", []Point{{Served: ip(12), Working: ip(5), Rate: fp(41.7)}}, 1},
		{"fraction from counts", []Point{{Served: ip(12), Working: ip(5), Rate: fp(0.42)}}, 100},
		// The measure's measureScore: a proportion rounded to 4 decimals.
		{"measure score", []Point{{Served: ip(48), Working: ip(13), Rate: fp(0.2708)}, {Served: ip(52), Working: ip(17), Rate: fp(0.3269)}}, 100},
		// Counts say percent even though every rate is at most 1.
		{"tiny percent from counts", []Point{{Served: ip(200), Working: ip(1), Rate: fp(0.5)}}, 1},
		{"no counts, fractions", []Point{{Rate: fp(0.3)}, {Rate: fp(0.45)}}, 100},
		{"no counts, percents", []Point{{Rate: fp(30)}, {Rate: fp(45)}}, 1},
		{"nothing", nil, 1},
	} {
		if got := rateScale(tc.pts); got != tc.want {
			t.Errorf("%s: rateScale = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestSeriesRunsBreakAtWithheld(t *testing.T) {
	qs, err := prepare(samplePoints())
	if err != nil {
		t.Fatal(err)
	}
	got := series{qs}.runs()
	want := [][]int{{0, 1}, {3, 4, 5}, {7}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("runs = %v, want %v", got, want)
	}
}

func TestInvalidInput(t *testing.T) {
	for _, tc := range []struct {
		name string
		pts  []Point
	}{
		{"rate over 100", []Point{{Quarter: "Q1", Rate: fp(150)}}},
		{"negative rate", []Point{{Quarter: "Q1", Rate: fp(-5)}}},
		{"NaN rate", []Point{{Quarter: "Q1", Rate: fp(math.NaN())}}},
		{"negative count", []Point{{Quarter: "Q1", Served: ip(-1)}}},
		{"no quarter label", []Point{{Quarter: " \n", Rate: fp(40)}}},
	} {
		if err := WritePNG(new(bytes.Buffer), "t", tc.pts); err == nil {
			t.Errorf("%s: WritePNG succeeded", tc.name)
		}
		if err := WriteHTML(new(bytes.Buffer), "t", tc.pts, nil); err == nil {
			t.Errorf("%s: WriteHTML succeeded", tc.name)
		}
	}
}

func TestEdgeCasesRender(t *testing.T) {
	t.Parallel()
	var many []Point
	for i := range 40 {
		p := Point{Quarter: fmt.Sprintf("FY%d-Q%d", 2016+i/4, i%4+1), Rate: fp(float64(20 + i))}
		if i%9 == 4 {
			p.Rate = nil
		}
		many = append(many, p)
	}
	for name, pts := range map[string][]Point{
		"empty":        nil,
		"all withheld": {{Quarter: "2025 Q1"}, {Quarter: "2025 Q2"}},
		"one":          {{Quarter: "2025 Q1", Rate: fp(40)}},
		"extremes":     {{Quarter: "a", Rate: fp(0)}, {Quarter: "b", Rate: fp(100)}},
		"many":         many,
	} {
		img, err := png.Decode(bytes.NewReader(renderPNG(t, name+strings.Repeat(" long title", 30), pts)))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if img.Bounds().Dx() != pixelWidth || img.Bounds().Dy() != pixelHeight {
			t.Errorf("%s: size %v", name, img.Bounds())
		}
	}
}

func TestWriteHTML(t *testing.T) {
	t.Parallel()
	const hostile = `<script>alert("x")</script> & <img src=x onerror=alert(1)>`
	pts := samplePoints()
	pngData := renderPNG(t, hostile, pts)
	var buf bytes.Buffer
	if err := WriteHTML(&buf, hostile, pts, pngData); err != nil {
		t.Fatalf("WriteHTML: %v", err)
	}
	page := buf.String()

	checkBalanced(t, page)
	doc, err := html.Parse(strings.NewReader(page))
	if err != nil {
		t.Fatalf("parse: %v", err)
	}

	// The hostile title is text, never markup.
	if strings.Contains(page, "<script") || strings.Contains(page, "<img src=x") {
		t.Error("hostile title not escaped")
	}
	if got := textOf(find(doc, atom.H1)); got != hostile {
		t.Errorf("h1 = %q, want the title as text %q", got, hostile)
	}
	if got := textOf(find(doc, atom.Title)); got != hostile {
		t.Errorf("title = %q, want %q", got, hostile)
	}
	if n := len(findAll(doc, atom.Script)); n != 0 {
		t.Errorf("%d script elements, want none", n)
	}
	if find(doc, atom.Html) == nil || attr(find(doc, atom.Html), "lang") == "" {
		t.Error("html element has no lang")
	}

	// Exactly one image: the PNG itself, as a data: URI, with alt text.
	imgs := findAll(doc, atom.Img)
	if len(imgs) != 1 {
		t.Fatalf("%d img elements, want 1", len(imgs))
	}
	src := attr(imgs[0], "src")
	b64, ok := strings.CutPrefix(src, "data:image/png;base64,")
	if !ok {
		t.Fatalf("img src = %.40q…, want a data:image/png;base64 URI", src)
	}
	if got, err := base64.StdEncoding.DecodeString(b64); err != nil || !bytes.Equal(got, pngData) {
		t.Errorf("embedded image is not the PNG given (err %v)", err)
	}
	if w, h := attr(imgs[0], "width"), attr(imgs[0], "height"); w != "1600" || h != "900" {
		t.Errorf("img size %s×%s, want 1600×900", w, h)
	}
	alt := attr(imgs[0], "alt")
	for _, want := range []string{"rose", "27.1%", "2024 Q1", "52.4%", "2025 Q4", "excellent", "2 of 8 quarters withheld", "2024 Q3, 2025 Q3"} {
		if !strings.Contains(alt, want) {
			t.Errorf("alt text %q lacks %q", alt, want)
		}
	}

	// No external resources: nothing links or loads anything but data:.
	walk(doc, func(n *html.Node) {
		for _, a := range n.Attr {
			switch a.Key {
			case "src", "href", "srcset", "action", "poster", "data":
				if !strings.HasPrefix(a.Val, "data:") {
					t.Errorf("<%s %s=%q> refers outside the page", n.Data, a.Key, a.Val)
				}
			}
			if strings.HasPrefix(a.Key, "on") {
				t.Errorf("<%s> has event handler %s", n.Data, a.Key)
			}
		}
		if n.DataAtom == atom.Link || n.DataAtom == atom.Iframe || n.DataAtom == atom.Object {
			t.Errorf("page has a <%s>", n.Data)
		}
	})
	if strings.Contains(page, "url(") || strings.Contains(page, "@import") {
		t.Error("style loads a resource")
	}

	// One body row per quarter, with "withheld" for each nil field.
	rows := findAll(find(doc, atom.Tbody), atom.Tr)
	if len(rows) != len(pts) {
		t.Fatalf("%d table rows, want %d", len(rows), len(pts))
	}
	for i, p := range pts {
		var cells []string
		for c := rows[i].FirstChild; c != nil; c = c.NextSibling {
			if c.Type == html.ElementNode {
				cells = append(cells, textOf(c))
			}
		}
		want := []string{p.Quarter, countText(p.Served), countText(p.Working), rateText(p.Rate)}
		if len(cells) < 4 || !slices.Equal(cells[:4], want) {
			t.Errorf("row %d = %q, want it to start %q", i, cells, want)
		}
	}
	th := findAll(find(doc, atom.Thead), atom.Th)
	for _, h := range th {
		if attr(h, "scope") != "col" {
			t.Errorf("header %q has no scope=col", textOf(h))
		}
	}

	// Benchmarks explained; the withheld rule stated.
	for _, want := range []string{"31% minimal", "41% average", "50% excellent", "fewer than 11"} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}

	// Deterministic.
	var again bytes.Buffer
	if err := WriteHTML(&again, hostile, pts, pngData); err != nil {
		t.Fatal(err)
	}
	if again.String() != page {
		t.Error("two renderings of the same page differ")
	}
}

func TestWriteHTMLDrawsChartWhenNoPNG(t *testing.T) {
	t.Parallel()
	var a, b bytes.Buffer
	if err := WriteHTML(&a, "Program", samplePoints(), nil); err != nil {
		t.Fatal(err)
	}
	if err := WriteHTML(&b, "Program", samplePoints(), renderPNG(t, "Program", samplePoints())); err != nil {
		t.Fatal(err)
	}
	if a.String() != b.String() {
		t.Error("WriteHTML with nil pngData differs from WriteHTML with WritePNG's output")
	}
}

func TestWriteHTMLRejectsNonPNG(t *testing.T) {
	err := WriteHTML(new(bytes.Buffer), "t", samplePoints(), []byte("GIF89a not a png"))
	if err == nil {
		t.Fatal("WriteHTML accepted non-PNG image data")
	}
}

func TestWriteHTMLEmpty(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	if err := WriteHTML(&buf, "", nil, nil); err != nil {
		t.Fatal(err)
	}
	checkBalanced(t, buf.String())
	if !strings.Contains(buf.String(), "No quarters reported") {
		t.Error("empty page does not say there are no quarters")
	}
}

func TestDescribe(t *testing.T) {
	mk := func(pts ...Point) []quarter {
		qs, err := prepare(pts)
		if err != nil {
			t.Fatal(err)
		}
		return qs
	}
	for _, tc := range []struct {
		name string
		qs   []quarter
		want []string
	}{
		{"empty", nil, []string{"no quarters reported"}},
		{"falling", mk(Point{Quarter: "A", Rate: fp(45)}, Point{Quarter: "B", Rate: fp(35)}),
			[]string{"fell 10.0 percentage points", "from 45.0% in A to 35.0% in B", "at or above the 31% minimal benchmark but below 41% average"}},
		{"flat", mk(Point{Quarter: "A", Rate: fp(20)}, Point{Quarter: "B", Rate: fp(20)}),
			[]string{"was 20.0% in both A and B", "below the 31% minimal benchmark"}},
		{"one", mk(Point{Quarter: "A", Rate: fp(50)}),
			[]string{"only reported quarter, A", "at or above the 50% excellent benchmark"}},
		{"all withheld", mk(Point{Quarter: "A"}, Point{Quarter: "B"}),
			[]string{"Every quarter was withheld (fewer than 11)"}},
	} {
		got := describe(tc.qs, settingsOf(nil))
		for _, w := range tc.want {
			if !strings.Contains(got, w) {
				t.Errorf("%s: describe = %q, lacks %q", tc.name, got, w)
			}
		}
	}
}

func TestLevel(t *testing.T) {
	for pct, want := range map[float64]string{0: "Below minimal", 30.9: "Below minimal", 31: "Minimal", 40.99: "Minimal", 41: "Average", 50: "Excellent", 100: "Excellent"} {
		if got := level(pct); got != want {
			t.Errorf("level(%v) = %q, want %q", pct, got, want)
		}
	}
}

// --- helpers ---

func isWhite(c color.Color) bool {
	r, g, b, _ := c.RGBA()
	return r > 0xfa00 && g > 0xfa00 && b > 0xfa00
}

func near(c, want color.Color) bool {
	r1, g1, b1, _ := c.RGBA()
	r2, g2, b2, _ := want.RGBA()
	d := func(a, b uint32) bool { return max(a, b)-min(a, b) <= 8<<8 }
	return d(r1, r2) && d(g1, g2) && d(b1, b2)
}

// densestRow returns the image row with the most pixels close to want, and
// how many it has.
func densestRow(img image.Image, want color.Color) (row, n int) {
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		c := 0
		for x := b.Min.X; x < b.Max.X; x++ {
			if near(img.At(x, y), want) {
				c++
			}
		}
		if c > n {
			row, n = y, c
		}
	}
	return row, n
}

// densestCol is densestRow for columns.
func densestCol(img image.Image, want color.Color) (col, n int) {
	b := img.Bounds()
	for x := b.Min.X; x < b.Max.X; x++ {
		c := 0
		for y := b.Min.Y; y < b.Max.Y; y++ {
			if near(img.At(x, y), want) {
				c++
			}
		}
		if c > n {
			col, n = x, c
		}
	}
	return col, n
}

var voidElements = map[string]bool{
	"area": true, "base": true, "br": true, "col": true, "embed": true, "hr": true, "img": true,
	"input": true, "link": true, "meta": true, "source": true, "track": true, "wbr": true,
}

// checkBalanced checks that the page tokenizes cleanly and that every
// non-void element is explicitly closed, in order: well-formed, not merely
// parseable by a forgiving HTML5 parser.
func checkBalanced(t *testing.T, page string) {
	t.Helper()
	if !strings.HasPrefix(page, "<!DOCTYPE html>") {
		t.Error("page does not start with <!DOCTYPE html>")
	}
	z := html.NewTokenizer(strings.NewReader(page))
	var stack []string
	for {
		switch z.Next() {
		case html.ErrorToken:
			if z.Err().Error() != "EOF" {
				t.Fatalf("tokenizer: %v", z.Err())
			}
			if len(stack) != 0 {
				t.Fatalf("unclosed elements at end: %v", stack)
			}
			return
		case html.StartTagToken:
			name, _ := z.TagName()
			if !voidElements[string(name)] {
				stack = append(stack, string(name))
			}
		case html.SelfClosingTagToken:
		case html.EndTagToken:
			name, _ := z.TagName()
			if len(stack) == 0 || stack[len(stack)-1] != string(name) {
				t.Fatalf("</%s> closes %v", name, stack)
			}
			stack = stack[:len(stack)-1]
		}
	}
}

func walk(n *html.Node, f func(*html.Node)) {
	if n == nil {
		return
	}
	if n.Type == html.ElementNode {
		f(n)
	}
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		walk(c, f)
	}
}

func findAll(n *html.Node, a atom.Atom) []*html.Node {
	var out []*html.Node
	walk(n, func(n *html.Node) {
		if n.DataAtom == a {
			out = append(out, n)
		}
	})
	return out
}

func find(n *html.Node, a atom.Atom) *html.Node {
	if all := findAll(n, a); len(all) > 0 {
		return all[0]
	}
	return nil
}

func attr(n *html.Node, key string) string {
	if n == nil {
		return ""
	}
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val
		}
	}
	return ""
}

func textOf(n *html.Node) string {
	if n == nil {
		return ""
	}
	var b strings.Builder
	var rec func(*html.Node)
	rec = func(n *html.Node) {
		if n.Type == html.TextNode {
			b.WriteString(n.Data)
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			rec(c)
		}
	}
	rec(n)
	return strings.TrimSpace(b.String())
}

func countText(n *int) string {
	if n == nil {
		return "withheld"
	}
	return fmt.Sprint(*n)
}

func rateText(r *float64) string {
	if r == nil {
		return "withheld"
	}
	return formatPct(*r)
}

// TestThresholdOption: the notes quote the threshold the reports used.
func TestThresholdOption(t *testing.T) {
	pts := []Point{{Quarter: "2026 Q2", Served: ip(40), Working: ip(17), Rate: fp(0.425)}, {Quarter: "2026 Q3"}}
	var def, five bytes.Buffer
	if err := WriteHTML(&def, "t", pts, nil); err != nil {
		t.Fatal(err)
	}
	if err := WriteHTML(&five, "t", pts, nil, Threshold(5)); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(def.String(), "fewer than 11") || strings.Contains(def.String(), "fewer than 5") {
		t.Error("default page does not quote the default threshold 11")
	}
	if !strings.Contains(five.String(), "fewer than 5") || strings.Contains(five.String(), "fewer than 11") {
		t.Error("Threshold(5) page does not quote 5")
	}
}

// TestSectionOption: extra sections appear after the figures, escaped.
func TestSectionOption(t *testing.T) {
	pts := []Point{{Quarter: "2026 Q3", Served: ip(40), Working: ip(17), Rate: fp(0.425)}}
	var page bytes.Buffer
	if err := WriteHTML(&page, "t", pts, nil, Section("Program fidelity", "IPS-25 fidelity 104/125, Good fidelity", "<script>x</script>")); err != nil {
		t.Fatal(err)
	}
	s := page.String()
	if !strings.Contains(s, "<h2>Program fidelity</h2>") || !strings.Contains(s, "IPS-25 fidelity 104/125, Good fidelity") {
		t.Error("section missing")
	}
	if strings.Contains(s, "<script>x") {
		t.Error("section text not escaped")
	}
	if strings.Index(s, "Program fidelity") < strings.Index(s, "Quarterly figures") {
		t.Error("section comes before the figures")
	}
}

// renderWith renders pts as a PNG with opts and decodes it.
func renderWith(t *testing.T, pts []Point, opts ...Option) image.Image {
	t.Helper()
	var buf bytes.Buffer
	if err := WritePNG(&buf, "Sample program", pts, opts...); err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(&buf)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// bandRows counts the rows from y0 to y1 that are mostly the banner colour
// and hold some white (the mark's letters).
func bandRows(img image.Image, y0, y1 int) (red, lettered int) {
	for y := y0; y < y1; y++ {
		n, w := 0, 0
		for x := range pixelWidth {
			switch c := img.At(x, y); {
			case near(c, bannerCol):
				n++
			case isWhite(c):
				w++
			}
		}
		if n > pixelWidth*3/4 {
			red++
			if w > 20 {
				lettered++
			}
		}
	}
	return red, lettered
}

// TestPNGNotForRelease: a chart of figures suppressed below the release
// threshold carries NOT FOR RELEASE in a banner across the top and another
// across the bottom, and faintly across the plot; at 11 (and by default)
// none of it.
func TestPNGNotForRelease(t *testing.T) {
	t.Parallel()
	bannerPx := int(bannerH * pngDPI / 72)
	blended := color.RGBA{238, 201, 208, 0xff} // watermarkCol over white
	for _, tc := range []struct {
		name   string
		opts   []Option
		marked bool
	}{
		{"threshold 5", []Option{Threshold(5)}, true},
		{"threshold 1", []Option{Threshold(1)}, true},
		{"threshold 10", []Option{Threshold(10)}, true},
		{"threshold 11", []Option{Threshold(11)}, false},
		{"threshold 20", []Option{Threshold(20)}, false},
		{"default", nil, false},
	} {
		img := renderWith(t, samplePoints(), tc.opts...)
		topRed, topText := bandRows(img, 0, bannerPx)
		bottomRed, bottomText := bandRows(img, pixelHeight-bannerPx, pixelHeight)
		// The watermark: pixels of its faint red over the white plot.
		faint := 0
		for y := pixelHeight / 4; y < pixelHeight*3/4; y++ {
			for x := pixelWidth / 8; x < pixelWidth*3/4; x++ {
				if near(img.At(x, y), blended) {
					faint++
				}
			}
		}
		if !tc.marked {
			if topRed+bottomRed > 0 || faint > 50 {
				t.Errorf("%s: marked (%d and %d banner rows, %d watermark pixels)", tc.name, topRed, bottomRed, faint)
			}
			continue
		}
		// Both banners fill their band and have letters in them, so
		// cropping either edge leaves one.
		if topRed < bannerPx*3/4 || bottomRed < bannerPx*3/4 {
			t.Errorf("%s: banner rows top %d, bottom %d of %d", tc.name, topRed, bottomRed, bannerPx)
		}
		if topText < 10 || bottomText < 10 {
			t.Errorf("%s: no lettering in the banners (top %d, bottom %d rows)", tc.name, topText, bottomText)
		}
		if faint < 2000 {
			t.Errorf("%s: only %d watermark pixels across the plot", tc.name, faint)
		}
	}
	// The unmarked chart is the same whether the threshold is given or not.
	var a, b bytes.Buffer
	if err := WritePNG(&a, "x", samplePoints()); err != nil {
		t.Fatal(err)
	}
	if err := WritePNG(&b, "x", samplePoints(), Threshold(DefaultThreshold)); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Error("Threshold(11) draws another chart than the default")
	}
}

// TestHTMLNotForRelease: a page of figures suppressed below the release
// threshold says NOT FOR RELEASE at the start of its title, in a banner
// before its heading and in one at its end, and in the chart's alt text;
// at 11 (and by default) nowhere.
func TestHTMLNotForRelease(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		opts []Option
		mark string
	}{
		{"threshold 5", []Option{Threshold(5)}, "NOT FOR RELEASE (threshold 5)"},
		{"threshold 1", []Option{Threshold(1)}, "NOT FOR RELEASE (threshold 1)"},
		{"threshold 11", []Option{Threshold(11)}, ""},
		{"default", nil, ""},
	} {
		var buf bytes.Buffer
		if err := WriteHTML(&buf, "Riverside IPS", samplePoints(), nil, tc.opts...); err != nil {
			t.Fatal(err)
		}
		page := buf.String()
		checkBalanced(t, page)
		doc, err := html.Parse(strings.NewReader(page))
		if err != nil {
			t.Fatal(err)
		}
		title := textOf(find(doc, atom.Title))
		var banners []*html.Node
		for _, p := range findAll(doc, atom.P) {
			if strings.Contains(attr(p, "class"), "not-for-release") {
				banners = append(banners, p)
			}
		}
		alt := attr(find(doc, atom.Img), "alt")
		if tc.mark == "" {
			if strings.Contains(page, "NOT FOR RELEASE") || len(banners) > 0 {
				t.Errorf("%s: marked not for release", tc.name)
			}
			continue
		}
		if !strings.HasPrefix(title, tc.mark) {
			t.Errorf("%s: title %q", tc.name, title)
		}
		if !strings.HasPrefix(alt, tc.mark) {
			t.Errorf("%s: alt text %.60q", tc.name, alt)
		}
		if len(banners) != 2 {
			t.Fatalf("%s: %d banners, want 2", tc.name, len(banners))
		}
		for _, b := range banners {
			if !strings.HasPrefix(textOf(b), tc.mark) || !strings.Contains(textOf(b), "own use only") {
				t.Errorf("%s: banner %q", tc.name, textOf(b))
			}
		}
		// The first banner comes before everything else on the page, the
		// heading included; the second after everything.
		main := find(doc, atom.Main)
		first, last := main.FirstChild, main.LastChild
		for first != nil && first.Type != html.ElementNode {
			first = first.NextSibling
		}
		for last != nil && last.Type != html.ElementNode {
			last = last.PrevSibling
		}
		if first != banners[0] || last != banners[1] {
			t.Errorf("%s: the banners are not the first and last thing on the page", tc.name)
		}
	}
}
