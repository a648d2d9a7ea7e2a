//! Sign-in state: credentials (password hash, TOTP secret, failure counter), one-time codes
//! and sessions. Tokens and codes are stored only as hashes.

use sqlx::Row;

use super::{Db, Result, StorageError, now_ms};

/// A person's stored credentials.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    pub password_hash: Option<String>,
    pub totp_secret: Option<String>,
    pub failures: i64,
    pub locked_until: i64,
}

pub async fn credentials(db: &Db, person: &str) -> Result<Option<Credentials>> {
    let row = sqlx::query(
        "SELECT password_hash, totp_secret, failures, locked_until FROM credentials WHERE person_id = $1",
    )
    .bind(person)
    .fetch_optional(db.pool())
    .await?;
    row.map(|r| {
        Ok(Credentials {
            password_hash: r.try_get(0)?,
            totp_secret: r.try_get(1)?,
            failures: r.try_get(2)?,
            locked_until: r.try_get(3)?,
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

/// Set the password hash (already argon2id-hashed by the caller) or the TOTP secret.
pub async fn set_secret(db: &Db, person: &str, column: Secret, value: Option<&str>) -> Result<()> {
    let column = match column {
        Secret::Password => "password_hash",
        Secret::Totp => "totp_secret",
    };
    super::write_tx!(db, |tx| {
        ensure_row(tx, person).await?;
        sqlx::query(&format!(
            "UPDATE credentials SET {column} = $1, updated_at = $2 WHERE person_id = $3"
        ))
        .bind(value)
        .bind(now_ms())
        .bind(person)
        .execute(&mut **tx)
        .await?;
        Ok(())
    })
}

/// Which secret [`set_secret`] sets.
#[derive(Debug, Clone, Copy)]
pub enum Secret {
    Password,
    Totp,
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

/// Count a failed sign-in; at `max` failures in a row the account locks until `now + lockout_ms`.
/// Returns the lock expiry if it is now locked.
pub async fn record_failure(
    db: &Db,
    person: &str,
    max: u32,
    lockout_ms: i64,
) -> Result<Option<i64>> {
    let now = now_ms();
    super::write_tx!(db, |tx| {
        ensure_row(tx, person).await?;
        let row = sqlx::query("SELECT failures FROM credentials WHERE person_id = $1")
            .bind(person)
            .fetch_one(&mut **tx)
            .await?;
        let failures: i64 = row.try_get::<i64, _>(0)? + 1;
        let (failures, locked_until) = if failures >= i64::from(max) {
            (0, now + lockout_ms)
        } else {
            (failures, 0)
        };
        sqlx::query(
            "UPDATE credentials SET failures = $1, locked_until = CASE WHEN $2 > 0 THEN $2 ELSE locked_until END, updated_at = $3 WHERE person_id = $4",
        )
        .bind(failures)
        .bind(locked_until)
        .bind(now)
        .bind(person)
        .execute(&mut **tx)
        .await?;
        Ok((locked_until > 0).then_some(locked_until))
    })
}

/// A successful sign-in clears the failure counter.
pub async fn clear_failures(db: &Db, person: &str) -> Result<()> {
    sqlx::query("UPDATE credentials SET failures = 0 WHERE person_id = $1 AND failures <> 0")
        .bind(person)
        .execute(db.pool())
        .await?;
    Ok(())
}

/// Lift a lockout (an admin action).
pub async fn unlock(db: &Db, person: &str) -> Result<()> {
    sqlx::query("UPDATE credentials SET failures = 0, locked_until = 0 WHERE person_id = $1")
        .bind(person)
        .execute(db.pool())
        .await?;
    Ok(())
}

// ---- one-time codes --------------------------------------------------------------------------

/// Limits on sending codes to one phone.
#[derive(Debug, Clone, Copy)]
pub struct CodeLimits {
    /// Least time between two codes, ms.
    pub resend_ms: i64,
    /// Most codes per `window_ms`.
    pub per_window: i64,
    pub window_ms: i64,
    /// How long a code is valid, ms.
    pub ttl_ms: i64,
}

/// Store a new code for `phone` (replacing any earlier one), unless the phone is being sent
/// codes too often: then `Quota` saying when to retry.
pub async fn put_code(db: &Db, phone: &str, code_hash: &str, limits: CodeLimits) -> Result<()> {
    let now = now_ms();
    super::write_tx!(db, |tx| {
        let row = sqlx::query(
            "SELECT sent_at, sent_count, window_start FROM login_codes WHERE phone = $1",
        )
        .bind(phone)
        .fetch_optional(&mut **tx)
        .await?;
        let (count, window_start) = match row {
            Some(r) => {
                let sent_at: i64 = r.try_get(0)?;
                let count: i64 = r.try_get(1)?;
                let window_start: i64 = r.try_get(2)?;
                if now - sent_at < limits.resend_ms {
                    return Err(StorageError::Quota(format!(
                        "验证码发送过于频繁，请 {} 秒后再试 / a code was sent less than {} s ago",
                        (limits.resend_ms - (now - sent_at)) / 1000 + 1,
                        limits.resend_ms / 1000
                    )));
                }
                if now - window_start < limits.window_ms {
                    if count >= limits.per_window {
                        return Err(StorageError::Quota(format!(
                            "验证码发送次数已达上限 / at most {} codes per {} minutes",
                            limits.per_window,
                            limits.window_ms / 60_000
                        )));
                    }
                    (count + 1, window_start)
                } else {
                    (1, now)
                }
            }
            None => (1, now),
        };
        sqlx::query("DELETE FROM login_codes WHERE phone = $1")
            .bind(phone)
            .execute(&mut **tx)
            .await?;
        sqlx::query(
            "INSERT INTO login_codes (phone, code_hash, expires_at, attempts, sent_at, sent_count, window_start) \
             VALUES ($1, $2, $3, 0, $4, $5, $6)",
        )
        .bind(phone)
        .bind(code_hash)
        .bind(now + limits.ttl_ms)
        .bind(now)
        .bind(count)
        .bind(window_start)
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
}

pub async fn create_session(db: &Db, token_hash: &str, s: &SessionRow) -> Result<()> {
    sqlx::query(
        "INSERT INTO sessions (token_hash, person_id, stage, acting_for, reason, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(token_hash)
    .bind(&s.person_id)
    .bind(&s.stage)
    .bind(s.acting_for.as_deref())
    .bind(s.reason.as_deref())
    .bind(s.created_at)
    .bind(s.expires_at)
    .execute(db.pool())
    .await?;
    Ok(())
}

/// The unexpired session with this token hash.
pub async fn session(db: &Db, token_hash: &str) -> Result<Option<SessionRow>> {
    let row = sqlx::query(
        "SELECT person_id, stage, acting_for, reason, created_at, expires_at FROM sessions \
         WHERE token_hash = $1 AND expires_at > $2",
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

/// Drop expired sessions, and login codes that expired and whose hourly sending window
/// closed (the rate limit no longer needs them); how many rows.
pub async fn purge_expired(db: &Db) -> Result<u64> {
    let now = now_ms();
    let sessions = sqlx::query("DELETE FROM sessions WHERE expires_at <= $1")
        .bind(now)
        .execute(db.pool())
        .await?
        .rows_affected();
    let codes =
        sqlx::query("DELETE FROM login_codes WHERE expires_at <= $1 AND window_start <= $2")
            .bind(now)
            .bind(now - 3_600_000)
            .execute(db.pool())
            .await?
            .rows_affected();
    Ok(sessions + codes)
}
