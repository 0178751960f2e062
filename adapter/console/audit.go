package console

import (
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/ipsfhir/ipsfhir/adapter/api"
	"github.com/ipsfhir/ipsfhir/adapter/store"
)

// auditPageSize is how many audit entries one page of the audit page shows.
const auditPageSize = 100

// auditFilter is the audit page's filter form, as the administrator filled
// it in: the values are shown back in the form unchanged.
type auditFilter struct {
	Caller, Since, Until string
}

// auditView is what the audit page's template gets.
type auditView struct {
	Filter  auditFilter
	Entries []store.AuditEntry
	// Next is the link of the next (later) page; "" on the last one.
	Next template.URL
	// First is the link of the filter's first page, when this is not it.
	First template.URL
	// Window says in words which entries are listed.
	Window string
}

// auditTimeLayouts are the forms a From or To field may take: what an
// <input type="datetime-local"> sends, with or without seconds, a date,
// or RFC 3339 for scripts. Times without a zone are UTC.
var auditTimeLayouts = []string{"2006-01-02T15:04", "2006-01-02T15:04:05", "2006-01-02", time.RFC3339}

// parseAuditTime reads a From or To field. A date alone means the start of
// that day for From, its end for To.
func parseAuditTime(s string, end bool) (time.Time, bool) {
	for _, layout := range auditTimeLayouts {
		t, err := time.Parse(layout, s)
		if err != nil {
			continue
		}
		if layout == "2006-01-02" && end {
			t = t.Add(24*time.Hour - time.Microsecond)
		}
		return t.UTC(), true
	}
	return time.Time{}, false
}

// audit is the audit trail, filterable by caller (the API key's name, or
// "sync") and time, oldest first within the window, a page at a time. Without
// a From it shows the last 24 hours.
func (c *console) audit(w http.ResponseWriter, r *http.Request, q *request) {
	v := r.URL.Query()
	f := auditFilter{Caller: strings.TrimSpace(v.Get("caller")), Since: strings.TrimSpace(v.Get("since")), Until: strings.TrimSpace(v.Get("until"))}
	view := &auditView{Filter: f}
	p := page{Title: "Audit trail", Nav: "audit", Data: view}
	var problems []string
	aq := store.AuditQuery{Caller: f.Caller, Limit: auditPageSize + 1}
	if len(f.Caller) > 200 {
		problems = append(problems, "Caller is longer than any key name (200 characters at most).")
	}
	if f.Since != "" {
		t, ok := parseAuditTime(f.Since, false)
		if !ok {
			problems = append(problems, "From is not a date and time: use the form's picker, or YYYY-MM-DD HH:MM (UTC).")
		}
		aq.Since = t
	} else {
		aq.Since = c.now().Add(-24 * time.Hour).UTC()
	}
	if f.Until != "" {
		t, ok := parseAuditTime(f.Until, true)
		if !ok {
			problems = append(problems, "To is not a date and time: use the form's picker, or YYYY-MM-DD HH:MM (UTC).")
		}
		aq.Until = t
	}
	if !aq.Until.IsZero() && aq.Until.Before(aq.Since) {
		problems = append(problems, "To is before From: nothing can match.")
	}
	if a := v.Get("after"); a != "" {
		n, err := strconv.ParseInt(a, 10, 64)
		if err != nil || n < 0 {
			problems = append(problems, "The page link is damaged: start again from the first page.")
		}
		aq.After = n
	}
	if len(problems) > 0 {
		p.Problem = strings.Join(problems, " ")
		c.render(w, r, q, http.StatusBadRequest, "audit", p)
		return
	}
	entries, err := c.store.Audit(r.Context(), aq)
	if err != nil {
		c.internalError(w, r, q, "audit", err)
		return
	}
	if len(entries) > auditPageSize {
		entries = entries[:auditPageSize]
		view.Next = auditLink(f, entries[len(entries)-1].ID)
	}
	if aq.After > 0 {
		view.First = auditLink(f, 0)
	}
	view.Entries = entries
	view.Window = auditWindow(f, aq)
	rec := api.RecordOf(r.Context())
	rec.ResourceType, rec.Records = "audit", len(entries)
	c.render(w, r, q, http.StatusOK, "audit", p)
}

// auditLink is the audit page's address for the filter f, from the entry
// after the one with id after (0: the first page). It is built with
// url.Values, so it is safe as an href as it stands (template.URL keeps
// html/template from escaping its query a second time).
func auditLink(f auditFilter, after int64) template.URL {
	v := url.Values{}
	if f.Caller != "" {
		v.Set("caller", f.Caller)
	}
	if f.Since != "" {
		v.Set("since", f.Since)
	}
	if f.Until != "" {
		v.Set("until", f.Until)
	}
	if after > 0 {
		v.Set("after", strconv.FormatInt(after, 10))
	}
	return template.URL(Prefix + "audit?" + v.Encode())
}

// auditWindow says which entries the page lists.
func auditWindow(f auditFilter, aq store.AuditQuery) string {
	who := "every caller"
	if f.Caller != "" {
		who = "caller " + f.Caller
	}
	const layout = "2006-01-02 15:04 UTC"
	when := "since " + aq.Since.Format(layout)
	if f.Since == "" {
		when = "in the last 24 hours"
	}
	if !aq.Until.IsZero() {
		when += ", until " + aq.Until.Format(layout)
	}
	return fmt.Sprintf("Entries of %s %s, oldest first.", who, when)
}

// actionNames are the FHIR AuditEvent action codes in words.
var actionNames = map[string]string{"C": "create", "R": "read", "U": "update", "D": "delete", "E": "execute"}

func actionName(code string) string {
	if n, ok := actionNames[code]; ok {
		return n
	}
	return code
}
