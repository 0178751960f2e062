package outcomes

import (
	"strings"

	"github.com/ipsfhir/ipsfhir/mappings"
)

// Measure ids: the published Measures
// (conformance/artifacts/measures/{id}.json), in the order Compute reports
// them.
const (
	MeasureCompetitiveEmployment    = "ips-competitive-employment"
	MeasureCompetitiveEmployment20h = "ips-competitive-employment-20h"
	MeasureJobStarts                = "ips-job-starts"
	MeasureEarnings                 = "ips-earnings"
	MeasureEmployerContact30d       = "ips-employer-contact-30d"
	MeasureDaysToEmployerContact    = "ips-days-to-employer-contact"
	MeasureDaysToCompetitiveJob     = "ips-days-to-competitive-job"
	MeasureJobTenure                = "ips-job-tenure"
	MeasureJobRetention90d          = "ips-job-retention-90d"
	MeasureBenefitsPlanning         = "ips-benefits-planning"
	MeasureCaseloadSize             = "ips-caseload-size"
)

// Group codes, from the ips-outcome CodeSystem.
const (
	GroupCompetitiveEmployment    = "competitive-employment"
	GroupCompetitiveEmployment20h = "competitive-employment-20h"
	GroupJobStarts                = "job-starts"
	GroupClientsFirstJob          = "clients-first-job"
	GroupMedianHourlyWage         = "median-hourly-wage"
	GroupTotalEarnings            = "total-earnings"
	GroupEmployerContact30d       = "employer-contact-30d"
	GroupMedianDaysToContact      = "median-days-to-employer-contact"
	GroupMedianDaysToJob          = "median-days-to-competitive-job"
	GroupMedianJobTenure          = "median-job-tenure"
	GroupJobRetention90d          = "job-retention-90d"
	GroupBenefitsPlanning         = "benefits-planning-before-job"
	GroupCaseloadSize             = "caseload-size"
)

// Stratifier codes, from the ips-outcome CodeSystem.
const (
	StratifierProgram    = "program"
	StratifierSpecialist = "specialist"
)

// Population codes (http://terminology.hl7.org/CodeSystem/measure-population).
const (
	PopulationInitial     = "initial-population"
	PopulationDenominator = "denominator"
	PopulationNumerator   = "numerator"
	PopulationMeasure     = "measure-population"
)

// Code systems and other URIs reports use.
const (
	SystemOutcome             = mappings.CanonicalBase + "/CodeSystem/ips-outcome"
	SystemMeasurePopulation   = "http://terminology.hl7.org/CodeSystem/measure-population"
	SystemImprovementNotation = "http://terminology.hl7.org/CodeSystem/measure-improvement-notation"
	SystemProgram             = "urn:ipsfhir:program"
	ExtDataAbsentReason       = "http://hl7.org/fhir/StructureDefinition/data-absent-reason"
	ExtSuppressionThreshold   = mappings.CanonicalBase + "/StructureDefinition/ips-suppression-threshold"
	ExtLowerBound             = mappings.CanonicalBase + "/StructureDefinition/ips-lower-bound"
	// ExtExcluded states, on a MeasureReport, how many clients were left
	// out of its counts for one reason: sub-extensions reason (valueCode,
	// one of ExcludedReasons) and count (valueUnsignedInt, or withheld: no
	// value and data-absent-reason masked).
	ExtExcluded          = mappings.CanonicalBase + "/StructureDefinition/ips-excluded"
	SystemMeasureScoring = "http://terminology.hl7.org/CodeSystem/measure-scoring"
	systemCurrency       = "urn:iso:std:iso:4217"
	systemUCUM           = "http://unitsofmeasure.org"
)

// The quality-measure IGs reports and Measures follow, both R4 and US
// realm: DEQM STU5 (hl7.fhir.us.davinci-deqm 5.0.0) for the
// MeasureReports, CQFM STU5 (hl7.fhir.us.cqfmeasures 5.0.0, the version
// DEQM STU5 depends on) for the extensions of the published Measures. The
// StructureDefinitions the tests check against are copied, with their
// source, in testdata/outcomes/.
const (
	// ProfileDEQMSummary is the DEQM Summary MeasureReport profile. A
	// report claims it in meta.profile when it has what the profile
	// requires (a date and a reporter).
	ProfileDEQMSummary = "http://hl7.org/fhir/us/davinci-deqm/StructureDefinition/summary-measurereport-deqm"
	// ExtDEQMMeasureScoring carries the measure's scoring on a report
	// (the profile requires it, on the report or on every group).
	ExtDEQMMeasureScoring = "http://hl7.org/fhir/us/davinci-deqm/StructureDefinition/extension-measureScoring"

	// The CQFM extensions of the published Measures (the code only checks
	// that the artifacts use them as measureDefs says).
	extCQFMPopulationBasis   = "http://hl7.org/fhir/us/cqfmeasures/StructureDefinition/cqfm-populationBasis"
	extCQFMAggregateMethod   = "http://hl7.org/fhir/us/cqfmeasures/StructureDefinition/cqfm-aggregateMethod"
	extCQFMCriteriaReference = "http://hl7.org/fhir/us/cqfmeasures/StructureDefinition/cqfm-criteriaReference"
	extCQFMScoringUnit       = "http://hl7.org/fhir/us/cqfmeasures/StructureDefinition/cqfm-scoringUnit"
)

// Population bases (cqfm-populationBasis, a FHIRAllTypes code): what a
// group's populations are made of.
const (
	// basisClient: the group counts clients (patients), so each population
	// criterion is true or false per client.
	basisClient = "boolean"
	// basisJob: the group counts jobs. ipsfhir writes a job as an ODH
	// PastOrPresentJob Observation (profile ips-job-observation), so the
	// criteria return Observations.
	basisJob = "Observation"
)

// MeasureVersion is the version of the published Measures reports refer to.
const MeasureVersion = "0.1.0"

// MeasureURL is the canonical URL of a Measure id.
func MeasureURL(id string) string { return mappings.CanonicalBase + "/Measure/" + id }

// SpecialistSystem is the code system of a program's specialist strata.
func SpecialistSystem(program string) string { return "urn:ipsfhir:" + program + ":specialist" }

// cell names a count (or amount) of one stratum; see cells.go.
type cell int

// The counts a report shows. Their sets are nested: W ⊆ C ⊆ E ⊆ D,
// N2 ⊆ N1 ⊆ D, F ⊆ D, B ⊆ G ⊆ D, R90 ⊆ R ⊆ D; F's first jobs are
// among the J job starts, and so are G's first competitive jobs (G ≤ J);
// G ⊆ N1 and R90 ⊆ N1 (a job started, or still held on its 90th day, in the
// period was held in the period). docs/OUTCOMES.md defines each.
const (
	cellD    cell = iota // active caseload
	cellN1               // held a competitive job in the quarter
	cellN2               // held a competitive job of 20+ hours a week
	cellE                // enrolled in the quarter
	cellC                // enrolled in the quarter, first employer contact recorded
	cellW                // enrolled in the quarter, first employer contact within 30 days
	cellF                // first job since enrollment started in the quarter
	cellJ                // jobs started in the quarter (a count of jobs)
	cellG                // first competitive job since enrollment started in the quarter
	cellB                // of G: benefits planning recorded before that job started
	cellR                // first competitive job since enrollment reached its 90th day in the quarter
	cellR90              // of R: still in that job on its 90th day
	cellEarn             // earnings of the N1 clients (an amount)
	numShown
	// cellOnCaseload is no cell of its own but D − E: the clients on the
	// program's caseload on the quarter's first day (served, and enrolled
	// before it). It is shown when both D and E are.
	cellOnCaseload cell = -2
)

// score says how a group's measureScore is computed.
type score int

const (
	scoreNone score = iota // cohort: counts only
	scoreRate              // numerator ÷ denominator
	scoreMedianWage
	scoreTotalEarnings
	scoreMedianDays  // of the group's num clients: days to first employer contact (C) or to first competitive job (G)
	scoreMedianWeeks // of the N1 clients: weeks in their longest competitive job
	scoreMeanCaseload
)

type populationDef struct {
	code  string
	cell  cell
	label string // column heading in the text table; "" leaves it out
}

type groupDef struct {
	code        string
	title       string
	basis       string // basisClient or basisJob
	populations []populationDef
	score       score
	scoreLabel  string
	// rate: the numerator and denominator cells; medians and sums: the
	// population the score describes.
	num, den cell
}

type measureDef struct {
	id          string
	title       string
	scoring     string
	improvement string
	groups      []groupDef
}

func (m *measureDef) group(code string) *groupDef {
	for i := range m.groups {
		if m.groups[i].code == code {
			return &m.groups[i]
		}
	}
	return nil
}

var measureDefs = []measureDef{
	{id: MeasureCompetitiveEmployment, title: "Competitive employment rate", scoring: "proportion", improvement: "increase",
		groups: []groupDef{{code: GroupCompetitiveEmployment, title: "clients who worked competitively", basis: basisClient, score: scoreRate, scoreLabel: "rate", num: cellN1, den: cellD,
			populations: []populationDef{{PopulationInitial, cellD, ""}, {PopulationDenominator, cellD, "served"}, {PopulationNumerator, cellN1, "working"}}}}},
	{id: MeasureCompetitiveEmployment20h, title: "Competitive employment of 20+ hours a week", scoring: "proportion", improvement: "increase",
		groups: []groupDef{{code: GroupCompetitiveEmployment20h, title: "clients who worked competitively 20+ hours a week", basis: basisClient, score: scoreRate, scoreLabel: "rate", num: cellN2, den: cellD,
			populations: []populationDef{{PopulationInitial, cellD, ""}, {PopulationDenominator, cellD, "served"}, {PopulationNumerator, cellN2, "working 20h+"}}}}},
	{id: MeasureJobStarts, title: "Job starts", scoring: "cohort", improvement: "increase",
		groups: []groupDef{
			{code: GroupJobStarts, title: "jobs started", basis: basisJob, populations: []populationDef{{PopulationInitial, cellJ, "jobs"}}},
			{code: GroupClientsFirstJob, title: "clients whose first job since enrollment started", basis: basisClient, populations: []populationDef{{PopulationInitial, cellF, "clients"}}},
		}},
	{id: MeasureEarnings, title: "Earnings of competitively employed clients", scoring: "continuous-variable", improvement: "increase",
		groups: []groupDef{
			{code: GroupMedianHourlyWage, title: "median hourly wage", basis: basisClient, score: scoreMedianWage, scoreLabel: "median wage", num: cellN1,
				populations: []populationDef{{PopulationInitial, cellD, "served"}, {PopulationMeasure, cellN1, "working"}}},
			{code: GroupTotalEarnings, title: "total earnings", basis: basisClient, score: scoreTotalEarnings, scoreLabel: "earnings", num: cellN1,
				populations: []populationDef{{PopulationInitial, cellD, ""}, {PopulationMeasure, cellN1, "working"}}},
		}},
	{id: MeasureEmployerContact30d, title: "First employer contact within 30 days of enrollment", scoring: "proportion", improvement: "increase",
		groups: []groupDef{{code: GroupEmployerContact30d, title: "clients enrolled in the quarter", basis: basisClient, score: scoreRate, scoreLabel: "rate", num: cellW, den: cellE,
			populations: []populationDef{{PopulationInitial, cellE, ""}, {PopulationDenominator, cellE, "enrolled"}, {PopulationNumerator, cellW, "within 30d"}}}}},
	{id: MeasureDaysToEmployerContact, title: "Days from enrollment to first employer contact", scoring: "continuous-variable", improvement: "decrease",
		groups: []groupDef{{code: GroupMedianDaysToContact, title: "clients enrolled in the quarter", basis: basisClient, score: scoreMedianDays, scoreLabel: "median days", num: cellC,
			populations: []populationDef{{PopulationInitial, cellE, "enrolled"}, {PopulationMeasure, cellC, "contacted"}}}}},
	{id: MeasureDaysToCompetitiveJob, title: "Days from enrollment to first competitive job", scoring: "continuous-variable", improvement: "decrease",
		groups: []groupDef{{code: GroupMedianDaysToJob, title: "clients whose first competitive job since enrollment started", basis: basisClient, score: scoreMedianDays, scoreLabel: "median days", num: cellG,
			populations: []populationDef{{PopulationInitial, cellD, "served"}, {PopulationMeasure, cellG, "first competitive job"}}}}},
	{id: MeasureJobTenure, title: "Job tenure in competitive jobs", scoring: "continuous-variable", improvement: "increase",
		groups: []groupDef{{code: GroupMedianJobTenure, title: "weeks in the longest competitive job held", basis: basisClient, score: scoreMedianWeeks, scoreLabel: "median weeks", num: cellN1,
			populations: []populationDef{{PopulationInitial, cellD, "served"}, {PopulationMeasure, cellN1, "working"}}}}},
	{id: MeasureJobRetention90d, title: "Competitive jobs kept 90 days", scoring: "proportion", improvement: "increase",
		groups: []groupDef{{code: GroupJobRetention90d, title: "clients whose first competitive job reached 90 days", basis: basisClient, score: scoreRate, scoreLabel: "rate", num: cellR90, den: cellR,
			populations: []populationDef{{PopulationInitial, cellR, ""}, {PopulationDenominator, cellR, "reached 90 days"}, {PopulationNumerator, cellR90, "kept"}}}}},
	{id: MeasureBenefitsPlanning, title: "Benefits planning before the first competitive job", scoring: "proportion", improvement: "increase",
		groups: []groupDef{{code: GroupBenefitsPlanning, title: "clients whose first competitive job since enrollment started", basis: basisClient, score: scoreRate, scoreLabel: "rate", num: cellB, den: cellG,
			populations: []populationDef{{PopulationInitial, cellG, ""}, {PopulationDenominator, cellG, "first competitive job"}, {PopulationNumerator, cellB, "benefits planning first"}}}}},
	{id: MeasureCaseloadSize, title: "Caseload size per employment specialist", scoring: "continuous-variable", improvement: "decrease",
		groups: []groupDef{{code: GroupCaseloadSize, title: "clients on the caseload on the first day", basis: basisClient, score: scoreMeanCaseload, scoreLabel: "per specialist", num: cellOnCaseload,
			populations: []populationDef{{PopulationInitial, cellOnCaseload, ""}, {PopulationMeasure, cellOnCaseload, "on caseload"}}}}},
}

func measureByID(id string) *measureDef {
	for i := range measureDefs {
		if measureDefs[i].id == id {
			return &measureDefs[i]
		}
	}
	return nil
}

// Measures lists the ids of the measures Compute reports, in its order.
func Measures() []string {
	out := make([]string, len(measureDefs))
	for i, m := range measureDefs {
		out[i] = m.id
	}
	return out
}

// aggregateMethod is how a group's score aggregates its observations (a
// code of http://terminology.hl7.org/CodeSystem/measure-aggregate-method,
// the cqfm-aggregateMethod of the Measure's measure-observation
// population), or "" when the group has no observations.
func (g *groupDef) aggregateMethod() string {
	switch g.score {
	case scoreMedianWage, scoreMedianDays, scoreMedianWeeks:
		return "median"
	case scoreTotalEarnings:
		return "sum"
	case scoreMeanCaseload:
		return "average"
	}
	return ""
}

// populationID is the id of a group's population, the same in the Measure
// and in every report (DEQM links them by it): "{group}-{population}".
func populationID(group, population string) string { return group + "-" + population }

// scoreUnit is how a score of the group is written as a Quantity, from the
// Score's Unit: a rate in UCUM 1 (a number from 0 to 1), days in UCUM d,
// wages and earnings in their ISO 4217 currency (an hourly wage has unit
// "USD/h" and code "USD": the currency; "per hour" is the group's
// definition). A score with no Unit has none.
func (g *groupDef) scoreUnit(unit string) (display, system, code string) {
	switch g.score {
	case scoreRate:
		return "1", systemUCUM, "1"
	case scoreMedianDays:
		return "d", systemUCUM, "d"
	case scoreMedianWeeks:
		return "wk", systemUCUM, "wk"
	case scoreMeanCaseload:
		return "{clients}", systemUCUM, "{clients}"
	case scoreMedianWage:
		if unit != "" {
			return unit, systemCurrency, strings.TrimSuffix(unit, "/h")
		}
	case scoreTotalEarnings:
		if unit != "" {
			return unit, systemCurrency, unit
		}
	}
	return "", "", ""
}
