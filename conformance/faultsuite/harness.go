package faultsuite

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ipsfhir/ipsfhir/conformance/faultproxy"
	"github.com/ipsfhir/ipsfhir/conformance/internal/tail"
	"github.com/ipsfhir/ipsfhir/conformance/peer"
	"github.com/ipsfhir/ipsfhir/ips"
	"github.com/ipsfhir/ipsfhir/ips/synth"
)

const (
	// Program is the program id of the suite's caseloads: it scopes the
	// business identifiers the checks search the EHR for.
	Program = "faultsuite"
	// Connection is the name of the EHR connection in the configuration.
	Connection = "clinic"
	// settleFor is how long the outbox must stay empty to count as
	// drained: longer than a pull interval (2 s) plus the push interval
	// (5 s), so a clinician's change pulled at the last moment has had
	// time to be queued.
	settleFor = 12 * time.Second
	// editGrace is how long an edit in flight when chaos ends may take to
	// be confirmed.
	editGrace = 60 * time.Second
)

// run is one scenario's run: its processes, its expectations, its report.
type run struct {
	opts Options
	sp   spec
	rng  *mrand.Rand // the harness's own choices; used by one goroutine at a time
	rmu  sync.Mutex  // guards rng

	dir, root, bin string
	tempDir        bool
	program        string
	peer           *peer.Server
	proxy          *faultproxy.Proxy
	reqLog         *os.File // the proxy's request log, if kept
	proxyLog       *faultproxy.RequestLog
	proxyBase      string
	peerFHIR       *fhirClient
	dropSchema     func(context.Context) error
	key, adminKey  string
	caseload       *ips.Caseload
	exp            *expectation
	replicas       []*replica
	paths          map[string]string // concept → path, from the plan
	provenance     bool              // the plan writes a Provenance with each write

	emu   sync.Mutex
	exits []string // unexpected exits, with stderr tails

	// The soak's sampler.
	smu         sync.Mutex
	phase       string
	sampleStart time.Time
	sampling    context.CancelFunc
	samplerDone chan struct{}

	kills, restarts        atomic.Int64
	clinSkipped, clinRaced atomic.Int64
	editSeq                atomic.Int64
	report                 *Report
	logf                   func(format string, a ...any)
}

// Run runs one scenario from start to finish and reports what it saw. The
// error is for a run that could not be set up or carried through (no
// peer, a failed build, a replica that never served): assertion failures
// are in Report.Failures, with what was observed.
func Run(ctx context.Context, o Options) (*Report, error) {
	o = o.withDefaults()
	sp, err := o.Scenario.spec()
	if err != nil {
		return nil, err
	}
	r := &run{opts: o, sp: sp, rng: mrand.New(mrand.NewPCG(o.Seed, 0x5eed)), program: Program}
	r.logf = func(format string, a ...any) {
		fmt.Fprintf(o.Log, "faultsuite %s %s: %s\n", time.Now().Format("15:04:05"), o.Scenario, fmt.Sprintf(format, a...))
	}
	r.report = &Report{Scenario: o.Scenario, Replicas: sp.replicas, Clients: o.Clients, Chaos: o.Chaos, Rate: o.Rate, Seed: o.Seed, LeaseFor: o.LeaseFor, EHRTimeout: o.EHRTimeout, Soak: o.soak != nil,
		Started: time.Now(), Store: "sqlite"}
	if sp.postgres {
		r.report.Store = "postgres"
	}
	defer r.cleanup()
	if err := r.setup(ctx); err != nil {
		return nil, err
	}
	if o.soak != nil {
		if err := r.soakPhase(ctx, *o.soak); err != nil {
			return r.report, err
		}
	} else if err := r.chaos(ctx); err != nil {
		return r.report, err
	}
	faultsOff := time.Now()
	if o.soak == nil {
		// The replicas start afresh, as after an outage: what was
		// leased by a killed process, or scheduled for a retry, must
		// still go out.
		if err := r.restartAll(ctx); err != nil {
			r.report.fail("%v", err)
		}
	}
	r.drain(ctx, faultsOff)
	r.stopSampling()
	if err := r.verify(ctx); err != nil {
		return r.report, err
	}
	r.finish()
	r.report.Elapsed = time.Since(r.report.Started)
	return r.report, nil
}

func (r *run) intn(n int) int {
	r.rmu.Lock()
	defer r.rmu.Unlock()
	return r.rng.IntN(n)
}

func (r *run) float() float64 {
	r.rmu.Lock()
	defer r.rmu.Unlock()
	return r.rng.Float64()
}

// childRand is a generator for one goroutine, derived from the seed.
func (r *run) childRand() *mrand.Rand {
	r.rmu.Lock()
	defer r.rmu.Unlock()
	return mrand.New(mrand.NewPCG(r.rng.Uint64(), r.rng.Uint64()))
}

func (r *run) setup(ctx context.Context) error {
	o := r.opts
	var err error
	if r.dir = o.Dir; r.dir == "" {
		if r.dir, err = os.MkdirTemp("", "ipsfhir-faultsuite-"); err != nil {
			return err
		}
		r.tempDir = true
	} else if err := os.MkdirAll(r.dir, 0o755); err != nil {
		return err
	}
	if r.root = o.ModuleRoot; r.root == "" {
		if r.root, err = ModuleRoot(); err != nil {
			return err
		}
	}
	if r.bin = o.Binary; r.bin == "" {
		r.logf("building ./cmd/ipsfhir")
		if r.bin, err = BuildBinary(ctx, r.root, r.dir); err != nil {
			return err
		}
	}

	popts := peer.Options{Args: append([]string{"--quiet"}, r.sp.peerArgs...)}
	if r.sp.epic {
		popts.Capability = filepath.Join(r.root, EpicCapability)
	}
	if r.peer, err = peer.Start(ctx, popts); err != nil {
		return err
	}
	r.peerFHIR = newFHIRClient(r.peer.BaseURL)
	// Faults stay off until every replica serves: the chaos phase's
	// restarts are where a start meets a failing EHR.
	popt := faultproxy.Options{Seed: o.Seed, Kinds: o.Kinds, RetryAfter: time.Second, Hang: o.Hang}
	if o.RequestLog && o.Dir != "" {
		if r.reqLog, err = os.Create(filepath.Join(r.dir, "proxy-requests.jsonl")); err != nil {
			return err
		}
		r.proxyLog = &faultproxy.RequestLog{W: r.reqLog, Describe: describeResource}
		popt.RequestLog = r.proxyLog
	}
	if r.proxy, err = faultproxy.New(r.peer.BaseURL, popt); err != nil {
		return err
	}
	if r.proxyBase, err = r.proxy.Start(); err != nil {
		return err
	}

	storeYAML := fmt.Sprintf("{driver: sqlite, dsn: %q}", filepath.Join(r.dir, "ips.db"))
	if r.sp.postgres {
		dsn, drop, err := NewPostgresSchema(ctx, o.PostgresDSN)
		if err != nil {
			return err
		}
		r.dropSchema = drop
		storeYAML = fmt.Sprintf("{driver: postgres, dsn: %q}", dsn)
	}

	key, keySum := newKey()
	admin, adminSum := newKey()
	r.key, r.adminKey = key, admin

	// The caseload: synthetic clients, each with a Patient in the EHR
	// that the adapter finds by identifier.
	r.caseload = synth.Generate(mrand.New(mrand.NewPCG(o.Seed, o.Seed)), o.Clients)
	r.caseload.Program = &ips.Program{ID: r.program, Name: "Fault suite IPS program"}
	r.exp = newExpectation(r.caseload)
	for _, c := range r.caseload.Clients {
		if consents(c) {
			r.report.Consenting++
		}
	}
	if err := r.seedPatients(ctx); err != nil {
		return err
	}
	caseloadFile := filepath.Join(r.dir, "caseload.json")
	b, err := json.Marshal(r.caseload)
	if err != nil {
		return err
	}
	if err := os.WriteFile(caseloadFile, b, 0o600); err != nil {
		return err
	}

	codes := ""
	if r.sp.epic {
		// Epic takes Observation writes only under codes the site
		// configured: map both observation concepts, so jobs and
		// employment status are written natively (by plain POST).
		codes = `
    codes:
      job-outcome: {system: "urn:oid:1.2.840.114350.1.13.0.1.7.2.707679", code: "FS-JOB", display: "Job (fault suite flowsheet row)"}
      employment-status: {system: "urn:oid:1.2.840.114350.1.13.0.1.7.2.707679", code: "FS-EMP", display: "Employment status (fault suite flowsheet row)"}`
	}
	logLevel := "info"
	if o.DebugLog {
		logLevel = "debug"
	}
	for i := 0; i < r.sp.replicas; i++ {
		port, err := freePort()
		if err != nil {
			return err
		}
		cfg := filepath.Join(r.dir, fmt.Sprintf("replica-%d.yaml", i))
		text := fmt.Sprintf(`program: {id: %s, name: Fault suite IPS program}
store: %s
server: {listen: "127.0.0.1:%d"}
apiKeys:
  - {name: suite-specialist, role: specialist, sha256: %s}
  - {name: suite-admin, role: admin, sha256: %s}
telemetry: {logLevel: %s}
sync: {pollInterval: 2s, overlap: 10s, maxAttempts: 8, workers: 2, leaseFor: %s}
connections:
  - name: %s
    fhirBaseUrl: %q
    timeout: %s
    enabled: true
    auth: {type: none}%s
`, r.program, storeYAML, port, keySum, adminSum, logLevel, o.LeaseFor, Connection, r.proxyBase, o.EHRTimeout, codes)
		if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
			return err
		}
		logf, err := os.Create(filepath.Join(r.dir, fmt.Sprintf("replica-%d.log", i)))
		if err != nil {
			return err
		}
		rep := &replica{idx: i, bin: r.bin, cfg: cfg, base: fmt.Sprintf("http://127.0.0.1:%d", port), logf: logf, stderr: tail.New(stderrLines)}
		rep.onUnexpected = r.unexpectedExit
		r.replicas = append(r.replicas, rep)
	}

	r.logf("importing %d clients", len(r.caseload.Clients))
	imp := exec.CommandContext(ctx, r.bin, "import", "--config", r.replicas[0].cfg, caseloadFile)
	if out, err := imp.CombinedOutput(); err != nil {
		return fmt.Errorf("faultsuite: ipsfhir import: %v; output ends:\n%s", err, indent(lastLines(string(out), stderrLines)))
	}
	for _, rep := range r.replicas {
		if err := rep.start(); err != nil {
			return err
		}
	}
	for _, rep := range r.replicas {
		if err := rep.waitHealthy(ctx, healthTimeout); err != nil {
			return fmt.Errorf("faultsuite: start-up (faults off): %w", err)
		}
	}
	// Each connection connects on its own after serve starts: its plan is
	// served (404 until then) once it has read the EHR's statement.
	var (
		paths      map[string]string
		provenance bool
	)
	deadline := time.Now().Add(healthTimeout)
	for {
		var err error
		if paths, provenance, err = r.api(0).conceptPaths(ctx, Connection); err == nil {
			break
		} else if time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	r.paths, r.provenance = paths, provenance
	r.logf("%d replica(s) serving; plan: %v, provenance %v", len(r.replicas), paths, provenance)
	return nil
}

// seedPatients creates each client's Patient on the peer directly, as the
// clinic's registration would have, four at a time.
func (r *run) seedPatients(ctx context.Context) error {
	r.logf("seeding %d patients on the peer", len(r.caseload.Clients))
	work := make(chan *ips.Client)
	errs := make(chan error, 4)
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c := range work {
				body, _ := json.Marshal(map[string]any{
					"resourceType": "Patient",
					"identifier":   []any{map[string]any{"system": c.Patient.System, "value": c.Patient.Value}},
					"active":       true,
				})
				rep, err := r.peerFHIR.do(ctx, http.MethodPost, "Patient", body, nil)
				if err == nil && rep.Status != http.StatusCreated {
					err = fmt.Errorf("faultsuite: seeding a Patient: HTTP %d", rep.Status)
				}
				if err != nil {
					select {
					case errs <- err:
					default:
					}
				}
			}
		}()
	}
	for _, c := range r.caseload.Clients {
		select {
		case work <- c:
		case err := <-errs:
			close(work)
			wg.Wait()
			return err
		}
	}
	close(work)
	wg.Wait()
	select {
	case err := <-errs:
		return err
	default:
		return nil
	}
}

// newKey makes an API key and the SHA-256 the configuration holds.
func newKey() (key, sum string) {
	var b [24]byte
	_, _ = rand.Read(b[:])
	key = hex.EncodeToString(b[:])
	h := sha256.Sum256([]byte(key))
	return key, hex.EncodeToString(h[:])
}

func (r *run) unexpectedExit(rep *replica, code int, tail string) {
	r.emu.Lock()
	defer r.emu.Unlock()
	r.exits = append(r.exits, fmt.Sprintf("%s exited on its own with code %d; its stderr ends:\n%s", rep, code, indent(tail)))
}

func (r *run) api(i int) *apiClient { return newAPIClient(r.replicas[i].base, r.key, r.adminKey) }

// randomAPI is the API of a random running replica, or nil when none runs.
func (r *run) randomAPI(rng *mrand.Rand) *apiClient {
	var up []int
	for i, rep := range r.replicas {
		if rep.running() {
			up = append(up, i)
		}
	}
	if len(up) == 0 {
		return nil
	}
	return r.api(up[rng.IntN(len(up))])
}

// chaos runs the chaos phase: faults on, a replica SIGKILLed every few
// seconds and restarted (a replica that exits on its own is restarted
// too, and counted), both sides editing. Then faults off.
func (r *run) chaos(ctx context.Context) error {
	o := r.opts
	r.logf("chaos for %v: fault rate %.2f, a SIGKILL every ~%v", o.Chaos, o.Rate, o.KillEvery)
	r.proxy.SetRate(o.Rate)
	chaosCtx, stopChaos := context.WithTimeout(ctx, o.Chaos)
	defer stopChaos()
	graceCtx, stopGrace := context.WithTimeout(ctx, o.Chaos+editGrace)
	defer stopGrace()

	var wg sync.WaitGroup
	wg.Add(3)
	go func() { defer wg.Done(); r.supervise(chaosCtx, o.KillEvery) }()
	go func() {
		defer wg.Done()
		rngs := sync.Pool{New: func() any { return r.childRand() }}
		paced(chaosCtx, o.IPSEditsPerSecond, 2, func() int { return int(r.editSeq.Add(1)) }, func(n int) {
			rng := rngs.Get().(*mrand.Rand)
			defer rngs.Put(rng)
			r.ipsEdit(graceCtx, rng, n)
		})
	}()
	go func() {
		defer wg.Done()
		if r.paths["employment-goal"] != "native" {
			r.report.ClinicianNote = "none: the EHR's statement makes Goal read-only, so goals travel in the chart note and there is no Goal for a clinician to edit"
			return
		}
		rngs := sync.Pool{New: func() any { return r.childRand() }}
		paced(chaosCtx, o.ClinicianEditsPerSecond, 1, func() int { return int(r.editSeq.Add(1)) }, func(n int) {
			rng := rngs.Get().(*mrand.Rand)
			defer rngs.Put(rng)
			r.clinicianEdit(graceCtx, rng, n)
		})
	}()
	<-chaosCtx.Done()
	r.proxy.SetRate(0)
	r.proxy.ReleaseHung()
	r.logf("chaos over: faults off; %d kills so far", r.kills.Load())
	wg.Wait()
	return ctx.Err()
}

// supervise keeps every replica running until ctx ends, as systemd's
// Restart=always would, and SIGKILLs a random one about every killEvery
// (none when killEvery is negative).
func (r *run) supervise(ctx context.Context, killEvery time.Duration) {
	nextKill := func() time.Time {
		return time.Now().Add(time.Duration(float64(killEvery) * (0.5 + r.float())))
	}
	kill := nextKill()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if killEvery > 0 && time.Now().After(kill) {
			var up []*replica
			for _, rep := range r.replicas {
				if rep.running() {
					up = append(up, rep)
				}
			}
			if len(up) > 0 {
				up[r.intn(len(up))].kill()
				r.kills.Add(1)
			}
			kill = nextKill()
		}
		for _, rep := range r.replicas {
			if !rep.running() {
				if err := rep.start(); err != nil {
					r.report.fail("%v", err)
					continue
				}
				r.restarts.Add(1)
			}
		}
	}
}

// restartAll stops every replica cleanly (SIGTERM) and starts it again,
// then waits until each serves.
func (r *run) restartAll(ctx context.Context) error {
	r.logf("restarting every replica cleanly")
	var errs []error
	for _, rep := range r.replicas {
		// A replica the supervisor started a moment ago may not have
		// installed its signal handler yet, and SIGTERM would kill it
		// outright: let it come up first. If it exits on its own
		// meanwhile, that is recorded as an unexpected exit.
		if rep.running() {
			_ = rep.waitHealthy(ctx, healthTimeout)
		}
		if err := rep.stop(); err != nil {
			errs = append(errs, err)
		}
	}
	for _, rep := range r.replicas {
		if err := rep.start(); err != nil {
			errs = append(errs, err)
			continue
		}
		r.restarts.Add(1)
	}
	for _, rep := range r.replicas {
		if err := rep.waitHealthy(ctx, healthTimeout); err != nil {
			errs = append(errs, fmt.Errorf("after faults stopped: %w", err))
		}
	}
	return errors.Join(errs...)
}

// drain waits until the outbox stays empty for settleFor, at most
// DrainTimeout after faults stopped.
func (r *run) drain(ctx context.Context, faultsOff time.Time) {
	deadline := faultsOff.Add(r.opts.DrainTimeout)
	var zeroSince time.Time
	last, lastErr := -1, error(nil)
	for {
		api := r.randomAPI(r.childRand())
		if api != nil {
			d, err := api.outboxDepth(ctx)
			last, lastErr = d, err
			switch {
			case err == nil && d == 0:
				if zeroSince.IsZero() {
					zeroSince = time.Now()
				}
				if time.Since(zeroSince) >= settleFor {
					r.report.Drained = true
					r.report.Drain = zeroSince.Sub(faultsOff)
					r.report.DrainWaited = r.report.Drain
					r.logf("outbox drained %v after faults stopped", r.report.Drain.Round(time.Second))
					return
				}
			default:
				zeroSince = time.Time{}
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			r.report.DrainWaited = time.Since(faultsOff)
			what := fmt.Sprintf("depth %d", last)
			if lastErr != nil {
				what = "depth unknown: " + lastErr.Error()
			}
			r.report.fail("outbox not drained %v after faults stopped (%s at the last look)", r.opts.DrainTimeout, what)
			return
		}
		sleepCtx(ctx, time.Second)
	}
}

// finish copies the counters into the report and turns what was seen into
// assertions.
func (r *run) finish() {
	rep := r.report
	st := r.proxy.Stats()
	rep.Faults, rep.ProxyRequests = st.Faults, st.Requests
	rep.FaultsByRequest = faultsByRequest(r.proxy.FaultLog())
	rep.Kills, rep.Restarts = int(r.kills.Load()), int(r.restarts.Load())
	r.emu.Lock()
	rep.UnexpectedExits = len(r.exits)
	if n := len(r.exits); n > 0 {
		msg := fmt.Sprintf("%d serve process(es) exited on its own (not killed, not stopped by the suite)", n)
		for i, e := range r.exits {
			if i == 3 {
				msg += fmt.Sprintf("\n  … and %d more", n-3)
				break
			}
			msg += "\n  " + e
		}
		rep.fail("%s", msg)
	}
	r.emu.Unlock()
	e := r.exp
	e.mu.Lock()
	rep.IPSEditsByKind, rep.ClinicianEditsByKind = e.ipsKinds, e.clinKinds
	for _, v := range e.ipsKinds {
		rep.IPSEdits += v
	}
	for _, v := range e.clinKinds {
		rep.ClinicianEdits += v
	}
	rep.Unconfirmed = e.unconfirmed
	if len(e.editErrors) > 0 {
		rep.fail("edits refused for reasons other than a race: %s", countsText(e.editErrors))
	}
	e.mu.Unlock()
	if rep.ClinicianNote == "" && rep.ClinicianEdits == 0 && r.opts.ClinicianEditsPerSecond > 0 && r.opts.soak == nil {
		rep.ClinicianNote = fmt.Sprintf("none applied (%d skipped: goal not in the EHR yet; %d lost 5 races in a row)", r.clinSkipped.Load(), r.clinRaced.Load())
	}
	if rep.IPSEdits == 0 && r.opts.IPSEditsPerSecond > 0 {
		rep.fail("no IPS edit was confirmed during chaos: the run tested nothing on the IPS side")
	}
	if r.opts.Rate > 0 && rep.FaultTotal() == 0 {
		rep.fail("no fault was injected: the run tested nothing under faults")
	}
}

func (r *run) cleanup() {
	for _, rep := range r.replicas {
		if err := rep.stop(); err != nil && r.report != nil {
			r.report.fail("at the end: %v", err)
		}
		if rep.logf != nil {
			_ = rep.logf.Close()
		}
	}
	if r.proxy != nil {
		_ = r.proxy.Close()
	}
	if r.reqLog != nil {
		_ = r.reqLog.Close()
	}
	if r.peer != nil {
		_ = r.peer.Stop()
	}
	if r.dropSchema != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		_ = r.dropSchema(ctx)
		cancel()
	}
	if r.tempDir {
		_ = os.RemoveAll(r.dir)
	}
}
