//! One conversion from the command line, through the real handler and configuration:
//!
//! ```sh
//! AWS_ENDPOINT_URL_S3=http://127.0.0.1:9000 S3_FORCE_PATH_STYLE=true PARTITION_BY=tpep_pickup_datetime:day \
//!   cargo run --release -p parquet-converter --example convert -- s3://bucket/raw/taxi/trips.csv
//! ```
//! The argument is an event (JSON, e.g. one of `events/parquet-converter/`) or `s3://bucket/key`,
//! for which the S3 notification is built as S3 sends it (size and ETag from HeadObject).
//! Prints the handler's response JSON; exits 1 with `errorType: message` on failure.

use lambda_runtime::{Context, LambdaEvent};
use parquet_converter::Converter;
use tributary::Env;

#[tokio::main]
async fn main() {
    let env = Env::from_process();
    tributary::observability::init_tracing(&env);
    let Some(arg) = std::env::args().nth(1) else {
        eprintln!("usage: convert ('<event JSON>' | s3://bucket/key)");
        std::process::exit(2);
    };
    let converter = match Converter::from_env(&env).await {
        Ok(c) => c,
        Err(e) => fail(&e),
    };
    let event = match arg.strip_prefix("s3://") {
        Some(path) => {
            let Some((bucket, key)) = path.split_once('/') else {
                eprintln!("expected s3://bucket/key, got {arg}");
                std::process::exit(2);
            };
            match converter.put_event_for(bucket, key).await {
                Ok(ev) => ev,
                Err(e) => fail(&e),
            }
        }
        None => match serde_json::from_str(&arg) {
            Ok(v) => v,
            Err(e) => {
                eprintln!("the event is not JSON: {e}");
                std::process::exit(2);
            }
        },
    };
    match converter
        .handle(LambdaEvent::new(event, Context::default()))
        .await
    {
        Ok(resp) => println!("{}", serde_json::to_string(&resp).unwrap_or_default()),
        Err(e) => fail(&e),
    }
}

fn fail(e: &tributary::Error) -> ! {
    eprintln!("{}: {e}", e.error_type());
    std::process::exit(1)
}
