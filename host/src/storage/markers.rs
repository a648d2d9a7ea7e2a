//! One-time start-up work claimed by one process among several starting at once
//! (`host_markers`): the first to claim a name does the work and marks it done; the others
//! wait for that. A claim left by a process that died is taken over once it is stale.

use sqlx::Row;

use super::{Db, Result, now_ms};

/// What a claim found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The caller holds it now: do the work, then [`done`].
    Ours,
    /// Someone finished it.
    Done,
    /// Someone else is at it.
    Busy,
}

const DONE: &str = "done";

/// Claim `name` for `holder`, taking over a claim not refreshed for `stale_ms`.
pub async fn claim(db: &Db, name: &str, holder: &str, stale_ms: i64) -> Result<Claim> {
    let now = now_ms();
    let row = sqlx::query(
        "INSERT INTO host_markers (name, holder, updated_at) VALUES ($1, $2, $3) \
         ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, updated_at = excluded.updated_at \
         WHERE host_markers.holder <> 'done' AND host_markers.updated_at < $4 \
         RETURNING holder",
    )
    .bind(name)
    .bind(holder)
    .bind(now)
    .bind(now - stale_ms)
    .fetch_optional(db.pool())
    .await?;
    if row.is_some() {
        return Ok(Claim::Ours);
    }
    let row = sqlx::query("SELECT holder FROM host_markers WHERE name = $1")
        .bind(name)
        .fetch_optional(db.pool())
        .await?;
    Ok(match row {
        Some(r) if r.try_get::<String, _>(0)? == DONE => Claim::Done,
        Some(_) => Claim::Busy,
        // Deleted in between: try again.
        None => Claim::Busy,
    })
}

/// Mark `name` done.
pub async fn done(db: &Db, name: &str) -> Result<()> {
    sqlx::query(
        "INSERT INTO host_markers (name, holder, updated_at) VALUES ($1, 'done', $2) \
         ON CONFLICT (name) DO UPDATE SET holder = 'done', updated_at = excluded.updated_at",
    )
    .bind(name)
    .bind(now_ms())
    .execute(db.pool())
    .await?;
    Ok(())
}

/// Give a claim up (the work failed): the next to start may try.
pub async fn release(db: &Db, name: &str, holder: &str) -> Result<()> {
    sqlx::query("DELETE FROM host_markers WHERE name = $1 AND holder = $2")
        .bind(name)
        .bind(holder)
        .execute(db.pool())
        .await?;
    Ok(())
}
