package mappings

// The validator: base R4 through google/fhir/go's validating unmarshaller,
// then the profiles a resource claims (profile.go), each with what it
// inherits from its base profiles (profileload.go): the project's, and the
// ODH, US Core and SDOH Clinical Care profiles copied in
// conformance/baseprofiles.
// Everything it reports may be shown to users and logged, so no message
// quotes the resource: values are patient data. Paths name elements only.

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/google/fhir/go/fhirversion"
	"github.com/google/fhir/go/jsonformat"

	"github.com/ipsfhir/ipsfhir/conformance/artifacts"
	"github.com/ipsfhir/ipsfhir/conformance/baseprofiles"

	"google.golang.org/protobuf/reflect/protoreflect"
)

// Issue is one finding about a resource. Severity is "error" or "warning";
// Code is a FHIR issue-type code ("structure", "required", "value",
// "code-invalid", "invariant", "not-supported", "processing"); Path is a
// FHIRPath-like expression ("Goal.target[0].measure", or inside a Bundle
// "Bundle.entry[3].resource.ofType(Goal).target[0].measure"). Message never
// quotes a value from the resource.
type Issue struct {
	Severity string `json:"severity"`
	Code     string `json:"code"`
	Path     string `json:"path,omitempty"`
	Message  string `json:"message"`
}

// Errors ValidateJSON returns when there is nothing to validate. They say
// nothing about the input's content.
var (
	ErrNotJSON     = errors.New("validate: input is not a JSON document")
	ErrNotResource = errors.New("validate: input is not a FHIR resource (a JSON object with a resourceType)")
)

// Validator validates FHIR R4 JSON against base R4 and the project's
// profiles. It is safe for concurrent use.
type Validator struct {
	um *jsonformat.Unmarshaller
	ps *profileSet
}

// maxNestingDepth bounds how deep the base layer follows nested JSON, so a
// hostile document cannot exhaust the stack. Real resources, even inside
// Bundles, stay far below it.
const maxNestingDepth = 64

// NewValidator loads the project's published profiles. It fails when a
// profile uses a StructureDefinition feature the checker does not enforce.
func NewValidator() (*Validator, error) { return newValidator(artifacts.FS()) }

func newValidator(fsys fs.FS) (*Validator, error) { return newValidatorWith(fsys, baseprofiles.FS()) }

// newValidatorWith reads the base definitions from bases (tests alter them).
func newValidatorWith(fsys, bases fs.FS) (*Validator, error) {
	um, err := jsonformat.NewUnmarshaller("UTC", fhirversion.R4)
	if err != nil {
		return nil, fmt.Errorf("validator: base R4 unmarshaller: %w", err)
	}
	um.MaxNestingDepth = maxNestingDepth
	ps, err := loadProfilesWith(fsys, bases)
	if err != nil {
		return nil, fmt.Errorf("validator: load profiles: %w", err)
	}
	return &Validator{um: um, ps: ps}, nil
}

// ValidateJSON checks one resource, or a Bundle and every resource in it,
// against base R4 and against each of the project's profiles named in a
// resource's meta.profile. It returns every issue found, nil when there are
// none. It returns an error only when data is not JSON or not a FHIR resource.
func (v *Validator) ValidateJSON(data []byte) ([]Issue, error) {
	doc, err := decodeJSON(data)
	if err != nil {
		return nil, ErrNotJSON
	}
	obj, ok := doc.(map[string]any)
	if !ok {
		return nil, ErrNotResource
	}
	if rt, _ := obj["resourceType"].(string); rt == "" {
		return nil, ErrNotResource
	}
	issues := v.baseR4(data, obj)
	issues = append(issues, v.profiled(obj, "")...)
	rt, _ := obj["resourceType"].(string)
	issues = append(issues, v.ps.publishedExtensions(obj, rt, true)...)
	return dedupe(issues), nil
}

// publishedExtensions checks every extension the project publishes wherever
// it appears, also where no profile slices it in (a MeasureReport's
// suppression threshold, say). It walks the resource at root and, for a
// Bundle, the resources of its entries.
func (ps *profileSet) publishedExtensions(v any, path string, root bool) []Issue {
	var issues []Issue
	switch x := v.(type) {
	case map[string]any:
		if _, nested := x["resourceType"]; nested && !root {
			// A Bundle entry or contained resource: named by its own type.
			rt, _ := x["resourceType"].(string)
			path = fmt.Sprintf("%s.ofType(%s)", path, rt)
		}
		for _, k := range sortedKeys(x) {
			val := x[k]
			if k == "extension" || k == "modifierExtension" {
				list, _ := val.([]any)
				for i, e := range list {
					em, _ := e.(map[string]any)
					url, _ := em["url"].(string)
					ep := fmt.Sprintf("%s.%s[%d]", path, k, i)
					if sd := ps.exts[url]; sd != nil {
						c := &checker{ps: ps, profile: sd.id}
						c.children(sd.root, em, ep)
						issues = append(issues, c.issues...)
					}
					issues = append(issues, ps.publishedExtensions(em, ep, false)...)
				}
				continue
			}
			issues = append(issues, ps.publishedExtensions(val, path+"."+k, false)...)
		}
	case []any:
		for i, e := range x {
			issues = append(issues, ps.publishedExtensions(e, fmt.Sprintf("%s[%d]", path, i), false)...)
		}
	}
	return issues
}

// dedupe drops repeated issues (an extension a profile slices in is also
// checked where it appears), keeping the first of each.
func dedupe(issues []Issue) []Issue {
	seen := map[Issue]bool{}
	out := issues[:0]
	for _, is := range issues {
		if !seen[is] {
			seen[is] = true
			out = append(out, is)
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// HasErrors reports whether any issue is an error, as opposed to a warning.
func HasErrors(issues []Issue) bool {
	return slices.ContainsFunc(issues, func(i Issue) bool { return i.Severity == "error" })
}

// ---------------------------------------------------------------- profiles

// profiled applies the profiles named in meta.profile to the resource at
// path ("" for the document's root) and recurses into Bundle entries.
func (v *Validator) profiled(obj map[string]any, path string) []Issue {
	rt, _ := obj["resourceType"].(string)
	if _, ok := resourceMessage(rt); !ok {
		return nil // base R4 already reports the unknown type
	}
	if path == "" {
		path = rt
	}
	var issues []Issue
	meta, _ := obj["meta"].(map[string]any)
	profiles, _ := meta["profile"].([]any)
	type claim struct {
		sd   *structureDef
		path string
	}
	var claims []claim
	applied := map[string]bool{}
	for i, p := range profiles {
		url, _ := p.(string)
		url, version, versioned := strings.Cut(url, "|")
		if applied[url] {
			continue
		}
		applied[url] = true
		ppath := fmt.Sprintf("%s.meta.profile[%d]", path, i)
		sd, ours := v.ps.profiles[url]
		if !ours {
			sd = v.ps.bases[url]
		}
		switch {
		case sd == nil:
			issues = append(issues, Issue{Severity: "warning", Code: "not-supported", Path: ppath,
				Message: "profile not known to ipsfhir; only base R4 checked"})
		case !ours && versioned && version != sd.version:
			issues = append(issues, Issue{Severity: "warning", Code: "not-supported", Path: ppath,
				Message: fmt.Sprintf("profile %s at a version ipsfhir does not have (it has %s); not checked", sd.id, sd.version)})
		case sd.typ != rt:
			issues = append(issues, Issue{Severity: "error", Code: "processing", Path: ppath,
				Message: fmt.Sprintf("profile %s is for %s resources, not %s", sd.id, sd.typ, rt)})
		default:
			claims = append(claims, claim{sd, ppath})
		}
	}
	// A claimed profile that another claimed profile derives from (a goal
	// claims ips-goal and SDOHCC Goal) is checked as part of that one.
	for _, c := range claims {
		covered := slices.ContainsFunc(claims, func(o claim) bool {
			return o.sd != c.sd && slices.Contains(o.sd.chain[:len(o.sd.chain)-1], c.sd.id)
		})
		if !covered {
			issues = append(issues, v.ps.checkResource(c.sd, obj, path)...)
		}
	}
	if rt == "Bundle" {
		entries, _ := obj["entry"].([]any)
		for i, e := range entries {
			em, _ := e.(map[string]any)
			res, _ := em["resource"].(map[string]any)
			ert, _ := res["resourceType"].(string)
			if _, ok := resourceMessage(ert); !ok {
				continue
			}
			issues = append(issues, v.profiled(res, fmt.Sprintf("%s.entry[%d].resource.ofType(%s)", path, i, ert))...)
		}
	}
	return issues
}

// MustSupportGaps lists, for every resource in data (a resource or a Bundle)
// that claims a profile ipsfhir has, the must-support elements of that
// profile, inherited ones included, that the resource leaves out where
// their parent element is present. Each is an "information" issue at the
// resource, naming the element and the profile that marks it. Must support
// obliges systems to populate an element when they have the data, not
// every instance to carry it, so none of these is an error; ipsfhir's own
// gaps, and why, are listed in docs/MAPPING.md. It returns an error only
// when data is not JSON or not a FHIR resource.
func (v *Validator) MustSupportGaps(data []byte) ([]Issue, error) {
	doc, err := decodeJSON(data)
	if err != nil {
		return nil, ErrNotJSON
	}
	obj, ok := doc.(map[string]any)
	if !ok {
		return nil, ErrNotResource
	}
	rt, _ := obj["resourceType"].(string)
	if rt == "" {
		return nil, ErrNotResource
	}
	var issues []Issue
	var walk func(obj map[string]any, path string)
	walk = func(obj map[string]any, path string) {
		rt, _ := obj["resourceType"].(string)
		meta, _ := obj["meta"].(map[string]any)
		profiles, _ := meta["profile"].([]any)
		seen := map[string]bool{}
		for _, p := range profiles {
			url, _ := p.(string)
			url, _, _ = strings.Cut(url, "|")
			sd := v.ps.profiles[url]
			if sd == nil {
				sd = v.ps.bases[url]
			}
			if sd == nil || sd.typ != rt {
				continue
			}
			gaps := v.ps.absentMustSupport(sd, obj)
			for _, id := range slices.Sorted(maps.Keys(gaps)) {
				if seen[id] {
					continue
				}
				seen[id] = true
				issues = append(issues, Issue{Severity: "information", Code: "informational", Path: path,
					Message: fmt.Sprintf("must-support element %s (profile %s) is absent", id, gaps[id])})
			}
		}
		if rt == "Bundle" {
			entries, _ := obj["entry"].([]any)
			for i, e := range entries {
				em, _ := e.(map[string]any)
				res, _ := em["resource"].(map[string]any)
				ert, _ := res["resourceType"].(string)
				if _, ok := resourceMessage(ert); ok {
					walk(res, fmt.Sprintf("%s.entry[%d].resource.ofType(%s)", path, i, ert))
				}
			}
		}
	}
	if _, ok := resourceMessage(rt); !ok {
		return nil, nil
	}
	walk(obj, rt)
	return issues, nil
}

// ---------------------------------------------------------------- base R4

// baseR4 runs google/fhir/go's validating unmarshaller over the whole
// document, Bundle entries included. Its parser stops at the first error in
// a subtree (an unknown field, a malformed value) and then skips validation;
// that is reported as found.
func (v *Validator) baseR4(data []byte, doc map[string]any) []Issue {
	rep := &baseReporter{}
	_, err := v.um.UnmarshalWithErrorReporter(data, rep)
	var found []baseFinding
	if err != nil {
		errs, ok := jsonformatErrors(err)
		if !ok {
			// An error of another kind may quote the input; say only where we are.
			return []Issue{{Severity: "error", Code: "structure", Path: rootOf(doc),
				Message: "base R4: the resource could not be read as FHIR R4 JSON"}}
		}
		for _, e := range errs {
			found = append(found, baseFinding{severity: "error", baseError: e})
		}
	}
	found = append(found, rep.found...)

	var issues []Issue
	unknownAt := map[string]bool{}
	for _, f := range found {
		switch {
		case f.details == "unknown field":
			// jsonformat names only the object holding the unknown member;
			// find the members, once per object.
			if !unknownAt[f.path] {
				unknownAt[f.path] = true
				issues = append(issues, unknownMembers(doc, f.path)...)
			}
		case f.details == "":
			issues = append(issues, Issue{Severity: f.severity, Code: "structure", Path: fhirPath(f.path),
				Message: "base R4: the resource is not valid FHIR R4 here"})
		default:
			issues = append(issues, baseIssue(f))
		}
	}
	return issues
}

func rootOf(doc map[string]any) string {
	rt, _ := doc["resourceType"].(string)
	if _, ok := resourceMessage(rt); ok {
		return rt
	}
	return ""
}

// baseError is what jsonformat says about an error: where, and a message it
// keeps free of patient data (its Diagnostics, which quote input, are never read).
type baseError struct{ path, details string }

type baseFinding struct {
	severity string
	baseError
}

// baseReporter collects what jsonformat's validation step reports; it keeps
// going after each finding so that all of them are reported.
type baseReporter struct{ found []baseFinding }

func (r *baseReporter) ReportValidationError(path string, err error) error {
	r.add("error", path, err)
	return nil
}

func (r *baseReporter) ReportValidationWarning(path string, err error) error {
	r.add("warning", path, err)
	return nil
}

func (r *baseReporter) add(severity, path string, err error) {
	e := baseError{path: path}
	if errs, ok := jsonformatErrors(err); ok && len(errs) == 1 {
		e = errs[0]
		if e.path == "" {
			e.path = path
		}
	}
	r.found = append(r.found, baseFinding{severity: severity, baseError: e})
}

// jsonformatErrors reads the Path and Details of jsonformat's error types.
// They live in an internal package, so no type assertion can name them;
// reflection reads the two exported fields we trust and nothing else.
func jsonformatErrors(err error) ([]baseError, bool) {
	v := reflect.ValueOf(err)
	one := func(v reflect.Value) (baseError, bool) {
		if v.Kind() == reflect.Interface {
			v = v.Elem()
		}
		if v.Kind() != reflect.Pointer || v.IsNil() || v.Elem().Kind() != reflect.Struct {
			return baseError{}, false
		}
		s := v.Elem()
		if s.Type().Name() != "UnmarshalError" {
			return baseError{}, false
		}
		p, d := s.FieldByName("Path"), s.FieldByName("Details")
		if p.Kind() != reflect.String || d.Kind() != reflect.String {
			return baseError{}, false
		}
		return baseError{path: p.String(), details: d.String()}, true
	}
	switch v.Kind() {
	case reflect.Slice:
		if v.Type().Name() != "UnmarshalErrorList" {
			return nil, false
		}
		out := make([]baseError, 0, v.Len())
		for i := 0; i < v.Len(); i++ {
			e, ok := one(v.Index(i))
			if !ok {
				return nil, false
			}
			out = append(out, e)
		}
		return out, true
	case reflect.Pointer:
		e, ok := one(v)
		if !ok {
			return nil, false
		}
		return []baseError{e}, true
	}
	return nil, false
}

var missingField = regexp.MustCompile(`^missing required field "([A-Za-z][A-Za-z0-9]*)"$`)

func baseIssue(f baseFinding) Issue {
	path := fhirPath(f.path)
	if m := missingField.FindStringSubmatch(f.details); m != nil && m[1] != "resourceType" {
		return Issue{Severity: f.severity, Code: "required", Path: joinPath(path, m[1]), Message: "base R4: required element is missing"}
	}
	msg := f.details
	// The one detail that carries a character of the input.
	if strings.HasPrefix(msg, "string contains invalid characters") {
		msg = "string contains invalid characters"
	}
	return Issue{Severity: f.severity, Code: baseIssueCode(f.details), Path: path, Message: "base R4: " + msg}
}

func joinPath(path, name string) string {
	if path == "" {
		return ""
	}
	return path + "." + name
}

func baseIssueCode(details string) string {
	switch {
	case strings.HasPrefix(details, "missing required field"):
		return "required"
	case details == "code type mismatch" || details == "expected code":
		return "code-invalid"
	case strings.HasPrefix(details, "expected ") && details != "expected array",
		strings.HasPrefix(details, "invalid ") && (strings.HasSuffix(details, " format") || strings.HasPrefix(details, "invalid reference") ||
			details == "invalid time" || strings.HasSuffix(details, " integer") || details == "invalid uri" || details == "invalid url"),
		strings.HasPrefix(details, "string "),
		strings.HasPrefix(details, "non-negative integer"):
		return "value"
	case details == "unknown resource type", details == "invalid resource type":
		return "not-supported"
	}
	return "structure"
}

// fhirPath turns jsonformat's element path into the FHIRPath-like form the
// issues use: the type segment of a nested resource becomes ofType(Type),
// and a resource type R4 does not know is dropped rather than echoed.
func fhirPath(p string) string {
	if p == "" {
		return ""
	}
	segs := strings.Split(p, ".")
	if _, ok := resourceMessage(segs[0]); !ok {
		return ""
	}
	out := []string{segs[0]}
	for i := 1; i < len(segs); i++ {
		s := segs[i]
		if holdsResource(segs[i-1]) && s != "" && s[0] >= 'A' && s[0] <= 'Z' {
			if _, ok := resourceMessage(s); ok {
				out = append(out, "ofType("+s+")")
			}
			continue
		}
		out = append(out, s)
	}
	return strings.Join(out, ".")
}

func holdsResource(seg string) bool {
	name, _, _ := strings.Cut(seg, "[")
	return name == "resource" || name == "contained" || name == "outcome"
}

// safeMember admits JSON member names that look like FHIR element names; a
// name that does not is left out of the path, in case it carries data.
var safeMember = regexp.MustCompile(`^_?[A-Za-z][A-Za-z0-9]{0,63}$`)

// unknownMembers lists the members of the object at jsonformat path p that
// base R4 does not define.
func unknownMembers(doc map[string]any, p string) []Issue {
	obj, md, ok := navigate(doc, p)
	if !ok {
		return []Issue{{Severity: "error", Code: "structure", Path: fhirPath(p), Message: "base R4: unknown element"}}
	}
	known := jsonMembers(md)
	_, isResource := resourceMessage(string(md.Name()))
	keys := make([]string, 0, len(obj))
	for k := range obj {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var issues []Issue
	for _, k := range keys {
		if k == "resourceType" && isResource {
			continue
		}
		if _, ok := known[normalizeMember(k)]; ok {
			continue
		}
		path := fhirPath(p)
		if safeMember.MatchString(k) {
			path = joinPath(path, k)
		}
		issues = append(issues, Issue{Severity: "error", Code: "structure", Path: path, Message: "base R4: unknown element"})
	}
	if len(issues) == 0 {
		issues = append(issues, Issue{Severity: "error", Code: "structure", Path: fhirPath(p), Message: "base R4: unknown element"})
	}
	return issues
}

// normalizeMember applies jsonformat's leniency: it accepts "Status" for "status".
func normalizeMember(k string) string {
	if rest, ok := strings.CutPrefix(k, "_"); ok {
		return "_" + lowerFirst(rest)
	}
	return lowerFirst(k)
}

func lowerFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToLower(s[:1]) + s[1:]
}

// jsonMembers maps each JSON member name of a FHIR type to the type of its
// value: choice elements expand to valueQuantity and the like, primitives
// also have their _name.
func jsonMembers(md protoreflect.MessageDescriptor) map[string]protoreflect.MessageDescriptor {
	out := map[string]protoreflect.MessageDescriptor{}
	fields := md.Fields()
	for i := 0; i < fields.Len(); i++ {
		f := fields.Get(i)
		if f.Message() == nil {
			continue
		}
		if isChoiceMessage(f.Message()) {
			cf := f.Message().Fields()
			for j := 0; j < cf.Len(); j++ {
				c := cf.Get(j)
				key := f.JSONName() + upperFirst(c.JSONName())
				out[key] = c.Message()
				out["_"+key] = c.Message()
			}
			continue
		}
		out[f.JSONName()] = f.Message()
		out["_"+f.JSONName()] = f.Message()
	}
	return out
}

var indexed = regexp.MustCompile(`^(.+)\[(\d+)\]$`)

// navigate finds the JSON object and its FHIR type at a jsonformat path.
func navigate(doc map[string]any, p string) (map[string]any, protoreflect.MessageDescriptor, bool) {
	segs := strings.Split(p, ".")
	md, ok := resourceMessage(segs[0])
	if !ok {
		return nil, nil, false
	}
	var cur any = doc
	for _, s := range segs[1:] {
		if name := md.FullName().Name(); name == "ContainedResource" || md.FullName() == "google.protobuf.Any" {
			if md, ok = resourceMessage(s); !ok {
				return nil, nil, false
			}
			continue
		}
		name, idx := s, -1
		if m := indexed.FindStringSubmatch(s); m != nil {
			name = m[1]
			idx, _ = strconv.Atoi(m[2])
		}
		obj, ok := cur.(map[string]any)
		if !ok {
			return nil, nil, false
		}
		next, ok := jsonMembers(md)[name]
		if !ok {
			return nil, nil, false
		}
		cur = obj[name]
		if idx >= 0 {
			list, ok := cur.([]any)
			if !ok || idx >= len(list) {
				return nil, nil, false
			}
			cur = list[idx]
		}
		md = next
	}
	obj, ok := cur.(map[string]any)
	return obj, md, ok
}

// ---------------------------------------------------------------- outcome

// OperationOutcomeJSON renders issues as a pretty-printed FHIR R4
// OperationOutcome: expression is the Path, details.text and diagnostics the
// Message. With no issues it holds one "information" issue saying all is valid.
func OperationOutcomeJSON(issues []Issue) []byte {
	type text struct {
		Text string `json:"text"`
	}
	type ooIssue struct {
		Severity    string   `json:"severity"`
		Code        string   `json:"code"`
		Details     text     `json:"details"`
		Diagnostics string   `json:"diagnostics,omitempty"`
		Expression  []string `json:"expression,omitempty"`
	}
	type outcome struct {
		ResourceType string    `json:"resourceType"`
		Issue        []ooIssue `json:"issue"`
	}
	oo := outcome{ResourceType: "OperationOutcome"}
	for _, i := range issues {
		o := ooIssue{Severity: i.Severity, Code: i.Code, Details: text{i.Message}, Diagnostics: i.Message}
		if i.Path != "" {
			o.Expression = []string{i.Path}
		}
		oo.Issue = append(oo.Issue, o)
	}
	if len(oo.Issue) == 0 {
		oo.Issue = []ooIssue{{Severity: "information", Code: "informational",
			Details: text{"No issues found: valid FHIR R4 and valid against the ipsfhir profiles it claims."}}}
	}
	out, err := json.MarshalIndent(oo, "", "  ")
	if err != nil {
		panic("mappings: marshal OperationOutcome: " + err.Error()) // plain structs of strings cannot fail
	}
	return append(out, '\n')
}
