package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	crand "crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ipsfhir/ipsfhir/adapter/config"
	"github.com/ipsfhir/ipsfhir/adapter/ehr"
	"github.com/ipsfhir/ipsfhir/adapter/telemetry/telemetrytest"
	"github.com/ipsfhir/ipsfhir/conformance/peer"
	"github.com/ipsfhir/ipsfhir/mappings"
	"github.com/ipsfhir/ipsfhir/outcomes"
)

func TestServePushesWhatTheAPIStores(t *testing.T) {
	t.Parallel()
	srv := peer.StartForTest(t, peer.Options{Args: []string{"--quiet"}})
	dir := t.TempDir()
	sum := sha256.Sum256([]byte("spec-key"))
	cfg := filepath.Join(dir, "ipsfhir.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`program: {id: serve-test}
store: {driver: sqlite, dsn: %s}
server: {listen: "127.0.0.1:0"}
apiKeys:
  - {name: jordan, role: specialist, sha256: %s}
connections:
  - {name: clinic, fhirBaseUrl: %q, enabled: true, auth: {type: none}}
`, filepath.Join(dir, "ips.db"), hex.EncodeToString(sum[:]), srv.BaseURL)), 0o644); err != nil {
		t.Fatal(err)
	}
	client, err := ehr.New(ehr.Options{BaseURL: srv.BaseURL})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.Create(t.Context(), "Patient", []byte(`{"resourceType":"Patient","identifier":[{"system":"urn:oid:2.16.840.1.113883.3.9999.1","value":"MRN555"}]}`), ""); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(t.Context())
	base, stderr, done := startServe(t, ctx, cfg)

	if resp, err := http.Get(base + "/healthz"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("healthz: %v %v", resp, err)
	}
	if resp, err := http.Get(base + "/api/v1/clients"); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("API without a key: %v %v, want 401", resp, err)
	}
	// The API's description needs none, as /fhir/metadata.
	if resp, err := http.Get(base + "/api/v1/openapi.json"); err != nil || resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("API description without a key: %v %v, want 200 with JSON", resp, err)
	} else {
		resp.Body.Close()
	}
	body := `{"id":"c1","patient":{"system":"urn:oid:2.16.840.1.113883.3.9999.1","value":"MRN555"},"enrolledOn":"2026-11-02",
	 "goals":[{"id":"g1","description":"Work in a library","status":"active","start":"2026-11-03"}]}`
	req, _ := http.NewRequest("POST", base+"/api/v1/clients", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer spec-key")
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("create client: %v %v", resp, err)
	}

	// The workers push it to the EHR within a few rounds.
	key := mappings.Key{Program: "serve-test", Kind: mappings.KindPlan, Client: "c1"}
	for deadline := time.Now().Add(30 * time.Second); ; {
		if countIdentifiers(t, client, "CarePlan", "serve-test", mappings.KindPlan)[key.Value()] == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the client's plan never reached the EHR:\n%s", stderr.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	cancel()
	select {
	case code := <-done:
		if code != exitOK {
			t.Errorf("serve exited %d after SIGTERM-like cancel:\n%s", code, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not stop within 30 s of cancel")
	}
	if strings.Contains(stderr.String(), "MRN555") || strings.Contains(stderr.String(), "library") {
		t.Errorf("service log holds patient data:\n%s", stderr.String())
	}
}

// TestDemoSyncsToAnEHR runs the README's demo with --ehr against the peer:
// the service comes up and the sample caseload reaches the EHR.
func TestDemoSyncsToAnEHR(t *testing.T) {
	t.Parallel()
	srv := peer.StartForTest(t, peer.Options{Args: []string{"--quiet"}})
	client, err := ehr.New(ehr.Options{BaseURL: srv.BaseURL})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	var stdout, stderr telemetrytest.Buffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"demo", "--out", t.TempDir(), "--ehr", srv.BaseURL}, strings.NewReader(""), &stdout, &stderr)
	}()
	// Generous: beside the rest of CI on two cores the demo's first sync
	// once took more than a minute. Only a failing test waits this long.
	for deadline := time.Now().Add(3 * time.Minute); ; {
		if n := len(countIdentifiers(t, client, "CarePlan", "riverside-ips", mappings.KindPlan)); n > 0 && strings.Contains(stdout.String(), "serving on") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("demo --ehr never synced:\n%s\n%s", stdout.String(), stderr.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	if !strings.Contains(stdout.String(), "Demo API key") {
		t.Errorf("demo output lacks the API key line:\n%s", stdout.String())
	}
	cancel()
	if code := <-done; code != exitOK {
		t.Errorf("demo exited %d:\n%s", code, stderr.String())
	}
}

func TestServesJWKSForSMARTKeys(t *testing.T) {
	t.Parallel()
	cfg := config.Default()
	cfg.Store.DSN = config.Value{Plain: filepath.Join(t.TempDir(), "ips.db")}
	sys, err := wire(t.Context(), cfg, io.Discard, false)
	if err != nil {
		t.Fatal(err)
	}
	defer sys.close(context.Background())
	k, err := ecdsa.GenerateKey(elliptic.P384(), crand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sys.signingKeys = []ehr.SigningKey{{ID: "k1", Key: k}}
	rec := httptest.NewRecorder()
	sys.handler("http://127.0.0.1:8080/fhir").ServeHTTP(rec, httptest.NewRequest("GET", "/.well-known/jwks.json", nil))
	var set struct {
		Keys []map[string]any `json:"keys"`
	}
	if rec.Code != 200 || json.Unmarshal(rec.Body.Bytes(), &set) != nil || len(set.Keys) != 1 || set.Keys[0]["kid"] != "k1" || set.Keys[0]["d"] != nil {
		t.Errorf("JWKS: %d %s; want one public key, no private part", rec.Code, rec.Body)
	}
}

// TestServeFHIRFacade: serve mounts the FHIR facade: a public
// CapabilityStatement, records by patient for the program's staff, the
// quarter's MeasureReports (and no records) for an HIE key, and a
// de-identification key that cannot be read stops the service at start.
func TestServeFHIRFacade(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	keyOf := func(k string) string { s := sha256.Sum256([]byte(k)); return hex.EncodeToString(s[:]) }
	if err := os.WriteFile(filepath.Join(dir, "pseudonym.key"), []byte(strings.Repeat("k", 40)), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "specialist.key"), []byte(strings.Repeat("s", 40)), 0o600); err != nil {
		t.Fatal(err)
	}
	cfgText := fmt.Sprintf(`program: {id: facade-test}
store: {driver: sqlite, dsn: ips.db}
server: {listen: "127.0.0.1:0", publicUrl: "https://ips.example.org"}
consent: {hie: true}
export: {pseudonymKey: {file: pseudonym.key}}
reports: {specialistKey: {file: specialist.key}}
apiKeys:
  - {name: jordan, role: specialist, sha256: %s}
  - {name: state-hie, role: hie, sha256: %s, pseudonymScope: regional}
`, keyOf("spec-key"), keyOf("hie-key"))
	cfg := filepath.Join(dir, "ipsfhir.yaml")
	if err := os.WriteFile(cfg, []byte(cfgText), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	base, stderr, done := startServe(t, ctx, cfg)
	call := func(method, path, key, body string) (int, string) {
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := call("GET", "/fhir/metadata", "", ""); code != 200 || !strings.Contains(body, `"CapabilityStatement"`) {
		t.Fatalf("/fhir/metadata without a key: %d %.200s", code, body)
	}
	client := `{"id":"c1","patient":{"system":"urn:oid:2.16.840.1.113883.3.9999.1","value":"MRN777"},"enrolledOn":"2026-07-02",
	 "goals":[{"id":"g1","description":"Work in a bakery","status":"active","start":"2026-07-03"}]}`
	if code, body := call("POST", "/api/v1/clients", "spec-key", client); code != http.StatusCreated {
		t.Fatalf("create client: %d %s", code, body)
	}
	code, body := call("GET", "/fhir/Goal?patient:identifier="+"urn:oid:2.16.840.1.113883.3.9999.1%7CMRN777", "spec-key", "")
	if code != 200 || !strings.Contains(body, `"total":1`) && !strings.Contains(body, `"total": 1`) {
		t.Errorf("Goal by patient: %d %.300s", code, body)
	}
	// Behind a proxy, links name the public address, not the listener.
	if !strings.Contains(body, `"https://ips.example.org/fhir/Goal`) || strings.Contains(body, base) {
		t.Errorf("links do not use server.publicUrl: %.500s", body)
	}
	if code, _ := call("GET", "/fhir/Goal", "hie-key", ""); code != http.StatusForbidden {
		t.Errorf("an HIE key reading records: %d, want 403", code)
	}
	code, body = call("GET", "/fhir/MeasureReport?period=2026Q3", "hie-key", "")
	if code != 200 || strings.Count(body, `"resourceType":"MeasureReport"`)+strings.Count(body, `"resourceType": "MeasureReport"`) != len(outcomes.Measures()) {
		t.Errorf("MeasureReports for 2026Q3: %d %.300s", code, body)
	}
	if strings.Contains(body, "MRN777") || strings.Contains(body, "bakery") {
		t.Error("a MeasureReport carries patient data")
	}
	// reports.specialistKey is configured: the reports are broken down by
	// specialist (the one client has none recorded).
	if !strings.Contains(body, "urn:ipsfhir:facade-test:specialist") || !strings.Contains(body, "unassigned") {
		t.Errorf("the MeasureReports are not broken down by specialist: %.300s", body)
	}
	// Dated when computed, reported by the program: DEQM Summary reports.
	checkDEQM(t, []byte(body), len(outcomes.Measures()))
	// The hie key gets the reports for HIEs (they state the clients left
	// out for want of consent); the specialist's key the program's own.
	if !strings.Contains(body, outcomes.ExcludedNoHIEConsent) {
		t.Errorf("the hie key's MeasureReports are not the ones for HIEs: %.300s", body)
	}
	if code, own := call("GET", "/fhir/MeasureReport?period=2026Q3", "spec-key", ""); code != 200 || !strings.Contains(own, outcomes.ExtExcluded) || strings.Contains(own, outcomes.ExcludedNoHIEConsent) {
		t.Errorf("the specialist's MeasureReports are not the program's own: %d %.300s", code, own)
	}
	if code, _ := call("GET", "/fhir/MeasureReport?period=summer", "hie-key", ""); code != http.StatusBadRequest {
		t.Errorf("a period that is not one: %d, want 400", code)
	}

	// The HIE's bulk export: kick off, poll, download; every line passes
	// ipsfhir validate, and none carries the patient's MRN or words.
	req, _ := http.NewRequest("GET", base+"/fhir/$export", nil)
	req.Header.Set("Authorization", "Bearer hie-key")
	req.Header.Set("Prefer", "respond-async")
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusAccepted {
		t.Fatalf("$export kick-off: %v %v", resp, err)
	}
	resp.Body.Close()
	const public = "https://ips.example.org"
	status := strings.TrimPrefix(resp.Header.Get("Content-Location"), public)
	var manifest struct {
		Output []struct{ Type, URL string }
	}
	for deadline := time.Now().Add(20 * time.Second); ; {
		code, body := call("GET", status, "hie-key", "")
		if code == http.StatusOK {
			if err := json.Unmarshal([]byte(body), &manifest); err != nil {
				t.Fatal(err)
			}
			break
		}
		if code != http.StatusAccepted || time.Now().After(deadline) {
			t.Fatalf("$export status: %d %s", code, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if len(manifest.Output) == 0 {
		t.Fatal("the export has no output")
	}
	for _, o := range manifest.Output {
		code, body := call("GET", strings.TrimPrefix(o.URL, public), "hie-key", "")
		if code != 200 || body == "" {
			t.Fatalf("download %s: %d", o.Type, code)
		}
		if strings.Contains(body, "MRN777") || strings.Contains(body, "bakery") || o.Type == "DocumentReference" {
			t.Errorf("the HIE export of %s is not de-identified", o.Type)
		}
		file := filepath.Join(dir, o.Type+".ndjson")
		if err := os.WriteFile(file, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		if code, out, errOut := ipsfhir(t, "", "validate", file); code != exitOK {
			t.Errorf("ipsfhir validate %s: exit %d\n%s%s", o.Type, code, errOut, out)
		}
	}
	cancel()
	if code := <-done; code != exitOK {
		t.Errorf("serve exited %d:\n%s", code, stderr.String())
	}
	// The key's pseudonymScope reached the facade: files exported for the
	// scope are the lines the HIE downloaded.
	files := filepath.Join(dir, "files")
	if code, out, errOut := ipsfhir(t, "", "export", "--config", cfg, "--out", files, "--recipient", "regional", "--type", "Goal"); code != exitOK {
		t.Fatalf("export --recipient regional: exit %d\n%s%s", code, errOut, out)
	}
	viaFile, err1 := os.ReadFile(filepath.Join(files, "Goal.ndjson"))
	viaAPI, err2 := os.ReadFile(filepath.Join(dir, "Goal.ndjson"))
	if err1 != nil || err2 != nil || len(viaAPI) == 0 || !bytes.Equal(viaFile, viaAPI) {
		t.Errorf("the HIE's Goals are not those of its pseudonym scope (%v, %v)", err1, err2)
	}

	// A key too short to protect the pseudonyms: the service does not start.
	if err := os.WriteFile(filepath.Join(dir, "pseudonym.key"), []byte("short"), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errOut telemetrytest.Buffer
	if code := run(t.Context(), []string{"serve", "--config", cfg}, strings.NewReader(""), &out, &errOut); code != exitFindings || !strings.Contains(errOut.String(), "export.pseudonymKey") {
		t.Errorf("serve with a short pseudonym key: exit %d\n%s", code, errOut.String())
	}
	// So does a short specialist key.
	if err := os.WriteFile(filepath.Join(dir, "pseudonym.key"), []byte(strings.Repeat("k", 40)), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "specialist.key"), []byte("short"), 0o600); err != nil {
		t.Fatal(err)
	}
	var out2, errOut2 telemetrytest.Buffer
	if code := run(t.Context(), []string{"serve", "--config", cfg}, strings.NewReader(""), &out2, &errOut2); code != exitFindings || !strings.Contains(errOut2.String(), "reports.specialistKey") {
		t.Errorf("serve with a short specialist key: exit %d\n%s", code, errOut2.String())
	}
}

// startServe runs `ipsfhir serve --config cfg` until ctx ends and returns
// the address it serves on, its stderr, and its exit code once it stops.
func startServe(t *testing.T, ctx context.Context, cfg string) (base string, stderr *telemetrytest.Buffer, done <-chan int) {
	t.Helper()
	stdout, stderr := &telemetrytest.Buffer{}, &telemetrytest.Buffer{}
	exit := make(chan int, 1)
	go func() { exit <- run(ctx, []string{"serve", "--config", cfg}, strings.NewReader(""), stdout, stderr) }()
	for deadline := time.Now().Add(20 * time.Second); ; {
		if base = regexp.MustCompile(`http://127\.0\.0\.1:\d+`).FindString(stdout.String()); base != "" {
			return base, stderr, exit
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve did not start:\n%s", stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// closedPortURL is a loopback FHIR base URL nothing listens on: an EHR
// that is down.
func closedPortURL(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "http://" + addr + "/fhir/R4"
}

// readyzBody is /readyz's body.
type readyzBody struct {
	Status      string `json:"status"`
	Store       string `json:"store"`
	Connections []struct {
		Name     string `json:"name"`
		State    string `json:"state"`
		Since    string `json:"since"`
		LastPush string `json:"lastPush"`
		Failures []struct {
			Step, Reason, Since string
			Attempts            int
		} `json:"failures"`
	} `json:"connections"`
}

func getReadyz(t *testing.T, base string) (int, readyzBody, string) {
	t.Helper()
	resp, err := http.Get(base + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var r readyzBody
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("/readyz body is not JSON: %v\n%s", err, b)
	}
	return resp.StatusCode, r, string(b)
}

// TestServeStaysUpWhileAnEHRIsDown: an enabled EHR that cannot be reached
// neither stops serve nor the other connection: the API and /readyz answer,
// /readyz shows the dead one failing, and the live one gets its clients.
func TestServeStaysUpWhileAnEHRIsDown(t *testing.T) {
	t.Parallel()
	srv := peer.StartForTest(t, peer.Options{Args: []string{"--quiet"}})
	dir := t.TempDir()
	keyOf := func(k string) string { s := sha256.Sum256([]byte(k)); return hex.EncodeToString(s[:]) }
	cfg := filepath.Join(dir, "ipsfhir.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`program: {id: serve-test}
store: {driver: sqlite, dsn: ips.db}
server: {listen: "127.0.0.1:0"}
sync: {pushInterval: 1s}
apiKeys:
  - {name: jordan, role: specialist, sha256: %s}
  - {name: ops, role: admin, sha256: %s}
connections:
  - {name: down-clinic, fhirBaseUrl: %q, enabled: true, auth: {type: none}}
  - {name: clinic, fhirBaseUrl: %q, enabled: true, auth: {type: none}, timeout: 10s, retry: {initial: 1s, max: 5s}}
`, keyOf("spec-key"), keyOf("admin-key"), closedPortURL(t), srv.BaseURL)), 0o644); err != nil {
		t.Fatal(err)
	}
	client, err := ehr.New(ehr.Options{BaseURL: srv.BaseURL})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.Create(t.Context(), "Patient", []byte(`{"resourceType":"Patient","identifier":[{"system":"urn:oid:2.16.840.1.113883.3.9999.1","value":"MRN556"}]}`), ""); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	base, stderr, done := startServe(t, ctx, cfg)
	call := func(method, path, key, body string) (int, string) {
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+key)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := call("GET", "/api/v1/clients", "spec-key", ""); code != 200 {
		t.Fatalf("the API with one EHR down: %d %s\n%s", code, body, stderr.String())
	}
	body := `{"id":"c1","patient":{"system":"urn:oid:2.16.840.1.113883.3.9999.1","value":"MRN556"},"enrolledOn":"2026-11-02",
	 "goals":[{"id":"g1","description":"Work in a library","status":"active","start":"2026-11-03"}]}`
	if code, b := call("POST", "/api/v1/clients", "spec-key", body); code != http.StatusCreated {
		t.Fatalf("create client: %d %s", code, b)
	}
	key := mappings.Key{Program: "serve-test", Kind: mappings.KindPlan, Client: "c1"}
	var ready readyzBody
	var raw string
	for deadline := time.Now().Add(60 * time.Second); ; {
		var code int
		code, ready, raw = getReadyz(t, base)
		if code != 200 {
			t.Fatalf("/readyz with the store up: %d %s", code, raw)
		}
		// The pass that wrote the CarePlan is over (lastPush is set when
		// it returns, a moment after its last write).
		if len(ready.Connections) == 2 && ready.Connections[0].State == "failing" && ready.Connections[1].State == "ready" &&
			ready.Connections[1].LastPush != "" && countIdentifiers(t, client, "CarePlan", "serve-test", mappings.KindPlan)[key.Value()] == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("never: down-clinic failing, clinic ready and its client pushed; /readyz %s\n%s", raw, stderr.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	d, c := ready.Connections[0], ready.Connections[1]
	if ready.Status != "ready" || ready.Store != "ok" || d.Name != "down-clinic" || c.Name != "clinic" || d.Since == "" ||
		len(d.Failures) != 1 || d.Failures[0].Step != "connect" || d.Failures[0].Reason != "ehr-unreachable" || d.Failures[0].Attempts < 1 ||
		len(c.Failures) != 0 || c.LastPush == "" {
		t.Errorf("/readyz: %s", raw)
	}
	if strings.Contains(raw, "127.0.0.1") || strings.Contains(raw, "MRN556") {
		t.Errorf("/readyz names an address or a patient: %s", raw)
	}
	// /admin sees the plan of the connection that connected, not the other.
	if code, b := call("GET", "/admin/connections/clinic/plan", "admin-key", ""); code != 200 {
		t.Errorf("clinic's plan: %d %.200s", code, b)
	}
	if code, _ := call("GET", "/admin/connections/down-clinic/plan", "admin-key", ""); code != http.StatusNotFound {
		t.Errorf("the plan of a connection that never connected: %d, want 404", code)
	}
	logs := stderr.String()
	if !strings.Contains(logs, `msg="connect failed" connection=down-clinic state=failing step=connect error_kind=ehr-unreachable`) {
		t.Errorf("the dead EHR's failure is not logged with its reason:\n%s", logs)
	}
	if strings.Contains(logs, "MRN556") || strings.Contains(logs, "library") {
		t.Errorf("service log holds patient data:\n%s", logs)
	}
	cancel()
	select {
	case code := <-done:
		if code != exitOK {
			t.Errorf("serve exited %d:\n%s", code, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not stop within 30 s of cancel while an EHR is down")
	}
}

// TestReadyzIsAboutTheStore: /readyz is 200 while the store answers and
// 503 once it does not, without a key, and says so in JSON.
func TestReadyzIsAboutTheStore(t *testing.T) {
	t.Parallel()
	cfg := config.Default()
	cfg.Store.DSN = config.Value{Plain: filepath.Join(t.TempDir(), "ips.db")}
	sys, err := wire(t.Context(), cfg, io.Discard, false)
	if err != nil {
		t.Fatal(err)
	}
	defer sys.close(context.Background())
	h := sys.handler("http://127.0.0.1:8080/fhir")
	get := func() (int, string, string) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
		return rec.Code, rec.Header().Get("Content-Type"), rec.Body.String()
	}
	if code, ct, body := get(); code != 200 || ct != "application/json" || body != `{"status":"ready","store":"ok","connections":[]}`+"\n" {
		t.Errorf("/readyz with the store up: %d %s %s", code, ct, body)
	}
	sys.store.Close()
	if code, _, body := get(); code != http.StatusServiceUnavailable || body != `{"status":"unavailable","store":"unavailable","connections":[]}`+"\n" {
		t.Errorf("/readyz with the store closed: %d %s", code, body)
	}
}

// TestServeSaysWithoutSpecialistKey: without reports.specialistKey the
// service says, once at start, that its MeasureReports are not broken down
// by specialist, and serves them without that breakdown.
func TestServeSaysWithoutSpecialistKey(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	sum := sha256.Sum256([]byte("hie-key"))
	cfg := filepath.Join(dir, "ipsfhir.yaml")
	doc := "program: {id: nokey-test}\nstore: {driver: sqlite, dsn: ips.db}\nserver: {listen: \"127.0.0.1:0\"}\n" +
		"apiKeys:\n  - {name: state-hie, role: hie, sha256: " + hex.EncodeToString(sum[:]) + "}\n"
	if err := os.WriteFile(cfg, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	base, stderr, done := startServe(t, ctx, cfg)
	req, _ := http.NewRequest("GET", base+"/fhir/MeasureReport?period=2026Q3", nil)
	req.Header.Set("Authorization", "Bearer hie-key")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), "MeasureReport") || strings.Contains(string(body), ":specialist") {
		t.Errorf("MeasureReports without a specialist key: %d %.300s", resp.StatusCode, body)
	}
	cancel()
	if code := <-done; code != exitOK {
		t.Errorf("serve exited %d", code)
	}
	if !strings.Contains(stderr.String(), "no specialist key configured: MeasureReport strata by specialist are left out") {
		t.Errorf("serve did not say so:\n%s", stderr.String())
	}
}

// TestUnreadableSecretIsAUsageError: a secret the configuration names but
// that cannot be read is unreadable input: serve and sync exit 2, as the
// README says, naming the reference (never a value).
func TestUnreadableSecretIsAUsageError(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "ipsfhir.yaml")
	doc := "store: {driver: sqlite, dsn: ips.db}\nserver: {listen: \"127.0.0.1:0\"}\nconnections:\n" +
		"  - {name: clinic, enabled: true, fhirBaseUrl: \"http://127.0.0.1:1/fhir\", patientSystem: \"urn:x\",\n" +
		"     auth: {type: bearer, token: {file: " + filepath.Join(dir, "missing-token") + "}}}\n"
	if err := os.WriteFile(cfg, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"serve", "--config", cfg}, {"sync", "--once", "--config", cfg}} {
		code, _, stderr := ipsfhir(t, "", args...)
		if code != exitUsage || !strings.Contains(stderr, "read secret file") || !strings.Contains(stderr, "missing-token") {
			t.Errorf("%s: exit %d, stderr %q; want 2 naming the secret file", args[0], code, stderr)
		}
	}
}

// TestServeAllowsConfiguredOrigins: server.corsOrigins reaches /fhir and
// /api/v1 (preflights answered, the exact origin allowed, the statement
// saying security.cors); another origin, and /admin, get no CORS headers.
func TestServeAllowsConfiguredOrigins(t *testing.T) {
	t.Parallel()
	cfg := config.Default()
	cfg.Store.DSN = config.Value{Plain: filepath.Join(t.TempDir(), "ips.db")}
	cfg.Server.CORSOrigins = []string{"https://app.example.org"}
	sys, err := wire(t.Context(), cfg, io.Discard, false)
	if err != nil {
		t.Fatal(err)
	}
	defer sys.close(context.Background())
	h := sys.handler("http://127.0.0.1:8080/fhir")
	do := func(method, path, origin string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(method, path, nil)
		req.Header.Set("Origin", origin)
		if method == http.MethodOptions {
			req.Header.Set("Access-Control-Request-Method", "POST")
			req.Header.Set("Access-Control-Request-Headers", "authorization, content-type")
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}
	for _, path := range []string{"/fhir/Goal/_search", "/api/v1/clients"} {
		rec := do(http.MethodOptions, path, "https://app.example.org")
		if rec.Code != http.StatusNoContent || rec.Header().Get("Access-Control-Allow-Origin") != "https://app.example.org" ||
			!strings.Contains(rec.Header().Get("Access-Control-Allow-Headers"), "Authorization") {
			t.Errorf("preflight %s: %d %v", path, rec.Code, rec.Header())
		}
		if rec := do(http.MethodOptions, path, "https://evil.example.org"); rec.Header().Get("Access-Control-Allow-Origin") != "" {
			t.Errorf("preflight %s from another origin: %v", path, rec.Header())
		}
	}
	if rec := do(http.MethodOptions, "/admin/connections", "https://app.example.org"); rec.Header().Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("/admin answers CORS: %v", rec.Header())
	}
	rec := do(http.MethodGet, "/fhir/metadata", "https://app.example.org")
	if rec.Code != 200 || rec.Header().Get("Access-Control-Allow-Origin") != "https://app.example.org" || !strings.Contains(rec.Body.String(), `"cors": true`) {
		t.Errorf("/fhir/metadata from the app: %d %v %.200s", rec.Code, rec.Header(), rec.Body)
	}
}
