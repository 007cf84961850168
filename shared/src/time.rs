//! Time strings, read one way by every function.
//!
//! [`parse_iso`] is the one reader of ISO 8601 / RFC 3339 text, used by the converter (type
//! inference, `date`/`timestamp` columns, time partitions) and by the Firehose transformer
//! (`PARTITION_TIMESTAMP_FIELD`). It accepts:
//!
//! * a date, `YYYY-MM-DD` (midnight);
//! * a date and a time of day, separated by `T`, `t` or a space: `HH:MM`, `HH:MM:SS`, or
//!   `HH:MM:SS` with a fraction after `.` or `,` (any number of digits; beyond microseconds
//!   they are truncated);
//! * then optionally an offset: `Z`/`z`, `±HH`, `±HHMM` or `±HH:MM` (converted to UTC); without
//!   one the time is naive, read as UTC.
//!
//! Fields are zero-padded to their width (`2024-03-07`, not `2024-3-7`), hours 00-23, minutes
//! and seconds 00-59, dates must exist (`2023-02-29` is refused). Nothing else is accepted:
//! no surrounding whitespace, no leap second, no year outside 0000-9999.
//!
//! Epoch numbers are read by [`from_epoch`]: seconds, or milliseconds when the value is
//! above 10^11 (a seconds value that large is after the year 5138), non-negative and up to
//! 9999-12-31. [`parse_instant`] is the lenient reader of a field that is declared to hold a
//! time: surrounding whitespace is ignored, then ISO text as above, or a number written as
//! text (epoch, as [`from_epoch`]).

/// A time read from ISO 8601 text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Instant {
    /// Microseconds since 1970-01-01T00:00:00Z (for a naive time: as if it were UTC).
    pub micros: i64,
    /// The text carried an offset or `Z` (the time is an absolute instant, not wall-clock).
    pub offset: bool,
}

const MICROS_PER_DAY: i64 = 86_400_000_000;
/// 9999-12-31T23:59:59.999Z in milliseconds: the last instant a 4-digit year can write.
const MAX_EPOCH_MS: f64 = 253_402_300_799_999.0;

/// Days since 1970-01-01 of a proleptic Gregorian date; `None` when the date does not exist.
pub fn days_from_civil(y: i64, m: u32, d: u32) -> Option<i64> {
    const DAYS: [u32; 12] = [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if !(1..=12).contains(&m) || d == 0 || d > DAYS[m as usize - 1] || (m == 2 && d == 29 && !leap)
    {
        return None;
    }
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (i64::from(m) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some(era * 146_097 + doe - 719_468)
}

fn num(b: &[u8]) -> Option<u32> {
    if b.is_empty() || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    b.iter().try_fold(0u32, |acc, c| {
        acc.checked_mul(10)?.checked_add(u32::from(c - b'0'))
    })
}

/// `YYYY-MM-DD` -> days since 1970-01-01.
pub fn parse_date(text: &str) -> Option<i64> {
    iso_date(text.as_bytes())
}

fn iso_date(b: &[u8]) -> Option<i64> {
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    days_from_civil(i64::from(num(&b[..4])?), num(&b[5..7])?, num(&b[8..10])?)
}

/// ISO 8601 / RFC 3339 text (the forms in the module docs) -> its instant.
pub fn parse_iso(text: &str) -> Option<Instant> {
    let b = text.as_bytes();
    let days = iso_date(b.get(..10)?)?;
    let rest = &b[10..];
    if rest.is_empty() {
        return Some(Instant {
            micros: days * MICROS_PER_DAY,
            offset: false,
        });
    }
    if !matches!(rest[0], b'T' | b't' | b' ') || rest.len() < 6 || rest[3] != b':' {
        return None;
    }
    let (h, m) = (num(&rest[1..3])?, num(&rest[4..6])?);
    let mut i = 6;
    let (mut s, mut micros) = (0, 0i64);
    if rest.get(i) == Some(&b':') {
        s = num(rest.get(i + 1..i + 3)?)?;
        i += 3;
        if matches!(rest.get(i), Some(b'.' | b',')) {
            i += 1;
            let n = rest[i..].iter().take_while(|c| c.is_ascii_digit()).count();
            if n == 0 {
                return None;
            }
            for k in 0..6 {
                let d = if k < n {
                    i64::from(rest[i + k] - b'0')
                } else {
                    0
                };
                micros = micros * 10 + d;
            }
            i += n;
        }
    }
    if h > 23 || m > 59 || s > 59 {
        return None;
    }
    let mut t = days * MICROS_PER_DAY + i64::from(h * 3600 + m * 60 + s) * 1_000_000 + micros;
    let offset = match &rest[i..] {
        [] => false,
        [b'Z' | b'z'] => true,
        [sign @ (b'+' | b'-'), oh @ ..] => {
            let (hh, mm) = match oh {
                [a, b] => (num(&[*a, *b])?, 0),
                [a, b, b':', c, d] | [a, b, c, d] => (num(&[*a, *b])?, num(&[*c, *d])?),
                _ => return None,
            };
            if hh > 23 || mm > 59 {
                return None;
            }
            let secs = i64::from(hh * 3600 + mm * 60) * 1_000_000;
            t += if *sign == b'+' { -secs } else { secs };
            true
        }
        _ => return None,
    };
    Some(Instant { micros: t, offset })
}

/// Epoch seconds, or milliseconds above 10^11 -> microseconds since the epoch. `None` for a
/// negative or non-finite value, or one after 9999-12-31. Sub-millisecond digits are dropped.
pub fn from_epoch(x: f64) -> Option<i64> {
    if !x.is_finite() || x < 0.0 {
        return None;
    }
    let ms = if x > 1e11 { x } else { x * 1000.0 };
    if ms > MAX_EPOCH_MS {
        return None;
    }
    Some(ms as i64 * 1000)
}

/// The time in a field declared to hold one: whitespace trimmed, then ISO text
/// ([`parse_iso`]) or an epoch number written as text ([`from_epoch`]) -> microseconds UTC.
pub fn parse_instant(text: &str) -> Option<i64> {
    let text = text.trim();
    if let Some(t) = parse_iso(text) {
        return Some(t.micros);
    }
    text.parse::<f64>().ok().and_then(from_epoch)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2024-03-07T10:00:00Z
    const BASE: i64 = 1_709_805_600_000_000;

    #[test]
    fn iso_forms_keep_microseconds_and_offsets_become_utc() {
        let cases: &[(&str, i64, bool)] = &[
            ("2024-03-07", BASE - 36_000_000_000, false),
            ("2024-03-07T10:00", BASE, false),
            ("2024-03-07 10:00", BASE, false),
            ("2024-03-07t10:00:00", BASE, false),
            ("2024-03-07T10:00:00", BASE, false),
            ("2024-03-07 10:00:00.5", BASE + 500_000, false),
            ("2024-03-07 10:00:00,25", BASE + 250_000, false),
            ("2024-03-07 10:00:00.123456", BASE + 123_456, false),
            ("2024-03-07 10:00:00.1234567", BASE + 123_456, false),
            ("2024-03-07T10:00:00Z", BASE, true),
            ("2024-03-07T10:00z", BASE, true),
            ("2024-03-07T19:00:00+09:00", BASE, true),
            ("2024-03-07T05:30:00-0430", BASE, true),
            ("2024-03-07T12:00:00.5+02", BASE + 500_000, true),
            ("2024-03-07 09:00:00-01:00", BASE, true),
        ];
        for (text, micros, offset) in cases {
            assert_eq!(
                parse_iso(text),
                Some(Instant {
                    micros: *micros,
                    offset: *offset
                }),
                "{text}"
            );
        }
    }

    #[test]
    fn anything_else_is_not_iso() {
        for bad in [
            "",
            "x",
            "2024-3-7",
            "2024-13-01",
            "2023-02-29",
            "2024-03-07T25:00:00",
            "2024-03-07T23:59:60",
            "2024-03-07T10:00:00+",
            "2024-03-07T10:00:00+24:00",
            "2024-03-07T10:00:00.",
            "2024-03-07 10",
            " 2024-03-07",
            "2024-03-07 ",
            "+12024-03-07",
            "1709805600",
        ] {
            assert_eq!(parse_iso(bad), None, "{bad:?}");
        }
        assert_eq!(parse_date("1970-01-01"), Some(0));
        assert_eq!(parse_date("1969-12-31"), Some(-1));
        assert_eq!(parse_date("2024-02-29"), Some(19_782));
        assert_eq!(parse_date("2024-02-29T00:00"), None);
    }

    #[test]
    fn epoch_numbers_are_seconds_or_milliseconds() {
        assert_eq!(from_epoch(1_709_805_600.0), Some(BASE));
        assert_eq!(from_epoch(1_709_805_600.9), Some(BASE + 900_000));
        assert_eq!(from_epoch(1_709_805_600_123.0), Some(BASE + 123_000));
        assert_eq!(from_epoch(0.0), Some(0));
        assert_eq!(from_epoch(-1.0), None);
        assert_eq!(from_epoch(f64::NAN), None);
        assert_eq!(from_epoch(f64::INFINITY), None);
        assert_eq!(from_epoch(253_402_300_800_000.0), None, "after 9999");
        assert_eq!(
            from_epoch(253_402_300_799_999.0),
            Some(253_402_300_799_999_000)
        );
    }

    #[test]
    fn a_declared_time_field_reads_iso_or_epoch_text() {
        assert_eq!(parse_instant(" 2024-03-07T10:00:00Z "), Some(BASE));
        assert_eq!(parse_instant("2024-03-07T19:00:00+09:00"), Some(BASE));
        assert_eq!(parse_instant("1709805600"), Some(BASE));
        assert_eq!(parse_instant("1709805600123"), Some(BASE + 123_000));
        assert_eq!(parse_instant("yesterday"), None);
        assert_eq!(parse_instant("-5"), None);
        assert_eq!(parse_instant(""), None);
    }
}
