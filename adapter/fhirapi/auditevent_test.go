package fhirapi_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/ipsfhir/ipsfhir/adapter/fhirapi"
	"github.com/ipsfhir/ipsfhir/adapter/store"
	"github.com/ipsfhir/ipsfhir/mappings"
)

// TestAuditEvents: every /fhir request is in the audit trail, and admins
// read it as valid R4 AuditEvents, filtered by caller and date and paged
// by cursors; no other role may, and no event holds a search value, an id
// or anything else of the records.
func TestAuditEvents(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(o *fhirapi.Options) { o.Audit = o.Store.(store.Auditor) })
	c := h.cl.Clients[0]
	ident := url.QueryEscape(c.Patient.System + "|" + c.Patient.Value)
	if r := h.get("/fhir/Goal?patient:identifier="+ident, clinicianKey); r.status != http.StatusOK {
		t.Fatalf("search: %d", r.status)
	}
	if r := h.get("/fhir/Goal?patient:identifier="+ident, hieKey); r.status != http.StatusForbidden {
		t.Fatalf("hie search: %d", r.status)
	}
	h.get("/fhir/metadata", "") // public: not recorded

	r := h.get("/fhir/AuditEvent?agent-name=dr-okafor", adminKey)
	if r.status != http.StatusOK {
		t.Fatalf("AuditEvent search: %d %s", r.status, r.body)
	}
	v, err := mappings.NewValidator()
	if err != nil {
		t.Fatal(err)
	}
	if issues, err := v.ValidateJSON(r.body); err != nil || mappings.HasErrors(issues) {
		t.Errorf("AuditEvent Bundle is not valid R4: %v %v\n%s", err, issues, r.body)
	}
	var b struct {
		Entry []struct {
			Resource struct {
				ResourceType string `json:"resourceType"`
				Action       string `json:"action"`
				Outcome      string `json:"outcome"`
				Agent        []struct {
					Name string `json:"name"`
				} `json:"agent"`
				Entity []struct {
					Name        string `json:"name"`
					Description string `json:"description"`
					Detail      []struct {
						Type        string `json:"type"`
						ValueString string `json:"valueString"`
					} `json:"detail"`
				} `json:"entity"`
			} `json:"resource"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(r.body, &b); err != nil {
		t.Fatal(err)
	}
	if len(b.Entry) != 1 {
		t.Fatalf("dr-okafor's events: %d, want 1\n%s", len(b.Entry), r.body)
	}
	ev := b.Entry[0].Resource
	if ev.ResourceType != "AuditEvent" || ev.Action != "E" || ev.Outcome != "0" || ev.Agent[0].Name != "dr-okafor" ||
		ev.Entity[0].Name != "Goal" || ev.Entity[0].Description != "/fhir/Goal" || ev.Entity[0].Detail[1].ValueString != "200" {
		t.Errorf("the search's AuditEvent: %+v", ev)
	}
	for _, planted := range []string{c.ID, c.Patient.Value, "identifier"} {
		if strings.Contains(string(r.body), planted) {
			t.Errorf("the AuditEvents hold %q", planted)
		}
	}
	// All callers, one per page: the next link carries only a cursor.
	r = h.get("/fhir/AuditEvent?_count=1", adminKey)
	var page struct {
		Link []struct{ Relation, URL string } `json:"link"`
	}
	if err := json.Unmarshal(r.body, &page); err != nil {
		t.Fatal(err)
	}
	next := ""
	for _, l := range page.Link {
		if l.Relation == "next" {
			next = l.URL
		}
	}
	if u, err := url.Parse(next); err != nil || len(u.Query()) != 1 || u.Query().Get("_cursor") == "" {
		t.Fatalf("next link %q; want one with only _cursor", next)
	}
	if r := h.get(next, adminKey); r.status != http.StatusOK || !strings.Contains(string(r.body), `"AuditEvent"`) {
		t.Errorf("next page: %d %s", r.status, r.body)
	}
	// Dates: nothing before 2000, bad dates named.
	if r := h.get("/fhir/AuditEvent?date=lt2000-01-01", adminKey); r.status != http.StatusOK || strings.Contains(string(r.body), `"AuditEvent"`) {
		t.Errorf("events before 2000: %d %s", r.status, r.body)
	}
	if text := wantOutcome(t, h.get("/fhir/AuditEvent?date=yesterday", adminKey), http.StatusBadRequest); !strings.Contains(text, "date") {
		t.Errorf("bad date: %s", text)
	}
	for _, k := range []string{specialistKey, clinicianKey, hieKey} {
		wantOutcome(t, h.get("/fhir/AuditEvent", k), http.StatusForbidden)
	}
}
