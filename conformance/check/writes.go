package check

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"

	"github.com/ipsfhir/ipsfhir/adapter/ehr"
	"github.com/ipsfhir/ipsfhir/adapter/plan"
)

// writeFindings are what the write tests found for the conditional and
// versioning groups (nil: not tested), and why they did not run.
type writeFindings struct {
	conditionalCreate *Result
	conditionalUpdate *Result
	ifMatch           *Result
	skipped           string
}

func finding(s Status, blocking bool, format string, args ...any) *Result {
	return &Result{Status: s, Blocking: blocking, Reason: fmt.Sprintf(format, args...)}
}

// writeTests creates one test resource for the test patient, reads,
// searches and updates it the way the plan would, tries a stale If-Match
// where versioned updates are declared, and deletes what it created where
// delete is declared.
func (r *runner) writeTests(ctx context.Context) {
	const g = GroupWriteTests
	send, why := r.canSend()
	switch {
	case !r.live:
		r.writes.skipped = "offline"
	case !r.o.WriteTests:
		r.writes.skipped = "needs write tests (--write-tests --test-patient ID)"
	case !send:
		r.writes.skipped = why
	case !r.patientOK:
		r.writes.skipped = "not run: the test patient could not be read (see resources.Patient.read)"
	}
	if r.writes.skipped != "" {
		r.add(g, "write-tests", Skip, false, "%s", r.writes.skipped)
		return
	}
	t := ""
	for _, c := range []string{"Goal", "DocumentReference"} {
		if r.p.Allows(c, "create") && r.p.Allows(c, "update") {
			t = c
			break
		}
	}
	if t == "" {
		r.writes.skipped = "not run: neither Goal nor DocumentReference declares create and update"
		r.add(g, "write-tests", Omit, false, "nothing to write: neither Goal nor DocumentReference declares create and update")
		return
	}
	w := &writeTest{r: r, t: t, rp: r.p.Type(t), blocking: r.used(t)}
	w.run(ctx)
}

// writeTest is one run of the write tests on type t.
type writeTest struct {
	r        *runner
	t        string
	rp       *plan.ResourcePlan
	blocking bool // the plan writes t: a failed write stops sync
	value    string
	// created lists the ids of what was created, for the cleanup.
	created []string
}

func (w *writeTest) add(id string, s Status, blocking bool, format string, args ...any) {
	w.r.add(GroupWriteTests, "write-tests."+id, s, blocking, format, args...)
}

// criteria is the identifier search for the test resource, as the EHR
// spells the parameter ("" when it cannot search by identifier).
func (w *writeTest) criteria() string {
	name, ok := w.rp.Searches("identifier")
	if !ok || !w.r.p.Allows(w.t, "search-type") {
		return ""
	}
	return name + "=" + url.QueryEscape(checkSystem+"|"+w.value)
}

func (w *writeTest) run(ctx context.Context) {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	w.value = "run-" + hex.EncodeToString(b)
	defer w.cleanup(ctx)

	// Create, conditionally where the statement declares it: the request
	// the plan sends for a new record.
	sr := w.r.st.resource(w.t)
	ifNoneExist := ""
	if sr.ConditionalCreate {
		ifNoneExist = w.criteria()
	}
	resp, err := w.r.client.Create(ctx, w.t, w.body("", 1), ifNoneExist)
	if err != nil {
		w.add("create", verdict(err), w.blocking, "creating a test %s for the test patient answered %s%s", w.t, describe(err), consequence(w.blocking))
		w.r.writes.skipped = "not run: the test resource could not be created"
		return
	}
	if resp.ResourceID == "" {
		w.add("create", Fail, true, "the EHR created a test %s but named no id (no Location header, no id in the body): ipsfhir cannot update what it wrote; it may be left behind (identifier %s|%s)", w.t, checkSystem, w.value)
		w.r.writes.skipped = "not run: the created test resource has no id"
		return
	}
	id, v1 := resp.ResourceID, resp.VersionID
	w.created = append(w.created, id)
	how := "a plain create"
	if ifNoneExist != "" {
		how = "a conditional create (If-None-Exist)"
	}
	w.add("create", Pass, w.blocking, "created %s/%s for the test patient with %s (HTTP %d)", w.t, id, how, resp.Status)

	if ifNoneExist == "" {
		why := "declares no conditionalCreate"
		if sr.ConditionalCreate {
			why = "declares conditionalCreate but no identifier search to match on"
		}
		w.r.writes.conditionalCreate = finding(Omit, false, "%s %s: not tried", w.t, why)
	} else {
		again, err := w.r.client.Create(ctx, w.t, w.body("", 1), ifNoneExist)
		// Sync creates conditionally where that is its idempotency, and
		// sends a goal's first write (no version for If-Match yet) as a
		// conditional create where it updates conditionally with If-Match.
		used := w.rp.Idempotency == plan.ConditionalCreate ||
			(w.t == "Goal" && w.rp.ConditionalCreate && w.rp.Concurrency == plan.IfMatch)
		switch {
		case err != nil:
			w.r.writes.conditionalCreate = finding(verdict(err), used, "a second create with the same If-None-Exist answered %s", describe(err))
		case again.ResourceID != "" && again.ResourceID != id:
			w.created = append(w.created, again.ResourceID)
			w.r.writes.conditionalCreate = finding(Fail, used, "a second create with the same If-None-Exist made a duplicate %s: the EHR ignores the conditionalCreate it declares, so a retried create would duplicate", w.t)
		default:
			w.r.writes.conditionalCreate = finding(Pass, used, "a second create with the same If-None-Exist answered HTTP %d with the first %s: no duplicate", again.Status, w.t)
		}
	}

	// Read back: the identifier must survive, and the version must be known
	// for If-Match.
	canRead := w.r.p.Allows(w.t, "read")
	var got *ehr.Response
	if canRead {
		got, err = w.r.client.Read(ctx, w.t, id)
	}
	switch {
	case !canRead:
		w.add("read", Omit, false, "%s declares no read: not read back", w.t)
	case err != nil:
		w.add("read", verdict(err), true, "reading the test %s back answered %s", w.t, describe(err))
	case !hasIdentifier(got.Body, w.value):
		w.add("read", Fail, true, "the EHR dropped the identifier of the test %s: ipsfhir finds what it wrote by identifier", w.t)
	case got.VersionID == "" && w.rp.Concurrency == plan.IfMatch:
		w.add("read", Fail, true, "the test %s reads back without a version (no ETag, no meta.versionId), although versioned-update is declared", w.t)
	default:
		w.add("read", Pass, true, "read %s/%s back with its identifier", w.t, id)
		if v1 == "" {
			v1 = got.VersionID
		}
	}

	w.searchBack(ctx)

	// Update the way the plan does: conditional by identifier or by id, with
	// If-Match where versioned updates are declared.
	target, how := id, "by id"
	if w.rp.Idempotency == plan.ConditionalUpdate {
		target, how = w.criteria(), "a conditional update by identifier"
	}
	ifMatch := ""
	if w.rp.Concurrency == plan.IfMatch {
		ifMatch = v1
		how += " with If-Match"
	}
	upd, err := w.r.client.Update(ctx, w.t, target, w.body(id, 2), ifMatch)
	switch {
	case err != nil:
		w.add("update", verdict(err), w.blocking, "updating the test %s (%s) answered %s%s", w.t, how, describe(err), consequence(w.blocking))
	case upd.ResourceID != "" && upd.ResourceID != id:
		w.created = append(w.created, upd.ResourceID)
		w.add("update", Fail, w.blocking, "updating the test %s (%s) created another %s instead of updating it", w.t, how, w.t)
	default:
		w.add("update", Pass, w.blocking, "updated %s/%s in place (%s, HTTP %d)", w.t, id, how, upd.Status)
	}
	switch {
	case w.rp.Idempotency != plan.ConditionalUpdate:
		w.r.writes.conditionalUpdate = finding(Omit, false, "the plan does not update %s conditionally (that needs conditionalUpdate and identifier search): not tried", w.t)
	case err != nil:
		w.r.writes.conditionalUpdate = finding(verdict(err), true, "a conditional update by identifier answered %s", describe(err))
	case upd.ResourceID != "" && upd.ResourceID != id:
		w.r.writes.conditionalUpdate = finding(Fail, true, "a conditional update by identifier created a second %s instead of updating the match", w.t)
	default:
		w.r.writes.conditionalUpdate = finding(Pass, true, "a conditional update by identifier updated the test %s in place", w.t)
	}

	// A stale If-Match must be refused, or a clinician's edit made since
	// ipsfhir last wrote would be overwritten.
	switch {
	case w.rp.Concurrency != plan.IfMatch:
		w.r.writes.ifMatch = finding(Omit, false, "%s does not declare versioned-update: the plan reads, compares and writes instead of sending If-Match", w.t)
	case err != nil:
		w.r.writes.ifMatch = finding(Skip, true, "not tried: the update with If-Match failed (see write-tests.update)")
	case v1 == "" || upd.VersionID == "" || upd.VersionID == v1:
		w.r.writes.ifMatch = finding(Fail, true, "the update did not answer a new version (ETag or meta.versionId), although versioned-update is declared")
	default:
		_, err := w.r.client.Update(ctx, w.t, id, w.body(id, 3), v1)
		switch {
		case errors.Is(err, ehr.ErrConflict):
			w.r.writes.ifMatch = finding(Pass, true, "an update with a stale If-Match was refused (HTTP %d): a newer edit in the EHR is not overwritten", status(err))
		case err == nil:
			w.r.writes.ifMatch = finding(Fail, true, "an update with a stale If-Match succeeded: the EHR ignores If-Match although it declares versioned-update, so a clinician's edit could be overwritten")
		default:
			w.r.writes.ifMatch = finding(verdict(err), true, "an update with a stale If-Match answered %s, not 409 or 412", describe(err))
		}
	}
}

// searchBack finds the test resource the way the plan looks for a record
// before creating it: by identifier, else by patient.
func (w *writeTest) searchBack(ctx context.Context) {
	crit := w.criteria()
	var (
		q   url.Values
		how string
	)
	if crit != "" {
		name, _ := w.rp.Searches("identifier")
		q, how = url.Values{name: {checkSystem + "|" + w.value}}, "by identifier"
	} else if name, ok := w.rp.Searches("patient"); ok && w.r.p.Allows(w.t, "search-type") {
		q, how = url.Values{name: {"Patient/" + w.r.o.TestPatient}}, "by patient (no identifier search declared)"
	} else {
		w.add("search", Omit, false, "%s declares no search by identifier or patient", w.t)
		return
	}
	entries, err := w.r.searchEntries(ctx, w.t, q)
	blocking := w.blocking && w.rp.Idempotency != plan.LedgerOnly
	if err != nil {
		w.add("search", verdict(err), blocking, "searching the test %s %s answered %s", w.t, how, describe(err))
		return
	}
	found := 0
	for _, e := range entries {
		if hasIdentifier(e, w.value) {
			found++
		}
	}
	switch {
	case found == 1:
		w.add("search", Pass, blocking, "found the test %s %s", w.t, how)
	case found == 0 && crit == "" && len(entries) > 0:
		w.add("search", Fail, blocking, "searching %s did not find the test %s on the first page: a retried create may not be recognised for patients with many", how, w.t)
	case found == 0:
		w.add("search", Fail, blocking, "searching %s did not find the test %s: a create whose answer was lost would be repeated", how, w.t)
	default:
		w.add("search", Fail, blocking, "searching %s found %d copies of the test %s", how, found, w.t)
	}
}

// cleanup deletes what the test created, where delete is declared, and
// says what was left behind otherwise.
func (w *writeTest) cleanup(ctx context.Context) {
	if len(w.created) == 0 {
		return
	}
	if !w.r.p.Allows(w.t, "delete") {
		w.add("cleanup", Skip, false, "left behind: %s (%s declares no delete; remove by hand, identifier %s|%s)", w.refs(w.created), w.t, checkSystem, w.value)
		return
	}
	var left []string
	why := ""
	for _, id := range w.created {
		_, err := w.r.client.Do(ctx, ehr.Request{Method: http.MethodDelete, Path: w.t + "/" + id, ResourceType: w.t})
		switch {
		case err != nil:
			left, why = append(left, id), "delete answered "+describe(err)
		case !w.r.p.Allows(w.t, "read"):
		default:
			if _, err := w.r.client.Read(ctx, w.t, id); err == nil {
				left, why = append(left, id), "it still reads back after delete"
			} else if !errors.Is(err, ehr.ErrNotFound) {
				left, why = append(left, id), "reading it after delete answered "+describe(err)
			}
		}
	}
	if len(left) > 0 {
		w.add("cleanup", Fail, false, "left behind: %s (%s; remove by hand, identifier %s|%s)", w.refs(left), why, checkSystem, w.value)
		return
	}
	w.add("cleanup", Pass, false, "deleted %s; it no longer reads back", w.refs(w.created))
}

func (w *writeTest) refs(ids []string) string {
	s := ""
	for i, id := range ids {
		if i > 0 {
			s += ", "
		}
		s += w.t + "/" + id
	}
	return s
}

// body is the test resource, version n. It names no person: only the test
// patient's reference, which the administrator gave.
func (w *writeTest) body(id string, n int) []byte {
	text := fmt.Sprintf("ipsfhir readiness check: test %s, safe to delete (version %d)", w.t, n)
	res := map[string]any{
		"resourceType": w.t,
		"identifier":   []any{map[string]any{"system": checkSystem, "value": w.value}},
		"subject":      map[string]any{"reference": "Patient/" + w.r.o.TestPatient},
	}
	if id != "" {
		res["id"] = id
	}
	switch w.t {
	case "Goal":
		res["lifecycleStatus"] = "proposed"
		res["description"] = map[string]any{"text": text}
	default: // DocumentReference
		res["status"] = "current"
		res["type"] = map[string]any{"text": "ipsfhir readiness check"}
		res["description"] = text
		res["content"] = []any{map[string]any{"attachment": map[string]any{
			"contentType": "text/plain", "data": base64.StdEncoding.EncodeToString([]byte(text)),
		}}}
	}
	b, _ := json.Marshal(res)
	return b
}

// hasIdentifier reports whether resource JSON carries the check's
// identifier with value.
func hasIdentifier(resource []byte, value string) bool {
	var r struct {
		Identifier []struct {
			System string `json:"system"`
			Value  string `json:"value"`
		} `json:"identifier"`
	}
	if json.Unmarshal(resource, &r) != nil {
		return false
	}
	for _, i := range r.Identifier {
		if i.System == checkSystem && i.Value == value {
			return true
		}
	}
	return false
}
