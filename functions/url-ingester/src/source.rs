//! The HTTP(S) source: a download read chunk by chunk, continued with `Range` after a cut.
//!
//! A non-2xx status fails with the status in the message. When the connection drops in the
//! middle of the body and the server advertised `Accept-Ranges: bytes` and a validator (ETag
//! or Last-Modified), the download continues from the last byte received with
//! `Range: bytes=N-` and `If-Range: <validator>`; a server that answers anything but a `206`
//! starting at `N` means the resource changed, and the download fails instead of mixing two
//! versions. A body shorter than its `Content-Length` is a cut too; a longer one cannot be
//! read past the announced length.
//!
//! For ranged ingestion, [`probe`] asks for `bytes=0-0` to learn whether the source serves
//! ranges, its length and its validator, and [`Source::open_range`] reads one bounded range
//! `bytes=a-b` pinned to that validator (`If-Range`, and `If-Match` for an ETag): a source that
//! changed answers 412 or the whole resource, and either is an error naming the change. Every
//! request, ranged or not, and every redirect hop passes the SSRF guard.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use reqwest::StatusCode;
use reqwest::header::{self, HeaderMap};
use tracing::warn;
use tributary::Error;

/// Reconnections allowed per invocation after a cut.
const MAX_RESUMES: u32 = 5;

/// Redirects followed per request.
const MAX_REDIRECTS: usize = 5;

/// How requests and their redirects are checked: every hop's URL passes the SSRF guard before
/// it is connected to (with a proxy, the host's addresses too, since the proxy resolves it),
/// and the caller's headers go only to the origin the caller named, unless the request says
/// `forward_headers_on_redirect: true`.
#[derive(Debug, Clone)]
pub struct Hops {
    /// The SSRF policy.
    pub policy: Arc<crate::guard::Policy>,
    /// Whether requests go through `SOURCE_PROXY`.
    pub proxied: bool,
    /// The origin of the URL the caller asked for: its headers are for it.
    pub origin: url::Origin,
    /// Send the caller's headers to other origins too.
    pub forward_headers: bool,
}

/// The URL without its query and fragment: safe to log (signed URLs carry secrets there).
pub fn redact(url: &reqwest::Url) -> String {
    let mut u = url.clone();
    if u.query().is_some() {
        u.set_query(Some("redacted"));
    }
    u.set_fragment(None);
    let _ = u.set_password(None);
    let _ = u.set_username("");
    u.to_string()
}

/// A download that cannot succeed as asked (a 4xx, a refused host, a resource that changed):
/// the request must change first.
fn source_error(url: &reqwest::Url, reason: impl Into<String>) -> Error {
    Error::InvalidInput {
        what: format!("download of {}", redact(url)),
        reason: reason.into(),
    }
}

/// A download that failed in a way that can pass (5xx, 429, a reset, a timeout): retryable.
fn unavailable(
    url: &reqwest::Url,
    reason: impl Into<String>,
    source: Option<reqwest::Error>,
) -> Error {
    Error::SourceUnavailable {
        what: format!("download of {}", redact(url)),
        reason: reason.into(),
        source: source.map(|e| Box::new(e) as tributary::error::Cause),
    }
}

/// A failed status as an error: 5xx, 429 and 408 can pass, the rest cannot.
fn status_error(url: &reqwest::Url, status: StatusCode, reason: String) -> Error {
    if status.is_server_error()
        || status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
    {
        unavailable(url, reason, None)
    } else {
        source_error(url, reason)
    }
}

/// A request that got no response: refused by the policy (for good), or a connection, DNS or
/// timeout failure (retryable).
fn send_error(url: &reqwest::Url, e: reqwest::Error) -> Error {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(c) = cur {
        if let Some(refused) = c.downcast_ref::<crate::guard::Refused>() {
            return source_error(url, refused.0.clone());
        }
        cur = c.source();
    }
    unavailable(url, error_chain(&e), Some(e))
}

/// An open download.
#[derive(Debug)]
pub struct Source {
    client: reqwest::Client,
    hops: Hops,
    url: reqwest::Url,
    headers: HeaderMap,
    resp: reqwest::Response,
    /// The resource's full size, when the server said.
    pub total: Option<u64>,
    /// The resource's `ETag`.
    pub etag: Option<String>,
    /// The resource's `Last-Modified`.
    pub last_modified: Option<String>,
    /// Whether the server supports byte ranges.
    pub accept_ranges: bool,
    /// `Content-Type` of the resource.
    pub content_type: Option<String>,
    offset: u64,
    /// For a bounded range, its last byte (inclusive).
    end: Option<u64>,
    /// The validator every continuation is pinned to (a range's, from the plan).
    pinned: Option<String>,
    resumes: u32,
}

fn header(h: &HeaderMap, name: header::HeaderName) -> Option<String> {
    h.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

impl Source {
    /// Starts the download at byte `start` (0 for the whole resource). With `start > 0`,
    /// `validator` (an ETag or Last-Modified from earlier) is sent as `If-Range`.
    pub async fn open(
        client: reqwest::Client,
        url: reqwest::Url,
        headers: HeaderMap,
        hops: Hops,
        start: u64,
        validator: Option<&str>,
    ) -> Result<Source, Error> {
        let ask = Ask {
            start,
            end: None,
            validator,
            pin: false,
        };
        let (resp, total) = request(&client, &hops, &url, &headers, ask).await?;
        Ok(Source::from_response(
            client, hops, headers, resp, total, start, None, None,
        ))
    }

    /// Reads bytes `start..=end` of a resource whose validator (strong ETag or Last-Modified,
    /// from [`probe`]) is `validator`: sent as `If-Range`, and as `If-Match` when it is an
    /// ETag, on this request and on every continuation after a cut. The answer must be a `206`
    /// for exactly that range of a resource of `total` bytes carrying the same ETag; a source
    /// that changed is an `InvalidInput` error saying so.
    #[allow(clippy::too_many_arguments)]
    pub async fn open_range(
        client: reqwest::Client,
        url: reqwest::Url,
        headers: HeaderMap,
        hops: Hops,
        start: u64,
        end: u64,
        total: u64,
        validator: &str,
    ) -> Result<Source, Error> {
        let ask = Ask {
            start,
            end: Some(end),
            validator: Some(validator),
            pin: true,
        };
        let (resp, announced) = request(&client, &hops, &url, &headers, ask).await?;
        let final_url = resp.url().clone();
        if announced.is_some_and(|t| t != total) {
            return Err(source_error(
                &final_url,
                format!(
                    "the source changed since it was planned: it now has {} bytes, the plan {total}",
                    announced.unwrap_or_default()
                ),
            ));
        }
        let etag = header(resp.headers(), header::ETAG);
        if is_etag(validator)
            && let Some(etag) = &etag
            && etag != validator
        {
            return Err(source_error(
                &final_url,
                format!(
                    "the source changed since it was planned: ETag {etag}, the plan {validator}"
                ),
            ));
        }
        Ok(Source::from_response(
            client,
            hops,
            headers,
            resp,
            Some(total),
            start,
            Some(end),
            Some(validator.to_owned()),
        ))
    }

    #[allow(clippy::too_many_arguments)]
    fn from_response(
        client: reqwest::Client,
        hops: Hops,
        headers: HeaderMap,
        resp: reqwest::Response,
        total: Option<u64>,
        start: u64,
        end: Option<u64>,
        pinned: Option<String>,
    ) -> Source {
        let h = resp.headers();
        let accept_ranges = h
            .get(header::ACCEPT_RANGES)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("bytes"))
            || resp.status() == StatusCode::PARTIAL_CONTENT;
        Source {
            etag: header(h, header::ETAG),
            last_modified: header(h, header::LAST_MODIFIED),
            content_type: header(h, header::CONTENT_TYPE),
            accept_ranges,
            total,
            url: resp.url().clone(),
            client,
            hops,
            headers,
            resp,
            offset: start,
            end,
            pinned,
            resumes: 0,
        }
    }

    /// The URL actually read (after redirects).
    pub fn url(&self) -> &reqwest::Url {
        &self.url
    }

    /// Times the download was continued after a cut.
    pub fn resumes(&self) -> u32 {
        self.resumes
    }

    /// The validator to send as `If-Range`: a strong ETag, else Last-Modified.
    pub fn validator(&self) -> Option<&str> {
        if let Some(pinned) = &self.pinned {
            return Some(pinned);
        }
        self.etag
            .as_deref()
            .filter(|e| !e.starts_with("W/"))
            .or(self.last_modified.as_deref())
    }

    /// Bytes read so far, counting from the resource's first byte.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The next chunk of the body, `None` at its end.
    pub async fn next(&mut self) -> Result<Option<Bytes>, Error> {
        loop {
            let cut = match self.resp.chunk().await {
                Ok(Some(chunk)) => {
                    self.offset += chunk.len() as u64;
                    return Ok(Some(chunk));
                }
                Ok(None) => match self.end.map(|e| e + 1).or(self.total) {
                    Some(total) if self.offset < total => {
                        format!("body ended at byte {} of {total}", self.offset)
                    }
                    _ => return Ok(None),
                },
                Err(e) => format!(
                    "connection lost after {} bytes: {}",
                    self.offset,
                    error_chain(&e)
                ),
            };
            let validator = self.validator().map(str::to_owned);
            if !self.accept_ranges || validator.is_none() {
                return Err(unavailable(
                    &self.url,
                    format!(
                        "{cut}; the server does not support resuming (no Accept-Ranges: bytes and validator)"
                    ),
                    None,
                ));
            }
            if self.resumes >= MAX_RESUMES {
                return Err(unavailable(
                    &self.url,
                    format!("{cut}; gave up after {MAX_RESUMES} resumes"),
                    None,
                ));
            }
            self.resumes += 1;
            warn!(url = %redact(&self.url), offset = self.offset, attempt = self.resumes, reason = %cut,
                "download interrupted; continuing with a Range request");
            tokio::time::sleep(Duration::from_millis(200 * u64::from(self.resumes))).await;
            let ask = Ask {
                start: self.offset,
                end: self.end,
                validator: validator.as_deref(),
                pin: self.pinned.is_some(),
            };
            let (resp, _) =
                request(&self.client, &self.hops, &self.url, &self.headers, ask).await?;
            self.resp = resp;
        }
    }
}

/// What one GET asks for: the whole resource (`start` 0, no `end`), or a range.
#[derive(Debug, Clone, Copy)]
struct Ask<'a> {
    /// First byte.
    start: u64,
    /// Last byte (inclusive) of a bounded range; `None` reads to the end.
    end: Option<u64>,
    /// Sent as `If-Range` with a range.
    validator: Option<&'a str>,
    /// Send an ETag validator as `If-Match` too (a range that must come from one version).
    pin: bool,
}

impl Ask<'_> {
    fn ranged(&self) -> bool {
        self.start > 0 || self.end.is_some()
    }

    /// `a-b` or `a-`, as in the `Range` header.
    fn spec(&self) -> String {
        match self.end {
            Some(end) => format!("{}-{end}", self.start),
            None => format!("{}-", self.start),
        }
    }
}

/// Whether a validator is an ETag (quoted, possibly weak) rather than a date.
fn is_etag(v: &str) -> bool {
    v.starts_with('"') || v.starts_with("W/")
}

/// One GET, following redirects (each hop checked, see [`Hops`]); the final response,
/// whatever its status.
async fn send(
    client: &reqwest::Client,
    hops: &Hops,
    url: &reqwest::Url,
    headers: &HeaderMap,
    ask: Ask<'_>,
) -> Result<reqwest::Response, Error> {
    let mut url = url.clone();
    let mut redirects = 0usize;
    loop {
        if hops.proxied {
            hops.policy
                .check_url_resolved(&url)
                .await
                .map_err(|why| source_error(&url, why))?;
        }
        let mut req = client.get(url.clone());
        if hops.forward_headers || url.origin() == hops.origin {
            req = req.headers(headers.clone());
        }
        if ask.ranged() {
            req = req.header(header::RANGE, format!("bytes={}", ask.spec()));
            if let Some(v) = ask.validator {
                req = req.header(header::IF_RANGE, v);
                if ask.pin && is_etag(v) {
                    req = req.header(header::IF_MATCH, v);
                }
            }
        }
        let resp = req.send().await.map_err(|e| send_error(&url, e))?;
        if !resp.status().is_redirection() {
            return Ok(resp);
        }
        let Some(location) = header(resp.headers(), header::LOCATION) else {
            return Ok(resp);
        };
        if redirects >= MAX_REDIRECTS {
            return Err(source_error(
                &url,
                format!("more than {MAX_REDIRECTS} redirects"),
            ));
        }
        redirects += 1;
        let next = url
            .join(&location)
            .map_err(|e| source_error(&url, format!("redirect to an unusable Location: {e}")))?;
        hops.policy
            .check_url(&next)
            .map_err(|why| source_error(&url, format!("redirect refused: {why}")))?;
        url = next;
    }
}

/// One GET (see [`send`]) whose answer must be what `ask` asked for: a `2xx` for the whole
/// resource, or a `206` for exactly the range asked. Returns the response and the resource's
/// total size, when known.
async fn request(
    client: &reqwest::Client,
    hops: &Hops,
    url: &reqwest::Url,
    headers: &HeaderMap,
    ask: Ask<'_>,
) -> Result<(reqwest::Response, Option<u64>), Error> {
    let resp = send(client, hops, url, headers, ask).await?;
    let status = resp.status();
    let final_url = resp.url().clone();
    let start = ask.start;
    if ask.ranged() {
        let spec = ask.spec();
        if status == StatusCode::OK {
            let why = if ask.pin {
                "the source changed since it was planned (it sent the whole resource instead of the range)"
            } else {
                "the server sent the whole resource (it changed or ignores Range)"
            };
            return Err(source_error(
                &final_url,
                format!("asked for bytes {spec}: {why}"),
            ));
        }
        if status == StatusCode::PRECONDITION_FAILED {
            return Err(source_error(
                &final_url,
                format!(
                    "asked for bytes {spec}: the source changed since it was planned (HTTP 412: If-Match {} failed)",
                    ask.validator.unwrap_or_default()
                ),
            ));
        }
        if status != StatusCode::PARTIAL_CONTENT {
            return Err(status_error(
                &final_url,
                status,
                format!("HTTP {status} when asking for bytes {spec}"),
            ));
        }
        let range = header(resp.headers(), header::CONTENT_RANGE).unwrap_or_default();
        let (first, last, total) = parse_content_range(&range).ok_or_else(|| {
            source_error(
                &final_url,
                format!("206 with an unusable Content-Range {range:?}"),
            )
        })?;
        if first != start {
            return Err(source_error(
                &final_url,
                format!("asked for byte {start}, the server sent from byte {first}"),
            ));
        }
        if let Some(end) = ask.end
            && last != end
        {
            return Err(source_error(
                &final_url,
                format!("asked for bytes {spec}, the server sent {first}-{last}"),
            ));
        }
        return Ok((resp, total));
    }
    if !status.is_success() {
        return Err(status_error(&final_url, status, format!("HTTP {status}")));
    }
    // For a 200 the body's announced length is the resource's size (absent when chunked).
    let total = resp.content_length();
    Ok((resp, total))
}

/// What a source says about itself when asked for its first byte ([`probe`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    /// The URL that answered (after redirects).
    pub url: reqwest::Url,
    /// Whether it served the range (`206`): it supports byte ranges.
    pub ranges: bool,
    /// The resource's size, when announced.
    pub total: Option<u64>,
    /// Its `ETag`.
    pub etag: Option<String>,
    /// Its `Last-Modified`.
    pub last_modified: Option<String>,
    /// Its `Content-Type`.
    pub content_type: Option<String>,
}

impl Probe {
    /// The validator a range is pinned to: a strong ETag, else Last-Modified.
    pub fn validator(&self) -> Option<&str> {
        self.etag
            .as_deref()
            .filter(|e| !e.starts_with("W/"))
            .or(self.last_modified.as_deref())
    }
}

/// Asks the source for `bytes=0-0` (through the guard, redirects checked) and reads what it
/// says about itself, never its body: a `206` means it serves ranges (its `Content-Range`
/// gives the size), a `200` that it does not (its `Content-Length`, if any, is the size), a
/// `416` that it is empty. Other statuses are errors as for a download.
pub async fn probe(
    client: &reqwest::Client,
    hops: &Hops,
    url: &reqwest::Url,
    headers: &HeaderMap,
) -> Result<Probe, Error> {
    let ask = Ask {
        start: 0,
        end: Some(0),
        validator: None,
        pin: false,
    };
    let resp = send(client, hops, url, headers, ask).await?;
    let status = resp.status();
    let final_url = resp.url().clone();
    let h = resp.headers();
    let range = header(h, header::CONTENT_RANGE);
    let (ranges, total) = match status {
        StatusCode::PARTIAL_CONTENT => {
            let (first, _, total) =
                range
                    .as_deref()
                    .and_then(parse_content_range)
                    .ok_or_else(|| {
                        source_error(
                            &final_url,
                            format!("206 with an unusable Content-Range {range:?}"),
                        )
                    })?;
            if first != 0 {
                return Err(source_error(
                    &final_url,
                    format!("asked for byte 0, the server sent from byte {first}"),
                ));
            }
            (true, total)
        }
        StatusCode::RANGE_NOT_SATISFIABLE => {
            // `bytes */0`: an empty resource (nothing to split).
            let total = range
                .as_deref()
                .and_then(|r| r.trim().strip_prefix("bytes */"))
                .and_then(|t| t.parse().ok());
            (false, total)
        }
        s if s.is_success() => (false, resp.content_length()),
        s => {
            return Err(status_error(
                &final_url,
                s,
                format!("HTTP {s} when probing for ranges"),
            ));
        }
    };
    // The body (one byte, or the whole resource from a server that ignores Range) is not
    // read: dropping the response closes the connection.
    Ok(Probe {
        url: final_url,
        ranges,
        total,
        etag: header(h, header::ETAG),
        last_modified: header(h, header::LAST_MODIFIED),
        content_type: header(h, header::CONTENT_TYPE),
    })
}

/// `bytes a-b/total` -> `(a, b, Some(total))`; `total` may be `*`.
fn parse_content_range(v: &str) -> Option<(u64, u64, Option<u64>)> {
    let rest = v.trim().strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let (first, last) = range.split_once('-')?;
    let total = if total == "*" {
        None
    } else {
        Some(total.parse().ok()?)
    };
    Some((first.parse().ok()?, last.parse().ok()?, total))
}

/// An error and its causes, on one line.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let text = c.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range_and_redaction() {
        assert_eq!(
            parse_content_range("bytes 100-199/1000"),
            Some((100, 199, Some(1000)))
        );
        assert_eq!(parse_content_range("bytes 5-9/*"), Some((5, 9, None)));
        assert_eq!(parse_content_range("items 1-2/3"), None);
        let u =
            reqwest::Url::parse("https://user:pw@example.com/a/b.csv?X-Amz-Signature=secret#frag")
                .expect("url");
        let shown = redact(&u);
        assert!(
            !shown.contains("secret") && !shown.contains("pw") && !shown.contains("user"),
            "{shown}"
        );
        assert!(shown.starts_with("https://example.com/a/b.csv"), "{shown}");
    }
}
