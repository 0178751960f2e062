// Command ipsfhir connects an IPS (Individual Placement and Support)
// supported-employment program to clinic EHRs through FHIR R4.
//
// main only sets up a signal-aware context and hands over to run; each
// subcommand parses its own flags and returns an exit code: 0 success,
// 1 findings or failures, 2 usage, configuration or unreadable input.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/ipsfhir/ipsfhir/adapter/config"
	"github.com/ipsfhir/ipsfhir/adapter/telemetry"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// Exit codes, part of the CLI contract users script against.
const (
	exitOK       = 0
	exitFindings = 1
	exitUsage    = 2
)

// exitForSetup is the exit code of a failure to set a command up: a
// secret the configuration names that cannot be read, or a telemetry
// setting or OTEL_* variable ipsfhir cannot follow, is unreadable input
// (exitUsage); anything else (a store that does not answer, say) is a
// failure of the run (exitFindings).
func exitForSetup(err error) int {
	if errors.Is(err, config.ErrSecret) || errors.Is(err, telemetry.ErrSetting) {
		return exitUsage
	}
	return exitFindings
}

// command is one subcommand.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int
}

func commands() []command {
	return []command{
		{"demo", "map a synthetic caseload and show what clinicians and EHRs would receive", runDemo},
		{"import", "store a caseload JSON file's clients in the IPS store and queue them for the EHRs", runImport},
		{"map", "map a caseload JSON file to a FHIR R4 Bundle, or a Bundle back (--reverse)", runMap},
		{"validate", "check FHIR JSON files against base R4 and the ipsfhir profiles", runValidate},
		{"serve", "run the service: records API, admin, metrics and the sync workers", runServe},
		{"check", "check an EHR's readiness for sync (or a saved CapabilityStatement) and print its sync plan", runCheck},
		{"sync", "sync the IPS store with the configured EHRs (pull clinicians' changes, push IPS work)", runSync},
		{"connections", "list the EHR connections: enabled or not, by the configuration file or the console", runConnections},
		{"export", "write the program's records as Bulk Data NDJSON files for an HIE (de-identified) or the program", runExport},
		{"report", "compute a quarter's IPS outcome measures (small cells withheld), or add up programs' reports", runReport},
	}
}

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stdout)
		if len(args) == 0 {
			return exitUsage
		}
		return exitOK
	}
	for _, c := range commands() {
		if c.name == args[0] {
			return c.run(ctx, args[1:], stdin, stdout, stderr)
		}
	}
	fmt.Fprintf(stderr, "ipsfhir: unknown command %q\n\n", args[0])
	usage(stderr)
	return exitUsage
}

func usage(w io.Writer) {
	fmt.Fprint(w, `ipsfhir puts an IPS supported-employment program's work (employment goals,
supports, job outcomes) into clinic EHRs as FHIR R4, so employment shows in the
mental health treatment plan. IPS here is Individual Placement and Support, not
the International Patient Summary.

Usage: ipsfhir <command> [flags]

Commands:
`)
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-9s %s\n", c.name, c.summary)
	}
	fmt.Fprint(w, `
Run 'ipsfhir <command> --help' for a command's flags.
Exit codes: 0 success, 1 findings or failures, 2 usage error or unreadable input.
`)
}
