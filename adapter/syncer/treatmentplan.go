package syncer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/ipsfhir/ipsfhir/adapter/plan"
	"github.com/ipsfhir/ipsfhir/adapter/store"
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
	id, err := e.findTreatmentPlan(ctx, conn, patientRef)
	if err != nil {
		e.log().WarnContext(ctx, "treatment plan search failed; the link stays as it was", "connection", conn.Name, "error_kind", errorToken(err), "status", statusOf(err))
		return last, nil
	}
	if err := e.Store.LedgerPut(ctx, store.LedgerEntry{Connection: conn.Name, Key: lk, ClientID: clientID, ResourceType: "CarePlan", ResourceID: id, UpdatedAt: e.now()}); err != nil {
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
	cats := conn.TreatmentPlan.categories()
	q := url.Values{name: {patientRef}, "_count": {"50"}}
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
	entries, err := conn.EHR.Search(ctx, "CarePlan", q)
	if err != nil {
		return "", err
	}
	type candidate struct {
		id, lastUpdated, periodStart string
	}
	var found []candidate
	for _, en := range entries {
		if en.Mode != "" && en.Mode != "match" {
			continue
		}
		var r struct {
			ID     string `json:"id"`
			Status string `json:"status"`
			Meta   struct {
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
		}
		if json.Unmarshal(en.Resource, &r) != nil || r.ID == "" || r.Status != "active" {
			continue
		}
		if slices.ContainsFunc(r.Identifier, func(id struct {
			System string `json:"system"`
		}) bool {
			return strings.HasPrefix(id.System, "urn:ipsfhir:")
		}) {
			continue // an IPS plan: the adapter's own
		}
		match := false
		for _, cc := range r.Category {
			for _, cd := range cc.Coding {
				match = match || slices.ContainsFunc(cats, func(c ips.Coding) bool { return c.System == cd.System && c.Code == cd.Code })
			}
		}
		if match {
			found = append(found, candidate{r.ID, r.Meta.LastUpdated, r.Period.Start})
		}
	}
	if len(found) == 0 {
		return "", nil
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
	return best.id, nil
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
