//! The `filter` conditions of the `TRANSFORM` document: a field (name or dotted path), an
//! operator (`eq`, `ne`, `gt`, `gte`, `lt`, `lte`, `in`, `exists`) and an operand, checked
//! when the document is read. Conditions read the record's values exactly as written (see
//! [`crate::compare`]); a missing or `null` field fails every condition except `ne` and
//! `{"op": "exists", "value": false}`.

use std::cmp::Ordering;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::compare::{self, MAX_OPERAND_DEPTH};
use crate::record::{Fields, Raw};

/// One filter condition.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Condition {
    /// Field name or dotted path.
    pub field: String,
    /// Comparison.
    pub op: Op,
    /// Operand as written, JSON text (for `exists`: `true`, the default, or `false`).
    #[serde(default)]
    pub value: Option<Box<RawValue>>,
    /// The elements of an `in` operand.
    #[serde(skip)]
    items: Vec<Box<RawValue>>,
}

/// Filter operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    /// Equal.
    Eq,
    /// Not equal.
    Ne,
    /// Greater than.
    Gt,
    /// Greater than or equal.
    Gte,
    /// Less than.
    Lt,
    /// Less than or equal.
    Lte,
    /// Member of the operand array.
    In,
    /// Present and not null (or, with `"value": false`, absent or null).
    Exists,
}

impl Condition {
    /// Checks the operand against the operator (and keeps the elements of an `in` array);
    /// why not, for the error that names `TRANSFORM`.
    pub(crate) fn check(&mut self) -> Result<(), String> {
        if self.field.is_empty() {
            return Err("empty field name".into());
        }
        let text = self.value.as_ref().map(|v| v.get());
        let mut items = Vec::new();
        match (self.op, text) {
            (Op::In, Some(t)) if t.starts_with('[') => {
                items = serde_json::from_str(t).map_err(|e| format!("`in` operand: {e}"))?;
            }
            (Op::In, _) => return Err("`in` needs an array value".into()),
            (Op::Exists, None | Some("true" | "false")) => {}
            (Op::Exists, _) => return Err("`exists` takes true, false or no value".into()),
            (_, None) => return Err("this operator needs a value".into()),
            _ => {}
        }
        if text.is_some_and(|t| compare::depth(t) > MAX_OPERAND_DEPTH) {
            return Err(format!(
                "the value nests deeper than {MAX_OPERAND_DEPTH} levels"
            ));
        }
        self.items = items;
        Ok(())
    }

    /// Whether the record satisfies the condition, on the record's values exactly as they
    /// are (see [`compare`]).
    pub fn holds(&self, fields: &Fields<'_>) -> bool {
        let actual = fields.lookup(&self.field).filter(|v| !v.is_null());
        let actual = actual.as_ref().map(Raw::get);
        let operand = self.value.as_deref().map(RawValue::get);
        match self.op {
            Op::Exists => actual.is_some() == (operand != Some("false")),
            Op::Ne => match (actual, operand) {
                (Some(a), Some(b)) => !compare::equal(a, b),
                _ => true,
            },
            Op::Eq => matches!((actual, operand), (Some(a), Some(b)) if compare::equal(a, b)),
            Op::In => actual.is_some_and(|a| self.items.iter().any(|b| compare::equal(a, b.get()))),
            Op::Gt | Op::Gte | Op::Lt | Op::Lte => {
                let (Some(a), Some(b)) = (actual, operand) else {
                    return false;
                };
                matches!(
                    (compare::order(a, b), self.op),
                    (Some(Ordering::Greater), Op::Gt | Op::Gte)
                        | (Some(Ordering::Equal), Op::Gte | Op::Lte)
                        | (Some(Ordering::Less), Op::Lt | Op::Lte)
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::record::Fields;
    use crate::transform::Transform;

    /// Whether `record` passes the filter made of the conditions `filter` (JSON, comma-separated).
    fn keeps(filter: &str, record: &str) -> bool {
        let t = Transform::parse(&format!(r#"{{"filter":[{filter}]}}"#)).expect("valid filter");
        let f = Fields::parse(record.as_bytes()).expect("object");
        t.filter.iter().all(|c| c.holds(&f))
    }

    #[test]
    fn filter_operators() {
        let rec = r#"{"status":200,"level":"WARN","ratio":0.5,"user":{"id":"u1"},"gone":null}"#;
        let keep = |f: &str| keeps(f, rec);
        assert!(keep(r#"{"field":"status","op":"eq","value":200.0}"#));
        assert!(!keep(r#"{"field":"status","op":"eq","value":"200"}"#));
        assert!(keep(r#"{"field":"status","op":"ne","value":404}"#));
        assert!(keep(r#"{"field":"missing","op":"ne","value":1}"#));
        assert!(keep(r#"{"field":"status","op":"gt","value":199}"#));
        assert!(!keep(r#"{"field":"status","op":"gt","value":200}"#));
        assert!(keep(r#"{"field":"status","op":"gte","value":200}"#));
        assert!(keep(r#"{"field":"ratio","op":"lt","value":1}"#));
        assert!(keep(r#"{"field":"ratio","op":"lte","value":0.5}"#));
        assert!(
            !keep(r#"{"field":"level","op":"lt","value":5}"#),
            "types differ"
        );
        assert!(
            keep(r#"{"field":"level","op":"gt","value":"ERROR"}"#),
            "strings order"
        );
        assert!(keep(
            r#"{"field":"level","op":"in","value":["ERROR","WARN"]}"#
        ));
        assert!(!keep(r#"{"field":"level","op":"in","value":["INFO"]}"#));
        assert!(keep(r#"{"field":"user.id","op":"exists"}"#));
        assert!(!keep(r#"{"field":"gone","op":"exists"}"#));
        assert!(keep(r#"{"field":"gone","op":"exists","value":false}"#));
        assert!(!keep(r#"{"field":"missing","op":"eq","value":1}"#));
        assert!(!keep(r#"{"field":"missing","op":"lt","value":1}"#));
        assert!(keep(r#"{"field":"user.id","op":"eq","value":"u1"}"#));
        // Every condition must hold.
        assert!(!keep(
            r#"{"field":"status","op":"eq","value":200},{"field":"level","op":"eq","value":"INFO"}"#
        ));
    }

    #[test]
    fn a_filter_compares_64_bit_ids_exactly() {
        let rec = r#"{"id":9007199254740993}"#;
        assert!(!keeps(
            r#"{"field":"id","op":"eq","value":9007199254740992}"#,
            rec
        ));
        assert!(keeps(
            r#"{"field":"id","op":"eq","value":9007199254740993}"#,
            rec
        ));
        assert!(keeps(
            r#"{"field":"id","op":"ne","value":9007199254740992}"#,
            rec
        ));
        assert!(keeps(
            r#"{"field":"id","op":"gt","value":9007199254740992}"#,
            rec
        ));
        assert!(!keeps(
            r#"{"field":"id","op":"lt","value":9007199254740993}"#,
            rec
        ));
        assert!(!keeps(
            r#"{"field":"id","op":"in","value":[9007199254740992,9007199254740994]}"#,
            rec
        ));
        let max = r#"{"id":18446744073709551615}"#;
        assert!(keeps(
            r#"{"field":"id","op":"gt","value":18446744073709551614}"#,
            max
        ));
        assert!(!keeps(
            r#"{"field":"id","op":"eq","value":18446744073709551614}"#,
            max
        ));
        let min = r#"{"id":-9223372036854775808}"#;
        assert!(keeps(
            r#"{"field":"id","op":"lt","value":-9223372036854775807}"#,
            min
        ));
        let nested = r#"{"user":{"id":9007199254740993}}"#;
        assert!(keeps(
            r#"{"field":"user.id","op":"ne","value":9007199254740992}"#,
            nested
        ));
    }

    #[test]
    fn a_filter_compares_decimals_by_value() {
        // Equal as f64, different as decimals.
        let rec = r#"{"p":0.1}"#;
        assert!(keeps(
            r#"{"field":"p","op":"lt","value":0.10000000000000001}"#,
            rec
        ));
        assert!(!keeps(
            r#"{"field":"p","op":"eq","value":0.10000000000000001}"#,
            rec
        ));
        // One value, several spellings.
        assert!(keeps(r#"{"field":"p","op":"eq","value":1e-1}"#, rec));
        assert!(keeps(r#"{"field":"p","op":"in","value":[0.100,2]}"#, rec));
        // Numbers beyond f64 are still numbers.
        let big = r#"{"n":1e400}"#;
        assert!(keeps(r#"{"field":"n","op":"gt","value":1e308}"#, big));
        assert!(keeps(r#"{"field":"n","op":"exists"}"#, big));
        assert!(!keeps(r#"{"field":"n","op":"lt","value":1}"#, big));
    }

    #[test]
    fn a_deep_or_huge_sibling_does_not_drop_the_record() {
        let cond = r#"{"field":"a.b","op":"eq","value":1}"#;
        let deep = format!(
            r#"{{"a":{{"deep":{}{},"b":1}}}}"#,
            "[".repeat(500),
            "]".repeat(500)
        );
        assert!(keeps(cond, &deep));
        assert!(keeps(cond, r#"{"a":{"big":1e400,"b":1,"huge":-1e99999}}"#));
        assert!(keeps(cond, r#"{"a":{"b":1,"s":"\ud800"}}"#));
        // A deep top-level sibling, and a deep value compared against a shallow operand.
        let sibling = format!(
            r#"{{"d":{}1{},"x":"y"}}"#,
            r#"{"k":"#.repeat(300),
            "}".repeat(300)
        );
        assert!(keeps(r#"{"field":"x","op":"eq","value":"y"}"#, &sibling));
        let deep_value = format!(r#"{{"d":{}{}}}"#, "[".repeat(300), "]".repeat(300));
        assert!(!keeps(
            r#"{"field":"d","op":"eq","value":[[1]]}"#,
            &deep_value
        ));
        assert!(keeps(
            r#"{"field":"d","op":"ne","value":[[1]]}"#,
            &deep_value
        ));
    }

    #[test]
    fn a_filter_compares_strings_and_containers_as_written() {
        let rec = r#"{"s":"caf\u00e9","o":{"k":[1,"x"],"j":null},"l":[1.0,2]}"#;
        assert!(keeps(
            "{\"field\":\"s\",\"op\":\"eq\",\"value\":\"caf\u{e9}\"}",
            rec
        ));
        assert!(keeps(
            r#"{"field":"o","op":"eq","value":{"j":null,"k":[1.0,"x"]}}"#,
            rec
        ));
        assert!(keeps(r#"{"field":"l","op":"eq","value":[1,2]}"#, rec));
        assert!(keeps(r#"{"field":"l","op":"ne","value":[2,1]}"#, rec));
        assert!(!keeps(r#"{"field":"o","op":"gt","value":{}}"#, rec));
    }
}
