//! hello — the linli vendor quickstart: a visit counter and a guestbook on the data API.
//!
//! Build: `cargo build --target wasm32-wasip2 --release` (→ `hello.wasm`).
//!
//! - `GET /`            counts the visit and greets
//! - `GET /visits`      the count, without counting
//! - `GET /guestbook`   the guestbook, newest first
//! - `POST /guestbook`  `{"name": "…", "message": "…"}` signs it
//! - `GET /me`          the signed-in caller's profile: name, phone and ID number, masked
//!   unless the township granted `identity.name` / `identity.phone` / `identity.id-number`

use linli_sdk::data::{self, Batch, BatchOutcome};
use linli_sdk::services::{Field, identity};
use linli_sdk::{Error, Metadata, Plugin, Request, Response, Router, export_plugin, log};
use serde::{Deserialize, Serialize};

struct Hello;

#[derive(Serialize, Deserialize)]
struct Entry {
    name: String,
    message: String,
}

const MAX_NAME: usize = 40;
const MAX_MESSAGE: usize = 500;

impl Plugin for Hello {
    fn metadata() -> Metadata {
        Metadata::new(
            "hello",
            env!("CARGO_PKG_VERSION"),
            "你好邻里",
            "Hello linli",
        )
        .description(
            "访问计数和留言簿：SDK 入门示例。",
            "A visit counter and a guestbook: the SDK quickstart.",
        )
        .require(
            "data",
            "保存访问次数和留言",
            "store the visit count and guestbook entries",
        )
        .optional("log", "记录新留言", "log new guestbook entries")
        .optional(
            "identity",
            "在“我的信息”页显示您的（脱敏）资料",
            "show your (masked) profile on the “me” page",
        )
        .optional("identity.name", "显示您的完整姓名", "show your full name")
        .optional(
            "identity.phone",
            "显示您的完整手机号",
            "show your full phone number",
        )
        .optional(
            "identity.id-number",
            "显示您的完整身份证号",
            "show your full ID number",
        )
    }

    fn handle(request: Request) -> Response {
        Router::new()
            .get("/", |_, _| {
                let visits = data::increment("visits", 1)?;
                Ok(Response::json(
                    200,
                    &serde_json::json!({
                        "message": "你好，邻里！",
                        "message_en": "Hello, neighbours!",
                        "visits": visits,
                    }),
                ))
            })
            .get("/visits", |_, _| {
                let visits: i64 = data::get_json("visits")?.unwrap_or(0);
                Ok(Response::json(
                    200,
                    &serde_json::json!({ "visits": visits }),
                ))
            })
            .get("/guestbook", |_, _| {
                let mut entries = Vec::new();
                for item in data::scan("guestbook/") {
                    let (_, value) = item?;
                    entries.push(serde_json::from_slice::<Entry>(&value)?);
                }
                entries.reverse();
                Ok(Response::json(
                    200,
                    &serde_json::json!({ "entries": entries }),
                ))
            })
            .post("/guestbook", |req, _| sign(req))
            .get("/me", |_, _| me())
            .handle(request)
    }
}

/// The caller's own profile, as this installation may see it.
fn me() -> Result<Response, Error> {
    let Some(caller) = identity::current_caller()? else {
        return Err(Error::Http(401, "请先登录 / sign in first".into()));
    };
    let profile = identity::profile(
        &caller.person.id,
        &[Field::Name, Field::Phone, Field::IdNumber],
    )?;
    let mut fields = serde_json::Map::new();
    for f in &profile.fields {
        let name = match f.field {
            Field::Name => "name",
            Field::Phone => "phone",
            Field::IdNumber => "id_number",
            _ => continue,
        };
        fields.insert(
            name.into(),
            serde_json::json!({ "value": f.value, "masked": f.masked }),
        );
    }
    Ok(Response::json(
        200,
        &serde_json::json!({
            "id": caller.person.id,
            "display_name": caller.person.display_name,
            "tenant_path": caller.tenant_path,
            "roles": caller.roles,
            "assistant": caller.assistant.map(|a| a.display_name),
            "profile": fields,
        }),
    ))
}

fn sign(req: &Request) -> Result<Response, Error> {
    let entry: Entry = req.json()?;
    let name = entry.name.trim();
    let message = entry.message.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME {
        return Err(Error::Invalid(format!(
            "姓名须为 1–{MAX_NAME} 个字 / name must be 1–{MAX_NAME} characters"
        )));
    }
    if message.is_empty() || message.chars().count() > MAX_MESSAGE {
        return Err(Error::Invalid(format!(
            "留言须为 1–{MAX_MESSAGE} 个字 / message must be 1–{MAX_MESSAGE} characters"
        )));
    }
    let seq = data::increment("guestbook-seq", 1)?;
    let key = format!("guestbook/{seq:020}");
    let entry = Entry {
        name: name.into(),
        message: message.into(),
    };
    // The sequence number is ours alone; the precondition makes that explicit.
    match Batch::new()
        .require_absent(&key)
        .set_json(&key, &entry)?
        .commit()?
    {
        BatchOutcome::Committed => {}
        BatchOutcome::PreconditionFailed(_) => {
            return Err(Error::Http(409, "请重试 / please retry".into()));
        }
    }
    log::info(&format!("guestbook entry {seq} signed"));
    Ok(Response::json(201, &serde_json::json!({ "id": seq })))
}

export_plugin!(Hello);
