package deqmcheck

import (
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
)

// Profile is a loaded profile, ready to check reports.
type Profile struct {
	URL      string
	elements []*element
	byID     map[string]*element
	exts     map[string]*extensionDef
}

type element struct {
	id         string
	sliceName  string
	min        int
	max        string // "" when not constrained
	hasCard    bool
	types      []elemType
	fixedCode  *string
	patternSys *string // patternIdentifier.system
	binding    []string
	keys       []string // constraint keys
}

type elemType struct {
	code           string
	profiles       []string
	targetProfiles []string
}

// Properties of an element the checker knows. The first group it enforces,
// the second it reads as documentation.
var (
	enforced = []string{"path", "sliceName", "min", "max", "type", "fixedCode", "patternIdentifier", "binding", "constraint"}
	prose    = []string{"short", "definition", "requirements", "comment", "condition", "mustSupport"}
)

// targetTypes maps the target profiles of the References the profile
// constrains to the resource type they profile. A reference must name that
// type (by its type element or a relative reference); whether the target
// conforms to the profile cannot be checked without the target.
var targetTypes = map[string]string{
	"http://hl7.org/fhir/us/qicore/StructureDefinition/qicore-organization": "Organization",
}

// canonicalTargets are the target profiles of canonical elements: the
// canonical is checked as a string (and by deqm-0); the Measure it names is
// not read.
var canonicalTargets = []string{
	"http://hl7.org/fhir/uv/crmi/StructureDefinition/crmi-shareablemeasure",
}

// requiredCodes are the codes of the value sets of required bindings.
var requiredCodes = map[string][]string{
	// R4 MeasureReportStatus.
	"http://hl7.org/fhir/ValueSet/measure-report-status": {"complete", "pending", "error"},
}

// Load reads the profile's StructureDefinition (XML, as the IG source has
// it) and the StructureDefinitions (JSON) of extensions it slices in whose
// content should be checked too.
func Load(profilePath string, extensionPaths ...string) (*Profile, error) {
	data, err := os.ReadFile(profilePath)
	if err != nil {
		return nil, err
	}
	var root xnode
	if err := xml.Unmarshal(data, &root); err != nil {
		return nil, fmt.Errorf("deqmcheck: %s: %w", profilePath, err)
	}
	if root.XMLName.Local != "StructureDefinition" || root.child("type").value() != "MeasureReport" {
		return nil, fmt.Errorf("deqmcheck: %s is not a StructureDefinition of MeasureReport", profilePath)
	}
	p := &Profile{URL: root.child("url").value(), byID: map[string]*element{}, exts: map[string]*extensionDef{}}
	diff := root.child("differential")
	if diff == nil {
		return nil, errors.New("deqmcheck: the profile has no differential")
	}
	for _, xe := range diff.Children {
		e, err := readElement(xe)
		if err != nil {
			return nil, err
		}
		p.elements = append(p.elements, e)
		p.byID[e.id] = e
	}
	for _, path := range extensionPaths {
		d, err := loadExtension(path)
		if err != nil {
			return nil, err
		}
		p.exts[d.url] = d
	}
	return p, nil
}

func readElement(xe xnode) (*element, error) {
	e := &element{id: xe.attr("id")}
	if e.id == "" || xe.child("path") == nil {
		return nil, errors.New("deqmcheck: an element without an id or path")
	}
	for _, c := range xe.Children {
		name := c.XMLName.Local
		if !slices.Contains(enforced, name) && !slices.Contains(prose, name) {
			return nil, fmt.Errorf("deqmcheck: %s uses %s, which deqmcheck does not check", e.id, name)
		}
		switch name {
		case "sliceName":
			e.sliceName = c.value()
		case "min":
			if _, err := fmt.Sscan(c.value(), &e.min); err != nil {
				return nil, fmt.Errorf("deqmcheck: %s: min %q", e.id, c.value())
			}
			e.hasCard = true
		case "max":
			e.max = c.value()
			e.hasCard = true
		case "type":
			t := elemType{code: c.child("code").value()}
			for _, tc := range c.Children {
				switch tc.XMLName.Local {
				case "code":
				case "profile":
					t.profiles = append(t.profiles, tc.value())
				case "targetProfile":
					tp := tc.value()
					if _, ok := targetTypes[tp]; !ok && !slices.Contains(canonicalTargets, tp) {
						return nil, fmt.Errorf("deqmcheck: %s: target profile %s is not known to deqmcheck", e.id, tp)
					}
					t.targetProfiles = append(t.targetProfiles, tp)
				default:
					return nil, fmt.Errorf("deqmcheck: %s: type.%s is not checked", e.id, tc.XMLName.Local)
				}
			}
			e.types = append(e.types, t)
		case "fixedCode":
			v := c.value()
			e.fixedCode = &v
		case "patternIdentifier":
			if len(c.Children) != 1 || c.Children[0].XMLName.Local != "system" {
				return nil, fmt.Errorf("deqmcheck: %s: a patternIdentifier other than a system is not checked", e.id)
			}
			v := c.Children[0].value()
			e.patternSys = &v
		case "binding":
			strength, vs := c.child("strength").value(), c.child("valueSet").value()
			if strength == "required" {
				codes, ok := requiredCodes[vs]
				if !ok {
					return nil, fmt.Errorf("deqmcheck: %s: required binding to %s is not known to deqmcheck", e.id, vs)
				}
				e.binding = codes
			}
		case "constraint":
			key, expr := c.child("key").value(), c.child("expression").value()
			if want, ok := expressions[key]; !ok || want != expr {
				return nil, fmt.Errorf("deqmcheck: %s: constraint %s is not the one deqmcheck implements", e.id, key)
			}
			if sev := c.child("severity").value(); sev != "error" {
				return nil, fmt.Errorf("deqmcheck: %s: constraint %s has severity %q", e.id, key, sev)
			}
			e.keys = append(e.keys, key)
		}
	}
	if e.sliceName != "" && e.sliceURL() == "" {
		return nil, fmt.Errorf("deqmcheck: %s: only extension slices by profile are checked", e.id)
	}
	return e, nil
}

// sliceURL is the url of the extensions an extension slice holds.
func (e *element) sliceURL() string {
	if len(e.types) != 1 || e.types[0].code != "Extension" || len(e.types[0].profiles) != 1 {
		return ""
	}
	return e.types[0].profiles[0]
}

// Result is what Check found.
type Result struct {
	// Problems are violations: each names the element path and the rule.
	Problems []string
	// Empty lists the constraints whose expression evaluates to empty,
	// neither true nor false: FHIRPath's "implies" gives empty when its
	// right side does. deqm-6 does for a proportion group without a score
	// value. What a validator makes of it varies: one that converts empty
	// to false reports a failure.
	Empty []string
}

// Check checks one MeasureReport (JSON). A document that is not a JSON
// MeasureReport is one problem.
func (p *Profile) Check(data []byte) Result {
	var res Result
	var root map[string]any
	if err := json.Unmarshal(data, &root); err != nil || root["resourceType"] != "MeasureReport" {
		res.Problems = append(res.Problems, "not a JSON MeasureReport")
		return res
	}
	for _, e := range p.elements {
		nodes := p.nodes(root, e.id)
		if e.hasCard && strings.Contains(e.id, ".") {
			parentID := e.id[:strings.LastIndex(e.id, ".")]
			last := e.id[strings.LastIndex(e.id, ".")+1:]
			for _, parent := range p.nodes(root, parentID) {
				n := len(p.step([]node{parent}, last, e.id))
				if n < e.min {
					res.Problems = append(res.Problems, fmt.Sprintf("%s: %d of %s, at least %d required", parent.path, n, e.id, e.min))
				}
				if e.max != "" && e.max != "*" {
					var max int
					if _, err := fmt.Sscan(e.max, &max); err == nil && n > max {
						res.Problems = append(res.Problems, fmt.Sprintf("%s: %d of %s, at most %d allowed", parent.path, n, e.id, max))
					}
				}
			}
		}
		for _, n := range nodes {
			res.Problems = append(res.Problems, p.checkNode(e, n)...)
		}
		for _, key := range e.keys {
			for _, n := range nodes {
				switch constraints[key](root, n.v) {
				case falseV:
					res.Problems = append(res.Problems, fmt.Sprintf("%s: %s", n.path, key))
				case emptyV:
					res.Empty = append(res.Empty, fmt.Sprintf("%s: %s", n.path, key))
				}
			}
		}
	}
	return res
}

func (p *Profile) checkNode(e *element, n node) []string {
	var out []string
	bad := func(format string, args ...any) { out = append(out, n.path+": "+fmt.Sprintf(format, args...)) }
	s, isString := n.v.(string)
	if e.fixedCode != nil && s != *e.fixedCode {
		bad("not the fixed code %s", *e.fixedCode)
	}
	if e.patternSys != nil {
		if m, _ := n.v.(map[string]any); m["system"] != *e.patternSys {
			bad("identifier system is not %s", *e.patternSys)
		}
	}
	if e.binding != nil && !slices.Contains(e.binding, s) {
		bad("code not in the required value set")
	}
	for _, t := range e.types {
		for _, tp := range t.targetProfiles {
			if want, ok := targetTypes[tp]; ok && !names(n.v, want) {
				bad("does not refer to a %s (type or reference)", want)
			}
			if slices.Contains(canonicalTargets, tp) && !isString {
				bad("not a canonical")
			}
		}
		if d := p.exts[e.sliceURL()]; d != nil && e.sliceName != "" {
			for _, msg := range d.check(n.v) {
				bad("%s", msg)
			}
		}
	}
	return out
}

// names reports whether a Reference names resource type rt.
func names(v any, rt string) bool {
	m, _ := v.(map[string]any)
	if t, _ := m["type"].(string); t == rt {
		return true
	}
	ref, _ := m["reference"].(string)
	return strings.HasPrefix(ref, rt+"/")
}

// node is one instance of an element: its JSON value and where it is.
type node struct {
	v    any
	path string
}

// nodes finds the instances of the element with id (a path whose steps
// may name an extension slice: extension:scoring) in the report.
func (p *Profile) nodes(root map[string]any, id string) []node {
	segs := strings.Split(id, ".")
	cur := []node{{v: root, path: segs[0]}}
	for i := 1; i < len(segs); i++ {
		cur = p.step(cur, segs[i], strings.Join(segs[:i+1], "."))
	}
	return cur
}

// step goes from nodes to their children named by one id segment; idSoFar
// is the element id up to and including it (for a slice's url).
func (p *Profile) step(from []node, seg, idSoFar string) []node {
	name, slice, _ := strings.Cut(seg, ":")
	url := ""
	if slice != "" {
		e := p.byID[idSoFar]
		if e == nil {
			return nil
		}
		url = e.sliceURL()
	}
	var out []node
	for _, n := range from {
		obj, ok := n.v.(map[string]any)
		if !ok {
			continue
		}
		keys := []string{name}
		if name == "value[x]" {
			keys = nil
			for k := range obj {
				if strings.HasPrefix(k, "value") {
					keys = append(keys, k)
				}
			}
			slices.Sort(keys)
		}
		for _, k := range keys {
			val, present := obj[k]
			if !present {
				// A primitive with no value and only extensions (a
				// withheld count's _count) is present all the same.
				if val, present = obj["_"+k]; !present {
					continue
				}
			}
			items, isList := val.([]any)
			if !isList {
				items = []any{val}
			}
			for j, it := range items {
				if url != "" {
					if m, _ := it.(map[string]any); m["url"] != url {
						continue
					}
				}
				path := n.path + "." + k
				if isList {
					path = fmt.Sprintf("%s[%d]", path, j)
				}
				out = append(out, node{v: it, path: path})
			}
		}
	}
	return out
}

// xnode is an XML element of a StructureDefinition, read generically.
type xnode struct {
	XMLName  xml.Name
	Attrs    []xml.Attr `xml:",any,attr"`
	Children []xnode    `xml:",any"`
}

func (x *xnode) attr(name string) string {
	if x == nil {
		return ""
	}
	for _, a := range x.Attrs {
		if a.Name.Local == name {
			return a.Value
		}
	}
	return ""
}

func (x *xnode) value() string { return x.attr("value") }

func (x *xnode) child(name string) *xnode {
	if x == nil {
		return nil
	}
	for i := range x.Children {
		if x.Children[i].XMLName.Local == name {
			return &x.Children[i]
		}
	}
	return nil
}
