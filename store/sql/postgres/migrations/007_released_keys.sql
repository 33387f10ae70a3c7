-- A dead task whose key is taken over by a newer task (enqueue with that key) keeps the key
-- it held in released_key, so its dead-letter entry can still be found by key: e.g. to
-- delete it once the newer task completed (the library's DLQ cleanup). A trigger, because
-- the take-over happens inside longshore_enqueue; it fires only on updates that set key.
ALTER TABLE tasks ADD COLUMN released_key text;

CREATE INDEX tasks_released_key_idx ON tasks (released_key) WHERE released_key IS NOT NULL;

CREATE FUNCTION longshore_keep_released_key() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    NEW.released_key := OLD.key;
    RETURN NEW;
END;
$$;

CREATE TRIGGER tasks_keep_released_key
    BEFORE UPDATE OF key ON tasks
    FOR EACH ROW
    WHEN (OLD.state = 'dead' AND OLD.key IS NOT NULL AND NEW.key IS NULL)
    EXECUTE FUNCTION longshore_keep_released_key();
