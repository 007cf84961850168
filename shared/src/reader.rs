//! The streaming S3 reader: GetObject as a byte stream, pinned, transparently decompressed.
//!
//! [`open`] issues GetObject requests that carry `versionId` and `If-Match` when the
//! [`ObjectRef`] has them, so an object replaced between the event and the read fails with
//! [`Error::PreconditionFailed`] instead of being read half old, half new. The body is never
//! buffered whole: it is an [`AsyncRead`] over the HTTP stream, decompressed on the fly:
//!
//! * gzip (every member of a multi-member file, as `cat a.gz b.gz` or Firehose produce),
//! * zstd (every frame),
//!
//! chosen by the key's extension (`.gz`, `.gzip`, `.zst`, `.zstd`) or, when the extension says
//! nothing, by the first bytes (gzip `1f 8b`, zstd `28 b5 2f fd`).
//!
//! One GetObject stream runs at the speed of one connection (and of one thread of the store),
//! slower than a converter on several cores decodes. So an object larger than one
//! [`ReadAhead::chunk`] is read as ranged GETs ([`ReadAhead`]): the first chunk streams while
//! the next ones are fetched whole, several at once, and the bytes are handed on in order.
//! The chunks after the first are pinned to the ETag (and version) the first response
//! carried, so they are bytes of the same object even when the event named no ETag; a chunk
//! whose body breaks off is fetched again. Memory is bounded by `ahead x chunk`.

use std::collections::VecDeque;
use std::future::Future;
use std::ops::Range;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use async_compression::tokio::bufread::{GzipDecoder, ZstdDecoder};
use tokio::io::{AsyncRead, AsyncReadExt, BufReader, ReadBuf};
use tokio::task::JoinHandle;

use crate::error::{Error, Result};
use crate::object::ObjectRef;
use crate::writer::retrying;

/// Size of the read buffer in front of the decompressors.
const READ_BUFFER: usize = 256 * 1024;

/// How many times a chunk is fetched before its failure is the read's.
const CHUNK_ATTEMPTS: u32 = 3;

/// First delay before a chunk is fetched again.
const CHUNK_RETRY_BASE: Duration = Duration::from_millis(100);

/// How an object is read: its first `chunk` bytes streamed by one GetObject, the rest as
/// ranged GetObjects of `chunk` bytes, up to `ahead` of them fetched at once ahead of the
/// reader from the time it has read half of the first chunk. `ahead == 0` reads the object
/// with one GetObject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadAhead {
    /// Bytes per ranged GET.
    pub chunk: u64,
    /// Ranged GETs in flight (and chunks held) at most.
    pub ahead: usize,
}

impl ReadAhead {
    /// Bytes per ranged GET by default: large enough that a store's cost per request stays
    /// small (measured on SeaweedFS: 8 MiB chunks cost its server a quarter more CPU than one
    /// stream, 16 MiB chunks a tenth), small enough that a few of them are cheap to hold.
    pub const CHUNK: u64 = 16 * 1024 * 1024;

    /// One GET in flight per core the process may use plus one, at least 2 and at most 8: a
    /// decoder on every core is fed at the speed S3 serves one connection (tens of MB/s to
    /// about 100 MB/s each), with at most `(8 + 1) x 16 MiB` held.
    pub fn for_this_machine() -> ReadAhead {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        ReadAhead {
            chunk: Self::CHUNK,
            ahead: (cores + 1).clamp(2, 8),
        }
    }

    fn ranged(self) -> bool {
        self.ahead > 0 && self.chunk > 0
    }
}

/// How the content is (or should be treated as) compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    /// Decide from the extension, then the magic bytes.
    #[default]
    Auto,
    /// Pass bytes through unchanged.
    None,
    /// gzip, all members.
    Gzip,
    /// zstd, all frames.
    Zstd,
}

impl Compression {
    /// What the key's extension says, if anything.
    pub fn from_extension(key: &str) -> Option<Compression> {
        let lower = key.to_ascii_lowercase();
        if lower.ends_with(".gz") || lower.ends_with(".gzip") {
            Some(Compression::Gzip)
        } else if lower.ends_with(".zst") || lower.ends_with(".zstd") {
            Some(Compression::Zstd)
        } else {
            None
        }
    }

    /// What the first bytes say.
    pub fn from_magic(prefix: &[u8]) -> Compression {
        if prefix.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if prefix.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }
}

/// An open object: its metadata and a decompressed byte stream.
pub struct ObjectReader {
    /// Size of the stored (possibly compressed) object.
    pub content_length: Option<u64>,
    /// ETag of what is being read (without quotes).
    pub etag: Option<String>,
    /// Version id of what is being read.
    pub version_id: Option<String>,
    /// The compression that was detected and is being undone.
    pub compression: Compression,
    raw_bytes: Arc<AtomicU64>,
    body: Pin<Box<dyn AsyncRead + Send>>,
}

impl std::fmt::Debug for ObjectReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectReader")
            .field("content_length", &self.content_length)
            .field("etag", &self.etag)
            .field("version_id", &self.version_id)
            .field("compression", &self.compression)
            .finish_non_exhaustive()
    }
}

impl ObjectReader {
    /// Bytes read from S3 so far (before decompression).
    pub fn raw_bytes_read(&self) -> u64 {
        self.raw_bytes.load(Ordering::Relaxed)
    }
}

impl AsyncRead for ObjectReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        self.body.as_mut().poll_read(cx, buf)
    }
}

/// Opens `object` for streaming; `compression` says how to decompress (`Auto` to detect).
/// Large objects are read in ranged GETs as [`ReadAhead::for_this_machine`] says.
pub async fn open(
    client: &aws_sdk_s3::Client,
    object: &ObjectRef,
    compression: Compression,
) -> Result<ObjectReader> {
    open_ahead(
        client,
        object,
        compression,
        None,
        ReadAhead::for_this_machine(),
    )
    .await
}

/// Opens bytes `range` (`start..end` of the stored object) of `object` for streaming, as
/// stored (a range of a compressed object cannot be decompressed on its own); pinned and read
/// like [`open`]. An empty range reads nothing.
pub async fn open_range(
    client: &aws_sdk_s3::Client,
    object: &ObjectRef,
    range: Range<u64>,
) -> Result<ObjectReader> {
    open_ahead(
        client,
        object,
        Compression::None,
        Some(range),
        ReadAhead::for_this_machine(),
    )
    .await
}

/// Bytes `range` of the stored `object`, by one ranged GET (pinned like [`open`]), into
/// `bytes` (cleared first; the buffer of a chunk before is reused, so its pages are not faulted
/// in again); fewer bytes than asked for is an error.
async fn read_range(
    client: &aws_sdk_s3::Client,
    object: &ObjectRef,
    range: Range<u64>,
    mut bytes: Vec<u8>,
) -> Result<Vec<u8>> {
    let want = range.end - range.start;
    let out = get(client, object, Some(&range)).await?;
    let mut body = out.body.into_async_read();
    // Exactly `want` bytes into a buffer of that size: reading on to the end would grow it
    // (twice the memory and a copy) only to find the end of the body.
    bytes.clear();
    bytes.reserve_exact(usize::try_from(want).unwrap_or(0));
    while (bytes.len() as u64) < want {
        let n = body
            .read_buf(&mut bytes)
            .await
            .map_err(|e| Error::read(object, e))?;
        if n == 0 {
            break;
        }
    }
    if bytes.len() as u64 != want {
        return Err(Error::io(
            format!("reading bytes {}..{} of {object}", range.start, range.end),
            std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("{} of {want} bytes arrived", bytes.len()),
            ),
        ));
    }
    Ok(bytes)
}

/// One GetObject of `object` (or of bytes `range` of it), pinned.
async fn get(
    client: &aws_sdk_s3::Client,
    object: &ObjectRef,
    range: Option<&Range<u64>>,
) -> Result<aws_sdk_s3::operation::get_object::GetObjectOutput> {
    let mut req = client
        .get_object()
        .bucket(&object.bucket)
        .key(&object.key)
        .set_version_id(object.version_id.clone())
        .set_range(range.map(|r| format!("bytes={}-{}", r.start, r.end - 1)));
    if let Some(etag) = &object.etag {
        req = req.if_match(format!("\"{etag}\""));
    }
    req.send()
        .await
        .map_err(|e| Error::s3("GetObject", &object.bucket, &object.key, e))
}

/// Opens `object` (or bytes `range` of it) with the ranged reading `ahead` asks for.
pub async fn open_ahead(
    client: &aws_sdk_s3::Client,
    object: &ObjectRef,
    compression: Compression,
    range: Option<Range<u64>>,
    ahead: ReadAhead,
) -> Result<ObjectReader> {
    if range.as_ref().is_some_and(|r| r.is_empty()) {
        return Ok(ObjectReader {
            content_length: Some(0),
            etag: object.etag.clone(),
            version_id: object.version_id.clone(),
            compression: Compression::None,
            raw_bytes: Arc::new(AtomicU64::new(0)),
            body: Box::pin(tokio::io::empty()),
        });
    }
    let start = range.as_ref().map_or(0, |r| r.start);
    // The first request: the whole object or range, or its first chunk when ranged.
    let first = if ahead.ranged() {
        let end = start.saturating_add(ahead.chunk);
        Some(start..range.as_ref().map_or(end, |r| r.end.min(end)))
    } else {
        range.clone()
    };
    let out = match get(client, object, first.as_ref()).await {
        // A range of an empty object cannot be satisfied: read it whole.
        Err(Error::S3 { code, .. })
            if range.is_none() && first.is_some() && code.as_deref() == Some("InvalidRange") =>
        {
            get(client, object, None).await?
        }
        other => other?,
    };
    let etag = out.e_tag.as_deref().map(|e| e.trim_matches('"').to_owned());
    let sent = out.content_length.and_then(|l| u64::try_from(l).ok());
    // "bytes 0-8388607/1073741824": the object's size, when the answer is a range.
    let size = out
        .content_range
        .as_deref()
        .and_then(|r| r.rsplit_once('/'))
        .and_then(|(_, total)| total.parse::<u64>().ok());
    let end = match (&range, size) {
        (Some(r), Some(size)) => r.end.min(size),
        (Some(r), None) => r.end,
        (None, Some(size)) => size,
        // No range in the answer: the body is the whole object.
        (None, None) => sent.unwrap_or(0),
    };
    let content_length = match &range {
        Some(_) => Some(end - start),
        None => size.or(sent),
    };
    let raw_bytes = Arc::new(AtomicU64::new(0));
    let first_end = start + sent.unwrap_or(end - start);
    let pinned = Arc::new(ObjectRef {
        etag: object.etag.clone().or_else(|| etag.clone()),
        // "null" names the version of an object written while versioning was off.
        version_id: object.version_id.clone().or_else(|| {
            out.version_id
                .clone()
                .filter(|v| !v.is_empty() && v != "null")
        }),
        ..object.clone()
    });
    let chunked = Chunked {
        first: Some(Box::new(out.body.into_async_read())),
        first_left: sent,
        first_read: 0,
        current: Vec::new(),
        at: 0,
        fetches: VecDeque::new(),
        spare: Vec::new(),
        next: first_end,
        end: if size.is_some() { end } else { first_end },
        ahead,
        client: client.clone(),
        object: pinned,
        count: raw_bytes.clone(),
    };
    let (compression, body) = decompress(chunked, &object.key, compression)
        .await
        .map_err(|e| Error::read(object, e))?;
    Ok(ObjectReader {
        content_length,
        etag,
        version_id: out.version_id,
        compression,
        raw_bytes,
        body,
    })
}

/// Fetches `range` of `object` whole, again after a failure that may pass.
async fn fetch(
    client: aws_sdk_s3::Client,
    object: Arc<ObjectRef>,
    range: Range<u64>,
    mut buffer: Vec<u8>,
) -> Result<Vec<u8>> {
    retrying(
        CHUNK_ATTEMPTS,
        CHUNK_RETRY_BASE,
        range.start,
        Error::is_transient,
        |_| read_range(&client, &object, range.clone(), std::mem::take(&mut buffer)),
        |attempt, delay, e| {
            tracing::warn!(object = %object, start = range.start, attempt, delay_ms = delay.as_millis() as u64,
                error = %e, "ranged read failed; fetching the chunk again");
        },
    )
    .await
}

/// A chunk being fetched; dropping it stops the fetch.
struct Fetch(JoinHandle<Result<Vec<u8>>>);

impl Drop for Fetch {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The stored bytes in order: the first response's stream, then the chunks fetched ahead.
struct Chunked {
    first: Option<Box<dyn AsyncRead + Send + Unpin>>,
    /// Bytes the first response still owes, when it said.
    first_left: Option<u64>,
    /// Bytes the first response has handed on.
    first_read: u64,
    current: Vec<u8>,
    at: usize,
    fetches: VecDeque<Fetch>,
    /// Buffers of chunks handed on, for the next fetches.
    spare: Vec<Vec<u8>>,
    /// Where the next chunk to fetch starts; `end` where the bytes to read end.
    next: u64,
    end: u64,
    ahead: ReadAhead,
    client: aws_sdk_s3::Client,
    object: Arc<ObjectRef>,
    count: Arc<AtomicU64>,
}

impl Chunked {
    /// Whether the first response has been read far enough for the chunks after it to be asked
    /// for: half of it, so a reader dropped after its first bytes (a range reading only the
    /// object's header and type sample) has fetched nothing it did not read, and the next
    /// chunks still arrive while the rest of the first streams. (When the first response ends
    /// sooner, they are asked for then.)
    fn wants_ahead(&self) -> bool {
        self.first_read >= self.ahead.chunk / 2
    }

    /// Starts fetches until `ahead` are in flight or every chunk is asked for.
    fn fetch_ahead(&mut self) {
        while self.fetches.len() < self.ahead.ahead && self.next < self.end {
            let range = self.next..self.end.min(self.next.saturating_add(self.ahead.chunk));
            self.next = range.end;
            let buffer = self.spare.pop().unwrap_or_default();
            let task = fetch(self.client.clone(), self.object.clone(), range, buffer);
            self.fetches.push_back(Fetch(tokio::spawn(task)));
        }
    }
}

impl AsyncRead for Chunked {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        loop {
            if let Some(first) = this.first.as_mut() {
                let before = buf.filled().len();
                ready!(Pin::new(first).poll_read(cx, buf))?;
                let n = (buf.filled().len() - before) as u64;
                if n > 0 {
                    this.first_left = this.first_left.map(|l| l.saturating_sub(n));
                    this.first_read += n;
                    this.count.fetch_add(n, Ordering::Relaxed);
                    if this.fetches.is_empty() && this.wants_ahead() {
                        this.fetch_ahead();
                    }
                    return Poll::Ready(Ok(()));
                }
                if this.first_left.is_some_and(|l| l > 0) {
                    // The connection broke off: a failure that may pass, not damaged data.
                    let cut = std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "the first response ended early",
                    );
                    let e = Error::io(format!("reading {}", this.object), cut);
                    return Poll::Ready(Err(std::io::Error::other(e)));
                }
                this.first = None;
                this.fetch_ahead();
                continue;
            }
            if this.at < this.current.len() {
                let n = buf.remaining().min(this.current.len() - this.at);
                buf.put_slice(&this.current[this.at..this.at + n]);
                this.at += n;
                this.count.fetch_add(n as u64, Ordering::Relaxed);
                return Poll::Ready(Ok(()));
            }
            let Some(fetch) = this.fetches.front_mut() else {
                return Poll::Ready(Ok(()));
            };
            let done = ready!(Pin::new(&mut fetch.0).poll(cx));
            this.fetches.pop_front();
            this.spare.push(std::mem::take(&mut this.current));
            this.fetch_ahead();
            match done {
                Ok(Ok(bytes)) => {
                    this.current = bytes;
                    this.at = 0;
                }
                Ok(Err(e)) => return Poll::Ready(Err(std::io::Error::other(e))),
                Err(e) => return Poll::Ready(Err(std::io::Error::other(e))),
            }
        }
    }
}

/// Wraps `inner` in the decompressor `compression` calls for (detecting it when `Auto`).
pub async fn decompress<R>(
    mut inner: R,
    name: &str,
    compression: Compression,
) -> std::io::Result<(Compression, Pin<Box<dyn AsyncRead + Send>>)>
where
    R: AsyncRead + Send + Unpin + 'static,
{
    let compression = match compression {
        Compression::Auto => match Compression::from_extension(name) {
            Some(c) => c,
            None => {
                // Peek at the first bytes without losing them.
                let mut prefix = Vec::with_capacity(4);
                while prefix.len() < 4 {
                    let mut byte = [0u8; 4];
                    let want = 4 - prefix.len();
                    let n = inner.read(&mut byte[..want]).await?;
                    if n == 0 {
                        break;
                    }
                    prefix.extend_from_slice(&byte[..n]);
                }
                let detected = Compression::from_magic(&prefix);
                let chained = std::io::Cursor::new(prefix).chain(inner);
                return Ok((detected, wrap(chained, detected)));
            }
        },
        other => other,
    };
    Ok((compression, wrap(inner, compression)))
}

fn wrap<R>(inner: R, compression: Compression) -> Pin<Box<dyn AsyncRead + Send>>
where
    R: AsyncRead + Send + Unpin + 'static,
{
    match compression {
        Compression::Gzip => {
            let mut d = GzipDecoder::new(BufReader::with_capacity(READ_BUFFER, inner));
            d.multiple_members(true);
            Box::pin(d)
        }
        Compression::Zstd => {
            let mut d = ZstdDecoder::new(BufReader::with_capacity(READ_BUFFER, inner));
            d.multiple_members(true);
            Box::pin(d)
        }
        Compression::None | Compression::Auto => Box::pin(inner),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compression_from_extension_and_magic() {
        assert_eq!(
            Compression::from_extension("a/b.csv.gz"),
            Some(Compression::Gzip)
        );
        assert_eq!(
            Compression::from_extension("a/b.JSON.ZST"),
            Some(Compression::Zstd)
        );
        assert_eq!(Compression::from_extension("a/b.csv"), None);
        assert_eq!(Compression::from_magic(&[0x1f, 0x8b, 8]), Compression::Gzip);
        assert_eq!(
            Compression::from_magic(&[0x28, 0xb5, 0x2f, 0xfd]),
            Compression::Zstd
        );
        assert_eq!(Compression::from_magic(b"id,"), Compression::None);
        assert_eq!(Compression::from_magic(b""), Compression::None);
    }

    async fn read_all(data: Vec<u8>, name: &str) -> (Compression, Vec<u8>) {
        let (c, mut r) = decompress(std::io::Cursor::new(data), name, Compression::Auto)
            .await
            .expect("open");
        let mut out = Vec::new();
        r.read_to_end(&mut out).await.expect("read");
        (c, out)
    }

    #[tokio::test]
    async fn sniffs_short_and_plain_inputs_without_losing_bytes() {
        assert_eq!(
            read_all(b"a".to_vec(), "x").await,
            (Compression::None, b"a".to_vec())
        );
        assert_eq!(
            read_all(Vec::new(), "x").await,
            (Compression::None, Vec::new())
        );
        let text = b"id,name\n1,x\n".to_vec();
        assert_eq!(
            read_all(text.clone(), "noext").await,
            (Compression::None, text)
        );
    }
}
