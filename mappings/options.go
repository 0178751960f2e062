package mappings

import (
	"net/url"
	"time"

	dtpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/datatypes_go_proto"
	"github.com/google/uuid"

	"github.com/ipsfhir/ipsfhir/ips"
)

// Options configure a mapping. The zero value is usable: program "local",
// default security labels, no PRAPARE answer, no dated chart note.
type Options struct {
	// Program scopes business identifiers (urn:ipsfhir:{Program}:…). Empty
	// means the caseload's program, or ips.DefaultProgramID.
	Program string
	// Security labels for meta.security of every resource. nil means
	// DefaultSecurity; an empty, non-nil slice means none.
	Security []ips.Coding
	// PRAPARE adds the PRAPARE "Employment status - current" answer next to
	// each ODH employment status.
	PRAPARE bool
	// PatientReference returns the EHR's literal reference for a patient
	// identifier ("Patient/123"), or "" when it is not known yet. nil: never known.
	PatientReference func(ips.Identifier) string
	// Reference returns the EHR's literal reference ("Goal/123") for a record
	// already written there, or "" to refer by Bundle fullUrl. Single
	// requests need literal references; transactions rewrite fullUrls.
	Reference func(Key) string
	// SiteCodes add a site's local code (an Epic flowsheet row, say) to the
	// standard LOINC code of the observations of a kind (KindJob,
	// KindEmploymentStatus): some EHRs take Observation writes only under
	// codes the site configured. The LOINC coding stays first.
	SiteCodes map[Kind]ips.Coding
	// Now dates the chart note and is the issued time of the Observations:
	// when this version is made available. The chart note marks the next
	// steps whose date has passed by Now as overdue. Mappings have no clock
	// of their own, so the same input always gives the same output; zero
	// leaves the dates out and marks nothing overdue.
	Now time.Time
	// ProgramName is the IPS program's name, shown in the chart note and the
	// plan narrative so that a clinician knows who wrote them. Empty: the
	// caseload's program name (CaseloadBundle), or none.
	ProgramName string
	// NoteReleased reports whether the client's chart note (by its key) is
	// already in the chart. A note written again then amends a released
	// document: docStatus amended, never a silent rewrite of a final note.
	// nil: every note is a first version (docStatus final).
	NoteReleased func(Key) bool
	// TreatmentPlan returns the EHR's literal reference ("CarePlan/123") to
	// the client's mental health treatment plan, the clinic's own CarePlan:
	// the IPS CarePlan is partOf it and the chart note relates to it
	// (context.related), so the chart shows employment as part of
	// treatment. "" (or nil): none known, no link.
	TreatmentPlan func(*ips.Client) string
	// SpecialistRecord says the employment specialist is written as a
	// Practitioner (Practitioner, SpecialistKey): the plan and the note
	// name it as author by identifier. false names the specialist by
	// display alone.
	SpecialistRecord bool
	// CareTeamRecord says the client's IPS care team is written as a
	// CareTeam (CareTeam, CareTeamKey), which the plan refers to.
	CareTeamRecord bool
}

// DefaultSecurity labels IPS records as restricted psychiatric information:
// enrollment in IPS reveals that a person receives mental health services, and
// state behavioral-health laws are typically more protective than HIPAA
// (DOMAIN.md §5, DS4P).
var DefaultSecurity = []ips.Coding{
	{System: SystemConfidentiality, Code: "R", Display: "restricted"},
	{System: SystemActCode, Code: "PSY", Display: "psychiatry information sensitivity"},
}

func (o Options) security() []ips.Coding {
	if o.Security == nil {
		return DefaultSecurity
	}
	return o.Security
}

func (o Options) program() string {
	if o.Program == "" {
		return ips.DefaultProgramID
	}
	return o.Program
}

// Kind names a kind of IPS record that has its own business identifier.
type Kind string

// Record kinds.
const (
	KindGoal             Kind = "goal"
	KindPlan             Kind = "plan"
	KindSupport          Kind = "support"
	KindJob              Kind = "job"
	KindEmploymentStatus Kind = "employment-status"
	KindPRAPARE          Kind = "prapare-employment"
	KindPlanNote         Kind = "plan-note"
	KindPlanResponse     Kind = "plan-response"
	KindReferralTask     Kind = "referral-task"
	KindEpisode          Kind = "episode"
	// KindSpecialist is an employment specialist: one record per program
	// and specialist as recorded, shared by their clients (the key has a
	// Record and no Client).
	KindSpecialist Kind = "specialist"
	KindCareTeam   Kind = "care-team"
	// KindProgram identifies the IPS program itself (the Organization the
	// care team names); ipsfhir writes no record of it.
	KindProgram Kind = "program"
	// KindProvenance is the identity of the Provenance of one written
	// content of a record (ProvenanceKey); R4 Provenance has no
	// identifier element, so it is carried as a meta.tag.
	KindProvenance Kind = "provenance"
	// KindDevice names the adapter itself, the Device that transmits what
	// it writes (see Provenance).
	KindDevice Kind = "device"
)

// IdentifierSystem is the business-identifier namespace of a kind of record
// in a program: urn:ipsfhir:{program}:{kind}.
func IdentifierSystem(program string, k Kind) string {
	return "urn:ipsfhir:" + program + ":" + string(k)
}

// Key identifies one IPS record across systems: the program, the kind, the
// client and (except for per-client records) the record within the client.
type Key struct {
	Program string
	Kind    Kind
	Client  string
	Record  string
}

// System is the key's identifier.system.
func (k Key) System() string { return IdentifierSystem(k.Program, k.Kind) }

// Value is the key's identifier.value: {client}, {client}/{record}, or
// {record} for a record no client owns (a specialist).
func (k Key) Value() string {
	switch {
	case k.Record == "":
		return k.Client
	case k.Client == "":
		return k.Record
	}
	return k.Client + "/" + k.Record
}

// fullURLNamespace seeds the UUIDv5 fullUrls; changing it would change every
// fullUrl ipsfhir has ever emitted.
var fullURLNamespace = uuid.MustParse("7d1d5c0e-2f4a-5b8e-9c3a-1e6f0b2d4a97")

// FullURL is the stable urn:uuid a record has inside Bundles.
func (k Key) FullURL() string {
	return "urn:uuid:" + uuid.NewSHA1(fullURLNamespace, []byte(k.System()+"|"+k.Value())).String()
}

// ConditionalURL is the conditional-update URL that addresses the record on a
// FHIR server by its business identifier: Goal?identifier=system|value.
func (k Key) ConditionalURL(resourceType string) string {
	return resourceType + "?identifier=" + url.QueryEscape(k.System()+"|"+k.Value())
}

// observationCode is the code of an observation of kind k: the LOINC code,
// then the site's code when one is mapped.
func (o Options) observationCode(k Kind, loincCode string) *dtpb.CodeableConcept {
	cc := loinc(loincCode)
	if sc, ok := o.SiteCodes[k]; ok && sc.Code != "" {
		cc.Coding = append(cc.Coding, fcoding(sc.System, sc.Code, sc.Display))
	}
	return cc
}

// ref is how a mapped resource refers to another IPS record.
func (o Options) ref(k Key) string {
	if o.Reference != nil {
		if lit := o.Reference(k); lit != "" {
			return lit
		}
	}
	return k.FullURL()
}

// treatmentPlan is the literal reference to the client's treatment plan,
// or nil.
func (o Options) treatmentPlan(c *ips.Client) *dtpb.Reference {
	if o.TreatmentPlan == nil {
		return nil
	}
	if ref := o.TreatmentPlan(c); ref != "" {
		return literalRef(ref)
	}
	return nil
}

func (o Options) key(k Kind, client, record string) Key {
	return Key{Program: o.program(), Kind: k, Client: client, Record: record}
}
