package syncer

import (
	"encoding/json"
	"fmt"
	"net/url"
	"testing"

	"github.com/ipsfhir/ipsfhir/adapter/store"
	"github.com/ipsfhir/ipsfhir/ips"
	"github.com/ipsfhir/ipsfhir/mappings"
)

// ehrGoal fetches the EHR's copy of a goal by business identifier.
func (r *rig) ehrGoal(t *testing.T, k mappings.Key) map[string]any {
	t.Helper()
	es, err := r.client.Search(t.Context(), "Goal", url.Values{"identifier": {k.System() + "|" + k.Value()}})
	if err != nil || len(es) != 1 {
		t.Fatalf("search goal: %d found, %v", len(es), err)
	}
	var g map[string]any
	if err := json.Unmarshal(es[0].Resource, &g); err != nil {
		t.Fatal(err)
	}
	return g
}

// clinicianEdits changes a goal in the EHR as a clinician would.
func (r *rig) clinicianEdits(t *testing.T, k mappings.Key, edit func(g map[string]any)) {
	t.Helper()
	g := r.ehrGoal(t, k)
	edit(g)
	body, _ := json.Marshal(g)
	if _, err := r.client.Update(t.Context(), "Goal", g["id"].(string), body, ""); err != nil {
		t.Fatalf("clinician's update: %v", err)
	}
}

func versionOf(g map[string]any) string { return g["meta"].(map[string]any)["versionId"].(string) }

func TestClinicianGoalChangeComesBackAndIsNotEchoed(t *testing.T) {
	t.Parallel()
	r := newRig(t, "")
	ctx := t.Context()
	r.enqueueAll(t)
	if s, err := r.engine.PushOnce(ctx); err != nil || s.Failed != 0 {
		t.Fatalf("push: %+v %v", s, err)
	}
	// A first pull sees only the adapter's own writes.
	s, err := r.engine.PullOnce(ctx)
	if err != nil || s.Applied != 0 || s.Echoes == 0 || s.Echoes != s.Seen {
		t.Fatalf("first pull: %+v %v; want only echoes", s, err)
	}

	var c *ips.Client
	for _, cc := range consenting(r.cl) {
		if len(cc.Goals) > 0 && cc.Goals[0].Status != ips.GoalCompleted {
			c = cc
			break
		}
	}
	k := r.conn.Mapping.GoalKey(c, c.Goals[0])
	r.clinicianEdits(t, k, func(g map[string]any) {
		g["lifecycleStatus"] = "completed"
		g["note"] = append(asList(g["note"]), map[string]any{"text": "Started at the bakery; goal met", "time": "2026-10-01"})
	})
	s, err = r.engine.PullOnce(ctx)
	if err != nil || s.Applied != 1 || s.Conflicts != 0 {
		t.Fatalf("pull after the clinician's change: %+v %v; want 1 applied, no conflict", s, err)
	}
	got, _, err := r.store.GetClient(ctx, c.ID)
	if err != nil {
		t.Fatal(err)
	}
	g := got.Goal(c.Goals[0].ID)
	if g.Status != ips.GoalCompleted || len(g.Notes) == 0 || g.Notes[len(g.Notes)-1].Text != "Started at the bakery; goal met" {
		t.Errorf("IPS goal after pull: status %s, notes %+v", g.Status, g.Notes)
	}

	// The change is not echoed back: the next push leaves the EHR's goal as
	// the clinician left it.
	before := versionOf(r.ehrGoal(t, k))
	if _, err := r.engine.PushOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if after := versionOf(r.ehrGoal(t, k)); after != before {
		t.Errorf("push rewrote the goal the clinician changed (version %s → %s): an echo", before, after)
	}
	if s, err := r.engine.PullOnce(ctx); err != nil || s.Applied != 0 {
		t.Errorf("pull after push: %+v %v; want nothing new", s, err)
	}
}

func TestBothSidesChangedIsAConflictWithTheConfiguredWinner(t *testing.T) {
	t.Parallel()
	r := newRig(t, "")
	ctx := t.Context()
	r.enqueueAll(t)
	if _, err := r.engine.PushOnce(ctx); err != nil {
		t.Fatal(err)
	}
	c := consenting(r.cl)[0]
	k := r.conn.Mapping.GoalKey(c, c.Goals[0])
	// The specialist puts the goal on hold; the clinician cancels it.
	stored, v, _ := r.store.GetClient(ctx, c.ID)
	stored.Goal(c.Goals[0].ID).Status = ips.GoalOnHold
	if _, err := r.store.SaveClients(ctx, []store.Stored{{Client: stored, Version: v}}, nil); err != nil {
		t.Fatal(err)
	}
	r.clinicianEdits(t, k, func(g map[string]any) { g["lifecycleStatus"] = "cancelled" })

	s, err := r.engine.PullOnce(ctx)
	if err != nil || s.Conflicts != 1 {
		t.Fatalf("pull: %+v %v; want one conflict", s, err)
	}
	cs, err := r.store.Conflicts(ctx, "clinic", false)
	if err != nil || len(cs) != 1 {
		t.Fatalf("conflicts: %+v %v", cs, err)
	}
	if cs[0].Field != "status" || cs[0].IPSValue != "on-hold" || cs[0].EHRValue != "cancelled" || cs[0].Winner != "ehr" {
		t.Errorf("conflict record %+v; want both sides of status kept, EHR winning", cs[0])
	}
	got, _, _ := r.store.GetClient(ctx, c.ID)
	if st := got.Goal(c.Goals[0].ID).Status; st != ips.GoalCancelled {
		t.Errorf("goal status %s, want the clinical side's cancelled", st)
	}
}

// referral is a ServiceRequest as a clinician's EHR writes it: status,
// intent, the SDOH employment category when coded, the subject, and
// optional performers (JSON references).
func referral(status, intent string, coded bool, subject, authored string, performers ...string) []byte {
	sr := map[string]any{"resourceType": "ServiceRequest", "status": status, "intent": intent,
		"code":       map[string]any{"text": "Referral to supported employment"},
		"subject":    json.RawMessage(subject),
		"authoredOn": authored}
	if coded {
		sr["category"] = []any{map[string]any{"coding": []any{map[string]any{"system": mappings.SystemSDOHCCTemporary, "code": "employment-status"}}}}
	}
	var ps []any
	for _, p := range performers {
		ps = append(ps, json.RawMessage(p))
	}
	if ps != nil {
		sr["performer"] = ps
	}
	b, _ := json.Marshal(sr)
	return b
}

// TestReferralMakesAReferredClientOnce: an active order to the program
// makes one client, referred and not enrolled (enrollment is a
// specialist's acceptance); a proposal to the state vocational-
// rehabilitation agency, an order addressed to that agency, a completed
// request and an unrelated order take in nobody.
func TestReferralMakesAReferredClientOnce(t *testing.T) {
	t.Parallel()
	r := newRig(t, "")
	ctx := t.Context()
	r.conn.PatientSystem = "https://ehr.example/Patient"
	r.conn.Referrals = mappings.ReferralMatch{Performers: []mappings.ReferralPerformer{{Reference: "HealthcareService/ips-riverside"}}}
	patient := func(mrn string) string {
		resp, err := r.client.Create(ctx, "Patient", []byte(`{"resourceType":"Patient","identifier":[{"system":"urn:oid:2.16.840.1.113883.3.9999.1","value":"`+mrn+`"}]}`), "")
		if err != nil {
			t.Fatal(err)
		}
		return resp.ResourceID
	}
	ref := func(id string) string { return fmt.Sprintf(`{"reference":"Patient/%s"}`, id) }
	vr := `{"identifier":{"system":"urn:oid:2.16.840.1.113883.3.9999.77","value":"state-vr"},"display":"State Vocational Rehabilitation"}`
	program := `{"reference":"HealthcareService/ips-riverside"}`
	wanted := patient("MRN-NEW-1")
	sr, err := r.client.Create(ctx, "ServiceRequest", referral("active", "order", false, ref(wanted), "2026-11-02", program), "")
	if err != nil {
		t.Fatal(err)
	}
	for _, other := range [][]byte{
		referral("active", "proposal", true, ref(patient("MRN-VR-1")), "2026-11-02", vr),
		referral("active", "order", true, ref(patient("MRN-VR-2")), "2026-11-02", vr),
		referral("completed", "order", true, ref(patient("MRN-DONE-3")), "2026-11-02", program),
		referral("draft", "order", true, ref(patient("MRN-DRAFT-4")), "2026-11-02"),
		[]byte(`{"resourceType":"ServiceRequest","status":"active","intent":"order","code":{"text":"chest CT"},"subject":{"reference":"Patient/x"},"authoredOn":"2026-11-02"}`),
	} {
		if _, err := r.client.Create(ctx, "ServiceRequest", other, ""); err != nil {
			t.Fatal(err)
		}
	}
	s, err := r.engine.PullOnce(ctx)
	if err != nil || s.Referred != 1 || s.Rereferred != 0 {
		t.Fatalf("pull: %+v %v; want one new referral", s, err)
	}
	list, _ := r.store.ListClients(ctx, "", 10)
	if len(list) != 1 {
		t.Fatalf("%d clients after the pull, want 1 (only the order to the program)", len(list))
	}
	c := list[0].Client
	if c.Patient.Value != wanted || c.Status != ips.ClientReferred || !c.EnrolledOn.IsZero() || c.ReferredOn != ips.MustDate("2026-11-02") ||
		c.Referral == nil || *c.Referral != (ips.ReferralSource{Connection: "clinic", ServiceRequest: sr.ResourceID}) {
		t.Errorf("client %+v; want referred on 2026-11-02 from the ServiceRequest, not enrolled", c)
	}
	if s, err := r.engine.PullOnce(ctx); err != nil || s.Referred != 0 {
		t.Errorf("second pull: %+v %v; the referral was taken in twice", s, err)
	}
}

// TestReferralOfAClosedClientOpensANewEpisode: a discharged client referred
// again is not ignored: the closed episode is kept in pastEpisodes, the
// client is referred again on the new date, and the pull counts a
// re-referral. Taken in once.
func TestReferralOfAClosedClientOpensANewEpisode(t *testing.T) {
	t.Parallel()
	r := newRig(t, "")
	ctx := t.Context()
	c := &ips.Client{ID: "c-closed", Patient: ips.Identifier{System: "https://ehr.example/mrn", Value: "MRN-CLOSED-5"},
		ReferredOn: ips.MustDate("2025-01-02"), EnrolledOn: ips.MustDate("2025-01-10"),
		ClosedOn: ips.MustDate("2025-09-30"), ClosedReason: "moved away", Status: ips.ClientClosed}
	if _, err := r.store.SaveClients(ctx, []store.Stored{{Client: c}}, nil); err != nil {
		t.Fatal(err)
	}
	subject := fmt.Sprintf(`{"identifier":{"system":%q,"value":%q}}`, c.Patient.System, c.Patient.Value)
	sr, err := r.client.Create(ctx, "ServiceRequest", referral("active", "order", true, subject, "2026-11-02"), "")
	if err != nil {
		t.Fatal(err)
	}
	s, err := r.engine.PullOnce(ctx)
	if err != nil || s.Rereferred != 1 || s.Referred != 0 {
		t.Fatalf("pull: %+v %v; want one re-referral", s, err)
	}
	got, _, err := r.store.GetClient(ctx, c.ID)
	if err != nil {
		t.Fatal(err)
	}
	past := ips.Episode{ReferredOn: c.ReferredOn, EnrolledOn: c.EnrolledOn, ClosedOn: c.ClosedOn, ClosedReason: c.ClosedReason}
	if len(got.PastEpisodes) != 1 || *got.PastEpisodes[0] != past {
		t.Errorf("past episodes %+v; want the closed one %+v", got.PastEpisodes, past)
	}
	if got.Status != ips.ClientReferred || got.ReferredOn != ips.MustDate("2026-11-02") || !got.EnrolledOn.IsZero() || !got.ClosedOn.IsZero() ||
		got.Referral == nil || got.Referral.ServiceRequest != sr.ResourceID || !got.Rereferred() {
		t.Errorf("client after the re-referral %+v; want referred again on 2026-11-02", got)
	}
	if list, _ := r.store.ListClients(ctx, "", 10); len(list) != 1 {
		t.Errorf("%d clients; the re-referral made a second client", len(list))
	}
	if s, err := r.engine.PullOnce(ctx); err != nil || s.Rereferred != 0 || s.Referred != 0 {
		t.Errorf("second pull: %+v %v; the referral was taken in twice", s, err)
	}
}

func asList(v any) []any {
	l, _ := v.([]any)
	return l
}

// TestStaleIPSOwnedResourceIsAConflictTheIPSSideWins: someone edits a job
// Observation in the EHR; the next push of that job meets 412, records a
// conflict, and writes the IPS content (job data is the IPS side's).
func TestStaleIPSOwnedResourceIsAConflictTheIPSSideWins(t *testing.T) {
	t.Parallel()
	r := newRig(t, "")
	ctx := t.Context()
	r.enqueueAll(t)
	if _, err := r.engine.PushOnce(ctx); err != nil {
		t.Fatal(err)
	}
	var c *ips.Client
	for _, cc := range consenting(r.cl) {
		if len(cc.Jobs) > 0 {
			c = cc
			break
		}
	}
	k := r.amendJobInEHR(t, c)
	c.Jobs[0].HoursPerWeek += 5
	r.enqueueAll(t)
	s, err := r.engine.PushOnce(ctx)
	if err != nil || s.Failed != 0 || s.Conflicts != 1 {
		t.Fatalf("push over a stale job: %+v %v; want one conflict, no failure", s, err)
	}
	r.wantJobConflictIPSWon(t, k)
}

// TestReferralForAnEnrolledClientDoesNotEnrollAgain: a clinician refers a
// patient who is already in the program (its records were pushed); no second
// client appears.
func TestReferralForAnEnrolledClientDoesNotEnrollAgain(t *testing.T) {
	t.Parallel()
	r := newRig(t, "")
	ctx := t.Context()
	r.conn.PatientSystem = "https://ehr.example/Patient"
	r.enqueueAll(t)
	if _, err := r.engine.PushOnce(ctx); err != nil {
		t.Fatal(err)
	}
	var c *ips.Client
	for _, cc := range consenting(r.cl) {
		if cc.EffectiveStatus() == ips.ClientActive {
			c = cc
			break
		}
	}
	pid, err := r.store.LedgerGet(ctx, "clinic", "Patient|"+c.Patient.System+"|"+c.Patient.Value)
	if err != nil {
		t.Fatal(err)
	}
	sr := fmt.Sprintf(`{"resourceType":"ServiceRequest","status":"active","intent":"order",
	 "category":[{"coding":[{"system":%q,"code":"employment-status"}]}],
	 "subject":{"reference":"Patient/%s"},"authoredOn":"2026-11-02"}`, mappings.SystemSDOHCCTemporary, pid.ResourceID)
	if _, err := r.client.Create(ctx, "ServiceRequest", []byte(sr), ""); err != nil {
		t.Fatal(err)
	}
	before, _ := r.store.ListClients(ctx, "", 1000)
	_, v, err := r.store.GetClient(ctx, c.ID)
	if err != nil {
		t.Fatal(err)
	}
	s, err := r.engine.PullOnce(ctx)
	if err != nil || s.Referred != 0 || s.Rereferred != 0 || s.Seen == 0 {
		t.Fatalf("pull: %+v %v; want the referral seen, nothing taken in", s, err)
	}
	after, _ := r.store.ListClients(ctx, "", 1000)
	if len(after) != len(before) {
		t.Errorf("%d clients before, %d after a referral of an enrolled client", len(before), len(after))
	}
	// The active client is not changed (a referral of a client in the
	// program is only remembered).
	if got, v2, _ := r.store.GetClient(ctx, c.ID); v2 != v || got.Status == ips.ClientReferred || len(got.PastEpisodes) != 0 {
		t.Errorf("active client changed by a new referral: version %d → %d, %+v", v, v2, got)
	}
}

// TestReferralForAnUnpushedClientDoesNotEnroll: a client entered in the
// program (imported, never pushed to this EHR) is referred in the EHR; the
// store knows the patient, so no second client appears.
func TestReferralForAnUnpushedClientDoesNotEnroll(t *testing.T) {
	t.Parallel()
	r := newRig(t, "")
	ctx := t.Context()
	c := &ips.Client{ID: "c-unpushed", EnrolledOn: ips.MustDate("2026-10-01"),
		Patient: ips.Identifier{System: "https://ehr.example/mrn", Value: "MRN-UNPUSHED-7"}}
	if _, err := r.store.SaveClients(ctx, []store.Stored{{Client: c}}, nil); err != nil {
		t.Fatal(err)
	}
	sr := fmt.Sprintf(`{"resourceType":"ServiceRequest","status":"active","intent":"order",
	 "category":[{"coding":[{"system":%q,"code":"employment-status"}]}],
	 "subject":{"identifier":{"system":%q,"value":%q}},"authoredOn":"2026-11-02"}`,
		mappings.SystemSDOHCCTemporary, c.Patient.System, c.Patient.Value)
	if _, err := r.client.Create(ctx, "ServiceRequest", []byte(sr), ""); err != nil {
		t.Fatal(err)
	}
	before, _ := r.store.ListClients(ctx, "", 1000)
	s, err := r.engine.PullOnce(ctx)
	if err != nil || s.Referred != 0 || s.Rereferred != 0 || s.Seen != 1 {
		t.Fatalf("pull: %+v %v; want the referral seen and nothing taken in", s, err)
	}
	after, _ := r.store.ListClients(ctx, "", 1000)
	if len(after) != len(before) {
		t.Errorf("%d clients before, %d after a referral of a client not yet pushed", len(before), len(after))
	}
	if s, err := r.engine.PullOnce(ctx); err != nil || s.Referred != 0 || s.Rereferred != 0 {
		t.Errorf("second pull: %+v %v", s, err)
	}
}

// amendJobInEHR edits c's first job Observation in the EHR, as someone
// there would (status amended), and returns the job's key.
func (r *rig) amendJobInEHR(t *testing.T, c *ips.Client) mappings.Key {
	t.Helper()
	k := r.conn.Mapping.JobKey(c, c.Jobs[0])
	es, err := r.client.Search(t.Context(), "Observation", url.Values{"identifier": {k.System() + "|" + k.Value()}})
	if err != nil || len(es) != 1 {
		t.Fatalf("find job: %d %v", len(es), err)
	}
	var obs map[string]any
	_ = json.Unmarshal(es[0].Resource, &obs)
	obs["status"] = "amended"
	body, _ := json.Marshal(obs)
	if _, err := r.client.Update(t.Context(), "Observation", obs["id"].(string), body, ""); err != nil {
		t.Fatal(err)
	}
	return k
}

// wantJobConflictIPSWon checks the one open conflict is on job k, won by
// the IPS side, and the EHR holds the IPS content again (status final).
func (r *rig) wantJobConflictIPSWon(t *testing.T, k mappings.Key) {
	t.Helper()
	cs, _ := r.store.Conflicts(t.Context(), "clinic", false)
	if len(cs) != 1 || cs[0].Winner != "ips" || cs[0].Key != k.System()+"|"+k.Value() {
		t.Errorf("conflict records %+v", cs)
	}
	es, err := r.client.Search(t.Context(), "Observation", url.Values{"identifier": {k.System() + "|" + k.Value()}})
	if err != nil || len(es) != 1 {
		t.Fatalf("find job: %d %v", len(es), err)
	}
	var obs map[string]any
	_ = json.Unmarshal(es[0].Resource, &obs)
	if obs["status"] != "final" {
		t.Errorf("EHR job status %v after push, want the IPS content (final)", obs["status"])
	}
}
