package syncer

import (
	"encoding/json"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ipsfhir/ipsfhir/adapter/ehr"
	"github.com/ipsfhir/ipsfhir/adapter/plan"
	"github.com/ipsfhir/ipsfhir/adapter/store"
	"github.com/ipsfhir/ipsfhir/conformance/faultproxy"
	"github.com/ipsfhir/ipsfhir/ips"
	"github.com/ipsfhir/ipsfhir/mappings"
)

// ehrProvenance is a Provenance as the EHR holds it.
type ehrProvenance struct {
	ID   string `json:"id"`
	Meta struct {
		Tag []struct{ System, Code string } `json:"tag"`
	} `json:"meta"`
	Target []struct {
		Reference string `json:"reference"`
	} `json:"target"`
	Recorded string `json:"recorded"`
	Agent    []struct {
		Type struct {
			Coding []struct{ System, Code string } `json:"coding"`
		} `json:"type"`
		Who        ehrRef  `json:"who"`
		OnBehalfOf *ehrRef `json:"onBehalfOf"`
	} `json:"agent"`
}

type ehrRef struct {
	Type       string `json:"type"`
	Display    string `json:"display"`
	Identifier *struct {
		System, Value string
	} `json:"identifier"`
}

// identity is the Provenance's identity tag, system|code.
func (p ehrProvenance) identity() string {
	for _, t := range p.Meta.Tag {
		if strings.HasSuffix(t.System, ":"+string(mappings.KindProvenance)) {
			return t.System + "|" + t.Code
		}
	}
	return ""
}

// provenances reads every Provenance the EHR holds, by identity.
func (r *rig) provenances(t *testing.T) map[string][]ehrProvenance {
	t.Helper()
	es, err := r.client.Search(t.Context(), "Provenance", url.Values{"_count": {"1000"}})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]ehrProvenance{}
	for _, e := range es {
		var p ehrProvenance
		if err := json.Unmarshal(e.Resource, &p); err != nil {
			t.Fatal(err)
		}
		out[p.identity()] = append(out[p.identity()], p)
	}
	return out
}

// checkProvenances checks the EHR's Provenances against what the adapter
// wrote of types: each content (canonical hash) that a version of an
// adapter-written resource held has exactly one Provenance, with the
// identity of the record and content, the resource as target (in a
// versioned target, a version holding that content), a write time and the
// program's agents. Where the EHR keeps no history, only the current
// content is known, and an older Provenance of the record must still be
// one (by its identity) and target the resource. Every Provenance is one
// of these. It returns how many Provenances were checked.
func (r *rig) checkProvenances(t *testing.T, types ...string) int {
	t.Helper()
	ctx := t.Context()
	provs := r.provenances(t)
	checked := map[string]bool{}
	for _, typ := range types {
		es, err := r.client.Search(ctx, typ, url.Values{"_count": {"1000"}})
		if err != nil {
			t.Fatal(err)
		}
		history := r.conn.Plan.Allows(typ, "history-instance")
		for _, e := range es {
			var res struct {
				ID         string                           `json:"id"`
				Identifier []struct{ System, Value string } `json:"identifier"`
			}
			if err := json.Unmarshal(e.Resource, &res); err != nil {
				t.Fatal(err)
			}
			var k mappings.Key
			for _, id := range res.Identifier {
				if kk, ok := mappings.ParseKey(id.System, id.Value); ok && kk.Program == r.cl.ProgramID() {
					k = kk
				}
			}
			if k.Kind == "" {
				continue
			}
			// The versions the EHR keeps, or what it holds now.
			versions := []json.RawMessage{e.Resource}
			if history {
				hs, err := r.client.History(ctx, typ, res.ID)
				if err != nil {
					t.Fatal(err)
				}
				versions = versions[:0]
				for _, h := range hs {
					versions = append(versions, h.Resource)
				}
			}
			byHash := map[string][]string{} // content hash → versions holding it
			for _, v := range versions {
				cur, err := r.engine.currentOf(ctx, r.conn, typ, v)
				if err != nil || cur.hash == "" {
					t.Fatalf("%s %s: cannot hash a version: %v", typ, k.Value(), err)
				}
				byHash[cur.hash] = append(byHash[cur.hash], cur.version)
			}
			c := clientByID(r.cl, k.Client)
			for h, vs := range byHash {
				id := ledgerKey(mappings.ProvenanceKey(mappings.Written{Key: k, ContentHash: h}))
				got := provs[id]
				checked[id] = true
				if len(got) != 1 {
					t.Errorf("%s %s, content %.8s: %d Provenances, want 1", typ, k.Value(), h, len(got))
					continue
				}
				r.checkProvenance(t, got[0], typ, res.ID, vs, c)
			}
			if history {
				continue
			}
			prefix := ledgerKey(mappings.ProvenanceKey(mappings.Written{Key: k}))
			for id, ps := range provs {
				if checked[id] || !strings.HasPrefix(id, prefix) {
					continue
				}
				checked[id] = true
				if len(ps) != 1 {
					t.Errorf("%s %s, an older content: %d Provenances, want 1", typ, k.Value(), len(ps))
				}
				r.checkProvenance(t, ps[0], typ, res.ID, nil, c)
			}
		}
	}
	for id, ps := range provs {
		if !checked[id] {
			t.Errorf("%d Provenance(s) with identity %q for nothing the adapter wrote", len(ps), id)
		}
	}
	n := 0
	for id := range checked {
		n += len(provs[id])
	}
	return n
}

// checkProvenance checks one Provenance of typ/id, whose content is held by
// versions vs, written for client c.
func (r *rig) checkProvenance(t *testing.T, p ehrProvenance, typ, id string, vs []string, c *ips.Client) {
	t.Helper()
	ref := ""
	if len(p.Target) == 1 {
		ref = p.Target[0].Reference
	}
	rid, version, _ := strings.Cut(strings.TrimPrefix(ref, typ+"/"), "/_history/")
	if !strings.HasPrefix(ref, typ+"/") || rid != id || (version != "" && vs != nil && !slices.Contains(vs, version)) {
		t.Errorf("Provenance %s targets %q; want %s/%s, at a version of %v if versioned", p.ID, ref, typ, id, vs)
	}
	if p.Recorded == "" {
		t.Errorf("Provenance %s has no recorded time", p.ID)
	}
	program := func(ref *ehrRef) bool {
		return ref != nil && ref.Type == "Organization" && ref.Identifier != nil &&
			ref.Identifier.System == mappings.SystemProgram && ref.Identifier.Value == r.cl.ProgramID()
	}
	var author, transmitter bool
	for _, a := range p.Agent {
		if len(a.Type.Coding) != 1 {
			t.Errorf("Provenance %s: agent type %+v", p.ID, a.Type)
			continue
		}
		switch cd := a.Type.Coding[0]; {
		case cd.System == mappings.SystemProvenanceParticipantType && cd.Code == "author":
			author = true
			if c != nil && c.Specialist != "" {
				if a.Who.Type != "Practitioner" || a.Who.Display != c.Specialist || !program(a.OnBehalfOf) {
					t.Errorf("Provenance %s: author %+v on behalf of %+v; want the specialist for the program", p.ID, a.Who, a.OnBehalfOf)
				}
			} else if !program(&a.Who) && (typ != "Practitioner" || a.Who.Type != "Practitioner" || !program(a.OnBehalfOf)) {
				// A record of no one client (the specialist's shared
				// Practitioner) may name the specialist who wrote it.
				t.Errorf("Provenance %s: author %+v; want the program", p.ID, a.Who)
			}
		case cd.System == mappings.SystemUSCoreProvenanceParticipantType && cd.Code == "transmitter":
			transmitter = true
			if a.Who.Type != "Device" || a.Who.Identifier == nil || a.Who.Identifier.Value != mappings.AdapterDeviceID || !program(a.OnBehalfOf) {
				t.Errorf("Provenance %s: transmitter %+v on behalf of %+v; want the adapter for the program", p.ID, a.Who, a.OnBehalfOf)
			}
		}
	}
	if !author || !transmitter || len(p.Agent) != 2 {
		t.Errorf("Provenance %s: %d agents, author %v, transmitter %v", p.ID, len(p.Agent), author, transmitter)
	}
}

func clientByID(cl *ips.Caseload, id string) *ips.Client {
	for _, c := range cl.Clients {
		if c.ID == id {
			return c
		}
	}
	return nil
}

// writtenTypes are the resource types the rig's plan writes.
func (r *rig) writtenTypes() []string {
	var out []string
	for _, c := range r.conn.Plan.Concepts {
		if c.Path == plan.Native && c.ResourceType != "" && !slices.Contains(out, c.ResourceType) {
			out = append(out, c.ResourceType)
		}
	}
	return out
}

// TestProvenanceForEachWrite: where the EHR takes Provenance, every
// resource the adapter writes has one per written content, with its target
// and agents: in the client's transaction (no Provenance request of its
// own), and one by one right after each write (its version as target). A
// pass that writes nothing writes no Provenance; a changed record gets a
// second one for its new version.
func TestProvenanceForEachWrite(t *testing.T) {
	t.Parallel()
	for _, bundles := range []string{"transaction", "none"} {
		t.Run(bundles, func(t *testing.T) {
			r := newRig(t, "")
			ctx := t.Context()
			r.conn.Plan.Bundles = bundles
			if !r.conn.Plan.WritesProvenance() || r.conn.Plan.Type("Provenance").Idempotency != plan.ConditionalCreate {
				t.Fatalf("own-mode plan: %s", r.conn.Plan.ProvenanceWhy())
			}
			cnt := &countingEHR{EHR: r.conn.EHR}
			r.conn.EHR = cnt
			r.enqueueAll(t)
			s, err := r.engine.PushOnce(ctx)
			if err != nil || s.Failed != 0 || s.Written == 0 {
				t.Fatalf("push: %+v %v", s, err)
			}
			if s.Provenances != s.Written {
				t.Errorf("%d Provenances for %d resources written", s.Provenances, s.Written)
			}
			switch bundles {
			case "transaction":
				if cnt.provenances != 0 {
					t.Errorf("%d Provenance creates besides the transactions, want none", cnt.provenances)
				}
			case "none":
				if cnt.provenances != s.Written {
					t.Errorf("%d Provenance creates one by one for %d writes", cnt.provenances, s.Written)
				}
			}
			if n := r.checkProvenances(t, r.writtenTypes()...); n != s.Written {
				t.Errorf("%d Provenances in the EHR, %d writes", n, s.Written)
			}

			// Nothing changed: nothing written, no Provenance.
			r.enqueueAll(t)
			before := cnt.writeCounts
			if s, err := r.engine.PushOnce(ctx); err != nil || s.Written != 0 || s.Provenances != 0 || cnt.writeCounts != before {
				t.Errorf("second push: %+v %v, requests %+v → %+v; want nothing", s, err, before, cnt.writeCounts)
			}

			// A changed goal: its new version gets its own Provenance
			// (and so does the plan, whose narrative names the goal).
			c, g, _ := r.firstGoal()
			r.editGoal(t, c.ID, g.ID, func(g *ips.Goal) { g.Description = "Work afternoons at the library" })
			s, err = r.engine.PushOnce(ctx)
			if err != nil || s.Failed != 0 || s.Written == 0 || s.Provenances != s.Written {
				t.Fatalf("push after an edit: %+v %v", s, err)
			}
			r.checkProvenances(t, r.writtenTypes()...)
		})
	}
}

// TestNoDuplicateProvenanceAfterLostReplies: the EHR applies a write and
// the answer is lost, once for each kind of request that carries a
// Provenance: the client's transaction (the one-by-one pass that follows
// finds what it wrote), a resource's own write and the Provenance's create
// (the item fails and is retried). No second Provenance is made and none
// is missed; a lost Provenance fails the item with a provenance reason
// after every resource was written, and its retry writes no resource
// again.
func TestNoDuplicateProvenanceAfterLostReplies(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, bundles string
		lose          faultproxy.Match
	}{
		{"transaction", "transaction", faultproxy.Match{Method: "POST", Func: func(_, path, _ string) bool { return path == "" }}},
		{"resource write", "none", faultproxy.Match{Method: "PUT", PathPrefix: "CarePlan"}},
		{"provenance create", "none", faultproxy.Match{Method: "POST", PathPrefix: "Provenance"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, "")
			ctx := t.Context()
			r.conn.Plan.Bundles = tc.bundles
			p := r.proxied(t)
			c := consenting(r.cl)[0]
			if err := r.saveOne(t, c); err != nil {
				t.Fatal(err)
			}
			lost := p.Once(tc.lose, faultproxy.KindLostReply)
			s, err := r.engine.PushOnce(ctx)
			if err != nil || (s.Failed != 1 && tc.bundles != "transaction") {
				t.Fatalf("push with a lost answer: %+v %v; want the item failed", s, err)
			}
			<-lost.Done()
			if tc.name == "provenance create" {
				reason := ""
				for r := range s.Failures {
					reason = r
				}
				if !strings.HasPrefix(reason, "provenance: ") || s.Written == 0 || s.Unchanged != 0 {
					t.Errorf("a lost Provenance: %+v, reason %q; want resources written and a provenance reason", s, reason)
				}
			}
			makeDue(t, r)
			s2, err := r.engine.PushOnce(ctx)
			if err != nil || s2.Failed != 0 {
				t.Fatalf("retry: %+v %v", s2, err)
			}
			// After a lost Provenance every resource was written already
			// (the failure came after them), and none is written again.
			if tc.name == "provenance create" && (s2.Written != 0 || s2.Unchanged != s.Written) {
				t.Errorf("retry: %+v after %d written; want every resource unchanged, none written again", s2, s.Written)
			}
			for id, ps := range r.provenances(t) {
				if len(ps) != 1 {
					t.Errorf("%d Provenances with identity %s", len(ps), id)
				}
			}
			r.checkProvenances(t, r.writtenTypes()...)
		})
	}
}

// saveOne saves one client (new to the store), queued for the connection.
func (r *rig) saveOne(t *testing.T, c *ips.Client) error {
	t.Helper()
	_, err := r.store.SaveClients(t.Context(), []store.Stored{{Client: c}}, []string{"clinic"})
	return err
}

// TestOracleModeProvenance: Oracle Health declares Provenance create and a
// search by target, no _tag and no conditional create. Each resource
// written (the chart note) gets one Provenance, searched for by the
// versioned target before it is created. A create that failed is searched
// for again and not repeated while it may still land (CreateSettle); one
// whose answer was lost is found by that search, not made twice. Nothing
// undeclared is sent.
func TestOracleModeProvenance(t *testing.T) {
	t.Parallel()
	r := newRig(t, filepath.Join("..", "..", "testdata", "ehr-capabilities", "oracle-health-millennium-r4-2026-08.json"))
	ctx := t.Context()
	clock := time.Now()
	r.engine.Now = func() time.Time { return clock }
	r.conn.CreateSettle = 10 * time.Second
	if rp := r.conn.Plan.Type("Provenance"); !r.conn.Plan.WritesProvenance() || rp.Idempotency != plan.SearchByTarget {
		t.Fatalf("Oracle plan: %s", r.conn.Plan.ProvenanceWhy())
	}
	p := r.proxiedWith(t, faultproxy.Options{Seed: 1}, ehr.Options{MaxAttempts: 1})
	clients := consenting(r.cl)
	// The first client's Provenance create is refused (nothing lands):
	// its retry searches, waits out CreateSettle, then creates.
	refused := p.Once(faultproxy.Match{Method: "POST", PathPrefix: "Provenance"}, faultproxy.Kind503)
	r.enqueueAll(t)
	s, err := r.engine.PushOnce(ctx)
	if err != nil || s.Failed != 1 || s.Written != len(clients) || s.Provenances != len(clients)-1 {
		t.Fatalf("first push: %+v %v; want every note written, one Provenance failed", s, err)
	}
	<-refused.Done()
	makeDue(t, r)
	if s, err := r.engine.PushOnce(ctx); err != nil || s.Failed != 1 || s.Written != 0 || s.Provenances != 0 {
		t.Fatalf("retry within CreateSettle: %+v %v; want it to wait", s, err)
	}
	clock = clock.Add(11 * time.Second)
	makeDue(t, r)
	if s, err := r.engine.PushOnce(ctx); err != nil || s.Failed != 0 || s.Written != 0 || s.Provenances != 1 {
		t.Fatalf("retry after CreateSettle: %+v %v; want the Provenance written, nothing else", s, err)
	}
	r.checkProvenances(t, "DocumentReference")

	// A new version of a note; its Provenance's answer is lost (the EHR
	// made it). The retry finds it by target and makes no second one.
	c := clients[0]
	c.Supports = append(c.Supports, &ips.Support{ID: "s-prov", Type: ips.SupportTeamMeeting, Status: ips.SupportPlanned, Date: ips.MustDate("2026-10-21")})
	lost := p.Once(faultproxy.Match{Method: "POST", PathPrefix: "Provenance"}, faultproxy.KindLostReply)
	r.enqueueAll(t)
	if s, err := r.engine.PushOnce(ctx); err != nil || s.Failed != 1 || s.Written != 1 {
		t.Fatalf("push with a Provenance's answer lost: %+v %v", s, err)
	}
	<-lost.Done()
	makeDue(t, r)
	if s, err := r.engine.PushOnce(ctx); err != nil || s.Failed != 0 || s.Written != 0 || s.Provenances != 1 {
		t.Fatalf("retry: %+v %v; want the Provenance found", s, err)
	}
	if n := r.checkProvenances(t, "DocumentReference"); n != len(clients)+1 {
		t.Errorf("%d Provenances of notes, want %d", n, len(clients)+1)
	}
	if l := r.refused("405"); len(l) != 0 {
		t.Errorf("requests Oracle Health does not declare were sent:\n%s", strings.Join(l, "\n"))
	}
}

// TestEpicModeSendsNoProvenance: Epic declares Provenance read only, so a
// sync acting out its statement sends no Provenance at all.
func TestEpicModeSendsNoProvenance(t *testing.T) {
	t.Parallel()
	for _, siteCoded := range []bool{false, true} {
		var r *rig
		if siteCoded {
			r = newEpicSiteCodedRig(t)
		} else {
			r = newRig(t, filepath.Join("..", "..", "testdata", "ehr-capabilities", "epic-r4-sandbox-2026-07.json"))
		}
		if r.conn.Plan.WritesProvenance() {
			t.Fatalf("Epic plan writes Provenance: %s", r.conn.Plan.ProvenanceWhy())
		}
		r.enqueueAll(t)
		s, err := r.engine.PushOnce(t.Context())
		if err != nil || s.Failed != 0 || s.Written == 0 || s.Provenances != 0 {
			t.Fatalf("push: %+v %v", s, err)
		}
		for l := range strings.Lines(r.peerLog.String()) {
			if strings.Contains(l, "Provenance") {
				t.Errorf("a Provenance request reached Epic: %s", strings.TrimSpace(l))
			}
		}
	}
}
