-- The time step (Unix seconds / 30) of the last TOTP code accepted for a person: a code is
-- taken only for a later step, so a code seen over someone's shoulder, or replayed from a
-- captured request, does not sign in a second time (RFC 6238 section 5.2).
ALTER TABLE credentials ADD COLUMN totp_last_step BIGINT;
