-- Writes the adapter sent to an EHR whose answer it never read (a lost reply,
-- a timeout, a crash mid-request): the content hashes, space-separated, most
-- recent last. When the EHR later shows one of these contents under a version
-- the ledger does not know, it is the adapter's own write, not a clinician's
-- change. Cleared when a write's answer is read.
ALTER TABLE ledger ADD COLUMN attempted TEXT NOT NULL DEFAULT '';
