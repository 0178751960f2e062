package fhirapi_test

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ipsfhir/ipsfhir/adapter/api"
	"github.com/ipsfhir/ipsfhir/adapter/fhirapi"
	"github.com/ipsfhir/ipsfhir/ips"
	"github.com/ipsfhir/ipsfhir/ips/ipstest"
	"github.com/ipsfhir/ipsfhir/mappings"
)

// distinctive makes the first n clients of the sample consent to HIE
// sharing and gives them ids, MRNs and free text found nowhere else, so a
// byte search of the export finds any that leaks. It returns the clients
// and every such string.
func distinctive(t *testing.T, cl *ips.Caseload, n int) ([]*ips.Client, []string) {
	t.Helper()
	yes := true
	var out []*ips.Client
	var secrets []string
	add := func(s string) string { secrets = append(secrets, s); return s }
	for i, c := range cl.Clients[:n] {
		c.ID = add(fmt.Sprintf("client-zqx-%02d", i))
		c.Patient.Value = add(fmt.Sprintf("MRN-QUIZ-%05d", 70000+i))
		c.Specialist = add(fmt.Sprintf("Quillon Zephyrine %d", i))
		c.Consent = &ips.Consent{EHR: &yes, HIE: &yes}
		if c.Preferences != nil {
			c.Preferences.Location = add(fmt.Sprintf("near Xylophone Square %d", i))
		}
		goalIDs := map[string]string{}
		for j, g := range c.Goals {
			goalIDs[g.ID] = fmt.Sprintf("goal-qux-%d", j)
			g.ID = add(goalIDs[g.ID])
			g.Description = add(fmt.Sprintf("I want to pilot the airship Quixotica %d-%d", i, j))
			for k := range g.Notes {
				g.Notes[k].Text = add(fmt.Sprintf("Zebulon mentioned the lighthouse %d-%d-%d", i, j, k))
			}
		}
		for j, s := range c.Supports {
			if s.Goal != "" {
				s.Goal = goalIDs[s.Goal]
			}
			s.ID = add(fmt.Sprintf("support-wyz-%d", j))
			s.Note = add(fmt.Sprintf("Met Mx. Vorpal at the quarry %d-%d", i, j))
		}
		for j, job := range c.Jobs {
			job.ID = add(fmt.Sprintf("job-kvw-%d", j))
			job.Employer = add(fmt.Sprintf("Quux Widgetry Incorporated %d-%d", i, j))
			job.Title = add(fmt.Sprintf("Chief Zeppelin Quartermaster %d-%d", i, j))
			if job.Occupation != nil {
				job.Occupation.Display = add(fmt.Sprintf("Occupation as Typed by Xavier %d-%d", i, j))
			}
			if job.Industry != nil {
				job.Industry.Display = add(fmt.Sprintf("Industry as Typed by Yolanda %d-%d", i, j))
			}
		}
		out = append(out, c)
	}
	// The patient identifier system is the EHR's, not patient data, but it
	// is not the pseudonym's either: it must not appear.
	secrets = append(secrets, out[0].Patient.System)
	if err := ips.Validate(cl); err != nil {
		t.Fatalf("the distinctive caseload: %v", err)
	}
	return out, secrets
}

// exportAll runs an export and returns every output file's bytes by type.
func (h *harness) exportAll(path, key string) (bulkManifest, map[string][]byte) {
	h.t.Helper()
	m, r := h.wait(h.kickOff(path, key), key)
	if r.status != http.StatusOK {
		h.t.Fatalf("export: %d %s", r.status, r.body)
	}
	files := map[string][]byte{}
	for _, f := range m.Output {
		r := h.get(f.URL, key)
		if r.status != http.StatusOK {
			h.t.Fatalf("download %s: %d", f.Type, r.status)
		}
		files[f.Type] = r.body
	}
	return m, files
}

func pseudonym(key []byte, id ips.Identifier) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(id.System + "|" + id.Value))
	return hex.EncodeToString(m.Sum(nil))
}

type exportedResource struct {
	ResourceType string `json:"resourceType"`
	ID           string `json:"id"`
	Subject      struct {
		Identifier struct {
			System string `json:"system"`
			Value  string `json:"value"`
		} `json:"identifier"`
	} `json:"subject"`
	Goal []struct {
		Reference string `json:"reference"`
	} `json:"goal"`
}

func TestDeidentifiedExport(t *testing.T) {
	t.Parallel()
	cl := ipstest.Sample(t)
	clients, secrets := distinctive(t, cl, 6)
	h := newHarnessWith(t, cl)
	v, err := mappings.NewValidator()
	if err != nil {
		t.Fatal(err)
	}
	var hie []*ips.Client
	for _, c := range cl.Clients {
		if consent.AllowsHIE(c) {
			hie = append(hie, c)
		}
	}

	m, files := h.exportAll("/fhir/$export", hieKey)
	lines := h.download(m, hieKey) // checks types and counts
	var all []byte
	for _, f := range m.Output {
		all = append(all, files[f.Type]...)
	}
	for _, s := range secrets {
		if bytes.Contains(all, []byte(s)) {
			t.Errorf("the de-identified export holds %q", s)
		}
	}
	for _, c := range clients {
		for _, e := range mappings.ClientEntries(c, h.mapping) {
			if bytes.Contains(all, []byte(idOf(e.Key))) {
				t.Errorf("the de-identified export holds the facade id of a %s", e.ResourceType)
			}
		}
	}
	if _, ok := files["DocumentReference"]; ok {
		t.Error("chart notes are in the de-identified export")
	}
	if got, want := idsByType(t, lines), h.exportedDeid(hie, h.scoped(testPseudonymKey)); !equalSets(got, want) {
		t.Errorf("exported %v\nwant %v", got, want)
	}

	// Every line validates; a person's records share one pseudonym, which
	// is the HMAC of their patient identifier; plans refer to exported goals.
	program := cl.ProgramID()
	bySubject := map[string]int{}
	goals := map[string]bool{}
	var plans []exportedResource
	for typ, ls := range lines {
		for i, l := range ls {
			if issues, err := v.ValidateJSON(l); err != nil || mappings.HasErrors(issues) {
				t.Errorf("%s line %d is not valid: %v\n%s\n%s", typ, i+1, err, mappings.OperationOutcomeJSON(issues), l)
			}
			var r exportedResource
			if err := json.Unmarshal(l, &r); err != nil {
				t.Fatal(err)
			}
			if r.Subject.Identifier.System != fhirapi.PatientPseudonymSystem(program) {
				t.Errorf("%s subject system %q", typ, r.Subject.Identifier.System)
			}
			bySubject[r.Subject.Identifier.Value]++
			switch typ {
			case "Goal":
				goals["Goal/"+r.ID] = true
			case "CarePlan":
				plans = append(plans, r)
			}
			if !bytes.Contains(l, []byte(`{"code":"PSEUDED","display":"pseudonymized","system":"http://terminology.hl7.org/CodeSystem/v3-ObservationValue"}`)) {
				t.Errorf("%s line %d has no PSEUDED label", typ, i+1)
			}
		}
	}
	if len(bySubject) != len(hie) {
		t.Errorf("%d pseudonyms for %d people", len(bySubject), len(hie))
	}
	for _, c := range clients {
		want := len(h.exportedDeid([]*ips.Client{c}, h.scoped(testPseudonymKey))["Goal"]) + 1 +
			len(h.exportedDeid([]*ips.Client{c}, h.scoped(testPseudonymKey))["Observation"])
		if got := bySubject[pseudonym(h.scoped(testPseudonymKey), c.Patient)]; got != want {
			t.Errorf("client %s: %d resources under its pseudonym, want %d", c.ID, got, want)
		}
	}
	for _, p := range plans {
		for _, g := range p.Goal {
			if !goals[g.Reference] {
				t.Errorf("a CarePlan refers to %s, which is not in the export", g.Reference)
			}
		}
	}

	// Stable: a second export is the same, byte for byte.
	_, again := h.exportAll("/fhir/$export", hieKey)
	for typ, b := range files {
		if !bytes.Equal(again[typ], b) {
			t.Errorf("%s: a second export differs", typ)
		}
	}

	// Another key: other pseudonyms and ids throughout.
	otherKey := []byte("another-deployment-key-0123456789abcdef")
	other := h.sibling(func(o *fhirapi.Options) { o.PseudonymKey = otherKey })
	om, _ := other.exportAll("/fhir/$export", hieKey)
	if got, want := idsByType(t, other.download(om, hieKey)), h.exportedDeid(hie, h.scoped(otherKey)); !equalSets(got, want) {
		t.Errorf("another key: exported %v\nwant %v", got, want)
	}
	for _, c := range clients {
		p := pseudonym(h.scoped(testPseudonymKey), c.Patient)
		for _, f := range om.Output {
			if r := other.get(f.URL, hieKey); bytes.Contains(r.body, []byte(p)) {
				t.Errorf("another key gives client %s the same pseudonym", c.ID)
			}
		}
	}

	// The admin's export is identified, chart notes included.
	am, afiles := h.exportAll("/fhir/$export", adminKey)
	if got, want := idsByType(t, h.download(am, adminKey)), h.exported(hie); !equalSets(got, want) {
		t.Errorf("admin export %v\nwant %v", got, want)
	}
	var adminAll []byte
	for _, b := range afiles {
		adminAll = append(adminAll, b...)
	}
	for _, s := range []string{clients[0].Patient.Value, clients[0].Goals[0].Description, clients[0].ID + "/"} {
		if !bytes.Contains(adminAll, []byte(s)) {
			t.Errorf("the admin export lacks %q: it should be identified", s)
		}
	}

	// Nothing of it reached the log.
	h.tel.AssertNoneOf(t, secrets...)
}

func TestDeidentifiedExportTypes(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(o *fhirapi.Options) { o.Limits.MaxJobs = 20 })
	for _, q := range []string{"_type=DocumentReference", "_type=Goal,DocumentReference"} {
		text := wantOutcome(t, h.do(http.MethodGet, "/fhir/$export?"+q, hieKey, nil, "Prefer", "respond-async"), http.StatusBadRequest)
		if !strings.Contains(text, "DocumentReference is not in a de-identified export") {
			t.Errorf("%s: %s", q, text)
		}
	}
	// Leniently, the chart notes are left out and the manifest says so.
	m, _ := h.wait(h.kickOff("/fhir/$export?_type=Goal,DocumentReference", hieKey, "respond-async", "handling=lenient"), hieKey)
	if len(m.Output) != 1 || m.Output[0].Type != "Goal" || len(m.Error) != 1 {
		t.Errorf("lenient: %+v", m)
	}
	// An admin may still export chart notes.
	m, _ = h.wait(h.kickOff("/fhir/$export?_type=DocumentReference", adminKey), adminKey)
	if len(m.Output) != 1 || m.Output[0].Type != "DocumentReference" {
		t.Errorf("admin: %+v", m.Output)
	}
}

func TestExportWithoutPseudonymKey(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(o *fhirapi.Options) { o.PseudonymKey = nil })
	for _, path := range []string{"/fhir/$export", "/fhir/Group/" + h.cl.ProgramID() + "/$export"} {
		r := h.do(http.MethodGet, path, hieKey, nil, "Prefer", "respond-async")
		text := wantOutcome(t, r, http.StatusNotImplemented)
		if !strings.Contains(text, "export.pseudonymKey") || !strings.Contains(text, "nothing was exported") {
			t.Errorf("%s: %s", path, text)
		}
		if r.header.Get("Content-Location") != "" {
			t.Errorf("%s: a job was started", path)
		}
	}
	// The admin's identified export needs no key.
	m, _ := h.wait(h.kickOff("/fhir/$export?_type=Goal", adminKey), adminKey)
	if len(m.Output) != 1 {
		t.Errorf("admin export without a key: %+v", m.Output)
	}
	if r := h.get(m.Output[0].URL, adminKey); !bytes.Contains(r.body, []byte(h.cl.Clients[0].Patient.System)) {
		t.Error("the admin export is not identified")
	}
}

// subjectsAndIDs lists the patient pseudonyms and resource ids of an
// export's lines.
func subjectsAndIDs(t *testing.T, lines map[string][][]byte) (subjects, ids map[string]bool) {
	t.Helper()
	subjects, ids = map[string]bool{}, map[string]bool{}
	for _, ls := range lines {
		for _, l := range ls {
			var r exportedResource
			if err := json.Unmarshal(l, &r); err != nil {
				t.Fatal(err)
			}
			subjects[r.Subject.Identifier.Value] = true
			ids[r.ID] = true
		}
	}
	return subjects, ids
}

// TestDeidentifiedExportScopes: pseudonyms are scoped per recipient. Two
// HIEs get pseudonyms and ids they cannot join on; one HIE gets the same
// ones in every export; HIEs the configuration puts in one scope share them.
func TestDeidentifiedExportScopes(t *testing.T) {
	t.Parallel()
	cl := ipstest.Sample(t)
	distinctive(t, cl, 6)
	h := newHarnessWith(t, cl)
	var hie []*ips.Client
	for _, c := range cl.Clients {
		if consent.AllowsHIE(c) {
			hie = append(hie, c)
		}
	}
	if len(hie) < 2 {
		t.Fatalf("%d consenting clients: too few to compare pseudonyms", len(hie))
	}

	// Two recipients: nothing in common.
	sm, _ := h.exportAll("/fhir/$export", hieKey)
	state := h.download(sm, hieKey)
	cm, _ := h.exportAll("/fhir/$export", hie2Key)
	county := h.download(cm, hie2Key)
	ss, sids := subjectsAndIDs(t, state)
	cs, cids := subjectsAndIDs(t, county)
	if len(ss) != len(hie) || len(cs) != len(hie) {
		t.Fatalf("%d and %d pseudonyms for %d people", len(ss), len(cs), len(hie))
	}
	for p := range ss {
		if cs[p] {
			t.Errorf("state-hie and county-hie share the pseudonym %s", p)
		}
	}
	for id := range sids {
		if cids[id] {
			t.Errorf("state-hie and county-hie share the resource id %s", id)
		}
	}
	// Each recipient's pseudonyms are the documented ones of its scope,
	// its API key's name.
	countyKey := scopeKey(testPseudonymKey, cl.ProgramID(), "county-hie")
	for _, c := range hie {
		if !ss[pseudonym(h.scoped(testPseudonymKey), c.Patient)] || !cs[pseudonym(countyKey, c.Patient)] {
			t.Errorf("client %s: not under its scoped pseudonyms", c.ID)
		}
	}
	if got, want := idsByType(t, county), h.exportedDeid(hie, countyKey); !equalSets(got, want) {
		t.Errorf("county-hie ids %v\nwant %v", got, want)
	}

	// One recipient, another export: the same lines, pseudonyms and all.
	sm2, _ := h.exportAll("/fhir/$export", hieKey)
	again := h.download(sm2, hieKey)
	for typ, ls := range state {
		if len(again[typ]) != len(ls) {
			t.Fatalf("%s: %d lines, then %d", typ, len(ls), len(again[typ]))
		}
		for i := range ls {
			if !bytes.Equal(ls[i], again[typ][i]) {
				t.Errorf("%s line %d differs between two exports to state-hie", typ, i+1)
			}
		}
	}

	// The configuration puts both HIEs in one scope: they share it.
	shared := h.sibling(func(o *fhirapi.Options) {
		for i := range o.Keys {
			if o.Keys[i].Role == api.RoleHIE {
				o.Keys[i].PseudonymScope = "regional-exchange"
			}
		}
	})
	am, _ := shared.exportAll("/fhir/$export", hieKey)
	a := shared.download(am, hieKey)
	bm, _ := shared.exportAll("/fhir/$export", hie2Key)
	b := shared.download(bm, hie2Key)
	as, _ := subjectsAndIDs(t, a)
	bs, _ := subjectsAndIDs(t, b)
	if len(as) != len(hie) || !maps.Equal(as, bs) {
		t.Errorf("a shared scope gives %d and %d pseudonyms, not the same %d", len(as), len(bs), len(hie))
	}
	regional := scopeKey(testPseudonymKey, cl.ProgramID(), "regional-exchange")
	if got, want := idsByType(t, b), h.exportedDeid(hie, regional); !equalSets(got, want) {
		t.Errorf("shared scope ids %v\nwant %v", got, want)
	}
	for p := range as {
		if ss[p] || cs[p] {
			t.Errorf("the shared scope reuses a pseudonym of a recipient's own scope: %s", p)
		}
	}
}

// TestExportFilesScope: Server.Export (ipsfhir export) writes, for a
// pseudonym scope, the lines $export gives an hie caller of that scope, and
// refuses a de-identified export that names no scope.
func TestExportFilesScope(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	m, _ := h.exportAll("/fhir/$export", hieKey)
	viaAPI := h.download(m, hieKey)
	dir, otherDir := t.TempDir(), t.TempDir()
	files, err := h.server.Export(t.Context(), fhirapi.ExportOptions{PseudonymScope: hieScope, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != len(viaAPI) {
		t.Fatalf("%d files, $export gave %d", len(files), len(viaAPI))
	}
	read := func(dir, name string) []byte {
		t.Helper()
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	for _, f := range files {
		data := read(dir, f.Name)
		if want := bytes.Join(viaAPI[f.Type], []byte("\n")); !bytes.Equal(bytes.TrimSuffix(data, []byte("\n")), want) {
			t.Errorf("%s: the file differs from what $export gives state-hie", f.Type)
		}
		if f.Size != int64(len(data)) {
			t.Errorf("%s: Size %d, the file holds %d bytes", f.Type, f.Size, len(data))
		}
	}
	other, err := h.server.Export(t.Context(), fhirapi.ExportOptions{PseudonymScope: "county-hie", Dir: otherDir})
	if err != nil {
		t.Fatal(err)
	}
	for i, f := range other {
		if bytes.Equal(read(otherDir, f.Name), read(dir, files[i].Name)) {
			t.Errorf("%s: another scope, the same file", f.Type)
		}
	}
	if _, err := h.server.Export(t.Context(), fhirapi.ExportOptions{Dir: t.TempDir()}); !errors.Is(err, fhirapi.ErrExportRequest) || !strings.Contains(err.Error(), "pseudonym scope") {
		t.Errorf("no scope: %v", err)
	}
	if _, err := h.server.Export(t.Context(), fhirapi.ExportOptions{Identified: true}); !errors.Is(err, fhirapi.ErrExportRequest) || !strings.Contains(err.Error(), "directory") {
		t.Errorf("no directory: %v", err)
	}
	if _, err := h.server.Export(t.Context(), fhirapi.ExportOptions{Identified: true, Dir: t.TempDir()}); err != nil {
		t.Errorf("an identified export needs no scope: %v", err)
	}
}
