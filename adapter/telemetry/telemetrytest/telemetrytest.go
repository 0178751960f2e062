package telemetrytest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/ipsfhir/ipsfhir/adapter/telemetry"
)

// Capture holds in-memory telemetry for one test. Its fields are the
// parts to hand to the code under test.
type Capture struct {
	// Logger writes JSON lines, at debug level, through the same policy as
	// production loggers.
	Logger *slog.Logger
	// TracerProvider samples every span and exports it to Spans when it
	// ends, so spans are visible without a flush.
	TracerProvider *sdktrace.TracerProvider
	// Spans holds the ended spans.
	Spans *tracetest.InMemoryExporter
	// MeterProvider records into Reader.
	MeterProvider *sdkmetric.MeterProvider
	// Reader collects on demand; see Collect.
	Reader *sdkmetric.ManualReader

	logs *Buffer
}

// New returns a Capture whose providers are shut down when t ends.
func New(t testing.TB) *Capture {
	t.Helper()
	logs := &Buffer{}
	spans := tracetest.NewInMemoryExporter()
	reader := sdkmetric.NewManualReader()
	// A fixed, empty resource: the default one reads the environment and
	// host, which a test has no business depending on.
	res := resource.Empty()
	c := &Capture{
		Logger: telemetry.NewLogger(logs, slog.LevelDebug, "json"),
		TracerProvider: sdktrace.NewTracerProvider(
			sdktrace.WithSyncer(spans),
			sdktrace.WithSampler(sdktrace.AlwaysSample()),
			sdktrace.WithResource(res),
			// As in telemetry.Setup, so that tests see what production
			// would export.
			sdktrace.WithoutPanicRecording(),
		),
		Spans:         spans,
		MeterProvider: sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader), sdkmetric.WithResource(res)),
		Reader:        reader,
		logs:          logs,
	}
	t.Cleanup(func() {
		// Background: t's own context is already cancelled in Cleanup.
		ctx := context.Background()
		if err := c.TracerProvider.Shutdown(ctx); err != nil {
			t.Errorf("telemetrytest: tracer provider shutdown: %v", err)
		}
		if err := c.MeterProvider.Shutdown(ctx); err != nil {
			t.Errorf("telemetrytest: meter provider shutdown: %v", err)
		}
	})
	return c
}

// Logs returns everything logged so far.
func (c *Capture) Logs() string {
	return c.logs.String()
}

// Collect reads the current value of every instrument, running observable
// callbacks, and fails t if one of them returned an error.
func (c *Capture) Collect(t testing.TB) metricdata.ResourceMetrics {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := c.Reader.Collect(context.Background(), &rm); err != nil {
		t.Fatalf("telemetrytest: collect metrics: %v", err)
	}
	return rm
}

// AssertNoneOf fails t once for each place where one of planted appears:
// a log line, an ended span, or a metric. Spans still open are not
// searched; end them first.
func (c *Capture) AssertNoneOf(t testing.TB, planted ...string) {
	t.Helper()
	needles := make([]needle, 0, len(planted))
	for _, p := range planted {
		if p == "" {
			t.Errorf("telemetrytest: empty planted value matches everything")
			continue
		}
		needles = append(needles, newNeedle(p))
	}
	if len(needles) == 0 {
		return
	}
	var found []string
	check := func(where, hay string) {
		for _, n := range needles {
			if n.in(hay) {
				found = append(found, fmt.Sprintf("planted %q found in %s", n.value, where))
			}
		}
	}

	for i, line := range strings.Split(strings.TrimRight(c.Logs(), "\n"), "\n") {
		// The record's time comes from the clock, and its fractional
		// seconds would match a planted run of digits now and then.
		check(fmt.Sprintf("log line %d: %s", i+1, line), recordTime.ReplaceAllString(line, ""))
	}
	for _, s := range c.Spans.GetSpans() {
		span := fmt.Sprintf("span %q", s.Name)
		check("span name "+strconv.Quote(s.Name), s.Name)
		checkAttrs(check, span+" attribute", s.Attributes)
		for _, e := range s.Events {
			ev := fmt.Sprintf("%s event %q", span, e.Name)
			check(ev+" name", e.Name)
			checkAttrs(check, ev+" attribute", e.Attributes)
		}
		for _, l := range s.Links {
			checkAttrs(check, span+" link attribute", l.Attributes)
		}
		check(span+" status description", s.Status.Description)
		if s.Resource != nil {
			checkAttrs(check, span+" resource attribute", s.Resource.Attributes())
		}
	}
	// An observer's error does not stop the search: Collect still returns
	// what the other observers reported, and the error text, which the
	// SDK hands to otel's global error handler, is itself searched.
	var rm metricdata.ResourceMetrics
	if err := c.Reader.Collect(context.Background(), &rm); err != nil {
		check("metric collection error", err.Error())
	}
	if rm.Resource != nil {
		checkAttrs(check, "metric resource attribute", rm.Resource.Attributes())
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			check("metric name "+strconv.Quote(m.Name), m.Name)
			metric := fmt.Sprintf("metric %q", m.Name)
			check(metric+" description", m.Description)
			check(metric+" unit", m.Unit)
			for _, set := range attributeSets(m.Data) {
				checkAttrs(check, metric+" attribute", set)
			}
		}
	}

	for _, f := range found {
		t.Errorf("telemetrytest: %s", f)
	}
}

func checkAttrs(check func(where, hay string), where string, kvs []attribute.KeyValue) {
	for _, kv := range kvs {
		key := string(kv.Key)
		check(fmt.Sprintf("%s key %q", where, key), key)
		check(fmt.Sprintf("%s %q value", where, key), kv.Value.String())
	}
}

// attributeSets returns the attributes of every data point and exemplar,
// whatever the aggregation.
func attributeSets(data metricdata.Aggregation) [][]attribute.KeyValue {
	var sets [][]attribute.KeyValue
	add := func(s attribute.Set) { sets = append(sets, s.ToSlice()) }
	switch d := data.(type) {
	case metricdata.Gauge[int64]:
		for _, p := range d.DataPoints {
			add(p.Attributes)
			sets = append(sets, exemplarAttrs(p.Exemplars)...)
		}
	case metricdata.Gauge[float64]:
		for _, p := range d.DataPoints {
			add(p.Attributes)
			sets = append(sets, exemplarAttrs(p.Exemplars)...)
		}
	case metricdata.Sum[int64]:
		for _, p := range d.DataPoints {
			add(p.Attributes)
			sets = append(sets, exemplarAttrs(p.Exemplars)...)
		}
	case metricdata.Sum[float64]:
		for _, p := range d.DataPoints {
			add(p.Attributes)
			sets = append(sets, exemplarAttrs(p.Exemplars)...)
		}
	case metricdata.Histogram[int64]:
		for _, p := range d.DataPoints {
			add(p.Attributes)
			sets = append(sets, exemplarAttrs(p.Exemplars)...)
		}
	case metricdata.Histogram[float64]:
		for _, p := range d.DataPoints {
			add(p.Attributes)
			sets = append(sets, exemplarAttrs(p.Exemplars)...)
		}
	case metricdata.ExponentialHistogram[int64]:
		for _, p := range d.DataPoints {
			add(p.Attributes)
			sets = append(sets, exemplarAttrs(p.Exemplars)...)
		}
	case metricdata.ExponentialHistogram[float64]:
		for _, p := range d.DataPoints {
			add(p.Attributes)
			sets = append(sets, exemplarAttrs(p.Exemplars)...)
		}
	case metricdata.Summary:
		for _, p := range d.DataPoints {
			add(p.Attributes)
		}
	}
	return sets
}

func exemplarAttrs[N int64 | float64](es []metricdata.Exemplar[N]) [][]attribute.KeyValue {
	sets := make([][]attribute.KeyValue, 0, len(es))
	for _, e := range es {
		sets = append(sets, e.FilteredAttributes)
	}
	return sets
}

// recordTime matches the time the JSON handler adds to each line.
var recordTime = regexp.MustCompile(`^\{"time":"[^"]*",`)

// A needle is one planted value in the forms it may take on the way out.
type needle struct {
	value string
	forms []string // lower-cased
}

func newNeedle(p string) needle {
	forms := []string{strings.ToLower(p)}
	if b, err := json.Marshal(p); err == nil {
		forms = append(forms, strings.ToLower(string(b[1:len(b)-1])))
	}
	q := strconv.Quote(p)
	forms = append(forms, strings.ToLower(q[1:len(q)-1]))
	return needle{value: p, forms: forms}
}

func (n needle) in(hay string) bool {
	hay = strings.ToLower(hay)
	for _, f := range n.forms {
		if strings.Contains(hay, f) {
			return true
		}
	}
	return false
}

// Buffer is a bytes.Buffer that the code under test may write from several
// goroutines (a log, a server's output) while the test reads it.
type Buffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
