package syncer

import (
	"encoding/json"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ipsfhir/ipsfhir/adapter/plan"
	"github.com/ipsfhir/ipsfhir/adapter/store"
	"github.com/ipsfhir/ipsfhir/ips"
)

// TestReferralsAreAnsweredInTheEHR: the referrer hears back in the EHR,
// the SDOH Clinical Care way: each referral taken in gets a Task whose
// focus is its ServiceRequest, received while the client waits, accepted
// when a specialist enrolls them, rejected when the referral is declined;
// one Task per referral, however often the client is pushed.
func TestReferralsAreAnsweredInTheEHR(t *testing.T) {
	t.Parallel()
	r := newRig(t, "")
	ctx := t.Context()
	if cp := r.conn.Plan.Concept(plan.ReferralLoop); cp.Path != plan.Native || cp.ResourceType != "Task" {
		t.Fatalf("referral-loop plan %+v, want Task", cp)
	}
	r.conn.PatientSystem = "https://ehr.example/Patient"
	var srs []string
	for i := range 2 {
		p, err := r.client.Create(ctx, "Patient", []byte(fmt.Sprintf(`{"resourceType":"Patient","identifier":[{"system":"urn:x","value":"MRN-LOOP-%d"}]}`, i)), "")
		if err != nil {
			t.Fatal(err)
		}
		sr, err := r.client.Create(ctx, "ServiceRequest", referral("active", "order", true, fmt.Sprintf(`{"reference":"Patient/%s"}`, p.ResourceID), "2026-11-02"), "")
		if err != nil {
			t.Fatal(err)
		}
		srs = append(srs, sr.ResourceID)
	}
	if s, err := r.engine.PullOnce(ctx); err != nil || s.Referred != 2 {
		t.Fatalf("pull: %+v %v; want two referrals taken in", s, err)
	}
	r.enqueueAll(t)
	if s, err := r.engine.PushOnce(ctx); err != nil || s.Failed != 0 {
		t.Fatalf("push: %+v %v", s, err)
	}
	want := func(status ...string) {
		t.Helper()
		got := r.referralTasks(t)
		for i, sr := range srs {
			if ts := got[sr]; len(ts) != 1 || ts[0] != status[i] {
				t.Errorf("referral %d: Tasks %v, want one %s", i, ts, status[i])
			}
		}
	}
	want("received", "received")

	// One accepted, one declined.
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
		case srs[0]:
			err = c.Accept(ips.MustDate("2026-11-09"))
		case srs[1]:
			err = c.Decline(ips.MustDate("2026-11-20"), "could not be reached after three tries")
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
	want("accepted", "rejected")
	r.enqueueAll(t)
	if s, err := r.engine.PushOnce(ctx); err != nil || s.Failed != 0 || s.Written != 0 {
		t.Fatalf("push with nothing changed: %+v %v; want nothing written", s, err)
	}
	want("accepted", "rejected")
	// The Task says the referral was declined, not the specialist's words.
	entries, err := r.client.Search(ctx, "Task", url.Values{"_count": {"100"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.Contains(string(e.Resource), "three tries") {
			t.Errorf("a Task carries the decline's free-text reason: %s", e.Resource)
		}
	}
}

// TestNoReferralAnswerWhereTaskCannotBeWritten: Oracle Health declares no
// Task at all: no Task is sent, and the plan says why.
func TestNoReferralAnswerWhereTaskCannotBeWritten(t *testing.T) {
	t.Parallel()
	r := newRig(t, filepath.Join("..", "..", "testdata", "ehr-capabilities", "oracle-health-millennium-r4-2026-08.json"))
	if cp := r.conn.Plan.Concept(plan.ReferralLoop); cp.Path != plan.NoPath || r.conn.Plan.AnswersReferrerTasks() {
		t.Errorf("referral-loop plan on Oracle Health %+v, want none", cp)
	}
}

// referralTasks lists the lifecycle status of every Task in the EHR by the
// ServiceRequest it answers.
func (r *rig) referralTasks(t *testing.T) map[string][]string {
	t.Helper()
	entries, err := r.client.Search(t.Context(), "Task", url.Values{"_count": {"1000"}})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for _, e := range entries {
		var task struct {
			Status string `json:"status"`
			Focus  struct {
				Reference string `json:"reference"`
			} `json:"focus"`
		}
		if err := json.Unmarshal(e.Resource, &task); err != nil {
			t.Fatal(err)
		}
		sr := strings.TrimPrefix(task.Focus.Reference, "ServiceRequest/")
		out[sr] = append(out[sr], task.Status)
	}
	return out
}

// TestEnrollmentEpisodesAreWritten: where the EHR takes EpisodeOfCare,
// each enrollment episode is one: a closed client referred again has the
// finished episode and a new one on the waitlist, which becomes active
// when the specialist accepts; the finished one is not written again.
func TestEnrollmentEpisodesAreWritten(t *testing.T) {
	t.Parallel()
	r := newRig(t, "")
	ctx := t.Context()
	if cp := r.conn.Plan.Concept(plan.Episodes); cp.Path != plan.Native || cp.ResourceType != "EpisodeOfCare" {
		t.Fatalf("enrollment-episodes plan %+v, want EpisodeOfCare", cp)
	}
	c := &ips.Client{ID: "c-again", Patient: consenting(r.cl)[0].Patient,
		ReferredOn: ips.MustDate("2025-01-02"), EnrolledOn: ips.MustDate("2025-01-10"),
		ClosedOn: ips.MustDate("2025-09-30"), ClosedReason: "moved away", Status: ips.ClientClosed}
	if c.Refer(ips.MustDate("2026-10-01"), nil) != ips.ReferralReopened {
		t.Fatal("the closed client was not reopened")
	}
	if _, err := r.store.SaveClients(ctx, []store.Stored{{Client: c}}, []string{"clinic"}); err != nil {
		t.Fatal(err)
	}
	if s, err := r.engine.PushOnce(ctx); err != nil || s.Failed != 0 {
		t.Fatalf("push: %+v %v", s, err)
	}
	want := func(statuses ...string) {
		t.Helper()
		got := r.episodesOf(t, c.ID)
		if len(got) != len(statuses) {
			t.Fatalf("episodes %v, want %v", got, statuses)
		}
		for i, st := range statuses {
			if got[i].status != st {
				t.Errorf("episode %d: %s, want %s", i+1, got[i].status, st)
			}
		}
	}
	want("finished", "waitlist")
	first := r.episodesOf(t, c.ID)[0].version
	st, v, err := r.store.GetClient(ctx, c.ID)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Accept(ips.MustDate("2026-10-08")); err != nil {
		t.Fatal(err)
	}
	if _, err := r.store.SaveClients(ctx, []store.Stored{{Client: st, Version: v}}, []string{"clinic"}); err != nil {
		t.Fatal(err)
	}
	if s, err := r.engine.PushOnce(ctx); err != nil || s.Failed != 0 {
		t.Fatalf("push of the acceptance: %+v %v", s, err)
	}
	want("finished", "active")
	if got := r.episodesOf(t, c.ID)[0].version; got != first {
		t.Errorf("the finished episode was written again (version %s, was %s)", got, first)
	}
}

type episodeSeen struct{ status, version string }

// episodesOf lists a client's EpisodeOfCare in the EHR, by episode number.
func (r *rig) episodesOf(t *testing.T, clientID string) []episodeSeen {
	t.Helper()
	entries, err := r.client.Search(t.Context(), "EpisodeOfCare", url.Values{"_count": {"100"}})
	if err != nil {
		t.Fatal(err)
	}
	byValue := map[string]episodeSeen{}
	for _, e := range entries {
		var eoc struct {
			Status     string                     `json:"status"`
			Meta       struct{ VersionID string } `json:"meta"`
			Identifier []struct{ Value string }   `json:"identifier"`
		}
		if err := json.Unmarshal(e.Resource, &eoc); err != nil {
			t.Fatal(err)
		}
		for _, id := range eoc.Identifier {
			if strings.HasPrefix(id.Value, clientID+"/") {
				byValue[id.Value] = episodeSeen{eoc.Status, eoc.Meta.VersionID}
			}
		}
	}
	var out []episodeSeen
	for n := 1; ; n++ {
		e, ok := byValue[fmt.Sprintf("%s/episode-%d", clientID, n)]
		if !ok {
			break
		}
		out = append(out, e)
	}
	if len(out) != len(byValue) {
		t.Fatalf("episodes %v are not numbered 1 to %d", byValue, len(byValue))
	}
	return out
}
