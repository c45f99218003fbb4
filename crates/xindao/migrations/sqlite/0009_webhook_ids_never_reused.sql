-- Delivery ids are never reused. `INTEGER PRIMARY KEY` alone gives a new row max(id) + 1, so once the outbox had
-- drained (delivered rows are deleted) new events took ids already delivered, which a receiver dropping repeats by
-- id would drop, and a dead delivery's id could be taken by a new row (its redrive then conflicted).
-- AUTOINCREMENT keeps the highest id ever used; it starts above every dead delivery's id as well.
CREATE TABLE webhook_outbox_v2 (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
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
INSERT INTO webhook_outbox_v2
    (id, endpoint, ordering_key, event, data, created_at, attempts, next_at, lease_until, claimed_by, last_error)
    SELECT id, endpoint, ordering_key, event, data, created_at, attempts, next_at, lease_until, claimed_by, last_error
    FROM webhook_outbox;
DROP TABLE webhook_outbox;
ALTER TABLE webhook_outbox_v2 RENAME TO webhook_outbox;
CREATE INDEX IF NOT EXISTS webhook_outbox_order ON webhook_outbox(endpoint, ordering_key, id);
DELETE FROM sqlite_sequence WHERE name = 'webhook_outbox';
INSERT INTO sqlite_sequence (name, seq)
    SELECT 'webhook_outbox', max(coalesce((SELECT max(id) FROM webhook_outbox), 0),
                                 coalesce((SELECT max(id) FROM webhook_dead), 0));
