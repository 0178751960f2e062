-- The IPS store, first version. Times are INTEGER Unix microseconds (UTC), the
-- precision PostgreSQL keeps, so both implementations round the same way.

-- Clients are JSON documents in the ips.Client encoding; version is the
-- optimistic-concurrency version (1 on first save).
CREATE TABLE clients (
    id         TEXT    NOT NULL PRIMARY KEY,
    version    INTEGER NOT NULL CHECK (version > 0),
    doc        TEXT    NOT NULL CHECK (json_valid(doc)),
    updated_at INTEGER NOT NULL
) STRICT;

CREATE INDEX clients_updated_at ON clients (updated_at);

-- One row per client, created with it: the client's outbox lease. A client has
-- at most one leased item at a time, on any connection, so the lease lives
-- here rather than on the outbox rows.
CREATE TABLE client_leases (
    client_id    TEXT    NOT NULL PRIMARY KEY REFERENCES clients (id) ON DELETE CASCADE,
    item_id      INTEGER,
    owner        TEXT,
    leased_until INTEGER
) STRICT;

-- Pending push work, one row per (connection, client): saves coalesce into it
-- and bump generation.
CREATE TABLE outbox (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    connection TEXT    NOT NULL,
    client_id  TEXT    NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    generation INTEGER NOT NULL DEFAULT 1,
    attempts   INTEGER NOT NULL DEFAULT 0,
    due_at     INTEGER NOT NULL,
    last_error TEXT    NOT NULL DEFAULT '',
    created_at INTEGER NOT NULL,
    UNIQUE (connection, client_id)
) STRICT;

CREATE INDEX outbox_due ON outbox (connection, due_at, id);
CREATE INDEX outbox_client ON outbox (client_id);

-- Items that failed too often. id is the outbox item's id.
CREATE TABLE dead_letters (
    id         INTEGER PRIMARY KEY,
    connection TEXT    NOT NULL,
    client_id  TEXT    NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    attempts   INTEGER NOT NULL,
    reason     TEXT    NOT NULL,
    failed_at  INTEGER NOT NULL
) STRICT;

CREATE INDEX dead_letters_connection ON dead_letters (connection, failed_at, id);
CREATE INDEX dead_letters_failed_at ON dead_letters (failed_at, id);

-- What the adapter knows of each record's resource in each EHR.
CREATE TABLE ledger (
    connection    TEXT    NOT NULL,
    key           TEXT    NOT NULL,
    client_id     TEXT    NOT NULL,
    resource_type TEXT    NOT NULL,
    resource_id   TEXT    NOT NULL,
    version_id    TEXT    NOT NULL,
    content_hash  TEXT    NOT NULL,
    updated_at    INTEGER NOT NULL,
    PRIMARY KEY (connection, key)
) STRICT;

CREATE INDEX ledger_resource ON ledger (connection, resource_type, resource_id, updated_at);

-- How far change polling has read, per connection and resource type.
CREATE TABLE watermarks (
    connection    TEXT    NOT NULL,
    resource_type TEXT    NOT NULL,
    at            INTEGER NOT NULL,
    PRIMARY KEY (connection, resource_type)
) STRICT;

-- Fields both sides changed. resolution is '' while open.
CREATE TABLE conflicts (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    connection  TEXT    NOT NULL,
    client_id   TEXT    NOT NULL,
    key         TEXT    NOT NULL,
    field       TEXT    NOT NULL,
    ips_value   TEXT    NOT NULL,
    ehr_value   TEXT    NOT NULL,
    winner      TEXT    NOT NULL,
    resolution  TEXT    NOT NULL DEFAULT '',
    created_at  INTEGER NOT NULL,
    resolved_at INTEGER
) STRICT;

CREATE INDEX conflicts_open ON conflicts (connection, id) WHERE resolution = '';
