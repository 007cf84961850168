//! url-ingester: streams an HTTP(S) download straight into S3, never touching disk.
//!
//! The body flows through [`tributary::S3Writer`]: memory stays within
//! `part_size x (concurrency + 1)` plus a small constant whatever the size, parts upload in
//! parallel with retries, and the object appears only when the whole body arrived and passed
//! its checks; any failure aborts the multipart upload. See [`Ingester::run`] for the steps,
//! [`guard`] for the SSRF guard and [`checkpoint`] for resuming across invocations.

pub mod checkpoint;
pub mod guard;
pub mod source;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use lambda_runtime::LambdaEvent;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};
use tributary::checksum::{ChecksumAlgorithm, FullObjectChecksum};
use tributary::observability::Metrics;
use tributary::{Env, Error, S3Writer, WriterConfig};

use crate::checkpoint::{Checkpoint, ResumableSha256, VERSION};
use crate::guard::{GuardedResolver, Policy};
use crate::source::{Source, redact};

const MIB: u64 = 1024 * 1024;

/// Configuration, read once at cold start.
#[derive(Debug, Clone)]
pub struct Config {
    /// Bucket when the request names none (`DEFAULT_BUCKET`).
    pub default_bucket: Option<String>,
    /// Key prefix when the request names no key (`DEFAULT_PREFIX`, default `raw/`).
    pub default_prefix: String,
    /// Part size in MiB (`PART_SIZE_MIB`, default 16, 5..=5120).
    pub part_size_mib: u64,
    /// Parts uploaded at once (`CONCURRENCY`, default 4, 1..=64).
    pub concurrency: usize,
    /// Where downloads may go (`ALLOW_PRIVATE_NETWORKS`, `ALLOWED_HOSTS`).
    pub policy: Policy,
    /// HTTP(S) proxy for downloads (`SOURCE_PROXY`). The usual `HTTP_PROXY`, `HTTPS_PROXY`,
    /// `ALL_PROXY` variables are ignored; through the proxy the guard still checks every name
    /// and address before a request leaves.
    pub source_proxy: Option<reqwest::Url>,
    /// Stop and checkpoint when less than this much time is left (`DEADLINE_MARGIN_SECS`, 30).
    pub deadline_margin: Duration,
    /// Re-invoke the function with the checkpoint when stopped (`CONTINUE_ASYNC`).
    pub continue_async: bool,
    /// TCP/TLS connect timeout (`CONNECT_TIMEOUT_SECS`, default 10).
    pub connect_timeout: Duration,
    /// Longest silence while reading the body (`READ_TIMEOUT_SECS`, default 30).
    pub read_timeout: Duration,
    /// Between progress log lines (`PROGRESS_INTERVAL_SECS`, default 5).
    pub progress_interval: Duration,
    /// Full-object checksum (`CHECKSUM_ALGORITHM`: CRC64NVME default, or CRC32C).
    pub checksum: ChecksumAlgorithm,
    /// Namespace of the EMF metrics (`METRICS_NAMESPACE`, default `Tributary`).
    pub metrics_namespace: String,
}

impl Config {
    /// Reads and validates the configuration; errors name the variable.
    pub fn from_env(env: &Env) -> tributary::Result<Config> {
        Ok(Config {
            default_bucket: env.get("DEFAULT_BUCKET").map(str::to_owned),
            default_prefix: env.string_or("DEFAULT_PREFIX", "raw/"),
            part_size_mib: env.int_in("PART_SIZE_MIB", 16u64, 5, 5120)?,
            concurrency: env.int_in("CONCURRENCY", 4usize, 1, 64)?,
            policy: {
                let raw = env.string_or("ALLOW_PRIVATE_NETWORKS", "false");
                let (allow_private, allowed_networks) = guard::parse_private_networks(&raw)
                    .map_err(|why| {
                        Error::config(
                            "ALLOW_PRIVATE_NETWORKS",
                            &raw,
                            why,
                            "true, false, or comma-separated CIDRs such as 10.20.0.0/16",
                        )
                    })?;
                Policy {
                    allow_private,
                    allowed_networks,
                    allowed_hosts: env.list("ALLOWED_HOSTS"),
                }
            },
            source_proxy: match env.get("SOURCE_PROXY").map(str::trim) {
                None | Some("") => None,
                Some(raw) => Some(
                    reqwest::Url::parse(raw)
                        .ok()
                        .filter(|u| matches!(u.scheme(), "http" | "https") && u.has_host())
                        .ok_or_else(|| {
                            Error::config(
                                "SOURCE_PROXY",
                                raw,
                                "not an http or https URL",
                                "a proxy URL such as http://proxy.internal:3128",
                            )
                        })?,
                ),
            },
            deadline_margin: Duration::from_secs(env.int_in(
                "DEADLINE_MARGIN_SECS",
                30u64,
                1,
                600,
            )?),
            continue_async: env.bool_or("CONTINUE_ASYNC", false)?,
            connect_timeout: Duration::from_secs(env.int_in(
                "CONNECT_TIMEOUT_SECS",
                10u64,
                1,
                300,
            )?),
            read_timeout: Duration::from_secs(env.int_in("READ_TIMEOUT_SECS", 30u64, 1, 900)?),
            progress_interval: Duration::from_secs(env.int_in(
                "PROGRESS_INTERVAL_SECS",
                5u64,
                1,
                3600,
            )?),
            checksum: env.parse_or(
                "CHECKSUM_ALGORITHM",
                ChecksumAlgorithm::Crc64Nvme,
                "CRC64NVME or CRC32C",
            )?,
            metrics_namespace: env.string_or("METRICS_NAMESPACE", "Tributary"),
        })
    }
}

/// The invocation payload.
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestRequest {
    /// What to download (http or https).
    pub url: String,
    /// Target bucket (default `DEFAULT_BUCKET`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket: Option<String>,
    /// Target key (default `DEFAULT_PREFIX` + the URL's file name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Part size in MiB, 5..=5120.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub part_size_mib: Option<u64>,
    /// Parts uploaded at once, 1..=64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<usize>,
    /// SHA-256 the content must have (hex); checked before the object is completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_sha256: Option<String>,
    /// Size the content must have; checked before the object is completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_size: Option<u64>,
    /// `Content-Type` to store (default: the source's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// Request headers for the source (e.g. `Authorization`); never logged. They go only to
    /// the URL's origin (scheme, host, port): a redirect elsewhere is followed without them.
    /// `Host` is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<BTreeMap<String, String>>,
    /// Send `headers` on after a redirect to another origin too (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forward_headers_on_redirect: Option<bool>,
    /// Refuse to overwrite an existing object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub if_none_match: Option<bool>,
    /// Continue an earlier, interrupted ingestion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume: Option<Checkpoint>,
}

impl std::fmt::Debug for IngestRequest {
    // Hand-written: header values (credentials) never reach a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let url = reqwest::Url::parse(&self.url)
            .map(|u| redact(&u))
            .unwrap_or_else(|_| "<invalid URL>".to_owned());
        f.debug_struct("IngestRequest")
            .field("url", &url)
            .field("bucket", &self.bucket)
            .field("key", &self.key)
            .field(
                "headers",
                &self.headers.as_ref().map(|h| h.keys().collect::<Vec<_>>()),
            )
            .field("resume", &self.resume.is_some())
            .finish_non_exhaustive()
    }
}

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
}

impl Ingester {
    /// Builds the HTTP client (with the SSRF guard) around `config`.
    pub fn new(
        config: Config,
        s3: aws_sdk_s3::Client,
        lambda: Option<aws_sdk_lambda::Client>,
    ) -> tributary::Result<Ingester> {
        let policy = Arc::new(config.policy.clone());
        let resolver = GuardedResolver::new(policy).exempt(
            config
                .source_proxy
                .as_ref()
                .and_then(|u| u.host_str().map(str::to_owned)),
        );
        // Proxies come from SOURCE_PROXY only, never from the process environment.
        let mut builder = reqwest::Client::builder().no_proxy();
        if let Some(proxy) = &config.source_proxy {
            let proxy = reqwest::Proxy::all(proxy.as_str()).map_err(|e| {
                Error::config(
                    "SOURCE_PROXY",
                    proxy.as_str(),
                    e.to_string(),
                    "a proxy URL such as http://proxy.internal:3128",
                )
            })?;
            builder = builder.proxy(proxy);
        }
        let http = builder
            .user_agent(concat!(
                "tributary-url-ingester/",
                env!("CARGO_PKG_VERSION")
            ))
            .connect_timeout(config.connect_timeout)
            .read_timeout(config.read_timeout)
            .dns_resolver(Arc::new(resolver))
            // Redirects are followed by `source`, which checks every hop and decides which
            // headers go along.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| {
                Error::config("(HTTP client)", "", e.to_string(), "a working TLS set-up")
            })?;
        Ok(Ingester {
            config,
            s3,
            http,
            lambda,
        })
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
        Ingester::new(config, s3, lambda)
    }

    /// The Lambda handler.
    pub async fn handle(
        &self,
        event: LambdaEvent<serde_json::Value>,
    ) -> Result<IngestResponse, Error> {
        let (payload, ctx) = event.into_parts();
        if !payload.is_object() {
            return Err(Error::invalid_event(
                "an ingest request object such as {\"url\": \"https://...\"}",
                format!("the payload is {}", json_kind(&payload)),
            ));
        }
        let request: IngestRequest = serde_json::from_value(payload)
            .map_err(|e| Error::invalid_input("the ingest request", e))?;
        let deadline = (ctx.deadline > 0).then(|| UNIX_EPOCH + Duration::from_millis(ctx.deadline));
        let arn = Some(ctx.invoked_function_arn.clone()).filter(|a| !a.is_empty());
        let result = self.run(request, deadline, arn).await;
        if let Err(e) = &result {
            warn!(request_id = %ctx.request_id, error_type = e.error_type(), "{e}");
        }
        result
    }

    /// One ingestion (or one leg of it):
    ///
    /// 1. validate the request, the URL (SSRF guard) and, on resume, the checkpoint;
    /// 2. open the download (continuing at the checkpoint's offset with `Range`/`If-Range`);
    /// 3. stream it into the writer, hashing as it goes, logging progress;
    /// 4. at the end check length, `expected_size` and `expected_sha256`, then complete;
    ///    on any failure abort the upload, so nothing is half-written;
    /// 5. when the deadline nears: finish the parts in flight and return a checkpoint (and
    ///    re-invoke asynchronously with it when `CONTINUE_ASYNC=true`).
    pub async fn run(
        &self,
        request: IngestRequest,
        deadline: Option<SystemTime>,
        function_arn: Option<String>,
    ) -> Result<IngestResponse, Error> {
        let started = Instant::now();
        let plan = self.plan(&request)?;
        let resume = request.resume.clone();
        // The upload is cut by the same rule on every leg: a resumed one by the size the first
        // leg knew (the checkpoint's total), so the part sizes the checkpoint lists still hold.
        let mut cfg = WriterConfig {
            part_size: plan.part_size,
            concurrency: plan.concurrency,
            checksum: self.config.checksum,
            size_hint: resume.as_ref().and_then(|c| c.total_bytes),
            if_none_match: request.if_none_match.unwrap_or(false),
            ..WriterConfig::default()
        };
        // Every check of the checkpoint comes before any byte moves.
        let resumed = match &resume {
            Some(cp) => {
                let hasher = cp.validate(&cfg)?;
                self.check_upload_listed(&plan, cp).await?;
                Some((cp, hasher))
            }
            None => None,
        };
        let start_offset = resume.as_ref().map_or(0, |c| c.upload.bytes);
        let validator = resume
            .as_ref()
            .and_then(|c| c.validator().map(str::to_owned));
        let mut source = Source::open(
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
        let total = match &resume {
            Some(c) => {
                if let (Some(announced), Some(recorded)) = (source.total, c.total_bytes)
                    && announced != recorded
                {
                    return Err(Error::invalid_input(
                        "resume.total_bytes",
                        format!("is {recorded}, the source now announces {announced} bytes"),
                    ));
                }
                c.total_bytes.or(source.total)
            }
            None => source.total,
        };
        if let (Some(expected), Some(total)) = (request.expected_size, total)
            && expected != total
        {
            return Err(Error::Integrity {
                what: redact(&plan.url),
                reason: format!("expected_size is {expected} bytes, the source announces {total}"),
            });
        }
        if resume.is_none() {
            cfg.size_hint = total;
        }
        cfg.content_type = request.content_type.clone().or(source.content_type.clone());
        let (mut writer, mut hasher, invocations, earlier_ms) = match resumed {
            Some((cp, hasher)) => (
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
            None => (
                S3Writer::new(self.s3.clone(), &plan.bucket, &plan.key, cfg),
                ResumableSha256::default(),
                1,
                0,
            ),
        };
        info!(url = %redact(source.url()), bucket = %plan.bucket, key = %plan.key, offset = start_offset,
            total = ?total, part_mib = plan.part_size as u64 / MIB, concurrency = plan.concurrency,
            "ingestion started");

        // The hash state at the last part boundary: what a checkpoint can resume from.
        let mut boundary = (start_offset, hasher.clone());
        let mut offset = start_offset;
        let mut last_progress = Instant::now();
        let mut stopped_early = false;
        loop {
            if let Some(deadline) = deadline
                && deadline
                    .duration_since(SystemTime::now())
                    .unwrap_or_default()
                    < self.config.deadline_margin
            {
                stopped_early = true;
                break;
            }
            let chunk = match source.next().await {
                Ok(Some(c)) => c,
                Ok(None) => break,
                Err(e) => return Err(abort(writer, e).await),
            };
            let mut rest: &[u8] = &chunk;
            while !rest.is_empty() {
                let n = rest.len().min(writer.room_in_part().max(1));
                hasher.update(&rest[..n]);
                // On error the writer has already aborted its upload.
                writer.write(&rest[..n]).await?;
                offset += n as u64;
                rest = &rest[n..];
                if writer.room_in_part() == 0 {
                    boundary = (offset, hasher.clone());
                }
            }
            if last_progress.elapsed() >= self.config.progress_interval {
                last_progress = Instant::now();
                log_progress(
                    &plan,
                    offset,
                    start_offset,
                    total,
                    writer.parts_uploaded(),
                    started,
                );
            }
        }

        if stopped_early {
            let upload = writer.checkpoint().await?;
            let hasher = if upload.bytes == boundary.0 {
                boundary.1
            } else if upload.bytes == 0 {
                ResumableSha256::default()
            } else {
                return Err(Error::Internal(format!(
                    "checkpoint at byte {} does not match the last part boundary {}",
                    upload.bytes, boundary.0
                )));
            };
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
            return Ok(IngestResponse::Incomplete(Incomplete {
                bytes,
                total_bytes: total,
                continued_async,
                checkpoint,
            }));
        }

        // The whole body is here: check it before the object becomes visible.
        let sha256 = hasher.hex();
        let mut problems = Vec::new();
        if let Some(t) = total
            && t != offset
        {
            problems.push(format!("received {offset} bytes, the source announced {t}"));
        }
        if let Some(expected) = request.expected_size
            && expected != offset
        {
            problems.push(format!(
                "expected_size is {expected} bytes, received {offset}"
            ));
        }
        if let Some(expected) = &request.expected_sha256
            && !expected.eq_ignore_ascii_case(&sha256)
        {
            problems.push(format!(
                "expected_sha256 is {expected}, the content's is {sha256}"
            ));
        }
        if !problems.is_empty() {
            let err = Error::Integrity {
                what: redact(source.url()),
                reason: problems.join("; ") + "; nothing was written",
            };
            return Err(abort(writer, err).await);
        }
        let out = writer.finish().await?;
        let elapsed_ms = earlier_ms.saturating_add(started.elapsed().as_millis() as u64);
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
            invocations,
            source_resumes: source.resumes(),
        };
        info!(bucket = %completed.bucket, key = %completed.key, bytes = completed.bytes,
            parts = completed.parts, mib_per_s = completed.mib_per_s, sha256 = %completed.sha256,
            "ingestion complete");
        self.emit(&plan, offset.saturating_sub(start_offset), started, true);
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

    /// Asks S3 whether the checkpoint's upload is still open and holds the checkpoint's parts
    /// as listed (size, and ETag and CRC where the store reports them), with ListParts; where
    /// ListParts is not implemented, whether ListMultipartUploads still lists the upload; a
    /// store that implements neither is trusted, with a warning.
    async fn check_upload_listed(&self, plan: &Plan, cp: &Checkpoint) -> Result<(), Error> {
        let Some(upload_id) = cp.upload.upload_id.as_deref() else {
            return Ok(());
        };
        let gone = || {
            Error::invalid_input(
                "resume.upload.upload_id",
                format!(
                    "S3 no longer has upload {upload_id} of s3://{}/{} open (completed, aborted or \
                     expired); start again without resume",
                    plan.bucket, plan.key
                ),
            )
        };
        let mut listed = BTreeMap::new();
        let mut pages = self
            .s3
            .list_parts()
            .bucket(&plan.bucket)
            .key(&plan.key)
            .upload_id(upload_id)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let out = match page {
                Ok(out) => out,
                Err(e) => {
                    return match Error::s3("ListParts", &plan.bucket, &plan.key, e) {
                        Error::NotFound { .. } => Err(gone()),
                        Error::S3 { code: Some(c), .. } if c == "NoSuchUpload" => Err(gone()),
                        Error::S3 { code: Some(c), .. } if c == "NotImplemented" => {
                            self.check_upload_in_list(plan, upload_id).await
                        }
                        other => Err(other),
                    };
                }
            };
            for p in out.parts() {
                if let Some(n) = p.part_number() {
                    let crc = match self.config.checksum {
                        ChecksumAlgorithm::Crc64Nvme => p.checksum_crc64_nvme(),
                        ChecksumAlgorithm::Crc32c => p.checksum_crc32_c(),
                    };
                    listed.insert(
                        n,
                        (
                            p.size(),
                            p.e_tag().map(|e| e.trim_matches('"').to_owned()),
                            crc.map(str::to_owned),
                        ),
                    );
                }
            }
        }
        if listed.is_empty() {
            // s3s-fs answers ListParts of an unknown upload with an empty list.
            return Err(gone());
        }
        for (i, part) in cp.upload.parts.iter().enumerate() {
            let field = |f: &str| format!("resume.upload.parts[{i}]{f}");
            let Some((size, etag, crc)) = listed.get(&part.number) else {
                return Err(Error::invalid_input(
                    field(""),
                    format!(
                        "S3 does not list part {} of upload {upload_id}",
                        part.number
                    ),
                ));
            };
            if let Some(size) = size
                && u64::try_from(*size).ok() != Some(part.len)
            {
                return Err(Error::invalid_input(
                    field(".len"),
                    format!(
                        "is {}, S3 holds {size} bytes for part {}",
                        part.len, part.number
                    ),
                ));
            }
            if let Some(etag) = etag.as_deref().filter(|e| !e.is_empty())
                && etag != part.etag.trim_matches('"')
            {
                return Err(Error::invalid_input(
                    field(".etag"),
                    format!("is {}, S3 lists {etag} for part {}", part.etag, part.number),
                ));
            }
            let ours = self.config.checksum.encode(part.crc);
            if let Some(crc) = crc.as_deref().filter(|c| !c.is_empty())
                && crc != ours
            {
                return Err(Error::invalid_input(
                    field(".crc"),
                    format!(
                        "encodes {ours}, S3 holds {} {crc} for part {}",
                        self.config.checksum.as_str(),
                        part.number
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Whether ListMultipartUploads still lists `upload_id` for the key (for stores without
    /// ListParts); a store without either is trusted, with a warning.
    async fn check_upload_in_list(&self, plan: &Plan, upload_id: &str) -> Result<(), Error> {
        let (mut key_marker, mut id_marker) = (None::<String>, None::<String>);
        loop {
            let out = match self
                .s3
                .list_multipart_uploads()
                .bucket(&plan.bucket)
                .prefix(&plan.key)
                .set_key_marker(key_marker.take())
                .set_upload_id_marker(id_marker.take())
                .send()
                .await
            {
                Ok(out) => out,
                Err(e) => {
                    return match Error::s3("ListMultipartUploads", &plan.bucket, &plan.key, e) {
                        Error::S3 { code: Some(c), .. } if c == "NotImplemented" => {
                            warn!(bucket = %plan.bucket, key = %plan.key, upload_id,
                                "this S3 store lists neither parts nor uploads: the checkpoint's upload is not checked");
                            Ok(())
                        }
                        other => Err(other),
                    };
                }
            };
            if out
                .uploads()
                .iter()
                .any(|u| u.upload_id() == Some(upload_id) && u.key() == Some(plan.key.as_str()))
            {
                return Ok(());
            }
            if out.is_truncated() != Some(true) {
                return Err(Error::invalid_input(
                    "resume.upload.upload_id",
                    format!(
                        "S3 does not list upload {upload_id} of s3://{}/{} (completed, aborted or \
                         expired); start again without resume",
                        plan.bucket, plan.key
                    ),
                ));
            }
            key_marker = out.next_key_marker().map(str::to_owned);
            id_marker = out.next_upload_id_marker().map(str::to_owned);
            if key_marker.is_none() && id_marker.is_none() {
                return Ok(());
            }
        }
    }

    /// Validates the request against the configuration.
    fn plan(&self, req: &IngestRequest) -> Result<Plan, Error> {
        let bad = |what: &str, why: String| Error::invalid_input(what.to_owned(), why);
        let url = reqwest::Url::parse(req.url.trim())
            .map_err(|e| bad("url", format!("not a URL: {e}")))?;
        self.config
            .policy
            .check_url(&url)
            .map_err(|e| bad("url", e))?;
        let bucket = req
            .bucket
            .clone()
            .or_else(|| self.config.default_bucket.clone())
            .ok_or_else(|| {
                bad(
                    "bucket",
                    "not in the request and DEFAULT_BUCKET is not set".into(),
                )
            })?;
        check_bucket_name(&bucket).map_err(|why| {
            bad(
                if req.bucket.is_some() {
                    "bucket"
                } else {
                    "bucket (DEFAULT_BUCKET)"
                },
                format!("{bucket:?} {why}"),
            )
        })?;
        let key = match &req.key {
            Some(k) if !k.is_empty() && !k.ends_with('/') => k.clone(),
            Some(k) => return Err(bad("key", format!("{k:?} is not an object key"))),
            None => format!("{}{}", self.config.default_prefix, file_name(&url)),
        };
        if key.len() > MAX_KEY_BYTES {
            return Err(bad(
                "key",
                format!(
                    "is {} bytes; S3 keys are at most {MAX_KEY_BYTES} bytes (UTF-8)",
                    key.len()
                ),
            ));
        }
        let part_mib = req.part_size_mib.unwrap_or(self.config.part_size_mib);
        if !(5..=5120).contains(&part_mib) {
            return Err(bad(
                "part_size_mib",
                format!("{part_mib} is outside 5..=5120"),
            ));
        }
        let concurrency = req.concurrency.unwrap_or(self.config.concurrency);
        if !(1..=64).contains(&concurrency) {
            return Err(bad(
                "concurrency",
                format!("{concurrency} is outside 1..=64"),
            ));
        }
        if let Some(h) = &req.expected_sha256
            && (h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            return Err(bad("expected_sha256", "must be 64 hex digits".into()));
        }
        let mut headers = HeaderMap::new();
        for (name, value) in req.headers.iter().flatten() {
            let n = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| bad("headers", format!("{name:?} is not a valid header name")))?;
            if n == reqwest::header::HOST {
                return Err(bad(
                    "headers",
                    "Host may not be set: it comes from the URL".into(),
                ));
            }
            // The value is never echoed: it may be a credential.
            let mut v = HeaderValue::from_str(value).map_err(|_| {
                bad(
                    "headers",
                    format!("the value of {name} is not a valid header value"),
                )
            })?;
            v.set_sensitive(true);
            headers.insert(n, v);
        }
        if let Some(cp) = &req.resume {
            if cp.version != VERSION {
                return Err(bad(
                    "resume.version",
                    format!("checkpoint version {} is not {VERSION}", cp.version),
                ));
            }
            if cp.bucket != bucket || cp.key != key {
                return Err(bad(
                    if cp.bucket != bucket {
                        "resume.bucket"
                    } else {
                        "resume.key"
                    },
                    format!(
                        "the checkpoint is for s3://{}/{}, not s3://{bucket}/{key}",
                        cp.bucket, cp.key
                    ),
                ));
            }
        }
        // The caller's headers are for the origin the caller named, on every leg.
        let origin = url.origin();
        let url = match &req.resume {
            // Continue from where the redirects led last time.
            Some(cp) => {
                reqwest::Url::parse(&cp.url).map_err(|e| bad("resume.url", e.to_string()))?
            }
            None => url,
        };
        self.config
            .policy
            .check_url(&url)
            .map_err(|e| bad("resume.url", e))?;
        Ok(Plan {
            url,
            bucket,
            key,
            part_size: (part_mib * MIB) as usize,
            concurrency,
            headers,
            origin,
        })
    }
}

/// The longest S3 object key, in UTF-8 bytes.
pub const MAX_KEY_BYTES: usize = 1024;

/// S3's general-purpose bucket naming rules: 3 to 63 characters of lowercase letters, digits,
/// `.` and `-`, starting and ending with a letter or digit, no `..`, not an IPv4 address.
pub fn check_bucket_name(name: &str) -> Result<(), String> {
    let b = name.as_bytes();
    if !(3..=63).contains(&b.len()) {
        return Err(format!(
            "is {} characters; bucket names have 3 to 63",
            b.len()
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '.' || *c == '-'))
    {
        return Err(format!(
            "holds {c:?}; bucket names are lowercase letters, digits, '.' and '-'"
        ));
    }
    let alnum = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    if !b.first().is_some_and(alnum) || !b.last().is_some_and(alnum) {
        return Err("must begin and end with a letter or digit".into());
    }
    if name.contains("..") {
        return Err("holds \"..\"".into());
    }
    if name.parse::<std::net::Ipv4Addr>().is_ok() {
        return Err("is formatted as an IP address".into());
    }
    Ok(())
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a JSON boolean",
        serde_json::Value::Number(_) => "a JSON number",
        serde_json::Value::String(_) => "a JSON string",
        serde_json::Value::Array(_) => "a JSON array",
        serde_json::Value::Object(_) => "a JSON object",
    }
}

/// A validated request.
#[derive(Debug)]
struct Plan {
    url: reqwest::Url,
    bucket: String,
    key: String,
    part_size: usize,
    concurrency: usize,
    headers: HeaderMap,
    origin: url::Origin,
}

async fn abort(writer: S3Writer, err: Error) -> Error {
    if let Err(e) = writer.abort().await {
        warn!(error = %e, "could not abort the multipart upload; the lifecycle rule will");
    }
    err
}

fn log_progress(
    plan: &Plan,
    offset: u64,
    start: u64,
    total: Option<u64>,
    parts: usize,
    started: Instant,
) {
    let secs = started.elapsed().as_secs_f64().max(1e-3);
    let rate = offset.saturating_sub(start) as f64 / secs;
    let eta = total
        .filter(|t| *t > offset && rate > 0.0)
        .map(|t| format!("{:.0}s", (t - offset) as f64 / rate));
    info!(key = %plan.key, bytes = offset, total = ?total, parts,
        mib_per_s = format!("{:.1}", rate / MIB as f64), eta = eta.as_deref().unwrap_or("unknown"),
        "progress");
}

/// The last path segment of a URL, percent-decoded and made safe as a key segment.
pub fn file_name(url: &reqwest::Url) -> String {
    let last = url
        .path_segments()
        .and_then(|mut s| s.next_back())
        .unwrap_or_default();
    let decoded = percent_encoding::percent_decode_str(last).decode_utf8_lossy();
    let cleaned: String = decoded
        .chars()
        .map(|c| {
            if c == '/' || c == '\\' || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect();
    match cleaned.trim() {
        "" | "." | ".." => format!("{}-download", url.host_str().unwrap_or("source")),
        name => name.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_from_urls() {
        let f = |u: &str| file_name(&reqwest::Url::parse(u).expect("url"));
        assert_eq!(
            f("https://x.org/data/trips%202024.csv?sig=1"),
            "trips 2024.csv"
        );
        assert_eq!(f("https://x.org/a/%2Fetc%2Fpasswd"), "_etc_passwd");
        assert_eq!(f("https://x.org/"), "x.org-download");
        assert_eq!(f("https://x.org/files/.."), "x.org-download");
        assert_eq!(f("https://x.org/%ED%83%9D%EC%8B%9C.csv"), "택시.csv");
    }

    #[test]
    fn request_debug_hides_headers_and_query() {
        let r = IngestRequest {
            url: "https://x.org/f.csv?X-Amz-Signature=topsecret".into(),
            headers: Some([("Authorization".to_owned(), "Bearer hunter2".to_owned())].into()),
            ..IngestRequest::default()
        };
        let shown = format!("{r:?}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("topsecret"),
            "{shown}"
        );
        assert!(shown.contains("Authorization"), "{shown}");
    }

    #[test]
    fn unknown_fields_are_rejected_by_name() {
        let err =
            serde_json::from_str::<IngestRequest>(r#"{"url":"https://x.org/a","buckett":"b"}"#)
                .expect_err("typo");
        assert!(err.to_string().contains("unknown field `buckett`"), "{err}");
    }
}
