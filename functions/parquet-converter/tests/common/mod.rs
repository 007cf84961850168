//! Helpers shared by the converter's integration tests.
#![allow(dead_code)]

use lambda_runtime::{Context, LambdaEvent};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet_converter::convert::Summary;
use parquet_converter::{Config, Converter, Response};
use serde_json::Value;
use tributary::Env;
use tributary::s3::S3Settings;
use tributary_testkit::TestS3;

pub async fn converter(s3: &TestS3, extra: &[(&str, &str)]) -> Converter {
    let mut env = Env::from_pairs([("INFER_ROWS", "1000"), ("BATCH_ROWS", "4096")]);
    for (k, v) in extra {
        env = env.with(*k, *v);
    }
    let mut settings = S3Settings::for_endpoint(&s3.endpoint, &s3.access_key, &s3.secret_key);
    settings.force_path_style = s3.path_style;
    settings.service.region = Some(s3.region.clone());
    Converter::new(
        Config::from_env(&env).expect("config"),
        settings.build_client().await,
    )
}

/// The S3 notification S3 itself would send for `key` (form-encoded key, size, ETag).
pub fn s3_event(bucket: &str, key: &str, size: usize, etag: &str) -> Value {
    parquet_converter::event::s3_put_event(bucket, key, size as u64, Some(etag), None)
}

/// Stores `body` at `key` and hands the converter the notification S3 would send for it.
pub async fn put_and_handle(
    s3: &TestS3,
    c: &Converter,
    bucket: &str,
    key: &str,
    body: Vec<u8>,
) -> Result<Response, tributary::Error> {
    let size = body.len();
    let etag = s3.put(bucket, key, body).await.unwrap_or_default();
    c.handle(LambdaEvent::new(
        s3_event(bucket, key, size, &etag),
        Context::default(),
    ))
    .await
}

pub async fn put_and_convert(
    s3: &TestS3,
    c: &Converter,
    bucket: &str,
    key: &str,
    body: Vec<u8>,
) -> Response {
    put_and_handle(s3, c, bucket, key, body)
        .await
        .unwrap_or_else(|e| panic!("convert {key}: {e}"))
}

/// The summary of the one object `out` converted.
pub fn converted(out: &Response) -> &Summary {
    out.only_converted()
        .unwrap_or_else(|| panic!("exactly one object converted: {out}"))
}

/// Every Parquet file under `prefix`: (key, batches).
pub async fn read_parquet(
    s3: &TestS3,
    bucket: &str,
    prefix: &str,
) -> Vec<(String, Vec<arrow::array::RecordBatch>)> {
    let mut out = Vec::new();
    for key in s3.keys(bucket, prefix).await {
        if !key.ends_with(".parquet") {
            continue;
        }
        let bytes = bytes::Bytes::from(s3.get(bucket, &key).await);
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
            .expect("a Parquet file")
            .build()
            .expect("reader");
        out.push((key, reader.map(|b| b.expect("batch")).collect()));
    }
    out
}

pub fn rows(files: &[(String, Vec<arrow::array::RecordBatch>)]) -> usize {
    files
        .iter()
        .flat_map(|(_, b)| b)
        .map(|b| b.num_rows())
        .sum()
}

/// Converts `key` (already stored, `size` bytes, `etag`) expecting an S3 failure of
/// `error_type` (`S3Error`, or `S3Unavailable` when retrying can help); then checks that
/// nothing was left behind: no output, no open multipart upload.
pub async fn assert_fails_leaving_nothing(
    s3: &TestS3,
    c: &Converter,
    bucket: &str,
    key: &str,
    size: usize,
    etag: &str,
    error_type: &str,
) {
    let err = c
        .handle(LambdaEvent::new(
            s3_event(bucket, key, size, etag),
            Context::default(),
        ))
        .await
        .expect_err("S3 keeps failing");
    assert_eq!(err.error_type(), error_type, "{err}");
    let clean = tributary_testkit::s3::eventually(std::time::Duration::from_secs(5), || async {
        s3.open_uploads(bucket).await.is_empty()
    })
    .await;
    assert!(clean, "uploads left: {:?}", s3.open_uploads(bucket).await);
    let left = s3.keys(bucket, "processed/").await;
    assert!(left.is_empty(), "{left:?}");
}

/// The test venv's Python (pyarrow, DuckDB), when `scripts/test.sh` made one.
pub fn venv_python() -> Option<std::path::PathBuf> {
    std::env::var_os("TRIBUTARY_VENV")
        .map(|v| std::path::PathBuf::from(v).join("bin/python"))
        .filter(|p| p.exists())
}

/// Runs `script` with the Parquet files under `prefix` downloaded to a folder (its
/// `sys.argv[1]`); the JSON it prints.
pub async fn python_over_parquet(
    python: &std::path::Path,
    s3: &TestS3,
    bucket: &str,
    prefix: &str,
    script: &str,
) -> Value {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = s3.keys(bucket, prefix).await;
    for (i, key) in keys.iter().filter(|k| k.ends_with(".parquet")).enumerate() {
        std::fs::write(
            dir.path().join(format!("{i}.parquet")),
            s3.get(bucket, key).await,
        )
        .expect("write");
    }
    let out = std::process::Command::new(python)
        .arg("-c")
        .arg(script)
        .arg(dir.path())
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("json")
}

/// Converts `key` (stored now with `body`), expecting a failure: the error.
pub async fn convert_err(
    s3: &TestS3,
    c: &Converter,
    bucket: &str,
    key: &str,
    body: Vec<u8>,
) -> tributary::Error {
    put_and_handle(s3, c, bucket, key, body)
        .await
        .expect_err(key)
}
