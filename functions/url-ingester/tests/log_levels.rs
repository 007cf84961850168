//! The real binary at `AWS_LAMBDA_LOG_LEVEL=WARN` with JSON logs: its EMF line survives
//! Lambda's log-level filter and every JSON line it writes carries a level and a timestamp.

use tributary_testkit::logs::{Logged, assert_metrics_survive};
use tributary_testkit::runtime::{Answer, RuntimeApi};
use tributary_testkit::{HttpServer, Resource, TestS3};

const BIN: &str = env!("CARGO_BIN_EXE_url-ingester");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_survive_lambda_log_level_warn() {
    let s3 = TestS3::start().await;
    let bucket = s3.bucket().await;
    let http = HttpServer::start().await;
    let body = tributary_testkit::data::random_bytes(64 * 1024 + 3, 7);
    http.serve("/data/file.csv", Resource::new(body.clone()));
    let api = RuntimeApi::start().await;
    let mut env = vec![
        ("AWS_ENDPOINT_URL_S3", s3.endpoint.clone()),
        ("AWS_ACCESS_KEY_ID", s3.access_key.clone()),
        ("AWS_SECRET_ACCESS_KEY", s3.secret_key.clone()),
        ("AWS_REGION", s3.region.clone()),
        ("DEFAULT_BUCKET", bucket.clone()),
        ("ALLOW_PRIVATE_NETWORKS", "127.0.0.1/32".to_owned()),
    ];
    if s3.path_style {
        env.push(("S3_FORCE_PATH_STYLE", "true".to_owned()));
    }
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let run = Logged::spawn(&api, BIN, "WARN", &env);
    let answer = api
        .invoke(serde_json::json!({"url": http.url("/data/file.csv"), "key": "raw/logs/file.csv"}))
        .await;
    let Answer::Response(r) = answer else {
        panic!("the ingestion failed: {answer:?}");
    };
    assert_eq!(r["status"], "complete", "{r}");
    // A failing request logs at WARN or ERROR: those lines need a level too.
    let _ = api
        .invoke(serde_json::json!({"url": http.url("/missing"), "key": "raw/logs/missing"}))
        .await;
    let lines = run.stop();
    let emf = assert_metrics_survive(&lines, "WARN", "url-ingester");
    assert!(
        emf.iter()
            .any(|d| d["BytesIngested"] == body.len() as f64 && d["Completed"] == 1.0),
        "{emf:?}"
    );
}
