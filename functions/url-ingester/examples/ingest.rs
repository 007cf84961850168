//! One ingestion from the command line, through the real handler and configuration:
//!
//! ```sh
//! DEFAULT_BUCKET=b AWS_ENDPOINT_URL_S3=http://127.0.0.1:9000 S3_FORCE_PATH_STYLE=true \
//!   cargo run --release -p url-ingester --example ingest -- '{"url": "https://…/file.csv"}'
//! ```
//! Any mode works (`"mode": "plan"`, `"range"`, `"commit"`; none for the ordinary ingestion).
//! Prints the response JSON. Used by the benchmark and the local demo.

use lambda_runtime::{Context, LambdaEvent};
use tributary::Env;
use url_ingester::Ingester;

#[tokio::main]
async fn main() {
    let env = Env::from_process();
    tributary::observability::init_tracing(&env);
    let Some(arg) = std::env::args().nth(1) else {
        eprintln!("usage: ingest '<request JSON>'");
        std::process::exit(2);
    };
    let event: serde_json::Value = match serde_json::from_str(&arg) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("the request is not JSON: {e}");
            std::process::exit(2);
        }
    };
    let ingester = match Ingester::from_env(&env).await {
        Ok(i) => i,
        Err(e) => {
            eprintln!("{}: {e}", e.error_type());
            std::process::exit(1);
        }
    };
    match ingester
        .dispatch(LambdaEvent::new(event, Context::default()))
        .await
    {
        Ok(resp) => println!("{}", serde_json::to_string(&resp).unwrap_or_default()),
        Err(e) => {
            eprintln!("{}: {e}", e.error_type());
            std::process::exit(1);
        }
    }
}
