package syncer

import (
	"testing"

	"github.com/ipsfhir/ipsfhir/adapter/ehr"
	"github.com/ipsfhir/ipsfhir/adapter/telemetry"
	"github.com/ipsfhir/ipsfhir/adapter/telemetry/telemetrytest"
	"github.com/ipsfhir/ipsfhir/ips"
)

// Distinctive values planted in a client's record. None may appear in any
// log line, span or metric while the client is synced both ways, including
// when requests fail.
var planted = []string{
	"MRN-PLANTED-7731",          // the patient's EHR identifier
	"Zanzibar Quokka",           // the specialist's name on the plan
	"Xylophone bakery mornings", // the goal in the client's words
	"Quux Planted Diner",        // the employer
	"Vermilion Pastry Chef",     // the job title
	"call Mrs Plantedname",      // a support note
}

func plantClient(cl *ips.Caseload) {
	c := cl.Clients[0]
	yes := true
	c.Consent = &ips.Consent{EHR: &yes}
	c.Patient.Value = planted[0]
	c.Specialist = planted[1]
	c.Goals = append(c.Goals, &ips.Goal{ID: "g-planted", Description: planted[2], Status: ips.GoalActive, Start: c.EnrolledOn})
	c.Jobs = append(c.Jobs, &ips.Job{ID: "j-planted", Employer: planted[3], Title: planted[4], Start: c.EnrolledOn.AddDays(40),
		HoursPerWeek: 21, HourlyWage: ips.Money{Value: 17, Currency: "USD"}, Competitive: true})
	c.Supports = append(c.Supports, &ips.Support{ID: "s-planted", Type: ips.SupportJobDevelopment, Status: ips.SupportPlanned,
		Date: c.EnrolledOn.AddDays(3), Goal: "g-planted", Note: planted[5]})
}

func TestSyncLeaksNoPatientData(t *testing.T) {
	t.Parallel()
	capt := telemetrytest.New(t)
	r := newRig(t, "", plantClient)
	ctx := t.Context()
	client, err := ehr.New(ehr.Options{BaseURL: r.client.BaseURL(), Connection: "clinic", Logger: capt.Logger,
		TracerProvider: capt.TracerProvider, MeterProvider: capt.MeterProvider})
	if err != nil {
		t.Fatal(err)
	}
	r.conn.EHR = client
	r.engine.Logger = capt.Logger
	sm, err := telemetry.NewSyncMetrics(capt.MeterProvider, telemetry.SyncObservers{OutboxDepth: r.store.OutboxDepth})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sm.Close() })
	r.engine.Metrics = sm
	r.engine.Tracer = capt.TracerProvider.Tracer("test")

	r.enqueueAll(t)
	if s, err := r.engine.PushOnce(ctx); err != nil || s.Written == 0 {
		t.Fatalf("push: %+v %v", s, err)
	}
	c := r.cl.Clients[0]
	k := r.conn.Mapping.GoalKey(c, c.Goal("g-planted"))
	r.clinicianEdits(t, k, func(g map[string]any) { g["lifecycleStatus"] = "on-hold" })
	if s, err := r.engine.PullOnce(ctx); err != nil || s.Applied != 1 {
		t.Fatalf("pull: %+v %v", s, err)
	}
	// Failures log too: point the connection at a path the EHR rejects.
	bad, err := ehr.New(ehr.Options{BaseURL: r.client.BaseURL() + "/nonexistent", Connection: "clinic", Logger: capt.Logger,
		TracerProvider: capt.TracerProvider, MeterProvider: capt.MeterProvider, MaxAttempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	r.conn.EHR = bad
	c.Goal("g-planted").Description = planted[2] + " and afternoons"
	r.enqueueAll(t)
	if s, err := r.engine.PushOnce(ctx); err != nil || s.Failed == 0 {
		t.Fatalf("push against a failing EHR: %+v %v; want failures", s, err)
	}

	capt.Collect(t)
	if len(capt.Logs()) == 0 || len(capt.Spans.GetSpans()) == 0 {
		t.Fatal("nothing captured: the test would pass vacuously")
	}
	runs := 0
	for _, sp := range capt.Spans.GetSpans() {
		if sp.Name == "sync push" || sp.Name == "sync pull" {
			runs++
		}
	}
	if runs < 3 {
		t.Errorf("%d sync-run spans, want one per push and pull run", runs)
	}
	capt.AssertNoneOf(t, planted...)
}
