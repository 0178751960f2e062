package artifacts

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"testing/fstest"
)

// The canonical base is mappings.CanonicalBase; this package may not import
// mappings, so the mappings tests check that the two agree.
const base = "https://ipsfhir.org/fhir"

func TestAllArtifactsAreWellFormed(t *testing.T) {
	all, err := All()
	if err != nil {
		t.Fatal(err)
	}
	if len(all) == 0 {
		t.Fatal("no artifacts embedded")
	}
	dirType := map[string]string{
		DirCodeSystems:    "CodeSystem",
		DirValueSets:      "ValueSet",
		DirProfiles:       "StructureDefinition",
		DirExtensions:     "StructureDefinition",
		DirQuestionnaires: "Questionnaire",
		DirMeasures:       "Measure",
		DirCapabilities:   "CapabilityStatement",
	}
	seen := map[string]bool{}
	for _, a := range all {
		t.Run(a.Path, func(t *testing.T) {
			dir, _, _ := strings.Cut(a.Path, "/")
			if a.ResourceType != dirType[dir] {
				t.Errorf("resourceType %q in %s/", a.ResourceType, dir)
			}
			if want := base + "/" + a.ResourceType + "/" + a.ID; a.URL != want {
				t.Errorf("url %q, want %q", a.URL, want)
			}
			if seen[a.URL] {
				t.Errorf("url %q published twice", a.URL)
			}
			seen[a.URL] = true
			if a.Version != "0.1.0" {
				t.Errorf("version %q", a.Version)
			}
			var m map[string]any
			if err := json.Unmarshal(a.Data, &m); err != nil {
				t.Fatal(err)
			}
			for _, k := range []string{"name", "title", "status", "publisher", "description"} {
				if s, _ := m[k].(string); s == "" {
					t.Errorf("missing %s", k)
				}
			}
			if m["publisher"] != "ipsfhir" {
				t.Errorf("publisher %v", m["publisher"])
			}
			if st := m["status"]; st != "active" && st != "draft" {
				t.Errorf("status %v", st)
			}
			// Readers meet "IPS" in the HL7 International Patient Summary too.
			if d, _ := m["description"].(string); !strings.Contains(d, "Individual Placement and Support") {
				t.Errorf("description does not say what IPS stands for")
			}
			// Pretty-printed with two spaces, so diffs of published files stay readable.
			var pretty bytes.Buffer
			if err := json.Indent(&pretty, a.Data, "", "  "); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(bytes.TrimSpace(pretty.Bytes()), bytes.TrimSpace(a.Data)) {
				t.Errorf("not pretty-printed with a two-space indent")
			}
		})
	}
}

func TestEveryCodeSystemHasItsValueSet(t *testing.T) {
	all, err := All()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range all {
		if a.ResourceType != "CodeSystem" {
			continue
		}
		vs, ok := ByURL(all, base+"/ValueSet/"+a.ID)
		if !ok {
			t.Errorf("%s: no ValueSet %s", a.Path, a.ID)
			continue
		}
		if !bytes.Contains(vs.Data, []byte(`"system": "`+a.URL+`"`)) {
			t.Errorf("%s does not include %s", vs.Path, a.URL)
		}
	}
}

func TestByURLIgnoresVersion(t *testing.T) {
	all, err := All()
	if err != nil {
		t.Fatal(err)
	}
	a, ok := ByURL(all, base+"/StructureDefinition/ips-goal|0.1.0")
	if !ok || a.ID != "ips-goal" {
		t.Fatalf("ByURL = %+v, %v", a, ok)
	}
	if _, ok := ByURL(all, base+"/StructureDefinition/nope"); ok {
		t.Fatal("found an artifact that does not exist")
	}
}

func TestLoadRejectsIDThatDoesNotMatchFileName(t *testing.T) {
	fsys := fstest.MapFS{
		"profiles/a.json": {Data: []byte(`{"resourceType":"StructureDefinition","id":"b"}`)},
	}
	if _, err := Load(fsys); err == nil {
		t.Fatal("Load accepted a file whose id differs from its name")
	}
}
