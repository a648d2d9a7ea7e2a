//! A plugin that tries to reach what it should not: other plugins' data (its own scope holds
//! none of theirs), people of other tenants, and capabilities it was not granted.

use linli_sdk::services::{
    CommandOutcome, Field, Notification, Recipient, ResidentFilter, Urgency, device, identity,
    messaging,
};
use linli_sdk::{Error, Event, Metadata, Plugin, Request, Response, Router, data, export_plugin};

struct Spy;

const ALL_FIELDS: &[Field] = &[
    Field::Name,
    Field::Phone,
    Field::IdNumber,
    Field::BirthDate,
    Field::Household,
    Field::Address,
    Field::Tags,
];

impl Plugin for Spy {
    fn metadata() -> Metadata {
        Metadata::new("spy", "0.1.0", "窥探插件", "Spy plugin")
            .require("data", "测试隔离", "tests isolation")
            .optional("identity", "测试身份隔离", "tests identity isolation")
            .optional("identity.phone", "测试授权", "tests grants")
            .optional(
                "identity.name",
                "测试设备名",
                "tests personal devices' names",
            )
            .optional(
                "identity.address",
                "测试设备位置",
                "tests personal devices' places",
            )
            .optional("identity.tags", "测试敏感标签", "tests sensitive tags")
            .optional(
                "identity.birth-date",
                "测试按年龄计数",
                "tests counting by age",
            )
            .optional(
                "device.emergency-button",
                "测试设备授权",
                "tests device grants",
            )
            .optional("device.barrier", "测试设备授权", "tests device grants")
            .optional("messaging.notify", "测试通知", "tests notifications")
            .optional("messaging.publish", "测试事件", "tests events")
            .subscribe("spy.echo")
            .schedule("minute", "* * * * *")
    }

    /// Keep every device message under `t/<seq>`, event under `m/<seq>` and tick under
    /// `k/<seq>`: what the host delivered, in order. An event whose payload is `fail` fails.
    fn on_event(event: Event) -> Result<(), String> {
        let t = match event {
            Event::Telemetry(t) => t,
            Event::Message(m) => {
                if m.payload == b"fail" {
                    return Err("told to fail".into());
                }
                let seq = data::increment("message-seq", 1).map_err(|e| e.to_string())?;
                return data::set_json(
                    &format!("m/{seq:08}"),
                    &serde_json::json!({
                        "topic": m.topic, "source": m.source_plugin, "key": m.idempotency_key,
                        "payload": String::from_utf8_lossy(&m.payload),
                    }),
                )
                .map_err(|e| e.to_string());
            }
            Event::Tick(k) => {
                let seq = data::increment("tick-seq", 1).map_err(|e| e.to_string())?;
                return data::set_json(
                    &format!("k/{seq:08}"),
                    &serde_json::json!({ "schedule": k.schedule, "due_at_ms": k.due_at_ms }),
                )
                .map_err(|e| e.to_string());
            }
        };
        let seq = data::increment("telemetry-seq", 1).map_err(|e| e.to_string())?;
        let payload: serde_json::Value =
            serde_json::from_slice(&t.payload).map_err(|e| e.to_string())?;
        data::set_json(
            &format!("t/{seq:08}"),
            &serde_json::json!({
                "device": t.device_id, "kind": t.device_kind,
                "received_at_ms": t.received_at_ms, "payload": payload,
            }),
        )
        .map_err(|e| e.to_string())
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
            // Every field of any person id it is given.
            .get("/profile", |req, _| {
                let id = req.query_param("id").unwrap_or_default();
                let p = identity::profile(&id, ALL_FIELDS)?;
                let fields: Vec<_> = p
                    .fields
                    .iter()
                    .map(|f| serde_json::json!({ "value": f.value, "masked": f.masked }))
                    .collect();
                Ok(Response::json(200, &serde_json::json!({ "id": p.id, "fields": fields })))
            })
            // Every resident it can list, optionally by tag.
            .get("/residents", |req, _| {
                let filter = ResidentFilter {
                    tags: req.query_param("tag").into_iter().collect(),
                    household: None,
                    born_on_or_before: None,
                };
                let mut ids = Vec::new();
                let mut cursor: Option<String> = None;
                loop {
                    let (page, next) = identity::list_residents(&filter, cursor.as_deref(), 2)?;
                    ids.extend(page);
                    match next {
                        Some(c) => cursor = Some(c),
                        None => break,
                    }
                }
                Ok(Response::json(200, &serde_json::json!({ "ids": ids })))
            })
            // Counts only: an electorate.
            .get("/count", |req, _| {
                let filter = ResidentFilter {
                    tags: req.query_param("tag").into_iter().collect(),
                    household: None,
                    born_on_or_before: req.query_param("born"),
                };
                let c = identity::count_residents(&filter)?;
                Ok(Response::json(
                    200,
                    &serde_json::json!({ "residents": c.residents, "households": c.households }),
                ))
            })
            // The devices it can see, optionally of one kind; then a command to the first.
            .get("/devices", |req, _| {
                let kind = req.query_param("kind");
                let devices: Vec<_> = device::list(kind.as_deref())?
                    .into_iter()
                    .map(|d| serde_json::json!({ "id": d.id, "kind": d.kind, "name": d.name, "location": d.location, "online": d.online }))
                    .collect();
                Ok(Response::json(200, &serde_json::json!({ "devices": devices })))
            })
            // `count` commands `cmd` (default open) with `payload` to device `id`, waiting
            // `timeout` ms for each answer; the outcomes.
            .get("/command", |req, _| {
                let id = req.query_param("id").unwrap_or_default();
                let cmd = req.query_param("cmd").unwrap_or_else(|| "open".into());
                let payload = req.query_param("payload").unwrap_or_default();
                let timeout = req.query_param("timeout").and_then(|t| t.parse().ok()).unwrap_or(1000);
                let count: u32 = req.query_param("count").and_then(|c| c.parse().ok()).unwrap_or(1);
                let mut outcomes = Vec::new();
                for _ in 0..count {
                    outcomes.push(match device::command(&id, &cmd, payload.as_bytes(), timeout)? {
                        CommandOutcome::Acknowledged(r) => serde_json::json!({
                            "acknowledged": serde_json::from_slice::<serde_json::Value>(&r).unwrap_or_default()
                        }),
                        CommandOutcome::Refused(reason) => serde_json::json!({ "refused": reason }),
                        CommandOutcome::TimedOut => serde_json::json!("timed-out"),
                    });
                }
                Ok(Response::json(200, &serde_json::json!({ "outcomes": outcomes })))
            })
            // Publish `payload` on `topic` under `key`.
            .get("/publish", |req, _| {
                let topic = req.query_param("topic").unwrap_or_default();
                let payload = match req.query_param("size") {
                    Some(n) => "x".repeat(n.parse().unwrap_or(0)),
                    None => req.query_param("payload").unwrap_or_default(),
                };
                let key = req.query_param("key").unwrap_or_default();
                messaging::publish(&topic, payload.as_bytes(), &key)?;
                Ok(Response::text(200, "published"))
            })
            // What arrived as events (`m/`) or ticks (`k/`).
            .get("/events", |req, _| {
                let prefix = if req.query_param("ticks").is_some() { "k/" } else { "m/" };
                let mut got = Vec::new();
                for item in data::scan(prefix) {
                    let (_, v) = item?;
                    got.push(serde_json::from_slice::<serde_json::Value>(&v).map_err(|e| Error::Json(e.to_string()))?);
                }
                Ok(Response::json(200, &serde_json::json!({ "events": got })))
            })
            .get("/telemetry", |_, _| {
                let mut got = Vec::new();
                for item in data::scan("t/") {
                    let (_, v) = item?;
                    got.push(serde_json::from_slice::<serde_json::Value>(&v).map_err(|e| Error::Json(e.to_string()))?);
                }
                Ok(Response::json(200, &serde_json::json!({ "telemetry": got })))
            })
            // Notify `to` (resident:<id>, household:<h>, role:<r>, everyone) under `key`.
            .get("/notify", |req, _| {
                let to = req.query_param("to").unwrap_or_default();
                let recipient = match to.split_once(':') {
                    Some(("resident", id)) => Recipient::Resident(id.into()),
                    Some(("household", h)) => Recipient::Household(h.into()),
                    Some(("role", r)) => Recipient::Role(r.into()),
                    _ => Recipient::Everyone,
                };
                let title = req.query_param("title").unwrap_or_else(|| "紧急呼叫".into());
                messaging::notify(
                    &[recipient],
                    &Notification {
                        title_zh: title,
                        title_en: "Emergency call".into(),
                        body_zh: "李桂兰家按下了紧急呼叫按钮。".into(),
                        body_en: "The emergency button was pressed.".into(),
                        link: req.query_param("link"),
                        urgency: Urgency::Emergency,
                    },
                    &req.query_param("key").unwrap_or_default(),
                )?;
                // `then=trap`: fail before any data change; `then=save-trap`: save, then fail.
                match req.query_param("then").as_deref() {
                    Some("trap") => panic!("trapping after notify"),
                    Some("save-trap") => {
                        data::set("saved", b"1")?;
                        panic!("trapping after the save");
                    }
                    _ => {}
                }
                Ok(Response::text(200, "queued"))
            })
            .get("/whoami", |_, _| {
                let c = identity::current_caller()?;
                Ok(Response::json(
                    200,
                    &serde_json::json!({
                        "id": c.as_ref().map(|c| c.person.id.clone()),
                        "roles": c.as_ref().map(|c| c.roles.clone()),
                        "assistant": c.as_ref().and_then(|c| c.assistant.as_ref().map(|a| a.id.clone())),
                        "grid_worker": identity::has_role("grid-worker")?,
                    }),
                ))
            })
            // Keep a note about the caller, under the person key (found by export/erase).
            .post("/remember", |req, _| {
                let Some(c) = identity::current_caller()? else {
                    return Err(Error::Http(401, "sign in".into()));
                };
                data::set(&data::person_key(&c.person.id, "note"), req.body.as_slice())?;
                Ok(Response::status(204))
            })
            .handle(request)
    }
}

export_plugin!(Spy);
