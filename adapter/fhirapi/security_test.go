package fhirapi_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ipsfhir/ipsfhir/adapter/fhirapi"
	"github.com/ipsfhir/ipsfhir/ips"
)

// The tests in this file play the attacker.

// evil is the host an attacker wants the links to name.
const evil = "attacker.example"

// forged sends a request whose Host and forwarding headers all name the
// attacker's host, as a caller (or a proxy that passes headers through)
// can.
func (h *harness) forged(method, path, key string, body io.Reader, header ...string) response {
	h.t.Helper()
	req, err := http.NewRequest(method, h.srv.URL+path, body)
	if err != nil {
		h.t.Fatal(err)
	}
	req.Host = evil
	for k, v := range map[string]string{
		"X-Forwarded-Host":   evil,
		"X-Forwarded-Proto":  "https",
		"X-Forwarded-Port":   "443",
		"X-Forwarded-Server": evil,
		"Forwarded":          "for=192.0.2.1;host=" + evil + ";proto=https",
		"X-Original-Host":    evil,
		"Authorization":      "Bearer " + key,
	} {
		req.Header.Set(k, v)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Add(header[i], header[i+1])
	}
	resp, err := h.srv.Client().Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		h.t.Fatal(err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

// noAttackerURL checks that a response names the attacker's host nowhere,
// and that every absolute URL in it starts with the configured base.
func (h *harness) noAttackerURL(what string, r response) {
	h.t.Helper()
	if strings.Contains(string(r.body), evil) {
		h.t.Errorf("%s: the body names the forged host: %.400s", what, r.body)
	}
	for k, vs := range r.header {
		for _, v := range vs {
			if strings.Contains(v, evil) {
				h.t.Errorf("%s: header %s names the forged host: %s", what, k, v)
			}
		}
	}
	base := h.srv.URL + "/fhir"
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			for _, e := range x {
				walk(e)
			}
		case []any:
			for _, e := range x {
				walk(e)
			}
		case string:
			if strings.HasPrefix(x, "http://") || strings.HasPrefix(x, "https://") {
				if strings.Contains(x, "/fhir/") && !strings.HasPrefix(x, base) && !strings.HasPrefix(x, "http://hl7.org/") &&
					!strings.HasPrefix(x, "https://ipsfhir.org/") && !strings.HasPrefix(x, "http://ipsfhir.org/") {
					h.t.Errorf("%s: an absolute URL not under the configured base %s: %s", what, base, x)
				}
			}
		}
	}
	var doc any
	if json.Unmarshal(r.body, &doc) == nil {
		walk(doc)
	}
}

// TestAbsoluteURLsComeFromConfiguration: a forged Host, X-Forwarded-Host or
// Forwarded header changes no URL the facade gives out (search links and
// fullUrls, reads, the CapabilityStatement, Measures and MeasureReports, the
// export's Content-Location and manifest), so a client that follows them
// never takes its API key to the attacker.
func TestAbsoluteURLsComeFromConfiguration(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(o *fhirapi.Options) {
		o.Reports = func(context.Context, string, bool) ([]json.RawMessage, error) {
			return []json.RawMessage{json.RawMessage(`{"resourceType":"MeasureReport","id":"r1","status":"complete","type":"summary","measure":"https://ipsfhir.org/fhir/Measure/ips-job-starts|0.1.0","period":{"start":"2025-01-01","end":"2025-03-31"}}`)}, nil
		}
	})
	base := h.srv.URL + "/fhir"
	c := h.cl.Clients[0]

	for _, path := range []string{"/fhir/Goal?_count=2", "/fhir/Goal?patient=" + c.ID, "/fhir/Measure", "/fhir/MeasureReport?period=2025Q1"} {
		r := h.forged(http.MethodGet, path, adminKey, nil)
		if r.status != http.StatusOK {
			t.Fatalf("GET %s: %d %s", path, r.status, r.body)
		}
		h.noAttackerURL("GET "+path, r)
		var b searchsetBundle
		if err := json.Unmarshal(r.body, &b); err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(b.link("self"), base+"/") {
			t.Errorf("GET %s: self link %q", path, b.link("self"))
		}
		for _, e := range b.Entry {
			if !strings.HasPrefix(e.FullURL, base+"/") {
				t.Errorf("GET %s: fullUrl %q", path, e.FullURL)
			}
		}
	}
	post := h.forged(http.MethodPost, "/fhir/Goal/_search", adminKey, strings.NewReader("_count=1"), "Content-Type", "application/x-www-form-urlencoded")
	h.noAttackerURL("POST _search", post)
	var b searchsetBundle
	if err := json.Unmarshal(post.body, &b); err != nil || !strings.HasPrefix(b.link("next"), base+"/Goal?_cursor=") {
		t.Errorf("POST _search: next link %q (%v)", b.link("next"), err)
	}

	read := h.forged(http.MethodGet, "/fhir/Goal/"+h.idsOfType(c, "Goal")[0], adminKey, nil)
	if read.status != http.StatusOK {
		t.Fatalf("read: %d", read.status)
	}
	h.noAttackerURL("read", read)

	meta := h.forged(http.MethodGet, "/fhir/metadata", "", nil)
	h.noAttackerURL("metadata", meta)
	if !strings.Contains(string(meta.body), `"url": "`+base+`"`) {
		t.Errorf("implementation.url is not the configured base: %.600s", meta.body)
	}

	// The export: kick-off, status and manifest, the files.
	kick := h.forged(http.MethodGet, "/fhir/$export", adminKey, nil, "Prefer", "respond-async")
	if kick.status != http.StatusAccepted {
		t.Fatalf("kick-off: %d %s", kick.status, kick.body)
	}
	h.noAttackerURL("kick-off", kick)
	status := kick.header.Get("Content-Location")
	if !strings.HasPrefix(status, base+"/bulk-status/") {
		t.Fatalf("Content-Location %q", status)
	}
	var m response
	for deadline := time.Now().Add(exportWait); ; {
		m = h.forged(http.MethodGet, strings.TrimPrefix(status, h.srv.URL), adminKey, nil)
		if m.status != http.StatusAccepted || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if m.status != http.StatusOK {
		t.Fatalf("manifest: %d %s", m.status, m.body)
	}
	h.noAttackerURL("manifest", m)
	var man bulkManifest
	if err := json.Unmarshal(m.body, &man); err != nil || len(man.Output) == 0 {
		t.Fatalf("manifest %s: %v", m.body, err)
	}
	if !strings.HasPrefix(man.Request, base+"/$export") {
		t.Errorf("manifest request %q", man.Request)
	}
	for _, o := range man.Output {
		if !strings.HasPrefix(o.URL, base+"/bulk-files/") {
			t.Errorf("output URL %q", o.URL)
		}
	}
}

// TestNewNeedsAConfiguredBase: without a base URL there is nothing to build
// absolute URLs from but the request, so the facade is not built.
func TestNewNeedsAConfiguredBase(t *testing.T) {
	t.Parallel()
	for _, base := range []string{"", "/fhir", "ips.example.org/fhir", "ftp://ips.example.org/fhir", "https://user:pw@ips.example.org/fhir", "https://ips.example.org/fhir?x=1"} {
		if _, err := fhirapi.New(fhirapi.Options{BaseURL: base}); err == nil {
			t.Errorf("BaseURL %q was accepted", base)
		}
	}
}

// multiGoalClient is a client of the sample who consents to EHR sharing
// and has at least two goals, so a search for them pages at _count=1.
func (h *harness) multiGoalClient() *ips.Client {
	h.t.Helper()
	for _, c := range h.cl.Clients {
		if consent.AllowsEHR(c) && len(c.Goals) >= 2 {
			return c
		}
	}
	h.t.Fatal("the sample has no consenting client with two goals")
	return nil
}

// TestPagingLinksRevealNothing: a POST _search keeps the patient's
// identifier out of URLs, and its self and next links keep it so: they
// carry only a sealed _cursor, in which neither the identifier nor the
// client id can be read, and following them with GET gives the pages.
func TestPagingLinksRevealNothing(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	c := h.multiGoalClient()
	want := h.idsOfType(c, "Goal")
	form := url.Values{"patient:identifier": {c.Patient.System + "|" + c.Patient.Value}, "_count": {"1"}}
	r := h.do(http.MethodPost, "/fhir/Goal/_search", clinicianKey, strings.NewReader(form.Encode()), "Content-Type", "application/x-www-form-urlencoded")
	if r.status != http.StatusOK {
		t.Fatalf("POST _search: %d %s", r.status, r.body)
	}
	var b searchsetBundle
	if err := json.Unmarshal(r.body, &b); err != nil {
		t.Fatal(err)
	}
	secrets := []string{c.Patient.Value, url.QueryEscape(c.Patient.Value), c.Patient.System, url.QueryEscape(c.Patient.System), c.ID}
	for _, rel := range []string{"self", "next"} {
		link := b.link(rel)
		u, err := url.Parse(link)
		if err != nil || link == "" {
			t.Fatalf("%s link %q", rel, link)
		}
		if q := u.Query(); len(q) != 1 || len(q["_cursor"]) != 1 {
			t.Errorf("%s link carries more than a cursor: %s", rel, link)
		}
		sealed, _ := base64.RawURLEncoding.DecodeString(u.Query().Get("_cursor"))
		for _, s := range secrets {
			if strings.Contains(link, s) || strings.Contains(string(sealed), s) {
				t.Errorf("%s link reveals %q: %s", rel, s, link)
			}
		}
	}

	// Following the links with GET, as clients do, pages through the
	// search the POST started; self gives the same page again.
	got := b.ids(t)
	if again := h.search(b.link("self"), clinicianKey).ids(t); !slices.Equal(again, got) {
		t.Errorf("the self link gives %v, the POST gave %v", again, got)
	}
	for next, pages := b.link("next"), 1; next != ""; pages++ {
		p := h.search(next, clinicianKey)
		if *p.Total != len(want) {
			t.Errorf("page %d: total %d, want %d", pages, *p.Total, len(want))
		}
		got = append(got, p.ids(t)...)
		next = p.link("next")
		if pages > len(want) {
			t.Fatal("paging does not end")
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("paged through %v, want the client's goals %v", got, want)
	}
	// A GET search's links are cursors too: they never echo the query.
	g := h.search("/fhir/Goal?_count=1&patient:identifier="+url.QueryEscape(c.Patient.System+"|"+c.Patient.Value), clinicianKey)
	for _, l := range g.Link {
		if strings.Contains(l.URL, "patient") || strings.Contains(l.URL, url.QueryEscape(c.Patient.Value)) {
			t.Errorf("GET search %s link echoes the query: %s", l.Relation, l.URL)
		}
	}
	h.tel.AssertNoneOf(t, append(h.patientData(), c.ID)...)
}

// TestCursorsRefused: a cursor that was altered, made up, given out to
// another API key, for another resource type, by a server with another
// key, or that expired, is refused with an OperationOutcome that says to
// search again; never a 500, never someone else's page.
func TestCursorsRefused(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	c := h.multiGoalClient()
	b := h.search("/fhir/Goal?_count=1&patient="+c.ID, clinicianKey)
	next := b.link("next")
	u, err := url.Parse(next)
	if err != nil || next == "" {
		t.Fatalf("next link %q", next)
	}
	cur := u.Query().Get("_cursor")
	raw, err := base64.RawURLEncoding.DecodeString(cur)
	if err != nil {
		t.Fatalf("the cursor is not base64url: %v", err)
	}
	with := func(cursor string) string { return "/fhir/Goal?_cursor=" + url.QueryEscape(cursor) }
	flip := func(i int) string {
		t := slices.Clone(raw)
		t[i] ^= 0x01
		return base64.RawURLEncoding.EncodeToString(t)
	}
	oldStyle := base64.RawURLEncoding.EncodeToString([]byte(c.ID + "\n0")) // the cursor before sealing

	other := h.sibling() // another replica without a shared key
	cases := []struct {
		name   string
		h      *harness
		path   string
		key    string
		status int
		names  string
	}{
		{"flipped version byte", h, with(flip(0)), clinicianKey, 400, "search again"},
		{"flipped nonce", h, with(flip(5)), clinicianKey, 400, "search again"},
		{"flipped ciphertext", h, with(flip(len(raw) / 2)), clinicianKey, 400, "search again"},
		{"flipped tag", h, with(flip(len(raw) - 1)), clinicianKey, 400, "search again"},
		{"truncated", h, with(cur[:len(cur)/2]), clinicianKey, 400, "search again"},
		{"empty", h, with(""), clinicianKey, 400, "search again"},
		{"not base64", h, with("!!!"), clinicianKey, 400, "search again"},
		{"the unsealed format", h, with(oldStyle), clinicianKey, 400, "search again"},
		{"huge", h, with(strings.Repeat("A", 200_000)), clinicianKey, 400, "search again"},
		{"another API key's", h, next, specialistKey, 400, "API key"},
		{"another resource type", h, "/fhir/Observation?_cursor=" + url.QueryEscape(cur), clinicianKey, 400, "search again"},
		{"another replica's key", other, strings.Replace(next, h.srv.URL, other.srv.URL, 1), clinicianKey, 400, "server.cursorKey"},
		{"with a search parameter", h, next + "&patient=" + c.ID, clinicianKey, 400, "give it alone"},
		{"with a page size", h, next + "&_count=5", clinicianKey, 400, "give it alone"},
		{"twice", h, next + "&_cursor=" + url.QueryEscape(cur), clinicianKey, 400, "_cursor"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := tc.h.get(tc.path, tc.key)
			text := wantOutcome(t, r, tc.status)
			if !strings.Contains(text, "_cursor") || !strings.Contains(text, tc.names) {
				t.Errorf("message does not name _cursor and say %q: %s", tc.names, text)
			}
			if strings.Contains(string(r.body), c.ID) || strings.Contains(string(r.body), c.Patient.Value) {
				t.Errorf("the error echoes the search: %s", r.body)
			}
		})
	}
	// The genuine link still works, with _format too.
	if p := h.search(next+"&_format=json", clinicianKey); len(p.Entry) != 1 {
		t.Errorf("the genuine next link: %d entries", len(p.Entry))
	}

	// Expired: past the TTL the link answers 410 Gone.
	h.offset.Store(int64(fhirapi.DefaultCursorTTL + time.Second))
	text := wantOutcome(t, h.get(next, clinicianKey), http.StatusGone)
	if !strings.Contains(text, "expired (links are valid for 1h)") || !strings.Contains(text, "search again") {
		t.Errorf("expired cursor: %s", text)
	}
	h.offset.Store(0)

	// Replicas that share server.cursorKey follow each other's links; the
	// TTL is theirs to set.
	shared := []byte("fhir-test-cursor-key-0123456789abcdef")
	a := h.sibling(func(o *fhirapi.Options) { o.CursorKey = shared; o.CursorTTL = time.Minute })
	z := h.sibling(func(o *fhirapi.Options) { o.CursorKey = shared; o.CursorTTL = time.Minute })
	an := a.search("/fhir/Goal?_count=1&patient="+c.ID, clinicianKey).link("next")
	if p := z.search(strings.Replace(an, a.srv.URL, z.srv.URL, 1), clinicianKey); len(p.Entry) != 1 {
		t.Errorf("a replica with the same key: %d entries", len(p.Entry))
	}
	z.offset.Store(int64(time.Minute + time.Second))
	wantOutcome(t, z.get(strings.Replace(an, a.srv.URL, z.srv.URL, 1), clinicianKey), http.StatusGone)
	h.tel.AssertNoneOf(t, append(h.patientData(), c.ID)...)
}
