//! Every function's `main`: configuration once ([`serve`]), a failed start reported to the
//! Runtime API, then the runtime loop. [`serve_raw`] is the same loop for a handler that reads
//! the request body and writes the response body itself (multi-megabyte events). A handler
//! that panics fails its invocation with `InternalError` in both; the process serves on.

use std::any::Any;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use bytes::Bytes;
use lambda_runtime::tower::{Layer, Service};
use lambda_runtime::{Context, Diagnostic, LambdaEvent, LambdaInvocation, service_fn};
use lambda_runtime_api_client::body::Body;
use lambda_runtime_api_client::{BoxError, build_request};
use serde::Serialize;
use serde::de::DeserializeOwned;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::Error;

/// Runs a function: tracing from the environment, `init` once per cold start (its error is
/// logged, reported as the init error and ends the process), then `handler` for every event,
/// with what `init` built.
pub async fn serve<S, E, R, Fut>(
    init: impl AsyncFnOnce(&crate::Env) -> crate::Result<S>,
    handler: impl Fn(Arc<S>, LambdaEvent<E>) -> Fut,
) -> Result<(), lambda_runtime::Error>
where
    S: Send + Sync + 'static,
    E: DeserializeOwned + Send + 'static,
    R: Serialize + Send + 'static,
    Fut: Future<Output = crate::Result<R>>,
{
    let state = start(init).await?;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<E>| {
        handler(state.clone(), event)
    }))
    .await
}

/// Like [`serve`], for a handler that takes the request body as it arrived (with the
/// invocation's context) and returns the response body, already JSON: the runtime neither
/// deserialises the event into a payload type nor serialises the response again, so a
/// multi-megabyte event is read once and the response is sent from the handler's buffer as it
/// is. The invocation loop, its context and its tracing span are `lambda_runtime`'s; an error
/// is reported on `.../error` as [`serve`] reports it, and so is a panic of the handler (while
/// it is called or while its future runs), as [`Error::Internal`]: the process serves on.
pub async fn serve_raw<S, Fut>(
    init: impl AsyncFnOnce(&crate::Env) -> crate::Result<S>,
    handler: impl Fn(Arc<S>, Bytes, Context) -> Fut + Send + Sync + 'static,
) -> Result<(), lambda_runtime::Error>
where
    S: Send + Sync + 'static,
    Fut: Future<Output = crate::Result<Vec<u8>>> + Send + 'static,
{
    let state = start(init).await?;
    // The runtime's own handler is never reached: the raw layer answers every invocation.
    let unused =
        service_fn(|_: LambdaEvent<serde::de::IgnoredAny>| async { Ok::<(), Diagnostic>(()) });
    let raw = RawLayer(Arc::new(RawHandler {
        state,
        handler,
        client: lambda_runtime_api_client::PooledClient::builder().build(),
    }));
    lambda_runtime::Runtime::new(unused)
        .layer(raw)
        .layer(lambda_runtime::layers::TracingLayer::new())
        .run()
        .await
}

struct RawHandler<S, H> {
    state: Arc<S>,
    handler: H,
    client: lambda_runtime_api_client::PooledClient,
}

/// Puts [`RawService`] in front of the runtime's deserialising service.
struct RawLayer<S, H>(Arc<RawHandler<S, H>>);

impl<S, H, Inner> Layer<Inner> for RawLayer<S, H> {
    type Service = RawService<S, H>;
    fn layer(&self, _inner: Inner) -> Self::Service {
        RawService(self.0.clone())
    }
}

/// Answers an invocation from its raw body: the handler's bytes go to `.../response`, its
/// error to `.../error`.
struct RawService<S, H>(Arc<RawHandler<S, H>>);

impl<S, H, Fut> Service<LambdaInvocation> for RawService<S, H>
where
    S: Send + Sync + 'static,
    H: Fn(Arc<S>, Bytes, Context) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = crate::Result<Vec<u8>>> + Send + 'static,
{
    type Response = ();
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<(), BoxError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut TaskContext<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, invocation: LambdaInvocation) -> Self::Future {
        let raw = self.0.clone();
        let request_id = invocation.context.request_id.clone();
        // Echoed so the Runtime API can refuse an answer to a timed-out invocation.
        let invocation_id = invocation
            .parts
            .headers
            .get("lambda-runtime-invocation-id")
            .cloned();
        // A panic is caught where lambda_runtime's own handler layer would catch it: in the
        // call, and in every poll of the future it returns.
        let answer = catch_unwind(AssertUnwindSafe(|| {
            (raw.handler)(raw.state.clone(), invocation.body, invocation.context)
        }));
        Box::pin(async move {
            let base = format!("/2018-06-01/runtime/invocation/{request_id}");
            let outcome = match answer {
                Ok(future) => {
                    let mut future = std::pin::pin!(future);
                    std::future::poll_fn(|cx| {
                        match catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(cx))) {
                            Ok(poll) => poll,
                            Err(panic) => Poll::Ready(Err(panicked(&*panic))),
                        }
                    })
                    .await
                }
                Err(panic) => Err(panicked(&*panic)),
            };
            let mut request = match outcome {
                Ok(body) => build_request()
                    .method(http::Method::POST)
                    .uri(format!("{base}/response"))
                    .body(Body::from(body))?,
                Err(e) => build_request()
                    .method(http::Method::POST)
                    .uri(format!("{base}/error"))
                    .header("lambda-runtime-function-error-type", "unhandled")
                    .body(Body::from(serde_json::to_vec(&Diagnostic::from(e))?))?,
            };
            if let Some(id) = invocation_id {
                request
                    .headers_mut()
                    .insert("lambda-runtime-invocation-id", id);
            }
            let response = raw.client.call(request).await?;
            if !response.status().is_success() {
                // As the runtime does: logged, and the loop goes on.
                tracing::error!(status = %response.status(), "Lambda Runtime API refused the answer");
            }
            Ok(())
        })
    }
}

/// The error a panicking handler's invocation answers (logged here: the panic hook has
/// printed the message and where it happened).
fn panicked(panic: &(dyn Any + Send)) -> Error {
    let message = panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("no message");
    tracing::error!(panic = message, "the handler panicked");
    Error::Internal(format!("the handler panicked: {message}"))
}

/// Tracing from the environment, then `init`: its state, or its error logged and reported to
/// the Runtime API.
async fn start<S>(
    init: impl AsyncFnOnce(&crate::Env) -> crate::Result<S>,
) -> Result<Arc<S>, lambda_runtime::Error> {
    let env = crate::Env::from_process();
    crate::observability::init_tracing(&env);
    match init(&env).await {
        Ok(s) => Ok(Arc::new(s)),
        Err(e) => {
            tracing::error!(error_type = e.error_type(), "{e}");
            report_init_error(&e).await;
            Err(e.into())
        }
    }
}

/// Reports that initialisation failed to the Runtime API (`/runtime/init/error`), so Lambda
/// shows an init error with our `errorType` and the message naming the variable, instead of a
/// bare exit. Does nothing outside Lambda; never fails (the caller exits next anyway).
async fn report_init_error(err: &Error) {
    let Ok(api) = std::env::var("AWS_LAMBDA_RUNTIME_API") else {
        return;
    };
    let body = serde_json::json!({
        "errorType": err.error_type(),
        "errorMessage": err.to_string(),
        "stackTrace": [],
    })
    .to_string();
    let request = format!(
        "POST /2018-06-01/runtime/init/error HTTP/1.1\r\nHost: {api}\r\n\
         Lambda-Runtime-Function-Error-Type: {}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        err.error_type(),
        body.len()
    );
    let send = async {
        let mut stream = tokio::net::TcpStream::connect(api.as_str()).await?;
        stream.write_all(request.as_bytes()).await?;
        let mut answer = [0u8; 256];
        let _ = stream.read(&mut answer).await?;
        Ok::<(), std::io::Error>(())
    };
    if let Err(e) = tokio::time::timeout(Duration::from_secs(2), send)
        .await
        .unwrap_or_else(|_| Err(std::io::Error::other("timed out")))
    {
        tracing::warn!(error = %e, "could not report the init error to the Runtime API");
    }
}
