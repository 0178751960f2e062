// Package postgres is the IPS store for production and for several adapter
// replicas sharing one PostgreSQL database (pgx, pgxpool). It fulfils
// store.Store and passes storetest, like the embedded SQLite store.
//
// Leasing. Replicas split the outbox between them without talking to each
// other. Lease selects due items that hold no live lease and locks them with
// FOR UPDATE SKIP LOCKED, then records the lease (owner, expiry) on the
// outbox rows and commits. Another replica leasing at the same moment skips
// the rows this one has locked instead of queueing behind them; if it
// reaches a row this one has already committed, PostgreSQL locks the new
// version and re-checks the WHERE clause against it (READ COMMITTED), which
// now sees the lease and drops the row. So an item is never leased twice.
// There is one item per (connection, client), so a client has at most one
// item out per connection, and its items on different connections are
// leased independently. Expiry is measured on the database's clock, which
// all replicas share. A worker whose lease expired and was taken over gets
// store.ErrConflict from Complete and Fail, which lock the item and check
// that the caller still holds it.
//
// Transactions. Every operation is one READ COMMITTED transaction.
// SaveClients writes all clients (in id order, so two overlapping saves
// lock rows in the same order and cannot deadlock) and upserts their outbox
// rows in pipelined batches inside one transaction: a version conflict on
// any client rolls back all of it.
//
// Waking. Every transaction that enqueues sends pg_notify on channel
// ipsfhir_outbox with the schema and the connection name (delivered on
// commit, folded within a transaction). WatchOutbox starts, once per Store,
// a listener on a connection of its own outside the pool, which passes
// notifications of its schema to the watchers and reconnects with backoff
// when the connection is lost, waking every watcher after each (re)connect
// since notifications sent meanwhile are lost.
//
// Initial load. The connections row keeps the load's total and end; the
// load's pending items are those created no later than seeded_at, counted
// through an index on (connection, created_at). Complete and Fail lock the
// connection's row while its load runs before checking whether any is
// left, so that two workers removing the last two items cannot each miss
// the end.
//
// Schema. Clients are jsonb documents in the ips.Client encoding. Ids that
// are paged or joined on are COLLATE "C", so ListClients pages in byte order
// whatever the database's collation, as SQLite does. Migrations are numbered
// .sql files embedded in the binary, applied at Open in one transaction,
// recorded in schema_migrations, and serialized between replicas by a
// transaction-scoped advisory lock keyed on the schema: the first replica
// migrates, the others wait and find nothing left to do. The store works in
// the first schema of the connection's search_path, which lets tests (and
// deployments) give each store a schema of its own.
package postgres
