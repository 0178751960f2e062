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
	"strings"
	"testing"

	"github.com/ipsfhir/ipsfhir/adapter/telemetry/telemetrytest"
)

// TestServeLinksIgnoreForgedHost plays a caller that forges Host and
// X-Forwarded-Host against a service with no server.publicUrl: the /fhir
// links, fullUrls and export URLs still name the address the service
// listens on, so a client following them never takes its key elsewhere.
func TestServeLinksIgnoreForgedHost(t *testing.T) {
	t.Parallel()
	const evil = "attacker.example"
	dir := t.TempDir()
	keyOf := func(k string) string { s := sha256.Sum256([]byte(k)); return hex.EncodeToString(s[:]) }
	cfg := filepath.Join(dir, "ipsfhir.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`program: {id: host-test}
store: {driver: sqlite, dsn: ips.db}
server: {listen: "127.0.0.1:0"}
apiKeys:
  - {name: jordan, role: specialist, sha256: %s}
  - {name: ops, role: admin, sha256: %s}
`, keyOf("spec-key"), keyOf("admin-key"))), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	base, stderr, done := startServe(t, ctx, cfg)
	call := func(method, path, key, body string, header ...string) (int, http.Header, string) {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		req.Host = evil
		req.Header.Set("X-Forwarded-Host", evil)
		req.Header.Set("X-Forwarded-Proto", "https")
		req.Header.Set("Forwarded", "host="+evil+";proto=https")
		req.Header.Set("Authorization", "Bearer "+key)
		req.Header.Set("Content-Type", "application/json")
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header, string(b)
	}
	for _, id := range []string{"c1", "c2"} {
		client := `{"id":"` + id + `","patient":{"system":"urn:oid:2.16.840.1.113883.3.9999.1","value":"MRN-` + id + `"},"enrolledOn":"2026-07-02",
		 "goals":[{"id":"g1","description":"Work in a bakery","status":"active","start":"2026-07-03"}]}`
		if code, _, body := call("POST", "/api/v1/clients", "spec-key", client); code != http.StatusCreated {
			t.Fatalf("create client: %d %s", code, body)
		}
	}
	want := base + "/fhir/"
	code, _, body := call("GET", "/fhir/Goal?_count=1", "spec-key", "")
	var b struct {
		Link  []struct{ Relation, URL string } `json:"link"`
		Entry []struct {
			FullURL string `json:"fullUrl"`
		} `json:"entry"`
	}
	if err := json.Unmarshal([]byte(body), &b); err != nil || code != 200 || len(b.Link) != 2 || len(b.Entry) != 1 {
		t.Fatalf("search: %d %.400s", code, body)
	}
	for _, l := range b.Link {
		if !strings.HasPrefix(l.URL, want+"Goal?_cursor=") {
			t.Errorf("%s link %q does not name the listen address", l.Relation, l.URL)
		}
	}
	if !strings.HasPrefix(b.Entry[0].FullURL, want+"Goal/") {
		t.Errorf("fullUrl %q", b.Entry[0].FullURL)
	}
	if code, _, meta := call("GET", "/fhir/metadata", "", ""); code != 200 || strings.Contains(meta, evil) || !strings.Contains(meta, `"url": "`+base+`/fhir"`) {
		t.Errorf("metadata: %d, implementation.url not the listen address: %.300s", code, meta)
	}
	code, h, kick := call("GET", "/fhir/$export", "admin-key", "", "Prefer", "respond-async")
	if code != http.StatusAccepted || !strings.HasPrefix(h.Get("Content-Location"), want+"bulk-status/") || strings.Contains(kick, evil) {
		t.Errorf("kick-off: %d, Content-Location %q", code, h.Get("Content-Location"))
	}
	if strings.Contains(body, evil) {
		t.Errorf("the search names the forged host: %.400s", body)
	}
	if !strings.Contains(stderr.String(), "no public URL configured: FHIR links name the listen address") {
		t.Errorf("serve does not say where links point without server.publicUrl:\n%s", stderr.String())
	}
	cancel()
	if code := <-done; code != exitOK {
		t.Errorf("serve exited %d:\n%s", code, stderr.String())
	}
}

// TestServeCursorKeySurvivesRestart: with server.cursorKey, a paging link
// given out before a restart is followed after it (as on another replica
// with the same key); without, it is refused with a 400 that says to
// search again; and a key too short stops serve.
func TestServeCursorKeySurvivesRestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	sum := sha256.Sum256([]byte("spec-key"))
	write := func(name, server string) string {
		cfg := filepath.Join(dir, name)
		doc := "program: {id: cursor-test}\nstore: {driver: sqlite, dsn: ips.db}\nserver: {listen: \"127.0.0.1:0\"" + server + "}\n" +
			"apiKeys:\n  - {name: jordan, role: specialist, sha256: " + hex.EncodeToString(sum[:]) + "}\n"
		if err := os.WriteFile(cfg, []byte(doc), 0o600); err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	if err := os.WriteFile(filepath.Join(dir, "cursor.key"), []byte(strings.Repeat("c", 40)), 0o600); err != nil {
		t.Fatal(err)
	}
	call := func(base, method, path, body string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer spec-key")
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	// serveOnce runs serve with cfg while f calls it (the port changes
	// with each start, so links are kept as path and query).
	serveOnce := func(cfg string, f func(base string)) {
		ctx, cancel := context.WithCancel(t.Context())
		base, stderr, done := startServe(t, ctx, cfg)
		f(base)
		cancel()
		if code := <-done; code != exitOK {
			t.Fatalf("serve exited %d:\n%s", code, stderr.String())
		}
	}
	var next string
	keyed := write("keyed.yaml", ", cursorKey: {file: cursor.key}")
	serveOnce(keyed, func(base string) {
		for _, id := range []string{"c1", "c2"} {
			client := `{"id":"` + id + `","patient":{"system":"urn:x","value":"MRN-` + id + `"},"enrolledOn":"2026-07-02","goals":[{"id":"g1","description":"d","status":"active","start":"2026-07-03"}]}`
			if code, body := call(base, "POST", "/api/v1/clients", client); code != http.StatusCreated {
				t.Fatalf("create client: %d %s", code, body)
			}
		}
		_, body := call(base, "GET", "/fhir/Goal?_count=1", "")
		var b struct {
			Link []struct{ Relation, URL string }
		}
		_ = json.Unmarshal([]byte(body), &b)
		for _, l := range b.Link {
			if l.Relation == "next" {
				u, _ := url.Parse(l.URL)
				next = u.RequestURI()
			}
		}
		if next == "" {
			t.Fatalf("no next link: %.300s", body)
		}
	})
	serveOnce(keyed, func(base string) {
		if code, body := call(base, "GET", next, ""); code != 200 || !strings.Contains(body, `"fullUrl"`) {
			t.Errorf("the link after a restart with the same key: %d %.300s", code, body)
		}
	})
	serveOnce(write("unkeyed.yaml", ""), func(base string) {
		if code, body := call(base, "GET", next, ""); code != http.StatusBadRequest || !strings.Contains(body, "search again") {
			t.Errorf("the link after a restart without the key: %d %.300s", code, body)
		}
	})
	if err := os.WriteFile(filepath.Join(dir, "cursor.key"), []byte("short"), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errOut telemetrytest.Buffer
	if code := run(t.Context(), []string{"serve", "--config", keyed}, strings.NewReader(""), &out, &errOut); code != exitFindings || !strings.Contains(errOut.String(), "server.cursorKey") {
		t.Errorf("serve with a short cursor key: exit %d\n%s", code, errOut.String())
	}
}
