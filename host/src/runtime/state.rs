//! The per-call `Store` data: who is calling (scope), the capabilities' state, WASI's minimal
//! context, and the resource limiter.

use std::collections::BTreeSet;
use std::sync::Arc;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::capabilities::log::LogLimiter;
use crate::config::Limits;
use crate::identity::Caller;
use crate::storage::Db;
use crate::storage::kv::Scope;

/// Everything about one call the host knows and the guest cannot change.
#[derive(Clone, Debug)]
pub struct CallContext {
    /// The (tenant, plugin) every capability call is confined to.
    pub scope: Scope,
    /// The gateway's request id (or an event's id), carried into every log line.
    pub request_id: String,
    pub db: Db,
    /// The installation's log budget, shared by all its calls.
    pub log_limiter: Arc<LogLimiter>,
    /// Root-first path of the tenant the call is for (the installation's tenant or a place
    /// below it): the identity capability never reaches outside its subtree.
    pub served: Vec<String>,
    /// Who is calling; `None` for anonymous requests, events and hooks.
    pub caller: Option<Arc<Caller>>,
    /// The capabilities granted to the installation, read when the call starts: a revoke
    /// takes effect on the next call.
    pub grants: Arc<BTreeSet<String>>,
    /// Where device commands go out and their answers come back.
    pub commands: Arc<crate::commands::CommandBus>,
}

impl CallContext {
    /// Whether the installation holds `capability`.
    pub fn granted(&self, capability: &str) -> bool {
        self.grants.contains(capability)
    }
}

/// The data of one `Store`: one call of one plugin instance.
pub struct HostState {
    pub(crate) call: CallContext,
    /// Whether capability imports answer at all. `false` while the host asks a component for
    /// its metadata, which must not touch data.
    pub(crate) capabilities_enabled: bool,
    pub(crate) limits: Arc<Limits>,
    pub(crate) wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) limiter: Limiter,
    pub(crate) stdout: MemoryOutputPipe,
    pub(crate) stderr: MemoryOutputPipe,
    /// Device commands sent in this call (at most `MAX_COMMANDS_PER_CALL`).
    pub(crate) commands_sent: u32,
    /// Notifications and events this call asked for, not written yet: they go into the
    /// outbox with the call's next data change, in its transaction, or when the call ends
    /// without trapping (a call that traps sends none).
    pub(crate) staged: Vec<crate::storage::outbox::Staged>,
    /// The guest's own CPU time in this call.
    pub(crate) cpu: CpuClock,
}

impl HostState {
    pub(crate) fn new(call: CallContext, limits: Arc<Limits>, capabilities_enabled: bool) -> Self {
        let stdout = MemoryOutputPipe::new(limits.stdio_bytes);
        let stderr = MemoryOutputPipe::new(limits.stdio_bytes);
        // No preopened directories, no environment, no arguments, no network: only clocks,
        // random and the two captured output streams are usable.
        let wasi = WasiCtx::builder()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        HostState {
            limiter: Limiter::new(limits.memory_bytes, limits.table_elements),
            call,
            capabilities_enabled,
            limits,
            wasi,
            table: ResourceTable::new(),
            stdout,
            stderr,
            commands_sent: 0,
            staged: Vec::new(),
            cpu: CpuClock::new(),
        }
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// The time a call's guest code itself runs: started when the host calls into the guest or a
/// host function returns to it, stopped when the guest calls a host function or returns, and
/// — when the guest yields its time slice to the executor — restarted only once the executor
/// runs it again. Waiting for the database, a device, a lock or a busy executor is therefore
/// not the guest's time; only what its own code burns is.
#[derive(Debug)]
pub struct CpuClock {
    origin: std::time::Instant,
    /// Since when (ns after `origin`) the guest has been running, if it is.
    running_since: Option<u64>,
    used_ns: u64,
    /// When (ns after `origin`) the guest was last resumed after yielding; set by the yield's
    /// future, which runs outside the store.
    resumed: Arc<std::sync::atomic::AtomicU64>,
    /// The call was interrupted for using up its CPU time.
    pub(crate) exhausted: bool,
}

impl CpuClock {
    fn new() -> Self {
        CpuClock {
            origin: std::time::Instant::now(),
            running_since: None,
            used_ns: 0,
            resumed: Arc::new(std::sync::atomic::AtomicU64::new(0)),
            exhausted: false,
        }
    }

    fn now(&self) -> u64 {
        self.origin.elapsed().as_nanos() as u64
    }

    /// Add the running stretch up to now; keep running if `still`.
    fn settle(&mut self, still: bool) {
        let now = self.now();
        if let Some(since) = self.running_since {
            let resumed = self.resumed.load(std::sync::atomic::Ordering::Acquire);
            let from = since.max(resumed);
            self.used_ns += now.saturating_sub(from);
        }
        self.running_since = still.then_some(now);
    }

    /// A boundary between guest and host.
    pub(crate) fn on(&mut self, hook: wasmtime::CallHook) {
        match hook {
            wasmtime::CallHook::CallingWasm | wasmtime::CallHook::ReturningFromHost => {
                self.settle(false);
                self.running_since = Some(self.now());
            }
            wasmtime::CallHook::ReturningFromWasm | wasmtime::CallHook::CallingHost => {
                self.settle(false);
            }
        }
    }

    /// The CPU time used so far (the guest is running: its current stretch counts).
    pub(crate) fn used_ms(&mut self) -> u64 {
        self.settle(self.running_since.is_some());
        self.used_ns / 1_000_000
    }

    /// A future that yields to the executor once and then marks the guest resumed.
    pub(crate) fn yield_now(
        &self,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
        let resumed = self.resumed.clone();
        let origin = self.origin;
        Box::pin(async move {
            tokio::task::yield_now().await;
            resumed.store(
                origin.elapsed().as_nanos() as u64,
                std::sync::atomic::Ordering::Release,
            );
        })
    }
}

/// Enforces memory and table limits per instance and remembers the peak and any refusal, so
/// a trap that follows a refused growth is reported as the limit it is.
#[derive(Debug)]
pub struct Limiter {
    memory_bytes: u64,
    table_elements: u32,
    pub peak_memory: u64,
    pub memory_refused: bool,
    pub table_refused: bool,
}

impl Limiter {
    fn new(memory_bytes: u64, table_elements: u32) -> Self {
        Limiter {
            memory_bytes,
            table_elements,
            peak_memory: 0,
            memory_refused: false,
            table_refused: false,
        }
    }
}

impl wasmtime::ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired as u64 > self.memory_bytes {
            self.memory_refused = true;
            return Ok(false);
        }
        self.peak_memory = self.peak_memory.max(desired as u64);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.table_elements as usize {
            self.table_refused = true;
            return Ok(false);
        }
        Ok(true)
    }
}
