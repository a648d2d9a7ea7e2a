//! linli benchmarks. Prints figures, asserts nothing; run with `cargo bench -p linli-tests`.
//!
//! (a) instantiate + call of a trivial handler (fresh instance per call), against a native
//!     function doing the same work;
//! (b) HTTP requests/s through the gateway to a plugin doing one data get, and
//! (c) the same work in a native axum handler on the same server — ratio b/c;
//! (d) data get/set per second from a plugin vs the same sqlx calls natively, on SQLite and
//!     on Postgres;
//! (e) votes/s: 10,000 residents voting at once over HTTP on one topic of
//!     `plugins/consultation`, next to the rate of raw sqlx INSERTs (one row each, same
//!     concurrency) into the same database.

use std::sync::Arc;

use futures::StreamExt;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::routing::get;
use linli::platform::Platform;
use linli::runtime::CallContext;
use linli::runtime::bindings::Request;
use linli::storage::kv::{self, Scope};
use linli_tests::{BENCH, Backend, ROOT, TestHost};

const HTTP_REQUESTS: usize = 4_000;
const HTTP_CONCURRENCY: usize = 16;
const DATA_OPS: usize = 2_000;

fn request(path: &str) -> Request {
    Request {
        method: "GET".into(),
        path: path.into(),
        query: String::new(),
        headers: vec![],
        body: vec![],
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p) as usize]
}

async fn call(p: &Platform, path: &str, query: &str) {
    let row = p.installation(&ROOT, "dongcun", "bench").await.unwrap();
    let pre = p
        .runtime
        .prepared(&row.component, || async {
            unreachable!("installed components are cached")
        })
        .await
        .unwrap();
    let ctx = call_context(p);
    let mut req = request(path);
    req.query = query.into();
    let (out, _) = p.runtime.handle_http(&pre, ctx, req).await;
    let status = out.unwrap().status;
    assert!(status < 300, "{path}: {status}");
}

fn call_context(p: &Platform) -> CallContext {
    CallContext {
        scope: scope(),
        request_id: "bench".into(),
        db: p.db.clone(),
        log_limiter: Arc::new(linli::capabilities::log::LogLimiter::new(100)),
        served: vec!["qingshan".into(), "dongxi".into(), "dongcun".into()],
        caller: None,
        grants: Arc::new(["data".to_owned()].into_iter().collect()),
        commands: p.commands.clone(),
    }
}

fn scope() -> Scope {
    Scope {
        tenant: "dongcun".into(),
        plugin: "bench".into(),
    }
}

async fn bench_a(h: &TestHost) {
    let p = &h.platform;
    let row = p.installation(&ROOT, "dongcun", "bench").await.unwrap();
    let pre = p
        .runtime
        .prepared(&row.component, || async { unreachable!() })
        .await
        .unwrap();
    for _ in 0..200 {
        let _ = p
            .runtime
            .handle_http(&pre, call_context(p), request("/ping"))
            .await;
    }
    let mut times = Vec::with_capacity(5_000);
    for _ in 0..5_000 {
        let ctx = call_context(p);
        let req = request("/ping");
        let t = Instant::now();
        let (out, _) = p.runtime.handle_http(&pre, ctx, req).await;
        times.push(t.elapsed());
        assert_eq!(out.unwrap().status, 204);
    }
    times.sort();
    let mut native = Vec::with_capacity(5_000);
    for _ in 0..5_000 {
        let req = std::hint::black_box(request("/ping"));
        let t = Instant::now();
        let status: u16 = if req.path == "/ping" { 204 } else { 404 };
        std::hint::black_box((status, Vec::<u8>::new()));
        native.push(t.elapsed());
    }
    native.sort();
    let (median, native_median) = (percentile(&times, 0.5), percentile(&native, 0.5));
    println!(
        "(a) instantiate + call, trivial handler: median {:.1} µs, p99 {:.1} µs (target ≤ 10 µs median); \
         native function: median {:.3} µs; ratio {:.0}x",
        median.as_secs_f64() * 1e6,
        percentile(&times, 0.99).as_secs_f64() * 1e6,
        native_median.as_secs_f64() * 1e6,
        median.as_secs_f64() / native_median.as_secs_f64().max(1e-9),
    );
}

async fn requests_per_second(base: &str, path: &str) -> f64 {
    let client = reqwest::Client::new();
    for _ in 0..200 {
        client.get(format!("{base}{path}")).send().await.unwrap();
    }
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..HTTP_CONCURRENCY {
        let (client, url) = (client.clone(), format!("{base}{path}"));
        tasks.push(tokio::spawn(async move {
            for _ in 0..HTTP_REQUESTS / HTTP_CONCURRENCY {
                let r = client.get(&url).send().await.unwrap();
                assert!(r.status().is_success());
                r.bytes().await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    HTTP_REQUESTS as f64 / started.elapsed().as_secs_f64()
}

async fn native_get(State(p): State<Arc<Platform>>) -> Vec<u8> {
    kv::get(&p.db, &scope(), "bench/key")
        .await
        .unwrap()
        .unwrap_or_default()
}

async fn bench_bc(h: &TestHost, backend: Backend) {
    kv::set(
        &h.platform.db,
        &scope(),
        "bench/key",
        b"0123456789abcdef",
        1_000,
    )
    .await
    .unwrap();
    // A second server on the same platform with the native route added.
    let app = linli::api::router(h.platform.clone()).merge(
        axum::Router::new()
            .route("/native/get", get(native_get))
            .with_state(h.platform.clone()),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let plugin = requests_per_second(&base, "/t/dongcun/p/bench/get").await;
    let native = requests_per_second(&base, "/native/get").await;
    println!(
        "(b) {backend:?}: gateway → plugin, one data get: {plugin:.0} req/s\n\
         (c) {backend:?}: native axum handler, same get:  {native:.0} req/s\n    b/c = {:.2} (target ≥ 0.7)",
        plugin / native
    );
}

async fn bench_d(h: &TestHost, backend: Backend) {
    let p = &h.platform;
    for op in ["set", "get"] {
        call(p, "/loop", &format!("op={op}&n=100")).await;
        let t = Instant::now();
        call(p, "/loop", &format!("op={op}&n={DATA_OPS}")).await;
        let plugin = DATA_OPS as f64 / t.elapsed().as_secs_f64();
        let t = Instant::now();
        for i in 0..DATA_OPS {
            let key = format!("bench/{}", i % 100);
            if op == "set" {
                kv::set(&p.db, &scope(), &key, b"0123456789abcdef", 1_000)
                    .await
                    .unwrap();
            } else {
                kv::get(&p.db, &scope(), &key).await.unwrap();
            }
        }
        let native = DATA_OPS as f64 / t.elapsed().as_secs_f64();
        println!(
            "(d) {backend:?} data {op}: plugin {plugin:.0} ops/s, native sqlx {native:.0} ops/s, ratio {:.2}",
            plugin / native
        );
    }
}

const VOTERS: usize = 10_000;
const VOTE_CONCURRENCY: usize = 64;

async fn bench_e(backend: Backend) {
    let e = linli_tests::voting::election(backend, VOTERS).await;
    let votes: Vec<(usize, usize)> = (0..VOTERS).map(|i| (i, i % 3)).collect();
    let (statuses, took) = linli_tests::voting::vote_all(&e, &votes, VOTE_CONCURRENCY).await;
    let ok = statuses.iter().filter(|(s, _)| *s == 200).count();
    let mut failures = std::collections::BTreeMap::new();
    for (s, body) in statuses.iter().filter(|(s, _)| *s != 200) {
        *failures.entry((*s, body.clone())).or_insert(0) += 1;
    }
    for ((s, body), n) in failures {
        println!("    {n} × {s}: {body}");
    }
    let votes_per_s = VOTERS as f64 / took.as_secs_f64();

    // The same number of single-row INSERTs, same concurrency, same database.
    let db = e.host.platform.db.clone();
    sqlx::query("CREATE TABLE bench_inserts (id BIGINT PRIMARY KEY, voter TEXT NOT NULL, choice BIGINT NOT NULL)")
        .execute(db.pool())
        .await
        .unwrap();
    let started = Instant::now();
    futures::stream::iter(0..VOTERS)
        .map(|i| {
            let db = db.clone();
            async move {
                sqlx::query("INSERT INTO bench_inserts (id, voter, choice) VALUES ($1, $2, $3)")
                    .bind(i as i64)
                    .bind(format!("voter-{i}"))
                    .bind((i % 3) as i64)
                    .execute(db.pool())
                    .await
                    .unwrap();
            }
        })
        .buffer_unordered(VOTE_CONCURRENCY)
        .collect::<Vec<()>>()
        .await;
    let inserts_per_s = VOTERS as f64 / started.elapsed().as_secs_f64();
    println!(
        "(e) {backend:?}: {VOTERS} voters, {VOTE_CONCURRENCY} in flight: {votes_per_s:.0} votes/s \
         ({ok} answered 200) vs raw sqlx INSERT {inserts_per_s:.0} rows/s — ratio {:.3}",
        votes_per_s / inserts_per_s
    );
}

#[tokio::main]
async fn main() {
    // The host's warnings and errors (e.g. a vote that failed) go to stderr.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    println!(
        "linli benchmarks ({} cores)",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    // BENCH_ONLY=a (or e) runs just that one, for quick iterations.
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    let run = |b: &str| only.is_empty() || only == b;
    for backend in [Backend::Sqlite, Backend::Postgres] {
        if run("a") || run("b") || run("d") {
            let h = TestHost::start(backend, |c| c.limits.instances = 64).await;
            h.village("dongcun").await;
            h.install("dongcun", BENCH).await;
            if backend == Backend::Sqlite && run("a") {
                bench_a(&h).await;
            }
            if only == "a" {
                return;
            }
            bench_bc(&h, backend).await;
            bench_d(&h, backend).await;
        }
        if run("e") {
            bench_e(backend).await;
        }
    }
}
