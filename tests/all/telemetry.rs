//! Device messages end to end against the real Mosquitto on 127.0.0.1:1883 (or
//! `LINLI_TEST_MQTT_URL`) and real SQLite or Postgres: over HTTP and MQTT they reach the
//! plugin granted the device's kind and no other; bad payloads, wrong tenants and floods are
//! refused per device; QoS 1 on the host's persistent session keeps what arrives while the
//! host's link is down.

use std::time::Duration;

use reqwest::Method;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::{Value, json};

use crate::identity::{SECADMIN, STAFF, call, demo_tweaked, sign_in};
use linli_tests::{Backend, SPY, TestHost, mqtt_url, on_both_backends};

/// A topic prefix and client id of this test run only, so parallel tests never meet.
pub(crate) fn unique(tag: &str) -> String {
    format!(
        "t{}-{tag}",
        &uuid::Uuid::new_v4().simple().to_string()[..10]
    )
}

pub(crate) async fn host(backend: Backend, prefix: &str) -> TestHost {
    host_at_rate(backend, prefix, 5, 20).await
}

/// A demo host linked to the broker under `prefix`, devices limited to `rate` messages per
/// second with `burst`, and the spy in dongcun granted emergency buttons and barriers.
async fn host_at_rate(backend: Backend, prefix: &str, rate: u32, burst: u32) -> TestHost {
    let (prefix, client) = (prefix.to_owned(), unique("host"));
    let h = demo_tweaked(backend, &[SPY], move |c| {
        c.devices.mqtt_url = Some(mqtt_url());
        c.devices.topic_prefix = prefix;
        c.devices.mqtt_client_id = client;
        c.devices.messages_per_second = rate;
        c.devices.burst = burst;
    })
    .await;
    let sec = sign_in(&h, SECADMIN).await;
    for kind in ["emergency-button", "barrier"] {
        let (status, r) = call(
            &h,
            Some(&sec),
            Method::PUT,
            &format!("/api/v1/tenants/dongcun/plugins/spy/grants/device.{kind}"),
            None,
        )
        .await;
        assert_eq!(status, 200, "{r}");
    }
    h
}

async fn telemetry(h: &TestHost, tenant: &str) -> Vec<Value> {
    let (status, r) = call(
        h,
        None,
        Method::GET,
        &format!("/t/{tenant}/p/spy/telemetry"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{r}");
    r["telemetry"].as_array().unwrap().clone()
}

/// Wait (up to 20 s) until the spy in dongcun holds `n` messages.
async fn until_count(h: &TestHost, n: usize) -> Vec<Value> {
    for _ in 0..200 {
        let got = telemetry(h, "dongcun").await;
        if got.len() >= n {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "the spy never got {n} messages: {:?}",
        telemetry(h, "dongcun").await
    );
}

fn metric(h: &TestHost, outcome: &str) -> u64 {
    let text = h.platform.metrics.render();
    text.lines()
        .find(|l| {
            l.starts_with(&format!(
                "linli_device_messages_total{{outcome=\"{outcome}\"}}"
            ))
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Publish QoS 1 messages as a device client and wait for the broker's acks.
async fn publish(topics_payloads: &[(String, Vec<u8>)]) {
    let url = mqtt_url();
    let (host, port) = linli::mqtt::broker_address(&url).unwrap();
    let opts = MqttOptions::new(unique("dev"), host, port);
    let (client, mut eventloop) = AsyncClient::new(opts, 64);
    for (topic, payload) in topics_payloads {
        client
            .publish(topic, QoS::AtLeastOnce, false, payload.clone())
            .await
            .unwrap();
    }
    let mut acked = 0;
    while acked < topics_payloads.len() {
        let event = tokio::time::timeout(Duration::from_secs(10), eventloop.poll())
            .await
            .expect("broker answers")
            .expect("broker reachable");
        if let Event::Incoming(Packet::PubAck(_)) = event {
            acked += 1;
        }
    }
    client.disconnect().await.unwrap();
}

pub(crate) async fn secret_of(h: &TestHost, device: &str) -> String {
    let staff = sign_in(h, STAFF).await;
    let (status, r) = call(
        h,
        Some(&staff),
        Method::POST,
        &format!("/api/v1/devices/{device}/secret"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{r}");
    r["secret"].as_str().unwrap().to_owned()
}

async fn send_http(h: &TestHost, device: &str, secret: &str, body: &str) -> (u16, Value) {
    let r = h
        .client
        .post(h.url(&format!("/api/v1/device-messages/{device}")))
        .bearer_auth(secret)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn over_http(backend: Backend) {
    let h = host(backend, &unique("p")).await;
    let secret = secret_of(&h, "dongcun-sos-li").await;
    let (status, r) = send_http(&h, "dongcun-sos-li", &secret, r#"{"type":"press"}"#).await;
    assert_eq!((status, &r["delivered"]), (202, &json!(1)), "{r}");
    let got = telemetry(&h, "dongcun").await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["device"], "dongcun-sos-li");
    assert_eq!(got[0]["kind"], "emergency-button");
    assert_eq!(got[0]["payload"], json!({"type": "press"}));
    assert!(got[0]["received_at_ms"].as_u64().unwrap() > 1_700_000_000_000);
    // The device is online now.
    let (_, r) = call(
        &h,
        None,
        Method::GET,
        "/t/dongcun/p/spy/devices?kind=emergency-button",
        None,
    )
    .await;
    assert_eq!(r["devices"][0]["online"], true, "{r}");

    // Wrong secret, unknown device, bad payloads: refused, nothing delivered.
    let (status, _) = send_http(&h, "dongcun-sos-li", "nope", r#"{"type":"press"}"#).await;
    assert_eq!(status, 401);
    let (status, _) = send_http(&h, "no-such-device", &secret, r#"{"type":"press"}"#).await;
    assert_eq!(status, 401);
    for bad in [
        r#"{"type":"explode"}"#,
        "not json",
        r#"{"type":"press","x":1}"#,
        "[]",
    ] {
        let (status, r) = send_http(&h, "dongcun-sos-li", &secret, bad).await;
        assert_eq!(status, 400, "{bad}: {r}");
    }
    let big = format!(r#"{{"type":"press","pad":"{}"}}"#, "x".repeat(5000));
    let (status, r) = send_http(&h, "dongcun-sos-li", &secret, &big).await;
    assert_eq!(status, 413, "{r}");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("devices.payload_bytes")
    );
    assert_eq!(metric(&h, "invalid"), 5);
    // Another valid message from the same device.
    let (status, r) = send_http(&h, "dongcun-sos-li", &secret, r#"{"type":"cancel"}"#).await;
    assert_eq!((status, &r["delivered"]), (202, &json!(1)));
    assert_eq!(telemetry(&h, "dongcun").await.len(), 2);
    // xicun's spy holds no device grant and the device is not in xicun: nothing there.
    assert!(telemetry(&h, "xicun").await.is_empty());
    // A disabled device is refused.
    let staff = sign_in(&h, STAFF).await;
    let (status, _) = call(
        &h,
        Some(&staff),
        Method::PUT,
        "/api/v1/devices/dongcun-sos-li",
        Some(json!({"id": "dongcun-sos-li", "kind": "emergency-button", "name": "按钮", "status": "disabled"})),
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = send_http(&h, "dongcun-sos-li", &secret, r#"{"type":"press"}"#).await;
    assert_eq!(status, 409);
    assert_eq!(telemetry(&h, "dongcun").await.len(), 2);
}

/// A flood from one device is cut at its rate; another device is still heard, and every
/// accepted message was delivered.
async fn flood_is_limited_per_device(backend: Backend) {
    // One message a second after a burst of 10: 60 requests cannot take long enough to
    // earn 50 more tokens, however slow the machine.
    let h = host_at_rate(backend, &unique("p"), 1, 10).await;
    let sos = secret_of(&h, "dongcun-sos-li").await;
    let gate = secret_of(&h, "dongcun-gate-1").await;
    let mut accepted = 0;
    let mut limited = 0;
    for _ in 0..60 {
        match send_http(&h, "dongcun-sos-li", &sos, r#"{"type":"heartbeat"}"#).await {
            (202, _) => accepted += 1,
            (429, r) => {
                limited += 1;
                assert!(
                    r["error"]["message"]
                        .as_str()
                        .unwrap()
                        .contains("devices.messages_per_second")
                );
            }
            (s, r) => panic!("{s} {r}"),
        }
    }
    assert!(
        accepted >= 10 && limited > 0,
        "accepted {accepted}, limited {limited}"
    );
    assert_eq!(metric(&h, "rate_limited"), limited);
    let (status, _) = send_http(
        &h,
        "dongcun-gate-1",
        &gate,
        r#"{"type":"plate","plate":"浙A12345"}"#,
    )
    .await;
    assert_eq!(status, 202);
    let got = telemetry(&h, "dongcun").await;
    assert_eq!(got.len(), accepted + 1);
    assert_eq!(got.last().unwrap()["payload"]["plate"], "浙A12345");
}

/// Over the real broker: delivered, namespaced by tenant, and kept while the host is away.
async fn over_mqtt(backend: Backend) {
    let prefix = unique("p");
    let h = host(backend, &prefix).await;
    let link = tokio::spawn(linli::mqtt::run(h.platform.clone()));
    let up = |tenant: &str, device: &str| format!("{prefix}/{tenant}/{device}/up");
    // Wait for the link's subscription: publish until the first message arrives.
    let mut subscribed = false;
    for _ in 0..100 {
        publish(&[(
            up("dongcun", "dongcun-gate-1"),
            br#"{"type":"heartbeat"}"#.to_vec(),
        )])
        .await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        if !telemetry(&h, "dongcun").await.is_empty() {
            subscribed = true;
            break;
        }
    }
    assert!(subscribed, "the host never received over MQTT");
    let base = telemetry(&h, "dongcun").await.len();
    let before_unknown = metric(&h, "unknown_device");
    let before_invalid = metric(&h, "invalid");
    publish(&[
        (
            up("dongcun", "dongcun-sos-li"),
            br#"{"type":"press"}"#.to_vec(),
        ),
        // Under another tenant's topics a device is unknown; bad payloads are refused.
        (
            up("xicun", "dongcun-sos-li"),
            br#"{"type":"press"}"#.to_vec(),
        ),
        (up("dongcun", "dongcun-sos-li"), b"{\"type\":".to_vec()),
        (up("dongcun", "ghost"), br#"{"type":"press"}"#.to_vec()),
        (
            up("dongcun", "dongcun-gate-1"),
            r#"{"type":"plate","plate":"浙A12345","direction":"in"}"#
                .as_bytes()
                .to_vec(),
        ),
    ])
    .await;
    let got = until_count(&h, base + 2).await;
    for _ in 0..400 {
        if metric(&h, "unknown_device") >= before_unknown + 2
            && metric(&h, "invalid") > before_invalid
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(metric(&h, "unknown_device"), before_unknown + 2);
    assert_eq!(metric(&h, "invalid"), before_invalid + 1);
    let tail: Vec<_> = got[base..]
        .iter()
        .map(|m| m["payload"]["type"].clone())
        .collect();
    let mut tail: Vec<_> = tail
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    tail.sort();
    assert_eq!(tail, ["plate", "press"]);
    assert!(telemetry(&h, "xicun").await.is_empty());

    // The host's link goes away; QoS 1 messages published meanwhile wait in its persistent
    // session at the broker and arrive when it is back.
    link.abort();
    let _ = link.await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let now = telemetry(&h, "dongcun").await.len();
    let batch: Vec<_> = (0..5)
        .map(|i| {
            (
                up("dongcun", "dongcun-gate-1"),
                format!(r#"{{"type":"card","card":"c{i}"}}"#).into_bytes(),
            )
        })
        .collect();
    publish(&batch).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        telemetry(&h, "dongcun").await.len(),
        now,
        "nothing arrives while the link is down"
    );
    let link = tokio::spawn(linli::mqtt::run(h.platform.clone()));
    let got = until_count(&h, now + 5).await;
    let mut cards: Vec<_> = got[now..]
        .iter()
        .map(|m| m["payload"]["card"].as_str().unwrap().to_owned())
        .collect();
    cards.sort();
    assert_eq!(cards, ["c0", "c1", "c2", "c3", "c4"]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        telemetry(&h, "dongcun").await.len(),
        now + 5,
        "nothing doubled"
    );
    link.abort();
}

/// A Mosquitto of this test only, on its own port, keeping sessions and queued messages on
/// disk across restarts (as a production broker is configured).
pub(crate) struct Broker {
    dir: tempfile::TempDir,
    pub(crate) port: u16,
    child: Option<std::process::Child>,
}

impl Broker {
    pub(crate) fn new() -> Broker {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = tempfile::tempdir().unwrap();
        // Mosquitto started as root drops to its own user: it must be able to save there.
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        std::fs::write(
            dir.path().join("mosquitto.conf"),
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\n\
                 persistence_location {}/\nautosave_interval 1\nmax_queued_messages 10000\n\
                 max_inflight_messages 0\n",
                dir.path().display()
            ),
        )
        .unwrap();
        let mut b = Broker {
            dir,
            port,
            child: None,
        };
        b.start();
        b
    }

    pub(crate) fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    pub(crate) fn start(&mut self) {
        let conf = self.dir.path().join("mosquitto.conf");
        let child = std::process::Command::new("mosquitto")
            .arg("-c")
            .arg(conf)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("mosquitto runs (scripts/setup.sh installs it)");
        self.child = Some(child);
        // Ready when it accepts connections.
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("mosquitto did not start on {}", self.port);
    }

    /// Stop it the way a service manager does (SIGTERM: it saves its state and exits).
    pub(crate) fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = std::process::Command::new("kill")
                .arg(child.id().to_string())
                .status();
            let _ = child.wait();
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The broker restarts while a device keeps sending QoS 1 messages: every message reaches
/// the plugin (some may twice: at least once), none is lost.
async fn broker_restart(backend: Backend) {
    let mut broker = Broker::new();
    let (url, prefix, client) = (broker.url(), unique("p"), unique("host"));
    let h = demo_tweaked(backend, &[SPY], {
        let prefix = prefix.clone();
        move |c| {
            c.devices.mqtt_url = Some(url);
            c.devices.topic_prefix = prefix;
            c.devices.mqtt_client_id = client;
            c.devices.messages_per_second = 1000;
            c.devices.burst = 1000;
        }
    })
    .await;
    let sec = sign_in(&h, SECADMIN).await;
    let (status, r) = call(
        &h,
        Some(&sec),
        Method::PUT,
        "/api/v1/tenants/dongcun/plugins/spy/grants/device.barrier",
        None,
    )
    .await;
    assert_eq!(status, 200, "{r}");
    let link = tokio::spawn(linli::mqtt::run(h.platform.clone()));

    // The device: a persistent session, publishing message `n` as {"type":"heartbeat","ts":n}.
    let mut opts = MqttOptions::new(unique("gate"), "127.0.0.1", broker.port);
    opts.set_clean_session(false);
    let (device, mut eventloop) = AsyncClient::new(opts, 256);
    let pump = tokio::spawn(async move {
        loop {
            if eventloop.poll().await.is_err() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    });
    let topic = format!("{prefix}/dongcun/dongcun-gate-1/up");
    let send = |n: u64| {
        let (device, topic) = (device.clone(), topic.clone());
        async move {
            device
                .publish(
                    topic,
                    QoS::AtLeastOnce,
                    false,
                    format!(r#"{{"type":"heartbeat","ts":{n}}}"#),
                )
                .await
                .unwrap();
        }
    };
    // Wait until the host is subscribed (the first message arrives), then stream.
    let mut n = 0;
    while telemetry(&h, "dongcun").await.is_empty() {
        n += 1;
        assert!(n < 100, "the host never received from the test broker");
        send(0).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for n in 1..=10 {
        send(n).await;
    }
    until_seen(&h, 1..=10).await;
    broker.stop();
    for n in 11..=20 {
        send(n).await;
    }
    broker.start();
    for n in 21..=30 {
        send(n).await;
    }
    until_seen(&h, 1..=30).await;
    pump.abort();
    link.abort();
}

/// Wait (up to 60 s: the link backs off while the broker is away) until the spy has seen
/// every `ts` in `want`.
async fn until_seen(h: &TestHost, want: std::ops::RangeInclusive<u64>) {
    let mut missing = Vec::new();
    for _ in 0..600 {
        let seen: std::collections::BTreeSet<u64> = telemetry(h, "dongcun")
            .await
            .iter()
            .filter_map(|m| m["payload"]["ts"].as_u64())
            .collect();
        missing = want.clone().filter(|n| !seen.contains(n)).collect();
        if missing.is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("lost across the broker restart: {missing:?}");
}

on_both_backends!(
    over_http,
    flood_is_limited_per_device,
    over_mqtt,
    broker_restart
);
