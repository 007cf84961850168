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
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
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

#[derive(Default)]
struct State {
    queue: VecDeque<(String, Vec<u8>)>,
    waiting: HashMap<String, oneshot::Sender<Answer>>,
    init_error: Option<(String, String)>,
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
                    let _ = serve(stream, st, nt).await;
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

    /// Starts `binary` as Lambda would (`AWS_LAMBDA_*` variables set, pointed at this
    /// emulator) with `env` on top; its output goes to this process's stderr.
    pub fn spawn(&self, binary: &str, env: &[(&str, &str)]) -> Child {
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
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
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
        {
            let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
            s.next += 1;
            let id = format!("request-{}", s.next);
            s.waiting.insert(id.clone(), tx);
            s.queue
                .push_back((id, serde_json::to_vec(&payload).unwrap_or_default()));
        }
        self.notify.notify_waiters();
        self.notify.notify_one();
        match tokio::time::timeout(Duration::from_secs(60), rx).await {
            Ok(Ok(answer)) => answer,
            _ => panic!("the function did not answer within 60 s"),
        }
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

/// One keep-alive connection: requests one after another.
async fn serve(
    stream: TcpStream,
    state: Arc<Mutex<State>>,
    notify: Arc<Notify>,
) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    loop {
        let mut line = String::new();
        if read.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let mut parts = line.split_whitespace();
        let (method, path) = (
            parts.next().unwrap_or_default().to_owned(),
            parts.next().unwrap_or_default().to_owned(),
        );
        let mut headers = HashMap::new();
        loop {
            let mut h = String::new();
            read.read_line(&mut h).await?;
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
            }
        }
        let len: usize = headers
            .get("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0u8; len];
        read.read_exact(&mut body).await?;
        let base = "/2018-06-01/runtime";
        let (status, extra, out): (u16, String, Vec<u8>) = if method == "GET"
            && path == format!("{base}/invocation/next")
        {
            let (id, payload) = loop {
                let waiter = notify.notified();
                if let Some(next) = state
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .queue
                    .pop_front()
                {
                    break next;
                }
                waiter.await;
            };
            let deadline = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() + 300_000)
                .unwrap_or_default();
            (
                200,
                format!(
                    "Lambda-Runtime-Aws-Request-Id: {id}\r\nLambda-Runtime-Deadline-Ms: {deadline}\r\n\
                     Lambda-Runtime-Invoked-Function-Arn: arn:aws:lambda:us-east-1:123456789012:function:tributary-test\r\n\
                     Lambda-Runtime-Trace-Id: Root=1-00000000-000000000000000000000000;Sampled=0\r\n"
                ),
                payload,
            )
        } else if method == "POST" && path == format!("{base}/init/error") {
            let e = error_fields(
                &body,
                headers
                    .get("lambda-runtime-function-error-type")
                    .map(String::as_str),
            );
            state.lock().unwrap_or_else(|p| p.into_inner()).init_error = Some(e);
            (202, String::new(), b"{}".to_vec())
        } else if let Some(rest) = path.strip_prefix(&format!("{base}/invocation/")) {
            let (id, what) = rest.split_once('/').unwrap_or((rest, ""));
            let answer = match what {
                "response" => Some(Answer::Response(
                    serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
                )),
                "error" => {
                    let (t, m) = error_fields(
                        &body,
                        headers
                            .get("lambda-runtime-function-error-type")
                            .map(String::as_str),
                    );
                    Some(Answer::Error(t, m))
                }
                _ => None,
            };
            match answer {
                Some(a) => {
                    if let Some(tx) = state
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .waiting
                        .remove(id)
                    {
                        let _ = tx.send(a);
                    }
                    (202, String::new(), b"{}".to_vec())
                }
                None => (404, String::new(), b"{}".to_vec()),
            }
        } else {
            (404, String::new(), b"{}".to_vec())
        };
        let head = format!(
            "HTTP/1.1 {status} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{extra}\r\n",
            if status < 300 { "OK" } else { "Not Found" },
            out.len()
        );
        write.write_all(head.as_bytes()).await?;
        write.write_all(&out).await?;
        write.flush().await?;
    }
}
