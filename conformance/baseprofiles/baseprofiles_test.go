package baseprofiles

import (
	"encoding/json"
	"io/fs"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// Files lists every copy, and every copy is listed: the validator reads the
// list, so a file left out of it would be dead weight, and one listed but
// missing would stop it.
func TestFilesListsEveryCopy(t *testing.T) {
	var embedded []string
	err := fs.WalkDir(FS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && !strings.HasSuffix(p, ".fsh") {
			embedded = append(embedded, p)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	var listed []string
	for _, f := range Files {
		listed = append(listed, f.Path)
		m, err := Read(FS(), f.Path)
		if err != nil {
			t.Errorf("%s: %v", f.Path, err)
			continue
		}
		if url, _ := m["url"].(string); url == "" {
			t.Errorf("%s: no url", f.Path)
		}
		if f.Package == "" || f.Version == "" {
			t.Errorf("%s: package or version missing", f.Path)
		}
	}
	slices.Sort(embedded)
	slices.Sort(listed)
	if !slices.Equal(embedded, listed) {
		t.Errorf("embedded %v\nlisted   %v", embedded, listed)
	}
	// SOURCES.md names every file.
	sources, err := os.ReadFile("SOURCES.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range Files {
		if !strings.Contains(string(sources), "`"+f.Path+"`") {
			t.Errorf("SOURCES.md does not name %s", f.Path)
		}
	}
}

func TestFromXML(t *testing.T) {
	got, err := FromXML([]byte(`<?xml version="1.0" encoding="UTF-8"?>
<StructureDefinition xmlns="http://hl7.org/fhir">
  <id value="x"/>
  <text><status value="generated"/><div xmlns="http://www.w3.org/1999/xhtml"><p>narrative</p></div></text>
  <abstract value="false"/>
  <type value="Observation"/>
  <differential>
    <element id="Observation.code">
      <path value="Observation.code"/>
      <min value="1"/>
      <mustSupport value="true"/>
      <type><code value="CodeableConcept"/></type>
    </element>
    <element id="Observation.subject">
      <path value="Observation.subject"/>
      <type><code value="Reference"/><targetProfile value="a"/><targetProfile value="b"/></type>
      <slicing id="1"><discriminator><type value="value"/><path value="url"/></discriminator></slicing>
    </element>
  </differential>
</StructureDefinition>`))
	if err != nil {
		t.Fatal(err)
	}
	var want map[string]any
	if err := json.Unmarshal([]byte(`{"resourceType": "StructureDefinition", "id": "x", "abstract": false, "type": "Observation",
		"differential": {"element": [
			{"id": "Observation.code", "path": "Observation.code", "min": 1, "mustSupport": true, "type": [{"code": "CodeableConcept"}]},
			{"id": "Observation.subject", "path": "Observation.subject", "type": [{"code": "Reference", "targetProfile": ["a", "b"]}],
			 "slicing": {"id": "1", "discriminator": [{"type": "value", "path": "url"}]}}]}}`), &want); err != nil {
		t.Fatal(err)
	}
	// json.Unmarshal gives float64 where FromXML gives json.Number.
	want["differential"].(map[string]any)["element"].([]any)[0].(map[string]any)["min"] = json.Number("1")
	if !reflect.DeepEqual(got, want) {
		g, _ := json.Marshal(got)
		t.Errorf("got %s", g)
	}

	for _, tc := range []struct{ name, xml, wantErr string }{
		{"not FHIR", `<StructureDefinition><id value="x"/></StructureDefinition>`, "FHIR namespace"},
		{"unknown repeat", `<StructureDefinition xmlns="http://hl7.org/fhir"><name value="a"/><name value="b"/></StructureDefinition>`, "name repeats"},
		{"bad min", `<StructureDefinition xmlns="http://hl7.org/fhir"><differential><element><min value="one"/></element></differential></StructureDefinition>`, "not an integer"},
		{"bad boolean", `<StructureDefinition xmlns="http://hl7.org/fhir"><abstract value="no"/></StructureDefinition>`, "not a boolean"},
		{"text content", `<StructureDefinition xmlns="http://hl7.org/fhir"><name>a</name></StructureDefinition>`, "text inside name"},
		{"unknown attribute", `<StructureDefinition xmlns="http://hl7.org/fhir"><name value="a" lang="en"/></StructureDefinition>`, "attribute lang"},
	} {
		if _, err := FromXML([]byte(tc.xml)); err == nil || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("%s: error %v, want one with %q", tc.name, err, tc.wantErr)
		}
	}
}
