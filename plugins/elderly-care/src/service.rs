//! Home services (居家服务 / 家政): an elder — or a family member on the elder's contact list —
//! books cleaning, meals, bathing, an escort to the doctor or a repair for a day and half-day;
//! the community staff confirm it (the booker is told), mark it done, or either side cancels.
//!
//! Data: `r/{elder}/booking/{id}` the booking, filed under the elder; `bookings/{id}` → elder
//! (the staff's list); `bookings/next` the counter. Limits: a note of at most
//! [`MAX_NOTE_CHARS`]; at most [`MAX_OPEN_PER_ELDER`] bookings not yet done or cancelled per
//! elder; dates from today up to [`MAX_DAYS_AHEAD`] days ahead.

use linli_sdk::data;
use linli_sdk::services::{Notification, Recipient, Urgency, identity, messaging};
use linli_sdk::time::{TZ_OFFSET_MS, days_from_civil, now_ms};
use linli_sdk::ui::{Block, Button, Field as FormField, Form, ListItem, Page, Text, Tone};
use linli_sdk::{Error, Params, Request, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::{Answer, Elder, responder};

pub const MAX_NOTE_CHARS: usize = 200;
pub const MAX_OPEN_PER_ELDER: usize = 5;
pub const MAX_DAYS_AHEAD: i64 = 30;

/// (id, zh, en)
pub const SERVICES: &[(&str, &str, &str)] = &[
    ("cleaning", "保洁", "Cleaning"),
    ("meals", "助餐送餐", "Meals"),
    ("bathing", "助浴", "Bathing"),
    ("escort", "陪同就医", "Escort to the doctor"),
    ("repair", "家电维修", "Repairs"),
];

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Booking {
    pub id: u64,
    pub elder: String,
    pub elder_name: String,
    pub service: String,
    /// `YYYY-MM-DD`.
    pub date: String,
    /// `morning` or `afternoon`.
    pub slot: String,
    pub note: String,
    pub booked_by: String,
    pub booked_at: i64,
    /// `requested`, `confirmed`, `done`, `cancelled`.
    pub state: String,
    pub handled_by: Option<String>,
}

fn service_text(id: &str) -> Text {
    SERVICES
        .iter()
        .find(|(s, _, _)| *s == id)
        .map(|(_, zh, en)| Text::new(*zh, *en))
        .unwrap_or_else(|| Text::plain(id))
}

fn state_text(state: &str) -> Text {
    match state {
        "requested" => Text::new("待确认", "requested"),
        "confirmed" => Text::new("已确认", "confirmed"),
        "done" => Text::new("已完成", "done"),
        _ => Text::new("已取消", "cancelled"),
    }
}

pub fn form(elders: &[Elder]) -> Form {
    let mut who = FormField::select("elder", Text::new("为谁预约", "For"));
    for e in elders {
        who = who.option(e.person.clone(), Text::plain(e.name.clone()));
    }
    let mut service = FormField::select("service", Text::new("服务", "Service")).required();
    for (id, zh, en) in SERVICES {
        service = service.option(*id, Text::new(*zh, *en));
    }
    Form::new(
        "/bookings",
        Text::new("预约上门服务", "Book a home service"),
    )
    .field(who.required())
    .field(service)
    .field(FormField::date("date", Text::new("日期", "Date")).required())
    .field(
        FormField::radio("slot", Text::new("时段", "Time"))
            .required()
            .option("morning", Text::new("上午", "Morning"))
            .option("afternoon", Text::new("下午", "Afternoon")),
    )
    .field(
        FormField::textarea("note", Text::new("说明（可不填）", "Notes (optional)"))
            .max_length(MAX_NOTE_CHARS as u32),
    )
}

/// The elders the caller may book for: themselves if on the roster, and every elder who
/// lists them as a contact.
pub fn elders_of(person: &str) -> Result<Vec<Elder>, Error> {
    Ok(crate::care::roster()?
        .into_iter()
        .filter(|e| e.person == person || e.contacts.iter().any(|c| c == person))
        .collect())
}

fn today_days() -> i64 {
    (now_ms() + TZ_OFFSET_MS).div_euclid(86_400_000)
}

/// Days since the epoch of a `YYYY-MM-DD`.
fn parse_date(s: &str) -> Option<i64> {
    let mut it = s.splitn(3, '-');
    let y: i64 = it.next()?.parse().ok()?;
    let m: u32 = it.next()?.parse().ok()?;
    let d: u32 = it.next()?.parse().ok()?;
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || s.len() != 10 {
        return None;
    }
    Some(days_from_civil(y, m, d))
}

fn booking_of(id: u64) -> Result<(String, Booking), Error> {
    let missing = || Error::NotFound("没有这个预约 / no such booking".into());
    let elder = data::get(&format!("bookings/{id:08}"))?.ok_or_else(missing)?;
    let elder = String::from_utf8_lossy(&elder).into_owned();
    let key = data::person_key(&elder, &format!("booking/{id:08}"));
    let b = data::get_json(&key)?.ok_or_else(missing)?;
    Ok((key, b))
}

pub fn book(req: &Request, _: &Params) -> Answer {
    let c = identity::current_caller()?
        .ok_or_else(|| Error::Http(401, "请先登录 / please sign in first".into()))?;
    let me = c.person.id.clone();
    let mine = elders_of(&me)?;
    let s = match req.check_form(&form(&mine)) {
        Ok(s) => s,
        Err(answer) => return Ok(answer),
    };
    let Some(elder) = mine.iter().find(|e| e.person == s.text("elder")) else {
        return Err(Error::Http(
            403,
            "只能为自己或您是紧急联系人的老人预约 / only for yourself or an elder who lists you as a contact".into(),
        ));
    };
    let date = s.text("date").to_owned();
    let day = parse_date(&date)
        .ok_or_else(|| Error::Invalid("date: 须为 YYYY-MM-DD / must be YYYY-MM-DD".into()))?;
    let today = today_days();
    if day < today || day > today + MAX_DAYS_AHEAD {
        return Err(Error::Invalid(format!(
            "date: 须在今天到 {MAX_DAYS_AHEAD} 天后之间 / must be from today to {MAX_DAYS_AHEAD} days ahead"
        )));
    }
    let note = s.text("note").trim().to_owned();
    if note.chars().any(|c| c.is_control() && c != '\n') {
        return Err(Error::Invalid(
            "note: 不能含控制字符 / no control characters".into(),
        ));
    }
    let open = data::scan(&data::person_key(&elder.person, "booking/"))
        .filter_map(Result::ok)
        .filter_map(|(_, v)| serde_json::from_slice::<Booking>(&v).ok())
        .filter(|b| b.state == "requested" || b.state == "confirmed")
        .count();
    if open >= MAX_OPEN_PER_ELDER {
        return Err(Error::Quota(format!(
            "每位老人最多 {MAX_OPEN_PER_ELDER} 个未完成的预约 / at most {MAX_OPEN_PER_ELDER} open bookings per elder"
        )));
    }
    let id = data::increment("bookings/next", 1)? as u64;
    let b = Booking {
        id,
        elder: elder.person.clone(),
        elder_name: elder.name.clone(),
        service: s.text("service").to_owned(),
        date,
        slot: s.text("slot").to_owned(),
        note,
        booked_by: me,
        booked_at: now_ms(),
        state: "requested".into(),
        handled_by: None,
    };
    let what = service_text(&b.service);
    messaging::notify(
        &[Recipient::Role("community-staff".into())],
        &Notification {
            title_zh: format!("上门服务预约：{} {}", what.zh(), b.elder_name),
            title_en: format!("Home service booked: {} for {}", what.en(), b.elder_name),
            body_zh: format!(
                "{} {} {}。{}",
                b.date,
                if b.slot == "morning" {
                    "上午"
                } else {
                    "下午"
                },
                elder.address,
                b.note
            ),
            body_en: format!("{} {} at {}. {}", b.date, b.slot, elder.address, b.note),
            link: Some("/bookings".into()),
            urgency: Urgency::Normal,
        },
        &format!("booking-{id}"),
    )?;
    // The notification is written with the booking, in one transaction.
    data::Batch::new()
        .set_json(&data::person_key(&b.elder, &format!("booking/{id:08}")), &b)?
        .set(&format!("bookings/{id:08}"), b.elder.as_bytes())
        .commit()?;
    if req.wants_page() {
        return Ok(Response::page(&Page::redirect("/").notice(
            Tone::Success,
            Text::new(
                "已提交预约，社区确认后会通知您。",
                "Booked; you will be told when the community confirms.",
            ),
        )));
    }
    Ok(Response::json(201, &b))
}

/// Staff: every booking, newest first; others: theirs and their elders'.
pub fn list(req: &Request, _: &Params) -> Answer {
    let staff = responder().is_ok();
    let me = identity::current_caller()?
        .ok_or_else(|| Error::Http(401, "请先登录 / please sign in first".into()))?
        .person
        .id;
    let mut all = Vec::new();
    if staff {
        for item in data::scan("bookings/0") {
            let (k, _) = item?;
            if let Some(id) = k.strip_prefix("bookings/").and_then(|s| s.parse().ok()) {
                all.push(booking_of(id)?.1);
            }
        }
    } else {
        for e in elders_of(&me)? {
            for item in data::scan(&data::person_key(&e.person, "booking/")) {
                let (_, v) = item?;
                all.push(
                    serde_json::from_slice::<Booking>(&v)
                        .map_err(|e| Error::Json(e.to_string()))?,
                );
            }
        }
    }
    all.sort_by_key(|b| std::cmp::Reverse(b.id));
    if !req.wants_page() {
        return Ok(Response::json(200, &json!({ "bookings": all })));
    }
    let mut page = Page::new(Text::new("上门服务", "Home services"))
        .nav(Text::new("警报", "Alarms"), "/")
        .nav(Text::new("上门服务", "Home services"), "/bookings");
    if all.is_empty() {
        page = page.push(Block::empty(Text::new("没有预约。", "No bookings.")));
    }
    for b in &all {
        let what = service_text(&b.service);
        let mut body = vec![Block::facts(vec![
            (
                Text::new("日期", "Date"),
                Text::plain(format!("{} {}", b.date, b.slot)),
            ),
            (Text::new("状态", "State"), state_text(&b.state)),
            (Text::new("说明", "Notes"), Text::plain(b.note.clone())),
        ])];
        let mut buttons = Vec::new();
        if staff && b.state == "requested" {
            buttons.push(
                Button::post(
                    Text::new("确认", "Confirm"),
                    format!("/bookings/{}/confirm", b.id),
                    json!({}),
                )
                .primary(),
            );
        }
        if staff && b.state == "confirmed" {
            buttons.push(Button::post(
                Text::new("已完成", "Done"),
                format!("/bookings/{}/done", b.id),
                json!({}),
            ));
        }
        if b.state == "requested" || b.state == "confirmed" {
            buttons.push(
                Button::post(
                    Text::new("取消", "Cancel"),
                    format!("/bookings/{}/cancel", b.id),
                    json!({}),
                )
                .confirm(Text::new("确认取消这个预约？", "Cancel this booking?")),
            );
        }
        if !buttons.is_empty() {
            body.push(Block::actions(buttons));
        }
        page = page.push(Block::card(
            Text::new(
                format!("{} · {}", what.zh(), b.elder_name),
                format!("{} · {}", what.en(), b.elder_name),
            ),
            None,
            body,
        ));
    }
    Ok(Response::page(&page))
}

/// `confirm` and `done` by staff; `cancel` by staff or the booker.
pub fn step(req: &Request, p: &Params, action: &str) -> Answer {
    let me = identity::current_caller()?
        .ok_or_else(|| Error::Http(401, "请先登录 / please sign in first".into()))?
        .person
        .id;
    let staff = responder().is_ok();
    let id: u64 = p
        .get("id")
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| Error::NotFound("没有这个预约 / no such booking".into()))?;
    let (key, mut b) = booking_of(id)?;
    let allowed = staff || (action == "cancel" && b.booked_by == me);
    if !allowed {
        return Err(Error::Http(403, "无权这样操作 / not allowed".into()));
    }
    let next = match (action, b.state.as_str()) {
        ("confirm", "requested") => "confirmed",
        ("done", "confirmed") => "done",
        ("cancel", "requested" | "confirmed") => "cancelled",
        _ => {
            return Err(Error::Http(
                409,
                format!(
                    "预约当前为「{}」 / the booking is {}",
                    state_text(&b.state).zh(),
                    b.state
                ),
            ));
        }
    };
    b.state = next.into();
    if staff {
        b.handled_by = Some(me);
    }
    if next == "confirmed" {
        let what = service_text(&b.service);
        messaging::notify(
            &[Recipient::Resident(b.booked_by.clone())],
            &Notification {
                title_zh: format!("预约已确认：{} {}", what.zh(), b.date),
                title_en: format!("Booking confirmed: {} on {}", what.en(), b.date),
                body_zh: format!(
                    "{}的{}已安排在 {} {}。",
                    b.elder_name,
                    what.zh(),
                    b.date,
                    if b.slot == "morning" {
                        "上午"
                    } else {
                        "下午"
                    }
                ),
                body_en: format!(
                    "{} for {} is arranged on {} ({}).",
                    what.en(),
                    b.elder_name,
                    b.date,
                    b.slot
                ),
                link: Some("/bookings".into()),
                urgency: Urgency::Normal,
            },
            &format!("booking-{id}-confirmed"),
        )?;
    }
    data::set_json(&key, &b)?;
    if req.wants_page() {
        return Ok(Response::page(&Page::redirect("/bookings")));
    }
    Ok(Response::json(200, &b))
}

/// The resident's part of the home page: book, and the bookings so far.
pub fn resident_blocks(me: &str) -> Result<Vec<Block>, Error> {
    let mine = elders_of(me)?;
    if mine.is_empty() {
        return Ok(Vec::new());
    }
    let mut out = vec![Block::subheading(Text::new("上门服务", "Home services"))];
    let mut items = Vec::new();
    for e in &mine {
        for item in data::scan(&data::person_key(&e.person, "booking/")) {
            let (_, v) = item?;
            let b: Booking = serde_json::from_slice(&v).map_err(|x| Error::Json(x.to_string()))?;
            let what = service_text(&b.service);
            items.push(
                ListItem::new(Text::new(
                    format!("{} · {} {}", what.zh(), b.date, b.elder_name),
                    format!("{} · {} {}", what.en(), b.date, b.elder_name),
                ))
                .badge(state_text(&b.state))
                .link("/bookings"),
            );
        }
    }
    if !items.is_empty() {
        out.push(Block::list(items));
    }
    out.push(form(&mine).into());
    Ok(out)
}
