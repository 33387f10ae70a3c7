-- A dead task whose key is taken over by a newer task (enqueue with that key) keeps the key
-- it held in released_key (set by the clear_key query), so its dead-letter entry can still
-- be found by key: e.g. to delete it once the newer task completed (the library's DLQ
-- cleanup).
ALTER TABLE tasks ADD COLUMN released_key TEXT;

CREATE INDEX tasks_released_key ON tasks (released_key) WHERE released_key IS NOT NULL;
