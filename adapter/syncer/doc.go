// Package syncer is the sync engine: it moves IPS records from the store into
// each connected EHR (push) and brings clinicians' changes and referrals back
// (pull), obeying each connection's sync plan.
//
// Push. Outbox workers lease (connection, client) items from the store. For
// an item the worker loads the client as it is now, maps it with the pure
// functions in mappings, and for each resource the plan says to write
// compares a content hash with the ledger: unchanged resources are not sent.
// A changed one is written the way the plan allows, best first: a
// conditional update by business identifier; else an update by the EHR id
// the ledger holds (If-Match with the known version where the EHR declares
// versioned updates); else, for a record the ledger does not know, a search
// (by identifier, or by patient with the identifier matched here) and only
// then a create. A create whose answer was lost is never resent blindly: the
// item fails, and the next attempt searches first. Every write updates the
// ledger (EHR id, version, hash), which also lets pull recognise the
// adapter's own writes. Goals are written before the plan that refers to
// them, so single requests can carry literal references.
//
// The hash is taken over the mapping with no EHR-specific parts (no literal
// references, no note date), so a record's hash changes only when the IPS
// record does, however the EHR assigned ids.
//
// Consent: nothing about a client is written to an EHR unless the client's
// consent (or the program default) allows it.
package syncer
