package mappings

// The profile layer of the validator: it reads the differentials of the
// StructureDefinitions published under conformance/artifacts and enforces
// them on a resource held as generic JSON. It understands only the
// StructureDefinition features listed below and refuses to load a profile that
// uses anything else, so the published profile and the enforced rules cannot
// drift apart silently:
//
//   - min and max on any element, counted per parent, array items counted;
//     max "0" forbids the element.
//   - pattern[x] (FHIR pattern semantics: every property in the pattern must
//     be present with the same value, and every array item in the pattern
//     must match some item of the instance's array) and fixed[x] (exact
//     equality). On a repeating element that is not a slice, at least one
//     item must match. This is more lenient than the FHIR rule (every item)
//     on purpose: profiles that need "this code among others" use slicing, as
//     ours do, so a real FHIR validator reads them the same way.
//   - type restriction of choice elements (value[x] limited to Quantity
//     forbids valueString), and rules on the children of a choice restricted
//     to one type ("Observation.value[x].text").
//   - required bindings to the value sets the project publishes, each of
//     which includes whole code systems the project publishes.
//   - slicing with one discriminator of type "pattern" or "value" on $this or
//     on a child element; extension slices by url (type Extension with one
//     profile), with or without an explicit slicing on the extension
//     element. Slice min and max are counted; a slice's own rules apply to
//     the items matched to it, the sliced element's rules to all items.
//     Extensions the project publishes are checked against their own
//     differential; other extensions only by url and count.
//
// Constraints inherited from the base profiles (US Core, ODH) are not
// re-checked: base R4 is, by the jsonformat layer, and the differential is.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"math/big"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/ipsfhir/ipsfhir/conformance/artifacts"

	apb "github.com/google/fhir/go/proto/google/fhir/proto/annotations_go_proto"
	dtpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/datatypes_go_proto"
	bcrpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/resources/bundle_and_contained_resource_go_proto"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// profileSet is everything the profile layer loaded from the artifacts.
type profileSet struct {
	profiles  map[string]*structureDef // resource profiles by canonical URL
	exts      map[string]*structureDef // extension definitions by canonical URL
	valueSets map[string]*valueSet     // by canonical URL

	// trace, when set (by tests, before use), hears of every rule that fires.
	trace func(profile, elementID, kind string)
}

// structureDef is one loaded StructureDefinition: its differential as a tree.
type structureDef struct {
	id, url, typ string
	root         *elemRule
}

// valueSet is a published value set, reduced to the codes it admits.
type valueSet struct {
	url   string
	codes map[string]map[string]bool // system → code → true
}

func (vs *valueSet) contains(system, code string) bool { return vs.codes[system][code] }

func (vs *valueSet) containsCode(code string) bool {
	for _, codes := range vs.codes {
		if codes[code] {
			return true
		}
	}
	return false
}

// elemRule is one element of a differential, placed in a tree that mirrors
// the resource: children by element name, slices under the element they slice.
type elemRule struct {
	id        string // ElementDefinition.id
	name      string // JSON name; "value[x]" for a choice
	sliceName string
	base      fhirElem
	implicit  bool // created for a path the differential did not list

	min, max       int // max < 0: unbounded
	hasMin, hasMax bool

	types  []string // allowed types of a choice element
	extURL string   // extension slice: the extension's canonical URL

	value    any // pattern[x] or fixed[x], decoded JSON
	hasValue bool
	fixed    bool // value is fixed[x], not pattern[x]

	binding *valueSet
	slicing *slicingRule

	children []*elemRule
	slices   []*elemRule
}

// slicingRule is how a repeating element is sliced. Discriminators of type
// "pattern" and "value" match alike: an item belongs to a slice when the
// discriminating value matches the slice's pattern (pattern semantics) or
// equals its fixed value.
type slicingRule struct {
	path   string // "$this", "url" or a child element name
	closed bool
}

// typ is the element's FHIR type once choices are resolved: a choice
// restricted to one type has that type, an unrestricted choice has none.
func (r *elemRule) typ() string {
	if r.base.choices == nil {
		return r.base.typ
	}
	if len(r.types) == 1 {
		return r.types[0]
	}
	return ""
}

func (r *elemRule) child(name string) *elemRule {
	for _, c := range r.children {
		if c.name == name {
			return c
		}
	}
	return nil
}

func (r *elemRule) repeated() bool { return r.base.repeated }

// fhirElem is what base R4 says an element is, read from google/fhir/go's R4
// protos, so element paths in a profile are checked against the real
// resource structure when the profile is loaded.
type fhirElem struct {
	md       protoreflect.MessageDescriptor // the element's type; a choice's oneof message
	repeated bool
	typ      string       // FHIR type code; "" for a choice
	choices  []choiceType // non-nil for a choice
}

type choiceType struct {
	typ    string // FHIR type code, e.g. "Quantity", "dateTime"
	suffix string // JSON key suffix, e.g. "Quantity", "DateTime"
	md     protoreflect.MessageDescriptor
}

func (e fhirElem) choice(typ string) (choiceType, bool) {
	for _, c := range e.choices {
		if c.typ == typ {
			return c, true
		}
	}
	return choiceType{}, false
}

// resourceMessages maps each R4 resource type to its proto message.
var resourceMessages = sync.OnceValue(func() map[string]protoreflect.MessageDescriptor {
	out := map[string]protoreflect.MessageDescriptor{}
	fields := (&bcrpb.ContainedResource{}).ProtoReflect().Descriptor().Oneofs().ByName("oneof_resource").Fields()
	for i := 0; i < fields.Len(); i++ {
		md := fields.Get(i).Message()
		out[string(md.Name())] = md
	}
	return out
})

func resourceMessage(typ string) (protoreflect.MessageDescriptor, bool) {
	md, ok := resourceMessages()[typ]
	return md, ok
}

var extensionMessage = (&dtpb.Extension{}).ProtoReflect().Descriptor()

func isChoiceMessage(md protoreflect.MessageDescriptor) bool {
	return md != nil && proto.HasExtension(md.Options(), apb.E_IsChoiceType)
}

// fhirTypeOf names the FHIR type a proto message stands for. Codes bound to a
// required value set are specialised enum messages without a structure
// definition URL; they are FHIR code.
func fhirTypeOf(md protoreflect.MessageDescriptor) string {
	if u, _ := proto.GetExtension(md.Options(), apb.E_FhirStructureDefinitionUrl).(string); u != "" {
		return u[strings.LastIndexByte(u, '/')+1:]
	}
	if k, _ := proto.GetExtension(md.Options(), apb.E_StructureDefinitionKind).(apb.StructureDefinitionKindValue); k == apb.StructureDefinitionKindValue_KIND_PRIMITIVE_TYPE {
		return "code"
	}
	return "BackboneElement"
}

func isPrimitiveType(typ string) bool {
	return typ != "" && typ[0] >= 'a' && typ[0] <= 'z'
}

// childElem resolves the element called name (JSON name, or "x[x]" for a
// choice) of a complex type.
func childElem(parent protoreflect.MessageDescriptor, name string) (fhirElem, bool) {
	base, isChoice := strings.CutSuffix(name, "[x]")
	fields := parent.Fields()
	for i := 0; i < fields.Len(); i++ {
		f := fields.Get(i)
		if f.JSONName() != base || f.Message() == nil {
			continue
		}
		md := f.Message()
		if isChoiceMessage(md) != isChoice {
			return fhirElem{}, false
		}
		e := fhirElem{md: md, repeated: f.Cardinality() == protoreflect.Repeated}
		if !isChoice {
			e.typ = fhirTypeOf(md)
			return e, true
		}
		cf := md.Fields()
		e.choices = []choiceType{}
		for j := 0; j < cf.Len(); j++ {
			c := cf.Get(j)
			e.choices = append(e.choices, choiceType{typ: fhirTypeOf(c.Message()), suffix: upperFirst(c.JSONName()), md: c.Message()})
		}
		return e, true
	}
	return fhirElem{}, false
}

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// loadProfiles reads code systems, value sets, extensions and profiles from a
// tree laid out like artifacts.FS.
func loadProfiles(fsys fs.FS) (*profileSet, error) {
	all, err := artifacts.Load(fsys)
	if err != nil {
		return nil, err
	}
	ps := &profileSet{profiles: map[string]*structureDef{}, exts: map[string]*structureDef{}, valueSets: map[string]*valueSet{}}
	codeSystems := map[string]map[string]bool{}
	for _, a := range all {
		m, err := decodeJSON(a.Data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", a.Path, err)
		}
		obj, _ := m.(map[string]any)
		switch a.ResourceType {
		case "CodeSystem":
			codes, err := loadCodeSystem(obj)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", a.Path, err)
			}
			codeSystems[a.URL] = codes
		case "ValueSet":
			vs, err := loadValueSet(obj, codeSystems)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", a.Path, err)
			}
			ps.valueSets[a.URL] = vs
		case "StructureDefinition":
			sd, err := ps.loadStructureDefinition(obj)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", a.Path, err)
			}
			if sd.typ == "Extension" {
				ps.exts[sd.url] = sd
			} else {
				ps.profiles[sd.url] = sd
			}
		case "Measure", "Questionnaire", "CapabilityStatement":
			// Published for readers, not rules the validator applies.
		default:
			return nil, fmt.Errorf("%s: resource type %q is not a conformance artifact the validator reads", a.Path, a.ResourceType)
		}
	}
	return ps, nil
}

// decodeJSON keeps numbers as json.Number so decimals compare exactly.
func decodeJSON(data []byte) (any, error) {
	d := json.NewDecoder(bytes.NewReader(data))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, err
	}
	if _, err := d.Token(); err != io.EOF {
		return nil, fmt.Errorf("data after the JSON value")
	}
	return v, nil
}

func loadCodeSystem(cs map[string]any) (map[string]bool, error) {
	if cs["content"] != "complete" {
		return nil, fmt.Errorf("only complete code systems can back a required binding")
	}
	codes := map[string]bool{}
	var walk func(concepts any) error
	walk = func(concepts any) error {
		list, _ := concepts.([]any)
		for _, c := range list {
			m, _ := c.(map[string]any)
			code, _ := m["code"].(string)
			if code == "" {
				return fmt.Errorf("concept without a code")
			}
			if codes[code] {
				return fmt.Errorf("code %q defined twice", code)
			}
			codes[code] = true
			if err := walk(m["concept"]); err != nil {
				return err
			}
		}
		return nil
	}
	if err := walk(cs["concept"]); err != nil {
		return nil, err
	}
	return codes, nil
}

func loadValueSet(vs map[string]any, codeSystems map[string]map[string]bool) (*valueSet, error) {
	url, _ := vs["url"].(string)
	out := &valueSet{url: url, codes: map[string]map[string]bool{}}
	compose, _ := vs["compose"].(map[string]any)
	for _, k := range sortedKeys(compose) {
		if k != "include" {
			return nil, fmt.Errorf("compose.%s is not supported: a value set includes whole code systems", k)
		}
	}
	includes, _ := compose["include"].([]any)
	if len(includes) == 0 {
		return nil, fmt.Errorf("value set includes nothing")
	}
	for _, inc := range includes {
		m, _ := inc.(map[string]any)
		for _, k := range sortedKeys(m) {
			if k != "system" {
				return nil, fmt.Errorf("compose.include.%s is not supported: a value set includes whole code systems", k)
			}
		}
		system, _ := m["system"].(string)
		codes, ok := codeSystems[system]
		if !ok {
			return nil, fmt.Errorf("includes code system %s, which the project does not publish", system)
		}
		out.codes[system] = codes
	}
	return out, nil
}

// Keys of StructureDefinition and ElementDefinition the loader accepts: the
// rules it enforces, and descriptive keys (names, texts, and mustSupport,
// which obliges systems rather than instances).
var (
	sdKeys = setOf("resourceType", "id", "url", "version", "name", "title", "status", "experimental", "date",
		"publisher", "contact", "description", "purpose", "copyright", "jurisdiction", // descriptive
		"fhirVersion", "kind", "abstract", "context", "type", "baseDefinition", "derivation", "differential")
	elementKeys = setOf("id", "path", "sliceName", "short", "definition", "comment", "requirements", "mustSupport",
		"min", "max", "type", "binding", "slicing")
	rootKeys = setOf("id", "path", "short", "definition", "comment", "requirements")
)

// sortedKeys makes load errors deterministic when a definition has several faults.
func sortedKeys(m map[string]any) []string { return slices.Sorted(maps.Keys(m)) }

func setOf(s ...string) map[string]bool {
	m := map[string]bool{}
	for _, k := range s {
		m[k] = true
	}
	return m
}

func (ps *profileSet) loadStructureDefinition(sd map[string]any) (*structureDef, error) {
	for _, k := range sortedKeys(sd) {
		if !sdKeys[k] {
			return nil, fmt.Errorf("StructureDefinition.%s is not supported by the profile checker", k)
		}
	}
	str := func(k string) string { s, _ := sd[k].(string); return s }
	out := &structureDef{id: str("id"), url: str("url"), typ: str("type")}
	if str("fhirVersion") != "4.0.1" {
		return nil, fmt.Errorf("fhirVersion must be 4.0.1")
	}
	if str("derivation") != "constraint" {
		return nil, fmt.Errorf("only constraint profiles are supported")
	}
	if sd["abstract"] != false {
		return nil, fmt.Errorf("abstract must be false")
	}
	var rootMD protoreflect.MessageDescriptor
	switch kind := str("kind"); {
	case kind == "resource":
		md, ok := resourceMessage(out.typ)
		if !ok {
			return nil, fmt.Errorf("type %q is not an R4 resource", out.typ)
		}
		if _, ok := sd["context"]; ok {
			return nil, fmt.Errorf("context is for extensions")
		}
		rootMD = md
	case kind == "complex-type" && out.typ == "Extension":
		rootMD = extensionMessage
	default:
		return nil, fmt.Errorf("kind %q of type %q is not supported", kind, out.typ)
	}
	diff, _ := sd["differential"].(map[string]any)
	for _, k := range sortedKeys(diff) {
		if k != "element" {
			return nil, fmt.Errorf("differential.%s is not supported", k)
		}
	}
	elements, _ := diff["element"].([]any)
	if len(elements) == 0 {
		return nil, fmt.Errorf("empty differential")
	}
	b := &treeBuilder{ps: ps, byID: map[string]*elemRule{}}
	for i, e := range elements {
		m, ok := e.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("differential.element[%d] is not an object", i)
		}
		if i == 0 {
			root, err := b.root(m, out.typ, rootMD)
			if err != nil {
				return nil, fmt.Errorf("differential.element[0]: %w", err)
			}
			out.root = root
			continue
		}
		if err := b.add(m); err != nil {
			id, _ := m["id"].(string)
			return nil, fmt.Errorf("element %s: %w", id, err)
		}
	}
	if err := b.finish(out.root); err != nil {
		return nil, err
	}
	if out.typ == "Extension" {
		if err := checkExtensionDefinition(out); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// checkExtensionDefinition insists that an extension fixes its own url, so
// the extension found by url in an instance is the one the rules describe.
func checkExtensionDefinition(sd *structureDef) error {
	u := sd.root.child("url")
	if u == nil || !u.hasValue || !u.fixed || u.value != sd.url {
		return fmt.Errorf("extension must fix Extension.url to its canonical URL")
	}
	return nil
}

type treeBuilder struct {
	ps   *profileSet
	byID map[string]*elemRule
}

func (b *treeBuilder) root(m map[string]any, typ string, md protoreflect.MessageDescriptor) (*elemRule, error) {
	for _, k := range sortedKeys(m) {
		if !rootKeys[k] {
			return nil, fmt.Errorf("%s on the root element is not supported", k)
		}
	}
	if m["id"] != typ || m["path"] != typ {
		return nil, fmt.Errorf("the first element must be the root, %s", typ)
	}
	r := &elemRule{id: typ, name: typ, base: fhirElem{md: md, typ: typ}}
	b.byID[typ] = r
	return r, nil
}

// node returns the rule for an element id, creating rules for ids the
// differential skipped (a profile may constrain Goal.description.text without
// listing Goal.description).
func (b *treeBuilder) node(id string) (*elemRule, error) {
	if r, ok := b.byID[id]; ok {
		return r, nil
	}
	i := strings.LastIndexByte(id, '.')
	if i < 0 {
		return nil, fmt.Errorf("element %s is outside the profiled type", id)
	}
	parentID, last := id[:i], id[i+1:]
	if strings.Contains(last, ":") {
		return nil, fmt.Errorf("slice %s must be defined before its children", id)
	}
	parent, err := b.node(parentID)
	if err != nil {
		return nil, err
	}
	r, err := b.newChild(parent, id, last)
	if err != nil {
		return nil, err
	}
	r.implicit = true
	return r, nil
}

func (b *treeBuilder) newChild(parent *elemRule, id, name string) (*elemRule, error) {
	md := parent.base.md
	if parent.base.choices != nil {
		if len(parent.types) != 1 {
			return nil, fmt.Errorf("%s: children of a choice element need the choice restricted to one type", id)
		}
		c, _ := parent.base.choice(parent.types[0])
		md = c.md
	}
	if isPrimitiveType(parent.typ()) {
		return nil, fmt.Errorf("%s: primitive %s has no children the checker knows", id, parent.typ())
	}
	base, ok := childElem(md, name)
	if !ok {
		return nil, fmt.Errorf("%s is not an element of base R4", id)
	}
	r := &elemRule{id: id, name: name, base: base}
	parent.children = append(parent.children, r)
	b.byID[id] = r
	return r, nil
}

func (b *treeBuilder) add(m map[string]any) error {
	for _, k := range sortedKeys(m) {
		if !elementKeys[k] && !isValueKey(k) {
			return fmt.Errorf("ElementDefinition.%s is not supported by the profile checker", k)
		}
	}
	id, _ := m["id"].(string)
	path, _ := m["path"].(string)
	if id == "" {
		return fmt.Errorf("element without id")
	}
	if want := stripSliceNames(id); path != want {
		return fmt.Errorf("path %q does not match the id (want %q)", path, want)
	}
	i := strings.LastIndexByte(id, '.')
	if i < 0 {
		return fmt.Errorf("second root element")
	}
	parentID, last := id[:i], id[i+1:]
	name, sliceName, isSlice := strings.Cut(last, ":")
	if sn, _ := m["sliceName"].(string); sn != sliceName {
		return fmt.Errorf("sliceName %q does not match the id", sn)
	}

	var r *elemRule
	if isSlice {
		if sliceName == "" || strings.Contains(sliceName, "/") {
			return fmt.Errorf("re-slicing and empty slice names are not supported")
		}
		if _, dup := b.byID[id]; dup {
			return fmt.Errorf("defined twice")
		}
		sliced, err := b.node(parentID + "." + name)
		if err != nil {
			return err
		}
		if !sliced.repeated() {
			return fmt.Errorf("cannot slice an element that does not repeat")
		}
		r = &elemRule{id: id, name: name, sliceName: sliceName, base: sliced.base}
		sliced.slices = append(sliced.slices, r)
		b.byID[id] = r
	} else {
		existing, ok := b.byID[id]
		switch {
		case ok && !existing.implicit:
			return fmt.Errorf("defined twice")
		case ok:
			existing.implicit = false
			r = existing
		default:
			parent, err := b.node(parentID)
			if err != nil {
				return err
			}
			if r, err = b.newChild(parent, id, name); err != nil {
				return err
			}
		}
	}
	return b.rules(r, m)
}

func stripSliceNames(id string) string {
	segs := strings.Split(id, ".")
	for i, s := range segs {
		segs[i], _, _ = strings.Cut(s, ":")
	}
	return strings.Join(segs, ".")
}

func isValueKey(k string) bool {
	return (strings.HasPrefix(k, "pattern") && len(k) > len("pattern")) || (strings.HasPrefix(k, "fixed") && len(k) > len("fixed"))
}

// rules reads an element's constraints into r, checking each against base R4.
func (b *treeBuilder) rules(r *elemRule, m map[string]any) error {
	if v, ok := m["min"]; ok {
		n, err := cardinalityNumber(v)
		if err != nil {
			return fmt.Errorf("min: %w", err)
		}
		r.min, r.hasMin = n, true
	}
	if v, ok := m["max"]; ok {
		s, _ := v.(string)
		switch s {
		case "*":
			r.max = -1
		default:
			n, err := strconv.Atoi(s)
			if err != nil || n < 0 {
				return fmt.Errorf("max %q is not a count or *", s)
			}
			r.max = n
		}
		r.hasMax = true
		if !r.repeated() && (r.max < 0 || r.max > 1) {
			return fmt.Errorf("max above 1 on an element that does not repeat")
		}
	}
	if r.hasMin && r.hasMax && r.max >= 0 && r.min > r.max {
		return fmt.Errorf("min above max")
	}
	if !r.repeated() && r.min > 1 {
		return fmt.Errorf("min above 1 on an element that does not repeat")
	}
	if v, ok := m["type"]; ok {
		if err := b.types(r, v); err != nil {
			return fmt.Errorf("type: %w", err)
		}
	}
	for _, k := range sortedKeys(m) {
		v := m[k]
		if !isValueKey(k) {
			continue
		}
		if r.hasValue {
			return fmt.Errorf("more than one pattern or fixed value")
		}
		fixed := strings.HasPrefix(k, "fixed")
		suffix := strings.TrimPrefix(strings.TrimPrefix(k, "pattern"), "fixed")
		typ := suffix
		if lower := strings.ToLower(suffix[:1]) + suffix[1:]; isPrimitiveName(lower) {
			typ = lower
		}
		if r.base.choices != nil && len(r.types) != 1 {
			return fmt.Errorf("%s on a choice element needs the choice restricted to one type", k)
		}
		if et := r.typ(); et != typ {
			return fmt.Errorf("%s on an element of type %q", k, et)
		}
		if isPrimitiveType(typ) {
			switch v.(type) {
			case string, bool, json.Number:
			default:
				return fmt.Errorf("%s must be a JSON primitive", k)
			}
		} else if _, ok := v.(map[string]any); !ok {
			return fmt.Errorf("%s must be a JSON object", k)
		}
		r.value, r.hasValue, r.fixed = v, true, fixed
	}
	if v, ok := m["binding"]; ok {
		if err := b.binding(r, v); err != nil {
			return fmt.Errorf("binding: %w", err)
		}
	}
	if v, ok := m["slicing"]; ok {
		if err := slicingOf(r, v); err != nil {
			return fmt.Errorf("slicing: %w", err)
		}
	}
	return nil
}

func cardinalityNumber(v any) (int, error) {
	n, ok := v.(json.Number)
	if !ok {
		return 0, fmt.Errorf("not a number")
	}
	i, err := strconv.Atoi(n.String())
	if err != nil || i < 0 {
		return 0, fmt.Errorf("not a non-negative integer")
	}
	return i, nil
}

var primitiveNames = setOf("base64Binary", "boolean", "canonical", "code", "date", "dateTime", "decimal", "id",
	"instant", "integer", "markdown", "oid", "positiveInt", "string", "time", "unsignedInt", "uri", "url", "uuid", "xhtml")

func isPrimitiveName(s string) bool { return primitiveNames[s] }

func (b *treeBuilder) types(r *elemRule, v any) error {
	list, _ := v.([]any)
	if len(list) == 0 {
		return fmt.Errorf("empty")
	}
	if r.base.choices != nil {
		for _, t := range list {
			tm, _ := t.(map[string]any)
			code, _ := tm["code"].(string)
			if len(tm) != 1 || code == "" {
				return fmt.Errorf("a choice may only be restricted to type codes (no profiles)")
			}
			if _, ok := r.base.choice(code); !ok {
				return fmt.Errorf("%s is not a type this choice allows in base R4", code)
			}
			if slices.Contains(r.types, code) {
				return fmt.Errorf("%s listed twice", code)
			}
			r.types = append(r.types, code)
		}
		return nil
	}
	// An extension slice names its extension by a type profile; nothing else
	// may change or profile an element's type.
	if r.base.typ != "Extension" || r.sliceName == "" || len(list) != 1 {
		return fmt.Errorf("only choice elements and extension slices may state a type")
	}
	tm, _ := list[0].(map[string]any)
	profiles, _ := tm["profile"].([]any)
	if tm["code"] != "Extension" || len(tm) != 2 || len(profiles) != 1 {
		return fmt.Errorf("an extension slice needs exactly {code: Extension, profile: [url]}")
	}
	url, _ := profiles[0].(string)
	if url == "" {
		return fmt.Errorf("extension profile is not a URL")
	}
	if strings.HasPrefix(url, CanonicalBase+"/") {
		if _, ok := b.ps.exts[url]; !ok {
			return fmt.Errorf("extension %s is not published by the project", url)
		}
	}
	r.extURL = url
	return nil
}

func (b *treeBuilder) binding(r *elemRule, v any) error {
	m, _ := v.(map[string]any)
	for _, k := range sortedKeys(m) {
		if k != "strength" && k != "valueSet" && k != "description" {
			return fmt.Errorf("binding.%s is not supported", k)
		}
	}
	if m["strength"] != "required" {
		return fmt.Errorf("only required bindings are enforced, so only those may be published")
	}
	url, _ := m["valueSet"].(string)
	vs, ok := b.ps.valueSets[url]
	if !ok {
		return fmt.Errorf("value set %s is not published by the project", url)
	}
	switch r.typ() {
	case "code", "Coding", "CodeableConcept":
	case "":
		return fmt.Errorf("a binding on a choice element needs the choice restricted to one type")
	default:
		return fmt.Errorf("binding on an element of type %q", r.typ())
	}
	r.binding = vs
	return nil
}

func slicingOf(r *elemRule, v any) error {
	if !r.repeated() {
		return fmt.Errorf("element does not repeat")
	}
	m, _ := v.(map[string]any)
	s := &slicingRule{}
	for _, k := range sortedKeys(m) {
		val := m[k]
		switch k {
		case "discriminator":
			list, _ := val.([]any)
			if len(list) != 1 {
				return fmt.Errorf("exactly one discriminator is supported")
			}
			d, _ := list[0].(map[string]any)
			if len(d) != 2 {
				return fmt.Errorf("discriminator needs type and path only")
			}
			discType, _ := d["type"].(string)
			s.path, _ = d["path"].(string)
			if discType != "pattern" && discType != "value" {
				return fmt.Errorf("discriminator type %q is not supported", discType)
			}
			if s.path == "" || strings.ContainsAny(s.path, ".()[]") {
				return fmt.Errorf("discriminator path %q is not supported: use $this or one child element", s.path)
			}
		case "rules":
			switch val {
			case "open":
			case "closed":
				s.closed = true
			default:
				return fmt.Errorf("rules %v is not supported", val)
			}
		case "ordered":
			if val != false {
				return fmt.Errorf("ordered slicing is not supported")
			}
		case "description":
		default:
			return fmt.Errorf("slicing.%s is not supported", k)
		}
	}
	if s.path == "" {
		return fmt.Errorf("no discriminator")
	}
	if s.path == "url" && r.base.typ != "Extension" {
		return fmt.Errorf("url discriminators are for extensions")
	}
	r.slicing = s
	return nil
}

// finish checks what can only be checked once the whole differential is read:
// that every slice can be told apart by its element's discriminator.
func (b *treeBuilder) finish(r *elemRule) error {
	if len(r.slices) > 0 && r.slicing == nil {
		if r.base.typ != "Extension" {
			return fmt.Errorf("element %s: slices without slicing", r.id)
		}
		// FHIR slices extensions by url without saying so.
		r.slicing = &slicingRule{path: "url"}
	}
	if r.slicing != nil {
		if r.slicing.path != "$this" && r.slicing.path != "url" {
			if _, ok := childElem(r.base.md, r.slicing.path); !ok || r.base.choices != nil {
				return fmt.Errorf("element %s: discriminator path %s is not a child element", r.id, r.slicing.path)
			}
		}
		for _, s := range r.slices {
			if discriminatorValue(r.slicing, s) == nil {
				return fmt.Errorf("slice %s has no value for discriminator %s", s.id, r.slicing.path)
			}
		}
	}
	for _, c := range r.children {
		if err := b.finish(c); err != nil {
			return err
		}
	}
	for _, s := range r.slices {
		if s.slicing != nil {
			return fmt.Errorf("slice %s: re-slicing is not supported", s.id)
		}
		if err := b.finish(s); err != nil {
			return err
		}
	}
	return nil
}

// discriminatorValue is the rule that decides whether an item belongs to a
// slice, or nil when the slice has none.
func discriminatorValue(s *slicingRule, slice *elemRule) *elemRule {
	switch s.path {
	case "$this":
		if slice.hasValue {
			return slice
		}
	case "url":
		if slice.extURL != "" {
			return slice
		}
		if c := slice.child("url"); c != nil && c.hasValue {
			return c
		}
	default:
		if c := slice.child(s.path); c != nil && c.hasValue && !c.repeated() {
			return c
		}
	}
	return nil
}

// ---------------------------------------------------------------- checking

// item is one occurrence of an element in an instance.
type item struct {
	v    any    // decoded JSON; nil for a primitive carried only by its _element
	path string // FHIRPath-like location
	typ  string // FHIR type; for a choice, the type its key names
}

// checker applies one profile to one resource and collects issues.
type checker struct {
	ps      *profileSet
	profile string // profile id, named in messages
	issues  []Issue
}

func (c *checker) add(code, path, msg string) {
	c.issues = append(c.issues, Issue{Severity: "error", Code: code, Path: path, Message: msg})
}

// fired tells a test which rule produced an issue, so the tests can prove
// every published rule is exercised by some fixture.
func (c *checker) fired(r *elemRule, kind string) {
	if c.ps.trace != nil {
		c.ps.trace(c.profile, r.id, kind)
	}
}

// checkResource applies sd to the resource obj found at path.
func (ps *profileSet) checkResource(sd *structureDef, obj map[string]any, path string) []Issue {
	c := &checker{ps: ps, profile: sd.id}
	c.children(sd.root, obj, path)
	return c.issues
}

func (c *checker) children(r *elemRule, obj map[string]any, path string) {
	for _, ch := range r.children {
		c.element(ch, obj, path)
	}
}

func (c *checker) element(r *elemRule, obj map[string]any, parentPath string) {
	items := collect(r, obj, parentPath)
	path := parentPath + "." + r.name
	c.cardinality(r, len(items), path)
	items = c.allowedTypes(r, items)
	if r.slicing != nil {
		c.sliced(r, items, path)
	}
	c.apply(r, items, path, false)
}

// collect finds the element's occurrences in obj. A primitive present only as
// "_name" (an extension without a value) still counts as present.
func collect(r *elemRule, obj map[string]any, parentPath string) []item {
	var out []item
	add := func(key, typ string) {
		v, hasV := obj[key]
		ext, hasExt := obj["_"+key]
		switch {
		case hasV && v != nil:
			if list, ok := v.([]any); ok {
				for i, e := range list {
					out = append(out, item{v: e, path: fmt.Sprintf("%s.%s[%d]", parentPath, key, i), typ: typ})
				}
				return
			}
			out = append(out, item{v: v, path: parentPath + "." + key, typ: typ})
		case hasExt && ext != nil:
			if list, ok := ext.([]any); ok {
				for i := range list {
					out = append(out, item{path: fmt.Sprintf("%s.%s[%d]", parentPath, key, i), typ: typ})
				}
				return
			}
			out = append(out, item{path: parentPath + "." + key, typ: typ})
		}
	}
	if r.base.choices == nil {
		add(r.name, r.base.typ)
		return out
	}
	prefix := strings.TrimSuffix(r.name, "[x]")
	for _, ct := range r.base.choices {
		add(prefix+ct.suffix, ct.typ)
	}
	return out
}

func (c *checker) cardinality(r *elemRule, n int, path string) {
	what := ""
	if r.sliceName != "" {
		what = "slice " + r.sliceName + ": "
	}
	switch {
	case r.hasMin && n < r.min:
		c.fired(r, "min")
		c.add("required", path, fmt.Sprintf("%sat least %d required by profile %s, found %d", what, r.min, c.profile, n))
	case r.hasMax && r.max == 0 && n > 0:
		c.fired(r, "max")
		c.add("structure", path, fmt.Sprintf("%snot allowed by profile %s", what, c.profile))
	case r.hasMax && r.max > 0 && n > r.max:
		c.fired(r, "max")
		c.add("structure", path, fmt.Sprintf("%sat most %d allowed by profile %s, found %d", what, r.max, c.profile, n))
	}
}

// allowedTypes reports occurrences of a choice in a type the profile rules
// out, and returns the rest.
func (c *checker) allowedTypes(r *elemRule, items []item) []item {
	if len(r.types) == 0 {
		return items
	}
	var ok []item
	for _, it := range items {
		if slices.Contains(r.types, it.typ) {
			ok = append(ok, it)
			continue
		}
		c.fired(r, "type")
		c.add("structure", it.path, fmt.Sprintf("type %s not allowed here by profile %s (allowed: %s)", it.typ, c.profile, strings.Join(r.types, ", ")))
	}
	return ok
}

// sliced assigns each item to the first slice whose discriminator it
// matches, then checks each slice's count and rules on its items.
func (c *checker) sliced(r *elemRule, items []item, path string) {
	matched := make([][]item, len(r.slices))
	for _, it := range items {
		found := false
		for i, s := range r.slices {
			if matchesSlice(r.slicing, s, it.v) {
				matched[i] = append(matched[i], it)
				found = true
				break
			}
		}
		if !found && r.slicing.closed {
			c.add("structure", it.path, fmt.Sprintf("item matches no slice of this element, and profile %s allows no others", c.profile))
		}
	}
	for i, s := range r.slices {
		c.cardinality(s, len(matched[i]), path)
		c.apply(s, matched[i], path, true)
	}
}

func matchesSlice(s *slicingRule, slice *elemRule, v any) bool {
	d := discriminatorValue(s, slice)
	switch {
	case d == nil:
		return false
	case s.path == "$this":
		return d.valueMatches(v)
	case s.path == "url" && d == slice:
		obj, _ := v.(map[string]any)
		return obj["url"] == slice.extURL
	default:
		obj, _ := v.(map[string]any)
		return d.valueMatches(obj[s.path])
	}
}

// apply checks the element's own value rules and its children on the items
// that belong to it: all occurrences, or those matched to a slice.
func (c *checker) apply(r *elemRule, items []item, path string, isSlice bool) {
	if r.hasValue && len(items) > 0 {
		if r.repeated() && !isSlice {
			if !slices.ContainsFunc(items, func(it item) bool { return r.valueMatches(it.v) }) {
				c.fired(r, "value")
				c.add("value", path, fmt.Sprintf("no item has the value profile %s requires (%s)", c.profile, describeValue(r.value)))
			}
		} else {
			for _, it := range items {
				if !r.valueMatches(it.v) {
					c.fired(r, "value")
					c.add("value", it.path, fmt.Sprintf("value differs from the one profile %s requires (%s)", c.profile, describeValue(r.value)))
				}
			}
		}
	}
	if r.binding != nil {
		for _, it := range items {
			if it.v != nil && !inValueSet(r.binding, r.typ(), it.v) {
				c.fired(r, "binding")
				c.add("code-invalid", it.path, fmt.Sprintf("code is not in value set %s, to which profile %s binds this element (required)", r.binding.url, c.profile))
			}
		}
	}
	var ext *structureDef
	if r.extURL != "" {
		ext = c.ps.exts[r.extURL]
	}
	for _, it := range items {
		obj, ok := it.v.(map[string]any)
		if !ok {
			continue
		}
		c.children(r, obj, it.path)
		if ext != nil {
			sub := &checker{ps: c.ps, profile: ext.id}
			sub.children(ext.root, obj, it.path)
			c.issues = append(c.issues, sub.issues...)
		}
	}
}

func (r *elemRule) valueMatches(v any) bool {
	if r.fixed {
		return jsonEqual(v, r.value)
	}
	return matchesPattern(v, r.value)
}

// matchesPattern is FHIR pattern matching on decoded JSON: every property of
// the pattern is in the instance with a matching value, and every item of a
// pattern array matches some item of the instance array.
func matchesPattern(v, pattern any) bool {
	switch p := pattern.(type) {
	case map[string]any:
		m, ok := v.(map[string]any)
		if !ok {
			return false
		}
		for k, pv := range p {
			if !matchesPattern(m[k], pv) {
				return false
			}
		}
		return true
	case []any:
		list, ok := v.([]any)
		if !ok {
			return false
		}
		for _, pv := range p {
			if !slices.ContainsFunc(list, func(e any) bool { return matchesPattern(e, pv) }) {
				return false
			}
		}
		return true
	default:
		return jsonEqual(v, pattern)
	}
}

// jsonEqual compares decoded JSON; numbers compare by value, so 35 equals 35.0.
func jsonEqual(a, b any) bool {
	an, aNum := a.(json.Number)
	bn, bNum := b.(json.Number)
	if aNum || bNum {
		if !aNum || !bNum {
			return false
		}
		x, ok1 := new(big.Rat).SetString(an.String())
		y, ok2 := new(big.Rat).SetString(bn.String())
		return ok1 && ok2 && x.Cmp(y) == 0
	}
	switch av := a.(type) {
	case map[string]any:
		bv, ok := b.(map[string]any)
		if !ok || len(av) != len(bv) {
			return false
		}
		for k := range av {
			if !jsonEqual(av[k], bv[k]) {
				return false
			}
		}
		return true
	case []any:
		bv, ok := b.([]any)
		if !ok || len(av) != len(bv) {
			return false
		}
		for i := range av {
			if !jsonEqual(av[i], bv[i]) {
				return false
			}
		}
		return true
	}
	return reflect.DeepEqual(a, b)
}

func inValueSet(vs *valueSet, typ string, v any) bool {
	codingIn := func(c any) bool {
		m, _ := c.(map[string]any)
		system, _ := m["system"].(string)
		code, _ := m["code"].(string)
		return vs.contains(system, code)
	}
	switch typ {
	case "code":
		s, _ := v.(string)
		return vs.containsCode(s)
	case "Coding":
		return codingIn(v)
	case "CodeableConcept":
		m, _ := v.(map[string]any)
		list, _ := m["coding"].([]any)
		return slices.ContainsFunc(list, codingIn)
	}
	return false
}

// describeValue renders a profile's pattern or fixed value for a message.
// It only ever renders profile data, never the instance's.
func describeValue(v any) string {
	switch x := v.(type) {
	case map[string]any:
		if coding, ok := x["coding"]; ok && len(x) == 1 {
			return describeValue(coding)
		}
		system, hasSystem := x["system"].(string)
		code, hasCode := x["code"].(string)
		if (hasSystem || hasCode) && len(x) <= 2 {
			switch {
			case hasSystem && hasCode:
				return system + "#" + code
			case hasSystem:
				return "a code from " + system
			default:
				return "code " + code
			}
		}
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		parts := make([]string, len(keys))
		for i, k := range keys {
			parts[i] = k + " " + describeValue(x[k])
		}
		return strings.Join(parts, ", ")
	case []any:
		parts := make([]string, len(x))
		for i, e := range x {
			parts[i] = describeValue(e)
		}
		return strings.Join(parts, " and ")
	case string:
		return strconv.Quote(x)
	default:
		return fmt.Sprint(x)
	}
}
