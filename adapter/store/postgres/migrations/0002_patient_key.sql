-- One client per patient: the patient identifier (system|value) of each
-- client, unique, so that a referral or an import for a patient already in
-- the program (pushed to an EHR or not) is recognised instead of enrolling
-- the person twice. Kept beside the document so the index can enforce it,
-- also between replicas saving at the same moment.
ALTER TABLE clients ADD COLUMN patient_key text COLLATE "C";

UPDATE clients SET patient_key = (doc->'patient'->>'system') || '|' || (doc->'patient'->>'value')
WHERE coalesce(doc->'patient'->>'value', '') <> '';

CREATE UNIQUE INDEX clients_patient_key ON clients (patient_key);
