//! `messaging.notify` through the durable outbox to the inbox (real SQLite or Postgres):
//! recipients resolved inside the place the call was for, once per idempotency key, hostile
//! input refused by name, and a host stopped mid-delivery loses nothing and doubles nothing.

use reqwest::Method;
use serde_json::Value;

use crate::identity::{GRID, LI, SECADMIN, WANG, ZHANG, call, demo_with, person_id, sign_in};
use linli_tests::{Backend, SPY, TestHost, on_both_backends};

async fn grant_notify(h: &TestHost) {
    let sec = sign_in(h, SECADMIN).await;
    let (status, r) = call(
        h,
        Some(&sec),
        Method::PUT,
        "/api/v1/tenants/dongcun/plugins/spy/grants/messaging.notify",
        None,
    )
    .await;
    assert_eq!(status, 200, "{r}");
}

async fn notify(h: &TestHost, query: &str) -> (u16, Value) {
    call(
        h,
        None,
        Method::GET,
        &format!("/t/dongcun/p/spy/notify?{query}"),
        None,
    )
    .await
}

/// The spy's notifications in a person's inbox.
async fn from_spy(h: &TestHost, phone: &str) -> Vec<Value> {
    inbox_from(h, phone, "spy").await
}

/// The notifications from `plugin` in the inbox of the person signed in with `phone`.
pub(crate) async fn inbox_from(h: &TestHost, phone: &str, plugin: &str) -> Vec<Value> {
    let token = sign_in(h, phone).await;
    let (status, r) = call(h, Some(&token), Method::GET, "/api/v1/me/inbox", None).await;
    assert_eq!(status, 200, "{r}");
    r.as_array()
        .unwrap()
        .iter()
        .filter(|m| m["source"] == plugin)
        .cloned()
        .collect()
}

async fn notifications(backend: Backend) {
    let h = demo_with(backend, &[SPY]).await;
    // Not granted: denied, nothing queued.
    let (status, _) = notify(&h, "to=everyone&key=a").await;
    assert_eq!(status, 403);
    grant_notify(&h).await;
    let li = person_id(&h, LI).await;
    let (status, r) = notify(
        &h,
        &format!("to=resident:{li}&key=sos-1&link=/p/dongcun/spy/"),
    )
    .await;
    assert_eq!(status, 200, "{r}");
    // Asked again with the same key (a plugin retrying): still one.
    let (status, _) = notify(&h, &format!("to=resident:{li}&key=sos-1")).await;
    assert_eq!(status, 200);
    // Not delivered until the worker runs; then once.
    assert!(from_spy(&h, ZHANG).await.is_empty());
    assert_eq!(h.platform.deliver_outbox().await.unwrap(), 1);
    assert_eq!(h.platform.deliver_outbox().await.unwrap(), 0);
    // 李桂兰 has no password; read her inbox through the store.
    let inbox = linli::storage::inbox::list(&h.platform.db, &li, 50)
        .await
        .unwrap();
    let spy: Vec<_> = inbox.iter().filter(|m| m.source == "spy").collect();
    assert_eq!(spy.len(), 1);
    assert_eq!(spy[0].title_zh, "紧急呼叫");
    assert_eq!(spy[0].urgency.as_deref(), Some("emergency"));
    assert_eq!(spy[0].link.as_deref(), Some("/p/dongcun/spy/"));

    // Roles: the grid worker of 东村 is told; households and everyone stay in 东村.
    let (status, _) = notify(&h, "to=role:grid-worker&key=sos-2").await;
    assert_eq!(status, 200);
    let (status, _) = notify(&h, "to=everyone&key=all-1&title=停水通知").await;
    assert_eq!(status, 200);
    let wang = person_id(&h, WANG).await;
    let (status, _) = notify(&h, &format!("to=resident:{wang}&key=probe")).await;
    assert_eq!(status, 200, "queued, but a xicun resident is out of reach");
    assert_eq!(h.platform.deliver_outbox().await.unwrap(), 3);
    let grid = from_spy(&h, GRID).await;
    assert_eq!(grid.len(), 1);
    let zhang: Vec<_> = from_spy(&h, ZHANG)
        .await
        .iter()
        .map(|m| m["title_zh"].clone())
        .collect();
    assert_eq!(zhang, ["停水通知"]);
    assert!(
        from_spy(&h, WANG).await.is_empty(),
        "xicun is not reached from dongcun"
    );

    // Hostile input is refused with the limit named.
    for (query, words) in [
        ("to=role:emperor&key=x", "unknown role"),
        ("to=everyone&key=", "idempotency key"),
        (
            &format!("to=everyone&key={}", "k".repeat(129)) as &str,
            "idempotency key",
        ),
        (
            &format!("to=everyone&key=x&title={}", "长".repeat(101)),
            "at most 100",
        ),
        ("to=everyone&key=x&title=", "required"),
        ("to=everyone&key=x&link=https://evil.example/", "shell path"),
        ("to=everyone&key=x&link=//evil.example/", "shell path"),
        // Climbing out of the plugin in any encoding (decoded once by the plugin).
        (
            "to=everyone&key=x&link=/.%252e/.%252e/api/v1/me",
            "shell path",
        ),
        ("to=everyone&key=x&link=/../../api/v1/me", "shell path"),
        (
            "to=everyone&key=x&link=/a%252f..%252f..%252fapi",
            "shell path",
        ),
        (
            &format!("to=resident:{}&key=x", "p".repeat(65)),
            "1–64 bytes",
        ),
    ] {
        let (status, r) = notify(&h, query).await;
        assert_eq!(status, 400, "{query}: {r}");
        assert!(r.to_string().contains(words), "{query}: {r}");
    }
}

/// The host stops after queueing and before delivering, and again after delivering but as
/// if before marking the entry delivered: the next host delivers, and nothing doubles.
async fn outbox_survives_a_crash(backend: Backend) {
    let h = demo_with(backend, &[SPY]).await;
    grant_notify(&h).await;
    let li = person_id(&h, LI).await;
    let (status, _) = notify(&h, &format!("to=resident:{li}&key=sos-9")).await;
    assert_eq!(status, 200);
    let (config, dir) = h.stop().await;
    let h = TestHost::start_with(config, dir).await;
    assert_eq!(h.platform.deliver_outbox().await.unwrap(), 1);
    let count = |h: &TestHost, li: String| {
        let db = h.platform.db.clone();
        async move {
            linli::storage::inbox::list(&db, &li, 50)
                .await
                .unwrap()
                .iter()
                .filter(|m| m.source == "spy")
                .count()
        }
    };
    assert_eq!(count(&h, li.clone()).await, 1);
    // A delivery that wrote the inbox but died before marking the entry: redelivered, not
    // doubled.
    sqlx::query("UPDATE outbox SET delivered_at = NULL")
        .execute(h.platform.db.pool())
        .await
        .unwrap();
    assert_eq!(h.platform.deliver_outbox().await.unwrap(), 1);
    assert_eq!(count(&h, li.clone()).await, 1);
    // A failing delivery is kept with its error and retried later.
    sqlx::query("UPDATE outbox SET delivered_at = NULL, payload = 'not json'")
        .execute(h.platform.db.pool())
        .await
        .unwrap();
    assert_eq!(h.platform.deliver_outbox().await.unwrap(), 0);
    let row = sqlx::query("SELECT attempts, last_error, delivered_at FROM outbox")
        .fetch_one(h.platform.db.pool())
        .await
        .unwrap();
    use sqlx::Row;
    assert_eq!(row.get::<i64, _>(0), 3);
    assert!(row.get::<String, _>(1).contains("outbox payload"));
    assert_eq!(row.get::<Option<i64>, _>(2), None);
}

/// A notification goes into the outbox with the call's next data change, in its
/// transaction: a call that traps before any change sends nothing; one that saved first has
/// both its data and its notification, trap or not.
async fn with_the_data_change(backend: Backend) {
    let h = demo_with(backend, &[SPY]).await;
    grant_notify(&h).await;
    let db = h.platform.db.pool();
    let count = || async move {
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM outbox WHERE plugin_id = 'spy'")
            .fetch_one(db)
            .await
            .unwrap();
        n
    };
    let (status, _) = notify(&h, "to=everyone&key=t1&then=trap").await;
    assert_eq!(status, 500);
    assert_eq!(
        count().await,
        0,
        "the call trapped before any change: nothing sent"
    );
    let (status, _) = notify(&h, "to=everyone&key=t2&then=save-trap").await;
    assert_eq!(status, 500);
    assert_eq!(count().await, 1, "it rode with the save");
    let saved = linli::storage::kv::get(
        &h.platform.db,
        &linli::storage::kv::Scope {
            tenant: "dongcun".into(),
            plugin: "spy".into(),
        },
        "saved",
    )
    .await
    .unwrap();
    assert_eq!(saved.as_deref(), Some(&b"1"[..]));
    // With no change at all, the entry is written when the call ends.
    let (status, _) = notify(&h, "to=everyone&key=t3").await;
    assert_eq!(status, 200);
    assert_eq!(count().await, 2);
}

/// Channels beyond the inbox: SMS and a webhook (a local receiver here) by urgency, and the
/// village loudspeaker for a notification to everyone, each sent once from its own entry.
async fn channels(backend: Backend) {
    use std::sync::{Arc, Mutex};
    let got: Arc<Mutex<Vec<(String, Value)>>> = Arc::default();
    let app = {
        let got = got.clone();
        axum::Router::new().route(
            "/{kind}",
            axum::routing::post(
                move |axum::extract::Path(kind): axum::extract::Path<String>,
                      axum::Json(body): axum::Json<Value>| {
                    let got = got.clone();
                    async move {
                        got.lock().unwrap().push((kind, body));
                        "ok"
                    }
                },
            ),
        )
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let h = crate::identity::demo_tweaked(backend, &[SPY], {
        let base = base.clone();
        move |c| {
            c.messaging.sms_min_urgency = "emergency".into();
            c.messaging.sms_url = Some(format!("{base}/sms"));
            c.messaging.webhook_url = Some(format!("{base}/webhook"));
            c.messaging.loudspeaker_min_urgency = "high".into();
        }
    })
    .await;
    grant_notify(&h).await;
    let staff = sign_in(&h, crate::identity::STAFF).await;
    let (status, r) = call(
        &h,
        Some(&staff),
        Method::POST,
        "/api/v1/tenants/dongcun/devices",
        Some(serde_json::json!({"id": "dongcun-speaker-1", "kind": "loudspeaker", "name": "东村大喇叭"})),
    )
    .await;
    assert_eq!(status, 201, "{r}");
    // The loudspeaker, played here: it acknowledges what it is told to play.
    let speaker = {
        let p = h.platform.clone();
        tokio::spawn(async move {
            loop {
                for c in p
                    .pending_commands(Some("dongcun"), "dongcun-speaker-1")
                    .await
                    .unwrap()
                {
                    let ack = serde_json::json!({"id": c.id, "ok": true});
                    p.answer_command(
                        Some("dongcun"),
                        "dongcun-speaker-1",
                        ack.to_string().as_bytes(),
                    )
                    .await
                    .unwrap();
                }
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        })
    };
    let (status, _) = notify(
        &h,
        "to=everyone&key=flood&title=%E6%B4%AA%E6%B0%B4%E9%A2%84%E8%AD%A6",
    )
    .await;
    assert_eq!(status, 200);
    // The notification, then its three channel entries.
    assert_eq!(h.platform.deliver_outbox().await.unwrap(), 4);
    let mut kinds: Vec<_> = got.lock().unwrap().iter().map(|(k, _)| k.clone()).collect();
    kinds.sort();
    assert_eq!(kinds, ["sms", "webhook"]);
    let calls = got.lock().unwrap().clone();
    let sms = &calls.iter().find(|(k, _)| k == "sms").unwrap().1;
    assert_eq!(
        sms["phones"].as_array().unwrap().len(),
        2,
        "东村's two residents: {sms}"
    );
    assert!(
        sms["text"]
            .as_str()
            .unwrap()
            .starts_with("【邻里】洪水预警："),
        "{sms}"
    );
    let hook = &calls.iter().find(|(k, _)| k == "webhook").unwrap().1;
    assert_eq!(hook["alert"]["msgType"], "Alert");
    assert_eq!(hook["alert"]["info"]["severity"], "Extreme");
    assert_eq!(hook["alert"]["info"]["area"]["areaDesc"], "东村");
    assert_eq!(hook["plugin"], "spy");
    let (_, log) = call(
        &h,
        Some(&staff),
        Method::GET,
        "/api/v1/devices/dongcun-speaker-1/commands",
        None,
    )
    .await;
    assert_eq!(log[0]["command"], "play");
    assert_eq!(log[0]["status"], "acknowledged");
    assert!(
        log[0]["payload"]["text"]
            .as_str()
            .unwrap()
            .contains("洪水预警"),
        "{log}"
    );
    // Nothing is sent twice.
    assert_eq!(h.platform.deliver_outbox().await.unwrap(), 0);
    assert_eq!(got.lock().unwrap().len(), 2);
    // A notification about one person never goes on the loudspeaker.
    let li = person_id(&h, LI).await;
    let (status, _) = notify(&h, &format!("to=resident:{li}&key=sos")).await;
    assert_eq!(status, 200);
    assert_eq!(
        h.platform.deliver_outbox().await.unwrap(),
        3,
        "inbox, SMS, webhook"
    );
    let (_, log) = call(
        &h,
        Some(&staff),
        Method::GET,
        "/api/v1/devices/dongcun-speaker-1/commands",
        None,
    )
    .await;
    assert_eq!(log.as_array().unwrap().len(), 1);
    speaker.abort();
    server.abort();
}

on_both_backends!(
    notifications,
    outbox_survives_a_crash,
    with_the_data_change,
    channels
);
