//! Scheduled ticks and events between plugins, through the durable outbox (real SQLite or
//! Postgres): claimed once however many workers race, delivered at least once, never doubled
//! by a repeated key, retried when the handler fails and given up after the named limit.

use reqwest::Method;
use serde_json::{Value, json};

use crate::identity::{SECADMIN, call, demo_with, sign_in};
use linli::platform::events::MAX_EVENT_ATTEMPTS;
use linli_tests::{ADMIN_TOKEN, Backend, SPY, TestHost, on_both_backends};

async fn spy_events(h: &TestHost, tenant: &str, ticks: bool) -> Vec<Value> {
    let q = if ticks { "?ticks=1" } else { "" };
    let (status, r) = call(
        h,
        None,
        Method::GET,
        &format!("/t/{tenant}/p/spy/events{q}"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{r}");
    r["events"].as_array().unwrap().clone()
}

async fn publish(h: &TestHost, query: &str) -> (u16, Value) {
    call(
        h,
        None,
        Method::GET,
        &format!("/t/dongcun/p/spy/publish?{query}"),
        None,
    )
    .await
}

async fn ticks(backend: Backend) {
    let h = demo_with(backend, &[SPY]).await;
    let db = h.platform.db.pool();
    // The first look only starts the schedules; nothing is due yet.
    assert_eq!(h.platform.schedule_ticks().await.unwrap(), 0);
    let (n,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM schedule_state WHERE plugin_id = 'spy'")
            .fetch_one(db)
            .await
            .unwrap();
    assert_eq!(n, 2, "one schedule per installation (dongcun, xicun)");
    // Make dongcun's due a minute ago: claimed once, however many workers race for it.
    let due = linli::storage::now_ms() - 60_000;
    sqlx::query("UPDATE schedule_state SET next_due_at = $1 WHERE plugin_id = 'spy' AND tenant_id = 'dongcun'")
        .bind(due)
        .execute(db)
        .await
        .unwrap();
    let (a, b, c) = tokio::join!(
        h.platform.schedule_ticks(),
        h.platform.schedule_ticks(),
        h.platform.schedule_ticks()
    );
    assert_eq!(a.unwrap() + b.unwrap() + c.unwrap(), 1);
    let (next,): (i64,) = sqlx::query_as(
        "SELECT next_due_at FROM schedule_state WHERE plugin_id = 'spy' AND tenant_id = 'dongcun'",
    )
    .fetch_one(db)
    .await
    .unwrap();
    assert!(
        next > linli::storage::now_ms() - 1000 && next % 60_000 == 0,
        "moved on to the next minute: {next}"
    );
    assert_eq!(h.platform.deliver_outbox().await.unwrap(), 1);
    assert_eq!(
        spy_events(&h, "dongcun", true).await,
        [json!({"schedule": "minute", "due_at_ms": due})]
    );
    assert!(spy_events(&h, "xicun", true).await.is_empty());
    // A tick by hand; its key makes a repeat a no-op; an unknown schedule is named.
    assert!(
        h.platform
            .queue_tick("xicun", "spy", "minute", 1234)
            .await
            .unwrap()
    );
    assert!(
        !h.platform
            .queue_tick("xicun", "spy", "minute", 1234)
            .await
            .unwrap()
    );
    let err = h
        .platform
        .queue_tick("xicun", "spy", "hourly", 1)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("(it has: minute)"), "{err}");
    assert_eq!(h.platform.deliver_outbox().await.unwrap(), 1);
    assert_eq!(
        spy_events(&h, "xicun", true).await,
        [json!({"schedule": "minute", "due_at_ms": 1234})]
    );
    // Suspended: the tick waits; resumed: it arrives.
    let (status, r) = call(
        &h,
        Some(ADMIN_TOKEN),
        Method::POST,
        "/api/v1/tenants/xicun/plugins/spy/suspend",
        Some(json!({"reason": "test"})),
    )
    .await;
    assert_eq!(status, 200, "{r}");
    assert!(
        h.platform
            .queue_tick("xicun", "spy", "minute", 5678)
            .await
            .unwrap()
    );
    // However long the suspension, waiting uses up none of the tick's attempts.
    for _ in 0..=linli::platform::events::MAX_EVENT_ATTEMPTS {
        assert_eq!(h.platform.deliver_outbox().await.unwrap(), 0);
        sqlx::query("UPDATE outbox SET next_attempt_at = 0 WHERE delivered_at IS NULL")
            .execute(db)
            .await
            .unwrap();
    }
    let (attempts, pending): (i64, i64) = sqlx::query_as(
        "SELECT COALESCE(MAX(attempts), -1), COUNT(*) FROM outbox WHERE delivered_at IS NULL",
    )
    .fetch_one(db)
    .await
    .unwrap();
    assert_eq!((attempts, pending), (0, 1));
    sqlx::query("UPDATE outbox SET next_attempt_at = $1 WHERE delivered_at IS NULL")
        .bind(linli::storage::now_ms() + 3_600_000)
        .execute(db)
        .await
        .unwrap();
    // Resumed: it is due at once.
    let (status, r) = call(
        &h,
        Some(ADMIN_TOKEN),
        Method::POST,
        "/api/v1/tenants/xicun/plugins/spy/resume",
        None,
    )
    .await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(h.platform.deliver_outbox().await.unwrap(), 1);
    assert_eq!(spy_events(&h, "xicun", true).await.len(), 2);
}

async fn publish_subscribe(backend: Backend) {
    let h = demo_with(backend, &[SPY]).await;
    let db = h.platform.db.pool();
    // Not granted: denied.
    assert_eq!(publish(&h, "topic=spy.echo&payload=hi&key=k1").await.0, 403);
    let sec = sign_in(&h, SECADMIN).await;
    let (status, r) = call(
        &h,
        Some(&sec),
        Method::PUT,
        "/api/v1/tenants/dongcun/plugins/spy/grants/messaging.publish",
        None,
    )
    .await;
    assert_eq!(status, 200, "{r}");
    let (status, r) = publish(&h, "topic=spy.echo&payload=%E4%BD%A0%E5%A5%BD&key=k1").await;
    assert_eq!(status, 200, "{r}");
    // The same key again adds nothing; a topic nobody subscribes to reaches nobody.
    assert_eq!(
        publish(&h, "topic=spy.echo&payload=again&key=k1").await.0,
        200
    );
    assert_eq!(
        publish(&h, "topic=nobody.listens&payload=x&key=k2").await.0,
        200
    );
    assert_eq!(h.platform.deliver_outbox().await.unwrap(), 1);
    assert_eq!(
        spy_events(&h, "dongcun", false).await,
        [json!({"topic": "spy.echo", "source": "spy", "key": "k1", "payload": "你好"})]
    );
    // Events stay in the place they were published in.
    assert!(spy_events(&h, "xicun", false).await.is_empty());
    // Limits, each named.
    let (status, r) = publish(&h, "topic=bad%20topic&payload=x&key=k3").await;
    assert_eq!(status, 400, "{r}");
    assert!(r.to_string().contains("1–128"), "{r}");
    let (status, r) = publish(&h, "topic=spy.echo&size=70000&key=k4").await;
    assert_eq!(status, 400, "{r}");
    assert!(r.to_string().contains("65536 bytes"), "{r}");
    assert_eq!(publish(&h, "topic=spy.echo&payload=x&key=").await.0, 400);
    // A handler that fails: retried with backoff, then given up after the named limit.
    assert_eq!(
        publish(&h, "topic=spy.echo&payload=fail&key=k5").await.0,
        200
    );
    for attempt in 1..=MAX_EVENT_ATTEMPTS {
        sqlx::query("UPDATE outbox SET next_attempt_at = 0 WHERE delivered_at IS NULL")
            .execute(db)
            .await
            .unwrap();
        h.platform.deliver_outbox().await.unwrap();
        let (attempts, delivered, error): (i64, Option<i64>, Option<String>) = sqlx::query_as(
            "SELECT attempts, delivered_at, last_error FROM outbox WHERE kind = 'event' AND idempotency_key LIKE '%/k5'",
        )
        .fetch_one(db)
        .await
        .unwrap();
        assert_eq!(attempts, attempt);
        assert!(
            error.as_deref().unwrap_or("").contains("told to fail"),
            "{error:?}"
        );
        assert_eq!(
            delivered.is_some(),
            attempt == MAX_EVENT_ATTEMPTS,
            "attempt {attempt}"
        );
    }
    assert_eq!(spy_events(&h, "dongcun", false).await.len(), 1);
}

on_both_backends!(ticks, publish_subscribe);
