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
    /// The call's data writes: whether one committed, and which are still running.
    pub(crate) writes: Arc<Writes>,
    /// A capability met the database unavailable during this call (the caller is then told
    /// 503 with `Retry-After`, not the plugin's 500).
    pub(crate) storage_unavailable: bool,
}

/// A call's data writes. Each runs as its own task, so a call cut off at its deadline never
/// leaves a write half-done with an unknown outcome: the host waits for the writes still
/// running and then knows whether any change of the call was committed — though not whether
/// the plugin had more to write.
#[derive(Default)]
pub(crate) struct Writes {
    in_flight: std::sync::atomic::AtomicUsize,
    committed: std::sync::atomic::AtomicBool,
    idle: tokio::sync::Notify,
}

impl Writes {
    /// Run one write to completion, even if the call awaiting it is dropped. `changed` says
    /// whether its result changed anything (a refused compare-and-swap or batch did not).
    pub(crate) async fn run<T: Send + 'static>(
        self: &Arc<Self>,
        write: impl std::future::Future<Output = crate::storage::Result<T>> + Send + 'static,
        changed: fn(&T) -> bool,
    ) -> crate::storage::Result<T> {
        use std::sync::atomic::Ordering;
        /// Counts the write out however its task ends (a panic included).
        struct InFlight(Arc<Writes>);
        impl Drop for InFlight {
            fn drop(&mut self) {
                self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
                self.0.idle.notify_waiters();
            }
        }
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        let guard = InFlight(self.clone());
        let task = tokio::spawn(async move {
            // Committed without waiting for the disk; the runtime flushes before the call's
            // answer goes out (`Db::flush`).
            let r = crate::storage::relaxed_commits(write).await;
            if r.as_ref().is_ok_and(changed) {
                guard.0.committed.store(true, Ordering::SeqCst);
            }
            drop(guard);
            r
        });
        match task.await {
            Ok(r) => r,
            Err(e) => Err(crate::storage::StorageError::Invalid(format!(
                "a data write failed: {e}"
            ))),
        }
    }

    /// Whether a write of the call was committed (so far).
    pub(crate) fn committed(&self) -> bool {
        self.committed.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Wait (at most `limit`) for the writes still running; whether a change of the call
    /// was committed — `true` too if a write is still running after `limit`, since it may yet.
    pub(crate) async fn settle(&self, limit: std::time::Duration) -> bool {
        use std::sync::atomic::Ordering;
        let wait = async {
            loop {
                let idle = self.idle.notified();
                tokio::pin!(idle);
                idle.as_mut().enable();
                if self.in_flight.load(Ordering::SeqCst) == 0 {
                    return;
                }
                idle.await;
            }
        };
        if tokio::time::timeout(limit, wait).await.is_err() {
            return true;
        }
        self.committed.load(Ordering::SeqCst)
    }
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
            writes: Arc::default(),
            storage_unavailable: false,
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

/// The CPU time a call's guest code itself uses, on the thread clock
/// (`CLOCK_THREAD_CPUTIME_ID`): a stretch starts when the host calls into the guest or a
/// host function returns to it, and ends when the guest calls a host function or returns;
/// when the guest yields its time slice, the next stretch starts when the executor runs it
/// again, on whichever thread that is. Waiting — for the database, a device, a lock, an
/// executor busy with others, or a thread the OS gave to someone else — is not the guest's
/// time; only what its own code burns is.
#[derive(Debug)]
pub struct CpuClock {
    /// The thread CPU clock when the current stretch started, if the guest is running.
    running_since: Option<std::time::Duration>,
    used: std::time::Duration,
    /// Set by a yield's future when the executor resumes the guest: the thread CPU clock
    /// then (ns), for the stretch that starts there.
    resumed: Arc<std::sync::Mutex<Option<std::time::Duration>>>,
    /// The call was interrupted for using up its CPU time.
    pub(crate) exhausted: bool,
}

/// This thread's CPU time so far.
fn thread_cpu() -> std::time::Duration {
    cpu_time::ThreadTime::try_now()
        .map(|t| t.as_duration())
        .unwrap_or_default()
}

impl CpuClock {
    fn new() -> Self {
        CpuClock {
            running_since: None,
            used: std::time::Duration::ZERO,
            resumed: Arc::new(std::sync::Mutex::new(None)),
            exhausted: false,
        }
    }

    /// Pick up a stretch a yield's resumption started.
    fn resume(&mut self) {
        if let Some(at) = self.resumed.lock().map(|mut r| r.take()).unwrap_or(None)
            && self.running_since.is_none()
        {
            self.running_since = Some(at);
        }
    }

    /// End the current stretch (adding it up).
    fn stop(&mut self) {
        self.resume();
        if let Some(since) = self.running_since.take() {
            self.used += thread_cpu().saturating_sub(since);
        }
    }

    /// A boundary between guest and host.
    pub(crate) fn on(&mut self, hook: wasmtime::CallHook) {
        self.stop();
        if matches!(
            hook,
            wasmtime::CallHook::CallingWasm | wasmtime::CallHook::ReturningFromHost
        ) {
            self.running_since = Some(thread_cpu());
        }
    }

    /// The CPU time used so far, in ms (the guest is running: its stretch so far counts and
    /// the stretch goes on).
    pub(crate) fn used_ms(&mut self) -> u64 {
        self.stop();
        self.running_since = Some(thread_cpu());
        self.used.as_millis() as u64
    }

    /// Yield to the executor: the running stretch ends here, and the returned future marks
    /// where the next one starts once the executor runs the guest again.
    pub(crate) fn yield_now(
        &mut self,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
        self.stop();
        let resumed = self.resumed.clone();
        Box::pin(async move {
            tokio::task::yield_now().await;
            if let Ok(mut r) = resumed.lock() {
                *r = Some(thread_cpu());
            }
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
