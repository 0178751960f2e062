package fhirapi_test

import (
	"bytes"
	"encoding/json"
	"net/url"
	"os"
	"os/exec"
	"slices"
	"testing"

	"github.com/ipsfhir/ipsfhir/adapter/fhirapi"
	"github.com/ipsfhir/ipsfhir/conformance/peer"
	"github.com/ipsfhir/ipsfhir/ips"
)

// medplumScript runs Medplum's FHIR client (@medplum/core, the peer's
// pinned version) against the facade: what a US Core client sends
// (_summary=count, patient+code, Goal by subject), and a Bulk Data export
// the way Medplum kicks it off (POST, the parameters in the query) and
// polls it. It prints what it got as JSON.
const medplumScript = `
const { createRequire } = require('node:module');
const { MedplumClient } = createRequire(process.env.PEER_DIR + '/package.json')('@medplum/core');
(async () => {
  const medplum = new MedplumClient({ baseUrl: process.env.BASE, fhirUrlPath: 'fhir', fetch: globalThis.fetch });
  medplum.setAccessToken(process.env.RECORDS_KEY);
  const count = await medplum.search('Observation', { _summary: 'count' });
  const jobs = await medplum.searchResources('Observation', { patient: 'Patient/' + process.env.PATIENT, code: 'http://loinc.org|11341-5' });
  const goals = await medplum.searchResources('Goal', { subject: 'Patient/' + process.env.PATIENT, _elements: 'lifecycleStatus' });
  medplum.setAccessToken(process.env.EXPORT_KEY);
  const manifest = await medplum.bulkExport('', 'Goal,CarePlan', undefined, { pollStatusOnAccepted: true, pollStatusPeriod: 50 });
  console.log(JSON.stringify({
    total: count.total, countEntries: (count.entry || []).length,
    jobs: jobs.map((r) => r.id),
    goals: goals.map((r) => r.id), goalTags: goals.map((r) => (r.meta.tag || []).map((t) => t.code)),
    manifest,
  }));
})().catch((e) => { console.error(e && e.message, JSON.stringify(e && e.outcome)); process.exit(1); });
`

// TestMedplumClient: a FHIR client nobody on this project wrote gets what
// it asks for: the count alone, Observations by patient and code, Goals by
// subject, and an export kicked off by POST.
func TestMedplumClient(t *testing.T) {
	t.Parallel()
	node, args, dir := peer.NodeForTest(t)
	h := newHarness(t, func(o *fhirapi.Options) { o.Limits.MaxJobs = 20 })
	c := h.withJobs(1)

	all := h.search("/fhir/Observation?_count=500", clinicianKey)
	var wantJobs []string
	for _, j := range c.Jobs {
		wantJobs = append(wantJobs, idOf(h.mapping.JobKey(c, j)))
	}

	cmd := exec.CommandContext(t.Context(), node, append(args, "-e", medplumScript)...)
	cmd.Env = append(os.Environ(), "PEER_DIR="+dir, "BASE="+h.srv.URL+"/", "RECORDS_KEY="+clinicianKey, "EXPORT_KEY="+adminKey, "PATIENT="+c.ID)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("Medplum's client: %v\n%s", err, stderr.String())
	}
	var got struct {
		Total        int
		CountEntries int
		Jobs, Goals  []string
		GoalTags     [][]string
		Manifest     struct {
			Request string
			Output  []struct {
				Type, URL string
				Count     int
			}
		}
	}
	if err := json.Unmarshal(stdout.Bytes(), &got); err != nil {
		t.Fatalf("the script's output: %v\n%s", err, stdout.String())
	}
	if got.Total != *all.Total || got.CountEntries != 0 {
		t.Errorf("_summary=count: total %d, %d entries; want %d and none", got.Total, got.CountEntries, *all.Total)
	}
	if !slices.Equal(got.Jobs, wantJobs) {
		t.Errorf("patient+code: %v, want the client's jobs %v", got.Jobs, wantJobs)
	}
	if !slices.Equal(got.Goals, h.idsOfType(c, "Goal")) {
		t.Errorf("Goal by subject: %v, want %v", got.Goals, h.idsOfType(c, "Goal"))
	}
	for _, tags := range got.GoalTags {
		if !slices.Contains(tags, "SUBSETTED") {
			t.Errorf("a Goal asked for with _elements is not tagged SUBSETTED: %v", tags)
		}
	}
	var hie []*ips.Client
	for _, cl := range h.cl.Clients {
		if consent.AllowsHIE(cl) {
			hie = append(hie, cl)
		}
	}
	m := bulkManifest{Request: got.Manifest.Request}
	for _, o := range got.Manifest.Output {
		m.Output = append(m.Output, struct {
			Type  string `json:"type"`
			URL   string `json:"url"`
			Count int    `json:"count"`
		}{o.Type, o.URL, o.Count})
	}
	if len(m.Output) == 0 {
		t.Fatalf("the export Medplum kicked off has no files: %+v", got.Manifest)
	}
	lines := h.download(m, adminKey)
	if got, want := idsByType(t, lines), h.exported(hie, "Goal", "CarePlan"); !equalSets(got, want) {
		t.Errorf("the export Medplum kicked off: %v, want %v", got, want)
	}
	if u, err := url.Parse(got.Manifest.Request); err != nil || u.Path != "/fhir/$export" || u.Query().Get("_type") != "Goal,CarePlan" {
		t.Errorf("manifest request %q", got.Manifest.Request)
	}
}
