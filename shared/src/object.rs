//! S3 object references and the decoding of keys found in S3 event notifications.
//!
//! S3 notifications carry keys URL-encoded in *form* style: a `+` is a space, and every other
//! special byte is percent-encoded (`=` arrives as `%3D`, a literal `+` as `%2B`, UTF-8 names as
//! their percent-encoded bytes). [`decode_event_key`] reverses exactly that and refuses what S3
//! would never send (a stray `%`, bytes that are not UTF-8) instead of guessing.

use std::fmt;

use crate::error::{Error, Result};

/// One S3 object, optionally pinned to a version and/or an ETag.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ObjectRef {
    /// Bucket name.
    pub bucket: String,
    /// Decoded key.
    pub key: String,
    /// Version id, when the bucket is versioned and the event said which.
    pub version_id: Option<String>,
    /// ETag (without quotes), when known; reads then require the object to still have it.
    pub etag: Option<String>,
}

impl ObjectRef {
    /// An unpinned reference.
    pub fn new(bucket: impl Into<String>, key: impl Into<String>) -> Self {
        ObjectRef {
            bucket: bucket.into(),
            key: key.into(),
            version_id: None,
            etag: None,
        }
    }

    /// Pins the reference to a version id (ignored when empty or `null`).
    pub fn with_version(mut self, version_id: Option<impl Into<String>>) -> Self {
        self.version_id = version_id
            .map(Into::into)
            .filter(|v: &String| !v.is_empty() && v != "null");
        self
    }

    /// Pins the reference to an ETag; surrounding quotes are removed.
    pub fn with_etag(mut self, etag: Option<impl Into<String>>) -> Self {
        self.etag = etag
            .map(Into::into)
            .map(|e: String| e.trim_matches('"').to_owned())
            .filter(|e| !e.is_empty());
        self
    }

    /// The last path segment of the key.
    pub fn file_name(&self) -> &str {
        self.key.rsplit('/').next().unwrap_or(&self.key)
    }
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.key)?;
        if let Some(v) = &self.version_id {
            write!(f, "?versionId={v}")?;
        }
        Ok(())
    }
}

/// Decodes a key from an S3 event notification: `+` becomes a space, then `%XX` escapes are
/// decoded, and the result must be UTF-8.
///
/// ```
/// use tributary::object::decode_event_key;
/// assert_eq!(decode_event_key("raw/taxi/year%3D2024/a+b%2Bc.csv").unwrap(),
///            "raw/taxi/year=2024/a b+c.csv");
/// ```
pub fn decode_event_key(raw: &str) -> Result<String> {
    let bad = |reason: String| Error::InvalidKey {
        key: raw.to_owned(),
        reason,
    };
    // Validate escapes first: `percent_decode` passes malformed ones through silently.
    let bytes = raw.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let ok = bytes.len() >= i + 3
                && bytes[i + 1].is_ascii_hexdigit()
                && bytes[i + 2].is_ascii_hexdigit();
            if !ok {
                return Err(bad(format!(
                    "invalid percent escape at byte {i} (expected %XX with two hex digits)"
                )));
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    let spaced = raw.replace('+', " ");
    let decoded = percent_encoding::percent_decode_str(&spaced)
        .decode_utf8()
        .map_err(|e| bad(format!("decoded bytes are not UTF-8: {e}")))?;
    if decoded.is_empty() {
        return Err(bad("empty key".to_owned()));
    }
    Ok(decoded.into_owned())
}

/// Encodes a key the way S3 event notifications carry it: form style, a space becomes `+`,
/// everything but ASCII letters, digits, `-_.~/` and `*` is percent-encoded. The inverse of
/// [`decode_event_key`].
///
/// ```
/// use tributary::object::encode_event_key;
/// assert_eq!(encode_event_key("raw/taxi/year=2024/a b+c.csv"), "raw/taxi/year%3D2024/a+b%2Bc.csv");
/// ```
pub fn encode_event_key(key: &str) -> String {
    const KEEP: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~')
        .remove(b'/')
        .remove(b'*')
        .remove(b' ');
    percent_encoding::utf8_percent_encode(key, KEEP)
        .to_string()
        .replace(' ', "+")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_round_trips() {
        for key in [
            "plain.csv",
            "a b+c.csv",
            "raw/year=2024/x y/%.csv",
            "raw/택시 데이터.csv",
        ] {
            let enc = encode_event_key(key);
            assert!(!enc.contains(' ') && !enc.contains('='), "{enc}");
            assert_eq!(decode_event_key(&enc).expect(key), key);
        }
        assert_eq!(
            encode_event_key("raw/택시 데이터.csv"),
            "raw/%ED%83%9D%EC%8B%9C+%EB%8D%B0%EC%9D%B4%ED%84%B0.csv"
        );
    }

    #[test]
    fn event_keys_decode_like_s3_encodes_them() {
        let cases: &[(&str, &str)] = &[
            ("plain.csv", "plain.csv"),
            ("a+b.csv", "a b.csv"),
            ("a%2Bb.csv", "a+b.csv"),
            ("raw/year%3D2024/", "raw/year=2024/"),
            (
                "raw/events/year%3D2024/month%3D01/x.gz",
                "raw/events/year=2024/month=01/x.gz",
            ),
            // "택시 데이터.csv" as S3 sends it
            (
                "raw/%ED%83%9D%EC%8B%9C+%EB%8D%B0%EC%9D%B4%ED%84%B0.csv",
                "raw/택시 데이터.csv",
            ),
            ("100%25+sure.csv", "100% sure.csv"),
            ("%2b%2B", "++"),
        ];
        for (raw, want) in cases {
            assert_eq!(decode_event_key(raw).expect(raw), *want, "decoding {raw}");
        }
    }

    #[test]
    fn malformed_event_keys_are_errors_naming_the_key() {
        for raw in ["50%.csv", "a%2", "a%zz.csv", "%C3%28.csv", "%FF", ""] {
            let err = decode_event_key(raw).expect_err(raw);
            assert_eq!(err.error_type(), "InvalidObjectKey");
            assert!(err.to_string().contains(&format!("{raw:?}")), "{err}");
        }
    }

    #[test]
    fn object_ref_pins_and_displays() {
        let o = ObjectRef::new("b", "raw/x/file.csv")
            .with_version(Some("null"))
            .with_etag(Some("\"abc\""));
        assert_eq!(o.version_id, None);
        assert_eq!(o.etag.as_deref(), Some("abc"));
        assert_eq!(o.file_name(), "file.csv");
        assert_eq!(o.to_string(), "s3://b/raw/x/file.csv");
        let v = o.with_version(Some("v1"));
        assert_eq!(v.to_string(), "s3://b/raw/x/file.csv?versionId=v1");
    }
}
