//! Channels a notification takes besides the shell's inbox, by urgency
//! (`[messaging]` in the config): SMS to the recipients' phones, a webhook carrying a
//! GB/T 35965-style alert (for a county's command centre or duty system), and the village
//! loudspeakers, which read out notifications addressed to everyone in the place (never one
//! about a person).
//!
//! Without `messaging.sms_url` the SMS channel only logs that it would have sent (the
//! notification id, masked phones and the length — never the text, which names people).
//!
//! When a notification is delivered to the inbox, one outbox entry per channel (per
//! loudspeaker, for those) is written in the same transaction; the outbox worker sends each on
//! its own, retrying with backoff and giving up after
//! [`super::events::MAX_EVENT_ATTEMPTS`], so one channel failing neither blocks nor repeats
//! another.

use std::sync::OnceLock;
use std::time::Duration;

use chrono::{FixedOffset, TimeZone as _};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::messaging::Notice;
use super::{Platform, PlatformError};
use crate::storage::commands::CommandStatus;
use crate::storage::devices::{self, DeviceKind, DeviceStatus, Filter};
use crate::storage::outbox::Entry;
use crate::storage::{people, tenants};

/// The longest SMS text, in characters (longer ones are cut with an ellipsis).
pub const MAX_SMS_CHARS: usize = 300;

/// How long a loudspeaker has to acknowledge `play`.
const LOUDSPEAKER_TIMEOUT: Duration = Duration::from_secs(5);

fn rank(urgency: &str) -> u8 {
    match urgency {
        "normal" => 0,
        "high" => 1,
        "emergency" => 2,
        _ => u8::MAX,
    }
}

/// Whether a notification of `urgency` takes a channel configured for `min`.
fn takes(urgency: &str, min: &str) -> bool {
    min != "off" && rank(urgency) >= rank(min)
}

/// One channel send, as the outbox keeps it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct ChannelJob {
    /// `sms`, `webhook` or `loudspeaker`.
    pub channel: String,
    /// The notification's outbox entry.
    pub notice_id: String,
    pub plugin: String,
    pub notice: Notice,
    /// The people it reached (for SMS).
    #[serde(default)]
    pub people: Vec<String>,
    /// The loudspeaker, for that channel.
    #[serde(default)]
    pub device: Option<String>,
}

fn client() -> &'static reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("an HTTP client with defaults builds")
    })
}

/// A GB/T 35965-style alert (the structure of the national emergency-information exchange
/// protocol, CAP-like) for a notification.
pub fn alert(entry_id: &str, plugin: &str, notice: &Notice, sent_ms: i64) -> Value {
    let china = FixedOffset::east_opt(8 * 3600).expect("a valid offset");
    let sent = china
        .timestamp_millis_opt(sent_ms)
        .single()
        .map(|t| t.to_rfc3339())
        .unwrap_or_default();
    let (urgency, severity) = match notice.urgency.as_str() {
        "emergency" => ("Immediate", "Extreme"),
        "high" => ("Expected", "Severe"),
        _ => ("Future", "Minor"),
    };
    json!({
        "identifier": format!("LINLI-{entry_id}"),
        "sender": format!("linli/{}/{plugin}", notice.served),
        "sendTime": sent,
        "status": "Actual",
        "msgType": "Alert",
        "scope": "Public",
        "info": {
            "language": "zh-CN",
            "eventType": plugin,
            "urgency": urgency,
            "severity": severity,
            "certainty": "Observed",
            "headline": notice.title_zh,
            "description": notice.body_zh,
            "area": { "areaDesc": notice.served },
        }
    })
}

impl Platform {
    /// The channel jobs a delivered notification makes: `(key, payload)` for the outbox.
    pub(super) async fn channel_jobs(
        &self,
        entry: &Entry,
        notice: &Notice,
        people: &[String],
    ) -> Result<Vec<(String, String)>, PlatformError> {
        let cfg = &self.config.messaging;
        let job = |channel: &str, device: Option<String>, people: Vec<String>| ChannelJob {
            channel: channel.into(),
            notice_id: entry.id.clone(),
            plugin: entry.plugin.clone(),
            notice: notice.clone(),
            people,
            device,
        };
        let mut jobs = Vec::new();
        if takes(&notice.urgency, &cfg.sms_min_urgency) && !people.is_empty() {
            jobs.push(job("sms", None, people.to_vec()));
        }
        if cfg.webhook_url.is_some() && takes(&notice.urgency, &cfg.webhook_min_urgency) {
            jobs.push(job("webhook", None, Vec::new()));
        }
        // Loudspeakers are public: only notifications for everyone in the place go out on
        // them, never one about a person to their family.
        let public = notice.to.contains(&super::messaging::Recipient::Everyone);
        if public && takes(&notice.urgency, &cfg.loudspeaker_min_urgency) {
            let filter = Filter {
                kinds: Some(vec![DeviceKind::Loudspeaker]),
                status: Some(DeviceStatus::Active),
                person: None,
            };
            for d in devices::list(&self.db, &notice.served, &filter, None, 1000).await? {
                jobs.push(job("loudspeaker", Some(d.id), Vec::new()));
            }
        }
        Ok(jobs
            .into_iter()
            .map(|j| {
                let key = match &j.device {
                    Some(d) => format!("{}/loudspeaker/{d}", entry.id),
                    None => format!("{}/{}", entry.id, j.channel),
                };
                (key, serde_json::to_string(&j).expect("a job serialises"))
            })
            .collect())
    }

    /// Send one channel job.
    pub(super) async fn deliver_channel(&self, entry: &Entry) -> Result<usize, PlatformError> {
        let job: ChannelJob = serde_json::from_str(&entry.payload)
            .map_err(|e| PlatformError::Invalid(format!("outbox payload: {e}")))?;
        let failed =
            |e: String| PlatformError::Host(anyhow::anyhow!("{} channel: {e}", job.channel));
        let n = &job.notice;
        match job.channel.as_str() {
            "sms" => {
                let mut phones = Vec::new();
                for id in &job.people {
                    if let Some(p) = people::get(&self.db, id).await?
                        && let Some(phone) = p.phone
                    {
                        phones.push(phone);
                    }
                }
                if phones.is_empty() {
                    return Ok(0);
                }
                let mut text = format!("【邻里】{}：{}", n.title_zh, n.body_zh);
                if text.chars().count() > MAX_SMS_CHARS {
                    text = text.chars().take(MAX_SMS_CHARS - 1).collect::<String>() + "…";
                }
                let cfg = &self.config.messaging;
                match &cfg.sms_url {
                    None => {
                        let masked: Vec<_> = phones
                            .iter()
                            .map(|p| crate::identity::mask::phone(p))
                            .collect();
                        // The text names people and places: it stays out of the log.
                        tracing::info!(
                            notification = %job.notice_id,
                            phones = ?masked,
                            chars = text.chars().count(),
                            "SMS not sent: no messaging.sms_url (set it to send)"
                        );
                    }
                    Some(url) => {
                        // The entry id names this send: a retry (after a timeout, a crash
                        // or by another replica) carries the same one, so a gateway can
                        // drop the repeat.
                        let mut req = client()
                            .post(url)
                            .header("Idempotency-Key", &entry.id)
                            .json(&json!({ "id": entry.id, "phones": phones, "text": text }));
                        if let Some(t) = &cfg.sms_token {
                            req = req.bearer_auth(t);
                        }
                        let resp = req.send().await.map_err(|e| failed(e.to_string()))?;
                        if !resp.status().is_success() {
                            return Err(failed(format!("gateway answered {}", resp.status())));
                        }
                    }
                }
                Ok(phones.len())
            }
            "webhook" => {
                let cfg = &self.config.messaging;
                let Some(url) = &cfg.webhook_url else {
                    return Ok(0);
                };
                let place = tenants::get(&self.db, &n.served)
                    .await?
                    .map(|t| t.name_zh)
                    .unwrap_or_else(|| n.served.clone());
                let mut alert = alert(&job.notice_id, &job.plugin, n, entry.created_at);
                alert["info"]["area"]["areaDesc"] = json!(place);
                let body = json!({
                    "id": job.notice_id,
                    "delivery_id": entry.id,
                    "tenant": n.served,
                    "plugin": job.plugin,
                    "title_zh": n.title_zh,
                    "title_en": n.title_en,
                    "body_zh": n.body_zh,
                    "body_en": n.body_en,
                    "link": n.link,
                    "urgency": n.urgency,
                    "alert": alert,
                });
                let mut req = client()
                    .post(url)
                    .header("Idempotency-Key", &entry.id)
                    .json(&body);
                if let Some(t) = &cfg.webhook_token {
                    req = req.bearer_auth(t);
                }
                let resp = req.send().await.map_err(|e| failed(e.to_string()))?;
                if !resp.status().is_success() {
                    return Err(failed(format!("webhook answered {}", resp.status())));
                }
                Ok(1)
            }
            "loudspeaker" => {
                let Some(id) = &job.device else {
                    return Ok(0);
                };
                let Some(d) = devices::get(&self.db, id).await? else {
                    return Ok(0);
                };
                if d.status != DeviceStatus::Active {
                    return Ok(0);
                }
                let text: String = format!("紧急通知：{}。{}", n.title_zh, n.body_zh)
                    .chars()
                    .take(500)
                    .collect();
                let done = self
                    .commands
                    .send(
                        &d,
                        ("host", "messaging"),
                        "play",
                        json!({ "text": text, "repeat": 2 }),
                        LOUDSPEAKER_TIMEOUT,
                    )
                    .await?;
                match done.status {
                    CommandStatus::Acknowledged => Ok(1),
                    other => Err(failed(format!("{id}: {}", other.as_str()))),
                }
            }
            other => Err(PlatformError::Invalid(format!("unknown channel {other:?}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urgency_thresholds() {
        assert!(takes("emergency", "emergency"));
        assert!(!takes("high", "emergency"));
        assert!(takes("high", "normal"));
        assert!(!takes("emergency", "off"));
    }

    #[test]
    fn alerts_follow_the_exchange_protocol_shape() {
        let n = Notice {
            served: "dongcun".into(),
            to: vec![],
            title_zh: "紧急呼叫：李桂兰".into(),
            title_en: "Emergency call".into(),
            body_zh: "按下了紧急呼叫按钮".into(),
            body_en: "pressed".into(),
            link: None,
            urgency: "emergency".into(),
        };
        let a = alert("e1", "elderly-care", &n, 1_796_126_370_000);
        assert_eq!(a["identifier"], "LINLI-e1");
        assert_eq!(a["msgType"], "Alert");
        assert_eq!(a["sendTime"], "2026-12-01T19:59:30+08:00");
        assert_eq!(a["info"]["severity"], "Extreme");
        assert_eq!(a["info"]["headline"], "紧急呼叫：李桂兰");
    }
}
