package deqmcheck

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
)

// extensionDef is a simple extension's StructureDefinition: no nested
// extensions, a value of given types, optionally bound.
type extensionDef struct {
	url          string
	types        []string // value[x] type codes
	valueMin     int
	bindingCodes map[string][]string // system → codes, of an extensible or required binding
}

// extensionBindings are the codes of the value sets extension values are
// bound to, by value set and code system.
var extensionBindings = map[string]map[string][]string{
	// THO 4.0.0 CodeSystem measure-scoring, all of it.
	"http://terminology.hl7.org/ValueSet/measure-scoring": {
		"http://terminology.hl7.org/CodeSystem/measure-scoring": {"proportion", "ratio", "continuous-variable", "cohort", "composite", "attestation"},
	},
}

func loadExtension(path string) (*extensionDef, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var sd struct {
		ResourceType, URL, Type string
		Differential            struct {
			Element []struct {
				ID       string
				Min      *int
				Max      string
				FixedURI string
				Type     []struct{ Code string }
				Binding  *struct{ Strength, ValueSet string }
			}
		}
	}
	if err := json.Unmarshal(data, &sd); err != nil || sd.ResourceType != "StructureDefinition" || sd.Type != "Extension" {
		return nil, fmt.Errorf("deqmcheck: %s is not an extension's StructureDefinition", path)
	}
	d := &extensionDef{url: sd.URL}
	nested := true
	for _, e := range sd.Differential.Element {
		switch {
		case e.ID == "Extension.extension" && e.Max == "0":
			nested = false
		case e.ID == "Extension.url":
			if e.FixedURI != sd.URL {
				return nil, fmt.Errorf("deqmcheck: %s: url is not fixed to %s", path, sd.URL)
			}
		case e.ID == "Extension.value[x]":
			for _, t := range e.Type {
				d.types = append(d.types, t.Code)
			}
		case strings.HasPrefix(e.ID, "Extension.value"):
			if e.Min != nil {
				d.valueMin = *e.Min
			}
			if e.Binding != nil {
				codes, ok := extensionBindings[e.Binding.ValueSet]
				if !ok {
					return nil, fmt.Errorf("deqmcheck: %s: binding to %s is not known to deqmcheck", path, e.Binding.ValueSet)
				}
				d.bindingCodes = codes
			}
		default:
			return nil, fmt.Errorf("deqmcheck: %s: element %s is not checked", path, e.ID)
		}
	}
	if nested || len(d.types) == 0 {
		return nil, fmt.Errorf("deqmcheck: %s: only extensions with a value and no nested extensions are checked", path)
	}
	return d, nil
}

// check checks one instance of the extension.
func (d *extensionDef) check(v any) []string {
	m := obj(v)
	var out []string
	if m["extension"] != nil {
		out = append(out, "has nested extensions")
	}
	var values []string
	for k := range m {
		if strings.HasPrefix(k, "value") {
			values = append(values, k)
		}
	}
	if len(values) < d.valueMin || len(values) > 1 {
		out = append(out, fmt.Sprintf("%d values, want %d to 1", len(values), d.valueMin))
	}
	for _, k := range values {
		ty := strings.TrimPrefix(k, "value")
		if !slices.ContainsFunc(d.types, func(t string) bool { return strings.EqualFold(t, ty) }) {
			out = append(out, fmt.Sprintf("%s is not of the types %v", k, d.types))
			continue
		}
		if d.bindingCodes == nil {
			continue
		}
		// A CodeableConcept (the only bound type here): one of its
		// codings from the value set.
		ok := false
		for _, c := range list(obj(m[k])["coding"]) {
			sys, _ := obj(c)["system"].(string)
			code, _ := obj(c)["code"].(string)
			ok = ok || slices.Contains(d.bindingCodes[sys], code)
		}
		if !ok {
			out = append(out, k+" has no code from its value set")
		}
	}
	return out
}
