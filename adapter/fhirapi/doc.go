// Package fhirapi serves /fhir: a read-only FHIR R4 facade over the IPS
// store, for EHRs and tools that would rather read FHIR than the records
// API, FHIR Bulk Data export for HIE operators, and the program's outcome
// Measures and MeasureReports. (IPS is Individual Placement and Support,
// supported employment for people with serious mental illness, not the HL7
// International Patient Summary.) docs/FHIR-API.md is the user's guide.
//
// # What is served
//
//	GET  /fhir/metadata                           the CapabilityStatement (no API key needed)
//	GET  /fhir/{type}/{id}                        read: Goal, CarePlan, Observation, DocumentReference
//	GET  /fhir/{type}?patient=…&_lastUpdated=…    search (also POST /fhir/{type}/_search)
//	GET  /fhir/$export, /fhir/Group/{id}/$export  Bulk Data kick-off (Prefer: respond-async);
//	                                              POST too, with a Parameters body
//	GET  /fhir/bulk-status/{job}                  202 while running, 200 with the manifest when done
//	DELETE /fhir/bulk-status/{job}                cancel, or free the files
//	GET  /fhir/bulk-files/{job}/{file}            one output file, application/fhir+ndjson
//	GET  /fhir/Measure[/{id}], /fhir/MeasureReport the outcome measures and reports
//
// The routes are one table (routes.go). It drives the router, the
// parameters each search accepts, and a test that holds the published
// CapabilityStatement (conformance/artifacts/capabilities/ipsfhir-server.json)
// to exactly what the table serves, so the two cannot drift.
//
// # Resources and their ids
//
// Nothing is stored for the facade: every resource is mapped on request from
// the client it belongs to, by the same pure mappings the sync uses
// (mappings.ClientEntries), so the facade shows exactly what an EHR receives,
// security labels included. A resource's id is the UUID of its business
// identifier (mappings.Key.FullURL without "urn:uuid:"): stable, the same on
// every replica and after a restart, and the same UUID as the record's
// fullUrl in ipsfhir's own Bundles. References between resources
// (CarePlan.goal) are literal, "Goal/{id}", so they resolve here. Subjects
// refer to the patient by identifier only: the facade serves no Patient.
// meta.lastUpdated of every resource is when the store last saved its client
// (records share their client's version, as in the records API), and
// meta.versionId is the client's version.
//
// A read must find the client from a UUID, which cannot be reversed: an
// in-memory index from resource id to client id answers it, checked against
// the client on every hit, and rebuilt by a scan of the store on a miss
// (concurrent misses share one scan).
//
// # Search
//
// patient=Patient/{id} (or subject=…) names the IPS client id (the id of
// /api/v1/clients); patient:identifier=system|value (or subject:identifier)
// names the patient's EHR identifier; identifier=system|value the business
// identifier; _id resource ids, found through the read index; code (on
// Observation) a token matched against the codings the mapping writes in
// Observation.code (codingsOf, held to the mapping by a test). _lastUpdated
// takes the prefixes eq, gt, ge, lt and le, at any precision from a year to
// an instant, and may repeat (a range). Results are in client id order, or
// with _sort=_lastUpdated (-_lastUpdated) in the order of the client's last
// save (newest first), then client id; within a client, in the order
// mappings.ClientEntries gives. Paging is keyset on that order, so it stays
// correct while clients are added. A search that names no patient or _id
// reads every client to count the total; the store has no index to do
// better. collect keeps only the clients the page could come from.
//
// _summary=count answers the total alone; _summary=data and _elements cut
// resources down (results.go), keeping the mandatory elements the R4 protos
// mark, tagging them SUBSETTED and dropping their profile claims.
// Parameters a search does not support (and a _sort or _summary value it
// cannot do) are ignored and named in an OperationOutcome entry of the
// Bundle, or refused with 400 under Prefer: handling=strict.
//
// The self and next links carry one parameter, _cursor, for a GET search and
// a POST _search alike (cursor.go): the search's parameters (the result
// parameters included), the warnings about what it ignored and the page's
// position sealed with XChaCha20-Poly1305 under a key derived from
// Options.CursorKey (or a random key of the process), bound to the resource
// type and the caller's API key, expiring after Options.CursorTTL. A link
// therefore never carries an identifier back into a URL, and a cursor that
// was altered, made elsewhere or expired is refused (400, or 410 when
// expired) with an OperationOutcome that says to search again.
//
// # Absolute URLs
//
// Every absolute URL the facade gives out (links, fullUrls, the export's
// Content-Location and manifest, implementation.url) starts with
// Options.BaseURL, which New requires. None is built from a request's Host or
// X-Forwarded-* headers: the caller chooses those, and a client following a
// link would send its key wherever they pointed.
//
// # Consent and roles
//
// Read and search leave out every client whose consent does not allow EHR
// sharing (Options.AllowsEHR): to the caller, such a client's resources do
// not exist. Export includes only clients whose consent allows HIE sharing
// (Options.AllowsHIE). Callers authenticate with the records API's keys
// (api.Authenticate). specialist, clinician and admin may read and search
// records; hie may not (403) but may export, as may admin; every role may read
// Measure and MeasureReport, which is all director (a program director) may.
//
// # De-identified export
//
// Only an admin's export is identified (for the program's own use). Every
// other caller's (hie) is a HIPAA limited data set (deid.go): subjects,
// business identifiers and ids become HMAC-SHA256 pseudonyms under a key
// derived from Options.PseudonymKey, the program and the caller's pseudonym
// scope (api.Key.Scope: its pseudonymScope, or its name), stable across
// one caller's exports and unlinkable across scopes; each exported kind of
// resource has an allowlist of the elements kept (codes, statuses, dates,
// quantities), so free text, and anything a later mapping adds, is dropped
// rather than leaked; chart notes (DocumentReference) are never exported;
// meta.security gains v3-ObservationValue#PSEUDED, and meta.profile keeps
// only the profiles the copy still meets. Without a key, such an export is
// refused (501), never sent identified.
//
// # Bulk export
//
// Jobs run in the process that accepted them and write their output, as
// they read the clients, to files on disk under Options.ExportDir
// (exportdir.go, exportfiles.go), never holding it in memory: at most
// Limits.MaxJobs running at once, Limits.MaxJobsPerCaller
// kept per caller until their files are fetched, each at most
// Limits.MaxJobBytes, and a finished job's files are removed after
// Limits.JobTTL (or at its owner's next kick-off once all were fetched, or
// when it is deleted).
// Server.ExportJobs and CancelExport serve /admin/exports. That suits one
// replica; behind a load balancer, polls must reach the same replica, and
// a restart loses every job (the client starts again). The export reads the
// store client by client and is not a snapshot: a client saved after the
// kick-off (transactionTime) is left out, so the next export with
// _since=transactionTime picks it up.
//
// # Browser apps
//
// Options.CORSOrigins (config server.corsOrigins) lists the origins of the
// browser apps that may call /fhir; api.CORS answers their preflights before
// authentication and adds the CORS headers, with the exact origin, to their
// answers, and the statement then says security.cors true. Other origins get
// none.
//
// # Errors and logs
//
// Every error is an OperationOutcome (application/fhir+json). A bad request
// names the parameter, never its value: search values are patient data. The
// access log has one line per request with the method, the route template,
// the status, the duration and the caller's key name, never the path (it holds
// ids) or the query.
package fhirapi
