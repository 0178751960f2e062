package syncer

import (
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ipsfhir/ipsfhir/adapter/store"
	"github.com/ipsfhir/ipsfhir/adapter/store/postgres"
	"github.com/ipsfhir/ipsfhir/adapter/store/sqlite"
	"github.com/ipsfhir/ipsfhir/adapter/store/storetest"
	"github.com/ipsfhir/ipsfhir/ips"
	"github.com/ipsfhir/ipsfhir/mappings"
)

// resolveStores runs f on a fresh SQLite store and, when
// IPSFHIR_TEST_POSTGRES_DSN is set, a fresh PostgreSQL schema.
func resolveStores(t *testing.T, f func(t *testing.T, st store.Store)) {
	t.Run("sqlite", func(t *testing.T) {
		t.Parallel()
		st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "ips.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		f(t, st)
	})
	t.Run("postgres", func(t *testing.T) {
		t.Parallel()
		st, err := postgres.Open(t.Context(), storetest.PostgresDSN(t))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		f(t, st)
	})
}

// resolveRig is a store holding one client with one goal, as a pull left
// it, and an engine without connections, as serve has one.
type resolveRig struct {
	t   *testing.T
	st  store.Store
	e   *Engine
	key string // the goal's ledger key, a conflict's Key
}

// Values of the rig's goal; none of them may show up in an error.
const (
	ipsWords = "Work at the Riverside bakery"
	ehrWords = "Work in a hospital kitchen"
)

func newResolveRig(t *testing.T, st store.Store, edit func(g *ips.Goal)) *resolveRig {
	t.Helper()
	hours := 20.0
	g := &ips.Goal{ID: "g1", Description: ipsWords, Status: ips.GoalActive, Start: ips.MustDate("2026-02-01"),
		TargetHoursPerWeek: &hours, Due: ips.MustDate("2026-12-31")}
	if edit != nil {
		edit(g)
	}
	c := &ips.Client{ID: "c1", Patient: ips.Identifier{System: "urn:test", Value: "MRN1"}, EnrolledOn: ips.MustDate("2026-01-05"), Goals: []*ips.Goal{g}}
	if _, err := st.SaveClients(t.Context(), []store.Stored{{Client: c}}, nil); err != nil {
		t.Fatal(err)
	}
	k := mappings.Options{Program: "riverside"}.GoalKey(c, g)
	return &resolveRig{t: t, st: st, e: &Engine{Store: st}, key: ledgerKey(k)}
}

// conflict records a conflict on the rig's goal, as a pull of connection
// clinic would.
func (r *resolveRig) conflict(field, ipsValue, ehrValue, winner string) int64 {
	r.t.Helper()
	id, err := r.st.AddConflict(r.t.Context(), store.Conflict{Connection: "clinic", ClientID: "c1", Key: r.key, Field: field,
		IPSValue: ipsValue, EHRValue: ehrValue, Winner: winner})
	if err != nil {
		r.t.Fatal(err)
	}
	return id
}

func (r *resolveRig) resolve(id int64, resolution string) (Resolution, error) {
	return r.e.ResolveConflict(r.t.Context(), id, resolution, []string{"clinic", "other-clinic"})
}

// goal returns the stored goal and the client's version.
func (r *resolveRig) goal() (*ips.Goal, store.Version) {
	r.t.Helper()
	c, v, err := r.st.GetClient(r.t.Context(), "c1")
	if err != nil {
		r.t.Fatal(err)
	}
	return c.Goal("g1"), v
}

// state returns the conflict's resolution ("" while open).
func (r *resolveRig) state(id int64) string {
	r.t.Helper()
	all, err := r.st.Conflicts(r.t.Context(), "", true)
	if err != nil {
		r.t.Fatal(err)
	}
	for _, c := range all {
		if c.ID == id {
			return c.Resolution
		}
	}
	r.t.Fatalf("conflict %d is gone", id)
	return ""
}

func (r *resolveRig) queued() map[string]int {
	r.t.Helper()
	d, err := r.st.OutboxDepth(r.t.Context())
	if err != nil {
		r.t.Fatal(err)
	}
	return d
}

// TestResolveKeptEHRWritesTheEHRValue: the IPS side's description and
// target were applied (their configured winner); keeping the EHR's writes
// the EHR's values into the IPS record and queues the client for every
// connection given, so that the next push writes them to the EHR.
func TestResolveKeptEHRWritesTheEHRValue(t *testing.T) {
	t.Parallel()
	resolveStores(t, func(t *testing.T, st store.Store) {
		r := newResolveRig(t, st, nil)
		_, v0 := r.goal()
		desc := r.conflict("description", ipsWords, ehrWords, "ips")
		target := r.conflict("target", "20 h/wk by 2026-12-31", "12.5 h/wk by 2027-03-31", "ips")

		res, err := r.resolve(desc, KeptEHR)
		if err != nil || res != (Resolution{Outcome: ResolutionApplied, Kept: "ehr"}) {
			t.Fatalf("kept-ehr: %+v %v; want applied", res, err)
		}
		if got := res.Message(); got != "the EHR value was written to the IPS record and is queued for the EHR" {
			t.Errorf("message %q", got)
		}
		g, v := r.goal()
		if g.Description != ehrWords || v != v0+1 {
			t.Errorf("after kept-ehr: description %q at version %d; want the EHR's, saved once over %d", g.Description, v, v0)
		}
		if q := r.queued(); q["clinic"] != 1 || q["other-clinic"] != 1 {
			t.Errorf("outbox %v; want the client queued for both connections", q)
		}
		if s := r.state(desc); s != KeptEHR {
			t.Errorf("conflict resolution %q, want kept-ehr", s)
		}

		if res, err := r.resolve(target, KeptEHR); err != nil || res.Outcome != ResolutionApplied {
			t.Fatalf("kept-ehr of the target: %+v %v", res, err)
		}
		g, _ = r.goal()
		if g.TargetHoursPerWeek == nil || *g.TargetHoursPerWeek != 12.5 || g.Due != ips.MustDate("2027-03-31") || g.Description != ehrWords {
			t.Errorf("after kept-ehr of the target: %v h/wk by %s (%q)", g.TargetHoursPerWeek, g.Due, g.Description)
		}
	})
}

// TestResolveKeptIPSRestoresTheIPSValue: the EHR's status was applied (its
// configured winner); keeping the IPS value puts it back in the IPS record
// and queues the client, so that the next push writes it over the EHR's.
func TestResolveKeptIPSRestoresTheIPSValue(t *testing.T) {
	t.Parallel()
	resolveStores(t, func(t *testing.T, st store.Store) {
		r := newResolveRig(t, st, func(g *ips.Goal) { g.Status = ips.GoalCancelled })
		id := r.conflict("status", "on-hold", "cancelled", "ehr")
		res, err := r.resolve(id, KeptIPS)
		if err != nil || res != (Resolution{Outcome: ResolutionApplied, Kept: "ips"}) {
			t.Fatalf("kept-ips: %+v %v; want applied", res, err)
		}
		if g, _ := r.goal(); g.Status != ips.GoalOnHold || g.Description != ipsWords {
			t.Errorf("after kept-ips: status %s; want on-hold, the rest as it was", g.Status)
		}
		if q := r.queued(); q["clinic"] != 1 {
			t.Errorf("outbox %v; want the client queued", q)
		}
		if s := r.state(id); s != KeptIPS {
			t.Errorf("conflict resolution %q, want kept-ips", s)
		}
	})
}

// TestResolveKeepingTheAppliedValueOnlyCloses: keeping the side that was
// applied rewrites nothing (no save, nothing queued) and closes; so does
// keeping a value the record already holds (a retry whose save was done
// and whose close failed).
func TestResolveKeepingTheAppliedValueOnlyCloses(t *testing.T) {
	t.Parallel()
	resolveStores(t, func(t *testing.T, st store.Store) {
		r := newResolveRig(t, st, func(g *ips.Goal) { g.Status = ips.GoalCancelled })
		_, v0 := r.goal()
		winner := r.conflict("status", "on-hold", "cancelled", "ehr")
		res, err := r.resolve(winner, KeptEHR)
		if err != nil || res != (Resolution{Outcome: ResolutionInPlace, Kept: "ehr"}) {
			t.Fatalf("kept-ehr of the applied side: %+v %v; want in place", res, err)
		}
		if got := res.Message(); got != "the EHR value was already in place; closed" {
			t.Errorf("message %q", got)
		}
		// The IPS side's target was applied, yet the record holds the
		// EHR's: a retry whose save was done.
		retried := r.conflict("target", "25 h/wk by 2026-12-31", "20 h/wk by 2026-12-31", "ips")
		if res, err := r.resolve(retried, KeptEHR); err != nil || res.Outcome != ResolutionInPlace {
			t.Fatalf("kept-ehr of a value in place: %+v %v; want in place", res, err)
		}
		g, v := r.goal()
		if v != v0 || g.Status != ips.GoalCancelled || g.Description != ipsWords {
			t.Errorf("the record was rewritten: version %d → %d, status %s", v0, v, g.Status)
		}
		if q := r.queued(); q["clinic"] != 0 || q["other-clinic"] != 0 {
			t.Errorf("outbox %v; want nothing queued", q)
		}
		if r.state(winner) != KeptEHR || r.state(retried) != KeptEHR {
			t.Errorf("conflicts not closed: %q %q", r.state(winner), r.state(retried))
		}
	})
}

// TestResolveStaleConflictChangesNothing: the field no longer holds the
// value that was applied (the specialist edited it since), or the goal is
// gone: either side is refused with ErrConflictStale, nothing is written
// or closed, and no value is in the error. A note still closes it.
func TestResolveStaleConflictChangesNothing(t *testing.T) {
	t.Parallel()
	resolveStores(t, func(t *testing.T, st store.Store) {
		r := newResolveRig(t, st, func(g *ips.Goal) { g.Status = ips.GoalActive; g.Description = "Drive for a delivery firm" })
		_, v0 := r.goal()
		status := r.conflict("status", "on-hold", "cancelled", "ehr")
		desc := r.conflict("description", ipsWords, ehrWords, "ips")
		// A conflict on a goal deleted since.
		k := keyOfLedger(r.key)
		k.Record = "g-deleted"
		gone, err := st.AddConflict(t.Context(), store.Conflict{Connection: "clinic", ClientID: "c1", Key: ledgerKey(k), Field: "description",
			IPSValue: ipsWords, EHRValue: ehrWords, Winner: "ehr"})
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			id   int64
			kept string
		}{{status, KeptIPS}, {status, KeptEHR}, {desc, KeptEHR}, {desc, KeptIPS}, {gone, KeptIPS}, {gone, KeptEHR}} {
			_, err := r.resolve(c.id, c.kept)
			if !errors.Is(err, ErrConflictStale) {
				t.Errorf("conflict %d %s: %v; want ErrConflictStale", c.id, c.kept, err)
				continue
			}
			for _, v := range []string{ipsWords, ehrWords, "Drive", "on-hold", "cancelled", "MRN1", "c1", "g-deleted"} {
				if strings.Contains(err.Error(), v) {
					t.Errorf("the error names a value (%q): %v", v, err)
				}
			}
		}
		g, v := r.goal()
		if v != v0 || g.Status != ips.GoalActive || g.Description != "Drive for a delivery firm" {
			t.Errorf("the record was rewritten: version %d → %d", v0, v)
		}
		if q := r.queued(); q["clinic"] != 0 {
			t.Errorf("outbox %v; want nothing queued", q)
		}
		for _, id := range []int64{status, desc, gone} {
			if s := r.state(id); s != "" {
				t.Errorf("conflict %d closed as %q; want it open", id, s)
			}
		}
		res, err := r.resolve(status, "set by hand after a call with the clinic")
		if err != nil || res.Outcome != ResolutionClosed || r.state(status) != "set by hand after a call with the clinic" {
			t.Errorf("a note on a stale conflict: %+v %v, recorded %q", res, err, r.state(status))
		}
	})
}

// TestResolveResourceConflict: a whole resource changed in the EHR, and
// the IPS side's content was applied. Keeping the IPS side closes it;
// keeping the EHR's is refused (the conflict holds a description, not the
// resource), with nothing changed.
func TestResolveResourceConflict(t *testing.T) {
	t.Parallel()
	resolveStores(t, func(t *testing.T, st store.Store) {
		r := newResolveRig(t, st, nil)
		_, v0 := r.goal()
		k := mappings.Options{Program: "riverside"}.JobKey(&ips.Client{ID: "c1"}, &ips.Job{ID: "j1"})
		add := func() int64 {
			id, err := st.AddConflict(t.Context(), store.Conflict{Connection: "clinic", ClientID: "c1", Key: ledgerKey(k), Field: "resource",
				IPSValue: "ipsfhir content 0123456789ab", EHRValue: "changed in the EHR (version 3)", Winner: "ips"})
			if err != nil {
				t.Fatal(err)
			}
			return id
		}
		id := add()
		_, err := r.resolve(id, KeptEHR)
		if !errors.Is(err, ErrCannotApply) {
			t.Fatalf("kept-ehr of a resource conflict: %v; want ErrCannotApply", err)
		}
		if s := r.state(id); s != "" {
			t.Errorf("refused, yet closed as %q", s)
		}
		if res, err := r.resolve(id, KeptIPS); err != nil || res != (Resolution{Outcome: ResolutionInPlace, Kept: "ips"}) {
			t.Errorf("kept-ips of a resource conflict: %+v %v; want in place", res, err)
		}
		if s := r.state(id); s != KeptIPS {
			t.Errorf("conflict resolution %q, want kept-ips", s)
		}
		if _, v := r.goal(); v != v0 {
			t.Errorf("the client was saved: version %d → %d", v0, v)
		}
	})
}

// TestResolveWithANoteOnlyCloses: any other resolution is a note: the
// conflict closes with it, and nothing is rewritten.
func TestResolveWithANoteOnlyCloses(t *testing.T) {
	t.Parallel()
	resolveStores(t, func(t *testing.T, st store.Store) {
		r := newResolveRig(t, st, nil)
		_, v0 := r.goal()
		id := r.conflict("description", ipsWords, ehrWords, "ips")
		res, err := r.resolve(id, "agreed with the clinic")
		if err != nil || res != (Resolution{Outcome: ResolutionClosed}) {
			t.Fatalf("note: %+v %v", res, err)
		}
		if res.Message() != "closed with a note; nothing was rewritten" {
			t.Errorf("message %q", res.Message())
		}
		if g, v := r.goal(); v != v0 || g.Description != ipsWords {
			t.Errorf("the record was rewritten: version %d → %d", v0, v)
		}
		if s := r.state(id); s != "agreed with the clinic" {
			t.Errorf("resolution %q", s)
		}
	})
}

// TestResolveAlreadyResolvedOrMissing: a resolved conflict is
// store.ErrConflict, however it is resolved again, and nothing is written;
// one that does not exist is store.ErrNotFound.
func TestResolveAlreadyResolvedOrMissing(t *testing.T) {
	t.Parallel()
	resolveStores(t, func(t *testing.T, st store.Store) {
		r := newResolveRig(t, st, nil)
		id := r.conflict("description", ipsWords, ehrWords, "ips")
		if _, err := r.resolve(id, KeptIPS); err != nil {
			t.Fatal(err)
		}
		_, v0 := r.goal()
		for _, res := range []string{KeptEHR, KeptIPS, "a note"} {
			if _, err := r.resolve(id, res); !errors.Is(err, store.ErrConflict) {
				t.Errorf("%s of a resolved conflict: %v; want store.ErrConflict", res, err)
			}
			if _, err := r.resolve(id+1000, res); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("%s of a missing conflict: %v; want store.ErrNotFound", res, err)
			}
		}
		if g, v := r.goal(); v != v0 || g.Description != ipsWords {
			t.Errorf("the record was rewritten: version %d → %d", v0, v)
		}
		if s := r.state(id); s != KeptIPS {
			t.Errorf("resolution %q, want the first one's", s)
		}
	})
}

// TestResolveNotesKeepWhatTheConnectionDoesNotSee: a notes conflict holds
// the notes connection clinic sees; another clinic's note (not shared)
// stays whichever side is kept, and the kept notes take the sources a pull
// gives them.
func TestResolveNotesKeepWhatTheConnectionDoesNotSee(t *testing.T) {
	t.Parallel()
	program := ips.Note{Text: "Likes early shifts", Date: ips.MustDate("2026-03-01")}
	other := ips.Note{Text: "Other clinic: new medication", Date: ips.MustDate("2026-03-02"), Source: "clinic-b"}
	fromEHR := ips.Note{Text: "Clinician: cleared for full-time work", Date: ips.MustDate("2026-03-03")}
	ipsText, ehrText := notesText([]ips.Note{program}), notesText([]ips.Note{fromEHR})
	t.Run("kept-ehr", func(t *testing.T) {
		t.Parallel()
		resolveStores(t, func(t *testing.T, st store.Store) {
			// The IPS side's notes were applied.
			r := newResolveRig(t, st, func(g *ips.Goal) { g.Notes = []ips.Note{program, other} })
			id := r.conflict("notes", ipsText, ehrText, "ips")
			if res, err := r.resolve(id, KeptEHR); err != nil || res.Outcome != ResolutionApplied {
				t.Fatalf("kept-ehr: %+v %v", res, err)
			}
			mine := fromEHR
			mine.Source = "clinic"
			if g, _ := r.goal(); !slices.Equal(g.Notes, []ips.Note{other, mine}) {
				t.Errorf("notes %+v; want the other clinic's, then the EHR's as clinic's", g.Notes)
			}
			// Again: in place.
			id = r.conflict("notes", ipsText, ehrText, "ips")
			if res, err := r.resolve(id, KeptEHR); err != nil || res.Outcome != ResolutionInPlace {
				t.Errorf("kept-ehr again: %+v %v; want in place", res, err)
			}
		})
	})
	t.Run("kept-ips", func(t *testing.T) {
		t.Parallel()
		resolveStores(t, func(t *testing.T, st store.Store) {
			// The EHR's notes were applied, as a pull folds them in.
			mine := fromEHR
			mine.Source = "clinic"
			r := newResolveRig(t, st, func(g *ips.Goal) { g.Notes = []ips.Note{other, mine} })
			id := r.conflict("notes", ipsText, ehrText, "ehr")
			if res, err := r.resolve(id, KeptIPS); err != nil || res.Outcome != ResolutionApplied {
				t.Fatalf("kept-ips: %+v %v", res, err)
			}
			if g, _ := r.goal(); !slices.Equal(g.Notes, []ips.Note{other, program}) {
				t.Errorf("notes %+v; want the other clinic's, then the program's", g.Notes)
			}
		})
	})
}

// TestGoalFieldTextsReadBack: every value a conflict keeps reads back as
// the value rendered (the merge's rendering: notes as JSON, the target as
// "N h/wk by YYYY-MM-DD"), and text no field renders is refused.
func TestGoalFieldTextsReadBack(t *testing.T) {
	t.Parallel()
	h := func(v float64) *float64 { return &v }
	tenth := 0.1 // not a constant: 0.1+0.2 in float64 arithmetic
	goals := []*ips.Goal{
		{Status: ips.GoalOnHold, Achievement: "improving", Description: "Stock shelves, 20 h/wk by June", TargetHoursPerWeek: h(20), Due: ips.MustDate("2026-12-31"),
			Notes: []ips.Note{{Text: "<b>&</b>", Date: ips.MustDate("2026-01-02"), Source: "clinic"}, {Text: "no date"}}},
		{Status: ips.GoalActive, TargetHoursPerWeek: h(12.5)},
		{Status: ips.GoalCompleted, Due: ips.MustDate("2027-01-01")},
		{Status: ips.GoalProposed, TargetHoursPerWeek: h(tenth + 0.2), Notes: []ips.Note{}},
		{Status: ips.GoalRejected},
	}
	want := map[string][]string{"target": {"20 h/wk by 2026-12-31", "12.5 h/wk", "by 2027-01-01", "0.30000000000000004 h/wk", ""}}
	for _, f := range goalFields {
		for i, g := range goals {
			text := f.text(g)
			if w, ok := want[f.name]; ok && w[i] != text {
				t.Errorf("%s text %q, want %q", f.name, text, w[i])
			}
			back, err := readField(f, text)
			if err != nil || !f.same(back, g) || (f.name == "notes" && !slices.Equal(back.Notes, g.Notes) && len(g.Notes) > 0) {
				t.Errorf("%s %q read back as %+v, %v", f.name, text, back, err)
			}
		}
	}
	for field, bad := range map[string][]string{
		"status":      {"", "done"},
		"achievement": {"great"},
		"notes":       {"", "[{", `{"text":"x"}`, `[{"text":"x","date":"2026-02-30"}]`},
		"target":      {"20", "20 h/wk by", "by tomorrow", "x h/wk", "20 h/wk  by 2026-01-01", " by 2026-01-01", "20 h/wk by 2026-01-01 ", "20.0 h/wk"},
	} {
		f, _ := goalFieldNamed(field)
		for _, s := range bad {
			if _, err := readField(f, s); !errors.Is(err, ErrCannotApply) {
				t.Errorf("%s %q read: %v; want refused", field, s, err)
			}
		}
	}
}

// TestResolvedConflictStandsInTheEHR: end to end against the peer EHR.
// The specialist and a clinician change a goal's status and description;
// the pull applies the configured winners (the EHR's status, the IPS
// description) and the push writes them. Keeping the IPS status and the
// EHR description, then pushing, leaves both sides holding the chosen
// values, and the next pull finds nothing to merge.
func TestResolvedConflictStandsInTheEHR(t *testing.T) {
	t.Parallel()
	r := newRig(t, "")
	ctx := t.Context()
	r.enqueueAll(t)
	if s, err := r.engine.PushOnce(ctx); err != nil || s.Failed != 0 {
		t.Fatalf("push: %+v %v", s, err)
	}
	c := consenting(r.cl)[0]
	gid := c.Goals[0].ID
	k := r.conn.Mapping.GoalKey(c, c.Goals[0])
	stored, v, _ := r.store.GetClient(ctx, c.ID)
	stored.Goal(gid).Status = ips.GoalOnHold
	stored.Goal(gid).Description = ipsWords
	if _, err := r.store.SaveClients(ctx, []store.Stored{{Client: stored, Version: v}}, nil); err != nil {
		t.Fatal(err)
	}
	r.clinicianEdits(t, k, func(g map[string]any) {
		g["lifecycleStatus"] = "cancelled"
		g["description"] = map[string]any{"text": ehrWords}
	})
	if s, err := r.engine.PullOnce(ctx); err != nil || s.Conflicts != 2 {
		t.Fatalf("pull: %+v %v; want two conflicts", s, err)
	}
	if s, err := r.engine.PushOnce(ctx); err != nil || s.Failed != 0 {
		t.Fatalf("push of the winners: %+v %v", s, err)
	}
	if g := r.ehrGoal(t, k); g["lifecycleStatus"] != "cancelled" || g["description"].(map[string]any)["text"] != ipsWords {
		t.Fatalf("the EHR before resolving: %v, %v; want the winners", g["lifecycleStatus"], g["description"])
	}
	cs, err := r.store.Conflicts(ctx, "clinic", false)
	if err != nil || len(cs) != 2 {
		t.Fatalf("conflicts: %+v %v", cs, err)
	}
	// As serve has it: an engine with the store and no connections.
	admin := &Engine{Store: r.store}
	for _, cf := range cs {
		kept := map[string]string{"status": KeptIPS, "description": KeptEHR}[cf.Field]
		if res, err := admin.ResolveConflict(ctx, cf.ID, kept, []string{"clinic"}); err != nil || res.Outcome != ResolutionApplied {
			t.Fatalf("%s %s: %+v %v", kept, cf.Field, res, err)
		}
	}
	if s, err := r.engine.PushOnce(ctx); err != nil || s.Failed != 0 {
		t.Fatalf("push after resolving: %+v %v", s, err)
	}
	g := r.ehrGoal(t, k)
	if g["lifecycleStatus"] != "on-hold" || g["description"].(map[string]any)["text"] != ehrWords {
		t.Errorf("the EHR after resolving and a push: %v, %v; want on-hold and the EHR's description", g["lifecycleStatus"], g["description"])
	}
	got, _, _ := r.store.GetClient(ctx, c.ID)
	if gg := got.Goal(gid); gg.Status != ips.GoalOnHold || gg.Description != ehrWords {
		t.Errorf("the IPS record: %s, %q", gg.Status, gg.Description)
	}
	if s, err := r.engine.PullOnce(ctx); err != nil || s.Applied != 0 || s.Conflicts != 0 {
		t.Errorf("pull after: %+v %v; want nothing new", s, err)
	}
}
