//! The database: one sqlx `AnyPool` over SQLite (default, a file in the data dir, WAL) or
//! Postgres (`database_url = postgres://…`), with the same SQL for both.
//!
//! Only this module and its children write SQL. Queries use `$1`-style placeholders, which both
//! backends accept. Write transactions go through [`Db::write`], which begins them the way each
//! backend needs (`BEGIN IMMEDIATE` on SQLite, `SERIALIZABLE` on Postgres) and retries on
//! serialization conflicts, so callers can read-modify-write without lost updates.

pub mod audit;
pub mod commands;
pub mod devices;
pub mod inbox;
pub mod installs;
pub mod kv;
pub mod markers;
pub mod outbox;
pub mod people;
pub mod schedules;
pub mod sessions;
pub mod tenants;
pub mod throttle;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::{Any, AnyPool, Transaction};

tokio::task_local! {
    /// Set (by [`relaxed_commits`]) while a plugin call's data write runs.
    static RELAXED_COMMIT: bool;
}

/// Run `write` with its Postgres transactions committed without waiting for the WAL to
/// reach the disk (`synchronous_commit = off`): the transaction's locks are released at once
/// instead of after the flush, so writers of one hot spot (a vote counter) no longer queue
/// for each other's disk writes. Only for work whose caller calls [`Db::flush`] before it
/// acknowledges anything — the runtime does, at the end of every plugin call that wrote.
pub async fn relaxed_commits<F: std::future::Future>(write: F) -> F::Output {
    RELAXED_COMMIT.scope(true, write).await
}

/// An exclusive lock on `data_dir/.migrate.lock`, held until dropped.
async fn migration_lock(data_dir: &Path) -> Result<std::fs::File> {
    let path = data_dir.join(".migrate.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| StorageError::Invalid(format!("{}: {e}", path.display())))?;
    tokio::task::spawn_blocking(move || file.lock().map(|()| file))
        .await
        .map_err(|e| StorageError::Invalid(format!("migration lock: {e}")))?
        .map_err(|e| StorageError::Invalid(format!("{}: {e}", path.display())))
}

/// Which database is behind the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A storage failure, already classified for callers.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("not found: {0}")]
    NotFound(String),
    #[error("conflict: {0}")]
    Conflict(String),
    /// A named quota was hit; the message names it and its value.
    #[error("quota exceeded: {0}")]
    Quota(String),
    /// The stored data does not fit the operation (e.g. incrementing a non-counter).
    #[error("invalid: {0}")]
    Invalid(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

pub type Result<T, E = StorageError> = std::result::Result<T, E>;

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// How many times a write transaction is retried after a serialization conflict.
const WRITE_RETRIES: u32 = 64;

/// The shared database handle. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Db {
    pool: AnyPool,
    backend: Backend,
    /// SQLite allows one writer at a time; taking this in-process lock first turns what would
    /// be busy-waiting inside SQLite into a fair async queue. Other processes (the CLI) are
    /// still covered by `busy_timeout` and the retry loop.
    write_lock: Option<Arc<tokio::sync::Mutex<()>>>,
    /// The audit chain's key (kept outside the database; see `audit::AuditKey`).
    audit_key: Option<Arc<audit::AuditKey>>,
    /// The rate limits' key secret, derived from the audit key once.
    throttle_secret: [u8; 32],
}

/// Where the audit chain's key comes from.
#[derive(Debug, Clone)]
pub enum AuditKeySource {
    /// A key file, created (for the records from the current head on) if missing.
    File(std::path::PathBuf),
    /// A key given directly (64 hex digits), keyed from this seq on.
    Hex { key: String, keyed_from_seq: i64 },
}

impl Db {
    /// Connect to `url`, or to `data_dir/linli.db` when `url` is `None`, run migrations, and
    /// key the audit chain with `data_dir/audit.key` (created if missing).
    pub async fn connect(url: Option<&str>, data_dir: &Path) -> Result<Db> {
        Db::connect_keyed(
            url,
            data_dir,
            &AuditKeySource::File(data_dir.join("audit.key")),
        )
        .await
    }

    /// [`Db::connect`] with the audit key from `key`.
    pub async fn connect_keyed(
        url: Option<&str>,
        data_dir: &Path,
        key: &AuditKeySource,
    ) -> Result<Db> {
        let mut db = Db::connect_unkeyed(url, data_dir).await?;
        let key = match key {
            AuditKeySource::File(path) => {
                let next = audit::head(&db).await?.0 + 1;
                audit::AuditKey::load_or_create(path, next).map_err(StorageError::Invalid)?
            }
            AuditKeySource::Hex {
                key,
                keyed_from_seq,
            } => audit::AuditKey::from_hex(key, *keyed_from_seq).map_err(StorageError::Invalid)?,
        };
        audit::use_key(&mut db, key).await?;
        Ok(db)
    }

    async fn connect_unkeyed(url: Option<&str>, data_dir: &Path) -> Result<Db> {
        install_default_drivers();
        let url = match url {
            Some(url) => url.to_owned(),
            None => format!("sqlite://{}?mode=rwc", data_dir.join("linli.db").display()),
        };
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else {
            Backend::Postgres
        };
        // A connection whose transaction state is unknown — a COMMIT or ROLLBACK that failed
        // (disk full, I/O error, a cut connection) — is closed, never reused: otherwise every
        // later write on it fails ("begin_with at non-zero transaction depth") until the
        // process restarts. Checked as it is taken from the pool: by then sqlx's own test on
        // release has run the rollback a dropped transaction queued, so a connection still
        // inside a transaction is one whose state nobody knows.
        let options = AnyPoolOptions::new()
            // A database that cannot be reached within this answers 503 (`Retry-After`) rather
            // than holding the caller — a device waiting for its acknowledgement — longer.
            .acquire_timeout(Duration::from_secs(10))
            .before_acquire(|conn, _meta| {
                Box::pin(async move {
                    use sqlx::Connection;
                    let clean = !conn.is_in_transaction();
                    if !clean {
                        tracing::warn!("closing a database connection left inside a transaction");
                    }
                    Ok(clean)
                })
            });
        let pool = match backend {
            Backend::Sqlite => {
                options
                    .max_connections(8)
                    .after_connect(|conn, _meta| {
                        Box::pin(async move {
                            use sqlx::Executor;
                            conn.execute(
                                "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                                 PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON;",
                            )
                            .await?;
                            Ok(())
                        })
                    })
                    .connect(&url)
                    .await?
            }
            Backend::Postgres => options.max_connections(16).connect(&url).await?,
        };
        match backend {
            Backend::Sqlite => {
                // Two processes starting at once on a new file would both run the first
                // migration (sqlx takes no lock on SQLite): they take turns on a lock file.
                let lock = migration_lock(data_dir).await?;
                SQLITE_MIGRATIONS.run(&pool).await?;
                drop(lock);
            }
            // sqlx takes an advisory lock on Postgres.
            Backend::Postgres => POSTGRES_MIGRATIONS.run(&pool).await?,
        }
        Ok(Db {
            pool,
            backend,
            write_lock: (backend == Backend::Sqlite).then(|| Arc::new(tokio::sync::Mutex::new(()))),
            audit_key: None,
            throttle_secret: [0u8; 32],
        })
    }

    /// The audit chain's key, if the database was opened with one.
    pub fn audit_key(&self) -> Option<&audit::AuditKey> {
        self.audit_key.as_deref()
    }

    /// The secret the rate limits' keys are hashed with (derived from the audit key).
    pub fn throttle_secret(&self) -> &[u8; 32] {
        &self.throttle_secret
    }

    pub(crate) fn set_audit_key(&mut self, key: audit::AuditKey) {
        self.throttle_secret = key.derive(b"linli-throttle-keys");
        self.audit_key = Some(Arc::new(key));
    }

    /// Which database is behind the pool.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Whether the database takes a write now (`/readyz`): one row upserted in a write
    /// transaction, through the same path every write takes.
    pub async fn probe_write(&self, holder: &str) -> Result<()> {
        let now = now_ms();
        write_tx!(self, |tx| {
            sqlx::query(
                "INSERT INTO host_markers (name, holder, updated_at) VALUES ('readyz', $1, $2) \
                 ON CONFLICT (name) DO UPDATE SET holder = $1, updated_at = $2",
            )
            .bind(holder)
            .bind(now)
            .execute(&mut **tx)
            .await?;
            Ok(())
        })
    }

    /// Begin a write transaction the way this backend needs: after the in-process write lock
    /// on SQLite with `BEGIN IMMEDIATE`; on Postgres as `SERIALIZABLE`, or — for a
    /// transaction that names its [`WriteLock`] — in `READ COMMITTED` after taking that
    /// lock. Use it through [`write_tx!`], which commits and retries.
    pub(crate) async fn begin_write(&self, lock: Option<WriteLock<'_>>) -> Result<WriteTx> {
        let guard = match &self.write_lock {
            Some(lock) => Some(lock.clone().lock_owned().await),
            None => None,
        };
        let mut tx = match (self.backend, lock) {
            (Backend::Sqlite, _) => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            (Backend::Postgres, None) => {
                self.pool
                    .begin_with("BEGIN ISOLATION LEVEL SERIALIZABLE")
                    .await?
            }
            (Backend::Postgres, Some(lock)) => {
                let mut tx = self
                    .pool
                    .begin_with("BEGIN ISOLATION LEVEL READ COMMITTED")
                    .await?;
                lock_in(&mut tx, lock).await?;
                tx
            }
        };
        if self.backend == Backend::Postgres && RELAXED_COMMIT.try_with(|r| *r).unwrap_or(false) {
            sqlx::query("SET LOCAL synchronous_commit = off")
                .execute(&mut *tx)
                .await?;
        }
        Ok(WriteTx { tx, _lock: guard })
    }

    /// Return once everything committed so far is on disk: on Postgres a commit that waits
    /// for the WAL flush (which covers every earlier commit, relaxed ones included); SQLite
    /// commits are already in its WAL. Concurrent flushes share one disk write.
    pub async fn flush(&self) -> Result<()> {
        if self.backend == Backend::Postgres {
            let mut tx = self.pool.begin().await?;
            // An xid makes the commit write a record and wait for its flush.
            sqlx::query("SELECT txid_current()")
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        }
        Ok(())
    }

    /// After a failed attempt: whether to run the transaction again (after a short, growing,
    /// jittered pause). Only transient conflicts are retried, at most [`WRITE_RETRIES`] times.
    pub(crate) async fn retry_after(&self, error: &StorageError, attempt: &mut u32) -> bool {
        let StorageError::Database(e) = error else {
            return false;
        };
        if *attempt >= WRITE_RETRIES || !is_retryable(e) {
            return false;
        }
        *attempt += 1;
        // Full jitter over an exponentially growing window (1, 2, 4 … 64 ms): under a
        // burst of conflicting writers the losers spread out instead of colliding again.
        let window = 1u64 << (*attempt).min(6);
        let pause = rand::random::<u64>() % (window + 1);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        true
    }
}

/// A hot spot that write transactions queue for instead of racing (Postgres).
///
/// Under `SERIALIZABLE`, transactions that all update one row — a scope's key count, a
/// counter every voter increments, the head of the audit chain — abort one another and
/// retry, so under a burst most of the work is wasted and latency grows with the number of
/// writers. A transaction that names its lock takes a Postgres advisory lock for it first
/// (`pg_advisory_xact_lock`, held until commit or rollback, across every replica) and runs in
/// `READ COMMITTED`: writers of the same lock run one after another and each sees what the
/// one before committed, which for them is the same as running serially. Every write to the
/// rows a lock covers must take it: [`WriteLock::Scope`] for a scope's `kv` and `kv_usage`
/// rows (the `kv` module does), [`WriteLock::AuditChain`] before reading the chain's head
/// (`audit::append_in` does, inside any transaction). SQLite needs none of this: it has one
/// writer at a time anyway.
#[derive(Debug, Clone, Copy)]
pub(crate) enum WriteLock<'a> {
    Scope(&'a kv::Scope),
    AuditChain,
    /// No lock: a transaction that only inserts rows of its own (new unique ids) and reads
    /// nothing it depends on, run in `READ COMMITTED` — under `SERIALIZABLE` concurrent
    /// inserters abort one another over shared index pages for nothing.
    InsertOnly,
}

impl WriteLock<'_> {
    /// The lock's name (tenant and plugin ids are `[a-z0-9-]`, so `/` separates them).
    fn name(&self) -> String {
        match self {
            WriteLock::Scope(scope) => format!("kv/{}/{}", scope.tenant, scope.plugin),
            WriteLock::AuditChain => "audit".to_owned(),
            WriteLock::InsertOnly => String::new(),
        }
    }
}

/// Take `lock` for the rest of the transaction `tx` (Postgres; nothing on SQLite, where the
/// transaction already holds the database's one write lock). The advisory lock's 64-bit key
/// is Postgres' hash of the schema and the lock's name, so deployments (and test schemas)
/// sharing a database do not queue for each other; a collision only makes two unrelated
/// writers take turns.
pub(crate) async fn lock_in(tx: &mut Transaction<'static, Any>, lock: WriteLock<'_>) -> Result<()> {
    if matches!(lock, WriteLock::InsertOnly) {
        return Ok(());
    }
    if tx.backend_name() == "PostgreSQL" {
        sqlx::query(
            "SELECT pg_advisory_xact_lock(hashtextextended(current_schema() || '/' || $1, 0))",
        )
        .bind(lock.name())
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// An open write transaction (and, on SQLite, the in-process write lock).
pub(crate) struct WriteTx {
    pub(crate) tx: Transaction<'static, Any>,
    _lock: Option<tokio::sync::OwnedMutexGuard<()>>,
}

/// Run `$body` in a write transaction on `$db` with `$tx: &mut Transaction<Any>`, commit it,
/// and on a transient conflict run it again. `$body` evaluates to `storage::Result<T>`; an
/// `Err` (or an early `return Err(..)`) rolls back. It must have no effects outside the
/// transaction, since it may run more than once.
macro_rules! write_tx {
    ($db:expr, |$tx:ident| $body:block) => {
        $crate::storage::write_tx!($db, None, |$tx| $body)
    };
    ($db:expr, lock = $lock:expr, |$tx:ident| $body:block) => {
        $crate::storage::write_tx!($db, Some($lock), |$tx| $body)
    };
    ($db:expr, $lock:expr, |$tx:ident| $body:block) => {{
        let db: &$crate::storage::Db = $db;
        let mut attempt = 0u32;
        loop {
            let result: $crate::storage::Result<_> = async {
                let mut w = db.begin_write($lock).await?;
                let value = {
                    let $tx = &mut w.tx;
                    let r: $crate::storage::Result<_> = async { $body }.await;
                    r?
                };
                w.tx.commit().await?;
                Ok(value)
            }
            .await;
            match result {
                Err(e) if db.retry_after(&e, &mut attempt).await => continue,
                other => break other,
            }
        }
    }};
}
pub(crate) use write_tx;

/// Whether a database error is a transient conflict worth retrying the transaction for.
fn is_retryable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => {
            let code = db.code().unwrap_or_default();
            // Postgres: serialization_failure, deadlock_detected, unique_violation (two
            // transactions inserting the same new key). SQLite: BUSY, BUSY_SNAPSHOT, LOCKED.
            matches!(
                code.as_ref(),
                "40001" | "40P01" | "23505" | "5" | "517" | "6" | "262"
            ) || db.message().contains("database is locked")
        }
        _ => false,
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
