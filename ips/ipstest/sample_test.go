package ipstest

import (
	"bytes"
	"flag"
	"os"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ipsfhir/ipsfhir/ips"
	"github.com/ipsfhir/ipsfhir/ips/synth"
)

var update = flag.Bool("update", false, "rewrite testdata/caseload-sample.json from synth.GenerateSample")

// TestSampleCoverage pins what the sample caseload must contain, so that an
// edit or a regeneration cannot quietly drop a case the tests of other
// packages rely on.
func TestSampleCoverage(t *testing.T) {
	cl := Sample(t)
	if len(cl.Clients) < 25 {
		t.Errorf("sample has %d clients, want at least 25", len(cl.Clients))
	}
	if diff := cmp.Diff(synth.RiversideProgram(), cl.Program); diff != "" {
		t.Errorf("sample program (-want +got):\n%s", diff)
	}
	for _, gap := range synth.CoverageGaps(cl) {
		t.Errorf("sample lacks %s", gap)
	}
	var nonCompetitive, current, closedDefault, activeDefault bool
	for _, c := range cl.Clients {
		closedDefault = closedDefault || (c.Status == "" && !c.ClosedOn.IsZero())
		activeDefault = activeDefault || (c.Status == "" && c.ClosedOn.IsZero())
		for _, j := range c.Jobs {
			nonCompetitive = nonCompetitive || !j.Competitive
			current = current || j.Current()
		}
	}
	for what, ok := range map[string]bool{
		"a non-competitive job":                 nonCompetitive,
		"a current job":                         current,
		"a closed client with status left out":  closedDefault,
		"an active client with status left out": activeDefault,
	} {
		if !ok {
			t.Errorf("sample lacks %s", what)
		}
	}
	// Consistency of every record is checked on synth.GenerateSample
	// (TestSampleIsConsistent there), which this file must equal byte for byte.
}

func TestSampleRoundTrips(t *testing.T) {
	cl := Sample(t)
	if diff := cmp.Diff(cl, roundTrip(t, cl)); diff != "" {
		t.Errorf("sample changed through Encode and Decode (-file +round trip):\n%s", diff)
	}
}

// TestSampleFileIsGenerated keeps the checked-in file and GenerateSample in
// step, so code may use either and see the same caseload.
func TestSampleFileIsGenerated(t *testing.T) {
	file, err := os.ReadFile(SamplePath(t))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := ips.Encode(&buf, synth.GenerateSample()); err != nil {
		t.Fatal(err)
	}
	if *update {
		if err := os.WriteFile(SamplePath(t), buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	if !bytes.Equal(file, buf.Bytes()) {
		t.Errorf("%s is not what synth.GenerateSample makes; regenerate it with\n\tgo test ./ips/ipstest -run TestSampleFileIsGenerated -update\nand review the diff", SamplePath(t))
	}
}

func roundTrip(t *testing.T, cl *ips.Caseload) *ips.Caseload {
	t.Helper()
	var buf bytes.Buffer
	if err := ips.Encode(&buf, cl); err != nil {
		t.Fatal(err)
	}
	back, err := ips.Decode(&buf)
	if err != nil {
		t.Fatalf("decode what Encode wrote: %v", err)
	}
	return back
}
