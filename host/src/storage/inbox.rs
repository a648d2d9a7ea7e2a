//! The host inbox: notifications to people, shown in the app shell.

use serde::Serialize;
use sqlx::Row;
use utoipa::ToSchema;

use super::{Db, Result, now_ms};

/// A notification in a person's inbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Message {
    pub id: String,
    pub tenant: Option<String>,
    /// `host` for the platform's own notices, else the plugin id.
    pub source: String,
    pub title_zh: String,
    pub title_en: String,
    pub body_zh: String,
    pub body_en: String,
    pub created_at: i64,
    pub read_at: Option<i64>,
    /// A path in the app shell to open (plugins' notifications).
    pub link: Option<String>,
    /// `normal`, `high` or `emergency` (plugins' notifications).
    pub urgency: Option<String>,
}

/// What to put in an inbox.
#[derive(Debug, Clone, Default)]
pub struct NewMessage<'a> {
    pub person: &'a str,
    pub tenant: Option<&'a str>,
    pub source: &'a str,
    pub title_zh: &'a str,
    pub title_en: &'a str,
    pub body_zh: &'a str,
    pub body_en: &'a str,
}

pub async fn push(db: &Db, m: &NewMessage<'_>) -> Result<String> {
    let id = uuid::Uuid::new_v4().simple().to_string();
    sqlx::query(
        "INSERT INTO inbox (id, person_id, tenant_id, source, title_zh, title_en, body_zh, body_en, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(&id)
    .bind(m.person)
    .bind(m.tenant)
    .bind(m.source)
    .bind(m.title_zh)
    .bind(m.title_en)
    .bind(m.body_zh)
    .bind(m.body_en)
    .bind(now_ms())
    .execute(db.pool())
    .await?;
    Ok(id)
}

/// A person's messages, newest first.
pub async fn list(db: &Db, person: &str, limit: u32) -> Result<Vec<Message>> {
    let rows = sqlx::query(
        "SELECT id, tenant_id, source, title_zh, title_en, body_zh, body_en, created_at, read_at, \
         link, urgency FROM inbox WHERE person_id = $1 ORDER BY created_at DESC, id LIMIT $2",
    )
    .bind(person)
    .bind(i64::from(limit))
    .fetch_all(db.pool())
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Message {
                id: r.try_get(0)?,
                tenant: r.try_get(1)?,
                source: r.try_get(2)?,
                title_zh: r.try_get(3)?,
                title_en: r.try_get(4)?,
                body_zh: r.try_get(5)?,
                body_en: r.try_get(6)?,
                created_at: r.try_get(7)?,
                read_at: r.try_get(8)?,
                link: r.try_get(9)?,
                urgency: r.try_get(10)?,
            })
        })
        .collect()
}

/// Mark a message of `person` read; whether it was theirs.
pub async fn mark_read(db: &Db, person: &str, id: &str) -> Result<bool> {
    let n = sqlx::query(
        "UPDATE inbox SET read_at = COALESCE(read_at, $1) WHERE id = $2 AND person_id = $3",
    )
    .bind(now_ms())
    .bind(id)
    .bind(person)
    .execute(db.pool())
    .await?
    .rows_affected();
    Ok(n > 0)
}
