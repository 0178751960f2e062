package telemetry_test

import (
	"bytes"
	"context"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ipsfhir/ipsfhir/adapter/telemetry"
)

// collector stands in for an OTLP/HTTP collector on loopback and counts
// what reaches it.
type collector struct {
	srv    *httptest.Server
	mu     sync.Mutex
	paths  map[string]int
	bodies [][]byte
}

func newCollector(t *testing.T) *collector {
	t.Helper()
	c := &collector{paths: map[string]int{}}
	c.srv = httptest.NewServer(c.handler())
	t.Cleanup(c.srv.Close)
	return c
}

// newTLSCollector is a collector that answers only https, and the name of
// a PEM file holding the certificate to trust it with.
func newTLSCollector(t *testing.T) (*collector, string) {
	t.Helper()
	c := &collector{paths: map[string]int{}}
	c.srv = httptest.NewTLSServer(c.handler())
	t.Cleanup(c.srv.Close)
	ca := filepath.Join(t.TempDir(), "collector.pem")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.srv.Certificate().Raw})
	if err := os.WriteFile(ca, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	return c, ca
}

func (c *collector) handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		c.mu.Lock()
		c.paths[r.URL.Path]++
		c.bodies = append(c.bodies, body)
		c.mu.Unlock()
		// An empty body is a valid, fully successful OTLP response.
		w.Header().Set("Content-Type", "application/x-protobuf")
	})
}

func (c *collector) requests() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]int, len(c.paths))
	for k, v := range c.paths {
		out[k] = v
	}
	return out
}

// received reports whether any request body held s (a string field of an
// OTLP protobuf message, such as service.name, appears in it verbatim).
func (c *collector) received(s string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, b := range c.bodies {
		if bytes.Contains(b, []byte(s)) {
			return true
		}
	}
	return false
}

// otelVariables are the environment variables that choose where the OTLP
// exporters send; clearOTEL unsets them for one test, so that a developer's
// shell cannot change what a test sees.
var otelVariables = []string{
	"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
	"OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL",
	"OTEL_EXPORTER_OTLP_INSECURE", "OTEL_EXPORTER_OTLP_TRACES_INSECURE", "OTEL_EXPORTER_OTLP_METRICS_INSECURE",
	"OTEL_EXPORTER_OTLP_CERTIFICATE", "OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_TIMEOUT",
	"OTEL_TRACES_EXPORTER", "OTEL_METRICS_EXPORTER", "OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES",
}

func clearOTEL(t *testing.T) {
	t.Helper()
	for _, v := range otelVariables {
		t.Setenv(v, "") // restores the old value when t ends
		os.Unsetenv(v)
	}
}

// shutdown flushes tel (the batch span processor and the periodic metric
// reader) within 10 s.
func shutdown(t *testing.T, tel *telemetry.Telemetry) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := tel.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
}

// exercise records one span and one of each sync metric.
func exercise(t *testing.T, tel *telemetry.Telemetry) {
	t.Helper()
	ctx := context.Background()
	_, span := tel.TracerProvider().Tracer("test").Start(ctx, "ehr.write")
	span.End()
	m, err := telemetry.NewSyncMetrics(tel.MeterProvider(), telemetry.SyncObservers{
		OutboxDepth: func(context.Context) (map[string]int, error) { return map[string]int{"epic-sandbox": 7}, nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	m.RecordRun(ctx, "epic-sandbox", telemetry.DirectionPush, telemetry.ResultOK, telemetry.BlameNone)
}

// Not parallel (here and below): t.Setenv.
func TestSetupWithoutEndpointExportsNothing(t *testing.T) {
	// Every OTLP setting but an endpoint: none of them is a destination,
	// and the exporters' own default (localhost:4318) is nobody's choice.
	clearOTEL(t)
	t.Setenv("OTEL_EXPORTER_OTLP_HEADERS", "authorization=Bearer%20x")
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
	t.Setenv("OTEL_TRACES_EXPORTER", "otlp")
	t.Setenv("OTEL_TRACES_SAMPLER", "always_on")

	ctx := context.Background()
	tel, err := telemetry.Setup(ctx, telemetry.Config{ServiceName: "ipsfhir", Version: "v0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	_, span := tel.TracerProvider().Tracer("test").Start(ctx, "sync.run")
	if span.IsRecording() {
		t.Error("span is recording with nowhere to export it")
	}
	if !span.SpanContext().HasTraceID() {
		t.Error("unsampled span has no trace id to correlate logs with")
	}
	span.End()
	exercise(t, tel)
	if err := tel.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestSetupExportsToEndpoint(t *testing.T) {
	clearOTEL(t)
	c := newCollector(t)
	ctx := context.Background()
	tel, err := telemetry.Setup(ctx, telemetry.Config{ServiceName: "ipsfhir", OTLPEndpoint: c.srv.URL + "/otlp/"})
	if err != nil {
		t.Fatal(err)
	}
	exercise(t, tel)
	// Shutdown flushes both the batch span processor and the periodic
	// metric reader.
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := tel.Shutdown(sctx); err != nil {
		t.Fatal(err)
	}
	got := c.requests()
	for _, path := range []string{"/otlp/v1/traces", "/otlp/v1/metrics"} {
		if got[path] == 0 {
			t.Errorf("nothing exported to %s; requests: %v", path, got)
		}
	}
	// Shutdown is idempotent, so a deferred call after a signal-driven
	// one does not turn into an error.
	if err := tel.Shutdown(ctx); err != nil {
		t.Errorf("second Shutdown: %v", err)
	}
}

func TestSetupRejectsBadConfig(t *testing.T) {
	clearOTEL(t)
	for name, cfg := range map[string]telemetry.Config{
		"no scheme":      {ServiceName: "ipsfhir", OTLPEndpoint: "collector:4318"},
		"grpc scheme":    {ServiceName: "ipsfhir", OTLPEndpoint: "grpc://collector:4317"},
		"no host":        {ServiceName: "ipsfhir", OTLPEndpoint: "http:///v1"},
		"credentials":    {ServiceName: "ipsfhir", OTLPEndpoint: "https://user:secret@collector:4318"},
		"query":          {ServiceName: "ipsfhir", OTLPEndpoint: "https://collector:4318?token=x"},
		"short hash key": {ServiceName: "ipsfhir", HashKey: []byte("short")},
	} {
		if tel, err := telemetry.Setup(context.Background(), cfg); err == nil {
			_ = tel.Shutdown(context.Background())
			t.Errorf("%s: Setup accepted %+v", name, cfg)
		} else if strings.Contains(err.Error(), "secret") {
			t.Errorf("%s: error quotes the credential: %v", name, err)
		}
	}
}

func TestMetricsHandlerServesPrometheusText(t *testing.T) {
	ctx := context.Background()
	tel, err := telemetry.Setup(ctx, telemetry.Config{ServiceName: "ipsfhir"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tel.Shutdown(ctx) })

	m, err := telemetry.NewSyncMetrics(tel.MeterProvider(), telemetry.SyncObservers{
		OutboxDepth: func(context.Context) (map[string]int, error) { return map[string]int{"epic-sandbox": 7}, nil },
		OldestPending: func(context.Context) (map[string]time.Duration, error) {
			return map[string]time.Duration{"epic-sandbox": 90 * time.Second}, nil
		},
		InitialLoads: func(context.Context) (map[string]telemetry.InitialLoad, error) {
			return map[string]telemetry.InitialLoad{
				"epic-sandbox": {Done: 250, Total: 1000, Remaining: 450 * time.Second, Estimated: true},
				"oracle":       {Done: 0, Total: 40},
			}, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	m.RecordRun(ctx, "epic-sandbox", telemetry.DirectionPush, telemetry.ResultError, telemetry.BlameExternal)
	m.RecordResource(ctx, "epic-sandbox", "Goal", telemetry.OutcomeWritten, telemetry.BlameNone)

	srv := httptest.NewServer(tel.MetricsHandler())
	t.Cleanup(srv.Close)
	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("GET /metrics: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	text := string(body)
	for _, want := range []string{
		"# HELP ipsfhir_sync_runs_total Sync runs",
		"# TYPE ipsfhir_sync_runs_total counter",
		"# TYPE ipsfhir_outbox_depth gauge",
		"# TYPE ipsfhir_sync_lag_seconds gauge",
		"# TYPE ipsfhir_initial_load_done gauge",
		"# TYPE ipsfhir_initial_load_total gauge",
		"# TYPE ipsfhir_initial_load_remaining_seconds gauge",
		"go_goroutines ",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	// A load with nothing done has no estimate: no remaining sample.
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, "ipsfhir_initial_load_remaining_seconds{") && strings.Contains(line, `connection="oracle"`) {
			t.Errorf("/metrics has a time left for a load without an estimate: %s", line)
		}
	}
	for _, s := range []struct {
		name   string
		labels []string
		value  string
	}{
		{"ipsfhir_sync_runs_total", []string{`blame="external"`, `connection="epic-sandbox"`, `direction="push"`, `result="error"`}, "1"},
		{"ipsfhir_sync_resources_total", []string{`blame="none"`, `connection="epic-sandbox"`, `outcome="written"`, `resource_type="Goal"`}, "1"},
		{"ipsfhir_outbox_depth", []string{`connection="epic-sandbox"`}, "7"},
		{"ipsfhir_sync_lag_seconds", []string{`connection="epic-sandbox"`}, "90"},
		{"ipsfhir_initial_load_done", []string{`connection="epic-sandbox"`}, "250"},
		{"ipsfhir_initial_load_total", []string{`connection="epic-sandbox"`}, "1000"},
		{"ipsfhir_initial_load_remaining_seconds", []string{`connection="epic-sandbox"`}, "450"},
		{"ipsfhir_initial_load_done", []string{`connection="oracle"`}, "0"},
		{"ipsfhir_initial_load_total", []string{`connection="oracle"`}, "40"},
	} {
		if !hasSample(text, s.name, s.labels, s.value) {
			t.Errorf("/metrics lacks %s%v %s", s.name, s.labels, s.value)
		}
	}
	if t.Failed() {
		t.Logf("/metrics:\n%s", text)
	}
}

// hasSample reports whether text has a sample of metric name carrying all
// labels (among others, such as the otel scope) with value.
func hasSample(text, name string, labels []string, value string) bool {
	for _, line := range strings.Split(text, "\n") {
		rest, ok := strings.CutPrefix(line, name+"{")
		if !ok {
			continue
		}
		set, v, ok := strings.Cut(rest, "} ")
		if !ok || v != value {
			continue
		}
		have := map[string]bool{}
		for _, l := range strings.Split(set, ",") {
			have[l] = true
		}
		all := true
		for _, l := range labels {
			all = all && have[l]
		}
		if all {
			return true
		}
	}
	return false
}

// The standard variable is how containers are pointed at a collector
// (docker-compose.yml does): with no endpoint in the configuration, Setup
// exports traces and metrics where OTEL_EXPORTER_OTLP_ENDPOINT says, under
// the service name OTEL_SERVICE_NAME gives.
func TestSetupHonoursStandardEndpointVariable(t *testing.T) {
	clearOTEL(t)
	c := newCollector(t)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", c.srv.URL+"/otlp")
	t.Setenv("OTEL_SERVICE_NAME", "ipsfhir-riverside")
	tel, err := telemetry.Setup(context.Background(), telemetry.Config{})
	if err != nil {
		t.Fatal(err)
	}
	exercise(t, tel)
	shutdown(t, tel)
	got := c.requests()
	for _, path := range []string{"/otlp/v1/traces", "/otlp/v1/metrics"} {
		if got[path] == 0 {
			t.Errorf("nothing exported to %s; requests: %v", path, got)
		}
	}
	if !c.received("ipsfhir-riverside") {
		t.Error("exports do not carry OTEL_SERVICE_NAME as service.name")
	}
}

// A configured https endpoint stays https whatever the environment says:
// an OTEL_EXPORTER_OTLP_ENDPOINT with http (injected by a platform, say)
// or OTEL_EXPORTER_OTLP_INSECURE must not turn the file's collector into a
// plain-text one.
func TestSetupConfiguredHTTPSIsNeverDowngraded(t *testing.T) {
	for name, env := range map[string]map[string]string{
		"http endpoint variable": {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"},
		"insecure variable":      {"OTEL_EXPORTER_OTLP_INSECURE": "true"},
	} {
		t.Run(name, func(t *testing.T) {
			clearOTEL(t)
			c, ca := newTLSCollector(t)
			t.Setenv("OTEL_EXPORTER_OTLP_CERTIFICATE", ca)
			for k, v := range env {
				t.Setenv(k, v)
			}
			tel, err := telemetry.Setup(context.Background(), telemetry.Config{ServiceName: "ipsfhir", OTLPEndpoint: c.srv.URL})
			if err != nil {
				t.Fatal(err)
			}
			exercise(t, tel)
			shutdown(t, tel)
			got := c.requests()
			for _, path := range []string{"/v1/traces", "/v1/metrics"} {
				if got[path] == 0 {
					t.Errorf("nothing reached the https collector at %s; requests: %v", path, got)
				}
			}
		})
	}
}

// The same, seen from a plain-text listener at the configured https
// address: it must receive nothing, since whatever reaches it crossed the
// network in the clear.
func TestSetupConfiguredHTTPSSendsNothingInTheClear(t *testing.T) {
	clearOTEL(t)
	plain := newCollector(t)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", plain.srv.URL)
	t.Setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "2000")
	tel, err := telemetry.Setup(context.Background(), telemetry.Config{ServiceName: "ipsfhir", OTLPEndpoint: strings.Replace(plain.srv.URL, "http://", "https://", 1)})
	if err != nil {
		t.Fatal(err)
	}
	exercise(t, tel)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = tel.Shutdown(ctx) // fails: the TLS handshake with a plain listener
	if got := plain.requests(); len(got) != 0 {
		t.Errorf("sent in the clear to a collector configured as https: %v", got)
	}
}

// The per-signal variables are whole URLs, used as they are, and each
// turns on its own signal only.
func TestSetupSignalEndpointVariables(t *testing.T) {
	for _, tc := range []struct {
		variable, want, not string
	}{
		{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "/collect/spans", "metrics"},
		{"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "/collect/points", "traces"},
	} {
		t.Run(tc.variable, func(t *testing.T) {
			clearOTEL(t)
			c := newCollector(t)
			t.Setenv(tc.variable, c.srv.URL+tc.want)
			tel, err := telemetry.Setup(context.Background(), telemetry.Config{})
			if err != nil {
				t.Fatal(err)
			}
			exercise(t, tel)
			shutdown(t, tel)
			if got := c.requests(); len(got) != 1 || got[tc.want] == 0 {
				t.Errorf("requests %v, want %s only (no %s)", got, tc.want, tc.not)
			}
		})
	}
}

// The configuration file is what an administrator wrote for this service;
// a variable set for the whole platform does not redirect it.
func TestSetupConfiguredEndpointWinsOverVariables(t *testing.T) {
	clearOTEL(t)
	configured, platform := newCollector(t), newCollector(t)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", platform.srv.URL)
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", platform.srv.URL+"/v1/traces")
	t.Setenv("OTEL_SERVICE_NAME", "platform-default")
	tel, err := telemetry.Setup(context.Background(), telemetry.Config{ServiceName: "ipsfhir-east", OTLPEndpoint: configured.srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	exercise(t, tel)
	shutdown(t, tel)
	if got := configured.requests(); got["/v1/traces"] == 0 || got["/v1/metrics"] == 0 {
		t.Errorf("the configured collector got %v, want traces and metrics", got)
	}
	if got := platform.requests(); len(got) != 0 {
		t.Errorf("the variables' collector got %v, want nothing", got)
	}
	if !configured.received("ipsfhir-east") || configured.received("platform-default") {
		t.Error("service.name is not the configured one")
	}
}

// OTEL_TRACES_EXPORTER and OTEL_METRICS_EXPORTER turn a signal's export
// off: a Jaeger collector takes traces but no metrics.
func TestSetupExporterVariables(t *testing.T) {
	for _, tc := range []struct {
		variable, value string
		traces, metrics bool
	}{
		{"OTEL_METRICS_EXPORTER", "none", true, false},
		{"OTEL_METRICS_EXPORTER", "prometheus", true, false},
		{"OTEL_METRICS_EXPORTER", "otlp", true, true},
		{"OTEL_TRACES_EXPORTER", "none", false, true},
		{"OTEL_TRACES_EXPORTER", "otlp", true, true},
	} {
		t.Run(tc.variable+"="+tc.value, func(t *testing.T) {
			clearOTEL(t)
			c := newCollector(t)
			t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", c.srv.URL)
			t.Setenv(tc.variable, tc.value)
			tel, err := telemetry.Setup(context.Background(), telemetry.Config{})
			if err != nil {
				t.Fatal(err)
			}
			_, span := tel.TracerProvider().Tracer("test").Start(context.Background(), "sync.run")
			if span.IsRecording() != tc.traces {
				t.Errorf("span recording: %v, want %v", span.IsRecording(), tc.traces)
			}
			span.End()
			exercise(t, tel)
			shutdown(t, tel)
			got := c.requests()
			if (got["/v1/traces"] > 0) != tc.traces || (got["/v1/metrics"] > 0) != tc.metrics {
				t.Errorf("requests %v, want traces %v, metrics %v", got, tc.traces, tc.metrics)
			}
		})
	}
}

// A variable that is set but cannot be followed stops Setup with its
// name, never its value: the exporters would otherwise send to
// localhost:4318, or speak HTTP to a gRPC port, without a word.
func TestSetupRejectsBadVariables(t *testing.T) {
	for _, tc := range []struct{ variable, value string }{
		{"OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318"},
		{"OTEL_EXPORTER_OTLP_ENDPOINT", "grpc://collector:4317"},
		{"OTEL_EXPORTER_OTLP_ENDPOINT", "https://user:secret@collector:4318"},
		{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "https://collector:4318/v1/traces?token=secret"},
		{"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "http:///v1/metrics"},
		{"OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"},
		{"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "secret"},
		{"OTEL_TRACES_EXPORTER", "zipkin"},
		{"OTEL_METRICS_EXPORTER", "otlp,console"},
	} {
		t.Run(tc.variable+"="+tc.value, func(t *testing.T) {
			clearOTEL(t)
			if !strings.Contains(tc.variable, "ENDPOINT") {
				t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
			}
			t.Setenv(tc.variable, tc.value)
			tel, err := telemetry.Setup(context.Background(), telemetry.Config{})
			if err == nil {
				_ = tel.Shutdown(context.Background())
				t.Fatal("Setup accepted it")
			}
			if !strings.Contains(err.Error(), tc.variable) {
				t.Errorf("error does not name %s: %v", tc.variable, err)
			}
			if strings.Contains(err.Error(), "secret") {
				t.Errorf("error quotes the value: %v", err)
			}
		})
	}
}

// The service name comes from the configuration, else OTEL_SERVICE_NAME,
// else ipsfhir, and OTEL_RESOURCE_ATTRIBUTES cannot override it (the SDK
// adds its other attributes, such as deployment.environment, to the
// resource).
func TestSetupServiceName(t *testing.T) {
	for _, tc := range []struct{ configured, variable, want string }{
		{"", "", "ipsfhir"},
		{"", "ipsfhir-riverside", "ipsfhir-riverside"},
		{"ipsfhir-east", "ipsfhir-riverside", "ipsfhir-east"},
	} {
		clearOTEL(t)
		t.Setenv("OTEL_SERVICE_NAME", tc.variable)
		t.Setenv("OTEL_RESOURCE_ATTRIBUTES", "service.name=from-attributes,deployment.environment=compose")
		tel, err := telemetry.Setup(context.Background(), telemetry.Config{ServiceName: tc.configured})
		if err != nil {
			t.Fatal(err)
		}
		text := scrape(t, tel)
		_ = tel.Shutdown(context.Background())
		if !strings.Contains(text, `service_name="`+tc.want+`"`) || strings.Contains(text, "from-attributes") {
			t.Errorf("configured %q, OTEL_SERVICE_NAME %q: target_info has not service_name=%q:\n%s", tc.configured, tc.variable, tc.want, text)
		}
		if !strings.Contains(text, `deployment_environment="compose"`) {
			t.Errorf("OTEL_RESOURCE_ATTRIBUTES left out")
		}
	}
}

// scrape returns what tel's /metrics serves.
func scrape(t *testing.T, tel *telemetry.Telemetry) string {
	t.Helper()
	rec := httptest.NewRecorder()
	tel.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	return rec.Body.String()
}
