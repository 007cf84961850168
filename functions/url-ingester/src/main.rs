//! Lambda entry point of url-ingester: configuration and clients once, then the runtime loop.

use std::sync::Arc;

use lambda_runtime::{Error, LambdaEvent, service_fn};
use tributary::Env;
use url_ingester::Ingester;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let env = Env::from_process();
    tributary::observability::init_tracing(&env);
    let ingester = match Ingester::from_env(&env).await {
        Ok(i) => Arc::new(i),
        Err(e) => {
            tracing::error!(error_type = e.error_type(), "{e}");
            tributary::runtime::report_init_error(&e).await;
            return Err(e.into());
        }
    };
    lambda_runtime::run(service_fn(move |event: LambdaEvent<serde_json::Value>| {
        let ingester = ingester.clone();
        async move { ingester.handle(event).await }
    }))
    .await
}
