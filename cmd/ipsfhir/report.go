package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/ipsfhir/ipsfhir/adapter/config"
	"github.com/ipsfhir/ipsfhir/adapter/store"
	"github.com/ipsfhir/ipsfhir/ips"
	"github.com/ipsfhir/ipsfhir/outcomes"
	"github.com/ipsfhir/ipsfhir/outcomes/chart"
	"github.com/ipsfhir/ipsfhir/outcomes/fidelity"
)

const reportAbout = `Computes a quarter's IPS (Individual Placement and Support) outcome measures
for the program the configuration names, over the caseload it served: the
clients enrolled on or before the quarter's last day and not closed before
its first. Clients only referred (status referred) are not counted.

--for says who the report is for. program (the default) is the program's
own report: every client served is counted. hie is what leaves for an HIE:
only clients whose consent allows HIE reporting (consent.hie, or the
client's own answer) are counted. Send HIEs only --for hie output.

Every report says how many clients it left out and why, a line per reason
(no enrollment date, referred but not enrolled, enrolled after the quarter,
closed before it, and with --for hie no HIE consent); a count from 1 to the
threshold minus 1 reads "withheld", and reports --for hie withhold them all.

  ips-competitive-employment      clients working competitively ÷ active caseload
  ips-competitive-employment-20h  the same, counting jobs of 20+ hours a week
  ips-job-starts                  jobs started; clients whose first job started
  ips-earnings                    median hourly wage, total earnings of those working
  ips-employer-contact-30d        new clients with a first employer contact within 30 days
  ips-days-to-employer-contact    median days from enrollment to that contact
  ips-days-to-competitive-job     median days from enrollment to the first competitive job
  ips-job-tenure                  median weeks in the longest competitive job held
  ips-job-retention-90d           first competitive jobs still held on their 90th day
  ips-benefits-planning           first competitive jobs with benefits planning before them
  ips-caseload-size               clients on the caseload on the first day, per specialist

Each is broken down by program and, when reports.specialistKey is configured,
by employment specialist: as a code such as es-3f9a1c20b7, never a name, made
with that secret key so that nobody without it can work a code out from a
staff list. Without the key there is no breakdown by specialist (a note says
so). --specialist-codes prints the program's own specialists and their codes,
for the program's eyes only. Definitions: docs/OUTCOMES.md.

Small cells are withheld before anything is printed: every count from 1 to
the threshold minus 1, and every cell from which such a count could be
worked out. They read "withheld" in the table, and carry no count and a
data-absent-reason of "masked" in the FHIR output. Reports name no client.

By default a table is printed; --json prints a FHIR R4 Bundle (collection)
of summary MeasureReports instead, the form HIEs and --aggregate read. Each
MeasureReport is dated now, names the program as its reporter and claims the
DEQM Summary MeasureReport profile (docs/OUTCOMES.md, "In FHIR").
--html and --png also write the trend of the last 4 to 8 quarters up to
--quarter: the PNG charts the competitive-employment rate, the HTML page
embeds it and has a section per measure; both show each quarter's n and the
rate over the 12 months ending with it, say "As of TODAY from the ipsfhir
store of program ID", and warn of a quarter not over or not started (the
table does too) and of a fidelity review more than a year old. The page's
quarters and years are suppressed together, as one publication (they are
linked: a year's served count is its first quarter's plus the enrollments
since), so the page may withhold a figure the quarter's own report shows.

--fidelity FILE adds the program's IPS-25 fidelity review (a FHIR
QuestionnaireResponse to the ips-fidelity-25 Questionnaire; docs/FIDELITY.md):
its score and band are printed under the table and on the HTML page, and
with --json the review itself joins the Bundle.

With --aggregate, the files named (MeasureReports or Bundles that
'ipsfhir report --json' wrote, one per program, all for one quarter) are
added up instead: counts add, rates are recomputed, and a sum that includes
a withheld cell is reported as "at least" that sum, never as exact.
--reporter SYSTEM|VALUE names the organization publishing the aggregate (an
HIE, say: https://hie.example.org/id|east-region); without it the aggregate
names no reporter and does not claim the DEQM profile, which requires one.

A threshold below 11 is for the program's own eyes: the table's first and
last lines, and every page and chart --html and --png write, say "NOT FOR
RELEASE (threshold N)" (a PNG in banners at its top and bottom and across its
plot; a page in its title and in banners at its top and end). The FHIR output
carries the threshold in its ips-suppression-threshold extension.

Exit 0 reported; 1 the store failed, the data cannot be reported (wages in
two currencies) or the aggregated files disagree (quarter, measures, a
program twice); 2 usage, a bad configuration (a specialist key that cannot be
read or is too short, say) or an unreadable file (with --aggregate also a
file that is not a MeasureReport or a Bundle of them ipsfhir can read).`

func runReport(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := newFlags("report", "--config FILE --quarter YYYYQn [--for program|hie] [--json] [--threshold N] [--html FILE] [--png FILE]\n       ipsfhir report --aggregate [--json] [--reporter SYSTEM|VALUE] REPORT.json...\n       ipsfhir report --config FILE --specialist-codes", reportAbout, stderr)
	cfgPath := fs.String("config", "", "configuration file (required, except with --aggregate)")
	quarter := fs.String("quarter", "", "the quarter to report, e.g. 2026Q3 (required, except with --aggregate)")
	asJSON := fs.Bool("json", false, "print a FHIR R4 Bundle of the MeasureReports instead of a table")
	threshold := fs.Int("threshold", 0, "small-cell threshold: counts from 1 to N-1 are withheld (default: the configuration's reports.threshold, 11 unless set; below 11 is not for release, 1 withholds nothing)")
	aggregate := fs.Bool("aggregate", false, "add up the MeasureReport files named (one per program, one quarter)")
	htmlOut := fs.String("html", "", "also write an HTML page with every measure's trend and the chart to `FILE`")
	pngOut := fs.String("png", "", "also write the competitive-employment trend chart as a PNG to `FILE`")
	fidelityPath := fs.String("fidelity", "", "the program's IPS-25 fidelity review, a QuestionnaireResponse JSON `FILE`, reported next to the outcomes")
	specialistCodes := fs.Bool("specialist-codes", false, "print the program's specialists, as recorded, with the codes that stand for them in reports (needs reports.specialistKey; for the program's own use, never to publish)")
	forWho := fs.String("for", "program", "who the report is for: `program` (the program's own: every client served is counted) or hie (what leaves for an HIE: only clients whose consent allows HIE reporting)")
	reporter := fs.String("reporter", "", "with --aggregate: the organization publishing the aggregate, as an identifier `SYSTEM|VALUE` (MeasureReport.reporter)")
	if code, done := parseFlags(fs, args, stdout); done {
		return code
	}
	// Flags may also follow the files (report --aggregate a.json --json).
	var files []string
	for fs.NArg() > 0 {
		files = append(files, fs.Arg(0))
		if code, done := parseFlags(fs, fs.Args()[1:], stdout); done {
			return code
		}
	}
	usage := func(msg string) int {
		fmt.Fprintln(stderr, "ipsfhir report: "+msg)
		fs.Usage()
		return exitUsage
	}
	if *specialistCodes {
		if *aggregate || *quarter != "" || *asJSON || flagSet(fs, "threshold") || flagSet(fs, "for") || *htmlOut != "" || *pngOut != "" || *fidelityPath != "" || len(files) > 0 {
			return usage("--specialist-codes takes --config only")
		}
		if *cfgPath == "" {
			return usage("--specialist-codes needs --config FILE")
		}
		return runSpecialistCodes(ctx, *cfgPath, stdout, stderr)
	}
	if *aggregate {
		if *cfgPath != "" || *quarter != "" || *htmlOut != "" || *pngOut != "" || *fidelityPath != "" || flagSet(fs, "for") {
			return usage("--aggregate reads report files: --config, --quarter, --html, --png, --fidelity and --for do not apply (an aggregate is for HIEs, and its inputs must be too)")
		}
		if len(files) == 0 {
			return usage("--aggregate needs one or more report files")
		}
		o := outcomes.AggregateOptions{Date: time.Now()}
		if *reporter != "" {
			system, value, ok := strings.Cut(*reporter, "|")
			o.Reporter = outcomes.Identifier{System: system, Value: value}
			if !ok || o.Validate() != nil {
				return usage("--reporter must be SYSTEM|VALUE: an absolute URI other than " + outcomes.SystemProgram + ", '|', and 1 to 256 printable characters without spaces")
			}
		}
		return runAggregate(files, o, *asJSON, stdin, stdout, stderr)
	}
	switch {
	case *cfgPath == "" || *quarter == "":
		return usage("--config FILE and --quarter YYYYQn are required")
	case len(files) > 0:
		return usage("report files are read only with --aggregate")
	case *reporter != "":
		return usage("--reporter names who publishes an aggregate; a program's report names the program")
	case *threshold < 0 || (*threshold == 0 && flagSet(fs, "threshold")):
		return usage("--threshold must be at least 1")
	}
	var audience outcomes.Audience
	switch *forWho {
	case "program":
		audience = outcomes.AudienceProgram
	case "hie":
		audience = outcomes.AudienceHIE
	default:
		return usage("--for must be program or hie")
	}
	q, err := outcomes.ParseQuarter(*quarter)
	if err != nil {
		return usage("--quarter: " + err.Error())
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		fmt.Fprintf(stderr, "ipsfhir report: %v\n", err)
		return exitUsage
	}
	specialistKey, err := cfg.Reports.Key()
	if err != nil {
		fmt.Fprintf(stderr, "ipsfhir report: %v\n", err)
		return exitUsage
	}
	var review *fidelityReview
	if *fidelityPath != "" {
		var code int
		if review, code = readFidelity(*fidelityPath, cfg.Program.ID, stdin, stderr); review == nil {
			return code
		}
	}
	clients, code := clientsOfStore(ctx, cfg, stderr)
	if clients == nil && code != 0 {
		return code
	}
	if *threshold == 0 {
		*threshold = cfg.Reports.Threshold
	}
	opts := outcomes.Options{Program: cfg.Program.ID, Audience: audience, Threshold: *threshold, Protection: cfg.Reports.Protection, Consents: cfg.Consent.AllowsHIE, SpecialistKey: specialistKey, Date: time.Now()}
	reports, err := outcomes.Compute(clients, q, opts)
	if err != nil {
		fmt.Fprintf(stderr, "ipsfhir report: %v\n", err)
		return exitFindings
	}
	if review != nil {
		review.stale = staleReview(review.summary, opts.Date)
	}
	if specialistKey == nil {
		fmt.Fprintln(stderr, "ipsfhir report: note: reports.specialistKey is not configured, so the reports are not broken down by specialist (see docs/OUTCOMES.md)")
	} else if len(reports) > 0 && reports[0].BreakdownWithheld {
		fmt.Fprintln(stderr, "ipsfhir report: note: the specialists' caseloads are too small to protect every withheld count, so this quarter is not broken down by specialist (see docs/OUTCOMES.md)")
	}
	if *threshold < outcomes.DefaultThreshold {
		fmt.Fprintf(stderr, "ipsfhir report: note: threshold %d is below the default %d; do not release these figures outside the program\n", *threshold, outcomes.DefaultThreshold)
	}
	if *htmlOut != "" || *pngOut != "" {
		name := cfg.Program.Name
		if name == "" {
			name = cfg.Program.ID
		}
		var extra []chart.Option
		if review != nil {
			paras := []string{review.summary.String(), fidelity.Caveat}
			if w := review.stale; w != "" {
				extra = append(extra, chart.Warning(w))
				paras = append([]string{"Warning: " + w}, paras...)
			}
			extra = append(extra, chart.Section("Program fidelity (IPS-25)", paras...))
		}
		source := "the ipsfhir store of program " + cfg.Program.ID
		if err := writeTrend(clients, q, opts, name, source, *htmlOut, *pngOut, stdout, extra...); err != nil {
			fmt.Fprintf(stderr, "ipsfhir report: %v\n", err)
			return exitFindings
		}
	}
	warning := q.Warning(ips.DateOf(opts.Date))
	if warning != "" {
		if *asJSON {
			fmt.Fprintln(stderr, "ipsfhir report: "+warning)
		} else {
			fmt.Fprintln(stdout, warning)
		}
	}
	return printReports(reports, *asJSON, stdout, stderr, review)
}

// staleReview says that a fidelity review is more than a year older than
// the report (asOf), or "" when it is not.
func staleReview(s fidelity.Summary, asOf time.Time) string {
	d, err := ips.ParseDate(s.ReviewDate)
	if err != nil || !d.Before(ips.DateOf(asOf.AddDate(-1, 0, 0))) {
		return ""
	}
	return fmt.Sprintf("the fidelity review is of %s, more than a year before these figures (%s); IPS programs are reviewed yearly.", s.ReviewDate, asOf.Format(time.DateOnly))
}

// runSpecialistCodes prints every specialist recorded in the store with
// the code that stands for them in reports, to stdout only: a program's
// key to its own reports, never to be published with them.
func runSpecialistCodes(ctx context.Context, cfgPath string, stdout, stderr io.Writer) int {
	cfg, err := config.Load(cfgPath)
	if err != nil {
		fmt.Fprintf(stderr, "ipsfhir report: %v\n", err)
		return exitUsage
	}
	key, err := cfg.Reports.Key()
	if err != nil {
		fmt.Fprintf(stderr, "ipsfhir report: %v\n", err)
		return exitUsage
	}
	if key == nil {
		fmt.Fprintln(stderr, "ipsfhir report: --specialist-codes needs reports.specialistKey in the configuration: without it, reports carry no specialist codes (see docs/CONFIG.md)")
		return exitUsage
	}
	clients, code := clientsOfStore(ctx, cfg, stderr)
	if clients == nil && code != 0 {
		return code
	}
	// One line per code: the spellings of a name that differ only in case
	// and spacing share it; the first in sort order is shown.
	names := map[string]string{}
	unassigned := false
	for _, c := range clients {
		name := strings.Join(strings.Fields(c.Specialist), " ")
		if name == "" {
			unassigned = true
			continue
		}
		code, err := outcomes.SpecialistCode(key, cfg.Program.ID, name)
		if err != nil {
			fmt.Fprintf(stderr, "ipsfhir report: %v\n", err)
			return exitUsage
		}
		if prev, ok := names[code]; !ok || name < prev {
			names[code] = name
		}
	}
	codes := slices.SortedFunc(maps.Keys(names), func(a, b string) int { return strings.Compare(names[a], names[b]) })
	fmt.Fprintf(stdout, "# Specialist codes of program %s: for the program's own use; do not publish this list.\n", cfg.Program.ID)
	for _, code := range codes {
		fmt.Fprintf(stdout, "%-13s  %s\n", code, names[code])
	}
	if unassigned {
		fmt.Fprintf(stdout, "%-13s  (clients with no specialist recorded)\n", "unassigned")
	}
	return exitOK
}

// fidelityReview is a checked fidelity review: as entered, and scored.
type fidelityReview struct {
	raw     json.RawMessage
	summary fidelity.Summary
	stale   string // staleReview's warning, or ""
}

// readFidelity reads and scores a fidelity review of program; on a problem
// it says what and returns nil with the exit code.
func readFidelity(name, program string, stdin io.Reader, stderr io.Writer) (*fidelityReview, int) {
	data, err := readInput(name, stdin)
	if err != nil {
		fmt.Fprintf(stderr, "ipsfhir report: --fidelity: %s\n", fileError(err))
		return nil, exitUsage
	}
	s, err := fidelity.Score(data)
	if err != nil {
		// The problems name linkIds and paths, never answers.
		fmt.Fprintf(stderr, "ipsfhir report: --fidelity %s: %v\n", name, err)
		return nil, exitUsage
	}
	if s.ProgramID != program {
		fmt.Fprintf(stderr, "ipsfhir report: --fidelity %s: the review is of program %q, not %q\n", name, s.ProgramID, program)
		return nil, exitFindings
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, data); err != nil {
		fmt.Fprintf(stderr, "ipsfhir report: --fidelity %s: %v\n", name, err)
		return nil, exitUsage
	}
	return &fidelityReview{raw: compact.Bytes(), summary: s}, exitOK
}

// clientsOfStore opens the configured store and reads every client. On a
// failure it has said why on stderr and returns the exit code.
func clientsOfStore(ctx context.Context, cfg *config.Config, stderr io.Writer) ([]*ips.Client, int) {
	st, code := openStore(ctx, cfg, "report", stderr)
	if st == nil {
		return nil, code
	}
	defer st.Close()
	clients, err := allClients(ctx, st)
	if err != nil {
		fmt.Fprintf(stderr, "ipsfhir report: read the store: %v\n", err)
		return nil, exitFindings
	}
	return clients, 0
}

// allClients reads every client of the store, a page at a time.
func allClients(ctx context.Context, st store.Store) ([]*ips.Client, error) {
	const page = 500
	var out []*ips.Client
	after := ""
	for {
		batch, err := st.ListClients(ctx, after, page)
		if err != nil {
			return nil, err
		}
		for _, s := range batch {
			out = append(out, s.Client)
		}
		if len(batch) < page {
			return out, nil
		}
		after = batch[len(batch)-1].Client.ID
	}
}

func printReports(reports []*outcomes.Report, asJSON bool, stdout, stderr io.Writer, review *fidelityReview) int {
	if !asJSON {
		fmt.Fprint(stdout, outcomes.Table(reports))
		if review != nil {
			fmt.Fprintf(stdout, "\nProgram fidelity\n  %s\n", review.summary)
			if review.stale != "" {
				fmt.Fprintf(stdout, "  WARNING: %s\n", review.stale)
			}
		}
		return exitOK
	}
	data, err := outcomes.BundleJSON(reports)
	if err == nil && review != nil {
		data, err = withEntry(data, review.raw)
	}
	if err == nil {
		_, err = stdout.Write(data)
	}
	if err != nil {
		fmt.Fprintf(stderr, "ipsfhir report: %v\n", err)
		return exitFindings
	}
	return exitOK
}

func runAggregate(files []string, o outcomes.AggregateOptions, asJSON bool, stdin io.Reader, stdout, stderr io.Writer) int {
	docs := make([][]byte, len(files))
	for i, name := range files {
		data, err := readInput(name, stdin)
		if err != nil {
			fmt.Fprintf(stderr, "ipsfhir report: %s\n", fileError(err))
			return exitUsage
		}
		docs[i] = data
	}
	reports, err := outcomes.AggregateBundles(docs, o)
	if err != nil {
		var ie *outcomes.InputError
		if !errors.As(err, &ie) {
			fmt.Fprintf(stderr, "ipsfhir report: %v\n", err)
			return exitFindings
		}
		fmt.Fprintf(stderr, "ipsfhir report: %s: %v\n", files[ie.Index], ie.Err)
		// A file that is not a MeasureReport, or a Bundle of them, that
		// this version can read is unreadable input; files that disagree
		// with each other are findings.
		if errors.Is(err, outcomes.ErrNotReport) || errors.As(err, new(*outcomes.ParseError)) {
			return exitUsage
		}
		return exitFindings
	}
	return printReports(reports, asJSON, stdout, stderr, nil)
}

// withEntry adds a resource to a Bundle's entries.
func withEntry(bundle []byte, resource json.RawMessage) ([]byte, error) {
	var b map[string]any
	if err := json.Unmarshal(bundle, &b); err != nil {
		return nil, err
	}
	entries, _ := b["entry"].([]any)
	b["entry"] = append(entries, map[string]any{"resource": resource})
	out, err := json.MarshalIndent(b, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(out, '\n'), nil
}

// trendQuarters is how far back the trend goes: 8 quarters up to the one
// reported, from the program's first client on, and never fewer than 4.
func trendQuarters(clients []*ips.Client, last outcomes.Quarter) []outcomes.Quarter {
	first := last.Add(-7)
	var earliest ips.Date
	for _, c := range clients {
		if !c.EnrolledOn.IsZero() && (earliest.IsZero() || c.EnrolledOn.Before(earliest)) {
			earliest = c.EnrolledOn
		}
	}
	if !earliest.IsZero() && first.Before(outcomes.QuarterOf(earliest)) {
		first = outcomes.QuarterOf(earliest)
	}
	if last.Add(-3).Before(first) {
		first = last.Add(-3)
	}
	var qs []outcomes.Quarter
	for q := first; !last.Before(q); q = q.Add(1) {
		qs = append(qs, q)
	}
	return qs
}

// trendReports computes each quarter of the trend and the 12 months ending
// with it, suppressed together as one page (outcomes.ComputeTrend: the
// periods are linked, so each suppressed alone would not protect what the
// page shows); today marks a quarter not over or not started.
func trendReports(clients []*ips.Client, last outcomes.Quarter, opts outcomes.Options, today ips.Date) ([]chart.QuarterReports, error) {
	trend, err := outcomes.ComputeTrend(clients, trendQuarters(clients, last), opts)
	if err != nil {
		return nil, err
	}
	var out []chart.QuarterReports
	for _, t := range trend {
		out = append(out, chart.QuarterReports{Quarter: t.Quarter, Status: t.Quarter.CompletenessOn(today), Reports: t.Reports, Rolling: t.Rolling})
	}
	return out, nil
}

// writeTrend writes the trend chart as a PNG and/or an HTML page embedding
// it, with every measure's figures on the page.
func writeTrend(clients []*ips.Client, last outcomes.Quarter, opts outcomes.Options, program, source, htmlOut, pngOut string, stdout io.Writer, extra ...chart.Option) error {
	page, png, err := trendPage(clients, last, opts, program, source, htmlOut != "", extra...)
	if err != nil {
		return err
	}
	if pngOut != "" {
		if err := writeOutput(pngOut, png, stdout); err != nil {
			return errors.New(fileError(err))
		}
	}
	if htmlOut != "" {
		if err := writeOutput(htmlOut, page, stdout); err != nil {
			return errors.New(fileError(err))
		}
	}
	return nil
}

// trendPage renders the trend chart as a PNG and, with withPage, the HTML
// page embedding it (what report --html writes and the console's outcomes
// page serves).
func trendPage(clients []*ips.Client, last outcomes.Quarter, opts outcomes.Options, program, source string, withPage bool, extra ...chart.Option) (page, png []byte, err error) {
	today := ips.DateOf(opts.Date)
	quarters, err := trendReports(clients, last, opts, today)
	if err != nil {
		return nil, nil, err
	}
	pts := chart.Points(quarters)
	title := fmt.Sprintf("Competitive employment, %s, %s to %s", program, pts[0].Quarter, pts[len(pts)-1].Quarter)
	// The chart quotes the threshold in its "withheld" notes.
	common := append([]chart.Option{chart.Threshold(opts.Threshold), chart.AsOf(opts.Date, source)}, extra...)
	var pngBuf bytes.Buffer
	if err := chart.WritePNG(&pngBuf, title, pts, common...); err != nil {
		return nil, nil, fmt.Errorf("trend chart: %w", err)
	}
	if !withPage {
		return nil, pngBuf.Bytes(), nil
	}
	var pageBuf bytes.Buffer
	if err := chart.WriteHTML(&pageBuf, title, pts, pngBuf.Bytes(), append(common, chart.Reports(quarters))...); err != nil {
		return nil, nil, fmt.Errorf("trend page: %w", err)
	}
	return pageBuf.Bytes(), pngBuf.Bytes(), nil
}

// flagSet reports whether the command line gave flag name.
func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}
