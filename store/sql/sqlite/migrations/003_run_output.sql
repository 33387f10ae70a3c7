-- Runs keep the SHA256 of their rendered output (head + tail), stored in the artifact store.
ALTER TABLE runs ADD COLUMN output_sha256 TEXT;
