package telemetry

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// instrumentationName is the meter's scope. The sync engine's instruments
// are defined here, so the scope is this package, not the recorder's.
const instrumentationName = "github.com/ipsfhir/ipsfhir/adapter/telemetry"

// InvalidLabel replaces a metric attribute value that fails its rule.
// Dropping the value would merge series silently; passing it on could put
// patient data in a time series that is kept for months.
const InvalidLabel = "invalid"

// Blame says whose fault a failure was, so that an operator knows whom to
// call: the adapter's caller (client: bad input, bad config), the adapter
// itself (server), or a system it depends on (external: the EHR, the
// database, the network). Successes carry BlameNone.
type Blame string

const (
	BlameNone     Blame = "none"
	BlameClient   Blame = "client"
	BlameServer   Blame = "server"
	BlameExternal Blame = "external"
)

// Outcome is what happened to one resource in a sync run.
type Outcome string

const (
	OutcomeWritten   Outcome = "written"
	OutcomeUnchanged Outcome = "unchanged"
	OutcomeFailed    Outcome = "failed"
	OutcomeConflict  Outcome = "conflict"
	OutcomeSkipped   Outcome = "skipped"
)

// Direction is push (IPS store to EHR) or pull (EHR to IPS store).
type Direction string

const (
	DirectionPush Direction = "push"
	DirectionPull Direction = "pull"
)

// Result is how a sync run ended.
type Result string

const (
	ResultOK    Result = "ok"
	ResultError Result = "error"
)

// Attribute keys shared by every metric, so that dashboards can join
// across instruments.
const (
	KeyConnection   = attribute.Key("connection")
	KeyResourceType = attribute.Key("resource_type")
	KeyStatusClass  = attribute.Key("status_class")
	KeyBlame        = attribute.Key("blame")
	KeyOutcome      = attribute.Key("outcome")
	KeyDirection    = attribute.Key("direction")
	KeyResult       = attribute.Key("result")
)

// MetricAttrs builds the standard attribute set for a call to an EHR:
// connection name, resource type, HTTP status class (0 means no response:
// "none") and blame. Every value is checked against the logging policy
// and bounded; one that fails becomes InvalidLabel.
func MetricAttrs(connection, resourceType string, status int, blame Blame) attribute.Set {
	return attribute.NewSet(
		KeyConnection.String(ConnectionLabel(connection)),
		KeyResourceType.String(ResourceTypeLabel(resourceType)),
		KeyStatusClass.String(StatusClass(status)),
		KeyBlame.String(blameLabel(blame)),
	)
}

// ConnectionLabel returns name if it is a safe token (a connection's
// configured name, like "epic-sandbox"), otherwise InvalidLabel.
func ConnectionLabel(name string) string {
	if !IsToken(name) {
		return InvalidLabel
	}
	return name
}

// ResourceTypeLabel returns a FHIR R4 resource type name as is, "none"
// for the empty string (a call not about one resource type, like
// /metadata), and InvalidLabel for anything else.
func ResourceTypeLabel(resourceType string) string {
	switch {
	case resourceType == "":
		return "none"
	case IsResourceType(resourceType):
		return resourceType
	}
	return InvalidLabel
}

// StatusClass maps an HTTP status to "1xx".."5xx", 0 (no response) to
// "none", and anything else to InvalidLabel: five values instead of
// dozens of codes keep the series count fixed.
func StatusClass(status int) string {
	switch {
	case status == 0:
		return "none"
	case status >= 100 && status <= 599:
		return fmt.Sprintf("%dxx", status/100)
	}
	return InvalidLabel
}

func blameLabel(b Blame) string {
	switch b {
	case BlameNone, BlameClient, BlameServer, BlameExternal:
		return string(b)
	}
	return InvalidLabel
}

func outcomeLabel(o Outcome) string {
	switch o {
	case OutcomeWritten, OutcomeUnchanged, OutcomeFailed, OutcomeConflict, OutcomeSkipped:
		return string(o)
	}
	return InvalidLabel
}

func directionLabel(d Direction) string {
	switch d {
	case DirectionPush, DirectionPull:
		return string(d)
	}
	return InvalidLabel
}

func resultLabel(r Result) string {
	switch r {
	case ResultOK, ResultError:
		return string(r)
	}
	return InvalidLabel
}

// Instrument names, so that alerts and dashboards can refer to them.
const (
	MetricOutboxDepth   = "ipsfhir.outbox.depth"
	MetricSyncLag       = "ipsfhir.sync.lag"
	MetricSyncResources = "ipsfhir.sync.resources"
	MetricSyncRuns      = "ipsfhir.sync.runs"
	// The initial load of each connection (Prometheus:
	// ipsfhir_initial_load_done, ipsfhir_initial_load_total,
	// ipsfhir_initial_load_remaining_seconds).
	MetricInitialLoadDone      = "ipsfhir.initial_load.done"
	MetricInitialLoadTotal     = "ipsfhir.initial_load.total"
	MetricInitialLoadRemaining = "ipsfhir.initial_load.remaining"
)

// InitialLoad is how far one connection's initial load has come: clients
// done of Total, and the estimated time left, when there is an estimate.
type InitialLoad struct {
	Done, Total int
	Remaining   time.Duration
	Estimated   bool
}

// SyncObservers are read whenever metrics are collected (a /metrics
// scrape, an OTLP export). They are asked rather than pushed to, because a
// stuck sync engine stops pushing exactly when its backlog matters. Keys
// are connection names; report 0 for a connection with nothing pending so
// that its series does not vanish. Either may be nil.
type SyncObservers struct {
	// OutboxDepth returns the number of outbox rows not yet delivered,
	// per connection.
	OutboxDepth func(ctx context.Context) (map[string]int, error)
	// OldestPending returns the age of the oldest undelivered change, per
	// connection.
	OldestPending func(ctx context.Context) (map[string]time.Duration, error)
	// InitialLoads returns each connection's initial load, for those that
	// have one recorded. The remaining-time gauge is left out while a load
	// has no estimate (nothing done yet), rather than reported as 0.
	InitialLoads func(ctx context.Context) (map[string]InitialLoad, error)
}

// SyncMetrics are the sync engine's instruments. Create one per process
// with NewSyncMetrics and share it.
type SyncMetrics struct {
	resources metric.Int64Counter
	runs      metric.Int64Counter
	reg       metric.Registration
}

// NewSyncMetrics creates the sync instruments on mp and registers obs.
// Call Close to unregister the observers, e.g. before the store they read
// is closed.
func NewSyncMetrics(mp metric.MeterProvider, obs SyncObservers) (*SyncMetrics, error) {
	meter := mp.Meter(instrumentationName)
	depth, err := meter.Int64ObservableGauge(MetricOutboxDepth,
		metric.WithDescription("Outbox rows not yet delivered to the EHR, per connection."),
		metric.WithUnit("{change}"))
	if err != nil {
		return nil, fmt.Errorf("telemetry: %s: %w", MetricOutboxDepth, err)
	}
	lag, err := meter.Float64ObservableGauge(MetricSyncLag,
		metric.WithDescription("Seconds since the oldest change still pending for the EHR was made, per connection."),
		metric.WithUnit("s"))
	if err != nil {
		return nil, fmt.Errorf("telemetry: %s: %w", MetricSyncLag, err)
	}
	resources, err := meter.Int64Counter(MetricSyncResources,
		metric.WithDescription("Resources handled by sync, by connection, resource type, outcome (written, unchanged, failed, conflict, skipped) and blame."),
		metric.WithUnit("{resource}"))
	if err != nil {
		return nil, fmt.Errorf("telemetry: %s: %w", MetricSyncResources, err)
	}
	runs, err := meter.Int64Counter(MetricSyncRuns,
		metric.WithDescription("Sync runs, by connection, direction (push, pull), result (ok, error) and blame."),
		metric.WithUnit("{run}"))
	if err != nil {
		return nil, fmt.Errorf("telemetry: %s: %w", MetricSyncRuns, err)
	}
	loadDone, err := meter.Int64ObservableGauge(MetricInitialLoadDone,
		metric.WithDescription("Clients of the connection's initial load pushed (or gone to dead letters), per connection."),
		metric.WithUnit("{client}"))
	if err != nil {
		return nil, fmt.Errorf("telemetry: %s: %w", MetricInitialLoadDone, err)
	}
	loadTotal, err := meter.Int64ObservableGauge(MetricInitialLoadTotal,
		metric.WithDescription("Clients queued by the connection's initial load, per connection."),
		metric.WithUnit("{client}"))
	if err != nil {
		return nil, fmt.Errorf("telemetry: %s: %w", MetricInitialLoadTotal, err)
	}
	loadLeft, err := meter.Float64ObservableGauge(MetricInitialLoadRemaining,
		metric.WithDescription("Estimated seconds until the connection's initial load is done, at its rate so far; 0 once done, absent before anything is."),
		metric.WithUnit("s"))
	if err != nil {
		return nil, fmt.Errorf("telemetry: %s: %w", MetricInitialLoadRemaining, err)
	}
	m := &SyncMetrics{resources: resources, runs: runs}
	if obs.OutboxDepth == nil && obs.OldestPending == nil && obs.InitialLoads == nil {
		return m, nil
	}
	m.reg, err = meter.RegisterCallback(func(ctx context.Context, o metric.Observer) error {
		var errs []error
		if obs.OutboxDepth != nil {
			counts, err := obs.OutboxDepth(ctx)
			if err != nil {
				errs = append(errs, observerError(MetricOutboxDepth, err))
			}
			for conn, n := range counts {
				o.ObserveInt64(depth, int64(n), metric.WithAttributes(KeyConnection.String(ConnectionLabel(conn))))
			}
		}
		if obs.OldestPending != nil {
			ages, err := obs.OldestPending(ctx)
			if err != nil {
				errs = append(errs, observerError(MetricSyncLag, err))
			}
			for conn, age := range ages {
				o.ObserveFloat64(lag, age.Seconds(), metric.WithAttributes(KeyConnection.String(ConnectionLabel(conn))))
			}
		}
		if obs.InitialLoads != nil {
			loads, err := obs.InitialLoads(ctx)
			if err != nil {
				errs = append(errs, observerError(MetricInitialLoadDone, err))
			}
			for conn, l := range loads {
				attrs := metric.WithAttributes(KeyConnection.String(ConnectionLabel(conn)))
				o.ObserveInt64(loadDone, int64(l.Done), attrs)
				o.ObserveInt64(loadTotal, int64(l.Total), attrs)
				if l.Estimated {
					o.ObserveFloat64(loadLeft, l.Remaining.Seconds(), attrs)
				}
			}
		}
		return errors.Join(errs...)
	}, depth, lag, loadDone, loadTotal, loadLeft)
	if err != nil {
		return nil, fmt.Errorf("telemetry: register sync observers: %w", err)
	}
	return m, nil
}

// observerError keeps only the summary of an observer's error: the SDK
// hands callback errors to otel's global error handler, which prints
// them outside this package's logger.
func observerError(instrument string, err error) error {
	return fmt.Errorf("telemetry: observing %s: %s", instrument, ErrorSummary(err))
}

// RecordResource counts one resource handled by a sync run.
func (m *SyncMetrics) RecordResource(ctx context.Context, connection, resourceType string, outcome Outcome, blame Blame) {
	m.resources.Add(ctx, 1, metric.WithAttributeSet(attribute.NewSet(
		KeyConnection.String(ConnectionLabel(connection)),
		KeyResourceType.String(ResourceTypeLabel(resourceType)),
		KeyOutcome.String(outcomeLabel(outcome)),
		KeyBlame.String(blameLabel(blame)),
	)))
}

// RecordRun counts one finished sync run.
func (m *SyncMetrics) RecordRun(ctx context.Context, connection string, direction Direction, result Result, blame Blame) {
	m.runs.Add(ctx, 1, metric.WithAttributeSet(attribute.NewSet(
		KeyConnection.String(ConnectionLabel(connection)),
		KeyDirection.String(directionLabel(direction)),
		KeyResult.String(resultLabel(result)),
		KeyBlame.String(blameLabel(blame)),
	)))
}

// Close unregisters the observers. The counters keep working.
func (m *SyncMetrics) Close() error {
	if m.reg == nil {
		return nil
	}
	if err := m.reg.Unregister(); err != nil {
		return fmt.Errorf("telemetry: unregister sync observers: %w", err)
	}
	return nil
}
