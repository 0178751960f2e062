package mappings

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/ipsfhir/ipsfhir/ips"
)

var update = flag.Bool("update", false, "rewrite golden files under testdata/golden/ with current output")

// golden compares a resource's pretty FHIR JSON with testdata/golden/NAME.json.
// Review any diff: these files are what EHRs receive.
func golden(t *testing.T, name string, r proto.Message) []byte {
	t.Helper()
	got, err := MarshalPretty(r)
	if err != nil {
		t.Fatalf("marshal %s: %v", name, err)
	}
	got = append(got, '\n')
	path := filepath.Join("..", "testdata", "golden", name+".json")
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden file (run go test ./mappings -update to create it): %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from %s; if the change is intended, run go test ./mappings -run %s -update and review the diff\ngot:\n%s", name, path, t.Name(), got)
	}
	return got
}

func TestGolden(t *testing.T) {
	c, o := fixtureClient(), fixtureOptions()
	closed, unrecorded := fixtureClosedClient(), fixtureUnrecordedStart()
	// Mapped after the discharge, the note a second time.
	afterClose := o
	afterClose.Now = time.Date(2026, 7, 2, 9, 0, 0, 0, time.UTC)
	amending := afterClose
	amending.NoteReleased = func(Key) bool { return true }
	// Written where the EHR takes the team and has a treatment plan: the
	// plan and the note link to it and name the specialist by identifier.
	linked := o
	linked.SpecialistRecord, linked.CareTeamRecord = true, true
	linked.TreatmentPlan = func(*ips.Client) string { return "CarePlan/mh-plan-7" }
	linked.PatientReference = func(ips.Identifier) string { return "Patient/p-100001" }
	linked.Reference = func(k Key) string {
		if k.Kind == KindSpecialist {
			return "Practitioner/es-1"
		}
		return ""
	}
	practitioner, _ := Practitioner(c, linked)
	// The Provenance of a goal written one by one (the EHR said which
	// version), and of a chart note sent in a transaction, for a client
	// without a specialist: the program is the author.
	written := Written{Key: o.GoalKey(c, c.Goals[0]), ResourceType: "Goal", Reference: "Goal/4711/_history/3",
		ContentHash: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", Recorded: o.Now.Add(2 * time.Second)}
	noSpecialist := fixtureClient()
	noSpecialist.Specialist = ""
	inTransaction := Written{Key: o.PlanNoteKey(noSpecialist), ResourceType: "DocumentReference", Reference: o.PlanNoteKey(noSpecialist).FullURL(),
		ContentHash: "60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752", Recorded: o.Now}
	// A client referred through the EHR and accepted, whose earlier
	// enrollment closed: the Task that answers the referrer, and the two
	// enrollment episodes.
	referred := fixtureClosedClient()
	if referred.Refer(ips.MustDate("2026-09-01"), &ips.ReferralSource{Connection: "clinic", ServiceRequest: "sr-77"}) != ips.ReferralReopened {
		t.Fatal("the closed client was not reopened")
	}
	if err := referred.Accept(ips.MustDate("2026-09-08")); err != nil {
		t.Fatal(err)
	}
	_, task := ReferralTask(referred, o)
	episodes := EpisodesOfCare(referred, o, "clinic")
	if len(episodes) != 2 {
		t.Fatalf("%d episodes, want the closed one and the new one", len(episodes))
	}
	// Where the EHR creates notes but does not update them: the second
	// note, replacing the first.
	replacing := PlanNote(c, o)
	AsNoteVersion(replacing, o.PlanNoteVersionKey(c, "2-"+NoteDigest(replacing)), "DocumentReference/note-1")
	cases := []struct {
		name string
		res  proto.Message
	}{
		{"referral-task-accepted", task},
		{"episode-of-care-finished", episodes[0].Resource},
		{"episode-of-care-active", episodes[1].Resource},
		{"plan-note-replacing", replacing},
		{"goal-active", Goal(c, c.Goals[0], o)},
		{"goal-proposed", Goal(c, c.Goals[1], o)},
		{"careplan", CarePlan(c, o)},
		{"job-ended", JobObservation(c, c.Jobs[0], o)},
		{"job-current", JobObservation(c, c.Jobs[1], o)},
		{"employment-status-closed", EmploymentStatusObservation(c, c.Employment[0], o)},
		{"employment-status-current", EmploymentStatusObservation(c, c.Employment[3], o)},
		{"prapare-employment", PRAPAREObservation(c, c.Employment[3], o)},
		{"plan-note", PlanNote(c, o)},
		// A status derived from a job start nobody recorded a status for.
		{"employment-status-derived", EmploymentStatusObservation(unrecorded, ips.EmploymentSnapshot{Date: ips.MustDate("2026-03-02"), Status: ips.Employed}, o)},
		// A discharged client: what the program last knew, and the note
		// rewritten after discharge as an amendment.
		{"job-last-known", JobObservation(closed, closed.Jobs[1], afterClose)},
		{"employment-status-last-known", EmploymentStatusObservation(closed, closed.Employment[3], afterClose)},
		{"plan-note-closed-amended", PlanNote(closed, amending)},
		{"careplan-linked", CarePlan(c, linked)},
		{"plan-note-linked", PlanNote(c, linked)},
		{"practitioner", practitioner},
		{"careteam", CareTeam(c, linked)},
		{"provenance", Provenance(c, written, o)},
		{"provenance-transaction", Provenance(noSpecialist, inTransaction, o)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			js := golden(t, tc.name, tc.res)
			issues, err := mappingTestValidator(t).ValidateJSON(js)
			if err != nil {
				t.Fatal(err)
			}
			if HasErrors(issues) {
				t.Errorf("golden %s does not validate: %+v", tc.name, issues)
			}
		})
	}
}

var testValidator *Validator

// mappingTestValidator builds the profile validator once per test binary.
func mappingTestValidator(t testing.TB) *Validator {
	t.Helper()
	if testValidator == nil {
		v, err := NewValidator()
		if err != nil {
			t.Fatalf("NewValidator: %v", err)
		}
		testValidator = v
	}
	return testValidator
}
