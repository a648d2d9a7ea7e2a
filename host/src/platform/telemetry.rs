//! Messages from devices: checked (device known, at the tenant the topic names, active, within
//! its rate, payload valid for its kind), stamped, and handed to every plugin serving the
//! device's place that holds the grant for its kind (`device.<kind>`), through the exported
//! event handler. The same path serves the MQTT link, the HTTP device endpoint and
//! `linli device simulate`.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::{Platform, PlatformError};
use crate::runtime::bindings::Event;
use crate::runtime::bindings::exports::linli::plugin::events::Telemetry;
use crate::storage::devices::{self, Device, DeviceKind, DeviceStatus};
use crate::storage::installs::{self, InstallRow, Status};
use crate::storage::outbox::{self, Entry};
use crate::storage::{now_ms, tenants};

/// What became of one device message.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Ingested {
    pub device: String,
    pub kind: DeviceKind,
    /// When the host received it (ms since the epoch): the time plugins see.
    pub received_at_ms: i64,
    /// The message was received before (the same `id`, or a redelivery): nothing new was
    /// queued and no plugin is called again.
    pub duplicate: bool,
    /// Each plugin it is for, and how far it got.
    pub deliveries: Vec<Delivery>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Delivery {
    /// Where the plugin is installed.
    pub tenant: String,
    pub plugin: String,
    /// `ok` (the handler took it), or `queued: <why>`: stored, and handed to the plugin
    /// again with backoff until it takes it.
    pub outcome: String,
}

impl Ingested {
    /// How many plugins' handlers took the message.
    pub fn delivered(&self) -> usize {
        self.deliveries.iter().filter(|d| d.outcome == "ok").count()
    }
}

/// A device message in the outbox (kind `telemetry`), one entry per plugin it is for.
#[derive(Debug, Serialize, Deserialize)]
struct TelemetryPayload {
    device: String,
    kind: String,
    received_at_ms: i64,
    /// The checked body, JSON.
    body: String,
    /// The device's place and its ancestors: the plugin is called for it.
    served: Vec<String>,
}

/// The key that makes a repeat of one message a no-op: the device's own message `id`, or
/// else its clock (`ts`) with the body's hash. A message with neither is a new message each
/// time (a button pressed twice is two presses) unless it is a broker's redelivery, which
/// [`Platform::ingest_message`] matches to the original by the body's hash.
fn message_key(device: &str, body: &Map<String, Value>, received: i64) -> String {
    if let Some(Value::String(id)) = body.get("id") {
        return format!("{device}/id:{id}");
    }
    let hash = body_hash(body);
    match body.get("ts").and_then(Value::as_i64) {
        Some(ts) => format!("{device}/ts:{ts}:{hash}"),
        None => format!("{device}/h:{hash}:{received}"),
    }
}

fn body_hash(body: &Map<String, Value>) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(&Sha256::digest(Value::Object(body.clone()).to_string().as_bytes())[..12])
}

/// Gives a device's rate token back when dropped armed (its message was not stored).
struct TokenRefund<'a> {
    platform: &'a Platform,
    device: &'a str,
    armed: bool,
}

impl TokenRefund<'_> {
    fn keep(&mut self) {
        self.armed = false;
    }
}

impl Drop for TokenRefund<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.platform.refund_token(self.device);
        }
    }
}

/// How far back a redelivered message without `id` or `ts` is matched to its original.
const REDELIVERY_WINDOW_MS: i64 = 15 * 60_000;

/// A token bucket per device.
pub(super) struct Bucket {
    tokens: f64,
    at: Instant,
}

enum Ty {
    Bool,
    Num(f64, f64),
    Str(usize),
    OneOf(&'static [&'static str]),
}

/// (field, type, required)
type Rule = (&'static str, Ty, bool);

const ACCESS_EVENTS: &[&str] = &[
    "plate",
    "card",
    "qr",
    "code",
    "face",
    "door-open",
    "door-closed",
    "tamper",
    "heartbeat",
];

/// The payload rules of each kind; `true` in the second place: at least one field needed.
fn rules(kind: DeviceKind) -> (&'static [Rule], bool) {
    use Ty::*;
    match kind {
        DeviceKind::Gate | DeviceKind::Barrier => (
            &[
                ("type", OneOf(ACCESS_EVENTS), true),
                ("plate", Str(16), false),
                ("card", Str(64), false),
                ("code", Str(64), false),
                ("direction", OneOf(&["in", "out"]), false),
            ],
            false,
        ),
        DeviceKind::ParkingSensor => (
            &[
                ("occupied", Bool, true),
                ("battery", Num(0.0, 100.0), false),
            ],
            false,
        ),
        DeviceKind::Meter => (
            &[
                ("reading", Num(0.0, 1e12), true),
                ("unit", OneOf(&["kwh", "m3", "t", "gj"]), false),
            ],
            false,
        ),
        DeviceKind::EmergencyButton => (
            &[
                (
                    "type",
                    OneOf(&["press", "long-press", "cancel", "battery-low", "heartbeat"]),
                    true,
                ),
                ("battery", Num(0.0, 100.0), false),
            ],
            false,
        ),
        DeviceKind::Wearable => (
            &[
                ("heart_rate", Num(0.0, 300.0), false),
                ("spo2", Num(0.0, 100.0), false),
                ("temperature", Num(25.0, 45.0), false),
                ("steps", Num(0.0, 1e6), false),
                ("fall", Bool, false),
                ("sos", Bool, false),
                ("battery", Num(0.0, 100.0), false),
                ("lat", Num(-90.0, 90.0), false),
                ("lon", Num(-180.0, 180.0), false),
            ],
            true,
        ),
        DeviceKind::EnvironmentSensor => (
            &[
                ("temperature", Num(-60.0, 80.0), false),
                ("humidity", Num(0.0, 100.0), false),
                ("water_level_cm", Num(-1000.0, 10000.0), false),
                ("pm25", Num(0.0, 2000.0), false),
                ("co2", Num(0.0, 50000.0), false),
                ("battery", Num(0.0, 100.0), false),
            ],
            true,
        ),
        DeviceKind::SmokeDetector => (
            &[("alarm", Bool, true), ("battery", Num(0.0, 100.0), false)],
            false,
        ),
        DeviceKind::Elevator => (
            &[
                (
                    "status",
                    OneOf(&["normal", "fault", "trapped", "maintenance"]),
                    true,
                ),
                ("floor", Num(-10.0, 200.0), false),
            ],
            false,
        ),
        DeviceKind::ChargingPile => (
            &[
                (
                    "status",
                    OneOf(&["idle", "charging", "fault", "offline"]),
                    true,
                ),
                ("power_kw", Num(0.0, 1000.0), false),
                ("energy_kwh", Num(0.0, 1e9), false),
            ],
            false,
        ),
        DeviceKind::Loudspeaker => (
            &[("status", OneOf(&["idle", "playing", "fault"]), true)],
            false,
        ),
    }
}

/// Check a payload against its kind's rules: a JSON object of at most `max` bytes with only
/// the kind's fields (plus `ts`, the device's own clock in ms), each of the right type and
/// range. Returns the object; the message names the field.
pub fn check_payload(kind: DeviceKind, bytes: &[u8], max: usize) -> Result<Value, String> {
    let (rules, need_one) = rules(kind);
    let map = json_object(bytes, max)?;
    let out = check_fields(&map, rules, (kind.zh(), kind.as_str()))?;
    if need_one && out.keys().all(|k| k == "ts" || k == "id") {
        return Err(format!(
            "{} 的消息至少需要一个读数 / a {} message needs at least one reading",
            kind.zh(),
            kind.as_str()
        ));
    }
    Ok(Value::Object(out))
}

/// The names of the commands a kind of device takes.
pub fn commands_of(kind: DeviceKind) -> Vec<&'static str> {
    command_rules(kind).iter().map(|(name, _)| *name).collect()
}

/// The commands a kind of device takes, with their parameters.
fn command_rules(kind: DeviceKind) -> &'static [(&'static str, &'static [Rule])] {
    use Ty::*;
    match kind {
        DeviceKind::Gate | DeviceKind::Barrier => &[
            (
                "open",
                &[("plate", Str(16), false), ("reason", Str(64), false)],
            ),
            ("close", &[]),
            (
                "display",
                &[("text", Str(64), true), ("seconds", Num(1.0, 60.0), false)],
            ),
        ],
        DeviceKind::EmergencyButton => &[("confirm", &[])],
        DeviceKind::Wearable => &[("vibrate", &[]), ("message", &[("text", Str(64), true)])],
        DeviceKind::Loudspeaker => &[
            (
                "play",
                &[("text", Str(500), true), ("repeat", Num(1.0, 5.0), false)],
            ),
            ("stop", &[]),
        ],
        DeviceKind::ChargingPile => &[("start", &[]), ("stop", &[])],
        DeviceKind::SmokeDetector => &[("silence", &[])],
        DeviceKind::Meter => &[("read", &[])],
        DeviceKind::ParkingSensor | DeviceKind::EnvironmentSensor | DeviceKind::Elevator => &[],
    }
}

/// Check a command for a kind of device: a command it takes, with parameters (a JSON object,
/// or nothing for none) that fit the command. Returns the parameters.
pub fn check_command(
    kind: DeviceKind,
    command: &str,
    payload: &[u8],
    max: usize,
) -> Result<Value, String> {
    let known = command_rules(kind);
    let Some((_, rules)) = known.iter().find(|(name, _)| *name == command) else {
        let names: Vec<_> = known.iter().map(|(n, _)| *n).collect();
        return Err(if names.is_empty() {
            format!(
                "{} 不接受指令 / a {} takes no commands",
                kind.zh(),
                kind.as_str()
            )
        } else {
            format!(
                "{} 不接受指令 {command:?} / a {} takes no command {command:?} (it takes: {})",
                kind.zh(),
                kind.as_str(),
                names.join(", ")
            )
        });
    };
    let map = if payload.is_empty() {
        Map::new()
    } else {
        json_object(payload, max)?
    };
    let out = check_fields(&map, rules, (kind.zh(), kind.as_str()))?;
    Ok(Value::Object(out))
}

/// `bytes` as a JSON object of at most `max` bytes.
fn json_object(bytes: &[u8], max: usize) -> Result<Map<String, Value>, String> {
    if bytes.len() > max {
        return Err(format!(
            "消息超过 {max} 字节（devices.payload_bytes） / payload larger than {max} bytes (devices.payload_bytes)"
        ));
    }
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|e| format!("消息不是 JSON / payload is not JSON: {e}"))?;
    match value {
        Value::Object(map) => Ok(map),
        _ => Err("消息须为 JSON 对象 / payload must be a JSON object".into()),
    }
}

/// Check each field of `map` against `rules` (and `ts`); `what` names the kind (zh, en).
fn check_fields(
    map: &Map<String, Value>,
    rules: &[Rule],
    what: (&str, &str),
) -> Result<Map<String, Value>, String> {
    let mut out = Map::new();
    for (key, v) in map {
        if key == "id" {
            let ok = v.as_str().is_some_and(|s| {
                (1..=64).contains(&s.len())
                    && s.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b))
            });
            if !ok {
                return Err(
                    "id: 须为 1–64 个字母、数字或 ._:- / must be 1–64 letters, digits or ._:-"
                        .into(),
                );
            }
            out.insert(key.clone(), v.clone());
            continue;
        }
        if key == "ts" {
            match v.as_i64() {
                Some(t) if t >= 0 => {
                    out.insert(key.clone(), v.clone());
                    continue;
                }
                _ => {
                    return Err(
                        "ts: 须为非负整数毫秒 / must be a non-negative integer of ms".into(),
                    );
                }
            }
        }
        let Some((_, ty, _)) = rules.iter().find(|(name, _, _)| name == key) else {
            let known: Vec<_> = rules.iter().map(|(n, _, _)| *n).collect();
            return Err(format!(
                "{key}: {} 没有此字段 / not a field of a {} (fields: {}, id, ts)",
                what.0,
                what.1,
                known.join(", ")
            ));
        };
        let ok = match ty {
            Ty::Bool => v.is_boolean(),
            Ty::Num(lo, hi) => v
                .as_f64()
                .is_some_and(|n| n.is_finite() && n >= *lo && n <= *hi),
            Ty::Str(n) => v
                .as_str()
                .is_some_and(|s| s.chars().count() <= *n && !s.chars().any(char::is_control)),
            Ty::OneOf(values) => v.as_str().is_some_and(|s| values.contains(&s)),
        };
        if !ok {
            let want = match ty {
                Ty::Bool => "true/false".to_owned(),
                Ty::Num(lo, hi) => format!("a number in {lo}..={hi}"),
                Ty::Str(n) => format!("text of at most {n} characters"),
                Ty::OneOf(values) => format!("one of {}", values.join(", ")),
            };
            return Err(format!("{key}: 取值无效 / must be {want}"));
        }
        out.insert(key.clone(), v.clone());
    }
    for (name, _, required) in rules {
        if *required && !out.contains_key(*name) {
            return Err(format!("{name}: 缺少必填字段 / required"));
        }
    }
    Ok(out)
}

impl Platform {
    /// Take one message from `device`. `tenant` is the tenant the transport named (the MQTT
    /// topic's second level); it must be the device's own. Refusals are counted by outcome.
    pub async fn ingest(
        &self,
        tenant: Option<&str>,
        device: &str,
        payload: &[u8],
    ) -> Result<Ingested, PlatformError> {
        self.ingest_message(tenant, device, payload, false).await
    }

    /// [`Self::ingest`], saying whether the transport marks this a redelivery (MQTT's DUP
    /// flag): one without an `id` or `ts` is then taken as the message it repeats if the
    /// device sent the same body within the last quarter hour.
    pub async fn ingest_message(
        &self,
        tenant: Option<&str>,
        device: &str,
        payload: &[u8],
        redelivery: bool,
    ) -> Result<Ingested, PlatformError> {
        let counted = |outcome: &str, e: PlatformError| {
            self.metrics.device_message(outcome);
            e
        };
        let unknown = || PlatformError::NotFound(format!("设备不存在 / no such device: {device}"));
        if device.len() > 63 {
            return Err(counted("unknown_device", unknown()));
        }
        let Some(d) = devices::get(&self.db, device).await? else {
            return Err(counted("unknown_device", unknown()));
        };
        if tenant.is_some_and(|t| t != d.tenant) {
            // A device publishing under another tenant's topics is treated as unknown there.
            return Err(counted("unknown_device", unknown()));
        }
        if d.status != DeviceStatus::Active {
            return Err(counted(
                "disabled",
                PlatformError::Conflict(format!("设备已停用 / device {device} is disabled")),
            ));
        }
        if !self.take_token(device) {
            return Err(counted(
                "rate_limited",
                PlatformError::TooMany(format!(
                    "设备 {device} 发送过快（devices.messages_per_second = {}） / device {device} sends faster than devices.messages_per_second = {}",
                    self.config.devices.messages_per_second,
                    self.config.devices.messages_per_second
                )),
            ));
        }
        let body = check_payload(d.kind, payload, self.config.devices.payload_bytes)
            .map_err(|m| counted("invalid", PlatformError::Invalid(m)))?;
        // Until the message is stored, a failure gives the token back: the device sends it
        // again, and that must not cost it its rate.
        let mut token = TokenRefund {
            platform: self,
            device,
            armed: true,
        };
        let Value::Object(body) = body else {
            unreachable!("check_payload returns an object")
        };
        self.metrics.device_message("accepted");
        let received = now_ms();
        let key = message_key(&d.id, &body, received);
        let path = tenants::path(&self.db, &d.tenant).await?;
        let grant = format!("device.{}", d.kind.as_str());
        let rows = self.serving_with_grant(&path, &grant).await?;
        let keyless = !body.contains_key("id") && !body.contains_key("ts");
        let seen = match (redelivery && keyless, rows.first()) {
            (true, Some(row)) => {
                outbox::telemetry_seen(
                    &self.db,
                    &row.tenant_id,
                    &row.plugin_id,
                    &format!("{}/h:{}:", d.id, body_hash(&body)),
                    received - REDELIVERY_WINDOW_MS,
                )
                .await?
            }
            _ => false,
        };
        if seen {
            self.metrics.device_message("duplicate");
            return Ok(Ingested {
                device: d.id,
                kind: d.kind,
                received_at_ms: received,
                duplicate: true,
                deliveries: Vec::new(),
            });
        }
        let payload = serde_json::to_string(&TelemetryPayload {
            device: d.id.clone(),
            kind: d.kind.as_str().to_owned(),
            received_at_ms: received,
            body: Value::Object(body).to_string(),
            served: path,
        })
        .expect("serialises");
        // Durable before anything is acknowledged: the message is queued for every plugin
        // it is for (and the device marked seen) in one transaction. Only then is it handed
        // to the plugins; one that fails gets it again from the outbox worker.
        let ids: Vec<String> = rows
            .iter()
            .map(|_| uuid::Uuid::new_v4().simple().to_string())
            .collect();
        let added = crate::storage::write_tx!(&self.db, |tx| {
            devices::touch_in(tx, &d.id, received).await?;
            let mut added = Vec::new();
            for (row, id) in rows.iter().zip(&ids) {
                if outbox::enqueue_with_id_in(
                    tx,
                    id,
                    &row.tenant_id,
                    &row.plugin_id,
                    "telemetry",
                    &key,
                    &payload,
                )
                .await?
                {
                    added.push(id.clone());
                }
            }
            Ok(added)
        });
        let added = added?;
        token.keep();
        let duplicate = !rows.is_empty() && added.is_empty();
        if duplicate {
            self.metrics.device_message("duplicate");
        }
        let mut outcomes: std::collections::HashMap<String, String> = added
            .iter()
            .map(|id| (id.clone(), "queued: waiting for the worker".to_owned()))
            .collect();
        match outbox::claim_ids(&self.db, &added, now_ms()).await {
            Ok(claimed) => {
                for entry in claimed {
                    let outcome = match self.settle_entry(&entry).await {
                        Ok(true) => "ok".to_owned(),
                        Ok(false) => format!(
                            "queued: {}",
                            outbox::get(&self.db, &entry.id)
                                .await
                                .ok()
                                .flatten()
                                .and_then(|e| e.last_error)
                                .unwrap_or_default()
                        ),
                        Err(e) => format!("queued: {e}"),
                    };
                    outcomes.insert(entry.id.clone(), outcome);
                }
            }
            Err(e) => {
                tracing::warn!(device = %d.id, error = %e, "device message queued; handing it over now failed");
                self.wake_outbox();
            }
        }
        let deliveries = rows
            .iter()
            .zip(&ids)
            .filter_map(|(row, id)| {
                outcomes.remove(id).map(|outcome| Delivery {
                    tenant: row.tenant_id.clone(),
                    plugin: row.plugin_id.clone(),
                    outcome,
                })
            })
            .collect();
        Ok(Ingested {
            device: d.id,
            kind: d.kind,
            received_at_ms: received,
            duplicate,
            deliveries,
        })
    }

    /// Take a device's answer to one of its commands (from its `ack` topic or over HTTP).
    /// `tenant` is the tenant the transport named, as for [`Platform::ingest`]. An answer to
    /// a command that is not the device's, or was already settled, is a conflict.
    pub async fn answer_command(
        &self,
        tenant: Option<&str>,
        device: &str,
        payload: &[u8],
    ) -> Result<(), PlatformError> {
        let d = self.known_device(tenant, device).await?;
        let ack = crate::commands::parse_ack(payload, self.config.devices.payload_bytes)
            .map_err(PlatformError::Invalid)?;
        if self.commands.answer(&d.id, &ack).await? {
            Ok(())
        } else {
            Err(PlatformError::Conflict(format!(
                "指令 {} 不存在或已结束（已应答或已超时） / command {} is not this device's, or was already answered or timed out",
                ack.id, ack.id
            )))
        }
    }

    /// Commands waiting for `device`'s answer (for devices that fetch them over HTTP, and for
    /// `linli device simulate` without a broker).
    pub async fn pending_commands(
        &self,
        tenant: Option<&str>,
        device: &str,
    ) -> Result<Vec<crate::storage::commands::Command>, PlatformError> {
        let d = self.known_device(tenant, device).await?;
        Ok(crate::storage::commands::pending(&self.db, &d.id, now_ms(), 100).await?)
    }

    /// The device, if it exists at `tenant` (when given) and is active.
    async fn known_device(
        &self,
        tenant: Option<&str>,
        device: &str,
    ) -> Result<Device, PlatformError> {
        let unknown = || PlatformError::NotFound(format!("设备不存在 / no such device: {device}"));
        if device.len() > 63 {
            return Err(unknown());
        }
        let d = devices::get(&self.db, device).await?.ok_or_else(unknown)?;
        if tenant.is_some_and(|t| t != d.tenant) {
            return Err(unknown());
        }
        if d.status != DeviceStatus::Active {
            return Err(PlatformError::Conflict(format!(
                "设备已停用 / device {device} is disabled"
            )));
        }
        Ok(d)
    }

    /// Give back the token a message took that could not be stored.
    fn refund_token(&self, device: &str) {
        let burst = f64::from(self.config.devices.burst);
        let mut buckets = self.device_buckets.lock().expect("device buckets lock");
        if let Some(b) = buckets.get_mut(device) {
            b.tokens = (b.tokens + 1.0).min(burst);
        }
    }

    /// Whether `device` may send one more message now (token bucket per device).
    fn take_token(&self, device: &str) -> bool {
        let cfg = &self.config.devices;
        let rate = f64::from(cfg.messages_per_second);
        let burst = f64::from(cfg.burst);
        let now = Instant::now();
        let mut buckets = self.device_buckets.lock().expect("device buckets lock");
        let b = buckets.entry(device.to_owned()).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        b.tokens = (b.tokens + now.duration_since(b.at).as_secs_f64() * rate).min(burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// The active installations serving `path`'s last tenant that hold `grant`: the nearest
    /// installation of each plugin.
    pub(super) async fn serving_with_grant(
        &self,
        path: &[String],
        grant: &str,
    ) -> Result<Vec<InstallRow>, PlatformError> {
        let mut out = self.serving(path).await?;
        out.retain(|row| row.status == Status::Active && row.grants.iter().any(|g| g == grant));
        Ok(out)
    }

    /// Hand a queued device message (a `telemetry` outbox entry) to its plugin's handler.
    pub(super) async fn deliver_telemetry(&self, entry: &Entry) -> Result<usize, PlatformError> {
        let Some(row) = installs::get(&self.db, &entry.tenant, &entry.plugin).await? else {
            // Uninstalled since: nobody to tell.
            return Ok(0);
        };
        if row.status != Status::Active {
            return Err(PlatformError::Conflict(format!(
                "{} is suspended at {}; the device message waits",
                entry.plugin, entry.tenant
            )));
        }
        let t: TelemetryPayload = serde_json::from_str(&entry.payload)
            .map_err(|e| PlatformError::Invalid(format!("outbox payload: {e}")))?;
        let event = Event::Telemetry(Telemetry {
            device_id: t.device.clone(),
            device_kind: t.kind,
            received_at_ms: t.received_at_ms.max(0) as u64,
            payload: t.body.into_bytes(),
        });
        self.call_event(&row, t.served, &format!("device-{}", t.device), event)
            .await
            .map_err(|e| {
                tracing::warn!(device = %t.device, plugin = %row.plugin_id, tenant = %row.tenant_id, error = %e, "device message not handled");
                PlatformError::Host(anyhow::anyhow!(e))
            })?;
        Ok(1)
    }

    /// Call `row`'s event handler with `event`, for the place at `served`; the error is the
    /// handler's own or the host's account of the failed call.
    pub(super) async fn call_event(
        &self,
        row: &InstallRow,
        served: Vec<String>,
        request_id: &str,
        event: Event,
    ) -> Result<(), String> {
        let db = self.db.clone();
        let hash = row.component_hash.clone();
        let pre = self
            .runtime
            .prepared(&row.component_hash, || async move {
                installs::get_component(&db, &hash)
                    .await?
                    .ok_or_else(|| anyhow::anyhow!("component {hash} missing from the database"))
            })
            .await
            .map_err(|e| e.to_string())?;
        let labels = crate::metrics::PluginLabels {
            tenant: row.tenant_id.clone(),
            plugin: row.plugin_id.clone(),
        };
        let grants: BTreeSet<String> = row.grants.iter().cloned().collect();
        let context = self.call_context(
            &row.tenant_id,
            &row.plugin_id,
            request_id,
            served,
            None,
            Arc::new(grants),
        );
        let started = Instant::now();
        let (result, stats) = self.runtime.handle_event(&pre, context, event).await;
        self.metrics
            .observe(&labels, started.elapsed().as_secs_f64(), &result, stats);
        match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(message)) => Err(message),
            Err(error) => {
                if error.is_trap() {
                    self.record_trap(&row.tenant_id, &row.plugin_id, &labels, &error)
                        .await;
                }
                Err(error.to_string())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 4096;

    #[test]
    fn payloads_are_checked_by_kind() {
        let ok = |k, s: &str| check_payload(k, s.as_bytes(), MAX);
        assert!(
            ok(
                DeviceKind::EmergencyButton,
                r#"{"type":"press","battery":80}"#
            )
            .is_ok()
        );
        assert!(
            ok(
                DeviceKind::Barrier,
                r#"{"type":"plate","plate":"浙A12345","direction":"in"}"#
            )
            .is_ok()
        );
        assert!(
            ok(
                DeviceKind::Wearable,
                r#"{"heart_rate":72,"ts":1700000000000}"#
            )
            .is_ok()
        );
        let err = |k, s: &str| check_payload(k, s.as_bytes(), MAX).unwrap_err();
        assert!(err(DeviceKind::EmergencyButton, r#"{"battery":80}"#).starts_with("type:"));
        assert!(err(DeviceKind::EmergencyButton, r#"{"type":"explode"}"#).starts_with("type:"));
        assert!(err(DeviceKind::Wearable, r#"{"heart_rate":999}"#).starts_with("heart_rate:"));
        assert!(err(DeviceKind::Wearable, r#"{"ts":1}"#).contains("at least one"));
        assert!(err(DeviceKind::Wearable, r#"{"password":"x"}"#).starts_with("password:"));
        assert!(err(DeviceKind::Meter, "[1,2]").contains("object"));
        assert!(err(DeviceKind::Meter, "not json").contains("not JSON"));
        assert!(
            err(
                DeviceKind::Barrier,
                r#"{"type":"plate","plate":"a\u0000b"}"#
            )
            .starts_with("plate:")
        );
        let big = format!(r#"{{"type":"plate","plate":"{}"}}"#, "x".repeat(MAX));
        assert!(err(DeviceKind::Barrier, &big).contains("devices.payload_bytes"));
        assert!(err(DeviceKind::Meter, r#"{"reading":1,"ts":-5}"#).starts_with("ts:"));
    }

    #[test]
    fn commands_are_checked_by_kind() {
        let cmd = |k, c, s: &str| check_command(k, c, s.as_bytes(), MAX);
        assert!(cmd(DeviceKind::Barrier, "open", "").is_ok());
        assert!(cmd(DeviceKind::Gate, "open", r#"{"plate":"浙A12345"}"#).is_ok());
        assert!(cmd(DeviceKind::Barrier, "display", r#"{"text":"未登记车辆"}"#).is_ok());
        assert!(
            cmd(DeviceKind::Barrier, "display", "{}")
                .unwrap_err()
                .starts_with("text:")
        );
        assert!(
            cmd(DeviceKind::Barrier, "explode", "")
                .unwrap_err()
                .contains("it takes: open, close, display")
        );
        assert!(
            cmd(DeviceKind::ParkingSensor, "open", "")
                .unwrap_err()
                .contains("takes no commands")
        );
        assert!(
            cmd(DeviceKind::Barrier, "open", r#"{"speed":9}"#)
                .unwrap_err()
                .starts_with("speed:")
        );
        assert!(
            cmd(DeviceKind::Barrier, "open", "[1]")
                .unwrap_err()
                .contains("object")
        );
    }
}
