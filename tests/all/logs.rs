//! Personal fields never reach the host's logs: a real `linli serve` at debug level goes
//! through sign-in failures, SMS codes, a roster import with bad rows, full reads by an admin
//! and a plugin holding the phone grant, an export and an erasure; then its whole output is
//! searched for every full phone, ID number and name involved.

use reqwest::Client;
use serde_json::{Value, json};

use crate::cli::Server;
use linli::platform::{DEMO_PASSWORD, demo_accounts};
use linli_tests::{ADMIN_TOKEN, ELDERLY_CARE, HELLO, PARKING};

const ZHANG: (&str, &str, &str) = ("13800000001", "330122194803150028", "张秀英");
const LI: (&str, &str, &str) = ("13800000003", "330122194201010044", "李桂兰");
const NEW: (&str, &str, &str) = ("13712345678", "11010519491231002X", "周淑芬");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn personal_fields_stay_out_of_the_logs() {
    let data = tempfile::tempdir().unwrap();
    let demo = tempfile::tempdir().unwrap();
    for wasm in [HELLO, ELDERLY_CARE, PARKING] {
        let name = std::path::Path::new(wasm).file_name().unwrap();
        std::fs::copy(wasm, demo.path().join(name)).unwrap();
    }
    let server = Server::start_with(
        data.path(),
        demo.path(),
        &[(
            "LINLI_LOG",
            "debug,wasmtime=info,cranelift=info,hyper=info,h2=info",
        )],
    );
    let base = server.base.clone();
    let c = Client::new();
    let post = |path: &str, body: Value| c.post(format!("{base}{path}")).json(&body).send();

    // A wrong password, then a right one.
    let r = post(
        "/api/v1/auth/password",
        json!({ "phone": ZHANG.0, "password": "wrong-password" }),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 401);
    let r: Value = post(
        "/api/v1/auth/password",
        json!({ "phone": ZHANG.0, "password": DEMO_PASSWORD }),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let zhang = r["token"].as_str().unwrap().to_owned();
    // An SMS code through the dev sender (it logs the code with the phone masked).
    let r = post("/api/v1/auth/code/send", json!({ "phone": LI.0 }))
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let r = post(
        "/api/v1/auth/code",
        json!({ "phone": LI.0, "code": "000000" }),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 401);

    // A roster import with a bad row (refused, errors by row), then a good one.
    let import = |csv: String| {
        c.post(format!("{base}/api/v1/tenants/dongcun/people/import"))
            .bearer_auth(ADMIN_TOKEN)
            .header("content-type", "text/csv")
            .body(csv)
            .send()
    };
    let r = import(format!(
        "姓名,手机号,身份证号\n{},{},{}\n坏行,{}9,110105194912310021\n",
        NEW.2, NEW.0, NEW.1, NEW.0
    ))
    .await
    .unwrap();
    assert_eq!(r.status(), 422);
    let r = import(format!(
        "姓名,手机号,身份证号\n{},{},{}\n",
        NEW.2, NEW.0, NEW.1
    ))
    .await
    .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());

    // Full reads: an admin, and a plugin granted identity.phone and identity.id-number.
    let people: Value = c
        .get(format!(
            "{base}/api/v1/tenants/dongcun/people?kind=resident"
        ))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let new_id = people["people"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "周*")
        .expect("imported")["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let full: Value = c
        .get(format!("{base}/api/v1/people/{new_id}"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(full["id_number"], NEW.1);
    for grant in ["identity.phone", "identity.id-number", "identity.name"] {
        let r = c
            .put(format!(
                "{base}/api/v1/tenants/dongcun/plugins/hello/grants/{grant}"
            ))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let me: Value = c
        .get(format!("{base}/t/dongcun/p/hello/me"))
        .bearer_auth(&zhang)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["profile"]["id_number"]["value"], ZHANG.1);
    // The resident's export, then an erasure of the imported person.
    let r = c
        .get(format!("{base}/api/v1/me/export"))
        .bearer_auth(&zhang)
        .send()
        .await
        .unwrap();
    assert!(r.text().await.unwrap().contains(ZHANG.1));
    let r = c
        .post(format!("{base}/api/v1/people/{new_id}/erase"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());

    // 李桂兰's emergency button: the alarm reaches her contact through the outbox (inbox and
    // the SMS channel, which only logs without a gateway) — her name and address stay out.
    let secret: Value = c
        .post(format!("{base}/api/v1/devices/dongcun-sos-li/secret"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let r = c
        .post(format!("{base}/api/v1/device-messages/dongcun-sos-li"))
        .bearer_auth(secret["secret"].as_str().unwrap())
        .body(r#"{"type":"press"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let mut told = false;
    for _ in 0..400 {
        let inbox: Value = c
            .get(format!("{base}/api/v1/me/inbox"))
            .bearer_auth(&zhang)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if inbox.to_string().contains("紧急呼叫") {
            told = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(told, "the alarm reached the contact's inbox");
    // The gate reads her car's plate (a registration is personal data too).
    let r = c
        .post(format!("{base}/api/v1/devices/dongcun-gate-1/secret"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    let gate: Value = r.json().await.unwrap();
    let r = c
        .post(format!("{base}/api/v1/device-messages/dongcun-gate-1"))
        .bearer_auth(gate["secret"].as_str().unwrap())
        .body(r#"{"type":"plate","plate":"浙A12345"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);

    let (clean, log) = server.stop();
    assert!(clean);
    // The run command prints the demo accounts (phones and names) on purpose; nothing else may.
    let log = log.replace(&demo_accounts(), "");
    for expected in [
        "phone=138****0003",
        "people imported",
        "DEBUG",
        "SMS not sent",
    ] {
        assert!(
            log.contains(expected),
            "{expected:?} not in the log:\n{log}"
        );
    }
    for (phone, id_number, name) in [ZHANG, LI, NEW] {
        for secret in [
            phone,
            id_number,
            name,
            &id_number[6..14],
            "东村二组8号",
            "浙A12345",
        ] {
            assert!(
                !log.contains(secret),
                "{secret:?} leaked into the log:\n{}",
                log.lines()
                    .filter(|l| l.contains(secret))
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        }
    }
}
