//! The HTTP(S) source: a download read chunk by chunk, continued with `Range` after a cut.
//!
//! A non-2xx status fails with the status in the message. When the connection drops in the
//! middle of the body and the server advertised `Accept-Ranges: bytes` and a validator (ETag
//! or Last-Modified), the download continues from the last byte received with
//! `Range: bytes=N-` and `If-Range: <validator>`; a server that answers anything but a `206`
//! starting at `N` means the resource changed, and the download fails instead of mixing two
//! versions. A body shorter than its `Content-Length` is a cut too; a longer one cannot be
//! read past the announced length.

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
        let (resp, total) = request(&client, &hops, &url, &headers, start, validator).await?;
        let h = resp.headers();
        let accept_ranges = h
            .get(header::ACCEPT_RANGES)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("bytes"))
            || resp.status() == StatusCode::PARTIAL_CONTENT;
        Ok(Source {
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
            resumes: 0,
        })
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
        self.etag
            .as_deref()
            .filter(|e| !e.starts_with("W/"))
            .or(self.last_modified.as_deref())
    }

    /// The next chunk of the body, `None` at its end.
    pub async fn next(&mut self) -> Result<Option<Bytes>, Error> {
        loop {
            let cut = match self.resp.chunk().await {
                Ok(Some(chunk)) => {
                    self.offset += chunk.len() as u64;
                    return Ok(Some(chunk));
                }
                Ok(None) => match self.total {
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
            let (resp, _) = request(
                &self.client,
                &self.hops,
                &self.url,
                &self.headers,
                self.offset,
                validator.as_deref(),
            )
            .await?;
            self.resp = resp;
        }
    }
}

/// One GET, following redirects (each hop checked, see [`Hops`]); for `start > 0` a ranged
/// one that must come back as `206` from `start`.
async fn request(
    client: &reqwest::Client,
    hops: &Hops,
    url: &reqwest::Url,
    headers: &HeaderMap,
    start: u64,
    validator: Option<&str>,
) -> Result<(reqwest::Response, Option<u64>), Error> {
    let mut url = url.clone();
    let mut redirects = 0usize;
    let resp = loop {
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
        if start > 0 {
            req = req.header(header::RANGE, format!("bytes={start}-"));
            if let Some(v) = validator {
                req = req.header(header::IF_RANGE, v);
            }
        }
        let resp = req.send().await.map_err(|e| send_error(&url, e))?;
        if !resp.status().is_redirection() {
            break resp;
        }
        let Some(location) = header(resp.headers(), header::LOCATION) else {
            break resp;
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
    };
    let status = resp.status();
    let final_url = resp.url().clone();
    if start > 0 {
        if status == StatusCode::OK {
            return Err(source_error(
                &final_url,
                format!(
                    "asked to continue at byte {start}, the server sent the whole resource (it changed or ignores Range)"
                ),
            ));
        }
        if status != StatusCode::PARTIAL_CONTENT {
            return Err(status_error(
                &final_url,
                status,
                format!("HTTP {status} when continuing at byte {start}"),
            ));
        }
        let range = header(resp.headers(), header::CONTENT_RANGE).unwrap_or_default();
        let (first, total) = parse_content_range(&range).ok_or_else(|| {
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
        return Ok((resp, total));
    }
    if !status.is_success() {
        return Err(status_error(&final_url, status, format!("HTTP {status}")));
    }
    // For a 200 the body's announced length is the resource's size (absent when chunked).
    let total = resp.content_length();
    Ok((resp, total))
}

/// `bytes a-b/total` -> `(a, Some(total))`; `total` may be `*`.
fn parse_content_range(v: &str) -> Option<(u64, Option<u64>)> {
    let rest = v.trim().strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let (first, _) = range.split_once('-')?;
    let total = if total == "*" {
        None
    } else {
        Some(total.parse().ok()?)
    };
    Some((first.parse().ok()?, total))
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
            Some((100, Some(1000)))
        );
        assert_eq!(parse_content_range("bytes 5-9/*"), Some((5, None)));
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
