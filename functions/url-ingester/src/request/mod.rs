//! The request and every check made of it, in one place.
//!
//! [`IngestRequest`] is the invocation payload; `Plan::new` validates it against the
//! configuration (URL and SSRF policy, bucket name, key, part size, concurrency, headers, and
//! on resume that the checkpoint is for this object) into the `Plan` an ingestion follows;
//! `Plan::total` checks what the source announces. The checkpoint of a resume is checked in
//! [`resume`]: as a document, against the writer configuration, then against S3, all before
//! any byte moves.

pub mod resume;

use std::collections::BTreeMap;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};
use tributary::{Error, WriterConfig};

use crate::checkpoint::Checkpoint;
use crate::config::Config;
use crate::secrets::{FIELD, SecretHeaders};
use crate::source::redact;

const MIB: u64 = 1024 * 1024;

/// The longest S3 object key, in UTF-8 bytes.
pub const MAX_KEY_BYTES: usize = 1024;

/// The invocation payload.
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestRequest {
    /// What to download (http or https).
    pub url: String,
    /// Target bucket (default `DEFAULT_BUCKET`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket: Option<String>,
    /// Target key (default `DEFAULT_PREFIX` + the URL's file name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Part size in MiB, 5..=5120.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub part_size_mib: Option<u64>,
    /// Parts uploaded at once, 1..=64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<usize>,
    /// SHA-256 the content must have (hex); checked before the object is completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_sha256: Option<String>,
    /// Size the content must have; checked before the object is completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_size: Option<u64>,
    /// `Content-Type` to store (default: the source's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// Request headers for the source (e.g. `Authorization`); never logged. They go only to
    /// the URL's origin (scheme, host, port): a redirect elsewhere is followed without them.
    /// `Host` is refused. They are part of the request, so they are stored with it (in
    /// continuation payloads, in the on-failure queue): credentials belong in
    /// `headers_secret_arn`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<BTreeMap<String, String>>,
    /// A Secrets Manager secret (ARN or name) whose `SecretString` is a JSON object of more
    /// request headers, read on every leg and used exactly like `headers`. Only this name
    /// travels with a continuation, never the values. A header named both here and in
    /// `headers` is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers_secret_arn: Option<String>,
    /// Send `headers` (and the secret's) on after a redirect to another origin too (default
    /// false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forward_headers_on_redirect: Option<bool>,
    /// Refuse to overwrite an existing object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub if_none_match: Option<bool>,
    /// Continue an earlier, interrupted ingestion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume: Option<Checkpoint>,
}

impl std::fmt::Debug for IngestRequest {
    // Hand-written: header values (credentials) never reach a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let url = reqwest::Url::parse(&self.url)
            .map(|u| redact(&u))
            .unwrap_or_else(|_| "<invalid URL>".to_owned());
        f.debug_struct("IngestRequest")
            .field("url", &url)
            .field("bucket", &self.bucket)
            .field("key", &self.key)
            .field(
                "headers",
                &self.headers.as_ref().map(|h| h.keys().collect::<Vec<_>>()),
            )
            .field("headers_secret_arn", &self.headers_secret_arn)
            .field("resume", &self.resume.is_some())
            .finish_non_exhaustive()
    }
}

impl IngestRequest {
    /// The request in an invocation payload: a payload that is not a JSON object is
    /// `InvalidEvent`, an object that is not a request (a typo in a field name, a wrong type)
    /// `InvalidInput`.
    pub fn from_payload(payload: serde_json::Value) -> Result<IngestRequest, Error> {
        if !payload.is_object() {
            return Err(Error::invalid_event(
                "an ingest request object such as {\"url\": \"https://...\"}",
                format!("the payload is {}", json_kind(&payload)),
            ));
        }
        serde_json::from_value(payload).map_err(|e| Error::invalid_input("the ingest request", e))
    }
}

/// A validated request: what one leg of an ingestion does.
#[derive(Debug)]
pub(crate) struct Plan {
    /// What to download: the request's URL, or on resume where the redirects led last time.
    pub url: reqwest::Url,
    pub bucket: String,
    pub key: String,
    pub part_size: usize,
    pub concurrency: usize,
    /// The caller's headers (and, after [`Plan::add_secret_headers`], the secret's), values
    /// marked sensitive.
    pub headers: HeaderMap,
    /// The origin the caller named: its headers are for it, on every leg.
    pub origin: url::Origin,
    /// The checkpoint this leg continues from (its target checked to be this object).
    pub resume: Option<Checkpoint>,
}

impl Plan {
    /// Validates `req` against `config`. Errors are `InvalidInput` naming the field.
    pub fn new(config: &Config, req: &IngestRequest) -> Result<Plan, Error> {
        let bad = |what: &str, why: String| Error::invalid_input(what.to_owned(), why);
        let url = reqwest::Url::parse(req.url.trim())
            .map_err(|e| bad("url", format!("not a URL: {e}")))?;
        config.policy.check_url(&url).map_err(|e| bad("url", e))?;
        let bucket = req
            .bucket
            .clone()
            .or_else(|| config.default_bucket.clone())
            .ok_or_else(|| {
                bad(
                    "bucket",
                    "not in the request and DEFAULT_BUCKET is not set".into(),
                )
            })?;
        check_bucket_name(&bucket).map_err(|why| {
            bad(
                if req.bucket.is_some() {
                    "bucket"
                } else {
                    "bucket (DEFAULT_BUCKET)"
                },
                format!("{bucket:?} {why}"),
            )
        })?;
        let key = match &req.key {
            Some(k) if !k.is_empty() && !k.ends_with('/') => k.clone(),
            Some(k) => return Err(bad("key", format!("{k:?} is not an object key"))),
            None => format!("{}{}", config.default_prefix, file_name(&url)),
        };
        if key.len() > MAX_KEY_BYTES {
            return Err(bad(
                "key",
                format!(
                    "is {} bytes; S3 keys are at most {MAX_KEY_BYTES} bytes (UTF-8)",
                    key.len()
                ),
            ));
        }
        let part_mib = req.part_size_mib.unwrap_or(config.part_size_mib);
        if !(5..=5120).contains(&part_mib) {
            return Err(bad(
                "part_size_mib",
                format!("{part_mib} is outside 5..=5120"),
            ));
        }
        let concurrency = req.concurrency.unwrap_or(config.concurrency);
        if !(1..=64).contains(&concurrency) {
            return Err(bad(
                "concurrency",
                format!("{concurrency} is outside 1..=64"),
            ));
        }
        if let Some(h) = &req.expected_sha256
            && (h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            return Err(bad("expected_sha256", "must be 64 hex digits".into()));
        }
        let headers = headers(req)?;
        if let Some(id) = &req.headers_secret_arn {
            crate::secrets::check_id(id)?;
        }
        if let Some(cp) = &req.resume {
            resume::check_target(cp, &bucket, &key)?;
        }
        // The caller's headers are for the origin the caller named, on every leg.
        let origin = url.origin();
        let url = match &req.resume {
            // Continue from where the redirects led last time.
            Some(cp) => {
                reqwest::Url::parse(&cp.url).map_err(|e| bad("resume.url", e.to_string()))?
            }
            None => url,
        };
        config
            .policy
            .check_url(&url)
            .map_err(|e| bad("resume.url", e))?;
        Ok(Plan {
            url,
            bucket,
            key,
            part_size: (part_mib * MIB) as usize,
            concurrency,
            headers,
            origin,
            resume: req.resume.clone(),
        })
    }

    /// Adds the headers read from the request's `headers_secret_arn`, checked as `headers`
    /// are. A name the request's `headers` also give (in any case) is refused, naming the
    /// header, never a value: which of two credentials was meant is not ours to guess.
    pub fn add_secret_headers(&mut self, secret: &SecretHeaders) -> Result<(), Error> {
        let mut added = HeaderMap::new();
        for (name, value) in secret.iter() {
            let (n, v) = header(FIELD, &format!("the secret's header {name:?}"), name, value)?;
            if self.headers.contains_key(&n) {
                return Err(Error::invalid_input(
                    FIELD,
                    format!(
                        "header {name:?} is given both in headers and in the secret: name it in one place only"
                    ),
                ));
            }
            if added.contains_key(&n) {
                return Err(Error::invalid_input(
                    FIELD,
                    format!("header {name:?} is given twice in the secret (names ignore case)"),
                ));
            }
            added.insert(n, v);
        }
        self.headers.extend(added);
        Ok(())
    }

    /// How the upload is cut. On every leg by the same rule: a resumed upload by the size the
    /// first leg knew (the checkpoint's total), so the part sizes the checkpoint lists hold.
    pub fn writer_config(&self, req: &IngestRequest, config: &Config) -> WriterConfig {
        WriterConfig {
            part_size: self.part_size,
            concurrency: self.concurrency,
            checksum: config.checksum,
            size_hint: self.resume.as_ref().and_then(|c| c.total_bytes),
            if_none_match: req.if_none_match.unwrap_or(false),
            ..WriterConfig::default()
        }
    }

    /// The content's size from what the source announces (`announced`) and, on resume, what
    /// the checkpoint recorded, which must agree; it must also be the request's
    /// `expected_size` when both are known.
    pub fn total(&self, req: &IngestRequest, announced: Option<u64>) -> Result<Option<u64>, Error> {
        let total = match &self.resume {
            Some(c) => {
                if let (Some(announced), Some(recorded)) = (announced, c.total_bytes)
                    && announced != recorded
                {
                    return Err(Error::invalid_input(
                        "resume.total_bytes",
                        format!("is {recorded}, the source now announces {announced} bytes"),
                    ));
                }
                c.total_bytes.or(announced)
            }
            None => announced,
        };
        if let (Some(expected), Some(total)) = (req.expected_size, total)
            && expected != total
        {
            return Err(Error::Integrity {
                what: redact(&self.url),
                reason: format!("expected_size is {expected} bytes, the source announces {total}"),
            });
        }
        Ok(total)
    }
}

/// The request's headers, checked: valid names and values, no `Host`; values are marked
/// sensitive and never echoed (they may be credentials).
fn headers(req: &IngestRequest) -> Result<HeaderMap, Error> {
    let mut headers = HeaderMap::new();
    for (name, value) in req.headers.iter().flatten() {
        let (n, v) = header("headers", &format!("{name:?}"), name, value)?;
        headers.insert(n, v);
    }
    Ok(headers)
}

/// One header, checked: a valid name other than `Host`, a valid value, marked sensitive.
/// Errors name `field` and the header (`shown`), never the value.
fn header(
    field: &str,
    shown: &str,
    name: &str,
    value: &str,
) -> Result<(HeaderName, HeaderValue), Error> {
    let bad = |why: String| Error::invalid_input(field.to_owned(), why);
    let n = HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| bad(format!("{shown} is not a valid header name")))?;
    if n == reqwest::header::HOST {
        return Err(bad("Host may not be set: it comes from the URL".into()));
    }
    let mut v = HeaderValue::from_str(value)
        .map_err(|_| bad(format!("the value of {shown} is not a valid header value")))?;
    v.set_sensitive(true);
    Ok((n, v))
}

/// S3's general-purpose bucket naming rules: 3 to 63 characters of lowercase letters, digits,
/// `.` and `-`, starting and ending with a letter or digit, no `..`, not an IPv4 address.
pub fn check_bucket_name(name: &str) -> Result<(), String> {
    let b = name.as_bytes();
    if !(3..=63).contains(&b.len()) {
        return Err(format!(
            "is {} characters; bucket names have 3 to 63",
            b.len()
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '.' || *c == '-'))
    {
        return Err(format!(
            "holds {c:?}; bucket names are lowercase letters, digits, '.' and '-'"
        ));
    }
    let alnum = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    if !b.first().is_some_and(alnum) || !b.last().is_some_and(alnum) {
        return Err("must begin and end with a letter or digit".into());
    }
    if name.contains("..") {
        return Err("holds \"..\"".into());
    }
    if name.parse::<std::net::Ipv4Addr>().is_ok() {
        return Err("is formatted as an IP address".into());
    }
    Ok(())
}

/// What kind of JSON value `v` is, for messages.
pub(crate) fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a JSON boolean",
        serde_json::Value::Number(_) => "a JSON number",
        serde_json::Value::String(_) => "a JSON string",
        serde_json::Value::Array(_) => "a JSON array",
        serde_json::Value::Object(_) => "a JSON object",
    }
}

/// The last path segment of a URL, percent-decoded and made safe as a key segment.
pub fn file_name(url: &reqwest::Url) -> String {
    let last = url
        .path_segments()
        .and_then(|mut s| s.next_back())
        .unwrap_or_default();
    let decoded = percent_encoding::percent_decode_str(last).decode_utf8_lossy();
    let cleaned: String = decoded
        .chars()
        .map(|c| {
            if c == '/' || c == '\\' || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect();
    match cleaned.trim() {
        "" | "." | ".." => format!("{}-download", url.host_str().unwrap_or("source")),
        name => name.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_from_urls() {
        let f = |u: &str| file_name(&reqwest::Url::parse(u).expect("url"));
        assert_eq!(
            f("https://x.org/data/trips%202024.csv?sig=1"),
            "trips 2024.csv"
        );
        assert_eq!(f("https://x.org/a/%2Fetc%2Fpasswd"), "_etc_passwd");
        assert_eq!(f("https://x.org/"), "x.org-download");
        assert_eq!(f("https://x.org/files/.."), "x.org-download");
        assert_eq!(f("https://x.org/%ED%83%9D%EC%8B%9C.csv"), "택시.csv");
    }

    #[test]
    fn request_debug_hides_headers_and_query() {
        let r = IngestRequest {
            url: "https://x.org/f.csv?X-Amz-Signature=topsecret".into(),
            headers: Some([("Authorization".to_owned(), "Bearer hunter2".to_owned())].into()),
            ..IngestRequest::default()
        };
        let shown = format!("{r:?}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("topsecret"),
            "{shown}"
        );
        assert!(shown.contains("Authorization"), "{shown}");
    }

    #[test]
    fn unknown_fields_are_rejected_by_name() {
        let err =
            serde_json::from_str::<IngestRequest>(r#"{"url":"https://x.org/a","buckett":"b"}"#)
                .expect_err("typo");
        assert!(err.to_string().contains("unknown field `buckett`"), "{err}");
    }
}
