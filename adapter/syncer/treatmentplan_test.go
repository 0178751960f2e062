package syncer

import (
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ipsfhir/ipsfhir/adapter/ehr"
	"github.com/ipsfhir/ipsfhir/adapter/plan"
	"github.com/ipsfhir/ipsfhir/conformance/faultproxy"
	"github.com/ipsfhir/ipsfhir/conformance/peer"
	"github.com/ipsfhir/ipsfhir/ips"
	"github.com/ipsfhir/ipsfhir/mappings"
)

// treatmentPlanSeed writes a seed file for the peer: every client's
// patient (id pt-N), and for the first consenting client the clinic's
// mental health treatment plan (CarePlan mh-plan) among plans that are
// not it: a completed one, one of another category, and one with an
// ipsfhir identifier. It returns the file and that client.
func treatmentPlanSeed(t *testing.T) (string, *ips.Client) {
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
	for i, c := range cl.Clients {
		add(map[string]any{"resourceType": "Patient", "id": fmt.Sprintf("pt-%d", i), "identifier": []any{map[string]any{"system": c.Patient.System, "value": c.Patient.Value}}})
	}
	who := consenting(cl)[0]
	pt := ""
	for i, c := range cl.Clients {
		if c == who {
			pt = fmt.Sprintf("Patient/pt-%d", i)
		}
	}
	plan := func(id, status, system, code string, identifier string) {
		r := map[string]any{"resourceType": "CarePlan", "id": id, "status": status, "intent": "plan", "subject": map[string]any{"reference": pt},
			"title":    "Mental health treatment plan",
			"category": []any{map[string]any{"coding": []any{map[string]any{"system": system, "code": code}}}}}
		if identifier != "" {
			r["identifier"] = []any{map[string]any{"system": identifier, "value": "x"}}
		}
		add(r)
	}
	usCore := "http://hl7.org/fhir/us/core/CodeSystem/careplan-category"
	plan("mh-old", "completed", usCore, "assess-plan", "")
	plan("diet", "active", "http://snomed.info/sct", "734163000", "")
	plan("other-ips", "active", usCore, "assess-plan", "urn:ipsfhir:elsewhere:plan")
	plan("mh-plan", "active", usCore, "assess-plan", "")
	path := filepath.Join(t.TempDir(), "seed.ndjson")
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return path, who
}

// searches counts the peer's CarePlan searches so far.
func (r *rig) searches(typ string) int {
	n := 0
	for _, l := range strings.Split(r.peerLog.String(), "\n") {
		if f := strings.Fields(l); len(f) >= 4 && f[0] == "peer:" && f[2] == typ && f[3] == "search-type" {
			n++
		}
	}
	return n
}

// ipsResource reads the resource of typ carrying the program's identifier
// k from the peer.
func (r *rig) ipsResource(t *testing.T, typ string, k mappings.Key) map[string]any {
	t.Helper()
	es, err := r.client.Search(t.Context(), typ, url.Values{"identifier": {k.System() + "|" + k.Value()}})
	if err != nil || len(es) != 1 {
		t.Fatalf("%s %s in the EHR: %d found, %v", typ, k.Value(), len(es), err)
	}
	var m map[string]any
	if err := json.Unmarshal(es[0].Resource, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func refOf(v any) string {
	m, _ := v.(map[string]any)
	s, _ := m["reference"].(string)
	return s
}

// TestIPSPlanIsPartOfTheTreatmentPlan: on an EHR that takes CarePlan,
// Practitioner and CareTeam, the IPS CarePlan of a client whose chart holds
// a mental health treatment plan is partOf it (not of a completed plan, one
// of another category, or another IPS program's); the specialist is a
// Practitioner, once per specialist, naming the plan's author; each client
// has a CareTeam. A second push writes nothing and searches nothing; when
// the lookup is stale and the clinic has a new treatment plan, exactly that
// client's plan is written again, linked to it.
func TestIPSPlanIsPartOfTheTreatmentPlan(t *testing.T) {
	t.Parallel()
	seed, who := treatmentPlanSeed(t)
	r := newRigWith(t, peer.Options{Seed: seed})
	ctx := t.Context()
	start := time.Now()
	r.engine.Now = func() time.Time { return start }
	r.enqueueAll(t)
	if s, err := r.engine.PushOnce(ctx); err != nil || s.Failed != 0 {
		t.Fatalf("push: %+v %v", s, err)
	}
	o := r.conn.Mapping
	specialists := map[string]bool{}
	for _, c := range consenting(r.cl) {
		cp := r.ipsResource(t, "CarePlan", o.PlanKey(c))
		partOf, _ := cp["partOf"].([]any)
		switch {
		case c.ID == who.ID && (len(partOf) != 1 || refOf(partOf[0]) != "CarePlan/mh-plan"):
			t.Errorf("the IPS plan is partOf %v, want CarePlan/mh-plan", partOf)
		case c.ID != who.ID && len(partOf) != 0:
			t.Errorf("client without a treatment plan: partOf %v", partOf)
		}
		team := r.ipsResource(t, "CareTeam", o.CareTeamKey(c))
		if team["status"] == nil || len(team["participant"].([]any)) == 0 {
			t.Errorf("care team %v", team)
		}
		if k, ok := o.SpecialistKey(c); ok {
			specialists[k.Value()] = true
			author, _ := cp["author"].(map[string]any)
			id, _ := author["identifier"].(map[string]any)
			if id["value"] != k.Value() || author["display"] != c.Specialist {
				t.Errorf("plan author %v, want the specialist's Practitioner", author)
			}
		}
	}
	got := r.countByIdentifier(t, "Practitioner", mappings.KindSpecialist)
	if len(got) != len(specialists) || len(got) == 0 {
		t.Errorf("%d Practitioners, want one per specialist (%d)", len(got), len(specialists))
	}
	for v, n := range got {
		if n != 1 {
			t.Errorf("specialist %s written %d times", v, n)
		}
	}

	// Nothing changed: nothing written, and the ledger answers for the
	// treatment plan (no search).
	before := r.searches("CarePlan")
	r.enqueueAll(t)
	if s, err := r.engine.PushOnce(ctx); err != nil || s.Written != 0 || s.Failed != 0 {
		t.Errorf("second push: %+v %v; want nothing written", s, err)
	}
	if n := r.searches("CarePlan") - before; n != 0 {
		t.Errorf("second push searched CarePlan %d times, want 0 (the lookup is remembered)", n)
	}

	// The clinic replaces the treatment plan: a pull sees the change, and
	// the next push links the new plan, writing only the IPS plan.
	if _, err := r.engine.PullOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if s, err := r.engine.PushOnce(ctx); err != nil || s.Written != 0 {
		t.Errorf("push after the first pull: %+v %v; want nothing written", s, err)
	}
	r.replaceTreatmentPlan(t, "mh-plan", "mh-plan-2")
	if _, err := r.engine.PullOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if s, err := r.engine.PushOnce(ctx); err != nil || s.Written != 1 || s.Items != 1 || s.Failed != 0 {
		t.Errorf("push after a pull saw the treatment plan change: %+v %v; want that client's IPS plan written", s, err)
	}
	r.wantPartOf(t, o.PlanKey(who), "CarePlan/mh-plan-2")

	// Unseen by a pull, the change is found once the lookup is stale.
	r.replaceTreatmentPlan(t, "mh-plan-2", "mh-plan-3")
	r.engine.Now = func() time.Time { return start.Add(DefaultTreatmentPlanRefresh + time.Hour) }
	r.enqueueAll(t)
	if s, err := r.engine.PushOnce(ctx); err != nil || s.Written != 1 || s.Failed != 0 {
		t.Errorf("push after the treatment plan changed: %+v %v; want exactly the IPS plan written", s, err)
	}
	r.wantPartOf(t, o.PlanKey(who), "CarePlan/mh-plan-3")
	if _, err := r.engine.PullOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if s, err := r.engine.PushOnce(ctx); err != nil || s.Written != 0 {
		t.Errorf("push after pull: %+v %v; want nothing written", s, err)
	}
}

// TestChartNoteRelatesToTheTreatmentPlan: where the plan travels in the
// chart note (Epic, Oracle Health: CarePlan read and search only), the
// note relates to the treatment plan and names the specialist as its
// author, by name; nothing either EHR does not declare is sent; a second
// push writes nothing.
func TestChartNoteRelatesToTheTreatmentPlan(t *testing.T) {
	t.Parallel()
	for name, file := range map[string]string{"epic": "epic-r4-sandbox-2026-07.json", "oracle": "oracle-health-millennium-r4-2026-08.json"} {
		t.Run(name, func(t *testing.T) {
			seed, who := treatmentPlanSeed(t)
			r := newRigWith(t, peer.Options{Seed: seed, Capability: filepath.Join("..", "..", "testdata", "ehr-capabilities", file)})
			ctx := t.Context()
			r.enqueueAll(t)
			if s, err := r.engine.PushOnce(ctx); err != nil || s.Failed != 0 {
				dl, _ := r.store.DeadLetters(ctx, "")
				t.Fatalf("push: %+v %v; dead letters %+v", s, err, dl)
			}
			o := r.conn.Mapping
			for _, c := range consenting(r.cl) {
				var note map[string]any
				for _, e := range mustSearch(t, r, "DocumentReference") {
					var m map[string]any
					_ = json.Unmarshal(e, &m)
					if ids, _ := m["identifier"].([]any); len(ids) > 0 && ids[0].(map[string]any)["value"] == o.PlanNoteKey(c).Value() {
						note = m
					}
				}
				if note == nil {
					t.Fatalf("no note for a client")
				}
				related, _ := note["context"].(map[string]any)["related"].([]any)
				switch {
				case c.ID == who.ID && (len(related) != 1 || refOf(related[0]) != "CarePlan/mh-plan"):
					t.Errorf("note context.related %v, want CarePlan/mh-plan", related)
				case c.ID != who.ID && len(related) != 0:
					t.Errorf("note of a client without a treatment plan relates to %v", related)
				}
				if c.Specialist != "" {
					author, _ := note["author"].([]any)
					if len(author) != 1 || author[0].(map[string]any)["display"] == nil || author[0].(map[string]any)["identifier"] != nil {
						t.Errorf("note author %v, want the specialist by name", author)
					}
				}
			}
			if s, err := r.engine.PushOnce(ctx); err != nil || s.Written != 0 {
				t.Errorf("second push: %+v %v; want nothing written", s, err)
			}
			if _, err := r.engine.PullOnce(ctx); err != nil {
				t.Fatal(err)
			}
			if l := r.refused("405"); len(l) != 0 {
				t.Errorf("requests %s does not declare were sent:\n%s", name, strings.Join(l, "\n"))
			}
			if l := r.refused("400"); len(l) != 0 {
				t.Errorf("requests refused:\n%s", strings.Join(l, "\n"))
			}
		})
	}
}

// replaceTreatmentPlan completes the clinic's plan from and makes an
// active copy of it under the id to.
func (r *rig) replaceTreatmentPlan(t *testing.T, from, to string) {
	t.Helper()
	old, err := r.client.Read(t.Context(), "CarePlan", from)
	if err != nil {
		t.Fatal(err)
	}
	body := strings.Replace(string(old.Body), `"status":"active"`, `"status":"completed"`, 1)
	if _, err := r.client.Update(t.Context(), "CarePlan", from, []byte(body), ""); err != nil {
		t.Fatal(err)
	}
	body = strings.Replace(strings.Replace(body, `"status":"completed"`, `"status":"active"`, 1), `"id":"`+from+`"`, `"id":"`+to+`"`, 1)
	if _, err := r.client.Update(t.Context(), "CarePlan", to, []byte(body), ""); err != nil {
		t.Fatal(err)
	}
}

// wantPartOf checks what the IPS plan k is part of.
func (r *rig) wantPartOf(t *testing.T, k mappings.Key, want string) {
	t.Helper()
	cp := r.ipsResource(t, "CarePlan", k)
	if partOf, _ := cp["partOf"].([]any); len(partOf) != 1 || refOf(partOf[0]) != want {
		t.Errorf("the IPS plan is partOf %v, want %s", partOf, want)
	}
}

func mustSearch(t *testing.T, r *rig, typ string) [][]byte {
	t.Helper()
	es, err := r.client.Search(t.Context(), typ, url.Values{"_count": {"1000"}})
	if err != nil {
		t.Fatal(err)
	}
	out := make([][]byte, len(es))
	for i, e := range es {
		out[i] = e.Resource
	}
	return out
}

// TestGoalsAreAddedToTheTreatmentPlan: where the connection asks for it
// and the EHR updates CarePlan with If-Match, references to the client's
// goals are added to the clinic's treatment plan, keeping everything it
// held; a second push (and a pull that sees the update) neither reads nor
// writes it again; a reference a clinician removes is not put back until
// the goals change, and then only what is missing is added.
func TestGoalsAreAddedToTheTreatmentPlan(t *testing.T) {
	t.Parallel()
	seed, who := treatmentPlanSeed(t)
	r := newRigWith(t, peer.Options{Seed: seed})
	ctx := t.Context()
	meta, err := r.client.Metadata(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if r.conn.Plan, err = plan.Build(meta, plan.Options{AddGoalsToTreatmentPlan: true}); err != nil {
		t.Fatal(err)
	}
	if !r.conn.Plan.AddsGoalsToTreatmentPlan() {
		t.Fatalf("plan: %s", r.conn.Plan.Concept(plan.TreatmentPlan).Why)
	}
	r.enqueueAll(t)
	if s, err := r.engine.PushOnce(ctx); err != nil || s.Failed != 0 {
		t.Fatalf("push: %+v %v", s, err)
	}
	goalRefs := func() []string {
		t.Helper()
		resp, err := r.client.Read(ctx, "CarePlan", "mh-plan")
		if err != nil {
			t.Fatal(err)
		}
		var m struct {
			Title string `json:"title"`
			Goal  []struct {
				Reference string `json:"reference"`
			} `json:"goal"`
		}
		if err := json.Unmarshal(resp.Body, &m); err != nil {
			t.Fatal(err)
		}
		if m.Title != "Mental health treatment plan" {
			t.Errorf("the clinic's plan lost its title: %q", m.Title)
		}
		var out []string
		for _, g := range m.Goal {
			out = append(out, g.Reference)
		}
		slices.Sort(out)
		return out
	}
	var want []string
	for _, g := range who.Goals {
		le, err := r.store.LedgerGet(ctx, "clinic", ledgerKey(r.conn.Mapping.GoalKey(who, g)))
		if err != nil || le.ResourceID == "" {
			t.Fatalf("goal not in the ledger: %v", err)
		}
		want = append(want, "Goal/"+le.ResourceID)
	}
	slices.Sort(want)
	if got := goalRefs(); !slices.Equal(got, want) || len(want) == 0 {
		t.Errorf("treatment plan goals %v, want the client's %v", got, want)
	}

	version := func() string {
		t.Helper()
		resp, err := r.client.Read(ctx, "CarePlan", "mh-plan")
		if err != nil {
			t.Fatal(err)
		}
		return resp.VersionID
	}
	before := version()
	if _, err := r.engine.PullOnce(ctx); err != nil {
		t.Fatal(err)
	}
	r.enqueueAll(t)
	if s, err := r.engine.PushOnce(ctx); err != nil || s.Written != 0 {
		t.Errorf("second push: %+v %v; want nothing written", s, err)
	}
	if v := version(); v != before {
		t.Error("the treatment plan was updated again with nothing changed")
	}

	// A clinician takes the goals out; they stay out while nothing changes.
	resp, err := r.client.Read(ctx, "CarePlan", "mh-plan")
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(resp.Body, &m); err != nil {
		t.Fatal(err)
	}
	delete(m, "goal")
	body, _ := json.Marshal(m)
	if _, err := r.client.Update(ctx, "CarePlan", "mh-plan", body, resp.VersionID); err != nil {
		t.Fatal(err)
	}
	if _, err := r.engine.PullOnce(ctx); err != nil {
		t.Fatal(err)
	}
	r.enqueueAll(t)
	if s, err := r.engine.PushOnce(ctx); err != nil || s.Written != 0 {
		t.Errorf("push after a clinician took the goals out: %+v %v; want nothing written", s, err)
	}
	if got := goalRefs(); len(got) != 0 {
		t.Errorf("goals put back: %v", got)
	}
	// A new goal: the plan is read again and every goal it lacks is added.
	for _, c := range r.cl.Clients {
		if c.ID == who.ID {
			who = c // the rig's copy, which it saves
		}
	}
	who.Goals = append(who.Goals, &ips.Goal{ID: "g-new", Description: "Work in a garden centre", Status: ips.GoalProposed, Start: ips.MustDate("2026-11-02")})
	r.enqueueAll(t)
	if s, err := r.engine.PushOnce(ctx); err != nil || s.Failed != 0 {
		t.Fatalf("push with a new goal: %+v %v", s, err)
	}
	if got := goalRefs(); len(got) != len(want)+1 {
		t.Errorf("after a new goal the treatment plan names %v, want all %d goals", got, len(want)+1)
	}
}

// TestTreatmentPlanSearchFailureDoesNotHoldThePushBack: when the search
// for the treatment plan fails, everything is still written (without the
// link), and the client's next push searches again and links it.
func TestTreatmentPlanSearchFailureDoesNotHoldThePushBack(t *testing.T) {
	t.Parallel()
	seed, who := treatmentPlanSeed(t)
	r := newRigWith(t, peer.Options{Seed: seed})
	ctx := t.Context()
	// Every search by patient for CarePlans fails.
	r.proxiedWith(t, faultproxy.Options{Rate: 1, Kinds: []faultproxy.Kind{faultproxy.Kind503},
		Scope: faultproxy.Match{Method: "GET", Func: func(_, path, q string) bool { return path == "CarePlan" && strings.Contains(q, "patient=") }}},
		ehr.Options{MaxAttempts: 1})
	r.enqueueAll(t)
	s, err := r.engine.PushOnce(ctx)
	if err != nil || s.Failed != 0 || s.Written == 0 {
		t.Fatalf("push with the treatment plan search failing: %+v %v; want everything written", s, err)
	}
	if partOf := r.ipsResource(t, "CarePlan", r.conn.Mapping.PlanKey(who))["partOf"]; partOf != nil {
		t.Errorf("linked although the search failed: %v", partOf)
	}
	r.conn.EHR = r.client // the EHR answers again
	r.enqueueAll(t)
	if s, err := r.engine.PushOnce(ctx); err != nil || s.Written != 1 {
		t.Errorf("next push: %+v %v; want the IPS plan written with the link", s, err)
	}
	r.wantPartOf(t, r.conn.Mapping.PlanKey(who), "CarePlan/mh-plan")
}

// TestGoalsAddedOnceAfterALostAnswer: the update that adds the goals to the
// treatment plan is applied but its answer is lost; the retry reads the
// plan, finds the goals there and adds nothing twice.
func TestGoalsAddedOnceAfterALostAnswer(t *testing.T) {
	t.Parallel()
	seed, who := treatmentPlanSeed(t)
	r := newRigWith(t, peer.Options{Seed: seed})
	ctx := t.Context()
	meta, err := r.client.Metadata(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if r.conn.Plan, err = plan.Build(meta, plan.Options{AddGoalsToTreatmentPlan: true}); err != nil {
		t.Fatal(err)
	}
	p := r.proxiedWith(t, faultproxy.Options{}, ehr.Options{MaxAttempts: 1})
	lost := p.Once(faultproxy.Match{Method: "PUT", PathPrefix: "CarePlan/mh-plan"}, faultproxy.KindLostReply)
	r.enqueueAll(t)
	if s, err := r.engine.PushOnce(ctx); err != nil || s.Failed != 1 {
		t.Fatalf("push with the answer lost: %+v %v; want that client's item failed", s, err)
	}
	<-lost.Done()
	makeDue(t, r)
	if s, err := r.engine.PushOnce(ctx); err != nil || s.Failed != 0 || s.Written != 0 {
		t.Errorf("retry: %+v %v; want every item done, nothing written again", s, err)
	}
	resp, err := r.client.Read(ctx, "CarePlan", "mh-plan")
	if err != nil {
		t.Fatal(err)
	}
	var m struct {
		Goal []struct{ Reference string } `json:"goal"`
	}
	if err := json.Unmarshal(resp.Body, &m); err != nil {
		t.Fatal(err)
	}
	if len(m.Goal) != len(who.Goals) {
		t.Errorf("the treatment plan names %d goals, want the client's %d once each: %v", len(m.Goal), len(who.Goals), m.Goal)
	}
}
