// Package store is the IPS store: the system of record for the program's IPS
// work and for everything the sync engine must not forget.
//
// Data flow. A specialist's change arrives through the API or an import and
// is saved with SaveClients. In the same transaction the store enqueues one
// outbox item per (connection, client): the transactional outbox. If the
// process dies after the commit, the item is still there; if it dies before,
// neither the change nor the item exists. Items coalesce: saving a client
// twice before a worker gets to it leaves one pending item, and a worker
// always maps the client as it is now, so nothing is lost and nothing is sent
// twice for one change.
//
// A commit that enqueues wakes the push workers watching the connection
// (WatchOutbox), so a change need not wait for the next poll. The first
// load of a connection, the whole caseload queued when it is enabled, is
// tracked (LoadProgress): how much is done, and an estimate of the time
// left.
//
// Outbox workers Lease items (several adapter replicas may share one
// PostgreSQL database; a lease is exclusive until it expires), push the
// client's resources to the EHR, and then Complete the item, or Fail it with a
// patient-free reason. An item that fails MaxAttempts times becomes a dead
// letter, which an administrator can replay.
//
// The ledger records, per connection and business identifier, the EHR
// resource id, version and content hash the adapter last wrote or saw. It
// makes pushes idempotent (no write when the hash is unchanged; no blind
// re-create when an answer was lost) and suppresses echoes (a pulled version
// that the adapter itself wrote is not a clinician's change).
//
// Watermarks remember how far each connection's change polling has read.
// Conflicts keep both sides of a field that both the program and the clinic
// changed since the last sync, for an administrator to review.
//
// Implementations live in sibling packages named by kind: sqlite (embedded
// default, pure Go) and postgres (production, multi-replica). storetest holds
// the one test suite both must pass.
package store
