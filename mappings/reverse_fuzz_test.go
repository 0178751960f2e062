package mappings

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/fhir/go/fhirversion"
	"github.com/google/fhir/go/jsonformat"

	"github.com/ipsfhir/ipsfhir/ips"
	"github.com/ipsfhir/ipsfhir/ips/synth"

	bpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/resources/bundle_and_contained_resource_go_proto"
)

// The fuzz targets feed arbitrary FHIR JSON to every FHIR → IPS reader. What
// comes back from an EHR is outside our control, so the readers must never
// panic, and whatever they accept must be a valid caseload.

func addGoldenSeeds(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("..", "testdata", "golden", "*.json"))
	for _, name := range files {
		if data, err := os.ReadFile(name); err == nil {
			f.Add(data)
		}
	}
}

func FuzzCaseloadFromBundle(f *testing.F) {
	b, err := CaseloadBundle(synth.GenerateSample(), Options{PRAPARE: true}, Transaction)
	if err != nil {
		f.Fatal(err)
	}
	js, err := MarshalCompact(b)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(js)
	f.Add([]byte(`{"resourceType":"Bundle","type":"collection","entry":[{"resource":{"resourceType":"ServiceRequest","status":"active","intent":"order","subject":{"reference":"Patient/1"},"category":[{"coding":[{"system":"` + SystemSDOHCCTemporary + `","code":"employment-status"}]}]}}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := ParseBundle(data)
		if err != nil {
			return
		}
		cl, err := CaseloadFromBundle(b, ReferralOptions{PatientSystem: "https://ehr.example/Patient"})
		if err != nil {
			return
		}
		var buf bytes.Buffer
		if err := ips.Encode(&buf, cl); err != nil {
			t.Fatal(err)
		}
		if _, err := ips.Decode(&buf); err != nil {
			t.Fatalf("CaseloadFromBundle accepted what is not a valid caseload file: %v", err)
		}
	})
}

// FuzzResourceReaders parses any resource and sends it to the reader for its
// type: Goal, CarePlan, the two Observations and ServiceRequest.
func FuzzResourceReaders(f *testing.F) {
	addGoldenSeeds(f)
	f.Add([]byte(`{"resourceType":"ServiceRequest","id":"x","status":"active","intent":"order","subject":{"identifier":{"system":"s","value":"v"}},"authoredOn":"2026-01-01"}`))
	u, err := jsonformat.NewUnmarshaller("UTC", fhirversion.R4)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := u.Unmarshal(data)
		if err != nil {
			return
		}
		cr := m.(*bpb.ContainedResource)
		switch {
		case cr.GetGoal() != nil:
			_, g, err := GoalFromFHIR(cr.GetGoal())
			if err == nil && g.ID == "" {
				t.Fatal("goal accepted without an id")
			}
		case cr.GetCarePlan() != nil:
			_, c, err := PlanFromFHIR(cr.GetCarePlan(), func(string) (string, bool) { return "g", true })
			if err == nil && (c.ID == "" || c.EnrolledOn.IsZero()) {
				t.Fatal("plan accepted without client id or enrollment date")
			}
		case cr.GetObservation() != nil:
			_, _, _ = JobFromFHIR(cr.GetObservation())
			_, _, _ = EmploymentStatusFromFHIR(cr.GetObservation())
		case cr.GetServiceRequest() != nil:
			c, err := ReferralFromFHIR(cr.GetServiceRequest(), ReferralOptions{PatientSystem: "https://ehr.example/Patient"})
			if err == nil {
				var buf bytes.Buffer
				if err := ips.Encode(&buf, &ips.Caseload{Clients: []*ips.Client{c}}); err != nil {
					t.Fatal(err)
				}
				if _, err := ips.Decode(&buf); err != nil {
					t.Fatalf("referral accepted as a client no caseload file could hold: %v", err)
				}
			}
		}
	})
}
