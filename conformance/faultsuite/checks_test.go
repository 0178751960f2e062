package faultsuite

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/ipsfhir/ipsfhir/conformance/peer"
	"github.com/ipsfhir/ipsfhir/ips"
	"github.com/ipsfhir/ipsfhir/ips/synth"
)

// The checks themselves are tested here without any process: a store
// that lost an API edit is "reverted", one that lacks a clinician's change
// is "clinician-missing", anything else that moved is "store-drift", and a
// field whose edit has an unknown outcome is not checked.
func TestStoreDiffCategories(t *testing.T) {
	cl := synth.Generate(rand.New(rand.NewPCG(7, 7)), 20)
	e := newExpectation(cl)
	var c *ips.Client
	for _, id := range e.ids {
		if x := e.clients[id]; len(x.Goals) > 0 && len(x.Jobs) > 0 {
			c = x
			break
		}
	}
	if c == nil {
		t.Fatal("no client with a goal and a job in the sample")
	}
	stored := map[string]*ips.Client{}
	for _, id := range e.ids {
		stored[id] = cloneClient(e.clients[id])
	}
	var got []string
	diff := func() []string {
		got = nil
		e.storeDiff(stored, func(check, field, cid, rid, kind string) { got = append(got, check+" "+kind+"."+field) })
		return got
	}
	if d := diff(); len(d) != 0 {
		t.Fatalf("identical store and expectation differ: %v", d)
	}

	g, sg := c.Goals[0], stored[c.ID].Goals[0]
	g.Description = "Find steady work I can keep, revision 1"
	e.apiSet[fieldKey(c.ID, "goals", g.ID, "description")] = true
	g.Status = ips.GoalOnHold
	if sg.Status == ips.GoalOnHold {
		g.Status = ips.GoalActive
	}
	e.clinSet[fieldKey(c.ID, "goals", g.ID, "status")] = true
	stored[c.ID].Jobs[0].Title = "Something else"
	want := map[string]bool{"reverted goal.description": true, "clinician-missing goal.status": true, "store-drift job.other": true}
	d := diff()
	for _, x := range d {
		if !want[x] {
			t.Errorf("unexpected finding %q (all: %v)", x, d)
		}
		delete(want, x)
	}
	for x := range want {
		t.Errorf("missing finding %q (all: %v)", x, d)
	}

	// An edit whose outcome is unknown leaves its field unchecked.
	e.ambiguous[fieldKey(c.ID, "goals", g.ID, "description")] = true
	for _, x := range diff() {
		if strings.Contains(x, "description") {
			t.Errorf("an ambiguous field was checked: %v", got)
		}
	}
}

// Stories carry tokens, never the words of a description or a note.
func TestStoryTokensHoldNoText(t *testing.T) {
	if got := textToken("I want to work mornings at a bakery"); got != "original" {
		t.Errorf("textToken of caseload words = %q", got)
	}
	if got := textToken("Find steady work I can keep, revision 12"); got != "rev 12" {
		t.Errorf("textToken of the harness's own words = %q", got)
	}
	h := 20.0
	g := &ips.Goal{Description: "Work at the library near Elm Street", Status: ips.GoalActive, TargetHoursPerWeek: &h,
		Notes: []ips.Note{{Text: "Mentioned her sister's shop"}}}
	s := goalToken(g)
	for _, word := range []string{"library", "Elm", "sister"} {
		if strings.Contains(s, word) {
			t.Errorf("goal token %q holds free text", s)
		}
	}
	// The request log's rendering of a Goal: ids, version and tokens.
	raw := []byte(`{"resourceType":"Goal","id":"g-1","meta":{"versionId":"7"},"lifecycleStatus":"on-hold",
		"description":{"text":"Work at the library near Elm Street"},"note":[{"text":"Mentioned her sister's shop"}]}`)
	if got, want := describeResource(raw), "Goal/g-1/_history/7 status on-hold, description original, 1 notes"; got != want {
		t.Errorf("describeResource = %q, want %q", got, want)
	}
	if got := describeResource([]byte(`{"resourceType":"CarePlan","id":"p-1","description":"Talked about Elm Street"}`)); got != "CarePlan/p-1" {
		t.Errorf("describeResource of a CarePlan = %q, want type and id only", got)
	}
}

// checkOverwrites finds an adapter write that replaced a clinician's
// status, even when a later clinician edit restored the end state; a
// write that keeps the clinician's fields is not flagged.
func TestCheckOverwritesReadsTheHistory(t *testing.T) {
	needPeer(t)
	srv := peer.StartForTest(t, peer.Options{Args: []string{"--quiet"}})
	r := &run{peerFHIR: newFHIRClient(srv.BaseURL), report: &Report{}, exp: newExpectation(&ips.Caseload{})}
	ctx := t.Context()
	goal := func(status string, notes int) []byte {
		g := map[string]any{"resourceType": "Goal", "lifecycleStatus": status, "description": map[string]any{"text": "x"},
			"subject": map[string]any{"display": "test"}}
		var ns []any
		for i := 0; i < notes; i++ {
			ns = append(ns, map[string]any{"text": fmt.Sprintf("n%d", i)})
		}
		if ns != nil {
			g["note"] = ns
		}
		b, _ := json.Marshal(g)
		return b
	}
	rep, err := r.peerFHIR.do(ctx, "POST", "Goal", goal("active", 0), nil)
	if err != nil || rep.Status != 201 {
		t.Fatalf("create: %v %v", rep, err)
	}
	id, _, _ := identifiers(rep.Body)
	put := func(status string, notes int, clinician bool) {
		t.Helper()
		b := goal(status, notes)
		var m map[string]any
		_ = json.Unmarshal(b, &m)
		m["id"] = id
		b, _ = json.Marshal(m)
		rep, err := r.peerFHIR.do(ctx, "PUT", "Goal/"+id, b, nil)
		if err != nil || rep.Status != 200 {
			t.Fatalf("update: %v %v", rep, err)
		}
		if clinician {
			r.exp.clinVersions["c1/g1"] = append(r.exp.clinVersions["c1/g1"], versionOf(rep))
			r.exp.goalEHRID["c1/g1"] = id
		}
	}
	put("on-hold", 0, true)  // clinician
	put("on-hold", 0, false) // adapter, keeps it: fine
	put("completed", 1, true)
	put("active", 0, false) // adapter, loses status and note
	put("completed", 1, true)
	r.checkOverwrites(ctx)
	if r.report.Overwritten != 2 {
		t.Fatalf("overwritten %d, want 2 (status and notes once): %+v", r.report.Overwritten, r.report.Mismatches)
	}
}
