package console

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/ipsfhir/ipsfhir/adapter/api"
	"github.com/ipsfhir/ipsfhir/adapter/plan"
	"github.com/ipsfhir/ipsfhir/adapter/store"
	"github.com/ipsfhir/ipsfhir/adapter/syncer"
	"github.com/ipsfhir/ipsfhir/conformance/check"
)

// page is what every page template gets.
type page struct {
	Title string
	// Nav names the current page in the navigation.
	Nav    string
	Caller *api.Key
	CSRF   string
	// Refresh, when set, reloads the page every so many seconds without
	// JavaScript (with it, console.js refreshes the live part instead).
	Refresh int
	// Notice and Problem are a message at the top: what was done, or what
	// went wrong.
	Notice, Problem string
	Data            any
}

var funcs = template.FuncMap{
	"when": func(t time.Time) string {
		if t.IsZero() {
			return "never"
		}
		return t.UTC().Format("2006-01-02 15:04:05 UTC")
	},
	"iso":    func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
	"ago":    ago,
	"age":    age,
	"reason": reasonText,
	"typesOf": func(types []plan.ResourcePlan, caption string) map[string]any {
		return map[string]any{"Types": types, "Caption": caption}
	},
	"action":     actionName,
	"usedTypes":  usedTypes,
	"otherTypes": otherTypes,
	"checkTable": func(results []check.Result, caption string) map[string]any {
		return map[string]any{"Results": results, "Caption": caption}
	},
	"isAdmin": func(k *api.Key) bool {
		return k != nil && k.Role == api.RoleAdmin
	},
}

// pageNames are the page templates; each is layout.html with its content.
var pageNames = []string{"login", "overview", "connection", "toggle", "deadletters", "conflicts", "audit", "outcomes", "error"}

func (c *console) parseTemplates() error {
	base, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/parts.html")
	if err != nil {
		return err
	}
	c.pages = map[string]*template.Template{}
	for _, name := range pageNames {
		t, err := template.Must(base.Clone()).ParseFS(templateFS, "templates/"+name+".html")
		if err != nil {
			return err
		}
		c.pages[name] = t
	}
	c.fragments = base
	return nil
}

// render writes a page. It renders into a buffer first, so a template
// error becomes a clean 500, never half a page. Without a caller (q nil)
// the page keeps the CSRF token it was given (the sign-in form's).
func (c *console) render(w http.ResponseWriter, r *http.Request, q *request, status int, name string, p page) {
	if q != nil {
		p.Caller = &q.caller
		p.CSRF = q.csrf()
	}
	var buf bytes.Buffer
	if err := c.pages[name].ExecuteTemplate(&buf, "layout.html", p); err != nil {
		c.log.LogAttrs(r.Context(), slog.LevelError, "console page not rendered", slog.String("page", name), slog.String("error_kind", "template"))
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

func (c *console) errorPage(w http.ResponseWriter, r *http.Request, q *request, status int, title, msg string) {
	c.render(w, r, q, status, "error", page{Title: title, Problem: msg, Data: status})
}

func (c *console) forbidden(w http.ResponseWriter, r *http.Request, q *request) {
	msg := fmt.Sprintf("The key you signed in with (%s, role %s) may not open this page.", q.caller.Name, q.caller.Role)
	switch q.caller.Role {
	case api.RoleDirector:
		msg += " Program directors see the outcomes page."
	case api.RoleAdmin:
	default:
		// Not signed in to the console at all: no navigation, no name.
		msg = fmt.Sprintf("The key %s has role %s. The console is for administrators (role admin) and program directors (role director).", q.caller.Name, q.caller.Role)
		q = nil
	}
	c.errorPage(w, r, q, http.StatusForbidden, "Not allowed", msg)
}

// ---------------------------------------------------------------- sign-in

func (c *console) loginForm(w http.ResponseWriter, r *http.Request, _ *request) {
	c.showLogin(w, r, http.StatusOK, "")
}

// showLogin renders the sign-in form with a fresh CSRF token, also set in
// a cookie scoped to the console: the POST must carry both, equal.
func (c *console) showLogin(w http.ResponseWriter, r *http.Request, status int, problem string) {
	tok := token()
	c.setCookie(w, r, loginCookie, tok, time.Hour)
	p := page{Title: "Sign in", Problem: problem}
	switch {
	case problem != "":
	case r.URL.Query().Get("ended") == "1":
		p.Notice = "Your session has ended. Sign in again."
	case r.URL.Query().Get("signedout") == "1":
		p.Notice = "You are signed out."
	}
	p.CSRF = tok
	c.render(w, r, nil, status, "login", p)
}

// login signs in with an API key typed into the form. A key that is not
// valid gets the form again with a message that does not repeat it; the
// request is recorded in the audit trail (status 401, no caller) like any
// API request with a bad key. Failed sign-ins are throttled per address
// (throttle.go): past the allowance, 429 with Retry-After.
func (c *console) login(w http.ResponseWriter, r *http.Request, _ *request) {
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	ck, err := r.Cookie(loginCookie)
	if err != nil || !sameToken(r.PostFormValue("csrf"), ck.Value) {
		c.showLogin(w, r, http.StatusForbidden, "The sign-in form had expired. Please enter your key again.")
		return
	}
	addr := clientAddr(r)
	if wait := c.throttle.wait(addr); wait > 0 {
		secs := int((wait + time.Second - 1) / time.Second)
		w.Header().Set("Retry-After", strconv.Itoa(secs))
		c.showLogin(w, r, http.StatusTooManyRequests, fmt.Sprintf("Too many failed sign-ins from this address. Wait %d seconds, then try again.", secs))
		return
	}
	key := r.PostFormValue("key")
	if key == "" {
		c.showLogin(w, r, http.StatusUnauthorized, "Enter an API key.")
		return
	}
	probe, _ := http.NewRequestWithContext(r.Context(), http.MethodGet, "/", nil)
	probe.Header.Set("Authorization", "Bearer "+key)
	found, aerr := api.Authenticate(c.keys, probe)
	if aerr != nil {
		c.throttle.failed(addr)
		c.showLogin(w, r, http.StatusUnauthorized, "That key is not valid. Check it and try again.")
		return
	}
	api.RecordOf(r.Context()).Caller = found
	if !signedIn.allows(found.Role) {
		c.forbidden(w, r, &request{caller: found})
		return
	}
	id, _ := c.sessions.create(found)
	c.clearCookie(w, r, loginCookie)
	c.setCookie(w, r, sessionCookie, id, 0)
	http.Redirect(w, r, Prefix, http.StatusSeeOther)
}

// signOut ends the session (it cannot be used again, even with the cookie
// kept) and clears the cookie.
func (c *console) signOut(w http.ResponseWriter, r *http.Request, q *request) {
	if ck, err := r.Cookie(sessionCookie); err == nil {
		c.sessions.end(ck.Value)
	}
	c.clearCookie(w, r, sessionCookie)
	http.Redirect(w, r, Prefix+"login?signedout=1", http.StatusSeeOther)
}

// home is the overview for admins, the outcomes page for directors.
func (c *console) home(w http.ResponseWriter, r *http.Request, q *request) {
	if q.caller.Role != api.RoleAdmin {
		http.Redirect(w, r, Prefix+"outcomes", http.StatusSeeOther)
		return
	}
	ov, err := c.overview(r.Context())
	if err != nil {
		c.internalError(w, r, q, "overview", err)
		return
	}
	api.RecordOf(r.Context()).ResourceType = "connections"
	c.render(w, r, q, http.StatusOK, "overview", page{Title: "Overview", Nav: "overview", Refresh: 30, Data: ov})
}

// overviewLive is the overview's live part alone, which console.js
// fetches every few seconds.
func (c *console) overviewLive(w http.ResponseWriter, r *http.Request, q *request) {
	ov, err := c.overview(r.Context())
	if err != nil {
		c.internalError(w, r, q, "overview", err)
		return
	}
	var buf bytes.Buffer
	if err := c.fragments.ExecuteTemplate(&buf, "connections", ov); err != nil {
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_, _ = w.Write(buf.Bytes())
}

// ---------------------------------------------------------------- a connection

// connectionData is a connection's page: its figures as on the overview,
// and its sync plan once it connected.
type connectionData struct {
	Row  connectionRow
	Plan *plan.Plan
	// Check is the latest readiness check run from the console; nil when
	// none was. CanCheck says the console can run one.
	Check    *checkRun
	CanCheck bool
	// Conn is the connection as configured, with the console's setting;
	// CanToggle says the console can enable and disable it.
	Conn      Connection
	CanToggle bool
}

// usedTypes are the resource types a plan reads or writes: those of its
// concepts, and Provenance when it goes alongside; otherTypes the rest the
// EHR offers.
func usedTypes(p *plan.Plan) []plan.ResourcePlan { return planTypes(p, true) }

// otherTypes: see usedTypes.
func otherTypes(p *plan.Plan) []plan.ResourcePlan { return planTypes(p, false) }

func planTypes(p *plan.Plan, used bool) []plan.ResourcePlan {
	if p == nil {
		return nil
	}
	uses := map[string]bool{}
	for _, cp := range p.Concepts {
		if cp.ResourceType != "" && cp.Path != plan.NoPath {
			uses[cp.ResourceType] = true
		}
	}
	var out []plan.ResourcePlan
	for _, rp := range p.Types {
		if (uses[rp.Type] || rp.WrittenAlongside) == used {
			out = append(out, rp)
		}
	}
	return out
}

func (c *console) connection(w http.ResponseWriter, r *http.Request, q *request) {
	name := r.PathValue("name")
	ov, err := c.overview(r.Context())
	if err != nil {
		c.internalError(w, r, q, "connection", err)
		return
	}
	api.RecordOf(r.Context()).ResourceType = "connections"
	for _, row := range ov.Connections {
		if row.Name == name {
			run, err := c.latestCheck(r.Context(), name)
			if err != nil {
				c.internalError(w, r, q, "connection", err)
				return
			}
			d := connectionData{Row: row, Plan: c.plans()[name], Check: run, CanCheck: c.check != nil, CanToggle: c.setEnabled != nil}
			for _, cn := range c.conns() {
				if cn.Name == name {
					d.Conn = cn
				}
			}
			p := page{Title: name, Nav: "overview", Data: d}
			if run != nil && run.Running && !run.Abandoned {
				p.Refresh = 5 // until the results are in
			}
			switch r.URL.Query().Get("check") {
			case "started":
				p.Notice = "The readiness check is running: this page shows its results when it is done."
			case "running":
				p.Notice = "A readiness check of this connection was running already: this page shows its results when it is done."
			}
			switch r.URL.Query().Get("changed") {
			case "enabled":
				p.Notice = "The connection is enabled: it connects now, and every client is queued for it."
			case "disabled":
				p.Notice = "The connection is disabled: its pull and push have stopped."
			case "file":
				p.Notice = "The connection follows the configuration file's enabled: again."
			}
			c.render(w, r, q, http.StatusOK, "connection", p)
			return
		}
	}
	c.errorPage(w, r, q, http.StatusNotFound, "No such connection", "The configuration has no connection by that name. The overview lists every one.")
}

// ---------------------------------------------------------------- dead letters

func (c *console) deadLetters(w http.ResponseWriter, r *http.Request, q *request) {
	dl, err := c.store.DeadLetters(r.Context(), "")
	if err != nil {
		c.internalError(w, r, q, "dead-letters", err)
		return
	}
	rec := api.RecordOf(r.Context())
	rec.ResourceType, rec.Records = "dead-letters", len(dl)
	p := page{Title: "Dead letters", Nav: "dead-letters", Data: dl}
	if n := r.URL.Query().Get("replayedAll"); n != "" {
		if n, err := strconv.Atoi(n); err == nil && n >= 0 {
			p.Notice = fmt.Sprintf("%d dead letter%s queued again. They are pushed at each connection's next pass; the overview shows them pending until then.", n, map[bool]string{true: " is", false: "s are"}[n == 1])
			if gone := r.URL.Query().Get("gone"); gone != "" && gone != "0" {
				p.Notice += " " + gone + " of those listed had been replayed already."
			}
		}
	}
	if id := r.URL.Query().Get("replayed"); id != "" {
		if n, err := strconv.ParseInt(id, 10, 64); err == nil && n > 0 {
			p.Notice = fmt.Sprintf("Dead letter %d is queued again. It is pushed at the connection's next pass (within seconds while the connection is ready): the overview shows it pending until then. If the EHR refuses it again as often as sync.maxAttempts allows, it comes back to this list.", n)
		}
	}
	c.render(w, r, q, http.StatusOK, "deadletters", p)
}

// replay queues a dead letter again, as POST /admin/dead-letters/{id}/replay
// does, and shows the list with what happened.
func (c *console) replay(w http.ResponseWriter, r *http.Request, q *request) {
	id, ok := c.pathID(w, r, q)
	if !ok {
		return
	}
	api.RecordOf(r.Context()).ResourceType = "dead-letters"
	if err := c.store.Replay(r.Context(), id); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			c.errorPage(w, r, q, http.StatusNotFound, "No such dead letter", "It was replayed already, or never existed. The dead letters page lists the current ones.")
			return
		}
		c.internalError(w, r, q, "replay", err)
		return
	}
	http.Redirect(w, r, Prefix+"dead-letters?replayed="+strconv.FormatInt(id, 10), http.StatusSeeOther)
}

// replayAll replays the dead letters the page listed (their ids are in the
// form), not ones that arrived since: the administrator replays what they
// saw. One already replayed meanwhile is counted, not an error.
func (c *console) replayAll(w http.ResponseWriter, r *http.Request, q *request) {
	api.RecordOf(r.Context()).ResourceType = "dead-letters"
	if err := r.ParseForm(); err != nil {
		c.errorPage(w, r, q, http.StatusBadRequest, "Form not readable", "The form could not be read; nothing was replayed.")
		return
	}
	ids := r.PostForm["id"]
	if len(ids) == 0 {
		c.errorPage(w, r, q, http.StatusBadRequest, "Nothing to replay", "The form listed no dead letters. Reload the dead letters page and try again.")
		return
	}
	done, gone := 0, 0
	for _, s := range ids {
		id, err := strconv.ParseInt(s, 10, 64)
		if err != nil || id <= 0 {
			c.errorPage(w, r, q, http.StatusBadRequest, "Not a valid number", "The form carried a dead letter number that is not a positive number; nothing more was replayed.")
			return
		}
		switch err := c.store.Replay(r.Context(), id); {
		case err == nil:
			done++
		case errors.Is(err, store.ErrNotFound):
			gone++
		default:
			c.internalError(w, r, q, "replay", err)
			return
		}
	}
	api.RecordOf(r.Context()).Records = done
	http.Redirect(w, r, Prefix+"dead-letters?replayedAll="+strconv.Itoa(done)+"&gone="+strconv.Itoa(gone), http.StatusSeeOther)
}

// ---------------------------------------------------------------- conflicts

// resolutions are the decisions the conflicts page offers, as the
// resolution POST /admin/conflicts/{id}/resolve records.
var resolutions = map[string]string{syncer.KeptIPS: "keep the IPS value", syncer.KeptEHR: "keep the EHR value"}

// conflictsData is the conflicts page: the open conflicts, and whether
// keeping a side makes its value stand (Options.ResolveConflict) or only
// closes the conflict.
type conflictsData struct {
	Conflicts []conflictRow
	Applies   bool
}

// conflictRow is an open conflict; Appliable says whether the side that
// was not applied can be written into the IPS record (syncer.Appliable).
type conflictRow struct {
	store.Conflict
	Appliable bool
}

func (c *console) conflicts(w http.ResponseWriter, r *http.Request, q *request) {
	cs, err := c.store.Conflicts(r.Context(), "", false)
	if err != nil {
		c.internalError(w, r, q, "conflicts", err)
		return
	}
	rec := api.RecordOf(r.Context())
	rec.ResourceType, rec.Records = "conflicts", len(cs)
	d := conflictsData{Applies: c.resolveConflict != nil}
	for _, cf := range cs {
		d.Conflicts = append(d.Conflicts, conflictRow{Conflict: cf, Appliable: syncer.Appliable(cf)})
	}
	p := page{Title: "Conflicts", Nav: "conflicts", Data: d}
	if id := r.URL.Query().Get("resolved"); id != "" {
		if n, err := strconv.ParseInt(id, 10, 64); err == nil && n > 0 {
			as := r.URL.Query().Get("as")
			done := ""
			if o := r.URL.Query().Get("done"); o == syncer.ResolutionApplied || o == syncer.ResolutionInPlace {
				done = " (" + syncer.Resolution{Outcome: o, Kept: map[string]string{syncer.KeptIPS: "ips", syncer.KeptEHR: "ehr"}[as]}.Message() + ")"
			}
			p.Notice = fmt.Sprintf("Conflict %d is closed: %s%s. The decision is recorded with your name in the audit trail.", n, resolutions[as], done)
		}
	}
	c.render(w, r, q, http.StatusOK, "conflicts", p)
}

func (c *console) resolve(w http.ResponseWriter, r *http.Request, q *request) {
	id, ok := c.pathID(w, r, q)
	if !ok {
		return
	}
	api.RecordOf(r.Context()).ResourceType = "conflicts"
	res := r.PostFormValue("resolution")
	if _, ok := resolutions[res]; !ok {
		c.errorPage(w, r, q, http.StatusBadRequest, "Choose a side", "Resolve a conflict with one of its two buttons: keep the IPS value, or keep the EHR value.")
		return
	}
	done := ""
	var err error
	if c.resolveConflict != nil {
		var out syncer.Resolution
		out, err = c.resolveConflict(r.Context(), id, res)
		done = "&done=" + out.Outcome
	} else {
		err = c.store.ResolveConflict(r.Context(), id, res)
	}
	if err != nil {
		note := " To close it without rewriting anything, resolve it with a short note: POST /admin/conflicts/" + strconv.FormatInt(id, 10) + "/resolve?resolution=… with an admin key."
		switch {
		case errors.Is(err, store.ErrNotFound):
			c.errorPage(w, r, q, http.StatusNotFound, "No such conflict", "The conflicts page lists the open ones.")
		case errors.Is(err, store.ErrConflict):
			c.errorPage(w, r, q, http.StatusConflict, "Already resolved", "Someone resolved this conflict meanwhile. The conflicts page lists the open ones.")
		case errors.Is(err, syncer.ErrConflictStale):
			c.errorPage(w, r, q, http.StatusConflict, "The record changed since",
				"The IPS record no longer holds the value that was applied when this conflict was found: someone changed the field since, or the goal is gone. Nothing was rewritten, and the conflict stays open. Look at the client's goal: once it holds the value that should stand, keep that value here and the conflict closes."+note)
		case errors.Is(err, syncer.ErrCannotApply):
			c.errorPage(w, r, q, http.StatusConflict, "Cannot be applied automatically",
				"This side's value cannot be written into the IPS record automatically: for a whole record changed in the EHR, the conflict keeps only a description of the EHR's version, not the record. Nothing was changed, and the conflict stays open. If the EHR's change should stand, make it in the IPS record, then keep the IPS value here: the next push writes it to the EHR."+note)
		default:
			c.internalError(w, r, q, "resolve", err)
		}
		return
	}
	http.Redirect(w, r, Prefix+"conflicts?resolved="+strconv.FormatInt(id, 10)+"&as="+res+done, http.StatusSeeOther)
}

func (c *console) pathID(w http.ResponseWriter, r *http.Request, q *request) (int64, bool) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		c.errorPage(w, r, q, http.StatusBadRequest, "Not a valid number", "The address should end in a positive number.")
		return 0, false
	}
	return id, true
}

// ---------------------------------------------------------------- outcomes

func (c *console) outcomesIndex(w http.ResponseWriter, r *http.Request, q *request) {
	c.render(w, r, q, http.StatusOK, "outcomes", page{Title: "Outcomes", Nav: "outcomes", Data: c.outcomes != nil})
}

// outcomesReport serves the report page as report --html writes it. The
// page is self-contained: one inline style sheet and the chart as a data:
// image. Its Content-Security-Policy allows exactly that style sheet (by
// its hash) and data: images, and nothing else: no script at all.
func (c *console) outcomesReport(w http.ResponseWriter, r *http.Request, q *request) {
	if c.outcomes == nil {
		c.errorPage(w, r, q, http.StatusNotFound, "No outcomes report", "This server does not make outcomes reports.")
		return
	}
	page, err := c.outcomes(r.Context())
	if err != nil {
		c.internalError(w, r, q, "outcomes", err)
		return
	}
	api.RecordOf(r.Context()).ResourceType = "MeasureReport"
	w.Header().Set("Content-Security-Policy", reportCSP(page))
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_, _ = w.Write(page)
}

// reportCSP is the policy of a self-contained report page: its inline
// style sheets by hash, data: images, nothing else.
func reportCSP(page []byte) string {
	styles := ""
	rest := page
	for {
		_, after, ok := bytes.Cut(rest, []byte("<style>"))
		if !ok {
			break
		}
		css, tail, ok := bytes.Cut(after, []byte("</style>"))
		if !ok {
			break
		}
		sum := sha256.Sum256(css)
		styles += " 'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
		rest = tail
	}
	if styles == "" {
		styles = " 'none'"
	}
	return "default-src 'none'; style-src" + styles + "; img-src data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
}

func isUnavailable(err error) bool { return errors.Is(err, store.ErrUnavailable) }

// reasonText says in words what a failure's reason token means (the
// tokens README "Running the service" lists).
func reasonText(token string) string {
	switch token {
	case "ehr-unreachable":
		return "the EHR cannot be reached"
	case "ehr-timeout":
		return "the EHR did not answer in time"
	case "ehr-auth":
		return "the EHR refused our credentials"
	case "ehr-not-allowed":
		return "the EHR does not allow this"
	case "ehr-throttled":
		return "the EHR asks us to slow down"
	case "ehr-http-5xx":
		return "the EHR answered with a server error"
	case "ehr-invalid":
		return "the EHR rejected what we sent as invalid"
	case "plan":
		return "the EHR's CapabilityStatement does not allow what the configuration asks"
	case "store-unavailable":
		return "the store cannot be reached"
	case "store":
		return "the store failed"
	}
	return "failed"
}
