//! The `linli` binary end to end: the demo county, restarts, configuration layering and the
//! tenant/plugin commands, as a user runs them.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use linli_tests::{ADMIN_TOKEN, HELLO, fresh_postgres_url};

/// `target/<profile>/linli`, next to this test binary's `deps/` directory.
pub(crate) fn linli_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let bin = exe.parent().unwrap().parent().unwrap().join("linli");
    assert!(
        bin.is_file(),
        "{} not built (cargo test --workspace builds it)",
        bin.display()
    );
    bin
}

fn linli(data_dir: &Path, args: &[&str]) -> Output {
    Command::new(linli_bin())
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .env_remove("LINLI_ADMIN_TOKEN")
        .env_remove("LINLI_DATABASE_URL")
        .output()
        .unwrap()
}

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "linli failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub(crate) struct Server {
    child: Child,
    pub(crate) base: String,
    /// stdout and stderr go to a file (a pipe nobody drains would block a chatty server).
    log: PathBuf,
}

impl Server {
    fn start(data_dir: &Path, demo: &Path) -> Server {
        Server::start_with(data_dir, demo, &[])
    }

    /// `linli serve` on a free port with the demo county, plus these environment variables.
    pub(crate) fn start_with(data_dir: &Path, demo: &Path, env: &[(&str, &str)]) -> Server {
        let log = data_dir.join("serve.log");
        let out = std::fs::File::create(&log).unwrap();
        // Port 0: the server binds a free port itself and prints it in its banner (a port
        // picked here could be taken by another test's server before this one binds it).
        let mut child = Command::new(linli_bin())
            .args(["serve", "--listen", "127.0.0.1:0", "--demo-plugins"])
            .arg(demo)
            .arg("--data-dir")
            .arg(data_dir)
            .env("LINLI_ADMIN_TOKEN", ADMIN_TOKEN)
            .env_remove("LINLI_DATABASE_URL")
            .envs(env.iter().copied())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        let started = Instant::now();
        let base = loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if let Some(at) = text.find("serving on http://") {
                let rest = &text[at + "serving on ".len()..];
                break rest.split_whitespace().next().unwrap().to_owned();
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("linli serve exited ({status}):\n{text}");
            }
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "linli serve did not come up:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(100));
        };
        while reqwest::blocking_get_ok(&format!("{base}/healthz")).is_none() {
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "linli serve did not answer"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Server { child, base, log }
    }

    /// SIGKILL (kill -9): no shutdown, no flush, mid-whatever it was doing.
    pub(crate) fn kill(self) {
        let mut child = self.child;
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// SIGTERM, then the exit status and everything it logged.
    pub(crate) fn stop(self) -> (bool, String) {
        let pid = self.child.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
        let mut child = self.child;
        let status = child.wait().unwrap();
        let log = String::from_utf8_lossy(&std::fs::read(&self.log).unwrap()).into_owned();
        (status.success(), log)
    }
}

/// A tiny blocking GET on top of std, so these tests need no second HTTP client.
mod reqwest {
    use std::io::{Read, Write};
    use std::net::TcpStream;

    pub fn get(url: &str) -> Option<(u16, String)> {
        let rest = url.strip_prefix("http://")?;
        let (host, path) = rest.split_once('/').map(|(h, p)| (h, format!("/{p}")))?;
        let mut s = TcpStream::connect(host).ok()?;
        write!(s, "GET {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n", super::ADMIN_TOKEN).ok()?;
        let mut text = String::new();
        s.read_to_string(&mut text).ok()?;
        let status = text.split_whitespace().nth(1)?.parse().ok()?;
        let body = text.split_once("\r\n\r\n")?.1.to_owned();
        Some((status, body))
    }

    pub fn blocking_get_ok(url: &str) -> Option<()> {
        get(url).filter(|(s, _)| *s == 200).map(|_| ())
    }
}

fn body_json(body: &str) -> serde_json::Value {
    // The body may be chunked; the JSON object is between the first '{' or '[' and the last.
    let start = body.find(['{', '[']).unwrap_or(0);
    let end = body.rfind(['}', ']']).map_or(body.len(), |i| i + 1);
    serde_json::from_str(&body[start..end]).unwrap_or_else(|e| panic!("{e}: {body}"))
}

#[test]
fn serve_seeds_the_demo_county_and_data_survives_a_restart() {
    let data = tempfile::tempdir().unwrap();
    let demo = tempfile::tempdir().unwrap();
    std::fs::copy(HELLO, demo.path().join("hello.wasm")).unwrap();

    let server = Server::start(data.path(), demo.path());
    let (status, body) = reqwest::get(&format!("{}/t/dongcun/p/hello/", server.base)).unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body_json(&body)["visits"], 1);
    let (_, body) = reqwest::get(&format!("{}/t/dongcun/p/hello/", server.base)).unwrap();
    assert_eq!(body_json(&body)["visits"], 2);
    let (_, tenants) = reqwest::get(&format!("{}/api/v1/tenants", server.base)).unwrap();
    let ids: Vec<String> = body_json(&tenants)
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, ["qingshan", "dongxi", "dongcun", "dongcun-1", "xicun"]);
    let (clean, log) = server.stop();
    assert!(clean, "graceful shutdown: {log}");
    assert!(log.contains("compiled component"), "{log}");
    assert!(log.contains("seeded the demo county"));

    // Restart over the same data dir: no reseed, no recompile, the counter continues.
    let server = Server::start(data.path(), demo.path());
    let (_, body) = reqwest::get(&format!("{}/t/dongcun/p/hello/", server.base)).unwrap();
    assert_eq!(body_json(&body)["visits"], 3);
    let (_, body) = reqwest::get(&format!("{}/t/xicun/p/hello/visits", server.base)).unwrap();
    assert_eq!(body_json(&body)["visits"], 0);
    let (clean, log) = server.stop();
    assert!(clean);
    assert!(
        !log.contains("compiled component"),
        "a restart must load the cached artifact:\n{log}"
    );
    assert!(!log.contains("seeded the demo county"));
}

/// Create qingshan > dongxi > dongcun with the CLI.
fn create_tree(run: impl Fn(&[&str]) -> Output) {
    let tree: [&[&str]; 3] = [
        &[
            "qingshan",
            "--kind",
            "county",
            "--name-zh",
            "青山县",
            "--name-en",
            "Qingshan County",
        ],
        &[
            "dongxi",
            "--kind",
            "township",
            "--parent",
            "qingshan",
            "--name-zh",
            "东溪镇",
            "--name-en",
            "Dongxi",
        ],
        &[
            "dongcun",
            "--kind",
            "village",
            "--parent",
            "dongxi",
            "--name-zh",
            "东村",
            "--name-en",
            "Dong",
        ],
    ];
    for args in tree {
        let mut all = vec!["tenant", "create"];
        all.extend_from_slice(args);
        ok(run(&all));
    }
}

#[test]
fn tenant_and_plugin_commands() {
    let data = tempfile::tempdir().unwrap();
    let d = data.path();
    create_tree(|args| linli(d, args));
    let list = ok(linli(d, &["tenant", "list"]));
    assert!(list.contains("dongcun") && list.contains("东村"), "{list}");

    let out = ok(linli(
        d,
        &[
            "plugin", "install", HELLO, "--tenant", "dongcun", "--grant", "required", "--grant",
            "required",
        ],
    ));
    assert!(out.contains("\"action\": \"installed\""), "{out}");
    let list = ok(linli(d, &["plugin", "list"]));
    assert!(list.contains("hello") && list.contains("active"), "{list}");
    ok(linli(
        d,
        &["plugin", "suspend", "hello", "--tenant", "dongcun"],
    ));
    assert!(ok(linli(d, &["plugin", "list", "--tenant", "dongcun"])).contains("suspended"));
    ok(linli(
        d,
        &["plugin", "resume", "hello", "--tenant", "dongcun"],
    ));

    // Errors are clear and change nothing.
    let out = linli(d, &["plugin", "install", HELLO, "--tenant", "nowhere"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("tenant not found"));
    let out = linli(
        d,
        &[
            "tenant",
            "create",
            "dongcun",
            "--kind",
            "village",
            "--parent",
            "dongxi",
            "--name-zh",
            "x",
            "--name-en",
            "x",
        ],
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));
    let out = linli(
        d,
        &[
            "plugin",
            "install",
            "/nonexistent.wasm",
            "--tenant",
            "dongcun",
        ],
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent.wasm"));
    let out = linli(
        d,
        &[
            "tenant",
            "create",
            "x",
            "--kind",
            "planet",
            "--name-zh",
            "x",
            "--name-en",
            "x",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    ok(linli(
        d,
        &[
            "plugin",
            "uninstall",
            "hello",
            "--tenant",
            "dongcun",
            "--purge-data",
        ],
    ));
    assert!(ok(linli(d, &["plugin", "list"])).contains("no plugins installed"));
    // The audit log recorded it all and verifies; an edit in the database is caught.
    let verified = ok(linli(d, &["audit", "verify"]));
    assert!(verified.contains("intact"), "{verified}");
    let lines = ok(linli(d, &["audit", "list"]));
    assert!(lines.contains("\"action\":\"plugin.uninstall\""), "{lines}");
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let db = linli::storage::Db::connect(None, d).await.unwrap();
        sqlx::query("UPDATE audit_log SET actor = 'mallory' WHERE seq = 2")
            .execute(db.pool())
            .await
            .unwrap();
    });
    let out = linli(d, &["audit", "verify"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("record 2"));
}

#[test]
fn device_commands() {
    let data = tempfile::tempdir().unwrap();
    let d = data.path();
    create_tree(|args| linli(d, args));
    let person = ok(linli(
        d,
        &[
            "person",
            "create",
            "--tenant",
            "dongcun",
            "--name",
            "李桂兰",
            "--phone",
            "13800000003",
        ],
    ));
    let person = person.trim();

    // Add: the secret is printed once, as JSON with the device.
    let out = ok(linli(
        d,
        &[
            "device",
            "add",
            "dongcun-sos-li",
            "--tenant",
            "dongcun",
            "--kind",
            "emergency-button",
            "--name",
            "李桂兰家紧急呼叫按钮",
            "--person",
            "13800000003",
        ],
    ));
    let made: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(made["device"]["person"], person);
    assert_eq!(made["secret"].as_str().unwrap().len(), 36);
    // Bad kinds and ids are refused with a clear message.
    let out = linli(
        d,
        &[
            "device", "add", "x", "--tenant", "dongcun", "--kind", "toaster", "--name", "x",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown device kind"));
    let out = linli(
        d,
        &[
            "device", "add", "Bad Id", "--tenant", "dongcun", "--kind", "gate", "--name", "x",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("device id must be"));

    // Import: all rows or none.
    let csv = d.join("devices.csv");
    std::fs::write(
        &csv,
        "编号,类型,名称\ndongcun-gate-1,门禁,村委会门禁\ndongcun-x,toaster,x\n",
    )
    .unwrap();
    let out = linli(
        d,
        &[
            "device",
            "import",
            csv.to_str().unwrap(),
            "--tenant",
            "dongcun",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"row\": 3"));
    std::fs::write(&csv, "编号,类型,名称\ndongcun-gate-1,门禁,村委会门禁\n").unwrap();
    let out = ok(linli(
        d,
        &[
            "device",
            "import",
            csv.to_str().unwrap(),
            "--tenant",
            "dongcun",
        ],
    ));
    assert!(out.contains("\"created\": 1"), "{out}");

    let list = ok(linli(d, &["device", "list", "--tenant", "qingshan"]));
    let ids: Vec<_> = list
        .lines()
        .map(|l| l.split('\t').next().unwrap())
        .collect();
    assert_eq!(ids, ["dongcun-gate-1", "dongcun-sos-li"]);
    let list = ok(linli(
        d,
        &["device", "list", "--tenant", "dongcun", "--kind", "gate"],
    ));
    assert!(
        list.starts_with("dongcun-gate-1\tgate\tdongcun\tactive\t村委会门禁"),
        "{list}"
    );

    let first = made["secret"].as_str().unwrap();
    let second = ok(linli(d, &["device", "rotate-secret", "dongcun-sos-li"]));
    assert_eq!(second.trim().len(), 36);
    assert_ne!(second.trim(), first);
    ok(linli(d, &["device", "remove", "dongcun-sos-li"]));
    let out = linli(d, &["device", "remove", "dongcun-sos-li"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no such device"));
    assert_eq!(
        ok(linli(d, &["device", "list", "--tenant", "qingshan"]))
            .lines()
            .count(),
        1
    );
    // Every change is in the audit log and the chain holds.
    let audit = ok(linli(d, &["audit", "list"]));
    for action in [
        "device.create",
        "device.import",
        "device.secret",
        "device.delete",
    ] {
        assert!(audit.contains(action), "{action} missing: {audit}");
    }
    ok(linli(d, &["audit", "verify"]));
}

#[test]
fn configuration_layers_and_unknown_keys() {
    let data = tempfile::tempdir().unwrap();
    let file = data.path().join("linli.toml");
    std::fs::write(&file, "listen = \"127.0.0.1:1\"\nlisten_port = 1\n").unwrap();
    let out = Command::new(linli_bin())
        .args(["tenant", "list", "--config"])
        .arg(&file)
        .arg("--data-dir")
        .arg(data.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("listen_port"));

    let out = Command::new(linli_bin())
        .args(["tenant", "list", "--data-dir"])
        .arg(data.path())
        .env("LINLI_LIMITS__MEMORY", "1")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "an unknown LINLI_ variable is an error"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("memory"));

    // env overrides the file, flags override env: the data dir given by flag is used.
    let flag_dir = data.path().join("from-flag");
    std::fs::write(&file, "data_dir = \"/nonexistent/from-file\"\n").unwrap();
    let out = Command::new(linli_bin())
        .args(["tenant", "list", "--config"])
        .arg(&file)
        .arg("--data-dir")
        .arg(&flag_dir)
        .env("LINLI_DATA_DIR", "/nonexistent/from-env")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(flag_dir.join("linli.db").is_file());

    let out = Command::new(linli_bin())
        .args(["tenant", "list", "--config"])
        .arg(data.path().join("missing.toml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_on_postgres() {
    let url = fresh_postgres_url().await;
    let data = tempfile::tempdir().unwrap();
    let d = data.path();
    let with_db = |args: &[&str]| {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--database-url", url.as_str()]);
        linli(d, &all)
    };
    create_tree(with_db);
    ok(with_db(&[
        "plugin", "install", HELLO, "--tenant", "dongcun", "--grant", "required",
    ]));
    assert!(ok(with_db(&["plugin", "list"])).contains("hello"));
    assert!(
        !d.join("linli.db").exists(),
        "Postgres in use, no SQLite file"
    );
}
