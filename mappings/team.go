package mappings

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"

	"github.com/ipsfhir/ipsfhir/ips"

	cpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/codes_go_proto"
	dtpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/datatypes_go_proto"
	ctpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/resources/care_team_go_proto"
	prpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/resources/practitioner_go_proto"
)

// The specialist and the care team. IPS integrates employment services with
// mental health treatment (its third principle; fidelity items O1 and O2:
// the employment specialist is part of the treatment team). In the chart
// that is the specialist as a Practitioner, named as the author of the IPS
// plan and the chart note, and a CareTeam per client holding the specialist
// and the IPS program.
//
// Neither claims a US Core profile: US Core Practitioner (7.0.0) requires
// name.family, and ipsfhir records the specialist's name as one string it
// cannot split without guessing; US Core CareTeam requires a participant
// role from a VSAC value set (2.16.840.1.113762.1.4.1099.30) ipsfhir has no
// copy of, so a code from it cannot be checked. Both are plain R4.

// CareTeamName is the CareTeam name clinicians see in the chart.
const CareTeamName = "IPS supported employment team"

// SpecialistKey is the identity of the client's employment specialist: one
// per program and specialist as recorded, name and contact together (spaces
// trimmed and collapsed), so that the Practitioner's content is fixed by
// its identity and clients who name the same specialist share one. A
// specialist whose contact changes is a new Practitioner; the old one stays
// as it was written. ok is false when the client names no specialist.
func (o Options) SpecialistKey(c *ips.Client) (k Key, ok bool) {
	name, contact := oneLine(c.Specialist), oneLine(c.SpecialistContact)
	if name == "" {
		return Key{}, false
	}
	sum := sha256.Sum256([]byte(name + "\n" + contact))
	return o.key(KindSpecialist, "", hex.EncodeToString(sum[:8])), true
}

// CareTeamKey is the identity of the client's IPS care team.
func (o Options) CareTeamKey(c *ips.Client) Key { return o.key(KindCareTeam, c.ID, "") }

// ProgramKey is the identifier of the IPS program, as the care team names
// it. ipsfhir writes no Organization: the care team refers to the program by
// this identifier and its name.
func (o Options) ProgramKey() Key { return o.key(KindProgram, "", o.program()) }

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// Practitioner maps the client's employment specialist to a Practitioner:
// the business identifier, the name as recorded (name.text), and the
// contact as a phone or an email address. ok is false when the client names
// no specialist.
func Practitioner(c *ips.Client, o Options) (out *prpb.Practitioner, ok bool) {
	k, ok := o.SpecialistKey(c)
	if !ok {
		return nil, false
	}
	out = &prpb.Practitioner{
		Meta:       o.metaUnprofiled(),
		Identifier: []*dtpb.Identifier{fidentifier(k.System(), k.Value())},
		Active:     fbool(true),
		Name:       []*dtpb.HumanName{{Text: fstr(oneLine(c.Specialist))}},
	}
	if ct := oneLine(c.SpecialistContact); ct != "" {
		sys := cpb.ContactPointSystemCode_PHONE
		if strings.Contains(ct, "@") {
			sys = cpb.ContactPointSystemCode_EMAIL
		}
		out.Telecom = []*dtpb.ContactPoint{{
			System: &dtpb.ContactPoint_SystemCode{Value: sys},
			Value:  fstr(ct),
			Use:    &dtpb.ContactPoint_UseCode{Value: cpb.ContactPointUseCode_WORK},
		}}
	}
	return out, true
}

var clientToTeamStatus = map[ips.ClientStatus]cpb.CareTeamStatusCode_Value{
	ips.ClientReferred: cpb.CareTeamStatusCode_PROPOSED,
	ips.ClientActive:   cpb.CareTeamStatusCode_ACTIVE,
	ips.ClientOnHold:   cpb.CareTeamStatusCode_SUSPENDED,
	ips.ClientClosed:   cpb.CareTeamStatusCode_INACTIVE,
}

// CareTeam maps the client's IPS care team: the employment specialist (by
// identifier where the specialist is written, Options.SpecialistRecord,
// else by name) and the IPS program (by its identifier and name), for the
// enrollment's period.
func CareTeam(c *ips.Client, o Options) *ctpb.CareTeam {
	k := o.CareTeamKey(c)
	out := &ctpb.CareTeam{
		Meta:       o.metaUnprofiled(),
		Identifier: []*dtpb.Identifier{fidentifier(k.System(), k.Value())},
		Status:     &ctpb.CareTeam_StatusCode{Value: clientToTeamStatus[c.EffectiveStatus()]},
		Name:       fstr(CareTeamName),
		Subject:    o.subject(c),
		Period:     fperiod(c.EnrolledOn, c.ClosedOn),
	}
	if s := o.specialistRef(c); s != nil {
		out.Participant = append(out.Participant, &ctpb.CareTeam_Participant{
			Role:   []*dtpb.CodeableConcept{{Text: fstr("Employment specialist")}},
			Member: s,
		})
	}
	prog := o.programRef()
	out.Participant = append(out.Participant, &ctpb.CareTeam_Participant{
		Role:   []*dtpb.CodeableConcept{{Text: fstr("IPS supported employment program")}},
		Member: prog,
	})
	out.ManagingOrganization = []*dtpb.Reference{o.programRef()}
	return out
}

// specialistRef names the client's specialist: the Practitioner by
// identifier (and literal id once known) with the name as display where it
// is written, the name alone otherwise; nil when none is recorded.
func (o Options) specialistRef(c *ips.Client) *dtpb.Reference {
	if oneLine(c.Specialist) == "" {
		return nil
	}
	// The name as recorded, as the plan has always named the specialist
	// (and reads it back).
	name := c.Specialist
	if k, ok := o.SpecialistKey(c); ok && o.SpecialistRecord {
		r := o.recordRef(k, "Practitioner")
		r.Display = fstr(name)
		return r
	}
	return &dtpb.Reference{Display: fstr(name)}
}

// careTeamRef refers to the client's CareTeam where it is written, else nil.
func (o Options) careTeamRef(c *ips.Client) *dtpb.Reference {
	if !o.CareTeamRecord {
		return nil
	}
	r := o.recordRef(o.CareTeamKey(c), "CareTeam")
	r.Display = fstr(CareTeamName)
	return r
}

// programRef refers to the IPS program as an Organization, by identifier
// and name: a logical reference, as ipsfhir writes no Organization.
func (o Options) programRef() *dtpb.Reference {
	k := o.ProgramKey()
	r := &dtpb.Reference{Type: furi("Organization"), Identifier: fidentifier(k.System(), k.Value())}
	if o.ProgramName != "" {
		r.Display = fstr(o.ProgramName)
	}
	return r
}
