//! Configuration: defaults < TOML file < `LINLI_*` environment < command-line flags.
//!
//! Unknown keys are an error at every layer, so a typo never silently falls back to a default.
//! Nested keys come from the environment with `__`: `LINLI_LIMITS__MEMORY_BYTES=33554432`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

/// The whole host configuration.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address the HTTP server listens on.
    pub listen: SocketAddr,
    /// Directory holding the SQLite database (when no `database_url`), the compiled-component
    /// cache and uploaded components. Created if missing.
    pub data_dir: PathBuf,
    /// `postgres://…` to use Postgres; unset means a SQLite file `linli.db` in `data_dir`.
    pub database_url: Option<String>,
    /// Bearer token for the admin API. There is no default: without it the admin API refuses
    /// every call.
    pub admin_token: Option<String>,
    /// On the first `serve` against an empty database, seed the demo county.
    pub seed_demo: bool,
    /// Directory of `*.wasm` plugins the demo seed installs in every demo village.
    pub demo_plugins_dir: Option<PathBuf>,
    /// Log format: `text` or `json`.
    pub log_format: LogFormat,
    /// Sandbox and quota limits.
    pub limits: Limits,
    /// Sign-in, sessions and lockout.
    pub auth: AuthConfig,
    /// The audit log.
    pub audit: AuditConfig,
    /// Devices: the MQTT broker link and per-device limits.
    pub devices: DevicesConfig,
    /// Channels notifications take besides the shell's inbox.
    pub messaging: MessagingConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:8080".parse().expect("valid literal address"),
            data_dir: PathBuf::from(".linli"),
            database_url: None,
            admin_token: None,
            seed_demo: true,
            demo_plugins_dir: None,
            log_format: LogFormat::Text,
            limits: Limits::default(),
            auth: AuthConfig::default(),
            audit: AuditConfig::default(),
            devices: DevicesConfig::default(),
            messaging: MessagingConfig::default(),
        }
    }
}

/// Channels beyond the inbox, each taken by notifications at or above its urgency
/// (`normal`, `high`, `emergency`, or `off`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MessagingConfig {
    /// SMS gateway: notifications are POSTed as `{"phones": […], "text": …}`. Unset: the
    /// SMS channel writes what it would send to the host log (phones masked).
    pub sms_url: Option<String>,
    pub sms_token: Option<String>,
    pub sms_min_urgency: String,
    /// A webhook (a county's command centre, a duty phone system): each notification is
    /// POSTed as JSON with a GB/T 35965-style `alert` block. Unset: no webhook.
    pub webhook_url: Option<String>,
    pub webhook_token: Option<String>,
    pub webhook_min_urgency: String,
    /// The village loudspeakers (devices of kind `loudspeaker` in the place): the
    /// notification is read out (`play`).
    pub loudspeaker_min_urgency: String,
}

impl Default for MessagingConfig {
    fn default() -> Self {
        MessagingConfig {
            sms_url: None,
            sms_token: None,
            sms_min_urgency: "emergency".into(),
            webhook_url: None,
            webhook_token: None,
            webhook_min_urgency: "high".into(),
            loudspeaker_min_urgency: "emergency".into(),
        }
    }
}

/// Sign-in, sessions, lockout and the SMS sender.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// How long a session token is valid, in seconds (rotate it to extend).
    pub session_ttl_secs: u64,
    /// The longest a session lasts from its sign-in, however often it is rotated, in seconds.
    pub session_max_secs: u64,
    /// Failed sign-ins for one phone from one client address (password or code) after which
    /// that client waits `lockout_secs` for that phone; also the wrong second-factor codes
    /// after which an admin's second factor locks.
    pub max_failures: u32,
    /// How long a lock lasts, in seconds.
    pub lockout_secs: u64,
    /// Failed password sign-ins for one phone from all clients within an hour after which
    /// password sign-in for it locks for `lockout_secs` (SMS codes still work).
    pub account_failures: u32,
    /// Failed sign-ins from one client address within 15 minutes, for any phones, after
    /// which that client waits until the window ends.
    pub client_failures: u32,
    /// Sign-in codes one client address may ask for per hour.
    pub codes_per_client_per_hour: u32,
    /// Sign-in codes this county sends per hour in all.
    pub codes_per_hour_total: u32,
    /// Proxies whose `X-Forwarded-For` names the client (the rate limits' client address);
    /// without one, the client is the connection's peer.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// How long an admin's activation code (to enrol their own authenticator) is valid, in
    /// hours.
    pub activation_ttl_hours: u32,
    /// How long a phone sign-in code is valid, in seconds.
    pub code_ttl_secs: u64,
    /// Least time between two codes to one phone, in seconds.
    pub code_resend_secs: u64,
    /// Most codes sent to one phone per hour.
    pub codes_per_hour: u32,
    /// Wrong tries one code survives.
    pub code_attempts: u32,
    /// Longest assisted-mode (帮办代办) session, in minutes.
    pub assist_max_minutes: u32,
    /// Where sign-in codes go.
    pub sms: SmsConfig,
    /// Sign-in through a province's unified identity (统一身份认证) over OpenID Connect.
    /// Designed here; not yet served by this host (see ARCHITECTURE.md).
    pub oidc: Option<OidcConfig>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            session_ttl_secs: 12 * 3600,
            session_max_secs: 7 * 24 * 3600,
            max_failures: 5,
            lockout_secs: 15 * 60,
            account_failures: 50,
            client_failures: 30,
            codes_per_client_per_hour: 20,
            codes_per_hour_total: 2_000,
            trusted_proxies: Vec::new(),
            activation_ttl_hours: 72,
            code_ttl_secs: 5 * 60,
            code_resend_secs: 60,
            codes_per_hour: 10,
            code_attempts: 5,
            assist_max_minutes: 240,
            sms: SmsConfig::Log,
            oidc: None,
        }
    }
}

/// The SMS sender for sign-in codes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum SmsConfig {
    /// Development: write each code to the host log (phone masked).
    Log,
    /// POST `{"phone", "code", "template"}` as JSON to an SMS gateway.
    Http {
        url: String,
        /// Sent as `Authorization: Bearer <token>`.
        #[serde(default)]
        token: Option<String>,
        /// The gateway's template id for sign-in codes.
        #[serde(default)]
        template: Option<String>,
    },
}

/// OpenID Connect login against a provincial unified identity platform.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OidcConfig {
    /// The issuer URL; discovery at `{issuer}/.well-known/openid-configuration`.
    pub issuer: String,
    pub client_id: String,
    pub client_secret: String,
    /// This host's callback, e.g. `https://linli.example/api/v1/auth/oidc/callback`.
    pub redirect_url: String,
    /// The ID-token claim holding the resident ID number that links to a linli person.
    #[serde(default = "default_oidc_id_claim")]
    pub id_number_claim: String,
    /// The claim holding the phone number (fallback link).
    #[serde(default = "default_oidc_phone_claim")]
    pub phone_claim: String,
}

fn default_oidc_id_claim() -> String {
    "id_number".into()
}

fn default_oidc_phone_claim() -> String {
    "phone_number".into()
}

/// The audit log.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// Records older than this many days are pruned (at least 180; MLPS level 3 asks for six
    /// months).
    pub retention_days: u32,
    /// The file holding the key the audit chain is keyed with (HMAC-SHA256): default
    /// `<data_dir>/audit.key`, created on first start. Keep it where the database's
    /// writers cannot read it; every replica needs the same key.
    pub key_file: Option<PathBuf>,
    /// The key itself, 64 hex digits (instead of a file; e.g. from a secret store).
    pub key: Option<String>,
    /// With `key`: the first record keyed with it (earlier ones were written without one).
    pub keyed_from_seq: i64,
    /// Where signed checkpoints of the chain's head are written (the outside witness that
    /// catches records cut off the end): default `<data_dir>/audit-checkpoints`. Point it at
    /// storage the database's writers cannot change, or ship its files off the machine.
    pub checkpoint_dir: Option<PathBuf>,
    /// How often a checkpoint is written when the chain has grown, in seconds (0: never).
    pub checkpoint_interval_secs: u64,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            retention_days: 180,
            key_file: None,
            key: None,
            keyed_from_seq: 1,
            checkpoint_dir: None,
            checkpoint_interval_secs: 600,
        }
    }
}

impl Config {
    /// Where the audit key comes from.
    pub fn audit_key_source(&self) -> crate::storage::AuditKeySource {
        match &self.audit.key {
            Some(key) => crate::storage::AuditKeySource::Hex {
                key: key.clone(),
                keyed_from_seq: self.audit.keyed_from_seq,
            },
            None => crate::storage::AuditKeySource::File(
                self.audit
                    .key_file
                    .clone()
                    .unwrap_or_else(|| self.data_dir.join("audit.key")),
            ),
        }
    }

    /// Where audit checkpoints are written and read.
    pub fn checkpoint_dir(&self) -> PathBuf {
        self.audit
            .checkpoint_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("audit-checkpoints"))
    }
}

/// Devices: where their messages come from, and how many each may send.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DevicesConfig {
    /// The MQTT broker devices talk to, `mqtt://host:port`. Unset: no broker link; devices
    /// reach the host over HTTP (`POST /api/v1/device-messages`) and `linli device simulate`
    /// injects messages straight into the database-backed pipeline.
    pub mqtt_url: Option<String>,
    /// Broker user name and password of the host (devices have their own).
    pub mqtt_username: Option<String>,
    pub mqtt_password: Option<String>,
    /// The host's MQTT client id. Keep it stable: the broker keeps the host's session (QoS 1
    /// messages queued while it was away) under this id. Replicas need distinct ids; they
    /// share the subscription (`$share/linli/…`), so each message reaches one replica.
    pub mqtt_client_id: String,
    /// The first topic level: devices publish on `<prefix>/<tenant>/<device>/up`.
    pub topic_prefix: String,
    /// With several replicas: subscribe as `$share/<group>/…` so each message reaches one
    /// of them. Unset (one host): a plain subscription, which brokers keep across restarts.
    pub mqtt_shared_group: Option<String>,
    /// Messages per second one device may send (sustained); the excess is dropped and counted.
    pub messages_per_second: u32,
    /// Messages one device may send in a burst above the sustained rate.
    pub burst: u32,
    /// Largest message payload, in bytes.
    pub payload_bytes: usize,
    /// The bearer token a broker's HTTP auth hook sends to `/api/v1/broker/auth` and
    /// `/api/v1/broker/acl` (devices sign in to the broker with their id and secret). Unset:
    /// the hook answers 404.
    pub broker_hook_token: Option<String>,
}

impl Default for DevicesConfig {
    fn default() -> Self {
        DevicesConfig {
            mqtt_url: None,
            mqtt_username: None,
            mqtt_password: None,
            mqtt_client_id: "linli-host".into(),
            topic_prefix: "linli".into(),
            mqtt_shared_group: None,
            messages_per_second: 5,
            burst: 20,
            payload_bytes: 4096,
            broker_hook_token: None,
        }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// Every limit a guest can run into, each with a name (the key) and a default.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Linear memory one plugin instance may grow to, in bytes.
    pub memory_bytes: u64,
    /// Wall-clock deadline for one call into a plugin (request, event or hook), in
    /// milliseconds, waiting for an instance slot included.
    pub call_timeout_ms: u64,
    /// Elements one table of an instance may hold.
    pub table_elements: u32,
    /// Plugin instances alive at once on this host (pooling allocator slots).
    pub instances: u32,
    /// Wasm stack one call may use, in bytes (deep recursion traps past it).
    pub wasm_stack_bytes: usize,
    /// Bytes one host call may carry from the guest (all key and value bytes of the call),
    /// and the largest request body the gateway passes to a plugin.
    pub hostcall_bytes: usize,
    /// Largest response body a plugin may return, in bytes.
    pub response_body_bytes: usize,
    /// Largest log line kept, in bytes; longer ones are truncated.
    pub log_line_bytes: usize,
    /// Log lines per second one installation may write; extra lines are dropped and counted.
    pub log_lines_per_second: u32,
    /// Bytes of stdout and of stderr captured per call.
    pub stdio_bytes: usize,
    /// Longest data key, in bytes.
    pub key_bytes: usize,
    /// Largest data value, in bytes.
    pub value_bytes: usize,
    /// Keys one (tenant, plugin) scope may hold.
    pub keys_per_scope: u64,
    /// Most entries one `list` page returns (also the page size when the guest asks for 0).
    pub list_page: u32,
    /// Most preconditions plus operations in one batch.
    pub batch_ops: usize,
    /// Traps within `trap_window_secs` after which a plugin is suspended for that tenant.
    pub trap_threshold: u32,
    /// The window for `trap_threshold`, in seconds.
    pub trap_window_secs: u64,
    /// Largest component accepted for install, in bytes.
    pub component_bytes: usize,
    /// Largest roster or device list accepted for import (CSV or XLSX), in bytes; an XLSX
    /// file's parts may unpack to at most four times this.
    pub import_bytes: usize,
    /// Guest CPU time one call may use, in milliseconds: past it the call is interrupted and
    /// counts towards `trap_threshold`. 0: half of `call_timeout_ms`. Time the call spends
    /// waiting (for a slot, the database, a device, the executor) is not CPU time; a call
    /// that runs out of `call_timeout_ms` while waiting fails without counting against the
    /// plugin.
    pub cpu_time_ms: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: 64 << 20,
            call_timeout_ms: 5_000,
            table_elements: 20_000,
            instances: 1_000,
            wasm_stack_bytes: 512 << 10,
            hostcall_bytes: 4 << 20,
            response_body_bytes: 4 << 20,
            log_line_bytes: 4 << 10,
            log_lines_per_second: 100,
            stdio_bytes: 64 << 10,
            key_bytes: 512,
            value_bytes: 1 << 20,
            keys_per_scope: 100_000,
            list_page: 1_000,
            batch_ops: 256,
            trap_threshold: 5,
            trap_window_secs: 60,
            component_bytes: 64 << 20,
            import_bytes: 16 << 20,
            cpu_time_ms: 0,
        }
    }
}

impl Limits {
    /// The guest CPU time one call may use (`cpu_time_ms`, or half of `call_timeout_ms`).
    pub fn cpu_time(&self) -> u64 {
        if self.cpu_time_ms == 0 {
            (self.call_timeout_ms / 2).max(1)
        } else {
            self.cpu_time_ms
        }
    }
}

/// Values given on the command line; `None` leaves the lower layers in force.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Overrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub demo_plugins_dir: Option<PathBuf>,
}

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
#[error("配置错误 / invalid configuration: {0}")]
pub struct ConfigError(String);

impl Config {
    /// Load: defaults, then the TOML file (if given; it must exist), then `LINLI_*` variables,
    /// then `overrides`. `LINLI_TEST_*` (the test suite's) and `LINLI_LOG` (the log filter) are
    /// not configuration keys.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Config, ConfigError> {
        Self::load_from(file, overrides, Env::prefixed("LINLI_"))
    }

    fn load_from(
        file: Option<&Path>,
        overrides: &Overrides,
        env: Env,
    ) -> Result<Config, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(file) = file {
            if !file.is_file() {
                return Err(ConfigError(format!(
                    "配置文件不存在 / config file not found: {}",
                    file.display()
                )));
            }
            figment = figment.merge(Toml::file_exact(file));
        }
        let env = env
            .filter(|key| {
                let key = key.as_str().to_ascii_lowercase();
                !key.starts_with("test_") && key != "log"
            })
            .split("__");
        figment = figment.merge(env).merge(Serialized::defaults(overrides));
        let config: Config = figment.extract().map_err(|e| ConfigError(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if let Some(token) = &self.admin_token
            && token.len() < 16
        {
            return Err(ConfigError(
                "admin_token 至少 16 个字符 / admin_token must be at least 16 characters".into(),
            ));
        }
        if let Some(url) = &self.database_url
            && !(url.starts_with("postgres://")
                || url.starts_with("postgresql://")
                || url.starts_with("sqlite:"))
        {
            return Err(ConfigError(format!(
                "database_url 须为 postgres:// 或 sqlite: / database_url must be postgres://… or sqlite:…, got {url:?}"
            )));
        }
        if self.audit.retention_days < 180 {
            return Err(ConfigError(format!(
                "audit.retention_days 不得少于 180 天 / audit.retention_days must be at least 180, got {}",
                self.audit.retention_days
            )));
        }
        let a = &self.auth;
        if a.session_max_secs < a.session_ttl_secs || a.session_max_secs > 366 * 24 * 3600 {
            return Err(ConfigError(
                "auth.session_max_secs 须不小于 auth.session_ttl_secs 且不超过一年 / auth.session_max_secs must be at least auth.session_ttl_secs and at most a year".into(),
            ));
        }
        if a.oidc.is_some() {
            // Refuse rather than silently ignore a sign-in path the operator expects to work.
            return Err(ConfigError(
                "auth.oidc：统一身份认证登录已设计但尚未实现，请删除该配置 / auth.oidc: unified-identity (OIDC) sign-in is designed but not built yet; remove [auth.oidc]".into(),
            ));
        }
        for (name, value) in [
            ("auth.session_ttl_secs", a.session_ttl_secs),
            ("auth.session_max_secs", a.session_max_secs),
            ("auth.max_failures", u64::from(a.max_failures)),
            ("auth.code_ttl_secs", a.code_ttl_secs),
            ("auth.code_attempts", u64::from(a.code_attempts)),
            ("auth.codes_per_hour", u64::from(a.codes_per_hour)),
            ("auth.assist_max_minutes", u64::from(a.assist_max_minutes)),
            ("auth.account_failures", u64::from(a.account_failures)),
            ("auth.client_failures", u64::from(a.client_failures)),
            (
                "auth.codes_per_client_per_hour",
                u64::from(a.codes_per_client_per_hour),
            ),
            (
                "auth.codes_per_hour_total",
                u64::from(a.codes_per_hour_total),
            ),
            (
                "auth.activation_ttl_hours",
                u64::from(a.activation_ttl_hours),
            ),
            ("auth.lockout_secs", a.lockout_secs),
        ] {
            if value == 0 {
                return Err(ConfigError(format!(
                    "{name} 必须大于 0 / {name} must be > 0"
                )));
            }
        }
        if let SmsConfig::Http { url, .. } = &a.sms
            && !(url.starts_with("https://") || url.starts_with("http://"))
        {
            return Err(ConfigError(format!(
                "auth.sms.url 须为 http(s):// / auth.sms.url must be http(s)://…, got {url:?}"
            )));
        }
        let m = &self.messaging;
        for (name, value) in [
            ("messaging.sms_min_urgency", &m.sms_min_urgency),
            ("messaging.webhook_min_urgency", &m.webhook_min_urgency),
            (
                "messaging.loudspeaker_min_urgency",
                &m.loudspeaker_min_urgency,
            ),
        ] {
            if !["normal", "high", "emergency", "off"].contains(&value.as_str()) {
                return Err(ConfigError(format!(
                    "{name} 须为 normal、high、emergency 或 off / {name} must be normal, high, emergency or off, got {value:?}"
                )));
            }
        }
        for (name, url) in [
            ("messaging.sms_url", &m.sms_url),
            ("messaging.webhook_url", &m.webhook_url),
        ] {
            if let Some(url) = url
                && !(url.starts_with("https://") || url.starts_with("http://"))
            {
                return Err(ConfigError(format!(
                    "{name} 须为 http(s):// / {name} must be http(s)://…, got {url:?}"
                )));
            }
        }
        let d = &self.devices;
        if let Some(url) = &d.mqtt_url
            && !url.starts_with("mqtt://")
        {
            return Err(ConfigError(format!(
                "devices.mqtt_url 须为 mqtt://主机:端口 / devices.mqtt_url must be mqtt://host:port, got {url:?}"
            )));
        }
        if !crate::storage::tenants::valid_id(&d.topic_prefix) {
            return Err(ConfigError(format!(
                "devices.topic_prefix 须为小写字母、数字和连字符 / devices.topic_prefix must be [a-z0-9-]+, got {:?}",
                d.topic_prefix
            )));
        }
        if d.broker_hook_token.as_ref().is_some_and(|t| t.len() < 16) {
            return Err(ConfigError(
                "devices.broker_hook_token 至少 16 个字符 / devices.broker_hook_token must be at least 16 characters".into(),
            ));
        }
        if let Some(g) = &d.mqtt_shared_group
            && !crate::storage::tenants::valid_id(g)
        {
            return Err(ConfigError(format!(
                "devices.mqtt_shared_group 须为小写字母、数字和连字符 / devices.mqtt_shared_group must be [a-z0-9-]+, got {g:?}"
            )));
        }
        if d.mqtt_client_id.is_empty() || d.mqtt_client_id.len() > 64 {
            return Err(ConfigError(
                "devices.mqtt_client_id 须为 1–64 个字符 / devices.mqtt_client_id must be 1–64 characters".into(),
            ));
        }
        for (name, value) in [
            (
                "devices.messages_per_second",
                u64::from(d.messages_per_second),
            ),
            ("devices.burst", u64::from(d.burst)),
            ("devices.payload_bytes", d.payload_bytes as u64),
        ] {
            if value == 0 {
                return Err(ConfigError(format!(
                    "{name} 必须大于 0 / {name} must be > 0"
                )));
            }
        }
        let l = &self.limits;
        let nonzero = [
            ("limits.memory_bytes", l.memory_bytes),
            ("limits.call_timeout_ms", l.call_timeout_ms),
            ("limits.instances", u64::from(l.instances)),
            ("limits.key_bytes", l.key_bytes as u64),
            ("limits.list_page", u64::from(l.list_page)),
            ("limits.batch_ops", l.batch_ops as u64),
            ("limits.trap_threshold", u64::from(l.trap_threshold)),
        ];
        for (name, value) in nonzero {
            if value == 0 {
                return Err(ConfigError(format!(
                    "{name} 必须大于 0 / {name} must be > 0"
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_none() -> Env {
        Env::prefixed("LINLI_UNIT_TEST_NEVER_SET_")
    }

    #[test]
    fn defaults_need_no_file() {
        let c = Config::load_from(None, &Overrides::default(), env_none()).unwrap();
        assert_eq!(c, Config::default());
        assert!(c.admin_token.is_none(), "no built-in admin token");
    }

    #[test]
    fn layers_file_then_flags() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("linli.toml");
        std::fs::write(
            &file,
            "listen = \"127.0.0.1:9000\"\ndata_dir = \"/tmp/x\"\n[limits]\nmemory_bytes = 1048576\n",
        )
        .unwrap();
        let flags = Overrides {
            data_dir: Some("/tmp/y".into()),
            ..Overrides::default()
        };
        let c = Config::load_from(Some(&file), &flags, env_none()).unwrap();
        assert_eq!(c.listen.port(), 9000);
        assert_eq!(c.data_dir, PathBuf::from("/tmp/y"));
        assert_eq!(c.limits.memory_bytes, 1 << 20);
        assert_eq!(c.limits.key_bytes, Limits::default().key_bytes);
    }

    #[test]
    fn unknown_keys_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("linli.toml");
        std::fs::write(&file, "lisen = \"127.0.0.1:9000\"\n").unwrap();
        let err = Config::load_from(Some(&file), &Overrides::default(), env_none()).unwrap_err();
        assert!(err.to_string().contains("lisen"), "{err}");
        std::fs::write(&file, "[limits]\nmemory = 1\n").unwrap();
        let err = Config::load_from(Some(&file), &Overrides::default(), env_none()).unwrap_err();
        assert!(err.to_string().contains("memory"), "{err}");
    }

    #[test]
    fn missing_file_and_short_token_are_errors() {
        let err = Config::load_from(
            Some(Path::new("/nonexistent/linli.toml")),
            &Overrides::default(),
            env_none(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("not found"));
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("linli.toml");
        std::fs::write(&file, "admin_token = \"short\"\n").unwrap();
        assert!(Config::load_from(Some(&file), &Overrides::default(), env_none()).is_err());
    }
}
