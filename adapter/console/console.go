package console

import (
	"context"
	"embed"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/ipsfhir/ipsfhir/adapter/api"
	"github.com/ipsfhir/ipsfhir/adapter/plan"
	"github.com/ipsfhir/ipsfhir/adapter/store"
	"github.com/ipsfhir/ipsfhir/adapter/syncer"
	"github.com/ipsfhir/ipsfhir/conformance/check"
)

// Store is what the console needs of the IPS store: store.Store satisfies
// it. It is the same store the /admin endpoints read and change.
type Store interface {
	OutboxDepth(ctx context.Context) (map[string]int, error)
	OldestPending(ctx context.Context) (map[string]time.Time, error)
	LoadProgress(ctx context.Context, connection string) (store.LoadProgress, error)
	DeadLetters(ctx context.Context, connection string) ([]store.DeadLetter, error)
	Replay(ctx context.Context, id int64) error
	Conflicts(ctx context.Context, connection string, all bool) ([]store.Conflict, error)
	ResolveConflict(ctx context.Context, id int64, resolution string) error
	StartReadinessCheck(ctx context.Context, connection, by string, at time.Time, running time.Duration) error
	FinishReadinessCheck(ctx context.Context, connection string, started, at time.Time, report []byte, problem string) error
	ReadinessCheck(ctx context.Context, connection string) (store.ReadinessCheck, error)
	store.Auditor
}

// Connection is one EHR connection of the configuration.
type Connection struct {
	Name string
	// Enabled says whether it is enabled now: InFile, the configuration
	// file's enabled:, unless Setting, an administrator's choice made in
	// the console, overrides it.
	Enabled bool
	InFile  bool
	Setting *store.ConnectionSetting
}

// Options configure the console.
type Options struct {
	// Store is the IPS store; required.
	Store Store
	// Keys are the API keys that may sign in: those of role admin get the
	// whole console, director the outcomes page; every other role gets
	// 403.
	Keys []api.Key
	// Connections returns every configured EHR connection, enabled or not.
	Connections func() []Connection
	// Status returns how each running connection stands (the sync
	// runner's Snapshot, as /readyz shows it).
	Status func() []syncer.ConnectionStatus
	// Plans returns the sync plan of each connection connected so far, by
	// name (the sync runner's Plans, as /admin serves them).
	Plans func() map[string]*plan.Plan
	// Check, when set, runs the readiness check of a connection by name
	// (as ipsfhir check --config FILE --connection NAME does, without write
	// tests), for the button on the connection's page.
	Check func(ctx context.Context, connection string) (*check.Report, error)
	// SetEnabled, when set, records an administrator's choice to enable
	// (true) or disable (false) a connection by name, or to follow the
	// configuration file again (nil), and applies it (the connection
	// starts or stops): the buttons on the connection's page.
	SetEnabled func(ctx context.Context, connection string, enabled *bool, by string) error
	// ResolveConflict, when set, resolves a conflict in place of
	// Store.ResolveConflict, for the conflicts page's buttons: the chosen
	// side's value is made to stand on both sides (see
	// syncer.Engine.ResolveConflict, whose errors the page explains).
	ResolveConflict func(ctx context.Context, id int64, resolution string) (syncer.Resolution, error)
	// Outcomes, when set, renders the program's own outcomes report page
	// (the page report --html writes) for the outcomes page.
	Outcomes func(ctx context.Context) ([]byte, error)
	// Logger receives the access log and the causes of failures, all
	// patient-free; nil discards them.
	Logger *slog.Logger
	// SecureCookies marks the session cookie Secure even on a request that
	// did not arrive over TLS: for a service behind a TLS-terminating
	// proxy (server.publicUrl is https).
	SecureCookies bool
	// IdleTimeout ends a session unused this long (default 30 minutes);
	// MaxAge ends any session this old (default 12 hours).
	IdleTimeout, MaxAge time.Duration
	// Now is the clock (tests); nil is time.Now.
	Now func() time.Time
}

// Prefix is where the console is served.
const Prefix = "/console/"

// Cookie names. Both are scoped to Prefix.
const (
	sessionCookie = "ipsfhir_console"
	loginCookie   = "ipsfhir_console_login" // the sign-in form's CSRF token
)

// csp is the Content-Security-Policy of every console response: only the
// console's own scripts, styles and images, no inline code, no framing.
const csp = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; " +
	"form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// console holds the handler's dependencies; handlers are its methods.
type console struct {
	store      Store
	keys       []api.Key
	conns      func() []Connection
	status     func() []syncer.ConnectionStatus
	outcomes   func(ctx context.Context) ([]byte, error)
	plans      func() map[string]*plan.Plan
	check      func(ctx context.Context, connection string) (*check.Report, error)
	setEnabled func(ctx context.Context, connection string, enabled *bool, by string) error
	// background runs the readiness checks started from the console.
	background sync.WaitGroup
	log        *slog.Logger
	secure     bool
	now        func() time.Time
	sessions   *sessions
	throttle   *throttle
	pages      map[string]*template.Template
	fragments  *template.Template

	// resolveConflict is Options.ResolveConflict.
	resolveConflict func(ctx context.Context, id int64, resolution string) (syncer.Resolution, error)
}

// access is what a route needs of the caller.
type access int

const (
	public      access = iota + 1 // the sign-in page and the assets
	signedIn                      // any role that may use the console
	adminOnly                     // connections, dead letters, conflicts, audit
	outcomesFor                   // admin and director
)

func (a access) allows(r api.Role) bool {
	switch a {
	case public:
		return true
	case signedIn, outcomesFor:
		return r == api.RoleAdmin || r == api.RoleDirector
	case adminOnly:
		return r == api.RoleAdmin
	}
	return false
}

// New returns the console's handler, to be mounted at Prefix. Every
// request is access-logged. Every one but for the assets, the empty
// sign-in form and the overview's live part (which console.js fetches
// every few seconds; it holds what the overview showed) is recorded in the
// audit trail (api.Audited) by route template, caller and status: sign-ins
// that failed (401, no caller) and requests refused (403) too.
func New(o Options) (http.Handler, error) {
	c := &console{store: o.Store, keys: o.Keys, conns: o.Connections, status: o.Status, outcomes: o.Outcomes, plans: o.Plans, check: o.Check, resolveConflict: o.ResolveConflict, setEnabled: o.SetEnabled, log: o.Logger, secure: o.SecureCookies, now: o.Now}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.now == nil {
		c.now = time.Now
	}
	if c.conns == nil {
		c.conns = func() []Connection { return nil }
	}
	if c.plans == nil {
		c.plans = func() map[string]*plan.Plan { return nil }
	}
	if c.status == nil {
		c.status = func() []syncer.ConnectionStatus { return nil }
	}
	idle, max := o.IdleTimeout, o.MaxAge
	if idle <= 0 {
		idle = 30 * time.Minute
	}
	if max <= 0 {
		max = 12 * time.Hour
	}
	c.sessions = newSessions(idle, max, c.now)
	c.throttle = newThrottle(c.now)
	if err := c.parseTemplates(); err != nil {
		return nil, err
	}
	static, err := fs.Sub(staticFS, "static")
	if err != nil {
		return nil, err
	}
	assets := http.StripPrefix(Prefix+"static/", http.FileServerFS(static))

	mux := http.NewServeMux()
	c.route(mux, "GET /console/static/{file}", public, func(w http.ResponseWriter, r *http.Request, _ *request) {
		w.Header().Set("Cache-Control", "no-cache")
		assets.ServeHTTP(w, r)
	})
	c.route(mux, "GET /console/login", public, c.loginForm)
	c.route(mux, "POST /console/login", public, c.login)
	c.route(mux, "POST /console/signout", signedIn, c.signOut)
	c.route(mux, "GET /console/{$}", signedIn, c.home)
	c.route(mux, "GET /console/overview/live", adminOnly, c.overviewLive)
	c.route(mux, "GET /console/connections/{name}", adminOnly, c.connection)
	c.route(mux, "POST /console/connections/{name}/check", adminOnly, c.runCheck)
	c.route(mux, "GET /console/connections/{name}/enable", adminOnly, c.toggleForm(true))
	c.route(mux, "POST /console/connections/{name}/enable", adminOnly, c.toggle(true))
	c.route(mux, "GET /console/connections/{name}/disable", adminOnly, c.toggleForm(false))
	c.route(mux, "POST /console/connections/{name}/disable", adminOnly, c.toggle(false))
	c.route(mux, "POST /console/connections/{name}/follow-file", adminOnly, c.followFile)
	c.route(mux, "GET /console/dead-letters", adminOnly, c.deadLetters)
	c.route(mux, "POST /console/dead-letters/{id}/replay", adminOnly, c.replay)
	c.route(mux, "POST /console/dead-letters/replay", adminOnly, c.replayAll)
	c.route(mux, "GET /console/conflicts", adminOnly, c.conflicts)
	c.route(mux, "POST /console/conflicts/{id}/resolve", adminOnly, c.resolve)
	c.route(mux, "GET /console/audit", adminOnly, c.audit)
	c.route(mux, "GET /console/outcomes", outcomesFor, c.outcomesIndex)
	c.route(mux, "GET /console/outcomes/report", outcomesFor, c.outcomesReport)
	mux.HandleFunc("/console/", func(w http.ResponseWriter, r *http.Request) {
		c.errorPage(w, r, nil, http.StatusNotFound, "Not found", "There is no such page in the console.")
	})
	h := api.AccessLog(c.log, "console request", "panic in console handler", func(w http.ResponseWriter) {
		http.Error(w, "internal error", http.StatusInternalServerError)
	})(mux)
	return headers(h), nil
}

// headers sets the security headers of every console response.
func headers(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", csp)
		h.Set("X-Frame-Options", "DENY")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		h.Set("Cache-Control", "no-store")
		next.ServeHTTP(w, r)
	})
}

// request is what a handler knows of the caller: its key, and its session
// when it signed in with the form (nil with Authorization: Bearer).
type request struct {
	caller  api.Key
	session *session
}

// csrf is the token the page's forms carry: "" without a session (a
// bearer caller needs none).
func (q *request) csrf() string {
	if q == nil || q.session == nil {
		return ""
	}
	return q.session.csrf
}

// route registers a handler. The wrapper names the route for the access
// log and the audit trail (its path template, never the path), identifies
// the caller by bearer key or session, checks the role, and checks the CSRF
// token of every POST made with a session.
func (c *console) route(mux *http.ServeMux, pattern string, need access, h func(http.ResponseWriter, *http.Request, *request)) {
	_, tpl, _ := strings.Cut(pattern, " ")
	tpl = strings.TrimSuffix(tpl, "{$}")
	handler := http.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := api.RecordOf(r.Context())
		rec.Route = tpl
		if need == public {
			h(w, r, nil)
			return
		}
		q, ok := c.identify(w, r)
		if !ok {
			return
		}
		rec.Caller = q.caller
		if !need.allows(q.caller.Role) {
			c.forbidden(w, r, q)
			return
		}
		if r.Method == http.MethodPost {
			r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
			if q.session != nil && !sameToken(r.PostFormValue("csrf"), q.session.csrf) {
				c.errorPage(w, r, q, http.StatusForbidden, "This form has expired",
					"The form did not carry this session's security token, so nothing was changed. Go back, reload the page and try again.")
				return
			}
		}
		h(w, r, q)
	}))
	if !unaudited[pattern] {
		handler = api.Audited(c.store, c.log, nil)(handler)
	}
	mux.Handle(pattern, handler)
}

// unaudited are the routes the audit trail leaves out: they read nothing
// (the assets, the empty sign-in form) or repeat what an audited page read
// (the overview's live part).
var unaudited = map[string]bool{
	"GET /console/static/{file}": true,
	"GET /console/login":         true,
	"GET /console/overview/live": true,
}

// identify finds the caller: an Authorization: Bearer key (for scripts),
// else the session cookie. Without either, a GET is sent to the sign-in
// form and anything else refused; a bad key gets 401.
func (c *console) identify(w http.ResponseWriter, r *http.Request) (*request, bool) {
	if r.Header.Get("Authorization") != "" {
		k, aerr := api.Authenticate(c.keys, r)
		if aerr != nil {
			w.Header().Set("WWW-Authenticate", aerr.Challenge)
			c.errorPage(w, r, nil, http.StatusUnauthorized, "Not signed in", aerr.Message)
			return nil, false
		}
		return &request{caller: k}, true
	}
	if ck, err := r.Cookie(sessionCookie); err == nil {
		if s := c.sessions.get(ck.Value); s != nil {
			return &request{caller: s.caller, session: s}, true
		}
		// A session that ended (idle, too old, signed out, a restart):
		// forget the cookie and say so on the sign-in form.
		c.clearCookie(w, r, sessionCookie)
		if r.Method == http.MethodGet || r.Method == http.MethodHead {
			http.Redirect(w, r, Prefix+"login?ended=1", http.StatusSeeOther)
		} else {
			c.errorPage(w, r, nil, http.StatusForbidden, "Your session has ended", "Sign in again; nothing was changed.")
		}
		return nil, false
	}
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		http.Redirect(w, r, Prefix+"login", http.StatusSeeOther)
	} else {
		c.errorPage(w, r, nil, http.StatusForbidden, "Not signed in", "Sign in first; nothing was changed.")
	}
	return nil, false
}

// secureRequest reports whether cookies set in answer to r must be Secure.
func (c *console) secureRequest(r *http.Request) bool {
	return c.secure || r.TLS != nil
}

func (c *console) setCookie(w http.ResponseWriter, r *http.Request, name, value string, maxAge time.Duration) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: value, Path: Prefix, MaxAge: int(maxAge / time.Second),
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: c.secureRequest(r)})
}

func (c *console) clearCookie(w http.ResponseWriter, r *http.Request, name string) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: "", Path: Prefix, MaxAge: -1,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: c.secureRequest(r)})
}

// internalError logs what failed (its kind, never a value) and shows a
// page that says nothing about it.
func (c *console) internalError(w http.ResponseWriter, r *http.Request, q *request, op string, err error) {
	kind := "internal"
	status := http.StatusInternalServerError
	msg := "Something went wrong on the server; it is in the service log. Try again in a moment."
	if isUnavailable(err) {
		kind, status = "store-unavailable", http.StatusServiceUnavailable
		msg = "The store cannot be reached right now. Try again in a moment."
	}
	c.log.LogAttrs(r.Context(), slog.LevelError, "console request failed", slog.String("op", op),
		api.RecordOf(r.Context()).RouteAttr(), slog.String("error_kind", kind))
	c.errorPage(w, r, q, status, "Something went wrong", msg)
}
