package syncer

import (
	"encoding/json"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ipsfhir/ipsfhir/adapter/plan"
	"github.com/ipsfhir/ipsfhir/ips"
	"github.com/ipsfhir/ipsfhir/mappings"
)

// questionnaireOnly is a synthetic statement: Goal, CarePlan,
// DocumentReference and Observation read-only, QuestionnaireResponse
// create (not update).
var questionnaireOnly = filepath.Join("testdata", "questionnaire-only-capability.json")

// TestQuestionnaireOnlyEHRGetsThePlanAsResponses: an EHR that takes
// neither Goal, CarePlan nor a note, but creates QuestionnaireResponses,
// gets each client's plan as a response to the IPS employment plan
// Questionnaire: one per client, none again while nothing changed, a new
// one when the plan changes (the EHR cannot update them), and nothing the
// statement does not declare.
func TestQuestionnaireOnlyEHRGetsThePlanAsResponses(t *testing.T) {
	t.Parallel()
	r := newRig(t, questionnaireOnly)
	ctx := t.Context()
	if cp := r.conn.Plan.Concept(plan.ChartNote); cp.Path != plan.Native || cp.ResourceType != "QuestionnaireResponse" {
		t.Fatalf("chart-note plan %+v, want the plan's QuestionnaireResponse", cp)
	}
	r.enqueueAll(t)
	if s, err := r.engine.PushOnce(ctx); err != nil || s.Failed != 0 {
		t.Fatalf("push: %+v %v", s, err)
	}
	clients := consenting(r.cl)
	responses := r.responsesByClient(t)
	if len(responses) != len(clients) {
		t.Fatalf("responses for %d clients, want one for each of the %d consenting", len(responses), len(clients))
	}
	c, g := clients[0], clients[0].Goals[0]
	got := responses[c.ID]
	if len(got) != 1 {
		t.Fatalf("client has %d responses, want 1", len(got))
	}
	if !strings.Contains(string(got[0]), mappings.QuestionnairePlan) || !answers(t, got[0], "goal.description", g.Description) {
		t.Errorf("the response does not answer the plan Questionnaire with the goal:\n%s", got[0])
	}

	// Nothing changed: nothing new.
	r.enqueueAll(t)
	if s, err := r.engine.PushOnce(ctx); err != nil || s.Failed != 0 || s.Written != 0 {
		t.Fatalf("second push: %+v %v; want nothing written", s, err)
	}
	// The plan changes: a new response, the old one left (no update).
	r.editGoal(t, c.ID, g.ID, func(g *ips.Goal) { g.Description = "Work in a bakery, mornings" })
	if s, err := r.engine.PushOnce(ctx); err != nil || s.Failed != 0 || s.Written != 1 {
		t.Fatalf("push of the change: %+v %v; want one response written", s, err)
	}
	got = r.responsesByClient(t)[c.ID]
	if len(got) != 2 {
		t.Fatalf("client has %d responses after the change, want 2", len(got))
	}
	n := 0
	for _, raw := range got {
		if answers(t, raw, "goal.description", "Work in a bakery, mornings") {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d responses hold the changed goal, want 1", n)
	}
	// Changed back: a third response, the newest, with the first content
	// (the first response, already written, is not the newest).
	r.editGoal(t, c.ID, g.ID, func(gg *ips.Goal) { gg.Description = g.Description })
	if s, err := r.engine.PushOnce(ctx); err != nil || s.Failed != 0 || s.Written != 1 {
		t.Fatalf("push of the plan changed back: %+v %v; want a new response written", s, err)
	}
	if got = r.responsesByClient(t)[c.ID]; len(got) != 3 {
		t.Fatalf("client has %d responses after changing back, want 3", len(got))
	}
	if l := r.refused("405"); len(l) != 0 {
		t.Errorf("requests the statement does not declare were sent:\n%s", strings.Join(l, "\n"))
	}
}

// responsesByClient is every plan QuestionnaireResponse in the EHR, by the
// client its identifier names.
func (r *rig) responsesByClient(t *testing.T) map[string][]json.RawMessage {
	t.Helper()
	entries, err := r.client.Search(t.Context(), "QuestionnaireResponse", url.Values{"_count": {"1000"}})
	if err != nil {
		t.Fatal(err)
	}
	sys := mappings.IdentifierSystem(r.cl.ProgramID(), mappings.KindPlanResponse)
	out := map[string][]json.RawMessage{}
	for _, e := range entries {
		var res struct {
			Identifier struct{ System, Value string } `json:"identifier"`
		}
		if err := json.Unmarshal(e.Resource, &res); err != nil {
			t.Fatal(err)
		}
		if res.Identifier.System == sys {
			client, _, _ := strings.Cut(res.Identifier.Value, "/")
			out[client] = append(out[client], e.Resource)
		}
	}
	return out
}

// answers reports whether a QuestionnaireResponse answers linkID with the
// string want anywhere in its items.
func answers(t *testing.T, raw json.RawMessage, linkID, want string) bool {
	t.Helper()
	type item struct {
		LinkID string `json:"linkId"`
		Answer []struct {
			ValueString string `json:"valueString"`
		} `json:"answer"`
		Item []item `json:"item"`
	}
	var qr struct {
		Item []item `json:"item"`
	}
	if err := json.Unmarshal(raw, &qr); err != nil {
		t.Fatal(err)
	}
	var walk func([]item) bool
	walk = func(items []item) bool {
		for _, it := range items {
			if it.LinkID == linkID {
				for _, a := range it.Answer {
					if a.ValueString == want {
						return true
					}
				}
			}
			if walk(it.Item) {
				return true
			}
		}
		return false
	}
	return walk(qr.Item)
}

// TestQuestionnaireResponseUpdatedInPlaceWhereTheEHRAllows: where the EHR
// also updates QuestionnaireResponses, each client has one, updated when
// the plan changes.
func TestQuestionnaireResponseUpdatedInPlaceWhereTheEHRAllows(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile(questionnaireOnly)
	if err != nil {
		t.Fatal(err)
	}
	var st map[string]any
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	added := false
	for _, r := range st["rest"].([]any)[0].(map[string]any)["resource"].([]any) {
		if r := r.(map[string]any); r["type"] == "QuestionnaireResponse" {
			r["interaction"] = append(r["interaction"].([]any), map[string]any{"code": "update"})
			added = true
		}
	}
	if !added {
		t.Fatal("no QuestionnaireResponse in the statement")
	}
	updatable, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "statement.json")
	if err := os.WriteFile(path, updatable, 0o600); err != nil {
		t.Fatal(err)
	}
	r := newRig(t, path)
	ctx := t.Context()
	r.enqueueAll(t)
	if s, err := r.engine.PushOnce(ctx); err != nil || s.Failed != 0 {
		t.Fatalf("push: %+v %v", s, err)
	}
	c, g := consenting(r.cl)[0], consenting(r.cl)[0].Goals[0]
	r.editGoal(t, c.ID, g.ID, func(g *ips.Goal) { g.Description = "Work in a bakery, mornings" })
	if s, err := r.engine.PushOnce(ctx); err != nil || s.Failed != 0 || s.Written != 1 {
		t.Fatalf("push of the change: %+v %v; want the response updated", s, err)
	}
	got := r.responsesByClient(t)[c.ID]
	if len(got) != 1 || !answers(t, got[0], "goal.description", "Work in a bakery, mornings") {
		t.Fatalf("client has %d responses; want one, holding the change", len(got))
	}
	if l := r.refused("405"); len(l) != 0 {
		t.Errorf("requests the statement does not declare were sent:\n%s", strings.Join(l, "\n"))
	}
}
