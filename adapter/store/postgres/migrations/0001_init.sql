-- The IPS store, first version. Ids that are keyset-paged or joined on use
-- COLLATE "C" (byte order), so paging is the same whatever the database's
-- collation, and the same as in the SQLite store.

-- Clients are JSON documents in the ips.Client encoding; version is the
-- optimistic-concurrency version (1 on first save).
CREATE TABLE clients (
    id         text COLLATE "C" PRIMARY KEY,
    version    bigint      NOT NULL CHECK (version > 0),
    doc        jsonb       NOT NULL,
    updated_at timestamptz NOT NULL
);

CREATE INDEX clients_updated_at ON clients (updated_at);

-- One row per client, created with it: the client's outbox lease. A client
-- has at most one leased item at a time, on any connection, so the lease
-- lives here, and Lease locks this row (FOR UPDATE SKIP LOCKED) to take it.
CREATE TABLE client_leases (
    client_id    text COLLATE "C" PRIMARY KEY REFERENCES clients (id) ON DELETE CASCADE,
    item_id      bigint,
    owner        text,
    leased_until timestamptz
);

-- Pending push work, one row per (connection, client): saves coalesce into
-- it and bump generation.
CREATE TABLE outbox (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    connection text             NOT NULL,
    client_id  text COLLATE "C" NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    generation bigint           NOT NULL DEFAULT 1,
    attempts   integer          NOT NULL DEFAULT 0,
    due_at     timestamptz      NOT NULL,
    last_error text             NOT NULL DEFAULT '',
    created_at timestamptz      NOT NULL,
    UNIQUE (connection, client_id)
);

CREATE INDEX outbox_due ON outbox (connection, due_at, id);
CREATE INDEX outbox_client ON outbox (client_id);

-- Items that failed too often. id is the outbox item's id.
CREATE TABLE dead_letters (
    id         bigint PRIMARY KEY,
    connection text             NOT NULL,
    client_id  text COLLATE "C" NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    attempts   integer          NOT NULL,
    reason     text             NOT NULL,
    failed_at  timestamptz      NOT NULL
);

CREATE INDEX dead_letters_connection ON dead_letters (connection, failed_at, id);
CREATE INDEX dead_letters_failed_at ON dead_letters (failed_at, id);

-- What the adapter knows of each record's resource in each EHR.
CREATE TABLE ledger (
    connection    text        NOT NULL,
    key           text        NOT NULL,
    client_id     text        NOT NULL,
    resource_type text        NOT NULL,
    resource_id   text        NOT NULL,
    version_id    text        NOT NULL,
    content_hash  text        NOT NULL,
    updated_at    timestamptz NOT NULL,
    PRIMARY KEY (connection, key)
);

CREATE INDEX ledger_resource ON ledger (connection, resource_type, resource_id, updated_at);

-- How far change polling has read, per connection and resource type.
CREATE TABLE watermarks (
    connection    text        NOT NULL,
    resource_type text        NOT NULL,
    at            timestamptz NOT NULL,
    PRIMARY KEY (connection, resource_type)
);

-- Fields both sides changed. resolution is '' while open.
CREATE TABLE conflicts (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    connection  text        NOT NULL,
    client_id   text        NOT NULL,
    key         text        NOT NULL,
    field       text        NOT NULL,
    ips_value   text        NOT NULL,
    ehr_value   text        NOT NULL,
    winner      text        NOT NULL,
    resolution  text        NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL,
    resolved_at timestamptz
);

CREATE INDEX conflicts_open ON conflicts (connection, id) WHERE resolution = '';
