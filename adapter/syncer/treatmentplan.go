package syncer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/ipsfhir/ipsfhir/adapter/ehr"
	"github.com/ipsfhir/ipsfhir/adapter/plan"
	"github.com/ipsfhir/ipsfhir/adapter/store"
	"github.com/ipsfhir/ipsfhir/adapter/telemetry"
	"github.com/ipsfhir/ipsfhir/ips"
)

// The link to the mental health treatment plan. IPS integrates employment
// with mental health treatment, and the chart shows it when the IPS plan is
// part of the patient's treatment plan (CarePlan.partOf) or the chart note
// relates to it (DocumentReference.context.related). The treatment plan is
// the clinic's own CarePlan; the engine finds it with a search by patient
// (TreatmentPlanSearch says which of the patient's CarePlans it is) and
// remembers the answer, found or not, in the ledger (one row per client,
// key "treatment-plan|{client}", with when it was looked up), so that a
// push costs no search until the answer is older than Refresh. The link is
// part of the content that is hashed: when a later search finds another
// plan (or none), the plan and the note are written again with the new
// link. Without Patient and CarePlan search by patient there is no link,
// and the sync plan says so (plan.TreatmentPlan).

// TreatmentPlanSearch says which of a patient's CarePlans is the mental
// health treatment plan: an active one with one of Categories, not written
// by ipsfhir (no urn:ipsfhir: identifier), chosen by Choose among several.
type TreatmentPlanSearch struct {
	// Categories mark the treatment plan (any one, by system and code);
	// nil means DefaultTreatmentPlanCategories.
	Categories []ips.Coding
	// Choose picks among several matches: ChooseLastUpdated (the default
	// for "") or ChoosePeriodStart.
	Choose string
	// Refresh is how long an answer is used before a push searches again;
	// zero means DefaultTreatmentPlanRefresh.
	Refresh time.Duration
}

// Ways to choose among several treatment plans.
const (
	// ChooseLastUpdated takes the most recently updated (meta.lastUpdated).
	ChooseLastUpdated = "lastUpdated"
	// ChoosePeriodStart takes the one whose period started last.
	ChoosePeriodStart = "periodStart"
)

// DefaultTreatmentPlanCategories is US Core's CarePlan category
// assess-plan ("Assessment and Plan of Treatment"), the category US Core
// requires of every CarePlan.
var DefaultTreatmentPlanCategories = []ips.Coding{{System: "http://hl7.org/fhir/us/core/CodeSystem/careplan-category", Code: "assess-plan"}}

// DefaultTreatmentPlanRefresh is TreatmentPlanSearch.Refresh when unset.
const DefaultTreatmentPlanRefresh = 24 * time.Hour

func (t TreatmentPlanSearch) categories() []ips.Coding {
	if t.Categories == nil {
		return DefaultTreatmentPlanCategories
	}
	return t.Categories
}

func (t TreatmentPlanSearch) refresh() time.Duration {
	if t.Refresh > 0 {
		return t.Refresh
	}
	return DefaultTreatmentPlanRefresh
}

// treatmentPlanKey is the ledger key of a client's treatment-plan lookup.
func treatmentPlanKey(clientID string) string { return "treatment-plan|" + clientID }

// treatmentPlanOf returns the literal reference to the client's treatment
// plan ("CarePlan/123"), or "" for none: the ledger's answer while it is
// fresh, else a new search, remembered. A search that fails does not stop
// the push (the link is not worth holding employment data back): the last
// answer is used, or none, and the next push searches again. Only store
// errors are returned.
func (e *Engine) treatmentPlanOf(ctx context.Context, conn *Connection, clientID, patientRef string) (string, error) {
	if conn.Plan.Concept(plan.TreatmentPlan).Path != plan.ReadOnly || patientRef == "" {
		return "", nil
	}
	lk := treatmentPlanKey(clientID)
	le, err := e.Store.LedgerGet(ctx, conn.Name, lk)
	known := err == nil
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return "", fmt.Errorf("%w: ledger: %w", errStore, err)
	}
	last := ""
	if known && le.ResourceID != "" {
		last = "CarePlan/" + le.ResourceID
	}
	if known && e.now().Sub(le.UpdatedAt) < conn.TreatmentPlan.refresh() {
		return last, nil
	}
	// A joint search of the lease's clients may have looked it up
	// already (see lookahead.go).
	id, ahead := e.ahead.plan(patientRef)
	if err = nil; !ahead {
		id, err = e.findTreatmentPlan(ctx, conn, patientRef)
	}
	if err != nil {
		e.log().WarnContext(ctx, "treatment plan search failed; the link stays as it was", "connection", conn.Name, "error_kind", errorToken(err), "status", statusOf(err))
		return last, nil
	}
	row := store.LedgerEntry{Connection: conn.Name, Key: lk, ClientID: clientID, ResourceType: "CarePlan", ResourceID: id, UpdatedAt: e.now()}
	if known && le.ResourceID == id {
		// The same plan: what linkGoals added to it stays known.
		row.ContentHash, row.VersionID = le.ContentHash, le.VersionID
	}
	if err := e.Store.LedgerPut(ctx, row); err != nil {
		return "", fmt.Errorf("%w: ledger: %w", errStore, err)
	}
	if id == "" {
		return "", nil
	}
	return "CarePlan/" + id, nil
}

// findTreatmentPlan searches the patient's CarePlans for the treatment
// plan and returns its id, or "". The search narrows by category and
// status where the EHR declares those parameters; every condition is
// checked here as well, since EHRs differ in what they declare.
func (e *Engine) findTreatmentPlan(ctx context.Context, conn *Connection, patientRef string) (string, error) {
	rp := conn.Plan.Type("CarePlan")
	name, ok := rp.Searches("patient")
	if !ok || !conn.Plan.Allows("CarePlan", "search-type") {
		return "", nil
	}
	entries, err := conn.EHR.Search(ctx, "CarePlan", treatmentPlanQuery(conn, name, patientRef))
	if err != nil {
		return "", err
	}
	return chooseTreatmentPlan(conn, entries), nil
}

// treatmentPlanQuery is the CarePlan search of patient (one reference, or
// several joined in an OR list: see lookahead.go), with name the EHR's
// spelling of the patient parameter.
func treatmentPlanQuery(conn *Connection, name, patient string) url.Values {
	rp := conn.Plan.Type("CarePlan")
	cats := conn.TreatmentPlan.categories()
	q := url.Values{name: {patient}, "_count": {"50"}}
	if n, ok := rp.Searches("category"); ok {
		tokens := make([]string, len(cats))
		for i, c := range cats {
			tokens[i] = c.System + "|" + c.Code
		}
		q.Set(n, strings.Join(tokens, ","))
	}
	if n, ok := rp.Searches("status"); ok {
		q.Set(n, "active")
	}
	return q
}

// chooseTreatmentPlan picks the treatment plan among one patient's
// CarePlans a search found: the id, or "" for none.
func chooseTreatmentPlan(conn *Connection, entries []ehr.Entry) string {
	cats := conn.TreatmentPlan.categories()
	type candidate struct {
		id, lastUpdated, periodStart string
	}
	var found []candidate
	for _, en := range entries {
		if en.Mode != "" && en.Mode != "match" {
			continue
		}
		var r carePlanJSON
		if json.Unmarshal(en.Resource, &r) == nil && r.candidate(cats) {
			found = append(found, candidate{r.ID, r.Meta.LastUpdated, r.Period.Start})
		}
	}
	if len(found) == 0 {
		return ""
	}
	by := func(c candidate) time.Time { return instant(c.lastUpdated) }
	if conn.TreatmentPlan.Choose == ChoosePeriodStart {
		by = func(c candidate) time.Time { return instant(c.periodStart) }
	}
	// The latest wins; among equals the smallest id, so the same EHR
	// content always gives the same link.
	best := slices.MinFunc(found, func(a, b candidate) int {
		if c := by(b).Compare(by(a)); c != 0 {
			return c
		}
		return strings.Compare(a.id, b.id)
	})
	return best.id
}

// carePlanJSON is what the engine reads of a clinic's CarePlan.
type carePlanJSON struct {
	ID     string `json:"id"`
	Status string `json:"status"`
	Meta   struct {
		VersionID   string `json:"versionId"`
		LastUpdated string `json:"lastUpdated"`
	} `json:"meta"`
	Identifier []struct {
		System string `json:"system"`
	} `json:"identifier"`
	Category []struct {
		Coding []struct {
			System string `json:"system"`
			Code   string `json:"code"`
		} `json:"coding"`
	} `json:"category"`
	Period struct {
		Start string `json:"start"`
	} `json:"period"`
	Subject struct {
		Reference string `json:"reference"`
	} `json:"subject"`
}

// candidate reports whether the CarePlan can be the treatment plan: active,
// of one of the categories, and not an IPS plan (no urn:ipsfhir:
// identifier: this program's or another's).
func (r carePlanJSON) candidate(cats []ips.Coding) bool {
	if r.ID == "" || r.Status != "active" {
		return false
	}
	for _, id := range r.Identifier {
		if strings.HasPrefix(id.System, "urn:ipsfhir:") {
			return false
		}
	}
	for _, cc := range r.Category {
		for _, cd := range cc.Coding {
			if slices.ContainsFunc(cats, func(c ips.Coding) bool { return c.System == cd.System && c.Code == cd.Code }) {
				return true
			}
		}
	}
	return false
}

// instant reads a FHIR instant, dateTime or date; the zero time when it
// is absent or unreadable (such a plan is chosen last).
func instant(s string) time.Time {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02", "2006-01", "2006"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t
		}
	}
	return time.Time{}
}

// treatmentPlanChanged looks at a CarePlan a pull found changed that is not
// the adapter's (pullWritten polls CarePlan where the IPS plan is written
// natively). When it may change which treatment plan a client's IPS plan
// links to (it is the plan linked now, or an active plan of the
// treatment-plan categories), the client's answer is marked stale and the
// client queued, so that the next push searches again at once rather than
// after Refresh. Changes the last search already saw, and the adapter's own
// update of the plan (goals added, see linkGoals), are left alone. Only
// store errors are returned.
func (e *Engine) treatmentPlanChanged(ctx context.Context, conn *Connection, raw []byte) error {
	if conn.Plan.Concept(plan.TreatmentPlan).Path != plan.ReadOnly {
		return nil
	}
	var r carePlanJSON
	if json.Unmarshal(raw, &r) != nil || r.ID == "" {
		return nil
	}
	typ, pid := splitReference(r.Subject.Reference)
	if typ != "Patient" {
		return nil
	}
	pat, err := e.Store.LedgerByResource(ctx, conn.Name, "Patient", pid)
	if errors.Is(err, store.ErrNotFound) {
		return nil // not a patient of the program's
	}
	if err != nil {
		return fmt.Errorf("%w: ledger: %w", errStore, err)
	}
	sys, val, ok := strings.Cut(strings.TrimPrefix(pat.Key, "Patient|"), "|")
	if !ok {
		return nil
	}
	cli, err := e.Store.ClientByPatient(ctx, sys, val)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%w: client by patient: %w", errStore, err)
	}
	le, err := e.Store.LedgerGet(ctx, conn.Name, treatmentPlanKey(cli.Client.ID))
	if errors.Is(err, store.ErrNotFound) {
		return nil // never looked up: the first push searches
	}
	if err != nil {
		return fmt.Errorf("%w: ledger: %w", errStore, err)
	}
	changed := instant(r.Meta.LastUpdated)
	switch {
	case le.ResourceID == r.ID && r.Meta.VersionID != "" && r.Meta.VersionID == le.VersionID:
		return nil // the adapter's own update (goals added)
	case !changed.IsZero() && changed.Before(le.UpdatedAt.Add(-e.overlap())):
		return nil // the last search saw it
	case le.ResourceID != r.ID && !r.candidate(conn.TreatmentPlan.categories()):
		return nil // neither linked nor a candidate
	}
	le.UpdatedAt = time.Unix(0, 0).UTC() // stale: the next push searches
	if err := e.Store.LedgerPut(ctx, le); err != nil {
		return fmt.Errorf("%w: ledger: %w", errStore, err)
	}
	if err := e.Store.Enqueue(ctx, conn.Name, cli.Client.ID); err != nil {
		return fmt.Errorf("%w: enqueue: %w", errStore, err)
	}
	return nil
}

// linkGoals puts references to the client's goals into the clinic's
// treatment plan (its CarePlan.goal), where the plan says so
// (plan.AddsGoalsToTreatmentPlan: the connection opts in, goals are written
// natively and the EHR updates CarePlan with If-Match). The clinic owns that plan: it is read
// first, only references to the client's goals it lacks are added (nothing
// in it is removed or changed), and the update carries If-Match with the
// version read, so a clinician's edit in between makes it fail (409 or
// 412) and the item's retry reads again; a lost answer is retried the same
// way and adds nothing twice. What was linked is remembered on the
// treatment-plan row (ContentHash, with the version written), so the plan
// is read again only when the goals or the link change; a reference a
// clinician removes is not added back until then.
func (e *Engine) linkGoals(ctx context.Context, conn *Connection, c *ips.Client, treatmentPlan string) (PushSummary, error) {
	var s PushSummary
	rp := conn.Plan.Type("CarePlan")
	if !conn.Plan.AddsGoalsToTreatmentPlan() || treatmentPlan == "" || len(c.Goals) == 0 ||
		rp == nil || rp.Concurrency != plan.IfMatch || !conn.Plan.Allows("CarePlan", "read") || !conn.Plan.Allows("CarePlan", "update") {
		return s, nil
	}
	var refs []string
	for _, g := range c.Goals {
		le, err := e.ledgerRow(ctx, conn.Name, ledgerKey(conn.Mapping.GoalKey(c, g)))
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return s, fmt.Errorf("%w: ledger: %w", errStore, err)
		}
		if le.ResourceID != "" {
			refs = append(refs, "Goal/"+le.ResourceID)
		}
	}
	slices.Sort(refs)
	want := hashBytes([]byte(treatmentPlan + "\n" + strings.Join(refs, "\n")))
	lk := treatmentPlanKey(c.ID)
	row, err := e.Store.LedgerGet(ctx, conn.Name, lk)
	if errors.Is(err, store.ErrNotFound) || (err == nil && row.ContentHash == want) || len(refs) == 0 {
		return s, nil
	}
	if err != nil {
		return s, fmt.Errorf("%w: ledger: %w", errStore, err)
	}
	_, id := splitReference(treatmentPlan)
	cur, err := conn.EHR.Read(ctx, "CarePlan", id)
	if errors.Is(err, ehr.ErrNotFound) {
		return s, nil // gone: the next search finds another, or none
	}
	if err != nil {
		return s, err
	}
	dec := json.NewDecoder(bytes.NewReader(cur.Body))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil || m["resourceType"] != "CarePlan" {
		return s, &pushError{msg: "push: the EHR's copy of the treatment plan is unreadable"}
	}
	have := map[string]bool{}
	goals, _ := m["goal"].([]any)
	for _, g := range goals {
		if gm, ok := g.(map[string]any); ok {
			if t, gid := splitReference(fmt.Sprint(gm["reference"])); t == "Goal" {
				have["Goal/"+gid] = true
			}
		}
	}
	version, added := "", 0
	for _, r := range refs {
		if !have[r] {
			goals = append(goals, map[string]any{"reference": r})
			added++
		}
	}
	if added > 0 {
		if cur.VersionID == "" {
			e.log().WarnContext(ctx, "treatment plan read without a version: the goals are not added without If-Match", "connection", conn.Name)
			return s, nil
		}
		m["goal"] = goals
		body, err := json.Marshal(m)
		if err != nil {
			return s, &pushError{msg: "push: encode the treatment plan"}
		}
		resp, err := conn.EHR.Update(ctx, "CarePlan", id, body, cur.VersionID)
		if err != nil {
			return s, err
		}
		version = resp.VersionID
		s.Written++
		e.record(ctx, conn.Name, "CarePlan", telemetry.OutcomeWritten, nil)
	}
	now, err := e.Store.LedgerGet(ctx, conn.Name, lk)
	if err != nil {
		return s, fmt.Errorf("%w: ledger: %w", errStore, err)
	}
	if now.ResourceID != id {
		return s, nil // another search moved the link meanwhile
	}
	now.ContentHash = want
	if version != "" {
		now.VersionID = version
	}
	if err := e.Store.LedgerPut(ctx, now); err != nil {
		return s, fmt.Errorf("%w: ledger: %w", errStore, err)
	}
	return s, nil
}
