package outcomes

import "testing"

func TestZZDebug(t *testing.T) {
	o := Options{Program: program, Audience: AudienceHIE, Threshold: 11, Consents: hieDefaultYes, SpecialistKey: testSpecialistKey, Date: producedAt}
	c, err := compute(constructed().Clients, q3, o)
	if err != nil {
		t.Fatal(err)
	}
	for l := range c.levels {
		t.Logf("level %d n=%v hidden=%v", l, c.levels[l].n, c.hidden[l])
	}
}
