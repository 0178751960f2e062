package main

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ipsfhir/ipsfhir/adapter/store"
	"github.com/ipsfhir/ipsfhir/adapter/store/postgres"
	"github.com/ipsfhir/ipsfhir/adapter/store/sqlite"
	"github.com/ipsfhir/ipsfhir/adapter/store/storetest"
	"github.com/ipsfhir/ipsfhir/ips"
	"github.com/ipsfhir/ipsfhir/ips/ipstest"
)

// importConfig writes a configuration for the sample's program with an
// SQLite store (relative to the file, as users write it), one enabled and
// one disabled connection, and returns its path and the database's.
func importConfig(t *testing.T, extra string) (cfgPath, dbPath string) {
	t.Helper()
	dir := t.TempDir()
	cfgPath = filepath.Join(dir, "ipsfhir.yaml")
	doc := `program: {id: riverside-ips}
store: {driver: sqlite, dsn: ips.db}
connections:
  - {name: clinic-a, fhirBaseUrl: "http://127.0.0.1:8103/fhir/R4", enabled: true, auth: {type: none}}
  - {name: clinic-b, fhirBaseUrl: "https://ehr.example.org/fhir/R4", auth: {type: none}}
` + extra
	if err := os.WriteFile(cfgPath, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	return cfgPath, filepath.Join(dir, "ips.db")
}

// storedClients reads every client of a store, with versions.
func storedClients(t *testing.T, st store.Store) []store.Stored {
	t.Helper()
	all, err := st.ListClients(t.Context(), "", 100000)
	if err != nil {
		t.Fatal(err)
	}
	return all
}

func openSQLite(t *testing.T, path string) store.Store {
	t.Helper()
	st, err := sqlite.Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// patientValues are the sample's patient identifiers, which no output may show.
func patientValues(t *testing.T) []string {
	var out []string
	for _, c := range ipstest.Sample(t).Clients {
		out = append(out, c.Patient.Value)
	}
	return out
}

func TestImportSample(t *testing.T) {
	t.Parallel()
	cfg, db := importConfig(t, "")
	sample := repoFile("testdata", "caseload-sample.json")

	code, stdout, stderr := ipsfhir(t, "", "import", "--config", cfg, sample)
	if code != exitOK {
		t.Fatalf("import: exit %d\n%s%s", code, stdout, stderr)
	}
	if !strings.Contains(stdout, "imported 30 clients: 30 new, 0 updated, 0 unchanged") || !strings.Contains(stdout, "queued 30 clients for clinic-a") {
		t.Errorf("summary:\n%s", stdout)
	}
	for _, v := range patientValues(t) {
		if strings.Contains(stdout+stderr, v) {
			t.Fatalf("the output names a patient (%s)", v)
		}
	}

	st := openSQLite(t, db)
	want := ipstest.Sample(t).Clients
	got := storedClients(t, st)
	if len(got) != len(want) {
		t.Fatalf("stored %d clients, want %d", len(got), len(want))
	}
	byID := map[string]*ips.Client{}
	for _, s := range got {
		byID[s.Client.ID] = s.Client
		if s.Version != 1 {
			t.Errorf("client %s: version %d after one import", s.Client.ID, s.Version)
		}
	}
	for _, c := range want {
		if d := cmp.Diff(c, byID[c.ID]); d != "" {
			t.Errorf("client %s stored differently (-file +stored):\n%s", c.ID, d)
		}
	}
	// Queued for the enabled connection only.
	depth, err := st.OutboxDepth(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if depth["clinic-a"] != 30 || depth["clinic-b"] != 0 {
		t.Errorf("outbox depth %v, want 30 for clinic-a and none for the disabled clinic-b", depth)
	}

	// Importing the same file again changes nothing.
	code, stdout, stderr = ipsfhir(t, "", "import", "--config", cfg, sample)
	if code != exitOK || !strings.Contains(stdout, "0 new, 0 updated, 30 unchanged") {
		t.Fatalf("re-import: exit %d\n%s%s", code, stdout, stderr)
	}
	if d := cmp.Diff(got, storedClients(t, st)); d != "" {
		t.Errorf("re-importing the same file changed the store:\n%s", d)
	}

	// Flags may follow the file.
	if code, stdout, stderr := ipsfhir(t, "", "import", sample, "--config", cfg); code != exitOK || !strings.Contains(stdout, "30 unchanged") {
		t.Errorf("flags after the file: exit %d\n%s%s", code, stdout, stderr)
	}

	// A changed client is replaced; the rest stay as they are.
	cl := ipstest.Sample(t)
	cl.Clients[3].Specialist = "Someone New"
	changed := filepath.Join(t.TempDir(), "changed.json")
	f, err := os.Create(changed)
	if err != nil {
		t.Fatal(err)
	}
	if err := ips.Encode(f, cl); err != nil {
		t.Fatal(err)
	}
	f.Close()
	code, stdout, stderr = ipsfhir(t, "", "import", "--json", "--config", cfg, changed)
	if code != exitOK {
		t.Fatalf("import of a changed file: exit %d\n%s%s", code, stdout, stderr)
	}
	var sum importSummary
	if err := json.Unmarshal([]byte(stdout), &sum); err != nil {
		t.Fatalf("--json: %v\n%s", err, stdout)
	}
	if d := cmp.Diff(importSummary{New: 0, Updated: 1, Unchanged: 29, Connections: []string{"clinic-a"}}, sum); d != "" {
		t.Errorf("--json summary (-want +got):\n%s", d)
	}
	c, v, err := st.GetClient(t.Context(), cl.Clients[3].ID)
	if err != nil || v != 2 || c.Specialist != "Someone New" {
		t.Errorf("changed client: version %d, %v", v, err)
	}

	// --all stores and queues every client, even unchanged ones.
	code, stdout, _ = ipsfhir(t, "", "import", "--all", "--config", cfg, changed)
	if code != exitOK || !strings.Contains(stdout, "0 new, 30 updated, 0 unchanged") {
		t.Errorf("--all: exit %d\n%s", code, stdout)
	}
}

func TestImportBrokenCaseloadStoresNothing(t *testing.T) {
	t.Parallel()
	cfg, db := importConfig(t, "")
	broken := repoFile("testdata", "caseload-invalid", "several-problems.json")
	code, stdout, stderr := ipsfhir(t, "", "import", "--config", cfg, broken)
	if code != exitFindings {
		t.Fatalf("broken caseload: exit %d, want 1\n%s", code, stderr)
	}
	wantProblems, err := os.ReadFile(repoFile("testdata", "caseload-invalid", "several-problems.problems.txt"))
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.SplitSeq(strings.TrimSpace(string(wantProblems)), "\n") {
		if !strings.Contains(stderr, line) {
			t.Errorf("stderr lacks the problem %q", line)
		}
	}
	if !strings.Contains(stderr, "nothing was stored") || stdout != "" {
		t.Errorf("stdout %q, stderr:\n%s", stdout, stderr)
	}
	if _, err := os.Stat(db); !os.IsNotExist(err) {
		t.Errorf("a broken caseload created the database: %v", err)
	}

	// With a store that has clients, a broken file leaves them as they were.
	if code, _, stderr := ipsfhir(t, "", "import", "--config", cfg, repoFile("testdata", "caseload-sample.json")); code != exitOK {
		t.Fatalf("import sample: %s", stderr)
	}
	st := openSQLite(t, db)
	before := storedClients(t, st)
	// One valid client and one broken one: neither is stored.
	doc := `{"program": {"id": "riverside-ips"}, "clients": [
		{"id": "c-new", "patient": {"system": "s", "value": "MRN-NEW"}, "enrolledOn": "2026-01-05"},
		{"id": "c001", "patient": {"system": "s", "value": "v"}, "enrolledOn": "2026-01-05", "goals": [{"id": "g1"}]}]}`
	if code, _, stderr := ipsfhir(t, doc, "import", "--config", cfg, "-"); code != exitFindings || !strings.Contains(stderr, "clients[1].goals[0].description: is required") {
		t.Errorf("half-broken caseload: exit %d\n%s", code, stderr)
	}
	if d := cmp.Diff(before, storedClients(t, st)); d != "" {
		t.Errorf("a broken caseload changed the store:\n%s", d)
	}
	if code, _, _ := ipsfhir(t, `{"clients": [`, "import", "--config", cfg, "-"); code != exitUsage {
		t.Errorf("not JSON: exit %d, want 2", code)
	}
	if code, _, stderr := ipsfhir(t, `{"program": {"id": "eastside"}, "clients": []}`, "import", "--config", cfg, "-"); code != exitFindings || !strings.Contains(stderr, "program.id") {
		t.Errorf("another program's caseload: exit %d\n%s", code, stderr)
	}
	if d := cmp.Diff(before, storedClients(t, st)); d != "" {
		t.Errorf("a refused import changed the store:\n%s", d)
	}
}

func TestImportBadConfig(t *testing.T) {
	t.Parallel()
	sample := repoFile("testdata", "caseload-sample.json")
	cfg, db := importConfig(t, `  - {name: clinic-c, fhirBaseUrl: "http://ehr.example.org/fhir", auth: {tpye: bearer, token: sk-PLANTED-SECRET}}
sync: {workers: two}
`)
	code, stdout, stderr := ipsfhir(t, "", "import", "--config", cfg, sample)
	if code != exitUsage {
		t.Fatalf("bad config: exit %d, want 2\n%s", code, stderr)
	}
	for _, s := range []string{cfg, "connections[2].auth.tpye: unknown key", "connections[2].auth.token: is an inline secret", "connections[2].fhirBaseUrl: must use https", "sync.workers: must be a whole number", "nothing was stored"} {
		if !strings.Contains(stderr, s) {
			t.Errorf("stderr lacks %q:\n%s", s, stderr)
		}
	}
	if strings.Contains(stdout+stderr, "sk-PLANTED-SECRET") {
		t.Error("the output repeats a secret")
	}
	if _, err := os.Stat(db); !os.IsNotExist(err) {
		t.Errorf("a bad configuration created the database: %v", err)
	}

	if code, _, stderr := ipsfhir(t, "", "import", "--config", filepath.Join(t.TempDir(), "missing.yaml"), sample); code != exitUsage || !strings.Contains(stderr, "missing.yaml") {
		t.Errorf("missing config: exit %d\n%s", code, stderr)
	}
	// A store DSN whose reference does not resolve is a configuration error.
	cfg2 := filepath.Join(t.TempDir(), "pg.yaml")
	os.WriteFile(cfg2, []byte("program: {id: riverside-ips}\nstore: {driver: postgres, dsn: {env: IPSFHIR_TEST_UNSET_DSN_VARIABLE}}\n"), 0o600)
	if code, _, stderr := ipsfhir(t, "", "import", "--config", cfg2, sample); code != exitUsage || !strings.Contains(stderr, "store.dsn: config: environment variable IPSFHIR_TEST_UNSET_DSN_VARIABLE is not set") {
		t.Errorf("unresolved DSN: exit %d\n%s", code, stderr)
	}
}

func TestImportUsage(t *testing.T) {
	t.Parallel()
	code, stdout, _ := ipsfhir(t, "", "import", "--help")
	if code != exitOK || !strings.Contains(stdout, "Usage: ipsfhir import") || !strings.Contains(stdout, "--config") {
		t.Errorf("import --help: exit %d\n%s", code, stdout)
	}
	cfg, _ := importConfig(t, "")
	for _, args := range [][]string{{"import"}, {"import", repoFile("testdata", "caseload-sample.json")}, {"import", "--config", cfg}, {"import", "--config", cfg, "a.json", "b.json"}} {
		if code, _, _ := ipsfhir(t, "", args...); code != exitUsage {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
	if code, _, stderr := ipsfhir(t, "", "import", "--config", cfg, filepath.Join(t.TempDir(), "missing.json")); code != exitUsage || !strings.Contains(stderr, "missing.json") {
		t.Errorf("missing caseload: exit %d\n%s", code, stderr)
	}
	if code, stdout, _ := ipsfhir(t, "", "--help"); code != exitOK || !strings.Contains(stdout, "import") {
		t.Errorf("the command list lacks import:\n%s", stdout)
	}
}

// TestImportPostgres imports into PostgreSQL with the DSN given by
// reference, as a production configuration does.
func TestImportPostgres(t *testing.T) {
	schemaDSN := storetest.PostgresDSN(t)
	t.Setenv("IPSFHIR_TEST_IMPORT_DSN", schemaDSN)
	cfg := filepath.Join(t.TempDir(), "pg.yaml")
	doc := `program: {id: riverside-ips}
store: {driver: postgres, dsn: {env: IPSFHIR_TEST_IMPORT_DSN}}
connections:
  - {name: clinic-a, fhirBaseUrl: "http://127.0.0.1:8103/fhir/R4", enabled: true, auth: {type: none}}
`
	if err := os.WriteFile(cfg, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	sample := repoFile("testdata", "caseload-sample.json")
	for i, want := range []string{"30 new, 0 updated, 0 unchanged", "0 new, 0 updated, 30 unchanged"} {
		code, stdout, stderr := ipsfhir(t, "", "import", "--config", cfg, sample)
		if code != exitOK || !strings.Contains(stdout, want) {
			t.Fatalf("import %d: exit %d\n%s%s", i+1, code, stdout, stderr)
		}
	}
	st, err := postgres.Open(t.Context(), schemaDSN)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if n := len(storedClients(t, st)); n != 30 {
		t.Errorf("stored %d clients", n)
	}
	if d, err := st.OutboxDepth(t.Context()); err != nil || d["clinic-a"] != 30 {
		t.Errorf("outbox depth %v, %v", d, err)
	}
}

// TestImportRefusesInvalidText: a caseload file with text that is not
// valid UTF-8 (here Latin-1 and truncated sequences, an unpaired surrogate
// escape and a NUL) is refused whole, every such string named by its path,
// and nothing is stored: not the broken client, not the valid one beside it.
func TestImportRefusesInvalidText(t *testing.T) {
	t.Parallel()
	cfg, db := importConfig(t, "")
	file := repoFile("testdata", "caseload-invalid", "invalid-text.json")
	code, stdout, stderr := ipsfhir(t, "", "import", "--config", cfg, file)
	if code != exitFindings || stdout != "" || !strings.Contains(stderr, "nothing was stored") {
		t.Fatalf("invalid text: exit %d, want 1\n%s%s", code, stdout, stderr)
	}
	for _, p := range []string{"clients[0].goals[0].description: is not valid UTF-8", "clients[0].goals[2].description: holds an unpaired UTF-16 surrogate",
		"clients[0].goals[3].description: holds the NUL character", "clients[0].preferences.jobTypes[1]: is not valid UTF-8", "clients[0].consent: has a field name that is not valid UTF-8"} {
		if !strings.Contains(stderr, p) {
			t.Errorf("stderr lacks %q:\n%s", p, stderr)
		}
	}
	for _, s := range []string{"MRN1000001", "Latin-1", "Truncated", "surrogate here", "retail"} {
		if strings.Contains(stderr, s) {
			t.Errorf("stderr quotes the file (%q):\n%s", s, stderr)
		}
	}
	if _, err := os.Stat(db); !os.IsNotExist(err) {
		t.Errorf("a refused caseload created the database: %v", err)
	}

	// Into a store with clients: one valid new client beside one with
	// invalid text, and neither is stored.
	if code, _, stderr := ipsfhir(t, "", "import", "--config", cfg, repoFile("testdata", "caseload-sample.json")); code != exitOK {
		t.Fatalf("import sample: %s", stderr)
	}
	st := openSQLite(t, db)
	before := storedClients(t, st)
	doc := "{\"program\": {\"id\": \"riverside-ips\"}, \"clients\": [\n" +
		"{\"id\": \"c-new\", \"patient\": {\"system\": \"s\", \"value\": \"MRN-NEW\"}, \"enrolledOn\": \"2026-01-05\"},\n" +
		"{\"id\": \"c001\", \"patient\": {\"system\": \"s\", \"value\": \"v\"}, \"enrolledOn\": \"2026-01-05\", \"specialist\": \"Jos\xe9\"}]}"
	if code, _, stderr := ipsfhir(t, doc, "import", "--config", cfg, "-"); code != exitFindings || !strings.Contains(stderr, "clients[1].specialist: is not valid UTF-8") {
		t.Errorf("half-broken caseload: exit %d\n%s", code, stderr)
	}
	if d := cmp.Diff(before, storedClients(t, st)); d != "" {
		t.Errorf("a refused caseload changed the store:\n%s", d)
	}
}

// endless is stdin that never ends (a runaway pipe), counting what was read.
type endless struct{ read atomic.Int64 }

func (e *endless) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = ' '
	}
	e.read.Add(int64(len(p)))
	return len(p), nil
}

// TestImportBoundsWhatItReads: import reads at most its bound of a
// caseload, from a pipe that never ends as from a file too big (refused by
// its size), and stores nothing; a caseload within the bound imports. Not
// parallel: it lowers the bound (maxInputBytes) for its duration, before
// the parallel tests run.
func TestImportBoundsWhatItReads(t *testing.T) {
	sample := repoFile("testdata", "caseload-sample.json")
	fi, err := os.Stat(sample)
	if err != nil {
		t.Fatal(err)
	}
	old := maxInputBytes
	maxInputBytes = fi.Size() + 1024
	t.Cleanup(func() { maxInputBytes = old })
	cfg, db := importConfig(t, "")

	// A pipe that never ends: before the bound, import read it forever.
	in := &endless{}
	done := make(chan struct{})
	var code int
	var stderr bytes.Buffer
	go func() {
		defer close(done)
		code = run(t.Context(), []string{"import", "--config", cfg, "-"}, in, io.Discard, &stderr)
	}()
	select {
	case <-done:
	case <-time.After(time.Minute):
		t.Fatalf("import kept reading an endless stdin (%d bytes so far)", in.read.Load())
	}
	if code != exitUsage || !strings.Contains(stderr.String(), "read standard input: larger than 256 MiB") || !strings.Contains(stderr.String(), "nothing was stored") {
		t.Errorf("an endless stdin: exit %d\n%s", code, stderr.String())
	}
	if n := in.read.Load(); n > 2*maxInputBytes {
		t.Errorf("import read %d bytes of stdin, bound %d", n, maxInputBytes)
	}

	// A file over the bound.
	big := filepath.Join(t.TempDir(), "big.json")
	if err := os.WriteFile(big, bytes.Repeat([]byte(" "), int(maxInputBytes)+1), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, _, stderr := ipsfhir(t, "", "import", "--config", cfg, big); code != exitUsage || !strings.Contains(stderr, "read "+big+": larger than") {
		t.Errorf("a file over the bound: exit %d\n%s", code, stderr)
	}
	if _, err := os.Stat(db); !os.IsNotExist(err) {
		t.Errorf("a refused import created the database: %v", err)
	}
	// The other commands that read a file whole have the same bound.
	if code, _, stderr := ipsfhir(t, "", "validate", big); code != exitUsage || !strings.Contains(stderr, "read "+big+": larger than") {
		t.Errorf("validate of a file over the bound: exit %d\n%s", code, stderr)
	}
	if code, _, stderr := ipsfhir(t, "", "map", "--in", big); code != exitUsage || !strings.Contains(stderr, "read "+big+": larger than") {
		t.Errorf("map of a file over the bound: exit %d\n%s", code, stderr)
	}
	// Within the bound: imported.
	if code, _, stderr := ipsfhir(t, "", "import", "--config", cfg, sample); code != exitOK {
		t.Errorf("the sample within the bound: exit %d\n%s", code, stderr)
	}
}
