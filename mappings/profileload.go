package mappings

// The loader of the profile layer: it walks each profile's base chain
// through the copies in conformance/baseprofiles and applies the
// differentials from the root-most base down onto one rule tree per profile
// (the "snapshot" the checker in profile.go needs), refusing what the
// checker cannot enforce and what a derived profile may not do to what it
// inherits. The package doc of profile.go lists what is understood.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/ipsfhir/ipsfhir/conformance/artifacts"
	"github.com/ipsfhir/ipsfhir/conformance/baseprofiles"

	"google.golang.org/protobuf/reflect/protoreflect"
)

// uncheckedBindings are the required bindings in the base profiles whose
// value sets ipsfhir does not have, and why. The loader refuses a required
// binding to any other value set it does not have, so a new base version
// cannot add one unnoticed; the checker warns where a coded value is present.
var uncheckedBindings = map[string]string{
	"http://phinvads.cdc.gov/fhir/ValueSet/2.16.840.1.114222.4.11.7186": "ODH occupation (Census 2010) value set, published by PHIN VADS in no FHIR package ipsfhir can copy",
	"http://phinvads.cdc.gov/fhir/ValueSet/2.16.840.1.114222.4.11.7901": "ODH occupation (ONET-SOC detail) value set, published by PHIN VADS in no FHIR package ipsfhir can copy",
	"http://phinvads.cdc.gov/fhir/ValueSet/2.16.840.1.114222.4.11.8065": "ODH occupation (Census 2018) value set, published by PHIN VADS in no FHIR package ipsfhir can copy",
	"http://phinvads.cdc.gov/fhir/ValueSet/2.16.840.1.114222.4.11.7187": "ODH industry (Census 2010) value set, published by PHIN VADS in no FHIR package ipsfhir can copy",
	"http://phinvads.cdc.gov/fhir/ValueSet/2.16.840.1.114222.4.11.7900": "ODH industry (NAICS detail) value set, published by PHIN VADS in no FHIR package ipsfhir can copy",
	"http://phinvads.cdc.gov/fhir/ValueSet/2.16.840.1.114222.4.11.8066": "ODH industry (Census 2018) value set, published by PHIN VADS in no FHIR package ipsfhir can copy",
	"http://phinvads.cdc.gov/fhir/ValueSet/2.16.840.1.114222.4.11.7613": "ODH supervisory level value set, published by PHIN VADS; ipsfhir writes no supervisory level",
	"http://terminology.hl7.org/ValueSet/v3-WorkScheduleODH":            "ODH work schedule value set, not copied: ipsfhir writes no work schedule component",
	"http://terminology.hl7.org/ValueSet/v3-WorkClassificationODH":      "ODH work classification value set, not copied: ipsfhir writes no work classification component",
}

// invariants are the constraints the checker evaluates, each in Go from the
// FHIRPath it names; a profile with a constraint of another key, or of this
// key with another expression, does not load.
var invariants = map[string]struct {
	expression string
	human      string
	holds      func(obj map[string]any) bool
}{
	"ips-careplan-1": {
		expression: "status = 'draft' or period.exists()",
		human:      "the enrollment period is present unless the plan is a draft (the client is referred and not yet enrolled)",
		holds: func(obj map[string]any) bool {
			return obj["status"] == "draft" || obj["period"] != nil
		},
	},
	"ips-careplan-2": {
		expression: "period.empty() or period.start.exists() or status = 'revoked'",
		human:      "the enrollment period has its start unless the plan was revoked before enrollment",
		holds: func(obj map[string]any) bool {
			p, _ := obj["period"].(map[string]any)
			return p == nil || p["start"] != nil || p["_start"] != nil || obj["status"] == "revoked"
		},
	},
	"us-core-6": {
		expression: "url.exists() or data.exists()",
		human:      "attachment url or data (or both) present",
		holds: func(obj map[string]any) bool {
			return obj["url"] != nil || obj["data"] != nil || obj["_url"] != nil || obj["_data"] != nil
		},
	},
	// US Core Provenance, on each agent. resolve() cannot be evaluated
	// without the referenced resource, so the agent counts as a
	// Practitioner or Device when its reference says so by its type
	// ("Practitioner/…", an absolute URL ending so) or by Reference.type:
	// stricter than FHIRPath, where resolve() of a reference by identifier
	// alone is empty and the constraint holds.
	"provenance-1": {
		expression: "who.exists((resolve() is Practitioner) or (resolve() is Device)) implies onBehalfOf.exists()",
		human:      "onBehalfOf SHALL be present when Provenance.agent.who is a Practitioner or Device",
		holds: func(obj map[string]any) bool {
			who, _ := obj["who"].(map[string]any)
			if who == nil || obj["onBehalfOf"] != nil {
				return true
			}
			typ, _ := who["type"].(string)
			ref, _ := who["reference"].(string)
			for _, t := range []string{"Practitioner", "Device"} {
				if typ == t || strings.HasPrefix(ref, t+"/") || strings.Contains(ref, "/"+t+"/") {
					return false
				}
			}
			return true
		},
	},
}

// codeSystem is a code system's codes and hierarchy. A fragment (the
// copied part of a large HL7 code system) can only back an is-a filter whose
// root it contains, with all that root's descendants.
type codeSystem struct {
	codes    map[string]bool
	parent   map[string]string
	complete bool
}

func (cs *codeSystem) descendantsOrSelf(root string) map[string]bool {
	out := map[string]bool{}
	for code := range cs.codes {
		for c := code; c != ""; c = cs.parent[c] {
			if c == root {
				out[code] = true
				break
			}
		}
	}
	return out
}

// sdSource is a StructureDefinition before it is built.
type sdSource struct {
	m       map[string]any
	where   string // file, for errors
	ours    bool
	version string // the package version (copies) or the profile's own
}

func (s *sdSource) str(k string) string { v, _ := s.m[k].(string); return v }

// loadProfilesWith reads code systems, value sets, extensions and profiles
// from a tree laid out like artifacts.FS, and the base definitions they
// derive from from a tree laid out like baseprofiles.FS.
func loadProfilesWith(fsys, bases fs.FS) (*profileSet, error) {
	all, err := artifacts.Load(fsys)
	if err != nil {
		return nil, err
	}
	ps := &profileSet{profiles: map[string]*structureDef{}, exts: map[string]*structureDef{},
		baseExts: map[string]*structureDef{}, bases: map[string]*structureDef{}, valueSets: map[string]*valueSet{}}
	codeSystems := map[string]*codeSystem{}
	byURL := map[string]*sdSource{}
	var ourSDs, baseSDs []*sdSource

	// The copies: code systems, value sets, then StructureDefinitions.
	for _, f := range baseprofiles.Files {
		m, err := baseprofiles.Read(bases, f.Path)
		if err != nil {
			return nil, fmt.Errorf("base %w", err)
		}
		url, _ := m["url"].(string)
		switch m["resourceType"] {
		case "CodeSystem":
			cs, err := loadCodeSystem(m, true)
			if err != nil {
				return nil, fmt.Errorf("base %s: %w", f.Path, err)
			}
			codeSystems[url] = cs
		case "ValueSet":
			vs, err := loadBaseValueSet(m, codeSystems)
			if err != nil {
				return nil, fmt.Errorf("base %s: %w", f.Path, err)
			}
			ps.valueSets[url] = vs
		case "StructureDefinition":
			src := &sdSource{m: m, where: "base " + f.Path, version: f.Version}
			if byURL[url] != nil {
				return nil, fmt.Errorf("base %s: %s defined twice", f.Path, url)
			}
			byURL[url] = src
			baseSDs = append(baseSDs, src)
		default:
			return nil, fmt.Errorf("base %s: resource type %v is not one the validator reads", f.Path, m["resourceType"])
		}
	}
	for _, a := range all {
		m, err := decodeJSON(a.Data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", a.Path, err)
		}
		obj, _ := m.(map[string]any)
		switch a.ResourceType {
		case "CodeSystem":
			cs, err := loadCodeSystem(obj, false)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", a.Path, err)
			}
			codeSystems[a.URL] = cs
		case "ValueSet":
			vs, err := loadValueSet(obj, codeSystems)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", a.Path, err)
			}
			ps.valueSets[a.URL] = vs
		case "StructureDefinition":
			src := &sdSource{m: obj, where: a.Path, ours: true, version: a.Version}
			if byURL[a.URL] != nil {
				return nil, fmt.Errorf("%s: %s defined twice", a.Path, a.URL)
			}
			byURL[a.URL] = src
			ourSDs = append(ourSDs, src)
		case "Measure", "Questionnaire", "CapabilityStatement":
			// Published for readers, not rules the validator applies.
		default:
			return nil, fmt.Errorf("%s: resource type %q is not a conformance artifact the validator reads", a.Path, a.ResourceType)
		}
	}
	// Extensions first: profiles slice them in.
	for _, group := range [][]*sdSource{baseSDs, ourSDs} {
		for _, src := range group {
			if src.str("type") != "Extension" {
				continue
			}
			sd, err := ps.build(src, byURL)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", src.where, err)
			}
			if src.ours {
				ps.exts[sd.url] = sd
			} else {
				ps.baseExts[sd.url] = sd
			}
		}
	}
	for _, group := range [][]*sdSource{baseSDs, ourSDs} {
		for _, src := range group {
			if src.str("type") == "Extension" {
				continue
			}
			sd, err := ps.build(src, byURL)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", src.where, err)
			}
			if src.ours {
				ps.profiles[sd.url] = sd
			} else {
				ps.bases[sd.url] = sd
			}
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

func loadCodeSystem(cs map[string]any, fragmentOK bool) (*codeSystem, error) {
	out := &codeSystem{codes: map[string]bool{}, parent: map[string]string{}}
	switch cs["content"] {
	case "complete":
		out.complete = true
	case "fragment":
		if !fragmentOK {
			return nil, fmt.Errorf("only complete code systems can back a required binding")
		}
	default:
		return nil, fmt.Errorf("only complete code systems can back a required binding")
	}
	var walk func(concepts any, parent string) error
	walk = func(concepts any, parent string) error {
		list, _ := concepts.([]any)
		for _, c := range list {
			m, _ := c.(map[string]any)
			code, _ := m["code"].(string)
			if code == "" {
				return fmt.Errorf("concept without a code")
			}
			if out.codes[code] {
				return fmt.Errorf("code %q defined twice", code)
			}
			out.codes[code] = true
			if parent != "" {
				out.parent[code] = parent
			}
			if err := walk(m["concept"], code); err != nil {
				return err
			}
		}
		return nil
	}
	if err := walk(cs["concept"], ""); err != nil {
		return nil, err
	}
	return out, nil
}

// loadValueSet reads one of the project's value sets: each includes whole
// code systems the project publishes, or listed codes of another system
// (ips-contact-mode: four v3 ParticipationMode codes).
func loadValueSet(vs map[string]any, codeSystems map[string]*codeSystem) (*valueSet, error) {
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
			if k != "system" && k != "concept" {
				return nil, fmt.Errorf("compose.include.%s is not supported: a value set includes whole code systems or listed codes", k)
			}
		}
		system, _ := m["system"].(string)
		if list, ok := m["concept"].([]any); ok {
			if system == "" || len(list) == 0 {
				return nil, fmt.Errorf("compose.include lists codes without a system, or no codes")
			}
			codes := map[string]bool{}
			for _, c := range list {
				cm, _ := c.(map[string]any)
				code, _ := cm["code"].(string)
				if code == "" {
					return nil, fmt.Errorf("compose.include.concept without a code")
				}
				codes[code] = true
			}
			out.codes[system] = codes
			continue
		}
		cs, ok := codeSystems[system]
		if !ok || !strings.HasPrefix(system, CanonicalBase+"/") {
			return nil, fmt.Errorf("includes code system %s, which the project does not publish", system)
		}
		out.codes[system] = cs.codes
	}
	return out, nil
}

// loadBaseValueSet reads a copied value set: includes of whole code systems
// (copied, complete), of listed codes, of an is-a filter on a copied code
// system, or of any filter on a code system not copied (which admits the
// whole system: checked by system only); excludes of listed codes.
func loadBaseValueSet(vs map[string]any, codeSystems map[string]*codeSystem) (*valueSet, error) {
	url, _ := vs["url"].(string)
	out := &valueSet{url: url, codes: map[string]map[string]bool{}, open: map[string]bool{}}
	compose, _ := vs["compose"].(map[string]any)
	add := func(system, code string) {
		if out.codes[system] == nil {
			out.codes[system] = map[string]bool{}
		}
		out.codes[system][code] = true
	}
	listed := func(m map[string]any) ([]string, error) {
		var codes []string
		list, _ := m["concept"].([]any)
		for _, c := range list {
			cm, _ := c.(map[string]any)
			code, _ := cm["code"].(string)
			if code == "" {
				return nil, fmt.Errorf("concept without a code")
			}
			codes = append(codes, code)
		}
		return codes, nil
	}
	for _, k := range sortedKeys(compose) {
		if k != "include" && k != "exclude" && k != "inactive" && k != "lockedDate" {
			return nil, fmt.Errorf("compose.%s is not supported", k)
		}
	}
	includes, _ := compose["include"].([]any)
	if len(includes) == 0 {
		return nil, fmt.Errorf("value set includes nothing")
	}
	for _, inc := range includes {
		m, _ := inc.(map[string]any)
		system, _ := m["system"].(string)
		if system == "" {
			return nil, fmt.Errorf("compose.include without a system is not supported")
		}
		_, hasConcept := m["concept"]
		filters, hasFilter := m["filter"].([]any)
		for _, k := range sortedKeys(m) {
			if k != "system" && k != "concept" && k != "filter" && k != "version" {
				return nil, fmt.Errorf("compose.include.%s is not supported", k)
			}
		}
		cs := codeSystems[system]
		switch {
		case hasConcept && hasFilter:
			return nil, fmt.Errorf("compose.include with both concept and filter is not supported")
		case hasConcept:
			codes, err := listed(m)
			if err != nil {
				return nil, err
			}
			for _, c := range codes {
				add(system, c)
			}
		case hasFilter && cs == nil:
			out.open[system] = true
		case hasFilter:
			if len(filters) != 1 {
				return nil, fmt.Errorf("compose.include.filter: exactly one filter is supported")
			}
			f, _ := filters[0].(map[string]any)
			root, _ := f["value"].(string)
			if f["property"] != "concept" || f["op"] != "is-a" || !cs.codes[root] {
				return nil, fmt.Errorf("compose.include.filter: only is-a on a concept of the copied code system is supported")
			}
			for c := range cs.descendantsOrSelf(root) {
				add(system, c)
			}
		default:
			if cs == nil || !cs.complete {
				return nil, fmt.Errorf("includes all of code system %s, which is not copied whole", system)
			}
			for c := range cs.codes {
				add(system, c)
			}
		}
	}
	excludes, _ := compose["exclude"].([]any)
	for _, exc := range excludes {
		m, _ := exc.(map[string]any)
		for _, k := range sortedKeys(m) {
			if k != "system" && k != "concept" {
				return nil, fmt.Errorf("compose.exclude.%s is not supported", k)
			}
		}
		system, _ := m["system"].(string)
		codes, err := listed(m)
		if err != nil || len(codes) == 0 {
			return nil, fmt.Errorf("compose.exclude must list codes")
		}
		for _, c := range codes {
			delete(out.codes[system], c)
		}
	}
	return out, nil
}

// Keys of StructureDefinition and ElementDefinition the loader accepts: the
// rules it enforces, and descriptive keys (names, texts, and mustSupport,
// which obliges systems rather than instances). The base profiles' own keys
// are read more loosely: what they say about documentation, mappings and
// the source tool is passed over, and what would constrain an instance is
// enforced or refused like ours.
var (
	sdKeys = setOf("resourceType", "id", "url", "version", "name", "title", "status", "experimental", "date",
		"publisher", "contact", "description", "purpose", "copyright", "jurisdiction", // descriptive
		"fhirVersion", "kind", "abstract", "context", "type", "baseDefinition", "derivation", "differential")
	baseSDKeys  = setOf("meta", "extension", "mapping", "keyword", "identifier", "useContext")
	elementKeys = setOf("id", "path", "sliceName", "short", "definition", "comment", "requirements", "mustSupport",
		"min", "max", "type", "binding", "slicing")
	baseElementKeys = setOf("isModifier", "isSummary", "isModifierReason", "base", "alias", "mapping",
		"extension", "condition", "constraint", "label")
	rootKeys     = setOf("id", "path", "short", "definition", "comment", "requirements")
	baseRootKeys = setOf("mustSupport", "mapping", "isModifier", "isSummary", "alias", "extension", "min", "max")
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

const coreSDPrefix = "http://hl7.org/fhir/StructureDefinition/"

// build walks src's base chain up to base R4 and applies the differentials
// from the root-most base down.
func (ps *profileSet) build(src *sdSource, byURL map[string]*sdSource) (*structureDef, error) {
	chain := []*sdSource{src}
	for cur := src; ; {
		baseURL, version, pinned := strings.Cut(cur.str("baseDefinition"), "|")
		if rest, ok := strings.CutPrefix(baseURL, coreSDPrefix); ok && !strings.Contains(rest, "/") {
			if rest != src.str("type") {
				return nil, fmt.Errorf("baseDefinition %s is not the base of type %s", baseURL, src.str("type"))
			}
			break
		}
		base := byURL[baseURL]
		switch {
		case base == nil:
			return nil, fmt.Errorf("base profile %s is neither published nor copied in conformance/baseprofiles", baseURL)
		case base.ours:
			return nil, fmt.Errorf("profiles deriving from the project's own profiles are not supported")
		case !pinned && cur.ours:
			return nil, fmt.Errorf("baseDefinition %s must pin the version (%s|%s)", baseURL, baseURL, base.version)
		case pinned && version != base.version:
			return nil, fmt.Errorf("baseDefinition pins %s|%s, but the copy in conformance/baseprofiles is version %s", baseURL, version, base.version)
		case base.str("type") != src.str("type"):
			return nil, fmt.Errorf("base profile %s constrains %s, not %s", baseURL, base.str("type"), src.str("type"))
		case len(chain) > 8:
			return nil, fmt.Errorf("base chain too long")
		}
		chain = append([]*sdSource{base}, chain...)
		cur = base
	}
	out := &structureDef{id: src.str("id"), url: src.str("url"), typ: src.str("type"), version: src.version}
	b := &treeBuilder{ps: ps, byID: map[string]*elemRule{}}
	for _, s := range chain {
		if err := b.apply(s, out); err != nil {
			if s != src {
				return nil, fmt.Errorf("base %s: %w", s.str("id"), err)
			}
			return nil, err
		}
		out.chain = append(out.chain, s.str("id"))
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

// apply adds one StructureDefinition's differential to the tree.
func (b *treeBuilder) apply(src *sdSource, out *structureDef) error {
	sd := src.m
	for _, k := range sortedKeys(sd) {
		if !sdKeys[k] && (src.ours || !baseSDKeys[k]) {
			return fmt.Errorf("StructureDefinition.%s is not supported by the profile checker", k)
		}
	}
	if src.str("fhirVersion") != "4.0.1" {
		return fmt.Errorf("fhirVersion must be 4.0.1")
	}
	if src.str("derivation") != "constraint" {
		return fmt.Errorf("only constraint profiles are supported")
	}
	if sd["abstract"] != false {
		return fmt.Errorf("abstract must be false")
	}
	var rootMD protoreflect.MessageDescriptor
	switch kind := src.str("kind"); {
	case kind == "resource":
		md, ok := resourceMessage(out.typ)
		if !ok {
			return fmt.Errorf("type %q is not an R4 resource", out.typ)
		}
		if _, ok := sd["context"]; ok {
			return fmt.Errorf("context is for extensions")
		}
		rootMD = md
	case kind == "complex-type" && out.typ == "Extension":
		rootMD = extensionMessage
	default:
		return fmt.Errorf("kind %q of type %q is not supported", kind, out.typ)
	}
	diff, _ := sd["differential"].(map[string]any)
	for _, k := range sortedKeys(diff) {
		if k != "element" {
			return fmt.Errorf("differential.%s is not supported", k)
		}
	}
	elements, _ := diff["element"].([]any)
	if len(elements) == 0 {
		return fmt.Errorf("empty differential")
	}
	b.src = src
	b.defined = map[string]bool{}
	for i, e := range elements {
		m, ok := e.(map[string]any)
		if !ok {
			return fmt.Errorf("differential.element[%d] is not an object", i)
		}
		if i == 0 {
			root, err := b.root(m, out.typ, rootMD)
			if err != nil {
				return fmt.Errorf("differential.element[0]: %w", err)
			}
			if out.root == nil {
				out.root = root
			}
			continue
		}
		if err := b.add(m); err != nil {
			id, _ := m["id"].(string)
			return fmt.Errorf("element %s: %w", id, err)
		}
	}
	return nil
}

// checkExtensionDefinition insists that an extension fixes its own url, so
// the extension found by url in an instance is the one the rules describe.
func checkExtensionDefinition(sd *structureDef) error {
	u := sd.root.child("url")
	if u == nil || len(u.values) != 1 || !u.values[0].fixed || u.values[0].value != sd.url {
		return fmt.Errorf("extension must fix Extension.url to its canonical URL")
	}
	return nil
}

type treeBuilder struct {
	ps      *profileSet
	byID    map[string]*elemRule
	src     *sdSource       // the differential being applied
	defined map[string]bool // ids it defined so far
}

func (b *treeBuilder) from() string { return b.src.str("id") }

func (b *treeBuilder) root(m map[string]any, typ string, md protoreflect.MessageDescriptor) (*elemRule, error) {
	for _, k := range sortedKeys(m) {
		// A profile of ours may add invariants on the whole resource
		// (ips-careplan's status-dependent period).
		if !rootKeys[k] && (b.src.ours || !baseRootKeys[k]) && (k != "constraint" || !b.src.ours) {
			return nil, fmt.Errorf("%s on the root element is not supported", k)
		}
	}
	if m["id"] != typ || m["path"] != typ {
		return nil, fmt.Errorf("the first element must be the root, %s", typ)
	}
	r, ok := b.byID[typ]
	if !ok {
		r = &elemRule{id: typ, name: typ, base: fhirElem{md: md, typ: typ}}
		b.byID[typ] = r
	}
	if err := readConstraints(m, r, b.from()); err != nil {
		return nil, err
	}
	return r, nil
}

// node returns the rule for an element id, creating rules for ids the
// differentials skipped (a profile may constrain Goal.description.text
// without listing Goal.description).
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
		if !elementKeys[k] && !isValueKey(k) && (b.src.ours || !baseElementKeys[k]) {
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
	if b.defined[id] {
		return fmt.Errorf("defined twice")
	}
	b.defined[id] = true
	i := strings.LastIndexByte(id, '.')
	if i < 0 {
		return fmt.Errorf("second root element")
	}
	parentID, last := id[:i], id[i+1:]
	name, sliceName, isSlice := strings.Cut(last, ":")
	// A copied profile may spell the slice name in another case in its id
	// (ODH's odhIsCurrentJobExtension): the id's spelling is the one used.
	if sn, _ := m["sliceName"].(string); sn != sliceName && (b.src.ours || !strings.EqualFold(sn, sliceName)) {
		return fmt.Errorf("sliceName %q does not match the id", sn)
	}

	var r *elemRule
	if isSlice {
		if sliceName == "" || strings.Contains(sliceName, "/") {
			return fmt.Errorf("re-slicing and empty slice names are not supported")
		}
		if existing, ok := b.byID[id]; ok {
			r = existing // a base profile's slice, constrained here
		} else {
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
		}
	} else {
		existing, ok := b.byID[id]
		switch {
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

// rules reads an element's constraints into r, checking each against base R4
// and against what the base profiles already said about the element.
func (b *treeBuilder) rules(r *elemRule, m map[string]any) error {
	from := b.from()
	if v, ok := m["min"]; ok {
		n, err := cardinalityNumber(v)
		if err != nil {
			return fmt.Errorf("min: %w", err)
		}
		switch {
		case r.hasMin && n < r.min:
			return fmt.Errorf("min %d is below the min %d of base profile %s", n, r.min, r.minFrom)
		case !r.hasMin || n >= r.min: // the most derived profile that states it owns it
			r.min, r.hasMin, r.minFrom = n, true, from
		}
	}
	if v, ok := m["max"]; ok {
		s, _ := v.(string)
		n := -1
		if s != "*" {
			var err error
			n, err = strconv.Atoi(s)
			if err != nil || n < 0 {
				return fmt.Errorf("max %q is not a count or *", s)
			}
		}
		if !r.repeated() && (n < 0 || n > 1) {
			return fmt.Errorf("max above 1 on an element that does not repeat")
		}
		switch {
		case r.hasMax && r.max >= 0 && (n < 0 || n > r.max):
			return fmt.Errorf("max %s is above the max %d of base profile %s", s, r.max, r.maxFrom)
		case !r.hasMax || r.max < 0 || (n >= 0 && n <= r.max):
			r.max, r.hasMax, r.maxFrom = n, true, from
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
	var valueKey string
	for _, k := range sortedKeys(m) {
		v := m[k]
		if !isValueKey(k) {
			continue
		}
		if valueKey != "" {
			return fmt.Errorf("more than one pattern or fixed value")
		}
		valueKey = k
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
		r.values = append(r.values, valueRule{value: v, fixed: fixed, from: from})
	}
	if v, ok := m["binding"]; ok {
		if err := b.binding(r, v); err != nil {
			return fmt.Errorf("binding: %w", err)
		}
	}
	if v, ok := m["slicing"]; ok {
		if err := b.slicingOf(r, v); err != nil {
			return fmt.Errorf("slicing: %w", err)
		}
	}
	if v, ok := m["mustSupport"]; ok {
		ms, isBool := v.(bool)
		if !isBool {
			return fmt.Errorf("mustSupport is not a boolean")
		}
		if ms && !r.mustSupport {
			r.mustSupport, r.msFrom = true, from
		}
	}
	return readConstraints(m, r, from)
}

// readConstraints reads an element's constraints into r: each must be one
// of invariants, with the same expression.
func readConstraints(m map[string]any, r *elemRule, from string) error {
	if v, ok := m["constraint"]; ok {
		list, _ := v.([]any)
		for _, c := range list {
			cm, _ := c.(map[string]any)
			key, _ := cm["key"].(string)
			inv, known := invariants[key]
			if !known || cm["expression"] != inv.expression {
				return fmt.Errorf("constraint %s is not one the checker evaluates", key)
			}
			r.invariants = append(r.invariants, invariantRule{key: key, from: from})
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

// typeKeys are the keys of a type entry a base profile may use: a Reference's
// target profiles are not checked (that needs the target), and the
// type-must-support extensions oblige systems.
var baseTypeKeys = setOf("code", "targetProfile", "_targetProfile", "extension", "profile")

func (b *treeBuilder) types(r *elemRule, v any) error {
	list, _ := v.([]any)
	if len(list) == 0 {
		return fmt.Errorf("empty")
	}
	entry := func(t any) (string, []any, error) {
		tm, _ := t.(map[string]any)
		code, _ := tm["code"].(string)
		for _, k := range sortedKeys(tm) {
			if !baseTypeKeys[k] {
				return "", nil, fmt.Errorf("type.%s is not supported", k)
			}
		}
		if code == "" {
			return "", nil, fmt.Errorf("type without a code")
		}
		_, hasTarget := tm["targetProfile"]
		if hasTarget && code != "Reference" && code != "canonical" {
			return "", nil, fmt.Errorf("targetProfile on type %s", code)
		}
		profiles, _ := tm["profile"].([]any)
		return code, profiles, nil
	}
	if r.base.choices != nil {
		var types []string
		for _, t := range list {
			tm, _ := t.(map[string]any)
			code, profiles, err := entry(t)
			if err != nil {
				return err
			}
			if b.src.ours && len(tm) != 1 {
				return fmt.Errorf("a choice may only be restricted to type codes (no profiles)")
			}
			if len(profiles) > 0 {
				return fmt.Errorf("a type profile on a choice is not supported")
			}
			if _, ok := r.base.choice(code); !ok {
				return fmt.Errorf("%s is not a type this choice allows in base R4", code)
			}
			if slices.Contains(types, code) {
				return fmt.Errorf("%s listed twice", code)
			}
			types = append(types, code)
		}
		// A slice's element starts as the sliced element: its types are
		// bounded by those too.
		for _, bound := range []*elemRule{r, b.byID[stripSliceNames(r.id)]} {
			if bound == nil || len(bound.types) == 0 {
				continue
			}
			for _, t := range types {
				if !slices.Contains(bound.types, t) {
					return fmt.Errorf("%s is not among the types base profile %s allows", t, bound.typesFrom)
				}
			}
		}
		r.types, r.typesFrom = types, b.from()
		return nil
	}
	// An extension slice names its extension by a type profile. A copied
	// profile may also restate an element's own type (ODH does), with target
	// profiles on a Reference; nothing else may change or profile a type.
	if r.base.typ == "Extension" && r.sliceName != "" && len(list) == 1 {
		tm, _ := list[0].(map[string]any)
		profiles, _ := tm["profile"].([]any)
		if tm["code"] != "Extension" || len(tm) != 2 || len(profiles) != 1 {
			return fmt.Errorf("an extension slice needs exactly {code: Extension, profile: [url]}")
		}
		url, _ := profiles[0].(string)
		if url == "" {
			return fmt.Errorf("extension profile is not a URL")
		}
		url, _, _ = strings.Cut(url, "|")
		if strings.HasPrefix(url, CanonicalBase+"/") {
			if _, ok := b.ps.exts[url]; !ok {
				return fmt.Errorf("extension %s is not published by the project", url)
			}
		}
		if r.extURL != "" && r.extURL != url {
			return fmt.Errorf("extension slice names %s, but base profile names %s", url, r.extURL)
		}
		r.extURL = url
		return nil
	}
	if b.src.ours || len(list) != 1 {
		return fmt.Errorf("only choice elements and extension slices may state a type")
	}
	code, profiles, err := entry(list[0])
	if err != nil {
		return err
	}
	if code != r.base.typ || len(profiles) > 0 {
		return fmt.Errorf("type %s on an element of type %s", code, r.base.typ)
	}
	return nil
}

func (b *treeBuilder) binding(r *elemRule, v any) error {
	m, _ := v.(map[string]any)
	for _, k := range sortedKeys(m) {
		if k != "strength" && k != "valueSet" && k != "description" && (b.src.ours || k != "extension") {
			return fmt.Errorf("binding.%s is not supported", k)
		}
	}
	if m["strength"] != "required" {
		if b.src.ours {
			return fmt.Errorf("only required bindings are enforced, so only those may be published")
		}
		return nil // extensible, preferred and example bindings oblige no instance
	}
	url, _ := m["valueSet"].(string)
	url, _, _ = strings.Cut(url, "|")
	switch r.typ() {
	case "code", "Coding", "CodeableConcept":
	case "":
		return fmt.Errorf("a binding on a choice element needs the choice restricted to one type")
	default:
		return fmt.Errorf("binding on an element of type %q", r.typ())
	}
	if url == baseValueSet(r.base) {
		return nil // base R4 binds the code to the same value set, and jsonformat enforces it
	}
	vs, ok := b.ps.valueSets[url]
	switch {
	case ok:
		r.bindings = append(r.bindings, bindingRule{vs: vs, url: url, from: b.from()})
	case b.src.ours:
		return fmt.Errorf("value set %s is not published by the project", url)
	case uncheckedBindings[url] != "":
		r.unchecked = append(r.unchecked, bindingRule{url: url, from: b.from()})
	default:
		return fmt.Errorf("value set %s is neither copied in conformance/baseprofiles nor listed as unchecked", url)
	}
	return nil
}

func (b *treeBuilder) slicingOf(r *elemRule, v any) error {
	if !r.repeated() {
		return fmt.Errorf("element does not repeat")
	}
	m, _ := v.(map[string]any)
	s := &slicingRule{from: b.from()}
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
			s.typ, _ = d["type"].(string)
			s.path, _ = d["path"].(string)
			if s.typ != "pattern" && s.typ != "value" {
				return fmt.Errorf("discriminator type %q is not supported", s.typ)
			}
			if s.path == "" || strings.ContainsAny(s.path, "()[]$ ") && s.path != "$this" {
				return fmt.Errorf("discriminator path %q is not supported: use $this or child elements", s.path)
			}
			if s.path != "$this" {
				s.segs = strings.Split(s.path, ".")
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
		case "id":
			if b.src.ours {
				return fmt.Errorf("slicing.%s is not supported", k)
			}
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
	if old := r.slicing; old != nil {
		if old.typ != s.typ || old.path != s.path || (old.closed && !s.closed) {
			return fmt.Errorf("slices %s again by %s:%s, but base profile %s slices it by %s:%s; constrain the base profile's slices instead",
				r.id, s.typ, s.path, old.from, old.typ, old.path)
		}
		return nil
	}
	r.slicing = s
	return nil
}

// finish checks what can only be checked once the whole chain is applied:
// that every slice can be told apart by its element's discriminator, and
// that no two slices claim the same items.
func (b *treeBuilder) finish(r *elemRule) error {
	if len(r.slices) > 0 && r.slicing == nil {
		if r.base.typ != "Extension" {
			return fmt.Errorf("element %s: slices without slicing", r.id)
		}
		// FHIR slices extensions by url without saying so.
		r.slicing = &slicingRule{typ: "value", path: "url", segs: []string{"url"}}
	}
	if r.slicing != nil {
		if r.slicing.segs != nil && r.slicing.path != "url" {
			md := r.base.md
			for _, seg := range r.slicing.segs {
				e, ok := childElem(md, seg)
				if !ok || e.choices != nil || r.base.choices != nil {
					return fmt.Errorf("element %s: discriminator path %s is not a path of child elements", r.id, r.slicing.path)
				}
				md = e.md
			}
		}
		for i, s := range r.slices {
			d := discriminatorValue(r.slicing, s)
			if d == nil {
				return fmt.Errorf("slice %s has no value for discriminator %s", s.id, r.slicing.path)
			}
			if d != s && !d.hasValue() && len(d.bindings) == 0 && s.min > 0 {
				return fmt.Errorf("slice %s is required but told apart only by a binding ipsfhir cannot check", s.id)
			}
			for _, o := range r.slices[:i] {
				if sameDiscriminator(r.slicing, o, s) {
					return fmt.Errorf("slice %s duplicates slice %s (same %s); constrain that slice instead", s.id, o.id, r.slicing.path)
				}
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
// slice: the element at the discriminator path with a pattern, fixed value
// or required binding (found through that element's required slices, the
// way ODH fixes code.coding.code), or nil when there is none.
func discriminatorValue(s *slicingRule, slice *elemRule) *elemRule {
	decides := func(r *elemRule) bool {
		return r.hasValue() || len(r.bindings) > 0 || len(r.unchecked) > 0
	}
	switch s.path {
	case "$this":
		if decides(slice) {
			return slice
		}
		return nil
	case "url":
		if slice.extURL != "" {
			return slice
		}
	}
	var find func(node *elemRule, segs []string) *elemRule
	find = func(node *elemRule, segs []string) *elemRule {
		if len(segs) == 0 {
			if decides(node) {
				return node
			}
			return nil
		}
		c := node.child(segs[0])
		if c == nil {
			return nil
		}
		if d := find(c, segs[1:]); d != nil {
			return d
		}
		for _, cs := range c.slices {
			if cs.min >= 1 {
				if d := find(cs, segs[1:]); d != nil {
					return d
				}
			}
		}
		return nil
	}
	return find(slice, s.segs)
}

func sameDiscriminator(s *slicingRule, a, b *elemRule) bool {
	da, db := discriminatorValue(s, a), discriminatorValue(s, b)
	switch {
	case s.path == "url" && da == a && db == b:
		return a.extURL == b.extURL
	case len(da.values) > 0 && len(db.values) > 0:
		return jsonEqual(da.values[0].value, db.values[0].value)
	case len(da.values) == 0 && len(db.values) == 0:
		return len(da.bindings) > 0 && len(db.bindings) > 0 && da.bindings[0].url == db.bindings[0].url
	}
	return false
}
