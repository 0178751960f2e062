package mappings

import (
	"encoding/json"
	"io/fs"
	"slices"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/ipsfhir/ipsfhir/conformance/baseprofiles"
)

// validFixture decodes a file of testdata/fhir/valid for a test to alter.
func validFixture(t *testing.T, name string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(readFixture(t, "valid/"+name), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func validate(t *testing.T, v *Validator, m map[string]any) []Issue {
	t.Helper()
	data, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	issues, err := v.ValidateJSON(data)
	if err != nil {
		t.Fatal(err)
	}
	return issues
}

// Rules the ipsfhir profiles inherit, each broken on an otherwise valid
// resource: the validator reports exactly that one, naming the profile that
// states it.
func TestInheritedRulesAreEnforced(t *testing.T) {
	v := newTestValidator(t)
	for _, tc := range []struct {
		name, fixture string
		edit          func(m map[string]any)
		want          []Issue // exactly these
	}{
		// ips-employment-status asks for a v3 coding itself too, so a SNOMED
		// CT finding alone breaks both; the next case breaks ODH's alone.
		{"ODH binds the employment status to the v3 codes", "employment-status.json", func(m map[string]any) {
			m["valueCodeableConcept"] = map[string]any{"coding": []any{map[string]any{"system": "http://snomed.info/sct", "code": "224363007"}}}
		}, []Issue{
			{"error", "code-invalid", "Observation.valueCodeableConcept",
				"code is not in value set http://terminology.hl7.org/ValueSet/v3-employmentStatusODH, to which profile odh-EmploymentStatus (inherited by ips-employment-status) binds Observation.valueCodeableConcept (required)"},
			{"error", "value", "Observation.valueCodeableConcept", "profile ips-employment-status requires (a code from http://terminology.hl7.org/CodeSystem/v3-ObservationValue)"},
		}},
		{"a v3 code outside _EmploymentStatus", "employment-status.json", func(m map[string]any) {
			cc := m["valueCodeableConcept"].(map[string]any)
			cc["coding"].([]any)[0].(map[string]any)["code"] = "_EmploymentStatus" // the abstract root the value set excludes
		}, []Issue{{"error", "code-invalid", "Observation.valueCodeableConcept", "v3-employmentStatusODH"}}},
		{"ODH forbids focus on an employment status", "employment-status.json", func(m map[string]any) {
			m["focus"] = []any{map[string]any{"display": "x"}}
		}, []Issue{{"error", "structure", "Observation.focus", "not allowed by profile odh-EmploymentStatus (inherited by ips-employment-status)"}}},
		{"ODH allows no boolean component value", "job-observation.json", func(m map[string]any) {
			m["component"] = append(m["component"].([]any), map[string]any{ // ODH's work classification
				"code":         map[string]any{"coding": []any{map[string]any{"system": SystemLOINC, "code": "85104-8"}}},
				"valueBoolean": true,
			})
		}, []Issue{{"error", "structure", "Observation.component[8].valueBoolean", "not allowed here by profile odh-PastOrPresentJob (inherited by ips-job-observation)"}}},
		{"ODH fixes the unit of weekly work days", "job-observation.json", func(m map[string]any) {
			m["component"].([]any)[1].(map[string]any)["valueQuantity"].(map[string]any)["code"] = "wk"
		}, []Issue{
			{"error", "value", "Observation.component[1].valueQuantity.code", `profile odh-PastOrPresentJob (inherited by ips-job-observation) requires ("d")`},
			{"error", "value", "Observation.component[1].valueQuantity", `profile ips-job-observation requires (http://unitsofmeasure.org#d)`},
		}},
		{"US Core narrows the CarePlan narrative status", "careplan.json", func(m map[string]any) {
			m["text"].(map[string]any)["status"] = "extensions"
		}, []Issue{{"error", "code-invalid", "CarePlan.text.status", "us-core-narrative-status, to which profile us-core-careplan (inherited by ips-careplan) binds CarePlan.text.status"}}},
		// SDOHCC's slice takes any SDOH domain; ips-goal narrows it to
		// employment status, so another domain leaves it empty.
		{"SDOHCC's category slice holds employment status in an IPS goal", "goal.json", func(m map[string]any) {
			for _, c := range m["category"].([]any) {
				coding := c.(map[string]any)["coding"].([]any)[0].(map[string]any)
				if coding["code"] == SDOHEmploymentStatus {
					coding["code"] = "food-insecurity"
				}
			}
		}, []Issue{{"error", "required", "Goal.category", "slice SDOHCC: at least 1 required by profile ips-goal, found 0"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := validFixture(t, tc.fixture)
			tc.edit(m)
			issues := validate(t, v, m)
			ok := len(issues) == len(tc.want)
			for i := 0; ok && i < len(issues); i++ {
				w := tc.want[i]
				ok = issues[i].Severity == w.Severity && issues[i].Code == w.Code && issues[i].Path == w.Path && strings.Contains(issues[i].Message, w.Message)
			}
			if !ok {
				t.Errorf("got:\n%swant exactly: %+v", formatIssues(issues), tc.want)
			}
		})
	}
}

// A required binding ipsfhir cannot check is said so, where a value meets it.
func TestUncheckedBindingWarns(t *testing.T) {
	v := newTestValidator(t)
	m := validFixture(t, "job-observation.json")
	m["component"] = append(m["component"].([]any), map[string]any{
		"code":                 map[string]any{"coding": []any{map[string]any{"system": "http://loinc.org", "code": "87707-6"}}},
		"valueCodeableConcept": map[string]any{"coding": []any{map[string]any{"system": "urn:example:level", "code": "1"}}},
	})
	issues := validate(t, v, m)
	if HasErrors(issues) || len(issues) != 1 || issues[0].Code != "not-supported" ||
		!strings.Contains(issues[0].Message, "2.16.840.1.114222.4.11.7613") || !strings.Contains(issues[0].Message, "Observation.component:odh-SupervisoryLevel.valueCodeableConcept") {
		t.Errorf("got:\n%s", formatIssues(issues))
	}
}

// A resource may claim a base profile: it is checked against it, at the
// version ipsfhir has, and not twice when an ipsfhir profile it also claims
// derives from it.
func TestClaimedBaseProfiles(t *testing.T) {
	v := newTestValidator(t)
	const usCorePlan = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-careplan"
	noAssessPlan := func(profiles ...any) map[string]any {
		m := validFixture(t, "careplan.json")
		m["meta"].(map[string]any)["profile"] = profiles
		var kept []any
		for _, c := range m["category"].([]any) {
			if c.(map[string]any)["coding"].([]any)[0].(map[string]any)["code"] != "assess-plan" {
				kept = append(kept, c)
			}
		}
		m["category"] = kept
		return m
	}
	issues := validate(t, v, noAssessPlan(usCorePlan+"|7.0.0"))
	if len(issues) != 1 || !strings.Contains(issues[0].Message, "slice AssessPlan: at least 1 required by profile us-core-careplan") {
		t.Errorf("US Core CarePlan alone:\n%s", formatIssues(issues))
	}
	issues = validate(t, v, noAssessPlan(ProfileCarePlan, usCorePlan+"|7.0.0"))
	var assess []Issue
	for _, i := range issues {
		if strings.Contains(i.Message, "AssessPlan") {
			assess = append(assess, i)
		}
	}
	if len(assess) != 1 {
		t.Errorf("ips-careplan and US Core CarePlan: want the AssessPlan slice once:\n%s", formatIssues(issues))
	}
	issues = validate(t, v, noAssessPlan(usCorePlan+"|6.1.0"))
	if HasErrors(issues) || len(issues) != 1 || !strings.Contains(issues[0].Message, "at a version ipsfhir does not have (it has 7.0.0)") {
		t.Errorf("US Core CarePlan 6.1.0:\n%s", formatIssues(issues))
	}
}

func TestBaseValueSets(t *testing.T) {
	v := newTestValidator(t)
	es := v.ps.valueSets["http://terminology.hl7.org/ValueSet/v3-employmentStatusODH"]
	got := slices.Sorted(func(yield func(string) bool) {
		for c := range es.codes[SystemV3ObservationValue] {
			if !yield(c) {
				return
			}
		}
	})
	if !slices.Equal(got, []string{"Employed", "NotInLaborForce", "Unemployed"}) {
		t.Errorf("v3-employmentStatusODH = %v", got)
	}
	for _, c := range employmentStatusV3 {
		if !es.contains(SystemV3ObservationValue, c.Code) {
			t.Errorf("the mapping's v3 code %s is not in the value set", c.Code)
		}
	}
	// LOINC's document scale cannot be evaluated: LOINC codes pass, the
	// listed NullFlavor code passes, anything else does not.
	dt := v.ps.valueSets["http://hl7.org/fhir/us/core/ValueSet/us-core-documentreference-type"]
	for _, tc := range []struct {
		system, code string
		want         bool
	}{
		{SystemLOINC, LOINCProgressNote, true},
		{"http://terminology.hl7.org/CodeSystem/v3-NullFlavor", "UNK", true},
		{"http://terminology.hl7.org/CodeSystem/v3-NullFlavor", "NI", false},
		{SystemSNOMED, "371532007", false},
		{SystemLOINC, "", false},
	} {
		if got := dt.contains(tc.system, tc.code); got != tc.want {
			t.Errorf("us-core-documentreference-type contains %s#%s = %v", tc.system, tc.code, got)
		}
	}
}

// basesWith copies the base definitions and applies edit to one JSON file.
func basesWith(t *testing.T, file string, edit func(m map[string]any)) fstest.MapFS {
	t.Helper()
	out := fstest.MapFS{}
	err := fs.WalkDir(baseprofiles.FS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := fs.ReadFile(baseprofiles.FS(), p)
		out[p] = &fstest.MapFile{Data: data}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(out[file].Data, &m); err != nil {
		t.Fatal(err)
	}
	edit(m)
	data, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	out[file] = &fstest.MapFile{Data: data}
	return out
}

// A base definition that says something the checker cannot enforce stops
// the validator from loading, as one of ours does.
func TestBaseDefinitionsTheCheckerCannotEnforce(t *testing.T) {
	const goal = "uscore/StructureDefinition-us-core-goal.json"
	diffElement := func(m map[string]any, id string) map[string]any {
		for _, e := range m["differential"].(map[string]any)["element"].([]any) {
			if e := e.(map[string]any); e["id"] == id {
				return e
			}
		}
		panic("no element " + id)
	}
	for _, tc := range []struct {
		name, file string
		edit       func(m map[string]any)
		wantErr    string
	}{
		{"required binding to a value set not copied", goal, func(m map[string]any) {
			diffElement(m, "Goal.description")["binding"] = map[string]any{"strength": "required", "valueSet": "http://example.org/ValueSet/goals"}
		}, "neither copied in conformance/baseprofiles nor listed as unchecked"},
		{"invariant the checker does not evaluate", goal, func(m map[string]any) {
			diffElement(m, "Goal.target")["constraint"] = []any{map[string]any{"key": "x-1", "severity": "error", "human": "x", "expression": "true"}}
		}, "constraint x-1 is not one the checker evaluates"},
		{"us-core-6 with another expression", "uscore/StructureDefinition-us-core-documentreference.json", func(m map[string]any) {
			diffElement(m, "DocumentReference.content.attachment")["constraint"].([]any)[0].(map[string]any)["expression"] = "url.exists()"
		}, "constraint us-core-6 is not one the checker evaluates"},
		{"snapshot", goal, func(m map[string]any) { m["snapshot"] = map[string]any{} }, "StructureDefinition.snapshot"},
		{"maxLength", goal, func(m map[string]any) { diffElement(m, "Goal.target")["maxLength"] = 3 }, "ElementDefinition.maxLength"},
		{"is-a on a concept the fragment lacks", "tho/ValueSet-v3-employmentStatusODH.json", func(m map[string]any) {
			m["compose"].(map[string]any)["include"].([]any)[0].(map[string]any)["filter"].([]any)[0].(map[string]any)["value"] = "_WorkSchedule"
		}, "only is-a on a concept of the copied code system"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := newValidatorWith(artifactsWith(t, "", nil), basesWith(t, tc.file, tc.edit))
			if err == nil {
				t.Fatal("NewValidator accepted it")
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %q does not mention %q", err, tc.wantErr)
			}
		})
	}
}

// Must-support elements, inherited ones included, that the mappings leave
// out (golden files: a client with every optional field set): each is in
// docs/MAPPING.md with the reason. A change here is a change of what EHRs
// receive.
func TestMustSupportElementsLeftOut(t *testing.T) {
	v := newTestValidator(t)
	want := map[string][]string{
		"goal-active": nil,
		// A goal without a recorded achievement or due date has none to send.
		"goal-proposed":             {"Goal.achievementStatus (profile SDOHCC-Goal)", "Goal.target.due[x] (profile us-core-goal)"},
		"careplan":                  nil,
		"job-current":               nil,
		"job-ended":                 nil,
		"employment-status-current": nil,
		"employment-status-closed":  nil,
		"prapare-employment":        nil,
		"provenance":                nil,
		// Without a specialist the program Organization is the author: it
		// acts on no one's behalf.
		"provenance-transaction": {"Provenance.agent.onBehalfOf (profile us-core-provenance)"},
		"plan-note": {
			"DocumentReference.content.attachment.url (profile us-core-documentreference)",
			"DocumentReference.content.format (profile us-core-documentreference)",
			"DocumentReference.context.encounter (profile us-core-documentreference)",
		},
	}
	for name, wantGaps := range want {
		issues, err := v.MustSupportGaps(readFixture(t, "../golden/"+name+".json"))
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, i := range issues {
			if i.Severity != "information" || i.Code != "informational" {
				t.Errorf("%s: %+v is not information", name, i)
			}
			got = append(got, strings.TrimSuffix(strings.TrimPrefix(i.Message, "must-support element "), " is absent"))
		}
		if !slices.Equal(got, wantGaps) {
			t.Errorf("%s: must-support elements left out:\n got %q\nwant %q", name, got, wantGaps)
		}
	}
	// In a Bundle, each entry is looked at on its own.
	m := validFixture(t, "bundle-transaction.json")
	data, _ := json.Marshal(m)
	issues, err := v.MustSupportGaps(data)
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range issues {
		if !strings.HasPrefix(i.Path, "Bundle.entry[") {
			t.Errorf("gap outside an entry: %+v", i)
		}
	}
}
