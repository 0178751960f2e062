-- What the EHR held of a record as of the last sync, as canonical FHIR JSON,
-- kept for goals: the common base of a three-way merge, so that a field only
-- the program changed and a field only the clinic changed are both kept,
-- and only a field both changed is a conflict.
ALTER TABLE ledger ADD COLUMN base TEXT NOT NULL DEFAULT '';
