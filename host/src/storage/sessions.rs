//! Sign-in state: credentials (password hash, TOTP secret, failure counter), one-time codes
//! and sessions. Tokens and codes are stored only as hashes.

use sqlx::Row;

use super::{Db, Result, now_ms};

/// A person's stored credentials.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    pub password_hash: Option<String>,
    pub totp_secret: Option<String>,
    /// Wrong second-factor codes in a row (a correct password does not reset them).
    pub totp_failures: i64,
    /// Until when the second factor is locked (after `auth.max_failures` wrong codes).
    pub locked_until: i64,
    /// An authenticator secret shown to its holder, waiting for their first code.
    pub totp_pending: Option<String>,
    /// The activation code (hashed) an admin enrols their own authenticator with.
    pub activation_hash: Option<String>,
    pub activation_expires_at: i64,
    /// Bumped whenever the password is set (see [`create_session_if`]).
    pub generation: i64,
}

pub async fn credentials(db: &Db, person: &str) -> Result<Option<Credentials>> {
    let row = sqlx::query(
        "SELECT password_hash, totp_secret, totp_failures, locked_until, totp_pending, \
         activation_hash, activation_expires_at, generation FROM credentials WHERE person_id = $1",
    )
    .bind(person)
    .fetch_optional(db.pool())
    .await?;
    row.map(|r| {
        Ok(Credentials {
            password_hash: r.try_get(0)?,
            totp_secret: r.try_get(1)?,
            totp_failures: r.try_get(2)?,
            locked_until: r.try_get(3)?,
            totp_pending: r.try_get(4)?,
            activation_hash: r.try_get(5)?,
            activation_expires_at: r.try_get(6)?,
            generation: r.try_get(7)?,
        })
    })
    .transpose()
}

async fn ensure_row(tx: &mut sqlx::Transaction<'static, sqlx::Any>, person: &str) -> Result<()> {
    let exists = sqlx::query("SELECT 1 FROM credentials WHERE person_id = $1")
        .bind(person)
        .fetch_optional(&mut **tx)
        .await?;
    if exists.is_none() {
        sqlx::query(
            "INSERT INTO credentials (person_id, failures, locked_until, updated_at) VALUES ($1, 0, 0, $2)",
        )
        .bind(person)
        .bind(now_ms())
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// Set the password hash (already argon2id-hashed by the caller) or a TOTP secret.
pub async fn set_secret(db: &Db, person: &str, column: Secret, value: Option<&str>) -> Result<()> {
    let now = now_ms();
    super::write_tx!(db, |tx| {
        set_secret_in(tx, person, column, value, now).await
    })
}

/// [`set_secret`] inside the caller's transaction.
pub(crate) async fn set_secret_in(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    person: &str,
    column: Secret,
    value: Option<&str>,
    now: i64,
) -> Result<()> {
    let column = match column {
        Secret::Password => "password_hash",
        Secret::Totp => "totp_secret",
        Secret::TotpPending => "totp_pending",
    };
    ensure_row(tx, person).await?;
    // A new password is a new generation of the credentials.
    let bump = if column == "password_hash" {
        ", generation = generation + 1"
    } else {
        ""
    };
    sqlx::query(&format!(
        "UPDATE credentials SET {column} = $1, updated_at = $2{bump} WHERE person_id = $3"
    ))
    .bind(value)
    .bind(now)
    .bind(person)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Which secret [`set_secret`] sets.
#[derive(Debug, Clone, Copy)]
pub enum Secret {
    Password,
    Totp,
    /// A secret shown to its holder, not yet confirmed with a code.
    TotpPending,
}

/// Give `person` an activation code (its hash) for enrolling their own authenticator, valid
/// until `expires_at`; any pending secret and any earlier code are dropped.
pub(crate) async fn set_activation_in(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    person: &str,
    code_hash: &str,
    expires_at: i64,
    now: i64,
) -> Result<()> {
    ensure_row(tx, person).await?;
    sqlx::query(
        "UPDATE credentials SET activation_hash = $1, activation_expires_at = $2, \
         totp_pending = NULL, updated_at = $3 WHERE person_id = $4",
    )
    .bind(code_hash)
    .bind(expires_at)
    .bind(now)
    .bind(person)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Use up `person`'s activation code if `code_hash` is it and it has not expired: in the same
/// transaction the new password and the pending authenticator secret are stored. Returns
/// whether the code was taken.
pub async fn take_activation(
    db: &Db,
    person: &str,
    code_hash: &str,
    password_hash: &str,
    pending_secret: &str,
) -> Result<bool> {
    let now = now_ms();
    super::write_tx!(db, |tx| {
        let done = sqlx::query(
            "UPDATE credentials SET activation_hash = NULL, activation_expires_at = 0, \
             password_hash = $1, totp_pending = $2, updated_at = $3, generation = generation + 1 \
             WHERE person_id = $4 AND activation_hash = $5 AND activation_expires_at > $3 \
             AND totp_secret IS NULL",
        )
        .bind(password_hash)
        .bind(pending_secret)
        .bind(now)
        .bind(person)
        .bind(code_hash)
        .execute(&mut **tx)
        .await?;
        Ok(done.rows_affected() == 1)
    })
}

/// The holder's first code matched their pending secret: it becomes their authenticator.
pub async fn confirm_pending_totp(db: &Db, person: &str, secret: &str) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE credentials SET totp_secret = totp_pending, totp_pending = NULL, updated_at = $1 \
         WHERE person_id = $2 AND totp_pending = $3 AND totp_secret IS NULL",
    )
    .bind(now_ms())
    .bind(person)
    .bind(secret)
    .execute(db.pool())
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Record that a TOTP code of time step `step` signed `person` in, if no code of that step or
/// a later one did before. Returns whether it was taken (false: a replay).
pub async fn take_totp_step(db: &Db, person: &str, step: i64) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE credentials SET totp_last_step = $2 \
         WHERE person_id = $1 AND (totp_last_step IS NULL OR totp_last_step < $2)",
    )
    .bind(person)
    .bind(step)
    .execute(db.pool())
    .await?;
    Ok(done.rows_affected() == 1)
}

/// A second-factor attempt, counted before its code is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reservation {
    /// Counted.
    Counted,
    /// Counted, and this attempt reached `auth.max_failures`: if it fails, the second factor
    /// is locked until this time (already written; a success lifts it).
    Locks(i64),
}

/// Count one second-factor attempt for `person` before it is checked: `Err(until)` if the
/// second factor is locked; at `max` attempts without a success it locks until
/// `now + lockout_ms` (this attempt may still succeed and lift it). Parallel attempts are
/// counted one by one, so they cannot all slip in before the first failure is written.
pub async fn reserve_totp_attempt(
    db: &Db,
    person: &str,
    max: u32,
    lockout_ms: i64,
) -> Result<std::result::Result<Reservation, i64>> {
    let now = now_ms();
    super::write_tx!(db, |tx| {
        ensure_row(tx, person).await?;
        let row =
            sqlx::query("SELECT totp_failures, locked_until FROM credentials WHERE person_id = $1")
                .bind(person)
                .fetch_one(&mut **tx)
                .await?;
        let failures: i64 = row.try_get(0)?;
        let locked_until: i64 = row.try_get(1)?;
        if locked_until > now {
            return Ok(Err(locked_until));
        }
        let failures = failures + 1;
        let (failures, locked_until, answer) = if failures >= i64::from(max) {
            let until = now + lockout_ms;
            (0, until, Reservation::Locks(until))
        } else {
            (failures, 0, Reservation::Counted)
        };
        sqlx::query(
            "UPDATE credentials SET totp_failures = $1, locked_until = $2, updated_at = $3 WHERE person_id = $4",
        )
        .bind(failures)
        .bind(locked_until)
        .bind(now)
        .bind(person)
        .execute(&mut **tx)
        .await?;
        Ok(Ok(answer))
    })
}

/// A passed second factor (or activation code): its counted attempts and any lock its own
/// attempt set are cleared.
pub async fn second_factor_passed(db: &Db, person: &str) -> Result<()> {
    sqlx::query("UPDATE credentials SET totp_failures = 0, locked_until = 0 WHERE person_id = $1")
        .bind(person)
        .execute(db.pool())
        .await?;
    Ok(())
}

/// Lift a lockout (an admin action).
pub async fn unlock(db: &Db, person: &str) -> Result<()> {
    sqlx::query(
        "UPDATE credentials SET failures = 0, totp_failures = 0, locked_until = 0 WHERE person_id = $1",
    )
    .bind(person)
    .execute(db.pool())
    .await?;
    Ok(())
}

// ---- one-time codes --------------------------------------------------------------------------

/// Store a new code for `phone` (a registered one: the rate limits are the caller's, in
/// [`super::throttle`]), replacing any earlier one, valid for `ttl_ms`.
pub async fn put_code(db: &Db, phone: &str, code_hash: &str, ttl_ms: i64) -> Result<()> {
    let now = now_ms();
    super::write_tx!(db, |tx| {
        sqlx::query("DELETE FROM login_codes WHERE phone = $1")
            .bind(phone)
            .execute(&mut **tx)
            .await?;
        sqlx::query(
            "INSERT INTO login_codes (phone, code_hash, expires_at, attempts, sent_at, sent_count, window_start) \
             VALUES ($1, $2, $3, 0, $4, 1, $4)",
        )
        .bind(phone)
        .bind(code_hash)
        .bind(now + ttl_ms)
        .bind(now)
        .execute(&mut **tx)
        .await?;
        Ok(())
    })
}

/// Check a code: it must match, be unexpired and have had fewer than `max_attempts` wrong
/// tries. A matching code is used up.
pub async fn take_code(db: &Db, phone: &str, code_hash: &str, max_attempts: i64) -> Result<bool> {
    let now = now_ms();
    super::write_tx!(db, |tx| {
        let Some(row) =
            sqlx::query("SELECT code_hash, expires_at, attempts FROM login_codes WHERE phone = $1")
                .bind(phone)
                .fetch_optional(&mut **tx)
                .await?
        else {
            return Ok(false);
        };
        let stored: String = row.try_get(0)?;
        let expires_at: i64 = row.try_get(1)?;
        let attempts: i64 = row.try_get(2)?;
        if expires_at < now || attempts >= max_attempts || code_hash.is_empty() {
            return Ok(false);
        }
        if stored == code_hash {
            // Used up, but keep the send counters.
            sqlx::query("UPDATE login_codes SET code_hash = '', expires_at = 0 WHERE phone = $1")
                .bind(phone)
                .execute(&mut **tx)
                .await?;
            Ok(true)
        } else {
            sqlx::query("UPDATE login_codes SET attempts = attempts + 1 WHERE phone = $1")
                .bind(phone)
                .execute(&mut **tx)
                .await?;
            Ok(false)
        }
    })
}

// ---- sessions --------------------------------------------------------------------------------

/// A stored session.
#[derive(Debug, Clone)]
pub struct SessionRow {
    pub person_id: String,
    /// `full`, or `totp` while the second factor is owed.
    pub stage: String,
    pub acting_for: Option<String>,
    pub reason: Option<String>,
    pub created_at: i64,
    pub expires_at: i64,
    /// Whether the second factor was passed (or, in assisted mode, by the session it came
    /// from).
    pub mfa: bool,
    /// Wrong codes given against this challenge (stage `totp` or `enrol`).
    pub attempts: i64,
}

pub async fn create_session(db: &Db, token_hash: &str, s: &SessionRow) -> Result<()> {
    sqlx::query(
        "INSERT INTO sessions (token_hash, person_id, stage, acting_for, reason, created_at, expires_at, mfa, attempts) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 0)",
    )
    .bind(token_hash)
    .bind(&s.person_id)
    .bind(&s.stage)
    .bind(s.acting_for.as_deref())
    .bind(s.reason.as_deref())
    .bind(s.created_at)
    .bind(s.expires_at)
    .bind(i64::from(s.mfa))
    .execute(db.pool())
    .await?;
    Ok(())
}

/// Create a session (or challenge) only if `person`'s credentials are still of `generation`
/// (0 when they have none): whether it was made.
pub async fn create_session_if(
    db: &Db,
    token_hash: &str,
    s: &SessionRow,
    generation: i64,
) -> Result<bool> {
    // In a write transaction: on Postgres (SERIALIZABLE) a password being set meanwhile makes
    // this conflict and run again, when it sees the new generation.
    super::write_tx!(db, |tx| {
        create_session_if_in(tx, token_hash, s, generation).await
    })
}

async fn create_session_if_in(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    token_hash: &str,
    s: &SessionRow,
    generation: i64,
) -> Result<bool> {
    let done = sqlx::query(
        "INSERT INTO sessions (token_hash, person_id, stage, acting_for, reason, created_at, expires_at, mfa, attempts) \
         SELECT $1, $2, $3, $4, $5, $6, $7, $8, 0 \
         WHERE COALESCE((SELECT generation FROM credentials WHERE person_id = $2), 0) = $9",
    )
    .bind(token_hash)
    .bind(&s.person_id)
    .bind(&s.stage)
    .bind(s.acting_for.as_deref())
    .bind(s.reason.as_deref())
    .bind(s.created_at)
    .bind(s.expires_at)
    .bind(i64::from(s.mfa))
    .bind(generation)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Drop `phone`'s sign-in code (it could not be sent).
pub async fn drop_code(db: &Db, phone: &str) -> Result<()> {
    sqlx::query("DELETE FROM login_codes WHERE phone = $1")
        .bind(phone)
        .execute(db.pool())
        .await?;
    Ok(())
}

/// Take one try of the challenge `token_hash` before its code is checked; false if it has
/// had its `max` tries (or is gone).
pub async fn challenge_try(db: &Db, token_hash: &str, max: i64) -> Result<bool> {
    Ok(sqlx::query(
        "UPDATE sessions SET attempts = attempts + 1 WHERE token_hash = $1 AND attempts < $2",
    )
    .bind(token_hash)
    .bind(max)
    .execute(db.pool())
    .await?
    .rows_affected()
        == 1)
}

/// Turn a challenge into the next stage of signing in (`enrol` → `totp`), with its tries
/// counted afresh.
pub async fn set_stage(db: &Db, token_hash: &str, stage: &str) -> Result<bool> {
    Ok(
        sqlx::query("UPDATE sessions SET stage = $1, attempts = 0 WHERE token_hash = $2")
            .bind(stage)
            .bind(token_hash)
            .execute(db.pool())
            .await?
            .rows_affected()
            == 1,
    )
}

/// End every session of `person` — their own, and the assisted sessions acting for them —
/// except the one whose token hash is `keep`. Returns how many ended.
pub async fn end_sessions_of(db: &Db, person: &str, keep: Option<&str>) -> Result<u64> {
    super::write_tx!(db, |tx| { end_sessions_of_in(tx, person, keep).await })
}

/// [`end_sessions_of`] inside the caller's transaction.
pub(crate) async fn end_sessions_of_in(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    person: &str,
    keep: Option<&str>,
) -> Result<u64> {
    Ok(sqlx::query(
        "DELETE FROM sessions WHERE (person_id = $1 OR acting_for = $1) AND token_hash <> $2",
    )
    .bind(person)
    .bind(keep.unwrap_or(""))
    .execute(&mut **tx)
    .await?
    .rows_affected())
}

/// The unexpired session with this token hash.
pub async fn session(db: &Db, token_hash: &str) -> Result<Option<SessionRow>> {
    let row = sqlx::query(
        "SELECT person_id, stage, acting_for, reason, created_at, expires_at, mfa, attempts \
         FROM sessions WHERE token_hash = $1 AND expires_at > $2",
    )
    .bind(token_hash)
    .bind(now_ms())
    .fetch_optional(db.pool())
    .await?;
    row.map(|r| {
        Ok(SessionRow {
            person_id: r.try_get(0)?,
            stage: r.try_get(1)?,
            acting_for: r.try_get(2)?,
            reason: r.try_get(3)?,
            created_at: r.try_get(4)?,
            expires_at: r.try_get(5)?,
            mfa: r.try_get::<i64, _>(6)? != 0,
            attempts: r.try_get(7)?,
        })
    })
    .transpose()
}

/// End a session; whether there was one.
pub async fn delete_session(db: &Db, token_hash: &str) -> Result<bool> {
    let n = sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
        .bind(token_hash)
        .execute(db.pool())
        .await?
        .rows_affected();
    Ok(n > 0)
}

/// Replace a session's token: the old one stops working in the same transaction.
pub async fn rotate_session(
    db: &Db,
    old_hash: &str,
    new_hash: &str,
    expires_at: i64,
) -> Result<bool> {
    super::write_tx!(db, |tx| {
        let n = sqlx::query(
            "UPDATE sessions SET token_hash = $1, expires_at = $2 WHERE token_hash = $3 AND expires_at > $4",
        )
        .bind(new_hash)
        .bind(expires_at)
        .bind(old_hash)
        .bind(now_ms())
        .execute(&mut **tx)
        .await?
        .rows_affected();
        Ok(n > 0)
    })
}

/// Drop expired sessions, expired login codes and rate-limit rows whose window and lock
/// have passed; how many rows.
pub async fn purge_expired(db: &Db) -> Result<u64> {
    let now = now_ms();
    let sessions = sqlx::query("DELETE FROM sessions WHERE expires_at <= $1")
        .bind(now)
        .execute(db.pool())
        .await?
        .rows_affected();
    let codes = sqlx::query("DELETE FROM login_codes WHERE expires_at <= $1")
        .bind(now)
        .execute(db.pool())
        .await?
        .rows_affected();
    // The longest window a throttle rule uses is an hour.
    let throttles = super::throttle::purge(db, now, 3_600_000).await?;
    Ok(sessions + codes + throttles)
}
