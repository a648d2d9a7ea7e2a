//! Identity, sign-in, grants, assisted mode, the roster import and residents' rights, over
//! the HTTP API of a host seeded with the demo county (real SQLite or Postgres).

use reqwest::Method;
use serde_json::Value;

use linli::platform::{DEMO_PASSWORD, DEMO_TOTP_SECRET};
use linli_tests::{Backend, HELLO, HELLO_NEXT, SPY, TestHost, on_both_backends};

/// Demo people (see host/src/platform/demo.rs).
pub(crate) const ZHANG: &str = "13800000001"; // resident of dongcun
pub(crate) const LI: &str = "13800000003"; // elderly resident of dongcun, no password
pub(crate) const WANG: &str = "13800000002"; // resident of xicun
pub(crate) const GRID: &str = "13900000001"; // grid worker at dongcun
pub(crate) const STAFF: &str = "13900000002"; // community staff at dongcun
pub(crate) const SYSADMIN: &str = "13900000011"; // system admin at dongxi
pub(crate) const SECADMIN: &str = "13900000012"; // security admin at dongxi
pub(crate) const AUDITOR: &str = "13900000013"; // audit admin at qingshan

/// A host with the demo county seeded and hello + spy installed in both villages.
async fn demo(backend: Backend) -> TestHost {
    demo_with(backend, &[HELLO, SPY]).await
}

/// A host with the demo county seeded and these plugins installed in both villages.
pub(crate) async fn demo_with(backend: Backend, wasm: &[&str]) -> TestHost {
    demo_tweaked(backend, wasm, |_| {}).await
}

/// [`demo_with`], with the config adjusted first.
pub(crate) async fn demo_tweaked(
    backend: Backend,
    wasm: &[&str],
    tweak: impl FnOnce(&mut linli::config::Config),
) -> TestHost {
    let plugins = tempfile::tempdir().unwrap();
    for path in wasm {
        let name = std::path::Path::new(path).file_name().unwrap();
        std::fs::copy(path, plugins.path().join(name)).unwrap();
    }
    let dir = plugins.path().to_path_buf();
    let h = TestHost::start(backend, move |c| {
        c.seed_demo = true;
        c.demo_plugins_dir = Some(dir);
        tweak(c);
    })
    .await;
    assert!(h.platform.seed_demo().await.unwrap());
    drop(plugins);
    h
}

pub(crate) async fn call(
    h: &TestHost,
    token: Option<&str>,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut r = h.client.request(method, h.url(path));
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    if let Some(b) = body {
        r = r.json(&b);
    }
    let r = r.send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

pub(crate) async fn get(h: &TestHost, token: &str, path: &str) -> (u16, Value) {
    call(h, Some(token), Method::GET, path, None).await
}

/// Sign in with the demo password, passing TOTP for admins.
pub(crate) async fn sign_in(h: &TestHost, phone: &str) -> String {
    let body = serde_json::json!({ "phone": phone, "password": DEMO_PASSWORD });
    let (status, r) = call(h, None, Method::POST, "/api/v1/auth/password", Some(body)).await;
    assert_eq!(status, 200, "{r}");
    match r["stage"].as_str().unwrap() {
        "session" => r["token"].as_str().unwrap().to_owned(),
        "totp_required" => {
            // Each code signs in once: a second sign-in within the same 30 s step gives the
            // next step's code, which the host accepts as clock skew.
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs();
            let mut last = Value::Null;
            for at in [now, now + 30] {
                let code = linli::identity::auth::totp_at(DEMO_TOTP_SECRET, at).unwrap();
                let body = serde_json::json!({ "challenge": r["challenge"], "code": code });
                let (status, r) =
                    call(h, None, Method::POST, "/api/v1/auth/totp", Some(body)).await;
                if status == 200 {
                    assert_eq!(r["stage"], "session");
                    return r["token"].as_str().unwrap().to_owned();
                }
                assert_eq!(status, 401, "{r}");
                last = r;
            }
            panic!("TOTP refused twice (a third admin sign-in within 30 s?): {last}")
        }
        other => panic!("stage {other}"),
    }
}

/// What a test SMS gateway received.
pub(crate) type SmsInbox = std::sync::Arc<std::sync::Mutex<Vec<Value>>>;

/// A local SMS gateway (the HTTP sender's peer): its URL, and what it receives.
pub(crate) async fn sms_gateway() -> (String, SmsInbox) {
    let inbox = SmsInbox::default();
    let sink = inbox.clone();
    let gateway = axum::Router::new().route(
        "/sms",
        axum::routing::post(move |axum::Json(v): axum::Json<Value>| {
            let sink = sink.clone();
            async move {
                sink.lock().unwrap().push(v);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/sms", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, gateway).await });
    (url, inbox)
}

/// What an SMS gateway received, once it holds at least `n` messages (the host sends after
/// answering, so they arrive a moment later).
pub(crate) async fn sms_received(inbox: &SmsInbox, n: usize) -> Vec<Value> {
    for _ in 0..200 {
        let got = inbox.lock().unwrap().clone();
        if got.len() >= n {
            return got;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the SMS gateway did not receive {n} messages")
}

pub(crate) async fn person_id(h: &TestHost, phone: &str) -> String {
    linli::storage::people::get_by_phone(&h.platform.db, phone)
        .await
        .unwrap()
        .unwrap()
        .id
}

/// The "done when": masked by default, full after a grant (audited with the plugin),
/// masked again after the revoke; the chain verifies, and fails after an edit.
async fn masked_until_granted(backend: Backend) {
    let h = demo(backend).await;
    let zhang = sign_in(&h, ZHANG).await;
    let (status, me) = get(&h, &zhang, "/t/dongcun/p/hello/me").await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["profile"]["name"]["value"], "张*");
    assert_eq!(me["profile"]["phone"]["value"], "138****0001");
    assert_eq!(me["profile"]["id_number"]["value"], "3301**********0028");
    assert_eq!(me["profile"]["phone"]["masked"], true);
    assert_eq!(
        me["tenant_path"],
        serde_json::json!(["qingshan", "dongxi", "dongcun"])
    );
    assert_eq!(me["roles"], serde_json::json!(["resident"]));
    let (_, who) = get(&h, &zhang, "/api/v1/me").await;
    let place: Vec<&str> = who["place"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name_zh"].as_str().unwrap())
        .collect();
    assert_eq!(place, ["青山县", "东溪镇", "东村"], "{who}");

    // The security admin of the township grants identity.phone.
    let sec = sign_in(&h, SECADMIN).await;
    let (status, inst) = call(
        &h,
        Some(&sec),
        Method::PUT,
        "/api/v1/tenants/dongcun/plugins/hello/grants/identity.phone",
        None,
    )
    .await;
    assert_eq!(status, 200, "{inst}");
    assert!(
        inst["grants"]
            .as_array()
            .unwrap()
            .contains(&"identity.phone".into())
    );
    let (_, me) = get(&h, &zhang, "/t/dongcun/p/hello/me").await;
    assert_eq!(me["profile"]["phone"]["value"], ZHANG);
    assert_eq!(me["profile"]["phone"]["masked"], false);
    assert_eq!(
        me["profile"]["id_number"]["masked"], true,
        "only the granted field"
    );

    // The audit record names the plugin, the caller and whose data, with the full field.
    let zhang_id = person_id(&h, ZHANG).await;
    let auditor = sign_in(&h, AUDITOR).await;
    let (status, records) = get(
        &h,
        &auditor,
        &format!("/api/v1/audit?subject={zhang_id}&action=identity.get-profile"),
    )
    .await;
    assert_eq!(status, 200, "{records}");
    let last = records.as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["plugin"], "hello");
    assert_eq!(last["actor"], zhang_id.as_str());
    assert_eq!(last["tenant"], "dongcun");
    let detail = &last["detail"];
    assert_eq!(detail["full"], serde_json::json!(["phone"]));

    // She sees the same in "my data": newest first, with the plugin's title and her name,
    // paging back with `before`.
    let (status, uses) = get(&h, &zhang, "/api/v1/me/data-use?newest=true&limit=2").await;
    assert_eq!(status, 200, "{uses}");
    let uses = uses.as_array().unwrap().clone();
    assert_eq!(uses.len(), 2);
    assert_eq!(uses[0]["seq"], last["seq"]);
    assert!(uses[0]["seq"].as_i64() > uses[1]["seq"].as_i64());
    assert_eq!(uses[0]["plugin_title_zh"], "你好邻里");
    assert_eq!(uses[0]["actor_name"], "张秀英");
    assert_eq!(uses[0]["detail"]["full"], serde_json::json!(["phone"]));
    let (_, older) = get(
        &h,
        &zhang,
        &format!(
            "/api/v1/me/data-use?newest=true&limit=200&before={}",
            uses[1]["seq"]
        ),
    )
    .await;
    let older = older.as_array().unwrap();
    assert!(!older.is_empty());
    assert!(
        older
            .iter()
            .all(|u| u["seq"].as_i64() < uses[1]["seq"].as_i64())
    );
    let (_, oldest) = get(&h, &zhang, "/api/v1/me/data-use?limit=1").await;
    assert_eq!(
        oldest[0]["seq"],
        older.last().unwrap()["seq"],
        "oldest first by default"
    );

    // Revoking hides it again on the next call.
    let (status, _) = call(
        &h,
        Some(&sec),
        Method::DELETE,
        "/api/v1/tenants/dongcun/plugins/hello/grants/identity.phone",
        None,
    )
    .await;
    assert_eq!(status, 200);
    let (_, me) = get(&h, &zhang, "/t/dongcun/p/hello/me").await;
    assert_eq!(me["profile"]["phone"]["value"], "138****0001");

    // The chain verifies; an edited record breaks it.
    let (status, v) = get(&h, &auditor, "/api/v1/audit/verify").await;
    assert_eq!((status, &v["intact"]), (200, &Value::Bool(true)), "{v}");
    let seq = last["seq"].as_i64().unwrap();
    sqlx::query("UPDATE audit_log SET subject = 'p-someone-else' WHERE seq = $1")
        .bind(seq)
        .execute(h.platform.db.pool())
        .await
        .unwrap();
    let (_, v) = get(&h, &auditor, "/api/v1/audit/verify").await;
    assert_eq!(v["intact"], false);
    assert_eq!(v["broken_at"], seq);
}

/// Lockout after repeated failures, tokens dead after logout and rotation.
async fn sessions_and_lockout(backend: Backend) {
    let h = demo(backend).await;
    let wrong = serde_json::json!({ "phone": ZHANG, "password": "not-the-password-1" });
    for _ in 0..4 {
        let (status, r) = call(
            &h,
            None,
            Method::POST,
            "/api/v1/auth/password",
            Some(wrong.clone()),
        )
        .await;
        assert_eq!(
            (status, r["error"]["code"].as_str()),
            (401, Some("unauthenticated"))
        );
    }
    let (status, r) = call(&h, None, Method::POST, "/api/v1/auth/password", Some(wrong)).await;
    assert_eq!(
        (status, r["error"]["code"].as_str()),
        (423, Some("account_locked")),
        "{r}"
    );
    let right = serde_json::json!({ "phone": ZHANG, "password": DEMO_PASSWORD });
    let (status, _) = call(
        &h,
        None,
        Method::POST,
        "/api/v1/auth/password",
        Some(right.clone()),
    )
    .await;
    assert_eq!(status, 423, "locked even with the right password");
    // Unknown phones get the same answer as wrong passwords.
    let nobody = serde_json::json!({ "phone": "13899999999", "password": DEMO_PASSWORD });
    let (status, _) = call(
        &h,
        None,
        Method::POST,
        "/api/v1/auth/password",
        Some(nobody),
    )
    .await;
    assert_eq!(status, 401);

    // The security admin unlocks; the resident signs in.
    let sec = sign_in(&h, SECADMIN).await;
    let zhang_id = person_id(&h, ZHANG).await;
    let (status, _) = call(
        &h,
        Some(&sec),
        Method::POST,
        &format!("/api/v1/people/{zhang_id}/unlock"),
        None,
    )
    .await;
    assert_eq!(status, 204);
    let token = sign_in(&h, ZHANG).await;
    let (status, me) = get(&h, &token, "/api/v1/me").await;
    assert_eq!(
        (status, me["person"]["id"].as_str()),
        (200, Some(zhang_id.as_str()))
    );

    // Rotation: the old token stops working, the new one works.
    let (status, r) = call(&h, Some(&token), Method::POST, "/api/v1/auth/rotate", None).await;
    assert_eq!(status, 200);
    let rotated = r["token"].as_str().unwrap().to_owned();
    assert_eq!(get(&h, &token, "/api/v1/me").await.0, 401);
    assert_eq!(get(&h, &rotated, "/api/v1/me").await.0, 200);

    // Logout: the token is refused everywhere, the gateway included.
    let (status, _) = call(
        &h,
        Some(&rotated),
        Method::POST,
        "/api/v1/auth/logout",
        None,
    )
    .await;
    assert_eq!(status, 204);
    let (status, r) = get(&h, &rotated, "/api/v1/me").await;
    assert_eq!(
        (status, r["error"]["code"].as_str()),
        (401, Some("session_invalid"))
    );
    assert_eq!(get(&h, &rotated, "/t/dongcun/p/hello/me").await.0, 401);
    // Anonymous gateway calls still work; the plugin sees no caller.
    let (status, r) = call(&h, None, Method::GET, "/t/dongcun/p/spy/whoami", None).await;
    assert_eq!((status, &r["id"]), (200, &Value::Null), "{r}");
}

/// A TOTP code signs in once: the same code again, or one of an earlier step, is refused
/// even with a correct password; the next step's code is taken.
async fn totp_codes_sign_in_once(backend: Backend) {
    let h = demo(backend).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let code = |at: u64| linli::identity::auth::totp_at(DEMO_TOTP_SECRET, at).unwrap();
    let try_code = |code: String| {
        let h = &h;
        async move {
            let body = serde_json::json!({ "phone": SYSADMIN, "password": DEMO_PASSWORD });
            let (_, r) = call(h, None, Method::POST, "/api/v1/auth/password", Some(body)).await;
            assert_eq!(r["stage"], "totp_required", "{r}");
            let body = serde_json::json!({ "challenge": r["challenge"], "code": code });
            call(h, None, Method::POST, "/api/v1/auth/totp", Some(body)).await
        }
    };
    let (status, r) = try_code(code(now)).await;
    assert_eq!((status, &r["stage"]), (200, &Value::from("session")), "{r}");
    let (status, r) = try_code(code(now)).await;
    assert_eq!(status, 401, "{r}");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("used already"),
        "{r}"
    );
    let (status, _) = try_code(code(now - 30)).await;
    assert_eq!(status, 401, "an earlier step's code");
    let (status, r) = try_code(code(now + 30)).await;
    assert_eq!((status, &r["stage"]), (200, &Value::from("session")), "{r}");
    // The refusals were counted as second-factor failures (apart from the password's, and
    // not reset by the correct passwords given in between — only by the codes that passed)
    // and kept out of the audit chain, which holds the two sign-ins.
    let sys_id = person_id(&h, SYSADMIN).await;
    let records = linli::storage::audit::query(
        &h.platform.db,
        &linli::storage::audit::Query {
            action_prefix: Some("auth.sign-in".into()),
            subject: Some(sys_id),
            limit: 100,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let outcomes: Vec<_> = records.iter().map(|r| r.outcome.as_str()).collect();
    assert_eq!(outcomes, ["ok", "ok"], "{outcomes:?}");
}

/// Roles hold in their subtree only; nobody escalates; the three admins stay apart; admins
/// need TOTP.
async fn roles_and_escalation(backend: Backend) {
    let h = demo(backend).await;
    // Admins get a challenge, and a wrong code is refused.
    let body = serde_json::json!({ "phone": SYSADMIN, "password": DEMO_PASSWORD });
    let (_, r) = call(&h, None, Method::POST, "/api/v1/auth/password", Some(body)).await;
    assert_eq!(r["stage"], "totp_required");
    let good = linli::identity::auth::totp_now(DEMO_TOTP_SECRET).unwrap();
    let bad = format!("{:06}", (good.parse::<u32>().unwrap() + 1) % 1_000_000);
    let (status, _) = call(
        &h,
        None,
        Method::POST,
        "/api/v1/auth/totp",
        Some(serde_json::json!({ "challenge": r["challenge"], "code": bad })),
    )
    .await;
    assert_eq!(status, 401);
    // The challenge is not a session.
    assert_eq!(
        get(&h, r["challenge"].as_str().unwrap(), "/api/v1/me")
            .await
            .0,
        401
    );

    let sys = sign_in(&h, SYSADMIN).await;
    let grid = sign_in(&h, GRID).await;
    let sec = sign_in(&h, SECADMIN).await;
    let zhang = sign_in(&h, ZHANG).await;
    let hello = std::fs::read(HELLO).unwrap();
    let install = |token: String, tenant: &'static str| {
        let h = &h;
        let hello = hello.clone();
        async move {
            let r = h
                .client
                .post(h.url(&format!("/api/v1/tenants/{tenant}/plugins?grant=required")))
                .bearer_auth(token)
                .body(hello)
                .send()
                .await
                .unwrap();
            r.status().as_u16()
        }
    };
    // The township's system admin manages plugins in the township, not at the county.
    assert_eq!(
        install(sys.clone(), "dongcun").await,
        200,
        "already installed: unchanged"
    );
    assert_eq!(install(sys.clone(), "qingshan").await, 403);
    // Neither a grid worker, a security admin, nor a resident installs anything.
    assert_eq!(install(grid.clone(), "dongcun").await, 403);
    assert_eq!(install(sec.clone(), "dongcun").await, 403);
    assert_eq!(install(zhang.clone(), "dongcun").await, 403);
    // Grid workers cannot read the audit log or grant capabilities.
    assert_eq!(get(&h, &grid, "/api/v1/audit").await.0, 403);
    let (status, _) = call(
        &h,
        Some(&grid),
        Method::PUT,
        "/api/v1/tenants/dongcun/plugins/hello/grants/identity.phone",
        None,
    )
    .await;
    assert_eq!(status, 403);
    // Nobody gives themself a role; the security admin cannot become system admin too, nor
    // give roles above the township.
    let sec_id = person_id(&h, SECADMIN).await;
    let sys_id = person_id(&h, SYSADMIN).await;
    let role = |tenant: &str, role: &str| serde_json::json!({ "tenant": tenant, "role": role });
    let (status, _) = call(
        &h,
        Some(&sec),
        Method::POST,
        &format!("/api/v1/people/{sec_id}/roles"),
        Some(role("dongxi", "system-admin")),
    )
    .await;
    assert_eq!(status, 403);
    // The three admin roles are the county root's to give, and even the root cannot make
    // one person two of them.
    let (status, r) = call(
        &h,
        Some(&sec),
        Method::POST,
        &format!("/api/v1/people/{sys_id}/roles"),
        Some(role("dongcun", "audit-admin")),
    )
    .await;
    assert_eq!(
        (status, r["error"]["code"].as_str()),
        (403, Some("forbidden")),
        "{r}"
    );
    let (status, r) = call(
        &h,
        Some(linli_tests::ADMIN_TOKEN),
        Method::POST,
        &format!("/api/v1/people/{sys_id}/roles"),
        Some(role("dongcun", "audit-admin")),
    )
    .await;
    assert_eq!(
        (status, r["error"]["code"].as_str()),
        (409, Some("conflict")),
        "{r}"
    );
    let grid_id = person_id(&h, GRID).await;
    let (status, _) = call(
        &h,
        Some(&sec),
        Method::POST,
        &format!("/api/v1/people/{grid_id}/roles"),
        Some(role("qingshan", "community-staff")),
    )
    .await;
    assert_eq!(status, 403, "above the security admin's township");
    let (status, r) = call(
        &h,
        Some(&sec),
        Method::POST,
        &format!("/api/v1/people/{grid_id}/roles"),
        Some(role("dongcun", "community-staff")),
    )
    .await;
    assert_eq!((status, &r["changed"]), (200, &Value::Bool(true)), "{r}");
    // Plugins see roles at the tenant the request is for.
    let grid = sign_in(&h, GRID).await;
    let (_, who) = get(&h, &grid, "/t/dongcun/p/spy/whoami").await;
    assert_eq!(who["grid_worker"], true);
    assert_eq!(
        who["roles"],
        serde_json::json!(["community-staff", "grid-worker"])
    );
}

/// Nothing of another village reaches a person or a plugin of this one.
async fn cross_tenant(backend: Backend) {
    let h = demo(backend).await;
    let wang = sign_in(&h, WANG).await; // xicun
    let staff = sign_in(&h, STAFF).await; // dongcun community staff
    let zhang_id = person_id(&h, ZHANG).await;
    let wang_id = person_id(&h, WANG).await;

    // A xicun resident cannot use dongcun's plugins as themself.
    let (status, r) = get(&h, &wang, "/t/dongcun/p/hello/me").await;
    assert_eq!(
        (status, r["error"]["code"].as_str()),
        (403, Some("forbidden"))
    );
    // Through xicun's spy they cannot read a dongcun resident, nor list them.
    let (status, r) = get(&h, &wang, &format!("/t/xicun/p/spy/profile?id={zhang_id}")).await;
    assert_eq!(
        (status, r["error"]["code"].as_str()),
        (404, Some("not_found")),
        "{r}"
    );
    let (_, r) = get(&h, &wang, "/t/xicun/p/spy/residents").await;
    assert_eq!(r["ids"], serde_json::json!([wang_id]));
    // Dongcun's spy lists dongcun residents only (both of them, across pages).
    let (_, r) = get(&h, &staff, "/t/dongcun/p/spy/residents").await;
    let ids = r["ids"].as_array().unwrap();
    assert_eq!(ids.len(), 2, "{r}");
    assert!(!ids.contains(&Value::String(wang_id.clone())));
    // Counts stay inside the village too; an age filter needs identity.birth-date.
    let (_, r) = get(&h, &wang, "/t/xicun/p/spy/count").await;
    assert_eq!(
        (r["residents"].as_u64(), r["households"].as_u64()),
        (Some(1), Some(1)),
        "{r}"
    );
    let (_, r) = get(&h, &staff, "/t/dongcun/p/spy/count").await;
    assert_eq!(
        (r["residents"].as_u64(), r["households"].as_u64()),
        (Some(2), Some(2)),
        "{r}"
    );
    let (status, r) = get(&h, &staff, "/t/dongcun/p/spy/count?born=1945-01-01").await;
    assert_eq!(
        (status, r["error"]["code"].as_str()),
        (403, Some("denied")),
        "{r}"
    );
    let (status, _) = call(
        &h,
        Some(linli_tests::ADMIN_TOKEN),
        Method::PUT,
        "/api/v1/tenants/dongcun/plugins/spy/grants/identity.birth-date",
        None,
    )
    .await;
    assert_eq!(status, 200);
    let (_, r) = get(&h, &staff, "/t/dongcun/p/spy/count?born=1945-01-01").await;
    assert_eq!(r["residents"].as_u64(), Some(1), "{r}");
    let (status, r) = get(&h, &staff, "/t/dongcun/p/spy/count?born=1945-13-01").await;
    assert_eq!(
        (status, r["error"]["code"].as_str()),
        (400, Some("invalid")),
        "{r}"
    );
    h.platform
        .set_grant(
            &linli_tests::ROOT,
            "dongcun",
            "spy",
            "identity.birth-date",
            false,
        )
        .await
        .unwrap();
    // A sensitive tag filter needs identity.tags.
    let (status, r) = get(&h, &staff, "/t/dongcun/p/spy/residents?tag=disabled").await;
    assert_eq!(
        (status, r["error"]["code"].as_str()),
        (403, Some("denied")),
        "{r}"
    );
    // Hostile ids are refused, not looked up.
    let long = "p-".to_owned() + &"x".repeat(100);
    let (status, _) = get(&h, &staff, &format!("/t/dongcun/p/spy/profile?id={long}")).await;
    assert_eq!(status, 400);

    // Admin API: the dongcun staff member sees dongcun's people (masked), not xicun's.
    let (status, r) = get(&h, &staff, "/api/v1/tenants/dongcun/people?kind=resident").await;
    assert_eq!(status, 200, "{r}");
    let people = r["people"].as_array().unwrap();
    assert_eq!(people.len(), 2);
    assert!(
        people
            .iter()
            .all(|p| p["phone"].as_str().unwrap().contains("****"))
    );
    assert!(
        people
            .iter()
            .all(|p| !p["tags"].as_array().unwrap().contains(&"disabled".into()))
    );
    assert_eq!(get(&h, &staff, "/api/v1/tenants/xicun/people").await.0, 403);
    assert_eq!(
        get(&h, &staff, &format!("/api/v1/people/{wang_id}"))
            .await
            .0,
        404
    );
    let (status, full) = get(&h, &staff, &format!("/api/v1/people/{zhang_id}")).await;
    assert_eq!(
        (status, full["phone"].as_str()),
        (200, Some(ZHANG)),
        "people managers see full"
    );
    assert_eq!(
        get(&h, &staff, "/api/v1/tenants/xicun/plugins").await.0,
        403
    );
    let (status, _) = call(
        &h,
        Some(&staff),
        Method::POST,
        "/api/v1/tenants/xicun/plugins/hello/suspend",
        None,
    )
    .await;
    assert_eq!(status, 403);
    assert_eq!(
        get(&h, &staff, &format!("/api/v1/people/{wang_id}/export"))
            .await
            .0,
        404
    );

    // A plugin without the identity grant gets the deny stub.
    let root = linli_tests::ROOT;
    h.platform
        .set_grant(&root, "dongcun", "spy", "identity", false)
        .await
        .unwrap();
    let (status, r) = get(&h, &staff, "/t/dongcun/p/spy/whoami").await;
    assert_eq!(
        (status, r["error"]["code"].as_str()),
        (403, Some("denied")),
        "{r}"
    );
}

/// A grid worker acts for an elder without a smartphone: plugins see both, the elder is
/// told, the audit log marks it assisted.
async fn assisted_mode(backend: Backend) {
    let h = demo(backend).await;
    let grid = sign_in(&h, GRID).await;
    let li_id = person_id(&h, LI).await;
    let grid_id = person_id(&h, GRID).await;
    let wang_id = person_id(&h, WANG).await;
    let start = |resident: &str, reason: &str, minutes: u32| serde_json::json!({ "resident": resident, "reason": reason, "minutes": minutes });
    let (status, _) = call(
        &h,
        Some(&grid),
        Method::POST,
        "/api/v1/assist",
        Some(start(&li_id, " ", 30)),
    )
    .await;
    assert_eq!(status, 400, "a reason is required");
    let (status, _) = call(
        &h,
        Some(&grid),
        Method::POST,
        "/api/v1/assist",
        Some(start(&li_id, "代缴医保", 100_000)),
    )
    .await;
    assert_eq!(status, 400, "over auth.assist_max_minutes");
    let (status, _) = call(
        &h,
        Some(&grid),
        Method::POST,
        "/api/v1/assist",
        Some(start(&wang_id, "代办", 30)),
    )
    .await;
    assert_eq!(
        status, 404,
        "not the grid worker's village: answered as nobody"
    );
    // By phone, too — and a phone outside the grid worker's places tells nothing.
    let (status, r) = call(
        &h,
        Some(&grid),
        Method::POST,
        "/api/v1/assist",
        Some(start(WANG, "代办", 30)),
    )
    .await;
    assert_eq!(status, 404, "{r}");
    let (status, r) = call(
        &h,
        Some(&grid),
        Method::POST,
        "/api/v1/assist",
        Some(start(LI, "代缴医保", 30)),
    )
    .await;
    assert_eq!(status, 200, "{r}");
    let (_, who) = get(&h, r["token"].as_str().unwrap(), "/t/dongcun/p/spy/whoami").await;
    assert_eq!(who["id"], li_id.as_str(), "the elder found by her phone");
    let (status, r) = call(
        &h,
        Some(&grid),
        Method::POST,
        "/api/v1/assist",
        Some(start(&li_id, "代缴医保", 30)),
    )
    .await;
    assert_eq!(status, 200, "{r}");
    let assisted = r["token"].as_str().unwrap().to_owned();

    let (_, who) = get(&h, &assisted, "/t/dongcun/p/spy/whoami").await;
    assert_eq!(who["id"], li_id.as_str());
    assert_eq!(who["assistant"], grid_id.as_str());
    assert_eq!(
        who["roles"],
        serde_json::json!(["resident"]),
        "no staff powers while assisting"
    );
    let (_, me) = get(&h, &assisted, "/t/dongcun/p/hello/me").await;
    assert_eq!(me["assistant"], "刘*");
    assert_eq!(me["profile"]["name"]["value"], "李*");
    // No admin powers in an assisted session, and no download of the elder's full record.
    assert_eq!(
        get(&h, &assisted, "/api/v1/tenants/dongcun/people").await.0,
        403
    );
    let (status, r) = get(&h, &assisted, "/api/v1/me/export").await;
    assert_eq!(status, 403, "{r}");
    assert!(r.to_string().contains("assisted mode"), "{r}");
    // "My data" in the session is the elder's: her data's uses, the assistant named.
    let (status, uses) = get(&h, &assisted, "/api/v1/me/data-use?newest=true").await;
    assert_eq!(status, 200, "{uses}");
    let read = uses
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["action"] == "identity.get-profile")
        .expect("her profile read, listed");
    assert_eq!(read["subject"], li_id.as_str());
    assert_eq!(read["assistant_name"], "刘网格");

    // The elder's inbox says so.
    let inbox = linli::storage::inbox::list(&h.platform.db, &li_id, 10)
        .await
        .unwrap();
    assert_eq!(inbox.len(), 2, "one notice for each assisted session");
    assert!(
        inbox.iter().all(|m| m.body_zh.contains("代缴医保")),
        "{inbox:?}"
    );
    // Every action is audited as assisted.
    let records = linli::storage::audit::query(
        &h.platform.db,
        &linli::storage::audit::Query {
            subject: Some(li_id.clone()),
            limit: 100,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let profile = records
        .iter()
        .find(|r| r.action == "identity.get-profile")
        .expect("profile read audited");
    assert_eq!(profile.actor, li_id);
    assert_eq!(profile.assistant.as_deref(), Some(grid_id.as_str()));
    assert!(
        records
            .iter()
            .any(|r| r.action == "assist.start" && r.actor == grid_id)
    );
    // Ending it kills the token.
    let (status, _) = call(
        &h,
        Some(&assisted),
        Method::POST,
        "/api/v1/auth/logout",
        None,
    )
    .await;
    assert_eq!(status, 204);
    assert_eq!(get(&h, &assisted, "/t/dongcun/p/spy/whoami").await.0, 401);
}

/// The roster import: all rows or none, errors by row, re-import updates.
async fn roster_import(backend: Backend) {
    let h = demo(backend).await;
    let staff = sign_in(&h, STAFF).await;
    let import = |csv: &'static str| {
        let h = &h;
        let staff = staff.clone();
        async move {
            let r = h
                .client
                .post(h.url("/api/v1/tenants/dongcun/people/import"))
                .bearer_auth(staff)
                .header("content-type", "text/csv")
                .body(csv)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap())
        }
    };
    let count = || async {
        let (_, r) = get(
            &h,
            &staff,
            "/api/v1/tenants/dongcun/people?kind=resident&limit=500",
        )
        .await;
        r["people"].as_array().unwrap().len()
    };
    let before = count().await;
    let bad = "姓名,手机号,身份证号,所属\n赵一,13700000001,,dongcun-1\n,13700000002,,\n钱二,12345,,\n孙三,13700000004,,xicun\n";
    let (status, r) = import(bad).await;
    assert_eq!(status, 422, "{r}");
    assert_eq!(r["imported"], false);
    let rows: Vec<(i64, &str)> = r["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["row"].as_i64().unwrap(), e["field"].as_str().unwrap()))
        .collect();
    assert_eq!(rows, vec![(3, "name"), (4, "phone"), (5, "tenant")]);
    assert_eq!(count().await, before, "nothing partial");

    let good = "姓名,手机号,身份证号,住址,标签\n赵一,13700000001,,东村一组1号,elderly\n钱二,13700000002,110105194912310021,,\n";
    let (status, r) = import(good).await;
    assert_eq!(status, 422, "bad check digit: {r}");
    let good = "姓名,手机号,身份证号,住址,标签\n赵一,13700000001,,东村一组1号,elderly\n钱二,13700000002,11010519491231002X,,\n";
    let (status, r) = import(good).await;
    assert_eq!((status, r["created"].as_i64()), (200, Some(2)), "{r}");
    assert_eq!(count().await, before + 2);
    let again = "姓名,手机号,身份证号,住址,标签\n赵一,13700000001,,东村一组9号,elderly\n钱二,13700000002,11010519491231002X,,\n";
    let (_, r) = import(again).await;
    assert_eq!(
        (
            r["created"].as_i64(),
            r["updated"].as_i64(),
            r["unchanged"].as_i64()
        ),
        (Some(0), Some(1), Some(1)),
        "{r}"
    );
    assert_eq!(
        count().await,
        before + 2,
        "re-import updates, never duplicates"
    );
    // A grid worker may read people but not import them.
    let grid = sign_in(&h, GRID).await;
    let r = h
        .client
        .post(h.url("/api/v1/tenants/dongcun/people/import"))
        .bearer_auth(grid)
        .body(good)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
}

/// Export everything held about a resident (plugins' person-keyed data included); erase on
/// request, keeping the audit trail intact.
async fn residents_rights(backend: Backend) {
    let h = demo(backend).await;
    let zhang = sign_in(&h, ZHANG).await;
    let zhang_id = person_id(&h, ZHANG).await;
    let r = h
        .client
        .post(h.url("/t/dongcun/p/spy/remember"))
        .bearer_auth(&zhang)
        .body("喜欢下棋")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let r = h
        .client
        .get(h.url("/api/v1/me/export"))
        .bearer_auth(&zhang)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .contains("attachment")
    );
    let doc: Value = r.json().await.unwrap();
    assert_eq!(doc["person"]["phone"], ZHANG);
    assert_eq!(doc["plugin_data"]["dongcun/spy"][0]["value"], "喜欢下棋");
    assert!(
        doc["audit"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["action"] == "auth.sign-in")
    );

    // The security admin erases the resident.
    let sec = sign_in(&h, SECADMIN).await;
    let (status, r) = call(
        &h,
        Some(&sec),
        Method::POST,
        &format!("/api/v1/people/{zhang_id}/erase"),
        None,
    )
    .await;
    assert_eq!(
        (status, r["plugin_keys_deleted"].as_i64()),
        (200, Some(1)),
        "{r}"
    );
    assert_eq!(get(&h, &zhang, "/api/v1/me").await.0, 401, "sessions end");
    let p = linli::storage::people::get(&h.platform.db, &zhang_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (p.phone, p.id_number, p.status.as_str()),
        (None, None, "erased")
    );
    let keys = linli::storage::kv::across_scopes(&h.platform.db, &format!("r/{zhang_id}/"))
        .await
        .unwrap();
    assert!(keys.is_empty());
    assert_eq!(
        h.platform.verify_audit(&linli_tests::ROOT).await.unwrap(),
        linli::storage::audit::Verdict::Intact {
            records: h
                .platform
                .audit_records(
                    &linli_tests::ROOT,
                    linli::storage::audit::Query {
                        limit: 1000,
                        ..Default::default()
                    }
                )
                .await
                .unwrap()
                .len() as u64
        }
    );
}

/// Phone codes through the HTTP SMS sender to a real (local) gateway: one use each.
async fn sms_code_sign_in(backend: Backend) {
    let (url, inbox) = sms_gateway().await;

    let plugins = tempfile::tempdir().unwrap();
    std::fs::copy(HELLO, plugins.path().join("hello.wasm")).unwrap();
    let dir = plugins.path().to_path_buf();
    let h = TestHost::start(backend, move |c| {
        c.seed_demo = true;
        c.demo_plugins_dir = Some(dir);
        c.auth.sms = linli::config::SmsConfig::Http {
            url,
            token: Some("gw-token".into()),
            template: Some("SMS_1".into()),
        };
    })
    .await;
    h.platform.seed_demo().await.unwrap();
    let send = serde_json::json!({ "phone": LI });
    let (status, _) = call(
        &h,
        None,
        Method::POST,
        "/api/v1/auth/code/send",
        Some(send.clone()),
    )
    .await;
    assert_eq!(status, 202);
    let (status, r) = call(&h, None, Method::POST, "/api/v1/auth/code/send", Some(send)).await;
    assert_eq!(
        (status, r["error"]["code"].as_str()),
        (429, Some("too_many_requests")),
        "resend throttled"
    );
    let sent = sms_received(&inbox, 1).await;
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0]["phone"], LI);
    let code = sent[0]["code"].as_str().unwrap().to_owned();
    let body = serde_json::json!({ "phone": LI, "code": code });
    let (status, r) = call(
        &h,
        None,
        Method::POST,
        "/api/v1/auth/code",
        Some(body.clone()),
    )
    .await;
    assert_eq!(status, 200, "{r}");
    let token = r["token"].as_str().unwrap();
    let (_, me) = get(&h, token, "/t/dongcun/p/hello/me").await;
    assert_eq!(me["profile"]["name"]["value"], "李*");
    let (status, _) = call(&h, None, Method::POST, "/api/v1/auth/code", Some(body)).await;
    assert_eq!(status, 401, "a code works once");
    // Codes to unknown phones are accepted and never sent.
    let (status, _) = call(
        &h,
        None,
        Method::POST,
        "/api/v1/auth/code/send",
        Some(serde_json::json!({ "phone": "13811112222" })),
    )
    .await;
    assert_eq!(status, 202);
    assert_eq!(inbox.lock().unwrap().len(), 1);
}

/// Installing needs the required grants; an upgrade that asks for more shows the difference.
async fn grants_on_install(backend: Backend) {
    let h = TestHost::start(backend, |_| {}).await;
    h.village("dongcun").await;
    let bytes = std::fs::read(HELLO).unwrap();
    let install = |q: &'static str| {
        h.admin(Method::POST, &format!("/api/v1/tenants/dongcun/plugins{q}"))
            .body(bytes.clone())
            .send()
    };
    let r = install("").await.unwrap();
    assert_eq!(r.status(), 422);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "grants_required");
    assert_eq!(
        body["error"]["detail"]["missing_required"],
        serde_json::json!(["data"])
    );
    let purposes = body["error"]["detail"]["optional"].as_array().unwrap();
    assert!(purposes.iter().any(|c| c["name"] == "identity.phone" && !c["purpose_zh"].as_str().unwrap().is_empty()));
    assert_eq!(
        h.get("/t/dongcun/p/hello/").await.0,
        404,
        "nothing installed"
    );
    let r = install("?grant=fs").await.unwrap();
    assert_eq!(r.status(), 400);
    let r = install("?grant=required,identity").await.unwrap();
    assert_eq!(r.status(), 201);
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body["installation"]["grants"],
        serde_json::json!(["data", "identity"])
    );
    // Without `log` granted the plugin still works; its log lines are dropped.
    assert_eq!(h.get("/t/dongcun/p/hello/").await.0, 200);
    // Revoking the required `data` suspends it.
    let r = h
        .admin(
            Method::DELETE,
            "/api/v1/tenants/dongcun/plugins/hello/grants/data",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (status, r) = h.get_json("/t/dongcun/p/hello/").await;
    assert_eq!(
        (status, r["error"]["code"].as_str()),
        (503, Some("plugin_suspended"))
    );
    let r = h
        .admin(Method::POST, "/api/v1/tenants/dongcun/plugins/hello/resume")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409, "cannot resume without the required grant");
}

/// An upgrade that asks for more shows the difference and is refused until the new required
/// capability is granted; what the old version held and the new one still asks for stays.
async fn upgrade_asks_again(backend: Backend) {
    let h = TestHost::start(backend, |_| {}).await;
    h.village("dongcun").await;
    let install = |path: &'static str, q: &'static str| {
        h.admin(Method::POST, &format!("/api/v1/tenants/dongcun/plugins{q}"))
            .body(std::fs::read(path).unwrap())
            .send()
    };
    let r = install(HELLO, "?grant=required,log,identity.phone")
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(h.get("/t/dongcun/p/hello/").await.0, 200);

    let r = install(HELLO_NEXT, "").await.unwrap();
    assert_eq!(r.status(), 422);
    let body: Value = r.json().await.unwrap();
    let diff = &body["error"]["detail"];
    assert_eq!(diff["missing_required"], serde_json::json!(["identity"]));
    let added: Vec<&str> = diff["added"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(added, ["device.gate"]);
    assert_eq!(diff["now_required"][0]["name"], "identity");
    assert!(
        diff["now_required"][0]["purpose_zh"]
            .as_str()
            .unwrap()
            .contains("住户")
    );
    assert_eq!(
        diff["removed"],
        serde_json::json!([
            "identity.id-number",
            "identity.name",
            "identity.phone",
            "log"
        ])
    );
    // Refused: the old version still runs, with its grants.
    let (_, v) = h.get_json("/t/dongcun/p/hello/visits").await;
    assert_eq!((v["visits"].as_i64(), v.get("version")), (Some(1), None));

    let r = install(HELLO_NEXT, "?grant=identity").await.unwrap();
    assert_eq!(r.status(), 200, "an upgrade");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["installation"]["version"], "9.0.0");
    assert_eq!(
        body["installation"]["grants"],
        serde_json::json!(["data", "identity"]),
        "data kept, identity new, the lapsed ones dropped, device.gate not granted"
    );
    assert_eq!(
        body["grants"]["newly_granted"],
        serde_json::json!(["identity"])
    );
    let (_, v) = h.get_json("/t/dongcun/p/hello/visits").await;
    assert_eq!(
        (v["visits"].as_i64(), v["version"].as_str()),
        (Some(1), Some("9.0.0"))
    );
    // The audit record of the upgrade carries the difference.
    let records = h
        .platform
        .audit_records(
            &linli_tests::ROOT,
            linli::storage::audit::Query {
                action_prefix: Some("plugin.upgrade".into()),
                limit: 100,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(records.len(), 1);
    let detail: Value = serde_json::from_str(&records[0].detail).unwrap();
    assert_eq!(detail["newly_granted"], serde_json::json!(["identity"]));
    assert_eq!(detail["added"][0]["name"], "device.gate");
}

/// The roster as an Excel workbook: numbers typed as numbers, dates as dates, a bad row
/// reported by its row number, then the good sheet imported.
async fn roster_import_xlsx(backend: Backend) {
    use rust_xlsxwriter::{ExcelDateTime, Format, Workbook};
    let h = demo(backend).await;
    let staff = sign_in(&h, STAFF).await;
    let sheet = |bad_phone: bool| {
        let mut book = Workbook::new();
        let ws = book.add_worksheet();
        for (col, title) in ["姓名", "手机号", "身份证号", "出生日期", "户号", "标签"]
            .into_iter()
            .enumerate()
        {
            ws.write_string(0, col as u16, title).unwrap();
        }
        let date = Format::new().set_num_format("yyyy-mm-dd");
        ws.write_string(1, 0, "吴桂芳").unwrap();
        ws.write_number(1, 1, 13700000021.0).unwrap();
        ws.write_string(1, 2, "11010519491231002X").unwrap();
        ws.write_datetime_with_format(1, 3, ExcelDateTime::from_ymd(1949, 12, 31).unwrap(), &date)
            .unwrap();
        ws.write_string(1, 4, "东村三组1号").unwrap();
        ws.write_string(1, 5, "elderly,party-member").unwrap();
        ws.write_string(2, 0, "郑国强").unwrap();
        ws.write_number(2, 1, if bad_phone { 1370.0 } else { 13700000022.0 })
            .unwrap();
        book.save_to_buffer().unwrap()
    };
    let import = |bytes: Vec<u8>| {
        h.client
            .post(h.url("/api/v1/tenants/dongcun/people/import"))
            .bearer_auth(&staff)
            .header(
                "content-type",
                "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            )
            .body(bytes)
            .send()
    };
    let r = import(sheet(true)).await.unwrap();
    assert_eq!(r.status(), 422);
    let r: Value = r.json().await.unwrap();
    assert_eq!(r["errors"][0]["row"], 3, "{r}");
    assert_eq!(r["errors"][0]["field"], "phone");
    assert!(
        linli::storage::people::get_by_phone(&h.platform.db, "13700000021")
            .await
            .unwrap()
            .is_none(),
        "nothing imported"
    );
    let r = import(sheet(false)).await.unwrap();
    assert_eq!(r.status(), 200);
    let r: Value = r.json().await.unwrap();
    assert_eq!(r["created"], 2, "{r}");
    let wu = linli::storage::people::get_by_phone(&h.platform.db, "13700000021")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(wu.id_number.as_deref(), Some("11010519491231002X"));
    assert_eq!(wu.birth_date.as_deref(), Some("1949-12-31"));
    assert_eq!(wu.household.as_deref(), Some("东村三组1号"));
    assert_eq!(wu.tags, ["elderly", "party-member"]);
    assert_eq!(wu.tenant, "dongcun");
    // Re-importing the same sheet changes nothing.
    let r: Value = import(sheet(false)).await.unwrap().json().await.unwrap();
    assert_eq!(
        (r["created"].as_i64(), r["unchanged"].as_i64()),
        (Some(0), Some(2))
    );
    // Not a workbook at all.
    let r = import(b"PK\x03\x04 not really a zip".to_vec())
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

/// Restarted over a seeded demo with rebuilt plugins: the installed ones are upgraded in
/// place (data and grants kept); one the admin uninstalled and a new file are not installed.
async fn demo_plugins_upgrade_on_restart(backend: Backend) {
    let plugins = tempfile::tempdir().unwrap();
    let hello = plugins.path().join("hello.wasm");
    std::fs::copy(HELLO, &hello).unwrap();
    let dir = plugins.path().to_path_buf();
    let h = TestHost::start(backend, move |c| {
        c.seed_demo = true;
        c.demo_plugins_dir = Some(dir);
    })
    .await;
    assert!(h.platform.seed_demo().await.unwrap());
    assert_eq!(h.get_json("/t/dongcun/p/hello/").await.1["visits"], 1);
    let r = h
        .admin(Method::DELETE, "/api/v1/tenants/xicun/plugins/hello")
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let version = |h: &TestHost, tenant: &'static str| {
        let p = h.platform.clone();
        async move {
            p.installation(&linli_tests::ROOT, tenant, "hello")
                .await
                .ok()
                .map(|i| (i.version, i.grants))
        }
    };
    let before = version(&h, "dongcun").await.unwrap();
    assert_eq!(before.0, "0.1.0");

    // Restarted with the same files: nothing changes.
    let (config, data) = h.stop().await;
    let h = TestHost::start_with(config, data).await;
    assert!(!h.platform.seed_demo().await.unwrap());
    assert_eq!(version(&h, "dongcun").await.unwrap(), before);

    // Rebuilt: hello is upgraded where it is installed; spy, a new file, is not installed.
    std::fs::copy(HELLO_NEXT, &hello).unwrap();
    std::fs::copy(SPY, plugins.path().join("spy.wasm")).unwrap();
    let (config, data) = h.stop().await;
    let h = TestHost::start_with(config, data).await;
    assert!(!h.platform.seed_demo().await.unwrap());
    let (v, grants) = version(&h, "dongcun").await.unwrap();
    assert_eq!(v, "9.0.0");
    assert_eq!(
        grants,
        ["data", "identity"],
        "kept, less what 9.0.0 no longer asks for"
    );
    let (_, visits) = h.get_json("/t/dongcun/p/hello/visits").await;
    assert_eq!(
        (visits["visits"].as_i64(), visits["version"].as_str()),
        (Some(1), Some("9.0.0"))
    );
    assert_eq!(
        version(&h, "xicun").await,
        None,
        "uninstalled stays uninstalled"
    );
    assert_eq!(h.get("/t/dongcun/p/spy/").await.0, 404);
    drop(plugins);
}

on_both_backends!(
    demo_plugins_upgrade_on_restart,
    roster_import_xlsx,
    upgrade_asks_again,
    masked_until_granted,
    sessions_and_lockout,
    roles_and_escalation,
    totp_codes_sign_in_once,
    cross_tenant,
    assisted_mode,
    roster_import,
    residents_rights,
    sms_code_sign_in,
    grants_on_install,
);
