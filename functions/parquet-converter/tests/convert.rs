//! parquet-converter end to end on a real S3 endpoint (embedded s3s-fs, or `TEST_S3_ENDPOINT`);
//! outputs are read back with the parquet crate's own reader.

use std::io::Write;

use arrow::array::{Array, Float64Array, Int64Array, StringArray};
use arrow::datatypes::{DataType, TimeUnit};
use lambda_runtime::{Context, LambdaEvent};
use parquet_converter::Config;
use parquet_converter::convert::manifest::Manifest;
use serde_json::{Value, json};
use tributary::Env;
use tributary_testkit::{Action, Calls, Op, TestS3};

mod common;
use common::{
    assert_fails_leaving_nothing, converted, converter, put_and_convert, python_over_parquet,
    read_parquet, rows, s3_event, venv_python,
};

const S3_PUT: &str = include_str!("../../../events/parquet-converter/s3-put.json");
const SPECIAL: &str = include_str!("../../../events/parquet-converter/s3-put-special-key.json");
const MULTI: &str = include_str!("../../../events/parquet-converter/multi-record.json");
const EVENTBRIDGE: &str = include_str!("../../../events/parquet-converter/eventbridge.json");
const SQS: &str = include_str!("../../../events/parquet-converter/sqs.json");
const DELETE: &str = include_str!("../../../events/parquet-converter/delete.json");

fn taxi_csv(n: usize) -> Vec<u8> {
    let mut s = String::from(
        "VendorID,tpep_pickup_datetime,passenger_count,trip_distance,fare_amount,store_and_fwd_flag\n",
    );
    for i in 0..n {
        let day = 1 + i % 3;
        s.push_str(&format!(
            "{},2024-01-{day:02} {:02}:{:02}:{:02}.{:06},{},{:.2},{:.2},{}\n",
            1 + i % 2,
            i % 24,
            i % 60,
            (i * 7) % 60,
            i % 1_000_000,
            i % 5,
            (i % 100) as f64 / 7.0,
            5.0 + (i % 300) as f64 / 3.0,
            if i % 2 == 0 { "N" } else { "Y" }
        ));
    }
    s.into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_becomes_day_partitioned_parquet_with_exact_types() {
    let s3 = TestS3::start().await;
    let bucket = s3.bucket().await;
    let c = converter(&s3, &[("PARTITION_BY", "tpep_pickup_datetime:day")]).await;
    let out = put_and_convert(
        &s3,
        &c,
        &bucket,
        "raw/taxi/yellow 2024-01.csv",
        taxi_csv(3000),
    )
    .await;
    assert_eq!(out.results[0].status(), "converted", "{out}");
    let files = read_parquet(&s3, &bucket, "processed/").await;
    let keys: Vec<&str> = files.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(files.len(), 3, "{keys:?}");
    for (i, (key, _)) in files.iter().enumerate() {
        assert!(
            key.starts_with(&format!(
                "processed/taxi/year=2024/month=01/day=0{}/yellow 2024-01-",
                i + 1
            )),
            "{key}"
        );
        assert!(key.ends_with("-0000.parquet"), "{key}");
    }
    assert_eq!(rows(&files), 3000);
    let schema = files[0].1[0].schema();
    assert_eq!(
        schema.field_with_name("VendorID").expect("col").data_type(),
        &DataType::Int64
    );
    assert_eq!(
        schema
            .field_with_name("tpep_pickup_datetime")
            .expect("col")
            .data_type(),
        &DataType::Timestamp(TimeUnit::Microsecond, None)
    );
    assert_eq!(
        schema
            .field_with_name("fare_amount")
            .expect("col")
            .data_type(),
        &DataType::Float64
    );
    // Microseconds survive.
    let ts = files[0].1[0]
        .column_by_name("tpep_pickup_datetime")
        .expect("col")
        .as_any()
        .downcast_ref::<arrow::array::TimestampMicrosecondArray>()
        .expect("µs");
    assert_eq!(ts.value(1) % 1_000_000, 3, "row 3 has .000003");
    let manifest: Manifest = serde_json::from_slice(
        &s3.get(
            &bucket,
            &s3.keys(&bucket, "processed/_manifests/taxi/").await[0],
        )
        .await,
    )
    .expect("manifest json");
    assert_eq!(manifest.rows, 3000);
    assert_eq!(manifest.files.len(), 3);
    assert!(s3.open_uploads(&bucket).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_type_drift_widens_the_column_and_drops_nothing() {
    let s3 = TestS3::start().await;
    let bucket = s3.bucket().await;
    let c = converter(&s3, &[]).await;
    let mut s = String::from("id,amount,label\n");
    for i in 0..60_000 {
        let amount = match i {
            50_000 => "1.5".to_owned(),
            55_000 => "n/a".to_owned(),
            _ => (i % 1000).to_string(),
        };
        s.push_str(&format!("{i},{amount},row{i}\n"));
    }
    let out = put_and_convert(&s3, &c, &bucket, "raw/drift/d.csv", s.into_bytes()).await;
    assert_eq!(converted(&out).type_widenings, 2, "{out}");
    let files = read_parquet(&s3, &bucket, "processed/drift/").await;
    assert_eq!(rows(&files), 60_000);
    let batches = &files[0].1;
    assert_eq!(batches[0].schema().field(1).data_type(), &DataType::Utf8);
    assert_eq!(batches[0].schema().field(0).data_type(), &DataType::Int64);
    let all: Vec<String> = batches
        .iter()
        .flat_map(|b| {
            let a = b
                .column(1)
                .as_any()
                .downcast_ref::<StringArray>()
                .expect("utf8")
                .clone();
            (0..a.len()).map(move |i| a.value(i).to_owned())
        })
        .collect();
    assert_eq!(all[50_000], "1.5");
    assert_eq!(all[55_000], "n/a");
    assert_eq!(all[7], "7");
    assert!(s3.open_uploads(&bucket).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_lines_concatenated_json_tsv_and_compressed_inputs() {
    let s3 = TestS3::start().await;
    let bucket = s3.bucket().await;
    let c = converter(&s3, &[]).await;
    let jsonl: String = (0..500)
        .map(|i| format!("{{\"id\":{i},\"v\":{}.5,\"tag\":\"t{}\"}}\n", i, i % 3))
        .collect();
    let concat: String = (0..500)
        .map(|i| format!("{{\"id\":{i},\"v\":{}.5}}", i))
        .collect();
    let tsv: String = std::iter::once("a\tb\n".to_owned())
        .chain((0..500).map(|i| format!("{i}\tx{i}\n")))
        .collect();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(jsonl.as_bytes()).expect("gzip");
    let gz = gz.finish().expect("gzip");
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("raw/j/lines.jsonl", jsonl.clone().into_bytes()),
        ("raw/j2/concat", concat.into_bytes()),
        ("raw/t/data.tsv", tsv.into_bytes()),
        ("raw/g/lines.json.gz", gz),
        (
            "raw/events/year=2024/month=03/firehose-1-2024-03-07-05",
            jsonl.into_bytes(),
        ),
    ];
    for (key, body) in cases {
        let out = put_and_convert(&s3, &c, &bucket, key, body).await;
        assert_eq!(out.results[0].status(), "converted", "{key}: {out}");
        assert_eq!(converted(&out).rows, 500, "{key}");
    }
    let fh = s3.keys(&bucket, "processed/events/").await;
    assert_eq!(fh.len(), 1);
    assert!(
        fh[0].starts_with("processed/events/year=2024/month=03/firehose-1-2024-03-07-05-"),
        "{fh:?}"
    );
    let files = read_parquet(&s3, &bucket, "processed/j/").await;
    let b = &files[0].1[0];
    assert_eq!(
        b.column_by_name("id").expect("id").data_type(),
        &DataType::Int64
    );
    let v = b
        .column_by_name("v")
        .expect("v")
        .as_any()
        .downcast_ref::<Float64Array>()
        .expect("f64");
    assert_eq!(v.value(2), 2.5);
    let ids = b
        .column_by_name("id")
        .expect("id")
        .as_any()
        .downcast_ref::<Int64Array>()
        .expect("i64");
    assert_eq!(ids.value(499 % b.num_rows()), (499 % b.num_rows()) as i64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivered_event_overwrites_instead_of_duplicating() {
    let s3 = TestS3::start().await;
    let bucket = s3.bucket().await;
    let c = converter(&s3, &[("PARTITION_BY", "store_and_fwd_flag")]).await;
    let body = taxi_csv(100);
    let etag = s3
        .put(&bucket, "raw/taxi/t.csv", body.clone())
        .await
        .unwrap_or_default();
    let event = s3_event(&bucket, "raw/taxi/t.csv", body.len(), &etag);
    c.handle(LambdaEvent::new(event.clone(), Context::default()))
        .await
        .expect("first");
    let first = s3.keys(&bucket, "processed/").await;
    c.handle(LambdaEvent::new(event, Context::default()))
        .await
        .expect("again");
    assert_eq!(s3.keys(&bucket, "processed/").await, first);
    assert!(
        first.iter().any(|k| k.contains("/store_and_fwd_flag=N/")),
        "{first:?}"
    );
    assert_eq!(
        rows(&read_parquet(&s3, &bucket, "processed/taxi/").await),
        100
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_converter_never_converts_its_own_outputs() {
    let s3 = TestS3::start().await;
    let bucket = s3.bucket().await;
    let c = converter(&s3, &[]).await;
    for key in [
        "processed/taxi/x.parquet",
        "errors/taxi/x.jsonl",
        "elsewhere/x.csv",
        "raw/taxi/",
    ] {
        if !key.ends_with('/') {
            s3.put(&bucket, key, b"a,b\n1,2\n".to_vec()).await;
        }
        let out = c
            .handle(LambdaEvent::new(
                s3_event(&bucket, key, 8, "e"),
                Context::default(),
            ))
            .await
            .expect("skips are not errors");
        assert_eq!(out.results[0].status(), "skipped", "{key}: {out}");
    }
    let delete: Value = serde_json::from_str(DELETE).expect("sample");
    let out = c
        .handle(LambdaEvent::new(delete, Context::default()))
        .await
        .expect("delete");
    assert_eq!(out.results[0].status(), "skipped");
    assert!(
        s3.keys(&bucket, "processed/")
            .await
            .iter()
            .all(|k| k == "processed/taxi/x.parquet")
    );
    // A configuration that would loop is refused at cold start.
    let err = Config::from_env(&Env::from_pairs([
        ("INPUT_PREFIX", "data/"),
        ("OUTPUT_PREFIX", "data/parquet/"),
    ]))
    .expect_err("overlap");
    assert!(err.to_string().contains("OUTPUT_PREFIX"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_s3_failure_mid_write_leaves_no_outputs_and_no_uploads() {
    let s3 = TestS3::start().await;
    let Some(faults) = s3.faults() else {
        return tributary_testkit::skip(
            "converter_s3_failure",
            "needs fault injection (embedded server)",
        );
    };
    let bucket = s3.bucket().await;
    let c = converter(&s3, &[("PARTITION_BY", "tpep_pickup_datetime:day")]).await;
    let body = taxi_csv(30_000);
    let etag = s3
        .put(&bucket, "raw/taxi/big.csv", body.clone())
        .await
        .unwrap_or_default();
    // PutObject call 1 was the input itself; the first output completes, the second fails:
    // the completed one must be removed again.
    faults.add(
        Op::PutObject,
        Calls::From(3),
        Action::Status(403, "AccessDenied"),
    );
    assert_fails_leaving_nothing(
        &s3,
        &c,
        &bucket,
        "raw/taxi/big.csv",
        body.len(),
        &etag,
        "S3Error",
    )
    .await;
    assert_eq!(
        faults.calls(Op::DeleteObject),
        1,
        "the completed output was rolled back"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sample_events_route_as_expected() {
    let s3 = TestS3::start().await;
    let bucket = s3.bucket().await;
    let c = converter(&s3, &[]).await;
    // Put the objects the samples name, in this test's bucket; same content, same ETag.
    let mut etag = String::new();
    for key in [
        "raw/taxi/yellow_tripdata_2024-01.csv",
        "raw/taxi/trips 2024+extra/택시 데이터.csv",
        "raw/taxi/part-2.csv",
    ] {
        let body = b"VendorID,fare\n1,2.5\n2,3.5\n".to_vec();
        etag = s3.put(&bucket, key, body).await.unwrap_or_default();
    }
    // Reads are pinned to the event's ETag (a store honouring If-Match checks it).
    let retarget = |sample: &str| -> Value {
        let text = sample
            .replace("tributary-data-lake-example", &bucket)
            .replace("0123456789abcdef0123456789abcdef", &etag);
        serde_json::from_str(&text).expect("sample")
    };
    let out = c
        .handle(LambdaEvent::new(retarget(S3_PUT), Context::default()))
        .await
        .expect("put");
    assert_eq!(converted(&out).rows, 2, "{out}");
    let out = c
        .handle(LambdaEvent::new(retarget(SPECIAL), Context::default()))
        .await
        .expect("special");
    assert_eq!(out.results[0].status(), "converted", "{out}");
    assert!(
        s3.keys(&bucket, "processed/taxi/")
            .await
            .iter()
            .any(|k| k.contains("택시 데이터-"))
    );
    let out = c
        .handle(LambdaEvent::new(retarget(MULTI), Context::default()))
        .await
        .expect("multi");
    assert_eq!(Some(out.results.len()), Some(2));
    let out = c
        .handle(LambdaEvent::new(retarget(EVENTBRIDGE), Context::default()))
        .await
        .expect("eb");
    assert_eq!(out.results[0].status(), "converted", "{out}");
    // SQS: the second message names a missing object and is reported for redelivery.
    let out = c
        .handle(LambdaEvent::new(retarget(SQS), Context::default()))
        .await
        .expect("sqs");
    assert_eq!(out.failed_messages(), ["msg-2-missing"], "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_independent_reader_agrees_pyarrow() {
    let Some(python) = venv_python() else {
        return tributary_testkit::skip(
            "pyarrow_reader",
            "no TRIBUTARY_VENV with pyarrow (scripts/test.sh sets it)",
        );
    };
    let s3 = TestS3::start().await;
    let bucket = s3.bucket().await;
    let c = converter(&s3, &[("PARTITION_BY", "tpep_pickup_datetime:day")]).await;
    put_and_convert(&s3, &c, &bucket, "raw/taxi/py.csv", taxi_csv(2500)).await;
    let script = r#"
import json, pathlib, sys
import pyarrow.parquet as pq
rows, types = 0, {}
for p in sorted(pathlib.Path(sys.argv[1]).glob("*.parquet")):
    t = pq.read_table(p)
    rows += t.num_rows
    types = {f.name: str(f.type) for f in t.schema}
print(json.dumps({"rows": rows, "types": types}))
"#;
    let v = python_over_parquet(&python, &s3, &bucket, "processed/taxi/", script).await;
    assert_eq!(v["rows"], 2500);
    assert_eq!(v["types"]["VendorID"], "int64");
    assert_eq!(v["types"]["tpep_pickup_datetime"], "timestamp[us]");
    assert_eq!(v["types"]["fare_amount"], "double");
    assert_eq!(v["types"]["store_and_fwd_flag"], "string");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_read_error_is_not_taken_for_a_first_run() {
    let s3 = TestS3::start().await;
    let Some(faults) = s3.faults() else {
        return tributary_testkit::skip(
            "converter_manifest_read_error",
            "needs fault injection (embedded server)",
        );
    };
    let bucket = s3.bucket().await;
    let key = "raw/stale/input.csv";
    let body = "id,day\n1,a\n2,b\n";
    let etag = s3
        .put(&bucket, key, body.as_bytes().to_vec())
        .await
        .unwrap_or_default();
    let event = s3_event(&bucket, key, body.len(), &etag);
    // Run 1 writes two partitions; run 2 of the same input, after a redeploy without
    // PARTITION_BY, writes one file, and must remove run 1's two.
    let by_day = converter(&s3, &[("PARTITION_BY", "day")]).await;
    by_day
        .handle(LambdaEvent::new(event.clone(), Context::default()))
        .await
        .expect("first run");
    assert_eq!(s3.keys(&bucket, "processed/stale/").await.len(), 2);
    let flat = converter(&s3, &[("PARTITION_BY", "")]).await;
    // Its first read of the manifest meets a 403; the read is retried.
    faults.add(
        Op::GetObject,
        Calls::Nth(faults.calls(Op::GetObject) + 1),
        Action::Status(403, "AccessDenied"),
    );
    flat.handle(LambdaEvent::new(event.clone(), Context::default()))
        .await
        .expect("second run");
    assert_eq!(faults.injected(), 1);
    let files = read_parquet(&s3, &bucket, "processed/stale/").await;
    let keys: Vec<&String> = files.iter().map(|f| &f.0).collect();
    assert_eq!(files.len(), 1, "the earlier run's files are left: {keys:?}");
    assert_eq!(
        rows(&files),
        2,
        "readers would count the earlier run's rows twice"
    );
    // A manifest that cannot be read at all fails the object before anything is written.
    faults.clear();
    let (puts, creates, deletes) = (
        faults.calls(Op::PutObject),
        faults.calls(Op::CreateMultipartUpload),
        faults.calls(Op::DeleteObject),
    );
    faults.add(
        Op::GetObject,
        Calls::Range {
            from: faults.calls(Op::GetObject) + 1,
            count: 3,
        },
        Action::Status(403, "AccessDenied"),
    );
    let err = by_day
        .handle(LambdaEvent::new(event, Context::default()))
        .await
        .expect_err("an unreadable manifest fails the object");
    assert_eq!(err.error_type(), "S3Error", "{err}");
    assert!(err.to_string().contains("_manifests/"), "{err}");
    assert_eq!(faults.calls(Op::PutObject), puts);
    assert_eq!(faults.calls(Op::CreateMultipartUpload), creates);
    assert_eq!(faults.calls(Op::DeleteObject), deletes);
    assert_eq!(
        rows(&read_parquet(&s3, &bucket, "processed/stale/").await),
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn float_statistics_are_used_by_pyarrow_and_duckdb() {
    let Some(python) = venv_python() else {
        return tributary_testkit::skip(
            "float_statistics_readers",
            "no TRIBUTARY_VENV with pyarrow and duckdb (scripts/test.sh sets it)",
        );
    };
    let s3 = TestS3::start().await;
    let bucket = s3.bucket().await;
    // Several row groups; `delta` holds both zeros, `fare` is never NaN, `ratio` has a NaN
    // (SCHEMA makes it float64: inference would keep NaN text as a string).
    let c = converter(
        &s3,
        &[
            ("ROW_GROUP_ROWS", "1024"),
            ("SCHEMA", r#"[{"name":"ratio","type":"float64"}]"#),
        ],
    )
    .await;
    let mut csv = String::from("id,fare,delta,ratio\n");
    for i in 0..5000 {
        let delta = match i % 4 {
            0 => "-0.0".to_owned(),
            1 => "0.0".to_owned(),
            _ => format!("{}.25", i % 7),
        };
        let ratio = if i == 77 {
            "NaN".to_owned()
        } else {
            format!("{}.5", i % 3)
        };
        csv.push_str(&format!("{i},{}.75,{delta},{ratio}\n", i % 250));
    }
    put_and_convert(&s3, &c, &bucket, "raw/stats/fares.csv", csv.into_bytes()).await;
    let script = r#"
import json, pathlib, sys
import duckdb, pyarrow.parquet as pq
root = pathlib.Path(sys.argv[1])
files = sorted(root.glob("*.parquet"))
out = {"row_groups": 0, "pyarrow_min_max": {}, "zero_bounds": []}
for p in files:
    md = pq.ParquetFile(p).metadata
    for rg in range(md.num_row_groups):
        out["row_groups"] += 1
        for c in range(md.num_columns):
            col = md.row_group(rg).column(c)
            s = col.statistics
            name = col.path_in_schema
            if name == "delta" and s is not None and s.has_min_max:
                out["zero_bounds"].append([str(s.min), str(s.max)])
            out["pyarrow_min_max"].setdefault(name, []).append(bool(s is not None and s.has_min_max))
glob = str(root / "*.parquet")
con = duckdb.connect()
stats = con.execute(
    "SELECT path_in_schema, count(*), count(stats_min), count(stats_max) "
    "FROM parquet_metadata(?) GROUP BY 1 ORDER BY 1", [glob]).fetchall()
out["duckdb_stats"] = {r[0]: [r[1], r[2], r[3]] for r in stats}
q = lambda sql: con.execute(sql.replace("{T}", "read_parquet('" + glob + "')")).fetchone()[0]
out["fare_over_200"] = q("SELECT count(*) FROM {T} WHERE fare > 200")
out["delta_zero"] = q("SELECT count(*) FROM {T} WHERE delta = 0")
out["delta_neg_zero"] = q("SELECT count(*) FROM {T} WHERE delta = -0.0")
out["ratio_nan"] = q("SELECT count(*) FROM {T} WHERE isnan(ratio)")
out["ratio_over_1"] = q("SELECT count(*) FROM {T} WHERE ratio > 1")
print(json.dumps(out))
"#;
    let v = python_over_parquet(&python, &s3, &bucket, "processed/stats/", script).await;
    let groups = v["row_groups"].as_u64().expect("row groups");
    assert!(groups >= 4, "{v}");
    // pyarrow and DuckDB see min/max of every float column without NaN, in every row group.
    for col in ["fare", "delta", "id"] {
        let seen = v["pyarrow_min_max"][col].as_array().expect("column");
        assert!(seen.iter().all(|b| b == true), "pyarrow: {col}: {v}");
        assert_eq!(
            v["duckdb_stats"][col],
            json!([groups, groups, groups]),
            "DuckDB: {col}: {v}"
        );
    }
    // A column holding NaN keeps the order only NaN-aware readers use.
    assert_eq!(v["pyarrow_min_max"]["ratio"][0], false, "{v}");
    // Zero bounds carry the sign the format asks for: min -0.0, max +0.0 where zero.
    for b in v["zero_bounds"].as_array().expect("bounds") {
        assert_eq!(b[0], "-0.0", "{v}");
    }
    // Pruning with the statistics never loses a row.
    let expect_over_200 = (0..5000).filter(|i| i % 250 >= 200).count() as u64;
    assert_eq!(v["fare_over_200"], expect_over_200, "{v}");
    assert_eq!(v["delta_zero"], 2500, "{v}");
    assert_eq!(v["delta_neg_zero"], 2500, "{v}");
    assert_eq!(v["ratio_nan"], 1, "{v}");
    let expect_ratio = (0..5000).filter(|i| *i != 77 && i % 3 >= 1).count() as u64;
    // DuckDB orders NaN above every number: `NaN > 1` holds there.
    assert_eq!(v["ratio_over_1"], expect_ratio + 1, "{v}");
}
