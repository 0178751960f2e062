package outcomes

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ipsfhir/ipsfhir/conformance/artifacts"
	"github.com/ipsfhir/ipsfhir/conformance/deqmcheck"
	"github.com/ipsfhir/ipsfhir/ips"
)

func deqmProfile(t *testing.T) *deqmcheck.Profile {
	t.Helper()
	dir := filepath.Join("..", "testdata", "outcomes", "deqm")
	p, err := deqmcheck.Load(filepath.Join(dir, "StructureDefinition-summary-measurereport-deqm.xml"),
		filepath.Join(dir, "StructureDefinition-extension-measureScoring.json"))
	if err != nil {
		t.Fatal(err)
	}
	if p.URL != ProfileDEQMSummary {
		t.Fatalf("the stored profile is %s, the reports claim %s", p.URL, ProfileDEQMSummary)
	}
	return p
}

// checkDEQM checks a report that claims DEQM against the profile's
// differential. The one thing it lets through is deqm-6 evaluating to
// empty where a rate has no value (withheld, or over nobody): the
// constraint demands a value from 0 to 1 and ipsfhir will not invent one
// (docs/OUTCOMES.md, "In FHIR"). It returns how many such rates it saw.
func checkDEQM(t *testing.T, p *deqmcheck.Profile, r *Report) int {
	t.Helper()
	data, err := r.JSON()
	if err != nil {
		t.Fatal(err)
	}
	var head struct{ Meta struct{ Profile []string } }
	if err := json.Unmarshal(data, &head); err != nil || !slices.Equal(head.Meta.Profile, []string{ProfileDEQMSummary}) {
		t.Errorf("%s: claims %v, not the DEQM profile", r.Measure, head.Meta.Profile)
	}
	res := p.Check(data)
	for _, pr := range res.Problems {
		t.Errorf("%s: %s", r.Measure, pr)
	}
	for _, e := range res.Empty {
		var gi int
		if _, err := fmt.Sscanf(e, "MeasureReport.group[%d]: deqm-6", &gi); err != nil || gi >= len(r.Groups) || r.Groups[gi].Score.State == Exact {
			t.Errorf("%s: %s evaluates to empty, and not for a rate without a value", r.Measure, e)
		}
	}
	return len(res.Empty)
}

// Every report a program or an HIE with a reporter publishes meets the
// DEQM Summary MeasureReport profile: shown, withheld, empty and
// aggregated alike.
func TestReportsMeetDEQMSummaryProfile(t *testing.T) {
	p := deqmProfile(t)
	v := newValidator(t)
	cl := constructed()
	cases := map[string][]*Report{
		"everything shown": computeT(t, cl.Clients, q3, 1),
		"threshold 11":     computeT(t, cl.Clients, q3, DefaultThreshold),
		"nobody":           computeT(t, nil, q3, DefaultThreshold),
	}
	// The program's own reports, with their exclusions (ips-excluded) shown.
	own, err := Compute(denominatorCaseload(), q3, Options{Program: program, Threshold: 1, Audience: AudienceProgram, Date: producedAt})
	if err != nil {
		t.Fatal(err)
	}
	cases["program's own, exclusions shown"] = own
	onlyOne, err := Compute(cl.Clients, q3, Options{Program: program, Date: producedAt, Audience: AudienceHIE, Consents: func(c *ips.Client) bool {
		return c.Consent != nil && c.Consent.HIE != nil && *c.Consent.HIE
	}})
	if err != nil {
		t.Fatal(err)
	}
	cases["one consenting client"] = onlyOne
	b1, _ := BundleJSON(cases["everything shown"])
	b2, _ := BundleJSON(cases["threshold 11"])
	hie := aggAt
	hie.Reporter = Identifier{System: "https://hie.example.org/id", Value: "east-region"}
	// The same program twice is refused; relabel the second.
	b2 = []byte(strings.ReplaceAll(string(b2), program, "eastside-ips"))
	aggs, err := AggregateBundles([][]byte{b1, b2}, hie)
	if err != nil {
		t.Fatal(err)
	}
	cases["aggregate"] = aggs
	empty := map[string]int{}
	for name, rs := range cases {
		for _, r := range rs {
			empty[name] += checkDEQM(t, p, r)
			data, _ := r.JSON()
			validate(t, v, name+" "+r.Measure, data)
		}
	}
	// A program with nobody enrolled has rates over nobody; one client's
	// rates are withheld. Those are the empty deqm-6 cases; the others
	// have none.
	if empty["nobody"] == 0 || empty["one consenting client"] == 0 || empty["everything shown"] != 0 {
		t.Errorf("empty deqm-6 results: %v", empty)
	}
}

// The /fhir facade's CapabilityStatement declares the profile its computed
// MeasureReports claim.
func TestServerStatementDeclaresTheReportProfile(t *testing.T) {
	data, err := fs.ReadFile(artifacts.FS(), artifacts.DirCapabilities+"/ipsfhir-server.json")
	if err != nil {
		t.Fatal(err)
	}
	var cs struct {
		Rest []struct {
			Resource []struct {
				Type             string
				SupportedProfile []string
			}
		}
	}
	if err := json.Unmarshal(data, &cs); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, rest := range cs.Rest {
		for _, r := range rest.Resource {
			if r.Type == "MeasureReport" {
				found = true
				if !slices.Equal(r.SupportedProfile, []string{ProfileDEQMSummary}) {
					t.Errorf("MeasureReport supportedProfile %v, want %s", r.SupportedProfile, ProfileDEQMSummary)
				}
			}
		}
	}
	if !found {
		t.Error("the server statement has no MeasureReport")
	}
}
