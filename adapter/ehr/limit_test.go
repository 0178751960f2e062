package ehr_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/ipsfhir/ipsfhir/adapter/ehr"
)

// readAll sends n reads of Goal/g from workers goroutines at once and
// returns the errors.
func readAll(t *testing.T, c *ehr.Client, n, workers int) []error {
	t.Helper()
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
		next atomic.Int32
	)
	for range workers {
		wg.Go(func() {
			for next.Add(1) <= int32(n) {
				if _, err := c.Read(t.Context(), "Goal", "g"); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	return errs
}

func okGoal(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/fhir+json")
	_, _ = w.Write([]byte(`{"resourceType":"Goal","id":"g"}`))
}

// TestConcurrencyLimit: however many goroutines share a client, no more
// than MaxConcurrency of its requests are at the EHR at once.
func TestConcurrencyLimit(t *testing.T) {
	t.Parallel()
	var inFlight, most atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for {
			m := most.Load()
			if n <= m || most.CompareAndSwap(m, n) {
				break
			}
		}
		time.Sleep(20 * time.Millisecond) // so that requests overlap
		okGoal(w)
	}))
	t.Cleanup(srv.Close)
	c, _ := newClient(t, srv.URL, ehr.Options{MaxConcurrency: 3})
	if errs := readAll(t, c, 40, 12); len(errs) > 0 {
		t.Fatal(errs[0])
	}
	if m := most.Load(); m > 3 || m < 2 {
		t.Fatalf("at most %d requests in flight at once; want 3 (the limit), and more than 1 to show the test works", m)
	}
}

// TestRateLimit: requests reach the EHR no faster than RequestsPerSecond,
// counted in every one-second window.
func TestRateLimit(t *testing.T) {
	t.Parallel()
	var (
		mu       sync.Mutex
		arrivals []time.Time
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		arrivals = append(arrivals, time.Now())
		mu.Unlock()
		okGoal(w)
	}))
	t.Cleanup(srv.Close)
	const perSecond, calls = 20, 30
	c, _ := newClient(t, srv.URL, ehr.Options{MaxConcurrency: 8, RequestsPerSecond: perSecond})
	start := time.Now()
	if errs := readAll(t, c, calls, 8); len(errs) > 0 {
		t.Fatal(errs[0])
	}
	mu.Lock()
	defer mu.Unlock()
	if len(arrivals) != calls {
		t.Fatalf("the server saw %d requests, want %d", len(arrivals), calls)
	}
	// With a burst of one, the limiter lets the n-th request go no sooner
	// than (n-1)/rate after the first. Arrival is after the limiter let it
	// go, and a busy machine only delays it, so this bound holds however
	// loaded the machine is (counting arrivals per one-second window did
	// not: a late arrival and an on-time one land closer together than the
	// limiter sent them).
	last := slices.MaxFunc(arrivals, time.Time.Compare)
	if min := time.Duration(calls-1) * time.Second / perSecond; last.Sub(start) < min {
		t.Fatalf("%d calls at %d per second were all answered %v after the first was made; the limiter allows no less than %v", calls, perSecond, last.Sub(start).Round(time.Millisecond), min)
	}
}

// TestThrottleIsNotAFailure: a 429 slows the connection down instead of
// failing the call. With MaxAttempts 1, calls that meet 429s still succeed;
// the Retry-After holds back every request of the connection, not only the
// throttled one; and the rate gauge shows the connection slowed down.
func TestThrottleIsNotAFailure(t *testing.T) {
	t.Parallel()
	var (
		mu        sync.Mutex
		throttled time.Time
		after     []time.Duration // arrivals after the 429, from its answer
		calls     int
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		calls++
		first := calls == 1
		if first {
			throttled = time.Now()
		} else {
			after = append(after, time.Since(throttled))
		}
		mu.Unlock()
		if first {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		okGoal(w)
	}))
	t.Cleanup(srv.Close)
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	c, _ := newClient(t, srv.URL, ehr.Options{Connection: "clinic-t", MaxConcurrency: 1, MaxAttempts: 1, RequestsPerSecond: 100, MeterProvider: mp})
	if got := rateGauge(t, reader, "clinic-t"); got != 100 {
		t.Fatalf("rate gauge %v before any throttle, want 100 (the configured rate)", got)
	}
	if errs := readAll(t, c, 4, 4); len(errs) > 0 {
		t.Fatalf("a 429 failed a call: %v", errs[0])
	}
	mu.Lock()
	defer mu.Unlock()
	if len(after) != 4 {
		t.Fatalf("%d requests after the 429, want 4 (the throttled one again, and 3 more)", len(after))
	}
	for _, d := range after {
		// The other goroutines were waiting for the one slot: without the
		// connection-wide pause they would have gone at once.
		if d < 900*time.Millisecond {
			t.Fatalf("a request reached the EHR %v after a 429 with Retry-After 1", d)
		}
	}
	// Halved to 50, and recovering by 5 per second: far from 100 yet.
	if got := rateGauge(t, reader, "clinic-t"); got <= 0 || got >= 100 {
		t.Fatalf("rate gauge %v after a throttle, want less than the configured 100", got)
	}
}

// TestThrottledAttemptsAreFree: a call that meets 429s keeps trying while
// it has been throttled for less than MaxThrottleWait, MaxAttempts or not.
func TestThrottledAttemptsAreFree(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) <= 3 {
			w.Header().Set("Retry-After", "0")
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		okGoal(w)
	}))
	t.Cleanup(srv.Close)
	c, rec := newClient(t, srv.URL, ehr.Options{MaxAttempts: 1})
	if _, err := c.Read(t.Context(), "Goal", "g"); err != nil {
		t.Fatalf("three 429s failed a call with MaxAttempts 1: %v", err)
	}
	if got := resends(rec); len(got) != 1 || got[0] != 3 {
		t.Fatalf("resend counts %v, want [3]", got)
	}
}

// TestLimitOptionsChecked: negative limits are refused.
func TestLimitOptionsChecked(t *testing.T) {
	t.Parallel()
	for _, o := range []ehr.Options{{MaxConcurrency: -1}, {RequestsPerSecond: -1}, {MaxThrottleWait: -time.Second}} {
		o.BaseURL = "https://ehr.example.org/fhir"
		if _, err := ehr.New(o); err == nil {
			t.Errorf("New(%+v) accepted", o)
		}
	}
}

// rateGauge is the ipsfhir.ehr.rate_limit value of a connection.
func rateGauge(t *testing.T, r *sdkmetric.ManualReader, conn string) float64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != ehr.MetricRateLimit {
				continue
			}
			g, ok := m.Data.(metricdata.Gauge[float64])
			if !ok {
				t.Fatalf("%s is %T, want a float64 gauge", m.Name, m.Data)
			}
			for _, dp := range g.DataPoints {
				if v, ok := dp.Attributes.Value("connection"); ok && v.AsString() == conn {
					return dp.Value
				}
			}
		}
	}
	t.Fatalf("no %s for connection %s", ehr.MetricRateLimit, conn)
	return 0
}

// TestRateGaugeName: /metrics shows the gauge under the name docs/CONFIG.md
// gives, with the configured rate.
func TestRateGaugeName(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	r, err := otelprom.New(otelprom.WithRegisterer(reg))
	if err != nil {
		t.Fatal(err)
	}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(r))
	if _, err := ehr.New(ehr.Options{BaseURL: "http://127.0.0.1:1/fhir", Connection: "clinic-g", MeterProvider: mp, RequestsPerSecond: 3}); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "ipsfhir_ehr_rate_limit_per_second" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "connection" && l.GetValue() == "clinic-g" && m.GetGauge().GetValue() == 3 {
					return
				}
			}
		}
	}
	t.Fatal("no ipsfhir_ehr_rate_limit_per_second{connection=\"clinic-g\"} 3")
}
