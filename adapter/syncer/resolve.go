package syncer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"

	"github.com/ipsfhir/ipsfhir/adapter/store"
	"github.com/ipsfhir/ipsfhir/ips"
	"github.com/ipsfhir/ipsfhir/mappings"
)

// This file resolves the conflicts a pull records (applyGoalChange: a goal
// field both sides changed; recordResourceConflict: a resource the program
// owns changed in the EHR). An administrator keeps one side's value, and
// that value is made to stand on both sides: the IPS record is rewritten
// when it holds the other value, and the save queues the client, so the
// next push writes the record to the EHR. Anything else an administrator
// writes is a note, and only closes the conflict.

// Resolutions that choose a side (store.Conflict.Resolution).
const (
	KeptIPS = "kept-ips"
	KeptEHR = "kept-ehr"
)

// What ResolveConflict did (Resolution.Outcome).
const (
	// ResolutionApplied: the chosen value was written to the IPS record,
	// the client queued for the EHRs, and the conflict closed.
	ResolutionApplied = "applied"
	// ResolutionInPlace: the chosen value was already in place (the one
	// applied when the conflict was found, or a retry's); only closed.
	ResolutionInPlace = "in-place"
	// ResolutionClosed: a note; only closed, nothing rewritten.
	ResolutionClosed = "closed"
)

// Errors of ResolveConflict beyond the store's (store.ErrNotFound: no such
// conflict; store.ErrConflict: already resolved).
var (
	// ErrConflictStale: the record changed since the conflict was found
	// (the goal is gone, or its field no longer holds the value that was
	// applied), so the chosen value is not applied over the later edit.
	// Nothing was changed; a note still closes the conflict.
	ErrConflictStale = errors.New("the record changed since the conflict was found")
	// ErrCannotApply: the chosen value cannot be written automatically
	// (a whole resource changed in the EHR, of which the conflict keeps a
	// description only). Nothing was changed; a note still closes it.
	ErrCannotApply = errors.New("the chosen value cannot be applied automatically")
)

// Resolution is what ResolveConflict did. It holds no record data.
type Resolution struct {
	// Outcome is ResolutionApplied, ResolutionInPlace or ResolutionClosed.
	Outcome string
	// Kept is the side kept: "ips" (kept-ips), "ehr" (kept-ehr), "" for a
	// note.
	Kept string
}

// Message says what was done, in words for an administrator (patient-free:
// it names sides, not values).
func (r Resolution) Message() string {
	side := map[string]string{"ips": "IPS", "ehr": "EHR"}[r.Kept]
	switch {
	case r.Outcome == ResolutionApplied && r.Kept == "ehr":
		return "the EHR value was written to the IPS record and is queued for the EHR"
	case r.Outcome == ResolutionApplied && r.Kept == "ips":
		return "the IPS value was written back to the IPS record and is queued for the EHR"
	case r.Outcome == ResolutionInPlace && side != "":
		return "the " + side + " value was already in place; closed"
	}
	return "closed with a note; nothing was rewritten"
}

// ResolveConflict resolves conflict id as an administrator chose:
//
//   - kept-ips or kept-ehr on a goal field: when the goal (found in the
//     conflict's client by its Key) already holds the chosen value, the
//     conflict is only closed (ResolutionInPlace: the chosen side is the
//     winner that was applied, or a retry). When it still holds the value
//     that was applied, the chosen value is set in its place and the client
//     saved (optimistic version) and queued for queueFor, so that the next
//     push writes it to the EHR; then the conflict is closed
//     (ResolutionApplied). Otherwise the record changed since (the goal is
//     gone, or someone edited the field): ErrConflictStale, nothing changed.
//     Notes are the connection's view (noteVisible): only the notes that
//     connection sees are replaced, the others stay; this takes the
//     connection's name from the conflict and e.SharedText, which must be
//     the configured one.
//   - kept-ips or kept-ehr on any other conflict (a whole resource changed
//     in the EHR): the side that was applied (the Winner) only closes it;
//     the other is ErrCannotApply, nothing changed.
//   - anything else is a note: the conflict is only closed (ResolutionClosed).
//
// A conflict already resolved is store.ErrConflict, one that does not
// exist store.ErrNotFound. queueFor names the connections a rewritten
// client is queued for, as every save of the program's records queues it
// (the enabled connections); nil means e's own (QueueFor, else
// Connections). Errors carry no record data.
func (e *Engine) ResolveConflict(ctx context.Context, id int64, resolution string, queueFor []string) (Resolution, error) {
	var side string
	switch resolution {
	case KeptIPS:
		side = "ips"
	case KeptEHR:
		side = "ehr"
	case "":
		return Resolution{}, errors.New("resolve conflict: empty resolution")
	default:
		if err := e.Store.ResolveConflict(ctx, id, resolution); err != nil {
			return Resolution{}, fmt.Errorf("resolve conflict %d: %w", id, err)
		}
		return Resolution{Outcome: ResolutionClosed}, nil
	}
	if queueFor == nil {
		queueFor = e.connectionNames()
	}
	cf, err := e.openConflict(ctx, id)
	if err != nil {
		return Resolution{}, err
	}
	outcome, err := e.keep(ctx, cf, side, queueFor)
	if err != nil {
		return Resolution{}, fmt.Errorf("resolve conflict %d (%s): %w", id, cf.Field, err)
	}
	if err := e.Store.ResolveConflict(ctx, id, resolution); err != nil {
		return Resolution{}, fmt.Errorf("resolve conflict %d: %w", id, err)
	}
	e.log().LogAttrs(ctx, slog.LevelInfo, "conflict resolved", slog.Int64("conflict", id), slog.String("connection", cf.Connection),
		slog.String("field", cf.Field), slog.String("kept", side), slog.String("outcome", outcome))
	return Resolution{Outcome: outcome, Kept: side}, nil
}

// openConflict finds an open conflict by id: store.ErrConflict if it is
// resolved, store.ErrNotFound if there is none.
func (e *Engine) openConflict(ctx context.Context, id int64) (store.Conflict, error) {
	for _, all := range []bool{false, true} {
		cs, err := e.Store.Conflicts(ctx, "", all)
		if err != nil {
			return store.Conflict{}, fmt.Errorf("resolve conflict %d: %w: conflicts: %w", id, errStore, err)
		}
		if i := slices.IndexFunc(cs, func(c store.Conflict) bool { return c.ID == id }); i >= 0 {
			if all || cs[i].Resolution != "" {
				return store.Conflict{}, fmt.Errorf("resolve conflict %d: already resolved: %w", id, store.ErrConflict)
			}
			return cs[i], nil
		}
	}
	return store.Conflict{}, fmt.Errorf("resolve conflict %d: %w", id, store.ErrNotFound)
}

// Appliable reports whether ResolveConflict can write either side's value
// of c into the IPS record: a goal field's can; of a whole resource changed
// in the EHR, only the side that was applied is kept (it closes), the
// other is ErrCannotApply.
func Appliable(c store.Conflict) bool {
	_, ok := goalFieldNamed(c.Field)
	k := keyOfLedger(c.Key)
	return ok && k.Kind == mappings.KindGoal && k.Client != "" && k.Record != ""
}

// keep makes side's value of cf stand in the IPS record, and returns the
// outcome; the caller closes the conflict.
func (e *Engine) keep(ctx context.Context, cf store.Conflict, side string, queueFor []string) (string, error) {
	f, _ := goalFieldNamed(cf.Field)
	key := keyOfLedger(cf.Key)
	if !Appliable(cf) {
		// Not a goal field: the IPS side's content was applied (a resource
		// the program owns), and the conflict keeps no value to write.
		if side == cf.Winner {
			return ResolutionInPlace, nil
		}
		return "", fmt.Errorf("%w: the conflict keeps a description of the %s side, not a value", ErrCannotApply, side)
	}
	var chosenText, appliedText string
	switch cf.Winner {
	case "ips":
		appliedText = cf.IPSValue
	case "ehr":
		appliedText = cf.EHRValue
	default:
		return "", fmt.Errorf("%w: no side recorded as applied", ErrCannotApply)
	}
	if side == "ips" {
		chosenText = cf.IPSValue
	} else {
		chosenText = cf.EHRValue
	}
	chosen, err := readField(f, chosenText)
	if err != nil {
		return "", err
	}
	applied, err := readField(f, appliedText)
	if err != nil {
		return "", err
	}
	// Only the connection's name decides which notes it sees (noteVisible),
	// with e.SharedText.
	conn := &Connection{Name: cf.Connection}
	for attempt := 1; ; attempt++ {
		c, ver, err := e.Store.GetClient(ctx, key.Client)
		if errors.Is(err, store.ErrNotFound) {
			return "", fmt.Errorf("%w: client gone", ErrConflictStale)
		}
		if err != nil {
			return "", fmt.Errorf("%w: get client: %w", errStore, err)
		}
		full := c.Goal(key.Record)
		if full == nil {
			return "", fmt.Errorf("%w: goal gone", ErrConflictStale)
		}
		view := *full
		view.Notes = slices.DeleteFunc(slices.Clone(full.Notes), func(n ips.Note) bool { return !e.noteVisible(conn, n) })
		next := *full
		e.setField(conn, f, &next, chosen, side)
		if f.same(&view, chosen) || sameGoal(full, &next) {
			return ResolutionInPlace, nil // the value that was applied, or a retry's
		}
		if !f.same(&view, applied) {
			return "", fmt.Errorf("%w: field edited since", ErrConflictStale)
		}
		*full = next
		_, err = e.Store.SaveClients(ctx, []store.Stored{{Client: c, Version: ver}}, queueFor)
		if errors.Is(err, store.ErrConflict) {
			if attempt < mergeAttempts {
				continue // saved meanwhile: judge what is there now
			}
			return "", fmt.Errorf("%w: the client kept changing", ErrConflictStale)
		}
		if err != nil {
			return "", fmt.Errorf("%w: save client: %w", errStore, err)
		}
		return ResolutionApplied, nil
	}
}

// readField reads a value a conflict kept of field f into a goal holding
// that field alone. The text must be exactly what f renders.
func readField(f goalField, text string) (*ips.Goal, error) {
	g := &ips.Goal{}
	if err := f.parse(text, g); err != nil || f.text(g) != text {
		return nil, fmt.Errorf("%w: a value the conflict kept is unreadable", ErrCannotApply)
	}
	return g, nil
}

// setField sets field f of g, a goal of the program's record, to value's,
// as conn's side of a conflict held it. Notes are the notes conn sees: they
// replace those, and the notes conn cannot see stay. The EHR's notes become
// the program's as a pull takes them (foldNotes: a note conn's EHR held
// before keeps its source, a new one is conn's clinicians'); the IPS side's
// keep the sources the program's record gave them.
func (e *Engine) setField(conn *Connection, f goalField, g, value *ips.Goal, side string) {
	if f.name != "notes" {
		f.take(g, value)
		return
	}
	if side == "ehr" {
		g.Notes = e.foldNotes(conn, g.Notes, value.Notes)
		return
	}
	notes := slices.DeleteFunc(slices.Clone(g.Notes), func(n ips.Note) bool { return e.noteVisible(conn, n) })
	g.Notes = append(notes, value.Notes...)
}

// sameGoal reports whether two goals are equal in every field the merge
// compares, sources of notes included.
func sameGoal(a, b *ips.Goal) bool {
	for _, f := range goalFields {
		if !f.same(a, b) {
			return false
		}
	}
	return slices.Equal(a.Notes, b.Notes)
}
