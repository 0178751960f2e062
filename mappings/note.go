package mappings

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"

	"github.com/ipsfhir/ipsfhir/ips"

	cpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/codes_go_proto"
	dtpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/datatypes_go_proto"
	drpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/resources/document_reference_go_proto"
	"google.golang.org/protobuf/proto"
)

// PlanNoteKey is the identity of a client's chart note. There is one per
// client, updated in place, so the chart never fills with copies.
func (o Options) PlanNoteKey(c *ips.Client) Key { return o.key(KindPlanNote, c.ID, "") }

// PlanNoteVersionKey is the identity of one version of a client's chart
// note where the EHR creates notes but does not update them: record is
// "{n}-{digest}", the note's number in the client's sequence of notes and
// NoteDigest of its content. The number makes a plan changed back to an
// earlier content a new note (replacing the newest), where the digest
// alone would name the old one.
func (o Options) PlanNoteVersionKey(c *ips.Client, record string) Key {
	return o.key(KindPlanNote, c.ID, record)
}

// NoteDigest names a chart note's content: the first 16 bytes of the
// SHA-256 of its deterministic protobuf encoding, in hex, without what
// does not make content (identifier, date, docStatus and relatesTo: which
// note it is, when it was written, and which one it replaces).
func NoteDigest(d *drpb.DocumentReference) string {
	d = proto.Clone(d).(*drpb.DocumentReference)
	d.Identifier, d.Date, d.DocStatus, d.RelatesTo = nil, nil, nil, nil
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(d)
	if err != nil {
		panic("mappings: encode a DocumentReference: " + err.Error())
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:16])
}

// AsNoteVersion makes a chart note (PlanNote) one version of a note the
// EHR only creates: identified by k (PlanNoteVersionKey), final, and
// replacing the note before it (relatesTo replaces), given as a reference
// ("DocumentReference/123"), or "" for the first.
func AsNoteVersion(d *drpb.DocumentReference, k Key, replaces string) {
	d.Identifier = []*dtpb.Identifier{fidentifier(k.System(), k.Value())}
	d.DocStatus = &drpb.DocumentReference_DocStatusCode{Value: cpb.CompositionStatusCode_FINAL}
	d.RelatesTo = nil
	if replaces != "" {
		d.RelatesTo = []*drpb.DocumentReference_RelatesTo{{
			Code:   &drpb.DocumentReference_RelatesTo_CodeType{Value: cpb.DocumentRelationshipTypeCode_REPLACES},
			Target: literalRef(replaces),
		}}
	}
}

// PlanNote maps the client's IPS plan to a DocumentReference chart note
// (profile ips-plan-note): the fallback for EHRs that refuse Goal and CarePlan
// writes but accept clinical notes. Its date (Options.Now) is the date the
// note speaks for. A note already in the chart (Options.NoteReleased) is
// updated as an amendment: docStatus amended, not final. Its author is the
// employment specialist, and it relates to the client's mental health
// treatment plan where one is known (context.related).
func PlanNote(c *ips.Client, o Options) *drpb.DocumentReference {
	k := o.PlanNoteKey(c)
	docStatus := cpb.CompositionStatusCode_FINAL
	if o.NoteReleased != nil && o.NoteReleased(k) {
		docStatus = cpb.CompositionStatusCode_AMENDED
	}
	out := &drpb.DocumentReference{
		Meta:        o.meta(ProfilePlanNote),
		Identifier:  []*dtpb.Identifier{fidentifier(k.System(), k.Value())},
		Status:      &drpb.DocumentReference_StatusCode{Value: cpb.DocumentReferenceStatusCode_CURRENT},
		DocStatus:   &drpb.DocumentReference_DocStatusCode{Value: docStatus},
		Type:        loinc(LOINCProgressNote),
		Category:    []*dtpb.CodeableConcept{fconcept(SystemDocRefCategory, "clinical-note", "Clinical Note")},
		Subject:     o.subject(c),
		Description: fstr(PlanTitle),
		Content: []*drpb.DocumentReference_Content{{Attachment: &dtpb.Attachment{
			ContentType: &dtpb.Attachment_ContentTypeCode{Value: "text/plain; charset=utf-8"},
			Data:        &dtpb.Base64Binary{Value: []byte(RenderPlan(c, o))},
			Title:       fstr(PlanTitle),
		}}},
	}
	if !c.EnrolledOn.IsZero() {
		// No context for a client never enrolled: the profile's period
		// is the enrollment, and needs its start.
		out.Context = &drpb.DocumentReference_Context{Period: fperiod(c.EnrolledOn, c.ClosedOn)}
	}
	if !o.Now.IsZero() {
		out.Date = finstant(o.Now)
	}
	if s := o.specialistRef(c); s != nil {
		out.Author = []*dtpb.Reference{s}
	}
	if tp := o.treatmentPlan(c); tp != nil {
		out.Context.Related = []*dtpb.Reference{tp}
	}
	return out
}

// RenderPlan writes the client's IPS plan as plain text for the chart: the
// program and enrollment, the goals, work (current and past, with how each
// job ended and whether the employer knows of the condition), next steps
// (those whose date passed by Options.Now marked overdue), supports given and
// the client's preferences. It is what a clinician reads when the EHR takes
// only notes.
func RenderPlan(c *ips.Client, o Options) string {
	var b strings.Builder
	line := func(format string, a ...any) { fmt.Fprintf(&b, format+"\n", a...) }
	line("%s", strings.ToUpper(PlanTitle))
	line("Individual Placement and Support: evidence-based supported employment.")
	if o.ProgramName != "" {
		line("Program: %s", o.ProgramName)
	}
	line("%s", enrollmentSummary(c))
	if s := specialistLine(c); s != "" {
		line("Employment specialist: %s", s)
	}

	line("")
	line("EMPLOYMENT GOALS")
	if len(c.Goals) == 0 {
		line("- none recorded yet")
	}
	for _, g := range sortedGoals(c) {
		s := fmt.Sprintf("- %q (%s", g.Description, g.Status)
		if g.Achievement != "" {
			s += ", " + string(g.Achievement)
		}
		if g.TargetHoursPerWeek != nil {
			s += fmt.Sprintf(", target %s hours a week", formatHours(*g.TargetHoursPerWeek))
		}
		s += ", since " + g.Start.String()
		if !g.Due.IsZero() {
			s += ", due " + g.Due.String()
		}
		line("%s)", s)
	}

	line("")
	line("%s", strings.ToUpper(currentWorkHeading(c)))
	jobs := currentJobs(c)
	if len(jobs) == 0 {
		line("- not working at present")
	}
	for _, j := range jobs {
		line("- %s at %s since %s: %s; %s", j.Title, j.Employer, j.Start, jobTerms(j), disclosedPhrase(j))
	}
	if past := pastJobs(c); len(past) > 0 {
		line("")
		line("PAST JOBS")
		for _, j := range past {
			line("- %s at %s, %s to %s: %s; %s; %s", j.Title, j.Employer, j.Start, j.End, jobTerms(j), endedPhrase(j), disclosedPhrase(j))
		}
	}

	next, done := splitSupports(c)
	line("")
	if c.ClosedOn.IsZero() {
		line("NEXT STEPS")
	} else {
		line("STEPS STILL OPEN WHEN THE ENROLLMENT CLOSED")
	}
	if len(next) == 0 {
		line("- none planned")
	}
	for _, s := range next {
		if overdue(s, o) {
			line("- OVERDUE: %s", supportLine(s))
		} else {
			line("- %s", supportLine(s))
		}
	}
	if len(done) > 0 {
		line("")
		shown := done[:min(len(done), recentSupportsShown)]
		if len(shown) == len(done) {
			line("SUPPORTS GIVEN")
		} else {
			line("SUPPORTS GIVEN (the %d most recent of %d)", len(shown), len(done))
		}
		for _, s := range shown {
			line("- %s", supportLine(s))
		}
		if len(shown) < len(done) {
			line("- in all: %s", supportTally(done))
		}
	}

	if p := c.Preferences; p != nil || c.Disclosure != "" {
		line("")
		line("CLIENT PREFERENCES")
		if p != nil {
			if len(p.JobTypes) > 0 {
				line("- Job types: %s", strings.Join(p.JobTypes, ", "))
			}
			if p.HoursPerWeek != nil {
				line("- Hours: %s a week", formatHours(*p.HoursPerWeek))
			}
			if p.Schedule != "" {
				line("- Schedule: %s", p.Schedule)
			}
			if p.Location != "" {
				line("- Location: %s", p.Location)
			}
		}
		if c.Disclosure != "" {
			line("- Disclosure to employers: %s", c.Disclosure)
		}
	}
	return b.String()
}

// overdue reports whether a planned support's date passed before the date
// the note speaks for: the day of Options.Now in UTC, as the note's date is
// written, so anyone reading the note can tell what was overdue when. A
// support in progress has started, so it is not overdue; without a date
// nothing is.
func overdue(s *ips.Support, o Options) bool {
	return s.Status == ips.SupportPlanned && !o.Now.IsZero() && s.Date.Before(ips.DateOf(o.Now.UTC()))
}

// jobTerms is a job's hours, wage and kind, as the outcomes count them.
func jobTerms(j *ips.Job) string {
	kind := "competitive"
	if !j.Competitive {
		kind = "not competitive"
	}
	return fmt.Sprintf("%s hours a week, %s %s an hour, %s", formatHours(j.HoursPerWeek), fdecimal(j.HourlyWage.Value).GetValue(), j.HourlyWage.Currency, kind)
}

// recentSupportsShown caps the list of supports given: a long-running client
// has dozens, and a clinician reading the chart needs the recent ones and the
// overall pattern (the tally), not a log.
const recentSupportsShown = 6

// supportTally counts supports by type, most frequent first.
func supportTally(ss []*ips.Support) string {
	counts := map[ips.SupportType]int{}
	for _, s := range ss {
		counts[s.Type]++
	}
	types := make([]ips.SupportType, 0, len(counts))
	for t := range counts {
		types = append(types, t)
	}
	slices.SortFunc(types, func(a, b ips.SupportType) int {
		if counts[a] != counts[b] {
			return counts[b] - counts[a]
		}
		return strings.Compare(string(a), string(b))
	})
	parts := make([]string, len(types))
	for i, t := range types {
		parts[i] = fmt.Sprintf("%s %d", strings.ToLower(SupportTypeDisplay[t]), counts[t])
	}
	return strings.Join(parts, ", ")
}

func supportLine(s *ips.Support) string {
	out := fmt.Sprintf("%s, %s, %s", SupportTypeDisplay[s.Type], s.Status, s.Date)
	if s.Note != "" {
		out += ": " + s.Note
	}
	return out
}

// splitSupports separates what is still to happen (planned, in progress;
// soonest first) from what happened (completed; newest first). Cancelled
// supports are left out of the note: they are noise to a clinician.
func splitSupports(c *ips.Client) (next, done []*ips.Support) {
	for _, s := range c.Supports {
		switch s.Status {
		case ips.SupportPlanned, ips.SupportInProgress:
			next = append(next, s)
		case ips.SupportCompleted:
			done = append(done, s)
		}
	}
	slices.SortStableFunc(next, func(a, b *ips.Support) int { return a.Date.Compare(b.Date) })
	slices.SortStableFunc(done, func(a, b *ips.Support) int { return b.Date.Compare(a.Date) })
	return next, done
}

func sortedGoals(c *ips.Client) []*ips.Goal {
	gs := slices.Clone(c.Goals)
	slices.SortStableFunc(gs, func(a, b *ips.Goal) int { return a.Start.Compare(b.Start) })
	return gs
}
