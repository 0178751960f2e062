package syncer

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ipsfhir/ipsfhir/adapter/plan"
	"github.com/ipsfhir/ipsfhir/adapter/store"
	"github.com/ipsfhir/ipsfhir/conformance/peer"
	"github.com/ipsfhir/ipsfhir/ips"
	"github.com/ipsfhir/ipsfhir/mappings"
)

// referrerTaskSeed is an Epic chart with three referrals to the program:
// sr-0 has the referrer's fulfill Task (requested) and an older Task of
// another kind on it; sr-1 has a Task the referrer cancelled; sr-2 has no
// Task. Another referral's Task (sr-other) is there too.
func referrerTaskSeed(t *testing.T) string {
	t.Helper()
	var lines []string
	add := func(v any) {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		lines = append(lines, string(b))
	}
	coded := []any{map[string]any{"coding": []any{map[string]any{"system": mappings.SystemSDOHCCTemporary, "code": "employment-status"}}}}
	for i := range 3 {
		add(map[string]any{"resourceType": "Patient", "id": fmt.Sprintf("rt-pt-%d", i), "identifier": []any{map[string]any{"system": "urn:x", "value": fmt.Sprintf("MRN-RT-%d", i)}}})
		add(map[string]any{"resourceType": "ServiceRequest", "id": fmt.Sprintf("sr-%d", i), "status": "active", "intent": "order",
			"code": map[string]any{"text": "Referral to supported employment"}, "category": coded,
			"subject": map[string]any{"reference": fmt.Sprintf("Patient/rt-pt-%d", i)}, "authoredOn": "2026-11-02"})
	}
	add(map[string]any{"resourceType": "ServiceRequest", "id": "sr-other", "status": "active", "intent": "order",
		"code": map[string]any{"text": "Cardiology consult"}, "subject": map[string]any{"reference": "Patient/rt-pt-0"}, "authoredOn": "2026-11-02"})
	task := func(id, focus, status string, fulfill bool) {
		tk := map[string]any{"resourceType": "Task", "id": id, "status": status, "intent": "order",
			"focus": map[string]any{"reference": "ServiceRequest/" + focus}, "authoredOn": "2026-11-02",
			"requester": map[string]any{"display": "Dr. Referrer"}, "description": "Please see for supported employment"}
		if fulfill {
			tk["code"] = map[string]any{"coding": []any{map[string]any{"system": mappings.SystemTaskCode, "code": "fulfill"}}}
		}
		add(tk)
	}
	task("task-sr0-note", "sr-0", "requested", false)
	task("task-sr0", "sr-0", "requested", true)
	task("task-sr1", "sr-1", "cancelled", true)
	task("task-other", "sr-other", "requested", true)
	path := filepath.Join(t.TempDir(), "seed.ndjson")
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestReferralsAreAnsweredOnTheReferrersTask: Epic declares Task read,
// search and update but not create. The referral is answered on the
// referrer's own fulfill Task: received once taken in, accepted when the
// specialist enrolls the client; the rest of the referrer's Task is kept.
// A Task the referrer cancelled is left cancelled, a referral without a
// Task gets none, other Tasks are untouched, no Task is created (the peer
// enforces Epic's statement: nothing answered 405), and a push with the
// same answer sends nothing.
func TestReferralsAreAnsweredOnTheReferrersTask(t *testing.T) {
	t.Parallel()
	r := newRigWith(t, peer.Options{Seed: referrerTaskSeed(t), Capability: filepath.Join("..", "..", "testdata", "ehr-capabilities", "epic-r4-sandbox-2026-07.json")})
	ctx := t.Context()
	if cp := r.conn.Plan.Concept(plan.ReferralLoop); cp.Path != plan.Native || !r.conn.Plan.AnswersReferrerTasks() || !strings.Contains(cp.Why, "referrer's own Task") {
		t.Fatalf("referral-loop plan on Epic %+v, want the referrer's Tasks answered", cp)
	}
	r.conn.PatientSystem = "https://ehr.example/Patient"
	if s, err := r.engine.PullOnce(ctx); err != nil || s.Referred != 3 {
		t.Fatalf("pull: %+v %v; want three referrals taken in", s, err)
	}
	if s, err := r.engine.PushOnce(ctx); err != nil || s.Failed != 0 {
		t.Fatalf("push: %+v %v", s, err)
	}
	want := map[string]string{"task-sr0": "received", "task-sr0-note": "requested", "task-sr1": "cancelled", "task-other": "requested"}
	r.wantTasks(t, want)

	// The specialist accepts the client of sr-0 and declines sr-1's.
	page, err := r.store.ListClients(ctx, "", 100)
	if err != nil {
		t.Fatal(err)
	}
	var changed []store.Stored
	for _, st := range page {
		c := st.Client
		if c.Referral == nil {
			continue
		}
		switch c.Referral.ServiceRequest {
		case "sr-0":
			err = c.Accept(ips.MustDate("2026-11-09"))
		case "sr-1":
			err = c.Decline(ips.MustDate("2026-11-20"), "could not be reached")
		default:
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		changed = append(changed, st)
	}
	if _, err := r.store.SaveClients(ctx, changed, []string{"clinic"}); err != nil {
		t.Fatal(err)
	}
	if s, err := r.engine.PushOnce(ctx); err != nil || s.Failed != 0 {
		t.Fatalf("push of the decisions: %+v %v", s, err)
	}
	want["task-sr0"] = "accepted"
	r.wantTasks(t, want)
	got := r.task(t, "task-sr0")
	if got["description"] != "Please see for supported employment" || refDisplay(got["requester"]) != "Dr. Referrer" || got["lastModified"] == nil {
		t.Errorf("the referrer's Task lost its own content or has no lastModified: %v", got)
	}

	// Nothing changed: nothing is searched or sent.
	tasksBefore := r.searches("Task")
	r.enqueueAll(t)
	for _, st := range page {
		if err := r.store.Enqueue(ctx, "clinic", st.Client.ID); err != nil {
			t.Fatal(err)
		}
	}
	if s, err := r.engine.PushOnce(ctx); err != nil || s.Failed != 0 {
		t.Fatalf("push with nothing changed: %+v %v", s, err)
	}
	r.wantTasks(t, want)
	// sr-2 has no Task: it is looked for again at each of its pushes, the
	// others are answered and cost nothing.
	if n := r.searches("Task") - tasksBefore; n != 1 {
		t.Errorf("%d Task searches on a push with the answers given, want 1 (the referral without a Task)", n)
	}
	if refused := r.refused("405"); len(refused) > 0 {
		t.Errorf("the adapter sent what Epic does not declare: %v", refused)
	}
	if n := len(r.referralTasks(t)["sr-2"]); n != 0 {
		t.Errorf("%d Tasks on the referral that had none; the adapter must not make them here", n)
	}
}

// wantTasks checks the status of Tasks by id.
func (r *rig) wantTasks(t *testing.T, want map[string]string) {
	t.Helper()
	for id, status := range want {
		if got := r.task(t, id)["status"]; got != status {
			t.Errorf("Task %s is %v, want %s", id, got, status)
		}
	}
}

func (r *rig) task(t *testing.T, id string) map[string]any {
	t.Helper()
	resp, err := r.client.Read(t.Context(), "Task", id)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(resp.Body, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func refDisplay(v any) string {
	m, _ := v.(map[string]any)
	s, _ := m["display"].(string)
	return s
}
