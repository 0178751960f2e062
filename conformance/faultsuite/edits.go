package faultsuite

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ipsfhir/ipsfhir/conformance/faultproxy"
	"github.com/ipsfhir/ipsfhir/ips"
	"github.com/ipsfhir/ipsfhir/mappings"
)

// The edits of both sides, and what the run expects the end state to be.
//
// The two sides never touch the same field: the IPS side (through
// /api/v1) changes goal descriptions and targets, job hours and supports,
// which the program owns; a clinician (on the peer, as the EHR's own UI
// would) changes a goal's lifecycle status or adds a note, which the
// clinic owns. So every field has one last writer, the expected final
// value is that writer's last value, and a correct adapter records no
// conflict at all.
//
// Both sides edit the way a careful client does: read, change one field,
// write back only if nothing changed in between (If-Match), else read
// again. Without that the harness itself would revert the other side's
// change, and blame the adapter for it.

// Edit kinds, as the report counts them.
const (
	editGoalDescription = "goal-description"
	editGoalTarget      = "goal-target"
	editJobHours        = "job-hours"
	editSupportNote     = "support-note"
	editSupportAdd      = "support-add"
	editGoalStatus      = "goal-status"
	editGoalNote        = "goal-note"
)

// expectation is the state the run expects at the end: the imported
// caseload with every confirmed edit applied.
type expectation struct {
	mu      sync.Mutex
	clients map[string]*ips.Client
	ids     []string
	// fields each side set last, by fieldKey; ambiguous ones (an edit
	// whose outcome is unknown) are not checked.
	apiSet    map[string]bool
	clinSet   map[string]bool
	ambiguous map[string]bool

	ipsKinds, clinKinds map[string]int
	unconfirmed         int
	editErrors          map[string]int // edits refused for a reason other than a race

	log []journalEntry // confirmed edits, in order
	// clinVersions are the EHR versions the clinician wrote, by goal
	// ("client/goal"), and the Goal's EHR id: the checks look at what the
	// adapter wrote right after each.
	clinVersions map[string][]string
	goalEHRID    map[string]string

	locks sync.Map // per client (IPS side) or goal (clinician side): *sync.Mutex
}

func newExpectation(cl *ips.Caseload) *expectation {
	e := &expectation{clients: map[string]*ips.Client{}, apiSet: map[string]bool{}, clinSet: map[string]bool{},
		ambiguous: map[string]bool{}, ipsKinds: map[string]int{}, clinKinds: map[string]int{}, editErrors: map[string]int{},
		clinVersions: map[string][]string{}, goalEHRID: map[string]string{}}
	for _, c := range cl.Clients {
		e.clients[c.ID] = cloneClient(c)
		e.ids = append(e.ids, c.ID)
	}
	slices.Sort(e.ids)
	return e
}

func cloneClient(c *ips.Client) *ips.Client {
	b, err := json.Marshal(c)
	if err != nil {
		panic("faultsuite: encode client: " + err.Error())
	}
	var out ips.Client
	if err := json.Unmarshal(b, &out); err != nil {
		panic("faultsuite: decode client: " + err.Error())
	}
	return &out
}

func fieldKey(client, kind, record, field string) string {
	return client + "/" + kind + "/" + record + "/" + field
}

func (e *expectation) lock(key string) func() {
	m, _ := e.locks.LoadOrStore(key, &sync.Mutex{})
	mu := m.(*sync.Mutex)
	mu.Lock()
	return mu.Unlock
}

func (e *expectation) editError(what string) {
	e.mu.Lock()
	e.editErrors[what]++
	e.mu.Unlock()
}

// ipsChange is one IPS-side edit: the record it addresses and how to
// apply it to a client (the stored one, or the expected one).
type ipsChange struct {
	kind    string
	client  string
	plural  string // goals, supports, jobs
	record  string
	field   string
	apply   func(c *ips.Client) any // changes c, returns the record to send
	present func(c *ips.Client) bool
	token   string // for the journal
}

// planIPSEdit picks an IPS-owned field of a random client and a new value
// unique to edit n.
func (e *expectation) planIPSEdit(rng *rand.Rand, n int) ipsChange {
	e.mu.Lock()
	id := e.ids[rng.IntN(len(e.ids))]
	c := e.clients[id]
	var kinds []string
	if len(c.Goals) > 0 {
		kinds = append(kinds, editGoalDescription, editGoalTarget)
	}
	if len(c.Jobs) > 0 {
		kinds = append(kinds, editJobHours)
	}
	if len(c.Supports) > 0 {
		kinds = append(kinds, editSupportNote)
	}
	kinds = append(kinds, editSupportAdd)
	kind := kinds[rng.IntN(len(kinds))]
	ch := ipsChange{kind: kind, client: id, token: kind}
	switch kind {
	case editGoalDescription, editGoalTarget:
		g := c.Goals[rng.IntN(len(c.Goals))]
		ch.plural, ch.record = "goals", g.ID
		if kind == editGoalDescription {
			words := fmt.Sprintf("Find steady work I can keep, revision %d", n)
			ch.field, ch.token = "description", fmt.Sprintf("description rev %d", n)
			ch.apply = func(c *ips.Client) any { g := c.Goal(ch.record); g.Description = words; return g }
			ch.present = func(c *ips.Client) bool { g := c.Goal(ch.record); return g != nil && g.Description == words }
		} else {
			hours := float64(10 + n%25)
			ch.field, ch.token = "target", fmt.Sprintf("target %g", hours)
			ch.apply = func(c *ips.Client) any { g := c.Goal(ch.record); g.TargetHoursPerWeek = &hours; return g }
			ch.present = func(c *ips.Client) bool {
				g := c.Goal(ch.record)
				return g != nil && g.TargetHoursPerWeek != nil && *g.TargetHoursPerWeek == hours
			}
		}
	case editJobHours:
		j := c.Jobs[rng.IntN(len(c.Jobs))]
		hours := float64(8+n%30) + 0.5
		ch.plural, ch.record, ch.field, ch.token = "jobs", j.ID, "hoursPerWeek", fmt.Sprintf("hours %g", hours)
		ch.apply = func(c *ips.Client) any { j := jobOf(c, ch.record); j.HoursPerWeek = hours; return j }
		ch.present = func(c *ips.Client) bool { j := jobOf(c, ch.record); return j != nil && j.HoursPerWeek == hours }
	case editSupportNote:
		s := c.Supports[rng.IntN(len(c.Supports))]
		note := fmt.Sprintf("Plan reviewed with the team, revision %d", n)
		ch.plural, ch.record, ch.field, ch.token = "supports", s.ID, "note", fmt.Sprintf("note rev %d", n)
		ch.apply = func(c *ips.Client) any { s := supportOf(c, ch.record); s.Note = note; return s }
		ch.present = func(c *ips.Client) bool { s := supportOf(c, ch.record); return s != nil && s.Note == note }
	case editSupportAdd:
		sid := fmt.Sprintf("fs%d", n)
		date := c.EnrolledOn
		ch.plural, ch.record, ch.field = "supports", sid, "added"
		ch.apply = func(c *ips.Client) any {
			s := &ips.Support{ID: sid, Type: ips.SupportTeamMeeting, Status: ips.SupportPlanned, Date: date}
			c.Supports = append(c.Supports, s)
			return s
		}
		ch.present = func(c *ips.Client) bool { return supportOf(c, sid) != nil }
	}
	e.mu.Unlock()
	return ch
}

func jobOf(c *ips.Client, id string) *ips.Job {
	for _, j := range c.Jobs {
		if j.ID == id {
			return j
		}
	}
	return nil
}

func supportOf(c *ips.Client, id string) *ips.Support {
	for _, s := range c.Supports {
		if s.ID == id {
			return s
		}
	}
	return nil
}

// ipsEdit makes one IPS-side edit through a random live replica and, once
// it is known to be stored, records it as expected. A call whose answer
// is lost (its replica was killed) is settled by reading the client back:
// the new value is unique, so it is either there or the edit is redone.
// until bounds the whole effort; an edit still unsettled then is counted
// unconfirmed and its field is left out of the checks.
func (r *run) ipsEdit(until context.Context, rng *rand.Rand, n int) {
	e := r.exp
	ch := e.planIPSEdit(rng, n)
	defer e.lock("client:" + ch.client)()
	sent := false
	for attempt := 0; ; attempt++ {
		if until.Err() != nil {
			e.mu.Lock()
			if sent {
				e.unconfirmed++
				e.ambiguous[fieldKey(ch.client, ch.plural, ch.record, ch.field)] = true
			}
			e.mu.Unlock()
			return
		}
		if attempt > 0 {
			sleepCtx(until, 200*time.Millisecond)
		}
		api := r.randomAPI(rng)
		if api == nil {
			continue
		}
		cur, etag, err := api.getClient(until, ch.client)
		if err != nil {
			continue
		}
		if sent && ch.present(cur) {
			break
		}
		rec := ch.apply(cur)
		rid := ch.record
		if ch.kind == editSupportAdd {
			rid = ""
		}
		sent = true
		status, err := api.putRecord(until, ch.client, ch.plural, rid, etag, rec)
		switch {
		case err != nil, status >= 500:
			continue // outcome unknown: read back next round
		case status == http.StatusOK || status == http.StatusCreated:
		case status == http.StatusPreconditionFailed || status == http.StatusConflict:
			sent = false // not applied: another write came first
			continue
		default:
			e.editError(fmt.Sprintf("API %s %s: HTTP %d", ch.kind, ch.plural, status))
			return
		}
		break
	}
	e.mu.Lock()
	ch.apply(e.clients[ch.client])
	e.apiSet[fieldKey(ch.client, ch.plural, ch.record, ch.field)] = true
	e.journal("ips", fieldKey(ch.client, ch.plural, ch.record, ch.field), ch.token)
	e.ipsKinds[ch.kind]++
	e.mu.Unlock()
}

// clinicianEdit changes a random goal's lifecycle status, or adds a note,
// directly on the peer: read the Goal, change one clinician-owned field,
// PUT it back with If-Match. A goal not in the EHR yet is skipped.
func (r *run) clinicianEdit(ctx context.Context, rng *rand.Rand, n int) {
	e := r.exp
	e.mu.Lock()
	var cands []string
	for _, id := range e.ids {
		if c := e.clients[id]; consents(c) && len(c.Goals) > 0 {
			cands = append(cands, id)
		}
	}
	if len(cands) == 0 {
		e.mu.Unlock()
		return
	}
	cid := cands[rng.IntN(len(cands))]
	c := e.clients[cid]
	gid := c.Goals[rng.IntN(len(c.Goals))].ID
	kind := editGoalStatus
	if rng.IntN(2) == 0 {
		kind = editGoalNote
	}
	e.mu.Unlock()
	defer e.lock("goal:" + cid + "/" + gid)()

	key := mappings.Key{Program: r.program, Kind: mappings.KindGoal, Client: cid, Record: gid}
	for attempt := 0; attempt < 5; attempt++ {
		found, err := r.peerFHIR.searchAll(ctx, "Goal", url.Values{"identifier": {key.System() + "|" + key.Value()}})
		if err != nil {
			e.editError("clinician search: " + err.Error())
			return
		}
		if len(found) == 0 {
			r.clinSkipped.Add(1)
			return // not in the EHR yet
		}
		var g map[string]any
		if err := json.Unmarshal(found[0], &g); err != nil {
			e.editError("clinician: unreadable Goal")
			return
		}
		id, version, _ := identifiers(found[0])
		switch kind {
		case editGoalStatus:
			cur, _ := g["lifecycleStatus"].(string)
			choices := slices.DeleteFunc([]string{"active", "on-hold", "completed"}, func(s string) bool { return s == cur })
			g["lifecycleStatus"] = choices[rng.IntN(len(choices))]
		case editGoalNote:
			notes, _ := g["note"].([]any)
			g["note"] = append(notes, map[string]any{
				"text": fmt.Sprintf("Clinician note %d: talked about work at the visit", n),
				"time": fmt.Sprintf("2026-10-%02d", 1+n%28),
			})
		}
		body, err := json.Marshal(g)
		if err != nil {
			e.editError("clinician: encode Goal")
			return
		}
		sent := time.Now()
		rep, err := r.peerFHIR.do(ctx, http.MethodPut, "Goal/"+url.PathEscape(id), body, map[string]string{"If-Match": `W/"` + version + `"`})
		if r.proxyLog != nil && err == nil {
			r.proxyLog.Record(faultproxy.LoggedRequest{By: "clinician", Start: sent, End: time.Now(), Method: http.MethodPut,
				Path: "Goal/" + id, IfMatch: `W/"` + version + `"`, Status: rep.Status, ETag: rep.Header.Get("ETag")}, body, rep.Body)
		}
		if err != nil {
			e.editError("clinician PUT: " + err.Error())
			return
		}
		switch rep.Status {
		case http.StatusOK, http.StatusCreated:
		case http.StatusPreconditionFailed, http.StatusConflict:
			continue // the adapter wrote meanwhile: read again
		default:
			e.editError(fmt.Sprintf("clinician PUT Goal: HTTP %d", rep.Status))
			return
		}
		// What the adapter will read back: the reverse mapping of what was
		// written, so dates and codes compare as the adapter sees them.
		cr, err := mappings.ParseResource(body)
		if err != nil || cr.GetGoal() == nil {
			e.editError("clinician: the written Goal does not parse")
			return
		}
		_, ehrGoal, err := mappings.GoalFromFHIR(cr.GetGoal())
		if err != nil {
			e.editError("clinician: the written Goal does not map back")
			return
		}
		e.mu.Lock()
		if v := versionOf(rep); v != "" {
			e.clinVersions[cid+"/"+gid] = append(e.clinVersions[cid+"/"+gid], v)
			e.goalEHRID[cid+"/"+gid] = id
		}
		eg := e.clients[cid].Goal(gid)
		switch kind {
		case editGoalStatus:
			eg.Status = ehrGoal.Status
			e.clinSet[fieldKey(cid, "goals", gid, "status")] = true
			e.journal("clinician", fieldKey(cid, "goals", gid, "status"), "status "+string(ehrGoal.Status))
		case editGoalNote:
			eg.Notes = ehrGoal.Notes
			e.clinSet[fieldKey(cid, "goals", gid, "notes")] = true
			e.journal("clinician", fieldKey(cid, "goals", gid, "notes"), fmt.Sprintf("notes %d", len(ehrGoal.Notes)))
		}
		e.clinKinds[kind]++
		e.mu.Unlock()
		return
	}
	r.clinRaced.Add(1)
}

// consents says whether the client's records may reach the EHR; the
// suite's configuration leaves consent.ehr at its default, true.
func consents(c *ips.Client) bool {
	if c.Consent != nil && c.Consent.EHR != nil {
		return *c.Consent.EHR
	}
	return true
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// paced calls f about perSecond times a second from workers goroutines
// until ctx ends, giving each call a sequence number.
func paced(ctx context.Context, perSecond float64, workers int, seq func() int, f func(n int)) {
	if perSecond <= 0 {
		return
	}
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			every := time.Duration(float64(time.Second) * float64(workers) / perSecond)
			next := time.Now().Add(time.Duration(w) * every / time.Duration(workers))
			for {
				sleepCtx(ctx, time.Until(next))
				if ctx.Err() != nil {
					return
				}
				f(seq())
				next = next.Add(every)
				if behind := time.Since(next); behind > 2*time.Second {
					next = time.Now() // do not burst to catch up after a stall
				}
			}
		}()
	}
	wg.Wait()
}

// versionOf is the version a write created: its ETag, or the body's
// meta.versionId.
func versionOf(rep *fhirReply) string {
	if et := rep.Header.Get("ETag"); et != "" {
		return strings.Trim(strings.TrimPrefix(et, "W/"), `"`)
	}
	_, v, _ := identifiers(rep.Body)
	return v
}
