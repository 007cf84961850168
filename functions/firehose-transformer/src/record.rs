//! A JSON record as an ordered list of top-level fields whose values stay raw JSON text.
//!
//! Transforms only touch top-level fields (rename, drop, add, null removal) and read a few
//! values (filters, partition keys), so a record is parsed one level deep by a small scanner:
//! keys are decoded, values are borrowed slices of the input that are validated (the full JSON
//! grammar, UTF-8, nesting depth) but not built into trees. The scanner notes whether a nested
//! value holds insignificant whitespace, so writing the record back is a plain copy for compact
//! input and a minifying copy otherwise. Field order is kept. The scanner lives in [`scan`]; this
//! module holds what it builds ([`Raw`], [`Fields`]) and how they are written back.

mod scan;

use std::borrow::Cow;

use serde_json::value::RawValue;

use self::scan::Scanner;

/// A field value: valid JSON text borrowed from the input record or from the configuration
/// (constants, time stamps), and whether it is already compact.
#[derive(Debug, Clone, Copy)]
pub struct Raw<'a> {
    json: &'a str,
    /// No whitespace outside strings.
    compact: bool,
}

impl<'a> Raw<'a> {
    /// Borrows compact JSON text we produced (constants, time stamps).
    pub fn compact(raw: &'a RawValue) -> Raw<'a> {
        Raw {
            json: raw.get(),
            compact: true,
        }
    }

    /// Borrows a JSON string literal this crate wrote itself, compact and escaped (a time
    /// stamp written per record).
    pub(crate) fn written(json: &'a str) -> Raw<'a> {
        Raw {
            json,
            compact: true,
        }
    }

    /// The JSON text.
    pub fn get(&self) -> &'a str {
        self.json
    }

    /// Whether the value is JSON `null`.
    pub fn is_null(&self) -> bool {
        self.json == "null"
    }

    /// The contents of a JSON string without escapes, borrowed; `None` for anything else.
    pub fn plain_str(&self) -> Option<&'a str> {
        let inner = self.json.strip_prefix('"')?.strip_suffix('"')?;
        (!inner.contains('\\')).then_some(inner)
    }

    /// The value as a tree (only for the few values filters and partitions look at).
    pub fn value(&self) -> serde_json::Value {
        serde_json::from_str(self.json).unwrap_or(serde_json::Value::Null)
    }

    /// Appends the value as compact JSON.
    fn write_compact(&self, out: &mut Vec<u8>) {
        if self.compact {
            out.extend_from_slice(self.json.as_bytes());
        } else {
            write_minified(out, self.json);
        }
    }
}

/// The top-level fields of one JSON object, in order.
#[derive(Debug, Clone, Default)]
pub struct Fields<'a> {
    /// `(name, value)` pairs.
    pub entries: Vec<(Cow<'a, str>, Raw<'a>)>,
}

/// Why bytes are not a JSON object (never quoting the content).
pub fn not_an_object_reason(data: &[u8]) -> Option<&'static str> {
    match data.iter().find(|b| !b.is_ascii_whitespace()) {
        None => Some("empty record"),
        Some(b'{') => None,
        Some(b'[') => Some("JSON array, expected an object"),
        Some(b'"') => Some("JSON string, expected an object"),
        Some(b'-' | b'0'..=b'9') => Some("JSON number, expected an object"),
        Some(b't' | b'f') => Some("JSON boolean, expected an object"),
        Some(b'n') => Some("JSON null, expected an object"),
        Some(_) => Some("not JSON"),
    }
}

impl<'a> Fields<'a> {
    /// Parses one JSON object (surrounding whitespace allowed, nothing else). The reason for a
    /// refusal names the problem and its byte offset, never the content.
    pub fn parse(data: &'a [u8]) -> Result<Fields<'a>, String> {
        if let Some(reason) = not_an_object_reason(data) {
            return Err(reason.to_owned());
        }
        let text = crate::text::utf8(data)
            .map_err(|e| format!("invalid JSON: not UTF-8 at byte {}", e.valid_up_to()))?;
        Scanner::new(text)
            .object()
            .map_err(|(what, at)| format!("invalid JSON: {what} at byte {at}"))
    }

    /// The record as [`Fields::write_line`] would write it, when that is a plain copy: the
    /// object's bytes within `data` (`Ok(None)` when writing it changes something: whitespace
    /// inside, escapes in a top-level key). Refuses what [`Fields::parse`] refuses, with the
    /// same reasons; nothing is collected, so an untransformed record costs one pass.
    pub fn compact_span(data: &[u8]) -> Result<Option<std::ops::Range<usize>>, String> {
        if let Some(reason) = not_an_object_reason(data) {
            return Err(reason.to_owned());
        }
        let text = crate::text::utf8(data)
            .map_err(|e| format!("invalid JSON: not UTF-8 at byte {}", e.valid_up_to()))?;
        let (start, end, compact) = Scanner::new(text)
            .object_span()
            .map_err(|(what, at)| format!("invalid JSON: {what} at byte {at}"))?;
        Ok(compact.then_some(start..end))
    }

    /// The value of a top-level field (the last one, if the name repeats).
    pub fn get(&self, name: &str) -> Option<&Raw<'a>> {
        self.entries
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }

    /// The value at a dotted path (`a.b.c`): a top-level field of that exact name, else the
    /// first part's value, then into nested objects, each read one level deep where it lies
    /// (siblings of any depth or size are stepped over, not parsed into trees).
    pub fn lookup(&self, path: &str) -> Option<Raw<'a>> {
        if let Some(raw) = self.get(path) {
            return Some(*raw);
        }
        let (head, rest) = path.split_once('.')?;
        let mut v = *self.get(head)?;
        for part in rest.split('.') {
            v = *members(v.json)?.get(part)?;
        }
        Some(v)
    }

    /// Removes every field called `name`; returns the last removed value.
    pub fn remove(&mut self, name: &str) -> Option<Raw<'a>> {
        let mut removed = None;
        self.entries.retain_mut(|(k, v)| {
            if k == name {
                removed = Some(*v);
                false
            } else {
                true
            }
        });
        removed
    }

    /// Sets a field: replaces it in place when present, appends it otherwise.
    pub fn set(&mut self, name: Cow<'a, str>, value: Raw<'a>) {
        if let Some(pos) = self.entries.iter().position(|(k, _)| *k == name) {
            self.entries[pos].1 = value;
            // A repeated name keeps only its first position.
            let mut seen = false;
            self.entries.retain(|(k, _)| {
                if *k != name {
                    return true;
                }
                let keep = !seen;
                seen = true;
                keep
            });
        } else {
            self.entries.push((name, value));
        }
    }

    /// Appends compact JSON and one newline to `out`.
    pub fn write_line(&self, out: &mut Vec<u8>) {
        out.push(b'{');
        for (i, (k, v)) in self.entries.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_json_string(out, k);
            out.push(b':');
            v.write_compact(out);
        }
        out.extend_from_slice(b"}\n");
    }
}

/// The members of a JSON object text (`None` when it is not one).
pub fn members(json: &str) -> Option<Fields<'_>> {
    if !json.starts_with('{') {
        return None;
    }
    Scanner::new(json).object().ok()
}

/// The elements of a JSON array text (`None` when it is not one).
pub fn elements(json: &str) -> Option<Vec<Raw<'_>>> {
    if !json.starts_with('[') {
        return None;
    }
    Scanner::new(json).array().ok()
}

/// Appends `s` as a JSON string literal.
pub fn write_json_string(out: &mut Vec<u8>, s: &str) {
    if crate::text::is_plain(s.as_bytes()) {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        // serde_json's escaping cannot fail when writing a str into a Vec.
        let _ = serde_json::to_writer(&mut *out, s);
    }
}

/// Appends `s` as a JSON string literal to a `String`.
pub fn push_json_string(out: &mut String, s: &str) {
    if crate::text::is_plain(s.as_bytes()) {
        out.push('"');
        out.push_str(s);
        out.push('"');
    } else {
        // Serialising a str cannot fail.
        out.push_str(&serde_json::to_string(s).unwrap_or_default());
    }
}

/// Appends valid JSON text without insignificant whitespace.
pub fn write_minified(out: &mut Vec<u8>, json: &str) {
    let bytes = json.as_bytes();
    if !matches!(bytes.first(), Some(b'{' | b'[')) {
        // Scalars carry no surrounding whitespace (the parser trimmed it).
        out.extend_from_slice(bytes);
        return;
    }
    out.reserve(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'"' {
            // Copy the whole string literal at once: jump from escape to escape.
            let mut j = i + 1;
            loop {
                match memchr::memchr2(b'"', b'\\', &bytes[j..]) {
                    Some(k) if bytes[j + k] == b'\\' => j += k + 2,
                    Some(k) => {
                        j += k + 1;
                        break;
                    }
                    None => {
                        j = bytes.len();
                        break;
                    }
                }
            }
            let j = j.min(bytes.len());
            out.extend_from_slice(&bytes[i..j]);
            i = j;
        } else {
            if !matches!(b, b' ' | b'\n' | b'\r' | b'\t') {
                out.push(b);
            }
            i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The reference: serde_json reading the object one level deep, values as raw text.
    fn oracle(data: &[u8]) -> Option<Vec<(String, String)>> {
        struct Members(Vec<(String, String)>);
        impl<'de> serde::Deserialize<'de> for Members {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl<'de> serde::de::Visitor<'de> for V {
                    type Value = Members;
                    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        f.write_str("an object")
                    }
                    fn visit_map<A: serde::de::MapAccess<'de>>(
                        self,
                        mut map: A,
                    ) -> Result<Members, A::Error> {
                        let mut out = Vec::new();
                        while let Some(k) = map.next_key::<String>()? {
                            let v: &RawValue = map.next_value()?;
                            out.push((k, v.get().to_owned()));
                        }
                        Ok(Members(out))
                    }
                }
                d.deserialize_map(V)
            }
        }
        serde_json::from_slice::<Members>(data).ok().map(|m| m.0)
    }

    fn ours(data: &[u8]) -> Option<Vec<(String, String)>> {
        let f = Fields::parse(data).ok()?;
        Some(
            f.entries
                .iter()
                .map(|(k, v)| {
                    let mut min = Vec::new();
                    write_minified(&mut min, v.json);
                    assert_eq!(v.compact, min == v.json.as_bytes(), "compact flag of {v:?}");
                    (k.to_string(), v.get().to_owned())
                })
                .collect(),
        )
    }

    /// JSON objects with random whitespace, then random byte edits.
    fn json_like() -> impl Strategy<Value = Vec<u8>> {
        let leaf = prop_oneof![
            Just("null".to_owned()),
            Just("true".to_owned()),
            Just("false".to_owned()),
            any::<i64>().prop_map(|n| n.to_string()),
            any::<f64>().prop_map(|x| serde_json::json!(x).to_string()),
            "-?(0|[1-9][0-9]{0,3})(\\.[0-9]{1,3})?([eE][-+]?[0-9]{1,3})?",
            // Near misses: leading zeros, bare signs and dots, cut literals.
            "[-+0-9.eE]{1,5}",
            "(nul|tru|fals|nulll|truex|NaN|Infinity)",
            any::<String>().prop_map(|s| serde_json::json!(s).to_string()),
            r#""([a-z \\"/]|\\["\\/bfnrtux]|\\u[0-9a-fA-F]{4}|\\ud83d\\ude00|\\udc00){0,6}""#,
        ];
        let ws = prop_oneof![Just(""), Just(" "), Just("\n\t"), Just("\r ")];
        let value = leaf.prop_recursive(5, 40, 6, move |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..5)
                    .prop_map(|v| format!("[{}]", v.join(" , "))),
                proptest::collection::vec((r#"[a-z"\\]{0,4}"#, inner), 0..5).prop_map(|v| {
                    let members: Vec<String> = v
                        .iter()
                        .map(|(k, v)| format!("{}:{v}", serde_json::json!(k)))
                        .collect();
                    format!("{{{}}}", members.join(","))
                }),
            ]
        });
        let object = proptest::collection::vec(("[a-z_]{0,6}", value, ws), 0..6).prop_map(|v| {
            let members: Vec<String> = v
                .iter()
                .map(|(k, v, w)| format!("{w}\"{k}\"{w}:{w}{v}{w}"))
                .collect();
            format!(" {{{}}}\n", members.join(","))
        });
        let edit = (any::<prop::sample::Index>(), any::<u8>(), 0u8..4);
        (object, proptest::collection::vec(edit, 0..3)).prop_map(|(text, edits)| {
            let mut bytes = text.into_bytes();
            crate::edits::apply(&mut bytes, edits, b"{}[]\":,\\ ");
            bytes
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]

        /// The copy path refuses what the parser refuses, with the same reason, and a copy is
        /// byte for byte what writing the parsed record gives.
        #[test]
        fn compact_span_agrees_with_parse_and_write(data in json_like()) {
            let full = Fields::parse(&data).map(|f| line(&f).into_bytes());
            match Fields::compact_span(&data) {
                Err(reason) => prop_assert_eq!(Err(reason), full),
                Ok(None) => prop_assert!(full.is_ok()),
                Ok(Some(object)) => {
                    let mut copy = data[object].to_vec();
                    copy.push(b'\n');
                    prop_assert_eq!(Ok(copy), full);
                }
            }
        }

        /// The scanner accepts exactly what serde_json accepts, with the same members.
        #[test]
        fn scanner_agrees_with_serde_json(data in json_like()) {
            prop_assert_eq!(ours(&data), oracle(&data), "input {:?}", String::from_utf8_lossy(&data));
        }
    }

    #[test]
    fn scanner_nests_and_decodes_keys_like_serde_json() {
        for depth in [126, 127, 128, 129, 1000] {
            let doc = format!("{{\"a\":{}{}}}", "[".repeat(depth), "]".repeat(depth));
            assert_eq!(
                ours(doc.as_bytes()),
                oracle(doc.as_bytes()),
                "depth {depth}"
            );
        }
        let escaped = br#"{"k\u00e9y":1,"lone\ud800":2}"#;
        assert_eq!(ours(escaped), oracle(escaped));
        let key = ours(br#"{"k\u00e9y":"\ud800"}"#).map(|m| m[0].0.clone());
        assert_eq!(key.as_deref(), Some("k\u{e9}y"));
    }

    fn line(f: &Fields<'_>) -> String {
        let mut out = Vec::new();
        f.write_line(&mut out);
        String::from_utf8(out).expect("utf8")
    }

    #[test]
    fn parses_one_level_and_writes_compact_json_in_order() {
        let input =
            br#"  {"b": 1, "a" : {"x": [1, 2, {"s": "two  words"}]}, "c\"q": "v\n", "n": null}  "#;
        let f = Fields::parse(input).expect("object");
        assert_eq!(f.entries.len(), 4);
        assert!(f.get("n").expect("n").is_null());
        assert_eq!(
            line(&f),
            "{\"b\":1,\"a\":{\"x\":[1,2,{\"s\":\"two  words\"}]},\"c\\\"q\":\"v\\n\",\"n\":null}\n"
        );
        assert_eq!(
            f.lookup("a.x").map(|v| v.value()),
            Some(serde_json::json!([1, 2, {"s": "two  words"}]))
        );
        assert!(f.lookup("a.y").is_none());
    }

    #[test]
    fn minify_keeps_strings_and_drops_whitespace_elsewhere() {
        let cases = [
            (r#"{ "a" : [ 1 , 2 ] }"#, r#"{"a":[1,2]}"#),
            (
                r#"{"s":"x \" y \\","t":"\\"}"#,
                r#"{"s":"x \" y \\","t":"\\"}"#,
            ),
            ("[\n\t\"a b\" ,\r\n {}]", r#"["a b",{}]"#),
            (
                r#"{"u":"\u00e9 \ud83d\ude00"}"#,
                r#"{"u":"\u00e9 \ud83d\ude00"}"#,
            ),
            ("\"keep  spaces\"", "\"keep  spaces\""),
        ];
        for (input, want) in cases {
            let mut out = Vec::new();
            write_minified(&mut out, input);
            assert_eq!(String::from_utf8(out).expect("utf8"), want, "{input}");
        }
    }

    #[test]
    fn compact_span_copies_only_what_writing_leaves_alone() {
        let span = |d: &[u8]| Fields::compact_span(d).map(|r| r.map(|r| d[r].to_vec()));
        assert_eq!(
            span(b" {\"a\":[1,{\"b\":\"x y\"}]}\n"),
            Ok(Some(b"{\"a\":[1,{\"b\":\"x y\"}]}".to_vec()))
        );
        assert_eq!(span(b"{}"), Ok(Some(b"{}".to_vec())));
        for spaced in [
            &b"{ }"[..],
            b"{\"a\": 1}",
            b"{\"a\":[1, 2]}",
            b"{\"a\":1 ,\"b\":2}",
            b"{\"\\u0061\":1}",
        ] {
            assert_eq!(
                span(spaced),
                Ok(None),
                "{}",
                String::from_utf8_lossy(spaced)
            );
        }
        assert!(span(b"{\"a\":1}x").is_err());
    }

    #[test]
    fn rejects_non_objects_without_quoting_them() {
        let cases: &[(&[u8], &str)] = &[
            (b"", "empty record"),
            (b"  \n", "empty record"),
            (b"[1,2]", "JSON array"),
            (b"\"secret\"", "JSON string"),
            (b"42", "JSON number"),
            (b"true", "JSON boolean"),
            (b"null", "JSON null"),
            (b"secret text", "not JSON"),
            (b"{\"a\":1", "invalid JSON"),
            (b"{\"a\":1}{\"b\":2}", "trailing data"),
            (b"{\"a\":secret}", "invalid JSON"),
        ];
        for (input, want) in cases {
            let err = Fields::parse(input).expect_err("not an object");
            assert!(err.contains(want), "{err} for {input:?}");
            assert!(!err.contains("secret"), "reason quotes content: {err}");
        }
    }

    #[test]
    fn set_and_remove_keep_order_and_uniqueness() {
        let mut f = Fields::parse(br#"{"a":1,"b":2,"a":3}"#).expect("object");
        assert_eq!(f.get("a").map(Raw::get), Some("3"));
        let x = serde_json::value::to_raw_value("x").expect("raw");
        f.set(Cow::Borrowed("a"), Raw::compact(&x));
        assert_eq!(line(&f), "{\"a\":\"x\",\"b\":2}\n");
        f.set(Cow::Borrowed("z"), Raw::compact(RawValue::NULL));
        assert!(f.remove("b").is_some());
        assert_eq!(line(&f), "{\"a\":\"x\",\"z\":null}\n");
    }
}
