package mappings

import (
	"net/url"
	"time"

	"github.com/ipsfhir/ipsfhir/ips"

	dtpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/datatypes_go_proto"
	prpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/resources/provenance_go_proto"
)

// Written is one write of a record's resource to an EHR, as its Provenance
// records it.
type Written struct {
	// Key is the written record; ResourceType its FHIR type.
	Key          Key
	ResourceType string
	// Reference points at what was written: the versioned literal
	// reference ("Goal/123/_history/4") when the EHR said which version
	// the write made, else "Goal/123"; in a transaction Bundle, the entry's
	// urn:uuid fullUrl, which the EHR rewrites to the resource it wrote.
	Reference string
	// ContentHash is the hex SHA-256 of the written content, as the sync
	// engine hashes it (its canonical form). With Key it makes the
	// Provenance's identity (ProvenanceKey).
	ContentHash string
	// Recorded is when the write was made.
	Recorded time.Time
}

// provenanceHashLen is how much of the content hash the identity keeps:
// 128 bits, plenty to tell the contents of one record apart.
const provenanceHashLen = 32

// ProvenanceKey is the identity of the Provenance of one written content
// of a record: the record's kind, client and record id and the first 32 hex
// digits of the content hash, so every retry of a write (a resent Bundle, a
// create whose answer was lost) names the same Provenance, and the EHR's
// conditional create or the adapter's search finds the one already there.
// Content the adapter writes again after writing something else (A, then B,
// then A again) names the Provenance of its first write, which stands for
// both.
func ProvenanceKey(w Written) Key {
	rec := string(w.Key.Kind)
	if w.Key.Record != "" {
		rec += "/" + w.Key.Record
	}
	h := w.ContentHash
	if len(h) > provenanceHashLen {
		h = h[:provenanceHashLen]
	}
	return Key{Program: w.Key.Program, Kind: KindProvenance, Client: w.Key.Client, Record: rec + "/" + h}
}

// ProvenanceCriteria is the search that finds the Provenance whose
// identity is identity (ProvenanceKey's system|value), as an If-None-Exist
// query: _tag=system|value. FHIR R4 Provenance has no identifier element,
// so the identity is a meta.tag (see Provenance), and _tag, a parameter of
// every resource type, searches it.
func ProvenanceCriteria(identity string) string {
	return "_tag=" + url.QueryEscape(identity)
}

// Provenance maps one write (w) of a client's record to the Provenance that
// accompanies it in the EHR (profile ips-provenance, on US Core Provenance
// 7.0.0): target the written resource, recorded the write time, and two
// agents:
//
//   - author (provenance-participant-type#author, US Core's ProvenanceAuthor
//     slice): the client's employment specialist, by name, on behalf of the
//     IPS program's Organization; without a specialist, the program itself;
//   - transmitter (US Core's us-core-provenance-participant-type#transmitter,
//     its ProvenanceTransmitter slice: "the entity that provided the copy to
//     your system"): the adapter as a Device, on behalf of the program.
//
// The specialist is a Reference of type Practitioner by display only: the
// IPS record names them (ips.Client.Specialist) but has no identifier the
// EHR knows. The program Organization and the adapter Device are referred
// to by identifier (urn:ipsfhir:program|{program}, as the outcome reports
// name the program; urn:ipsfhir:{program}:device|ipsfhir), since neither
// is a resource in the EHR. Its identity (ProvenanceKey) is a meta.tag in
// the system urn:ipsfhir:{program}:provenance beside the adapter's
// authorship tag; its security labels are the target's.
func Provenance(c *ips.Client, w Written, o Options) *prpb.Provenance {
	k := ProvenanceKey(w)
	meta := o.meta(ProfileProvenance, ProfileUSCoreProvenance)
	meta.Tag = append(meta.Tag, fcoding(k.System(), k.Value(), ""))
	target := literalRef(w.Reference)
	target.Type = furi(w.ResourceType)
	org := o.programOrganization(w.Key.Program)
	author := &prpb.Provenance_Agent{
		Type: fconcept(SystemProvenanceParticipantType, "author", "Author"),
		Who:  org,
	}
	if c.Specialist != "" {
		author.Who = &dtpb.Reference{Type: furi("Practitioner"), Display: fstr(c.Specialist)}
		author.OnBehalfOf = o.programOrganization(w.Key.Program)
	}
	transmitter := &prpb.Provenance_Agent{
		Type: fconcept(SystemUSCoreProvenanceParticipantType, "transmitter", "Transmitter"),
		Who: &dtpb.Reference{
			Type:       furi("Device"),
			Identifier: fidentifier(IdentifierSystem(w.Key.Program, KindDevice), AdapterDeviceID),
			Display:    fstr(AdapterDeviceName),
		},
		OnBehalfOf: o.programOrganization(w.Key.Program),
	}
	return &prpb.Provenance{
		Meta:     meta,
		Target:   []*dtpb.Reference{target},
		Recorded: finstant(w.Recorded),
		Agent:    []*prpb.Provenance_Agent{author, transmitter},
	}
}

// programOrganization refers to the IPS program as an Organization, by its
// program identifier and, when configured, its name.
func (o Options) programOrganization(program string) *dtpb.Reference {
	return &dtpb.Reference{
		Type:       furi("Organization"),
		Identifier: fidentifier(SystemProgram, program),
		Display:    fstr(o.ProgramName),
	}
}
