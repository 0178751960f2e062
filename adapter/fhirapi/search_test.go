package fhirapi_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ipsfhir/ipsfhir/adapter/fhirapi"
	"github.com/ipsfhir/ipsfhir/adapter/store"
	"github.com/ipsfhir/ipsfhir/ips"
	"github.com/ipsfhir/ipsfhir/mappings"
)

func TestMetadataIsPublicAndValid(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	r := h.get("/fhir/metadata", "")
	if r.status != http.StatusOK {
		t.Fatalf("metadata without a key: %d %s", r.status, r.body)
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/fhir+json") {
		t.Errorf("Content-Type %q", ct)
	}
	v, err := mappings.NewValidator()
	if err != nil {
		t.Fatal(err)
	}
	issues, err := v.ValidateJSON(r.body)
	if err != nil || mappings.HasErrors(issues) {
		t.Fatalf("the served statement is not valid: %v\n%s", err, mappings.OperationOutcomeJSON(issues))
	}
	var cs struct {
		ResourceType string `json:"resourceType"`
		Kind         string `json:"kind"`
		Software     struct {
			Name, Version string
		} `json:"software"`
		Implementation struct {
			URL string `json:"url"`
		} `json:"implementation"`
		Rest []struct {
			Resource []struct {
				Type string `json:"type"`
			} `json:"resource"`
		} `json:"rest"`
	}
	if err := json.Unmarshal(r.body, &cs); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(r.body), `{`+"\n"+`  "resourceType": "CapabilityStatement"`) {
		t.Errorf("resourceType is not the first member:\n%.200s", r.body)
	}
	if cs.Kind != "instance" || cs.Software.Name != "ipsfhir" || cs.Software.Version == "" || cs.Implementation.URL != h.srv.URL+"/fhir" {
		t.Errorf("instance fields: kind %q, software %+v, implementation.url %q", cs.Kind, cs.Software, cs.Implementation.URL)
	}
	for _, res := range cs.Rest[0].Resource {
		if res.Type == "MeasureReport" {
			t.Error("MeasureReport declared although no Reports are configured")
		}
	}

	// With reports configured, MeasureReport is declared.
	h2 := newHarness(t, func(o *fhirapi.Options) {
		o.Reports = func(context.Context, string, bool) ([]json.RawMessage, error) { return nil, nil }
	})
	if !strings.Contains(string(h2.get("/fhir/metadata", "").body), `"type": "MeasureReport"`) {
		t.Error("MeasureReport not declared although Reports are configured")
	}
}

func TestEverythingElseNeedsAKey(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	for _, path := range []string{"/fhir/Goal", "/fhir/Goal/x", "/fhir/$export", "/fhir/Measure", "/fhir/Patient", "/fhir/nothing"} {
		r := h.get(path, "")
		wantOutcome(t, r, http.StatusUnauthorized)
		if !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("%s: no Bearer challenge", path)
		}
		wantOutcome(t, h.get(path, "not-a-key"), http.StatusUnauthorized)
	}
}

func TestRoles(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	c := h.cl.Clients[0]
	goal := "/fhir/Goal/" + h.idsOfType(c, "Goal")[0]
	for _, key := range []string{specialistKey, clinicianKey, adminKey} {
		if r := h.get("/fhir/Goal", key); r.status != http.StatusOK {
			t.Errorf("search: %d", r.status)
		}
		if r := h.get(goal, key); r.status != http.StatusOK {
			t.Errorf("read: %d", r.status)
		}
	}
	// HIE operators get exports and outcomes, never records one by one.
	wantOutcome(t, h.get("/fhir/Goal", hieKey), http.StatusForbidden)
	wantOutcome(t, h.get(goal, hieKey), http.StatusForbidden)
	wantOutcome(t, h.do(http.MethodPost, "/fhir/Goal/_search", hieKey, strings.NewReader(""), "Content-Type", "application/x-www-form-urlencoded"), http.StatusForbidden)
	if r := h.get("/fhir/Measure", hieKey); r.status != http.StatusOK {
		t.Errorf("hie reading Measure: %d", r.status)
	}
	// Program directors get outcomes only: no records, no export, no
	// audit trail.
	wantOutcome(t, h.get("/fhir/Goal", directorKey), http.StatusForbidden)
	wantOutcome(t, h.get(goal, directorKey), http.StatusForbidden)
	wantOutcome(t, h.do(http.MethodPost, "/fhir/Goal/_search", directorKey, strings.NewReader(""), "Content-Type", "application/x-www-form-urlencoded"), http.StatusForbidden)
	wantOutcome(t, h.get("/fhir/AuditEvent", directorKey), http.StatusForbidden)
	wantOutcome(t, h.do(http.MethodPost, "/fhir/Group/"+h.cl.ProgramID()+"/$export", directorKey, nil, "Prefer", "respond-async"), http.StatusForbidden)
	if r := h.get("/fhir/Measure", directorKey); r.status != http.StatusOK {
		t.Errorf("director reading Measure: %d", r.status)
	}
	// Clinicians, specialists and directors do not export.
	for _, key := range []string{specialistKey, clinicianKey, directorKey} {
		wantOutcome(t, h.do(http.MethodGet, "/fhir/$export", key, nil, "Prefer", "respond-async"), http.StatusForbidden)
	}
}

func TestSearchByPatient(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	v, err := mappings.NewValidator()
	if err != nil {
		t.Fatal(err)
	}
	c := h.cl.Clients[0]
	ident := url.QueryEscape(c.Patient.System + "|" + c.Patient.Value)
	for _, typ := range []string{"Goal", "CarePlan", "Observation", "DocumentReference"} {
		want := h.idsOfType(c, typ)
		for _, q := range []string{"patient:identifier=" + ident, "patient=Patient/" + c.ID, "patient=" + c.ID} {
			path := "/fhir/" + typ + "?" + q
			r := h.get(path, clinicianKey)
			issues, err := v.ValidateJSON(r.body)
			if err != nil || mappings.HasErrors(issues) {
				t.Fatalf("%s: the searchset is not valid: %v\n%s", path, err, mappings.OperationOutcomeJSON(issues))
			}
			b := h.search(path, clinicianKey)
			if got := b.ids(t); !slices.Equal(got, want) || *b.Total != len(want) {
				t.Errorf("%s: total %d, ids %v; want %v", path, *b.Total, got, want)
			}
			if self := b.link("self"); !strings.HasPrefix(self, h.srv.URL+"/fhir/"+typ+"?") {
				t.Errorf("%s: self link %q", path, self)
			}
			if b.link("next") != "" {
				t.Errorf("%s: a next link on the only page", path)
			}
		}
	}

	// Every resource carries its id, version, lastUpdated and the security labels.
	b := h.search("/fhir/Goal?patient="+c.ID, clinicianKey)
	stored, err := h.st.ClientByPatient(t.Context(), c.Patient.System, c.Patient.Value)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range b.Entry {
		var g struct {
			Meta struct {
				VersionID   string `json:"versionId"`
				LastUpdated string `json:"lastUpdated"`
				Security    []struct{ System, Code string }
			} `json:"meta"`
		}
		if err := json.Unmarshal(e.Resource, &g); err != nil {
			t.Fatal(err)
		}
		at, err := time.Parse(time.RFC3339Nano, g.Meta.LastUpdated)
		if err != nil || !at.Equal(stored.UpdatedAt) || g.Meta.VersionID != "1" {
			t.Errorf("meta: lastUpdated %q versionId %q; want %s and 1", g.Meta.LastUpdated, g.Meta.VersionID, stored.UpdatedAt)
		}
		if len(g.Meta.Security) != len(mappings.DefaultSecurity) {
			t.Errorf("security labels %v", g.Meta.Security)
		}
	}

	// An unknown patient has nothing; so has a patient parameter and an
	// identifier naming two different clients.
	for _, q := range []string{"patient=nobody", "patient:identifier=" + url.QueryEscape("urn:x|nobody"),
		"patient=" + c.ID + "&patient:identifier=" + url.QueryEscape(h.cl.Clients[1].Patient.System+"|"+h.cl.Clients[1].Patient.Value)} {
		if b := h.search("/fhir/Goal?"+q, clinicianKey); *b.Total != 0 || len(b.Entry) != 0 {
			t.Errorf("%s: %d results", q, *b.Total)
		}
	}
}

func TestReadFollowsReferences(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	c := h.cl.Clients[0]
	plan := h.idsOfType(c, "CarePlan")[0]
	r := h.get("/fhir/CarePlan/"+plan, clinicianKey)
	if r.status != http.StatusOK || r.header.Get("ETag") != `W/"1"` || r.header.Get("Last-Modified") == "" {
		t.Fatalf("read CarePlan: %d, ETag %q, Last-Modified %q: %s", r.status, r.header.Get("ETag"), r.header.Get("Last-Modified"), r.body)
	}
	var cp struct {
		ID   string `json:"id"`
		Goal []struct {
			Reference string `json:"reference"`
		} `json:"goal"`
	}
	if err := json.Unmarshal(r.body, &cp); err != nil || cp.ID != plan || len(cp.Goal) != len(c.Goals) {
		t.Fatalf("CarePlan %s: %v %+v", r.body, err, cp)
	}
	for _, g := range cp.Goal {
		if !strings.HasPrefix(g.Reference, "Goal/") {
			t.Fatalf("goal reference %q is not literal", g.Reference)
		}
		if r := h.get("/fhir/"+g.Reference, clinicianKey); r.status != http.StatusOK {
			t.Errorf("the CarePlan's %s does not resolve: %d", g.Reference, r.status)
		}
	}
	// The id of a CarePlan is no Goal's; made-up ids are nobody's.
	wantOutcome(t, h.get("/fhir/Goal/"+plan, clinicianKey), http.StatusNotFound)
	wantOutcome(t, h.get("/fhir/Goal/00000000-0000-5000-8000-000000000000", clinicianKey), http.StatusNotFound)
	wantOutcome(t, h.get("/fhir/Goal/c001", clinicianKey), http.StatusNotFound)

	// A record added after the index was built is found.
	stored, err := h.st.ClientByPatient(t.Context(), c.Patient.System, c.Patient.Value)
	if err != nil {
		t.Fatal(err)
	}
	g := *c.Goals[0]
	g.ID = "g-new"
	stored.Client.Goals = append(stored.Client.Goals, &g)
	if _, err := h.st.SaveClients(t.Context(), []store.Stored{stored}, nil); err != nil {
		t.Fatal(err)
	}
	id := idOf(h.mapping.GoalKey(stored.Client, &g))
	if r := h.get("/fhir/Goal/"+id, clinicianKey); r.status != http.StatusOK || r.header.Get("ETag") != `W/"2"` {
		t.Errorf("new goal: %d %q", r.status, r.header.Get("ETag"))
	}
}

func TestIdentifierSearch(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	c := h.cl.Clients[0]
	k := h.mapping.GoalKey(c, c.Goals[0])
	tok := func(k mappings.Key) string { return url.QueryEscape(k.System() + "|" + k.Value()) }
	if got := h.search("/fhir/Goal?identifier="+tok(k), clinicianKey).ids(t); !slices.Equal(got, []string{idOf(k)}) {
		t.Errorf("by identifier: %v", got)
	}
	other := k
	other.Program = "another-program"
	for _, q := range []string{
		"/fhir/Goal?identifier=" + tok(other),                    // another program's
		"/fhir/Goal?identifier=" + tok(h.mapping.PlanKey(c)),     // a plan's, on Goal
		"/fhir/Goal?identifier=" + url.QueryEscape("urn:x|y"),    // not ipsfhir's
		"/fhir/Goal?identifier=" + tok(k) + "&patient=" + "c002", // another patient's
	} {
		if b := h.search(q, clinicianKey); *b.Total != 0 {
			t.Errorf("%s: %d results", q, *b.Total)
		}
	}
}

func TestConsentExcludesClients(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	var refused *ips.Client
	for _, c := range h.cl.Clients {
		if !consent.AllowsEHR(c) {
			refused = c
		}
	}
	if refused == nil {
		t.Fatal("the sample has no client refusing EHR sharing")
	}
	if b := h.search("/fhir/Goal?patient="+refused.ID, clinicianKey); *b.Total != 0 {
		t.Errorf("a refusing client's goals found: %d", *b.Total)
	}
	for _, id := range h.idsOfType(refused, "CarePlan") {
		wantOutcome(t, h.get("/fhir/CarePlan/"+id, adminKey), http.StatusNotFound)
	}
	all := h.search("/fhir/CarePlan?_count=500", clinicianKey)
	if *all.Total != len(h.cl.Clients)-1 {
		t.Errorf("CarePlans: %d, want one per consenting client (%d)", *all.Total, len(h.cl.Clients)-1)
	}
	if slices.Contains(all.ids(t), h.idsOfType(refused, "CarePlan")[0]) {
		t.Error("a refusing client's plan is in the unscoped search")
	}
}

func TestLastUpdated(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	// Save one client again: it is now later than every other.
	later := h.cl.Clients[3]
	stored, err := h.st.ClientByPatient(t.Context(), later.Patient.System, later.Patient.Value)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Millisecond)
	if _, err := h.st.SaveClients(t.Context(), []store.Stored{stored}, nil); err != nil {
		t.Fatal(err)
	}
	all, err := h.st.ListClients(t.Context(), "", 1000)
	if err != nil {
		t.Fatal(err)
	}
	var first, last time.Time
	for _, st := range all {
		if st.Client.ID == later.ID {
			last = st.UpdatedAt
		} else {
			first = st.UpdatedAt
		}
	}
	if !last.After(first) {
		t.Fatalf("the second save is not later: %s vs %s", last, first)
	}
	// expect counts the Goals of consenting clients whose UpdatedAt passes.
	expect := func(pass func(time.Time) bool) int {
		n := 0
		for _, st := range all {
			if consent.AllowsEHR(st.Client) && pass(st.UpdatedAt) {
				n += len(st.Client.Goals)
			}
		}
		return n
	}
	inst := func(t time.Time) string { return url.QueryEscape(t.UTC().Format(time.RFC3339Nano)) }
	day := first.UTC().Format("2006-01-02")
	dayStart, _ := time.Parse("2006-01-02", day)
	cases := []struct {
		q    string
		pass func(time.Time) bool
	}{
		{"gt" + inst(first), func(u time.Time) bool { return u.After(first) }},
		{"ge" + inst(last), func(u time.Time) bool { return !u.Before(last) }},
		{"le" + inst(first), func(u time.Time) bool { return !u.After(first) }},
		{"lt" + inst(last), func(u time.Time) bool { return u.Before(last) }},
		{inst(last), func(u time.Time) bool { return u.Equal(last) }},
		{"eq" + day, func(u time.Time) bool { return !u.Before(dayStart) && u.Before(dayStart.AddDate(0, 0, 1)) }},
		{"lt2000", func(time.Time) bool { return false }},
		{"ge2000-01&_lastUpdated=lt3000-01-01T00:00:00%2B02:00", func(time.Time) bool { return true }},
		{"lt2000,gt" + inst(first), func(u time.Time) bool { return u.After(first) }},
	}
	for _, c := range cases {
		b := h.search("/fhir/Goal?_count=500&_lastUpdated="+c.q, clinicianKey)
		if want := expect(c.pass); *b.Total != want || len(b.Entry) != want {
			t.Errorf("_lastUpdated=%s: total %d, %d entries; want %d", c.q, *b.Total, len(b.Entry), want)
		}
	}
	if got, want := h.search("/fhir/Goal?_lastUpdated=gt"+inst(first), clinicianKey).ids(t), h.idsOfType(later, "Goal"); !slices.Equal(got, want) {
		t.Errorf("after the first save: %v, want the re-saved client's goals %v", got, want)
	}
}

func TestPaging(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	var want []string
	for _, c := range h.cl.Clients { // the sample is in id order
		if consent.AllowsEHR(c) {
			want = append(want, h.idsOfType(c, "Observation")...)
		}
	}
	if len(want) < 20 {
		t.Fatalf("only %d Observations in the sample", len(want))
	}
	var got []string
	next := "/fhir/Observation?_count=7"
	pages := 0
	for next != "" {
		b := h.search(next, clinicianKey)
		if *b.Total != len(want) {
			t.Errorf("page %d: total %d, want %d", pages, *b.Total, len(want))
		}
		ids := b.ids(t)
		if len(ids) > 7 || (len(ids) < 7 && b.link("next") != "") {
			t.Errorf("page %d: %d entries", pages, len(ids))
		}
		got = append(got, ids...)
		next = b.link("next")
		if next != "" && !strings.HasPrefix(next, h.srv.URL+"/fhir/Observation?") {
			t.Fatalf("next link %q", next)
		}
		if pages++; pages > 100 {
			t.Fatal("paging does not end")
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("paged through %d ids, want %d in client order:\n%v\n%v", len(got), len(want), got, want)
	}

	// POST _search answers as GET does.
	post := h.do(http.MethodPost, "/fhir/Observation/_search?_count=7", clinicianKey, strings.NewReader("patient="+h.cl.Clients[0].ID),
		"Content-Type", "application/x-www-form-urlencoded")
	var b searchsetBundle
	if err := json.Unmarshal(post.body, &b); err != nil || post.status != http.StatusOK {
		t.Fatalf("POST _search: %d %s", post.status, post.body)
	}
	if ids := b.ids(t); !slices.Equal(ids, h.idsOfType(h.cl.Clients[0], "Observation")) {
		t.Errorf("POST _search: %v", ids)
	}

	// _count=0 gives the total alone.
	if b := h.search("/fhir/Observation?_count=0", clinicianKey); *b.Total != len(want) || len(b.Entry) != 0 || b.link("next") != "" {
		t.Errorf("_count=0: total %d, %d entries, next %q", *b.Total, len(b.Entry), b.link("next"))
	}
}

func TestErrorsAreOperationOutcomesWithoutValues(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	c := h.cl.Clients[0]
	mrn := c.Patient.Value
	cases := []struct {
		method, path string
		status       int
		names        string // what the message must name
	}{
		{"GET", "/fhir/Goal?foo=" + mrn, 400, "foo"},
		{"GET", "/fhir/Goal?" + mrn + "=1", 400, "parameters are"},
		{"GET", "/fhir/Goal?_lastUpdated=" + mrn, 400, "_lastUpdated"},
		{"GET", "/fhir/Goal?_lastUpdated=ne2024-01-01", 400, "_lastUpdated"},
		{"GET", "/fhir/Goal?_lastUpdated=2024-01-01T10:00", 400, "time zone"},
		{"GET", "/fhir/Goal?_lastUpdated=2024-02-30", 400, "_lastUpdated"},
		{"GET", "/fhir/Goal?patient=" + url.QueryEscape("Patient/"+mrn+"/x"), 400, "patient"},
		{"GET", "/fhir/Goal?patient:identifier=" + mrn, 400, "patient:identifier"},
		{"GET", "/fhir/Goal?identifier=" + mrn, 400, "identifier"},
		{"GET", "/fhir/Goal?patient=" + mrn + "&patient=" + c.ID, 400, "patient"},
		{"GET", "/fhir/Goal?_count=100000", 400, "_count"},
		{"GET", "/fhir/Goal?_cursor=" + mrn, 400, "_cursor"},
		{"GET", "/fhir/Goal?_format=xml", 400, "_format"},
		{"GET", "/fhir/Goal?patient=%zz" + mrn, 400, "URL encoding"},
		{"GET", "/fhir/Patient?identifier=" + mrn, 400, "not served"},
		{"GET", "/fhir/Patient/" + mrn, 400, "not served"},
		{"GET", "/fhir/Goal/" + mrn, 404, "no Goal"},
		{"GET", "/fhir/" + mrn, 404, "nothing is served"},
		{"GET", "/fhir/MeasureReport", 404, "not configured"},
		{"PUT", "/fhir/Goal/" + h.idsOfType(c, "Goal")[0], 405, "read-only"},
		{"DELETE", "/fhir/Goal", 405, "read-only"},
		{"POST", "/fhir/Goal/_search", 400, "x-www-form-urlencoded"},
		{"GET", "/fhir/Measure?url=" + mrn + "&url=x", 400, "url"},
		{"GET", "/fhir/bulk-status/" + mrn, 403, "export"},
	}
	for _, tc := range cases {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			// Strict: unknown parameters are refused, not ignored.
			r := h.do(tc.method, tc.path, clinicianKey, strings.NewReader(`{"patient":"`+mrn+`"}`), "Content-Type", "application/json", "Prefer", "handling=strict")
			text := wantOutcome(t, r, tc.status)
			if !strings.Contains(text, tc.names) {
				t.Errorf("message does not say %q: %s", tc.names, text)
			}
			if strings.Contains(string(r.body), mrn) || strings.Contains(string(r.body), c.ID) {
				t.Errorf("the error body echoes the request: %s", r.body)
			}
		})
	}
	h.tel.AssertNoneOf(t, append(h.patientData(), mrn)...)
}

func TestLogsHoldNoPatientData(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	c := h.cl.Clients[0]
	ident := url.QueryEscape(c.Patient.System + "|" + c.Patient.Value)
	h.search("/fhir/Goal?patient:identifier="+ident, clinicianKey)
	h.search("/fhir/Goal?patient="+c.ID, clinicianKey)
	h.get("/fhir/Goal/"+h.idsOfType(c, "Goal")[0], clinicianKey)
	h.get("/fhir/Goal?_lastUpdated="+c.Patient.Value, clinicianKey)
	h.get("/fhir/Measure/_search", clinicianKey)
	h.do(http.MethodGet, "/fhir/Group/"+h.cl.ProgramID()+"/$export", hieKey, nil, "Prefer", "respond-async")
	h.get("/fhir/bulk-status/0123", hieKey)
	h.get("/fhir/bulk-files/0123/Goal.ndjson", hieKey)
	logs := h.tel.Logs()
	for _, route := range []string{"/fhir/Goal/{id}", "/fhir/Goal", "/fhir/Group/{id}/$export", "/fhir/bulk-status/{job}", "/fhir/bulk-files/{job}/{file}"} {
		if !strings.Contains(logs, `"route":"`+route+`"`) {
			t.Errorf("the access log lacks the route %s:\n%s", route, logs)
		}
	}
	if strings.Contains(logs, `"route":"[redacted]"`) {
		t.Errorf("a route template was redacted by the log policy:\n%s", logs)
	}
	var ids []string
	for _, cl := range h.cl.Clients {
		ids = append(ids, cl.ID)
	}
	h.tel.AssertNoneOf(t, append(h.patientData(), append(ids, h.idsOfType(c, "Goal")...)...)...)
}

// TestMetadataAnswersHEAD: HEAD /fhir/metadata (how clients and load
// balancers probe a FHIR base) answers 200 with the GET's headers and no
// body, without a key.
func TestMetadataAnswersHEAD(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	r := h.do(http.MethodHead, "/fhir/metadata", "", nil)
	if r.status != http.StatusOK || len(r.body) != 0 || !strings.HasPrefix(r.header.Get("Content-Type"), "application/fhir+json") {
		t.Errorf("HEAD /fhir/metadata: %d, %d body bytes, Content-Type %q", r.status, len(r.body), r.header.Get("Content-Type"))
	}
}
