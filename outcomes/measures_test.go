package outcomes

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ipsfhir/ipsfhir/conformance/artifacts"
)

// The CQFM extensions of the Measures, as the IG defines them: the
// StructureDefinitions copied in testdata/outcomes/cqfm (SOURCES.md there).
type extensionDef struct {
	URL     string
	Context []struct{ Type, Expression string }
	// The value[x] types and binding of the differential.
	Types   []string
	Binding string
}

func loadExtensionDef(t *testing.T, name string) extensionDef {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "testdata", "outcomes", "cqfm", "StructureDefinition-"+name+".json"))
	if err != nil {
		t.Fatal(err)
	}
	var sd struct {
		URL          string
		Context      []struct{ Type, Expression string }
		Differential struct {
			Element []struct {
				ID      string
				Type    []struct{ Code string }
				Binding *struct{ Strength, ValueSet string }
			}
		}
	}
	if err := json.Unmarshal(data, &sd); err != nil {
		t.Fatal(err)
	}
	d := extensionDef{URL: sd.URL, Context: sd.Context}
	for _, e := range sd.Differential.Element {
		if e.ID != "Extension.value[x]" {
			continue
		}
		for _, ty := range e.Type {
			d.Types = append(d.Types, ty.Code)
		}
		if e.Binding != nil {
			d.Binding = e.Binding.Strength + " " + e.Binding.ValueSet
		}
	}
	if len(d.Types) == 0 {
		t.Fatalf("%s: no value[x] types", name)
	}
	return d
}

// extensionUse is one extension in a Measure: where (as a context
// expression such as Measure.group.population) and what.
type extensionUse struct {
	context, url, valueKey string
	value                  any
}

func extensionsOf(v any, path string) []extensionUse {
	var out []extensionUse
	switch x := v.(type) {
	case map[string]any:
		for k, val := range x {
			if k == "extension" {
				for _, e := range val.([]any) {
					em := e.(map[string]any)
					u := extensionUse{context: path, url: em["url"].(string)}
					for ek, ev := range em {
						if strings.HasPrefix(ek, "value") {
							u.valueKey, u.value = ek, ev
						}
					}
					out = append(out, u)
				}
				continue
			}
			out = append(out, extensionsOf(val, path+"."+k)...)
		}
	case []any:
		for _, e := range x {
			out = append(out, extensionsOf(e, path)...)
		}
	}
	return out
}

// Every CQFM extension a Measure uses is where the IG allows it, with the
// value type it defines and a code from its value set.
func TestMeasuresUseCQFMExtensionsAsDefined(t *testing.T) {
	defs := map[string]extensionDef{}
	for _, name := range []string{"cqfm-populationBasis", "cqfm-aggregateMethod", "cqfm-criteriaReference", "cqfm-scoringUnit"} {
		d := loadExtensionDef(t, name)
		defs[d.URL] = d
	}
	// The codes of the bindings. measure-aggregate-method (preferred):
	// http://terminology.hl7.org/CodeSystem/measure-aggregate-method, all
	// six codes. all-types (required): FHIRAllTypes, of which the Measures
	// use boolean and Observation, both in it.
	codes := map[string][]string{
		"preferred http://terminology.hl7.org/ValueSet/measure-aggregate-method": {"sum", "average", "median", "minimum", "maximum", "count"},
		"required http://hl7.org/fhir/ValueSet/all-types":                        {"boolean", "Observation"},
	}
	ms, err := artifacts.Measures()
	if err != nil {
		t.Fatal(err)
	}
	used := map[string]bool{}
	for _, a := range ms {
		var doc any
		if err := json.Unmarshal(a.Data, &doc); err != nil {
			t.Fatal(err)
		}
		for _, u := range extensionsOf(doc, "Measure") {
			d, ok := defs[u.url]
			if !ok {
				if strings.Contains(u.url, "cqfmeasures") {
					t.Errorf("%s: %s is not one of the CQFM extensions checked here", a.ID, u.url)
				}
				continue
			}
			used[u.url] = true
			if !slices.ContainsFunc(d.Context, func(c struct{ Type, Expression string }) bool {
				return c.Type == "element" && c.Expression == u.context
			}) {
				t.Errorf("%s: %s on %s, which is not one of its contexts %v", a.ID, u.url, u.context, d.Context)
			}
			if !slices.ContainsFunc(d.Types, func(ty string) bool { return u.valueKey == "value"+strings.ToUpper(ty[:1])+ty[1:] }) {
				t.Errorf("%s: %s has %s, want a value of type %v", a.ID, u.url, u.valueKey, d.Types)
			}
			if d.Binding != "" {
				want, ok := codes[d.Binding]
				if !ok {
					t.Fatalf("%s: binding %s is not known to this test", u.url, d.Binding)
				}
				if code, _ := u.value.(string); !slices.Contains(want, code) {
					t.Errorf("%s: %s code %v is not in %s", a.ID, u.url, u.value, d.Binding)
				}
			}
		}
	}
	for url := range defs {
		if !used[url] {
			t.Errorf("no Measure uses %s", url)
		}
	}
}

// The Measures say what measureDefs computes: each group's population
// basis, its ids (which the reports repeat), and for continuous variables
// the aggregate method and the population it aggregates; and the score
// units the reports write.
func TestMeasuresStateBasisMethodAndUnits(t *testing.T) {
	ms, err := artifacts.Measures()
	if err != nil {
		t.Fatal(err)
	}
	type ext struct {
		URL                  string
		ValueCode            string
		ValueString          string
		ValueCodeableConcept *struct {
			Coding []struct{ System, Code string }
		}
	}
	type measure struct {
		Extension []ext
		Group     []struct {
			ID         string
			Extension  []ext
			Population []struct {
				ID        string
				Extension []ext
				Code      struct{ Coding []struct{ Code string } }
			}
		}
	}
	byURL := map[string]measure{}
	for _, a := range ms {
		var m measure
		if err := json.Unmarshal(a.Data, &m); err != nil {
			t.Fatal(err)
		}
		byURL[a.URL] = m
	}
	only := func(es []ext, url string) (ext, int) {
		var found ext
		n := 0
		for _, e := range es {
			if e.URL == url {
				found, n = e, n+1
			}
		}
		return found, n
	}
	for _, def := range measureDefs {
		m := byURL[MeasureURL(def.id)]
		if len(m.Group) != len(def.groups) {
			t.Fatalf("%s: %d groups", def.id, len(m.Group))
		}
		// The score's unit, as the reports write it (a value of 0.5 for
		// rates, of a day for days; the currency of earnings comes from the
		// data, so those Measures name none).
		var wantUnit string
		if _, _, code := def.groups[0].scoreUnit(""); code != "" {
			wantUnit = systemUCUM + "|" + code
		}
		su, n := only(m.Extension, extCQFMScoringUnit)
		var gotUnit string
		if n == 1 && su.ValueCodeableConcept != nil && len(su.ValueCodeableConcept.Coding) == 1 {
			c := su.ValueCodeableConcept.Coding[0]
			gotUnit = c.System + "|" + c.Code
		}
		if gotUnit != wantUnit || (wantUnit == "" && n != 0) {
			t.Errorf("%s: scoring unit %q (%d), want %q", def.id, gotUnit, n, wantUnit)
		}
		for gi, gd := range def.groups {
			g := m.Group[gi]
			where := def.id + "/" + gd.code
			if g.ID != gd.code {
				t.Errorf("%s: group id %q", where, g.ID)
			}
			if b, n := only(g.Extension, extCQFMPopulationBasis); n != 1 || b.ValueCode != gd.basis {
				t.Errorf("%s: population basis %q (%d), want %q", where, b.ValueCode, n, gd.basis)
			}
			ids := map[string]string{}
			for _, p := range g.Population {
				code := p.Code.Coding[0].Code
				if p.ID != populationID(gd.code, code) {
					t.Errorf("%s: population %s has id %q", where, code, p.ID)
				}
				ids[code] = p.ID
				method, nm := only(p.Extension, extCQFMAggregateMethod)
				ref, nr := only(p.Extension, extCQFMCriteriaReference)
				if code != "measure-observation" {
					if nm+nr != 0 {
						t.Errorf("%s: %s has an aggregate method or criteria reference", where, code)
					}
					continue
				}
				if nm != 1 || method.ValueCode != gd.aggregateMethod() || method.ValueCode == "" {
					t.Errorf("%s: aggregate method %q (%d), want %q", where, method.ValueCode, nm, gd.aggregateMethod())
				}
				if nr != 1 || ref.ValueString != populationID(gd.code, PopulationMeasure) {
					t.Errorf("%s: criteria reference %q (%d), want the measure population", where, ref.ValueString, nr)
				}
			}
			if gd.aggregateMethod() != "" && ids["measure-observation"] == "" {
				t.Errorf("%s: a continuous-variable group without a measure-observation population", where)
			}
		}
	}
}

// The competitive employment Measure carries the IPS benchmarks as the
// source gives them, and says what they apply to; the other Measures do not
// borrow them.
func TestMeasuresCarryTheBenchmarksAsPublished(t *testing.T) {
	ms, err := artifacts.Measures()
	if err != nil {
		t.Fatal(err)
	}
	const faq = "http://ipsworks.nyspi.org/index.php/faq-items/as-an-ips-supervisor-how-would-i-know-if-my-program-was-performing-well/"
	for _, a := range ms {
		var m struct {
			Guidance        string
			RelatedArtifact []struct{ Type, URL string }
		}
		if err := json.Unmarshal(a.Data, &m); err != nil {
			t.Fatal(err)
		}
		cites := slices.ContainsFunc(m.RelatedArtifact, func(r struct{ Type, URL string }) bool { return r.URL == faq })
		switch a.ID {
		case MeasureCompetitiveEmployment:
			for _, s := range []string{"31% employment to meet the minimal standard", "41% to have achieved average performance",
				"50% to have demonstrated excellent performance", "mean across the 8 years was 47%", "13-state learning collaborative",
				"not to a specialist's caseload"} {
				if !strings.Contains(m.Guidance, s) {
					t.Errorf("%s: the guidance lacks %q", a.ID, s)
				}
			}
			if !cites {
				t.Errorf("%s: the benchmarks' source is not in relatedArtifact", a.ID)
			}
		case MeasureCompetitiveEmployment20h:
			if !strings.Contains(m.Guidance, "not for this measure") {
				t.Errorf("%s: does not say the benchmarks are not its own", a.ID)
			}
		case MeasureCaseloadSize:
			// The fidelity scale's staffing standard, as its source gives it,
			// and not an outcome benchmark.
			for _, s := range []string{"20 or fewer active clients", "full-time employment specialist", "no published IPS outcome benchmark"} {
				if !strings.Contains(m.Guidance, s) {
					t.Errorf("%s: the guidance lacks %q", a.ID, s)
				}
			}
			if strings.Contains(m.Guidance, "31%") || cites {
				t.Errorf("%s: quotes or cites the competitive employment benchmarks", a.ID)
			}
		default:
			if strings.Contains(m.Guidance, "31%") || cites || strings.Contains(m.Guidance, "with the IPS benchmarks") {
				t.Errorf("%s: quotes or cites the competitive employment benchmarks", a.ID)
			}
			if !strings.Contains(m.Guidance, "no published IPS benchmark") {
				t.Errorf("%s: guidance %q does not say it has no benchmark", a.ID, m.Guidance)
			}
		}
	}
}
