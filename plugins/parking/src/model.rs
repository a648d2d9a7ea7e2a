//! The parking rules, apart from the host: plates, passes, lists, fees and the gate's
//! decision. Pure functions over plain data, tested natively.

use serde::{Deserialize, Serialize};

/// Most plates one household may register.
pub const MAX_PLATES_PER_HOUSEHOLD: usize = 3;
/// Most visitor passes a resident may hold that have not expired.
pub const MAX_ACTIVE_PASSES: usize = 10;
/// The longest a visitor pass may last, in hours.
pub const MAX_PASS_HOURS: u32 = 72;
/// The longest note, report text or place, in characters.
pub const MAX_TEXT: usize = 200;

/// Province (and special) prefixes of mainland plates (GA 36).
const PROVINCES: &str = "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼";

/// A plate as people write it (`浙A·12345`, `浙a 12345`, `浙A-D12345`) in its one stored form
/// (`浙A12345`), or why it is not a plate: a province character, a letter, then five letters
/// or digits (six for new-energy plates) — or four and a 挂/学/警/港/澳 suffix.
pub fn normalize_plate(input: &str) -> Result<String, String> {
    let cleaned: String = input
        .chars()
        .filter(|c| !matches!(c, ' ' | '·' | '•' | '.' | '-' | '\u{3000}'))
        .flat_map(char::to_uppercase)
        .collect();
    let bad = || {
        format!("车牌号格式不对（如 浙A12345） / {input:?} is not a plate number (e.g. 浙A12345)")
    };
    let mut chars = cleaned.chars();
    let province = chars.next().ok_or_else(bad)?;
    if !PROVINCES.contains(province) {
        return Err(bad());
    }
    let letter = chars.next().ok_or_else(bad)?;
    if !letter.is_ascii_uppercase() {
        return Err(bad());
    }
    let rest: Vec<char> = chars.collect();
    let (body, suffix) = match rest.last() {
        Some(c) if "挂学警港澳".contains(*c) => (&rest[..rest.len() - 1], true),
        _ => (&rest[..], false),
    };
    // Coach, police and HK/Macau plates carry four characters before their suffix.
    let len_ok = if suffix {
        body.len() == 4
    } else {
        body.len() == 5 || body.len() == 6
    };
    // I and O are not used on plates (they read as 1 and 0).
    let chars_ok = body
        .iter()
        .all(|c| c.is_ascii_digit() || (c.is_ascii_uppercase() && *c != 'I' && *c != 'O'));
    if !len_ok || !chars_ok {
        return Err(bad());
    }
    Ok(cleaned)
}

/// Which list a plate is on, if any besides residents'.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ListKind {
    /// Always let in (police, ambulance, sanitation, the village's own vehicles).
    White,
    /// Never let in.
    Black,
}

/// A temporary-parking fee rule (amounts in fen, 1/100 yuan).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeeRule {
    /// Whether cars that are neither registered nor holding a pass may come in at all.
    pub allow_temporary: bool,
    /// Minutes free of charge.
    pub free_minutes: u32,
    /// Fee per started hour after the free minutes.
    pub per_hour_fen: u32,
    /// The most one stay costs per started day (0: no cap).
    pub daily_cap_fen: u32,
}

impl Default for FeeRule {
    fn default() -> Self {
        FeeRule {
            allow_temporary: false,
            free_minutes: 30,
            per_hour_fen: 200,
            daily_cap_fen: 2000,
        }
    }
}

impl FeeRule {
    /// The fee for a stay of `minutes`.
    pub fn fee(&self, minutes: u64) -> u64 {
        if minutes <= u64::from(self.free_minutes) {
            return 0;
        }
        let days = minutes / (24 * 60);
        let rest = minutes % (24 * 60);
        let hours = |m: u64| m.div_ceil(60) * u64::from(self.per_hour_fen);
        let cap = u64::from(self.daily_cap_fen);
        let capped = |f: u64| if cap > 0 { f.min(cap) } else { f };
        days * capped(hours(24 * 60)) + capped(hours(rest))
    }
}

/// `¥12.50` from fen.
pub fn yuan(fen: u64) -> String {
    format!("¥{}.{:02}", fen / 100, fen % 100)
}

/// What the gate should know about a plate.
#[derive(Debug, Clone, Default)]
pub struct Standing {
    pub list: Option<ListKind>,
    /// Registered to a household here.
    pub resident: bool,
    /// Holds a visitor pass valid now.
    pub pass: bool,
}

/// The gate's decision for a car.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub open: bool,
    /// `resident`, `white`, `pass`, `temporary`, `exit`, `black`, `unknown`.
    pub reason: String,
}

/// Decide for a car at a gate going `direction` (`in` or `out`).
pub fn decide(s: &Standing, direction: &str, rule: &FeeRule) -> Decision {
    let d = |open: bool, reason: &str| Decision {
        open,
        reason: reason.into(),
    };
    // Nobody is kept in: a car blacklisted after it came in may still leave.
    if direction == "out" {
        return d(true, "exit");
    }
    if s.list == Some(ListKind::Black) {
        return d(false, "black");
    }
    if s.resident {
        d(true, "resident")
    } else if s.list == Some(ListKind::White) {
        d(true, "white")
    } else if s.pass {
        d(true, "pass")
    } else if rule.allow_temporary {
        d(true, "temporary")
    } else {
        d(false, "unknown")
    }
}

/// What a gate's display says for a decision (at most 64 characters, the device's limit).
pub fn display_text(reason: &str) -> &'static str {
    match reason {
        "resident" => "欢迎回家",
        "white" => "请通行",
        "pass" => "访客请通行",
        "temporary" => "临时车辆 按规定收费",
        "exit" => "一路平安",
        "black" => "禁止通行 请联系管理处",
        _ => "未登记车辆 禁止通行 请联系住户或管理处",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plates_are_normalised_or_refused() {
        assert_eq!(normalize_plate("浙A·12345").unwrap(), "浙A12345");
        assert_eq!(normalize_plate(" 浙a 1234d ").unwrap(), "浙A1234D");
        assert_eq!(normalize_plate("浙A-D12345").unwrap(), "浙AD12345");
        assert_eq!(normalize_plate("浙A1234学").unwrap(), "浙A1234学");
        for bad in [
            "",
            "浙",
            "AA12345",
            "浙112345",
            "浙A1234",
            "浙A1234567",
            "浙A12O45",
            "浙A<b>12",
            "浙AD12345挂",
        ] {
            assert!(normalize_plate(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn fees_follow_the_rule() {
        let r = FeeRule::default();
        assert_eq!(r.fee(30), 0);
        assert_eq!(r.fee(31), 200);
        assert_eq!(r.fee(61), 400);
        assert_eq!(r.fee(23 * 60), 2000, "capped per day");
        assert_eq!(r.fee(24 * 60 + 90), 2000 + 400);
        let uncapped = FeeRule {
            daily_cap_fen: 0,
            ..r
        };
        assert_eq!(uncapped.fee(24 * 60), 24 * 200);
        assert_eq!(yuan(1250), "¥12.50");
    }

    #[test]
    fn gate_decisions() {
        let rule = FeeRule::default();
        let s = |list, resident, pass| Standing {
            list,
            resident,
            pass,
        };
        assert!(decide(&s(None, true, false), "in", &rule).open);
        assert!(decide(&s(Some(ListKind::White), false, false), "in", &rule).open);
        assert!(decide(&s(None, false, true), "in", &rule).open);
        assert_eq!(
            decide(&s(None, false, false), "in", &rule).reason,
            "unknown"
        );
        assert!(!decide(&s(Some(ListKind::Black), true, true), "in", &rule).open);
        assert!(decide(&s(Some(ListKind::Black), false, false), "out", &rule).open);
        assert!(decide(&s(None, false, false), "out", &rule).open);
        let open_lot = FeeRule {
            allow_temporary: true,
            ..rule
        };
        assert_eq!(
            decide(&s(None, false, false), "in", &open_lot).reason,
            "temporary"
        );
        for reason in [
            "resident",
            "white",
            "pass",
            "temporary",
            "exit",
            "black",
            "unknown",
        ] {
            assert!(display_text(reason).chars().count() <= 64);
        }
    }
}
