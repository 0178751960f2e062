package syncer

import (
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ipsfhir/ipsfhir/adapter/ehr"
	"github.com/ipsfhir/ipsfhir/adapter/store"
	"github.com/ipsfhir/ipsfhir/conformance/faultproxy"
	"github.com/ipsfhir/ipsfhir/conformance/peer"
	"github.com/ipsfhir/ipsfhir/ips"
)

// jointSeed writes a peer seed for the joint searches: every client's
// Patient (pt-N) of the rig's caseload; a second Patient carrying the identifier of the second
// consenting client (ambiguous); and for the first four consenting
// clients treatment plans to choose from by period start: the first has
// two (the later one, tp-0-b, is chosen), the second one, the third none,
// the fourth one that is completed (so none). It returns the file, the
// treatment plan expected for each consenting client's id, and the
// ambiguous client.
func jointSeed(t *testing.T) (string, map[string]string, *ips.Client) {
	t.Helper()
	cl := rigCaseload()
	var lines []string
	add := func(v any) {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		lines = append(lines, string(b))
	}
	ref := map[string]string{}
	for i, c := range cl.Clients {
		add(map[string]any{"resourceType": "Patient", "id": fmt.Sprintf("pt-%d", i), "identifier": []any{map[string]any{"system": c.Patient.System, "value": c.Patient.Value}}})
		ref[c.ID] = fmt.Sprintf("Patient/pt-%d", i)
	}
	who := consenting(cl)
	if len(who) < 6 {
		t.Fatalf("the sample has %d consenting clients; the test needs 6", len(who))
	}
	ambiguous := who[1]
	add(map[string]any{"resourceType": "Patient", "id": "pt-dup", "identifier": []any{map[string]any{"system": ambiguous.Patient.System, "value": ambiguous.Patient.Value}}})
	usCore := "http://hl7.org/fhir/us/core/CodeSystem/careplan-category"
	carePlan := func(id, subject, status, start string) {
		add(map[string]any{"resourceType": "CarePlan", "id": id, "status": status, "intent": "plan", "subject": map[string]any{"reference": subject},
			"period":   map[string]any{"start": start},
			"category": []any{map[string]any{"coding": []any{map[string]any{"system": usCore, "code": "assess-plan"}}}}})
	}
	carePlan("tp-0-a", ref[who[0].ID], "active", "2024-01-01")
	carePlan("tp-0-b", ref[who[0].ID], "active", "2025-01-01")
	carePlan("tp-2", ref[who[2].ID], "active", "2023-05-01")
	carePlan("tp-4-old", ref[who[4].ID], "completed", "2022-01-01")
	want := map[string]string{}
	for _, c := range who {
		want[c.ID] = ""
	}
	want[who[0].ID], want[who[2].ID] = "tp-0-b", "tp-2"
	delete(want, ambiguous.ID) // its push stops before the lookup
	// The test moves the last consenting client's Patient out of the EHR.
	delete(want, who[len(who)-1].ID)
	path := filepath.Join(t.TempDir(), "seed.ndjson")
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return path, want, ambiguous
}

// TestJointSearchesFindWhatSingleSearchesFind: the Patients and treatment
// plans that the searches of a lease's clients made jointly find are the
// ones that single searches find, in the same ledger rows; an identifier
// two EHR Patients carry fails that client's item alone, and a client whose
// Patient is not in the EHR fails alone too. The joint rig searches fewer
// times.
func TestJointSearchesFindWhatSingleSearchesFind(t *testing.T) {
	t.Parallel()
	seed, want, ambiguous := jointSeed(t)
	type outcome struct {
		summary                       PushSummary
		patients, plans               map[string]string
		patientSearches, planSearches int
	}
	run := func(t *testing.T, joint bool) outcome {
		r := newRigWith(t, peer.Options{Seed: seed})
		ctx := t.Context()
		r.conn.TreatmentPlan.Choose = ChoosePeriodStart
		if !joint {
			r.engine.leaseBatch = 1 // one client per lease: searched alone
		}
		// The last consenting client's Patient is nowhere in the EHR (see
		// jointSeed).
		who := consenting(r.cl)
		lost := who[len(who)-1]
		lost.Patient.Value = "nowhere-" + lost.Patient.Value
		p0, c0 := r.searches("Patient"), r.searches("CarePlan")
		r.enqueueAll(t)
		s, err := r.engine.PushOnce(ctx)
		if err != nil {
			t.Fatalf("push: %v", err)
		}
		o := outcome{summary: s, patients: map[string]string{}, plans: map[string]string{},
			patientSearches: r.searches("Patient") - p0, planSearches: r.searches("CarePlan") - c0}
		for _, c := range consenting(r.cl) {
			if le, err := r.store.LedgerGet(ctx, "clinic", patientKey(c.Patient)); err == nil {
				o.patients[c.ID] = le.ResourceID
			}
			if le, err := r.store.LedgerGet(ctx, "clinic", treatmentPlanKey(c.ID)); err == nil {
				o.plans[c.ID] = le.ResourceID
			}
		}
		if _, err := r.store.LedgerGet(ctx, "clinic", patientKey(ambiguous.Patient)); err == nil {
			t.Errorf("the ambiguous identifier got a ledger row")
		}
		return o
	}
	single, joint := run(t, false), run(t, true)
	for name, o := range map[string]outcome{"single": single, "joint": joint} {
		if o.summary.Failed != 2 || o.summary.Failures["push: patient identifier matches several EHR patients"] != 1 ||
			o.summary.Failures["push: patient not found in the EHR by identifier"] != 1 {
			t.Errorf("%s searches: %+v; want the ambiguous client and the one not in the EHR failed, one each", name, o.summary)
		}
		if o.summary.Written == 0 {
			t.Errorf("%s searches wrote nothing", name)
		}
		for id, tp := range want {
			if got, ok := o.plans[id]; !ok || got != tp {
				t.Errorf("%s searches: client %s's treatment plan %q (looked up: %v), want %q", name, id, got, ok, tp)
			}
		}
	}
	if fmt.Sprint(single.patients) != fmt.Sprint(joint.patients) || fmt.Sprint(single.plans) != fmt.Sprint(joint.plans) {
		t.Errorf("the ledger differs:\nsingle %v %v\njoint  %v %v", single.patients, single.plans, joint.patients, joint.plans)
	}
	if single.summary.Written != joint.summary.Written || single.summary.Provenances != joint.summary.Provenances {
		t.Errorf("written: single %+v, joint %+v", single.summary, joint.summary)
	}
	if joint.patientSearches >= single.patientSearches || joint.planSearches >= single.planSearches {
		t.Errorf("searches: single %d Patient, %d CarePlan; joint %d, %d: want fewer joint", single.patientSearches, single.planSearches, joint.patientSearches, joint.planSearches)
	}
	t.Logf("searches: single %d Patient, %d CarePlan; joint %d, %d", single.patientSearches, single.planSearches, joint.patientSearches, joint.planSearches)
}

// TestJointSearchFailureFallsBackToSingleSearches: when the EHR fails the
// joint searches (an OR list it refuses, a fault), each client is searched
// alone, and the push writes everything as it would have.
func TestJointSearchFailureFallsBackToSingleSearches(t *testing.T) {
	t.Parallel()
	seed, want, _ := jointSeed(t)
	r := newRigWith(t, peer.Options{Seed: seed})
	ctx := t.Context()
	r.conn.TreatmentPlan.Choose = ChoosePeriodStart
	r.conn.Retry = RetrySchedule{Initial: time.Hour, Max: time.Hour}
	joined := func(_, path, q string) bool {
		return (path == "Patient" || path == "CarePlan") && (strings.Contains(q, "%2CPatient") || strings.Contains(q, "identifier=") && strings.Count(q, "%7C") > 1)
	}
	p := r.proxiedWith(t, faultproxy.Options{Rate: 1, Kinds: []faultproxy.Kind{faultproxy.Kind500}, Scope: faultproxy.Match{Method: "GET", Func: joined}}, ehr.Options{MaxAttempts: 1})
	r.enqueueAll(t)
	s, err := r.engine.PushOnce(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if s.Failed != 1 || s.Failures["push: patient identifier matches several EHR patients"] != 1 || s.Written == 0 {
		t.Errorf("push with the joint searches failing: %+v; want all written but the ambiguous client", s)
	}
	if st := p.Stats(); st.Faults[faultproxy.Kind500] == 0 {
		t.Errorf("no joint search was made (and failed): %+v", st)
	}
	for id, tp := range want {
		le, err := r.store.LedgerGet(ctx, "clinic", treatmentPlanKey(id))
		if err != nil || le.ResourceID != tp {
			t.Errorf("client %s's treatment plan %q (%v), want %q", id, le.ResourceID, err, tp)
		}
	}
}

// TestJointSearchOfAnEHRReadingOnlyTheFirstValue: an EHR that reads only
// the first value of an OR list (a fault the peer cannot play: a proxy
// drops the rest) answers a joint treatment plan search with the first
// patient's CarePlans only. Until the EHR has answered a joint search for
// two values, that "nothing" is not taken as "no treatment plan": each
// other patient is searched alone, and every plan is found.
func TestJointSearchOfAnEHRReadingOnlyTheFirstValue(t *testing.T) {
	t.Parallel()
	seed, want, _ := jointSeed(t)
	r := newRigWith(t, peer.Options{Seed: seed})
	ctx := t.Context()
	r.conn.TreatmentPlan.Choose = ChoosePeriodStart
	r.conn.Retry = RetrySchedule{Initial: time.Hour, Max: time.Hour}
	target, err := url.Parse(r.client.BaseURL())
	if err != nil {
		t.Fatal(err)
	}
	firstOnly := &httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) {
		pr.SetURL(&url.URL{Scheme: target.Scheme, Host: target.Host})
		q := pr.Out.URL.Query()
		for k, vs := range q {
			for i, v := range vs {
				vs[i], _, _ = strings.Cut(v, ",")
			}
			q[k] = vs
		}
		pr.Out.URL.RawQuery = q.Encode()
	}}
	srv := httptest.NewServer(firstOnly)
	t.Cleanup(srv.Close)
	c, err := ehr.New(ehr.Options{BaseURL: srv.URL + target.Path, Connection: "clinic"})
	if err != nil {
		t.Fatal(err)
	}
	r.conn.EHR = c
	// The Patients are known already (from an earlier pass), so the
	// treatment plans are what the joint search is for.
	for i, cl := range r.cl.Clients {
		if err := r.store.LedgerPut(ctx, store.LedgerEntry{Connection: "clinic", Key: patientKey(cl.Patient), ResourceType: "Patient", ResourceID: fmt.Sprintf("pt-%d", i), UpdatedAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	c0 := r.searches("CarePlan")
	r.enqueueAll(t)
	if _, err := r.engine.PushOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if n := r.searches("CarePlan") - c0; n < 2 {
		t.Errorf("%d CarePlan searches: the joint search was not made, or no client was searched alone", n)
	}
	if r.conn.orLists.Load() {
		t.Error("an EHR that read one value of each OR list was taken to honour OR lists")
	}
	for id, tp := range want {
		le, err := r.store.LedgerGet(ctx, "clinic", treatmentPlanKey(id))
		if err != nil || le.ResourceID != tp {
			t.Errorf("client %s's treatment plan %q (%v), want %q", id, le.ResourceID, err, tp)
		}
	}
}
