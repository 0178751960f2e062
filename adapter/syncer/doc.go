// Package syncer is the sync engine: it moves IPS records from the store into
// each connected EHR (push) and brings clinicians' changes and referrals back
// (pull), obeying each connection's sync plan.
//
// Push. Outbox workers lease (connection, client) items from the store. For
// an item the worker loads the client as it is now, maps it with the pure
// functions in mappings, and for each resource the plan says to write
// compares a content hash with the ledger: unchanged resources are not sent.
// The ledger rows of the client's records are read in one query; a row the
// push writes is read again where a later step needs it.
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
// Provenance. Where the plan says the EHR takes Provenance
// (plan.ResourcePlan.WrittenAlongside), every content the adapter writes of
// a record is accompanied by one Provenance (mappings.Provenance),
// identified by the record's key and the content hash so that a retried
// write never makes two: in a transaction, as a conditional create in the
// same Bundle; otherwise owed in the ledger once the write is known to be
// in the EHR and sent right after it (a conditional create where declared,
// else a search by tag or by target, then a create). A Provenance that
// fails never fails or repeats its resource's write: the other resources
// are written, then the item fails with a "provenance" reason and its
// retry sends only what is still owed (see provenance.go). Content written
// again after something else (A, B, then A) keeps the Provenance of its
// first write; a write whose answers were all lost and that only a pull
// then recognises as the adapter's gets none.
//
// The hash is taken over the mapping with no EHR-specific parts (no literal
// references, no note date), so a record's hash changes only when the IPS
// record does, however the EHR assigned ids.
//
// The treatment plan. The IPS plan is linked to the patient's mental
// health treatment plan (the clinic's own CarePlan): its partOf, or the
// chart note's context.related. The treatment plan is found by a CarePlan
// search by patient and the answer is kept in the ledger per client
// (treatmentplan.go), so a push searches only when the answer is older
// than TreatmentPlanSearch.Refresh, or when a pull sees the plan change.
// The link is hashed content like any other: a new answer rewrites the
// plan or note. Where the plan says so, references to the client's goals
// are added to the treatment plan, with If-Match, adding only. The employment
// specialist (a Practitioner shared by their clients) and the client's
// CareTeam are written before the plan that names them, where the plan
// allows.
//
// Knowing what the EHR holds. Versions alone cannot tell whose content a
// resource holds: an EHR may answer a write without a version, and a write
// whose answer was lost leaves the EHR on a version the ledger never saw.
// So the ledger also keeps the hashes of writes sent but not confirmed
// (LedgerEntry.Attempted, recorded before each update is sent), and the
// engine can hash what the EHR holds in the same canonical form (settle.go:
// server-assigned id and meta dropped, literal references turned back into
// the records' urn:uuids). A 409/412 on an update is settled by reading:
// the adapter's own content is recorded and nothing is written again;
// content it sent earlier is overwritten with the version just read; a
// change made in the EHR is merged (a Goal, as a pull would) or, for what
// the program owns, recorded as a conflict and then overwritten with the
// version just read. Where the EHR has no versioned update the plan says
// read-compare-write, and push reads and compares before every update.
//
// Pull. Each connection's changes are polled the way the plan says. A
// pulled resource whose version or content is the adapter's own is an
// echo. A clinician's change to a goal is merged field by field (the
// configured winner decides fields both sides changed, with a conflict
// record); a merge that loses a race with a specialist's save is redone on
// the fresh client, and a pull never moves its watermark past a change it
// did not apply. A pull that changes nothing saves nothing.
//
// Failures. A failed item is retried on its connection's RetrySchedule
// (doubling, with jitter; an EHR's Retry-After can lengthen a delay, never
// shorten it) and dead-lettered after MaxAttempts. Its stored reason is
// short and the same for every item that failed the same way (operation,
// kind, HTTP status, issue codes; never addresses), so failures can be
// grouped. One connection's failure never stops another's push or pull.
//
// Consent: nothing about a client is written to an EHR unless the client's
// consent (or the program default) allows it.
package syncer
