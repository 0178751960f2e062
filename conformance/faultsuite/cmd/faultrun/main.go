// Command faultrun runs one fault-suite scenario, or a soak, for as long as
// you like, and prints what it saw: a Markdown table row for
// docs/RELIABILITY.md, or the soak's samples and trends. It exits 1 when an
// assertion fails, 2 on a usage error or a run that could not be set up.
//
//	go run ./conformance/faultsuite/cmd/faultrun -scenario sqlite -clients 1000 -chaos 10m -seed 1 -rate 0.2
//	go run ./conformance/faultsuite/cmd/faultrun -soak -clients 500 -minutes 60 -rate 0.1 -edits-per-second 2
//
// The PostgreSQL scenarios (pg2, pg4) need IPSFHIR_TEST_POSTGRES_DSN; every
// scenario needs Node.js for the peer FHIR server.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/ipsfhir/ipsfhir/conformance/faultsuite"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(realMain(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

func realMain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("faultrun", flag.ContinueOnError)
	fs.SetOutput(stderr)
	scenario := fs.String("scenario", "sqlite", "sqlite (1 replica), pg2, pg4 (replicas on PostgreSQL), epic (the peer acts out Epic) or no-conditional-create (the peer cannot create goals conditionally)")
	clients := fs.Int("clients", 1000, "clients in the synthetic caseload")
	chaos := fs.Duration("chaos", 10*time.Minute, "how long faults, kills and edits run")
	seed := fs.Uint64("seed", 1, "seed of the caseload, the faults and the harness's choices")
	rate := fs.Float64("rate", 0, "fault rate during chaos or the soak, 0 to 1 (default 0.2 for a scenario, 0.1 for a soak)")
	killEvery := fs.Duration("kill-every", 5*time.Second, "mean time between SIGKILLs of a random replica (negative: none)")
	ipsEdits := fs.Float64("ips-edits-per-second", 3, "IPS-side edits per second during chaos")
	clinEdits := fs.Float64("clinician-edits-per-second", 1.5, "clinician edits per second during chaos")
	lease := fs.Duration("lease", 60*time.Second, "the replicas' sync.leaseFor")
	ehrTimeout := fs.Duration("ehr-timeout", 10*time.Second, "the connection's per-attempt request timeout; hung requests are held 5 s longer, and a plain create that timed out may land until 4 times it has passed")
	drain := fs.Duration("drain", 0, "bound on the wait for the outbox to drain after faults stop (default 4m; 5m for a soak)")
	soak := fs.Bool("soak", false, "run a soak instead of a chaos scenario")
	minutes := fs.Float64("minutes", 10, "soak: minutes of steady load before faults stop")
	eps := fs.Float64("edits-per-second", 2, "soak: edits per second (two thirds API, one third clinician)")
	sampleEvery := fs.Duration("sample-every", 30*time.Second, "soak: how often each serve process is sampled")
	dir := fs.String("dir", "", "keep the run's files (store, configurations, replica logs) in this directory")
	requestLog := fs.Bool("request-log", false, "with -dir: keep the fault proxy's log of every request (paths, If-Match, resources as tokens) in proxy-requests.jsonl")
	debugLog := fs.Bool("debug-log", false, "run the replicas at log level debug (every EHR attempt logged)")
	quiet := fs.Bool("quiet", false, "no progress lines on stderr")
	header := fs.Bool("header", false, "print the Markdown table's header before the row")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintln(stderr, "faultrun: unexpected arguments")
		return 2
	}
	if *rate < 0 || *rate > 1 {
		fmt.Fprintln(stderr, "faultrun: -rate must be between 0 and 1")
		return 2
	}
	sc := faultsuite.Scenario(*scenario)
	known := false
	for _, s := range faultsuite.Scenarios() {
		known = known || s == sc
	}
	if !known {
		fmt.Fprintf(stderr, "faultrun: unknown -scenario %q: sqlite, pg2, pg4, epic or no-conditional-create\n", *scenario)
		return 2
	}
	if sc.NeedsPostgres() && faultsuite.PostgresServerDSN() == "" {
		fmt.Fprintf(stderr, "faultrun: scenario %s needs %s (a PostgreSQL server the suite may create schemas in)\n", sc, faultsuite.PostgresEnv)
		return 2
	}
	o := faultsuite.Options{
		Scenario: sc, Clients: *clients, Chaos: *chaos, Seed: *seed, Rate: *rate, KillEvery: *killEvery,
		IPSEditsPerSecond: *ipsEdits, ClinicianEditsPerSecond: *clinEdits, DrainTimeout: *drain, LeaseFor: *lease, EHRTimeout: *ehrTimeout, Dir: *dir, Log: stderr,
		RequestLog: *requestLog, DebugLog: *debugLog,
	}
	if *quiet {
		o.Log = io.Discard
	}
	if *soak {
		if o.Rate == 0 {
			o.Rate = 0.1
		}
		rep, err := faultsuite.Soak(ctx, o, faultsuite.SoakOptions{
			Duration: time.Duration(*minutes * float64(time.Minute)), EditsPerSecond: *eps, SampleEvery: *sampleEvery,
		})
		if rep != nil && rep.Report != nil {
			fmt.Fprint(stdout, rep.String())
			if *header {
				fmt.Fprintln(stdout, faultsuite.MarkdownHeader())
			}
			fmt.Fprintln(stdout, rep.MarkdownRow())
		}
		return exitCode(stderr, rep.Report, err)
	}
	if o.Rate == 0 {
		o.Rate = 0.2
	}
	rep, err := faultsuite.Run(ctx, o)
	if rep != nil {
		fmt.Fprint(stdout, rep.String())
		if *header {
			fmt.Fprintln(stdout, faultsuite.MarkdownHeader())
		}
		fmt.Fprintln(stdout, rep.MarkdownRow())
	}
	return exitCode(stderr, rep, err)
}

func exitCode(stderr io.Writer, rep *faultsuite.Report, err error) int {
	switch {
	case err != nil:
		fmt.Fprintf(stderr, "faultrun: the run could not be carried through: %v\n", err)
		return 2
	case rep == nil || !rep.OK():
		return 1
	}
	return 0
}
