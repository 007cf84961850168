//! A real Glue API on loopback for tests: `moto_server` (PyPI `moto[server]`, pure Python),
//! optionally behind a fault-injecting proxy.
//!
//! [`TestGlue::start`] runs moto's server from the test venv (`$TRIBUTARY_VENV`, default
//! `~/.cache/tributary/venv`, made by `scripts/bootstrap.sh`) on `127.0.0.1:<free port>`, waits
//! until it answers, and stops it when the handle is dropped (its whole process group). The
//! server also stops by itself when the test process ends, however it ends: it exits when its
//! stdin, a pipe from the test process, closes. `TEST_GLUE_ENDPOINT` names an external Glue
//! API instead (another moto). Without the venv or moto, `start` prints `SKIPPED <test>: ...`
//! ([`crate::skip`]) and returns `None`; with `TEST_GLUE_REQUIRED=1` it panics instead (for CI,
//! where a missing tool must not pass as a skip).
//!
//! [`TestGlue::start_with_faults`] puts a small hyper proxy in front of moto that
//!
//! * counts the calls of every operation (`X-Amz-Target`, e.g. `AWSGlue.UpdateTable`),
//! * answers planned calls with a Glue error instead of forwarding them (the N-th UpdateTable
//!   with `ConcurrentModificationException`, a CreateTable with `AlreadyExistsException`,
//!   throttling, 500s) or delays them, through [`GlueFaults`],
//! * and enforces UpdateTable's `VersionId` as Glue does (moto 5.2 ignores it): an update
//!   naming another version than the table's current one is answered with
//!   `ConcurrentModificationException`. Creates and updates pass the proxy one at a time, so
//!   the check and the update are atomic.
//!
//! Tests get a fresh database each with [`TestGlue::database`], and can read what the server
//! holds, independently of the client under test, with [`TestGlue::call`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::faults::Calls;

/// Access key the tests sign with (moto accepts any).
pub const ACCESS_KEY: &str = "tributary-test";
/// Secret key the tests sign with.
pub const SECRET_KEY: &str = "tributary-test-secret";
/// Region the tests use.
pub const REGION: &str = "us-east-1";

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// moto's server with a watchdog: it exits when its stdin closes (the test process ended).
const MOTO_SCRIPT: &str = r#"
import os, sys, threading
def _watch():
    try:
        sys.stdin.buffer.read()
    finally:
        os._exit(0)
threading.Thread(target=_watch, daemon=True).start()
from moto.server import main
main(["-H", "127.0.0.1", "-p", sys.argv[1]])
"#;

/// A running Glue API.
pub struct TestGlue {
    /// `http://127.0.0.1:port`: the endpoint clients use (the proxy's, when there is one).
    pub endpoint: String,
    /// Region to sign for.
    pub region: String,
    /// Access key (dummy).
    pub access_key: String,
    /// Secret key (dummy).
    pub secret_key: String,
    upstream: String,
    faults: Option<GlueFaults>,
    proxy: Option<JoinHandle<()>>,
    moto: Option<Moto>,
}

impl std::fmt::Debug for TestGlue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestGlue")
            .field("endpoint", &self.endpoint)
            .field("upstream", &self.upstream)
            .field("proxy", &self.proxy.is_some())
            .field("moto", &self.moto.as_ref().map(|m| m.child.id()))
            .finish_non_exhaustive()
    }
}

impl Drop for TestGlue {
    fn drop(&mut self) {
        if let Some(p) = &self.proxy {
            p.abort();
        }
        // `moto` stops in its own Drop.
    }
}

impl TestGlue {
    /// moto (or `TEST_GLUE_ENDPOINT`), or `None` after printing why `test` is skipped.
    pub async fn start(test: &str) -> Option<TestGlue> {
        let (upstream, moto) = match upstream(test).await {
            Some(u) => u,
            None => return None,
        };
        Some(TestGlue {
            endpoint: upstream.clone(),
            region: REGION.to_owned(),
            access_key: ACCESS_KEY.to_owned(),
            secret_key: SECRET_KEY.to_owned(),
            upstream,
            faults: None,
            proxy: None,
            moto,
        })
    }

    /// [`TestGlue::start`] behind the fault-injecting, version-checking proxy.
    pub async fn start_with_faults(test: &str) -> Option<TestGlue> {
        let (upstream, moto) = upstream(test).await?;
        let faults = GlueFaults::default();
        let (addr, proxy) = serve_proxy(upstream.clone(), faults.clone())
            .await
            .expect("start the Glue fault proxy");
        Some(TestGlue {
            endpoint: format!("http://{addr}"),
            region: REGION.to_owned(),
            access_key: ACCESS_KEY.to_owned(),
            secret_key: SECRET_KEY.to_owned(),
            upstream,
            faults: Some(faults),
            proxy: Some(proxy),
            moto,
        })
    }

    /// The fault plan and call counts (with [`TestGlue::start_with_faults`] only).
    pub fn faults(&self) -> Option<&GlueFaults> {
        self.faults.as_ref()
    }

    /// The server's own endpoint, bypassing the proxy.
    pub fn upstream(&self) -> &str {
        &self.upstream
    }

    /// Creates a database with a fresh name for one test (straight on the server: not
    /// counted, never faulted) and returns the name.
    pub async fn database(&self) -> String {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let name = format!(
            "t{}_{}_{n}",
            std::process::id(),
            rand::random::<u32>() % 1_000_000
        );
        let (status, body) = self
            .call("CreateDatabase", json!({"DatabaseInput": {"Name": name}}))
            .await;
        assert_eq!(status, 200, "CreateDatabase {name}: {body}");
        name
    }

    /// One Glue call straight to the server (`operation` such as `GetTable`): its status and
    /// JSON answer. For checking what the server holds independently of the client under test.
    pub async fn call(&self, operation: &str, body: Value) -> (u16, Value) {
        let (status, bytes) = post(&self.upstream, &target_of(operation), &body)
            .await
            .unwrap_or_else(|e| panic!("Glue {operation} on {}: {e}", self.upstream));
        let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, value)
    }
}

/// The Glue API to use, and the moto process when we started one.
async fn upstream(test: &str) -> Option<(String, Option<Moto>)> {
    if let Some(ep) = std::env::var("TEST_GLUE_ENDPOINT")
        .ok()
        .filter(|s| !s.trim().is_empty())
    {
        return Some((ep.trim().trim_end_matches('/').to_owned(), None));
    }
    let required = moto_required();
    match Moto::start().await {
        Ok(m) => Some((format!("http://{}", m.addr), Some(m))),
        Err(why) if required => panic!("{test}: no Glue API (TEST_GLUE_REQUIRED): {why}"),
        Err(why) => {
            crate::skip(test, &format!("no Glue API: {why}"));
            None
        }
    }
}

/// Whether a missing moto fails the test instead of skipping it (`TEST_GLUE_REQUIRED`, set
/// by `scripts/test.sh`; it covers every moto-backed API, Secrets Manager too).
pub(crate) fn moto_required() -> bool {
    std::env::var("TEST_GLUE_REQUIRED")
        .is_ok_and(|v| !v.is_empty() && v != "0" && !v.eq_ignore_ascii_case("false"))
}

/// The test venv: `$TRIBUTARY_VENV`, else `~/.cache/tributary/venv` (`scripts/bootstrap.sh`).
pub fn venv() -> Option<PathBuf> {
    std::env::var_os("TRIBUTARY_VENV")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/tributary/venv"))
        })
}

/// A moto server process (every API moto serves, on one port), killed (with its process
/// group) on drop.
pub(crate) struct Moto {
    child: Child,
    // Held open: the server exits when it closes.
    _stdin: Option<ChildStdin>,
    pub(crate) addr: SocketAddr,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let pid = self.child.id();
        // The child leads its own process group: end the group, then the child itself.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{pid}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Moto {
    /// A new server on a free loopback port, answering; or why not.
    pub(crate) async fn start() -> Result<Moto, String> {
        let venv = venv().ok_or("neither TRIBUTARY_VENV nor HOME is set")?;
        let python = venv.join("bin/python");
        let server = venv.join("bin/moto_server");
        if !server.exists() || !python.exists() {
            return Err(format!(
                "{} not found (run scripts/bootstrap.sh: moto[server] is in \
                 scripts/requirements.txt)",
                server.display()
            ));
        }
        let mut last = String::new();
        // A free port can be taken between our probe and moto's bind: try a few.
        for _ in 0..3 {
            let port = free_port().map_err(|e| format!("no free port: {e}"))?;
            match Self::spawn(&python, port).await {
                Ok(m) => return Ok(m),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    async fn spawn(python: &std::path::Path, port: u16) -> Result<Moto, String> {
        use std::os::unix::process::CommandExt;
        let log = tempfile::NamedTempFile::new().map_err(|e| e.to_string())?;
        let stderr = log.reopen().map_err(|e| e.to_string())?;
        let mut child = Command::new(python)
            .arg("-c")
            .arg(MOTO_SCRIPT)
            .arg(port.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(stderr)
            .env("PYTHONUNBUFFERED", "1")
            .process_group(0)
            .spawn()
            .map_err(|e| format!("spawn {}: {e}", python.display()))?;
        let stdin = child.stdin.take();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut moto = Moto {
            child,
            _stdin: stdin,
            addr,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        let endpoint = format!("http://{addr}");
        loop {
            if let Ok(Some(status)) = moto.child.try_wait() {
                let log = std::fs::read_to_string(log.path()).unwrap_or_default();
                return Err(format!("moto exited with {status}: {}", tail(&log)));
            }
            if let Ok((200, _)) = post(&endpoint, "AWSGlue.GetDatabases", &json!({})).await {
                return Ok(moto);
            }
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(log.path()).unwrap_or_default();
                drop(moto);
                return Err(format!("moto did not answer within 30 s: {}", tail(&log)));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(5)..].join(" | ")
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// `AWSGlue.<operation>` (an operation already prefixed is kept).
fn target_of(operation: &str) -> String {
    if operation.contains('.') {
        operation.to_owned()
    } else {
        format!("AWSGlue.{operation}")
    }
}

/// `host:port` of an `http://` endpoint.
fn authority(endpoint: &str) -> String {
    endpoint
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned()
}

/// One JSON-1.1 POST (what the Glue API speaks), with an Authorization header that names the
/// test region (moto picks its regional backend from it; it checks no signature).
async fn post(endpoint: &str, target: &str, body: &Value) -> Result<(u16, Bytes), BoxError> {
    post_to(endpoint, "glue", target, body).await
}

/// [`post`] to the API `service` names (its signing name, e.g. `secretsmanager`): moto picks
/// the service, as it does the region, from the Authorization header's credential scope.
pub(crate) async fn post_to(
    endpoint: &str,
    service: &str,
    target: &str,
    body: &Value,
) -> Result<(u16, Bytes), BoxError> {
    let req = http::Request::post("/")
        .header("host", authority(endpoint))
        .header("content-type", "application/x-amz-json-1.1")
        .header("x-amz-target", target)
        .header(
            "authorization",
            format!(
                "AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/20260101/{REGION}/{service}/aws4_request, \
                 SignedHeaders=host, Signature=0"
            ),
        )
        .body(Full::new(Bytes::from(serde_json::to_vec(body)?)))?;
    let resp = send(endpoint, req).await?;
    Ok((resp.status().as_u16(), resp.into_body()))
}

/// Sends one request on a new connection to `endpoint` and reads the whole answer.
async fn send(
    endpoint: &str,
    req: http::Request<Full<Bytes>>,
) -> Result<http::Response<Bytes>, BoxError> {
    let stream = tokio::time::timeout(
        Duration::from_secs(5),
        TcpStream::connect(authority(endpoint)),
    )
    .await??;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    let conn = tokio::spawn(conn);
    let resp = tokio::time::timeout(Duration::from_secs(30), sender.send_request(req)).await??;
    let (parts, body) = resp.into_parts();
    let bytes = body.collect().await?.to_bytes();
    conn.abort();
    Ok(http::Response::from_parts(parts, bytes))
}

/// What a planned fault does to the call it hits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GlueAction {
    /// Answer with this status and Glue error type (`__type`), without forwarding.
    Error {
        /// HTTP status (Glue answers 400 for most errors, 500 for internal ones).
        status: u16,
        /// The error type, e.g. `ConcurrentModificationException`.
        type_name: &'static str,
    },
    /// Wait, then forward the call.
    Delay(Duration),
}

impl GlueAction {
    /// 400 `ConcurrentModificationException`.
    pub fn concurrent_modification() -> GlueAction {
        GlueAction::Error {
            status: 400,
            type_name: "ConcurrentModificationException",
        }
    }
    /// 400 `AlreadyExistsException`.
    pub fn already_exists() -> GlueAction {
        GlueAction::Error {
            status: 400,
            type_name: "AlreadyExistsException",
        }
    }
    /// 400 `ThrottlingException` (the SDK retries it).
    pub fn throttling() -> GlueAction {
        GlueAction::Error {
            status: 400,
            type_name: "ThrottlingException",
        }
    }
    /// 500 `InternalServiceException`.
    pub fn internal() -> GlueAction {
        GlueAction::Error {
            status: 500,
            type_name: "InternalServiceException",
        }
    }
    /// 400 `AccessDeniedException` (permanent).
    pub fn access_denied() -> GlueAction {
        GlueAction::Error {
            status: 400,
            type_name: "AccessDeniedException",
        }
    }
}

/// One planned fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GlueFault {
    /// The operation (`AWSGlue.UpdateTable`).
    pub target: String,
    /// Which of its calls (counted from 1).
    pub calls: Calls,
    /// What happens.
    pub action: GlueAction,
}

/// Faults to inject and counts of the calls seen by the proxy. Cheap to clone (shared state).
#[derive(Debug, Clone)]
pub struct GlueFaults {
    inner: Arc<Mutex<FaultState>>,
    // Creates and updates pass one at a time, so the version check and the update are atomic.
    writes: Arc<tokio::sync::Mutex<()>>,
}

#[derive(Debug)]
struct FaultState {
    faults: Vec<GlueFault>,
    calls: HashMap<String, u64>,
    injected: u64,
    version_conflicts: u64,
    enforce_versions: bool,
}

impl Default for GlueFaults {
    fn default() -> Self {
        GlueFaults {
            inner: Arc::new(Mutex::new(FaultState {
                faults: Vec::new(),
                calls: HashMap::new(),
                injected: 0,
                version_conflicts: 0,
                enforce_versions: true,
            })),
            writes: Arc::new(tokio::sync::Mutex::new(())),
        }
    }
}

impl GlueFaults {
    /// Plans a fault on `operation` (`UpdateTable` or `AWSGlue.UpdateTable`).
    pub fn add(&self, operation: &str, calls: Calls, action: GlueAction) {
        self.lock().faults.push(GlueFault {
            target: target_of(operation),
            calls,
            action,
        });
    }

    /// Removes every planned fault (counts stay).
    pub fn clear(&self) {
        self.lock().faults.clear();
    }

    /// How many calls of `operation` the proxy has seen (faulted ones included).
    pub fn calls(&self, operation: &str) -> u64 {
        self.lock()
            .calls
            .get(&target_of(operation))
            .copied()
            .unwrap_or(0)
    }

    /// How many planned faults were injected so far.
    pub fn injected(&self) -> u64 {
        self.lock().injected
    }

    /// How many UpdateTable calls were refused because their `VersionId` was not current.
    pub fn version_conflicts(&self) -> u64 {
        self.lock().version_conflicts
    }

    /// Whether UpdateTable's `VersionId` is checked (default: yes, as Glue does).
    pub fn enforce_versions(&self, on: bool) {
        self.lock().enforce_versions = on;
    }

    /// Counts a call; its number and the action of the first fault that hits it.
    fn on_call(&self, target: &str) -> (u64, Option<GlueAction>) {
        let mut st = self.lock();
        let n = {
            let c = st.calls.entry(target.to_owned()).or_insert(0);
            *c += 1;
            *c
        };
        let action = st
            .faults
            .iter()
            .find(|f| f.target == target && hits(f.calls, n))
            .map(|f| f.action.clone());
        if action.is_some() {
            st.injected += 1;
        }
        (n, action)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FaultState> {
        // A panicking test thread must not hide the counts from the others.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Whether `calls` covers the n-th call.
fn hits(calls: Calls, n: u64) -> bool {
    match calls {
        Calls::Nth(k) => n == k,
        Calls::Range { from, count } => n >= from && n < from + count,
        Calls::From(k) => n >= k,
    }
}

/// Serves the proxy on `127.0.0.1:<free port>`.
async fn serve_proxy(
    upstream: String,
    faults: GlueFaults,
) -> std::io::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    let upstream = Arc::new(upstream);
    let server = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let upstream = upstream.clone();
            let faults = faults.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    proxy(upstream.clone(), faults.clone(), req)
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ok((addr, server))
}

/// A Glue error answer.
fn glue_error(status: u16, type_name: &str, message: &str) -> http::Response<Full<Bytes>> {
    let body = json!({"__type": type_name, "message": message}).to_string();
    http::Response::builder()
        .status(status)
        .header("content-type", "application/x-amz-json-1.1")
        .header("x-amzn-errortype", type_name)
        .header("x-amzn-requestid", "tributary-fault")
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_else(|_| http::Response::new(Full::new(Bytes::new())))
}

async fn proxy(
    upstream: Arc<String>,
    faults: GlueFaults,
    req: http::Request<hyper::body::Incoming>,
) -> Result<http::Response<Full<Bytes>>, BoxError> {
    let target = req
        .headers()
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let (parts, body) = req.into_parts();
    // Read the request first, so the client sees an answer, not a broken pipe.
    let body = body.collect().await?.to_bytes();
    let (n, action) = faults.on_call(&target);
    match action {
        None => {}
        Some(GlueAction::Delay(d)) => tokio::time::sleep(d).await,
        Some(GlueAction::Error { status, type_name }) => {
            return Ok(glue_error(
                status,
                type_name,
                &format!("injected fault on {target} (call {n})"),
            ));
        }
    }
    let writes = matches!(
        target.as_str(),
        "AWSGlue.CreateTable" | "AWSGlue.UpdateTable"
    );
    let _guard = if writes {
        Some(faults.writes.lock().await)
    } else {
        None
    };
    if target == "AWSGlue.UpdateTable"
        && faults.lock().enforce_versions
        && let Some(conflict) = version_conflict(&upstream, &body).await?
    {
        faults.lock().version_conflicts += 1;
        return Ok(glue_error(
            400,
            "ConcurrentModificationException",
            &conflict,
        ));
    }
    let mut fwd = http::Request::builder()
        .method(parts.method.clone())
        .uri(parts.uri.clone());
    for (k, v) in &parts.headers {
        if k != http::header::HOST {
            fwd = fwd.header(k, v);
        }
    }
    let fwd = fwd
        .header(http::header::HOST, authority(&upstream))
        .body(Full::new(body))?;
    let resp = send(&upstream, fwd).await?;
    let (mut parts, bytes) = resp.into_parts();
    // The answer is re-framed by our server; moto's own framing headers do not apply.
    parts.headers.remove(http::header::CONNECTION);
    parts.headers.remove(http::header::TRANSFER_ENCODING);
    parts.headers.remove(http::header::CONTENT_LENGTH);
    Ok(http::Response::from_parts(parts, Full::new(bytes)))
}

/// Why an UpdateTable must be refused (its `VersionId` is not the table's current one), if it
/// must. A missing table or an unreadable request is left to the server to answer.
async fn version_conflict(upstream: &str, body: &[u8]) -> Result<Option<String>, BoxError> {
    let Ok(req) = serde_json::from_slice::<Value>(body) else {
        return Ok(None);
    };
    let Some(expected) = req.get("VersionId").and_then(Value::as_str) else {
        return Ok(None);
    };
    let database = req.get("DatabaseName").cloned().unwrap_or(Value::Null);
    let name = req
        .pointer("/TableInput/Name")
        .cloned()
        .unwrap_or(Value::Null);
    let mut get = json!({"DatabaseName": database, "Name": name});
    if let Some(id) = req.get("CatalogId") {
        get["CatalogId"] = id.clone();
    }
    let (status, answer) = post(upstream, "AWSGlue.GetTable", &get).await?;
    if status != 200 {
        return Ok(None);
    }
    let answer: Value = serde_json::from_slice(&answer)?;
    let current = answer
        .pointer("/Table/VersionId")
        .and_then(Value::as_str)
        .unwrap_or("");
    Ok((current != expected)
        .then(|| format!("table {database}.{name} is at version {current}, not {expected}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_are_named_by_their_target() {
        assert_eq!(target_of("UpdateTable"), "AWSGlue.UpdateTable");
        assert_eq!(target_of("AWSGlue.GetTable"), "AWSGlue.GetTable");
        let f = GlueFaults::default();
        f.add(
            "UpdateTable",
            Calls::Nth(2),
            GlueAction::concurrent_modification(),
        );
        assert_eq!(f.on_call("AWSGlue.UpdateTable"), (1, None));
        assert_eq!(
            f.on_call("AWSGlue.UpdateTable"),
            (2, Some(GlueAction::concurrent_modification()))
        );
        assert_eq!(f.on_call("AWSGlue.GetTable"), (1, None));
        assert_eq!(f.calls("UpdateTable"), 2);
        assert_eq!(f.calls("AWSGlue.GetTable"), 1);
        assert_eq!(f.injected(), 1);
    }
}
