package ehr_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"sync/atomic"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/ipsfhir/ipsfhir/adapter/ehr"
)

// idSystem is the business-identifier namespace the tests write under.
const idSystem = "urn:ipsfhir:test:goal"

var seq atomic.Int64

// unique returns a value no other test in this run uses.
func unique(prefix string) string { return fmt.Sprintf("%s-%d", prefix, seq.Add(1)) }

// newClient builds a client for base with o and a span recorder, so tests
// can count attempts (http.request.resend_count) without a fake.
func newClient(t *testing.T, base string, o ehr.Options) (*ehr.Client, *tracetest.SpanRecorder) {
	t.Helper()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	o.BaseURL = base
	if o.TracerProvider == nil {
		o.TracerProvider = tp
	}
	c, err := ehr.New(o)
	if err != nil {
		t.Fatalf("ehr.New: %v", err)
	}
	return c, rec
}

// resends returns the http.request.resend_count of each ended span.
func resends(rec *tracetest.SpanRecorder) []int64 {
	var out []int64
	for _, s := range rec.Ended() {
		for _, a := range s.Attributes() {
			if a.Key == "http.request.resend_count" {
				out = append(out, a.Value.AsInt64())
			}
		}
	}
	return out
}

// spanAttr returns attribute key of the last ended span.
func spanAttr(rec *tracetest.SpanRecorder, key attribute.Key) (attribute.Value, bool) {
	spans := rec.Ended()
	if len(spans) == 0 {
		return attribute.Value{}, false
	}
	for _, a := range spans[len(spans)-1].Attributes() {
		if a.Key == key {
			return a.Value, true
		}
	}
	return attribute.Value{}, false
}

func goalJSON(t testing.TB, patientRef, idValue string) []byte {
	t.Helper()
	b, err := json.Marshal(map[string]any{
		"resourceType":    "Goal",
		"lifecycleStatus": "active",
		"description":     map[string]any{"text": "Work 20 hours a week in retail"},
		"subject":         map[string]any{"reference": patientRef},
		"identifier":      []any{map[string]any{"system": idSystem, "value": idValue}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// countGoals returns how many Goals carry identifier idValue.
func countGoals(t *testing.T, c *ehr.Client, idValue string) int {
	t.Helper()
	entries, err := c.Search(context.Background(), "Goal", url.Values{"identifier": {idSystem + "|" + idValue}})
	if err != nil {
		t.Fatalf("search Goal by identifier: %v", err)
	}
	return len(entries)
}

// asError returns err as *ehr.Error or fails the test.
func asError(t *testing.T, err error) *ehr.Error {
	t.Helper()
	var e *ehr.Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v (%T) is not an *ehr.Error", err, err)
	}
	return e
}

// wantKind checks that err is an *ehr.Error of kind k, matched by the sentinel.
func wantKind(t *testing.T, err error, k ehr.Kind) *ehr.Error {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want kind %v", k)
	}
	e := asError(t, err)
	if e.Kind != k || !errors.Is(err, k) {
		t.Fatalf("error %q has kind %v, want %v", err, e.Kind, k)
	}
	return e
}
