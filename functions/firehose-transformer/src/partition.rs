//! Partition keys for Firehose dynamic partitioning.
//!
//! * `PARTITION_TIMESTAMP_FIELD=ts` adds `year`, `month`, `day`, `hour` (UTC, zero-padded)
//!   from the field's value: an RFC 3339 / ISO 8601 string (an offset is converted to UTC, a
//!   naive time is taken as UTC), or epoch seconds or milliseconds (number or numeric string;
//!   values above 10^11 are milliseconds). When the field is missing or unparseable, the
//!   record's `approximateArrivalTimestamp` is used instead, and the fallback is counted.
//! * `PARTITION_FIELDS=tenant,region` adds one key per field (dots in a path become `_` in the
//!   key name) from the field's value, made safe for an S3 prefix: letters, digits, `-`, `_`
//!   and `.` are kept, anything else becomes `_`, at most 128 bytes; a missing, null or empty
//!   value becomes `PARTITION_DEFAULT` (default `__HIVE_DEFAULT_PARTITION__`, what Hive and
//!   Athena use for null partitions).

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, NaiveDateTime, Timelike, Utc};
use serde_json::Value;

use crate::record::Fields;

/// Hive's name for a null partition value.
pub const HIVE_DEFAULT_PARTITION: &str = "__HIVE_DEFAULT_PARTITION__";
const MAX_VALUE_BYTES: usize = 128;

/// How partition keys are derived.
#[derive(Debug, Clone, Default)]
pub struct PartitionSpec {
    /// Field holding the event time.
    pub timestamp_field: Option<String>,
    /// Fields whose values become keys.
    pub fields: Vec<String>,
    /// Value for a missing field.
    pub default_value: String,
    /// Every key in output (sorted) order, with where its value comes from.
    order: Vec<(String, Slot)>,
}

#[derive(Debug, Clone, Copy)]
enum Slot {
    Year,
    Month,
    Day,
    Hour,
    Field(usize),
}

/// Partition keys of one record, and whether the time fell back to the arrival time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    /// Key -> value.
    pub keys: BTreeMap<String, String>,
    /// The timestamp field was missing or unparseable.
    pub fell_back: bool,
}

impl PartitionSpec {
    /// A spec; key names must be distinct (`year`..`hour` are taken when a time field is set).
    pub fn new(
        timestamp_field: Option<String>,
        fields: Vec<String>,
        default_value: String,
    ) -> Result<PartitionSpec, String> {
        let mut order: Vec<(String, Slot)> = Vec::new();
        if timestamp_field.is_some() {
            for (k, slot) in [
                ("year", Slot::Year),
                ("month", Slot::Month),
                ("day", Slot::Day),
                ("hour", Slot::Hour),
            ] {
                order.push((k.to_owned(), slot));
            }
        }
        for (i, f) in fields.iter().enumerate() {
            let key = f.replace('.', "_");
            if order.iter().any(|(k, _)| *k == key) {
                return Err(format!("partition key {key:?} appears twice"));
            }
            order.push((key, Slot::Field(i)));
        }
        order.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(PartitionSpec {
            timestamp_field,
            fields,
            default_value,
            order,
        })
    }

    /// Writes the keys of a record as the members of a JSON object (`"k":"v",...`) into `out`;
    /// returns whether the time fell back to the arrival time. Same keys as [`Self::keys`].
    pub fn write_json(
        &self,
        fields: &Fields<'_>,
        arrival_ms: Option<i64>,
        out: &mut String,
    ) -> bool {
        let mut fell_back = false;
        let time = self.timestamp_field.as_ref().map(|name| {
            // A plain top-level string (the common case) is read in place.
            let parsed = match fields.get(name).and_then(|raw| raw.plain_str()) {
                Some(text) => parse_time_text(text),
                None => fields.lookup(name).and_then(|raw| parse_time(&raw.value())),
            };
            match parsed {
                Some(t) => t,
                None => {
                    fell_back = true;
                    arrival_ms
                        .and_then(DateTime::<Utc>::from_timestamp_millis)
                        .unwrap_or_else(|| DateTime::<Utc>::from(std::time::SystemTime::now()))
                }
            }
        });
        for (i, (key, slot)) in self.order.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            crate::record::push_json_string(out, key);
            out.push(':');
            match (slot, time) {
                (Slot::Year, Some(t)) => push_padded(out, t.year(), 4),
                (Slot::Month, Some(t)) => push_padded(out, t.month() as i32, 2),
                (Slot::Day, Some(t)) => push_padded(out, t.day() as i32, 2),
                (Slot::Hour, Some(t)) => push_padded(out, t.hour() as i32, 2),
                (Slot::Field(f), _) => {
                    let name = &self.fields[*f];
                    let v = match fields.get(name).and_then(|raw| raw.plain_str()) {
                        Some(text) => safe_text(text),
                        None => fields.lookup(name).and_then(|raw| safe_value(&raw.value())),
                    };
                    crate::record::push_json_string(
                        out,
                        v.as_deref().unwrap_or(&self.default_value),
                    );
                }
                _ => {}
            }
        }
        fell_back
    }

    /// Whether any partitioning is configured.
    pub fn is_enabled(&self) -> bool {
        self.timestamp_field.is_some() || !self.fields.is_empty()
    }

    /// Computes the keys of a record that arrived at `arrival_ms`.
    pub fn keys(&self, fields: &Fields<'_>, arrival_ms: Option<i64>) -> Keys {
        // One implementation: the map is read back from what the response would carry.
        let mut json = String::from("{");
        let fell_back = self.write_json(fields, arrival_ms, &mut json);
        json.push('}');
        let keys = serde_json::from_str(&json).unwrap_or_default();
        Keys { keys, fell_back }
    }
}

/// Parses a time from a JSON value: RFC 3339 / ISO 8601 text, or epoch seconds/milliseconds.
pub fn parse_time(v: &Value) -> Option<DateTime<Utc>> {
    match v {
        Value::Number(n) => from_epoch(n.as_f64()?),
        Value::String(s) => parse_time_text(s),
        _ => None,
    }
}

/// Parses a time from text: RFC 3339 / ISO 8601, or epoch seconds/milliseconds as digits.
pub fn parse_time_text(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    // ISO 8601 with a space, or without an offset (taken as UTC).
    for fmt in [
        "%Y-%m-%d %H:%M:%S%.f%:z",
        "%Y-%m-%dT%H:%M:%S%.f%z",
        "%Y-%m-%d %H:%M:%S%.f%z",
    ] {
        if let Ok(t) = DateTime::parse_from_str(s, fmt) {
            return Some(t.with_timezone(&Utc));
        }
    }
    for fmt in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, fmt) {
            return Some(t.and_utc());
        }
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return d.and_hms_opt(0, 0, 0).map(|t| t.and_utc());
    }
    s.parse::<f64>().ok().and_then(from_epoch)
}

/// Appends `"n"` zero-padded to `width` digits (years 0..=9999 and smaller fields).
fn push_padded(out: &mut String, n: i32, width: u32) {
    out.push('"');
    let n = n.clamp(0, 9999) as u32;
    for p in (0..width).rev() {
        out.push(char::from(b'0' + (n / 10u32.pow(p) % 10) as u8));
    }
    out.push('"');
}

fn from_epoch(x: f64) -> Option<DateTime<Utc>> {
    if !x.is_finite() || x < 0.0 {
        return None;
    }
    let ms = if x > 1e11 { x } else { x * 1000.0 };
    if ms > 253_402_300_799_999.0 {
        return None; // after 9999-12-31
    }
    DateTime::<Utc>::from_timestamp_millis(ms as i64)
}

/// A JSON value as a prefix-safe partition value; `None` for null/empty/nested values.
pub fn safe_value(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => safe_text(s),
        Value::Number(n) => safe_text(&n.to_string()),
        Value::Bool(b) => safe_text(if *b { "true" } else { "false" }),
        _ => None,
    }
}

/// Text as a prefix-safe partition value; `None` when nothing usable is left.
pub fn safe_text(text: &str) -> Option<String> {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        let keep = c.is_alphanumeric() || matches!(c, '-' | '_' | '.');
        let c = if keep { c } else { '_' };
        if out.len() + c.len_utf8() > MAX_VALUE_BYTES {
            break;
        }
        out.push(c);
    }
    if out.is_empty() || out.chars().all(|c| c == '.') {
        return None;
    }
    Some(out)
}

/// RFC 3339 UTC with milliseconds, e.g. `2024-05-01T12:00:00.000Z`.
pub fn rfc3339_millis(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(ts: Option<&str>, fields: &[&str]) -> PartitionSpec {
        PartitionSpec::new(
            ts.map(str::to_owned),
            fields.iter().map(|s| s.to_string()).collect(),
            HIVE_DEFAULT_PARTITION.to_owned(),
        )
        .expect("valid spec")
    }

    fn keys(s: &PartitionSpec, record: &str, arrival: Option<i64>) -> Keys {
        s.keys(&Fields::parse(record.as_bytes()).expect("object"), arrival)
    }

    #[test]
    fn a_deep_or_huge_sibling_does_not_default_a_nested_key() {
        let s = spec(Some("meta.ts"), &["geo.region", "geo.id"]);
        let record = format!(
            r#"{{"geo":{{"deep":{}{},"region":"eu","big":1e400,"id":9007199254740993}},
                "meta":{{"x":-1e99999,"ts":"2024-03-07T05:06:07Z"}}}}"#,
            "[".repeat(300),
            "]".repeat(300)
        );
        let k = keys(&s, &record, Some(0));
        assert!(!k.fell_back);
        assert_eq!(ymdh(&k), "2024/03/07/05");
        assert_eq!(k.keys["geo_region"], "eu");
        assert_eq!(k.keys["geo_id"], "9007199254740993");
    }

    #[test]
    fn duplicate_key_names_are_refused() {
        assert!(PartitionSpec::new(Some("ts".into()), vec!["year".into()], "d".into()).is_err());
        assert!(PartitionSpec::new(None, vec!["a.b".into(), "a_b".into()], "d".into()).is_err());
        assert!(PartitionSpec::new(None, vec!["year".into()], "d".into()).is_ok());
    }

    fn ymdh(k: &Keys) -> String {
        format!(
            "{}/{}/{}/{}",
            k.keys["year"], k.keys["month"], k.keys["day"], k.keys["hour"]
        )
    }

    #[test]
    fn every_time_format_gives_utc_keys() {
        let s = spec(Some("ts"), &[]);
        for (value, want) in [
            (json!("2024-03-07T05:06:07Z"), "2024/03/07/05"),
            (json!("2024-03-07T05:06:07.123456+09:00"), "2024/03/06/20"),
            (json!("2024-03-07 23:59:59-01:00"), "2024/03/08/00"),
            (json!("2024-03-07T05:06:07"), "2024/03/07/05"),
            (json!("2024-03-07 05:06:07.5"), "2024/03/07/05"),
            (json!("2024-03-07"), "2024/03/07/00"),
            (json!(1_709_787_967), "2024/03/07/05"),
            (json!(1_709_787_967.9), "2024/03/07/05"),
            (json!(1_709_787_967_123i64), "2024/03/07/05"),
            (json!("1709787967"), "2024/03/07/05"),
        ] {
            let rec = json!({ "ts": value }).to_string();
            let k = keys(&s, &rec, None);
            assert!(!k.fell_back, "{value}");
            assert_eq!(ymdh(&k), want, "{value}");
        }
    }

    #[test]
    fn missing_or_bad_time_falls_back_to_arrival() {
        let s = spec(Some("ts"), &[]);
        let arrival = 1_704_067_200_000; // 2024-01-01T00:00:00Z
        for rec in [
            r#"{}"#,
            r#"{"ts":"yesterday"}"#,
            r#"{"ts":null}"#,
            r#"{"ts":-5}"#,
            r#"{"ts":[1]}"#,
        ] {
            let k = keys(&s, rec, Some(arrival));
            assert!(k.fell_back, "{rec}");
            assert_eq!(ymdh(&k), "2024/01/01/00", "{rec}");
        }
    }

    #[test]
    fn field_keys_are_safe_and_default_when_missing() {
        let s = spec(
            None,
            &["tenant", "geo.region", "n", "flag", "missing", "empty"],
        );
        let k = keys(
            &s,
            r#"{"tenant":"acme/../../etc inc","geo":{"region":"서울"},"n":42,"flag":true,"empty":""}"#,
            None,
        );
        assert_eq!(k.keys["tenant"], "acme_.._.._etc_inc");
        assert_eq!(k.keys["geo_region"], "서울");
        assert_eq!(k.keys["n"], "42");
        assert_eq!(k.keys["flag"], "true");
        assert_eq!(k.keys["missing"], HIVE_DEFAULT_PARTITION);
        assert_eq!(k.keys["empty"], HIVE_DEFAULT_PARTITION);
        assert_eq!(safe_value(&json!("..")), None);
        assert_eq!(
            safe_value(&json!("x".repeat(300))).map(|v| v.len()),
            Some(128)
        );
    }
}
