//! The real `bootstrap` binary under a Lambda Runtime API emulator: every sample event in
//! `events/parquet-converter/` gets the right answer; a bad configuration is an init error.

use std::time::Duration;

use parquet_converter::{Outcome, Response};
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
    // The objects exist here with their real ETag (the samples carry a placeholder).
    serde_json::from_str(&text.replace(SAMPLE_ETAG, etag)).expect("JSON")
}

/// A fresh embedded store (the samples name a fixed bucket) holding a small taxi CSV at each
/// of `keys`; the store and the objects' ETag.
async fn sample_store(keys: &[&str]) -> (TestS3, String) {
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
    for key in keys {
        etag = s3
            .put(SAMPLE_BUCKET, key, csv.as_bytes().to_vec())
            .await
            .expect("etag");
    }
    (s3, etag)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_answers_every_sample_event() {
    let (s3, etag) = sample_store(&[
        "raw/taxi/yellow_tripdata_2024-01.csv",
        "raw/taxi/part-2.csv",
        "raw/taxi/trips 2024+extra/택시 데이터.csv",
    ])
    .await;
    let api = RuntimeApi::start().await;
    let mut child = api.spawn(
        BIN,
        &[
            ("AWS_ENDPOINT_URL_S3", s3.endpoint.as_str()),
            ("AWS_ACCESS_KEY_ID", s3.access_key.as_str()),
            ("AWS_SECRET_ACCESS_KEY", s3.secret_key.as_str()),
            ("S3_FORCE_PATH_STYLE", "true"),
            ("PARTITION_BY", "tpep_pickup_datetime:day"),
        ],
    );
    // The function's answer, read back through the type it serialises.
    let response = |r: Value| -> Response { serde_json::from_value(r).expect("a Response") };
    let statuses = |r: &Response| -> Vec<&str> { r.results.iter().map(Outcome::status).collect() };
    for (name, want) in [
        ("s3-put", vec!["converted"]),
        ("s3-put-special-key", vec!["converted"]),
        ("multi-record", vec!["converted", "converted"]),
        ("eventbridge", vec!["converted"]),
        ("item", vec!["converted"]),
        ("delete", vec!["skipped"]),
    ] {
        let Answer::Response(r) = api.invoke(sample(name, &etag)).await else {
            panic!("{name}: the invocation failed");
        };
        let r = response(r);
        assert_eq!(statuses(&r), want, "{name}: {r}");
        if name == "s3-put-special-key" {
            let key = &r.results[0].summary().expect("converted").files[0].key;
            assert!(
                key.starts_with("processed/taxi/year=2024/") && key.contains("/택시 데이터-"),
                "{key}"
            );
        }
    }
    // SQS: the missing object is reported in batchItemFailures, the other converts.
    let event = sample("sqs", &etag);
    let Answer::Response(r) = api.invoke(event.clone()).await else {
        panic!("sqs: the invocation failed");
    };
    let r = response(r);
    assert_eq!(statuses(&r), ["converted", "failed"], "{r}");
    let failed_id = event["Records"][1]["messageId"].as_str().expect("id");
    assert_eq!(r.failed_messages(), [failed_id]);
    child.kill().expect("stop the function");
    let _ = child.wait();
}

/// The large-object samples through the real binary: `plan.json`, each line of the plan as
/// the Map hands it, then `commit.json` (its `ranges` as the plan cut).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_plans_converts_the_ranges_and_commits() {
    let key = "raw/taxi/yellow_tripdata_2024-01.csv";
    let (s3, etag) = sample_store(&[key]).await;
    let api = RuntimeApi::start().await;
    let mut child = api.spawn(
        BIN,
        &[
            ("AWS_ENDPOINT_URL_S3", s3.endpoint.as_str()),
            ("AWS_ACCESS_KEY_ID", s3.access_key.as_str()),
            ("AWS_SECRET_ACCESS_KEY", s3.secret_key.as_str()),
            ("S3_FORCE_PATH_STYLE", "true"),
            ("PARTITION_BY", "tpep_pickup_datetime:day"),
        ],
    );
    let Answer::Response(plan) = api.invoke(sample("plan", &etag)).await else {
        panic!("plan: the invocation failed");
    };
    let plan: parquet_converter::ranged::PlanAnswer =
        serde_json::from_value(plan).expect("a plan answer");
    assert_eq!(plan.ranges, 1, "a small object is one range");
    let lines = s3.get(&plan.manifest.bucket, &plan.manifest.key).await;
    for line in lines.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let item: Value = serde_json::from_slice(line).expect("a plan line");
        assert_eq!(item["mode"], "range");
        let Answer::Response(done) = api.invoke(item).await else {
            panic!("range: the invocation failed");
        };
        assert_eq!(done["rows"], 2, "{done}");
    }
    let mut commit = sample("commit", &etag);
    commit["ranges"] = plan.ranges.into();
    let Answer::Response(out) = api.invoke(commit).await else {
        panic!("commit: the invocation failed");
    };
    let outcome: Outcome = serde_json::from_value(out).expect("an outcome");
    let summary = outcome.summary().expect("converted");
    assert_eq!(summary.rows, 2);
    assert_eq!(summary.partitions, 2);
    assert!(
        s3.keys(SAMPLE_BUCKET, "processed/_ranges/")
            .await
            .is_empty()
    );
    assert_eq!(
        s3.keys(SAMPLE_BUCKET, "processed/taxi/").await.len(),
        summary.files.len()
    );
    child.kill().expect("stop the function");
    let _ = child.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_configuration_is_an_init_error_naming_the_variable() {
    let api = RuntimeApi::start().await;
    let mut child = api.spawn(BIN, &[("SCHEMA", r#"[{"name":"a","type":"int"}]"#)]);
    let (kind, message) = api
        .init_error(Duration::from_secs(20))
        .await
        .expect("an init error");
    assert_eq!(kind, "ConfigError");
    assert!(
        message.contains("SCHEMA") && message.contains("\"int\""),
        "{message}"
    );
    assert!(!child.wait().expect("exits").success());
}

/// The real binary at `AWS_LAMBDA_LOG_LEVEL=WARN` with JSON logs: its EMF line survives
/// Lambda's log-level filter and every JSON line it writes carries a level and a timestamp.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_survive_lambda_log_level_warn() {
    let (s3, etag) = sample_store(&[
        "raw/taxi/yellow_tripdata_2024-01.csv",
        "raw/taxi/part-2.csv",
    ])
    .await;
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
