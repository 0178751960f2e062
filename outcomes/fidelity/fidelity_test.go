package fidelity_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ipsfhir/ipsfhir/conformance/artifacts"
	"github.com/ipsfhir/ipsfhir/mappings"
	"github.com/ipsfhir/ipsfhir/outcomes/fidelity"
)

const testdata = "../../testdata/fidelity"

func readTestdata(t *testing.T, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(testdata, name))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestScoreGoodReview(t *testing.T) {
	s, err := fidelity.Score(readTestdata(t, "review-good.json"))
	if err != nil {
		t.Fatal(err)
	}
	if s.Total != 104 || s.Band != fidelity.Good || s.BandLabel != "Good fidelity" || s.MaxTotal != 125 {
		t.Errorf("total %d/%d, band %q %q; want 104/125 good", s.Total, s.MaxTotal, s.Band, s.BandLabel)
	}
	if s.ProgramID != "ips-east-county" || s.ReviewDate != "2024-03-15" {
		t.Errorf("program %q, date %q", s.ProgramID, s.ReviewDate)
	}
	if s.Questionnaire != fidelity.QuestionnaireURL+"|"+fidelity.QuestionnaireVersion {
		t.Errorf("questionnaire %q", s.Questionnaire)
	}
	want := []fidelity.SectionScore{
		{Section: fidelity.Staffing, Title: "Staffing", Score: 14, Max: 15, Items: 3},
		{Section: fidelity.Organization, Title: "Organization", Score: 33, Max: 40, Items: 8},
		{Section: fidelity.Services, Title: "Services", Score: 57, Max: 70, Items: 14},
	}
	if d := cmp.Diff(want, s.Sections); d != "" {
		t.Errorf("sections (-want +got):\n%s", d)
	}
	if len(s.Items) != 25 || s.Items[0].LinkID != "S1" || s.Items[0].Rating != 5 || s.Items[24].LinkID != "SV14" {
		t.Errorf("items %+v", s.Items)
	}
	if !strings.Contains(s.Caveat, "[unconfirmed]") {
		t.Errorf("caveat %q", s.Caveat)
	}
	if got, want := s.String(), "IPS-25 fidelity 104/125, Good fidelity (staffing 14/15, organization 33/40, services 57/70), program ips-east-county, reviewed 2024-03-15"; got != want {
		t.Errorf("String() = %q\nwant %q", got, want)
	}

	block := fidelity.ReportJSON(s)
	var back struct{ Fidelity fidelity.Summary }
	if err := json.Unmarshal(block, &back); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(s, back.Fidelity); d != "" {
		t.Errorf("ReportJSON does not round-trip (-want +got):\n%s", d)
	}
	for _, key := range []string{`"fidelity": {`, `"total": 104`, `"band": "good"`, `"bandLabel": "Good fidelity"`, `"reviewDate": "2024-03-15"`, `"caveat": `} {
		if !strings.Contains(string(block), key) {
			t.Errorf("ReportJSON lacks %s:\n%s", key, block)
		}
	}
}

// response builds a valid response whose ratings are spread to add up to total.
func response(t *testing.T, total int) []byte {
	t.Helper()
	extra := total - fidelity.MinTotal
	groups := map[fidelity.Section][]any{}
	for _, it := range fidelity.Items() {
		r := fidelity.MinRating + min(extra, fidelity.MaxRating-fidelity.MinRating)
		extra -= r - fidelity.MinRating
		groups[it.Section] = append(groups[it.Section], map[string]any{"linkId": it.LinkID, "answer": []any{map[string]any{"valueInteger": r}}})
	}
	items := []any{
		map[string]any{"linkId": "program", "answer": []any{map[string]any{"valueString": "p1"}}},
		map[string]any{"linkId": "review-date", "answer": []any{map[string]any{"valueDate": "2025-01-31"}}},
		map[string]any{"linkId": "reviewer", "answer": []any{map[string]any{"valueString": "r"}}},
	}
	for _, sec := range fidelity.Sections() {
		items = append(items, map[string]any{"linkId": string(sec), "item": groups[sec]})
	}
	data, err := json.Marshal(map[string]any{
		"resourceType": "QuestionnaireResponse", "status": "completed",
		"questionnaire": fidelity.QuestionnaireURL, "item": items,
	})
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestBands(t *testing.T) {
	for _, tc := range []struct {
		total int
		want  fidelity.Band
		label string
	}{
		{25, fidelity.NotSupportedEmployment, "Not supported employment"},
		{73, fidelity.NotSupportedEmployment, "Not supported employment"},
		{74, fidelity.Fair, "Fair fidelity"},
		{99, fidelity.Fair, "Fair fidelity"},
		{100, fidelity.Good, "Good fidelity"},
		{114, fidelity.Good, "Good fidelity"},
		{115, fidelity.Exemplary, "Exemplary fidelity"},
		{125, fidelity.Exemplary, "Exemplary fidelity"},
	} {
		t.Run(fmt.Sprint(tc.total), func(t *testing.T) {
			if got := fidelity.BandFor(tc.total); got != tc.want || got.String() != tc.label {
				t.Errorf("BandFor(%d) = %q (%s), want %q (%s)", tc.total, got, got, tc.want, tc.label)
			}
			s, err := fidelity.Score(response(t, tc.total))
			if err != nil {
				t.Fatal(err)
			}
			sum := 0
			for _, ss := range s.Sections {
				sum += ss.Score
			}
			if s.Total != tc.total || sum != tc.total || s.Band != tc.want || s.BandLabel != tc.label {
				t.Errorf("Score: total %d (sections %d), band %q %q; want %d %q", s.Total, sum, s.Band, s.BandLabel, tc.total, tc.want)
			}
		})
	}
}

// leaked is free text the invalid testdata carries; no problem may repeat it.
var leaked = []string{"Jane", "555-0100", "Program of", "Discussed", "three"}

func problems(t *testing.T, data []byte) []fidelity.Problem {
	t.Helper()
	_, err := fidelity.Parse(data)
	var inv *fidelity.InvalidError
	if !errors.As(err, &inv) {
		t.Fatalf("Parse error = %v, want *InvalidError", err)
	}
	msg := inv.Error()
	out, _ := json.Marshal(inv.Problems)
	for _, s := range leaked {
		if strings.Contains(msg, s) || strings.Contains(string(out), s) {
			t.Errorf("problems quote the input %q: %s", s, msg)
		}
	}
	return inv.Problems
}

func TestInvalidReportsEveryProblem(t *testing.T) {
	const (
		root = "QuestionnaireResponse"
		org  = root + ".item[3]"
		svc  = root + ".item[4]"
		notQ = "not an item of the IPS-25 fidelity Questionnaire"
		rng  = "the rating must be a whole number from 1 to 5"
		typ  = "the rating must be a valueInteger from 1 to 5"
	)
	want := []fidelity.Problem{
		{Path: root + ".questionnaire", Message: "version is not 0.1.0"},
		{Path: root + ".status", Message: "must be completed"},
		{LinkID: "program", Path: root + ".item[0].answer[0].valueString", Message: "longer than 64 characters"},
		{LinkID: "review-date", Path: root + ".item[1].answer[0].valueDate", Message: "must be a full date, YYYY-MM-DD"},
		{LinkID: "S2", Path: root + ".item[2].item[1].answer[0].valueInteger", Message: rng},
		{LinkID: "O1", Path: org + ".item[1]", Message: "appears more than once; answer each item once"},
		{LinkID: "O2", Path: org + ".item[2].answer", Message: "has 2 answers; give exactly one"},
		{LinkID: "O3", Path: org + ".item[3].answer[0]", Message: typ},
		{LinkID: "O4", Path: org + ".item[4].answer[0].valueInteger", Message: rng},
		{LinkID: "O5", Path: org + ".item[5]", Message: "not answered"},
		{LinkID: "SV1", Path: org + ".item[9]", Message: "belongs in group services, not organization"},
		{LinkID: "O9", Path: org + ".item[10]", Message: notQ},
		{Path: org + ".item[11]", Message: notQ},
		{LinkID: "SV5", Path: svc + ".item[3].answer[0]", Message: typ},
		{LinkID: "SV6", Path: svc + ".item[4].answer[0].valueInteger", Message: rng},
		{LinkID: "notes", Path: root + ".item[5]", Message: notQ},
		{LinkID: "reviewer", Message: "missing"},
		{LinkID: "S3", Message: "not answered (a rating 1-5 belongs in group staffing)"},
		{LinkID: "SV14", Message: "not answered (a rating 1-5 belongs in group services)"},
	}
	got := problems(t, readTestdata(t, "invalid-many-problems.json"))
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("problems (-want +got):\n%s", d)
	}
}

func TestInvalidInProgress(t *testing.T) {
	got := problems(t, readTestdata(t, "invalid-in-progress.json"))
	want := []fidelity.Problem{{Path: "QuestionnaireResponse.status", Message: "must be completed"}}
	for _, it := range fidelity.Items()[3:] {
		want = append(want, fidelity.Problem{LinkID: it.LinkID, Message: "not answered (a rating 1-5 belongs in group " + string(it.Section) + ")"})
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("problems (-want +got):\n%s", d)
	}
}

// edit decodes the good review, applies f and encodes it again.
func edit(t *testing.T, f func(m map[string]any)) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(readTestdata(t, "review-good.json"), &m); err != nil {
		t.Fatal(err)
	}
	f(m)
	data, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func items(m map[string]any) []any { return m["item"].([]any) }

func item(m map[string]any, i int) map[string]any { return items(m)[i].(map[string]any) }

func TestInvalidCases(t *testing.T) {
	for _, tc := range []struct {
		name string
		data func(t *testing.T) []byte
		want []fidelity.Problem
	}{
		{"not JSON", func(*testing.T) []byte { return []byte("Jane, 555-0100") },
			[]fidelity.Problem{{Message: "not a JSON document"}}},
		{"trailing data", func(t *testing.T) []byte { return append(readTestdata(t, "review-good.json"), "{}"...) },
			[]fidelity.Problem{{Message: "not a single JSON document: something follows it"}}},
		{"a Questionnaire", func(t *testing.T) []byte { return questionnaire(t).Data },
			[]fidelity.Problem{{Message: "not a FHIR QuestionnaireResponse"}}},
		{"other questionnaire", func(t *testing.T) []byte {
			return edit(t, func(m map[string]any) { m["questionnaire"] = "https://example.org/Questionnaire/Jane" })
		}, []fidelity.Problem{{Path: "QuestionnaireResponse.questionnaire", Message: "not the IPS-25 fidelity Questionnaire " + fidelity.QuestionnaireURL}}},
		{"no questionnaire, amended", func(t *testing.T) []byte {
			return edit(t, func(m map[string]any) { delete(m, "questionnaire"); m["status"] = "amended" })
		}, []fidelity.Problem{
			{Path: "QuestionnaireResponse.questionnaire", Message: "missing; it must be " + fidelity.QuestionnaireURL},
			{Path: "QuestionnaireResponse.status", Message: "must be completed"},
		}},
		{"group twice", func(t *testing.T) []byte {
			return edit(t, func(m map[string]any) {
				m["item"] = append(items(m), map[string]any{"linkId": "staffing", "item": []any{}})
			})
		}, []fidelity.Problem{{LinkID: "staffing", Path: "QuestionnaireResponse.item[6]", Message: "group appears more than once"}}},
		{"group answered, rated item nested", func(t *testing.T) []byte {
			return edit(t, func(m map[string]any) {
				g := item(m, 3)
				g["answer"] = []any{map[string]any{"valueInteger": 3}}
				s1 := item(g, 0)
				s1["item"] = []any{}
				s1["answer"].([]any)[0].(map[string]any)["item"] = []any{}
			})
		}, []fidelity.Problem{
			{LinkID: "staffing", Path: "QuestionnaireResponse.item[3].answer", Message: "a group has no answer; its items do"},
			{LinkID: "S1", Path: "QuestionnaireResponse.item[3].item[0].item", Message: "a rated item has no nested items"},
			{LinkID: "S1", Path: "QuestionnaireResponse.item[3].item[0].answer[0].item", Message: "answers here have no nested items"},
		}},
		{"rated item outside its group", func(t *testing.T) []byte {
			return edit(t, func(m map[string]any) {
				g := item(m, 3)
				s1 := item(g, 0)
				g["item"] = items(g)[1:]
				m["item"] = append(items(m), s1)
			})
		}, []fidelity.Problem{{LinkID: "S1", Path: "QuestionnaireResponse.item[6]", Message: "belongs in group staffing"}}},
		{"no items", func(t *testing.T) []byte {
			return edit(t, func(m map[string]any) { delete(m, "item") })
		}, append([]fidelity.Problem{{LinkID: "program", Message: "missing"}, {LinkID: "review-date", Message: "missing"}, {LinkID: "reviewer", Message: "missing"}},
			notAnswered(fidelity.Items())...)},
		{"items not a list, group items not a list", func(t *testing.T) []byte {
			return edit(t, func(m map[string]any) {
				m["item"] = append(items(m)[:5], map[string]any{"linkId": "services", "item": "Jane"}, "Jane", map[string]any{"text": "Jane"})
			})
		}, append([]fidelity.Problem{
			{LinkID: "services", Path: "QuestionnaireResponse.item[5].item", Message: "not a list of items"},
			{Path: "QuestionnaireResponse.item[6]", Message: "not an item object"},
			{Path: "QuestionnaireResponse.item[7]", Message: "item has no linkId"},
		}, notAnswered(fidelity.Items()[11:])...)},
		{"program and reviewers", func(t *testing.T) []byte {
			return edit(t, func(m map[string]any) {
				item(m, 0)["answer"] = []any{map[string]any{"valueString": "ips\x00Jane"}}
				item(m, 1)["answer"] = []any{map[string]any{"valueDateTime": "2024-03-15T10:00:00Z"}}
				item(m, 2)["answer"] = []any{map[string]any{"valueString": "  "}, map[string]any{"valueInteger": 1}, "Jane"}
			})
		}, []fidelity.Problem{
			{LinkID: "program", Path: "QuestionnaireResponse.item[0].answer[0].valueString", Message: "contains control characters"},
			{LinkID: "review-date", Path: "QuestionnaireResponse.item[1].answer[0]", Message: "the answer must be a valueDate"},
			{LinkID: "reviewer", Path: "QuestionnaireResponse.item[2].answer[0].valueString", Message: "blank"},
			{LinkID: "reviewer", Path: "QuestionnaireResponse.item[2].answer[1]", Message: "the answer must be a valueString"},
			{LinkID: "reviewer", Path: "QuestionnaireResponse.item[2].answer[2]", Message: "not an answer object"},
		}},
		{"header items empty or twice", func(t *testing.T) []byte {
			return edit(t, func(m map[string]any) {
				item(m, 0)["answer"] = map[string]any{"valueString": "Jane"}
				delete(item(m, 1), "answer")
				item(m, 2)["answer"] = []any{}
				m["item"] = append(items(m), item(m, 0))
			})
		}, []fidelity.Problem{
			{LinkID: "program", Path: "QuestionnaireResponse.item[0].answer", Message: "not a list of answers"},
			{LinkID: "review-date", Path: "QuestionnaireResponse.item[1]", Message: "not answered"},
			{LinkID: "reviewer", Path: "QuestionnaireResponse.item[2]", Message: "name at least one reviewer"},
			{LinkID: "program", Path: "QuestionnaireResponse.item[6]", Message: "appears more than once; answer each item once"},
		}},
		{"two values in one answer", func(t *testing.T) []byte {
			return edit(t, func(m map[string]any) {
				item(item(m, 5), 13)["answer"] = []any{map[string]any{"valueInteger": 3, "valueString": "Jane"}}
			})
		}, []fidelity.Problem{{LinkID: "SV14", Path: "QuestionnaireResponse.item[5].item[13].answer[0]", Message: "the rating must be a valueInteger from 1 to 5"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if d := cmp.Diff(tc.want, problems(t, tc.data(t))); d != "" {
				t.Errorf("problems (-want +got):\n%s", d)
			}
		})
	}
}

func notAnswered(its []fidelity.Item) []fidelity.Problem {
	var out []fidelity.Problem
	for _, it := range its {
		out = append(out, fidelity.Problem{LinkID: it.LinkID, Message: "not answered (a rating 1-5 belongs in group " + string(it.Section) + ")"})
	}
	return out
}

func TestVersionedAndUnversionedCanonicalBothAccepted(t *testing.T) {
	for _, q := range []string{fidelity.QuestionnaireURL, fidelity.QuestionnaireURL + "|" + fidelity.QuestionnaireVersion} {
		data := edit(t, func(m map[string]any) { m["questionnaire"] = q })
		if _, err := fidelity.Parse(data); err != nil {
			t.Errorf("%s: %v", q, err)
		}
	}
}

func TestInvalidErrorMessage(t *testing.T) {
	err := &fidelity.InvalidError{Problems: []fidelity.Problem{
		{LinkID: "S1", Path: "QuestionnaireResponse.item[3].item[0]", Message: "not answered"},
		{LinkID: "S2", Message: "not answered"},
	}}
	want := "fidelity: invalid review: 2 problems: S1 (QuestionnaireResponse.item[3].item[0]): not answered; S2: not answered"
	if err.Error() != want {
		t.Errorf("Error() = %q\nwant %q", err.Error(), want)
	}
}

func questionnaire(t *testing.T) artifacts.Artifact {
	t.Helper()
	qs, err := artifacts.Questionnaires()
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range qs {
		if q.URL == fidelity.QuestionnaireURL {
			return q
		}
	}
	t.Fatalf("Questionnaire %s is not published", fidelity.QuestionnaireURL)
	return artifacts.Artifact{}
}

// The item table in scale.go and the published Questionnaire must agree.
func TestScaleMatchesQuestionnaire(t *testing.T) {
	q := questionnaire(t)
	if q.Version != fidelity.QuestionnaireVersion {
		t.Errorf("version %q, want %q", q.Version, fidelity.QuestionnaireVersion)
	}
	type qItem struct {
		LinkID       string `json:"linkId"`
		Prefix       string
		Text         string
		Type         string
		Required     bool
		Repeats      bool
		AnswerOption []struct{ ValueInteger *int }
		Item         []qItem
	}
	var doc struct {
		Status string
		Item   []qItem
	}
	if err := json.Unmarshal(q.Data, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Status != "active" {
		t.Errorf("status %q", doc.Status)
	}
	var got []string
	for _, top := range doc.Item {
		got = append(got, top.LinkID+":"+top.Type)
		if !top.Required {
			t.Errorf("%s is not required", top.LinkID)
		}
	}
	want := []string{"program:string", "review-date:date", "reviewer:string", "staffing:group", "organization:group", "services:group"}
	if d := cmp.Diff(want, got); d != "" {
		t.Fatalf("top-level items (-want +got):\n%s", d)
	}
	var rated []fidelity.Item
	for i, sec := range fidelity.Sections() {
		g := doc.Item[3+i]
		if g.Text != sec.Title() {
			t.Errorf("group %s text %q, want %q", sec, g.Text, sec.Title())
		}
		for _, it := range g.Item {
			rated = append(rated, fidelity.Item{LinkID: it.LinkID, Section: sec, Text: it.Text})
			if it.Type != "integer" || !it.Required || it.Repeats || it.Prefix != it.LinkID+"." || len(it.Item) != 0 {
				t.Errorf("%s: type %q, required %v, repeats %v, prefix %q", it.LinkID, it.Type, it.Required, it.Repeats, it.Prefix)
			}
			var opts []int
			for _, o := range it.AnswerOption {
				if o.ValueInteger != nil {
					opts = append(opts, *o.ValueInteger)
				}
			}
			if d := cmp.Diff([]int{1, 2, 3, 4, 5}, opts); d != "" {
				t.Errorf("%s answer options (-want +got):\n%s", it.LinkID, d)
			}
		}
	}
	if d := cmp.Diff(fidelity.Items(), rated); d != "" {
		t.Errorf("scale.go and the Questionnaire differ (-table +questionnaire):\n%s", d)
	}
}

// `ipsfhir validate` must accept the Questionnaire and a filled-in review.
func TestValidatorAcceptsQuestionnaireAndSample(t *testing.T) {
	v, err := mappings.NewValidator()
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{
		"questionnaire":            questionnaire(t).Data,
		"review-good.json":         readTestdata(t, "review-good.json"),
		"invalid-in-progress.json": readTestdata(t, "invalid-in-progress.json"), // valid R4, yet not a finished review
	} {
		issues, err := v.ValidateJSON(data)
		if err != nil || issues != nil {
			t.Errorf("%s: %v %+v", name, err, issues)
		}
	}
}

func TestItemsIsACopy(t *testing.T) {
	its := fidelity.Items()
	its[0].LinkID = "X"
	if fidelity.Items()[0].LinkID != "S1" {
		t.Error("Items exposes the scale table")
	}
}

func FuzzParse(f *testing.F) {
	for _, name := range []string{"review-good.json", "invalid-in-progress.json", "invalid-many-problems.json"} {
		data, err := os.ReadFile(filepath.Join(testdata, name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(`{"resourceType":"QuestionnaireResponse","item":[{"linkId":"staffing","item":[{"linkId":"S1","answer":[{"valueInteger":1e3}]}]}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := fidelity.Parse(data)
		if err != nil {
			var inv *fidelity.InvalidError
			if !errors.As(err, &inv) || len(inv.Problems) == 0 {
				t.Fatalf("error %v is not an *InvalidError with problems", err)
			}
			return
		}
		s := r.Summary()
		if s.Total < fidelity.MinTotal || s.Total > fidelity.MaxTotal || len(s.Items) != 25 {
			t.Fatalf("valid review scored %d with %d items", s.Total, len(s.Items))
		}
	})
}
