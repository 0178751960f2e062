package artifacts

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestQuestionnairesAreWellFormed checks what is particular to the
// Questionnaires; TestAllArtifactsAreWellFormed checks what every artifact
// must be (URL, version, metadata, IPS spelt out, two-space indent).
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
			if _, ok := ByURL(all, a.URL); !ok {
				t.Errorf("url %q is not in All", a.URL)
			}
			var m struct{ Status, Description string }
			if err := json.Unmarshal(a.Data, &m); err != nil {
				t.Fatal(err)
			}
			if m.Status != "active" {
				t.Errorf("status %q, want active", m.Status)
			}
			// The fidelity items' wording is not checked against the 2019
			// manual; the caveat must travel with the artifact.
			if strings.Contains(a.URL, "ips-fidelity-25") && !strings.Contains(m.Description, "[unconfirmed]") {
				t.Errorf("description lost its [unconfirmed] caveat")
			}
		})
	}
}
