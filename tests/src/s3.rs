//! A real S3 endpoint for tests: embedded in the test process, or an external one.
//!
//! [`TestS3::start`] serves the S3 protocol from `s3s` + `s3s-fs` on `127.0.0.1:<free port>`
//! (SigV4 checked against fixed test keys, data in a temporary directory), behind a
//! [`FaultPlan`]. When `TEST_S3_ENDPOINT` is set it uses that endpoint instead (for example a
//! SeaweedFS started by `scripts/seaweedfs.sh`), with `TEST_S3_ACCESS_KEY`,
//! `TEST_S3_SECRET_KEY`, `TEST_S3_REGION` (default `us-east-1`) and `TEST_S3_PATH_STYLE`
//! (default `true`). Each test asks for its own bucket with [`TestS3::bucket`].
//!
//! Tests that need fault injection call [`TestS3::faults`], which is `None` on an external
//! endpoint: they then print that they were skipped and return.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use http_body_util::BodyExt;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::faults::{Action, FaultPlan, Op};

/// Access key of the embedded server.
pub const ACCESS_KEY: &str = "tributary-test";
/// Secret key of the embedded server.
pub const SECRET_KEY: &str = "tributary-test-secret";

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A running S3 endpoint and a client for it.
pub struct TestS3 {
    /// `http://127.0.0.1:port` or the external endpoint.
    pub endpoint: String,
    /// Access key the endpoint accepts.
    pub access_key: String,
    /// Secret key the endpoint accepts.
    pub secret_key: String,
    /// Region to sign for.
    pub region: String,
    /// Whether the endpoint wants path-style addressing.
    pub path_style: bool,
    /// A client for the endpoint.
    pub client: aws_sdk_s3::Client,
    embedded: Option<Embedded>,
}

struct Embedded {
    root: tempfile::TempDir,
    faults: FaultPlan,
    server: JoinHandle<()>,
}

impl std::fmt::Debug for TestS3 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestS3")
            .field("endpoint", &self.endpoint)
            .field("embedded", &self.embedded.is_some())
            .finish_non_exhaustive()
    }
}

impl Drop for TestS3 {
    fn drop(&mut self) {
        if let Some(e) = &self.embedded {
            e.server.abort();
        }
    }
}

impl TestS3 {
    /// The external endpoint named by `TEST_S3_ENDPOINT`, or else an embedded server.
    pub async fn start() -> TestS3 {
        match std::env::var("TEST_S3_ENDPOINT")
            .ok()
            .filter(|s| !s.is_empty())
        {
            Some(endpoint) => Self::external(endpoint).await,
            None => Self::embedded().await,
        }
    }

    /// An embedded server even when `TEST_S3_ENDPOINT` is set.
    pub async fn embedded() -> TestS3 {
        let root = tempfile::tempdir().expect("temp dir for the embedded S3 server");
        let (addr, faults, server) = serve_on(root.path(), 0)
            .await
            .expect("start the embedded S3 server");
        let endpoint = format!("http://{addr}");
        let client = client_for(&endpoint, ACCESS_KEY, SECRET_KEY, "us-east-1", true);
        TestS3 {
            endpoint,
            access_key: ACCESS_KEY.to_owned(),
            secret_key: SECRET_KEY.to_owned(),
            region: "us-east-1".to_owned(),
            path_style: true,
            client,
            embedded: Some(Embedded {
                root,
                faults,
                server,
            }),
        }
    }

    async fn external(endpoint: String) -> TestS3 {
        let var = |k: &str, d: &str| std::env::var(k).unwrap_or_else(|_| d.to_owned());
        let access_key = var("TEST_S3_ACCESS_KEY", ACCESS_KEY);
        let secret_key = var("TEST_S3_SECRET_KEY", SECRET_KEY);
        let region = var("TEST_S3_REGION", "us-east-1");
        let path_style = !matches!(
            var("TEST_S3_PATH_STYLE", "true")
                .to_ascii_lowercase()
                .as_str(),
            "false" | "0" | "no"
        );
        let client = client_for(&endpoint, &access_key, &secret_key, &region, path_style);
        TestS3 {
            endpoint,
            access_key,
            secret_key,
            region,
            path_style,
            client,
            embedded: None,
        }
    }

    /// Whether this is the embedded server (fault injection, data on disk).
    fn is_embedded(&self) -> bool {
        self.embedded.is_some()
    }

    /// A short name for logs: `embedded` or the endpoint.
    pub fn kind(&self) -> String {
        if self.is_embedded() {
            "embedded s3s-fs".to_owned()
        } else {
            format!("external {}", self.endpoint)
        }
    }

    /// The fault plan, on the embedded server only.
    pub fn faults(&self) -> Option<&FaultPlan> {
        self.embedded.as_ref().map(|e| &e.faults)
    }

    /// The embedded server's data directory.
    pub fn root(&self) -> Option<&Path> {
        self.embedded.as_ref().map(|e| e.root.path())
    }

    /// Whether the server honours `If-Match` on GetObject (s3s-fs does not).
    pub fn honours_get_if_match(&self) -> bool {
        !self.is_embedded()
    }

    /// Creates a bucket with a fresh name for one test and returns the name.
    pub async fn bucket(&self) -> String {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let name = format!(
            "t{}-{}-{n}",
            std::process::id(),
            rand::random::<u32>() % 1_000_000
        );
        self.client
            .create_bucket()
            .bucket(&name)
            .send()
            .await
            .unwrap_or_else(|e| panic!("create bucket {name} on {}: {e:?}", self.endpoint));
        if self.root().is_none() {
            self.wait_writable(&name).await;
        }
        name
    }

    /// An external store may answer 500 while it grows storage for a new bucket (SeaweedFS
    /// allocates a collection's volumes on its first write): write a probe object until the
    /// bucket takes writes, then remove it, so tests measure our code, not the store's warm-up.
    async fn wait_writable(&self, bucket: &str) {
        let probe = "_tributary_probe";
        let started = std::time::Instant::now();
        loop {
            let put = self
                .client
                .put_object()
                .bucket(bucket)
                .key(probe)
                .body(aws_sdk_s3::primitives::ByteStream::from_static(b"ok"))
                .send()
                .await;
            match put {
                Ok(_) => break,
                Err(e) if started.elapsed() < std::time::Duration::from_secs(30) => {
                    tracing::debug!(bucket, error = %e, "the store is not writable yet");
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                }
                Err(e) => panic!(
                    "bucket {bucket} on {} never took a write: {e:?}",
                    self.endpoint
                ),
            }
        }
        let _ = self
            .client
            .delete_object()
            .bucket(bucket)
            .key(probe)
            .send()
            .await;
    }

    /// Multipart uploads still open in `bucket`. The embedded server does not implement
    /// ListMultipartUploads, so there the upload records on disk are counted instead.
    pub async fn open_uploads(&self, bucket: &str) -> Vec<String> {
        if let Some(root) = self.root() {
            return upload_records(root);
        }
        let out = self
            .client
            .list_multipart_uploads()
            .bucket(bucket)
            .send()
            .await
            .expect("ListMultipartUploads");
        out.uploads()
            .iter()
            .map(|u| {
                format!(
                    "{} ({})",
                    u.key().unwrap_or_default(),
                    u.upload_id().unwrap_or_default()
                )
            })
            .collect()
    }

    /// Keys in `bucket` under `prefix`, sorted.
    pub async fn keys(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let mut keys = Vec::new();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.expect("ListObjectsV2");
            keys.extend(
                page.contents()
                    .iter()
                    .filter_map(|o| o.key().map(str::to_owned)),
            );
        }
        keys.sort();
        keys
    }

    /// Reads a whole object (tests only: small and medium objects).
    pub async fn get(&self, bucket: &str, key: &str) -> Vec<u8> {
        self.get_stream(bucket, key)
            .await
            .collect()
            .await
            .expect("read object body")
            .into_bytes()
            .to_vec()
    }

    /// SHA-256 (hex) of an object, streamed: large objects are never held.
    pub async fn sha256(&self, bucket: &str, key: &str) -> String {
        use sha2::Digest;
        let mut body = self.get_stream(bucket, key).await;
        let mut hasher = sha2::Sha256::new();
        while let Some(chunk) = body.try_next().await.expect("body chunk") {
            hasher.update(&chunk);
        }
        hex::encode(hasher.finalize())
    }

    async fn get_stream(&self, bucket: &str, key: &str) -> aws_sdk_s3::primitives::ByteStream {
        self.client
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GetObject s3://{bucket}/{key}: {e:?}"))
            .body
    }

    /// Stores an object with one PutObject.
    pub async fn put(&self, bucket: &str, key: &str, data: impl Into<Vec<u8>>) -> Option<String> {
        let out = self
            .client
            .put_object()
            .bucket(bucket)
            .key(key)
            .content_type("application/octet-stream")
            .body(data.into().into())
            .send()
            .await
            .unwrap_or_else(|e| panic!("PutObject s3://{bucket}/{key}: {e:?}"));
        out.e_tag.map(|e| e.trim_matches('"').to_owned())
    }

    /// Whether the object exists.
    pub async fn exists(&self, bucket: &str, key: &str) -> bool {
        self.client
            .head_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .is_ok()
    }
}

/// Builds a client for an endpoint with static keys.
pub fn client_for(
    endpoint: &str,
    access_key: &str,
    secret_key: &str,
    region: &str,
    path_style: bool,
) -> aws_sdk_s3::Client {
    let conf = aws_sdk_s3::config::Builder::new()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new(region.to_owned()))
        .credentials_provider(Credentials::new(
            access_key,
            secret_key,
            None,
            None,
            "tributary-tests",
        ))
        .force_path_style(path_style)
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

/// Open upload records of an s3s-fs data directory.
fn upload_records(root: &Path) -> Vec<String> {
    let mut found: Vec<String> = std::fs::read_dir(root)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(".upload-") && n.ends_with(".json"))
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found
}

/// Starts s3s-fs on `root`, behind a fault plan, on `127.0.0.1:port` (0: any free port).
pub async fn serve_on(
    root: &Path,
    port: u16,
) -> std::io::Result<(SocketAddr, FaultPlan, JoinHandle<()>)> {
    let fs = s3s_fs::FileSystem::new(root).map_err(|e| std::io::Error::other(format!("{e:?}")))?;
    serve_store(fs, port).await
}

/// Serves any S3 implementation (SigV4 with the test keys) behind a fault plan on
/// `127.0.0.1:port` (0: any free port).
pub async fn serve_store(
    store: impl s3s::S3,
    port: u16,
) -> std::io::Result<(SocketAddr, FaultPlan, JoinHandle<()>)> {
    let mut builder = s3s::service::S3ServiceBuilder::new(store);
    builder.set_auth(s3s::auth::SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
    let service = builder.build();
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    let addr = listener.local_addr()?;
    let faults = FaultPlan::default();
    let plan = faults.clone();
    let server = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let service = service.clone();
            let plan = plan.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    handle(service.clone(), plan.clone(), req)
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ok((addr, faults, server))
}

async fn handle(
    service: s3s::service::S3Service,
    plan: FaultPlan,
    req: http::Request<hyper::body::Incoming>,
) -> Result<http::Response<s3s::Body>, BoxError> {
    let op = Op::classify(req.method(), req.uri().path(), req.uri().query());
    match plan.on_call(op) {
        None => {}
        Some(Action::CutBody(keep)) => {
            let resp = service.call(req.map(s3s::Body::from)).await?;
            return Ok(resp.map(|body| cut_after(body, keep)));
        }
        Some(Action::Delay(d)) => tokio::time::sleep(d).await,
        Some(Action::Reset) => {
            // Returning an error makes hyper drop the connection without a response.
            return Err(format!("injected connection reset on {op:?}").into());
        }
        Some(Action::Status(status, code)) => {
            // Drain the request first so the client sees the answer, not a broken pipe.
            let _ = req.into_body().collect().await;
            let body = format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code>\
                 <Message>injected fault on {op:?}</Message><RequestId>fault</RequestId></Error>"
            );
            let resp = http::Response::builder()
                .status(status)
                .header("content-type", "application/xml")
                .body(s3s::Body::from(body))?;
            return Ok(resp);
        }
    }
    let req = req.map(s3s::Body::from);
    service.call(req).await.map_err(BoxError::from)
}

/// `body` broken off after `keep` bytes: its stream then fails, and hyper drops the
/// connection short of the length the headers promised.
fn cut_after(body: s3s::Body, keep: u64) -> s3s::Body {
    use futures::StreamExt;
    let frames = futures::stream::unfold(Some((body, keep)), |state| async move {
        let (mut body, left) = state?;
        if left == 0 {
            let cut: BoxError = "injected: response body cut off".into();
            return Some((Err(cut), None));
        }
        match body.next().await {
            Some(Ok(mut bytes)) => {
                bytes.truncate(usize::try_from(left).unwrap_or(usize::MAX));
                let left = left - bytes.len() as u64;
                Some((Ok(hyper::body::Frame::data(bytes)), Some((body, left))))
            }
            Some(Err(e)) => Some((Err(BoxError::from(e)), None)),
            None => None,
        }
    });
    s3s::Body::http_body_unsync(http_body_util::StreamBody::new(frames))
}

/// Waits until `f` holds or `timeout` passes (for effects of spawned tasks such as aborts).
pub async fn eventually<F, Fut>(timeout: Duration, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if f().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
