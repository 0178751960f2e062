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
	"time"

	"github.com/ipsfhir/ipsfhir/adapter/ehr"
	"github.com/ipsfhir/ipsfhir/adapter/plan"
	"github.com/ipsfhir/ipsfhir/adapter/store"
	"github.com/ipsfhir/ipsfhir/adapter/telemetry"
	"github.com/ipsfhir/ipsfhir/ips"
	"github.com/ipsfhir/ipsfhir/mappings"

	dtpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/datatypes_go_proto"
	gpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/resources/goal_go_proto"
)

// Winners says which side's value is applied when both the program and the
// clinic changed a goal field since the last sync. The defaults follow the
// design: the clinical side owns clinical status (status, achievement,
// notes); the IPS side owns what the client said (description, target).
type Winners struct {
	Status, Achievement, Notes, Description, Target string // "ips" or "ehr"
}

// DefaultWinners is the policy when a connection configures none.
var DefaultWinners = Winners{Status: "ehr", Achievement: "ehr", Notes: "ehr", Description: "ips", Target: "ips"}

// PullSummary counts what a pull pass did.
type PullSummary struct {
	Seen      int `json:"seen"`
	Echoes    int `json:"echoes"`
	Applied   int `json:"applied"`
	Conflicts int `json:"conflicts"`
	// Referred counts new clients made from referrals (status referred,
	// waiting for a specialist's acceptance); Rereferred counts closed
	// clients referred again (a new episode, waiting likewise).
	Referred   int `json:"referred"`
	Rereferred int `json:"rereferred"`
	Unreadable int `json:"unreadable"`
	// Requeued counts records the EHR did not hold as the adapter last
	// wrote them (a late write, an edit made in the EHR): queued to be
	// written again.
	Requeued int `json:"requeued"`
}

// PullSearcher is the part of an EHR client pull needs.
type PullSearcher interface {
	Search(ctx context.Context, resourceType string, query url.Values) ([]ehr.Entry, error)
}

// DefaultOverlap is how far before the watermark each poll starts again
// unless Engine.Overlap says otherwise: EHR clocks and commit order are not
// exact, and a change committed late with an early timestamp must not be
// missed. Changes seen twice are recognised by version.
const DefaultOverlap = 2 * time.Minute

// pullPageSize is the _count of change polls. With the EHR client's default
// of 100 pages, one poll reads up to 50,000 changed resources; servers cap
// _count at their own maximum and page on.
const pullPageSize = "500"

func (e *Engine) overlap() time.Duration {
	if e.Overlap > 0 {
		return e.Overlap
	}
	return DefaultOverlap
}

// PullOnce reads each connection's changes since its watermark: clinicians'
// changes to goals the adapter wrote, and new referrals to IPS. A failing
// connection does not stop the others: every connection is pulled, and the
// error joins each failed connection's error (see ConnectionError).
func (e *Engine) PullOnce(ctx context.Context) (PullSummary, error) {
	var (
		total PullSummary
		errs  []error
	)
	for _, conn := range e.Connections {
		s, err := e.PullConnection(ctx, conn)
		total.add(s)
		if err != nil {
			if ctx.Err() != nil {
				return total, err
			}
			errs = append(errs, err)
		}
	}
	return total, errors.Join(errs...)
}

// PullConnection pulls one connection, in one span. Its error is a
// *ConnectionError naming the connection.
func (e *Engine) PullConnection(ctx context.Context, conn *Connection) (PullSummary, error) {
	var total PullSummary
	cctx, end := e.runSpan(ctx, conn.Name, telemetry.DirectionPull)
	s, err := e.pullGoals(cctx, conn)
	total.add(s)
	for _, typ := range []string{"CarePlan", "Observation", "DocumentReference", "Practitioner", "CareTeam"} {
		if err != nil {
			break
		}
		s, err = e.pullWritten(cctx, conn, typ)
		total.add(s)
	}
	if err == nil {
		s, err = e.pullReferrals(cctx, conn)
		total.add(s)
	}
	e.recordRun(ctx, conn.Name, telemetry.DirectionPull, err)
	end(err)
	e.audit(ctx, conn.Name, telemetry.DirectionPull, total.Seen, err)
	if err != nil {
		return total, &ConnectionError{Connection: conn.Name, Direction: telemetry.DirectionPull, Err: err}
	}
	return total, nil
}

func (s *PullSummary) add(o PullSummary) {
	s.Seen += o.Seen
	s.Echoes += o.Echoes
	s.Applied += o.Applied
	s.Conflicts += o.Conflicts
	s.Referred += o.Referred
	s.Rereferred += o.Rereferred
	s.Unreadable += o.Unreadable
	s.Requeued += o.Requeued
}

// changedSince searches resourceType for what changed after the watermark,
// the way the plan says changes can be found. It returns the entries and the
// new watermark; full reconcile returns everything for the given patients.
func (e *Engine) changedSince(ctx context.Context, conn *Connection, typ string, patients func() ([]string, error)) ([]ehr.Entry, time.Time, error) {
	rp := conn.Plan.Type(typ)
	wm, err := e.Store.Watermark(ctx, conn.Name, typ)
	if err != nil {
		return nil, wm, fmt.Errorf("%w: watermark: %w", errStore, err)
	}
	since := wm.Add(-e.overlap())
	started := e.now()
	searcher, ok := conn.EHR.(PullSearcher)
	if !ok {
		return nil, wm, errors.New("EHR client cannot search")
	}
	switch rp.Detection {
	case plan.LastUpdated, plan.DateParameter:
		param := rp.LastUpdatedParam
		if rp.Detection == plan.DateParameter {
			param = rp.DateParam
		}
		// Large pages: the client follows at most its page limit, and a
		// first poll reads every resource of the type.
		q := url.Values{"_count": {pullPageSize}}
		if !wm.IsZero() {
			q.Set(param, "gt"+since.UTC().Format(time.RFC3339))
		}
		entries, err := searcher.Search(ctx, typ, q)
		return entries, started, err
	case plan.FullReconcile:
		ids, err := patients()
		if err != nil {
			return nil, wm, err
		}
		name, _ := rp.Searches("patient")
		var all []ehr.Entry
		for _, id := range ids {
			entries, err := searcher.Search(ctx, typ, url.Values{name: {id}})
			if err != nil {
				return nil, wm, err
			}
			all = append(all, entries...)
		}
		return all, started, nil
	}
	return nil, wm, nil
}

// pullGoals brings back clinicians' changes to goals the adapter wrote.
func (e *Engine) pullGoals(ctx context.Context, conn *Connection) (PullSummary, error) {
	var s PullSummary
	if conn.Plan.Concept(plan.Goal).Path != plan.Native || !conn.Plan.Allows("Goal", "search-type") {
		return s, nil
	}
	seen := e.now()
	entries, newWM, err := e.changedSince(ctx, conn, "Goal", func() ([]string, error) { return e.knownPatients(ctx, conn) })
	if err != nil {
		return s, err
	}
	program := conn.Mapping.Program
	for _, en := range entries {
		if en.Mode != "" && en.Mode != "match" {
			continue
		}
		cr, err := mappings.ParseResource(en.Resource)
		if err != nil || cr.GetGoal() == nil {
			s.Unreadable++
			continue
		}
		g := cr.GetGoal()
		key, _, err := mappings.GoalFromFHIR(g)
		if err != nil || key.Program != program {
			continue // not one of ours (a clinician's own goal), or unreadable
		}
		s.Seen++
		out, err := e.pullGoal(ctx, conn, key, g, en.Resource, true, seen)
		if err != nil {
			// The watermark stays: the next pull reads this change again.
			return s, err
		}
		s.add(out)
	}
	if err := e.Store.SetWatermark(ctx, conn.Name, "Goal", newWM); err != nil {
		return s, fmt.Errorf("%w: watermark: %w", errStore, err)
	}
	return s, nil
}

// pullWritten checks what changed in the EHR among the resources of typ
// the adapter writes there (the plan, job and status Observations, the
// chart note), against what the ledger says the EHR holds. The program owns
// these, so nothing flows back into the IPS record; but when the EHR holds
// something else (an older write of the adapter's that landed late, or an
// edit made in the EHR), the record is queued to be written again, and an
// edit made in the EHR is recorded as a conflict the IPS side wins. Polled
// only where the EHR can say what changed since a time.
func (e *Engine) pullWritten(ctx context.Context, conn *Connection, typ string) (PullSummary, error) {
	var s PullSummary
	rp := conn.Plan.Type(typ)
	if rp == nil || !conn.Plan.Allows(typ, "search-type") || !writesNatively(conn.Plan, typ) ||
		(rp.Detection != plan.LastUpdated && rp.Detection != plan.DateParameter) {
		return s, nil
	}
	seen := e.now()
	entries, newWM, err := e.changedSince(ctx, conn, typ, nil)
	if err != nil {
		return s, err
	}
	for _, en := range entries {
		seen := seen
		if en.Mode != "" && en.Mode != "match" {
			continue
		}
		var r struct {
			ID   string `json:"id"`
			Meta struct {
				VersionID string `json:"versionId"`
			} `json:"meta"`
			Identifier []struct {
				System string `json:"system"`
				Value  string `json:"value"`
			} `json:"identifier"`
		}
		if json.Unmarshal(en.Resource, &r) != nil {
			s.Unreadable++
			continue
		}
		var lk string
		for _, id := range r.Identifier {
			if k, ok := mappings.ParseKey(id.System, id.Value); ok && k.Program == conn.Mapping.Program {
				lk = ledgerKey(k)
				break
			}
		}
		if lk == "" {
			if typ == "CarePlan" {
				// Perhaps a client's treatment plan: the link may change.
				if err := e.treatmentPlanChanged(ctx, conn, en.Resource); err != nil {
					return s, err
				}
			}
			continue // not the adapter's
		}
		le, err := e.Store.LedgerGet(ctx, conn.Name, lk)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return s, fmt.Errorf("%w: ledger: %w", errStore, err)
		}
		s.Seen++
		if r.Meta.VersionID != "" && le.VersionID == r.Meta.VersionID && le.ResourceID == r.ID {
			s.Echoes++
			continue
		}
		body := []byte(en.Resource) // what h is the hash of
		h, err := e.canonicalHash(ctx, conn, typ, body)
		if errors.Is(err, errStore) {
			return s, err
		}
		if err != nil {
			h = ""
		}
		if h != le.ContentHash && conn.Plan.Allows(typ, "read") {
			// The search result may be older than a write a concurrent
			// push made since: judge what the EHR holds now.
			seen = e.now()
			resp, err := conn.EHR.Read(ctx, typ, r.ID)
			if errors.Is(err, ehr.ErrNotFound) {
				continue
			}
			if err != nil {
				return s, err
			}
			now, err := e.Store.LedgerGet(ctx, conn.Name, lk)
			if err != nil {
				return s, fmt.Errorf("%w: ledger: %w", errStore, err)
			}
			if now.VersionID != le.VersionID || now.ContentHash != le.ContentHash {
				s.Echoes++ // a push wrote it meanwhile; the next pull checks again
				continue
			}
			// The attempts a push recorded since the first read count:
			// what was just read may be that push's write.
			le = now
			r.Meta.VersionID, body = resp.VersionID, resp.Body
			if h, err = e.canonicalHash(ctx, conn, typ, body); errors.Is(err, errStore) {
				return s, err
			} else if err != nil {
				h = ""
			}
		}
		if (h != "" && h == le.ContentHash) || (r.Meta.VersionID != "" && r.Meta.VersionID == le.VersionID) {
			// The adapter's own write, under a version the ledger had
			// not learned (an answer without one, or a lost answer).
			s.Echoes++
			if h == "" {
				h = le.ContentHash
			}
		} else {
			if h != "" && !e.ours(conn, le, h, lastUpdated(body)) {
				if err := e.recordResourceConflict(ctx, conn, keyOfLedger(lk), le, &current{id: r.ID, version: r.Meta.VersionID}, le.ContentHash, le.ClientID); err != nil {
					return s, err
				}
				s.Conflicts++
				e.record(ctx, conn.Name, typ, telemetry.OutcomeConflict, nil)
			}
			if !inFlight(le, h) {
				if err := e.Store.Enqueue(ctx, conn.Name, le.ClientID); err != nil {
					return s, fmt.Errorf("%w: enqueue: %w", errStore, err)
				}
				s.Requeued++
			}
		}
		le.ResourceID, le.VersionID, le.ContentHash, le.UpdatedAt = r.ID, r.Meta.VersionID, h, e.now()
		if err := e.ledgerLearn(ctx, le, seen); err != nil {
			return s, fmt.Errorf("%w: ledger: %w", errStore, err)
		}
	}
	if err := e.Store.SetWatermark(ctx, conn.Name, typ, newWM); err != nil {
		return s, fmt.Errorf("%w: watermark: %w", errStore, err)
	}
	return s, nil
}

// ledgerLearn records what a pull learned of a record in the EHR (id,
// version, content, base), from a search or read sent at seen. A pull
// holds no lease, so a push of the same client may have recorded an
// attempt since the pull read the row: the attempts are taken from the row
// as it is now, never from the pull's copy, less those the EHR can no
// longer apply now that it was seen on this version (a clinician who sets a
// goal back to what such a write sent is not taken for that write).
func (e *Engine) ledgerLearn(ctx context.Context, le store.LedgerEntry, seen time.Time) error {
	now, err := e.Store.LedgerGet(ctx, le.Connection, le.Key)
	switch {
	case err == nil:
		le.Attempted = store.WithoutSuperseded(now.Attempted, le.VersionID, seen)
	case !errors.Is(err, store.ErrNotFound):
		return err
	}
	return e.Store.LedgerPut(ctx, le)
}

// inFlight reports whether hash is a write the adapter sent after the
// ledger last recorded an answer (or what a pull learned): a write still in
// flight, whose worker will record it. Queuing the record again for it would
// push it twice. An attempt older than that answer showing up is a write
// that landed late, over a newer one.
func inFlight(le store.LedgerEntry, hash string) bool {
	for _, a := range le.Attempted {
		if a.Hash == hash && a.At.After(le.UpdatedAt) {
			return true
		}
	}
	return false
}

// writesNatively reports whether the plan writes some concept as a
// resource of typ.
func writesNatively(p *plan.Plan, typ string) bool {
	for _, cp := range p.Concepts {
		if cp.Path == plan.Native && cp.ResourceType == typ {
			return true
		}
	}
	return false
}

// keyOfLedger turns a ledger key back into the record's key.
func keyOfLedger(lk string) mappings.Key {
	sys, val, _ := strings.Cut(lk, "|")
	k, _ := mappings.ParseKey(sys, val)
	return k
}

// pullGoal settles one goal the adapter wrote, as a pull found it in the
// EHR: an echo of the adapter's own write, or a change to merge. A search
// result may be older than what a concurrent push (another worker, another
// replica) has written since; before anything is merged into the IPS
// record the goal is read again where the EHR allows, so the merge works on
// what the EHR holds now, never on a stale copy that would revert the
// program's newer edit.
func (e *Engine) pullGoal(ctx context.Context, conn *Connection, key mappings.Key, g *gpb.Goal, raw []byte, snapshot bool, seen time.Time) (PullSummary, error) {
	var s PullSummary
	version := g.GetMeta().GetVersionId().GetValue()
	le, err := e.Store.LedgerGet(ctx, conn.Name, ledgerKey(key))
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return s, fmt.Errorf("%w: ledger: %w", errStore, err)
	}
	known := err == nil
	if known && version != "" && le.VersionID == version {
		s.Echoes++ // the adapter's own write, or a change already applied
		return s, nil
	}
	{
		// A version the ledger does not know may still hold the
		// adapter's own content: a write answered without a version, or
		// one whose answer was lost. A goal under the adapter's
		// identifier that the ledger knows nothing of (its row lost, or
		// written by an earlier installation) is taken as the adapter's
		// too: the program's record is the source of truth for it, and
		// the next push writes it with the version learned here.
		form, err := e.canonicalForm(ctx, conn, "Goal", raw)
		if errors.Is(err, errStore) {
			return s, err
		}
		h := hashBytes(form)
		mine := !known
		if err == nil && known {
			cur := &current{id: g.GetId().GetValue(), version: version, hash: h, updated: lastUpdated(raw)}
			if mine, err = e.ownContent(ctx, conn, "Goal", &le, cur); err != nil {
				return s, err
			}
		}
		if err == nil && mine {
			if !known {
				le = store.LedgerEntry{Connection: conn.Name, Key: ledgerKey(key), ClientID: key.Client, ResourceType: "Goal"}
			}
			// The EHR holds something other than what the ledger last
			// confirmed (an older write landed late): the program's
			// record goes again.
			requeue := h != le.ContentHash && !inFlight(le, h)
			le.VersionID, le.ContentHash, le.ResourceID, le.UpdatedAt = version, h, g.GetId().GetValue(), e.now()
			le.Base = form
			if err := e.ledgerLearn(ctx, le, seen); err != nil {
				return s, fmt.Errorf("%w: ledger: %w", errStore, err)
			}
			s.Echoes++
			if requeue {
				if err := e.Store.Enqueue(ctx, conn.Name, key.Client); err != nil {
					return s, fmt.Errorf("%w: enqueue: %w", errStore, err)
				}
				s.Requeued++
			}
			return s, nil
		}
	}
	if snapshot && conn.Plan.Allows("Goal", "read") && g.GetId().GetValue() != "" {
		seen := e.now()
		resp, err := conn.EHR.Read(ctx, "Goal", g.GetId().GetValue())
		if errors.Is(err, ehr.ErrNotFound) {
			return s, nil // deleted in the EHR since
		}
		if err != nil {
			return s, err
		}
		cr, err := mappings.ParseResource(resp.Body)
		if err != nil || cr.GetGoal() == nil {
			s.Unreadable++
			return s, nil
		}
		return e.pullGoal(ctx, conn, key, cr.GetGoal(), resp.Body, false, seen)
	}
	_, ehrGoal, err := mappings.GoalFromFHIR(g)
	if err != nil {
		s.Unreadable++
		return s, nil
	}
	r, err := e.applyGoalChange(ctx, conn, key, ehrGoal, le, version, g.GetId().GetValue(), seen)
	if err != nil {
		return s, err
	}
	if r.saved {
		s.Applied++
	}
	if r.moved {
		s.Echoes++
	}
	s.Conflicts += r.conflicts
	if r.conflicts > 0 {
		e.record(ctx, conn.Name, "Goal", telemetry.OutcomeConflict, nil)
	}
	return s, nil
}

// goalMerge is what applyGoalChange did.
type goalMerge struct {
	// saved: the client was saved with values taken from the EHR (or, from
	// a pull, to queue the IPS side's winning values for the EHR).
	saved     bool
	conflicts int
	// moved: the ledger changed since the caller read it (a push wrote the
	// goal meanwhile), so the EHR copy in hand may be older than what the
	// adapter wrote; nothing was merged.
	moved bool
}

// mergeAttempts bounds how often applyGoalChange re-reads a client that
// was saved by someone else between its read and its save.
const mergeAttempts = 5

// applyGoalChange merges the EHR's version of a goal into the IPS store. A
// field that only the clinic changed takes the clinic's value; a field both
// sides changed since the last sync becomes a conflict record, with the
// configured winner applied. The ledger then records the EHR version and
// the EHR's content, so this change is not echoed back and a later push
// sends only what the IPS side won.
//
// When a concurrent save wins (the specialist edits the client meanwhile),
// the client is read again and the merge redone, so the clinician's change
// is never dropped; if it keeps losing, the error leaves the pull's
// watermark where it was. A merge that takes nothing from the EHR saves
// nothing, unless the IPS side's values must go back to the EHR (a pull
// then saves to queue that push).
func (e *Engine) applyGoalChange(ctx context.Context, conn *Connection, key mappings.Key, ehrGoal *ips.Goal, le store.LedgerEntry, version, resourceID string, seen time.Time) (goalMerge, error) {
	o := conn.Mapping
	o.Now = time.Time{}
	w := conn.winners()
	for attempt := 1; ; attempt++ {
		var r goalMerge
		if now, err := e.Store.LedgerGet(ctx, conn.Name, ledgerKey(key)); err == nil &&
			(now.VersionID != le.VersionID || now.ContentHash != le.ContentHash) {
			// A push wrote the goal since this copy was read: merging the
			// copy could revert what it wrote. A change the clinician made
			// before that push met its If-Match and was merged there; the
			// next pull sees anything later.
			r.moved = true
			return r, nil
		} else if err != nil && !errors.Is(err, store.ErrNotFound) {
			return r, fmt.Errorf("%w: ledger: %w", errStore, err)
		}
		c, ver, err := e.Store.GetClient(ctx, key.Client)
		if errors.Is(err, store.ErrNotFound) {
			return r, nil
		}
		if err != nil {
			return r, fmt.Errorf("%w: get client: %w", errStore, err)
		}
		full := c.Goal(key.Record)
		if full == nil {
			return r, nil // deleted on the IPS side since
		}
		// The merge works on the goal as this connection sees it (without
		// other clinics' notes it may not see); what it takes is folded
		// back into the program's record below.
		view := *full
		view.Notes = slices.DeleteFunc(slices.Clone(full.Notes), func(n ips.Note) bool { return !e.noteVisible(conn, n) })
		g := &view
		ipsHash, err := contentHash(wrap(mappings.Goal(c, g, o)))
		if err != nil {
			return r, &pushError{msg: "pull: encode Goal"}
		}
		ehrHash, err := contentHash(wrap(mappings.Goal(c, ehrGoal, o)))
		if err != nil {
			return r, &pushError{msg: "pull: encode Goal"}
		}
		ipsChanged := le.ContentHash != "" && ipsHash != le.ContentHash
		base := baseGoal(le)
		var conflicts []store.Conflict
		took := false
		for _, f := range goalFields {
			if f.same(g, ehrGoal) {
				continue
			}
			// Who changed the field since the last sync: with the base
			// the EHR held then, each side's change is known field by
			// field; without it, any IPS change since then makes every
			// differing field a conflict.
			bothChanged := ipsChanged
			if base != nil {
				ipsField, ehrField := !f.same(g, base), !f.same(ehrGoal, base)
				if !ehrField {
					continue // only the program changed it: it stays, and goes to the EHR
				}
				bothChanged = ipsField
			}
			if bothChanged {
				// Each field's take below sets that field alone, so g
				// still holds the IPS side's value of this one.
				winner := f.winner(w)
				conflicts = append(conflicts, store.Conflict{Connection: conn.Name, ClientID: c.ID, Key: ledgerKey(key), Field: f.name,
					IPSValue: f.text(g), EHRValue: f.text(ehrGoal), Winner: winner, CreatedAt: e.now()})
				if winner != "ehr" {
					continue
				}
			}
			f.take(g, ehrGoal)
			took = true
		}
		mergedHash := ipsHash
		if took {
			if mergedHash, err = contentHash(wrap(mappings.Goal(c, g, o))); err != nil {
				return r, &pushError{msg: "pull: encode Goal"}
			}
		}
		if took {
			notes := e.foldNotes(conn, full.Notes, g.Notes)
			*full = *g
			full.Notes = notes
		}
		if took || mergedHash != ehrHash {
			_, err := e.Store.SaveClients(ctx, []store.Stored{{Client: c, Version: ver}}, e.connectionNames())
			if errors.Is(err, store.ErrConflict) {
				if attempt < mergeAttempts {
					continue // saved meanwhile: merge into what is there now
				}
				return r, &pushError{msg: "pull: the client kept changing during the merge"}
			}
			if err != nil {
				return r, fmt.Errorf("%w: save client: %w", errStore, err)
			}
			r.saved = true
		}
		for _, cf := range conflicts {
			if _, err := e.Store.AddConflict(ctx, cf); err != nil {
				return r, fmt.Errorf("%w: conflict: %w", errStore, err)
			}
		}
		r.conflicts = len(conflicts)
		// The ledger learns the EHR's version and what the EHR now holds,
		// so this change is not echoed back and a later push sends only
		// what the IPS side won.
		ehrForm, err := mappings.MarshalCompact(wrap(mappings.Goal(c, ehrGoal, o)))
		if err != nil {
			return r, &pushError{msg: "pull: encode Goal"}
		}
		if err := e.ledgerLearn(ctx, store.LedgerEntry{Connection: conn.Name, Key: ledgerKey(key), ClientID: c.ID,
			ResourceType: "Goal", ResourceID: resourceID, VersionID: version, ContentHash: ehrHash, UpdatedAt: e.now(),
			Attempted: le.Attempted, Base: ehrForm}, seen); err != nil {
			return r, fmt.Errorf("%w: ledger: %w", errStore, err)
		}
		return r, nil
	}
}

// baseGoal reads the goal as the EHR held it at the last sync, or nil.
func baseGoal(le store.LedgerEntry) *ips.Goal {
	if len(le.Base) == 0 {
		return nil
	}
	cr, err := mappings.ParseResource(le.Base)
	if err != nil || cr.GetGoal() == nil {
		return nil
	}
	_, g, err := mappings.GoalFromFHIR(cr.GetGoal())
	if err != nil {
		return nil
	}
	return g
}

// goalField is one field of a goal that both sides edit, as the merge
// (applyGoalChange) and a conflict's resolution (ResolveConflict) both
// handle it: the name a store.Conflict records, the text it keeps of each
// side's value, and how that text is read back. The two share these
// definitions, so that a value a conflict kept is read back exactly as the
// merge rendered it.
type goalField struct {
	name string
	// winner is the field's winner among a connection's Winners.
	winner func(Winners) string
	// same compares the field of two goals as an EHR holds them.
	same func(a, b *ips.Goal) bool
	// take sets the field of dst to src's.
	take func(dst, src *ips.Goal)
	// text renders the field of g as a conflict keeps it.
	text func(g *ips.Goal) string
	// parse reads what text rendered back into the field of g. It fails
	// on text text would not have rendered.
	parse func(s string, g *ips.Goal) error
}

// goalFields are the goal fields the merge compares, in the order it
// records their conflicts.
var goalFields = []goalField{
	{
		name:   "status",
		winner: func(w Winners) string { return w.Status },
		same:   func(a, b *ips.Goal) bool { return a.Status == b.Status },
		take:   func(dst, src *ips.Goal) { dst.Status = src.Status },
		text:   func(g *ips.Goal) string { return string(g.Status) },
		parse: func(s string, g *ips.Goal) error {
			if !slices.Contains(ips.GoalStatuses, ips.GoalStatus(s)) {
				return errors.New("not a goal status")
			}
			g.Status = ips.GoalStatus(s)
			return nil
		},
	},
	{
		name:   "achievement",
		winner: func(w Winners) string { return w.Achievement },
		same:   func(a, b *ips.Goal) bool { return a.Achievement == b.Achievement },
		take:   func(dst, src *ips.Goal) { dst.Achievement = src.Achievement },
		text:   func(g *ips.Goal) string { return string(g.Achievement) },
		parse: func(s string, g *ips.Goal) error {
			if s != "" && !slices.Contains(ips.GoalAchievements, ips.GoalAchievement(s)) {
				return errors.New("not a goal achievement")
			}
			g.Achievement = ips.GoalAchievement(s)
			return nil
		},
	},
	{
		name:   "notes",
		winner: func(w Winners) string { return w.Notes },
		same:   func(a, b *ips.Goal) bool { return sameNotes(a.Notes, b.Notes) },
		take:   func(dst, src *ips.Goal) { dst.Notes = src.Notes },
		text:   func(g *ips.Goal) string { return notesText(g.Notes) },
		parse: func(s string, g *ips.Goal) error {
			var ns []ips.Note
			if err := json.Unmarshal([]byte(s), &ns); err != nil {
				return errors.New("not a list of notes")
			}
			g.Notes = ns
			return nil
		},
	},
	{
		name:   "description",
		winner: func(w Winners) string { return w.Description },
		same:   func(a, b *ips.Goal) bool { return a.Description == b.Description },
		take:   func(dst, src *ips.Goal) { dst.Description = src.Description },
		text:   func(g *ips.Goal) string { return g.Description },
		parse:  func(s string, g *ips.Goal) error { g.Description = s; return nil },
	},
	{
		name:   "target",
		winner: func(w Winners) string { return w.Target },
		same:   sameTarget,
		take:   func(dst, src *ips.Goal) { dst.TargetHoursPerWeek, dst.Due = src.TargetHoursPerWeek, src.Due },
		text:   targetText,
		parse:  parseTarget,
	},
}

// goalFieldNamed returns the goal field a conflict names.
func goalFieldNamed(name string) (goalField, bool) {
	for _, f := range goalFields {
		if f.name == name {
			return f, true
		}
	}
	return goalField{}, false
}

func sameTarget(a, b *ips.Goal) bool {
	if (a.TargetHoursPerWeek == nil) != (b.TargetHoursPerWeek == nil) {
		return false
	}
	if a.TargetHoursPerWeek != nil && *a.TargetHoursPerWeek != *b.TargetHoursPerWeek {
		return false
	}
	return a.Due == b.Due
}

func targetText(g *ips.Goal) string {
	s := ""
	if g.TargetHoursPerWeek != nil {
		s = fmt.Sprintf("%g h/wk", *g.TargetHoursPerWeek)
	}
	if !g.Due.IsZero() {
		s += " by " + g.Due.String()
	}
	return strings.TrimSpace(s)
}

// parseTarget reads what targetText wrote: "N h/wk by YYYY-MM-DD",
// "N h/wk", "by YYYY-MM-DD" or "".
func parseTarget(s string, g *ips.Goal) error {
	var hours *float64
	var due ips.Date
	rest := s
	if h, after, ok := strings.Cut(rest, " h/wk"); ok {
		v, err := strconv.ParseFloat(h, 64)
		if err != nil {
			return errors.New("not a number of hours")
		}
		hours, rest = &v, strings.TrimPrefix(after, " ")
	}
	if d, ok := strings.CutPrefix(rest, "by "); ok {
		v, err := ips.ParseDate(d)
		if err != nil {
			return err
		}
		due, rest = v, ""
	}
	if rest != "" {
		return errors.New("not a target")
	}
	g.TargetHoursPerWeek, g.Due = hours, due
	return nil
}

func notesText(ns []ips.Note) string {
	b, _ := json.Marshal(ns)
	return string(b)
}

func (c *Connection) winners() Winners {
	if c.Winners != (Winners{}) {
		return c.Winners
	}
	return DefaultWinners
}

func (e *Engine) connectionNames() []string {
	if e.queueFor != nil {
		return e.queueFor()
	}
	if e.QueueFor != nil {
		return e.QueueFor
	}
	names := make([]string, len(e.Connections))
	for i, c := range e.Connections {
		names[i] = c.Name
	}
	return names
}

// knownPatients lists the EHR patient references the adapter has resolved on
// a connection, for full-reconcile searches.
func (e *Engine) knownPatients(ctx context.Context, conn *Connection) ([]string, error) {
	var out []string
	after := ""
	for {
		page, err := e.Store.ListClients(ctx, after, 200)
		if err != nil {
			return nil, fmt.Errorf("%w: list clients: %w", errStore, err)
		}
		if len(page) == 0 {
			return out, nil
		}
		for _, st := range page {
			p := st.Client.Patient
			le, err := e.Store.LedgerGet(ctx, conn.Name, "Patient|"+p.System+"|"+p.Value)
			if err == nil && le.ResourceID != "" {
				out = append(out, "Patient/"+le.ResourceID)
			}
		}
		after = page[len(page)-1].Client.ID
	}
}

// pullReferrals takes in the referrals to this program made in the EHR.
// IPS has zero exclusion: there is no eligibility check. A referral of a
// new patient makes a referred client, one of a closed client opens a new
// episode, and one of a client in the program is remembered and changes
// nothing (ips.Client.Refer); enrollment is a specialist's acceptance.
func (e *Engine) pullReferrals(ctx context.Context, conn *Connection) (PullSummary, error) {
	var s PullSummary
	if conn.Plan.Concept(plan.Referral).Path != plan.ReadOnly {
		return s, nil
	}
	entries, newWM, err := e.changedSince(ctx, conn, "ServiceRequest", func() ([]string, error) { return e.knownPatients(ctx, conn) })
	if err != nil {
		return s, err
	}
	for _, en := range entries {
		if en.Mode != "" && en.Mode != "match" {
			continue
		}
		cr, err := mappings.ParseResource(en.Resource)
		if err != nil || cr.GetServiceRequest() == nil {
			s.Unreadable++
			continue
		}
		sr := cr.GetServiceRequest()
		if !mappings.IsIPSReferral(sr, conn.Referrals) {
			continue
		}
		s.Seen++
		lk := "ServiceRequest|" + sr.GetId().GetValue()
		if _, err := e.Store.LedgerGet(ctx, conn.Name, lk); err == nil {
			continue // taken in already
		} else if !errors.Is(err, store.ErrNotFound) {
			return s, fmt.Errorf("%w: ledger: %w", errStore, err)
		}
		c, err := mappings.ReferralFromFHIR(sr, mappings.ReferralOptions{PatientSystem: conn.PatientSystem, Connection: conn.Name})
		if errors.Is(err, mappings.ErrNotActiveReferral) {
			continue // a draft is read again when it becomes active
		}
		if err != nil {
			s.Unreadable++
			continue
		}
		out, clientID, err := e.takeInReferral(ctx, conn, sr.GetSubject(), c)
		if err != nil {
			return s, err
		}
		s.add(out)
		if err := e.Store.LedgerPut(ctx, store.LedgerEntry{Connection: conn.Name, Key: lk, ClientID: clientID, ResourceType: "ServiceRequest",
			ResourceID: sr.GetId().GetValue(), VersionID: sr.GetMeta().GetVersionId().GetValue(), UpdatedAt: e.now()}); err != nil {
			return s, fmt.Errorf("%w: ledger: %w", errStore, err)
		}
	}
	if err := e.Store.SetWatermark(ctx, conn.Name, "ServiceRequest", newWM); err != nil {
		return s, fmt.Errorf("%w: watermark: %w", errStore, err)
	}
	return s, nil
}

// takeInReferral applies one referral: a new referred client (ref), or
// the referral of the existing client of the same patient. It returns the
// id of the client the referral concerns.
func (e *Engine) takeInReferral(ctx context.Context, conn *Connection, subject *dtpb.Reference, ref *ips.Client) (PullSummary, string, error) {
	var s PullSummary
	for attempt := 1; ; attempt++ {
		st, err := e.clientOfReferral(ctx, conn, subject)
		if err != nil {
			return s, "", err
		}
		if st.Client == nil {
			_, err := e.Store.SaveClients(ctx, []store.Stored{{Client: ref}}, e.connectionNames())
			switch {
			case err == nil:
				s.Referred++
				return s, ref.ID, nil
			case errors.Is(err, store.ErrConflict) && attempt < mergeAttempts:
				continue // the patient's client (or this id) was saved meanwhile
			case errors.Is(err, store.ErrConflict):
				return s, ref.ID, nil // the client exists: nothing to add
			}
			return s, "", fmt.Errorf("%w: refer: %w", errStore, err)
		}
		c := st.Client
		if c.Refer(ref.ReferredOn, ref.Referral) == ips.ReferralIgnored {
			return s, c.ID, nil // in the program already: remembered only
		}
		_, err = e.Store.SaveClients(ctx, []store.Stored{{Client: c, Version: st.Version}}, e.connectionNames())
		switch {
		case err == nil:
			s.Rereferred++
			return s, c.ID, nil
		case errors.Is(err, store.ErrConflict) && attempt < mergeAttempts:
			continue // saved meanwhile: refer what is there now
		case errors.Is(err, store.ErrConflict):
			return s, "", &pushError{msg: "pull: the client kept changing while a referral was taken in"}
		}
		return s, "", fmt.Errorf("%w: refer: %w", errStore, err)
	}
}

// clientOfReferral finds the client a referral's patient already is, or
// returns a zero Stored: one the adapter has synced on this connection
// (the ledger maps each client's patient identifier to the EHR's Patient
// id, which is how referrals usually name the patient), or one whose
// patient identifier the referral names, pushed or not (the store keeps
// one client per patient).
func (e *Engine) clientOfReferral(ctx context.Context, conn *Connection, subject *dtpb.Reference) (store.Stored, error) {
	var system, value string
	if id := subject.GetPatientId().GetValue(); id != "" {
		le, err := e.Store.LedgerByResource(ctx, conn.Name, "Patient", id)
		switch {
		case err == nil:
			// The entry's key is Patient|{system}|{value}: the client's
			// own identifier.
			rest, _ := strings.CutPrefix(le.Key, "Patient|")
			if i := strings.LastIndexByte(rest, '|'); i > 0 {
				st, err := e.Store.ClientByPatient(ctx, rest[:i], rest[i+1:])
				if err == nil || !errors.Is(err, store.ErrNotFound) {
					return wrapClientByPatient(st, err)
				}
			}
		case !errors.Is(err, store.ErrNotFound):
			return store.Stored{}, fmt.Errorf("%w: ledger: %w", errStore, err)
		}
		system, value = conn.PatientSystem, id
	} else if ident := subject.GetIdentifier(); ident.GetValue().GetValue() != "" {
		system, value = ident.GetSystem().GetValue(), ident.GetValue().GetValue()
	}
	if system == "" || value == "" {
		return store.Stored{}, nil
	}
	st, err := e.Store.ClientByPatient(ctx, system, value)
	if errors.Is(err, store.ErrNotFound) {
		return store.Stored{}, nil
	}
	return wrapClientByPatient(st, err)
}

func wrapClientByPatient(st store.Stored, err error) (store.Stored, error) {
	if err != nil {
		return store.Stored{}, fmt.Errorf("%w: client by patient: %w", errStore, err)
	}
	return st, nil
}
