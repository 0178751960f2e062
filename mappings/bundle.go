package mappings

import (
	"fmt"

	"github.com/ipsfhir/ipsfhir/ips"

	cpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/codes_go_proto"
	bpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/resources/bundle_and_contained_resource_go_proto"
)

// Entry is one mapped resource with the identity of the record it came from.
type Entry struct {
	Key          Key
	ResourceType string
	Resource     *bpb.ContainedResource
}

// ClientEntries maps everything about one client, in the order a server must
// see it: goals, the specialist and the care team (TeamEntries) before the
// plan that references them, then jobs, employment
// status records (EmploymentStatusRecords, with PRAPARE answers when
// configured) and the chart note.
func ClientEntries(c *ips.Client, o Options) []Entry {
	var out []Entry
	for _, g := range c.Goals {
		out = append(out, Entry{o.GoalKey(c, g), "Goal", &bpb.ContainedResource{OneofResource: &bpb.ContainedResource_Goal{Goal: Goal(c, g, o)}}})
	}
	out = append(out, TeamEntries(c, o)...)
	out = append(out, Entry{o.PlanKey(c), "CarePlan", &bpb.ContainedResource{OneofResource: &bpb.ContainedResource_CarePlan{CarePlan: CarePlan(c, o)}}})
	for _, j := range c.Jobs {
		out = append(out, Entry{o.JobKey(c, j), "Observation", &bpb.ContainedResource{OneofResource: &bpb.ContainedResource_Observation{Observation: JobObservation(c, j, o)}}})
	}
	for _, s := range EmploymentStatusRecords(c) {
		out = append(out, Entry{o.EmploymentStatusKey(c, s), "Observation", &bpb.ContainedResource{OneofResource: &bpb.ContainedResource_Observation{Observation: EmploymentStatusObservation(c, s, o)}}})
		if o.PRAPARE {
			out = append(out, Entry{o.PRAPAREKey(c, s), "Observation", &bpb.ContainedResource{OneofResource: &bpb.ContainedResource_Observation{Observation: PRAPAREObservation(c, s, o)}}})
		}
	}
	out = append(out, Entry{o.PlanNoteKey(c), "DocumentReference", &bpb.ContainedResource{OneofResource: &bpb.ContainedResource_DocumentReference{DocumentReference: PlanNote(c, o)}}})
	return out
}

// TeamEntries maps the client's specialist (Options.SpecialistRecord) and
// care team (Options.CareTeamRecord), as far as the options say they are
// written; none by default.
func TeamEntries(c *ips.Client, o Options) []Entry {
	var out []Entry
	if o.SpecialistRecord {
		if p, ok := Practitioner(c, o); ok {
			k, _ := o.SpecialistKey(c)
			out = append(out, Entry{k, "Practitioner", &bpb.ContainedResource{OneofResource: &bpb.ContainedResource_Practitioner{Practitioner: p}}})
		}
	}
	if o.CareTeamRecord {
		out = append(out, Entry{o.CareTeamKey(c), "CareTeam", &bpb.ContainedResource{OneofResource: &bpb.ContainedResource_CareTeam{CareTeam: CareTeam(c, o)}}})
	}
	return out
}

// BundleType is the kind of Bundle Caseload writes.
type BundleType string

// Bundle types ipsfhir writes.
const (
	// Collection is a plain set of resources, for files and review.
	Collection BundleType = "collection"
	// Transaction is posted to a FHIR server as one unit; every entry is a
	// conditional update by business identifier, so posting it twice writes
	// nothing new.
	Transaction BundleType = "transaction"
)

// CaseloadBundle maps a whole caseload into one Bundle. Options.Program and
// Options.ProgramName default to the caseload's program.
func CaseloadBundle(cl *ips.Caseload, o Options, t BundleType) (*bpb.Bundle, error) {
	if o.Program == "" {
		o.Program = cl.ProgramID()
	}
	if o.ProgramName == "" && cl.Program != nil {
		o.ProgramName = cl.Program.Name
	}
	var entries []Entry
	seen := map[Key]bool{}
	for _, c := range cl.Clients {
		for _, e := range ClientEntries(c, o) {
			// A specialist is one record for all their clients.
			if !seen[e.Key] {
				seen[e.Key] = true
				entries = append(entries, e)
			}
		}
	}
	return EntriesBundle(entries, t)
}

// EntriesBundle wraps mapped entries in a Bundle of type t.
func EntriesBundle(entries []Entry, t BundleType) (*bpb.Bundle, error) {
	var typ cpb.BundleTypeCode_Value
	switch t {
	case Collection:
		typ = cpb.BundleTypeCode_COLLECTION
	case Transaction:
		typ = cpb.BundleTypeCode_TRANSACTION
	default:
		return nil, fmt.Errorf("bundle type %q: want collection or transaction", t)
	}
	b := &bpb.Bundle{Type: &bpb.Bundle_TypeCode{Value: typ}}
	for _, e := range entries {
		be := &bpb.Bundle_Entry{FullUrl: furi(e.Key.FullURL()), Resource: e.Resource}
		if t == Transaction {
			be.Request = &bpb.Bundle_Entry_Request{
				Method: &bpb.Bundle_Entry_Request_MethodCode{Value: cpb.HTTPVerbCode_PUT},
				Url:    furi(e.Key.ConditionalURL(e.ResourceType)),
			}
		}
		b.Entry = append(b.Entry, be)
	}
	return b, nil
}
