//! The `device` capability: the devices of the kinds the installation was granted
//! (`device.gate`, `device.emergency-button`, …) registered in the place the call is for.
//! Broker addresses, device secrets and wearers never reach a plugin.
//!
//! Commands go only to devices of granted kinds in that place, must be commands the kind
//! takes (with parameters that fit), and are recorded with their outcome.
//!
//! Limits (each named in the error): a kind name ≤ 40 bytes; at most
//! [`MAX_DEVICES_LISTED`] devices in one answer (narrow by kind beyond that); a command name
//! ≤ [`MAX_COMMAND_BYTES`]; parameters ≤ [`MAX_COMMAND_PAYLOAD_BYTES`]; a wait of at most half
//! of `limits.call_timeout_ms` and never over [`MAX_COMMAND_WAIT_MS`]; at most
//! [`MAX_COMMANDS_PER_CALL`] commands in one call.

use std::time::Duration;

use super::{denied, metadata_only};
use crate::platform::telemetry::check_command;
use crate::runtime::HostState;
use crate::runtime::bindings::WitError;
use crate::runtime::bindings::linli::plugin::device;
use crate::storage::commands::CommandStatus;
use crate::storage::devices::{self, DeviceKind, DeviceStatus, Filter};
use crate::storage::{now_ms, tenants};

/// The most devices one `list-devices` answer holds.
pub const MAX_DEVICES_LISTED: u32 = 1_000;

/// The longest command name.
pub const MAX_COMMAND_BYTES: usize = 32;

/// The largest command parameters.
pub const MAX_COMMAND_PAYLOAD_BYTES: usize = 1024;

/// The longest a plugin may wait for one command's answer.
pub const MAX_COMMAND_WAIT_MS: u64 = 10_000;

/// The most commands one call may send.
pub const MAX_COMMANDS_PER_CALL: u32 = 20;

/// A device counts as online if a message from it arrived this recently.
const ONLINE_WITHIN_MS: i64 = 5 * 60 * 1000;

impl HostState {
    /// The device kinds this installation was granted.
    fn granted_kinds(&self) -> Vec<DeviceKind> {
        DeviceKind::ALL
            .iter()
            .copied()
            .filter(|k| self.call.granted(&format!("device.{}", k.as_str())))
            .collect()
    }
}

impl device::Host for HostState {
    async fn list_devices(
        &mut self,
        kind: Option<String>,
    ) -> Result<Vec<device::DeviceInfo>, WitError> {
        if !self.capabilities_enabled {
            return Err(metadata_only("device"));
        }
        let granted = self.granted_kinds();
        if granted.is_empty() {
            return Err(denied("device"));
        }
        let kinds = match kind {
            None => granted,
            Some(k) if k.len() > 40 => {
                return Err(WitError::Invalid(
                    "设备类型名过长（上限 40 字节） / kind longer than 40 bytes".into(),
                ));
            }
            Some(k) => match DeviceKind::parse(&k) {
                Some(kind) if granted.contains(&kind) => vec![kind],
                Some(kind) => return Err(denied(&format!("device.{}", kind.as_str()))),
                None => {
                    return Err(WitError::Invalid(format!(
                        "未知设备类型 / unknown device kind {k:?}"
                    )));
                }
            },
        };
        let call = self.call.clone();
        let tenant = call
            .served
            .last()
            .map_or(call.scope.tenant.as_str(), String::as_str);
        let filter = Filter {
            kinds: Some(kinds),
            status: Some(DeviceStatus::Active),
            person: None,
        };
        let found = devices::list(&call.db, tenant, &filter, None, MAX_DEVICES_LISTED + 1)
            .await
            .map_err(|e| WitError::Internal(format!("device: {e}")))?;
        if found.len() > MAX_DEVICES_LISTED as usize {
            return Err(WitError::Quota(format!(
                "超过 {MAX_DEVICES_LISTED} 台设备，请按类型查询 / more than {MAX_DEVICES_LISTED} devices: ask for one kind at a time"
            )));
        }
        let now = now_ms();
        // A personal device's name and place are its wearer's ("李桂兰家紧急呼叫按钮", "东村
        // 二组8号"): a plugin sees them only with the grants that show a wearer's name and
        // address; otherwise the kind and the village.
        let show_name = call.granted("identity.name");
        let show_address = call.granted("identity.address");
        Ok(found
            .into_iter()
            .map(|d| {
                let personal = d.kind.personal();
                device::DeviceInfo {
                    location: if personal && !show_address {
                        // The village, not the node: a household node would name the home.
                        tenant.to_owned()
                    } else if d.location.is_empty() {
                        d.tenant.clone()
                    } else {
                        format!("{}/{}", d.tenant, d.location)
                    },
                    online: d.last_seen_at.is_some_and(|t| now - t <= ONLINE_WITHIN_MS),
                    name: if personal && !show_name {
                        format!("{}（个人设备）", d.kind.zh())
                    } else {
                        d.name
                    },
                    id: d.id,
                    kind: d.kind.as_str().to_owned(),
                }
            })
            .collect())
    }

    async fn send_command(
        &mut self,
        device_id: String,
        command: String,
        payload: Vec<u8>,
        timeout_ms: u32,
    ) -> Result<device::CommandOutcome, WitError> {
        if !self.capabilities_enabled {
            return Err(metadata_only("device"));
        }
        self.gate("device")?;
        if device_id.len() > 63 {
            return Err(WitError::Invalid(
                "设备编号过长（上限 63 字节） / device id longer than 63 bytes".into(),
            ));
        }
        if command.is_empty() || command.len() > MAX_COMMAND_BYTES {
            return Err(WitError::Invalid(format!(
                "指令名须为 1–{MAX_COMMAND_BYTES} 字节 / a command name is 1–{MAX_COMMAND_BYTES} bytes"
            )));
        }
        if payload.len() > MAX_COMMAND_PAYLOAD_BYTES {
            return Err(WitError::Invalid(format!(
                "指令参数超过 {MAX_COMMAND_PAYLOAD_BYTES} 字节 / command payload larger than {MAX_COMMAND_PAYLOAD_BYTES} bytes"
            )));
        }
        let max_wait = max_command_wait_ms(self.limits.call_timeout_ms);
        if timeout_ms == 0 || u64::from(timeout_ms) > max_wait {
            return Err(WitError::Invalid(format!(
                "等待时间须为 1–{max_wait} 毫秒（半个 limits.call_timeout_ms，至多 {MAX_COMMAND_WAIT_MS}） / timeout-ms must be 1–{max_wait} (half of limits.call_timeout_ms, at most {MAX_COMMAND_WAIT_MS})"
            )));
        }
        if self.commands_sent >= MAX_COMMANDS_PER_CALL {
            return Err(WitError::Quota(format!(
                "一次调用最多发送 {MAX_COMMANDS_PER_CALL} 条设备指令 / at most {MAX_COMMANDS_PER_CALL} device commands per call"
            )));
        }
        let call = self.call.clone();
        let internal = |e: crate::storage::StorageError| WitError::Internal(format!("device: {e}"));
        let not_found =
            || WitError::NotFound(format!("没有这个设备 / no such device: {device_id}"));
        let Some(d) = devices::get(&call.db, &device_id).await.map_err(internal)? else {
            return Err(not_found());
        };
        // Only devices in the place the call is for; others look like no device at all.
        let served = call
            .served
            .last()
            .map_or(call.scope.tenant.as_str(), String::as_str);
        let path = tenants::path(&call.db, &d.tenant).await.map_err(internal)?;
        if !path.iter().any(|t| t == served) {
            return Err(not_found());
        }
        let grant = format!("device.{}", d.kind.as_str());
        if !call.granted(&grant) {
            return Err(denied(&grant));
        }
        if d.status != DeviceStatus::Active {
            return Err(WitError::Invalid(format!(
                "设备已停用 / device {device_id} is disabled"
            )));
        }
        let params = check_command(d.kind, &command, &payload, MAX_COMMAND_PAYLOAD_BYTES)
            .map_err(WitError::Invalid)?;
        self.commands_sent += 1;
        let done = call
            .commands
            .send(
                &d,
                (&call.scope.tenant, &call.scope.plugin),
                &command,
                params,
                Duration::from_millis(u64::from(timeout_ms)),
            )
            .await
            .map_err(internal)?;
        Ok(match done.status {
            CommandStatus::Acknowledged => device::CommandOutcome::Acknowledged(
                done.reply
                    .map(|r| r.to_string().into_bytes())
                    .unwrap_or_default(),
            ),
            CommandStatus::Refused => device::CommandOutcome::Refused(
                done.reply
                    .and_then(|r| r.as_str().map(str::to_owned))
                    .unwrap_or_default(),
            ),
            CommandStatus::TimedOut | CommandStatus::Sent => device::CommandOutcome::TimedOut,
        })
    }
}

/// The longest wait for one command's answer, within half the call's time limit.
pub fn max_command_wait_ms(call_timeout_ms: u64) -> u64 {
    (call_timeout_ms / 2).min(MAX_COMMAND_WAIT_MS)
}
