//! Reliability under the faults that found them, injected by the tests themselves: the
//! database taken away (Postgres connections cut by a proxy in front of it; SQLite's disk
//! filled to the last byte), a broker restarted under a backlog, two replicas on one
//! database, a call cut off at its deadline after saving.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::identity::{SECADMIN, call, demo_tweaked, sign_in};
use crate::telemetry::{Broker, secret_of, unique};
use linli_tests::{Backend, HOSTILE, SPY, TestHost, on_both_backends};

/// A small tmpfs mounted over a directory, which the test fills to the last byte and
/// empties again (mounting needs root, which CI has).
struct SmallDisk {
    dir: PathBuf,
}

impl SmallDisk {
    fn mount(dir: &Path, mb: u32) -> SmallDisk {
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mb}m"), "tmpfs"])
            .arg(dir)
            .status();
        assert!(
            status.is_ok_and(|s| s.success()),
            "the disk-fault test mounts a small tmpfs at {}: it needs root",
            dir.display()
        );
        SmallDisk {
            dir: dir.to_path_buf(),
        }
    }

    /// Take every free byte.
    fn fill(&self) {
        use std::io::Write;
        let mut f = std::fs::File::create(self.dir.join("filler")).unwrap();
        let chunk = vec![0u8; 64 * 1024];
        while f.write_all(&chunk).is_ok() {}
        // The last partial chunk, byte by byte.
        while f.write_all(&[0]).is_ok() {}
    }

    fn clear(&self) {
        std::fs::remove_file(self.dir.join("filler")).unwrap();
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.dir)
            .status();
    }
}

/// A TCP proxy in front of Postgres that can cut every connection and refuse new ones.
struct PgProxy {
    port: u16,
    cut: Arc<AtomicBool>,
    live: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl PgProxy {
    async fn start(upstream: String) -> PgProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = Arc::new(AtomicBool::new(false));
        let live: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>> = Arc::default();
        let accept = {
            let (cut, live) = (cut.clone(), live.clone());
            tokio::spawn(async move {
                loop {
                    let Ok((mut inbound, _)) = listener.accept().await else {
                        return;
                    };
                    if cut.load(Ordering::SeqCst) {
                        drop(inbound);
                        continue;
                    }
                    let upstream = upstream.clone();
                    live.lock().unwrap().push(tokio::spawn(async move {
                        if let Ok(mut out) = tokio::net::TcpStream::connect(upstream).await {
                            let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                        }
                    }));
                }
            })
        };
        PgProxy {
            port,
            cut,
            live,
            accept,
        }
    }

    /// The database unreachable: every open connection dropped, new ones refused.
    fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for t in self.live.lock().unwrap().drain(..) {
            t.abort();
        }
    }

    fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

impl Drop for PgProxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

/// How a test takes the database away.
enum Outage {
    Disk(SmallDisk),
    Proxy(PgProxy),
}

impl Outage {
    fn begin(&self) {
        match self {
            Outage::Disk(d) => d.fill(),
            Outage::Proxy(p) => p.cut(),
        }
    }

    fn end(&self) {
        match self {
            Outage::Disk(d) => d.clear(),
            Outage::Proxy(p) => p.restore(),
        }
    }
}

/// The demo county with the spy granted emergency buttons (so it keeps every press), on a
/// database the returned [`Outage`] can take away.
async fn host_with_outage(backend: Backend) -> (TestHost, Outage) {
    let data = tempfile::tempdir().unwrap();
    let mut config = linli_tests::test_config(backend, data.path()).await;
    let outage = match backend {
        // The data dir (and so the database) on a disk the test can fill.
        Backend::Sqlite => Outage::Disk(SmallDisk::mount(data.path(), 96)),
        // The database behind a proxy the test can cut.
        Backend::Postgres => {
            let base = linli_tests::postgres_base_url();
            let upstream = base
                .split('@')
                .nth(1)
                .and_then(|rest| rest.split('/').next())
                .expect("postgres://user@host:port/db")
                .to_owned();
            let proxy = PgProxy::start(upstream.clone()).await;
            let url = config.database_url.take().unwrap();
            config.database_url =
                Some(url.replacen(&upstream, &format!("127.0.0.1:{}", proxy.port), 1));
            Outage::Proxy(proxy)
        }
    };
    let plugins = tempfile::tempdir().unwrap();
    std::fs::copy(SPY, plugins.path().join("spy.wasm")).unwrap();
    config.seed_demo = true;
    config.demo_plugins_dir = Some(plugins.path().to_path_buf());
    config.devices.messages_per_second = 1000;
    config.devices.burst = 1000;
    let h = TestHost::start_with(config, data).await;
    assert!(h.platform.seed_demo().await.unwrap());
    drop(plugins);
    grant_spy(&h, "device.emergency-button").await;
    (h, outage)
}

/// Grant the spy in dongcun `capability`, as the security admin.
async fn grant_spy(h: &TestHost, capability: &str) {
    let sec = sign_in(h, SECADMIN).await;
    let (status, r) = call(
        h,
        Some(&sec),
        Method::PUT,
        &format!("/api/v1/tenants/dongcun/plugins/spy/grants/{capability}"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{r}");
}

/// A press from 李桂兰's button over HTTP: the status and body.
async fn press(h: &TestHost, secret: &str, n: u32) -> (u16, Value) {
    let r = h
        .client
        .post(h.url("/api/v1/device-messages/dongcun-sos-li"))
        .bearer_auth(secret)
        .json(&json!({"type": "press", "id": format!("press-{n}")}))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let retry_after = r.headers().get("retry-after").cloned();
    let body: Value = r.json().await.unwrap_or(Value::Null);
    if status == 503 {
        assert!(retry_after.is_some(), "a 503 says when to retry: {body}");
    }
    (status, body)
}

/// The ids of the presses the spy was handed, with how many times each.
async fn presses_seen(h: &TestHost) -> BTreeMap<String, usize> {
    let (status, r) = call(h, None, Method::GET, "/t/dongcun/p/spy/telemetry", None).await;
    assert_eq!(status, 200, "{r}");
    ids_seen(&r)
}

/// The message ids in the spy's `/telemetry` answer, with how many times each.
fn ids_seen(telemetry: &Value) -> BTreeMap<String, usize> {
    let mut seen = BTreeMap::new();
    for m in telemetry["telemetry"].as_array().unwrap() {
        if let Some(id) = m["payload"]["id"].as_str() {
            *seen.entry(id.to_owned()).or_insert(0) += 1;
        }
    }
    seen
}

/// `/readyz`: status and body.
async fn readyz(h: &TestHost) -> (u16, Value) {
    let r = h.client.get(h.url("/readyz")).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// Presses during a database outage: every press answered 2xx has its alarm (the spy is
/// handed it, once); the others got 503 with `Retry-After` and succeed when sent again; a
/// press sent again with the same id is not handed over twice. On SQLite the outage is a full
/// disk, and writes recover by themselves within seconds of it clearing — no restart.
async fn presses_during_a_database_outage(backend: Backend) {
    let (h, outage) = host_with_outage(backend).await;
    let secret = secret_of(&h, "dongcun-sos-li").await;
    for n in 0..10 {
        let (status, r) = press(&h, &secret, n).await;
        assert_eq!(status, 202, "{r}");
        assert_eq!(
            (r["delivered"].as_u64(), r["duplicate"].as_bool()),
            (Some(1), Some(false)),
            "{r}"
        );
    }
    assert_eq!(readyz(&h).await.0, 200);

    outage.begin();
    // Presses while the database is away, some at once.
    let answers: Vec<(u32, u16)> = futures::future::join_all((10..40).map(|n| {
        let (h, secret) = (&h, &secret);
        async move { (n, press(h, secret, n).await.0) }
    }))
    .await;
    for (n, status) in &answers {
        assert!(
            *status == 202 || *status == 503,
            "press {n}: {status} (only 202 or 503 are honest here)"
        );
    }
    let refused: Vec<u32> = answers
        .iter()
        .filter(|(_, s)| *s != 202)
        .map(|(n, _)| *n)
        .collect();
    assert!(
        !refused.is_empty(),
        "the outage refused nothing: it did not take the database away"
    );
    let (status, r) = readyz(&h).await;
    assert_eq!(status, 503, "/readyz during the outage: {r}");
    assert_eq!(r["error"]["detail"]["checks"]["writes"], false, "{r}");
    outage.end();

    // Writes come back by themselves, within seconds.
    let mut ready = false;
    for _ in 0..100 {
        if readyz(&h).await.0 == 200 {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        ready,
        "writes did not recover within 10 s of the fault clearing"
    );
    // The refused presses, sent again, are taken; presses already taken, sent again, are
    // recognised.
    for n in &refused {
        let (status, r) = press(&h, &secret, *n).await;
        assert_eq!(status, 202, "press {n} again: {r}");
    }
    for n in [0, 5, 9] {
        let (status, r) = press(&h, &secret, n).await;
        assert_eq!((status, &r["duplicate"]), (202, &json!(true)), "{r}");
    }
    // Whatever was stored but not handed over during the outage is handed over by the
    // worker, with backoff.
    let want: BTreeSet<String> = (0..40).map(|n| format!("press-{n}")).collect();
    let mut seen = BTreeMap::new();
    for _ in 0..200 {
        h.platform.deliver_outbox().await.unwrap();
        seen = presses_seen(&h).await;
        if want.iter().all(|id| seen.contains_key(id)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let missing: Vec<_> = want.iter().filter(|id| !seen.contains_key(*id)).collect();
    assert!(missing.is_empty(), "presses lost: {missing:?}");
    let doubled: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(doubled.is_empty(), "presses handed over twice: {doubled:?}");
    assert_eq!(seen.len(), 40, "{seen:?}");
    // Plugin data writes work again too.
    let (status, _) = call(&h, None, Method::GET, "/t/dongcun/p/spy/telemetry", None).await;
    assert_eq!(status, 200);
    drop(h);
    drop(outage);
}

/// 500 QoS 1 messages wait at the broker for the host's session before it starts; the broker
/// restarts while they stream in. All reach the plugin, none twice; the link never stalls;
/// `/readyz` shows the link down while it is, and up again after.
async fn backlog_and_broker_restart(backend: Backend) {
    const BACKLOG: usize = 500;
    let mut broker = Broker::new();
    let (url, prefix, client) = (broker.url(), unique("p"), unique("host"));
    let h = demo_tweaked(backend, &[SPY], {
        let prefix = prefix.clone();
        move |c| {
            c.devices.mqtt_url = Some(url);
            c.devices.topic_prefix = prefix;
            c.devices.mqtt_client_id = client;
            c.devices.messages_per_second = 10_000;
            c.devices.burst = 10_000;
        }
    })
    .await;
    grant_spy(&h, "device.barrier").await;
    let topic = format!("{prefix}/dongcun/dongcun-gate-1/up");
    let publish = |payloads: Vec<String>| {
        let (topic, port) = (topic.clone(), broker.port);
        async move {
            let opts = rumqttc::MqttOptions::new(unique("gate"), "127.0.0.1", port);
            let (device, mut eventloop) = rumqttc::AsyncClient::new(opts, 1024);
            let n = payloads.len();
            let send = async {
                for p in payloads {
                    device
                        .publish(&topic, rumqttc::QoS::AtLeastOnce, false, p)
                        .await
                        .unwrap();
                }
            };
            let acked = async {
                let mut acked = 0;
                while acked < n {
                    if let rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_)) =
                        eventloop.poll().await.expect("test broker reachable")
                    {
                        acked += 1;
                    }
                }
            };
            tokio::time::timeout(Duration::from_secs(60), futures::future::join(send, acked))
                .await
                .expect("the broker took every message");
        }
    };
    let message = |id: String| json!({"type": "heartbeat", "id": id}).to_string();

    // The host's persistent session exists (it subscribed once), then the host goes away.
    let link = tokio::spawn(linli::mqtt::run(h.platform.clone()));
    let mut probes = 0;
    while presses_seen(&h).await.is_empty() {
        probes += 1;
        assert!(probes < 100, "the host never received from the test broker");
        publish(vec![message(format!("probe-{probes}"))]).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    link.abort();
    let _ = link.await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    // The backlog, queued at the broker while the host is away.
    publish((1..=BACKLOG).map(|n| message(format!("m-{n}"))).collect()).await;
    let link = tokio::spawn(linli::mqtt::run(h.platform.clone()));
    // Mid-stream, the broker restarts.
    let mut streamed = 0;
    for _ in 0..600 {
        streamed = backlog_seen(&h).await.len();
        if streamed >= 50 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(streamed >= 50, "the backlog did not start arriving");
    broker.stop();
    let mut down = false;
    for _ in 0..300 {
        let (status, r) = readyz(&h).await;
        if status == 503 && r["error"]["detail"]["checks"]["mqtt"] == false {
            down = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        down,
        "/readyz never showed the link down while the broker was"
    );
    broker.start();

    let mut seen = BTreeMap::new();
    for _ in 0..1200 {
        seen = backlog_seen(&h).await;
        if seen.len() >= BACKLOG {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let missing: Vec<usize> = (1..=BACKLOG)
        .filter(|n| !seen.contains_key(&format!("m-{n}")))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {BACKLOG} never reached the plugin (first: {:?})",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    let doubled: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(doubled.is_empty(), "handed over twice: {doubled:?}");
    let mut up = false;
    for _ in 0..300 {
        if readyz(&h).await.0 == 200 {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(up, "/readyz did not recover with the link");
    // Nothing left waiting for an acknowledgement: the link is not stalled.
    let text = h.platform.metrics.render();
    assert!(
        text.lines().any(|l| l == "linli_mqtt_connected 1"),
        "{text}"
    );
    let mut drained = false;
    for _ in 0..100 {
        let text = h.platform.metrics.render();
        if text.lines().any(|l| l == "linli_mqtt_unacknowledged 0") {
            drained = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(drained, "messages left unacknowledged");
    link.abort();
}

async fn backlog_seen(h: &TestHost) -> BTreeMap<String, usize> {
    presses_seen(h)
        .await
        .into_iter()
        .filter(|(id, _)| id.starts_with("m-"))
        .collect()
}

/// What a test SMS gateway and webhook received, by delivery id.
type Received = Arc<Mutex<Vec<(String, String)>>>;

/// A gateway taking `/sms` and `/webhook`, recording each send's `Idempotency-Key`.
async fn gateway() -> (String, Received) {
    let got: Received = Arc::default();
    let app = {
        let got = got.clone();
        axum::Router::new().route(
            "/{kind}",
            axum::routing::post(
                move |axum::extract::Path(kind): axum::extract::Path<String>,
                      headers: axum::http::HeaderMap,
                      axum::Json(body): axum::Json<Value>| {
                    let got = got.clone();
                    async move {
                        let key = headers
                            .get("idempotency-key")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_owned();
                        // The SMS body names its send too, for gateways that read only it.
                        if kind == "sms" {
                            assert_eq!(body["id"], key.as_str());
                        }
                        got.lock().unwrap().push((kind, key));
                        "ok"
                    }
                },
            ),
        )
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (base, got)
}

/// A second replica of `h`: the same database (and audit key), its own process state.
async fn replica(h: &TestHost) -> TestHost {
    let config = h.platform.config.clone();
    TestHost::start_with(config, tempfile::tempdir().unwrap()).await
}

async fn undelivered(h: &TestHost) -> i64 {
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM outbox WHERE delivered_at IS NULL")
        .fetch_one(h.platform.db.pool())
        .await
        .unwrap();
    n
}

/// Two replicas deliver one outbox: 100 emergency notifications with SMS and webhook
/// channels are each sent once (and every send carries its id), 14 ticks are each handed
/// to the plugin once.
async fn two_replicas_send_once(backend: Backend) {
    let (base, got) = gateway().await;
    let a = demo_tweaked(backend, &[SPY], {
        let base = base.clone();
        move |c| {
            c.messaging.sms_min_urgency = "emergency".into();
            c.messaging.sms_url = Some(format!("{base}/sms"));
            c.messaging.webhook_url = Some(format!("{base}/webhook"));
            c.messaging.loudspeaker_min_urgency = "off".into();
        }
    })
    .await;
    grant_spy(&a, "messaging.notify").await;
    let b = replica(&a).await;
    for i in 0..100 {
        let (status, r) = call(
            if i % 2 == 0 { &a } else { &b },
            None,
            Method::GET,
            &format!("/t/dongcun/p/spy/notify?to=everyone&key=n{i}"),
            None,
        )
        .await;
        assert_eq!(status, 200, "{r}");
    }
    let at = linli::storage::now_ms() - 60_000;
    for i in 0..14 {
        assert!(
            a.platform
                .queue_tick("dongcun", "spy", "minute", at + i * 1_000)
                .await
                .unwrap()
        );
    }
    let workers = [
        tokio::spawn(a.platform.clone().run_outbox()),
        tokio::spawn(b.platform.clone().run_outbox()),
    ];
    let mut left = -1;
    for _ in 0..600 {
        left = undelivered(&a).await;
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(left, 0, "the outbox did not drain");
    for w in workers {
        w.abort();
    }
    let got = got.lock().unwrap().clone();
    for kind in ["sms", "webhook"] {
        let keys: Vec<&String> = got
            .iter()
            .filter(|(k, _)| k == kind)
            .map(|(_, id)| id)
            .collect();
        let distinct: BTreeSet<&String> = keys.iter().copied().collect();
        assert_eq!(keys.len(), 100, "{kind}: {} sends", keys.len());
        assert_eq!(distinct.len(), 100, "{kind}: sent twice");
        assert!(
            distinct.iter().all(|k| !k.is_empty()),
            "{kind}: a send without its id"
        );
    }
    let (status, r) = call(
        &a,
        None,
        Method::GET,
        "/t/dongcun/p/spy/events?ticks=1",
        None,
    )
    .await;
    assert_eq!(status, 200, "{r}");
    let ticks: Vec<i64> = r["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["due_at_ms"].as_i64())
        .collect();
    let distinct: BTreeSet<i64> = ticks.iter().copied().collect();
    assert_eq!(distinct.len(), 14, "{ticks:?}");
    assert_eq!(ticks.len(), 14, "a tick handed over twice: {ticks:?}");
}

/// Two replicas started together on an empty database both come up; the demo county is
/// seeded once.
async fn replicas_start_together(backend: Backend) {
    let plugins = tempfile::tempdir().unwrap();
    std::fs::copy(SPY, plugins.path().join("spy.wasm")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut config = linli_tests::test_config(backend, dir.path()).await;
    config.seed_demo = true;
    config.demo_plugins_dir = Some(plugins.path().to_path_buf());
    let (a, b) = tokio::join!(
        linli::platform::Platform::open(config.clone()),
        linli::platform::Platform::open(config.clone())
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    let (sa, sb) = tokio::join!(a.seed_demo(), b.seed_demo());
    let (sa, sb) = (sa.unwrap(), sb.unwrap());
    assert!(sa ^ sb, "seeded once: {sa} {sb}");
    assert!(a.demo_seeded().await.unwrap() && b.demo_seeded().await.unwrap());
    let tenants = linli::storage::tenants::count(&a.db).await.unwrap();
    assert_eq!(tenants, 5, "one demo county");
    // A restart of either on the seeded database just comes up.
    assert!(!a.seed_demo().await.unwrap());
}

/// Leases: two workers claiming from one outbox at the same time never get the same entry.
async fn claims_do_not_overlap(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let a = linli_tests::test_db(backend, dir.path()).await;
    for i in 0..300 {
        linli::storage::outbox::enqueue(&a, "t", "p", "event", &format!("k{i}"), "{}")
            .await
            .unwrap();
    }
    let now = linli::storage::now_ms();
    let claim = |db: linli::storage::Db| async move {
        let mut mine = Vec::new();
        loop {
            let got = linli::storage::outbox::claim_due(&db, now, 7)
                .await
                .unwrap();
            if got.is_empty() {
                return mine;
            }
            mine.extend(got.into_iter().map(|e| e.id));
        }
    };
    let (x, y, z) = tokio::join!(claim(a.clone()), claim(a.clone()), claim(a.clone()));
    let all: Vec<&String> = x.iter().chain(&y).chain(&z).collect();
    let distinct: BTreeSet<&String> = all.iter().copied().collect();
    assert_eq!(all.len(), 300, "every entry claimed once");
    assert_eq!(distinct.len(), 300, "an entry claimed twice");
    // Leased entries are not due again until the lease runs out.
    assert!(
        linli::storage::outbox::claim_due(&a, now + 1_000, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let later = now + linli::storage::outbox::LEASE_MS + 1;
    assert_eq!(
        linli::storage::outbox::claim_due(&a, later, 1000)
            .await
            .unwrap()
            .len(),
        300
    );
}

/// A call cut off at its deadline says whether a change of it was saved: 504 with
/// `applied: true` (some of it, perhaps not all: check before trying again) and the data
/// there, or `applied: false` and nothing changed (safe to try again).
async fn deadline_says_whether_it_was_saved(backend: Backend) {
    let h = TestHost::start(backend, |c| c.limits.call_timeout_ms = 400).await;
    h.village("dongcun").await;
    h.install("dongcun", HOSTILE).await;
    let (status, body) = h.get("/t/dongcun/p/hostile/save-and-sleep?key=k1").await;
    assert_eq!(status, 504, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["detail"]["applied"], true, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("saving some of its changes"),
        "{v}"
    );
    let (status, got) = h.get("/t/dongcun/p/hostile/get?key=k1").await;
    assert_eq!((status, got.as_str()), (200, "saved"));
    let (status, body) = h.get("/t/dongcun/p/hostile/sleep").await;
    assert_eq!(status, 504, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["detail"]["applied"], false, "{v}");
    // Neither counts against the plugin: it is still active.
    let row = linli::storage::installs::get(&h.platform.db, "dongcun", "hostile")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.status, linli::storage::installs::Status::Active);
}

/// A pending audit record not appended by the host (inserted by hand, without the key) is
/// never sealed as what it claims: it goes into the chain as a refusal, and the chain
/// verifies.
async fn forged_pending_audit_is_refused(backend: Backend) {
    use linli::storage::audit;
    let h = TestHost::start(backend, |_| {}).await;
    h.village("dongcun").await;
    sqlx::query(
        "INSERT INTO audit_pending (id, at, actor, action, outcome, detail, seq_hint, mac) \
         VALUES ('forged', 1, 'p-someone', 'identity.read', 'ok', '{}', 1, 'deadbeef')",
    )
    .execute(h.platform.db.pool())
    .await
    .unwrap();
    let records = audit::list(&h.platform.db, 0, 100).await.unwrap();
    assert!(
        !records.iter().any(|r| r.action == "identity.read"),
        "a forged record was sealed as genuine"
    );
    let refused = records
        .iter()
        .find(|r| r.action == "audit.rejected")
        .expect("the refusal is in the chain");
    assert!(refused.detail.contains("p-someone"), "{refused:?}");
    assert_eq!(audit::pending(&h.platform.db).await.unwrap(), 0);
    // A genuine pending record, copied before it is sealed and put back after: refused too.
    h.village("xicun").await;
    let db = h.platform.db.pool();
    sqlx::query("CREATE TABLE replay_copy AS SELECT * FROM audit_pending")
        .execute(db)
        .await
        .unwrap();
    let (copied,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM replay_copy")
        .fetch_one(db)
        .await
        .unwrap();
    assert_eq!(copied, 1);
    audit::seal(&h.platform.db).await.unwrap();
    sqlx::query("INSERT INTO audit_pending SELECT * FROM replay_copy")
        .execute(db)
        .await
        .unwrap();
    let records = audit::list(&h.platform.db, 0, 100).await.unwrap();
    let creates = records
        .iter()
        .filter(|r| r.action == "tenant.create")
        .count();
    assert_eq!(creates, 4, "the replayed record was not sealed twice");
    let last = records.last().unwrap();
    assert_eq!(last.action, "audit.rejected", "{last:?}");
    assert!(last.outcome.contains("replayed"), "{last:?}");
    assert!(matches!(
        audit::verify(&h.platform.db).await.unwrap(),
        audit::Verdict::Intact { .. }
    ));
}

/// kill -9 in the middle of a storm of presses over HTTP: after a restart, every press that
/// was answered 202 is handed to the plugin; presses whose answer was lost in the crash are
/// sent again with their id and end up there too. Resending adds nothing: a press is handed
/// over a second time only if the host died while its handler ran (handlers get device
/// messages at least once — the spy records raw deliveries; 居家养老 keys its alarms by the
/// message), so at most the presses in flight at the kill.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presses_survive_kill_9() {
    use crate::cli::Server;
    let data = tempfile::tempdir().unwrap();
    let demo = tempfile::tempdir().unwrap();
    std::fs::copy(SPY, demo.path().join("spy.wasm")).unwrap();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let admin = |method: Method, base: &str, path: &str| {
        client
            .request(method, format!("{base}{path}"))
            .bearer_auth(linli_tests::ADMIN_TOKEN)
    };
    let env = [
        ("LINLI_DEVICES__MESSAGES_PER_SECOND", "1000"),
        ("LINLI_DEVICES__BURST", "1000"),
    ];
    let server = tokio::task::block_in_place(|| Server::start_with(data.path(), demo.path(), &env));
    let base = server.base.clone();
    let r = admin(
        Method::PUT,
        &base,
        "/api/v1/tenants/dongcun/plugins/spy/grants/device.emergency-button",
    )
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let r: Value = admin(Method::POST, &base, "/api/v1/devices/dongcun-sos-li/secret")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let secret = r["secret"].as_str().expect("a secret").to_owned();
    let press = {
        let (client, secret) = (client.clone(), secret.clone());
        move |base: String, n: u32| {
            let (client, secret) = (client.clone(), secret.clone());
            async move {
                let r = client
                    .post(format!("{base}/api/v1/device-messages/dongcun-sos-li"))
                    .bearer_auth(&secret)
                    .json(&json!({"type": "press", "id": format!("press-{n}")}))
                    .send()
                    .await;
                match r {
                    Ok(r) => Some(r.status().as_u16()),
                    Err(_) => None,
                }
            }
        }
    };
    // Presses from four devices' worth of concurrency; the host dies under them.
    const PRESSES: u32 = 400;
    let storm = {
        let (base, press) = (base.clone(), press.clone());
        tokio::spawn(futures::StreamExt::collect::<Vec<(u32, Option<u16>)>>(
            futures::StreamExt::buffer_unordered(
                futures::stream::iter((0..PRESSES).map(move |n| {
                    let fut = press(base.clone(), n);
                    async move { (n, fut.await) }
                })),
                4,
            ),
        ))
    };
    // Kill once a good part of the storm was acknowledged.
    loop {
        let (status, r) = {
            let r = client
                .get(format!("{base}/t/dongcun/p/spy/telemetry"))
                .send()
                .await
                .unwrap();
            (
                r.status().as_u16(),
                r.json::<Value>().await.unwrap_or(Value::Null),
            )
        };
        assert_eq!(status, 200, "{r}");
        if r["telemetry"].as_array().map_or(0, Vec::len) >= 100 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::task::block_in_place(|| server.kill());
    let answers = storm.await.unwrap();
    let acked: BTreeSet<u32> = answers
        .iter()
        .filter(|(_, s)| *s == Some(202))
        .map(|(n, _)| *n)
        .collect();
    let unanswered: Vec<u32> = answers
        .iter()
        .filter(|(_, s)| *s != Some(202))
        .map(|(n, _)| *n)
        .collect();
    assert!(
        acked.len() >= 100 && !unanswered.is_empty(),
        "the kill landed mid-storm: {} acknowledged, {} not",
        acked.len(),
        unanswered.len()
    );

    let server = tokio::task::block_in_place(|| Server::start_with(data.path(), demo.path(), &env));
    let base = server.base.clone();
    for n in &unanswered {
        assert_eq!(press(base.clone(), *n).await, Some(202), "press {n} again");
    }
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for _ in 0..600 {
        let r: Value = client
            .get(format!("{base}/t/dongcun/p/spy/telemetry"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        seen = ids_seen(&r);
        if seen.len() >= PRESSES as usize {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let lost: Vec<&u32> = acked
        .iter()
        .filter(|n| !seen.contains_key(&format!("press-{n}")))
        .collect();
    assert!(
        lost.is_empty(),
        "acknowledged presses lost in the crash: {lost:?}"
    );
    let missing: Vec<u32> = (0..PRESSES)
        .filter(|n| !seen.contains_key(&format!("press-{n}")))
        .collect();
    assert!(
        missing.is_empty(),
        "presses sent again after the crash missing: {missing:?}"
    );
    let doubled: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        doubled.len() <= 4 && doubled.iter().all(|(_, n)| **n == 2),
        "handed over more often than the crash explains (4 in flight): {doubled:?}"
    );
    tokio::task::block_in_place(|| server.stop());
}

/// A message without `id` or `ts`: each one sent is new (two presses are two alarms), but a
/// broker's redelivery of it (MQTT DUP) is matched to the original and not handed over again.
async fn keyless_redelivery_is_matched(backend: Backend) {
    let h = demo_tweaked(backend, &[SPY], |c| {
        c.devices.messages_per_second = 100;
        c.devices.burst = 100;
    })
    .await;
    grant_spy(&h, "device.emergency-button").await;
    let p = &h.platform;
    let body = br#"{"type":"press","battery":77}"#;
    let first = p
        .ingest_message(Some("dongcun"), "dongcun-sos-li", body, false)
        .await
        .unwrap();
    assert!(!first.duplicate && first.delivered() == 1, "{first:?}");
    let again = p
        .ingest_message(Some("dongcun"), "dongcun-sos-li", body, true)
        .await
        .unwrap();
    assert!(again.duplicate && again.deliveries.is_empty(), "{again:?}");
    let second_press = p
        .ingest_message(Some("dongcun"), "dongcun-sos-li", body, false)
        .await
        .unwrap();
    assert!(!second_press.duplicate && second_press.delivered() == 1);
    let (_, r) = call(&h, None, Method::GET, "/t/dongcun/p/spy/telemetry", None).await;
    assert_eq!(r["telemetry"].as_array().unwrap().len(), 2, "{r}");
}

on_both_backends!(
    keyless_redelivery_is_matched,
    presses_during_a_database_outage,
    backlog_and_broker_restart,
    two_replicas_send_once,
    replicas_start_together,
    claims_do_not_overlap,
    deadline_says_whether_it_was_saved,
    forged_pending_audit_is_refused,
);
