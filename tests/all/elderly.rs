//! `plugins/elderly-care` on the demo county (real SQLite or Postgres): the seeded roster, a
//! press on 李桂兰's emergency button raising an alarm that reaches her emergency contact's and
//! the grid worker's inboxes through the outbox, the alarm's lifecycle, and the roster's rules.

use reqwest::Method;
use serde_json::{Value, json};

use crate::identity::{GRID, LI, STAFF, WANG, ZHANG, call, demo_with, person_id, sign_in};
use linli_tests::{Backend, ELDERLY_CARE, TestHost, on_both_backends};

const BASE: &str = "/t/dongcun/p/elderly-care";

async fn inbox(h: &TestHost, phone: &str) -> Vec<Value> {
    crate::messaging::inbox_from(h, phone, "elderly-care").await
}

async fn press(h: &TestHost, device: &str) -> Value {
    let done = h
        .platform
        .ingest(Some("dongcun"), device, br#"{"type":"press"}"#)
        .await
        .unwrap();
    serde_json::to_value(done).unwrap()
}

async fn emergency(backend: Backend) {
    let h = demo_with(backend, &[ELDERLY_CARE]).await;
    let staff = sign_in(&h, STAFF).await;
    let grid = sign_in(&h, GRID).await;
    let zhang = sign_in(&h, ZHANG).await;
    let li = person_id(&h, LI).await;

    // The demo seed put 李桂兰 on the roster, with her button and 张秀英 as her contact.
    let (status, r) = call(
        &h,
        Some(&staff),
        Method::GET,
        &format!("{BASE}/elders"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["elders"][0]["person"], json!(li));
    assert_eq!(
        r["elders"][0]["name"], "李桂兰",
        "identity.name is granted: the full name"
    );
    assert_eq!(r["elders"][0]["button"], "dongcun-sos-li");
    // Residents do not see alarms or the roster; the shell shows them what the service is.
    let (status, _) = call(&h, Some(&zhang), Method::GET, &format!("{BASE}/"), None).await;
    assert_eq!(status, 403);
    let r = h
        .client
        .get(h.url(&format!("{BASE}/")))
        .bearer_auth(&zhang)
        .header("accept", "application/vnd.linli.page+json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let page: Value = r.json().await.unwrap();
    assert!(page.to_string().contains("紧急呼叫按钮"), "{page}");
    assert!(
        !page.to_string().contains("紧急呼叫：李桂兰"),
        "no alarm reaches a resident: {page}"
    );
    let (status, _) = call(
        &h,
        Some(&grid),
        Method::GET,
        &format!("{BASE}/elders"),
        None,
    )
    .await;
    assert_eq!(status, 403);

    // The press: one delivery (the 东村 installation; 西村's does not serve 东村), an alarm,
    // and after the outbox runs, the contact and the grid worker are told.
    let done = press(&h, "dongcun-sos-li").await;
    assert_eq!(
        done["deliveries"],
        json!([{"tenant": "dongcun", "plugin": "elderly-care", "outcome": "ok"}])
    );
    let (_, open) = call(&h, Some(&grid), Method::GET, &format!("{BASE}/"), None).await;
    let alarms = open["open"].as_array().unwrap();
    assert_eq!(alarms.len(), 1);
    assert_eq!(alarms[0]["state"], "open");
    assert_eq!(alarms[0]["address"], "青山县东溪镇东村二组8号");
    let id = alarms[0]["id"].as_u64().unwrap();
    assert_eq!(h.platform.deliver_outbox().await.unwrap(), 1);
    for phone in [ZHANG, GRID] {
        let got = inbox(&h, phone).await;
        assert_eq!(got.len(), 1, "{phone}: {got:?}");
        assert_eq!(got[0]["title_zh"], "紧急呼叫：李桂兰");
        assert_eq!(
            got[0]["body_zh"],
            "李桂兰（青山县东溪镇东村二组8号）：紧急呼叫（按下呼叫按钮）。请立即联系或上门查看。"
        );
        assert_eq!(
            got[0]["body_en"],
            "李桂兰 (青山县东溪镇东村二组8号): Emergency call (button pressed). Call or go there now."
        );
        assert_eq!(got[0]["urgency"], "emergency");
        assert_eq!(got[0]["link"], format!("/alarms/{id}"));
    }
    assert!(inbox(&h, WANG).await.is_empty());

    // The lifecycle: acknowledge, take it on, clear with a note; no step twice or backwards.
    let step = |action: &'static str, body: Option<Value>| {
        let (h, grid) = (&h, &grid);
        async move {
            call(
                h,
                Some(grid),
                Method::POST,
                &format!("{BASE}/alarms/{id}/{action}"),
                body,
            )
            .await
        }
    };
    let (status, r) = step("ack", None).await;
    assert_eq!(
        (status, r["state"].as_str()),
        (200, Some("acknowledged")),
        "{r}"
    );
    let (status, _) = step("ack", None).await;
    assert_eq!(status, 409);
    let (status, r) = step("assign", None).await;
    assert_eq!(
        (status, r["assigned_to"].as_str()),
        (200, Some(person_id(&h, GRID).await.as_str()))
    );
    let (status, _) = step("clear", Some(json!({"note": "x".repeat(501)}))).await;
    assert_eq!(status, 400);
    let (status, r) = step("clear", Some(json!({"note": "已上门，老人平安"}))).await;
    assert_eq!((status, r["state"].as_str()), (200, Some("cleared")), "{r}");
    let actions: Vec<_> = r["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["action"].clone())
        .collect();
    assert_eq!(actions, ["raised", "acknowledged", "assigned", "cleared"]);
    let (status, _) = step("assign", None).await;
    assert_eq!(status, 409);
    let (_, open) = call(&h, Some(&grid), Method::GET, &format!("{BASE}/"), None).await;
    assert_eq!(open["open"], json!([]));
    // The alarm page for the shell passes the host's page check.
    let r = h
        .client
        .get(h.url(&format!("{BASE}/alarms/{id}")))
        .bearer_auth(&grid)
        .header("accept", "application/vnd.linli.page+json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);

    // Every press raises an alarm: a second one minutes later is not silenced.
    press(&h, "dongcun-sos-li").await;
    let (_, open) = call(&h, Some(&grid), Method::GET, &format!("{BASE}/"), None).await;
    assert_eq!(open["open"].as_array().unwrap().len(), 1, "{open}");
    let (status, _) = call(
        &h,
        Some(&grid),
        Method::POST,
        &format!("{BASE}/alarms/{}/clear", open["open"][0]["id"]),
        Some(json!({"note": "误按 / pressed by mistake"})),
    )
    .await;
    assert_eq!(status, 200);

    // A button not on the roster raises nothing.
    let (status, made) = call(
        &h,
        Some(&staff),
        Method::POST,
        "/api/v1/tenants/dongcun/devices",
        Some(json!({"id": "dongcun-sos-spare", "kind": "emergency-button", "name": "备用按钮"})),
    )
    .await;
    assert_eq!(status, 201, "{made}");
    press(&h, "dongcun-sos-spare").await;
    let (_, open) = call(&h, Some(&grid), Method::GET, &format!("{BASE}/"), None).await;
    assert_eq!(open["open"], json!([]));
}

async fn roster_rules(backend: Backend) {
    let h = demo_with(backend, &[ELDERLY_CARE]).await;
    let staff = sign_in(&h, STAFF).await;
    let zhang = person_id(&h, ZHANG).await;
    let wang = person_id(&h, WANG).await;
    let enrol = |body: Value| {
        let (h, staff) = (&h, &staff);
        async move {
            call(
                h,
                Some(staff),
                Method::POST,
                &format!("{BASE}/elders"),
                Some(body),
            )
            .await
        }
    };
    // Someone of another village is not found; a contact of another village is refused; an
    // unknown button is refused; a button already someone else's is a conflict.
    let (status, _) = enrol(json!({"person": wang, "button": "", "contacts": ""})).await;
    assert_eq!(status, 404);
    let (status, r) = enrol(json!({"person": zhang, "button": "", "contacts": wang})).await;
    assert_eq!(status, 400, "{r}");
    let (status, _) = enrol(json!({"person": zhang, "button": "no-such", "contacts": ""})).await;
    assert_eq!(status, 400);
    let (status, _) =
        enrol(json!({"person": zhang, "button": "dongcun-sos-li", "contacts": ""})).await;
    assert_eq!(status, 409);
    let (status, r) = enrol(json!({"person": "", "button": "", "contacts": ""})).await;
    assert_eq!(status, 422, "{r}");
    let many: Vec<_> = (0..11).map(|_| zhang.clone()).collect();
    let (status, _) =
        enrol(json!({"person": zhang, "button": "", "contacts": many.join("\n")})).await;
    assert_eq!(status, 400);
    let (status, r) = enrol(json!({"person": zhang, "button": "", "contacts": ""})).await;
    assert_eq!(status, 201, "{r}");
    let (_, r) = call(
        &h,
        Some(&staff),
        Method::GET,
        &format!("{BASE}/elders"),
        None,
    )
    .await;
    assert_eq!(r["elders"].as_array().unwrap().len(), 2);
    // The roster entry is filed under the elder: the export finds it, erasure removes it.
    let r = h
        .admin(Method::POST, &format!("/api/v1/people/{zhang}/erase"))
        .send()
        .await
        .unwrap();
    let erased: Value = r.json().await.unwrap();
    assert!(
        erased["plugin_keys_deleted"].as_u64().unwrap() >= 1,
        "{erased}"
    );
}

/// Alarms nobody acknowledges are escalated on the `escalate` tick: staff and grid workers
/// after 5 minutes, the contacts too after 15; an acknowledged alarm is left alone.
async fn escalation(backend: Backend) {
    let h = demo_with(backend, &[ELDERLY_CARE]).await;
    let grid = sign_in(&h, GRID).await;
    let done = press(&h, "dongcun-sos-li").await;
    let raised = done["received_at_ms"].as_i64().unwrap();
    h.platform.deliver_outbox().await.unwrap();
    let tick = |minutes: i64| {
        let h = &h;
        async move {
            assert!(
                h.platform
                    .queue_tick(
                        "dongcun",
                        "elderly-care",
                        "escalate",
                        raised + minutes * 60_000
                    )
                    .await
                    .unwrap()
            );
            h.platform.deliver_outbox().await.unwrap()
        }
    };
    // Four minutes: too early, nothing new.
    assert_eq!(tick(4).await, 1, "the tick itself");
    assert!(inbox(&h, STAFF).await.is_empty());
    // Six minutes: the staff and grid workers are told again, the alarm says so.
    assert_eq!(tick(6).await, 2, "the tick and its notification");
    let staff_inbox = inbox(&h, STAFF).await;
    assert_eq!(staff_inbox.len(), 1, "{staff_inbox:?}");
    assert_eq!(
        staff_inbox[0]["title_zh"],
        "紧急呼叫无人响应（6 分钟）：李桂兰"
    );
    assert_eq!(
        inbox(&h, ZHANG).await.len(),
        1,
        "the contact: only the first call so far"
    );
    // The same level again tells nobody twice; sixteen minutes reaches the contact too.
    assert_eq!(tick(7).await, 1);
    assert_eq!(tick(16).await, 2);
    let zhang = inbox(&h, ZHANG).await;
    assert_eq!(zhang.len(), 2, "{zhang:?}");
    let (_, open) = call(&h, Some(&grid), Method::GET, &format!("{BASE}/"), None).await;
    let a = &open["open"][0];
    assert_eq!(a["escalations"], 2);
    let actions: Vec<_> = a["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["action"].clone())
        .collect();
    assert_eq!(actions, ["raised", "escalated", "escalated"]);
    // Acknowledged alarms are not escalated further.
    let id = a["id"].as_u64().unwrap();
    let (status, _) = call(
        &h,
        Some(&grid),
        Method::POST,
        &format!("{BASE}/alarms/{id}/ack"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let before = inbox(&h, STAFF).await.len();
    tick(60).await;
    assert_eq!(inbox(&h, STAFF).await.len(), before);
}

/// The daily check-in: by the elder in the app, or recorded by staff after a call; the 20:00
/// tick tells the contacts and grid workers about an elder who has not checked in that day.
async fn daily_check_in(backend: Backend) {
    let h = demo_with(backend, &[ELDERLY_CARE]).await;
    let staff = sign_in(&h, STAFF).await;
    let li = person_id(&h, LI).await;
    let zhang = person_id(&h, ZHANG).await;
    let (status, r) = call(
        &h,
        Some(&staff),
        Method::POST,
        &format!("{BASE}/elders"),
        Some(json!({"person": li, "button": "dongcun-sos-li", "contacts": zhang, "checkin": true})),
    )
    .await;
    assert_eq!(status, 201, "{r}");
    assert_eq!(r["checkin"], true);
    let now = linli::storage::now_ms();
    let tick = |at: i64| {
        let h = &h;
        async move {
            h.platform
                .queue_tick("dongcun", "elderly-care", "check-in", at)
                .await
                .unwrap();
            h.platform.deliver_outbox().await.unwrap()
        }
    };
    // Checked in today (staff, after a phone call): today's tick tells nobody.
    let (status, r) = call(
        &h,
        Some(&staff),
        Method::POST,
        &format!("{BASE}/elders/{li}/checkin"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["how"], "phone");
    assert_eq!(tick(now).await, 1, "only the tick");
    assert!(inbox(&h, ZHANG).await.is_empty());
    // Tomorrow, no check-in: the contact and the grid worker are told, once.
    assert_eq!(tick(now + 86_400_000).await, 2);
    assert_eq!(
        tick(now + 86_400_000 + 60_000).await,
        1,
        "the same day again: nothing new"
    );
    for phone in [ZHANG, GRID] {
        let got = inbox(&h, phone).await;
        assert_eq!(got.len(), 1, "{phone}: {got:?}");
        assert_eq!(got[0]["title_zh"], "未完成平安打卡：李桂兰");
        assert_eq!(got[0]["urgency"], "high");
    }
    // A resident not on the roster cannot check in; an unknown elder is not found.
    let zhang_token = sign_in(&h, ZHANG).await;
    let (status, _) = call(
        &h,
        Some(&zhang_token),
        Method::POST,
        &format!("{BASE}/checkin"),
        None,
    )
    .await;
    assert_eq!(status, 403);
    let (status, _) = call(
        &h,
        Some(&staff),
        Method::POST,
        &format!("{BASE}/elders/nobody/checkin"),
        None,
    )
    .await;
    assert_eq!(status, 404);
}

/// A wristband: a fall raises an alarm at once and the same kind stays silent for a while;
/// a heart rate out of range raises one only when it lasts.
async fn wearable_thresholds(backend: Backend) {
    let h = demo_with(backend, &[ELDERLY_CARE]).await;
    let staff = sign_in(&h, STAFF).await;
    let grid = sign_in(&h, GRID).await;
    let zhang = person_id(&h, ZHANG).await;
    let (status, r) = call(
        &h,
        Some(&staff),
        Method::POST,
        &format!("{BASE}/elders"),
        Some(json!({"person": zhang, "wearable": "dongcun-band-zhang", "contacts": ""})),
    )
    .await;
    assert_eq!(status, 201, "{r}");
    let band = |body: Value| {
        let h = &h;
        async move {
            let done = h
                .platform
                .ingest(
                    Some("dongcun"),
                    "dongcun-band-zhang",
                    body.to_string().as_bytes(),
                )
                .await
                .unwrap();
            assert_eq!(done.deliveries[0].outcome, "ok", "{done:?}");
        }
    };
    let open = || {
        let (h, grid) = (&h, &grid);
        async move {
            let (_, r) = call(h, Some(grid), Method::GET, &format!("{BASE}/"), None).await;
            r["open"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a["kind"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        }
    };
    band(json!({"fall": true})).await;
    assert_eq!(open().await, ["fall"]);
    band(json!({"fall": true})).await;
    assert_eq!(
        open().await,
        ["fall"],
        "a second fall within the silence window"
    );
    // Heart rate: one high reading is not enough; two minutes of them are.
    let t0 = linli::storage::now_ms() - 10 * 60_000;
    band(json!({"heart_rate": 150, "ts": t0})).await;
    band(json!({"heart_rate": 152, "ts": t0 + 60_000})).await;
    assert_eq!(open().await, ["fall"]);
    band(json!({"heart_rate": 70, "ts": t0 + 90_000})).await;
    band(json!({"heart_rate": 155, "ts": t0 + 100_000})).await;
    band(json!({"heart_rate": 156, "ts": t0 + 200_000})).await;
    assert_eq!(
        open().await,
        ["fall"],
        "back in range in between: the count started again"
    );
    band(json!({"heart_rate": 158, "ts": t0 + 230_000})).await;
    assert_eq!(open().await, ["heart-rate", "fall"]);
    h.platform.deliver_outbox().await.unwrap();
    let got = inbox(&h, GRID).await;
    let heart = got
        .iter()
        .find(|m| m["title_zh"] == "心率异常：张秀英")
        .unwrap_or_else(|| panic!("{got:?}"));
    assert!(
        heart["body_zh"]
            .as_str()
            .unwrap()
            .contains("：心率异常（心率 158，持续 "),
        "{heart}"
    );
    assert!(
        heart["body_en"]
            .as_str()
            .unwrap()
            .contains(": Abnormal heart rate (heart rate 158 for "),
        "{heart}"
    );
    assert!(
        got.iter().any(|m| m["title_zh"] == "跌倒报警：张秀英"),
        "{got:?}"
    );
}

/// Home services: a family member books for the elder, the staff are told and confirm (the
/// booker is told), then mark it done; the rules on dates, services and open bookings hold.
async fn home_services(backend: Backend) {
    let h = demo_with(backend, &[ELDERLY_CARE]).await;
    let staff = sign_in(&h, STAFF).await;
    let zhang = sign_in(&h, ZHANG).await;
    let li = person_id(&h, LI).await;
    let day = |offset: i64| {
        let days = (linli::storage::now_ms() + linli_sdk::time::TZ_OFFSET_MS)
            .div_euclid(86_400_000)
            + offset;
        let (y, m, d) = linli_sdk::time::civil(days);
        format!("{y:04}-{m:02}-{d:02}")
    };
    let book = |body: Value| {
        let (h, zhang) = (&h, &zhang);
        async move {
            call(
                h,
                Some(zhang),
                Method::POST,
                &format!("{BASE}/bookings"),
                Some(body),
            )
            .await
        }
    };
    // 张秀英 is 李桂兰's emergency contact (the demo roster): she may book for her.
    let (status, b) = book(json!({"elder": li, "service": "cleaning", "date": day(1), "slot": "morning", "note": "厨房"})).await;
    assert_eq!(status, 201, "{b}");
    assert_eq!(b["state"], "requested");
    h.platform.deliver_outbox().await.unwrap();
    let got = inbox(&h, STAFF).await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["title_zh"], "上门服务预约：保洁 李桂兰");
    // The staff confirm; she is told.
    let id = b["id"].as_u64().unwrap();
    let (status, r) = call(
        &h,
        Some(&staff),
        Method::POST,
        &format!("{BASE}/bookings/{id}/confirm"),
        None,
    )
    .await;
    assert_eq!(
        (status, r["state"].as_str()),
        (200, Some("confirmed")),
        "{r}"
    );
    h.platform.deliver_outbox().await.unwrap();
    let told = inbox(&h, ZHANG).await;
    assert!(
        told.iter()
            .any(|m| m["title_zh"] == format!("预约已确认：保洁 {}", day(1))),
        "{told:?}"
    );
    // She sees it; she may not mark it done; the staff do; then nobody can cancel it.
    let (_, mine) = call(
        &h,
        Some(&zhang),
        Method::GET,
        &format!("{BASE}/bookings"),
        None,
    )
    .await;
    assert_eq!(mine["bookings"][0]["state"], "confirmed");
    let (status, _) = call(
        &h,
        Some(&zhang),
        Method::POST,
        &format!("{BASE}/bookings/{id}/done"),
        None,
    )
    .await;
    assert_eq!(status, 403);
    let (status, _) = call(
        &h,
        Some(&staff),
        Method::POST,
        &format!("{BASE}/bookings/{id}/done"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = call(
        &h,
        Some(&zhang),
        Method::POST,
        &format!("{BASE}/bookings/{id}/cancel"),
        None,
    )
    .await;
    assert_eq!(status, 409);
    // Rules: not in the past, not beyond 30 days, a known service, at most 5 open per elder.
    assert_eq!(
        book(json!({"elder": li, "service": "cleaning", "date": day(-1), "slot": "morning"}))
            .await
            .0,
        400
    );
    assert_eq!(
        book(json!({"elder": li, "service": "cleaning", "date": day(31), "slot": "morning"}))
            .await
            .0,
        400
    );
    assert_eq!(
        book(json!({"elder": li, "service": "massage", "date": day(1), "slot": "morning"}))
            .await
            .0,
        422
    );
    for _ in 0..5 {
        assert_eq!(
            book(json!({"elder": li, "service": "meals", "date": day(2), "slot": "afternoon"}))
                .await
                .0,
            201
        );
    }
    let (status, r) =
        book(json!({"elder": li, "service": "meals", "date": day(2), "slot": "afternoon"})).await;
    assert_eq!(status, 413, "{r}");
    // Not for someone who does not list her as a contact.
    let zhang_id = person_id(&h, ZHANG).await;
    let (status, _) =
        book(json!({"elder": zhang_id, "service": "meals", "date": day(2), "slot": "morning"}))
            .await;
    assert!(status == 403 || status == 422, "{status}");
}

/// A press handed over again after the host died between the handler's save and marking
/// the message done (simulated: the mark and the lease undone) raises no second alarm and
/// sends no second notification.
async fn redelivered_press_raises_one_alarm(backend: Backend) {
    let h = demo_with(backend, &[ELDERLY_CARE]).await;
    let grid = sign_in(&h, GRID).await;
    let done = press(&h, "dongcun-sos-li").await;
    assert_eq!(done["deliveries"][0]["outcome"], "ok", "{done}");
    sqlx::query(
        "UPDATE outbox SET delivered_at = NULL, lease_until = NULL, lease_token = NULL \
         WHERE kind = 'telemetry'",
    )
    .execute(h.platform.db.pool())
    .await
    .unwrap();
    h.platform.deliver_outbox().await.unwrap();
    let (_, open) = call(&h, Some(&grid), Method::GET, &format!("{BASE}/"), None).await;
    assert_eq!(open["open"].as_array().unwrap().len(), 1, "{open}");
    assert_eq!(inbox(&h, ZHANG).await.len(), 1);
}

on_both_backends!(
    redelivered_press_raises_one_alarm,
    home_services,
    escalation,
    daily_check_in,
    wearable_thresholds,
    emergency,
    roster_rules
);
