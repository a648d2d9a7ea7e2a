-- The durable outbox: what plugins asked the host to send (notifications now; events between
-- plugins later), written when they ask and delivered at least once by a worker. The
-- idempotency key is the plugin's: asking again with the same key adds nothing.
CREATE TABLE outbox (
    id              TEXT PRIMARY KEY,
    tenant_id       TEXT NOT NULL,
    plugin_id       TEXT NOT NULL,
    kind            TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    payload         TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    attempts        BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    delivered_at    BIGINT,
    last_error      TEXT
);
CREATE UNIQUE INDEX outbox_key ON outbox (tenant_id, plugin_id, kind, idempotency_key);
CREATE INDEX outbox_due ON outbox (delivered_at, next_attempt_at);

-- Inbox rows delivered from the outbox carry its id: one row per (outbox entry, person), so a
-- delivery retried after a crash doubles nothing.
ALTER TABLE inbox ADD COLUMN outbox_id TEXT;
ALTER TABLE inbox ADD COLUMN link TEXT;
ALTER TABLE inbox ADD COLUMN urgency TEXT;
CREATE UNIQUE INDEX inbox_delivery ON inbox (outbox_id, person_id);
