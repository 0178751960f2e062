-- Connections the store has seen enabled. The first time a connection is
-- enabled every client already in the store is queued for it, so that an EHR
-- switched on after the program has been running receives the whole
-- caseload, not only what changes from then on.
CREATE TABLE connections (
    name      text        COLLATE "C" PRIMARY KEY,
    seeded_at timestamptz NOT NULL
);
