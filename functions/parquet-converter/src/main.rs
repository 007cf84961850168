//! Lambda entry point of parquet-converter: configuration and client once, then the runtime loop.

use std::sync::Arc;

use lambda_runtime::{Error, LambdaEvent, service_fn};
use parquet_converter::Converter;
use tributary::Env;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let env = Env::from_process();
    tributary::observability::init_tracing(&env);
    let converter = match Converter::from_env(&env).await {
        Ok(c) => Arc::new(c),
        Err(e) => {
            tracing::error!(error_type = e.error_type(), "{e}");
            tributary::runtime::report_init_error(&e).await;
            return Err(e.into());
        }
    };
    lambda_runtime::run(service_fn(move |event: LambdaEvent<serde_json::Value>| {
        let converter = converter.clone();
        async move { converter.handle(event).await }
    }))
    .await
}
