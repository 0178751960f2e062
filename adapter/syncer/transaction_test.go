package syncer

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	bpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/resources/bundle_and_contained_resource_go_proto"

	"github.com/ipsfhir/ipsfhir/adapter/ehr"
	"github.com/ipsfhir/ipsfhir/adapter/plan"
	"github.com/ipsfhir/ipsfhir/adapter/store"
	"github.com/ipsfhir/ipsfhir/ips"
	"github.com/ipsfhir/ipsfhir/mappings"
)

// countingEHR counts the writes the engine sends, by kind.
type countingEHR struct {
	EHR
	mu sync.Mutex
	writeCounts
}

// writeCounts counts writes by kind; a Provenance create counts as a
// provenance, not a create.
type writeCounts struct{ creates, updates, bundles, batches, provenances int }

func (c *countingEHR) Batch(ctx context.Context, bundle []byte, idempotent bool) (*ehr.Response, error) {
	c.mu.Lock()
	c.batches++
	c.mu.Unlock()
	return c.EHR.Batch(ctx, bundle, idempotent)
}

func (c *countingEHR) Create(ctx context.Context, t string, body []byte, ifNoneExist string) (*ehr.Response, error) {
	c.mu.Lock()
	if t == "Provenance" {
		c.provenances++
	} else {
		c.creates++
	}
	c.mu.Unlock()
	return c.EHR.Create(ctx, t, body, ifNoneExist)
}

func (c *countingEHR) Update(ctx context.Context, t, target string, body []byte, ifMatch string) (*ehr.Response, error) {
	c.mu.Lock()
	c.updates++
	c.mu.Unlock()
	return c.EHR.Update(ctx, t, target, body, ifMatch)
}

func (c *countingEHR) Transaction(ctx context.Context, bundle []byte, idempotent bool) (*ehr.Response, error) {
	c.mu.Lock()
	c.bundles++
	c.mu.Unlock()
	return c.EHR.Transaction(ctx, bundle, idempotent)
}

// TestFullModePushesEachClientInOneTransaction: where the EHR declares
// transaction and conditional update, each client's changed resources go in
// one Bundle, every record exactly once; a second pass sends nothing. (One
// client leased at a time: several leased together have their Bundles
// joined, see TestJointTransactionsWriteWhatSingleOnesWrite.)
func TestFullModePushesEachClientInOneTransaction(t *testing.T) {
	t.Parallel()
	r := newRig(t, "")
	ctx := t.Context()
	r.engine.leaseBatch = 1
	if r.conn.Plan.Bundles != "transaction" {
		t.Fatalf("peer plan bundles = %q, want transaction", r.conn.Plan.Bundles)
	}
	cnt := &countingEHR{EHR: r.conn.EHR}
	r.conn.EHR = cnt
	r.enqueueAll(t)
	s, err := r.engine.PushOnce(ctx)
	if err != nil || s.Failed != 0 {
		t.Fatalf("push: %+v %v", s, err)
	}
	clients := len(consenting(r.cl))
	if cnt.bundles != clients {
		t.Errorf("%d transaction Bundles for %d consenting clients, want one each", cnt.bundles, clients)
	}
	if cnt.creates+cnt.updates+cnt.provenances != 0 {
		t.Errorf("%d single creates, %d updates and %d Provenance creates besides the Bundles, want none", cnt.creates, cnt.updates, cnt.provenances)
	}
	// Each written resource's Provenance went in its Bundle.
	if s.Provenances != s.Written {
		t.Errorf("%d Provenances for %d resources written", s.Provenances, s.Written)
	}
	for _, k := range []struct {
		typ  string
		kind mappings.Kind
	}{{"Goal", mappings.KindGoal}, {"CarePlan", mappings.KindPlan}, {"Observation", mappings.KindJob}} {
		for v, n := range r.countByIdentifier(t, k.typ, k.kind) {
			if n != 1 {
				t.Errorf("%s %s written %d times", k.typ, v, n)
			}
		}
	}
	// The CarePlan refers to the Goals as the EHR stored them, not by the
	// Bundle's urn:uuid.
	es, err := r.client.Search(ctx, "CarePlan", url.Values{"_count": {"1"}})
	if err != nil || len(es) == 0 {
		t.Fatalf("CarePlan search: %d %v", len(es), err)
	}
	if got := string(es[0].Resource); strings.Contains(got, `"reference":"urn:uuid:`) {
		t.Errorf("stored CarePlan still refers to urn:uuid fullUrls: %s", got)
	}

	before := cnt.writeCounts
	s, err = r.engine.PushOnce(ctx)
	if err != nil || s.Written != 0 {
		t.Fatalf("second push: %+v %v; want nothing written", s, err)
	}
	if cnt.writeCounts != before {
		t.Errorf("second push sent requests: %+v, before %+v", cnt.writeCounts, before)
	}
}

// TestStaleResourceInATransactionFallsBackToSingleWrites: a job Observation
// edited in the EHR makes the Bundle's If-Match stale; the EHR refuses the
// Bundle, the engine pushes one by one, records the conflict (IPS wins) and
// writes the other change too.
func TestStaleResourceInATransactionFallsBackToSingleWrites(t *testing.T) {
	t.Parallel()
	r := newRig(t, "")
	ctx := t.Context()
	cnt := &countingEHR{EHR: r.conn.EHR}
	r.conn.EHR = cnt
	r.enqueueAll(t)
	if _, err := r.engine.PushOnce(ctx); err != nil {
		t.Fatal(err)
	}
	var c *ips.Client
	for _, cc := range consenting(r.cl) {
		if len(cc.Jobs) > 0 && len(cc.Goals) > 0 {
			c = cc
			break
		}
	}
	k := r.amendJobInEHR(t, c)
	c.Jobs[0].HoursPerWeek += 5
	c.Goals[0].Description += " (revised)"
	before := cnt.writeCounts
	r.enqueueAll(t)
	s, err := r.engine.PushOnce(ctx)
	if err != nil || s.Failed != 0 || s.Conflicts != 1 || s.Written < 2 {
		t.Fatalf("push: %+v %v; want the goal and the job written, one conflict, no failure", s, err)
	}
	if cnt.bundles != before.bundles+1 {
		t.Errorf("%d Bundles sent, want the one refused", cnt.bundles-before.bundles)
	}
	if cnt.updates-before.updates < 2 {
		t.Errorf("%d single updates after the refused Bundle, want at least the goal and the job", cnt.updates-before.updates)
	}
	r.wantJobConflictIPSWon(t, k)
}

// TestSingleWritesReferToGoalsTheEHRStored: without Bundles, goals are
// written first and the plan then refers to them by the ids the EHR gave,
// never by a Bundle-only urn:uuid.
func TestSingleWritesReferToGoalsTheEHRStored(t *testing.T) {
	t.Parallel()
	r := newRig(t, "")
	ctx := t.Context()
	r.conn.Plan.Bundles = "none" // an EHR with conditional update but no transaction
	r.enqueueAll(t)
	if s, err := r.engine.PushOnce(ctx); err != nil || s.Failed != 0 {
		t.Fatalf("push: %+v %v", s, err)
	}
	es, err := r.client.Search(ctx, "CarePlan", url.Values{"_count": {"1000"}})
	if err != nil || len(es) == 0 {
		t.Fatalf("CarePlan search: %d %v", len(es), err)
	}
	withGoals := 0
	for _, e := range es {
		if strings.Contains(string(e.Resource), `"reference":"urn:uuid:`) {
			t.Errorf("a stored CarePlan refers to a urn:uuid: %.300s", e.Resource)
			break
		}
		if strings.Contains(string(e.Resource), `"reference":"Goal/`) {
			withGoals++
		}
	}
	if withGoals == 0 {
		t.Error("no stored CarePlan refers to a Goal at all: the test proves nothing")
	}
}

// TestOracleModeBatchesUpdates: Oracle Health declares batch but no
// transaction or conditional operations. New resources go one by one (each
// searched for first); a later change to resources the EHR already holds
// goes as one batch of PUT Type/id, updated in place.
func TestOracleModeBatchesUpdates(t *testing.T) {
	t.Parallel()
	r := newRig(t, filepath.Join("..", "..", "testdata", "ehr-capabilities", "oracle-health-millennium-r4-2026-08.json"))
	ctx := t.Context()
	meta, err := r.client.Metadata(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// With a site code for employment status, a client has several
	// resources in the EHR: status Observations and the note.
	if r.conn.Plan, err = plan.Build(meta, plan.Options{SiteCodes: map[plan.Concept]bool{plan.EmploymentStatus: true}}); err != nil {
		t.Fatal(err)
	}
	r.conn.Mapping.SiteCodes = map[mappings.Kind]ips.Coding{mappings.KindEmploymentStatus: {System: "urn:oid:2.16.840.1.113883.6.1000", Code: "IPS-EMP"}}
	cnt := &countingEHR{EHR: r.conn.EHR}
	r.conn.EHR = cnt
	r.enqueueAll(t)
	if s, err := r.engine.PushOnce(ctx); err != nil || s.Failed != 0 {
		t.Fatalf("first push: %+v %v", s, err)
	}
	if cnt.batches != 0 {
		t.Errorf("%d batches on the first push; creates must go one by one", cnt.batches)
	}
	var c *ips.Client
	for _, cc := range consenting(r.cl) {
		if len(cc.Employment) > 0 {
			c = cc
			break
		}
	}
	last := &c.Employment[len(c.Employment)-1]
	if last.Status == ips.Employed {
		last.Status = ips.Unemployed
	} else {
		last.Status = ips.Employed
	}
	c.Supports = append(c.Supports, &ips.Support{ID: "s-batch", Type: ips.SupportTeamMeeting, Status: ips.SupportPlanned, Date: ips.MustDate("2026-10-22")})
	before := cnt.writeCounts
	r.enqueueAll(t)
	s, err := r.engine.PushOnce(ctx)
	if err != nil || s.Failed != 0 || s.Written != 2 {
		t.Fatalf("push after a change: %+v %v; want the status and the note written", s, err)
	}
	// Oracle Health takes Provenance create (searched for by target
	// first), but not in a batch: one for each resource, after it.
	if cnt.batches != before.batches+1 || cnt.updates != before.updates || cnt.creates != before.creates || cnt.provenances != before.provenances+2 || s.Provenances != 2 {
		t.Errorf("after the change: %d batches, %d single updates, %d creates, %d Provenance creates (%d counted); want one batch and a Provenance for each of the two",
			cnt.batches-before.batches, cnt.updates-before.updates, cnt.creates-before.creates, cnt.provenances-before.provenances, s.Provenances)
	}
	st := r.conn.Mapping.EmploymentStatusKey(c, *last)
	if n := r.countByIdentifier(t, "Observation", mappings.KindEmploymentStatus)[st.Value()]; n != 1 {
		t.Errorf("the changed status is in the EHR %d times, want 1 (updated in place)", n)
	}
	if n := r.countByIdentifier(t, "DocumentReference", mappings.KindPlanNote)[r.conn.Mapping.PlanNoteKey(c).Value()]; n != 1 {
		t.Errorf("the changed note is in the EHR %d times, want 1", n)
	}
	if s, err := r.engine.PushOnce(ctx); err != nil || s.Written != 0 {
		t.Errorf("third push: %+v %v; want nothing written", s, err)
	}
	if l := r.refused("405"); len(l) != 0 {
		t.Errorf("requests Oracle Health does not declare were sent:\n%s", strings.Join(l, "\n"))
	}
}

// TestBundleBodyIsTheBundleOfTheEntries: the Bundle written out entry by
// entry (not through json.Marshal of the whole) is valid FHIR R4 JSON
// holding each resource's JSON unchanged, its fullUrl and its request, the
// Provenances after the resources; text that JSON escapes stays intact.
func TestBundleBodyIsTheBundleOfTheEntries(t *testing.T) {
	t.Parallel()
	r := newRig(t, "")
	c := consenting(r.cl)[0]
	c.Goals[0].Description = `Work <20 h> & "keep" \ benefits` + "\n\tü"
	o := r.conn.Mapping
	var changed []txEntry
	for _, en := range mappings.ClientEntries(c, o) {
		changed = append(changed, txEntry{en: en, hash: "h-" + en.Key.Value()})
	}
	w := mappings.Written{Key: changed[0].en.Key, ResourceType: changed[0].en.ResourceType, Reference: "Goal/1", ContentHash: "h", Recorded: time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)}
	pbody, err := provenanceOf(c, o)(w)
	if err != nil {
		t.Fatal(err)
	}
	provs := []txProvenance{{key: mappings.ProvenanceKey(w), body: pbody, of: w.Key, hash: "h"}}
	for _, kind := range []string{"transaction", "batch"} {
		if kind == "batch" {
			provs = nil
			for i := range changed {
				changed[i].known, changed[i].le = true, store.LedgerEntry{ResourceID: fmt.Sprintf("id-%d", i), VersionID: "3"}
			}
		}
		body, err := bundleBody(r.conn, kind, changed, provs)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := mappings.ParseBundle(body); err != nil {
			t.Fatalf("%s: not a valid R4 Bundle: %v\n%.500s", kind, err, body)
		}
		var b struct {
			ResourceType, Type string
			Entry              []struct {
				FullURL  string          `json:"fullUrl"`
				Resource json.RawMessage `json:"resource"`
				Request  map[string]string
			}
		}
		if err := json.Unmarshal(body, &b); err != nil || b.ResourceType != "Bundle" || b.Type != kind || len(b.Entry) != len(changed)+len(provs) {
			t.Fatalf("%s: %v; type %q, %d entries, want %d", kind, err, b.Type, len(b.Entry), len(changed)+len(provs))
		}
		for i, ch := range changed {
			want, _ := mappings.MarshalCompact(ch.en.Resource)
			got := b.Entry[i]
			if string(got.Resource) != string(want) {
				t.Errorf("%s entry %d: resource\n%s\nwant\n%s", kind, i, got.Resource, want)
			}
			wantURL, wantFull := ch.en.Key.ConditionalURL(ch.en.ResourceType), ch.en.Key.FullURL()
			if kind == "batch" {
				wantURL, wantFull = ch.en.ResourceType+"/"+ch.le.ResourceID, ""
			}
			if got.FullURL != wantFull || (got.Request["method"] == "PUT" && got.Request["url"] != wantURL) || (kind == "batch" && got.Request["ifMatch"] != `W/"3"`) {
				t.Errorf("%s entry %d: fullUrl %q request %v; want %q, PUT %q", kind, i, got.FullURL, got.Request, wantFull, wantURL)
			}
		}
		for i, p := range provs {
			got := b.Entry[len(changed)+i]
			if string(got.Resource) != string(p.body) || got.FullURL != p.key.FullURL() || got.Request["method"] != "POST" || got.Request["ifNoneExist"] != mappings.ProvenanceCriteria(ledgerKey(p.key)) {
				t.Errorf("provenance entry: fullUrl %q request %v", got.FullURL, got.Request)
			}
		}
	}
	if !strings.Contains(string(mustMarshal(t, changed[0].en.Resource)), `Work <20 h> & \"keep\" \\ benefits\n\tü`) {
		t.Errorf("the goal's text is not in its JSON as written: %s", mustMarshal(t, changed[0].en.Resource))
	}
}

func mustMarshal(t *testing.T, cr *bpb.ContainedResource) []byte {
	t.Helper()
	b, err := mappings.MarshalCompact(cr)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
