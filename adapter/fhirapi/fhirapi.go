package fhirapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/mux"

	"github.com/ipsfhir/ipsfhir/adapter/api"
	"github.com/ipsfhir/ipsfhir/adapter/store"
	"github.com/ipsfhir/ipsfhir/conformance/artifacts"
	"github.com/ipsfhir/ipsfhir/ips"
	"github.com/ipsfhir/ipsfhir/mappings"
)

// Store is what the facade needs of the IPS store: store.Store satisfies it.
type Store interface {
	GetClient(ctx context.Context, id string) (*ips.Client, store.Version, error)
	ListClients(ctx context.Context, after string, limit int) ([]store.Stored, error)
	ClientByPatient(ctx context.Context, system, value string) (store.Stored, error)
}

var _ Store = (store.Store)(nil)

// ErrBadPeriod is what Options.Reports wraps when it does not understand the
// period it was given; the caller gets 400.
var ErrBadPeriod = errors.New("fhirapi: reporting period not understood")

// Options configure the facade.
type Options struct {
	// Store holds the records; required.
	Store Store
	// Keys are the callers let in: the records API's keys.
	Keys []api.Key
	// Mapping configures how records become FHIR. Program (the business
	// identifiers' namespace and the Group id of the program; "" means
	// ips.DefaultProgramID), Security and PRAPARE are used as given;
	// Reference and Now are set by the facade, and PatientReference is not
	// used (subjects refer to patients by identifier).
	Mapping mappings.Options
	// AllowsEHR reports whether a client's records may be shown to EHR-side
	// callers (config.Consent.AllowsEHR). nil: no client's.
	AllowsEHR func(*ips.Client) bool
	// AllowsHIE reports whether a client may be in a Bulk Data export
	// (config.Consent.AllowsHIE). nil: no client may.
	AllowsHIE func(*ips.Client) bool
	// Reports computes the program's MeasureReports for a period, given as
	// the caller wrote it ("" when not given); it wraps ErrBadPeriod for a
	// period it does not understand. forHIE is true when the caller's role
	// is hie: it must get the reports for HIEs, which count only clients
	// whose consent allows HIE reporting; the program's own staff
	// (specialist, clinician, admin) get the program's own reports. nil:
	// /fhir/MeasureReport answers 404.
	Reports func(ctx context.Context, period string, forHIE bool) ([]json.RawMessage, error)
	// BaseURL is the absolute URL of /fhir as callers reach it
	// ("https://ips.example.org/fhir"), for fullUrls, links, the export's
	// status and file URLs and the CapabilityStatement's implementation.url;
	// required. Absolute URLs are built from it alone, never from a
	// request's Host or X-Forwarded-* headers: a caller who could choose
	// them could send the next client that follows a link, and its API key,
	// wherever it liked.
	BaseURL string
	// CursorKey is the secret the paging cursors of search links are
	// sealed under (config server.cursorKey), at least MinCursorKeyBytes
	// long; every replica behind one address needs the same. nil: a random
	// key of this process, so a link works only on the replica that gave
	// it out, and only until it restarts.
	CursorKey []byte
	// CursorTTL is how long a search's paging links stay valid (config
	// server.cursorTTL); zero: DefaultCursorTTL.
	CursorTTL time.Duration
	// CORSOrigins are the origins of the browser apps allowed to call
	// /fhir (config server.corsOrigins): scheme://host[:port]. They get
	// CORS headers (api.CORS), and the CapabilityStatement says
	// security.cors true; nil: no CORS headers for anyone.
	CORSOrigins []string
	// Limits bound Bulk Data export; zero fields take the defaults.
	Limits Limits
	// ExportDir is where Bulk Data jobs keep their output files (config
	// export.jobDir); "" means os.TempDir(). The server makes a directory
	// of its own in it (mode 0700) and removes each job's files with the
	// job, and its directory when it closes; New removes what servers
	// that did not close left there (see exportdir.go).
	ExportDir string
	// PseudonymKey is the secret HMAC key of the de-identified export that
	// hie callers get (config export.pseudonymKey): patient pseudonyms and
	// resource ids are HMAC-SHA256 under a key derived from it, the program
	// and the caller's pseudonym scope (api.Key.Scope), so one caller gets
	// the same pseudonyms in every export and callers of different scopes
	// pseudonyms that cannot be joined. At least MinPseudonymKeyBytes long.
	// nil: hie callers' exports are refused (501) rather than sent
	// identified or under a made-up key; admins' exports, which are
	// identified, still run.
	PseudonymKey []byte
	// Logger receives the access log and the causes of 500s, all
	// patient-free. nil discards them.
	Logger *slog.Logger
	// SoftwareVersion is reported in the CapabilityStatement; "" uses the
	// module version the binary was built with.
	SoftwareVersion string
	// Now is the clock; nil means time.Now. Tests set it.
	Now func() time.Time
	// Audit, when set, keeps the audit trail: every request but to
	// /fhir/metadata is recorded (api.Audited), and admins read the trail
	// as AuditEvent resources.
	Audit store.Auditor
}

// Limits bound Bulk Data export, whose jobs run in the server's process and
// keep their files on disk under Options.ExportDir.
type Limits struct {
	// MaxJobs is how many jobs run at once across callers (default 4).
	// A kick-off beyond it gets 429 with a short Retry-After.
	MaxJobs int
	// MaxJobsPerCaller is how many jobs one caller (API key) keeps at
	// once (default 2): running, or finished with files it has not all
	// fetched (a failure it has not read) and not expired or deleted. A
	// kick-off beyond it gets 429 with Retry-After until the first of them
	// expires; one while the caller's previous job runs, 429 with the poll
	// interval. Fetching a
	// job's every file frees its slot; the caller's next kick-off drops
	// it.
	MaxJobsPerCaller int
	// MaxJobBytes bounds one job's output (default 256 MiB); a job that
	// would exceed it fails, and the caller narrows it with _type or _since.
	MaxJobBytes int64
	// JobTTL is how long a finished job's manifest and files stay
	// (default 1 h); the manifest's Expires header says until when.
	JobTTL time.Duration
}

// Defaults of Limits and of search paging.
const (
	DefaultMaxJobs = 4
	// DefaultMaxJobsPerCaller is Limits.MaxJobsPerCaller when unset.
	DefaultMaxJobsPerCaller = 2
	DefaultMaxJobBytes      = 256 << 20
	DefaultJobTTL           = time.Hour
	DefaultCount            = 50
	MaxCount                = 500
)

// maxFormBytes bounds the body of a POST _search: parameters, not data.
const maxFormBytes = 64 << 10

// Server is the /fhir handler. Close it to stop running export jobs.
type Server struct {
	store        Store
	keys         []api.Key
	mapping      mappings.Options
	allowsEHR    func(*ips.Client) bool
	allowsHIE    func(*ips.Client) bool
	reports      func(ctx context.Context, period string, forHIE bool) ([]json.RawMessage, error)
	baseURL      string
	limits       Limits
	pseudonymKey []byte // nil: no pseudonymization key configured
	cursors      *cursorSealer
	cors         bool // CORS headers for Options.CORSOrigins
	log          *slog.Logger
	version      string
	now          func() time.Time

	statement []byte               // the published server CapabilityStatement
	measures  []artifacts.Artifact // the published Measures, by id
	index     locator
	root      http.Handler
	audit     store.Auditor // nil: no audit trail kept

	jobsMu sync.Mutex
	jobs   map[string]*exportJob
	closed bool
	jobsWG sync.WaitGroup

	exportDir  string     // Options.ExportDir
	rootMu     sync.Mutex // guards jobsRoot, rootLock and rootClosed
	jobsRoot   string     // the server's directory of job files; "" until the first job
	rootLock   *os.File   // its lock, held while the server runs
	rootClosed bool
}

var _ http.Handler = (*Server)(nil)

// New returns the facade. It fails when a pseudonymization key is given
// but is shorter than MinPseudonymKeyBytes, or when the published
// CapabilityStatement or Measures embedded in the binary cannot be read.
func New(o Options) (*Server, error) {
	if n := len(o.PseudonymKey); n > 0 && n < MinPseudonymKeyBytes {
		return nil, fmt.Errorf("fhirapi: the pseudonymization key is too short: at least %d bytes", MinPseudonymKeyBytes)
	}
	if n := len(o.CursorKey); n > 0 && n < MinCursorKeyBytes {
		return nil, fmt.Errorf("fhirapi: the cursor key is too short: at least %d bytes", MinCursorKeyBytes)
	}
	if err := checkBaseURL(o.BaseURL); err != nil {
		return nil, err
	}
	s := &Server{
		store: o.Store, keys: o.Keys, mapping: o.Mapping, allowsEHR: o.AllowsEHR, allowsHIE: o.AllowsHIE,
		reports: o.Reports, baseURL: strings.TrimSuffix(o.BaseURL, "/"), limits: o.Limits, log: o.Logger,
		version: o.SoftwareVersion, now: o.Now, jobs: map[string]*exportJob{}, cors: len(o.CORSOrigins) > 0, audit: o.Audit,
		exportDir: o.ExportDir,
	}
	if s.mapping.Program == "" {
		s.mapping.Program = ips.DefaultProgramID
	}
	s.mapping.Reference = reference
	s.mapping.PatientReference = nil
	if len(o.PseudonymKey) > 0 {
		s.pseudonymKey = bytes.Clone(o.PseudonymKey)
	}
	if s.allowsEHR == nil {
		s.allowsEHR = func(*ips.Client) bool { return false }
	}
	if s.allowsHIE == nil {
		s.allowsHIE = func(*ips.Client) bool { return false }
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.version == "" {
		s.version = buildVersion()
	}
	if s.limits.MaxJobs <= 0 {
		s.limits.MaxJobs = DefaultMaxJobs
	}
	if s.limits.MaxJobsPerCaller <= 0 {
		s.limits.MaxJobsPerCaller = DefaultMaxJobsPerCaller
	}
	if s.limits.MaxJobBytes <= 0 {
		s.limits.MaxJobBytes = DefaultMaxJobBytes
	}
	if s.limits.JobTTL <= 0 {
		s.limits.JobTTL = DefaultJobTTL
	}
	if n := sweepStale(s.exportDir, s.log); n > 0 {
		s.log.LogAttrs(context.Background(), slog.LevelInfo, "removed export files left by a server that stopped without closing",
			slog.String("op", "export"), slog.Int("directories", n))
	}
	var cursorKey []byte
	if len(o.CursorKey) > 0 {
		cursorKey = o.CursorKey
	}
	var err error
	if s.cursors, err = newCursorSealer(cursorKey, o.CursorTTL); err != nil {
		return nil, err
	}
	if s.statement, err = serverStatement(); err != nil {
		return nil, err
	}
	if s.measures, err = artifacts.Measures(); err != nil {
		return nil, err
	}

	r := mux.NewRouter()
	r.NotFoundHandler = http.HandlerFunc(s.notFound)
	r.MethodNotAllowedHandler = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		writeOutcome(w, http.StatusMethodNotAllowed, oo("not-supported", "this method is not allowed here; the facade is read-only"))
	})
	for _, rt := range routes() {
		s.handle(r, rt)
	}
	// Authentication comes before routing, so that without a key nobody
	// learns which paths exist; only the CapabilityStatement is public.
	authed := s.authenticate(r)
	accessLog := api.AccessLog(s.log, "fhir request", "panic in FHIR handler", func(w http.ResponseWriter) {
		writeOutcome(w, http.StatusInternalServerError, internalOutcome())
	})
	h := http.Handler(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path == metadataPath {
			r.ServeHTTP(w, req)
			return
		}
		authed.ServeHTTP(w, req)
	}))
	if o.Audit != nil {
		h = api.Audited(o.Audit, s.log, func(route string) bool { return route == metadataPath })(h)
	}
	// CORS comes before authentication too: browsers send preflights
	// without the key. A preflight reads nothing and names no caller, so it
	// is answered before the audit trail too.
	cors := api.CORS{Origins: o.CORSOrigins, Methods: corsMethods, Headers: api.CORSHeaders, Expose: api.CORSExpose, PreflightRoute: prefix + "/{preflight}"}
	s.root = accessLog(cors.Handler(h))
	return s, nil
}

// corsMethods are the methods a CORS preflight allows: the facade's
// (POST for _search and the export kick-off, DELETE for an export).
var corsMethods = []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodDelete}

// ServeHTTP serves /fhir/… .
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.root.ServeHTTP(w, r) }

// Close cancels running export jobs, waits for them to stop and drops every
// job, and removes the jobs' files. Requests after Close get no new jobs.
func (s *Server) Close() {
	s.jobsMu.Lock()
	s.closed = true
	for id, j := range s.jobs {
		j.cancel()
		delete(s.jobs, id)
	}
	s.jobsMu.Unlock()
	s.jobsWG.Wait()
	s.closeRoot()
}

// handle registers a route; the wrapper notes the route template for the
// access log and checks the caller's role.
func (s *Server) handle(r *mux.Router, rt route) {
	h := rt.handler
	r.HandleFunc(rt.path, func(w http.ResponseWriter, req *http.Request) {
		rec := api.RecordOf(req.Context())
		rec.Route = rt.path
		if rt.access != public && !rt.access.allows(rec.Caller.Role) {
			writeOutcome(w, http.StatusForbidden, oo("forbidden", "this API key's role may not "+rt.access.verb()))
			return
		}
		h(s, w, req)
	}).Methods(rt.method)
}

// notFound answers paths no route serves: 400 for a resource type the facade
// does not serve (as FHIR servers do), 404 otherwise. The path is never
// echoed: it may hold ids or worse.
func (s *Server) notFound(w http.ResponseWriter, r *http.Request) {
	rest, _ := strings.CutPrefix(r.URL.Path, prefix+"/")
	typ, _, _ := strings.Cut(rest, "/")
	if looksLikeType(typ) && !servedType(typ) {
		writeOutcome(w, http.StatusBadRequest, oo("not-supported",
			"this resource type is not served here; the facade serves "+strings.Join(servedTypes(), ", ")+" (see /fhir/metadata)"))
		return
	}
	writeOutcome(w, http.StatusNotFound, oo("not-found", "nothing is served at this path; see /fhir/metadata"))
}

func looksLikeType(s string) bool {
	if s == "" || s[0] < 'A' || s[0] > 'Z' || len(s) > 64 {
		return false
	}
	for _, c := range s {
		if (c < 'A' || c > 'Z') && (c < 'a' || c > 'z') {
			return false
		}
	}
	return true
}

// ---------------------------------------------------------------- access

// access is what a route needs of the caller's role.
type access int

const (
	public     access = iota + 1 // the CapabilityStatement
	records                      // IPS records: specialist, clinician, admin
	bulk                         // Bulk Data export: hie, admin
	outcomes                     // Measure and MeasureReport: every role (director: nothing else)
	auditTrail                   // AuditEvent: admin
)

func (a access) allows(r api.Role) bool {
	switch a {
	case public:
		return true
	case records:
		return r == api.RoleSpecialist || r == api.RoleClinician || r == api.RoleAdmin
	case bulk:
		return r == api.RoleHIE || r == api.RoleAdmin
	case outcomes:
		return r == api.RoleSpecialist || r == api.RoleClinician || r == api.RoleAdmin || r == api.RoleHIE || r == api.RoleDirector
	case auditTrail:
		return r == api.RoleAdmin
	}
	return false
}

func (a access) verb() string {
	switch a {
	case records:
		return "read IPS records; HIE operators use $export and MeasureReport"
	case bulk:
		return "run a Bulk Data export"
	case auditTrail:
		return "read the audit trail"
	}
	return "read outcomes"
}

// authenticate lets a request through only with a known API key.
func (s *Server) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		k, aerr := api.Authenticate(s.keys, r)
		if aerr != nil {
			w.Header().Set("WWW-Authenticate", aerr.Challenge)
			writeOutcome(w, http.StatusUnauthorized, oo("login", aerr.Message))
			return
		}
		api.RecordOf(r.Context()).Caller = k
		next.ServeHTTP(w, r)
	})
}

// internalError logs the cause of a 500 and answers with a message that
// says nothing about the request. ids the request carried are replaced in
// the logged error, as in the records API.
func (s *Server) internalError(w http.ResponseWriter, r *http.Request, op string, err error, ids ...string) {
	level := slog.LevelError
	if errors.Is(err, context.Canceled) {
		level = slog.LevelInfo
	}
	s.log.LogAttrs(r.Context(), level, "FHIR request failed",
		slog.String("op", op), api.RecordOf(r.Context()).RouteAttr(), slog.String("error", redact(err, ids...)))
	if errors.Is(err, store.ErrUnavailable) {
		// The database is down or unreachable: a client should come back,
		// not report a bug.
		w.Header().Set("Retry-After", "5")
		writeOutcome(w, http.StatusServiceUnavailable, oo("transient", "store unavailable"))
		return
	}
	writeOutcome(w, http.StatusInternalServerError, internalOutcome())
}

func redact(err error, ids ...string) string {
	msg := err.Error()
	for _, id := range ids {
		if id != "" {
			msg = strings.ReplaceAll(msg, id, "{id}")
		}
	}
	return msg
}

// ---------------------------------------------------------------- responses

// oo is one error issue; message names what is wrong, never a value.
func oo(code, message string) mappings.Issue {
	return mappings.Issue{Severity: "error", Code: code, Message: message}
}

// warning is a warning issue: what a lenient search or export ignored.
func warning(code, message string) mappings.Issue {
	return mappings.Issue{Severity: "warning", Code: code, Message: message}
}

func internalOutcome() mappings.Issue {
	return oo("exception", "internal error; the server log has the cause")
}

// writeOutcome writes an OperationOutcome.
func writeOutcome(w http.ResponseWriter, status int, issues ...mappings.Issue) {
	writeFHIR(w, status, mappings.OperationOutcomeJSON(issues))
}

// writeFHIR writes FHIR JSON. Every response may hold patient data, so none
// is cached by browsers or proxies.
func writeFHIR(w http.ResponseWriter, status int, body []byte) {
	writeBody(w, status, "application/fhir+json; charset=utf-8", body)
}

func writeBody(w http.ResponseWriter, status int, contentType string, body []byte) {
	h := w.Header()
	h.Set("Content-Type", contentType)
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// marshalFHIR marshals a value the facade built itself; a failure is a bug.
// Links keep their & as it is: FHIR JSON is not HTML.
func marshalFHIR(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, fmt.Errorf("marshal %T: %w", v, err)
	}
	return b.Bytes(), nil
}

// checkBaseURL accepts the absolute http(s) URL of /fhir, with no user
// name, query or fragment.
func checkBaseURL(base string) error {
	u, err := url.Parse(base)
	switch {
	case base == "":
		return errors.New("fhirapi: BaseURL is required: the absolute URL of /fhir as callers reach it; links are never built from request headers")
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		return errors.New("fhirapi: BaseURL must be an absolute http or https URL")
	case u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.ForceQuery:
		return errors.New("fhirapi: BaseURL must not hold a user name, query or fragment")
	}
	return nil
}
