//! Ranged ingestion: one large source fetched as byte ranges by parallel children (a Step
//! Functions Map) into ONE multipart upload, completed once.
//!
//! Three modes of the handler, chosen by the request's `"mode"` (absent: the ordinary
//! ingestion):
//!
//! * **`plan`**: an ordinary request (plus `ranges`, the number of children). Probes the
//!   source through the SSRF guard with `Range: bytes=0-0`; when it serves ranges, announces
//!   its length and gives a validator (a strong ETag, else Last-Modified), starts the multipart
//!   upload (with the full-object checksum, as the ordinary path) and answers the Map's
//!   `Items` (one `range` request per child) and the `commit` the last step needs. Otherwise
//!   it answers one item, the ordinary request, and no commit: the state machine still works.
//! * **`range`**: reads `bytes=start-end` pinned to the plan's validator (a source that
//!   changed is an error naming the change, never mixed data), uploads it as parts with fixed
//!   numbers, checks the byte count, and answers the range's CRC. Retry-safe: an upload of the
//!   same part number replaces the earlier one; it never aborts the shared upload.
//! * **`commit`**: ListParts, every part present at its size, the ranges' CRCs combined into
//!   the full-object checksum, CompleteMultipartUpload; then reads the object back (streamed,
//!   bounded memory) for its SHA-256 and CRC, and deletes it on any mismatch. With
//!   `"abort": true` (the state machine's Catch), or when a part is missing, it aborts the
//!   upload: nothing is visible and no upload is left.
//!
//! The rooms: [`layout`] (parts and ranges, pure arithmetic), [`parts`] (a child's uploads),
//! [`commit`] (the last step); this file holds the requests, the answers, the plan and the
//! range child.

pub mod commit;
pub mod layout;
pub mod parts;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use aws_sdk_s3::types::ChecksumType;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tracing::info;
use tributary::checksum::{ChecksumAlgorithm, FullObjectChecksum};
use tributary::{Error, WriterConfig};

use crate::request::{Plan, json_kind};
use crate::source::{self, Source, redact};
use crate::{Completed, Incomplete, IngestRequest, Ingester};

pub use layout::{Layout, Span};

const MIB: u64 = 1024 * 1024;

/// The most children one plan cuts.
pub const MAX_RANGES: u32 = 1000;

/// The largest plan answer: Step Functions passes at most 256 KiB between states, and the
/// Map's input is the plan's answer.
pub const MAX_PLAN_ANSWER_BYTES: usize = 250 * 1024;

/// What a request asks the handler to do, from its `"mode"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Probe the source and cut the work.
    Plan,
    /// Fetch and upload one range.
    Range,
    /// Complete (or abort) the upload.
    Commit,
}

impl Mode {
    /// What `mode` accepts.
    pub const EXPECTED: &'static str = "\"plan\", \"range\" or \"commit\" (or no mode)";

    /// Takes `"mode"` out of `payload`: `None` when there is none (the ordinary ingestion).
    pub fn take(payload: &mut Value) -> Result<Option<Mode>, Error> {
        let Some(obj) = payload.as_object_mut() else {
            return Ok(None);
        };
        let Some(mode) = obj.remove("mode") else {
            return Ok(None);
        };
        match mode.as_str() {
            Some("plan") => Ok(Some(Mode::Plan)),
            Some("range") => Ok(Some(Mode::Range)),
            Some("commit") => Ok(Some(Mode::Commit)),
            Some(other) => Err(Error::invalid_input(
                "mode",
                format!("{other:?} is not a mode; expected {}", Mode::EXPECTED),
            )),
            None => Err(Error::invalid_input(
                "mode",
                format!("is {}; expected {}", json_kind(&mode), Mode::EXPECTED),
            )),
        }
    }

    /// The name, as in requests.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Plan => "plan",
            Mode::Range => "range",
            Mode::Commit => "commit",
        }
    }
}

/// One child's request (`"mode": "range"`), as the plan writes it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RangeRequest {
    /// The URL the caller asked for (redirects are followed again, each hop checked).
    pub url: String,
    /// Target bucket.
    pub bucket: String,
    /// Target key.
    pub key: String,
    /// The multipart upload the plan started.
    pub upload_id: String,
    /// 0-based range number.
    pub index: u32,
    /// First byte.
    pub start: u64,
    /// Last byte (inclusive).
    pub end: u64,
    /// The part number of its first part.
    pub first_part: u32,
    /// Every part's size but the object's last, in bytes.
    pub part_size: u64,
    /// The source's size, as probed.
    pub total_bytes: u64,
    /// The source's strong ETag (or Last-Modified) at the plan: sent as `If-Range` (and
    /// `If-Match`), so a changed source is refused.
    pub validator: String,
    /// `CRC64NVME` or `CRC32C`: the upload's checksum.
    pub checksum_algorithm: String,
    /// Parts uploaded at once, 1..=64 (default `CONCURRENCY`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<usize>,
    /// The caller's request headers (never logged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<BTreeMap<String, String>>,
    /// The secret of more request headers, read by each child.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers_secret_arn: Option<String>,
    /// Send the headers after a redirect to another origin too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forward_headers_on_redirect: Option<bool>,
}

impl std::fmt::Debug for RangeRequest {
    // Hand-written: header values (credentials) and URL queries never reach a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let url = reqwest::Url::parse(&self.url)
            .map(|u| redact(&u))
            .unwrap_or_else(|_| "<invalid URL>".to_owned());
        f.debug_struct("RangeRequest")
            .field("url", &url)
            .field("bucket", &self.bucket)
            .field("key", &self.key)
            .field("upload_id", &self.upload_id)
            .field("index", &self.index)
            .field("start", &self.start)
            .field("end", &self.end)
            .field("first_part", &self.first_part)
            .field(
                "headers",
                &self.headers.as_ref().map(|h| h.keys().collect::<Vec<_>>()),
            )
            .field("headers_secret_arn", &self.headers_secret_arn)
            .finish_non_exhaustive()
    }
}

/// What the commit needs, as the plan writes it (the `commit` of its answer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommitPlan {
    /// The URL (for messages; shown without its query).
    pub url: String,
    /// Target bucket.
    pub bucket: String,
    /// Target key.
    pub key: String,
    /// The multipart upload.
    pub upload_id: String,
    /// The source's size.
    pub total_bytes: u64,
    /// Every part's size but the last's, in bytes.
    pub part_size: u64,
    /// Parts in all.
    pub parts: u32,
    /// Ranges (children).
    pub ranges: u32,
    /// `CRC64NVME` or `CRC32C`.
    pub checksum_algorithm: String,
    /// The source's validator at the plan.
    pub validator: String,
    /// The SHA-256 the content must have (hex), from the plan's request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_sha256: Option<String>,
    /// Refuse to overwrite an existing object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub if_none_match: Option<bool>,
    /// Parallel reads when reading the object back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<usize>,
}

/// The commit's request (`"mode": "commit"`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommitRequest {
    /// The plan's `commit` (`null` when the plan was not ranged).
    #[serde(default)]
    pub commit: Option<CommitPlan>,
    /// The Map's results: every child's answer, in any order.
    #[serde(default)]
    pub ranges: Vec<Value>,
    /// Abort instead (the state machine's Catch path).
    #[serde(default)]
    pub abort: bool,
    /// What failed, as Step Functions' Catch gives it (`{"Error", "Cause"}`), for the answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<Value>,
}

/// The plan's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanAnswer {
    /// Whether the work was cut into ranges; if not, `Items` is the one ordinary request.
    pub ranged: bool,
    /// Why it was not, when it was not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Target bucket.
    pub bucket: String,
    /// Target key.
    pub key: String,
    /// The source's size, when announced.
    pub total_bytes: Option<u64>,
    /// The part size, in bytes (ranged only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub part_size: Option<u64>,
    /// Parts in all (ranged only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parts: Option<u32>,
    /// The multipart upload (ranged only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload_id: Option<String>,
    /// The Map's items: `range` requests, or the one ordinary request.
    #[serde(rename = "Items")]
    pub items: Vec<Value>,
    /// The commit's input (`null` when not ranged).
    pub commit: Option<CommitPlan>,
}

/// A child's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RangeAnswer {
    /// 0-based range number.
    pub index: u32,
    /// Its first part number.
    pub first_part: u32,
    /// Parts it uploaded.
    pub parts: u32,
    /// First byte.
    pub start: u64,
    /// Last byte (inclusive).
    pub end: u64,
    /// Bytes uploaded.
    pub bytes: u64,
    /// The range's CRC (its parts' combined), base64 as S3 shows checksums.
    pub checksum: FullObjectChecksum,
    /// Milliseconds.
    pub elapsed_ms: u64,
    /// MiB/s.
    pub mib_per_s: f64,
    /// Reconnections after a cut.
    pub source_resumes: u32,
}

/// The commit's answer after an abort.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Aborted {
    /// Target bucket.
    pub bucket: Option<String>,
    /// Target key.
    pub key: Option<String>,
    /// The upload aborted (none when the plan was not ranged).
    pub upload_id: Option<String>,
    /// Why.
    pub reason: String,
}

/// Any mode's answer, told apart by `status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
#[allow(clippy::large_enum_variant)]
pub enum Answer {
    /// The object is in S3 (an ordinary ingestion, or a commit).
    Complete(Completed),
    /// An ordinary ingestion ran out of time (see its checkpoint).
    Incomplete(Incomplete),
    /// A plan.
    Planned(PlanAnswer),
    /// A range uploaded.
    RangeDone(RangeAnswer),
    /// The upload was aborted: nothing is visible.
    Aborted(Aborted),
}

impl From<crate::IngestResponse> for Answer {
    fn from(r: crate::IngestResponse) -> Answer {
        match r {
            crate::IngestResponse::Complete(c) => Answer::Complete(c),
            crate::IngestResponse::Incomplete(i) => Answer::Incomplete(i),
        }
    }
}

/// `v` as a JSON object with `"mode": mode` added.
fn with_mode(v: &impl Serialize, mode: Mode) -> Result<Value, Error> {
    let mut v = serde_json::to_value(v).map_err(|e| Error::Json {
        what: format!("a {} request", mode.as_str()),
        source: e,
    })?;
    if let Some(obj) = v.as_object_mut() {
        obj.insert("mode".into(), Value::from(mode.as_str()));
    }
    Ok(v)
}

/// A plan's payload (its `mode` taken out): an ordinary request plus `ranges`.
fn plan_request(mut payload: Value) -> Result<(IngestRequest, Option<u32>), Error> {
    let ranges = match payload.as_object_mut().and_then(|o| o.remove("ranges")) {
        None | Some(Value::Null) => None,
        Some(v) => {
            let n = v
                .as_u64()
                .filter(|n| (1..=u64::from(MAX_RANGES)).contains(n))
                .ok_or_else(|| {
                    Error::invalid_input(
                        "ranges",
                        format!("must be an integer from 1 to {MAX_RANGES}"),
                    )
                })?;
            Some(n as u32)
        }
    };
    let request = IngestRequest::from_payload(payload)?;
    if request.resume.is_some() {
        return Err(Error::invalid_input(
            "resume",
            "a plan starts a new ingestion; continue a checkpoint with an ordinary request (no mode)",
        ));
    }
    Ok((request, ranges))
}

/// A checksum algorithm named in a request.
fn algorithm(field: &str, name: &str) -> Result<ChecksumAlgorithm, Error> {
    name.parse().map_err(|e: String| {
        Error::invalid_input(
            field.to_owned(),
            format!("{e}; expected CRC64NVME or CRC32C"),
        )
    })
}

impl Ingester {
    /// How requests of `plan` and their redirects are checked.
    fn hops(&self, plan: &Plan, forward: Option<bool>) -> source::Hops {
        source::Hops {
            policy: Arc::new(self.config.policy.clone()),
            proxied: self.config.source_proxy.is_some(),
            origin: plan.origin.clone(),
            forward_headers: forward.unwrap_or(false),
        }
    }

    /// Adds the headers of `headers_secret_arn`, if the request names one.
    async fn secret_headers(&self, plan: &mut Plan, id: Option<&str>) -> Result<(), Error> {
        if let Some(id) = id {
            let secret = self.secrets.headers(id).await?;
            plan.add_secret_headers(&secret)?;
        }
        Ok(())
    }

    /// `"mode": "plan"`: see the [module docs](self).
    pub(crate) async fn plan(&self, payload: Value) -> Result<Answer, Error> {
        let (request, ranges) = plan_request(payload)?;
        let mut plan = Plan::new(&self.config, &request)?;
        self.secret_headers(&mut plan, request.headers_secret_arn.as_deref())
            .await?;
        let hops = self.hops(&plan, request.forward_headers_on_redirect);
        let probe = source::probe(&self.http, &hops, &plan.url, &plan.headers).await?;
        let total = plan.total(&request, probe.total)?;
        let validator = probe.validator().map(str::to_owned);
        let mut why_not = match (probe.ranges, total, &validator) {
            (false, _, _) => Some("the source does not serve byte ranges".to_owned()),
            (_, None, _) => Some("the source announces no length".to_owned()),
            (_, Some(0), _) => Some("the source is empty".to_owned()),
            (_, _, None) => Some(
                "the source gives no strong ETag or Last-Modified to pin the ranges to".to_owned(),
            ),
            _ => None,
        };
        let mut cut = None;
        if let (None, Some(total)) = (&why_not, total) {
            let part_size = WriterConfig {
                part_size: plan.part_size,
                size_hint: Some(total),
                ..WriterConfig::default()
            }
            .initial_part_size() as u64;
            let layout = Layout::new(total, part_size).map_err(Error::Limit)?;
            let n = ranges
                .unwrap_or_else(|| {
                    total
                        .div_ceil(self.config.range_mib * MIB)
                        .min(u64::from(MAX_RANGES)) as u32
                })
                .min(layout.parts);
            if n <= 1 {
                why_not = Some(format!(
                    "{total} bytes make one range ({} parts of {} MiB{})",
                    layout.parts,
                    part_size / MIB,
                    if ranges.is_some() { "" } else { ", RANGE_MB" }
                ));
            } else {
                cut = Some((layout, layout.spans(n)));
            }
        }
        let (Some((layout, spans)), Some(validator)) = (cut, validator) else {
            let reason = why_not.unwrap_or_default();
            info!(url = %redact(&plan.url), bucket = %plan.bucket, key = %plan.key, reason = %reason,
                "not ranged: one ordinary ingestion");
            let item = IngestRequest {
                bucket: Some(plan.bucket.clone()),
                key: Some(plan.key.clone()),
                ..request
            };
            let item = serde_json::to_value(&item).map_err(|e| Error::Json {
                what: "the ordinary request".into(),
                source: e,
            })?;
            return Ok(Answer::Planned(PlanAnswer {
                ranged: false,
                reason: Some(reason),
                bucket: plan.bucket,
                key: plan.key,
                total_bytes: total,
                part_size: None,
                parts: None,
                upload_id: None,
                items: vec![item],
                commit: None,
            }));
        };
        if request.if_none_match.unwrap_or(false) && self.exists(&plan.bucket, &plan.key).await? {
            return Err(Error::PreconditionFailed {
                bucket: plan.bucket,
                key: plan.key,
                reason: "if_none_match: the object exists".into(),
            });
        }
        let alg = self.config.checksum;
        let content_type = request.content_type.clone().or(probe.content_type.clone());
        let upload_id = self
            .create_upload(&plan.bucket, &plan.key, alg, content_type)
            .await?;
        let answer = self.planned(
            &request,
            &plan,
            layout,
            &spans,
            validator,
            upload_id.clone(),
        );
        let answer = match answer {
            Ok(a) => a,
            Err(e) => {
                let _ =
                    tributary::writer::abort_upload(&self.s3, &plan.bucket, &plan.key, &upload_id)
                        .await;
                return Err(e);
            }
        };
        info!(url = %redact(&plan.url), bucket = %plan.bucket, key = %plan.key, upload_id = %upload_id,
            total = layout.total, parts = layout.parts, part_mib = layout.part_size / MIB,
            ranges = spans.len(), "ranged ingestion planned");
        Ok(answer)
    }

    /// The plan's answer for a ranged ingestion; refused when Step Functions could not pass
    /// it on.
    fn planned(
        &self,
        request: &IngestRequest,
        plan: &Plan,
        layout: Layout,
        spans: &[Span],
        validator: String,
        upload_id: String,
    ) -> Result<Answer, Error> {
        let alg = self.config.checksum;
        let url = request.url.trim().to_owned();
        let mut items = Vec::with_capacity(spans.len());
        for s in spans {
            let item = RangeRequest {
                url: url.clone(),
                bucket: plan.bucket.clone(),
                key: plan.key.clone(),
                upload_id: upload_id.clone(),
                index: s.index,
                start: s.start,
                end: s.end,
                first_part: s.first_part,
                part_size: layout.part_size,
                total_bytes: layout.total,
                validator: validator.clone(),
                checksum_algorithm: alg.as_str().to_owned(),
                concurrency: request.concurrency,
                headers: request.headers.clone(),
                headers_secret_arn: request.headers_secret_arn.clone(),
                forward_headers_on_redirect: request.forward_headers_on_redirect,
            };
            items.push(with_mode(&item, Mode::Range)?);
        }
        let commit = CommitPlan {
            url,
            bucket: plan.bucket.clone(),
            key: plan.key.clone(),
            upload_id: upload_id.clone(),
            total_bytes: layout.total,
            part_size: layout.part_size,
            parts: layout.parts,
            ranges: spans.len() as u32,
            checksum_algorithm: alg.as_str().to_owned(),
            validator,
            expected_sha256: request.expected_sha256.clone(),
            if_none_match: request.if_none_match,
            concurrency: request.concurrency,
        };
        let answer = Answer::Planned(PlanAnswer {
            ranged: true,
            reason: None,
            bucket: plan.bucket.clone(),
            key: plan.key.clone(),
            total_bytes: Some(layout.total),
            part_size: Some(layout.part_size),
            parts: Some(layout.parts),
            upload_id: Some(upload_id),
            items,
            commit: Some(commit),
        });
        let size = serde_json::to_vec(&answer)
            .map(|v| v.len())
            .unwrap_or(usize::MAX);
        if size > MAX_PLAN_ANSWER_BYTES {
            return Err(Error::Limit(format!(
                "a plan of {} ranges is a {size}-byte answer; Step Functions passes at most 256 KiB between states: ask for fewer ranges (or raise RANGE_MB)",
                spans.len()
            )));
        }
        Ok(answer)
    }

    /// Whether `s3://bucket/key` exists.
    async fn exists(&self, bucket: &str, key: &str) -> Result<bool, Error> {
        match self.s3.head_object().bucket(bucket).key(key).send().await {
            Ok(_) => Ok(true),
            Err(e) => match Error::s3("HeadObject", bucket, key, e) {
                Error::NotFound { .. } => Ok(false),
                other => Err(other),
            },
        }
    }

    /// Starts the multipart upload, with the full-object checksum as the ordinary path does.
    async fn create_upload(
        &self,
        bucket: &str,
        key: &str,
        alg: ChecksumAlgorithm,
        content_type: Option<String>,
    ) -> Result<String, Error> {
        let out = self
            .s3
            .create_multipart_upload()
            .bucket(bucket)
            .key(key)
            .checksum_algorithm(alg.sdk())
            .checksum_type(ChecksumType::FullObject)
            .set_content_type(content_type)
            .send()
            .await
            .map_err(|e| Error::s3("CreateMultipartUpload", bucket, key, e))?;
        out.upload_id
            .filter(|id| !id.is_empty())
            .ok_or_else(|| Error::S3 {
                operation: "CreateMultipartUpload",
                bucket: bucket.to_owned(),
                key: key.to_owned(),
                code: None,
                message: "response carried no UploadId".into(),
            })
    }

    /// `"mode": "range"`: see the [module docs](self).
    pub(crate) async fn range(&self, payload: Value) -> Result<Answer, Error> {
        let started = Instant::now();
        let req: RangeRequest = serde_json::from_value(payload)
            .map_err(|e| Error::invalid_input("the range request", e))?;
        let bad = |what: &str, why: String| Error::invalid_input(what.to_owned(), why);
        if !req.part_size.is_multiple_of(MIB) {
            return Err(bad(
                "part_size",
                format!("{} is not a whole number of MiB", req.part_size),
            ));
        }
        let ingest = IngestRequest {
            url: req.url.clone(),
            bucket: Some(req.bucket.clone()),
            key: Some(req.key.clone()),
            part_size_mib: Some(req.part_size / MIB),
            concurrency: req.concurrency,
            headers: req.headers.clone(),
            headers_secret_arn: req.headers_secret_arn.clone(),
            forward_headers_on_redirect: req.forward_headers_on_redirect,
            ..IngestRequest::default()
        };
        let mut plan = Plan::new(&self.config, &ingest)?;
        if req.upload_id.trim().is_empty() {
            return Err(bad("upload_id", "is empty".into()));
        }
        if req.validator.trim().is_empty() {
            return Err(bad("validator", "is empty".into()));
        }
        let alg = algorithm("checksum_algorithm", &req.checksum_algorithm)?;
        let layout =
            Layout::new(req.total_bytes, req.part_size).map_err(|e| bad("total_bytes", e))?;
        let span = layout
            .span_at(req.index, req.first_part, req.start, req.end)
            .map_err(|e| bad("range", e))?;
        self.secret_headers(&mut plan, req.headers_secret_arn.as_deref())
            .await?;
        let hops = self.hops(&plan, req.forward_headers_on_redirect);
        let mut source = Source::open_range(
            self.http.clone(),
            plan.url.clone(),
            plan.headers.clone(),
            hops,
            span.start,
            span.end,
            layout.total,
            &req.validator,
        )
        .await?;
        info!(url = %redact(source.url()), bucket = %plan.bucket, key = %plan.key, index = span.index,
            start = span.start, end = span.end, first_part = span.first_part, parts = span.parts,
            "range started");
        let mut uploader = parts::PartUploader::new(
            self.s3.clone(),
            &plan.bucket,
            &plan.key,
            &req.upload_id,
            alg,
            layout.part_size as usize,
            plan.concurrency,
            span.first_part,
        );
        let mut received = 0u64;
        let mut last_progress = Instant::now();
        while let Some(chunk) = source.next().await? {
            received += chunk.len() as u64;
            if received > span.len() {
                return Err(Error::Integrity {
                    what: redact(source.url()),
                    reason: format!(
                        "range {}-{} sent more than its {} bytes",
                        span.start,
                        span.end,
                        span.len()
                    ),
                });
            }
            uploader.write(&chunk).await?;
            if last_progress.elapsed() >= self.config.progress_interval {
                last_progress = Instant::now();
                let secs = started.elapsed().as_secs_f64().max(1e-3);
                info!(key = %plan.key, index = span.index, bytes = received, of = span.len(),
                    parts = uploader.parts_uploaded(),
                    mib_per_s = format!("{:.1}", received as f64 / MIB as f64 / secs), "range progress");
            }
        }
        if received != span.len() {
            return Err(Error::Integrity {
                what: redact(source.url()),
                reason: format!(
                    "range {}-{}: received {received} of its {} bytes",
                    span.start,
                    span.end,
                    span.len()
                ),
            });
        }
        let done = uploader.finish().await?;
        let mut crc = alg.empty();
        for (i, p) in done.iter().enumerate() {
            let number = span.first_part + i as u32;
            if p.number != number || p.len != layout.part_len(number) {
                return Err(Error::Internal(format!(
                    "range {}: part {} of {} bytes where part {number} of {} was due",
                    span.index,
                    p.number,
                    p.len,
                    layout.part_len(number)
                )));
            }
            crc = alg.combine(crc, p.crc, p.len);
        }
        if done.len() as u32 != span.parts {
            return Err(Error::Internal(format!(
                "range {}: {} parts uploaded, {} due",
                span.index,
                done.len(),
                span.parts
            )));
        }
        let elapsed_ms = started.elapsed().as_millis() as u64;
        let secs = (elapsed_ms as f64 / 1000.0).max(1e-6);
        let mib_per_s = (received as f64 / MIB as f64 / secs * 100.0).round() / 100.0;
        info!(key = %plan.key, index = span.index, bytes = received, parts = span.parts, mib_per_s,
            "range uploaded");
        Ok(Answer::RangeDone(RangeAnswer {
            index: span.index,
            first_part: span.first_part,
            parts: span.parts,
            start: span.start,
            end: span.end,
            bytes: received,
            checksum: FullObjectChecksum {
                algorithm: alg.as_str().to_owned(),
                value: alg.encode(crc),
            },
            elapsed_ms,
            mib_per_s,
            source_resumes: source.resumes(),
        }))
    }
}
