// Package plan turns an EHR's CapabilityStatement into the sync plan for one
// connection: for each IPS concept, the path its data takes into the chart,
// and for each FHIR resource type, how writes are made idempotent, how
// concurrent edits are detected and how changes are found.
//
// Real EHRs differ, and most refuse writes of Goal and CarePlan: Epic's and
// Oracle Health's published statements list both as read/search only, and
// Epic declares no conditional create or update and no batch or transaction.
// So nothing here assumes a fully writable server. The plan is built from
// what the statement declares, best path first:
//
//   - write path: native resource → chart note (one DocumentReference per
//     client holding the rendered plan, updated in place) → none (the concept
//     is not written, and the plan says so plainly);
//   - idempotency: conditional update by business identifier → conditional
//     create → the adapter's ledger plus a search before create (by
//     identifier, or by patient with the identifier matched locally);
//   - concurrency: If-Match with the known version where the server declares
//     versioned updates → read, compare, write;
//   - change detection: _lastUpdated polling → a date parameter that moves
//     with new records → periodic full reconcile by patient;
//   - Provenance, written alongside whatever a concept writes (not a concept
//     of its own): where the statement declares Provenance create and a
//     retried one can be found again, a conditional create by its identity
//     tag (_tag) → a search by _tag, or by target, before a create → none.
//
// The sync engine obeys the plan: it never sends an interaction the statement
// does not declare. An administrator can override a concept's path; an
// override the EHR cannot honour is an error, not a silent downgrade.
package plan
