//! The Wasm runtime: the only module that knows wasmtime.
//!
//! One `Engine` (component model, pooling allocator, epoch interruption), one `Linker` with the
//! host capabilities and a minimal WASI, a `PluginPre` per component (compiled once, cached on
//! disk keyed by content hash + engine compatibility), and a fresh instance for every call.

pub mod bindings;
mod state;

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use cap_std::fs::Dir;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;
use utoipa::ToSchema;
use wasmtime::component::{
    Component, HasData, HasSelf, Linker, ResourceTable, types::ComponentItem,
};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, UpdateDeadline,
};

use crate::config::Limits;
use bindings::{Event, Plugin, PluginPre, Request, Response};
pub use state::CallContext;
pub use state::HostState;

/// How often the epoch ticker advances; the deadline resolution.
const EPOCH_TICK: Duration = Duration::from_millis(5);

/// Epoch ticks a guest runs before it yields to the executor (a 10 ms time slice).
const SLICE_TICKS: u64 = 2;

/// How long a call cut off at its deadline waits for its data writes still running, to say
/// whether they were saved (the pool's own acquire timeout bounds them before this).
const WRITE_SETTLE: Duration = Duration::from_secs(15);

/// Interfaces a component may import. Everything else (sockets, HTTP, …) fails the install.
const ALLOWED_IMPORT_PREFIXES: &[&str] = &[
    "linli:plugin/",
    "wasi:clocks/",
    "wasi:random/",
    "wasi:io/",
    "wasi:cli/",
    // Rust's standard library imports these at start-up; no directory is ever preopened, so
    // they reach nothing.
    "wasi:filesystem/",
];

/// A capability a plugin asks for, with its purpose.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CapabilityRequest {
    pub name: String,
    pub purpose_zh: String,
    pub purpose_en: String,
}

/// A schedule for ticks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Schedule {
    pub name: String,
    pub cron: String,
}

/// What a plugin says about itself (the WIT `metadata` record, validated).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PluginMetadata {
    pub id: String,
    pub version: String,
    pub title_zh: String,
    pub title_en: String,
    pub description_zh: String,
    pub description_en: String,
    pub required: Vec<CapabilityRequest>,
    pub optional: Vec<CapabilityRequest>,
    pub subscriptions: Vec<String>,
    pub schedules: Vec<Schedule>,
}

/// Why a call into a plugin failed. The host survives every one of these.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The guest trapped: a panic, `unreachable`, stack overflow, or a refused memory/table
    /// growth it could not survive. The instance is dropped.
    #[error("plugin trapped: {0}")]
    Trap(String),
    /// The guest's own code ran past `limits.cpu_time_ms`: its fault, counted towards
    /// suspension.
    #[error("plugin used more than {0} ms of CPU time (limits.cpu_time_ms)")]
    CpuTime(u64),
    /// The call ran past `limits.call_timeout_ms` while waiting (for the database, a device,
    /// a busy host): not counted against the plugin. `applied`: whether a data change the
    /// call made was committed before it was cut off (the host waits for writes in flight,
    /// so this is known, not guessed) — some of what the plugin meant to do, perhaps not all.
    /// Event deliveries are retried either way (handlers take events at least once).
    #[error("plugin call took longer than {ms} ms (limits.call_timeout_ms){}", if *.applied { "; some of its changes were saved" } else { "; nothing was changed" })]
    Deadline { ms: u64, applied: bool },
    /// The database was unavailable (writing what the call asked for): try again later.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// No instance slot came free within `limits.call_timeout_ms`: the host is busy; not
    /// counted against the plugin.
    #[error("host busy: no free plugin instance within {0} ms (limits.instances)")]
    Busy(u64),
    /// The plugin answered something the host refuses to pass on.
    #[error("plugin output rejected: {0}")]
    Output(String),
    /// Host-side failure (compiling, instantiating).
    #[error("host error: {0:#}")]
    Host(anyhow::Error),
}

impl CallError {
    /// Whether this counts towards suspending the plugin: only its own faults — traps and
    /// running out of CPU time — never waiting for a slot, a lock, the database or the host.
    pub fn is_trap(&self) -> bool {
        matches!(self, CallError::Trap(_) | CallError::CpuTime(_))
    }
}

/// A component rejected at install time.
#[derive(Debug, thiserror::Error)]
pub enum ComponentError {
    #[error("组件过大 / component is {size} bytes, over limits.component_bytes = {limit}")]
    TooLarge { size: usize, limit: usize },
    #[error("不是有效的 linli 插件组件 / not a valid linli plugin component: {0}")]
    Invalid(String),
    #[error(
        "插件导入了不允许的接口 / the plugin imports {0}, which linli does not provide (no sockets, no HTTP, no filesystem access)"
    )]
    ForbiddenImport(String),
    #[error("插件元数据无效 / invalid plugin metadata: {0}")]
    Metadata(String),
    #[error(transparent)]
    Call(#[from] CallError),
}

/// Figures from one call, for metrics.
#[derive(Debug, Clone, Copy, Default)]
pub struct CallStats {
    /// Largest linear memory the instance reached, in bytes.
    pub peak_memory: u64,
    /// A capability met the database unavailable during the call.
    pub storage_unavailable: bool,
}

/// What to invoke on a fresh instance.
enum Invocation {
    Http(Request),
    Event(Event),
    Metadata,
    OnInstall,
    OnUpgrade(String),
}

enum Output {
    Http(Response),
    Unit(Result<(), String>),
    Metadata(bindings::Metadata),
}

/// Advances the engine's epoch until dropped.
struct EpochTicker {
    stop: Arc<AtomicBool>,
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The engine, linker and compiled plugins of one host.
pub struct Runtime {
    engine: Engine,
    linker: Linker<HostState>,
    limits: Arc<Limits>,
    data_dir: Arc<Dir>,
    compat: String,
    prepared: Mutex<HashMap<String, PluginPre<HostState>>>,
    /// One permit per pooling-allocator slot: calls beyond it wait instead of failing.
    slots: Arc<Semaphore>,
    _ticker: EpochTicker,
}

impl Runtime {
    /// Build the engine for `limits`. `data_dir` is the host's data directory handle; the
    /// runtime keeps its compiled artifacts in `cache/` under it.
    pub fn new(limits: &Limits, data_dir: Arc<Dir>) -> anyhow::Result<Runtime> {
        let mut pool = PoolingAllocationConfig::new();
        pool.total_component_instances(limits.instances)
            .total_core_instances(limits.instances.saturating_mul(16))
            .total_memories(limits.instances.saturating_mul(2))
            .total_tables(limits.instances.saturating_mul(16))
            .total_stacks(limits.instances)
            .max_core_instances_per_component(16)
            .max_memories_per_component(2)
            .max_tables_per_component(16)
            .max_memory_size(usize::try_from(limits.memory_bytes)?)
            .table_elements(limits.table_elements as usize)
            .max_unused_warm_slots(limits.instances.min(100))
            // Reset the first pages of a reused slot with memset instead of giving them back
            // to the kernel: a fresh instance per call otherwise pays page faults and TLB
            // shootdowns for them on every call (measured: (a) ~53 µs → ~30 µs).
            .async_stack_keep_resident(128 << 10)
            .table_keep_resident(64 << 10)
            .linear_memory_keep_resident(64 << 10);
        let mut config = Config::new();
        config
            .wasm_component_model(true)
            .epoch_interruption(true)
            .max_wasm_stack(limits.wasm_stack_bytes)
            .async_stack_size(limits.wasm_stack_bytes + (1 << 20))
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config)
            .map_err(anyhow::Error::from)
            .context("creating the wasmtime engine")?;

        let mut linker = Linker::<HostState>::new(&engine);
        add_minimal_wasi(&mut linker)?;
        Plugin::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |s| s)?;

        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let compat = format!("{:016x}", hasher.finish());

        let stop = Arc::new(AtomicBool::new(false));
        {
            let engine = engine.clone();
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("linli-epoch".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(EPOCH_TICK);
                        engine.increment_epoch();
                    }
                })
                .context("starting the epoch ticker")?;
        }
        data_dir
            .create_dir_all("cache")
            .context("creating cache/ in the data dir")?;
        data_dir
            .create_dir_all("components")
            .context("creating components/ in the data dir")?;
        Ok(Runtime {
            engine,
            linker,
            limits: Arc::new(limits.clone()),
            data_dir,
            compat,
            prepared: Mutex::new(HashMap::new()),
            slots: Arc::new(Semaphore::new(limits.instances as usize)),
            _ticker: EpochTicker { stop },
        })
    }

    /// The sha256 (hex) that names a component.
    pub fn content_hash(bytes: &[u8]) -> String {
        hex::encode(Sha256::digest(bytes))
    }

    /// Check an uploaded component: size, that it compiles, that it imports nothing beyond
    /// what linli provides, and that it exports the plugin world. Returns its hash; the
    /// compiled artifact is cached (memory and disk) for later calls.
    pub async fn load_new(
        &self,
        bytes: &[u8],
    ) -> Result<(String, PluginPre<HostState>), ComponentError> {
        if bytes.len() > self.limits.component_bytes {
            return Err(ComponentError::TooLarge {
                size: bytes.len(),
                limit: self.limits.component_bytes,
            });
        }
        let hash = Self::content_hash(bytes);
        // Nothing is written to the data dir until the component passes every check.
        let component = self
            .compile(&hash, bytes, false)
            .await
            .map_err(|e| ComponentError::Invalid(format!("{e:#}")))?;
        let ty = component.component_type();
        for (name, item) in ty.imports(&self.engine) {
            if !ALLOWED_IMPORT_PREFIXES.iter().any(|p| name.starts_with(p)) {
                return Err(ComponentError::ForbiddenImport(name.to_owned()));
            }
            if !matches!(item.ty, ComponentItem::ComponentInstance(_)) {
                return Err(ComponentError::ForbiddenImport(name.to_owned()));
            }
        }
        let pre = self
            .pre(&hash, &component)
            .map_err(|e| ComponentError::Invalid(format!("{e:#}")))?;
        self.persist(&hash, bytes, &component)
            .map_err(|e| ComponentError::Call(CallError::Host(e)))?;
        Ok((hash, pre))
    }

    /// The prepared plugin for a stored component, compiling (or loading the cached
    /// artifact) on first use. `fetch` supplies the component bytes if needed.
    pub async fn prepared<F, Fut>(
        &self,
        hash: &str,
        fetch: F,
    ) -> anyhow::Result<PluginPre<HostState>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = anyhow::Result<Vec<u8>>>,
    {
        if let Some(pre) = self.prepared.lock().expect("prepared lock").get(hash) {
            return Ok(pre.clone());
        }
        let bytes = match self.read_component_copy(hash) {
            Some(bytes) => bytes,
            None => fetch().await?,
        };
        anyhow::ensure!(
            Self::content_hash(&bytes) == hash,
            "component bytes do not match their hash {hash}"
        );
        let component = self.compile(hash, &bytes, true).await?;
        self.pre(hash, &component)
    }

    fn pre(&self, hash: &str, component: &Component) -> anyhow::Result<PluginPre<HostState>> {
        let instance_pre = self
            .linker
            .instantiate_pre(component)
            .map_err(anyhow::Error::from)
            .context("linking the component against the linli:plugin@0.1.0 world")?;
        let pre = PluginPre::new(instance_pre)
            .map_err(anyhow::Error::from)
            .context("the component does not export the linli:plugin world")?;
        self.prepared
            .lock()
            .expect("prepared lock")
            .insert(hash.to_owned(), pre.clone());
        Ok(pre)
    }

    fn read_component_copy(&self, hash: &str) -> Option<Vec<u8>> {
        self.data_dir.read(format!("components/{hash}.wasm")).ok()
    }

    fn artifact_path(&self, hash: &str) -> String {
        debug_assert!(hash.bytes().all(|b| b.is_ascii_hexdigit()));
        format!("cache/{hash}-{}.cwasm", self.compat)
    }

    /// Compile `bytes`, or load the artifact compiled for this engine earlier; with `persist`,
    /// cache a fresh compilation on disk. All file access goes through the data-dir handle;
    /// file names are built from hex digests only.
    async fn compile(&self, hash: &str, bytes: &[u8], persist: bool) -> anyhow::Result<Component> {
        let artifact = self.artifact_path(hash);
        if let Ok(serialized) = self.data_dir.read(&artifact) {
            // SAFETY: artifacts in the data dir's cache/ are written only by `persist`, from
            // `Component::serialize` of an engine with the same compatibility hash (part of
            // the file name). The data dir is trusted like the database.
            #[allow(unsafe_code)]
            let loaded = unsafe { Component::deserialize(&self.engine, &serialized) };
            match loaded {
                Ok(component) => return Ok(component),
                Err(e) => {
                    tracing::warn!(%hash, error = %e, "discarding unreadable compiled artifact")
                }
            }
        }
        let engine = self.engine.clone();
        let owned = bytes.to_vec();
        let component = tokio::task::spawn_blocking(move || Component::new(&engine, &owned))
            .await
            .context("compiler task")??;
        tracing::info!(%hash, bytes = bytes.len(), "compiled component");
        if persist {
            self.persist(hash, bytes, &component)?;
        }
        Ok(component)
    }

    /// Keep the compiled artifact and a copy of the component in the data dir.
    fn persist(&self, hash: &str, bytes: &[u8], component: &Component) -> anyhow::Result<()> {
        let artifact = self.artifact_path(hash);
        if self.data_dir.metadata(&artifact).is_err() {
            write_atomically(&self.data_dir, &artifact, &component.serialize()?)?;
        }
        let copy = format!("components/{hash}.wasm");
        if self.data_dir.metadata(&copy).is_err() {
            write_atomically(&self.data_dir, &copy, bytes)?;
        }
        Ok(())
    }

    /// Call the request handler on a fresh instance.
    pub async fn handle_http(
        &self,
        pre: &PluginPre<HostState>,
        call: CallContext,
        request: Request,
    ) -> (Result<Response, CallError>, CallStats) {
        let (out, stats) = self
            .invoke(pre, call, Invocation::Http(request), true)
            .await;
        let out = out.and_then(|o| match o {
            Output::Http(r) => self.check_response(r),
            _ => Err(CallError::Host(anyhow::anyhow!("unexpected output"))),
        });
        (out, stats)
    }

    /// Deliver an event on a fresh instance.
    pub async fn handle_event(
        &self,
        pre: &PluginPre<HostState>,
        call: CallContext,
        event: Event,
    ) -> (Result<Result<(), String>, CallError>, CallStats) {
        let (out, stats) = self.invoke(pre, call, Invocation::Event(event), true).await;
        (unit(out), stats)
    }

    /// Ask a component for its metadata (capabilities disabled) and validate it.
    pub async fn metadata(
        &self,
        pre: &PluginPre<HostState>,
        call: CallContext,
    ) -> Result<PluginMetadata, ComponentError> {
        let (out, _) = self.invoke(pre, call, Invocation::Metadata, false).await;
        match out? {
            Output::Metadata(m) => validate_metadata(m).map_err(ComponentError::Metadata),
            _ => Err(CallError::Host(anyhow::anyhow!("unexpected output")).into()),
        }
    }

    /// Run the install hook (`previous = None`) or the upgrade hook.
    pub async fn lifecycle_hook(
        &self,
        pre: &PluginPre<HostState>,
        call: CallContext,
        previous: Option<String>,
    ) -> Result<Result<(), String>, CallError> {
        let invocation = match previous {
            None => Invocation::OnInstall,
            Some(v) => Invocation::OnUpgrade(v),
        };
        unit(self.invoke(pre, call, invocation, true).await.0)
    }

    fn check_response(&self, mut r: Response) -> Result<Response, CallError> {
        let limit = self.limits.response_body_bytes;
        if r.body.len() > limit {
            return Err(CallError::Output(format!(
                "response body of {} bytes is over limits.response_body_bytes = {limit}",
                r.body.len()
            )));
        }
        if !(100..=599).contains(&r.status) {
            return Err(CallError::Output(format!(
                "invalid HTTP status {}",
                r.status
            )));
        }
        if r.headers.len() > 64 {
            return Err(CallError::Output(format!(
                "{} response headers, over 64",
                r.headers.len()
            )));
        }
        r.headers
            .retain(|h| h.name.len() + h.value.len() <= 8 << 10);
        Ok(r)
    }

    async fn invoke(
        &self,
        pre: &PluginPre<HostState>,
        call: CallContext,
        invocation: Invocation,
        capabilities: bool,
    ) -> (Result<Output, CallError>, CallStats) {
        let timeout_ms = self.limits.call_timeout_ms;
        let deadline = Duration::from_millis(timeout_ms);
        // Waiting for a free slot counts against the deadline too.
        let permit = match tokio::time::timeout(deadline, self.slots.clone().acquire_owned()).await
        {
            Ok(Ok(p)) => p,
            Ok(Err(_)) => {
                return (
                    Err(CallError::Host(anyhow::anyhow!("runtime closed"))),
                    CallStats::default(),
                );
            }
            Err(_) => return (Err(CallError::Busy(timeout_ms)), CallStats::default()),
        };
        let scope = call.scope.clone();
        let request_id = call.request_id.clone();
        let mut store = Store::new(
            &self.engine,
            HostState::new(call, self.limits.clone(), capabilities),
        );
        store.limiter(|s| &mut s.limiter);
        store.call_hook(|mut ctx, hook| {
            ctx.data_mut().cpu.on(hook);
            Ok(())
        });
        // Time-slice the guest: every SLICE_TICKS epochs it yields to the async executor, so
        // a spinning plugin cannot starve other requests on the same worker thread. Past its
        // CPU time it is interrupted (its fault: `CallError::CpuTime`); past the wall-clock
        // deadline too (`CallError::Deadline`, not counted against it).
        let cpu_limit = self.limits.cpu_time();
        let started = std::time::Instant::now();
        store.set_epoch_deadline(SLICE_TICKS);
        store.epoch_deadline_callback(move |mut ctx| {
            let cpu = &mut ctx.data_mut().cpu;
            if cpu.used_ms() >= cpu_limit {
                cpu.exhausted = true;
                return Ok(UpdateDeadline::Interrupt);
            }
            if started.elapsed() >= deadline {
                return Ok(UpdateDeadline::Interrupt);
            }
            Ok(UpdateDeadline::YieldCustom(SLICE_TICKS, cpu.yield_now()))
        });

        let run = async {
            let instance = pre.instantiate_async(&mut store).await?;
            Ok::<_, wasmtime::Error>(match invocation {
                Invocation::Http(req) => Output::Http(
                    instance
                        .linli_plugin_http()
                        .call_handle(&mut store, &req)
                        .await?,
                ),
                Invocation::Event(ev) => Output::Unit(
                    instance
                        .linli_plugin_events()
                        .call_handle_event(&mut store, &ev)
                        .await?,
                ),
                Invocation::Metadata => Output::Metadata(
                    instance
                        .linli_plugin_lifecycle()
                        .call_describe(&mut store)
                        .await?,
                ),
                Invocation::OnInstall => Output::Unit(
                    instance
                        .linli_plugin_lifecycle()
                        .call_on_install(&mut store)
                        .await?,
                ),
                Invocation::OnUpgrade(prev) => Output::Unit(
                    instance
                        .linli_plugin_lifecycle()
                        .call_on_upgrade(&mut store, &prev)
                        .await?,
                ),
            })
        };
        let result = match tokio::time::timeout(deadline, run).await {
            Ok(Ok(out)) => Ok(out),
            Ok(Err(e)) => Err(self.classify(e, store.data())),
            Err(_) if store.data().cpu.exhausted => Err(CallError::CpuTime(self.limits.cpu_time())),
            Err(_) => Err(CallError::Deadline {
                ms: timeout_ms,
                applied: false,
            }),
        };
        // The instance is done with: dropped (its pooling slot freed) before its permit goes
        // to the next call, which may need that slot.
        let mut state = store.into_data();
        drop(permit);
        // Cut off at the deadline: wait for its writes still running, then say whether a
        // change of the call was saved.
        let result = match result {
            Err(CallError::Deadline { ms, .. }) => Err(CallError::Deadline {
                ms,
                applied: state.writes.settle(WRITE_SETTLE).await,
            }),
            other => other,
        };
        // The call's writes were committed without waiting for the disk: nothing of it is
        // answered before they are on it.
        let result = if state.writes.committed() {
            match state.call.db.flush().await {
                Ok(()) => result,
                Err(e) => Err(CallError::Unavailable(format!(
                    "the call's change could not be confirmed on disk: {e}"
                ))),
            }
        } else {
            result
        };
        // What the call asked the outbox for and no data change carried: written now if the
        // call finished, dropped with the call if it did not.
        let result = match result {
            Ok(out) if !state.staged.is_empty() => {
                let staged = std::mem::take(&mut state.staged);
                match crate::storage::outbox::write_staged(&state.call.db, &staged).await {
                    Ok(()) => Ok(out),
                    Err(e) => Err(CallError::Unavailable(format!("writing the outbox: {e}"))),
                }
            }
            other => other,
        };
        let stats = CallStats {
            peak_memory: state.limiter.peak_memory,
            storage_unavailable: state.storage_unavailable,
        };
        for (stream, pipe) in [("stdout", &state.stdout), ("stderr", &state.stderr)] {
            let text = pipe.contents();
            for line in String::from_utf8_lossy(&text)
                .lines()
                .filter(|l| !l.trim().is_empty())
            {
                let line = crate::capabilities::log::truncate(line, self.limits.log_line_bytes);
                tracing::info!(
                    target: "plugin",
                    tenant = %scope.tenant,
                    plugin = %scope.plugin,
                    request_id = %request_id,
                    stream,
                    "{line}"
                );
            }
        }
        if let Err(e) = &result {
            tracing::warn!(tenant = %scope.tenant, plugin = %scope.plugin, request_id = %request_id, error = %e, "plugin call failed");
        }
        (result, stats)
    }

    fn classify(&self, e: wasmtime::Error, state: &HostState) -> CallError {
        if let Some(trap) = e.downcast_ref::<wasmtime::Trap>() {
            let reason = match trap {
                wasmtime::Trap::Interrupt if state.cpu.exhausted => {
                    return CallError::CpuTime(self.limits.cpu_time());
                }
                wasmtime::Trap::Interrupt => {
                    return CallError::Deadline {
                        ms: self.limits.call_timeout_ms,
                        applied: false,
                    };
                }
                wasmtime::Trap::StackOverflow => format!(
                    "stack overflow (limits.wasm_stack_bytes = {})",
                    self.limits.wasm_stack_bytes
                ),
                _ if state.limiter.memory_refused => format!(
                    "memory limit reached (limits.memory_bytes = {}): {trap}",
                    self.limits.memory_bytes
                ),
                _ if state.limiter.table_refused => format!(
                    "table limit reached (limits.table_elements = {}): {trap}",
                    self.limits.table_elements
                ),
                wasmtime::Trap::UnreachableCodeReached => {
                    "unreachable executed (the plugin panicked or aborted)".to_owned()
                }
                other => other.to_string(),
            };
            return CallError::Trap(reason);
        }
        if state.limiter.memory_refused {
            return CallError::Trap(format!(
                "memory limit reached (limits.memory_bytes = {}): {e:#}",
                self.limits.memory_bytes
            ));
        }
        if state.limiter.table_refused {
            return CallError::Trap(format!(
                "table limit reached (limits.table_elements = {}): {e:#}",
                self.limits.table_elements
            ));
        }
        // Errors raised while lowering/lifting guest values (bad pointers, invalid UTF-8,
        // out-of-bounds lists) are the guest's fault too.
        CallError::Trap(format!("{e:#}"))
    }
}

fn unit(out: Result<Output, CallError>) -> Result<Result<(), String>, CallError> {
    match out? {
        Output::Unit(r) => Ok(r),
        _ => Err(CallError::Host(anyhow::anyhow!("unexpected output"))),
    }
}

/// Write a file under the data dir: to a temporary name first, then renamed into place.
fn write_atomically(dir: &Dir, path: &str, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = format!("{path}.tmp-{}", uuid::Uuid::new_v4().simple());
    dir.write(&tmp, bytes)
        .with_context(|| format!("writing {tmp}"))?;
    dir.rename(&tmp, dir, path)
        .with_context(|| format!("renaming to {path}"))?;
    Ok(())
}

/// Link only what a Rust `wasm32-wasip2` guest needs to start: clocks, random, CLI streams
/// (stdout/stderr captured, stdin empty, no environment), and the filesystem interfaces with
/// nothing preopened. No sockets.
fn add_minimal_wasi(linker: &mut Linker<HostState>) -> anyhow::Result<()> {
    use wasmtime_wasi::cli::WasiCli;
    use wasmtime_wasi::clocks::WasiClocks;
    use wasmtime_wasi::filesystem::WasiFilesystem;
    use wasmtime_wasi::p2::bindings::{cli, clocks, filesystem, random};
    use wasmtime_wasi::random::WasiRandom;
    use wasmtime_wasi::{
        cli::WasiCliView, clocks::WasiClocksView, filesystem::WasiFilesystemView,
        random::WasiRandomView,
    };

    struct HasIo;
    impl HasData for HasIo {
        type Data<'a> = &'a mut ResourceTable;
    }
    let l = linker;
    wasmtime_wasi_io::bindings::wasi::io::error::add_to_linker::<HostState, HasIo>(l, |t| {
        &mut t.table
    })?;
    wasmtime_wasi_io::bindings::wasi::io::poll::add_to_linker::<HostState, HasIo>(l, |t| {
        &mut t.table
    })?;
    wasmtime_wasi_io::bindings::wasi::io::streams::add_to_linker::<HostState, HasIo>(l, |t| {
        &mut t.table
    })?;
    clocks::wall_clock::add_to_linker::<HostState, WasiClocks>(l, HostState::clocks)?;
    clocks::monotonic_clock::add_to_linker::<HostState, WasiClocks>(l, HostState::clocks)?;
    random::random::add_to_linker::<HostState, WasiRandom>(l, HostState::random)?;
    random::insecure::add_to_linker::<HostState, WasiRandom>(l, HostState::random)?;
    random::insecure_seed::add_to_linker::<HostState, WasiRandom>(l, HostState::random)?;
    cli::exit::add_to_linker::<HostState, WasiCli>(l, HostState::cli)?;
    cli::environment::add_to_linker::<HostState, WasiCli>(l, HostState::cli)?;
    cli::stdin::add_to_linker::<HostState, WasiCli>(l, HostState::cli)?;
    cli::stdout::add_to_linker::<HostState, WasiCli>(l, HostState::cli)?;
    cli::stderr::add_to_linker::<HostState, WasiCli>(l, HostState::cli)?;
    cli::terminal_input::add_to_linker::<HostState, WasiCli>(l, HostState::cli)?;
    cli::terminal_output::add_to_linker::<HostState, WasiCli>(l, HostState::cli)?;
    cli::terminal_stdin::add_to_linker::<HostState, WasiCli>(l, HostState::cli)?;
    cli::terminal_stdout::add_to_linker::<HostState, WasiCli>(l, HostState::cli)?;
    cli::terminal_stderr::add_to_linker::<HostState, WasiCli>(l, HostState::cli)?;
    filesystem::preopens::add_to_linker::<HostState, WasiFilesystem>(l, HostState::filesystem)?;
    filesystem::types::add_to_linker::<HostState, WasiFilesystem>(l, HostState::filesystem)?;
    Ok(())
}

const MAX_TEXT: usize = 1_000;
const MAX_CAPABILITIES: usize = 64;

/// Validate what a component says about itself: ids, versions and capability names.
fn validate_metadata(m: bindings::Metadata) -> Result<PluginMetadata, String> {
    let id_ok = m.id.len() <= 63
        && m.id.starts_with(|c: char| c.is_ascii_lowercase())
        && m.id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !id_ok {
        return Err(format!("id {:?} must match [a-z][a-z0-9-]{{0,62}}", m.id));
    }
    let parts: Vec<&str> = m
        .version
        .split(['-', '+'])
        .next()
        .unwrap_or("")
        .split('.')
        .collect();
    if m.version.len() > 64 || parts.len() != 3 || parts.iter().any(|p| p.parse::<u64>().is_err()) {
        return Err(format!(
            "version {:?} must be semantic (MAJOR.MINOR.PATCH)",
            m.version
        ));
    }
    for (name, text) in [("title-zh", &m.title_zh), ("title-en", &m.title_en)] {
        if text.trim().is_empty() || text.chars().count() > 100 {
            return Err(format!("{name} must be 1–100 characters"));
        }
    }
    for (name, text) in [
        ("description-zh", &m.description_zh),
        ("description-en", &m.description_en),
    ] {
        if text.chars().count() > MAX_TEXT {
            return Err(format!("{name} is over {MAX_TEXT} characters"));
        }
    }
    if m.required.len() + m.optional.len() > MAX_CAPABILITIES {
        return Err(format!("more than {MAX_CAPABILITIES} capabilities"));
    }
    let caps = |list: Vec<bindings::exports::linli::plugin::lifecycle::CapabilityRequest>| {
        list.into_iter()
            .map(|c| {
                if !valid_capability(&c.name) {
                    return Err(format!("unknown capability {:?}", c.name));
                }
                if c.purpose_zh.trim().is_empty() || c.purpose_en.trim().is_empty() {
                    return Err(format!(
                        "capability {:?} needs a purpose in zh and en",
                        c.name
                    ));
                }
                if c.purpose_zh.chars().count() > MAX_TEXT
                    || c.purpose_en.chars().count() > MAX_TEXT
                {
                    return Err(format!(
                        "capability {:?}: purpose over {MAX_TEXT} characters",
                        c.name
                    ));
                }
                Ok(CapabilityRequest {
                    name: c.name,
                    purpose_zh: c.purpose_zh,
                    purpose_en: c.purpose_en,
                })
            })
            .collect::<Result<Vec<_>, String>>()
    };
    let topic_ok = |t: &str| {
        !t.is_empty()
            && t.len() <= 128
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_./".contains(&b))
    };
    if m.subscriptions.len() > MAX_CAPABILITIES || m.subscriptions.iter().any(|t| !topic_ok(t)) {
        return Err("subscriptions: at most 64 topics of [A-Za-z0-9-_./]{1,128}".into());
    }
    if m.schedules.len() > MAX_CAPABILITIES
        || m.schedules
            .iter()
            .any(|s| !topic_ok(&s.name) || crate::platform::events::parse_cron(&s.cron).is_err())
    {
        return Err("schedules: at most 64, each a name and a five-field cron expression".into());
    }
    Ok(PluginMetadata {
        required: caps(m.required)?,
        optional: caps(m.optional)?,
        id: m.id,
        version: m.version,
        title_zh: m.title_zh,
        title_en: m.title_en,
        description_zh: m.description_zh,
        description_en: m.description_en,
        subscriptions: m.subscriptions,
        schedules: m
            .schedules
            .into_iter()
            .map(|s| Schedule {
                name: s.name,
                cron: s.cron,
            })
            .collect(),
    })
}

/// Capability names: `data`, `log`, `identity[.field]`, `device.<kind>`,
/// `messaging.notify`, `messaging.publish`.
pub fn valid_capability(name: &str) -> bool {
    const IDENTITY_FIELDS: &[&str] = &[
        "name",
        "phone",
        "id-number",
        "birth-date",
        "household",
        "address",
        "tags",
    ];
    match name.split_once('.') {
        None => matches!(name, "data" | "log" | "identity"),
        Some(("identity", field)) => IDENTITY_FIELDS.contains(&field),
        Some(("device", kind)) => crate::storage::devices::DeviceKind::ALL
            .iter()
            .any(|k| k.as_str() == kind),
        Some(("messaging", what)) => matches!(what, "notify" | "publish"),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capability_names() {
        for ok in [
            "data",
            "log",
            "identity",
            "identity.phone",
            "device.gate",
            "device.emergency-button",
            "messaging.notify",
        ] {
            assert!(valid_capability(ok), "{ok}");
        }
        for bad in [
            "",
            "fs",
            "identity.password",
            "device.",
            "device.Gate",
            "device.toaster",
            "messaging.spam",
            "data.x",
        ] {
            assert!(!valid_capability(bad), "{bad}");
        }
    }
}
