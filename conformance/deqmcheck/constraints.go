package deqmcheck

import "strings"

// verdict is a FHIRPath boolean: true, false, or empty.
type verdict int

const (
	trueV verdict = iota
	falseV
	emptyV
)

func of(b bool) verdict {
	if b {
		return trueV
	}
	return falseV
}

// implies is FHIRPath's: false implies anything is true; true implies
// the right side; empty implies true is true, else empty.
func implies(a, b verdict) verdict {
	switch {
	case a == falseV, b == trueV:
		return trueV
	case a == trueV:
		return b
	}
	return emptyV
}

// The DEQM STU5 constraints deqmcheck implements, with the FHIRPath they
// implement: Load refuses a profile whose constraint of the same key says
// anything else.
var expressions = map[string]string{
	"deqm-0": `%resource.measure.toString().contains('|') and %resource.measure.substring(%resource.measure.toString().indexOf('|') + 1).length() > 0`,
	"deqm-1": `start.toString().length()>9 and end.toString().length()>9`,
	"deqm-2": `(extension('` + extScoring + `').exists() and extension('` + extScoring + `').value.coding.code in ('proportion' | 'ratio' | 'continuous-variable')) implies improvementNotation.exists()`,
	"deqm-3": `(extension('` + extScoring + `').exists() and group.extension('` + extScoring + `').empty()) xor (extension('` + extScoring + `').empty() and group.all(extension('` + extScoring + `').exists()))`,
	"deqm-4": `(extension('` + extScoring + `').exists() and extension('` + extScoring + `').value.coding.code in ('proportion' | 'ratio' | 'continuous-variable')) implies extension('` + extGroupImprovement + `').exists()`,
	"deqm-5": `(extension('` + extScoring + `').value.coding.code contains ('composite')).not()  or  (group.extension('` + extScoring + `').value.coding.code contains ('composite')).not() implies group.population.count()>=1`,
	"deqm-6": `(%resource.extension('` + extScoring + `').value.coding.code contains 'proportion' or extension('` + extScoring + `').value.coding.code contains 'proportion') implies (measureScore.value >= 0.0 and measureScore.value <= 1.0)`,
	"deqm-7": `code.exists() xor stratum.component.exists()`,
	"deqm-8": `extension('` + extCountQuantity + `').exists() xor count.exists()`,
	"deqm-9": `extension('` + extCountQuantity + `').exists() xor count.exists()`,
}

const (
	extScoring          = "http://hl7.org/fhir/us/davinci-deqm/StructureDefinition/extension-measureScoring"
	extGroupImprovement = "http://hl7.org/fhir/us/davinci-deqm/StructureDefinition/extension-groupImprovementNotation"
	extCountQuantity    = "http://hl7.org/fhir/StructureDefinition/measurereport-countQuantity"
)

// constraints evaluate each key on the report (root) at one instance of
// the element that carries it (focus).
var constraints = map[string]func(root map[string]any, focus any) verdict{
	"deqm-0": func(root map[string]any, _ any) verdict {
		m, _ := root["measure"].(string)
		_, version, ok := strings.Cut(m, "|")
		return of(ok && version != "")
	},
	"deqm-1": func(_ map[string]any, focus any) verdict {
		p := obj(focus)
		start, _ := p["start"].(string)
		end, _ := p["end"].(string)
		return of(len(start) > 9 && len(end) > 9)
	},
	"deqm-2": func(root map[string]any, _ any) verdict {
		codes := scoringCodes(root)
		return implies(of(len(codes) > 0 && anyIn(codes, "proportion", "ratio", "continuous-variable")), of(root["improvementNotation"] != nil))
	},
	"deqm-3": func(root map[string]any, _ any) verdict {
		onRoot := len(extensions(root, extScoring)) > 0
		onAny, onAll := false, true
		for _, g := range list(root["group"]) {
			has := len(extensions(obj(g), extScoring)) > 0
			onAny = onAny || has
			onAll = onAll && has
		}
		return of((onRoot && !onAny) != (!onRoot && onAll))
	},
	"deqm-4": func(_ map[string]any, focus any) verdict {
		g := obj(focus)
		codes := scoringCodes(g)
		return implies(of(len(codes) > 0 && anyIn(codes, "proportion", "ratio", "continuous-variable")), of(len(extensions(g, extGroupImprovement)) > 0))
	},
	"deqm-5": func(root map[string]any, _ any) verdict {
		var groupCodes []string
		pops := 0
		for _, g := range list(root["group"]) {
			groupCodes = append(groupCodes, scoringCodes(obj(g))...)
			pops += len(list(obj(g)["population"]))
		}
		notComposite := !anyIn(scoringCodes(root), "composite") || !anyIn(groupCodes, "composite")
		return implies(of(notComposite), of(pops >= 1))
	},
	"deqm-6": func(root map[string]any, focus any) verdict {
		g := obj(focus)
		proportion := anyIn(scoringCodes(root), "proportion") || anyIn(scoringCodes(g), "proportion")
		v, ok := obj(g["measureScore"])["value"].(float64)
		score := emptyV // a comparison with an empty value is empty
		if ok {
			score = of(v >= 0 && v <= 1)
		}
		return implies(of(proportion), score)
	},
	"deqm-7": func(_ map[string]any, focus any) verdict {
		s := obj(focus)
		components := false
		for _, st := range list(s["stratum"]) {
			components = components || len(list(obj(st)["component"])) > 0
		}
		return of((s["code"] != nil) != components)
	},
	"deqm-8": countXorQuantity,
	"deqm-9": countXorQuantity,
}

// countXorQuantity: a population has a count or a countQuantity, not both.
// A count with no value and only extensions (a withheld count's _count)
// exists: in FHIRPath a primitive with extensions is in the tree, which is
// why hasValue() exists.
func countXorQuantity(_ map[string]any, focus any) verdict {
	p := obj(focus)
	count := p["count"] != nil || p["_count"] != nil
	return of((len(extensions(p, extCountQuantity)) > 0) != count)
}

func obj(v any) map[string]any {
	m, _ := v.(map[string]any)
	return m
}

func list(v any) []any {
	l, _ := v.([]any)
	return l
}

func extensions(m map[string]any, url string) []map[string]any {
	var out []map[string]any
	for _, e := range list(m["extension"]) {
		if obj(e)["url"] == url {
			out = append(out, obj(e))
		}
	}
	return out
}

// scoringCodes are the codes of the measureScoring extensions on m.
func scoringCodes(m map[string]any) []string {
	var out []string
	for _, e := range extensions(m, extScoring) {
		for _, c := range list(obj(e["valueCodeableConcept"])["coding"]) {
			if code, ok := obj(c)["code"].(string); ok {
				out = append(out, code)
			}
		}
	}
	return out
}

func anyIn(codes []string, set ...string) bool {
	for _, c := range codes {
		for _, s := range set {
			if c == s {
				return true
			}
		}
	}
	return false
}
