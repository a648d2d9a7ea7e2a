//! Events to plugins that do not come from a request or a device: scheduled ticks and
//! messages other plugins published. Both go through the durable outbox (kinds `tick` and
//! `event`), so a crash loses none and the idempotency key keeps a retry from doubling one;
//! the outbox worker delivers them to the installation's event handler and retries with
//! backoff when the handler fails, up to [`MAX_EVENT_ATTEMPTS`].
//!
//! Schedules are five-field cron expressions from the plugin's metadata, evaluated in China
//! Standard Time (UTC+8). A worker on every replica looks for due schedules each
//! [`SCHEDULE_POLL`]; claiming a tick moves the schedule on and writes the tick to the outbox
//! in one transaction, so exactly one replica delivers each. Ticks missed while no host ran
//! are not replayed one by one: the next run delivers the latest missed one (its `due-at-ms`
//! says when), and plugins compare times against it.

use std::str::FromStr as _;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use chrono::{FixedOffset, TimeZone as _};
use serde::{Deserialize, Serialize};

use super::{Platform, PlatformError};
use crate::runtime::PluginMetadata;
use crate::runtime::bindings::Event;
use crate::runtime::bindings::exports::linli::plugin::events::{Message, Tick};
use crate::storage::installs::{self, Status};
use crate::storage::outbox::Entry;
use crate::storage::{now_ms, schedules, tenants};

/// How often a replica looks for due schedules.
pub const SCHEDULE_POLL: Duration = Duration::from_secs(1);

/// How many times a tick or event is handed to a failing handler before it is given up.
pub const MAX_EVENT_ATTEMPTS: i64 = 8;

/// The largest payload one published event may carry.
pub const MAX_EVENT_BYTES: usize = 64 * 1024;

/// UTC+8, where schedules are evaluated.
fn china() -> FixedOffset {
    FixedOffset::east_opt(8 * 3600).expect("a valid offset")
}

/// Parse a five-field cron expression (minute hour day-of-month month day-of-week).
pub fn parse_cron(expr: &str) -> Result<croner::Cron, String> {
    if expr.split_whitespace().count() != 5 {
        return Err(format!(
            "{expr:?}: 须为五段 cron 表达式 / not a five-field cron expression"
        ));
    }
    croner::Cron::from_str(expr).map_err(|e| format!("{expr:?}: {e}"))
}

/// The first time strictly after `after_ms` the schedule fires, in ms since the epoch.
pub fn next_after(cron: &croner::Cron, after_ms: i64) -> Option<i64> {
    // Whole seconds: the next occurrence keeps the start's fraction of a second otherwise.
    let at = china()
        .timestamp_millis_opt(after_ms.div_euclid(1000) * 1000)
        .single()?;
    cron.find_next_occurrence(&at, false)
        .ok()
        .map(|t| t.timestamp_millis())
}

/// A tick in the outbox.
#[derive(Debug, Serialize, Deserialize)]
struct TickPayload {
    schedule: String,
    due_at_ms: i64,
}

/// A published event in a subscriber's outbox.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct EventPayload {
    /// The place the publishing call was for: the subscriber is called for it too.
    pub served: Vec<String>,
    pub topic: String,
    pub source_plugin: String,
    /// Base64.
    pub payload: String,
    pub idempotency_key: String,
}

impl Platform {
    /// Write every due tick to the outbox; how many were written.
    pub async fn schedule_ticks(&self) -> Result<usize, PlatformError> {
        let now = now_ms();
        let mut written = 0;
        for row in installs::list(&self.db, None).await? {
            if row.status != Status::Active {
                continue;
            }
            let Ok(meta) = serde_json::from_str::<PluginMetadata>(&row.metadata) else {
                continue;
            };
            for s in &meta.schedules {
                let Ok(cron) = parse_cron(&s.cron) else {
                    continue;
                };
                let Some(next) = next_after(&cron, now) else {
                    continue;
                };
                let (tenant, plugin) = (&row.tenant_id, &row.plugin_id);
                match schedules::get(&self.db, tenant, plugin, &s.name).await? {
                    Some((seen, due)) if seen == s.cron => {
                        if due > now {
                            continue;
                        }
                        let payload = serde_json::to_string(&TickPayload {
                            schedule: s.name.clone(),
                            due_at_ms: due,
                        })
                        .expect("serialises");
                        if schedules::claim(&self.db, tenant, plugin, &s.name, due, next, &payload)
                            .await?
                        {
                            written += 1;
                        }
                    }
                    // New, or the cron changed with an upgrade: start from now.
                    _ => schedules::reset(&self.db, tenant, plugin, &s.name, &s.cron, next).await?,
                }
            }
        }
        Ok(written)
    }

    /// Run [`Self::schedule_ticks`] every [`SCHEDULE_POLL`] until the process ends.
    pub async fn run_schedules(self: Arc<Self>) {
        loop {
            if let Err(e) = self.schedule_ticks().await {
                tracing::warn!(error = %e, "scheduling ticks failed");
            }
            tokio::time::sleep(SCHEDULE_POLL).await;
        }
    }

    /// Queue a tick of `schedule` for the installation now, as if it were due at `due_at`
    /// (operators running a schedule by hand, and tests). The key makes a repeat a no-op.
    pub async fn queue_tick(
        &self,
        tenant: &str,
        plugin: &str,
        schedule: &str,
        due_at: i64,
    ) -> Result<bool, PlatformError> {
        let row = installs::get(&self.db, tenant, plugin)
            .await?
            .ok_or_else(|| PlatformError::NotInstalled {
                tenant: tenant.into(),
                plugin: plugin.into(),
            })?;
        let meta: PluginMetadata = serde_json::from_str(&row.metadata)
            .map_err(|e| PlatformError::Invalid(format!("stored metadata: {e}")))?;
        if !meta.schedules.iter().any(|s| s.name == schedule) {
            let names: Vec<_> = meta.schedules.iter().map(|s| s.name.as_str()).collect();
            return Err(PlatformError::Invalid(format!(
                "插件没有计划 {schedule:?} / the plugin has no schedule {schedule:?} (it has: {})",
                names.join(", ")
            )));
        }
        let payload = serde_json::to_string(&TickPayload {
            schedule: schedule.into(),
            due_at_ms: due_at,
        })
        .expect("serialises");
        Ok(crate::storage::outbox::enqueue(
            &self.db,
            tenant,
            plugin,
            "tick",
            &format!("{schedule}@{due_at}"),
            &payload,
        )
        .await?)
    }

    /// Hand a `tick` or `event` entry to its installation's event handler.
    pub(super) async fn deliver_event(&self, entry: &Entry) -> Result<usize, PlatformError> {
        let Some(row) = installs::get(&self.db, &entry.tenant, &entry.plugin).await? else {
            // Uninstalled since: nobody to tell.
            return Ok(0);
        };
        if row.status != Status::Active {
            return Err(PlatformError::Conflict(format!(
                "{} is suspended at {}; the event waits",
                entry.plugin, entry.tenant
            )));
        }
        let bad = |e: serde_json::Error| PlatformError::Invalid(format!("outbox payload: {e}"));
        let (served, event, request_id) = if entry.kind == "tick" {
            let t: TickPayload = serde_json::from_str(&entry.payload).map_err(bad)?;
            let served = tenants::path(&self.db, &entry.tenant).await?;
            let id = format!("tick-{}", t.schedule);
            let event = Event::Tick(Tick {
                schedule: t.schedule,
                due_at_ms: t.due_at_ms.max(0) as u64,
            });
            (served, event, id)
        } else {
            let e: EventPayload = serde_json::from_str(&entry.payload).map_err(bad)?;
            let payload = base64::engine::general_purpose::STANDARD
                .decode(&e.payload)
                .map_err(|e| PlatformError::Invalid(format!("outbox payload: {e}")))?;
            let id = format!("event-{}", e.topic);
            let event = Event::Message(Message {
                topic: e.topic,
                source_plugin: e.source_plugin,
                payload,
                idempotency_key: e.idempotency_key,
            });
            (e.served, event, id)
        };
        self.call_event(&row, served, &request_id, event)
            .await
            .map_err(|e| PlatformError::Host(anyhow::anyhow!(e)))?;
        Ok(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cron_in_china_time() {
        // 2026-12-01 11:59:30 UTC is 19:59:30 in China: a 20:00 schedule fires 30 s later.
        let at = 1_796_126_370_000;
        let daily = parse_cron("0 20 * * *").unwrap();
        assert_eq!(next_after(&daily, at), Some(at + 30_000));
        assert_eq!(next_after(&daily, at + 250), Some(at + 30_000));
        assert_eq!(
            next_after(&daily, at + 30_000),
            Some(at + 30_000 + 86_400_000)
        );
        let every = parse_cron("* * * * *").unwrap();
        assert_eq!(next_after(&every, at), Some(at + 30_000));
        assert!(parse_cron("0 20 * *").is_err());
        assert!(parse_cron("0 25 * * *").is_err());
        assert!(parse_cron("0 0 0 * * *").is_err(), "no seconds field");
    }
}
