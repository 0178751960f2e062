package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ipsfhir/ipsfhir/adapter/ehr"
	"github.com/ipsfhir/ipsfhir/adapter/store/sqlite"
	"github.com/ipsfhir/ipsfhir/adapter/telemetry/telemetrytest"
	"github.com/ipsfhir/ipsfhir/conformance/peer"
	"github.com/ipsfhir/ipsfhir/mappings"
)

// TestConsoleEnablesAConnection: a connection disabled in the file and
// enabled from the console starts at once and gets the whole caseload; the
// choice survives a restart and shows in `ipsfhir connections`; disabled
// again it stops, a new client is not queued for it, and following the
// file again disables it as the file says.
func TestConsoleEnablesAConnection(t *testing.T) {
	t.Parallel()
	srv := peer.StartForTest(t, peer.Options{Args: []string{"--quiet"}})
	dir := t.TempDir()
	keyOf := func(k string) string { s := sha256.Sum256([]byte(k)); return hex.EncodeToString(s[:]) }
	const adminKey, specKey = "enable-admin-key-0001", "enable-spec-key-0002"
	dbPath := filepath.Join(dir, "ips.db")
	cfg := filepath.Join(dir, "ipsfhir.yaml")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, `program: {id: enable-test}
store: {driver: sqlite, dsn: %s}
server: {listen: "127.0.0.1:0"}
sync: {pushInterval: 1s}
apiKeys:
  - {name: jordan, role: specialist, sha256: %s}
  - {name: ops, role: admin, sha256: %s}
connections:
  - {name: later, fhirBaseUrl: %q, enabled: false, auth: {type: none}, timeout: 10s}
`, dbPath, keyOf(specKey), keyOf(adminKey), srv.BaseURL), 0o644); err != nil {
		t.Fatal(err)
	}
	peerClient, err := ehr.New(ehr.Options{BaseURL: srv.BaseURL})
	if err != nil {
		t.Fatal(err)
	}
	for _, mrn := range []string{"MRN800", "MRN801"} {
		if _, err := peerClient.Create(t.Context(), "Patient", fmt.Appendf(nil, `{"resourceType":"Patient","identifier":[{"system":"urn:oid:2.16.840.1.113883.3.9999.1","value":%q}]}`, mrn), ""); err != nil {
			t.Fatal(err)
		}
	}
	connections := func() string {
		t.Helper()
		var out, errOut telemetrytest.Buffer
		if code := run(t.Context(), []string{"connections", "--config", cfg, "--json"}, strings.NewReader(""), &out, &errOut); code != exitOK {
			t.Fatalf("ipsfhir connections: exit %d\n%s", code, errOut.String())
		}
		return out.String()
	}
	type listed struct {
		Connections []struct {
			Name    string
			Enabled bool
			InFile  bool
			SetBy   string
		}
	}
	list := func() listed {
		t.Helper()
		var l listed
		if err := json.Unmarshal([]byte(connections()), &l); err != nil || len(l.Connections) != 1 {
			t.Fatalf("ipsfhir connections --json: %v\n%s", err, connections())
		}
		return l
	}
	if l := list(); l.Connections[0].Enabled || l.Connections[0].SetBy != "" {
		t.Fatalf("before the console: %+v", l)
	}

	ctx, cancel := context.WithCancel(t.Context())
	base, stderr, done := startServe(t, ctx, cfg)
	call := func(method, path, key, body, contentType string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+key)
		req.Header.Set("Content-Type", contentType)
		resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	form := func(path string) int {
		t.Helper()
		code, _ := call("POST", path, adminKey, url.Values{"confirm": {"yes"}}.Encode(), "application/x-www-form-urlencoded")
		return code
	}
	createClient := func(id, mrn string) {
		t.Helper()
		body := fmt.Sprintf(`{"id":%q,"patient":{"system":"urn:oid:2.16.840.1.113883.3.9999.1","value":%q},"enrolledOn":"2026-11-02",
		 "goals":[{"id":"g1","description":"Work in a bakery","status":"active","start":"2026-11-03"}]}`, id, mrn)
		if code, b := call("POST", "/api/v1/clients", specKey, body, "application/json"); code != http.StatusCreated {
			t.Fatalf("create %s: %d %s", id, code, b)
		}
	}
	names := func(base string) []string {
		_, r, _ := getReadyz(t, base)
		var out []string
		for _, c := range r.Connections {
			out = append(out, c.Name)
		}
		return out
	}
	createClient("c1", "MRN800")
	if got := names(base); len(got) != 0 {
		t.Fatalf("/readyz lists %v while later is disabled", got)
	}
	if code := form("/console/connections/later/enable"); code != http.StatusSeeOther {
		t.Fatalf("enable from the console: %d\n%s", code, stderr.String())
	}
	// At once on this replica: /readyz lists it, and c1, saved while it was
	// disabled, reaches its EHR (the first load).
	if got := names(base); !slices.Equal(got, []string{"later"}) {
		t.Errorf("/readyz right after enabling lists %v", got)
	}
	planKey := func(client string) string {
		return mappings.Key{Program: "enable-test", Kind: mappings.KindPlan, Client: client}.Value()
	}
	waitPlan := func(client string) {
		t.Helper()
		for deadline := time.Now().Add(60 * time.Second); countIdentifiers(t, peerClient, "CarePlan", "enable-test", mappings.KindPlan)[planKey(client)] != 1; {
			if time.Now().After(deadline) {
				t.Fatalf("%s never reached the enabled connection's EHR:\n%s", client, stderr.String())
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	waitPlan("c1")
	if l := list(); !l.Connections[0].Enabled || l.Connections[0].InFile || l.Connections[0].SetBy != "ops" {
		t.Errorf("ipsfhir connections after the console enabled it: %+v", l)
	}
	if out := func() string {
		var o telemetrytest.Buffer
		run(t.Context(), []string{"connections", "--config", cfg}, strings.NewReader(""), &o, io.Discard)
		return o.String()
	}(); !strings.Contains(out, "later") || !strings.Contains(out, "enabled") || !strings.Contains(out, "console (ops,") {
		t.Errorf("ipsfhir connections:\n%s", out)
	}

	// A restart keeps it enabled.
	cancel()
	<-done
	ctx, cancel = context.WithCancel(t.Context())
	defer cancel()
	base, stderr, done = startServe(t, ctx, cfg)
	if got := names(base); !slices.Equal(got, []string{"later"}) {
		t.Errorf("/readyz after a restart lists %v, want later (enabled from the console)", got)
	}
	// Disabled: it stops, and a client saved now is not queued for it.
	if code := form("/console/connections/later/disable"); code != http.StatusSeeOther {
		t.Fatalf("disable: %d", code)
	}
	if got := names(base); len(got) != 0 {
		t.Errorf("/readyz after disabling lists %v", got)
	}
	createClient("c2", "MRN801")
	st, err := sqlite.Open(t.Context(), dbPath)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if depth, err := st.OutboxDepth(t.Context()); err != nil || depth["later"] != 0 {
		t.Errorf("a client saved while later is disabled was queued for it: %v %v", depth, err)
	}
	// Enabled again, then given back to the file (enabled: false).
	if code := form("/console/connections/later/enable"); code != http.StatusSeeOther {
		t.Fatalf("enable again: %d", code)
	}
	waitPlan("c2") // the whole caseload again, c2 with it
	if code, _ := call("POST", "/console/connections/later/follow-file", adminKey, "", "application/x-www-form-urlencoded"); code != http.StatusSeeOther {
		t.Fatalf("follow the file: %d", code)
	}
	if got := names(base); len(got) != 0 {
		t.Errorf("/readyz after following the file (enabled: false) lists %v", got)
	}
	if l := list(); l.Connections[0].Enabled || l.Connections[0].SetBy != "" {
		t.Errorf("ipsfhir connections after following the file: %+v", l)
	}
	if logs := stderr.String(); strings.Contains(logs, "MRN80") || strings.Contains(logs, adminKey) {
		t.Errorf("the log holds patient data or a key:\n%s", logs)
	}
	cancel()
	<-done
}

// TestDisabledConnectionWithUnreadableCredentials: serve starts although a
// disabled connection's token file cannot be read (an enabled one would
// stop it); enabled from the console, that connection fails to connect
// with reason config, as --help and docs/CONSOLE.md say.
func TestDisabledConnectionWithUnreadableCredentials(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	keyOf := func(k string) string { s := sha256.Sum256([]byte(k)); return hex.EncodeToString(s[:]) }
	cfg := filepath.Join(dir, "ipsfhir.yaml")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, `program: {id: creds-test}
store: {driver: sqlite, dsn: %s}
server: {listen: "127.0.0.1:0"}
apiKeys:
  - {name: ops, role: admin, sha256: %s}
connections:
  - {name: later, fhirBaseUrl: "https://ehr.example.org/fhir", enabled: false, auth: {type: bearer, token: {file: %s}}}
`, filepath.Join(dir, "ips.db"), keyOf("creds-admin-key"), filepath.Join(dir, "no-such-token")), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	base, stderr, done := startServe(t, ctx, cfg)
	req, _ := http.NewRequest("POST", base+"/console/connections/later/enable", strings.NewReader("confirm=yes"))
	req.Header.Set("Authorization", "Bearer creds-admin-key")
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("enable: %d\n%s", resp.StatusCode, stderr.String())
	}
	for deadline := time.Now().Add(30 * time.Second); ; {
		_, r, raw := getReadyz(t, base)
		if len(r.Connections) == 1 && len(r.Connections[0].Failures) == 1 && r.Connections[0].Failures[0].Reason == "config" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the enabled connection with an unreadable token never failed with reason config: %s\n%s", raw, stderr.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	cancel()
	<-done
}
