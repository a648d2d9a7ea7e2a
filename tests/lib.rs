//! Helpers for the integration tests: a real host on a loopback port over a real database
//! (SQLite in a temp dir, or a fresh schema in the Postgres at 127.0.0.1:5432), and the
//! guest programs built by `build.rs`.

use std::sync::Arc;

use linli::config::Config;
use linli::identity::Principal;
use linli::platform::{GrantChoice, Platform};
use linli::storage::tenants::TenantKind;
use tokio::sync::oneshot;

pub mod voting;

/// `examples/hello`, built for wasm32-wasip2.
pub const HELLO: &str = env!("GUEST_WASM_HELLO");
/// `tests/guests/hostile`: one route per attack on a limit.
pub const HOSTILE: &str = env!("GUEST_WASM_HOSTILE");
/// `tests/guests/bench`: a trivial handler and loops of data operations.
pub const BENCH: &str = env!("GUEST_WASM_BENCH");
/// `tests/guests/spy`: tries to read other plugins' data.
pub const SPY: &str = env!("GUEST_WASM_SPY");
/// `tests/guests/hello-next`: hello 9.0.0, asking for more than `examples/hello`.
pub const HELLO_NEXT: &str = env!("GUEST_WASM_HELLO_NEXT");
/// `plugins/consultation`: consultation and voting.
pub const CONSULTATION: &str = env!("GUEST_WASM_CONSULTATION");
/// `plugins/elderly-care`: the roster of elders and emergency alarms.
pub const ELDERLY_CARE: &str = env!("GUEST_WASM_ELDERLY_CARE");
/// `plugins/parking`: plates, gates, passes, lists, fees, spaces and reports.
pub const PARKING: &str = env!("GUEST_WASM_PARKING");

/// The bootstrap admin, as the platform API takes it.
pub const ROOT: Principal = Principal::Root;

/// The admin token every test host is configured with.
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

/// Which database a test host uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The Postgres server the tests use (`LINLI_TEST_POSTGRES_URL`, default: the local one).
pub fn postgres_base_url() -> String {
    std::env::var("LINLI_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A fresh, empty schema in the test Postgres, as a URL whose connections use it.
pub async fn fresh_postgres_url() -> String {
    use sqlx::Connection;
    let base = postgres_base_url();
    let schema = format!("linli_test_{}", uuid::Uuid::new_v4().simple());
    let mut conn = sqlx::PgConnection::connect(&base)
        .await
        .unwrap_or_else(|e| panic!("the tests need Postgres at {base}: {e}"));
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&mut conn)
        .await
        .expect("create test schema");
    let sep = if base.contains('?') { '&' } else { '?' };
    format!("{base}{sep}options=-c%20search_path%3D{schema}")
}

/// A database handle on `backend` (SQLite in `dir`, or a fresh Postgres schema).
pub async fn test_db(backend: Backend, dir: &std::path::Path) -> linli::storage::Db {
    let url = match backend {
        Backend::Sqlite => None,
        Backend::Postgres => Some(fresh_postgres_url().await),
    };
    linli::storage::Db::connect(url.as_deref(), dir)
        .await
        .expect("connect test db")
}

/// Instantiate async test functions `fn(Backend)` once per backend, in modules `sqlite` and
/// `postgres`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::Backend::Postgres).await
                }
            )*
        }
    };
}

/// The MQTT broker the tests use: `LINLI_TEST_MQTT_URL`, default the local Mosquitto.
pub fn mqtt_url() -> String {
    std::env::var("LINLI_TEST_MQTT_URL").unwrap_or_else(|_| "mqtt://127.0.0.1:1883".into())
}

/// A config for a test host of `backend` with its data dir in `dir`.
pub async fn test_config(backend: Backend, dir: &std::path::Path) -> Config {
    Config {
        data_dir: dir.to_path_buf(),
        database_url: match backend {
            Backend::Sqlite => None,
            Backend::Postgres => Some(fresh_postgres_url().await),
        },
        admin_token: Some(ADMIN_TOKEN.into()),
        seed_demo: false,
        listen: "127.0.0.1:0".parse().expect("literal"),
        // Only the channel tests send SMS (the default logs emergencies as SMS); elsewhere
        // each notification is one outbox entry, which the tests count.
        messaging: linli::config::MessagingConfig {
            sms_min_urgency: "off".into(),
            ..Default::default()
        },
        ..Config::default()
    }
}

/// A running host: the platform, an HTTP server on a loopback port, and a client.
pub struct TestHost {
    pub platform: Arc<Platform>,
    pub base: String,
    pub client: reqwest::Client,
    pub dir: tempfile::TempDir,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl TestHost {
    /// Start a host; `tweak` adjusts the config (limits, …) first.
    pub async fn start(backend: Backend, tweak: impl FnOnce(&mut Config)) -> TestHost {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = test_config(backend, dir.path()).await;
        tweak(&mut config);
        Self::start_with(config, dir).await
    }

    /// Start a host on an existing config and data dir (e.g. to restart over the same data).
    pub async fn start_with(config: Config, dir: tempfile::TempDir) -> TestHost {
        let platform = Platform::open(config).await.expect("open platform");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let (tx, rx) = oneshot::channel::<()>();
        let server = tokio::spawn(linli::serve(listener, platform.clone(), async {
            let _ = rx.await;
        }));
        TestHost {
            platform,
            base,
            // A contained plugin answers quickly; a hung request fails the test instead of
            // hanging it.
            client: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(60))
                .build()
                .expect("client"),
            dir,
            shutdown: Some(tx),
            server: Some(server),
        }
    }

    /// Stop serving (gracefully) and hand back the config and data dir.
    pub async fn stop(mut self) -> (Config, tempfile::TempDir) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.expect("server task").expect("server");
        }
        let config = self.platform.config.clone();
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().expect("tempdir"));
        (config, dir)
    }

    /// Create `qingshan > dongxi > {village}` (the county and township once).
    pub async fn village(&self, village: &str) {
        let p = &self.platform;
        let _ = p
            .create_tenant(
                &ROOT,
                "qingshan",
                None,
                TenantKind::County,
                "青山县",
                "Qingshan County",
            )
            .await;
        let _ = p
            .create_tenant(
                &ROOT,
                "dongxi",
                Some("qingshan"),
                TenantKind::Township,
                "东溪镇",
                "Dongxi Town",
            )
            .await;
        p.create_tenant(
            &ROOT,
            village,
            Some("dongxi"),
            TenantKind::Village,
            village,
            village,
        )
        .await
        .expect("create village");
    }

    /// Install the component at `path` at `tenant` through the platform, granting everything
    /// it asks for.
    pub async fn install(&self, tenant: &str, path: &str) {
        let bytes = std::fs::read(path).expect("read guest");
        self.platform
            .install(&ROOT, tenant, &bytes, &GrantChoice::all())
            .await
            .expect("install");
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// GET through the gateway or any route: status and body text.
    pub async fn get(&self, path: &str) -> (u16, String) {
        let r = self.client.get(self.url(path)).send().await.expect("GET");
        (r.status().as_u16(), r.text().await.expect("body"))
    }

    /// GET and parse JSON.
    pub async fn get_json(&self, path: &str) -> (u16, serde_json::Value) {
        let (status, body) = self.get(path).await;
        let value = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {body}"));
        (status, value)
    }

    /// An admin request builder with the bearer token.
    pub fn admin(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, self.url(path))
            .bearer_auth(ADMIN_TOKEN)
    }
}

/// A component whose request handler grows its table until the host refuses, then traps.
/// Written as a core module by hand (Rust has no table.grow) and wrapped as a component of
/// the `linli:plugin` world with wit-component.
pub fn table_bomb_component() -> Vec<u8> {
    wat_plugin("table-bomb", "0.1.0")
}

/// A hand-written component of the `linli:plugin` world with the given id and version,
/// whose request handler grows its table until refused and then traps.
pub fn wat_plugin(id: &str, version: &str) -> Vec<u8> {
    assert!(id.is_ascii() && version.is_ascii() && id.len() + version.len() < 100);
    // metadata record at 1024: ten (ptr, len) pairs; strings from 1200: id, version, title.
    let title = "table";
    let (id_at, version_at) = (1200u32, 1200 + id.len() as u32);
    let title_at = version_at + version.len() as u32;
    let strings = format!("{id}{version}{title}");
    let mut record = Vec::new();
    let fields: [(u32, u32); 10] = [
        (id_at, id.len() as u32),
        (version_at, version.len() as u32),
        (title_at, title.len() as u32),
        (title_at, title.len() as u32),
        (0, 0),
        (0, 0),
        (0, 0),
        (0, 0),
        (0, 0),
        (0, 0),
    ];
    for (ptr, len) in fields {
        record.extend_from_slice(&ptr.to_le_bytes());
        record.extend_from_slice(&len.to_le_bytes());
    }
    let escaped: String = record.iter().map(|b| format!("\\{b:02x}")).collect();
    let wat = format!(
        r#"(module
  (memory (export "memory") 1)
  (table $t 1 funcref)
  (global $heap (mut i32) (i32.const 8192))
  (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32)
    (local $p i32)
    (local.set $p (i32.and (i32.add (global.get $heap) (i32.sub (local.get 2) (i32.const 1)))
                           (i32.xor (i32.sub (local.get 2) (i32.const 1)) (i32.const -1))))
    (global.set $heap (i32.add (local.get $p) (local.get 3)))
    (block $done
      (loop $grow
        (br_if $done (i32.le_u (global.get $heap) (i32.mul (memory.size) (i32.const 65536))))
        (if (i32.eq (memory.grow (i32.const 1)) (i32.const -1)) (then unreachable))
        (br $grow)))
    (local.get $p))
  (func (export "linli:plugin/http@0.1.0#handle") (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)
    (loop $more
      (br_if $more (i32.ne (table.grow $t (ref.null func) (i32.const 1000)) (i32.const -1))))
    unreachable)
  (func (export "linli:plugin/events@0.1.0#handle-event") (param i32 i32 i32 i64 i32 i64 i32 i32 i32) (result i32)
    unreachable)
  (func (export "linli:plugin/lifecycle@0.1.0#describe") (result i32) (i32.const 1024))
  (func (export "linli:plugin/lifecycle@0.1.0#on-install") (result i32) (i32.const 4096))
  (func (export "linli:plugin/lifecycle@0.1.0#on-upgrade") (param i32 i32) (result i32) (i32.const 4096))
  (data (i32.const 1024) "{escaped}")
  (data (i32.const 1200) "{strings}")
)"#
    );
    let mut module = wat::parse_str(&wat).expect("table bomb WAT");
    let mut resolve = wit_parser::Resolve::default();
    let wit_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../wit");
    let (pkg, _) = resolve.push_dir(wit_dir).expect("parse wit/");
    let world = resolve.select_world(&[pkg], Some("plugin")).expect("world");
    wit_component::embed_component_metadata(
        &mut module,
        &resolve,
        world,
        wit_component::StringEncoding::UTF8,
    )
    .expect("embed metadata");
    wit_component::ComponentEncoder::default()
        .module(&module)
        .expect("module")
        .validate(true)
        .encode()
        .expect("encode component")
}
