package ehr_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/ipsfhir/ipsfhir/adapter/ehr"
)

// syncBuffer is a bytes.Buffer safe for the handler's concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// testNothingLeaks runs creates, searches, reads and failures carrying a
// distinctive patient identifier in paths, queries and bodies, and checks
// that it appears in no log line, span, metric attribute or error string.
// It runs under TestPeer, against the peer at base (with faults on).
func testNothingLeaks(t *testing.T, base string) {
	const secret = "MRN-8675309-ZEBRA"

	var logs syncBuffer
	logger := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	c, err := ehr.New(ehr.Options{
		BaseURL: base, Connection: "peer-test", Logger: logger,
		TracerProvider: tp, MeterProvider: mp, MaxAttempts: 2,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	var errs []error
	keep := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}

	patient := "Patient/" + secret
	created, err := c.Create(ctx, "Goal", goalJSON(t, patient, secret), "identifier="+url.QueryEscape(idSystem+"|"+secret))
	if err != nil {
		t.Fatal(err)
	}
	entries, err := c.Search(ctx, "Goal", url.Values{"identifier": {idSystem + "|" + secret}, "subject": {patient}})
	if err != nil || len(entries) != 1 {
		t.Fatalf("search: %d entries, %v", len(entries), err)
	}
	_, err = c.Read(ctx, "Goal", created.ResourceID)
	keep(err)
	// Failures whose OperationOutcome may quote the request.
	_, err = c.Read(ctx, "Goal", secret)
	keep(err)
	_, err = c.Search(ctx, "Goal", url.Values{"unknown-param-" + secret: {secret}})
	keep(err)
	_, err = c.Create(ctx, "Goal", []byte(`{"resourceType":"Goal","note":[{"text":"`+secret+`"}],"bogus":"`+secret+`"}`), "")
	keep(err)
	_, err = c.Update(ctx, "Goal", created.ResourceID, goalJSON(t, patient, secret), "stale-"+secret)
	keep(err)
	// Retries and a lost answer.
	_, err = c.Do(ctx, ehr.Request{
		Method: http.MethodGet, Path: "Goal", Query: url.Values{"identifier": {secret}},
		Header: http.Header{"X-Peer-Fault": {"503; retry-after=0"}},
	})
	keep(err)
	_, err = c.Do(ctx, ehr.Request{
		Method: http.MethodPost, Path: "Goal", Body: goalJSON(t, patient, secret+"-2"),
		Header: http.Header{"X-Peer-Fault": {"drop-after"}},
	})
	keep(err)
	if len(errs) != 6 {
		t.Fatalf("%d of the 6 failing calls failed: %v", len(errs), errs)
	}

	for _, err := range errs {
		if strings.Contains(err.Error(), secret) {
			t.Errorf("error string leaks the identifier: %q", err)
		}
		var e *ehr.Error
		if errors.As(err, &e) && e.Kind != ehr.KindOutcomeUnknown && e.Kind != ehr.KindTransient && len(e.Outcome) == 0 {
			t.Errorf("error %q kept no OperationOutcome", err)
		}
	}

	out := logs.String()
	if !strings.Contains(out, `"resource_type":"Goal"`) || !strings.Contains(out, `"attempt":2`) {
		t.Fatalf("the log does not show the calls:\n%s", out)
	}
	if strings.Contains(out, secret) {
		t.Errorf("the log leaks the identifier:\n%s", out)
	}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if strings.Contains(line, "http://") || strings.Contains(line, "?") {
			t.Errorf("log line has a URL or query: %s", line)
		}
	}

	for _, s := range rec.Ended() {
		if strings.Contains(s.Name(), secret) {
			t.Errorf("span name leaks: %q", s.Name())
		}
		for _, a := range s.Attributes() {
			if strings.Contains(a.Value.String(), secret) || strings.Contains(a.Value.String(), "?") {
				t.Errorf("span %q attribute %s=%q", s.Name(), a.Key, a.Value.String())
			}
		}
		for _, ev := range s.Events() {
			t.Errorf("span %q has event %q (could carry an error message)", s.Name(), ev.Name)
		}
		if strings.Contains(s.Status().Description, secret) {
			t.Errorf("span status leaks: %q", s.Status().Description)
		}
	}

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			seen[m.Name] = true
			for _, set := range metricSets(m) {
				for _, kv := range set.ToSlice() {
					if strings.Contains(kv.Value.String(), secret) {
						t.Errorf("metric %s attribute %s leaks", m.Name, kv.Key)
					}
				}
			}
		}
	}
	if !seen[ehr.MetricDuration] || !seen[ehr.MetricRequests] {
		t.Fatalf("metrics recorded: %v", seen)
	}
	if testing.Verbose() {
		t.Logf("log of the run:\n%s", out)
	}
}

func metricSets(m metricdata.Metrics) []attribute.Set {
	var out []attribute.Set
	switch d := m.Data.(type) {
	case metricdata.Sum[int64]:
		for _, p := range d.DataPoints {
			out = append(out, p.Attributes)
		}
	case metricdata.Histogram[float64]:
		for _, p := range d.DataPoints {
			out = append(out, p.Attributes)
		}
	}
	return out
}

// TestMetrics checks the instruments, their attributes and the blame
// classification, against httptest answers of each class.
func TestMetrics(t *testing.T) {
	srv := newStatusServer(t)
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	c, _ := newClient(t, srv.URL, ehr.Options{Connection: "clinic-a", MeterProvider: mp, MaxAttempts: 1})
	ctx := t.Context()
	for _, id := range []string{"200", "404", "422", "500", "503"} {
		_, _ = c.Read(ctx, "Goal", id)
	}
	_, _ = c.Do(ctx, ehr.Request{Method: http.MethodGet, Path: "../escape"})

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(ctx, &rm); err != nil {
		t.Fatal(err)
	}
	counts := map[string]int64{}
	var histCount uint64
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				if m.Name != ehr.MetricRequests || !d.IsMonotonic {
					t.Errorf("unexpected sum %s", m.Name)
				}
				for _, p := range d.DataPoints {
					conn, _ := p.Attributes.Value("connection")
					method, _ := p.Attributes.Value("method")
					class, _ := p.Attributes.Value("status_class")
					blame, _ := p.Attributes.Value("blame")
					rt, _ := p.Attributes.Value("resource_type")
					if conn.AsString() != "clinic-a" || method.AsString() != "GET" {
						t.Errorf("attributes %v", p.Attributes.ToSlice())
					}
					counts[fmt.Sprintf("%s/%s/%s", rt.AsString(), class.AsString(), blame.AsString())] += p.Value
				}
			case metricdata.Histogram[float64]:
				if m.Name != ehr.MetricDuration || m.Unit != "s" {
					t.Errorf("histogram %s unit %q", m.Name, m.Unit)
				}
				for _, p := range d.DataPoints {
					histCount += p.Count
				}
			}
		}
	}
	want := map[string]int64{
		"Goal/2xx/none":      1,
		"Goal/4xx/client":    2,
		"Goal/5xx/external":  2,
		"other/error/server": 1,
	}
	if fmt.Sprint(counts) != fmt.Sprint(want) {
		t.Fatalf("counter points %v, want %v", counts, want)
	}
	if histCount != 6 {
		t.Fatalf("histogram count %d, want 6", histCount)
	}
}

// newStatusServer answers GET .../Goal/{status} with that status.
func newStatusServer(t *testing.T) *statusServer {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /Goal/{status}", func(w http.ResponseWriter, r *http.Request) {
		var code int
		_, _ = fmt.Sscan(r.PathValue("status"), &code)
		w.Header().Set("Content-Type", "application/fhir+json")
		w.WriteHeader(code)
		if code == 200 {
			_, _ = w.Write([]byte(`{"resourceType":"Goal","id":"200"}`))
			return
		}
		_, _ = w.Write([]byte(`{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"processing"}]}`))
	})
	s := &statusServer{httptest.NewServer(mux)}
	t.Cleanup(s.Close)
	return s
}

type statusServer struct{ *httptest.Server }

func TestErrorString(t *testing.T) {
	e := &ehr.Error{Op: "update Goal", Status: 412, Kind: ehr.KindConflict, IssueCodes: []string{"conflict"},
		Outcome: []byte(`{"issue":[{"diagnostics":"Patient Jane Doe"}]}`), Attempts: 1}
	if got, want := e.Error(), "ehr: update Goal: conflict (HTTP 412) issues conflict"; got != want {
		t.Fatalf("Error() = %q, want %q", got, want)
	}
	e = &ehr.Error{Op: "GET Goal", Status: 429, Kind: ehr.KindTransient, Attempts: 3, RetryAfter: 2 * time.Minute, Err: context.Canceled}
	if got, want := e.Error(), "ehr: GET Goal: transient (HTTP 429) after 3 attempts; EHR asks to retry after 2m0s: canceled"; got != want {
		t.Fatalf("Error() = %q, want %q", got, want)
	}
	if !errors.Is(e, context.Canceled) || !errors.Is(e, ehr.ErrTransient) || errors.Is(e, ehr.ErrConflict) {
		t.Fatal("errors.Is does not match cause and kind")
	}
}

func TestVersionFromETag(t *testing.T) {
	for in, want := range map[string]string{
		`W/"3"`: "3",
		`W/"9b2c7c8e-2f7e-4a7b-8d55-0c1f3e6a9d10"`: "9b2c7c8e-2f7e-4a7b-8d55-0c1f3e6a9d10",
		`"12"`: "12",
		`7`:    "7",
		``:     "",
	} {
		if got := ehr.VersionFromETag(in); got != want {
			t.Errorf("VersionFromETag(%q) = %q, want %q", in, got, want)
		}
	}
}
