package mappings

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"testing"

	"github.com/ipsfhir/ipsfhir/ips"

	cpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/codes_go_proto"
	obspb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/resources/observation_go_proto"
	"google.golang.org/protobuf/proto"
)

func TestGoalStatusEveryLifecycleCode(t *testing.T) {
	c := fixtureClient()
	for _, st := range ips.GoalStatuses {
		g := *c.Goals[0]
		g.Status = st
		got := Goal(c, &g, Options{}).GetLifecycleStatus().GetValue()
		if got == cpb.GoalLifecycleStatusCode_INVALID_UNINITIALIZED || codeOfEnum(got.String()) != string(st) {
			t.Errorf("status %s became %v", st, got)
		}
	}
}

func TestGoalTargetOnlyWhenKnown(t *testing.T) {
	c := fixtureClient()
	g := &ips.Goal{ID: "g9", Description: "any job", Status: ips.GoalActive, Start: ips.MustDate("2026-01-01")}
	if n := len(Goal(c, g, Options{}).GetTarget()); n != 0 {
		t.Errorf("goal without hours or due date has %d targets, want none", n)
	}
	g.Due = ips.MustDate("2026-05-01")
	tg := Goal(c, g, Options{}).GetTarget()
	if len(tg) != 1 || tg[0].GetMeasure() != nil || tg[0].GetDue().GetDate() == nil {
		t.Errorf("goal with only a due date: target %v, want due date and no measure", tg)
	}
}

func TestCarePlanStatusFollowsClient(t *testing.T) {
	want := map[ips.ClientStatus]cpb.RequestStatusCode_Value{
		ips.ClientReferred: cpb.RequestStatusCode_DRAFT,
		ips.ClientActive:   cpb.RequestStatusCode_ACTIVE,
		ips.ClientOnHold:   cpb.RequestStatusCode_ON_HOLD,
		ips.ClientClosed:   cpb.RequestStatusCode_COMPLETED,
	}
	for st, w := range want {
		c := fixtureClient()
		c.Status = st
		if got := CarePlan(c, Options{}).GetStatus().GetValue(); got != w {
			t.Errorf("client %s: CarePlan.status %v, want %v", st, got, w)
		}
	}
	c := fixtureClient()
	c.Status, c.ClosedOn = "", ips.MustDate("2026-06-01")
	if got := CarePlan(c, Options{}).GetStatus().GetValue(); got != cpb.RequestStatusCode_COMPLETED {
		t.Errorf("client with closedOn and no status: CarePlan.status %v, want completed", got)
	}
}

func TestCarePlanLinksGoalsAndSupports(t *testing.T) {
	c, o := fixtureClient(), fixtureOptions()
	cp := CarePlan(c, o)
	if len(cp.GetGoal()) != len(c.Goals) {
		t.Fatalf("CarePlan.goal has %d references, want %d", len(cp.GetGoal()), len(c.Goals))
	}
	for i, g := range c.Goals {
		if got, want := referenceString(cp.GetGoal()[i]), o.GoalKey(c, g).FullURL(); got != want {
			t.Errorf("goal %d reference %s, want the Goal entry's fullUrl %s", i, got, want)
		}
	}
	if len(cp.GetActivity()) != len(c.Supports) {
		t.Fatalf("%d activities for %d supports", len(cp.GetActivity()), len(c.Supports))
	}
	d := cp.GetActivity()[1].GetDetail()
	if !hasCoding(d.GetCode(), SystemSupportType, string(ips.SupportBenefitsPlanning)) {
		t.Errorf("activity code %v, want benefits-planning from %s", d.GetCode(), SystemSupportType)
	}
	if got := referenceString(d.GetGoal()[0]); got != o.GoalKey(c, c.Goals[1]).FullURL() {
		t.Errorf("support s2 serves goal g2, activity refers to %s", got)
	}
	if len(cp.GetActivity()[2].GetDetail().GetGoal()) != 0 {
		t.Error("support without a goal got a goal reference")
	}
}

func TestNarrativeEscapesFreeText(t *testing.T) {
	c := fixtureClient()
	c.Goals[0].Description = `<script>alert("x")</script> & more`
	div := CarePlan(c, Options{}).GetText().GetDiv().GetValue()
	if strings.Contains(div, "<script>") || !strings.Contains(div, "&lt;script&gt;") {
		t.Errorf("narrative does not escape free text: %s", div)
	}
}

func TestJobComponents(t *testing.T) {
	c := fixtureClient()
	ended := JobObservation(c, c.Jobs[0], Options{})
	current := JobObservation(c, c.Jobs[1], Options{})
	for _, tc := range []struct {
		name        string
		job         *ips.Job
		wantCurrent bool
	}{{"ended", c.Jobs[0], false}, {"current", c.Jobs[1], true}} {
		o := JobObservation(c, tc.job, Options{})
		var got *bool
		for _, e := range o.GetExtension() {
			if e.GetUrl().GetValue() == ExtODHIsCurrentJob {
				v := e.GetValue().GetBoolean().GetValue()
				got = &v
			}
		}
		if got == nil || *got != tc.wantCurrent {
			t.Errorf("%s job: isCurrentJob %v, want %v", tc.name, got, tc.wantCurrent)
		}
	}
	count := func(obs []*obspb.Observation_Component, system, code string) int {
		n := 0
		for _, c := range obs {
			if hasCoding(c.GetCode(), system, code) {
				n++
			}
		}
		return n
	}
	if count(ended.GetComponent(), SystemIPSObservation, CodeJobEndReason) != 1 {
		t.Error("ended job has no end-reason component")
	}
	if count(current.GetComponent(), SystemIPSObservation, CodeJobEndReason) != 0 {
		t.Error("current job has an end-reason component")
	}
	if count(ended.GetComponent(), SystemLOINC, LOINCWorkDaysPerWeek) != 0 {
		t.Error("job without daysPerWeek has a work-days component")
	}
	for _, comp := range current.GetComponent() {
		if hasCoding(comp.GetCode(), SystemLOINC, LOINCWorkHoursPerDay) {
			if got := comp.GetValue().GetQuantity().GetValue().GetValue(); got != "4.5" {
				t.Errorf("22.5 hours over 5 days: hours per day %s, want 4.5", got)
			}
		}
	}
}

func TestEmploymentStatusPeriodRunsToNextSnapshot(t *testing.T) {
	c := fixtureClient()
	// Snapshots out of order in the input must not matter.
	c.Employment[0], c.Employment[2] = c.Employment[2], c.Employment[0]
	for _, s := range c.Employment {
		p := EmploymentStatusObservation(c, s, Options{}).GetEffective().GetPeriod()
		end := dateFromDateTime(p.GetEnd())
		want := nextRecord(c, s.Date)
		if end != want {
			t.Errorf("snapshot %s: period end %s, want %s", s.Date, end, want)
		}
	}
	last := EmploymentStatusObservation(c, ips.EmploymentSnapshot{Date: ips.MustDate("2026-03-02"), Status: ips.Employed}, Options{})
	if last.GetEffective().GetPeriod().GetEnd() != nil {
		t.Error("current status has a period end")
	}
}

func TestPRAPAREAnswer(t *testing.T) {
	c := fixtureClient()
	day := func(s string, st ips.EmploymentStatus) ips.EmploymentSnapshot {
		return ips.EmploymentSnapshot{Date: ips.MustDate(s), Status: st}
	}
	cases := []struct {
		snap ips.EmploymentSnapshot
		want string
	}{
		{day("2026-01-05", ips.Unemployed), PRAPAREUnemployed},
		{day("2026-01-05", ips.NotInLaborForce), PRAPARENotSeeking},
		{day("2026-01-30", ips.Employed), PRAPAREPartTime}, // 12 h at the grocery
		{day("2026-03-05", ips.Employed), PRAPAREPartTime}, // 22.5 h at the bakery
	}
	for _, tc := range cases {
		if got := PRAPAREAnswer(c, tc.snap); got != tc.want {
			t.Errorf("%s %s: %s, want %s", tc.snap.Status, tc.snap.Date, got, tc.want)
		}
	}
	c.Jobs = append(c.Jobs, &ips.Job{ID: "j3", Employer: "Library", Title: "Shelver", Start: ips.MustDate("2026-03-01"), HoursPerWeek: 15, HourlyWage: ips.Money{Value: 16, Currency: "USD"}, Competitive: true})
	if got := PRAPAREAnswer(c, day("2026-03-05", ips.Employed)); got != PRAPAREFullTime {
		t.Errorf("22.5 + 15 hours across two jobs: %s, want full time %s", got, PRAPAREFullTime)
	}
}

func TestPlanNoteReadsLikeAPlan(t *testing.T) {
	c := fixtureClient()
	note := PlanNote(c, fixtureOptions())
	text := string(note.GetContent()[0].GetAttachment().GetData().GetValue())
	for _, want := range []string{
		"I want to work mornings at a bakery", // the goal in the client's words
		"Baker's assistant at Sunrise Bakery", // current job
		"Follow-along support on the job",     // next step
		"Career profile",                      // support given
		"Disclosure to employers: partial",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("chart note lacks %q:\n%s", want, text)
		}
	}
	current, past, _ := strings.Cut(text, "PAST JOBS")
	if strings.Contains(current, "Stock clerk") || !strings.Contains(past, "Stock clerk") {
		t.Errorf("chart note lists the ended job as current work, or not under past jobs:\n%s", text)
	}
	if strings.Contains(text, "Transportation") {
		t.Error("chart note lists a cancelled support")
	}
	if note.GetDate() == nil {
		t.Error("note mapped with Options.Now has no date")
	}
	if PlanNote(c, Options{}).GetDate() != nil {
		t.Error("note mapped without a clock got a date (mappings must not read the clock)")
	}
}

func TestIdentityIsStableAndScoped(t *testing.T) {
	c := fixtureClient()
	a := Options{Program: "a"}
	// Pinned: EHR ledgers and earlier Bundles hold these; a change to the
	// namespace or the name format would orphan every record already synced.
	if got, want := a.GoalKey(c, c.Goals[0]).FullURL(), "urn:uuid:03b738d4-2282-5c41-b3d6-a83ed63bc36c"; got != want {
		t.Fatalf("fullUrl of goal c-0001/g1 in program a is %s, was %s in every earlier release", got, want)
	}
	b := Options{Program: "b"}
	if a.GoalKey(c, c.Goals[0]).FullURL() == b.GoalKey(c, c.Goals[0]).FullURL() {
		t.Error("two programs' goals with the same ids share a fullUrl")
	}
	if a.GoalKey(c, c.Goals[0]).FullURL() == a.JobKey(c, &ips.Job{ID: "g1"}).FullURL() {
		t.Error("a goal and a job with the same id share a fullUrl")
	}
	k := a.GoalKey(c, c.Goals[0])
	u := k.ConditionalURL("Goal")
	q, err := url.ParseQuery(strings.TrimPrefix(u, "Goal?"))
	if err != nil || q.Get("identifier") != k.System()+"|"+k.Value() {
		t.Errorf("conditional URL %s does not search identifier=%s|%s", u, k.System(), k.Value())
	}
	back, ok := ParseKey(k.System(), k.Value())
	if !ok || back != k {
		t.Errorf("ParseKey(%s, %s) = %+v, %v; want %+v", k.System(), k.Value(), back, ok, k)
	}
}

func TestParseKeyRejectsForeignIdentifiers(t *testing.T) {
	for _, tc := range []struct{ system, value string }{
		{"urn:oid:1.2.3", "c1/g1"},
		{"urn:ipsfhir:p:goal", "c1"},       // goal needs client/record
		{"urn:ipsfhir:p:plan", "c1/x"},     // plan is per client
		{"urn:ipsfhir:p:unknown", "c1/g1"}, // unknown kind
		{"urn:ipsfhir::goal", "c1/g1"},     // no program
		{"urn:ipsfhir:p:goal", "c1/g1/x"},
	} {
		if k, ok := ParseKey(tc.system, tc.value); ok {
			t.Errorf("ParseKey(%q, %q) = %+v, want rejection", tc.system, tc.value, k)
		}
	}
}

func TestTransactionBundleIsConditional(t *testing.T) {
	cl := &ips.Caseload{Program: &ips.Program{ID: "riverside-ips"}, Clients: []*ips.Client{fixtureClient()}}
	b, err := CaseloadBundle(cl, Options{}, Transaction)
	if err != nil {
		t.Fatal(err)
	}
	sawPlan := false
	for i, e := range b.GetEntry() {
		req := e.GetRequest()
		if req.GetMethod().GetValue() != cpb.HTTPVerbCode_PUT || !strings.Contains(req.GetUrl().GetValue(), "?identifier=urn%3Aipsfhir%3Ariverside-ips%3A") {
			t.Errorf("entry %d: %v %s, want a conditional PUT by ipsfhir identifier", i, req.GetMethod().GetValue(), req.GetUrl().GetValue())
		}
		if e.GetResource().GetCarePlan() != nil {
			sawPlan = true
		}
		if e.GetResource().GetGoal() != nil && sawPlan {
			t.Errorf("entry %d: a Goal after the CarePlan that references it", i)
		}
	}
	if _, err := CaseloadBundle(cl, Options{}, "batch"); err == nil {
		t.Error("unsupported bundle type accepted")
	}
}

func TestMappingDoesNotMutateInput(t *testing.T) {
	cl := &ips.Caseload{Clients: []*ips.Client{fixtureClient()}}
	before, _ := json.Marshal(cl)
	for _, bt := range []BundleType{Collection, Transaction} {
		if _, err := CaseloadBundle(cl, fixtureOptions(), bt); err != nil {
			t.Fatal(err)
		}
	}
	_ = RenderPlan(cl.Clients[0], fixtureOptions())
	_ = InFHIR(cl)
	after, _ := json.Marshal(cl)
	if string(before) != string(after) {
		t.Errorf("mapping changed its input:\nbefore %s\nafter  %s", before, after)
	}
}

func TestSecurityLabels(t *testing.T) {
	c := fixtureClient()
	sec := Goal(c, c.Goals[0], Options{}).GetMeta().GetSecurity()
	if len(sec) != 2 || sec[0].GetCode().GetValue() != "R" || sec[1].GetCode().GetValue() != "PSY" {
		t.Errorf("default labels %v, want R and PSY", sec)
	}
	if n := len(Goal(c, c.Goals[0], Options{Security: []ips.Coding{}}).GetMeta().GetSecurity()); n != 0 {
		t.Errorf("empty Security option still gave %d labels", n)
	}
}

func TestPlanNoteShowsRecentSupportsAndATally(t *testing.T) {
	c := fixtureClient()
	c.Supports = nil
	for i := range 10 {
		typ := ips.SupportJobDevelopment
		if i%3 == 0 {
			typ = ips.SupportEmployerContact
		}
		c.Supports = append(c.Supports, &ips.Support{ID: fmt.Sprintf("s%d", i), Type: typ, Status: ips.SupportCompleted,
			Date: ips.MustDate("2026-01-01").AddDays(i), Note: fmt.Sprintf("visit number %d", i)})
	}
	text := RenderPlan(c, Options{})
	if !strings.Contains(text, "SUPPORTS GIVEN (the 6 most recent of 10)") {
		t.Errorf("note does not say how many supports it shows:\n%s", text)
	}
	if !strings.Contains(text, "visit number 9") || strings.Contains(text, "visit number 3") {
		t.Errorf("note should show the newest six (9 … 4), not older ones:\n%s", text)
	}
	if !strings.Contains(text, "in all: job search and job development 6, employer contact 4") {
		t.Errorf("note lacks the tally by type:\n%s", text)
	}
}

func TestLiteralReferencesWhenKnown(t *testing.T) {
	c, o := fixtureClient(), fixtureOptions()
	o.Reference = func(k Key) string {
		if k == o.GoalKey(c, c.Goals[0]) {
			return "Goal/ehr-77"
		}
		return ""
	}
	cp := CarePlan(c, o)
	if got := referenceString(cp.GetGoal()[0]); got != "Goal/ehr-77" {
		t.Errorf("known goal referenced as %s, want Goal/ehr-77", got)
	}
	if got := referenceString(cp.GetGoal()[1]); got != o.GoalKey(c, c.Goals[1]).FullURL() {
		t.Errorf("unknown goal referenced as %s, want its fullUrl", got)
	}
	// The reverse mapping resolves the literal reference back to the goal.
	_, back, err := PlanFromFHIR(cp, func(ref string) (string, bool) {
		return map[string]string{"Goal/ehr-77": "g1", o.GoalKey(c, c.Goals[1]).FullURL(): "g2"}[ref], true
	})
	if err != nil || back.Supports[0].Goal != "g1" {
		t.Errorf("read back: %v, support s1 goal %q", err, back.Supports[0].Goal)
	}
}

func TestMarshalContainedResourceIsPlainFHIR(t *testing.T) {
	c := fixtureClient()
	for _, e := range ClientEntries(c, Options{}) {
		for _, marshal := range []func(proto.Message) ([]byte, error){MarshalCompact, MarshalPretty} {
			b, err := marshal(e.Resource)
			if err != nil {
				t.Fatal(err)
			}
			var m map[string]any
			if err := json.Unmarshal(b, &m); err != nil || m["resourceType"] != e.ResourceType {
				t.Errorf("%s marshals with resourceType %v, want %s", e.ResourceType, m["resourceType"], e.ResourceType)
			}
		}
	}
}
