package ips

import (
	"cmp"
	"slices"
)

// Normalize returns a deep copy of cl with the documented defaults made
// explicit (client status) and every list in a canonical order (clients by id;
// goals, supports and jobs by id; status snapshots by date). Two caseloads that
// mean the same thing normalize to equal values, which is what the FHIR round
// trip promises. cl is not modified.
func Normalize(cl *Caseload) *Caseload {
	out := &Caseload{}
	// A program named only by the default id means the same as no program.
	if cl.Program != nil && (cl.Program.ID != DefaultProgramID || cl.Program.Name != "") {
		p := *cl.Program
		out.Program = &p
	}
	// Clients is never nil, so a normalized empty caseload encodes as
	// "clients": [] (the schema requires an array); every inner empty list
	// becomes nil, so [] and an absent list normalize alike.
	out.Clients = make([]*Client, 0, len(cl.Clients))
	for _, c := range cl.Clients {
		out.Clients = append(out.Clients, normalizeClient(c))
	}
	slices.SortFunc(out.Clients, func(a, b *Client) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

func normalizeClient(c *Client) *Client {
	n := *c
	n.Status = c.EffectiveStatus()
	n.Referral = clonePtr(c.Referral)
	n.PastEpisodes = nil
	for _, e := range c.PastEpisodes {
		ec := *e
		ec.Referral = clonePtr(e.Referral)
		n.PastEpisodes = append(n.PastEpisodes, &ec)
	}
	if c.Consent != nil {
		cs := Consent{EHR: clonePtr(c.Consent.EHR), HIE: clonePtr(c.Consent.HIE)}
		n.Consent = &cs
	}
	if c.Preferences != nil {
		p := *c.Preferences
		p.JobTypes = nilIfEmpty(slices.Clone(p.JobTypes))
		p.HoursPerWeek = clonePtr(p.HoursPerWeek)
		n.Preferences = &p
	}
	n.Goals = nil
	for _, g := range c.Goals {
		gc := *g
		gc.TargetHoursPerWeek = clonePtr(g.TargetHoursPerWeek)
		gc.Notes = nilIfEmpty(slices.Clone(g.Notes))
		n.Goals = append(n.Goals, &gc)
	}
	slices.SortFunc(n.Goals, func(a, b *Goal) int { return cmp.Compare(a.ID, b.ID) })
	n.Supports = nil
	for _, s := range c.Supports {
		sc := *s
		n.Supports = append(n.Supports, &sc)
	}
	slices.SortFunc(n.Supports, func(a, b *Support) int { return cmp.Compare(a.ID, b.ID) })
	n.Jobs = nil
	for _, j := range c.Jobs {
		jc := *j
		if j.Occupation != nil {
			o := *j.Occupation
			jc.Occupation = &o
		}
		if j.Industry != nil {
			i := *j.Industry
			jc.Industry = &i
		}
		jc.Disclosed = clonePtr(j.Disclosed)
		n.Jobs = append(n.Jobs, &jc)
	}
	slices.SortFunc(n.Jobs, func(a, b *Job) int { return cmp.Compare(a.ID, b.ID) })
	n.Employment = nilIfEmpty(slices.Clone(c.Employment))
	slices.SortFunc(n.Employment, func(a, b EmploymentSnapshot) int { return a.Date.Compare(b.Date) })
	return &n
}

func clonePtr[T any](p *T) *T {
	if p == nil {
		return nil
	}
	v := *p
	return &v
}

func nilIfEmpty[S ~[]E, E any](s S) S {
	if len(s) == 0 {
		return nil
	}
	return s
}
