package fhirapi_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/ipsfhir/ipsfhir/adapter/fhirapi"
	"github.com/ipsfhir/ipsfhir/conformance/artifacts"
)

// publishedMeasures lists the id and url of every embedded Measure.
func publishedMeasures(t *testing.T) map[string]string {
	t.Helper()
	names, err := fs.Glob(artifacts.FS(), "*/*.json")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, n := range names {
		data, err := fs.ReadFile(artifacts.FS(), n)
		if err != nil {
			t.Fatal(err)
		}
		var head struct{ ResourceType, ID, URL string }
		if err := json.Unmarshal(data, &head); err != nil {
			t.Fatal(err)
		}
		if head.ResourceType == "Measure" {
			out[head.ID] = head.URL
		}
	}
	return out
}

func TestMeasures(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	published := publishedMeasures(t)
	b := h.search("/fhir/Measure", hieKey)
	if *b.Total != len(published) || len(b.Entry) != len(published) {
		t.Fatalf("Measure search: %d, want every published Measure (%d)", *b.Total, len(published))
	}
	got := b.ids(t)
	for id := range published {
		if !slices.Contains(got, id) {
			t.Errorf("Measure %s not served", id)
		}
	}
	for id, u := range published {
		if r := h.get("/fhir/Measure/"+id, clinicianKey); r.status != http.StatusOK || !strings.Contains(string(r.body), `"resourceType": "Measure"`) {
			t.Errorf("read Measure %s: %d", id, r.status)
		}
		if ids := h.search("/fhir/Measure?url="+url.QueryEscape(u), hieKey).ids(t); !slices.Equal(ids, []string{id}) {
			t.Errorf("url=%s: %v", u, ids)
		}
		if n := *h.search("/fhir/Measure?url="+url.QueryEscape(u+"|99.0.0"), hieKey).Total; n != 0 {
			t.Errorf("url=%s|99.0.0: %d", u, n)
		}
		break // one is enough for the url search
	}
	wantOutcome(t, h.get("/fhir/Measure/no-such-measure", hieKey), http.StatusNotFound)
	// An unknown parameter is ignored and said to be (FHIR search), or
	// refused under Prefer: handling=strict.
	lenient := h.search("/fhir/Measure?name=x", hieKey)
	if *lenient.Total != *b.Total || len(lenient.outcomes(t)) != 1 || !strings.Contains(lenient.outcomes(t)[0], "name") {
		t.Errorf("name=x, lenient: total %d, outcomes %q", *lenient.Total, lenient.outcomes(t))
	}
	if self := lenient.link("self"); strings.Contains(self, "name") {
		t.Errorf("the self link keeps the ignored parameter: %s", self)
	}
	wantOutcome(t, h.do(http.MethodGet, "/fhir/Measure?name=x", hieKey, nil, "Prefer", "handling=strict"), http.StatusBadRequest)
}

func TestMeasureReports(t *testing.T) {
	t.Parallel()
	var periods []string
	report := func(id, subject, measure string) json.RawMessage {
		return json.RawMessage(fmt.Sprintf(`{"resourceType":"MeasureReport","id":%q,"status":"complete","type":"summary","measure":%q,"subject":{"reference":%q},"period":{"start":"2025-01-01","end":"2025-03-31"}}`, id, measure, subject))
	}
	h := newHarness(t, func(o *fhirapi.Options) {
		o.Reports = func(_ context.Context, period string, _ bool) ([]json.RawMessage, error) {
			periods = append(periods, period)
			switch period {
			case "bad":
				return nil, fmt.Errorf("quarter: %w", fhirapi.ErrBadPeriod)
			case "broken":
				return nil, errors.New("the outcome store is down")
			}
			return []json.RawMessage{
				report("r1", "Group/riverside-ips", "https://ipsfhir.org/fhir/Measure/ips-job-starts|0.1.0"),
				report("r2", "Group/riverside-ips", "https://ipsfhir.org/fhir/Measure/ips-earnings|0.1.0"),
				report("r3", "Group/elsewhere", "https://ipsfhir.org/fhir/Measure/ips-earnings|0.1.0"),
				// As the program computes them: no subject (DEQM), the
				// program as reporter.
				json.RawMessage(`{"resourceType":"MeasureReport","id":"r4","status":"complete","type":"summary","measure":"https://ipsfhir.org/fhir/Measure/ips-competitive-employment|0.1.0","reporter":{"type":"Organization","identifier":{"system":"urn:ipsfhir:program","value":"riverside-ips"}},"period":{"start":"2025-01-01","end":"2025-03-31"}}`),
			}, nil
		}
	})
	cases := map[string][]string{
		"period=2025-Q1": {"r1", "r2", "r3", "r4"},
		"period=2025-Q1&subject=Group/riverside-ips": {"r1", "r2", "r4"},
		"subject=riverside-ips":                      {"r1", "r2", "r4"},
		"subject=elsewhere":                          {"r3"},
		"measure=" + url.QueryEscape("https://ipsfhir.org/fhir/Measure/ips-earnings"):       {"r2", "r3"},
		"measure=" + url.QueryEscape("https://ipsfhir.org/fhir/Measure/ips-earnings|0.2.0"): {},
		"measure=Measure/ips-job-starts&subject=" + url.QueryEscape("Group/riverside-ips"):  {"r1"},
	}
	for q, want := range cases {
		got := h.search("/fhir/MeasureReport?"+q, hieKey).ids(t)
		if !slices.Equal(got, want) && !(len(got) == 0 && len(want) == 0) {
			t.Errorf("%s: %v, want %v", q, got, want)
		}
	}
	if !slices.Contains(periods, "2025-Q1") || !slices.Contains(periods, "") {
		t.Errorf("periods passed to Reports: %q", periods)
	}
	text := wantOutcome(t, h.get("/fhir/MeasureReport?period=bad", hieKey), http.StatusBadRequest)
	if !strings.Contains(text, "period") {
		t.Errorf("bad period: %s", text)
	}
	text = wantOutcome(t, h.get("/fhir/MeasureReport?period=broken", hieKey), http.StatusInternalServerError)
	if strings.Contains(text, "down") {
		t.Errorf("the cause of a 500 reached the caller: %s", text)
	}
	wantOutcome(t, h.do(http.MethodGet, "/fhir/MeasureReport?status=complete", hieKey, nil, "Prefer", "handling=strict"), http.StatusBadRequest)
	if b := h.search("/fhir/MeasureReport?status=complete", hieKey); len(b.outcomes(t)) != 1 {
		t.Errorf("status=complete, lenient: outcomes %q", b.outcomes(t))
	}
}

// hie callers get the reports for HIEs (forHIE), which count only clients
// whose consent allows HIE reporting; the program's own staff get the
// program's own.
func TestMeasureReportsAudienceFollowsRole(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var got []bool
	h := newHarness(t, func(o *fhirapi.Options) {
		o.Reports = func(_ context.Context, _ string, forHIE bool) ([]json.RawMessage, error) {
			mu.Lock()
			got = append(got, forHIE)
			mu.Unlock()
			return nil, nil
		}
	})
	for _, tc := range []struct {
		key    string
		forHIE bool
	}{{hieKey, true}, {adminKey, false}, {clinicianKey, false}, {specialistKey, false}, {directorKey, false}} {
		got = nil
		h.search("/fhir/MeasureReport?period=2025Q1", tc.key)
		if !slices.Equal(got, []bool{tc.forHIE}) {
			t.Errorf("key %s: Reports called with forHIE %v, want %v", tc.key, got, tc.forHIE)
		}
	}
}
