package faultproxy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

const (
	// defaultRetryAfter is the 429's Retry-After when Options.RetryAfter is
	// zero: short, so a soak run keeps moving.
	defaultRetryAfter = time.Second
	// defaultHang exceeds the adapter's default per-attempt timeout (30 s
	// in adapter/ehr), so a hang is a timeout for a client left at its
	// defaults.
	defaultHang = 45 * time.Second
	// logSize is how many faults FaultLog keeps (the newest).
	logSize = 1000
	// maxBody bounds the request bodies the proxy reads itself (to drain a
	// refused request, or to forward a hung or lost-reply one). FHIR
	// Bundles the adapter sends are far smaller.
	maxBody = 64 << 20
)

// Options configures a Proxy. The zero value forwards everything: Rate 0
// injects no random faults, and Once and Nth still work.
type Options struct {
	// Seed seeds the random draws, so a run can be replayed: the same seed
	// and the same requests in the same order give the same faults on the
	// same requests (see Fault.Seq).
	Seed uint64
	// Rate is the fraction of requests, 0 to 1, that get a random fault.
	// SetRate changes it while the proxy runs.
	Rate float64
	// Kinds are the kinds random faults are drawn from, uniformly. Empty
	// means AllKinds. They do not limit Once and Nth.
	Kinds []Kind
	// Scope limits random faults to matching requests (for example
	// Match{PathPrefix: "Goal"}). The zero Match is every request.
	Scope Match
	// RetryAfter is the delay a 429 announces in its Retry-After header,
	// sent as whole seconds rounded up. Zero means 1 s.
	RetryAfter time.Duration
	// Hang is how long a hung request is held before it is forwarded. It
	// should exceed the client's timeout. Zero means 45 s.
	Hang time.Duration
	// RequestLog, when set, records every request (see RequestLog): for a
	// test's own files, over synthetic data only.
	RequestLog *RequestLog
}

// Proxy is a fault-injecting reverse proxy in front of one FHIR server. It
// is an http.Handler; Start serves it on a loopback port. All methods are
// safe for concurrent use.
type Proxy struct {
	target       *url.URL
	targetOrigin string // scheme://host of the target, for rewriting
	basePath     string // the target's path without a trailing slash
	kinds        []Kind
	scope        Match
	retryAfter   string // header value
	hang         time.Duration
	transport    *http.Transport
	rp           *httputil.ReverseProxy
	reqLog       *RequestLog

	mu       sync.Mutex
	rng      *rand.Rand
	rate     float64
	rules    []*Rule
	seq      int64
	stats    Stats
	log      []Fault
	holds    map[*hold]struct{}
	srv      *http.Server
	isClosed bool

	closed    chan struct{} // closed by Close
	closeOnce sync.Once
	closeErr  error
	// work counts requests whose fault outlives the client's interest
	// (hang, lost-reply), so Close can wait for them. Add happens under mu
	// and only while !isClosed, so it never races with Close's Wait.
	work sync.WaitGroup
}

// hold is one hung request waiting for its time, ReleaseHung or Close.
type hold struct{ release chan struct{} }

// New returns a proxy for the FHIR server whose base URL is target (for
// example the peer's http://127.0.0.1:P/fhir/R4). It does not listen: call
// Start, or mount it as an http.Handler.
func New(target string, opts Options) (*Proxy, error) {
	u, err := url.Parse(target)
	// url.Parse's error quotes the URL, which holds a socket address; the
	// error says what is wrong without it.
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, errors.New("faultproxy: target must be an absolute http or https URL")
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return nil, errors.New("faultproxy: target must not carry user info, a query or a fragment")
	}
	if math.IsNaN(opts.Rate) || opts.Rate < 0 || opts.Rate > 1 {
		return nil, errors.New("faultproxy: Rate must be between 0 and 1")
	}
	if opts.RetryAfter < 0 || opts.Hang < 0 {
		return nil, errors.New("faultproxy: RetryAfter and Hang must not be negative")
	}
	kinds := AllKinds()
	if len(opts.Kinds) > 0 {
		kinds = nil
		for _, k := range opts.Kinds {
			if !k.valid() {
				return nil, errors.New("faultproxy: unknown fault kind " + strconv.Quote(string(k)))
			}
			if !slices.Contains(kinds, k) {
				kinds = append(kinds, k)
			}
		}
	}
	retryAfter := opts.RetryAfter
	if retryAfter == 0 {
		retryAfter = defaultRetryAfter
	}
	hang := opts.Hang
	if hang == 0 {
		hang = defaultHang
	}

	p := &Proxy{
		target:       u,
		targetOrigin: u.Scheme + "://" + u.Host,
		basePath:     strings.TrimRight(u.Path, "/"),
		kinds:        kinds,
		scope:        opts.Scope,
		retryAfter:   strconv.FormatInt(int64(math.Ceil(retryAfter.Seconds())), 10),
		hang:         hang,
		transport: &http.Transport{
			Proxy:               nil, // never an HTTP_PROXY from the environment
			DialContext:         (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConns:        100,
			MaxIdleConnsPerHost: 100,
			// Below the peer's (Node's) 5 s keep-alive: a connection
			// reused just as the target closed it loses the request, and
			// a write's body cannot be sent again (a 502 the EHR never
			// gave). Go drops idle connections older than this before
			// reuse.
			IdleConnTimeout: 2 * time.Second,
			// Pass the client's Accept-Encoding through rather than adding
			// gzip and decoding behind its back.
			DisableCompression: true,
		},
		rng:    rand.New(rand.NewPCG(opts.Seed, 0x9e3779b97f4a7c15)),
		rate:   opts.Rate,
		stats:  Stats{Faults: map[Kind]int{}},
		holds:  map[*hold]struct{}{},
		closed: make(chan struct{}),
		reqLog: opts.RequestLog,
	}
	p.rp = &httputil.ReverseProxy{
		Rewrite:        p.rewriteRequest,
		Transport:      p.transport,
		ModifyResponse: p.rewriteResponse,
		ErrorHandler:   p.upstreamError,
		// Its default logger prints errors that quote URLs (with queries).
		ErrorLog: log.New(io.Discard, "", 0),
	}
	return p, nil
}

// Start serves the proxy on a free port of 127.0.0.1 and returns its FHIR
// base: the target's path under the proxy's address (target
// http://127.0.0.1:P/fhir/R4 gives http://127.0.0.1:Q/fhir/R4). It can be
// called once.
func (p *Proxy) Start() (baseURL string, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.isClosed {
		return "", errors.New("faultproxy: Start after Close")
	}
	if p.srv != nil {
		return "", errors.New("faultproxy: already started")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err // net's error names the address we asked for, not a peer's
	}
	srv := &http.Server{
		Handler:           p,
		ReadHeaderTimeout: 30 * time.Second,
		// net/http logs failures with client addresses.
		ErrorLog: log.New(io.Discard, "", 0),
	}
	p.srv = srv
	go func() { _ = srv.Serve(ln) }()
	return "http://" + ln.Addr().String() + p.basePath, nil
}

// Close stops the listener Start opened, drops every open client
// connection, ends hung requests without forwarding them and waits for
// lost-reply forwards in flight. It is safe to call more than once.
func (p *Proxy) Close() error {
	p.closeOnce.Do(func() {
		p.mu.Lock()
		p.isClosed = true
		srv := p.srv
		close(p.closed)
		p.mu.Unlock()
		if srv != nil {
			p.closeErr = srv.Close()
		}
		p.work.Wait()
		p.transport.CloseIdleConnections()
	})
	return p.closeErr
}

// SetRate changes the fraction of requests that get a random fault, from
// the next request on; values are clamped to 0..1 (NaN is 0). SetRate(0) at
// the end of a soak run lets everything pending get through. It does not
// disarm Once and Nth, and it does not shift the random sequence: each
// request consumes the same draws whatever the rate.
func (p *Proxy) SetRate(rate float64) {
	if math.IsNaN(rate) || rate < 0 {
		rate = 0
	}
	rate = min(rate, 1)
	p.mu.Lock()
	p.rate = rate
	p.mu.Unlock()
}

// Once arms kind for the next request that matches m, whatever the rate:
// it fires exactly once. It is Nth(m, 1, kind).
func (p *Proxy) Once(m Match, kind Kind) *Rule { return p.Nth(m, 1, kind) }

// Nth arms kind for the n-th request from now that matches m (n = 1 is the
// next one), whatever the rate; it fires exactly once. Rules are offered
// each request in the order they were armed; a request that fires one is
// not counted by the rules armed after it. Nth panics if n < 1 or kind is
// unknown: both are mistakes in the calling test.
func (p *Proxy) Nth(m Match, n int, kind Kind) *Rule {
	if n < 1 {
		panic("faultproxy: Nth needs n >= 1")
	}
	if !kind.valid() {
		panic("faultproxy: unknown fault kind " + strconv.Quote(string(kind)))
	}
	r := &Rule{match: m, kind: kind, left: n, done: make(chan struct{})}
	p.mu.Lock()
	p.rules = append(p.rules, r)
	p.mu.Unlock()
	return r
}

// ReleaseHung ends the hold of every request hung right now: each is
// forwarded at once (and its reply discarded), as if its time were up. It
// returns how many it released. Tests use it to decide when a hung write
// lands instead of waiting out Options.Hang.
func (p *Proxy) ReleaseHung() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := len(p.holds)
	for h := range p.holds {
		close(h.release)
		delete(p.holds, h)
	}
	return n
}

// Stats returns a copy of the counters.
func (p *Proxy) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.stats
	s.Faults = make(map[Kind]int, len(p.stats.Faults))
	for k, v := range p.stats.Faults {
		s.Faults[k] = v
	}
	return s
}

// FaultLog returns the injected faults, oldest first: the last 1,000.
func (p *Proxy) FaultLog() []Fault {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.log)
}

// ServeHTTP injects the fault chosen for r, if any, and otherwise forwards
// r to the target.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path := p.relPath(r.URL.Path)
	kind, rule, seq := p.decide(r.Method, path, r.URL.RawQuery)
	if p.reqLog != nil && p.reqLog.W != nil {
		lc := p.startLog(r, seq, path, kind)
		r = r.WithContext(context.WithValue(r.Context(), logKey{}, lc))
		defer p.endLog(lc)
	}
	if kind == "" {
		p.forward(w, r)
		return
	}
	// The rule is done when its fault has been applied: when this handler
	// returns (deferred, so an aborting panic still counts), or earlier for
	// a hang, once the request is held.
	var once sync.Once
	applied := func() {
		if rule != nil {
			once.Do(func() { close(rule.done) })
		}
	}
	defer applied()
	switch kind {
	case Kind500, Kind502, Kind503, Kind429:
		p.answerFault(w, r, kind)
	case KindReset:
		resetClient(w)
	case KindLostReply:
		p.loseReply(w, r)
	case KindHang:
		p.hangUp(w, r, applied)
	}
}

// relPath is the request path as Match sees it: relative to the FHIR base
// without the leading slash, or the whole path when outside the base.
func (p *Proxy) relPath(path string) string {
	rest, ok := strings.CutPrefix(path, p.basePath)
	if !ok || (rest != "" && rest[0] != '/') {
		return path
	}
	return strings.TrimPrefix(rest, "/")
}

// decide numbers the request and picks its fault: an armed rule first,
// else the random draw. It returns "" for none, and the request's number.
func (p *Proxy) decide(method, path, rawQuery string) (Kind, *Rule, int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.seq++
	p.stats.Requests++
	// Two draws for every request, used or not, so that the n-th request
	// gets the same draws whatever the rate, the scope or the armed rules.
	u := p.rng.Float64()
	drawn := p.kinds[p.rng.IntN(len(p.kinds))]
	f := Fault{Seq: p.seq, Method: method, ResourceType: resourceType(path)}
	for i, r := range p.rules {
		if !r.match.matches(method, path, rawQuery) {
			continue
		}
		if r.left--; r.left > 0 {
			continue
		}
		p.rules = slices.Delete(p.rules, i, i+1)
		f.Kind, f.Armed = r.kind, true
		p.record(f)
		return r.kind, r, p.seq
	}
	if u < p.rate && p.scope.matches(method, path, rawQuery) {
		f.Kind = drawn
		p.record(f)
		return drawn, nil, p.seq
	}
	return "", nil, p.seq
}

// record counts and logs a fault; p.mu is held.
func (p *Proxy) record(f Fault) {
	p.stats.Faults[f.Kind]++
	if len(p.log) >= logSize {
		p.log = slices.Delete(p.log, 0, len(p.log)-logSize+1)
	}
	p.log = append(p.log, f)
}

func (p *Proxy) countForward() {
	p.mu.Lock()
	p.stats.Forwarded++
	p.mu.Unlock()
}

// forward passes r to the target and streams the reply back.
func (p *Proxy) forward(w http.ResponseWriter, r *http.Request) {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	ctx := context.WithValue(r.Context(), originKey{}, scheme+"://"+r.Host)
	p.rp.ServeHTTP(w, r.WithContext(ctx))
}

// originKey carries the proxy's own origin, as the client addressed it, to
// rewriteResponse.
type originKey struct{}

func (p *Proxy) rewriteRequest(pr *httputil.ProxyRequest) {
	pr.Out.URL.Scheme = p.target.Scheme
	pr.Out.URL.Host = p.target.Host
	pr.Out.Host = ""
	p.countForward()
}

// rewriteResponse points the target's own absolute URLs at the proxy, as a
// gateway in front of an EHR does: Location and Content-Location headers,
// and URLs in JSON bodies (Bundle links and fullUrls, the SMART token
// endpoint). Without it a client would be sent past the proxy, and the
// adapter, which follows next links only under its base URL, would stop
// paging. Everything else, ETag and Retry-After included, passes as is.
func (p *Proxy) rewriteResponse(resp *http.Response) error {
	origin, _ := resp.Request.Context().Value(originKey{}).(string)
	lc, _ := resp.Request.Context().Value(logKey{}).(*loggedCall)
	rewrite := origin != "" && origin != p.targetOrigin
	if !rewrite && lc == nil {
		return nil
	}
	from := p.targetOrigin + "/"
	if rewrite {
		for _, h := range []string{"Location", "Content-Location"} {
			if v := resp.Header.Get(h); strings.HasPrefix(v, from) {
				resp.Header.Set(h, origin+v[len(p.targetOrigin):])
			}
		}
	}
	if !strings.Contains(strings.ToLower(resp.Header.Get("Content-Type")), "json") || resp.Header.Get("Content-Encoding") != "" {
		p.reply(lc, resp, nil)
		return nil
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	_ = resp.Body.Close()
	if err != nil {
		return err
	}
	if len(body) > maxBody {
		return errors.New("faultproxy: reply body too large to rewrite")
	}
	p.reply(lc, resp, body)
	if !rewrite {
		resp.Body = io.NopCloser(bytes.NewReader(body))
		return nil
	}
	body = bytes.ReplaceAll(body, []byte(from), []byte(origin+"/"))
	resp.Body = io.NopCloser(bytes.NewReader(body))
	resp.ContentLength = int64(len(body))
	resp.Header.Set("Content-Length", strconv.Itoa(len(body)))
	return nil
}

// upstreamError answers a forward that got no reply the way a gateway does.
func (p *Proxy) upstreamError(w http.ResponseWriter, r *http.Request, _ error) {
	if r.Context().Err() != nil {
		return // the client is gone; nobody to answer
	}
	p.mu.Lock()
	p.stats.UpstreamErrors++
	p.mu.Unlock()
	writeOutcome(w, http.StatusBadGateway, "transient", "faultproxy: no reply from the target", nil)
}

// answerFault answers a status fault without forwarding.
func (p *Proxy) answerFault(w http.ResponseWriter, r *http.Request, kind Kind) {
	// Read the body so the client is not reset while still sending it.
	_, _ = io.Copy(io.Discard, io.LimitReader(r.Body, maxBody))
	code := "transient"
	var extra http.Header
	switch kind {
	case Kind500:
		code = "exception"
	case Kind429:
		code = "throttled"
		extra = http.Header{"Retry-After": {p.retryAfter}}
	}
	writeOutcome(w, kind.status(), code, "Injected fault "+string(kind)+" (faultproxy)", extra)
}

// loseReply forwards r, reads the whole reply so the write is committed,
// then drops the client connection without answering.
func (p *Proxy) loseReply(w http.ResponseWriter, r *http.Request) {
	body, ok := readBody(r)
	if !ok || !p.beginWork() {
		resetClient(w)
		return
	}
	defer p.work.Done()
	// Forward under a context of our own: the client giving up must not
	// abort a write the EHR is applying.
	ctx, cancel := p.detached(r.Context())
	defer cancel()
	p.forwardAndDiscard(ctx, r, body)
	resetClient(w)
}

// hangUp holds r without answering for p.hang (or until ReleaseHung), then
// forwards it, discards the reply and drops the client connection if the
// client is still there. Close ends the hold without forwarding.
func (p *Proxy) hangUp(w http.ResponseWriter, r *http.Request, applied func()) {
	body, ok := readBody(r)
	if !ok || !p.beginWork() {
		resetClient(w)
		return
	}
	defer p.work.Done()
	// Take the connection so net/http neither answers for us nor closes it
	// when the client gives up; the client alone decides when to leave.
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		conn = nil // not HTTP/1: hold the handler instead
	}
	h := &hold{release: make(chan struct{})}
	p.mu.Lock()
	p.holds[h] = struct{}{}
	p.mu.Unlock()
	applied()

	timer := time.NewTimer(p.hang)
	defer timer.Stop()
	select {
	case <-timer.C:
		p.mu.Lock()
		delete(p.holds, h)
		p.mu.Unlock()
	case <-h.release:
	case <-p.closed:
		p.mu.Lock()
		delete(p.holds, h)
		p.mu.Unlock()
		dropConn(conn)
		return
	}
	ctx, cancel := p.detached(r.Context())
	defer cancel()
	p.forwardAndDiscard(ctx, r, body)
	dropConn(conn)
}

// beginWork registers work that may outlive its client, unless Close has
// begun; the caller calls p.work.Done when it returns true.
func (p *Proxy) beginWork() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.isClosed {
		return false
	}
	p.work.Add(1)
	return true
}

// detached returns a context that keeps parent's values but ends only with
// Close (or cancel), not when the client goes away.
func (p *Proxy) detached(parent context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.WithoutCancel(parent))
	go func() {
		select {
		case <-p.closed:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

// forwardAndDiscard sends r with body to the target and reads the reply to
// its end, so the target has finished with it.
func (p *Proxy) forwardAndDiscard(ctx context.Context, r *http.Request, body []byte) {
	out := r.Clone(ctx)
	out.RequestURI = ""
	out.URL.Scheme, out.URL.Host = p.target.Scheme, p.target.Host
	out.Host = ""
	out.Close = false
	out.TransferEncoding = nil
	out.ContentLength = int64(len(body))
	out.Body = http.NoBody
	if len(body) > 0 {
		out.Body = io.NopCloser(bytes.NewReader(body))
	}
	removeHopHeaders(out.Header)
	p.countForward()
	resp, err := p.transport.RoundTrip(out)
	if err == nil {
		var body []byte
		body, err = io.ReadAll(io.LimitReader(resp.Body, maxBody))
		_ = resp.Body.Close()
		if lc, _ := r.Context().Value(logKey{}).(*loggedCall); lc != nil && err == nil {
			p.reply(lc, resp, body)
		}
	}
	if err != nil && ctx.Err() == nil {
		p.mu.Lock()
		p.stats.UpstreamErrors++
		p.mu.Unlock()
	}
}

// removeHopHeaders drops what belongs to one connection, not the request
// (RFC 9110 section 7.6.1), and forwarding headers, as httputil does.
func removeHopHeaders(h http.Header) {
	for _, f := range h.Values("Connection") {
		for _, name := range strings.Split(f, ",") {
			if name = strings.TrimSpace(name); name != "" {
				h.Del(name)
			}
		}
	}
	for _, name := range []string{
		"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization",
		"Te", "Trailer", "Transfer-Encoding", "Upgrade",
		"X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "Forwarded",
	} {
		h.Del(name)
	}
}

// readBody reads r's whole body, refusing more than maxBody.
func readBody(r *http.Request) ([]byte, bool) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	return body, err == nil && len(body) <= maxBody
}

// resetClient drops the client connection with a TCP RST, without an
// answer.
func resetClient(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		// Not HTTP/1 (or already taken): net/http drops the connection or
		// stream when a handler panics with this value, and logs nothing.
		panic(http.ErrAbortHandler)
	}
	dropConn(conn)
}

// dropConn closes a hijacked connection with an RST rather than a FIN, so
// the client sees "connection reset" whatever it was doing. With no
// connection (not hijackable) it aborts the handler instead.
func dropConn(conn net.Conn) {
	if conn == nil {
		panic(http.ErrAbortHandler)
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = conn.Close()
}

// writeOutcome answers status with a one-issue OperationOutcome.
func writeOutcome(w http.ResponseWriter, status int, code, text string, extra http.Header) {
	body, _ := json.Marshal(map[string]any{
		"resourceType": "OperationOutcome",
		"issue": []any{map[string]any{
			"severity":    "error",
			"code":        code,
			"diagnostics": text,
		}},
	})
	h := w.Header()
	for k, v := range extra {
		h[k] = v
	}
	h.Set("Content-Type", "application/fhir+json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}
