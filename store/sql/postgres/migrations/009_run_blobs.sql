-- Which artifact-store blobs each run references (its output, its source artifact, its
-- artifacts), so that retention can tell by an index whether a blob a deleted run used is
-- still needed: a blob is freed only when no run_blobs row names it. A trigger keeps the
-- rows equal to the run's columns; the rows of existing runs are filled in here.
CREATE TABLE run_blobs (
    run_seq bigint NOT NULL,
    sha256 text NOT NULL,
    PRIMARY KEY (run_seq, sha256)
);

CREATE INDEX run_blobs_sha256_idx ON run_blobs (sha256);

CREATE FUNCTION runs_index_blobs() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM run_blobs WHERE run_seq = NEW.seq;
    INSERT INTO run_blobs (run_seq, sha256)
    SELECT DISTINCT NEW.seq, digest FROM (
        SELECT NEW.output_sha256 AS digest
        UNION ALL SELECT NEW.source_sha256
        UNION ALL SELECT element ->> 'sha256' FROM jsonb_array_elements(NEW.artifacts) element
    ) referenced
    WHERE digest IS NOT NULL;
    RETURN NULL;
END
$$;

-- Only when a referencing column changes: most transitions (a stage's time) touch none.
CREATE TRIGGER runs_index_blobs
AFTER UPDATE OF output_sha256, source_sha256, artifacts ON runs
FOR EACH ROW
WHEN (OLD.output_sha256 IS DISTINCT FROM NEW.output_sha256
      OR OLD.source_sha256 IS DISTINCT FROM NEW.source_sha256
      OR OLD.artifacts IS DISTINCT FROM NEW.artifacts)
EXECUTE FUNCTION runs_index_blobs();

INSERT INTO run_blobs (run_seq, sha256)
SELECT DISTINCT seq, digest FROM (
    SELECT seq, output_sha256 AS digest FROM runs
    UNION ALL SELECT seq, source_sha256 FROM runs
    UNION ALL SELECT seq, element ->> 'sha256' FROM runs, jsonb_array_elements(artifacts) element
) referenced
WHERE digest IS NOT NULL;
