package mappings

// The profile layer of the validator: the rule tree and the checker (the
// loader that builds the tree is in profileload.go). Each ipsfhir profile is
// checked with everything it inherits: the loader walks the profile's base chain (ODH, US
// Core, SDOH Clinical Care; copies in conformance/baseprofiles) and applies
// the differentials from the root-most base down to ours, onto one rule tree
// per profile (the "snapshot" the checker needs; base R4 itself is checked by
// the jsonformat layer). A derived differential may only tighten: raise a
// min, lower a max, narrow a choice's types, add values, bindings and slices,
// or constrain a base slice by its name; it may not slice an element again
// with another discriminator or add a slice that duplicates a base slice.
//
// The checker understands only the StructureDefinition features below and
// refuses to load a profile, ours or a base, that uses anything else, so the
// published rules and the enforced ones cannot drift apart silently:
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
//     forbids valueString), rules on the children of a choice restricted
//     to one type ("Observation.value[x].text"), and rules on one type of a
//     choice named by its JSON name ("Observation.valueCodeableConcept", as
//     ODH writes them). Reference target profiles are not checked: that needs
//     the target.
//   - required bindings: to the value sets the project publishes, to those
//     copied in conformance/baseprofiles (value sets that list codes, include
//     whole code systems or is-a a concept, and exclude codes; a filter on a
//     code system not copied, such as LOINC's document scale, admits every
//     code of that system, so that part is checked by system only), and, on
//     code elements, to the value set base R4 already enforces. A required
//     binding to a value set ipsfhir does not have (uncheckedBindings, each
//     with its reason) is reported as a warning where a coded value is
//     present. Other binding strengths oblige no instance.
//   - slicing with one discriminator of type "pattern" or "value" on $this,
//     a child element or a path of child elements ("code.coding.code"); the
//     slice's value is a fixed or pattern value at that path (found through
//     the element's own slices, as ODH states them) or a required binding
//     there. Extension slices by url (type Extension with one profile), with
//     or without an explicit slicing on the extension element. Slice min and
//     max are counted; a slice's own rules apply to the items matched to it,
//     the sliced element's rules to all items. Extensions the project
//     publishes or copies are checked against their own differential chain;
//     other extensions only by url and count.
//   - mustSupport is read and kept (Validator.MustSupportGaps lists the ones
//     an instance leaves out); it obliges systems, not instances, so it is
//     never an error.
//   - invariants: only those in invariants, each written in Go; a profile
//     with any other constraint does not load.

import (
	"encoding/json"
	"fmt"
	"math/big"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"

	apb "github.com/google/fhir/go/proto/google/fhir/proto/annotations_go_proto"
	dtpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/datatypes_go_proto"
	bcrpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/resources/bundle_and_contained_resource_go_proto"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// profileSet is everything the profile layer loaded.
type profileSet struct {
	profiles  map[string]*structureDef // the project's resource profiles by canonical URL
	exts      map[string]*structureDef // the project's extension definitions by canonical URL
	baseExts  map[string]*structureDef // copied extension definitions (ODH's)
	bases     map[string]*structureDef // copied resource profiles, each built with its own chain
	valueSets map[string]*valueSet     // by canonical URL, the project's and the copied ones

	// trace, when set (by tests, before use), hears of every rule that fires.
	trace func(profile, elementID, kind string)
}

// structureDef is one loaded profile: its rules as a tree, inherited ones
// included.
type structureDef struct {
	id, url, typ string
	version      string
	chain        []string // ids of the profiles applied, root-most base first, this one last
	root         *elemRule
}

// valueSet is a value set, reduced to the codes it admits.
type valueSet struct {
	url   string
	codes map[string]map[string]bool // system → code → true
	// open systems: a filter on a code system ipsfhir does not have; every
	// code of it is admitted (checked by system only).
	open map[string]bool
}

func (vs *valueSet) contains(system, code string) bool {
	return vs.codes[system][code] || (vs.open[system] && code != "")
}

func (vs *valueSet) containsCode(code string) bool {
	for _, codes := range vs.codes {
		if codes[code] {
			return true
		}
	}
	return false
}

// elemRule is one element of the profile, placed in a tree that mirrors the
// resource: children by element name, slices under the element they slice.
// Each rule remembers the profile that stated it (the "from" fields), so an
// issue names the profile whose rule was broken.
type elemRule struct {
	id        string // ElementDefinition.id
	name      string // JSON name; "value[x]" for a choice
	sliceName string
	base      fhirElem
	implicit  bool // created for a path no differential listed

	min, max         int // max < 0: unbounded
	hasMin, hasMax   bool
	minFrom, maxFrom string

	types     []string // allowed types of a choice element
	typesFrom string
	extURL    string // extension slice: the extension's canonical URL

	values      []valueRule // pattern[x] and fixed[x], all of which must hold
	bindings    []bindingRule
	unchecked   []bindingRule // required bindings to value sets ipsfhir does not have
	mustSupport bool
	msFrom      string
	invariants  []invariantRule

	slicing *slicingRule

	children []*elemRule
	slices   []*elemRule
}

type valueRule struct {
	value any // decoded JSON
	fixed bool
	from  string
}

type bindingRule struct {
	vs   *valueSet // nil in unchecked
	url  string
	from string
}

type invariantRule struct {
	key  string
	from string
}

func (r *elemRule) hasValue() bool { return len(r.values) > 0 }

// slicingRule is how a repeating element is sliced. Discriminators of type
// "pattern" and "value" match alike: an item belongs to a slice when the
// value at the discriminator path matches every pattern and fixed value the
// slice states there, or, when it states none, is in its required binding.
type slicingRule struct {
	typ    string   // "pattern" or "value"
	path   string   // "$this", "url", or child element names joined by "."
	segs   []string // path split; nil for $this
	closed bool
	from   string
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
	oneType  bool         // one type of a choice, named by its JSON name (valueQuantity)
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
	// One type of a choice, by its JSON name: valueCodeableConcept.
	for i := 0; i < fields.Len(); i++ {
		f := fields.Get(i)
		rest, ok := strings.CutPrefix(name, f.JSONName())
		if !ok || rest == "" || !isChoiceMessage(f.Message()) {
			continue
		}
		cf := f.Message().Fields()
		for j := 0; j < cf.Len(); j++ {
			c := cf.Get(j)
			if upperFirst(c.JSONName()) == rest {
				return fhirElem{md: c.Message(), typ: fhirTypeOf(c.Message()), oneType: true}, true
			}
		}
	}
	return fhirElem{}, false
}

// baseValueSet is the value set base R4 binds a code element to (and
// jsonformat enforces), or "".
func baseValueSet(e fhirElem) string {
	if e.md == nil || e.typ != "code" {
		return ""
	}
	u, _ := proto.GetExtension(e.md.Options(), apb.E_FhirValuesetUrl).(string)
	return u
}

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
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
	profile string // id of the profile applied, named in messages about inherited rules
	issues  []Issue
	// absentMS, when not nil, collects the must-support elements missing
	// under a present parent: element id → the profile that marks it.
	absentMS map[string]string
}

func (c *checker) add(code, path, msg string) {
	c.issues = append(c.issues, Issue{Severity: "error", Code: code, Path: path, Message: msg})
}

// by names the profile that stated a rule, and the profile being applied
// when that one inherited it.
func (c *checker) by(from string) string {
	if from == "" || from == c.profile {
		return "profile " + c.profile
	}
	return "profile " + from + " (inherited by " + c.profile + ")"
}

// fired tells a test which rule produced an issue, so the tests can prove
// every published rule is exercised by some fixture.
func (c *checker) fired(r *elemRule, kind, from string) {
	if c.ps.trace != nil {
		c.ps.trace(from, r.id, kind)
	}
}

// checkResource applies sd to the resource obj found at path.
func (ps *profileSet) checkResource(sd *structureDef, obj map[string]any, path string) []Issue {
	c := &checker{ps: ps, profile: sd.id}
	c.children(sd.root, obj, path)
	return c.issues
}

// absentMustSupport finds the must-support elements of sd (inherited ones
// included) that the resource obj leaves out, where their parent is
// present: element id → the profile that marks it.
func (ps *profileSet) absentMustSupport(sd *structureDef, obj map[string]any) map[string]string {
	c := &checker{ps: ps, profile: sd.id, absentMS: map[string]string{}}
	c.children(sd.root, obj, sd.typ)
	return c.absentMS
}

func (c *checker) children(r *elemRule, obj map[string]any, path string) {
	for _, ch := range r.children {
		c.element(ch, obj, path)
	}
	for _, inv := range r.invariants {
		if !invariants[inv.key].holds(obj) {
			c.fired(r, "invariant", inv.from)
			c.issues = append(c.issues, Issue{Severity: "error", Code: "invariant", Path: path,
				Message: fmt.Sprintf("constraint %s of %s: %s", inv.key, c.by(inv.from), invariants[inv.key].human)})
		}
	}
}

func (c *checker) element(r *elemRule, obj map[string]any, parentPath string) {
	items := collect(r, obj, parentPath)
	path := parentPath + "." + r.name
	c.cardinality(r, len(items), path)
	if c.absentMS != nil && r.mustSupport && len(items) == 0 {
		c.absentMS[r.id] = r.msFrom
	}
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
		c.fired(r, "min", r.minFrom)
		c.add("required", path, fmt.Sprintf("%sat least %d required by %s, found %d", what, r.min, c.by(r.minFrom), n))
	case r.hasMax && r.max == 0 && n > 0:
		c.fired(r, "max", r.maxFrom)
		c.add("structure", path, fmt.Sprintf("%snot allowed by %s", what, c.by(r.maxFrom)))
	case r.hasMax && r.max > 0 && n > r.max:
		c.fired(r, "max", r.maxFrom)
		c.add("structure", path, fmt.Sprintf("%sat most %d allowed by %s, found %d", what, r.max, c.by(r.maxFrom), n))
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
		c.fired(r, "type", r.typesFrom)
		c.add("structure", it.path, fmt.Sprintf("type %s not allowed here by %s (allowed: %s)", it.typ, c.by(r.typesFrom), strings.Join(r.types, ", ")))
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
			c.add("structure", it.path, fmt.Sprintf("item matches no slice of this element, and %s allows no others", c.by(r.slicing.from)))
		}
	}
	for i, s := range r.slices {
		c.cardinality(s, len(matched[i]), path)
		if c.absentMS != nil && s.mustSupport && len(matched[i]) == 0 {
			c.absentMS[s.id] = s.msFrom
		}
		c.apply(s, matched[i], path, true)
	}
}

func matchesSlice(s *slicingRule, slice *elemRule, v any) bool {
	d := discriminatorValue(s, slice)
	switch {
	case d == nil:
		return false
	case s.path == "url" && d == slice:
		obj, _ := v.(map[string]any)
		return obj["url"] == slice.extURL
	}
	vals := []any{v}
	if s.path != "$this" {
		vals = pathValues(v, s.segs)
	}
	return slices.ContainsFunc(vals, d.discriminates)
}

// pathValues evaluates a path of child element names on decoded JSON,
// flattening arrays.
func pathValues(v any, segs []string) []any {
	if len(segs) == 0 {
		if list, ok := v.([]any); ok {
			return list
		}
		if v == nil {
			return nil
		}
		return []any{v}
	}
	switch x := v.(type) {
	case []any:
		var out []any
		for _, e := range x {
			out = append(out, pathValues(e, segs)...)
		}
		return out
	case map[string]any:
		return pathValues(x[segs[0]], segs[1:])
	}
	return nil
}

// discriminates says whether v has the value the discriminator element
// states: every pattern and fixed value, or, with none, every binding.
func (r *elemRule) discriminates(v any) bool {
	if r.hasValue() {
		for _, vr := range r.values {
			if !vr.matches(v) {
				return false
			}
		}
		return true
	}
	if len(r.bindings) == 0 {
		return false // told apart only by a value set ipsfhir does not have
	}
	for _, b := range r.bindings {
		if !inValueSet(b.vs, r.typ(), v) {
			return false
		}
	}
	return true
}

// apply checks the element's own value rules and its children on the items
// that belong to it: all occurrences, or those matched to a slice.
func (c *checker) apply(r *elemRule, items []item, path string, isSlice bool) {
	if len(items) > 0 {
		for _, vr := range r.values {
			if r.repeated() && !isSlice {
				if !slices.ContainsFunc(items, func(it item) bool { return vr.matches(it.v) }) {
					c.fired(r, "value", vr.from)
					c.add("value", path, fmt.Sprintf("no item has the value %s requires (%s)", c.by(vr.from), describeValue(vr.value)))
				}
				continue
			}
			for _, it := range items {
				if !vr.matches(it.v) {
					c.fired(r, "value", vr.from)
					c.add("value", it.path, fmt.Sprintf("value differs from the one %s requires (%s)", c.by(vr.from), describeValue(vr.value)))
				}
			}
		}
	}
	for _, b := range r.bindings {
		for _, it := range items {
			if it.v != nil && !inValueSet(b.vs, r.typ(), it.v) {
				c.fired(r, "binding", b.from)
				c.add("code-invalid", it.path, fmt.Sprintf("code is not in value set %s, to which %s binds %s (required)", b.url, c.by(b.from), r.id))
			}
		}
	}
	for _, b := range r.unchecked {
		for _, it := range items {
			if it.v != nil {
				c.issues = append(c.issues, Issue{Severity: "warning", Code: "not-supported", Path: it.path,
					Message: fmt.Sprintf("not checked: %s binds %s (required) to value set %s, which ipsfhir does not have (%s)", c.by(b.from), r.id, b.url, uncheckedBindings[b.url])})
			}
		}
	}
	var ext *structureDef
	if r.extURL != "" {
		ext = c.ps.exts[r.extURL]
		if ext == nil {
			ext = c.ps.baseExts[r.extURL]
		}
	}
	for _, it := range items {
		obj, ok := it.v.(map[string]any)
		if !ok {
			continue
		}
		c.children(r, obj, it.path)
		if ext != nil {
			sub := &checker{ps: c.ps, profile: ext.id, absentMS: c.absentMS}
			sub.children(ext.root, obj, it.path)
			c.issues = append(c.issues, sub.issues...)
		}
	}
}

func (vr valueRule) matches(v any) bool {
	if vr.fixed {
		return jsonEqual(v, vr.value)
	}
	return matchesPattern(v, vr.value)
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
