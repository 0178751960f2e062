-- What administrators set from the console, kept so that it survives a
-- restart and every replica sees it (store.ConnectionSetting,
-- store.ReadinessCheck).
--
-- connection_settings: a connection enabled or disabled from the console,
-- which wins over the configuration file's enabled: for that connection
-- until it is cleared. changed_by is an API key's name, never a key.
CREATE TABLE connection_settings (
    name       TEXT    PRIMARY KEY,
    enabled    INTEGER NOT NULL CHECK (enabled IN (0, 1)),
    changed_by TEXT    NOT NULL,
    changed_at INTEGER NOT NULL
) STRICT;

-- readiness_checks: the latest readiness check of each connection run from
-- the console. finished_at is NULL while it runs; report is the check's
-- report as JSON (results and plan: no patient data), problem says why no
-- report was made.
CREATE TABLE readiness_checks (
    connection  TEXT    PRIMARY KEY,
    started_at  INTEGER NOT NULL,
    started_by  TEXT    NOT NULL,
    finished_at INTEGER,
    report      BLOB,
    problem     TEXT    NOT NULL DEFAULT ''
) STRICT;
