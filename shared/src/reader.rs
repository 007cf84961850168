//! The streaming S3 reader: GetObject as a byte stream, pinned, transparently decompressed.
//!
//! [`open`] issues one GetObject that carries `versionId` and `If-Match` when the
//! [`ObjectRef`] has them, so an object replaced between the event and the read fails with
//! [`Error::PreconditionFailed`] instead of being read half old, half new. The body is never
//! buffered whole: it is an [`AsyncRead`] over the HTTP stream, decompressed on the fly:
//!
//! * gzip (every member of a multi-member file, as `cat a.gz b.gz` or Firehose produce),
//! * zstd (every frame),
//!
//! chosen by the key's extension (`.gz`, `.gzip`, `.zst`, `.zstd`) or, when the extension says
//! nothing, by the first bytes (gzip `1f 8b`, zstd `28 b5 2f fd`).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use async_compression::tokio::bufread::{GzipDecoder, ZstdDecoder};
use tokio::io::{AsyncRead, AsyncReadExt, BufReader, ReadBuf};

use crate::error::{Error, Result};
use crate::object::ObjectRef;

/// Size of the read buffer in front of the decompressors.
const READ_BUFFER: usize = 256 * 1024;

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
pub async fn open(
    client: &aws_sdk_s3::Client,
    object: &ObjectRef,
    compression: Compression,
) -> Result<ObjectReader> {
    open_with(client, object, compression, None).await
}

/// Opens bytes `range` (`start..end` of the stored object) of `object` for streaming, as
/// stored (a range of a compressed object cannot be decompressed on its own); pinned like
/// [`open`]. An empty range reads nothing.
pub async fn open_range(
    client: &aws_sdk_s3::Client,
    object: &ObjectRef,
    range: std::ops::Range<u64>,
) -> Result<ObjectReader> {
    if range.is_empty() {
        return Ok(ObjectReader {
            content_length: Some(0),
            etag: object.etag.clone(),
            version_id: object.version_id.clone(),
            compression: Compression::None,
            raw_bytes: Arc::new(AtomicU64::new(0)),
            body: Box::pin(tokio::io::empty()),
        });
    }
    open_with(client, object, Compression::None, Some(range)).await
}

async fn open_with(
    client: &aws_sdk_s3::Client,
    object: &ObjectRef,
    compression: Compression,
    range: Option<std::ops::Range<u64>>,
) -> Result<ObjectReader> {
    let mut req = client
        .get_object()
        .bucket(&object.bucket)
        .key(&object.key)
        .set_version_id(object.version_id.clone())
        .set_range(range.map(|r| format!("bytes={}-{}", r.start, r.end - 1)));
    if let Some(etag) = &object.etag {
        req = req.if_match(format!("\"{etag}\""));
    }
    let out = req
        .send()
        .await
        .map_err(|e| Error::s3("GetObject", &object.bucket, &object.key, e))?;
    let raw_bytes = Arc::new(AtomicU64::new(0));
    let counted = Counting {
        inner: out.body.into_async_read(),
        count: raw_bytes.clone(),
    };
    let (compression, body) = decompress(counted, &object.key, compression)
        .await
        .map_err(|e| Error::io(format!("reading {object}"), e))?;
    Ok(ObjectReader {
        content_length: out.content_length.and_then(|l| u64::try_from(l).ok()),
        etag: out.e_tag.map(|e| e.trim_matches('"').to_owned()),
        version_id: out.version_id,
        compression,
        raw_bytes,
        body,
    })
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

/// Counts the bytes that pass through.
struct Counting<R> {
    inner: R,
    count: Arc<AtomicU64>,
}

impl<R: AsyncRead + Unpin> AsyncRead for Counting<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let res = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        res
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
