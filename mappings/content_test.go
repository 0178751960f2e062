package mappings

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ipsfhir/ipsfhir/ips"

	cpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/codes_go_proto"
	dtpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/datatypes_go_proto"
	obspb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/resources/observation_go_proto"
)

// What the chart receives about employment, as an IPS trainer and an EHR
// analyst read it (issue 11, items 8, 10, 11 and 12).

// ODH's EmploymentStatus binds the value (required) to
// v3-employmentStatusODH: the v3 code comes first, exactly as the value set
// spells it (codes are case-sensitive), and the SNOMED CT finding second.
func TestEmploymentStatusValueIsTheODHCodeThenSNOMED(t *testing.T) {
	want := map[ips.EmploymentStatus][2]string{
		ips.Employed:        {"Employed", "224363007"},
		ips.Unemployed:      {"Unemployed", "73438004"},
		ips.NotInLaborForce: {"NotInLaborForce", "741062008"},
	}
	c := fixtureClient()
	for _, st := range ips.EmploymentStatuses {
		s := ips.EmploymentSnapshot{Date: ips.MustDate("2026-01-05"), Status: st}
		cs := EmploymentStatusObservation(c, s, Options{}).GetValue().GetCodeableConcept().GetCoding()
		if len(cs) != 2 {
			t.Fatalf("%s: %d codings, want the v3 code and the SNOMED CT finding", st, len(cs))
		}
		if cs[0].GetSystem().GetValue() != SystemV3ObservationValue || cs[0].GetCode().GetValue() != want[st][0] {
			t.Errorf("%s: first coding %s#%s, want %s#%s", st, cs[0].GetSystem().GetValue(), cs[0].GetCode().GetValue(), SystemV3ObservationValue, want[st][0])
		}
		if cs[1].GetSystem().GetValue() != SystemSNOMED || cs[1].GetCode().GetValue() != want[st][1] {
			t.Errorf("%s: second coding %s#%s, want SNOMED CT %s", st, cs[1].GetSystem().GetValue(), cs[1].GetCode().GetValue(), want[st][1])
		}
	}
}

// The reverse reads either coding, so an EHR that keeps only one of them
// still gives the status back, and an unknown code is a problem.
func TestEmploymentStatusReadsEitherCoding(t *testing.T) {
	c := fixtureClient()
	for _, st := range ips.EmploymentStatuses {
		s := ips.EmploymentSnapshot{Date: ips.MustDate("2026-01-05"), Status: st}
		for keep := range 2 {
			o := EmploymentStatusObservation(c, s, Options{})
			cc := o.GetValue().GetCodeableConcept()
			cc.Coding = cc.Coding[keep : keep+1]
			if _, got, err := EmploymentStatusFromFHIR(o); err != nil || got != s {
				t.Errorf("%s with only %s: read %+v, %v", st, cc.Coding[0].GetSystem().GetValue(), got, err)
			}
		}
	}
	o := EmploymentStatusObservation(c, c.Employment[0], Options{})
	o.GetValue().GetCodeableConcept().Coding = []*dtpb.Coding{fcoding(SystemV3ObservationValue, "employed", "")}
	if _, _, err := EmploymentStatusFromFHIR(o); err == nil {
		t.Error("lower-case v3 code accepted: v3 codes are case-sensitive")
	}
}

func TestStatusRecordsDerivedFromJobStartsAndEnds(t *testing.T) {
	d := ips.MustDate
	job := func(id, start, end string) *ips.Job {
		j := &ips.Job{ID: id, Employer: "E", Title: "T", Start: d(start), HoursPerWeek: 10, HourlyWage: ips.Money{Value: 15, Currency: "USD"}, Competitive: true}
		if end != "" {
			j.End = d(end)
		}
		return j
	}
	snap := func(date string, st ips.EmploymentStatus) ips.EmploymentSnapshot {
		return ips.EmploymentSnapshot{Date: d(date), Status: st}
	}
	cases := []struct {
		name     string
		jobs     []*ips.Job
		recorded []ips.EmploymentSnapshot
		closedOn string
		want     []ips.EmploymentSnapshot
	}{
		{"no records: employed at the start, unemployed the day after the last day",
			[]*ips.Job{job("j1", "2026-02-02", "2026-03-31")}, nil, "",
			[]ips.EmploymentSnapshot{snap("2026-02-02", ips.Employed), snap("2026-04-01", ips.Unemployed)}},
		{"recorded unemployed at enrollment; a job starts",
			[]*ips.Job{job("j1", "2026-02-02", "")}, []ips.EmploymentSnapshot{snap("2026-01-05", ips.Unemployed)}, "",
			[]ips.EmploymentSnapshot{snap("2026-01-05", ips.Unemployed), snap("2026-02-02", ips.Employed)}},
		{"a second job while employed changes nothing; the end of the last one does",
			[]*ips.Job{job("j1", "2026-02-02", "2026-05-29"), job("j2", "2026-03-02", "2026-04-30")}, nil, "",
			[]ips.EmploymentSnapshot{snap("2026-02-02", ips.Employed), snap("2026-05-30", ips.Unemployed)}},
		{"a recorded status on the day wins",
			[]*ips.Job{job("j1", "2026-02-02", "2026-03-31")}, []ips.EmploymentSnapshot{snap("2026-04-01", ips.NotInLaborForce)}, "",
			[]ips.EmploymentSnapshot{snap("2026-02-02", ips.Employed), snap("2026-04-01", ips.NotInLaborForce)}},
		{"not in the labor force stays so: a job that ended is no news",
			[]*ips.Job{job("j1", "2025-10-01", "2025-12-31")}, []ips.EmploymentSnapshot{snap("2025-11-01", ips.NotInLaborForce)}, "",
			[]ips.EmploymentSnapshot{snap("2025-10-01", ips.Employed), snap("2025-11-01", ips.NotInLaborForce)}},
		{"nothing after the enrollment closed",
			[]*ips.Job{job("j1", "2026-02-02", "2026-06-30"), job("j2", "2026-08-03", "")}, nil, "2026-06-30",
			[]ips.EmploymentSnapshot{snap("2026-02-02", ips.Employed)}},
	}
	for _, tc := range cases {
		c := &ips.Client{ID: "c1", EnrolledOn: d("2026-01-05"), Jobs: tc.jobs, Employment: tc.recorded}
		if tc.closedOn != "" {
			c.ClosedOn = d(tc.closedOn)
		}
		if diff := cmp.Diff(tc.want, EmploymentStatusRecords(c)); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tc.name, diff)
		}
	}
}

// A derived record says what it came from; a recorded one does not; and
// reading a caseload back skips the derived ones, which the jobs give again.
func TestDerivedStatusRefersToItsJobAndIsNotReadBack(t *testing.T) {
	c, o := fixtureUnrecordedStart(), fixtureOptions()
	recs := EmploymentStatusRecords(c)
	if len(recs) != 4 || recs[3] != (ips.EmploymentSnapshot{Date: ips.MustDate("2026-03-02"), Status: ips.Employed}) {
		t.Fatalf("records %v, want the bakery start (2026-03-02) derived as employed", recs)
	}
	derived := EmploymentStatusObservation(c, recs[3], o)
	if !DerivedEmploymentStatus(derived) || len(derived.GetDerivedFrom()) != 1 {
		t.Fatalf("derived status: derivedFrom %v, want the bakery job", derived.GetDerivedFrom())
	}
	id := derived.GetDerivedFrom()[0].GetIdentifier()
	if k := o.JobKey(c, c.Jobs[1]); id.GetSystem().GetValue() != k.System() || id.GetValue().GetValue() != k.Value() {
		t.Errorf("derivedFrom names %s|%s, want the bakery job %s|%s", id.GetSystem().GetValue(), id.GetValue().GetValue(), k.System(), k.Value())
	}
	if DerivedEmploymentStatus(EmploymentStatusObservation(c, recs[0], o)) {
		t.Error("a recorded status is marked as derived")
	}
	// The recorded status before it now ends where the derived one begins.
	if end := dateFromDateTime(EmploymentStatusObservation(c, recs[2], o).GetEffective().GetPeriod().GetEnd()); end != recs[3].Date {
		t.Errorf("status before the derived one ends %s, want %s", end, recs[3].Date)
	}

	cl := &ips.Caseload{Program: &ips.Program{ID: o.Program}, Clients: []*ips.Client{c}}
	b, err := CaseloadBundle(cl, o, Collection)
	if err != nil {
		t.Fatal(err)
	}
	back, err := CaseloadFromBundle(b, ReferralOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(InFHIR(cl), ips.Normalize(back)); d != "" {
		t.Errorf("round trip with a derived status (-in +out):\n%s", d)
	}
}

// A discharged client's job and status do not stay current forever: open
// periods end on the closing day, marked as last known.
func TestClosedClientsObservationsEndWhereTheProgramStoppedKnowing(t *testing.T) {
	c, o := fixtureClosedClient(), fixtureOptions()
	lastKnownOf := func(o *obspb.Observation) string {
		for _, e := range o.GetExtension() {
			if e.GetUrl().GetValue() == ExtLastKnown {
				return dateFromDate(e.GetValue().GetDate()).String()
			}
		}
		return ""
	}
	isCurrent := func(o *obspb.Observation) *bool {
		for _, e := range o.GetExtension() {
			if e.GetUrl().GetValue() == ExtODHIsCurrentJob {
				v := e.GetValue().GetBoolean().GetValue()
				return &v
			}
		}
		return nil
	}

	job := JobObservation(c, c.Jobs[1], o)
	if end := dateFromDateTime(job.GetEffective().GetPeriod().GetEnd()); end != c.ClosedOn {
		t.Errorf("job held at discharge: period end %s, want the closing day %s", end, c.ClosedOn)
	}
	if lastKnownOf(job) != "2026-06-30" || isCurrent(job) != nil {
		t.Errorf("job held at discharge: last known %q, isCurrentJob %v; want 2026-06-30 and no isCurrentJob", lastKnownOf(job), isCurrent(job))
	}
	if len(job.GetNote()) != 1 || !strings.Contains(job.GetNote()[0].GetText().GetValue(), "Last known as of 2026-06-30") {
		t.Errorf("job held at discharge: notes %v, want one saying last known as of 2026-06-30", job.GetNote())
	}
	ended := JobObservation(c, c.Jobs[0], o)
	if lastKnownOf(ended) != "" || dateFromDateTime(ended.GetEffective().GetPeriod().GetEnd()) != c.Jobs[0].End || *isCurrent(ended) {
		t.Error("a job that ended before discharge changed")
	}

	last := EmploymentStatusObservation(c, c.Employment[3], o)
	if end := dateFromDateTime(last.GetEffective().GetPeriod().GetEnd()); end != c.ClosedOn || lastKnownOf(last) != "2026-06-30" {
		t.Errorf("last status of a discharged client: period end %s, last known %q; want both the closing day", end, lastKnownOf(last))
	}
	if lastKnownOf(EmploymentStatusObservation(c, c.Employment[2], o)) != "" {
		t.Error("a status that a later record ended is marked last known")
	}
	// Still enrolled: nothing closes.
	if p := EmploymentStatusObservation(fixtureClient(), c.Employment[3], o).GetEffective().GetPeriod(); p.GetEnd() != nil {
		t.Error("the current status of an enrolled client has a period end")
	}

	// Read back, the job is the one still held, as recorded.
	_, j, err := JobFromFHIR(job)
	if err != nil || !j.End.IsZero() {
		t.Errorf("job read back: end %s, %v; want no end (the job had not ended)", j.End, err)
	}
}

// Every Observation says when this version was made available: issued is
// the mapping time, and absent without a clock.
func TestObservationsCarryIssued(t *testing.T) {
	c, o := fixtureClient(), fixtureOptions()
	for name, obs := range map[string]*obspb.Observation{
		"job":     JobObservation(c, c.Jobs[0], o),
		"status":  EmploymentStatusObservation(c, c.Employment[0], o),
		"prapare": PRAPAREObservation(c, c.Employment[0], o),
	} {
		if got := obs.GetIssued(); got == nil || time.UnixMicro(got.GetValueUs()).UTC() != o.Now {
			t.Errorf("%s: issued %v, want %s", name, got, o.Now)
		}
	}
	if JobObservation(c, c.Jobs[0], Options{}).GetIssued() != nil {
		t.Error("issued set without a clock (mappings must not read the clock)")
	}
}

// The PRAPARE answer is derived, not a survey answer: no survey category,
// and derivedFrom names the status record and the jobs whose hours decided it.
func TestPRAPAREIsDerivedNotASurvey(t *testing.T) {
	c, o := fixtureClient(), fixtureOptions()
	obs := PRAPAREObservation(c, c.Employment[3], o)
	for _, cat := range obs.GetCategory() {
		if hasCoding(cat, SystemObsCategory, "survey") {
			t.Error("derived PRAPARE answer has the survey category")
		}
	}
	var from []string
	for _, r := range obs.GetDerivedFrom() {
		from = append(from, r.GetIdentifier().GetSystem().GetValue()+"|"+r.GetIdentifier().GetValue().GetValue())
	}
	sk, jk := o.EmploymentStatusKey(c, c.Employment[3]), o.JobKey(c, c.Jobs[1])
	if want := []string{sk.System() + "|" + sk.Value(), jk.System() + "|" + jk.Value()}; !slices.Equal(from, want) {
		t.Errorf("derivedFrom %v, want the status record and the bakery job %v", from, want)
	}
	if n := len(PRAPAREObservation(c, c.Employment[0], o).GetDerivedFrom()); n != 1 {
		t.Errorf("unemployed: %d derivedFrom, want the status record alone", n)
	}
	// With the EHR's ids known, the reference is literal as well.
	o.Reference = func(k Key) string {
		if k == sk {
			return "Observation/st-1"
		}
		return ""
	}
	if got := referenceString(PRAPAREObservation(c, c.Employment[3], o).GetDerivedFrom()[0]); got != "Observation/st-1" {
		t.Errorf("derivedFrom with a known id: %q, want Observation/st-1", got)
	}
}

func noteText(c *ips.Client, o Options) string {
	return string(PlanNote(c, o).GetContent()[0].GetAttachment().GetData().GetValue())
}

func TestNoteAndNarrativeSayEnrolledAndClosed(t *testing.T) {
	o := fixtureOptions()
	closed := fixtureClosedClient()
	for name, text := range map[string]string{"note": noteText(closed, o), "narrative": CarePlan(closed, o).GetText().GetDiv().GetValue()} {
		if !strings.Contains(text, "Enrolled 2026-01-05; closed 2026-06-30 (moved out of the area)") {
			t.Errorf("%s of a closed client does not say enrolled and closed with the reason:\n%s", name, text)
		}
		if strings.Contains(text, "since 2026-01-05") {
			t.Errorf("%s still dates the closed status from the enrollment:\n%s", name, text)
		}
	}
	if text := noteText(fixtureClient(), o); !strings.Contains(text, "Enrolled 2026-01-05; active") {
		t.Errorf("note of an active client:\n%s", text)
	}
	referred := fixtureClient()
	referred.Status = ips.ClientReferred
	if text := noteText(referred, o); !strings.Contains(text, "Referred 2026-01-02; not yet enrolled") {
		t.Errorf("note of a referred client:\n%s", text)
	}
	// The work of a closed client is what was last known, not current work.
	if text := noteText(closed, o); strings.Contains(text, "CURRENT WORK") || !strings.Contains(text, "WORK WHEN THE ENROLLMENT CLOSED (LAST KNOWN AS OF 2026-06-30)") {
		t.Errorf("closed client's job shown as current work:\n%s", text)
	}
}

func TestNoteMarksOverdueStepsAgainstItsDate(t *testing.T) {
	c, o := fixtureClient(), fixtureOptions() // s3, follow-along, planned for 2026-03-10
	c.Supports = append(c.Supports, &ips.Support{ID: "s5", Type: ips.SupportTeamMeeting, Status: ips.SupportInProgress, Date: ips.MustDate("2026-02-01")})
	for _, tc := range []struct {
		now  time.Time
		want bool
	}{
		{time.Date(2026, 3, 9, 23, 0, 0, 0, time.UTC), false},
		{time.Date(2026, 3, 10, 9, 0, 0, 0, time.UTC), false}, // due today, not yet overdue
		{time.Date(2026, 3, 11, 0, 0, 1, 0, time.UTC), true},
	} {
		o.Now = tc.now
		text := noteText(c, o)
		if got := strings.Contains(text, "- OVERDUE: Follow-along support on the job, planned, 2026-03-10"); got != tc.want {
			t.Errorf("note dated %s: overdue mark %v, want %v:\n%s", tc.now, got, tc.want, text)
		}
		if strings.Contains(text, "OVERDUE: Mental health team meeting") {
			t.Errorf("a support in progress is marked overdue:\n%s", text)
		}
	}
	if strings.Contains(RenderPlan(c, Options{}), "OVERDUE") {
		t.Error("a note without a date marks steps overdue")
	}
}

func TestNoteShowsProgramContactAndHowEachJobStands(t *testing.T) {
	c, o := fixtureClient(), fixtureOptions()
	text := noteText(c, o)
	for _, want := range []string{
		"Program: Riverside Clinic IPS",
		"Employment specialist: Jordan Reyes (jreyes@riverside.example)",
		"- Baker's assistant at Sunrise Bakery since 2026-03-02: 22.5 hours a week, 17 USD an hour, competitive; condition disclosed to this employer",
		"PAST JOBS\n- Stock clerk at Corner Grocery, 2026-01-26 to 2026-02-20: 12 hours a week, 15.25 USD an hour, competitive; ended: temporary job ended; condition not disclosed to this employer",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("note lacks %q:\n%s", want, text)
		}
	}
	c.Jobs[0].Disclosed, c.Jobs[0].EndReason = nil, ""
	text = noteText(c, o)
	if !strings.Contains(text, "ended, reason not recorded; disclosure to this employer not recorded") {
		t.Errorf("unknown end reason and disclosure not said:\n%s", text)
	}
	div := CarePlan(c, o).GetText().GetDiv().GetValue()
	for _, want := range []string{"Riverside Clinic IPS", "jreyes@riverside.example", "Past jobs:", "condition disclosed to this employer"} {
		if !strings.Contains(div, want) {
			t.Errorf("plan narrative lacks %q:\n%s", want, div)
		}
	}
}

// A note already in the chart is amended, not silently rewritten as final.
func TestNoteAlreadyInTheChartIsAnAmendment(t *testing.T) {
	c, o := fixtureClient(), fixtureOptions()
	if got := PlanNote(c, o).GetDocStatus().GetValue(); got != cpb.CompositionStatusCode_FINAL {
		t.Errorf("first note: docStatus %v, want final", got)
	}
	var asked []Key
	o.NoteReleased = func(k Key) bool { asked = append(asked, k); return true }
	note := PlanNote(c, o)
	if got := note.GetDocStatus().GetValue(); got != cpb.CompositionStatusCode_AMENDED {
		t.Errorf("note already in the chart: docStatus %v, want amended", got)
	}
	if len(asked) != 1 || asked[0] != o.PlanNoteKey(c) {
		t.Errorf("NoteReleased asked about %v, want the client's note key", asked)
	}
	if note.GetStatus().GetValue() != cpb.DocumentReferenceStatusCode_CURRENT {
		t.Error("an amended note is not current")
	}
	js, err := MarshalPretty(note)
	if err != nil {
		t.Fatal(err)
	}
	issues, err := mappingTestValidator(t).ValidateJSON(js)
	if err != nil || HasErrors(issues) {
		t.Errorf("amended note does not validate: %v %+v", err, issues)
	}
}

// The closing reason and the specialist's contact stay in the IPS store:
// the narratives show them, the FHIR structure does not carry them.
func TestClosedReasonAndContactStayInTheStore(t *testing.T) {
	c := fixtureClosedClient()
	out := InFHIR(&ips.Caseload{Clients: []*ips.Client{c}}).Clients[0]
	if out.ClosedReason != "" || out.SpecialistContact != "" {
		t.Errorf("InFHIR kept %q, %q; the FHIR structure does not carry them", out.ClosedReason, out.SpecialistContact)
	}
	if c.ClosedReason == "" || c.SpecialistContact == "" {
		t.Error("InFHIR changed its input")
	}
}
