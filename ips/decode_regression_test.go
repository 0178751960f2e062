package ips

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// Regression tests for bugs found by fuzzing and review of Decode and
// Normalize. Each names the behaviour a user relies on.

const regClient = `{"id":"c1","patient":{"system":"urn:x","value":"v"},"enrolledOn":"2026-01-05"%s}`

func decodeClient(t *testing.T, extra string) (*Caseload, []Problem) {
	t.Helper()
	doc := `{"clients":[` + strings.Replace(regClient, "%s", extra, 1) + `]}`
	cl, err := Decode(strings.NewReader(doc))
	if err == nil {
		return cl, nil
	}
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("error %v (%T), want *ValidationError", err, err)
	}
	if cl != nil {
		t.Fatal("Decode returned a caseload along with problems")
	}
	return nil, ve.Problems
}

const regJob = `{"id":"j1","employer":"E","title":"T","start":"2026-02-01","hoursPerWeek":20,"hourlyWage":{"value":15,"currency":"USD"},"competitive":true%s}`

func job(extra string) string { return strings.Replace(regJob, "%s", extra, 1) }

func TestDecodeRejectsDuplicateKeys(t *testing.T) {
	// The schema sees the last "jobs", encoding/json would merge both: the
	// daysPerWeek of 9 must not slip in.
	_, ps := decodeClient(t, `,"jobs":[`+job(`,"daysPerWeek":9`)+`],"jobs":[`+job("")+`]`)
	if len(ps) == 0 || ps[0].Path != "clients[0].jobs" || !strings.Contains(ps[0].Message, "more than once") {
		t.Errorf("problems %v, want clients[0].jobs given more than once", ps)
	}
	_, ps = decodeClient(t, `,"patient":"0"`)
	if len(ps) == 0 {
		t.Error("a second patient key was accepted")
	}
}

func TestDecodeNumbers(t *testing.T) {
	cl, ps := decodeClient(t, `,"jobs":[`+job(`,"daysPerWeek":3.0`)+`]`)
	if ps != nil || cl.Clients[0].Jobs[0].DaysPerWeek != 3 {
		t.Errorf("daysPerWeek 3.0: %v, %v; want accepted as 3", ps, cl)
	}
	for _, tc := range []struct{ extra, path, msg string }{
		{`,"jobs":[{"id":"j1","employer":"E","title":"T","start":"2026-02-01","hoursPerWeek":20,"hourlyWage":{"value":1e400,"currency":"USD"},"competitive":true}]`, "clients[0].jobs[0].hourlyWage.value", "too large"},
		{`,"preferences":{"hoursPerWeek":1e-400}`, "clients[0].preferences.hoursPerWeek", "too small"},
	} {
		_, ps := decodeClient(t, tc.extra)
		if len(ps) != 1 || ps[0].Path != tc.path || !strings.Contains(ps[0].Message, tc.msg) {
			t.Errorf("%s: problems %v, want one at %s saying %q", tc.extra, ps, tc.path, tc.msg)
		}
	}
}

func TestDecodeReportsSchemaAndRuleProblemsTogether(t *testing.T) {
	goal := `{"id":"g1","description":"d","status":"%s","start":"2026-01-06"}`
	g := func(st string) string { return strings.Replace(goal, "%s", st, 1) }
	_, ps := decodeClient(t, `,"status":"bogus","goals":[`+g("active")+`,`+g("active")+`]`)
	var paths []string
	for _, p := range ps {
		paths = append(paths, p.Path)
	}
	want := []string{"clients[0].goals[1].id", "clients[0].status"}
	if d := cmp.Diff(want, paths); d != "" {
		t.Errorf("problem paths (-want +got):\n%s", d)
	}
}

func TestProblemsInReadingOrder(t *testing.T) {
	var clients []string
	for i := range 12 {
		clients = append(clients, `{"id":"c`+string(rune('a'+i))+`","patient":{"system":"s","value":"v`+string(rune('a'+i))+`"},"enrolledOn":"2026-01-05","nick":1}`)
	}
	_, err := Decode(strings.NewReader(`{"clients":[` + strings.Join(clients, ",") + `]}`))
	var ve *ValidationError
	if !errors.As(err, &ve) || len(ve.Problems) != 12 {
		t.Fatalf("got %v", err)
	}
	if ve.Problems[2].Path != "clients[2].nick" || ve.Problems[10].Path != "clients[10].nick" {
		t.Errorf("order %s, %s …; want clients[2] third and clients[10] eleventh", ve.Problems[2].Path, ve.Problems[10].Path)
	}
}

func TestNormalizeTreatsEmptyAndAbsentListsAlike(t *testing.T) {
	withEmpty, _ := decodeClient(t, `,"goals":[{"id":"g1","description":"d","status":"active","start":"2026-01-06","notes":[]}],"employmentStatus":[],"preferences":{"jobTypes":[]}`)
	without, _ := decodeClient(t, `,"goals":[{"id":"g1","description":"d","status":"active","start":"2026-01-06"}],"preferences":{}`)
	if d := cmp.Diff(Normalize(without), Normalize(withEmpty)); d != "" {
		t.Errorf("[] and absent normalize differently (-absent +empty):\n%s", d)
	}
}

func TestEmptyCaseloadSurvivesNormalizeAndEncode(t *testing.T) {
	cl, err := Decode(strings.NewReader(`{"clients":[]}`))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []*Caseload{Normalize(cl), {}} {
		var buf bytes.Buffer
		if err := Encode(&buf, c); err != nil {
			t.Fatal(err)
		}
		if _, err := Decode(&buf); err != nil {
			t.Errorf("Decode of an encoded empty caseload: %v", err)
		}
	}
}

// TestDecodeText: text that encoding/json would silently turn into U+FFFD
// (bytes that are not UTF-8, unpaired surrogate escapes) or that PostgreSQL
// cannot hold (NUL) is refused at its path; text in any valid form, escaped
// or not, decodes to exactly what was meant.
func TestDecodeText(t *testing.T) {
	for _, tc := range []struct {
		name, specialist string
		want             string // "" when refused
		says             string
	}{
		{"plain UTF-8", "José Müller 李", "José Müller 李", ""},
		{"escaped BMP", `Jos\u00e9`, "José", ""},
		{"escaped pair", `Jo \ud83d\ude00`, "Jo 😀", ""},
		{"a literal replacement character", "Jo \uFFFD", "Jo \uFFFD", ""},
		{"an escaped backslash before u0000", `Jo \\u0000`, `Jo \u0000`, ""},
		{"an escaped backslash before ud800", `Jo \\ud800`, `Jo \ud800`, ""},
		{"Latin-1", "Jos\xe9", "", "not valid UTF-8"},
		{"truncated", "Jo\xe2\x82", "", "not valid UTF-8"},
		{"overlong", "Jo\xc0\xaf", "", "not valid UTF-8"},
		{"encoded surrogate", "Jo\xed\xa0\x80", "", "not valid UTF-8"},
		{"lone high surrogate", `Jo \ud83d`, "", "unpaired UTF-16 surrogate"},
		{"high surrogate at the end", `Jo \ud83d\u0041`, "", "unpaired UTF-16 surrogate"},
		{"lone low surrogate", `Jo \ude00`, "", "unpaired UTF-16 surrogate"},
		{"reversed pair", `Jo \ude00\ud83d`, "", "unpaired UTF-16 surrogate"},
		{"NUL", `Jo\u0000`, "", "NUL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cl, ps := decodeClient(t, `,"specialist":"`+tc.specialist+`"`)
			if tc.want == "" {
				if len(ps) != 1 || ps[0].Path != "clients[0].specialist" || !strings.Contains(ps[0].Message, tc.says) {
					t.Errorf("problems %v, want one at clients[0].specialist saying %q", ps, tc.says)
				}
				return
			}
			if len(ps) > 0 {
				t.Fatalf("problems %v, want %q accepted", ps, tc.want)
			}
			if got := cl.Clients[0].Specialist; got != tc.want {
				t.Errorf("specialist %q, want %q", got, tc.want)
			}
		})
	}
}
