//! Lambda entry point of url-ingester: configuration and clients once, then the runtime loop.

use url_ingester::Ingester;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    tributary::runtime::serve(Ingester::from_env, |ingester, event| async move {
        ingester.dispatch(event).await
    })
    .await
}
