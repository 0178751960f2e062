package faultsuite

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/ipsfhir/ipsfhir/conformance/faultproxy"
)

func TestSlope(t *testing.T) {
	xs := []float64{0, 0.5, 1, 1.5}
	ys := []float64{10, 15, 20, 25}
	if got := slope(xs, ys); math.Abs(got-10) > 1e-9 {
		t.Errorf("slope %v, want 10 per hour", got)
	}
	if got := slope([]float64{1}, []float64{3}); got != 0 {
		t.Errorf("slope of one point %v, want 0", got)
	}
}

func TestTrendsPerReplicaAndMeasure(t *testing.T) {
	samples := []Sample{
		{At: 0, Replica: 0, RSS: 10 << 20, FDs: 20, Goroutines: -1, Outbox: 5},
		{At: 30 * time.Minute, Replica: 0, RSS: 12 << 20, FDs: 20, Goroutines: -1, Outbox: 3},
		{At: 0, Replica: 1, RSS: 10 << 20, FDs: 30, Goroutines: 50, Outbox: 5},
		{At: 30 * time.Minute, Replica: 1, RSS: 10 << 20, FDs: 31, Goroutines: 60, Outbox: 3},
	}
	got := map[string]float64{}
	for _, tr := range trends(samples, 0) {
		got[string(rune('0'+tr.Replica))+" "+tr.Measure] = tr.PerHour
	}
	want := map[string]float64{"0 rss-mib": 4, "0 fds": 0, "0 outbox": -4, "1 rss-mib": 0, "1 fds": 2, "1 goroutines": 20}
	for k, v := range want {
		if math.Abs(got[k]-v) > 1e-9 {
			t.Errorf("trend %s = %v, want %v (all: %v)", k, got[k], v, got)
		}
	}
	if _, ok := got["0 goroutines"]; ok {
		t.Error("a replica without goroutine counts got a goroutine trend")
	}
	for _, tr := range trends(samples, 10*time.Minute) {
		if tr.Samples != 1 {
			t.Errorf("trend %+v counts a sample taken during the warm-up", tr)
		}
	}
}

func TestPermanentRefusal(t *testing.T) {
	for reason, want := range map[string]bool{
		"update Goal: invalid (HTTP 400) issues invalid": true,
		"create Observation: refused (HTTP 405)":         true,
		"update Goal: throttled (HTTP 429)":              false,
		"update Goal: conflict (HTTP 412)":               false,
		"update Goal: transient (HTTP 503)":              false,
		"push: interrupted":                              false,
	} {
		if got := permanentRefusal(reason); got != want {
			t.Errorf("permanentRefusal(%q) = %v, want %v", reason, got, want)
		}
	}
}

func TestGoroutineMetric(t *testing.T) {
	text := "# HELP go_goroutines Number of goroutines.\n# TYPE go_goroutines gauge\ngo_goroutines 42\n"
	m := goroutineMetric.FindStringSubmatch(text)
	if m == nil || m[3] != "42" {
		t.Fatalf("go_goroutines not found: %q", m)
	}
	if goroutineMetric.FindStringSubmatch("ipsfhir_outbox_depth 3\n") != nil {
		t.Error("matched a metric that is not a goroutine count")
	}
}

func TestMarkdownRowMatchesHeader(t *testing.T) {
	r := &Report{Scenario: ScenarioPG2, Faults: map[faultproxy.Kind]int{faultproxy.Kind500: 2}}
	r.fail("something")
	cols := func(s string) int { return strings.Count(s, "|") }
	header := strings.Split(MarkdownHeader(), "\n")
	if cols(r.MarkdownRow()) != cols(header[0]) || cols(header[1]) != cols(header[0]) {
		t.Errorf("row has %d separators, header %d:\n%s\n%s", cols(r.MarkdownRow()), cols(header[0]), MarkdownHeader(), r.MarkdownRow())
	}
	if !strings.Contains(r.MarkdownRow(), "FAIL") {
		t.Error("a failed run's row does not say FAIL")
	}
}

func TestTransportErrorsHoldNoAddress(t *testing.T) {
	c := newFHIRClient("http://127.0.0.1:1/fhir/R4")
	_, err := c.do(t.Context(), "GET", "Goal?identifier=urn:x|MRN1234567", nil, nil)
	if err == nil {
		t.Fatal("a request to a closed port succeeded")
	}
	if s := err.Error(); strings.Contains(s, "127.0.0.1") || strings.Contains(s, "MRN") || strings.Contains(s, ":1") {
		t.Errorf("error names the address or the query: %q", s)
	}
}

func TestScenarios(t *testing.T) {
	for _, sc := range Scenarios() {
		if _, err := sc.spec(); err != nil {
			t.Error(err)
		}
	}
	if ScenarioPG4.Replicas() != 4 || !ScenarioPG2.NeedsPostgres() || ScenarioEpic.NeedsPostgres() {
		t.Error("scenario specs are not what the docs say")
	}
	if _, err := Scenario("oracle").spec(); err == nil {
		t.Error("an unknown scenario was accepted")
	}
}
