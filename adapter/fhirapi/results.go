package fhirapi

import (
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"

	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/ipsfhir/ipsfhir/ips"
	"github.com/ipsfhir/ipsfhir/mappings"

	annotations "github.com/google/fhir/go/proto/google/fhir/proto/annotations_go_proto"
	bpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/resources/bundle_and_contained_resource_go_proto"
)

// What search results hold beyond the matches: the code token search of
// Observation, _elements and _summary=data subsetting, and the
// OperationOutcome entry of what a lenient search ignored.

// ---------------------------------------------------------------- code

// tokenValue is one value of a token parameter: system|code, code (any
// system), |code (no system) or system| (any code of the system).
type tokenValue struct {
	system    string
	anySystem bool
	code      string // "": any code
}

func parseToken(v string) (tokenValue, bool) {
	system, code, hasBar := strings.Cut(v, "|")
	if !hasBar {
		return tokenValue{anySystem: true, code: v}, v != ""
	}
	return tokenValue{system: system, code: code}, (system != "" || code != "") && !strings.Contains(code, "|")
}

// matchesAny reports whether any of the codings matches the token.
func (t tokenValue) matchesAny(codings []ips.Coding) bool {
	return slices.ContainsFunc(codings, func(c ips.Coding) bool {
		return (t.anySystem || c.System == t.system) && (t.code == "" || c.Code == t.code)
	})
}

// codingsOf lists the codings of the code of the Observations a kind of
// record maps to (mappings: the LOINC code, and the site's code where
// Options.SiteCodes has one), so code searches count without mapping. A
// test holds it to what the mapping writes.
func (s *Server) codingsOf(k mappings.Kind) []ips.Coding {
	var loinc string
	switch k {
	case mappings.KindJob:
		loinc = mappings.LOINCPastOrPresentJob
	case mappings.KindEmploymentStatus:
		loinc = mappings.LOINCEmploymentStatus
	case mappings.KindPRAPARE:
		return []ips.Coding{{System: mappings.SystemLOINC, Code: mappings.LOINCPRAPARE}}
	default:
		return nil
	}
	out := []ips.Coding{{System: mappings.SystemLOINC, Code: loinc}}
	if sc, ok := s.mapping.SiteCodes[k]; ok && sc.Code != "" {
		out = append(out, sc)
	}
	return out
}

// ---------------------------------------------------------------- _elements and _summary

// subsettedTag is the meta.tag FHIR asks for on a resource returned with
// elements left out (_elements, _summary), so that nobody takes it for
// the whole resource.
var subsettedTag = json.RawMessage(`{"system":"http://terminology.hl7.org/CodeSystem/v3-ObservationValue","code":"SUBSETTED","display":"subsetted"}`)

// elementName is one _elements value: a top-level element name, with an
// optional resource type before it (Goal.status).
var elementName = regexp.MustCompile(`^(?:([A-Z][A-Za-z]{1,63})\.)?([a-z][A-Za-z0-9]{0,63})$`)

// parseElements reads _elements for a resource type: the names it lists,
// without the type. A name qualified with another type applies to none of
// this type's resources and is left out.
func parseElements(typ, v string) ([]string, bool) {
	out := []string{}
	for _, name := range strings.Split(v, ",") {
		m := elementName.FindStringSubmatch(strings.TrimSpace(name))
		if m == nil {
			return nil, false
		}
		if (m[1] == "" || m[1] == typ) && !slices.Contains(out, m[2]) {
			out = append(out, m[2])
		}
	}
	return out, true
}

// elementInfo is what subsetting needs of a resource type's definition:
// its mandatory top-level elements (min 1 in the base resource), and its
// choice elements (value[x]), whose JSON names carry the type.
type elementInfo struct {
	mandatory []string
	choice    map[string]bool
}

var elementInfos sync.Map // resource type → elementInfo

// elementsOf reads a resource type's elements from the FHIR R4 protos the
// mappings are built on.
func elementsOf(typ string) (elementInfo, error) {
	if v, ok := elementInfos.Load(typ); ok {
		return v.(elementInfo), nil
	}
	cr := (&bpb.ContainedResource{}).ProtoReflect().Descriptor()
	var md protoreflect.MessageDescriptor
	for i := range cr.Fields().Len() {
		if f := cr.Fields().Get(i); f.Message() != nil && string(f.Message().Name()) == typ {
			md = f.Message()
		}
	}
	if md == nil {
		return elementInfo{}, fmt.Errorf("subset: no R4 definition of %s", typ)
	}
	info := elementInfo{choice: map[string]bool{}}
	for i := range md.Fields().Len() {
		f := md.Fields().Get(i)
		name := f.JSONName()
		if f.Message() != nil && f.Message().Oneofs().ByName("choice") != nil {
			info.choice[name] = true
		}
		if req, ok := proto.GetExtension(f.Options(), annotations.E_ValidationRequirement).(annotations.Requirement); ok && req == annotations.Requirement_REQUIRED_BY_FHIR {
			info.mandatory = append(info.mandatory, name)
		}
	}
	elementInfos.Store(typ, info)
	return info, nil
}

// subset cuts a resource down to what _elements (nil: every element) and
// _summary=data (dropText) leave: the listed top-level elements, plus
// resourceType, id, meta and the elements the resource cannot be without
// (FHIR: a server SHOULD always return mandatory elements), and without
// text for data. Its meta.tag gains SUBSETTED, and meta.profile goes.
// Members keep their order.
func subset(typ string, body []byte, elements []string, dropText bool) ([]byte, error) {
	info, err := elementsOf(typ)
	if err != nil {
		return nil, err
	}
	res, err := parseObject(body)
	if err != nil {
		return nil, fmt.Errorf("subset %s: %w", typ, err)
	}
	wanted := append(slices.Clone(info.mandatory), elements...)
	keep := func(key string) bool {
		name := strings.TrimPrefix(key, "_") // _status holds status's extensions
		switch {
		case key == "resourceType" || key == "id" || key == "meta":
			return true
		case dropText && key == "text":
			return false
		case elements == nil:
			return true
		}
		for _, el := range wanted {
			if name == el {
				return true
			}
			// A choice element value[x] is valueQuantity, valueString … in JSON.
			if info.choice[el] && len(name) > len(el) && strings.HasPrefix(name, el) && name[len(el)] >= 'A' && name[len(el)] <= 'Z' {
				return true
			}
		}
		return false
	}
	var out object
	for _, m := range res {
		if keep(m.key) {
			out = append(out, m)
		}
	}
	var meta object
	if raw := out.get("meta"); raw != nil {
		if meta, err = parseObject(raw); err != nil {
			return nil, fmt.Errorf("subset %s: meta: %w", typ, err)
		}
	}
	var tags []json.RawMessage
	if raw := meta.get("tag"); raw != nil {
		if err := json.Unmarshal(raw, &tags); err != nil {
			return nil, fmt.Errorf("subset %s: meta.tag: %w", typ, err)
		}
	}
	tags = append(tags, subsettedTag)
	// The copy claims no profile: the profiles require elements it may
	// have left out, and a claim it does not meet would be false (as in the
	// de-identified export).
	meta = slices.DeleteFunc(meta, func(m member) bool { return m.key == "profile" })
	tagJSON, err := json.Marshal(tags)
	if err != nil {
		return nil, err
	}
	meta.set("tag", tagJSON)
	metaJSON, err := json.Marshal(meta)
	if err != nil {
		return nil, err
	}
	out.setAfter("meta", "id", metaJSON)
	return json.Marshal(out)
}

// ---------------------------------------------------------------- ignored parameters

// addOutcome adds what a lenient search ignored to the Bundle, as FHIR
// asks: one OperationOutcome entry, search.mode outcome, its warnings
// naming the parameters and never their values. Nothing ignored, nothing
// added.
func (b *bundle) addOutcome(notes []mappings.Issue) {
	if len(notes) == 0 {
		return
	}
	b.Entry = append(b.Entry, bundleEntry{
		FullURL:  "urn:uuid:" + uuid.NewString(),
		Resource: compactJSON(mappings.OperationOutcomeJSON(notes)),
		Search:   &entrySearch{Mode: "outcome"},
	})
}
