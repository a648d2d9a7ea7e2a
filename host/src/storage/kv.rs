//! Plugin key-value data, scoped by (tenant, plugin).
//!
//! The scope is always a parameter the host supplies; nothing here takes a scope from a guest.
//! Validation of key and value sizes happens in the data capability; this module enforces the
//! one quota that needs the database (keys per scope) inside the write transaction.

use sqlx::{Any, Row, Transaction};

use super::outbox::{Staged, write_staged_in};
use super::{Db, Result, StorageError, WriteLock};

/// The (tenant, plugin) a data operation is confined to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Scope {
    pub tenant: String,
    pub plugin: String,
}

/// A condition checked inside a batch before any write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Precondition {
    Exists(String),
    Absent(String),
    Equals(String, Vec<u8>),
}

/// A write inside a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operation {
    Set(String, Vec<u8>),
    Delete(String),
    Increment(String, i64),
}

/// What a batch did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchOutcome {
    Committed,
    PreconditionFailed(u32),
}

/// One page of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub entries: Vec<(String, Vec<u8>)>,
    /// Whether more entries follow the last one returned.
    pub more: bool,
}

type Tx = Transaction<'static, Any>;

pub async fn get(db: &Db, scope: &Scope, key: &str) -> Result<Option<Vec<u8>>> {
    fetch_value(db.pool(), scope, key).await
}

/// The value at `key`, read through any executor (the pool, or a transaction).
async fn fetch_value<'e, E>(executor: E, scope: &Scope, key: &str) -> Result<Option<Vec<u8>>>
where
    E: sqlx::Executor<'e, Database = Any>,
{
    let row =
        sqlx::query("SELECT value FROM kv WHERE tenant_id = $1 AND plugin_id = $2 AND key = $3")
            .bind(&scope.tenant)
            .bind(&scope.plugin)
            .bind(key)
            .fetch_optional(executor)
            .await?;
    Ok(row.map(|r| r.try_get::<Vec<u8>, _>(0)).transpose()?)
}

pub async fn exists(db: &Db, scope: &Scope, key: &str) -> Result<bool> {
    let row = sqlx::query("SELECT 1 FROM kv WHERE tenant_id = $1 AND plugin_id = $2 AND key = $3")
        .bind(&scope.tenant)
        .bind(&scope.plugin)
        .bind(key)
        .fetch_optional(db.pool())
        .await?;
    Ok(row.is_some())
}

/// Entries whose key starts with `prefix`, after the key `after` (exclusive), in key order.
pub async fn list(
    db: &Db,
    scope: &Scope,
    prefix: &str,
    after: Option<&str>,
    limit: u32,
) -> Result<Page> {
    // Keys compare bytewise (SQLite BINARY, Postgres COLLATE "C"), and UTF-8 byte order is
    // code point order, so every key with `prefix` lies in [prefix, successor(prefix)).
    let lower = match after {
        Some(after) if after >= prefix => after,
        _ => prefix,
    };
    let strict = after.is_some_and(|a| a >= prefix);
    let upper = prefix_successor(prefix);
    let fetch = i64::from(limit) + 1;
    let sql = match (strict, upper.is_some()) {
        (true, true) => {
            "SELECT key, value FROM kv WHERE tenant_id = $1 AND plugin_id = $2 AND key > $3 AND key < $4 ORDER BY key LIMIT $5"
        }
        (false, true) => {
            "SELECT key, value FROM kv WHERE tenant_id = $1 AND plugin_id = $2 AND key >= $3 AND key < $4 ORDER BY key LIMIT $5"
        }
        (true, false) => {
            "SELECT key, value FROM kv WHERE tenant_id = $1 AND plugin_id = $2 AND key > $3 AND $4 = $4 ORDER BY key LIMIT $5"
        }
        (false, false) => {
            "SELECT key, value FROM kv WHERE tenant_id = $1 AND plugin_id = $2 AND key >= $3 AND $4 = $4 ORDER BY key LIMIT $5"
        }
    };
    let rows = sqlx::query(sql)
        .bind(&scope.tenant)
        .bind(&scope.plugin)
        .bind(lower)
        .bind(upper.as_deref().unwrap_or(""))
        .bind(fetch)
        .fetch_all(db.pool())
        .await?;
    let mut entries = Vec::with_capacity(rows.len());
    for row in rows {
        let key: String = row.try_get(0)?;
        let value: Vec<u8> = row.try_get(1)?;
        entries.push((key, value));
    }
    let more = entries.len() as i64 > i64::from(limit);
    entries.truncate(limit as usize);
    Ok(Page { entries, more })
}

/// The smallest string greater than every string starting with `prefix`, or `None` when no
/// such string exists (empty prefix, or only `char::MAX`s).
pub fn prefix_successor(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let mut next = u32::from(last) + 1;
        if (0xD800..=0xDFFF).contains(&next) {
            next = 0xE000;
        }
        if let Some(c) = char::from_u32(next) {
            chars.push(c);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

pub async fn set(db: &Db, scope: &Scope, key: &str, value: &[u8], max_keys: u64) -> Result<()> {
    set_staged(db, scope, key, value, max_keys, &[]).await
}

/// [`set`], writing `staged` outbox entries in the same transaction.
pub async fn set_staged(
    db: &Db,
    scope: &Scope,
    key: &str,
    value: &[u8],
    max_keys: u64,
    staged: &[Staged],
) -> Result<()> {
    super::write_tx!(db, lock = WriteLock::Scope(scope), |tx| {
        tx_put(tx, scope, key, value, max_keys).await?;
        write_staged_in(tx, staged).await
    })
}

pub async fn delete(db: &Db, scope: &Scope, key: &str) -> Result<bool> {
    delete_staged(db, scope, key, &[]).await
}

/// [`delete`], writing `staged` outbox entries in the same transaction.
pub async fn delete_staged(db: &Db, scope: &Scope, key: &str, staged: &[Staged]) -> Result<bool> {
    super::write_tx!(db, lock = WriteLock::Scope(scope), |tx| {
        let deleted = tx_delete(tx, scope, key).await?;
        write_staged_in(tx, staged).await?;
        Ok(deleted)
    })
}

pub async fn increment(
    db: &Db,
    scope: &Scope,
    key: &str,
    delta: i64,
    max_keys: u64,
) -> Result<i64> {
    increment_staged(db, scope, key, delta, max_keys, &[]).await
}

/// [`increment`], writing `staged` outbox entries in the same transaction.
pub async fn increment_staged(
    db: &Db,
    scope: &Scope,
    key: &str,
    delta: i64,
    max_keys: u64,
    staged: &[Staged],
) -> Result<i64> {
    super::write_tx!(db, lock = WriteLock::Scope(scope), |tx| {
        let value = tx_increment(tx, scope, key, delta, max_keys).await?;
        write_staged_in(tx, staged).await?;
        Ok(value)
    })
}

/// Replace `key`'s value with `new` (delete when `None`) only if it equals `expected`
/// (`None` = absent). Returns whether it swapped.
pub async fn compare_and_swap(
    db: &Db,
    scope: &Scope,
    key: &str,
    expected: Option<&[u8]>,
    new: Option<&[u8]>,
    max_keys: u64,
) -> Result<bool> {
    compare_and_swap_staged(db, scope, key, expected, new, max_keys, &[]).await
}

/// [`compare_and_swap`], writing `staged` outbox entries in the same transaction if it
/// swapped.
pub async fn compare_and_swap_staged(
    db: &Db,
    scope: &Scope,
    key: &str,
    expected: Option<&[u8]>,
    new: Option<&[u8]>,
    max_keys: u64,
    staged: &[Staged],
) -> Result<bool> {
    super::write_tx!(db, lock = WriteLock::Scope(scope), |tx| {
        let current = tx_get(tx, scope, key).await?;
        if current.as_deref() != expected {
            return Ok(false);
        }
        match new {
            Some(value) => tx_put(tx, scope, key, value, max_keys).await?,
            None => {
                tx_delete(tx, scope, key).await?;
            }
        }
        write_staged_in(tx, staged).await?;
        Ok(true)
    })
}

/// Check every precondition, then apply every operation, in one transaction.
pub async fn batch(
    db: &Db,
    scope: &Scope,
    preconditions: &[Precondition],
    operations: &[Operation],
    max_keys: u64,
) -> Result<BatchOutcome> {
    batch_staged(db, scope, preconditions, operations, max_keys, &[]).await
}

/// [`batch`], writing `staged` outbox entries in the same transaction if it committed.
pub async fn batch_staged(
    db: &Db,
    scope: &Scope,
    preconditions: &[Precondition],
    operations: &[Operation],
    max_keys: u64,
    staged: &[Staged],
) -> Result<BatchOutcome> {
    super::write_tx!(db, lock = WriteLock::Scope(scope), |tx| {
        for (i, pre) in preconditions.iter().enumerate() {
            let holds = match pre {
                Precondition::Exists(k) => tx_get(tx, scope, k).await?.is_some(),
                Precondition::Absent(k) => tx_get(tx, scope, k).await?.is_none(),
                Precondition::Equals(k, v) => {
                    tx_get(tx, scope, k).await?.as_deref() == Some(v.as_slice())
                }
            };
            if !holds {
                return Ok(BatchOutcome::PreconditionFailed(i as u32));
            }
        }
        for op in operations {
            match op {
                Operation::Set(k, v) => tx_put(tx, scope, k, v, max_keys).await?,
                Operation::Delete(k) => {
                    tx_delete(tx, scope, k).await?;
                }
                Operation::Increment(k, d) => {
                    tx_increment(tx, scope, k, *d, max_keys).await?;
                }
            }
        }
        write_staged_in(tx, staged).await?;
        Ok(BatchOutcome::Committed)
    })
}

/// Number of keys a scope holds.
pub async fn key_count(db: &Db, scope: &Scope) -> Result<u64> {
    fetch_key_count(db.pool(), scope).await
}

async fn fetch_key_count<'e, E>(executor: E, scope: &Scope) -> Result<u64>
where
    E: sqlx::Executor<'e, Database = Any>,
{
    let row = sqlx::query("SELECT keys FROM kv_usage WHERE tenant_id = $1 AND plugin_id = $2")
        .bind(&scope.tenant)
        .bind(&scope.plugin)
        .fetch_optional(executor)
        .await?;
    Ok(row
        .map(|r| r.try_get::<i64, _>(0))
        .transpose()?
        .unwrap_or(0)
        .max(0) as u64)
}

/// Remove every key of a scope (used when a plugin is uninstalled with its data).
pub async fn purge(db: &Db, scope: &Scope) -> Result<u64> {
    super::write_tx!(db, lock = WriteLock::Scope(scope), |tx| {
        let done = sqlx::query("DELETE FROM kv WHERE tenant_id = $1 AND plugin_id = $2")
            .bind(&scope.tenant)
            .bind(&scope.plugin)
            .execute(&mut **tx)
            .await?;
        sqlx::query("DELETE FROM kv_usage WHERE tenant_id = $1 AND plugin_id = $2")
            .bind(&scope.tenant)
            .bind(&scope.plugin)
            .execute(&mut **tx)
            .await?;
        Ok(done.rows_affected())
    })
}

async fn tx_get(tx: &mut Tx, scope: &Scope, key: &str) -> Result<Option<Vec<u8>>> {
    fetch_value(&mut **tx, scope, key).await
}

async fn tx_put(tx: &mut Tx, scope: &Scope, key: &str, value: &[u8], max_keys: u64) -> Result<()> {
    let updated = sqlx::query(
        "UPDATE kv SET value = $4 WHERE tenant_id = $1 AND plugin_id = $2 AND key = $3",
    )
    .bind(&scope.tenant)
    .bind(&scope.plugin)
    .bind(key)
    .bind(value)
    .execute(&mut **tx)
    .await?;
    if updated.rows_affected() > 0 {
        return Ok(());
    }
    if fetch_key_count(&mut **tx, scope).await? >= max_keys {
        return Err(StorageError::Quota(format!(
            "keys_per_scope = {max_keys}: 此插件在本租户的数据键已达上限 / this plugin holds the maximum number of keys at this tenant"
        )));
    }
    sqlx::query("INSERT INTO kv (tenant_id, plugin_id, key, value) VALUES ($1, $2, $3, $4)")
        .bind(&scope.tenant)
        .bind(&scope.plugin)
        .bind(key)
        .bind(value)
        .execute(&mut **tx)
        .await?;
    adjust_usage(tx, scope, 1).await
}

async fn tx_delete(tx: &mut Tx, scope: &Scope, key: &str) -> Result<bool> {
    let done = sqlx::query("DELETE FROM kv WHERE tenant_id = $1 AND plugin_id = $2 AND key = $3")
        .bind(&scope.tenant)
        .bind(&scope.plugin)
        .bind(key)
        .execute(&mut **tx)
        .await?;
    let existed = done.rows_affected() > 0;
    if existed {
        adjust_usage(tx, scope, -1).await?;
    }
    Ok(existed)
}

async fn tx_increment(
    tx: &mut Tx,
    scope: &Scope,
    key: &str,
    delta: i64,
    max_keys: u64,
) -> Result<i64> {
    let current = match tx_get(tx, scope, key).await? {
        None => 0,
        Some(bytes) => parse_counter(&bytes).ok_or_else(|| {
            StorageError::Invalid(format!(
                "键 {key:?} 的值不是计数器 / the value at {key:?} is not a counter (decimal i64)"
            ))
        })?,
    };
    let next = current.checked_add(delta).ok_or_else(|| {
        StorageError::Invalid(format!("计数器溢出 / counter {key:?} would overflow i64"))
    })?;
    tx_put(tx, scope, key, next.to_string().as_bytes(), max_keys).await?;
    Ok(next)
}

/// The key prefix under which a plugin keeps data about one person (`r/<person-id>/`): what
/// residents' export and erasure find in every plugin's data.
pub fn person_prefix(person: &str) -> String {
    format!("r/{person}/")
}

/// Every plugin's entries under `prefix`, at every tenant: (tenant, plugin, key, value).
pub async fn across_scopes(
    db: &Db,
    prefix: &str,
) -> Result<Vec<(String, String, String, Vec<u8>)>> {
    let upper = prefix_successor(prefix).unwrap_or_else(|| "\u{10FFFF}".repeat(2));
    let rows = sqlx::query(
        "SELECT tenant_id, plugin_id, key, value FROM kv WHERE key >= $1 AND key < $2 \
         ORDER BY tenant_id, plugin_id, key",
    )
    .bind(prefix)
    .bind(&upper)
    .fetch_all(db.pool())
    .await?;
    rows.iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?)))
        .collect()
}

/// Delete every plugin's entries under `prefix`, keeping each scope's key count right.
///
/// This one runs `SERIALIZABLE` without the scopes' locks: a scope's writer that commits
/// first makes it retry, and one that commits after it sees the rows gone.
pub async fn delete_across_scopes(db: &Db, prefix: &str) -> Result<u64> {
    let upper = prefix_successor(prefix).unwrap_or_else(|| "\u{10FFFF}".repeat(2));
    super::write_tx!(db, |tx| {
        let rows = sqlx::query(
            "SELECT tenant_id, plugin_id, COUNT(*) FROM kv WHERE key >= $1 AND key < $2 \
             GROUP BY tenant_id, plugin_id",
        )
        .bind(prefix)
        .bind(&upper)
        .fetch_all(&mut **tx)
        .await?;
        let mut total = 0u64;
        for r in &rows {
            let scope = Scope {
                tenant: r.try_get(0)?,
                plugin: r.try_get(1)?,
            };
            let n: i64 = r.try_get(2)?;
            sqlx::query(
                "DELETE FROM kv WHERE tenant_id = $1 AND plugin_id = $2 AND key >= $3 AND key < $4",
            )
            .bind(&scope.tenant)
            .bind(&scope.plugin)
            .bind(prefix)
            .bind(&upper)
            .execute(&mut **tx)
            .await?;
            adjust_usage(tx, &scope, -n).await?;
            total += n as u64;
        }
        Ok(total)
    })
}

/// A counter is the decimal ASCII form of an i64 (so it is also a JSON number).
pub fn parse_counter(bytes: &[u8]) -> Option<i64> {
    std::str::from_utf8(bytes).ok()?.trim().parse().ok()
}

async fn adjust_usage(tx: &mut Tx, scope: &Scope, delta: i64) -> Result<()> {
    sqlx::query(
        "INSERT INTO kv_usage (tenant_id, plugin_id, keys) VALUES ($1, $2, $3) \
         ON CONFLICT (tenant_id, plugin_id) DO UPDATE SET keys = kv_usage.keys + $3",
    )
    .bind(&scope.tenant)
    .bind(&scope.plugin)
    .bind(delta)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn successor_bounds_every_key_with_the_prefix() {
        assert_eq!(prefix_successor(""), None);
        assert_eq!(prefix_successor("a").as_deref(), Some("b"));
        assert_eq!(prefix_successor("vote/").as_deref(), Some("vote0"));
        assert_eq!(prefix_successor("投票").as_deref(), Some("投祩"));
        assert_eq!(prefix_successor("a\u{D7FF}").as_deref(), Some("a\u{E000}"));
        assert_eq!(prefix_successor("a\u{10FFFF}").as_deref(), Some("b"));
        assert_eq!(prefix_successor("\u{10FFFF}"), None);
        for key in ["vote/", "vote/a", "vote/\u{10FFFF}\u{10FFFF}"] {
            assert!(key < prefix_successor("vote/").unwrap().as_str());
        }
    }

    #[test]
    fn counters_are_decimal() {
        assert_eq!(parse_counter(b"42"), Some(42));
        assert_eq!(parse_counter(b"-7"), Some(-7));
        assert_eq!(parse_counter(b"x"), None);
        assert_eq!(parse_counter(&[0xff]), None);
    }
}
