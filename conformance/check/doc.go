// Package check is the EHR readiness suite behind `ipsfhir check`: it tells
// an EHR administrator, before sync is enabled, whether a clinic EHR can take
// part in sync, what it will and will not do, and what to fix, in the manner
// of ONC's Inferno test kit but limited to what ipsfhir needs.
//
// # What runs
//
// Tests come in groups, always reported in this order:
//
//   - connectivity: the FHIR base answers, over https with the certificate
//     verified (plain http only to a loopback address, reported as a warning).
//   - auth: a token is obtained (bearer, SMART Backend Services), the EHR
//     accepts it, and answers an invalid token with 401, which is what makes
//     ipsfhir fetch a new token when one expires.
//   - metadata: /metadata is an R4 (4.0.x) CapabilityStatement with a server
//     part that speaks JSON.
//   - resources: Patient, Goal, CarePlan, Observation, DocumentReference and
//     ServiceRequest are declared with read and search, and a search by
//     patient (by identifier for Patient) works live.
//   - write-paths: the path each IPS concept takes (native resource, chart
//     note, none), straight from adapter/plan.
//   - conditional, versioning: conditional create/update and versioned
//     updates (If-Match) for each type the plan writes natively.
//   - change-detection: _lastUpdated or a date parameter per type, and a live
//     poll the way the sync engine polls.
//   - bundles: batch and transaction.
//   - smart: .well-known/smart-configuration has a token endpoint, on the
//     FHIR base's origin unless the token URL is configured (the reason
//     names both origins), and supports client_credentials,
//     private_key_jwt and the key's algorithm (only when the connection
//     uses smart-backend).
//   - write-tests: only with Options.WriteTests and a test patient.
//
// # Nothing undeclared, nothing written
//
// A live check sends only what the CapabilityStatement declares, the way the
// sync engine does: a test whose interaction or search parameter is not
// declared is omitted, never tried. It sends no patient data: without a test
// patient, searches use a made-up patient id or identifier that matches
// nothing. It writes nothing unless WriteTests is set; then it creates one
// test resource (a Goal, or a DocumentReference where Goal is not writable)
// for the test patient with an identifier in the urn:ipsfhir:check namespace,
// reads, searches and updates it (with a stale If-Match too where versioned
// updates are declared), and deletes it where delete is declared. Where it is
// not, the result says what was left behind.
//
// Reasons are one line a person can act on. They never carry patient data,
// response bodies or URLs with query strings: what they quote of an EHR's
// answers is the HTTP status, the OperationOutcome issue codes and the
// names of declared interactions and parameters.
//
// # Results and readiness
//
// Each Result is pass, fail, skip (applies but was not run: offline, no
// write tests, or an earlier test it needs did not pass), omit (does not
// apply to this connection) or error (no verdict: the EHR timed out or
// failed). A Result is blocking when its failure means sync cannot run (the
// EHR is unreachable, the certificate does not verify, the token is refused,
// the statement is not R4, a declared interaction the plan relies on fails
// live). Other failures are advisory: sync runs, with the fallback the plan
// describes. Report.Ready is true when no blocking result failed or erred.
package check
