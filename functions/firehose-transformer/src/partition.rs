//! Partition keys for Firehose dynamic partitioning.
//!
//! * `PARTITION_TIMESTAMP_FIELD=ts` adds `year`, `month`, `day`, `hour` (UTC, zero-padded: the
//!   layout of [`tributary::partition::TimeLevel`]) from the field's value, read by
//!   [`tributary::time`] as every function reads times: ISO 8601 / RFC 3339 text (an offset is
//!   converted to UTC, a naive time is taken as UTC), or epoch seconds or milliseconds (a
//!   number or numeric string; values above 10^11 are milliseconds). When the field is missing
//!   or unparseable, the record's `approximateArrivalTimestamp` is used instead, and the
//!   fallback is counted.
//! * `PARTITION_FIELDS=tenant,region` adds one key per field (dots in a path become `_` in the
//!   key name) from the field's value, escaped as every partition value is
//!   ([`tributary::partition::escape`], Hive's rule: `/`, `=`, `%`, `:` and the like as `%XX`,
//!   so Athena reads the value back exactly), at most 128 bytes; a missing, null or empty
//!   value becomes `PARTITION_DEFAULT` (default `__HIVE_DEFAULT_PARTITION__`, what Hive and
//!   Athena use for null partitions).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::Value;
use tributary::partition::{self as hive, TimeLevel};
use tributary::time;

use crate::record::Fields;

/// Longest partition key value, in bytes (escaped).
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
    Time(TimeLevel),
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
            for level in TimeLevel::ALL {
                order.push((level.name().to_owned(), Slot::Time(level)));
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
                Some(text) => time::parse_instant(text),
                None => fields.lookup(name).and_then(|raw| parse_time(&raw.value())),
            };
            match parsed.and_then(DateTime::<Utc>::from_timestamp_micros) {
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
            match (slot, &time) {
                (Slot::Time(level), Some(t)) => {
                    // Digits need no JSON escaping.
                    out.push('"');
                    push_level(*level, t, out);
                    out.push('"');
                }
                (Slot::Field(f), _) => {
                    let name = &self.fields[*f];
                    let v = match fields.get(name).and_then(|raw| raw.plain_str()) {
                        Some(text) => key_text(text),
                        None => fields.lookup(name).and_then(|raw| key_value(&raw.value())),
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

/// A time from a JSON value: ISO 8601 / RFC 3339 text or epoch seconds/milliseconds (a number,
/// or digits in a string), as [`tributary::time`] reads them -> microseconds since the epoch.
pub fn parse_time(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => time::from_epoch(n.as_f64()?),
        Value::String(s) => time::parse_instant(s),
        _ => None,
    }
}

/// A JSON value as a partition key value; `None` for null/empty/nested values.
pub fn key_value(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => key_text(s),
        Value::Number(n) => key_text(&n.to_string()),
        Value::Bool(b) => key_text(if *b { "true" } else { "false" }),
        _ => None,
    }
}

/// Text as a partition key value ([`hive::escape_within`] 128 bytes); `None` when empty.
pub fn key_text(text: &str) -> Option<String> {
    hive::escape_within(text, MAX_VALUE_BYTES)
}

/// [`TimeLevel::push_value`], its digits written directly for years of four digits (a key per
/// level per record: no formatting machinery).
fn push_level(level: TimeLevel, t: &DateTime<Utc>, out: &mut String) {
    use chrono::{Datelike, Timelike};
    let (n, width) = match level {
        TimeLevel::Year => match u32::try_from(t.year()) {
            Ok(year) if year <= 9999 => (year, 4),
            _ => return level.push_value(t, out),
        },
        TimeLevel::Month => (t.month(), 2),
        TimeLevel::Day => (t.day(), 2),
        TimeLevel::Hour => (t.hour(), 2),
    };
    for p in (0..width).rev() {
        out.push(char::from(b'0' + (n / 10u32.pow(p) % 10) as u8));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use tributary::partition::HIVE_DEFAULT_PARTITION;

    proptest::proptest! {
        /// Every level's value is written as the shared layout writes it, at any time.
        #[test]
        fn time_levels_are_written_as_the_shared_layout_writes_them(
            s in proptest::prop_oneof![0i64..4_102_444_800, -8_000_000_000_000i64..8_000_000_000_000]
        ) {
            if let Some(t) = DateTime::<Utc>::from_timestamp(s, 0) {
                for level in TimeLevel::ALL {
                    let (mut ours, mut shared) = (String::new(), String::new());
                    push_level(level, &t, &mut ours);
                    level.push_value(&t, &mut shared);
                    proptest::prop_assert_eq!(ours, shared);
                }
            }
        }
    }

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
        // Escaped as Hive escapes (Athena reads the value back as written), not flattened.
        assert_eq!(k.keys["tenant"], "acme%2F..%2F..%2Fetc inc");
        assert_eq!(k.keys["geo_region"], "서울");
        assert_eq!(k.keys["n"], "42");
        assert_eq!(k.keys["flag"], "true");
        assert_eq!(k.keys["missing"], HIVE_DEFAULT_PARTITION);
        assert_eq!(k.keys["empty"], HIVE_DEFAULT_PARTITION);
        assert_eq!(key_value(&json!("..")).as_deref(), Some("%2E%2E"));
        assert_eq!(key_value(&json!("")), None);
        assert_eq!(
            key_value(&json!("x".repeat(300))).map(|v| v.len()),
            Some(128)
        );
    }
}
