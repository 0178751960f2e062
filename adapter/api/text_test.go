package api_test

import (
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ipsfhir/ipsfhir/adapter/store"
)

// TestInvalidTextIsRefused: text the JSON decoder would silently change
// (bytes that are not UTF-8 and unpaired surrogate escapes, both read as
// U+FFFD) or that PostgreSQL cannot hold in text (NUL) is refused with 422
// naming the path, and nothing is stored; valid text, escaped or not, is
// stored exactly.
func TestInvalidTextIsRefused(t *testing.T) {
	forEachStore(t, func(t *testing.T, st store.Store) {
		h := newHarness(t, st)
		cases := []struct {
			name, method, path, body string
			at                       string
		}{
			{"Latin-1 in a goal", "POST", "/api/v1/clients", clientJSON("c-1", "MRN1", "Work at a caf\xe9", "Bakery"), "goals[0].description"},
			{"truncated sequence in an employer", "POST", "/api/v1/clients", clientJSON("c-1", "MRN1", "goal", "Bakery \xe2\x82"), "jobs[0].employer"},
			{"unpaired surrogate escape", "POST", "/api/v1/clients", clientJSON("c-1", "MRN1", `goal \udc00 text`, "Bakery"), "goals[0].description"},
			{"NUL escape", "POST", "/api/v1/clients", clientJSON("c-1", "MRN1", "goal", `Bakery\u0000`), "jobs[0].employer"},
			{"invalid MRN", "PUT", "/api/v1/clients/c-1", clientJSON("c-1", "MRN\xff", "goal", "Bakery"), "patient.value"},
			{"invalid field name", "POST", "/api/v1/clients", strings.Replace(clientJSON("c-1", "MRN1", "goal", "Bakery"), `"specialist"`, "\"consent\": {\"ehr\xc0\": true}, \"specialist\"", 1), "consent"},
		}
		for _, tc := range cases {
			r := h.do(tc.method, tc.path, tc.body)
			want(t, r, http.StatusUnprocessableEntity, tc.name)
			if !slices.Contains(r.paths(t), tc.at) {
				t.Errorf("%s: no issue at %s: %s", tc.name, tc.at, r.body)
			}
			if strings.Contains(string(r.body), "MRN") || strings.Contains(string(r.body), "Bakery") || strings.Contains(string(r.body), "caf") {
				t.Errorf("%s: the error echoes the body: %s", tc.name, r.body)
			}
			if _, _, err := st.GetClient(t.Context(), "c-1"); !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("%s: the client was stored: %v", tc.name, err)
			}
		}
		if d := h.depth(); len(d) != 0 {
			t.Errorf("refused bodies enqueued outbox items: %v", d)
		}

		// Records of an existing client: the record's path, the client
		// left as it was.
		want(t, h.do("POST", "/api/v1/clients", clientJSON("c-2", "MRN2", "goal", "Bakery")), http.StatusCreated, "create")
		r := h.do("POST", "/api/v1/clients/c-2/goals", `{"id": "g2", "description": "new \ud83d goal", "status": "active", "start": "2026-01-06"}`)
		want(t, r, http.StatusUnprocessableEntity, "goal with an unpaired surrogate")
		if p := r.paths(t); !cmp.Equal(p, []string{"description"}) {
			t.Errorf("goal with an unpaired surrogate: %s", r.body)
		}
		r = h.do("PUT", "/api/v1/clients/c-2/jobs/j1", `{"id": "j1", "employer": "E`+"\x80"+`", "title": "T", "start": "2026-04-01", "hoursPerWeek": 12, "hourlyWage": {"value": 16.5, "currency": "USD"}, "competitive": true}`)
		want(t, r, http.StatusUnprocessableEntity, "job with invalid UTF-8")
		if p := r.paths(t); !cmp.Equal(p, []string{"employer"}) {
			t.Errorf("job with invalid UTF-8: %s", r.body)
		}
		if _, v, _ := st.GetClient(t.Context(), "c-2"); v != 1 {
			t.Errorf("the client changed: version %d", v)
		}

		// Valid text in every form is stored as it was meant.
		const goal = `Work at a café \ud83d\ude00, \\u0000 is text here, and so is �`
		want(t, h.do("POST", "/api/v1/clients", clientJSON("c-3", "MRN3", goal, "Bakery")), http.StatusCreated, "valid text")
		c, _, err := st.GetClient(t.Context(), "c-3")
		if err != nil || c.Goals[0].Description != "Work at a café 😀, \\u0000 is text here, and so is \uFFFD" {
			t.Errorf("stored %q (%v)", c.Goals[0].Description, err)
		}
		for _, s := range []string{"MRN1", "MRN2", "Bakery", "caf"} {
			if strings.Contains(h.logs.String(), s) {
				t.Errorf("the log holds %q", s)
			}
		}
	})
}
