//! Rate limits kept in the database, so every replica sees the same counts: failed sign-ins
//! by client address, by phone and by both; codes sent by phone, by client and in all.
//!
//! A key is a hash (see [`key`]): a phone nobody has gets a row exactly like a registered
//! one (so no answer tells them apart), and no table holds the numbers people typed. Rows go
//! once their window and lock have passed ([`purge`]).

use sha2::Sha256;
use sqlx::Row;

use super::{Db, Result};

/// How a key is limited.
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    /// Hits allowed per window; the hit that reaches it blocks the key.
    pub limit: i64,
    pub window_ms: i64,
    /// How long a key stays blocked once it reaches the limit (0: until the window ends).
    pub lock_ms: i64,
    /// Least time between two hits (0: none).
    pub min_gap_ms: i64,
}

/// The answer to a hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hit {
    /// Counted; the key is not blocked.
    Counted,
    /// Blocked until this time (ms); `newly` if this hit blocked it.
    Blocked { until: i64, newly: bool },
}

/// The key of `kind` (a short tag: `c` client, `p` phone, …) for `parts`: an HMAC of each
/// part under the database's secret (derived from the audit key, kept outside the database),
/// so the table holds no phone numbers or addresses and a copy of it cannot be reversed by
/// trying every phone number. Two-part keys keep the first part's hash as a prefix, so
/// everything about one phone can be cleared at once ([`clear_prefix`]).
pub fn key(db: &Db, kind: &str, parts: &[&str]) -> String {
    use hmac::{Hmac, Mac};
    let secret = db.throttle_secret();
    let mut out = String::from(kind);
    for p in parts {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("any key size");
        mac.update(format!("linli-throttle|{kind}|{p}").as_bytes());
        out.push(':');
        out.push_str(&hex::encode(&mac.finalize().into_bytes()[..12]));
    }
    out
}

/// Until when `key` is blocked, if it is now.
pub async fn blocked(db: &Db, key: &str, now: i64) -> Result<Option<i64>> {
    let row = sqlx::query("SELECT locked_until FROM auth_throttle WHERE key = $1")
        .bind(key)
        .fetch_optional(db.pool())
        .await?;
    Ok(match row {
        Some(r) => {
            let until: i64 = r.try_get(0)?;
            (until > now).then_some(until)
        }
        None => None,
    })
}

/// Count one hit on `key` under `rule`, unless it is blocked (then it is not counted).
pub async fn hit(db: &Db, key: &str, rule: Rule, now: i64) -> Result<Hit> {
    super::write_tx!(db, |tx| {
        let row = sqlx::query(
            "SELECT hits, window_start, last_at, locked_until FROM auth_throttle WHERE key = $1",
        )
        .bind(key)
        .fetch_optional(&mut **tx)
        .await?;
        let (hits, window_start, last_at, locked_until) = match &row {
            Some(r) => (
                r.try_get::<i64, _>(0)?,
                r.try_get::<i64, _>(1)?,
                r.try_get::<i64, _>(2)?,
                r.try_get::<i64, _>(3)?,
            ),
            None => (0, now, 0, 0),
        };
        if locked_until > now {
            return Ok(Hit::Blocked {
                until: locked_until,
                newly: false,
            });
        }
        if rule.min_gap_ms > 0 && row.is_some() && now - last_at < rule.min_gap_ms {
            return Ok(Hit::Blocked {
                until: last_at + rule.min_gap_ms,
                newly: false,
            });
        }
        let (hits, window_start) = if now - window_start >= rule.window_ms {
            (1, now)
        } else {
            (hits + 1, window_start)
        };
        let block = hits >= rule.limit;
        let until = if !block {
            0
        } else if rule.lock_ms > 0 {
            now + rule.lock_ms
        } else {
            window_start + rule.window_ms
        };
        // A lock starts a new window when it ends.
        let (hits, window_start) = if block && rule.lock_ms > 0 {
            (0, until)
        } else {
            (hits, window_start)
        };
        if row.is_some() {
            sqlx::query(
                "UPDATE auth_throttle SET hits = $2, window_start = $3, last_at = $4, locked_until = $5 WHERE key = $1",
            )
        } else {
            sqlx::query(
                "INSERT INTO auth_throttle (key, hits, window_start, last_at, locked_until) VALUES ($1, $2, $3, $4, $5)",
            )
        }
        .bind(key)
        .bind(hits)
        .bind(window_start)
        .bind(now)
        .bind(until)
        .execute(&mut **tx)
        .await?;
        Ok(if block {
            Hit::Blocked { until, newly: true }
        } else {
            Hit::Counted
        })
    })
}

/// Take back a hit counted for an attempt that turned out to succeed: one hit less, and a
/// block this very hit set is lifted.
pub async fn refund(db: &Db, key: &str, hit: Hit, rule: Rule) -> Result<()> {
    match hit {
        Hit::Counted => {
            sqlx::query(
                "UPDATE auth_throttle SET hits = CASE WHEN hits > 0 THEN hits - 1 ELSE 0 END WHERE key = $1",
            )
            .bind(key)
            .execute(db.pool())
            .await?;
        }
        Hit::Blocked { newly: true, .. } => {
            // As it was just before this hit: one short of the limit, in a window from now.
            sqlx::query(
                "UPDATE auth_throttle SET locked_until = 0, hits = $2, window_start = $3 WHERE key = $1",
            )
            .bind(key)
            .bind((rule.limit - 1).max(0))
            .bind(super::now_ms())
            .execute(db.pool())
            .await?;
        }
        Hit::Blocked { newly: false, .. } => {}
    }
    Ok(())
}

/// Forget `key` (a successful sign-in from that client, an admin's unlock).
pub async fn clear(db: &Db, key: &str) -> Result<()> {
    sqlx::query("DELETE FROM auth_throttle WHERE key = $1")
        .bind(key)
        .execute(db.pool())
        .await?;
    Ok(())
}

/// Forget every key starting with `prefix` (all of one phone's per-client keys).
pub async fn clear_prefix(db: &Db, prefix: &str) -> Result<()> {
    // Keys are `[a-z0-9:]`: no LIKE wildcards in a prefix.
    debug_assert!(!prefix.contains(['%', '_']));
    sqlx::query("DELETE FROM auth_throttle WHERE key LIKE $1")
        .bind(format!("{prefix}%"))
        .execute(db.pool())
        .await?;
    Ok(())
}

/// Drop rows whose lock has ended and whose window started more than `max_window_ms` ago.
pub async fn purge(db: &Db, now: i64, max_window_ms: i64) -> Result<u64> {
    Ok(
        sqlx::query("DELETE FROM auth_throttle WHERE locked_until <= $1 AND window_start <= $2")
            .bind(now)
            .bind(now - max_window_ms)
            .execute(db.pool())
            .await?
            .rows_affected(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn keys_hide_their_parts_and_share_prefixes() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::connect(None, dir.path()).await.unwrap();
        let a = key(&db, "pc", &["13800000001", "10.0.0.1"]);
        let b = key(&db, "pc", &["13800000001", "10.0.0.2"]);
        assert!(!a.contains("13800000001") && !a.contains("10.0.0.1"));
        assert_ne!(a, b);
        let prefix = key(&db, "pc", &["13800000001"]);
        assert!(a.starts_with(&prefix) && b.starts_with(&prefix));
        assert_ne!(
            key(&db, "p", &["13800000001"]),
            key(&db, "pc", &["13800000001"])
        );
        // Another host's secret: other keys, so a copied table cannot be matched by hashing
        // phone numbers.
        let other = tempfile::tempdir().unwrap();
        let db2 = Db::connect(None, other.path()).await.unwrap();
        assert_ne!(
            key(&db2, "p", &["13800000001"]),
            key(&db, "p", &["13800000001"])
        );
    }
}
