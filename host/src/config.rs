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
    /// Wall-clock deadline for one call into a plugin (request, event or hook), in milliseconds.
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
