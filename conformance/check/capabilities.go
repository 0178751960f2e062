package check

import (
	"context"
	"errors"
	"net/url"
	"slices"
	"time"

	"github.com/ipsfhir/ipsfhir/adapter/plan"
)

// writePaths reports each concept's path, from the plan.
func (r *runner) writePaths() {
	const g = GroupWritePaths
	for _, c := range r.p.Concepts {
		id := "write-paths." + string(c.Concept)
		change := ""
		if c.Change != "" {
			change = "; " + c.Change
		}
		switch c.Path {
		case plan.Native:
			r.add(g, id, Pass, false, "native %s: %s", c.ResourceType, c.Why)
		case plan.InNote:
			r.add(g, id, Pass, false, "falls back to the chart note: %s%s", c.Why, change)
		case plan.ReadOnly:
			r.add(g, id, Pass, false, "read from %s: %s", c.ResourceType, c.Why)
		default:
			if c.Concept == plan.ChartNote && !slices.ContainsFunc(r.p.Concepts, func(x plan.ConceptPlan) bool { return x.Path == plan.InNote }) &&
				r.p.Allows("DocumentReference", "create") && r.p.Allows("DocumentReference", "update") {
				r.add(g, id, Omit, false, "not needed: %s", c.Why)
				continue
			}
			if c.Concept == plan.Specialist || c.Concept == plan.CareTeam {
				// The plan and the note still name the specialist.
				r.add(g, id, Omit, false, "not written: %s%s", c.Why, change)
				continue
			}
			r.add(g, id, Fail, false, "none: %s%s", c.Why, change)
		}
	}
	if !r.p.Writes() {
		// Sync exists to put employment into the chart: an EHR that takes
		// none of it is not ready, whatever else works.
		r.add(g, "write-paths.any", Fail, true, "nothing can be written: no IPS concept has a path into this EHR (not natively, not in a chart note); sync would only read referrals")
	} else {
		r.add(g, "write-paths.any", Pass, true, "at least one IPS concept can be written")
	}
}

// writtenTypes are the types the plan writes natively, in concept order.
func (r *runner) writtenTypes() []string {
	var out []string
	for _, c := range r.p.Concepts {
		if c.Path == plan.Native && c.ResourceType != "" && !slices.Contains(out, c.ResourceType) {
			out = append(out, c.ResourceType)
		}
	}
	return out
}

// conditional reports how each written type is kept from duplicates.
func (r *runner) conditional() {
	const g = GroupConditional
	written := r.writtenTypes()
	if len(written) == 0 {
		r.add(g, "conditional", Omit, false, "the plan writes no resource natively")
	}
	for _, t := range written {
		rp, sr := r.p.Type(t), r.st.resource(t)
		declared := "declares neither conditionalCreate nor conditionalUpdate"
		switch {
		case sr.ConditionalCreate && sr.ConditionalUpdate:
			declared = "declares conditionalCreate and conditionalUpdate"
		case sr.ConditionalCreate:
			declared = "declares conditionalCreate only"
		case sr.ConditionalUpdate:
			declared = "declares conditionalUpdate only"
		}
		id := "conditional." + t
		switch rp.Idempotency {
		case plan.ConditionalUpdate:
			first := ""
			if t == "Goal" && rp.ConditionalCreate && rp.Concurrency == plan.IfMatch {
				first = "; a goal's first write, which has no version for If-Match yet, is a conditional create, so one applied late cannot overwrite a clinician's change"
			}
			r.add(g, id, Pass, false, "%s: writes are conditional updates by identifier, safe to repeat%s", declared, first)
		case plan.ConditionalCreate:
			r.add(g, id, Pass, false, "%s: creates carry If-None-Exist by identifier, later writes update by id", declared)
		case plan.SearchByID:
			r.add(g, id, Fail, false, "%s: ipsfhir keeps a ledger and searches by identifier before each create instead", declared)
		case plan.SearchByPatient:
			r.add(g, id, Fail, false, "%s and no identifier search: ipsfhir searches the patient's %s before each create and matches the identifier itself", declared, t)
		default:
			r.add(g, id, Fail, false, "%s and no identifier or patient search: a create whose answer is lost cannot be checked and may be duplicated", declared)
		}
	}
	r.addLive(g, "conditional.live-create", r.writes.conditionalCreate)
	r.addLive(g, "conditional.live-update", r.writes.conditionalUpdate)
}

// versioning reports how each written type is kept from overwriting a
// clinician's edit.
func (r *runner) versioning() {
	const g = GroupVersioning
	written := r.writtenTypes()
	if len(written) == 0 {
		r.add(g, "versioning", Omit, false, "the plan writes no resource natively")
	}
	for _, t := range written {
		v := r.st.resource(t).Versioning
		id := "versioning." + t
		switch {
		case !r.p.Allows(t, "update"):
			r.add(g, id, Omit, false, "created only, never updated: each change is a new %s, so nothing is overwritten", t)
		case r.p.Type(t).Concurrency == plan.IfMatch:
			r.add(g, id, Pass, false, "versioned-update: updates carry If-Match with the version ipsfhir last wrote")
		case v == "versioned" || v == "no-version":
			r.add(g, id, Fail, false, "versioning %s, not versioned-update: ipsfhir reads, compares, then writes, and an edit made in between is not detected", v)
		default:
			r.add(g, id, Fail, false, "declares no versioning: ipsfhir reads, compares, then writes, and an edit made in between is not detected")
		}
	}
	r.addLive(g, "versioning.live-if-match", r.writes.ifMatch)
}

// addLive reports a live result the write tests found, or why there is none.
func (r *runner) addLive(group, id string, res *Result) {
	if res != nil {
		res.ID, res.Group = id, group
		r.results = append(r.results, *res)
		return
	}
	why := r.writes.skipped
	if why == "" {
		why = "needs write tests (--write-tests --test-patient ID)"
	}
	r.add(group, id, Skip, false, "%s", why)
}

// bundles reports batch and transaction. The sync engine sends one
// resource per request today, so neither blocks.
func (r *runner) bundles() {
	const g = GroupBundles
	root := r.st.rootInteractions()
	if slices.Contains(root, "transaction") {
		r.add(g, "bundles.transaction", Pass, false, "transaction declared: a Bundle of writes is applied whole or not at all")
	} else {
		r.add(g, "bundles.transaction", Fail, false, "transaction not declared: writes go one request per resource (as sync sends them), and 'ipsfhir map --bundle-type transaction' output cannot be loaded")
	}
	if slices.Contains(root, "batch") {
		r.add(g, "bundles.batch", Pass, false, "batch declared")
	} else {
		r.add(g, "bundles.batch", Fail, false, "batch not declared: each resource is written by its own request")
	}
}

// changeDetection reports how changes to each type are found, and polls
// live the way the sync engine does for the types it reads back.
func (r *runner) changeDetection(ctx context.Context) {
	const g = GroupChangeDetection
	send, why := r.canSend()
	for _, t := range ResourceTypes[1:] {
		rp := r.p.Type(t)
		id := "change-detection." + t
		pulled := r.pulled(t)
		if rp == nil {
			r.add(g, id, Omit, false, "%s is not in the statement", t)
			continue
		}
		switch rp.Detection {
		case plan.LastUpdated:
			r.add(g, id, Pass, false, "polls %s", rp.LastUpdatedParam)
		case plan.DateParameter:
			r.add(g, id, Pass, false, "no _lastUpdated: polls the %s date, which finds new %s but not changed ones", rp.DateParam, t)
		case plan.FullReconcile:
			if pulled {
				r.add(g, id, Fail, false, "no _lastUpdated or date parameter: changes are found by searching each client's patient periodically (slower)")
			} else {
				r.add(g, id, Omit, false, "no _lastUpdated, and sync does not read %s back on this EHR", t)
			}
		default:
			if pulled {
				r.add(g, id, Fail, false, "%s cannot be searched: changes made in the EHR are not read back", t)
			} else {
				r.add(g, id, Omit, false, "%s cannot be searched, and sync does not read it back on this EHR", t)
			}
		}
		if t != "Goal" && t != "ServiceRequest" {
			continue
		}
		live := id + ".live"
		param := rp.LastUpdatedParam
		if rp.Detection == plan.DateParameter {
			param = rp.DateParam
		}
		switch {
		case !pulled:
			r.add(g, live, Omit, false, "sync does not read %s back on this EHR", t)
		case param == "":
			r.add(g, live, Omit, true, "no polling parameter: see resources.%s.search for the search by patient", t)
		case !send:
			r.add(g, live, Skip, true, "%s", why)
		default:
			// The engine polls without a patient, from its watermark on; from
			// now on there is (nearly) nothing to find.
			since := time.Now().UTC().Format("2006-01-02T15:04:05Z")
			n, err := r.search(ctx, t, url.Values{param: {"gt" + since}})
			switch {
			case err == nil:
				r.add(g, live, Pass, true, "a poll by %s the way sync polls answered a Bundle of %d", param, n)
			case errors.Is(err, errNotBundle):
				r.add(g, live, Fail, true, "a poll by %s did not answer a searchset Bundle", param)
			default:
				r.add(g, live, verdict(err), true, "a poll by %s, without a patient, the way sync polls, answered %s", param, describe(err))
			}
		}
	}
}

// pulled reports whether the sync engine reads changes to t back.
func (r *runner) pulled(t string) bool {
	switch t {
	case "Goal":
		return r.p.Concept(plan.Goal).Path == plan.Native && r.p.Allows("Goal", "search-type")
	case "ServiceRequest":
		return r.p.Concept(plan.Referral).Path == plan.ReadOnly
	}
	return false
}
