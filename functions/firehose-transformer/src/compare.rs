//! Exact comparison of raw JSON values, as the filter sees them.
//!
//! Both sides are valid JSON text (a record's value as the scanner borrowed it, an operand
//! from `TRANSFORM`) and are compared without building trees or converting to `f64`:
//! numbers by their decimal value, of any size (`9007199254740993` is not
//! `9007199254740992`, `0.10` equals `1e-1`, `1e400` is a number like any other), strings by
//! their characters once escapes are decoded, arrays element by element, objects as maps
//! (member order does not matter; a repeated name counts with its last value, as readers
//! take it). Only numbers and strings are ordered.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::BTreeMap;

use crate::record::{Raw, elements, members};

/// Deepest operand `TRANSFORM` may hold: comparisons recurse only as deep as the operand.
pub const MAX_OPERAND_DEPTH: usize = 64;

/// The JSON type of a value, by its first byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Null,
    Bool,
    Number,
    String,
    Array,
    Object,
}

fn kind(json: &str) -> Kind {
    match json.as_bytes().first() {
        Some(b'"') => Kind::String,
        Some(b'{') => Kind::Object,
        Some(b'[') => Kind::Array,
        Some(b't' | b'f') => Kind::Bool,
        Some(b'n') | None => Kind::Null,
        Some(_) => Kind::Number,
    }
}

/// Whether two JSON values are equal: numbers by value, strings by content, containers
/// member by member. Values of different types are never equal.
pub fn equal(a: &str, b: &str) -> bool {
    match (kind(a), kind(b)) {
        (Kind::Number, Kind::Number) => Decimal::parse(a).cmp(&Decimal::parse(b)).is_eq(),
        (Kind::String, Kind::String) => unescape(a) == unescape(b),
        (Kind::Null, Kind::Null) => true,
        (Kind::Bool, Kind::Bool) => a == b,
        (Kind::Array, Kind::Array) => match (elements(a), elements(b)) {
            (Some(x), Some(y)) => {
                x.len() == y.len() && x.iter().zip(&y).all(|(x, y)| equal(x.get(), y.get()))
            }
            _ => false,
        },
        (Kind::Object, Kind::Object) => match (object_map(a), object_map(b)) {
            (Some(x), Some(y)) => {
                x.len() == y.len()
                    && x.iter()
                        .all(|(k, v)| y.get(k).is_some_and(|w| equal(v.get(), w.get())))
            }
            _ => false,
        },
        _ => false,
    }
}

/// The order of two numbers (by value) or two strings (by code point); `None` for any other
/// pair.
pub fn order(a: &str, b: &str) -> Option<Ordering> {
    match (kind(a), kind(b)) {
        (Kind::Number, Kind::Number) => Some(Decimal::parse(a).cmp(&Decimal::parse(b))),
        (Kind::String, Kind::String) => Some(unescape(a).cmp(&unescape(b))),
        _ => None,
    }
}

/// How deeply arrays and objects nest in a JSON text (0 for a scalar).
pub fn depth(json: &str) -> usize {
    let bytes = json.as_bytes();
    let (mut open, mut deepest, mut i) = (0usize, 0usize, 0usize);
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
            }
            b'[' | b'{' => {
                open += 1;
                deepest = deepest.max(open);
            }
            b']' | b'}' => open = open.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    deepest
}

/// An object's members by name, the last value of a repeated name winning.
fn object_map(json: &str) -> Option<BTreeMap<Cow<'_, str>, Raw<'_>>> {
    Some(members(json)?.entries.into_iter().collect())
}

/// A number as `0.DIGITS x 10^point`: significant digits without leading or trailing zeros.
#[derive(Debug)]
struct Decimal<'a> {
    negative: bool,
    /// Significant digits, in two pieces (before and after the decimal point of the text).
    head: &'a [u8],
    tail: &'a [u8],
    point: i128,
}

/// Exponents are read up to this magnitude; beyond it (a number with more than a
/// quintillion digits of exponent) they count as this bound.
const EXPONENT_BOUND: i128 = 1_000_000_000_000_000_000;

impl<'a> Decimal<'a> {
    /// Reads valid JSON number text; never fails (a malformed text reads as what it starts
    /// with).
    fn parse(text: &'a str) -> Decimal<'a> {
        let bytes = text.as_bytes();
        let negative = bytes.first() == Some(&b'-');
        let rest = &bytes[usize::from(negative)..];
        let int_len = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        let int = &rest[..int_len];
        let rest = &rest[int_len..];
        let (frac, rest) = match rest.strip_prefix(b".") {
            Some(r) => {
                let n = r.iter().take_while(|b| b.is_ascii_digit()).count();
                (&r[..n], &r[n..])
            }
            None => (&rest[..0], rest),
        };
        let mut exp: i128 = 0;
        if let Some(r) = rest.strip_prefix(b"e").or_else(|| rest.strip_prefix(b"E")) {
            let (sign, digits) = match r.first() {
                Some(b'-') => (-1, &r[1..]),
                Some(b'+') => (1, &r[1..]),
                _ => (1, r),
            };
            for d in digits.iter().take_while(|b| b.is_ascii_digit()) {
                exp = (exp * 10 + i128::from(d - b'0')).min(EXPONENT_BOUND);
            }
            exp *= sign;
        }
        let lead = int.iter().take_while(|&&b| b == b'0').count();
        let (head, tail, point) = if lead < int.len() {
            let head = &int[lead..];
            (head, frac, head.len() as i128 + exp)
        } else {
            let lead = frac.iter().take_while(|&&b| b == b'0').count();
            (&frac[..0], &frac[lead..], exp - lead as i128)
        };
        // Trailing zeros carry no value.
        let trim = |s: &'a [u8]| &s[..s.len() - s.iter().rev().take_while(|&&b| b == b'0').count()];
        let (head, tail) = match trim(tail) {
            t if t.is_empty() => (trim(head), t),
            t => (head, t),
        };
        Decimal {
            negative,
            head,
            tail,
            point,
        }
    }

    fn is_zero(&self) -> bool {
        self.head.is_empty() && self.tail.is_empty()
    }

    fn digits(&self) -> impl Iterator<Item = &u8> {
        self.head.iter().chain(self.tail)
    }

    fn magnitude_cmp(&self, other: &Decimal<'_>) -> Ordering {
        self.point
            .cmp(&other.point)
            .then_with(|| self.digits().cmp(other.digits()))
    }

    fn cmp(&self, other: &Decimal<'_>) -> Ordering {
        match (self.is_zero(), other.is_zero()) {
            (true, true) => Ordering::Equal,
            (true, false) if other.negative => Ordering::Greater,
            (true, false) => Ordering::Less,
            (false, true) if self.negative => Ordering::Less,
            (false, true) => Ordering::Greater,
            (false, false) => match (self.negative, other.negative) {
                (false, false) => self.magnitude_cmp(other),
                (true, true) => other.magnitude_cmp(self),
                (true, false) => Ordering::Less,
                (false, true) => Ordering::Greater,
            },
        }
    }
}

/// The characters of a JSON string literal as UTF-8 bytes, borrowed when it holds no escape.
/// A lone surrogate escape (valid JSON) becomes its generalised UTF-8 form, so every string
/// compares, in code point order.
fn unescape(literal: &str) -> Cow<'_, [u8]> {
    let inner = literal
        .strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or(literal)
        .as_bytes();
    if !inner.contains(&b'\\') {
        return Cow::Borrowed(inner);
    }
    let mut out = Vec::with_capacity(inner.len());
    let mut i = 0;
    while i < inner.len() {
        let b = inner[i];
        if b != b'\\' {
            out.push(b);
            i += 1;
            continue;
        }
        let Some(&e) = inner.get(i + 1) else { break };
        i += 2;
        let c = match e {
            b'b' => 0x08,
            b'f' => 0x0c,
            b'n' => u32::from(b'\n'),
            b'r' => u32::from(b'\r'),
            b't' => u32::from(b'\t'),
            b'u' => {
                let Some(hi) = hex4(inner, i) else { break };
                i += 4;
                if (0xd800..0xdc00).contains(&hi) && inner.get(i..i + 2) == Some(b"\\u") {
                    match hex4(inner, i + 2) {
                        Some(lo) if (0xdc00..0xe000).contains(&lo) => {
                            i += 6;
                            0x10000 + ((hi - 0xd800) << 10) + (lo - 0xdc00)
                        }
                        _ => hi,
                    }
                } else {
                    hi
                }
            }
            other => u32::from(other),
        };
        push_code_point(&mut out, c);
    }
    Cow::Owned(out)
}

fn hex4(bytes: &[u8], at: usize) -> Option<u32> {
    let s = std::str::from_utf8(bytes.get(at..at + 4)?).ok()?;
    u32::from_str_radix(s, 16).ok()
}

/// UTF-8 encoding generalised to surrogate code points.
fn push_code_point(out: &mut Vec<u8>, c: u32) {
    // The casts keep the low bits of each encoded byte, as UTF-8 prescribes.
    match c {
        0..0x80 => out.push(c as u8),
        0x80..0x800 => out.extend_from_slice(&[0xc0 | (c >> 6) as u8, 0x80 | (c & 0x3f) as u8]),
        0x800..0x10000 => out.extend_from_slice(&[
            0xe0 | (c >> 12) as u8,
            0x80 | ((c >> 6) & 0x3f) as u8,
            0x80 | (c & 0x3f) as u8,
        ]),
        _ => out.extend_from_slice(&[
            0xf0 | (c >> 18) as u8,
            0x80 | ((c >> 12) & 0x3f) as u8,
            0x80 | ((c >> 6) & 0x3f) as u8,
            0x80 | (c & 0x3f) as u8,
        ]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn numbers_compare_by_exact_value() {
        let eq = [
            ("9007199254740993", "9007199254740993"),
            ("200", "200.0"),
            ("0.1", "1e-1"),
            ("0.10", "0.1"),
            ("-0", "0"),
            ("0e5", "0.000"),
            ("1E+2", "100"),
            ("12.5e1", "125"),
            ("1e400", "10e399"),
            ("18446744073709551615", "18446744073709551615.000"),
        ];
        for (a, b) in eq {
            assert!(equal(a, b), "{a} == {b}");
            assert_eq!(order(a, b), Some(Ordering::Equal), "{a} == {b}");
        }
        let less = [
            ("9007199254740992", "9007199254740993"),
            ("-9223372036854775808", "-9223372036854775807"),
            ("9223372036854775807", "18446744073709551615"),
            ("-1", "0"),
            ("0", "0.0000001"),
            ("-1e400", "-1e399"),
            ("1e399", "1e400"),
            ("0.1", "0.10000000000000001"),
            ("99", "100"),
            ("-100", "-99"),
            ("1.5", "2"),
        ];
        for (a, b) in less {
            assert!(!equal(a, b), "{a} != {b}");
            assert_eq!(order(a, b), Some(Ordering::Less), "{a} < {b}");
            assert_eq!(order(b, a), Some(Ordering::Greater), "{b} > {a}");
        }
    }

    #[test]
    fn strings_compare_by_their_characters() {
        assert!(equal(r#""A\u00e9""#, "\"A\u{e9}\""));
        assert!(equal(r#""\ud83d\ude00""#, "\"\u{1f600}\""));
        assert!(equal(r#""a\/b\n""#, "\"a/b\\n\""));
        assert!(!equal(r#""\ud800""#, r#""\ud801""#));
        assert_eq!(order(r#""ERROR""#, r#""WARN""#), Some(Ordering::Less));
        assert_eq!(order(r#""\uffff""#, "\"\u{1f600}\""), Some(Ordering::Less));
        assert_eq!(order("\"1\"", "1"), None);
        assert!(!equal("\"1\"", "1"));
    }

    #[test]
    fn containers_compare_member_by_member() {
        assert!(equal(
            r#"{"a":1,"b":[1,"x"]}"#,
            r#"{ "b" : [1.0, "x"], "a": 1 }"#
        ));
        assert!(equal(r#"{"a":1,"a":2}"#, r#"{"a":2}"#));
        assert!(!equal(r#"{"a":1}"#, r#"{"a":1,"b":2}"#));
        assert!(!equal("[1,2]", "[2,1]"));
        assert!(equal("[]", "[ ]"));
        assert!(equal("[1e400]", "[10e399]"));
        assert_eq!(order("[1]", "[1]"), None);
        assert!(equal("null", "null") && equal("true", "true") && !equal("true", "false"));
    }

    #[test]
    fn depth_counts_nesting_outside_strings() {
        assert_eq!(depth("1"), 0);
        assert_eq!(depth(r#"[{"a":"[[["}]"#), 2);
        assert_eq!(depth(r#"["\"[", [[]]]"#), 3);
    }

    proptest! {
        /// On integers that fit 64 bits the order is the integers' order, whatever spelling.
        #[test]
        fn integer_order_is_exact(a in any::<i64>(), b in any::<i64>(), zeros in 0usize..3) {
            let spell = |n: i64| format!("{n}{}", if zeros > 0 { format!(".{}", "0".repeat(zeros)) } else { String::new() });
            prop_assert_eq!(order(&spell(a), &b.to_string()), Some(a.cmp(&b)));
            prop_assert_eq!(equal(&a.to_string(), &spell(b)), a == b);
        }

        /// Decimals order as their exact values: `m x 10^e` against `n x 10^f`.
        #[test]
        fn decimal_order_is_exact(m in -10_000i64..10_000, e in -6i32..6, n in -10_000i64..10_000, f in -6i32..6) {
            let text = |m: i64, e: i32| format!("{m}e{e}");
            // Scaled to a common exponent, the integers compare exactly.
            let scale = |m: i64, e: i32| i128::from(m) * 10i128.pow((e + 6) as u32);
            prop_assert_eq!(order(&text(m, e), &text(n, f)), Some(scale(m, e).cmp(&scale(n, f))));
        }
    }
}
