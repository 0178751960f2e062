package ehr_test

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ipsfhir/ipsfhir/adapter/ehr"
)

// These use httptest: the peer cannot answer a 500 once and then succeed.

// request is what a test server saw of one request.
type request struct{ method, path string }

// flakyServer answers the first request with status (and a Retry-After
// header if retryAfter is set), then every later one with ok. It records
// every request.
type flakyServer struct {
	*httptest.Server
	calls atomic.Int32
	mu    sync.Mutex
	seen  []request
}

func newFlakyServer(t *testing.T, status int, retryAfter string) *flakyServer {
	t.Helper()
	fs := &flakyServer{}
	fs.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fs.mu.Lock()
		fs.seen = append(fs.seen, request{r.Method, r.URL.Path})
		fs.mu.Unlock()
		w.Header().Set("Content-Type", "application/fhir+json")
		if fs.calls.Add(1) == 1 {
			if retryAfter != "" {
				w.Header().Set("Retry-After", retryAfter)
			}
			w.WriteHeader(status)
			_, _ = w.Write([]byte(`{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"exception","diagnostics":"NullPointerException for Patient Jane Doe"}]}`))
			return
		}
		switch {
		case strings.HasSuffix(r.URL.Path, "/metadata"):
			_, _ = w.Write([]byte(`{"resourceType":"CapabilityStatement"}`))
		case r.Method == http.MethodGet && strings.Count(r.URL.Path, "/") >= 3, r.Method == http.MethodPut:
			_, _ = w.Write([]byte(`{"resourceType":"Goal","id":"g1","meta":{"versionId":"2"}}`))
		case r.Method == http.MethodPost && !strings.HasSuffix(r.URL.Path, "/_search") && r.URL.Path != "/fhir":
			w.Header().Set("Location", "/fhir/Goal/g1/_history/1")
			w.WriteHeader(http.StatusCreated)
			_, _ = w.Write([]byte(`{"resourceType":"Goal","id":"g1"}`))
		default:
			_, _ = w.Write([]byte(`{"resourceType":"Bundle","type":"searchset","entry":[{"fullUrl":"x","resource":{"resourceType":"Goal","id":"g1"}}]}`))
		}
	}))
	t.Cleanup(fs.Close)
	return fs
}

func (fs *flakyServer) requests() []request {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return append([]request(nil), fs.seen...)
}

// longQuery is a search too long for a GET URL, which Search sends as
// POST [type]/_search.
func longQuery() url.Values {
	return url.Values{"identifier": {strings.Repeat("x", 2100)}}
}

// TestReadsRetriedOn5xx: a read (GET, HEAD, a search via POST) that meets
// a 500 is tried again and succeeds, where before one 500 failed the call.
func TestReadsRetriedOn5xx(t *testing.T) {
	reads := []struct {
		name   string
		method string // of both attempts
		read   func(c *ehr.Client) error
	}{
		{"metadata", http.MethodGet, func(c *ehr.Client) error { _, err := c.Metadata(t.Context()); return err }},
		{"read", http.MethodGet, func(c *ehr.Client) error { _, err := c.Read(t.Context(), "Goal", "g1"); return err }},
		{"search", http.MethodGet, func(c *ehr.Client) error {
			_, err := c.Search(t.Context(), "Goal", url.Values{"patient": {"p1"}})
			return err
		}},
		{"search via POST", http.MethodPost, func(c *ehr.Client) error {
			entries, err := c.Search(t.Context(), "Goal", longQuery())
			if err == nil && len(entries) != 1 {
				t.Errorf("%d entries, want 1", len(entries))
			}
			return err
		}},
		{"HEAD", http.MethodHead, func(c *ehr.Client) error {
			_, err := c.Do(t.Context(), ehr.Request{Method: http.MethodHead, Path: "Goal/g1"})
			return err
		}},
	}
	for _, status := range []int{http.StatusInternalServerError, http.StatusBadGateway, http.StatusGatewayTimeout, 507} {
		for _, tc := range reads {
			t.Run(tc.name+"/"+http.StatusText(status), func(t *testing.T) {
				t.Parallel()
				srv := newFlakyServer(t, status, "")
				c, rec := newClient(t, srv.URL+"/fhir", ehr.Options{})
				if err := tc.read(c); err != nil {
					t.Fatalf("after one %d: %v", status, err)
				}
				got := srv.requests()
				if len(got) != 2 || got[0] != got[1] || got[0].method != tc.method {
					t.Fatalf("requests %v, want the same %s twice", got, tc.method)
				}
				if tc.method == http.MethodPost && !strings.HasSuffix(got[0].path, "/Goal/_search") {
					t.Fatalf("requests %v, want POST .../Goal/_search", got)
				}
				if r := resends(rec); len(r) != 1 || r[0] != 1 {
					t.Fatalf("resend counts %v, want [1]", r)
				}
			})
		}
	}
}

// TestReadRetriesOn5xxAreBounded: a read that keeps meeting 500 stops
// after MaxAttempts with the last answer, and 501 (the EHR does not do
// this at all) is not retried.
func TestReadRetriesOn5xxAreBounded(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.Header().Set("Content-Type", "application/fhir+json")
		if r.URL.Path == "/Goal/g501" {
			w.WriteHeader(http.StatusNotImplemented)
			return
		}
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = w.Write([]byte(`{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"exception"}]}`))
	}))
	defer srv.Close()
	c, _ := newClient(t, srv.URL, ehr.Options{MaxAttempts: 3})
	_, err := c.Read(t.Context(), "Goal", "g1")
	e := wantKind(t, err, ehr.KindTransient)
	if e.Status != http.StatusInternalServerError || e.Attempts != 3 || calls.Load() != 3 {
		t.Fatalf("status %d, attempts %d, %d requests; want 500 after 3", e.Status, e.Attempts, calls.Load())
	}
	if len(e.IssueCodes) != 1 || e.IssueCodes[0] != "exception" || e.Token() != "http-5xx" {
		t.Fatalf("issue codes %v, token %q", e.IssueCodes, e.Token())
	}
	if got, want := err.Error(), "ehr: read Goal: transient (HTTP 500) issues exception after 3 attempts"; got != want {
		t.Fatalf("Error() = %q, want %q", got, want)
	}

	calls.Store(0)
	_, err = c.Read(t.Context(), "Goal", "g501")
	e = wantKind(t, err, ehr.KindNotAllowed)
	if calls.Load() != 1 || e.Token() != "not-allowed" {
		t.Fatalf("501: %d requests, token %q; want 1 and not-allowed", calls.Load(), e.Token())
	}
}

// TestWritesNotRetriedOn500: the write rules are unchanged. A plain POST, a
// conditional POST, a transaction, a PUT, a DELETE and a POST _search sent
// through Do (the client marks only Search's as a read) that meet a 500 are
// sent once and fail KindTransient, for the outbox to retry later.
func TestWritesNotRetriedOn500(t *testing.T) {
	goal := []byte(`{"resourceType":"Goal"}`)
	bundle := []byte(`{"resourceType":"Bundle","type":"transaction","entry":[]}`)
	writes := []struct {
		name  string
		write func(c *ehr.Client) error
	}{
		{"create", func(c *ehr.Client) error { _, err := c.Create(t.Context(), "Goal", goal, ""); return err }},
		{"conditional create", func(c *ehr.Client) error {
			_, err := c.Create(t.Context(), "Goal", goal, "identifier=s|v")
			return err
		}},
		{"transaction", func(c *ehr.Client) error { _, err := c.Transaction(t.Context(), bundle, true); return err }},
		{"update", func(c *ehr.Client) error { _, err := c.Update(t.Context(), "Goal", "g1", goal, "1"); return err }},
		{"POST _search through Do", func(c *ehr.Client) error {
			_, err := c.Do(t.Context(), ehr.Request{Method: http.MethodPost, Path: "Goal/_search", Body: []byte("patient=p1"),
				Header: http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}, Idempotent: true})
			return err
		}},
		{"DELETE", func(c *ehr.Client) error {
			_, err := c.Do(t.Context(), ehr.Request{Method: http.MethodDelete, Path: "Goal/g1"})
			return err
		}},
	}
	for _, tc := range writes {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := newFlakyServer(t, http.StatusInternalServerError, "")
			c, _ := newClient(t, srv.URL+"/fhir", ehr.Options{})
			e := wantKind(t, tc.write(c), ehr.KindTransient)
			if n := srv.calls.Load(); n != 1 {
				t.Fatalf("%d requests, want exactly 1", n)
			}
			if e.Status != http.StatusInternalServerError || e.Attempts != 1 || e.Token() != "http-5xx" {
				t.Fatalf("status %d attempts %d token %q; want 500, 1, http-5xx", e.Status, e.Attempts, e.Token())
			}
			if strings.Contains(e.Error(), "Jane") || strings.Contains(e.Error(), "NullPointer") {
				t.Fatalf("Error() quotes the diagnostics: %q", e)
			}
		})
	}
}

// TestRetryAfterReachesCaller: whenever the final answer is a 429 or 503
// with Retry-After, Error.RetryAfter holds it, not only when it was over
// MaxRetryAfter; and only the final answer's counts.
func TestRetryAfterReachesCaller(t *testing.T) {
	always := func(status int, retryAfter string) *httptest.Server {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if retryAfter != "" {
				w.Header().Set("Retry-After", retryAfter)
			}
			w.WriteHeader(status)
		}))
		t.Cleanup(srv.Close)
		return srv
	}
	goal := []byte(`{"resourceType":"Goal"}`)

	t.Run("429 under the cap, waited out, then given up", func(t *testing.T) {
		t.Parallel()
		// Past MaxThrottleWait a 429 counts as an attempt like any other.
		c, _ := newClient(t, always(http.StatusTooManyRequests, "1").URL, ehr.Options{MaxAttempts: 2, MaxThrottleWait: time.Nanosecond})
		_, err := c.Read(t.Context(), "Goal", "g1")
		e := wantKind(t, err, ehr.KindTransient)
		if e.Status != http.StatusTooManyRequests || e.Attempts != 2 || e.RetryAfter != time.Second || e.Token() != "throttled" {
			t.Fatalf("status %d attempts %d retry-after %v token %q; want 429, 2, 1s, throttled", e.Status, e.Attempts, e.RetryAfter, e.Token())
		}
		if !strings.Contains(err.Error(), "EHR asks to retry after 1s") {
			t.Fatalf("Error() = %q", err)
		}
	})
	t.Run("503 with one attempt", func(t *testing.T) {
		t.Parallel()
		c, _ := newClient(t, always(http.StatusServiceUnavailable, "7").URL, ehr.Options{MaxAttempts: 1})
		_, err := c.Create(t.Context(), "Goal", goal, "")
		e := wantKind(t, err, ehr.KindTransient)
		if e.Status != http.StatusServiceUnavailable || e.RetryAfter != 7*time.Second || e.Token() != "http-5xx" {
			t.Fatalf("status %d retry-after %v token %q; want 503, 7s, http-5xx", e.Status, e.RetryAfter, e.Token())
		}
	})
	t.Run("503 as an HTTP date", func(t *testing.T) {
		t.Parallel()
		date := time.Now().Add(90 * time.Second).UTC().Format(http.TimeFormat)
		c, _ := newClient(t, always(http.StatusServiceUnavailable, date).URL, ehr.Options{MaxAttempts: 1})
		_, err := c.Metadata(t.Context())
		e := wantKind(t, err, ehr.KindTransient)
		if e.RetryAfter < 80*time.Second || e.RetryAfter > 90*time.Second {
			t.Fatalf("retry-after %v, want about 90s", e.RetryAfter)
		}
	})
	t.Run("no header", func(t *testing.T) {
		t.Parallel()
		c, _ := newClient(t, always(http.StatusTooManyRequests, "").URL, ehr.Options{MaxAttempts: 1, MaxThrottleWait: time.Nanosecond})
		_, err := c.Read(t.Context(), "Goal", "g1")
		if e := wantKind(t, err, ehr.KindTransient); e.RetryAfter != 0 {
			t.Fatalf("retry-after %v, want 0", e.RetryAfter)
		}
	})
	t.Run("not on a 500", func(t *testing.T) {
		t.Parallel()
		c, _ := newClient(t, always(http.StatusInternalServerError, "30").URL, ehr.Options{MaxAttempts: 1})
		_, err := c.Create(t.Context(), "Goal", goal, "")
		if e := wantKind(t, err, ehr.KindTransient); e.RetryAfter != 0 {
			t.Fatalf("retry-after %v on a 500, want 0", e.RetryAfter)
		}
	})
	t.Run("only the final answer's", func(t *testing.T) {
		t.Parallel()
		// 503 with Retry-After 1, then 500s: the read is retried on both and
		// ends on a 500, which asked for nothing.
		var calls atomic.Int32
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if calls.Add(1) == 1 {
				w.Header().Set("Retry-After", "1")
				w.WriteHeader(http.StatusServiceUnavailable)
				return
			}
			w.WriteHeader(http.StatusInternalServerError)
		}))
		defer srv.Close()
		c, _ := newClient(t, srv.URL, ehr.Options{MaxAttempts: 2})
		_, err := c.Read(t.Context(), "Goal", "g1")
		e := wantKind(t, err, ehr.KindTransient)
		if e.Status != http.StatusInternalServerError || e.Attempts != 2 || e.RetryAfter != 0 {
			t.Fatalf("status %d attempts %d retry-after %v; want 500, 2, 0", e.Status, e.Attempts, e.RetryAfter)
		}
	})
}
