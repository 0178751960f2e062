package syncer

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ipsfhir/ipsfhir/adapter/ehr"
	"github.com/ipsfhir/ipsfhir/adapter/plan"
	"github.com/ipsfhir/ipsfhir/adapter/store"
	"github.com/ipsfhir/ipsfhir/adapter/store/postgres"
	"github.com/ipsfhir/ipsfhir/adapter/store/sqlite"
	"github.com/ipsfhir/ipsfhir/adapter/store/storetest"
	"github.com/ipsfhir/ipsfhir/adapter/telemetry/telemetrytest"
	"github.com/ipsfhir/ipsfhir/conformance/peer"
	"github.com/ipsfhir/ipsfhir/ips"
	"github.com/ipsfhir/ipsfhir/ips/synth"
	"github.com/ipsfhir/ipsfhir/mappings"
)

// rig is a store, a peer FHIR server acting as the clinic EHR, and an engine
// connected to it.
type rig struct {
	store  store.Store
	client *ehr.Client
	engine *Engine
	conn   *Connection
	cl     *ips.Caseload
	// peerLog is the peer's access log: one line per request with the
	// interaction and status, never bodies or queries.
	peerLog *telemetrytest.Buffer
}

// refused returns the peer's log lines of requests it answered status.
func (r *rig) refused(status string) []string {
	var out []string
	for _, l := range strings.Split(r.peerLog.String(), "\n") {
		if f := strings.Fields(l); len(f) >= 5 && f[0] == "peer:" && f[4] == status {
			out = append(out, l)
		}
	}
	return out
}

// onPostgres reports whether t runs under TestOnPostgres, which runs the
// main cases on the PostgreSQL store (IPSFHIR_TEST_POSTGRES_DSN); the rest
// run on SQLite. Tests run in parallel, so the choice is the test's name,
// not a variable.
func onPostgres(t *testing.T) bool { return strings.HasPrefix(t.Name(), "TestOnPostgres/") }

func openTestStore(t *testing.T) store.Store {
	t.Helper()
	ctx := t.Context()
	if onPostgres(t) {
		st, err := postgres.Open(ctx, storetest.PostgresDSN(t))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		return st
	}
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "ips.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// TestOnPostgres runs the main integration cases with the PostgreSQL store.
func TestOnPostgres(t *testing.T) {
	t.Parallel()
	storetest.PostgresServer(t) // skips without a server
	t.Run("FullSync", TestFullSyncWritesEachRecordOnceThenNothing)
	t.Run("EpicMode", TestEpicModeWritesOnlyWhatEpicDeclares)
	t.Run("ClinicianChange", TestClinicianGoalChangeComesBackAndIsNotEchoed)
	t.Run("Conflict", TestBothSidesChangedIsAConflictWithTheConfiguredWinner)
	t.Run("Referral", TestReferralMakesAReferredClientOnce)
	t.Run("TreatmentPlan", TestIPSPlanIsPartOfTheTreatmentPlan)
}

// rigClients is how many clients a rig's caseload holds: with synth's
// EveryValue, enough for every value of every enumeration of the model
// (every client, goal, support and employment status, job end reason and
// disclosure choice, clients with several jobs), and few enough that the
// package's tests, each pushing its caseload through the peer under -race,
// fit in CI (30, the sample's size, took about three times the CPU).
const rigClients = 8

// rigCaseload is a rig's caseload: rigClients clients of the sample's seed
// with every value used, in the sample's program, and one more client who
// has not consented to EHR sharing (the push must skip them), added so
// that none of the values the others cover is lost with them.
func rigCaseload() *ips.Caseload {
	cl := synth.GenerateWithOptions(rand.New(rand.NewPCG(synth.SampleSeed, synth.SampleSeed)), rigClients, synth.Options{EveryValue: true})
	cl.Program = synth.RiversideProgram()
	extra := synth.Generate(rand.New(rand.NewPCG(synth.SampleSeed+1, synth.SampleSeed+1)), 1).Clients[0]
	extra.ID = fmt.Sprintf("c%03d", len(cl.Clients)+1)
	for _, c := range cl.Clients {
		if c.Patient == extra.Patient {
			panic("rigCaseload: the extra client's MRN is taken; change its seed")
		}
	}
	extra.Consent = &ips.Consent{EHR: new(false)}
	cl.Clients = append(cl.Clients, extra)
	return cl
}

func newRig(t *testing.T, capability string, edit ...func(*ips.Caseload)) *rig {
	t.Helper()
	return newRigWith(t, peer.Options{Capability: capability}, edit...)
}

// newRigWith is newRig with the peer started as po says.
func newRigWith(t *testing.T, po peer.Options, edit ...func(*ips.Caseload)) *rig {
	t.Helper()
	ctx := t.Context()
	peerLog := &telemetrytest.Buffer{}
	po.Stderr = peerLog
	po.NoVersionHeaders = po.NoVersionHeaders || onPeerWithoutVersions(t)
	srv := peer.StartForTest(t, po)
	c, err := ehr.New(ehr.Options{BaseURL: srv.BaseURL, Connection: "clinic"})
	if err != nil {
		t.Fatal(err)
	}
	st := openTestStore(t)
	meta, err := c.Metadata(ctx)
	if err != nil {
		t.Fatal(err)
	}
	p, err := plan.Build(meta, plan.Options{})
	if err != nil {
		t.Fatal(err)
	}
	cl := rigCaseload()
	for _, f := range edit {
		f(cl)
	}
	// Retry: an item that failed is not due again within the test, however
	// long a pass takes on a loaded machine (the default's 24 to 36 s is
	// measured from the engine's clock, which tests freeze, and the store's
	// lease compares it with the real time); tests make items due with a
	// save (makeDue) when they want the retry.
	conn := &Connection{Name: "clinic", Plan: p, EHR: c, Mapping: mappings.Options{Program: cl.ProgramID()}, ConsentDefault: true,
		Retry: RetrySchedule{Initial: time.Hour, Max: time.Hour}}
	r := &rig{store: st, client: c, conn: conn, cl: cl, peerLog: peerLog,
		engine: &Engine{Store: st, Connections: []*Connection{conn}, Owner: "test-worker", Lease: time.Minute, MaxAttempts: 3, Logger: slog.New(slog.NewTextHandler(t.Output(), nil))}}
	// The clinic EHR knows its patients; the adapter finds them by MRN.
	for _, cli := range cl.Clients {
		body := fmt.Sprintf(`{"resourceType":"Patient","identifier":[{"system":%q,"value":%q}]}`, cli.Patient.System, cli.Patient.Value)
		if po.Seed != "" {
			// The seed may hold the patient already.
			found, err := c.Search(ctx, "Patient", url.Values{"identifier": {cli.Patient.System + "|" + cli.Patient.Value}})
			if err != nil {
				t.Fatal(err)
			}
			if len(found) > 0 {
				continue
			}
		}
		if p.Allows("Patient", "create") {
			if _, err := c.Create(ctx, "Patient", []byte(body), ""); err != nil {
				t.Fatalf("seed patient: %v", err)
			}
		}
	}
	return r
}

func (r *rig) enqueueAll(t *testing.T) {
	t.Helper()
	var batch []store.Stored
	for _, c := range r.cl.Clients {
		_, v, err := r.store.GetClient(t.Context(), c.ID)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			t.Fatal(err)
		}
		batch = append(batch, store.Stored{Client: c, Version: v})
	}
	if _, err := r.store.SaveClients(t.Context(), batch, []string{"clinic"}); err != nil {
		t.Fatal(err)
	}
}

// countByIdentifier counts resources in the EHR carrying each of the
// program's business identifiers of a kind.
func (r *rig) countByIdentifier(t *testing.T, typ string, k mappings.Kind) map[string]int {
	t.Helper()
	entries, err := r.client.Search(t.Context(), typ, url.Values{"_count": {"1000"}})
	if err != nil {
		t.Fatal(err)
	}
	sys := mappings.IdentifierSystem(r.cl.ProgramID(), k)
	out := map[string]int{}
	for _, e := range entries {
		var res struct {
			Identifier []struct{ System, Value string } `json:"identifier"`
		}
		if err := json.Unmarshal(e.Resource, &res); err != nil {
			t.Fatal(err)
		}
		for _, id := range res.Identifier {
			if id.System == sys {
				out[id.Value]++
			}
		}
	}
	return out
}

func consenting(cl *ips.Caseload) []*ips.Client {
	var out []*ips.Client
	for _, c := range cl.Clients {
		if c.Consent == nil || c.Consent.EHR == nil || *c.Consent.EHR {
			out = append(out, c)
		}
	}
	return out
}

func TestFullSyncWritesEachRecordOnceThenNothing(t *testing.T) {
	t.Parallel()
	r := newRig(t, "")
	ctx := t.Context()
	r.enqueueAll(t)
	first, err := r.engine.PushOnce(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if first.Failed != 0 || first.Written == 0 {
		t.Fatalf("first push: %+v", first)
	}

	// Every consenting client's goals, plan, jobs and statuses are in the
	// EHR exactly once; nobody else's are.
	// So are the specialists (one Practitioner each, shared by their
	// clients), each client's care team and enrollment episodes.
	want := map[mappings.Kind]map[string]int{mappings.KindGoal: {}, mappings.KindPlan: {}, mappings.KindJob: {}, mappings.KindEmploymentStatus: {},
		mappings.KindSpecialist: {}, mappings.KindCareTeam: {}, mappings.KindEpisode: {}}
	o := r.conn.Mapping
	perClient := 0 // resources pushed per client, shared ones each time
	for _, c := range consenting(r.cl) {
		if k, ok := o.SpecialistKey(c); ok {
			want[mappings.KindSpecialist][k.Value()] = 1
			perClient++
		}
		want[mappings.KindCareTeam][o.CareTeamKey(c).Value()] = 1
		perClient += 2 + len(c.Goals) + len(c.Jobs) + len(mappings.EmploymentStatusRecords(c))
		for _, g := range c.Goals {
			want[mappings.KindGoal][o.GoalKey(c, g).Value()] = 1
		}
		want[mappings.KindPlan][o.PlanKey(c).Value()] = 1
		for _, j := range c.Jobs {
			want[mappings.KindJob][o.JobKey(c, j).Value()] = 1
		}
		for _, s := range mappings.EmploymentStatusRecords(c) {
			want[mappings.KindEmploymentStatus][o.EmploymentStatusKey(c, s).Value()] = 1
		}
		for _, ep := range mappings.EpisodesOfCare(c, o, r.conn.Name) {
			want[mappings.KindEpisode][ep.Key.Value()] = 1
			perClient++
		}
	}
	types := map[mappings.Kind]string{mappings.KindGoal: "Goal", mappings.KindPlan: "CarePlan", mappings.KindJob: "Observation", mappings.KindEmploymentStatus: "Observation",
		mappings.KindSpecialist: "Practitioner", mappings.KindCareTeam: "CareTeam", mappings.KindEpisode: "EpisodeOfCare"}
	total := 0
	for k, w := range want {
		got := r.countByIdentifier(t, types[k], k)
		if fmt.Sprint(got) != fmt.Sprint(w) {
			t.Errorf("%s in the EHR by identifier: %d distinct (want %d), counts %v", k, len(got), len(w), got)
		}
		total += len(w)
	}
	if first.Written != total {
		t.Errorf("first push wrote %d resources, want %d", first.Written, total)
	}
	if n := len(r.cl.Clients) - len(consenting(r.cl)); first.Skipped != n || n == 0 {
		t.Errorf("skipped %d clients without EHR consent, want %d (sample must have some)", first.Skipped, n)
	}

	// Enqueue everything again: nothing changed, nothing is written.
	r.enqueueAll(t)
	second, err := r.engine.PushOnce(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if second.Written != 0 || second.Unchanged != perClient || second.Failed != 0 {
		t.Errorf("second push: %+v, want nothing written and %d unchanged", second, perClient)
	}

	// A changed goal is written again, alone.
	c := consenting(r.cl)[0]
	c.Goals[0].Description = "Work afternoons at the library"
	r.enqueueAll(t)
	third, err := r.engine.PushOnce(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if third.Written < 1 || third.Written > 2 { // the goal, and the plan whose narrative names it
		t.Errorf("after one goal changed: %+v, want the goal (and its plan) written", third)
	}
	if got := r.countByIdentifier(t, "Goal", mappings.KindGoal)[o.GoalKey(c, c.Goals[0]).Value()]; got != 1 {
		t.Errorf("changed goal is in the EHR %d times, want 1 (updated in place)", got)
	}
}

func TestEpicModeWritesOnlyWhatEpicDeclares(t *testing.T) {
	t.Parallel()
	r := newRig(t, filepath.Join("..", "..", "testdata", "ehr-capabilities", "epic-r4-sandbox-2026-07.json"))
	ctx := t.Context()
	r.enqueueAll(t)
	s, err := r.engine.PushOnce(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Epic allows Patient create, so the rig seeded patients; Goal and
	// CarePlan are read-only, so they travel in the chart note.
	if s.Failed != 0 {
		dl, _ := r.store.DeadLetters(ctx, "")
		t.Fatalf("push in Epic mode: %+v; dead letters %+v", s, dl)
	}
	if n := len(r.countByIdentifier(t, "Goal", mappings.KindGoal)); n != 0 {
		t.Errorf("%d Goals written to an EHR that declares Goal read-only", n)
	}
	notes := r.countByIdentifier(t, "DocumentReference", mappings.KindPlanNote)
	if len(notes) != len(consenting(r.cl)) {
		t.Errorf("%d chart notes, want one per consenting client (%d)", len(notes), len(consenting(r.cl)))
	}
	for v, n := range notes {
		if n != 1 {
			t.Errorf("note %s written %d times", v, n)
		}
	}
	// Epic takes Observations only under site-configured codes and none
	// is mapped: jobs and employment status are in the note, not
	// Observations.
	if n := len(r.countByIdentifier(t, "Observation", mappings.KindJob)) + len(r.countByIdentifier(t, "Observation", mappings.KindEmploymentStatus)); n != 0 {
		t.Errorf("%d employment Observations written to Epic with no site code mapped", n)
	}
	// The plan changes: the note is updated in place, not piled up.
	r.wantNoteRewrittenInPlace(t, consenting(r.cl)[0])
	if _, err := r.engine.PullOnce(ctx); err != nil {
		t.Fatalf("pull in Epic mode: %v", err)
	}
	// Only declared interactions: the enforcing peer answered nothing 405,
	// so nothing was sent that Epic does not declare (and nothing retried).
	if l := r.refused("405"); len(l) != 0 {
		t.Errorf("requests Epic does not declare were sent:\n%s", strings.Join(l, "\n"))
	}
}

// TestEpicModeWithASiteCodeWritesEmploymentStatus: with the site's flowsheet
// code mapped for employment status, those Observations are written with
// it; jobs, unmapped, stay in the note.
// epicFlowsheet is the site code the Epic-mode rigs map employment status to.
var epicFlowsheet = ips.Coding{System: "urn:oid:1.2.840.114350.1.13.0.1.7.2.707679", Code: "1570000123"}

// newEpicSiteCodedRig is a rig whose peer acts out Epic, with employment
// status mapped to a site flowsheet code, so it is written natively (by
// plain POST creates).
func newEpicSiteCodedRig(t *testing.T) *rig {
	t.Helper()
	r := newRig(t, filepath.Join("..", "..", "testdata", "ehr-capabilities", "epic-r4-sandbox-2026-07.json"))
	meta, err := r.client.Metadata(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if r.conn.Plan, err = plan.Build(meta, plan.Options{SiteCodes: map[plan.Concept]bool{plan.EmploymentStatus: true}}); err != nil {
		t.Fatal(err)
	}
	r.conn.Mapping.SiteCodes = map[mappings.Kind]ips.Coding{mappings.KindEmploymentStatus: epicFlowsheet}
	return r
}

func TestEpicModeWithASiteCodeWritesEmploymentStatus(t *testing.T) {
	t.Parallel()
	r := newEpicSiteCodedRig(t)
	ctx := t.Context()
	flowsheet := epicFlowsheet
	r.enqueueAll(t)
	s, err := r.engine.PushOnce(ctx)
	if err != nil || s.Failed != 0 {
		t.Fatalf("push: %+v %v", s, err)
	}
	want := 0
	for _, c := range consenting(r.cl) {
		want += len(mappings.EmploymentStatusRecords(c))
	}
	got := r.countByIdentifier(t, "Observation", mappings.KindEmploymentStatus)
	if len(got) != want || want == 0 {
		t.Errorf("%d employment status Observations, want %d", len(got), want)
	}
	if n := len(r.countByIdentifier(t, "Observation", mappings.KindJob)); n != 0 {
		t.Errorf("%d job Observations written with no site code for jobs", n)
	}
	es, err := r.client.Search(ctx, "Observation", url.Values{"code": {flowsheet.System + "|" + flowsheet.Code}})
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != want {
		t.Errorf("%d Observations carry the site code, want %d", len(es), want)
	}
	if l := r.refused("405"); len(l) != 0 {
		t.Errorf("requests Epic does not declare were sent:\n%s", strings.Join(l, "\n"))
	}
}

func TestParallelWorkersWriteEachRecordOnce(t *testing.T) {
	t.Parallel()
	r := newRig(t, "")
	r.enqueueAll(t)
	var last PushSummary
	r.engine.Progress = func(s PushSummary) { last = s } // calls are serialized
	s, err := r.engine.PushParallel(t.Context(), 3)
	if err != nil || s.Failed != 0 || s.Items != len(r.cl.Clients) {
		t.Fatalf("parallel push: %+v %v; want every client once", s, err)
	}
	if !reflect.DeepEqual(last, s) {
		t.Errorf("last progress report %+v, want the final totals %+v", last, s)
	}
	for k, typ := range map[mappings.Kind]string{mappings.KindGoal: "Goal", mappings.KindPlan: "CarePlan", mappings.KindJob: "Observation"} {
		for v, n := range r.countByIdentifier(t, typ, k) {
			if n != 1 {
				t.Errorf("%s %s written %d times", k, v, n)
			}
		}
	}
}

// TestOracleModeSync: Oracle Health declares DocumentReference and
// Observation create and update, batch but not transaction, no conditional
// operations and no identifier search on the types written: the note goes
// in once per client, found again by patient, updated in place, and nothing
// undeclared is sent.
func TestOracleModeSync(t *testing.T) {
	t.Parallel()
	r := newRig(t, filepath.Join("..", "..", "testdata", "ehr-capabilities", "oracle-health-millennium-r4-2026-08.json"))
	ctx := t.Context()
	if r.conn.Plan.Bundles != "batch" || r.conn.Plan.Type("DocumentReference").Idempotency != plan.SearchByPatient {
		t.Fatalf("Oracle plan: bundles %s, note idempotency %s", r.conn.Plan.Bundles, r.conn.Plan.Type("DocumentReference").Idempotency)
	}
	r.enqueueAll(t)
	s, err := r.engine.PushOnce(ctx)
	if err != nil || s.Failed != 0 {
		dl, _ := r.store.DeadLetters(ctx, "")
		t.Fatalf("push in Oracle mode: %+v %v; dead letters %+v", s, err, dl)
	}
	notes := r.countByIdentifier(t, "DocumentReference", mappings.KindPlanNote)
	if len(notes) != len(consenting(r.cl)) {
		t.Errorf("%d chart notes, want one per consenting client (%d)", len(notes), len(consenting(r.cl)))
	}
	for v, n := range notes {
		if n != 1 {
			t.Errorf("note %s written %d times", v, n)
		}
	}
	for _, typ := range []string{"Goal", "CarePlan"} {
		if es, err := r.client.Search(ctx, typ, url.Values{"_count": {"1"}}); err == nil && len(es) != 0 {
			t.Errorf("%s written to an EHR that declares it read-only", typ)
		}
	}
	if s, err := r.engine.PushOnce(ctx); err != nil || s.Written != 0 {
		t.Errorf("second push: %+v %v; want nothing written", s, err)
	}
	// The plan changes: the note is updated in place, not piled up.
	r.wantNoteRewrittenInPlace(t, consenting(r.cl)[0])
	if _, err := r.engine.PullOnce(ctx); err != nil {
		t.Fatalf("pull in Oracle mode: %v", err)
	}
	if l := r.refused("405"); len(l) != 0 {
		t.Errorf("requests Oracle Health does not declare were sent:\n%s", strings.Join(l, "\n"))
	}
}

// wantNoteRewrittenInPlace adds a support to c's plan and pushes: exactly
// the chart note is written, and the EHR still holds one note for c.
func (r *rig) wantNoteRewrittenInPlace(t *testing.T, c *ips.Client) {
	t.Helper()
	c.Supports = append(c.Supports, &ips.Support{ID: "s-note-change", Type: ips.SupportTeamMeeting, Status: ips.SupportPlanned, Date: ips.MustDate("2026-10-20")})
	r.enqueueAll(t)
	if s, err := r.engine.PushOnce(t.Context()); err != nil || s.Failed != 0 || s.Written != 1 {
		t.Errorf("after a plan change: %+v, %v; want exactly the note rewritten", s, err)
	}
	if n := r.countByIdentifier(t, "DocumentReference", mappings.KindPlanNote)[r.conn.Mapping.PlanNoteKey(c).Value()]; n != 1 {
		t.Errorf("changed note is in the EHR %d times, want 1", n)
	}
}
