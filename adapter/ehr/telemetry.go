package ehr

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

// instrumentationName names this package's tracer and meter.
const instrumentationName = "github.com/ipsfhir/ipsfhir/adapter/ehr"

// Metric names and attribute keys. Attribute values are bounded and free of
// patient data: a connection name from config, the HTTP method, a resource
// type, a status class and a blame.
const (
	MetricDuration = "ipsfhir.ehr.request.duration"
	MetricRequests = "ipsfhir.ehr.requests"
	// MetricRateLimit is the rate a connection's requests are held to now
	// (a gauge, per second; 0 when unlimited): the configured
	// requestsPerSecond, or less while the EHR throttles it.
	MetricRateLimit = "ipsfhir.ehr.rate_limit"

	attrConnection   = "connection"
	attrMethod       = "method"
	attrResourceType = "resource_type"
	attrStatusClass  = "status_class"
	attrBlame        = "blame"
)

// Blame values, after google/exposure-notifications-server: who has to act.
const (
	BlameNone     = "none"     // success, or the caller cancelled
	BlameClient   = "client"   // a 4xx we caused: invalid resource, bad credentials, stale version
	BlameExternal = "external" // the EHR: 5xx, 408/429, timeouts, connection failures, TLS
	BlameServer   = "server"   // ipsfhir itself: a request this package refused to build
)

type telemetry struct {
	tracer   trace.Tracer
	duration metric.Float64Histogram
	requests metric.Int64Counter
}

func newTelemetry(tp trace.TracerProvider, mp metric.MeterProvider) (telemetry, error) {
	m := mp.Meter(instrumentationName)
	dur, err := m.Float64Histogram(MetricDuration,
		metric.WithUnit("s"),
		metric.WithDescription("Duration of EHR FHIR calls, retries and backoff included."),
		metric.WithExplicitBucketBoundaries(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
	)
	if err != nil {
		return telemetry{}, err
	}
	req, err := m.Int64Counter(MetricRequests,
		metric.WithUnit("{request}"),
		metric.WithDescription("EHR FHIR calls by final outcome (a call's retries count once)."),
	)
	if err != nil {
		return telemetry{}, err
	}
	return telemetry{tracer: tp.Tracer(instrumentationName), duration: dur, requests: req}, nil
}

// observeRate registers the gauge of c's effective request rate.
func (c *Client) observeRate(mp metric.MeterProvider) error {
	m := mp.Meter(instrumentationName)
	g, err := m.Float64ObservableGauge(MetricRateLimit,
		metric.WithUnit("{request}/s"),
		metric.WithDescription("The request rate an EHR connection is held to now: its configured rate, or less while the EHR throttles it; 0 when unlimited."),
	)
	if err != nil {
		return err
	}
	set := metric.WithAttributeSet(attribute.NewSet(attribute.String(attrConnection, c.conn)))
	_, err = m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		o.ObserveFloat64(g, c.lim.rate(), set)
		return nil
	}, g)
	return err
}

// start opens the span of one call. Its name and attributes carry the
// operation and resource type, never the URL (ids and search values are
// patient data).
func (t telemetry) start(ctx context.Context, conn, op, method, resourceType string) (context.Context, trace.Span) {
	return t.tracer.Start(ctx, "ehr "+op,
		trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(
			attribute.String("http.request.method", method),
			attribute.String("fhir.resource_type", resourceType),
			attribute.String("ipsfhir.ehr.connection", conn),
		))
}

// finish ends the span, records the metrics and logs the call.
func (c *Client) finish(ctx context.Context, span trace.Span, start time.Time, cs *callState, resp *Response, err error) {
	elapsed := time.Since(start)
	var e *Error
	status := 0
	if resp != nil {
		status = resp.Status
	} else if errors.As(err, &e) {
		status = e.Status
	}
	class, blame := statusClass(status, err), blameOf(status, err, cs)

	if status != 0 {
		span.SetAttributes(attribute.Int("http.response.status_code", status))
	}
	span.SetAttributes(attribute.Int("http.request.resend_count", max(cs.attempts-1, 0)))
	if err != nil {
		kind := KindOther
		if e != nil {
			kind = e.Kind
		}
		// The kind, not err.Error(): errors are patient-free by design, but a
		// span is exported off the machine, so it gets the bounded value.
		span.SetAttributes(attribute.String("error.type", kind.String()))
		span.SetStatus(codes.Error, kind.String())
	}
	span.End()

	set := metric.WithAttributeSet(attribute.NewSet(
		attribute.String(attrConnection, c.conn),
		attribute.String(attrMethod, cs.method),
		attribute.String(attrResourceType, cs.resourceType),
		attribute.String(attrStatusClass, class),
		attribute.String(attrBlame, blame),
	))
	c.tel.duration.Record(ctx, elapsed.Seconds(), set)
	c.tel.requests.Add(ctx, 1, set)

	attrs := []slog.Attr{
		slog.String("connection", c.conn),
		slog.String("method", cs.method),
		slog.String("resource_type", cs.resourceType),
	}
	if status != 0 {
		attrs = append(attrs, slog.Int("status", status))
	}
	attrs = append(attrs, slog.Int("attempts", cs.attempts), slog.Duration("duration", elapsed))
	if err == nil {
		c.log.LogAttrs(ctx, slog.LevelDebug, "ehr request", attrs...)
		return
	}
	kind := KindOther
	if e != nil {
		kind = e.Kind
	}
	attrs = append(attrs, slog.String("kind", kind.String()), slog.String("blame", blame))
	if cs.transportErr != nil {
		attrs = append(attrs, slog.String("cause", transportCause(cs.transportErr)))
	}
	c.log.LogAttrs(ctx, slog.LevelWarn, "ehr request failed", attrs...)
}

func statusClass(status int, err error) string {
	switch {
	case status >= 500:
		return "5xx"
	case status >= 400:
		return "4xx"
	case err != nil && status == 0:
		return "error"
	case status >= 300:
		return "3xx"
	}
	return "2xx"
}

func blameOf(status int, err error, cs *callState) string {
	var e *Error
	errors.As(err, &e)
	switch {
	case err == nil:
		return BlameNone
	case cs.local:
		return BlameServer
	case status >= 500, status == http.StatusRequestTimeout, status == http.StatusTooManyRequests:
		return BlameExternal
	case status >= 400:
		return BlameClient
	case errors.Is(err, context.Canceled):
		return BlameNone
	case e != nil && e.Kind == KindAuth:
		return BlameClient // the token endpoint refused our credentials
	}
	return BlameExternal
}
