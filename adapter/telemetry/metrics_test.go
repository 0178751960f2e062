package telemetry_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/ipsfhir/ipsfhir/adapter/telemetry"
	"github.com/ipsfhir/ipsfhir/adapter/telemetry/telemetrytest"
)

func TestMetricAttrs(t *testing.T) {
	tests := []struct {
		conn, rt string
		status   int
		blame    telemetry.Blame
		want     map[string]string
	}{
		{"epic-sandbox", "Goal", 201, telemetry.BlameNone,
			map[string]string{"connection": "epic-sandbox", "resource_type": "Goal", "status_class": "2xx", "blame": "none"}},
		{"epic-sandbox", "", 0, telemetry.BlameExternal,
			map[string]string{"connection": "epic-sandbox", "resource_type": "none", "status_class": "none", "blame": "external"}},
		{"Jane Planted-Doe", "MRN-PLANTED-7731", 7731, telemetry.Blame("patient"),
			map[string]string{"connection": "invalid", "resource_type": "invalid", "status_class": "invalid", "blame": "invalid"}},
		{"", "Smith", 412, telemetry.BlameServer,
			map[string]string{"connection": "invalid", "resource_type": "invalid", "status_class": "4xx", "blame": "server"}},
	}
	for _, tc := range tests {
		set := telemetry.MetricAttrs(tc.conn, tc.rt, tc.status, tc.blame)
		if set.Len() != len(tc.want) {
			t.Errorf("MetricAttrs(%q, %q, %d, %q) has %d attributes, want %d", tc.conn, tc.rt, tc.status, tc.blame, set.Len(), len(tc.want))
		}
		for k, want := range tc.want {
			if got, _ := set.Value(attribute.Key(k)); got.AsString() != want {
				t.Errorf("MetricAttrs(%q, %q, %d, %q)[%s] = %q, want %q", tc.conn, tc.rt, tc.status, tc.blame, k, got.AsString(), want)
			}
		}
	}
}

func TestSyncMetricsRecordAndObserve(t *testing.T) {
	c := telemetrytest.New(t)
	ctx := context.Background()
	m, err := telemetry.NewSyncMetrics(c.MeterProvider, telemetry.SyncObservers{
		OutboxDepth: func(context.Context) (map[string]int, error) {
			return map[string]int{"epic-sandbox": 3, "oracle": 0}, nil
		},
		OldestPending: func(context.Context) (map[string]time.Duration, error) {
			return map[string]time.Duration{"epic-sandbox": 2500 * time.Millisecond}, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	m.RecordResource(ctx, "epic-sandbox", "Goal", telemetry.OutcomeWritten, telemetry.BlameNone)
	m.RecordResource(ctx, "epic-sandbox", "Goal", telemetry.OutcomeWritten, telemetry.BlameNone)
	m.RecordResource(ctx, "epic-sandbox", "CarePlan", telemetry.OutcomeConflict, telemetry.BlameExternal)
	m.RecordRun(ctx, "epic-sandbox", telemetry.DirectionPull, telemetry.ResultOK, telemetry.BlameNone)

	got := map[string]map[string]float64{} // metric -> attribute set -> value
	units := map[string]string{}
	for _, sm := range c.Collect(t).ScopeMetrics {
		for _, mt := range sm.Metrics {
			units[mt.Name] = mt.Unit
			if mt.Description == "" {
				t.Errorf("%s has no description", mt.Name)
			}
			got[mt.Name] = map[string]float64{}
			switch d := mt.Data.(type) {
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					got[mt.Name][p.Attributes.Encoded(attribute.DefaultEncoder())] = float64(p.Value)
				}
			case metricdata.Gauge[int64]:
				for _, p := range d.DataPoints {
					got[mt.Name][p.Attributes.Encoded(attribute.DefaultEncoder())] = float64(p.Value)
				}
			case metricdata.Gauge[float64]:
				for _, p := range d.DataPoints {
					got[mt.Name][p.Attributes.Encoded(attribute.DefaultEncoder())] = p.Value
				}
			default:
				t.Errorf("%s: unexpected aggregation %T", mt.Name, d)
			}
		}
	}
	want := map[string]map[string]float64{
		telemetry.MetricSyncResources: {
			"blame=none,connection=epic-sandbox,outcome=written,resource_type=Goal":          2,
			"blame=external,connection=epic-sandbox,outcome=conflict,resource_type=CarePlan": 1,
		},
		telemetry.MetricSyncRuns: {
			"blame=none,connection=epic-sandbox,direction=pull,result=ok": 1,
		},
		telemetry.MetricOutboxDepth: {"connection=epic-sandbox": 3, "connection=oracle": 0},
		telemetry.MetricSyncLag:     {"connection=epic-sandbox": 2.5},
	}
	for name, series := range want {
		for attrs, v := range series {
			if g, ok := got[name][attrs]; !ok || g != v {
				t.Errorf("%s{%s} = %v (present %v), want %v; have %v", name, attrs, g, ok, v, got[name])
			}
		}
		if len(got[name]) != len(series) {
			t.Errorf("%s has %d series, want %d: %v", name, len(got[name]), len(series), got[name])
		}
	}
	for name, unit := range map[string]string{
		telemetry.MetricOutboxDepth: "{change}", telemetry.MetricSyncLag: "s",
		telemetry.MetricSyncResources: "{resource}", telemetry.MetricSyncRuns: "{run}",
	} {
		if units[name] != unit {
			t.Errorf("%s unit = %q, want %q", name, units[name], unit)
		}
	}

	// After Close the observers are no longer asked.
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	for _, sm := range c.Collect(t).ScopeMetrics {
		for _, mt := range sm.Metrics {
			if mt.Name == telemetry.MetricOutboxDepth {
				if g, ok := mt.Data.(metricdata.Gauge[int64]); ok && len(g.DataPoints) > 0 {
					t.Errorf("outbox depth still observed after Close: %v", g.DataPoints)
				}
			}
		}
	}
}

// The sync engine passes connection names and resource types it got from
// config and from EHR responses; a bug that passes a patient's value
// instead must not create a time series named after the patient.
func TestSyncMetricsKeepPatientDataOut(t *testing.T) {
	c := telemetrytest.New(t)
	ctx := context.Background()
	planted := []string{"Jane Planted-Doe", "MRN-PLANTED-7731", "Patient?identifier=urn:oid:1.2|MRN-PLANTED-7731"}
	m, err := telemetry.NewSyncMetrics(c.MeterProvider, telemetry.SyncObservers{
		OutboxDepth: func(context.Context) (map[string]int, error) {
			return map[string]int{planted[0]: 1}, errors.New(planted[1])
		},
		OldestPending: func(context.Context) (map[string]time.Duration, error) {
			return map[string]time.Duration{planted[2]: time.Second}, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range planted {
		m.RecordResource(ctx, p, p, telemetry.Outcome(p), telemetry.Blame(p))
		m.RecordRun(ctx, p, telemetry.Direction(p), telemetry.Result(p), telemetry.Blame(p))
	}
	c.AssertNoneOf(t, planted...)
}
