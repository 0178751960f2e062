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
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ipsfhir/ipsfhir/adapter/config"
	"github.com/ipsfhir/ipsfhir/adapter/ehr"
	"github.com/ipsfhir/ipsfhir/conformance/peer"
	"github.com/ipsfhir/ipsfhir/mappings"
)

// lockedBuffer is written by the server goroutine and read by the test.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func TestServePushesWhatTheAPIStores(t *testing.T) {
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
	var stdout, stderr lockedBuffer
	done := make(chan int, 1)
	go func() { done <- run(ctx, []string{"serve", "--config", cfg}, strings.NewReader(""), &stdout, &stderr) }()
	var base string
	for deadline := time.Now().Add(20 * time.Second); base == ""; {
		if m := regexp.MustCompile(`http://127\.0\.0\.1:\d+`).FindString(stdout.String()); m != "" {
			base = m
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve did not start:\n%s", stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}

	if resp, err := http.Get(base + "/healthz"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("healthz: %v %v", resp, err)
	}
	if resp, err := http.Get(base + "/api/v1/clients"); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("API without a key: %v %v, want 401", resp, err)
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
	srv := peer.StartForTest(t, peer.Options{Args: []string{"--quiet"}})
	client, err := ehr.New(ehr.Options{BaseURL: srv.BaseURL})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	var stdout, stderr lockedBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"demo", "--out", t.TempDir(), "--ehr", srv.BaseURL}, strings.NewReader(""), &stdout, &stderr)
	}()
	for deadline := time.Now().Add(60 * time.Second); ; {
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
	sys.handler().ServeHTTP(rec, httptest.NewRequest("GET", "/.well-known/jwks.json", nil))
	var set struct {
		Keys []map[string]any `json:"keys"`
	}
	if rec.Code != 200 || json.Unmarshal(rec.Body.Bytes(), &set) != nil || len(set.Keys) != 1 || set.Keys[0]["kid"] != "k1" || set.Keys[0]["d"] != nil {
		t.Errorf("JWKS: %d %s; want one public key, no private part", rec.Code, rec.Body)
	}
}
