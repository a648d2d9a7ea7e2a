//! The device registry over the HTTP API of a host seeded with the demo county (real SQLite or
//! Postgres): who may see and change which devices, validation, secrets shown once and stored
//! hashed, the CSV import (all rows or none, re-import updates), audit, residents' rights.

use reqwest::Method;
use serde_json::{Value, json};

use crate::identity::{
    GRID, LI, SECADMIN, STAFF, SYSADMIN, WANG, ZHANG, call, demo_with, get, sign_in,
};
use linli_tests::{Backend, SPY, TestHost, on_both_backends};

async fn ids(h: &TestHost, token: &str, tenant: &str, query: &str) -> Vec<String> {
    let (status, r) = get(
        h,
        token,
        &format!("/api/v1/tenants/{tenant}/devices{query}"),
    )
    .await;
    assert_eq!(status, 200, "{r}");
    r["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap().to_owned())
        .collect()
}

async fn import(h: &TestHost, token: &str, tenant: &str, csv: &str) -> (u16, Value) {
    let r = h
        .client
        .post(h.url(&format!("/api/v1/tenants/{tenant}/devices/import")))
        .bearer_auth(token)
        .header("content-type", "text/csv")
        .body(csv.to_owned())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

fn button(id: &str, person: Option<&str>) -> Value {
    json!({
        "id": id,
        "kind": "emergency-button",
        "name": "紧急呼叫按钮",
        "location": "东村二组8号",
        "vendor": "演示厂商",
        "person": person,
    })
}

async fn registry(backend: Backend) {
    let h = demo_with(backend, &[]).await;
    let staff = sign_in(&h, STAFF).await;
    let grid = sign_in(&h, GRID).await;
    let admin = sign_in(&h, SYSADMIN).await;
    let zhang = sign_in(&h, ZHANG).await;

    // The demo devices, seen by subtree and role.
    let all = ids(&h, &admin, "dongxi", "").await;
    assert_eq!(
        all,
        [
            "dongcun-band-zhang",
            "dongcun-gate-1",
            "dongcun-sos-li",
            "dongcun-space-1",
            "xicun-gate-1"
        ]
    );
    assert_eq!(ids(&h, &staff, "dongcun", "").await.len(), 4);
    assert_eq!(ids(&h, &grid, "dongcun", "").await.len(), 4);
    assert_eq!(
        ids(&h, &staff, "dongcun", "?kind=emergency-button,wearable").await,
        ["dongcun-band-zhang", "dongcun-sos-li"]
    );
    assert_eq!(
        ids(&h, &admin, "dongxi", "?limit=2&after=dongcun-gate-1").await,
        ["dongcun-sos-li", "dongcun-space-1"]
    );
    let (status, r) = get(&h, &staff, "/api/v1/tenants/dongcun/devices?kind=toaster").await;
    assert_eq!(status, 400, "{r}");
    let (status, _) = get(&h, &staff, "/api/v1/tenants/xicun/devices").await;
    assert_eq!(status, 403);
    let (status, _) = get(&h, &zhang, "/api/v1/tenants/dongcun/devices").await;
    assert_eq!(status, 403);
    let (status, _) = call(
        &h,
        None,
        Method::GET,
        "/api/v1/tenants/dongcun/devices",
        None,
    )
    .await;
    assert_eq!(status, 401);
    // The personal device's wearer is stored by id.
    let (status, sos) = get(&h, &staff, "/api/v1/devices/dongcun-sos-li").await;
    assert_eq!(status, 200, "{sos}");
    assert_eq!(sos["kind"], "emergency-button");
    assert!(sos["person"].as_str().unwrap().starts_with("p-"));
    assert!(sos.get("secret").is_none() && sos.get("secret_hash").is_none());
    let li = sos["person"].as_str().unwrap().to_owned();

    // Registering: staff may, grid workers and residents may not; the secret is shown once.
    let path = "/api/v1/tenants/dongcun/devices";
    let (status, _) = call(
        &h,
        Some(&grid),
        Method::POST,
        path,
        Some(button("sos-2", Some(&li))),
    )
    .await;
    assert_eq!(status, 403);
    let (status, made) = call(
        &h,
        Some(&staff),
        Method::POST,
        path,
        Some(button("dongcun-sos-2", Some(&li))),
    )
    .await;
    assert_eq!(status, 201, "{made}");
    let secret = made["secret"].as_str().unwrap().to_owned();
    assert_eq!(secret.len(), 36);
    assert_eq!(made["device"]["status"], "active");
    assert!(
        linli::storage::devices::check_secret(&h.platform.db, "dongcun-sos-2", &secret)
            .await
            .unwrap()
    );
    let (_, fetched) = get(&h, &staff, "/api/v1/devices/dongcun-sos-2").await;
    assert!(!fetched.to_string().contains(&secret));
    // Bad input: taken id, bad id, unknown kind, unknown field, a wearer on a gate, a wearer
    // from another village, a person who does not exist.
    let (status, r) = call(
        &h,
        Some(&staff),
        Method::POST,
        path,
        Some(button("dongcun-sos-2", None)),
    )
    .await;
    assert_eq!(status, 409, "{r}");
    let (status, r) = call(
        &h,
        Some(&staff),
        Method::POST,
        path,
        Some(button("SOS 3", None)),
    )
    .await;
    assert_eq!(status, 400, "{r}");
    assert!(
        r["error"]["message"].as_str().unwrap().starts_with("id:"),
        "{r}"
    );
    let mut bad = button("sos-3", None);
    bad["kind"] = json!("toaster");
    let (status, _) = call(&h, Some(&staff), Method::POST, path, Some(bad)).await;
    assert_eq!(status, 400);
    let mut bad = button("sos-3", None);
    bad["secret"] = json!("mine");
    let (status, _) = call(&h, Some(&staff), Method::POST, path, Some(bad)).await;
    assert_eq!(status, 400);
    let mut bad = button("gate-3", Some(&li));
    bad["kind"] = json!("gate");
    let (status, r) = call(&h, Some(&staff), Method::POST, path, Some(bad)).await;
    assert_eq!(status, 400);
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("person:"),
        "{r}"
    );
    let wang = crate::identity::person_id(&h, WANG).await;
    let (status, r) = call(
        &h,
        Some(&staff),
        Method::POST,
        path,
        Some(button("sos-3", Some(&wang))),
    )
    .await;
    assert_eq!(status, 400, "{r}");
    let (status, _) = call(
        &h,
        Some(&staff),
        Method::POST,
        path,
        Some(button("sos-3", Some("p-nobody"))),
    )
    .await;
    assert_eq!(status, 400);
    let (status, _) = call(
        &h,
        Some(&staff),
        Method::POST,
        "/api/v1/tenants/xicun/devices",
        Some(button("sos-3", None)),
    )
    .await;
    assert_eq!(status, 403);

    // Other places' devices are not found, whatever the verb.
    for (method, suffix) in [
        (Method::GET, ""),
        (Method::DELETE, ""),
        (Method::POST, "/secret"),
    ] {
        let (status, _) = call(
            &h,
            Some(&staff),
            method,
            &format!("/api/v1/devices/xicun-gate-1{suffix}"),
            None,
        )
        .await;
        assert_eq!(status, 404);
    }
    let mut gate = json!({"id": "xicun-gate-1", "kind": "gate", "name": "我的门"});
    let (status, _) = call(
        &h,
        Some(&staff),
        Method::PUT,
        "/api/v1/devices/xicun-gate-1",
        Some(gate.clone()),
    )
    .await;
    assert_eq!(status, 404);

    // Edit, move, rotate, remove.
    gate = json!({"id": "dongcun-gate-1", "kind": "barrier", "name": "东村村口道闸（新）", "location": "村口"});
    let (status, r) = call(
        &h,
        Some(&staff),
        Method::PUT,
        "/api/v1/devices/dongcun-gate-1",
        Some(gate.clone()),
    )
    .await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["name"], "东村村口道闸（新）");
    let mut renamed = gate.clone();
    renamed["id"] = json!("other");
    let (status, _) = call(
        &h,
        Some(&staff),
        Method::PUT,
        "/api/v1/devices/dongcun-gate-1",
        Some(renamed),
    )
    .await;
    assert_eq!(status, 400);
    let (status, _) = call(
        &h,
        Some(&staff),
        Method::PUT,
        "/api/v1/devices/dongcun-gate-1?tenant=xicun",
        Some(gate.clone()),
    )
    .await;
    assert_eq!(status, 403);
    let (status, r) = call(
        &h,
        Some(&staff),
        Method::PUT,
        "/api/v1/devices/dongcun-gate-1?tenant=dongcun-1",
        Some(gate),
    )
    .await;
    assert_eq!(
        (status, r["tenant"].as_str()),
        (200, Some("dongcun-1")),
        "{r}"
    );
    let (status, r) = call(
        &h,
        Some(&staff),
        Method::POST,
        "/api/v1/devices/dongcun-sos-2/secret",
        None,
    )
    .await;
    assert_eq!(status, 200, "{r}");
    let rotated = r["secret"].as_str().unwrap();
    assert_ne!(rotated, secret);
    let db = &h.platform.db;
    assert!(
        !linli::storage::devices::check_secret(db, "dongcun-sos-2", &secret)
            .await
            .unwrap()
    );
    assert!(
        linli::storage::devices::check_secret(db, "dongcun-sos-2", rotated)
            .await
            .unwrap()
    );
    let (status, _) = call(
        &h,
        Some(&staff),
        Method::DELETE,
        "/api/v1/devices/dongcun-sos-2",
        None,
    )
    .await;
    assert_eq!(status, 204);
    let (status, _) = get(&h, &staff, "/api/v1/devices/dongcun-sos-2").await;
    assert_eq!(status, 404);

    // Every change is in the audit log, by the staff member, without any secret.
    let r = h
        .admin(Method::GET, "/api/v1/audit?action=device.&limit=1000")
        .send()
        .await
        .unwrap();
    let records: Value = r.json().await.unwrap();
    let actions: Vec<_> = records
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["actor"] != "system")
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "device.create",
            "device.update",
            "device.update",
            "device.secret",
            "device.delete"
        ]
    );
    assert!(!records.to_string().contains(&secret) && !records.to_string().contains(rotated));

    // Residents' rights: the export lists 李桂兰's button; erasure unbinds it.
    let r = h
        .admin(Method::GET, &format!("/api/v1/people/{li}/export"))
        .send()
        .await
        .unwrap();
    let export: Value = r.json().await.unwrap();
    let devices: Vec<_> = export["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].clone())
        .collect();
    assert_eq!(devices, [json!("dongcun-sos-li")]);
    let r = h
        .admin(Method::POST, &format!("/api/v1/people/{li}/erase"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let (_, sos) = get(&h, &staff, "/api/v1/devices/dongcun-sos-li").await;
    assert_eq!(sos["person"], Value::Null);
    let _ = LI;
}

async fn device_import(backend: Backend) {
    let h = demo_with(backend, &[]).await;
    let staff = sign_in(&h, STAFF).await;
    let before = ids(&h, &staff, "dongcun", "").await;

    // Every bad row is reported; nothing is imported.
    let bad = "编号,类型,名称,位置,使用人,所属\n\
               dongcun-meter-1,计量表,一组水表,一组,,\n\
               dongcun-x,toaster,烤面包机,,,\n\
               dongcun-meter-1,meter,重复,,,\n\
               dongcun-gate-9,gate,西村的门,,,xicun\n\
               dongcun-sos-9,emergency-button,按钮,,13999999999,\n\
               xicun-gate-1,gate,抢来的门,,,\n\
               Bad Id,gate,门,,,\n";
    let (status, r) = import(&h, &staff, "dongcun", bad).await;
    assert_eq!(status, 422, "{r}");
    let rows: Vec<_> = r["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["row"].as_u64().unwrap(),
                e["field"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            (3, "kind".to_owned()),
            (4, "id".to_owned()),
            (5, "tenant".to_owned()),
            (6, "person".to_owned()),
            (7, "id".to_owned()),
            (8, "id".to_owned()),
        ]
    );
    assert_eq!(r["imported"], false);
    assert_eq!(ids(&h, &staff, "dongcun", "").await, before);
    // An unknown column or a missing required one is a header error (row 1).
    let (status, r) = import(&h, &staff, "dongcun", "id,kind,colour\nx,gate,red\n").await;
    assert_eq!(status, 422);
    let fields: Vec<_> = r["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["colour", "name"]);

    // A good list: two new devices (secrets listed once), one existing one updated, with a
    // UTF-8 BOM as Excel writes it and the wearer given by phone.
    let good = "\u{feff}id,kind,name,location,person,tenant\n\
                dongcun-meter-1,meter,一组水表,一组,,dongcun-1\n\
                dongcun-sos-zhang,emergency-button,张秀英家按钮,一组3号,13800000001,\n\
                dongcun-space-1,parking-sensor,村委会停车场 1 号车位,东村村委会停车场,,\n";
    let (status, r) = import(&h, &staff, "dongcun", good).await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(
        (
            r["created"].as_u64(),
            r["updated"].as_u64(),
            r["unchanged"].as_u64()
        ),
        (Some(2), Some(1), Some(0)),
        "{r}"
    );
    let secrets = r["secrets"].as_array().unwrap();
    assert_eq!(secrets.len(), 2);
    for s in secrets {
        let (id, secret) = (s["id"].as_str().unwrap(), s["secret"].as_str().unwrap());
        assert!(
            linli::storage::devices::check_secret(&h.platform.db, id, secret)
                .await
                .unwrap()
        );
    }
    let (_, meter) = get(&h, &staff, "/api/v1/devices/dongcun-meter-1").await;
    assert_eq!(meter["tenant"], "dongcun-1");
    let (_, sos) = get(&h, &staff, "/api/v1/devices/dongcun-sos-zhang").await;
    assert_eq!(
        sos["person"],
        json!(crate::identity::person_id(&h, ZHANG).await)
    );
    // Importing the same list again changes nothing and mints no secrets.
    let (status, r) = import(&h, &staff, "dongcun", good).await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(
        (r["created"].as_u64(), r["unchanged"].as_u64()),
        (Some(0), Some(3))
    );
    assert_eq!(r["secrets"], json!([]));
    assert_eq!(ids(&h, &staff, "dongcun", "").await.len(), before.len() + 2);
    // Not a CSV at all.
    let (status, _) = import(&h, &staff, "dongcun", "\u{0}\u{1}\u{2}").await;
    assert!(status == 400 || status == 422, "{status}");
}

/// A plugin sees only the kinds it was granted, only in its own place, never a wearer; a
/// revoked kind is gone on the next call.
async fn plugins_see_granted_kinds(backend: Backend) {
    let h = demo_with(backend, &[SPY]).await;
    let sec = sign_in(&h, SECADMIN).await;
    let spy = |tenant: &'static str, query: &'static str| {
        let h = &h;
        async move {
            call(
                h,
                None,
                Method::GET,
                &format!("/t/{tenant}/p/spy/devices{query}"),
                None,
            )
            .await
        }
    };
    // No device grant yet: denied.
    let (status, r) = spy("dongcun", "").await;
    assert_eq!(status, 403, "{r}");
    let grant = |kind: &'static str, method: Method| {
        let (h, sec) = (&h, &sec);
        async move {
            let (status, r) = call(
                h,
                Some(sec),
                method,
                &format!("/api/v1/tenants/dongcun/plugins/spy/grants/device.{kind}"),
                None,
            )
            .await;
            assert!(status == 200 || status == 204, "{status} {r}");
        }
    };
    grant("emergency-button", Method::PUT).await;
    let (status, r) = spy("dongcun", "").await;
    assert_eq!(status, 200, "{r}");
    // A personal device: its wearer's name and home stay hidden without identity.name and
    // identity.address (security::personal_devices_do_not_name_their_wearer).
    assert_eq!(
        r["devices"],
        json!([{
            "id": "dongcun-sos-li", "kind": "emergency-button", "name": "紧急呼叫按钮（个人设备）",
            "location": "dongcun", "online": false,
        }])
    );
    assert!(
        !r.to_string().contains("p-"),
        "no wearer reaches a plugin: {r}"
    );
    // Asking for a kind it was not granted, or one that does not exist.
    let (status, _) = spy("dongcun", "?kind=barrier").await;
    assert_eq!(status, 403);
    let (status, _) = spy("dongcun", "?kind=toaster").await;
    assert_eq!(status, 400);
    // The same plugin in xicun holds no device grant; xicun's devices never show in dongcun.
    let (status, _) = spy("xicun", "").await;
    assert_eq!(status, 403);
    grant("barrier", Method::PUT).await;
    let (_, r) = spy("dongcun", "?kind=barrier").await;
    let ids: Vec<_> = r["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].clone())
        .collect();
    assert_eq!(ids, [json!("dongcun-gate-1")]);
    // A device seen recently is online; a disabled one is not listed.
    linli::storage::devices::touch(&h.platform.db, "dongcun-gate-1", linli::storage::now_ms())
        .await
        .unwrap();
    let (_, r) = spy("dongcun", "?kind=barrier").await;
    assert_eq!(r["devices"][0]["online"], true);
    let staff = sign_in(&h, STAFF).await;
    let (status, r) = call(
        &h,
        Some(&staff),
        Method::PUT,
        "/api/v1/devices/dongcun-gate-1",
        Some(json!({"id": "dongcun-gate-1", "kind": "barrier", "name": "东村村口道闸", "status": "disabled"})),
    )
    .await;
    assert_eq!(status, 200, "{r}");
    let (_, r) = spy("dongcun", "?kind=barrier").await;
    assert_eq!(r["devices"], json!([]));
    // A command to a disabled device is refused before anything is sent.
    let (status, r) = call(
        &h,
        None,
        Method::GET,
        "/t/dongcun/p/spy/command?id=dongcun-gate-1",
        None,
    )
    .await;
    assert_eq!(status, 400, "{r}");
    assert!(r.to_string().contains("disabled"), "{r}");
    // Revoked: gone on the next call.
    grant("emergency-button", Method::DELETE).await;
    grant("barrier", Method::DELETE).await;
    let (status, _) = spy("dongcun", "").await;
    assert_eq!(status, 403);
}

on_both_backends!(registry, device_import, plugins_see_granted_kinds);
