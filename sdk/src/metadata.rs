//! What a plugin says about itself.

use crate::__private::exports::linli::plugin::lifecycle as wit;

/// A plugin's metadata, built with chained calls.
#[derive(Debug, Clone)]
pub struct Metadata {
    inner: wit::Metadata,
}

impl Metadata {
    /// `id`: `[a-z][a-z0-9-]{0,62}`, the plugin's name in URLs. `version`: semantic version
    /// (use `env!("CARGO_PKG_VERSION")`). Titles in Chinese and English.
    pub fn new(id: &str, version: &str, title_zh: &str, title_en: &str) -> Self {
        Metadata {
            inner: wit::Metadata {
                id: id.into(),
                version: version.into(),
                title_zh: title_zh.into(),
                title_en: title_en.into(),
                description_zh: String::new(),
                description_en: String::new(),
                required: Vec::new(),
                optional: Vec::new(),
                subscriptions: Vec::new(),
                schedules: Vec::new(),
            },
        }
    }

    pub fn description(mut self, zh: &str, en: &str) -> Self {
        self.inner.description_zh = zh.into();
        self.inner.description_en = en.into();
        self
    }

    /// A capability the plugin cannot work without (`data`, `identity.phone`, `device.gate`,
    /// `messaging.notify`, …) and why, in Chinese and English.
    pub fn require(mut self, capability: &str, purpose_zh: &str, purpose_en: &str) -> Self {
        self.inner
            .required
            .push(request(capability, purpose_zh, purpose_en));
        self
    }

    /// A capability the plugin uses if granted.
    pub fn optional(mut self, capability: &str, purpose_zh: &str, purpose_en: &str) -> Self {
        self.inner
            .optional
            .push(request(capability, purpose_zh, purpose_en));
        self
    }

    /// Receive events published on `topic` at the same tenant.
    pub fn subscribe(mut self, topic: &str) -> Self {
        self.inner.subscriptions.push(topic.into());
        self
    }

    /// Receive a tick on a five-field cron schedule.
    pub fn schedule(mut self, name: &str, cron: &str) -> Self {
        self.inner.schedules.push(wit::Schedule {
            name: name.into(),
            cron: cron.into(),
        });
        self
    }

    pub fn id(&self) -> &str {
        &self.inner.id
    }

    #[doc(hidden)]
    pub fn into_wit(self) -> wit::Metadata {
        self.inner
    }
}

fn request(name: &str, purpose_zh: &str, purpose_en: &str) -> wit::CapabilityRequest {
    wit::CapabilityRequest {
        name: name.into(),
        purpose_zh: purpose_zh.into(),
        purpose_en: purpose_en.into(),
    }
}
