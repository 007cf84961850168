//! Column types: `SCHEMA`, inference from text, and the temporal parsers.
//!
//! Inference looks at every sampled value of a column and picks the narrowest type that holds
//! all of them: `int64` (no leading zeros, so ZIP codes and IDs stay text) -> `float64`
//! (decimal notation only, no `NaN`/`inf`) -> `string`; `bool` (`true`/`false`, any case);
//! `date` (`YYYY-MM-DD`); `timestamp` (ISO 8601 / RFC 3339 as [`tributary::time`] reads it
//! for every function: `T` or space, optional seconds and fraction; `TIMESTAMP_FORMATS`) and
//! `timestamp_tz` when any value carries an offset or `Z`. All-null columns are nullable
//! strings. Temporal values keep microseconds and are parsed by this module, not by the
//! CSV/JSON decoders, so every format is read the same way everywhere.

use arrow::datatypes::{DataType, TimeUnit};
use chrono::{DateTime, NaiveDate, NaiveDateTime};
use tributary::time;

/// A column type, as `SCHEMA` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColType {
    /// `int64`
    Int64,
    /// `float64`
    Float64,
    /// `bool`
    Bool,
    /// `string`
    String,
    /// `date`: days, `date32`.
    Date,
    /// `timestamp`: microseconds, no time zone (naive).
    Timestamp,
    /// `timestamp_tz`: microseconds, UTC.
    TimestampTz,
    /// `decimal(p,s)`
    Decimal(u8, i8),
}

impl ColType {
    /// Parses a `SCHEMA` type name.
    pub fn parse(name: &str) -> Option<ColType> {
        let n = name.trim().to_ascii_lowercase();
        Some(match n.as_str() {
            "int64" | "bigint" | "long" => ColType::Int64,
            "float64" | "double" => ColType::Float64,
            "bool" | "boolean" => ColType::Bool,
            "string" | "varchar" => ColType::String,
            "date" => ColType::Date,
            "timestamp" => ColType::Timestamp,
            "timestamp_tz" => ColType::TimestampTz,
            _ => {
                let inner = n.strip_prefix("decimal(")?.strip_suffix(')')?;
                let (p, s) = inner.split_once(',')?;
                let (p, s): (u8, i8) = (p.trim().parse().ok()?, s.trim().parse().ok()?);
                if !(1..=38).contains(&p) || s < 0 || s as u8 > p {
                    return None;
                }
                ColType::Decimal(p, s)
            }
        })
    }

    /// The Arrow type written to Parquet.
    pub fn arrow(self) -> DataType {
        match self {
            ColType::Int64 => DataType::Int64,
            ColType::Float64 => DataType::Float64,
            ColType::Bool => DataType::Boolean,
            ColType::String => DataType::Utf8,
            ColType::Date => DataType::Date32,
            ColType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
            ColType::TimestampTz => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            ColType::Decimal(p, s) => DataType::Decimal128(p, s),
        }
    }

    /// The type of an Arrow column, when it is one of ours.
    pub fn of_arrow(dt: &DataType) -> Option<ColType> {
        Some(match dt {
            DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64 => ColType::Int64,
            DataType::Float16 | DataType::Float32 | DataType::Float64 => ColType::Float64,
            DataType::Boolean => ColType::Bool,
            DataType::Utf8 | DataType::LargeUtf8 => ColType::String,
            DataType::Date32 | DataType::Date64 => ColType::Date,
            DataType::Timestamp(_, None) => ColType::Timestamp,
            DataType::Timestamp(_, Some(_)) => ColType::TimestampTz,
            DataType::Decimal128(p, s) => ColType::Decimal(*p, *s),
            _ => return None,
        })
    }

    /// Temporal columns are decoded as text and parsed here.
    pub fn is_temporal(self) -> bool {
        matches!(
            self,
            ColType::Date | ColType::Timestamp | ColType::TimestampTz
        )
    }

    /// The next wider type when a value does not fit (`None`: nothing is wider).
    pub fn widen(self) -> Option<ColType> {
        match self {
            ColType::Int64 => Some(ColType::Float64),
            ColType::Date => Some(ColType::Timestamp),
            ColType::String => None,
            _ => Some(ColType::String),
        }
    }
}

/// One `SCHEMA` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnSpec {
    /// Column name.
    pub name: String,
    /// Its type.
    pub ty: ColType,
}

/// `SCHEMA`: column types for every dataset, and per dataset.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Schemas {
    /// The array form: every dataset without an entry of its own.
    pub all: Vec<ColumnSpec>,
    /// The object form: `{"taxi": [...], "events": [...]}`, by dataset name.
    pub by_dataset: std::collections::BTreeMap<String, Vec<ColumnSpec>>,
}

impl Schemas {
    /// The entries for `dataset`: its own, else the array form's.
    pub fn of(&self, dataset: &str) -> &[ColumnSpec] {
        self.by_dataset.get(dataset).unwrap_or(&self.all)
    }
}

/// Parses `SCHEMA`: `[{"name": "...", "type": "int64|...|decimal(p,s)"}, ...]` for every
/// dataset, or `{"dataset": [...], ...}` per dataset. Names match columns in any case.
pub fn parse_schemas(text: &str) -> Result<Schemas, String> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    match value {
        serde_json::Value::Object(map) => {
            let mut by_dataset = std::collections::BTreeMap::new();
            for (dataset, entries) in map {
                let specs = parse_entries(&entries).map_err(|e| format!("{dataset:?}: {e}"))?;
                by_dataset.insert(dataset, specs);
            }
            Ok(Schemas {
                all: Vec::new(),
                by_dataset,
            })
        }
        other => Ok(Schemas {
            all: parse_entries(&other)?,
            by_dataset: Default::default(),
        }),
    }
}

/// Parses the array form of `SCHEMA`.
pub fn parse_schema(text: &str) -> Result<Vec<ColumnSpec>, String> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    parse_entries(&value)
}

fn parse_entries(value: &serde_json::Value) -> Result<Vec<ColumnSpec>, String> {
    let items = value
        .as_array()
        .ok_or("expected a JSON array of {\"name\", \"type\"} objects")?;
    let mut out: Vec<ColumnSpec> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let name = item["name"]
            .as_str()
            .filter(|n| !n.is_empty())
            .ok_or_else(|| format!("entry {i} has no \"name\""))?;
        let ty_name = item["type"]
            .as_str()
            .ok_or_else(|| format!("entry {i} ({name}) has no \"type\""))?;
        let ty = ColType::parse(ty_name)
            .ok_or_else(|| format!("entry {i} ({name}): unknown type {ty_name:?}"))?;
        if let Some(obj) = item.as_object()
            && let Some(k) = obj.keys().find(|k| *k != "name" && *k != "type")
        {
            return Err(format!("entry {i} ({name}): unknown field {k:?}"));
        }
        if out.iter().any(|c| c.name.eq_ignore_ascii_case(name)) {
            return Err(format!("column {name:?} appears twice"));
        }
        out.push(ColumnSpec {
            name: name.to_owned(),
            ty,
        });
    }
    Ok(out)
}

/// Checks `TIMESTAMP_FORMATS` entries (chrono `strftime` syntax).
pub fn check_format(format: &str) -> Result<(), String> {
    use chrono::format::{Item, StrftimeItems};
    if StrftimeItems::new(format).any(|i| matches!(i, Item::Error)) {
        return Err(format!("{format:?} is not a valid strftime format"));
    }
    Ok(())
}

/// What the values seen so far of one column allow.
#[derive(Debug, Clone, Copy)]
pub struct Inference {
    allowed: u8,
    offsets: bool,
    values: u64,
}

const INT: u8 = 1;
const FLOAT: u8 = 2;
const BOOL: u8 = 4;
const DATE: u8 = 8;
const TS: u8 = 16;

impl Default for Inference {
    fn default() -> Self {
        Inference {
            allowed: INT | FLOAT | BOOL | DATE | TS,
            offsets: false,
            values: 0,
        }
    }
}

impl Inference {
    /// Takes one non-null value into account.
    pub fn see(&mut self, v: &str, formats: &[String]) {
        self.values += 1;
        if self.allowed == 0 {
            return;
        }
        let mut fits = 0;
        if self.allowed & (INT | FLOAT) != 0 {
            match number_kind(v) {
                Some(true) => fits |= INT | FLOAT,
                Some(false) => fits |= FLOAT,
                None => {}
            }
        }
        if self.allowed & BOOL != 0 && parse_bool(v).is_some() {
            fits |= BOOL;
        }
        if self.allowed & (DATE | TS) != 0 {
            if parse_date(v, formats).is_some() {
                fits |= DATE | TS;
            } else if let Some((_, offset)) = parse_timestamp(v, formats) {
                fits |= TS;
                self.offsets |= offset;
            }
        }
        self.allowed &= fits;
    }

    /// The narrowest type for everything seen.
    pub fn result(&self) -> ColType {
        let a = self.allowed;
        if self.values == 0 {
            ColType::String
        } else if a & INT != 0 {
            ColType::Int64
        } else if a & FLOAT != 0 {
            ColType::Float64
        } else if a & BOOL != 0 {
            ColType::Bool
        } else if a & DATE != 0 {
            ColType::Date
        } else if a & TS != 0 && self.offsets {
            ColType::TimestampTz
        } else if a & TS != 0 {
            ColType::Timestamp
        } else {
            ColType::String
        }
    }
}

/// `Some(true)` for an integer that fits `i64` (no leading zeros), `Some(false)` for another
/// decimal number, `None` for anything else.
fn number_kind(v: &str) -> Option<bool> {
    let b = v.as_bytes();
    let digits = b
        .strip_prefix(b"-")
        .or_else(|| b.strip_prefix(b"+"))
        .unwrap_or(b);
    let int_len = digits.iter().take_while(|c| c.is_ascii_digit()).count();
    let leading_zero = int_len > 1 && digits[0] == b'0';
    if int_len == digits.len() {
        return (int_len > 0 && !leading_zero && v.parse::<i64>().is_ok()).then_some(true);
    }
    // A decimal: digits, optional fraction, optional exponent; at least one digit.
    let mut i = int_len;
    let mut frac = 0;
    if digits.get(i) == Some(&b'.') {
        i += 1;
        frac = digits[i..]
            .iter()
            .take_while(|c| c.is_ascii_digit())
            .count();
        i += frac;
    }
    if int_len + frac == 0 || leading_zero && digits.get(int_len) != Some(&b'.') {
        return None;
    }
    if matches!(digits.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(digits.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let exp = digits[i..]
            .iter()
            .take_while(|c| c.is_ascii_digit())
            .count();
        if exp == 0 {
            return None;
        }
        i += exp;
    }
    (i == digits.len()).then_some(false)
}

/// `true`/`false` in lower, upper or title case.
pub fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "true" | "True" | "TRUE" => Some(true),
        "false" | "False" | "FALSE" => Some(false),
        _ => None,
    }
}

/// A date in `YYYY-MM-DD` or one of `formats` -> days since the epoch.
pub fn parse_date(v: &str, formats: &[String]) -> Option<i32> {
    if let Some(d) = time::parse_date(v) {
        return i32::try_from(d).ok();
    }
    formats.iter().find_map(|f| {
        // A format with a time of day makes a timestamp, not a date.
        if NaiveDateTime::parse_from_str(v, f).is_ok() || DateTime::parse_from_str(v, f).is_ok() {
            return None;
        }
        let d = NaiveDate::parse_from_str(v, f).ok()?;
        i32::try_from(time::days_from_civil(
            i64::from(chrono::Datelike::year(&d)),
            chrono::Datelike::month(&d),
            chrono::Datelike::day(&d),
        )?)
        .ok()
    })
}

/// A timestamp -> (microseconds since the epoch in UTC, whether it carried an offset): the
/// ISO 8601 / RFC 3339 forms of [`tributary::time::parse_iso`] (a bare date is midnight), or
/// one of `formats`. Digits beyond microseconds are truncated. Digits alone are not a time
/// here: in a CSV or JSON column they are numbers.
pub fn parse_timestamp(v: &str, formats: &[String]) -> Option<(i64, bool)> {
    time::parse_iso(v)
        .map(|t| (t.micros, t.offset))
        .or_else(|| {
            formats.iter().find_map(|f| {
                if let Ok(t) = NaiveDateTime::parse_from_str(v, f) {
                    return Some((t.and_utc().timestamp_micros(), false));
                }
                if let Ok(t) = DateTime::parse_from_str(v, f) {
                    return Some((t.timestamp_micros(), true));
                }
                let d = NaiveDate::parse_from_str(v, f).ok()?;
                Some((d.and_hms_opt(0, 0, 0)?.and_utc().timestamp_micros(), false))
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn infer(values: &[&str]) -> ColType {
        let mut inf = Inference::default();
        for v in values {
            inf.see(v, &[]);
        }
        inf.result()
    }

    #[test]
    fn narrowest_type_holding_every_value() {
        assert_eq!(infer(&["1", "-2", "+3"]), ColType::Int64);
        assert_eq!(infer(&["1", "1.5", "2e3"]), ColType::Float64);
        assert_eq!(infer(&["1", "n/a"]), ColType::String);
        assert_eq!(
            infer(&["007", "12"]),
            ColType::String,
            "leading zeros stay text"
        );
        assert_eq!(infer(&["0", "0.5", "-0.25"]), ColType::Float64);
        assert_eq!(infer(&["NaN", "1.0"]), ColType::String);
        assert_eq!(
            infer(&["99999999999999999999"]),
            ColType::String,
            "beyond i64"
        );
        assert_eq!(infer(&["true", "FALSE", "True"]), ColType::Bool);
        assert_eq!(infer(&["2024-03-07", "2024-02-29"]), ColType::Date);
        assert_eq!(infer(&["2023-02-29"]), ColType::String, "no such day");
        assert_eq!(
            infer(&["2024-03-07", "2024-03-07 10:00:00"]),
            ColType::Timestamp
        );
        assert_eq!(
            infer(&["2024-03-07T10:00:00Z", "2024-03-07 10:00:00"]),
            ColType::TimestampTz
        );
        assert_eq!(infer(&[]), ColType::String);
        assert_eq!(infer(&["1", "true"]), ColType::String);
    }

    #[test]
    fn timestamps_keep_microseconds_and_offsets_become_utc() {
        let base = 1_709_805_600_000_000; // 2024-03-07T10:00:00Z
        let cases: &[(&str, i64, bool)] = &[
            ("2024-03-07T10:00:00", base, false),
            ("2024-03-07 10:00:00.123456", base + 123_456, false),
            ("2024-03-07 10:00:00.1234567", base + 123_456, false),
            ("2024-03-07T10:00", base, false),
            ("2024-03-07T10:00:00Z", base, true),
            ("2024-03-07T19:00:00+09:00", base, true),
            ("2024-03-07T05:30:00-0430", base, true),
            ("2024-03-07T12:00:00.5+02", base + 500_000, true),
            ("2024-03-07", base - 36_000_000_000, false),
        ];
        for (text, micros, offset) in cases {
            assert_eq!(
                parse_timestamp(text, &[]),
                Some((*micros, *offset)),
                "{text}"
            );
        }
        for bad in [
            "2024-03-07T25:00:00",
            "2024-13-01",
            "2024-03-07T10:00:00+",
            "x",
            "2024-03-07 10",
        ] {
            assert_eq!(parse_timestamp(bad, &[]), None, "{bad}");
        }
        let formats = vec!["%d/%m/%Y %H:%M".to_owned(), "%d.%m.%Y".to_owned()];
        assert_eq!(
            parse_timestamp("07/03/2024 10:00", &formats),
            Some((base, false))
        );
        assert_eq!(parse_date("07.03.2024", &formats), Some(19_789));
        assert_eq!(parse_date("1970-01-01", &[]), Some(0));
        assert_eq!(parse_date("1969-12-31", &[]), Some(-1));
    }

    #[test]
    fn schema_entries_are_checked_by_name() {
        let s = parse_schema(
            r#"[{"name":"id","type":"int64"},{"name":"at","type":"timestamp_tz"},{"name":"amount","type":"decimal(12,2)"}]"#,
        )
        .expect("valid");
        assert_eq!(s[2].ty, ColType::Decimal(12, 2));
        assert_eq!(
            s[1].ty.arrow(),
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
        );
        for (bad, says) in [
            ("{}", "array"),
            (r#"[{"type":"int64"}]"#, "no \"name\""),
            (r#"[{"name":"a","type":"int"}]"#, "unknown type \"int\""),
            (r#"[{"name":"a","type":"decimal(40,2)"}]"#, "unknown type"),
            (
                r#"[{"name":"a","type":"string","nullable":true}]"#,
                "unknown field",
            ),
            (
                r#"[{"name":"a","type":"string"},{"name":"a","type":"string"}]"#,
                "twice",
            ),
        ] {
            let err = parse_schema(bad).expect_err(bad);
            assert!(err.contains(says), "{bad}: {err}");
        }
        assert!(check_format("%Y-%m-%d %H:%M").is_ok());
        assert!(check_format("%Y-%Q").is_err());
    }

    #[test]
    fn widening_follows_int_float_string_and_date_timestamp_string() {
        for (from, to) in [
            (ColType::Int64, Some(ColType::Float64)),
            (ColType::Float64, Some(ColType::String)),
            (ColType::Date, Some(ColType::Timestamp)),
            (ColType::Timestamp, Some(ColType::String)),
            (ColType::TimestampTz, Some(ColType::String)),
            (ColType::Bool, Some(ColType::String)),
            (ColType::String, None),
        ] {
            assert_eq!(from.widen(), to, "{from:?}");
        }
    }
}
