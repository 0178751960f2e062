package mappings

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/ipsfhir/ipsfhir/ips"

	bpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/resources/bundle_and_contained_resource_go_proto"
)

// CaseloadFromBundle reads a Bundle of ipsfhir resources (as CaseloadBundle
// writes them, or as searched back from an EHR) into a caseload, grouped by
// client. Derived resources (PRAPARE answers, chart notes, employment
// statuses derived from job records, the specialist's Practitioner and the
// care team) are skipped; an
// active referral to IPS for a patient with no plan in the Bundle becomes a
// new client. Anything else, and any record whose client has no plan in the
// Bundle, is a problem: nothing is dropped silently. The result is a
// valid caseload file (schema and rules), or an error lists why not.
func CaseloadFromBundle(b *bpb.Bundle, ro ReferralOptions) (*ips.Caseload, error) {
	root := newReader("Bundle")
	type goalAt struct {
		key  Key
		goal *ips.Goal
		r    reader
	}
	var goals []goalAt
	refs := map[string]string{} // reference → goal id, for the plan's goal links
	programs := map[string]bool{}
	note := func(k Key) {
		if k.Program != "" {
			programs[k.Program] = true
		}
	}

	// Goals first: plans refer to them.
	for i, e := range b.GetEntry() {
		g := e.GetResource().GetGoal()
		if g == nil {
			continue
		}
		r := root.at(fmt.Sprintf("entry[%d].resource", i))
		k, goal := readGoal(g, r)
		note(k)
		goals = append(goals, goalAt{k, goal, r})
		refs[k.FullURL()] = k.Record
		if u := e.GetFullUrl().GetValue(); u != "" {
			refs[u] = k.Record
		}
		if id := g.GetId().GetValue(); id != "" {
			refs["Goal/"+id] = k.Record
		}
	}
	resolve := func(ref string) (string, bool) { id, ok := refs[ref]; return id, ok }

	clients := map[string]*ips.Client{}
	var order []string
	type pending struct {
		client string
		r      reader
		attach func(*ips.Client)
	}
	var records []pending
	var referrals []*ips.Client

	for i, e := range b.GetEntry() {
		r := root.at(fmt.Sprintf("entry[%d].resource", i))
		res := e.GetResource()
		switch {
		case res == nil:
			r.fail("", "is missing")
		case res.GetGoal() != nil:
			// read above
		case res.GetCarePlan() != nil:
			k, c := readPlan(res.GetCarePlan(), resolve, r)
			note(k)
			if k.Client == "" {
				continue
			}
			if clients[k.Client] != nil {
				r.fail("identifier", "names a client whose plan is already in the Bundle")
				continue
			}
			clients[k.Client] = c
			order = append(order, k.Client)
		case res.GetObservation() != nil:
			o := res.GetObservation()
			switch {
			case hasCoding(o.GetCode(), SystemLOINC, LOINCPastOrPresentJob):
				k, j := readJob(o, r)
				note(k)
				records = append(records, pending{k.Client, r, func(c *ips.Client) { c.Jobs = append(c.Jobs, j) }})
			case hasCoding(o.GetCode(), SystemLOINC, LOINCEmploymentStatus) && DerivedEmploymentStatus(o):
				// Derived from the jobs; derived again when mapped.
			case hasCoding(o.GetCode(), SystemLOINC, LOINCEmploymentStatus):
				k, s := readEmploymentStatus(o, r)
				note(k)
				records = append(records, pending{k.Client, r, func(c *ips.Client) { c.Employment = append(c.Employment, s) }})
			case hasCoding(o.GetCode(), SystemLOINC, LOINCPRAPARE):
				// Derived from the employment status; nothing to read back.
			default:
				r.fail("code", "is not an Observation ipsfhir reads (job %s or employment status %s)", LOINCPastOrPresentJob, LOINCEmploymentStatus)
			}
		case res.GetDocumentReference() != nil:
			// The chart note is rendered from the plan; nothing to read back.
		case res.GetPractitioner() != nil, res.GetCareTeam() != nil:
			// The specialist and the care team are derived from the
			// client (the plan names the specialist); nothing to read back.
		case res.GetServiceRequest() != nil:
			sr := res.GetServiceRequest()
			if !IsIPSReferral(sr, ReferralMatch{}) {
				r.fail("", "is not a referral to IPS (intent order, with an IPS referral code in code or category)")
				continue
			}
			c, err := ReferralFromFHIR(sr, ro)
			if errors.Is(err, ErrNotActiveReferral) {
				continue
			}
			var re *ReadError
			if errors.As(err, &re) {
				for _, p := range re.Problems {
					*r.ps = append(*r.ps, ips.Problem{Path: r.path + p.Path[len("ServiceRequest"):], Message: p.Message})
				}
				continue
			}
			referrals = append(referrals, c)
		default:
			r.fail("", "is a resource type ipsfhir does not read back")
		}
	}
	for _, g := range goals {
		c := clients[g.key.Client]
		if c == nil {
			g.r.fail("identifier", "belongs to a client whose CarePlan is not in the Bundle")
			continue
		}
		c.Goals = append(c.Goals, g.goal)
	}
	for _, p := range records {
		c := clients[p.client]
		if c == nil {
			if p.client != "" {
				p.r.fail("identifier", "belongs to a client whose CarePlan is not in the Bundle")
			}
			continue
		}
		p.attach(c)
	}
	if len(programs) > 1 {
		root.fail("", "mixes identifiers of %d programs; read one program at a time", len(programs))
	}
	if err := root.err(); err != nil {
		return nil, err
	}

	cl := &ips.Caseload{}
	for p := range programs {
		if p != ips.DefaultProgramID {
			cl.Program = &ips.Program{ID: p}
		}
	}
	planned := map[ips.Identifier]bool{}
	for _, id := range order {
		cl.Clients = append(cl.Clients, clients[id])
		planned[clients[id].Patient] = true
	}
	for _, c := range referrals {
		if !planned[c.Patient] {
			cl.Clients = append(cl.Clients, c)
			planned[c.Patient] = true
		}
	}
	// Check the result as a caseload file, schema included: an EHR may hold
	// identifiers or codes no caseload file could, and what we return must
	// be storable and writable as a file.
	var buf bytes.Buffer
	if err := ips.Encode(&buf, cl); err != nil {
		return nil, err
	}
	checked, err := ips.Decode(&buf)
	if err != nil {
		var ve *ips.ValidationError
		if errors.As(err, &ve) {
			return nil, &ReadError{Problems: ve.Problems}
		}
		return nil, err
	}
	return checked, nil
}

// InFHIR returns the part of a caseload that the FHIR mapping carries: a copy
// without the fields that stay in the IPS store (consent, disclosure
// preference, work preferences, referral date and source, earlier
// episodes, closing reason, the specialist's contact, program name; some
// of them are in the narratives,
// which are not read back). Reading a mapped Bundle back gives
// Normalize(InFHIR(cl)).
func InFHIR(cl *ips.Caseload) *ips.Caseload {
	out := ips.Normalize(cl)
	if out.Program != nil {
		out.Program.Name = ""
	}
	for _, c := range out.Clients {
		c.Consent, c.Disclosure, c.Preferences, c.ReferredOn = nil, "", nil, ips.Date{}
		c.Referral, c.PastEpisodes = nil, nil
		c.ClosedReason, c.SpecialistContact = "", ""
	}
	return out
}
