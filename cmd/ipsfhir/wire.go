package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"time"

	"github.com/ipsfhir/ipsfhir/adapter/config"
	"github.com/ipsfhir/ipsfhir/adapter/ehr"
	"github.com/ipsfhir/ipsfhir/adapter/fhirapi"
	"github.com/ipsfhir/ipsfhir/adapter/plan"
	"github.com/ipsfhir/ipsfhir/adapter/store"
	"github.com/ipsfhir/ipsfhir/adapter/store/postgres"
	"github.com/ipsfhir/ipsfhir/adapter/store/sqlite"
	"github.com/ipsfhir/ipsfhir/adapter/syncer"
	"github.com/ipsfhir/ipsfhir/adapter/telemetry"
	"github.com/ipsfhir/ipsfhir/ips"
	"github.com/ipsfhir/ipsfhir/mappings"
)

// system is the running adapter, wired from one config. All wiring happens
// in wire, explicitly, so what depends on what can be read in one place.
type system struct {
	cfg     *config.Config
	logger  *slog.Logger
	tel     *telemetry.Telemetry
	store   store.Store
	engine  *syncer.Engine
	metrics *telemetry.SyncMetrics
	// connectors connect the connections enabled when the system was
	// wired, one each (sync); runner runs every configured connection's
	// connector while it is enabled (serve, and sync without --once), and
	// enabled says which are. Neither touches an EHR until the runner
	// starts.
	connectors []syncer.Connector
	runner     *syncer.Runner
	enabled    enabledState
	// signingKeys are the SMART Backend Services keys of the connections;
	// their public halves are served at /.well-known/jwks.json.
	signingKeys []ehr.SigningKey
	// facade is the /fhir handler, once handler built it; its export jobs
	// stop on close.
	facade *fhirapi.Server
	// pseudonymKey is the export's pseudonymization key (export.pseudonymKey),
	// read by serve; nil when none is configured.
	pseudonymKey []byte
	// specialistKey is the key of the reports' specialist codes
	// (reports.specialistKey), read by serve; nil when none is configured.
	specialistKey []byte
	// cursorKey seals the facade's search paging links (server.cursorKey),
	// read by serve; nil when none is configured.
	cursorKey []byte
}

// wire builds the system a config describes. With connections, it also
// builds the EHR client of each enabled connection (reading its
// credentials: a connection whose credentials or CA file cannot be read is
// a deployment mistake and fails wire) and queues the caseload for
// connections enabled since the last start. No EHR is contacted: each
// connection connects on its own once the runner starts, so an EHR that is
// down cannot stop the others or the service.
func wire(ctx context.Context, cfg *config.Config, logOut io.Writer, connections bool) (*system, error) {
	s := &system{cfg: cfg, logger: telemetry.NewLogger(logOut, cfg.Telemetry.SlogLevel(), "text")}
	// Where the file leaves the collector or the service name out, Setup
	// takes them from the standard OTEL_* variables.
	tel, err := telemetry.Setup(ctx, telemetry.Config{ServiceName: cfg.Telemetry.ServiceName, OTLPEndpoint: cfg.Telemetry.OTLPEndpoint})
	if err != nil {
		return nil, err // "telemetry: …" already
	}
	s.tel = tel
	st, err := storeFor(ctx, cfg.Store)
	if err != nil {
		s.close(ctx)
		return nil, err
	}
	s.store = st
	s.engine = &syncer.Engine{
		Store: st, Owner: workerName(), Lease: cfg.Sync.LeaseFor, MaxAttempts: cfg.Sync.MaxAttempts, Overlap: cfg.Sync.Overlap, Logger: s.logger,
		SharedText: sharedText(cfg),
	}
	sm, err := telemetry.NewSyncMetrics(tel.MeterProvider(), telemetry.SyncObservers{
		OutboxDepth: st.OutboxDepth,
		OldestPending: func(ctx context.Context) (map[string]time.Duration, error) {
			oldest, err := st.OldestPending(ctx)
			if err != nil {
				return nil, err
			}
			lag := make(map[string]time.Duration, len(oldest))
			for c, at := range oldest {
				lag[c] = time.Since(at)
			}
			return lag, nil
		},
		InitialLoads: func(ctx context.Context) (map[string]telemetry.InitialLoad, error) {
			loads, err := initialLoads(ctx, st, s.enabledConnections())
			out := make(map[string]telemetry.InitialLoad, len(loads))
			for c, p := range loads {
				out[c] = telemetry.InitialLoad{Done: p.Done, Total: p.Total, Remaining: p.Remaining, Estimated: p.Estimated}
			}
			return out, err
		},
	})
	if err != nil {
		s.close(ctx)
		return nil, fmt.Errorf("telemetry: %w", err)
	}
	s.metrics = sm
	s.engine.Metrics = sm
	s.engine.Tracer = tel.TracerProvider().Tracer("github.com/ipsfhir/ipsfhir/adapter/syncer")
	set, err := readEnabled(ctx, cfg, st)
	if err != nil {
		s.close(ctx)
		return nil, err
	}
	s.enabled.set = set
	s.runner = syncer.NewRunner(s.engine, s.schedule())
	if !connections {
		return s, nil
	}
	var all []syncer.Connector
	for _, cn := range cfg.Connections {
		c, err := s.connector(cn)
		if err != nil {
			if slices.Contains(set.names, cn.Name) {
				s.close(ctx)
				return nil, fmt.Errorf("connection %s: %w", cn.Name, err)
			}
			// A disabled connection's credentials are read when it is
			// enabled from the console; until they can be, it fails to
			// connect with reason config.
			c = syncer.Connector{Name: cn.Name, Connect: func(context.Context) (*syncer.Connection, error) {
				return nil, syncer.WithReason("config", fmt.Errorf("connection %s: %w", cn.Name, err))
			}}
		}
		all = append(all, c)
		if slices.Contains(set.names, cn.Name) {
			s.connectors = append(s.connectors, c)
		}
	}
	s.runner = syncer.NewRunner(s.engine, s.schedule(), all...)
	s.runner.SetEnabled(set.names)
	// An EHR enabled after the program started, or enabled again after a
	// pause, gets the whole caseload, not only what changes from now on.
	seeded, err := st.SeedConnections(ctx, set.names)
	if err != nil {
		s.close(ctx)
		return nil, err
	}
	for _, name := range set.names {
		if n := seeded[name]; n > 0 {
			s.logger.InfoContext(ctx, "connection enabled: every client queued for it", "connection", name, "clients", n)
		}
	}
	return s, nil
}

func (s *system) close(ctx context.Context) {
	if s.facade != nil {
		s.facade.Close() // before the store its export jobs read
	}
	if s.metrics != nil {
		_ = s.metrics.Close() // before the store its observer reads
	}
	if s.store != nil {
		s.store.Close()
	}
	if s.tel != nil {
		_ = s.tel.Shutdown(ctx)
	}
}

// storeFor opens the store a config names.
func storeFor(ctx context.Context, c config.Store) (store.Store, error) {
	dsn, err := c.DSN.Resolve()
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	switch c.Driver {
	case config.DriverPostgres:
		return postgres.Open(ctx, dsn)
	case config.DriverSQLite, "":
		return sqlite.Open(ctx, dsn)
	}
	return nil, fmt.Errorf("store: unknown driver %q", c.Driver)
}

// schedule is the runner's schedule the config gives.
func (s *system) schedule() syncer.Schedule {
	return syncer.Schedule{PushInterval: s.cfg.Sync.PushInterval, PollInterval: s.cfg.Sync.PollInterval, Workers: s.cfg.Sync.Workers}
}

// connector builds a connection's EHR client now, and returns how to
// connect it later: read the EHR's CapabilityStatement and derive the
// connection's sync plan from it.
func (s *system) connector(cn config.Connection) (syncer.Connector, error) {
	auth, key, err := ehrAuth(cn.Auth)
	if err != nil {
		return syncer.Connector{}, err
	}
	if key.Key != nil {
		s.signingKeys = append(s.signingKeys, key)
	}
	client, err := ehr.New(ehr.Options{
		BaseURL: cn.FHIRBaseURL, Connection: cn.Name, Auth: auth, CAFile: cn.CAFile, Timeout: cn.Timeout, Logger: s.logger,
		TracerProvider: s.tel.TracerProvider(), MeterProvider: s.tel.MeterProvider(),
		MaxConcurrency: cn.MaxConcurrency, RequestsPerSecond: cn.RequestsPerSecond,
		// A push throttled for longer than half its lease would lose the
		// lease to another worker, which would send the same writes.
		MaxThrottleWait: min(maxThrottleWait, s.cfg.Sync.LeaseFor/2),
	})
	if err != nil {
		return syncer.Connector{}, err
	}
	cfg := s.cfg
	connect := func(ctx context.Context) (*syncer.Connection, error) {
		meta, err := client.Metadata(ctx)
		if err != nil {
			return nil, fmt.Errorf("read the EHR's CapabilityStatement: %w", err)
		}
		p, err := plan.Build(meta, cn.PlanOptions())
		if err != nil {
			// The statement does not allow what the config asks (an
			// override, say): the EHR must change, or the config.
			return nil, syncer.WithReason("plan", err)
		}
		prapare := cn.PRAPARE
		if prapare && p.SiteCodedObservations {
			// The PRAPARE answer has no site code of its own: an EHR that
			// takes only site-coded Observations would refuse it.
			prapare = false
			s.logger.WarnContext(ctx, "prapare is ignored: this EHR takes Observation writes only under site-configured codes", "connection", cn.Name)
		}
		w := cn.Winners
		return &syncer.Connection{
			Name: cn.Name, Plan: p, EHR: client,
			Mapping:        mappings.Options{Program: cfg.Program.ID, ProgramName: cfg.Program.Name, PRAPARE: prapare, SiteCodes: siteCodes(&cn)},
			ConsentDefault: cfg.Consent.EHR,
			Winners: syncer.Winners{Status: string(w.GoalStatus), Achievement: string(w.GoalAchievement), Notes: string(w.GoalNotes),
				Description: string(w.GoalDescription), Target: string(w.GoalTarget)},
			Referrals:     cn.ReferralMatch(),
			PatientSystem: cn.PatientSystem,
			Retry:         syncer.RetrySchedule(cn.Retry),
			TreatmentPlan: syncer.TreatmentPlanSearch{Categories: cn.TreatmentPlan.TreatmentPlanCategories(), Choose: cn.TreatmentPlan.Choose, Refresh: cn.TreatmentPlan.Refresh},
			// A create held by a slow EHR can land well after the
			// client's timeout; four timeouts is the wait before the
			// same record is created again.
			CreateSettle: 4 * cn.Timeout,
			// As many workers as requests may be in flight.
			Workers: cn.MaxConcurrency,
		}, nil
	}
	return syncer.Connector{Name: cn.Name, Connect: connect}, nil
}

// maxThrottleWait is the longest an EHR call keeps waiting out 429s
// (ehr.Options.MaxThrottleWait), unless half of sync.leaseFor is shorter.
const maxThrottleWait = 10 * time.Minute

// siteCodes maps a connection's site codes to the mapping's record kinds.
func siteCodes(cn *config.Connection) map[mappings.Kind]ips.Coding {
	kinds := map[plan.Concept]mappings.Kind{plan.JobOutcome: mappings.KindJob, plan.EmploymentStatus: mappings.KindEmploymentStatus}
	var out map[mappings.Kind]ips.Coding
	for c, coding := range cn.SiteCodings() {
		if k, ok := kinds[c]; ok {
			if out == nil {
				out = map[mappings.Kind]ips.Coding{}
			}
			out[k] = coding
		}
	}
	return out
}

// ehrAuth builds a connection's authentication, and returns the signing key
// when it is SMART Backend Services.
func ehrAuth(a config.Auth) (ehr.Auth, ehr.SigningKey, error) {
	switch a.Type {
	case config.AuthNone, "":
		return nil, ehr.SigningKey{}, nil
	case config.AuthBearer:
		tok, err := a.Token.Resolve()
		if err != nil {
			return nil, ehr.SigningKey{}, err
		}
		return ehr.Bearer(tok), ehr.SigningKey{}, nil
	case config.AuthSMARTBackend:
		var key ehr.SigningKey
		key.ID = a.KeyID
		var err error
		if a.PrivateKey.File != "" {
			key.Key, err = ehr.LoadPrivateKey(a.PrivateKey.File)
		} else {
			var pemText string
			if pemText, err = a.PrivateKey.Resolve(); err == nil {
				key.Key, err = ehr.ParsePrivateKey([]byte(pemText))
			}
		}
		if err != nil {
			return nil, ehr.SigningKey{}, err
		}
		sb, err := ehr.NewSMARTBackend(ehr.SMARTOptions{ClientID: a.ClientID, Key: key, TokenURL: a.TokenURL, Scopes: a.Scopes})
		return sb, key, err
	}
	return nil, ehr.SigningKey{}, errors.New("unknown auth type")
}

// workerName names this process's outbox leases: unique per running worker.
func workerName() string {
	host, _ := os.Hostname()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b))
}

// sharedText names the connections whose clinicians' goal notes go to
// every connection's EHR (clinicalText: share).
func sharedText(cfg *config.Config) []string {
	var out []string
	for _, cn := range cfg.Connections {
		if cn.ClinicalText == config.ClinicalTextShare {
			out = append(out, cn.Name)
		}
	}
	return out
}

// initialLoads is the initial load of each of connections that has one
// recorded (see store.Store.LoadProgress), with what it read before a
// store error.
func initialLoads(ctx context.Context, st store.Store, connections []string) (map[string]store.LoadProgress, error) {
	out := make(map[string]store.LoadProgress, len(connections))
	for _, c := range connections {
		p, err := st.LoadProgress(ctx, c)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return out, err
		}
		out[c] = p
	}
	return out, nil
}
