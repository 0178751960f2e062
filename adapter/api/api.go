package api

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/gorilla/mux"

	"github.com/ipsfhir/ipsfhir/adapter/store"
	"github.com/ipsfhir/ipsfhir/ips"
)

// Store is what the API needs of the IPS store: store.Store satisfies it.
type Store interface {
	GetClient(ctx context.Context, id string) (*ips.Client, store.Version, error)
	ListClients(ctx context.Context, after string, limit int) ([]store.Stored, error)
	SaveClients(ctx context.Context, clients []store.Stored, connections []string) ([]store.Version, error)
}

// Role is what an API key's holder is allowed to do.
type Role string

// Roles, as in the configuration's apiKeys[].role.
const (
	RoleSpecialist Role = "specialist" // reads and writes IPS records
	RoleClinician  Role = "clinician"  // reads IPS records
	RoleAdmin      Role = "admin"      // reads IPS records
	RoleHIE        Role = "hie"        // no IPS records: de-identified outcomes only, served elsewhere
	RoleDirector   Role = "director"   // no IPS records: the program's outcomes only (the console's outcomes page, MeasureReport)
)

// Key is one caller: its name (for the access log), role, and the SHA-256
// of its key. The key itself is never held.
type Key struct {
	Name   string
	Role   Role
	SHA256 []byte
	// PseudonymScope is, for an hie caller, the scope of the pseudonyms in
	// its de-identified export (the /fhir facade's): callers of one scope
	// get the same pseudonyms, of different scopes unlinkable ones. ""
	// means the caller's own Name.
	PseudonymScope string
}

// Scope returns the caller's pseudonym scope: PseudonymScope, or Name.
func (k Key) Scope() string {
	if k.PseudonymScope != "" {
		return k.PseudonymScope
	}
	return k.Name
}

// Options configure the API handler.
type Options struct {
	// Store holds the records; required.
	Store Store
	// Connections returns the names of the enabled EHR connections. Every
	// write enqueues an outbox item for each, in the same transaction as
	// the record. It is called on each write, so a connection enabled or
	// disabled while the server runs takes effect at once. nil means none.
	Connections func() []string
	// Keys are the callers let in. With none, every request gets 401.
	Keys []Key
	// Logger receives one access-log line per request and the causes of
	// 500s, all patient-free. nil discards them.
	Logger *slog.Logger
	// Admin, when set, serves /admin/… for the admin role: connections and
	// their sync plans, dead letters and their replay, conflicts.
	Admin *Admin
	// Metrics, when set, is served at /metrics for the admin role (a
	// Prometheus scraper authenticates with an admin key).
	Metrics http.Handler
	// Audit, when set, keeps the audit trail: every request but to
	// openapi.json is recorded (see Audited), and admins read the trail
	// at /admin/audit.
	Audit store.Auditor
	// CORSOrigins are the origins of the browser apps allowed to call
	// /api/v1 (config server.corsOrigins), scheme://host[:port]: they get
	// CORS headers (CORS). /admin and /metrics get none. nil: nobody.
	CORSOrigins []string
}

// Limits of the API.
const (
	// MaxBodyBytes bounds a request body: one client with years of notes
	// is well under 1 MiB.
	MaxBodyBytes = 4 << 20
	// DefaultPageSize and MaxPageSize bound GET /api/v1/clients.
	DefaultPageSize = 100
	MaxPageSize     = 1000
	// writeAttempts is how often an unconditional write is tried when
	// another write to the same client lands between its read and its save.
	writeAttempts = 3
	// storeRetryAfter is the Retry-After of a 503 while the store cannot
	// be reached: about as long as a database restart or failover takes.
	storeRetryAfter = 5 * time.Second
)

// api holds the handler's dependencies; handlers are its methods.
type api struct {
	store       Store
	connections func() []string
	keys        []Key
	log         *slog.Logger
	admin       *Admin
	metrics     http.Handler
	audit       store.Auditor
}

// New returns the handler of the records API, /api/v1/… . Every request
// but GET /api/v1/openapi.json needs an API key (Authorization: Bearer KEY)
// whose role allows it.
func New(o Options) http.Handler {
	a := &api{store: o.Store, connections: o.Connections, keys: o.Keys, log: o.Logger, admin: o.Admin, metrics: o.Metrics, audit: o.Audit}
	if a.connections == nil {
		a.connections = func() []string { return nil }
	}
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	r := a.router()
	// Authentication comes before routing, so that without a key nobody
	// learns which paths exist; authorization is per route. Only the API's
	// description is public: it lists the paths anyway.
	authed := a.authenticate(r)
	accessLog := AccessLog(a.log, "http request", "panic in API handler", func(w http.ResponseWriter) {
		writeIssues(w, http.StatusInternalServerError, internalIssue())
	})
	h := http.Handler(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path == openAPIPath {
			r.ServeHTTP(w, req)
			return
		}
		authed.ServeHTTP(w, req)
	}))
	if a.audit != nil {
		h = Audited(a.audit, a.log, func(route string) bool { return route == openAPIPath })(h)
	}
	// CORS comes before authentication (browsers send preflights without
	// the key) and before the audit trail (a preflight reads nothing and
	// names no caller). Only the records API takes calls from browser apps.
	cors := CORS{Origins: o.CORSOrigins, Methods: corsMethods, Headers: CORSHeaders, Expose: CORSExpose, PreflightRoute: "/api/v1/{preflight}"}.Handler(h)
	return accessLog(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path == "/api/v1" || strings.HasPrefix(req.URL.Path, "/api/v1/") {
			cors.ServeHTTP(w, req)
			return
		}
		h.ServeHTTP(w, req)
	}))
}

// corsMethods are the methods a CORS preflight to /api/v1 allows.
var corsMethods = []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut}

// router routes every request New serves; openapi.json describes each
// route, and a test holds the two together.
func (a *api) router() *mux.Router {
	r := mux.NewRouter()
	r.NotFoundHandler = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		writeIssues(w, http.StatusNotFound, issue("not-found", "", "no such resource in the records API"))
	})
	r.MethodNotAllowedHandler = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		writeIssues(w, http.StatusMethodNotAllowed, issue("not-supported", "", "this method is not allowed on this resource"))
	})

	a.handle(r, http.MethodGet, openAPIPath, permPublic, serveOpenAPI)
	a.handle(r, http.MethodGet, "/api/v1/clients", permRead, a.listClients)
	a.handle(r, http.MethodPost, "/api/v1/clients", permWrite, a.createClient)
	a.handle(r, http.MethodGet, "/api/v1/clients/{id}", permRead, a.getClient)
	a.handle(r, http.MethodPut, "/api/v1/clients/{id}", permWrite, a.putClient)
	a.handle(r, http.MethodPost, "/api/v1/clients/{id}/accept", permWrite, a.acceptClient)
	a.handle(r, http.MethodPost, "/api/v1/clients/{id}/decline", permWrite, a.declineClient)
	for _, k := range kinds {
		a.handle(r, http.MethodGet, "/api/v1/clients/{id}/"+k.plural, permRead, a.listRecords(k))
		a.handle(r, http.MethodPost, "/api/v1/clients/{id}/"+k.plural, permWrite, a.createRecord(k))
		a.handle(r, http.MethodGet, "/api/v1/clients/{id}/"+k.plural+"/{rid}", permRead, a.getRecord(k))
		a.handle(r, http.MethodPut, "/api/v1/clients/{id}/"+k.plural+"/{rid}", permWrite, a.putRecord(k))
	}
	if a.admin != nil {
		a.adminRoutes(r)
	}
	if a.metrics != nil {
		a.handle(r, http.MethodGet, "/metrics", permAdmin, a.metrics.ServeHTTP)
	}
	if a.audit != nil {
		a.handle(r, http.MethodGet, "/admin/audit", permAdmin, a.adminAudit)
	}
	return r
}

// handle registers a route. The wrapper records the route template for the
// access log (the path itself holds client ids) and checks that the
// caller's role has the permission the route needs.
func (a *api) handle(r *mux.Router, method, tpl string, need permission, h http.HandlerFunc) {
	r.HandleFunc(tpl, func(w http.ResponseWriter, req *http.Request) {
		rec := RecordOf(req.Context())
		rec.Route = tpl
		if !rec.Caller.Role.may(need) {
			writeIssues(w, http.StatusForbidden, issue("forbidden", "", "this API key's role may not "+need.verb()))
			return
		}
		h(w, req)
	}).Methods(method)
}
