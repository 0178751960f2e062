package telemetry

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

func TestErrorSummary(t *testing.T) {
	const mrn = "MRN-PLANTED-7731"
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"nil", nil, "nil"},
		{"LogSafe", &safeError{"ehr.write", "conflict", mrn}, "ehr.write: conflict"},
		{"wrapped LogSafe", fmt.Errorf("push %s: %w", mrn, &safeError{"ehr.write", "transient", mrn}), "ehr.write: transient"},
		{"unsafe LogSafe", &plantedError{mrn}, "*telemetry.plantedError"},
		{"canceled", fmt.Errorf("lookup %s: %w", mrn, context.Canceled), "context canceled"},
		{"deadline", fmt.Errorf("lookup %s: %w", mrn, context.DeadlineExceeded), "context deadline exceeded"},
		{"plain", errors.New(mrn), "*errors.errorString"},
		{"chain", fmt.Errorf("get: %w", &url.Error{Op: "Get", URL: "https://ehr/Patient?identifier=" + mrn, Err: errors.New(mrn)}),
			"*fmt.wrapError > *url.Error > *errors.errorString"},
	}
	for _, tc := range tests {
		got := ErrorSummary(tc.err)
		if got != tc.want {
			t.Errorf("%s: ErrorSummary = %q, want %q", tc.name, got, tc.want)
		}
		if strings.Contains(got, "7731") {
			t.Errorf("%s: summary %q leaks the MRN", tc.name, got)
		}
	}
}

func TestErrorSummaryBoundsChain(t *testing.T) {
	err := errors.New("x")
	for range 10 {
		err = fmt.Errorf("w: %w", err)
	}
	if n := strings.Count(ErrorSummary(err), ">") + 1; n != maxErrorChain {
		t.Errorf("%d types in summary, want %d", n, maxErrorChain)
	}
}

func TestRecordSpanError(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })

	_, span := tp.Tracer("test").Start(context.Background(), "ehr.write")
	RecordSpanError(span, fmt.Errorf("write Patient?identifier=MRN-PLANTED-7731: %w", &safeError{"ehr.write", "conflict", "MRN-PLANTED-7731"}))
	RecordSpanError(span, nil) // no-op
	span.End()

	spans := exp.GetSpans()
	if len(spans) != 1 {
		t.Fatalf("%d spans", len(spans))
	}
	s := spans[0]
	if s.Status.Description != "ehr.write: conflict" {
		t.Errorf("status = %q", s.Status.Description)
	}
	if len(s.Events) != 1 {
		t.Fatalf("%d events, want 1", len(s.Events))
	}
	for _, kv := range s.Events[0].Attributes {
		if strings.Contains(kv.Value.String(), "7731") {
			t.Errorf("event attribute %s = %q leaks the MRN", kv.Key, kv.Value.String())
		}
	}
}

func TestObserverErrorIsSummary(t *testing.T) {
	err := observerError(MetricOutboxDepth, fmt.Errorf("count for Patient?identifier=MRN-PLANTED-7731: %w", errors.New("MRN-PLANTED-7731")))
	if strings.Contains(err.Error(), "7731") {
		t.Errorf("observer error leaks: %v", err)
	}
}
