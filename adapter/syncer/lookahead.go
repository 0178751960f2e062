package syncer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/ipsfhir/ipsfhir/adapter/ehr"
	"github.com/ipsfhir/ipsfhir/adapter/plan"
	"github.com/ipsfhir/ipsfhir/adapter/store"
	"github.com/ipsfhir/ipsfhir/ips"
)

// Searches for several clients at once. A client's first push needs two
// searches before it can write: its Patient by identifier
// (patientReference) and its treatment plan, a CarePlan search by patient
// (treatmentPlanOf). A worker makes them for the clients it leases
// together, one search each with the values joined in FHIR's OR list
// (identifier=s|a,s|b; patient=Patient/1,Patient/2), where the EHR
// declares the search parameter and search-type, and the push of each
// client takes its answer from there (lookahead). What a push would
// otherwise search for one client alone is left to it: a client the
// joint search did not answer for sure is searched as before.
//
// The answers go to the ledger exactly as a single search's would, when
// the push uses them: the Patient id (patientReference), the treatment
// plan chosen by the same rule among the patient's own CarePlans
// (chooseTreatmentPlan). A joint search that fails is not retried jointly:
// each push searches for its client alone, and fails or goes on as it does
// today (a Patient search that fails fails that client's item; a treatment
// plan search that fails does not stop the push).

// lookaheadChunk is how many clients one joint search covers at most; a
// long query goes as POST _search (see ehr.Client.Search).
const lookaheadChunk = 50

// lookahead is what the joint searches found for the clients of one lease.
type lookahead struct {
	// patients maps an identifier ("system|value") to the ids of the EHR
	// Patients that carry it, for the identifiers the joint search found
	// for sure; an identifier it found no Patient for is not in the map
	// (the push searches for it alone: see patientReference).
	patients map[string][]string
	// plans maps a patient reference ("Patient/1") to the id of its
	// treatment plan, "" for none, for the patients the joint search
	// covered.
	plans map[string]string
}

// lookAhead searches the Patients and treatment plans of the leased items'
// clients jointly (see above). It returns nil when there is nothing to
// search jointly. Only store errors are returned.
func (e *Engine) lookAhead(ctx context.Context, conn *Connection, items []store.OutboxItem) (*lookahead, error) {
	if len(items) < 2 {
		return nil, nil
	}
	type client struct {
		id         string
		pid        ips.Identifier
		patientRef string
	}
	var clients []client
	for _, it := range items {
		c, _, err := e.Store.GetClient(ctx, it.ClientID)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("%w: get client: %w", errStore, err)
		}
		if !consentsToEHR(c, conn.ConsentDefault) {
			continue
		}
		clients = append(clients, client{id: c.ID, pid: c.Patient})
	}
	la := &lookahead{}

	// The Patients the ledger does not know yet.
	keys := make([]string, len(clients))
	for i, c := range clients {
		keys[i] = patientKey(c.pid)
	}
	rows, err := e.Store.LedgerGetMany(ctx, conn.Name, keys)
	if err != nil {
		return nil, fmt.Errorf("%w: ledger: %w", errStore, err)
	}
	var unknown []ips.Identifier
	for i, c := range clients {
		switch le, ok := rows[keys[i]]; {
		case ok && le.ResourceID != "":
			clients[i].patientRef = "Patient/" + le.ResourceID
		case conn.PatientSystem != "" && c.pid.System == conn.PatientSystem && ehr.IsID(c.pid.Value):
			clients[i].patientRef = "Patient/" + c.pid.Value
		default:
			unknown = append(unknown, c.pid)
		}
	}
	if name, ok := conn.Plan.Type("Patient").Searches("identifier"); ok && conn.Plan.Allows("Patient", "search-type") && len(unknown) >= 2 {
		la.patients = map[string][]string{}
		for chunk := range slices.Chunk(unknown, lookaheadChunk) {
			found, err := e.searchPatients(ctx, conn, name, chunk)
			if err != nil {
				e.log().WarnContext(ctx, "joint patient search failed; searching client by client", "connection", conn.Name, "error_kind", errorToken(err), "status", statusOf(err))
				continue
			}
			for k, ids := range found {
				la.patients[k] = ids
			}
		}
		for i, c := range clients {
			if ids := la.patientIDs(c.pid); len(ids) == 1 {
				clients[i].patientRef = "Patient/" + ids[0]
			}
		}
	}

	// The treatment plans not looked up lately, of the patients known.
	rp := conn.Plan.Type("CarePlan")
	name, ok := rp.Searches("patient")
	if conn.Plan.Concept(plan.TreatmentPlan).Path != plan.ReadOnly || !ok || !conn.Plan.Allows("CarePlan", "search-type") {
		return la, nil
	}
	keys = keys[:0]
	for _, c := range clients {
		keys = append(keys, treatmentPlanKey(c.id))
	}
	if rows, err = e.Store.LedgerGetMany(ctx, conn.Name, keys); err != nil {
		return nil, fmt.Errorf("%w: ledger: %w", errStore, err)
	}
	var due []string
	seen := map[string]bool{}
	for _, c := range clients {
		le, ok := rows[treatmentPlanKey(c.id)]
		if c.patientRef == "" || seen[c.patientRef] || (ok && e.now().Sub(le.UpdatedAt) < conn.TreatmentPlan.refresh()) {
			continue
		}
		seen[c.patientRef] = true
		due = append(due, c.patientRef)
	}
	if len(due) < 2 {
		return la, nil
	}
	la.plans = map[string]string{}
	for chunk := range slices.Chunk(due, lookaheadChunk) {
		found, err := e.searchTreatmentPlans(ctx, conn, name, chunk)
		if err != nil {
			e.log().WarnContext(ctx, "joint treatment plan search failed; searching client by client", "connection", conn.Name, "error_kind", errorToken(err), "status", statusOf(err))
			continue
		}
		for ref, id := range found {
			la.plans[ref] = id
		}
	}
	return la, nil
}

// patientKey is the ledger key of a client's Patient.
func patientKey(pid ips.Identifier) string { return "Patient|" + pid.System + "|" + pid.Value }

// searchPatients searches the Patients of several identifiers at once and
// returns, by identifier ("system|value"), the ids of the Patients found
// carrying it, for the identifiers found. Each Patient found is attributed
// to the identifiers it carries, compared exactly; when one matches an
// identifier of the search only ignoring case, or none of them (the EHR
// matches tokens by rules of its own), the search is not sure of what a
// search of that identifier alone would find, and the whole answer is
// dropped (nil): each client is searched alone.
func (e *Engine) searchPatients(ctx context.Context, conn *Connection, name string, pids []ips.Identifier) (map[string][]string, error) {
	want := map[string]bool{}
	folded := map[string]bool{}
	values := make([]string, 0, len(pids))
	for _, p := range pids {
		k := p.System + "|" + p.Value
		if !want[k] {
			values = append(values, k)
		}
		want[k] = true
		folded[strings.ToLower(k)] = true
	}
	q := url.Values{name: {strings.Join(values, ",")}}
	if n, ok := conn.Plan.Type("Patient").Searches("_count"); ok {
		q.Set(n, strconv.Itoa(max(20, 2*len(values))))
	}
	entries, err := conn.EHR.Search(ctx, "Patient", q)
	if err != nil {
		return nil, err
	}
	out := map[string][]string{}
	for _, en := range entries {
		if en.Mode != "" && en.Mode != "match" {
			continue
		}
		var r struct {
			ID         string `json:"id"`
			Identifier []struct {
				System string `json:"system"`
				Value  string `json:"value"`
			} `json:"identifier"`
		}
		if json.Unmarshal(en.Resource, &r) != nil || r.ID == "" {
			continue // patientReference skips it too
		}
		exact, loose := 0, 0
		for _, id := range r.Identifier {
			k := id.System + "|" + id.Value
			switch {
			case want[k]:
				exact++
				out[k] = append(out[k], r.ID)
			case folded[strings.ToLower(k)]:
				loose++
			}
		}
		if exact == 0 || loose > 0 {
			return nil, nil
		}
	}
	if len(out) >= 2 {
		conn.orLists.Store(true)
	}
	return out, nil
}

// searchTreatmentPlans searches the CarePlans of several patients at once
// (patient=Patient/1,Patient/2, narrowed as findTreatmentPlan narrows)
// and returns, by patient reference, the treatment plan each one's own
// CarePlans give by chooseTreatmentPlan ("" for none). A CarePlan found
// whose subject is none of the patients searched makes the answer unsure:
// it is dropped (nil), and each client is searched alone.
func (e *Engine) searchTreatmentPlans(ctx context.Context, conn *Connection, name string, patientRefs []string) (map[string]string, error) {
	q := treatmentPlanQuery(conn, name, strings.Join(patientRefs, ","))
	q.Set("_count", strconv.Itoa(min(1000, 50*len(patientRefs))))
	entries, err := conn.EHR.Search(ctx, "CarePlan", q)
	if err != nil {
		return nil, err
	}
	byPatient := map[string][]ehr.Entry{}
	for _, ref := range patientRefs {
		byPatient[ref] = nil
	}
	for _, en := range entries {
		if en.Mode != "" && en.Mode != "match" {
			continue
		}
		var r carePlanJSON
		if json.Unmarshal(en.Resource, &r) != nil {
			continue // chooseTreatmentPlan skips it too
		}
		typ, id := splitReference(r.Subject.Reference)
		ref := typ + "/" + id
		if _, ok := byPatient[ref]; typ != "Patient" || !ok {
			return nil, nil
		}
		byPatient[ref] = append(byPatient[ref], en)
	}
	found := 0
	for _, ens := range byPatient {
		if len(ens) > 0 {
			found++
		}
	}
	if found >= 2 {
		conn.orLists.Store(true)
	}
	out := make(map[string]string, len(byPatient))
	for ref, ens := range byPatient {
		if len(ens) == 0 && !conn.orLists.Load() {
			// Not known to honour OR lists: "none" may mean "not read";
			// the push searches for this patient alone.
			continue
		}
		out[ref] = chooseTreatmentPlan(conn, ens)
	}
	return out, nil
}

// patientIDs returns the ids of the EHR Patients the joint search found
// carrying pid, or nil when it did not find any (or made no search): the
// push then searches for pid alone, so that "not found" is always a
// single search's answer.
func (la *lookahead) patientIDs(pid ips.Identifier) []string {
	if la == nil {
		return nil
	}
	return la.patients[pid.System+"|"+pid.Value]
}

// plan returns the treatment plan the joint search found for a patient
// reference ("" for none), and whether it covered that patient at all.
func (la *lookahead) plan(patientRef string) (string, bool) {
	if la == nil {
		return "", false
	}
	id, ok := la.plans[patientRef]
	return id, ok
}
