//! RFC 3339 timestamps ⇄ epoch milliseconds, for `dateCreated`, `createdAt` and `expiresAt`.
//!
//! Image Builder types `dateCreated` as a plain string (`"2026-11-01T10:00:00.000Z"`), so the
//! plan compares instants itself. The parser is strict (full date, full time, a `Z` or
//! `±hh:mm` offset, at most nine fraction digits) because a misread date could make a build
//! look old enough to delete: whatever it refuses, the caller keeps. It is hand-written rather
//! than `humantime::parse_rfc3339` because that one accepts only UTC (`Z` / `+00:00`), an
//! empty fraction (`…07.Z`), and no dates before 1970.

/// Milliseconds in one day.
pub const DAY_MS: i64 = 86_400_000;

/// Parses an RFC 3339 date-time to milliseconds since the Unix epoch (UTC). Sub-millisecond
/// digits are truncated. `None` for anything that is not a complete, valid RFC 3339 date-time.
pub fn parse_ms(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (year, month, day) = (digits(b, 0, 4)?, digits(b, 5, 2)?, digits(b, 8, 2)?);
    let (hour, minute, second) = (digits(b, 11, 2)?, digits(b, 14, 2)?, digits(b, 17, 2)?);
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    // A leap second (`:60`) is refused: the service never emits one, and refusing is safe.
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let (millis, rest) = fraction(&b[19..])?;
    let offset_minutes = offset(rest)?;
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3_600 + minute * 60 + second - offset_minutes * 60;
    Some(seconds * 1_000 + millis)
}

/// Formats epoch milliseconds as `YYYY-MM-DDThh:mm:ss.sssZ` — the shape Image Builder uses.
pub fn format_ms(ms: i64) -> String {
    let (days, day_ms) = (ms.div_euclid(DAY_MS), ms.rem_euclid(DAY_MS));
    let (year, month, day) = civil_from_days(days);
    let (secs, millis) = (day_ms / 1_000, day_ms % 1_000);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        secs / 3_600,
        secs / 60 % 60,
        secs % 60
    )
}

/// Formats epoch milliseconds as `YYYYMMDDThhmmssZ` (second precision), for identifiers
/// that must sort by time and stay within `[0-9A-Z]`.
pub fn format_compact(ms: i64) -> String {
    let (days, day_ms) = (ms.div_euclid(DAY_MS), ms.rem_euclid(DAY_MS));
    let (year, month, day) = civil_from_days(days);
    let secs = day_ms / 1_000;
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z",
        secs / 3_600,
        secs / 60 % 60,
        secs % 60
    )
}

/// `len` ASCII digits at `b[at..]` as a number.
fn digits(b: &[u8], at: usize, len: usize) -> Option<i64> {
    let slice = b.get(at..at + len)?;
    slice.iter().try_fold(0i64, |acc, &c| {
        c.is_ascii_digit().then(|| acc * 10 + i64::from(c - b'0'))
    })
}

/// An optional `.digits` fraction (1–9 digits) → (milliseconds, the bytes after it).
fn fraction(b: &[u8]) -> Option<(i64, &[u8])> {
    let Some(after_dot) = b.strip_prefix(b".") else {
        return Some((0, b));
    };
    let len = after_dot.iter().take_while(|c| c.is_ascii_digit()).count();
    if len == 0 || len > 9 {
        return None;
    }
    let millis = (0..3).fold(0i64, |acc, i| {
        acc * 10
            + after_dot
                .get(i)
                .filter(|_| i < len)
                .map_or(0, |&c| i64::from(c - b'0'))
    });
    Some((millis, &after_dot[len..]))
}

/// The whole remaining input as `Z` or `±hh:mm` → the offset east of UTC in minutes.
fn offset(b: &[u8]) -> Option<i64> {
    match b {
        [b'Z' | b'z'] => Some(0),
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let (hours, minutes) = (digits(b, 1, 2)?, digits(b, 4, 2)?);
            if hours > 23 || minutes > 59 {
                return None;
            }
            let total = hours * 60 + minutes;
            Some(if *sign == b'-' { -total } else { total })
        }
        _ => None,
    }
}

fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The inverse of [`days_from_civil`].
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_valid_timestamps() {
        // GIVEN well-formed RFC 3339 strings WHEN parsed THEN they give these epoch ms
        let table: &[(&str, i64)] = &[
            ("1970-01-01T00:00:00Z", 0),
            ("1970-01-01T00:00:00.000Z", 0),
            ("2026-11-01T10:00:00.000Z", 1_793_527_200_000),
            ("2026-11-01T10:00:00.5Z", 1_793_527_200_500),
            ("2026-11-01T10:00:00.123456789Z", 1_793_527_200_123),
            ("2026-11-01t10:00:00z", 1_793_527_200_000),
            ("2026-11-01T12:00:00+02:00", 1_793_527_200_000),
            ("2026-11-01T05:30:00-04:30", 1_793_527_200_000),
            ("2024-02-29T00:00:00Z", 1_709_164_800_000),
            ("2000-02-29T23:59:59.999Z", 951_868_799_999),
            ("1969-12-31T23:59:59.999Z", -1),
        ];
        for &(s, want) in table {
            assert_eq!(parse_ms(s), Some(want), "{s}");
        }
    }

    #[test]
    fn refuses_malformed_timestamps() {
        // GIVEN strings that are not complete, valid RFC 3339 date-times
        // WHEN parsed THEN each is refused (the caller then keeps the build)
        let table: &[&str] = &[
            "",
            "2026-11-01",
            "2026-11-01T10:00:00",
            "2026-11-01 10:00:00Z",
            "2026-11-01T10:00Z",
            "2026-11-01T10:00:00.Z",
            "2026-11-01T10:00:00.1234567890Z",
            "2026-11-01T10:00:00+0200",
            "2026-11-01T10:00:00+24:00",
            "2026-11-01T10:00:00Z ",
            " 2026-11-01T10:00:00Z",
            "2026-13-01T10:00:00Z",
            "2026-00-01T10:00:00Z",
            "2026-02-29T10:00:00Z",
            "1900-02-29T10:00:00Z",
            "2026-04-31T10:00:00Z",
            "2026-11-00T10:00:00Z",
            "2026-11-01T24:00:00Z",
            "2026-11-01T10:60:00Z",
            "2026-11-01T10:00:60Z",
            "2026-1a-01T10:00:00Z",
            "+026-11-01T10:00:00Z",
            "Sun, 01 Nov 2026 10:00:00 GMT",
            "1793527200000",
        ];
        for &s in table {
            assert_eq!(parse_ms(s), None, "{s:?}");
        }
    }

    #[test]
    fn format_round_trips_through_parse() {
        // GIVEN instants across eras, leap days and the epoch
        let table: &[(i64, &str, &str)] = &[
            (0, "1970-01-01T00:00:00.000Z", "19700101T000000Z"),
            (
                1_793_527_200_123,
                "2026-11-01T10:00:00.123Z",
                "20261101T100000Z",
            ),
            (
                951_868_799_999,
                "2000-02-29T23:59:59.999Z",
                "20000229T235959Z",
            ),
            (-1, "1969-12-31T23:59:59.999Z", "19691231T235959Z"),
        ];
        for &(ms, long, compact) in table {
            // WHEN formatted THEN the text is as tabled, and parsing it gives the instant back
            assert_eq!(format_ms(ms), long);
            assert_eq!(format_compact(ms), compact);
            assert_eq!(parse_ms(long), Some(ms));
        }
    }
}
