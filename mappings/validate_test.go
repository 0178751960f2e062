package mappings

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/fhir/go/fhirversion"
	"github.com/google/fhir/go/jsonformat"

	"github.com/ipsfhir/ipsfhir/conformance/artifacts"
	"github.com/ipsfhir/ipsfhir/ips"
)

// Values planted in the fixtures (testdata/fhir): a patient identifier and
// free text. No issue may ever quote them.
var planted = []string{"MRN-PLANTED-7731", "Zanzibar-Quokka"}

const fixtures = "../testdata/fhir"

func newTestValidator(t testing.TB) *Validator {
	t.Helper()
	v, err := NewValidator()
	if err != nil {
		t.Fatalf("NewValidator: %v", err)
	}
	return v
}

func readFixture(t testing.TB, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(fixtures, name))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func fixtureNames(t testing.TB, dir string) []string {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(fixtures, dir, "*.json"))
	if err != nil || len(names) == 0 {
		t.Fatalf("no fixtures in %s: %v", dir, err)
	}
	for i, n := range names {
		names[i], _ = filepath.Rel(fixtures, n)
	}
	return names
}

func TestValidFixturesHaveNoIssues(t *testing.T) {
	v := newTestValidator(t)
	for _, name := range fixtureNames(t, "valid") {
		t.Run(name, func(t *testing.T) {
			issues, err := v.ValidateJSON(readFixture(t, name))
			if err != nil {
				t.Fatal(err)
			}
			if issues != nil {
				t.Errorf("issues for a valid resource:\n%s", formatIssues(issues))
			}
		})
	}
}

// want is an expected issue: its code and path, and a piece of its message
// where one path carries two issues.
type want struct{ code, path, msg string }

// expectedIssues lists, for each file in testdata/fhir/invalid, every issue
// it must produce: no more, no fewer.
func expectedIssues() map[string][]want {
	m := map[string][]want{
		"goal-missing-required.json": {
			{"required", "Goal.meta.tag", "slice ipsfhirAuthored: at least 1"},
			{"required", "Goal.identifier", ""},
			{"required", "Goal.category", "at least 1 required"},
			{"required", "Goal.category", "slice SDOHCC: at least 1"},
			{"required", "Goal.description.text", ""},
			{"required", "Goal.subject.identifier", ""},
			{"required", "Goal.start[x]", ""},
			{"required", "Goal.expressedBy", ""},
		},
		"goal-identifier-parts.json": {
			{"required", "Goal.identifier[0].system", ""},
			{"required", "Goal.subject.identifier.system", ""},
			{"required", "Goal.expressedBy.identifier", ""},
		},
		"goal-subject-identifier-system.json": {
			{"required", "Goal.identifier[0].value", ""},
			{"required", "Goal.subject.identifier.value", ""},
		},
		"goal-wrong-values.json": {
			{"value", "Goal.achievementStatus", "goal-achievement"},
			{"required", "Goal.category", "slice SDOHCC: at least 1"},
			{"value", "Goal.target[0].measure", "ips-observation#work-hours-per-week"},
			{"value", "Goal.target[0].detailQuantity", "h/wk"},
		},
		"goal-wrong-types.json": {
			{"structure", "Goal.startCodeableConcept", "allowed: date"},
			{"structure", "Goal.target[0].detailString", "allowed: Quantity"},
			{"structure", "Goal.target[0].dueDuration", "allowed: date"},
		},
		"goal-too-many.json": {
			{"structure", "Goal.meta.tag", "slice ipsfhirAuthored: at most 1"},
			{"structure", "Goal.category", "slice SDOHCC: at most 1"},
		},
		"goal-unknown-element.json": {
			{"structure", "Goal.target[0].favouriteColour", "unknown element"},
		},
		"goal-base-r4.json": {
			{"code-invalid", "Goal.lifecycleStatus", "base R4"},
		},
		"goal-base-r4-required.json": {
			{"required", "Goal.lifecycleStatus", "base R4"},
		},
		"goal-no-subject.json": {
			{"required", "Goal.subject", "base R4"},
			{"required", "Goal.subject", "profile ips-goal"},
			{"required", "Goal.meta.tag", "at least 1 required"},
			{"required", "Goal.meta.tag", "slice ipsfhirAuthored"},
		},
		"goal-profile-mismatch.json": {
			{"processing", "Goal.meta.profile[0]", "is for Observation resources"},
			{"not-supported", "Goal.meta.profile[1]", "not known to ipsfhir"},
		},

		"careplan-missing-required.json": {
			{"required", "CarePlan.text", ""},
			{"required", "CarePlan.identifier", ""},
			{"required", "CarePlan.category", "at least 2 required"},
			{"required", "CarePlan.category", "slice AssessPlan"},
			{"required", "CarePlan.title", ""},
			{"required", "CarePlan.subject.identifier", ""},
			{"invariant", "CarePlan", "constraint ips-careplan-1 of profile ips-careplan"},
			{"required", "CarePlan.activity[0].extension", "slice supportIdentifier"},
			{"required", "CarePlan.activity[1].detail", ""},
		},
		"careplan-wrong-values.json": {
			{"value", "CarePlan.intent", `"plan"`},
			{"required", "CarePlan.category", "at least 2 required"},
			{"required", "CarePlan.category", "slice employmentStatus"},
			{"invariant", "CarePlan", "constraint ips-careplan-2 of profile ips-careplan"},
			{"code-invalid", "CarePlan.activity[0].detail.code", "ValueSet/ips-support-type"},
			{"code-invalid", "CarePlan.activity[1].detail.code", "ValueSet/ips-support-type"},
		},
		"careplan-too-many.json": {
			{"structure", "CarePlan.category", "slice AssessPlan: at most 1"},
			{"structure", "CarePlan.category", "slice employmentStatus: at most 1"},
			{"required", "CarePlan.activity[1].detail.scheduled[x]", ""},
		},
		"careplan-activity-detail.json": {
			{"required", "CarePlan.activity[0].detail.code", ""},
			{"structure", "CarePlan.activity[0].detail.scheduledString", "allowed: Period"},
			{"structure", "CarePlan.activity[1].reference", "not allowed"},
			{"required", "CarePlan.activity[1].detail.scheduledPeriod.start", ""},
		},
		"careplan-support-extension.json": {
			{"structure", "CarePlan.activity[0].extension", "slice supportIdentifier: at most 1"},
			{"structure", "CarePlan.activity[1].extension[0].valueString", "profile ips-support-identifier"},
		},
		"careplan-support-extension-content.json": {
			{"required", "CarePlan.activity[0].extension[0].valueIdentifier.system", "ips-support-identifier"},
			{"structure", "CarePlan.activity[1].extension[0].extension", "not allowed"},
			{"required", "CarePlan.activity[1].extension[0].value[x]", ""},
			{"required", "CarePlan.activity[2].extension[0].valueIdentifier.value", ""},
		},

		"careplan-employer-contact.json": {
			{"required", "CarePlan.activity[0].detail.extension[0].extension", "at least 1 required by profile ips-employer-contact"},
			{"required", "CarePlan.activity[0].detail.extension[0].extension", "slice mode: at least 1"},
			{"required", "CarePlan.activity[1].detail.extension[0].extension", "slice mode: at least 1"},
			{"structure", "CarePlan.activity[2].detail.extension[0].extension", "slice mode: at most 1"},
			{"required", "CarePlan.activity[3].detail.extension[0].extension[0].value[x]", "ips-employer-contact"},
			{"structure", "CarePlan.activity[4].detail.extension[0].extension[0].valueString", "allowed: Coding"},
			{"code-invalid", "CarePlan.activity[5].detail.extension[0].extension[0].valueCoding", "ValueSet/ips-contact-mode"},
			{"structure", "CarePlan.activity[6].detail.extension[0].extension", "slice onBehalfOf: at most 1"},
			{"required", "CarePlan.activity[7].detail.extension[0].extension[1].value[x]", "ips-employer-contact"},
			{"structure", "CarePlan.activity[8].detail.extension[0].extension[1].valueString", "allowed: code"},
			{"structure", "CarePlan.activity[9].detail.extension[0].value[x]", "not allowed by profile ips-employer-contact"},
		},

		// Published extensions are checked where no profile slices them in.
		"measurereport-extensions.json": {
			{"structure", "MeasureReport.extension[0].valueString", "ips-suppression-threshold (allowed: positiveInt)"},
			{"structure", "MeasureReport.extension[1].extension", "not allowed by profile ips-suppression-threshold"},
			{"required", "MeasureReport.extension[1].value[x]", "ips-suppression-threshold"},
			{"structure", "MeasureReport.group[0].population[0]._count.extension[0].valueString", "ips-lower-bound (allowed: integer, Quantity)"},
			{"structure", "MeasureReport.group[0].population[0]._count.extension[1].extension", "not allowed by profile ips-lower-bound"},
			{"required", "MeasureReport.group[0].population[0]._count.extension[1].value[x]", "ips-lower-bound"},
		},
		"measurereport-excluded.json": {
			{"required", "MeasureReport.extension[0].extension", "slice reason: at least 1 required by profile ips-excluded"},
			{"required", "MeasureReport.extension[0].extension", "slice count: at least 1 required by profile ips-excluded"},
			{"structure", "MeasureReport.extension[0].value[x]", "not allowed by profile ips-excluded"},
			{"structure", "MeasureReport.extension[1].extension", "slice reason: at most 1 allowed by profile ips-excluded"},
			{"structure", "MeasureReport.extension[1].extension[0].valueString", "ips-excluded (allowed: code)"},
			{"required", "MeasureReport.extension[1].extension[1].value[x]", "ips-excluded"},
			{"structure", "MeasureReport.extension[1].extension", "slice count: at most 1 allowed by profile ips-excluded"},
			{"structure", "MeasureReport.extension[1].extension[2].valueString", "ips-excluded (allowed: unsignedInt)"},
		},

		"job-missing-required.json": {
			{"required", "Observation.identifier", ""},
			{"required", "Observation.extension", "slice employer"},
			{"required", "Observation.category", ""},
			{"required", "Observation.subject.identifier", ""},
			{"required", "Observation.effective[x]", ""},
			{"required", "Observation.effectivePeriod", "profile odh-PastOrPresentJob (inherited by ips-job-observation)"},
			{"required", "Observation.value[x]", ""},
			{"required", "Observation.component", "slice hoursPerWeek"},
			{"required", "Observation.component", "slice hourlyWage"},
			{"required", "Observation.component", "slice competitive"},
		},
		"job-wrong-values.json": {
			{"value", "Observation.status", `"final"`},
			{"value", "Observation.category", "observation-category#social-history"},
			{"value", "Observation.code", "http://loinc.org#11341-5"},
			{"required", "Observation.category[0].coding", "slice Fixed_social-history: at least 1 required by profile odh-PastOrPresentJob"},
			{"required", "Observation.code.coding", "slice Fixed_11341-5: at least 1 required by profile odh-PastOrPresentJob"},
			{"required", "Observation.effectivePeriod.start", ""},
			{"required", "Observation.valueCodeableConcept.text", ""},
		},
		"job-too-many.json": {
			{"structure", "Observation.extension", "slice employer"},
			{"structure", "Observation.extension", "slice odhIsCurrentJobExtension"},
			{"structure", "Observation.category", "at most 1"},
			{"structure", "Observation.component", "slice hoursPerWeek"},
			{"structure", "Observation.component", "slice hourlyWage"},
			{"structure", "Observation.component", "slice competitive"},
			{"structure", "Observation.component", "slice disclosed"},
			{"structure", "Observation.component", "slice endReason"},
			{"structure", "Observation.component", "slice odh-PastOrPresentIndustry"},
			{"structure", "Observation.component", "slice odh-WeeklyWorkDays"},
			{"structure", "Observation.component", "slice odh-DailyWorkHours"},
		},
		"job-component-values.json": {
			{"structure", "Observation.component[0].valueString", "allowed: CodeableConcept"},
			{"value", "Observation.component[1].valueQuantity", "http://unitsofmeasure.org#d"},
			{"value", "Observation.component[1].valueQuantity.code", `profile odh-PastOrPresentJob (inherited by ips-job-observation) requires ("d")`},
			{"required", "Observation.component[1].valueQuantity.value", ""},
			{"value", "Observation.component[2].valueQuantity", "http://unitsofmeasure.org#h"},
			{"value", "Observation.component[2].valueQuantity.code", `profile odh-PastOrPresentJob (inherited by ips-job-observation) requires ("h")`},
			{"value", "Observation.component[3].valueQuantity", "http://unitsofmeasure.org#h/wk"},
			{"value", "Observation.component[4].valueQuantity", "urn:iso:std:iso:4217"},
			{"required", "Observation.component[4].valueQuantity.value", ""},
			{"required", "Observation.component[4].valueQuantity.code", ""},
			{"structure", "Observation.component[5].valueString", "allowed: CodeableConcept"},
			{"required", "Observation.component[6].value[x]", ""},
			{"code-invalid", "Observation.component[7].valueCodeableConcept", "ValueSet/ips-job-end-reason"},
		},
		"job-component-values-2.json": {
			{"required", "Observation.component[0].value[x]", ""},
			{"required", "Observation.component[1].value[x]", ""},
			{"required", "Observation.component[2].valueQuantity.value", ""},
			{"required", "Observation.component[3].value[x]", ""},
			{"required", "Observation.component[4].value[x]", ""},
			{"required", "Observation.component[5].value[x]", ""},
			{"required", "Observation.component[7].value[x]", ""},
		},
		// The ipsfhir components are told apart by code.coding.code, as ODH's
		// are; the rest of their coding must still be right.
		"job-component-codings.json": {
			{"required", "Observation.component[3].code.coding[0].system", "profile ips-job-observation"},
			{"value", "Observation.component[3].code.coding[1].system", "ips-observation"},
			{"structure", "Observation.component[3].code.coding", "slice Fixed_work-hours-per-week: at most 1"},
			{"required", "Observation.component[4].code.coding[0].system", "profile ips-job-observation"},
			{"value", "Observation.component[4].code.coding[1].system", "ips-observation"},
			{"structure", "Observation.component[4].code.coding", "slice Fixed_hourly-wage: at most 1"},
			{"required", "Observation.component[5].code.coding[0].system", "profile ips-job-observation"},
			{"value", "Observation.component[5].code.coding[1].system", "ips-observation"},
			{"structure", "Observation.component[5].code.coding", "slice Fixed_competitive-employment: at most 1"},
			{"required", "Observation.component[6].code.coding[0].system", "profile ips-job-observation"},
			{"value", "Observation.component[6].code.coding[1].system", "ips-observation"},
			{"structure", "Observation.component[6].code.coding", "slice Fixed_disclosed-to-employer: at most 1"},
			{"required", "Observation.component[7].code.coding[0].system", "profile ips-job-observation"},
			{"value", "Observation.component[7].code.coding[1].system", "ips-observation"},
			{"structure", "Observation.component[7].code.coding", "slice Fixed_job-end-reason: at most 1"},
			{"value", "Observation.component[5].valueCodeableConcept", "v2-0136"},
			{"value", "Observation.component[6].valueCodeableConcept", "v2-0136"},
		},
		"job-last-known.json": {
			{"structure", "Observation.extension", "slice lastKnown: at most 1"},
			{"structure", "Observation.extension[2].valueString", "allowed: date"},
			{"structure", "Observation.extension[3].extension", "not allowed by profile ips-last-known"},
			{"required", "Observation.extension[3].value[x]", "profile ips-last-known"},
		},
		"employment-status-last-known.json": {
			{"structure", "Observation.extension", "slice lastKnown: at most 1"},
		},
		"job-wrong-value-types.json": {
			{"structure", "Observation.effectiveDateTime", "allowed: Period"},
			{"required", "Observation.effectivePeriod", "profile odh-PastOrPresentJob (inherited by ips-job-observation)"},
			{"structure", "Observation.valueString", "allowed: CodeableConcept"},
			{"structure", "Observation.component[1].valueString", "allowed: Quantity"},
			{"structure", "Observation.component[2].valueString", "allowed: Quantity"},
			{"structure", "Observation.component[3].valueString", "allowed: Quantity"},
			{"structure", "Observation.component[4].valueString", "allowed: Quantity"},
			{"structure", "Observation.component[6].valueString", "allowed: CodeableConcept"},
			{"structure", "Observation.component[7].valueString", "allowed: CodeableConcept"},
		},

		"employment-status-missing-required.json": {
			{"required", "Observation.meta.tag", "at least 1 required"},
			{"required", "Observation.meta.tag", "slice ipsfhirAuthored"},
			{"required", "Observation.identifier", ""},
			{"required", "Observation.category", ""},
			{"required", "Observation.subject.identifier", ""},
			{"required", "Observation.effective[x]", ""},
			{"required", "Observation.value[x]", ""},
		},
		"employment-status-wrong-values.json": {
			{"value", "Observation.status", `"final"`},
			{"structure", "Observation.category", "at most 1"},
			{"value", "Observation.code", "http://loinc.org#74165-2"},
			{"required", "Observation.category[0].coding", "slice Fixed_social-history: at least 1 required by profile odh-EmploymentStatus"},
			{"required", "Observation.code.coding", "slice Fixed_74165-2: at least 1 required by profile odh-EmploymentStatus"},
			{"required", "Observation.effectivePeriod.start", ""},
			{"value", "Observation.valueCodeableConcept", "http://terminology.hl7.org/CodeSystem/v3-ObservationValue"},
			{"code-invalid", "Observation.valueCodeableConcept", "v3-employmentStatusODH, to which profile odh-EmploymentStatus"},
			{"structure", "Observation.dataAbsentReason", "not allowed"},
			{"structure", "Observation.component", "not allowed"},
		},
		"employment-status-one-wrong-category.json": {
			{"value", "Observation.category", "observation-category#social-history"},
			{"required", "Observation.category[0].coding", "slice Fixed_social-history: at least 1 required by profile odh-EmploymentStatus (inherited by ips-employment-status)"},
		},
		// ODH binds the value to the v3 employment statuses (required), and
		// ips-employment-status asks for a v3 coding; a SNOMED CT finding
		// alone satisfies neither.
		"employment-status-snomed-only.json": {
			{"code-invalid", "Observation.valueCodeableConcept", "code is not in value set http://terminology.hl7.org/ValueSet/v3-employmentStatusODH, to which profile odh-EmploymentStatus (inherited by ips-employment-status) binds Observation.valueCodeableConcept (required)"},
			{"value", "Observation.valueCodeableConcept", "profile ips-employment-status requires (a code from http://terminology.hl7.org/CodeSystem/v3-ObservationValue)"},
		},
		"employment-status-wrong-types.json": {
			{"structure", "Observation.effectiveDateTime", "allowed: Period"},
			{"structure", "Observation.valueString", "allowed: CodeableConcept"},
		},

		"prapare-missing-required.json": {
			{"required", "Observation.meta.tag", "at least 1 required"},
			{"required", "Observation.meta.tag", "slice ipsfhirAuthored"},
			{"required", "Observation.identifier", ""},
			{"required", "Observation.subject.identifier", ""},
			{"required", "Observation.effective[x]", ""},
			{"required", "Observation.value[x]", ""},
			{"required", "Observation.derivedFrom", ""},
		},
		"prapare-wrong-values.json": {
			{"value", "Observation.status", `"final"`},
			{"value", "Observation.code", "http://loinc.org#67875-5"},
			{"value", "Observation.valueCodeableConcept", "http://loinc.org"},
			{"structure", "Observation.component", "not allowed"},
		},
		"prapare-wrong-types.json": {
			{"structure", "Observation.effectivePeriod", "allowed: dateTime"},
			{"structure", "Observation.valueString", "allowed: CodeableConcept"},
		},

		"plan-note-missing-required.json": {
			{"required", "DocumentReference.meta.tag", "slice ipsfhirAuthored"},
			{"required", "DocumentReference.identifier", ""},
			{"required", "DocumentReference.docStatus", ""},
			{"required", "DocumentReference.type", ""},
			{"required", "DocumentReference.category", "at least 1 required"},
			{"required", "DocumentReference.category", "slice uscore"},
			{"required", "DocumentReference.subject.identifier", ""},
			{"required", "DocumentReference.content[0].attachment.contentType", ""},
			{"required", "DocumentReference.content[0].attachment.data", ""},
			{"invariant", "DocumentReference.content[0].attachment", "constraint us-core-6 of profile us-core-documentreference (inherited by ips-plan-note)"},
		},
		"plan-note-wrong-values.json": {
			{"value", "DocumentReference.status", `"current"`},
			{"value", "DocumentReference.type", "http://loinc.org#11506-3"},
			{"structure", "DocumentReference.category", "slice uscore: at most 1"},
			{"structure", "DocumentReference.content", "at most 1"},
			{"value", "DocumentReference.content[0].attachment.contentType", "text/plain; charset=utf-8"},
			{"required", "DocumentReference.context.period.start", ""},
		},
		"plan-note-no-content-period.json": {
			{"required", "DocumentReference.content", "base R4"},
			{"required", "DocumentReference.content", "profile ips-plan-note"},
			{"required", "DocumentReference.context.period", ""},
		},

		// A Provenance's agents: US Core's slices and its provenance-1 (a
		// Device or Practitioner acts on behalf of an Organization),
		// ips-provenance's one author, one Device transmitter, one target.
		"provenance-missing-required.json": {
			{"required", "Provenance.meta.tag", "at least 2 required"},
			{"required", "Provenance.meta.tag", "slice ipsfhirAuthored: at least 1"},
			{"required", "Provenance.target[0].reference", "profile ips-provenance"},
			{"required", "Provenance.agent", "slice ProvenanceTransmitter: at least 1"},
			{"required", "Provenance.agent[0].who", "base R4"},
		},
		"provenance-no-organization.json": {
			{"invariant", "Provenance.agent[0]", "constraint provenance-1 of profile us-core-provenance (inherited by ips-provenance)"},
			{"invariant", "Provenance.agent[1]", "constraint provenance-1 of profile us-core-provenance (inherited by ips-provenance)"},
			{"required", "Provenance.agent[1].onBehalfOf", "profile ips-provenance"},
			{"required", "Provenance.agent[1].who.type", "profile ips-provenance"},
		},
		"provenance-wrong-values.json": {
			{"structure", "Provenance.target", "at most 1"},
			{"required", "Provenance.agent", "slice ProvenanceAuthor: at least 1"},
			{"value", "Provenance.agent[0].who.type", "Device"},
		},
		"provenance-too-many.json": {
			{"structure", "Provenance.meta.tag", "slice ipsfhirAuthored: at most 1"},
			{"structure", "Provenance.agent", "slice ProvenanceAuthor: at most 1"},
			{"structure", "Provenance.agent", "slice ProvenanceTransmitter: at most 1"},
		},

		// Inside a Bundle, paths start at the entry holding the resource.
		"bundle-broken-goal.json": {
			{"value", "Bundle.entry[3].resource.ofType(Goal).target[0].measure", "profile ips-goal"},
		},
		"bundle-base-r4.json": {
			{"value", "Bundle.entry[2].resource.ofType(Observation).component[3].valueQuantity.value", "base R4: expected decimal"},
		},
	}
	// Every profile's identity and subject rules, broken the same way.
	for _, p := range []struct{ file, typ, profile string }{
		{"careplan", "CarePlan", "ips-careplan"},
		{"job", "Observation", "ips-job-observation"},
		{"employment-status", "Observation", "ips-employment-status"},
		{"prapare", "Observation", "ips-prapare-employment"},
		{"plan-note", "DocumentReference", "ips-plan-note"},
	} {
		parts := []want{
			{"structure", p.typ + ".meta.tag", "slice ipsfhirAuthored: at most 1"},
			{"required", p.typ + ".identifier[0].system", "profile " + p.profile},
			{"required", p.typ + ".identifier[1].value", "profile " + p.profile},
			{"required", p.typ + ".subject.identifier.system", "profile " + p.profile},
		}
		noSubject := []want{
			{"required", p.typ + ".meta.tag", "at least 1 required"},
			{"required", p.typ + ".meta.tag", "slice ipsfhirAuthored: at least 1"},
			{"required", p.typ + ".subject", "profile " + p.profile},
		}
		switch p.file {
		case "careplan":
			noSubject = append(noSubject, want{"required", "CarePlan.subject", "base R4"})
		case "job":
			parts = append(parts,
				want{"required", "Observation.component[2].value[x]", ""},
				want{"required", "Observation.component[3].valueQuantity.value", ""})
			noSubject = append(noSubject,
				want{"required", "Observation.component", "at least 3 required"},
				want{"required", "Observation.component", "slice hoursPerWeek"},
				want{"required", "Observation.component", "slice hourlyWage"},
				want{"required", "Observation.component", "slice competitive"})
		}
		m[p.file+"-identifier-parts.json"] = parts
		m[p.file+"-no-subject.json"] = noSubject
		m[p.file+"-subject-identifier-value.json"] = []want{{"required", p.typ + ".subject.identifier.value", "profile " + p.profile}}
	}
	return m
}

func TestInvalidFixturesReportTheirIssues(t *testing.T) {
	v := newTestValidator(t)
	expected := expectedIssues()
	names := fixtureNames(t, "invalid")
	for _, name := range names {
		if _, ok := expected[filepath.Base(name)]; !ok {
			t.Errorf("%s has no entry in invalidFixtures", name)
		}
	}
	for file, wants := range expected {
		t.Run(file, func(t *testing.T) {
			issues, err := v.ValidateJSON(readFixture(t, filepath.Join("invalid", file)))
			if err != nil {
				t.Fatal(err)
			}
			if !HasErrors(issues) && !slices.ContainsFunc(issues, func(i Issue) bool { return i.Severity == "warning" }) {
				t.Fatalf("no issues")
			}
			rest := slices.Clone(issues)
			for _, w := range wants {
				i := slices.IndexFunc(rest, func(i Issue) bool {
					return i.Code == w.code && i.Path == w.path && strings.Contains(i.Message, w.msg)
				})
				if i < 0 {
					t.Errorf("missing issue %s at %s (message with %q)", w.code, w.path, w.msg)
					continue
				}
				rest = slices.Delete(rest, i, i+1)
			}
			if len(rest) > 0 {
				t.Errorf("unexpected issues:\n%s", formatIssues(rest))
			}
			if t.Failed() {
				t.Logf("all issues:\n%s", formatIssues(issues))
			}
		})
	}
}

func TestIssuesNeverQuoteTheResource(t *testing.T) {
	v := newTestValidator(t)
	for _, name := range append(fixtureNames(t, "invalid"), fixtureNames(t, "valid")...) {
		data := readFixture(t, name)
		if !strings.Contains(string(data), planted[0]) && !strings.Contains(string(data), planted[1]) {
			t.Errorf("%s: fixture has no planted value", name)
		}
		issues, err := v.ValidateJSON(data)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		outcome := string(OperationOutcomeJSON(issues))
		for _, p := range planted {
			for _, i := range issues {
				if strings.Contains(i.Path, p) || strings.Contains(i.Message, p) {
					t.Errorf("%s: issue quotes a planted value: %+v", name, i)
				}
			}
			if strings.Contains(outcome, p) {
				t.Errorf("%s: OperationOutcome quotes a planted value", name)
			}
		}
	}
}

func TestValidateJSONRejectsWhatIsNotAResource(t *testing.T) {
	v := newTestValidator(t)
	for _, tc := range []struct {
		in   string
		want error
	}{
		{``, ErrNotJSON},
		{`{"resourceType": "Goal"`, ErrNotJSON},
		{`Zanzibar-Quokka`, ErrNotJSON},
		{`{"a": 1} {"b": 2}`, ErrNotJSON},
		{`{"resourceType": "Goal"}}`, ErrNotJSON},
		{`[{"resourceType": "Goal"}]`, ErrNotResource},
		{`"Goal"`, ErrNotResource},
		{`{"id": "x"}`, ErrNotResource},
		{`{"resourceType": 7}`, ErrNotResource},
	} {
		issues, err := v.ValidateJSON([]byte(tc.in))
		if !errors.Is(err, tc.want) || issues != nil {
			t.Errorf("ValidateJSON(%q) = %v, %v; want %v", tc.in, issues, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "Zanzibar") {
			t.Errorf("error quotes the input: %v", err)
		}
	}
}

func TestUnknownResourceTypeIsAnIssueThatDoesNotEchoTheType(t *testing.T) {
	v := newTestValidator(t)
	for _, in := range []string{
		`{"resourceType": "Zanzibar-Quokka"}`,
		`{"resourceType": "ZanzibarQuokka"}`,
		`{"resourceType": "Bundle", "type": "collection", "entry": [{"resource": {"resourceType": "ZanzibarQuokka"}}]}`,
	} {
		issues, err := v.ValidateJSON([]byte(in))
		if err != nil {
			t.Fatalf("%s: %v", in, err)
		}
		if !HasErrors(issues) {
			t.Errorf("%s: no error", in)
		}
		for _, i := range issues {
			if strings.Contains(i.Path+i.Message, "Zanzibar") {
				t.Errorf("%s: issue echoes the resource type: %+v", in, i)
			}
		}
	}
}

func TestUnknownMemberNamesThatLookLikeDataStayOutOfPaths(t *testing.T) {
	v := newTestValidator(t)
	in := `{"resourceType": "Goal", "lifecycleStatus": "active", "description": {"text": "x"},
		"subject": {"reference": "Patient/1"}, "MRN-PLANTED-7731": 1, "note": [{"text": "x", "Zanzibar Quokka": 2}]}`
	issues, err := v.ValidateJSON([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, i := range issues {
		got[i.Code+" "+i.Path] = true
	}
	for _, w := range []string{"structure Goal", "structure Goal.note[0]"} {
		if !got[w] {
			t.Errorf("missing %q in\n%s", w, formatIssues(issues))
		}
	}
}

func TestOperationOutcomeIsValidR4(t *testing.T) {
	v := newTestValidator(t)
	um, err := jsonformat.NewUnmarshaller("UTC", fhirversion.R4)
	if err != nil {
		t.Fatal(err)
	}
	issues, err := v.ValidateJSON(readFixture(t, "invalid/goal-missing-required.json"))
	if err != nil {
		t.Fatal(err)
	}
	issues = append(issues, Issue{Severity: "warning", Code: "not-supported", Message: "no path"})
	for _, tc := range []struct {
		name   string
		issues []Issue
	}{{"issues", issues}, {"none", nil}} {
		t.Run(tc.name, func(t *testing.T) {
			out := OperationOutcomeJSON(tc.issues)
			if _, err := um.Unmarshal(out); err != nil {
				t.Fatalf("jsonformat rejects the OperationOutcome: %v", err)
			}
			if got, err := v.ValidateJSON(out); err != nil || got != nil {
				t.Fatalf("ValidateJSON(OperationOutcome) = %v, %v", got, err)
			}
			var oo struct {
				ResourceType string
				Issue        []struct {
					Severity, Code, Diagnostics string
					Details                     struct{ Text string }
					Expression                  []string
				}
			}
			if err := json.Unmarshal(out, &oo); err != nil {
				t.Fatal(err)
			}
			if oo.ResourceType != "OperationOutcome" {
				t.Fatalf("resourceType %q", oo.ResourceType)
			}
			if len(tc.issues) == 0 {
				if len(oo.Issue) != 1 || oo.Issue[0].Severity != "information" || oo.Issue[0].Details.Text == "" {
					t.Fatalf("empty outcome: %s", out)
				}
				return
			}
			if len(oo.Issue) != len(tc.issues) {
				t.Fatalf("%d issues, want %d", len(oo.Issue), len(tc.issues))
			}
			for i, want := range tc.issues {
				got := oo.Issue[i]
				var path string
				if len(got.Expression) > 0 {
					path = got.Expression[0]
				}
				if got.Severity != want.Severity || got.Code != want.Code || path != want.Path ||
					got.Details.Text != want.Message || got.Diagnostics != want.Message {
					t.Errorf("issue %d = %+v, want %+v", i, got, want)
				}
			}
			if !strings.HasPrefix(string(out), "{\n  \"resourceType\"") {
				t.Errorf("not pretty-printed: %.40s", out)
			}
		})
	}
}

// `ipsfhir validate` must accept what the project publishes.
func TestConformanceArtifactsPassBaseR4(t *testing.T) {
	v := newTestValidator(t)
	all, err := artifacts.All()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range all {
		issues, err := v.ValidateJSON(a.Data)
		if err != nil || issues != nil {
			t.Errorf("%s: %v\n%s", a.Path, err, formatIssues(issues))
		}
	}
}

func TestHasErrors(t *testing.T) {
	if HasErrors(nil) || HasErrors([]Issue{{Severity: "warning"}}) {
		t.Error("warnings are not errors")
	}
	if !HasErrors([]Issue{{Severity: "warning"}, {Severity: "error"}}) {
		t.Error("missed an error")
	}
}

func TestValidateJSONConcurrently(t *testing.T) {
	v := newTestValidator(t)
	valid := readFixture(t, "valid/bundle-transaction.json")
	invalid := readFixture(t, "invalid/job-component-values.json")
	want, _ := v.ValidateJSON(invalid)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 5 {
				if got, err := v.ValidateJSON(valid); err != nil || got != nil {
					t.Errorf("goroutine %d: valid bundle: %v %v", i, got, err)
				}
				if got, _ := v.ValidateJSON(invalid); !slices.Equal(got, want) {
					t.Errorf("goroutine %d: issues differ between runs", i)
				}
			}
		}()
	}
	wg.Wait()
}

// What the mappings emit must pass the profiles they claim.
func TestEmittedResourcesPassTheirProfiles(t *testing.T) {
	v := newTestValidator(t)
	hours := 20.0
	yes := true
	c := &ips.Client{
		ID: "c1", Patient: ips.Identifier{System: "urn:oid:2.16.840.1.113883.19.5", Value: planted[0]},
		EnrolledOn: ips.MustDate("2026-01-05"), Specialist: "Dana Reyes",
		Goals: []*ips.Goal{{ID: "g1", Description: planted[1], Status: ips.GoalActive, Achievement: "in-progress",
			TargetHoursPerWeek: &hours, Start: ips.MustDate("2026-01-06"), Due: ips.MustDate("2026-06-01"),
			Notes: []ips.Note{{Text: "keen", Date: ips.MustDate("2026-02-01")}}}},
		Supports: []*ips.Support{{ID: "s1", Type: ips.SupportJobDevelopment, Status: ips.SupportPlanned,
			Date: ips.MustDate("2026-01-10"), Goal: "g1", Note: "call three bakeries"}},
		Jobs: []*ips.Job{{ID: "j1", Employer: "Sunrise Bakery", Title: "Baker's assistant",
			Start: ips.MustDate("2026-03-01"), End: ips.MustDate("2026-05-01"), EndReason: "laid-off",
			HoursPerWeek: 22, DaysPerWeek: 4, HourlyWage: ips.Money{Value: 16.5, Currency: "USD"},
			Competitive: true, Disclosed: &yes, Industry: &ips.Coding{System: "urn:oid:2.16.840.1.114222.4.5.315", Code: "311811"},
			Occupation: &ips.Coding{System: "urn:oid:2.16.840.1.114222.4.5.314", Code: "7800"}}},
		Employment: []ips.EmploymentSnapshot{{Date: ips.MustDate("2026-01-05"), Status: ips.Unemployed}, {Date: ips.MustDate("2026-03-01"), Status: ips.Employed}},
	}
	b, err := CaseloadBundle(&ips.Caseload{Clients: []*ips.Client{c}}, Options{PRAPARE: true, Now: time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)}, Transaction)
	if err != nil {
		t.Fatal(err)
	}
	data, err := MarshalPretty(b)
	if err != nil {
		t.Fatal(err)
	}
	note, err := MarshalPretty(PlanNote(c, Options{}))
	if err != nil {
		t.Fatal(err)
	}
	var issues []Issue
	for _, data := range [][]byte{data, note} {
		found, err := v.ValidateJSON(data)
		if err != nil {
			t.Fatal(err)
		}
		issues = append(issues, found...)
	}
	if issues != nil {
		t.Errorf("issues in emitted resources:\n%s", formatIssues(issues))
	}
}

func formatIssues(issues []Issue) string {
	var b strings.Builder
	for _, i := range issues {
		fmt.Fprintf(&b, "  %s %s %s: %s\n", i.Severity, i.Code, i.Path, i.Message)
	}
	return b.String()
}
