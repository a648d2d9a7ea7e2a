//! 居家养老 — elderly care, built with the linli SDK only, as a vendor would.
//!
//! This first version covers the emergency path: community staff keep the roster of elders
//! (who, which emergency button is theirs, whom to tell); a press on the button raises an
//! alarm and notifies the elder's contacts and the grid workers at once; staff and grid
//! workers acknowledge it, take it on and clear it with a note, every step kept in the
//! alarm's history.
//!
//! Beyond the button: wristband readings against thresholds, escalation of alarms nobody
//! acknowledges (the `escalate` schedule, every minute) and the daily check-in with a
//! missed-check-in alert (the `check-in` schedule, 20:00) — see `care.rs`; and home services
//! (家政) booked by elders or their family and confirmed by the staff — see `service.rs`.
//!
//! Data layout (this installation's scope):
//! - `r/{person}/elder` the roster entry, filed under the elder (export and erasure find it);
//!   `elders/{person}` its index; `button/{device}` → the elder the button belongs to;
//! - `alarms/next` counter; `alarm/{id}` the alarm with its history; `open/{id}` while it is
//!   not cleared.
//!
//! Every route answers the web shell with a page and anything else with JSON.

use linli_sdk::data;
use linli_sdk::services::{Field, device, identity};
use linli_sdk::ui::{Block, Button, Field as FormField, Form, ListItem, Page, Text, Tone};
use linli_sdk::{
    Error, Event, Metadata, Params, Plugin, Request, Response, Router, Telemetry, export_plugin,
};
use serde::{Deserialize, Serialize};
use serde_json::json;

mod care;
mod service;

struct ElderlyCare;

type Answer = Result<Response, Error>;

/// Most contacts one elder may have.
const MAX_CONTACTS: usize = 10;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Elder {
    person: String,
    /// The name as the identity capability gave it (full with `identity.name`).
    name: String,
    address: String,
    button: Option<String>,
    contacts: Vec<String>,
    enrolled_by: String,
    /// The elder's wristband, if any (wearable telemetry is checked against thresholds).
    #[serde(default)]
    wearable: Option<String>,
    /// Whether the elder checks in daily (平安打卡).
    #[serde(default)]
    checkin: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Step {
    at_ms: u64,
    /// `raised`, `acknowledged`, `assigned`, `cleared`.
    action: String,
    /// Person id, or `device` for the press itself.
    by: String,
    /// Their name as the identity capability gave it.
    #[serde(default)]
    by_name: String,
    note: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Alarm {
    id: u64,
    elder: String,
    elder_name: String,
    address: String,
    device: String,
    raised_at_ms: u64,
    /// `open`, `acknowledged`, `assigned`, `cleared`.
    state: String,
    assigned_to: Option<String>,
    history: Vec<Step>,
    /// `button`, `fall`, `sos`, `heart-rate`, `spo2`.
    #[serde(default = "button_kind")]
    kind: String,
    /// How many times it was escalated for want of an acknowledgement.
    #[serde(default)]
    escalations: u32,
}

fn button_kind() -> String {
    "button".into()
}

fn now_ms() -> u64 {
    linli_sdk::time::now_ms().max(0) as u64
}

/// A time for people, in China time.
fn show_time(ms: u64) -> String {
    linli_sdk::time::show_time(ms as i64)
}

fn forbidden() -> Error {
    Error::Http(
        403,
        "仅社区工作人员和网格员可以操作 / only community staff and grid workers can do this".into(),
    )
}

/// The signed-in staff member or grid worker: (id, name).
fn responder() -> Result<(String, String), Error> {
    let c = identity::current_caller()?
        .ok_or_else(|| Error::Http(401, "请先登录 / please sign in first".into()))?;
    for role in ["community-staff", "grid-worker"] {
        if identity::has_role(role)? {
            return Ok((c.person.id, c.person.display_name));
        }
    }
    Err(forbidden())
}

fn action_text(action: &str) -> Text {
    match action {
        "raised" => Text::new("按下紧急呼叫", "emergency button pressed"),
        "acknowledged" => Text::new("确认收到", "acknowledged"),
        "assigned" => Text::new("前往处置", "taken on"),
        "escalated" => Text::new("无人响应，已升级通知", "escalated: nobody acknowledged"),
        _ => Text::new("解除警报", "cleared"),
    }
}

fn staff() -> Result<String, Error> {
    let c = identity::current_caller()?
        .ok_or_else(|| Error::Http(401, "请先登录 / please sign in first".into()))?;
    if identity::has_role("community-staff")? {
        Ok(c.person.id)
    } else {
        Err(Error::Http(
            403,
            "仅社区工作人员可以管理名册 / only community staff keep the roster".into(),
        ))
    }
}

fn alarm(id: u64) -> Result<Alarm, Error> {
    data::get_json(&format!("alarm/{id}"))?
        .ok_or_else(|| Error::NotFound("没有这个警报 / no such alarm".into()))
}

fn alarm_id(p: &Params) -> Result<u64, Error> {
    p.get("id")
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| Error::NotFound("没有这个警报 / no such alarm".into()))
}

fn state_text(state: &str) -> Text {
    match state {
        "open" => Text::new("待响应", "open"),
        "acknowledged" => Text::new("已确认", "acknowledged"),
        "assigned" => Text::new("处置中", "being handled"),
        _ => Text::new("已解除", "cleared"),
    }
}

/// A press on a button raises an alarm; a wearable's readings are checked (see [`care`]).
fn on_telemetry(t: &Telemetry) -> Result<(), String> {
    let index = match t.device_kind.as_str() {
        "emergency-button" => "button",
        "wearable" => "wearable",
        _ => return Ok(()),
    };
    let Some(person) = data::get(&format!("{index}/{}", t.device_id))
        .map_err(|e| e.to_string())?
        .map(|v| String::from_utf8_lossy(&v).into_owned())
    else {
        linli_sdk::log::warn(&format!(
            "a message from {} which is not on the roster",
            t.device_id
        ));
        return Ok(());
    };
    let elder: Elder = data::get_json(&data::person_key(&person, "elder"))
        .map_err(|e| e.to_string())?
        .ok_or("roster entry missing")?;
    if index == "wearable" {
        return care::wearable(t, &elder);
    }
    let payload: serde_json::Value =
        serde_json::from_slice(&t.payload).map_err(|e| e.to_string())?;
    let note = match payload.get("type").and_then(|v| v.as_str()) {
        Some("press") => ("按下呼叫按钮", "button pressed"),
        Some("long-press") => ("长按呼叫按钮", "button held down"),
        _ => return Ok(()),
    };
    care::raise(
        &elder,
        "button",
        &t.device_id,
        t.received_at_ms as i64,
        note,
    )
}

fn home(req: &Request, _: &Params) -> Answer {
    if let Err(e) = responder() {
        if !req.wants_page() {
            return Err(e);
        }
        // Residents (and visitors) get what the service means for them, not an error; an
        // elder enrolled for the daily check-in gets its big button.
        let mut page = Page::new(Text::new("居家养老", "Elderly care"));
        let caller = identity::current_caller()?;
        if let Some(c) = &caller
            && let Some(elder) = data::get_json::<Elder>(&data::person_key(&c.person.id, "elder"))?
            && elder.checkin
        {
            let today = care::china_date(now_ms() as i64);
            page = match care::checked_in(&elder.person, &today)? {
                Some(done) => page.push(Block::notice(
                    Tone::Success,
                    Text::new(
                        format!("今天已平安打卡（{}）", show_time(done.at_ms as u64)),
                        format!("Checked in today ({})", show_time(done.at_ms as u64)),
                    ),
                )),
                None => page.push(Block::actions(vec![
                    Button::post(
                        Text::new("我很好，今日打卡", "I'm fine: check in for today"),
                        "/checkin",
                        json!({}),
                    )
                    .primary(),
                ])),
            };
        }
        if let Some(c) = &caller {
            for block in service::resident_blocks(&c.person.id)? {
                page = page.push(block);
            }
        }
        return Ok(Response::page(
            &page
                .push(Block::text(Text::new(
                    "家中老人如遇紧急情况，请按紧急呼叫按钮：登记的紧急联系人和网格员会立即收到通知，并上门查看。",
                    "In an emergency, press the emergency button: the registered contacts and the grid worker are told at once and come to help.",
                )))
                .push(Block::muted(Text::new(
                    "需要登记老人、按钮或紧急联系人，请联系社区工作人员。没有智能手机也可以由网格员帮办。",
                    "To register an elder, a button or contacts, ask the community staff; a grid worker can do it for you without a smartphone.",
                ))),
        ));
    }
    let mut alarms = Vec::new();
    for item in data::scan("open/") {
        let (key, _) = item?;
        if let Some(id) = key.strip_prefix("open/").and_then(|s| s.parse().ok()) {
            alarms.push(alarm(id)?);
        }
    }
    alarms.sort_by_key(|a| std::cmp::Reverse(a.id));
    if !req.wants_page() {
        return Ok(Response::json(200, &json!({ "open": alarms })));
    }
    let mut page = Page::new(Text::new("居家养老", "Elderly care"))
        .nav(Text::new("警报", "Alarms"), "/")
        .nav(Text::new("老人名册", "Roster"), "/elders")
        .nav(Text::new("上门服务", "Home services"), "/bookings");
    if alarms.is_empty() {
        page = page.push(Block::empty(Text::new(
            "没有待处理的警报。",
            "No open alarms.",
        )));
    } else {
        page = page.push(Block::list(
            alarms
                .iter()
                .map(|a| {
                    let (zh, en) = care::kind_words(&a.kind);
                    ListItem::new(Text::new(
                        format!("{zh}：{}", a.elder_name),
                        format!("{en}: {}", a.elder_name),
                    ))
                    .badge(state_text(&a.state))
                    .subtitle(Text::plain(a.address.clone()))
                    .link(format!("/alarms/{}", a.id))
                })
                .collect(),
        ));
    }
    Ok(Response::page(&page))
}

fn show_alarm(req: &Request, p: &Params) -> Answer {
    responder()?;
    let a = alarm(alarm_id(p)?)?;
    if !req.wants_page() {
        return Ok(Response::json(200, &a));
    }
    let (zh, en) = care::kind_words(&a.kind);
    let mut page = Page::new(Text::new(
        format!("{zh}：{}", a.elder_name),
        format!("{en}: {}", a.elder_name),
    ))
    .nav(Text::new("警报", "Alarms"), "/")
    .push(Block::facts(vec![
        (Text::new("状态", "State"), state_text(&a.state)),
        (Text::new("地址", "Address"), Text::plain(a.address.clone())),
        (Text::new("设备", "Device"), Text::plain(a.device.clone())),
    ]))
    .push(Block::list(
        a.history
            .iter()
            .map(|s| {
                let what = action_text(&s.action);
                let when = show_time(s.at_ms);
                ListItem::new(Text::new(
                    format!("{when} {} · {}", what.zh(), s.by_name),
                    format!("{when} {} · {}", what.en(), s.by_name),
                ))
                .subtitle(Text::plain(s.note.clone()))
            })
            .collect(),
    ));
    let base = format!("/alarms/{}", a.id);
    let mut buttons = Vec::new();
    if a.state == "open" {
        buttons.push(
            Button::post(
                Text::new("确认收到", "Acknowledge"),
                format!("{base}/ack"),
                json!({}),
            )
            .primary(),
        );
    }
    if a.state == "open" || a.state == "acknowledged" {
        buttons.push(Button::post(
            Text::new("我去处置", "I'll handle it"),
            format!("{base}/assign"),
            json!({}),
        ));
    }
    if a.state != "cleared" {
        buttons.push(
            Button::post(
                Text::new("解除警报", "Clear"),
                format!("{base}/clear"),
                json!({ "note": "已上门查看，平安 / visited, all well" }),
            )
            .confirm(Text::new("确认解除这个警报？", "Clear this alarm?")),
        );
    }
    if !buttons.is_empty() {
        page = page.push(Block::actions(buttons));
    }
    Ok(Response::page(&page))
}

/// Move an alarm on: `ack` (open → acknowledged), `assign` (→ assigned to the caller),
/// `clear` (→ cleared, with a note).
fn step(req: &Request, p: &Params, action: &str) -> Answer {
    let (who, who_name) = responder()?;
    let id = alarm_id(p)?;
    let note = req
        .json::<serde_json::Value>()
        .ok()
        .and_then(|v| v.get("note").and_then(|n| n.as_str()).map(str::to_owned))
        .unwrap_or_default();
    if note.chars().count() > 500 {
        return Err(Error::Invalid(
            "备注最多 500 字 / note: at most 500 characters".into(),
        ));
    }
    let mut a = alarm(id)?;
    let next = match (action, a.state.as_str()) {
        ("ack", "open") => "acknowledged",
        ("assign", "open" | "acknowledged") => "assigned",
        ("clear", "open" | "acknowledged" | "assigned") => "cleared",
        _ => {
            return Err(Error::Http(
                409,
                format!(
                    "警报当前为「{}」，不能这样操作 / the alarm is {}: cannot {action}",
                    state_text(&a.state).zh(),
                    a.state
                ),
            ));
        }
    };
    a.state = next.into();
    if next == "assigned" {
        a.assigned_to = Some(who.clone());
    }
    a.history.push(Step {
        at_ms: now_ms(),
        action: next.into(),
        by: who,
        by_name: who_name,
        note,
    });
    data::set_json(&format!("alarm/{id}"), &a)?;
    if next == "cleared" {
        data::delete(&format!("open/{id:010}"))?;
    }
    if req.wants_page() {
        return Ok(Response::page(&Page::redirect(format!("/alarms/{id}"))));
    }
    Ok(Response::json(200, &a))
}

fn roster_form() -> Form {
    Form::new("/elders", Text::new("加入名册", "Add to the roster"))
        .field(
            FormField::text(
                "person",
                Text::new("老人（居民编号）", "Elder (resident id)"),
            )
            .required()
            .max_length(64),
        )
        .field(
            FormField::text(
                "button",
                Text::new("紧急呼叫按钮编号", "Emergency button id"),
            )
            .max_length(63),
        )
        .field(
            FormField::text("wearable", Text::new("智能手环编号", "Wristband id")).max_length(63),
        )
        .field(FormField::checkbox(
            "checkin",
            Text::new(
                "每日平安打卡（20:00 未打卡则提醒）",
                "Daily check-in (alert if none by 20:00)",
            ),
        ))
        .field(
            FormField::textarea(
                "contacts",
                Text::new(
                    "紧急联系人（居民编号，每行一个）",
                    "Contacts (resident ids, one per line)",
                ),
            )
            .max_length(1000),
        )
}

fn elders(req: &Request, _: &Params) -> Answer {
    staff()?;
    let mut list = Vec::new();
    for item in data::scan("elders/") {
        let (key, _) = item?;
        let person = key.trim_start_matches("elders/");
        if let Some(e) = data::get_json::<Elder>(&data::person_key(person, "elder"))? {
            list.push(e);
        }
    }
    if !req.wants_page() {
        return Ok(Response::json(200, &json!({ "elders": list })));
    }
    let buttons: Vec<_> = device::list(Some("emergency-button"))?
        .into_iter()
        .map(|d| format!("{}（{}）", d.id, d.name))
        .collect();
    let mut page = Page::new(Text::new("老人名册", "Roster of elders"))
        .nav(Text::new("警报", "Alarms"), "/")
        .nav(Text::new("老人名册", "Roster"), "/elders");
    page = if list.is_empty() {
        page.push(Block::empty(Text::new(
            "名册是空的。",
            "The roster is empty.",
        )))
    } else {
        let today = care::china_date(now_ms() as i64);
        let mut items = Vec::new();
        let mut check_ins = Vec::new();
        for e in &list {
            let mut item =
                ListItem::new(Text::plain(e.name.clone())).subtitle(Text::plain(format!(
                    "{} · {} · {}",
                    e.address,
                    e.button.clone().unwrap_or_else(|| "—".into()),
                    e.wearable.clone().unwrap_or_else(|| "—".into())
                )));
            if e.checkin {
                let done = care::checked_in(&e.person, &today)?.is_some();
                item = item.badge(if done {
                    Text::new("今日已打卡", "checked in")
                } else {
                    Text::new("今日未打卡", "not checked in")
                });
                if !done {
                    check_ins.push(Button::post(
                        Text::new(
                            format!("{} 电话确认平安", e.name),
                            format!("{}: confirmed by phone", e.name),
                        ),
                        format!("/elders/{}/checkin", e.person),
                        json!({}),
                    ));
                }
            }
            items.push(item);
        }
        let page = page.push(Block::list(items));
        if check_ins.is_empty() {
            page
        } else {
            page.push(Block::actions(check_ins))
        }
    };
    page = page.push(Block::muted(Text::new(
        format!("本村的紧急呼叫按钮：{}", buttons.join("、")),
        format!("Emergency buttons here: {}", buttons.join(", ")),
    )));
    Ok(Response::page(&page.push(roster_form())))
}

fn enrol(req: &Request, _: &Params) -> Answer {
    let by = staff()?;
    let s = match req.check_form(&roster_form()) {
        Ok(s) => s,
        Err(answer) => return Ok(answer),
    };
    let person = s.text("person").trim().to_owned();
    // The identity capability answers only for residents of this place.
    let profile = identity::profile(&person, &[Field::Name, Field::Address])?;
    let value = |f: Field| {
        profile
            .fields
            .iter()
            .find(|v| v.field == f)
            .map(|v| v.value.clone())
            .unwrap_or_default()
    };
    let contacts: Vec<String> = s
        .text("contacts")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    if contacts.len() > MAX_CONTACTS {
        return Err(Error::Invalid(format!(
            "紧急联系人最多 {MAX_CONTACTS} 位 / at most {MAX_CONTACTS} contacts"
        )));
    }
    for c in &contacts {
        identity::profile(c, &[Field::Name]).map_err(|_| {
            Error::Invalid(format!(
                "联系人 {c} 不是本地居民 / contact {c} is not a resident here"
            ))
        })?;
    }
    let button = Some(s.text("button").trim().to_owned()).filter(|b| !b.is_empty());
    let wearable = Some(s.text("wearable").trim().to_owned()).filter(|b| !b.is_empty());
    if let Some(w) = &wearable {
        let known = device::list(Some("wearable"))?.iter().any(|d| &d.id == w);
        if !known {
            return Err(Error::Invalid(format!(
                "本地没有智能手环 {w} / no wristband {w} here"
            )));
        }
        if let Some(owner) = data::get(&format!("wearable/{w}"))?
            && owner != person.as_bytes()
        {
            return Err(Error::Http(
                409,
                format!("手环 {w} 已属于另一位老人 / wristband {w} belongs to another elder"),
            ));
        }
    }
    if let Some(b) = &button {
        let known = device::list(Some("emergency-button"))?
            .iter()
            .any(|d| &d.id == b);
        if !known {
            return Err(Error::Invalid(format!(
                "本地没有紧急呼叫按钮 {b} / no emergency button {b} here"
            )));
        }
        if let Some(owner) = data::get(&format!("button/{b}"))?
            && owner != person.as_bytes()
        {
            return Err(Error::Http(
                409,
                format!("按钮 {b} 已属于另一位老人 / button {b} belongs to another elder"),
            ));
        }
    }
    let old: Option<Elder> = data::get_json(&data::person_key(&person, "elder"))?;
    let mut batch = data::Batch::new();
    if let Some(old_button) = old.as_ref().and_then(|o| o.button.clone())
        && Some(&old_button) != button.as_ref()
    {
        batch = batch.delete(&format!("button/{old_button}"));
    }
    if let Some(old_wearable) = old.as_ref().and_then(|o| o.wearable.clone())
        && Some(&old_wearable) != wearable.as_ref()
    {
        batch = batch.delete(&format!("wearable/{old_wearable}"));
    }
    let elder = Elder {
        person: person.clone(),
        name: value(Field::Name),
        address: value(Field::Address),
        button: button.clone(),
        contacts,
        enrolled_by: by,
        wearable: wearable.clone(),
        checkin: s.checked("checkin"),
    };
    batch = batch
        .set_json(&data::person_key(&person, "elder"), &elder)?
        .set(&format!("elders/{person}"), b"");
    if let Some(b) = &button {
        batch = batch.set(&format!("button/{b}"), person.as_bytes());
    }
    if let Some(w) = &wearable {
        batch = batch.set(&format!("wearable/{w}"), person.as_bytes());
    }
    batch.commit()?;
    if req.wants_page() {
        return Ok(Response::page(&Page::redirect("/elders").notice(
            Tone::Success,
            Text::new("已加入名册。", "Added to the roster."),
        )));
    }
    Ok(Response::json(201, &elder))
}

/// An elder checks in from the app (or a grid worker for them, in assisted mode).
fn self_check_in(req: &Request, _: &Params) -> Answer {
    let c = identity::current_caller()?
        .ok_or_else(|| Error::Http(401, "请先登录 / please sign in first".into()))?;
    let me = c.person.id.clone();
    let elder: Elder = data::get_json(&data::person_key(&me, "elder"))?.ok_or_else(|| {
        Error::Http(
            403,
            "您不在平安打卡名单上 / you are not enrolled for the daily check-in".into(),
        )
    })?;
    let (how, by) = match &c.assistant {
        Some(a) => ("assisted", a.id.clone()),
        None => ("app", me.clone()),
    };
    let done = care::check_in(&elder.person, now_ms() as i64, how, &by)?;
    if req.wants_page() {
        return Ok(Response::page(&Page::redirect("/").notice(
            Tone::Success,
            Text::new("今天已平安打卡，谢谢！", "Checked in for today. Thank you!"),
        )));
    }
    Ok(Response::json(200, &done))
}

/// Staff or a grid worker record an elder's check-in taken by phone or on a visit.
fn staff_check_in(req: &Request, p: &Params) -> Answer {
    let (who, _) = responder()?;
    let person = p.get("person").unwrap_or("").to_owned();
    if data::get_json::<Elder>(&data::person_key(&person, "elder"))?.is_none() {
        return Err(Error::NotFound(
            "名册上没有这位老人 / no such elder on the roster".into(),
        ));
    }
    let done = care::check_in(&person, now_ms() as i64, "phone", &who)?;
    if req.wants_page() {
        return Ok(Response::page(&Page::redirect("/elders").notice(
            Tone::Success,
            Text::new("已记录平安打卡。", "Check-in recorded."),
        )));
    }
    Ok(Response::json(200, &done))
}

impl Plugin for ElderlyCare {
    fn metadata() -> Metadata {
        Metadata::new(
            "elderly-care",
            env!("CARGO_PKG_VERSION"),
            "居家养老",
            "Elderly care",
        )
        .description(
            "老人名册；紧急呼叫按钮和智能手环报警，通知紧急联系人和网格员，无人响应自动升级；每日平安打卡；上门服务预约。",
            "The roster of elders; emergency-button and wristband alarms to contacts and grid workers, escalated when nobody answers; daily check-in; home-service bookings.",
        )
        .require("data", "保存老人名册和警报记录", "keep the roster and alarm records")
        .require("identity", "确认工作人员角色和老人是本地居民", "check staff roles and that elders live here")
        .require("identity.name", "在警报中显示老人姓名，便于救助", "show the elder's name on an alarm so help finds them")
        .require("identity.address", "在警报中显示住址，便于上门", "show the address on an alarm so help can go there")
        .require(
            "device.emergency-button",
            "接收紧急呼叫按钮的按键",
            "receive presses of emergency buttons",
        )
        .require(
            "device.wearable",
            "接收智能手环的跌倒、求救和心率血氧读数",
            "receive falls, SOS and heart-rate/SpO2 readings from wristbands",
        )
        .require(
            "messaging.notify",
            "通知紧急联系人和网格员",
            "tell contacts and grid workers",
        )
        .schedule("escalate", "* * * * *")
        .schedule("check-in", "0 20 * * *")
        .optional("log", "记录未登记按钮的按键", "log presses of unregistered buttons")
    }

    fn on_event(event: Event) -> Result<(), String> {
        match event {
            Event::Telemetry(t) => on_telemetry(&t),
            Event::Tick(t) if t.schedule == "escalate" => care::escalate(t.due_at_ms as i64),
            Event::Tick(t) if t.schedule == "check-in" => {
                care::missed_check_ins(t.due_at_ms as i64)
            }
            _ => Ok(()),
        }
    }

    fn handle(request: Request) -> Response {
        Router::new()
            .get("/", home)
            .get("/elders", elders)
            .post("/elders", enrol)
            .post("/checkin", self_check_in)
            .get("/bookings", service::list)
            .post("/bookings", service::book)
            .post("/bookings/{id}/confirm", |r, p| {
                service::step(r, p, "confirm")
            })
            .post("/bookings/{id}/done", |r, p| service::step(r, p, "done"))
            .post("/bookings/{id}/cancel", |r, p| {
                service::step(r, p, "cancel")
            })
            .post("/elders/{person}/checkin", staff_check_in)
            .get("/alarms/{id}", show_alarm)
            .post("/alarms/{id}/ack", |r, p| step(r, p, "ack"))
            .post("/alarms/{id}/assign", |r, p| step(r, p, "assign"))
            .post("/alarms/{id}/clear", |r, p| step(r, p, "clear"))
            .handle(request)
    }
}

export_plugin!(ElderlyCare);
