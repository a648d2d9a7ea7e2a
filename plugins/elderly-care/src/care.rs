//! What happens without anyone pressing a button: wearable readings against thresholds,
//! alarms nobody acknowledged (escalation), and the daily check-in (平安打卡).
//!
//! Rules (named, documented to staff on the roster page):
//! - a fall or an SOS from a wearable raises an alarm at once;
//! - a heart rate outside [`HEART_RATE_LOW`]–[`HEART_RATE_HIGH`] or a blood-oxygen level
//!   under [`SPO2_LOW`] raises one when it lasts [`SUSTAINED_MS`] (readings carry their own
//!   time, `ts`, when the device sends one);
//! - after a wristband alarm of a kind for an elder, the same kind stays silent for
//!   [`SILENCE_MS`] (every press of the button raises an alarm);
//! - an alarm still unacknowledged after [`ESCALATE_AFTER_MIN`] minutes is escalated: first
//!   to the community staff and grid workers again, then to the elder's contacts as well;
//! - an elder enrolled for check-in who has not checked in by the `check-in` schedule (20:00
//!   China time) is reported to their contacts and the grid workers.

use linli_sdk::data;
use linli_sdk::services::{Notification, Recipient, Urgency, messaging};
use linli_sdk::time::TZ_OFFSET_MS;
use linli_sdk::{Error, Telemetry};
use serde::{Deserialize, Serialize};

use crate::{Alarm, Elder, Step};

pub const HEART_RATE_LOW: f64 = 40.0;
pub const HEART_RATE_HIGH: f64 = 130.0;
pub const SPO2_LOW: f64 = 90.0;
pub const SUSTAINED_MS: i64 = 2 * 60 * 1000;
pub const SILENCE_MS: i64 = 30 * 60 * 1000;
pub const ESCALATE_AFTER_MIN: [i64; 2] = [5, 15];

/// A day's check-in.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckIn {
    pub at_ms: i64,
    /// `app`, `assisted` (a grid worker acting for the elder), `phone` (staff took a call or
    /// visited).
    pub how: String,
    pub by: String,
}

fn e(err: Error) -> String {
    err.to_string()
}

/// `YYYY-MM-DD` of `ms` in China time.
pub fn china_date(ms: i64) -> String {
    let (y, m, d) = linli_sdk::time::civil((ms + TZ_OFFSET_MS).div_euclid(86_400_000));
    format!("{y:04}-{m:02}-{d:02}")
}

pub fn checkin_key(person: &str, date: &str) -> String {
    data::person_key(person, &format!("checkin/{date}"))
}

/// Record `person`'s check-in for the day of `at`.
pub fn check_in(person: &str, at: i64, how: &str, by: &str) -> Result<CheckIn, Error> {
    let c = CheckIn {
        at_ms: at,
        how: how.into(),
        by: by.into(),
    };
    data::set_json(&checkin_key(person, &china_date(at)), &c)?;
    Ok(c)
}

pub fn checked_in(person: &str, date: &str) -> Result<Option<CheckIn>, Error> {
    data::get_json(&checkin_key(person, date))
}

/// Every elder on the roster.
pub fn roster() -> Result<Vec<Elder>, Error> {
    let mut list = Vec::new();
    for item in data::scan("elders/") {
        let (key, _) = item?;
        let person = key.trim_start_matches("elders/");
        if let Some(el) = data::get_json::<Elder>(&data::person_key(person, "elder"))? {
            list.push(el);
        }
    }
    Ok(list)
}

/// An elder's contacts and the place's grid workers: who hears of an alarm first.
fn family_and_grid(elder: &Elder) -> Vec<Recipient> {
    let mut to: Vec<Recipient> = elder
        .contacts
        .iter()
        .map(|c| Recipient::Resident(c.clone()))
        .collect();
    to.push(Recipient::Role("grid-worker".into()));
    to
}

/// The zh/en words for an alarm's kind.
pub fn kind_words(kind: &str) -> (&'static str, &'static str) {
    match kind {
        "fall" => ("跌倒报警", "Fall detected"),
        "sos" => ("手环求救", "SOS from the wristband"),
        "heart-rate" => ("心率异常", "Abnormal heart rate"),
        "spo2" => ("血氧过低", "Low blood oxygen"),
        _ => ("紧急呼叫", "Emergency call"),
    }
}

/// Raise an alarm of `kind` for `elder` — unless it comes from the wristband's readings and
/// the same kind is in its silence window (a person pressing the button is never silenced);
/// tell the contacts and the grid workers. The alarm's id makes the notification's key.
/// `note` says what the device reported, in Chinese and in English (empty when the kind says
/// it all).
pub fn raise(
    elder: &Elder,
    kind: &str,
    device: &str,
    at: i64,
    note: (&str, &str),
) -> Result<(), String> {
    let silence = format!("silence/{}/{kind}", elder.person);
    if kind != "button"
        && let Some(until) = data::get_json::<i64>(&silence).map_err(e)?
        && at < until
    {
        linli_sdk::log::info(&format!("{kind} for an elder within its silence window"));
        return Ok(());
    }
    // One alarm per device message, however often it is handed over (a host that died
    // between this handler's save and marking the message done hands it over again; the
    // message keeps its device and receipt time).
    let raised = format!("raised/{kind}/{device}/{at}");
    if data::exists(&raised).map_err(e)? {
        linli_sdk::log::info("a device message already raised its alarm");
        return Ok(());
    }
    let id = data::increment("alarms/next", 1).map_err(e)? as u64;
    let a = Alarm {
        id,
        elder: elder.person.clone(),
        elder_name: elder.name.clone(),
        address: elder.address.clone(),
        device: device.into(),
        raised_at_ms: at as u64,
        state: "open".into(),
        assigned_to: None,
        history: vec![Step {
            at_ms: at as u64,
            action: "raised".into(),
            by: "device".into(),
            by_name: device.into(),
            note: if note.0.is_empty() {
                String::new()
            } else {
                format!("{} / {}", note.0, note.1)
            },
        }],
        kind: kind.into(),
        escalations: 0,
    };
    let (zh, en) = kind_words(kind);
    let to = family_and_grid(elder);
    messaging::notify(
        &to,
        &Notification {
            title_zh: format!("{zh}：{}", elder.name),
            title_en: format!("{en}: {}", elder.name),
            body_zh: format!(
                "{}（{}）：{zh}{}。请立即联系或上门查看。",
                elder.name,
                elder.address,
                bracketed(note.0, "（", "）")
            ),
            body_en: format!(
                "{} ({}): {en}{}. Call or go there now.",
                elder.name,
                elder.address,
                bracketed(note.1, " (", ")")
            ),
            link: Some(format!("/alarms/{id}")),
            urgency: Urgency::Emergency,
        },
        // One notification per event that raised it, however often the event is handed
        // over (two deliveries racing each other included).
        &format!("alarm-{kind}-{device}-{at}"),
    )
    .map_err(e)?;
    // The notification is written with this batch, in its transaction.
    let outcome = data::Batch::new()
        .require_absent(&raised)
        .set(&raised, id.to_string().as_bytes())
        .set_json(&format!("alarm/{id}"), &a)
        .map_err(e)?
        .set(&format!("open/{id:010}"), b"")
        .set_json(&silence, &(at + SILENCE_MS))
        .map_err(e)?
        .commit()
        .map_err(e)?;
    if outcome != data::BatchOutcome::Committed {
        // Another delivery of the same event raised it meanwhile; this one's notification
        // has that one's key, so it adds nothing.
        linli_sdk::log::info("a device message already raised its alarm");
    }
    Ok(())
}

/// A reading from a wearable on the roster.
pub fn wearable(t: &Telemetry, elder: &Elder) -> Result<(), String> {
    let v: serde_json::Value = serde_json::from_slice(&t.payload).map_err(|x| x.to_string())?;
    let received = t.received_at_ms as i64;
    // The device's own time when it gives a plausible one (readings may arrive in batches).
    let at = v
        .get("ts")
        .and_then(|x| x.as_i64())
        .filter(|ts| (received - ts).abs() <= 86_400_000)
        .unwrap_or(received);
    let flag = |k: &str| v.get(k).and_then(|x| x.as_bool()).unwrap_or(false);
    if flag("fall") {
        raise(elder, "fall", &t.device_id, at, ("", ""))?;
    }
    if flag("sos") {
        raise(elder, "sos", &t.device_id, at, ("", ""))?;
    }
    let num = |k: &str| v.get(k).and_then(|x| x.as_f64());
    if let Some(hr) = num("heart_rate") {
        let bad = !(HEART_RATE_LOW..=HEART_RATE_HIGH).contains(&hr);
        sustained(
            elder,
            "heart-rate",
            bad,
            at,
            &t.device_id,
            (&format!("心率 {hr}"), &format!("heart rate {hr}")),
        )?;
    }
    if let Some(o) = num("spo2") {
        sustained(
            elder,
            "spo2",
            o < SPO2_LOW,
            at,
            &t.device_id,
            (&format!("血氧 {o}%"), &format!("SpO2 {o}%")),
        )?;
    }
    Ok(())
}

/// Track how long a reading has been out of range; raise once it lasted [`SUSTAINED_MS`].
fn sustained(
    elder: &Elder,
    kind: &str,
    bad: bool,
    at: i64,
    device: &str,
    note: (&str, &str),
) -> Result<(), String> {
    let key = format!("breach/{}/{kind}", elder.person);
    if !bad {
        data::delete(&key).map_err(e)?;
        return Ok(());
    }
    let Some(since) = data::get_json::<i64>(&key).map_err(e)? else {
        data::set_json(&key, &at).map_err(e)?;
        return Ok(());
    };
    if at - since >= SUSTAINED_MS {
        data::delete(&key).map_err(e)?;
        let minutes = (at - since) / 60_000;
        raise(
            elder,
            kind,
            device,
            at,
            (
                &format!("{}，持续 {minutes} 分钟", note.0),
                &format!("{} for {minutes} min", note.1),
            ),
        )?;
    }
    Ok(())
}

/// `note` in brackets, or nothing when there is no note.
fn bracketed(note: &str, open: &str, close: &str) -> String {
    if note.is_empty() {
        String::new()
    } else {
        format!("{open}{note}{close}")
    }
}

/// The `escalate` tick: alarms nobody acknowledged in time go wider.
pub fn escalate(due: i64) -> Result<(), String> {
    let mut open = Vec::new();
    for item in data::scan("open/") {
        let (key, _) = item.map_err(e)?;
        if let Some(id) = key
            .strip_prefix("open/")
            .and_then(|s| s.parse::<u64>().ok())
        {
            open.push(id);
        }
    }
    for id in open {
        let Some(mut a) = data::get_json::<Alarm>(&format!("alarm/{id}")).map_err(e)? else {
            continue;
        };
        if a.state != "open" {
            continue;
        }
        let minutes = (due - a.raised_at_ms as i64) / 60_000;
        let level = ESCALATE_AFTER_MIN.iter().filter(|m| minutes >= **m).count() as u32;
        if level <= a.escalations {
            continue;
        }
        let mut to = vec![
            Recipient::Role("community-staff".into()),
            Recipient::Role("grid-worker".into()),
        ];
        if level >= 2
            && let Some(elder) =
                data::get_json::<Elder>(&data::person_key(&a.elder, "elder")).map_err(e)?
        {
            to.extend(
                elder
                    .contacts
                    .iter()
                    .map(|c| Recipient::Resident(c.clone())),
            );
        }
        let (zh, en) = kind_words(&a.kind);
        messaging::notify(
            &to,
            &Notification {
                title_zh: format!("{zh}无人响应（{minutes} 分钟）：{}", a.elder_name),
                title_en: format!("{en} unanswered for {minutes} min: {}", a.elder_name),
                body_zh: format!(
                    "{}的警报已 {minutes} 分钟无人确认，请立即处置。地址：{}",
                    a.elder_name, a.address
                ),
                body_en: format!(
                    "Nobody acknowledged {}'s alarm for {minutes} minutes. Act now. Address: {}",
                    a.elder_name, a.address
                ),
                link: Some(format!("/alarms/{id}")),
                urgency: Urgency::Emergency,
            },
            &format!("alarm-{id}-escalate-{level}"),
        )
        .map_err(e)?;
        a.escalations = level;
        a.history.push(Step {
            at_ms: due as u64,
            action: "escalated".into(),
            by: "system".into(),
            by_name: "系统 / system".into(),
            note: format!("{minutes} 分钟无人确认 / unanswered for {minutes} min"),
        });
        data::set_json(&format!("alarm/{id}"), &a).map_err(e)?;
    }
    Ok(())
}

/// The `check-in` tick: elders enrolled for check-in who have not checked in today.
pub fn missed_check_ins(due: i64) -> Result<(), String> {
    let date = china_date(due);
    for elder in roster().map_err(e)? {
        if !elder.checkin || checked_in(&elder.person, &date).map_err(e)?.is_some() {
            continue;
        }
        let to = family_and_grid(&elder);
        messaging::notify(
            &to,
            &Notification {
                title_zh: format!("未完成平安打卡：{}", elder.name),
                title_en: format!("No check-in today: {}", elder.name),
                body_zh: format!(
                    "{} 今天（{date}）还没有平安打卡，请打电话或上门看看。地址：{}",
                    elder.name, elder.address
                ),
                body_en: format!(
                    "{} has not checked in today ({date}). Please call or visit. Address: {}",
                    elder.name, elder.address
                ),
                link: Some("/elders".into()),
                urgency: Urgency::High,
            },
            &format!("missed-{}-{date}", elder.person),
        )
        .map_err(e)?;
        data::set(&format!("missed/{date}/{}", elder.person), b"").map_err(e)?;
    }
    Ok(())
}
