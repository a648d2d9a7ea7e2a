//! The web shell in a real headless browser: `tests/browser/shell.mjs` (Playwright driving
//! Debian's Chromium) against `linli serve` with the demo county, on SQLite and on Postgres.
//! A resident signs in, opens the seeded topic, votes and sees the count; elder mode changes
//! every page; staff and the township admin see the result; an admin installs a plugin, grants
//! it, and sees what an upgrade would ask for; a press on 李桂兰's emergency button reaches the
//! grid worker's inbox and the alarm is acknowledged. Screenshots
//! are kept in `target/browser-shots/<backend>/`.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::cli::Server;
use linli::platform::DEMO_TOTP_SECRET;
use linli_tests::{
    Backend, CONSULTATION, ELDERLY_CARE, HELLO, HELLO_NEXT, PARKING, fresh_postgres_url,
    on_both_backends,
};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

async fn shell_in_a_browser(backend: Backend) {
    let browser_dir = repo().join("tests/browser");
    assert!(
        browser_dir.join("node_modules/playwright-core").is_dir(),
        "Playwright is not installed: run `npm ci` in tests/browser (scripts/setup.sh does)"
    );
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).exists(),
        "no Chromium at {chromium}: `apt-get install chromium` (scripts/setup.sh does), or set CHROMIUM"
    );
    let data = tempfile::tempdir().unwrap();
    let demo = tempfile::tempdir().unwrap();
    for wasm in [HELLO, CONSULTATION, ELDERLY_CARE, PARKING] {
        let name = Path::new(wasm).file_name().unwrap();
        std::fs::copy(wasm, demo.path().join(name)).unwrap();
    }
    let url;
    let env: Vec<(&str, &str)> = match backend {
        Backend::Sqlite => vec![],
        Backend::Postgres => {
            url = fresh_postgres_url().await;
            vec![("LINLI_DATABASE_URL", url.as_str())]
        }
    };
    let server = Server::start_with(data.path(), demo.path(), &env);
    // The button's secret, as an operator gets it: a new one from the CLI.
    let rotated = Command::new(crate::cli::linli_bin())
        .args(["device", "rotate-secret", "dongcun-sos-li", "--data-dir"])
        .arg(data.path())
        .env_remove("LINLI_DATABASE_URL")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(
        rotated.status.success(),
        "{}",
        String::from_utf8_lossy(&rotated.stderr)
    );
    let sos_secret = String::from_utf8(rotated.stdout).unwrap().trim().to_owned();
    // A new audit admin, as the county root makes one: the account (its password made up by
    // whoever registers it), then the role from the CLI on the server, which prints the
    // activation code to hand over in person.
    let cli = |args: &[&str]| {
        let out = Command::new(crate::cli::linli_bin())
            .args(args)
            .arg("--data-dir")
            .arg(data.path())
            .env_remove("LINLI_DATABASE_URL")
            .envs(env.iter().copied())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    cli(&[
        "person",
        "create",
        "--tenant",
        "qingshan",
        "--kind",
        "staff",
        "--name",
        "周审计",
        "--phone",
        "13900000021",
        "--password",
        "Given-by-someone-1",
    ]);
    let given: serde_json::Value = serde_json::from_str(&cli(&[
        "person",
        "role",
        "13900000021",
        "--tenant",
        "qingshan",
        "--role",
        "audit-admin",
    ]))
    .unwrap();
    let activation = given["activation_code"].as_str().unwrap().to_owned();
    let shots = repo()
        .join("target/browser-shots")
        .join(format!("{backend:?}").to_lowercase());
    let _ = std::fs::remove_dir_all(&shots);
    let out = Command::new("node")
        .arg("shell.mjs")
        .current_dir(&browser_dir)
        .env("LINLI_URL", &server.base)
        .env("LINLI_SHOTS", &shots)
        .env("LINLI_HELLO_WASM", HELLO)
        .env("LINLI_HELLO_NEXT_WASM", HELLO_NEXT)
        .env("LINLI_TOTP_SECRET", DEMO_TOTP_SECRET)
        .env("CHROMIUM", &chromium)
        .env("LINLI_SERVER_LOG", data.path().join("serve.log"))
        .env("LINLI_SOS_SECRET", &sos_secret)
        .env("LINLI_ACTIVATION_CODE", &activation)
        .output()
        .expect("running node (is Node.js installed?)");
    let (_, log) = server.stop();
    assert!(
        out.status.success(),
        "browser test failed:\n{}\n{}\n--- server log ---\n{log}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    for shot in [
        "resident-voted",
        "elder-topic",
        "admin-plugins",
        "grid-inbox-alarm",
        "grid-alarm-acknowledged",
        "admin-enrol-secret",
        "link-refused",
    ] {
        assert!(
            shots.join(format!("{shot}.png")).is_file(),
            "screenshot {shot} missing"
        );
    }
}

on_both_backends!(shell_in_a_browser);
