package faultsuite

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/ipsfhir/ipsfhir/conformance/faultproxy"
	"github.com/ipsfhir/ipsfhir/ips"
	"github.com/ipsfhir/ipsfhir/mappings"
)

// A failed check is easier to act on with its story: the edits each side
// made to the field, what the store holds, and the EHR's version history
// of the resource. Stories use tokens only (a status code, "rev 17" for
// the harness's own numbered descriptions, counts), never free text.

// journalEntry is one confirmed edit.
type journalEntry struct {
	at    time.Time
	side  string // ips or clinician
	key   string // fieldKey
	token string
}

func (e *expectation) journal(side, key, token string) {
	e.log = append(e.log, journalEntry{at: time.Now(), side: side, key: key, token: token})
}

var revision = regexp.MustCompile(`revision (\d+)$`)

// textToken stands for a description or note the harness may have
// written: "rev N" for its own, "original" for the caseload's.
func textToken(s string) string {
	if s == "" {
		return "none"
	}
	if m := revision.FindStringSubmatch(s); m != nil {
		return "rev " + m[1]
	}
	return "original"
}

// describeResource renders a resource for the proxy's request log: type,
// id and version, and for a Goal its tokens (status, description, notes).
func describeResource(raw json.RawMessage) string {
	var r struct {
		ResourceType string `json:"resourceType"`
		ID           string `json:"id"`
		Meta         struct {
			VersionID string `json:"versionId"`
		} `json:"meta"`
		LifecycleStatus string `json:"lifecycleStatus"`
		// An object on a Goal, a string on a CarePlan.
		Description json.RawMessage   `json:"description"`
		Note        []json.RawMessage `json:"note"`
	}
	if json.Unmarshal(raw, &r) != nil {
		return "unreadable"
	}
	s := r.ResourceType
	if r.ID != "" {
		s += "/" + r.ID
	}
	if r.Meta.VersionID != "" {
		s += "/_history/" + r.Meta.VersionID
	}
	if r.ResourceType == "Goal" {
		var d struct {
			Text string `json:"text"`
		}
		_ = json.Unmarshal(r.Description, &d)
		s += fmt.Sprintf(" status %s, description %s, %d notes", r.LifecycleStatus, textToken(d.Text), len(r.Note))
	}
	return s
}

func goalToken(g *ips.Goal) string {
	if g == nil {
		return "absent"
	}
	t := "none"
	if g.TargetHoursPerWeek != nil {
		t = fmt.Sprintf("%g", *g.TargetHoursPerWeek)
	}
	return fmt.Sprintf("status %s, description %s, target %s, %d notes", g.Status, textToken(g.Description), t, len(g.Notes))
}

const maxStories = 6

// stories explains up to maxStories goal mismatches and conflicts.
func (r *run) stories(ctx context.Context, stored map[string]*ips.Client, goalIDs map[string]string, conflicts []Conflict) {
	rep := r.report
	seen := map[string]bool{}
	all := slices.Clone(rep.Mismatches)
	for _, c := range conflicts {
		system, value, _ := strings.Cut(c.Key, "|")
		if k, ok := mappings.ParseKey(system, value); ok && k.Kind == mappings.KindGoal {
			all = append(all, Mismatch{Check: "conflict", Kind: "goal", Field: c.Field, Client: k.Client, Record: k.Record})
		}
	}
	for _, m := range all {
		if len(rep.Stories) >= maxStories {
			return
		}
		if m.Kind != "goal" || (m.Check != "stale" && m.Check != "reverted" && m.Check != "clinician-missing" && m.Check != "conflict") {
			continue
		}
		id := m.Client + "/" + m.Record
		if seen[id] {
			continue
		}
		seen[id] = true
		var b strings.Builder
		fmt.Fprintf(&b, "goal %s (%s %s):", id, m.Check, m.Field)
		prefix := fieldKey(m.Client, "goals", m.Record, "")
		var edits []string
		for _, j := range r.exp.log {
			if strings.HasPrefix(j.key, prefix) {
				edits = append(edits, fmt.Sprintf("%s %s %s", j.at.Format("15:04:05.000"), j.side, j.token))
			}
		}
		fmt.Fprintf(&b, "\n      edits: %s", orNone(edits))
		fmt.Fprintf(&b, "\n      expected: %s", goalToken(r.exp.clients[m.Client].Goal(m.Record)))
		if c := stored[m.Client]; c != nil {
			fmt.Fprintf(&b, "\n      store: %s", goalToken(c.Goal(m.Record)))
		}
		if rid := goalIDs[id]; rid != "" {
			fmt.Fprintf(&b, "\n      EHR history: %s", r.goalHistory(ctx, rid))
		}
		rep.Stories = append(rep.Stories, b.String())
	}
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, "; ")
}

// goalVersion is one version of a Goal in the EHR's history.
type goalVersion struct {
	id, at string
	status string
	notes  string // the notes' texts, for comparison only
	nNotes int
	desc   string
}

// goalVersions reads a Goal's history on the peer, oldest first.
func (r *run) goalVersions(ctx context.Context, id string) ([]goalVersion, error) {
	rep, err := r.peerFHIR.do(ctx, http.MethodGet, "Goal/"+url.PathEscape(id)+"/_history", nil, nil)
	if err != nil {
		return nil, err
	}
	if rep.Status != http.StatusOK {
		return nil, fmt.Errorf("faultsuite: Goal history: HTTP %d", rep.Status)
	}
	var b struct {
		Entry []struct {
			Resource struct {
				Meta struct {
					VersionID   string `json:"versionId"`
					LastUpdated string `json:"lastUpdated"`
				} `json:"meta"`
				LifecycleStatus string `json:"lifecycleStatus"`
				Description     struct {
					Text string `json:"text"`
				} `json:"description"`
				Note json.RawMessage `json:"note"`
			} `json:"resource"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(rep.Body, &b); err != nil {
		return nil, fmt.Errorf("faultsuite: Goal history: not a Bundle")
	}
	var vs []goalVersion
	for _, e := range b.Entry {
		x := e.Resource
		var notes []struct {
			Text string `json:"text"`
		}
		_ = json.Unmarshal(x.Note, &notes)
		var texts []string
		for _, n := range notes {
			texts = append(texts, n.Text)
		}
		vs = append(vs, goalVersion{id: x.Meta.VersionID, at: x.Meta.LastUpdated, status: x.LifecycleStatus,
			notes: strings.Join(texts, "\x00"), nNotes: len(notes), desc: x.Description.Text})
	}
	slices.SortStableFunc(vs, func(a, b goalVersion) int { return strings.Compare(a.at, b.at) })
	return vs, nil
}

// goalHistory summarises a Goal's versions on the peer, oldest first.
func (r *run) goalHistory(ctx context.Context, id string) string {
	vs, err := r.goalVersions(ctx, id)
	if err != nil {
		return "unavailable"
	}
	out := make([]string, len(vs))
	for i, v := range vs {
		at := v.at
		if t, err := time.Parse(time.RFC3339Nano, at); err == nil {
			at = t.Local().Format("15:04:05.000")
		}
		out[i] = fmt.Sprintf("%s status %s, description %s, %d notes", at, v.status, textToken(v.desc), v.nNotes)
	}
	return "\n        " + strings.Join(out, "\n        ")
}

// duplicateStory says when each copy of a duplicated record was first
// written: copies a hang apart (the EHR timeout + 5 s) point at a hung create that landed after
// the adapter gave up on it, copies close together at a lost reply.
func duplicateStory(k mappings.Key, copies []ehrCopy) string {
	var firsts []time.Time
	for _, c := range copies {
		var r struct {
			Meta struct {
				LastUpdated string `json:"lastUpdated"`
			} `json:"meta"`
		}
		_ = json.Unmarshal(c.raw, &r)
		t, _ := time.Parse(time.RFC3339Nano, r.Meta.LastUpdated)
		firsts = append(firsts, t)
	}
	slices.SortFunc(firsts, func(a, b time.Time) int { return a.Compare(b) })
	var parts []string
	for i, t := range firsts {
		p := t.Local().Format("15:04:05.000")
		if i > 0 {
			p += fmt.Sprintf(" (+%.1fs)", t.Sub(firsts[0]).Seconds())
		}
		parts = append(parts, p)
	}
	return fmt.Sprintf("%s %s %s: %d copies, last updated at %s", copies[0].typ, k.Kind, k.Value(), len(copies), strings.Join(parts, ", "))
}

// faultsByRequest counts the proxy's logged faults by method, resource
// type and kind ("POST Observation lost-reply"), from its last 1,000.
func faultsByRequest(log []faultproxy.Fault) map[string]int {
	out := map[string]int{}
	for _, f := range log {
		rt := f.ResourceType
		if rt == "" {
			rt = "-"
		}
		out[f.Method+" "+rt+" "+string(f.Kind)]++
	}
	return out
}

// checkOverwrites looks at what the EHR held right after each clinician
// edit: the next version, if the adapter wrote it, must keep the
// clinician's status and notes (the program never changes those). A later
// clinician edit can hide such an overwrite from the end-state checks,
// so the history is the only place it shows.
func (r *run) checkOverwrites(ctx context.Context) {
	rep, e := r.report, r.exp
	for _, goal := range slices.Sorted(maps.Keys(e.clinVersions)) {
		mine := map[string]bool{}
		for _, v := range e.clinVersions[goal] {
			mine[v] = true
		}
		vs, err := r.goalVersions(ctx, e.goalEHRID[goal])
		if err != nil {
			rep.fail("cannot read a Goal's history: %v", err)
			return
		}
		cid, gid, _ := strings.Cut(goal, "/")
		for i := 0; i+1 < len(vs); i++ {
			cur, next := vs[i], vs[i+1]
			if !mine[cur.id] || mine[next.id] {
				continue
			}
			var fields []string
			if next.status != cur.status {
				fields = append(fields, "status")
			}
			if next.notes != cur.notes {
				fields = append(fields, "notes")
			}
			for _, f := range fields {
				rep.Overwritten++
				rep.Mismatches = append(rep.Mismatches, Mismatch{Check: "clinician-overwritten", ResourceType: "Goal", Kind: "goal", Field: f, Client: cid, Record: gid})
			}
			if len(fields) > 0 && len(rep.Stories) < maxStories {
				rep.Stories = append(rep.Stories, fmt.Sprintf("goal %s (clinician-overwritten %s): the adapter's next version replaced the clinician's %s with %s%s",
					goal, strings.Join(fields, ", "), versionToken(cur), versionToken(next), r.goalHistory(ctx, e.goalEHRID[goal])))
			}
		}
	}
}

func versionToken(v goalVersion) string {
	return fmt.Sprintf("(status %s, %d notes)", v.status, v.nNotes)
}
