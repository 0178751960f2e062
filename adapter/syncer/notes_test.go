package syncer

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ipsfhir/ipsfhir/adapter/plan"
	"github.com/ipsfhir/ipsfhir/conformance/faultproxy"
	"github.com/ipsfhir/ipsfhir/ips"
)

// createOnlyNotes writes a statement like Epic's but whose DocumentReference
// is created, read and searched, never updated.
func createOnlyNotes(t *testing.T) string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "..", "testdata", "ehr-capabilities", "epic-r4-sandbox-2026-07.json"))
	if err != nil {
		t.Fatal(err)
	}
	var cs map[string]any
	if err := json.Unmarshal(raw, &cs); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, r := range cs["rest"].([]any)[0].(map[string]any)["resource"].([]any) {
		rm := r.(map[string]any)
		if rm["type"] != "DocumentReference" {
			continue
		}
		var kept []any
		for _, i := range rm["interaction"].([]any) {
			if i.(map[string]any)["code"] != "update" {
				kept = append(kept, i)
			}
		}
		rm["interaction"] = kept
		found = true
	}
	if !found {
		t.Fatal("no DocumentReference in the statement")
	}
	b, err := json.Marshal(cs)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "create-only-notes.json")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

type noteSeen struct {
	id, value, docStatus, replaces, text string
}

// notesOf lists the client's chart notes in the EHR, oldest first (by the
// number in their identifier).
func (r *rig) notesOf(t *testing.T, clientID string) []noteSeen {
	t.Helper()
	var out []noteSeen
	for _, raw := range mustSearch(t, r, "DocumentReference") {
		var d struct {
			ID         string `json:"id"`
			DocStatus  string `json:"docStatus"`
			Identifier []struct{ Value string }
			RelatesTo  []struct {
				Code   string `json:"code"`
				Target struct{ Reference string }
			} `json:"relatesTo"`
			Content []struct {
				Attachment struct{ Data []byte }
			} `json:"content"`
		}
		if err := json.Unmarshal(raw, &d); err != nil {
			t.Fatal(err)
		}
		if len(d.Identifier) == 0 || !strings.HasPrefix(d.Identifier[0].Value, clientID+"/") {
			continue
		}
		n := noteSeen{id: d.ID, value: d.Identifier[0].Value, docStatus: d.DocStatus}
		for _, rt := range d.RelatesTo {
			if rt.Code == "replaces" {
				n.replaces = rt.Target.Reference
			}
		}
		if len(d.Content) > 0 {
			n.text = string(d.Content[0].Attachment.Data)
		}
		out = append(out, n)
	}
	slices.SortFunc(out, func(a, b noteSeen) int { return strings.Compare(a.value, b.value) })
	return out
}

// TestNotesAreReplacedWhereTheEHRCannotUpdateThem: an EHR that creates
// DocumentReferences but does not update them still gets the chart note.
// Each change of the plan is a new final note that replaces the newest one
// (relatesTo replaces, by its EHR id); the same plan writes nothing; a plan
// changed back to an earlier content is a new note again, so the newest
// note is always the plan as it is; a note whose answer was lost is found
// again, not made twice; nothing is updated (the peer enforces the
// statement: no 405).
func TestNotesAreReplacedWhereTheEHRCannotUpdateThem(t *testing.T) {
	t.Parallel()
	r := newRig(t, createOnlyNotes(t))
	ctx := t.Context()
	clock := time.Now()
	r.engine.Now = func() time.Time { return clock }
	if cp := r.conn.Plan.Concept(plan.ChartNote); cp.Path != plan.Native || cp.ResourceType != "DocumentReference" || !strings.Contains(cp.Why, "replaces") {
		t.Fatalf("chart-note plan %+v, want notes that replace each other", cp)
	}
	r.enqueueAll(t)
	if s, err := r.engine.PushOnce(ctx); err != nil || s.Failed != 0 {
		t.Fatalf("push: %+v %v", s, err)
	}
	c, g, _ := r.firstGoal()
	first := r.notesOf(t, c.ID)
	if len(first) != 1 || first[0].docStatus != "final" || first[0].replaces != "" {
		t.Fatalf("after the first push the notes are %+v, want one final note", first)
	}
	before := g.Description

	// The plan changes: a second note replaces the first.
	r.editGoal(t, c.ID, g.ID, func(g *ips.Goal) { g.Description = "Work in a bakery, mornings" })
	if s, err := r.engine.PushOnce(ctx); err != nil || s.Failed != 0 || s.Written != 1 {
		t.Fatalf("push of the change: %+v %v; want one note written", s, err)
	}
	notes := r.notesOf(t, c.ID)
	if len(notes) != 2 || notes[1].replaces != "DocumentReference/"+notes[0].id || notes[1].docStatus != "final" || !strings.Contains(notes[1].text, "bakery") {
		t.Fatalf("after a change the notes are %+v, want a second final note replacing the first", notes)
	}

	// The same plan again: nothing.
	for _, c := range r.cl.Clients {
		if err := r.store.Enqueue(ctx, "clinic", c.ID); err != nil {
			t.Fatal(err)
		}
	}
	if s, err := r.engine.PushOnce(ctx); err != nil || s.Failed != 0 || s.Written != 0 {
		t.Fatalf("push with nothing changed: %+v %v; want nothing written", s, err)
	}

	// Back to the first content, with the answer to the note's create
	// lost: the next push finds it, and a third note (not the first one
	// again) replaces the second, once.
	p := r.proxied(t)
	lost := p.Once(faultproxy.Match{Method: "POST", PathPrefix: "DocumentReference"}, faultproxy.KindLostReply)
	r.editGoal(t, c.ID, g.ID, func(g *ips.Goal) { g.Description = before })
	if s, err := r.engine.PushOnce(ctx); err != nil || s.Failed != 1 {
		t.Fatalf("push with the note's answer lost: %+v %v; want the item failed", s, err)
	}
	<-lost.Done()
	// The retry comes once the lost create can no longer land.
	clock = clock.Add(DefaultCreateSettle + time.Second)
	makeDue(t, r)
	if s, err := r.engine.PushOnce(ctx); err != nil || s.Failed != 0 {
		t.Fatalf("push after the lost answer: %+v %v", s, err)
	}
	notes = r.notesOf(t, c.ID)
	if len(notes) != 3 || notes[2].replaces != "DocumentReference/"+notes[1].id || notes[2].text != first[0].text {
		t.Fatalf("after changing back the notes are %+v, want a third note with the first content, replacing the second", notes)
	}
	// And the newest note is now the one a further change replaces.
	r.editGoal(t, c.ID, g.ID, func(g *ips.Goal) { g.Description = "Work in a library" })
	if s, err := r.engine.PushOnce(ctx); err != nil || s.Failed != 0 || s.Written != 1 {
		t.Fatalf("push of another change: %+v %v", s, err)
	}
	if notes = r.notesOf(t, c.ID); len(notes) != 4 || notes[3].replaces != "DocumentReference/"+notes[2].id {
		t.Fatalf("notes %+v, want a fourth replacing the third", notes)
	}
	if _, err := r.engine.PullOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if cs, _ := r.store.Conflicts(ctx, "clinic", false); len(cs) != 0 {
		t.Errorf("the notes made conflicts: %+v", cs)
	}
	if l := r.refused("405"); len(l) != 0 {
		t.Errorf("requests the statement does not declare were sent:\n%s", strings.Join(l, "\n"))
	}
}
