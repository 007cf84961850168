//! The pipeline end to end, through every function's real handler on a real S3 endpoint
//! (embedded s3s-fs, or `TEST_S3_ENDPOINT`): a CSV served over HTTP is ingested into `raw/`,
//! the notification S3 would send for it drives the converter, and the Parquet under
//! `processed/` holds the source's rows, partitions and values; Firehose output, delivered
//! under `raw/` as Firehose delivers it, converts the same way.

use std::collections::BTreeMap;
use std::io::Write as _;

use arrow::array::{ArrayRef, RecordBatch, make_array};
use arrow::datatypes::DataType;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use base64::Engine as _;
use lambda_runtime::{Context, LambdaEvent};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::{Value, json};
use tributary::Env;
use tributary::s3::S3Settings;
use tributary_testkit::data::sha256_hex;
use tributary_testkit::data::taxi::{COLUMNS, TaxiOptions, write_csv};
use tributary_testkit::{HttpServer, Resource, TestS3};

async fn client(s3: &TestS3) -> aws_sdk_s3::Client {
    let mut settings = S3Settings::for_endpoint(&s3.endpoint, &s3.access_key, &s3.secret_key);
    settings.force_path_style = s3.path_style;
    settings.service.region = Some(s3.region.clone());
    settings.build_client().await
}

fn env(bucket: &str) -> Env {
    Env::from_pairs([
        ("DEFAULT_BUCKET", bucket),
        ("ALLOW_PRIVATE_NETWORKS", "127.0.0.1/32"),
        ("PART_SIZE_MIB", "5"),
        ("PARTITION_BY", "tpep_pickup_datetime:day"),
        ("PARTITION_TIMESTAMP_FIELD", "ts"),
    ])
}

/// The notification S3 sends for `key` as it is stored now (form-encoded key, size, ETag).
async fn put_event(s3: &TestS3, bucket: &str, key: &str) -> Value {
    let head = s3
        .client
        .head_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap_or_else(|e| panic!("head {key}: {e}"));
    let size = head.content_length().and_then(|n| u64::try_from(n).ok());
    parquet_converter::event::s3_put_event(bucket, key, size.unwrap_or(0), head.e_tag(), None)
}

/// Hands the converter the notification for `key`; its one result.
async fn convert(
    s3: &TestS3,
    converter: &parquet_converter::Converter,
    bucket: &str,
    key: &str,
) -> parquet_converter::convert::Summary {
    let event = put_event(s3, bucket, key).await;
    let out = converter
        .handle(LambdaEvent::new(event, Context::default()))
        .await
        .unwrap_or_else(|e| panic!("convert {key}: {}: {e}", e.error_type()));
    out.only_converted()
        .unwrap_or_else(|| panic!("{key} converted: {out}"))
        .clone()
}

/// Every Parquet file under `prefix`: (key, rows as column name -> displayed value).
async fn read_parquet(
    s3: &TestS3,
    bucket: &str,
    prefix: &str,
) -> Vec<(String, Vec<BTreeMap<String, String>>)> {
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
        let mut rows = Vec::new();
        for batch in reader {
            rows.extend(displayed(&batch.expect("batch")));
        }
        out.push((key, rows));
    }
    out
}

fn displayed(batch: &RecordBatch) -> Vec<BTreeMap<String, String>> {
    let options = FormatOptions::default();
    let columns: Vec<(String, ArrayRef)> = batch
        .schema()
        .fields()
        .iter()
        .zip(batch.columns())
        .map(|(f, c)| (f.name().clone(), wall_time(c)))
        .collect();
    let columns: Vec<(String, ArrayFormatter<'_>)> = columns
        .iter()
        .map(|(name, c)| {
            let fmt = ArrayFormatter::try_new(c.as_ref(), &options).expect("formatter");
            (name.clone(), fmt)
        })
        .collect();
    (0..batch.num_rows())
        .map(|i| {
            columns
                .iter()
                .map(|(name, fmt)| (name.clone(), fmt.value(i).to_string()))
                .collect()
        })
        .collect()
}

/// A UTC timestamp column as its wall time (arrow displays named zones only with chrono-tz).
fn wall_time(column: &ArrayRef) -> ArrayRef {
    match column.data_type() {
        DataType::Timestamp(unit, Some(_)) => {
            let data = column
                .to_data()
                .into_builder()
                .data_type(DataType::Timestamp(*unit, None))
                .build()
                .expect("the same values");
            make_array(data)
        }
        _ => column.clone(),
    }
}

/// One taxi row, as compared: pickup (`YYYY-MM-DD HH:MM:SS`), vendor, passengers, pickup
/// zone, flag, fare and total (as numbers).
type Trip = (String, i64, Option<i64>, i64, String, u64, u64);

fn trip(get: impl Fn(&str) -> String) -> Trip {
    let int = |c: &str| get(c).parse::<i64>().unwrap_or_else(|e| panic!("{c}: {e}"));
    let num = |c: &str| {
        get(c)
            .parse::<f64>()
            .unwrap_or_else(|e| panic!("{c}: {e}"))
            .to_bits()
    };
    let pickup: String = get("tpep_pickup_datetime")
        .replace('T', " ")
        .chars()
        .take(19)
        .collect();
    let passengers = get("passenger_count");
    (
        pickup,
        int("VendorID"),
        (!passengers.is_empty()).then(|| int("passenger_count")),
        int("PULocationID"),
        get("store_and_fwd_flag"),
        num("fare_amount"),
        num("total_amount"),
    )
}

/// The test venv's Python with pyarrow: `TRIBUTARY_VENV` (as `scripts/test.sh` sets it) or
/// the default venv, when present.
fn venv_python() -> Option<std::path::PathBuf> {
    let venv = std::env::var_os("TRIBUTARY_VENV")
        .map(std::path::PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .map(|h| std::path::PathBuf::from(h).join(".cache/tributary/venv"))
        })?;
    let python = venv.join("bin/python");
    python.exists().then_some(python)
}

#[tokio::test]
async fn a_csv_from_a_url_becomes_partitioned_parquet_with_every_row_and_value() {
    tributary::observability::set_emf_output(false);
    let s3 = TestS3::start().await;
    let bucket = s3.bucket().await;
    let client = client(&s3).await;

    // The source: generated trips over five days, every 250th row malformed.
    let mut csv = Vec::new();
    let stats = write_csv(
        &mut csv,
        &TaxiOptions {
            rows: Some(3_000),
            bad_every: Some(250),
            days: 5,
            ..TaxiOptions::default()
        },
    )
    .expect("generate");
    let text = String::from_utf8(csv.clone()).expect("utf8");
    let mut source: Vec<Trip> = text
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect::<Vec<_>>())
        .filter(|f| f.len() == COLUMNS.len())
        .map(|f| {
            trip(|c| {
                let i = COLUMNS.iter().position(|n| *n == c).expect("a column");
                f[i].to_owned()
            })
        })
        .collect();
    let good = stats.rows - stats.bad_rows;
    assert_eq!(source.len() as u64, good);
    let http = HttpServer::start().await;
    http.serve(
        "/trips/yellow_tripdata_2024-01.csv",
        Resource::new(csv.clone()).content_type("text/csv"),
    );

    // url-ingester: HTTP -> raw/.
    let ingester = url_ingester::Ingester::new(
        url_ingester::Config::from_env(&env(&bucket)).expect("ingester config"),
        client.clone(),
        None,
    )
    .expect("ingester");
    let raw_key = "raw/taxi/yellow_tripdata_2024-01.csv";
    let request = json!({
        "url": http.url("/trips/yellow_tripdata_2024-01.csv"),
        "bucket": bucket,
        "key": raw_key,
    });
    let ingested = ingester
        .handle(LambdaEvent::new(request, Context::default()))
        .await
        .unwrap_or_else(|e| panic!("ingest: {}: {e}", e.error_type()));
    let url_ingester::IngestResponse::Complete(ingested) = ingested else {
        panic!("the ingestion completes in one invocation: {ingested:?}");
    };
    assert_eq!(ingested.key, raw_key);
    assert_eq!(s3.sha256(&bucket, raw_key).await, sha256_hex(&csv));

    // parquet-converter on the notification S3 would send: raw/ -> processed/.
    let converter = parquet_converter::Converter::new(
        parquet_converter::Config::from_env(&env(&bucket)).expect("converter config"),
        client.clone(),
    );
    let result = convert(&s3, &converter, &bucket, raw_key).await;
    assert_eq!(result.rows, good, "{result:?}");
    assert_eq!(result.bad_rows, stats.bad_rows, "{result:?}");
    let days: Vec<(usize, u64)> = stats
        .rows_per_day
        .iter()
        .copied()
        .enumerate()
        .filter(|(_, n)| *n > 0)
        .collect();
    assert_eq!(result.partitions, days.len(), "{result:?}");

    // Read back: each day's rows in its partition, every value as in the source.
    let files = read_parquet(&s3, &bucket, "processed/taxi/").await;
    let mut per_day: BTreeMap<String, u64> = BTreeMap::new();
    let mut output: Vec<Trip> = Vec::new();
    for (key, rows) in &files {
        let partition = key
            .strip_prefix("processed/taxi/")
            .and_then(|k| k.rsplit_once('/'))
            .map(|(p, _)| p.to_owned())
            .unwrap_or_default();
        for row in rows {
            let t = trip(|c| row.get(c).cloned().unwrap_or_default());
            let day = format!(
                "year={}/month={}/day={}",
                &t.0[0..4],
                &t.0[5..7],
                &t.0[8..10]
            );
            assert_eq!(partition, day, "a row of {} in {key}", t.0);
            *per_day.entry(partition.clone()).or_default() += 1;
            output.push(t);
        }
    }
    let expected: BTreeMap<String, u64> = days
        .iter()
        .map(|(d, n)| (format!("year=2024/month=01/day={:02}", d + 1), *n))
        .collect();
    assert_eq!(per_day, expected);
    source.sort();
    output.sort();
    assert_eq!(output, source);

    // An independent reader sees the same table.
    let Some(python) = venv_python() else {
        tributary_testkit::skip(
            "a_csv_from_a_url_becomes_partitioned_parquet (pyarrow)",
            "no test venv (scripts/bootstrap.sh)",
        );
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    for (key, _) in &files {
        let path = dir.path().join(key);
        std::fs::create_dir_all(path.parent().expect("a folder")).expect("mkdir");
        std::fs::write(&path, s3.get(&bucket, key).await).expect("write");
    }
    let script = r#"
import json, sys
import pyarrow.dataset as ds
t = ds.dataset(sys.argv[1] + "/processed/taxi", format="parquet", partitioning="hive").to_table()
days = {}
for d in t.column("day").to_pylist():
    days[str(d)] = days.get(str(d), 0) + 1
print(json.dumps({"rows": t.num_rows, "days": days,
                  "total": round(sum(t.column("total_amount").to_pylist()), 2)}))
"#;
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
    let seen: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(seen["rows"].as_u64(), Some(good), "{seen}");
    let total: f64 = source.iter().map(|t| f64::from_bits(t.6)).sum();
    let seen_total = seen["total"].as_f64().unwrap_or_default();
    assert!((seen_total - total).abs() < 0.01, "{seen_total} vs {total}");
    for (d, n) in &days {
        assert_eq!(
            seen["days"][(d + 1).to_string()].as_u64(),
            Some(*n),
            "{seen}"
        );
    }
}

#[tokio::test]
async fn firehose_output_delivered_under_raw_converts_with_its_partitions() {
    tributary::observability::set_emf_output(false);
    let s3 = TestS3::start().await;
    let bucket = s3.bucket().await;
    let client = client(&s3).await;
    let b64 = base64::engine::general_purpose::STANDARD;

    // A batch over two hours; one record is not JSON.
    let mut records: Vec<Value> = (0..40)
        .map(|i| {
            let data = json!({
                "id": i,
                "ts": format!("2024-03-07T{:02}:{:02}:00Z", 5 + i / 20, i % 60),
                "amount": f64::from(i) * 1.5,
            });
            json!({
                "recordId": format!("r-{i:03}"),
                "approximateArrivalTimestamp": 1_709_787_967_000u64,
                "data": b64.encode(data.to_string()),
            })
        })
        .collect();
    records.push(
        json!({"recordId": "r-bad", "approximateArrivalTimestamp": 1_709_787_967_000u64,
                        "data": b64.encode("not json")}),
    );
    let event: firehose_transformer::event::FirehoseEvent = serde_json::from_value(json!({
        "invocationId": "pipeline",
        "deliveryStreamArn": "arn:aws:firehose:us-east-1:123456789012:deliverystream/events",
        "region": "us-east-1",
        "records": records,
    }))
    .expect("a Firehose event");
    let processor = firehose_transformer::Processor::from_env(&env(&bucket)).expect("config");
    let out = processor
        .handle(LambdaEvent::new(event, Context::default()))
        .await
        .expect("transform");
    let out = serde_json::to_value(&out).expect("json");

    // Deliver as Firehose does: the Ok records' data, GZIP, one object per partition prefix.
    let mut groups: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut failed = 0;
    for r in out["records"].as_array().into_iter().flatten() {
        match r["result"].as_str() {
            Some("Ok") => {
                let k = &r["metadata"]["partitionKeys"];
                let prefix = format!(
                    "raw/events/year={}/month={}/day={}/hour={}/",
                    k["year"].as_str().unwrap_or_default(),
                    k["month"].as_str().unwrap_or_default(),
                    k["day"].as_str().unwrap_or_default(),
                    k["hour"].as_str().unwrap_or_default(),
                );
                let data = b64
                    .decode(r["data"].as_str().unwrap_or_default())
                    .expect("base64");
                groups.entry(prefix).or_default().extend_from_slice(&data);
            }
            _ => failed += 1,
        }
    }
    assert_eq!(failed, 1, "{out}");
    assert_eq!(
        groups.keys().collect::<Vec<_>>(),
        [
            "raw/events/year=2024/month=03/day=07/hour=05/",
            "raw/events/year=2024/month=03/day=07/hour=06/"
        ]
    );
    let converter = parquet_converter::Converter::new(
        parquet_converter::Config::from_env(&env(&bucket)).expect("converter config"),
        client,
    );
    for (prefix, data) in &groups {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(data).expect("gzip");
        let key = format!("{prefix}events-1-2024-03-07-00-00-00-pipeline.gz");
        s3.put(&bucket, &key, gz.finish().expect("gzip")).await;
        let result = convert(&s3, &converter, &bucket, &key).await;
        assert_eq!(result.rows, 20, "{result:?}");
    }

    // Each hour's records under its partition, values as sent.
    let files = read_parquet(&s3, &bucket, "processed/events/").await;
    let mut seen: Vec<(String, i64, f64)> = Vec::new();
    for (key, rows) in &files {
        let hour = key
            .split('/')
            .find_map(|p| p.strip_prefix("hour="))
            .unwrap_or_default()
            .to_owned();
        for row in rows {
            let ts = row.get("ts").cloned().unwrap_or_default();
            assert_eq!(&ts[11..13], hour, "{ts} in {key}");
            let id = row.get("id").and_then(|v| v.parse().ok()).unwrap_or(-1);
            let amount = row.get("amount").and_then(|v| v.parse().ok());
            seen.push((ts[..19].replace('T', " "), id, amount.unwrap_or(f64::NAN)));
        }
    }
    seen.sort_by_key(|s| s.1);
    let expected: Vec<(String, i64, f64)> = (0..40)
        .map(|i| {
            (
                format!("2024-03-07 {:02}:{:02}:00", 5 + i / 20, i % 60),
                i64::from(i),
                f64::from(i) * 1.5,
            )
        })
        .collect();
    assert_eq!(seen, expected);
}
