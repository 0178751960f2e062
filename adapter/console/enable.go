package console

import (
	"net/http"
	"net/url"

	"github.com/ipsfhir/ipsfhir/adapter/api"
	"github.com/ipsfhir/ipsfhir/adapter/plan"
)

// toggleData is the page that confirms enabling or disabling a connection:
// for enabling, the plan of its latest readiness check; for disabling, the
// plan that runs now.
type toggleData struct {
	Conn   Connection
	Row    connectionRow
	Enable bool
	Check  *checkRun
	Plan   *plan.Plan
	// CanCheck says the console can run a readiness check.
	CanCheck bool
}

// PlanShown says the page shows the plan enabling would use, so the
// administrator may confirm: only then is the button there.
func (d toggleData) PlanShown() bool {
	return d.Check != nil && !d.Check.Running && d.Check.Report != nil && d.Check.Report.Plan != nil
}

// configured returns the connection by name, or false.
func (c *console) configured(name string) (Connection, bool) {
	for _, cn := range c.conns() {
		if cn.Name == name {
			return cn, true
		}
	}
	return Connection{}, false
}

// Why a console cannot do what a connection's buttons ask.
const (
	cannotToggle = "This service cannot enable or disable connections from the console. Set enabled: in the configuration file."
	cannotCheck  = "This service cannot run the readiness check from the console. Run ipsfhir check --config FILE --connection NAME."
)

// connectionFor is the start of every action on a connection
// (/console/connections/{name}/…): it names the record kind for the audit
// trail, and answers 404 for a name the configuration does not have and
// 501 (with why) when the console cannot do the action (available false).
func (c *console) connectionFor(w http.ResponseWriter, r *http.Request, q *request, available bool, why string) (Connection, bool) {
	api.RecordOf(r.Context()).ResourceType = "connections"
	cn, ok := c.configured(r.PathValue("name"))
	if !ok {
		c.errorPage(w, r, q, http.StatusNotFound, "No such connection", "The configuration has no connection by that name. The overview lists every one.")
		return cn, false
	}
	if !available {
		c.errorPage(w, r, q, http.StatusNotImplemented, "Not available", why)
		return cn, false
	}
	return cn, true
}

// toggleForm shows what enabling (or disabling) a connection does and asks
// for confirmation: GET /console/connections/{name}/enable and /disable.
func (c *console) toggleForm(enable bool) func(http.ResponseWriter, *http.Request, *request) {
	return func(w http.ResponseWriter, r *http.Request, q *request) {
		name := r.PathValue("name")
		cn, ok := c.connectionFor(w, r, q, c.setEnabled != nil, cannotToggle)
		if !ok {
			return
		}
		back := Prefix + "connections/" + url.PathEscape(name)
		if cn.Enabled == enable {
			// Already so (another administrator, or another tab): the
			// connection's page says how it stands.
			http.Redirect(w, r, back, http.StatusSeeOther)
			return
		}
		d := toggleData{Conn: cn, Enable: enable, CanCheck: c.check != nil}
		ov, err := c.overview(r.Context())
		if err != nil {
			c.internalError(w, r, q, "connection", err)
			return
		}
		for _, row := range ov.Connections {
			if row.Name == name {
				d.Row = row
			}
		}
		if enable {
			if d.Check, err = c.latestCheck(r.Context(), name); err != nil {
				c.internalError(w, r, q, "connection", err)
				return
			}
		} else {
			d.Plan = c.plans()[name]
		}
		title := "Enable " + name
		if !enable {
			title = "Disable " + name
		}
		c.render(w, r, q, http.StatusOK, "toggle", page{Title: title, Nav: "overview", Data: d})
	}
}

// toggle enables or disables a connection once confirmed: POST
// /console/connections/{name}/enable and /disable, with confirm=yes.
func (c *console) toggle(enable bool) func(http.ResponseWriter, *http.Request, *request) {
	return func(w http.ResponseWriter, r *http.Request, q *request) {
		name := r.PathValue("name")
		if _, ok := c.connectionFor(w, r, q, c.setEnabled != nil, cannotToggle); !ok {
			return
		}
		if r.PostFormValue("confirm") != "yes" {
			c.errorPage(w, r, q, http.StatusBadRequest, "Not confirmed", "Enabling or disabling a connection needs the confirmation on the page that shows what it does. Nothing was changed.")
			return
		}
		if err := c.setEnabled(r.Context(), name, &enable, q.caller.Name); err != nil {
			c.internalError(w, r, q, "connection", err)
			return
		}
		changed := "enabled"
		if !enable {
			changed = "disabled"
		}
		http.Redirect(w, r, Prefix+"connections/"+url.PathEscape(name)+"?changed="+changed+"#enabled", http.StatusSeeOther)
	}
}

// followFile forgets the console's choice for a connection: POST
// /console/connections/{name}/follow-file.
func (c *console) followFile(w http.ResponseWriter, r *http.Request, q *request) {
	name := r.PathValue("name")
	if _, ok := c.connectionFor(w, r, q, c.setEnabled != nil, cannotToggle); !ok {
		return
	}
	if err := c.setEnabled(r.Context(), name, nil, q.caller.Name); err != nil {
		c.internalError(w, r, q, "connection", err)
		return
	}
	http.Redirect(w, r, Prefix+"connections/"+url.PathEscape(name)+"?changed=file#enabled", http.StatusSeeOther)
}
