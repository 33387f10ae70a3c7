-- Which artifact-store blobs each run references (its output, its source artifact, its
-- artifacts), so that retention can tell by an index whether a blob a deleted run used is
-- still needed: a blob is freed only when no run_blobs row names it. A trigger keeps the
-- rows equal to the run's columns; the rows of existing runs are filled in here.
CREATE TABLE run_blobs (
    run_seq INTEGER NOT NULL,
    sha256  TEXT    NOT NULL,
    PRIMARY KEY (run_seq, sha256)
) WITHOUT ROWID;

CREATE INDEX run_blobs_sha256_idx ON run_blobs (sha256);

-- Only when a referencing column changes: most transitions (a stage's time) touch none.
CREATE TRIGGER runs_index_blobs
AFTER UPDATE OF output_sha256, source_sha256, artifacts ON runs
FOR EACH ROW
WHEN OLD.output_sha256 IS NOT NEW.output_sha256
    OR OLD.source_sha256 IS NOT NEW.source_sha256
    OR OLD.artifacts IS NOT NEW.artifacts
BEGIN
    DELETE FROM run_blobs WHERE run_seq = NEW.seq;
    INSERT OR IGNORE INTO run_blobs (run_seq, sha256)
    SELECT NEW.seq, digest FROM (
        SELECT NEW.output_sha256 AS digest
        UNION ALL SELECT NEW.source_sha256
        UNION ALL SELECT json_extract(value, '$.sha256') FROM json_each(NEW.artifacts)
    )
    WHERE digest IS NOT NULL;
END;

INSERT OR IGNORE INTO run_blobs (run_seq, sha256)
SELECT seq, digest FROM (
    SELECT seq, output_sha256 AS digest FROM runs
    UNION ALL SELECT seq, source_sha256 FROM runs
    UNION ALL SELECT seq, json_extract(value, '$.sha256') FROM runs, json_each(runs.artifacts)
)
WHERE digest IS NOT NULL;
