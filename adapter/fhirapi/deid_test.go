package fhirapi

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/ipsfhir/ipsfhir/ips"
	"github.com/ipsfhir/ipsfhir/ips/ipstest"
	"github.com/ipsfhir/ipsfhir/mappings"
)

var unitKey = []byte("unit-test-pseudonym-key-0123456789abcdef")

// unitScope is the pseudonym scope the unit tests de-identify for.
const unitScope = "state-hie"

// scopeKey is the documented key of a pseudonym scope: HMAC-SHA256 of
// "ipsfhir-pseudonym-scope|{program}|{scope}" under the configured key.
func scopeKey(key []byte, program, scope string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte("ipsfhir-pseudonym-scope|" + program + "|" + scope))
	return m.Sum(nil)
}

// mapped is one mapped resource as the export sees it: decoded JSON.
type mapped struct {
	entry mappings.Entry
	json  map[string]any
}

// sampleMapped maps the sample caseload (PRAPARE answers included) as the
// facade does, literal references and all, by client.
func sampleMapped(t *testing.T) (*ips.Caseload, mappings.Options, map[string][]mapped) {
	t.Helper()
	cl := ipstest.Sample(t)
	o := mappings.Options{Program: cl.ProgramID(), PRAPARE: true, Reference: reference}
	out := map[string][]mapped{}
	for _, c := range cl.Clients {
		for _, e := range mappings.ClientEntries(c, o) {
			out[c.ID] = append(out[c.ID], mapped{e, decode(t, marshal(t, e))})
		}
	}
	return cl, o, out
}

func marshal(t *testing.T, e mappings.Entry) []byte {
	t.Helper()
	b, err := mappings.MarshalCompact(e.Resource)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func decode(t *testing.T, b []byte) map[string]any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		t.Fatal(err)
	}
	return m
}

func encode(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// refsOf is what entries passes resource for one client's records.
func refsOf(d *deidentifier, ms []mapped) map[string]string {
	refs := map[string]string{}
	for _, m := range ms {
		refs[reference(m.entry.Key)] = d.keyRef(m.entry.Key)
	}
	return refs
}

// secretsOf lists what must never leave in a de-identified export: the
// patient identifier, program-internal ids, and every free text of a
// client. Client ids are searched as they appear in business identifiers
// ("c001/"), since a bare "c001" could occur in a hex pseudonym by chance.
func secretsOf(c *ips.Client) []string {
	out := []string{c.Patient.Value, c.Patient.System, `"` + c.ID + `"`, c.ID + "/"}
	if c.Specialist != "" {
		out = append(out, c.Specialist)
	}
	for _, g := range c.Goals {
		out = append(out, g.Description)
		for _, n := range g.Notes {
			out = append(out, n.Text)
		}
	}
	for _, s := range c.Supports {
		if s.Note != "" {
			out = append(out, s.Note)
		}
	}
	for _, j := range c.Jobs {
		out = append(out, j.Employer, j.Title)
		for _, cd := range []*ips.Coding{j.Occupation, j.Industry} {
			if cd != nil && cd.Display != "" {
				out = append(out, cd.Display)
			}
		}
	}
	if p := c.Preferences; p != nil {
		// Not the job types: single words such as "security", which the
		// export's own vocabulary holds.
		for _, s := range []string{p.Schedule, p.Location} {
			if s != "" {
				out = append(out, s)
			}
		}
	}
	return out
}

func TestDeidSampleHoldsNoPatientData(t *testing.T) {
	t.Parallel()
	cl, _, byClient := sampleMapped(t)
	d := newDeidentifier(cl.ProgramID(), unitKey, unitScope)
	v, err := mappings.NewValidator()
	if err != nil {
		t.Fatal(err)
	}
	kept := map[string]int{}
	for _, c := range cl.Clients {
		var es []mappings.Entry
		for _, m := range byClient[c.ID] {
			es = append(es, m.entry)
		}
		lines, err := d.entries(es)
		if err != nil {
			t.Fatalf("client %s: %v", c.ID, err)
		}
		pseudonym := d.patientPseudonym(c.Patient.System, c.Patient.Value)
		for _, l := range lines {
			kept[l.typ]++
			for _, s := range secretsOf(c) {
				if strings.Contains(string(l.data), s) {
					t.Errorf("client %s: a de-identified %s holds %q:\n%s", c.ID, l.typ, s, l.data)
				}
			}
			if issues, err := v.ValidateJSON(l.data); err != nil || mappings.HasErrors(issues) {
				t.Errorf("client %s: a de-identified %s is not valid: %v %s\n%s", c.ID, l.typ, err, mappings.OperationOutcomeJSON(issues), l.data)
			}
			res := decode(t, l.data)
			subj := res["subject"].(map[string]any)["identifier"].(map[string]any)
			if subj["system"] != PatientPseudonymSystem(cl.ProgramID()) || subj["value"] != pseudonym {
				t.Errorf("client %s: subject %v, want the client's pseudonym", c.ID, subj)
			}
			if !strings.HasPrefix(l.sortKey, pseudonym+"/") {
				t.Errorf("sort key %q does not start with the pseudonym", l.sortKey)
			}
		}
	}
	if kept["DocumentReference"] != 0 || kept["Goal"] == 0 || kept["CarePlan"] != len(cl.Clients) || kept["Observation"] == 0 {
		t.Errorf("kept %v: want goals, one plan per client, observations and no chart note", kept)
	}
}

// inject adds a new member holding text to every object in v, an unknown
// extension to every object, and a primitive extension beside every
// string: what a later mapping change might add.
func inject(v any, text string) {
	switch x := v.(type) {
	case map[string]any:
		for _, k := range slices.Sorted(maps.Keys(x)) { // a snapshot: members are added below
			e := x[k]
			inject(e, text)
			if _, ok := e.(string); ok {
				x["_"+k] = map[string]any{"extension": []any{map[string]any{"url": "http://example.org/x", "valueString": text}}}
			}
		}
		x["futureFreeText"] = text
		ext, _ := x["extension"].([]any)
		x["extension"] = append(ext, map[string]any{"url": "http://example.org/new-extension", "valueString": text})
		x["modifierExtension"] = []any{map[string]any{"url": "http://example.org/m", "valueString": text}}
	case []any:
		for _, e := range x {
			inject(e, text)
		}
	}
}

// TestDeidFailsClosed adds free text everywhere a later change could put
// it, in elements no allowlist names: none of it comes out.
func TestDeidFailsClosed(t *testing.T) {
	t.Parallel()
	cl, _, byClient := sampleMapped(t)
	d := newDeidentifier(cl.ProgramID(), unitKey, unitScope)
	const text = "SENTINEL free text the allowlist never saw"
	n := 0
	for _, c := range cl.Clients {
		ms := byClient[c.ID]
		refs := refsOf(d, ms)
		for _, m := range ms {
			in := decode(t, marshal(t, m.entry))
			inject(in, text)
			out, err := d.resource(in, refs)
			if err != nil {
				t.Fatalf("%s: %v", m.entry.ResourceType, err)
			}
			if out == nil {
				continue
			}
			n++
			if s := encode(t, out); strings.Contains(s, text) || strings.Contains(s, "example.org") {
				t.Fatalf("an element no allowlist names came through in a %s:\n%s", m.entry.ResourceType, s)
			}
			if _, err := d.canonical(out); err != nil {
				t.Errorf("%s: %v", m.entry.ResourceType, err)
			}
		}
	}
	if n == 0 {
		t.Fatal("nothing was de-identified")
	}
}

func TestDeidPseudonyms(t *testing.T) {
	t.Parallel()
	cl, _, byClient := sampleMapped(t)
	d := newDeidentifier(cl.ProgramID(), unitKey, unitScope)
	other := newDeidentifier(cl.ProgramID(), []byte("another-pseudonym-key-0123456789abcdef!"), unitScope)
	c := cl.Clients[0]

	// The documented formula: hex(HMAC-SHA256(scopeKey, system|value)).
	m := hmac.New(sha256.New, scopeKey(unitKey, cl.ProgramID(), unitScope))
	m.Write([]byte(c.Patient.System + "|" + c.Patient.Value))
	if want := hex.EncodeToString(m.Sum(nil)); d.patientPseudonym(c.Patient.System, c.Patient.Value) != want {
		t.Errorf("patient pseudonym is not hex(HMAC-SHA256(scopeKey, system|value))")
	}
	// Not the pseudonym under the configured key itself, which every
	// recipient of every program sharing the key would get.
	m = hmac.New(sha256.New, unitKey)
	m.Write([]byte(c.Patient.System + "|" + c.Patient.Value))
	if d.patientPseudonym(c.Patient.System, c.Patient.Value) == hex.EncodeToString(m.Sum(nil)) {
		t.Error("the pseudonym is not scoped")
	}
	pseudo := d.patientPseudonym(c.Patient.System, c.Patient.Value)
	if other.patientPseudonym(c.Patient.System, c.Patient.Value) == pseudo {
		t.Error("two keys give the same pseudonym")
	}
	// Another recipient, or another program under the same key: another
	// pseudonym. The same scope again: the same one.
	for name, x := range map[string]*deidentifier{
		"another scope":   newDeidentifier(cl.ProgramID(), unitKey, "county-hie"),
		"another program": newDeidentifier("eastside-ips", unitKey, unitScope),
	} {
		if x.patientPseudonym(c.Patient.System, c.Patient.Value) == pseudo {
			t.Errorf("%s gives the same pseudonym", name)
		}
	}
	if newDeidentifier(cl.ProgramID(), unitKey, unitScope).patientPseudonym(c.Patient.System, c.Patient.Value) != pseudo {
		t.Error("the same scope gives another pseudonym")
	}
	seen := map[string]string{}
	for _, c := range cl.Clients {
		p := d.patientPseudonym(c.Patient.System, c.Patient.Value)
		if prev, dup := seen[p]; dup {
			t.Errorf("clients %s and %s share a pseudonym", prev, c.ID)
		}
		seen[p] = c.ID
	}

	// Same input, same output; another key, other ids and identifiers.
	ms := byClient[c.ID]
	for _, mm := range ms {
		a, err := d.resource(mm.json, refsOf(d, ms))
		if err != nil || a == nil {
			continue
		}
		b, _ := d.resource(mm.json, refsOf(d, ms))
		if !reflect.DeepEqual(a, b) {
			t.Errorf("%s: two runs differ", mm.entry.ResourceType)
		}
		x, _ := other.resource(mm.json, refsOf(other, ms))
		if a["id"] == x["id"] || encode(t, a["identifier"]) == encode(t, x["identifier"]) || encode(t, a["subject"]) == encode(t, x["subject"]) {
			t.Errorf("%s: another key gives the same id, identifier or subject", mm.entry.ResourceType)
		}
		if a["id"] == resourceID(mm.entry.Key) {
			t.Errorf("%s: the de-identified id is the facade's id", mm.entry.ResourceType)
		}
		if a["id"] != d.recordID(mm.entry.Key.System(), mm.entry.Key.Value()) {
			t.Errorf("%s: id is not derived from the business identifier", mm.entry.ResourceType)
		}
		ids := a["identifier"].([]any)
		want := RecordPseudonymSystem(cl.ProgramID(), mm.entry.Key.Kind)
		if len(ids) != 1 || ids[0].(map[string]any)["system"] != want {
			t.Errorf("%s: identifier %v, want one in %s", mm.entry.ResourceType, ids, want)
		}
	}
}

func TestDeidShapes(t *testing.T) {
	t.Parallel()
	cl, o, byClient := sampleMapped(t)
	d := newDeidentifier(cl.ProgramID(), unitKey, unitScope)
	sawMasked, sawOccupation, sawPlanGoals := false, false, false
	for _, c := range cl.Clients {
		ms := byClient[c.ID]
		refs := refsOf(d, ms)
		goalIDs := map[string]bool{}
		for _, g := range c.Goals {
			goalIDs["Goal/"+d.recordID(o.GoalKey(c, g).System(), o.GoalKey(c, g).Value())] = true
		}
		for _, m := range ms {
			out, err := d.resource(m.json, refs)
			if err != nil {
				t.Fatal(err)
			}
			if m.entry.ResourceType == "DocumentReference" {
				if out != nil {
					t.Fatal("a chart note was de-identified instead of left out")
				}
				continue
			}
			meta := out["meta"].(map[string]any)
			sec := encode(t, meta["security"])
			for _, want := range []string{`"code":"R"`, `"code":"PSY"`, `"code":"` + CodePseudonymized + `","display":"pseudonymized","system":"` + SystemObservationValue + `"`} {
				if !strings.Contains(sec, want) {
					t.Errorf("%s: meta.security %s lacks %s", m.entry.ResourceType, sec, want)
				}
			}
			if !strings.Contains(encode(t, meta["tag"]), mappings.TagAuthored) {
				t.Errorf("%s: the ipsfhir-authored tag is gone", m.entry.ResourceType)
			}
			if meta["versionId"] != nil || meta["lastUpdated"] != nil {
				// ClientEntries alone sets neither; the facade's stamp does.
				t.Errorf("%s: meta gained a version", m.entry.ResourceType)
			}
			for _, gone := range []string{"text", "note", "contributor", "title"} {
				if _, ok := out[gone]; ok {
					t.Errorf("%s: %s was kept", m.entry.ResourceType, gone)
				}
			}
			profile := encode(t, meta["profile"])
			switch kind := m.entry.Key.Kind; kind {
			case mappings.KindGoal:
				if profile != `["`+mappings.ProfileGoal+`"]` {
					t.Errorf("Goal claims %s", profile)
				}
				if got := encode(t, out["description"]); got != `{"text":"employment goal"}` {
					t.Errorf("Goal.description %s", got)
				}
				if encode(t, out["expressedBy"]) != encode(t, out["subject"]) {
					t.Error("Goal.expressedBy is not the subject's pseudonym")
				}
			case mappings.KindPlan:
				if meta["profile"] != nil {
					t.Errorf("CarePlan claims %s without its narrative", profile)
				}
				goals, _ := out["goal"].([]any)
				if len(goals) != len(c.Goals) {
					t.Errorf("CarePlan has %d goals, want %d", len(goals), len(c.Goals))
				}
				for _, g := range goals {
					sawPlanGoals = true
					if ref := g.(map[string]any)["reference"].(string); !goalIDs[ref] {
						t.Errorf("CarePlan.goal %s is not a de-identified goal of the client", ref)
					}
				}
				acts, _ := out["activity"].([]any)
				if len(acts) != len(c.Supports) {
					t.Errorf("CarePlan has %d activities, want %d", len(acts), len(c.Supports))
				}
				for _, a := range acts {
					a := a.(map[string]any)
					if _, ok := a["extension"]; ok {
						t.Error("the support identifier extension was kept")
					}
					if _, ok := a["detail"].(map[string]any)["description"]; ok {
						t.Error("an activity description was kept")
					}
				}
			case mappings.KindJob:
				if meta["profile"] != nil {
					t.Errorf("job claims %s without employer and title", profile)
				}
				// isCurrentJob, or for a job held when the client's
				// enrollment closed the date the program last knew it.
				if ext := encode(t, out["extension"]); strings.Contains(ext, mappings.ExtODHEmployer) || strings.Contains(ext, mappings.ExtODHIsCurrentJob) == strings.Contains(ext, mappings.ExtLastKnown) {
					t.Errorf("job extensions %s: want isCurrentJob or last known, only", ext)
				}
				if v, ok := out["valueCodeableConcept"].(map[string]any); ok {
					sawOccupation = true
					if _, ok := v["text"]; ok {
						t.Error("the job title was kept")
					}
					if _, ok := out["dataAbsentReason"]; ok {
						t.Error("a job with an occupation code is masked")
					}
				} else {
					sawMasked = true
					if got := encode(t, out["dataAbsentReason"]); got != `{"coding":[{"code":"masked","system":"`+systemDataAbsentReason+`"}]}` {
						t.Errorf("a job without an occupation code: dataAbsentReason %s", got)
					}
				}
				if comps, _ := out["component"].([]any); len(comps) < 3 {
					t.Errorf("job components %v: hours, wage and competitive must stay", comps)
				}
				content := maps.Clone(out)
				delete(content, "meta") // the PSEUDED labels have a display of their own
				delete(content, "subject")
				if s := encode(t, content); !strings.Contains(s, `"effectivePeriod"`) || strings.Contains(s, `"display"`) || strings.Contains(s, `"unit"`) {
					t.Errorf("job %s: want the period kept, displays and units gone", s)
				}
			case mappings.KindEmploymentStatus:
				if profile != `["`+mappings.ProfileEmploymentStatus+`"]` {
					t.Errorf("employment status claims %s", profile)
				}
			case mappings.KindPRAPARE:
				if profile != `["`+mappings.ProfilePRAPARE+`"]` {
					t.Errorf("PRAPARE answer claims %s", profile)
				}
				// derivedFrom names the status record by its de-identified
				// id; the business identifier (holding the client id) goes.
				sk := m.entry.Key
				sk.Kind = mappings.KindEmploymentStatus
				from, _ := out["derivedFrom"].([]any)
				if len(from) == 0 || encode(t, from[0]) != `{"reference":"Observation/`+d.recordID(sk.System(), sk.Value())+`"}` {
					t.Errorf("PRAPARE derivedFrom %s, want the status record's de-identified id first", encode(t, from))
				}
			default:
				t.Errorf("a %s was exported", kind)
			}
		}
	}
	if !sawMasked || !sawOccupation || !sawPlanGoals {
		t.Errorf("the sample should have jobs with and without occupation codes, and plans with goals (%v %v %v)", sawMasked, sawOccupation, sawPlanGoals)
	}
}

func TestDeidLeavesOut(t *testing.T) {
	t.Parallel()
	d := newDeidentifier("p", unitKey, unitScope)
	subject := map[string]any{"identifier": map[string]any{"system": "urn:oid:1.2", "value": "MRN1"}}
	ident := []any{map[string]any{"system": "urn:ipsfhir:p:job", "value": "c1/j1"}}
	for name, in := range map[string]map[string]any{
		"chart note":       {"resourceType": "DocumentReference", "subject": subject, "identifier": ident},
		"Patient":          {"resourceType": "Patient", "identifier": ident},
		"other code":       {"resourceType": "Observation", "subject": subject, "identifier": ident, "code": map[string]any{"coding": []any{map[string]any{"system": mappings.SystemLOINC, "code": "8867-4"}}}},
		"no code":          {"resourceType": "Observation", "subject": subject, "identifier": ident},
		"no resourceType":  {"subject": subject, "identifier": ident},
		"code not LOINC'd": {"resourceType": "Observation", "subject": subject, "identifier": ident, "code": map[string]any{"coding": []any{map[string]any{"system": "http://example.org", "code": mappings.LOINCPastOrPresentJob}}}},
	} {
		out, err := d.resource(in, nil)
		if out != nil || err != nil {
			t.Errorf("%s: %v, %v; want it left out", name, out, err)
		}
	}
}

func TestDeidRefusesWhatItCannotPseudonymize(t *testing.T) {
	t.Parallel()
	d := newDeidentifier("p", unitKey, unitScope)
	subject := map[string]any{"identifier": map[string]any{"system": "urn:oid:1.2", "value": "MRN-SECRET-1"}}
	for name, in := range map[string]map[string]any{
		"no subject":               {"resourceType": "Goal", "identifier": []any{map[string]any{"system": "urn:ipsfhir:p:goal", "value": "c-SECRET/g1"}}},
		"literal subject only":     {"resourceType": "Goal", "subject": map[string]any{"reference": "Patient/SECRET"}, "identifier": []any{map[string]any{"system": "urn:ipsfhir:p:goal", "value": "c-SECRET/g1"}}},
		"no identifier":            {"resourceType": "Goal", "subject": subject},
		"another program's":        {"resourceType": "Goal", "subject": subject, "identifier": []any{map[string]any{"system": "urn:ipsfhir:q:goal", "value": "c-SECRET/g1"}}},
		"a kind never exported":    {"resourceType": "Goal", "subject": subject, "identifier": []any{map[string]any{"system": "urn:ipsfhir:p:plan-note", "value": "c-SECRET"}}},
		"an identifier with value": {"resourceType": "CarePlan", "subject": subject, "identifier": []any{map[string]any{"system": "urn:ipsfhir:p:plan"}}},
	} {
		out, err := d.resource(in, nil)
		if err == nil || out != nil {
			t.Errorf("%s: %v, %v; want an error", name, out, err)
			continue
		}
		if !errors.Is(err, errDeid) || strings.Contains(err.Error(), "SECRET") {
			t.Errorf("%s: error %q", name, err)
		}
	}
}

func TestDeidKeepsItsInput(t *testing.T) {
	t.Parallel()
	cl, _, byClient := sampleMapped(t)
	d := newDeidentifier(cl.ProgramID(), unitKey, unitScope)
	for _, ms := range byClient {
		for _, m := range ms {
			before := encode(t, m.json)
			if _, err := d.resource(m.json, refsOf(d, ms)); err != nil {
				t.Fatal(err)
			}
			if encode(t, m.json) != before {
				t.Fatalf("resource changed its input %s", m.entry.ResourceType)
			}
		}
	}
}

func TestDeidDropsUnknownReferences(t *testing.T) {
	t.Parallel()
	d := newDeidentifier("p", unitKey, unitScope)
	in := map[string]any{
		"resourceType": "CarePlan", "status": "active", "intent": "plan",
		"subject":    map[string]any{"identifier": map[string]any{"system": "urn:oid:1.2", "value": "MRN1"}},
		"identifier": []any{map[string]any{"system": "urn:ipsfhir:p:plan", "value": "c1"}},
		"goal": []any{
			map[string]any{"reference": "Goal/known", "display": "Work at Joe's"},
			map[string]any{"reference": "Goal/unknown"},
			map[string]any{"display": "a goal named only by text"},
		},
	}
	out, err := d.resource(in, map[string]string{"Goal/known": "Goal/pseudonymous"})
	if err != nil {
		t.Fatal(err)
	}
	if got := encode(t, out["goal"]); got != `[{"reference":"Goal/pseudonymous"}]` {
		t.Errorf("goal %s", got)
	}
}

func TestNewRefusesShortKeys(t *testing.T) {
	t.Parallel()
	const base = "https://ips.example.org/fhir"
	if _, err := New(Options{BaseURL: base, PseudonymKey: []byte("short")}); err == nil {
		t.Error("a 5-byte key was accepted")
	}
	if _, err := New(Options{BaseURL: base, PseudonymKey: unitKey}); err != nil {
		t.Errorf("a %d-byte key: %v", len(unitKey), err)
	}
	if _, err := New(Options{BaseURL: base, CursorKey: []byte("short")}); err == nil {
		t.Error("a 5-byte cursor key was accepted")
	}
}
