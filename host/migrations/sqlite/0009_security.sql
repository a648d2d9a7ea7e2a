-- Second-factor failures, counted apart from the password's (a correct password does not
-- reset them); an admin's own authenticator enrolment: the activation code the county root
-- hands the holder (stored hashed, with its expiry) and the secret shown to the holder until
-- they confirm it with a first code.
ALTER TABLE credentials ADD COLUMN totp_failures BIGINT NOT NULL DEFAULT 0;
ALTER TABLE credentials ADD COLUMN totp_pending TEXT;
ALTER TABLE credentials ADD COLUMN activation_hash TEXT;
ALTER TABLE credentials ADD COLUMN activation_expires_at BIGINT NOT NULL DEFAULT 0;
-- Bumped whenever the password is set: a session is made only for the generation whose
-- password its sign-in checked, so a reset racing a sign-in leaves that sign-in nothing.
ALTER TABLE credentials ADD COLUMN generation BIGINT NOT NULL DEFAULT 0;

-- Whether a session passed the second factor (an admin role needs one that did), and the
-- wrong codes given against a sign-in challenge (a challenge takes only a few).
ALTER TABLE sessions ADD COLUMN mfa BIGINT NOT NULL DEFAULT 0;
ALTER TABLE sessions ADD COLUMN attempts BIGINT NOT NULL DEFAULT 0;
CREATE INDEX sessions_acting_for ON sessions (acting_for);

-- Who registered a person (a person id, `admin` or `system`): whoever registers a staff
-- account does not also give it roles (the county root excepted).
ALTER TABLE people ADD COLUMN created_by TEXT;

-- Rate limits of signing in and of sending codes, by client address, by phone and in all:
-- keys are hashes (`c:…`, `p:…`, `pc:…:…`), the same for registered and unknown numbers,
-- and rows are dropped once their window has passed.
CREATE TABLE auth_throttle (
    key          TEXT PRIMARY KEY,
    hits         BIGINT NOT NULL,
    window_start BIGINT NOT NULL,
    last_at      BIGINT NOT NULL,
    locked_until BIGINT NOT NULL
);

-- The audit chain is keyed (HMAC-SHA256) with a secret kept outside the database; this row
-- names that key by a fingerprint that does not reveal it, so a host started with another
-- key refuses to run instead of writing records the chain's key cannot verify.
CREATE TABLE audit_key_meta (
    id             BIGINT PRIMARY KEY,
    fingerprint    TEXT NOT NULL,
    keyed_from_seq BIGINT NOT NULL,
    created_at     BIGINT NOT NULL
);
