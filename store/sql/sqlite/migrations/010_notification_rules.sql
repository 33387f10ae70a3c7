-- Notification rules (store.notifications): one row per rule, its fields as a JSON body
-- (the webhook secret included: it is never read back out by any route).
CREATE TABLE notification_rules (
    name       TEXT    PRIMARY KEY,
    body       TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
) WITHOUT ROWID;
