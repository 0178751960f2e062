package ehr_test

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ipsfhir/ipsfhir/adapter/ehr"
	"github.com/ipsfhir/ipsfhir/adapter/telemetry"
	"github.com/ipsfhir/ipsfhir/adapter/telemetry/telemetrytest"
)

var _ telemetry.LogSafer = (*ehr.Error)(nil)

// resetServer accepts requests and resets each connection (RST, not FIN)
// once it has read the request: what a crashing EHR or a proxy that drops
// the connection does. The peer cannot, hence httptest.
func resetServer(t *testing.T) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Errorf("hijack: %v", err)
			return
		}
		if tc, ok := conn.(*net.TCPConn); ok {
			_ = tc.SetLinger(0) // close with RST
		}
		conn.Close()
	}))
	t.Cleanup(srv.Close)
	return srv
}

// closedPort returns a loopback address nobody listens on.
func closedPort(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// wantNoAddress fails t if s names addr's host or port, or looks like any
// socket address.
func wantNoAddress(t *testing.T, what, s, addr string) {
	t.Helper()
	_, port, _ := net.SplitHostPort(addr)
	for _, bad := range []string{"127.0.0.1", ":" + port, "->", "tcp", "http://"} {
		if strings.Contains(s, bad) {
			t.Errorf("%s %q contains %q", what, s, bad)
		}
	}
}

// TestErrorsCarryNoAddress: a transport failure's Error(), Token() and
// LogSafe() name the cause in one word, never the socket addresses that
// the cause's own text quotes, so stored failure reasons group and do not
// name the EHR's host.
func TestErrorsCarryNoAddress(t *testing.T) {
	t.Run("reset", func(t *testing.T) {
		t.Parallel()
		srv := resetServer(t)
		c, _ := newClient(t, srv.URL+"/fhir", ehr.Options{MaxAttempts: 2})
		_, err := c.Read(t.Context(), "Goal", "g1")
		e := wantKind(t, err, ehr.KindTransient)
		if !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("cause %v (%T) is not ECONNRESET; the test proves nothing", e.Err, e.Err)
		}
		if strings.Contains(e.Err.Error(), "127.0.0.1") == false {
			t.Fatalf("the cause's own text %q has no address; the test proves nothing", e.Err)
		}
		if e.Cause() != "reset" || e.Token() != "reset" || e.LogSafe() != "read Goal: reset" {
			t.Fatalf("cause %q token %q log-safe %q; want reset, reset, read Goal: reset", e.Cause(), e.Token(), e.LogSafe())
		}
		if got, want := err.Error(), "ehr: read Goal: transient after 2 attempts: reset"; got != want {
			t.Fatalf("Error() = %q, want %q", got, want)
		}
		wantNoAddress(t, "Error()", err.Error(), srv.Listener.Addr().String())
		if got := telemetry.ErrorSummary(err); got != "read Goal: reset" {
			t.Fatalf("ErrorSummary = %q", got)
		}
	})

	t.Run("reset of a plain POST", func(t *testing.T) {
		t.Parallel()
		srv := resetServer(t)
		c, _ := newClient(t, srv.URL+"/fhir", ehr.Options{})
		_, err := c.Create(t.Context(), "Goal", []byte(`{"resourceType":"Goal"}`), "")
		e := wantKind(t, err, ehr.KindOutcomeUnknown)
		if e.Cause() != "reset" || e.Token() != "outcome-unknown" || e.Attempts != 1 {
			t.Fatalf("cause %q token %q attempts %d", e.Cause(), e.Token(), e.Attempts)
		}
		if got, want := err.Error(), "ehr: create Goal: outcome-unknown: reset"; got != want {
			t.Fatalf("Error() = %q, want %q", got, want)
		}
	})

	t.Run("refused", func(t *testing.T) {
		t.Parallel()
		addr := closedPort(t)
		c, _ := newClient(t, "http://"+addr+"/fhir", ehr.Options{MaxAttempts: 2})
		_, err := c.Search(t.Context(), "Goal", url.Values{"identifier": {"urn:mrn|MRN-7731"}})
		e := wantKind(t, err, ehr.KindTransient)
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("cause %v is not ECONNREFUSED", e.Err)
		}
		if e.Cause() != "refused" || e.Token() != "refused" || e.LogSafe() != "search Goal: refused" {
			t.Fatalf("cause %q token %q log-safe %q", e.Cause(), e.Token(), e.LogSafe())
		}
		if got, want := err.Error(), "ehr: search Goal: transient after 2 attempts: refused"; got != want {
			t.Fatalf("Error() = %q, want %q", got, want)
		}
		wantNoAddress(t, "Error()", err.Error(), addr)
		if strings.Contains(err.Error(), "7731") {
			t.Fatalf("Error() quotes the query: %q", err)
		}
	})

	t.Run("token endpoint refused", func(t *testing.T) {
		t.Parallel()
		addr := closedPort(t)
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			t.Errorf("FHIR request without a token: %s", r.URL.Path)
		}))
		defer srv.Close()
		auth, err := ehr.NewSMARTBackend(ehr.SMARTOptions{
			ClientID: "c1", Key: ehr.SigningKey{ID: "k", Key: ecKey(t)}, TokenURL: "http://" + addr + "/token",
		})
		if err != nil {
			t.Fatal(err)
		}
		c, _ := newClient(t, srv.URL+"/fhir", ehr.Options{Auth: auth})
		_, err = c.Read(t.Context(), "Goal", "g1")
		e := wantKind(t, err, ehr.KindTransient)
		var inner *ehr.Error
		if !errors.As(e.Err, &inner) || inner.Op != "token" {
			t.Fatalf("cause %v, want the token call's *Error", e.Err)
		}
		if e.Cause() != "refused" || e.Token() != "refused" || inner.Token() != "refused" {
			t.Fatalf("cause %q token %q inner token %q", e.Cause(), e.Token(), inner.Token())
		}
		if got, want := err.Error(), "ehr: read Goal: transient: ehr: token: transient: refused"; got != want {
			t.Fatalf("Error() = %q, want %q", got, want)
		}
		wantNoAddress(t, "Error()", err.Error(), addr)
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatal("errors.Is does not reach the cause through the token error")
		}
	})

	t.Run("SMART discovery reset", func(t *testing.T) {
		t.Parallel()
		srv := resetServer(t)
		auth, err := ehr.NewSMARTBackend(ehr.SMARTOptions{ClientID: "c1", Key: ehr.SigningKey{ID: "k", Key: ecKey(t)}})
		if err != nil {
			t.Fatal(err)
		}
		c, _ := newClient(t, srv.URL+"/fhir", ehr.Options{Auth: auth})
		_, err = c.Read(t.Context(), "Goal", "g1")
		e := wantKind(t, err, ehr.KindTransient)
		if e.Token() != "reset" {
			t.Fatalf("token %q, want reset (error %q)", e.Token(), err)
		}
		wantNoAddress(t, "Error()", err.Error(), srv.Listener.Addr().String())
	})
}

// TestTransportFailureLogged: the attempt and call log lines name the
// cause under "cause", which the telemetry policy prints.
func TestTransportFailureLogged(t *testing.T) {
	srv := resetServer(t)
	var logs telemetrytest.Buffer
	c, _ := newClient(t, srv.URL, ehr.Options{MaxAttempts: 1, Logger: telemetry.NewLogger(&logs, slog.LevelDebug, "json")})
	_, err := c.Read(t.Context(), "Goal", "g1")
	wantKind(t, err, ehr.KindTransient)
	out := logs.String()
	if strings.Count(out, `"cause":"reset"`) != 2 || !strings.Contains(out, `"attempts":1`) {
		t.Fatalf("log lacks the cause or attempts:\n%s", out)
	}
	if strings.Contains(out, telemetry.Redacted) {
		t.Fatalf("the policy redacted something the client logs:\n%s", out)
	}
	wantNoAddress(t, "log", out, srv.Listener.Addr().String())
}

// TestErrorToken covers Token, Cause and LogSafe for each kind of failure,
// and that Error() never quotes a cause's text.
func TestErrorToken(t *testing.T) {
	addrErr := &net.OpError{Op: "read", Net: "tcp",
		Source: &net.TCPAddr{IP: net.IPv4(10, 0, 0, 5), Port: 41822},
		Addr:   &net.TCPAddr{IP: net.IPv4(10, 0, 0, 9), Port: 443},
		Err:    &net.AddrError{Err: "weird failure", Addr: "10.0.0.9:443"}}
	tests := []struct {
		name         string
		e            *ehr.Error
		cause, token string
		text         string
	}{
		{"5xx", &ehr.Error{Op: "update Goal", Status: 500, Kind: ehr.KindTransient, IssueCodes: []string{"exception"}, Attempts: 3},
			"", "http-5xx", "ehr: update Goal: transient (HTTP 500) issues exception after 3 attempts"},
		{"429", &ehr.Error{Op: "GET Goal", Status: 429, Kind: ehr.KindTransient, RetryAfter: 2 * time.Minute},
			"", "throttled", "ehr: GET Goal: transient (HTTP 429); EHR asks to retry after 2m0s"},
		{"408", &ehr.Error{Op: "read Goal", Status: 408, Kind: ehr.KindTransient}, "", "transient", "ehr: read Goal: transient (HTTP 408)"},
		{"412", &ehr.Error{Op: "update Goal", Status: 412, Kind: ehr.KindConflict}, "", "conflict", "ehr: update Goal: conflict (HTTP 412)"},
		{"404", &ehr.Error{Op: "read Goal", Status: 404, Kind: ehr.KindNotFound}, "", "not-found", "ehr: read Goal: not-found (HTTP 404)"},
		{"422", &ehr.Error{Op: "create Goal", Status: 422, Kind: ehr.KindInvalid}, "", "invalid", "ehr: create Goal: invalid (HTTP 422)"},
		{"403", &ehr.Error{Op: "read Goal", Status: 403, Kind: ehr.KindAuth}, "", "auth", "ehr: read Goal: auth (HTTP 403)"},
		{"405", &ehr.Error{Op: "update Goal", Status: 405, Kind: ehr.KindNotAllowed}, "", "not-allowed", "ehr: update Goal: not-allowed (HTTP 405)"},
		{"501", &ehr.Error{Op: "update Goal", Status: 501, Kind: ehr.KindNotAllowed}, "", "not-allowed", "ehr: update Goal: not-allowed (HTTP 501)"},
		{"302", &ehr.Error{Op: "read Goal", Status: 302, Kind: ehr.KindOther}, "", "other", "ehr: read Goal: other (HTTP 302)"},
		{"504 of a plain POST", &ehr.Error{Op: "create Goal", Status: 504, Kind: ehr.KindOutcomeUnknown}, "", "outcome-unknown", "ehr: create Goal: outcome-unknown (HTTP 504)"},
		{"canceled", &ehr.Error{Op: "read Goal", Kind: ehr.KindTransient, Err: fmt.Errorf("wait: %w", context.Canceled)},
			"canceled", "canceled", "ehr: read Goal: transient: canceled"},
		{"canceled during backoff after a 503", &ehr.Error{Op: "read Goal", Status: 503, Kind: ehr.KindTransient, Attempts: 2, Err: context.Canceled},
			"canceled", "http-5xx", "ehr: read Goal: transient (HTTP 503) after 2 attempts: canceled"},
		{"deadline", &ehr.Error{Op: "read Goal", Kind: ehr.KindTransient, Err: context.DeadlineExceeded}, "timeout", "timeout", "ehr: read Goal: transient: timeout"},
		{"dns", &ehr.Error{Op: "metadata", Kind: ehr.KindTransient, Err: &net.DNSError{Err: "no such host", Name: "ehr.clinic.example", IsNotFound: true}},
			"dns", "dns", "ehr: metadata: transient: dns"},
		{"unexpected EOF", &ehr.Error{Op: "read Goal", Status: 200, Kind: ehr.KindTransient, Err: io.ErrUnexpectedEOF},
			"eof", "eof", "ehr: read Goal: transient (HTTP 200): eof"},
		{"tls", &ehr.Error{Op: "metadata", Kind: ehr.KindOther, Err: x509.UnknownAuthorityError{}}, "tls", "tls", "ehr: metadata: other: tls"},
		{"other net error", &ehr.Error{Op: "read Goal", Kind: ehr.KindTransient, Err: addrErr}, "connection", "connection", "ehr: read Goal: transient: connection"},
		{"not a transport error", &ehr.Error{Op: "token", Kind: ehr.KindAuth, Err: errors.New("vault at 10.0.0.7:8200 says no")},
			"", "auth", "ehr: token: auth"},
		{"token endpoint refused the client", &ehr.Error{Op: "read Goal", Kind: ehr.KindAuth,
			Err: &ehr.Error{Op: "token", Status: 400, Kind: ehr.KindAuth}}, "", "auth", "ehr: read Goal: auth: ehr: token: auth (HTTP 400)"},
		{"token endpoint failing", &ehr.Error{Op: "read Goal", Kind: ehr.KindTransient,
			Err: &ehr.Error{Op: "token", Status: 502, Kind: ehr.KindTransient}}, "", "http-5xx", "ehr: read Goal: transient: ehr: token: transient (HTTP 502)"},
	}
	for _, tc := range tests {
		if got := tc.e.Cause(); got != tc.cause {
			t.Errorf("%s: Cause() = %q, want %q", tc.name, got, tc.cause)
		}
		if got := tc.e.Token(); got != tc.token {
			t.Errorf("%s: Token() = %q, want %q", tc.name, got, tc.token)
		}
		if got := tc.e.Error(); got != tc.text {
			t.Errorf("%s: Error() = %q, want %q", tc.name, got, tc.text)
		}
		if got, want := tc.e.LogSafe(), tc.e.Op+": "+tc.token; got != want {
			t.Errorf("%s: LogSafe() = %q, want %q", tc.name, got, want)
		}
		// The policy prints it: ErrorSummary falls back on type names for a
		// LogSafe that does not read like a constant.
		if got := telemetry.ErrorSummary(fmt.Errorf("push MRN-7731: %w", tc.e)); got != tc.e.LogSafe() {
			t.Errorf("%s: ErrorSummary = %q, want %q", tc.name, got, tc.e.LogSafe())
		}
		if !telemetry.IsToken(tc.e.Token()) {
			t.Errorf("%s: Token() %q is not a telemetry token", tc.name, tc.e.Token())
		}
		if strings.Contains(tc.e.Error(), "10.0.0") || strings.Contains(tc.e.Error(), "clinic") {
			t.Errorf("%s: Error() %q quotes the cause", tc.name, tc.e.Error())
		}
		if tc.e.Err != nil && !errors.Is(tc.e, tc.e.Err) {
			t.Errorf("%s: errors.Is does not reach the cause", tc.name)
		}
	}
}

// TestLocalErrorsKeepTheirText: failures this package describes itself
// keep their fixed text in Error(), and the sentinels still match.
func TestLocalErrorsKeepTheirText(t *testing.T) {
	c, _ := newClient(t, "https://ehr.example.org/fhir", ehr.Options{})
	_, err := c.Read(t.Context(), "Goal", "bad id")
	if got, want := err.Error(), "ehr: read Goal: invalid: not a FHIR id"; got != want {
		t.Fatalf("Error() = %q, want %q", got, want)
	}
	if e := asError(t, err); e.Token() != "invalid" || e.Cause() != "" {
		t.Fatalf("token %q cause %q", e.Token(), e.Cause())
	}

	next := "https://elsewhere.example/fhir/Goal?page=2"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/fhir+json")
		link := `"` + "http://" + r.Host + `/fhir/Goal?page=2"`
		if r.URL.Query().Get("foreign") != "" {
			link = `"` + next + `"`
		}
		_, _ = w.Write([]byte(`{"resourceType":"Bundle","type":"searchset","link":[{"relation":"next","url":` + link + `}]}`))
	}))
	defer srv.Close()
	c, _ = newClient(t, srv.URL+"/fhir", ehr.Options{MaxPages: 2})
	_, err = c.Search(t.Context(), "Goal", nil)
	if !errors.Is(err, ehr.ErrPageLimit) || err.Error() != "ehr: search Goal: other: search has more pages than MaxPages (2)" {
		t.Fatalf("page limit: %q", err)
	}
	_, err = c.Search(t.Context(), "Goal", url.Values{"foreign": {"1"}})
	if !errors.Is(err, ehr.ErrForeignLink) || err.Error() != "ehr: search Goal: other: search next link leaves the base URL" {
		t.Fatalf("foreign link: %q", err)
	}
	if e := asError(t, err); e.Token() != "other" {
		t.Fatalf("token %q", e.Token())
	}
}
