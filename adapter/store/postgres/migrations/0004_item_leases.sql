-- Leases move from the client to its outbox items. client_leases let a
-- client have one item leased at a time over all connections, so a client
-- whose push to one EHR was slow or failing held up its push to every other.
-- Now each item, one per (connection, client), carries its own lease: a
-- client has at most one item leased per connection, and its items on
-- different connections are pushed independently. Lease locks the item row
-- itself (FOR UPDATE SKIP LOCKED). A lease held at the upgrade moves to its
-- item, so its worker can still complete or fail it. A replica of an older
-- version on the same database then fails to lease (no such relation)
-- rather than leasing beside the new ones.
ALTER TABLE outbox
    ADD COLUMN owner        text,
    ADD COLUMN leased_until timestamptz;

UPDATE outbox o SET owner = l.owner, leased_until = l.leased_until
FROM client_leases l
WHERE l.item_id = o.id;

DROP TABLE client_leases;
