package ehr

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strings"
	"time"

	retryablehttp "github.com/hashicorp/go-retryablehttp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

const (
	defaultTimeout       = 30 * time.Second
	defaultMaxAttempts   = 5
	defaultMaxRetryAfter = 60 * time.Second
	defaultMaxPages      = 100
	// The backoff between attempts without Retry-After: 0.5 s doubling up to
	// 15 s, each wait drawn from [d/2, d] so replicas do not retry in step.
	// With 5 attempts that is at most 7.5 s of waiting: the outbox, not this
	// call, waits out a longer outage.
	defaultWaitMin = 500 * time.Millisecond
	defaultWaitMax = 15 * time.Second
	// maxBodyBytes bounds a response body read into memory (a search page of
	// 1000 resources is a few MiB).
	maxBodyBytes = 64 << 20
	// maxGetQuery is the longest encoded query Search sends with GET; longer
	// ones go as POST [type]/_search, which is safe to repeat.
	maxGetQuery = 2000

	mimeFHIRJSON = "application/fhir+json"
	userAgent    = "ipsfhir-ehr-client"
)

// Options configures New. Only BaseURL is required.
type Options struct {
	// BaseURL is the EHR's FHIR R4 base, e.g. https://ehr.example.org/fhir/R4.
	BaseURL string
	// Connection names the connection in metrics and logs (a config name
	// such as "epic-main", never a URL). Default "default".
	Connection string
	// Auth supplies the Authorization header; nil sends none.
	Auth Auth
	// CAFile is a PEM bundle of CA certificates trusted in addition to the
	// system's, for EHRs behind a private CA. TLS verification is always on.
	CAFile string
	// Timeout bounds each attempt, from sending to reading the whole body.
	// Default 30 s.
	Timeout time.Duration
	// MaxAttempts bounds the attempts of one call (first try included).
	// Default 5.
	MaxAttempts int
	// MaxRetryAfter is the longest Retry-After the client waits out inside a
	// call. A longer one ends the call with KindTransient and
	// Error.RetryAfter set. Default 60 s.
	MaxRetryAfter time.Duration
	// MaxPages bounds the pages Search follows. Default 100.
	MaxPages int
	// MaxConcurrency bounds the requests of this connection in flight at
	// once, every attempt counted, whichever goroutine sends it. Default 4.
	MaxConcurrency int
	// RequestsPerSecond bounds the rate at which requests (every attempt)
	// are sent. Zero: no bound until the EHR throttles (see doc.go).
	RequestsPerSecond float64
	// MaxThrottleWait is how long one call keeps waiting out 429s without
	// the throttled attempts counting towards MaxAttempts. Default 10
	// minutes.
	MaxThrottleWait time.Duration
	// Logger receives one Debug line per attempt and one line per call
	// (Debug on success, Warn on failure) with method, resource type, status,
	// attempt and duration only. Nil discards.
	Logger *slog.Logger
	// TracerProvider makes a span per call. Nil: the global provider (a
	// no-op unless the program installs one).
	TracerProvider trace.TracerProvider
	// MeterProvider records ipsfhir.ehr.request.duration and
	// ipsfhir.ehr.requests. Nil: the global provider.
	MeterProvider metric.MeterProvider
}

// Client is a FHIR R4 client for one EHR connection. It is safe for
// concurrent use.
type Client struct {
	base     *url.URL
	baseStr  string // no trailing slash
	conn     string
	auth     Auth
	plain    *http.Client // for Auth: same TLS and timeout, no retries
	rc       *retryablehttp.Client
	maxPages int
	// maxRetryAfter is read by checkRetry and backoff.
	maxRetryAfter time.Duration
	// maxAttempts and maxThrottleWait are enforced by checkRetry: attempts
	// answered with a throttle count only once the call has been throttled
	// for maxThrottleWait.
	maxAttempts     int
	maxThrottleWait time.Duration
	// timeout bounds each attempt once the limiter let it go.
	timeout time.Duration
	lim     *limiter
	log     *slog.Logger
	tel     telemetry
}

// Request is one FHIR interaction for Do.
type Request struct {
	// Method is the HTTP method: GET, HEAD, POST, PUT, PATCH or DELETE.
	Method string
	// Path is relative to the base, e.g. "Goal/123", "Goal?identifier=s|v",
	// "metadata" or "" (the base itself, for batch and transaction).
	Path string
	// Query is added to Path's query.
	Query url.Values
	// Body is sent as is (FHIR JSON unless Header says otherwise).
	Body []byte
	// Header holds extra headers (If-Match, If-None-Exist, Prefer, ...).
	Header http.Header
	// Idempotent marks a POST or PATCH as safe to repeat (a conditional
	// create with If-None-Exist, a search via POST, a transaction whose
	// entries are all conditional). GET, HEAD, PUT and DELETE always are.
	// Only requests safe to repeat are retried after a lost answer.
	Idempotent bool
	// Once marks a PUT as not safe to repeat (see Client.UpdateOnce): it
	// is not retried after a lost answer, and fails with
	// KindOutcomeUnknown instead.
	Once bool
	// ResourceType labels spans and metrics (e.g. "Goal"). Default: the
	// first segment of Path.
	ResourceType string

	op     string // the operation named in errors; default "METHOD Type"
	label  string // a fixed resource-type label set by this package
	noAuth bool   // public endpoints (metadata, SMART configuration)
	// read marks a POST that only reads (a search via POST [type]/_search):
	// retried on any 5xx like a GET.
	read bool
}

// Response is a successful (2xx or 304) answer.
type Response struct {
	Status int
	Body   []byte
	// ETag is the raw header, e.g. W/"3"; VersionID is its opaque value
	// ("3", or a UUID on some servers). Never assume integers.
	ETag, VersionID string
	Location        string
	LastModified    string
	// ResourceID is the logical id from Location or, failing that, the body.
	ResourceID string
	// EarlierAttemptUnanswered: an earlier attempt of this call was sent
	// and its answer lost (a timeout, a dropped connection, a gateway's
	// 502/504) before this one succeeded. A slow EHR may still apply that
	// attempt later, over whatever was written since.
	EarlierAttemptUnanswered bool
}

// New checks o and builds a client. It does no I/O.
func New(o Options) (*Client, error) {
	base, err := url.Parse(strings.TrimRight(o.BaseURL, "/"))
	if err != nil || !base.IsAbs() || base.Host == "" {
		return nil, errors.New("ehr: BaseURL must be an absolute http(s) URL")
	}
	scheme := strings.ToLower(base.Scheme)
	if scheme != "https" && scheme != "http" {
		return nil, errors.New("ehr: BaseURL must be an http(s) URL")
	}
	if base.RawQuery != "" || base.Fragment != "" || base.User != nil {
		return nil, errors.New("ehr: BaseURL must not have a query, fragment or user info")
	}
	if o.Auth != nil && !secureEnough(base) {
		return nil, errors.New("ehr: BaseURL must use https when Auth is set (http only on loopback)")
	}
	if o.Connection == "" {
		o.Connection = "default"
	}
	if !labelValue.MatchString(o.Connection) {
		return nil, errors.New("ehr: Connection must be 1-64 letters, digits, '.', '_' or '-'")
	}
	if o.Timeout < 0 || o.MaxAttempts < 0 || o.MaxRetryAfter < 0 || o.MaxPages < 0 || o.MaxConcurrency < 0 || o.MaxThrottleWait < 0 {
		return nil, errors.New("ehr: Timeout, MaxAttempts, MaxRetryAfter, MaxPages, MaxConcurrency and MaxThrottleWait must not be negative")
	}
	if !(o.RequestsPerSecond >= 0) || math.IsInf(o.RequestsPerSecond, 0) {
		return nil, errors.New("ehr: RequestsPerSecond must be a finite number, 0 or more")
	}
	if o.MaxConcurrency == 0 {
		o.MaxConcurrency = defaultMaxConcurrency
	}
	if o.MaxThrottleWait == 0 {
		o.MaxThrottleWait = defaultMaxThrottleWait
	}
	if o.Timeout == 0 {
		o.Timeout = defaultTimeout
	}
	if o.MaxAttempts == 0 {
		o.MaxAttempts = defaultMaxAttempts
	}
	if o.MaxRetryAfter == 0 {
		o.MaxRetryAfter = defaultMaxRetryAfter
	}
	if o.MaxPages == 0 {
		o.MaxPages = defaultMaxPages
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.TracerProvider == nil {
		o.TracerProvider = otel.GetTracerProvider()
	}
	if o.MeterProvider == nil {
		o.MeterProvider = otel.GetMeterProvider()
	}

	tlsConf := &tls.Config{MinVersion: tls.VersionTLS12}
	if o.CAFile != "" {
		pem, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("ehr: CAFile: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ehr: CAFile %s holds no PEM certificate", o.CAFile)
		}
		tlsConf.RootCAs = pool
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.TLSClientConfig = tlsConf
	// Enough idle connections for every request the limiter lets fly.
	transport.MaxIdleConnsPerHost = max(16, o.MaxConcurrency)
	// FHIR APIs do not redirect; following one would turn a POST into a GET
	// or carry a request where the base URL did not say.
	noRedirect := func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

	tel, err := newTelemetry(o.TracerProvider, o.MeterProvider)
	if err != nil {
		return nil, err
	}
	c := &Client{
		base:            base,
		baseStr:         base.String(),
		conn:            o.Connection,
		auth:            o.Auth,
		plain:           &http.Client{Transport: transport, Timeout: o.Timeout, CheckRedirect: noRedirect},
		maxPages:        o.MaxPages,
		maxRetryAfter:   o.MaxRetryAfter,
		maxAttempts:     o.MaxAttempts,
		maxThrottleWait: o.MaxThrottleWait,
		timeout:         o.Timeout,
		lim:             newLimiter(o.MaxConcurrency, o.RequestsPerSecond, o.MaxRetryAfter),
		log:             o.Logger,
		tel:             tel,
	}
	c.rc = &retryablehttp.Client{
		// No http.Client Timeout: it would count the wait for the
		// limiter. attemptTransport bounds each attempt from its send.
		HTTPClient: &http.Client{
			Transport:     &attemptTransport{next: transport, c: c},
			CheckRedirect: noRedirect,
		},
		// retryablehttp logs request URLs, and a FHIR search URL names the
		// patient. attemptTransport logs what may be logged instead.
		Logger:       nil,
		RetryWaitMin: defaultWaitMin,
		RetryWaitMax: defaultWaitMax,
		// checkRetry enforces MaxAttempts, not counting throttled attempts.
		RetryMax:   math.MaxInt32,
		CheckRetry: c.checkRetry,
		Backoff:    c.backoff,
		// Keep the last response (and its OperationOutcome) when retries run
		// out, instead of retryablehttp's default of draining it.
		ErrorHandler: retryablehttp.PassthroughErrorHandler,
	}
	if err := c.observeRate(o.MeterProvider); err != nil {
		return nil, fmt.Errorf("ehr: metrics: %w", err)
	}
	return c, nil
}

// labelValue is what a connection name may be: it becomes a metric label.
var labelValue = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// BaseURL returns the FHIR base the client talks to, without a trailing
// slash.
func (c *Client) BaseURL() string { return c.baseStr }

// callState follows one call through retryablehttp's loop, which runs the
// transport, CheckRetry and Backoff on the calling goroutine. It travels in
// the request's context.
type callState struct {
	method       string
	resourceType string
	idempotent   bool
	// read: the request changes nothing (GET, HEAD, a search via POST), so
	// a 5xx is retried too.
	read      bool
	attempts  int
	status    int  // of the last attempt's response; 0 if it had none
	ambiguous bool // the last attempt may have been applied, its answer lost
	// unanswered: some attempt of the call may have been applied and its
	// answer was lost (a request the EHR can still apply late).
	unanswered   bool
	transportErr error
	// retryAfter is the last answer's Retry-After, if it was a 429 or 503.
	retryAfter time.Duration
	// throttledSince is when the call was first throttled; free counts the
	// throttled attempts that do not count towards MaxAttempts.
	throttledSince time.Time
	free           int
	// local: the failure is ours (a request we could not build).
	local bool
}

type stateKey struct{}

func stateFrom(ctx context.Context) *callState {
	cs, _ := ctx.Value(stateKey{}).(*callState)
	return cs
}

// Do sends one request, retrying it as doc.go describes, and returns the
// answer if its status is 2xx or 304; any other outcome is an *Error.
func (c *Client) Do(ctx context.Context, r Request) (*Response, error) {
	start := time.Now()
	method := strings.ToUpper(r.Method)
	cs := &callState{method: method, resourceType: c.resourceLabel(r)}
	op := r.op
	if op == "" {
		op = method + " " + cs.resourceType
	}
	ctx, span := c.tel.start(ctx, c.conn, op, method, cs.resourceType)
	resp, err := c.do(context.WithValue(ctx, stateKey{}, cs), op, r, cs)
	c.finish(ctx, span, start, cs, resp, err)
	return resp, err
}

func (c *Client) do(ctx context.Context, op string, r Request, cs *callState) (*Response, error) {
	switch cs.method {
	case http.MethodGet, http.MethodHead:
		cs.idempotent, cs.read = true, true
	case http.MethodPut:
		cs.idempotent = !r.Once
	case http.MethodDelete:
		cs.idempotent = true
	case http.MethodPost:
		cs.idempotent, cs.read = r.Idempotent || r.read, r.read
	case http.MethodPatch:
		cs.idempotent = r.Idempotent
	default:
		cs.local = true
		return nil, &Error{Op: op, Kind: KindInvalid, Err: because("unsupported HTTP method")}
	}
	target, err := c.resolve(r.Path, r.Query)
	if err != nil {
		cs.local = true
		return nil, &Error{Op: op, Kind: KindInvalid, Err: err}
	}
	var body any // nil, not an empty []byte: GET must not get a body
	if len(r.Body) > 0 {
		body = r.Body
	}

	refreshed := false
	for {
		authValue := ""
		if c.auth != nil && !r.noAuth {
			authValue, err = c.auth.Authorization(ctx, AuthEnv{HTTP: c.plain, BaseURL: c.baseStr})
			if err != nil {
				var e *Error
				if !errors.As(err, &e) {
					e = &Error{Op: "token", Kind: KindAuth, Err: err}
				}
				return nil, &Error{Op: op, Kind: e.Kind, Attempts: cs.attempts, Err: e}
			}
		}
		req, err := retryablehttp.NewRequestWithContext(ctx, cs.method, target, body)
		if err != nil {
			// url.Parse errors quote the URL, and with it the query.
			cs.local = true
			return nil, &Error{Op: op, Kind: KindInvalid, Err: because("malformed request URL")}
		}
		req.Header.Set("Accept", mimeFHIRJSON)
		if body != nil {
			req.Header.Set("Content-Type", mimeFHIRJSON)
		}
		req.Header.Set("User-Agent", userAgent)
		for k, vs := range r.Header {
			req.Header[http.CanonicalHeaderKey(k)] = vs
		}
		if authValue != "" {
			req.Header.Set("Authorization", authValue)
		}

		hresp, err := c.rc.Do(req)
		if err != nil {
			if hresp != nil {
				drain(hresp.Body)
			}
			return nil, c.transportError(op, cs, err)
		}
		data, err := io.ReadAll(io.LimitReader(hresp.Body, maxBodyBytes+1))
		hresp.Body.Close()
		if err != nil {
			cs.ambiguous, cs.transportErr = true, err
			return nil, c.transportError(op, cs, err)
		}
		if len(data) > maxBodyBytes {
			return nil, &Error{Op: op, Status: hresp.StatusCode, Kind: KindOther, Attempts: cs.attempts, Err: because(fmt.Sprintf("response larger than %d bytes", maxBodyBytes))}
		}
		status := hresp.StatusCode
		if status == http.StatusUnauthorized && authValue != "" && !refreshed && c.auth.Rejected(authValue) {
			// A 401 means the request was not processed, so sending it again
			// with a new token is safe for any method.
			refreshed = true
			continue
		}
		if status >= 300 && status != http.StatusNotModified {
			return nil, c.statusError(op, cs, status, data)
		}
		r := c.newResponse(hresp, data)
		r.EarlierAttemptUnanswered = cs.unanswered && cs.attempts > 1
		return r, nil
	}
}

// resolve joins path and query onto the base. Path must stay under the
// base: no scheme, no leading slash, no dot segments.
func (c *Client) resolve(path string, query url.Values) (string, error) {
	p, rawQuery, _ := strings.Cut(path, "?")
	if strings.HasPrefix(p, "/") || strings.Contains(p, ":") || strings.ContainsAny(path, "#\\") {
		return "", because("request path must be relative to the base URL")
	}
	for _, seg := range strings.Split(p, "/") {
		if seg == "." || seg == ".." {
			return "", because("request path must not have dot segments")
		}
	}
	target := c.baseStr
	if p != "" {
		target += "/" + p
	}
	if len(query) > 0 {
		if rawQuery != "" {
			rawQuery += "&"
		}
		rawQuery += query.Encode()
	}
	if rawQuery != "" {
		target += "?" + rawQuery
	}
	return target, nil
}

// typeName is what a FHIR resource type looks like; only such strings (and
// a few fixed labels) become span and metric attributes.
var typeName = regexp.MustCompile(`^[A-Z][A-Za-z]{0,63}$`)

func (c *Client) resourceLabel(r Request) string {
	if r.label != "" {
		return r.label
	}
	if r.ResourceType != "" {
		if typeName.MatchString(r.ResourceType) {
			return r.ResourceType
		}
		return "other"
	}
	first, _, _ := strings.Cut(r.Path, "?")
	first, _, _ = strings.Cut(first, "/")
	switch {
	case first == "":
		return "system"
	case first == "metadata":
		return "CapabilityStatement"
	case typeName.MatchString(first):
		return first
	}
	return "other"
}

// transportError classifies a call that ended without a usable response:
// a transport failure on the last attempt, or the context ending.
func (c *Client) transportError(op string, cs *callState, err error) *Error {
	err = stripURL(err)
	e := &Error{Op: op, Status: cs.status, Attempts: cs.attempts, RetryAfter: cs.retryAfter, Err: err, cause: transportCause(err)}
	switch {
	case isCertError(cs.transportErr), isProtocolError(cs.transportErr):
		e.Kind = KindOther
	case !cs.idempotent && cs.ambiguous:
		e.Kind = KindOutcomeUnknown
	default:
		e.Kind = KindTransient
	}
	return e
}

// statusError turns a final non-2xx answer into an *Error.
func (c *Client) statusError(op string, cs *callState, status int, body []byte) *Error {
	e := &Error{Op: op, Status: status, Kind: kindForStatus(status), Attempts: cs.attempts, RetryAfter: cs.retryAfter}
	if !cs.idempotent && (status == http.StatusBadGateway || status == http.StatusGatewayTimeout) {
		// A gateway answered; the EHR behind it may have applied the request.
		e.Kind = KindOutcomeUnknown
	}
	e.Outcome, e.IssueCodes = parseOutcome(body)
	return e
}

// newResponse reads the version and id out of the headers, falling back on
// the body for servers that send no ETag or Location.
func (c *Client) newResponse(h *http.Response, body []byte) *Response {
	r := &Response{
		Status:       h.StatusCode,
		Body:         body,
		ETag:         h.Header.Get("ETag"),
		Location:     h.Header.Get("Location"),
		LastModified: h.Header.Get("Last-Modified"),
	}
	if r.Location == "" {
		r.Location = h.Header.Get("Content-Location")
	}
	r.VersionID = VersionFromETag(r.ETag)
	id, vid := parseLocation(r.Location)
	r.ResourceID = id
	if r.VersionID == "" {
		r.VersionID = vid
	}
	if (r.ResourceID == "" || r.VersionID == "") && len(body) > 0 && body[0] == '{' && singleResource(body) {
		var res struct {
			ID   string `json:"id"`
			Meta struct {
				VersionID string `json:"versionId"`
			} `json:"meta"`
		}
		if json.Unmarshal(body, &res) == nil {
			if r.ResourceID == "" {
				r.ResourceID = res.ID
			}
			if r.VersionID == "" {
				r.VersionID = res.Meta.VersionID
			}
		}
	}
	return r
}

// singleResource reports whether body is a resource other than a Bundle
// or an OperationOutcome, by its resourceType alone (see topStrings): a
// transaction's answer is not read through to learn that it is a Bundle.
func singleResource(body []byte) bool {
	v, ok := topStrings(body, "resourceType")
	return ok && v[0] != "" && v[0] != "Bundle" && v[0] != "OperationOutcome"
}

// VersionFromETag returns the opaque version in an ETag: W/"3" → 3. Version
// ids are strings; some servers use integers, others UUIDs.
func VersionFromETag(etag string) string {
	v := strings.TrimSpace(etag)
	v = strings.TrimPrefix(v, "W/")
	v = strings.TrimPrefix(v, "w/")
	if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
		v = v[1 : len(v)-1]
	}
	return v
}

// ParseLocation reads the logical id and version id from a Location header
// or a Bundle entry's response.location: [base/]Type/id[/_history/vid].
func ParseLocation(loc string) (id, vid string) { return parseLocation(loc) }

// parseLocation reads [base/]Type/id[/_history/vid] from a Location header.
func parseLocation(loc string) (id, vid string) {
	if loc == "" {
		return "", ""
	}
	u, err := url.Parse(loc)
	if err != nil {
		return "", ""
	}
	segs := strings.Split(strings.Trim(u.Path, "/"), "/")
	for i, s := range segs {
		if s == "_history" && i >= 2 && typeName.MatchString(segs[i-2]) {
			if i+1 < len(segs) {
				vid = segs[i+1]
			}
			return segs[i-1], vid
		}
	}
	if n := len(segs); n >= 2 && typeName.MatchString(segs[n-2]) {
		return segs[n-1], ""
	}
	return "", ""
}

// stripURL removes the *url.Error layer (whose message quotes the URL, and
// with it the search query) and returns the cause below it.
func stripURL(err error) error {
	for {
		var ue *url.Error
		if !errors.As(err, &ue) {
			return err
		}
		err = ue.Err
	}
}

func drain(body io.ReadCloser) {
	_, _ = io.Copy(io.Discard, io.LimitReader(body, 1<<16))
	body.Close()
}
