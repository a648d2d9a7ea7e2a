//! Prometheus metrics, per tenant and plugin: calls, errors, traps, deadline hits, latency
//! and instance memory. Served at `GET /metrics` in the text exposition format.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::runtime::{CallError, CallStats};

/// Labels of every per-plugin metric.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PluginLabels {
    pub tenant: String,
    pub plugin: String,
}

fn latency_histogram() -> Histogram {
    // 50 µs .. ~26 s
    Histogram::new(exponential_buckets(0.00005, 2.0, 20))
}

fn memory_histogram() -> Histogram {
    // 64 KiB .. 4 GiB
    Histogram::new(exponential_buckets(65536.0, 2.0, 17))
}

/// Labels of the device-message counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeviceLabels {
    /// `accepted`, `rate_limited`, `invalid`, `unknown_device`, `disabled`.
    pub outcome: String,
}

/// The host's metrics.
pub struct Metrics {
    registry: Registry,
    calls: Family<PluginLabels, Counter>,
    errors: Family<PluginLabels, Counter>,
    traps: Family<PluginLabels, Counter>,
    deadlines: Family<PluginLabels, Counter>,
    suspensions: Family<PluginLabels, Counter>,
    invalid_pages: Family<PluginLabels, Counter>,
    device_messages: Family<DeviceLabels, Counter>,
    device_commands: Family<DeviceLabels, Counter>,
    sign_in_failures: Counter,
    sms_failures: Counter,
    busy: Family<PluginLabels, Counter>,
    latency: Family<PluginLabels, Histogram, fn() -> Histogram>,
    memory: Family<PluginLabels, Histogram, fn() -> Histogram>,
    /// 1 while the broker link is up.
    pub(crate) mqtt_connected: Gauge,
    /// Messages received from the broker and not yet acknowledged (the link's lag).
    pub(crate) mqtt_unacknowledged: Gauge,
    pub(crate) mqtt_reconnects: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("linli");
        let calls = Family::<PluginLabels, Counter>::default();
        let errors = Family::<PluginLabels, Counter>::default();
        let traps = Family::<PluginLabels, Counter>::default();
        let deadlines = Family::<PluginLabels, Counter>::default();
        let suspensions = Family::<PluginLabels, Counter>::default();
        let invalid_pages = Family::<PluginLabels, Counter>::default();
        let device_messages = Family::<DeviceLabels, Counter>::default();
        let device_commands = Family::<DeviceLabels, Counter>::default();
        let sign_in_failures = Counter::default();
        let sms_failures = Counter::default();
        let busy = Family::<PluginLabels, Counter>::default();
        let mqtt_connected = Gauge::default();
        let mqtt_unacknowledged = Gauge::default();
        let mqtt_reconnects = Counter::default();
        registry.register(
            "mqtt_connected",
            "1 while the link to the MQTT broker is up",
            mqtt_connected.clone(),
        );
        registry.register(
            "mqtt_unacknowledged",
            "Messages from the broker being processed, not yet acknowledged",
            mqtt_unacknowledged.clone(),
        );
        registry.register(
            "mqtt_connects",
            "Connections made to the MQTT broker (the first and every reconnect)",
            mqtt_reconnects.clone(),
        );
        let latency = Family::<PluginLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram,
        );
        let memory = Family::<PluginLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            memory_histogram,
        );
        registry.register("plugin_calls", "Calls into plugins", calls.clone());
        registry.register(
            "plugin_errors",
            "Plugin calls that failed (trap, deadline, rejected output, host error)",
            errors.clone(),
        );
        registry.register("plugin_traps", "Plugin calls that trapped", traps.clone());
        registry.register(
            "plugin_deadline_hits",
            "Plugin calls stopped for using up their CPU time (limits.cpu_time_ms)",
            deadlines.clone(),
        );
        registry.register(
            "plugin_suspensions",
            "Times a plugin was suspended for trapping",
            suspensions.clone(),
        );
        registry.register(
            "plugin_invalid_pages",
            "Pages refused by the host's check of the page schema",
            invalid_pages.clone(),
        );
        registry.register(
            "device_messages",
            "Messages from devices, by outcome",
            device_messages.clone(),
        );
        registry.register(
            "device_commands",
            "Commands sent to devices, by outcome (acknowledged, refused, timed-out)",
            device_commands.clone(),
        );
        registry.register(
            "sign_in_failures",
            "Failed sign-ins (wrong password, code or second factor), kept out of the audit chain",
            sign_in_failures.clone(),
        );
        registry.register(
            "sign_in_sms_failures",
            "Sign-in codes the SMS gateway did not take (the code is dropped and not counted against the phone)",
            sms_failures.clone(),
        );
        registry.register(
            "plugin_busy",
            "Plugin calls that waited out their deadline for a slot, the database or the host (not the plugin's fault)",
            busy.clone(),
        );
        registry.register(
            "plugin_call_seconds",
            "Latency of plugin calls",
            latency.clone(),
        );
        registry.register(
            "plugin_instance_memory_bytes",
            "Peak linear memory of plugin instances",
            memory.clone(),
        );
        Metrics {
            registry,
            calls,
            errors,
            traps,
            deadlines,
            suspensions,
            invalid_pages,
            device_messages,
            device_commands,
            sign_in_failures,
            sms_failures,
            busy,
            latency,
            memory,
            mqtt_connected,
            mqtt_unacknowledged,
            mqtt_reconnects,
        }
    }

    /// The counter of unsent sign-in codes (shared: incremented from a spawned send).
    pub fn sms_failures(&self) -> Counter {
        self.sms_failures.clone()
    }

    /// A failed sign-in.
    pub fn sign_in_failed(&self) {
        self.sign_in_failures.inc();
    }

    /// Record one finished call.
    pub fn observe<T>(
        &self,
        labels: &PluginLabels,
        seconds: f64,
        result: &Result<T, CallError>,
        stats: CallStats,
    ) {
        self.calls.get_or_create(labels).inc();
        self.latency.get_or_create(labels).observe(seconds);
        if stats.peak_memory > 0 {
            self.memory
                .get_or_create(labels)
                .observe(stats.peak_memory as f64);
        }
        if let Err(e) = result {
            self.errors.get_or_create(labels).inc();
            match e {
                CallError::Trap(_) => {
                    self.traps.get_or_create(labels).inc();
                }
                CallError::CpuTime(_) => {
                    self.deadlines.get_or_create(labels).inc();
                }
                CallError::Deadline { .. } | CallError::Busy(_) | CallError::Unavailable(_) => {
                    self.busy.get_or_create(labels).inc();
                }
                _ => {}
            }
        }
    }

    pub fn suspended(&self, labels: &PluginLabels) {
        self.suspensions.get_or_create(labels).inc();
    }

    pub fn invalid_page(&self, tenant: &str, plugin: &str) {
        self.invalid_pages
            .get_or_create(&PluginLabels {
                tenant: tenant.to_owned(),
                plugin: plugin.to_owned(),
            })
            .inc();
    }

    pub fn device_message(&self, outcome: &str) {
        self.device_messages
            .get_or_create(&DeviceLabels {
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    /// The counter of device commands by outcome, for the command bus.
    pub fn device_commands(&self) -> Family<DeviceLabels, Counter> {
        self.device_commands.clone()
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
