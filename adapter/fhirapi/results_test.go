package fhirapi_test

import (
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

// The search parameters and result parameters US Core and other generic
// clients send: lenient handling of what the facade does not support,
// _summary, _elements, _sort, _id, subject and Observation code.

// TestUnknownParametersAreIgnoredAndSaid: FHIR servers ignore parameters
// they do not support, unless the client says Prefer: handling=strict, and
// say in the Bundle which they ignored, by name, never by value. Every page
// says it, and the links still carry nothing but the cursor.
func TestUnknownParametersAreIgnoredAndSaid(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	c := h.withJobs(3)
	mrn := c.Patient.Value
	want := h.idsOfType(c, "Observation")
	path := "/fhir/Observation?patient=" + c.ID + "&_count=2&foo=" + mrn + "&_include=Observation:subject&" + mrn + "=1"
	var got []string
	next := path
	for pages := 0; next != ""; pages++ {
		r := h.get(next, clinicianKey)
		if r.status != http.StatusOK {
			t.Fatalf("page %d: %d %s", pages, r.status, r.body)
		}
		var b searchsetBundle
		if err := json.Unmarshal(r.body, &b); err != nil {
			t.Fatal(err)
		}
		if pages == 0 {
			wantValid(t, "a Bundle with an outcome entry", r.body)
		}
		notes := b.outcomes(t)
		joined := strings.Join(notes, "\n")
		if len(notes) != 3 || !strings.Contains(joined, "foo: not a parameter") || !strings.Contains(joined, "_include: not a parameter") ||
			!strings.Contains(joined, "a query parameter name is not a parameter") {
			t.Errorf("page %d: outcome %q, want foo, _include and an unnamed one ignored", pages, notes)
		}
		if strings.Contains(joined, mrn) {
			t.Errorf("page %d: the outcome quotes a value: %q", pages, notes)
		}
		for _, rel := range []string{"self", "next"} {
			if l := b.link(rel); l != "" {
				u, _ := url.Parse(l)
				if q := u.Query(); len(q) != 1 || q.Get("_cursor") == "" {
					t.Errorf("page %d: %s link carries more than a cursor: %s", pages, rel, l)
				}
			}
		}
		got = append(got, b.ids(t)...)
		next = b.link("next")
		if pages > 20 {
			t.Fatal("paging does not end")
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("paged through %v, want %v", got, want)
	}

	// POST _search: the same.
	post := h.do(http.MethodPost, "/fhir/Observation/_search", clinicianKey, strings.NewReader("patient="+c.ID+"&foo=1"),
		"Content-Type", "application/x-www-form-urlencoded")
	var b searchsetBundle
	if err := json.Unmarshal(post.body, &b); err != nil || post.status != http.StatusOK {
		t.Fatalf("POST _search: %d %s", post.status, post.body)
	}
	if notes := b.outcomes(t); len(notes) != 1 || !strings.HasPrefix(notes[0], "foo:") || !slices.Equal(b.ids(t), want) {
		t.Errorf("POST _search: outcome %q, ids %v", notes, b.ids(t))
	}

	// A search that ignores nothing has no outcome entry.
	if notes := h.search("/fhir/Observation?patient="+c.ID, clinicianKey).outcomes(t); len(notes) != 0 {
		t.Errorf("an outcome with nothing ignored: %q", notes)
	}

	// Strict: 400, naming the parameter and not its value.
	for _, pref := range []string{"handling=strict", "respond-async, handling=strict"} {
		r := h.do(http.MethodGet, "/fhir/Observation?patient="+c.ID+"&foo="+mrn, clinicianKey, nil, "Prefer", pref)
		text := wantOutcome(t, r, http.StatusBadRequest)
		if !strings.Contains(text, "foo") || strings.Contains(string(r.body), mrn) {
			t.Errorf("Prefer: %s: %s", pref, r.body)
		}
	}
	// Lenient said outright is the default.
	if r := h.do(http.MethodGet, "/fhir/Observation?patient="+c.ID+"&foo=1", clinicianKey, nil, "Prefer", "handling=lenient"); r.status != http.StatusOK {
		t.Errorf("Prefer: handling=lenient: %d", r.status)
	}
	h.tel.AssertNoneOf(t, mrn)
}

// TestSummaryCount: _summary=count answers the total alone, with no
// resources and no next link, and its self link replays it.
func TestSummaryCount(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	all := h.search("/fhir/Observation?_count=500", clinicianKey)
	for _, path := range []string{"/fhir/Observation?_summary=count", "/fhir/Observation?_summary=count&_count=3"} {
		b := h.search(path, clinicianKey)
		if *b.Total != *all.Total || len(b.Entry) != 0 || b.link("next") != "" {
			t.Errorf("%s: total %d (want %d), %d entries, next %q", path, *b.Total, *all.Total, len(b.Entry), b.link("next"))
		}
		wantValid(t, path, h.get(path, clinicianKey).body)
		again := h.search(b.link("self"), clinicianKey)
		if *again.Total != *all.Total || len(again.Entry) != 0 {
			t.Errorf("%s: its self link gives total %d, %d entries", path, *again.Total, len(again.Entry))
		}
	}
	c := h.cl.Clients[0]
	if b := h.search("/fhir/Goal?_summary=count&patient="+c.ID, clinicianKey); *b.Total != len(c.Goals) || len(b.Entry) != 0 {
		t.Errorf("a patient's goals, counted: total %d, %d entries; want %d and none", *b.Total, len(b.Entry), len(c.Goals))
	}
	// _summary=false is the whole resource, as without it.
	if b := h.search("/fhir/Goal?_summary=false&patient="+c.ID, clinicianKey); b.matches() != len(c.Goals) || len(b.outcomes(t)) != 0 {
		t.Errorf("_summary=false: %d matches, outcomes %q", b.matches(), b.outcomes(t))
	}
	// A mode the facade cannot do is ignored and said (lenient), or refused.
	b := h.search("/fhir/Goal?_summary=text&patient="+c.ID, clinicianKey)
	if b.matches() != len(c.Goals) || len(b.outcomes(t)) != 1 || !strings.HasPrefix(b.outcomes(t)[0], "_summary:") {
		t.Errorf("_summary=text, lenient: %d matches, outcomes %q", b.matches(), b.outcomes(t))
	}
	for _, e := range b.Entry {
		if strings.Contains(string(e.Resource), "SUBSETTED") {
			t.Errorf("an ignored _summary marked a whole resource SUBSETTED")
		}
	}
	text := wantOutcome(t, h.do(http.MethodGet, "/fhir/Goal?_summary=text", clinicianKey, nil, "Prefer", "handling=strict"), http.StatusBadRequest)
	if !strings.Contains(text, "_summary") {
		t.Errorf("_summary=text, strict: %s", text)
	}
}

// withJobs returns a client who consents to EHR sharing and has at least
// n Observations, one of them a job.
func (h *harness) withJobs(n int) *ips.Client {
	h.t.Helper()
	for _, c := range h.cl.Clients {
		if consent.AllowsEHR(c) && len(c.Jobs) > 0 && len(h.idsOfType(c, "Observation")) >= n {
			return c
		}
	}
	h.t.Fatalf("the sample has no consenting client with a job and %d Observations", n)
	return nil
}

// wantValid checks that a searchset is valid FHIR R4, and valid against
// every profile its resources claim.
func wantValid(t *testing.T, what string, body []byte) {
	t.Helper()
	v, err := mappings.NewValidator()
	if err != nil {
		t.Fatal(err)
	}
	issues, err := v.ValidateJSON(body)
	if err != nil || mappings.HasErrors(issues) {
		t.Errorf("%s: not valid: %v\n%.2000s", what, err, mappings.OperationOutcomeJSON(issues))
	}
}

// resourceOf decodes a Bundle entry's resource into a map.
func resourceOf(t *testing.T, raw json.RawMessage) map[string]json.RawMessage {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// tagsOf lists a resource's meta.tag codes.
func tagsOf(t *testing.T, res map[string]json.RawMessage) []string {
	t.Helper()
	var meta struct {
		Tag []struct{ System, Code string }
	}
	if err := json.Unmarshal(res["meta"], &meta); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, tg := range meta.Tag {
		if tg.Code == "SUBSETTED" && tg.System != "http://terminology.hl7.org/CodeSystem/v3-ObservationValue" {
			t.Errorf("SUBSETTED in system %s", tg.System)
		}
		out = append(out, tg.Code)
	}
	return out
}

// TestElements: _elements keeps the listed top-level elements and those a
// resource cannot be without, and tags the resource SUBSETTED, on every
// page; the next link still carries nothing but the cursor.
func TestElements(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	full := h.search("/fhir/Goal?_count=500", clinicianKey)
	wantIDs := full.ids(t)
	// Goal's mandatory elements in R4: lifecycleStatus, description, subject.
	base := []string{"resourceType", "id", "meta", "lifecycleStatus", "description", "subject"}
	var got []string
	next := "/fhir/Goal?_elements=startDate,Goal.target,Observation.code&_count=4"
	for pages := 0; next != ""; pages++ {
		b := h.search(next, clinicianKey)
		for _, e := range b.Entry {
			res := resourceOf(t, e.Resource)
			for k := range res {
				if !slices.Contains(base, k) && k != "startDate" && k != "target" {
					t.Errorf("page %d: %s kept", pages, k)
				}
			}
			for _, k := range base {
				if _, ok := res[k]; !ok {
					t.Errorf("page %d: mandatory %s dropped", pages, k)
				}
			}
			if tags := tagsOf(t, res); !slices.Contains(tags, "SUBSETTED") || !slices.Contains(tags, "ipsfhir-authored") {
				t.Errorf("page %d: meta.tag %v, want the resource's own and SUBSETTED", pages, tags)
			}
			if strings.Contains(string(res["meta"]), `"profile"`) {
				t.Errorf("page %d: a subset claims a profile: %s", pages, res["meta"])
			}
		}
		got = append(got, b.ids(t)...)
		next = b.link("next")
		if next != "" {
			if u, _ := url.Parse(next); len(u.Query()) != 1 {
				t.Errorf("next link carries more than the cursor: %s", next)
			}
		}
		if pages > 50 {
			t.Fatal("paging does not end")
		}
	}
	if !slices.Equal(got, wantIDs) {
		t.Errorf("paged through %d goals, want %d", len(got), len(wantIDs))
	}
	// The whole resource has no SUBSETTED tag, and more than the subset.
	res := resourceOf(t, full.Entry[0].Resource)
	if slices.Contains(tagsOf(t, res), "SUBSETTED") || res["category"] == nil {
		t.Errorf("the whole Goal: tags %v, category %s", tagsOf(t, res), res["category"])
	}

	for _, path := range []string{"/fhir/Goal?_elements=startDate&_count=5", "/fhir/Observation?_elements=value&_count=20", "/fhir/CarePlan?_summary=data&_count=5"} {
		wantValid(t, path, h.get(path, clinicianKey).body)
	}

	// A choice element keeps its typed JSON name: value[x] is valueCodeableConcept.
	obs := h.search("/fhir/Observation?_elements=value,effective&_count=500", clinicianKey)
	values := 0
	for _, e := range obs.Entry {
		res := resourceOf(t, e.Resource)
		for k := range res {
			switch {
			case strings.HasPrefix(k, "value"), strings.HasPrefix(k, "effective"):
				values++
			case !slices.Contains([]string{"resourceType", "id", "meta", "status", "code"}, k):
				t.Errorf("Observation: %s kept", k)
			}
		}
	}
	if values == 0 {
		t.Error("_elements=value,effective kept no value[x] or effective[x]")
	}

	// _summary=data: everything but the narrative, tagged.
	plans := h.search("/fhir/CarePlan?_count=1", clinicianKey)
	if resourceOf(t, plans.Entry[0].Resource)["text"] == nil {
		t.Fatal("the CarePlan has no narrative to leave out")
	}
	data := h.search("/fhir/CarePlan?_count=1&_summary=data", clinicianKey)
	d := resourceOf(t, data.Entry[0].Resource)
	if d["text"] != nil || d["activity"] == nil || !slices.Contains(tagsOf(t, d), "SUBSETTED") {
		t.Errorf("_summary=data: text %s, activity kept %v, tags %v", d["text"], d["activity"] != nil, tagsOf(t, d))
	}

	// A malformed list is refused, naming _elements and not the value.
	mrn := h.cl.Clients[0].Patient.Value
	r := h.get("/fhir/Goal?_elements="+url.QueryEscape("status,"+mrn+" x"), clinicianKey)
	if text := wantOutcome(t, r, http.StatusBadRequest); !strings.Contains(text, "_elements") || strings.Contains(string(r.body), mrn) {
		t.Errorf("malformed _elements: %s", r.body)
	}
}

// resave saves clients again, in the order given, a few milliseconds
// apart, and returns when each was saved.
func (h *harness) resave(clients ...*ips.Client) map[string]time.Time {
	h.t.Helper()
	at := map[string]time.Time{}
	for _, c := range clients {
		time.Sleep(3 * time.Millisecond)
		st, err := h.st.ClientByPatient(h.t.Context(), c.Patient.System, c.Patient.Value)
		if err != nil {
			h.t.Fatal(err)
		}
		if _, err := h.st.SaveClients(h.t.Context(), []store.Stored{st}, nil); err != nil {
			h.t.Fatal(err)
		}
	}
	all, err := h.st.ListClients(h.t.Context(), "", 1000)
	if err != nil {
		h.t.Fatal(err)
	}
	for _, st := range all {
		at[st.Client.ID] = st.UpdatedAt
	}
	return at
}

// TestSortLastUpdated: _sort=_lastUpdated and -_lastUpdated order by when
// the store last saved the client (then client id), across pages.
func TestSortLastUpdated(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	// Save every consenting client again, in reverse id order: the
	// _lastUpdated order is then the reverse of the default.
	var consenting []*ips.Client
	for _, c := range h.cl.Clients {
		if consent.AllowsEHR(c) && len(c.Goals) > 0 {
			consenting = append(consenting, c)
		}
	}
	reversed := slices.Clone(consenting)
	slices.Reverse(reversed)
	at := h.resave(reversed...)
	for i := 1; i < len(reversed); i++ {
		if !at[reversed[i].ID].After(at[reversed[i-1].ID]) {
			t.Fatalf("saves are not apart: %s %s", at[reversed[i-1].ID], at[reversed[i].ID])
		}
	}
	goalsOf := func(cs []*ips.Client) []string {
		var out []string
		for _, c := range cs {
			out = append(out, h.idsOfType(c, "Goal")...)
		}
		return out
	}
	pageAll := func(path string) []string {
		var out []string
		for next, pages := path, 0; next != ""; pages++ {
			b := h.search(next, clinicianKey)
			out = append(out, b.ids(t)...)
			next = b.link("next")
			if pages > 50 {
				t.Fatalf("%s: paging does not end", path)
			}
		}
		return out
	}
	cases := []struct {
		path string
		want []string
	}{
		{"/fhir/Goal?_count=3", goalsOf(consenting)},
		{"/fhir/Goal?_sort=_lastUpdated&_count=3", goalsOf(reversed)},
		{"/fhir/Goal?_sort=-_lastUpdated&_count=3", goalsOf(consenting)},
		{"/fhir/Goal?_sort=_lastUpdated&_count=1", goalsOf(reversed)},
		{"/fhir/Goal?_sort=_lastUpdated&_count=500", goalsOf(reversed)},
	}
	for _, c := range cases {
		if got := pageAll(c.path); !slices.Equal(got, c.want) {
			t.Errorf("%s:\n got %v\nwant %v", c.path, got, c.want)
		}
	}
	// -_lastUpdated puts the latest save first.
	latest := reversed[len(reversed)-1]
	if first := h.search("/fhir/Goal?_sort=-_lastUpdated&_count=1", clinicianKey).ids(t); !slices.Equal(first, h.idsOfType(latest, "Goal")[:1]) {
		t.Errorf("-_lastUpdated: first %v, want a goal of %s, saved last", first, latest.ID)
	}

	// A client saved while paging moves: it is not lost from the pages
	// still to come in ascending order.
	b := h.search("/fhir/Goal?_sort=_lastUpdated&_count=2", clinicianKey)
	h.resave(reversed[0])
	var rest []string
	for next := b.link("next"); next != ""; {
		p := h.search(next, clinicianKey)
		rest = append(rest, p.ids(t)...)
		next = p.link("next")
	}
	if !slices.Contains(rest, h.idsOfType(reversed[0], "Goal")[0]) {
		t.Errorf("a client saved during paging is missing from the later pages")
	}

	// Another order is ignored and said (lenient), or refused (strict).
	lenient := h.search("/fhir/Goal?_sort=status&_count=500", clinicianKey)
	if !slices.Equal(lenient.ids(t), goalsOf(consenting)) || len(lenient.outcomes(t)) != 1 || !strings.HasPrefix(lenient.outcomes(t)[0], "_sort:") {
		t.Errorf("_sort=status, lenient: outcomes %q", lenient.outcomes(t))
	}
	text := wantOutcome(t, h.do(http.MethodGet, "/fhir/Goal?_sort=status", clinicianKey, nil, "Prefer", "handling=strict"), http.StatusBadRequest)
	if !strings.Contains(text, "_sort") {
		t.Errorf("_sort=status, strict: %s", text)
	}
}

// TestIDSearch: _id finds resources by id, any of a comma-separated list,
// every _id given applying.
func TestIDSearch(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	c1, c2 := h.cl.Clients[0], h.cl.Clients[1]
	g1, g2 := h.idsOfType(c1, "Goal")[0], h.idsOfType(c2, "Goal")[0]
	plan := h.idsOfType(c1, "CarePlan")[0]
	cases := []struct {
		q    string
		want []string
	}{
		{"_id=" + g1, []string{g1}},
		{"_id=" + g2 + "," + g1, []string{g1, g2}}, // in client order
		{"_id=" + g1 + "," + g2 + "&_id=" + g2, []string{g2}},
		{"_id=" + g1 + "&_id=" + g2, nil},
		{"_id=" + plan, nil}, // a CarePlan's id, on Goal
		{"_id=" + g1 + "&patient=" + c2.ID, nil},
		{"_id=" + g1 + "&patient=" + c1.ID, []string{g1}},
		{"_id=00000000-0000-5000-8000-000000000000", nil},
		{"_id=c001", nil},
	}
	for _, tc := range cases {
		b := h.search("/fhir/Goal?"+tc.q, clinicianKey)
		if got := b.ids(t); !slices.Equal(got, tc.want) || *b.Total != len(tc.want) {
			t.Errorf("%s: total %d, %v; want %v", tc.q, *b.Total, got, tc.want)
		}
	}
	if got := h.search("/fhir/CarePlan?_id="+plan, clinicianKey).ids(t); !slices.Equal(got, []string{plan}) {
		t.Errorf("CarePlan by _id: %v", got)
	}
	mrn := c1.Patient.Value
	r := h.get("/fhir/Goal?_id="+url.QueryEscape(mrn+"/x"), clinicianKey)
	if text := wantOutcome(t, r, http.StatusBadRequest); !strings.Contains(text, "_id") || strings.Contains(string(r.body), mrn) {
		t.Errorf("malformed _id: %s", r.body)
	}
}

// TestSubjectSearch: subject is patient by another name, on every type.
func TestSubjectSearch(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	c := h.cl.Clients[0]
	ident := url.QueryEscape(c.Patient.System + "|" + c.Patient.Value)
	for _, typ := range []string{"Goal", "CarePlan", "Observation", "DocumentReference"} {
		want := h.idsOfType(c, typ)
		for _, q := range []string{"subject=Patient/" + c.ID, "subject=" + c.ID, "subject:identifier=" + ident, "subject=" + c.ID + "&patient=" + c.ID} {
			b := h.search("/fhir/"+typ+"?"+q, clinicianKey)
			if got := b.ids(t); !slices.Equal(got, want) || len(b.outcomes(t)) != 0 {
				t.Errorf("%s?%s: %v, outcomes %q; want %v", typ, q, got, b.outcomes(t), want)
			}
		}
		for _, q := range []string{"subject=Group/" + h.cl.ProgramID(), "subject=" + c.ID + "&patient=" + h.cl.Clients[1].ID} {
			if b := h.search("/fhir/"+typ+"?"+q, clinicianKey); *b.Total != 0 {
				t.Errorf("%s?%s: %d results", typ, q, *b.Total)
			}
		}
	}
	wantOutcome(t, h.get("/fhir/Goal?subject="+url.QueryEscape("Patient/a/b"), clinicianKey), http.StatusBadRequest)
}

// codesOf lists the system|code of each coding of an Observation's code.
func codesOf(t *testing.T, raw json.RawMessage) []string {
	t.Helper()
	var o struct {
		Code struct {
			Coding []struct{ System, Code string }
		}
	}
	if err := json.Unmarshal(raw, &o); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, c := range o.Code.Coding {
		out = append(out, c.System+"|"+c.Code)
	}
	return out
}

// TestObservationCode: Observation code, alone and with patient (what US
// Core clients send), in every token form, against what the mapped
// resources hold, a site's own code included.
func TestObservationCode(t *testing.T) {
	t.Parallel()
	flowsheet := ips.Coding{System: "urn:oid:1.2.840.114350.1.13.0.1.7.2.707679", Code: "4401", Display: "Employment status (flowsheet)"}
	h := newHarness(t, func(o *fhirapi.Options) {
		o.Mapping.SiteCodes = map[mappings.Kind]ips.Coding{mappings.KindEmploymentStatus: flowsheet}
	})
	all := h.search("/fhir/Observation?_count=500", clinicianKey)
	// expect lists the ids of the Observations one of whose codings
	// passes, by what the resources themselves say.
	expect := func(b searchsetBundle, pass func(system, code string) bool) []string {
		var out []string
		for _, e := range b.Entry {
			for _, sc := range codesOf(t, e.Resource) {
				sys, code, _ := strings.Cut(sc, "|")
				if pass(sys, code) {
					var r struct{ ID string }
					_ = json.Unmarshal(e.Resource, &r)
					out = append(out, r.ID)
					break
				}
			}
		}
		return out
	}
	loinc := "http://loinc.org"
	cases := []struct {
		q    string
		pass func(system, code string) bool
	}{
		{"code=" + url.QueryEscape(loinc+"|11341-5"), func(s, c string) bool { return s == loinc && c == "11341-5" }},
		{"code=11341-5", func(s, c string) bool { return c == "11341-5" }},
		{"code=74165-2,11341-5", func(s, c string) bool { return c == "74165-2" || c == "11341-5" }},
		{"code=" + url.QueryEscape(loinc+"|"), func(s, c string) bool { return s == loinc }},
		{"code=" + url.QueryEscape("|11341-5"), func(s, c string) bool { return false }},
		{"code=" + url.QueryEscape(flowsheet.System+"|"+flowsheet.Code), func(s, c string) bool { return s == flowsheet.System && c == flowsheet.Code }},
		{"code=4401&code=" + url.QueryEscape(loinc+"|74165-2"), func(s, c string) bool { return c == "4401" }},
		{"code=4401&code=11341-5", func(s, c string) bool { return false }},
		{"code=" + url.QueryEscape(loinc+"|99999-9"), func(s, c string) bool { return false }},
	}
	for _, tc := range cases {
		want := expect(all, tc.pass)
		b := h.search("/fhir/Observation?_count=500&"+tc.q, clinicianKey)
		if got := b.ids(t); !slices.Equal(got, want) || *b.Total != len(want) {
			t.Errorf("%s: total %d, %d ids; want %d", tc.q, *b.Total, len(got), len(want))
		}
	}
	if len(expect(all, func(s, c string) bool { return c == "4401" })) == 0 || len(expect(all, func(s, c string) bool { return c == "11341-5" })) == 0 {
		t.Fatal("the sample has no job or no employment status Observation: the cases above prove little")
	}

	// With patient, what US Core clients send.
	c := h.withJobs(1)
	mine := h.search("/fhir/Observation?patient="+c.ID, clinicianKey)
	want := expect(mine, func(s, code string) bool { return s == loinc && code == "11341-5" })
	b := h.search("/fhir/Observation?patient=Patient/"+c.ID+"&code="+url.QueryEscape(loinc+"|11341-5"), clinicianKey)
	if got := b.ids(t); !slices.Equal(got, want) || len(want) == 0 {
		t.Errorf("patient+code: %v, want %v", got, want)
	}

	// Malformed: 400 naming code; code on Goal is not a parameter.
	mrn := c.Patient.Value
	r := h.get("/fhir/Observation?code="+url.QueryEscape("a|"+mrn+"|c"), clinicianKey)
	if text := wantOutcome(t, r, http.StatusBadRequest); !strings.Contains(text, "code") || strings.Contains(string(r.body), mrn) {
		t.Errorf("malformed code: %s", r.body)
	}
	if notes := h.search("/fhir/Goal?code=11341-5", clinicianKey).outcomes(t); len(notes) != 1 || !strings.HasPrefix(notes[0], "code:") {
		t.Errorf("code on Goal: %q", notes)
	}
}
