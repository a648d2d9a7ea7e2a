//! The platform service: what the HTTP API and the CLI call. It ties storage, the runtime
//! and metrics together and owns the policies around them — installs and upgrades, the
//! install cache shared by replicas through the database, and suspension of plugins that trap.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use cap_std::ambient_authority;
use cap_std::fs::Dir;
use serde::Serialize;
use utoipa::ToSchema;

mod channels;
mod demo;
mod devices;
pub mod events;
mod grants;
pub mod messaging;
mod people;
mod roster;
mod sessions;
pub mod telemetry;

pub use demo::{DEMO_PASSWORD, DEMO_PHONE, DEMO_TOTP_SECRET, demo_accounts};
pub use devices::{DeviceImportReport, DeviceWithSecret, NewSecret};
pub use grants::{GrantChoice, GrantDiff};
pub use people::{ImportFormat, ImportReport, PersonView, REFUSALS_PER_HOUR, RoleGiven, RowError};
pub use sessions::SignIn;

use std::collections::BTreeSet;

use crate::capabilities::log::LogLimiter;
use crate::config::Config;
use crate::identity::auth::SmsSender;
use crate::identity::{Caller, Permission, Principal, Session};
use crate::metrics::{Metrics, PluginLabels};
use crate::runtime::bindings::{Header, PluginPre, Request, Response};
use crate::runtime::{CallContext, CallError, ComponentError, HostState, PluginMetadata, Runtime};
use crate::storage::audit;
use crate::storage::installs::{self, InstallRow, Status};
use crate::storage::kv::{self, Scope};
use crate::storage::tenants::{self, Tenant, TenantKind};
use crate::storage::{Db, StorageError, now_ms};

/// Where a gateway request goes ([`Platform::plugin_route`]).
#[derive(Debug, Clone)]
pub struct PluginRoute {
    tenant: String,
    plugin: String,
    /// The tenant's path, from the county down.
    path: Vec<String>,
    /// The active installation serving it.
    row: InstallRow,
}

/// A checkpoint file and what it holds (or why it cannot be read).
pub type CheckpointFile = (std::path::PathBuf, Result<audit::Checkpoint, String>);

/// Audit checkpoints kept (and read by verification) in `audit.checkpoint_dir`.
pub const MAX_CHECKPOINTS: usize = 1_000;

/// How long a replica trusts its cached view of an installation before re-reading it, so an
/// install, suspension or uninstall made through another replica takes effect within this.
const INSTALL_CACHE_TTL: Duration = Duration::from_secs(2);

/// Why a platform operation failed; the API maps each to a status and a stable code.
#[derive(Debug, thiserror::Error)]
pub enum PlatformError {
    #[error("租户不存在 / tenant not found: {0}")]
    TenantNotFound(String),
    #[error("插件未安装 / plugin {plugin} is not installed at {tenant}")]
    NotInstalled { tenant: String, plugin: String },
    #[error("插件已暂停 / plugin {plugin} is suspended at {tenant}: {reason}")]
    Suspended {
        tenant: String,
        plugin: String,
        reason: String,
    },
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    NotFound(String),
    /// No valid session (or wrong credentials).
    #[error("{0}")]
    Unauthenticated(String),
    /// Signed in, but not allowed to do this here.
    #[error("{0}")]
    Forbidden(String),
    /// Too many sign-in failures: locked until the given time (ms since the epoch).
    #[error(
        "账户已锁定，请稍后再试 / the account is locked after repeated failures; try again later"
    )]
    Locked { until: i64 },
    /// A rate limit; the message says which and when to retry.
    #[error("{0}")]
    TooMany(String),
    /// The plugin asks for capabilities that are not granted; nothing was installed.
    #[error("需要管理员授权 / the plugin needs grants that were not given: {}", .0.missing_required.join(", "))]
    GrantsNeeded(Box<GrantDiff>),
    #[error(transparent)]
    Component(ComponentError),
    #[error("插件安装钩子失败 / the plugin's {hook} hook failed: {message}")]
    HookFailed { hook: &'static str, message: String },
    #[error("{plugin}: {error}")]
    Call { plugin: String, error: CallError },
    #[error(transparent)]
    Storage(StorageError),
    #[error(transparent)]
    Host(#[from] anyhow::Error),
}

impl From<StorageError> for PlatformError {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::Invalid(m) => PlatformError::Invalid(m),
            StorageError::Conflict(m) => PlatformError::Conflict(m),
            StorageError::Quota(m) => PlatformError::TooMany(m),
            other => PlatformError::Storage(other),
        }
    }
}

/// An installation as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Installation {
    pub tenant: String,
    pub plugin: String,
    pub version: String,
    /// sha256 of the component.
    pub component: String,
    pub status: Status,
    /// Why it is suspended (or last changed state).
    pub status_reason: Option<String>,
    pub metadata: PluginMetadata,
    /// Capabilities granted at this tenant.
    pub grants: Vec<String>,
    /// Subtrees served (for an installation above village level); empty: all of it.
    pub serves: Vec<String>,
    pub installed_at: i64,
    pub updated_at: i64,
}

/// Which of a person's data-use records: after `after`, or newest first before `before`.
#[derive(Debug, Clone, Copy, Default)]
pub struct DataUseRange {
    pub after: i64,
    pub before: Option<i64>,
    pub newest_first: bool,
    pub limit: u32,
}

/// One use of a person's data, for that person: the audit record with the names a reader
/// needs — who acted (and who assisted), and the plugin's title where it is installed.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DataUse {
    #[serde(flatten)]
    pub record: audit::Record,
    /// The actor's name when the actor is a person (not `system` or `admin`).
    pub actor_name: Option<String>,
    pub assistant_name: Option<String>,
    pub plugin_title_zh: Option<String>,
    pub plugin_title_en: Option<String>,
}

/// A feature (an installed plugin) available at a place, as the web shell's home shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Feature {
    pub plugin: String,
    pub title_zh: String,
    pub title_en: String,
    pub description_zh: String,
    pub description_en: String,
    /// Where it is installed: the place itself or a township/county above it.
    pub installed_at: String,
}

/// What an install did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum InstallAction {
    Installed,
    Upgraded,
    Unchanged,
}

/// The result of an install.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct InstallReport {
    pub action: InstallAction,
    /// The version replaced by an upgrade.
    pub previous_version: Option<String>,
    /// How the requested capabilities changed against the previous version.
    pub grants: GrantDiff,
    pub installation: Installation,
}

fn to_installation(row: &InstallRow) -> Result<Installation, PlatformError> {
    let metadata: PluginMetadata = serde_json::from_str(&row.metadata)
        .with_context(|| format!("stored metadata of {}/{}", row.tenant_id, row.plugin_id))?;
    Ok(Installation {
        tenant: row.tenant_id.clone(),
        plugin: row.plugin_id.clone(),
        version: row.version.clone(),
        component: row.component_hash.clone(),
        status: row.status,
        status_reason: row.status_reason.clone(),
        metadata,
        grants: row.grants.clone(),
        serves: row.serves.clone(),
        installed_at: row.installed_at,
        updated_at: row.updated_at,
    })
}

struct Cached {
    row: Option<InstallRow>,
    fetched: Instant,
}

type Key = (String, String);

/// The platform: one per process.
pub struct Platform {
    pub config: Config,
    pub db: Db,
    pub runtime: Runtime,
    pub metrics: Metrics,
    sms: Arc<dyn SmsSender>,
    installs: Mutex<HashMap<Key, Cached>>,
    traps: Mutex<HashMap<Key, VecDeque<Instant>>>,
    log_limiters: Mutex<HashMap<Key, Arc<LogLimiter>>>,
    device_buckets: Mutex<HashMap<String, telemetry::Bucket>>,
    /// Commands to devices and their answers.
    pub commands: Arc<crate::commands::CommandBus>,
    /// Wakes the outbox worker when this process queued something due now.
    outbox_wake: tokio::sync::Notify,
    /// Outbox entries this process leased and failed to deliver, whose retry could not be
    /// recorded (the database was down): released when it is back.
    leases_to_release: Mutex<Vec<(String, String)>>,
    /// The broker link's state (when `devices.mqtt_url` is set).
    pub mqtt: crate::mqtt::LinkState,
}

impl Platform {
    /// Create the data dir if needed, open it as a capability, connect the database (and
    /// migrate), and build the runtime.
    pub async fn open(config: Config) -> anyhow::Result<Arc<Platform>> {
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("creating data dir {}", config.data_dir.display()))?;
        let dir = Dir::open_ambient_dir(&config.data_dir, ambient_authority())
            .with_context(|| format!("opening data dir {}", config.data_dir.display()))?;
        let db = Db::connect_keyed(
            config.database_url.as_deref(),
            &config.data_dir,
            &config.audit_key_source(),
        )
        .await
        .context("connecting to the database")?;
        let runtime = Runtime::new(&config.limits, Arc::new(dir))?;
        let sms: Arc<dyn SmsSender> = crate::identity::auth::sms_sender(&config.auth.sms)?.into();
        let metrics = Metrics::new();
        let commands = Arc::new(crate::commands::CommandBus::new(
            db.clone(),
            metrics.device_commands(),
        ));
        Ok(Arc::new(Platform {
            config,
            db,
            runtime,
            metrics,
            commands,
            sms,
            installs: Mutex::new(HashMap::new()),
            traps: Mutex::new(HashMap::new()),
            log_limiters: Mutex::new(HashMap::new()),
            device_buckets: Mutex::new(HashMap::new()),
            outbox_wake: tokio::sync::Notify::new(),
            leases_to_release: Mutex::new(Vec::new()),
            mqtt: crate::mqtt::LinkState::default(),
        }))
    }

    /// Tell this process's outbox worker that something is due now.
    pub(crate) fn wake_outbox(&self) {
        self.outbox_wake.notify_one();
    }

    fn call_context(
        &self,
        tenant: &str,
        plugin: &str,
        request_id: &str,
        served: Vec<String>,
        caller: Option<Arc<Caller>>,
        grants: Arc<BTreeSet<String>>,
    ) -> CallContext {
        let key = (tenant.to_owned(), plugin.to_owned());
        let log_limiter = self
            .log_limiters
            .lock()
            .expect("log limiter lock")
            .entry(key)
            .or_insert_with(|| Arc::new(LogLimiter::new(self.config.limits.log_lines_per_second)))
            .clone();
        CallContext {
            scope: Scope {
                tenant: tenant.to_owned(),
                plugin: plugin.to_owned(),
            },
            request_id: request_id.to_owned(),
            db: self.db.clone(),
            log_limiter,
            served,
            caller,
            grants,
            commands: self.commands.clone(),
        }
    }

    /// Log lines of an installation dropped for exceeding `limits.log_lines_per_second`.
    pub fn log_lines_dropped(&self, tenant: &str, plugin: &str) -> u64 {
        self.log_limiters
            .lock()
            .expect("log limiter lock")
            .get(&(tenant.to_owned(), plugin.to_owned()))
            .map_or(0, |l| l.dropped())
    }

    /// The root-first path of `tenant`, if `principal` holds `permission` there.
    pub async fn authorize(
        &self,
        principal: &Principal,
        permission: Permission,
        tenant: &str,
    ) -> Result<Vec<String>, PlatformError> {
        let path = tenants::path(&self.db, tenant).await?;
        if path.is_empty() {
            return Err(PlatformError::TenantNotFound(tenant.to_owned()));
        }
        if !principal.allows(permission, &path) {
            return Err(forbidden(permission, tenant));
        }
        Ok(path)
    }

    /// Append to the audit log as `principal`.
    async fn audit_as(
        &self,
        principal: &Principal,
        event: audit::Event<'_>,
    ) -> Result<(), PlatformError> {
        let (actor, assistant) = principal.actor();
        audit::append(
            &self.db,
            &audit::Event {
                actor,
                assistant,
                ..event
            },
        )
        .await?;
        Ok(())
    }

    /// [`Self::audit_as`] inside a write transaction: the record commits with the change.
    async fn audit_as_in(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        principal: &Principal,
        event: audit::Event<'_>,
        now: i64,
    ) -> crate::storage::Result<()> {
        let (actor, assistant) = principal.actor();
        audit::append_in(
            &self.db,
            tx,
            &audit::Event {
                actor,
                assistant,
                ..event
            },
            now,
        )
        .await?;
        Ok(())
    }

    // ---- tenants -------------------------------------------------------------------------

    /// Create a tenant under `parent` (a county at the root needs the bootstrap admin).
    pub async fn create_tenant(
        &self,
        principal: &Principal,
        id: &str,
        parent: Option<&str>,
        kind: TenantKind,
        name_zh: &str,
        name_en: &str,
    ) -> Result<Tenant, PlatformError> {
        match parent {
            Some(p) => {
                self.authorize(principal, Permission::ManageTenants, p)
                    .await?;
            }
            None if !principal.allows(Permission::ManageTenants, &[]) => {
                return Err(forbidden(Permission::ManageTenants, "/"));
            }
            None => {}
        }
        let tenant = tenants::create(&self.db, id, parent, kind, name_zh, name_en)
            .await
            .map_err(|e| match e {
                StorageError::NotFound(m) => PlatformError::TenantNotFound(m),
                other => other.into(),
            })?;
        self.audit_as(
            principal,
            audit::Event {
                tenant: Some(id),
                action: "tenant.create",
                outcome: "ok",
                detail: serde_json::json!({ "parent": parent, "kind": kind, "name_zh": name_zh, "name_en": name_en }),
                ..audit::Event::default()
            },
        )
        .await?;
        Ok(tenant)
    }

    /// Audit records matching `query`, oldest first. A person sees the records of the
    /// subtrees where they may read the audit log (and records with no tenant only as Root).
    pub async fn audit_records(
        &self,
        principal: &Principal,
        mut query: audit::Query,
    ) -> Result<Vec<audit::Record>, PlatformError> {
        query.limit = query.limit.clamp(1, 1_000);
        if let Some(scopes) = principal.scopes(Permission::ReadAudit) {
            if scopes.is_empty() {
                return Err(forbidden(Permission::ReadAudit, "/"));
            }
            let mut visible = Vec::new();
            for s in scopes {
                visible.extend(tenants::subtree(&self.db, &s).await?);
            }
            query.tenants = Some(match query.tenants.take() {
                Some(asked) => asked.into_iter().filter(|t| visible.contains(t)).collect(),
                None => visible,
            });
        }
        Ok(audit::query(&self.db, &query).await?)
    }

    /// The audit records about one person's data (for that person: no role needed), with
    /// the names of who acted and of the plugin. `newest_first` pages back with `before`.
    pub async fn data_use(
        &self,
        person: &str,
        range: DataUseRange,
    ) -> Result<Vec<DataUse>, PlatformError> {
        let query = audit::Query {
            after: range.after,
            before: range.before,
            newest_first: range.newest_first,
            limit: range.limit.clamp(1, 200),
            subject: Some(person.to_owned()),
            ..audit::Query::default()
        };
        let records = audit::query(&self.db, &query).await?;
        // Each person and each installation looked up once, however many records name it.
        let mut names: HashMap<String, Option<String>> = HashMap::new();
        let mut titles: HashMap<(String, String), Option<(String, String)>> = HashMap::new();
        for r in &records {
            for id in std::iter::once(&r.actor).chain(&r.assistant) {
                if let Entry::Vacant(e) = names.entry(id.clone()) {
                    let person = crate::storage::people::get(&self.db, id).await?;
                    e.insert(person.map(|p| p.name));
                }
            }
            if let (Some(t), Some(p)) = (&r.tenant, &r.plugin)
                && let Entry::Vacant(e) = titles.entry((t.clone(), p.clone()))
            {
                let title = installs::get(&self.db, t, p)
                    .await?
                    .and_then(|row| to_installation(&row).ok())
                    .map(|i| (i.metadata.title_zh, i.metadata.title_en));
                e.insert(title);
            }
        }
        let name = |id: &String| names.get(id).cloned().flatten();
        Ok(records
            .into_iter()
            .map(|record| {
                let title = match (&record.tenant, &record.plugin) {
                    (Some(t), Some(p)) => titles.get(&(t.clone(), p.clone())).cloned().flatten(),
                    _ => None,
                };
                let (plugin_title_zh, plugin_title_en) = title.unzip();
                DataUse {
                    actor_name: name(&record.actor),
                    assistant_name: record.assistant.as_ref().and_then(name),
                    record,
                    plugin_title_zh,
                    plugin_title_en,
                }
            })
            .collect())
    }

    /// Check the audit chain (Root or an audit admin at the county).
    pub async fn verify_audit(
        &self,
        principal: &Principal,
    ) -> Result<audit::Verdict, PlatformError> {
        self.require_global(principal, Permission::ReadAudit)
            .await?;
        let verdict = audit::verify(&self.db).await?;
        if let audit::Verdict::Broken { .. } = verdict {
            return Ok(verdict);
        }
        // Then against the outside witness: every checkpoint written so far.
        for (path, checkpoint) in self.checkpoints()? {
            let problem = match checkpoint {
                Ok(c) => audit::check_against(&self.db, &c)
                    .await?
                    .map(|reason| (c.seq, reason)),
                Err(e) => Some((0, format!("unreadable checkpoint: {e}"))),
            };
            if let Some((seq, reason)) = problem {
                return Ok(audit::Verdict::Broken {
                    seq,
                    reason: format!("{reason} ({})", path.display()),
                });
            }
        }
        Ok(verdict)
    }

    /// The checkpoint files in `audit.checkpoint_dir`, oldest first, each parsed (or why
    /// not). At most [`MAX_CHECKPOINTS`] are kept and read.
    pub fn checkpoints(&self) -> Result<Vec<CheckpointFile>, PlatformError> {
        let dir = self.config.checkpoint_dir();
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => {
                return Err(PlatformError::Host(anyhow::anyhow!(
                    "reading {}: {e}",
                    dir.display()
                )));
            }
        };
        let mut paths: Vec<std::path::PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("checkpoint-") && n.ends_with(".json"))
            })
            .collect();
        paths.sort();
        let skip = paths.len().saturating_sub(MAX_CHECKPOINTS);
        Ok(paths
            .into_iter()
            .skip(skip)
            .map(|path| {
                let parsed = std::fs::read(&path)
                    .map_err(|e| e.to_string())
                    .and_then(|b| {
                        if b.len() > 4096 {
                            return Err("larger than 4 KiB".into());
                        }
                        serde_json::from_slice::<audit::Checkpoint>(&b).map_err(|e| e.to_string())
                    });
                (path, parsed)
            })
            .collect())
    }

    /// Write a signed checkpoint of the chain's head into `audit.checkpoint_dir` (if the
    /// newest there is older), and keep the newest [`MAX_CHECKPOINTS`]. Returns it.
    pub async fn write_checkpoint(&self) -> Result<Option<audit::Checkpoint>, PlatformError> {
        let Some(c) = audit::checkpoint(&self.db).await? else {
            return Ok(None);
        };
        if c.seq == 0 {
            return Ok(None);
        }
        let dir = self.config.checkpoint_dir();
        let io = |what: &str, e: std::io::Error| {
            PlatformError::Host(anyhow::anyhow!("{what} {}: {e}", dir.display()))
        };
        std::fs::create_dir_all(&dir).map_err(|e| io("creating", e))?;
        let name = format!("checkpoint-{:012}.json", c.seq);
        let path = dir.join(&name);
        if !path.exists() {
            let tmp = dir.join(format!(".{name}.{}", uuid::Uuid::new_v4().simple()));
            let text = serde_json::to_vec_pretty(&c).expect("serialises");
            // On disk before it has its name: a crash leaves no empty checkpoint behind.
            let write = || -> std::io::Result<()> {
                use std::io::Write;
                let mut f = std::fs::File::create(&tmp)?;
                f.write_all(&text)?;
                f.sync_all()?;
                std::fs::rename(&tmp, &path)
            };
            write().map_err(|e| io("writing into", e))?;
            tracing::debug!(seq = c.seq, path = %path.display(), "audit checkpoint written");
        }
        if let Ok(entries) = std::fs::read_dir(&dir) {
            let mut names: Vec<std::path::PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with("checkpoint-"))
                })
                .collect();
            names.sort();
            let excess = names.len().saturating_sub(MAX_CHECKPOINTS);
            for old in names.into_iter().take(excess) {
                let _ = std::fs::remove_file(old);
            }
        }
        Ok(Some(c))
    }

    /// Delete audit records older than `audit.retention_days` (keeping the chain verifiable).
    pub async fn prune_audit(&self) -> Result<u64, PlatformError> {
        let days = i64::from(self.config.audit.retention_days.max(180));
        let before = now_ms() - days * 24 * 3600 * 1000;
        Ok(audit::prune(&self.db, before, "system").await?)
    }

    /// Periodic upkeep, safe on several replicas at once: drop expired sessions and login
    /// codes, prune audit records past retention.
    pub async fn housekeeping(&self) -> Result<(), PlatformError> {
        let purged = crate::storage::sessions::purge_expired(&self.db).await?;
        let pruned = self.prune_audit().await?;
        let sent = crate::storage::outbox::prune_delivered(
            &self.db,
            crate::storage::now_ms() - OUTBOX_KEEP_MS,
        )
        .await?;
        if purged + pruned + sent > 0 {
            tracing::info!(purged, pruned, outbox = sent, "housekeeping");
        }
        Ok(())
    }

    /// Permission at a root of the tenant tree (the county), for county-wide actions.
    async fn require_global(
        &self,
        principal: &Principal,
        permission: Permission,
    ) -> Result<(), PlatformError> {
        let Some(scopes) = principal.scopes(permission) else {
            return Ok(());
        };
        for s in scopes {
            if tenants::path(&self.db, &s).await?.len() == 1 {
                return Ok(());
            }
        }
        Err(forbidden(permission, "/"))
    }

    /// The tenants `principal` may see: everything for Root, else the subtrees where they
    /// hold any role, plus the path above them.
    pub async fn tenants(&self, principal: &Principal) -> Result<Vec<Tenant>, PlatformError> {
        let all = tenants::list(&self.db).await?;
        let Principal::Person(session) = principal else {
            return Ok(all);
        };
        let mut visible = BTreeSet::new();
        for r in &session.roles {
            visible.extend(tenants::subtree(&self.db, &r.tenant).await?);
            visible.extend(tenants::path(&self.db, &r.tenant).await?);
        }
        visible.extend(tenants::path(&self.db, &session.person.tenant).await?);
        Ok(all
            .into_iter()
            .filter(|t| visible.contains(&t.id))
            .collect())
    }

    async fn require_tenant(&self, tenant: &str) -> Result<(), PlatformError> {
        match tenants::get(&self.db, tenant).await? {
            Some(_) => Ok(()),
            None => Err(PlatformError::TenantNotFound(tenant.to_owned())),
        }
    }

    // ---- installs ------------------------------------------------------------------------

    /// Install `bytes` at `tenant`, or upgrade the installed version of the same plugin id,
    /// granting what `grants` says. The component is validated (imports, exports, metadata),
    /// every required capability must end up granted, and its install or upgrade hook must
    /// succeed before the installation changes.
    /// Load a component (compiling it, or from the cache) and ask it for its metadata: its
    /// hash, the prepared component and what it says it is.
    async fn inspect(
        &self,
        tenant: &str,
        path: Vec<String>,
        bytes: &[u8],
    ) -> Result<(String, PluginPre<HostState>, PluginMetadata), PlatformError> {
        let (hash, pre) = self
            .runtime
            .load_new(bytes)
            .await
            .map_err(PlatformError::Component)?;
        let metadata = self
            .runtime
            .metadata(
                &pre,
                self.call_context(tenant, "-", "install", path, None, Arc::default()),
            )
            .await
            .map_err(PlatformError::Component)?;
        Ok((hash, pre, metadata))
    }

    pub async fn install(
        &self,
        principal: &Principal,
        tenant: &str,
        bytes: &[u8],
        grants: &GrantChoice,
    ) -> Result<InstallReport, PlatformError> {
        let path = self
            .authorize(principal, Permission::ManagePlugins, tenant)
            .await?;
        let (hash, pre, metadata) = self.inspect(tenant, path.clone(), bytes).await?;
        let plugin = metadata.id.clone();
        let existing = installs::get(&self.db, tenant, &plugin).await?;
        let previous_metadata: Option<PluginMetadata> = match &existing {
            Some(row) => Some(to_installation(row)?.metadata),
            None => None,
        };
        let diff = grants::resolve(
            &metadata,
            previous_metadata.as_ref(),
            existing.as_ref().map(|r| r.grants.as_slice()),
            grants,
        )?;
        if !diff.missing_required.is_empty() {
            return Err(PlatformError::GrantsNeeded(Box::new(diff)));
        }
        if let Some(row) = &existing
            && row.component_hash == hash
            && row.grants == diff.granted
        {
            return Ok(InstallReport {
                action: InstallAction::Unchanged,
                previous_version: None,
                grants: diff,
                installation: to_installation(row)?,
            });
        }
        installs::put_component(&self.db, &hash, bytes).await?;
        let previous = existing.as_ref().map(|r| r.version.clone());
        let same_component = existing.as_ref().is_some_and(|r| r.component_hash == hash);
        let hook = if previous.is_some() {
            "on-upgrade"
        } else {
            "on-install"
        };
        if !same_component {
            let request_id = format!("install-{}", uuid::Uuid::new_v4().simple());
            let outcome = self
                .runtime
                .lifecycle_hook(
                    &pre,
                    self.call_context(
                        tenant,
                        &plugin,
                        &request_id,
                        path,
                        None,
                        Arc::new(diff.granted.iter().cloned().collect()),
                    ),
                    previous.clone(),
                )
                .await
                .map_err(|error| PlatformError::Call {
                    plugin: plugin.clone(),
                    error,
                })?;
            if let Err(message) = outcome {
                return Err(PlatformError::HookFailed { hook, message });
            }
        }
        let now = now_ms();
        let row = InstallRow {
            tenant_id: tenant.to_owned(),
            plugin_id: plugin.clone(),
            version: metadata.version.clone(),
            component_hash: hash,
            metadata: serde_json::to_string(&metadata).context("serialising metadata")?,
            status: existing.as_ref().map_or(Status::Active, |r| r.status),
            status_reason: existing.as_ref().and_then(|r| r.status_reason.clone()),
            installed_at: existing.as_ref().map_or(now, |r| r.installed_at),
            updated_at: now,
            grants: diff.granted.clone(),
            serves: existing
                .as_ref()
                .map(|r| r.serves.clone())
                .unwrap_or_default(),
        };
        let action = match (&previous, same_component) {
            (None, _) => "plugin.install",
            (Some(_), true) => "plugin.grant",
            (Some(_), false) => "plugin.upgrade",
        };
        let (actor, assistant) = principal.actor();
        installs::upsert_audited(
            &self.db,
            &row,
            &audit::Event {
                actor,
                assistant,
                plugin: Some(&plugin),
                tenant: Some(tenant),
                action,
                outcome: "ok",
                detail: serde_json::json!({
                    "version": row.version,
                    "previous_version": previous,
                    "component": row.component_hash,
                    "granted": diff.granted,
                    "newly_granted": diff.newly_granted,
                    "added": diff.added,
                    "now_required": diff.now_required,
                    "removed": diff.removed,
                }),
                ..audit::Event::default()
            },
        )
        .await?;
        self.forget(&plugin);
        tracing::info!(%tenant, %plugin, version = %row.version, ?previous, grants = ?row.grants, "plugin installed");
        Ok(InstallReport {
            action: match (&previous, same_component) {
                (None, _) => InstallAction::Installed,
                (Some(_), true) => InstallAction::Unchanged,
                (Some(_), false) => InstallAction::Upgraded,
            },
            previous_version: previous,
            grants: diff,
            installation: to_installation(&row)?,
        })
    }

    pub async fn installations(
        &self,
        principal: &Principal,
        tenant: Option<&str>,
    ) -> Result<Vec<Installation>, PlatformError> {
        let rows = match tenant {
            Some(t) => {
                self.authorize(principal, Permission::ReadPeople, t)
                    .await
                    .or(self
                        .authorize(principal, Permission::ManagePlugins, t)
                        .await)?;
                installs::list(&self.db, Some(t)).await?
            }
            None => {
                let all = installs::list(&self.db, None).await?;
                match principal.scopes(Permission::ManagePlugins) {
                    None => all,
                    Some(scopes) => {
                        let mut visible = BTreeSet::new();
                        for s in scopes {
                            visible.extend(tenants::subtree(&self.db, &s).await?);
                        }
                        all.into_iter()
                            .filter(|r| visible.contains(&r.tenant_id))
                            .collect()
                    }
                }
            }
        };
        rows.iter().map(to_installation).collect()
    }

    pub async fn installation(
        &self,
        principal: &Principal,
        tenant: &str,
        plugin: &str,
    ) -> Result<Installation, PlatformError> {
        self.authorize(principal, Permission::ManagePlugins, tenant)
            .await
            .or(self
                .authorize(principal, Permission::ManageGrants, tenant)
                .await)?;
        match installs::get(&self.db, tenant, plugin).await? {
            Some(row) => to_installation(&row),
            None => Err(self.not_installed(tenant, plugin).await),
        }
    }

    async fn not_installed(&self, tenant: &str, plugin: &str) -> PlatformError {
        match self.require_tenant(tenant).await {
            Err(e) => e,
            Ok(()) => PlatformError::NotInstalled {
                tenant: tenant.to_owned(),
                plugin: plugin.to_owned(),
            },
        }
    }

    pub async fn set_status(
        &self,
        principal: &Principal,
        tenant: &str,
        plugin: &str,
        status: Status,
        reason: Option<&str>,
    ) -> Result<Installation, PlatformError> {
        self.authorize(principal, Permission::ManagePlugins, tenant)
            .await?;
        // Already so: nothing changes and nothing is recorded.
        if let Some(row) = installs::get(&self.db, tenant, plugin).await?
            && row.status == status
        {
            return self.installation(principal, tenant, plugin).await;
        }
        if status == Status::Active
            && let Some(row) = installs::get(&self.db, tenant, plugin).await?
        {
            let inst = to_installation(&row)?;
            let missing: Vec<&str> = inst
                .metadata
                .required
                .iter()
                .map(|c| c.name.as_str())
                .filter(|c| !row.grants.iter().any(|g| g == c))
                .collect();
            if !missing.is_empty() {
                return Err(PlatformError::Conflict(format!(
                    "必需的能力未授权，不能恢复 / cannot resume: required capabilities are not granted: {}",
                    missing.join(", ")
                )));
            }
        }
        match installs::set_status(&self.db, tenant, plugin, status, reason).await {
            Err(StorageError::NotFound(_)) => return Err(self.not_installed(tenant, plugin).await),
            other => other?,
        }
        self.forget(plugin);
        if status == Status::Active {
            // What waited while it was suspended is due now.
            crate::storage::outbox::wake(&self.db, tenant, plugin).await?;
        }
        self.audit_as(
            principal,
            audit::Event {
                plugin: Some(plugin),
                tenant: Some(tenant),
                action: if status == Status::Active {
                    "plugin.resume"
                } else {
                    "plugin.suspend"
                },
                outcome: "ok",
                detail: serde_json::json!({ "reason": reason }),
                ..audit::Event::default()
            },
        )
        .await?;
        if status == Status::Active {
            self.traps
                .lock()
                .expect("traps lock")
                .remove(&(tenant.to_owned(), plugin.to_owned()));
        }
        tracing::info!(%tenant, %plugin, ?status, ?reason, "plugin status changed");
        self.installation(principal, tenant, plugin).await
    }

    /// Uninstall; with `purge_data` also delete the plugin's data at this tenant.
    pub async fn uninstall(
        &self,
        principal: &Principal,
        tenant: &str,
        plugin: &str,
        purge_data: bool,
    ) -> Result<u64, PlatformError> {
        self.authorize(principal, Permission::ManagePlugins, tenant)
            .await?;
        match installs::delete(&self.db, tenant, plugin).await {
            Err(StorageError::NotFound(_)) => return Err(self.not_installed(tenant, plugin).await),
            other => other?,
        }
        self.forget(plugin);
        crate::storage::schedules::forget(&self.db, tenant, plugin).await?;
        let purged = if purge_data {
            kv::purge(
                &self.db,
                &Scope {
                    tenant: tenant.to_owned(),
                    plugin: plugin.to_owned(),
                },
            )
            .await?
        } else {
            0
        };
        self.audit_as(
            principal,
            audit::Event {
                plugin: Some(plugin),
                tenant: Some(tenant),
                action: "plugin.uninstall",
                outcome: "ok",
                detail: serde_json::json!({ "purge_data": purge_data, "purged_keys": purged }),
                ..audit::Event::default()
            },
        )
        .await?;
        tracing::info!(%tenant, %plugin, purge_data, purged, "plugin uninstalled");
        Ok(purged)
    }

    /// Drop every cached resolution of `plugin` (an installation serves its subtree, so
    /// requests to many tenants may have cached it).
    fn forget(&self, plugin: &str) {
        self.installs
            .lock()
            .expect("install cache lock")
            .retain(|(_, p), _| p != plugin);
    }

    /// The installation of `plugin` serving the tenant at `path` (its own, or the nearest
    /// ancestor's that serves this subtree), cached for [`INSTALL_CACHE_TTL`].
    async fn cached_install(
        &self,
        path: &[String],
        plugin: &str,
    ) -> Result<Option<InstallRow>, PlatformError> {
        let Some(tenant) = path.last() else {
            return Ok(None);
        };
        let key = (tenant.clone(), plugin.to_owned());
        if let Some(c) = self.installs.lock().expect("install cache lock").get(&key)
            && c.fetched.elapsed() < INSTALL_CACHE_TTL
        {
            return Ok(c.row.clone());
        }
        let row = installs::nearest(&self.db, path, plugin)
            .await?
            .filter(|r| r.serves.is_empty() || r.serves.iter().any(|s| path.contains(s)));
        self.installs.lock().expect("install cache lock").insert(
            key,
            Cached {
                row: row.clone(),
                fetched: Instant::now(),
            },
        );
        Ok(row)
    }

    /// The installation of each plugin serving the tenant at `path` (installed there, or above
    /// it and serving it): the nearest one, whatever its status.
    pub(super) async fn serving(&self, path: &[String]) -> Result<Vec<InstallRow>, PlatformError> {
        Ok(installs::serving(&self.db, path).await?)
    }

    /// The active plugins serving `tenant` (installed there, or above it and serving it),
    /// the nearest installation of each, sorted by title. Public: titles are not personal.
    pub async fn features(&self, tenant: &str) -> Result<Vec<Feature>, PlatformError> {
        let path = tenants::path(&self.db, tenant).await?;
        if path.is_empty() {
            return Err(PlatformError::TenantNotFound(tenant.to_owned()));
        }
        let mut features = Vec::new();
        for row in self.serving(&path).await? {
            if row.status != Status::Active {
                continue;
            }
            let m = to_installation(&row)?.metadata;
            features.push(Feature {
                plugin: row.plugin_id.clone(),
                title_zh: m.title_zh,
                title_en: m.title_en,
                description_zh: m.description_zh,
                description_en: m.description_en,
                installed_at: row.tenant_id.clone(),
            });
        }
        features.sort_by(|a, b| a.title_zh.cmp(&b.title_zh));
        Ok(features)
    }

    // ---- the gateway ---------------------------------------------------------------------

    /// Where a request to `plugin` at `tenant` goes: the tenant's path and the active
    /// installation serving it (cached). The gateway asks this before it reads a request's
    /// body, so a body sent to nothing is never buffered.
    pub async fn plugin_route(
        &self,
        tenant: &str,
        plugin: &str,
    ) -> Result<PluginRoute, PlatformError> {
        let path = tenants::path(&self.db, tenant).await?;
        if path.is_empty() {
            return Err(PlatformError::TenantNotFound(tenant.to_owned()));
        }
        let Some(row) = self.cached_install(&path, plugin).await? else {
            return Err(PlatformError::NotInstalled {
                tenant: tenant.to_owned(),
                plugin: plugin.to_owned(),
            });
        };
        if row.status == Status::Suspended {
            return Err(PlatformError::Suspended {
                tenant: row.tenant_id,
                plugin: plugin.to_owned(),
                reason: row.status_reason.unwrap_or_default(),
            });
        }
        Ok(PluginRoute {
            tenant: tenant.to_owned(),
            plugin: plugin.to_owned(),
            path,
            row,
        })
    }

    /// Hand a request for `tenant` to a fresh instance of `plugin` (installed there or above
    /// it), on behalf of `session` (`None`: anonymous).
    pub async fn handle_request(
        &self,
        session: Option<&Session>,
        tenant: &str,
        plugin: &str,
        request_id: &str,
        request: Request,
    ) -> Result<Response, PlatformError> {
        let route = self.plugin_route(tenant, plugin).await?;
        self.handle_routed(session, route, request_id, request)
            .await
    }

    /// [`Self::handle_request`] along a route already found.
    pub async fn handle_routed(
        &self,
        session: Option<&Session>,
        route: PluginRoute,
        request_id: &str,
        mut request: Request,
    ) -> Result<Response, PlatformError> {
        let PluginRoute {
            tenant,
            plugin,
            path,
            row,
        } = route;
        let (tenant, plugin) = (tenant.as_str(), plugin.as_str());
        let caller = match session {
            None => None,
            Some(s) => {
                let home = if let Some((resident, _)) = &s.acting_for {
                    &resident.tenant
                } else {
                    &s.person.tenant
                };
                let home_path = tenants::path(&self.db, home).await?;
                match Caller::for_request(s, &path, &home_path) {
                    Some(c) => Some(Arc::new(c)),
                    None => {
                        return Err(PlatformError::Forbidden(format!(
                            "不能访问其他村社的服务 / {tenant} is not your place"
                        )));
                    }
                }
            }
        };
        let installed_at = row.tenant_id.clone();
        // The host says which tenant the request is for; a client cannot.
        request.headers.retain(|h| !h.name.starts_with("x-linli-"));
        request.headers.push(Header {
            name: "x-linli-tenant".into(),
            value: tenant.to_owned(),
        });
        request.headers.push(Header {
            name: "x-linli-installed-at".into(),
            value: installed_at.clone(),
        });
        let db = self.db.clone();
        let hash = row.component_hash.clone();
        let pre = self
            .runtime
            .prepared(&row.component_hash, || async move {
                installs::get_component(&db, &hash)
                    .await?
                    .ok_or_else(|| anyhow::anyhow!("component {hash} missing from the database"))
            })
            .await?;
        let labels = PluginLabels {
            tenant: installed_at.clone(),
            plugin: plugin.to_owned(),
        };
        let started = Instant::now();
        let grants: BTreeSet<String> = row.grants.iter().cloned().collect();
        let context = self.call_context(
            &installed_at,
            plugin,
            request_id,
            path,
            caller,
            Arc::new(grants),
        );
        let (result, stats) = self.runtime.handle_http(&pre, context, request).await;
        let storage_unavailable = stats.storage_unavailable;
        self.metrics
            .observe(&labels, started.elapsed().as_secs_f64(), &result, stats);
        match result {
            // The plugin failed because the database did: the caller should retry later,
            // and hears so (503, `Retry-After`) rather than a plugin error.
            Ok(r) if storage_unavailable && r.status >= 500 => Err(PlatformError::Call {
                plugin: plugin.to_owned(),
                error: CallError::Unavailable("the plugin met the database unavailable".into()),
            }),
            Ok(r) => Ok(r),
            Err(error) => {
                if error.is_trap() {
                    self.record_trap(&installed_at, plugin, &labels, &error)
                        .await;
                }
                Err(PlatformError::Call {
                    plugin: plugin.to_owned(),
                    error,
                })
            }
        }
    }

    /// Count a trap; past `limits.trap_threshold` within `limits.trap_window_secs`, suspend
    /// the plugin at this tenant.
    async fn record_trap(
        &self,
        tenant: &str,
        plugin: &str,
        labels: &PluginLabels,
        error: &CallError,
    ) {
        let limits = &self.config.limits;
        let window = Duration::from_secs(limits.trap_window_secs);
        let suspend = {
            let mut traps = self.traps.lock().expect("traps lock");
            let times = traps
                .entry((tenant.to_owned(), plugin.to_owned()))
                .or_default();
            let now = Instant::now();
            times.push_back(now);
            while times
                .front()
                .is_some_and(|t| now.duration_since(*t) > window)
            {
                times.pop_front();
            }
            let over = times.len() >= limits.trap_threshold as usize;
            if over {
                times.clear();
            }
            over
        };
        if suspend {
            let reason = format!(
                "{} 秒内出错 {} 次，已自动暂停 / failed {} times within {} s (limits.trap_threshold); last: {error}",
                limits.trap_window_secs,
                limits.trap_threshold,
                limits.trap_threshold,
                limits.trap_window_secs
            );
            let event = audit::Event {
                actor: "system",
                plugin: Some(plugin),
                tenant: Some(tenant),
                action: "plugin.suspend",
                outcome: "ok",
                detail: serde_json::json!({ "reason": reason }),
                ..audit::Event::default()
            };
            match installs::suspend_if_active(&self.db, tenant, plugin, &reason, &event).await {
                Ok(true) => {
                    self.metrics.suspended(labels);
                    tracing::warn!(%tenant, %plugin, %reason, "plugin suspended");
                }
                // Already suspended (by another call or replica): nothing more to do or say.
                Ok(false) => {}
                Err(e) => tracing::error!(%tenant, %plugin, error = %e, "could not suspend plugin"),
            }
            self.forget(plugin);
        }
    }

    /// Database reachable?
    pub async fn ready(&self) -> bool {
        self.readiness().await.ready()
    }

    /// What `/readyz` reports: the database answers a read and takes a write (each within
    /// two seconds), and the broker link is up when one is configured.
    pub async fn readiness(&self) -> Readiness {
        let limit = Duration::from_secs(2);
        let read = tokio::time::timeout(limit, sqlx::query("SELECT 1").execute(self.db.pool()));
        let database = matches!(read.await, Ok(Ok(_)));
        let holder = format!("pid-{}", std::process::id());
        let write = tokio::time::timeout(limit, self.db.probe_write(&holder));
        let writes = match write.await {
            Ok(Ok(())) => true,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "readiness: the database refused a write");
                false
            }
            Err(_) => false,
        };
        Readiness {
            database,
            writes,
            mqtt: self.mqtt.up(),
        }
    }
}

/// The host's readiness, part by part.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
pub struct Readiness {
    /// The database answers a read.
    pub database: bool,
    /// The database takes a write.
    pub writes: bool,
    /// The link to the MQTT broker is up (absent when none is configured).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mqtt: Option<bool>,
}

impl Readiness {
    pub fn ready(&self) -> bool {
        self.database && self.writes && self.mqtt != Some(false)
    }
}

/// How long delivered outbox entries are kept (30 days): a resend of a device message with
/// the same id within this is still recognised.
const OUTBOX_KEEP_MS: i64 = 30 * 24 * 3600 * 1000;

/// The error for a missing permission.
fn forbidden(permission: Permission, tenant: &str) -> PlatformError {
    PlatformError::Forbidden(format!(
        "无权在 {tenant} 执行此操作 / not allowed here ({permission:?} at {tenant})"
    ))
}
