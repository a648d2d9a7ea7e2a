//! Delivering the outbox: notifications plugins asked for reach the inbox of every recipient
//! in the place the call was for, at least once, and never twice (one inbox row per entry
//! and person, written in the same transaction that marks the entry delivered).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Platform, PlatformError};
use crate::storage::outbox::{self, Entry};
use crate::storage::people::{self, Filter, PersonKind};
use crate::storage::{StorageError, now_ms, tenants};

/// How often the worker looks for due entries.
pub const OUTBOX_POLL: Duration = Duration::from_millis(200);
/// How long an entry for a suspended installation waits before it is looked at again (a
/// resume makes it due at once).
const SUSPENDED_WAIT_MS: i64 = 60_000;

/// The most people one notification reaches; beyond it the entry fails with this named.
pub const MAX_RECIPIENTS: usize = 10_000;

/// Who a notification is for, as stored in the outbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "type", content = "id")]
pub enum Recipient {
    Resident(String),
    Household(String),
    Role(String),
    Everyone,
}

/// A `notify` entry's payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notice {
    /// The tenant the plugin's call was for: recipients are resolved inside its subtree.
    pub served: String,
    pub to: Vec<Recipient>,
    pub title_zh: String,
    pub title_en: String,
    pub body_zh: String,
    pub body_en: String,
    pub link: Option<String>,
    /// `normal`, `high` or `emergency`.
    pub urgency: String,
}

impl Platform {
    /// Deliver every due entry this worker can claim; how many were delivered. Entries are
    /// leased as they are claimed (see [`outbox::claim_due`]), so replicas running this at
    /// the same time never hand out the same one.
    pub async fn deliver_outbox(&self) -> Result<usize, PlatformError> {
        self.release_leases().await?;
        let mut delivered = 0;
        loop {
            let due = outbox::claim_due(&self.db, now_ms(), 100).await?;
            if due.is_empty() {
                return Ok(delivered);
            }
            for entry in &due {
                if self.settle_entry(entry).await? {
                    delivered += 1;
                }
            }
        }
    }

    /// Deliver one claimed entry and record what came of it: delivered, retried later with
    /// backoff, postponed (its installation is suspended) or given up. Whether it was
    /// delivered. An error means the outcome could not be recorded; the lease then runs out
    /// and the entry is tried again.
    pub(super) async fn settle_entry(&self, entry: &Entry) -> Result<bool, PlatformError> {
        // Keep the lease while the delivery runs (a 10,000-person notification, a slow
        // channel): renewed every third of its length.
        let renew = async {
            loop {
                tokio::time::sleep(std::time::Duration::from_millis(
                    (outbox::LEASE_MS / 3) as u64,
                ))
                .await;
                match outbox::renew(&self.db, entry).await {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::warn!(entry = %entry.id, "outbox lease lost during delivery");
                    }
                    Err(e) => {
                        tracing::warn!(entry = %entry.id, error = %e, "outbox lease not renewed")
                    }
                }
            }
        };
        let outcome = tokio::select! {
            outcome = self.deliver_entry(entry) => outcome,
            never = renew => never,
        };
        let delivered = outcome.is_ok();
        let recorded = self.record_outcome(entry, outcome).await;
        if let Err(e) = &recorded {
            if delivered {
                // Handed over, but not marked: the lease runs out and it is handed over again
                // (at least once), unless a retry of the mark below gets through first.
                tracing::warn!(entry = %entry.id, error = %e, "entry delivered but not marked; it may be delivered again");
            } else {
                // Not handed over, and the retry time not recorded: free it for the next
                // round as soon as the database takes writes again, not when the lease ends.
                if let Some(token) = &entry.lease_token {
                    self.leases_to_release
                        .lock()
                        .expect("lease list lock")
                        .push((entry.id.clone(), token.clone()));
                }
            }
        }
        recorded
    }

    /// Free the leases of entries whose failed delivery could not be recorded.
    async fn release_leases(&self) -> Result<(), PlatformError> {
        let ids = std::mem::take(&mut *self.leases_to_release.lock().expect("lease list lock"));
        if ids.is_empty() {
            return Ok(());
        }
        if let Err(e) = outbox::release(&self.db, &ids).await {
            self.leases_to_release
                .lock()
                .expect("lease list lock")
                .extend(ids);
            return Err(e.into());
        }
        Ok(())
    }

    async fn record_outcome(
        &self,
        entry: &Entry,
        outcome: Result<usize, PlatformError>,
    ) -> Result<bool, PlatformError> {
        let plugin_event = matches!(entry.kind.as_str(), "tick" | "event" | "telemetry");
        match outcome {
            Ok(n) => {
                if entry.kind == "notify" {
                    tracing::info!(entry = %entry.id, plugin = %entry.plugin, tenant = %entry.tenant, recipients = n, "notification delivered");
                } else {
                    // A few quick tries: a mark that does not get through means the plugin
                    // is handed the entry again when the lease runs out.
                    let mut pause = std::time::Duration::from_millis(100);
                    let mut tries = 0;
                    while let Err(e) = outbox::delivered(&self.db, &entry.id, now_ms()).await {
                        tries += 1;
                        if tries == 4 {
                            return Err(e.into());
                        }
                        tokio::time::sleep(pause).await;
                        pause *= 2;
                    }
                    tracing::debug!(entry = %entry.id, kind = %entry.kind, plugin = %entry.plugin, tenant = %entry.tenant, "entry delivered");
                }
                Ok(true)
            }
            // A suspended installation's events wait without using up attempts;
            // resuming it makes them due again at once.
            Err(e @ PlatformError::Conflict(_)) if plugin_event => {
                tracing::debug!(entry = %entry.id, plugin = %entry.plugin, tenant = %entry.tenant, error = %e, "entry waits");
                outbox::postpone(
                    &self.db,
                    entry,
                    &e.to_string(),
                    now_ms() + SUSPENDED_WAIT_MS,
                )
                .await?;
                Ok(false)
            }
            Err(e)
                if entry.kind != "notify"
                    && entry.attempts + 1 >= super::events::MAX_EVENT_ATTEMPTS =>
            {
                tracing::error!(entry = %entry.id, kind = %entry.kind, plugin = %entry.plugin, tenant = %entry.tenant, attempts = entry.attempts + 1, error = %e, "entry given up");
                outbox::abandon(&self.db, &entry.id, &e.to_string()).await?;
                Ok(false)
            }
            Err(e) => {
                // Retry later, backing off: 2, 4, 8 … s, at most 10 minutes.
                let wait = 1_000i64 << (entry.attempts + 1).min(9);
                let next = now_ms() + wait.min(600_000);
                tracing::warn!(entry = %entry.id, kind = %entry.kind, plugin = %entry.plugin, attempts = entry.attempts + 1, error = %e, "entry not delivered; will retry");
                outbox::failed(&self.db, entry, &e.to_string(), next).await?;
                Ok(false)
            }
        }
    }

    /// Run [`Self::deliver_outbox`] every [`OUTBOX_POLL`], and at once when something was
    /// queued here, until the process ends.
    pub async fn run_outbox(self: Arc<Self>) {
        loop {
            if let Err(e) = self.deliver_outbox().await {
                tracing::warn!(error = %e, "outbox delivery failed");
            }
            tokio::select! {
                _ = tokio::time::sleep(OUTBOX_POLL) => {}
                _ = self.outbox_wake.notified() => {}
            }
        }
    }

    async fn deliver_entry(&self, entry: &Entry) -> Result<usize, PlatformError> {
        match entry.kind.as_str() {
            "notify" => {}
            "tick" | "event" => return self.deliver_event(entry).await,
            "telemetry" => return self.deliver_telemetry(entry).await,
            "channel" => return self.deliver_channel(entry).await,
            other => {
                return Err(PlatformError::Invalid(format!(
                    "unknown outbox kind {other:?}"
                )));
            }
        }
        let notice: Notice = serde_json::from_str(&entry.payload)
            .map_err(|e| PlatformError::Invalid(format!("outbox payload: {e}")))?;
        let people = self.recipients(&notice).await?;
        let jobs = self.channel_jobs(entry, &notice, &people).await?;
        let at = now_ms();
        crate::storage::write_tx!(&self.db, |tx| {
            for (key, payload) in &jobs {
                outbox::enqueue_in(tx, &entry.tenant, &entry.plugin, "channel", key, payload)
                    .await?;
            }
            for person in &people {
                outbox::inbox_in(
                    tx,
                    entry,
                    person,
                    (&notice.title_zh, &notice.title_en),
                    (&notice.body_zh, &notice.body_en),
                    notice.link.as_deref(),
                    &notice.urgency,
                    at,
                )
                .await?;
            }
            outbox::delivered_in(tx, &entry.id, at).await?;
            Ok::<_, StorageError>(())
        })?;
        Ok(people.len())
    }

    /// The people a notice reaches: residents, households and everyone inside the served
    /// subtree; role holders on its path or inside it (roles hold downward).
    async fn recipients(&self, n: &Notice) -> Result<Vec<String>, PlatformError> {
        let subtree = tenants::subtree(&self.db, &n.served).await?;
        let path = tenants::path(&self.db, &n.served).await?;
        let mut out = BTreeSet::new();
        let residents = |household: Option<String>| Filter {
            kind: Some(PersonKind::Resident),
            tags: Vec::new(),
            household,
            born_on_or_before: None,
        };
        for r in &n.to {
            match r {
                Recipient::Resident(id) => {
                    if let Some(p) = people::get(&self.db, id).await?
                        && p.status == "active"
                        && p.kind == PersonKind::Resident
                        && subtree.contains(&p.tenant)
                    {
                        out.insert(p.id);
                    }
                }
                Recipient::Household(h) => {
                    self.all_people(&subtree, &residents(Some(h.clone())), &mut out)
                        .await?
                }
                Recipient::Everyone => {
                    self.all_people(&subtree, &residents(None), &mut out)
                        .await?
                }
                Recipient::Role(role) => {
                    let places: Vec<String> = path.iter().chain(&subtree).cloned().collect();
                    out.extend(outbox::role_holders(&self.db, &places, role).await?);
                }
            }
            if out.len() > MAX_RECIPIENTS {
                return Err(PlatformError::TooMany(format!(
                    "通知对象超过 {MAX_RECIPIENTS} 人 / more than {MAX_RECIPIENTS} recipients"
                )));
            }
        }
        Ok(out.into_iter().collect())
    }

    async fn all_people(
        &self,
        subtree: &[String],
        filter: &Filter,
        out: &mut BTreeSet<String>,
    ) -> Result<(), PlatformError> {
        let mut after: Option<String> = None;
        loop {
            let page = people::list(&self.db, subtree, filter, after.as_deref(), 1000).await?;
            let more = page.len() == 1000;
            after = page.last().map(|p| p.id.clone());
            out.extend(page.into_iter().map(|p| p.id));
            if !more || out.len() > MAX_RECIPIENTS {
                return Ok(());
            }
        }
    }
}
