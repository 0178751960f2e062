// Package storetest is the one test suite that every implementation of
// store.Store passes, so that the embedded SQLite store and the PostgreSQL
// store of a multi-replica deployment behave the same and the sync engine
// can be tested against either.
//
// The suite pins down what the contract's comments leave open, in the way
// both implementations agree on:
//
//   - Clients round-trip exactly (a client with every field of the model
//     set, compared with go-cmp), versions start at 1 and every conflicting
//     save is store.ErrConflict, and a save that fails on any client writes
//     nothing at all: no client, no outbox item, no generation bump.
//   - ListClients pages in byte order of ids, whatever the database's
//     collation.
//   - The outbox keeps one item per (connection, client). A save bumps the
//     item's generation, resets its attempts (new content has not failed
//     yet) and makes it due at once; Complete of an older generation leaves
//     the item pending, and a Fail of an older generation is not counted.
//   - Leases are exclusive until they expire, so a client has at most one
//     item leased per connection; its items on different connections are
//     leased, failed and completed independently. Complete and Fail need the
//     lease: store.ErrConflict once another owner took the item over,
//     store.ErrNotFound when the item is gone. Items are leased oldest due
//     first.
//   - FailureReasons counts items whose current content failed (a save
//     since a failure takes the item out) and dead letters; groups come
//     largest first, ties in byte order of connection and reason.
//   - Lease exclusivity is tested under concurrency with -race in mind:
//     eight workers, 200 items of 50 clients; LeaseFromReplicas runs the
//     same check over several Store values on one database, as replicas
//     would share it.
//   - Times are kept to the microsecond (PostgreSQL's precision),
//     truncated, so a watermark may make a poller re-read an instant but
//     never skip one.
//   - Error strings carry no patient data.
//   - Everything survives Close and a new Open of the same database.
//
// Run takes a function that opens t's database; see Run for what it must
// do.
package storetest
