package storetest

import (
	"encoding/json"
	"errors"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/ipsfhir/ipsfhir/adapter/store"
)

// testConnectionSettings: what the console enables or disables is kept,
// replaced, cleared and survives a restart.
func testConnectionSettings(t *testing.T, s *suite) {
	ctx := t.Context()
	st := s.open(t)
	closed := false
	t.Cleanup(func() {
		if !closed {
			st.Close()
		}
	})
	if got, err := st.ConnectionSettings(ctx); err != nil || len(got) != 0 {
		t.Fatalf("ConnectionSettings on a new store = %+v, %v; want none", got, err)
	}
	at := time.Date(2026, 12, 3, 9, 30, 0, 123456000, time.UTC)
	for _, c := range []store.ConnectionSetting{
		{Name: "epic", Enabled: false, By: "ops", At: at},
		{Name: "cerner", Enabled: true, By: "ops", At: at},
		{Name: "epic", Enabled: true, By: "lead", At: at.Add(time.Minute)}, // replaces the first
	} {
		if err := st.SetConnectionSetting(ctx, c); err != nil {
			t.Fatalf("SetConnectionSetting(%+v): %v", c, err)
		}
	}
	if err := st.SetConnectionSetting(ctx, store.ConnectionSetting{Name: "x"}); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("SetConnectionSetting without who changed it = %v, want ErrInvalid", err)
	}
	want := []store.ConnectionSetting{
		{Name: "cerner", Enabled: true, By: "ops", At: at},
		{Name: "epic", Enabled: true, By: "lead", At: at.Add(time.Minute)},
	}
	check := func(st store.Store, want []store.ConnectionSetting) {
		t.Helper()
		got, err := st.ConnectionSettings(ctx)
		if err != nil {
			t.Fatalf("ConnectionSettings: %v", err)
		}
		if len(got) != len(want) {
			t.Fatalf("ConnectionSettings = %+v, want %+v", got, want)
		}
		for i := range want {
			if got[i].Name != want[i].Name || got[i].Enabled != want[i].Enabled || got[i].By != want[i].By || !got[i].At.Equal(want[i].At) {
				t.Errorf("setting %d = %+v, want %+v", i, got[i], want[i])
			}
		}
	}
	check(st, want)
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	closed = true
	st = s.openStore(t)
	check(st, want)
	if err := st.ClearConnectionSetting(ctx, "cerner"); err != nil {
		t.Fatalf("ClearConnectionSetting: %v", err)
	}
	if err := st.ClearConnectionSetting(ctx, "never-set"); err != nil {
		t.Errorf("ClearConnectionSetting of a connection never set = %v, want nil", err)
	}
	check(st, want[1:])
}

// testReadinessChecks: one run at a time per connection (an abandoned one
// gives way), its outcome kept with who ran it, and it survives a restart.
func testReadinessChecks(t *testing.T, s *suite) {
	ctx := t.Context()
	st := s.open(t)
	closed := false
	t.Cleanup(func() {
		if !closed {
			st.Close()
		}
	})
	if _, err := st.ReadinessCheck(ctx, "epic"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("ReadinessCheck before any run = %v, want ErrNotFound", err)
	}
	t0 := time.Date(2026, 12, 3, 10, 0, 0, 123456789, time.UTC)
	const running = 2 * time.Minute
	if err := st.StartReadinessCheck(ctx, "epic", "ops", t0, running); err != nil {
		t.Fatalf("StartReadinessCheck: %v", err)
	}
	got, err := st.ReadinessCheck(ctx, "epic")
	if err != nil || !got.Running() || got.By != "ops" || !got.Started.Equal(t0.Truncate(time.Microsecond)) {
		t.Fatalf("ReadinessCheck while running = %+v, %v; want running since %v by ops", got, err, t0)
	}
	// A second run while the first runs is refused, on this connection only.
	if err := st.StartReadinessCheck(ctx, "epic", "lead", t0.Add(time.Minute), running); !errors.Is(err, store.ErrConflict) {
		t.Errorf("a second StartReadinessCheck while one runs = %v, want ErrConflict", err)
	}
	if err := st.StartReadinessCheck(ctx, "cerner", "lead", t0.Add(time.Minute), running); err != nil {
		t.Errorf("StartReadinessCheck of another connection: %v", err)
	}
	report := []byte(`{"ready":true,"results":[{"id":"metadata.fhir-version","status":"pass"}]}`)
	done := t0.Add(40 * time.Second)
	if err := st.FinishReadinessCheck(ctx, "epic", t0, done, report, ""); err != nil {
		t.Fatalf("FinishReadinessCheck: %v", err)
	}
	if err := st.FinishReadinessCheck(ctx, "epic", t0, done, report, ""); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("FinishReadinessCheck of a run already finished = %v, want ErrNotFound", err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	closed = true
	st = s.openStore(t)
	got, err = st.ReadinessCheck(ctx, "epic")
	if err != nil || got.Running() || !got.Finished.Equal(done.Truncate(time.Microsecond)) || got.By != "ops" || got.Problem != "" {
		t.Fatalf("ReadinessCheck after a restart = %+v, %v; want finished at %v by ops", got, err, done)
	}
	if !jsonEqual(got.Report, report) {
		t.Errorf("report = %s, want %s", got.Report, report)
	}
	// A finished run gives way to the next at once; the next replaces it.
	t1 := t0.Add(time.Hour)
	if err := st.StartReadinessCheck(ctx, "epic", "lead", t1, running); err != nil {
		t.Fatalf("StartReadinessCheck after a finished run: %v", err)
	}
	got, _ = st.ReadinessCheck(ctx, "epic")
	if !got.Running() || got.Report != nil || got.By != "lead" {
		t.Errorf("a new run = %+v, want running by lead with no report", got)
	}
	// An unfinished run older than running was abandoned (its replica
	// stopped): the next run takes its place, and the old one cannot
	// finish over it.
	t2 := t1.Add(running)
	if err := st.StartReadinessCheck(ctx, "epic", "ops", t2, running); err != nil {
		t.Fatalf("StartReadinessCheck after an abandoned run: %v", err)
	}
	if err := st.FinishReadinessCheck(ctx, "epic", t1, t2, report, ""); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("the abandoned run finishing late = %v, want ErrNotFound", err)
	}
	if err := st.FinishReadinessCheck(ctx, "epic", t2, t2.Add(time.Second), nil, "no-config"); err != nil {
		t.Fatalf("FinishReadinessCheck with a problem: %v", err)
	}
	got, _ = st.ReadinessCheck(ctx, "epic")
	if got.Running() || got.Report != nil || got.Problem != "no-config" {
		t.Errorf("a run with a problem = %+v, want finished, no report, problem kept", got)
	}
	// Two replicas starting at once: one runs.
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Go(func() { errs[i] = st.StartReadinessCheck(ctx, "oracle", "ops", t0, running) })
	}
	wg.Wait()
	started := 0
	for _, err := range errs {
		switch {
		case err == nil:
			started++
		case !errors.Is(err, store.ErrConflict):
			t.Errorf("concurrent StartReadinessCheck: %v", err)
		}
	}
	if started != 1 {
		t.Errorf("%d of 4 concurrent starts ran, want 1", started)
	}
}

// jsonEqual reports whether two JSON documents hold the same value
// (PostgreSQL's jsonb keeps neither spacing nor key order).
func jsonEqual(a, b []byte) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	return reflect.DeepEqual(x, y)
}
