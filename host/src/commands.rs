//! Commands to devices: recorded, sent, and waited for.
//!
//! A command is written to `device_commands` as `sent`, published on the device's `down`
//! topic when the host has a broker link (otherwise the device fetches it over HTTP, or
//! `linli device simulate` plays the device), and settled by the device's answer on its `ack`
//! topic or `POST /api/v1/device-messages/{id}/acks` — or by its deadline. The sender waits
//! on the database row, woken at once when the answer reaches this process and polling
//! otherwise, so an answer that reaches another replica settles it too.
//!
//! Wire format, both ways JSON:
//! - down: `{"id": "…", "command": "open", "payload": {…}, "deadline_ms": 1764…}`
//! - ack:  `{"id": "…", "ok": true, "result": {…}}` or `{"id": "…", "ok": false, "reason": "…"}`

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use rumqttc::{AsyncClient, QoS};
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::Notify;

use crate::metrics::DeviceLabels;
use crate::storage::commands::{self, Command, CommandStatus};
use crate::storage::devices::Device;
use crate::storage::{Db, StorageError, now_ms};

/// The longest reason a device may give for refusing, in characters.
pub const MAX_REASON_CHARS: usize = 200;

/// How often a waiting sender re-reads its command when no wake-up came.
const POLL: Duration = Duration::from_millis(100);

/// A device's answer to a command.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ack {
    pub id: String,
    pub ok: bool,
    #[serde(default)]
    pub result: Option<Value>,
    #[serde(default)]
    pub reason: Option<String>,
}

/// Parse and check an answer of at most `max` bytes.
pub fn parse_ack(bytes: &[u8], max: usize) -> Result<Ack, String> {
    if bytes.len() > max {
        return Err(format!(
            "应答超过 {max} 字节（devices.payload_bytes） / answer larger than {max} bytes (devices.payload_bytes)"
        ));
    }
    let ack: Ack = serde_json::from_slice(bytes).map_err(|e| {
        format!(
            "应答须为 {{\"id\",\"ok\",\"result\"|\"reason\"}} / an answer is {{\"id\", \"ok\", \"result\" or \"reason\"}}: {e}"
        )
    })?;
    if ack.id.is_empty() || ack.id.len() > 64 {
        return Err("id: 须为 1–64 字节 / must be 1–64 bytes".into());
    }
    if let Some(r) = &ack.reason
        && (r.chars().count() > MAX_REASON_CHARS || r.chars().any(char::is_control))
    {
        return Err(format!(
            "reason: 最多 {MAX_REASON_CHARS} 个字符、不含控制字符 / at most {MAX_REASON_CHARS} characters, no control characters"
        ));
    }
    Ok(ack)
}

/// Where commands go out and answers come in; one per process, shared by every call.
pub struct CommandBus {
    db: Db,
    /// The broker link's client and topic prefix, once the link runs.
    publisher: Mutex<Option<(AsyncClient, String)>>,
    waiters: Mutex<HashMap<String, Arc<Notify>>>,
    outcomes: Family<DeviceLabels, Counter>,
}

impl std::fmt::Debug for CommandBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommandBus").finish_non_exhaustive()
    }
}

/// The topic commands to a device go out on.
pub fn down_topic(prefix: &str, tenant: &str, device: &str) -> String {
    format!("{prefix}/{tenant}/{device}/down")
}

/// The message a device receives for a command.
pub fn wire(c: &Command) -> Value {
    serde_json::json!({
        "id": c.id,
        "command": c.command,
        "payload": c.payload,
        "deadline_ms": c.deadline_at,
    })
}

impl CommandBus {
    pub fn new(db: Db, outcomes: Family<DeviceLabels, Counter>) -> CommandBus {
        CommandBus {
            db,
            publisher: Mutex::new(None),
            waiters: Mutex::new(HashMap::new()),
            outcomes,
        }
    }

    /// Send commands through the broker link from now on.
    pub fn set_publisher(&self, client: AsyncClient, prefix: String) {
        *self.publisher.lock().expect("publisher lock") = Some((client, prefix));
    }

    /// Record `command` (already checked) for `device` from `(tenant, plugin)`, send it, and
    /// wait up to `timeout` for the answer. Returns the settled command.
    pub async fn send(
        &self,
        device: &Device,
        sender: (&str, &str),
        command: &str,
        payload: Value,
        timeout: Duration,
    ) -> Result<Command, StorageError> {
        let now = now_ms();
        let c = Command {
            id: uuid::Uuid::new_v4().simple().to_string(),
            device_id: device.id.clone(),
            tenant_id: sender.0.to_owned(),
            plugin_id: sender.1.to_owned(),
            command: command.to_owned(),
            payload,
            status: CommandStatus::Sent,
            reply: None,
            created_at: now,
            deadline_at: now + timeout.as_millis() as i64,
            answered_at: None,
        };
        let notify = Arc::new(Notify::new());
        self.waiters
            .lock()
            .expect("waiters lock")
            .insert(c.id.clone(), notify.clone());
        let result = self.send_and_wait(device, &c, &notify, timeout).await;
        self.waiters.lock().expect("waiters lock").remove(&c.id);
        if let Ok(done) = &result {
            self.outcomes
                .get_or_create(&DeviceLabels {
                    outcome: done.status.as_str().to_owned(),
                })
                .inc();
        }
        result
    }

    async fn send_and_wait(
        &self,
        device: &Device,
        c: &Command,
        notify: &Notify,
        timeout: Duration,
    ) -> Result<Command, StorageError> {
        commands::insert(&self.db, c).await?;
        let publisher = self.publisher.lock().expect("publisher lock").clone();
        if let Some((client, prefix)) = publisher {
            let topic = down_topic(&prefix, &device.tenant, &device.id);
            // Queued by the client while the link is down; the deadline in the message lets
            // the device drop it if it arrives late.
            if let Err(e) = client
                .publish(topic, QoS::AtLeastOnce, false, wire(c).to_string())
                .await
            {
                tracing::warn!(device = %device.id, error = %e, "command not handed to the MQTT client");
            }
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let woken = notify.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            let now = commands::get(&self.db, &c.id)
                .await?
                .ok_or_else(|| StorageError::Invalid("command row vanished".into()))?;
            if now.status != CommandStatus::Sent {
                return Ok(now);
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                commands::settle(
                    &self.db,
                    &c.device_id,
                    &c.id,
                    CommandStatus::TimedOut,
                    None,
                    now_ms(),
                )
                .await?;
                // Settled as timed out here, or answered just before: either way, final now.
                return commands::get(&self.db, &c.id)
                    .await?
                    .ok_or_else(|| StorageError::Invalid("command row vanished".into()));
            }
            tokio::select! {
                _ = &mut woken => {}
                _ = tokio::time::sleep(left.min(POLL)) => {}
            }
        }
    }

    /// Settle `device`'s command with its answer. False if it is not the device's, or was
    /// already settled (answered before, or timed out).
    pub async fn answer(&self, device: &str, ack: &Ack) -> Result<bool, StorageError> {
        let (status, reply) = if ack.ok {
            (CommandStatus::Acknowledged, ack.result.clone())
        } else {
            (
                CommandStatus::Refused,
                Some(Value::String(ack.reason.clone().unwrap_or_default())),
            )
        };
        let settled =
            commands::settle(&self.db, device, &ack.id, status, reply.as_ref(), now_ms()).await?;
        if settled && let Some(n) = self.waiters.lock().expect("waiters lock").get(&ack.id) {
            n.notify_one();
        }
        Ok(settled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_checked() {
        let ok = parse_ack(br#"{"id":"c1","ok":true,"result":{"opened":true}}"#, 4096).unwrap();
        assert!(ok.ok);
        assert_eq!(ok.result.unwrap()["opened"], true);
        let no = parse_ack(br#"{"id":"c1","ok":false,"reason":"jammed"}"#, 4096).unwrap();
        assert_eq!(no.reason.as_deref(), Some("jammed"));
        assert!(parse_ack(br#"{"ok":true}"#, 4096).is_err());
        assert!(parse_ack(br#"{"id":"","ok":true}"#, 4096).is_err());
        assert!(parse_ack(br#"{"id":"c","ok":true,"extra":1}"#, 4096).is_err());
        let long = format!(r#"{{"id":"c","ok":false,"reason":"{}"}}"#, "x".repeat(201));
        assert!(
            parse_ack(long.as_bytes(), 4096)
                .unwrap_err()
                .starts_with("reason:")
        );
        assert!(
            parse_ack(&[b' '; 5000], 4096)
                .unwrap_err()
                .contains("payload_bytes")
        );
    }
}
