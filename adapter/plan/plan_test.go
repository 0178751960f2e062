package plan

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/plans/*.json")

func statement(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "testdata", "ehr-capabilities", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestGoldenPlans pins the plans for the EHRs whose statements we hold. A
// change here changes what ipsfhir writes into real charts: review the diff.
func TestGoldenPlans(t *testing.T) {
	for name, file := range map[string]string{
		"epic":   "epic-r4-sandbox-2026-07.json",
		"oracle": "oracle-health-millennium-r4-2026-08.json",
	} {
		t.Run(name, func(t *testing.T) {
			p, err := Build(statement(t, file), Options{})
			if err != nil {
				t.Fatal(err)
			}
			got, err := json.MarshalIndent(p, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, '\n')
			path := filepath.Join("..", "..", "testdata", "plans", name+".json")
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
				t.Fatalf("%v (run go test ./adapter/plan -update)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("plan for %s differs from %s; review and run go test ./adapter/plan -update\n%s", name, path, got)
			}
		})
	}
}

func TestEpicAndOracleRefuseGoalAndCarePlan(t *testing.T) {
	for _, file := range []string{"epic-r4-sandbox-2026-07.json", "oracle-health-millennium-r4-2026-08.json"} {
		p, err := Build(statement(t, file), Options{})
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range []Concept{Goal, IPSPlan} {
			if got := p.Concept(c); got.Path != InNote {
				t.Errorf("%s: %s path %s, want chart-note", file, c, got.Path)
			}
		}
		if got := p.Concept(ChartNote); got.Path != Native || got.ResourceType != "DocumentReference" {
			t.Errorf("%s: chart note %+v, want written as DocumentReference", file, got)
		}
		if p.Allows("Goal", "create") || p.Allows("CarePlan", "update") {
			t.Errorf("%s: plan allows a write the statement does not declare", file)
		}
		// Both take Observation writes only under site-configured codes;
		// with none mapped, employment data goes into the note.
		if !p.SiteCodedObservations {
			t.Errorf("%s: not recognised as taking Observations only under site codes", file)
		}
		for _, c := range []Concept{JobOutcome, EmploymentStatus} {
			if got := p.Concept(c); got.Path != InNote || !strings.Contains(got.Change, "connections[].codes."+string(c)) {
				t.Errorf("%s: %s with no site code: %+v, want the note and how to map a code", file, c, got)
			}
		}
		coded, err := Build(statement(t, file), Options{SiteCodes: map[Concept]bool{EmploymentStatus: true}})
		if err != nil {
			t.Fatal(err)
		}
		if coded.Concept(EmploymentStatus).Path != Native || coded.Concept(JobOutcome).Path != InNote {
			t.Errorf("%s: with a site code for employment status only: status %s, jobs %s; want native, chart-note",
				file, coded.Concept(EmploymentStatus).Path, coded.Concept(JobOutcome).Path)
		}
	}
	epic, _ := Build(statement(t, "epic-r4-sandbox-2026-07.json"), Options{})
	if epic.Bundles != "none" {
		t.Errorf("Epic declares no batch or transaction, plan says %s", epic.Bundles)
	}
	if rp := epic.Type("DocumentReference"); rp.Detection != LastUpdated || rp.LastUpdatedParam != "_lastupdated" {
		t.Errorf("Epic DocumentReference: %s via %q, want _lastUpdated in Epic's spelling _lastupdated", rp.Detection, rp.LastUpdatedParam)
	}
	if rp := epic.Type("Goal"); rp.Detection != FullReconcile {
		t.Errorf("Epic Goal has no _lastUpdated: detection %s, want full reconcile", rp.Detection)
	}
	oracle, _ := Build(statement(t, "oracle-health-millennium-r4-2026-08.json"), Options{})
	if oracle.Bundles != "batch" {
		t.Errorf("Oracle declares batch, plan says %s", oracle.Bundles)
	}
	if rp := oracle.Type("Observation"); rp.Idempotency != SearchByPatient {
		t.Errorf("Oracle Observation has no identifier search: idempotency %s, want %s", rp.Idempotency, SearchByPatient)
	}
}

// A fully capable server, such as the peer in full mode or HAPI.
const fullStatement = `{"resourceType":"CapabilityStatement","fhirVersion":"4.0.1","status":"active","kind":"instance",
 "rest":[{"mode":"server","interaction":[{"code":"transaction"},{"code":"batch"}],"resource":[
  %s
 ]}]}`

func fullResource(t string) string {
	return `{"type":"` + t + `","versioning":"versioned-update","conditionalCreate":true,"conditionalUpdate":true,
	 "interaction":[{"code":"read"},{"code":"create"},{"code":"update"},{"code":"search-type"}],
	 "searchParam":[{"name":"identifier"},{"name":"patient"},{"name":"_lastUpdated"}]}`
}

func full(types ...string) []byte {
	var rs []string
	for _, t := range types {
		rs = append(rs, fullResource(t))
	}
	return []byte(strings.Replace(fullStatement, "%s", strings.Join(rs, ","), 1))
}

func TestFullyWritableServer(t *testing.T) {
	p, err := Build(full("Goal", "CarePlan", "Observation", "DocumentReference", "ServiceRequest"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []Concept{Goal, IPSPlan, JobOutcome, EmploymentStatus} {
		if p.Concept(c).Path != Native {
			t.Errorf("%s: %s, want native", c, p.Concept(c).Path)
		}
	}
	if p.Concept(ChartNote).Path != NoPath {
		t.Error("chart note written although every concept is native")
	}
	if rp := p.Type("Goal"); rp.Idempotency != ConditionalUpdate || rp.Concurrency != IfMatch || rp.Detection != LastUpdated {
		t.Errorf("Goal plan %+v", rp)
	}
	if p.Bundles != "transaction" || len(p.Warnings) != 0 {
		t.Errorf("bundles %s, warnings %v", p.Bundles, p.Warnings)
	}
}

func TestReadOnlyConnectionSaysSo(t *testing.T) {
	ro := []byte(`{"resourceType":"CapabilityStatement","fhirVersion":"4.0.1","rest":[{"mode":"server","resource":[
	 {"type":"Goal","interaction":[{"code":"read"},{"code":"search-type"}],"searchParam":[{"name":"patient"}]}]}]}`)
	p, err := Build(ro, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if p.Writes() || len(p.Warnings) == 0 || !strings.Contains(p.Warnings[0], "read-only") {
		t.Errorf("read-only server: writes %v, warnings %v", p.Writes(), p.Warnings)
	}
	for _, c := range []Concept{Goal, IPSPlan, JobOutcome, EmploymentStatus, ChartNote, Referral} {
		if got := p.Concept(c).Path; got != NoPath {
			t.Errorf("%s: %s, want none", c, got)
		}
	}
}

// TestGoalWithoutConditionalCreateIsWarned: where goals are updated
// conditionally with If-Match but cannot be created conditionally, the
// plan says what a goal's first write does (syncer's sentOnce).
func TestGoalWithoutConditionalCreateIsWarned(t *testing.T) {
	st := strings.Replace(string(full("Goal", "CarePlan")), `"conditionalCreate":true`, `"conditionalCreate":false`, 1)
	p, err := Build([]byte(st), Options{})
	if err != nil {
		t.Fatal(err)
	}
	rp := p.Type("Goal")
	if rp.ConditionalCreate || rp.Idempotency != ConditionalUpdate || rp.Concurrency != IfMatch {
		t.Fatalf("Goal plan %+v", rp)
	}
	if w := strings.Join(p.Warnings, " "); !strings.Contains(w, "Goal cannot be created conditionally") || !strings.Contains(w, "sent once") {
		t.Errorf("warnings %v; want the goal's first write explained", p.Warnings)
	}
	if p.Type("CarePlan").ConditionalCreate != true {
		t.Error("CarePlan lost its conditional create")
	}
}

func TestLedgerOnlyIsWarned(t *testing.T) {
	st := []byte(`{"resourceType":"CapabilityStatement","fhirVersion":"4.0.1","rest":[{"mode":"server","resource":[
	 {"type":"Observation","interaction":[{"code":"create"},{"code":"update"}]}]}]}`)
	p, err := Build(st, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if p.Type("Observation").Idempotency != LedgerOnly || len(p.Warnings) == 0 || !strings.Contains(strings.Join(p.Warnings, " "), "duplicated") {
		t.Errorf("idempotency %s, warnings %v", p.Type("Observation").Idempotency, p.Warnings)
	}
}

func TestOverrides(t *testing.T) {
	all := full("Goal", "CarePlan", "Observation", "DocumentReference", "ServiceRequest")
	p, err := Build(all, Options{Overrides: map[Concept]Path{Goal: InNote, EmploymentStatus: NoPath, Referral: NoPath}})
	if err != nil {
		t.Fatal(err)
	}
	if g := p.Concept(Goal); g.Path != InNote || !g.Overridden {
		t.Errorf("forced note: %+v", g)
	}
	if p.Concept(ChartNote).Path != Native {
		t.Error("a concept forced into the note, but the note is not written")
	}
	if p.Concept(EmploymentStatus).Path != NoPath || p.Concept(Referral).Path != NoPath {
		t.Error("disable overrides not applied")
	}

	epic := statement(t, "epic-r4-sandbox-2026-07.json")
	for name, o := range map[string]map[Concept]Path{
		"native goal on Epic":       {Goal: Native},
		"note off while needed":     {ChartNote: NoPath},
		"unknown concept":           {"favourite-colour": NoPath},
		"referral written natively": {Referral: Native},
		"jobs native, no site code": {JobOutcome: Native},
	} {
		if _, err := Build(epic, Options{Overrides: o}); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := Build(epic, Options{Overrides: map[Concept]Path{Goal: NoPath, IPSPlan: NoPath, JobOutcome: NoPath, EmploymentStatus: NoPath, ChartNote: NoPath}}); err != nil {
		t.Errorf("turning the note off with nothing falling back to it: %v", err)
	}
}

// TestSiteCodedObservations: the administrator can say a server restricts
// Observation codes (or does not), whatever its name.
func TestSiteCodedObservations(t *testing.T) {
	all := full("Goal", "CarePlan", "Observation", "DocumentReference")
	yes, no := true, false
	p, err := Build(all, Options{SiteCodedObservations: &yes})
	if err != nil {
		t.Fatal(err)
	}
	if p.Concept(JobOutcome).Path != InNote || p.Concept(ChartNote).Path != Native {
		t.Errorf("restricted, no code: jobs %s, note %s; want the note written", p.Concept(JobOutcome).Path, p.Concept(ChartNote).Path)
	}
	p, err = Build(statement(t, "epic-r4-sandbox-2026-07.json"), Options{SiteCodedObservations: &no})
	if err != nil {
		t.Fatal(err)
	}
	if p.Concept(JobOutcome).Path != Native {
		t.Errorf("Epic declared unrestricted by the administrator: jobs %s, want native", p.Concept(JobOutcome).Path)
	}
	// Only Observation rows: no DocumentReference at all.
	p, err = Build(full("Observation"), Options{SiteCodedObservations: &yes})
	if err != nil {
		t.Fatal(err)
	}
	if got := p.Concept(EmploymentStatus); got.Path != NoPath || !strings.Contains(got.Why, "no site code") {
		t.Errorf("restricted, no code, no note: %+v; want none with the reason", got)
	}
}

func TestBuildRefusesWhatIsNotAnR4Statement(t *testing.T) {
	for name, doc := range map[string]string{
		"not JSON":       `{`,
		"other resource": `{"resourceType":"Patient"}`,
		"STU3":           `{"resourceType":"CapabilityStatement","fhirVersion":"3.0.2","rest":[{"mode":"server"}]}`,
		"client only":    `{"resourceType":"CapabilityStatement","fhirVersion":"4.0.1","rest":[{"mode":"client"}]}`,
	} {
		if _, err := Build([]byte(doc), Options{}); !errors.Is(err, ErrNotCapabilityStatement) {
			t.Errorf("%s: %v, want ErrNotCapabilityStatement", name, err)
		}
	}
}

// TestTreatmentPlanLinkAndTeam: the link to the treatment plan needs a
// CarePlan search by patient and something that carries it; the specialist
// and the care team are written only where Practitioner and CareTeam are
// writable; each can be turned off, and nothing else.
func TestTreatmentPlanLinkAndTeam(t *testing.T) {
	p, err := Build(full("Goal", "CarePlan", "Observation", "DocumentReference", "Practitioner", "CareTeam"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got := p.Concept(TreatmentPlan); got.Path != NoPath || !strings.Contains(got.Why, "Patient cannot be searched") {
		t.Errorf("treatment plan without Patient search: %+v", got)
	}
	p, err = Build(full("Patient", "Goal", "CarePlan", "Observation", "DocumentReference", "Practitioner", "CareTeam"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got := p.Concept(TreatmentPlan); got.Path != ReadOnly || got.ResourceType != "CarePlan" || !strings.Contains(got.Why, "partOf") {
		t.Errorf("treatment plan on a writable server: %+v", got)
	}
	if p.Concept(Specialist).Path != Native || p.Concept(CareTeam).Path != Native || p.Concept(CareTeam).ResourceType != "CareTeam" {
		t.Errorf("specialist %+v, care team %+v; want both written", p.Concept(Specialist), p.Concept(CareTeam))
	}

	// No CarePlan search by patient: no link, and the plan says why.
	noSearch := strings.Replace(string(full("Patient", "Goal", "DocumentReference")), `]}]}`, `,{"type":"CarePlan","interaction":[{"code":"read"}]}]}]}`, 1)
	p, err = Build([]byte(noSearch), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got := p.Concept(TreatmentPlan); got.Path != NoPath || !strings.Contains(got.Why, "cannot be searched by patient") {
		t.Errorf("treatment plan without CarePlan search: %+v", got)
	}
	if got := p.Concept(Specialist); got.Path != NoPath || !strings.Contains(got.Why, "as text") {
		t.Errorf("specialist without Practitioner writes: %+v", got)
	}

	p, err = Build(full("Goal", "CarePlan", "Practitioner", "CareTeam"), Options{Overrides: map[Concept]Path{TreatmentPlan: NoPath, CareTeam: NoPath}})
	if err != nil {
		t.Fatal(err)
	}
	if p.Concept(TreatmentPlan).Path != NoPath || p.Concept(CareTeam).Path != NoPath || p.Concept(Specialist).Path != Native {
		t.Errorf("overrides to none: link %s, team %s, specialist %s", p.Concept(TreatmentPlan).Path, p.Concept(CareTeam).Path, p.Concept(Specialist).Path)
	}
	for _, o := range []map[Concept]Path{{TreatmentPlan: Native}, {Specialist: InNote}, {CareTeam: Native}} {
		if _, err := Build(full("Goal", "CarePlan"), Options{Overrides: o}); err == nil {
			t.Errorf("override %v accepted; only none is possible", o)
		}
	}
}

// TestAddingGoalsToTheTreatmentPlan: asked for, the goals are added to the
// treatment plan only where goals are native and CarePlan is read and
// updated with If-Match; the plan says which.
func TestAddingGoalsToTheTreatmentPlan(t *testing.T) {
	o := Options{AddGoalsToTreatmentPlan: true}
	p, err := Build(full("Patient", "Goal", "CarePlan"), o)
	if err != nil {
		t.Fatal(err)
	}
	if !p.AddsGoalsToTreatmentPlan() || !strings.Contains(p.Concept(TreatmentPlan).Why, "goals are added to it") {
		t.Errorf("writable server: adds %v: %s", p.AddsGoalsToTreatmentPlan(), p.Concept(TreatmentPlan).Why)
	}
	if p, _ := Build(full("Patient", "Goal", "CarePlan"), Options{}); p.AddsGoalsToTreatmentPlan() {
		t.Error("goals added without being asked")
	}
	p, err = Build(statement(t, "epic-r4-sandbox-2026-07.json"), o)
	if err != nil {
		t.Fatal(err)
	}
	if p.AddsGoalsToTreatmentPlan() || !strings.Contains(p.Concept(TreatmentPlan).Why, "goals cannot be added") {
		t.Errorf("Epic: adds %v: %s", p.AddsGoalsToTreatmentPlan(), p.Concept(TreatmentPlan).Why)
	}
	unversioned := strings.Replace(string(full("Patient", "Goal", "CarePlan")), `"versioning":"versioned-update",`, ``, -1)
	if p, err := Build([]byte(unversioned), o); err != nil || p.AddsGoalsToTreatmentPlan() {
		t.Errorf("without versioned updates: adds %v, %v", p.AddsGoalsToTreatmentPlan(), err)
	}
}

// TestProvenanceWrittenAlongside: a Provenance goes with each write only
// where the EHR takes Provenance create and a retried one can be found
// again (by its identity tag, or by the written resource); best, a
// conditional create by tag, which is what lets it ride in the client's
// transaction. It is never a concept, and never written by a read-only
// connection.
func TestProvenanceWrittenAlongside(t *testing.T) {
	provenance := func(conditionalCreate bool, interactions, params string) string {
		return fmt.Sprintf(`{"type":"Provenance","conditionalCreate":%v,"interaction":[%s],"searchParam":[%s]}`, conditionalCreate, interactions, params)
	}
	build := func(t *testing.T, st []byte) *Plan {
		t.Helper()
		p, err := Build(st, Options{})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	withTypes := func(rs ...string) []byte {
		return []byte(strings.Replace(fullStatement, "%s", strings.Join(rs, ","), 1))
	}
	const createSearch = `{"code":"create"},{"code":"search-type"}`
	for _, tc := range []struct {
		name    string
		st      []byte
		written bool
		idem    Idempotency
		why     string
	}{
		{"conditional create by tag", withTypes(fullResource("Goal"), provenance(true, createSearch, `{"name":"_tag"},{"name":"target"}`)), true, ConditionalCreate, "conditional create by its identity tag"},
		{"search by tag", withTypes(fullResource("Goal"), provenance(false, createSearch, `{"name":"_tag"},{"name":"target"}`)), true, SearchByTag, "searched for by its identity tag"},
		{"conditional create without _tag", withTypes(fullResource("Goal"), provenance(true, createSearch, `{"name":"target"}`)), true, SearchByTarget, "searched for by the written resource"},
		{"create, no search", withTypes(fullResource("Goal"), provenance(true, `{"code":"create"}`, `{"name":"_tag"},{"name":"target"}`)), false, "", "might be duplicated"},
		{"read only", withTypes(fullResource("Goal"), provenance(false, `{"code":"read"},{"code":"search-type"}`, `{"name":"target"}`)), false, "", "declares read, search-type, not create"},
		{"not listed", withTypes(fullResource("Goal")), false, "", "does not list Provenance"},
		{"nothing written", withTypes(`{"type":"Goal","interaction":[{"code":"read"}]}`, provenance(true, createSearch, `{"name":"_tag"}`)), false, "", "nothing is written"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := build(t, tc.st)
			if p.WritesProvenance() != tc.written || !strings.Contains(p.ProvenanceWhy(), tc.why) {
				t.Errorf("writes Provenance %v (%s), want %v and a why with %q", p.WritesProvenance(), p.ProvenanceWhy(), tc.written, tc.why)
			}
			if rp := p.Type("Provenance"); rp != nil {
				if rp.Idempotency != tc.idem || rp.Concurrency != "" || rp.ConditionalCreate != (tc.idem == ConditionalCreate) {
					t.Errorf("Provenance plan %+v, want idempotency %q, no concurrency", rp, tc.idem)
				}
			}
			if slices.ContainsFunc(p.Concepts, func(c ConceptPlan) bool { return c.ResourceType == "Provenance" }) {
				t.Error("Provenance became a concept")
			}
		})
	}
	// Epic declares Provenance read only; Oracle Health create and search
	// by target (no _tag, no conditional create).
	if p := build(t, statement(t, "epic-r4-sandbox-2026-07.json")); p.WritesProvenance() {
		t.Errorf("Epic: Provenance written (%s)", p.ProvenanceWhy())
	}
	if p := build(t, statement(t, "oracle-health-millennium-r4-2026-08.json")); !p.WritesProvenance() || p.Type("Provenance").Idempotency != SearchByTarget {
		t.Errorf("Oracle Health: writes Provenance %v, %+v; want searched for by target", p.WritesProvenance(), p.Type("Provenance"))
	}
}

// TestReferralLoopPaths: referrals are answered on the program's own Task
// where Task is created and updated; on the referrer's Task where Task is
// only searched by focus and updated (Epic); not at all where the Task
// cannot be found by its focus, since the right one could not be told.
func TestReferralLoopPaths(t *testing.T) {
	task := func(interactions, params string) []byte {
		st := string(full("Goal", "ServiceRequest"))
		return []byte(strings.Replace(st, fullResource("Goal"), fullResource("Goal")+`,{"type":"Task","interaction":[`+interactions+`],"searchParam":[`+params+`]}`, 1))
	}
	for _, c := range []struct {
		name, interactions, params string
		path                       Path
		referrers                  bool
	}{
		{"own Task", `{"code":"create"},{"code":"update"},{"code":"search-type"}`, `{"name":"focus"}`, Native, false},
		{"referrer's Task", `{"code":"read"},{"code":"update"},{"code":"search-type"}`, `{"name":"focus"},{"name":"patient"}`, Native, true},
		{"no focus search", `{"code":"read"},{"code":"update"},{"code":"search-type"}`, `{"name":"patient"}`, NoPath, false},
		{"no update", `{"code":"read"},{"code":"search-type"}`, `{"name":"focus"}`, NoPath, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			p, err := Build(task(c.interactions, c.params), Options{})
			if err != nil {
				t.Fatal(err)
			}
			if cp := p.Concept(ReferralLoop); cp.Path != c.path || p.AnswersReferrerTasks() != c.referrers || cp.Why == "" {
				t.Errorf("referral-loop %+v, answers referrers' Tasks %v; want %s, %v", cp, p.AnswersReferrerTasks(), c.path, c.referrers)
			}
		})
	}
	// Switched off, the referrer's Tasks are left alone.
	p, err := Build(task(`{"code":"read"},{"code":"update"},{"code":"search-type"}`, `{"name":"focus"}`), Options{Overrides: map[Concept]Path{ReferralLoop: NoPath}})
	if err != nil {
		t.Fatal(err)
	}
	if p.AnswersReferrerTasks() {
		t.Error("referral-loop none still answers the referrers' Tasks")
	}
}
