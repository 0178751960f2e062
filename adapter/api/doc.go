// Package api serves the records API, /api/v1: the JSON interface through
// which employment specialists and their scripts keep IPS records (clients,
// employment goals, supports, jobs), and clinicians and administrators read
// them.
//
// openapi.json is its OpenAPI 3.1 description, with /admin and /metrics:
// served at GET /api/v1/openapi.json without a key, and rendered as
// docs/API.md. Tests hold it to the router both ways (every route and
// method is an operation, every operation a route), to the roles each route
// admits, to every response the package's tests receive, and to the
// caseload schema, whose definitions it copies; and docs/API.md to it (go
// test ./adapter/api -run TestAPIReference -update renders it again).
//
// # Resources
//
//	GET  /api/v1/openapi.json                     this API's OpenAPI description (no key needed)
//	GET  /api/v1/clients?after=ID&limit=N        a page of clients, in id order
//	     …&status=referred                        only those of a status: the referrals waiting
//	POST /api/v1/clients                          a new client (201; 409 if the id is taken)
//	GET  /api/v1/clients/{id}                     one client
//	PUT  /api/v1/clients/{id}                     the whole client, replaced (or created: 201)
//	POST /api/v1/clients/{id}/accept              {"enrolledOn"}: a referred client enrolled (409 unless referred)
//	POST /api/v1/clients/{id}/decline             {"closedOn", "closedReason"}: a referral closed without enrollment
//	GET  /api/v1/clients/{id}/goals               {"goals": [...]}
//	POST /api/v1/clients/{id}/goals               a new goal (201)
//	GET  /api/v1/clients/{id}/goals/{gid}         one goal
//	PUT  /api/v1/clients/{id}/goals/{gid}         the goal, replaced (or added: 201)
//	…and the same for supports and jobs.
//
// Bodies are in the caseload JSON format (docs/CASELOAD.md): a client is
// exactly a caseload file's client, a goal a client's goal. They are checked
// by the same code that checks a caseload file (ips.Decode on a caseload of
// one client), so the API and a file accept and refuse the same things, with
// the same messages. A page of GET /api/v1/clients is itself a caseload
// document; the next page's URL is in the Link header (rel="next").
//
// A referral read from an EHR makes a client with status referred (a
// re-referral of a former client keeps the earlier episodes in
// pastEpisodes); enrollment is the specialist's accept. A PUT whose client
// has no pastEpisodes keeps the stored ones, and the result must fit them.
//
// # Writes
//
// A client is an aggregate: every write reads the client, applies the
// change, checks the whole client, and saves it with one store.SaveClients
// call, which also enqueues one outbox item per enabled connection in the
// same transaction (the transactional outbox: the record and the work of
// sending it commit together or not at all). Consent is not decided here:
// the push worker checks each client's consent when it maps the client,
// because consent can change while an item waits, and an item carries no
// data of its own.
//
// The client's version is its ETag (records have none of their own: they
// share the client's). With If-Match a write happens only if the client is
// still at that version, else 412. Without it, a write that loses a race to
// another is redone on the fresh client, which is what an unconditional
// write asks for (409 only if the client keeps changing).
//
// # Errors
//
// Every error is {"issues": [{"severity", "code", "path", "message"}]}, the
// issue list of a FHIR OperationOutcome with code from the issue-type value
// set: 400 a body that is not one JSON value, a bad query; 401 no or an
// unknown API key; 403 a role that may not do this; 404; 409 a create whose
// id is taken; 412 If-Match failed; 413; 415; 422 a body that is not a valid
// client or record, listing every problem with its path relative to the
// body (text that is not valid UTF-8, or holds an unpaired surrogate escape
// or NUL, included: ips.Decode refuses it rather than store U+FFFD); 500 with a message that says nothing about the request; 503 "store
// unavailable", with Retry-After, while the database cannot be reached.
// Nothing is stored on any error.
//
// # Admin
//
// With Options.Admin set, the admin role also gets:
//
//	GET  /admin/connections                       connected EHRs, their write mode, outbox depth and initial load
//	GET  /admin/connections/{name}/plan           one connection's sync plan
//	POST /admin/connections/{name}/reconcile      queue every client for it (202)
//	GET  /admin/dead-letters?connection=NAME      dead letters, oldest first
//	POST /admin/dead-letters/{id}/replay          a dead letter back to the outbox (204)
//	GET  /admin/failures?connection=NAME          {"failures": [{"connection", "reason", "pending", "dead"}]}:
//	                                              what is failing, per connection and reason, largest first
//	GET  /admin/conflicts?connection=NAME&all=true  open (or all) conflicts
//	POST /admin/conflicts/{id}/resolve?resolution=…  resolve one (204): kept-ips or kept-ehr makes that value stand on both sides, anything else closes it with a note
//
// # Who may call
//
// Every request but GET /api/v1/openapi.json needs an API key,
// "Authorization: Bearer KEY" (the description is public, like a FHIR
// server's /fhir/metadata: it holds no data). Only the keys' SHA-256 sums
// are configured; a presented key is hashed and compared with each in
// constant time. Roles: specialist reads and writes records;
// clinician and admin read; hie may not touch records (403). A missing or
// unknown key is 401, a known key whose role does not allow the request 403.
//
// Browser apps of the origins in Options.CORSOrigins (config
// server.corsOrigins) may call /api/v1 from their pages (cors.go, which the
// FHIR facade uses too): their preflights are answered before
// authentication, and their answers name their exact origin. Other origins,
// and /admin and /metrics, get no CORS headers.
//
// # Logs
//
// One access-log line per request: method, route template
// (/api/v1/clients/{id}, never the path, which holds ids), status, duration
// and the caller's key name. Query strings, bodies, keys and ids are never
// logged; a 500's cause is logged with the request's ids replaced by {id}.
package api
