//! A JSON record as an ordered list of top-level fields whose values stay raw JSON text.
//!
//! Transforms only touch top-level fields (rename, drop, add, null removal) and read a few
//! values (filters, partition keys), so a record is parsed one level deep: keys are decoded,
//! values are borrowed slices of the input that are validated but not built into trees. Writing
//! the record back is then mostly copying, with nested objects and arrays minified so the output
//! is compact JSON. Field order is kept.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

/// A field value: a slice of the input, or JSON text we produced.
#[derive(Debug, Clone)]
pub enum Raw<'a> {
    /// Borrowed from the input record.
    Borrowed(&'a RawValue),
    /// Produced by a transform.
    Owned(Box<RawValue>),
}

impl Raw<'_> {
    /// The JSON text.
    pub fn get(&self) -> &str {
        match self {
            Raw::Borrowed(r) => r.get(),
            Raw::Owned(r) => r.get(),
        }
    }

    /// Whether the value is JSON `null`.
    pub fn is_null(&self) -> bool {
        self.get() == "null"
    }

    /// The value as a tree (only for the few values filters and partitions look at).
    pub fn value(&self) -> serde_json::Value {
        serde_json::from_str(self.get()).unwrap_or(serde_json::Value::Null)
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
    /// Parses one JSON object (surrounding whitespace allowed, nothing else).
    pub fn parse(data: &'a [u8]) -> Result<Fields<'a>, String> {
        if let Some(reason) = not_an_object_reason(data) {
            return Err(reason.to_owned());
        }
        let mut de = serde_json::Deserializer::from_slice(data);
        let fields = de
            .deserialize_map(FieldsVisitor)
            .map_err(|e| format!("invalid JSON: {e}"))?;
        de.end()
            .map_err(|e| format!("invalid JSON: trailing data ({e})"))?;
        Ok(fields)
    }

    /// The value of a top-level field (the last one, if the name repeats).
    pub fn get(&self, name: &str) -> Option<&Raw<'a>> {
        self.entries
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }

    /// The value at a dotted path (`a.b.c`): top-level lookup, then into nested objects.
    pub fn lookup(&self, path: &str) -> Option<serde_json::Value> {
        if let Some(raw) = self.get(path) {
            return Some(raw.value());
        }
        let (head, rest) = path.split_once('.')?;
        let mut v = self.get(head)?.value();
        for part in rest.split('.') {
            v = v.get_mut(part).map(serde_json::Value::take)?;
        }
        Some(v)
    }

    /// Removes every field called `name`; returns the last removed value.
    pub fn remove(&mut self, name: &str) -> Option<Raw<'a>> {
        let mut removed = None;
        self.entries.retain_mut(|(k, v)| {
            if k == name {
                removed = Some(v.clone());
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
            write_minified(out, v.get());
        }
        out.extend_from_slice(b"}\n");
    }
}

/// Appends `s` as a JSON string literal.
pub fn write_json_string(out: &mut Vec<u8>, s: &str) {
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
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
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
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

struct FieldsVisitor;

impl<'de> Visitor<'de> for FieldsVisitor {
    type Value = Fields<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields<'de>, A::Error> {
        let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(16));
        while let Some(key) = map.next_key::<Key<'de>>()? {
            let value: &'de RawValue = map.next_value()?;
            entries.push((key.0, Raw::Borrowed(value)));
        }
        Ok(Fields { entries })
    }
}

/// A key borrowed from the input when it has no escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> de::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

/// Owned raw JSON for a value we produce.
pub fn raw_from_value(v: &serde_json::Value) -> Raw<'static> {
    // A `Value` always serialises (its map keys are strings); `null` is the unreachable fallback.
    match serde_json::value::to_raw_value(v) {
        Ok(raw) => Raw::Owned(raw),
        Err(_) => Raw::Borrowed(RawValue::NULL),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            f.lookup("a.x"),
            Some(serde_json::json!([1, 2, {"s": "two  words"}]))
        );
        assert_eq!(f.lookup("a.y"), None);
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
        f.set(Cow::Borrowed("a"), raw_from_value(&serde_json::json!("x")));
        assert_eq!(line(&f), "{\"a\":\"x\",\"b\":2}\n");
        f.set(Cow::Borrowed("z"), raw_from_value(&serde_json::json!(null)));
        assert!(f.remove("b").is_some());
        assert_eq!(line(&f), "{\"a\":\"x\",\"z\":null}\n");
    }
}
