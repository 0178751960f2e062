package telemetry

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"
)

// planted are values shaped like the patient data the adapter handles.
// None of them may reach a log line, whichever way it is passed.
var planted = []string{
	"Jane Planted-Doe",
	"PLANTED-DOE, JANE", // how EHRs often print names
	"Planteddoe",        // a lone surname
	"MRN-PLANTED-7731",
	"1984-03-12", // a date of birth
	"Client disclosed a relapse after losing the warehouse job",
	"Patient?identifier=urn:oid:1.2|MRN-PLANTED-7731",
	"jane.planted@example.org",
	"https://ehr.example.org/fhir/Patient?family=Planteddoe&birthdate=1984-03-12",
	"(555) 014-7731",
	"a3f2c1d0-7731-4b1e-9c2a-5e6f7a8b9c0d", // an EHR resource id
	`{"resourceType":"Patient","name":[{"family":"Planteddoe"}]}`,
}

// plantedError misbehaves: its LogSafe quotes the value it failed on.
type plantedError struct{ value string }

func (e *plantedError) Error() string   { return "lookup " + e.value }
func (e *plantedError) LogSafe() string { return "ehr.lookup: not_found " + e.value }

// safeError is what the adapter's error types look like: a full message
// for the caller, a patient-free summary for the log.
type safeError struct{ op, kind, detail string }

func (e *safeError) Error() string   { return e.op + ": " + e.kind + ": " + e.detail }
func (e *safeError) LogSafe() string { return e.op + ": " + e.kind }

type stringer struct{ s string }

func (s stringer) String() string { return s.s }

type valuer struct{ s string }

func (v valuer) LogValue() slog.Value { return slog.StringValue(v.s) }

type namedString string

type namedBool bool

// ways passes one planted value to a logger in every way we could think
// of a caller doing it.
func ways(p string) map[string]func(l *slog.Logger) {
	dob, _ := time.Parse("2006-01-02", "1984-03-12")
	w := map[string]func(l *slog.Logger){
		"unknown key":       func(l *slog.Logger) { l.Info("sync finished", "name", p) },
		"unknown key int":   func(l *slog.Logger) { l.Info("sync finished", "mrn", 7731, "name", slog.StringValue(p)) },
		"key is the value":  func(l *slog.Logger) { l.Info("sync finished", p, "ok") },
		"bad key":           func(l *slog.Logger) { l.Info("sync finished", []any{p}...) }, // slog's !BADKEY
		"message":           func(l *slog.Logger) { l.Info(p) },
		"message with":      func(l *slog.Logger) { l.Info("wrote goal for " + p) },
		"message formatted": func(l *slog.Logger) { l.Info(fmt.Sprintf("client %s enrolled", p)) },
		"group member": func(l *slog.Logger) {
			l.Info("sync finished", slog.Group("client", slog.String("op", p), slog.String("family", p)))
		},
		"group name":      func(l *slog.Logger) { l.Info("sync finished", slog.Group(p, slog.Int("count", 1))) },
		"with":            func(l *slog.Logger) { l.With("op", p, "name", p).Info("sync finished") },
		"with group name": func(l *slog.Logger) { l.WithGroup(p).Info("sync finished", "count", 1) },
		"nested": func(l *slog.Logger) {
			l.With(slog.Group("a", slog.Group("b", slog.String("connection", p)))).
				WithGroup("g").
				Info("sync finished", slog.Group("c", "route", p, slog.Group("d", "resource_type", p)))
		},
		"inline group": func(l *slog.Logger) { l.Info("sync finished", slog.Group("", slog.String("kind", p))) },
		"error":        func(l *slog.Logger) { l.Error("write failed", "error", errors.New(p)) },
		"wrapped error": func(l *slog.Logger) {
			l.Error("write failed", "err", fmt.Errorf("ehr.write %s: %w", p, errors.New(p)))
		},
		"url error": func(l *slog.Logger) {
			l.Error("write failed", "error", &url.Error{Op: "Get", URL: p, Err: errors.New(p)})
		},
		"joined errors":  func(l *slog.Logger) { l.Error("write failed", "error", errors.Join(errors.New(p), errors.New(p))) },
		"unsafe LogSafe": func(l *slog.Logger) { l.Error("write failed", "error", &plantedError{p}) },
		"wrapped LogSafe": func(l *slog.Logger) {
			l.Error("write failed", "error", fmt.Errorf("%s: %w", p, &safeError{"ehr.write", "conflict", p}))
		},
		"error string":      func(l *slog.Logger) { l.Error("write failed", "error", "lookup failed for "+p) },
		"error under other": func(l *slog.Logger) { l.Error("write failed", "cause", errors.New(p)) },
		"valuer":            func(l *slog.Logger) { l.Info("sync finished", "op", valuer{p}) },
		"stringer":          func(l *slog.Logger) { l.Info("sync finished", "op", stringer{p}) },
		"named string":      func(l *slog.Logger) { l.Info("sync finished", "resource_type", namedString(p)) },
		"struct":            func(l *slog.Logger) { l.Info("sync finished", "op", struct{ Name string }{p}) },
		"map":               func(l *slog.Logger) { l.Info("sync finished", "count", map[string]string{"name": p}) },
		"slice":             func(l *slog.Logger) { l.Info("sync finished", "op", []string{p}) },
		"bytes":             func(l *slog.Logger) { l.Info("sync finished", "body", []byte(p)) },
		"raw json":          func(l *slog.Logger) { l.Info("sync finished", "route", json.RawMessage(`"`+p+`"`)) },
		"time":              func(l *slog.Logger) { l.Info("sync finished", "duration", dob, "birth_date", dob) },
		// "since" takes times, but not one shaped like a date of birth, in
		// UTC or local, nor a date in a string.
		"time under since": func(l *slog.Logger) {
			l.Info("sync finished", "since", dob, slog.Time("since", dob.In(time.FixedZone("east", 5*3600))), "since", "1984-03-12T10:11:12Z")
		},
		"debug level": func(l *slog.Logger) { l.Debug("sync finished", "op", p) },
		"log attrs":   func(l *slog.Logger) { l.LogAttrs(context.Background(), slog.LevelWarn, p, slog.String("op", p)) },
		"with then group": func(l *slog.Logger) {
			l.With("kind", p).WithGroup("ehr").With("status", p).Info("sync finished", "hashed_id", p)
		},
	}
	// Every allowed key, so that no rule is looser than it should be.
	for key := range allowList {
		w["allowed key "+key] = func(l *slog.Logger) { l.Info("sync finished", key, p) }
		w["allowed key in group "+key] = func(l *slog.Logger) { l.WithGroup("ehr").Info("sync finished", slog.Group("req", key, p)) }
		w["allowed key with "+key] = func(l *slog.Logger) { l.With(key, p).Info("sync finished") }
	}
	return w
}

func TestLoggerNeverPrintsPlantedValues(t *testing.T) {
	for _, format := range []string{"json", "text"} {
		for _, p := range planted {
			ws := ways(p)
			names := make([]string, 0, len(ws))
			for name := range ws {
				names = append(names, name)
			}
			sort.Strings(names)
			for _, name := range names {
				var buf bytes.Buffer
				ws[name](NewLogger(&buf, slog.LevelDebug, format))
				out := buf.String()
				if out == "" {
					t.Errorf("%s/%s/%q: nothing logged; the test proves nothing", format, name, p)
					continue
				}
				if leaked(out, p) {
					t.Errorf("%s/%s: planted %q leaked:\n%s", format, name, p, out)
				}
			}
		}
	}
}

var recordTime = regexp.MustCompile(`"time":"[^"]*"|time=\S+`)

// leaked looks for p, and for the parts of p that are data on their own,
// in any case and in JSON-escaped form.
func leaked(out, p string) bool {
	// The record's own time comes from the clock, and its fractional
	// seconds may hold any digits.
	out = recordTime.ReplaceAllString(out, "")
	low := strings.ToLower(out)
	needles := []string{p}
	if b, err := json.Marshal(p); err == nil {
		needles = append(needles, string(b[1:len(b)-1]))
	}
	for _, part := range []string{"MRN-PLANTED-7731", "Planteddoe", "7731", "1984-03-12", "planted@"} {
		if strings.Contains(p, part) {
			needles = append(needles, part)
		}
	}
	for _, n := range needles {
		if strings.Contains(low, strings.ToLower(n)) {
			return true
		}
	}
	return false
}

func TestLoggerPrintsSafeValues(t *testing.T) {
	hid := HashID("MRN-PLANTED-7731")
	log := func(l *slog.Logger) {
		l.With("component", "sync", slog.Group("ehr", "connection", "epic-sandbox")).
			WithGroup("req").
			Warn("EHR write failed, will retry",
				"op", "ehr.write",
				"method", "PUT",
				"route", "/fhir/{type}/{id}",
				"resource_type", "CarePlan",
				"status", 412,
				"attempt", 3,
				"duration", 1500*time.Millisecond,
				"blame", namedString("external"),
				"outcome", "conflict",
				"hashed_id", hid,
				"version", "v1.2.3",
				"attempts", 2,
				"failed", 4,
				"dead", true,
				"caller", "sync-bot",
				"cause", "reset",
				"since", time.Date(2026, 10, 1, 14, 30, 5, 123456789, time.FixedZone("CEST", 2*3600)),
				"error", fmt.Errorf("push: %w", &safeError{"ehr.write", "conflict", "MRN-PLANTED-7731"}),
			)
	}

	var buf bytes.Buffer
	log(NewLogger(&buf, slog.LevelInfo, "json"))
	var got map[string]any
	if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
		t.Fatalf("not one JSON object: %v\n%s", err, buf.String())
	}
	want := map[string]any{
		"msg":       "EHR write failed, will retry",
		"level":     "WARN",
		"component": "sync",
		"ehr":       map[string]any{"connection": "epic-sandbox"},
		"req": map[string]any{
			"op": "ehr.write", "method": "PUT", "route": "/fhir/{type}/{id}",
			"resource_type": "CarePlan", "status": float64(412), "attempt": float64(3),
			"duration": float64(1500 * time.Millisecond), "blame": "external", "outcome": "conflict",
			"hashed_id": hid, "version": "v1.2.3", "error": "ehr.write: conflict",
			"attempts": float64(2), "failed": float64(4), "dead": true, "caller": "sync-bot",
			"cause": "reset", "since": "2026-10-01T12:30:05Z",
		},
	}
	delete(got, "time")
	if g, w := mustJSON(t, got), mustJSON(t, want); g != w {
		t.Errorf("json record:\n got %s\nwant %s", g, w)
	}

	buf.Reset()
	log(NewLogger(&buf, slog.LevelInfo, "text"))
	for _, s := range []string{
		`msg="EHR write failed, will retry"`, "component=sync", "ehr.connection=epic-sandbox",
		"req.op=ehr.write", "req.route=/fhir/{type}/{id}", "req.status=412", "req.duration=1.5s",
		"req.hashed_id=" + hid, `req.error="ehr.write: conflict"`,
		"req.dead=true", "req.caller=sync-bot", "req.since=2026-10-01T12:30:05Z", "req.attempts=2",
	} {
		if !strings.Contains(buf.String(), s) {
			t.Errorf("text record lacks %s:\n%s", s, buf.String())
		}
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v) // map keys are sorted, so equal maps compare equal.
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestLoggerRedactsVisibly(t *testing.T) {
	// A redacted value keeps its key, so whoever reads the log knows
	// something was there and can add a rule if it was safe after all.
	var buf bytes.Buffer
	NewLogger(&buf, slog.LevelInfo, "json").Info("Jane", "family", "Doe", "op", "Doe", "Doe", 1)
	var got map[string]any
	if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]any{"msg": RedactedMessage, "family": Redacted, "op": Redacted, redactedKey: Redacted} {
		if got[k] != want {
			t.Errorf("%s = %v, want %v", k, got[k], want)
		}
	}
}

func TestLoggerLevelAndFormat(t *testing.T) {
	var buf bytes.Buffer
	l := NewLogger(&buf, slog.LevelWarn, "yaml") // unknown format: JSON
	l.Info("dropped")
	l.Warn("kept")
	if out := buf.String(); strings.Contains(out, "dropped") || !strings.HasPrefix(out, "{") {
		t.Errorf("level or format ignored: %s", out)
	}
}

func TestRules(t *testing.T) {
	tests := []struct {
		key  string
		val  any
		want bool
	}{
		{"op", "ehr.write", true},
		{"op", "store.PutClient", true},
		{"op", "sync/push", true},
		{"op", "", true},
		{"op", "Jane", false},
		{"op", "ehr write", false},
		{"op", "mrn-7731", false},
		{"op", "a1b2c3", false},
		{"op", "x@y", false},
		{"op", "a=b", false},
		{"op", 3, false},
		{"connection", "epic-sandbox", true},
		{"connection", "clinic_a", true},
		{"connection", "Clinic A", false},
		{"route", "/api/v1/clients/{id}", true},
		{"route", "/fhir/{type}/{id}/_history/{vid}", true},
		{"route", "/fhir/Patient/$export", true},
		{"route", "/fhir/Goal", true},
		{"route", "/", true},
		{"route", "/fhir/Patient/12345", false},
		{"route", "/fhir/Patient/abc-def-ghi9-8a7", false},
		{"route", "/fhir/Patient?identifier=x", false},
		{"route", "/fhir/Smith", false},
		{"route", "fhir/Goal", false},
		{"resource_type", "Goal", true},
		{"resource_type", "DocumentReference", true},
		{"resource_type", "Smith", false},
		{"resource_type", "goal", false},
		{"status", 404, true},
		{"status", "404", true},
		{"status", "active", true},
		{"status", 7731, false},
		{"status", "7731", false},
		{"hashed_id", "h:0123456789abcdef", true},
		{"hashed_id", "0123456789abcdef", false},
		{"hashed_id", "MRN-1", false},
		{"version", "v0.3.1", true},
		{"version", "1.2.3-rc.1+abc", true},
		{"version", "(devel)", true},
		{"version", "W/\"3\"", false},
		{"version", "a3f2c1d0-7731-4b1e-9c2a-5e6f7a8b9c0d", false},
		{"addr", "127.0.0.1:8080", true},
		{"addr", "[::1]:8080", true},
		{"addr", "jane@host:80", false},
		{"trace_id", strings.Repeat("ab", 16), true},
		{"trace_id", "Jane", false},
		{"method", "GET", true},
		{"method", "get", false},
		{"blame", "external", true},
		{"blame", "patient", false},
		{"outcome", "conflict", true},
		{"direction", "sideways", false},
		{"attempt", 3, true},
		{"attempt", "3", false},
		{"duration", time.Second, true},
		{"duration", 1.5, true},
		{"duration", time.Now(), false},
		{"worker", 2, true},
		{"worker", "outbox", true},
		{"error", "context canceled", true},
		{"error", "lookup MRN-1 failed", false},
		{"attempts", 3, true},
		{"attempts", "3", false},
		{"failed", 12, true},
		{"failed", "MRN-7731", false},
		{"dead", true, true},
		{"dead", false, true},
		{"dead", namedBool(true), true},
		{"dead", 1, false},
		{"dead", "true", false},
		{"dead", 7731, false},
		{"caller", "jordan", true},
		{"caller", "sync-bot", true},
		{"caller", "Jane Doe 1980-01-02", false},
		{"caller", "Jane", false},
		{"caller", "jane.doe@example.org", false},
		{"caller", "mrn-7731", false},
		{"cause", "reset", true},
		{"cause", "timeout", true},
		{"cause", "read tcp 127.0.0.1:34710->127.0.0.1:8080: connection reset by peer", false},
		{"cause", "connection reset", false},
		{"since", time.Date(2026, 10, 1, 14, 30, 5, 0, time.UTC), true},
		{"since", time.Date(2026, 10, 1, 0, 0, 0, 1, time.UTC), true},
		{"since", time.Date(1984, 3, 12, 0, 0, 0, 0, time.UTC), false},
		{"since", time.Date(2005, 3, 12, 0, 0, 0, 0, time.UTC), false},
		{"since", time.Date(1984, 3, 12, 9, 30, 0, 0, time.UTC), false},
		{"since", "2026-10-01T14:30:05Z", false},
		{"since", time.Hour, false},
		{"error_kind", "http-5xx", true},
		{"error_kind", "outcome-unknown", true},
		{"error_kind", "ehr: update Goal: transient (HTTP 500) after 3 attempts: reset", false},
	}
	for _, tc := range tests {
		a := sanitize(slog.Any(tc.key, tc.val))
		got := a.Value.Kind() != slog.KindString || a.Value.String() != Redacted
		if got != tc.want {
			t.Errorf("%s=%#v: allowed %v, want %v", tc.key, tc.val, got, tc.want)
		}
	}
}

func TestSafeText(t *testing.T) {
	tests := []struct {
		msg  string
		want bool
	}{
		{"sync finished", true},
		{"EHR write failed, will retry", true},
		{"wrote Goal and CarePlan to the EHR", true},
		{"listening on /metrics", true},
		{"retry 3 of 5", true},
		{"ehr.write: conflict", true},
		{"update Goal: http-5xx", true},
		{"GET Goal: reset", true},
		{"POST system: outcome-unknown", true},
		{"", true},
		{"Starting server", false},
		{"wrote goal for Jane", false},
		{"MRN-PLANTED-7731", false},
		{"born 1984-03-12", false},
		{"mail jane@example.org", false},
		{"GET /fhir/Patient?identifier=x", false},
		{"GET /fhir/Patient/12345", false},
		{"retry 7731", false},
		{strings.Repeat("word ", 20), false},
	}
	for _, tc := range tests {
		if got := safeText(tc.msg); got != tc.want {
			t.Errorf("safeText(%q) = %v, want %v", tc.msg, got, tc.want)
		}
	}
}

func TestResourceTypes(t *testing.T) {
	for _, rt := range []string{"Goal", "CarePlan", "Observation", "DocumentReference", "ServiceRequest", "Patient", "Bundle", "OperationOutcome"} {
		if !IsResourceType(rt) {
			t.Errorf("IsResourceType(%q) = false", rt)
		}
	}
	for _, s := range []string{"", "goal", "Smith", "ContainedResource", "Reference"} {
		if IsResourceType(s) {
			t.Errorf("IsResourceType(%q) = true", s)
		}
	}
	// R4 has 145 resource types plus the abstract DomainResource and
	// Resource; the library models the concrete ones. A big change in the
	// count means the descriptor walk broke, not that FHIR changed.
	if n := len(resourceTypes()); n < 140 || n > 150 {
		t.Errorf("%d resource types, want about 145", n)
	}
}

type panicky struct{}

func (panicky) String() string  { panic("MRN-PLANTED-7731") }
func (panicky) Error() string   { return "MRN-PLANTED-7731" }
func (panicky) LogSafe() string { panic("MRN-PLANTED-7731") }

// A String or LogSafe method that panics must neither crash the caller nor
// print its panic value.
func TestLoggerSurvivesPanickingMethods(t *testing.T) {
	var buf bytes.Buffer
	NewLogger(&buf, slog.LevelInfo, "json").Info("sync finished", "op", panicky{}, "error", panicky{}, slog.Attr{})
	out := buf.String()
	if strings.Contains(out, "7731") {
		t.Errorf("panic value printed: %s", out)
	}
	if !strings.Contains(out, `"op":"[redacted]"`) || !strings.Contains(out, `"error":"telemetry.panicky"`) {
		t.Errorf("unexpected record: %s", out)
	}
	if strings.Contains(out, redactedKey) {
		t.Errorf("empty attribute printed: %s", out)
	}
}

func TestIsToken(t *testing.T) {
	for s, want := range map[string]bool{
		"epic-sandbox": true, "clinic_a": true, "oracle.prod": true, "v2": true,
		"": false, "Epic": false, "clinic 1": false, "clinic-2024": false, "a@b": false,
		strings.Repeat("a", 65): false,
	} {
		if got := IsToken(s); got != want {
			t.Errorf("IsToken(%q) = %v, want %v", s, got, want)
		}
	}
}
