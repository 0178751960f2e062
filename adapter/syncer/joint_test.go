package syncer

import (
	"fmt"
	"strings"
	"testing"

	"github.com/ipsfhir/ipsfhir/ips"
	"github.com/ipsfhir/ipsfhir/mappings"
)

// TestJointTransactionsWriteWhatSingleOnesWrite: the clients a worker
// leases together go in joint transactions (fewer requests than clients),
// and the outcome is the one of a Bundle per client: the same records
// written once each, with their Provenances, the same ledger; a client
// whose goal the peer rejects (a description of blanks: 400) fails alone,
// with the reason it fails with alone, and the others are written. Its
// retry fails the same way, the others sending nothing.
func TestJointTransactionsWriteWhatSingleOnesWrite(t *testing.T) {
	t.Parallel()
	var bad string
	blank := func(cl *ips.Caseload) {
		for _, c := range consenting(cl)[3:] {
			if len(c.Goals) > 0 {
				c.Goals[0].Description = "   "
				bad = c.ID
				return
			}
		}
	}
	type outcome struct {
		first, retry PushSummary
		bundles      int
		ledger       map[string]string
	}
	run := func(t *testing.T, joint bool) outcome {
		r := newRig(t, "", blank)
		ctx := t.Context()
		if !joint {
			r.engine.leaseBatch = 1
		}
		cnt := &countingEHR{EHR: r.conn.EHR}
		r.conn.EHR = cnt
		r.enqueueAll(t)
		var o outcome
		var err error
		if o.first, err = r.engine.PushOnce(ctx); err != nil {
			t.Fatal(err)
		}
		o.bundles = cnt.bundles
		if cnt.creates+cnt.updates != 1 {
			t.Errorf("joint %v: %d single creates and %d updates, want only the rejected goal's create", joint, cnt.creates, cnt.updates)
		}
		for _, k := range []struct {
			typ  string
			kind mappings.Kind
		}{{"Goal", mappings.KindGoal}, {"CarePlan", mappings.KindPlan}, {"Observation", mappings.KindJob}} {
			for v, n := range r.countByIdentifier(t, k.typ, k.kind) {
				if n != 1 {
					t.Errorf("joint %v: %s %s written %d times", joint, k.typ, v, n)
				}
			}
		}
		makeDue(t, r)
		if o.retry, err = r.engine.PushOnce(ctx); err != nil {
			t.Fatal(err)
		}
		o.ledger = map[string]string{}
		m := r.conn.Mapping
		for _, c := range consenting(r.cl) {
			keys := []string{ledgerKey(m.PlanKey(c)), patientKey(c.Patient), treatmentPlanKey(c.ID)}
			for _, g := range c.Goals {
				keys = append(keys, ledgerKey(m.GoalKey(c, g)))
			}
			for _, j := range c.Jobs {
				keys = append(keys, ledgerKey(m.JobKey(c, j)))
			}
			rows, err := r.store.LedgerGetMany(ctx, "clinic", keys)
			if err != nil {
				t.Fatal(err)
			}
			for k, le := range rows {
				o.ledger[k] = fmt.Sprintf("%s %s %v %d", le.ResourceType, le.ContentHash, le.ResourceID != "", len(le.Attempted))
			}
		}
		return o
	}
	single, joint := run(t, false), run(t, true)
	if bad == "" {
		t.Fatal("no client with a goal to blank")
	}
	const reason = "create Goal: invalid (HTTP 400) issues structure"
	for name, o := range map[string]outcome{"single": single, "joint": joint} {
		if o.first.Failed != 1 || o.first.Failures[reason] != 1 || o.first.Written == 0 || o.first.Provenances != o.first.Written {
			t.Errorf("%s: first push %+v; want everything written but the client with the blank goal, failed for it", name, o.first)
		}
		if o.retry.Failed != 1 || o.retry.Failures[reason] != 1 || o.retry.Written != 0 {
			t.Errorf("%s: retry %+v; want that client failed again, nothing else written", name, o.retry)
		}
	}
	if single.first.Written != joint.first.Written || single.first.Provenances != joint.first.Provenances || single.first.Unchanged != joint.first.Unchanged {
		t.Errorf("first push: single %+v, joint %+v", single.first, joint.first)
	}
	for k, v := range single.ledger {
		if joint.ledger[k] != v {
			t.Errorf("ledger row %s: single %q, joint %q", k, v, joint.ledger[k])
		}
	}
	if len(single.ledger) != len(joint.ledger) {
		t.Errorf("ledger rows: single %d, joint %d", len(single.ledger), len(joint.ledger))
	}
	// Alone: a Bundle per client. Jointly: the lease's Bundles in a few
	// requests; the one holding the rejected goal refused, then each of
	// its clients' alone.
	if joint.bundles >= single.bundles {
		t.Errorf("%d joint transactions for %d single ones, want fewer", joint.bundles, single.bundles)
	}
	t.Logf("transactions: %d single, %d joint", single.bundles, joint.bundles)
}

// TestJointTransactionIsolatesAStaleClient: one client's job Observation
// was edited in the EHR, so its Bundle's If-Match is stale, and the joint
// transaction holding it is refused (412). Each client's Bundle is then
// sent alone: the other client's is written as it is, the stale one's is
// refused again and pushed one by one (the conflict recorded, IPS wins).
func TestJointTransactionIsolatesAStaleClient(t *testing.T) {
	t.Parallel()
	r := newRig(t, "")
	ctx := t.Context()
	cnt := &countingEHR{EHR: r.conn.EHR}
	r.conn.EHR = cnt
	r.enqueueAll(t)
	if _, err := r.engine.PushOnce(ctx); err != nil {
		t.Fatal(err)
	}
	var stale, other *ips.Client
	for _, cc := range consenting(r.cl) {
		switch {
		case stale == nil && len(cc.Jobs) > 0 && len(cc.Goals) > 0:
			stale = cc
		case other == nil && len(cc.Goals) > 1:
			other = cc
		}
	}
	k := r.amendJobInEHR(t, stale)
	stale.Jobs[0].HoursPerWeek += 5
	stale.Goals[0].Description += " (revised)"
	other.Goals[0].Description += " (revised)"
	other.Goals[1].Description += " (revised)"
	before := cnt.writeCounts
	r.enqueueAll(t)
	s, err := r.engine.PushOnce(ctx)
	if err != nil || s.Failed != 0 || s.Conflicts != 1 || s.Written < 4 {
		t.Fatalf("push: %+v %v; want both clients' changes written, one conflict, no failure", s, err)
	}
	if got := cnt.bundles - before.bundles; got != 3 {
		t.Errorf("%d transactions, want 3: the joint one refused, then each client's alone", got)
	}
	if got := cnt.updates - before.updates; got < 2 {
		t.Errorf("%d single updates, want at least the stale client's goal and job", got)
	}
	r.wantJobConflictIPSWon(t, k)
	for _, g := range other.Goals[:2] {
		if body := string(r.searchGoal(t, r.conn.Mapping.GoalKey(other, g))); !strings.Contains(body, g.Description) {
			t.Errorf("the other client's goal in the EHR: %s; want %q", body, g.Description)
		}
	}
}
