package fhirapi

import (
	"encoding/json"
	"io/fs"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ipsfhir/ipsfhir/conformance/artifacts"
	"github.com/ipsfhir/ipsfhir/ips"
	"github.com/ipsfhir/ipsfhir/ips/ipstest"
	"github.com/ipsfhir/ipsfhir/mappings"
)

// declared is what a CapabilityStatement says of one resource type (""
// for the system level).
type declared struct {
	interactions []string
	params       map[string]string // name → type
	definitions  map[string]string // name → definition
	operations   map[string]string // name → definition
}

func statementOf(t *testing.T, data []byte) map[string]declared {
	t.Helper()
	var cs struct {
		Rest []struct {
			Mode     string `json:"mode"`
			Resource []struct {
				Type        string `json:"type"`
				Interaction []struct {
					Code string `json:"code"`
				} `json:"interaction"`
				SearchParam []struct {
					Name, Type, Definition string
				} `json:"searchParam"`
				Operation []struct {
					Name, Definition string
				} `json:"operation"`
			} `json:"resource"`
			Operation []struct {
				Name, Definition string
			} `json:"operation"`
		} `json:"rest"`
	}
	if err := json.Unmarshal(data, &cs); err != nil {
		t.Fatal(err)
	}
	if len(cs.Rest) != 1 || cs.Rest[0].Mode != "server" {
		t.Fatalf("want one rest entry, mode server")
	}
	out := map[string]declared{"": {operations: map[string]string{}}}
	for _, op := range cs.Rest[0].Operation {
		out[""].operations[op.Name] = op.Definition
	}
	for _, r := range cs.Rest[0].Resource {
		if _, dup := out[r.Type]; dup {
			t.Errorf("%s declared twice", r.Type)
		}
		d := declared{params: map[string]string{}, definitions: map[string]string{}, operations: map[string]string{}}
		for _, i := range r.Interaction {
			d.interactions = append(d.interactions, i.Code)
		}
		slices.Sort(d.interactions)
		for _, p := range r.SearchParam {
			d.params[p.Name], d.definitions[p.Name] = p.Type, p.Definition
		}
		for _, op := range r.Operation {
			d.operations[op.Name] = op.Definition
		}
		out[r.Type] = d
	}
	return out
}

// served derives the same from the route table.
func served() map[string]declared {
	out := map[string]declared{"": {operations: map[string]string{}}}
	for _, rt := range routes() {
		if rt.interaction == "" && rt.operation == "" {
			continue
		}
		d, ok := out[rt.resource]
		if !ok {
			d = declared{params: map[string]string{}, definitions: map[string]string{}, operations: map[string]string{}}
		}
		if rt.interaction != "" && !slices.Contains(d.interactions, rt.interaction) {
			d.interactions = append(d.interactions, rt.interaction)
			slices.Sort(d.interactions)
		}
		for _, p := range rt.params {
			d.params[p.name], d.definitions[p.name] = p.typ, p.definition
		}
		if rt.operation != "" {
			def := "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/" + rt.operation
			if rt.resource == "Group" {
				def = "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/group-" + rt.operation
			}
			d.operations[rt.operation] = def
		}
		out[rt.resource] = d
	}
	return out
}

// TestStatementDeclaresWhatTheRouterServes holds the published server
// CapabilityStatement to the route table: every interaction, search
// parameter and operation served is declared, and nothing else is.
func TestStatementDeclaresWhatTheRouterServes(t *testing.T) {
	t.Parallel()
	data, err := fs.ReadFile(artifacts.FS(), serverStatementPath)
	if err != nil {
		t.Fatal(err)
	}
	got, want := statementOf(t, data), served()
	for _, typ := range slices.Sorted(maps.Keys(want)) {
		g, ok := got[typ]
		w := want[typ]
		if !ok {
			t.Errorf("%s is served but not declared", typ)
			continue
		}
		if !slices.Equal(g.interactions, w.interactions) {
			t.Errorf("%s: declares interactions %v, serves %v", typ, g.interactions, w.interactions)
		}
		if !maps.Equal(g.params, w.params) {
			t.Errorf("%s: declares search parameters %v, serves %v", typ, g.params, w.params)
		}
		if !maps.Equal(g.definitions, w.definitions) {
			t.Errorf("%s: declares parameter definitions %v, the router has %v", typ, g.definitions, w.definitions)
		}
		if !maps.Equal(g.operations, w.operations) {
			t.Errorf("%s: declares operations %v, serves %v", typ, g.operations, w.operations)
		}
	}
	for typ := range got {
		if _, ok := want[typ]; !ok {
			t.Errorf("%s is declared but not served", typ)
		}
	}
}

func TestPublishedStatementsAreValid(t *testing.T) {
	t.Parallel()
	v, err := mappings.NewValidator()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"ipsfhir-server.json", "ipsfhir-client.json"} {
		data, err := fs.ReadFile(artifacts.FS(), artifacts.DirCapabilities+"/"+name)
		if err != nil {
			t.Fatal(err)
		}
		issues, err := v.ValidateJSON(data)
		if err != nil || mappings.HasErrors(issues) {
			t.Errorf("%s: %v\n%s", name, err, mappings.OperationOutcomeJSON(issues))
		}
		var head struct {
			ResourceType, ID, URL, Version, Publisher, Kind string
			Software                                        *struct{ Name string }
			Implementation                                  any
		}
		if err := json.Unmarshal(data, &head); err != nil {
			t.Fatal(err)
		}
		if head.ResourceType != "CapabilityStatement" || head.ID+".json" != name ||
			head.URL != mappings.CanonicalBase+"/CapabilityStatement/"+head.ID || head.Version != "0.1.0" || head.Publisher != "ipsfhir" {
			t.Errorf("%s: header %+v", name, head)
		}
		// cpb-15: a capability statement names its software and no implementation.
		if head.Kind != "capability" || head.Software == nil || head.Software.Name != "ipsfhir" || head.Implementation != nil {
			t.Errorf("%s: kind %q, software %v, implementation %v", name, head.Kind, head.Software, head.Implementation)
		}
	}
}

// TestKeysOfMatchesClientEntries: the facade counts and indexes with
// keysOf, and maps with mappings.ClientEntries; they must list the same
// resources in the same order.
func TestKeysOfMatchesClientEntries(t *testing.T) {
	t.Parallel()
	cl := ipstest.Sample(t)
	for _, prapare := range []bool{false, true} {
		s := &Server{mapping: mappings.Options{Program: cl.ProgramID(), PRAPARE: prapare}}
		for _, c := range cl.Clients {
			es := mappings.ClientEntries(c, s.mapping)
			ks := s.keysOf(c)
			if len(es) != len(ks) {
				t.Fatalf("client %s (PRAPARE %v): %d entries, %d keys", c.ID, prapare, len(es), len(ks))
			}
			for i := range es {
				if es[i].Key != ks[i].key || es[i].ResourceType != ks[i].typ {
					t.Errorf("client %s entry %d: %v %s, keysOf %v %s", c.ID, i, es[i].Key, es[i].ResourceType, ks[i].key, ks[i].typ)
				}
				if typeOfKind(ks[i].key.Kind) != ks[i].typ {
					t.Errorf("typeOfKind(%s) = %q, mapped as %s", ks[i].key.Kind, typeOfKind(ks[i].key.Kind), ks[i].typ)
				}
			}
		}
	}
}

func TestParseDate(t *testing.T) {
	t.Parallel()
	utc := func(s string) time.Time {
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			panic(err)
		}
		return t
	}
	cases := []struct {
		in         string
		prefix     string
		start, end string
	}{
		{"2025", "eq", "2025-01-01T00:00:00Z", "2026-01-01T00:00:00Z"},
		{"gt2025-02", "gt", "2025-02-01T00:00:00Z", "2025-03-01T00:00:00Z"},
		{"le2025-02-28", "le", "2025-02-28T00:00:00Z", "2025-03-01T00:00:00Z"},
		{"ge2025-02-28T10:15Z", "ge", "2025-02-28T10:15:00Z", "2025-02-28T10:16:00Z"},
		{"lt2025-02-28T10:15:30+02:00", "lt", "2025-02-28T08:15:30Z", "2025-02-28T08:15:31Z"},
		{"2025-02-28T10:15:30.25Z", "eq", "2025-02-28T10:15:30.25Z", "2025-02-28T10:15:30.26Z"},
	}
	for _, c := range cases {
		d, msg := parseDate(c.in)
		if msg != "" || d.prefix != c.prefix || !d.start.Equal(utc(c.start)) || !d.end.Equal(utc(c.end)) {
			t.Errorf("%s: %q %s..%s %q", c.in, d.prefix, d.start, d.end, msg)
		}
	}
	for _, bad := range []string{"", "20", "2025-13", "2025-02-30", "2025-02-28T10:15", "2025-02-28T25:00Z", "ap2025", "xx2025", "2025-02-28T10:15:30.1234567891Z", "2025/02/28"} {
		if _, msg := parseDate(bad); msg == "" {
			t.Errorf("%q accepted", bad)
		}
	}
	// Prefixes on an instant target.
	d, _ := parseDate("2025-02-28")
	in, before, after := utc("2025-02-28T12:00:00Z"), utc("2025-02-27T23:59:59Z"), utc("2025-03-01T00:00:00Z")
	for prefix, want := range map[string][3]bool{ // before, in, after
		"eq": {false, true, false}, "gt": {false, false, true}, "ge": {false, true, true},
		"lt": {true, false, false}, "le": {true, true, false},
	} {
		d.prefix = prefix
		if got := [3]bool{d.matches(before), d.matches(in), d.matches(after)}; got != want {
			t.Errorf("%s: %v, want %v", prefix, got, want)
		}
	}
}

// TestCodingsOfMatchesMapping: code searches count Observations by
// codingsOf, without mapping them; it must list the codings the mapping
// writes in Observation.code, a site's own codes included.
func TestCodingsOfMatchesMapping(t *testing.T) {
	t.Parallel()
	cl := ipstest.Sample(t)
	site := map[mappings.Kind]ips.Coding{
		mappings.KindEmploymentStatus: {System: "urn:oid:1.2.3.4", Code: "es-1", Display: "Employment status"},
		mappings.KindJob:              {System: "urn:oid:1.2.3.5", Code: "job-1"},
		mappings.KindPRAPARE:          {System: "urn:oid:1.2.3.6", Code: "prapare-1"},
	}
	for _, o := range []mappings.Options{{Program: cl.ProgramID()}, {Program: cl.ProgramID(), PRAPARE: true, SiteCodes: site}} {
		s := &Server{mapping: o}
		seen := map[mappings.Kind]bool{}
		for _, c := range cl.Clients {
			for _, e := range mappings.ClientEntries(c, o) {
				if e.ResourceType != "Observation" {
					continue
				}
				body, err := mappings.MarshalCompact(e.Resource)
				if err != nil {
					t.Fatal(err)
				}
				var obs struct {
					Code struct {
						Coding []struct{ System, Code string }
					}
				}
				if err := json.Unmarshal(body, &obs); err != nil {
					t.Fatal(err)
				}
				var got []ips.Coding
				for _, c := range obs.Code.Coding {
					got = append(got, ips.Coding{System: c.System, Code: c.Code})
				}
				var want []ips.Coding
				for _, c := range s.codingsOf(e.Key.Kind) {
					want = append(want, ips.Coding{System: c.System, Code: c.Code})
				}
				if !slices.Equal(got, want) {
					t.Errorf("%s (site codes %v): mapped code %v, codingsOf %v", e.Key.Kind, o.SiteCodes != nil, got, want)
				}
				seen[e.Key.Kind] = true
			}
		}
		if len(seen) < 2 {
			t.Errorf("only %v Observation kinds in the sample", seen)
		}
	}
}

// TestStatementNamesResultParameters: the result parameters record searches
// take are not searchParams; the statement's rest.documentation names each,
// and says how unsupported parameters are handled.
func TestStatementNamesResultParameters(t *testing.T) {
	t.Parallel()
	data, err := fs.ReadFile(artifacts.FS(), serverStatementPath)
	if err != nil {
		t.Fatal(err)
	}
	var cs struct {
		Rest []struct{ Documentation string } `json:"rest"`
	}
	if err := json.Unmarshal(data, &cs); err != nil {
		t.Fatal(err)
	}
	doc := cs.Rest[0].Documentation
	for _, want := range append(append(slices.Clone(resultParams), recordResults...),
		"_sort=_lastUpdated", "-_lastUpdated", "_summary=count", "SUBSETTED", "Prefer: handling=strict", "search.mode outcome") {
		if want == paramFormat {
			continue // the statement's format says JSON
		}
		if !strings.Contains(doc, want) {
			t.Errorf("rest.documentation does not say %q", want)
		}
	}
}
