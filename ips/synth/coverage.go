package synth

import (
	"fmt"

	"github.com/ipsfhir/ipsfhir/ips"
)

// CoverageGaps lists the enumerated values cl never uses, and other shapes
// tests of the mappings need (several jobs per client, ended jobs).
func CoverageGaps(cl *ips.Caseload) []string {
	seen := map[string]bool{}
	mark := func(kind string, v any) { seen[fmt.Sprintf("%s %v", kind, v)] = true }
	multiJob := 0
	for _, c := range cl.Clients {
		mark("client status", c.EffectiveStatus())
		mark("disclosure", c.Disclosure)
		for _, g := range c.Goals {
			mark("goal status", g.Status)
			mark("achievement", g.Achievement)
		}
		for _, s := range c.Supports {
			mark("support type", s.Type)
			mark("support status", s.Status)
		}
		for _, j := range c.Jobs {
			if !j.Current() {
				mark("end reason", j.EndReason)
			}
		}
		for _, e := range c.Employment {
			mark("employment status", e.Status)
		}
		if len(c.Jobs) > 1 {
			multiJob++
		}
	}
	var want []string
	for _, v := range clientStatuses {
		want = append(want, fmt.Sprintf("client status %v", v))
	}
	for _, v := range disclosures {
		want = append(want, fmt.Sprintf("disclosure %v", v))
	}
	for _, v := range ips.GoalStatuses {
		want = append(want, fmt.Sprintf("goal status %v", v))
	}
	for _, v := range ips.GoalAchievements {
		want = append(want, fmt.Sprintf("achievement %v", v))
	}
	for _, v := range ips.SupportTypes {
		want = append(want, fmt.Sprintf("support type %v", v))
	}
	for _, v := range ips.SupportStatuses {
		want = append(want, fmt.Sprintf("support status %v", v))
	}
	for _, v := range ips.JobEndReasons {
		want = append(want, fmt.Sprintf("end reason %v", v))
	}
	for _, v := range ips.EmploymentStatuses {
		want = append(want, fmt.Sprintf("employment status %v", v))
	}
	var missing []string
	for _, w := range want {
		if !seen[w] {
			missing = append(missing, w)
		}
	}
	if multiJob < 2 {
		missing = append(missing, fmt.Sprintf("two clients with several jobs (have %d)", multiJob))
	}
	return missing
}
