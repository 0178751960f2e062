package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ipsfhir/ipsfhir/adapter/ehr"
	"github.com/ipsfhir/ipsfhir/adapter/store"
	"github.com/ipsfhir/ipsfhir/adapter/store/postgres"
	"github.com/ipsfhir/ipsfhir/adapter/store/sqlite"
	"github.com/ipsfhir/ipsfhir/adapter/store/storetest"
	"github.com/ipsfhir/ipsfhir/conformance/peer"
	"github.com/ipsfhir/ipsfhir/ips"
	"github.com/ipsfhir/ipsfhir/ips/synth"
)

// TestSyncOnceReportsTheInitialLoad: sync --once says, per connection, how
// much of its initial load is done and about how long the rest will take;
// --json has the same under "loads". A load that ends in the pass is said
// to be done once; a connection whose EHR is down has its load untouched.
func TestSyncOnceReportsTheInitialLoad(t *testing.T) {
	t.Parallel()
	for _, kind := range []string{"sqlite", "postgres"} {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			storeYAML, dsn := "", ""
			if kind == "postgres" {
				dsn = storetest.PostgresDSN(t)
				storeYAML = fmt.Sprintf("{driver: postgres, dsn: %q}", dsn)
			}
			r := newSyncRig(t, 12, storeYAML, "1m")
			if kind == "sqlite" {
				dsn = filepath.Join(filepath.Dir(r.cfg), "ips.db")
			}
			// A second EHR, down: its load stays to be done.
			b, err := os.ReadFile(r.cfg)
			if err != nil {
				t.Fatal(err)
			}
			b = append(b, fmt.Sprintf("  - {name: down, fhirBaseUrl: %q, enabled: true, auth: {type: none}}\n", closedPortURL(t))...)
			if err := os.WriteFile(r.cfg, b, 0o644); err != nil {
				t.Fatal(err)
			}

			out, err := exec.Command(r.bin, "sync", "--config", r.cfg, "--once", "--json").Output()
			if code := exitCode(err); code != exitFindings {
				t.Fatalf("sync --once --json with an EHR down: exit %d (%v), want %d\n%s", code, err, exitFindings, out)
			}
			var sum struct {
				Loads []struct {
					Connection       string
					Total, Done      int
					Started          time.Time
					Finished         *time.Time
					RemainingSeconds *float64
				}
			}
			if err := json.Unmarshal(out, &sum); err != nil {
				t.Fatalf("sync --json: %v\n%s", err, out)
			}
			if len(sum.Loads) != 2 {
				t.Fatalf("loads %+v, want clinic's and down's\n%s", sum.Loads, out)
			}
			if l := sum.Loads[0]; l.Connection != "clinic" || l.Total != 12 || l.Done != 12 || l.Finished == nil || l.RemainingSeconds == nil || *l.RemainingSeconds != 0 {
				t.Errorf("clinic's load after a pass %+v; want 12 of 12, finished", l)
			}
			if l := sum.Loads[1]; l.Connection != "down" || l.Total != 12 || l.Done != 0 || l.Finished != nil || l.RemainingSeconds != nil || l.Started.IsZero() {
				t.Errorf("down's load %+v; want 0 of 12 and no estimate", l)
			}

			// Five of down's clients are done (as by another replica).
			var st store.Store
			if kind == "sqlite" {
				st, err = sqlite.Open(t.Context(), dsn)
			} else {
				st, err = postgres.Open(t.Context(), dsn)
			}
			if err != nil {
				t.Fatal(err)
			}
			items, err := st.Lease(t.Context(), "down", "test", 5, time.Minute)
			if err != nil || len(items) != 5 {
				t.Fatalf("Lease: %d, %v", len(items), err)
			}
			for _, it := range items {
				if err := st.Complete(t.Context(), it); err != nil {
					t.Fatal(err)
				}
			}
			st.Close()

			text, err := exec.Command(r.bin, "sync", "--config", r.cfg, "--once").Output()
			if code := exitCode(err); code != exitFindings {
				t.Fatalf("sync --once: exit %d (%v)\n%s", code, err, text)
			}
			if !regexp.MustCompile(`(?m)^down: initial load 5/12, about \d+(s|m|h\d\dm) left$`).Match(text) {
				t.Errorf("sync --once does not say how far down's load is:\n%s", text)
			}
			if strings.Contains(string(text), "clinic: initial load") {
				t.Errorf("sync --once repeats a load finished in an earlier pass:\n%s", text)
			}
		})
	}
}

// exitCode is the exit status of a command that ran, 0 for err nil, -1 for
// one that did not run.
func exitCode(err error) int {
	if err == nil {
		return 0
	}
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	return -1
}

func TestRoughly(t *testing.T) {
	t.Parallel()
	for d, want := range map[time.Duration]string{
		0:                                     "0s",
		40*time.Second + 300*time.Millisecond: "40s",
		59*time.Second + 700*time.Millisecond: "1m",
		12*time.Minute + 20*time.Second:       "12m",
		3*time.Hour + 20*time.Minute:          "3h20m",
		26*time.Hour + 5*time.Minute:          "26h05m",
	} {
		if got := roughly(d); got != want {
			t.Errorf("roughly(%v) = %q, want %q", d, got, want)
		}
	}
}

// TestServeShowsTheInitialLoad: serve's /admin/connections and /metrics
// show a connection's initial load, here the imported caseload pushed to
// the EHR.
func TestServeShowsTheInitialLoad(t *testing.T) {
	t.Parallel()
	srv := peer.StartForTest(t, peer.Options{Args: []string{"--quiet"}})
	dir := t.TempDir()
	cl := synth.Generate(rand.New(rand.NewPCG(3, 3)), 3)
	cl.Program = &ips.Program{ID: "load-test"}
	yes := true
	client, err := ehr.New(ehr.Options{BaseURL: srv.BaseURL})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cl.Clients {
		c.Consent = &ips.Consent{EHR: &yes}
		body := fmt.Sprintf(`{"resourceType":"Patient","identifier":[{"system":%q,"value":%q}]}`, c.Patient.System, c.Patient.Value)
		if _, err := client.Create(t.Context(), "Patient", []byte(body), ""); err != nil {
			t.Fatal(err)
		}
	}
	var buf bytes.Buffer
	if err := ips.Encode(&buf, cl); err != nil {
		t.Fatal(err)
	}
	caseload := filepath.Join(dir, "caseload.json")
	if err := os.WriteFile(caseload, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte("admin-key"))
	cfg := filepath.Join(dir, "ipsfhir.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`program: {id: load-test}
store: {driver: sqlite, dsn: %s}
server: {listen: "127.0.0.1:0"}
apiKeys:
  - {name: ops, role: admin, sha256: %s}
connections:
  - {name: clinic, fhirBaseUrl: %q, enabled: true, auth: {type: none}}
`, filepath.Join(dir, "ips.db"), hex.EncodeToString(sum[:]), srv.BaseURL)), 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	if code := run(t.Context(), []string{"import", "--config", cfg, caseload}, strings.NewReader(""), &out, &errOut); code != exitOK {
		t.Fatalf("import: exit %d\n%s", code, errOut.String())
	}

	ctx, cancel := context.WithCancel(t.Context())
	base, stderr, done := startServe(t, ctx, cfg)
	defer func() { cancel(); <-done }()
	get := func(path string) string {
		t.Helper()
		req, _ := http.NewRequest("GET", base+path, nil)
		req.Header.Set("Authorization", "Bearer admin-key")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d %s", path, resp.StatusCode, b)
		}
		return string(b)
	}
	var conns struct {
		Connections []struct {
			Name string
			Load *struct {
				Total, Done int
				Finished    *time.Time
			}
		}
	}
	for deadline := time.Now().Add(60 * time.Second); ; {
		if err := json.Unmarshal([]byte(get("/admin/connections")), &conns); err != nil {
			t.Fatal(err)
		}
		if len(conns.Connections) == 1 && conns.Connections[0].Load != nil && conns.Connections[0].Load.Finished != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the initial load never finished: %+v\n%s", conns, stderr.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if l := conns.Connections[0].Load; l.Total != 3 || l.Done != 3 {
		t.Errorf("/admin/connections load %+v; want 3 of 3", l)
	}
	metrics := get("/metrics")
	for name, value := range map[string]string{"ipsfhir_initial_load_done": "3", "ipsfhir_initial_load_total": "3", "ipsfhir_initial_load_remaining_seconds": "0"} {
		if !regexp.MustCompile(`(?m)^` + name + `\{connection="clinic"[^}]*\} ` + value + `$`).MatchString(metrics) {
			t.Errorf("/metrics lacks %s{connection=\"clinic\"} %s:\n%s", name, value, metrics)
		}
	}
}
