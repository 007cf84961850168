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

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumType, CompletedMultipartUpload, CompletedPart};
use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tracing::{debug, warn};

use crate::checksum::{ChecksumAlgorithm, FullObjectChecksum};
use crate::error::{Error, Result};

/// S3's smallest allowed part (all parts but the last).
pub const MIN_PART_SIZE: usize = 5 * 1024 * 1024;
/// S3's largest allowed part.
pub const MAX_PART_SIZE: usize = 5 * 1024 * 1024 * 1024;
/// S3's largest part number.
pub const MAX_PARTS: u32 = 10_000;
/// Parts per tier before the part size doubles (unknown total size only).
const PARTS_PER_TIER: u32 = 1_000;
const MIB: usize = 1024 * 1024;
/// Where the first part's buffer starts growing from (without a size hint).
const FIRST_BUFFER: usize = 64 * 1024;
/// How long to wait, with no part in flight, for a part buffer the HTTP stack still holds
/// before allocating another one (and logging it: the memory bound is then exceeded).
const RELEASE_WAIT: Duration = Duration::from_secs(10);

/// How an [`S3Writer`] cuts, uploads and checks its parts.
#[derive(Debug, Clone)]
pub struct WriterConfig {
    /// Size of each part (the last may be smaller). Clamped to 5 MiB..=5 GiB.
    pub part_size: usize,
    /// Parts uploaded at once.
    pub concurrency: usize,
    /// Upper bound of bytes held; `None` means `part_size x (concurrency + 1)`.
    pub memory_budget: Option<usize>,
    /// Full-object checksum stored with the object.
    pub checksum: ChecksumAlgorithm,
    /// Attempts per part at this level (each attempt may itself be retried by the SDK).
    pub part_attempts: u32,
    /// First backoff delay between part attempts; doubles per attempt, with jitter.
    pub retry_base_delay: Duration,
    /// Expected total size, when known: the part size grows so it fits in 10,000 parts.
    pub size_hint: Option<u64>,
    /// `Content-Type` of the object.
    pub content_type: Option<String>,
    /// Refuse to overwrite an existing object (`If-None-Match: *`).
    pub if_none_match: bool,
    /// User metadata (`x-amz-meta-*`).
    pub metadata: HashMap<String, String>,
}

impl Default for WriterConfig {
    fn default() -> Self {
        WriterConfig {
            part_size: 8 * MIB,
            concurrency: 4,
            memory_budget: None,
            checksum: ChecksumAlgorithm::default(),
            part_attempts: 4,
            retry_base_delay: Duration::from_millis(250),
            size_hint: None,
            content_type: None,
            if_none_match: false,
            metadata: HashMap::new(),
        }
    }
}

impl WriterConfig {
    /// The part size the writer starts with, after clamping and growing for `size_hint`.
    pub fn initial_part_size(&self) -> usize {
        let mut size = self.part_size.clamp(MIN_PART_SIZE, MAX_PART_SIZE);
        if let Some(hint) = self.size_hint {
            let needed = hint.div_ceil(u64::from(MAX_PARTS));
            let needed = usize::try_from(needed)
                .unwrap_or(MAX_PART_SIZE)
                .div_ceil(MIB)
                * MIB;
            size = size.max(needed).min(MAX_PART_SIZE);
        }
        size
    }

    /// The size of part `number` (1-based) as the writer cuts it: the initial part size, or
    /// without a `size_hint`, that size doubled every 1,000 parts (capped at 5 GiB).
    pub fn part_size_for(&self, number: u32) -> usize {
        let base = self.initial_part_size();
        if self.size_hint.is_some() {
            return base;
        }
        let tier = number.saturating_sub(1) / PARTS_PER_TIER;
        (base << tier.min(10)).min(MAX_PART_SIZE)
    }

    /// The memory budget in bytes.
    pub fn budget(&self) -> usize {
        self.memory_budget
            .unwrap_or_else(|| self.initial_part_size() * (self.concurrency.max(1) + 1))
    }
}

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

/// A part that reached S3.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DonePart {
    /// Part number (1-based).
    pub number: i32,
    /// ETag S3 returned for it.
    pub etag: String,
    /// Its CRC (of the writer's checksum algorithm).
    pub crc: u64,
    /// Its length in bytes.
    pub len: u64,
}

/// Where an unfinished multipart upload stands, to continue it later (possibly in another
/// process) with [`S3Writer::resume`]. The bytes after `bytes` must be written again.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WriterCheckpoint {
    /// The open multipart upload; `None` when no part was uploaded yet (start over).
    pub upload_id: Option<String>,
    /// Parts S3 has, in order.
    pub parts: Vec<DonePart>,
    /// The part size the upload was cut with (it keeps growing by the same rule).
    pub part_size: usize,
    /// Bytes covered by `parts`: where writing resumes.
    pub bytes: u64,
}

/// What is wrong with a [`WriterCheckpoint`]: the field (`upload_id`, `bytes`, `part_size`,
/// `parts[3].len`, ...) and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct CheckpointProblem {
    /// The field, as named in the checkpoint's JSON (`parts[i]` counts from 0).
    pub field: String,
    /// Why it cannot be resumed from.
    pub reason: String,
}

impl WriterCheckpoint {
    /// Checks that this checkpoint describes an upload a writer with `cfg` cut, so that
    /// resuming it at `bytes` gives the source's bytes in order: an upload id whenever there
    /// are parts (and none without), part numbers 1, 2, 3, ... in order, at most 10,000 parts,
    /// every part of the size the writer cuts at its number (the last may be shorter only when
    /// it ends the object, `end` being the object's size when known), their sizes summing to
    /// `bytes`, and `part_size` the size of the next part. It does not ask S3.
    pub fn validate(
        &self,
        cfg: &WriterConfig,
        end: Option<u64>,
    ) -> std::result::Result<(), CheckpointProblem> {
        let problem = |field: String, reason: String| Err(CheckpointProblem { field, reason });
        if self.parts.len() > MAX_PARTS as usize {
            return problem(
                "parts".into(),
                format!("{} parts; S3 allows at most {MAX_PARTS}", self.parts.len()),
            );
        }
        match (&self.upload_id, self.parts.is_empty()) {
            (None, false) => {
                return problem(
                    "upload_id".into(),
                    format!("missing, but {} parts are listed", self.parts.len()),
                );
            }
            (Some(id), false) if id.trim().is_empty() => {
                return problem("upload_id".into(), "is empty".into());
            }
            (Some(_), true) => {
                return problem("upload_id".into(), "names an upload but no parts".into());
            }
            _ => {}
        }
        if self.parts.is_empty() && self.bytes > 0 {
            return problem(
                "bytes".into(),
                format!(
                    "{} bytes but no parts (and no upload) hold them",
                    self.bytes
                ),
            );
        }
        let last = self.parts.len().saturating_sub(1);
        let mut sum: u64 = 0;
        for (i, p) in self.parts.iter().enumerate() {
            let number = i as u32 + 1;
            if i64::from(p.number) != i64::from(number) {
                return problem(
                    format!("parts[{i}].number"),
                    format!(
                        "is {}; parts must be numbered 1, 2, 3, ... in order, so {number}",
                        p.number
                    ),
                );
            }
            if p.etag.trim_matches('"').trim().is_empty() {
                return problem(format!("parts[{i}].etag"), "is empty".into());
            }
            let want = cfg.part_size_for(number) as u64;
            let ends_object = i == last && end.is_some_and(|e| sum.checked_add(p.len) == Some(e));
            let ok = if ends_object {
                (1..=want).contains(&p.len)
            } else {
                p.len == want
            };
            if !ok {
                return problem(
                    format!("parts[{i}].len"),
                    format!(
                        "is {} bytes; this upload cuts part {number} at {want} bytes{}",
                        p.len,
                        if i == last {
                            " (only a part that ends the object may be shorter)"
                        } else {
                            ""
                        }
                    ),
                );
            }
            sum += p.len;
        }
        if sum != self.bytes {
            return problem(
                "bytes".into(),
                format!("is {}, the parts hold {sum}", self.bytes),
            );
        }
        if !self.parts.is_empty() {
            let next = cfg.part_size_for(self.parts.len() as u32 + 1);
            if self.part_size != next {
                return problem(
                    "part_size".into(),
                    format!(
                        "is {} bytes; this upload's next part is {next} bytes (resume with the part size the upload was started with)",
                        self.part_size
                    ),
                );
            }
        }
        Ok(())
    }
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

    /// Gives the part being filled room to grow: the first part's buffer doubles (never past
    /// the part size; with a size hint it is allocated at its final size at once); every later
    /// part takes a whole buffer from the pool.
    async fn make_room(&mut self) -> Result<()> {
        if self.buf.is_empty() && (self.next_part > 1 || !self.pool.free.is_empty()) {
            self.buf = self.next_buffer().await?;
            return Ok(());
        }
        let old = self.buf.capacity();
        let want = match self.cfg.size_hint {
            Some(hint) if old == 0 => usize::try_from(hint).unwrap_or(usize::MAX).max(1),
            _ => (old * 2).max(FIRST_BUFFER),
        }
        .min(self.part_size);
        let mut grown = Vec::with_capacity(want);
        grown.extend_from_slice(&self.buf);
        self.buf = grown;
        if old == 0 {
            self.pool.live += 1;
        }
        self.pool.live_bytes = self.pool.live_bytes - old + self.buf.capacity();
        self.note_held();
        Ok(())
    }

    /// A buffer of the current part size: a returned one, a new one while the budget has room
    /// for it, or else the next one to come back (a part finishing meanwhile reports errors).
    async fn next_buffer(&mut self) -> Result<Vec<u8>> {
        let mut waited_out = false;
        loop {
            while let Ok(b) = self.pool.rx.try_recv() {
                self.pool.free.push(b);
            }
            // Buffers cut for a smaller part size (before it grew) are let go.
            let part_size = self.part_size;
            let (fit, small): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pool.free)
                .into_iter()
                .partition(|b| b.capacity() >= part_size);
            for b in small {
                self.pool.live -= 1;
                self.pool.live_bytes -= b.capacity();
            }
            self.pool.free = fit;
            if let Some(mut b) = self.pool.free.pop() {
                b.clear();
                return Ok(b);
            }
            // As many whole part buffers as the budget holds (at least one).
            let slots = (self.budget / part_size).max(1);
            if self.pool.live < slots || waited_out {
                self.pool.live += 1;
                self.pool.live_bytes += part_size;
                self.note_held();
                return Ok(Vec::with_capacity(part_size));
            }
            if self.in_flight.is_empty() {
                // Every upload call returned, yet a body is still referenced (a connection
                // finishing its write): it is released shortly.
                match tokio::time::timeout(RELEASE_WAIT, self.pool.rx.recv()).await {
                    Ok(Some(b)) => self.pool.free.push(b),
                    Ok(None) | Err(_) => {
                        warn!(bucket = %self.bucket, key = %self.key, wait_s = RELEASE_WAIT.as_secs(),
                            "no part buffer was released after its upload; allocating another");
                        waited_out = true;
                    }
                }
                continue;
            }
            let event = tokio::select! {
                b = self.pool.rx.recv() => Released::Buffer(b),
                res = self.in_flight.join_next() => Released::Part(res),
            };
            match event {
                Released::Buffer(Some(b)) => self.pool.free.push(b),
                Released::Buffer(None) => waited_out = true,
                Released::Part(Some(res)) => self.record(res)?,
                Released::Part(None) => {}
            }
        }
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

    fn note_held(&mut self) {
        self.peak_held = self.peak_held.max(self.pool.live_bytes);
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

/// A multipart upload with every part uploaded, from [`S3Writer::seal`]: complete it to make
/// the object appear, or abort it. Dropped without either, it is aborted.
#[derive(Debug)]
pub struct SealedUpload {
    client: aws_sdk_s3::Client,
    bucket: Arc<str>,
    key: Arc<str>,
    cfg: WriterConfig,
    upload_id: Option<String>,
    parts: Vec<DonePart>,
    bytes: u64,
}

impl SealedUpload {
    /// The object's key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Bytes in the object.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Completes the object. On error the upload is aborted.
    pub async fn complete(mut self) -> Result<WriteOutcome> {
        let Some(upload_id) = self.upload_id.take() else {
            return Err(Error::Internal("sealed upload already closed".into()));
        };
        let res = complete_upload(
            &self.client,
            &self.bucket,
            &self.key,
            &upload_id,
            &self.parts,
            &self.cfg,
            self.bytes,
        )
        .await;
        if res.is_err()
            && let Err(abort_err) =
                abort_upload(&self.client, &self.bucket, &self.key, &upload_id).await
        {
            warn!(bucket = %self.bucket, key = %self.key, upload_id, error = %abort_err,
                "could not abort the multipart upload; the bucket's lifecycle rule will");
        }
        res
    }

    /// Abandons the object.
    pub async fn abort(mut self) -> Result<()> {
        match self.upload_id.take() {
            Some(id) => abort_upload(&self.client, &self.bucket, &self.key, &id).await,
            None => Ok(()),
        }
    }
}

impl Drop for SealedUpload {
    fn drop(&mut self) {
        if let Some(upload_id) = self.upload_id.take() {
            warn!(bucket = %self.bucket, key = %self.key, upload_id,
                "sealed upload dropped unfinished: aborting it");
            spawn_abort(&self.client, &self.bucket, &self.key, upload_id);
        }
    }
}

/// Aborts an upload on a spawned task (from `Drop`, which cannot wait).
fn spawn_abort(client: &aws_sdk_s3::Client, bucket: &Arc<str>, key: &Arc<str>, upload_id: String) {
    if let Ok(handle) = tokio::runtime::Handle::try_current() {
        let client = client.clone();
        let (bucket, key) = (bucket.clone(), key.clone());
        handle.spawn(async move {
            if let Err(e) = abort_upload(&client, &bucket, &key, &upload_id).await {
                warn!(error = %e, "abort after drop failed; the lifecycle rule will clean up");
            }
        });
    }
}

/// Completes a multipart upload of `parts` (in order) with the full-object checksum combined
/// from theirs, and checks what S3 stored.
async fn complete_upload(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    upload_id: &str,
    done: &[DonePart],
    cfg: &WriterConfig,
    bytes: u64,
) -> Result<WriteOutcome> {
    let alg = cfg.checksum;
    let mut crc = alg.empty();
    let mut parts = Vec::with_capacity(done.len());
    for p in done {
        crc = alg.combine(crc, p.crc, p.len);
        let b = CompletedPart::builder()
            .part_number(p.number)
            .e_tag(&p.etag);
        let b = match alg {
            ChecksumAlgorithm::Crc64Nvme => b.checksum_crc64_nvme(alg.encode(p.crc)),
            ChecksumAlgorithm::Crc32c => b.checksum_crc32_c(alg.encode(p.crc)),
        };
        parts.push(b.build());
    }
    let encoded = alg.encode(crc);
    let mut req = client
        .complete_multipart_upload()
        .bucket(bucket)
        .key(key)
        .upload_id(upload_id)
        .checksum_type(ChecksumType::FullObject)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(parts))
                .build(),
        );
    req = match alg {
        ChecksumAlgorithm::Crc64Nvme => req.checksum_crc64_nvme(&encoded),
        ChecksumAlgorithm::Crc32c => req.checksum_crc32_c(&encoded),
    };
    if cfg.if_none_match {
        req = req.if_none_match("*");
    }
    let out = req
        .send()
        .await
        .map_err(|e| Error::s3("CompleteMultipartUpload", bucket, key, e))?;
    let returned = match alg {
        ChecksumAlgorithm::Crc64Nvme => out.checksum_crc64_nvme.as_deref(),
        ChecksumAlgorithm::Crc32c => out.checksum_crc32_c.as_deref(),
    };
    if let Some(returned) = returned
        && out.checksum_type == Some(ChecksumType::FullObject)
        && returned != encoded
    {
        return Err(Error::Integrity {
            what: format!("s3://{bucket}/{key}"),
            reason: format!("S3 stored {} {returned}, we sent {encoded}", alg.as_str()),
        });
    }
    Ok(WriteOutcome {
        bucket: bucket.to_owned(),
        key: key.to_owned(),
        etag: out.e_tag.map(|e| e.trim_matches('"').to_owned()),
        version_id: out.version_id,
        bytes,
        parts: done.len() as u32,
        checksum: FullObjectChecksum {
            algorithm: alg.as_str().to_owned(),
            value: encoded,
        },
    })
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

/// Aborts a multipart upload; an upload that is already gone counts as aborted.
pub async fn abort_upload(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    upload_id: &str,
) -> Result<()> {
    match client
        .abort_multipart_upload()
        .bucket(bucket)
        .key(key)
        .upload_id(upload_id)
        .send()
        .await
    {
        Ok(_) => {
            debug!(bucket, key, upload_id, "multipart upload aborted");
            Ok(())
        }
        Err(e) => match Error::s3("AbortMultipartUpload", bucket, key, e) {
            Error::NotFound { .. } => Ok(()),
            Error::S3 { code: Some(c), .. } if c == "NoSuchUpload" => Ok(()),
            other => Err(other),
        },
    }
}

/// The writer's part buffers. Each part's bytes are a [`Bytes`] whose owner sends its buffer
/// back here when the last reference goes, wherever that happens (a connection task of the
/// HTTP client, a retry's request copy), so a buffer is reused only once nothing reads it.
#[derive(Debug)]
struct Pool {
    tx: mpsc::UnboundedSender<Vec<u8>>,
    rx: mpsc::UnboundedReceiver<Vec<u8>>,
    /// Returned buffers, ready for the next part.
    free: Vec<Vec<u8>>,
    /// Buffers allocated and not let go (free, being filled, or in a part), and their bytes.
    live: usize,
    live_bytes: usize,
}

impl Pool {
    fn new() -> Pool {
        let (tx, rx) = mpsc::unbounded_channel();
        Pool {
            tx,
            rx,
            free: Vec::new(),
            live: 0,
            live_bytes: 0,
        }
    }

    /// The filled buffer as an immutable part that returns the buffer when released.
    fn part(&self, data: Vec<u8>) -> Bytes {
        if data.capacity() == 0 {
            return Bytes::new();
        }
        Bytes::from_owner(PartBuffer {
            data,
            home: self.tx.clone(),
        })
    }
}

/// Owner of a part's bytes: gives the buffer back to its writer's pool when dropped.
struct PartBuffer {
    data: Vec<u8>,
    home: mpsc::UnboundedSender<Vec<u8>>,
}

impl AsRef<[u8]> for PartBuffer {
    fn as_ref(&self) -> &[u8] {
        &self.data
    }
}

impl Drop for PartBuffer {
    fn drop(&mut self) {
        // A writer that is gone no longer wants it: the buffer is freed with the message.
        let _ = self.home.send(std::mem::take(&mut self.data));
    }
}

/// What [`S3Writer::next_buffer`] woke up for.
enum Released {
    Buffer(Option<Vec<u8>>),
    Part(Option<std::result::Result<Result<DonePart>, tokio::task::JoinError>>),
}

/// One part's upload, with its own retries.
struct PartTask {
    client: aws_sdk_s3::Client,
    bucket: Arc<str>,
    key: Arc<str>,
    upload_id: String,
    number: i32,
    data: Bytes,
    algorithm: ChecksumAlgorithm,
    attempts: u32,
    base_delay: Duration,
}

impl PartTask {
    async fn run(self) -> Result<DonePart> {
        let crc = self.algorithm.checksum(&self.data);
        let encoded = self.algorithm.encode(crc);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let req = self
                .client
                .upload_part()
                .bucket(&*self.bucket)
                .key(&*self.key)
                .upload_id(&self.upload_id)
                .part_number(self.number)
                .content_length(self.data.len() as i64)
                .body(ByteStream::from(self.data.clone()));
            let req = match self.algorithm {
                ChecksumAlgorithm::Crc64Nvme => req.checksum_crc64_nvme(&encoded),
                ChecksumAlgorithm::Crc32c => req.checksum_crc32_c(&encoded),
            };
            // The part's CRC (checked by S3) protects its content, so the SigV4 payload hash,
            // a second full pass over the data, is skipped.
            match req.customize().disable_payload_signing().send().await {
                Ok(out) => {
                    let etag = out.e_tag.unwrap_or_default().trim_matches('"').to_owned();
                    let part = DonePart {
                        number: self.number,
                        etag,
                        crc,
                        len: self.data.len() as u64,
                    };
                    return Ok(part);
                }
                Err(e) => {
                    let err = Error::s3("UploadPart", &self.bucket, &self.key, e);
                    if attempt >= self.attempts || !err.is_transient() {
                        return Err(err);
                    }
                    let delay = backoff(self.base_delay, attempt, self.number as u64);
                    warn!(bucket = %self.bucket, key = %self.key, part = self.number, attempt,
                        delay_ms = delay.as_millis() as u64, error = %err, "part upload failed; retrying");
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }
}

/// Exponential backoff with jitter: `base x 2^(attempt-1)`, scaled by 0.5..1.5, capped at 20 s.
pub fn backoff(base: Duration, attempt: u32, salt: u64) -> Duration {
    let exp = base.saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64)
        .unwrap_or(0);
    // A cheap mix of time and salt: enough to spread retries of concurrent parts apart.
    let mix = (nanos ^ salt.wrapping_mul(0x9E37_79B9_7F4A_7C15)) % 1000;
    let scaled = exp.mul_f64(0.5 + mix as f64 / 1000.0);
    scaled.min(Duration::from_secs(20))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_size_is_clamped_and_grows_for_large_hints() {
        let cfg = WriterConfig {
            part_size: 1,
            ..Default::default()
        };
        assert_eq!(cfg.initial_part_size(), MIN_PART_SIZE);
        let cfg = WriterConfig {
            part_size: 8 * MIB,
            size_hint: Some(200 * 1024 * MIB as u64), // 200 GiB
            ..Default::default()
        };
        let size = cfg.initial_part_size();
        assert!(size as u64 * u64::from(MAX_PARTS) >= 200 * 1024 * MIB as u64);
        assert_eq!(size % MIB, 0);
        assert_eq!(size, 21 * MIB);
        assert_eq!(cfg.budget(), size * 5);
    }

    #[test]
    fn unknown_size_growth_covers_s3s_largest_object() {
        // Summing the tiers' capacity: 1,000 parts per tier, doubling from the minimum.
        let total: u64 = (0..10u32)
            .map(|tier| 1000 * ((MIN_PART_SIZE as u64) << tier))
            .sum();
        assert!(total >= 4_800_000 * MIB as u64, "{total}");
        let total8: u64 = (0..10u32)
            .map(|tier| 1000 * ((8 * MIB as u64) << tier))
            .sum();
        assert!(total8 > 5 * 1024 * 1024 * MIB as u64, "{total8}");
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let base = Duration::from_millis(100);
        let first = backoff(base, 1, 1);
        assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(150));
        let fourth = backoff(base, 4, 1);
        assert!(fourth >= Duration::from_millis(400) && fourth <= Duration::from_millis(1200));
        assert_eq!(
            backoff(base, 30, 1).min(Duration::from_secs(20)),
            backoff(base, 30, 1)
        );
    }
}
