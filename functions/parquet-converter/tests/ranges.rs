//! One large object converted in byte ranges as the large-object state machine runs it, with
//! this test standing in for the Map and nothing else: `plan` through the real handler, its
//! JSON lines read back, every `range` request handed to the handler (several at once), then
//! `commit` (or `commit` with `abort` when a range failed).
//!
//! The object's size is `TRIBUTARY_RANGES_BYTES` (default 8 MiB, cut in 8 ranges); the
//! release run of `scripts/test.sh` converts 1 GiB.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use futures::StreamExt;
use lambda_runtime::{Context, LambdaEvent};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet_converter::convert::Summary;
use parquet_converter::ranged::PlanAnswer;
use parquet_converter::{Converter, Outcome};
use serde_json::{Value, json};
use tributary::{S3Writer, WriterConfig};
use tributary_testkit::TestS3;

mod common;
use common::converter;

const MIB: u64 = 1024 * 1024;
const RANGES: u64 = 8;

/// The object's size: about `RANGES` ranges of a whole number of MiB each.
fn split_mb() -> u64 {
    let bytes = std::env::var("TRIBUTARY_RANGES_BYTES")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(8 * MIB);
    (bytes / RANGES / MIB).max(1)
}

/// Row `i` of the test table; every third has a quoted note over three lines (a comma and
/// doubled quotes in it), every `bad`-th is malformed (a column short; CSV only).
fn csv_row(i: u64, rows: u64, out: &mut Vec<u8>) {
    let day = 1 + (i / (rows / 28).max(1)) % 28;
    let (h, m, s) = ((i / 3600) % 24, (i / 60) % 60, i % 60);
    let amount = (i * 37 % 100_000) as f64 / 100.0;
    if i % 40_009 == 40_008 {
        let _ = writeln!(out, "{i},2024-02-{day:02} {h:02}:{m:02}:{s:02},{amount:.2}");
        return;
    }
    let _ = write!(
        out,
        "{i},2024-02-{day:02} {h:02}:{m:02}:{s:02},{amount:.2},"
    );
    match i % 3 {
        0 => {
            let _ = write!(
                out,
                "\"note {i} begins\nand, after a comma, says \"\"{}\"\"\nthen ends\"",
                i * 7
            );
        }
        1 => {
            let _ = write!(out, "plain note {i}");
        }
        _ => {}
    }
    let _ = writeln!(out, ",{}", i.is_multiple_of(2));
}

fn json_row(i: u64, rows: u64, out: &mut Vec<u8>) {
    let day = 1 + (i / (rows / 28).max(1)) % 28;
    let (h, m, s) = ((i / 3600) % 24, (i / 60) % 60, i % 60);
    let amount = (i * 37 % 100_000) as f64 / 100.0;
    let note = match i % 3 {
        0 => Value::String(format!(
            "note {i} begins\nand, after a comma, says \"{}\"\nthen ends",
            i * 7
        )),
        1 => Value::String(format!("plain note {i}")),
        _ => Value::Null,
    };
    let row = json!({
        "id": i,
        "ts": format!("2024-02-{day:02} {h:02}:{m:02}:{s:02}"),
        "amount": amount,
        "note": note,
        "flag": i.is_multiple_of(2),
    });
    let _ = serde_json::to_writer(&mut *out, &row);
    out.push(b'\n');
}

/// Streams about `bytes` of rows into `key` (never the whole object in memory); its ETag.
async fn write_object(s3: &TestS3, bucket: &str, key: &str, bytes: u64, csv: bool) -> String {
    // Rows are about 60 bytes: the estimate spreads them over the days, the size ends them.
    let rows = bytes / 60;
    let mut w = S3Writer::new(
        s3.client.clone(),
        bucket,
        key,
        WriterConfig {
            part_size: 16 * MIB as usize,
            ..WriterConfig::default()
        },
    );
    let mut buf = Vec::with_capacity(4 * MIB as usize);
    if csv {
        buf.extend_from_slice(b"id,ts,amount,note,flag\n");
    }
    let mut written = 0u64;
    let mut i = 0;
    while written + (buf.len() as u64) < bytes {
        if csv {
            csv_row(i, rows, &mut buf);
        } else {
            json_row(i, rows, &mut buf);
        }
        i += 1;
        if buf.len() >= 4 * MIB as usize {
            written += buf.len() as u64;
            w.write(&buf).await.expect("write");
            buf.clear();
        }
    }
    w.write(&buf).await.expect("write");
    w.finish().await.expect("finish").etag.unwrap_or_default()
}

async fn invoke(c: &Converter, event: Value) -> Result<Value, tributary::Error> {
    c.invoke(LambdaEvent::new(event, Context::default())).await
}

/// Seconds each step of a run in ranges took: the plan, the ranges, the commit.
type StepSecs = [f64; 3];

/// Plan, ranges (4 at a time), commit; the plan, each range's answer (or error), the
/// commit's, and how long each step took.
async fn run_ranges(
    s3: &TestS3,
    c: &Converter,
    bucket: &str,
    key: &str,
    etag: &str,
    split_mb: u64,
) -> (
    PlanAnswer,
    Vec<Result<Value, tributary::Error>>,
    Result<Value, tributary::Error>,
    StepSecs,
) {
    let started = std::time::Instant::now();
    let plan: PlanAnswer = serde_json::from_value(
        invoke(
            c,
            json!({"mode": "plan", "bucket": bucket, "key": key, "etag": etag, "split_mb": split_mb}),
        )
        .await
        .expect("plan"),
    )
    .expect("a plan answer");
    let lines = s3.get(&plan.manifest.bucket, &plan.manifest.key).await;
    let items: Vec<Value> = lines
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).expect("a plan line"))
        .collect();
    assert_eq!(items.len() as u32, plan.ranges, "one line per range");
    let planned = started.elapsed().as_secs_f64();
    let answers: Vec<Result<Value, tributary::Error>> = futures::stream::iter(items)
        .map(|item| invoke(c, item))
        .buffer_unordered(4)
        .collect()
        .await;
    let converted = started.elapsed().as_secs_f64();
    let abort = answers.iter().any(Result::is_err);
    let commit = invoke(
        c,
        json!({"mode": "commit", "bucket": bucket, "key": key, "etag": etag,
               "ranges": plan.ranges, "abort": abort}),
    )
    .await;
    let committed = started.elapsed().as_secs_f64();
    let steps = [planned, converted - planned, committed - converted];
    (plan, answers, commit, steps)
}

fn summary_of(answer: Value) -> Summary {
    match serde_json::from_value::<Outcome>(answer).expect("an outcome") {
        Outcome::Converted(s) => *s,
        other => panic!("not converted: {other:?}"),
    }
}

/// Per partition folder (under `prefix`): rows and an order-free fingerprint of their values.
async fn contents(s3: &TestS3, bucket: &str, prefix: &str) -> BTreeMap<String, (u64, u64)> {
    let mut out: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for key in s3.keys(bucket, prefix).await {
        if !key.ends_with(".parquet") {
            continue;
        }
        let dir = key[prefix.len()..]
            .rsplit_once('/')
            .map_or("", |(d, _)| d)
            .to_owned();
        let bytes = bytes::Bytes::from(s3.get(bucket, &key).await);
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
            .expect("a Parquet file")
            .build()
            .expect("reader");
        let entry = out.entry(dir).or_default();
        for batch in reader {
            let batch = batch.expect("batch");
            entry.0 += batch.num_rows() as u64;
            entry.1 = entry.1.wrapping_add(fingerprint(&batch));
        }
    }
    out
}

fn fingerprint(batch: &RecordBatch) -> u64 {
    let options = FormatOptions::default().with_null("\u{0}null");
    let columns: Vec<ArrayFormatter<'_>> = batch
        .columns()
        .iter()
        .map(|c| ArrayFormatter::try_new(c.as_ref(), &options).expect("formatter"))
        .collect();
    let names: Vec<&str> = batch
        .schema_ref()
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect();
    let mut sum = 0u64;
    for row in 0..batch.num_rows() {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        for (name, col) in names.iter().zip(&columns) {
            name.hash(&mut h);
            col.value(row).to_string().hash(&mut h);
        }
        sum = sum.wrapping_add(h.finish());
    }
    sum
}

/// The quarantined rows under `prefix`: (line, raw), in any order.
async fn bad_rows(s3: &TestS3, bucket: &str, prefix: &str) -> BTreeSet<(u64, String)> {
    let mut out = BTreeSet::new();
    for key in s3.keys(bucket, prefix).await {
        for line in s3.get(bucket, &key).await.split(|b| *b == b'\n') {
            if line.is_empty() {
                continue;
            }
            let v: Value = serde_json::from_slice(line).expect("a quarantined row");
            out.insert((
                v["line"].as_u64().expect("line"),
                v["raw"].as_str().expect("raw").to_owned(),
            ));
        }
    }
    out
}

/// The same object converted by one invocation and in ranges gives the same rows, values,
/// partitions and bad rows (with the same line numbers).
async fn ranges_equal_one_invocation(csv: bool) {
    let s3 = TestS3::start().await;
    let bucket = s3.bucket().await;
    let split = split_mb();
    let key = if csv {
        "raw/trips/export.csv"
    } else {
        "raw/trips/export.jsonl"
    };
    let size = RANGES * split * MIB - 64 * 1024;
    let etag = write_object(&s3, &bucket, key, size, csv).await;
    let settings = [("PARTITION_BY", "ts:day"), ("INFER_ROWS", "1000")];
    let single = converter(
        &s3,
        &[
            settings[0],
            settings[1],
            ("OUTPUT_PREFIX", "single/"),
            ("ERROR_PREFIX", "single-errors/"),
        ],
    )
    .await;
    let ranged = converter(
        &s3,
        &[
            settings[0],
            settings[1],
            ("OUTPUT_PREFIX", "ranged/"),
            ("ERROR_PREFIX", "ranged-errors/"),
        ],
    )
    .await;
    let started = std::time::Instant::now();
    let one = single
        .convert(&tributary::ObjectRef::new(&bucket, key).with_etag(Some(etag.as_str())))
        .await
        .expect("one invocation");
    let one_secs = started.elapsed().as_secs_f64();
    let started = std::time::Instant::now();
    let (plan, answers, commit, steps) = run_ranges(&s3, &ranged, &bucket, key, &etag, split).await;
    let ranged_secs = started.elapsed().as_secs_f64();
    assert_eq!(
        u64::from(plan.ranges),
        RANGES,
        "{size} bytes in ranges of {split} MiB"
    );
    for a in &answers {
        assert!(a.is_ok(), "{a:?}");
    }
    let summary = summary_of(commit.expect("commit"));
    eprintln!(
        "{} {size} bytes: one invocation {one_secs:.1} s, {RANGES} ranges {ranged_secs:.1} s \
         (plan {:.1} s, ranges {:.1} s, commit {:.1} s); {} rows, {} bad rows, {} files",
        if csv { "CSV" } else { "JSON lines" },
        steps[0],
        steps[1],
        steps[2],
        summary.rows,
        summary.bad_rows,
        summary.files.len()
    );
    assert_eq!(summary.rows, one.rows);
    assert_eq!(summary.bad_rows, one.bad_rows);
    assert_eq!(summary.partitions, one.partitions);
    assert_eq!(summary.schema, one.schema);
    assert!(one.rows > 0);
    let (a, b) = (
        contents(&s3, &bucket, "single/trips/").await,
        contents(&s3, &bucket, "ranged/trips/").await,
    );
    assert_eq!(a.len(), one.partitions, "{:?}", a.keys());
    assert_eq!(a, b, "rows and values per partition");
    if csv {
        let bad = bad_rows(&s3, &bucket, "single-errors/").await;
        assert_eq!(bad.len() as u64, one.bad_rows);
        assert!(!bad.is_empty(), "the data has malformed rows");
        assert_eq!(bad, bad_rows(&s3, &bucket, "ranged-errors/").await);
    }
    // Nothing of the run is left but its output; a repeated commit answers the same.
    assert!(s3.keys(&bucket, "ranged/_ranges/").await.is_empty());
    assert!(s3.open_uploads(&bucket).await.is_empty());
    let again = invoke(
        &ranged,
        json!({"mode": "commit", "bucket": bucket, "key": key, "etag": etag, "ranges": plan.ranges}),
    )
    .await
    .expect("a repeated commit");
    assert_eq!(summary_of(again).files, summary.files);
    // Converting in ranges again writes the same keys.
    let before = s3.keys(&bucket, "ranged/").await;
    let (_, _, commit, _) = run_ranges(&s3, &ranged, &bucket, key, &etag, split).await;
    commit.expect("second run");
    assert_eq!(s3.keys(&bucket, "ranged/").await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_with_quoted_multi_line_fields_in_8_ranges_equals_one_invocation() {
    ranges_equal_one_invocation(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_lines_in_8_ranges_equal_one_invocation() {
    ranges_equal_one_invocation(false).await;
}

/// Nothing visible and no upload open after a failed run.
async fn assert_nothing_left(s3: &TestS3, bucket: &str) {
    let clean = tributary_testkit::s3::eventually(std::time::Duration::from_secs(5), || async {
        s3.open_uploads(bucket).await.is_empty()
    })
    .await;
    assert!(clean, "uploads left: {:?}", s3.open_uploads(bucket).await);
    for prefix in ["processed/", "errors/"] {
        let left = s3.keys(bucket, prefix).await;
        assert!(left.is_empty(), "{left:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_range_aborts_every_range_and_leaves_nothing() {
    let s3 = TestS3::start().await;
    let bucket = s3.bucket().await;
    let key = "raw/trips/bad.csv";
    // 4 ranges of 1 MiB; malformed rows in the later ranges fail them under BAD_ROWS=fail.
    let etag = write_object(&s3, &bucket, key, 4 * MIB - 64 * 1024, true).await;
    let c = converter(&s3, &[("PARTITION_BY", "ts:day"), ("BAD_ROWS", "fail")]).await;
    let (plan, answers, commit, _) = run_ranges(&s3, &c, &bucket, key, &etag, 1).await;
    assert_eq!(plan.ranges, 4);
    assert!(answers.iter().any(Result::is_ok), "some ranges convert");
    let failed: Vec<_> = answers.iter().filter_map(|a| a.as_ref().err()).collect();
    assert!(!failed.is_empty());
    assert!(
        failed.iter().all(|e| e.error_type() == "BadRow"),
        "{failed:?}"
    );
    match serde_json::from_value::<Outcome>(commit.expect("abort")).expect("outcome") {
        Outcome::Aborted {
            uploads_aborted, ..
        } => assert!(uploads_aborted > 0),
        other => panic!("{other:?}"),
    }
    assert_nothing_left(&s3, &bucket).await;
    // A commit without abort after that finds no ranges: an error, still nothing visible.
    let err = invoke(
        &c,
        json!({"mode": "commit", "bucket": bucket, "key": key, "etag": etag, "ranges": plan.ranges}),
    )
    .await
    .expect_err("nothing to commit");
    assert_eq!(err.error_type(), "InvalidInput", "{err}");
    assert_nothing_left(&s3, &bucket).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_commit_leaves_nothing_visible_and_no_upload() {
    let s3 = TestS3::start().await;
    let Some(faults) = s3.faults() else {
        eprintln!("skipped: fault injection needs the embedded store");
        return;
    };
    let bucket = s3.bucket().await;
    let key = "raw/trips/export.csv";
    let etag = write_object(&s3, &bucket, key, 4 * MIB - 64 * 1024, true).await;
    let c = converter(&s3, &[("PARTITION_BY", "ts:day")]).await;
    let plan: PlanAnswer = serde_json::from_value(
        invoke(
            &c,
            json!({"mode": "plan", "bucket": bucket, "key": key, "etag": etag, "split_mb": 1}),
        )
        .await
        .expect("plan"),
    )
    .expect("plan answer");
    let lines = s3.get(&plan.manifest.bucket, &plan.manifest.key).await;
    for line in lines.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        invoke(&c, serde_json::from_slice(line).expect("line"))
            .await
            .expect("range");
    }
    // The commit's third completion, and every one after it, fails.
    let seen = faults.calls(tributary_testkit::faults::Op::CompleteMultipartUpload);
    faults.add(
        tributary_testkit::faults::Op::CompleteMultipartUpload,
        tributary_testkit::faults::Calls::From(seen + 3),
        tributary_testkit::faults::Action::internal_error(),
    );
    let commit = json!({"mode": "commit", "bucket": bucket, "key": key, "etag": etag, "ranges": plan.ranges});
    let err = invoke(&c, commit.clone())
        .await
        .expect_err("the commit fails");
    assert!(err.is_transient(), "{err}");
    faults.clear();
    assert!(s3.keys(&bucket, "processed/trips/").await.is_empty());
    // The state machine's Catch: commit with abort; nothing of the object remains.
    invoke(
        &c,
        json!({"mode": "commit", "bucket": bucket, "key": key, "etag": etag, "ranges": plan.ranges, "abort": true}),
    )
    .await
    .expect("abort");
    assert_nothing_left(&s3, &bucket).await;
}

#[tokio::test]
async fn mode_requests_name_what_is_wrong() {
    let s3 = TestS3::start().await;
    let bucket = s3.bucket().await;
    let c = converter(&s3, &[]).await;
    let err = invoke(
        &c,
        json!({"mode": "split", "bucket": bucket, "key": "raw/a.csv"}),
    )
    .await
    .expect_err("unknown mode");
    assert!(err.to_string().contains("plan, range, commit"), "{err}");
    let err = invoke(&c, json!({"mode": "range", "bucket": bucket, "key": "raw/t/a.csv", "index": 0, "start": 0, "end": 9, "first_line": 1}))
        .await
        .expect_err("no etag");
    assert!(err.to_string().contains("etag"), "{err}");
    let err = invoke(
        &c,
        json!({"mode": "plan", "bucket": bucket, "key": "processed/t/a.parquet", "etag": "x"}),
    )
    .await
    .expect_err("an output");
    assert_eq!(err.error_type(), "InvalidInput", "{err}");
    let err = invoke(
        &c,
        json!({"mode": "commit", "bucket": bucket, "key": "raw/t/a.csv"}),
    )
    .await
    .expect_err("no ranges");
    assert_eq!(err.error_type(), "InvalidEvent", "{err}");
}

/// Under the catalog contract: the plan makes the table from the head of the object, every
/// range converts under it (a value in a later range that does not fit its column is a bad
/// row, never a different type in one range's files), and the commit registers the
/// partitions the files are in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranges_convert_under_the_table_the_plan_makes() {
    use parquet_converter::catalog::{Catalog, LocalCatalog};
    let s3 = TestS3::start().await;
    let bucket = s3.bucket().await;
    let dir = tempfile::tempdir().expect("catalog folder");
    let catalog = Arc::new(LocalCatalog::new(dir.path()));
    let key = "raw/trips/export.csv";
    // 4 ranges; a text amount far past the head, in the last range.
    let mut body = Vec::new();
    body.extend_from_slice(b"id,ts,amount,note,flag\n");
    let rows = 60_000;
    for i in 0..rows {
        csv_row(i, rows, &mut body);
        if i == rows - 10 {
            body.extend_from_slice(b"999999,2024-02-28 01:02:03,not a number,x,true\n");
        }
    }
    let etag = s3.put(&bucket, key, body).await.unwrap_or_default();
    let c = converter(
        &s3,
        &[("PARTITION_BY", "ts:day"), ("GLUE_DATABASE", "lake")],
    )
    .await
    .with_catalog(catalog.clone());
    let (plan, answers, commit, _) = run_ranges(&s3, &c, &bucket, key, &etag, 1).await;
    assert!(plan.ranges >= 3, "{}", plan.ranges);
    assert!(answers.iter().all(Result::is_ok), "{answers:?}");
    let summary = summary_of(commit.expect("commit"));
    let table = catalog
        .get_table("lake", "trips")
        .await
        .expect("get")
        .expect("the plan made the table");
    let amount = table
        .def
        .columns
        .iter()
        .find(|c| c.name == "amount")
        .expect("amount");
    assert_eq!(amount.type_name, "double");
    let t = summary.table.as_ref().expect("table use");
    assert_eq!(t.cast_bad_rows, 1, "{t:?}");
    assert!(
        summary.schema.contains(&"amount: Float64".to_owned()),
        "{:?}",
        summary.schema
    );
    let registered: BTreeSet<String> = catalog
        .partitions("lake", "trips")
        .await
        .expect("partitions")
        .into_iter()
        .map(|p| p.values.join("/"))
        .collect();
    assert_eq!(registered.len(), summary.partitions, "{registered:?}");
    assert_eq!(t.partitions, summary.partitions);
}

/// A range attempt that timed out mid-upload leaves an upload no manifest records: the commit
/// finds it (ListMultipartUploads, on a store that lists uploads) and aborts it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_left_by_a_timed_out_range_attempt_is_aborted_by_the_commit() {
    let s3 = TestS3::start().await;
    if s3.faults().is_some() {
        eprintln!("skipped: the embedded store does not list multipart uploads");
        return;
    }
    let bucket = s3.bucket().await;
    let key = "raw/trips/export.csv";
    let etag = write_object(&s3, &bucket, key, 3 * MIB - 64 * 1024, true).await;
    let c = converter(&s3, &[("PARTITION_BY", "ts:day")]).await;
    let object = tributary::ObjectRef::new(&bucket, key).with_etag(Some(etag.as_str()));
    let names = parquet_converter::naming::Names::of(&object, "raw/").expect("names");
    let orphan = format!(
        "processed/trips/year=2024/month=02/day=01/{}0001-0099.parquet",
        names.range_file_prefix()
    );
    s3.client
        .create_multipart_upload()
        .bucket(&bucket)
        .key(&orphan)
        .send()
        .await
        .expect("an upload a range attempt left");
    let unrelated = "processed/trips/year=2024/month=02/day=01/other-0000.parquet";
    let other = s3
        .client
        .create_multipart_upload()
        .bucket(&bucket)
        .key(unrelated)
        .send()
        .await
        .expect("another object's upload");
    let (_, answers, commit, _) = run_ranges(&s3, &c, &bucket, key, &etag, 1).await;
    assert!(answers.iter().all(Result::is_ok), "{answers:?}");
    summary_of(commit.expect("commit"));
    let open = s3.open_uploads(&bucket).await;
    assert!(!open.iter().any(|u| u.starts_with(&orphan)), "{open:?}");
    assert!(
        open.iter().any(|u| u.starts_with(unrelated)),
        "another object's upload stays: {open:?}"
    );
    let _ = s3
        .client
        .abort_multipart_upload()
        .bucket(&bucket)
        .key(unrelated)
        .upload_id(other.upload_id().unwrap_or_default())
        .send()
        .await;
}
