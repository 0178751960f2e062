package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ipsfhir/ipsfhir/adapter/api"
	"github.com/ipsfhir/ipsfhir/adapter/config"
	"github.com/ipsfhir/ipsfhir/adapter/console"
	"github.com/ipsfhir/ipsfhir/adapter/ehr"
	"github.com/ipsfhir/ipsfhir/adapter/fhirapi"
	"github.com/ipsfhir/ipsfhir/adapter/store"
	"github.com/ipsfhir/ipsfhir/adapter/syncer"
	"github.com/ipsfhir/ipsfhir/conformance/check"
	"github.com/ipsfhir/ipsfhir/ips"
	"github.com/ipsfhir/ipsfhir/mappings"
	"github.com/ipsfhir/ipsfhir/outcomes"
)

func runServe(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) int {
	fs := newFlags("serve", "--config FILE",
		`Runs the adapter as a service until SIGINT or SIGTERM. It serves:

  /api/v1      the records API (clients, goals, supports, jobs …)
  /fhir        the FHIR R4 read facade with Bulk Data export (docs/FHIR-API.md)
  /admin       connected EHRs and their sync plans, reconcile, dead letters,
               conflicts
  /console/    the administrator's web console (admin and director keys;
               docs/CONSOLE.md)
  /metrics     Prometheus metrics
  /healthz     200 while the process runs
  /readyz      200 when the store answers, 503 when it does not; the JSON
               body lists each connection's state: starting (no sync plan
               yet), ready, or failing (since when, at which step: connect,
               pull or push, and why, as a short reason such as
               ehr-unreachable)
  /.well-known/jwks.json  the public keys of smart-backend connections

/healthz, /readyz, /fhir/metadata and /.well-known/jwks.json need no key;
every other endpoint needs an API key (apiKeys in the config).

Each enabled EHR connection runs on its own. It reads the EHR's
CapabilityStatement and builds its sync plan, retrying with backoff (5 s
doubling to 5 min) while the EHR is unreachable or failing; then it pushes
IPS changes as soon as they are saved (and every sync.pushInterval in any
case) and pulls clinicians' changes every
sync.pollInterval, push and pull each retrying on its own backoff. An EHR
that is down stops neither the service nor the other connections: it shows
as failing in /readyz and the log, and /readyz stays 200, because
readiness is about the store (an EHR outage is not cured by restarting or
by taking this replica out of a load balancer). An enabled connection
whose credentials or CA file cannot be read stops serve at start; a
disabled one fails to connect (reason config) if enabled from the console.

Whether a connection is enabled is the configuration file's enabled:,
unless an administrator enabled or disabled it in the console
(/console/connections/NAME): that choice is stored, wins over the file,
and is applied at once here and within 5 s on other replicas
(ipsfhir connections --config FILE lists it).`, stderr)
	cfgPath := fs.String("config", "", "configuration file (required)")
	if code, done := parseFlags(fs, args, stdout); done {
		return code
	}
	if *cfgPath == "" || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "ipsfhir serve: --config FILE is required, and no other arguments are taken")
		return exitUsage
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		fmt.Fprintf(stderr, "ipsfhir serve: %v\n", err)
		return exitUsage
	}
	sys, err := wire(ctx, cfg, stderr, true)
	if err != nil {
		fmt.Fprintf(stderr, "ipsfhir serve: %v\n", err)
		return exitForSetup(err)
	}
	defer sys.close(context.WithoutCancel(ctx))

	return sys.serve(ctx, stdout, stderr)
}

// serve runs the HTTP service and the sync workers until ctx ends.
func (s *system) serve(ctx context.Context, stdout, stderr io.Writer) int {
	// A pseudonymization key that is configured but unreadable stops the
	// service here, rather than leaving HIE exports refused.
	key, err := s.cfg.Export.Key()
	if err != nil {
		fmt.Fprintf(stderr, "ipsfhir serve: %v\n", err)
		return exitForSetup(err)
	}
	s.pseudonymKey = key
	// So does a specialist key that is configured but unreadable, rather
	// than leaving the MeasureReports without their breakdown.
	if s.specialistKey, err = s.cfg.Reports.Key(); err != nil {
		fmt.Fprintf(stderr, "ipsfhir serve: %v\n", err)
		return exitForSetup(err)
	}
	if s.specialistKey == nil {
		s.logger.LogAttrs(ctx, slog.LevelInfo, "no specialist key configured: MeasureReport strata by specialist are left out", slog.String("component", "serve"))
	}
	// And a cursor key, rather than paging links that fail on the other
	// replicas.
	if s.cursorKey, err = s.cfg.Server.CursorKeyBytes(); err != nil {
		fmt.Fprintf(stderr, "ipsfhir serve: %v\n", err)
		return exitFindings
	}
	if s.cursorKey == nil {
		// server.cursorKey, in words the log policy lets through.
		s.logger.LogAttrs(ctx, slog.LevelInfo, "no cursor key configured: FHIR search paging links work only on this replica until it restarts",
			slog.String("component", "serve"))
	}
	ln, err := net.Listen("tcp", s.cfg.Server.Listen)
	if err != nil {
		fmt.Fprintf(stderr, "ipsfhir serve: listen on server.listen: %v\n", err)
		return exitFindings
	}
	// Absolute URLs come from the configuration alone: server.publicUrl, or
	// the address listened on. A request's Host is the caller's to choose.
	base := s.cfg.Server.FHIRBase(ln.Addr())
	if s.cfg.Server.PublicURL == "" {
		// server.publicUrl, in words the log policy lets through.
		s.logger.LogAttrs(ctx, slog.LevelInfo, "no public URL configured: FHIR links name the listen address, never a request's host",
			slog.String("component", "serve"))
	}
	srv := &http.Server{Handler: s.handler(base), ReadHeaderTimeout: 10 * time.Second, ReadTimeout: time.Minute, WriteTimeout: writeTimeout, IdleTimeout: 2 * time.Minute}
	fmt.Fprintf(stdout, "ipsfhir serving on http://%s (API /api/v1, FHIR /fhir, admin /admin, /metrics, /healthz, /readyz)\n", ln.Addr())

	var wg sync.WaitGroup
	wg.Go(func() { s.runner.Run(ctx) })
	wg.Go(func() { s.followSettings(ctx) })
	wg.Go(func() { pruneAudit(ctx, s.store, s.cfg.Audit.Retention, time.Hour, s.logger) })
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()

	code := exitOK
	select {
	case <-ctx.Done():
	case err := <-serveErr:
		fmt.Fprintf(stderr, "ipsfhir serve: %v\n", err)
		code = exitFindings
	}
	shutdown, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdown); err != nil && !errors.Is(err, http.ErrServerClosed) {
		fmt.Fprintf(stderr, "ipsfhir serve: shutdown: %v\n", err)
	}
	wg.Wait()
	return code
}

// handler routes the service's endpoints; fhirBase is the absolute URL of
// /fhir (config.Server.FHIRBase).
func (s *system) handler(fhirBase string) http.Handler {
	keys := make([]api.Key, 0, len(s.cfg.APIKeys))
	for _, k := range s.cfg.APIKeys {
		keys = append(keys, api.Key{Name: k.Name, Role: api.Role(k.Role), SHA256: k.Sum(), PseudonymScope: k.PseudonymScope})
	}
	mux := http.NewServeMux()
	// The FHIR facade authenticates with the same keys; its /fhir/metadata
	// is public, as on any FHIR server.
	facade, err := fhirapi.New(fhirapi.Options{
		Store: s.store, Keys: keys, Mapping: mappings.Options{Program: s.cfg.Program.ID, ProgramName: s.cfg.Program.Name},
		AllowsEHR: s.cfg.Consent.AllowsEHR, AllowsHIE: s.cfg.Consent.AllowsHIE, Logger: s.logger,
		PseudonymKey: s.pseudonymKey, Reports: s.measureReports, ExportDir: s.cfg.Export.JobDir,
		BaseURL: fhirBase, CursorKey: s.cursorKey, CursorTTL: s.cfg.Server.CursorTTL,
		Audit:       s.store,
		CORSOrigins: s.cfg.Server.CORSOrigins,
	})
	if err == nil {
		if s.facade != nil {
			s.facade.Close()
		}
		s.facade = facade
		mux.Handle("/fhir/", facade)
	} else {
		s.logger.LogAttrs(context.Background(), slog.LevelError, "cannot build the FHIR facade", slog.String("component", "serve"))
	}
	// Resolving a conflict writes the chosen value into the IPS record and
	// queues it for the connections enabled now.
	resolve := func(ctx context.Context, id int64, resolution string) (syncer.Resolution, error) {
		return s.engine.ResolveConflict(ctx, id, resolution, s.enabledConnections())
	}
	admin := &api.Admin{Store: s.store, Plans: s.runner.Plans, ResolveConflict: resolve} // plans appear as connections connect
	if err == nil {
		admin.Exports = facade
	}
	records := api.New(api.Options{
		Store: s.store, Connections: s.enabledConnections, Keys: keys, Logger: s.logger,
		Admin:       admin,
		Metrics:     s.tel.MetricsHandler(),
		Audit:       s.store,
		CORSOrigins: s.cfg.Server.CORSOrigins,
	})
	// Liveness needs no key: orchestrators probe it, and it says nothing.
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	// Readiness needs no key either: it says whether the store answers and
	// how each connection stands, by name, state, time and reason token.
	mux.HandleFunc("GET /readyz", s.readyz)
	// The public keys EHRs verify our SMART client assertions with: public
	// by nature, and fetched by the EHR without credentials.
	if len(s.signingKeys) > 0 {
		if jwks, err := ehr.JWKS(s.signingKeys...); err == nil {
			mux.HandleFunc("GET /.well-known/jwks.json", func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				_, _ = w.Write(jwks)
			})
		} else {
			s.logger.LogAttrs(context.Background(), slog.LevelError, "cannot build the JWKS", slog.String("component", "serve"))
		}
	}
	// The administrator's console (docs/CONSOLE.md): same keys, same store.
	if con, err := console.New(console.Options{
		Store: s.store, Keys: keys, Logger: s.logger, Status: s.runner.Snapshot,
		Connections:     s.consoleConnections,
		Outcomes:        s.outcomesPage,
		Check:           s.consoleCheck,
		SetEnabled:      s.setConnection,
		ResolveConflict: resolve,
		Plans:           s.runner.Plans,
		SecureCookies:   strings.HasPrefix(s.cfg.Server.PublicURL, "https://"),
	}); err == nil {
		mux.Handle(console.Prefix, con)
	} else {
		s.logger.LogAttrs(context.Background(), slog.LevelError, "cannot build the console", slog.String("component", "serve"))
	}
	mux.Handle("/", records)
	return mux
}

// consoleConnections are the configured connections, for the console:
// enabled or not now, by the file or by an administrator's choice.
func (s *system) consoleConnections() []console.Connection {
	set := s.enabled.get()
	out := make([]console.Connection, 0, len(s.cfg.Connections))
	for _, c := range s.cfg.Connections {
		cn := console.Connection{Name: c.Name, Enabled: slices.Contains(set.names, c.Name), InFile: c.Enabled}
		if st, ok := set.settings[c.Name]; ok {
			cn.Setting = &st
		}
		out = append(out, cn)
	}
	return out
}

// consoleCheck runs the readiness check of a configured connection, as
// ipsfhir check --config FILE --connection NAME does, without write tests,
// for the console's connection page.
func (s *system) consoleCheck(ctx context.Context, name string) (*check.Report, error) {
	cn := s.cfg.Connection(name)
	if cn == nil {
		return nil, fmt.Errorf("%w: no such connection", check.ErrOptions)
	}
	a, err := checkAuth(cn.Auth)
	if err != nil {
		return nil, fmt.Errorf("%w: auth", check.ErrOptions)
	}
	return check.Run(ctx, check.Options{BaseURL: cn.FHIRBaseURL, CAFile: cn.CAFile, Plan: cn.PlanOptions(), Auth: a})
}

// outcomesPage is the program's own report page of the last complete
// quarter and the quarters before it, as report --html writes it, for the
// console's outcomes page.
func (s *system) outcomesPage(ctx context.Context) ([]byte, error) {
	now := time.Now()
	q, err := reportingQuarter("", now)
	if err != nil {
		return nil, err
	}
	clients, err := allClients(ctx, s.store)
	if err != nil {
		return nil, err
	}
	name := s.cfg.Program.Name
	if name == "" {
		name = s.cfg.Program.ID
	}
	opts := outcomes.Options{Program: s.cfg.Program.ID, Audience: outcomes.AudienceProgram, Threshold: s.cfg.Reports.Threshold, Protection: s.cfg.Reports.Protection, Consents: s.cfg.Consent.AllowsHIE, SpecialistKey: s.specialistKey, Date: now}
	page, _, err := trendPage(clients, q, opts, name, "the ipsfhir store of program "+s.cfg.Program.ID, true)
	return page, err
}

// writeTimeout bounds the writing of an answer (a bulk export file, the
// outcomes report).
const writeTimeout = 2 * time.Minute

// readyTimeout bounds the store query of /readyz: a store that takes
// longer is not ready to serve requests.
const readyTimeout = 2 * time.Second

// readiness is the body of /readyz.
type readiness struct {
	// Status is ready or unavailable, as the HTTP status says.
	Status string `json:"status"`
	// Store is ok or unavailable.
	Store       string                    `json:"store"`
	Connections []syncer.ConnectionStatus `json:"connections"`
}

// readyz answers 200 when the store answers a cheap query, 503 otherwise,
// with each connection's state in the body either way. A failing EHR shows
// there but does not make the service unready: the API, the FHIR facade and
// the other connections still work, and no restart or load balancer can
// bring the EHR back.
func (s *system) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
	defer cancel()
	body := readiness{Status: "ready", Store: "ok", Connections: s.runner.Snapshot()}
	code := http.StatusOK
	if _, err := s.store.OutboxDepth(ctx); err != nil {
		body.Status, body.Store, code = "unavailable", "unavailable", http.StatusServiceUnavailable
		s.logger.LogAttrs(ctx, slog.LevelWarn, "not ready: the store did not answer", slog.String("component", "serve"), slog.Any("error", err))
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(body)
}

// measureReports computes the program's quarterly MeasureReports for
// /fhir/MeasureReport: period is a quarter (2026Q3) or a date in it
// (2026-08-15, with an optional eq prefix); "" is the last complete quarter.
// Suppression uses reports.threshold, as a report for release; specialists
// are coded with reports.specialistKey, and without it not reported. An hie
// caller (forHIE) gets the reports for HIEs, of the clients whose consent
// allows HIE reporting; the program's own staff get the program's own.
func (s *system) measureReports(ctx context.Context, period string, forHIE bool) ([]json.RawMessage, error) {
	q, err := reportingQuarter(period, time.Now())
	if err != nil {
		return nil, err
	}
	clients, err := allClients(ctx, s.store)
	if err != nil {
		return nil, err
	}
	audience := outcomes.AudienceProgram
	if forHIE {
		audience = outcomes.AudienceHIE
	}
	reports, err := outcomes.Compute(clients, q, outcomes.Options{Program: s.cfg.Program.ID, Audience: audience, Threshold: s.cfg.Reports.Threshold, Protection: s.cfg.Reports.Protection, Consents: s.cfg.Consent.AllowsHIE, SpecialistKey: s.specialistKey, Date: time.Now()})
	if err != nil {
		return nil, err
	}
	out := make([]json.RawMessage, 0, len(reports))
	for _, r := range reports {
		b, err := r.JSON()
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, nil
}

// reportingQuarter reads a MeasureReport period parameter.
func reportingQuarter(period string, now time.Time) (outcomes.Quarter, error) {
	if period == "" {
		return outcomes.QuarterOf(ips.DateOf(now)).Add(-1), nil
	}
	if q, err := outcomes.ParseQuarter(period); err == nil {
		return q, nil
	}
	d, err := ips.ParseDate(strings.TrimPrefix(period, "eq"))
	if err != nil {
		return outcomes.Quarter{}, fhirapi.ErrBadPeriod
	}
	return outcomes.QuarterOf(d), nil
}

// pruneAudit deletes audit entries older than retention now and then every
// interval, until ctx ends. A failure is logged (its kind) and tried again
// at the next round.
func pruneAudit(ctx context.Context, a store.Auditor, retention, interval time.Duration, log *slog.Logger) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		n, err := a.PruneAudit(ctx, time.Now().Add(-retention))
		switch {
		case err != nil && ctx.Err() == nil:
			log.LogAttrs(ctx, slog.LevelError, "audit trail not pruned", slog.String("component", "serve"), slog.String("error_kind", "store"))
		case n > 0:
			log.LogAttrs(ctx, slog.LevelInfo, "audit trail pruned", slog.String("component", "serve"), slog.Int64("count", n))
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
