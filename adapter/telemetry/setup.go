package telemetry

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"slices"
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

// Config says where telemetry goes. Where a field is empty, Setup takes
// the setting from the standard OpenTelemetry environment variables, as
// any OpenTelemetry SDK would; with neither, nothing is exported: a clinic's
// adapter must not start sending data to a collector nobody configured.
type Config struct {
	// ServiceName names the process in traces and metrics. Empty: the
	// OTEL_SERVICE_NAME variable, or else DefaultServiceName.
	ServiceName string
	// Version is the adapter's version, recorded as service.version.
	Version string
	// OTLPEndpoint is the base URL of an OTLP/HTTP collector, such as
	// "http://otel-collector:4318"; traces go to /v1/traces and metrics to
	// /v1/metrics beneath it. It wins over the environment. Empty: the
	// OTEL_EXPORTER_OTLP_ENDPOINT variable (a base URL, the same way), or
	// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT and
	// OTEL_EXPORTER_OTLP_METRICS_ENDPOINT (each the whole URL of its
	// signal, which alone is exported then); with none of them set,
	// nothing is exported.
	OTLPEndpoint string
	// HashKey, when set, becomes the process key of HashID (SetHashKey),
	// so that replicas produce the same pseudonyms. Empty keeps the
	// per-process random key.
	HashKey []byte
}

// DefaultServiceName is service.name when neither Config.ServiceName nor
// OTEL_SERVICE_NAME gives one.
const DefaultServiceName = "ipsfhir"

// The standard OpenTelemetry SDK variables Setup reads itself. The
// exporters read the other OTEL_EXPORTER_OTLP_* variables (headers,
// timeout, certificates, compression) on their own, wherever the endpoint
// came from.
const (
	envEndpoint        = "OTEL_EXPORTER_OTLP_ENDPOINT"
	envTracesEndpoint  = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
	envMetricsEndpoint = "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"
	envServiceName     = "OTEL_SERVICE_NAME"
	envTracesExporter  = "OTEL_TRACES_EXPORTER"
	envMetricsExporter = "OTEL_METRICS_EXPORTER"
)

// envProtocols are the OTLP protocol variables: the exporters here speak
// OTLP over HTTP only.
var envProtocols = []string{"OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL"}

// getenv reads a variable as the SDK does: surrounding white space dropped.
func getenv(name string) string { return strings.TrimSpace(os.Getenv(name)) }

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

// Setup builds the tracer and meter providers described by cfg and the
// standard variables (see Config). A variable Setup reads that is set but
// unusable (an endpoint that is not an http or https URL, a protocol other
// than OTLP over HTTP, an exporter other than otlp) is an error naming the
// variable, never quoting its value. Setup does not set the otel globals:
// libraries that read them would otherwise start exporting spans whose
// attributes this package never saw.
func Setup(ctx context.Context, cfg Config) (*Telemetry, error) {
	if len(cfg.HashKey) > 0 {
		if err := SetHashKey(cfg.HashKey); err != nil {
			return nil, settingError{fmt.Errorf("telemetry: HashKey: %w", err)}
		}
	}
	dest, err := destinationsFor(cfg.OTLPEndpoint)
	if err != nil {
		return nil, settingError{err}
	}
	name := cfg.ServiceName
	if name == "" {
		name = getenv(envServiceName)
	}
	if name == "" {
		name = DefaultServiceName
	}

	// The providers' WithResource merges this into the SDK's environment
	// resource (OTEL_RESOURCE_ATTRIBUTES, which the operator sets, as
	// deployment.environment=…), and what is set here wins: service.name
	// is always the name worked out above.
	attrs := []attribute.KeyValue{semconv.ServiceName(name)}
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
	if dest.traces {
		traceExp, err := otlptracehttp.New(ctx, dest.traceOpts...)
		if err != nil {
			return nil, fmt.Errorf("telemetry: OTLP trace exporter: %w", err)
		}
		sampler = sdktrace.ParentBased(sdktrace.AlwaysSample())
		spanExporter = traceExp
	}
	if dest.metrics {
		metricExp, err := otlpmetrichttp.New(ctx, dest.metricOpts...)
		if err != nil {
			if spanExporter != nil {
				// Nothing was sent yet; shutting down only releases the client.
				_ = spanExporter.Shutdown(ctx)
			}
			return nil, fmt.Errorf("telemetry: OTLP metric exporter: %w", err)
		}
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

// destinations says which signals go to an OTLP collector, and the
// exporter options that point them there (none: the exporter reads the
// standard variables itself).
type destinations struct {
	traces, metrics bool
	traceOpts       []otlptracehttp.Option
	metricOpts      []otlpmetrichttp.Option
}

// destinationsFor works out where traces and metrics go: to endpoint, the
// configured collector, when there is one; otherwise where the standard
// endpoint variables say, which the exporters read themselves when given
// no endpoint option. OTEL_TRACES_EXPORTER and OTEL_METRICS_EXPORTER (none)
// can turn either signal's export off in both cases.
func destinationsFor(endpoint string) (destinations, error) {
	var d destinations
	if endpoint != "" {
		u, err := parseEndpoint("OTLPEndpoint", endpoint)
		if err != nil {
			return d, err
		}
		d = destinations{traces: true, metrics: true, traceOpts: traceOptions(u), metricOpts: metricOptions(u)}
	} else {
		// Checked here, because the exporters fall back to localhost:4318
		// on a URL they cannot parse, which would hide the mistake.
		for _, v := range []string{envEndpoint, envTracesEndpoint, envMetricsEndpoint} {
			if raw := getenv(v); raw != "" {
				if _, err := parseEndpoint(v, raw); err != nil {
					return d, err
				}
			}
		}
		base := getenv(envEndpoint) != ""
		d.traces = base || getenv(envTracesEndpoint) != ""
		d.metrics = base || getenv(envMetricsEndpoint) != ""
		if d.traces || d.metrics {
			for _, v := range envProtocols {
				switch getenv(v) {
				case "", "http/protobuf", "http/json":
				default:
					return d, fmt.Errorf("telemetry: %s: ipsfhir speaks OTLP over HTTP only: http/protobuf (the default, port 4318) or http/json", v)
				}
			}
		}
	}
	traces, err := exporterChosen(envTracesExporter, "otlp, or none for no trace export")
	if err != nil {
		return d, err
	}
	// prometheus: metrics are pulled from /metrics, which is always served.
	metrics, err := exporterChosen(envMetricsExporter, "otlp, or none or prometheus for no OTLP metric export (/metrics is always served)", "prometheus")
	if err != nil {
		return d, err
	}
	d.traces = d.traces && traces
	d.metrics = d.metrics && metrics
	return d, nil
}

// exporterChosen reads an OTEL_*_EXPORTER variable, a comma-separated list
// of exporters: whether it leaves OTLP export on (it is unset or lists
// otlp). none, and the names in also, are allowed and turn it off; any
// other name is an error, rather than export going somewhere else or
// nowhere without a word.
func exporterChosen(name, allowed string, also ...string) (bool, error) {
	raw := getenv(name)
	if raw == "" {
		return true, nil
	}
	otlp := false
	for _, e := range strings.Split(raw, ",") {
		switch e = strings.TrimSpace(e); {
		case e == "otlp":
			otlp = true
		case e == "none" || slices.Contains(also, e):
		default:
			return false, fmt.Errorf("telemetry: %s: must be %s", name, allowed)
		}
	}
	return otlp, nil
}

// ErrSetting is what Setup's errors match (errors.Is) when a setting or a
// standard OTEL_* variable asks for something ipsfhir cannot do: a mistake
// in the deployment to fix, not a failure of the run.
var ErrSetting = errors.New("telemetry: bad setting")

// settingError keeps its error's message and matches ErrSetting.
type settingError struct{ err error }

func (e settingError) Error() string        { return e.err.Error() }
func (e settingError) Unwrap() error        { return e.err }
func (e settingError) Is(target error) bool { return target == ErrSetting }

// parseEndpoint accepts only an absolute http or https URL without query
// or credentials; what names the setting (OTLPEndpoint or a variable) for
// the error. The exporters' own URL option silently falls back to
// localhost:4318 on a bad URL, which would hide a configuration mistake.
func parseEndpoint(what, raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("telemetry: %s: not a URL", what)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("telemetry: %s: scheme must be http or https", what)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("telemetry: %s: no host", what)
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		// Credentials belong in headers (OTEL_EXPORTER_OTLP_HEADERS), not
		// in a URL that ends up in error messages.
		return nil, fmt.Errorf("telemetry: %s: must not carry credentials, a query or a fragment", what)
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
