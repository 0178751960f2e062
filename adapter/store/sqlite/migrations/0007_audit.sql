-- The audit trail: who read and changed what, when (store.AuditEntry). No
-- values: counts, kinds and route templates only.
CREATE TABLE audit (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    at            INTEGER NOT NULL,
    caller        TEXT    NOT NULL,
    role          TEXT    NOT NULL,
    action        TEXT    NOT NULL,
    route         TEXT    NOT NULL,
    connection    TEXT    NOT NULL,
    resource_type TEXT    NOT NULL,
    records       INTEGER NOT NULL,
    status        INTEGER NOT NULL
) STRICT;

CREATE INDEX audit_at ON audit (at);
CREATE INDEX audit_caller ON audit (caller, id);
