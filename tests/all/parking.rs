//! `plugins/parking` on the demo county (real SQLite or Postgres), with the demo barrier
//! played in this process: it receives the plugin's commands through the host's command
//! pipeline and answers them, as `linli device simulate` does.

use std::sync::{Arc, Mutex};

use reqwest::Method;
use serde_json::{Value, json};

use crate::identity::{LI, SECADMIN, STAFF, ZHANG, call, demo_with, person_id, sign_in};
use linli_tests::{Backend, PARKING, TestHost, on_both_backends};

const BASE: &str = "/t/dongcun/p/parking";
const GATE: &str = "dongcun-gate-1";

/// Commands the played gate received, as (command, payload).
type Seen = Arc<Mutex<Vec<(String, Value)>>>;

/// Play `device`: answer every command it gets with `ok` (or refuse it), recording them.
fn play(h: &TestHost, device: &'static str, ok: bool) -> (tokio::task::JoinHandle<()>, Seen) {
    let seen: Seen = Arc::default();
    let (platform, log) = (h.platform.clone(), seen.clone());
    let task = tokio::spawn(async move {
        loop {
            for c in platform
                .pending_commands(Some("dongcun"), device)
                .await
                .unwrap()
            {
                log.lock()
                    .unwrap()
                    .push((c.command.clone(), c.payload.clone()));
                let answer = if ok {
                    json!({"id": c.id, "ok": true, "result": {"done": c.command}})
                } else {
                    json!({"id": c.id, "ok": false, "reason": "道闸故障 jammed"})
                };
                platform
                    .answer_command(Some("dongcun"), device, answer.to_string().as_bytes())
                    .await
                    .unwrap();
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    });
    (task, seen)
}

/// A message from the gate; the commands it got meanwhile (taken from `seen`).
async fn at_gate(h: &TestHost, seen: &Seen, message: Value) -> Vec<(String, Value)> {
    let done = h
        .platform
        .ingest(Some("dongcun"), GATE, message.to_string().as_bytes())
        .await
        .unwrap();
    assert_eq!(done.deliveries.len(), 1, "{done:?}");
    assert_eq!(done.deliveries[0].outcome, "ok", "{done:?}");
    std::mem::take(&mut *seen.lock().unwrap())
}

fn plate(p: &str, direction: &str) -> Value {
    json!({"type": "plate", "plate": p, "direction": direction})
}

fn opened(cmds: &[(String, Value)]) -> bool {
    cmds.iter().any(|(c, _)| c == "open")
}

fn shown(cmds: &[(String, Value)]) -> String {
    cmds.iter()
        .filter(|(c, _)| c == "display")
        .map(|(_, p)| p["text"].as_str().unwrap_or("").to_owned())
        .collect()
}

async fn last_access(h: &TestHost, staff: &str) -> Value {
    let (status, r) = call(h, Some(staff), Method::GET, &format!("{BASE}/admin"), None).await;
    assert_eq!(status, 200, "{r}");
    r["log"][0].clone()
}

async fn post(h: &TestHost, token: &str, path: &str, body: Value) -> (u16, Value) {
    call(
        h,
        Some(token),
        Method::POST,
        &format!("{BASE}{path}"),
        Some(body),
    )
    .await
}

async fn gate_decisions(backend: Backend) {
    let h = demo_with(backend, &[PARKING]).await;
    let staff = sign_in(&h, STAFF).await;
    let zhang = sign_in(&h, ZHANG).await;
    let (gate, seen) = play(&h, GATE, true);

    // The demo seed registered 张秀英's car to her household.
    let (status, r) = call(
        &h,
        Some(&staff),
        Method::GET,
        &format!("{BASE}/admin/plates"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["plates"][0]["plate"], "浙A12345");
    assert_eq!(r["plates"][0]["household"], "东村一组3号");
    assert_eq!(r["plates"][0]["person"], json!(person_id(&h, ZHANG).await));

    // A registered car: the barrier opens and greets; the log says so.
    let cmds = at_gate(&h, &seen, plate("浙A·12345", "in")).await;
    assert!(opened(&cmds), "{cmds:?}");
    assert_eq!(
        cmds[0].1,
        json!({"plate": "浙A12345", "reason": "resident"})
    );
    assert_eq!(shown(&cmds), "欢迎回家");
    let a = last_access(&h, &staff).await;
    assert_eq!(
        (a["open"].clone(), a["reason"].clone(), a["gate"].clone()),
        (json!(true), json!("resident"), json!("acknowledged"))
    );

    // An unknown car: no open, the display says why.
    let cmds = at_gate(&h, &seen, plate("浙B99999", "in")).await;
    assert!(!opened(&cmds), "{cmds:?}");
    assert!(shown(&cmds).contains("未登记车辆"), "{cmds:?}");
    assert_eq!(last_access(&h, &staff).await["reason"], "unknown");
    // An unreadable plate is refused the same way.
    let cmds = at_gate(&h, &seen, plate("??", "in")).await;
    assert!(!opened(&cmds));
    assert_eq!(last_access(&h, &staff).await["reason"], "unreadable");

    // A visitor pass from 张秀英: for a plate, and its code on the keypad.
    let (status, pass) = post(
        &h,
        &zhang,
        "/passes",
        json!({"plate": "浙C11111", "hours": 2}),
    )
    .await;
    assert_eq!(status, 201, "{pass}");
    let code = pass["code"].as_str().unwrap().to_owned();
    assert_eq!(code.len(), 6);
    assert!(opened(&at_gate(&h, &seen, plate("浙C11111", "in")).await));
    assert_eq!(last_access(&h, &staff).await["reason"], "pass");
    let cmds = at_gate(&h, &seen, json!({"type": "code", "code": code})).await;
    assert!(opened(&cmds));
    let a = last_access(&h, &staff).await;
    assert_eq!(
        a["credential"],
        format!("code ****{}", &code[4..]),
        "codes are not logged whole"
    );
    let wrong = if code == "000000" { "111111" } else { "000000" };
    assert!(!opened(
        &at_gate(&h, &seen, json!({"type": "code", "code": wrong})).await
    ));
    // An IC card issued by staff (the way in without a phone or a face).
    let li = person_id(&h, LI).await;
    let (status, r) = post(
        &h,
        &staff,
        "/admin/cards",
        json!({"card": "IC-0001", "person": li}),
    )
    .await;
    assert_eq!(status, 201, "{r}");
    assert_eq!(
        post(
            &h,
            &staff,
            "/admin/cards",
            json!({"card": "IC-0001", "person": li})
        )
        .await
        .0,
        409
    );
    assert!(opened(
        &at_gate(&h, &seen, json!({"type": "card", "card": "IC-0001"})).await
    ));
    assert!(!opened(
        &at_gate(&h, &seen, json!({"type": "card", "card": "IC-9999"})).await
    ));

    // Lists: black beats registration, white always opens; anyone may leave.
    let (status, r) = post(
        &h,
        &staff,
        "/admin/lists",
        json!({"plate": "浙A12345", "list": "black", "note": "测试"}),
    )
    .await;
    assert_eq!(status, 200, "{r}");
    let cmds = at_gate(&h, &seen, plate("浙A12345", "in")).await;
    assert!(!opened(&cmds));
    assert!(shown(&cmds).contains("禁止通行"));
    assert!(opened(&at_gate(&h, &seen, plate("浙A12345", "out")).await));
    assert_eq!(
        post(&h, &staff, "/admin/lists/%E6%B5%99A12345/delete", json!({}))
            .await
            .0,
        200
    );
    post(
        &h,
        &staff,
        "/admin/lists",
        json!({"plate": "浙F00001", "list": "white"}),
    )
    .await;
    assert!(opened(&at_gate(&h, &seen, plate("浙F00001", "in")).await));

    // Temporary parking when the community allows it: in, then out with the fee shown.
    let (status, r) = post(&h, &staff, "/admin/fees", json!({"allow_temporary": true, "free_minutes": 0, "per_hour_fen": 300, "daily_cap_fen": 2000})).await;
    assert_eq!(status, 200, "{r}");
    assert!(opened(&at_gate(&h, &seen, plate("浙G55555", "in")).await));
    assert_eq!(last_access(&h, &staff).await["reason"], "temporary");
    let cmds = at_gate(&h, &seen, plate("浙G55555", "out")).await;
    assert!(opened(&cmds));
    assert!(shown(&cmds).contains("应收"), "{cmds:?}");
    let a = last_access(&h, &staff).await;
    assert_eq!(a["reason"], "exit");
    assert!(a["fee_fen"].as_u64().is_some(), "{a}");

    // Staff open the gate from the app; the log names them.
    let (status, r) = post(&h, &staff, &format!("/admin/gates/{GATE}/open"), json!({})).await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["outcome"], "acknowledged");
    assert!(
        last_access(&h, &staff).await["by"]
            .as_str()
            .unwrap()
            .contains('(')
    );

    // A barrier that refuses: the log keeps its reason.
    gate.abort();
    let (_jammed, seen) = play(&h, GATE, false);
    let cmds = at_gate(&h, &seen, plate("浙F00001", "in")).await;
    assert!(opened(&cmds));
    assert_eq!(
        last_access(&h, &staff).await["gate"],
        "refused: 道闸故障 jammed"
    );
    // Every command is on the device's record.
    let (_, log) = call(
        &h,
        Some(&staff),
        Method::GET,
        &format!("/api/v1/devices/{GATE}/commands?limit=500"),
        None,
    )
    .await;
    assert!(log.as_array().unwrap().len() >= 20, "{log}");
    assert!(
        log.as_array()
            .unwrap()
            .iter()
            .all(|c| c["plugin_id"] == "parking")
    );
}

async fn residents_and_staff(backend: Backend) {
    let h = demo_with(backend, &[PARKING]).await;
    let staff = sign_in(&h, STAFF).await;
    let zhang = sign_in(&h, ZHANG).await;
    let sec = sign_in(&h, SECADMIN).await;

    // 张秀英 adds two more cars to her household; a fourth is over the limit.
    for p in ["浙A00002", "浙A00003"] {
        let (status, r) = post(&h, &zhang, "/plates", json!({"plate": p})).await;
        assert_eq!(status, 200, "{r}");
    }
    let (status, r) = post(&h, &zhang, "/plates", json!({"plate": "浙A00004"})).await;
    assert_eq!(status, 413, "{r}");
    assert!(r.to_string().contains("3 plates per household"), "{r}");
    let (status, r) = post(&h, &zhang, "/plates", json!({"plate": "not a plate"})).await;
    assert_eq!(status, 400, "{r}");
    let (status, r) = call(&h, Some(&zhang), Method::GET, &format!("{BASE}/"), None).await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["plates"].as_array().unwrap().len(), 3);
    // Another household cannot take her plate.
    let li = person_id(&h, LI).await;
    let (status, _) = post(
        &h,
        &staff,
        "/admin/plates",
        json!({"person": li, "plate": "浙A12345"}),
    )
    .await;
    assert_eq!(status, 409);
    // She removes one; then she has room again.
    assert_eq!(
        post(&h, &zhang, "/plates/%E6%B5%99A00003/delete", json!({}))
            .await
            .0,
        200
    );
    assert_eq!(
        post(&h, &zhang, "/plates", json!({"plate": "浙A00004"}))
            .await
            .0,
        200
    );
    // Residents do not manage.
    for path in [
        "/admin",
        "/admin/plates",
        "/admin/lists",
        "/admin/fees",
        "/admin/reports",
    ] {
        let (status, _) = call(
            &h,
            Some(&zhang),
            Method::GET,
            &format!("{BASE}{path}"),
            None,
        )
        .await;
        assert_eq!(status, 403, "{path}");
    }
    assert_eq!(
        post(&h, &zhang, &format!("/admin/gates/{GATE}/open"), json!({}))
            .await
            .0,
        403
    );
    let (status, _) = call(&h, None, Method::GET, &format!("{BASE}/"), None).await;
    assert_eq!(status, 401);

    // An illegal-parking report reaches the community staff's inbox.
    let (status, r) = post(
        &h,
        &zhang,
        "/reports",
        json!({"plate": "浙E33333", "place": "村委会门口消防通道", "description": "堵住消防通道"}),
    )
    .await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(h.platform.deliver_outbox().await.unwrap(), 1);
    let inbox = crate::messaging::inbox_from(&h, STAFF, "parking").await;
    assert!(
        inbox
            .iter()
            .any(|m| m.to_string().contains("违停举报：浙E33333")),
        "{inbox:?}"
    );
    let (status, r) = call(
        &h,
        Some(&staff),
        Method::GET,
        &format!("{BASE}/admin/reports"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{r}");
    let id = r["reports"][0]["id"].as_u64().unwrap();
    let (status, r) = post(
        &h,
        &staff,
        &format!("/admin/reports/{id}/handle"),
        json!({"note": "已挪车"}),
    )
    .await;
    assert_eq!(status, 200, "{r}");
    assert!(r["handled"].as_str().unwrap().starts_with("已挪车"));

    // Space occupancy needs its optional grant; then sensors keep it.
    let space = br#"{"occupied":true}"#;
    let done = h
        .platform
        .ingest(Some("dongcun"), "dongcun-space-1", space)
        .await
        .unwrap();
    assert!(done.deliveries.is_empty(), "not granted: nothing delivered");
    let (status, r) = call(
        &h,
        Some(&sec),
        Method::PUT,
        "/api/v1/tenants/dongcun/plugins/parking/grants/device.parking-sensor",
        None,
    )
    .await;
    assert_eq!(status, 200, "{r}");
    let done = h
        .platform
        .ingest(Some("dongcun"), "dongcun-space-1", space)
        .await
        .unwrap();
    assert_eq!(done.deliveries.len(), 1);
    let (_, r) = call(
        &h,
        Some(&staff),
        Method::GET,
        &format!("{BASE}/admin"),
        None,
    )
    .await;
    assert_eq!(
        r["spaces"],
        json!([{"device": "dongcun-space-1", "occupied": true, "since": done.received_at_ms}])
    );
}

on_both_backends!(gate_decisions, residents_and_staff);
