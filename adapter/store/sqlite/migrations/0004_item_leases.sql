-- Leases move from the client to its outbox items. client_leases let a
-- client have one item leased at a time over all connections, so a client
-- whose push to one EHR was slow or failing held up its push to every other.
-- Now each item, one per (connection, client), carries its own lease: a
-- client has at most one item leased per connection, and its items on
-- different connections are pushed independently. A lease held at the
-- upgrade moves to its item, so its worker can still complete or fail it.
-- A process of an older version on the same file then fails to lease (no
-- such table) rather than leasing beside the new ones.
ALTER TABLE outbox ADD COLUMN owner TEXT;
ALTER TABLE outbox ADD COLUMN leased_until INTEGER;

UPDATE outbox SET
    owner        = (SELECT l.owner FROM client_leases l WHERE l.item_id = outbox.id),
    leased_until = (SELECT l.leased_until FROM client_leases l WHERE l.item_id = outbox.id)
WHERE id IN (SELECT item_id FROM client_leases WHERE item_id IS NOT NULL);

DROP TABLE client_leases;
