package syncer

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/ipsfhir/ipsfhir/ips"
	"github.com/ipsfhir/ipsfhir/mappings"
)

// ehrNote reads client c's chart note from the peer: docStatus and text.
func (r *rig) ehrNote(t *testing.T, c *ips.Client) (docStatus, text string) {
	t.Helper()
	le, err := r.store.LedgerGet(t.Context(), r.conn.Name, ledgerKey(r.conn.Mapping.PlanNoteKey(c)))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := r.client.Read(t.Context(), "DocumentReference", le.ResourceID)
	if err != nil {
		t.Fatal(err)
	}
	var n struct {
		DocStatus string `json:"docStatus"`
		Content   []struct {
			Attachment struct{ Data string } `json:"attachment"`
		} `json:"content"`
	}
	if err := json.Unmarshal(resp.Body, &n); err != nil || len(n.Content) != 1 {
		t.Fatalf("note: %v", err)
	}
	b, err := base64.StdEncoding.DecodeString(n.Content[0].Attachment.Data)
	if err != nil {
		t.Fatal(err)
	}
	return n.DocStatus, string(b)
}

// TestChartNoteIsAmendedNotSilentlyRewritten: both vendor statements
// declare DocumentReference update, so the note is updated in place, and
// once the chart holds it, a new version says so (docStatus amended). The
// amendment mark is not content: the next push finds the note unchanged and
// records no conflict.
func TestChartNoteIsAmendedNotSilentlyRewritten(t *testing.T) {
	t.Parallel()
	for name, capability := range map[string]string{"oracle": oracleCapability, "epic": epicCapability} {
		t.Run(name, func(t *testing.T) {
			r := newRig(t, capability)
			r.pushAll(t)
			c := consenting(r.cl)[0]
			if st, _ := r.ehrNote(t, c); st != "final" {
				t.Fatalf("first note: docStatus %q, want final", st)
			}
			c.Supports = append(c.Supports, &ips.Support{ID: "s-amend", Type: ips.SupportTeamMeeting, Status: ips.SupportPlanned, Date: ips.MustDate("2099-10-20")})
			r.enqueueAll(t)
			if s, err := r.engine.PushOnce(t.Context()); err != nil || s.Failed != 0 || s.Written != 1 {
				t.Fatalf("after a plan change: %+v %v; want the note written", s, err)
			}
			st, text := r.ehrNote(t, c)
			if st != "amended" || !strings.Contains(text, "Mental health team meeting, planned, 2099-10-20") {
				t.Errorf("updated note: docStatus %q, text:\n%s\nwant amended with the new step", st, text)
			}
			if n := r.countByIdentifier(t, "DocumentReference", mappings.KindPlanNote)[r.conn.Mapping.PlanNoteKey(c).Value()]; n != 1 {
				t.Errorf("%d notes for the client, want 1 (amended in place)", n)
			}
			r.enqueueAll(t)
			if s, err := r.engine.PushOnce(t.Context()); err != nil || s.Written != 0 || s.Conflicts != 0 {
				t.Errorf("push with nothing changed: %+v %v; want nothing written, no conflict", s, err)
			}
			// Changed again: what the EHR holds (amended) is the adapter's
			// own note, not a clinician's edit.
			c.Supports[len(c.Supports)-1].Date = ips.MustDate("2099-10-27")
			r.enqueueAll(t)
			if s, err := r.engine.PushOnce(t.Context()); err != nil || s.Failed != 0 || s.Written != 1 || s.Conflicts != 0 {
				t.Errorf("second amendment: %+v %v; want the note written, no conflict", s, err)
			}
		})
	}
}

// TestNoteMarksAStepOverdueOnceItsDatePasses: the overdue marks are
// content, judged against the write's date; the date itself is not. A day
// later with nothing due, nothing is written; once a planned step's date has
// passed, the note is amended to say it is overdue.
func TestNoteMarksAStepOverdueOnceItsDatePasses(t *testing.T) {
	t.Parallel()
	clock := time.Date(2099, 3, 1, 9, 0, 0, 0, time.UTC)
	r := newRig(t, oracleCapability)
	r.engine.Now = func() time.Time { return clock }
	c := consenting(r.cl)[0]
	c.Supports = append(c.Supports, &ips.Support{ID: "s-due", Type: ips.SupportTeamMeeting, Status: ips.SupportPlanned, Date: ips.MustDate("2099-03-03")})
	r.pushAll(t)
	if _, text := r.ehrNote(t, c); strings.Contains(text, "OVERDUE: Mental health team meeting") {
		t.Fatalf("step due 2099-03-03 overdue on 2099-03-01:\n%s", text)
	}

	clock = clock.Add(24 * time.Hour) // 2099-03-02: nothing new is due
	r.enqueueAll(t)
	if s, err := r.engine.PushOnce(t.Context()); err != nil || s.Written != 0 {
		t.Errorf("a day later, nothing due: %+v %v; want nothing written (the date alone is no change)", s, err)
	}

	clock = clock.Add(48 * time.Hour) // 2099-03-04
	r.enqueueAll(t)
	if s, err := r.engine.PushOnce(t.Context()); err != nil || s.Failed != 0 || s.Conflicts != 0 || s.Written == 0 {
		t.Fatalf("after the step's date: %+v %v; want the note written, no conflict", s, err)
	}
	st, text := r.ehrNote(t, c)
	if st != "amended" || !strings.Contains(text, "- OVERDUE: Mental health team meeting, planned, 2099-03-03") {
		t.Errorf("note after the step's date: docStatus %q, text:\n%s\nwant amended, the step marked overdue", st, text)
	}
}

// TestIssuedDoesNotRewriteObservations: Observation.issued is the write
// time; a later push of unchanged records writes nothing, and derived
// status records are written once each like recorded ones.
func TestIssuedDoesNotRewriteObservations(t *testing.T) {
	t.Parallel()
	clock := time.Date(2099, 3, 1, 9, 0, 0, 0, time.UTC)
	r := newRig(t, "")
	r.engine.Now = func() time.Time { return clock }
	r.pushAll(t)
	derived := 0
	for _, c := range consenting(r.cl) {
		derived += len(mappings.EmploymentStatusRecords(c)) - len(c.Employment)
	}
	if derived == 0 {
		t.Fatal("the sample derives no status record from its jobs; the test needs some")
	}
	for v, n := range r.countByIdentifier(t, "Observation", mappings.KindEmploymentStatus) {
		if n != 1 {
			t.Errorf("status %s written %d times", v, n)
		}
	}
	clock = clock.Add(72 * time.Hour)
	r.enqueueAll(t)
	if s, err := r.engine.PushOnce(t.Context()); err != nil || s.Written != 0 || s.Conflicts != 0 {
		t.Errorf("three days later, nothing changed: %+v %v; want nothing written", s, err)
	}
}

// TestIssuedIsNotAClinicianEdit: where the EHR has no versioned update
// (Epic, read-compare-write), a changed status is read before it is
// written; the issued time the adapter wrote is its own, not an edit.
func TestIssuedIsNotAClinicianEdit(t *testing.T) {
	t.Parallel()
	r := newEpicSiteCodedRig(t)
	r.pushAll(t)
	var c *ips.Client
	for _, cc := range consenting(r.cl) {
		if len(cc.Employment) > 0 {
			c = cc
			break
		}
	}
	first := &c.Employment[0]
	if first.Status == ips.Unemployed {
		first.Status = ips.NotInLaborForce
	} else {
		first.Status = ips.Unemployed
	}
	r.enqueueAll(t)
	if s, err := r.engine.PushOnce(t.Context()); err != nil || s.Failed != 0 || s.Written == 0 || s.Conflicts != 0 {
		t.Errorf("push of a changed status: %+v %v; want it written, no conflict", s, err)
	}
}
