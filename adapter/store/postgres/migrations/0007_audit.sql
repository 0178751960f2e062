-- The audit trail: who read and changed what, when (store.AuditEntry). No
-- values: counts, kinds and route templates only.
CREATE TABLE audit (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at            timestamptz NOT NULL,
    caller        text        NOT NULL,
    role          text        NOT NULL,
    action        text        NOT NULL,
    route         text        NOT NULL,
    connection    text        NOT NULL,
    resource_type text        NOT NULL,
    records       integer     NOT NULL,
    status        integer     NOT NULL
);

CREATE INDEX audit_at ON audit (at);
CREATE INDEX audit_caller ON audit (caller, id);
