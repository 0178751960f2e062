package mappings

import (
	"testing"

	"github.com/ipsfhir/ipsfhir/ips"
)

// TestSpecialistIsOneRecordPerNameAndContact: clients who name the same
// specialist (spacing aside) share one Practitioner; another contact is
// another record; a client without a specialist has none. The key reads
// back from its identifier.
func TestSpecialistIsOneRecordPerNameAndContact(t *testing.T) {
	o := fixtureOptions()
	a, b := fixtureClient(), fixtureClient()
	b.ID, b.Specialist = "c-0002", "  Jordan   Reyes "
	ka, _ := o.SpecialistKey(a)
	kb, _ := o.SpecialistKey(b)
	if ka != kb {
		t.Errorf("same specialist, keys %v and %v", ka, kb)
	}
	b.SpecialistContact = "555-0100"
	if kb, _ = o.SpecialistKey(b); kb == ka {
		t.Error("another contact has the same key")
	}
	if p, ok := Practitioner(b, o); !ok || p.GetTelecom()[0].GetSystem().GetValue().String() != "PHONE" {
		t.Errorf("a contact without @ is a phone: %v", p.GetTelecom())
	}
	b.Specialist = ""
	if _, ok := o.SpecialistKey(b); ok {
		t.Error("a client without a specialist has a specialist key")
	}
	if _, ok := Practitioner(b, o); ok {
		t.Error("a Practitioner for a client without a specialist")
	}
	for _, k := range []Key{ka, o.CareTeamKey(a)} {
		if got, ok := ParseKey(k.System(), k.Value()); !ok || got != k {
			t.Errorf("ParseKey(%s, %s) = %v, %v; want %v", k.System(), k.Value(), got, ok, k)
		}
	}
}

// TestTreatmentPlanLinkOnlyWhereKnown: the plan and the note refer to the
// treatment plan only when the caller found one, and name the specialist
// by display alone unless the specialist is written.
func TestTreatmentPlanLinkOnlyWhereKnown(t *testing.T) {
	c, o := fixtureClient(), fixtureOptions()
	if CarePlan(c, o).GetPartOf() != nil || PlanNote(c, o).GetContext().GetRelated() != nil {
		t.Error("linked without a treatment plan")
	}
	o.TreatmentPlan = func(*ips.Client) string { return "" }
	if CarePlan(c, o).GetPartOf() != nil {
		t.Error("linked to an empty reference")
	}
	if a := CarePlan(c, o).GetAuthor(); a.GetIdentifier() != nil || a.GetDisplay().GetValue() != "Jordan Reyes" {
		t.Errorf("author %v; want the name alone", a)
	}
	o.TreatmentPlan = func(*ips.Client) string { return "CarePlan/mh-1" }
	o.SpecialistRecord = true
	cp, note := CarePlan(c, o), PlanNote(c, o)
	if got := referenceString(cp.GetPartOf()[0]); got != "CarePlan/mh-1" {
		t.Errorf("partOf %q", got)
	}
	if got := referenceString(note.GetContext().GetRelated()[0]); got != "CarePlan/mh-1" {
		t.Errorf("note context.related %q", got)
	}
	k, _ := o.SpecialistKey(c)
	if id := note.GetAuthor()[0].GetIdentifier(); id.GetSystem().GetValue() != k.System() || id.GetValue().GetValue() != k.Value() {
		t.Errorf("note author %v; want the specialist by identifier", note.GetAuthor())
	}
	if cp.GetCareTeam() != nil {
		t.Error("plan names a care team that is not written")
	}
}
