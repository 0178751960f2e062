package fhirapi

import (
	"testing"

	"github.com/ipsfhir/ipsfhir/adapter/api"
)

// TestDirectorGetsOnlyOutcomes: a program director's key (role director)
// reaches Measure and MeasureReport and the public statement, and no route
// of records, Bulk Data export or the audit trail: every route in the
// table, so a route added later is covered too.
func TestDirectorGetsOnlyOutcomes(t *testing.T) {
	t.Parallel()
	outcomesRoutes := 0
	for _, rt := range routes() {
		allowed := rt.access.allows(api.RoleDirector)
		switch rt.access {
		case public, outcomes:
			if !allowed {
				t.Errorf("%s %s: director refused, but it is %v", rt.method, rt.path, rt.access)
			}
			if rt.access == outcomes {
				outcomesRoutes++
			}
		default:
			if allowed {
				t.Errorf("%s %s: director allowed; a director sees outcomes only", rt.method, rt.path)
			}
		}
	}
	if outcomesRoutes == 0 {
		t.Fatal("no outcomes route in the table: the test checked nothing a director may reach")
	}
	// And the roles that were there before keep what they had.
	for _, r := range []api.Role{api.RoleSpecialist, api.RoleClinician, api.RoleAdmin} {
		if !records.allows(r) {
			t.Errorf("%s may no longer read records", r)
		}
	}
	for _, r := range []api.Role{api.RoleHIE, api.RoleDirector, api.Role("")} {
		if records.allows(r) || auditTrail.allows(r) {
			t.Errorf("%q may read records or the audit trail", r)
		}
	}
}
