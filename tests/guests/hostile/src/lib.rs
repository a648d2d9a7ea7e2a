//! A plugin that misbehaves on request: every route attacks one limit of the host.
//! The integration tests call each route and check the host contains it.

use linli_sdk::data::{self, Batch};
use linli_sdk::{Error, Metadata, Plugin, Request, Response, Router, export_plugin, log};

struct Hostile;

fn size_param(req: &Request, default: usize) -> usize {
    req.query_param("bytes")
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn answer(result: Result<impl serde::Serialize, Error>) -> Result<Response, Error> {
    // Report the host's answer to the test instead of failing, so the test sees the error kind.
    Ok(match result {
        Ok(v) => Response::json(200, &serde_json::json!({ "ok": v })),
        Err(e) => Response::json(
            200,
            &serde_json::json!({ "error": e.code(), "message": e.to_string() }),
        ),
    })
}

/// Recursion whose frames live on the wasm stack (no address-taken locals, so nothing on
/// the shadow stack in linear memory) and that the optimiser cannot turn into a loop.
#[inline(never)]
#[allow(unconditional_recursion)]
fn deep(n: u64) -> u64 {
    if n == u64::MAX {
        return 0;
    }
    deep(n.wrapping_add(1))
        .wrapping_mul(3)
        .wrapping_add(n ^ 0x5a)
}

impl Plugin for Hostile {
    fn metadata() -> Metadata {
        Metadata::new("hostile", "0.1.0", "恶意插件", "Hostile plugin")
            .description("测试宿主限额。", "Tests the host's limits.")
            .require("data", "测试", "testing")
            .require("log", "测试", "testing")
    }

    fn handle(request: Request) -> Response {
        Router::new()
            .get("/ping", |_, _| Ok(Response::text(200, "pong")))
            // Pages that break the page schema in one way each: the host must refuse them.
            .get("/page/{kind}", |req, params| {
                let kind = params.get("kind").unwrap_or("");
                let n = size_param(req, 10);
                let body = match kind {
                    "good" => serde_json::json!({"linli_page": 1, "title": "ok", "body": [
                        {"type": "text", "text": "<script>alert(1)</script>"}]}),
                    "html" => serde_json::json!({"linli_page": 1, "title": "t", "body": [
                        {"type": "html", "html": "<script>alert(1)</script>"}]}),
                    "script-link" => serde_json::json!({"linli_page": 1, "title": "t", "body": [
                        {"type": "list", "items": [{"title": "x", "path": "javascript:alert(1)"}]}]}),
                    "offsite-redirect" => serde_json::json!({"linli_page": 1, "title": "t",
                        "redirect": "//evil.example/"}),
                    // A link, a form action and a redirect to `?to=`: paths that try to
                    // leave the plugin (`/.%2e/.%2e/api/v1/…`).
                    "link-to" => serde_json::json!({"linli_page": 1, "title": "t", "body": [
                        {"type": "list", "items": [{"title": "x", "path": req.query_param("to").unwrap_or_default()}]}]}),
                    "form-to" => serde_json::json!({"linli_page": 1, "title": "t", "body": [
                        {"type": "form", "action": req.query_param("to").unwrap_or_default(),
                         "submit": "go", "fields": []}]}),
                    "redirect-to" => serde_json::json!({"linli_page": 1, "title": "t",
                        "redirect": req.query_param("to").unwrap_or_default()}),
                    "deep" => (0..n).fold(serde_json::json!({"type": "text", "text": "x"}), |inner, _| {
                        serde_json::json!({"type": "card", "title": "c", "body": [inner]})
                    }),
                    "many" => serde_json::json!({"linli_page": 1, "title": "t",
                        "body": vec![serde_json::json!({"type": "text", "text": "x"}); n]}),
                    "long-text" => serde_json::json!({"linli_page": 1, "title": "t", "body": [
                        {"type": "text", "text": "x".repeat(n)}]}),
                    _ => serde_json::json!("not a page"),
                };
                let body = if kind == "deep" {
                    serde_json::json!({"linli_page": 1, "title": "t", "body": [body]})
                } else {
                    body
                };
                Ok(Response {
                    status: 200,
                    headers: vec![(
                        "content-type".into(),
                        "Application/Vnd.Linli.Page+JSON; version=1".into(),
                    )],
                    body: serde_json::to_vec(&body).unwrap_or_default(),
                })
            })
            // Spin forever: the epoch deadline must stop it.
            .get("/loop", |_, _| {
                let mut x: u64 = 0;
                loop {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
            })
            // Sleep in a host call (wasi poll; `?ms=`, default an hour): the wall-clock
            // deadline must stop it, and waiting is not the plugin burning CPU.
            .get("/sleep", |req, _| {
                let ms = req
                    .query_param("ms")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(3_600_000u64);
                std::thread::sleep(std::time::Duration::from_millis(ms));
                Ok(Response::text(200, "woke"))
            })
            // Save `?key=`, then sleep past the deadline: the caller must be told the change
            // was saved.
            .get("/save-and-sleep", |req, _| {
                let key = req.query_param("key").unwrap_or_default();
                data::set(&key, b"saved")?;
                std::thread::sleep(std::time::Duration::from_secs(3_600));
                Ok(Response::text(200, "woke"))
            })
            // Redirect to `?to=` with a Location header.
            .get("/location", |req, _| {
                Ok(Response::status(302)
                    .with_header("location", &req.query_param("to").unwrap_or_default()))
            })
            // Allocate until the memory limit refuses.
            .get("/alloc", |_, _| {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    let mut chunk = vec![0u8; 1 << 20];
                    chunk[0] = 1;
                    hoard.push(std::hint::black_box(chunk));
                }
            })
            // Recurse until the stack limit traps.
            .get("/recurse", |_, _| {
                Ok(Response::text(200, &deep(0).to_string()))
            })
            // Answer a body of ?bytes= bytes (default 8 MiB).
            .get("/huge", |req, _| {
                let n = size_param(req, 8 << 20);
                Ok(Response {
                    status: 200,
                    headers: vec![],
                    body: vec![b'x'; n],
                })
            })
            .get("/panic", |_, _| panic!("hostile plugin panics on purpose"))
            // Answer a status the host must refuse.
            .get("/bad-status", |_, _| Ok(Response::status(1000)))
            // Try to set headers the host owns.
            .get("/headers", |_, _| {
                Ok(Response::text(200, "headers")
                    .with_header("set-cookie", "session=stolen")
                    .with_header("access-control-allow-origin", "*")
                    .with_header("location", "https://evil.example/")
                    .with_header("x-linli-ok", "yes"))
            })
            // Echo what the plugin was given, to check credentials are hidden.
            .get("/echo-headers", |req, _| {
                let names: Vec<&str> = req.headers.iter().map(|(n, _)| n.as_str()).collect();
                Ok(Response::json(200, &names))
            })
            .get("/big-key", |req, _| {
                answer(data::set(&"k".repeat(size_param(req, 4096)), b"v"))
            })
            .get("/big-value", |req, _| {
                answer(data::set("v", &vec![7u8; size_param(req, 2 << 20)]))
            })
            .get("/empty-key", |_, _| answer(data::get("")))
            .get("/nul-key", |_, _| answer(data::set("a\0b", b"v")))
            .get("/many-keys", |req, _| {
                let n = size_param(req, 100);
                for i in 0..n {
                    if let Err(e) = data::set(&format!("many/{i}"), b"x") {
                        return answer(Err::<(), _>(e))
                            .map(|r| r.with_header("x-linli-stored", &i.to_string()));
                    }
                }
                answer(Ok(n))
            })
            .get("/big-batch", |req, _| {
                let mut b = Batch::new();
                for i in 0..size_param(req, 1000) {
                    b = b.set(&format!("b/{i}"), b"x");
                }
                answer(b.commit().map(|o| format!("{o:?}")))
            })
            .get("/not-a-counter", |_, _| {
                data::set("text", b"hello")?;
                answer(data::increment("text", 1))
            })
            .get("/overflow", |_, _| {
                data::set("max", i64::MAX.to_string().as_bytes())?;
                answer(data::increment("max", 1))
            })
            .get("/bad-cursor", |_, _| {
                answer(data::list_page("", Some("!!not-a-cursor"), 10).map(|_| ()))
            })
            // Keys that look like paths or other scopes are just keys in this scope.
            .get("/escape", |_, _| {
                let probes = [
                    "../hello/visits",
                    "visits",
                    "/dongcun/hello/visits",
                    "%2e%2e/visits",
                    "*",
                ];
                let mut seen = serde_json::Map::new();
                for p in probes {
                    let v = data::get(p)?;
                    seen.insert(
                        p.into(),
                        serde_json::json!(v.map(|b| String::from_utf8_lossy(&b).into_owned())),
                    );
                }
                let all: Vec<String> = data::scan("")
                    .map(|r| r.map(|(k, _)| k))
                    .collect::<Result<_, _>>()?;
                Ok(Response::json(
                    200,
                    &serde_json::json!({ "probes": seen, "keys": all }),
                ))
            })
            .get("/log-flood", |req, _| {
                let line = "y".repeat(size_param(req, 100));
                for _ in 0..10_000 {
                    log::info(&line);
                }
                Ok(Response::text(200, "flooded"))
            })
            .get("/stdout-flood", |_, _| {
                for i in 0..100_000 {
                    println!("stdout line {i}");
                }
                Ok(Response::text(200, "printed"))
            })
            .get("/unavailable", |_, _| {
                answer(linli_sdk::services::identity::current_caller().map(|_| ()))
            })
            .post("/set", |req, _| {
                let key = req.query_param("key").unwrap_or_default();
                data::set(&key, &req.body)?;
                Ok(Response::status(204))
            })
            .get("/get", |req, _| {
                let key = req.query_param("key").unwrap_or_default();
                Ok(match data::get(&key)? {
                    Some(v) => Response {
                        status: 200,
                        headers: vec![],
                        body: v,
                    },
                    None => Response::status(404),
                })
            })
            .handle(request)
    }
}

export_plugin!(Hostile);
