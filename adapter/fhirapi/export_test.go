package fhirapi_test

import (
	"bufio"
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/ipsfhir/ipsfhir/adapter/api"
	"github.com/ipsfhir/ipsfhir/adapter/fhirapi"
	"github.com/ipsfhir/ipsfhir/adapter/store"
	"github.com/ipsfhir/ipsfhir/ips"
	"github.com/ipsfhir/ipsfhir/mappings"
)

type bulkManifest struct {
	TransactionTime     string `json:"transactionTime"`
	Request             string `json:"request"`
	RequiresAccessToken bool   `json:"requiresAccessToken"`
	Output              []struct {
		Type  string `json:"type"`
		URL   string `json:"url"`
		Count int    `json:"count"`
	} `json:"output"`
	Error []struct {
		Type  string `json:"type"`
		URL   string `json:"url"`
		Count int    `json:"count"`
	} `json:"error"`
}

// kickOff starts an export and returns its status URL.
func (h *harness) kickOff(path, key string, prefer ...string) string {
	h.t.Helper()
	if len(prefer) == 0 {
		prefer = []string{"respond-async"}
	}
	var header []string
	for _, p := range prefer {
		header = append(header, "Prefer", p)
	}
	r := h.do(http.MethodGet, path, key, nil, append(header, "Accept", "application/fhir+json")...)
	if r.status != http.StatusAccepted {
		h.t.Fatalf("kick-off %s: %d %s", path, r.status, r.body)
	}
	loc := r.header.Get("Content-Location")
	if !strings.HasPrefix(loc, h.srv.URL+"/fhir/bulk-status/") {
		h.t.Fatalf("Content-Location %q is not an absolute status URL", loc)
	}
	return loc
}

// exportWait is how long a test waits for an export to finish. A sample
// caseload's export takes about 2.5 s of CPU under -race; beside the rest
// of CI on two cores 10 s was not always enough (seen: "the export never
// finished" at loads of 9 to 23). Only a failing test waits this long.
const exportWait = 2 * time.Minute

// wait polls a status URL until the export is done.
func (h *harness) wait(status, key string) (bulkManifest, response) {
	h.t.Helper()
	for deadline := time.Now().Add(exportWait); ; {
		r := h.get(status, key)
		switch r.status {
		case http.StatusAccepted:
			if r.header.Get("X-Progress") == "" || r.header.Get("Retry-After") == "" {
				h.t.Errorf("in progress without X-Progress or Retry-After: %v", r.header)
			}
			if time.Now().After(deadline) {
				h.t.Fatal("the export never finished")
			}
			time.Sleep(50 * time.Millisecond)
			continue
		case http.StatusOK:
			if ct := r.header.Get("Content-Type"); ct != "application/json" {
				h.t.Errorf("manifest Content-Type %q", ct)
			}
			var m bulkManifest
			if err := json.Unmarshal(r.body, &m); err != nil {
				h.t.Fatalf("manifest: %v\n%s", err, r.body)
			}
			return m, r
		}
		return bulkManifest{}, r
	}
}

// download fetches every output file and returns the lines by type,
// checking each against the file's type and count.
func (h *harness) download(m bulkManifest, key string) map[string][][]byte {
	h.t.Helper()
	out := map[string][][]byte{}
	for _, f := range m.Output {
		r := h.get(f.URL, key)
		if r.status != http.StatusOK || r.header.Get("Content-Type") != "application/fhir+ndjson" {
			h.t.Fatalf("download %s: %d %q", f.Type, r.status, r.header.Get("Content-Type"))
		}
		sc := bufio.NewScanner(bytes.NewReader(r.body))
		sc.Buffer(nil, 1<<24)
		for sc.Scan() {
			line := slices.Clone(sc.Bytes())
			var head struct {
				ResourceType string `json:"resourceType"`
			}
			if err := json.Unmarshal(line, &head); err != nil || head.ResourceType != f.Type {
				h.t.Fatalf("a %s line is a %q: %v", f.Type, head.ResourceType, err)
			}
			out[f.Type] = append(out[f.Type], line)
		}
		if len(out[f.Type]) != f.Count {
			h.t.Errorf("%s: %d lines, manifest count %d", f.Type, len(out[f.Type]), f.Count)
		}
	}
	return out
}

// exported lists what an export of these clients holds, by type: the
// facade ids.
func (h *harness) exported(clients []*ips.Client, types ...string) map[string][]string {
	out := map[string][]string{}
	for _, c := range clients {
		for _, e := range mappings.ClientEntries(c, h.mapping) {
			if len(types) == 0 || slices.Contains(types, e.ResourceType) {
				out[e.ResourceType] = append(out[e.ResourceType], idOf(e.Key))
			}
		}
	}
	return out
}

// deidID is the id a record has in a de-identified export, computed here
// from the documented formula (a UUID, version 8, of the first 16 bytes of
// HMAC-SHA256(key, system|value) of its business identifier), not by the
// package.
func deidID(key []byte, k mappings.Key) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(k.System() + "|" + k.Value()))
	b := m.Sum(nil)
	b[6] = b[6]&0x0f | 0x80
	b[8] = b[8]&0x3f | 0x80
	u, err := uuid.FromBytes(b[:16])
	if err != nil {
		panic(err)
	}
	return u.String()
}

// exportedDeid lists what a de-identified export of these clients holds,
// by type: their ids under key. Chart notes are never in it.
func (h *harness) exportedDeid(clients []*ips.Client, key []byte, types ...string) map[string][]string {
	out := map[string][]string{}
	for _, c := range clients {
		for _, e := range mappings.ClientEntries(c, h.mapping) {
			if e.ResourceType != "DocumentReference" && (len(types) == 0 || slices.Contains(types, e.ResourceType)) {
				out[e.ResourceType] = append(out[e.ResourceType], deidID(key, e.Key))
			}
		}
	}
	return out
}

func idsByType(t *testing.T, lines map[string][][]byte) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for typ, ls := range lines {
		for _, l := range ls {
			var r struct {
				ID string `json:"id"`
			}
			if err := json.Unmarshal(l, &r); err != nil {
				t.Fatal(err)
			}
			out[typ] = append(out[typ], r.ID)
		}
	}
	return out
}

func equalSets(a, b map[string][]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		x, y := slices.Sorted(slices.Values(v)), slices.Sorted(slices.Values(b[k]))
		if !slices.Equal(x, y) {
			return false
		}
	}
	return true
}

func TestExportKickOffPollDownload(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	v, err := mappings.NewValidator()
	if err != nil {
		t.Fatal(err)
	}
	wantOutcome(t, h.get("/fhir/$export", hieKey), http.StatusBadRequest) // no Prefer: respond-async

	status := h.kickOff("/fhir/$export", hieKey)
	m, r := h.wait(status, hieKey)
	if r.status != http.StatusOK {
		t.Fatalf("status: %d %s", r.status, r.body)
	}
	if _, err := time.Parse(time.RFC3339Nano, m.TransactionTime); err != nil {
		t.Errorf("transactionTime %q: %v", m.TransactionTime, err)
	}
	if m.Request != h.srv.URL+"/fhir/$export" || !m.RequiresAccessToken || m.Error == nil || len(m.Error) != 0 {
		t.Errorf("manifest: %s", r.body)
	}
	if exp, err := http.ParseTime(r.header.Get("Expires")); err != nil || !exp.After(time.Now()) {
		t.Errorf("Expires %q", r.header.Get("Expires"))
	}

	lines := h.download(m, hieKey)
	var hie []*ips.Client
	for _, c := range h.cl.Clients {
		if consent.AllowsHIE(c) {
			hie = append(hie, c)
		}
	}
	if len(hie) == 0 || len(hie) == len(h.cl.Clients) {
		t.Fatalf("the sample should have some, not all, clients consenting to HIE sharing (%d)", len(hie))
	}
	if got, want := idsByType(t, lines), h.exportedDeid(hie, h.scoped(testPseudonymKey)); !equalSets(got, want) {
		t.Errorf("exported %v\nwant only the HIE-consenting clients' de-identified %v", got, want)
	}
	for typ, ls := range lines {
		for i, l := range ls {
			issues, err := v.ValidateJSON(l)
			if err != nil || mappings.HasErrors(issues) {
				t.Errorf("%s line %d is not valid: %v\n%s", typ, i+1, err, mappings.OperationOutcomeJSON(issues))
			}
		}
	}

	// Only the caller that started it, or an admin, sees the job.
	wantOutcome(t, h.get(status, hie2Key), http.StatusNotFound)
	wantOutcome(t, h.get(m.Output[0].URL, hie2Key), http.StatusNotFound)
	wantOutcome(t, h.get(m.Output[0].URL, clinicianKey), http.StatusForbidden)
	if r := h.get(m.Output[0].URL, adminKey); r.status != http.StatusOK {
		t.Errorf("admin download: %d", r.status)
	}
	wantOutcome(t, h.do(http.MethodDelete, status, hie2Key, nil), http.StatusNotFound)

	// DELETE frees it; then it is gone.
	if r := h.do(http.MethodDelete, status, hieKey, nil); r.status != http.StatusAccepted {
		t.Errorf("DELETE: %d %s", r.status, r.body)
	}
	wantOutcome(t, h.get(status, hieKey), http.StatusNotFound)
	wantOutcome(t, h.get(m.Output[0].URL, hieKey), http.StatusNotFound)

	var ids []string
	for _, c := range h.cl.Clients {
		ids = append(ids, c.ID)
	}
	h.tel.AssertNoneOf(t, append(h.patientData(), ids...)...)
}

func TestExportFilters(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(o *fhirapi.Options) { o.Limits.MaxJobs = 20 })
	var hie []*ips.Client
	for _, c := range h.cl.Clients {
		if consent.AllowsHIE(c) {
			hie = append(hie, c)
		}
	}

	// _type
	m, _ := h.wait(h.kickOff("/fhir/$export?_type=Goal,CarePlan&_outputFormat=ndjson", hieKey), hieKey)
	if got, want := idsByType(t, h.download(m, hieKey)), h.exportedDeid(hie, h.scoped(testPseudonymKey), "Goal", "CarePlan"); !equalSets(got, want) {
		t.Errorf("_type=Goal,CarePlan: %v, want %v", got, want)
	}
	if !strings.HasSuffix(m.Request, "/fhir/$export?_type=Goal,CarePlan&_outputFormat=ndjson") {
		t.Errorf("request %q", m.Request)
	}

	// _since: save one consenting client again; only it is newer.
	later := hie[1]
	stored, err := h.st.ClientByPatient(t.Context(), later.Patient.System, later.Patient.Value)
	if err != nil {
		t.Fatal(err)
	}
	since := stored.UpdatedAt
	time.Sleep(2 * time.Millisecond)
	if _, err := h.st.SaveClients(t.Context(), []store.Stored{stored}, nil); err != nil {
		t.Fatal(err)
	}
	m, _ = h.wait(h.kickOff("/fhir/$export?_since="+url.QueryEscape(since.UTC().Format(time.RFC3339Nano)), hieKey), hieKey)
	if got, want := idsByType(t, h.download(m, hieKey)), h.exportedDeid([]*ips.Client{later}, h.scoped(testPseudonymKey)); !equalSets(got, want) {
		t.Errorf("_since: %v, want only the re-saved client's %v", got, want)
	}
	// A _since after everything: an empty output array.
	m, _ = h.wait(h.kickOff("/fhir/$export?_since="+url.QueryEscape(time.Now().Add(time.Hour).UTC().Format(time.RFC3339)), hieKey), hieKey)
	if m.Output == nil || len(m.Output) != 0 {
		t.Errorf("nothing changed, yet output %+v", m.Output)
	}

	// The program's Group exports the same; no other Group exists.
	m, _ = h.wait(h.kickOff("/fhir/Group/"+h.cl.ProgramID()+"/$export?_type=DocumentReference", adminKey), adminKey)
	if got, want := idsByType(t, h.download(m, adminKey)), h.exported(hie, "DocumentReference"); !equalSets(got, want) {
		t.Errorf("Group export: %v, want %v", got, want)
	}
	wantOutcome(t, h.do(http.MethodGet, "/fhir/Group/another-program/$export", hieKey, nil, "Prefer", "respond-async"), http.StatusNotFound)

	// What is not supported is refused, naming the parameter...
	for q, name := range map[string]string{
		"_type=Patient":             "_type",
		"_since=2024-01-01":         "_since",
		"_outputFormat=text/csv":    "_outputFormat",
		"_elements=id":              "_elements",
		"_typeFilter=Goal%3Fx%3D1":  "_typeFilter",
		"patient=Patient/c001":      "patient",
		"_since=x&_since=y":         "_since",
		"includeAssociatedData=All": "includeAssociatedData",
		"_type=":                    "_type",
	} {
		text := wantOutcome(t, h.do(http.MethodGet, "/fhir/$export?"+q, hieKey, nil, "Prefer", "respond-async"), http.StatusBadRequest)
		if !strings.Contains(text, name) {
			t.Errorf("%s: the message does not name %s: %s", q, name, text)
		}
	}
	// ...unless the caller asks for leniency: then it is ignored and noted.
	status := h.kickOff("/fhir/$export?_type=Goal,Patient&_elements=id", hieKey, "respond-async; wait=10", "handling=lenient")
	m, _ = h.wait(status, hieKey)
	if got, want := idsByType(t, h.download(m, hieKey)), h.exportedDeid(hie, h.scoped(testPseudonymKey), "Goal"); !equalSets(got, want) {
		t.Errorf("lenient: %v, want %v", got, want)
	}
	if len(m.Error) != 1 || m.Error[0].Type != "OperationOutcome" || m.Error[0].Count != 2 {
		t.Fatalf("lenient: error files %+v, want one with two OperationOutcomes", m.Error)
	}
	r := h.get(m.Error[0].URL, hieKey)
	if r.status != http.StatusOK || !strings.Contains(string(r.body), "_elements") || strings.Count(string(r.body), "\n") != 2 {
		t.Errorf("error file: %d %s", r.status, r.body)
	}
}

// TestExportSlotsArePerCaller plays a hostile export caller: one hie key
// that starts an export and never fetches it must not block another
// caller's exports; its own next kick-off gets 429 with a Retry-After that
// says when its slot frees (its job's expiry), not a guess; fetching every
// file frees the slot at once; and an admin sees and cancels jobs.
func TestExportSlotsArePerCaller(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(o *fhirapi.Options) {
		o.Limits = fhirapi.Limits{MaxJobs: 1, MaxJobsPerCaller: 1, JobTTL: time.Minute}
	})
	first := h.kickOff("/fhir/$export", hieKey)
	m, r := h.wait(first, hieKey)
	if r.status != http.StatusOK {
		t.Fatalf("first export: %d", r.status)
	}
	// hie keeps its files unfetched: hie2 is not held back.
	other := h.kickOff("/fhir/$export", hie2Key)
	if _, r := h.wait(other, hie2Key); r.status != http.StatusOK {
		t.Fatalf("another caller's export while hie's sits unfetched: %d", r.status)
	}
	// hie's own slot is taken until its job expires, and Retry-After says so.
	r = h.do(http.MethodGet, "/fhir/$export", hieKey, nil, "Prefer", "respond-async")
	wantOutcome(t, r, http.StatusTooManyRequests)
	if after, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || after < 1 || after > 60 {
		t.Errorf("Retry-After %q; want the seconds until the unfetched job expires (at most 60)", r.header.Get("Retry-After"))
	}
	// Fetching every file frees the slot; the next kick-off drops the old job.
	h.download(m, hieKey)
	for _, f := range m.Error {
		h.get(f.URL, hieKey)
	}
	jobs := h.server.ExportJobs()
	if len(jobs) != 2 || !slices.ContainsFunc(jobs, func(j api.ExportJob) bool { return j.Owner == "state-hie" && j.Fetched && j.State == "complete" }) {
		t.Errorf("jobs an admin sees: %+v; want hie's, fetched, and hie2's", jobs)
	}
	second := h.kickOff("/fhir/$export", hieKey)
	wantOutcome(t, h.get(first, hieKey), http.StatusNotFound)
	if _, r := h.wait(second, hieKey); r.status != http.StatusOK {
		t.Errorf("hie's export once it fetched the first: %d", r.status)
	}
	// An admin cancels hie2's job: its owner's status URL is gone.
	var id string
	for _, j := range h.server.ExportJobs() {
		if j.Owner != "state-hie" {
			id = j.ID
		}
	}
	if !h.server.CancelExport(id) || h.server.CancelExport(id) {
		t.Error("CancelExport: want true once, then false")
	}
	wantOutcome(t, h.get(other, hie2Key), http.StatusNotFound)
	for _, j := range h.server.ExportJobs() {
		if j.ID == id {
			t.Errorf("a cancelled job is still listed: %+v", j)
		}
	}
	// After its TTL a finished job is gone and makes room.
	h.offset.Store(int64(2 * time.Minute))
	wantOutcome(t, h.get(second, hieKey), http.StatusNotFound)
	if jobs := h.server.ExportJobs(); len(jobs) != 0 {
		t.Errorf("jobs after the TTL: %+v", jobs)
	}

	// An export larger than the limit fails with an OperationOutcome.
	small := newHarness(t, func(o *fhirapi.Options) { o.Limits = fhirapi.Limits{MaxJobBytes: 1000} })
	_, r = small.wait(small.kickOff("/fhir/$export", hieKey), hieKey)
	if text := wantOutcome(t, r, http.StatusInternalServerError); !strings.Contains(text, "_type or _since") {
		t.Errorf("too large: %s", text)
	}
}

func TestCloseStopsRunningExports(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	for _, key := range []string{hieKey, hie2Key, adminKey} {
		h.kickOff("/fhir/$export", key)
	}
	h.server.Close() // waits for the jobs; the race detector and leak-free exit are the test
	r := h.do(http.MethodGet, "/fhir/$export", hieKey, nil, "Prefer", "respond-async")
	wantOutcome(t, r, http.StatusServiceUnavailable)
}

// postKickOff starts an export with a POST and returns its status URL.
func (h *harness) postKickOff(path, key, contentType, body string, prefer ...string) string {
	h.t.Helper()
	header := []string{"Accept", "application/fhir+json"}
	if contentType != "" {
		header = append(header, "Content-Type", contentType)
	}
	for _, p := range append([]string{"respond-async"}, prefer...) {
		header = append(header, "Prefer", p)
	}
	r := h.do(http.MethodPost, path, key, strings.NewReader(body), header...)
	if r.status != http.StatusAccepted {
		h.t.Fatalf("POST kick-off %s: %d %s", path, r.status, r.body)
	}
	loc := r.header.Get("Content-Location")
	if !strings.HasPrefix(loc, h.srv.URL+"/fhir/bulk-status/") {
		h.t.Fatalf("Content-Location %q is not an absolute status URL", loc)
	}
	return loc
}

// TestExportPostKickOff: a kick-off may be a POST of a Parameters resource
// (Bulk Data IG), or a POST with the parameters in the query and no body
// (Medplum's client); either is the export the GET would start. A body it
// cannot read is refused, naming the parameter and never a value.
func TestExportPostKickOff(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(o *fhirapi.Options) { o.Limits.MaxJobs = 20 })
	var hie []*ips.Client
	for _, c := range h.cl.Clients {
		if consent.AllowsHIE(c) {
			hie = append(hie, c)
		}
	}
	want := h.exportedDeid(hie, h.scoped(testPseudonymKey), "Goal", "CarePlan")

	get, _ := h.wait(h.kickOff("/fhir/$export?_type=Goal,CarePlan", hieKey), hieKey)
	if got := idsByType(t, h.download(get, hieKey)); !equalSets(got, want) {
		t.Fatalf("GET: %v, want %v", got, want)
	}
	since := time.Now().Add(-24 * time.Hour).UTC().Format(time.RFC3339)
	cases := []struct {
		name, path, contentType, body, request string
	}{
		{"Parameters", "/fhir/$export", "application/fhir+json", `{"resourceType":"Parameters","parameter":[
			{"name":"_type","valueString":"Goal,CarePlan"},{"name":"_outputFormat","valueString":"application/fhir+ndjson"},
			{"name":"_since","valueInstant":"` + since + `"}]}`, "/fhir/$export"},
		{"repeated _type, application/json, Group", "/fhir/Group/" + h.cl.ProgramID() + "/$export", "application/json; charset=utf-8", `{"resourceType":"Parameters","parameter":[
			{"name":"_type","valueString":"Goal"},{"name":"_type","valueCode":"CarePlan"}]}`, "/fhir/Group/" + h.cl.ProgramID() + "/$export"},
		{"query, no body", "/fhir/$export?_type=Goal,CarePlan", "", "", "/fhir/$export?_type=Goal,CarePlan"},
		{"query, no body, FHIR content type", "/fhir/$export?_type=Goal&_type=CarePlan", "application/fhir+json", "", "/fhir/$export?_type=Goal&_type=CarePlan"},
	}
	for _, tc := range cases {
		m, r := h.wait(h.postKickOff(tc.path, hieKey, tc.contentType, tc.body), hieKey)
		if r.status != http.StatusOK {
			t.Fatalf("%s: status %d %s", tc.name, r.status, r.body)
		}
		if got := idsByType(t, h.download(m, hieKey)); !equalSets(got, want) {
			t.Errorf("%s: %v, want what the GET exports, %v", tc.name, got, want)
		}
		if m.Request != h.srv.URL+tc.request || len(m.Error) != 0 {
			t.Errorf("%s: request %q (want the kick-off URL, without the body's parameters), errors %+v", tc.name, m.Request, m.Error)
		}
	}

	// Unsupported parameters: refused, or under handling=lenient noted.
	lenient := h.postKickOff("/fhir/$export", hieKey, "application/fhir+json", `{"resourceType":"Parameters","parameter":[
		{"name":"_type","valueString":"Goal,CarePlan"},{"name":"patient","valueReference":{"reference":"Patient/x"}}]}`, "handling=lenient")
	m, _ := h.wait(lenient, hieKey)
	if got := idsByType(t, h.download(m, hieKey)); !equalSets(got, want) || len(m.Error) != 1 || m.Error[0].Count != 1 {
		t.Errorf("lenient POST: %v, errors %+v", got, m.Error)
	}

	mrn := hie[0].Patient.Value
	bad := []struct {
		name, contentType, query, body string
		status                         int
		says                           string
	}{
		{"not JSON", "application/fhir+json", "", `{"resourceType":"Parameters",` + mrn, 400, "Parameters"},
		{"not Parameters", "application/fhir+json", "", `{"resourceType":"Patient","id":"` + mrn + `"}`, 400, "Parameters"},
		{"not JSON content", "text/plain", "", `_type=Goal&x=` + mrn, 415, "application/fhir+json"},
		{"both", "application/fhir+json", "?_type=Goal", `{"resourceType":"Parameters","parameter":[{"name":"_type","valueString":"Goal"}]}`, 400, "not both"},
		{"unsupported parameter", "application/fhir+json", "", `{"resourceType":"Parameters","parameter":[{"name":"patient","valueReference":{"reference":"Patient/` + mrn + `"}}]}`, 400, "patient"},
		{"bad _since", "application/fhir+json", "", `{"resourceType":"Parameters","parameter":[{"name":"_since","valueInstant":"` + mrn + `"}]}`, 400, "_since"},
		{"integer value", "application/fhir+json", "", `{"resourceType":"Parameters","parameter":[{"name":"_since","valueInteger":2024}]}`, 400, "_since"},
		{"two values", "application/fhir+json", "", `{"resourceType":"Parameters","parameter":[{"name":"_type","valueString":"Goal","valueCode":"Goal"}]}`, 400, "_type"},
		{"a part", "application/fhir+json", "", `{"resourceType":"Parameters","parameter":[{"name":"_type","part":[{"name":"x","valueString":"` + mrn + `"}]}]}`, 400, "_type"},
		{"no name", "application/fhir+json", "", `{"resourceType":"Parameters","parameter":[{"valueString":"` + mrn + `"}]}`, 400, "name"},
		{"a name that is no name", "application/fhir+json", "", `{"resourceType":"Parameters","parameter":[{"name":"` + mrn + `","valueString":"x"}]}`, 400, "not supported"},
		{"unknown type", "application/fhir+json", "", `{"resourceType":"Parameters","parameter":[{"name":"_type","valueString":"Patient"}]}`, 400, "_type"},
	}
	for _, tc := range bad {
		r := h.do(http.MethodPost, "/fhir/$export"+tc.query, hieKey, strings.NewReader(tc.body), "Content-Type", tc.contentType, "Prefer", "respond-async")
		text := wantOutcome(t, r, tc.status)
		if !strings.Contains(text, tc.says) {
			t.Errorf("%s: the message does not say %q: %s", tc.name, tc.says, text)
		}
		if strings.Contains(string(r.body), mrn) {
			t.Errorf("%s: the answer quotes the body: %s", tc.name, r.body)
		}
	}
	// The same rules as the GET: Prefer: respond-async, and the role.
	body := `{"resourceType":"Parameters","parameter":[{"name":"_type","valueString":"Goal"}]}`
	wantOutcome(t, h.do(http.MethodPost, "/fhir/$export", hieKey, strings.NewReader(body), "Content-Type", "application/fhir+json"), http.StatusBadRequest)
	wantOutcome(t, h.do(http.MethodPost, "/fhir/$export", clinicianKey, strings.NewReader(body), "Content-Type", "application/fhir+json", "Prefer", "respond-async"), http.StatusForbidden)
	wantOutcome(t, h.do(http.MethodPost, "/fhir/Group/another-program/$export", hieKey, strings.NewReader(body), "Content-Type", "application/fhir+json", "Prefer", "respond-async"), http.StatusNotFound)
	h.tel.AssertNoneOf(t, mrn)
}
