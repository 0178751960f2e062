package artifacts

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func TestQuestionnairesAreWellFormed(t *testing.T) {
	qs, err := Questionnaires()
	if err != nil {
		t.Fatal(err)
	}
	if len(qs) == 0 {
		t.Fatal("no questionnaires embedded")
	}
	all, err := All()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range qs {
		t.Run(a.Path, func(t *testing.T) {
			if a.ResourceType != "Questionnaire" {
				t.Errorf("resourceType %q in %s/", a.ResourceType, DirQuestionnaires)
			}
			if want := base + "/Questionnaire/" + a.ID; a.URL != want {
				t.Errorf("url %q, want %q", a.URL, want)
			}
			if _, ok := ByURL(all, a.URL); !ok {
				t.Errorf("url %q is not in All", a.URL)
			}
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
			if m["publisher"] != "ipsfhir" || m["status"] != "active" {
				t.Errorf("publisher %v, status %v", m["publisher"], m["status"])
			}
			d, _ := m["description"].(string)
			if !strings.Contains(d, "Individual Placement and Support") {
				t.Errorf("description does not say what IPS stands for")
			}
			// The item wording is not checked against the 2019 manual; the
			// caveat must travel with the artifact.
			if !strings.Contains(d, "[unconfirmed]") {
				t.Errorf("description lost its [unconfirmed] caveat")
			}
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
