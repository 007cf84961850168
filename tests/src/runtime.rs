//! A Lambda Runtime API emulator on 127.0.0.1, to run a function's real `bootstrap` binary the
//! way Lambda does: the process long-polls `GET /2018-06-01/runtime/invocation/next`, answers on
//! `.../{id}/response` or `.../{id}/error`, and reports a failed start on `.../init/error`.
//!
//! ```no_run
//! # async fn f() {
//! let api = tributary_testkit::runtime::RuntimeApi::start().await;
//! let mut child = api.spawn(env!("CARGO_MANIFEST_DIR"), &[("SOME_CONFIG", "x")]);
//! let answer = api.invoke(serde_json::json!({"hello": 1})).await;
//! # }
//! ```

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::{Notify, oneshot};
use tokio::task::JoinHandle;

/// What the function answered to one invocation.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// `.../response` with this body.
    Response(serde_json::Value),
    /// `.../error`: `errorType`, `errorMessage`.
    Error(String, String),
}

/// Who waits for an invocation's answer: parsed, or as the raw body (benchmarks).
enum Waiter {
    Parsed(oneshot::Sender<Answer>),
    Raw(oneshot::Sender<RawAnswer>),
}

/// What the function answered, unparsed: the `.../response` body, or the `.../error` fields.
pub type RawAnswer = Result<Bytes, (String, String)>;

#[derive(Default)]
struct State {
    queue: VecDeque<(String, Bytes)>,
    waiting: HashMap<String, Waiter>,
    init_error: Option<(String, String)>,
    /// When the function first asked for an invocation.
    first_poll: Option<Instant>,
    next: u64,
}

/// The emulator; stops when dropped.
#[derive(Debug)]
pub struct RuntimeApi {
    addr: std::net::SocketAddr,
    state: Arc<Mutex<State>>,
    notify: Arc<Notify>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("queued", &self.queue.len())
            .finish()
    }
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RuntimeApi {
    /// Starts on a free loopback port.
    pub async fn start() -> RuntimeApi {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .expect("bind the runtime API emulator");
        let addr = listener.local_addr().expect("addr");
        let state = Arc::new(Mutex::new(State::default()));
        let notify = Arc::new(Notify::new());
        let (st, nt) = (state.clone(), notify.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (st, nt) = (st.clone(), nt.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req| answer(req, st.clone(), nt.clone()));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        RuntimeApi {
            addr,
            state,
            notify,
            task,
        }
    }

    /// `host:port`, the value of `AWS_LAMBDA_RUNTIME_API`.
    pub fn endpoint(&self) -> String {
        self.addr.to_string()
    }

    /// `binary` set up as Lambda starts a function: a clean environment with the
    /// `AWS_LAMBDA_*` variables, pointed at this emulator, JSON logs, no stdin.
    pub fn command(&self, binary: &str) -> Command {
        let mut cmd = Command::new(binary);
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("AWS_LAMBDA_RUNTIME_API", self.endpoint())
            .env("AWS_LAMBDA_FUNCTION_NAME", "tributary-test")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1024")
            .env("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/tributary-test")
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "test")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_LAMBDA_LOG_FORMAT", "JSON")
            .stdin(Stdio::null());
        cmd
    }

    /// Starts `binary` as Lambda would ([`RuntimeApi::command`], `RUST_LOG=warn`) with `env`
    /// on top; its output goes to this process's stderr.
    pub fn spawn(&self, binary: &str, env: &[(&str, &str)]) -> Child {
        let mut cmd = self.command(binary);
        cmd.env("RUST_LOG", "warn")
            .stdout(Stdio::inherit())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.spawn()
            .unwrap_or_else(|e| panic!("cannot start {binary}: {e}"))
    }

    /// Queues one invocation and waits (up to 60 s) for the function's answer.
    pub async fn invoke(&self, payload: serde_json::Value) -> Answer {
        let (tx, rx) = oneshot::channel();
        self.queue(
            Bytes::from(serde_json::to_vec(&payload).unwrap_or_default()),
            Waiter::Parsed(tx),
        );
        match tokio::time::timeout(Duration::from_secs(60), rx).await {
            Ok(Ok(answer)) => answer,
            _ => panic!("the function did not answer within 60 s"),
        }
    }

    /// Queues one invocation of `payload` as it is and waits (up to 60 s) for the answer,
    /// unparsed (benchmarks: the emulator adds no JSON work of its own).
    pub async fn invoke_raw(&self, payload: Bytes) -> RawAnswer {
        let (tx, rx) = oneshot::channel();
        self.queue(payload, Waiter::Raw(tx));
        match tokio::time::timeout(Duration::from_secs(60), rx).await {
            Ok(Ok(answer)) => answer,
            _ => panic!("the function did not answer within 60 s"),
        }
    }

    fn queue(&self, payload: Bytes, waiter: Waiter) {
        {
            let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
            s.next += 1;
            let id = format!("request-{}", s.next);
            s.waiting.insert(id.clone(), waiter);
            s.queue.push_back((id, payload));
        }
        self.notify.notify_waiters();
        self.notify.notify_one();
    }

    /// Waits (up to `timeout`) for an init error: (`errorType`, `errorMessage`).
    pub async fn init_error(&self, timeout: Duration) -> Option<(String, String)> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(e) = self
                .state
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .init_error
                .clone()
            {
                return Some(e);
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// When the function first asked for an invocation (its init done), waiting up to
    /// `timeout` for it.
    pub async fn first_poll(&self, timeout: Duration) -> Option<Instant> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let polled = self
                .state
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .first_poll;
            if polled.is_some() {
                return polled;
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

fn error_fields(body: &[u8], header_type: Option<&str>) -> (String, String) {
    let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    (
        v["errorType"]
            .as_str()
            .or(header_type)
            .unwrap_or_default()
            .to_owned(),
        v["errorMessage"].as_str().unwrap_or_default().to_owned(),
    )
}

/// Answers one request of the Runtime API.
async fn answer(
    req: Request<Incoming>,
    state: Arc<Mutex<State>>,
    notify: Arc<Notify>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let error_type = parts
        .headers
        .get("lambda-runtime-function-error-type")
        .and_then(|v| v.to_str().ok());
    let lock = || state.lock().unwrap_or_else(|p| p.into_inner());
    let base = "/2018-06-01/runtime";
    let path = parts.uri.path();
    let mut resp = Response::builder().header(http::header::CONTENT_TYPE, "application/json");
    let (status, out) = if parts.method == Method::GET && path == format!("{base}/invocation/next")
    {
        lock().first_poll.get_or_insert_with(Instant::now);
        let (id, payload) = loop {
            let waiter = notify.notified();
            if let Some(next) = lock().queue.pop_front() {
                break next;
            }
            waiter.await;
        };
        let deadline = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() + 300_000)
            .unwrap_or_default();
        resp = resp
            .header("Lambda-Runtime-Aws-Request-Id", id)
            .header("Lambda-Runtime-Deadline-Ms", deadline.to_string())
            .header(
                "Lambda-Runtime-Invoked-Function-Arn",
                "arn:aws:lambda:us-east-1:123456789012:function:tributary-test",
            )
            .header(
                "Lambda-Runtime-Trace-Id",
                "Root=1-00000000-000000000000000000000000;Sampled=0",
            );
        (StatusCode::OK, payload)
    } else if parts.method == Method::POST && path == format!("{base}/init/error") {
        lock().init_error = Some(error_fields(&body, error_type));
        (StatusCode::ACCEPTED, Bytes::from_static(b"{}"))
    } else if let Some(rest) = path.strip_prefix(&format!("{base}/invocation/")) {
        let (id, what) = rest.split_once('/').unwrap_or((rest, ""));
        if matches!(what, "response" | "error") {
            let waiter = lock().waiting.remove(id);
            match waiter {
                Some(Waiter::Parsed(tx)) => {
                    let _ = tx.send(if what == "response" {
                        Answer::Response(
                            serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
                        )
                    } else {
                        let (t, m) = error_fields(&body, error_type);
                        Answer::Error(t, m)
                    });
                }
                Some(Waiter::Raw(tx)) => {
                    let _ = tx.send(if what == "response" {
                        Ok(body)
                    } else {
                        Err(error_fields(&body, error_type))
                    });
                }
                None => {}
            }
            (StatusCode::ACCEPTED, Bytes::from_static(b"{}"))
        } else {
            (StatusCode::NOT_FOUND, Bytes::from_static(b"{}"))
        }
    } else {
        (StatusCode::NOT_FOUND, Bytes::from_static(b"{}"))
    };
    Ok(resp
        .status(status)
        .body(Full::new(out))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::from_static(b"{}")))))
}
