-- Webhooks: events waiting for delivery, one row per (event, endpoint), written in the transaction that
-- commits the event. `ordering_key` is the conversation id (or minus the user id for user events): rows of one
-- endpoint and key are delivered one at a time in id order. `lease_until` is the claim of a delivering node.
CREATE TABLE IF NOT EXISTS webhook_outbox (
    id           INTEGER PRIMARY KEY,
    endpoint     TEXT NOT NULL,
    ordering_key INTEGER NOT NULL,
    event        TEXT NOT NULL,
    data         TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    next_at      INTEGER NOT NULL,
    lease_until  INTEGER NOT NULL DEFAULT 0,
    claimed_by   TEXT,
    last_error   TEXT
);
CREATE INDEX IF NOT EXISTS webhook_outbox_order ON webhook_outbox(endpoint, ordering_key, id);
-- Deliveries that failed for the whole retry window; `xindao webhooks dead redrive` puts them back.
CREATE TABLE IF NOT EXISTS webhook_dead (
    id           INTEGER PRIMARY KEY,
    endpoint     TEXT NOT NULL,
    ordering_key INTEGER NOT NULL,
    event        TEXT NOT NULL,
    data         TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    attempts     INTEGER NOT NULL,
    last_error   TEXT,
    dead_at      INTEGER NOT NULL
);
