package mappings

import (
	"strings"
	"testing"

	bpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/resources/bundle_and_contained_resource_go_proto"

	"github.com/ipsfhir/ipsfhir/ips"
	"github.com/ipsfhir/ipsfhir/ips/ipstest"
)

// TestSiteCodes: a site's local code rides beside the LOINC code of the
// observations of its kind (and no other), the result still meets the
// profiles, and it reads back as the same record.
func TestSiteCodes(t *testing.T) {
	cl := ipstest.Sample(t)
	var c *ips.Client
	for _, cc := range cl.Clients {
		if len(cc.Jobs) > 0 && len(cc.Employment) > 0 {
			c = cc
			break
		}
	}
	flowsheet := ips.Coding{System: "urn:oid:1.2.840.114350.1.13.0.1.7.2.707679", Code: "1570000123", Display: "Employment status (flowsheet)"}
	o := Options{Program: cl.ProgramID(), SiteCodes: map[Kind]ips.Coding{KindEmploymentStatus: flowsheet}}

	st := EmploymentStatusObservation(c, c.Employment[0], o)
	codes := st.GetCode().GetCoding()
	if len(codes) != 2 || codes[0].GetSystem().GetValue() != SystemLOINC || codes[1].GetCode().GetValue() != flowsheet.Code || codes[1].GetSystem().GetValue() != flowsheet.System {
		t.Fatalf("employment status code: %v; want LOINC then the site's code", codes)
	}
	if n := len(JobObservation(c, c.Jobs[0], o).GetCode().GetCoding()); n != 1 {
		t.Errorf("a job got %d codings; only employment status has a site code", n)
	}
	v, err := NewValidator()
	if err != nil {
		t.Fatal(err)
	}
	b, err := MarshalCompact(&bpb.ContainedResource{OneofResource: &bpb.ContainedResource_Observation{Observation: st}})
	if err != nil {
		t.Fatal(err)
	}
	issues, err := v.ValidateJSON(b)
	if err != nil {
		t.Fatal(err)
	}
	for _, is := range issues {
		if is.Severity == "error" {
			t.Errorf("with a site code: %v", is)
		}
	}
	_, back, err := EmploymentStatusFromFHIR(st)
	if err != nil || back.Status != c.Employment[0].Status || back.Date != c.Employment[0].Date {
		t.Errorf("read back %+v, %v; want %+v", back, err, c.Employment[0])
	}
	if !strings.Contains(string(b), flowsheet.Code) {
		t.Error("the site code is not in the JSON")
	}
}
