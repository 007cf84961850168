//! The real binary at `AWS_LAMBDA_LOG_LEVEL=WARN` with JSON logs: its EMF line survives
//! Lambda's log-level filter and every JSON line it writes carries a level and a timestamp.

use serde_json::Value;
use tributary_testkit::TestS3;
use tributary_testkit::logs::{Logged, assert_metrics_survive};
use tributary_testkit::runtime::{Answer, RuntimeApi};

const BIN: &str = env!("CARGO_BIN_EXE_parquet-converter");
const SAMPLE_BUCKET: &str = "tributary-data-lake-example";
const SAMPLE_ETAG: &str = "0123456789abcdef0123456789abcdef";

fn sample(name: &str, etag: &str) -> Value {
    let path = format!(
        "{}/../../events/parquet-converter/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).expect("sample");
    serde_json::from_str(&text.replace(SAMPLE_ETAG, etag)).expect("JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_survive_lambda_log_level_warn() {
    // The samples name a fixed bucket: use a fresh embedded store.
    let s3 = TestS3::embedded().await;
    let client = tributary_testkit::s3::client_for(
        &s3.endpoint,
        &s3.access_key,
        &s3.secret_key,
        &s3.region,
        s3.path_style,
    );
    client
        .create_bucket()
        .bucket(SAMPLE_BUCKET)
        .send()
        .await
        .expect("create the sample bucket");
    let csv = "VendorID,tpep_pickup_datetime,fare_amount\n1,2024-01-01 00:10:00,12.5\n2,2024-01-02 08:00:00,7.25\n";
    let mut etag = String::new();
    for key in [
        "raw/taxi/yellow_tripdata_2024-01.csv",
        "raw/taxi/part-2.csv",
    ] {
        etag = s3
            .put(SAMPLE_BUCKET, key, csv.as_bytes().to_vec())
            .await
            .expect("etag");
    }
    let api = RuntimeApi::start().await;
    let run = Logged::spawn(
        &api,
        BIN,
        "WARN",
        &[
            ("AWS_ENDPOINT_URL_S3", s3.endpoint.as_str()),
            ("AWS_ACCESS_KEY_ID", s3.access_key.as_str()),
            ("AWS_SECRET_ACCESS_KEY", s3.secret_key.as_str()),
            ("S3_FORCE_PATH_STYLE", "true"),
            ("PARTITION_BY", "tpep_pickup_datetime:day"),
        ],
    );
    let answer = api.invoke(sample("s3-put", &etag)).await;
    assert!(
        matches!(answer, Answer::Response(_)),
        "the conversion failed: {answer:?}"
    );
    // SQS: one object converts, the other is missing, which the function logs as a failure.
    let _ = api.invoke(sample("sqs", &etag)).await;
    let lines = run.stop();
    let emf = assert_metrics_survive(&lines, "WARN", "parquet-converter");
    assert!(emf.iter().all(|d| d["Rows"] == 2.0), "{emf:?}");
    assert_eq!(emf.len(), 2, "one EMF line per converted object: {emf:?}");
}
