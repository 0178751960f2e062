package syncer

import (
	"slices"

	"github.com/ipsfhir/ipsfhir/ips"
)

// This file keeps one clinic's clinical free text out of other clinics'
// charts. A goal note a pull takes from a connection's EHR is written by a
// clinician of that clinic: the program's record keeps it with the
// connection's name (ips.Note.Source), and it goes back to that
// connection's EHR only, unless the connection shares its clinicians' text
// (Engine.SharedText, config connections[].clinicalText: share). The
// program's own notes (no source) go everywhere. The goal's description
// and target are the program's record of the client's own goal, not a
// clinician's comment: the winners decide them, on every connection alike.

// visibleTo returns c as connection conn may see it: c itself when nothing
// is withheld, else a copy whose goals lack the notes of other clinics that
// do not share them. The copy shares everything else with c; it is for
// mapping and comparing, never to be saved.
func (e *Engine) visibleTo(conn *Connection, c *ips.Client) *ips.Client {
	hidden := func(n ips.Note) bool { return !e.noteVisible(conn, n) }
	withheld := slices.ContainsFunc(c.Goals, func(g *ips.Goal) bool { return g != nil && slices.ContainsFunc(g.Notes, hidden) })
	if !withheld {
		return c
	}
	v := *c
	v.Goals = make([]*ips.Goal, len(c.Goals))
	for i, g := range c.Goals {
		if g == nil || !slices.ContainsFunc(g.Notes, hidden) {
			v.Goals[i] = g
			continue
		}
		gv := *g
		gv.Notes = slices.DeleteFunc(slices.Clone(g.Notes), hidden)
		v.Goals[i] = &gv
	}
	return &v
}

// noteVisible reports whether note n may be written to conn's EHR.
func (e *Engine) noteVisible(conn *Connection, n ips.Note) bool {
	return n.Source == "" || n.Source == conn.Name || slices.Contains(e.SharedText, n.Source)
}

// foldNotes returns the notes a goal of the program's record, holding
// notes, holds once the notes conn sees are replaced by seen, as a merge
// with conn's EHR left them: the notes conn cannot see stay as they are, a
// note conn saw before keeps its source, and a note new from the EHR is
// conn's clinicians', unless it is the same as a note conn cannot see.
func (e *Engine) foldNotes(conn *Connection, notes, seen []ips.Note) []ips.Note {
	var out []ips.Note
	var before []ips.Note
	for _, n := range notes {
		if e.noteVisible(conn, n) {
			before = append(before, n)
		} else {
			out = append(out, n)
		}
	}
	hidden := len(out)
	for _, n := range seen {
		n.Source = conn.Name
		if i := slices.IndexFunc(before, n.SameText); i >= 0 {
			n.Source = before[i].Source
			before = slices.Delete(before, i, i+1)
		} else if slices.ContainsFunc(out[:hidden], n.SameText) {
			// Another clinic's note this EHR still holds from when that
			// clinic shared: it stays that clinic's, and the next push
			// takes it out of this EHR.
			continue
		}
		out = append(out, n)
	}
	return out
}

// sameNotes compares two lists of notes, in order, as an EHR holds them.
func sameNotes(a, b []ips.Note) bool { return slices.EqualFunc(a, b, ips.Note.SameText) }
