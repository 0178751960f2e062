package store

import (
	"slices"
	"testing"
	"time"
)

func TestWithoutSupersededDropsOnlyConditionalWritesTheEHRMovedPast(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	attempted := []Attempt{
		{Hash: "old-v2", At: t0, IfMatch: "2"},                  // conditioned on 2; EHR seen on 4 later: gone
		{Hash: "old-v4", At: t0.Add(time.Second), IfMatch: "4"}, // conditioned on the version seen: may still land
		{Hash: "plain", At: t0.Add(2 * time.Second)},            // no If-Match: may land any time
		{Hash: "after", At: t0.Add(time.Minute), IfMatch: "2"},  // sent after the EHR was seen: not judged by it
	}
	got := WithoutSuperseded(attempted, "4", t0.Add(30*time.Second))
	var hashes []string
	for _, a := range got {
		hashes = append(hashes, a.Hash)
	}
	if want := []string{"old-v4", "plain", "after"}; !slices.Equal(hashes, want) {
		t.Errorf("kept %v, want %v", hashes, want)
	}
	if got := WithoutSuperseded(attempted, "", t0.Add(time.Hour)); len(got) != len(attempted) {
		t.Errorf("an observation without a version dropped %d attempts", len(attempted)-len(got))
	}
}

func TestAttemptedColumnRoundTrips(t *testing.T) {
	at := time.Date(2026, 12, 1, 10, 0, 0, 123000, time.UTC)
	in := []Attempt{{Hash: "aa", At: at}, {Hash: "bb", At: at.Add(time.Second), IfMatch: `v@7 "x"`}}
	out := SplitAttempted(JoinAttempted(in))
	if !slices.Equal(in, out) {
		t.Errorf("round trip: %+v, want %+v", out, in)
	}
	// Rows written before If-Match was kept read back as unconditional.
	if old := SplitAttempted("cc@1764583200000000"); len(old) != 1 || old[0].Hash != "cc" || old[0].IfMatch != "" || old[0].At.IsZero() {
		t.Errorf("old encoding: %+v", old)
	}
}
