//! The durable outbox: entries written when a plugin asks the host to send something, and
//! delivered at least once by a worker; with the idempotency key, asking twice adds nothing,
//! and deliveries are idempotent too (one inbox row per entry and person).

use serde::Serialize;
use sqlx::Row;

use super::{Db, Result, now_ms};

/// An entry waiting to be (or already) delivered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    pub id: String,
    pub tenant: String,
    pub plugin: String,
    /// `notify`, `tick` or `event`.
    pub kind: String,
    pub idempotency_key: String,
    /// JSON, by kind.
    pub payload: String,
    pub created_at: i64,
    pub attempts: i64,
    pub delivered_at: Option<i64>,
    pub last_error: Option<String>,
    /// The claim that holds it, while one does.
    #[serde(skip)]
    pub lease_token: Option<String>,
}

const COLUMNS: &str = "id, tenant_id, plugin_id, kind, idempotency_key, payload, created_at, \
                       attempts, delivered_at, last_error, lease_token";

fn from_row(r: &sqlx::any::AnyRow) -> Result<Entry> {
    Ok(Entry {
        id: r.try_get("id")?,
        tenant: r.try_get("tenant_id")?,
        plugin: r.try_get("plugin_id")?,
        kind: r.try_get("kind")?,
        idempotency_key: r.try_get("idempotency_key")?,
        payload: r.try_get("payload")?,
        created_at: r.try_get("created_at")?,
        attempts: r.try_get("attempts")?,
        delivered_at: r.try_get("delivered_at")?,
        last_error: r.try_get("last_error")?,
        lease_token: r.try_get("lease_token")?,
    })
}

const ENQUEUE: &str = "INSERT INTO outbox (id, tenant_id, plugin_id, kind, idempotency_key, \
     payload, created_at, attempts, next_attempt_at, delivered_at, last_error) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, 0, $7, NULL, NULL) \
     ON CONFLICT (tenant_id, plugin_id, kind, idempotency_key) DO NOTHING";

fn enqueue_query<'q>(
    tenant: &'q str,
    plugin: &'q str,
    kind: &'q str,
    key: &'q str,
    payload: &'q str,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    sqlx::query(ENQUEUE)
        .bind(uuid::Uuid::new_v4().simple().to_string())
        .bind(tenant)
        .bind(plugin)
        .bind(kind)
        .bind(key)
        .bind(payload)
        .bind(now_ms())
}

/// Add an entry unless (tenant, plugin, kind, key) is already there. Whether it was added.
pub async fn enqueue(
    db: &Db,
    tenant: &str,
    plugin: &str,
    kind: &str,
    key: &str,
    payload: &str,
) -> Result<bool> {
    let r = enqueue_query(tenant, plugin, kind, key, payload)
        .execute(db.pool())
        .await?;
    Ok(r.rows_affected() == 1)
}

/// Entries not yet delivered of one installation (the pending quota).
pub async fn pending(db: &Db, tenant: &str, plugin: &str) -> Result<i64> {
    let row = sqlx::query(
        "SELECT COUNT(*) FROM outbox WHERE tenant_id = $1 AND plugin_id = $2 AND delivered_at IS NULL",
    )
    .bind(tenant)
    .bind(plugin)
    .fetch_one(db.pool())
    .await?;
    Ok(row.try_get(0)?)
}

/// How long a claimed entry is the claimer's alone. The claimer renews the lease every third
/// of it while the delivery runs ([`renew`]), so a long delivery keeps it; a replica that dies
/// holding a lease leaves the entry due again within this.
pub const LEASE_MS: i64 = 15_000;

const CLAIM_FILTER: &str =
    "delivered_at IS NULL AND next_attempt_at <= $3 AND (lease_until IS NULL OR lease_until <= $3)";

/// Claim up to `limit` due entries (undelivered, due by `now`, not leased to anyone) for
/// [`LEASE_MS`], oldest first. One statement: with several replicas (or workers) each entry
/// goes to one of them; on Postgres rows another claimer holds are skipped, not waited for.
pub async fn claim_due(db: &Db, now: i64, limit: u32) -> Result<Vec<Entry>> {
    let skip_locked = match db.backend() {
        super::Backend::Postgres => " FOR UPDATE SKIP LOCKED",
        super::Backend::Sqlite => "",
    };
    let sql = format!(
        "UPDATE outbox SET lease_until = $1, lease_token = $2 WHERE id IN \
         (SELECT id FROM outbox WHERE {CLAIM_FILTER} ORDER BY created_at, id LIMIT $4{skip_locked}) \
         AND {CLAIM_FILTER} RETURNING {COLUMNS}"
    );
    let rows = sqlx::query(&sql)
        .bind(now + LEASE_MS)
        .bind(uuid::Uuid::new_v4().simple().to_string())
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(db.pool())
        .await?;
    sorted(rows.iter().map(from_row).collect::<Result<Vec<_>>>()?)
}

/// Claim these entries, if they are due and not leased (the device path delivers what it
/// just queued at once; the worker does the rest).
pub async fn claim_ids(db: &Db, ids: &[String], now: i64) -> Result<Vec<Entry>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let marks: Vec<_> = (0..ids.len()).map(|i| format!("${}", i + 4)).collect();
    let sql = format!(
        "UPDATE outbox SET lease_until = $1, lease_token = $2 WHERE id IN ({}) \
         AND {CLAIM_FILTER} RETURNING {COLUMNS}",
        marks.join(", ")
    );
    let mut q = sqlx::query(&sql)
        .bind(now + LEASE_MS)
        .bind(uuid::Uuid::new_v4().simple().to_string())
        .bind(now);
    for id in ids {
        q = q.bind(id);
    }
    let rows = q.fetch_all(db.pool()).await?;
    sorted(rows.iter().map(from_row).collect::<Result<Vec<_>>>()?)
}

/// Give leases up (entries whose delivery failed and were not rescheduled): due again now,
/// if the claim still holds them.
pub async fn release(db: &Db, leases: &[(String, String)]) -> Result<()> {
    for (id, token) in leases {
        sqlx::query(
            "UPDATE outbox SET lease_until = NULL, lease_token = NULL \
             WHERE id = $1 AND delivered_at IS NULL AND lease_token = $2",
        )
        .bind(id)
        .bind(token)
        .execute(db.pool())
        .await?;
    }
    Ok(())
}

/// Extend the lease `entry` holds (while its delivery runs). Whether it still held it.
pub async fn renew(db: &Db, entry: &Entry) -> Result<bool> {
    let r = sqlx::query(
        "UPDATE outbox SET lease_until = $3 WHERE id = $1 AND lease_token = $2 \
         AND delivered_at IS NULL",
    )
    .bind(&entry.id)
    .bind(entry.lease_token.as_deref())
    .bind(now_ms() + LEASE_MS)
    .execute(db.pool())
    .await?;
    Ok(r.rows_affected() == 1)
}

fn sorted(mut entries: Vec<Entry>) -> Result<Vec<Entry>> {
    entries.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
    Ok(entries)
}

/// Undelivered entries due by `now`, oldest first (whether leased or not).
pub async fn due(db: &Db, now: i64, limit: u32) -> Result<Vec<Entry>> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM outbox WHERE delivered_at IS NULL AND next_attempt_at <= $1 \
         ORDER BY created_at, id LIMIT $2"
    ))
    .bind(now)
    .bind(i64::from(limit))
    .fetch_all(db.pool())
    .await?;
    rows.iter().map(from_row).collect()
}

/// Whether a device message for this installation, queued since `since`, has a key starting
/// with `prefix` (which ends in `:`): a range of the unique index.
pub async fn telemetry_seen(
    db: &Db,
    tenant: &str,
    plugin: &str,
    prefix: &str,
    since: i64,
) -> Result<bool> {
    let upper = format!("{};", prefix.trim_end_matches(':'));
    let row = sqlx::query(
        "SELECT COUNT(*) FROM outbox WHERE tenant_id = $1 AND plugin_id = $2 \
         AND kind = 'telemetry' AND idempotency_key >= $3 AND idempotency_key < $4 \
         AND created_at >= $5",
    )
    .bind(tenant)
    .bind(plugin)
    .bind(prefix)
    .bind(&upper)
    .bind(since)
    .fetch_one(db.pool())
    .await?;
    Ok(row.try_get::<i64, _>(0)? > 0)
}

/// Delete entries delivered (or given up) before `before`: the outbox keeps what it sent
/// for a while (a device's message id is recognised as long as its entry is kept), not
/// for ever. How many were deleted.
pub async fn prune_delivered(db: &Db, before: i64) -> Result<u64> {
    let r = sqlx::query("DELETE FROM outbox WHERE delivered_at IS NOT NULL AND delivered_at < $1")
        .bind(before)
        .execute(db.pool())
        .await?;
    Ok(r.rows_affected())
}

/// One entry.
pub async fn get(db: &Db, id: &str) -> Result<Option<Entry>> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM outbox WHERE id = $1"))
        .bind(id)
        .fetch_optional(db.pool())
        .await?;
    row.as_ref().map(from_row).transpose()
}

/// Mark delivered (inside the delivering transaction).
pub(crate) async fn delivered_in(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    id: &str,
    at: i64,
) -> Result<()> {
    sqlx::query(
        "UPDATE outbox SET delivered_at = $2, attempts = attempts + 1, last_error = NULL, \
         lease_until = NULL, lease_token = NULL WHERE id = $1",
    )
    .bind(id)
    .bind(at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Mark delivered (events: after the handler returned).
pub async fn delivered(db: &Db, id: &str, at: i64) -> Result<()> {
    sqlx::query(
        "UPDATE outbox SET delivered_at = $2, attempts = attempts + 1, last_error = NULL, \
         lease_until = NULL, lease_token = NULL WHERE id = $1",
    )
    .bind(id)
    .bind(at)
    .execute(db.pool())
    .await?;
    Ok(())
}

/// Record a failed attempt of a claimed entry; try again at `next`. Nothing if the claim
/// no longer holds it (its lease ran out and another took it).
pub async fn failed(db: &Db, entry: &Entry, error: &str, next: i64) -> Result<()> {
    reschedule(db, entry, error, next, 1).await
}

/// Put a claimed entry off until `next` without counting an attempt: its installation is
/// suspended, and however long that lasts it must not use up the entry's retries.
pub async fn postpone(db: &Db, entry: &Entry, error: &str, next: i64) -> Result<()> {
    reschedule(db, entry, error, next, 0).await
}

async fn reschedule(db: &Db, entry: &Entry, error: &str, next: i64, attempts: i64) -> Result<()> {
    sqlx::query(
        "UPDATE outbox SET attempts = attempts + $4, last_error = $2, next_attempt_at = $3, \
         lease_until = NULL, lease_token = NULL \
         WHERE id = $1 AND delivered_at IS NULL AND (lease_token IS NULL OR lease_token = $5)",
    )
    .bind(&entry.id)
    .bind(error)
    .bind(next)
    .bind(attempts)
    .bind(entry.lease_token.as_deref().unwrap_or(""))
    .execute(db.pool())
    .await?;
    Ok(())
}

/// Make an installation's waiting entries due now (it was resumed).
pub async fn wake(db: &Db, tenant: &str, plugin: &str) -> Result<u64> {
    let now = now_ms();
    let done = sqlx::query(
        "UPDATE outbox SET next_attempt_at = $3 WHERE tenant_id = $1 AND plugin_id = $2 \
         AND delivered_at IS NULL AND next_attempt_at > $3",
    )
    .bind(tenant)
    .bind(plugin)
    .bind(now)
    .execute(db.pool())
    .await?;
    Ok(done.rows_affected())
}

/// A delivered notification in a person's inbox; nothing if this entry already reached them.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn inbox_in(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    entry: &Entry,
    person: &str,
    title: (&str, &str),
    body: (&str, &str),
    link: Option<&str>,
    urgency: &str,
    at: i64,
) -> Result<bool> {
    let r = sqlx::query(
        "INSERT INTO inbox (id, person_id, tenant_id, source, title_zh, title_en, body_zh, body_en, \
         created_at, read_at, outbox_id, link, urgency) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, NULL, $10, $11, $12) \
         ON CONFLICT (outbox_id, person_id) DO NOTHING",
    )
    .bind(uuid::Uuid::new_v4().simple().to_string())
    .bind(person)
    .bind(&entry.tenant)
    .bind(&entry.plugin)
    .bind(title.0)
    .bind(title.1)
    .bind(body.0)
    .bind(body.1)
    .bind(at)
    .bind(&entry.id)
    .bind(link)
    .bind(urgency)
    .execute(&mut **tx)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// People holding `role` at any of `tenants`.
pub async fn role_holders(db: &Db, tenants: &[String], role: &str) -> Result<Vec<String>> {
    if tenants.is_empty() {
        return Ok(Vec::new());
    }
    let marks: Vec<_> = (0..tenants.len()).map(|i| format!("${}", i + 2)).collect();
    let sql = format!(
        "SELECT DISTINCT r.person_id FROM role_assignments r JOIN people p ON p.id = r.person_id \
         WHERE p.status = 'active' AND r.role = $1 AND r.tenant_id IN ({}) ORDER BY r.person_id",
        marks.join(", ")
    );
    let mut q = sqlx::query(&sql).bind(role);
    for t in tenants {
        q = q.bind(t);
    }
    let rows = q.fetch_all(db.pool()).await?;
    rows.iter().map(|r| Ok(r.try_get(0)?)).collect()
}

/// [`enqueue`] inside a transaction, with the entry's id chosen by the caller. Whether it
/// was added (not already there under its key).
pub(crate) async fn enqueue_with_id_in(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    id: &str,
    tenant: &str,
    plugin: &str,
    kind: &str,
    key: &str,
    payload: &str,
) -> Result<bool> {
    let r = sqlx::query(ENQUEUE)
        .bind(id)
        .bind(tenant)
        .bind(plugin)
        .bind(kind)
        .bind(key)
        .bind(payload)
        .bind(now_ms())
        .execute(&mut **tx)
        .await?;
    Ok(r.rows_affected() == 1)
}

/// [`enqueue`] inside a transaction.
pub(crate) async fn enqueue_in(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    tenant: &str,
    plugin: &str,
    kind: &str,
    key: &str,
    payload: &str,
) -> Result<bool> {
    let r = enqueue_query(tenant, plugin, kind, key, payload)
        .execute(&mut **tx)
        .await?;
    Ok(r.rows_affected() == 1)
}

/// Give up on an entry after its last attempt: marked delivered, with why it was not.
pub async fn abandon(db: &Db, id: &str, error: &str) -> Result<()> {
    sqlx::query(
        "UPDATE outbox SET attempts = attempts + 1, delivered_at = $2, \
         last_error = $3, lease_until = NULL, lease_token = NULL WHERE id = $1",
    )
    .bind(id)
    .bind(now_ms())
    .bind(format!("abandoned: {error}"))
    .execute(db.pool())
    .await?;
    Ok(())
}

/// An entry a plugin call asked for, held by the call until it is written: with the call's
/// next data change, in that change's transaction, or when the call ends without trapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Staged {
    pub tenant: String,
    pub plugin: String,
    pub kind: String,
    pub key: String,
    pub payload: String,
}

/// Write staged entries inside a transaction (each once per key).
pub(crate) async fn write_staged_in(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    staged: &[Staged],
) -> Result<()> {
    for s in staged {
        enqueue_in(tx, &s.tenant, &s.plugin, &s.kind, &s.key, &s.payload).await?;
    }
    Ok(())
}

/// Write staged entries in their own transaction (a call that ended with entries left).
pub async fn write_staged(db: &Db, staged: &[Staged]) -> Result<()> {
    if staged.is_empty() {
        return Ok(());
    }
    super::write_tx!(db, |tx| { write_staged_in(tx, staged).await })
}
