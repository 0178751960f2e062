package api_test

import (
	"encoding/json"
	"net/http"
	"slices"
	"testing"

	"github.com/ipsfhir/ipsfhir/adapter/store"
	"github.com/ipsfhir/ipsfhir/ips"
)

// TestAcceptAndDeclineReferrals: a specialist finds the referrals waiting
// (status=referred), accepts one (active, enrolledOn) and declines another
// (closed without enrollment); only a referred client can be either.
func TestAcceptAndDeclineReferrals(t *testing.T) {
	forEachStore(t, func(t *testing.T, st store.Store) {
		h := newHarness(t, st)
		d := ips.MustDate
		past := []*ips.Episode{{EnrolledOn: d("2024-01-10"), ClosedOn: d("2024-09-30"), ClosedReason: "moved away"}}
		clients := []*ips.Client{
			{ID: "c-ref", Patient: ips.Identifier{System: "urn:x", Value: "1"}, Status: ips.ClientReferred, ReferredOn: d("2026-11-02"),
				Referral: &ips.ReferralSource{Connection: "clinic-a", ServiceRequest: "sr-1"}},
			{ID: "c-reref", Patient: ips.Identifier{System: "urn:x", Value: "2"}, Status: ips.ClientReferred, ReferredOn: d("2026-11-03"), PastEpisodes: past},
			{ID: "c-active", Patient: ips.Identifier{System: "urn:x", Value: "3"}, EnrolledOn: d("2026-01-05")},
		}
		var batch []store.Stored
		for _, c := range clients {
			batch = append(batch, store.Stored{Client: c})
		}
		if _, err := st.SaveClients(t.Context(), batch, nil); err != nil {
			t.Fatal(err)
		}

		r := h.do(http.MethodGet, "/api/v1/clients?status=referred&limit=1", "")
		want(t, r, http.StatusOK, "worklist")
		var page struct{ Clients []*ips.Client }
		if err := json.Unmarshal(r.body, &page); err != nil || len(page.Clients) != 1 || page.Clients[0].ID != "c-ref" {
			t.Fatalf("first page of referrals: %s", r.body)
		}
		next := r.header.Get("Link")
		if next != `</api/v1/clients?after=c-ref&limit=1&status=referred>; rel="next"` {
			t.Errorf("Link %q", next)
		}
		r = h.do(http.MethodGet, "/api/v1/clients?after=c-ref&limit=1&status=referred", "")
		if err := json.Unmarshal(r.body, &page); err != nil || len(page.Clients) != 1 || !page.Clients[0].Rereferred() || r.header.Get("Link") != "" {
			t.Errorf("second page: want the re-referral and no next page: %s %v", r.body, r.header)
		}
		want(t, h.do(http.MethodGet, "/api/v1/clients?status=waiting", ""), http.StatusBadRequest, "unknown status")

		r = h.do(http.MethodPost, "/api/v1/clients/c-ref/accept", `{"enrolledOn":"2026-11-01"}`)
		want(t, r, http.StatusUnprocessableEntity, "accept before the referral")
		if p := r.paths(t); !slices.Equal(p, []string{"enrolledOn"}) {
			t.Errorf("issue paths %v, want enrolledOn", p)
		}
		want(t, h.do(http.MethodPost, "/api/v1/clients/c-ref/accept", `{}`), http.StatusUnprocessableEntity, "accept without a date")
		want(t, h.do(http.MethodPost, "/api/v1/clients/c-ref/accept", `{"enrolled":"2026-11-10"}`), http.StatusUnprocessableEntity, "unknown field")
		h.drain()
		r = h.do(http.MethodPost, "/api/v1/clients/c-ref/accept", `{"enrolledOn":"2026-11-10"}`)
		want(t, r, http.StatusOK, "accept")
		got, _, err := st.GetClient(t.Context(), "c-ref")
		if err != nil || got.Status != ips.ClientActive || got.EnrolledOn != d("2026-11-10") || got.Referral == nil {
			t.Errorf("accepted client %+v %v; want active from 2026-11-10, the referral kept", got, err)
		}
		if dp := h.depth(); dp["clinic-a"] != 1 || dp["clinic-b"] != 1 {
			t.Errorf("outbox after accept %v; want the client queued for each connection", dp)
		}
		r = h.do(http.MethodPost, "/api/v1/clients/c-ref/accept", `{"enrolledOn":"2026-11-11"}`)
		want(t, r, http.StatusConflict, "accept of an active client")
		if p := r.paths(t); !slices.Equal(p, []string{"status"}) {
			t.Errorf("issue paths %v, want status", p)
		}
		want(t, h.do(http.MethodPost, "/api/v1/clients/c-active/decline", `{"closedOn":"2026-11-11","closedReason":"x"}`), http.StatusConflict, "decline of an active client")
		want(t, h.do(http.MethodPost, "/api/v1/clients/nobody/accept", `{"enrolledOn":"2026-11-11"}`), http.StatusNotFound, "accept of no client")
		want(t, h.do(http.MethodPost, "/api/v1/clients/c-reref/accept", `{"enrolledOn":"2026-11-11"}`, "Authorization", "Bearer "+clinicianKey), http.StatusForbidden, "a clinician accepting")

		want(t, h.do(http.MethodPost, "/api/v1/clients/c-reref/decline", `{"closedOn":"2026-11-20"}`), http.StatusUnprocessableEntity, "decline without a reason")
		r = h.do(http.MethodPost, "/api/v1/clients/c-reref/decline", `{"closedOn":"2026-11-20","closedReason":"does not want to work now"}`)
		want(t, r, http.StatusOK, "decline")
		got, _, _ = st.GetClient(t.Context(), "c-reref")
		if got.Status != ips.ClientClosed || !got.EnrolledOn.IsZero() || got.ClosedOn != d("2026-11-20") || len(got.PastEpisodes) != 1 {
			t.Errorf("declined client %+v; want closed without enrollment, the past episode kept", got)
		}
		r = h.do(http.MethodGet, "/api/v1/clients?status=referred", "")
		if err := json.Unmarshal(r.body, &page); err != nil || len(page.Clients) != 0 || string(r.body) == "" {
			t.Errorf("worklist after both: %s", r.body)
		}
	})
}

// TestPutKeepsPastEpisodes: a client written without pastEpisodes (a file
// or tool that predates episodes) keeps those the store holds; one whose
// dates no longer fit them is refused.
func TestPutKeepsPastEpisodes(t *testing.T) {
	forEachStore(t, func(t *testing.T, st store.Store) {
		h := newHarness(t, st)
		d := ips.MustDate
		c := &ips.Client{ID: "c1", Patient: ips.Identifier{System: "urn:x", Value: "1"}, Status: ips.ClientReferred, ReferredOn: d("2026-11-02"),
			PastEpisodes: []*ips.Episode{{EnrolledOn: d("2024-01-10"), ClosedOn: d("2024-09-30")}}}
		if _, err := st.SaveClients(t.Context(), []store.Stored{{Client: c}}, nil); err != nil {
			t.Fatal(err)
		}
		body := `{"id":"c1","patient":{"system":"urn:x","value":"1"},"status":"active","referredOn":"2026-11-02","enrolledOn":"2026-11-09"}`
		want(t, h.do(http.MethodPut, "/api/v1/clients/c1", body), http.StatusOK, "put without episodes")
		got, _, _ := st.GetClient(t.Context(), "c1")
		if len(got.PastEpisodes) != 1 || got.EnrolledOn != d("2026-11-09") {
			t.Errorf("client after put %+v; want the past episode kept", got)
		}
		stale := `{"id":"c1","patient":{"system":"urn:x","value":"1"},"enrolledOn":"2024-01-10","closedOn":"2024-09-30"}`
		r := h.do(http.MethodPut, "/api/v1/clients/c1", stale)
		want(t, r, http.StatusUnprocessableEntity, "put of a stale version")
		if p := r.paths(t); !slices.Equal(p, []string{"enrolledOn"}) {
			t.Errorf("issue paths %v, want enrolledOn", p)
		}
	})
}
