package syncer

import (
	"context"
	"errors"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/ipsfhir/ipsfhir/adapter/ehr"
	"github.com/ipsfhir/ipsfhir/adapter/plan"
	"github.com/ipsfhir/ipsfhir/adapter/store"
	"github.com/ipsfhir/ipsfhir/adapter/telemetry"
)

// A Runner keeps each connection in sync on its own, so that one EHR that
// is down, slow or refusing cannot hold back the others, and a failing pull
// cannot hold back pushes to the same EHR (nor the reverse).
//
// For each connection it first connects (reads the EHR's
// CapabilityStatement and builds the sync plan, which is the Connector's
// job), retrying with capped exponential backoff until that succeeds. Then
// two loops run side by side: push drains the connection's outbox as soon
// as the store says an item was enqueued for it (store.Store.WatchOutbox),
// and every Schedule.PushInterval in any case (a wake the store could not
// give, an item whose retry came due); pull reads the EHR's changes every
// Schedule.PollInterval. A loop whose pass fails tries again on its own
// backoff, which a wake does not cut short, and leaves the other alone.
//
// What each connection is doing is kept for operators (Snapshot): its
// state, what is failing and why (as a short token), and when it last
// pulled and pushed. None of it is patient data or an address.
//
// Which connections run can change while it runs (SetEnabled): an
// administrator enables or disables one from the console.
type Runner struct {
	engine     Engine
	connectors []Connector
	sched      Schedule

	mu    sync.Mutex
	conns map[string]*connState
	// enabled names the connectors that run; changed is signalled when it
	// changes, for Run.
	enabled map[string]bool
	queue   []string // the enabled connectors' names, in connector order
	changed chan struct{}
}

// Connector is one configured connection: its name and how to connect it.
// Connect reads the EHR's CapabilityStatement and builds the Connection with
// its plan; it is called again after a failure, so it must be safe to
// repeat. Its error should be an *ehr.Error for an EHR failure, or carry a
// reason given with WithReason (a plan the EHR cannot take, say), so that
// operators see why.
type Connector struct {
	Name    string
	Connect func(ctx context.Context) (*Connection, error)
}

// Schedule says how often a Runner pushes and pulls each connection and how
// it spaces its attempts after a failure. Zero fields take the defaults.
type Schedule struct {
	// PushInterval is the longest pause between push passes of a
	// connection; default DefaultPushInterval. An enqueue ends the pause
	// early unless PollOnly.
	PushInterval time.Duration
	// PollOnly turns waking off: push passes run every PushInterval only,
	// however soon an item is enqueued (the latency benchmark's baseline).
	PollOnly bool
	// PollInterval is the pause between pull passes; default
	// DefaultPollInterval.
	PollInterval time.Duration
	// Workers push a connection's outbox in parallel (see PushParallel);
	// default 1. A Connection whose Workers is more gets that many.
	Workers int
	// ConnectRetry spaces the attempts to connect; default
	// DefaultConnectRetry.
	ConnectRetry RetrySchedule
	// PullRetry spaces the pulls after a failed one; default 5 s doubling
	// up to PollInterval.
	PullRetry RetrySchedule
	// PushRetry spaces the pushes after a failed one (the store failed:
	// EHR failures fail outbox items, not the pass); default 5 s doubling
	// up to a minute, or PushInterval if that is longer.
	PushRetry RetrySchedule
}

// Defaults of a Schedule.
const (
	DefaultPushInterval = 5 * time.Second
	DefaultPollInterval = 5 * time.Minute
	// firstRetry is the first delay after a failed pull or push.
	firstRetry = 5 * time.Second
)

// DefaultConnectRetry spaces the attempts to connect a connection:
// 5 s, 10 s, 20 s … up to 5 min, ±20%.
var DefaultConnectRetry = RetrySchedule{Initial: 5 * time.Second, Max: 5 * time.Minute, Jitter: 0.2}

func (s Schedule) withDefaults() Schedule {
	if s.PushInterval <= 0 {
		s.PushInterval = DefaultPushInterval
	}
	if s.PollInterval <= 0 {
		s.PollInterval = DefaultPollInterval
	}
	if s.Workers < 1 {
		s.Workers = 1
	}
	if s.ConnectRetry == (RetrySchedule{}) {
		s.ConnectRetry = DefaultConnectRetry
	}
	if s.PullRetry == (RetrySchedule{}) {
		s.PullRetry = RetrySchedule{Initial: min(firstRetry, s.PollInterval), Max: s.PollInterval, Jitter: 0.2}
	}
	if s.PushRetry == (RetrySchedule{}) {
		s.PushRetry = RetrySchedule{Initial: min(firstRetry, s.PushInterval), Max: max(time.Minute, s.PushInterval), Jitter: 0.2}
	}
	return s
}

// State is where a connection stands, for operators.
type State string

// States of a connection.
const (
	// StateStarting: not connected yet, and no attempt has failed.
	StateStarting State = "starting"
	// StateReady: connected, and its last pull and push passes succeeded.
	StateReady State = "ready"
	// StateFailing: the last attempt to connect failed, or the last pull or
	// push pass did; Failures say which and why.
	StateFailing State = "failing"
)

// Step is what a Runner does for a connection: connect it, pull or push.
type Step string

// Steps.
const (
	StepConnect Step = "connect"
	StepPull    Step = "pull"
	StepPush    Step = "push"
)

// ConnectionStatus is one connection as operators see it. It holds no
// patient data and no address, so it may be shown without authentication.
type ConnectionStatus struct {
	Name  string `json:"name"`
	State State  `json:"state"`
	// Since is when the connection entered State.
	Since time.Time `json:"since"`
	// Failures are the steps failing now, at most one per step; empty
	// unless State is failing.
	Failures []Failure `json:"failures,omitempty"`
	// LastPull and LastPush are when the last successful pass of each
	// ended; zero (left out of JSON) before the first.
	LastPull time.Time `json:"lastPull,omitzero"`
	LastPush time.Time `json:"lastPush,omitzero"`
}

// Failure is a step that is failing, or failed for good in Once.
type Failure struct {
	Step Step `json:"step"`
	// Reason is a short token saying why (see Reason): ehr-unreachable,
	// ehr-auth, plan, store ….
	Reason string `json:"reason"`
	// Since is when the step first failed in this run of failures.
	Since time.Time `json:"since"`
	// Attempts counts the failures in a row.
	Attempts int `json:"attempts"`
}

// Result is what Once did for one connection.
type Result struct {
	Connection string      `json:"connection"`
	Pull       PullSummary `json:"pull"`
	Push       PushSummary `json:"push"`
	// Failures are the steps that failed: a connection that could not be
	// connected was neither pulled nor pushed.
	Failures []Failure `json:"failures,omitempty"`
}

// Totals adds up what Once did across connections.
func Totals(results []Result) (PullSummary, PushSummary) {
	var pull PullSummary
	var push PushSummary
	for _, r := range results {
		pull.add(r.Pull)
		push.add(r.Push)
	}
	return pull, push
}

// connState is the Runner's record of one connection.
type connState struct {
	conn     *Connection
	state    State
	since    time.Time
	failures map[Step]*Failure
	lastPull time.Time
	lastPush time.Time
}

// NewRunner makes a Runner for the connectors, which must have unique
// names, over e's store; all of them are enabled until SetEnabled says
// otherwise. The Runner works on its own copy of e, which queues a client
// that a pull saves (a clinician's change, a referral) for every enabled
// connection, connected yet or not.
func NewRunner(e *Engine, sched Schedule, connectors ...Connector) *Runner {
	r := &Runner{engine: *e, connectors: slices.Clone(connectors), sched: sched.withDefaults(), conns: map[string]*connState{},
		enabled: map[string]bool{}, changed: make(chan struct{}, 1)}
	r.engine.Connections = nil
	r.engine.QueueFor = nil
	r.engine.queueFor = r.queueFor
	for _, c := range connectors {
		r.enabled[c.Name] = true
		r.queue = append(r.queue, c.Name)
		r.conns[c.Name] = r.fresh()
	}
	return r
}

// fresh is the record of a connection that has not tried to connect.
func (r *Runner) fresh() *connState {
	return &connState{state: StateStarting, since: r.engine.now(), failures: map[Step]*Failure{}}
}

// SetEnabled says which connectors run, by name (names of no connector
// are ignored); the others do not. Run starts a connection newly enabled
// at once, and stops one disabled (its passes are cancelled; outbox items
// it held are leased again after their lease). A connection enabled again
// connects afresh. From the call on, a client a pull saves is queued for
// the enabled connections only.
func (r *Runner) SetEnabled(names []string) {
	r.mu.Lock()
	r.enabled = map[string]bool{}
	r.queue = r.queue[:0:0]
	for _, c := range r.connectors {
		if slices.Contains(names, c.Name) {
			r.enabled[c.Name] = true
			r.queue = append(r.queue, c.Name)
		}
	}
	r.mu.Unlock()
	select {
	case r.changed <- struct{}{}:
	default:
	}
}

// queueFor is the engine's QueueFor: the enabled connections now.
func (r *Runner) queueFor() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.queue
}

func (r *Runner) isEnabled(name string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.enabled[name]
}

// Run keeps every enabled connection in sync until ctx ends, each on its
// own (see Runner), starting and stopping connections as SetEnabled says,
// and returns once all its work has stopped. Engine.Progress is not used:
// it draws a one-pass progress line.
func (r *Runner) Run(ctx context.Context) {
	e := r.engine
	e.Progress = nil
	var wg sync.WaitGroup
	defer wg.Wait()
	stop := map[string]func(){} // of each running connection: cancel it and wait
	for {
		for _, c := range r.connectors {
			on, running := r.isEnabled(c.Name), stop[c.Name] != nil
			switch {
			case on && !running:
				cctx, cancel := context.WithCancel(ctx)
				done := make(chan struct{})
				stop[c.Name] = func() { cancel(); <-done }
				wg.Go(func() {
					defer close(done)
					r.runOne(cctx, &e, c)
				})
			case !on && running:
				stop[c.Name]()
				delete(stop, c.Name)
				r.mu.Lock()
				r.conns[c.Name] = r.fresh()
				r.mu.Unlock()
				e.log().InfoContext(ctx, "connection disabled", "connection", c.Name)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-r.changed:
		}
	}
}

// runOne connects one connection and runs its pull and push loops until ctx
// ends.
func (r *Runner) runOne(ctx context.Context, e *Engine, c Connector) {
	conn, err := r.connect(ctx, c, 0, true)
	if err != nil {
		return // ctx ended
	}
	var loops sync.WaitGroup
	loops.Go(func() { r.loop(ctx, e, conn, StepPull) })
	loops.Go(func() { r.loop(ctx, e, conn, StepPush) })
	loops.Wait()
}

// Once connects every connection, trying at most attempts times each
// (spaced by Schedule.ConnectRetry), then pulls and pushes each connected
// one once; connections run at the same time. Pull goes first, so that a
// clinician's change is merged before the IPS side pushes; a failed pull
// does not stop the push. It returns one Result per connector, in order.
// Engine.Progress, if set, sees the push totals of all connections
// together, one call at a time.
func (r *Runner) Once(ctx context.Context, attempts int) []Result {
	attempts = max(attempts, 1)
	results := make([]Result, len(r.connectors))
	var (
		mu     sync.Mutex
		latest = make([]PushSummary, len(r.connectors))
		wg     sync.WaitGroup
	)
	for i, c := range r.connectors {
		e := r.engine
		if r.engine.Progress != nil {
			e.Progress = func(s PushSummary) {
				mu.Lock()
				defer mu.Unlock()
				latest[i] = s
				var all PushSummary
				for _, l := range latest {
					all.add(l)
				}
				r.engine.Progress(all)
			}
		}
		wg.Go(func() {
			res := Result{Connection: c.Name}
			defer func() { results[i] = res }()
			conn, err := r.connect(ctx, c, attempts, false)
			if err != nil {
				res.Failures = append(res.Failures, r.failure(c.Name, StepConnect, err))
				return
			}
			if res.Pull, err = e.PullConnection(ctx, conn); err != nil {
				r.failed(ctx, c.Name, StepPull, err, 1, 0)
				res.Failures = append(res.Failures, r.failure(c.Name, StepPull, err))
			} else {
				r.succeeded(c.Name, StepPull)
			}
			if res.Push, err = e.PushConnection(ctx, conn, r.workers(conn)); err != nil {
				r.failed(ctx, c.Name, StepPush, err, 1, 0)
				res.Failures = append(res.Failures, r.failure(c.Name, StepPush, err))
			} else {
				r.succeeded(c.Name, StepPush)
			}
		})
	}
	wg.Wait()
	return results
}

// connect calls c.Connect until it succeeds, ctx ends, or (with attempts
// > 0) it failed attempts times; the error is then the last one.
func (r *Runner) connect(ctx context.Context, c Connector, attempts int, logReady bool) (*Connection, error) {
	for n := 1; ; n++ {
		conn, err := c.Connect(ctx)
		if err == nil && conn == nil {
			err = errors.New("syncer: Connect returned no connection")
		}
		if err == nil {
			conn.Name = c.Name
			r.connected(ctx, conn, logReady)
			return conn, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if attempts > 0 && n >= attempts {
			r.failed(ctx, c.Name, StepConnect, err, n, 0)
			return nil, err
		}
		wait := backoff(r.sched.ConnectRetry, n, err)
		r.failed(ctx, c.Name, StepConnect, err, n, wait)
		if !sleep(ctx, wait) {
			return nil, ctx.Err()
		}
	}
}

// loop runs one step (pull or push) of a connected connection until ctx
// ends: every interval while it succeeds, on its own backoff while it fails.
func (r *Runner) loop(ctx context.Context, e *Engine, conn *Connection, step Step) {
	interval, retry := r.sched.PushInterval, r.sched.PushRetry
	if step == StepPull {
		interval, retry = r.sched.PollInterval, r.sched.PullRetry
	}
	// The watch is taken before the first pass, so that nothing enqueued
	// during a pass goes unseen: it wakes the wait after it.
	var wake <-chan struct{}
	if step == StepPush && !r.sched.PollOnly {
		wake = e.Store.WatchOutbox(ctx, conn.Name)
	}
	failures := 0
	for {
		var err error
		if step == StepPull {
			var s PullSummary
			s, err = e.PullConnection(ctx, conn)
			if err == nil {
				e.log().DebugContext(ctx, "pull pass", "connection", conn.Name, "direction", string(step), "count", s.Seen)
			}
		} else {
			var s PushSummary
			s, err = e.PushConnection(ctx, conn, r.workers(conn))
			if err == nil {
				e.log().DebugContext(ctx, "push pass", "connection", conn.Name, "direction", string(step), "count", s.Items)
			}
		}
		if ctx.Err() != nil {
			return
		}
		wait, woken := interval, wake
		if err != nil {
			failures++
			wait, woken = backoff(retry, failures, err), nil
			r.failed(ctx, conn.Name, step, err, failures, wait)
		} else {
			failures = 0
			r.succeeded(conn.Name, step)
		}
		if !sleepOrWake(ctx, wait, woken) {
			return
		}
	}
}

// workers is how many workers push conn's outbox: Schedule.Workers, or
// the connection's own Workers if that is more.
func (r *Runner) workers(conn *Connection) int {
	return max(r.sched.Workers, conn.Workers)
}

// backoff is the wait after the nth failure in a row: the schedule's delay,
// capped at its Max (jitter spreads delays below the cap, not above it),
// and never shorter than the EHR's Retry-After.
func backoff(s RetrySchedule, n int, err error) time.Duration {
	s = s.orDefault()
	return max(min(s.Delay(n, 0), s.Max), retryAfterOf(err))
}

// sleep waits d or until ctx ends, and reports whether ctx is still live.
func sleep(ctx context.Context, d time.Duration) bool {
	return sleepOrWake(ctx, d, nil)
}

// sleepOrWake is sleep that wake (nil: never) also ends.
func sleepOrWake(ctx context.Context, d time.Duration, wake <-chan struct{}) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	case <-wake:
		return ctx.Err() == nil
	}
}

// connected records a connection's plan and clears a connect failure.
func (r *Runner) connected(ctx context.Context, conn *Connection, logReady bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	cs := r.conns[conn.Name]
	cs.conn = conn
	delete(cs.failures, StepConnect)
	if r.settle(cs) == StateReady && logReady {
		r.engine.log().InfoContext(ctx, "connection ready", "connection", conn.Name, "state", string(StateReady))
	}
}

// succeeded records a successful pull or push pass.
func (r *Runner) succeeded(name string, step Step) {
	r.mu.Lock()
	defer r.mu.Unlock()
	cs := r.conns[name]
	now := r.engine.now()
	if step == StepPull {
		cs.lastPull = now
	} else {
		cs.lastPush = now
	}
	_, wasFailing := cs.failures[step]
	delete(cs.failures, step)
	if r.settle(cs) == StateReady && wasFailing {
		r.engine.log().Info("connection ready", "connection", name, "state", string(StateReady), "step", string(step))
	}
}

// failed records and logs a failed step; wait is the backoff before the
// next attempt (0: none follows). Every key logged is on the telemetry
// allow-list, and the error goes under "error", which the project's log
// handler prints as telemetry.ErrorSummary(err), never err.Error(): store
// and driver errors quote values.
func (r *Runner) failed(ctx context.Context, name string, step Step, err error, attempt int, wait time.Duration) {
	reason := reasonFor(step, err)
	r.mu.Lock()
	cs := r.conns[name]
	f := cs.failures[step]
	if f == nil {
		f = &Failure{Step: step, Since: r.engine.now()}
		cs.failures[step] = f
	}
	f.Reason, f.Attempts = reason, attempt
	r.settle(cs)
	r.mu.Unlock()

	attrs := []any{"connection", name, "state", string(StateFailing), "step", string(step), "error_kind", reason, "attempt", attempt, "error", err}
	if step != StepConnect {
		attrs = append(attrs, "direction", string(step))
	}
	if wait > 0 {
		attrs = append(attrs, "backoff", wait)
	}
	r.engine.log().WarnContext(ctx, string(step)+" failed", attrs...)
}

// failure returns the recorded failure of a step, or one made from err.
func (r *Runner) failure(name string, step Step, err error) Failure {
	r.mu.Lock()
	defer r.mu.Unlock()
	if f := r.conns[name].failures[step]; f != nil {
		return *f
	}
	return Failure{Step: step, Reason: reasonFor(step, err), Since: r.engine.now(), Attempts: 1}
}

// settle derives a connection's state from what is recorded and notes when
// it changed. r.mu is held.
func (r *Runner) settle(cs *connState) State {
	s := StateStarting
	switch {
	case len(cs.failures) > 0:
		s = StateFailing
	case cs.conn != nil:
		s = StateReady
	}
	if s != cs.state {
		cs.state, cs.since = s, r.engine.now()
	}
	return s
}

// Snapshot returns every enabled connection's status, in the connectors'
// order.
func (r *Runner) Snapshot() []ConnectionStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]ConnectionStatus, 0, len(r.connectors))
	for _, c := range r.connectors {
		if !r.enabled[c.Name] {
			continue
		}
		cs := r.conns[c.Name]
		st := ConnectionStatus{Name: c.Name, State: cs.state, Since: cs.since, LastPull: cs.lastPull, LastPush: cs.lastPush}
		for _, step := range []Step{StepConnect, StepPull, StepPush} {
			if f := cs.failures[step]; f != nil {
				st.Failures = append(st.Failures, *f)
			}
		}
		out = append(out, st)
	}
	return out
}

// Plans returns the sync plan of every connection connected so far, by
// name: a new map on each call, so the caller may keep it.
func (r *Runner) Plans() map[string]*plan.Plan {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]*plan.Plan{}
	for name, cs := range r.conns {
		if cs.conn != nil && r.enabled[name] {
			out[name] = cs.conn.Plan
		}
	}
	return out
}

// reasonError gives an error a reason token (see WithReason).
type reasonError struct {
	reason string
	err    error
}

func (e *reasonError) Error() string { return e.err.Error() }
func (e *reasonError) Unwrap() error { return e.err }

// WithReason marks err with a reason token for Reason, such as "plan" for
// a sync plan the EHR's CapabilityStatement cannot give. The token must
// pass telemetry.IsToken; the error's message is unchanged.
func WithReason(reason string, err error) error {
	if err == nil {
		return nil
	}
	return &reasonError{reason: reason, err: err}
}

// Reason is a short token saying why a step failed, safe for logs, metrics
// and unauthenticated status pages: the reason given with WithReason;
// ehr-unreachable (no answer), ehr-timeout, or ehr- and the kind of an
// *ehr.Error (ehr-transient, ehr-auth, ehr-not-allowed …); store; canceled
// or timeout for a context that ended; internal otherwise. Never "" for an
// error.
func Reason(err error) string {
	var re *reasonError
	var ee *ehr.Error
	var ne net.Error
	switch {
	case err == nil:
		return ""
	case errors.As(err, &re) && telemetry.IsToken(re.reason):
		return re.reason
	case errors.As(err, &ee):
		switch {
		case errors.As(ee.Err, &ne) && ne.Timeout():
			return "ehr-timeout"
		case ee.Kind == ehr.KindTransient && ee.Status == 0:
			return "ehr-unreachable"
		}
		// The EHR error's own token: ehr-http-5xx, ehr-throttled,
		// ehr-auth, ehr-not-allowed, ehr-invalid, …
		return "ehr-" + ee.Token()
	case errors.Is(err, store.ErrUnavailable):
		return "store-unavailable"
	case errors.Is(err, errStore):
		return "store"
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	}
	return "internal"
}

// reasonFor is Reason for a step: a push pass fails only when the store
// does (EHR failures fail outbox items, not the pass; see PushOnce), so an
// error it cannot place is the store's.
func reasonFor(step Step, err error) string {
	r := Reason(err)
	if step == StepPush && r == "internal" {
		return "store"
	}
	return r
}
