-- Notification rules (store.notifications): one row per rule, its fields as a JSON body
-- (the webhook secret included: it is never read back out by any route).
CREATE TABLE notification_rules (
    name text PRIMARY KEY,
    body text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
