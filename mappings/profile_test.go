package mappings

import (
	"encoding/json"
	"io/fs"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/ipsfhir/ipsfhir/conformance/artifacts"
	"github.com/ipsfhir/ipsfhir/ips"
)

// ruleKey names one rule of a published profile: profile id, element id and
// kind of rule (min, max, type, value, binding).
type ruleKey struct{ profile, element, kind string }

// publishedRules lists every rule of the project's own profiles and
// extensions an instance can break (rules they inherit from base profiles
// have their own tests). Left out, with the reason: min on meta (a resource
// without meta names no profile, so no profile applies), and the values that
// decide slice membership and the mins on the way to them (an item that
// differs, or lacks the element, is simply not in the slice, which the
// slice's min reports).
func publishedRules(ps *profileSet) []ruleKey {
	var out []ruleKey
	var walk func(profile string, r *elemRule, discriminator map[*elemRule]bool)
	walk = func(profile string, r *elemRule, discriminator map[*elemRule]bool) {
		if r.hasMin && r.min > 0 && r.minFrom == profile && !strings.HasSuffix(r.id, ".meta") && !discriminator[r] {
			out = append(out, ruleKey{profile, r.id, "min"})
		}
		if r.hasMax && r.maxFrom == profile && (r.max == 0 || r.repeated()) {
			out = append(out, ruleKey{profile, r.id, "max"})
		}
		if len(r.types) > 0 && r.typesFrom == profile {
			out = append(out, ruleKey{profile, r.id, "type"})
		}
		if !discriminator[r] && slices.ContainsFunc(r.values, func(v valueRule) bool { return v.from == profile }) {
			out = append(out, ruleKey{profile, r.id, "value"})
		}
		if slices.ContainsFunc(r.bindings, func(b bindingRule) bool { return b.from == profile }) {
			out = append(out, ruleKey{profile, r.id, "binding"})
		}
		if r.slicing != nil {
			for _, s := range r.slices {
				for _, n := range discriminatorPath(r.slicing, s) {
					discriminator[n] = true
				}
			}
		}
		for _, c := range r.children {
			walk(profile, c, discriminator)
		}
		for _, s := range r.slices {
			walk(profile, s, discriminator)
		}
	}
	for _, sd := range slices.Concat(slices.Collect(maps.Values(ps.profiles)), slices.Collect(maps.Values(ps.exts))) {
		discriminator := map[*elemRule]bool{}
		if sd.typ == "Extension" {
			// Extensions are found by url, so their fixed url always matches.
			discriminator[sd.root.child("url")] = true
		}
		walk(sd.id, sd.root, discriminator)
	}
	return out
}

// discriminatorPath lists the rules from a slice down to its discriminator
// value (ODH-style slices fix code.coding.code through a slice of coding).
func discriminatorPath(s *slicingRule, slice *elemRule) []*elemRule {
	d := discriminatorValue(s, slice)
	if d == nil || s.segs == nil || s.path == "url" {
		return []*elemRule{d}
	}
	var find func(node *elemRule, segs []string) []*elemRule
	find = func(node *elemRule, segs []string) []*elemRule {
		if node == d {
			return []*elemRule{node}
		}
		if len(segs) == 0 {
			return nil
		}
		c := node.child(segs[0])
		if c == nil {
			return nil
		}
		for _, n := range append([]*elemRule{c}, c.slices...) {
			if rest := find(n, segs[1:]); rest != nil {
				return append([]*elemRule{c, n}, rest...)
			}
		}
		return nil
	}
	return find(slice, s.segs)
}

// Every rule of every published profile is broken by at least one fixture
// in testdata/fhir/invalid, and so is known to be enforced.
func TestEveryPublishedRuleIsExercised(t *testing.T) {
	v := newTestValidator(t)
	fired := map[ruleKey]bool{}
	v.ps.trace = func(profile, element, kind string) { fired[ruleKey{profile, element, kind}] = true }
	for _, name := range fixtureNames(t, "invalid") {
		if _, err := v.ValidateJSON(readFixture(t, name)); err != nil {
			t.Fatal(err)
		}
	}
	rules := publishedRules(v.ps)
	if len(rules) < 100 {
		t.Fatalf("only %d rules found; the walk is broken", len(rules))
	}
	for _, r := range rules {
		if !fired[r] {
			t.Errorf("no invalid fixture breaks %s rule on %s (profile %s)", r.kind, r.element, r.profile)
		}
	}
	// Valid fixtures break none.
	clear(fired)
	for _, name := range fixtureNames(t, "valid") {
		if _, err := v.ValidateJSON(readFixture(t, name)); err != nil {
			t.Fatal(err)
		}
	}
	if len(fired) > 0 {
		t.Errorf("rules fired on valid fixtures: %v", fired)
	}
}

// The published code systems, profiles and extension are the ones codes.go
// names, with the same codes and displays.
func TestArtifactsAgreeWithCodes(t *testing.T) {
	v := newTestValidator(t)
	all, err := artifacts.All()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range all {
		if !strings.HasPrefix(a.URL, CanonicalBase+"/") {
			t.Errorf("%s: url %s is outside CanonicalBase", a.Path, a.URL)
		}
	}

	displays := func(url string) map[string]string {
		a, ok := artifacts.ByURL(all, url)
		if !ok {
			t.Fatalf("code system %s is not published", url)
		}
		var cs struct {
			Concept []struct{ Code, Display, Definition string }
		}
		if err := json.Unmarshal(a.Data, &cs); err != nil {
			t.Fatal(err)
		}
		out := map[string]string{}
		for _, c := range cs.Concept {
			if c.Definition == "" {
				t.Errorf("%s#%s has no definition", url, c.Code)
			}
			out[c.Code] = c.Display
		}
		return out
	}
	supportTypes := map[string]string{}
	for _, st := range ips.SupportTypes {
		supportTypes[string(st)] = SupportTypeDisplay[st]
	}
	endReasons := map[string]string{}
	for _, r := range ips.JobEndReasons {
		endReasons[string(r)] = JobEndReasonDisplay[r]
	}
	for _, tc := range []struct {
		system string
		want   map[string]string
	}{
		{SystemSupportType, supportTypes},
		{SystemIPSObservation, IPSObservationDisplay},
		{SystemJobEndReason, endReasons},
		{SystemTags, map[string]string{TagAuthored: "Written by the ipsfhir adapter"}},
	} {
		if got := displays(tc.system); !maps.Equal(got, tc.want) {
			t.Errorf("%s:\n got %v\nwant %v", tc.system, got, tc.want)
		}
	}
	if len(supportTypes) != 11 || len(endReasons) != len(JobEndReasonDisplay) {
		t.Errorf("codes.go and ips disagree: %d support types, %d end reasons for %d displays", len(supportTypes), len(endReasons), len(JobEndReasonDisplay))
	}

	for url, typ := range map[string]string{
		ProfileGoal: "Goal", ProfileCarePlan: "CarePlan", ProfileJob: "Observation",
		ProfileEmploymentStatus: "Observation", ProfilePlanNote: "DocumentReference", ProfilePRAPARE: "Observation",
		ProfileProvenance: "Provenance",
	} {
		sd, ok := v.ps.profiles[url]
		if !ok {
			t.Errorf("profile %s is not published", url)
			continue
		}
		if sd.typ != typ {
			t.Errorf("profile %s constrains %s, want %s", url, sd.typ, typ)
		}
	}
	if len(v.ps.profiles) != 7 {
		t.Errorf("%d profiles published; codes.go names 7", len(v.ps.profiles))
	}
	if _, ok := v.ps.exts[ExtSupportIdentifier]; !ok {
		t.Errorf("extension %s is not published", ExtSupportIdentifier)
	}
}

// artifactsWith copies the published artifacts into a writable tree and
// applies edit to the decoded JSON of one file.
func artifactsWith(t *testing.T, file string, edit func(m map[string]any)) fstest.MapFS {
	t.Helper()
	out := fstest.MapFS{}
	err := fs.WalkDir(artifacts.FS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := fs.ReadFile(artifacts.FS(), p)
		if err != nil {
			return err
		}
		out[p] = &fstest.MapFile{Data: data}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if file == "" {
		return out
	}
	f, ok := out[file]
	if !ok {
		t.Fatalf("no artifact %s", file)
	}
	var m map[string]any
	if err := json.Unmarshal(f.Data, &m); err != nil {
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

func elements(m map[string]any) []any {
	return m["differential"].(map[string]any)["element"].([]any)
}

// element finds a differential element by id.
func element(m map[string]any, id string) map[string]any {
	for _, e := range elements(m) {
		if e := e.(map[string]any); e["id"] == id {
			return e
		}
	}
	panic("no element " + id)
}

func addElement(m map[string]any, e map[string]any) {
	diff := m["differential"].(map[string]any)
	diff["element"] = append(elements(m), e)
}

// A profile that uses a feature the checker does not enforce must stop the
// validator from starting, so the published rules and the checked ones agree.
func TestNewValidatorRejectsWhatItCannotEnforce(t *testing.T) {
	if _, err := newValidator(artifactsWith(t, "", nil)); err != nil {
		t.Fatalf("unchanged copy rejected: %v", err)
	}
	const goal = "profiles/ips-goal.json"
	const job = "profiles/ips-job-observation.json"
	for _, tc := range []struct {
		name, file string
		edit       func(m map[string]any)
		wantErr    string
	}{
		{"snapshot", goal, func(m map[string]any) { m["snapshot"] = map[string]any{"element": []any{}} }, "StructureDefinition.snapshot"},
		{"invariant", goal, func(m map[string]any) {
			element(m, "Goal.identifier")["constraint"] = []any{map[string]any{"key": "x-1", "severity": "error", "human": "x", "expression": "true"}}
		}, "ElementDefinition.constraint"},
		{"maxLength", goal, func(m map[string]any) { element(m, "Goal.description.text")["maxLength"] = 10 }, "ElementDefinition.maxLength"},
		{"extensible binding", "profiles/ips-careplan.json", func(m map[string]any) {
			element(m, "CarePlan.activity.detail.code")["binding"].(map[string]any)["strength"] = "extensible"
		}, "only required bindings"},
		{"binding to a value set the project does not publish", "profiles/ips-careplan.json", func(m map[string]any) {
			element(m, "CarePlan.activity.detail.code")["binding"].(map[string]any)["valueSet"] = "http://hl7.org/fhir/ValueSet/care-plan-activity-kind"
		}, "not published"},
		{"element not in R4", goal, func(m map[string]any) {
			addElement(m, map[string]any{"id": "Goal.favouriteColour", "path": "Goal.favouriteColour", "min": 1})
		}, "not an element of base R4"},
		{"choice type not in R4", goal, func(m map[string]any) {
			element(m, "Goal.start[x]")["type"] = []any{map[string]any{"code": "Period"}}
		}, "not a type this choice allows"},
		{"type profile on a non-extension", goal, func(m map[string]any) {
			element(m, "Goal.identifier")["type"] = []any{map[string]any{"code": "Identifier", "profile": []any{"http://example.org/x"}}}
		}, "only choice elements and extension slices"},
		{"targetProfile", goal, func(m map[string]any) {
			element(m, "Goal.expressedBy")["type"] = []any{map[string]any{"code": "Reference", "targetProfile": []any{"http://hl7.org/fhir/StructureDefinition/Patient"}}}
		}, "only choice elements and extension slices"},
		{"type discriminator", job, func(m map[string]any) {
			element(m, "Observation.component:hoursPerWeek.code.coding")["slicing"].(map[string]any)["discriminator"] = []any{map[string]any{"type": "type", "path": "code"}}
		}, "discriminator type"},
		{"FHIRPath discriminator path", job, func(m map[string]any) {
			element(m, "Observation.component:hoursPerWeek.code.coding")["slicing"].(map[string]any)["discriminator"] = []any{map[string]any{"type": "value", "path": "code.where(true)"}}
		}, "discriminator path"},
		{"discriminator path that is no element", job, func(m map[string]any) {
			element(m, "Observation.component:hoursPerWeek.code.coding")["slicing"].(map[string]any)["discriminator"] = []any{map[string]any{"type": "value", "path": "code.colour"}}
		}, "not a path of child elements"},
		{"ordered slicing", job, func(m map[string]any) {
			element(m, "Observation.component:hoursPerWeek.code.coding")["slicing"].(map[string]any)["ordered"] = true
		}, "ordered"},
		{"slice without discriminator value", job, func(m map[string]any) {
			delete(element(m, "Observation.component:hoursPerWeek.code.coding:Fixed_work-hours-per-week.code"), "fixedCode")
		}, "no value for discriminator"},
		// What a derived profile may not do to what it inherits.
		{"slicing a base profile's sliced element again", job, func(m map[string]any) {
			element(m, "Observation.component")["slicing"] = map[string]any{"discriminator": []any{map[string]any{"type": "pattern", "path": "code"}}, "rules": "open"}
		}, "slices Observation.component again by pattern:code, but base profile odh-PastOrPresentJob slices it by value:code.coding.code"},
		{"a slice that duplicates a base profile's slice", job, func(m map[string]any) {
			for _, e := range []map[string]any{
				{"id": "Observation.component:industry", "path": "Observation.component", "sliceName": "industry"},
				{"id": "Observation.component:industry.code.coding", "path": "Observation.component.code.coding",
					"slicing": map[string]any{"discriminator": []any{map[string]any{"type": "value", "path": "code"}}, "rules": "open"}, "min": 1},
				{"id": "Observation.component:industry.code.coding:Fixed_86188-0", "path": "Observation.component.code.coding", "sliceName": "Fixed_86188-0", "min": 1, "max": "1"},
				{"id": "Observation.component:industry.code.coding:Fixed_86188-0.code", "path": "Observation.component.code.coding.code", "fixedCode": "86188-0"},
			} {
				addElement(m, e)
			}
		}, "duplicates slice Observation.component:odh-PastOrPresentIndustry"},
		{"a second slice for a base profile's extension", job, func(m map[string]any) {
			addElement(m, map[string]any{"id": "Observation.extension:current", "path": "Observation.extension", "sliceName": "current",
				"type": []any{map[string]any{"code": "Extension", "profile": []any{"http://hl7.org/fhir/us/odh/StructureDefinition/odh-isCurrentJob-extension"}}}})
		}, "duplicates slice Observation.extension:odhIsCurrentJobExtension"},
		{"a type the base profile rules out", job, func(m map[string]any) {
			e := element(m, "Observation.component:competitive.value[x]")
			delete(e, "patternCodeableConcept")
			e["type"] = []any{map[string]any{"code": "boolean"}}
		}, "boolean is not among the types base profile odh-PastOrPresentJob allows"},
		{"a min below the base profile's", "profiles/ips-employment-status.json", func(m map[string]any) {
			element(m, "Observation.subject")["min"] = 0
		}, "min 0 is below the min 1 of base profile odh-EmploymentStatus"},
		{"a max above the base profile's", "profiles/ips-employment-status.json", func(m map[string]any) {
			element(m, "Observation.category")["max"] = "*"
		}, "max * is above the max 1 of base profile odh-EmploymentStatus"},
		{"base version not pinned", goal, func(m map[string]any) {
			m["baseDefinition"] = "http://hl7.org/fhir/us/sdoh-clinicalcare/StructureDefinition/SDOHCC-Goal"
		}, "must pin the version (http://hl7.org/fhir/us/sdoh-clinicalcare/StructureDefinition/SDOHCC-Goal|3.0.0)"},
		{"base version not the one copied", goal, func(m map[string]any) {
			m["baseDefinition"] = "http://hl7.org/fhir/us/sdoh-clinicalcare/StructureDefinition/SDOHCC-Goal|2.2.0"
		}, "the copy in conformance/baseprofiles is version 3.0.0"},
		{"base profile not copied", goal, func(m map[string]any) {
			m["baseDefinition"] = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-condition|7.0.0"
		}, "neither published nor copied"},
		{"pattern of the wrong type", goal, func(m map[string]any) {
			e := element(m, "Goal.achievementStatus")
			delete(e, "patternCodeableConcept")
			e["patternCoding"] = map[string]any{"system": "http://example.org"}
		}, "patternCoding on an element of type \"CodeableConcept\""},
		{"pattern on an unrestricted choice", goal, func(m map[string]any) {
			delete(element(m, "Goal.target.detail[x]"), "type")
		}, "needs the choice restricted to one type"},
		{"children of an unrestricted choice", job, func(m map[string]any) {
			delete(element(m, "Observation.value[x]"), "type")
		}, "children of a choice"},
		{"max above 1 on a single element", goal, func(m map[string]any) { element(m, "Goal.start[x]")["max"] = "2" }, "does not repeat"},
		{"slicing a single element", goal, func(m map[string]any) {
			addElement(m, map[string]any{"id": "Goal.subject:x", "path": "Goal.subject", "sliceName": "x"})
		}, "does not repeat"},
		{"path that disagrees with id", goal, func(m map[string]any) { element(m, "Goal.identifier")["path"] = "Goal.category" }, "does not match the id"},
		{"rules on the root", goal, func(m map[string]any) { elements(m)[0].(map[string]any)["min"] = 1 }, "root"},
		{"specialization", goal, func(m map[string]any) { m["derivation"] = "specialization" }, "constraint"},
		{"R5", goal, func(m map[string]any) { m["fhirVersion"] = "5.0.0" }, "fhirVersion"},
		{"value set with a filter", "valuesets/ips-support-type.json", func(m map[string]any) {
			m["compose"].(map[string]any)["include"].([]any)[0].(map[string]any)["filter"] = []any{}
		}, "compose.include.filter"},
		{"value set excluding codes", "valuesets/ips-support-type.json", func(m map[string]any) {
			m["compose"].(map[string]any)["exclude"] = []any{}
		}, "compose.exclude"},
		{"extension that does not fix its url", "extensions/ips-support-identifier.json", func(m map[string]any) {
			delete(element(m, "Extension.url"), "fixedUri")
		}, "fix Extension.url"},
		{"unpublished extension of ours", "profiles/ips-careplan.json", func(m map[string]any) {
			element(m, "CarePlan.activity.extension:supportIdentifier")["type"] = []any{map[string]any{"code": "Extension", "profile": []any{CanonicalBase + "/StructureDefinition/nope"}}}
		}, "not published"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := newValidator(artifactsWith(t, tc.file, tc.edit))
			if err == nil {
				t.Fatal("NewValidator accepted it")
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %q does not mention %q", err, tc.wantErr)
			}
		})
	}
}

// testProfile publishes one extra profile next to the real artifacts, for
// features the project's own profiles do not use.
func testProfile(t *testing.T, elements ...map[string]any) *Validator {
	t.Helper()
	fsys := artifactsWith(t, "", nil)
	sd := map[string]any{
		"resourceType": "StructureDefinition", "id": "test-observation",
		"url": CanonicalBase + "/StructureDefinition/test-observation", "version": "0.1.0",
		"name": "TestObservation", "status": "draft", "fhirVersion": "4.0.1", "kind": "resource",
		"abstract": false, "type": "Observation", "derivation": "constraint",
		"baseDefinition": "http://hl7.org/fhir/StructureDefinition/Observation",
		"differential":   map[string]any{"element": append([]any{map[string]any{"id": "Observation", "path": "Observation"}}, anySlice(elements)...)},
	}
	data, err := json.Marshal(sd)
	if err != nil {
		t.Fatal(err)
	}
	fsys[filepath.ToSlash(filepath.Join(artifacts.DirProfiles, "test-observation.json"))] = &fstest.MapFile{Data: data}
	v, err := newValidator(fsys)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func anySlice(ms []map[string]any) []any {
	out := make([]any, len(ms))
	for i, m := range ms {
		out[i] = m
	}
	return out
}

func observation(extra string) []byte {
	return []byte(`{"resourceType": "Observation", "status": "final", "code": {"text": "x"},
		"meta": {"profile": ["` + CanonicalBase + `/StructureDefinition/test-observation"]}` + extra + `}`)
}

func issuePaths(t *testing.T, v *Validator, data []byte) []string {
	t.Helper()
	issues, err := v.ValidateJSON(data)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, i := range issues {
		out = append(out, i.Code+" "+i.Path)
	}
	return out
}

// A pattern on a repeating element that is not sliced needs one matching
// item, not all: the documented reading.
func TestPatternOnRepeatingElementNeedsOneMatch(t *testing.T) {
	v := testProfile(t, map[string]any{
		"id": "Observation.category", "path": "Observation.category",
		"patternCodeableConcept": map[string]any{"coding": []any{map[string]any{"system": "http://s", "code": "a"}}},
	})
	one := `, "category": [{"coding": [{"system": "http://s", "code": "b"}]}, {"coding": [{"system": "http://s", "code": "a", "display": "A"}]}]`
	if got := issuePaths(t, v, observation(one)); got != nil {
		t.Errorf("one match among others: %v", got)
	}
	none := `, "category": [{"coding": [{"system": "http://s", "code": "b"}]}]`
	if got := issuePaths(t, v, observation(none)); !slices.Equal(got, []string{"value Observation.category"}) {
		t.Errorf("no match: %v", got)
	}
	if got := issuePaths(t, v, observation("")); got != nil {
		t.Errorf("absent element: %v", got)
	}
}

func TestClosedValueSlicing(t *testing.T) {
	v := testProfile(t,
		map[string]any{"id": "Observation.identifier", "path": "Observation.identifier",
			"slicing": map[string]any{"discriminator": []any{map[string]any{"type": "value", "path": "system"}}, "rules": "closed"}},
		map[string]any{"id": "Observation.identifier:a", "path": "Observation.identifier", "sliceName": "a", "min": 1, "max": "1"},
		map[string]any{"id": "Observation.identifier:a.system", "path": "Observation.identifier.system", "fixedUri": "urn:a"},
		map[string]any{"id": "Observation.identifier:a.value", "path": "Observation.identifier.value", "min": 1},
	)
	for _, tc := range []struct {
		ids  string
		want []string
	}{
		{`[{"system": "urn:a", "value": "1"}]`, nil},
		{`[{"system": "urn:a"}]`, []string{"required Observation.identifier[0].value"}},
		{`[{"system": "urn:a", "value": "1"}, {"system": "urn:b", "value": "2"}]`, []string{"structure Observation.identifier[1]"}},
		{`[{"system": "urn:b", "value": "2"}]`, []string{"structure Observation.identifier[0]", "required Observation.identifier"}},
	} {
		if got := issuePaths(t, v, observation(`, "identifier": `+tc.ids)); !slices.Equal(got, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.ids, got, tc.want)
		}
	}
}

func TestPatternMatching(t *testing.T) {
	decode := func(s string) any {
		v, err := decodeJSON([]byte(s))
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	for _, tc := range []struct {
		v, pattern string
		want       bool
	}{
		{`{"coding": [{"system": "s", "code": "c", "display": "d"}], "text": "t"}`, `{"coding": [{"system": "s", "code": "c"}]}`, true},
		{`{"coding": [{"system": "x", "code": "y"}, {"system": "s", "code": "c"}]}`, `{"coding": [{"system": "s", "code": "c"}]}`, true},
		{`{"coding": [{"system": "s", "code": "d"}]}`, `{"coding": [{"system": "s", "code": "c"}]}`, false},
		{`{"coding": {"system": "s", "code": "c"}}`, `{"coding": [{"system": "s", "code": "c"}]}`, false},
		{`{"value": 35.0, "system": "u"}`, `{"value": 35}`, true},
		{`{"value": "35"}`, `{"value": 35}`, false},
		{`"plan"`, `"plan"`, true},
		{`"Plan"`, `"plan"`, false},
		{`true`, `false`, false},
		{`null`, `"x"`, false},
	} {
		if got := matchesPattern(decode(tc.v), decode(tc.pattern)); got != tc.want {
			t.Errorf("matchesPattern(%s, %s) = %v", tc.v, tc.pattern, got)
		}
	}
	if jsonEqual(decode(`{"a": 1, "b": 2}`), decode(`{"a": 1}`)) {
		t.Error("fixed values must match exactly")
	}
}
