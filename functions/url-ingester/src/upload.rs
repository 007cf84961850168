//! The upload side of an ingestion: an [`S3Writer`] and the SHA-256 of the bytes it was given.
//!
//! A checkpoint can only resume at a part boundary (the bytes of a partial part are dropped
//! and downloaded again), so the hash must be resumable there too: [`HashedUpload`] cuts what
//! it is given at the writer's part boundaries and keeps a copy of the hash state at the last
//! one, which [`HashedUpload::checkpoint`] returns with the writer's checkpoint.

use tracing::warn;
use tributary::writer::WriterCheckpoint;
use tributary::{Error, S3Writer, WriteOutcome};

use crate::checkpoint::ResumableSha256;

/// An upload and the running SHA-256 of its content.
#[derive(Debug)]
pub struct HashedUpload {
    writer: S3Writer,
    hasher: ResumableSha256,
    /// Bytes given so far, counting from the object's first byte.
    offset: u64,
    /// The offset of the last part boundary and the hash state there.
    boundary: (u64, ResumableSha256),
}

impl HashedUpload {
    /// Wraps `writer`, whose content so far (`offset` bytes, 0 for a new upload) hashed to
    /// `hasher`; `offset` must be a part boundary (as a checkpoint's is).
    pub fn new(writer: S3Writer, hasher: ResumableSha256, offset: u64) -> HashedUpload {
        HashedUpload {
            writer,
            boundary: (offset, hasher.clone()),
            hasher,
            offset,
        }
    }

    /// Bytes given so far, counting from the object's first byte.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Parts confirmed by S3 so far.
    pub fn parts_uploaded(&self) -> usize {
        self.writer.parts_uploaded()
    }

    /// Hashes and writes `data`, noting the hash state at every part boundary it crosses. On
    /// error the writer has already aborted its upload.
    pub async fn write(&mut self, mut data: &[u8]) -> Result<(), Error> {
        while !data.is_empty() {
            let n = data.len().min(self.writer.room_in_part().max(1));
            self.hasher.update(&data[..n]);
            self.writer.write(&data[..n]).await?;
            self.offset += n as u64;
            data = &data[n..];
            if self.writer.room_in_part() == 0 {
                self.boundary = (self.offset, self.hasher.clone());
            }
        }
        Ok(())
    }

    /// Stops at the last part boundary: the writer's checkpoint (the upload stays open) and
    /// the hash of exactly the bytes it covers. On error the upload is aborted.
    pub async fn checkpoint(self) -> Result<(WriterCheckpoint, ResumableSha256), Error> {
        let upload = self.writer.checkpoint().await?;
        let hasher = if upload.bytes == self.boundary.0 {
            self.boundary.1
        } else if upload.bytes == 0 {
            ResumableSha256::default()
        } else {
            return Err(Error::Internal(format!(
                "checkpoint at byte {} does not match the last part boundary {}",
                upload.bytes, self.boundary.0
            )));
        };
        Ok((upload, hasher))
    }

    /// The SHA-256 of everything given, hex.
    pub fn sha256(&self) -> String {
        self.hasher.hex()
    }

    /// Completes the object. On error the upload is aborted.
    pub async fn finish(self) -> Result<WriteOutcome, Error> {
        self.writer.finish().await
    }

    /// Aborts the upload because of `err`, and returns `err`.
    pub async fn abort(self, err: Error) -> Error {
        if let Err(e) = self.writer.abort().await {
            warn!(error = %e, "could not abort the multipart upload; the lifecycle rule will");
        }
        err
    }
}
