//! Uploaded components and the plugins installed at each tenant.

use serde::{Deserialize, Serialize};
use sqlx::Row;
use utoipa::ToSchema;

use super::{Db, Result, StorageError, now_ms};

/// Whether an installation serves requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Active,
    Suspended,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Active => "active",
            Status::Suspended => "suspended",
        }
    }
}

/// A plugin installed at a tenant, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallRow {
    pub tenant_id: String,
    pub plugin_id: String,
    pub version: String,
    pub component_hash: String,
    /// The plugin's metadata as JSON (see `runtime::PluginMetadata`).
    pub metadata: String,
    pub status: Status,
    pub status_reason: Option<String>,
    pub installed_at: i64,
    pub updated_at: i64,
    /// Capabilities granted to this installation.
    pub grants: Vec<String>,
    /// For an installation above village level: the subtrees it serves (empty: all of it).
    pub serves: Vec<String>,
}

/// Store a component's bytes under its hash (no-op if already stored).
pub async fn put_component(db: &Db, hash: &str, bytes: &[u8]) -> Result<()> {
    let now = now_ms();
    super::write_tx!(db, |tx| {
        let known = sqlx::query("SELECT 1 FROM components WHERE hash = $1")
            .bind(hash)
            .fetch_optional(&mut **tx)
            .await?;
        if known.is_none() {
            sqlx::query(
                "INSERT INTO components (hash, bytes, size, created_at) VALUES ($1, $2, $3, $4)",
            )
            .bind(hash)
            .bind(bytes)
            .bind(bytes.len() as i64)
            .bind(now)
            .execute(&mut **tx)
            .await?;
        }
        Ok(())
    })
}

pub async fn get_component(db: &Db, hash: &str) -> Result<Option<Vec<u8>>> {
    let row = sqlx::query("SELECT bytes FROM components WHERE hash = $1")
        .bind(hash)
        .fetch_optional(db.pool())
        .await?;
    Ok(row.map(|r| r.try_get::<Vec<u8>, _>(0)).transpose()?)
}

const COLUMNS: &str = "tenant_id, plugin_id, version, component_hash, metadata, status, status_reason, installed_at, updated_at, grants, serves";

fn json_list(row: &sqlx::any::AnyRow, column: &str) -> Result<Vec<String>> {
    let text: String = row.try_get(column)?;
    serde_json::from_str(&text).map_err(|e| StorageError::Invalid(format!("stored {column}: {e}")))
}

fn from_row(row: &sqlx::any::AnyRow) -> Result<InstallRow> {
    let status: String = row.try_get("status")?;
    Ok(InstallRow {
        tenant_id: row.try_get("tenant_id")?,
        plugin_id: row.try_get("plugin_id")?,
        version: row.try_get("version")?,
        component_hash: row.try_get("component_hash")?,
        metadata: row.try_get("metadata")?,
        status: match status.as_str() {
            "active" => Status::Active,
            _ => Status::Suspended,
        },
        status_reason: row.try_get("status_reason")?,
        installed_at: row.try_get("installed_at")?,
        updated_at: row.try_get("updated_at")?,
        grants: json_list(row, "grants")?,
        serves: json_list(row, "serves")?,
    })
}

pub async fn get(db: &Db, tenant: &str, plugin: &str) -> Result<Option<InstallRow>> {
    let sql =
        format!("SELECT {COLUMNS} FROM installations WHERE tenant_id = $1 AND plugin_id = $2");
    let row = sqlx::query(&sql)
        .bind(tenant)
        .bind(plugin)
        .fetch_optional(db.pool())
        .await?;
    row.as_ref().map(from_row).transpose()
}

/// Installations, of one tenant or of all, ordered by tenant then plugin.
pub async fn list(db: &Db, tenant: Option<&str>) -> Result<Vec<InstallRow>> {
    let rows = match tenant {
        Some(t) => {
            let sql = format!(
                "SELECT {COLUMNS} FROM installations WHERE tenant_id = $1 ORDER BY plugin_id"
            );
            sqlx::query(&sql).bind(t).fetch_all(db.pool()).await?
        }
        None => {
            let sql = format!("SELECT {COLUMNS} FROM installations ORDER BY tenant_id, plugin_id");
            sqlx::query(&sql).fetch_all(db.pool()).await?
        }
    };
    rows.iter().map(from_row).collect()
}

/// Insert or replace the installation of `row.plugin_id` at `row.tenant_id`, and append
/// `event` to the audit log in the same transaction.
pub async fn upsert_audited(
    db: &Db,
    row: &InstallRow,
    event: &super::audit::Event<'_>,
) -> Result<()> {
    super::write_tx!(db, |tx| {
        upsert_in(tx, row).await?;
        super::audit::append_in(db, tx, event, now_ms()).await?;
        Ok(())
    })
}

async fn upsert_in(tx: &mut sqlx::Transaction<'static, sqlx::Any>, row: &InstallRow) -> Result<()> {
    {
        sqlx::query("DELETE FROM installations WHERE tenant_id = $1 AND plugin_id = $2")
            .bind(&row.tenant_id)
            .bind(&row.plugin_id)
            .execute(&mut **tx)
            .await?;
        let sql = format!(
            "INSERT INTO installations ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
        );
        sqlx::query(&sql)
            .bind(&row.tenant_id)
            .bind(&row.plugin_id)
            .bind(&row.version)
            .bind(&row.component_hash)
            .bind(&row.metadata)
            .bind(row.status.as_str())
            .bind(row.status_reason.as_deref())
            .bind(row.installed_at)
            .bind(row.updated_at)
            .bind(serde_json::to_string(&row.grants).expect("grants serialise"))
            .bind(serde_json::to_string(&row.serves).expect("serves serialise"))
            .execute(&mut **tx)
            .await?;
        Ok(())
    }
}

/// The installation of `plugin` nearest to the end of `path` (the tenant itself first, then
/// its ancestors).
pub async fn nearest(db: &Db, path: &[String], plugin: &str) -> Result<Option<InstallRow>> {
    if path.is_empty() {
        return Ok(None);
    }
    let marks: Vec<String> = (0..path.len()).map(|i| format!("${}", i + 2)).collect();
    let sql = format!(
        "SELECT {COLUMNS} FROM installations WHERE plugin_id = $1 AND tenant_id IN ({})",
        marks.join(", ")
    );
    let mut q = sqlx::query(&sql).bind(plugin);
    for t in path {
        q = q.bind(t);
    }
    let rows = q.fetch_all(db.pool()).await?;
    let mut found: Vec<InstallRow> = rows.iter().map(from_row).collect::<Result<_>>()?;
    found.sort_by_key(|r| std::cmp::Reverse(path.iter().position(|t| *t == r.tenant_id)));
    Ok(found.into_iter().next())
}

/// Replace an installation's grants or served subtrees. `NotFound` if it is not installed.
pub async fn set_list(
    db: &Db,
    tenant: &str,
    plugin: &str,
    which: ListColumn,
    values: &[String],
) -> Result<()> {
    let column = match which {
        ListColumn::Grants => "grants",
        ListColumn::Serves => "serves",
    };
    let done = sqlx::query(&format!(
        "UPDATE installations SET {column} = $3, updated_at = $4 WHERE tenant_id = $1 AND plugin_id = $2"
    ))
    .bind(tenant)
    .bind(plugin)
    .bind(serde_json::to_string(values).expect("list serialises"))
    .bind(now_ms())
    .execute(db.pool())
    .await?;
    if done.rows_affected() == 0 {
        return Err(StorageError::NotFound(format!("{tenant}/{plugin}")));
    }
    Ok(())
}

/// Which list [`set_list`] replaces.
#[derive(Debug, Clone, Copy)]
pub enum ListColumn {
    Grants,
    Serves,
}

/// Set an installation's status. `NotFound` if it is not installed.
pub async fn set_status(
    db: &Db,
    tenant: &str,
    plugin: &str,
    status: Status,
    reason: Option<&str>,
) -> Result<()> {
    let done = sqlx::query(
        "UPDATE installations SET status = $3, status_reason = $4, updated_at = $5 \
         WHERE tenant_id = $1 AND plugin_id = $2",
    )
    .bind(tenant)
    .bind(plugin)
    .bind(status.as_str())
    .bind(reason)
    .bind(now_ms())
    .execute(db.pool())
    .await?;
    if done.rows_affected() == 0 {
        return Err(StorageError::NotFound(format!("{tenant}/{plugin}")));
    }
    Ok(())
}

/// Suspend an active installation and record `event` in the audit log, in one transaction;
/// whether it was active (an installation already suspended is left alone and nothing is
/// recorded, however many failing calls or replicas ask at once).
pub async fn suspend_if_active(
    db: &Db,
    tenant: &str,
    plugin: &str,
    reason: &str,
    event: &super::audit::Event<'_>,
) -> Result<bool> {
    let now = now_ms();
    super::write_tx!(db, |tx| {
        let done = sqlx::query(
            "UPDATE installations SET status = $3, status_reason = $4, updated_at = $5 \
             WHERE tenant_id = $1 AND plugin_id = $2 AND status = $6",
        )
        .bind(tenant)
        .bind(plugin)
        .bind(Status::Suspended.as_str())
        .bind(reason)
        .bind(now)
        .bind(Status::Active.as_str())
        .execute(&mut **tx)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        super::audit::append_in(db, tx, event, now).await?;
        Ok(true)
    })
}

/// Remove an installation. `NotFound` if it is not installed.
pub async fn delete(db: &Db, tenant: &str, plugin: &str) -> Result<()> {
    let done = sqlx::query("DELETE FROM installations WHERE tenant_id = $1 AND plugin_id = $2")
        .bind(tenant)
        .bind(plugin)
        .execute(db.pool())
        .await?;
    if done.rows_affected() == 0 {
        return Err(StorageError::NotFound(format!("{tenant}/{plugin}")));
    }
    Ok(())
}

/// The installations serving the tenant at the end of the root-first `path`: installed on it
/// or above it and serving it, the nearest of each plugin (a village's own installation hides
/// its township's).
pub async fn serving(db: &Db, path: &[String]) -> Result<Vec<InstallRow>> {
    let mut seen = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    for t in path.iter().rev() {
        for row in list(db, Some(t)).await? {
            let serves_here = row.serves.is_empty() || row.serves.iter().any(|s| path.contains(s));
            if serves_here && seen.insert(row.plugin_id.clone()) {
                out.push(row);
            }
        }
    }
    Ok(out)
}
