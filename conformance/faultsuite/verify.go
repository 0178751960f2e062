package faultsuite

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/ipsfhir/ipsfhir/ips"
	"github.com/ipsfhir/ipsfhir/mappings"
)

// ehrCopy is one resource in the EHR carrying one of the program's
// business identifiers.
type ehrCopy struct {
	typ string
	id  string
	raw json.RawMessage
}

// ehrTypes are the resource types the adapter may write.
var ehrTypes = []string{"Goal", "CarePlan", "Observation", "DocumentReference"}

// verify compares the end state with what the run expects: the EHR (read
// on the peer directly, never through the adapter) and the store (read
// through /api/v1), and reads the admin API's conflicts and dead letters.
func (r *run) verify(ctx context.Context) error {
	r.logf("verifying the EHR and the store")
	rep := r.report
	index := map[mappings.Key][]ehrCopy{}
	goalByRef := map[string]mappings.Key{}
	goalIDs := map[string]string{} // client/goal → EHR id, for stories
	for _, typ := range ehrTypes {
		list, err := r.peerFHIR.searchAll(ctx, typ, nil)
		if err != nil {
			return fmt.Errorf("faultsuite: reading the EHR's %s resources: %w", typ, err)
		}
		for _, raw := range list {
			id, _, ids := identifiers(raw)
			for _, ident := range ids {
				k, ok := mappings.ParseKey(ident[0], ident[1])
				if !ok || k.Program != r.program {
					continue
				}
				index[k] = append(index[k], ehrCopy{typ, id, raw})
				if typ == "Goal" {
					goalByRef["Goal/"+id] = k
					goalIDs[k.Value()] = id
				}
			}
		}
	}

	e := r.exp
	e.mu.Lock()
	defer e.mu.Unlock()
	add := func(m Mismatch) { rep.Mismatches = append(rep.Mismatches, m) }

	// Duplicates: more than one resource per business identifier.
	for _, k := range slices.SortedFunc(maps.Keys(index), cmpKey) {
		if n := len(index[k]); n > 1 {
			rep.Duplicates += n - 1
			add(Mismatch{Check: "duplicate", ResourceType: index[k][0].typ, Kind: string(k.Kind), Client: k.Client, Record: k.Record, Detail: fmt.Sprintf("%d copies", n)})
			if len(rep.Stories) < maxStories {
				rep.Stories = append(rep.Stories, duplicateStory(k, index[k]))
			}
		}
	}

	// Duplicate Provenances: more than one per identity (the record and
	// the content written; a meta.tag, R4 Provenance having no identifier).
	if r.provenance {
		list, err := r.peerFHIR.searchAll(ctx, "Provenance", nil)
		if err != nil {
			return fmt.Errorf("faultsuite: reading the EHR's Provenance resources: %w", err)
		}
		system := mappings.IdentifierSystem(r.program, mappings.KindProvenance)
		byIdentity := map[string]int{}
		for _, raw := range list {
			var p struct {
				Meta struct {
					Tag []struct{ System, Code string } `json:"tag"`
				} `json:"meta"`
			}
			_ = json.Unmarshal(raw, &p)
			for _, t := range p.Meta.Tag {
				if t.System == system {
					byIdentity[t.Code]++
				}
			}
		}
		rep.Provenances = len(byIdentity)
		for _, code := range slices.Sorted(maps.Keys(byIdentity)) {
			if n := byIdentity[code]; n > 1 {
				rep.Duplicates += n - 1
				client, rest, _ := strings.Cut(code, "/")
				add(Mismatch{Check: "duplicate", ResourceType: "Provenance", Kind: string(mappings.KindProvenance), Client: client, Record: rest, Detail: fmt.Sprintf("%d copies", n)})
			}
		}
	}

	// Lost, consent and stale: every consenting client's records are
	// there with the expected content; nobody else's are.
	o := mappings.Options{Program: r.program}
	if r.caseload.Program != nil {
		o.ProgramName = r.caseload.Program.Name
	}
	native := func(concept string) bool { return r.paths[concept] == "native" }
	for _, cid := range e.ids {
		c := e.clients[cid]
		type want struct {
			k     mappings.Key
			typ   string
			check func(raw json.RawMessage) []string
		}
		var wants []want
		if native("employment-goal") {
			for _, g := range c.Goals {
				wants = append(wants, want{o.GoalKey(c, g), "Goal", func(raw json.RawMessage) []string { return e.goalDiff(c, g, raw) }})
			}
		}
		if native("ips-plan") {
			wants = append(wants, want{o.PlanKey(c), "CarePlan", func(raw json.RawMessage) []string { return e.planDiff(c, raw, goalByRef) }})
		}
		if native("job-outcome") {
			for _, j := range c.Jobs {
				wants = append(wants, want{o.JobKey(c, j), "Observation", func(raw json.RawMessage) []string { return e.jobDiff(c, j, raw) }})
			}
		}
		if native("employment-status") {
			for _, s := range mappings.EmploymentStatusRecords(c) {
				wants = append(wants, want{o.EmploymentStatusKey(c, s), "Observation", func(raw json.RawMessage) []string { return statusDiff(s, raw) }})
			}
		}
		if native("chart-note") {
			wants = append(wants, want{o.PlanNoteKey(c), "DocumentReference", func(raw json.RawMessage) []string { return e.noteDiff(c, raw, o) }})
		}
		if !consents(c) {
			for k, copies := range index {
				if k.Client == cid {
					rep.ConsentViolations += len(copies)
					add(Mismatch{Check: "consent", ResourceType: copies[0].typ, Kind: string(k.Kind), Client: cid, Record: k.Record})
				}
			}
			continue
		}
		for _, w := range wants {
			copies := index[w.k]
			if len(copies) == 0 {
				rep.Lost++
				add(Mismatch{Check: "lost", ResourceType: w.typ, Kind: string(w.k.Kind), Client: cid, Record: w.k.Record})
				continue
			}
			if fields := w.check(copies[0].raw); len(fields) > 0 {
				rep.Stale++
				for _, f := range fields {
					add(Mismatch{Check: "stale", ResourceType: w.typ, Kind: string(w.k.Kind), Field: f, Client: cid, Record: w.k.Record})
				}
			}
		}
	}

	// The store: every IPS edit still there, every clinician change
	// pulled in, nothing else moved.
	var stored map[string]*ips.Client
	var err error
	for _, i := range []int{0, len(r.replicas) - 1} {
		if stored, err = r.api(i).listClients(ctx); err == nil {
			break
		}
	}
	if err != nil {
		rep.fail("cannot read the store through /api/v1: %v", err)
	} else {
		e.storeDiff(stored, func(check, field, cid, rid, kind string) {
			switch check {
			case "reverted":
				rep.Reverted++
			case "clinician-missing":
				rep.ClinicianMissing++
			default:
				rep.StoreDrift++
			}
			add(Mismatch{Check: check, ResourceType: "store", Kind: kind, Field: field, Client: cid, Record: rid})
		})
	}

	r.checkOverwrites(ctx)

	// Conflicts and dead letters, from the admin API.
	api := r.api(0)
	cs, err := api.conflicts(ctx)
	if err != nil {
		rep.fail("cannot read conflicts: %v", err)
	} else {
		rep.Conflicts = len(cs)
		rep.ConflictFields = map[string]int{}
		for _, c := range cs {
			label := c.Field
			system, value, _ := strings.Cut(c.Key, "|")
			if k, ok := mappings.ParseKey(system, value); ok {
				label = string(k.Kind) + "." + c.Field
			}
			rep.ConflictFields[label]++
		}
	}
	r.stories(ctx, stored, goalIDs, cs)
	if dl, err := api.deadLetters(ctx); err != nil {
		rep.fail("cannot read dead letters: %v", err)
	} else {
		rep.DeadLetters = len(dl)
		rep.DeadLetterReasons = map[string]int{}
		for _, d := range dl {
			rep.DeadLetterReasons[d.Reason]++
		}
	}

	if rep.Duplicates > 0 {
		rep.fail("%d duplicate resource(s) in the EHR by business identifier: %s", rep.Duplicates, rep.mismatchSummary("duplicate"))
	}
	if rep.Lost > 0 {
		rep.fail("%d record(s) of consenting clients missing from the EHR: %s", rep.Lost, rep.mismatchSummary("lost"))
	}
	if rep.Stale > 0 {
		rep.fail("%d EHR resource(s) did not converge to the expected final values (fields: %s)", rep.Stale, rep.mismatchSummary("stale"))
	}
	if rep.Reverted > 0 {
		rep.fail("%d IPS edit(s) reverted: the store no longer holds the value the API last set (%s)", rep.Reverted, rep.mismatchSummary("reverted"))
	}
	if rep.ClinicianMissing > 0 {
		rep.fail("%d clinician change(s) not in the store (%s)", rep.ClinicianMissing, rep.mismatchSummary("clinician-missing"))
	}
	if rep.Overwritten > 0 {
		rep.fail("%d clinician change(s) overwritten in the EHR by the adapter's next write (%s)", rep.Overwritten, rep.mismatchSummary("clinician-overwritten"))
	}
	if rep.StoreDrift > 0 {
		rep.fail("%d store field(s) changed that neither side edited (%s)", rep.StoreDrift, rep.mismatchSummary("store-drift"))
	}
	if rep.ConsentViolations > 0 {
		rep.fail("%d resource(s) of clients without EHR consent found in the EHR (%s)", rep.ConsentViolations, rep.mismatchSummary("consent"))
	}
	if rep.Conflicts > 0 {
		rep.fail("%d conflict record(s), although no field was changed by both sides (fields: %s)", rep.Conflicts, countsText(rep.ConflictFields))
	}
	n := rep.DeadLetters
	if r.opts.soak != nil {
		// The soak tolerates the EHR refusing something for good.
		for reason, k := range rep.DeadLetterReasons {
			if permanentRefusal(reason) {
				rep.soakPermanent += k
				n -= k
			}
		}
	}
	if n > 0 {
		rep.fail("%d dead letter(s) not caused by a permanent refusal (reasons: %s)", n, countsText(rep.DeadLetterReasons))
	}
	return nil
}

func cmpKey(a, b mappings.Key) int {
	return strings.Compare(a.System()+"|"+a.Value(), b.System()+"|"+b.Value())
}

// checked reports whether a field's expected value is known: an edit
// whose outcome stayed unknown makes it either value.
func (e *expectation) checked(cid, plural, rid, field string) bool {
	return !e.ambiguous[fieldKey(cid, plural, rid, field)]
}

func (e *expectation) goalDiff(c *ips.Client, want *ips.Goal, raw json.RawMessage) []string {
	cr, err := mappings.ParseResource(raw)
	if err != nil || cr.GetGoal() == nil {
		return []string{"unreadable"}
	}
	_, got, err := mappings.GoalFromFHIR(cr.GetGoal())
	if err != nil {
		return []string{"unreadable"}
	}
	return e.goalFields(c.ID, want, got)
}

// goalFields names the fields in which got differs from want.
func (e *expectation) goalFields(cid string, want, got *ips.Goal) []string {
	var out []string
	diff := func(field string, differ bool) {
		if differ && e.checked(cid, "goals", want.ID, field) {
			out = append(out, field)
		}
	}
	diff("description", want.Description != got.Description)
	diff("target", !sameTarget(want, got))
	diff("status", want.Status != got.Status)
	diff("achievement", want.Achievement != got.Achievement)
	// Notes as the EHR holds them: the store also keeps which connection
	// a clinician's note came from (ips.Note.Source), which it does not.
	diff("notes", !slices.EqualFunc(want.Notes, got.Notes, ips.Note.SameText))
	diff("start", want.Start != got.Start)
	return out
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

func (e *expectation) planDiff(c *ips.Client, raw json.RawMessage, goalByRef map[string]mappings.Key) []string {
	cr, err := mappings.ParseResource(raw)
	if err != nil || cr.GetCarePlan() == nil {
		return []string{"unreadable"}
	}
	resolve := func(ref string) (string, bool) {
		k, ok := goalByRef[ref]
		if !ok || k.Client != c.ID {
			return "", false
		}
		return k.Record, true
	}
	_, got, err := mappings.PlanFromFHIR(cr.GetCarePlan(), resolve)
	if err != nil {
		return []string{"unreadable"}
	}
	var out []string
	if got.Status != c.EffectiveStatus() {
		out = append(out, "status")
	}
	if got.Specialist != c.Specialist {
		out = append(out, "specialist")
	}
	out = append(out, e.supportFields(c, got.Supports)...)
	return out
}

// supportFields names the differences between the expected supports of c
// and got.
func (e *expectation) supportFields(c *ips.Client, got []*ips.Support) []string {
	var out []string
	byID := map[string]*ips.Support{}
	for _, s := range got {
		byID[s.ID] = s
	}
	for _, s := range c.Supports {
		g, ok := byID[s.ID]
		delete(byID, s.ID)
		if !ok {
			if e.checked(c.ID, "supports", s.ID, "added") {
				out = append(out, "support.missing")
			}
			continue
		}
		if g.Note != s.Note && e.checked(c.ID, "supports", s.ID, "note") {
			out = append(out, "support.note")
		}
		if g.Type != s.Type || g.Status != s.Status || g.Date != s.Date || g.Goal != s.Goal {
			out = append(out, "support.other")
		}
	}
	for id := range byID {
		if e.checked(c.ID, "supports", id, "added") {
			out = append(out, "support.unexpected")
		}
	}
	return out
}

func (e *expectation) jobDiff(c *ips.Client, want *ips.Job, raw json.RawMessage) []string {
	cr, err := mappings.ParseResource(raw)
	if err != nil || cr.GetObservation() == nil {
		return []string{"unreadable"}
	}
	_, got, err := mappings.JobFromFHIR(cr.GetObservation())
	if err != nil {
		return []string{"unreadable"}
	}
	return e.jobFields(c.ID, want, got)
}

func (e *expectation) jobFields(cid string, want, got *ips.Job) []string {
	var out []string
	if want.HoursPerWeek != got.HoursPerWeek && e.checked(cid, "jobs", want.ID, "hoursPerWeek") {
		out = append(out, "hoursPerWeek")
	}
	if want.Title != got.Title || want.Employer != got.Employer || want.Start != got.Start || want.End != got.End || want.HourlyWage != got.HourlyWage {
		out = append(out, "other")
	}
	return out
}

func statusDiff(want ips.EmploymentSnapshot, raw json.RawMessage) []string {
	cr, err := mappings.ParseResource(raw)
	if err != nil || cr.GetObservation() == nil {
		return []string{"unreadable"}
	}
	_, got, err := mappings.EmploymentStatusFromFHIR(cr.GetObservation())
	if err != nil {
		return []string{"unreadable"}
	}
	if got != want {
		return []string{"status"}
	}
	return nil
}

// noteDiff compares the chart note's text with the plan rendered from the
// expected client as of the note's own date (its overdue marks depend on
// it); a client with an edit of unknown outcome is skipped.
func (e *expectation) noteDiff(c *ips.Client, raw json.RawMessage, o mappings.Options) []string {
	for k := range e.ambiguous {
		if strings.HasPrefix(k, c.ID+"/") {
			return nil
		}
	}
	var d struct {
		Date    time.Time `json:"date"`
		Content []struct {
			Attachment struct {
				Data string `json:"data"`
			} `json:"attachment"`
		} `json:"content"`
	}
	if err := json.Unmarshal(raw, &d); err != nil || len(d.Content) == 0 {
		return []string{"unreadable"}
	}
	text, err := base64.StdEncoding.DecodeString(d.Content[0].Attachment.Data)
	if err != nil {
		return []string{"unreadable"}
	}
	o.Now = d.Date
	if string(text) != mappings.RenderPlan(c, o) {
		return []string{"text"}
	}
	return nil
}

// storeDiff compares the store's clients with the expected ones and
// reports each difference with its category: reverted (a field the API
// set last), clinician-missing (one a clinician set last) or store-drift.
func (e *expectation) storeDiff(stored map[string]*ips.Client, report func(check, field, cid, rid, kind string)) {
	category := func(cid, plural, rid, field string) string {
		k := fieldKey(cid, plural, rid, field)
		switch {
		case e.apiSet[k]:
			return "reverted"
		case e.clinSet[k]:
			return "clinician-missing"
		}
		return "store-drift"
	}
	for _, cid := range e.ids {
		want := e.clients[cid]
		got, ok := stored[cid]
		if !ok {
			report("store-drift", "missing", cid, "", "client")
			continue
		}
		if got.EffectiveStatus() != want.EffectiveStatus() || got.EnrolledOn != want.EnrolledOn || got.Patient != want.Patient {
			report("store-drift", "client", cid, "", "client")
		}
		for _, wg := range want.Goals {
			gg := got.Goal(wg.ID)
			if gg == nil {
				report("store-drift", "missing", cid, wg.ID, "goal")
				continue
			}
			for _, f := range e.goalFields(cid, wg, gg) {
				report(category(cid, "goals", wg.ID, f), f, cid, wg.ID, "goal")
			}
		}
		if len(got.Goals) != len(want.Goals) {
			report("store-drift", "count", cid, "", "goal")
		}
		for _, wj := range want.Jobs {
			gj := jobOf(got, wj.ID)
			if gj == nil {
				report("store-drift", "missing", cid, wj.ID, "job")
				continue
			}
			for _, f := range e.jobFields(cid, wj, gj) {
				report(category(cid, "jobs", wj.ID, f), f, cid, wj.ID, "job")
			}
		}
		for _, f := range e.supportFields(want, got.Supports) {
			check := "store-drift"
			if f == "support.missing" || f == "support.note" {
				// Supports the API added or annotated.
				check = "reverted"
				if f == "support.note" && !anyAPISet(e, cid, "supports", "note") || f == "support.missing" && !anyAPISet(e, cid, "supports", "added") {
					check = "store-drift"
				}
			}
			report(check, f, cid, "", "support")
		}
	}
}

func anyAPISet(e *expectation, cid, plural, field string) bool {
	re := regexp.MustCompile("^" + regexp.QuoteMeta(cid+"/"+plural+"/") + "[^/]*/" + regexp.QuoteMeta(field) + "$")
	for k := range e.apiSet {
		if re.MatchString(k) {
			return true
		}
	}
	return false
}
