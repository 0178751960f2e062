-- One client per patient: the patient identifier (system|value) of each
-- client, unique, so that a referral or an import for a patient already in
-- the program (pushed to an EHR or not) is recognised instead of enrolling
-- the person twice. Kept beside the document so the index can enforce it.
ALTER TABLE clients ADD COLUMN patient_key TEXT;

UPDATE clients SET patient_key = json_extract(doc, '$.patient.system') || '|' || json_extract(doc, '$.patient.value')
WHERE coalesce(json_extract(doc, '$.patient.value'), '') <> '';

CREATE UNIQUE INDEX clients_patient_key ON clients (patient_key);
