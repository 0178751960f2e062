package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// otlpCollector stands in for Jaeger's OTLP/HTTP receiver: it keeps the
// body of every export by path.
type otlpCollector struct {
	srv    *httptest.Server
	mu     sync.Mutex
	bodies map[string][][]byte
}

func newOTLPCollector(t *testing.T) *otlpCollector {
	t.Helper()
	c := &otlpCollector{bodies: map[string][][]byte{}}
	c.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		c.mu.Lock()
		c.bodies[r.URL.Path] = append(c.bodies[r.URL.Path], body)
		c.mu.Unlock()
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	t.Cleanup(c.srv.Close)
	return c
}

// got reports whether an export to path held text (a string of an OTLP
// protobuf message, such as service.name, appears in it verbatim).
func (c *otlpCollector) got(path, text string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, b := range c.bodies[path] {
		if bytes.Contains(b, []byte(text)) {
			return true
		}
	}
	return false
}

// TestServeExportsWhereOTELVariablesSay is what docker-compose.yml relies
// on: a configuration without telemetry.otlpEndpoint, and the standard
// variables naming the collector and the service. serve's spans (here, of
// connecting to an EHR that is down) reach the collector under that name,
// and so do its metrics unless OTEL_METRICS_EXPORTER turns them off (Jaeger
// takes traces only).
func TestServeExportsWhereOTELVariablesSay(t *testing.T) {
	for _, metricsExporter := range []string{"", "none"} {
		t.Run("OTEL_METRICS_EXPORTER="+metricsExporter, func(t *testing.T) {
			collector := newOTLPCollector(t)
			t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.srv.URL)
			t.Setenv("OTEL_SERVICE_NAME", "ipsfhir-compose-test")
			t.Setenv("OTEL_METRICS_EXPORTER", metricsExporter)
			dir := t.TempDir()
			cfg := filepath.Join(dir, "ipsfhir.yaml")
			if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`store: {driver: sqlite, dsn: ips.db}
server: {listen: "127.0.0.1:0"}
connections:
  - {name: clinic, fhirBaseUrl: %q, enabled: true, auth: {type: none}}
`, closedPortURL(t))), 0o644); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			base, stderr, done := startServe(t, ctx, cfg)
			// The connection's first attempt to read the EHR's statement has
			// failed once /readyz says so; its span is then waiting in the
			// batch that shutdown sends.
			for deadline := time.Now().Add(20 * time.Second); ; {
				if _, r, _ := getReadyz(t, base); len(r.Connections) == 1 && r.Connections[0].State == "failing" {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("the connection never failed:\n%s", stderr.String())
				}
				time.Sleep(100 * time.Millisecond)
			}
			cancel()
			if code := <-done; code != exitOK {
				t.Fatalf("serve exited %d:\n%s", code, stderr.String())
			}
			if !collector.got("/v1/traces", "ipsfhir-compose-test") {
				t.Errorf("no traces under OTEL_SERVICE_NAME reached OTEL_EXPORTER_OTLP_ENDPOINT:\n%s", stderr.String())
			}
			if wantMetrics := metricsExporter == ""; collector.got("/v1/metrics", "ipsfhir-compose-test") != wantMetrics {
				t.Errorf("metrics exported: %v, want %v", !wantMetrics, wantMetrics)
			}
		})
	}
}

// A standard OTEL_* variable set to something ipsfhir cannot do is a
// mistake in the deployment, like a bad setting in the file: the command
// exits 2 (usage or unreadable input) and names the variable, before it
// touches the store or an EHR.
func TestBadOTELVariableIsAUsageError(t *testing.T) {
	for name, value := range map[string]string{
		"OTEL_TRACES_EXPORTER":        "zipkin",
		"OTEL_EXPORTER_OTLP_ENDPOINT": "ftp://collector.example.org",
	} {
		t.Run(name, func(t *testing.T) {
			t.Setenv(name, value)
			dir := t.TempDir()
			cfg := filepath.Join(dir, "ipsfhir.yaml")
			if err := os.WriteFile(cfg, []byte("store: {driver: sqlite, dsn: "+filepath.Join(dir, "ips.db")+"}\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			code, _, stderr := ipsfhir(t, "", "sync", "--once", "--config", cfg)
			if code != exitUsage || !strings.Contains(stderr, name) {
				t.Errorf("sync --once with %s=%s: exit %d, stderr %q; want %d naming the variable", name, value, code, stderr, exitUsage)
			}
		})
	}
}
