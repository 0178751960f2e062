package ehr_test

import (
	"encoding/pem"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ipsfhir/ipsfhir/adapter/ehr"
)

// These use httptest for what the peer cannot do.

func TestRetryAfterHTTPDate(t *testing.T) {
	var mu sync.Mutex
	var times []time.Time
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		times = append(times, time.Now())
		n := len(times)
		mu.Unlock()
		if n == 1 {
			// HTTP dates have whole seconds: +2 s is a wait of 1 to 2 s.
			w.Header().Set("Retry-After", time.Now().Add(2*time.Second).UTC().Format(http.TimeFormat))
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/fhir+json")
		_, _ = w.Write([]byte(`{"resourceType":"CapabilityStatement"}`))
	}))
	defer srv.Close()
	c, _ := newClient(t, srv.URL, ehr.Options{})
	if _, err := c.Metadata(t.Context()); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(times) != 2 {
		t.Fatalf("%d requests, want 2", len(times))
	}
	if wait := times[1].Sub(times[0]); wait < 900*time.Millisecond {
		t.Fatalf("retried after %v; the Retry-After date asked for at least 1 s", wait)
	}
}

func TestRetryAfterOverCap(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.Header().Set("Retry-After", "120")
		w.Header().Set("Content-Type", "application/fhir+json")
		w.WriteHeader(http.StatusTooManyRequests)
		_, _ = w.Write([]byte(`{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"throttled","diagnostics":"slow down"}]}`))
	}))
	defer srv.Close()
	c, _ := newClient(t, srv.URL, ehr.Options{MaxRetryAfter: time.Second})
	start := time.Now()
	_, err := c.Read(t.Context(), "Goal", "g1")
	if took := time.Since(start); took > time.Second {
		t.Fatalf("took %v: the client waited out a Retry-After above its cap", took)
	}
	e := wantKind(t, err, ehr.KindTransient)
	if e.Status != http.StatusTooManyRequests || e.RetryAfter != 120*time.Second || calls.Load() != 1 {
		t.Fatalf("status %d retry-after %v calls %d; want 429, 2m0s, 1", e.Status, e.RetryAfter, calls.Load())
	}
	if len(e.IssueCodes) != 1 || e.IssueCodes[0] != "throttled" || strings.Contains(err.Error(), "slow down") {
		t.Fatalf("issue codes %v, error %q", e.IssueCodes, err)
	}
}

// closeFirst answers by closing the connection the first time, then with
// handler.
func closeFirst(t *testing.T, handler http.HandlerFunc) (*httptest.Server, *atomic.Int32) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			conn, _, err := http.NewResponseController(w).Hijack()
			if err != nil {
				t.Errorf("hijack: %v", err)
				return
			}
			conn.Close()
			return
		}
		handler(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv, &calls
}

func TestConnectionClosed(t *testing.T) {
	ok := func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/fhir+json")
		w.Header().Set("Location", "/fhir/Goal/g9/_history/2")
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write([]byte(`{"resourceType":"Goal","id":"g9"}`))
	}
	t.Run("GET is retried", func(t *testing.T) {
		srv, calls := closeFirst(t, ok)
		c, _ := newClient(t, srv.URL+"/fhir", ehr.Options{})
		resp, err := c.Read(t.Context(), "Goal", "g9")
		if err != nil {
			t.Fatalf("read after a closed connection: %v", err)
		}
		if calls.Load() != 2 || resp.ResourceID != "g9" || resp.VersionID != "2" {
			t.Fatalf("calls %d id %q version %q", calls.Load(), resp.ResourceID, resp.VersionID)
		}
	})
	t.Run("plain POST is not", func(t *testing.T) {
		srv, calls := closeFirst(t, ok)
		c, _ := newClient(t, srv.URL+"/fhir", ehr.Options{})
		_, err := c.Create(t.Context(), "Goal", []byte(`{"resourceType":"Goal"}`), "")
		wantKind(t, err, ehr.KindOutcomeUnknown)
		if calls.Load() != 1 {
			t.Fatalf("%d calls, want 1", calls.Load())
		}
	})
	t.Run("conditional POST is", func(t *testing.T) {
		srv, calls := closeFirst(t, ok)
		c, _ := newClient(t, srv.URL+"/fhir", ehr.Options{})
		if _, err := c.Create(t.Context(), "Goal", []byte(`{"resourceType":"Goal"}`), "identifier=s|v"); err != nil {
			t.Fatal(err)
		}
		if calls.Load() != 2 {
			t.Fatalf("%d calls, want 2", calls.Load())
		}
	})
}

func TestConnectionRefusedPostIsRetried(t *testing.T) {
	// A port nobody listens on: the request was never sent, so even a plain
	// POST may be tried again, and the failure is transient, not unknown.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	c, rec := newClient(t, "http://"+addr+"/fhir", ehr.Options{MaxAttempts: 2})
	_, err = c.Create(t.Context(), "Goal", []byte(`{"resourceType":"Goal"}`), "")
	e := wantKind(t, err, ehr.KindTransient)
	if e.Attempts != 2 {
		t.Fatalf("attempts %d, want 2", e.Attempts)
	}
	if got := resends(rec); len(got) != 1 || got[0] != 1 {
		t.Fatalf("resend counts %v", got)
	}
	if strings.Contains(err.Error(), "/fhir") {
		t.Fatalf("error quotes the URL: %q", err)
	}
}

func TestPrivateCA(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/fhir+json")
		_, _ = w.Write([]byte(`{"resourceType":"CapabilityStatement"}`))
	}))
	defer srv.Close()
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}

	c, _ := newClient(t, srv.URL, ehr.Options{CAFile: caFile, Auth: ehr.Bearer("t")})
	if _, err := c.Metadata(t.Context()); err != nil {
		t.Fatalf("with the CA bundle: %v", err)
	}

	without, rec := newClient(t, srv.URL, ehr.Options{})
	start := time.Now()
	_, err := without.Metadata(t.Context())
	e := wantKind(t, err, ehr.KindOther)
	if e.Attempts != 1 || time.Since(start) > time.Second {
		t.Fatalf("an untrusted certificate was retried: %d attempts", e.Attempts)
	}
	if got := resends(rec); len(got) != 1 || got[0] != 0 {
		t.Fatalf("resend counts %v", got)
	}

	bad := filepath.Join(t.TempDir(), "bad.pem")
	if err := os.WriteFile(bad, []byte("not pem"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ehr.New(ehr.Options{BaseURL: srv.URL, CAFile: bad}); err == nil {
		t.Fatal("New accepted a CA file with no certificate")
	}
}

func TestRedirectNotFollowed(t *testing.T) {
	var elsewhere atomic.Int32
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { elsewhere.Add(1) }))
	defer other.Close()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.URL+"/steal", http.StatusFound)
	}))
	defer srv.Close()
	c, _ := newClient(t, srv.URL, ehr.Options{Auth: ehr.Bearer("t")})
	_, err := c.Read(t.Context(), "Goal", "g1")
	e := wantKind(t, err, ehr.KindOther)
	if e.Status != http.StatusFound || elsewhere.Load() != 0 {
		t.Fatalf("status %d, %d requests elsewhere", e.Status, elsewhere.Load())
	}
}

func TestSearchRefusesForeignNextLink(t *testing.T) {
	var elsewhere atomic.Int32
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { elsewhere.Add(1) }))
	defer other.Close()
	next := other.URL + "/fhir/Goal?page=2"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/fhir+json")
		_, _ = w.Write([]byte(`{"resourceType":"Bundle","type":"searchset","link":[{"relation":"next","url":"` + next + `"}],"entry":[{"fullUrl":"x","resource":{"resourceType":"Goal","id":"1"}}]}`))
	}))
	defer srv.Close()
	c, _ := newClient(t, srv.URL+"/fhir", ehr.Options{Auth: ehr.Bearer("t")})
	_, err := c.Search(t.Context(), "Goal", url.Values{"patient": {"p1"}})
	if !errors.Is(err, ehr.ErrForeignLink) || elsewhere.Load() != 0 {
		t.Fatalf("err %v, %d requests elsewhere; want ErrForeignLink and none", err, elsewhere.Load())
	}
}

func TestNewRejects(t *testing.T) {
	for _, o := range []ehr.Options{
		{BaseURL: ""},
		{BaseURL: "ehr.example.org/fhir"},
		{BaseURL: "ftp://ehr.example.org/fhir"},
		{BaseURL: "https://ehr.example.org/fhir?x=1"},
		{BaseURL: "https://u:p@ehr.example.org/fhir"},
		{BaseURL: "https://ehr.example.org/fhir", Connection: "has space"},
		{BaseURL: "https://ehr.example.org/fhir", MaxAttempts: -1},
	} {
		if _, err := ehr.New(o); err == nil {
			t.Errorf("New(%+v) accepted", o)
		}
	}
}

func TestRequestPathMustStayUnderBase(t *testing.T) {
	c, _ := newClient(t, "https://ehr.example.org/fhir", ehr.Options{})
	for _, p := range []string{"/Goal", "https://elsewhere.example/Goal", "../admin", "Goal/../../x", "//elsewhere/x"} {
		_, err := c.Do(t.Context(), ehr.Request{Method: http.MethodGet, Path: p})
		wantKind(t, err, ehr.KindInvalid)
	}
	_, err := c.Do(t.Context(), ehr.Request{Method: "TRACE", Path: "Goal"})
	wantKind(t, err, ehr.KindInvalid)
	_, err = c.Read(t.Context(), "Goal", "bad id with spaces")
	wantKind(t, err, ehr.KindInvalid)
	_, err = c.Transaction(t.Context(), []byte(`{"resourceType":"Bundle","type":"batch"}`), true)
	wantKind(t, err, ehr.KindInvalid)
}
