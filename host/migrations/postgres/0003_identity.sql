-- People of the county: residents, staff and vendors. Personal fields are stored in full and
-- masked on the way out (see host/src/identity/mask.rs); `tags` is a JSON array.
CREATE TABLE people (
    id          TEXT PRIMARY KEY,
    kind        TEXT NOT NULL,
    tenant_id   TEXT NOT NULL REFERENCES tenants(id),
    name        TEXT NOT NULL,
    phone       TEXT,
    id_number   TEXT,
    birth_date  TEXT,
    household   TEXT,
    address     TEXT,
    tags        TEXT NOT NULL,
    status      TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
CREATE UNIQUE INDEX people_phone ON people (phone);
CREATE UNIQUE INDEX people_id_number ON people (id_number);
CREATE INDEX people_tenant ON people (tenant_id, id);

-- Roles attach to a tenant node and hold in its whole subtree.
CREATE TABLE role_assignments (
    person_id   TEXT NOT NULL REFERENCES people(id),
    tenant_id   TEXT NOT NULL REFERENCES tenants(id),
    role        TEXT NOT NULL,
    granted_by  TEXT NOT NULL,
    granted_at  BIGINT NOT NULL,
    PRIMARY KEY (person_id, tenant_id, role)
);

-- Sign-in secrets and the failure counter behind lockout.
CREATE TABLE credentials (
    person_id     TEXT PRIMARY KEY REFERENCES people(id),
    password_hash TEXT,
    totp_secret   TEXT,
    failures      BIGINT NOT NULL,
    locked_until  BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);

-- One-time sign-in codes sent by SMS, stored hashed.
CREATE TABLE login_codes (
    phone       TEXT PRIMARY KEY,
    code_hash   TEXT NOT NULL,
    expires_at  BIGINT NOT NULL,
    attempts    BIGINT NOT NULL,
    sent_at     BIGINT NOT NULL,
    sent_count  BIGINT NOT NULL,
    window_start BIGINT NOT NULL
);

-- Sessions: opaque tokens stored as sha256. `stage` is `full`, or `totp` while an admin still
-- owes the second factor. `acting_for` is set in assisted mode (帮办代办).
CREATE TABLE sessions (
    token_hash  TEXT PRIMARY KEY,
    person_id   TEXT NOT NULL REFERENCES people(id),
    stage       TEXT NOT NULL,
    acting_for  TEXT REFERENCES people(id),
    reason      TEXT,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL
);
CREATE INDEX sessions_person ON sessions (person_id);

-- The host inbox: notifications to people (assisted-mode notices now, plugins' later).
CREATE TABLE inbox (
    id          TEXT PRIMARY KEY,
    person_id   TEXT NOT NULL REFERENCES people(id),
    tenant_id   TEXT,
    source      TEXT NOT NULL,
    title_zh    TEXT NOT NULL,
    title_en    TEXT NOT NULL,
    body_zh     TEXT NOT NULL,
    body_en     TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    read_at     BIGINT
);
CREATE INDEX inbox_person ON inbox (person_id, created_at);

-- What each installation was granted (JSON array of capability names) and, for an
-- installation above village level, the subtrees it serves (JSON array; empty = all).
ALTER TABLE installations ADD COLUMN grants TEXT NOT NULL DEFAULT '[]';
ALTER TABLE installations ADD COLUMN serves TEXT NOT NULL DEFAULT '[]';

-- Audit: the staff member acting for a resident in assisted mode.
ALTER TABLE audit_log ADD COLUMN assistant TEXT;
-- Where verification starts after old records were pruned (retention): the seq and hash of
-- the last pruned record. One row at most.
CREATE TABLE audit_anchor (
    id          BIGINT PRIMARY KEY,
    seq         BIGINT NOT NULL,
    hash        TEXT NOT NULL
);
