package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"

	"golang.org/x/term"

	"github.com/ipsfhir/ipsfhir/adapter/config"
	"github.com/ipsfhir/ipsfhir/adapter/syncer"
)

func runSync(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) int {
	fs := newFlags("sync", "--config FILE [--once] [--json]",
		`Syncs the IPS store with every enabled EHR connection: pulls clinicians'
changes and referrals, then pushes what changed on the IPS side. Each EHR is
used only the way its CapabilityStatement allows (see 'ipsfhir check').

With --once it runs one pull-and-push pass and prints a summary; otherwise it
repeats every sync.pollInterval until interrupted. Exit 1 when anything went
to dead letters in the pass (replay them once the cause is fixed).`, stderr)
	cfgPath := fs.String("config", "", "configuration file (required)")
	once := fs.Bool("once", false, "run one pass and exit")
	asJSON := fs.Bool("json", false, "print the summary as JSON")
	if code, done := parseFlags(fs, args, stdout); done {
		return code
	}
	if *cfgPath == "" || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "ipsfhir sync: --config FILE is required, and no other arguments are taken")
		return exitUsage
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		fmt.Fprintf(stderr, "ipsfhir sync: %v\n", err)
		return exitUsage
	}
	sys, err := wire(ctx, cfg, stderr, true)
	if err != nil {
		fmt.Fprintf(stderr, "ipsfhir sync: %v\n", err)
		return exitFindings
	}
	defer sys.close(context.WithoutCancel(ctx))
	if len(sys.engine.Connections) == 0 {
		fmt.Fprintln(stderr, "ipsfhir sync: no enabled connections in the config; nothing to do")
		return exitOK
	}
	if isTerminal(stderr) && !*asJSON {
		sys.engine.Progress = func(s syncer.PushSummary) {
			fmt.Fprintf(stderr, "\rpushing: %d clients, %d resources written, %d unchanged, %d failed ", s.Items, s.Written, s.Unchanged, s.Failed)
		}
	}
	for {
		pull, push, err := pass(ctx, sys.engine, cfg.Sync.Workers)
		if sys.engine.Progress != nil {
			fmt.Fprintln(stderr)
		}
		if err != nil {
			fmt.Fprintf(stderr, "ipsfhir sync: %v\n", err)
			return exitFindings
		}
		report(stdout, *asJSON, pull, push)
		if *once {
			if push.DeadLettered > 0 {
				return exitFindings
			}
			return exitOK
		}
		select {
		case <-ctx.Done():
			return exitOK
		case <-time.After(cfg.Sync.PollInterval):
		}
	}
}

// pass pulls first, so a clinician's change is merged before the IPS side
// pushes, then pushes.
func pass(ctx context.Context, e *syncer.Engine, workers int) (syncer.PullSummary, syncer.PushSummary, error) {
	pull, err := e.PullOnce(ctx)
	if err != nil {
		return pull, syncer.PushSummary{}, err
	}
	push, err := e.PushParallel(ctx, workers)
	return pull, push, err
}

func report(w io.Writer, asJSON bool, pull syncer.PullSummary, push syncer.PushSummary) {
	if asJSON {
		_ = json.NewEncoder(w).Encode(map[string]any{"pull": pull, "push": push})
		return
	}
	fmt.Fprintf(w, "pull: %d changed resources seen, %d applied, %d conflicts, %d echoes of our own writes, %d clients enrolled from referrals\n",
		pull.Seen, pull.Applied, pull.Conflicts, pull.Echoes, pull.Enrolled)
	fmt.Fprintf(w, "push: %d clients, %d resources written, %d unchanged, %d clients without EHR consent, %d failed, %d to dead letters\n",
		push.Items, push.Written, push.Unchanged, push.Skipped, push.Failed, push.DeadLettered)
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}
