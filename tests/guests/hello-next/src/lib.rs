//! A later version of `examples/hello` that asks for more: `identity` becomes required,
//! `device.gate` is new, `log` and the identity fields are no longer asked for. The grant
//! tests upgrade hello to it and check the consent difference.

use linli_sdk::{Metadata, Plugin, Request, Response, Router, data, export_plugin};

struct HelloNext;

impl Plugin for HelloNext {
    fn metadata() -> Metadata {
        Metadata::new("hello", "9.0.0", "你好邻里", "Hello linli")
            .require(
                "data",
                "保存访问次数和留言",
                "store the visit count and guestbook entries",
            )
            .require("identity", "按住户统计访问", "count visits per household")
            .optional("device.gate", "访客开门", "open the gate for visitors")
    }

    fn handle(request: Request) -> Response {
        Router::new()
            .get("/visits", |_, _| {
                let visits: i64 = data::get_json("visits")?.unwrap_or(0);
                Ok(Response::json(
                    200,
                    &serde_json::json!({ "visits": visits, "version": "9.0.0" }),
                ))
            })
            .handle(request)
    }
}

export_plugin!(HelloNext);
