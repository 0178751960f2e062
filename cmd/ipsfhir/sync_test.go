package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ipsfhir/ipsfhir/adapter/ehr"
	"github.com/ipsfhir/ipsfhir/adapter/store/storetest"
	"github.com/ipsfhir/ipsfhir/adapter/telemetry/telemetrytest"
	"github.com/ipsfhir/ipsfhir/conformance/peer"
	"github.com/ipsfhir/ipsfhir/ips"
	"github.com/ipsfhir/ipsfhir/ips/synth"
	"github.com/ipsfhir/ipsfhir/mappings"
)

// countIdentifiers counts, per business identifier of kind k, the resources
// of type typ in the EHR.
func countIdentifiers(t *testing.T, c *ehr.Client, typ, program string, k mappings.Kind) map[string]int {
	t.Helper()
	entries, err := c.Search(t.Context(), typ, url.Values{"_count": {"1000"}})
	if err != nil {
		t.Fatal(err)
	}
	sys := mappings.IdentifierSystem(program, k)
	out := map[string]int{}
	for _, e := range entries {
		var r struct {
			Identifier []struct{ System, Value string } `json:"identifier"`
		}
		_ = json.Unmarshal(e.Resource, &r)
		for _, id := range r.Identifier {
			if id.System == sys {
				out[id.Value]++
			}
		}
	}
	return out
}

// syncRig is a built binary, a peer EHR with the caseload's patients, and a
// config whose store holds the imported caseload.
type syncRig struct {
	bin, cfg string
	client   *ehr.Client
	cl       *ips.Caseload
}

func newSyncRig(t *testing.T, clients int, storeYAML, lease string) *syncRig {
	t.Helper()
	return newSyncRigEnabled(t, clients, storeYAML, lease, true)
}

// newSyncRigEnabled is newSyncRig with the connection enabled or not at
// import time.
func newSyncRigEnabled(t *testing.T, clients int, storeYAML, lease string, enabled bool) *syncRig {
	t.Helper()
	srv := peer.StartForTest(t, peer.Options{Args: []string{"--quiet"}})
	bin := buildBinary(t)
	dir := t.TempDir()
	ctx := t.Context()

	cl := synth.Generate(rand.New(rand.NewPCG(42, 42)), clients)
	cl.Program = &ips.Program{ID: "crash-test"}
	consentAll := true
	for _, c := range cl.Clients {
		c.Consent = &ips.Consent{EHR: &consentAll}
	}
	var buf bytes.Buffer
	if err := ips.Encode(&buf, cl); err != nil {
		t.Fatal(err)
	}
	caseload := filepath.Join(dir, "caseload.json")
	if err := os.WriteFile(caseload, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "ipsfhir.yaml")
	if storeYAML == "" {
		storeYAML = fmt.Sprintf("{driver: sqlite, dsn: %s}", filepath.Join(dir, "ips.db"))
	}
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`program: {id: crash-test, name: Crash test IPS}
store: %s
sync: {leaseFor: %s, maxAttempts: 8}
connections:
  - name: clinic
    fhirBaseUrl: %s
    enabled: %t
    auth: {type: none}
`, storeYAML, lease, srv.BaseURL, enabled)), 0o644); err != nil {
		t.Fatal(err)
	}
	client, err := ehr.New(ehr.Options{BaseURL: srv.BaseURL})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cl.Clients {
		body := fmt.Sprintf(`{"resourceType":"Patient","identifier":[{"system":%q,"value":%q}]}`, c.Patient.System, c.Patient.Value)
		if _, err := client.Create(ctx, "Patient", []byte(body), ""); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := exec.Command(bin, "import", "--config", cfg, caseload).CombinedOutput(); err != nil {
		t.Fatalf("import: %v\n%s", err, out)
	}
	return &syncRig{bin: bin, cfg: cfg, client: client, cl: cl}
}

// TestConnectionEnabledLaterGetsTheWholeCaseload: clients imported while the
// connection was disabled reach the EHR once it is enabled, exactly once.
func TestConnectionEnabledLaterGetsTheWholeCaseload(t *testing.T) {
	t.Parallel()
	r := newSyncRigEnabled(t, 12, "", "1m", false)
	out, err := exec.Command(r.bin, "sync", "--config", r.cfg, "--once", "--json").CombinedOutput()
	if err != nil {
		t.Fatalf("sync with the connection disabled: %v\n%s", err, out)
	}
	if got := countIdentifiers(t, r.client, "CarePlan", "crash-test", mappings.KindPlan); len(got) != 0 {
		t.Fatalf("a disabled connection was written to: %d plans", len(got))
	}
	b, err := os.ReadFile(r.cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(r.cfg, bytes.Replace(b, []byte("enabled: false"), []byte("enabled: true"), 1), 0o644); err != nil {
		t.Fatal(err)
	}
	for range 2 { // the second pass must not queue the caseload again
		if out, err := exec.Command(r.bin, "sync", "--config", r.cfg, "--once", "--json").CombinedOutput(); err != nil {
			t.Fatalf("sync after enabling: %v\n%s", err, out)
		}
	}
	r.wantExactlyOnce(t)
	out, err = exec.Command(r.bin, "sync", "--config", r.cfg, "--once", "--json").Output()
	if err != nil {
		t.Fatal(err)
	}
	var sum struct {
		Push struct{ Items int } `json:"push"`
	}
	if err := json.Unmarshal(out, &sum); err != nil {
		t.Fatalf("sync --json: %v\n%s", err, out)
	}
	if sum.Push.Items != 0 {
		t.Errorf("a later pass pushed %d items; enabling must queue the caseload once", sum.Push.Items)
	}
}

// wantExactlyOnce checks every record of the caseload is in the EHR once.
func (r *syncRig) wantExactlyOnce(t *testing.T) map[mappings.Kind]int {
	t.Helper()
	want := map[mappings.Kind]int{}
	for _, c := range r.cl.Clients {
		want[mappings.KindGoal] += len(c.Goals)
		want[mappings.KindPlan]++
		want[mappings.KindJob] += len(c.Jobs)
		want[mappings.KindEmploymentStatus] += len(mappings.EmploymentStatusRecords(c))
	}
	types := map[mappings.Kind]string{mappings.KindGoal: "Goal", mappings.KindPlan: "CarePlan", mappings.KindJob: "Observation", mappings.KindEmploymentStatus: "Observation"}
	for k, n := range want {
		got := countIdentifiers(t, r.client, types[k], "crash-test", k)
		if len(got) != n {
			t.Errorf("%s: %d distinct in the EHR, want %d (missing records)", k, len(got), n)
		}
		for v, c := range got {
			if c != 1 {
				t.Errorf("%s %s is in the EHR %d times (a duplicate)", k, v, c)
			}
		}
	}
	return want
}

func TestSyncKilledHalfwayConverges(t *testing.T) {
	t.Parallel()
	// A short lease, so the restart can take over the dead worker's items.
	// 200 clients: the kill lands after about a tenth of them (20 jobs),
	// leaving most of the work to the restart.
	r := newSyncRig(t, 200, "", "1s")
	bin, cfg, client := r.bin, r.cfg, r.client

	// Start a sync and kill it with SIGKILL once part of the work is done.
	cmd := exec.Command(bin, "sync", "--config", cfg, "--once")
	// Read while the sync still writes it, when the wait below gives up.
	var stderr telemetrytest.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(3 * time.Minute)
	for {
		if n := len(countIdentifiers(t, client, "Observation", "crash-test", mappings.KindJob)); n >= 20 {
			break
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			t.Fatalf("sync made no progress in 3 minutes:\n%s", stderr.String())
		}
		// Each poll is a search of every job Observation on the peer the
		// sync is writing to: poll gently, or the polls slow the sync.
		time.Sleep(250 * time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	partial := len(countIdentifiers(t, client, "Goal", "crash-test", mappings.KindGoal))
	if partial == 0 {
		t.Fatal("no goal written before the kill")
	}

	// Restart after the dead worker's leases expire; run until done.
	time.Sleep(1500 * time.Millisecond)
	out, err := exec.Command(bin, "sync", "--config", cfg, "--once").CombinedOutput()
	if err != nil {
		t.Fatalf("sync after the crash: %v\n%s", err, out)
	}

	want := r.wantExactlyOnce(t)
	// The kill must have landed mid-way, or the test proved nothing.
	if partial == 0 || partial >= want[mappings.KindGoal] {
		t.Errorf("the kill landed with %d of %d goals written; want it part-way", partial, want[mappings.KindGoal])
	}
	t.Logf("killed with %d of %d goals written; the restart completed the rest", partial, want[mappings.KindGoal])
}

// TestTwoProcessesOnOnePostgres runs two sync processes at once on one
// PostgreSQL database, as two replicas would: leases split the work and no
// record is written twice.
func TestTwoProcessesOnOnePostgres(t *testing.T) {
	t.Parallel()
	dsn := storetest.PostgresDSN(t)
	// A lease longer than the run: each item is leased once, by one replica.
	r := newSyncRig(t, 150, fmt.Sprintf("{driver: postgres, dsn: %q}", dsn), "5m")

	procs := make([]*exec.Cmd, 2)
	outs := make([]*bytes.Buffer, 2)
	for i := range procs {
		outs[i] = &bytes.Buffer{}
		procs[i] = exec.Command(r.bin, "sync", "--config", r.cfg, "--once", "--json")
		procs[i].Stdout, procs[i].Stderr = outs[i], outs[i]
		if err := procs[i].Start(); err != nil {
			t.Fatal(err)
		}
	}
	items := 0
	for i, p := range procs {
		if err := p.Wait(); err != nil {
			t.Fatalf("replica %d: %v\n%s", i, err, outs[i])
		}
		var sum struct {
			Push struct{ Items int }
		}
		if err := json.Unmarshal(outs[i].Bytes(), &sum); err != nil {
			t.Fatalf("replica %d summary: %v\n%s", i, err, outs[i])
		}
		t.Logf("replica %d pushed %d clients", i, sum.Push.Items)
		items += sum.Push.Items
	}
	if items != len(r.cl.Clients) {
		t.Errorf("the replicas pushed %d clients between them, want each of the %d once", items, len(r.cl.Clients))
	}
	r.wantExactlyOnce(t)
}

// TestSyncOnceWithADeadConnection: with one EHR down and one up, sync
// --once pushes to the live one, ends with its failures grouped by reason
// and the dead connection named with its reason, and exits 1.
func TestSyncOnceWithADeadConnection(t *testing.T) {
	t.Parallel()
	srv := peer.StartForTest(t, peer.Options{Args: []string{"--quiet"}})
	dir := t.TempDir()
	cl := synth.Generate(rand.New(rand.NewPCG(9, 9)), 4)
	cl.Program = &ips.Program{ID: "once-test"}
	yes := true
	client, err := ehr.New(ehr.Options{BaseURL: srv.BaseURL})
	if err != nil {
		t.Fatal(err)
	}
	for i, c := range cl.Clients {
		c.Consent = &ips.Consent{EHR: &yes}
		if i == 0 {
			continue // the EHR does not know this patient: the push fails
		}
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
	cfg := filepath.Join(dir, "ipsfhir.yaml")
	if err := os.WriteFile(caseload, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`program: {id: once-test}
store: {driver: sqlite, dsn: ips.db}
connections:
  - {name: down-clinic, fhirBaseUrl: %q, enabled: true, auth: {type: none}}
  - {name: clinic, fhirBaseUrl: %q, enabled: true, auth: {type: none}}
`, closedPortURL(t), srv.BaseURL)), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, out, errOut := ipsfhir(t, "", "import", "--config", cfg, caseload); code != exitOK {
		t.Fatalf("import: %d\n%s%s", code, out, errOut)
	}

	code, out, errOut := ipsfhir(t, "", "sync", "--config", cfg, "--once")
	if code != exitFindings {
		t.Errorf("sync --once with a connection down: exit %d, want 1\n%s%s", code, out, errOut)
	}
	for _, want := range []string{
		"push: 4 clients,",
		"1 failed: push: patient not found in the EHR by identifier\n",
		"down-clinic: connect failed (ehr-unreachable) after 3 attempts; not synced\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("sync --once output lacks %q:\n%s", want, out)
		}
	}
	if got := countIdentifiers(t, client, "CarePlan", "once-test", mappings.KindPlan); len(got) != 3 {
		t.Errorf("the live EHR got %d plans, want the 3 whose patients it knows", len(got))
	}
	if strings.Contains(out+errOut, "127.0.0.1") {
		t.Errorf("sync output names an address:\n%s%s", out, errOut)
	}

	// The same as JSON, per connection, in lowerCamel.
	code, out, errOut = ipsfhir(t, "", "sync", "--config", cfg, "--once", "--json")
	if code != exitFindings {
		t.Errorf("sync --once --json: exit %d, want 1\n%s", code, errOut)
	}
	var sum struct {
		Push        struct{ Items int }
		Connections []struct {
			Connection string `json:"connection"`
			Push       struct {
				Items    int            `json:"items"`
				Failures map[string]int `json:"failures"`
			} `json:"push"`
			Failures []struct {
				Step     string `json:"step"`
				Reason   string `json:"reason"`
				Attempts int    `json:"attempts"`
			} `json:"failures"`
		} `json:"connections"`
	}
	if err := json.Unmarshal([]byte(out), &sum); err != nil {
		t.Fatalf("sync --json: %v\n%s", err, out)
	}
	if len(sum.Connections) != 2 || sum.Connections[0].Connection != "down-clinic" || len(sum.Connections[0].Failures) != 1 ||
		sum.Connections[0].Failures[0].Step != "connect" || sum.Connections[0].Failures[0].Reason != "ehr-unreachable" ||
		sum.Connections[1].Connection != "clinic" || len(sum.Connections[1].Failures) != 0 {
		t.Errorf("sync --json connections:\n%s", out)
	}
	if !strings.Contains(out, `"deadLettered"`) {
		t.Errorf("sync --json is not lowerCamel:\n%s", out)
	}
}

// TestSyncRunsUntilInterrupted: sync without --once runs the per-connection
// workers until interrupted, and exits 0.
func TestSyncRunsUntilInterrupted(t *testing.T) {
	t.Parallel()
	r := newSyncRig(t, 5, "", "1m")
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var stdout, stderr telemetrytest.Buffer
	done := make(chan int, 1)
	go func() { done <- run(ctx, []string{"sync", "--config", r.cfg}, strings.NewReader(""), &stdout, &stderr) }()
	for deadline := time.Now().Add(60 * time.Second); len(countIdentifiers(t, r.client, "CarePlan", "crash-test", mappings.KindPlan)) < 5; {
		if time.Now().After(deadline) {
			t.Fatalf("sync never pushed the caseload:\n%s", stderr.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	cancel()
	select {
	case code := <-done:
		if code != exitOK {
			t.Errorf("sync exited %d after an interrupt:\n%s", code, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("sync did not stop within 30 s of the interrupt")
	}
	r.wantExactlyOnce(t)
	// The plan in the chart names the program (config program.name).
	plans, err := r.client.Search(t.Context(), "CarePlan", url.Values{"_count": {"1"}})
	if err != nil || len(plans) == 0 || !strings.Contains(string(plans[0].Resource), "<b>IPS supported employment plan</b> (Crash test IPS).") {
		t.Errorf("the CarePlan narrative does not name the program: %v", err)
	}
}
