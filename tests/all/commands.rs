//! Commands from plugins to devices: over HTTP (a device that polls) and over MQTT, each
//! recorded with its outcome, and every limit a plugin can hit with them.

use std::time::Duration;

use reqwest::Method;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::{Value, json};

use crate::identity::{STAFF, call, sign_in};
use crate::telemetry::{host, secret_of, unique};
use linli_tests::{Backend, TestHost, mqtt_url, on_both_backends};

/// The spy in dongcun sends commands; `query` is its `/command` query.
async fn spy_command(h: &TestHost, query: &str) -> (u16, Value) {
    call(
        h,
        None,
        Method::GET,
        &format!("/t/dongcun/p/spy/command?{query}"),
        None,
    )
    .await
}

async fn pending(h: &TestHost, device: &str, secret: &str) -> (u16, Value) {
    let r = h
        .client
        .get(h.url(&format!("/api/v1/device-messages/{device}/commands")))
        .bearer_auth(secret)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn answer(h: &TestHost, device: &str, secret: &str, body: Value) -> u16 {
    h.client
        .post(h.url(&format!("/api/v1/device-messages/{device}/acks")))
        .bearer_auth(secret)
        .json(&body)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Play the device over HTTP: wait for its next command and answer it with `reply(id)`.
async fn answer_next(h: &TestHost, device: &str, secret: &str, reply: impl Fn(&str) -> Value) {
    for _ in 0..400 {
        let (status, r) = pending(h, device, secret).await;
        assert_eq!(status, 200, "{r}");
        if let Some(c) = r.as_array().and_then(|a| a.first()) {
            let id = c["id"].as_str().unwrap();
            assert_eq!(answer(h, device, secret, reply(id)).await, 204);
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no command reached {device}");
}

async fn over_http(backend: Backend) {
    let h = host(backend, &unique("p")).await;
    let secret = secret_of(&h, "dongcun-gate-1").await;
    let gate = "dongcun-gate-1";

    // Acknowledged, with the device's result handed back to the plugin.
    let q = format!("id={gate}&payload=%7B%22plate%22%3A%22%E6%B5%99A12345%22%7D&timeout=2500");
    let (sent, ()) = tokio::join!(
        spy_command(&h, &q),
        answer_next(
            &h,
            gate,
            &secret,
            |id| json!({"id": id, "ok": true, "result": {"opened": true}})
        ),
    );
    assert_eq!(sent.0, 200, "{}", sent.1);
    assert_eq!(
        sent.1["outcomes"],
        json!([{"acknowledged": {"opened": true}}])
    );

    // Refused, with the device's reason.
    let q = format!("id={gate}&cmd=close&timeout=2500");
    let (sent, ()) = tokio::join!(
        spy_command(&h, &q),
        answer_next(
            &h,
            gate,
            &secret,
            |id| json!({"id": id, "ok": false, "reason": "道闸卡住 jammed"})
        ),
    );
    assert_eq!(sent.1["outcomes"], json!([{"refused": "道闸卡住 jammed"}]));

    // Nobody answers: timed out, and a late answer changes nothing.
    let (status, r) = spy_command(&h, &format!("id={gate}&timeout=150")).await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["outcomes"], json!(["timed-out"]));
    let staff = sign_in(&h, STAFF).await;
    let (status, log) = call(
        &h,
        Some(&staff),
        Method::GET,
        &format!("/api/v1/devices/{gate}/commands"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{log}");
    let statuses: Vec<_> = log
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["status"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(statuses, ["timed-out", "refused", "acknowledged"]);
    assert_eq!(log[2]["payload"], json!({"plate": "浙A12345"}));
    assert_eq!(log[2]["plugin_id"], "spy");
    assert_eq!(log[2]["reply"], json!({"opened": true}));
    let late = log[0]["id"].as_str().unwrap();
    assert_eq!(
        answer(&h, gate, &secret, json!({"id": late, "ok": true})).await,
        409
    );
    // Nothing is pending once settled; a wrong secret gets nothing at all.
    assert_eq!(pending(&h, gate, &secret).await.1, json!([]));
    assert_eq!(pending(&h, gate, "lld_wrong").await.0, 401);
    // Another device cannot answer the gate's commands.
    let sos = secret_of(&h, "dongcun-sos-li").await;
    let acked = log[2]["id"].as_str().unwrap();
    assert_eq!(
        answer(&h, "dongcun-sos-li", &sos, json!({"id": acked, "ok": true})).await,
        409
    );
    // Malformed answers are refused with a reason.
    assert_eq!(
        answer(&h, gate, &secret, json!({"id": late, "ok": "yes"})).await,
        400
    );
}

async fn limits(backend: Backend) {
    let h = host(backend, &unique("p")).await;
    let expect = |status: u16, needle: &'static str| {
        move |(got, r): (u16, Value)| {
            assert_eq!(got, status, "{r}");
            assert!(r.to_string().contains(needle), "{needle:?} not in {r}");
        }
    };
    let gate = "id=dongcun-gate-1";
    expect(400, "it takes: open, close, display")(
        spy_command(&h, &format!("{gate}&cmd=explode")).await,
    );
    expect(400, "text")(spy_command(&h, &format!("{gate}&cmd=display&payload=%7B%7D")).await);
    let big = "x".repeat(1100);
    expect(400, "1024 bytes")(spy_command(&h, &format!("{gate}&payload={big}")).await);
    expect(400, "call_timeout_ms")(spy_command(&h, &format!("{gate}&timeout=0")).await);
    expect(400, "call_timeout_ms")(spy_command(&h, &format!("{gate}&timeout=60000")).await);
    expect(400, "1–32 bytes")(spy_command(&h, &format!("{gate}&cmd={}", "o".repeat(33))).await);
    // Another village's gate, a device that does not exist, a kind not granted.
    expect(404, "xicun-gate-1")(spy_command(&h, "id=xicun-gate-1").await);
    expect(404, "ghost")(spy_command(&h, "id=ghost").await);
    expect(403, "device.wearable")(spy_command(&h, "id=dongcun-band-zhang&cmd=vibrate").await);
    // A kind that takes no such command.
    expect(400, "confirm")(spy_command(&h, "id=dongcun-sos-li&cmd=open").await);
    // At most 20 commands in one call: the 21st is refused (each of these times out fast).
    expect(413, "20 device commands")(spy_command(&h, &format!("{gate}&timeout=1&count=21")).await);
    let staff = sign_in(&h, STAFF).await;
    let (_, log) = call(
        &h,
        Some(&staff),
        Method::GET,
        "/api/v1/devices/dongcun-gate-1/commands?limit=500",
        None,
    )
    .await;
    assert_eq!(
        log.as_array().unwrap().len(),
        20,
        "only the commands that passed the checks are recorded"
    );
}

/// A device on the broker: it receives its commands on `down` and answers on `ack`.
async fn over_mqtt(backend: Backend) {
    let prefix = unique("p");
    let h = host(backend, &prefix).await;
    let link = tokio::spawn(linli::mqtt::run(h.platform.clone()));
    let (host_name, port) = linli::mqtt::broker_address(&mqtt_url()).unwrap();
    let (client, mut eventloop) =
        AsyncClient::new(MqttOptions::new(unique("gate"), host_name, port), 16);
    client
        .subscribe(
            format!("{prefix}/dongcun/dongcun-gate-1/down"),
            QoS::AtLeastOnce,
        )
        .await
        .unwrap();
    let (seen_tx, mut seen) = tokio::sync::mpsc::unbounded_channel::<Value>();
    let device = tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let c: Value = serde_json::from_slice(&p.payload).unwrap();
                    client
                        .publish(
                            format!("{prefix}/dongcun/dongcun-gate-1/ack"),
                            QoS::AtLeastOnce,
                            false,
                            json!({"id": c["id"], "ok": true, "result": {"opened": true}})
                                .to_string(),
                        )
                        .await
                        .unwrap();
                    let _ = seen_tx.send(c);
                }
                Ok(_) => {}
                Err(e) => panic!("device link: {e}"),
            }
        }
    });
    // The link may still be subscribing: a command that times out is tried again.
    let mut outcome = Value::Null;
    for _ in 0..20 {
        let (status, r) = spy_command(&h, "id=dongcun-gate-1&timeout=2500").await;
        assert_eq!(status, 200, "{r}");
        outcome = r["outcomes"][0].clone();
        if outcome != json!("timed-out") {
            break;
        }
    }
    assert_eq!(outcome, json!({"acknowledged": {"opened": true}}));
    let first = seen.recv().await.expect("the device got its command");
    assert_eq!(first["command"], "open");
    assert_eq!(first["payload"], json!({}));
    assert!(first["deadline_ms"].as_i64().unwrap() > 0);
    device.abort();
    link.abort();
}

/// The broker's HTTP auth hook: devices connect with their id and current secret and may use
/// only their own topics; the host with its own credentials; nothing without the hook token.
async fn broker_hook(backend: Backend) {
    let h = crate::identity::demo_tweaked(backend, &[], |c| {
        c.devices.broker_hook_token = Some("hook-token-0123456789".into());
        c.devices.mqtt_username = Some("linli-host".into());
        c.devices.mqtt_password = Some("host-password".into());
    })
    .await;
    let secret = secret_of(&h, "dongcun-gate-1").await;
    let ask = |path: &'static str, token: Option<&'static str>, body: Value| {
        let h = &h;
        async move {
            let mut r = h
                .client
                .post(h.url(&format!("/api/v1/broker/{path}")))
                .json(&body);
            if let Some(t) = token {
                r = r.bearer_auth(t);
            }
            let r = r.send().await.unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let hook = Some("hook-token-0123456789");
    let auth =
        |user: &str, pass: &str| json!({"username": user, "password": pass, "clientid": "c"});
    assert_eq!(
        ask("auth", None, auth("dongcun-gate-1", &secret)).await.0,
        401
    );
    assert_eq!(
        ask(
            "auth",
            Some("wrong-token-0123456789"),
            auth("dongcun-gate-1", &secret)
        )
        .await
        .0,
        401
    );
    let (status, r) = ask("auth", hook, auth("dongcun-gate-1", &secret)).await;
    assert_eq!((status, r["result"].as_str()), (200, Some("allow")));
    assert_eq!(
        ask("auth", hook, auth("dongcun-gate-1", "lld_wrong"))
            .await
            .0,
        403
    );
    assert_eq!(
        ask("auth", hook, auth("dongcun-sos-li", &secret)).await.0,
        403,
        "another device's secret"
    );
    assert_eq!(
        ask("auth", hook, auth("linli-host", "host-password"))
            .await
            .0,
        200
    );
    assert_eq!(ask("auth", hook, auth("linli-host", "nope")).await.0, 403);
    let acl =
        |user: &str, topic: &str, acc: u8| json!({"username": user, "topic": topic, "acc": acc});
    let gate = "dongcun-gate-1";
    assert_eq!(
        ask("acl", hook, acl(gate, "linli/dongcun/dongcun-gate-1/up", 2))
            .await
            .0,
        200
    );
    assert_eq!(
        ask(
            "acl",
            hook,
            acl(gate, "linli/dongcun/dongcun-gate-1/ack", 2)
        )
        .await
        .0,
        200
    );
    assert_eq!(
        ask(
            "acl",
            hook,
            acl(gate, "linli/dongcun/dongcun-gate-1/down", 4)
        )
        .await
        .0,
        200
    );
    assert_eq!(
        ask(
            "acl",
            hook,
            acl(gate, "linli/dongcun/dongcun-gate-1/down", 2)
        )
        .await
        .0,
        403,
        "publishing commands"
    );
    assert_eq!(
        ask("acl", hook, acl(gate, "linli/dongcun/dongcun-sos-li/up", 2))
            .await
            .0,
        403,
        "as another device"
    );
    assert_eq!(
        ask("acl", hook, acl(gate, "linli/xicun/dongcun-gate-1/up", 2))
            .await
            .0,
        403,
        "under another tenant"
    );
    assert_eq!(ask("acl", hook, acl(gate, "linli/#", 4)).await.0, 403);
    assert_eq!(ask("acl", hook, json!({"username": gate, "topic": "linli/dongcun/dongcun-gate-1/up", "action": "publish"})).await.0, 200);
    assert_eq!(
        ask(
            "acl",
            hook,
            acl("linli-host", "$share/linli/linli/+/+/up", 4)
        )
        .await
        .0,
        200
    );
    // A disabled device is refused at once.
    let staff = sign_in(&h, STAFF).await;
    let (status, r) = call(
        &h,
        Some(&staff),
        Method::PUT,
        "/api/v1/devices/dongcun-gate-1",
        Some(json!({"id": gate, "kind": "barrier", "name": "东村村口道闸", "status": "disabled"})),
    )
    .await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(ask("auth", hook, auth(gate, &secret)).await.0, 403);
    assert_eq!(
        ask("acl", hook, acl(gate, "linli/dongcun/dongcun-gate-1/up", 2))
            .await
            .0,
        403
    );
    // Bad input is a clear 400, never a panic.
    assert_eq!(ask("auth", hook, json!({"user": 1})).await.0, 400);
}

/// Without a hook token the hook does not exist.
async fn broker_hook_off(backend: Backend) {
    let h = crate::identity::demo_with(backend, &[]).await;
    let r = h
        .client
        .post(h.url("/api/v1/broker/auth"))
        .json(&json!({"username": "dongcun-gate-1", "password": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
}

on_both_backends!(over_http, limits, over_mqtt, broker_hook, broker_hook_off);
