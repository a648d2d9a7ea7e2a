//! The HTTP API: OpenAPI coverage, admin auth, tenants, installs and the gateway's errors.

use reqwest::Method;
use serde_json::Value;

use linli_tests::{Backend, HELLO, ROOT, TestHost, on_both_backends, wat_plugin};

async fn json(r: reqwest::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    let body = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&body).unwrap_or_else(|_| panic!("not JSON: {body}")),
    )
}

/// Every path in the OpenAPI document is served (not the fallback), and every route the
/// router adds outside the documented handlers is in the document.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_describes_every_route() {
    let h = TestHost::start(Backend::Sqlite, |_| {}).await;
    h.village("dongcun").await;
    h.install("dongcun", HELLO).await;
    let (status, doc) = h.get_json("/api/v1/openapi.json").await;
    assert_eq!(status, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    for expected in [
        "/healthz",
        "/readyz",
        "/metrics",
        "/api/v1/openapi.json",
        "/api/v1/tenants",
        "/api/v1/plugins",
        "/api/v1/tenants/{tenant}/plugins",
        "/api/v1/tenants/{tenant}/plugins/{plugin}",
        "/api/v1/tenants/{tenant}/plugins/{plugin}/suspend",
        "/api/v1/tenants/{tenant}/plugins/{plugin}/resume",
        "/api/v1/audit",
        "/t/{tenant}/p/{plugin}/{path}",
    ] {
        assert!(
            paths.contains_key(expected),
            "{expected} missing from the OpenAPI document"
        );
    }
    let mut checked = 0;
    for (path, item) in paths {
        let concrete = path
            .replace("{tenant}", "dongcun")
            .replace("{plugin}", "hello")
            .replace("{path}", "visits")
            .replace("{id}", "p-00000000000000000000")
            .replace("{capability}", "identity")
            .replace("{role}", "grid-worker");
        for method in ["get", "post", "put", "patch", "delete"] {
            if item.get(method).is_none() || (method == "delete" && concrete.ends_with("/hello")) {
                continue;
            }
            let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let r = h.admin(m, &concrete).send().await.unwrap();
            let status = r.status().as_u16();
            let body = r.text().await.unwrap();
            assert_ne!(status, 405, "{method} {path} is documented but not routed");
            assert!(
                !body.contains("\"code\":\"not_found\""),
                "{method} {path} is documented but not routed"
            );
            checked += 1;
        }
    }
    assert!(checked >= 14, "checked {checked} operations");
    // And an undocumented path is the fallback.
    let (status, body) = h.get_json("/api/v1/nope").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_needs_the_token() {
    let h = TestHost::start(Backend::Sqlite, |_| {}).await;
    let r = h.client.get(h.url("/api/v1/tenants")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers().get("www-authenticate").unwrap(), "Bearer");
    let r = h
        .client
        .get(h.url("/api/v1/tenants"))
        .bearer_auth("wrong-token-wrong-token")
        .send()
        .await
        .unwrap();
    assert_eq!(json(r).await.1["error"]["code"], "unauthorized");
    let r = h
        .admin(Method::GET, "/api/v1/tenants")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Health and the document stay public.
    assert_eq!(h.get("/healthz").await.0, 200);
    assert_eq!(h.get("/readyz").await.0, 200);

    let h = TestHost::start(Backend::Sqlite, |c| c.admin_token = None).await;
    let r = h
        .admin(Method::GET, "/api/v1/tenants")
        .send()
        .await
        .unwrap();
    let (status, body) = json(r).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("admin_disabled"))
    );
}

async fn tenant_tree_rules(backend: Backend) {
    let h = TestHost::start(backend, |_| {}).await;
    let create = |body: Value| h.admin(Method::POST, "/api/v1/tenants").json(&body).send();
    let county = serde_json::json!({"id": "qingshan", "kind": "county", "name_zh": "青山县", "name_en": "Qingshan"});
    assert_eq!(create(county.clone()).await.unwrap().status(), 201);
    let (status, body) = json(create(county).await.unwrap()).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("conflict"))
    );
    let cases = [
        (
            serde_json::json!({"id": "Bad Id", "kind": "county", "name_zh": "x", "name_en": "x"}),
            400,
            "invalid_request",
        ),
        (
            serde_json::json!({"id": "v", "kind": "village", "parent": "qingshan", "name_zh": "x", "name_en": "x"}),
            400,
            "invalid_request",
        ),
        (
            serde_json::json!({"id": "t", "kind": "township", "parent": "nowhere", "name_zh": "x", "name_en": "x"}),
            404,
            "tenant_not_found",
        ),
        (
            serde_json::json!({"id": "t", "kind": "township", "parent": "qingshan", "name_zh": "", "name_en": "x"}),
            400,
            "invalid_request",
        ),
        (
            serde_json::json!({"id": "t", "kind": "township", "parent": "qingshan", "name_zh": "x", "name_en": "x", "extra": 1}),
            400,
            "invalid_request",
        ),
        (
            serde_json::json!({"id": "t", "kind": "planet", "name_zh": "x", "name_en": "x"}),
            400,
            "invalid_request",
        ),
    ];
    for (body, status, code) in cases {
        let (got, answer) = json(create(body.clone()).await.unwrap()).await;
        assert_eq!(
            (got, answer["error"]["code"].as_str()),
            (status, Some(code)),
            "{body}"
        );
    }
    let r = h
        .admin(Method::POST, "/api/v1/tenants")
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let (_, list) = json(
        h.admin(Method::GET, "/api/v1/tenants")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        list.as_array().unwrap().len(),
        1,
        "nothing partial was created: {list}"
    );
}

async fn install_upgrade_suspend_uninstall(backend: Backend) {
    let h = TestHost::start(backend, |_| {}).await;
    h.village("dongcun").await;
    let upload = |bytes: Vec<u8>| {
        h.admin(
            Method::POST,
            "/api/v1/tenants/dongcun/plugins?grant=required",
        )
        .header("content-type", "application/wasm")
        .body(bytes)
        .send()
    };
    let hello = std::fs::read(HELLO).unwrap();
    let (status, report) = json(upload(hello.clone()).await.unwrap()).await;
    assert_eq!(status, 201, "{report}");
    assert_eq!(report["action"], "installed");
    assert_eq!(report["installation"]["metadata"]["id"], "hello");
    assert_eq!(
        report["installation"]["metadata"]["required"][0]["name"],
        "data"
    );
    let (status, report) = json(upload(hello).await.unwrap()).await;
    assert_eq!(
        (status, report["action"].as_str()),
        (200, Some("unchanged"))
    );

    // An upgrade reports the version it replaced.
    assert_eq!(
        json(upload(wat_plugin("widget", "1.0.0")).await.unwrap())
            .await
            .0,
        201
    );
    let (status, report) = json(upload(wat_plugin("widget", "1.1.0")).await.unwrap()).await;
    assert_eq!((status, report["action"].as_str()), (200, Some("upgraded")));
    assert_eq!(report["previous_version"], "1.0.0");
    assert_eq!(report["installation"]["version"], "1.1.0");

    // Not a component, or a component that is not a linli plugin.
    let (status, body) = json(upload(b"\0asm garbage".to_vec()).await.unwrap()).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (422, Some("invalid_component"))
    );
    let not_plugin = wat::parse_str("(component)").unwrap();
    let (status, body) = json(upload(not_plugin).await.unwrap()).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (422, Some("invalid_component")),
        "{body}"
    );

    let (_, list) = json(
        h.admin(Method::GET, "/api/v1/tenants/dongcun/plugins")
            .send()
            .await
            .unwrap(),
    )
    .await;
    let ids: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["plugin"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["hello", "widget"]);

    assert_eq!(h.get("/t/dongcun/p/hello/").await.0, 200);
    let r = h
        .admin(
            Method::POST,
            "/api/v1/tenants/dongcun/plugins/hello/suspend",
        )
        .json(&serde_json::json!({"reason": "维护 maintenance"}))
        .send()
        .await
        .unwrap();
    assert_eq!(json(r).await.1["status"], "suspended");
    let (status, body) = h.get_json("/t/dongcun/p/hello/").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (503, Some("plugin_suspended"))
    );
    assert_eq!(body["error"]["reason"], "维护 maintenance");
    let r = h
        .admin(Method::POST, "/api/v1/tenants/dongcun/plugins/hello/resume")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        h.get_json("/t/dongcun/p/hello/").await.1["visits"],
        2,
        "data survived suspension"
    );

    // Uninstall keeps data unless asked; reinstall finds it.
    let r = h
        .admin(Method::DELETE, "/api/v1/tenants/dongcun/plugins/hello")
        .send()
        .await
        .unwrap();
    assert_eq!(json(r).await.1["purged_keys"], 0);
    assert_eq!(
        h.get_json("/t/dongcun/p/hello/").await.1["error"]["code"],
        "plugin_not_installed"
    );
    h.install("dongcun", HELLO).await;
    assert_eq!(h.get_json("/t/dongcun/p/hello/").await.1["visits"], 3);
    let r = h
        .admin(
            Method::DELETE,
            "/api/v1/tenants/dongcun/plugins/hello?purge_data=true",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(json(r).await.1["purged_keys"], 1);
    h.install("dongcun", HELLO).await;
    assert_eq!(h.get_json("/t/dongcun/p/hello/").await.1["visits"], 1);
    let r = h
        .admin(Method::DELETE, "/api/v1/tenants/dongcun/plugins/nothing")
        .send()
        .await
        .unwrap();
    assert_eq!(json(r).await.1["error"]["code"], "plugin_not_installed");
    let r = h
        .admin(Method::GET, "/api/v1/tenants/nowhere/plugins")
        .send()
        .await
        .unwrap();
    assert_eq!(json(r).await.1["error"]["code"], "tenant_not_found");
}

on_both_backends!(tenant_tree_rules, install_upgrade_suspend_uninstall);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_over_the_component_limit_are_refused() {
    let h = TestHost::start(Backend::Sqlite, |c| c.limits.component_bytes = 100_000).await;
    h.village("dongcun").await;
    let r = h
        .admin(Method::POST, "/api/v1/tenants/dongcun/plugins")
        .body(std::fs::read(HELLO).unwrap())
        .send()
        .await
        .unwrap();
    let (status, body) = json(r).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (413, Some("component_too_large"))
    );
    // A rejected component leaves nothing behind in the data dir.
    let h2 = TestHost::start(Backend::Sqlite, |_| {}).await;
    h2.village("dongcun").await;
    let not_plugin = wat::parse_str("(component)").unwrap();
    assert!(
        h2.platform
            .install(
                &ROOT,
                "dongcun",
                &not_plugin,
                &linli::platform::GrantChoice::all()
            )
            .await
            .is_err()
    );
    assert_eq!(
        std::fs::read_dir(h2.dir.path().join("cache"))
            .unwrap()
            .count(),
        0
    );
    assert_eq!(
        std::fs::read_dir(h2.dir.path().join("components"))
            .unwrap()
            .count(),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_errors_and_request_ids() {
    let h = TestHost::start(Backend::Sqlite, |c| c.limits.hostcall_bytes = 1_000).await;
    h.village("dongcun").await;
    h.install("dongcun", HELLO).await;
    let cases = [
        ("/t/nowhere/p/hello/", 404, "tenant_not_found"),
        ("/t/dongcun/p/nothing/", 404, "plugin_not_installed"),
        ("/t/DONGCUN/p/hello/", 404, "plugin_not_installed"),
        ("/t/dongcun/p/hello/no/such/page", 404, "not_found"),
    ];
    for (path, status, code) in cases {
        let (got, body) = h.get_json(path).await;
        assert_eq!(
            (got, body["error"]["code"].as_str()),
            (status, Some(code)),
            "{path}: {body}"
        );
    }
    let r = h
        .client
        .post(h.url("/t/dongcun/p/hello/guestbook"))
        .body(vec![b'x'; 2_000])
        .send()
        .await
        .unwrap();
    assert_eq!(json(r).await.1["error"]["code"], "request_too_large");
    let r = h
        .client
        .post(h.url("/t/dongcun/p/hello/guestbook"))
        .json(&serde_json::json!({"name": "", "message": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = h
        .client
        .get(h.url("/t/dongcun/p/hello/"))
        .header("x-request-id", "trace-me-123")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers().get("x-request-id").unwrap(), "trace-me-123");
    let r = h
        .client
        .get(h.url("/t/dongcun/p/hello/"))
        .header("x-request-id", "bad id with spaces")
        .send()
        .await
        .unwrap();
    assert_ne!(
        r.headers().get("x-request-id").unwrap(),
        "bad id with spaces"
    );
    let metrics = h.get("/metrics").await.1;
    for name in [
        "linli_plugin_calls_total",
        "linli_plugin_call_seconds_bucket",
        "linli_plugin_instance_memory_bytes_bucket",
    ] {
        assert!(
            metrics.contains(&format!("{name}{{")),
            "{name} missing:\n{metrics}"
        );
    }
}
