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
    /// Who acted: a person id, `admin` (the bootstrap token or the local CLI), `system`, or
    /// `anonymous`.
    pub actor: &'a str,
    /// In assisted mode: the staff member who acted for `actor`.
    pub assistant: Option<&'a str>,
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
    /// In assisted mode: the staff member who acted for `actor`.
    pub assistant: Option<String>,
    pub plugin: Option<String>,
    pub tenant: Option<String>,
    pub action: String,
    pub subject: Option<String>,
    pub outcome: String,
    /// JSON text as stored and hashed; served as the JSON value it holds.
    #[serde(serialize_with = "detail_as_json")]
    #[schema(value_type = Object)]
    pub detail: String,
    pub prev_hash: String,
    pub hash: String,
}

/// Serialises stored detail text as the JSON it holds, or as a string if it is not JSON.
fn detail_as_json<S: serde::Serializer>(detail: &str, s: S) -> Result<S::Ok, S::Error> {
    match serde_json::from_str::<serde_json::Value>(detail) {
        Ok(v) => serde::Serialize::serialize(&v, s),
        Err(_) => s.serialize_str(detail),
    }
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
        // Added with assisted mode; absent from (and so not changing) earlier records' hashes.
        if let Some(a) = &self.assistant {
            field("assistant");
            field(a);
        }
        hex::encode(h.finalize())
    }
}

const COLUMNS: &str = "seq, at, actor, plugin_id, tenant_id, action, subject, outcome, detail, prev_hash, hash, assistant";

fn from_row(row: &sqlx::any::AnyRow) -> Result<Record> {
    Ok(Record {
        seq: row.try_get("seq")?,
        at: row.try_get("at")?,
        actor: row.try_get("actor")?,
        assistant: row.try_get("assistant")?,
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
    // The transaction takes the chain's lock as it begins.
    super::write_tx!(db, lock = super::WriteLock::AuditChain, |tx| {
        append_locked(tx, event, at).await
    })
}

/// Append a record inside the caller's write transaction, so the record and what it records
/// commit together.
pub(crate) async fn append_in(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    event: &Event<'_>,
    at: i64,
) -> Result<Record> {
    // Appenders queue for the chain's head rather than race for it (see `WriteLock`).
    super::lock_in(tx, super::WriteLock::AuditChain).await?;
    append_locked(tx, event, at).await
}

/// [`append_in`] in a transaction that already holds [`super::WriteLock::AuditChain`].
async fn append_locked(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    event: &Event<'_>,
    at: i64,
) -> Result<Record> {
    let last = sqlx::query("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
        .fetch_optional(&mut **tx)
        .await?;
    let last = match last {
        Some(row) => Some(row),
        // Everything kept was pruned: carry on from the retention anchor.
        None => {
            sqlx::query("SELECT seq, hash FROM audit_anchor WHERE id = 1")
                .fetch_optional(&mut **tx)
                .await?
        }
    };
    let (seq, prev_hash) = match last {
        Some(row) => (row.try_get::<i64, _>(0)? + 1, row.try_get::<String, _>(1)?),
        None => (1, GENESIS.to_owned()),
    };
    let mut record = Record {
        seq,
        at,
        actor: event.actor.to_owned(),
        assistant: event.assistant.map(str::to_owned),
        plugin: event.plugin.map(str::to_owned),
        tenant: event.tenant.map(str::to_owned),
        action: event.action.to_owned(),
        subject: event.subject.map(str::to_owned),
        outcome: event.outcome.to_owned(),
        detail: event.detail.to_string(),
        prev_hash,
        hash: String::new(),
    };
    record.hash = record.compute_hash();
    let sql = format!(
        "INSERT INTO audit_log ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
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
        .bind(record.assistant.as_deref())
        .execute(&mut **tx)
        .await?;
    Ok(record)
}

/// Which records to list: every filter that is set must match.
#[derive(Debug, Clone, Default)]
pub struct Query {
    /// Records after this sequence number.
    pub after: i64,
    pub limit: u32,
    /// Acted by this person (as `actor` or as `assistant`).
    pub person: Option<String>,
    /// Concerned this person's data (`subject`).
    pub subject: Option<String>,
    pub plugin: Option<String>,
    /// At one of these tenants.
    pub tenants: Option<Vec<String>>,
    /// Actions starting with this (e.g. `identity.`).
    pub action_prefix: Option<String>,
    /// Records before this sequence number (paging back from the newest).
    pub before: Option<i64>,
    /// Newest first instead of oldest first.
    pub newest_first: bool,
}

/// Records after `after_seq`, oldest first, at most `limit`.
pub async fn list(db: &Db, after_seq: i64, limit: u32) -> Result<Vec<Record>> {
    query(
        db,
        &Query {
            after: after_seq,
            limit,
            ..Query::default()
        },
    )
    .await
}

/// Records matching `q`, oldest first.
pub async fn query(db: &Db, q: &Query) -> Result<Vec<Record>> {
    let mut sql = format!("SELECT {COLUMNS} FROM audit_log WHERE seq > $1");
    let mut binds: Vec<String> = Vec::new();
    let mark = |v: &str, binds: &mut Vec<String>| {
        binds.push(v.to_owned());
        format!("${}", binds.len() + 1)
    };
    if let Some(p) = &q.person {
        let m1 = mark(p, &mut binds);
        let m2 = mark(p, &mut binds);
        sql.push_str(&format!(" AND (actor = {m1} OR assistant = {m2})"));
    }
    if let Some(s) = &q.subject {
        sql.push_str(&format!(" AND subject = {}", mark(s, &mut binds)));
    }
    if let Some(p) = &q.plugin {
        sql.push_str(&format!(" AND plugin_id = {}", mark(p, &mut binds)));
    }
    if let Some(ts) = &q.tenants {
        if ts.is_empty() {
            return Ok(Vec::new());
        }
        let marks: Vec<String> = ts.iter().map(|t| mark(t, &mut binds)).collect();
        sql.push_str(&format!(" AND tenant_id IN ({})", marks.join(", ")));
    }
    if let Some(a) = &q.action_prefix {
        // Compared with substr so `_` and `%` in the prefix are not patterns.
        let m = mark(a, &mut binds);
        sql.push_str(&format!(
            " AND substr(action, 1, {}) = {m}",
            a.chars().count()
        ));
    }
    if let Some(before) = q.before {
        // An integer, so written into the statement (a text bind would not compare with
        // Postgres's BIGINT).
        sql.push_str(&format!(" AND seq < {before}"));
    }
    let order = if q.newest_first { "DESC" } else { "ASC" };
    sql.push_str(&format!(" ORDER BY seq {order} LIMIT ${}", binds.len() + 2));
    let mut query = sqlx::query(&sql).bind(q.after);
    for b in &binds {
        query = query.bind(b);
    }
    let rows = query
        .bind(i64::from(q.limit.max(1)))
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

/// Where the kept chain starts: after the last pruned record (seq, hash), or the genesis.
async fn anchor(db: &Db) -> Result<(i64, String)> {
    let row = sqlx::query("SELECT seq, hash FROM audit_anchor WHERE id = 1")
        .fetch_optional(db.pool())
        .await?;
    Ok(match row {
        Some(r) => (r.try_get(0)?, r.try_get(1)?),
        None => (0, GENESIS.to_owned()),
    })
}

/// Walk the whole kept chain, from the first record (or the last pruned one's successor).
/// An anchor moved by hand is caught too: the prune that set it is itself a record in the
/// chain, naming the seq and hash it pruned through.
pub async fn verify(db: &Db) -> Result<Verdict> {
    let (anchor_seq, anchor_hash) = anchor(db).await?;
    let mut expected_seq = anchor_seq + 1;
    let mut prev_hash = anchor_hash.clone();
    let mut prune_recorded = anchor_seq == 0;
    loop {
        let page = list(db, expected_seq - 1, 1_000).await?;
        if page.is_empty() {
            if !prune_recorded {
                return Ok(Verdict::Broken {
                    seq: anchor_seq,
                    reason: "the retention anchor is not backed by an audit.prune record".into(),
                });
            }
            return Ok(Verdict::Intact {
                records: (expected_seq - 1 - anchor_seq) as u64,
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
            if r.action == "audit.prune"
                && serde_json::from_str::<serde_json::Value>(&r.detail).is_ok_and(|d| {
                    d["through_seq"] == anchor_seq && d["through_hash"] == anchor_hash.as_str()
                })
            {
                prune_recorded = true;
            }
            prev_hash = r.hash;
            expected_seq += 1;
        }
    }
}

/// Delete records older than `before_ms` (retention), keeping the chain verifiable: the
/// anchor remembers the last deleted record, and an `audit.prune` record appended in the same
/// transaction names it. Returns how many were deleted.
pub async fn prune(db: &Db, before_ms: i64, actor: &str) -> Result<u64> {
    let now = now_ms();
    super::write_tx!(db, |tx| {
        let last =
            sqlx::query("SELECT seq, hash FROM audit_log WHERE at < $1 ORDER BY seq DESC LIMIT 1")
                .bind(before_ms)
                .fetch_optional(&mut **tx)
                .await?;
        let Some(last) = last else {
            return Ok(0);
        };
        let through_seq: i64 = last.try_get(0)?;
        let through_hash: String = last.try_get(1)?;
        let deleted = sqlx::query("DELETE FROM audit_log WHERE seq <= $1")
            .bind(through_seq)
            .execute(&mut **tx)
            .await?
            .rows_affected();
        sqlx::query("DELETE FROM audit_anchor")
            .execute(&mut **tx)
            .await?;
        sqlx::query("INSERT INTO audit_anchor (id, seq, hash) VALUES (1, $1, $2)")
            .bind(through_seq)
            .bind(&through_hash)
            .execute(&mut **tx)
            .await?;
        let event = Event {
            actor,
            action: "audit.prune",
            outcome: "ok",
            detail: serde_json::json!({
                "through_seq": through_seq,
                "through_hash": through_hash,
                "deleted": deleted,
                "before": before_ms,
            }),
            ..Event::default()
        };
        append_in(tx, &event, now).await?;
        Ok(deleted)
    })
}
