package fhirapi

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/google/uuid"

	"github.com/ipsfhir/ipsfhir/mappings"
)

// De-identification of the Bulk Data export for HIE operators: a HIPAA
// limited data set (45 CFR 164.514(e)) with pseudonymous subjects.
//
// The transform fails closed. Each exported kind of resource has an
// allowlist of the elements that survive, and every element is rebuilt from
// the allowlist rather than copied and pruned: an element the allowlist does
// not name (a free-text field added to the mappings later, an extension, a
// primitive's _element) is dropped, never passed through. What survives is
// codes, statuses, dates, quantities and booleans; codings keep only system
// and code (a display may have been typed by a person), CodeableConcepts
// only their codings, Quantities no unit text, References only what this
// file rebuilds. Resource types and Observation codes not listed are not
// exported at all, and DocumentReference (the chart note, all free text)
// never is.
//
// Identity is replaced by keyed pseudonyms: HMAC-SHA256 under a key of the
// recipient's pseudonym scope, itself HMAC-SHA256 of the program and the
// scope under the secret key the program configures (export.pseudonymKey).
// A scope is the hie caller's (its API key's pseudonymScope, or its name),
// so two HIEs cannot join their exports on pseudonyms, and neither can two
// programs sharing a configured key, unless the configuration puts the
// callers in one scope. The patient becomes {system:
// urn:ipsfhir:{program}:pseudonym, value: hex(HMAC(scopeKey,
// patientSystem|patientValue))}: the same person gets the same pseudonym in
// every export to the same scope, so an HIE can link a person's records and
// count people, but cannot reverse it without the key. Business identifiers, whose values
// carry program-internal client ids, become {system:
// urn:ipsfhir:{program}:pseudonym:{kind}, value: hex(HMAC(key,
// system|value))}, and the resource id is a UUID made of the first 16 bytes
// of the same HMAC (version 8, RFC 9562), so ids are stable across exports
// yet unrelated to the facade's own ids (which are unkeyed hashes of the
// business identifier, and could be recomputed from a guessed client id).
// In short, with scopeKey = HMAC(key, "ipsfhir-pseudonym-scope|" program
// "|" scope): pseudonym = hex(HMAC(scopeKey, system|value)).
//
// See docs/FHIR-API.md, "De-identified export", for the user's view.

// MinPseudonymKeyBytes is the shortest pseudonymization key New accepts.
const MinPseudonymKeyBytes = 32

// The security label every de-identified resource gets in meta.security,
// besides the labels it had.
const (
	SystemObservationValue = mappings.SystemV3ObservationValue
	CodePseudonymized      = "PSEUDED"
	DisplayPseudonymized   = "pseudonymized"
)

// pseudonymizedLabel is the coding of the PSEUDED label, written as given
// (codings copied from the mapped resource lose their displays; this one is
// the export's own).
func pseudonymizedLabel() map[string]any {
	return map[string]any{"system": SystemObservationValue, "code": CodePseudonymized, "display": DisplayPseudonymized}
}

// deidGoalDescription is Goal.description.text in the de-identified copy:
// the profile requires a text, the client's words may not go, and the
// project's code systems have no code for "employment goal". It is a fixed
// phrase, not patient data.
const deidGoalDescription = "employment goal"

// Codes the de-identified copy writes.
const (
	systemDataAbsentReason = "http://terminology.hl7.org/CodeSystem/data-absent-reason"
	codeMasked             = "masked"
)

// errDeid is wrapped by every de-identification error. No error says
// anything about the resource's content: they reach the server log.
var errDeid = errors.New("de-identify")

// deidentifier pseudonymizes for one program and one pseudonym scope.
type deidentifier struct {
	program string
	key     []byte // the scope's key
}

// newDeidentifier pseudonymizes for one recipient scope of a program under
// the configured key: its key is HMAC-SHA256(key,
// "ipsfhir-pseudonym-scope|" program "|" scope). A program id holds no '|',
// so no two (program, scope) pairs give one key's input.
func newDeidentifier(program string, key []byte, scope string) *deidentifier {
	h := hmac.New(sha256.New, key)
	h.Write([]byte("ipsfhir-pseudonym-scope|" + program + "|" + scope))
	return &deidentifier{program: program, key: h.Sum(nil)}
}

// mac is HMAC-SHA256(scope key, system|value).
func (d *deidentifier) mac(system, value string) []byte {
	h := hmac.New(sha256.New, d.key)
	h.Write([]byte(system + "|" + value))
	return h.Sum(nil)
}

// PatientPseudonymSystem is the identifier system of the patient pseudonyms
// a program's de-identified export carries.
func PatientPseudonymSystem(program string) string { return "urn:ipsfhir:" + program + ":pseudonym" }

// RecordPseudonymSystem is the identifier system of the pseudonymous
// business identifiers of one kind of record in a de-identified export.
func RecordPseudonymSystem(program string, k mappings.Kind) string {
	return PatientPseudonymSystem(program) + ":" + string(k)
}

// patientPseudonym is the pseudonym of a patient identifier.
func (d *deidentifier) patientPseudonym(system, value string) string {
	return hex.EncodeToString(d.mac(system, value))
}

// recordID is the de-identified resource id of a record with this business
// identifier: a UUID from the first 16 bytes of its HMAC.
func (d *deidentifier) recordID(system, value string) string {
	var u uuid.UUID
	copy(u[:], d.mac(system, value))
	u[6] = u[6]&0x0f | 0x80 // version 8: custom (RFC 9562)
	u[8] = u[8]&0x3f | 0x80 // the RFC 9562 variant
	return u.String()
}

// keyRef is the de-identified literal reference to a record.
func (d *deidentifier) keyRef(k mappings.Key) string {
	return typeOfKind(k.Kind) + "/" + d.recordID(k.System(), k.Value())
}

// deidLine is one de-identified resource, compact FHIR JSON, with its type
// and the key its file is sorted by.
type deidLine struct {
	typ, sortKey string
	data         []byte
}

// entries de-identifies one client's mapped resources. Those the allowlists
// do not export are left out. References between them are rewritten to the
// de-identified ids; a reference to anything else is dropped.
func (d *deidentifier) entries(es []mappings.Entry) ([]deidLine, error) {
	refs := make(map[string]string, len(es))
	for _, e := range es {
		refs[reference(e.Key)] = d.keyRef(e.Key)
	}
	var out []deidLine
	for _, e := range es {
		if _, ok := deidTypes[e.ResourceType]; !ok {
			continue // not even marshalled
		}
		raw, err := mappings.MarshalCompact(e.Resource)
		if err != nil {
			return nil, err
		}
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.UseNumber() // decimals keep their exact digits
		var in map[string]any
		if err := dec.Decode(&in); err != nil {
			return nil, fmt.Errorf("%w: read the mapped %s: %v", errDeid, e.ResourceType, err)
		}
		res, err := d.resource(in, refs)
		if err != nil {
			return nil, err
		}
		if res == nil {
			continue
		}
		line, err := d.canonical(res)
		if err != nil {
			return nil, err
		}
		out = append(out, deidLine{typ: e.ResourceType, sortKey: deidSortKey(res), data: line})
	}
	return out, nil
}

// canonical marshals a de-identified resource the way every other line of
// the export is written, through the validating FHIR R4 parser: a copy that
// is not valid R4 fails the export instead of going out.
func (d *deidentifier) canonical(res map[string]any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(res); err != nil {
		return nil, fmt.Errorf("%w: marshal: %v", errDeid, err)
	}
	cr, err := mappings.ParseResource(b.Bytes())
	if err != nil {
		// The parser's message may quote a value: it is not passed on.
		return nil, fmt.Errorf("%w: the de-identified %s is not valid FHIR R4", errDeid, res["resourceType"])
	}
	return mappings.MarshalCompact(cr)
}

// deidSortKey orders a file by patient pseudonym, then id: nothing about
// the order reveals the program's client ids.
func deidSortKey(res map[string]any) string {
	subj, _ := res["subject"].(map[string]any)
	id, _ := subj["identifier"].(map[string]any)
	v, _ := id["value"].(string)
	rid, _ := res["id"].(string)
	return v + "/" + rid
}

// ---------------------------------------------------------------- the transform

// resource de-identifies one resource given as decoded JSON (numbers as
// json.Number). refs maps the literal references the facade writes
// ("Goal/{id}") to their de-identified form. It returns nil, nil for a
// resource that is not exported de-identified, and an error, saying nothing
// of the content, when a resource that should be exported lacks what its
// pseudonyms are made from. in is not modified.
func (d *deidentifier) resource(in map[string]any, refs map[string]string) (map[string]any, error) {
	rt, _ := in["resourceType"].(string)
	sh := deidTypes[rt]
	if sh == nil {
		return nil, nil
	}
	kind := sh.kind(in)
	if kind == nil {
		return nil, nil
	}
	s := &scrub{d: d, refs: refs}
	out := map[string]any{"resourceType": rt}

	// The subject first: expressedBy is kept only when it is the subject.
	subj, ok := s.patient(in["subject"])
	if !ok {
		return nil, fmt.Errorf("%w: a %s has no subject identifier to pseudonymize", errDeid, rt)
	}
	out["subject"] = subj

	// Business identifiers become pseudonyms, and the first gives the id.
	idents, id := s.identifiers(in["identifier"])
	if id == "" {
		return nil, fmt.Errorf("%w: a %s has no ipsfhir business identifier of program %s", errDeid, rt, d.program)
	}
	out["id"] = id
	out["identifier"] = idents

	for name, v := range in {
		el, ok := kind.fields[name]
		if !ok {
			continue
		}
		if nv, ok := el(s, v); ok {
			out[name] = nv
		}
	}
	out["meta"] = s.meta(in["meta"], kind.profile)
	if kind.finish != nil {
		kind.finish(in, out)
	}
	return out, nil
}

// scrub is the state of one resource's transform.
type scrub struct {
	d       *deidentifier
	refs    map[string]string
	subject [2]string // the original patient identifier (system, value)
}

// patient pseudonymizes the subject reference, and remembers whom it named.
func (s *scrub) patient(v any) (any, bool) {
	sys, val, ok := identifierOf(v)
	if !ok {
		return nil, false
	}
	s.subject = [2]string{sys, val}
	return map[string]any{"identifier": map[string]any{
		"type":   map[string]any{"coding": []any{pseudonymizedLabel()}},
		"system": PatientPseudonymSystem(s.d.program),
		"value":  s.d.patientPseudonym(sys, val),
	}}, true
}

// identifierOf reads {identifier: {system, value}} of a Reference.
func identifierOf(v any) (system, value string, ok bool) {
	ref, _ := v.(map[string]any)
	id, _ := ref["identifier"].(map[string]any)
	system, _ = id["system"].(string)
	value, _ = id["value"].(string)
	return system, value, system != "" && value != ""
}

// identifiers pseudonymizes the ipsfhir business identifiers of the
// program, drops any other, and derives the id from the first.
func (s *scrub) identifiers(v any) ([]any, string) {
	list, _ := v.([]any)
	var out []any
	id := ""
	prefix := mappings.IdentifierSystem(s.d.program, "")
	for _, e := range list {
		m, _ := e.(map[string]any)
		sys, _ := m["system"].(string)
		val, _ := m["value"].(string)
		kind, ok := strings.CutPrefix(sys, prefix)
		if !ok || val == "" || !deidKinds[mappings.Kind(kind)] {
			continue
		}
		out = append(out, map[string]any{
			"system": RecordPseudonymSystem(s.d.program, mappings.Kind(kind)),
			"value":  hex.EncodeToString(s.d.mac(sys, val)),
		})
		if id == "" {
			id = s.d.recordID(sys, val)
		}
	}
	return out, id
}

// deidKinds are the kinds of business identifier a de-identified resource
// may carry (as pseudonyms).
var deidKinds = map[mappings.Kind]bool{
	mappings.KindGoal: true, mappings.KindPlan: true, mappings.KindJob: true,
	mappings.KindEmploymentStatus: true, mappings.KindPRAPARE: true,
}

// meta keeps versionId and lastUpdated, the security labels and tags as
// codes, the profile the de-identified copy still conforms to (if the
// original claimed it), and adds the pseudonymized label.
func (s *scrub) meta(v any, profile string) map[string]any {
	in, _ := v.(map[string]any)
	out := map[string]any{}
	if x, ok := keepID(s, in["versionId"]); ok {
		out["versionId"] = x
	}
	if x, ok := keepInstant(s, in["lastUpdated"]); ok {
		out["lastUpdated"] = x
	}
	if profile != "" {
		ps, _ := in["profile"].([]any)
		for _, p := range ps {
			if p == profile {
				out["profile"] = []any{profile}
			}
		}
	}
	var sec []any
	if x, ok := listOf(keepCoding)(s, in["security"]); ok {
		sec = x.([]any)
	}
	out["security"] = append(sec, pseudonymizedLabel())
	if x, ok := listOf(keepCoding)(s, in["tag"]); ok {
		out["tag"] = x
	}
	return out
}

// ---------------------------------------------------------------- allowlists

// deidShape is how one resource type is de-identified: which kind of it a
// resource is (nil: not exported).
type deidShape struct {
	kind func(in map[string]any) *deidKind
}

// deidKind is the allowlist of one kind of resource.
type deidKind struct {
	// fields are the elements kept, besides resourceType, id, identifier,
	// subject and meta, which resource rebuilds for every kind.
	fields map[string]elem
	// profile is the profile the de-identified copy still conforms to,
	// claimed in meta.profile when the original claimed it; "" claims none.
	profile string
	// finish adjusts the copy once the fields are in.
	finish func(in, out map[string]any)
}

// deidTypes are the resource types a de-identified export holds. Any other
// type, DocumentReference among them, is left out.
var deidTypes = map[string]*deidShape{
	"Goal":        {kind: func(map[string]any) *deidKind { return goalKind }},
	"CarePlan":    {kind: func(map[string]any) *deidKind { return carePlanKind }},
	"Observation": {kind: observationKind},
}

// Goal: status, achievement, category, start, target (measure, quantity,
// due). The description becomes a fixed text; notes go. The ips-goal
// profile still holds.
var goalKind = &deidKind{
	profile: mappings.ProfileGoal,
	fields: map[string]elem{
		"lifecycleStatus":   keepCode,
		"achievementStatus": keepConcept,
		"category":          listOf(keepConcept),
		"priority":          keepConcept,
		"description":       goalDescription,
		"expressedBy":       sameAsSubject,
		"startDate":         keepDate,
		"statusDate":        keepDate,
		"target": listOf(objectOf(map[string]elem{
			"measure":        keepConcept,
			"detailQuantity": keepQuantity,
			"dueDate":        keepDate,
		})),
	},
}

// CarePlan: status, intent, category, period, the goals it pursues, and per
// activity its support type, status, date and goals. The narrative, title,
// contributor (the specialist), activity descriptions and the support
// identifier extension go. ips-careplan requires a narrative, so the copy
// claims no profile.
var carePlanKind = &deidKind{
	fields: map[string]elem{
		"status":   keepCode,
		"intent":   keepCode,
		"category": listOf(keepConcept),
		"period":   keepPeriod,
		"created":  keepDateTime,
		"goal":     listOf(keepRecordRef),
		"activity": listOf(objectOf(map[string]elem{
			"detail": objectOf(map[string]elem{
				"kind":            keepCode,
				"code":            keepConcept,
				"status":          keepCode,
				"doNotPerform":    keepBoolean,
				"scheduledPeriod": keepPeriod,
				"goal":            listOf(keepRecordRef),
			}),
		})),
	},
}

// observationFields are kept by every kind of exported Observation.
var observationFields = map[string]elem{
	"status":               keepCode,
	"category":             listOf(keepConcept),
	"code":                 keepConcept,
	"issued":               keepInstant,
	"effectivePeriod":      keepPeriod,
	"effectiveDateTime":    keepDateTime,
	"valueCodeableConcept": keepConcept,
	"valueQuantity":        keepQuantity,
	"valueBoolean":         keepBoolean,
	"dataAbsentReason":     keepConcept,
}

// withFields is observationFields plus more.
func withFields(more map[string]elem) map[string]elem {
	out := make(map[string]elem, len(observationFields)+len(more))
	for k, v := range observationFields {
		out[k] = v
	}
	for k, v := range more {
		out[k] = v
	}
	return out
}

// Job (ODH PastOrPresentJob): occupation and industry codes, period,
// whether current, hours, days, wage, competitive, disclosed, end reason.
// The job title (value text) and the employer (a name) go; a job with no
// occupation code gets dataAbsentReason masked instead of a value. The
// ips-job-observation profile requires both, so the copy claims none.
var jobKind = &deidKind{
	fields: withFields(map[string]elem{
		"extension": extensions(map[string]extensionRule{
			mappings.ExtODHIsCurrentJob: {"valueBoolean", keepBoolean},
			mappings.ExtLastKnown:       {"valueDate", keepDate},
		}),
		"component": listOf(objectOf(map[string]elem{
			"code":                 keepConcept,
			"valueQuantity":        keepQuantity,
			"valueBoolean":         keepBoolean,
			"valueCodeableConcept": keepConcept,
		})),
	}),
	finish: maskLostValue,
}

// Employment status (ODH): fully coded, with the job records a derived
// status came from and the date the program last knew it (a closed
// client's); the note (free text) goes. ips-employment-status still holds.
var employmentStatusKind = &deidKind{
	profile: mappings.ProfileEmploymentStatus,
	fields: withFields(map[string]elem{
		"derivedFrom": listOf(keepRecordRef),
		"extension": extensions(map[string]extensionRule{
			mappings.ExtLastKnown: {"valueDate", keepDate},
		}),
	}),
	finish: maskLostValue,
}

// PRAPARE employment answer: fully coded, with the records it was derived
// from; ips-prapare-employment still holds.
var prapareKind = &deidKind{
	profile: mappings.ProfilePRAPARE,
	fields:  withFields(map[string]elem{"derivedFrom": listOf(keepRecordRef)}),
	finish:  maskLostValue,
}

// observationKind tells an Observation's kind by its LOINC code. An
// Observation of any other code is not exported.
func observationKind(in map[string]any) *deidKind {
	cc, _ := in["code"].(map[string]any)
	codings, _ := cc["coding"].([]any)
	for _, c := range codings {
		m, _ := c.(map[string]any)
		if m["system"] != mappings.SystemLOINC {
			continue
		}
		switch m["code"] {
		case mappings.LOINCPastOrPresentJob:
			return jobKind
		case mappings.LOINCEmploymentStatus:
			return employmentStatusKind
		case mappings.LOINCPRAPARE:
			return prapareKind
		}
	}
	return nil
}

// maskLostValue marks an Observation whose value was all free text (a job
// title with no occupation code): value[x] absent, dataAbsentReason masked,
// as FHIR asks when a value is withheld for privacy.
func maskLostValue(in, out map[string]any) {
	had := false
	for k := range in {
		if strings.HasPrefix(k, "value") {
			had = true
		}
	}
	for k := range out {
		if strings.HasPrefix(k, "value") {
			return
		}
	}
	if had {
		out["dataAbsentReason"] = map[string]any{"coding": []any{map[string]any{"system": systemDataAbsentReason, "code": codeMasked}}}
	}
}

// ---------------------------------------------------------------- elements

// An elem rebuilds one JSON value from what the allowlist keeps of it;
// ok false drops it.
type elem func(s *scrub, v any) (any, bool)

// objectOf keeps the listed members of a JSON object; an object left empty
// is dropped.
func objectOf(fields map[string]elem) elem {
	return func(s *scrub, v any) (any, bool) {
		m, ok := v.(map[string]any)
		if !ok {
			return nil, false
		}
		out := map[string]any{}
		for name, val := range m {
			if el := fields[name]; el != nil {
				if nv, ok := el(s, val); ok {
					out[name] = nv
				}
			}
		}
		return out, len(out) > 0
	}
}

// listOf applies e to each item of a JSON array, keeping those it keeps; an
// array left empty is dropped.
func listOf(e elem) elem {
	return func(s *scrub, v any) (any, bool) {
		a, ok := v.([]any)
		if !ok {
			return nil, false
		}
		var out []any
		for _, x := range a {
			if nv, ok := e(s, x); ok {
				out = append(out, nv)
			}
		}
		return out, len(out) > 0
	}
}

// pattern keeps a string that matches re. The allowlist is what keeps free
// text out; the patterns are a second line, so that even a misplaced text
// cannot pass as a code or a date.
func pattern(re *regexp.Regexp) elem {
	return func(_ *scrub, v any) (any, bool) {
		str, ok := v.(string)
		return str, ok && re.MatchString(str)
	}
}

var (
	// code: a FHIR code without white space ("entered-in-error",
	// "LA17956-6", "h/wk"), at most 64 characters.
	keepCode = pattern(regexp.MustCompile(`^\S{1,64}$`))
	// uri: a code system URI (http://loinc.org, urn:oid:…).
	keepURI = pattern(regexp.MustCompile(`^[A-Za-z][A-Za-z0-9+.\-]*:\S{1,250}$`))
	// id: a FHIR id (meta.versionId).
	keepID = pattern(regexp.MustCompile(`^[A-Za-z0-9\-.]{1,64}$`))
	// date: a FHIR date.
	keepDate = pattern(regexp.MustCompile(`^\d{4}(-\d{2}(-\d{2})?)?$`))
	// dateTime: a FHIR date or dateTime.
	keepDateTime = pattern(regexp.MustCompile(`^\d{4}(-\d{2}(-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+\-]\d{2}:\d{2}))?)?)?$`))
	// instant: a FHIR instant.
	keepInstant = pattern(regexp.MustCompile(`^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+\-]\d{2}:\d{2})$`))
)

// keepDecimal keeps a JSON number, digits as given.
func keepDecimal(_ *scrub, v any) (any, bool) {
	n, ok := v.(json.Number)
	return n, ok
}

// keepBoolean keeps a JSON boolean.
func keepBoolean(_ *scrub, v any) (any, bool) {
	b, ok := v.(bool)
	return b, ok
}

// Datatypes. coding has no display: a display may have been typed by a
// person (an occupation's, say) and the code says it all.
var (
	keepCoding   = objectOf(map[string]elem{"system": keepURI, "code": keepCode})
	keepConcept  = objectOf(map[string]elem{"coding": listOf(keepCoding)})
	keepQuantity = objectOf(map[string]elem{"value": keepDecimal, "comparator": keepCode, "system": keepURI, "code": keepCode})
	keepPeriod   = objectOf(map[string]elem{"start": keepDateTime, "end": keepDateTime})
)

// keepRecordRef rewrites a reference to another exported record of the
// client, literal or by its ipsfhir business identifier, to the record's
// de-identified id; a reference to anything else, the identifier itself
// (its value holds the client id) and every display are dropped.
func keepRecordRef(s *scrub, v any) (any, bool) {
	m, _ := v.(map[string]any)
	ref, _ := m["reference"].(string)
	if to, ok := s.refs[ref]; ok && ref != "" {
		return map[string]any{"reference": to}, true
	}
	if sys, val, ok := identifierOf(v); ok {
		if k, ok := mappings.ParseKey(sys, val); ok && k.Program == s.d.program {
			if to, ok := s.refs[reference(k)]; ok {
				return map[string]any{"reference": to}, true
			}
		}
	}
	return nil, false
}

// sameAsSubject keeps a Reference to the patient (Goal.expressedBy: the
// client expressed the goal) as the subject's pseudonym; a reference to
// anyone else is dropped.
func sameAsSubject(s *scrub, v any) (any, bool) {
	sys, val, ok := identifierOf(v)
	if !ok || [2]string{sys, val} != s.subject {
		return nil, false
	}
	return s.patient(v)
}

// goalDescription keeps a description's codes and replaces its text with
// the fixed deidGoalDescription (ips-goal requires a text).
func goalDescription(s *scrub, v any) (any, bool) {
	out := map[string]any{"text": deidGoalDescription}
	if m, ok := v.(map[string]any); ok {
		if cs, ok := listOf(keepCoding)(s, m["coding"]); ok {
			out["coding"] = cs
		}
	}
	return out, true
}

// extensionRule keeps an extension of one url with one value[x] key.
type extensionRule struct {
	valueKey string
	value    elem
}

// extensions keeps the extensions whose url the rules list, with their
// value as the rule allows; any other extension is dropped.
func extensions(rules map[string]extensionRule) elem {
	return listOf(func(s *scrub, v any) (any, bool) {
		m, _ := v.(map[string]any)
		url, _ := m["url"].(string)
		r, ok := rules[url]
		if !ok {
			return nil, false
		}
		val, ok := r.value(s, m[r.valueKey])
		if !ok {
			return nil, false
		}
		return map[string]any{"url": url, r.valueKey: val}, true
	})
}
