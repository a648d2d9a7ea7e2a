-- Tenant tree: county -> township -> community/village -> grid.
CREATE TABLE tenants (
    id          TEXT PRIMARY KEY,
    parent_id   TEXT REFERENCES tenants(id),
    kind        TEXT NOT NULL,
    name_zh     TEXT NOT NULL,
    name_en     TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);

-- Uploaded components, content-addressed (sha256 hex). The bytes are the source of truth
-- for every replica; each host also keeps a copy and a compiled artifact in its data dir.
CREATE TABLE components (
    hash        TEXT PRIMARY KEY,
    bytes       BYTEA NOT NULL,
    size        BIGINT NOT NULL,
    created_at  BIGINT NOT NULL
);

-- A plugin installed at a tenant.
CREATE TABLE installations (
    tenant_id        TEXT NOT NULL REFERENCES tenants(id),
    plugin_id        TEXT NOT NULL,
    version          TEXT NOT NULL,
    component_hash   TEXT NOT NULL REFERENCES components(hash),
    metadata         TEXT NOT NULL,
    status           TEXT NOT NULL,
    status_reason    TEXT,
    installed_at     BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, plugin_id)
);

-- Plugin data, scoped by (tenant, plugin). Keys compare bytewise (COLLATE "C").
CREATE TABLE kv (
    tenant_id   TEXT NOT NULL,
    plugin_id   TEXT NOT NULL,
    key         TEXT COLLATE "C" NOT NULL,
    value       BYTEA NOT NULL,
    PRIMARY KEY (tenant_id, plugin_id, key)
);

-- Keys held per scope, kept in the same transaction as every insert and delete in kv.
CREATE TABLE kv_usage (
    tenant_id   TEXT NOT NULL,
    plugin_id   TEXT NOT NULL,
    keys        BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, plugin_id)
);
