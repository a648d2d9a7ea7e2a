//! Time for plugins: the host's clock (through WASI) and dates in China Standard Time
//! (UTC+8, no daylight saving), the zone every linli deployment shows its residents.

/// UTC+8 in milliseconds.
pub const TZ_OFFSET_MS: i64 = 8 * 3600 * 1000;

/// Now, in milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Days since 1970-01-01 → (year, month, day). (Howard Hinnant's civil_from_days.)
pub fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// (year, month, day) → days since 1970-01-01.
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 } as i64;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `YYYY-MM-DDTHH:MM` in China Standard Time → ms since the epoch.
pub fn parse_local(s: &str) -> Option<i64> {
    let (date, time) = s.split_once('T')?;
    let mut d = date.splitn(3, '-');
    let y: i64 = d.next()?.parse().ok()?;
    let m: u32 = d.next()?.parse().ok()?;
    let day: u32 = d.next()?.parse().ok()?;
    let (hh, mm) = time.split_once(':')?;
    let (hh, mm): (i64, i64) = (hh.parse().ok()?, mm.get(..2)?.parse().ok()?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&day) || hh > 23 || mm > 59 {
        return None;
    }
    let days = days_from_civil(y, m, day);
    Some((days * 86_400 + hh * 3600 + mm * 60) * 1000 - TZ_OFFSET_MS)
}

/// ms since the epoch → `YYYY-MM-DD HH:MM` in China Standard Time.
pub fn show_time(ms: i64) -> String {
    let local = ms + TZ_OFFSET_MS;
    let days = local.div_euclid(86_400_000);
    let rest = local.rem_euclid(86_400_000) / 60_000;
    let (y, m, d) = civil(days);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}", rest / 60, rest % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip_in_china_time() {
        let ms = parse_local("2026-11-24T09:30").unwrap();
        assert_eq!(show_time(ms), "2026-11-24 09:30");
        assert_eq!(ms, 1_795_483_800_000);
        assert_eq!(parse_local("2026-13-01T00:00"), None);
        assert_eq!(parse_local("2026-11-24 09:30"), None);
        assert_eq!(civil(0), (1970, 1, 1));
        assert_eq!(days_from_civil(2000, 2, 29), 11_016);
    }
}
