-- Devices registered to tenants: gates, barriers, parking sensors, meters, emergency buttons,
-- wearables, environment sensors… `id` is chosen by the admin (`[a-z0-9][a-z0-9-]{0,62}`,
-- unique in the county) and names the device's MQTT topics. The device's secret (its broker
-- password) is stored as sha256 only and shown once. `person_id` binds a personal device
-- (an elder's emergency button or wearable) to its wearer.
CREATE TABLE devices (
    id           TEXT PRIMARY KEY,
    tenant_id    TEXT NOT NULL REFERENCES tenants(id),
    kind         TEXT NOT NULL,
    name         TEXT NOT NULL,
    location     TEXT NOT NULL,
    vendor       TEXT NOT NULL,
    model        TEXT NOT NULL,
    person_id    TEXT REFERENCES people(id),
    secret_hash  TEXT NOT NULL,
    status       TEXT NOT NULL,
    last_seen_at BIGINT,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL
);
CREATE INDEX devices_tenant ON devices (tenant_id, kind, id);
CREATE INDEX devices_person ON devices (person_id);
