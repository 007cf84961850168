//! Lambda entry point of parquet-converter: configuration and client once, then the runtime loop.

// The handler's future nests deeply (event -> object -> passes -> outputs -> uploads).
#![recursion_limit = "256"]

use parquet_converter::Converter;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    tributary::runtime::serve(Converter::from_env, |converter, event| async move {
        converter.invoke(event).await
    })
    .await
}
