package check

import (
	"bufio"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/ipsfhir/ipsfhir/adapter/plan"
)

// Counts tallies a report's results by status, and the blocking failures.
type Counts struct {
	ByStatus map[Status]int
	Blocking []string // ids of blocking results that failed or erred
}

// Count tallies rep.
func (rep *Report) Count() Counts {
	c := Counts{ByStatus: map[Status]int{}}
	for _, r := range rep.Results {
		c.ByStatus[r.Status]++
		if r.Blocks() {
			c.Blocking = append(c.Blocking, r.ID)
		}
	}
	return c
}

// WriteText prints the report for a person: the results by group, the
// sync plan's concepts (path and why), its warnings, and the verdict.
func WriteText(w io.Writer, rep *Report) error {
	bw := bufio.NewWriter(w)
	width := 0
	for _, r := range rep.Results {
		width = max(width, len(r.ID))
	}
	group := ""
	for _, r := range rep.Results {
		if r.Group != group {
			if group != "" {
				fmt.Fprintln(bw)
			}
			group = r.Group
			fmt.Fprintln(bw, group)
		}
		mark := strings.ToUpper(string(r.Status))
		if r.Status == Pass || r.Status == Skip || r.Status == Omit {
			mark = string(r.Status)
		}
		reason := r.Reason
		if r.Blocks() {
			reason += " [blocks sync]"
		}
		fmt.Fprintf(bw, "  %-5s  %-*s  %s\n", mark, width, r.ID, reason)
	}
	fmt.Fprintln(bw)
	writePlan(bw, rep.Plan)
	fmt.Fprintln(bw)
	c := rep.Count()
	tally := fmt.Sprintf("%d pass, %d fail, %d error, %d skip, %d omit",
		c.ByStatus[Pass], c.ByStatus[Fail], c.ByStatus[Error], c.ByStatus[Skip], c.ByStatus[Omit])
	if rep.Ready {
		fmt.Fprintf(bw, "ready: sync can run (%s; no failure blocks sync)\n", tally)
	} else if slices.Equal(c.Blocking, []string{"write-paths.any"}) {
		fmt.Fprintf(bw, "not ready: nothing can be written to this EHR; write-paths.any blocks sync (%s)\n", tally)
	} else {
		fmt.Fprintf(bw, "not ready: %s blocks sync (%s)\n", strings.Join(c.Blocking, ", "), tally)
	}
	return bw.Flush()
}

func writePlan(w io.Writer, p *plan.Plan) {
	if p == nil {
		fmt.Fprintln(w, "sync plan: none (no usable R4 CapabilityStatement)")
		return
	}
	who := ""
	if p.Software != "" {
		who = " for " + p.Software
	}
	fmt.Fprintf(w, "sync plan%s (FHIR %s, bundles: %s)\n", who, p.FHIRVersion, p.Bundles)
	for _, c := range p.Concepts {
		path := string(c.Path)
		if c.ResourceType != "" {
			path += " (" + c.ResourceType + ")"
		}
		if c.Overridden {
			path += ", overridden"
		}
		fmt.Fprintf(w, "  %-17s  %-30s  %s\n", c.Concept, path, c.Why)
		if c.Change != "" {
			fmt.Fprintf(w, "  %-17s  %-30s  you can: %s\n", "", "", c.Change)
		}
	}
	// How each resource type the plan uses is kept from duplicates and
	// from overwriting a clinician's edit, and how changes are found.
	var used []string
	written := map[string]bool{}
	for _, c := range p.Concepts {
		if c.ResourceType != "" && !slices.Contains(used, c.ResourceType) {
			used = append(used, c.ResourceType)
		}
		if c.Path == plan.Native || c.Path == plan.InNote {
			written[c.ResourceType] = true
		}
	}
	if len(used) > 0 {
		fmt.Fprintln(w, "  strategies:")
	}
	for _, t := range used {
		rp := p.Type(t)
		if rp == nil {
			continue
		}
		var parts []string
		if written[t] && rp.Idempotency != "" {
			parts = append(parts, "idempotency "+string(rp.Idempotency))
		}
		if written[t] && rp.Concurrency != "" {
			parts = append(parts, "concurrency "+string(rp.Concurrency))
		}
		detect := "changes found by " + string(rp.Detection)
		switch {
		case rp.Detection == plan.LastUpdated && rp.LastUpdatedParam != "":
			detect += " (" + rp.LastUpdatedParam + ")"
		case rp.Detection == plan.DateParameter && rp.DateParam != "":
			detect += " (" + rp.DateParam + ")"
		}
		parts = append(parts, detect)
		fmt.Fprintf(w, "    %-17s  %s\n", t, strings.Join(parts, "; "))
	}
	if p.Writes() {
		fmt.Fprintf(w, "  %-17s  %s\n", "provenance", p.ProvenanceWhy())
	}
	for _, warn := range p.Warnings {
		fmt.Fprintf(w, "  warning: %s\n", warn)
	}
}
