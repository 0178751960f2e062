package mappings

import (
	"math/rand/v2"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"

	"github.com/ipsfhir/ipsfhir/ips"
	"github.com/ipsfhir/ipsfhir/ips/synth"
)

// TestRoundTripProperty: caseload → FHIR Bundle (JSON) → caseload is the
// identity on every field FHIR carries, for many generated caseloads, both
// Bundle types and with or without PRAPARE answers. It goes through JSON so
// that what an EHR would store, not only the protos, is tested.
func TestRoundTripProperty(t *testing.T) {
	seeds := 60
	if testing.Short() {
		seeds = 10
	}
	for seed := range uint64(seeds) {
		r := rand.New(rand.NewPCG(seed, 0x1f5))
		cl := synth.Generate(r, 1+r.IntN(12))
		bt := []BundleType{Collection, Transaction}[seed%2]
		o := Options{PRAPARE: seed%3 == 0}
		b, err := CaseloadBundle(cl, o, bt)
		if err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		js, err := MarshalCompact(b)
		if err != nil {
			t.Fatalf("seed %d: marshal: %v", seed, err)
		}
		parsed, err := ParseBundle(js)
		if err != nil {
			t.Fatalf("seed %d: the Bundle we wrote does not parse: %v", seed, err)
		}
		back, err := CaseloadFromBundle(parsed, ReferralOptions{})
		if err != nil {
			t.Fatalf("seed %d: read back: %v", seed, err)
		}
		if d := cmp.Diff(InFHIR(cl), ips.Normalize(back)); d != "" {
			t.Fatalf("seed %d (%s bundle): round trip changed the caseload (-in +out):\n%s", seed, bt, d)
		}
	}
}

// TestRoundTripSample does the same for the published sample, the file users
// try first.
func TestRoundTripSample(t *testing.T) {
	cl := synth.GenerateSample()
	b, err := CaseloadBundle(cl, Options{}, Collection)
	if err != nil {
		t.Fatal(err)
	}
	back, err := CaseloadFromBundle(b, ReferralOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(InFHIR(cl), ips.Normalize(back)); d != "" {
		t.Fatalf("round trip changed the sample (-in +out):\n%s", d)
	}
}

// TestNotEnrolledClientsMapAndRoundTrip: a client referred and waiting for
// acceptance (no enrollment date) and a referral closed without enrollment
// map to resources that meet the profiles, and read back as they were;
// earlier episodes and the referral's source stay in the IPS store.
func TestNotEnrolledClientsMapAndRoundTrip(t *testing.T) {
	d := ips.MustDate
	src := &ips.ReferralSource{Connection: "clinic", ServiceRequest: "sr-1"}
	cl := &ips.Caseload{Clients: []*ips.Client{
		{ID: "c-referred", Patient: ips.Identifier{System: "urn:oid:2.16.840.1.113883.3.9999.1", Value: "MRN1"},
			Status: ips.ClientReferred, ReferredOn: d("2026-11-02"), Referral: src,
			PastEpisodes: []*ips.Episode{{ReferredOn: d("2024-01-02"), EnrolledOn: d("2024-01-10"), ClosedOn: d("2024-09-30"), ClosedReason: "moved away"}}},
		{ID: "c-declined", Patient: ips.Identifier{System: "urn:oid:2.16.840.1.113883.3.9999.1", Value: "MRN2"},
			Status: ips.ClientClosed, ReferredOn: d("2026-10-01"), ClosedOn: d("2026-10-20"), ClosedReason: "did not want the service"},
	}}
	if err := ips.Validate(cl); err != nil {
		t.Fatal(err)
	}
	o := Options{}
	for _, c := range cl.Clients {
		for name, r := range map[string]proto.Message{"CarePlan": CarePlan(c, o), "DocumentReference": PlanNote(c, o)} {
			js, err := MarshalPretty(r)
			if err != nil {
				t.Fatal(err)
			}
			issues, err := mappingTestValidator(t).ValidateJSON(js)
			if err != nil || HasErrors(issues) {
				t.Errorf("%s %s does not validate: %v %+v", c.ID, name, err, issues)
			}
		}
	}
	b, err := CaseloadBundle(cl, o, Collection)
	if err != nil {
		t.Fatal(err)
	}
	back, err := CaseloadFromBundle(b, ReferralOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := InFHIR(cl)
	if want.Clients[0].PastEpisodes != nil || want.Clients[0].Referral != nil {
		t.Errorf("InFHIR keeps the episodes or the referral source: %+v", want.Clients[0])
	}
	if d := cmp.Diff(want, ips.Normalize(back)); d != "" {
		t.Errorf("round trip changed the caseload (-in +out):\n%s", d)
	}
	if got := CarePlan(cl.Clients[1], o).GetStatus().GetValue().String(); got != "REVOKED" {
		t.Errorf("declined referral's plan status %s, want revoked", got)
	}
}

// TestRoundTripWithTeam: a Bundle with the specialists, care teams and
// treatment-plan links (as sync writes them where the EHR takes them)
// reads back to the same caseload, each specialist once.
func TestRoundTripWithTeam(t *testing.T) {
	cl := synth.GenerateSample()
	o := Options{SpecialistRecord: true, CareTeamRecord: true, TreatmentPlan: func(c *ips.Client) string { return "CarePlan/mh-" + c.ID }}
	b, err := CaseloadBundle(cl, o, Transaction)
	if err != nil {
		t.Fatal(err)
	}
	practitioners := map[string]int{}
	for _, e := range b.GetEntry() {
		if p := e.GetResource().GetPractitioner(); p != nil {
			practitioners[p.GetIdentifier()[0].GetValue().GetValue()]++
		}
	}
	for v, n := range practitioners {
		if n != 1 {
			t.Errorf("specialist %s is in the Bundle %d times", v, n)
		}
	}
	if len(practitioners) == 0 {
		t.Error("no Practitioner in the Bundle")
	}
	back, err := CaseloadFromBundle(b, ReferralOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(InFHIR(cl), ips.Normalize(back)); d != "" {
		t.Fatalf("round trip changed the sample (-in +out):\n%s", d)
	}
}
