-- Outbox leases: a worker claims due entries by setting `lease_until` (and a token naming the
-- claim) in one statement, so with several replicas each entry is handed out by one at a time;
-- a lease left by a replica that died runs out and the entry is due again.
ALTER TABLE outbox ADD COLUMN lease_until BIGINT;
ALTER TABLE outbox ADD COLUMN lease_token TEXT;
-- Device messages without an id are matched to a broker's redelivery by recent entries.
CREATE INDEX outbox_kind_created ON outbox (kind, created_at);

-- Audit records are appended here without taking the chain's lock, in the transaction of what
-- they record, and sealed into `audit_log` (numbered, linked and keyed) in batches by whichever
-- process holds the chain's lock next; readers of the log seal first.
CREATE TABLE audit_pending (
    id        TEXT PRIMARY KEY,
    at        BIGINT NOT NULL,
    actor     TEXT NOT NULL,
    assistant TEXT,
    plugin_id TEXT,
    tenant_id TEXT,
    action    TEXT NOT NULL,
    subject   TEXT,
    outcome   TEXT NOT NULL,
    detail    TEXT NOT NULL,
    seq_hint  BIGINT NOT NULL,
    -- HMAC of the record under a key derived from the audit key: the sealer seals only records
    -- a holder of the key appended (a row inserted by hand is refused and reported).
    mac       TEXT NOT NULL
);
CREATE INDEX audit_pending_order ON audit_pending (seq_hint, id);
-- The pending row each sealed record came from: a pending row replayed after it was sealed is
-- recognised and refused.
ALTER TABLE audit_log ADD COLUMN pending_id TEXT;
CREATE UNIQUE INDEX audit_log_pending ON audit_log (pending_id);

-- One-time start-up work (the demo county) is claimed here, so replicas starting together on
-- an empty database do it once; `/readyz` writes its probe row here too.
CREATE TABLE host_markers (
    name       TEXT PRIMARY KEY,
    holder     TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);
