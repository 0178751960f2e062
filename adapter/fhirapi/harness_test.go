package fhirapi_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/json"
	"io"
	"mime"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ipsfhir/ipsfhir/adapter/api"
	"github.com/ipsfhir/ipsfhir/adapter/config"
	"github.com/ipsfhir/ipsfhir/adapter/fhirapi"
	"github.com/ipsfhir/ipsfhir/adapter/store"
	"github.com/ipsfhir/ipsfhir/adapter/store/sqlite"
	"github.com/ipsfhir/ipsfhir/adapter/telemetry/telemetrytest"
	"github.com/ipsfhir/ipsfhir/ips"
	"github.com/ipsfhir/ipsfhir/ips/ipstest"
	"github.com/ipsfhir/ipsfhir/mappings"
)

// API keys of the test callers.
const (
	specialistKey = "fhir-test-specialist-0001"
	clinicianKey  = "fhir-test-clinician-0002"
	adminKey      = "fhir-test-admin-0003"
	hieKey        = "fhir-test-hie-0004"
	hie2Key       = "fhir-test-hie-0005"
	directorKey   = "fhir-test-director-0006"
)

func sum(key string) []byte {
	s := sha256.Sum256([]byte(key))
	return s[:]
}

// consent is the program default the tests run with: EHR sharing unless a
// client says no, HIE sharing only when a client says yes (config's default).
var consent = config.Consent{EHR: true, HIE: false}

// harness is the facade over a real SQLite store holding the sample
// caseload, served by httptest.
type harness struct {
	t       *testing.T
	st      store.Store
	cl      *ips.Caseload
	server  *fhirapi.Server
	srv     *httptest.Server
	tel     *telemetrytest.Capture
	offset  atomic.Int64 // added to the server's clock, to expire jobs
	mapping mappings.Options
}

// testPseudonymKey is the pseudonymization key the harness configures
// unless a test says otherwise.
var testPseudonymKey = []byte("fhir-test-pseudonym-key-0123456789abcdef")

// hieScope is the pseudonym scope of the hieKey caller: its name.
const hieScope = "state-hie"

// scopeKey is the documented key of a pseudonym scope: HMAC-SHA256 of
// "ipsfhir-pseudonym-scope|{program}|{scope}" under the configured key.
func scopeKey(key []byte, program, scope string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte("ipsfhir-pseudonym-scope|" + program + "|" + scope))
	return m.Sum(nil)
}

// scoped is the key of the hieKey caller's scope under a configured key.
func (h *harness) scoped(key []byte) []byte { return scopeKey(key, h.cl.ProgramID(), hieScope) }

func newHarness(t *testing.T, tweak ...func(*fhirapi.Options)) *harness {
	t.Helper()
	return newHarnessWith(t, ipstest.Sample(t), tweak...)
}

// newHarnessWith serves the facade over a new store holding cl.
func newHarnessWith(t *testing.T, cl *ips.Caseload, tweak ...func(*fhirapi.Options)) *harness {
	t.Helper()
	st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "ips.db"))
	if err != nil {
		t.Fatalf("open sqlite: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	batch := make([]store.Stored, len(cl.Clients))
	for i, c := range cl.Clients {
		batch[i] = store.Stored{Client: c}
	}
	if _, err := st.SaveClients(t.Context(), batch, nil); err != nil {
		t.Fatalf("load the caseload: %v", err)
	}
	return serveHarness(t, st, cl, tweak...)
}

// sibling is another facade over the same store, configured anew.
func (h *harness) sibling(tweak ...func(*fhirapi.Options)) *harness {
	h.t.Helper()
	return serveHarness(h.t, h.st, h.cl, tweak...)
}

func serveHarness(t *testing.T, st store.Store, cl *ips.Caseload, tweak ...func(*fhirapi.Options)) *harness {
	t.Helper()
	h := &harness{t: t, st: st, cl: cl, tel: telemetrytest.New(t), mapping: mappings.Options{Program: cl.ProgramID()}}
	// The server's address is known before the facade is built: BaseURL,
	// from which every absolute URL is made, is configuration.
	h.srv = httptest.NewUnstartedServer(nil)
	o := fhirapi.Options{
		BaseURL: "http://" + h.srv.Listener.Addr().String() + "/fhir",
		Store:   st,
		Keys: []api.Key{
			{Name: "jordan", Role: api.RoleSpecialist, SHA256: sum(specialistKey)},
			{Name: "dr-okafor", Role: api.RoleClinician, SHA256: sum(clinicianKey)},
			{Name: "ehr-admin", Role: api.RoleAdmin, SHA256: sum(adminKey)},
			{Name: "state-hie", Role: api.RoleHIE, SHA256: sum(hieKey)},
			{Name: "county-hie", Role: api.RoleHIE, SHA256: sum(hie2Key)},
			{Name: "program-director", Role: api.RoleDirector, SHA256: sum(directorKey)},
		},
		Mapping:      h.mapping,
		AllowsEHR:    consent.AllowsEHR,
		AllowsHIE:    consent.AllowsHIE,
		Logger:       h.tel.Logger,
		PseudonymKey: testPseudonymKey,
		Now:          func() time.Time { return time.Now().Add(time.Duration(h.offset.Load())) },
	}
	for _, f := range tweak {
		f(&o)
	}
	s, err := fhirapi.New(o)
	if err != nil {
		t.Fatal(err)
	}
	h.server = s
	h.srv.Config.Handler = s
	h.srv.Start()
	t.Cleanup(func() {
		h.srv.Close()
		s.Close()
	})
	return h
}

// response is what a test needs of an HTTP response.
type response struct {
	status int
	header http.Header
	body   []byte
}

// do sends a request; path may be absolute (a link the server gave) or
// start with /fhir.
func (h *harness) do(method, path, key string, body io.Reader, header ...string) response {
	h.t.Helper()
	u := path
	if strings.HasPrefix(path, "/") {
		u = h.srv.URL + path
	}
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		h.t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Add(header[i], header[i+1])
	}
	resp, err := h.srv.Client().Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		h.t.Fatal(err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

func (h *harness) get(path, key string) response { return h.do(http.MethodGet, path, key, nil) }

// wantOutcome checks that r is an OperationOutcome error with the status,
// and returns its text.
func wantOutcome(t *testing.T, r response, status int) string {
	t.Helper()
	if r.status != status {
		t.Errorf("status %d, want %d; body %s", r.status, status, r.body)
	}
	if mt, _, _ := mime.ParseMediaType(r.header.Get("Content-Type")); mt != "application/fhir+json" {
		t.Errorf("Content-Type %q, want application/fhir+json", r.header.Get("Content-Type"))
	}
	var oo struct {
		ResourceType string `json:"resourceType"`
		Issue        []struct {
			Severity string `json:"severity"`
			Code     string `json:"code"`
			Details  struct {
				Text string `json:"text"`
			} `json:"details"`
		} `json:"issue"`
	}
	if err := json.Unmarshal(r.body, &oo); err != nil || oo.ResourceType != "OperationOutcome" || len(oo.Issue) == 0 {
		t.Fatalf("not an OperationOutcome with issues: %s", r.body)
	}
	var text []string
	for _, i := range oo.Issue {
		if i.Severity != "error" && i.Severity != "fatal" {
			t.Errorf("issue severity %q, want error", i.Severity)
		}
		text = append(text, i.Details.Text)
	}
	return strings.Join(text, "\n")
}

// searchset reads a searchset Bundle.
type searchsetBundle struct {
	ResourceType string `json:"resourceType"`
	Type         string `json:"type"`
	Total        *int   `json:"total"`
	Link         []struct {
		Relation string `json:"relation"`
		URL      string `json:"url"`
	} `json:"link"`
	Entry []struct {
		FullURL  string          `json:"fullUrl"`
		Resource json.RawMessage `json:"resource"`
		Search   struct {
			Mode string `json:"mode"`
		} `json:"search"`
	} `json:"entry"`
}

func (h *harness) search(path, key string) searchsetBundle {
	h.t.Helper()
	r := h.get(path, key)
	if r.status != http.StatusOK {
		h.t.Fatalf("GET %s: %d %s", path, r.status, r.body)
	}
	var b searchsetBundle
	if err := json.Unmarshal(r.body, &b); err != nil || b.ResourceType != "Bundle" || b.Type != "searchset" || b.Total == nil {
		h.t.Fatalf("GET %s: not a searchset Bundle with a total: %s", path, r.body)
	}
	return b
}

func (b searchsetBundle) link(rel string) string {
	for _, l := range b.Link {
		if l.Relation == rel {
			return l.URL
		}
	}
	return ""
}

// ids lists the ids of the Bundle's matches.
func (b searchsetBundle) ids(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, e := range b.Entry {
		if e.Search.Mode != "match" {
			continue
		}
		var r struct {
			ID string `json:"id"`
		}
		if err := json.Unmarshal(e.Resource, &r); err != nil {
			t.Fatal(err)
		}
		if !strings.HasSuffix(e.FullURL, "/"+r.ID) {
			t.Errorf("fullUrl %q does not end in the id %q", e.FullURL, r.ID)
		}
		out = append(out, r.ID)
	}
	return out
}

// idOf is a record's id on the facade, computed from its key.
func idOf(k mappings.Key) string { return strings.TrimPrefix(k.FullURL(), "urn:uuid:") }

// idsOfType lists the facade ids of a client's resources of one type, in
// mapping order.
func (h *harness) idsOfType(c *ips.Client, typ string) []string {
	var out []string
	for _, e := range mappings.ClientEntries(c, h.mapping) {
		if e.ResourceType == typ {
			out = append(out, idOf(e.Key))
		}
	}
	return out
}

// patientData is what must never reach logs or error bodies: every patient
// identifier value and goal description of the sample.
func (h *harness) patientData() []string {
	var out []string
	for _, c := range h.cl.Clients {
		out = append(out, c.Patient.Value)
		for _, g := range c.Goals {
			out = append(out, g.Description)
		}
	}
	return out
}

// outcomes lists the texts of the issues of the Bundle's OperationOutcome
// entries (search.mode outcome): what a lenient search ignored. Each must
// be a warning.
func (b searchsetBundle) outcomes(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, e := range b.Entry {
		if e.Search.Mode != "outcome" {
			continue
		}
		var oo struct {
			ResourceType string `json:"resourceType"`
			Issue        []struct {
				Severity, Code string
				Details        struct{ Text string }
			} `json:"issue"`
		}
		if err := json.Unmarshal(e.Resource, &oo); err != nil || oo.ResourceType != "OperationOutcome" {
			t.Fatalf("an outcome entry is not an OperationOutcome: %s", e.Resource)
		}
		for _, i := range oo.Issue {
			if i.Severity != "warning" {
				t.Errorf("outcome issue severity %q, want warning", i.Severity)
			}
			out = append(out, i.Details.Text)
		}
	}
	return out
}

// matches counts the Bundle's matches (search.mode match).
func (b searchsetBundle) matches() int {
	n := 0
	for _, e := range b.Entry {
		if e.Search.Mode == "match" {
			n++
		}
	}
	return n
}
