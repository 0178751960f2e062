package console_test

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"html"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ipsfhir/ipsfhir/adapter/api"
	"github.com/ipsfhir/ipsfhir/adapter/console"
	"github.com/ipsfhir/ipsfhir/adapter/plan"
	"github.com/ipsfhir/ipsfhir/adapter/store"
	"github.com/ipsfhir/ipsfhir/adapter/store/postgres"
	"github.com/ipsfhir/ipsfhir/adapter/store/sqlite"
	"github.com/ipsfhir/ipsfhir/adapter/store/storetest"
	"github.com/ipsfhir/ipsfhir/adapter/syncer"
	"github.com/ipsfhir/ipsfhir/adapter/telemetry"
	"github.com/ipsfhir/ipsfhir/adapter/telemetry/telemetrytest"
	"github.com/ipsfhir/ipsfhir/conformance/check"
	"github.com/ipsfhir/ipsfhir/ips"
)

// API keys of the test callers, one per role.
const (
	adminKey      = "console-test-admin-0001"
	directorKey   = "console-test-director-0002"
	clinicianKey  = "console-test-clinician-0003"
	specialistKey = "console-test-specialist-0004"
	hieKey        = "console-test-hie-0005"
)

func sum(k string) []byte { s := sha256.Sum256([]byte(k)); return s[:] }

var keys = []api.Key{
	{Name: "ops", Role: api.RoleAdmin, SHA256: sum(adminKey)},
	{Name: "dana", Role: api.RoleDirector, SHA256: sum(directorKey)},
	{Name: "dr-okafor", Role: api.RoleClinician, SHA256: sum(clinicianKey)},
	{Name: "jordan", Role: api.RoleSpecialist, SHA256: sum(specialistKey)},
	{Name: "state-hie", Role: api.RoleHIE, SHA256: sum(hieKey)},
}

// sqliteStore is a fresh SQLite store, closed when the test ends.
func sqliteStore(t *testing.T) store.Store {
	t.Helper()
	st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "ips.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// forEachStore runs f against a fresh SQLite store and, when
// IPSFHIR_TEST_POSTGRES_DSN is set, a fresh PostgreSQL schema.
func forEachStore(t *testing.T, f func(t *testing.T, st store.Store)) {
	t.Run("sqlite", func(t *testing.T) {
		t.Parallel()
		st := sqliteStore(t)
		f(t, st)
	})
	t.Run("postgres", func(t *testing.T) {
		t.Parallel()
		st, err := postgres.Open(t.Context(), storetest.PostgresDSN(t))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		f(t, st)
	})
}

// rig is the console over a real store, with a clock the test moves.
type rig struct {
	t     *testing.T
	st    store.Store
	h     http.Handler
	clock atomic.Int64 // offset added to time.Now
	logs  *telemetrytest.Buffer
	dead  store.DeadLetter
	conf  int64
}

func newRig(t *testing.T, st store.Store, tweak ...func(*console.Options)) *rig {
	t.Helper()
	r := &rig{t: t, st: st, logs: &telemetrytest.Buffer{}}
	r.build(tweak...)
	r.seed()
	return r
}

// restarted is the console started afresh over the rig's store, as after
// a restart or on another replica: nothing of the first console's memory.
func (r *rig) restarted(tweak ...func(*console.Options)) *rig {
	r.t.Helper()
	again := &rig{t: r.t, st: r.st, logs: &telemetrytest.Buffer{}, dead: r.dead, conf: r.conf}
	again.build(tweak...)
	return again
}

// build makes the console's handler.
func (r *rig) build(tweak ...func(*console.Options)) {
	t, st := r.t, r.st
	t.Helper()
	o := console.Options{
		Store: st, Keys: keys,
		Connections: func() []console.Connection {
			return []console.Connection{{Name: "clinic", Enabled: true}, {Name: "down-clinic", Enabled: true}, {Name: "later-clinic"}}
		},
		Status: func() []syncer.ConnectionStatus {
			since := time.Date(2026, 12, 1, 9, 0, 4, 0, time.UTC)
			return []syncer.ConnectionStatus{
				{Name: "clinic", State: syncer.StateReady, Since: since, LastPull: since.Add(time.Minute), LastPush: since.Add(2 * time.Minute)},
				{Name: "down-clinic", State: syncer.StateFailing, Since: since,
					Failures: []syncer.Failure{{Step: syncer.StepConnect, Reason: "ehr-unreachable", Since: since, Attempts: 7}}},
			}
		},
		Logger:      telemetry.NewLogger(r.logs, slog.LevelInfo, "text"),
		Outcomes:    func(context.Context) ([]byte, error) { return []byte(reportPage), nil },
		Plans:       func() map[string]*plan.Plan { return map[string]*plan.Plan{"clinic": epicPlan(t)} },
		IdleTimeout: 30 * time.Minute,
		Now:         func() time.Time { return time.Now().Add(time.Duration(r.clock.Load())) },
	}
	for _, f := range tweak {
		f(&o)
	}
	h, err := console.New(o)
	if err != nil {
		t.Fatal(err)
	}
	r.h = h
}

// seed stores a dead letter of down-clinic, a pending item of clinic and
// an open conflict.
func (r *rig) seed() {
	t, st := r.t, r.st
	t.Helper()
	ctx := t.Context()
	c1 := &ips.Client{ID: "c1", Patient: ips.Identifier{System: "urn:test", Value: "MRN1"}, EnrolledOn: ips.MustDate("2026-01-05")}
	c2 := &ips.Client{ID: "c2", Patient: ips.Identifier{System: "urn:test", Value: "MRN2"}, EnrolledOn: ips.MustDate("2026-01-05")}
	if _, err := st.SaveClients(ctx, []store.Stored{{Client: c1}}, []string{"down-clinic"}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.SaveClients(ctx, []store.Stored{{Client: c2}}, []string{"clinic"}); err != nil {
		t.Fatal(err)
	}
	items, err := st.Lease(ctx, "down-clinic", "test", 1, time.Minute)
	if err != nil || len(items) != 1 {
		t.Fatalf("lease: %v %v", items, err)
	}
	if dead, err := st.Fail(ctx, items[0], "push: patient not found in the EHR by identifier", time.Now(), 1); err != nil || !dead {
		t.Fatalf("fail: %v %v", dead, err)
	}
	dl, err := st.DeadLetters(ctx, "")
	if err != nil || len(dl) != 1 {
		t.Fatalf("dead letters: %v %v", dl, err)
	}
	r.dead = dl[0]
	if r.conf, err = st.AddConflict(ctx, store.Conflict{Connection: "clinic", ClientID: "c2", Key: "urn:test|goal-1", Field: "status",
		IPSValue: "active", EHRValue: "completed", Winner: "ehr"}); err != nil {
		t.Fatal(err)
	}
}

// browser is a cookie-keeping client of the rig, as a browser is.
type browser struct {
	r       *rig
	cookies map[string]*http.Cookie
	tls     bool
	addr    string // the client's address ("host:port"); "" is httptest's
}

func (r *rig) browser() *browser { return &browser{r: r, cookies: map[string]*http.Cookie{}} }

type reply struct {
	code   int
	header http.Header
	body   string
	set    map[string]*http.Cookie
}

func (b *browser) do(method, path string, form url.Values, header ...string) reply {
	b.r.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	path, _, _ = strings.Cut(path, "#") // a browser keeps the fragment to itself
	req := httptest.NewRequest(method, path, body)
	if b.tls {
		req.TLS = &tls.ConnectionState{}
	}
	if b.addr != "" {
		req.RemoteAddr = b.addr
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	for _, c := range b.cookies {
		req.AddCookie(c)
	}
	rec := httptest.NewRecorder()
	b.r.h.ServeHTTP(rec, req)
	res := rec.Result()
	out := reply{code: res.StatusCode, header: res.Header, body: rec.Body.String(), set: map[string]*http.Cookie{}}
	for _, c := range res.Cookies() {
		out.set[c.Name] = c
		if c.MaxAge < 0 {
			delete(b.cookies, c.Name)
		} else {
			b.cookies[c.Name] = c
		}
	}
	return out
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// csrf is the token of the first form of a page.
func csrf(t *testing.T, body string) string {
	t.Helper()
	m := csrfField.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no CSRF token in the page:\n%.600s", body)
	}
	return m[1]
}

// signIn signs b in with key and returns the overview's (or outcomes')
// CSRF token.
func (b *browser) signIn(key string) reply {
	b.r.t.Helper()
	form := b.do("GET", "/console/login", nil)
	if form.code != 200 {
		b.r.t.Fatalf("sign-in form: %d", form.code)
	}
	return b.do("POST", "/console/login", url.Values{"csrf": {csrf(b.r.t, form.body)}, "key": {key}})
}

func TestSignInAndSecurityHeaders(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, st store.Store) {
		r := newRig(t, st)
		b := r.browser()
		if res := b.do("GET", "/console/", nil); res.code != http.StatusSeeOther || res.header.Get("Location") != "/console/login" {
			t.Fatalf("the console without signing in: %d %q, want 303 to the sign-in form", res.code, res.header.Get("Location"))
		}
		form := b.do("GET", "/console/login", nil)
		for name, want := range map[string]string{
			"Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'",
			"X-Frame-Options":         "DENY",
			"X-Content-Type-Options":  "nosniff",
			"Cache-Control":           "no-store",
		} {
			if got := form.header.Get(name); !strings.Contains(got, want) {
				t.Errorf("%s: %q, want %q", name, got, want)
			}
		}
		if csp := form.header.Get("Content-Security-Policy"); strings.Contains(csp, "unsafe") || !strings.Contains(csp, "frame-ancestors 'none'") {
			t.Errorf("CSP %q", csp)
		}
		if strings.Contains(form.body, "<script>") || strings.Contains(form.body, "style=") || strings.Contains(form.body, "<style") || strings.Contains(form.body, "http://") || strings.Contains(form.body, "https://") {
			t.Errorf("the page has inline code or an external URL:\n%s", form.body)
		}

		// A wrong key: the form again, with a message, and no echo.
		res := b.do("POST", "/console/login", url.Values{"csrf": {csrf(t, form.body)}, "key": {"not-a-key-PLANTED"}})
		if res.code != http.StatusUnauthorized || !strings.Contains(res.body, "That key is not valid") || strings.Contains(res.body, "PLANTED") {
			t.Errorf("wrong key: %d\n%s", res.code, res.body)
		}
		if _, ok := res.set["ipsfhir_console"]; ok {
			t.Error("a wrong key got a session cookie")
		}
		// The sign-in form's own CSRF token: without it, nothing.
		res = r.browser().do("POST", "/console/login", url.Values{"key": {adminKey}})
		if res.code != http.StatusForbidden || strings.Contains(res.body, adminKey) {
			t.Errorf("sign-in without the form's token: %d", res.code)
		}

		res = b.signIn(adminKey)
		if res.code != http.StatusSeeOther || res.header.Get("Location") != "/console/" {
			t.Fatalf("sign-in: %d %q\n%s", res.code, res.header.Get("Location"), res.body)
		}
		ck := res.set["ipsfhir_console"]
		if ck == nil || !ck.HttpOnly || ck.SameSite != http.SameSiteStrictMode || ck.Path != "/console/" || ck.Secure || len(ck.Value) < 43 {
			t.Errorf("session cookie: %+v", ck)
		}
		if strings.Contains(ck.Value, adminKey) {
			t.Error("the cookie holds the key")
		}
		home := b.do("GET", "/console/", nil)
		if home.code != 200 {
			t.Fatalf("overview: %d %s", home.code, home.body)
		}
		for _, want := range []string{"clinic", "Ready", "down-clinic", "Failing", "ehr-unreachable", "the EHR cannot be reached", "7 attempts",
			"later-clinic", "Disabled", `href="/console/dead-letters">1</a>`, `href="/console/conflicts">1</a>`, "Signed in as <strong>ops</strong>", `data-live="/console/overview/live"`,
			`<noscript><meta http-equiv="refresh" content="30"></noscript>`} {
			if !strings.Contains(home.body, want) {
				t.Errorf("the overview lacks %q", want)
			}
		}
		// Failing first; clinic's pending item has an age.
		if strings.Index(home.body, `id="conn-down-clinic"`) > strings.Index(home.body, `id="conn-clinic"`) {
			t.Error("the failing connection is not listed first")
		}
		if !strings.Contains(home.body, `Oldest pending</dt><dd><time`) {
			t.Error("no age of the oldest pending item")
		}
		live := b.do("GET", "/console/overview/live", nil)
		if live.code != 200 || strings.Contains(live.body, "<html") || !strings.Contains(live.body, "down-clinic") {
			t.Errorf("live part: %d\n%.300s", live.code, live.body)
		}

		// Failed and successful sign-ins are in the audit trail; the key
		// nowhere in it nor in the log.
		entries, err := st.Audit(t.Context(), store.AuditQuery{})
		if err != nil {
			t.Fatal(err)
		}
		var failed, ok bool
		for _, e := range entries {
			if e.Route == "/console/login" && e.Status == http.StatusUnauthorized && e.Caller == "" {
				failed = true
			}
			if e.Route == "/console/login" && e.Status == http.StatusSeeOther && e.Caller == "ops" && e.Role == "admin" {
				ok = true
			}
		}
		if !failed || !ok {
			t.Errorf("audit trail lacks the failed (%v) or the successful (%v) sign-in: %+v", failed, ok, entries)
		}
		if logs := r.logs.String(); strings.Contains(logs, "PLANTED") || strings.Contains(logs, adminKey) || strings.Contains(logs, ck.Value) {
			t.Errorf("the log holds a key or session id:\n%s", logs)
		}
	})
}

func TestSecureCookie(t *testing.T) {
	t.Parallel()
	st := sqliteStore(t)
	// Over TLS, the cookie is Secure.
	r := newRig(t, st)
	b := r.browser()
	b.tls = true
	if ck := b.signIn(adminKey).set["ipsfhir_console"]; ck == nil || !ck.Secure {
		t.Errorf("over TLS: %+v", ck)
	}
	// Behind a TLS-terminating proxy (publicUrl https), too.
	st2, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "ips2.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st2.Close()
	r2 := newRig(t, st2, func(o *console.Options) { o.SecureCookies = true })
	if ck := r2.browser().signIn(adminKey).set["ipsfhir_console"]; ck == nil || !ck.Secure {
		t.Errorf("with SecureCookies: %+v", ck)
	}
}

func TestCSRFAndReplay(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, st store.Store) {
		r := newRig(t, st)
		b := r.browser()
		b.signIn(adminKey)
		page := b.do("GET", "/console/dead-letters", nil)
		if page.code != 200 || !strings.Contains(page.body, "patient not found in the EHR by identifier") || !strings.Contains(page.body, "down-clinic") {
			t.Fatalf("dead letters page: %d\n%s", page.code, page.body)
		}
		tok := csrf(t, page.body)
		path := "/console/dead-letters/" + itoa(r.dead.ID) + "/replay"
		for name, form := range map[string]url.Values{
			"no token":    {},
			"wrong token": {"csrf": {tok + "x"}},
			"empty token": {"csrf": {""}},
		} {
			if res := b.do("POST", path, form); res.code != http.StatusForbidden {
				t.Errorf("replay with %s: %d, want 403", name, res.code)
			}
		}
		if dl, _ := st.DeadLetters(t.Context(), ""); len(dl) != 1 {
			t.Fatalf("a refused replay changed something: %v", dl)
		}
		// GET does not change anything either.
		if res := b.do("GET", path, nil); res.code != http.StatusMethodNotAllowed && res.code != http.StatusNotFound {
			t.Errorf("GET replay: %d", res.code)
		}
		res := b.do("POST", path, url.Values{"csrf": {tok}})
		if res.code != http.StatusSeeOther {
			t.Fatalf("replay: %d %s", res.code, res.body)
		}
		if dl, _ := st.DeadLetters(t.Context(), ""); len(dl) != 0 {
			t.Errorf("still a dead letter after replay: %v", dl)
		}
		if depth, _ := st.OutboxDepth(t.Context()); depth["down-clinic"] != 1 {
			t.Errorf("outbox after replay: %v", depth)
		}
		after := b.do("GET", res.header.Get("Location"), nil)
		if !strings.Contains(after.body, "is queued again") || !strings.Contains(after.body, "No dead letters") {
			t.Errorf("the page after replay does not say what happened:\n%s", after.body)
		}
		// Replaying it again: it is no dead letter any more.
		if res := b.do("POST", path, url.Values{"csrf": {tok}}); res.code != http.StatusNotFound {
			t.Errorf("second replay: %d", res.code)
		}
		// A path that is no number.
		if res := b.do("POST", "/console/dead-letters/x/replay", url.Values{"csrf": {tok}}); res.code != http.StatusBadRequest {
			t.Errorf("replay x: %d", res.code)
		}
	})
}

func TestResolveConflict(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, st store.Store) {
		r := newRig(t, st)
		b := r.browser()
		b.signIn(adminKey)
		page := b.do("GET", "/console/conflicts", nil)
		for _, want := range []string{"active", "completed", "IPS value", "EHR value", `value="kept-ips"`, `value="kept-ehr"`, "applied"} {
			if !strings.Contains(page.body, want) {
				t.Errorf("conflicts page lacks %q", want)
			}
		}
		tok := csrf(t, page.body)
		path := "/console/conflicts/" + itoa(r.conf) + "/resolve"
		if res := b.do("POST", path, url.Values{"csrf": {tok}, "resolution": {"whatever"}}); res.code != http.StatusBadRequest {
			t.Errorf("resolution whatever: %d", res.code)
		}
		if res := b.do("POST", path, url.Values{"resolution": {"kept-ehr"}}); res.code != http.StatusForbidden {
			t.Errorf("resolve without CSRF: %d", res.code)
		}
		res := b.do("POST", path, url.Values{"csrf": {tok}, "resolution": {"kept-ehr"}})
		if res.code != http.StatusSeeOther {
			t.Fatalf("resolve: %d %s", res.code, res.body)
		}
		all, _ := st.Conflicts(t.Context(), "", true)
		if len(all) != 1 || all[0].Resolution != "kept-ehr" || all[0].ResolvedAt.IsZero() {
			t.Errorf("conflict after resolve: %+v", all)
		}
		after := b.do("GET", res.header.Get("Location"), nil)
		if !strings.Contains(after.body, "is closed: keep the EHR value") || !strings.Contains(after.body, "No open conflicts") {
			t.Errorf("the page after resolving:\n%s", after.body)
		}
		if res := b.do("POST", path, url.Values{"csrf": {tok}, "resolution": {"kept-ips"}}); res.code != http.StatusConflict && res.code != http.StatusNotFound {
			t.Errorf("resolving twice: %d", res.code)
		}
		entries, _ := st.Audit(t.Context(), store.AuditQuery{Caller: "ops"})
		found := false
		for _, e := range entries {
			if e.Route == "/console/conflicts/{id}/resolve" && e.Status == http.StatusSeeOther && e.Role == "admin" {
				found = true
			}
		}
		if !found {
			t.Errorf("the decision is not in the audit trail: %+v", entries)
		}
	})
}

func TestSignOutAndExpiry(t *testing.T) {
	t.Parallel()
	st := sqliteStore(t)
	r := newRig(t, st)

	// Sign-out ends the session on the server: the old cookie, replayed,
	// opens nothing.
	b := r.browser()
	b.signIn(adminKey)
	home := b.do("GET", "/console/", nil)
	old := *b.cookies["ipsfhir_console"]
	res := b.do("POST", "/console/signout", url.Values{"csrf": {csrf(t, home.body)}})
	if res.code != http.StatusSeeOther || res.header.Get("Location") != "/console/login?signedout=1" {
		t.Fatalf("sign-out: %d %q", res.code, res.header.Get("Location"))
	}
	if ck := res.set["ipsfhir_console"]; ck == nil || ck.MaxAge >= 0 {
		t.Errorf("sign-out does not clear the cookie: %+v", ck)
	}
	thief := r.browser()
	thief.cookies["ipsfhir_console"] = &old
	if res := thief.do("GET", "/console/", nil); res.code != http.StatusSeeOther || !strings.HasPrefix(res.header.Get("Location"), "/console/login") {
		t.Errorf("old cookie after sign-out: %d %q", res.code, res.header.Get("Location"))
	}
	thief.cookies["ipsfhir_console"] = &old
	if res := thief.do("POST", "/console/dead-letters/"+itoa(r.dead.ID)+"/replay", url.Values{"csrf": {csrf(t, home.body)}}); res.code != http.StatusForbidden {
		t.Errorf("replay with the old cookie and token: %d", res.code)
	}
	if dl, _ := st.DeadLetters(t.Context(), ""); len(dl) != 1 {
		t.Error("a signed-out session replayed a dead letter")
	}
	// A tampered cookie is no session.
	tampered := r.browser()
	tampered.cookies["ipsfhir_console"] = &http.Cookie{Name: "ipsfhir_console", Value: old.Value[:len(old.Value)-2] + "AA"}
	if res := tampered.do("GET", "/console/dead-letters", nil); res.code != http.StatusSeeOther {
		t.Errorf("tampered cookie: %d", res.code)
	}

	// Idle too long: the session ends.
	b2 := r.browser()
	b2.signIn(adminKey)
	if res := b2.do("GET", "/console/", nil); res.code != 200 {
		t.Fatalf("fresh session: %d", res.code)
	}
	r.clock.Add(int64(31 * time.Minute))
	res = b2.do("GET", "/console/", nil)
	if res.code != http.StatusSeeOther || res.header.Get("Location") != "/console/login?ended=1" {
		t.Errorf("idle session: %d %q", res.code, res.header.Get("Location"))
	}
	if page := b2.do("GET", "/console/login?ended=1", nil); !strings.Contains(page.body, "Your session has ended") {
		t.Error("the sign-in form does not say the session ended")
	}
	// Used within the idle time, it lives on, up to its maximum age.
	b3 := r.browser()
	b3.signIn(adminKey)
	for range 25 { // 25 × 29 min > 12 h
		r.clock.Add(int64(29 * time.Minute))
		if res := b3.do("GET", "/console/dead-letters", nil); res.code != 200 {
			if res.header.Get("Location") != "/console/login?ended=1" {
				t.Errorf("session in use: %d", res.code)
			}
			return
		}
	}
	t.Error("a session in use never reached its maximum age")
}

func TestRoles(t *testing.T) {
	t.Parallel()
	st := sqliteStore(t)
	r := newRig(t, st)
	adminPages := []string{"/console/", "/console/dead-letters", "/console/conflicts", "/console/overview/live"}

	// Clinician, specialist and hie keys: 403 at sign-in (no session) and
	// on every page with the key as a bearer token.
	for _, key := range []string{clinicianKey, specialistKey, hieKey} {
		b := r.browser()
		res := b.signIn(key)
		if res.code != http.StatusForbidden || !strings.Contains(res.body, "administrators (role admin) and program directors") {
			t.Errorf("sign-in with %s: %d\n%s", key, res.code, res.body)
		}
		if _, ok := res.set["ipsfhir_console"]; ok {
			t.Errorf("%s got a session", key)
		}
		if strings.Contains(res.body, "Signed in as") || strings.Contains(res.body, `href="/console/outcomes"`) {
			t.Errorf("the 403 page of %s shows it signed in, with navigation", key)
		}
		for _, p := range append(adminPages, "/console/outcomes") {
			if res := r.browser().do("GET", p, nil, "Authorization", "Bearer "+key); res.code != http.StatusForbidden {
				t.Errorf("GET %s with %s: %d, want 403", p, key, res.code)
			}
		}
		if res := r.browser().do("POST", "/console/dead-letters/"+itoa(r.dead.ID)+"/replay", url.Values{}, "Authorization", "Bearer "+key); res.code != http.StatusForbidden {
			t.Errorf("replay with %s: %d", key, res.code)
		}
	}

	// A director sees outcomes, and nothing else.
	d := r.browser()
	if res := d.signIn(directorKey); res.code != http.StatusSeeOther {
		t.Fatalf("director sign-in: %d", res.code)
	}
	if res := d.do("GET", "/console/", nil); res.code != http.StatusSeeOther || res.header.Get("Location") != "/console/outcomes" {
		t.Errorf("director's home: %d %q", res.code, res.header.Get("Location"))
	}
	out := d.do("GET", "/console/outcomes", nil)
	if out.code != 200 || strings.Contains(out.body, "Dead letters") || strings.Contains(out.body, "clinic") {
		t.Errorf("director's outcomes page: %d\n%s", out.code, out.body)
	}
	tok := csrf(t, out.body)
	for _, p := range adminPages[1:] {
		if res := d.do("GET", p, nil); res.code != http.StatusForbidden || strings.Contains(res.body, "patient not found") || strings.Contains(res.body, "down-clinic") {
			t.Errorf("director GET %s: %d", p, res.code)
		}
	}
	if res := d.do("POST", "/console/dead-letters/"+itoa(r.dead.ID)+"/replay", url.Values{"csrf": {tok}}); res.code != http.StatusForbidden {
		t.Errorf("director replay: %d", res.code)
	}
	if res := d.do("POST", "/console/conflicts/"+itoa(r.conf)+"/resolve", url.Values{"csrf": {tok}, "resolution": {"kept-ips"}}); res.code != http.StatusForbidden {
		t.Errorf("director resolve: %d", res.code)
	}
	if dl, _ := st.DeadLetters(t.Context(), ""); len(dl) != 1 {
		t.Error("a director replayed a dead letter")
	}
	if cs, _ := st.Conflicts(t.Context(), "", false); len(cs) != 1 {
		t.Error("a director resolved a conflict")
	}

	// Bearer keys work for scripts, without CSRF (a browser never sends
	// the header by itself); a bad one is 401.
	bearer := r.browser()
	if res := bearer.do("GET", "/console/dead-letters", nil, "Authorization", "Bearer "+adminKey); res.code != 200 || strings.Contains(res.body, "Sign out") {
		t.Errorf("bearer admin: %d", res.code)
	}
	if res := bearer.do("POST", "/console/dead-letters/"+itoa(r.dead.ID)+"/replay", url.Values{}, "Authorization", "Bearer "+adminKey); res.code != http.StatusSeeOther {
		t.Errorf("bearer replay: %d %s", res.code, res.body)
	}
	if res := bearer.do("GET", "/console/", nil, "Authorization", "Bearer not-a-key"); res.code != http.StatusUnauthorized || res.header.Get("WWW-Authenticate") == "" {
		t.Errorf("bad bearer: %d", res.code)
	}
	if res := bearer.do("GET", "/console/outcomes", nil, "Authorization", "Bearer "+directorKey); res.code != 200 {
		t.Errorf("bearer director outcomes: %d", res.code)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// reportPage stands for the page report --html writes: an inline style
// sheet and a data: image.
const reportPage = `<!doctype html><html lang="en"><head><title>Outcomes</title><style>
body { color: #222; }
</style></head><body><main><h1>Outcomes</h1><img src="data:image/png;base64,iVBORw0KGgo=" alt="chart"></main></body></html>`

func TestOutcomesReport(t *testing.T) {
	t.Parallel()
	st := sqliteStore(t)
	r := newRig(t, st)
	css := sha256.Sum256([]byte("\nbody { color: #222; }\n"))
	wantCSP := "default-src 'none'; style-src 'sha256-" + base64.StdEncoding.EncodeToString(css[:]) + "'; img-src data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
	for _, key := range []string{directorKey, adminKey} {
		b := r.browser()
		b.signIn(key)
		idx := b.do("GET", "/console/outcomes", nil)
		if idx.code != 200 || !strings.Contains(idx.body, `href="/console/outcomes/report"`) {
			t.Errorf("outcomes page with %s: %d", key, idx.code)
		}
		res := b.do("GET", "/console/outcomes/report", nil)
		if res.code != 200 || res.body != reportPage {
			t.Errorf("report with %s: %d\n%s", key, res.code, res.body)
		}
		if got := res.header.Get("Content-Security-Policy"); got != wantCSP {
			t.Errorf("report CSP:\n got %s\nwant %s", got, wantCSP)
		}
		if res.header.Get("X-Frame-Options") != "DENY" {
			t.Error("report may be framed")
		}
	}
	for _, key := range []string{clinicianKey, specialistKey, hieKey} {
		if res := r.browser().do("GET", "/console/outcomes/report", nil, "Authorization", "Bearer "+key); res.code != http.StatusForbidden || strings.Contains(res.body, "Outcomes</h1><img") {
			t.Errorf("report with %s: %d", key, res.code)
		}
	}
	entries, _ := st.Audit(t.Context(), store.AuditQuery{Caller: "dana"})
	found := false
	for _, e := range entries {
		found = found || (e.Route == "/console/outcomes/report" && e.Status == 200 && e.Role == "director")
	}
	if !found {
		t.Errorf("the director's reading of the report is not in the audit trail: %+v", entries)
	}
}

// epicPlan is the sync plan of Epic's R4 sandbox statement.
func epicPlan(t *testing.T) *plan.Plan {
	t.Helper()
	epic, err := os.ReadFile(filepath.Join("..", "..", "testdata", "ehr-capabilities", "epic-r4-sandbox-2026-07.json"))
	if err != nil {
		t.Fatal(err)
	}
	p, err := plan.Build(epic, plan.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestConnectionPage(t *testing.T) {
	t.Parallel()
	st := sqliteStore(t)
	r := newRig(t, st)
	b := r.browser()
	b.signIn(adminKey)
	p := epicPlan(t)
	res := b.do("GET", "/console/connections/clinic", nil)
	if res.code != 200 {
		t.Fatalf("clinic: %d", res.code)
	}
	res.body = html.UnescapeString(res.body) // html/template writes + as &#43;
	// Every concept and every type of the plan, with its path, idempotency,
	// concurrency and change detection.
	for _, cp := range p.Concepts {
		if !strings.Contains(res.body, string(cp.Concept)) || !strings.Contains(res.body, "<code>"+string(cp.Path)+"</code>") {
			t.Errorf("the page lacks concept %s or its path %s", cp.Concept, cp.Path)
		}
	}
	for _, rp := range p.Types {
		if !strings.Contains(res.body, "<td data-label=\"Type\">"+rp.Type+"</td>") || !strings.Contains(res.body, "<code>"+string(rp.Detection)+"</code>") {
			t.Errorf("the page lacks type %s or its change detection", rp.Type)
		}
		if rp.Idempotency != "" && !strings.Contains(res.body, "<code>"+string(rp.Idempotency)+"</code>") {
			t.Errorf("the page lacks %s's idempotency %s", rp.Type, rp.Idempotency)
		}
	}
	if !strings.Contains(res.body, "Ready") {
		t.Error("the page lacks the connection's state")
	}
	if res := b.do("GET", "/console/connections/down-clinic", nil); res.code != 200 || !strings.Contains(res.body, "No sync plan yet") || !strings.Contains(res.body, "ehr-unreachable") {
		t.Errorf("down-clinic: %d", res.code)
	}
	if res := b.do("GET", "/console/connections/nowhere", nil); res.code != http.StatusNotFound {
		t.Errorf("an unknown connection: %d", res.code)
	}
	d := r.browser()
	d.signIn(directorKey)
	if res := d.do("GET", "/console/connections/clinic", nil); res.code != http.StatusForbidden {
		t.Errorf("a director on a connection page: %d", res.code)
	}
}

func TestReplayAll(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, st store.Store) {
		r := newRig(t, st)
		ctx := t.Context()
		// A second dead letter: clinic's item for c2.
		kill := func(conn string) {
			t.Helper()
			items, err := st.Lease(ctx, conn, "test", 1, time.Minute)
			if err != nil || len(items) != 1 {
				t.Fatalf("lease %s: %v %v", conn, items, err)
			}
			if _, err := st.Fail(ctx, items[0], "push: the EHR refused the resource as invalid", time.Now(), 1); err != nil {
				t.Fatal(err)
			}
		}
		kill("clinic")
		b := r.browser()
		b.signIn(adminKey)
		page := b.do("GET", "/console/dead-letters", nil)
		if !strings.Contains(page.body, "Replay all 2 listed") {
			t.Fatalf("no replay-all button:\n%s", page.body)
		}
		form := url.Values{"csrf": {csrf(t, page.body)}}
		for _, m := range regexp.MustCompile(`name="id" value="(\d+)"`).FindAllStringSubmatch(page.body, -1) {
			form.Add("id", m[1])
		}
		if len(form["id"]) != 2 {
			t.Fatalf("the form lists %d ids", len(form["id"]))
		}
		// One more arrives after the page was read: not replayed.
		c3 := &ips.Client{ID: "c3", Patient: ips.Identifier{System: "urn:test", Value: "MRN3"}, EnrolledOn: ips.MustDate("2026-01-05")}
		if _, err := st.SaveClients(ctx, []store.Stored{{Client: c3}}, []string{"clinic"}); err != nil {
			t.Fatal(err)
		}
		kill("clinic")
		if res := b.do("POST", "/console/dead-letters/replay", url.Values{"id": form["id"]}); res.code != http.StatusForbidden {
			t.Errorf("replay all without CSRF: %d", res.code)
		}
		res := b.do("POST", "/console/dead-letters/replay", form)
		if res.code != http.StatusSeeOther {
			t.Fatalf("replay all: %d %s", res.code, res.body)
		}
		dl, _ := st.DeadLetters(ctx, "")
		if len(dl) != 1 || dl[0].ClientID != "c3" {
			t.Errorf("dead letters after replaying the 2 listed: %+v", dl)
		}
		if after := b.do("GET", res.header.Get("Location"), nil); !strings.Contains(after.body, "2 dead letters are queued again") {
			t.Errorf("the page after replay all:\n%s", after.body)
		}
		// Again: both are gone by now, and said so.
		res = b.do("POST", "/console/dead-letters/replay", form)
		if after := b.do("GET", res.header.Get("Location"), nil); !strings.Contains(after.body, "0 dead letters are queued again") || !strings.Contains(after.body, "2 of those listed had been replayed already") {
			t.Errorf("replaying the same twice:\n%s", after.body)
		}
		// Bearer callers need no token.
		bearer := r.browser().do("POST", "/console/dead-letters/replay", url.Values{"id": {itoa(dl[0].ID)}}, "Authorization", "Bearer "+adminKey)
		if bearer.code != http.StatusSeeOther {
			t.Errorf("bearer replay all: %d", bearer.code)
		}
		if dl, _ := st.DeadLetters(ctx, ""); len(dl) != 0 {
			t.Errorf("left: %+v", dl)
		}
	})
}

// auditRows counts the rows of the audit page's table.
func auditRows(body string) int { return strings.Count(body, `<td data-label="When">`) }

// TestAuditPage: the audit trail, filtered by caller and time, a page at a
// time; bad filters are named and change nothing; directors may not see
// it; reading it is audited too.
func TestAuditPage(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, st store.Store) {
		r := newRig(t, st)
		ctx := t.Context()
		now := time.Now().UTC()
		for _, e := range []store.AuditEntry{
			{At: now.Add(-time.Hour), Caller: "ops", Role: "admin", Action: "U", Route: "/console/conflicts/{id}/resolve", ResourceType: "conflicts", Records: 1, Status: 303},
			{At: now.Add(-2 * time.Hour), Caller: "state-hie", Role: "hie", Action: "E", Route: "/fhir/$export", Status: 202},
			{At: now.Add(-48 * time.Hour), Caller: "sync", Action: "C", Route: "push", Connection: "clinic", Records: 12, Status: 200},
		} {
			if err := st.AddAudit(ctx, e); err != nil {
				t.Fatal(err)
			}
		}
		b := r.browser()
		b.signIn(adminKey)

		// Without a filter: the last 24 hours (the sign-in too), the old
		// push left out.
		res := b.do("GET", "/console/audit", nil)
		if res.code != 200 || auditRows(res.body) != 3 || !strings.Contains(res.body, "/console/login") || !strings.Contains(res.body, "/fhir/$export") || !strings.Contains(res.body, "/console/conflicts/{id}/resolve") ||
			strings.Contains(res.body, "on clinic") || !strings.Contains(res.body, "in the last 24 hours") {
			t.Fatalf("the audit page: %d, %d rows\n%s", res.code, auditRows(res.body), res.body)
		}
		if !strings.Contains(res.body, `aria-current="page">Audit`) || !strings.Contains(res.body, "<td data-label=\"Action\">update</td>") {
			t.Errorf("the audit page's navigation or action names:\n%s", res.body)
		}
		// By caller.
		res = b.do("GET", "/console/audit?caller=state-hie", nil)
		if res.code != 200 || auditRows(res.body) != 1 || !strings.Contains(res.body, "/fhir/$export") || !strings.Contains(res.body, `value="state-hie"`) {
			t.Errorf("filtered by caller: %d, %d rows\n%s", res.code, auditRows(res.body), res.body)
		}
		// From a date three days ago to ten minutes ago: the push too, with
		// its connection; not the console's own entries of this test.
		since, until := now.Add(-72*time.Hour).Format("2006-01-02"), now.Add(-10*time.Minute).Format(time.RFC3339)
		res = b.do("GET", "/console/audit?since="+since+"&until="+url.QueryEscape(until), nil)
		if res.code != 200 || auditRows(res.body) != 3 || !strings.Contains(res.body, "on clinic") {
			t.Errorf("since %s until %s: %d, %d rows", since, until, res.code, auditRows(res.body))
		}
		// A window that holds only the push, as the form's picker sends it.
		res = b.do("GET", "/console/audit?since="+url.QueryEscape(now.Add(-50*time.Hour).Format("2006-01-02T15:04"))+"&until="+url.QueryEscape(now.Add(-47*time.Hour).Format("2006-01-02T15:04")), nil)
		if res.code != 200 || auditRows(res.body) != 1 || !strings.Contains(res.body, "on clinic") {
			t.Errorf("a window around the push: %d, %d rows", res.code, auditRows(res.body))
		}
		// Nothing matches: said so.
		res = b.do("GET", "/console/audit?caller=nobody", nil)
		if res.code != 200 || auditRows(res.body) != 0 || !strings.Contains(res.body, "No entries match") {
			t.Errorf("no match: %d\n%s", res.code, res.body)
		}

		// Bad filters: 400, each named, the form shows what was typed.
		for _, c := range []struct{ query, want string }{
			{"since=last+tuesday", "From is not a date and time"},
			{"until=2026-13-45", "To is not a date and time"},
			{"since=2026-12-02&until=2026-12-01", "To is before From"},
			{"after=-4", "The page link is damaged"},
		} {
			res := b.do("GET", "/console/audit?"+c.query, nil)
			if res.code != http.StatusBadRequest || !strings.Contains(res.body, c.want) || auditRows(res.body) != 0 {
				t.Errorf("%s: %d, want 400 saying %q\n%s", c.query, res.code, c.want, res.body)
			}
		}
		if res := b.do("GET", "/console/audit?since=last+tuesday", nil); !strings.Contains(res.body, `value="last tuesday"`) {
			t.Errorf("the form does not show back what was typed:\n%s", res.body)
		}

		// A page at a time: 105 entries of one caller, 100 then 5.
		for i := range 105 {
			if err := st.AddAudit(ctx, store.AuditEntry{At: now.Add(-30 * time.Minute).Add(time.Duration(i) * time.Millisecond), Caller: "pager", Role: "specialist", Action: "R", Route: "/api/v1/clients", Status: 200}); err != nil {
				t.Fatal(err)
			}
		}
		res = b.do("GET", "/console/audit?caller=pager", nil)
		next := regexp.MustCompile(`href="(/console/audit\?[^"]+)" rel="next"`).FindStringSubmatch(res.body)
		if res.code != 200 || auditRows(res.body) != 100 || next == nil {
			t.Fatalf("the first page of 105: %d, %d rows, next link %v", res.code, auditRows(res.body), next)
		}
		res = b.do("GET", html.UnescapeString(next[1]), nil)
		if res.code != 200 || auditRows(res.body) != 5 || strings.Contains(res.body, `rel="next"`) || !strings.Contains(res.body, "First page") {
			t.Errorf("the second page: %d, %d rows\n%s", res.code, auditRows(res.body), res.body)
		}

		// Reading the trail is in the trail.
		got, err := st.Audit(ctx, store.AuditQuery{Caller: "ops"})
		if err != nil {
			t.Fatal(err)
		}
		reads := 0
		for _, e := range got {
			if e.Route == "/console/audit" {
				reads++
			}
		}
		if reads < 8 {
			t.Errorf("%d reads of /console/audit audited, want every one", reads)
		}

		// For scripts, a bearer admin key; a director may not.
		if res := r.browser().do("GET", "/console/audit?caller=state-hie", nil, "Authorization", "Bearer "+adminKey); res.code != 200 || auditRows(res.body) != 1 {
			t.Errorf("bearer admin: %d", res.code)
		}
		if res := r.browser().do("GET", "/console/audit", nil, "Authorization", "Bearer "+directorKey); res.code != http.StatusForbidden || auditRows(res.body) != 0 {
			t.Errorf("director: %d, want 403", res.code)
		}
	})
}

// TestFailedSignInsAreThrottled: ten wrong keys from one address, then
// that address is refused for a while (429 with Retry-After), the right
// key too, while another address signs in; once the wait is over it may
// sign in again. Each refusal is in the audit trail.
func TestFailedSignInsAreThrottled(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, st store.Store) {
		r := newRig(t, st)
		b := r.browser()
		b.addr = "198.51.100.7:50123"
		for i := range 10 {
			if res := b.signIn("not-a-key"); res.code != http.StatusUnauthorized {
				t.Fatalf("wrong key %d: %d, want 401", i+1, res.code)
			}
		}
		res := b.signIn(adminKey)
		ra, _ := strconv.Atoi(res.header.Get("Retry-After"))
		if res.code != http.StatusTooManyRequests || ra < 1 || ra > 6 || !strings.Contains(res.body, "Too many failed sign-ins") || !strings.Contains(res.body, "Wait") {
			t.Fatalf("the right key after 10 wrong ones: %d, Retry-After %q\n%s", res.code, res.header.Get("Retry-After"), res.body)
		}
		if _, ok := res.set["ipsfhir_console"]; ok {
			t.Fatal("a throttled sign-in got a session")
		}
		// The same port or another: the address counts, not the connection.
		b2 := r.browser()
		b2.addr = "198.51.100.7:50999"
		if res := b2.signIn(adminKey); res.code != http.StatusTooManyRequests {
			t.Errorf("the same address from another port: %d, want 429", res.code)
		}
		// Another address is not held up.
		other := r.browser()
		other.addr = "203.0.113.9:40000"
		if res := other.signIn(adminKey); res.code != http.StatusSeeOther {
			t.Errorf("another address: %d, want 303 (signed in)", res.code)
		}
		// After the wait, one more try is allowed, and the right key works.
		r.clock.Add(int64(7 * time.Second))
		if res := b.signIn(adminKey); res.code != http.StatusSeeOther {
			t.Errorf("after the wait: %d, want 303", res.code)
		}
		es, err := st.Audit(t.Context(), store.AuditQuery{})
		if err != nil {
			t.Fatal(err)
		}
		throttled := 0
		for _, e := range es {
			if e.Route == "/console/login" && e.Status == http.StatusTooManyRequests && e.Caller == "" {
				throttled++
			}
		}
		if throttled != 2 {
			t.Errorf("%d throttled sign-ins in the audit trail, want 2", throttled)
		}
	})
}

// TestReadinessCheckFromTheConsole: an admin runs a connection's readiness
// check from its page (here the check of Epic's saved statement, offline);
// the page then shows the verdict and every result, the run is audited,
// and the form needs its CSRF token; directors, unknown connections and a
// check that cannot be described are each refused or explained.
func TestReadinessCheckFromTheConsole(t *testing.T) {
	t.Parallel()
	epic, err := os.ReadFile(filepath.Join("..", "..", "testdata", "ehr-capabilities", "epic-r4-sandbox-2026-07.json"))
	if err != nil {
		t.Fatal(err)
	}
	var runs atomic.Int32
	release := make(chan struct{}) // holds the first run of clinic until the test lets it go
	st := sqliteStore(t)
	check1 := func(ctx context.Context, name string) (*check.Report, error) {
		if runs.Add(1) == 1 {
			<-release
		}
		if name == "down-clinic" {
			return check.Run(ctx, check.Options{}) // neither a statement nor a base URL
		}
		return check.Run(ctx, check.Options{Statement: epic})
	}
	r := newRig(t, st, func(o *console.Options) { o.Check = check1 })
	want, err := check.Run(t.Context(), check.Options{Statement: epic})
	if err != nil {
		t.Fatal(err)
	}
	b := r.browser()
	b.signIn(adminKey)
	page := b.do("GET", "/console/connections/clinic", nil)
	if page.code != 200 || !strings.Contains(page.body, "No readiness check of this connection was run") || !strings.Contains(page.body, "Run the readiness check") {
		t.Fatalf("before a check: %d\n%s", page.code, page.body)
	}
	// Without the form's token: nothing runs.
	if res := b.do("POST", "/console/connections/clinic/check", url.Values{}); res.code != http.StatusForbidden || runs.Load() != 0 {
		t.Errorf("a check without the CSRF token: %d, %d runs", res.code, runs.Load())
	}
	token := csrf(t, page.body)
	res := b.do("POST", "/console/connections/clinic/check", url.Values{"csrf": {token}})
	if res.code != http.StatusSeeOther || res.header.Get("Location") != "/console/connections/clinic?check=started#check" {
		t.Fatalf("run the check: %d %q", res.code, res.header.Get("Location"))
	}
	// It runs in the background: the page says so and reloads itself;
	// another administrator pressing the button meanwhile starts nothing.
	page = b.do("GET", "/console/connections/clinic?check=started", nil)
	if !strings.Contains(page.body, "<strong>Running</strong>") || !strings.Contains(page.body, "by ops") || !strings.Contains(page.body, `<meta http-equiv="refresh" content="5">`) {
		t.Errorf("while the check runs, the page lacks its state or its reload:\n%s", page.body)
	}
	if res := b.do("POST", "/console/connections/clinic/check", url.Values{"csrf": {token}}); res.header.Get("Location") != "/console/connections/clinic?check=running#check" {
		t.Errorf("a second press while it runs: %q", res.header.Get("Location"))
	}
	close(release)
	page = waitCheckDone(t, b, "clinic")
	verdict := "Not ready"
	if want.Ready {
		verdict = "Ready: nothing blocks sync"
	}
	if !strings.Contains(page.body, verdict) || !strings.Contains(page.body, "by ops") || strings.Contains(page.body, `http-equiv="refresh"`) {
		t.Errorf("after the check, the page lacks %q or who ran it, or still reloads:\n%s", verdict, page.body)
	}
	for _, res := range want.Results {
		if !strings.Contains(page.body, "<code>"+res.ID+"</code>") {
			t.Errorf("the page lacks the result %s", res.ID)
		}
	}
	// The report is stored: a console started afresh on the same store (a
	// restart, another replica) shows it.
	again := r.restarted(func(o *console.Options) { o.Check = check1 }).browser()
	again.signIn(adminKey)
	if p := again.do("GET", "/console/connections/clinic", nil); !strings.Contains(p.body, verdict) || !strings.Contains(p.body, "<code>"+want.Results[0].ID+"</code>") {
		t.Errorf("after a restart the check's results are gone:\n%s", p.body)
	}
	// A connection whose check cannot be described: said so, no report.
	b.do("POST", "/console/connections/down-clinic/check", url.Values{"csrf": {token}})
	if page := waitCheckDone(t, b, "down-clinic"); !strings.Contains(page.body, "cannot describe a check") {
		t.Errorf("a check that cannot be described:\n%s", page.body)
	}
	// Unknown connection; a director; a bearer admin (scripts).
	if res := b.do("POST", "/console/connections/nowhere/check", url.Values{"csrf": {token}}); res.code != http.StatusNotFound {
		t.Errorf("an unknown connection: %d, want 404", res.code)
	}
	if res := r.browser().do("POST", "/console/connections/clinic/check", url.Values{}, "Authorization", "Bearer "+directorKey); res.code != http.StatusForbidden {
		t.Errorf("a director: %d, want 403", res.code)
	}
	if res := r.browser().do("POST", "/console/connections/clinic/check", url.Values{}, "Authorization", "Bearer "+adminKey); res.code != http.StatusSeeOther {
		t.Errorf("a bearer admin: %d, want 303", res.code)
	}
	waitCheckDone(t, b, "clinic")
	if n := runs.Load(); n != 3 {
		t.Errorf("%d checks run, want 3 (clinic twice, down-clinic once)", n)
	}
	es, err := st.Audit(t.Context(), store.AuditQuery{Caller: "ops"})
	if err != nil {
		t.Fatal(err)
	}
	audited := 0
	for _, e := range es {
		if e.Route == "/console/connections/{name}/check" && e.Status == http.StatusSeeOther {
			audited++
		}
	}
	if audited != 4 {
		t.Errorf("%d presses of the check button in the audit trail, want 4 (one while a check ran)", audited)
	}

	// A console that cannot run checks offers no button.
	st2 := sqliteStore(t)
	r2 := newRig(t, st2)
	b2 := r2.browser()
	b2.signIn(adminKey)
	if page := b2.do("GET", "/console/connections/clinic", nil); strings.Contains(page.body, "Run the readiness check") || !strings.Contains(page.body, "ipsfhir check --config FILE --connection clinic") {
		t.Errorf("without Check: %s", page.body)
	}
}

// waitCheckDone reloads a connection's page until its readiness check is
// no longer running, as the page itself does, and returns the page.
func waitCheckDone(t *testing.T, b *browser, name string) reply {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; {
		page := b.do("GET", "/console/connections/"+name, nil)
		if !strings.Contains(page.body, "<strong>Running</strong>") {
			return page
		}
		if time.Now().After(deadline) {
			t.Fatalf("the readiness check of %s never finished:\n%s", name, page.body)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestEnableAndDisableFromTheConsole: a disabled connection is enabled only
// after its plan is shown (from a readiness check) and confirmed; an
// enabled one is disabled after confirming; the choice can be given back
// to the configuration file; CSRF, roles and the audit trail hold.
func TestEnableAndDisableFromTheConsole(t *testing.T) {
	t.Parallel()
	epic, err := os.ReadFile(filepath.Join("..", "..", "testdata", "ehr-capabilities", "epic-r4-sandbox-2026-07.json"))
	if err != nil {
		t.Fatal(err)
	}
	type call struct {
		name    string
		enabled *bool
		by      string
	}
	var (
		mu       sync.Mutex
		calls    []call
		settings = map[string]*store.ConnectionSetting{}
	)
	inFile := map[string]bool{"clinic": true, "down-clinic": true, "later-clinic": false}
	st := sqliteStore(t)
	r := newRig(t, st, func(o *console.Options) {
		o.Check = func(ctx context.Context, name string) (*check.Report, error) {
			return check.Run(ctx, check.Options{Statement: epic})
		}
		o.Connections = func() []console.Connection {
			mu.Lock()
			defer mu.Unlock()
			var out []console.Connection
			for _, name := range []string{"clinic", "down-clinic", "later-clinic"} {
				cn := console.Connection{Name: name, InFile: inFile[name], Enabled: inFile[name], Setting: settings[name]}
				if cn.Setting != nil {
					cn.Enabled = cn.Setting.Enabled
				}
				out = append(out, cn)
			}
			return out
		}
		o.SetEnabled = func(_ context.Context, name string, enabled *bool, by string) error {
			mu.Lock()
			defer mu.Unlock()
			calls = append(calls, call{name, enabled, by})
			if enabled == nil {
				delete(settings, name)
			} else {
				settings[name] = &store.ConnectionSetting{Name: name, Enabled: *enabled, By: by, At: time.Date(2026, 12, 3, 16, 0, 0, 0, time.UTC)}
			}
			return nil
		}
	})
	lastCall := func() (call, int) {
		mu.Lock()
		defer mu.Unlock()
		if len(calls) == 0 {
			return call{}, 0
		}
		return calls[len(calls)-1], len(calls)
	}
	b := r.browser()
	b.signIn(adminKey)
	page := b.do("GET", "/console/connections/later-clinic", nil)
	if !strings.Contains(page.body, "<strong>Disabled</strong>, as the configuration file says (<code>enabled: false</code>)") ||
		!strings.Contains(page.body, `href="/console/connections/later-clinic/enable"`) {
		t.Fatalf("a connection disabled in the file:\n%s", page.body)
	}
	token := csrf(t, page.body)
	// No check run yet: no plan, so nothing to confirm.
	page = b.do("GET", "/console/connections/later-clinic/enable", nil)
	if page.code != 200 || !strings.Contains(page.body, "No readiness check of this connection was run yet") || strings.Contains(page.body, "Yes, enable") {
		t.Fatalf("the enable page before any check: %d\n%s", page.code, page.body)
	}
	if !strings.Contains(page.body, `action="/console/connections/later-clinic/check"`) {
		t.Errorf("the enable page offers no readiness check:\n%s", page.body)
	}
	b.do("POST", "/console/connections/later-clinic/check", url.Values{"csrf": {token}})
	waitCheckDone(t, b, "later-clinic")
	page = b.do("GET", "/console/connections/later-clinic/enable", nil)
	for _, want := range []string{"What goes into the chart, and how", "From the readiness check run", "by ops", "Yes, enable later-clinic", "every client"} {
		if !strings.Contains(page.body, want) {
			t.Errorf("the enable page after a check lacks %q:\n%s", want, page.body)
		}
	}
	// Refused: without the form's token, without the confirmation.
	if res := b.do("POST", "/console/connections/later-clinic/enable", url.Values{"confirm": {"yes"}}); res.code != http.StatusForbidden {
		t.Errorf("enable without the CSRF token: %d", res.code)
	}
	if res := b.do("POST", "/console/connections/later-clinic/enable", url.Values{"csrf": {token}}); res.code != http.StatusBadRequest || !strings.Contains(res.body, "Nothing was changed") {
		t.Errorf("enable without confirming: %d\n%s", res.code, res.body)
	}
	if _, n := lastCall(); n != 0 {
		t.Fatalf("a refused request changed a connection (%d calls)", n)
	}
	res := b.do("POST", "/console/connections/later-clinic/enable", url.Values{"csrf": {token}, "confirm": {"yes"}})
	if res.code != http.StatusSeeOther || res.header.Get("Location") != "/console/connections/later-clinic?changed=enabled#enabled" {
		t.Fatalf("enable: %d %q", res.code, res.header.Get("Location"))
	}
	if c, n := lastCall(); n != 1 || c.name != "later-clinic" || c.enabled == nil || !*c.enabled || c.by != "ops" {
		t.Errorf("enable called SetEnabled %d times, last %+v", n, c)
	}
	page = b.do("GET", res.header.Get("Location"), nil)
	for _, want := range []string{"The connection is enabled", "enabled from the console by ops", "<code>enabled: false</code>", "Follow the configuration file again", `href="/console/connections/later-clinic/disable"`} {
		if !strings.Contains(page.body, want) {
			t.Errorf("after enabling, the page lacks %q:\n%s", want, page.body)
		}
	}
	// Enabled already: the enable page sends back to the connection.
	if res := b.do("GET", "/console/connections/later-clinic/enable", nil); res.code != http.StatusSeeOther {
		t.Errorf("the enable page of an enabled connection: %d, want 303", res.code)
	}
	// Disabling shows the plan that runs now and what waits, then asks.
	page = b.do("GET", "/console/connections/clinic/disable", nil)
	for _, want := range []string{"stops its pull and push", "What goes into the chart, and how", "1 item waits to be pushed", "Yes, disable clinic"} {
		if !strings.Contains(page.body, want) {
			t.Errorf("the disable page lacks %q:\n%s", want, page.body)
		}
	}
	if res := b.do("POST", "/console/connections/clinic/disable", url.Values{"csrf": {token}, "confirm": {"yes"}}); res.code != http.StatusSeeOther {
		t.Errorf("disable: %d", res.code)
	}
	if c, n := lastCall(); n != 2 || c.name != "clinic" || c.enabled == nil || *c.enabled {
		t.Errorf("disable called SetEnabled %d times, last %+v", n, c)
	}
	if res := b.do("POST", "/console/connections/clinic/follow-file", url.Values{"csrf": {token}}); res.code != http.StatusSeeOther || res.header.Get("Location") != "/console/connections/clinic?changed=file#enabled" {
		t.Errorf("follow the file: %d %q", res.code, res.header.Get("Location"))
	}
	if c, n := lastCall(); n != 3 || c.name != "clinic" || c.enabled != nil {
		t.Errorf("follow-file called SetEnabled %d times, last %+v", n, c)
	}
	// Unknown connection, a director, a bearer admin.
	if res := b.do("POST", "/console/connections/nowhere/enable", url.Values{"csrf": {token}, "confirm": {"yes"}}); res.code != http.StatusNotFound {
		t.Errorf("an unknown connection: %d", res.code)
	}
	for _, path := range []string{"/console/connections/clinic/disable", "/console/connections/later-clinic/enable"} {
		if res := r.browser().do("GET", path, nil, "Authorization", "Bearer "+directorKey); res.code != http.StatusForbidden {
			t.Errorf("a director on %s: %d", path, res.code)
		}
	}
	if res := r.browser().do("POST", "/console/connections/later-clinic/disable", url.Values{"confirm": {"yes"}}, "Authorization", "Bearer "+adminKey); res.code != http.StatusSeeOther {
		t.Errorf("a bearer admin disabling: %d", res.code)
	}
	if _, n := lastCall(); n != 4 {
		t.Errorf("%d changes, want 4", n)
	}
	es, err := st.Audit(t.Context(), store.AuditQuery{Caller: "ops"})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, e := range es {
		if e.Status == http.StatusSeeOther && e.Action == "U" {
			seen[e.Route]++
		}
	}
	if seen["/console/connections/{name}/enable"] != 1 || seen["/console/connections/{name}/disable"] != 2 || seen["/console/connections/{name}/follow-file"] != 1 {
		t.Errorf("changes in the audit trail: %v", seen)
	}
}

// TestResolveConflictKeepsTheChosenSide: with Options.ResolveConflict
// wired to the sync engine, as serve wires it, the conflicts page says what
// each button rewrites; keeping the side not applied writes it into the IPS
// record and queues the client, keeping the applied side only closes, and
// the page after says which; a conflict whose record changed since and a
// whole-resource conflict's EHR side are refused with a page that says why,
// and nothing changes. CSRF and the audit trail are as for every form.
func TestResolveConflictKeepsTheChosenSide(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, st store.Store) {
		ctx := t.Context()
		engine := &syncer.Engine{Store: st}
		r := newRig(t, st, func(o *console.Options) {
			o.ResolveConflict = func(ctx context.Context, id int64, resolution string) (syncer.Resolution, error) {
				return engine.ResolveConflict(ctx, id, resolution, []string{"clinic"})
			}
		})
		const ipsWords, ehrWords = "Work at the bakery", "Work in a kitchen"
		c := &ips.Client{ID: "c3", Patient: ips.Identifier{System: "urn:test", Value: "MRN3"}, EnrolledOn: ips.MustDate("2026-01-05"), Goals: []*ips.Goal{
			{ID: "g1", Description: ipsWords, Status: ips.GoalCancelled, Start: ips.MustDate("2026-02-01")},
		}}
		if _, err := st.SaveClients(ctx, []store.Stored{{Client: c}}, nil); err != nil {
			t.Fatal(err)
		}
		add := func(key, field, ipsValue, ehrValue, winner string) string {
			id, err := st.AddConflict(ctx, store.Conflict{Connection: "clinic", ClientID: "c3", Key: key, Field: field, IPSValue: ipsValue, EHRValue: ehrValue, Winner: winner})
			if err != nil {
				t.Fatal(err)
			}
			return itoa(id)
		}
		goal := "urn:ipsfhir:p:goal|c3/g1"
		desc := add(goal, "description", ipsWords, ehrWords, "ips")       // the IPS side's applied
		status := add(goal, "status", "on-hold", "cancelled", "ehr")      // the EHR's applied
		stale := add(goal, "achievement", "improving", "achieved", "ehr") // the record holds neither
		resource := add("urn:ipsfhir:p:job|c3/j1", "resource", "ipsfhir content 0123456789ab", "changed in the EHR (version 3)", "ips")
		version := func() store.Version {
			_, v, err := st.GetClient(ctx, "c3")
			if err != nil {
				t.Fatal(err)
			}
			return v
		}
		v0 := version()
		depth := func() int { d, _ := st.OutboxDepth(ctx); return d["clinic"] }
		d0 := depth()

		b := r.browser()
		b.signIn(adminKey)
		page := b.do("GET", "/console/conflicts", nil)
		for _, want := range []string{">Keep the IPS value</button>", ">Keep the EHR value</button>", "Keeping a side makes its value stand on both sides",
			"rewrites the IPS record with the EHR value; the next push writes it to the EHR", "rewrites the IPS record with the IPS value; the next push writes it to the EHR",
			"it was applied already: closes the conflict, nothing is rewritten", "cannot be applied automatically: the conflict keeps only a description"} {
			if !strings.Contains(html.UnescapeString(page.body), want) {
				t.Errorf("conflicts page lacks %q", want)
			}
		}
		if strings.Contains(page.body, "Close: keep") || strings.Contains(page.body, "does not rewrite either side") {
			t.Error("the conflicts page still says resolving does not rewrite")
		}
		tok := csrf(t, page.body)
		post := func(id, resolution string, form ...bool) reply {
			v := url.Values{"resolution": {resolution}}
			if len(form) == 0 {
				v.Set("csrf", tok)
			}
			return b.do("POST", "/console/conflicts/"+id+"/resolve", v)
		}
		open := func() map[string]string {
			all, err := st.Conflicts(ctx, "", true)
			if err != nil {
				t.Fatal(err)
			}
			out := map[string]string{}
			for _, cf := range all {
				out[itoa(cf.ID)] = cf.Resolution
			}
			return out
		}

		// Refused: without CSRF; the record changed since; the EHR side of
		// a whole resource. Nothing changes.
		if res := post(desc, "kept-ehr", false); res.code != http.StatusForbidden {
			t.Errorf("without CSRF: %d", res.code)
		}
		if res := post(stale, "kept-ips"); res.code != http.StatusConflict || !strings.Contains(res.body, "The record changed since") || !strings.Contains(html.UnescapeString(res.body), "Nothing was rewritten") {
			t.Errorf("a stale conflict: %d %s", res.code, res.body)
		}
		if res := post(resource, "kept-ehr"); res.code != http.StatusConflict || !strings.Contains(res.body, "Cannot be applied automatically") {
			t.Errorf("kept-ehr of a resource conflict: %d %s", res.code, res.body)
		}
		if v := version(); v != v0 || depth() != d0 {
			t.Errorf("a refused resolution changed the record (version %d → %d) or queued it", v0, v)
		}
		if got := open(); got[desc] != "" || got[stale] != "" || got[resource] != "" {
			t.Errorf("a refused resolution closed a conflict: %v", got)
		}

		// Keeping the side not applied rewrites the IPS record and queues it.
		res := post(desc, "kept-ehr")
		if res.code != http.StatusSeeOther {
			t.Fatalf("kept-ehr: %d %s", res.code, res.body)
		}
		after := b.do("GET", res.header.Get("Location"), nil)
		if !strings.Contains(after.body, "is closed: keep the EHR value (the EHR value was written to the IPS record and is queued for the EHR)") {
			t.Errorf("the page after kept-ehr:\n%s", after.body)
		}
		got, v, _ := st.GetClient(ctx, "c3")
		if got.Goal("g1").Description != ehrWords || v != v0+1 || depth() != d0+1 {
			t.Errorf("after kept-ehr: version %d, outbox %d; want the EHR's description saved and queued", v, depth())
		}

		// Keeping the side applied only closes.
		res = post(status, "kept-ehr")
		if res.code != http.StatusSeeOther {
			t.Fatalf("kept-ehr of the applied side: %d %s", res.code, res.body)
		}
		if after := b.do("GET", res.header.Get("Location"), nil); !strings.Contains(after.body, "(the EHR value was already in place; closed)") {
			t.Errorf("the page after keeping the applied side:\n%s", after.body)
		}
		if v := version(); v != v0+1 {
			t.Errorf("keeping the applied side saved the client again: version %d", v)
		}
		if res := post(desc, "kept-ips"); res.code != http.StatusConflict || !strings.Contains(res.body, "Already resolved") {
			t.Errorf("resolving twice: %d", res.code)
		}
		if got := open(); got[desc] != "kept-ehr" || got[status] != "kept-ehr" || got[stale] != "" {
			t.Errorf("resolutions %v", got)
		}
		entries, _ := st.Audit(ctx, store.AuditQuery{Caller: "ops"})
		n := 0
		for _, e := range entries {
			if e.Route == "/console/conflicts/{id}/resolve" && e.Role == "admin" {
				n++
			}
		}
		if n != 6 {
			t.Errorf("%d resolve requests in the audit trail, want 6 (refused ones too)", n)
		}
	})
}
