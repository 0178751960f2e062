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
	"OTEL_TRACES_EXPORTER", "OTEL_METRICS_EXPORTER", "OTEL_SERVICE_NAME", "OTEL_SDK_DISABLED",
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

// Not parallel: t.Setenv.
func TestSetupWithoutEndpointExportsNothing(t *testing.T) {
	// Point the exporters' environment variables at a collector: if Setup
	// built an exporter without being asked, this is where it would send.
	c := newCollector(t)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", c.srv.URL)
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
	if got := c.requests(); len(got) != 0 {
		t.Errorf("exported with no endpoint configured: %v", got)
	}
}

func TestSetupExportsToEndpoint(t *testing.T) {
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
	for name, cfg := range map[string]telemetry.Config{
		"no service name": {},
		"no scheme":       {ServiceName: "ipsfhir", OTLPEndpoint: "collector:4318"},
		"grpc scheme":     {ServiceName: "ipsfhir", OTLPEndpoint: "grpc://collector:4317"},
		"no host":         {ServiceName: "ipsfhir", OTLPEndpoint: "http:///v1"},
		"credentials":     {ServiceName: "ipsfhir", OTLPEndpoint: "https://user:secret@collector:4318"},
		"query":           {ServiceName: "ipsfhir", OTLPEndpoint: "https://collector:4318?token=x"},
		"short hash key":  {ServiceName: "ipsfhir", HashKey: []byte("short")},
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
		"go_goroutines ",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("/metrics lacks %s", want)
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
