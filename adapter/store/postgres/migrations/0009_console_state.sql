-- What administrators set from the console, kept so that it survives a
-- restart and every replica sees it (store.ConnectionSetting,
-- store.ReadinessCheck).
--
-- connection_settings: a connection enabled or disabled from the console,
-- which wins over the configuration file's enabled: for that connection
-- until it is cleared. changed_by is an API key's name, never a key.
CREATE TABLE connection_settings (
    name       text        PRIMARY KEY,
    enabled    boolean     NOT NULL,
    changed_by text        NOT NULL,
    changed_at timestamptz NOT NULL
);

-- readiness_checks: the latest readiness check of each connection run from
-- the console. finished_at is NULL while it runs; report is the check's
-- report as JSON (results and plan: no patient data), problem says why no
-- report was made.
CREATE TABLE readiness_checks (
    connection  text        PRIMARY KEY,
    started_at  timestamptz NOT NULL,
    started_by  text        NOT NULL,
    finished_at timestamptz,
    report      jsonb,
    problem     text        NOT NULL DEFAULT ''
);
