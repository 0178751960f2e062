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
