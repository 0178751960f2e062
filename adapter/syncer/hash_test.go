package syncer

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ipsfhir/ipsfhir/ips"
	"github.com/ipsfhir/ipsfhir/ips/synth"
	"github.com/ipsfhir/ipsfhir/mappings"
)

// TestContentHashesAreUnchanged: the ledger's content hashes of the sample
// caseload's records, in the canonical form push hashes, are those the
// adapter computed before issue 13 changed how a push marshals (golden
// values). A hash that changed would make every ledger see every resource
// as changed after an upgrade, and write the whole caseload again.
func TestContentHashesAreUnchanged(t *testing.T) {
	t.Parallel()
	cl := synth.GenerateSample()
	canon := mappings.Options{Program: cl.ProgramID(), Now: time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC), SpecialistRecord: true, CareTeamRecord: true, PRAPARE: true}
	var lines []string
	for i, c := range cl.Clients {
		o := canon
		if i%2 == 0 {
			o.TreatmentPlan = func(*ips.Client) string { return "CarePlan/tp-" + c.ID }
		}
		for k, cr := range canonicalEntries(c, o) {
			_, hash, err := canonicalJSON(cr)
			if err != nil {
				t.Fatal(err)
			}
			lines = append(lines, ledgerKey(k)+" "+hash)
		}
	}
	slices.Sort(lines)
	sum := sha256.Sum256([]byte(strings.Join(lines, "\n")))
	got := fmt.Sprintf("%d %s", len(lines), hex.EncodeToString(sum[:]))
	const want = "292 94de5664bc920c4c78f4ae8daf85ebbe6b49265d5ca26a5103626577a043f05e"
	if got != want {
		t.Errorf("hashes of the sample caseload = %s, want %s (computed before the change)", got, want)
	}
}
