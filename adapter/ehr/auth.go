package ehr

import (
	"context"
	"net"
	"net/http"
	"net/url"
	"strings"
)

// Auth supplies the Authorization header of EHR requests. A nil Auth in
// Options sends none. Implementations: Bearer (a static token) and
// *SMARTBackend (SMART Backend Services, client_credentials with a signed
// JWT assertion). Implementations must be safe for concurrent use.
type Auth interface {
	// Authorization returns the Authorization header value for the next
	// request (e.g. "Bearer abc"), fetching or refreshing a token if needed.
	// An error that is an *Error keeps its kind; any other error is treated as
	// KindAuth.
	Authorization(ctx context.Context, env AuthEnv) (string, error)
	// Rejected is called when the EHR answered 401 to a request sent with
	// value. It drops value if it is still cached and reports whether a new
	// value may succeed; the client then sends the request once more.
	Rejected(value string) bool
}

// AuthEnv is what an Auth may use: the client's HTTP client (same TLS trust
// and timeout, no retries, no redirects, no logging) and the FHIR base URL
// (for SMART discovery).
type AuthEnv struct {
	HTTP    *http.Client
	BaseURL string
}

// Bearer is a static bearer token, given by value. Configuration resolves
// where it comes from (an environment variable, a file); this package never
// reads secrets itself. A 401 is final: there is nothing to refresh.
func Bearer(token string) Auth { return bearer(token) }

type bearer string

func (b bearer) Authorization(context.Context, AuthEnv) (string, error) {
	if b == "" {
		return "", because("empty bearer token")
	}
	return "Bearer " + string(b), nil
}

func (bearer) Rejected(string) bool { return false }

// secureEnough reports whether credentials may be sent to u: over https, or
// over http only to a loopback address (tests, a sidecar).
func secureEnough(u *url.URL) bool {
	if strings.EqualFold(u.Scheme, "https") {
		return true
	}
	host := u.Hostname()
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Origin returns the origin (RFC 6454) of an absolute http or https URL:
// its scheme and host in lower case and its port, made explicit when it is
// the scheme's default ("https://ehr.example.org:443"). ok is false for
// anything else, and for a URL that holds a user name: "https://ehr@evil"
// reads like one host and is another.
func Origin(raw string) (origin string, ok bool) {
	u, err := url.Parse(raw)
	if err != nil || u.User != nil || u.Host == "" {
		return "", false
	}
	scheme := strings.ToLower(u.Scheme)
	port := u.Port()
	switch {
	case scheme == "https" && port == "":
		port = "443"
	case scheme == "http" && port == "":
		port = "80"
	case scheme != "https" && scheme != "http":
		return "", false
	}
	return scheme + "://" + net.JoinHostPort(strings.ToLower(u.Hostname()), port), true
}
