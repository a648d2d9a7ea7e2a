//! When installations' schedules are next due (`schedule_state`).

use sqlx::Row;

use super::{Db, Result};

/// `(cron, next_due_at)` of one schedule, if it was seen before.
pub async fn get(db: &Db, tenant: &str, plugin: &str, name: &str) -> Result<Option<(String, i64)>> {
    let row = sqlx::query(
        "SELECT cron, next_due_at FROM schedule_state \
         WHERE tenant_id = $1 AND plugin_id = $2 AND name = $3",
    )
    .bind(tenant)
    .bind(plugin)
    .bind(name)
    .fetch_optional(db.pool())
    .await?;
    row.map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).transpose()
}

/// Start (or restart, after the cron changed) a schedule at `next`.
pub async fn reset(
    db: &Db,
    tenant: &str,
    plugin: &str,
    name: &str,
    cron: &str,
    next: i64,
) -> Result<()> {
    super::write_tx!(db, |tx| {
        sqlx::query(
            "DELETE FROM schedule_state WHERE tenant_id = $1 AND plugin_id = $2 AND name = $3",
        )
        .bind(tenant)
        .bind(plugin)
        .bind(name)
        .execute(&mut **tx)
        .await?;
        sqlx::query(
            "INSERT INTO schedule_state (tenant_id, plugin_id, name, cron, next_due_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(tenant)
        .bind(plugin)
        .bind(name)
        .bind(cron)
        .bind(next)
        .execute(&mut **tx)
        .await?;
        Ok(())
    })
}

/// Claim the tick due at `due`: move the schedule on to `next` and write the tick to the
/// outbox, in one transaction. False if another worker claimed it first.
#[allow(clippy::too_many_arguments)]
pub async fn claim(
    db: &Db,
    tenant: &str,
    plugin: &str,
    name: &str,
    due: i64,
    next: i64,
    payload: &str,
) -> Result<bool> {
    super::write_tx!(db, |tx| {
        let moved = sqlx::query(
            "UPDATE schedule_state SET next_due_at = $1 \
             WHERE tenant_id = $2 AND plugin_id = $3 AND name = $4 AND next_due_at = $5",
        )
        .bind(next)
        .bind(tenant)
        .bind(plugin)
        .bind(name)
        .bind(due)
        .execute(&mut **tx)
        .await?;
        if moved.rows_affected() != 1 {
            return Ok(false);
        }
        super::outbox::enqueue_in(
            tx,
            tenant,
            plugin,
            "tick",
            &format!("{name}@{due}"),
            payload,
        )
        .await?;
        Ok(true)
    })
}

/// Forget an installation's schedules (uninstall).
pub async fn forget(db: &Db, tenant: &str, plugin: &str) -> Result<()> {
    sqlx::query("DELETE FROM schedule_state WHERE tenant_id = $1 AND plugin_id = $2")
        .bind(tenant)
        .bind(plugin)
        .execute(db.pool())
        .await?;
    Ok(())
}
