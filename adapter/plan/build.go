package plan

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Options adjust a plan. The zero value builds the best plan the statement allows.
type Options struct {
	// Overrides force a concept's path: chart-note or none for the written
	// concepts, native for chart-note (always write the note), none for
	// referral intake. An override the EHR cannot honour is an error.
	Overrides map[Concept]Path
	// SiteCodedObservations says the EHR takes Observation writes only
	// under codes the site has configured (Epic flowsheet rows, Oracle
	// Health's mapped codes), so an employment observation is written only
	// when the administrator mapped a site code for it (SiteCodes). nil
	// decides from the statement: Epic, Oracle Health (Cerner) and
	// athenahealth restrict; other servers are taken at their word.
	SiteCodedObservations *bool
	// SiteCodes marks the concepts (job-outcome, employment-status) the
	// administrator mapped to a site code.
	SiteCodes map[Concept]bool
	// AddGoalsToTreatmentPlan says the administrator asked for the IPS
	// goals to be added to the clinic's treatment plan (an update of the
	// clinic's CarePlan); the plan says whether this EHR allows it.
	AddGoalsToTreatmentPlan bool
}

// AddsGoalsToTreatmentPlan reports whether the goals are added to the
// treatment plan: asked for (Options.AddGoalsToTreatmentPlan), the plan is
// linked, goals are written natively, and the EHR reads and updates
// CarePlan with If-Match (versioned update): the clinic's plan is never
// written without the version read.
func (p *Plan) AddsGoalsToTreatmentPlan() bool { return p.addGoals }

// restrictsObservationCodes recognises the EHRs known to accept Observation
// writes only under site-configured codes. Their statements cannot say so:
// FHIR has no element for it.
func restrictsObservationCodes(cs capabilityStatement) bool {
	who := strings.ToLower(cs.Software.Name + " " + cs.Publisher + " " + cs.Name)
	for _, v := range []string{"epic", "oracle health", "cerner", "millennium", "athena"} {
		if strings.Contains(who, v) {
			return true
		}
	}
	return false
}

// capabilityStatement is the part of a FHIR R4 CapabilityStatement a plan
// reads. Unknown fields are ignored: statements are large and vendor-extended.
type capabilityStatement struct {
	ResourceType string `json:"resourceType"`
	FHIRVersion  string `json:"fhirVersion"`
	Publisher    string `json:"publisher"`
	Name         string `json:"name"`
	Software     struct {
		Name    string `json:"name"`
		Version string `json:"version"`
	} `json:"software"`
	Rest []capRest `json:"rest"`
}

type capRest struct {
	Mode        string        `json:"mode"`
	Interaction []capCode     `json:"interaction"`
	Resource    []capResource `json:"resource"`
}

type capResource struct {
	Type              string    `json:"type"`
	Interaction       []capCode `json:"interaction"`
	Versioning        string    `json:"versioning"`
	ConditionalCreate bool      `json:"conditionalCreate"`
	ConditionalUpdate bool      `json:"conditionalUpdate"`
	SearchParam       []struct {
		Name string `json:"name"`
	} `json:"searchParam"`
}

type capCode struct {
	Code string `json:"code"`
}

// ErrNotCapabilityStatement is returned for JSON that is not an R4
// CapabilityStatement with a server part.
var ErrNotCapabilityStatement = errors.New("not a FHIR R4 server CapabilityStatement")

// dateParams are date search parameters that move with new records of the
// type, so polling them finds what is new (not what changed).
var dateParams = map[string]string{"ServiceRequest": "authored"}

// Build reads a CapabilityStatement (JSON) and returns the sync plan.
func Build(statement []byte, o Options) (*Plan, error) {
	var cs capabilityStatement
	if err := json.Unmarshal(statement, &cs); err != nil {
		return nil, fmt.Errorf("plan: %w: not JSON", ErrNotCapabilityStatement)
	}
	if cs.ResourceType != "CapabilityStatement" {
		return nil, fmt.Errorf("plan: %w: resourceType is not CapabilityStatement", ErrNotCapabilityStatement)
	}
	if !strings.HasPrefix(cs.FHIRVersion, "4.0") {
		return nil, fmt.Errorf("plan: %w: the server declares FHIR %q; ipsfhir speaks R4 (4.0.1)", ErrNotCapabilityStatement, cs.FHIRVersion)
	}
	ri := slices.IndexFunc(cs.Rest, func(r capRest) bool { return r.Mode == "server" })
	if ri < 0 {
		return nil, fmt.Errorf("plan: %w: no rest entry with mode server", ErrNotCapabilityStatement)
	}
	rest := cs.Rest[ri]

	p := &Plan{FHIRVersion: cs.FHIRVersion, Bundles: "none", types: map[string]*ResourcePlan{}}
	if cs.Software.Name != "" {
		p.Software = strings.TrimSpace(cs.Software.Name + " " + cs.Software.Version)
	}
	for _, i := range rest.Interaction {
		switch {
		case i.Code == "transaction":
			p.Bundles = "transaction"
		case i.Code == "batch" && p.Bundles == "none":
			p.Bundles = "batch"
		}
	}
	for _, r := range rest.Resource {
		rp := ResourcePlan{Type: r.Type}
		for _, i := range r.Interaction {
			rp.Interactions = append(rp.Interactions, i.Code)
		}
		for _, s := range r.SearchParam {
			rp.SearchParams = append(rp.SearchParams, s.Name)
		}
		searchable := slices.Contains(rp.Interactions, "search-type")
		_, byID := rp.Searches("identifier")
		_, byPatient := rp.Searches("patient")
		byID, byPatient = byID && searchable, byPatient && searchable
		if slices.Contains(rp.Interactions, "create") || slices.Contains(rp.Interactions, "update") {
			rp.ConditionalCreate = r.ConditionalCreate && byID && slices.Contains(rp.Interactions, "create")
			switch {
			case r.ConditionalUpdate && byID && slices.Contains(rp.Interactions, "update"):
				rp.Idempotency = ConditionalUpdate
			case r.ConditionalCreate && byID && slices.Contains(rp.Interactions, "create"):
				rp.Idempotency = ConditionalCreate
			case byID:
				rp.Idempotency = SearchByID
			case byPatient:
				rp.Idempotency = SearchByPatient
			default:
				rp.Idempotency = LedgerOnly
			}
			switch {
			case r.Versioning == "versioned-update":
				rp.Concurrency = IfMatch
			case slices.Contains(rp.Interactions, "read") || searchable:
				rp.Concurrency = ReadCompareWrite
			default:
				rp.Concurrency = Overwrite
			}
		}
		rp.Detection = NotDetected
		if searchable {
			if lu, ok := rp.Searches("_lastUpdated"); ok {
				rp.Detection, rp.LastUpdatedParam = LastUpdated, lu
			} else if dp, ok := rp.Searches(dateParams[r.Type]); ok && dateParams[r.Type] != "" {
				rp.Detection, rp.DateParam = DateParameter, dp
			} else if byPatient {
				rp.Detection = FullReconcile
			}
		}
		p.Types = append(p.Types, rp)
	}
	slices.SortFunc(p.Types, func(a, b ResourcePlan) int { return strings.Compare(a.Type, b.Type) })
	for i := range p.Types {
		p.types[p.Types[i].Type] = &p.Types[i]
	}
	p.SiteCodedObservations = restrictsObservationCodes(cs)
	if o.SiteCodedObservations != nil {
		p.SiteCodedObservations = *o.SiteCodedObservations
	}
	if err := p.choosePaths(o); err != nil {
		return nil, err
	}
	p.provenance(rest)
	return p, nil
}

// provenance decides whether a Provenance accompanies each write, and how a
// retried one is kept from making two. FHIR R4 Provenance has no
// identifier: its identity is a meta.tag, found with _tag (a parameter of
// every type, but it must be declared); failing that, a search by target
// finds the Provenances of the written resource and the tag is matched
// here. A Provenance that could not be found again after a lost answer
// could be duplicated, so without either search none is written. It is
// only ever created, so it has no concurrency strategy.
func (p *Plan) provenance(rest capRest) {
	rp := p.types["Provenance"]
	if rp == nil {
		return
	}
	rp.Idempotency, rp.Concurrency = "", ""
	searchable := p.Allows("Provenance", "search-type")
	_, byTag := rp.Searches("_tag")
	_, byTarget := rp.Searches("target")
	byTag, byTarget = byTag && searchable, byTarget && searchable
	conditional := false
	for _, r := range rest.Resource {
		if r.Type == "Provenance" {
			conditional = r.ConditionalCreate
		}
	}
	writes := slices.ContainsFunc(p.Concepts, func(c ConceptPlan) bool { return c.Path == Native || c.Path == InNote })
	switch {
	case !writes:
		rp.Why = "nothing is written to this EHR, so no Provenance either"
	case !p.Allows("Provenance", "create"):
		rp.Why = fmt.Sprintf("Provenance declares %s, not create: no Provenance is written (each resource still carries the adapter's authorship tag)", p.interactionsOf("Provenance"))
	case conditional && byTag:
		rp.WrittenAlongside, rp.Idempotency, rp.ConditionalCreate = true, ConditionalCreate, true
		rp.Why = "Provenance declares create, conditionalCreate and _tag: each write's Provenance is a conditional create by its identity tag, in the client's transaction where there is one, safe to resend"
	case byTag:
		rp.WrittenAlongside, rp.Idempotency = true, SearchByTag
		rp.Why = "Provenance declares create and _tag: each write's Provenance is searched for by its identity tag before it is created, after the write"
	case byTarget:
		rp.WrittenAlongside, rp.Idempotency = true, SearchByTarget
		rp.Why = "Provenance declares create and target search: each write's Provenance is searched for by the written resource before it is created, after the write"
	default:
		rp.Why = "Provenance declares create but can be searched neither by _tag nor by target: one whose answer was lost could not be found again and might be duplicated, so none is written"
	}
}

// writable: the type can be created and then updated in place. Both are
// needed: a record changes over time, and re-creating would pile up copies.
func (p *Plan) writable(t string) bool { return p.Allows(t, "create") && p.Allows(t, "update") }

func (p *Plan) interactionsOf(t string) string {
	rp := p.types[t]
	if rp == nil || len(rp.Interactions) == 0 {
		return "nothing"
	}
	return strings.Join(rp.Interactions, ", ")
}

// noteName names where concepts that fall back go, for plan texts.
func noteName(noteType string) string {
	if noteType == "QuestionnaireResponse" {
		return "IPS employment plan QuestionnaireResponse (the EHR takes no notes)"
	}
	return "chart note"
}

var nativeType = map[Concept]string{
	Goal:             "Goal",
	IPSPlan:          "CarePlan",
	JobOutcome:       "Observation",
	EmploymentStatus: "Observation",
}

func (p *Plan) choosePaths(o Options) error {
	// A note the EHR creates but does not update is written again as a
	// new note that replaces the one before (relatesTo replaces).
	noteWritable := p.writable("DocumentReference") || p.NotesCreatedOnly()
	// An EHR that takes no notes may take QuestionnaireResponse: the
	// note's content then goes as the plan's response (created at least;
	// updated in place where the EHR updates them).
	respWritable := !noteWritable && p.Allows("QuestionnaireResponse", "create")
	noteType := "DocumentReference"
	if respWritable {
		noteType = "QuestionnaireResponse"
	}
	inNote := noteWritable || respWritable
	var errs []string
	needNote := false
	for _, c := range []Concept{Goal, IPSPlan, JobOutcome, EmploymentStatus} {
		t := nativeType[c]
		cp := ConceptPlan{Concept: c}
		siteCoded := t == "Observation" && p.SiteCodedObservations
		switch {
		case p.writable(t) && siteCoded && o.SiteCodes[c]:
			cp.Path, cp.ResourceType = Native, t
			cp.Why = fmt.Sprintf("%s declares create and update; written under the site code the administrator mapped", t)
			cp.Change = fmt.Sprintf("set connections[].overrides.%s to chart-note (to keep it out of %s) or none", c, t)
		case p.writable(t) && siteCoded && inNote:
			cp.Path, cp.ResourceType = InNote, noteType
			cp.Why = fmt.Sprintf("this EHR takes %s writes only under codes the site configured, and no site code is mapped for %s; it goes into the %s", t, c, noteName(noteType))
			cp.Change = fmt.Sprintf("map the site's code in connections[].codes.%s to write it as %s", c, t)
		case p.writable(t) && siteCoded:
			cp.Path = NoPath
			cp.Why = fmt.Sprintf("this EHR takes %s writes only under codes the site configured, and no site code is mapped for %s; DocumentReference (declares %s) cannot hold it either", t, c, p.interactionsOf("DocumentReference"))
			cp.Change = fmt.Sprintf("map the site's code in connections[].codes.%s", c)
		case p.writable(t):
			cp.Path, cp.ResourceType = Native, t
			cp.Why = fmt.Sprintf("%s declares create and update", t)
			cp.Change = fmt.Sprintf("set connections[].overrides.%s to chart-note (to keep it out of %s) or none", c, t)
		case noteWritable:
			cp.Path, cp.ResourceType = InNote, "DocumentReference"
			cp.Why = fmt.Sprintf("%s is not writable here (declares %s); it goes into the chart note", t, p.interactionsOf(t))
			cp.Change = fmt.Sprintf("set connections[].overrides.%s to none to leave it out of the note", c)
		case respWritable:
			cp.Path, cp.ResourceType = InNote, "QuestionnaireResponse"
			cp.Why = fmt.Sprintf("%s is not writable here (declares %s), nor is DocumentReference (declares %s); it goes into the %s", t, p.interactionsOf(t), p.interactionsOf("DocumentReference"), noteName(noteType))
			cp.Change = fmt.Sprintf("set connections[].overrides.%s to none to leave it out of the response", c)
		default:
			cp.Path = NoPath
			cp.Why = fmt.Sprintf("neither %s (declares %s), DocumentReference (declares %s) nor QuestionnaireResponse (declares %s) can be written", t, p.interactionsOf(t), p.interactionsOf("DocumentReference"), p.interactionsOf("QuestionnaireResponse"))
			cp.Change = "ask the EHR vendor to enable " + t + " or DocumentReference create"
		}
		if want, ok := o.Overrides[c]; ok && want != cp.Path {
			switch {
			case want == NoPath:
				cp.Path, cp.ResourceType = NoPath, ""
			case want == InNote && inNote:
				cp.Path, cp.ResourceType = InNote, noteType
			case want == Native && p.writable(t) && (!siteCoded || o.SiteCodes[c]):
				cp.Path, cp.ResourceType = Native, t
			default:
				errs = append(errs, fmt.Sprintf("override %s: %s is not possible: %s", c, want, cp.Why))
			}
			cp.Overridden = true
			cp.Why = "set by the administrator; the EHR would allow: " + cp.Why
		}
		if cp.Path == InNote {
			needNote = true
		}
		p.Concepts = append(p.Concepts, cp)
	}

	// Enrollment episodes: EpisodeOfCare where the EHR takes it; else the
	// enrollment is in the plan or the note (not a fallback of its own).
	ep := ConceptPlan{Concept: Episodes, Path: NoPath}
	if p.writable("EpisodeOfCare") {
		ep.Path, ep.ResourceType = Native, "EpisodeOfCare"
		ep.Why = "EpisodeOfCare declares create and update: each enrollment episode (referral, enrollment, closure) is one"
		ep.Change = "set connections[].overrides.enrollment-episodes to none to leave them out"
	} else {
		ep.Why = fmt.Sprintf("EpisodeOfCare declares %s; episodes need create and update: the enrollment dates travel in the IPS plan or the chart note", p.interactionsOf("EpisodeOfCare"))
	}
	errs = append(errs, offOnly(&ep, o)...)
	p.Concepts = append(p.Concepts, ep)

	note := ConceptPlan{Concept: ChartNote, Path: NoPath}
	switch {
	case needNote && p.NotesCreatedOnly():
		note.Path, note.ResourceType = Native, "DocumentReference"
		note.Why = "some concepts fall back to the note; DocumentReference declares create (not update): each change of the plan is a new note that replaces the one before (relatesTo replaces), the newest current"
	case needNote && noteWritable:
		note.Path, note.ResourceType = Native, "DocumentReference"
		note.Why = "some concepts fall back to the note; DocumentReference declares create and update, so one note per client is updated in place"
	case needNote && respWritable && p.Allows("QuestionnaireResponse", "update"):
		note.Path, note.ResourceType = Native, "QuestionnaireResponse"
		note.Why = fmt.Sprintf("some concepts fall back to the note; DocumentReference declares %s, but QuestionnaireResponse declares create and update: one IPS employment plan response per client, updated in place", p.interactionsOf("DocumentReference"))
	case needNote && respWritable:
		note.Path, note.ResourceType = Native, "QuestionnaireResponse"
		note.Why = fmt.Sprintf("some concepts fall back to the note; DocumentReference declares %s, but QuestionnaireResponse declares create (not update): a new IPS employment plan response each time the plan changes, the newest current", p.interactionsOf("DocumentReference"))
	case noteWritable:
		note.Why = "every concept is written natively; no note is needed"
		note.Change = "set connections[].overrides.chart-note to native to also write the note"
	default:
		note.Why = fmt.Sprintf("DocumentReference declares %s; a note needs create", p.interactionsOf("DocumentReference"))
	}
	if want, ok := o.Overrides[ChartNote]; ok && want != note.Path {
		switch {
		case want == Native && inNote:
			note.Path, note.ResourceType = Native, noteType
		case want == NoPath:
			note.Path, note.ResourceType = NoPath, ""
			if needNote {
				errs = append(errs, "override chart-note: none leaves concepts that fall back to the note with no path; override those to none too")
			}
		default:
			errs = append(errs, fmt.Sprintf("override chart-note: %s is not possible: %s", want, note.Why))
		}
		note.Overridden = true
	}
	p.Concepts = append(p.Concepts, note)

	ref := ConceptPlan{Concept: Referral, Path: NoPath}
	if rp := p.types["ServiceRequest"]; rp != nil && p.Allows("ServiceRequest", "search-type") && rp.Detection != NotDetected {
		ref.Path, ref.ResourceType = ReadOnly, "ServiceRequest"
		ref.Why = fmt.Sprintf("ServiceRequest can be searched (%s): new referrals to IPS make referred clients, enrolled when a specialist accepts them", rp.Detection)
		ref.Change = "set connections[].overrides.referral-intake to none to take in clients only through the API and imports"
	} else {
		ref.Why = "ServiceRequest cannot be searched here; clients are enrolled through the API and imports"
	}
	errs = append(errs, offOnly(&ref, o)...)
	p.Concepts = append(p.Concepts, ref)
	errs = append(errs, p.chooseTeamPaths(o)...)

	// Closing the loop with the referrer (the SDOH Clinical Care pattern):
	// a Task on each referral taken in, received, then accepted or
	// rejected as the specialist decides.
	loop := ConceptPlan{Concept: ReferralLoop, Path: NoPath}
	switch {
	case ref.Path != ReadOnly:
		loop.Why = "referrals are not read from this EHR, so there is none to acknowledge"
	case p.writable("Task"):
		loop.Path, loop.ResourceType = Native, "Task"
		loop.Why = "Task declares create and update: each referral taken in gets a Task (focus the ServiceRequest) that says received, then accepted or rejected"
		loop.Change = "set connections[].overrides.referral-loop to none to leave referrals unacknowledged in the EHR"
	case p.answersReferrerTasks():
		loop.Path, loop.ResourceType = Native, "Task"
		loop.Why = fmt.Sprintf("Task declares %s (no create): the referrer's own Task on each referral taken in (found by its focus, the ServiceRequest) is updated to received, then accepted or rejected; a referral that has no such Task gets no answer", p.interactionsOf("Task"))
		loop.Change = "set connections[].overrides.referral-loop to none to leave the referrers' Tasks as they are"
	default:
		loop.Why = fmt.Sprintf("Task declares %s; acknowledging a referral needs Task create and update, or search by focus and update of the referrer's own Task: the referrer sees no answer in the EHR", p.interactionsOf("Task"))
		loop.Change = "ask the EHR vendor to enable Task create and update"
	}
	errs = append(errs, offOnly(&loop, o)...)
	p.Concepts = append(p.Concepts, loop)

	for c := range o.Overrides {
		if !slices.Contains(Concepts, c) {
			errs = append(errs, fmt.Sprintf("override %s: no such concept (want one of %s)", c, joinConcepts()))
		}
	}
	if len(errs) > 0 {
		slices.Sort(errs)
		return fmt.Errorf("plan: %s", strings.Join(errs, "; "))
	}
	p.warn()
	return nil
}

// NotesCreatedOnly reports whether the EHR creates DocumentReferences but
// does not update them: a chart note written again is then a new note
// that replaces the one before (relatesTo replaces).
func (p *Plan) NotesCreatedOnly() bool {
	return p.Allows("DocumentReference", "create") && !p.Allows("DocumentReference", "update")
}

// answersReferrerTasks reports whether referrals are answered on the
// referrer's own Task rather than on one the adapter creates: the EHR
// takes no new Tasks but searches them by focus and updates them (Epic
// declares Task read, search-type and update). The referrer, or its
// system, makes the Task when it sends the referral, as the SDOH Clinical
// Care closed loop does; the performer updates its status.
func (p *Plan) answersReferrerTasks() bool {
	_, byFocus := p.types["Task"].Searches("focus")
	return !p.Allows("Task", "create") && p.Allows("Task", "update") && p.Allows("Task", "search-type") && byFocus
}

// AnswersReferrerTasks reports whether the referral loop updates the
// referrer's own Tasks (see answersReferrerTasks) instead of writing
// Tasks of its own.
func (p *Plan) AnswersReferrerTasks() bool {
	return p.Concept(ReferralLoop).Path == Native && p.answersReferrerTasks()
}

// offOnly applies the administrator's override of a concept whose only
// possible override is none; it returns the error for any other.
func offOnly(cp *ConceptPlan, o Options) []string {
	want, ok := o.Overrides[cp.Concept]
	if !ok || want == cp.Path {
		return nil
	}
	cp.Overridden = true
	if want != NoPath {
		return []string{fmt.Sprintf("override %s: %s is not possible: %s", cp.Concept, want, cp.Why)}
	}
	cp.Path, cp.ResourceType = NoPath, ""
	return nil
}

// chooseTeamPaths plans the treatment-plan link, the specialist and the
// care team, after the concepts that carry them are planned.
func (p *Plan) chooseTeamPaths(o Options) []string {
	var errs []string
	off := func(cp *ConceptPlan) { errs = append(errs, offOnly(cp, o)...) }

	link := ConceptPlan{Concept: TreatmentPlan, Path: NoPath}
	_, byPatient := p.types["CarePlan"].Searches("patient")
	_, patientByID := p.types["Patient"].Searches("identifier")
	patientByID = patientByID && p.Allows("Patient", "search-type")
	planNative, note := p.Concept(IPSPlan).Path == Native, p.Concept(ChartNote)
	noteLinks := note.Path == Native && note.ResourceType == "DocumentReference"
	switch {
	case !byPatient || !p.Allows("CarePlan", "search-type"):
		link.Why = fmt.Sprintf("CarePlan cannot be searched by patient here (declares %s): the IPS plan is not linked to the mental health treatment plan", p.interactionsOf("CarePlan"))
		link.Change = "ask the EHR vendor to enable CarePlan search by patient"
	case !patientByID:
		link.Why = "Patient cannot be searched by identifier here, so the patient's CarePlans cannot be searched: the IPS plan is not linked to the mental health treatment plan"
		link.Change = "ask the EHR vendor to enable Patient search by identifier"
	case !planNative && !noteLinks:
		link.Why = "neither the IPS CarePlan nor a chart note is written here, so nothing can carry the link to the mental health treatment plan"
	default:
		link.Path, link.ResourceType = ReadOnly, "CarePlan"
		where := "the IPS CarePlan is partOf it"
		if !planNative {
			where = "the chart note relates to it (context.related)"
		} else if noteLinks {
			where += ", and the chart note relates to it"
		}
		link.Why = "the patient's active treatment plan is found by a CarePlan search by patient (connections[].treatmentPlan says which); " + where
		link.Change = "set connections[].overrides.treatment-plan to none to leave the link out"
	}
	off(&link)
	if o.AddGoalsToTreatmentPlan && link.Path == ReadOnly {
		rp := p.types["CarePlan"]
		switch {
		case p.Concept(Goal).Path != Native:
			link.Why += "; the goals cannot be added to it: Goal is not written natively here"
		case rp == nil || rp.Concurrency != IfMatch || !p.Allows("CarePlan", "read") || !p.Allows("CarePlan", "update"):
			link.Why += fmt.Sprintf("; the goals cannot be added to it: CarePlan is not read and updated with If-Match here (declares %s)", p.interactionsOf("CarePlan"))
		default:
			p.addGoals = true
			link.Why += "; the IPS goals are added to it (CarePlan.goal; an update with If-Match, adding only)"
		}
	}
	p.Concepts = append(p.Concepts, link)

	spec := ConceptPlan{Concept: Specialist, Path: NoPath}
	carried := planNative || note.Path == Native
	switch {
	case !carried:
		spec.Why = "neither the IPS CarePlan nor a chart note is written here"
	case p.writable("Practitioner"):
		spec.Path, spec.ResourceType = Native, "Practitioner"
		spec.Why = "Practitioner declares create and update: the employment specialist is a Practitioner, named as author of the plan and the note"
		spec.Change = "set connections[].overrides.specialist to none to name the specialist by text only"
	default:
		spec.Why = fmt.Sprintf("Practitioner is not writable here (declares %s): the plan and the note name the employment specialist as text", p.interactionsOf("Practitioner"))
	}
	off(&spec)
	p.Concepts = append(p.Concepts, spec)

	team := ConceptPlan{Concept: CareTeam, Path: NoPath}
	switch {
	case spec.Path != Native:
		team.Why = "the specialist is not written as a Practitioner here, so there is no care team to write"
	case p.writable("CareTeam"):
		team.Path, team.ResourceType = Native, "CareTeam"
		team.Why = "CareTeam declares create and update: one per client, the specialist with the IPS program"
		team.Change = "set connections[].overrides.care-team to none to leave it out"
	default:
		team.Why = fmt.Sprintf("CareTeam is not writable here (declares %s)", p.interactionsOf("CareTeam"))
	}
	off(&team)
	p.Concepts = append(p.Concepts, team)
	return errs
}

func joinConcepts() string {
	s := make([]string, len(Concepts))
	for i, c := range Concepts {
		s[i] = string(c)
	}
	return strings.Join(s, ", ")
}

// warn notes what an administrator should know before enabling sync.
func (p *Plan) warn() {
	if !p.Writes() {
		p.Warnings = append(p.Warnings, "read-only connection: no IPS concept can be written to this EHR")
	}
	for _, cp := range p.Concepts {
		if cp.Path != Native || cp.ResourceType == "" {
			continue
		}
		rp := p.types[cp.ResourceType]
		if rp != nil && rp.Idempotency == LedgerOnly {
			p.Warnings = append(p.Warnings, fmt.Sprintf("%s cannot be searched by identifier or patient: a create whose answer is lost cannot be checked, and may be duplicated", cp.ResourceType))
		}
		if cp.Concept == Goal && rp != nil && rp.Idempotency == ConditionalUpdate && rp.Concurrency == IfMatch && !rp.ConditionalCreate {
			p.Warnings = append(p.Warnings, "Goal cannot be created conditionally: a goal's first write is a conditional update without If-Match, sent once, and after a lost answer not written again for four EHR request timeouts, while it may still land")
		}
	}
	slices.Sort(p.Warnings)
	p.Warnings = slices.Compact(p.Warnings)
}
