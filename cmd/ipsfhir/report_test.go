package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"image"
	pngpkg "image/png"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ipsfhir/ipsfhir/conformance/deqmcheck"
	"github.com/ipsfhir/ipsfhir/ips"
	"github.com/ipsfhir/ipsfhir/outcomes"
	"github.com/ipsfhir/ipsfhir/outcomes/fidelity"
)

// The caseload outcomes' tests construct, with every count worked out by
// hand (outcomes/caseload_test.go): in 2026Q3, 40 active consenting
// clients, 17 working competitively; Alex Rivera's 32 and 14, Sam Chen's 8
// and 3.
var outcomesCaseload = repoFile("testdata", "outcomes", "caseload-2026q3.json")

// testSpecialistKey is what specialist.key holds beside every
// configuration reportStore writes; keyed is the configuration line that
// uses it.
const (
	testSpecialistKey = "report-test-specialist-key-0123456789abcdef"
	keyed             = "reports: {specialistKey: {file: specialist.key}}\n"
)

// specialistCode is the code of a specialist of program under
// testSpecialistKey.
func specialistCode(t *testing.T, program, specialist string) string {
	t.Helper()
	code, err := outcomes.SpecialistCode([]byte(testSpecialistKey), program, specialist)
	if err != nil {
		t.Fatal(err)
	}
	return code
}

// reportStore writes a configuration for program, with the extra keys
// given, and imports the caseload file into its SQLite store (relabelled as
// program's); it returns the configuration's path. specialist.key, next to
// it, holds testSpecialistKey: extra uses it by including keyed.
func reportStore(t *testing.T, program, extra string) string {
	t.Helper()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "ipsfhir.yaml")
	doc := "program: {id: " + program + ", name: " + program + " IPS}\nstore: {driver: sqlite, dsn: ips.db}\n" + extra
	if err := os.WriteFile(cfg, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "specialist.key"), []byte(testSpecialistKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(outcomesCaseload)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := ips.Decode(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	cl.Program.ID = program
	var buf bytes.Buffer
	if err := ips.Encode(&buf, cl); err != nil {
		t.Fatal(err)
	}
	if code, _, stderr := ipsfhir(t, buf.String(), "import", "--config", cfg, "-"); code != exitOK {
		t.Fatalf("import: exit %d: %s", code, stderr)
	}
	return cfg
}

// row finds a table row: its label, then its cells separated by spaces.
func row(t *testing.T, table, label string, cells ...string) {
	t.Helper()
	pattern := `(?m)^\s*` + regexp.QuoteMeta(label) + `\s+` + strings.Join(quoteAll(cells), `\s+`) + `\s*$`
	if !regexp.MustCompile(pattern).MatchString(table) {
		t.Errorf("no row %q %q in:\n%s", label, cells, table)
	}
}

func quoteAll(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = regexp.QuoteMeta(s)
	}
	return out
}

func TestReportTable(t *testing.T) {
	t.Parallel()
	cfg := reportStore(t, "riverside-ips", "consent: {hie: true}\n"+keyed)
	code, stdout, stderr := ipsfhir(t, "", "report", "--for", "hie", "--config", cfg, "--quarter", "2026Q3")
	if code != exitOK || stderr != "" {
		t.Fatalf("report: exit %d\n%s", code, stderr)
	}
	// Threshold 11: the program's totals that reveal nothing small; Sam
	// Chen's 8 clients are withheld, and Alex Rivera's with them.
	alex, sam := specialistCode(t, "riverside-ips", "Alex Rivera"), specialistCode(t, "riverside-ips", "Sam Chen")
	row(t, stdout, "all", "40", "17", "42.5%")
	row(t, stdout, "specialist "+sam, "withheld", "withheld", "withheld")
	row(t, stdout, "specialist "+alex, "withheld", "withheld", "withheld")
	row(t, stdout, "all", "17", "62540.00 USD")
	for _, s := range []string{"Alex", "Rivera", "Sam Chen", "MRN-", "Employer "} {
		if strings.Contains(stdout, s) {
			t.Errorf("the report shows %q", s)
		}
	}

	// Threshold 1: everything, with a warning.
	code, stdout, stderr = ipsfhir(t, "", "report", "--for", "hie", "--config", cfg, "--quarter", "2026q3", "--threshold", "1")
	if code != exitOK || !strings.Contains(stderr, "do not release") {
		t.Fatalf("--threshold 1: exit %d\n%s", code, stderr)
	}
	row(t, stdout, "specialist "+sam, "8", "3", "37.5%")
	row(t, stdout, "specialist "+alex, "32", "14", "43.8%")
	row(t, stdout, "all", "15", "8", "53.3%")

	// The program's default consent is "no": only the one client who said
	// yes counts; a count of 1 is withheld, her 0 jobs are not.
	cfgNo := reportStore(t, "riverside-ips", keyed)
	code, stdout, _ = ipsfhir(t, "", "report", "--for", "hie", "--config", cfgNo, "--quarter", "2026Q3")
	if code != exitOK {
		t.Fatalf("default consent: exit %d", code)
	}
	row(t, stdout, "all", "withheld", "0", "withheld")
}

// TestReportWithoutSpecialistKey: with no reports.specialistKey, nothing is
// broken down by specialist (an unkeyed code could be worked out from a
// staff list), and a note says so; the program's figures are as with a key.
func TestReportWithoutSpecialistKey(t *testing.T) {
	t.Parallel()
	cfg := reportStore(t, "riverside-ips", "consent: {hie: true}\n")
	code, stdout, stderr := ipsfhir(t, "", "report", "--for", "hie", "--config", cfg, "--quarter", "2026Q3", "--threshold", "1")
	if code != exitOK || !strings.Contains(stderr, "reports.specialistKey is not configured") {
		t.Fatalf("report: exit %d\n%s", code, stderr)
	}
	row(t, stdout, "all", "40", "17", "42.5%")
	if strings.Contains(stdout, "specialist ") {
		t.Errorf("specialist rows without a key:\n%s", stdout)
	}
	code, stdout, _ = ipsfhir(t, "", "report", "--for", "hie", "--json", "--config", cfg, "--quarter", "2026Q3")
	if code != exitOK {
		t.Fatalf("report --json: exit %d", code)
	}
	rs, err := outcomes.ParseJSON([]byte(stdout))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		for _, g := range r.Groups {
			if g.Stratifier(outcomes.StratifierSpecialist) != nil {
				t.Errorf("%s/%s is broken down by specialist without a key", r.Measure, g.Code)
			}
		}
	}
	// The old, unkeyed code of a specialist is nowhere.
	unkeyed := sha256.Sum256([]byte("riverside-ips\nalex rivera"))
	if strings.Contains(stdout, hex.EncodeToString(unkeyed[:5])) || strings.Contains(stdout, "es-") {
		t.Error("the report carries a specialist code")
	}

	// A key that cannot be read, or is too short, is a configuration
	// mistake, named; nothing is reported.
	dir := filepath.Dir(cfg)
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(filepath.Join(dir, "short.key"), []byte("PLANTED-short"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, ref := range map[string]string{"short": "{file: short.key}", "missing": "{file: missing.key}"} {
		doc := "program: {id: riverside-ips}\nstore: {driver: sqlite, dsn: ips.db}\nreports: {specialistKey: " + ref + "}\n"
		if err := os.WriteFile(bad, []byte(doc), 0o600); err != nil {
			t.Fatal(err)
		}
		code, stdout, stderr := ipsfhir(t, "", "report", "--config", bad, "--quarter", "2026Q3")
		if code != exitUsage || !strings.Contains(stderr, "reports.specialistKey") || strings.Contains(stderr, "PLANTED") || stdout != "" {
			t.Errorf("%s key: exit %d\n%s%s", name, code, stdout, stderr)
		}
	}
}

// TestReportSpecialistCodes: the program can look up its own staff's codes
// (on stdout, nowhere else); they are the codes its reports carry, the same
// every quarter, and another key gives other ones.
func TestReportSpecialistCodes(t *testing.T) {
	t.Parallel()
	cfg := reportStore(t, "riverside-ips", "consent: {hie: true}\n"+keyed)
	code, stdout, stderr := ipsfhir(t, "", "report", "--config", cfg, "--specialist-codes")
	if code != exitOK {
		t.Fatalf("--specialist-codes: exit %d\n%s", code, stderr)
	}
	alex, sam := specialistCode(t, "riverside-ips", "Alex Rivera"), specialistCode(t, "riverside-ips", "Sam Chen")
	row(t, stdout, alex, "Alex", "Rivera")
	row(t, stdout, sam, "Sam", "Chen")
	if !strings.Contains(stdout, "do not publish") {
		t.Errorf("no warning in:\n%s", stdout)
	}
	for _, q := range []string{"2026Q2", "2026Q3"} {
		_, table, _ := ipsfhir(t, "", "report", "--config", cfg, "--quarter", q, "--threshold", "1")
		if !strings.Contains(table, "specialist "+alex) || !strings.Contains(table, "specialist "+sam) {
			t.Errorf("%s: the table lacks the listed codes:\n%s", q, table)
		}
	}
	// Another program's key: other codes.
	other := reportStore(t, "riverside-ips", "consent: {hie: true}\nreports: {specialistKey: {file: other.key}}\n")
	if err := os.WriteFile(filepath.Join(filepath.Dir(other), "other.key"), []byte(strings.Repeat("o", 40)), 0o600); err != nil {
		t.Fatal(err)
	}
	_, otherCodes, _ := ipsfhir(t, "", "report", "--config", other, "--specialist-codes")
	if strings.Contains(otherCodes, alex) || strings.Contains(otherCodes, sam) || !strings.Contains(otherCodes, "Alex Rivera") {
		t.Errorf("another key gives the same codes:\n%s", otherCodes)
	}

	// Without a key there are no codes to print; with report flags, or
	// files to write, it is refused.
	noKey := reportStore(t, "riverside-ips", "")
	if code, stdout, stderr := ipsfhir(t, "", "report", "--config", noKey, "--specialist-codes"); code != exitUsage || !strings.Contains(stderr, "reports.specialistKey") || strings.Contains(stdout, "Rivera") {
		t.Errorf("no key: exit %d\n%s%s", code, stdout, stderr)
	}
	out := filepath.Join(t.TempDir(), "codes.html")
	for _, args := range [][]string{
		{"--specialist-codes", "--config", cfg, "--html", out},
		{"--specialist-codes", "--config", cfg, "--quarter", "2026Q3"},
		{"--specialist-codes", "--config", cfg, "--json"},
		{"--specialist-codes"},
	} {
		if code, stdout, _ := ipsfhir(t, "", append([]string{"report"}, args...)...); code != exitUsage || strings.Contains(stdout, "Rivera") {
			t.Errorf("%q: exit %d, want 2\n%s", args, code, stdout)
		}
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Error("--specialist-codes wrote a file")
	}
}

func TestReportJSONValidates(t *testing.T) {
	t.Parallel()
	cfg := reportStore(t, "riverside-ips", "consent: {hie: true}\n")
	code, stdout, stderr := ipsfhir(t, "", "report", "--for", "hie", "--json", "--config", cfg, "--quarter", "2026Q3")
	if code != exitOK {
		t.Fatalf("report --json: exit %d\n%s", code, stderr)
	}
	file := filepath.Join(t.TempDir(), "report.json")
	if err := os.WriteFile(file, []byte(stdout), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, out, stderr := ipsfhir(t, "", "validate", file); code != exitOK {
		t.Fatalf("validate: exit %d\n%s%s", code, stderr, out)
	}
	// So are the Measures they report on.
	measures, err := filepath.Glob(repoFile("conformance", "artifacts", "measures", "*.json"))
	if err != nil || len(measures) != len(outcomes.Measures()) {
		t.Fatalf("measures: %v %v", measures, err)
	}
	if code, out, stderr := ipsfhir(t, "", append([]string{"validate"}, measures...)...); code != exitOK {
		t.Fatalf("validate the Measures: exit %d\n%s%s", code, stderr, out)
	}
	rs, err := outcomes.ParseJSON([]byte(stdout))
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != len(outcomes.Measures()) || rs[0].Measure != outcomes.MeasureCompetitiveEmployment || rs[0].Program != "riverside-ips" || rs[0].Threshold != 11 {
		t.Fatalf("reports %+v", rs)
	}
	// Dated now: the report was produced by this run.
	for _, r := range rs {
		if d := time.Since(r.Date); d < 0 || d > time.Hour {
			t.Errorf("%s: date %v", r.Measure, r.Date)
		}
	}
	g := rs[0].Group(outcomes.GroupCompetitiveEmployment)
	if d, n := g.Count(outcomes.PopulationDenominator), g.Count(outcomes.PopulationNumerator); d.Value != 40 || n.Value != 17 || g.Score.Value != 0.425 {
		t.Errorf("served %+v, working %+v, rate %+v", d, n, g.Score)
	}
	// Every MeasureReport meets the DEQM Summary MeasureReport profile;
	// base R4 was checked by validate above.
	checkDEQM(t, []byte(stdout), len(outcomes.Measures()))
}

// checkDEQM checks that a Bundle holds n MeasureReports, each claiming the
// DEQM Summary MeasureReport profile and meeting its differential (the
// StructureDefinition copied in testdata/outcomes/deqm). The one thing let
// through is deqm-6 evaluating to empty for a rate with no value, withheld
// or over nobody (docs/OUTCOMES.md, "In FHIR").
func checkDEQM(t *testing.T, bundle []byte, n int) {
	t.Helper()
	dir := repoFile("testdata", "outcomes", "deqm")
	p, err := deqmcheck.Load(filepath.Join(dir, "StructureDefinition-summary-measurereport-deqm.xml"),
		filepath.Join(dir, "StructureDefinition-extension-measureScoring.json"))
	if err != nil {
		t.Fatal(err)
	}
	var b struct {
		Entry []struct{ Resource json.RawMessage }
	}
	if err := json.Unmarshal(bundle, &b); err != nil {
		t.Fatal(err)
	}
	reports := 0
	for i, e := range b.Entry {
		var mr struct {
			ResourceType string
			Meta         struct{ Profile []string }
			Group        []struct {
				MeasureScore map[string]any
			}
		}
		if err := json.Unmarshal(e.Resource, &mr); err != nil {
			t.Fatal(err)
		}
		if mr.ResourceType != "MeasureReport" {
			continue
		}
		reports++
		if len(mr.Meta.Profile) != 1 || mr.Meta.Profile[0] != outcomes.ProfileDEQMSummary {
			t.Errorf("entry %d claims %v", i, mr.Meta.Profile)
		}
		res := p.Check(e.Resource)
		for _, pr := range res.Problems {
			t.Errorf("entry %d: %s", i, pr)
		}
		for _, em := range res.Empty {
			var gi int
			if _, err := fmt.Sscanf(em, "MeasureReport.group[%d]: deqm-6", &gi); err != nil || gi >= len(mr.Group) || mr.Group[gi].MeasureScore["value"] != nil {
				t.Errorf("entry %d: %s is empty, and not for a rate without a value", i, em)
			}
		}
	}
	if reports != n {
		t.Errorf("%d MeasureReports, want %d", reports, n)
	}
}

func TestReportTrend(t *testing.T) {
	t.Parallel()
	cfg := reportStore(t, "riverside-ips", "consent: {hie: true}\n")
	dir := t.TempDir()
	html, png := filepath.Join(dir, "trend.html"), filepath.Join(dir, "trend.png")
	code, _, stderr := ipsfhir(t, "", "report", "--for", "hie", "--config", cfg, "--quarter", "2026Q3", "--html", html, "--png", png)
	if code != exitOK {
		t.Fatalf("report --html --png: exit %d\n%s", code, stderr)
	}
	p, err := os.ReadFile(png)
	if err != nil || !bytes.HasPrefix(p, []byte("\x89PNG\r\n\x1a\n")) {
		t.Fatalf("png: %v, %.8q", err, p)
	}
	h, err := os.ReadFile(html)
	if err != nil {
		t.Fatal(err)
	}
	page := string(h)
	// The caseload starts in 2025Q1: seven quarters; 2026Q3 at 42.5%.
	for _, s := range []string{"riverside-ips IPS, 2025Q1 to 2026Q3", "2025Q1", "42.5", "data:image/png;base64,"} {
		if !strings.Contains(page, s) {
			t.Errorf("the page lacks %q", s)
		}
	}
	if strings.Contains(page, "2024Q4") || strings.Contains(page, "Alex") {
		t.Error("the page goes back too far or names a specialist")
	}
	// Every measure has its section, with the 12 months beside the quarter,
	// and the page says when and from what it was computed.
	for _, s := range []string{"Competitive employment of 20 or more hours a week", "Job starts", "First jobs", "Median hourly wage",
		"Total earnings", "First employer contact within 30 days", "Days to first employer contact", "Rate, 12 months",
		"As of " + time.Now().Format(time.DateOnly) + " from the ipsfhir store of program riverside-ips."} {
		if !strings.Contains(page, s) {
			t.Errorf("the page lacks %q", s)
		}
	}
	// A quarter that has not started is reported with a warning, in the
	// table, the page and (checked in outcomes/chart) the chart.
	code, stdout, stderr := ipsfhir(t, "", "report", "--config", cfg, "--quarter", "2099Q1", "--html", html)
	if code != exitOK || !strings.HasPrefix(stdout, "WARNING: 2099Q1 has not started") {
		t.Errorf("future quarter: exit %d, stdout:\n%s\n%s", code, stdout, stderr)
	}
	if h, _ := os.ReadFile(html); !strings.Contains(string(h), "2099Q1 has not started") {
		t.Error("the page of a future quarter has no warning")
	}
}

func TestStaleReview(t *testing.T) {
	t.Parallel()
	asOf := time.Date(2026, 10, 20, 9, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		date  string
		stale bool
	}{{"2025-10-20", false}, {"2025-10-19", true}, {"2026-06-01", false}, {"2024-03-15", true}} {
		w := staleReview(fidelity.Summary{ReviewDate: tc.date}, asOf)
		if (w != "") != tc.stale || (tc.stale && !strings.Contains(w, tc.date+", more than a year before these figures (2026-10-20)")) {
			t.Errorf("review of %s: %q, want stale %v", tc.date, w, tc.stale)
		}
	}
}

func TestTrendQuarters(t *testing.T) {
	t.Parallel()
	q := outcomes.Quarter{Year: 2026, Q: 3}
	client := func(enrolled string) *ips.Client { return &ips.Client{EnrolledOn: ips.MustDate(enrolled)} }
	for _, tc := range []struct {
		enrolled string
		first    string
		n        int
	}{
		{"2020-01-01", "2024Q4", 8}, // at most 8
		{"2025-05-01", "2025Q2", 6}, // from the first client
		{"2026-08-01", "2025Q4", 4}, // at least 4
	} {
		qs := trendQuarters([]*ips.Client{client(tc.enrolled), client("2026-09-01")}, q)
		if len(qs) != tc.n || qs[0].String() != tc.first || qs[len(qs)-1] != q {
			t.Errorf("first client %s: %v", tc.enrolled, qs)
		}
	}
}

func TestReportAggregate(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, program, quarter string) string {
		cfg := reportStore(t, program, "consent: {hie: true}\n")
		code, stdout, stderr := ipsfhir(t, "", "report", "--for", "hie", "--json", "--threshold", "1", "--config", cfg, "--quarter", quarter)
		if code != exitOK {
			t.Fatalf("report %s: exit %d\n%s", program, code, stderr)
		}
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(stdout), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	river, east := write("river.json", "riverside-ips", "2026Q3"), write("east.json", "eastside-ips", "2026Q3")
	code, stdout, stderr := ipsfhir(t, "", "report", "--aggregate", river, east)
	if code != exitOK {
		t.Fatalf("aggregate: exit %d\n%s", code, stderr)
	}
	row(t, stdout, "all", "80", "34", "42.5%")
	row(t, stdout, "program eastside-ips", "40", "17", "42.5%")
	row(t, stdout, "all", "80", "34", "n/a") // the median wage cannot be added up
	if !strings.Contains(stdout, "2 programs, 2026Q3") {
		t.Errorf("heading:\n%s", stdout)
	}
	// The inputs were computed with threshold 1: so is the sum marked.
	if !strings.HasPrefix(stdout, "NOT FOR RELEASE (threshold 1)") {
		t.Errorf("an aggregate of threshold-1 reports is not marked:\n%.200s", stdout)
	}

	// --json writes valid FHIR; flags may follow the files.
	code, stdout, stderr = ipsfhir(t, "", "report", "--aggregate", river, east, "--json")
	if code != exitOK {
		t.Fatalf("aggregate --json: exit %d\n%s", code, stderr)
	}
	agg := filepath.Join(dir, "agg.json")
	if err := os.WriteFile(agg, []byte(stdout), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, out, stderr := ipsfhir(t, "", "validate", agg); code != exitOK {
		t.Fatalf("validate the aggregate: exit %d\n%s%s", code, stderr, out)
	}
	if strings.Contains(stdout, `"reporter"`) || strings.Contains(stdout, outcomes.ProfileDEQMSummary) {
		t.Error("an aggregate without --reporter names a reporter or claims DEQM")
	}

	// --reporter names the HIE publishing it; then it claims DEQM.
	code, stdout, stderr = ipsfhir(t, "", "report", "--aggregate", "--json", "--reporter", "https://hie.example.org/id|east-region", river, east)
	if code != exitOK {
		t.Fatalf("aggregate --reporter: exit %d\n%s", code, stderr)
	}
	rs, err := outcomes.ParseJSON([]byte(stdout))
	if err != nil || len(rs) != len(outcomes.Measures()) {
		t.Fatalf("aggregate --reporter: %d reports, %v", len(rs), err)
	}
	for _, r := range rs {
		if r.Reporter != (outcomes.Identifier{System: "https://hie.example.org/id", Value: "east-region"}) || r.Program != "" || time.Since(r.Date) > time.Hour {
			t.Errorf("aggregate %s: reporter %+v, program %q, date %v", r.Measure, r.Reporter, r.Program, r.Date)
		}
	}
	checkDEQM(t, []byte(stdout), len(outcomes.Measures()))
	for _, bad := range [][]string{
		{"--aggregate", "--reporter", "east-region", river},                                         // no system
		{"--aggregate", "--reporter", "hie|east region", river},                                     // not a URI, a space
		{"--aggregate", "--reporter", "urn:ipsfhir:program|riverside-ips", river},                   // a program
		{"--config", "x.yaml", "--quarter", "2026Q3", "--reporter", "https://hie.example.org/id|x"}, // not an aggregate
	} {
		if code, _, stderr := ipsfhir(t, "", append([]string{"report"}, bad...)...); code != exitUsage || !strings.Contains(stderr, "--reporter") {
			t.Errorf("report %q: exit %d\n%s", bad, code, stderr)
		}
	}

	// Inputs that disagree are findings, and the message names the file.
	old := write("old.json", "northside-ips", "2026Q2")
	code, _, stderr = ipsfhir(t, "", "report", "--aggregate", river, old)
	if code != exitFindings || !strings.Contains(stderr, old+": ") || !strings.Contains(stderr, "2026Q2") {
		t.Errorf("another quarter: exit %d\n%s", code, stderr)
	}
	code, _, stderr = ipsfhir(t, "", "report", "--aggregate", river, river)
	if code != exitFindings || !strings.Contains(stderr, "riverside-ips") {
		t.Errorf("a program twice: exit %d\n%s", code, stderr)
	}
	// A file that is not a report, or not there, is unreadable input.
	code, _, stderr = ipsfhir(t, "", "report", "--aggregate", river, outcomesCaseload)
	if code != exitUsage || !strings.Contains(stderr, outcomesCaseload) {
		t.Errorf("a caseload: exit %d\n%s", code, stderr)
	}
	if code, _, _ := ipsfhir(t, "", "report", "--aggregate", river, filepath.Join(dir, "missing.json")); code != exitUsage {
		t.Errorf("a missing file: exit %d", code)
	}
	// So is FHIR that is not MeasureReports: a resource of another type, the
	// Bundle 'ipsfhir map' writes, a Bundle with none, one that cannot be
	// read as a report.
	mapped := filepath.Join(dir, "mapped.json")
	if code, _, stderr := ipsfhir(t, "", "map", "--in", repoFile("testdata", "caseload-sample.json"), "--out", mapped); code != exitOK {
		t.Fatalf("map: exit %d\n%s", code, stderr)
	}
	notReports := map[string]string{
		"patient.json":      `{"resourceType":"Patient","id":"p1"}`,
		"empty-bundle.json": `{"resourceType":"Bundle","type":"collection"}`,
		"bad-report.json":   `{"resourceType":"MeasureReport","status":"pending","type":"summary"}`,
	}
	for name, doc := range notReports {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(doc), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{mapped, filepath.Join(dir, "patient.json"), filepath.Join(dir, "empty-bundle.json"), filepath.Join(dir, "bad-report.json")} {
		for _, args := range [][]string{{f}, {river, f}} {
			code, _, stderr := ipsfhir(t, "", append([]string{"report", "--aggregate"}, args...)...)
			if code != exitUsage || !strings.Contains(stderr, f) {
				t.Errorf("report --aggregate %s: exit %d, want 2 naming the file\n%s", strings.Join(args, " "), code, stderr)
			}
		}
	}
}

func TestReportUsage(t *testing.T) {
	t.Parallel()
	cfg := reportStore(t, "riverside-ips", "")
	for _, tc := range []struct {
		name string
		args []string
		code int
		say  string
	}{
		{"help", []string{"--help"}, exitOK, "small cells are withheld"},
		{"no quarter", []string{"--config", cfg}, exitUsage, "--quarter"},
		{"bad quarter", []string{"--config", cfg, "--quarter", "2026-07"}, exitUsage, "2026Q3"},
		{"bad threshold", []string{"--config", cfg, "--quarter", "2026Q3", "--threshold", "0"}, exitUsage, "--threshold"},
		{"files without --aggregate", []string{"--config", cfg, "--quarter", "2026Q3", "x.json"}, exitUsage, "--aggregate"},
		{"aggregate with config", []string{"--aggregate", "--config", cfg, "x.json"}, exitUsage, "do not apply"},
		{"aggregate nothing", []string{"--aggregate"}, exitUsage, "one or more"},
		{"missing config", []string{"--config", filepath.Join(t.TempDir(), "none.yaml"), "--quarter", "2026Q3"}, exitUsage, "none.yaml"},
	} {
		code, stdout, stderr := ipsfhir(t, "", append([]string{"report"}, tc.args...)...)
		if code != tc.code || !strings.Contains(strings.ToLower(stdout+stderr), strings.ToLower(tc.say)) {
			t.Errorf("%s: exit %d, want %d saying %q\n%s%s", tc.name, code, tc.code, tc.say, stdout, stderr)
		}
	}
}

// report --help names every measure it reports.
func TestReportHelpListsEveryMeasure(t *testing.T) {
	t.Parallel()
	code, stdout, stderr := ipsfhir(t, "", "report", "--help")
	if code != exitOK {
		t.Fatalf("--help: exit %d", code)
	}
	for _, id := range outcomes.Measures() {
		if !strings.Contains(stdout+stderr, "  "+id+" ") {
			t.Errorf("--help does not list %s", id)
		}
	}
}

// TestReportFidelity: a program's IPS-25 review is scored next to its
// outcomes, joins the FHIR Bundle as entered, and is refused when it is
// another program's or incomplete.
func TestReportFidelity(t *testing.T) {
	t.Parallel()
	review := repoFile("testdata", "fidelity", "review-good.json") // program ips-east-county, 104: Good
	cfg := reportStore(t, "ips-east-county", "consent: {hie: true}\n")
	code, stdout, stderr := ipsfhir(t, "", "report", "--config", cfg, "--quarter", "2026Q3", "--fidelity", review)
	if code != exitOK {
		t.Fatalf("report --fidelity: exit %d\n%s", code, stderr)
	}
	if !strings.Contains(stdout, "IPS-25 fidelity 104/125, Good fidelity") {
		t.Errorf("no fidelity line under the table:\n%s", stdout)
	}
	// The review (2024-03-15) is more than a year older than today.
	if !strings.Contains(stdout, "WARNING: the fidelity review is of 2024-03-15, more than a year before") {
		t.Errorf("the old review is not flagged:\n%s", stdout)
	}

	code, stdout, stderr = ipsfhir(t, "", "report", "--json", "--config", cfg, "--quarter", "2026Q3", "--fidelity", review)
	if code != exitOK {
		t.Fatalf("report --json --fidelity: exit %d\n%s", code, stderr)
	}
	if !strings.Contains(stdout, `"resourceType": "QuestionnaireResponse"`) {
		t.Error("the review is not in the Bundle")
	}
	file := filepath.Join(t.TempDir(), "report.json")
	if err := os.WriteFile(file, []byte(stdout), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, out, stderr := ipsfhir(t, "", "validate", file); code != exitOK {
		t.Fatalf("validate: exit %d\n%s%s", code, stderr, out)
	}

	dir := t.TempDir()
	html := filepath.Join(dir, "trend.html")
	if code, _, stderr := ipsfhir(t, "", "report", "--config", cfg, "--quarter", "2026Q3", "--fidelity", review, "--html", html); code != exitOK {
		t.Fatalf("--html --fidelity: exit %d\n%s", code, stderr)
	}
	if h, err := os.ReadFile(html); err != nil || !strings.Contains(string(h), "Program fidelity (IPS-25)") || !strings.Contains(string(h), "104/125") ||
		strings.Count(string(h), "the fidelity review is of 2024-03-15") != 2 {
		t.Errorf("the page lacks the fidelity section or its flag, at the top and in the section (%v)", err)
	}

	other := reportStore(t, "riverside-ips", "consent: {hie: true}\n")
	if code, _, stderr := ipsfhir(t, "", "report", "--config", other, "--quarter", "2026Q3", "--fidelity", review); code != exitFindings || !strings.Contains(stderr, `program "ips-east-county"`) {
		t.Errorf("another program's review: exit %d %s", code, stderr)
	}
	bad := repoFile("testdata", "fidelity", "invalid-in-progress.json")
	if code, _, stderr := ipsfhir(t, "", "report", "--config", cfg, "--quarter", "2026Q3", "--fidelity", bad); code != exitUsage || !strings.Contains(stderr, "invalid review") {
		t.Errorf("an unfinished review: exit %d %s", code, stderr)
	}
}

// TestReportThresholdFromConfig: reports.threshold sets the release
// threshold (17 working is withheld under 20); --threshold overrides it.
func TestReportThresholdFromConfig(t *testing.T) {
	t.Parallel()
	cfg := reportStore(t, "riverside-ips", "consent: {hie: true}\nreports: {threshold: 20}\n")
	code, stdout, stderr := ipsfhir(t, "", "report", "--for", "hie", "--config", cfg, "--quarter", "2026Q3")
	if code != exitOK {
		t.Fatalf("report: exit %d\n%s", code, stderr)
	}
	row(t, stdout, "all", "40", "withheld", "withheld")
	if !strings.Contains(stdout, "Counts from 1 to 19 are withheld") {
		t.Errorf("the table does not state the threshold:\n%.300s", stdout)
	}
	code, stdout, _ = ipsfhir(t, "", "report", "--for", "hie", "--config", cfg, "--quarter", "2026Q3", "--threshold", "11")
	if code != exitOK {
		t.Fatalf("--threshold 11: exit %d", code)
	}
	row(t, stdout, "all", "40", "17", "42.5%")
	if code, _, _ := ipsfhir(t, "", "report", "--config", cfg, "--quarter", "2026Q3", "--threshold", "0"); code != exitUsage {
		t.Errorf("--threshold 0: exit %d, want 2", code)
	}
	low := filepath.Join(t.TempDir(), "low.yaml")
	if err := os.WriteFile(low, []byte("program: {id: riverside-ips}\nstore: {driver: sqlite, dsn: ips.db}\nreports: {threshold: 5}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, _, stderr := ipsfhir(t, "", "report", "--config", low, "--quarter", "2026Q3"); code != exitUsage || !strings.Contains(stderr, "reports.threshold") {
		t.Errorf("reports.threshold 5: exit %d %s", code, stderr)
	}
}

// TestReportNotForRelease: below the release threshold, the table, the page
// and the chart all say NOT FOR RELEASE; at the configured 11 none does.
func TestReportNotForRelease(t *testing.T) {
	t.Parallel()
	cfg := reportStore(t, "riverside-ips", "consent: {hie: true}\n"+keyed)
	const mark = "NOT FOR RELEASE (threshold 5)"
	render := func(args ...string) (table, page string, img image.Image) {
		t.Helper()
		dir := t.TempDir()
		html, png := filepath.Join(dir, "trend.html"), filepath.Join(dir, "trend.png")
		code, stdout, stderr := ipsfhir(t, "", append([]string{"report", "--config", cfg, "--quarter", "2026Q3", "--html", html, "--png", png}, args...)...)
		if code != exitOK {
			t.Fatalf("report %q: exit %d\n%s", args, code, stderr)
		}
		h, err := os.ReadFile(html)
		if err != nil {
			t.Fatal(err)
		}
		f, err := os.Open(png)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if img, err = pngpkg.Decode(f); err != nil {
			t.Fatal(err)
		}
		return stdout, string(h), img
	}
	// redRow says whether the row is mostly the banner's red.
	redRow := func(img image.Image, y int) bool {
		n := 0
		for x := range img.Bounds().Dx() {
			r, g, b, _ := img.At(x, y).RGBA()
			if r>>8 > 0x90 && g>>8 < 0x30 && b>>8 < 0x50 {
				n++
			}
		}
		return n > img.Bounds().Dx()*3/4
	}
	table, page, img := render("--threshold", "5")
	if !strings.HasPrefix(table, mark) {
		t.Errorf("the table does not start with %q:\n%.200s", mark, table)
	}
	if !regexp.MustCompile(`<title>`+regexp.QuoteMeta(mark)).MatchString(page) || strings.Count(page, mark) < 3 {
		t.Errorf("the page is not marked in its title and banners")
	}
	if h := img.Bounds().Dy(); !redRow(img, 10) || !redRow(img, h-10) {
		t.Error("the chart has no banner at its top and bottom")
	}

	table, page, img = render()
	if strings.Contains(table, "NOT FOR RELEASE") || strings.Contains(page, "NOT FOR RELEASE") {
		t.Error("a report at the release threshold is marked not for release")
	}
	if h := img.Bounds().Dy(); redRow(img, 10) || redRow(img, h-10) {
		t.Error("a chart at the release threshold has a banner")
	}
}

// With the default consent.hie: false, the program's own report (the
// default) still counts every client served, and says who it left out;
// --for hie counts the consenting clients only and withholds the
// exclusion counts; what an HIE aggregates must be --for hie output.
func TestReportForProgramAndHIE(t *testing.T) {
	t.Parallel()
	cfg := reportStore(t, "riverside-ips", keyed)
	code, stdout, stderr := ipsfhir(t, "", "report", "--config", cfg, "--quarter", "2026Q3")
	if code != exitOK {
		t.Fatalf("report: exit %d\n%s", code, stderr)
	}
	// The constructed caseload's 40 consenting-by-default clients and x3,
	// who declined HIE sharing and worked: 41 served, 18 working.
	row(t, stdout, "all", "41", "18", "43.9%")
	for _, want := range []string{"The program's own report", "Clients left out of the counts"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("the program's table lacks %q:\n%s", want, stdout)
		}
	}
	row(t, stdout, "referred, not enrolled (status referred)", "0")
	// x1 (closed 30 June) and x2 (enrolled 1 October): 1 each, withheld.
	row(t, stdout, "closed before the quarter", "withheld")
	row(t, stdout, "enrolled after the quarter", "withheld")

	code, stdout, _ = ipsfhir(t, "", "report", "--for", "hie", "--config", cfg, "--quarter", "2026Q3")
	if code != exitOK {
		t.Fatalf("--for hie: exit %d", code)
	}
	row(t, stdout, "all", "withheld", "0", "withheld")
	row(t, stdout, "no consent to HIE reporting", "withheld")

	// The program's own JSON carries ips-excluded, validates, and is
	// refused by --aggregate.
	code, stdout, stderr = ipsfhir(t, "", "report", "--json", "--threshold", "1", "--config", cfg, "--quarter", "2026Q3")
	if code != exitOK {
		t.Fatalf("--json: exit %d\n%s", code, stderr)
	}
	if !strings.Contains(stdout, outcomes.ExtExcluded) || !strings.Contains(stdout, `"valueUnsignedInt": 1`) {
		t.Errorf("the program's JSON lacks its exclusions:\n%s", stdout)
	}
	checkDEQM(t, []byte(stdout), len(outcomes.Measures()))
	own := filepath.Join(t.TempDir(), "own.json")
	if err := os.WriteFile(own, []byte(stdout), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, out, stderr := ipsfhir(t, "", "validate", own); code != exitOK {
		t.Fatalf("validate: exit %d\n%s%s", code, stderr, out)
	}
	if code, _, stderr := ipsfhir(t, "", "report", "--aggregate", own); code != exitFindings || !strings.Contains(stderr, "program's own report") || !strings.Contains(stderr, "--for hie") {
		t.Errorf("aggregate of a program's own report: exit %d\n%s", code, stderr)
	}

	for _, args := range [][]string{
		{"--config", cfg, "--quarter", "2026Q3", "--for", "state"},
		{"--config", cfg, "--quarter", "2026Q3", "--for", ""},
		{"--aggregate", "--for", "hie", own},
		{"--config", cfg, "--specialist-codes", "--for", "hie"},
	} {
		if code, _, stderr := ipsfhir(t, "", append([]string{"report"}, args...)...); code != exitUsage || !strings.Contains(stderr, "--") {
			t.Errorf("report %q: exit %d\n%s", args, code, stderr)
		}
	}
}
