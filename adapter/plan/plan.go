package plan

// Concept is a kind of IPS information the adapter puts into the chart or
// reads from it.
type Concept string

// The IPS concepts a plan covers.
const (
	Goal             Concept = "employment-goal"
	IPSPlan          Concept = "ips-plan"
	JobOutcome       Concept = "job-outcome"
	EmploymentStatus Concept = "employment-status"
	ChartNote        Concept = "chart-note"
	Referral         Concept = "referral-intake"
	// ReferralLoop acknowledges each referral taken in to the referrer
	// (a Task: received, then accepted or rejected).
	ReferralLoop Concept = "referral-loop"
	// Episodes are the client's enrollment episodes, as EpisodeOfCare.
	Episodes Concept = "enrollment-episodes"
	// TreatmentPlan is the link to the patient's mental health treatment
	// plan: the clinic's own CarePlan, found by a search by patient and
	// referred to from the IPS plan (CarePlan.partOf) or the chart note
	// (DocumentReference.context.related). IPS integrates employment with
	// mental health treatment; the link shows it in the chart.
	TreatmentPlan Concept = "treatment-plan"
	// Specialist is the employment specialist as a Practitioner the plan
	// and the note name as their author; where none can be written they
	// carry the name as text.
	Specialist Concept = "specialist"
	// CareTeam is the client's IPS care team (the specialist and the
	// program) as a CareTeam.
	CareTeam Concept = "care-team"
)

// Concepts lists every concept in the order plans print them.
var Concepts = []Concept{Goal, IPSPlan, JobOutcome, EmploymentStatus, Episodes, ChartNote, Referral, TreatmentPlan, Specialist, CareTeam, ReferralLoop}

// Path is the route a concept's data takes.
type Path string

// Paths, best first.
const (
	Native   Path = "native"     // written as its own FHIR resource
	InNote   Path = "chart-note" // rendered into the client's chart note (a DocumentReference, or the plan's QuestionnaireResponse where the EHR takes no notes)
	ReadOnly Path = "read"       // read from the EHR (referral intake)
	NoPath   Path = "none"       // neither written nor read
)

// Idempotency is how a write is kept from creating duplicates.
type Idempotency string

// Idempotency strategies, best first.
const (
	ConditionalUpdate Idempotency = "conditional-update"       // PUT Type?identifier=… creates or updates
	ConditionalCreate Idempotency = "conditional-create"       // POST with If-None-Exist, then updates by id
	SearchByID        Idempotency = "ledger+search-identifier" // ledger; before a create, search by identifier
	SearchByPatient   Idempotency = "ledger+search-patient"    // ledger; before a create, search by patient and match the identifier locally
	LedgerOnly        Idempotency = "ledger-only"              // ledger alone: a create whose answer is lost cannot be checked
	// For Provenance, which FHIR R4 gives no identifier: its identity is
	// a meta.tag (see mappings.ProvenanceKey). ConditionalCreate then
	// means If-None-Exist: _tag=…
	SearchByTag    Idempotency = "ledger+search-tag"    // ledger; before a create, search by _tag
	SearchByTarget Idempotency = "ledger+search-target" // ledger; before a create, search by target and match the tag locally
)

// Concurrency is how the adapter avoids overwriting a clinician's edit.
type Concurrency string

// Concurrency strategies.
const (
	IfMatch          Concurrency = "if-match"           // update with If-Match: the known version
	ReadCompareWrite Concurrency = "read-compare-write" // read, compare with the ledger, then write
	// Overwrite: the EHR offers neither versioned updates nor a read or
	// search of the type, so nothing can be checked before a write: the
	// adapter's content replaces whatever the EHR holds.
	Overwrite Concurrency = "overwrite"
)

// Detection is how changes in the EHR are found.
type Detection string

// Change detection strategies, best first. Notifications (subscriptions) are
// only ever hints, so every plan ends in polling.
const (
	LastUpdated   Detection = "_lastUpdated"   // poll with _lastUpdated=gt{watermark - overlap}
	DateParameter Detection = "date-parameter" // poll a date parameter that moves with new records
	FullReconcile Detection = "full-reconcile" // search by patient for every client, periodically
	NotDetected   Detection = "none"           // cannot be searched at all
)

// Plan is the sync plan of one connection.
type Plan struct {
	FHIRVersion string `json:"fhirVersion"`
	// Software names the EHR, as its statement does.
	Software string `json:"software,omitempty"`
	// Bundles is "transaction", "batch" or "none": how writes may be grouped.
	Bundles string `json:"bundles"`
	// SiteCodedObservations: Observation writes are accepted only under
	// codes the site configured (see Options.SiteCodedObservations).
	SiteCodedObservations bool           `json:"siteCodedObservations,omitempty"`
	Concepts              []ConceptPlan  `json:"concepts"`
	Types                 []ResourcePlan `json:"resourceTypes"`
	Warnings              []string       `json:"warnings,omitempty"`
	types                 map[string]*ResourcePlan
	addGoals              bool
}

// ConceptPlan is one concept's path and why it was chosen.
type ConceptPlan struct {
	Concept      Concept `json:"concept"`
	Path         Path    `json:"path"`
	ResourceType string  `json:"resourceType,omitempty"`
	// Why says, for a person, what in the statement led here.
	Why string `json:"why"`
	// Change says what the administrator can do about it.
	Change     string `json:"change,omitempty"`
	Overridden bool   `json:"overridden,omitempty"`
}

// ResourcePlan is what the plan does with one FHIR resource type.
type ResourcePlan struct {
	Type         string      `json:"type"`
	Interactions []string    `json:"interactions"`
	Idempotency  Idempotency `json:"idempotency,omitempty"`
	// ConditionalCreate: the EHR creates with If-None-Exist (and can be
	// searched by identifier). Where the type is also updated
	// conditionally with If-Match, a goal's first write, which has no
	// version to carry, goes as such a create: held by a slow EHR and
	// applied late, it finds the goal and changes nothing, where a
	// conditional update would overwrite what was written since.
	ConditionalCreate bool        `json:"conditionalCreate,omitempty"`
	Concurrency       Concurrency `json:"concurrency,omitempty"`
	Detection         Detection   `json:"changeDetection"`
	// DateParam is the parameter polled when Detection is DateParameter.
	DateParam string `json:"dateParameter,omitempty"`
	// LastUpdatedParam is the parameter's name as the EHR spells it.
	LastUpdatedParam string `json:"lastUpdatedParameter,omitempty"`
	// SearchParams the EHR declares for the type, in its spelling.
	SearchParams []string `json:"searchParameters,omitempty"`
	// WrittenAlongside (Provenance only): a Provenance accompanies each
	// resource the adapter writes to this EHR, created once per written
	// content and never updated; Idempotency says how a retried one is
	// kept from making two. Provenance is no concept of its own: it goes
	// wherever a concept's resource goes.
	WrittenAlongside bool `json:"writtenAlongside,omitempty"`
	// Why (Provenance only) says, for a person, whether and how the
	// Provenance is written, and what in the statement led there.
	Why string `json:"why,omitempty"`
}

// Concept returns the plan of a concept.
func (p *Plan) Concept(c Concept) ConceptPlan {
	for _, cp := range p.Concepts {
		if cp.Concept == c {
			return cp
		}
	}
	return ConceptPlan{Concept: c, Path: NoPath}
}

// Type returns the plan for a resource type, or nil when the EHR does not
// offer the type at all.
func (p *Plan) Type(t string) *ResourcePlan { return p.types[t] }

// Allows reports whether the EHR declared interaction (read, vread, update,
// create, search-type, …) on resource type t. The engine asks before every
// request: it never sends an undeclared interaction.
func (p *Plan) Allows(t, interaction string) bool {
	rp := p.types[t]
	if rp == nil {
		return false
	}
	for _, i := range rp.Interactions {
		if i == interaction {
			return true
		}
	}
	return false
}

// WritesProvenance reports whether each resource written to this EHR is
// accompanied by a Provenance (see ResourcePlan.WrittenAlongside).
func (p *Plan) WritesProvenance() bool {
	rp := p.types["Provenance"]
	return rp != nil && rp.WrittenAlongside
}

// ProvenanceWhy says whether and how a Provenance accompanies each write,
// and why, for a person.
func (p *Plan) ProvenanceWhy() string {
	if rp := p.types["Provenance"]; rp != nil {
		return rp.Why
	}
	return "the statement does not list Provenance: no Provenance is written (each resource still carries the adapter's authorship tag)"
}

// Writes reports whether any concept is written (the connection is not read-only).
func (p *Plan) Writes() bool {
	for _, c := range p.Concepts {
		// Acknowledging referrals is not IPS content in the chart.
		if (c.Path == Native || c.Path == InNote) && c.Concept != ReferralLoop {
			return true
		}
	}
	return false
}

// Searches reports whether the EHR declares search parameter name for type t,
// ignoring case (Epic writes _lastupdated).
func (rp *ResourcePlan) Searches(name string) (spelled string, ok bool) {
	if rp == nil {
		return "", false
	}
	for _, s := range rp.SearchParams {
		if equalFold(s, name) {
			return s, true
		}
	}
	return "", false
}

func equalFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range len(a) {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}
