package syncer

import (
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ipsfhir/ipsfhir/conformance/peer"
	"github.com/ipsfhir/ipsfhir/ips"
	"github.com/ipsfhir/ipsfhir/ips/synth"
	"github.com/ipsfhir/ipsfhir/mappings"
)

// treatmentPlanSeed writes a seed file for the peer: every client's
// patient (id pt-N), and for the first consenting client the clinic's
// mental health treatment plan (CarePlan mh-plan) among plans that are
// not it: a completed one, one of another category, and one with an
// ipsfhir identifier. It returns the file and that client.
func treatmentPlanSeed(t *testing.T) (string, *ips.Client) {
	t.Helper()
	cl := synth.GenerateSample()
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
			if id["value"] != k.Value() || author["display"] != strings.Join(strings.Fields(c.Specialist), " ") {
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

	// The clinic replaces the treatment plan; once the lookup is stale the
	// link follows, and only that plan is written.
	old, err := r.client.Read(ctx, "CarePlan", "mh-plan")
	if err != nil {
		t.Fatal(err)
	}
	body := strings.Replace(string(old.Body), `"status":"active"`, `"status":"completed"`, 1)
	if _, err := r.client.Update(ctx, "CarePlan", "mh-plan", []byte(body), ""); err != nil {
		t.Fatal(err)
	}
	body = strings.Replace(strings.Replace(body, `"status":"completed"`, `"status":"active"`, 1), `"id":"mh-plan"`, `"id":"mh-plan-2"`, 1)
	if _, err := r.client.Update(ctx, "CarePlan", "mh-plan-2", []byte(body), ""); err != nil {
		t.Fatal(err)
	}
	r.engine.Now = func() time.Time { return start.Add(DefaultTreatmentPlanRefresh + time.Hour) }
	r.enqueueAll(t)
	if s, err := r.engine.PushOnce(ctx); err != nil || s.Written != 1 || s.Failed != 0 {
		t.Errorf("push after the treatment plan changed: %+v %v; want exactly the IPS plan written", s, err)
	}
	cp := r.ipsResource(t, "CarePlan", o.PlanKey(who))
	if partOf, _ := cp["partOf"].([]any); len(partOf) != 1 || refOf(partOf[0]) != "CarePlan/mh-plan-2" {
		t.Errorf("after the change the IPS plan is partOf %v, want CarePlan/mh-plan-2", partOf)
	}
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
