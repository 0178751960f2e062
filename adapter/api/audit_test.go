package api_test

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/ipsfhir/ipsfhir/adapter/store"
)

// TestAuditTrailRecordsWhoDidWhat: every request is in the audit trail
// with the caller, the action, the route template, how many records and
// the status, and nothing of the records themselves; admins read it at
// /admin/audit, filtered by caller and time, and no other role may.
func TestAuditTrailRecordsWhoDidWhat(t *testing.T) {
	forEachStore(t, func(t *testing.T, st store.Store) {
		h := newHarness(t, st)
		want(t, h.do("POST", "/api/v1/clients", clientJSON("c-aud1", "MRN770001", "Drive a forklift", "Harbor Freight Co")), http.StatusCreated, "create")
		want(t, h.do("POST", "/api/v1/clients", clientJSON("c-aud2", "MRN770002", "Bake bread", "Sunrise Bakery")), http.StatusCreated, "create")
		want(t, h.do("GET", "/api/v1/clients/c-aud1", ""), http.StatusOK, "read")
		want(t, h.do("GET", "/api/v1/clients?limit=10", "", "Authorization", "Bearer "+clinicianKey), http.StatusOK, "list")
		want(t, h.do("GET", "/api/v1/clients/c-aud1/goals", ""), http.StatusOK, "goals")
		want(t, h.do("GET", "/api/v1/clients/c-aud1", "", "Authorization", "Bearer "+hieKey), http.StatusForbidden, "hie read")
		want(t, h.do("GET", "/api/v1/clients/c-aud1", "", "Authorization", "Bearer not-a-key"), http.StatusUnauthorized, "bad key")

		r := h.do("GET", "/admin/audit", "", "Authorization", "Bearer "+adminKey)
		want(t, r, http.StatusOK, "audit")
		var page struct {
			Entries []store.AuditEntry `json:"entries"`
		}
		if err := json.Unmarshal(r.body, &page); err != nil {
			t.Fatal(err)
		}
		type row struct {
			caller, action, route, typ string
			records, status            int
		}
		var got []row
		for _, e := range page.Entries {
			got = append(got, row{e.Caller, e.Action, e.Route, e.ResourceType, e.Records, e.Status})
		}
		wantRows := []row{
			{"jordan", "C", "/api/v1/clients", "clients", 1, 201},
			{"jordan", "C", "/api/v1/clients", "clients", 1, 201},
			{"jordan", "R", "/api/v1/clients/{id}", "clients", 1, 200},
			{"dr-okafor", "E", "/api/v1/clients", "clients", 2, 200},
			{"jordan", "E", "/api/v1/clients/{id}/goals", "clients", 1, 200},
			{"state-hie", "R", "/api/v1/clients/{id}", "clients", 0, 403},
			{"", "E", "unmatched", "", 0, 401},
		}
		if !slices.Equal(got, wantRows) {
			t.Errorf("audit trail:\n got %+v\nwant %+v", got, wantRows)
		}
		for _, planted := range []string{"c-aud1", "c-aud2", "MRN770001", "Forklift", "forklift", "Bakery", "limit=10"} {
			if strings.Contains(string(r.body), planted) {
				t.Errorf("the audit trail holds %q: %s", planted, r.body)
			}
		}

		// Filters, paging, bad input, other roles.
		r = h.do("GET", "/admin/audit?caller=dr-okafor", "", "Authorization", "Bearer "+adminKey)
		want(t, r, http.StatusOK, "audit by caller")
		if !strings.Contains(string(r.body), `"caller":"dr-okafor"`) || strings.Contains(string(r.body), `"caller":"jordan"`) {
			t.Errorf("audit by caller: %s", r.body)
		}
		r = h.do("GET", "/admin/audit?limit=2", "", "Authorization", "Bearer "+adminKey)
		var p2 struct {
			Entries []store.AuditEntry `json:"entries"`
			Next    int64              `json:"next"`
		}
		if err := json.Unmarshal(r.body, &p2); err != nil || len(p2.Entries) != 2 || p2.Next != p2.Entries[1].ID {
			t.Errorf("first page of 2: %s", r.body)
		}
		r = h.do("GET", "/admin/audit?since=yesterday", "", "Authorization", "Bearer "+adminKey)
		want(t, r, http.StatusBadRequest, "bad since")
		if p := r.paths(t); !slices.Contains(p, "since") {
			t.Errorf("bad since: issue paths %v, want since", p)
		}
		r = h.do("GET", "/admin/audit?since=2999-01-01T00:00:00Z", "", "Authorization", "Bearer "+adminKey)
		if want(t, r, http.StatusOK, "future since"); !strings.Contains(string(r.body), `"entries":[]`) {
			t.Errorf("entries since 2999: %s", r.body)
		}
		for _, k := range []string{specialistKey, clinicianKey, hieKey} {
			want(t, h.do("GET", "/admin/audit", "", "Authorization", "Bearer "+k), http.StatusForbidden, "audit by a non-admin")
		}
	})
}
