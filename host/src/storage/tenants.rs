//! The tenant tree: county → township → community/village → grid.

use serde::{Deserialize, Serialize};
use sqlx::Row;
use utoipa::ToSchema;

use super::{Db, Result, StorageError, now_ms};

/// The level of a tenant in the tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TenantKind {
    /// 县/区
    County,
    /// 乡镇/街道
    Township,
    /// 社区
    Community,
    /// 村
    Village,
    /// 网格
    Grid,
    /// 楼栋 (optional, under a community, village or grid)
    Building,
    /// 户 (optional, under a building, community, village or grid)
    Household,
}

impl TenantKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TenantKind::County => "county",
            TenantKind::Township => "township",
            TenantKind::Community => "community",
            TenantKind::Village => "village",
            TenantKind::Grid => "grid",
            TenantKind::Building => "building",
            TenantKind::Household => "household",
        }
    }

    pub fn parse(s: &str) -> Option<TenantKind> {
        Some(match s {
            "county" => TenantKind::County,
            "township" => TenantKind::Township,
            "community" => TenantKind::Community,
            "village" => TenantKind::Village,
            "grid" => TenantKind::Grid,
            "building" => TenantKind::Building,
            "household" => TenantKind::Household,
            _ => return None,
        })
    }

    /// Kinds allowed as this kind's parent (`None` in the list: a root).
    fn allowed_parents(self) -> &'static [Option<TenantKind>] {
        match self {
            TenantKind::County => &[None],
            TenantKind::Township => &[Some(TenantKind::County)],
            TenantKind::Community | TenantKind::Village => &[Some(TenantKind::Township)],
            TenantKind::Grid => &[Some(TenantKind::Community), Some(TenantKind::Village)],
            TenantKind::Building => &[
                Some(TenantKind::Community),
                Some(TenantKind::Village),
                Some(TenantKind::Grid),
            ],
            TenantKind::Household => &[
                Some(TenantKind::Community),
                Some(TenantKind::Village),
                Some(TenantKind::Grid),
                Some(TenantKind::Building),
            ],
        }
    }
}

/// A node of the tenant tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Tenant {
    /// Lower-case id used in URLs, `[a-z0-9][a-z0-9-]{0,62}`.
    pub id: String,
    pub parent_id: Option<String>,
    pub kind: TenantKind,
    pub name_zh: String,
    pub name_en: String,
    /// Milliseconds since the Unix epoch.
    pub created_at: i64,
}

/// Whether `id` is a valid tenant or plugin id: `[a-z0-9][a-z0-9-]{0,62}`.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 63
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !id.starts_with('-')
}

/// Create a tenant. Errors: `Invalid` for a bad id, name or parent kind, `NotFound` for a
/// missing parent, `Conflict` if the id is taken.
pub async fn create(
    db: &Db,
    id: &str,
    parent_id: Option<&str>,
    kind: TenantKind,
    name_zh: &str,
    name_en: &str,
) -> Result<Tenant> {
    if !valid_id(id) {
        return Err(StorageError::Invalid(format!(
            "租户标识须为小写字母、数字和连字符，最长 63 / tenant id must match [a-z0-9][a-z0-9-]{{0,62}}: {id:?}"
        )));
    }
    for (field, name) in [("name_zh", name_zh), ("name_en", name_en)] {
        if name.trim().is_empty() || name.chars().count() > 100 {
            return Err(StorageError::Invalid(format!(
                "{field} 须为 1–100 个字符 / {field} must be 1–100 characters"
            )));
        }
    }
    let created_at = now_ms();
    super::write_tx!(db, |tx| {
        let taken = sqlx::query("SELECT 1 FROM tenants WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut **tx)
            .await?;
        if taken.is_some() {
            return Err(StorageError::Conflict(format!(
                "租户已存在 / tenant already exists: {id}"
            )));
        }
        let parent_kind = match parent_id {
            None => None,
            Some(p) => {
                let row = sqlx::query("SELECT kind FROM tenants WHERE id = $1")
                    .bind(p)
                    .fetch_optional(&mut **tx)
                    .await?
                    .ok_or_else(|| {
                        StorageError::NotFound(format!(
                            "上级租户不存在 / parent tenant not found: {p}"
                        ))
                    })?;
                let k: String = row.try_get(0)?;
                TenantKind::parse(&k)
            }
        };
        if !kind.allowed_parents().contains(&parent_kind) {
            return Err(StorageError::Invalid(format!(
                "{} 不能挂在 {} 之下 / a {} cannot sit under {}",
                kind.as_str(),
                parent_kind.map_or("根 (root)", TenantKind::as_str),
                kind.as_str(),
                parent_kind.map_or("the root", TenantKind::as_str),
            )));
        }
        sqlx::query(
            "INSERT INTO tenants (id, parent_id, kind, name_zh, name_en, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(id)
        .bind(parent_id)
        .bind(kind.as_str())
        .bind(name_zh)
        .bind(name_en)
        .bind(created_at)
        .execute(&mut **tx)
        .await?;
        Ok(())
    })?;
    Ok(Tenant {
        id: id.to_owned(),
        parent_id: parent_id.map(str::to_owned),
        kind,
        name_zh: name_zh.to_owned(),
        name_en: name_en.to_owned(),
        created_at,
    })
}

fn from_row(row: &sqlx::any::AnyRow) -> Result<Tenant> {
    let kind: String = row.try_get("kind")?;
    Ok(Tenant {
        id: row.try_get("id")?,
        parent_id: row.try_get("parent_id")?,
        kind: TenantKind::parse(&kind)
            .ok_or_else(|| StorageError::Invalid(format!("stored tenant kind {kind:?}")))?,
        name_zh: row.try_get("name_zh")?,
        name_en: row.try_get("name_en")?,
        created_at: row.try_get("created_at")?,
    })
}

pub async fn get(db: &Db, id: &str) -> Result<Option<Tenant>> {
    let row = sqlx::query(
        "SELECT id, parent_id, kind, name_zh, name_en, created_at FROM tenants WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(db.pool())
    .await?;
    row.as_ref().map(from_row).transpose()
}

/// Every tenant in tree order: each parent before its children, siblings by id.
pub async fn list(db: &Db) -> Result<Vec<Tenant>> {
    let rows = sqlx::query(
        "SELECT id, parent_id, kind, name_zh, name_en, created_at FROM tenants ORDER BY id",
    )
    .fetch_all(db.pool())
    .await?;
    let all = rows.iter().map(from_row).collect::<Result<Vec<_>>>()?;
    Ok(tree_order(all))
}

fn tree_order(all: Vec<Tenant>) -> Vec<Tenant> {
    use std::collections::HashMap;
    let mut children: HashMap<Option<String>, Vec<Tenant>> = HashMap::new();
    for t in all {
        children.entry(t.parent_id.clone()).or_default().push(t);
    }
    let mut out = Vec::new();
    let mut stack: Vec<Tenant> = children.remove(&None).unwrap_or_default();
    stack.reverse();
    while let Some(t) = stack.pop() {
        if let Some(mut kids) = children.remove(&Some(t.id.clone())) {
            kids.reverse();
            stack.extend(kids);
        }
        out.push(t);
    }
    out
}

/// The path from the root down to `id` (inclusive); empty if `id` does not exist.
pub async fn path(db: &Db, id: &str) -> Result<Vec<String>> {
    Ok(path_tenants(db, id)
        .await?
        .into_iter()
        .map(|t| t.id)
        .collect())
}

/// [`path`] with each tenant's record.
pub async fn path_tenants(db: &Db, id: &str) -> Result<Vec<Tenant>> {
    let rows = sqlx::query(
        "WITH RECURSIVE up(id, parent_id, depth) AS ( \
             SELECT id, parent_id, 0 FROM tenants WHERE id = $1 \
             UNION ALL \
             SELECT t.id, t.parent_id, up.depth + 1 FROM tenants t JOIN up ON t.id = up.parent_id \
             WHERE up.depth < 32) \
         SELECT t.id, t.parent_id, t.kind, t.name_zh, t.name_en, t.created_at \
         FROM up JOIN tenants t ON t.id = up.id ORDER BY up.depth DESC",
    )
    .bind(id)
    .fetch_all(db.pool())
    .await?;
    rows.iter().map(from_row).collect()
}

/// `id` and every tenant below it.
pub async fn subtree(db: &Db, id: &str) -> Result<Vec<String>> {
    let rows = sqlx::query(
        "WITH RECURSIVE down(id, depth) AS ( \
             SELECT id, 0 FROM tenants WHERE id = $1 \
             UNION ALL \
             SELECT t.id, down.depth + 1 FROM tenants t JOIN down ON t.parent_id = down.id \
             WHERE down.depth < 32) \
         SELECT id FROM down ORDER BY id",
    )
    .bind(id)
    .fetch_all(db.pool())
    .await?;
    rows.iter().map(|r| Ok(r.try_get(0)?)).collect()
}

pub async fn count(db: &Db) -> Result<i64> {
    let row = sqlx::query("SELECT COUNT(*) FROM tenants")
        .fetch_one(db.pool())
        .await?;
    Ok(row.try_get(0)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        assert!(valid_id("dongcun"));
        assert!(valid_id("a-1"));
        assert!(!valid_id(""));
        assert!(!valid_id("-a"));
        assert!(!valid_id("A"));
        assert!(!valid_id("a/b"));
        assert!(!valid_id("../x"));
        assert!(!valid_id(&"a".repeat(64)));
    }
}
