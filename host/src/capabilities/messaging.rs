//! The `messaging` capability. `notify` (grant `messaging.notify`) asks for a notification —
//! once per idempotency key — that the host's worker delivers to the inbox of each recipient
//! inside the place the call was for. `publish` (grant `messaging.publish`) asks for one event
//! per subscriber serving the same place (plugins that list the topic in their metadata); each
//! receives it through its event handler at least once.
//!
//! Both are written to the durable outbox in the transaction of the call's next data change
//! (so "save the alarm, tell the family" commits as one), or when the call ends if no change
//! follows; a call that traps or runs out of time sends nothing it asked for.
//!
//! Limits (each named in the error): at most [`MAX_RECIPIENTS_PER_CALL`] recipients of ids
//! ≤ 64 bytes; titles ≤ [`MAX_TITLE_CHARS`], bodies ≤ [`MAX_BODY_CHARS`] characters; a link
//! is a shell path ≤ 256 bytes; an idempotency key is 1–128 bytes; at most
//! [`MAX_PENDING`] undelivered entries per installation (the publisher's for notifications,
//! each subscriber's for events); a topic is 1–128 of `[A-Za-z0-9-_./]`; an event payload is
//! at most [`MAX_EVENT_BYTES`].

use base64::Engine as _;

use super::{denied, metadata_only};
use crate::identity::ROLES;
use crate::platform::events::{EventPayload, MAX_EVENT_BYTES};
use crate::platform::messaging::{Notice, Recipient};
use crate::runtime::HostState;
use crate::runtime::bindings::WitError;
use crate::runtime::bindings::linli::plugin::messaging::{self, Notification, Urgency};
use crate::storage::{installs, outbox};

pub const MAX_RECIPIENTS_PER_CALL: usize = 50;
pub const MAX_TITLE_CHARS: usize = 100;
pub const MAX_BODY_CHARS: usize = 2_000;
pub const MAX_PENDING: i64 = 10_000;
const MAX_ID_BYTES: usize = 64;
const MAX_LINK_BYTES: usize = 256;
const MAX_KEY_BYTES: usize = 128;

fn invalid(m: String) -> WitError {
    WitError::Invalid(m)
}

fn check_text(field: &str, s: &str, max: usize, required: bool) -> Result<(), WitError> {
    if required && s.trim().is_empty() {
        return Err(invalid(format!("{field}: 不能为空 / required")));
    }
    if s.chars().count() > max {
        return Err(invalid(format!(
            "{field}: 最多 {max} 个字符 / at most {max} characters"
        )));
    }
    if s.chars().any(|c| c.is_control() && c != '\n') {
        return Err(invalid(format!(
            "{field}: 不能含控制字符 / no control characters"
        )));
    }
    Ok(())
}

impl HostState {
    /// Hold an entry for the outbox until the call's next data change (or its end); the same
    /// key twice in one call is one entry.
    fn stage(&mut self, entry: outbox::Staged) {
        let same = |s: &outbox::Staged| {
            s.tenant == entry.tenant
                && s.plugin == entry.plugin
                && s.kind == entry.kind
                && s.key == entry.key
        };
        if !self.staged.iter().any(same) {
            self.staged.push(entry);
        }
    }
}

fn check_key(key: &str) -> Result<(), WitError> {
    if key.is_empty() || key.len() > MAX_KEY_BYTES {
        return Err(invalid(format!(
            "幂等键须为 1–{MAX_KEY_BYTES} 字节 / the idempotency key is 1–{MAX_KEY_BYTES} bytes"
        )));
    }
    Ok(())
}

/// Check a notification and turn it into the outbox's form.
fn notice(
    served: &str,
    to: Vec<messaging::Recipient>,
    m: Notification,
) -> Result<Notice, WitError> {
    if to.is_empty() || to.len() > MAX_RECIPIENTS_PER_CALL {
        return Err(invalid(format!(
            "收件人须为 1–{MAX_RECIPIENTS_PER_CALL} 个 / 1–{MAX_RECIPIENTS_PER_CALL} recipients per call"
        )));
    }
    let mut recipients = Vec::with_capacity(to.len());
    for r in to {
        let r = match r {
            messaging::Recipient::Resident(id) => Recipient::Resident(id),
            messaging::Recipient::Household(h) => Recipient::Household(h),
            messaging::Recipient::Role(role) => {
                if !ROLES.contains(&role.as_str()) {
                    return Err(invalid(format!(
                        "未知角色 / unknown role {role:?}; roles: {}",
                        ROLES.join(", ")
                    )));
                }
                Recipient::Role(role)
            }
            messaging::Recipient::Everyone => Recipient::Everyone,
        };
        if let Recipient::Resident(s) | Recipient::Household(s) | Recipient::Role(s) = &r
            && (s.is_empty() || s.len() > MAX_ID_BYTES)
        {
            return Err(invalid(format!(
                "收件人编号须为 1–{MAX_ID_BYTES} 字节 / recipient ids are 1–{MAX_ID_BYTES} bytes"
            )));
        }
        recipients.push(r);
    }
    check_text("title-zh", &m.title_zh, MAX_TITLE_CHARS, true)?;
    check_text("title-en", &m.title_en, MAX_TITLE_CHARS, false)?;
    check_text("body-zh", &m.body_zh, MAX_BODY_CHARS, false)?;
    check_text("body-en", &m.body_en, MAX_BODY_CHARS, false)?;
    // A path inside the plugin by the pages' own rule: no dot segments in any encoding, no
    // escaped separators (the shell checks again before it follows one).
    if let Some(link) = &m.link
        && (link.len() > MAX_LINK_BYTES || !linli_ui::is_plugin_path(link))
    {
        return Err(invalid(format!(
            "link: 须为应用内路径（以 / 开头，最多 {MAX_LINK_BYTES} 字节） / must be a shell path starting with / (at most {MAX_LINK_BYTES} bytes)"
        )));
    }
    Ok(Notice {
        served: served.to_owned(),
        to: recipients,
        title_zh: m.title_zh,
        title_en: m.title_en,
        body_zh: m.body_zh,
        body_en: m.body_en,
        link: m.link,
        urgency: match m.urgency {
            Urgency::Normal => "normal",
            Urgency::High => "high",
            Urgency::Emergency => "emergency",
        }
        .into(),
    })
}

impl messaging::Host for HostState {
    async fn notify(
        &mut self,
        to: Vec<messaging::Recipient>,
        message: Notification,
        idempotency_key: String,
    ) -> Result<(), WitError> {
        if !self.capabilities_enabled {
            return Err(metadata_only("messaging"));
        }
        if !self.call.granted("messaging.notify") {
            return Err(denied("messaging.notify"));
        }
        check_key(&idempotency_key)?;
        let call = self.call.clone();
        let served = call
            .served
            .last()
            .map_or(call.scope.tenant.as_str(), String::as_str);
        let notice = notice(served, to, message)?;
        let internal =
            |e: crate::storage::StorageError| WitError::Internal(format!("messaging: {e}"));
        let pending = outbox::pending(&call.db, &call.scope.tenant, &call.scope.plugin)
            .await
            .map_err(internal)?;
        if pending + self.staged.len() as i64 >= MAX_PENDING {
            return Err(WitError::Quota(format!(
                "待发送通知已达 {MAX_PENDING} 条 / {MAX_PENDING} notifications are waiting to be delivered"
            )));
        }
        let payload = serde_json::to_string(&notice).expect("a notice serialises");
        self.stage(outbox::Staged {
            tenant: call.scope.tenant.clone(),
            plugin: call.scope.plugin.clone(),
            kind: "notify".into(),
            key: idempotency_key,
            payload,
        });
        tracing::debug!(request_id = %call.request_id, plugin = %call.scope.plugin, "notification staged");
        Ok(())
    }

    async fn publish(
        &mut self,
        topic: String,
        payload: Vec<u8>,
        idempotency_key: String,
    ) -> Result<(), WitError> {
        if !self.capabilities_enabled {
            return Err(metadata_only("messaging"));
        }
        if !self.call.granted("messaging.publish") {
            return Err(denied("messaging.publish"));
        }
        if topic.is_empty()
            || topic.len() > 128
            || !topic
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_./".contains(&b))
        {
            return Err(invalid(
                "主题须为 1–128 个 [A-Za-z0-9-_./] 字符 / a topic is 1–128 of [A-Za-z0-9-_./]"
                    .into(),
            ));
        }
        if payload.len() > MAX_EVENT_BYTES {
            return Err(invalid(format!(
                "事件内容超过 {MAX_EVENT_BYTES} 字节 / event payload larger than {MAX_EVENT_BYTES} bytes"
            )));
        }
        check_key(&idempotency_key)?;
        let call = self.call.clone();
        let internal =
            |e: crate::storage::StorageError| WitError::Internal(format!("messaging: {e}"));
        let mut subscribers = Vec::new();
        for row in installs::serving(&call.db, &call.served)
            .await
            .map_err(internal)?
        {
            let subscribed = serde_json::from_str::<crate::runtime::PluginMetadata>(&row.metadata)
                .is_ok_and(|m| m.subscriptions.contains(&topic));
            if row.status == installs::Status::Active && subscribed {
                let pending = outbox::pending(&call.db, &row.tenant_id, &row.plugin_id)
                    .await
                    .map_err(internal)?;
                if pending >= MAX_PENDING {
                    return Err(WitError::Quota(format!(
                        "订阅者 {} 已有 {MAX_PENDING} 条待处理 / subscriber {} has {MAX_PENDING} entries waiting",
                        row.plugin_id, row.plugin_id
                    )));
                }
                subscribers.push(row);
            }
        }
        let event = EventPayload {
            served: call.served.clone(),
            topic,
            source_plugin: call.scope.plugin.clone(),
            payload: base64::engine::general_purpose::STANDARD.encode(&payload),
            idempotency_key: idempotency_key.clone(),
        };
        let body = serde_json::to_string(&event).expect("an event serialises");
        let key = format!(
            "{}/{}/{idempotency_key}",
            call.scope.tenant, call.scope.plugin
        );
        for row in &subscribers {
            self.stage(outbox::Staged {
                tenant: row.tenant_id.clone(),
                plugin: row.plugin_id.clone(),
                kind: "event".into(),
                key: key.clone(),
                payload: body.clone(),
            });
        }
        tracing::debug!(request_id = %call.request_id, plugin = %call.scope.plugin, subscribers = subscribers.len(), "event staged");
        Ok(())
    }
}
