//! The streaming S3 writer: bytes in as they come, an S3 object out, never half-written.
//!
//! [`S3Writer`] takes data through [`S3Writer::write`] and cuts it into parts:
//!
//! * **Parts**: `part_size` (at least 5 MiB, S3's minimum for every part but the last). With a
//!   `size_hint` the part size grows up front so the object fits in 10,000 parts; without one
//!   it doubles every 1,000 parts (8 MiB parts reach 8 GiB before the first doubling and more
//!   than S3's 5 TiB object limit within 10,000 parts).
//! * **Concurrency and memory**: up to `concurrency` parts upload at once. Part data lives in
//!   at most `memory_budget / part_size` buffers (by default `concurrency + 1`: the part being
//!   filled plus the parts in flight), each allocated once at exactly the part size and reused.
//!   A buffer comes back only when the last reference to its part is dropped (the SDK's
//!   request, a retry's copy of the request, the HTTP connection still writing it), not when
//!   the upload call returns: the writer waits for a buffer to come back rather than
//!   allocating another, so the bound holds however long the HTTP stack keeps a body. The
//!   first part's buffer grows (doubling, never past the part size) so that small objects
//!   stay small; with a `size_hint` it is allocated once at its final size.
//! * **Small objects** (everything fits in one part) go up with a single PutObject, the
//!   multipart upload is created only when a second part is needed.
//! * **Retries**: on top of the SDK's own policy, a failed part is retried up to `part_attempts`
//!   times with exponential backoff and jitter, but only for transient errors (throttling,
//!   5xx, I/O); a permanent error fails at once.
//! * **Integrity**: every part carries its CRC (CRC64NVME by default) and the object is
//!   completed with the full-object CRC, combined from the parts' CRCs in order. Because S3
//!   checks those CRCs, requests skip SigV4's payload hash (a second SHA-256 pass over every
//!   byte); headers are still signed.
//! * **All or nothing**: the object appears only in [`S3Writer::finish`]. Any error aborts the
//!   multipart upload; so does dropping a writer that was not finished (the abort runs on a
//!   spawned task) or calling [`S3Writer::abort`].
//!
//! The rooms: `config` (how parts are cut: [`WriterConfig`]), `checkpoint` (where an
//! unfinished upload stands, and whether it can be resumed: [`WriterCheckpoint`]), `pool`
//! (the part buffers),
//! `retry` (one part's upload and its retries), `sealed` (completing and aborting uploads:
//! [`SealedUpload`], [`abort_upload`]); this file holds the writer itself.

mod checkpoint;
mod config;
mod pool;
mod retry;
mod sealed;

use std::sync::Arc;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::ChecksumType;
use bytes::Bytes;
use tokio::task::JoinSet;
use tracing::{debug, warn};

use crate::checksum::{ChecksumAlgorithm, FullObjectChecksum};
use crate::error::{Error, Result};

pub use checkpoint::{CheckpointProblem, DonePart, WriterCheckpoint};
pub use config::{MAX_PART_SIZE, MAX_PARTS, MIN_PART_SIZE, WriterConfig};
pub use retry::{PartTask, backoff, retrying};
pub use sealed::{DetachedUpload, SealedUpload, abort_upload};

use config::MIB;
use pool::Pool;
use sealed::{complete_upload, spawn_abort};

/// What a finished write produced.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WriteOutcome {
    /// Bucket written.
    pub bucket: String,
    /// Key written.
    pub key: String,
    /// The object's ETag (without quotes).
    pub etag: Option<String>,
    /// Version id, on a versioned bucket.
    pub version_id: Option<String>,
    /// Bytes written.
    pub bytes: u64,
    /// Parts uploaded (1 for a single PutObject).
    pub parts: u32,
    /// The full-object checksum stored with the object.
    pub checksum: FullObjectChecksum,
}

#[derive(Debug)]
enum State {
    /// Nothing sent yet: the data may still fit in one PutObject.
    Buffering,
    /// A multipart upload is open.
    Multipart { upload_id: String },
    /// Finished, aborted or failed: nothing more to do.
    Closed,
}

/// Streams bytes into one S3 object. See the [module docs](self).
#[derive(Debug)]
pub struct S3Writer {
    client: aws_sdk_s3::Client,
    bucket: Arc<str>,
    key: Arc<str>,
    cfg: WriterConfig,
    budget: usize,
    part_size: usize,
    /// The part being filled.
    buf: Vec<u8>,
    state: State,
    next_part: u32,
    in_flight: JoinSet<Result<DonePart>>,
    /// Part buffers: allocated once, returned when their part is released, reused.
    pool: Pool,
    in_flight_bytes: usize,
    done: Vec<DonePart>,
    bytes: u64,
    peak_held: usize,
}

impl S3Writer {
    /// A writer for `s3://bucket/key`. Nothing is sent until data is written.
    pub fn new(
        client: aws_sdk_s3::Client,
        bucket: impl Into<String>,
        key: impl Into<String>,
        cfg: WriterConfig,
    ) -> Self {
        let part_size = cfg.initial_part_size();
        S3Writer {
            client,
            bucket: Arc::from(bucket.into()),
            key: Arc::from(key.into()),
            budget: cfg.budget(),
            part_size,
            buf: Vec::new(),
            state: State::Buffering,
            next_part: 1,
            in_flight: JoinSet::new(),
            pool: Pool::new(),
            in_flight_bytes: 0,
            done: Vec::new(),
            bytes: 0,
            peak_held: 0,
            cfg,
        }
    }

    /// Bytes accepted so far.
    pub fn bytes_written(&self) -> u64 {
        self.bytes
    }

    /// Parts confirmed by S3 so far.
    pub fn parts_uploaded(&self) -> usize {
        self.done.len()
    }

    /// The largest number of bytes of part buffers this writer has had allocated at once (the
    /// part being filled, parts in flight and not yet released, free buffers kept for reuse).
    pub fn peak_bytes_held(&self) -> usize {
        self.peak_held
    }

    /// Bytes that still fit in the part being filled; a part is cut when this reaches 0 and
    /// more data follows. Callers that need to know part boundaries (to checkpoint) write at
    /// most this much at a time.
    pub fn room_in_part(&self) -> usize {
        self.part_size - self.buf.len()
    }

    /// Continues the upload described by `cp` (from [`S3Writer::checkpoint`]). `cfg` must cut
    /// parts as the upload was started (same part size, same `size_hint`): the checkpoint is
    /// refused otherwise, or when it does not hold together ([`WriterCheckpoint::validate`]),
    /// before anything is sent.
    pub fn resume(
        client: aws_sdk_s3::Client,
        bucket: impl Into<String>,
        key: impl Into<String>,
        cfg: WriterConfig,
        cp: WriterCheckpoint,
    ) -> std::result::Result<Self, CheckpointProblem> {
        cp.validate(&cfg, cfg.size_hint)?;
        let mut w = S3Writer::new(client, bucket, key, cfg);
        if let Some(upload_id) = cp.upload_id {
            w.state = State::Multipart { upload_id };
            w.next_part = cp.parts.len() as u32 + 1;
            w.bytes = cp.bytes;
            w.done = cp.parts;
            w.update_part_size();
        }
        Ok(w)
    }

    /// Stops without completing or aborting: waits for the parts in flight, uploads the part
    /// being filled if it is full, drops a partial one, and returns where the upload stands.
    /// The upload stays open for [`S3Writer::resume`] (the bucket's lifecycle rule removes it
    /// if nobody does). On error the upload is aborted.
    pub async fn checkpoint(mut self) -> Result<WriterCheckpoint> {
        let full = self.buf.len() == self.part_size;
        if let Err(e) = self.settle(full).await {
            return Err(self.fail(e).await);
        }
        self.done.sort_by_key(|p| p.number);
        let upload_id = match std::mem::replace(&mut self.state, State::Closed) {
            State::Multipart { upload_id } => Some(upload_id),
            _ => None,
        };
        let parts = std::mem::take(&mut self.done);
        Ok(WriterCheckpoint {
            bytes: parts.iter().map(|p| p.len).sum(),
            upload_id,
            parts,
            part_size: self.part_size,
        })
    }

    /// The multipart upload id, once one was created.
    pub fn upload_id(&self) -> Option<&str> {
        match &self.state {
            State::Multipart { upload_id } => Some(upload_id),
            _ => None,
        }
    }

    /// Accepts `data`; returns when it is buffered or on its way. Waits when the memory budget
    /// is used up. On error the upload has been aborted and the writer is unusable.
    pub async fn write(&mut self, mut data: &[u8]) -> Result<()> {
        if matches!(self.state, State::Closed) {
            return Err(Error::Internal(format!(
                "write to s3://{}/{} after the writer was closed",
                self.bucket, self.key
            )));
        }
        while !data.is_empty() {
            if self.buf.len() >= self.part_size {
                // Only cut a part once more data proves it is not the last one, so content of
                // exactly one part still goes up with a single PutObject.
                if let Err(e) = self.send_part().await {
                    return Err(self.fail(e).await);
                }
            }
            if self.buf.len() == self.buf.capacity()
                && let Err(e) = self.make_room().await
            {
                return Err(self.fail(e).await);
            }
            let room = (self.part_size - self.buf.len()).min(self.buf.capacity() - self.buf.len());
            let take = room.min(data.len());
            self.buf.extend_from_slice(&data[..take]);
            self.bytes += take as u64;
            data = &data[take..];
        }
        Ok(())
    }

    /// Completes the object: uploads what is buffered, waits for every part and completes the
    /// multipart upload (or sends one PutObject). On error everything is aborted.
    pub async fn finish(mut self) -> Result<WriteOutcome> {
        if matches!(self.state, State::Closed) {
            return Err(Error::Internal(format!(
                "finish of s3://{}/{} after the writer was closed",
                self.bucket, self.key
            )));
        }
        let result = match self.state {
            State::Buffering => self.put_single().await,
            _ => self.complete_multipart().await,
        };
        match result {
            Ok(outcome) => {
                self.state = State::Closed;
                Ok(outcome)
            }
            Err(e) => Err(self.fail(e).await),
        }
    }

    /// Abandons the object: cancels parts in flight and aborts the multipart upload.
    pub async fn abort(mut self) -> Result<()> {
        self.in_flight.abort_all();
        while self.in_flight.join_next().await.is_some() {}
        let state = std::mem::replace(&mut self.state, State::Closed);
        if let State::Multipart { upload_id } = state {
            abort_upload(&self.client, &self.bucket, &self.key, &upload_id).await?;
        }
        Ok(())
    }

    /// Cancels everything after `err` and returns it.
    async fn fail(&mut self, err: Error) -> Error {
        self.in_flight.abort_all();
        while self.in_flight.join_next().await.is_some() {}
        self.in_flight_bytes = 0;
        self.buf = Vec::new();
        if let State::Multipart { upload_id } = std::mem::replace(&mut self.state, State::Closed)
            && let Err(abort_err) =
                abort_upload(&self.client, &self.bucket, &self.key, &upload_id).await
        {
            warn!(bucket = %self.bucket, key = %self.key, upload_id, error = %abort_err,
                "could not abort the multipart upload; the bucket's lifecycle rule will");
        }
        err
    }

    /// Cuts the buffer into a part and starts its upload, creating the upload if needed.
    async fn send_part(&mut self) -> Result<()> {
        if self.next_part > MAX_PARTS {
            return Err(Error::Limit(format!(
                "s3://{}/{}: more than {MAX_PARTS} parts of {} MiB; raise the part size",
                self.bucket,
                self.key,
                self.part_size / MIB
            )));
        }
        let upload_id = match &self.state {
            State::Multipart { upload_id } => upload_id.clone(),
            State::Buffering => {
                let id = self.create_upload().await?;
                self.state = State::Multipart {
                    upload_id: id.clone(),
                };
                id
            }
            State::Closed => return Err(Error::Internal("writer closed".into())),
        };
        // The part's bytes go to the SDK as they are (no copy); the buffer returns to the pool
        // when the last reference to them is dropped.
        let part = self.pool.part(std::mem::take(&mut self.buf));
        let number = self.next_part;
        self.next_part += 1;
        self.update_part_size();
        // Memory is bounded by the buffers (`next_buffer`); this bounds the requests.
        while self.in_flight.len() >= self.cfg.concurrency.max(1) {
            self.reap_one().await?;
        }
        // Collect parts that already finished, to notice failures early.
        while let Some(res) = self.in_flight.try_join_next() {
            self.record(res)?;
        }
        self.in_flight_bytes += part.len();
        self.note_held();
        let task = PartTask {
            client: self.client.clone(),
            bucket: self.bucket.clone(),
            key: self.key.clone(),
            upload_id,
            number: number as i32,
            data: part,
            algorithm: self.cfg.checksum,
            attempts: self.cfg.part_attempts.max(1),
            base_delay: self.cfg.retry_base_delay,
        };
        self.in_flight.spawn(task.run());
        Ok(())
    }

    /// Doubles the part size every 1,000 parts when the total size is unknown.
    fn update_part_size(&mut self) {
        self.part_size = self.cfg.part_size_for(self.next_part);
    }

    async fn reap_one(&mut self) -> Result<()> {
        if let Some(res) = self.in_flight.join_next().await {
            self.record(res)?;
        }
        Ok(())
    }

    fn record(
        &mut self,
        res: std::result::Result<Result<DonePart>, tokio::task::JoinError>,
    ) -> Result<()> {
        let part = res.map_err(|e| Error::Internal(format!("part upload task failed: {e}")))??;
        self.in_flight_bytes -= part.len as usize;
        self.done.push(part);
        Ok(())
    }

    async fn create_upload(&self) -> Result<String> {
        let mut req = self
            .client
            .create_multipart_upload()
            .bucket(&*self.bucket)
            .key(&*self.key)
            .checksum_algorithm(self.cfg.checksum.sdk())
            .checksum_type(ChecksumType::FullObject)
            .set_content_type(self.cfg.content_type.clone());
        for (k, v) in &self.cfg.metadata {
            req = req.metadata(k, v);
        }
        let out = req
            .send()
            .await
            .map_err(|e| Error::s3("CreateMultipartUpload", &self.bucket, &self.key, e))?;
        let id = out.upload_id.ok_or_else(|| Error::S3 {
            operation: "CreateMultipartUpload",
            bucket: self.bucket.to_string(),
            key: self.key.to_string(),
            code: None,
            message: "response carried no UploadId".into(),
        })?;
        debug!(bucket = %self.bucket, key = %self.key, upload_id = %id, part_size = self.part_size,
            "multipart upload created");
        Ok(id)
    }

    async fn put_single(&mut self) -> Result<WriteOutcome> {
        let data = Bytes::from(std::mem::take(&mut self.buf));
        let alg = self.cfg.checksum;
        let crc = alg.checksum(&data);
        let encoded = alg.encode(crc);
        let len = data.len() as u64;
        let mut req = self
            .client
            .put_object()
            .bucket(&*self.bucket)
            .key(&*self.key)
            .content_length(len as i64)
            .set_content_type(self.cfg.content_type.clone())
            .body(ByteStream::from(data));
        req = match alg {
            ChecksumAlgorithm::Crc64Nvme => req.checksum_crc64_nvme(&encoded),
            ChecksumAlgorithm::Crc32c => req.checksum_crc32_c(&encoded),
        };
        if self.cfg.if_none_match {
            req = req.if_none_match("*");
        }
        for (k, v) in &self.cfg.metadata {
            req = req.metadata(k, v);
        }
        let out = req
            .customize()
            .disable_payload_signing()
            .send()
            .await
            .map_err(|e| Error::s3("PutObject", &self.bucket, &self.key, e))?;
        Ok(WriteOutcome {
            bucket: self.bucket.to_string(),
            key: self.key.to_string(),
            etag: out.e_tag.map(|e| e.trim_matches('"').to_owned()),
            version_id: out.version_id,
            bytes: len,
            parts: 1,
            checksum: FullObjectChecksum {
                algorithm: alg.as_str().to_owned(),
                value: encoded,
            },
        })
    }

    /// Sends the buffer as a part when `send_buffer`, then waits for every part in flight.
    async fn settle(&mut self, send_buffer: bool) -> Result<()> {
        if send_buffer {
            self.send_part().await?;
        }
        while !self.in_flight.is_empty() {
            self.reap_one().await?;
        }
        Ok(())
    }

    async fn complete_multipart(&mut self) -> Result<WriteOutcome> {
        self.settle(!self.buf.is_empty()).await?;
        let State::Multipart { upload_id } = &self.state else {
            return Err(Error::Internal("no multipart upload to complete".into()));
        };
        self.done.sort_by_key(|p| p.number);
        complete_upload(
            &self.client,
            &self.bucket,
            &self.key,
            upload_id,
            &self.done,
            &self.cfg,
            self.bytes,
        )
        .await
    }

    /// Uploads everything (the last part may be short) but does not complete the object: it
    /// stays invisible until [`SealedUpload::complete`]. For callers that close many objects
    /// along the way and must make them appear together, or not at all. On error the upload
    /// is aborted.
    pub async fn seal(mut self) -> Result<SealedUpload> {
        if matches!(self.state, State::Closed) {
            return Err(Error::Internal(format!(
                "seal of s3://{}/{} after the writer was closed",
                self.bucket, self.key
            )));
        }
        let rest = !self.buf.is_empty() || self.next_part == 1;
        if let Err(e) = self.settle(rest).await {
            return Err(self.fail(e).await);
        }
        let State::Multipart { upload_id } = std::mem::replace(&mut self.state, State::Closed)
        else {
            return Err(Error::Internal("no multipart upload to seal".into()));
        };
        self.done.sort_by_key(|p| p.number);
        Ok(SealedUpload {
            client: self.client.clone(),
            bucket: self.bucket.clone(),
            key: self.key.clone(),
            cfg: self.cfg.clone(),
            upload_id: Some(upload_id),
            parts: std::mem::take(&mut self.done),
            bytes: self.bytes,
        })
    }

    /// Bytes held right now: the part being filled plus the parts in flight.
    pub fn bytes_held(&self) -> usize {
        self.buf.len() + self.in_flight_bytes
    }
}

impl Drop for S3Writer {
    fn drop(&mut self) {
        if let State::Multipart { upload_id } = std::mem::replace(&mut self.state, State::Closed) {
            self.in_flight.abort_all();
            warn!(bucket = %self.bucket, key = %self.key, upload_id,
                "writer dropped unfinished: aborting its multipart upload");
            spawn_abort(&self.client, &self.bucket, &self.key, upload_id);
        }
    }
}
