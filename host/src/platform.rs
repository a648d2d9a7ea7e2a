//! The platform service: what the HTTP API and the CLI call. It ties storage, the runtime
//! and metrics together and owns the policies around them — installs and upgrades, the
//! install cache shared by replicas through the database, and suspension of plugins that trap.

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use cap_std::ambient_authority;
use cap_std::fs::Dir;
use serde::Serialize;
use utoipa::ToSchema;

use crate::capabilities::log::LogLimiter;
use crate::config::Config;
use crate::metrics::{Metrics, PluginLabels};
use crate::runtime::bindings::{Request, Response};
use crate::runtime::{CallContext, CallError, ComponentError, PluginMetadata, Runtime};
use crate::storage::audit;
use crate::storage::installs::{self, InstallRow, Status};
use crate::storage::kv::{self, Scope};
use crate::storage::tenants::{self, Tenant, TenantKind};
use crate::storage::{Db, StorageError, now_ms};

/// How long a replica trusts its cached view of an installation before re-reading it, so an
/// install, suspension or uninstall made through another replica takes effect within this.
const INSTALL_CACHE_TTL: Duration = Duration::from_secs(2);

/// The audit actor of admin actions (API bearer token or local CLI).
const ADMIN: &str = "admin";
/// The audit actor of the host's own actions (demo seed, automatic suspension).
const SYSTEM: &str = "system";

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
    pub installed_at: i64,
    pub updated_at: i64,
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
    installs: Mutex<HashMap<Key, Cached>>,
    traps: Mutex<HashMap<Key, VecDeque<Instant>>>,
    log_limiters: Mutex<HashMap<Key, Arc<LogLimiter>>>,
}

impl Platform {
    /// Create the data dir if needed, open it as a capability, connect the database (and
    /// migrate), and build the runtime.
    pub async fn open(config: Config) -> anyhow::Result<Arc<Platform>> {
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("creating data dir {}", config.data_dir.display()))?;
        let dir = Dir::open_ambient_dir(&config.data_dir, ambient_authority())
            .with_context(|| format!("opening data dir {}", config.data_dir.display()))?;
        let db = Db::connect(config.database_url.as_deref(), &config.data_dir)
            .await
            .context("connecting to the database")?;
        let runtime = Runtime::new(&config.limits, Arc::new(dir))?;
        Ok(Arc::new(Platform {
            config,
            db,
            runtime,
            metrics: Metrics::new(),
            installs: Mutex::new(HashMap::new()),
            traps: Mutex::new(HashMap::new()),
            log_limiters: Mutex::new(HashMap::new()),
        }))
    }

    fn call_context(&self, tenant: &str, plugin: &str, request_id: &str) -> CallContext {
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

    // ---- tenants -------------------------------------------------------------------------

    /// Create a tenant (audited as an admin action).
    pub async fn create_tenant(
        &self,
        id: &str,
        parent: Option<&str>,
        kind: TenantKind,
        name_zh: &str,
        name_en: &str,
    ) -> Result<Tenant, PlatformError> {
        self.create_tenant_as(ADMIN, id, parent, kind, name_zh, name_en)
            .await
    }

    async fn create_tenant_as(
        &self,
        actor: &str,
        id: &str,
        parent: Option<&str>,
        kind: TenantKind,
        name_zh: &str,
        name_en: &str,
    ) -> Result<Tenant, PlatformError> {
        let tenant = tenants::create(&self.db, id, parent, kind, name_zh, name_en)
            .await
            .map_err(|e| match e {
                StorageError::NotFound(m) => PlatformError::TenantNotFound(m),
                other => other.into(),
            })?;
        self.audit(audit::Event {
            actor,
            tenant: Some(id),
            action: "tenant.create",
            outcome: "ok",
            detail: serde_json::json!({ "parent": parent, "kind": kind, "name_zh": name_zh, "name_en": name_en }),
            ..audit::Event::default()
        })
        .await?;
        Ok(tenant)
    }

    /// Append to the audit log.
    async fn audit(&self, event: audit::Event<'_>) -> Result<(), PlatformError> {
        audit::append(&self.db, &event).await?;
        Ok(())
    }

    /// Audit records after `after_seq`, oldest first.
    pub async fn audit_records(
        &self,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<audit::Record>, PlatformError> {
        Ok(audit::list(&self.db, after_seq, limit.clamp(1, 1_000)).await?)
    }

    /// Check the audit chain.
    pub async fn verify_audit(&self) -> Result<audit::Verdict, PlatformError> {
        Ok(audit::verify(&self.db).await?)
    }

    pub async fn tenants(&self) -> Result<Vec<Tenant>, PlatformError> {
        Ok(tenants::list(&self.db).await?)
    }

    async fn require_tenant(&self, tenant: &str) -> Result<(), PlatformError> {
        match tenants::get(&self.db, tenant).await? {
            Some(_) => Ok(()),
            None => Err(PlatformError::TenantNotFound(tenant.to_owned())),
        }
    }

    // ---- installs ------------------------------------------------------------------------

    /// Install `bytes` at `tenant`, or upgrade the installed version of the same plugin id.
    /// The component is validated (imports, exports, metadata) and its install or upgrade
    /// hook must succeed before the installation changes.
    pub async fn install(
        &self,
        tenant: &str,
        bytes: &[u8],
    ) -> Result<InstallReport, PlatformError> {
        self.install_as(ADMIN, tenant, bytes).await
    }

    async fn install_as(
        &self,
        actor: &str,
        tenant: &str,
        bytes: &[u8],
    ) -> Result<InstallReport, PlatformError> {
        self.require_tenant(tenant).await?;
        let (hash, pre) = self
            .runtime
            .load_new(bytes)
            .await
            .map_err(PlatformError::Component)?;
        let metadata = self
            .runtime
            .metadata(&pre, self.call_context(tenant, "-", "install"))
            .await
            .map_err(PlatformError::Component)?;
        let plugin = metadata.id.clone();
        let existing = installs::get(&self.db, tenant, &plugin).await?;
        if let Some(row) = &existing
            && row.component_hash == hash
        {
            return Ok(InstallReport {
                action: InstallAction::Unchanged,
                previous_version: None,
                installation: to_installation(row)?,
            });
        }
        installs::put_component(&self.db, &hash, bytes).await?;
        let previous = existing.as_ref().map(|r| r.version.clone());
        let hook = if previous.is_some() {
            "on-upgrade"
        } else {
            "on-install"
        };
        let request_id = format!("install-{}", uuid::Uuid::new_v4().simple());
        let outcome = self
            .runtime
            .lifecycle_hook(
                &pre,
                self.call_context(tenant, &plugin, &request_id),
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
        let now = now_ms();
        let row = InstallRow {
            tenant_id: tenant.to_owned(),
            plugin_id: plugin.clone(),
            version: metadata.version.clone(),
            component_hash: hash,
            metadata: serde_json::to_string(&metadata).context("serialising metadata")?,
            status: Status::Active,
            status_reason: None,
            installed_at: existing.as_ref().map_or(now, |r| r.installed_at),
            updated_at: now,
        };
        installs::upsert(&self.db, &row).await?;
        self.forget(tenant, &plugin);
        self.audit(audit::Event {
            actor,
            plugin: Some(&plugin),
            tenant: Some(tenant),
            action: if previous.is_some() {
                "plugin.upgrade"
            } else {
                "plugin.install"
            },
            outcome: "ok",
            detail: serde_json::json!({
                "version": row.version,
                "previous_version": previous,
                "component": row.component_hash,
                "required": metadata.required.iter().map(|c| &c.name).collect::<Vec<_>>(),
                "optional": metadata.optional.iter().map(|c| &c.name).collect::<Vec<_>>(),
            }),
            ..audit::Event::default()
        })
        .await?;
        tracing::info!(%tenant, %plugin, version = %row.version, ?previous, "plugin installed");
        Ok(InstallReport {
            action: if previous.is_some() {
                InstallAction::Upgraded
            } else {
                InstallAction::Installed
            },
            previous_version: previous,
            installation: to_installation(&row)?,
        })
    }

    pub async fn installations(
        &self,
        tenant: Option<&str>,
    ) -> Result<Vec<Installation>, PlatformError> {
        if let Some(t) = tenant {
            self.require_tenant(t).await?;
        }
        installs::list(&self.db, tenant)
            .await?
            .iter()
            .map(to_installation)
            .collect()
    }

    pub async fn installation(
        &self,
        tenant: &str,
        plugin: &str,
    ) -> Result<Installation, PlatformError> {
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
        tenant: &str,
        plugin: &str,
        status: Status,
        reason: Option<&str>,
    ) -> Result<Installation, PlatformError> {
        match installs::set_status(&self.db, tenant, plugin, status, reason).await {
            Err(StorageError::NotFound(_)) => return Err(self.not_installed(tenant, plugin).await),
            other => other?,
        }
        self.forget(tenant, plugin);
        self.audit(audit::Event {
            actor: ADMIN,
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
        })
        .await?;
        if status == Status::Active {
            self.traps
                .lock()
                .expect("traps lock")
                .remove(&(tenant.to_owned(), plugin.to_owned()));
        }
        tracing::info!(%tenant, %plugin, ?status, ?reason, "plugin status changed");
        self.installation(tenant, plugin).await
    }

    /// Uninstall; with `purge_data` also delete the plugin's data at this tenant.
    pub async fn uninstall(
        &self,
        tenant: &str,
        plugin: &str,
        purge_data: bool,
    ) -> Result<u64, PlatformError> {
        match installs::delete(&self.db, tenant, plugin).await {
            Err(StorageError::NotFound(_)) => return Err(self.not_installed(tenant, plugin).await),
            other => other?,
        }
        self.forget(tenant, plugin);
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
        self.audit(audit::Event {
            actor: ADMIN,
            plugin: Some(plugin),
            tenant: Some(tenant),
            action: "plugin.uninstall",
            outcome: "ok",
            detail: serde_json::json!({ "purge_data": purge_data, "purged_keys": purged }),
            ..audit::Event::default()
        })
        .await?;
        tracing::info!(%tenant, %plugin, purge_data, purged, "plugin uninstalled");
        Ok(purged)
    }

    fn forget(&self, tenant: &str, plugin: &str) {
        self.installs
            .lock()
            .expect("install cache lock")
            .remove(&(tenant.to_owned(), plugin.to_owned()));
    }

    async fn cached_install(
        &self,
        tenant: &str,
        plugin: &str,
    ) -> Result<Option<InstallRow>, PlatformError> {
        let key = (tenant.to_owned(), plugin.to_owned());
        if let Some(c) = self.installs.lock().expect("install cache lock").get(&key)
            && c.fetched.elapsed() < INSTALL_CACHE_TTL
        {
            return Ok(c.row.clone());
        }
        let row = installs::get(&self.db, tenant, plugin).await?;
        self.installs.lock().expect("install cache lock").insert(
            key,
            Cached {
                row: row.clone(),
                fetched: Instant::now(),
            },
        );
        Ok(row)
    }

    // ---- the gateway ---------------------------------------------------------------------

    /// Hand a request to a fresh instance of `plugin` at `tenant`.
    pub async fn handle_request(
        &self,
        tenant: &str,
        plugin: &str,
        request_id: &str,
        request: Request,
    ) -> Result<Response, PlatformError> {
        let Some(row) = self.cached_install(tenant, plugin).await? else {
            return Err(self.not_installed(tenant, plugin).await);
        };
        if row.status == Status::Suspended {
            return Err(PlatformError::Suspended {
                tenant: tenant.to_owned(),
                plugin: plugin.to_owned(),
                reason: row.status_reason.unwrap_or_default(),
            });
        }
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
            tenant: tenant.to_owned(),
            plugin: plugin.to_owned(),
        };
        let started = Instant::now();
        let (result, stats) = self
            .runtime
            .handle_http(&pre, self.call_context(tenant, plugin, request_id), request)
            .await;
        self.metrics
            .observe(&labels, started.elapsed().as_secs_f64(), &result, stats);
        match result {
            Ok(r) => Ok(r),
            Err(error) => {
                if error.is_trap() {
                    self.record_trap(tenant, plugin, &labels, &error).await;
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
            match installs::set_status(&self.db, tenant, plugin, Status::Suspended, Some(&reason))
                .await
            {
                Ok(()) => {
                    self.metrics.suspended(labels);
                    tracing::warn!(%tenant, %plugin, %reason, "plugin suspended");
                    let event = audit::Event {
                        actor: SYSTEM,
                        plugin: Some(plugin),
                        tenant: Some(tenant),
                        action: "plugin.suspend",
                        outcome: "ok",
                        detail: serde_json::json!({ "reason": reason }),
                        ..audit::Event::default()
                    };
                    if let Err(e) = self.audit(event).await {
                        tracing::error!(%tenant, %plugin, error = %e, "could not audit the suspension");
                    }
                }
                Err(e) => tracing::error!(%tenant, %plugin, error = %e, "could not suspend plugin"),
            }
            self.forget(tenant, plugin);
        }
    }

    /// Database reachable?
    pub async fn ready(&self) -> bool {
        sqlx::query("SELECT 1")
            .execute(self.db.pool())
            .await
            .is_ok()
    }

    // ---- the demo county -----------------------------------------------------------------

    /// On an empty database: create the demo county (one township, two villages) and install
    /// every `*.wasm` in `demo_plugins_dir` in both villages. Returns whether it seeded.
    pub async fn seed_demo(&self) -> anyhow::Result<bool> {
        if !self.config.seed_demo || tenants::count(&self.db).await? > 0 {
            return Ok(false);
        }
        let tree = [
            (
                "qingshan",
                None,
                TenantKind::County,
                "青山县",
                "Qingshan County",
            ),
            (
                "dongxi",
                Some("qingshan"),
                TenantKind::Township,
                "东溪镇",
                "Dongxi Town",
            ),
            (
                "dongcun",
                Some("dongxi"),
                TenantKind::Village,
                "东村",
                "Dong Village",
            ),
            (
                "xicun",
                Some("dongxi"),
                TenantKind::Village,
                "西村",
                "Xi Village",
            ),
        ];
        for (id, parent, kind, zh, en) in tree {
            self.create_tenant_as(SYSTEM, id, parent, kind, zh, en)
                .await?;
        }
        tracing::info!("seeded the demo county: qingshan > dongxi > dongcun, xicun");
        if let Some(dir) = &self.config.demo_plugins_dir {
            for path in wasm_files(dir)? {
                let bytes =
                    std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
                for village in ["dongcun", "xicun"] {
                    match self.install_as(SYSTEM, village, &bytes).await {
                        Ok(r) => tracing::info!(
                            village,
                            plugin = %r.installation.plugin,
                            version = %r.installation.version,
                            "demo plugin installed"
                        ),
                        Err(e) => {
                            tracing::warn!(village, file = %path.display(), error = %e, "demo plugin not installed")
                        }
                    }
                }
            }
        } else {
            tracing::warn!("no demo_plugins_dir configured: the demo county has no plugins");
        }
        Ok(true)
    }
}

/// `*.wasm` files directly in `dir`, sorted.
fn wasm_files(dir: &Path) -> anyhow::Result<Vec<std::path::PathBuf>> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("reading demo plugins dir {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "wasm") && p.is_file())
        .collect();
    files.sort();
    Ok(files)
}
