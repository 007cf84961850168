//! The declarative record transform, read once from the `TRANSFORM` environment variable.
//!
//! In the spirit of Glue's ApplyMapping / Filter / DropNullFields, a JSON document:
//!
//! ```json
//! {
//!   "filter": [{"field": "status", "op": "gte", "value": 200},
//!              {"field": "level", "op": "in", "value": ["WARN", "ERROR"]},
//!              {"field": "user.id", "op": "exists"}],
//!   "rename": {"ts": "event_time", "msg": "message"},
//!   "drop": ["debug", "internal"],
//!   "drop_nulls": true,
//!   "add": {"source": "firehose", "pipeline": 2},
//!   "add_processing_time": "processed_at",
//!   "add_arrival_time": "arrived_at"
//! }
//! ```
//!
//! Steps run in this order: **filter** (on the input's field names; every condition must hold,
//! or the record is `Dropped`), **rename** (all at once, each field keeping its place),
//! **drop**, **drop_nulls** (top-level fields whose value is `null`), **add** (constants; then
//! the processing time and Firehose's arrival time as RFC 3339 UTC strings with millisecond
//! precision). Fields keep their order; added fields go last (or replace a field of the same
//! name in place).
//!
//! Filter operators: `eq`, `ne`, `gt`, `gte`, `lt`, `lte`, `in`, `exists` (see
//! [`crate::filter`]). `field` may be a dotted path into nested objects. Conditions read the
//! record's values as they are, exactly (see [`crate::compare`]): numbers by their decimal
//! value at any size, strings lexically, arrays and objects member by member; values of
//! different types are never ordered. A missing (or `null`) field fails every condition except
//! `ne` and `{"op": "exists", "value": false}`.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;
use tributary::Error;

use crate::filter::Condition;
use crate::record::{Fields, Raw};

/// The parsed `TRANSFORM` document.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Transform {
    /// Conditions that must all hold for a record to be kept.
    #[serde(default)]
    pub filter: Vec<Condition>,
    /// Old name -> new name, applied all at once (a swap `{"a":"b","b":"a"}` swaps).
    #[serde(default)]
    pub rename: BTreeMap<String, String>,
    /// Fields to remove.
    #[serde(default)]
    pub drop: Vec<String>,
    /// Remove top-level fields whose value is `null`.
    #[serde(default)]
    pub drop_nulls: bool,
    /// Constant fields to add, in the document's order.
    #[serde(default, deserialize_with = "ordered_map")]
    pub add: Vec<(String, Value)>,
    /// Field to receive the processing time.
    #[serde(default)]
    pub add_processing_time: Option<String>,
    /// Field to receive Firehose's arrival time of the record.
    #[serde(default)]
    pub add_arrival_time: Option<String>,
    /// `add` as JSON text, serialised once at parse time.
    #[serde(skip)]
    add_raw: Vec<(String, Box<RawValue>)>,
}

/// Times a record's transform may stamp into it, as JSON strings.
#[derive(Debug, Clone, Copy)]
pub struct Stamps<'t> {
    /// When this batch is processed (RFC 3339).
    pub processing_time: &'t RawValue,
    /// When Firehose received the record (RFC 3339), if known.
    pub arrival_time: Option<Raw<'t>>,
}

/// A string as JSON text (for [`Stamps`]).
pub fn json_text(s: &str) -> Box<RawValue> {
    let mut out = Vec::with_capacity(s.len() + 2);
    crate::record::write_json_string(&mut out, s);
    // A JSON string literal we just escaped is valid JSON; `null` is the unreachable fallback.
    String::from_utf8(out)
        .ok()
        .and_then(|t| RawValue::from_string(t).ok())
        .unwrap_or_else(|| RawValue::NULL.to_owned())
}

/// RFC 3339 UTC with milliseconds, e.g. `2024-05-01T12:00:00.000Z` (the stamps' format).
pub fn rfc3339_millis(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Appends [`rfc3339_millis`] of `t` as a JSON string literal, the digits written directly
/// (a stamp per record: no formatting machinery, no allocation).
pub fn push_rfc3339_millis_json(t: chrono::DateTime<chrono::Utc>, out: &mut String) {
    use chrono::{Datelike, Timelike};
    let year = t.year();
    if !(0..=9999).contains(&year) {
        // Signed, wider years: as chrono writes them (no character needs escaping).
        out.push('"');
        out.push_str(&rfc3339_millis(t));
        out.push('"');
        return;
    }
    let digits = |out: &mut String, n: u32, width: u32| {
        for p in (0..width).rev() {
            out.push(char::from(b'0' + (n / 10u32.pow(p) % 10) as u8));
        }
    };
    out.push('"');
    digits(out, year.unsigned_abs(), 4);
    out.push('-');
    digits(out, t.month(), 2);
    out.push('-');
    digits(out, t.day(), 2);
    out.push('T');
    digits(out, t.hour(), 2);
    out.push(':');
    digits(out, t.minute(), 2);
    out.push(':');
    digits(out, t.second(), 2);
    out.push('.');
    // A leap second's nanoseconds run past 10^9: chrono writes them as 60.xxx; so do we.
    digits(out, t.nanosecond() % 1_000_000_000 / 1_000_000, 3);
    out.push_str("Z\"");
}

impl Transform {
    /// Parses and validates the document; errors name `TRANSFORM` and what is wrong.
    pub fn parse(doc: &str) -> Result<Transform, Error> {
        let mut t: Transform = serde_json::from_str(doc).map_err(|e| {
            Error::config(
                "TRANSFORM",
                truncate(doc, 200),
                e.to_string(),
                "a JSON object with filter, rename, drop, drop_nulls, add, add_processing_time, add_arrival_time (see README)",
            )
        })?;
        for c in &mut t.filter {
            c.check().map_err(|reason| {
                Error::config(
                    "TRANSFORM",
                    truncate(doc, 200),
                    format!("filter on {:?}: {reason}", c.field),
                    "eq/ne/gt/gte/lt/lte with a value, in with an array, exists with true/false or nothing",
                )
            })?;
        }
        for (from, to) in &t.rename {
            if from.is_empty() || to.is_empty() {
                return Err(Error::config(
                    "TRANSFORM",
                    truncate(doc, 200),
                    "rename with an empty field name",
                    "non-empty field names",
                ));
            }
        }
        t.add_raw = t
            .add
            .iter()
            .map(|(k, v)| {
                // A `Value` always serialises (its map keys are strings).
                let raw = serde_json::value::to_raw_value(v)
                    .unwrap_or_else(|_| RawValue::NULL.to_owned());
                (k.clone(), raw)
            })
            .collect();
        Ok(t)
    }

    /// Whether [`Transform::apply`] keeps every record as it is (nothing configured).
    pub fn is_identity(&self) -> bool {
        self.filter.is_empty()
            && self.rename.is_empty()
            && self.drop.is_empty()
            && !self.drop_nulls
            && self.add_raw.is_empty()
            && self.add_processing_time.is_none()
            && self.add_arrival_time.is_none()
    }

    /// Applies the transform; `false` means the record is filtered out.
    pub fn apply<'a>(&'a self, fields: &mut Fields<'a>, stamps: Stamps<'a>) -> bool {
        if !self.filter.iter().all(|c| c.holds(fields)) {
            return false;
        }
        if !self.rename.is_empty() {
            rename(&self.rename, fields);
        }
        for name in &self.drop {
            fields.remove(name);
        }
        if self.drop_nulls {
            fields.entries.retain(|(_, v)| !v.is_null());
        }
        for (k, v) in &self.add_raw {
            fields.set(Cow::Borrowed(k), Raw::compact(v));
        }
        if let Some(name) = &self.add_processing_time {
            fields.set(Cow::Borrowed(name), Raw::compact(stamps.processing_time));
        }
        if let (Some(name), Some(t)) = (&self.add_arrival_time, stamps.arrival_time) {
            fields.set(Cow::Borrowed(name), t);
        }
        true
    }
}

/// Renames every field at once, each keeping its place: a field whose name is a key of
/// `rename` takes the new name where it stands. A renamed field replaces any other field that
/// ends up with the same name; of several renamed onto one name, the last in the record stays.
fn rename<'a>(names: &'a BTreeMap<String, String>, fields: &mut Fields<'a>) {
    // (new name, index of the last field renamed to it)
    let mut renamed: Vec<(&'a str, usize)> = Vec::new();
    for (i, (name, _)) in fields.entries.iter_mut().enumerate() {
        if let Some(to) = names.get(name.as_ref()) {
            *name = Cow::Borrowed(to.as_str());
            match renamed.iter_mut().find(|(t, _)| *t == to.as_str()) {
                Some(last) => last.1 = i,
                None => renamed.push((to.as_str(), i)),
            }
        }
    }
    if renamed.is_empty() {
        return;
    }
    let mut i = 0;
    fields.entries.retain(|(name, _)| {
        let keep = renamed
            .iter()
            .all(|(to, last)| *last == i || name.as_ref() != *to);
        i += 1;
        keep
    });
}

/// A JSON object as `(key, value)` pairs in document order.
fn ordered_map<'de, D>(d: D) -> Result<Vec<(String, Value)>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    struct V;
    impl<'de> serde::de::Visitor<'de> for V {
        type Value = Vec<(String, Value)>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an object of field names to constant values")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut map: A,
        ) -> Result<Self::Value, A::Error> {
            let mut out: Vec<(String, Value)> = Vec::new();
            while let Some((k, v)) = map.next_entry::<String, Value>()? {
                out.retain(|(existing, _)| *existing != k);
                out.push((k, v));
            }
            Ok(out)
        }
    }
    d.deserialize_map(V)
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(t: &str, record: &str) -> Option<String> {
        let t = Transform::parse(t).expect("valid transform");
        let processing = json_text("2024-05-01T12:00:00.000Z");
        let arrival = json_text("2024-05-01T11:59:59.123Z");
        let stamps = Stamps {
            processing_time: &processing,
            arrival_time: Some(Raw::compact(&arrival)),
        };
        let mut f = Fields::parse(record.as_bytes()).expect("object");
        if !t.apply(&mut f, stamps) {
            return None;
        }
        let mut out = Vec::new();
        f.write_line(&mut out);
        Some(String::from_utf8(out).expect("utf8"))
    }

    proptest::proptest! {
        /// The stamp written digit by digit is chrono's RFC 3339 text, quoted, at any time.
        #[test]
        fn stamps_are_written_as_chrono_writes_them(
            ms in proptest::prop_oneof![
                0i64..4_102_444_800_000,
                -62_167_219_200_000i64..0,
                proptest::prelude::any::<i64>(),
            ]
        ) {
            if let Some(t) = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms) {
                let mut ours = String::new();
                push_rfc3339_millis_json(t, &mut ours);
                let chrono = json_text(&rfc3339_millis(t));
                proptest::prop_assert_eq!(ours.as_str(), chrono.get());
            }
        }
    }

    #[test]
    fn rename_moves_a_field_and_keeps_its_value() {
        let out = run(
            r#"{"rename":{"a":"b","missing":"x"}}"#,
            r#"{"a":{"n":1},"c":2}"#,
        );
        assert_eq!(out.as_deref(), Some("{\"b\":{\"n\":1},\"c\":2}\n"));
        // Renaming onto an existing field replaces it; the renamed field keeps its place.
        let out = run(r#"{"rename":{"a":"c"}}"#, r#"{"a":1,"c":2}"#);
        assert_eq!(out.as_deref(), Some("{\"c\":1}\n"));
        let out = run(r#"{"rename":{"a":"c"}}"#, r#"{"c":2,"b":0,"a":1}"#);
        assert_eq!(out.as_deref(), Some("{\"b\":0,\"c\":1}\n"));
    }

    #[test]
    fn rename_keeps_the_field_in_place() {
        let out = run(r#"{"rename":{"a":"x"}}"#, r#"{"a":1,"b":2}"#);
        assert_eq!(out.as_deref(), Some("{\"x\":1,\"b\":2}\n"));
        let out = run(
            r#"{"rename":{"b":"y","d":"z"}}"#,
            r#"{"a":1,"b":2,"c":3,"d":4}"#,
        );
        assert_eq!(out.as_deref(), Some("{\"a\":1,\"y\":2,\"c\":3,\"z\":4}\n"));
    }

    #[test]
    fn a_swap_rename_keeps_both_fields() {
        let out = run(r#"{"rename":{"a":"b","b":"a"}}"#, r#"{"a":1,"b":2}"#);
        assert_eq!(out.as_deref(), Some("{\"b\":1,\"a\":2}\n"));
        // Renames apply at once: a chain moves each value one name along.
        let out = run(r#"{"rename":{"a":"b","b":"c"}}"#, r#"{"a":1,"b":2,"c":3}"#);
        assert_eq!(out.as_deref(), Some("{\"b\":1,\"c\":2}\n"));
        // Two fields renamed onto one name: the last in the record stays, where it is.
        let out = run(r#"{"rename":{"a":"x","b":"x"}}"#, r#"{"b":2,"k":0,"a":1}"#);
        assert_eq!(out.as_deref(), Some("{\"k\":0,\"x\":1}\n"));
    }

    #[test]
    fn drop_removes_fields() {
        let out = run(r#"{"drop":["a","zz"]}"#, r#"{"a":1,"b":2,"a":3}"#);
        assert_eq!(out.as_deref(), Some("{\"b\":2}\n"));
    }

    #[test]
    fn drop_nulls_removes_only_top_level_nulls() {
        let out = run(
            r#"{"drop_nulls":true}"#,
            r#"{"a":null,"b":{"c":null},"d":0,"e":""}"#,
        );
        assert_eq!(
            out.as_deref(),
            Some("{\"b\":{\"c\":null},\"d\":0,\"e\":\"\"}\n")
        );
    }

    #[test]
    fn add_constants_and_times() {
        let t = r#"{"add":{"source":"firehose","v":2,"o":{"k":[1]}},
                    "add_processing_time":"processed_at","add_arrival_time":"arrived_at"}"#;
        let out = run(t, r#"{"source":"device","x":1}"#);
        assert_eq!(
            out.as_deref(),
            Some(concat!(
                "{\"source\":\"firehose\",\"x\":1,\"v\":2,\"o\":{\"k\":[1]},",
                "\"processed_at\":\"2024-05-01T12:00:00.000Z\",",
                "\"arrived_at\":\"2024-05-01T11:59:59.123Z\"}\n"
            ))
        );
    }

    #[test]
    fn filter_runs_on_input_names_before_rename() {
        let t = r#"{"filter":[{"field":"lvl","op":"eq","value":"E"}],"rename":{"lvl":"level"}}"#;
        assert_eq!(
            run(t, r#"{"lvl":"E"}"#).as_deref(),
            Some("{\"level\":\"E\"}\n")
        );
        assert_eq!(run(t, r#"{"lvl":"I"}"#), None);
    }

    #[test]
    fn invalid_documents_name_the_variable_and_the_problem() {
        for (doc, want) in [
            ("not json", "expected"),
            (r#"{"renam":{}}"#, "unknown field `renam`"),
            (
                r#"{"filter":[{"field":"a","op":"like","value":1}]}"#,
                "unknown variant `like`",
            ),
            (
                r#"{"filter":[{"field":"a","op":"in","value":1}]}"#,
                "needs an array",
            ),
            (r#"{"filter":[{"field":"a","op":"eq"}]}"#, "needs a value"),
            (
                r#"{"filter":[{"field":"a","op":"exists","value":3}]}"#,
                "exists",
            ),
            (r#"{"rename":{"a":""}}"#, "empty field name"),
            (
                &format!(
                    r#"{{"filter":[{{"field":"a","op":"eq","value":{}{}}}]}}"#,
                    "[".repeat(65),
                    "]".repeat(65)
                ),
                "deeper than 64",
            ),
        ] {
            let err = Transform::parse(doc).expect_err(doc).to_string();
            assert!(err.contains("TRANSFORM"), "{err}");
            assert!(err.contains(want), "{doc}: {err}");
        }
        Transform::parse("{}").expect("an empty document is valid");
    }
}
