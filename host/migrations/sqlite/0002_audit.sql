-- Append-only, hash-chained audit log: each record carries the previous record's hash.
CREATE TABLE audit_log (
    seq         BIGINT PRIMARY KEY,
    at          BIGINT NOT NULL,
    actor       TEXT NOT NULL,
    plugin_id   TEXT,
    tenant_id   TEXT,
    action      TEXT NOT NULL,
    subject     TEXT,
    outcome     TEXT NOT NULL,
    detail      TEXT NOT NULL,
    prev_hash   TEXT NOT NULL,
    hash        TEXT NOT NULL
);
