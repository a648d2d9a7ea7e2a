//! The audit log: append-only and hash-chained. Every record carries the hash of the record
//! before it, and its own hash covers its fields and that link, so editing or deleting a
//! record breaks the chain from that point on; [`verify`] finds the first break.

use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::Row;
use utoipa::ToSchema;

use super::{Db, Result, now_ms};

/// The hash the first record links to.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What happened, as the caller describes it.
#[derive(Debug, Clone, Default)]
pub struct Event<'a> {
    /// Who acted: `admin-api`, `cli`, `system`, later a person id.
    pub actor: &'a str,
    pub plugin: Option<&'a str>,
    pub tenant: Option<&'a str>,
    /// e.g. `tenant.create`, `plugin.install`, `plugin.suspend`.
    pub action: &'a str,
    /// Whose data or which object the action concerned.
    pub subject: Option<&'a str>,
    /// `ok`, or why it failed.
    pub outcome: &'a str,
    /// Extra facts as JSON.
    pub detail: serde_json::Value,
}

/// A stored audit record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Record {
    pub seq: i64,
    /// Milliseconds since the Unix epoch.
    pub at: i64,
    pub actor: String,
    pub plugin: Option<String>,
    pub tenant: Option<String>,
    pub action: String,
    pub subject: Option<String>,
    pub outcome: String,
    /// JSON text.
    pub detail: String,
    pub prev_hash: String,
    pub hash: String,
}

impl Record {
    /// The hash of this record's fields and its link to the previous record.
    pub fn compute_hash(&self) -> String {
        let mut h = Sha256::new();
        // Length-prefixed fields: no two different records serialise the same way.
        let mut field = |s: &str| {
            h.update((s.len() as u64).to_le_bytes());
            h.update(s.as_bytes());
        };
        field(&self.seq.to_string());
        field(&self.at.to_string());
        field(&self.actor);
        field(self.plugin.as_deref().unwrap_or("\u{0}none"));
        field(self.tenant.as_deref().unwrap_or("\u{0}none"));
        field(&self.action);
        field(self.subject.as_deref().unwrap_or("\u{0}none"));
        field(&self.outcome);
        field(&self.detail);
        field(&self.prev_hash);
        hex::encode(h.finalize())
    }
}

const COLUMNS: &str =
    "seq, at, actor, plugin_id, tenant_id, action, subject, outcome, detail, prev_hash, hash";

fn from_row(row: &sqlx::any::AnyRow) -> Result<Record> {
    Ok(Record {
        seq: row.try_get("seq")?,
        at: row.try_get("at")?,
        actor: row.try_get("actor")?,
        plugin: row.try_get("plugin_id")?,
        tenant: row.try_get("tenant_id")?,
        action: row.try_get("action")?,
        subject: row.try_get("subject")?,
        outcome: row.try_get("outcome")?,
        detail: row.try_get("detail")?,
        prev_hash: row.try_get("prev_hash")?,
        hash: row.try_get("hash")?,
    })
}

/// Append a record at the end of the chain.
pub async fn append(db: &Db, event: &Event<'_>) -> Result<Record> {
    let at = now_ms();
    let detail = event.detail.to_string();
    super::write_tx!(db, |tx| {
        let last = sqlx::query("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&mut **tx)
            .await?;
        let (seq, prev_hash) = match last {
            Some(row) => (row.try_get::<i64, _>(0)? + 1, row.try_get::<String, _>(1)?),
            None => (1, GENESIS.to_owned()),
        };
        let mut record = Record {
            seq,
            at,
            actor: event.actor.to_owned(),
            plugin: event.plugin.map(str::to_owned),
            tenant: event.tenant.map(str::to_owned),
            action: event.action.to_owned(),
            subject: event.subject.map(str::to_owned),
            outcome: event.outcome.to_owned(),
            detail: detail.clone(),
            prev_hash,
            hash: String::new(),
        };
        record.hash = record.compute_hash();
        let sql = format!(
            "INSERT INTO audit_log ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
        );
        sqlx::query(&sql)
            .bind(record.seq)
            .bind(record.at)
            .bind(&record.actor)
            .bind(record.plugin.as_deref())
            .bind(record.tenant.as_deref())
            .bind(&record.action)
            .bind(record.subject.as_deref())
            .bind(&record.outcome)
            .bind(&record.detail)
            .bind(&record.prev_hash)
            .bind(&record.hash)
            .execute(&mut **tx)
            .await?;
        Ok(record)
    })
}

/// Records after `after_seq`, oldest first, at most `limit`.
pub async fn list(db: &Db, after_seq: i64, limit: u32) -> Result<Vec<Record>> {
    let sql = format!("SELECT {COLUMNS} FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2");
    let rows = sqlx::query(&sql)
        .bind(after_seq)
        .bind(i64::from(limit))
        .fetch_all(db.pool())
        .await?;
    rows.iter().map(from_row).collect()
}

/// The result of checking the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every record links to the one before and hashes to what it claims.
    Intact { records: u64 },
    /// The first broken record and what is wrong with it.
    Broken { seq: i64, reason: String },
}

/// Walk the whole chain from the first record.
pub async fn verify(db: &Db) -> Result<Verdict> {
    let mut expected_seq = 1i64;
    let mut prev_hash = GENESIS.to_owned();
    loop {
        let page = list(db, expected_seq - 1, 1_000).await?;
        if page.is_empty() {
            return Ok(Verdict::Intact {
                records: (expected_seq - 1) as u64,
            });
        }
        for r in page {
            if r.seq != expected_seq {
                return Ok(Verdict::Broken {
                    seq: expected_seq,
                    reason: format!("record {expected_seq} is missing (next is {})", r.seq),
                });
            }
            if r.prev_hash != prev_hash {
                return Ok(Verdict::Broken {
                    seq: r.seq,
                    reason: "does not link to the previous record".into(),
                });
            }
            if r.compute_hash() != r.hash {
                return Ok(Verdict::Broken {
                    seq: r.seq,
                    reason: "its contents do not match its hash (edited)".into(),
                });
            }
            prev_hash = r.hash;
            expected_seq += 1;
        }
    }
}
