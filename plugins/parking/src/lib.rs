//! 停车与门禁 — parking and access, built with the linli SDK only, as a vendor would.
//!
//! Residents register their household's plates and give visitors passes (a plate, or a
//! six-digit code for the keypad); gates and barriers report plates, codes and cards, and the
//! plugin opens for residents, white-listed vehicles and valid passes, refuses black-listed and
//! unknown cars (or lets them in as temporary parking when the community allows it, charging
//! by its fee rule on the way out), and tells the gate's display why. Parking sensors keep
//! space occupancy; residents report illegal parking to the community staff. No path needs a
//! face: plates, pass codes, IC cards, and the staff's remote open from the app (for visitors
//! without a phone, on a call to the gatehouse) all work.
//!
//! Data layout (this installation's scope):
//! - `r/{person}/plate/{P}` a registration, filed under its owner (export and erasure find
//!   it); `plate/{P}` → owner; `hh/{household}/{P}` counts a household's plates;
//! - `r/{person}/pass/{code}` a visitor pass; `pass/{code}` and `passplate/{P}/{code}` → host;
//! - `r/{person}/card/{card}` an IC card issued by staff; `card/{card}` → holder;
//! - `list/{P}` white or black list; `config/fees` the fee rule;
//! - `inside/{P}` a car inside; `log/{seq}` the access log; `space/{device}` occupancy;
//! - `report/{seq}` illegal-parking reports.

mod model;

use linli_sdk::data;
use linli_sdk::services::{
    CommandOutcome, Field, Notification, Recipient, Urgency, device, identity, messaging,
};
use linli_sdk::time::{now_ms, show_time};
use linli_sdk::ui::{Block, Button, Field as FormField, Form, ListItem, Page, Text, Tone};
use linli_sdk::{
    Error, Event, Metadata, Params, Plugin, Request, Response, Router, Telemetry, export_plugin,
};
use model::*;
use serde::{Deserialize, Serialize};
use serde_json::json;

struct Parking;

type Answer = Result<Response, Error>;

/// How long the plugin waits for a gate to acknowledge a command.
const GATE_TIMEOUT_MS: u32 = 2000;
/// How many access-log entries the pages show.
const LOG_SHOWN: usize = 50;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct PlateReg {
    plate: String,
    person: String,
    household: String,
    owner_name: String,
    added_by: String,
    added_at: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct ListEntry {
    plate: String,
    list: ListKind,
    note: String,
    added_by: String,
    added_at: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Pass {
    code: String,
    plate: Option<String>,
    host: String,
    host_name: String,
    valid_from: i64,
    valid_to: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Stay {
    plate: String,
    entered_at: i64,
    reason: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Access {
    at: i64,
    device: String,
    /// `plate 浙A12345`, `code 123456`, `card …`, `remote` (staff).
    credential: String,
    direction: String,
    open: bool,
    reason: String,
    /// What the gate answered: `acknowledged`, `refused: …`, `timed-out`.
    gate: String,
    fee_fen: Option<u64>,
    by: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Space {
    occupied: bool,
    since: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Report {
    id: u64,
    plate: String,
    place: String,
    description: String,
    reporter: String,
    at: i64,
    handled: Option<String>,
}

fn unauthenticated() -> Error {
    Error::Http(401, "请先登录 / please sign in first".into())
}

/// The signed-in caller: (id, display name).
fn caller() -> Result<(String, String), Error> {
    let c = identity::current_caller()?.ok_or_else(unauthenticated)?;
    Ok((c.person.id, c.person.display_name))
}

/// The signed-in community staff member: (id, name).
fn staff() -> Result<(String, String), Error> {
    let who = caller()?;
    if identity::has_role("community-staff")? {
        Ok(who)
    } else {
        Err(Error::Http(
            403,
            "仅社区工作人员可以操作 / only community staff can do this".into(),
        ))
    }
}

fn is_staff() -> bool {
    identity::current_caller().ok().flatten().is_some()
        && identity::has_role("community-staff").unwrap_or(false)
}

/// A resident's name and household, as this installation may see them.
fn name_and_household(person: &str) -> Result<(String, String), Error> {
    let p = identity::profile(person, &[Field::Name, Field::Household])?;
    let get = |f: Field| {
        p.fields
            .iter()
            .find(|v| v.field == f)
            .map(|v| v.value.clone())
            .unwrap_or_default()
    };
    Ok((get(Field::Name), get(Field::Household)))
}

fn text_limit(name: &str, s: &str) -> Result<(), Error> {
    if s.chars().count() > MAX_TEXT || s.chars().any(char::is_control) {
        return Err(Error::Invalid(format!(
            "{name}: 最多 {MAX_TEXT} 字 / at most {MAX_TEXT} characters, no control characters"
        )));
    }
    Ok(())
}

fn done(req: &Request, path: &str, zh: &str, en: &str, value: serde_json::Value) -> Answer {
    if req.wants_page() {
        Ok(Response::page(
            &Page::redirect(path).notice(Tone::Success, Text::new(zh, en)),
        ))
    } else {
        Ok(Response::json(200, &value))
    }
}

fn fee_rule() -> Result<FeeRule, Error> {
    Ok(data::get_json("config/fees")?.unwrap_or_default())
}

fn plate_param(p: &Params) -> Result<String, Error> {
    normalize_plate(p.get("plate").unwrap_or("")).map_err(Error::Invalid)
}

// ---- registrations ----------------------------------------------------------------------

/// Register `plate` to `person`'s household.
fn register(plate: &str, person: &str, by: &str) -> Result<PlateReg, Error> {
    if let Some(owner) = data::get(&format!("plate/{plate}"))? {
        let owner = String::from_utf8_lossy(&owner).into_owned();
        if owner != person {
            return Err(Error::Http(
                409,
                format!("{plate} 已登记在另一户 / {plate} is registered to another household"),
            ));
        }
    }
    let (name, household) = name_and_household(person)?;
    if household.is_empty() {
        return Err(Error::Invalid(
            "该居民未登记户籍，请联系社区工作人员 / the resident belongs to no household; ask the community staff".into(),
        ));
    }
    let taken = data::scan(&format!("hh/{household}/"))
        .filter_map(Result::ok)
        .filter(|(k, _)| !k.ends_with(&format!("/{plate}")))
        .count();
    if taken >= MAX_PLATES_PER_HOUSEHOLD {
        return Err(Error::Quota(format!(
            "每户最多登记 {MAX_PLATES_PER_HOUSEHOLD} 辆车 / at most {MAX_PLATES_PER_HOUSEHOLD} plates per household"
        )));
    }
    let reg = PlateReg {
        plate: plate.into(),
        person: person.into(),
        household: household.clone(),
        owner_name: name,
        added_by: by.into(),
        added_at: now_ms(),
    };
    data::Batch::new()
        .set_json(&data::person_key(person, &format!("plate/{plate}")), &reg)?
        .set(&format!("plate/{plate}"), person.as_bytes())
        .set(&format!("hh/{household}/{plate}"), b"")
        .commit()?;
    Ok(reg)
}

fn registration(plate: &str) -> Result<Option<PlateReg>, Error> {
    let Some(owner) = data::get(&format!("plate/{plate}"))? else {
        return Ok(None);
    };
    let owner = String::from_utf8_lossy(&owner).into_owned();
    data::get_json(&data::person_key(&owner, &format!("plate/{plate}")))
}

fn my_plates(person: &str) -> Result<Vec<PlateReg>, Error> {
    let mut out = Vec::new();
    for item in data::scan(&data::person_key(person, "plate/")) {
        let (_, v) = item?;
        out.push(serde_json::from_slice(&v).map_err(|e| Error::Json(e.to_string()))?);
    }
    Ok(out)
}

fn plate_form(action: &str, for_someone: bool) -> Form {
    let mut f = Form::new(action, Text::new("登记车辆", "Register the car"));
    if for_someone {
        f = f.field(
            FormField::text(
                "person",
                Text::new("车主（居民编号）", "Owner (resident id)"),
            )
            .required()
            .max_length(64),
        );
    }
    f.field(
        FormField::text("plate", Text::new("车牌号", "Plate number"))
            .required()
            .max_length(12)
            .help(Text::new("如 浙A12345", "e.g. 浙A12345")),
    )
}

fn add_plate(req: &Request, _: &Params) -> Answer {
    let (me, _) = caller()?;
    let s = match req.check_form(&plate_form("/plates", false)) {
        Ok(s) => s,
        Err(r) => return Ok(r),
    };
    let plate = normalize_plate(s.text("plate")).map_err(Error::Invalid)?;
    let reg = register(&plate, &me, &me)?;
    done(
        req,
        "/",
        "车辆已登记。",
        "The car is registered.",
        json!(reg),
    )
}

/// Staff register a car for a resident (who may have no smartphone).
fn staff_add_plate(req: &Request, _: &Params) -> Answer {
    let (me, _) = staff()?;
    let s = match req.check_form(&plate_form("/admin/plates", true)) {
        Ok(s) => s,
        Err(r) => return Ok(r),
    };
    let plate = normalize_plate(s.text("plate")).map_err(Error::Invalid)?;
    let reg = register(&plate, s.text("person").trim(), &me)?;
    done(
        req,
        "/admin/plates",
        "车辆已登记。",
        "The car is registered.",
        json!(reg),
    )
}

fn remove_plate(req: &Request, p: &Params) -> Answer {
    let (me, _) = caller()?;
    let plate = plate_param(p)?;
    let reg = registration(&plate)?
        .ok_or_else(|| Error::NotFound(format!("{plate} 未登记 / {plate} is not registered")))?;
    if reg.person != me && !is_staff() {
        return Err(Error::Http(
            403,
            "只能删除自家的车辆 / only your own household's cars".into(),
        ));
    }
    data::Batch::new()
        .delete(&data::person_key(&reg.person, &format!("plate/{plate}")))
        .delete(&format!("plate/{plate}"))
        .delete(&format!("hh/{}/{plate}", reg.household))
        .commit()?;
    let back = if reg.person == me {
        "/"
    } else {
        "/admin/plates"
    };
    done(
        req,
        back,
        "已删除。",
        "Removed.",
        json!({ "removed": plate }),
    )
}

// ---- visitor passes ---------------------------------------------------------------------

fn pass_form() -> Form {
    Form::new(
        "/passes",
        Text::new("生成访客通行证", "Make a visitor pass"),
    )
    .field(
        FormField::text(
            "plate",
            Text::new(
                "访客车牌（步行访客不填）",
                "Visitor's plate (leave empty for visitors on foot)",
            ),
        )
        .max_length(12),
    )
    .field(
        FormField::number("hours", Text::new("有效时长（小时）", "Valid for (hours)"))
            .required()
            .range(1.0, f64::from(MAX_PASS_HOURS))
            .value(4),
    )
}

fn random_code() -> Result<String, Error> {
    let mut b = [0u8; 4];
    getrandom::fill(&mut b).map_err(|e| Error::Internal(format!("no randomness: {e}")))?;
    Ok(format!("{:06}", u32::from_le_bytes(b) % 1_000_000))
}

fn my_passes(person: &str, now: i64) -> Result<Vec<Pass>, Error> {
    let mut out = Vec::new();
    for item in data::scan(&data::person_key(person, "pass/")) {
        let (_, v) = item?;
        let pass: Pass = serde_json::from_slice(&v).map_err(|e| Error::Json(e.to_string()))?;
        if pass.valid_to > now {
            out.push(pass);
        }
    }
    Ok(out)
}

fn add_pass(req: &Request, _: &Params) -> Answer {
    let (me, my_name) = caller()?;
    let s = match req.check_form(&pass_form()) {
        Ok(s) => s,
        Err(r) => return Ok(r),
    };
    let now = now_ms();
    if my_passes(&me, now)?.len() >= MAX_ACTIVE_PASSES {
        return Err(Error::Quota(format!(
            "最多同时持有 {MAX_ACTIVE_PASSES} 张有效通行证 / at most {MAX_ACTIVE_PASSES} passes valid at once"
        )));
    }
    let plate = match s.text("plate").trim() {
        "" => None,
        p => Some(normalize_plate(p).map_err(Error::Invalid)?),
    };
    let hours = s
        .number("hours")
        .unwrap_or(4.0)
        .clamp(1.0, f64::from(MAX_PASS_HOURS)) as i64;
    // A fresh code, never one in use.
    let mut code = random_code()?;
    for _ in 0..10 {
        if !data::exists(&format!("pass/{code}"))? {
            break;
        }
        code = random_code()?;
    }
    let pass = Pass {
        code: code.clone(),
        plate: plate.clone(),
        host: me.clone(),
        host_name: my_name,
        valid_from: now,
        valid_to: now + hours * 3_600_000,
    };
    let mut batch = data::Batch::new()
        .require_absent(&format!("pass/{code}"))
        .set_json(&data::person_key(&me, &format!("pass/{code}")), &pass)?
        .set(&format!("pass/{code}"), me.as_bytes());
    if let Some(p) = &plate {
        batch = batch.set(&format!("passplate/{p}/{code}"), me.as_bytes());
    }
    if batch.commit()? != data::BatchOutcome::Committed {
        return Err(Error::Http(
            409,
            "通行证号码冲突，请重试 / pass code taken; try again".into(),
        ));
    }
    if req.wants_page() {
        return Ok(Response::page(&Page::redirect("/").notice(
            Tone::Success,
            Text::new(
                format!(
                    "通行证 {code}，有效至 {}。请把号码告诉访客。",
                    show_time(pass.valid_to)
                ),
                format!(
                    "Pass {code}, valid until {}. Give the code to your visitor.",
                    show_time(pass.valid_to)
                ),
            ),
        )));
    }
    Ok(Response::json(201, &pass))
}

fn pass_by_code(code: &str) -> Result<Option<Pass>, Error> {
    let Some(host) = data::get(&format!("pass/{code}"))? else {
        return Ok(None);
    };
    let host = String::from_utf8_lossy(&host).into_owned();
    data::get_json(&data::person_key(&host, &format!("pass/{code}")))
}

fn plate_has_pass(plate: &str, now: i64) -> Result<bool, Error> {
    for item in data::scan(&format!("passplate/{plate}/")) {
        let (key, _) = item?;
        let code = key.rsplit('/').next().unwrap_or("");
        if let Some(p) = pass_by_code(code)?
            && p.valid_from <= now
            && now < p.valid_to
        {
            return Ok(true);
        }
    }
    Ok(false)
}

// ---- the gate ---------------------------------------------------------------------------

fn log_access(a: &Access) -> Result<(), Error> {
    let seq = data::increment("log/next", 1)?;
    data::set_json(&format!("log/{seq:012}"), a)
}

fn recent_log(n: usize) -> Result<Vec<Access>, Error> {
    let mut all = Vec::new();
    for item in data::scan("log/0") {
        let (_, v) = item?;
        all.push(serde_json::from_slice::<Access>(&v).map_err(|e| Error::Json(e.to_string()))?);
    }
    all.reverse();
    all.truncate(n);
    Ok(all)
}

fn outcome_text(o: Result<CommandOutcome, Error>) -> String {
    match o {
        Ok(CommandOutcome::Acknowledged(_)) => "acknowledged".into(),
        Ok(CommandOutcome::Refused(r)) => format!("refused: {r}"),
        Ok(CommandOutcome::TimedOut) => "timed-out".into(),
        Err(e) => format!("error: {e}"),
    }
}

/// Tell the gate: open it (with the display's greeting) or show why not.
fn tell_gate(gate: &str, open: bool, reason: &str, plate: Option<&str>, extra: &str) -> String {
    let text = format!("{}{extra}", display_text(reason));
    let text: String = text.chars().take(64).collect();
    let outcome = if open {
        let payload = match plate {
            Some(p) => json!({ "plate": p, "reason": reason }),
            None => json!({ "reason": reason }),
        };
        device::command(
            gate,
            "open",
            payload.to_string().as_bytes(),
            GATE_TIMEOUT_MS,
        )
    } else {
        device::command(
            gate,
            "display",
            json!({ "text": text }).to_string().as_bytes(),
            GATE_TIMEOUT_MS,
        )
    };
    if open {
        // The greeting is a courtesy: its outcome is not the gate's.
        let _ = device::command(
            gate,
            "display",
            json!({ "text": text }).to_string().as_bytes(),
            GATE_TIMEOUT_MS,
        );
    }
    outcome_text(outcome)
}

/// A plate read at a gate.
fn at_gate_plate(t: &Telemetry, plate: &str, direction: &str) -> Result<(), Error> {
    let now = t.received_at_ms as i64;
    let plate = match normalize_plate(plate) {
        Ok(p) => p,
        Err(_) => {
            // An unreadable plate: the camera's problem; nobody is let in on it.
            let gate = tell_gate(&t.device_id, false, "unknown", None, "");
            return log_access(&Access {
                at: now,
                device: t.device_id.clone(),
                credential: format!("plate {plate}"),
                direction: direction.into(),
                open: false,
                reason: "unreadable".into(),
                gate,
                fee_fen: None,
                by: None,
            });
        }
    };
    let rule = fee_rule()?;
    let standing = Standing {
        list: data::get_json::<ListEntry>(&format!("list/{plate}"))?.map(|l| l.list),
        resident: registration(&plate)?.is_some(),
        pass: plate_has_pass(&plate, now)?,
    };
    let d = decide(&standing, direction, &rule);
    let mut fee = None;
    let mut extra = String::new();
    if direction == "out" {
        if let Some(stay) = data::get_json::<Stay>(&format!("inside/{plate}"))? {
            if stay.reason == "temporary" {
                let minutes = ((now - stay.entered_at).max(0) / 60_000) as u64;
                let f = rule.fee(minutes);
                fee = Some(f);
                extra = format!(" 停车{minutes}分钟 应收{}", yuan(f));
            }
            data::delete(&format!("inside/{plate}"))?;
        }
    } else if d.open {
        data::set_json(
            &format!("inside/{plate}"),
            &Stay {
                plate: plate.clone(),
                entered_at: now,
                reason: d.reason.clone(),
            },
        )?;
    }
    let gate = tell_gate(&t.device_id, d.open, &d.reason, Some(&plate), &extra);
    log_access(&Access {
        at: now,
        device: t.device_id.clone(),
        credential: format!("plate {plate}"),
        direction: direction.into(),
        open: d.open,
        reason: d.reason,
        gate,
        fee_fen: fee,
        by: None,
    })
}

/// A pass code typed on the keypad, or an IC card held to the reader.
fn at_gate_code(t: &Telemetry, kind: &str, value: &str, direction: &str) -> Result<(), Error> {
    let now = t.received_at_ms as i64;
    let (open, reason) = if direction == "out" {
        (true, "exit")
    } else if kind == "code" {
        match pass_by_code(value)? {
            Some(p) if p.valid_from <= now && now < p.valid_to => (true, "pass"),
            _ => (false, "unknown"),
        }
    } else {
        let holder = data::get(&format!("card/{value}"))?;
        if holder.is_some() {
            (true, "resident")
        } else {
            (false, "unknown")
        }
    };
    let gate = tell_gate(&t.device_id, open, reason, None, "");
    let shown = if kind == "code" {
        // Codes are credentials: the log keeps only their last two digits.
        format!("code ****{}", &value[value.len().saturating_sub(2)..])
    } else {
        format!("card {value}")
    };
    log_access(&Access {
        at: now,
        device: t.device_id.clone(),
        credential: shown,
        direction: direction.into(),
        open,
        reason: reason.into(),
        gate,
        fee_fen: None,
        by: None,
    })
}

fn on_telemetry(t: &Telemetry) -> Result<(), Error> {
    let v: serde_json::Value =
        serde_json::from_slice(&t.payload).map_err(|e| Error::Json(e.to_string()))?;
    let s = |k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or("").to_owned();
    match t.device_kind.as_str() {
        "gate" | "barrier" => {
            let direction = match s("direction").as_str() {
                "out" => "out",
                _ => "in",
            };
            match s("type").as_str() {
                "plate" => at_gate_plate(t, &s("plate"), direction),
                "code" => at_gate_code(t, "code", &s("code"), direction),
                "card" => at_gate_code(t, "card", &s("card"), direction),
                _ => Ok(()),
            }
        }
        "parking-sensor" => {
            let occupied = v.get("occupied").and_then(|o| o.as_bool()).unwrap_or(false);
            let key = format!("space/{}", t.device_id);
            let old: Option<Space> = data::get_json(&key)?;
            if old.as_ref().map(|o| o.occupied) != Some(occupied) {
                data::set_json(
                    &key,
                    &Space {
                        occupied,
                        since: t.received_at_ms as i64,
                    },
                )?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Staff open a gate from the app (a visitor without a phone calls the gatehouse).
fn remote_open(req: &Request, p: &Params) -> Answer {
    let (me, name) = staff()?;
    let gate = p.get("device").unwrap_or("").to_owned();
    let outcome = outcome_text(device::command(
        &gate,
        "open",
        json!({ "reason": "remote" }).to_string().as_bytes(),
        GATE_TIMEOUT_MS,
    ));
    log_access(&Access {
        at: now_ms(),
        device: gate.clone(),
        credential: "remote".into(),
        direction: "in".into(),
        open: true,
        reason: "remote".into(),
        gate: outcome.clone(),
        fee_fen: None,
        by: Some(format!("{name} ({me})")),
    })?;
    if req.wants_page() {
        let (tone, zh, en) = if outcome == "acknowledged" {
            (
                Tone::Success,
                "道闸已打开。".to_owned(),
                "The gate opened.".to_owned(),
            )
        } else {
            (
                Tone::Warning,
                format!("道闸没有执行：{outcome}"),
                format!("The gate did not open: {outcome}"),
            )
        };
        return Ok(Response::page(
            &Page::redirect("/admin").notice(tone, Text::new(zh, en)),
        ));
    }
    Ok(Response::json(
        200,
        &json!({ "gate": gate, "outcome": outcome }),
    ))
}

// ---- reports ----------------------------------------------------------------------------

fn report_form() -> Form {
    Form::new("/reports", Text::new("举报违停", "Report illegal parking"))
        .field(
            FormField::text("plate", Text::new("车牌号", "Plate number"))
                .required()
                .max_length(12),
        )
        .field(
            FormField::text("place", Text::new("位置", "Where"))
                .required()
                .max_length(MAX_TEXT as u32),
        )
        .field(
            FormField::textarea("description", Text::new("情况说明", "What is wrong"))
                .max_length(MAX_TEXT as u32),
        )
}

fn add_report(req: &Request, _: &Params) -> Answer {
    let (me, _) = caller()?;
    let s = match req.check_form(&report_form()) {
        Ok(s) => s,
        Err(r) => return Ok(r),
    };
    let plate = normalize_plate(s.text("plate")).map_err(Error::Invalid)?;
    let (place, description) = (s.text("place").trim(), s.text("description").trim());
    text_limit("place", place)?;
    text_limit("description", description)?;
    let id = data::increment("reports/next", 1)? as u64;
    let r = Report {
        id,
        plate: plate.clone(),
        place: place.into(),
        description: description.into(),
        reporter: me,
        at: now_ms(),
        handled: None,
    };
    messaging::notify(
        &[Recipient::Role("community-staff".into())],
        &Notification {
            title_zh: format!("违停举报：{plate}"),
            title_en: format!("Illegal parking: {plate}"),
            body_zh: format!("{plate} 停在 {place}。{description}"),
            body_en: format!("{plate} is parked at {place}. {description}"),
            link: Some("/admin/reports".into()),
            urgency: Urgency::Normal,
        },
        &format!("report-{id}"),
    )?;
    // The notification is written with the report, in one transaction.
    data::set_json(&format!("report/{id:08}"), &r)?;
    done(
        req,
        "/",
        "已提交，社区工作人员会处理。",
        "Sent; the community staff will deal with it.",
        json!(r),
    )
}

fn reports(req: &Request, _: &Params) -> Answer {
    staff()?;
    let mut all = Vec::new();
    for item in data::scan("report/") {
        let (_, v) = item?;
        all.push(serde_json::from_slice::<Report>(&v).map_err(|e| Error::Json(e.to_string()))?);
    }
    all.reverse();
    if !req.wants_page() {
        return Ok(Response::json(200, &json!({ "reports": all })));
    }
    let mut page = admin_page(Text::new("违停举报", "Illegal-parking reports"));
    if all.is_empty() {
        page = page.push(Block::empty(Text::new("没有举报。", "No reports.")));
    }
    for r in all.iter().take(100) {
        let mut body = vec![Block::facts(vec![
            (Text::new("位置", "Where"), Text::plain(r.place.clone())),
            (Text::new("时间", "When"), Text::plain(show_time(r.at))),
            (
                Text::new("说明", "Details"),
                Text::plain(r.description.clone()),
            ),
        ])];
        match &r.handled {
            Some(note) => body.push(Block::muted(Text::new(
                format!("已处理：{note}"),
                format!("Handled: {note}"),
            ))),
            None => body.push(Block::actions(vec![Button::post(
                Text::new("标记已处理", "Mark handled"),
                format!("/admin/reports/{}/handle", r.id),
                json!({ "note": "已通知车主挪车 / owner asked to move the car" }),
            )])),
        }
        page = page.push(Block::card(Text::plain(r.plate.clone()), None, body));
    }
    Ok(Response::page(&page))
}

fn handle_report(req: &Request, p: &Params) -> Answer {
    let (_, name) = staff()?;
    let id: u64 = p
        .get("id")
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| Error::NotFound("没有这个举报 / no such report".into()))?;
    let key = format!("report/{id:08}");
    let mut r: Report = data::get_json(&key)?
        .ok_or_else(|| Error::NotFound("没有这个举报 / no such report".into()))?;
    let note = req
        .json::<serde_json::Value>()
        .ok()
        .and_then(|v| v.get("note").and_then(|n| n.as_str()).map(str::to_owned))
        .unwrap_or_default();
    text_limit("note", &note)?;
    r.handled = Some(format!("{note}（{name}，{}）", show_time(now_ms())));
    data::set_json(&key, &r)?;
    done(
        req,
        "/admin/reports",
        "已标记处理。",
        "Marked handled.",
        json!(r),
    )
}

// ---- staff pages ------------------------------------------------------------------------

fn admin_page(title: Text) -> Page {
    Page::new(title)
        .nav(Text::new("总览", "Overview"), "/admin")
        .nav(Text::new("车辆", "Cars"), "/admin/plates")
        .nav(Text::new("黑白名单", "Lists"), "/admin/lists")
        .nav(Text::new("收费", "Fees"), "/admin/fees")
        .nav(Text::new("举报", "Reports"), "/admin/reports")
}

fn log_items(log: &[Access]) -> Vec<ListItem> {
    log.iter()
        .map(|a| {
            let (zh, en) = if a.open {
                ("放行", "let through")
            } else {
                ("拒绝", "refused")
            };
            let fee = a
                .fee_fen
                .map(|f| format!(" · {}", yuan(f)))
                .unwrap_or_default();
            ListItem::new(Text::new(
                format!("{} {} {zh}", show_time(a.at), a.credential),
                format!("{} {} {en}", show_time(a.at), a.credential),
            ))
            .subtitle(Text::plain(format!(
                "{} · {} · {} · {}{fee}{}",
                a.device,
                a.direction,
                a.reason,
                a.gate,
                a.by.as_ref().map(|b| format!(" · {b}")).unwrap_or_default()
            )))
        })
        .collect()
}

fn admin(req: &Request, _: &Params) -> Answer {
    staff()?;
    let log = recent_log(LOG_SHOWN)?;
    let gates: Vec<_> = device::list(None)?
        .into_iter()
        .filter(|d| d.kind == "gate" || d.kind == "barrier")
        .collect();
    let mut spaces = Vec::new();
    for item in data::scan("space/") {
        let (k, v) = item?;
        let s: Space = serde_json::from_slice(&v).map_err(|e| Error::Json(e.to_string()))?;
        spaces.push((k.trim_start_matches("space/").to_owned(), s));
    }
    if !req.wants_page() {
        let spaces: Vec<_> = spaces
            .iter()
            .map(|(d, s)| json!({ "device": d, "occupied": s.occupied, "since": s.since }))
            .collect();
        return Ok(Response::json(
            200,
            &json!({ "log": log, "spaces": spaces }),
        ));
    }
    let free = spaces.iter().filter(|(_, s)| !s.occupied).count();
    let mut page = admin_page(Text::new("停车与门禁", "Parking and access"));
    if !gates.is_empty() {
        page = page.push(Block::subheading(Text::new(
            "道闸远程开闸",
            "Open a gate remotely",
        )));
        page = page.push(Block::actions(
            gates
                .iter()
                .map(|g| {
                    Button::post(
                        Text::new(format!("打开 {}", g.name), format!("Open {}", g.name)),
                        format!("/admin/gates/{}/open", g.id),
                        json!({}),
                    )
                    .confirm(Text::new("确认远程开闸？", "Open this gate now?"))
                })
                .collect(),
        ));
    }
    page = page.push(Block::progress(
        Text::new(
            format!("空闲车位 {free} / {}", spaces.len()),
            format!("Free spaces {free} / {}", spaces.len()),
        ),
        free as u64,
        spaces.len().max(1) as u64,
    ));
    page = page.push(Block::subheading(Text::new("通行记录", "Access log")));
    page = if log.is_empty() {
        page.push(Block::empty(Text::new(
            "还没有通行记录。",
            "No access yet.",
        )))
    } else {
        page.push(Block::list(log_items(&log)))
    };
    Ok(Response::page(&page))
}

fn admin_plates(req: &Request, _: &Params) -> Answer {
    staff()?;
    let mut regs = Vec::new();
    for item in data::scan("plate/") {
        let (k, _) = item?;
        if let Some(r) = registration(k.trim_start_matches("plate/"))? {
            regs.push(r);
        }
    }
    if !req.wants_page() {
        return Ok(Response::json(200, &json!({ "plates": regs })));
    }
    let mut page = admin_page(Text::new("登记车辆", "Registered cars"));
    page = if regs.is_empty() {
        page.push(Block::empty(Text::new(
            "还没有登记车辆。",
            "No cars registered.",
        )))
    } else {
        page.push(Block::list(
            regs.iter()
                .map(|r| {
                    ListItem::new(Text::plain(r.plate.clone())).subtitle(Text::plain(format!(
                        "{} · {} · {}",
                        r.owner_name,
                        r.household,
                        show_time(r.added_at)
                    )))
                })
                .collect(),
        ))
    };
    Ok(Response::page(
        &page.push(plate_form("/admin/plates", true)),
    ))
}

fn list_form() -> Form {
    Form::new("/admin/lists", Text::new("加入名单", "Add to a list"))
        .field(
            FormField::text("plate", Text::new("车牌号", "Plate number"))
                .required()
                .max_length(12),
        )
        .field(
            FormField::radio("list", Text::new("名单", "List"))
                .required()
                .option(
                    "white",
                    Text::new("白名单（始终放行）", "White (always let in)"),
                )
                .option(
                    "black",
                    Text::new("黑名单（禁止进入）", "Black (never let in)"),
                ),
        )
        .field(FormField::text("note", Text::new("原因", "Why")).max_length(MAX_TEXT as u32))
}

fn lists(req: &Request, _: &Params) -> Answer {
    staff()?;
    let mut all = Vec::new();
    for item in data::scan("list/") {
        let (_, v) = item?;
        all.push(serde_json::from_slice::<ListEntry>(&v).map_err(|e| Error::Json(e.to_string()))?);
    }
    if !req.wants_page() {
        return Ok(Response::json(200, &json!({ "lists": all })));
    }
    let mut page = admin_page(Text::new("黑白名单", "White and black lists"));
    if all.is_empty() {
        page = page.push(Block::empty(Text::new(
            "名单是空的。",
            "Both lists are empty.",
        )));
    }
    for e in &all {
        let which = match e.list {
            ListKind::White => Text::new("白名单", "white"),
            ListKind::Black => Text::new("黑名单", "black"),
        };
        page = page.push(Block::card(
            Text::plain(e.plate.clone()),
            None,
            vec![
                Block::facts(vec![
                    (Text::new("名单", "List"), which),
                    (Text::new("原因", "Why"), Text::plain(e.note.clone())),
                ]),
                Block::actions(vec![Button::post(
                    Text::new("移出名单", "Remove"),
                    format!("/admin/lists/{}/delete", e.plate),
                    json!({}),
                )]),
            ],
        ));
    }
    Ok(Response::page(&page.push(list_form())))
}

fn add_to_list(req: &Request, _: &Params) -> Answer {
    let (me, _) = staff()?;
    let s = match req.check_form(&list_form()) {
        Ok(s) => s,
        Err(r) => return Ok(r),
    };
    let plate = normalize_plate(s.text("plate")).map_err(Error::Invalid)?;
    let list = match s.text("list") {
        "white" => ListKind::White,
        "black" => ListKind::Black,
        other => {
            return Err(Error::Invalid(format!(
                "list: 未知名单 / unknown list {other:?}"
            )));
        }
    };
    let note = s.text("note").trim().to_owned();
    text_limit("note", &note)?;
    let e = ListEntry {
        plate: plate.clone(),
        list,
        note,
        added_by: me,
        added_at: now_ms(),
    };
    data::set_json(&format!("list/{plate}"), &e)?;
    done(req, "/admin/lists", "已加入名单。", "Added.", json!(e))
}

fn remove_from_list(req: &Request, p: &Params) -> Answer {
    staff()?;
    let plate = plate_param(p)?;
    if !data::delete(&format!("list/{plate}"))? {
        return Err(Error::NotFound(format!(
            "{plate} 不在名单上 / {plate} is on no list"
        )));
    }
    done(
        req,
        "/admin/lists",
        "已移出名单。",
        "Removed.",
        json!({ "removed": plate }),
    )
}

fn fee_form(rule: &FeeRule) -> Form {
    Form::new(
        "/admin/fees",
        Text::new("保存收费规则", "Save the fee rule"),
    )
    .field(
        FormField::checkbox(
            "allow_temporary",
            Text::new("允许临时车辆进入", "Let temporary cars in"),
        )
        .value(rule.allow_temporary),
    )
    .field(
        FormField::number("free_minutes", Text::new("免费分钟数", "Free minutes"))
            .required()
            .range(0.0, 1440.0)
            .value(rule.free_minutes),
    )
    .field(
        FormField::number("per_hour_fen", Text::new("每小时（分）", "Per hour (fen)"))
            .required()
            .range(0.0, 100_000.0)
            .value(rule.per_hour_fen),
    )
    .field(
        FormField::number(
            "daily_cap_fen",
            Text::new("每日封顶（分，0 为不封顶）", "Daily cap (fen, 0 for none)"),
        )
        .required()
        .range(0.0, 1_000_000.0)
        .value(rule.daily_cap_fen),
    )
}

fn fees(req: &Request, _: &Params) -> Answer {
    staff()?;
    let rule = fee_rule()?;
    if !req.wants_page() {
        return Ok(Response::json(200, &rule));
    }
    let page = admin_page(Text::new("临时停车收费", "Temporary parking fees")).push(Block::muted(
        Text::new(
            format!(
                "现行规则：免费 {} 分钟，之后每小时 {}，每日封顶 {}。",
                rule.free_minutes,
                yuan(rule.per_hour_fen.into()),
                yuan(rule.daily_cap_fen.into())
            ),
            format!(
                "Now: {} minutes free, then {} per hour, at most {} a day.",
                rule.free_minutes,
                yuan(rule.per_hour_fen.into()),
                yuan(rule.daily_cap_fen.into())
            ),
        ),
    ));
    Ok(Response::page(&page.push(fee_form(&rule))))
}

fn save_fees(req: &Request, _: &Params) -> Answer {
    staff()?;
    let s = match req.check_form(&fee_form(&FeeRule::default())) {
        Ok(s) => s,
        Err(r) => return Ok(r),
    };
    let n = |k: &str| s.number(k).unwrap_or(0.0).max(0.0) as u32;
    let rule = FeeRule {
        allow_temporary: s.checked("allow_temporary"),
        free_minutes: n("free_minutes"),
        per_hour_fen: n("per_hour_fen"),
        daily_cap_fen: n("daily_cap_fen"),
    };
    data::set_json("config/fees", &rule)?;
    done(
        req,
        "/admin/fees",
        "收费规则已保存。",
        "The fee rule is saved.",
        json!(rule),
    )
}

/// Staff issue an IC card to a resident (the non-phone, non-face way in).
fn issue_card(req: &Request, _: &Params) -> Answer {
    let (me, _) = staff()?;
    #[derive(Deserialize)]
    struct Input {
        card: String,
        person: String,
    }
    let input: Input = req.json()?;
    let card = input.card.trim();
    if card.is_empty()
        || card.len() > 64
        || !card.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    {
        return Err(Error::Invalid(
            "card: 须为 1–64 位字母数字 / 1–64 letters, digits or '-'".into(),
        ));
    }
    name_and_household(&input.person)?;
    let outcome = data::Batch::new()
        .require_absent(&format!("card/{card}"))
        .set(&format!("card/{card}"), input.person.as_bytes())
        .set_json(
            &data::person_key(&input.person, &format!("card/{card}")),
            &json!({ "card": card, "issued_by": me, "at": now_ms() }),
        )?
        .commit()?;
    if outcome != data::BatchOutcome::Committed {
        return Err(Error::Http(
            409,
            format!("卡 {card} 已发放 / card {card} is already issued"),
        ));
    }
    Ok(Response::json(
        201,
        &json!({ "card": card, "person": input.person }),
    ))
}

// ---- residents --------------------------------------------------------------------------

fn home(req: &Request, _: &Params) -> Answer {
    let (me, _) = caller()?;
    let now = now_ms();
    let plates = my_plates(&me)?;
    let passes = my_passes(&me, now)?;
    if !req.wants_page() {
        return Ok(Response::json(
            200,
            &json!({ "plates": plates, "passes": passes }),
        ));
    }
    let mut page = Page::new(Text::new("停车与门禁", "Parking and access"))
        .nav(Text::new("我的车辆", "My cars"), "/");
    if is_staff() {
        page = page.nav(Text::new("管理", "Manage"), "/admin");
    }
    page = page.push(Block::subheading(Text::new(
        "我家的车辆",
        "My household's cars",
    )));
    page = if plates.is_empty() {
        page.push(Block::empty(Text::new(
            "还没有登记车辆。登记后，到道闸会自动抬杆。",
            "No cars yet. Registered cars are let in at the gate automatically.",
        )))
    } else {
        page.push(Block::list(
            plates
                .iter()
                .map(|r| {
                    ListItem::new(Text::plain(r.plate.clone())).subtitle(Text::new(
                        format!("登记于 {}", show_time(r.added_at)),
                        format!("registered {}", show_time(r.added_at)),
                    ))
                })
                .collect(),
        ))
        .push(Block::actions(
            plates
                .iter()
                .map(|r| {
                    Button::post(
                        Text::new(format!("删除 {}", r.plate), format!("Remove {}", r.plate)),
                        format!("/plates/{}/delete", r.plate),
                        json!({}),
                    )
                    .confirm(Text::new("确认删除这辆车？", "Remove this car?"))
                })
                .collect(),
        ))
    };
    page = page.push(plate_form("/plates", false));
    page = page.push(Block::subheading(Text::new("访客通行证", "Visitor passes")));
    if !passes.is_empty() {
        page = page.push(Block::list(
            passes
                .iter()
                .map(|p| {
                    ListItem::new(Text::plain(format!(
                        "{} {}",
                        p.code,
                        p.plate.clone().unwrap_or_default()
                    )))
                    .subtitle(Text::new(
                        format!("有效至 {}", show_time(p.valid_to)),
                        format!("valid until {}", show_time(p.valid_to)),
                    ))
                })
                .collect(),
        ));
    }
    page = page.push(pass_form());
    page = page.push(Block::muted(Text::new(
        "没有智能手机？请致电门岗，工作人员可以远程开闸或代为登记。",
        "No smartphone? Call the gatehouse: staff can open the gate or register a car for you.",
    )));
    page = page.push(Block::subheading(Text::new(
        "举报违停",
        "Report illegal parking",
    )));
    Ok(Response::page(&page.push(report_form())))
}

impl Plugin for Parking {
    fn metadata() -> Metadata {
        Metadata::new("parking", env!("CARGO_PKG_VERSION"), "停车与门禁", "Parking and access")
            .description(
                "车辆登记、道闸自动识别放行、访客通行证、黑白名单、临时停车收费、车位状态和违停举报。",
                "Registered cars let in at the gate, visitor passes, white and black lists, temporary-parking fees, space occupancy and illegal-parking reports.",
            )
            .require("data", "保存车辆登记、通行证和通行记录", "keep registrations, passes and the access log")
            .require("identity", "确认住户和工作人员身份", "know residents and staff")
            .require("identity.household", "车辆按户登记", "register cars per household")
            .require("device.barrier", "识别车牌并控制道闸", "read plates and work the barriers")
            .require("messaging.notify", "把违停举报通知社区工作人员", "tell the community staff about illegal parking")
            .optional("identity.name", "在车辆登记中显示车主姓名", "show owners' names on registrations")
            .optional("device.gate", "控制人行门禁", "work pedestrian gates")
            .optional("device.parking-sensor", "显示车位空闲情况", "show which spaces are free")
    }

    fn on_event(event: Event) -> Result<(), String> {
        match event {
            Event::Telemetry(t) => on_telemetry(&t).map_err(|e| e.to_string()),
            _ => Ok(()),
        }
    }

    fn handle(request: Request) -> Response {
        Router::new()
            .get("/", home)
            .post("/plates", add_plate)
            .post("/plates/{plate}/delete", remove_plate)
            .post("/passes", add_pass)
            .post("/reports", add_report)
            .get("/admin", admin)
            .get("/admin/plates", admin_plates)
            .post("/admin/plates", staff_add_plate)
            .get("/admin/lists", lists)
            .post("/admin/lists", add_to_list)
            .post("/admin/lists/{plate}/delete", remove_from_list)
            .get("/admin/fees", fees)
            .post("/admin/fees", save_fees)
            .get("/admin/reports", reports)
            .post("/admin/reports/{id}/handle", handle_report)
            .post("/admin/gates/{device}/open", remote_open)
            .post("/admin/cards", issue_card)
            .handle(request)
    }
}

export_plugin!(Parking);
