//! A local HTTP/1.1 file server with fault modes, for download (ingester) tests.
//!
//! It is written on raw TCP on purpose: a well-behaved HTTP library will not send a body that
//! disagrees with its `Content-Length` or cut a response in the middle, and those are exactly
//! the faults a downloader must survive. Each response closes its connection.
//!
//! Serve bytes with [`HttpServer::serve`] under a [`Resource`]: normal, chunked (no length),
//! truncated, cut once (then healthy, for `Range` resume), wrong `Content-Length`, an error
//! status, a slow trickle, an error status for one range only; `Range`/`If-Range` support can be
//! switched off (`If-Match` that fails is a 412); redirect chains come from
//! [`HttpServer::redirect`]. [`Resource::generated`] serves content of any length made on the
//! fly from a seed ([`Generated`]), never held whole. Every request is recorded for assertions.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// How a resource misbehaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpFault {
    /// Serve it properly.
    None,
    /// Answer with this status and a short text body.
    Status(u16),
    /// Announce the full length, send only `at` bytes, close.
    Truncate {
        /// Bytes sent before the cut.
        at: usize,
    },
    /// Like `Truncate`, but only for the first request; later requests are served properly.
    CutOnce {
        /// Bytes sent before the cut.
        at: usize,
    },
    /// Announce `claimed` as `Content-Length` but send the real body, then close.
    WrongLength {
        /// The announced length.
        claimed: u64,
    },
    /// Send the first `after` bytes of every response at once, then pause `pause` before the
    /// rest (a source that stalls at a known point of each request: deterministic deadlines).
    StallAfter {
        /// Bytes sent before the pause.
        after: usize,
        /// The pause.
        pause: Duration,
    },
    /// Send `chunk` bytes every `delay`.
    Trickle {
        /// Bytes per write.
        chunk: usize,
        /// Pause between writes.
        delay: Duration,
    },
    /// Answer `status` to a ranged request starting at byte `start`; serve the rest properly
    /// (a source that fails for one range).
    RangeStatus {
        /// First byte of the range that fails.
        start: u64,
        /// The status it gets.
        status: u16,
    },
}

/// Content made on the fly from a seed: pseudo-random (incompressible) bytes of any length,
/// the same for the same seed, never held whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Generated {
    /// Bytes.
    pub len: u64,
    /// What they are made from.
    pub seed: u64,
}

impl Generated {
    /// Fills `buf` with the bytes at `offset..offset + buf.len()`.
    pub fn fill(&self, offset: u64, buf: &mut [u8]) {
        let mut pos = offset;
        let mut i = 0;
        while i < buf.len() {
            let word = self.word(pos / 8).to_le_bytes();
            let from = (pos % 8) as usize;
            let n = (8 - from).min(buf.len() - i);
            buf[i..i + n].copy_from_slice(&word[from..from + n]);
            i += n;
            pos += n as u64;
        }
    }

    /// The bytes at `offset..offset + len`.
    pub fn bytes(&self, offset: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len];
        self.fill(offset, &mut v);
        v
    }

    /// SHA-256 (hex) of the whole content, computed in chunks.
    pub fn sha256(&self) -> String {
        use sha2::Digest;
        let mut hasher = sha2::Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut offset = 0u64;
        while offset < self.len {
            let n = (self.len - offset).min(buf.len() as u64) as usize;
            self.fill(offset, &mut buf[..n]);
            hasher.update(&buf[..n]);
            offset += n as u64;
        }
        hex::encode(hasher.finalize())
    }

    /// The 64-bit word number `i` (splitmix64 of the seed and `i`).
    fn word(&self, i: u64) -> u64 {
        let mut z = self
            .seed
            .wrapping_add(i.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// Something the server serves at a path.
#[derive(Debug, Clone)]
pub struct Resource {
    /// The content.
    pub body: Bytes,
    /// Misbehaviour.
    pub fault: HttpFault,
    /// Advertise and honour `Range` (and `If-Range`).
    pub ranges: bool,
    /// Send the body chunked, without `Content-Length`.
    pub chunked: bool,
    /// `ETag` header value (quoted), if any.
    pub etag: Option<String>,
    /// `Last-Modified` header value, if any.
    pub last_modified: Option<String>,
    /// `Content-Type` header value.
    pub content_type: String,
    /// A header every request must carry with this value (name lower-case, value), else 401.
    pub required_header: Option<(String, String)>,
    /// Content made on the fly instead of `body` (see [`Resource::generated`]).
    pub generated: Option<Generated>,
}

impl Resource {
    /// A well-behaved resource with `Range` support and a strong ETag.
    pub fn new(body: impl Into<Bytes>) -> Self {
        let body = body.into();
        let etag = format!("\"len-{}-{:08x}\"", body.len(), quick_hash(&body));
        Resource {
            body,
            fault: HttpFault::None,
            ranges: true,
            chunked: false,
            etag: Some(etag),
            last_modified: Some("Wed, 01 Jan 2025 00:00:00 GMT".to_owned()),
            content_type: "application/octet-stream".to_owned(),
            required_header: None,
            generated: None,
        }
    }

    /// A well-behaved resource (`Range` support, a strong ETag naming the length and seed) of
    /// `len` bytes made on the fly from `seed` ([`Generated`]): large content without holding
    /// it.
    pub fn generated(len: u64, seed: u64) -> Self {
        let mut r = Resource::new(Bytes::new());
        r.etag = Some(format!("\"gen-{len}-{seed:x}\""));
        r.generated = Some(Generated { len, seed });
        r
    }

    /// Without an `ETag` (a source whose only validator is `Last-Modified`).
    pub fn no_etag(mut self) -> Self {
        self.etag = None;
        self
    }

    /// With this `Last-Modified`.
    pub fn last_modified(mut self, value: &str) -> Self {
        self.last_modified = Some(value.to_owned());
        self
    }

    /// The content's length.
    pub fn len(&self) -> u64 {
        self.generated.map_or(self.body.len() as u64, |g| g.len)
    }

    /// Whether the content is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// With a fault.
    pub fn fault(mut self, fault: HttpFault) -> Self {
        self.fault = fault;
        self
    }

    /// Without `Range` support.
    pub fn no_ranges(mut self) -> Self {
        self.ranges = false;
        self
    }

    /// Chunked transfer, unknown length.
    pub fn chunked(mut self) -> Self {
        self.chunked = true;
        self
    }

    /// Served only to requests carrying header `name` with `value` (a source that needs a
    /// credential); others get 401.
    pub fn require_header(mut self, name: &str, value: &str) -> Self {
        self.required_header = Some((name.to_ascii_lowercase(), value.to_owned()));
        self
    }

    /// With this content type.
    pub fn content_type(mut self, ct: &str) -> Self {
        self.content_type = ct.to_owned();
        self
    }
}

fn quick_hash(data: &[u8]) -> u32 {
    // FNV-1a over a sample: only needs to tell test bodies apart.
    let mut h: u32 = 0x811c_9dc5;
    for &b in data.iter().step_by((data.len() / 4096).max(1)) {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// One request the server saw.
#[derive(Debug, Clone)]
pub struct Seen {
    /// Method.
    pub method: String,
    /// Path (with query).
    pub path: String,
    /// Headers, names lower-cased.
    pub headers: HashMap<String, String>,
}

#[derive(Debug, Default)]
struct State {
    resources: HashMap<String, Resource>,
    redirects: HashMap<String, (u16, String)>,
    seen: Vec<Seen>,
    served: HashMap<String, u64>,
}

/// The running server; stops when dropped.
#[derive(Debug)]
pub struct HttpServer {
    /// Where it listens (always 127.0.0.1).
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    task: JoinHandle<()>,
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl HttpServer {
    /// Starts on a free loopback port.
    pub async fn start() -> HttpServer {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .expect("bind the HTTP test server");
        let addr = listener.local_addr().expect("local addr");
        let state = Arc::new(Mutex::new(State::default()));
        let st = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let st = st.clone();
                tokio::spawn(async move {
                    let _ = serve_one(stream, st).await;
                });
            }
        });
        HttpServer { addr, state, task }
    }

    /// `http://127.0.0.1:port{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Serves `resource` at `path`.
    pub fn serve(&self, path: &str, resource: Resource) {
        self.lock().resources.insert(path.to_owned(), resource);
    }

    /// Answers `path` with a redirect (`status` 301/302/303/307/308) to `location`.
    pub fn redirect(&self, path: &str, status: u16, location: &str) {
        self.lock()
            .redirects
            .insert(path.to_owned(), (status, location.to_owned()));
    }

    /// A chain of `hops` redirects ending at `target`; returns the first path.
    pub fn redirect_chain(&self, name: &str, hops: usize, target: &str) -> String {
        let mut next = target.to_owned();
        for i in (0..hops).rev() {
            let path = format!("/redirect/{name}/{i}");
            self.redirect(&path, 302, &next);
            next = path;
        }
        next
    }

    /// Every request seen so far.
    pub fn requests(&self) -> Vec<Seen> {
        self.lock().seen.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

async fn serve_one(mut stream: TcpStream, state: Arc<Mutex<State>>) -> std::io::Result<()> {
    // Read the request head.
    let mut head = Vec::with_capacity(1024);
    let mut byte = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut byte).await?;
        if n == 0 || head.len() > 64 * 1024 {
            return Ok(());
        }
        head.extend_from_slice(&byte[..n]);
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let mut lines = text.split("\r\n");
    let mut first = lines.next().unwrap_or_default().split(' ');
    let method = first.next().unwrap_or_default().to_owned();
    let path = first.next().unwrap_or_default().to_owned();
    let headers: HashMap<String, String> = lines
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();

    let (resource, redirect, nth) = {
        let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
        st.seen.push(Seen {
            method: method.clone(),
            path: path.clone(),
            headers: headers.clone(),
        });
        // Resources are matched on the path alone; the query is recorded, not routed on.
        let route = path.split('?').next().unwrap_or_default().to_owned();
        let count = st.served.entry(route.clone()).or_insert(0);
        *count += 1;
        let nth = *count;
        (
            st.resources.get(&route).cloned(),
            st.redirects.get(&route).cloned(),
            nth,
        )
    };

    if let Some((status, location)) = redirect {
        let resp = format!(
            "HTTP/1.1 {status} Redirect\r\nLocation: {location}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        stream.write_all(resp.as_bytes()).await?;
        return stream.shutdown().await;
    }
    let Some(res) = resource else {
        return simple(&mut stream, 404, "not found").await;
    };
    if let Some((name, value)) = &res.required_header
        && headers.get(name) != Some(value)
    {
        return simple(&mut stream, 401, "unauthorized").await;
    }
    if let HttpFault::Status(code) = res.fault {
        return simple(&mut stream, code, "injected status").await;
    }
    if let Some(want) = headers.get("if-match")
        && want != "*"
        && Some(want) != res.etag.as_ref()
    {
        return simple(&mut stream, 412, "precondition failed").await;
    }

    // Range handling.
    let total = res.len();
    let mut start = 0u64;
    let mut end = total; // exclusive
    let mut partial = false;
    if res.ranges
        && let Some(range) = headers.get("range")
    {
        let validator_ok = match headers.get("if-range") {
            None => true,
            Some(v) => Some(v) == res.etag.as_ref() || Some(v) == res.last_modified.as_ref(),
        };
        if validator_ok {
            match parse_range(range, total) {
                Some((s, e)) => {
                    start = s;
                    end = e;
                    partial = true;
                }
                None => {
                    let resp = format!(
                        "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{total}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    );
                    stream.write_all(resp.as_bytes()).await?;
                    return stream.shutdown().await;
                }
            }
        }
    }
    if let HttpFault::RangeStatus { start: at, status } = res.fault
        && partial
        && start == at
    {
        return simple(&mut stream, status, "injected status for this range").await;
    }
    let len = (end - start) as usize;
    let piece_at = |from: usize, n: usize| -> Bytes {
        match res.generated {
            Some(g) => Bytes::from(g.bytes(start + from as u64, n)),
            None => res
                .body
                .slice(start as usize + from..start as usize + from + n),
        }
    };

    let mut head = String::new();
    if partial {
        head.push_str("HTTP/1.1 206 Partial Content\r\n");
        head.push_str(&format!(
            "Content-Range: bytes {start}-{}/{total}\r\n",
            end.saturating_sub(1)
        ));
    } else {
        head.push_str("HTTP/1.1 200 OK\r\n");
    }
    head.push_str(&format!("Content-Type: {}\r\n", res.content_type));
    if res.ranges {
        head.push_str("Accept-Ranges: bytes\r\n");
    }
    if let Some(etag) = &res.etag {
        head.push_str(&format!("ETag: {etag}\r\n"));
    }
    if let Some(lm) = &res.last_modified {
        head.push_str(&format!("Last-Modified: {lm}\r\n"));
    }
    if res.chunked {
        head.push_str("Transfer-Encoding: chunked\r\n");
    } else {
        let claimed = match res.fault {
            HttpFault::WrongLength { claimed } => claimed,
            _ => len as u64,
        };
        head.push_str(&format!("Content-Length: {claimed}\r\n"));
    }
    head.push_str("Connection: close\r\n\r\n");
    stream.write_all(head.as_bytes()).await?;
    if method == "HEAD" {
        return stream.shutdown().await;
    }

    let cut = match res.fault {
        HttpFault::Truncate { at } => Some(at),
        HttpFault::CutOnce { at } if nth == 1 => Some(at),
        _ => None,
    };
    let (chunk, delay) = match res.fault {
        HttpFault::Trickle { chunk, delay } => (chunk.max(1), Some(delay)),
        _ => (256 * 1024, None),
    };
    let limit = cut.unwrap_or(len).min(len);
    let mut sent = 0;
    while sent < limit {
        let n = chunk.min(limit - sent);
        let piece = piece_at(sent, n);
        if res.chunked {
            stream.write_all(format!("{n:x}\r\n").as_bytes()).await?;
            stream.write_all(&piece).await?;
            stream.write_all(b"\r\n").await?;
        } else {
            stream.write_all(&piece).await?;
        }
        sent += n;
        if let HttpFault::StallAfter { after, pause } = res.fault
            && sent >= after
            && sent - n < after
        {
            stream.flush().await?;
            tokio::time::sleep(pause).await;
        }
        if let Some(d) = delay {
            stream.flush().await?;
            tokio::time::sleep(d).await;
        }
    }
    if cut.is_some() {
        // Reset rather than close cleanly: the client must see an error, not an early end.
        stream.flush().await?;
        stream.set_zero_linger()?;
        drop(stream);
        return Ok(());
    }
    if res.chunked {
        stream.write_all(b"0\r\n\r\n").await?;
    }
    stream.shutdown().await
}

async fn simple(stream: &mut TcpStream, status: u16, text: &str) -> std::io::Result<()> {
    let resp = format!(
        "HTTP/1.1 {status} Status\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
        text.len()
    );
    stream.write_all(resp.as_bytes()).await?;
    stream.shutdown().await
}

/// Parses `bytes=a-b`, `bytes=a-` and `bytes=-n` into `[start, end)`.
fn parse_range(value: &str, total: u64) -> Option<(u64, u64)> {
    let spec = value.strip_prefix("bytes=")?.trim();
    if spec.contains(',') {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let (start, end) = if a.is_empty() {
        let n: u64 = b.parse().ok()?;
        (total.saturating_sub(n), total)
    } else {
        let s: u64 = a.parse().ok()?;
        let e = if b.is_empty() {
            total
        } else {
            b.parse::<u64>().ok()?.saturating_add(1).min(total)
        };
        (s, e)
    };
    (start < end || (start == total && total == 0)).then_some((start, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse_like_rfc_9110() {
        assert_eq!(parse_range("bytes=0-9", 100), Some((0, 10)));
        assert_eq!(parse_range("bytes=90-", 100), Some((90, 100)));
        assert_eq!(parse_range("bytes=-10", 100), Some((90, 100)));
        assert_eq!(parse_range("bytes=95-200", 100), Some((95, 100)));
        assert_eq!(parse_range("bytes=100-", 100), None);
        assert_eq!(parse_range("bytes=0-1,5-6", 100), None);
        assert_eq!(parse_range("items=0-1", 100), None);
    }

    #[test]
    fn generated_content_is_the_same_from_any_offset() {
        let g = Generated { len: 1000, seed: 7 };
        let whole = g.bytes(0, 1000);
        for (at, n) in [(0usize, 1usize), (3, 17), (8, 8), (999, 1), (500, 500)] {
            assert_eq!(g.bytes(at as u64, n), whole[at..at + n], "{at}+{n}");
        }
        assert_eq!(g.sha256(), crate::data::sha256_hex(&whole));
        assert_ne!(Generated { len: 1000, seed: 8 }.bytes(0, 1000), whole);
    }
}
