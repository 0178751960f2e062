package peer

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	epicCapability   = "../../testdata/ehr-capabilities/epic-r4-sandbox-2026-07.json"
	oracleCapability = "../../testdata/ehr-capabilities/oracle-health-millennium-r4-2026-08.json"
	// idSystem is the business-identifier namespace the tests write under,
	// standing in for the adapter's own.
	idSystem = "urn:ipsfhir:test:goal"
)

var uuidPattern = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

// fhirClient is a thin JSON-over-HTTP helper for one server.
type fhirClient struct {
	t    *testing.T
	base string
	hc   *http.Client
}

func newClient(t *testing.T, srv *Server) *fhirClient {
	return &fhirClient{t: t, base: srv.BaseURL, hc: &http.Client{Timeout: 30 * time.Second}}
}

type reply struct {
	status int
	header http.Header
	body   map[string]any
}

// call sends a request (path relative to the FHIR base) and decodes the JSON
// answer. A transport error fails the test; use try for expected ones.
func (c *fhirClient) call(method, path string, body any, headers ...string) reply {
	c.t.Helper()
	r, err := c.try(method, path, body, headers...)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	return r
}

func (c *fhirClient) try(method, path string, body any, headers ...string) (reply, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return reply{}, err
		}
		rd = bytes.NewReader(b)
	}
	target := path
	if !strings.HasPrefix(path, "http") {
		target = c.base + "/" + strings.TrimPrefix(path, "/")
	}
	req, err := http.NewRequest(method, target, rd)
	if err != nil {
		return reply{}, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/fhir+json")
	}
	req.Header.Set("Accept", "application/fhir+json")
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return reply{}, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return reply{}, err
	}
	r := reply{status: resp.StatusCode, header: resp.Header}
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &r.body); err != nil {
			return reply{}, fmt.Errorf("decoding %d answer: %w", resp.StatusCode, err)
		}
	}
	return r, nil
}

func (c *fhirClient) expect(r reply, status int, what string) {
	c.t.Helper()
	if r.status != status {
		c.t.Fatalf("%s: status %d, want %d; body %v", what, r.status, status, r.body)
	}
}

// expectOutcome checks an error answer: the status and an OperationOutcome
// whose text contains want.
func (c *fhirClient) expectOutcome(r reply, status int, want, what string) {
	c.t.Helper()
	c.expect(r, status, what)
	if r.body["resourceType"] != "OperationOutcome" {
		c.t.Fatalf("%s: body is %v, want an OperationOutcome", what, r.body["resourceType"])
	}
	if want != "" && !strings.Contains(outcomeText(r.body), want) {
		c.t.Fatalf("%s: OperationOutcome %q does not mention %q", what, outcomeText(r.body), want)
	}
}

func outcomeText(oo map[string]any) string {
	var parts []string
	for _, issue := range list(oo["issue"]) {
		m, _ := issue.(map[string]any)
		if d, ok := m["details"].(map[string]any); ok {
			parts = append(parts, fmt.Sprint(d["text"]))
		}
		for _, e := range list(m["expression"]) {
			parts = append(parts, fmt.Sprint(e))
		}
	}
	return strings.Join(parts, "; ")
}

func list(v any) []any { l, _ := v.([]any); return l }

func str(m map[string]any, path ...string) string {
	var cur any = m
	for _, p := range path {
		mm, ok := cur.(map[string]any)
		if !ok {
			return ""
		}
		cur = mm[p]
	}
	s, _ := cur.(string)
	return s
}

func entries(bundle map[string]any) []map[string]any {
	var out []map[string]any
	for _, e := range list(bundle["entry"]) {
		if m, ok := e.(map[string]any); ok {
			out = append(out, m)
		}
	}
	return out
}

func total(t *testing.T, bundle map[string]any) int {
	t.Helper()
	n, ok := bundle["total"].(float64)
	if !ok {
		t.Fatalf("bundle has no total: %v", bundle)
	}
	return int(n)
}

func link(bundle map[string]any, relation string) string {
	for _, l := range list(bundle["link"]) {
		if m, ok := l.(map[string]any); ok && m["relation"] == relation {
			s, _ := m["url"].(string)
			return s
		}
	}
	return ""
}

func patient(family string) map[string]any {
	return map[string]any{"resourceType": "Patient", "name": []any{map[string]any{"family": family}}}
}

func goal(patientRef, idValue, status string) map[string]any {
	return map[string]any{
		"resourceType":    "Goal",
		"lifecycleStatus": status,
		"description":     map[string]any{"text": "Work 20 hours a week in retail"},
		"subject":         map[string]any{"reference": patientRef},
		"identifier":      []any{map[string]any{"system": idSystem, "value": idValue}},
	}
}

func observation(patientRef string) map[string]any {
	return map[string]any{
		"resourceType": "Observation",
		"status":       "final",
		"code":         map[string]any{"coding": []any{map[string]any{"system": "http://loinc.org", "code": "67875-5"}}},
		"subject":      map[string]any{"reference": patientRef},
		"valueCodeableConcept": map[string]any{
			"coding": []any{map[string]any{"system": "http://snomed.info/sct", "code": "160903007"}},
		},
	}
}

// createPatient returns "Patient/<id>".
func (c *fhirClient) createPatient(family string) string {
	c.t.Helper()
	r := c.call("POST", "Patient", patient(family))
	c.expect(r, 201, "create Patient")
	return "Patient/" + str(r.body, "id")
}

func (c *fhirClient) searchIdentifier(resourceType, value string) map[string]any {
	c.t.Helper()
	r := c.call("GET", resourceType+"?identifier="+url.QueryEscape(idSystem+"|"+value), nil)
	c.expect(r, 200, "search by identifier")
	return r.body
}

func TestOwnMode(t *testing.T) {
	t.Parallel()
	srv := StartForTest(t, Options{})
	if !strings.HasPrefix(srv.BaseURL, "http://127.0.0.1:") || !strings.HasSuffix(srv.BaseURL, "/fhir/R4") {
		t.Fatalf("BaseURL = %q", srv.BaseURL)
	}

	t.Run("metadata", func(t *testing.T) {
		c := newClient(t, srv)
		r := c.call("GET", "metadata", nil)
		c.expect(r, 200, "metadata")
		if r.body["resourceType"] != "CapabilityStatement" || r.body["fhirVersion"] != "4.0.1" {
			t.Fatalf("metadata is %v %v", r.body["resourceType"], r.body["fhirVersion"])
		}
		if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/fhir+json") {
			t.Errorf("Content-Type = %q", ct)
		}
		rest := list(r.body["rest"])[0].(map[string]any)
		var goalEntry map[string]any
		for _, res := range list(rest["resource"]) {
			if m := res.(map[string]any); m["type"] == "Goal" {
				goalEntry = m
			}
		}
		if goalEntry == nil || goalEntry["conditionalCreate"] != true || goalEntry["conditionalUpdate"] != true {
			t.Fatalf("Goal entry: %v", goalEntry)
		}
		codes := map[string]bool{}
		for _, i := range list(goalEntry["interaction"]) {
			codes[str(i.(map[string]any), "code")] = true
		}
		// What the engine really does, and what it does not.
		for code, want := range map[string]bool{"create": true, "update": true, "vread": true, "search-type": true, "history-type": false} {
			if codes[code] != want {
				t.Errorf("Goal interaction %s declared = %v, want %v", code, codes[code], want)
			}
		}
	})

	t.Run("smart configuration and token", func(t *testing.T) {
		c := newClient(t, srv)
		r := c.call("GET", ".well-known/smart-configuration", nil)
		c.expect(r, 200, "smart-configuration")
		tokenURL := str(r.body, "token_endpoint")
		if !strings.HasPrefix(tokenURL, "http://127.0.0.1:") {
			t.Fatalf("token_endpoint = %q", tokenURL)
		}
		form := url.Values{
			"grant_type":            {"client_credentials"},
			"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"},
			"client_assertion":      {"eyJhbGciOiJSUzM4NCJ9.e30.c2ln"},
			"scope":                 {"system/Goal.rs"},
		}
		resp, err := http.PostForm(tokenURL, form)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var tok map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&tok); err != nil || resp.StatusCode != 200 || str(tok, "access_token") == "" {
			t.Fatalf("token: status %d, %v, %v", resp.StatusCode, tok, err)
		}
	})

	t.Run("create read update with versions", func(t *testing.T) {
		c := newClient(t, srv)
		pat := c.createPatient("Versions")
		r := c.call("POST", "Goal", goal(pat, "versions-1", "active"))
		c.expect(r, 201, "create Goal")
		id := str(r.body, "id")
		v1 := str(r.body, "meta", "versionId")
		// Version ids are UUIDs, not 1, 2, 3: an adapter that parses them as
		// integers breaks here, as it would against Medplum.
		if _, err := strconv.Atoi(v1); err == nil || !uuidPattern.MatchString(v1) {
			t.Fatalf("versionId %q: want a non-integer UUID", v1)
		}
		if got, want := r.header.Get("ETag"), `W/"`+v1+`"`; got != want {
			t.Errorf("ETag = %q, want %q", got, want)
		}
		if got, want := r.header.Get("Location"), srv.BaseURL+"/Goal/"+id+"/_history/"+v1; got != want {
			t.Errorf("Location = %q, want %q", got, want)
		}
		if _, err := http.ParseTime(r.header.Get("Last-Modified")); err != nil {
			t.Errorf("Last-Modified %q: %v", r.header.Get("Last-Modified"), err)
		}

		read := c.call("GET", "Goal/"+id, nil)
		c.expect(read, 200, "read")
		if read.header.Get("ETag") != `W/"`+v1+`"` {
			t.Errorf("read ETag = %q", read.header.Get("ETag"))
		}
		c.expect(c.call("GET", "Goal/"+id, nil, "If-None-Match", `W/"`+v1+`"`), 304, "read If-None-Match current")

		changed := read.body
		changed["lifecycleStatus"] = "on-hold"
		upd := c.call("PUT", "Goal/"+id, changed, "If-Match", `W/"`+v1+`"`)
		c.expect(upd, 200, "update with current If-Match")
		v2 := str(upd.body, "meta", "versionId")
		if v2 == v1 || !uuidPattern.MatchString(v2) {
			t.Fatalf("second versionId %q (first %q)", v2, v1)
		}
		changed["lifecycleStatus"] = "cancelled"
		c.expectOutcome(c.call("PUT", "Goal/"+id, changed, "If-Match", `W/"`+v1+`"`), 412, "", "update with stale If-Match")

		old := c.call("GET", "Goal/"+id+"/_history/"+v1, nil)
		c.expect(old, 200, "vread")
		if str(old.body, "lifecycleStatus") != "active" {
			t.Errorf("vread of first version: lifecycleStatus %q", str(old.body, "lifecycleStatus"))
		}
		hist := c.call("GET", "Goal/"+id+"/_history", nil)
		c.expect(hist, 200, "history")
		if n := len(entries(hist.body)); n != 2 {
			t.Errorf("history has %d entries, want 2", n)
		}

		c.expect(c.call("DELETE", "Goal/"+id, nil), 200, "delete")
		c.expectOutcome(c.call("GET", "Goal/"+id, nil), 410, "deleted", "read after delete")
		c.expect(c.call("GET", "Goal/does-not-exist", nil), 404, "read unknown id")
	})

	t.Run("conditional create by identifier twice makes one", func(t *testing.T) {
		c := newClient(t, srv)
		pat := c.createPatient("Conditional")
		ifNoneExist := "identifier=" + url.QueryEscape(idSystem+"|cond-1")
		first := c.call("POST", "Goal", goal(pat, "cond-1", "active"), "If-None-Exist", ifNoneExist)
		c.expect(first, 201, "first conditional create")
		second := c.call("POST", "Goal", goal(pat, "cond-1", "active"), "If-None-Exist", ifNoneExist)
		c.expect(second, 200, "second conditional create")
		if str(first.body, "id") != str(second.body, "id") {
			t.Fatalf("two resources: %s and %s", str(first.body, "id"), str(second.body, "id"))
		}
		if n := total(t, c.searchIdentifier("Goal", "cond-1")); n != 1 {
			t.Fatalf("%d Goals with the identifier, want 1", n)
		}
	})

	t.Run("conditional update by identifier", func(t *testing.T) {
		c := newClient(t, srv)
		pat := c.createPatient("CondUpdate")
		path := "Goal?identifier=" + url.QueryEscape(idSystem+"|cu-1")
		created := c.call("PUT", path, goal(pat, "cu-1", "proposed"))
		c.expect(created, 201, "conditional update (create)")
		updated := c.call("PUT", path, goal(pat, "cu-1", "active"))
		c.expect(updated, 200, "conditional update (update)")
		if str(created.body, "id") != str(updated.body, "id") || str(updated.body, "lifecycleStatus") != "active" {
			t.Fatalf("created %v, updated %v", created.body, updated.body)
		}
	})

	t.Run("transaction rewrites urn:uuid references", func(t *testing.T) {
		c := newClient(t, srv)
		patURN := "urn:uuid:0b8a3c1e-6f0b-4c47-9a53-5d3c1f1e2a01"
		bundle := map[string]any{
			"resourceType": "Bundle", "type": "transaction",
			"entry": []any{
				map[string]any{"fullUrl": patURN, "resource": patient("Txn"), "request": map[string]any{"method": "POST", "url": "Patient"}},
				map[string]any{
					"fullUrl":  "urn:uuid:0b8a3c1e-6f0b-4c47-9a53-5d3c1f1e2a02",
					"resource": goal(patURN, "txn-1", "active"),
					"request":  map[string]any{"method": "PUT", "url": "Goal?identifier=" + url.QueryEscape(idSystem+"|txn-1")},
				},
			},
		}
		r := c.call("POST", "", bundle)
		c.expect(r, 200, "transaction")
		if r.body["type"] != "transaction-response" || len(entries(r.body)) != 2 {
			t.Fatalf("response bundle: %v", r.body)
		}
		for i, e := range entries(r.body) {
			resp, _ := e["response"].(map[string]any)
			if resp["status"] != "201" || !strings.Contains(str(resp, "location"), "/_history/") || str(resp, "etag") == "" {
				t.Errorf("entry %d response: %v", i, resp)
			}
		}
		patID := str(entries(r.body)[0]["resource"].(map[string]any), "id")
		goals := c.searchIdentifier("Goal", "txn-1")
		got := str(entries(goals)[0]["resource"].(map[string]any), "subject", "reference")
		if got != "Patient/"+patID {
			t.Fatalf("Goal.subject = %q, want Patient/%s", got, patID)
		}
	})

	t.Run("failed transaction is rolled back", func(t *testing.T) {
		c := newClient(t, srv)
		pat := c.createPatient("Rollback")
		existing := c.call("POST", "Goal", goal(pat, "rb-existing", "active"))
		c.expect(existing, 201, "create")
		stale := existing.body
		stale["lifecycleStatus"] = "completed"
		bundle := map[string]any{
			"resourceType": "Bundle", "type": "transaction",
			"entry": []any{
				map[string]any{"resource": goal(pat, "rb-new", "active"), "request": map[string]any{"method": "POST", "url": "Goal"}},
				map[string]any{"resource": stale, "request": map[string]any{"method": "PUT", "url": "Goal/" + str(stale, "id"), "ifMatch": `W/"not-the-version"`}},
			},
		}
		c.expectOutcome(c.call("POST", "", bundle), 412, "", "transaction with a stale If-Match")
		if n := total(t, c.searchIdentifier("Goal", "rb-new")); n != 0 {
			t.Fatalf("the failed transaction's create is visible (%d)", n)
		}
		if got := str(c.call("GET", "Goal/"+str(stale, "id"), nil).body, "lifecycleStatus"); got != "active" {
			t.Fatalf("lifecycleStatus after rollback = %q", got)
		}
	})

	t.Run("large conditional transaction", func(t *testing.T) {
		// Medplum's own limits are 8 entries when any is conditional and 50
		// updates; the mappings' transaction Bundles are conditional updates
		// throughout and much larger.
		c := newClient(t, srv)
		pat := c.createPatient("Large")
		var es []any
		for i := range 60 {
			v := fmt.Sprintf("large-%d", i)
			es = append(es, map[string]any{
				"resource": goal(pat, v, "active"),
				"request":  map[string]any{"method": "PUT", "url": "Goal?identifier=" + url.QueryEscape(idSystem+"|"+v)},
			})
		}
		bundle := map[string]any{"resourceType": "Bundle", "type": "transaction", "entry": es}
		c.expect(c.call("POST", "", bundle), 200, "first large transaction")
		c.expect(c.call("POST", "", bundle), 200, "same transaction again")
		r := c.call("GET", "Goal?patient="+pat+"&_count=1", nil)
		c.expect(r, 200, "count")
		if n := total(t, r.body); n != 60 {
			t.Fatalf("%d Goals after posting the same transaction twice, want 60", n)
		}
	})

	t.Run("batch answers an invalid entry and processes the rest", func(t *testing.T) {
		c := newClient(t, srv)
		pat := c.createPatient("Batch")
		bad := goal(pat, "batch-bad", "active")
		delete(bad, "subject")
		bundle := map[string]any{
			"resourceType": "Bundle", "type": "batch",
			"entry": []any{
				map[string]any{"resource": goal(pat, "batch-good", "active"), "request": map[string]any{"method": "POST", "url": "Goal"}},
				map[string]any{"resource": bad, "request": map[string]any{"method": "POST", "url": "Goal"}},
			},
		}
		r := c.call("POST", "", bundle)
		c.expect(r, 200, "batch")
		es := entries(r.body)
		if len(es) != 2 || str(es[0], "response", "status") != "201" || str(es[1], "response", "status") != "400" {
			t.Fatalf("batch response: %v", r.body)
		}
		oo, _ := es[1]["response"].(map[string]any)["outcome"].(map[string]any)
		if !strings.Contains(outcomeText(oo), "Bundle.entry[1].resource") {
			t.Errorf("batch entry outcome does not name the entry: %q", outcomeText(oo))
		}
		// The same problem fails a transaction whole.
		bundle["type"] = "transaction"
		c.expectOutcome(c.call("POST", "", bundle), 400, "Bundle.entry[1].resource.subject", "transaction with an invalid entry")
	})

	t.Run("invalid resources answer 400", func(t *testing.T) {
		c := newClient(t, srv)
		c.expectOutcome(c.call("POST", "Goal", map[string]any{"resourceType": "Goal", "lifecycleStatus": "active"}), 400, "Goal.subject", "missing required")
		pat := c.createPatient("Invalid")
		unknown := goal(pat, "inv-1", "active")
		unknown["employer"] = "Acme"
		c.expectOutcome(c.call("POST", "Goal", unknown), 400, "employer", "unknown property")
		wrongShape := goal(pat, "inv-2", "active")
		wrongShape["startDate"] = "next tuesday"
		c.expectOutcome(c.call("POST", "Goal", wrongShape), 400, "", "bad date")
		c.expectOutcome(c.call("POST", "Goal", goal(pat, "inv-3", "active"), "Content-Type", "text/plain"), 415, "", "wrong content type")

		// A PATCH that makes the resource invalid is refused too (the check is
		// on every stored version, not only on request bodies).
		ok := c.call("POST", "Goal", goal(pat, "inv-4", "active"))
		c.expect(ok, 201, "create")
		patch := []any{map[string]any{"op": "remove", "path": "/subject"}}
		r := c.call("PATCH", "Goal/"+str(ok.body, "id"), patch, "Content-Type", "application/json-patch+json")
		c.expectOutcome(r, 400, "Goal.subject", "invalidating patch")
	})

	t.Run("search by identifier, patient and _lastUpdated", func(t *testing.T) {
		c := newClient(t, srv)
		pat := c.createPatient("Search")
		other := c.createPatient("SearchOther")
		a := c.call("POST", "Goal", goal(pat, "search-a", "active"))
		c.expect(a, 201, "create a")
		time.Sleep(5 * time.Millisecond) // distinct lastUpdated
		c.expect(c.call("POST", "Goal", goal(pat, "search-b", "active")), 201, "create b")
		c.expect(c.call("POST", "Goal", goal(other, "search-c", "active")), 201, "create c")

		byID := c.searchIdentifier("Goal", "search-b")
		if total(t, byID) != 1 {
			t.Fatalf("identifier search: %d", total(t, byID))
		}
		if full := str(entries(byID)[0], "fullUrl"); !strings.HasPrefix(full, srv.BaseURL+"/Goal/") {
			t.Errorf("fullUrl = %q", full)
		}
		// Token matching is case-insensitive in the engine; the index agrees.
		if n := total(t, c.searchIdentifier("Goal", "SEARCH-B")); n != 1 {
			t.Errorf("identifier search ignoring case: %d", n)
		}
		byValueOnly := c.call("GET", "Goal?identifier=search-b", nil)
		if total(t, byValueOnly.body) != 1 {
			t.Errorf("identifier search without system: %d", total(t, byValueOnly.body))
		}

		byPatient := c.call("GET", "Goal?patient="+url.QueryEscape(pat), nil)
		c.expect(byPatient, 200, "patient search")
		if n := total(t, byPatient.body); n != 2 {
			t.Fatalf("patient search: %d, want 2", n)
		}
		since := str(a.body, "meta", "lastUpdated")
		newer := c.call("GET", "Goal?patient="+url.QueryEscape(pat)+"&_lastUpdated="+url.QueryEscape("gt"+since), nil)
		c.expect(newer, 200, "_lastUpdated search")
		if n := total(t, newer.body); n != 1 || str(entries(newer.body)[0]["resource"].(map[string]any), "id") == str(a.body, "id") {
			t.Fatalf("_lastUpdated=gt%s: %d results %v", since, n, newer.body)
		}

		c.expectOutcome(c.call("GET", "Goal?employer=Acme", nil), 400, "employer", "unknown search parameter")
		lenient := c.call("GET", "Goal?employer=Acme&patient="+url.QueryEscape(pat), nil, "Prefer", "handling=lenient")
		c.expect(lenient, 200, "lenient unknown parameter")
		if n := total(t, lenient.body); n != 2 {
			t.Errorf("lenient search: %d, want 2", n)
		}
	})

	t.Run("identifier index follows writes", func(t *testing.T) {
		c := newClient(t, srv)
		pat := c.createPatient("Index")
		r := c.call("POST", "Goal", goal(pat, "idx-old", "active"))
		c.expect(r, 201, "create")
		g := r.body
		g["identifier"] = []any{map[string]any{"system": idSystem, "value": "idx-new"}}
		c.expect(c.call("PUT", "Goal/"+str(g, "id"), g), 200, "change identifier")
		if n := total(t, c.searchIdentifier("Goal", "idx-old")); n != 0 {
			t.Errorf("old identifier still found (%d)", n)
		}
		if n := total(t, c.searchIdentifier("Goal", "idx-new")); n != 1 {
			t.Errorf("new identifier found %d times", n)
		}
		c.expect(c.call("DELETE", "Goal/"+str(g, "id"), nil), 200, "delete")
		if n := total(t, c.searchIdentifier("Goal", "idx-new")); n != 0 {
			t.Errorf("deleted resource found by identifier (%d)", n)
		}
	})

	t.Run("paging with next links", func(t *testing.T) {
		c := newClient(t, srv)
		pat := c.createPatient("Paging")
		const n = 45
		var es []any
		for i := range n {
			es = append(es, map[string]any{"resource": goal(pat, fmt.Sprintf("page-%d", i), "active"), "request": map[string]any{"method": "POST", "url": "Goal"}})
		}
		c.expect(c.call("POST", "", map[string]any{"resourceType": "Bundle", "type": "batch", "entry": es}), 200, "batch load")
		seen := map[string]bool{}
		next := "Goal?patient=" + url.QueryEscape(pat) + "&_count=20"
		pages := 0
		for next != "" {
			r := c.call("GET", next, nil)
			c.expect(r, 200, "page")
			pages++
			for _, e := range entries(r.body) {
				id := str(e["resource"].(map[string]any), "id")
				if seen[id] {
					t.Fatalf("id %s on two pages", id)
				}
				seen[id] = true
			}
			next = link(r.body, "next")
			if pages > 10 {
				t.Fatal("paging does not end")
			}
		}
		if len(seen) != n || pages != 3 {
			t.Fatalf("%d resources on %d pages, want %d on 3", len(seen), pages, n)
		}
		// Without _count the page size is 20, as on most real servers.
		r := c.call("GET", "Goal?patient="+url.QueryEscape(pat), nil)
		if len(entries(r.body)) != 20 || link(r.body, "next") == "" {
			t.Fatalf("default page: %d entries, next %q", len(entries(r.body)), link(r.body, "next"))
		}
	})

	t.Run("unsupported interactions answer 405", func(t *testing.T) {
		c := newClient(t, srv)
		c.expectOutcome(c.call("GET", "Goal/_history", nil), 405, "history-type", "type history")
		c.expectOutcome(c.call("PUT", "Goal", goal("Patient/x", "x", "active")), 400, "search criteria", "PUT without id or criteria")
	})

	t.Run("fault header ignored without --faults", func(t *testing.T) {
		c := newClient(t, srv)
		c.expect(c.call("GET", "metadata", nil, "X-Peer-Fault", "503"), 200, "metadata with a fault header")
	})
}

func TestEpicEnforceMode(t *testing.T) {
	t.Parallel()
	srv := StartForTest(t, Options{Capability: epicCapability})
	c := newClient(t, srv)

	md := c.call("GET", "metadata", nil)
	c.expect(md, 200, "metadata")
	if got := str(md.body, "software", "name"); got != "Epic" {
		t.Fatalf("metadata software.name = %q, want Epic's statement", got)
	}

	// Epic declares Patient create, Observation create/update, and Goal and
	// CarePlan read/search only (see testdata/ehr-capabilities).
	pat := c.createPatient("Epic")
	c.expectOutcome(c.call("POST", "Goal", goal(pat, "epic-1", "active")), 405, "create", "Goal create")
	c.expectOutcome(c.call("PUT", "CarePlan/abc", map[string]any{
		"resourceType": "CarePlan", "id": "abc", "status": "active", "intent": "plan", "subject": map[string]any{"reference": pat},
	}), 405, "update", "CarePlan update")
	c.expect(c.call("GET", "Goal?patient="+url.QueryEscape(pat), nil), 200, "Goal search")
	c.expect(c.call("GET", "CarePlan?patient="+url.QueryEscape(pat)+"&category=assess-plan", nil), 200, "CarePlan search")

	obs := c.call("POST", "Observation", observation(pat))
	c.expect(obs, 201, "Observation create")
	id := str(obs.body, "id")
	c.expect(c.call("PUT", "Observation/"+id, obs.body), 200, "Observation update")
	c.expectOutcome(c.call("POST", "Observation", observation(pat), "If-None-Exist", "identifier=a|b"), 405, "Conditional create", "Observation conditional create")
	c.expectOutcome(c.call("PUT", "Observation?identifier=a|b", observation(pat)), 405, "Conditional update", "Observation conditional update")
	fresh := observation(pat)
	fresh["id"] = "not-there-yet"
	c.expectOutcome(c.call("PUT", "Observation/not-there-yet", fresh), 405, "Update as create", "Observation update-as-create")
	c.expectOutcome(c.call("DELETE", "Observation/"+id, nil), 405, "delete", "Observation delete")
	c.expectOutcome(c.call("GET", "Observation/"+id+"/_history", nil), 405, "history-instance", "Observation history")

	bundle := map[string]any{"resourceType": "Bundle", "type": "transaction", "entry": []any{
		map[string]any{"resource": observation(pat), "request": map[string]any{"method": "POST", "url": "Observation"}},
	}}
	c.expectOutcome(c.call("POST", "", bundle), 405, "transaction", "transaction")
	bundle["type"] = "batch"
	c.expectOutcome(c.call("POST", "", bundle), 405, "batch", "batch")

	// Search parameters: Epic's Goal and Observation declare no _lastUpdated;
	// its DocumentReference declares "_lastupdated".
	c.expectOutcome(c.call("GET", "Goal?patient="+url.QueryEscape(pat)+"&_lastUpdated=gt2026-01-01", nil), 400, "_lastUpdated", "Goal _lastUpdated")
	c.expectOutcome(c.call("GET", "Observation?_lastUpdated=gt2026-01-01", nil), 400, "_lastUpdated", "Observation _lastUpdated")
	// Epic also declares DocumentReference create (the chart-note fallback).
	note := map[string]any{
		"resourceType": "DocumentReference", "status": "current",
		"subject": map[string]any{"reference": pat},
		"content": []any{map[string]any{"attachment": map[string]any{"contentType": "text/plain", "data": "SVBTIHBsYW4="}}},
	}
	c.expect(c.call("POST", "DocumentReference", note), 201, "DocumentReference create")
	for _, name := range []string{"_lastUpdated", "_lastupdated"} { // the standard spelling and Epic's
		r := c.call("GET", "DocumentReference?patient="+url.QueryEscape(pat)+"&"+name+"=gt2000-01-01", nil)
		c.expect(r, 200, "DocumentReference "+name)
		if n := total(t, r.body); n != 1 {
			t.Errorf("DocumentReference?%s=gt2000-01-01 found %d, want 1", name, n)
		}
	}
	c.expect(c.call("GET", "Observation?patient="+url.QueryEscape(pat)+"&code=http://loinc.org|67875-5&_count=5", nil), 200, "Observation search")
	c.expect(c.call("GET", "Goal?patient="+url.QueryEscape(pat)+"&_revinclude=Provenance:target", nil), 200, "declared _revinclude")
	c.expectOutcome(c.call("GET", "Goal?patient="+url.QueryEscape(pat)+"&_revinclude=Observation:subject", nil), 400, "_revinclude", "undeclared _revinclude")
}

func TestOracleEnforceMode(t *testing.T) {
	t.Parallel()
	srv := StartForTest(t, Options{Capability: oracleCapability})
	c := newClient(t, srv)
	// Oracle Health declares batch (not transaction), Patient create and
	// Observation create, Goal read/search only.
	pat := c.createPatient("Oracle")
	bundle := map[string]any{"resourceType": "Bundle", "type": "batch", "entry": []any{
		map[string]any{"resource": goal(pat, "oracle-1", "active"), "request": map[string]any{"method": "POST", "url": "Goal"}},
		map[string]any{"resource": observation(pat), "request": map[string]any{"method": "POST", "url": "Observation"}},
	}}
	r := c.call("POST", "", bundle)
	c.expect(r, 200, "batch")
	es := entries(r.body)
	if len(es) != 2 || str(es[0], "response", "status") != "405" || str(es[1], "response", "status") != "201" {
		t.Fatalf("batch response: %v", r.body)
	}
	bundle["type"] = "transaction"
	c.expectOutcome(c.call("POST", "", bundle), 405, "transaction", "transaction")
}

func TestFaults(t *testing.T) {
	t.Parallel()
	srv := StartForTest(t, Options{Faults: true})
	c := newClient(t, srv)
	pat := c.createPatient("Faults")

	r := c.call("POST", "Goal", goal(pat, "f-503", "active"), "X-Peer-Fault", "503")
	c.expectOutcome(r, 503, "Injected", "503 fault")
	if r.header.Get("Retry-After") != "1" {
		t.Errorf("503 Retry-After = %q", r.header.Get("Retry-After"))
	}
	if n := total(t, c.searchIdentifier("Goal", "f-503")); n != 0 {
		t.Fatalf("a 503-faulted create was processed (%d)", n)
	}

	r = c.call("GET", "Goal?_count=1", nil, "X-Peer-Fault", "429; retry-after=2")
	c.expectOutcome(r, 429, "", "429 fault")
	if r.header.Get("Retry-After") != "2" {
		t.Errorf("429 Retry-After = %q", r.header.Get("Retry-After"))
	}

	start := time.Now()
	c.expect(c.call("GET", "Goal?_count=1", nil, "X-Peer-Fault", "delay=300"), 200, "delayed")
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Errorf("delay=300 answered after %v", d)
	}

	// A lost response: the create happens, the client never hears of it.
	fresh := &fhirClient{t: t, base: srv.BaseURL, hc: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}}
	if _, err := fresh.try("POST", "Goal", goal(pat, "f-lost", "active"), "X-Peer-Fault", "drop-after"); err == nil {
		t.Fatal("drop-after: got an answer")
	}
	if n := total(t, c.searchIdentifier("Goal", "f-lost")); n != 1 {
		t.Fatalf("drop-after: %d Goals, want the create to have happened once", n)
	}
	if _, err := fresh.try("POST", "Goal", goal(pat, "f-never", "active"), "X-Peer-Fault", "drop-before"); err == nil {
		t.Fatal("drop-before: got an answer")
	}
	if n := total(t, c.searchIdentifier("Goal", "f-never")); n != 0 {
		t.Fatalf("drop-before: %d Goals, want none", n)
	}

	// once=token: the first request carrying it fails, a retry succeeds.
	c.expect(c.call("POST", "Goal", goal(pat, "f-once", "active"), "X-Peer-Fault", "503; once=retry-1"), 503, "first with once")
	c.expect(c.call("POST", "Goal", goal(pat, "f-once", "active"), "X-Peer-Fault", "503; once=retry-1"), 201, "retry with once")

	c.expectOutcome(c.call("GET", "metadata", nil, "X-Peer-Fault", "explode"), 400, "X-Peer-Fault", "malformed fault")
}

// TestNoVersionHeaders runs the same writes against a server with
// --no-version-headers (stock Medplum's answers) and one without: the first
// sends no ETag, unversioned Locations and Bundle entries without etag, the
// second all of them versioned; both keep meta.versionId in bodies and honour
// If-Match.
func TestNoVersionHeaders(t *testing.T) {
	t.Parallel()
	for _, mode := range []struct {
		name      string
		versioned bool
	}{{"default", true}, {"no-version-headers", false}} {
		t.Run(mode.name, func(t *testing.T) {
			t.Parallel()
			srv := StartForTest(t, Options{NoVersionHeaders: !mode.versioned, Args: []string{"--quiet"}})
			c := newClient(t, srv)
			pat := c.createPatient("NoVersionHeaders")

			// checkHeaders checks a single-resource answer whose body is the
			// resource; wantLocation is the unversioned Location of a 201, or
			// "" when there must be none.
			checkHeaders := func(what string, r reply, wantLocation string) {
				t.Helper()
				vid := str(r.body, "meta", "versionId")
				if !uuidPattern.MatchString(vid) {
					t.Fatalf("%s: body meta.versionId %q", what, vid)
				}
				_, hasETag := r.header["Etag"]
				switch {
				case mode.versioned && r.header.Get("ETag") != `W/"`+vid+`"`:
					t.Errorf("%s: ETag = %q, want W/%q", what, r.header.Get("ETag"), vid)
				case !mode.versioned && hasETag:
					t.Errorf("%s: ETag %q present", what, r.header.Get("ETag"))
				}
				want := wantLocation
				if want != "" && mode.versioned {
					want += "/_history/" + vid
				}
				if got := r.header.Get("Location"); got != want {
					t.Errorf("%s: Location = %q, want %q", what, got, want)
				}
				if _, err := http.ParseTime(r.header.Get("Last-Modified")); err != nil {
					t.Errorf("%s: Last-Modified %q: %v", what, r.header.Get("Last-Modified"), err)
				}
			}

			created := c.call("POST", "Goal", goal(pat, "nvh-1", "active"))
			c.expect(created, 201, "create")
			id := str(created.body, "id")
			checkHeaders("create", created, srv.BaseURL+"/Goal/"+id)
			v1 := str(created.body, "meta", "versionId")

			read := c.call("GET", "Goal/"+id, nil)
			c.expect(read, 200, "read")
			checkHeaders("read", read, "")
			notModified := c.call("GET", "Goal/"+id, nil, "If-None-Match", `W/"`+v1+`"`)
			c.expect(notModified, 304, "read If-None-Match")
			if _, has := notModified.header["Etag"]; has == !mode.versioned {
				t.Errorf("304: ETag %q", notModified.header.Get("ETag"))
			}

			changed := read.body
			changed["lifecycleStatus"] = "on-hold"
			updated := c.call("PUT", "Goal/"+id, changed, "If-Match", `W/"`+v1+`"`)
			c.expect(updated, 200, "update with current If-Match")
			checkHeaders("update", updated, "")
			changed["lifecycleStatus"] = "cancelled"
			c.expectOutcome(c.call("PUT", "Goal/"+id, changed, "If-Match", `W/"`+v1+`"`), 412, "", "update with stale If-Match")

			condCreated := c.call("PUT", "Goal?identifier="+url.QueryEscape(idSystem+"|nvh-2"), goal(pat, "nvh-2", "active"))
			c.expect(condCreated, 201, "conditional update that creates")
			checkHeaders("conditional create by PUT", condCreated, srv.BaseURL+"/Goal/"+str(condCreated.body, "id"))

			for _, kind := range []string{"transaction", "batch"} {
				bundle := map[string]any{
					"resourceType": "Bundle", "type": kind,
					"entry": []any{
						map[string]any{"resource": goal(pat, "nvh-"+kind, "active"), "request": map[string]any{"method": "POST", "url": "Goal"}},
						map[string]any{
							"resource": goal(pat, "nvh-"+kind+"-cond", "active"),
							"request":  map[string]any{"method": "PUT", "url": "Goal?identifier=" + url.QueryEscape(idSystem+"|nvh-"+kind+"-cond")},
						},
						map[string]any{
							"resource": goal(pat, "nvh-1", "completed"),
							"request":  map[string]any{"method": "PUT", "url": "Goal?identifier=" + url.QueryEscape(idSystem+"|nvh-1")},
						},
					},
				}
				if kind == "transaction" { // the batch updates nvh-1 once more
					bundle["entry"].([]any)[2].(map[string]any)["resource"].(map[string]any)["lifecycleStatus"] = "on-hold"
				}
				r := c.call("POST", "", bundle)
				c.expect(r, 200, kind)
				got := entries(r.body)
				if len(got) != 3 {
					t.Fatalf("%s: %d response entries: %v", kind, len(got), r.body)
				}
				for i, e := range got {
					res, _ := e["resource"].(map[string]any)
					resp, _ := e["response"].(map[string]any)
					vid := str(res, "meta", "versionId")
					if !uuidPattern.MatchString(vid) {
						t.Fatalf("%s entry %d: meta.versionId %q", kind, i, vid)
					}
					// The engine gives updates a location too.
					wantStatus, wantLocation := "201", "Goal/"+str(res, "id")
					if i == 2 {
						wantStatus = "200"
					}
					if resp["status"] != wantStatus {
						t.Errorf("%s entry %d: status %v, want %s", kind, i, resp["status"], wantStatus)
					}
					_, hasETag := resp["etag"]
					if mode.versioned {
						wantLocation += "/_history/" + vid
						if str(resp, "etag") != `W/"`+vid+`"` {
							t.Errorf("%s entry %d: etag %v, want W/%q", kind, i, resp["etag"], vid)
						}
					} else if hasETag {
						t.Errorf("%s entry %d: etag %v present", kind, i, resp["etag"])
					}
					if got := str(resp, "location"); got != wantLocation {
						t.Errorf("%s entry %d: location %q, want %q", kind, i, got, wantLocation)
					}
				}
			}
		})
	}
}

func TestStartStop(t *testing.T) {
	t.Parallel()
	if _, err := Start(t.Context(), Options{Capability: filepath.Join(t.TempDir(), "missing.json")}); err == nil {
		t.Error("Start with a missing capability file succeeded")
	}
	if _, err := Start(t.Context(), Options{Dir: t.TempDir()}); err == nil || !strings.Contains(err.Error(), "server.mjs") {
		t.Errorf("Start in a directory without server.mjs: %v", err)
	}

	srv := StartForTest(t, Options{Dedicated: true})
	resp, err := http.Get(srv.BaseURL + "/metadata")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if err := srv.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if err := srv.Stop(); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	if resp, err := hc.Get(srv.BaseURL + "/metadata"); err == nil {
		resp.Body.Close()
		t.Fatal("server still answers after Stop")
	}
}

func TestStartFailsClearlyWhenServerDies(t *testing.T) {
	t.Parallel()
	// An unknown flag makes server.mjs exit with a usage message; Start must
	// say so, quoting stderr.
	_, err := Start(t.Context(), Options{Args: []string{"--no-such-flag"}})
	if err == nil || !strings.Contains(err.Error(), "unknown flag --no-such-flag") {
		t.Fatalf("Start with a bad flag: %v", err)
	}
}

// TestIdentifierIndexMatchesScan is the safety check for the wrapper's
// identifier index: the same writes go to a server with the index and one
// without (the engine's own linear scan), and every identifier search must
// find the same resources on both.
func TestIdentifierIndexMatchesScan(t *testing.T) {
	t.Parallel()
	indexed := newClient(t, StartForTest(t, Options{Args: []string{"--quiet"}}))
	scanned := newClient(t, StartForTest(t, Options{Args: []string{"--quiet", "--no-identifier-index"}}))
	servers := []*fhirClient{indexed, scanned}

	rng := rand.New(rand.NewPCG(1, 2))
	systems := []string{idSystem, "urn:other", "URN:IPSFHIR:TEST:GOAL", ""}
	values := []string{"a", "A", "b", "c-1", "C-1", "d"}
	randomIdentifiers := func() []any {
		var ids []any
		for range rng.IntN(3) {
			id := map[string]any{"value": values[rng.IntN(len(values))]}
			if sys := systems[rng.IntN(len(systems))]; sys != "" {
				id["system"] = sys
			}
			if id["system"] != nil && rng.IntN(10) == 0 {
				delete(id, "value") // an Identifier with a system only
			}
			ids = append(ids, id)
		}
		return ids
	}
	// The label in description.text names a resource across both servers,
	// whose ids differ.
	makeGoal := func(label string) map[string]any {
		g := goal("Patient/x", "unused", "active")
		g["description"] = map[string]any{"text": label}
		if ids := randomIdentifiers(); len(ids) > 0 {
			g["identifier"] = ids
		} else {
			delete(g, "identifier")
		}
		return g
	}
	ids := make([]map[*fhirClient]string, 0) // label index -> server -> id
	for step := range 150 {
		switch op := rng.IntN(10); {
		case op < 5 || len(ids) == 0: // create
			g := makeGoal(fmt.Sprintf("r-%d", len(ids)))
			byServer := map[*fhirClient]string{}
			for _, c := range servers {
				r := c.call("POST", "Goal", g)
				c.expect(r, 201, "create")
				byServer[c] = str(r.body, "id")
			}
			ids = append(ids, byServer)
		case op < 8: // update with new identifiers
			n := rng.IntN(len(ids))
			g := makeGoal(fmt.Sprintf("r-%d", n))
			for _, c := range servers {
				if ids[n][c] == "" {
					continue
				}
				g["id"] = ids[n][c]
				c.expect(c.call("PUT", "Goal/"+ids[n][c], g), 200, "update")
			}
		case op < 9: // delete
			n := rng.IntN(len(ids))
			for _, c := range servers {
				if ids[n][c] != "" {
					c.expect(c.call("DELETE", "Goal/"+ids[n][c], nil), 200, "delete")
					ids[n][c] = ""
				}
			}
		default: // a transaction that fails after creating: rolled back on both
			g := makeGoal(fmt.Sprintf("rolled-back-%d", step))
			bundle := map[string]any{"resourceType": "Bundle", "type": "transaction", "entry": []any{
				map[string]any{"resource": g, "request": map[string]any{"method": "POST", "url": "Goal"}},
				map[string]any{"request": map[string]any{"method": "DELETE", "url": "Goal/missing"}},
			}}
			for _, c := range servers {
				if r := c.call("POST", "", bundle); r.status < 400 {
					t.Fatalf("failing transaction answered %d", r.status)
				}
			}
		}
	}

	var queries []string
	for _, v := range values {
		queries = append(queries, v, "|"+v)
		for _, sys := range systems[:3] {
			queries = append(queries, sys+"|"+v, sys+"|", sys+"|"+v+","+idSystem+"|d")
		}
	}
	labels := func(c *fhirClient, q string) []string {
		r := c.call("GET", "Goal?_count=1000&identifier="+url.QueryEscape(q), nil)
		c.expect(r, 200, "search "+q)
		var out []string
		for _, e := range entries(r.body) {
			out = append(out, str(e["resource"].(map[string]any), "description", "text"))
		}
		slices.Sort(out)
		return out
	}
	matched := 0
	for _, q := range queries {
		a, b := labels(indexed, q), labels(scanned, q)
		if !slices.Equal(a, b) {
			t.Errorf("identifier=%s: index finds %v, scan finds %v", q, a, b)
		}
		matched += len(a)
	}
	if matched == 0 {
		t.Fatal("no query matched anything; the comparison proves nothing")
	}
}

// TestTagIndexMatchesScan is TestIdentifierIndexMatchesScan for the tag
// index: `_tag` searches find the same resources with the index as by the
// engine's scan, after random creates, updates with other tags, deletes
// and rolled-back transactions.
func TestTagIndexMatchesScan(t *testing.T) {
	t.Parallel()
	indexed := newClient(t, StartForTest(t, Options{Args: []string{"--quiet"}}))
	scanned := newClient(t, StartForTest(t, Options{Args: []string{"--quiet", "--no-identifier-index"}}))
	servers := []*fhirClient{indexed, scanned}

	rng := rand.New(rand.NewPCG(3, 4))
	systems := []string{"urn:ipsfhir:test:provenance", "urn:other", "URN:IPSFHIR:TEST:PROVENANCE", ""}
	codes := []string{"c1/goal/g1/a", "C1/GOAL/G1/A", "c1/plan/b", "x", ""}
	makeGoal := func(label string) map[string]any {
		g := goal("Patient/x", "unused", "active")
		g["description"] = map[string]any{"text": label}
		var tags []any
		for range rng.IntN(3) {
			tag := map[string]any{}
			if sys := systems[rng.IntN(len(systems))]; sys != "" {
				tag["system"] = sys
			}
			if code := codes[rng.IntN(len(codes))]; code != "" {
				tag["code"] = code
			}
			if len(tag) > 0 {
				tags = append(tags, tag)
			}
		}
		if len(tags) > 0 {
			g["meta"] = map[string]any{"tag": tags}
		}
		return g
	}
	ids := make([]map[*fhirClient]string, 0)
	for step := range 150 {
		switch op := rng.IntN(10); {
		case op < 5 || len(ids) == 0:
			g := makeGoal(fmt.Sprintf("r-%d", len(ids)))
			byServer := map[*fhirClient]string{}
			for _, c := range servers {
				r := c.call("POST", "Goal", g)
				c.expect(r, 201, "create")
				byServer[c] = str(r.body, "id")
			}
			ids = append(ids, byServer)
		case op < 8:
			n := rng.IntN(len(ids))
			g := makeGoal(fmt.Sprintf("r-%d", n))
			for _, c := range servers {
				if ids[n][c] == "" {
					continue
				}
				g["id"] = ids[n][c]
				c.expect(c.call("PUT", "Goal/"+ids[n][c], g), 200, "update")
			}
		case op < 9:
			n := rng.IntN(len(ids))
			for _, c := range servers {
				if ids[n][c] != "" {
					c.expect(c.call("DELETE", "Goal/"+ids[n][c], nil), 200, "delete")
					ids[n][c] = ""
				}
			}
		default:
			g := makeGoal(fmt.Sprintf("rolled-back-%d", step))
			bundle := map[string]any{"resourceType": "Bundle", "type": "transaction", "entry": []any{
				map[string]any{"resource": g, "request": map[string]any{"method": "POST", "url": "Goal"}},
				map[string]any{"request": map[string]any{"method": "DELETE", "url": "Goal/missing"}},
			}}
			for _, c := range servers {
				if r := c.call("POST", "", bundle); r.status < 400 {
					t.Fatalf("failing transaction answered %d", r.status)
				}
			}
		}
	}
	var queries []string
	for _, code := range codes[:4] {
		queries = append(queries, code, "|"+code)
		for _, sys := range systems[:3] {
			queries = append(queries, sys+"|"+code, sys+"|", sys+"|"+code+","+systems[0]+"|x")
		}
	}
	labels := func(c *fhirClient, q string) []string {
		r := c.call("GET", "Goal?_count=1000&_tag="+url.QueryEscape(q), nil)
		c.expect(r, 200, "search "+q)
		var out []string
		for _, e := range entries(r.body) {
			out = append(out, str(e["resource"].(map[string]any), "description", "text"))
		}
		slices.Sort(out)
		return out
	}
	matched := 0
	for _, q := range queries {
		a, b := labels(indexed, q), labels(scanned, q)
		if !slices.Equal(a, b) {
			t.Errorf("_tag=%s: index finds %v, scan finds %v", q, a, b)
		}
		matched += len(a)
	}
	if matched == 0 {
		t.Fatal("no query matched anything; the comparison proves nothing")
	}
}

// TestSubjectIndexMatchesScan: `patient=` and `subject=` searches of
// CarePlans (one reference or an OR list, as ipsfhir's joint treatment
// plan search sends) find with the subject index exactly what the engine's
// scan finds, over random creates, updates, deletes and rolled-back
// transactions, and subjects written in every form a reference takes.
func TestSubjectIndexMatchesScan(t *testing.T) {
	t.Parallel()
	indexed := newClient(t, StartForTest(t, Options{Args: []string{"--quiet"}}))
	scanned := newClient(t, StartForTest(t, Options{Args: []string{"--quiet", "--no-identifier-index"}}))
	servers := []*fhirClient{indexed, scanned}

	rng := rand.New(rand.NewPCG(5, 6))
	subjects := []string{"Patient/p1", "Patient/p2", "Patient/P1", "Patient/p3/_history/2", "http://example.org/fhir/Patient/p2",
		"Group/p1", "urn:uuid:0f8c3a55-1a7c-4c2a-9a0e-5a1d2b3c4d5e", "#contained", "p1", ""}
	makePlan := func(label string) map[string]any {
		cp := map[string]any{"resourceType": "CarePlan", "status": "active", "intent": "plan", "description": label}
		if s := subjects[rng.IntN(len(subjects))]; s != "" {
			cp["subject"] = map[string]any{"reference": s}
		}
		return cp
	}
	ids := make([]map[*fhirClient]string, 0)
	for step := range 150 {
		switch op := rng.IntN(10); {
		case op < 5 || len(ids) == 0:
			cp := makePlan(fmt.Sprintf("r-%d", len(ids)))
			byServer := map[*fhirClient]string{}
			for _, c := range servers {
				r := c.call("POST", "CarePlan", cp)
				if r.status != 201 {
					// A subject the server refuses, on both (checked below).
					byServer[c] = ""
					continue
				}
				byServer[c] = str(r.body, "id")
			}
			if (byServer[indexed] == "") != (byServer[scanned] == "") {
				t.Fatalf("create %v: accepted by one server only", cp["subject"])
			}
			ids = append(ids, byServer)
		case op < 8:
			n := rng.IntN(len(ids))
			cp := makePlan(fmt.Sprintf("r-%d", n))
			for _, c := range servers {
				if ids[n][c] == "" {
					continue
				}
				cp["id"] = ids[n][c]
				c.call("PUT", "CarePlan/"+ids[n][c], cp)
			}
		case op < 9:
			n := rng.IntN(len(ids))
			for _, c := range servers {
				if ids[n][c] != "" {
					c.expect(c.call("DELETE", "CarePlan/"+ids[n][c], nil), 200, "delete")
					ids[n][c] = ""
				}
			}
		default:
			cp := makePlan(fmt.Sprintf("rolled-back-%d", step))
			bundle := map[string]any{"resourceType": "Bundle", "type": "transaction", "entry": []any{
				map[string]any{"resource": cp, "request": map[string]any{"method": "POST", "url": "CarePlan"}},
				map[string]any{"request": map[string]any{"method": "DELETE", "url": "CarePlan/missing"}},
			}}
			for _, c := range servers {
				if r := c.call("POST", "", bundle); r.status < 400 {
					t.Fatalf("failing transaction answered %d", r.status)
				}
			}
		}
	}
	queries := []string{"Patient/p1", "Patient/p2", "Patient/P1", "Patient/p3", "Patient/p9", "Group/p1", "p1",
		"Patient/p1,Patient/p2", "Patient/p2,Patient/p3,Patient/p9", "Patient/p1,p2", "http://example.org/fhir/Patient/p2"}
	labels := func(c *fhirClient, code, q string) []string {
		r := c.call("GET", "CarePlan?_count=1000&"+code+"="+url.QueryEscape(q), nil)
		if r.status != 200 {
			return []string{fmt.Sprintf("status %d", r.status)}
		}
		var out []string
		for _, e := range entries(r.body) {
			out = append(out, str(e["resource"].(map[string]any), "description"))
		}
		slices.Sort(out)
		return out
	}
	matched := 0
	for _, code := range []string{"patient", "subject"} {
		for _, q := range queries {
			a, b := labels(indexed, code, q), labels(scanned, code, q)
			if !slices.Equal(a, b) {
				t.Errorf("%s=%s: index finds %v, scan finds %v", code, q, a, b)
			}
			matched += len(a)
		}
	}
	if matched == 0 {
		t.Fatal("no query matched anything; the comparison proves nothing")
	}
}

// BenchmarkIdentifier measures the two identifier paths an adapter uses
// most, over 3,000 stored Goals: search (`Goal?identifier=system|value`) and
// conditional update by identifier (`PUT Goal?identifier=system|value`). It
// runs each against the engine's stock search, with search expressions pruned
// to the resource type, and with pruning plus the identifier index (the
// default). The stock variant takes seconds per request: use -benchtime=3x.
func BenchmarkIdentifier(b *testing.B) {
	const stored = 3000
	for _, variant := range []struct {
		name string
		args []string
	}{
		{"stock", []string{"--no-expression-pruning", "--no-identifier-index"}},
		{"pruned", []string{"--no-identifier-index"}},
		{"indexed", nil},
	} {
		b.Run(variant.name, func(b *testing.B) {
			srv := StartForTest(b, Options{Args: append(variant.args, "--quiet")})
			hc := &http.Client{Timeout: 5 * time.Minute}
			do := func(method, target string, body any, want int) map[string]any {
				var rd io.Reader
				if body != nil {
					raw, _ := json.Marshal(body)
					rd = bytes.NewReader(raw)
				}
				req, _ := http.NewRequest(method, target, rd)
				req.Header.Set("Content-Type", "application/fhir+json")
				resp, err := hc.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				defer resp.Body.Close()
				var out map[string]any
				if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != want {
					b.Fatalf("%s: status %d (want %d), %v", method, resp.StatusCode, want, err)
				}
				return out
			}
			for chunk := 0; chunk < stored; chunk += 100 {
				var es []any
				for i := chunk; i < chunk+100; i++ {
					es = append(es, map[string]any{
						"resource": goal(fmt.Sprintf("Patient/p%d", i%300), fmt.Sprintf("bench-%d", i), "active"),
						"request":  map[string]any{"method": "POST", "url": "Goal"},
					})
				}
				do("POST", srv.BaseURL, map[string]any{"resourceType": "Bundle", "type": "batch", "entry": es}, 200)
			}
			query := func(i int) string {
				return "identifier=" + url.QueryEscape(fmt.Sprintf("%s|bench-%d", idSystem, (i*7919)%stored))
			}
			b.Run("search", func(b *testing.B) {
				for i := 0; b.Loop(); i++ {
					if bundle := do("GET", srv.BaseURL+"/Goal?"+query(i), nil, 200); bundle["total"] != float64(1) {
						b.Fatalf("total %v", bundle["total"])
					}
				}
			})
			b.Run("conditional-update", func(b *testing.B) {
				for i := 0; b.Loop(); i++ {
					v := (i * 7919) % stored
					do("PUT", srv.BaseURL+"/Goal?"+query(i), goal(fmt.Sprintf("Patient/p%d", v%300), fmt.Sprintf("bench-%d", v), "on-hold"), 200)
				}
			})
		})
	}
}

// TestSeed: --seed loads resources before the server listens and outside
// enforcement, so a test can hold patients in an EHR whose statement forbids
// creating them; NDJSON, transaction Bundles and collection Bundles.
func TestSeed(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name string, v any) string {
		t.Helper()
		var data []byte
		switch x := v.(type) {
		case string:
			data = []byte(x)
		default:
			var err error
			if data, err = json.Marshal(v); err != nil {
				t.Fatal(err)
			}
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	// Epic's statement without Patient create: an EHR that never lets an
	// adapter create patients.
	raw, err := os.ReadFile(epicCapability)
	if err != nil {
		t.Fatal(err)
	}
	var cs map[string]any
	if err := json.Unmarshal(raw, &cs); err != nil {
		t.Fatal(err)
	}
	for _, r := range cs["rest"].([]any)[0].(map[string]any)["resource"].([]any) {
		if r := r.(map[string]any); r["type"] == "Patient" {
			r["interaction"] = []any{map[string]any{"code": "read"}, map[string]any{"code": "search-type"}}
		}
	}
	noPatientCreate := write("capability.json", cs)
	patient := func(id, mrn string) map[string]any {
		p := map[string]any{"resourceType": "Patient", "identifier": []any{map[string]any{"system": "urn:oid:2.16.840.1.113883.19.5", "value": mrn}}}
		if id != "" {
			p["id"] = id
		}
		return p
	}
	line := func(v any) string {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}

	t.Run("NDJSON under enforcement", func(t *testing.T) {
		seed := write("seed.ndjson", line(patient("pat-1", "MRN-SEED-1"))+"\n\n"+line(patient("", "MRN-SEED-2"))+"\n"+
			line(goal("Patient/pat-1", "seeded-goal", "active"))+"\n")
		stderr := &lockedBuffer{}
		srv := StartForTest(t, Options{Capability: noPatientCreate, Seed: seed, Stderr: stderr})
		c := newClient(t, srv)
		c.expectOutcome(c.call("POST", "Patient", patient("", "MRN-NEW")), 405, "create", "Patient create is forbidden")
		r := c.call("GET", "Patient/pat-1", nil)
		c.expect(r, 200, "seeded patient with its id")
		if !uuidPattern.MatchString(str(r.body, "meta", "versionId")) {
			t.Errorf("seeded patient has no version: %v", r.body["meta"])
		}
		if n := total(t, c.call("GET", "Patient?identifier="+url.QueryEscape("urn:oid:2.16.840.1.113883.19.5|MRN-SEED-2"), nil).body); n != 1 {
			t.Errorf("seeded patient without id: found %d", n)
		}
		if n := total(t, c.call("GET", "Goal?patient=Patient/pat-1", nil).body); n != 1 {
			t.Errorf("seeded goal: found %d", n)
		}
		if !strings.Contains(stderr.String(), "3 resources seeded") {
			t.Errorf("startup line does not count the seed:\n%s", stderr.String())
		}
	})

	t.Run("transaction Bundle", func(t *testing.T) {
		const ref = "urn:uuid:8f0c2b52-5d43-4b0e-9c55-2f3e1b9d0a11"
		seed := write("seed-transaction.json", map[string]any{"resourceType": "Bundle", "type": "transaction", "entry": []any{
			map[string]any{"fullUrl": ref, "resource": patient("", "MRN-TX"), "request": map[string]any{"method": "POST", "url": "Patient"}},
			map[string]any{"resource": goal(ref, "tx-goal", "active"), "request": map[string]any{"method": "POST", "url": "Goal"}},
		}})
		srv := StartForTest(t, Options{Capability: noPatientCreate, Seed: seed})
		c := newClient(t, srv)
		r := c.call("GET", "Goal?identifier="+url.QueryEscape(idSystem+"|tx-goal"), nil)
		es := entries(r.body)
		if len(es) != 1 {
			t.Fatalf("seeded goal: %v", r.body)
		}
		subject := str(es[0], "resource", "subject", "reference")
		if !strings.HasPrefix(subject, "Patient/") {
			t.Fatalf("urn:uuid reference not resolved: %q", subject)
		}
		c.expect(c.call("GET", subject, nil), 200, "the patient the goal refers to")
	})

	t.Run("collection Bundle", func(t *testing.T) {
		seed := write("seed-collection.json", map[string]any{"resourceType": "Bundle", "type": "collection", "entry": []any{
			map[string]any{"resource": patient("pat-c", "MRN-C")},
		}})
		srv := StartForTest(t, Options{Capability: noPatientCreate, Seed: seed})
		c := newClient(t, srv)
		c.expect(c.call("GET", "Patient/pat-c", nil), 200, "seeded patient")
	})

	t.Run("an invalid resource stops the server, unquoted", func(t *testing.T) {
		bad := patient("pat-bad", "MRN-PLANTED-7731")
		bad["birthDate"] = "Zanzibar-Quokka" // not a date
		seed := write("seed-bad.ndjson", line(patient("pat-ok", "MRN-OK"))+"\n"+line(bad)+"\n")
		_, err := Start(t.Context(), Options{Seed: seed})
		if err == nil || !strings.Contains(err.Error(), "--seed line 2 (Patient)") {
			t.Fatalf("Start with an invalid seed: %v", err)
		}
		for _, planted := range []string{"MRN-PLANTED-7731", "Zanzibar-Quokka"} {
			if strings.Contains(err.Error(), planted) {
				t.Errorf("error quotes the seed's data: %v", err)
			}
		}
		_, err = Start(t.Context(), Options{Seed: write("seed-broken.ndjson", "{not json\n")})
		if err == nil || !strings.Contains(err.Error(), "--seed line 1: not JSON") {
			t.Fatalf("Start with a broken seed: %v", err)
		}
		if _, err := Start(t.Context(), Options{Seed: filepath.Join(dir, "missing.ndjson")}); err == nil || !strings.Contains(err.Error(), "seed file") {
			t.Fatalf("Start with a missing seed file: %v", err)
		}
	})
}

// lockedBuffer is a bytes.Buffer the server's stderr copier may write while
// the test reads it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestTenantsAreIsolatedServers: tests share one node process, so each
// test's server must behave as a process of its own: its own store,
// statement and access log, and gone once stopped.
func TestTenantsAreIsolatedServers(t *testing.T) {
	t.Parallel()
	var logA, logB bytes.Buffer
	var muA, muB sync.Mutex
	a := StartForTest(t, Options{Stderr: lockedWriter{&muA, &logA}})
	b := StartForTest(t, Options{Capability: epicCapability, Stderr: lockedWriter{&muB, &logB}})
	if a.shared == nil || b.shared == nil || a.shared != b.shared {
		t.Fatal("two tests' servers are not tenants of one shared process")
	}
	ca, cb := newClient(t, a), newClient(t, b)

	created := ca.call("POST", "Patient", map[string]any{"resourceType": "Patient"})
	if created.status != http.StatusCreated {
		t.Fatalf("create in tenant A: %d %v", created.status, created.body)
	}
	id, _ := created.body["id"].(string)
	if r := ca.call("GET", "Patient/"+id, nil); r.status != http.StatusOK {
		t.Fatalf("tenant A cannot read its own patient: %d", r.status)
	}
	if r := cb.call("GET", "Patient/"+id, nil); r.status != http.StatusNotFound {
		t.Errorf("tenant B reads tenant A's patient: %d, want 404", r.status)
	}
	// B enforces Epic's statement, A does not.
	if r := cb.call("POST", "Goal", map[string]any{"resourceType": "Goal"}); r.status != http.StatusMethodNotAllowed {
		t.Errorf("Goal create in the Epic tenant: %d, want 405", r.status)
	}
	if r := ca.call("GET", "metadata", nil); r.body["software"] != nil && strings.Contains(fmt.Sprint(r.body["software"]), "Epic") {
		t.Error("tenant A serves Epic's statement")
	}
	// Each log has its own lines, as a dedicated server writes them.
	muA.Lock()
	la := logA.String()
	muA.Unlock()
	muB.Lock()
	lb := logB.String()
	muB.Unlock()
	if !strings.Contains(la, "peer: POST Patient create 201") || strings.Contains(la, "Goal") {
		t.Errorf("tenant A's log:\n%s", la)
	}
	if !strings.Contains(lb, "peer: POST Goal create 405") || strings.Contains(lb, "Patient create") {
		t.Errorf("tenant B's log:\n%s", lb)
	}
	if strings.Contains(la+lb, "peer[") {
		t.Errorf("tenant prefixes leaked into a log:\n%s%s", la, lb)
	}

	// A flag only a process can take is refused for a tenant, by name.
	if _, err := a.shared.start(t.Context(), Options{Args: []string{"--port", "1"}}); err == nil || !strings.Contains(err.Error(), "--port") {
		t.Errorf("a tenant with --port: %v; want a refusal naming the flag", err)
	}
	if _, err := a.shared.start(t.Context(), Options{Args: []string{"--no-such-flag"}}); err == nil || !strings.Contains(err.Error(), "--no-such-flag") {
		t.Errorf("a tenant with an unknown flag: %v; want a refusal naming it", err)
	}

	if err := a.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if err := a.Stop(); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	if r := ca.call("GET", "Patient/"+id, nil); r.status != http.StatusNotFound {
		t.Errorf("a stopped tenant still answers: %d", r.status)
	}
	if r := cb.call("GET", "metadata", nil); r.status != http.StatusOK {
		t.Errorf("stopping one tenant stopped another: %d", r.status)
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// TestLatency: with Latency set, every answer comes that much late, as the
// access log's own duration shows (a lower bound the server keeps by
// construction, not a measurement of this machine), requests in flight
// together included.
func TestLatency(t *testing.T) {
	t.Parallel()
	var log bytes.Buffer
	var mu sync.Mutex
	srv := StartForTest(t, Options{Latency: 300 * time.Millisecond, Stderr: lockedWriter{&mu, &log}})
	c := newClient(t, srv)
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() {
			if r := c.call("GET", "metadata", nil); r.status != http.StatusOK {
				t.Errorf("metadata: %d", r.status)
			}
		})
	}
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	var ms []int
	for _, line := range strings.Split(log.String(), "\n") {
		if f := strings.Fields(line); len(f) > 0 && strings.Contains(line, "GET metadata") {
			n, err := strconv.Atoi(strings.TrimSuffix(f[len(f)-1], "ms"))
			if err != nil {
				t.Fatalf("access log line without a duration: %q", line)
			}
			ms = append(ms, n)
		}
	}
	if len(ms) != 3 {
		t.Fatalf("%d metadata lines in the log, want 3:\n%s", len(ms), log.String())
	}
	for _, n := range ms {
		if n < 300 {
			t.Errorf("an answer after %dms with a latency of 300ms", n)
		}
	}
	if _, err := (Options{Latency: -time.Second}).flags(); err == nil {
		t.Error("a negative Latency was accepted")
	}
}
