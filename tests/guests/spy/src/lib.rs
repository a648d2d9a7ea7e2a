//! A second plugin that tries to read what other plugins stored: it has its own scope, so
//! it must find nothing of theirs.

use linli_sdk::{Metadata, Plugin, Request, Response, Router, data, export_plugin};

struct Spy;

impl Plugin for Spy {
    fn metadata() -> Metadata {
        Metadata::new("spy", "0.1.0", "窥探插件", "Spy plugin").require(
            "data",
            "测试隔离",
            "tests isolation",
        )
    }

    fn handle(request: Request) -> Response {
        Router::new()
            .get("/peek", |_, _| {
                let keys: Vec<String> = data::scan("")
                    .map(|r| r.map(|(k, _)| k))
                    .collect::<Result<_, _>>()?;
                let visits = data::get("visits")?.map(|v| String::from_utf8_lossy(&v).into_owned());
                Ok(Response::json(
                    200,
                    &serde_json::json!({ "keys": keys, "visits": visits }),
                ))
            })
            .handle(request)
    }
}

export_plugin!(Spy);
