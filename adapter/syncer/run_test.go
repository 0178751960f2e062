package syncer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ipsfhir/ipsfhir/adapter/ehr"
	"github.com/ipsfhir/ipsfhir/adapter/plan"
	"github.com/ipsfhir/ipsfhir/adapter/store"
	"github.com/ipsfhir/ipsfhir/adapter/store/sqlite"
	"github.com/ipsfhir/ipsfhir/adapter/telemetry"
	"github.com/ipsfhir/ipsfhir/adapter/telemetry/telemetrytest"
	"github.com/ipsfhir/ipsfhir/conformance/peer"
	"github.com/ipsfhir/ipsfhir/ips"
	"github.com/ipsfhir/ipsfhir/ips/synth"
	"github.com/ipsfhir/ipsfhir/mappings"
)

// runRig is a store holding a small consenting caseload, a peer FHIR server
// that knows the caseload's patients, and a log the runner writes to
// through the project's redacting handler.
type runRig struct {
	store store.Store
	peer  *peer.Server
	cl    *ips.Caseload
	log   *telemetrytest.Buffer
}

func newRunRig(t *testing.T, clients int) *runRig {
	t.Helper()
	ctx := t.Context()
	srv := peer.StartForTest(t, peer.Options{Args: []string{"--quiet"}})
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "ips.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	cl := synth.Generate(rand.New(rand.NewPCG(7, 7)), clients)
	cl.Program = &ips.Program{ID: "run-test"}
	yes := true
	c, err := ehr.New(ehr.Options{BaseURL: srv.BaseURL})
	if err != nil {
		t.Fatal(err)
	}
	for _, cli := range cl.Clients {
		cli.Consent = &ips.Consent{EHR: &yes}
		body := fmt.Sprintf(`{"resourceType":"Patient","identifier":[{"system":%q,"value":%q}]}`, cli.Patient.System, cli.Patient.Value)
		if _, err := c.Create(ctx, "Patient", []byte(body), ""); err != nil {
			t.Fatal(err)
		}
	}
	return &runRig{store: st, peer: srv, cl: cl, log: &telemetrytest.Buffer{}}
}

// engine is an engine over the rig's store logging to the rig's log.
func (r *runRig) engine() *Engine {
	return &Engine{Store: r.store, Owner: "run-test", Lease: time.Minute, MaxAttempts: 5,
		Logger: telemetry.NewLogger(r.log, slog.LevelDebug, "text")}
}

// enqueue queues every client of the caseload for the connections.
func (r *runRig) enqueue(t *testing.T, connections ...string) {
	t.Helper()
	batch := make([]store.Stored, len(r.cl.Clients))
	for i, c := range r.cl.Clients {
		batch[i] = store.Stored{Client: c}
	}
	if _, err := r.store.SaveClients(t.Context(), batch, connections); err != nil {
		t.Fatal(err)
	}
}

// connector connects to base the way serve does: read /metadata, build the
// plan. The client makes one attempt per call, so every failure the EHR
// answers is one the runner sees.
func (r *runRig) connector(t *testing.T, name, base string) Connector {
	t.Helper()
	c, err := ehr.New(ehr.Options{BaseURL: base, Connection: name, MaxAttempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	return Connector{Name: name, Connect: func(ctx context.Context) (*Connection, error) {
		meta, err := c.Metadata(ctx)
		if err != nil {
			return nil, err
		}
		p, err := plan.Build(meta, plan.Options{})
		if err != nil {
			return nil, WithReason("plan", err)
		}
		return &Connection{Plan: p, EHR: c, Mapping: mappings.Options{Program: r.cl.ProgramID()}, ConsentDefault: true}, nil
	}}
}

// proxy puts an httptest server in front of the peer whose handler may
// answer a request itself (fault returns true) instead of passing it on.
func (r *runRig) proxy(t *testing.T, fault func(w http.ResponseWriter, req *http.Request) bool) string {
	t.Helper()
	u, err := url.Parse(r.peer.BaseURL)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: u.Scheme, Host: u.Host})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if !fault(w, req) {
			rp.ServeHTTP(w, req)
		}
	}))
	t.Cleanup(srv.Close)
	return srv.URL + u.Path
}

// closedPort is a loopback base URL nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "http://" + addr + "/fhir/R4"
}

// waitFor polls cond until it holds, failing t after a generous bound.
func waitFor(t *testing.T, what string, cond func() bool, dump func() string) {
	t.Helper()
	for deadline := time.Now().Add(60 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("%s never happened:\n%s", what, dump())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func connStatus(r *Runner, name string) ConnectionStatus {
	for _, s := range r.Snapshot() {
		if s.Name == name {
			return s
		}
	}
	return ConnectionStatus{}
}

func (r *runRig) depth(t *testing.T, name string) int {
	t.Helper()
	d, err := r.store.OutboxDepth(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return d[name]
}

func fail500(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/fhir+json")
	w.WriteHeader(http.StatusInternalServerError)
	fmt.Fprint(w, `{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"exception"}]}`)
}

// TestRunnerRetriesConnectUntilTheEHRRecovers: an EHR whose /metadata
// answers 500 keeps being retried on backoff and becomes ready when it
// recovers, and meanwhile another connection connects and pushes.
func TestRunnerRetriesConnectUntilTheEHRRecovers(t *testing.T) {
	t.Parallel()
	rr := newRunRig(t, 3)
	var down atomic.Bool
	down.Store(true)
	var metadataCalls atomic.Int32
	flaky := rr.proxy(t, func(w http.ResponseWriter, req *http.Request) bool {
		if strings.HasSuffix(req.URL.Path, "/metadata") {
			// At least three 500s, then whatever the test says.
			if n := metadataCalls.Add(1); n <= 3 || down.Load() {
				fail500(w)
				return true
			}
		}
		return false
	})
	rr.enqueue(t, "clinic", "flaky")
	r := NewRunner(rr.engine(), Schedule{PushInterval: 50 * time.Millisecond, PollInterval: time.Second,
		ConnectRetry: RetrySchedule{Initial: 10 * time.Millisecond, Max: 100 * time.Millisecond, Jitter: 0.2}},
		rr.connector(t, "clinic", rr.peer.BaseURL), rr.connector(t, "flaky", flaky))
	if s := connStatus(r, "flaky"); s.State != StateStarting {
		t.Errorf("before Run: %+v, want starting", s)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	dump := func() string {
		b, _ := json.MarshalIndent(r.Snapshot(), "", " ")
		return string(b) + "\n" + rr.log.String()
	}
	// The healthy connection pushes its whole outbox while the other fails.
	waitFor(t, "clinic pushed while flaky is down", func() bool {
		return rr.depth(t, "clinic") == 0 && !connStatus(r, "clinic").LastPush.IsZero() && metadataCalls.Load() > 3
	}, dump)
	s := connStatus(r, "flaky")
	if s.State != StateFailing || len(s.Failures) != 1 || s.Failures[0].Step != StepConnect || s.Failures[0].Reason != "ehr-http-5xx" || s.Failures[0].Attempts < 3 {
		t.Errorf("flaky while /metadata answers 500: %+v", s)
	}
	if rr.depth(t, "flaky") != len(rr.cl.Clients) {
		t.Errorf("flaky's outbox was touched before it connected: %d items left", rr.depth(t, "flaky"))
	}
	if r.Plans()["flaky"] != nil || r.Plans()["clinic"] == nil {
		t.Errorf("plans while flaky is down: %v", r.Plans())
	}

	down.Store(false)
	waitFor(t, "flaky ready and pushed", func() bool {
		s := connStatus(r, "flaky")
		return s.State == StateReady && !s.LastPush.IsZero() && rr.depth(t, "flaky") == 0
	}, dump)
	if r.Plans()["flaky"] == nil {
		t.Error("flaky's plan is not published once it connected")
	}
	logs := rr.log.String()
	for _, want := range []string{`msg="connect failed" connection=flaky state=failing step=connect error_kind=ehr-http-5xx attempt=1`, "backoff=", `msg="connection ready" connection=flaky`} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %q:\n%s", want, logs)
		}
	}
	for _, c := range rr.cl.Clients {
		if strings.Contains(logs, c.Patient.Value) {
			t.Errorf("log holds an MRN:\n%s", logs)
		}
	}
}

// TestRunnerFailingPullDoesNotStopPushes: an EHR that refuses the
// referral search fails every pull, and pushes go on regardless.
func TestRunnerFailingPullDoesNotStopPushes(t *testing.T) {
	t.Parallel()
	rr := newRunRig(t, 3)
	var refusals atomic.Int32
	base := rr.proxy(t, func(w http.ResponseWriter, req *http.Request) bool {
		// Only pull searches ServiceRequest (referrals); push never does.
		if req.Method == http.MethodGet && strings.HasSuffix(req.URL.Path, "/ServiceRequest") {
			refusals.Add(1)
			w.Header().Set("Content-Type", "application/fhir+json")
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprint(w, `{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"invalid"}]}`)
			return true
		}
		return false
	})
	r := NewRunner(rr.engine(), Schedule{PushInterval: 50 * time.Millisecond, PollInterval: time.Second,
		PullRetry: RetrySchedule{Initial: 20 * time.Millisecond, Max: 50 * time.Millisecond}},
		rr.connector(t, "clinic", base))
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	dump := func() string {
		b, _ := json.MarshalIndent(r.Snapshot(), "", " ")
		return string(b) + "\n" + rr.log.String()
	}

	waitFor(t, "pull failing twice", func() bool {
		s := connStatus(r, "clinic")
		return s.State == StateFailing && len(s.Failures) == 1 && s.Failures[0].Attempts >= 2
	}, dump)
	// Work queued now, with pull failing all along, still reaches the EHR.
	rr.enqueue(t, "clinic")
	waitFor(t, "the outbox pushed while pull fails", func() bool { return rr.depth(t, "clinic") == 0 }, dump)
	s := connStatus(r, "clinic")
	f := s.Failures[0]
	if s.State != StateFailing || f.Step != StepPull || f.Reason != "ehr-invalid" || s.LastPush.IsZero() || !s.LastPull.IsZero() {
		t.Errorf("status: %+v", s)
	}
	if refusals.Load() < 2 {
		t.Errorf("the pull was tried %d times", refusals.Load())
	}
	c, err := ehr.New(ehr.Options{BaseURL: rr.peer.BaseURL})
	if err != nil {
		t.Fatal(err)
	}
	plans, err := c.Search(t.Context(), "CarePlan", url.Values{"_count": {"100"}})
	if err != nil || len(plans) != len(rr.cl.Clients) {
		t.Errorf("the EHR holds %d CarePlans (%v), want one per client", len(plans), err)
	}
	if !strings.Contains(rr.log.String(), `msg="pull failed" connection=clinic state=failing step=pull error_kind=ehr-invalid`) ||
		!strings.Contains(rr.log.String(), "direction=pull") {
		t.Errorf("the pull failure is not logged with its reason:\n%s", rr.log.String())
	}
}

// TestRunnerStopsWhenTheContextEnds: cancelling stops a connection waiting
// out a long backoff, one whose EHR holds /metadata unanswered, and one
// between passes, and Run returns.
func TestRunnerStopsWhenTheContextEnds(t *testing.T) {
	t.Parallel()
	rr := newRunRig(t, 1)
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) { <-req.Context().Done() }))
	defer hang.Close()
	r := NewRunner(rr.engine(), Schedule{PushInterval: time.Hour, PollInterval: time.Hour,
		ConnectRetry: RetrySchedule{Initial: time.Hour, Max: time.Hour}},
		rr.connector(t, "clinic", rr.peer.BaseURL), rr.connector(t, "dead", closedPort(t)), rr.connector(t, "hanging", hang.URL+"/fhir"))
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	dump := func() string {
		b, _ := json.MarshalIndent(r.Snapshot(), "", " ")
		return string(b) + "\n" + rr.log.String()
	}
	waitFor(t, "clinic ready and dead failing", func() bool {
		return connStatus(r, "clinic").State == StateReady && !connStatus(r, "clinic").LastPush.IsZero() && connStatus(r, "dead").State == StateFailing
	}, dump)
	if s := connStatus(r, "dead"); s.Failures[0].Reason != "ehr-unreachable" {
		t.Errorf("a closed port: %+v, want ehr-unreachable", s)
	}
	if s := connStatus(r, "hanging"); s.State != StateStarting {
		t.Errorf("an EHR that has not answered yet: %+v, want starting", s)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatalf("Run did not return after cancel:\n%s", dump())
	}
}

// TestRunnerOnce: one pass connects each connection a few times at most,
// gives up on the dead one, and pulls and pushes the healthy one.
func TestRunnerOnce(t *testing.T) {
	t.Parallel()
	rr := newRunRig(t, 2)
	rr.enqueue(t, "clinic", "dead")
	e := rr.engine()
	var progress atomic.Int32
	e.Progress = func(PushSummary) { progress.Add(1) }
	r := NewRunner(e, Schedule{ConnectRetry: RetrySchedule{Initial: 10 * time.Millisecond, Max: 10 * time.Millisecond}},
		rr.connector(t, "dead", closedPort(t)), rr.connector(t, "clinic", rr.peer.BaseURL))
	res := r.Once(t.Context(), 3)
	if len(res) != 2 || res[0].Connection != "dead" || res[1].Connection != "clinic" {
		t.Fatalf("results: %+v", res)
	}
	if f := res[0].Failures; len(f) != 1 || f[0].Step != StepConnect || f[0].Reason != "ehr-unreachable" || f[0].Attempts != 3 || res[0].Push.Items != 0 {
		t.Errorf("dead: %+v", res[0])
	}
	if res[1].Failures != nil || res[1].Push.Items != 2 || res[1].Push.Written == 0 {
		t.Errorf("clinic: %+v", res[1])
	}
	if pull, push := Totals(res); push.Items != 2 || push.Written != res[1].Push.Written || pull != res[1].Pull {
		t.Errorf("totals: %+v %+v", pull, push)
	}
	if progress.Load() != 2 {
		t.Errorf("progress called %d times, want once per item", progress.Load())
	}
	if rr.depth(t, "dead") != 2 || rr.depth(t, "clinic") != 0 {
		t.Errorf("outbox after the pass: dead %d, clinic %d", rr.depth(t, "dead"), rr.depth(t, "clinic"))
	}

	// The status as operators get it: lowerCamel, no time that never
	// happened, nothing about where the EHR is.
	b, err := json.Marshal(r.Snapshot())
	if err != nil {
		t.Fatal(err)
	}
	var got []map[string]any
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if got[0]["state"] != "failing" || got[0]["lastPush"] != nil || got[1]["state"] != "ready" || got[1]["lastPush"] == nil || got[1]["lastPull"] == nil {
		t.Errorf("snapshot JSON: %s", b)
	}
	f := got[0]["failures"].([]any)[0].(map[string]any)
	if f["step"] != "connect" || f["reason"] != "ehr-unreachable" || f["attempts"] != 3.0 || f["since"] == nil {
		t.Errorf("failure JSON: %s", b)
	}
	if bytes.Contains(b, []byte("127.0.0.1")) || bytes.Contains(b, []byte("http")) {
		t.Errorf("the snapshot names an address: %s", b)
	}
}

func TestReason(t *testing.T) {
	t.Parallel()
	timeout := &url.Error{Op: "Get", URL: "x", Err: context.DeadlineExceeded}
	for _, tc := range []struct {
		err  error
		want string
	}{
		{nil, ""},
		{&ehr.Error{Op: "metadata", Kind: ehr.KindTransient, Status: 503}, "ehr-http-5xx"},
		{&ehr.Error{Op: "search Goal", Kind: ehr.KindTransient, Status: 429}, "ehr-throttled"},
		{fmt.Errorf("%w: lease: %w", errStore, store.Unavailable("connection")), "store-unavailable"},
		{&ehr.Error{Op: "metadata", Kind: ehr.KindTransient, Err: errors.New("connection refused")}, "ehr-unreachable"},
		{&ehr.Error{Op: "metadata", Kind: ehr.KindTransient, Err: timeout}, "ehr-timeout"},
		{fmt.Errorf("read: %w", &ehr.Error{Op: "search Goal", Kind: ehr.KindAuth, Status: 401}), "ehr-auth"},
		{&ConnectionError{Connection: "a", Err: &ehr.Error{Kind: ehr.KindOutcomeUnknown}}, "ehr-outcome-unknown"},
		{WithReason("plan", errors.New("no write path")), "plan"},
		{WithReason("Not A Token", errors.New("x")), "internal"},
		{fmt.Errorf("%w: ledger: %w", errStore, errors.New("disk I/O")), "store"},
		{fmt.Errorf("x: %w", context.Canceled), "canceled"},
		{errors.New("something"), "internal"},
	} {
		if got := Reason(tc.err); got != tc.want {
			t.Errorf("Reason(%v) = %q, want %q", tc.err, got, tc.want)
		}
		if tc.err != nil && !telemetry.IsToken(Reason(tc.err)) {
			t.Errorf("Reason(%v) is not a token", tc.err)
		}
	}
	if reasonFor(StepPush, errors.New("lease: database is locked")) != "store" || reasonFor(StepPull, errors.New("x")) != "internal" {
		t.Error("a push pass fails only on the store")
	}
	if WithReason("plan", nil) != nil {
		t.Error("WithReason(nil) is not nil")
	}
}

// TestRunnerEnablesAndDisablesWhileRunning: a connection disabled before
// Run does not touch its EHR or its outbox; enabled while running, it
// connects and pushes; disabled again, it stops (no request reaches the
// EHR any more, Snapshot and Plans leave it out, a pull's save no longer
// queues for it), and enabled again it connects afresh.
func TestRunnerEnablesAndDisablesWhileRunning(t *testing.T) {
	t.Parallel()
	rr := newRunRig(t, 3)
	var requests atomic.Int32
	counted := rr.proxy(t, func(http.ResponseWriter, *http.Request) bool {
		requests.Add(1)
		return false
	})
	rr.enqueue(t, "clinic", "second")
	r := NewRunner(rr.engine(), Schedule{PushInterval: 50 * time.Millisecond, PollInterval: 100 * time.Millisecond},
		rr.connector(t, "clinic", rr.peer.BaseURL), rr.connector(t, "second", counted))
	r.SetEnabled([]string{"clinic"})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	dump := func() string {
		b, _ := json.MarshalIndent(r.Snapshot(), "", " ")
		return string(b) + "\n" + rr.log.String()
	}
	names := func() []string {
		var out []string
		for _, s := range r.Snapshot() {
			out = append(out, s.Name)
		}
		return out
	}
	waitFor(t, "clinic pushed", func() bool { return rr.depth(t, "clinic") == 0 && !connStatus(r, "clinic").LastPush.IsZero() }, dump)
	if n := requests.Load(); n != 0 || rr.depth(t, "second") != len(rr.cl.Clients) {
		t.Fatalf("a disabled connection made %d requests and left %d of %d items", n, rr.depth(t, "second"), len(rr.cl.Clients))
	}
	if got := names(); len(got) != 1 || got[0] != "clinic" {
		t.Errorf("Snapshot names %v, want only the enabled clinic", got)
	}
	if got := r.engine.connectionNames(); len(got) != 1 || got[0] != "clinic" {
		t.Errorf("a pull's save queues for %v, want [clinic]", got)
	}

	r.SetEnabled([]string{"clinic", "second"})
	waitFor(t, "second connected and pushed", func() bool {
		s := connStatus(r, "second")
		return s.State == StateReady && !s.LastPush.IsZero() && rr.depth(t, "second") == 0
	}, dump)
	if r.Plans()["second"] == nil || len(r.engine.connectionNames()) != 2 {
		t.Errorf("enabled: plans %v, queue %v", r.Plans(), r.engine.connectionNames())
	}

	r.SetEnabled([]string{"clinic"})
	waitFor(t, "second gone from the snapshot", func() bool { return len(names()) == 1 }, dump)
	if r.Plans()["second"] != nil {
		t.Error("a disabled connection's plan is still published")
	}
	// Run logs "connection disabled" once the loops have returned (Snapshot
	// leaves the connection out as soon as SetEnabled is called); a request
	// cancelled then may still reach the proxy a moment later.
	waitFor(t, "second's loops stopped", func() bool {
		return strings.Contains(rr.log.String(), `msg="connection disabled" connection=second`)
	}, dump)
	time.Sleep(100 * time.Millisecond)
	// Its loops have stopped: nothing reaches its EHR any more, though its
	// poll interval is 100 ms.
	before := requests.Load()
	time.Sleep(500 * time.Millisecond)
	if n := requests.Load(); n != before {
		t.Errorf("a disabled connection made %d more requests", n-before)
	}

	r.SetEnabled([]string{"clinic", "second"})
	// It connects afresh: a second "connection ready".
	waitFor(t, "second ready again", func() bool {
		return strings.Count(rr.log.String(), `msg="connection ready" connection=second`) == 2 && connStatus(r, "second").State == StateReady
	}, dump)
	if requests.Load() == before {
		t.Error("enabled again, the connection made no request")
	}
}
