// Package sqlite is the embedded IPS store: one SQLite file, no server, no
// cgo (modernc.org/sqlite is SQLite translated to Go), so a single ipsfhir
// binary runs a program's whole sync on a laptop or a small VM. It fulfils
// store.Store and passes storetest, like the PostgreSQL store that several
// replicas share.
//
// Writers. SQLite has one write lock per file. Left to database/sql's pool,
// goroutines that write at once would each open a transaction, and all but
// one would fail with SQLITE_BUSY (a deferred transaction that reads and
// then writes cannot wait for the lock without risking deadlock, so SQLite
// does not let it). The store therefore keeps one write connection: writers
// in this process queue for it in Go, and never see SQLITE_BUSY. Its
// transactions BEGIN IMMEDIATE, taking the file's write lock before reading,
// so another process on the same file waits on busy_timeout rather than
// failing halfway through a transaction. Reads go through a separate pool of
// read-only connections; in WAL mode they see the last commit and neither
// block nor wait for the writer.
//
// Leasing. Every write transaction, Lease included, runs alone, so a Lease
// reads which items are free and marks them taken with no other lease in
// between: exclusivity follows from the single writer and the IMMEDIATE
// lock, with no row locks needed (SQLite has none). The lease (owner,
// expiry) lives on the outbox row, one per (connection, client), so a
// client's items on different connections are leased independently.
//
// Waking. WatchOutbox is in-process (store.Watchers): a commit that
// enqueued wakes the watchers of this Store. Another process writing the
// same file wakes nobody here; its items are found by polling.
//
// Storage. Clients are JSON documents in the ips.Client encoding, checked
// with json_valid; tables are STRICT, so a value of the wrong type is an
// error rather than silently stored. Times are INTEGER Unix microseconds,
// the precision PostgreSQL keeps, so both stores truncate alike. Migrations
// are numbered .sql files embedded in the binary and applied at Open in one
// IMMEDIATE transaction, recorded in schema_migrations.
package sqlite
