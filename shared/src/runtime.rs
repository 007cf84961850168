//! Every function's `main`: configuration once ([`serve`]), a failed start reported to the
//! Runtime API, then the runtime loop.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use lambda_runtime::{LambdaEvent, service_fn};
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
    let env = crate::Env::from_process();
    crate::observability::init_tracing(&env);
    let state = match init(&env).await {
        Ok(s) => Arc::new(s),
        Err(e) => {
            tracing::error!(error_type = e.error_type(), "{e}");
            report_init_error(&e).await;
            return Err(e.into());
        }
    };
    lambda_runtime::run(service_fn(move |event: LambdaEvent<E>| {
        handler(state.clone(), event)
    }))
    .await
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
