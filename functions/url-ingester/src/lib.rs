//! url-ingester: streams an HTTP(S) download straight into S3, never touching disk.
//!
//! The body flows through [`tributary::S3Writer`]: memory stays within
//! `part_size x (concurrency + 1)` plus a small constant whatever the size, parts upload in
//! parallel with retries, and the object appears only when the whole body arrived and passed
//! its checks; any failure aborts the multipart upload. See [`Ingester::run`] for the steps.
//!
//! The rooms: [`config`] (the environment), [`request`] (the request, the plan, and every
//! check of the request and of a resume's checkpoint), [`guard`] (the SSRF guard), [`source`]
//! (the download), [`upload`] (the writer and the SHA-256 kept at part boundaries),
//! [`checkpoint`] (the resume document), [`secrets`] (request headers read from Secrets
//! Manager), [`ranged`] (one large source in parallel ranges: the `plan`, `range` and
//! `commit` modes); this file holds the handler and its steps.

pub mod checkpoint;
pub mod config;
pub mod guard;
pub mod ranged;
pub mod request;
pub mod secrets;
pub mod source;
pub mod upload;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use lambda_runtime::LambdaEvent;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};
use tributary::checksum::FullObjectChecksum;
use tributary::observability::Metrics;
use tributary::{Env, Error, S3Writer};

use crate::checkpoint::{Checkpoint, ResumableSha256, VERSION};
use crate::request::Plan;
use crate::secrets::{Secrets, SecretsSettings};
use crate::source::{Source, redact};
use crate::upload::HashedUpload;

pub use crate::config::Config;
pub use crate::ranged::{Answer, Mode};
pub use crate::request::{IngestRequest, MAX_KEY_BYTES, check_bucket_name, file_name};

const MIB: u64 = 1024 * 1024;

/// The answer: the object, or where to continue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum IngestResponse {
    /// The object is in S3.
    Complete(Completed),
    /// Time ran out: continue with `{"resume": checkpoint, ...}`.
    Incomplete(Incomplete),
}

/// A completed ingestion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Completed {
    /// Bucket.
    pub bucket: String,
    /// Key.
    pub key: String,
    /// Version id, on a versioned bucket.
    pub version_id: Option<String>,
    /// ETag of the object.
    pub etag: Option<String>,
    /// Size in bytes.
    pub bytes: u64,
    /// Parts uploaded (1 for a single PutObject).
    pub parts: u32,
    /// Full-object checksum stored with the object.
    pub checksum: FullObjectChecksum,
    /// SHA-256 of the content, hex.
    pub sha256: String,
    /// Milliseconds, over every invocation.
    pub elapsed_ms: u64,
    /// Throughput over every invocation, MiB/s.
    pub mib_per_s: f64,
    /// Invocations it took.
    pub invocations: u32,
    /// Times the download continued with a Range request after a cut (this invocation).
    pub source_resumes: u32,
}

/// An interrupted ingestion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Incomplete {
    /// Bytes safely in S3 so far.
    pub bytes: u64,
    /// Total size, when known.
    pub total_bytes: Option<u64>,
    /// Whether the function re-invoked itself to continue (`CONTINUE_ASYNC`).
    pub continued_async: bool,
    /// Pass this back as `resume` to continue.
    pub checkpoint: Checkpoint,
}

/// The function: configuration and clients, built once per cold start.
#[derive(Debug, Clone)]
pub struct Ingester {
    config: Config,
    s3: aws_sdk_s3::Client,
    http: reqwest::Client,
    lambda: Option<aws_sdk_lambda::Client>,
    /// Secrets Manager, for requests with `headers_secret_arn` (its client made on first use).
    secrets: Arc<Secrets>,
}

/// One leg of an ingestion under way: what [`Ingester::begin`] opened.
#[derive(Debug)]
struct Leg {
    request: IngestRequest,
    plan: Plan,
    source: Source,
    upload: HashedUpload,
    /// The content's size, when known.
    total: Option<u64>,
    /// Where this leg started (the checkpoint's offset, or 0).
    start_offset: u64,
    /// Invocations so far, this one included.
    invocations: u32,
    /// Milliseconds spent in earlier legs.
    earlier_ms: u64,
    started: Instant,
}

/// How [`Ingester::stream`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Streamed {
    /// The source's body ended.
    Ended,
    /// The deadline came near first.
    DeadlineNear,
}

impl Ingester {
    /// Builds the HTTP client (with the SSRF guard) around `config`. Secrets Manager is
    /// reached through the SDK's own endpoint and credentials chain unless
    /// [`Ingester::with_secrets`] says otherwise.
    pub fn new(
        config: Config,
        s3: aws_sdk_s3::Client,
        lambda: Option<aws_sdk_lambda::Client>,
    ) -> tributary::Result<Ingester> {
        Ok(Ingester {
            http: config.http_client()?,
            config,
            s3,
            lambda,
            secrets: Arc::new(Secrets::new(SecretsSettings::default())),
        })
    }

    /// The same ingester reading `headers_secret_arn` through `settings`.
    pub fn with_secrets(mut self, settings: SecretsSettings) -> Ingester {
        self.secrets = Arc::new(Secrets::new(settings));
        self
    }

    /// Reads the configuration and builds every client.
    pub async fn from_env(env: &Env) -> tributary::Result<Ingester> {
        let config = Config::from_env(env)?;
        let settings = tributary::s3::S3Settings::from_env(env)?;
        let s3 = settings.build_client().await;
        let lambda = if config.continue_async {
            let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
                .load()
                .await;
            Some(aws_sdk_lambda::Client::new(&shared))
        } else {
            None
        };
        Ok(Ingester::new(config, s3, lambda)?.with_secrets(SecretsSettings::from_env(env)?))
    }

    /// The Lambda handler.
    pub async fn handle(
        &self,
        event: LambdaEvent<serde_json::Value>,
    ) -> Result<IngestResponse, Error> {
        let (payload, ctx) = event.into_parts();
        let request = IngestRequest::from_payload(payload)?;
        let deadline = (ctx.deadline > 0).then(|| UNIX_EPOCH + Duration::from_millis(ctx.deadline));
        let arn = Some(ctx.invoked_function_arn.clone()).filter(|a| !a.is_empty());
        // Boxed: the SDK's and the HTTP client's futures nest deep, and the whole ingestion in
        // the runtime loop's state machine would pass the compiler's layout depth limit.
        let result = Box::pin(self.run(request, deadline, arn)).await;
        if let Err(e) = &result {
            warn!(request_id = %ctx.request_id, error_type = e.error_type(), "{e}");
        }
        result
    }

    /// The Lambda handler of the binary: the request's `"mode"` chooses what it does. No
    /// mode is the ordinary ingestion ([`Ingester::handle`]); `plan`, `range` and `commit`
    /// are the steps of a ranged ingestion ([`ranged`]).
    pub async fn dispatch(&self, event: LambdaEvent<serde_json::Value>) -> Result<Answer, Error> {
        let (mut payload, ctx) = event.into_parts();
        let mode = match Mode::take(&mut payload) {
            Ok(Some(mode)) => mode,
            Ok(None) => {
                return self
                    .handle(LambdaEvent::new(payload, ctx))
                    .await
                    .map(Answer::from);
            }
            Err(e) => {
                warn!(request_id = %ctx.request_id, error_type = e.error_type(), "{e}");
                return Err(e);
            }
        };
        // Boxed, as in `handle`: the futures nest deep.
        let result = match mode {
            Mode::Plan => Box::pin(self.plan(payload)).await,
            Mode::Range => Box::pin(self.range(payload)).await,
            Mode::Commit => Box::pin(self.commit(payload)).await,
        };
        if let Err(e) = &result {
            warn!(request_id = %ctx.request_id, mode = mode.as_str(), error_type = e.error_type(), "{e}");
        }
        result
    }

    /// One ingestion (or one leg of it), in four steps:
    ///
    /// 1. `begin`: validate the request, the URL (SSRF guard) and, on resume, the
    ///    checkpoint; read the headers of `headers_secret_arn`; open the download (continuing at the checkpoint's offset with
    ///    `Range`/`If-Range`) and the upload (or continue the checkpoint's);
    /// 2. `stream`: the body into the upload, hashing as it goes, logging
    ///    progress, until it ends or the deadline nears;
    /// 3. at the end, `verify_and_finish`: check length,
    ///    `expected_size` and `expected_sha256`, then complete; on any failure abort the
    ///    upload, so nothing is half-written;
    /// 4. when the deadline nears, `checkpoint`: finish the parts in
    ///    flight and return a checkpoint (and re-invoke asynchronously with it when
    ///    `CONTINUE_ASYNC=true`).
    pub async fn run(
        &self,
        request: IngestRequest,
        deadline: Option<SystemTime>,
        function_arn: Option<String>,
    ) -> Result<IngestResponse, Error> {
        let leg = self.begin(request).await?;
        match self.stream(leg, deadline).await? {
            (leg, Streamed::Ended) => self.verify_and_finish(leg).await,
            (leg, Streamed::DeadlineNear) => self.checkpoint(leg, function_arn).await,
        }
    }

    /// Every check before any byte moves, then the download and the upload opened.
    async fn begin(&self, request: IngestRequest) -> Result<Leg, Error> {
        let started = Instant::now();
        let mut plan = Plan::new(&self.config, &request)?;
        // Read on every leg: a continuation carries the secret's name, never its values.
        if let Some(id) = &request.headers_secret_arn {
            let secret = self.secrets.headers(id).await?;
            plan.add_secret_headers(&secret)?;
        }
        let mut cfg = plan.writer_config(&request, &self.config);
        let hasher = match &plan.resume {
            Some(cp) => Some(request::resume::check(&self.s3, &plan, cp, &cfg).await?),
            None => None,
        };
        let start_offset = plan.resume.as_ref().map_or(0, |c| c.upload.bytes);
        let validator = plan
            .resume
            .as_ref()
            .and_then(|c| c.validator().map(str::to_owned));
        let source = Source::open(
            self.http.clone(),
            plan.url.clone(),
            plan.headers.clone(),
            source::Hops {
                policy: Arc::new(self.config.policy.clone()),
                proxied: self.config.source_proxy.is_some(),
                origin: plan.origin.clone(),
                forward_headers: request.forward_headers_on_redirect.unwrap_or(false),
            },
            start_offset,
            validator.as_deref(),
        )
        .await?;
        let total = plan.total(&request, source.total)?;
        if plan.resume.is_none() {
            cfg.size_hint = total;
        }
        cfg.content_type = request.content_type.clone().or(source.content_type.clone());
        let (writer, hasher, invocations, earlier_ms) = match (&plan.resume, hasher) {
            (Some(cp), Some(hasher)) => (
                S3Writer::resume(
                    self.s3.clone(),
                    &plan.bucket,
                    &plan.key,
                    cfg,
                    cp.upload.clone(),
                )
                .map_err(|p| {
                    Error::invalid_input(format!("resume.upload.{}", p.field), p.reason)
                })?,
                hasher,
                cp.invocations.saturating_add(1),
                cp.elapsed_ms,
            ),
            _ => (
                S3Writer::new(self.s3.clone(), &plan.bucket, &plan.key, cfg),
                ResumableSha256::default(),
                1,
                0,
            ),
        };
        info!(url = %redact(source.url()), bucket = %plan.bucket, key = %plan.key, offset = start_offset,
            total = ?total, part_mib = plan.part_size as u64 / MIB, concurrency = plan.concurrency,
            "ingestion started");
        Ok(Leg {
            upload: HashedUpload::new(writer, hasher, start_offset),
            request,
            plan,
            source,
            total,
            start_offset,
            invocations,
            earlier_ms,
            started,
        })
    }

    /// The source's body into the upload, until it ends or less than `DEADLINE_MARGIN_SECS`
    /// is left. On error the upload is aborted.
    async fn stream(
        &self,
        mut leg: Leg,
        deadline: Option<SystemTime>,
    ) -> Result<(Leg, Streamed), Error> {
        let mut last_progress = Instant::now();
        loop {
            if let Some(deadline) = deadline
                && deadline
                    .duration_since(SystemTime::now())
                    .unwrap_or_default()
                    < self.config.deadline_margin
            {
                return Ok((leg, Streamed::DeadlineNear));
            }
            let chunk = match leg.source.next().await {
                Ok(Some(c)) => c,
                Ok(None) => return Ok((leg, Streamed::Ended)),
                Err(e) => return Err(leg.upload.abort(e).await),
            };
            // On error the writer has already aborted its upload.
            leg.upload.write(&chunk).await?;
            if last_progress.elapsed() >= self.config.progress_interval {
                last_progress = Instant::now();
                log_progress(&leg);
            }
        }
    }

    /// Stops at the last part boundary and answers with a checkpoint (re-invoking the
    /// function with it when `CONTINUE_ASYNC=true`).
    async fn checkpoint(
        &self,
        leg: Leg,
        function_arn: Option<String>,
    ) -> Result<IngestResponse, Error> {
        let Leg {
            request,
            plan,
            source,
            upload,
            total,
            start_offset,
            invocations,
            earlier_ms,
            started,
        } = leg;
        let (upload, hasher) = upload.checkpoint().await?;
        let checkpoint = Checkpoint {
            version: VERSION,
            url: source.url().to_string(),
            bucket: plan.bucket.clone(),
            key: plan.key.clone(),
            total_bytes: total,
            source_etag: source.etag.clone(),
            source_last_modified: source.last_modified.clone(),
            sha256_state: hasher.save(),
            invocations,
            elapsed_ms: earlier_ms.saturating_add(started.elapsed().as_millis() as u64),
            upload,
        };
        let bytes = checkpoint.upload.bytes;
        let continued_async = self
            .continue_async(&request, &checkpoint, function_arn)
            .await?;
        info!(bucket = %plan.bucket, key = %plan.key, bytes, continued_async,
            "deadline near: stopped with a checkpoint");
        // A checkpoint never covers less than the leg started from (validated resume),
        // but a count must not wrap if it ever did.
        self.emit(&plan, bytes.saturating_sub(start_offset), started, false);
        Ok(IngestResponse::Incomplete(Incomplete {
            bytes,
            total_bytes: total,
            continued_async,
            checkpoint,
        }))
    }

    /// The whole body is here: checks it (announced length, `expected_size`,
    /// `expected_sha256`) before the object becomes visible, then completes it. On any
    /// failure the upload is aborted.
    async fn verify_and_finish(&self, leg: Leg) -> Result<IngestResponse, Error> {
        let offset = leg.upload.offset();
        let sha256 = leg.upload.sha256();
        let mut problems = Vec::new();
        if let Some(t) = leg.total
            && t != offset
        {
            problems.push(format!("received {offset} bytes, the source announced {t}"));
        }
        if let Some(expected) = leg.request.expected_size
            && expected != offset
        {
            problems.push(format!(
                "expected_size is {expected} bytes, received {offset}"
            ));
        }
        if let Some(expected) = &leg.request.expected_sha256
            && !expected.eq_ignore_ascii_case(&sha256)
        {
            problems.push(format!(
                "expected_sha256 is {expected}, the content's is {sha256}"
            ));
        }
        if !problems.is_empty() {
            let err = Error::Integrity {
                what: redact(leg.source.url()),
                reason: problems.join("; ") + "; nothing was written",
            };
            return Err(leg.upload.abort(err).await);
        }
        let out = leg.upload.finish().await?;
        let elapsed_ms = leg
            .earlier_ms
            .saturating_add(leg.started.elapsed().as_millis() as u64);
        let secs = (elapsed_ms as f64 / 1000.0).max(1e-6);
        let completed = Completed {
            bucket: out.bucket,
            key: out.key,
            version_id: out.version_id,
            etag: out.etag,
            bytes: out.bytes,
            parts: out.parts,
            checksum: out.checksum,
            sha256,
            elapsed_ms,
            mib_per_s: (offset as f64 / MIB as f64 / secs * 100.0).round() / 100.0,
            invocations: leg.invocations,
            source_resumes: leg.source.resumes(),
        };
        info!(bucket = %completed.bucket, key = %completed.key, bytes = completed.bytes,
            parts = completed.parts, mib_per_s = completed.mib_per_s, sha256 = %completed.sha256,
            "ingestion complete");
        self.emit(
            &leg.plan,
            offset.saturating_sub(leg.start_offset),
            leg.started,
            true,
        );
        Ok(IngestResponse::Complete(completed))
    }

    fn emit(&self, plan: &Plan, bytes: u64, started: Instant, complete: bool) {
        let elapsed = started.elapsed();
        let mut m = Metrics::new(&self.config.metrics_namespace, "url-ingester");
        m.bytes("BytesIngested", bytes)
            .duration("Duration", elapsed)
            .put(
                "Throughput",
                bytes as f64 / elapsed.as_secs_f64().max(1e-6),
                tributary::observability::Unit::BytesPerSecond,
            )
            .count("Completed", u64::from(complete))
            .count("Checkpointed", u64::from(!complete))
            .property("Bucket", plan.bucket.clone())
            .property("Key", plan.key.clone());
        m.emit();
    }

    async fn continue_async(
        &self,
        request: &IngestRequest,
        checkpoint: &Checkpoint,
        function_arn: Option<String>,
    ) -> Result<bool, Error> {
        if !self.config.continue_async {
            return Ok(false);
        }
        let (Some(lambda), Some(arn)) = (&self.lambda, function_arn) else {
            warn!(
                "CONTINUE_ASYNC is set but this invocation has no function ARN; returning the checkpoint"
            );
            return Ok(false);
        };
        let next = IngestRequest {
            resume: Some(checkpoint.clone()),
            url: checkpoint.url.clone(),
            bucket: Some(checkpoint.bucket.clone()),
            key: Some(checkpoint.key.clone()),
            ..request.clone()
        };
        let payload = serde_json::to_vec(&next).map_err(|e| Error::Json {
            what: "the continuation request".into(),
            source: e,
        })?;
        lambda
            .invoke()
            .function_name(&arn)
            .invocation_type(aws_sdk_lambda::types::InvocationType::Event)
            .payload(aws_sdk_lambda::primitives::Blob::new(payload))
            .send()
            .await
            .map_err(|e| Error::invoke(arn.as_str(), e))?;
        Ok(true)
    }
}

fn log_progress(leg: &Leg) {
    let (offset, total) = (leg.upload.offset(), leg.total);
    let secs = leg.started.elapsed().as_secs_f64().max(1e-3);
    let rate = offset.saturating_sub(leg.start_offset) as f64 / secs;
    let eta = total
        .filter(|t| *t > offset && rate > 0.0)
        .map(|t| format!("{:.0}s", (t - offset) as f64 / rate));
    info!(key = %leg.plan.key, bytes = offset, total = ?total, parts = leg.upload.parts_uploaded(),
        mib_per_s = format!("{:.1}", rate / MIB as f64), eta = eta.as_deref().unwrap_or("unknown"),
        "progress");
}
