package check

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/ipsfhir/ipsfhir/adapter/ehr"
	"github.com/ipsfhir/ipsfhir/conformance/peer"
)

// exchange is one request the check sent, as a recording proxy saw it.
type exchange struct {
	method, path string
	status       int
}

// recorder is a reverse proxy in front of the peer that records every
// request and the status the peer answered, so a test can say exactly what
// the check sent: nothing undeclared (the enforcing peer answers 405 to
// that), and no write unless write tests were asked for.
type recorder struct {
	tokenPath string // the peer's token endpoint, the one POST a read-only check may send
	mu        sync.Mutex
	seen      []exchange
}

func (rc *recorder) take() []exchange {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	out := rc.seen
	rc.seen = nil
	return out
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

// startPeer starts a peer (enforcing capability when not "") behind a
// recording proxy and returns the proxy's FHIR base, a client for seeding,
// and the recorder.
func startPeer(t *testing.T, capability string) (string, *ehr.Client, *recorder) {
	t.Helper()
	srv := peer.StartForTest(t, peer.Options{Capability: capability, Args: []string{"--quiet"}})
	target, err := url.Parse(srv.BaseURL)
	if err != nil {
		t.Fatal(err)
	}
	// The peer serves each test's token endpoint beside its FHIR base
	// (/t/{id}/auth/token beside /t/{id}/fhir/R4).
	rc := &recorder{tokenPath: strings.TrimSuffix(target.Path, "/fhir/R4") + "/auth/token"}
	proxy := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: target.Scheme, Host: target.Host})
	var front *httptest.Server
	// The proxy is the EHR's address, so the SMART configuration names the
	// token endpoint under it, as a real EHR's does; ipsfhir would refuse
	// one on the peer's own origin.
	proxy.ModifyResponse = func(resp *http.Response) error {
		if !strings.HasSuffix(resp.Request.URL.Path, "/.well-known/smart-configuration") {
			return nil
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return err
		}
		b = bytes.ReplaceAll(b, []byte(target.Scheme+"://"+target.Host), []byte(front.URL))
		resp.Body = io.NopCloser(bytes.NewReader(b))
		resp.ContentLength = int64(len(b))
		resp.Header.Set("Content-Length", strconv.Itoa(len(b)))
		return nil
	}
	front = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		proxy.ServeHTTP(sw, r)
		rc.mu.Lock()
		rc.seen = append(rc.seen, exchange{method: r.Method, path: r.URL.Path, status: sw.status})
		rc.mu.Unlock()
	}))
	t.Cleanup(front.Close)
	base := front.URL + target.Path
	c, err := ehr.New(ehr.Options{BaseURL: srv.BaseURL})
	if err != nil {
		t.Fatal(err)
	}
	return base, c, rc
}

// testPatient creates a test patient in the peer and returns its id.
func testPatient(t *testing.T, c *ehr.Client) string {
	t.Helper()
	resp, err := c.Create(t.Context(), "Patient", []byte(`{"resourceType":"Patient","identifier":[{"system":"urn:test","value":"check-test-patient"}]}`), "")
	if err != nil {
		t.Fatal(err)
	}
	return resp.ResourceID
}

// noneRefused fails t if the check sent anything the peer refused as
// undeclared (405), or a search parameter it does not declare (400).
func noneRefused(t *testing.T, seen []exchange) {
	t.Helper()
	for _, e := range seen {
		if e.status == http.StatusMethodNotAllowed || e.status == http.StatusBadRequest || e.status == http.StatusNotImplemented {
			t.Errorf("the check sent %s %s and the peer answered %d: an undeclared interaction or parameter", e.method, e.path, e.status)
		}
	}
	if len(seen) == 0 {
		t.Error("the recording proxy saw no request")
	}
}

// noWrites fails t if the check sent anything but GET to the FHIR base (and
// the token request of smart-backend auth).
func noWrites(t *testing.T, rc *recorder, seen []exchange) {
	t.Helper()
	for _, e := range seen {
		// The token request of smart-backend auth is the one POST allowed.
		if e.method != http.MethodGet && (e.method != http.MethodPost || e.path != rc.tokenPath) {
			t.Errorf("without write tests the check sent %s %s", e.method, e.path)
		}
	}
}

// count returns how many resources of type typ the peer holds for patient.
func count(t *testing.T, c *ehr.Client, typ, patient string) int {
	t.Helper()
	entries, err := c.Search(t.Context(), typ, url.Values{"patient": {"Patient/" + patient}})
	if err != nil {
		t.Fatal(err)
	}
	return len(entries)
}

// patientFree fails t if a reason names the test patient.
func patientFree(t *testing.T, rep *Report, pid string) {
	t.Helper()
	for _, r := range rep.Results {
		if strings.Contains(r.Reason, pid) {
			t.Errorf("%s names the test patient: %s", r.ID, r.Reason)
		}
	}
}

func allPassOrOmit(t *testing.T, rep *Report) {
	t.Helper()
	for _, r := range rep.Results {
		if r.Status != Pass && r.Status != Omit {
			t.Errorf("%s: %s: %s", r.ID, r.Status, r.Reason)
		}
	}
	if !rep.Ready {
		t.Error("not ready")
	}
}

func TestAgainstPeer(t *testing.T) {
	t.Run("full", func(t *testing.T) {
		t.Parallel()
		base, c, rc := startPeer(t, "")
		pid := testPatient(t, c)

		rep := run(t, Options{BaseURL: base})
		noWrites(t, rc, rc.take())
		want(t, rep, "write-tests", Skip, false, "--write-tests")
		want(t, rep, "resources.Goal.search", Pass, true, "a made-up patient id")
		want(t, rep, "conditional.Goal", Pass, false, "conditional updates by identifier", "first write", "is a conditional create")
		if !rep.Ready {
			t.Errorf("not ready: %v", rep.Count().Blocking)
		}

		rep = run(t, Options{BaseURL: base, TestPatient: pid, WriteTests: true})
		noneRefused(t, rc.take())
		allPassOrOmit(t, rep)
		patientFree(t, rep, pid)
		want(t, rep, "write-tests.create", Pass, true, "created Goal/", "conditional create")
		// Sync sends a goal's first write as a conditional create here.
		want(t, rep, "conditional.live-create", Pass, true, "no duplicate")
		want(t, rep, "conditional.live-update", Pass, true, "in place")
		want(t, rep, "versioning.live-if-match", Pass, true, "stale If-Match was refused (HTTP 412)")
		want(t, rep, "write-tests.cleanup", Pass, false, "deleted Goal/")
		if n := count(t, c, "Goal", pid); n != 0 {
			t.Errorf("the write tests left %d Goals behind", n)
		}

		// SMART Backend Services against the peer's token endpoint. The peer
		// does not check tokens, which the check reports without blocking.
		key, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		sb, err := ehr.NewSMARTBackend(ehr.SMARTOptions{ClientID: "ipsfhir-check-test", Key: ehr.SigningKey{Key: key}, Scopes: []string{"system/*.rs"}})
		if err != nil {
			t.Fatal(err)
		}
		rep = run(t, Options{BaseURL: base, Auth: Auth{Type: AuthSMARTBackend, Provider: sb, Alg: "ES384"}})
		noWrites(t, rc, rc.take())
		want(t, rep, "auth.token", Pass, true, "token obtained", "ES384")
		want(t, rep, "auth.accepted", Pass, true, "accepted the token")
		want(t, rep, "auth.invalid-token", Fail, false, "did not refuse an invalid token")
		for _, id := range []string{"smart.declared", "smart.discovery", "smart.token-endpoint", "smart.client-credentials", "smart.private-key-jwt"} {
			want(t, rep, id, Pass, result(t, rep, id).Blocking)
		}
		want(t, rep, "smart.signing-alg", Pass, false, "ES384")
		if !rep.Ready {
			t.Errorf("not ready: %v", rep.Count().Blocking)
		}
	})

	for name, tc := range map[string]struct {
		file   string
		search string // how the write tests find the test resource
	}{
		"epic":   {epicFile, "by identifier"},
		"oracle": {oracleFile, "by patient"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			base, c, rc := startPeer(t, capabilityFile(tc.file))
			pid := testPatient(t, c)

			rep := run(t, Options{BaseURL: base})
			seen := rc.take()
			noneRefused(t, seen)
			noWrites(t, rc, seen)
			if !rep.Ready {
				t.Errorf("not ready: %v", rep.Count().Blocking)
			}

			rep = run(t, Options{BaseURL: base, TestPatient: pid, WriteTests: true})
			noneRefused(t, rc.take())
			patientFree(t, rep, pid)
			if !rep.Ready {
				t.Errorf("not ready: %v", rep.Count().Blocking)
			}
			want(t, rep, "write-paths.employment-goal", Pass, false, "chart note")
			want(t, rep, "write-tests.create", Pass, true, "created DocumentReference/", "plain create")
			want(t, rep, "write-tests.read", Pass, true)
			want(t, rep, "write-tests.search", Pass, true, tc.search)
			want(t, rep, "write-tests.update", Pass, true, "by id")
			want(t, rep, "conditional.live-create", Omit, false, "no conditionalCreate")
			want(t, rep, "versioning.live-if-match", Omit, false, "does not declare versioned-update")
			want(t, rep, "write-tests.cleanup", Skip, false, "left behind: DocumentReference/", "declares no delete")
			for _, r := range rep.Results {
				if r.Status == Fail && r.Blocking || r.Status == Error {
					t.Errorf("%s: %s: %s", r.ID, r.Status, r.Reason)
				}
			}
			// What was left behind is the one test DocumentReference.
			if n := count(t, c, "DocumentReference", pid); n != 1 {
				t.Errorf("%d DocumentReferences for the test patient, want the 1 left behind", n)
			}
		})
	}
}
