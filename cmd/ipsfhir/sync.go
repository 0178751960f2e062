package main

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/ipsfhir/ipsfhir/adapter/api"
	"github.com/ipsfhir/ipsfhir/adapter/config"
	"github.com/ipsfhir/ipsfhir/adapter/syncer"
)

// onceAttempts is how often sync --once tries to connect an EHR before it
// gives up on it for this pass, and onceConnectRetry spaces the tries. The
// EHR client already retries each request a few times, so this is short.
const onceAttempts = 3

var onceConnectRetry = syncer.RetrySchedule{Initial: time.Second, Max: 4 * time.Second, Jitter: 0.2}

func runSync(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) int {
	fs := newFlags("sync", "--config FILE [--once] [--json]",
		`Syncs the IPS store with every enabled EHR connection: pulls clinicians'
changes and referrals, and pushes what changed on the IPS side. Each EHR is
used only the way its CapabilityStatement allows (see 'ipsfhir check').
Connections are synced side by side: one that is down or failing does not
stop the others.

With --once it makes one pass: it connects each connection (reads its
CapabilityStatement and builds its sync plan, up to 3 tries with backoff,
then gives up on that connection for this pass), pulls and then pushes each
connected one, and prints a summary: the totals, the failed outbox items
grouped by reason ("60 failed: push: patient not found in the EHR by
identifier"; they are retried later), and each connection that failed to
connect, pull or push, by name and reason (ehr-unreachable, ehr-auth, plan,
store …), and each connection still in its initial load (the whole
caseload, queued when the connection was first enabled) with how much of
it is done and about how long the rest will take at the rate so far
("clinic: initial load 1200/10000, about 2h10m left"; a load that ended
in the pass says "done" once). --json prints the same as JSON, with each
connection's own summary and failures under "connections" and the initial
loads, finished or not, under "loads". Exit 1 when a connection failed
or anything went to dead letters in the pass (replay them once the cause is
fixed), 0 otherwise. While the pass pushes, a progress line on stderr
shows the clients pushed of the outbox's depth at the start, the rate and
the time left, when stderr is a terminal (never otherwise).

Without --once it runs the sync workers of 'ipsfhir serve' (without the
HTTP service) until interrupted: each connection connects on its own,
retrying while its EHR is down, then pushes as soon as a change is saved
(and every sync.pushInterval in any case) and pulls every
sync.pollInterval. Failures are logged with their reason.`, stderr)
	cfgPath := fs.String("config", "", "configuration file (required)")
	once := fs.Bool("once", false, "run one pass and exit")
	asJSON := fs.Bool("json", false, "print the summary as JSON (with --once)")
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
	// One pass draws its push progress on stderr when that is a terminal;
	// the log shares the terminal with it.
	logOut, prog := stderr, (*progressOut)(nil)
	if *once {
		if prog = progressTo(stderr); prog != nil {
			logOut = prog
		}
	}
	sys, err := wire(ctx, cfg, logOut, true)
	if err != nil {
		fmt.Fprintf(stderr, "ipsfhir sync: %v\n", err)
		return exitForSetup(err)
	}
	defer sys.close(context.WithoutCancel(ctx))
	if len(sys.connectors) == 0 {
		fmt.Fprintln(stderr, "ipsfhir sync: no enabled connections in the config; nothing to do")
		return exitOK
	}
	if !*once {
		var wg sync.WaitGroup
		wg.Go(func() { sys.followSettings(ctx) })
		sys.runner.Run(ctx)
		wg.Wait()
		return exitOK
	}
	var bar *progress
	if prog != nil {
		bar = prog.startEstimate("push", "clients", pushTotal(ctx, sys))
		sys.engine.Progress = func(s syncer.PushSummary) { bar.set(s.Items) }
	}
	sched := sys.schedule()
	sched.ConnectRetry = onceConnectRetry
	passStart := time.Now()
	results := syncer.NewRunner(sys.engine, sched, sys.connectors...).Once(ctx, onceAttempts)
	bar.finish()
	if ctx.Err() != nil {
		fmt.Fprintln(stderr, "ipsfhir sync: interrupted")
		return exitFindings
	}
	pass := summarize(results)
	names := make([]string, len(sys.connectors))
	for i, c := range sys.connectors {
		names[i] = c.Name
	}
	loads, err := initialLoads(ctx, sys.store, names)
	if err != nil {
		// The pass itself reports a store that does not answer; the
		// loads are extra.
		sys.logger.WarnContext(ctx, "initial load progress not read", "error", err)
	}
	for _, name := range names {
		if p, ok := loads[name]; ok {
			pass.Loads = append(pass.Loads, loadSummary{Connection: name, LoadJSON: api.NewLoadJSON(p), finishedInPass: !p.Finished.Before(passStart)})
		}
	}
	report(stdout, *asJSON, pass)
	if pass.failed() {
		return exitFindings
	}
	return exitOK
}

// passSummary is what sync --once did: the totals, and each connection's
// own (with its failures).
type passSummary struct {
	Pull        syncer.PullSummary `json:"pull"`
	Push        syncer.PushSummary `json:"push"`
	Connections []syncer.Result    `json:"connections"`
	// Loads are the initial loads of the connections that have one
	// recorded, finished or not, after the pass.
	Loads []loadSummary `json:"loads,omitempty"`
}

// loadSummary is one connection's initial load, as /admin/connections
// shows it, with the connection's name.
type loadSummary struct {
	Connection string `json:"connection"`
	api.LoadJSON
	// finishedInPass: the load ended during this pass (the text report
	// says so once, then no more).
	finishedInPass bool
}

func summarize(results []syncer.Result) passSummary {
	s := passSummary{Connections: results}
	s.Pull, s.Push = syncer.Totals(results)
	return s
}

// failed reports whether the pass should exit 1: a connection failed a
// step, or an item went to dead letters.
func (s passSummary) failed() bool {
	if s.Push.DeadLettered > 0 {
		return true
	}
	for _, r := range s.Connections {
		if len(r.Failures) > 0 {
			return true
		}
	}
	return false
}

func report(w io.Writer, asJSON bool, s passSummary) {
	if asJSON {
		_ = json.NewEncoder(w).Encode(s)
		return
	}
	pull, push := s.Pull, s.Push
	fmt.Fprintf(w, "pull: %d changed resources seen, %d applied, %d conflicts, %d echoes of our own writes, %d new referrals and %d re-referrals waiting for acceptance\n",
		pull.Seen, pull.Applied, pull.Conflicts, pull.Echoes, pull.Referred, pull.Rereferred)
	fmt.Fprintf(w, "push: %d clients, %d resources written, %d unchanged, %d clients without EHR consent, %d failed, %d to dead letters, %d Provenances\n",
		push.Items, push.Written, push.Unchanged, push.Skipped, push.Failed, push.DeadLettered, push.Provenances)
	// The reasons are the patient-free texts stored on the outbox items,
	// most frequent first.
	reasons := slices.SortedFunc(maps.Keys(push.Failures), func(a, b string) int {
		return cmp.Or(cmp.Compare(push.Failures[b], push.Failures[a]), cmp.Compare(a, b))
	})
	for _, r := range reasons {
		fmt.Fprintf(w, "%d failed: %s\n", push.Failures[r], r)
	}
	for _, l := range s.Loads {
		switch {
		case l.Finished.IsZero() && l.RemainingSeconds == nil:
			fmt.Fprintf(w, "%s: initial load %d/%d, no estimate yet\n", l.Connection, l.Done, l.Total)
		case l.Finished.IsZero():
			fmt.Fprintf(w, "%s: initial load %d/%d, about %s left\n", l.Connection, l.Done, l.Total, roughly(time.Duration(*l.RemainingSeconds*float64(time.Second))))
		case l.finishedInPass:
			fmt.Fprintf(w, "%s: initial load %d/%d, done\n", l.Connection, l.Done, l.Total)
		}
	}
	for _, r := range s.Connections {
		for _, f := range r.Failures {
			switch f.Step {
			case syncer.StepConnect:
				fmt.Fprintf(w, "%s: connect failed (%s) after %d attempts; not synced\n", r.Connection, f.Reason, f.Attempts)
			default:
				fmt.Fprintf(w, "%s: %s failed (%s)\n", r.Connection, f.Step, f.Reason)
			}
		}
	}
}

// roughly is a time left as a person reads it: seconds under a minute,
// minutes under an hour, then hours and minutes ("45s", "12m", "3h20m").
func roughly(d time.Duration) string {
	if s := d.Round(time.Second); s < time.Minute {
		return fmt.Sprintf("%ds", int(s/time.Second))
	}
	d = d.Round(time.Minute)
	if d < time.Hour {
		return fmt.Sprintf("%dm", int(d/time.Minute))
	}
	return fmt.Sprintf("%dh%02dm", int(d/time.Hour), int(d%time.Hour/time.Minute))
}

// pushTotal is what one pass's progress counts up to: the outbox items of
// the enabled connections when the pass starts. It is an estimate: items
// backing off until later are counted but not pushed in this pass, and
// clients a pull saves are queued and pushed in it. 0 when the store does
// not answer (the pass reports that itself).
func pushTotal(ctx context.Context, sys *system) int {
	depth, err := sys.store.OutboxDepth(ctx)
	if err != nil {
		return 0
	}
	n := 0
	for _, c := range sys.connectors {
		n += depth[c.Name]
	}
	return n
}
