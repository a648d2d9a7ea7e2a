//! Hostile guests: every limit attacked by a plugin, each contained with the right error while
//! a well-behaved plugin on the same host keeps answering. Each test fails if its limit is
//! removed (the request would hang, crash the host, or succeed).

use linli::config::Config;
use linli_tests::{Backend, HELLO, HOSTILE, ROOT, SPY, TestHost, table_bomb_component};
use serde_json::Value;

/// Limits small enough to hit quickly.
fn tight(c: &mut Config) {
    let l = &mut c.limits;
    l.call_timeout_ms = 1_000;
    l.memory_bytes = 32 << 20;
    l.wasm_stack_bytes = 256 << 10;
    l.response_body_bytes = 1 << 20;
    l.value_bytes = 1 << 20;
    l.hostcall_bytes = 512 << 10;
    l.key_bytes = 256;
    l.keys_per_scope = 10;
    l.batch_ops = 256;
    l.table_elements = 10_000;
    l.instances = 32;
    l.trap_threshold = 1_000;
    l.log_lines_per_second = 50;
    l.stdio_bytes = 16 << 10;
}

async fn host() -> TestHost {
    let h = TestHost::start(Backend::Sqlite, tight).await;
    h.village("dongcun").await;
    h.village("xicun").await;
    h.install("dongcun", HELLO).await;
    h.install("xicun", HELLO).await;
    h.install("dongcun", HOSTILE).await;
    h.install("dongcun", SPY).await;
    h
}

/// The well-behaved plugin still answers.
async fn hello_answers(h: &TestHost) {
    let (status, body) = h.get_json("/t/dongcun/p/hello/").await;
    assert_eq!(status, 200, "{body}");
    assert!(body["visits"].as_i64().unwrap() >= 1);
}

async fn expect_error(h: &TestHost, path: &str, status: u16, code: &str) -> Value {
    let (got, body) = h.get_json(path).await;
    assert_eq!(got, status, "{path}: {body}");
    assert_eq!(body["error"]["code"], code, "{path}: {body}");
    body
}

async fn host_answer(h: &TestHost, path: &str) -> Value {
    let (status, body) = h.get_json(path).await;
    assert_eq!(status, 200, "{path}: {body}");
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn infinite_loop_is_stopped_at_the_deadline() {
    let h = host().await;
    let body = expect_error(&h, "/t/dongcun/p/hostile/loop", 504, "plugin_deadline").await;
    assert_eq!(body["error"]["plugin"], "hostile");
    // Spinning burns its own CPU time: stopped at limits.cpu_time_ms (half the deadline).
    assert!(
        body["error"]["reason"]
            .as_str()
            .unwrap()
            .contains("cpu_time_ms"),
        "{body}"
    );
    hello_answers(&h).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sleeping_in_a_host_call_is_stopped_at_the_deadline() {
    let h = host().await;
    expect_error(&h, "/t/dongcun/p/hostile/sleep", 504, "plugin_deadline").await;
    hello_answers(&h).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_bomb_hits_the_memory_limit() {
    let h = host().await;
    let body = expect_error(&h, "/t/dongcun/p/hostile/alloc", 500, "plugin_trapped").await;
    let reason = body["error"]["reason"].as_str().unwrap();
    assert!(reason.contains("limits.memory_bytes"), "{reason}");
    hello_answers(&h).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_recursion_hits_the_stack_limit() {
    let h = host().await;
    let body = expect_error(&h, "/t/dongcun/p/hostile/recurse", 500, "plugin_trapped").await;
    let reason = body["error"]["reason"].as_str().unwrap();
    assert!(reason.contains("stack overflow"), "{reason}");
    hello_answers(&h).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_response_is_refused() {
    let h = host().await;
    let body = expect_error(
        &h,
        "/t/dongcun/p/hostile/huge?bytes=2000000",
        502,
        "plugin_bad_response",
    )
    .await;
    assert!(
        body["error"]["reason"]
            .as_str()
            .unwrap()
            .contains("response_body_bytes")
    );
    let (status, text) = h.get("/t/dongcun/p/hostile/huge?bytes=1000").await;
    assert_eq!((status, text.len()), (200, 1000));
    expect_error(
        &h,
        "/t/dongcun/p/hostile/bad-status",
        502,
        "plugin_bad_response",
    )
    .await;
    hello_answers(&h).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panic_is_a_trap() {
    let h = host().await;
    let body = expect_error(&h, "/t/dongcun/p/hostile/panic", 500, "plugin_trapped").await;
    assert!(
        body["error"]["reason"]
            .as_str()
            .unwrap()
            .contains("unreachable")
    );
    hello_answers(&h).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn table_growth_hits_the_table_limit() {
    let h = host().await;
    h.platform
        .install(
            &ROOT,
            "dongcun",
            &table_bomb_component(),
            &linli::platform::GrantChoice::all(),
        )
        .await
        .expect("install table bomb");
    let body = expect_error(&h, "/t/dongcun/p/table-bomb/", 500, "plugin_trapped").await;
    let reason = body["error"]["reason"].as_str().unwrap();
    assert!(reason.contains("limits.table_elements"), "{reason}");
    hello_answers(&h).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_limits_answer_clear_errors() {
    let h = host().await;
    // Within the limits the calls succeed.
    assert_eq!(
        host_answer(&h, "/t/dongcun/p/hostile/big-key?bytes=256").await["ok"],
        Value::Null
    );
    assert_eq!(
        host_answer(&h, "/t/dongcun/p/hostile/big-batch?bytes=5").await["ok"],
        "Committed"
    );
    let cases = [
        ("big-key?bytes=300", "quota", "key_bytes"),
        ("big-value?bytes=1100000", "quota", "value_bytes"),
        ("big-value?bytes=600000", "quota", "hostcall_bytes"),
        ("empty-key", "invalid", "empty"),
        ("nul-key", "invalid", "NUL"),
        ("big-batch?bytes=300", "quota", "batch_ops"),
        ("not-a-counter", "invalid", "counter"),
        ("overflow", "invalid", "overflow"),
        ("bad-cursor", "invalid", "cursor"),
        // A capability the installation was not granted answers the deny stub.
        ("unavailable", "denied", "identity"),
        // Last: it fills the scope up to keys_per_scope.
        ("many-keys?bytes=20", "quota", "keys_per_scope"),
    ];
    for (route, code, needle) in cases {
        let body = host_answer(&h, &format!("/t/dongcun/p/hostile/{route}")).await;
        assert_eq!(body["error"], code, "{route}: {body}");
        let message = body["message"].as_str().unwrap();
        assert!(message.contains(needle), "{route}: {message}");
    }
    hello_answers(&h).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugins_cannot_reach_other_scopes() {
    let h = host().await;
    hello_answers(&h).await;
    hello_answers(&h).await;
    let escape = host_answer(&h, "/t/dongcun/p/hostile/escape").await;
    for (probe, value) in escape["probes"].as_object().unwrap() {
        assert!(value.is_null(), "hostile read {probe}: {value}");
    }
    assert_eq!(escape["keys"], serde_json::json!([]));
    let peek = host_answer(&h, "/t/dongcun/p/spy/peek").await;
    assert_eq!(peek, serde_json::json!({ "keys": [], "visits": null }));
    // The same plugin at another tenant has its own data.
    assert_eq!(
        host_answer(&h, "/t/xicun/p/hello/visits").await["visits"],
        0
    );
    assert_eq!(
        host_answer(&h, "/t/dongcun/p/hello/visits").await["visits"],
        2
    );
    // A key written by one installation is invisible to the others.
    let r = h
        .client
        .post(h.url("/t/dongcun/p/hostile/set?key=visits"))
        .body("999")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(
        host_answer(&h, "/t/dongcun/p/hello/visits").await["visits"],
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_owns_credentials_and_security_headers() {
    let h = host().await;
    let r = h
        .client
        .get(h.url("/t/dongcun/p/hostile/echo-headers"))
        .bearer_auth(linli_tests::ADMIN_TOKEN)
        .header("cookie", "session=secret")
        .header("x-custom", "1")
        .send()
        .await
        .unwrap();
    let names: Vec<String> = r.json().await.unwrap();
    assert!(names.contains(&"x-custom".to_string()));
    assert!(
        !names.iter().any(|n| n == "authorization" || n == "cookie"),
        "{names:?}"
    );

    let r = h
        .client
        .get(h.url("/t/dongcun/p/hostile/headers"))
        .send()
        .await
        .unwrap();
    let headers = r.headers();
    assert!(headers.get("set-cookie").is_none());
    assert!(headers.get("access-control-allow-origin").is_none());
    assert!(headers.get("location").is_none());
    assert_eq!(headers.get("x-linli-ok").unwrap(), "yes");
    assert!(
        headers
            .get("content-security-policy")
            .unwrap()
            .to_str()
            .unwrap()
            .contains("sandbox")
    );
    assert!(headers.get("x-request-id").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_and_output_floods_are_capped() {
    let h = host().await;
    let (status, _) = h.get("/t/dongcun/p/hostile/log-flood?bytes=10000").await;
    assert_eq!(status, 200);
    let dropped = h.platform.log_lines_dropped("dongcun", "hostile");
    assert!(
        dropped >= 9_000,
        "only {dropped} of 10000 lines dropped at 50/s"
    );
    // stdout past limits.stdio_bytes is refused; Rust's println! then panics.
    let body = expect_error(
        &h,
        "/t/dongcun/p/hostile/stdout-flood",
        500,
        "plugin_trapped",
    )
    .await;
    assert!(body["error"]["reason"].as_str().is_some());
    hello_answers(&h).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attacks_in_parallel_do_not_starve_a_good_plugin() {
    let h = host().await;
    let mut attacks = Vec::new();
    for route in ["loop", "alloc", "recurse", "panic", "sleep", "loop"] {
        let client = h.client.clone();
        let url = h.url(&format!("/t/dongcun/p/hostile/{route}"));
        attacks.push(tokio::spawn(async move {
            client.get(url).send().await.unwrap().status().as_u16()
        }));
    }
    for _ in 0..20 {
        hello_answers(&h).await;
    }
    for a in attacks {
        let status = a.await.unwrap();
        assert!(status == 500 || status == 504, "attack answered {status}");
    }
    assert_eq!(h.get("/healthz").await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_that_keeps_trapping_is_suspended_and_can_be_resumed() {
    let h = TestHost::start(Backend::Sqlite, |c| {
        tight(c);
        c.limits.trap_threshold = 3;
    })
    .await;
    h.village("dongcun").await;
    h.install("dongcun", HELLO).await;
    h.install("dongcun", HOSTILE).await;
    for _ in 0..3 {
        expect_error(&h, "/t/dongcun/p/hostile/panic", 500, "plugin_trapped").await;
    }
    let body = expect_error(&h, "/t/dongcun/p/hostile/ping", 503, "plugin_suspended").await;
    assert!(
        body["error"]["reason"]
            .as_str()
            .unwrap()
            .contains("trap_threshold")
    );
    hello_answers(&h).await;
    let r = h
        .admin(
            reqwest::Method::GET,
            "/api/v1/tenants/dongcun/plugins/hostile",
        )
        .send()
        .await
        .unwrap();
    let install: Value = r.json().await.unwrap();
    assert_eq!(install["status"], "suspended");
    let r = h
        .admin(
            reqwest::Method::POST,
            "/api/v1/tenants/dongcun/plugins/hostile/resume",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        h.get("/t/dongcun/p/hostile/ping").await,
        (200, "pong".to_string())
    );
    let metrics = h.get("/metrics").await.1;
    assert!(
        metrics.contains("linli_plugin_suspensions_total{tenant=\"dongcun\",plugin=\"hostile\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("linli_plugin_traps_total{tenant=\"dongcun\",plugin=\"hostile\"} 3"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_that_break_the_schema_are_refused() {
    let h = host().await;
    // A good page passes through untouched; markup in it is only text.
    let (status, body) = h.get_json("/t/dongcun/p/hostile/page/good").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["body"][0]["text"], "<script>alert(1)</script>");

    for (path, says) in [
        ("html", "unknown variant `html`"),
        ("script-link", "is not a path inside the plugin"),
        ("offsite-redirect", "is not a path inside the plugin"),
        ("deep?bytes=8", "nested deeper than 4"),
        ("many?bytes=1001", "more than 1000 blocks"),
        ("long-text?bytes=20001", "the limit is 20000"),
        ("long-text?bytes=300000", "the limit is 262144"),
        ("not-a-page", "not valid JSON for schema version 1"),
    ] {
        let body = expect_error(
            &h,
            &format!("/t/dongcun/p/hostile/page/{path}"),
            502,
            "invalid_page",
        )
        .await;
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(says), "{path}: {message}");
    }
    // At the limits themselves, pages pass.
    for path in ["deep?bytes=3", "many?bytes=1000", "long-text?bytes=20000"] {
        let (status, body) = h
            .get_json(&format!("/t/dongcun/p/hostile/page/{path}"))
            .await;
        assert_eq!(status, 200, "{path}: {body}");
    }
    let metrics = h.get("/metrics").await.1;
    assert!(
        metrics
            .contains(r#"linli_plugin_invalid_pages_total{tenant="dongcun",plugin="hostile"} 8"#),
        "{metrics}"
    );
    hello_answers(&h).await;
}
