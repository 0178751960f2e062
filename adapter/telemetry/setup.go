package telemetry

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// Config says where telemetry goes. The zero value (apart from
// ServiceName) exports nothing: a clinic's adapter must not start sending
// data to a collector nobody configured.
type Config struct {
	// ServiceName names the process in traces and metrics ("ipsfhir").
	ServiceName string
	// Version is the adapter's version, recorded as service.version.
	Version string
	// OTLPEndpoint is the base URL of an OTLP/HTTP collector, such as
	// "http://otel-collector:4318"; traces go to /v1/traces and metrics to
	// /v1/metrics beneath it. Empty means no export.
	OTLPEndpoint string
	// HashKey, when set, becomes the process key of HashID (SetHashKey),
	// so that replicas produce the same pseudonyms. Empty keeps the
	// per-process random key.
	HashKey []byte
}

// Telemetry holds the providers built by Setup. Pass its providers to the
// packages that record, and its MetricsHandler to the router for
// /metrics.
type Telemetry struct {
	tracerProvider *sdktrace.TracerProvider
	meterProvider  *sdkmetric.MeterProvider
	metrics        http.Handler

	shutdownOnce sync.Once
	shutdownErr  error
}

// Setup builds the tracer and meter providers described by cfg. It does
// not set the otel globals: libraries that read them would otherwise start
// exporting spans whose attributes this package never saw.
func Setup(ctx context.Context, cfg Config) (*Telemetry, error) {
	if cfg.ServiceName == "" {
		return nil, errors.New("telemetry: ServiceName is required")
	}
	if len(cfg.HashKey) > 0 {
		if err := SetHashKey(cfg.HashKey); err != nil {
			return nil, fmt.Errorf("telemetry: HashKey: %w", err)
		}
	}
	var endpoint *url.URL
	if cfg.OTLPEndpoint != "" {
		u, err := parseEndpoint(cfg.OTLPEndpoint)
		if err != nil {
			return nil, err
		}
		endpoint = u
	}

	// resource.New rather than resource.Default: Default also reads
	// OTEL_RESOURCE_ATTRIBUTES, and configuration comes from the config
	// file, not the environment.
	attrs := []attribute.KeyValue{semconv.ServiceName(cfg.ServiceName)}
	if cfg.Version != "" {
		attrs = append(attrs, semconv.ServiceVersion(cfg.Version))
	}
	res, err := resource.New(ctx,
		resource.WithSchemaURL(semconv.SchemaURL),
		resource.WithAttributes(attrs...),
		resource.WithTelemetrySDK(),
	)
	if err != nil {
		return nil, fmt.Errorf("telemetry: resource: %w", err)
	}

	// The Prometheus exporter is a metric reader over a registry of our
	// own: the global one collects whatever any dependency registered.
	reg := prometheus.NewRegistry()
	if err := reg.Register(collectors.NewGoCollector()); err != nil {
		return nil, fmt.Errorf("telemetry: go collector: %w", err)
	}
	if err := reg.Register(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})); err != nil {
		return nil, fmt.Errorf("telemetry: process collector: %w", err)
	}
	promReader, err := otelprom.New(otelprom.WithRegisterer(reg))
	if err != nil {
		return nil, fmt.Errorf("telemetry: prometheus exporter: %w", err)
	}
	meterOpts := []sdkmetric.Option{sdkmetric.WithResource(res), sdkmetric.WithReader(promReader)}

	// Spans are never recorded unless they can go somewhere. NeverSample
	// still gives each span a trace id, which is what log correlation and
	// traceparent propagation need.
	sampler := sdktrace.NeverSample()
	var spanExporter sdktrace.SpanExporter
	if endpoint != nil {
		traceExp, err := otlptracehttp.New(ctx, traceOptions(endpoint)...)
		if err != nil {
			return nil, fmt.Errorf("telemetry: OTLP trace exporter: %w", err)
		}
		metricExp, err := otlpmetrichttp.New(ctx, metricOptions(endpoint)...)
		if err != nil {
			// Nothing was sent yet; shutting down only releases the client.
			_ = traceExp.Shutdown(ctx)
			return nil, fmt.Errorf("telemetry: OTLP metric exporter: %w", err)
		}
		sampler = sdktrace.ParentBased(sdktrace.AlwaysSample())
		spanExporter = traceExp
		meterOpts = append(meterOpts, sdkmetric.WithReader(sdkmetric.NewPeriodicReader(metricExp)))
	}
	traceOpts := []sdktrace.TracerProviderOption{
		sdktrace.WithResource(res),
		sdktrace.WithSampler(sampler),
		// The SDK would otherwise copy a panic's value and stack into an
		// exported span event, and a panic value can hold anything.
		sdktrace.WithoutPanicRecording(),
	}
	if spanExporter != nil {
		traceOpts = append(traceOpts, sdktrace.WithBatcher(spanExporter))
	}

	return &Telemetry{
		tracerProvider: sdktrace.NewTracerProvider(traceOpts...),
		meterProvider:  sdkmetric.NewMeterProvider(meterOpts...),
		metrics:        promhttp.HandlerFor(reg, promhttp.HandlerOpts{}),
	}, nil
}

// parseEndpoint accepts only an absolute http or https URL without query
// or credentials. The exporters' own URL option silently falls back to
// localhost:4318 on a bad URL, which would hide a configuration mistake.
func parseEndpoint(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, errors.New("telemetry: OTLPEndpoint: not a URL")
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, errors.New("telemetry: OTLPEndpoint: scheme must be http or https")
	}
	if u.Host == "" {
		return nil, errors.New("telemetry: OTLPEndpoint: no host")
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		// Credentials belong in headers configured by reference, not in a
		// URL that ends up in error messages.
		return nil, errors.New("telemetry: OTLPEndpoint: must not carry credentials, a query or a fragment")
	}
	return u, nil
}

// traceOptions and metricOptions point the exporters at u with
// WithEndpointURL, which sets the scheme as well as host and path:
// WithEndpoint would leave the scheme to the environment, and an
// OTEL_EXPORTER_OTLP_ENDPOINT with http, or OTEL_EXPORTER_OTLP_INSECURE,
// would then send to an https collector in the clear.
func traceOptions(u *url.URL) []otlptracehttp.Option {
	return []otlptracehttp.Option{otlptracehttp.WithEndpointURL(signalURL(u, "/v1/traces"))}
}

func metricOptions(u *url.URL) []otlpmetrichttp.Option {
	return []otlpmetrichttp.Option{otlpmetrichttp.WithEndpointURL(signalURL(u, "/v1/metrics"))}
}

// signalURL is the URL of one signal under the collector's base URL u.
func signalURL(u *url.URL, path string) string {
	return (&url.URL{Scheme: u.Scheme, Host: u.Host, Path: strings.TrimSuffix(u.Path, "/") + path}).String()
}

// TracerProvider is what instrumented packages take to create spans.
func (t *Telemetry) TracerProvider() trace.TracerProvider { return t.tracerProvider }

// MeterProvider is what instrumented packages take to create instruments,
// e.g. NewSyncMetrics.
func (t *Telemetry) MeterProvider() metric.MeterProvider { return t.meterProvider }

// MetricsHandler serves every instrument in Prometheus text format; mount
// it at /metrics.
func (t *Telemetry) MetricsHandler() http.Handler { return t.metrics }

// Shutdown flushes pending spans and metrics to the collector, if any, and
// stops the providers. Later calls return the first call's result, so it
// is safe both to defer and to call on a signal.
func (t *Telemetry) Shutdown(ctx context.Context) error {
	t.shutdownOnce.Do(func() {
		t.shutdownErr = errors.Join(
			t.tracerProvider.Shutdown(ctx),
			t.meterProvider.Shutdown(ctx),
		)
		if t.shutdownErr != nil {
			t.shutdownErr = fmt.Errorf("telemetry: shutdown: %w", t.shutdownErr)
		}
	})
	return t.shutdownErr
}
