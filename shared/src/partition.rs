//! Hive partitions, one definition for every function: the default partition name, how a
//! value is escaped into a path segment, and the `year=/month=/day=/hour=` layout.
//!
//! The Firehose transformer's `partitionKeys` (which Firehose writes into `raw/` prefixes) and
//! the converter's `processed/` paths use these, so one value lands in the same partition
//! whichever function names it, and Athena, Glue, Spark and pyarrow read it back unchanged.
//!
//! **Escaping** ([`escape`]) is Hive's (`FileUtils.escapePathName`): each character of
//! `"` `#` `%` `'` `*` `/` `:` `=` `?` `\` `{` `[` `]` `^` and every control character becomes
//! `%XX` per UTF-8 byte (uppercase hex); everything else, spaces and non-ASCII letters
//! included, is kept. Readers of Hive layouts unescape `%XX`, so the value comes back exactly,
//! and no two values share a segment. A value made only of dots (`.`, `..`) has its dots
//! escaped (`%2E`), so no segment is ever `.` or `..` even in a prefix without `key=`. An
//! empty value has no segment: it is the default partition ([`HIVE_DEFAULT_PARTITION`]).

use std::fmt::Write as _;
use std::str::FromStr;

use chrono::{DateTime, Datelike, Timelike, Utc};

use crate::config::{UnknownChoice, choice};

/// Hive's name for a null (or empty) partition value, which Athena reads as `NULL`.
pub const HIVE_DEFAULT_PARTITION: &str = "__HIVE_DEFAULT_PARTITION__";

/// Whether Hive escapes `c` in a partition path.
fn hive_escapes(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '"' | '#' | '%' | '\'' | '*' | '/' | ':' | '=' | '?' | '\\' | '{' | '[' | ']' | '^'
        )
}

/// A partition value as a path segment (see the module docs); `None` for an empty value,
/// which belongs in the default partition.
pub fn escape(value: &str) -> Option<String> {
    escape_within(value, usize::MAX)
}

/// [`escape`], keeping at most `max_bytes` of output: the value is cut before the first
/// character whose escaped form would not fit (never inside an escape).
pub fn escape_within(value: &str, max_bytes: usize) -> Option<String> {
    if value.is_empty() {
        return None;
    }
    let dots = value.bytes().all(|b| b == b'.');
    let mut out = String::with_capacity(value.len().min(max_bytes));
    let mut buf = [0u8; 4];
    for c in value.chars() {
        if dots || hive_escapes(c) {
            let bytes = c.encode_utf8(&mut buf).as_bytes();
            if out.len() + 3 * bytes.len() > max_bytes {
                break;
            }
            for b in bytes {
                let _ = write!(out, "%{b:02X}");
            }
        } else {
            if out.len() + c.len_utf8() > max_bytes {
                break;
            }
            out.push(c);
        }
    }
    (!out.is_empty()).then_some(out)
}

/// The value a path segment escaped with [`escape`] stands for (`%XX` decoded; what the
/// catalog records as the partition's value).
pub fn unescape(segment: &str) -> String {
    percent_encoding::percent_decode_str(segment)
        .decode_utf8_lossy()
        .into_owned()
}

/// A level of the time layout: `year=YYYY/month=MM/day=DD/hour=HH` (UTC, zero-padded), cut
/// after this level. `Year` is the coarsest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TimeLevel {
    /// `year=YYYY`
    Year,
    /// `.../month=MM`
    Month,
    /// `.../day=DD`
    Day,
    /// `.../hour=HH`
    Hour,
}

impl TimeLevel {
    /// Every level, coarsest first.
    pub const ALL: [TimeLevel; 4] = [
        TimeLevel::Year,
        TimeLevel::Month,
        TimeLevel::Day,
        TimeLevel::Hour,
    ];
    /// The words [`FromStr`] accepts.
    pub const ACCEPTED: &'static [&'static str] = &["year", "month", "day", "hour"];

    /// The key of this level's segment (`year`, `month`, `day`, `hour`).
    pub fn name(self) -> &'static str {
        Self::ACCEPTED[self as usize]
    }

    /// This level and the coarser ones, coarsest first (`Day`: year, month, day).
    pub fn levels(self) -> &'static [TimeLevel] {
        &Self::ALL[..=self as usize]
    }

    /// Appends this level's value of `at`: the year in 4 digits, the others in 2.
    pub fn push_value(self, at: &DateTime<Utc>, out: &mut String) {
        let _ = match self {
            TimeLevel::Year => write!(out, "{:04}", at.year()),
            TimeLevel::Month => write!(out, "{:02}", at.month()),
            TimeLevel::Day => write!(out, "{:02}", at.day()),
            TimeLevel::Hour => write!(out, "{:02}", at.hour()),
        };
    }

    /// The path of `at` down to this level, e.g. `year=2024/month=03/day=07`; without a time,
    /// every segment holds [`HIVE_DEFAULT_PARTITION`].
    pub fn path(self, at: Option<&DateTime<Utc>>) -> String {
        let mut out = String::with_capacity(16 * (self as usize + 1));
        for (i, level) in self.levels().iter().enumerate() {
            if i > 0 {
                out.push('/');
            }
            out.push_str(level.name());
            out.push('=');
            match at {
                Some(at) => level.push_value(at, &mut out),
                None => out.push_str(HIVE_DEFAULT_PARTITION),
            }
        }
        out
    }
}

impl FromStr for TimeLevel {
    type Err = UnknownChoice;

    /// `year`, `month`, `day` or `hour`, any case.
    fn from_str(s: &str) -> Result<TimeLevel, UnknownChoice> {
        choice(
            s,
            &[
                ("year", TimeLevel::Year),
                ("month", TimeLevel::Month),
                ("day", TimeLevel::Day),
                ("hour", TimeLevel::Hour),
            ],
            Self::ACCEPTED,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_escaped_as_hive_does_and_read_back_exactly() {
        for (value, want) in [
            ("a/b=c%", "a%2Fb%3Dc%25"),
            ("New York", "New York"),
            ("서울", "서울"),
            ("acme/../../etc inc", "acme%2F..%2F..%2Fetc inc"),
            ("12:30", "12%3A30"),
            ("tab\there", "tab%09here"),
            ("q?#*'\"", "q%3F%23%2A%27%22"),
            ("{[^]}\\", "%7B%5B%5E%5D}%5C"),
            ("e\u{85}", "e%C2%85"),
            ("v1.2_x-y", "v1.2_x-y"),
            (".", "%2E"),
            ("..", "%2E%2E"),
            ("..x", "..x"),
            (HIVE_DEFAULT_PARTITION, HIVE_DEFAULT_PARTITION),
        ] {
            assert_eq!(escape(value).as_deref(), Some(want), "{value:?}");
            assert_eq!(unescape(want), value, "{want} unescapes to the value");
        }
        assert_eq!(escape(""), None);
    }

    #[test]
    fn a_bounded_value_is_cut_before_a_character_that_does_not_fit() {
        assert_eq!(
            escape_within(&"x".repeat(300), 128).map(|v| v.len()),
            Some(128)
        );
        assert_eq!(escape_within("abcd/e", 5).as_deref(), Some("abcd"));
        assert_eq!(escape_within("abc/e", 6).as_deref(), Some("abc%2F"));
        assert_eq!(escape_within("서울", 4).as_deref(), Some("서"));
        assert_eq!(escape_within("/", 2), None);
    }

    #[test]
    fn the_time_layout_is_utc_zero_padded_and_cut_at_its_level() {
        let at = DateTime::<Utc>::from_timestamp(1_709_787_967, 0).expect("in range");
        assert_eq!(TimeLevel::Year.path(Some(&at)), "year=2024");
        assert_eq!(TimeLevel::Month.path(Some(&at)), "year=2024/month=03");
        assert_eq!(TimeLevel::Day.path(Some(&at)), "year=2024/month=03/day=07");
        assert_eq!(
            TimeLevel::Hour.path(Some(&at)),
            "year=2024/month=03/day=07/hour=05"
        );
        assert_eq!(
            TimeLevel::Month.path(None),
            "year=__HIVE_DEFAULT_PARTITION__/month=__HIVE_DEFAULT_PARTITION__"
        );
        let early = DateTime::<Utc>::from_timestamp(-62_135_596_800, 0).expect("year 1");
        assert_eq!(TimeLevel::Year.path(Some(&early)), "year=0001");
        assert_eq!(TimeLevel::Hour.levels(), TimeLevel::ALL);
    }

    #[test]
    fn levels_parse_in_any_case_and_name_the_accepted_words() {
        assert_eq!("DAY".parse::<TimeLevel>(), Ok(TimeLevel::Day));
        assert_eq!("hour".parse::<TimeLevel>(), Ok(TimeLevel::Hour));
        let err = "week".parse::<TimeLevel>().expect_err("no such level");
        assert_eq!(
            err.to_string(),
            "unknown value \"week\" (accepted: year, month, day, hour)"
        );
    }
}
