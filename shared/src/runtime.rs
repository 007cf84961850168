//! The Lambda Runtime API outside the runtime loop: reporting a failed start.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::Error;

/// Reports that initialisation failed to the Runtime API (`/runtime/init/error`), so Lambda
/// shows an init error with our `errorType` and the message naming the variable, instead of a
/// bare exit. Does nothing outside Lambda; never fails (the caller exits next anyway).
pub async fn report_init_error(err: &Error) {
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
