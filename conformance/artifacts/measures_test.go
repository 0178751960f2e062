package artifacts

import (
	"bytes"
	"encoding/json"
	"testing"
)

// TestMeasuresAreWellFormed checks what is particular to the Measures;
// TestAllArtifactsAreWellFormed checks what every artifact must be.
func TestMeasuresAreWellFormed(t *testing.T) {
	ms, err := Measures()
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) == 0 {
		t.Fatal("no measures embedded")
	}
	all, err := All()
	if err != nil {
		t.Fatal(err)
	}
	const measurePopulation = "http://terminology.hl7.org/CodeSystem/measure-population"
	for _, a := range ms {
		t.Run(a.Path, func(t *testing.T) {
			if a.ResourceType != "Measure" {
				t.Errorf("resourceType %q in %s/", a.ResourceType, DirMeasures)
			}
			if _, ok := ByURL(all, a.URL); !ok {
				t.Errorf("url %q is not in All", a.URL)
			}
			var m struct {
				Status string
				Group  []struct {
					Code struct {
						Coding []struct{ System, Code string }
					}
					Population []struct {
						Code struct {
							Coding []struct{ System, Code string }
						}
					}
					Stratifier []struct {
						Code struct {
							Coding []struct{ System, Code string }
						}
					}
				}
			}
			if err := json.Unmarshal(a.Data, &m); err != nil {
				t.Fatal(err)
			}
			if m.Status != "active" {
				t.Errorf("status %q, want active", m.Status)
			}
			// Group and stratifier codes come from the project's ips-outcome
			// code system, which must be published with them.
			outcome, ok := ByURL(all, base+"/CodeSystem/ips-outcome")
			if !ok {
				t.Fatal("code system ips-outcome is not published")
			}
			if len(m.Group) == 0 {
				t.Error("no group")
			}
			for _, g := range m.Group {
				codes := append([]struct{ System, Code string }{}, g.Code.Coding...)
				for _, s := range g.Stratifier {
					codes = append(codes, s.Code.Coding...)
				}
				for _, c := range codes {
					if c.System != outcome.URL || !bytes.Contains(outcome.Data, []byte(`"code": "`+c.Code+`"`)) {
						t.Errorf("code %s|%s is not in ips-outcome", c.System, c.Code)
					}
				}
				for _, p := range g.Population {
					if len(p.Code.Coding) != 1 || p.Code.Coding[0].System != measurePopulation {
						t.Errorf("population code %+v is not a measure-population code", p.Code.Coding)
					}
				}
			}
		})
	}
}
