-- How far each connection's initial load has come. When a connection is
-- seeded (enabled for the first time, or again after being disabled) every
-- client is queued for it with created_at = seeded_at; load_total is how
-- many items were pending for it then. The load's items still pending are
-- those created no later than seeded_at (a save keeps an item's created_at),
-- which outbox_created counts without a scan. load_finished_at is set when
-- the last of them leaves the outbox (pushed, or a dead letter). Connections
-- seeded before this migration have no load recorded (NULL).
ALTER TABLE connections ADD COLUMN load_total integer;
ALTER TABLE connections ADD COLUMN load_finished_at timestamptz;

CREATE INDEX outbox_created ON outbox (connection, created_at);
