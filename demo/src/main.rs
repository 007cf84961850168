//! `cargo run --release -p tributary-demo -- [options]`: the whole pipeline locally.
//!
//! ```text
//! --rows N             rows of generated taxi data (default 1,000,000, about 100 MiB)
//! --url URL            ingest this file instead (CSV / JSON lines; PARTITION_BY applies if its columns exist)
//! --partition-by SPEC  the converter's PARTITION_BY (default tpep_pickup_datetime:day)
//! --dir PATH           folder the embedded S3 endpoint serves (default ./tributary-demo-data)
//! --endpoint URL       an existing S3 endpoint instead (credentials from the AWS chain)
//! --bucket NAME        bucket (default demo-lake; must exist on an existing endpoint)
//! --no-catalog         no catalog contract: the converter infers each file's types on its own
//! --ranges N           convert the taxi file in N byte ranges, as the large-object state machine does
//! ```
//!
//! By default the converter writes each dataset under its table in a local catalog (JSON files
//! in `<dir>/_catalog/`, the same interface as the Glue Data Catalog), and the demo prints each
//! table with its Athena DDL.

use tributary_demo::{Options, run};

const USAGE: &str = "usage: tributary-demo [--rows N] [--url URL] [--partition-by SPEC] [--dir PATH] [--endpoint URL] [--bucket NAME] [--no-catalog] [--ranges N]";

#[tokio::main]
async fn main() {
    if std::env::var_os("RUST_LOG").is_some() {
        tributary::observability::init_tracing(&tributary::Env::from_process());
    }
    let mut opts = Options::default();
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "-h" || flag == "--help" {
            println!("{USAGE}");
            return;
        }
        if flag == "--no-catalog" {
            opts.catalog = false;
            continue;
        }
        let Some(value) = args.next() else {
            eprintln!("{flag} needs a value\n{USAGE}");
            std::process::exit(2);
        };
        match flag.as_str() {
            "--rows" => match value.replace('_', "").parse() {
                Ok(n) if n > 0 => opts.rows = n,
                _ => {
                    eprintln!("--rows needs a positive number, got {value:?}");
                    std::process::exit(2);
                }
            },
            "--url" => opts.url = Some(value),
            "--partition-by" => opts.partition_by = value,
            "--dir" => opts.dir = value.into(),
            "--endpoint" => opts.endpoint = Some(value),
            "--bucket" => opts.bucket = value,
            "--ranges" => match value.parse() {
                Ok(n) if (1..=10_000).contains(&n) => opts.ranges = Some(n),
                _ => {
                    eprintln!("--ranges needs a number from 1 to 10000, got {value:?}");
                    std::process::exit(2);
                }
            },
            _ => {
                eprintln!("unknown option {flag}\n{USAGE}");
                std::process::exit(2);
            }
        }
    }
    match run(&opts).await {
        Ok(report) => print!("{}", report.table),
        Err(e) => {
            eprintln!("demo failed: {e}");
            std::process::exit(1);
        }
    }
}
