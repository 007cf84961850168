//! The last step of a ranged ingestion: complete the one upload, or abort it.
//!
//! In order: every child's answer is one of the plan's ranges (each once); ListParts shows
//! every part at its size (a part missing or of another size aborts the upload); the ranges'
//! CRCs combine into the full-object checksum (and agree with the parts' own CRCs where the
//! store lists them); CompleteMultipartUpload with it; then the object is read back, in
//! parallel ranged GETs hashed in order (memory: `concurrency` chunks), for its SHA-256 and
//! CRC, and deleted if either disagrees (CRC with the parts', SHA-256 with
//! `expected_sha256`). A failure that can pass (S3 throttling, 5xx) leaves the upload as it is
//! for the state machine's retry; a retry that finds the upload already completed verifies the
//! object instead. Any other failure aborts the upload (or deletes the completed object), so
//! nothing wrong is visible and no upload is left.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use aws_sdk_s3::types::{ChecksumMode, ChecksumType, CompletedMultipartUpload, CompletedPart};
use base64::Engine as _;
use bytes::Bytes;
use serde_json::Value;
use tracing::{info, warn};
use tributary::Error;
use tributary::checksum::{ChecksumAlgorithm, FullObjectChecksum};
use tributary::writer::{abort_upload, backoff, retrying};

use super::{Aborted, Answer, CommitPlan, CommitRequest, Layout, RangeAnswer, algorithm};
use crate::checkpoint::ResumableSha256;
use crate::{Completed, Ingester};

const MIB: u64 = 1024 * 1024;

/// The largest chunk one read-back GET asks for.
const READ_CHUNK: u64 = 16 * MIB;

/// Attempts per read-back GET at this level (each may itself be retried by the SDK).
const READ_ATTEMPTS: u32 = 4;

/// A part as ListParts shows it.
#[derive(Debug, Clone, Default)]
struct Listed {
    size: u64,
    etag: Option<String>,
    checksum: Option<String>,
}

/// What ListParts found.
enum Listing {
    /// The upload is open with these parts.
    Open(BTreeMap<u32, Listed>),
    /// The upload is gone (completed by an earlier attempt, or aborted).
    Gone,
}

/// Decodes a checksum as S3 shows it (base64 of the big-endian CRC).
fn decode(alg: ChecksumAlgorithm, value: &str) -> Option<u64> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(value.trim())
        .ok()?;
    match (alg, bytes.len()) {
        (ChecksumAlgorithm::Crc64Nvme, 8) => Some(u64::from_be_bytes(bytes.try_into().ok()?)),
        (ChecksumAlgorithm::Crc32c, 4) => {
            Some(u64::from(u32::from_be_bytes(bytes.try_into().ok()?)))
        }
        _ => None,
    }
}

impl Ingester {
    /// `"mode": "commit"`: see the [module docs](self).
    pub(crate) async fn commit(&self, payload: Value) -> Result<Answer, Error> {
        let req: CommitRequest = serde_json::from_value(payload)
            .map_err(|e| Error::invalid_input("the commit request", e))?;
        let Some(plan) = req.commit.clone() else {
            return unranged(req);
        };
        let bad = |what: &str, why: String| Error::invalid_input(format!("commit.{what}"), why);
        crate::request::check_bucket_name(&plan.bucket)
            .map_err(|why| bad("bucket", format!("{:?} {why}", plan.bucket)))?;
        if plan.key.is_empty() || plan.upload_id.trim().is_empty() {
            return Err(bad("key", "key and upload_id must not be empty".into()));
        }
        if req.abort {
            let reason = failure_text(req.failure.as_ref());
            self.abort(&plan).await?;
            warn!(bucket = %plan.bucket, key = %plan.key, upload_id = %plan.upload_id, reason = %reason,
                "ranged ingestion aborted: nothing was written");
            return Ok(Answer::Aborted(Aborted {
                bucket: Some(plan.bucket),
                key: Some(plan.key),
                upload_id: Some(plan.upload_id),
                reason,
            }));
        }
        let started = Instant::now();
        match self.complete(&plan, &req.ranges, started).await {
            Ok(done) => Ok(Answer::Complete(done)),
            Err(Failed::Retry(e)) => Err(e),
            Err(Failed::Abort(e)) => {
                if let Err(abort_err) = self.abort(&plan).await {
                    warn!(error = %abort_err, "could not abort the multipart upload; the lifecycle rule will");
                }
                Err(e)
            }
            Err(Failed::Done(e)) => Err(e),
        }
    }

    /// Aborts the upload, and again while ListParts still finds parts of it (a part that
    /// was in flight at the abort can land after it). An upload already gone is aborted: a
    /// retried Catch finds nothing to do (stores answer NoSuchUpload, or like s3s-fs
    /// AccessDenied, for an upload id they no longer know; the listing then tells).
    async fn abort(&self, plan: &CommitPlan) -> Result<(), Error> {
        for attempt in 1..=4u32 {
            let aborted = abort_upload(&self.s3, &plan.bucket, &plan.key, &plan.upload_id).await;
            if let Err(e) = &aborted
                && e.is_transient()
            {
                return aborted;
            }
            match self.list_parts(plan).await {
                Ok(Listing::Gone) => return Ok(()),
                Ok(Listing::Open(parts)) if parts.is_empty() => return Ok(()),
                Ok(Listing::Open(_)) if aborted.is_err() => return aborted,
                Ok(Listing::Open(_)) => {
                    tokio::time::sleep(backoff(Duration::from_millis(200), attempt, 7)).await;
                }
                Err(e) if e.is_transient() => return Err(e),
                // The listing is refused too: the abort's answer decides.
                Err(_) => return aborted,
            }
        }
        Err(Error::S3 {
            operation: "AbortMultipartUpload",
            bucket: plan.bucket.clone(),
            key: plan.key.clone(),
            code: None,
            message: format!("upload {} still has parts after 4 aborts", plan.upload_id),
        })
    }

    /// Every part of the upload.
    async fn list_parts(&self, plan: &CommitPlan) -> Result<Listing, Error> {
        let mut parts = BTreeMap::new();
        let mut marker: Option<String> = None;
        loop {
            let out = self
                .s3
                .list_parts()
                .bucket(&plan.bucket)
                .key(&plan.key)
                .upload_id(&plan.upload_id)
                .set_part_number_marker(marker.clone())
                .send()
                .await;
            let out = match out {
                Ok(o) => o,
                Err(e) => {
                    return match Error::s3("ListParts", &plan.bucket, &plan.key, e) {
                        Error::NotFound { .. } => Ok(Listing::Gone),
                        Error::S3 { code: Some(c), .. } if c == "NoSuchUpload" => Ok(Listing::Gone),
                        other => Err(other),
                    };
                }
            };
            for p in out.parts() {
                let Some(n) = p.part_number().and_then(|n| u32::try_from(n).ok()) else {
                    continue;
                };
                let checksum = p
                    .checksum_crc64_nvme()
                    .or(p.checksum_crc32_c())
                    .map(str::to_owned);
                parts.insert(
                    n,
                    Listed {
                        size: p.size().and_then(|s| u64::try_from(s).ok()).unwrap_or(0),
                        etag: p.e_tag().map(str::to_owned),
                        checksum,
                    },
                );
            }
            match (out.is_truncated(), out.next_part_number_marker()) {
                (Some(true), Some(next)) if Some(next) != marker.as_deref() => {
                    marker = Some(next.to_owned());
                }
                _ => return Ok(Listing::Open(parts)),
            }
        }
    }

    async fn complete(
        &self,
        plan: &CommitPlan,
        results: &[Value],
        started: Instant,
    ) -> Result<Completed, Failed> {
        let what = format!("s3://{}/{}", plan.bucket, plan.key);
        let integrity = |reason: String| Error::Integrity {
            what: what.clone(),
            reason,
        };
        let alg = algorithm("commit.checksum_algorithm", &plan.checksum_algorithm)
            .map_err(Failed::Abort)?;
        let layout = Layout::new(plan.total_bytes, plan.part_size)
            .map_err(|e| Failed::Abort(Error::invalid_input("commit.part_size", e)))?;
        if layout.parts != plan.parts {
            return Err(Failed::Abort(Error::invalid_input(
                "commit.parts",
                format!(
                    "is {}; {} bytes in parts of {} make {}",
                    plan.parts, layout.total, layout.part_size, layout.parts
                ),
            )));
        }
        let ranges = ranges(plan, &layout, alg, results).map_err(Failed::Abort)?;
        let mut crc = alg.empty();
        for r in &ranges {
            crc = alg.combine(crc, r.1, r.0.bytes);
        }
        let encoded = alg.encode(crc);
        let listed = match self.list_parts(plan).await.map_err(Failed::pass)? {
            // Some stores list no parts, rather than NoSuchUpload, for an upload that was
            // completed: an object of the plan's size there means an earlier attempt did it.
            Listing::Open(parts)
                if !(parts.is_empty() && self.has_size(plan, layout.total).await) =>
            {
                parts
            }
            _ => {
                return self
                    .already_completed(plan, &layout, alg, &encoded, ranges.len(), started)
                    .await;
            }
        };
        // Every part at its size, and no other.
        let missing: Vec<u32> = (1..=layout.parts)
            .filter(|n| !listed.contains_key(n))
            .collect();
        let mut problems = Vec::new();
        if !missing.is_empty() {
            problems.push(format!(
                "{} of {} parts are missing ({})",
                missing.len(),
                layout.parts,
                summarize(&missing)
            ));
        }
        for (n, p) in &listed {
            if *n > layout.parts {
                problems.push(format!(
                    "part {n} is beyond the plan's {} parts",
                    layout.parts
                ));
            } else if p.size != layout.part_len(*n) {
                problems.push(format!(
                    "part {n} has {} bytes, the plan {}",
                    p.size,
                    layout.part_len(*n)
                ));
            }
        }
        // Where the store lists the parts' CRCs, they must make each range's.
        for (r, range_crc) in &ranges {
            let mut acc = Some(alg.empty());
            for n in r.first_part..r.first_part + r.parts {
                let part_crc = listed
                    .get(&n)
                    .and_then(|p| p.checksum.as_deref())
                    .and_then(|c| decode(alg, c));
                acc = match (acc, part_crc) {
                    (Some(a), Some(c)) => Some(alg.combine(a, c, layout.part_len(n))),
                    _ => None,
                };
            }
            if let Some(listed_crc) = acc
                && listed_crc != *range_crc
            {
                problems.push(format!(
                    "range {}: the stored parts' {} is {}, the child uploaded {}",
                    r.index,
                    alg.as_str(),
                    alg.encode(listed_crc),
                    r.checksum.value
                ));
            }
        }
        if !problems.is_empty() {
            return Err(Failed::Abort(integrity(
                problems.join("; ") + "; the upload was aborted, nothing was written",
            )));
        }
        let completed = self
            .complete_upload(plan, &layout, alg, &listed, &encoded)
            .await?;
        let (etag, version_id) = completed;
        info!(bucket = %plan.bucket, key = %plan.key, parts = layout.parts, checksum = %encoded,
            "multipart upload completed; reading it back");
        self.verify(
            plan,
            &layout,
            alg,
            &encoded,
            etag,
            version_id,
            true,
            ranges.len(),
            started,
        )
        .await
    }

    /// CompleteMultipartUpload with every part and the full-object checksum; checks what S3
    /// stored. Returns the ETag and version id.
    async fn complete_upload(
        &self,
        plan: &CommitPlan,
        layout: &Layout,
        alg: ChecksumAlgorithm,
        listed: &BTreeMap<u32, Listed>,
        encoded: &str,
    ) -> Result<(Option<String>, Option<String>), Failed> {
        let parts = (1..=layout.parts)
            .map(|n| {
                let p = listed.get(&n).cloned().unwrap_or_default();
                let b = CompletedPart::builder()
                    .part_number(n as i32)
                    .set_e_tag(p.etag);
                match (alg, p.checksum) {
                    (ChecksumAlgorithm::Crc64Nvme, Some(c)) => b.checksum_crc64_nvme(c),
                    (ChecksumAlgorithm::Crc32c, Some(c)) => b.checksum_crc32_c(c),
                    (_, None) => b,
                }
                .build()
            })
            .collect();
        let mut req = self
            .s3
            .complete_multipart_upload()
            .bucket(&plan.bucket)
            .key(&plan.key)
            .upload_id(&plan.upload_id)
            .checksum_type(ChecksumType::FullObject)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            );
        req = match alg {
            ChecksumAlgorithm::Crc64Nvme => req.checksum_crc64_nvme(encoded),
            ChecksumAlgorithm::Crc32c => req.checksum_crc32_c(encoded),
        };
        if plan.if_none_match.unwrap_or(false) {
            req = req.if_none_match("*");
        }
        let out = req
            .send()
            .await
            .map_err(|e| Error::s3("CompleteMultipartUpload", &plan.bucket, &plan.key, e))
            .map_err(Failed::pass)?;
        let returned = match alg {
            ChecksumAlgorithm::Crc64Nvme => out.checksum_crc64_nvme.as_deref(),
            ChecksumAlgorithm::Crc32c => out.checksum_crc32_c.as_deref(),
        };
        if let Some(returned) = returned
            && out.checksum_type == Some(ChecksumType::FullObject)
            && returned != encoded
        {
            let err = Error::Integrity {
                what: format!("s3://{}/{}", plan.bucket, plan.key),
                reason: format!(
                    "S3 stored {} {returned}, the parts make {encoded}; the object was deleted",
                    alg.as_str()
                ),
            };
            self.delete(plan, out.version_id.as_deref()).await;
            return Err(Failed::Done(err));
        }
        Ok((
            out.e_tag.map(|e| e.trim_matches('"').to_owned()),
            out.version_id,
        ))
    }

    /// Whether the target exists with `size` bytes.
    async fn has_size(&self, plan: &CommitPlan, size: u64) -> bool {
        let head = self
            .s3
            .head_object()
            .bucket(&plan.bucket)
            .key(&plan.key)
            .send()
            .await;
        head.ok()
            .and_then(|h| h.content_length())
            .and_then(|l| u64::try_from(l).ok())
            == Some(size)
    }

    /// A retried commit whose upload is gone: if an object of the plan's size is there, an
    /// earlier attempt completed it; verify it (and delete it only if it carries our
    /// checksum, so is ours). Otherwise the upload was aborted.
    #[allow(clippy::too_many_arguments)]
    async fn already_completed(
        &self,
        plan: &CommitPlan,
        layout: &Layout,
        alg: ChecksumAlgorithm,
        encoded: &str,
        ranges: usize,
        started: Instant,
    ) -> Result<Completed, Failed> {
        let head = self
            .s3
            .head_object()
            .bucket(&plan.bucket)
            .key(&plan.key)
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await;
        let gone = || {
            Failed::Done(Error::invalid_input(
                "commit.upload_id",
                format!(
                    "upload {} of s3://{}/{} no longer exists (aborted, or completed and since replaced); plan again",
                    plan.upload_id, plan.bucket, plan.key
                ),
            ))
        };
        let head = match head {
            Ok(h) => h,
            Err(e) => {
                return match Error::s3("HeadObject", &plan.bucket, &plan.key, e) {
                    Error::NotFound { .. } => Err(gone()),
                    other => Err(Failed::pass(other)),
                };
            }
        };
        if head.content_length().and_then(|l| u64::try_from(l).ok()) != Some(layout.total) {
            return Err(gone());
        }
        let stored = match alg {
            ChecksumAlgorithm::Crc64Nvme => head.checksum_crc64_nvme(),
            ChecksumAlgorithm::Crc32c => head.checksum_crc32_c(),
        };
        if stored.is_some_and(|s| s != encoded) {
            return Err(gone());
        }
        let ours = stored == Some(encoded);
        info!(bucket = %plan.bucket, key = %plan.key, "upload already completed by an earlier attempt; verifying the object");
        let etag = head.e_tag().map(|e| e.trim_matches('"').to_owned());
        let version = head.version_id().map(str::to_owned);
        self.verify(
            plan, layout, alg, encoded, etag, version, ours, ranges, started,
        )
        .await
    }

    /// Reads the completed object back for its SHA-256 and CRC; deletes it (when `ours`) if
    /// either disagrees.
    #[allow(clippy::too_many_arguments)]
    async fn verify(
        &self,
        plan: &CommitPlan,
        layout: &Layout,
        alg: ChecksumAlgorithm,
        encoded: &str,
        etag: Option<String>,
        version_id: Option<String>,
        ours: bool,
        ranges: usize,
        started: Instant,
    ) -> Result<Completed, Failed> {
        let concurrency = plan
            .concurrency
            .unwrap_or(self.config.concurrency)
            .clamp(1, 64);
        let (sha256, crc, bytes) = self
            .read_back(
                plan,
                layout.total,
                etag.as_deref(),
                version_id.as_deref(),
                alg,
                concurrency,
            )
            .await
            .map_err(Failed::pass)?;
        let mut problems = Vec::new();
        if bytes != layout.total {
            problems.push(format!(
                "read back {bytes} bytes, the plan has {}",
                layout.total
            ));
        }
        if alg.encode(crc) != encoded {
            problems.push(format!(
                "read back {} {}, the parts make {encoded}",
                alg.as_str(),
                alg.encode(crc)
            ));
        }
        if let Some(expected) = &plan.expected_sha256
            && !expected.eq_ignore_ascii_case(&sha256)
        {
            problems.push(format!(
                "expected_sha256 is {expected}, the content's is {sha256}"
            ));
        }
        if !problems.is_empty() {
            let tail = if ours {
                self.delete(plan, version_id.as_deref()).await;
                "; the object was deleted"
            } else {
                "; the object is not known to be ours and was left"
            };
            return Err(Failed::Done(Error::Integrity {
                what: format!("s3://{}/{}", plan.bucket, plan.key),
                reason: problems.join("; ") + tail,
            }));
        }
        let elapsed_ms = started.elapsed().as_millis() as u64;
        let secs = (elapsed_ms as f64 / 1000.0).max(1e-6);
        info!(bucket = %plan.bucket, key = %plan.key, bytes, sha256 = %sha256, ms = elapsed_ms,
            "ranged ingestion complete");
        Ok(Completed {
            bucket: plan.bucket.clone(),
            key: plan.key.clone(),
            version_id,
            etag,
            bytes,
            parts: layout.parts,
            checksum: FullObjectChecksum {
                algorithm: alg.as_str().to_owned(),
                value: encoded.to_owned(),
            },
            sha256,
            elapsed_ms,
            mib_per_s: (bytes as f64 / MIB as f64 / secs * 100.0).round() / 100.0,
            invocations: ranges as u32 + 2,
            source_resumes: 0,
        })
    }

    /// Deletes the object (its version, on a versioned bucket); a failure is logged (the
    /// answer is already an error).
    async fn delete(&self, plan: &CommitPlan, version_id: Option<&str>) {
        let res = self
            .s3
            .delete_object()
            .bucket(&plan.bucket)
            .key(&plan.key)
            .set_version_id(version_id.map(str::to_owned))
            .send()
            .await;
        if let Err(e) = res {
            warn!(bucket = %plan.bucket, key = %plan.key, error = %Error::s3("DeleteObject", &plan.bucket, &plan.key, e),
                "could not delete the object that failed its checks");
        }
    }

    /// The object's SHA-256 (hex), CRC and length, read in ranged GETs of up to
    /// [`READ_CHUNK`], `concurrency` at once, hashed in order.
    async fn read_back(
        &self,
        plan: &CommitPlan,
        total: u64,
        etag: Option<&str>,
        version_id: Option<&str>,
        alg: ChecksumAlgorithm,
        concurrency: usize,
    ) -> Result<(String, u64, u64), Error> {
        let chunk = plan.part_size.min(READ_CHUNK);
        let mut sha = ResumableSha256::default();
        let mut crc = alg.empty();
        let mut bytes = 0u64;
        let mut next = 0u64;
        let mut queue: VecDeque<tokio::task::JoinHandle<Result<Bytes, Error>>> = VecDeque::new();
        loop {
            while queue.len() < concurrency && next < total {
                let end = (next + chunk).min(total) - 1;
                let get = RangeGet {
                    client: self.s3.clone(),
                    bucket: plan.bucket.clone(),
                    key: plan.key.clone(),
                    etag: etag.map(str::to_owned),
                    version_id: version_id.map(str::to_owned),
                    start: next,
                    end,
                };
                queue.push_back(tokio::spawn(get.run()));
                next = end + 1;
            }
            let Some(handle) = queue.pop_front() else {
                break;
            };
            let data = handle
                .await
                .map_err(|e| Error::Internal(format!("read-back task failed: {e}")))??;
            sha.update(&data);
            crc = alg.combine(crc, alg.checksum(&data), data.len() as u64);
            bytes += data.len() as u64;
        }
        Ok((sha.hex(), crc, bytes))
    }
}

/// One ranged GET of the completed object, retried on errors that can pass.
struct RangeGet {
    client: aws_sdk_s3::Client,
    bucket: String,
    key: String,
    etag: Option<String>,
    version_id: Option<String>,
    start: u64,
    end: u64,
}

impl RangeGet {
    async fn run(self) -> Result<Bytes, Error> {
        retrying(
            READ_ATTEMPTS,
            Duration::from_millis(250),
            self.start,
            Error::is_transient,
            |_| self.once(),
            |_, _, _| {},
        )
        .await
    }

    async fn once(&self) -> Result<Bytes, Error> {
        let out = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(&self.key)
            .range(format!("bytes={}-{}", self.start, self.end))
            .set_if_match(self.etag.as_ref().map(|e| format!("\"{e}\"")))
            .set_version_id(self.version_id.clone())
            .send()
            .await
            .map_err(|e| Error::s3("GetObject", &self.bucket, &self.key, e))?;
        let body = out.body.collect().await.map_err(|e| {
            Error::io(
                format!("reading s3://{}/{} back", self.bucket, self.key),
                std::io::Error::other(e),
            )
        })?;
        Ok(body.into_bytes())
    }
}

/// How a commit failed, and what is left to do about the upload.
enum Failed {
    /// Can pass: leave the upload for the state machine's retry.
    Retry(Error),
    /// Cannot: abort the upload.
    Abort(Error),
    /// Cannot, and the upload is already settled (completed and deleted, or gone).
    Done(Error),
}

impl Failed {
    /// A failure of an S3 call before the upload was completed.
    fn pass(e: Error) -> Failed {
        if e.is_transient() {
            Failed::Retry(e)
        } else {
            Failed::Abort(e)
        }
    }
}

/// The children's answers, checked against the plan: each range once, as planned, with a
/// CRC of the upload's algorithm.
fn ranges(
    plan: &CommitPlan,
    layout: &Layout,
    alg: ChecksumAlgorithm,
    results: &[Value],
) -> Result<Vec<(RangeAnswer, u64)>, Error> {
    let bad = |why: String| Error::invalid_input("ranges", why);
    let spans = layout.spans(plan.ranges);
    if spans.len() as u32 != plan.ranges {
        return Err(Error::invalid_input(
            "commit.ranges",
            format!("{} ranges of {} parts cannot be", plan.ranges, layout.parts),
        ));
    }
    let mut found: Vec<Option<(RangeAnswer, u64)>> = vec![None; spans.len()];
    for (i, v) in results.iter().enumerate() {
        let answer: Answer = serde_json::from_value(v.clone())
            .map_err(|e| bad(format!("[{i}] is not a range answer: {e}")))?;
        let Answer::RangeDone(r) = answer else {
            return Err(bad(format!(
                "[{i}] is not a range answer (status range_done)"
            )));
        };
        let Some(span) = spans.get(r.index as usize) else {
            return Err(bad(format!(
                "[{i}] is range {}, the plan has {}",
                r.index,
                spans.len()
            )));
        };
        if (r.first_part, r.parts, r.start, r.end, r.bytes)
            != (
                span.first_part,
                span.parts,
                span.start,
                span.end,
                span.len(),
            )
        {
            return Err(bad(format!(
                "[{i}] (range {}) covers parts {}+{} bytes {}-{} ({} bytes); the plan's range is parts {}+{} bytes {}-{}",
                r.index,
                r.first_part,
                r.parts,
                r.start,
                r.end,
                r.bytes,
                span.first_part,
                span.parts,
                span.start,
                span.end
            )));
        }
        if r.checksum.algorithm != alg.as_str() {
            return Err(bad(format!(
                "[{i}] carries a {} checksum, the upload is {}",
                r.checksum.algorithm,
                alg.as_str()
            )));
        }
        let crc = decode(alg, &r.checksum.value).ok_or_else(|| {
            bad(format!(
                "[{i}].checksum.value is not a {} value",
                alg.as_str()
            ))
        })?;
        let slot = &mut found[r.index as usize];
        if slot.is_some() {
            return Err(bad(format!("range {} is answered twice", r.index)));
        }
        *slot = Some((r, crc));
    }
    let missing: Vec<u32> = found
        .iter()
        .enumerate()
        .filter(|(_, f)| f.is_none())
        .map(|(i, _)| i as u32)
        .collect();
    if !missing.is_empty() {
        return Err(bad(format!(
            "{} of {} ranges have no answer ({}); the upload was aborted",
            missing.len(),
            spans.len(),
            summarize(&missing)
        )));
    }
    Ok(found.into_iter().flatten().collect())
}

/// The commit of a plan that was not ranged: the one ordinary ingestion's answer, passed on.
fn unranged(req: CommitRequest) -> Result<Answer, Error> {
    if req.abort {
        return Ok(Answer::Aborted(Aborted {
            bucket: None,
            key: None,
            upload_id: None,
            reason: format!(
                "{} (the plan was not ranged: the ingestion aborted its own upload)",
                failure_text(req.failure.as_ref())
            ),
        }));
    }
    match req.ranges.as_slice() {
        [one] => serde_json::from_value::<Answer>(one.clone())
            .ok()
            .filter(|a| matches!(a, Answer::Complete(_) | Answer::Incomplete(_)))
            .ok_or_else(|| {
                Error::invalid_input(
                    "ranges",
                    "without a commit, ranges must be the one ordinary ingestion's answer",
                )
            }),
        other => Err(Error::invalid_input(
            "ranges",
            format!(
                "without a commit (an unranged plan), ranges must hold one answer, not {}",
                other.len()
            ),
        )),
    }
}

/// What failed, from Step Functions' Catch output (`{"Error", "Cause"}`), for messages.
fn failure_text(failure: Option<&Value>) -> String {
    let Some(f) = failure else {
        return "aborted on request".to_owned();
    };
    let error = f.get("Error").and_then(Value::as_str).unwrap_or("failure");
    let cause = f
        .get("Cause")
        .and_then(Value::as_str)
        .map(|c| {
            // A Lambda error's Cause is its JSON answer: show its message.
            serde_json::from_str::<Value>(c)
                .ok()
                .and_then(|v| {
                    v.get("errorMessage")
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                })
                .unwrap_or_else(|| c.to_owned())
        })
        .unwrap_or_default();
    let mut text = format!("{error}: {cause}");
    if text.len() > 1000 {
        let mut cut = 1000;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push('…');
    }
    text
}

/// `1, 2, 3, 7` -> `1-3, 7` (at most a few groups).
fn summarize(numbers: &[u32]) -> String {
    let mut groups: Vec<String> = Vec::new();
    let mut i = 0;
    while i < numbers.len() {
        let mut j = i;
        while j + 1 < numbers.len() && numbers[j + 1] == numbers[j] + 1 {
            j += 1;
        }
        groups.push(if i == j {
            numbers[i].to_string()
        } else {
            format!("{}-{}", numbers[i], numbers[j])
        });
        i = j + 1;
    }
    if groups.len() > 8 {
        let more = groups.len() - 8;
        groups.truncate(8);
        groups.push(format!("and {more} more"));
    }
    groups.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_decode_as_they_encode() {
        for alg in [ChecksumAlgorithm::Crc64Nvme, ChecksumAlgorithm::Crc32c] {
            let crc = alg.checksum(b"123456789");
            assert_eq!(decode(alg, &alg.encode(crc)), Some(crc), "{alg:?}");
        }
        assert_eq!(decode(ChecksumAlgorithm::Crc32c, "AAAAAAAAAAA="), None);
        assert_eq!(decode(ChecksumAlgorithm::Crc64Nvme, "!!"), None);
    }

    #[test]
    fn numbers_summarize_as_runs() {
        assert_eq!(summarize(&[1, 2, 3, 7, 9, 10]), "1-3, 7, 9-10");
        assert_eq!(summarize(&[]), "");
        let many: Vec<u32> = (0..40).map(|i| i * 2).collect();
        assert!(summarize(&many).ends_with("and 32 more"));
    }

    #[test]
    fn a_lambda_failure_shows_its_message() {
        let f = serde_json::json!({"Error": "SourceUnavailable",
            "Cause": "{\"errorType\":\"SourceUnavailable\",\"errorMessage\":\"HTTP 500\"}"});
        assert_eq!(failure_text(Some(&f)), "SourceUnavailable: HTTP 500");
        assert_eq!(failure_text(None), "aborted on request");
    }
}
