//! The audit log: append-only and hash-chained. Every record carries the hash of the record
//! before it, and its own hash covers its fields and that link, so editing or deleting a
//! record breaks the chain from that point on; [`verify`] finds the first break.
//!
//! The hash is an HMAC-SHA256 under a key kept outside the database ([`AuditKey`], the
//! `audit.key` file): someone who can write the database but not read that file cannot
//! recompute the chain after an edit. Cutting records off the end leaves a chain that is
//! intact as far as it goes; signed checkpoints ([`Checkpoint`]) exported to a witness outside
//! the database catch that: a chain that ends before a checkpoint, or holds another hash at
//! its seq, is broken.

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::Row;
use utoipa::ToSchema;

use super::{Db, Result, StorageError, now_ms};

/// The secret the chain is keyed with, and from which record on.
#[derive(Clone)]
pub struct AuditKey {
    key: [u8; 32],
    /// Records from this seq on are keyed; earlier ones (written before the host had a key)
    /// keep their plain sha256, and the first keyed record seals them by its link.
    pub keyed_from_seq: i64,
}

impl std::fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "AuditKey {{ fingerprint: {}, keyed_from_seq: {} }}",
            self.fingerprint(),
            self.keyed_from_seq
        )
    }
}

/// The key file's contents.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    linli_audit_key: u32,
    /// 32 bytes, hex.
    key: String,
    keyed_from_seq: i64,
}

impl AuditKey {
    /// A new random key for records from `keyed_from_seq` on.
    pub fn generate(keyed_from_seq: i64) -> AuditKey {
        use rand::RngCore;
        let mut key = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut key);
        AuditKey {
            key,
            keyed_from_seq,
        }
    }

    /// A key given as 64 hex digits (`audit.key`).
    pub fn from_hex(hex_key: &str, keyed_from_seq: i64) -> std::result::Result<AuditKey, String> {
        let bytes = hex::decode(hex_key.trim()).map_err(|e| format!("audit key: {e}"))?;
        let key: [u8; 32] = bytes
            .try_into()
            .map_err(|_| "audit key: 32 bytes (64 hex digits) expected".to_owned())?;
        Ok(AuditKey {
            key,
            keyed_from_seq: keyed_from_seq.max(1),
        })
    }

    /// Read a key file, or create one (readable by its owner only) for records from
    /// `next_seq` on if there is none.
    pub fn load_or_create(
        path: &std::path::Path,
        next_seq: i64,
    ) -> std::result::Result<AuditKey, String> {
        use std::io::Write;
        let shown = path.display();
        match std::fs::read(path) {
            Ok(bytes) => {
                if bytes.len() > 4096 {
                    return Err(format!("audit key file {shown}: too large"));
                }
                let file: KeyFile = serde_json::from_slice(&bytes)
                    .map_err(|e| format!("audit key file {shown}: {e}"))?;
                if file.linli_audit_key != 1 {
                    return Err(format!(
                        "audit key file {shown}: version {} is not supported",
                        file.linli_audit_key
                    ));
                }
                AuditKey::from_hex(&file.key, file.keyed_from_seq)
                    .map_err(|e| format!("audit key file {shown}: {e}"))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = AuditKey::generate(next_seq.max(1));
                let text = serde_json::to_vec_pretty(&KeyFile {
                    linli_audit_key: 1,
                    key: hex::encode(key.key),
                    keyed_from_seq: key.keyed_from_seq,
                })
                .expect("serialises");
                let mut options = std::fs::OpenOptions::new();
                options.write(true).create_new(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
                match options.open(path) {
                    Ok(mut f) => {
                        f.write_all(&text)
                            .and_then(|()| f.sync_all())
                            .map_err(|e| format!("writing audit key file {shown}: {e}"))?;
                        tracing::info!(path = %shown, keyed_from_seq = key.keyed_from_seq, "created the audit key");
                        Ok(key)
                    }
                    // Another process made it first: use theirs.
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        AuditKey::load_or_create(path, next_seq)
                    }
                    Err(e) => Err(format!("creating audit key file {shown}: {e}")),
                }
            }
            Err(e) => Err(format!("reading audit key file {shown}: {e}")),
        }
    }

    /// A name for the key that does not reveal it (stored in the database to catch a host
    /// started with the wrong key).
    pub fn fingerprint(&self) -> String {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key).expect("any key size");
        mac.update(b"linli-audit-key-fingerprint");
        hex::encode(&mac.finalize().into_bytes()[..8])
    }

    /// A secret for another purpose, derived from this one.
    pub fn derive(&self, purpose: &[u8]) -> [u8; 32] {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key).expect("any key size");
        mac.update(purpose);
        mac.finalize().into_bytes().into()
    }

    /// The ed25519 key checkpoints are signed with, derived from the audit key.
    fn signing_key(&self) -> ed25519_dalek::SigningKey {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key).expect("any key size");
        mac.update(b"linli-audit-checkpoint-signing");
        let seed: [u8; 32] = mac.finalize().into_bytes().into();
        ed25519_dalek::SigningKey::from_bytes(&seed)
    }

    /// The public key that verifies this host's checkpoints (hex).
    pub fn checkpoint_public_key(&self) -> String {
        hex::encode(self.signing_key().verifying_key().to_bytes())
    }
}

/// Where the chain's head was at a moment, signed: an outside witness of it. Written on a
/// schedule (`audit.checkpoint_interval_secs`) into `audit.checkpoint_dir`, and by
/// `linli audit checkpoint` on demand; kept where the database's writers cannot reach.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    pub linli_audit_checkpoint: u32,
    pub seq: i64,
    pub hash: String,
    pub at: i64,
    /// ed25519 public key, hex.
    pub public_key: String,
    /// ed25519 signature over [`Checkpoint::message`], hex.
    pub signature: String,
}

impl Checkpoint {
    fn message(seq: i64, hash: &str, at: i64) -> String {
        format!("linli-audit-checkpoint|1|{seq}|{hash}|{at}")
    }

    /// Sign the head (`seq`, `hash`) with `key`.
    pub fn sign(key: &AuditKey, seq: i64, hash: &str, at: i64) -> Checkpoint {
        use ed25519_dalek::Signer;
        let signing = key.signing_key();
        let signature = signing.sign(Checkpoint::message(seq, hash, at).as_bytes());
        Checkpoint {
            linli_audit_checkpoint: 1,
            seq,
            hash: hash.to_owned(),
            at,
            public_key: hex::encode(signing.verifying_key().to_bytes()),
            signature: hex::encode(signature.to_bytes()),
        }
    }

    /// Whether the signature is good and made with `key`'s signing key.
    pub fn signed_by(&self, key: &AuditKey) -> bool {
        use ed25519_dalek::Verifier;
        if self.linli_audit_checkpoint != 1 || self.public_key != key.checkpoint_public_key() {
            return false;
        }
        let Ok(sig) = hex::decode(&self.signature) else {
            return false;
        };
        let Ok(sig) = ed25519_dalek::Signature::from_slice(&sig) else {
            return false;
        };
        key.signing_key()
            .verifying_key()
            .verify(
                Checkpoint::message(self.seq, &self.hash, self.at).as_bytes(),
                &sig,
            )
            .is_ok()
    }
}

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
    /// The hash of this record's fields and its link to the previous record: keyed under
    /// `key` from its `keyed_from_seq` on, plain sha256 before it (or with no key).
    pub fn compute_hash(&self, key: Option<&AuditKey>) -> String {
        match key {
            Some(k) if self.seq >= k.keyed_from_seq => {
                let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&k.key).expect("any key size");
                self.feed(|b| mac.update(b));
                hex::encode(mac.finalize().into_bytes())
            }
            _ => {
                let mut h = Sha256::new();
                self.feed(|b| h.update(b));
                hex::encode(h.finalize())
            }
        }
    }

    /// The hashed bytes: every field, length-prefixed, so no two different records
    /// serialise the same way.
    fn feed(&self, mut update: impl FnMut(&[u8])) {
        let mut field = |s: &str| {
            update(&(s.len() as u64).to_le_bytes());
            update(s.as_bytes());
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
    }
}

const COLUMNS: &str = "seq, at, actor, plugin_id, tenant_id, action, subject, outcome, detail, prev_hash, hash, assistant";

fn from_row(row: &sqlx::any::AnyRow) -> Result<Record> {
    record_from(
        row,
        row.try_get("seq")?,
        row.try_get("prev_hash")?,
        row.try_get("hash")?,
    )
}

/// A record from a row holding its fields (of `audit_log` or `audit_pending`), placed at
/// `seq` after `prev_hash`.
fn record_from(
    row: &sqlx::any::AnyRow,
    seq: i64,
    prev_hash: String,
    hash: String,
) -> Result<Record> {
    Ok(Record {
        seq,
        at: row.try_get("at")?,
        actor: row.try_get("actor")?,
        assistant: row.try_get("assistant")?,
        plugin: row.try_get("plugin_id")?,
        tenant: row.try_get("tenant_id")?,
        action: row.try_get("action")?,
        subject: row.try_get("subject")?,
        outcome: row.try_get("outcome")?,
        detail: row.try_get("detail")?,
        prev_hash,
        hash,
    })
}

/// Append a record: written at once (durably, in its own transaction) and sealed into the
/// chain with the next batch. See [`append_in`].
pub async fn append(db: &Db, event: &Event<'_>) -> Result<()> {
    let at = now_ms();
    super::write_tx!(db, lock = super::WriteLock::InsertOnly, |tx| {
        append_in(db, tx, event, at).await
    })
}

/// Append a record inside the caller's write transaction, so the record and what it records
/// commit together. The record is written as pending — without taking the chain's lock, so
/// writers in different places never queue behind one another for it — and [`seal`]
/// numbers, links and keys pending records into the chain in batches, in the order they
/// were appended. Every reader of the chain (queries, [`verify`], checkpoints, retention)
/// seals first, and a task on each host seals what is pending within a second.
pub(crate) async fn append_in(
    db: &Db,
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    event: &Event<'_>,
    at: i64,
) -> Result<()> {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let record = Record {
        seq: 0,
        at,
        actor: event.actor.to_owned(),
        assistant: event.assistant.map(str::to_owned),
        plugin: event.plugin.map(str::to_owned),
        tenant: event.tenant.map(str::to_owned),
        action: event.action.to_owned(),
        subject: event.subject.map(str::to_owned),
        outcome: event.outcome.to_owned(),
        detail: event.detail.to_string(),
        prev_hash: String::new(),
        hash: String::new(),
    };
    let hint = seq_hint();
    let mac = pending_mac(db.audit_key(), &id, hint, &record);
    sqlx::query(
        "INSERT INTO audit_pending (id, at, actor, assistant, plugin_id, tenant_id, action, \
         subject, outcome, detail, seq_hint, mac) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
    )
    .bind(&id)
    .bind(at)
    .bind(&record.actor)
    .bind(record.assistant.as_deref())
    .bind(record.plugin.as_deref())
    .bind(record.tenant.as_deref())
    .bind(&record.action)
    .bind(record.subject.as_deref())
    .bind(&record.outcome)
    .bind(&record.detail)
    .bind(hint)
    .bind(&mac)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The MAC a pending record carries: its id and fields under a key derived from the audit
/// key, so that only a holder of the key can add a record the sealer will seal.
fn pending_mac(key: Option<&AuditKey>, id: &str, seq_hint: i64, record: &Record) -> String {
    let Some(key) = key else {
        return String::new();
    };
    let derived = key.derive(b"linli-audit-pending");
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&derived).expect("any key size");
    mac.update(&(id.len() as u64).to_le_bytes());
    mac.update(id.as_bytes());
    mac.update(&seq_hint.to_le_bytes());
    record.feed(|b| mac.update(b));
    hex::encode(mac.finalize().into_bytes())
}

/// A number that grows with every record this process appends (microseconds, kept strictly
/// increasing): the order pending records are sealed in.
fn seq_hint() -> i64 {
    use std::sync::atomic::{AtomicI64, Ordering};
    static LAST: AtomicI64 = AtomicI64::new(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0);
    let mut last = LAST.load(Ordering::Relaxed);
    loop {
        let next = now.max(last + 1);
        match LAST.compare_exchange_weak(last, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return next,
            Err(seen) => last = seen,
        }
    }
}

/// Records sealed per transaction.
const SEAL_BATCH: i64 = 500;

/// Seal every pending record into the chain: each numbered after the head, linked to the
/// record before and hashed under the audit key, in one transaction per batch that holds
/// the chain's lock (so sealers on several replicas take turns) and deletes the pending
/// rows it sealed. Nothing is sealed without a key (the host attaches it before it
/// writes). How many were sealed.
pub async fn seal(db: &Db) -> Result<u64> {
    if db.audit_key().is_none() {
        return Ok(0);
    }
    // Most of the time there is nothing to seal: find that out without a write transaction.
    if sqlx::query("SELECT id FROM audit_pending LIMIT 1")
        .fetch_optional(db.pool())
        .await?
        .is_none()
    {
        return Ok(0);
    }
    let mut sealed = 0u64;
    loop {
        let n = super::write_tx!(db, lock = super::WriteLock::AuditChain, |tx| {
            seal_batch(db, tx).await
        })?;
        sealed += n;
        if n < SEAL_BATCH as u64 {
            return Ok(sealed);
        }
    }
}

async fn seal_batch(db: &Db, tx: &mut sqlx::Transaction<'static, sqlx::Any>) -> Result<u64> {
    let pending = sqlx::query(
        "SELECT id, at, actor, assistant, plugin_id, tenant_id, action, subject, outcome, \
         detail, seq_hint, mac FROM audit_pending ORDER BY seq_hint, id LIMIT $1",
    )
    .bind(SEAL_BATCH)
    .fetch_all(&mut **tx)
    .await?;
    let fetched = pending.len() as u64;
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
    let (mut seq, mut prev_hash) = match last {
        Some(row) => (row.try_get::<i64, _>(0)? + 1, row.try_get::<String, _>(1)?),
        None => (1, GENESIS.to_owned()),
    };
    let sql = format!(
        "INSERT INTO audit_log ({COLUMNS}, pending_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
    );
    for row in &pending {
        let id: String = row.try_get("id")?;
        let mut record = record_from(row, seq, prev_hash.clone(), String::new())?;
        let claimed: String = row.try_get("mac")?;
        let unsealed = Record {
            seq: 0,
            prev_hash: String::new(),
            ..record.clone()
        };
        let hint: i64 = row.try_get("seq_hint")?;
        let replayed = sqlx::query("SELECT seq FROM audit_log WHERE pending_id = $1")
            .bind(&id)
            .fetch_optional(&mut **tx)
            .await?
            .is_some();
        let refusal = if replayed {
            Some("refused: sealed before (a replayed record)")
        } else if pending_mac(db.audit_key(), &id, hint, &unsealed) != claimed {
            Some("refused: not appended by this host (bad MAC)")
        } else {
            None
        };
        if let Some(why) = refusal {
            // Not appended by a holder of the key (inserted or edited by hand): what it
            // claimed goes into the chain as the host's own record of the refusal, never as
            // the record it pretends to be.
            tracing::error!(pending = %id, why, "an audit record waiting to be sealed was refused; sealed as a refusal");
            record = Record {
                actor: "system".into(),
                assistant: None,
                plugin: None,
                tenant: None,
                action: "audit.rejected".into(),
                subject: None,
                outcome: why.into(),
                detail: serde_json::json!({
                    "pending_id": id,
                    "claimed": {
                        "at": unsealed.at,
                        "actor": unsealed.actor,
                        "assistant": unsealed.assistant,
                        "plugin": unsealed.plugin,
                        "tenant": unsealed.tenant,
                        "action": unsealed.action,
                        "subject": unsealed.subject,
                        "outcome": unsealed.outcome,
                        "detail": unsealed.detail,
                    },
                })
                .to_string(),
                ..record
            };
        }
        record.hash = record.compute_hash(db.audit_key());
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
            .bind((refusal.is_none()).then_some(id.as_str()))
            .execute(&mut **tx)
            .await?;
        sqlx::query("DELETE FROM audit_pending WHERE id = $1")
            .bind(&id)
            .execute(&mut **tx)
            .await?;
        prev_hash = record.hash;
        seq += 1;
    }
    Ok(fetched)
}

/// Records appended and not sealed yet.
pub async fn pending(db: &Db) -> Result<i64> {
    let row = sqlx::query("SELECT COUNT(*) FROM audit_pending")
        .fetch_one(db.pool())
        .await?;
    Ok(row.try_get(0)?)
}

/// Seal what is pending every `every` until the process ends.
pub async fn run_sealer(db: Db, every: std::time::Duration) {
    loop {
        if let Err(e) = seal(&db).await {
            tracing::warn!(error = %e, "sealing audit records failed; will retry");
        }
        tokio::time::sleep(every).await;
    }
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
    // Best effort: while the database refuses writes the sealed records can still be read.
    if let Err(e) = seal(db).await {
        tracing::warn!(error = %e, "audit records not sealed before reading");
    }
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
    seal(db).await?;
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
            if r.compute_hash(db.audit_key()) != r.hash {
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
    seal(db).await?;
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
        append_in(db, tx, &event, now).await?;
        Ok(deleted)
    })
}

/// The head of the chain: the newest record's (seq, hash), or the retention anchor's if
/// everything was pruned, or (0, genesis).
pub async fn head(db: &Db) -> Result<(i64, String)> {
    let row = sqlx::query("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
        .fetch_optional(db.pool())
        .await?;
    match row {
        Some(r) => Ok((r.try_get(0)?, r.try_get(1)?)),
        None => anchor(db).await,
    }
}

/// A signed checkpoint of the head now, or `None` if the database has no key.
pub async fn checkpoint(db: &Db) -> Result<Option<Checkpoint>> {
    let Some(key) = db.audit_key() else {
        return Ok(None);
    };
    seal(db).await?;
    let (seq, hash) = head(db).await?;
    Ok(Some(Checkpoint::sign(key, seq, &hash, now_ms())))
}

/// Check the chain in the database against a checkpoint: it was signed with this host's
/// key, and the chain still reaches its seq with its hash. `Some(reason)` if not.
pub async fn check_against(db: &Db, c: &Checkpoint) -> Result<Option<String>> {
    let Some(key) = db.audit_key() else {
        return Ok(Some(
            "the host has no audit key to check the checkpoint with".into(),
        ));
    };
    seal(db).await?;
    if !c.signed_by(key) {
        return Ok(Some(format!(
            "the checkpoint of record {} is not signed with this host's audit key",
            c.seq
        )));
    }
    let (head_seq, _) = head(db).await?;
    if head_seq < c.seq {
        return Ok(Some(format!(
            "the chain ends at record {head_seq}, but a checkpoint saw record {} (records were cut off the end)",
            c.seq
        )));
    }
    let row = sqlx::query("SELECT hash FROM audit_log WHERE seq = $1")
        .bind(c.seq)
        .fetch_optional(db.pool())
        .await?;
    let stored: Option<String> = match row {
        Some(r) => Some(r.try_get(0)?),
        None => {
            // Pruned since: the anchor stands for it if it is that record.
            let (anchor_seq, anchor_hash) = anchor(db).await?;
            if c.seq == 0 || c.seq < anchor_seq {
                return Ok(None);
            }
            (c.seq == anchor_seq).then_some(anchor_hash)
        }
    };
    Ok(match stored {
        Some(h) if h == c.hash => None,
        Some(_) => Some(format!(
            "record {} is not the record a checkpoint saw (its hash differs)",
            c.seq
        )),
        None => Some(format!("record {} is missing", c.seq)),
    })
}

/// Attach the audit key to `db`, checking it against the key the database was keyed with
/// (its fingerprint, stored on first use): a host started with another key refuses to run
/// rather than write records the chain's own key cannot verify.
pub async fn use_key(db: &mut Db, key: AuditKey) -> Result<()> {
    let fingerprint = key.fingerprint();
    let row = sqlx::query("SELECT fingerprint FROM audit_key_meta WHERE id = 1")
        .fetch_optional(db.pool())
        .await?;
    match row {
        Some(r) => {
            let stored: String = r.try_get(0)?;
            if stored != fingerprint {
                return Err(StorageError::Invalid(format!(
                    "审计密钥不符 / the audit key ({fingerprint}) is not the key this database's audit chain was written with ({stored}): set audit.key_file (or audit.key) to that key"
                )));
            }
        }
        None => {
            // `ON CONFLICT DO NOTHING`: two replicas starting at once with the same key.
            sqlx::query(
                "INSERT INTO audit_key_meta (id, fingerprint, keyed_from_seq, created_at) \
                 VALUES (1, $1, $2, $3) ON CONFLICT (id) DO NOTHING",
            )
            .bind(&fingerprint)
            .bind(key.keyed_from_seq)
            .bind(now_ms())
            .execute(db.pool())
            .await?;
            let stored: String = sqlx::query("SELECT fingerprint FROM audit_key_meta WHERE id = 1")
                .fetch_one(db.pool())
                .await?
                .try_get(0)?;
            if stored != fingerprint {
                return Err(StorageError::Invalid(format!(
                    "审计密钥不符 / another host keyed this database's audit chain with a different key ({stored}) at the same moment: give every replica the same audit.key"
                )));
            }
        }
    }
    db.set_audit_key(key);
    Ok(())
}
