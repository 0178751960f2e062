package faultsuite

import (
	"fmt"
	"io"
	"time"

	"github.com/ipsfhir/ipsfhir/conformance/faultproxy"
)

// Scenario names one of the suite's set-ups: a store, a number of serve
// replicas sharing it, and how the peer behaves.
type Scenario string

// The scenarios.
const (
	// ScenarioSQLite is one replica on an SQLite file, the peer in its own
	// mode (conditional updates, transactions, versioned updates).
	ScenarioSQLite Scenario = "sqlite"
	// ScenarioPG2 is two replicas on one PostgreSQL schema.
	ScenarioPG2 Scenario = "pg2"
	// ScenarioPG4 is four replicas on one PostgreSQL schema.
	ScenarioPG4 Scenario = "pg4"
	// ScenarioEpic is one replica on SQLite against the peer acting out
	// Epic's published CapabilityStatement: Goal and CarePlan read-only
	// (so goals travel in the chart note), Observation and
	// DocumentReference written by plain POST (no conditional create,
	// no versions), so a lost reply to a create is the case that matters.
	ScenarioEpic Scenario = "epic"
	// ScenarioNoConditionalCreate is one replica on SQLite against the
	// peer in its own mode but without conditional create of Goal (peer
	// --no-conditional-create Goal): goals are updated conditionally with
	// If-Match, so a goal's first write is a conditional update without
	// a version, sent once and not repeated while it may still land; a
	// held one applied late must not undo a clinician's edit.
	ScenarioNoConditionalCreate Scenario = "no-conditional-create"
)

// Scenarios lists every scenario, in the order the docs describe them.
func Scenarios() []Scenario {
	return []Scenario{ScenarioSQLite, ScenarioPG2, ScenarioPG4, ScenarioEpic, ScenarioNoConditionalCreate}
}

// spec is what a scenario means.
type spec struct {
	replicas int
	postgres bool
	epic     bool
	// peerArgs are extra flags for the peer.
	peerArgs []string
}

func (s Scenario) spec() (spec, error) {
	switch s {
	case ScenarioSQLite:
		return spec{replicas: 1}, nil
	case ScenarioPG2:
		return spec{replicas: 2, postgres: true}, nil
	case ScenarioPG4:
		return spec{replicas: 4, postgres: true}, nil
	case ScenarioEpic:
		return spec{replicas: 1, epic: true}, nil
	case ScenarioNoConditionalCreate:
		return spec{replicas: 1, peerArgs: []string{"--no-conditional-create", "Goal"}}, nil
	}
	return spec{}, fmt.Errorf("faultsuite: unknown scenario %q (want sqlite, pg2, pg4, epic or no-conditional-create)", string(s))
}

// NeedsPostgres reports whether the scenario runs on PostgreSQL.
func (s Scenario) NeedsPostgres() bool { sp, _ := s.spec(); return sp.postgres }

// Replicas is the number of serve processes the scenario runs.
func (s Scenario) Replicas() int { sp, _ := s.spec(); return sp.replicas }

// EpicCapability is the Epic CapabilityStatement the epic scenario
// enforces, relative to the module root.
const EpicCapability = "testdata/ehr-capabilities/epic-r4-sandbox-2026-07.json"

// Options configure Run. Zero values take the defaults given.
type Options struct {
	// Scenario is required.
	Scenario Scenario
	// Clients is the caseload's size (ips/synth). Default 200.
	Clients int
	// Chaos is how long faults, kills and edits run. Default 25 s.
	Chaos time.Duration
	// Seed seeds the caseload, the fault proxy and every random choice
	// the harness makes. The same seed gives the same caseload and the
	// same fault draws per request number; process timing still varies.
	Seed uint64
	// Rate is the fault proxy's fault rate during chaos, 0 to 1. Default
	// 0.1; set NoFaults for a run without faults.
	Rate     float64
	NoFaults bool
	// Kinds are the fault kinds drawn from. Empty means all of them: 500,
	// 502, 503, 429 with Retry-After, hangs past the client's timeout,
	// resets and lost replies.
	Kinds []faultproxy.Kind
	// EHRTimeout is the connection's per-attempt request timeout
	// (`timeout` in the replicas' configuration). Default 10 s: a held
	// plain create may land until 4 times it has passed (CreateSettle), so
	// with the product's 30 s the scenarios that create with plain POSTs
	// could not drain in less than two minutes, close to DrainTimeout.
	EHRTimeout time.Duration
	// Hang is how long a hung request is held. Default EHRTimeout + 5 s,
	// past the adapter's per-attempt timeout.
	Hang time.Duration
	// KillEvery is the mean time between SIGKILLs of a random replica
	// (each kill is drawn from 0.5 to 1.5 times it). Default 5 s;
	// negative: no kills.
	KillEvery time.Duration
	// IPSEditsPerSecond and ClinicianEditsPerSecond pace the edits of the
	// two sides during chaos. Defaults 3 and 1.5; negative: none.
	IPSEditsPerSecond       float64
	ClinicianEditsPerSecond float64
	// LeaseFor is the replicas' sync.leaseFor. Default 60 s: twice the
	// adapter's 30 s per-attempt timeout, so one hung request does not
	// let a second worker take the same client over while the first is
	// still writing; short enough that a killed replica's items are taken
	// over within the drain.
	LeaseFor time.Duration
	// DrainTimeout bounds the wait for the outbox to drain once faults
	// are off and the replicas restarted. Default 4 min.
	DrainTimeout time.Duration
	// PostgresDSN is the server the PostgreSQL scenarios create a schema
	// in (dropped at the end). Default $IPSFHIR_TEST_POSTGRES_DSN.
	PostgresDSN string
	// Binary is a built ipsfhir to run; empty builds ./cmd/ipsfhir.
	Binary string
	// ModuleRoot is the repository root; empty finds it (ModuleRoot).
	ModuleRoot string
	// Dir is the working directory (store file, configurations, the
	// replicas' logs). Empty: a temporary directory, removed at the end.
	Dir string
	// Log receives progress lines (counts and phases, no patient data).
	// Nil discards them.
	Log io.Writer
	// RequestLog, with Dir set, keeps the fault proxy's record of every
	// request (faultproxy.RequestLog) in Dir/proxy-requests.jsonl: paths,
	// queries and If-Match headers of the synthetic caseload, resources
	// as tokens (a goal's status, description token and note count).
	RequestLog bool
	// DebugLog runs the replicas at telemetry.logLevel debug (each EHR
	// attempt is logged, with its method, type, status and duration).
	DebugLog bool

	// soak, when set, replaces the chaos phase by Soak's steady phase.
	soak *SoakOptions
}

func (o Options) withDefaults() Options {
	if o.Clients == 0 {
		o.Clients = 200
	}
	if o.Chaos == 0 {
		o.Chaos = 25 * time.Second
	}
	if o.Rate == 0 && !o.NoFaults {
		o.Rate = 0.1
	}
	if o.NoFaults {
		o.Rate = 0
	}
	if o.EHRTimeout == 0 {
		o.EHRTimeout = 10 * time.Second
	}
	if o.Hang == 0 {
		o.Hang = o.EHRTimeout + 5*time.Second
	}
	if o.KillEvery == 0 {
		o.KillEvery = 5 * time.Second
	}
	if o.IPSEditsPerSecond == 0 {
		o.IPSEditsPerSecond = 3
	}
	if o.ClinicianEditsPerSecond == 0 {
		o.ClinicianEditsPerSecond = 1.5
	}
	if o.DrainTimeout == 0 {
		o.DrainTimeout = 4 * time.Minute
	}
	if o.LeaseFor == 0 {
		o.LeaseFor = 60 * time.Second
	}
	if o.PostgresDSN == "" {
		o.PostgresDSN = PostgresServerDSN()
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	return o
}
