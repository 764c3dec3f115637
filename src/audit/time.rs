//! Times on the command line and in exports: RFC 3339 in UTC, without a date-time crate.

const DAY_MS: i64 = 86_400_000;

/// `2026-11-23T10:04:05.123Z`.
pub fn format_rfc3339(millis: i64) -> String {
    let days = millis.div_euclid(DAY_MS);
    let rest = millis.rem_euclid(DAY_MS);
    let (y, m, d) = civil_from_days(days);
    let (h, min, s, ms) = (
        rest / 3_600_000,
        rest / 60_000 % 60,
        rest / 1000 % 60,
        rest % 1000,
    );
    format!("{y:04}-{m:02}-{d:02}T{h:02}:{min:02}:{s:02}.{ms:03}Z")
}

/// Parses `2026-11-23`, `2026-11-23T10:04:05Z` (fraction and `±hh:mm` offsets allowed),
/// Unix milliseconds, or an age such as `7d`, `12h`, `30m` (that long before `now`).
pub fn parse_time(text: &str, now: i64) -> Result<i64, String> {
    let text = text.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse().map_err(|_| format!("{text:?} is not a time"));
    }
    if let Ok(age) = crate::cli::parse_duration(text) {
        return Ok(now - age.as_millis() as i64);
    }
    parse_rfc3339(text).ok_or_else(|| {
        format!("{text:?} is not a time: use 2026-11-23, 2026-11-23T10:00:00Z, Unix milliseconds, or an age like 7d")
    })
}

fn parse_rfc3339(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    let num = |from: usize, len: usize| -> Option<i64> {
        let part = text.get(from..from + len)?;
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let (y, m, d) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    let mut millis = days_from_civil(y, m, d) * DAY_MS;
    if b.len() == 10 {
        return Some(millis);
    }
    if !(b[10] == b'T' || b[10] == b' ') || b.len() < 19 || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (h, min, s) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    if h > 23 || min > 59 || s > 60 {
        return None;
    }
    millis += h * 3_600_000 + min * 60_000 + s * 1000;
    let mut at = 19;
    if b.get(at) == Some(&b'.') {
        let digits = text[at + 1..]
            .bytes()
            .take_while(u8::is_ascii_digit)
            .count();
        if digits == 0 {
            return None;
        }
        let frac = &text[at + 1..at + 1 + digits.min(3)];
        millis += frac.parse::<i64>().ok()? * 10_i64.pow(3 - frac.len() as u32);
        at += 1 + digits;
    }
    match &text[at..] {
        "Z" | "z" => Some(millis),
        zone if zone.len() == 6 && (zone.starts_with('+') || zone.starts_with('-')) => {
            let (oh, om) = (num(at + 1, 2)?, num(at + 4, 2)?);
            let offset = (oh * 60 + om) * 60_000;
            Some(if zone.starts_with('+') {
                millis - offset
            } else {
                millis + offset
            })
        }
        _ => None,
    }
}

/// Howard Hinnant's days-from-civil (proleptic Gregorian).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_known_values() {
        assert_eq!(format_rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(parse_time("1970-01-02", 0).unwrap(), DAY_MS);
        let t = parse_time("2026-11-23T10:04:05.123Z", 0).unwrap();
        assert_eq!(format_rfc3339(t), "2026-11-23T10:04:05.123Z");
        assert_eq!(parse_time("2026-11-23T12:04:05.123+02:00", 0).unwrap(), t);
        assert_eq!(
            parse_time("2024-02-29", 0).unwrap() + DAY_MS,
            parse_time("2024-03-01", 0).unwrap()
        );
        assert_eq!(parse_time("1700000000000", 0).unwrap(), 1_700_000_000_000);
        assert_eq!(
            parse_time("2h", 10_000_000).unwrap(),
            10_000_000 - 7_200_000
        );
        for bad in [
            "",
            "2026-13-01",
            "2026-11-23T25:00:00Z",
            "yesterday",
            "2026-11-23T10:00:00",
        ] {
            assert!(parse_time(bad, 0).is_err(), "{bad}");
        }
    }
}
