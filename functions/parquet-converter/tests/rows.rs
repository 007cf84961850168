//! Row-level behaviour on a real S3 endpoint: bad rows, `SCHEMA`, timestamps, file rotation
//! and the open-file limits.

use arrow::array::{
    Array, Date32Array, Decimal128Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, TimeUnit};
use lambda_runtime::{Context, LambdaEvent};
use serde_json::Value;
use tributary_testkit::{Action, Calls, Op, TestS3};

mod common;
use common::{
    assert_fails_leaving_nothing, convert_err, converted, converter, put_and_convert, read_parquet,
    rows, s3_event,
};

fn all_batches(files: &[(String, Vec<RecordBatch>)]) -> Vec<RecordBatch> {
    files.iter().flat_map(|(_, b)| b.clone()).collect()
}

fn column<'a, T: 'static>(b: &'a RecordBatch, name: &str) -> &'a T {
    b.column_by_name(name)
        .unwrap_or_else(|| panic!("no column {name}"))
        .as_any()
        .downcast_ref::<T>()
        .unwrap_or_else(|| {
            panic!(
                "column {name} has type {}",
                b.schema().field_with_name(name).expect("field").data_type()
            )
        })
}

async fn quarantined(s3: &TestS3, bucket: &str) -> Vec<Value> {
    let keys = s3.keys(bucket, "errors/").await;
    assert!(keys.len() <= 1, "{keys:?}");
    let Some(key) = keys.first() else {
        return Vec::new();
    };
    assert!(key.ends_with(".bad-rows.jsonl"), "{key}");
    String::from_utf8(s3.get(bucket, key).await)
        .expect("utf8")
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_rows_are_quarantined_with_their_line_and_text() {
    let s3 = TestS3::start().await;
    let bucket = s3.bucket().await;
    let c = converter(
        &s3,
        &[
            ("SCHEMA", r#"[{"name":"n","type":"int64"}]"#),
            ("BATCH_ROWS", "64"),
        ],
    )
    .await;
    // 300 good rows, and among them: a missing column (line 6), an extra one (line 51), a
    // value that is not an int64 under SCHEMA (line 202), a quoted field spanning two lines
    // (lines 100-101, good) that shifts the line numbers after it.
    let mut csv = String::from("id,n,note\n");
    let mut line = 1;
    let mut good = 0;
    for i in 0..303 {
        line += 1;
        match line {
            6 => csv.push_str("6,only-two\n"),
            51 => csv.push_str("51,5,x,extra\n"),
            100 => {
                csv.push_str(&format!("{i},{i},\"spans\ntwo lines\"\n"));
                line += 1;
                good += 1;
            }
            203 => csv.push_str("203,twelve,\"not a number\"\n"),
            _ => {
                csv.push_str(&format!("{i},{i},ok\n"));
                good += 1;
            }
        }
    }
    let out = put_and_convert(&s3, &c, &bucket, "raw/rows/bad.csv", csv.into_bytes()).await;
    let r = converted(&out);
    assert_eq!(r.rows, good as u64);
    assert_eq!(r.bad_rows, 3);
    let files = read_parquet(&s3, &bucket, "processed/rows/").await;
    assert_eq!(rows(&files), good as usize);
    let bad = quarantined(&s3, &bucket).await;
    let lines: Vec<u64> = bad
        .iter()
        .map(|b| b["line"].as_u64().expect("line"))
        .collect();
    assert_eq!(lines, vec![6, 51, 203], "{bad:?}");
    assert_eq!(bad[0]["raw"], "6,only-two");
    assert!(
        bad[0]["error"]
            .as_str()
            .expect("error")
            .contains("number of fields"),
        "{}",
        bad[0]
    );
    assert_eq!(bad[1]["raw"], "51,5,x,extra");
    assert_eq!(bad[2]["raw"], "203,twelve,\"not a number\"");
    assert!(
        bad[2]["error"].as_str().expect("error").contains("twelve"),
        "{}",
        bad[2]
    );
    assert!(bad.iter().all(|b| {
        b["source"]
            .as_str()
            .expect("source")
            .ends_with("raw/rows/bad.csv")
    }));
    assert_eq!(
        r.bad_rows_file.as_ref().expect("a quarantine file").key,
        s3.keys(&bucket, "errors/").await[0]
    );
    // The manifest counts them too.
    let manifest_key = s3.keys(&bucket, "processed/_manifests/").await;
    let manifest: parquet_converter::convert::manifest::Manifest =
        serde_json::from_slice(&s3.get(&bucket, &manifest_key[0]).await).expect("manifest");
    assert_eq!(manifest.bad_rows, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_rows_fail_mode_fails_the_object_and_writes_nothing() {
    let s3 = TestS3::start().await;
    let bucket = s3.bucket().await;
    let c = converter(&s3, &[("BAD_ROWS", "fail"), ("BATCH_ROWS", "64")]).await;
    let mut csv = String::from("a,b\n");
    for i in 0..500 {
        csv.push_str(&format!("{i},{i}\n"));
    }
    csv.push_str("oops\n");
    let etag = s3
        .put(&bucket, "raw/f/x.csv", csv.clone().into_bytes())
        .await
        .unwrap_or_default();
    let err = c
        .handle(LambdaEvent::new(
            s3_event(&bucket, "raw/f/x.csv", csv.len(), &etag),
            Context::default(),
        ))
        .await
        .expect_err("a bad row fails the object");
    assert_eq!(err.error_type(), "BadRow", "{err}");
    assert!(err.to_string().contains("line 502"), "{err}");
    assert!(s3.keys(&bucket, "processed/").await.is_empty());
    assert!(s3.keys(&bucket, "errors/").await.is_empty());
    assert!(s3.open_uploads(&bucket).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_fixes_types_and_adds_missing_columns() {
    let s3 = TestS3::start().await;
    let bucket = s3.bucket().await;
    let schema = r#"[
        {"name":"zip","type":"string"},
        {"name":"amount","type":"decimal(10,2)"},
        {"name":"day","type":"date"},
        {"name":"at","type":"timestamp_tz"},
        {"name":"not_in_file","type":"int64"}
    ]"#;
    let c = converter(&s3, &[("SCHEMA", schema)]).await;
    let csv = "zip,amount,day,at,count\n\
               02134,12.50,2024-03-07,2024-03-07T10:00:00+09:00,1\n\
               10001,0.05,2024-02-29,2024-03-07 01:00:00,2\n\
               ,NULL,,,\n";
    let out = put_and_convert(&s3, &c, &bucket, "raw/s/typed.csv", csv.as_bytes().to_vec()).await;
    assert_eq!(converted(&out).rows, 3, "{out}");
    let batches = all_batches(&read_parquet(&s3, &bucket, "processed/s/").await);
    let b = &batches[0];
    let schema = b.schema();
    let types: Vec<(String, DataType)> = schema
        .fields()
        .iter()
        .map(|f| (f.name().clone(), f.data_type().clone()))
        .collect();
    assert_eq!(
        types,
        vec![
            ("zip".into(), DataType::Utf8),
            ("amount".into(), DataType::Decimal128(10, 2)),
            ("day".into(), DataType::Date32),
            (
                "at".into(),
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
            ),
            ("count".into(), DataType::Int64),
            ("not_in_file".into(), DataType::Int64),
        ]
    );
    assert_eq!(column::<StringArray>(b, "zip").value(0), "02134");
    assert_eq!(column::<Decimal128Array>(b, "amount").value(0), 1250);
    assert_eq!(column::<Decimal128Array>(b, "amount").value(1), 5);
    assert_eq!(column::<Date32Array>(b, "day").value(1), 19_782);
    let at = column::<TimestampMicrosecondArray>(b, "at");
    assert_eq!(at.value(0), 1_709_773_200_000_000, "10:00+09:00 is 01:00Z");
    assert_eq!(
        at.value(1),
        1_709_773_200_000_000,
        "naive values are read as UTC"
    );
    assert_eq!(column::<Int64Array>(b, "not_in_file").null_count(), 3);
    for name in ["zip", "amount", "day", "at", "count"] {
        assert!(
            b.column_by_name(name).expect(name).is_null(2),
            "{name} row 3 is null"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timestamps_keep_offsets_microseconds_and_custom_formats() {
    let s3 = TestS3::start().await;
    let bucket = s3.bucket().await;
    let c = converter(&s3, &[("TIMESTAMP_FORMATS", "%d/%m/%Y %H:%M")]).await;
    let csv = "naive,zoned,custom,day\n\
               2024-03-07 10:00:00.123456,2024-03-07T10:00:00.5Z,07/03/2024 10:00,2024-03-07\n\
               2024-03-07T23:59:59,2024-03-07T19:00:00+09:00,31/12/2023 23:59,2024-01-01\n";
    put_and_convert(&s3, &c, &bucket, "raw/t/times.csv", csv.as_bytes().to_vec()).await;
    let batches = all_batches(&read_parquet(&s3, &bucket, "processed/t/").await);
    let b = &batches[0];
    let s = b.schema();
    let us = |tz: Option<&str>| DataType::Timestamp(TimeUnit::Microsecond, tz.map(Into::into));
    assert_eq!(
        s.field_with_name("naive").expect("f").data_type(),
        &us(None)
    );
    assert_eq!(
        s.field_with_name("zoned").expect("f").data_type(),
        &us(Some("UTC"))
    );
    assert_eq!(
        s.field_with_name("custom").expect("f").data_type(),
        &us(None)
    );
    assert_eq!(
        s.field_with_name("day").expect("f").data_type(),
        &DataType::Date32
    );
    let base = 1_709_805_600_000_000; // 2024-03-07T10:00:00Z
    assert_eq!(
        column::<TimestampMicrosecondArray>(b, "naive").value(0),
        base + 123_456
    );
    assert_eq!(
        column::<TimestampMicrosecondArray>(b, "zoned").value(0),
        base + 500_000
    );
    assert_eq!(
        column::<TimestampMicrosecondArray>(b, "zoned").value(1),
        base
    );
    assert_eq!(
        column::<TimestampMicrosecondArray>(b, "custom").value(0),
        base
    );
    assert_eq!(
        column::<TimestampMicrosecondArray>(b, "custom").value(1),
        1_704_067_140_000_000
    );
}

/// `n` rows of 64 incompressible hex characters in partitions `p` = i % parts.
fn wide_csv(n: usize, parts: usize) -> Vec<u8> {
    let mut s = String::from("i,p,blob\n");
    let noise = tributary_testkit::data::random_bytes(n * 32, 7);
    for i in 0..n {
        s.push_str(&format!(
            "{i},{},{}\n",
            i % parts,
            hex::encode(&noise[i * 32..i * 32 + 32])
        ));
    }
    s.into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_rotate_at_the_target_size_and_open_files_are_limited() {
    let s3 = TestS3::start().await;
    let bucket = s3.bucket().await;
    // ~4.5 MB of incompressible text with 1 MB files: several numbered files, all rows kept.
    let c = converter(&s3, &[("TARGET_FILE_MB", "1"), ("ROW_GROUP_ROWS", "1024")]).await;
    let out = put_and_convert(&s3, &c, &bucket, "raw/w/big.csv", wide_csv(60_000, 1)).await;
    let files = read_parquet(&s3, &bucket, "processed/w/").await;
    assert!(
        files.len() >= 3,
        "{:?}",
        files.iter().map(|f| &f.0).collect::<Vec<_>>()
    );
    for (i, (key, _)) in files.iter().enumerate() {
        assert!(key.ends_with(&format!("-{i:04}.parquet")), "{key}");
    }
    assert_eq!(rows(&files), 60_000);
    assert_eq!(converted(&out).files.len(), files.len());
    let ids: Vec<i64> = all_batches(&files)
        .iter()
        .flat_map(|b| column::<Int64Array>(b, "i").values().to_vec())
        .collect();
    assert_eq!(
        ids,
        (0..60_000).collect::<Vec<i64>>(),
        "every row once, in order"
    );

    // One open file at a time while rows alternate between 3 partitions (batches of 100):
    // each batch closes files, nothing is lost.
    let c = converter(
        &s3,
        &[
            ("PARTITION_BY", "p"),
            ("MAX_OPEN_PARTITIONS", "1"),
            ("BATCH_ROWS", "100"),
        ],
    )
    .await;
    put_and_convert(&s3, &c, &bucket, "raw/m/mixed.csv", wide_csv(1_000, 3)).await;
    let files = read_parquet(&s3, &bucket, "processed/m/").await;
    assert!(files.len() > 3, "{}", files.len());
    for p in 0..3 {
        let in_p: usize = files
            .iter()
            .filter(|(k, _)| k.contains(&format!("/p={p}/")))
            .map(|(_, b)| b.iter().map(RecordBatch::num_rows).sum::<usize>())
            .sum();
        assert_eq!(
            in_p,
            (0..1_000).filter(|i| i % 3 == p).count(),
            "partition {p}"
        );
    }
    assert!(s3.open_uploads(&bucket).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_after_files_were_closed_leaves_nothing() {
    let s3 = TestS3::start().await;
    let Some(faults) = s3.faults() else {
        return tributary_testkit::skip(
            "converter_sealed_failure",
            "needs fault injection (embedded server)",
        );
    };
    let bucket = s3.bucket().await;
    let c = converter(&s3, &[("TARGET_FILE_MB", "1"), ("ROW_GROUP_ROWS", "1024")]).await;
    let body = wide_csv(60_000, 1);
    let etag = s3
        .put(&bucket, "raw/w/big.csv", body.clone())
        .await
        .unwrap_or_default();
    // The first file completes, the next one fails: everything is rolled back.
    faults.add(
        Op::CompleteMultipartUpload,
        Calls::From(2),
        Action::Status(500, "InternalError"),
    );
    assert_fails_leaving_nothing(
        &s3,
        &c,
        &bucket,
        "raw/w/big.csv",
        body.len(),
        &etag,
        "S3Unavailable",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_json_field_first_seen_after_the_sample_becomes_a_column() {
    let s3 = TestS3::start().await;
    let bucket = s3.bucket().await;
    let c = converter(&s3, &[("INFER_ROWS", "10"), ("BATCH_ROWS", "64")]).await;
    let mut body = String::new();
    for i in 0..200 {
        if i == 150 {
            body.push_str(&format!("{{\"id\":{i},\"late\":{{\"k\":\"v\"}}}}\n"));
        } else {
            body.push_str(&format!("{{\"id\":{i}}}\n"));
        }
    }
    body.push_str("{\"id\": \"broken\n");
    let out = put_and_convert(&s3, &c, &bucket, "raw/j/late.jsonl", body.into_bytes()).await;
    let r = converted(&out);
    assert_eq!(r.rows, 200, "{out}");
    assert_eq!(r.bad_rows, 1);
    assert!(r.type_widenings >= 1);
    let batches = all_batches(&read_parquet(&s3, &bucket, "processed/j/").await);
    let late = batches
        .iter()
        .find_map(|b| {
            let col = b.column_by_name("late")?;
            (0..b.num_rows())
                .find(|i| col.is_valid(*i))
                .map(|i| column::<Int64Array>(b, "id").value(i))
        })
        .expect("the late field is kept");
    assert_eq!(late, 150);
    assert_eq!(quarantined(&s3, &bucket).await[0]["line"], 201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inputs_without_the_partition_columns_keep_their_key_partitions() {
    let s3 = TestS3::start().await;
    let bucket = s3.bucket().await;
    // One converter for every dataset: taxi files have the column, Firehose output does not.
    let c = converter(&s3, &[("PARTITION_BY", "tpep_pickup_datetime:day")]).await;
    let key =
        "raw/events/year=2024/month=03/day=07/hour=05/tributary-events-1-2024-03-07-05-06-07-abc";
    put_and_convert(&s3, &c, &bucket, key, b"{\"a\":1}{\"a\":2}".to_vec()).await;
    let keys = s3.keys(&bucket, "processed/events/").await;
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert!(
        keys[0].starts_with("processed/events/year=2024/month=03/day=07/hour=05/"),
        "{keys:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_json_field_mixing_objects_and_text_is_kept_as_json_text() {
    let s3 = TestS3::start().await;
    let bucket = s3.bucket().await;
    let c = converter(&s3, &[("INFER_ROWS", "10"), ("BATCH_ROWS", "64")]).await;
    // In the sample: objects and strings. After it: an array where objects were seen.
    let mut body = String::from("{\"id\":0,\"message\":{\"level\":\"warn\",\"n\":1}}\n");
    body.push_str("{\"id\":1,\"message\":\"plain text\"}\n");
    for i in 2..100 {
        body.push_str(&format!(
            "{{\"id\":{i},\"message\":\"m{i}\",\"detail\":{{\"a\":{i}}}}}\n"
        ));
    }
    body.push_str("{\"id\":100,\"message\":\"x\",\"detail\":[1,2]}\n");
    let out = put_and_convert(&s3, &c, &bucket, "raw/logs/mixed.ndjson", body.into_bytes()).await;
    assert_eq!(converted(&out).rows, 101, "{out}");
    assert_eq!(converted(&out).bad_rows, 0, "{out}");
    let batches = all_batches(&read_parquet(&s3, &bucket, "processed/logs/").await);
    let mut messages = Vec::new();
    let mut details = Vec::new();
    for b in &batches {
        let m = column::<StringArray>(b, "message");
        let d = column::<StringArray>(b, "detail");
        for i in 0..b.num_rows() {
            messages.push(m.value(i).to_owned());
            details.push(d.is_valid(i).then(|| d.value(i).to_owned()));
        }
    }
    assert_eq!(messages[0], r#"{"level":"warn","n":1}"#);
    assert_eq!(messages[1], "plain text");
    assert_eq!(details[2].as_deref(), Some(r#"{"a":2}"#));
    assert_eq!(details[100].as_deref(), Some("[1,2]"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spreadsheet_csv_with_bom_crlf_and_quoted_line_breaks_keeps_every_row() {
    let s3 = TestS3::start().await;
    let bucket = s3.bucket().await;
    // What Excel writes: a BOM, CRLF record ends, quoted fields holding LF and CRLF line
    // breaks, doubled quotes and delimiters. More rows than one batch, and than the sample.
    let c = converter(&s3, &[("BATCH_ROWS", "64"), ("INFER_ROWS", "100")]).await;
    let mut csv = String::from("\u{FEFF}id,name,note,amount\r\n");
    let mut expect = Vec::new();
    for i in 0..300i64 {
        let (name, note) = match i % 4 {
            0 => (
                format!("Smith, John {i}"),
                format!("line one\nline two {i}"),
            ),
            1 => (format!("say \"hi\" {i}"), "plain".to_owned()),
            2 => (format!("x{i}"), format!("a,b\r\nc \"{i}\"")),
            _ => (format!("{i}"), String::new()),
        };
        let quote = |v: &str| format!("\"{}\"", v.replace('"', "\"\""));
        csv.push_str(&format!(
            "{i},{},{},{}.5\r\n",
            quote(&name),
            quote(&note),
            i - 50
        ));
        expect.push((i, name, note));
    }
    let out = put_and_convert(&s3, &c, &bucket, "raw/excel/export.csv", csv.into_bytes()).await;
    let r = converted(&out);
    assert_eq!(r.rows, 300, "{out}");
    assert_eq!(r.bad_rows, 0, "{out}");
    let batches = all_batches(&read_parquet(&s3, &bucket, "processed/excel/").await);
    let schema = batches[0].schema();
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(
        names,
        ["id", "name", "note", "amount"],
        "the BOM is not part of a name"
    );
    assert_eq!(schema.field(0).data_type(), &DataType::Int64);
    assert_eq!(schema.field(3).data_type(), &DataType::Float64);
    let mut got = Vec::new();
    for b in &batches {
        let (id, name, note) = (
            column::<Int64Array>(b, "id"),
            column::<StringArray>(b, "name"),
            column::<StringArray>(b, "note"),
        );
        for row in 0..b.num_rows() {
            got.push((
                id.value(row),
                name.value(row).to_owned(),
                if note.is_null(row) {
                    String::new()
                } else {
                    note.value(row).to_owned()
                },
            ));
        }
    }
    got.sort();
    assert_eq!(got, expect);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offset_timestamps_partition_on_their_utc_instant() {
    let s3 = TestS3::start().await;
    let bucket = s3.bucket().await;
    let csv = "id,ts\n\
               1,2024-03-10T23:30:00-05:00\n\
               2,2024-03-11T00:10:00.250+00:00\n\
               3,2024-03-10T23:59:59.999999-00:30\n\
               4,2024-03-10T12:00:00Z\n\
               5,2023-12-31T22:00:00-03:00\n";
    let cases: [(&str, Option<&str>, &[&str]); 4] = [
        (
            "ts:day",
            None,
            &[
                "year=2024/month=03/day=10",
                "year=2024/month=03/day=11",
                "year=2024/month=03/day=11",
                "year=2024/month=03/day=11",
                "year=2024/month=01/day=01",
            ],
        ),
        (
            "ts:hour",
            Some(r#"[{"name":"ts","type":"timestamp_tz"}]"#),
            &[
                "year=2024/month=03/day=10/hour=12",
                "year=2024/month=03/day=11/hour=00",
                "year=2024/month=03/day=11/hour=00",
                "year=2024/month=03/day=11/hour=04",
                "year=2024/month=01/day=01/hour=01",
            ],
        ),
        (
            "ts:month",
            None,
            &["year=2024/month=01", "year=2024/month=03"],
        ),
        (
            "ts:year",
            Some(r#"[{"name":"ts","type":"timestamp_tz"}]"#),
            &["year=2024"],
        ),
    ];
    for (n, (spec, schema, want)) in cases.iter().enumerate() {
        let mut env = vec![("PARTITION_BY", *spec)];
        if let Some(s) = schema {
            env.push(("SCHEMA", s));
        }
        let c = converter(&s3, &env).await;
        let key = format!("raw/tz{n}/offsets.csv");
        let out = put_and_convert(&s3, &c, &bucket, &key, csv.as_bytes().to_vec()).await;
        let r = converted(&out);
        assert_eq!(r.default_partition_rows, 0, "{spec}: {out}");
        let prefix = format!("processed/tz{n}/");
        let mut paths: Vec<String> = Vec::new();
        for (key, batches) in read_parquet(&s3, &bucket, &prefix).await {
            let dir = key
                .strip_prefix(&prefix)
                .and_then(|k| k.rsplit_once('/'))
                .map(|(d, _)| d.to_owned())
                .expect("a partition path");
            for b in &batches {
                paths.extend(std::iter::repeat_n(dir.clone(), b.num_rows()));
            }
        }
        paths.sort();
        let mut want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
        want.sort();
        if want.len() < 5 {
            // Coarser levels: the partitions the rows are in.
            paths.dedup();
        }
        assert_eq!(paths, want, "{spec}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stray_quote_fails_with_its_line_instead_of_swallowing_rows() {
    let s3 = TestS3::start().await;
    let bucket = s3.bucket().await;
    let c = converter(&s3, &[]).await;
    let csv = b"a,b\n1,\"unterminated\n2,3\n4,5\n".to_vec();
    let etag = s3
        .put(&bucket, "raw/q/stray.csv", csv.clone())
        .await
        .unwrap_or_default();
    let err = c
        .handle(LambdaEvent::new(
            s3_event(&bucket, "raw/q/stray.csv", csv.len(), &etag),
            Context::default(),
        ))
        .await
        .expect_err("an unclosed quote is not a row");
    assert_eq!(err.error_type(), "DecodeError", "{err}");
    assert!(err.to_string().contains("line 2"), "{err}");
    assert!(s3.keys(&bucket, "processed/").await.is_empty());
    assert!(s3.open_uploads(&bucket).await.is_empty());
    // A quote inside an unquoted field is an ordinary character, as the decoder reads it.
    let inches = b"id,size\n1,5\" screen\n2,7\"\n3,x\n".to_vec();
    let out = put_and_convert(&s3, &c, &bucket, "raw/q/inches.csv", inches).await;
    assert_eq!(converted(&out).rows, 3, "{out}");
    assert_eq!(converted(&out).bad_rows, 0, "{out}");
    let batches = all_batches(&read_parquet(&s3, &bucket, "processed/q/").await);
    assert_eq!(
        column::<StringArray>(&batches[0], "size").value(0),
        "5\" screen"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_json_field_with_text_before_objects_in_the_sample_is_kept_as_json_text() {
    let s3 = TestS3::start().await;
    let bucket = s3.bucket().await;
    let c = converter(&s3, &[]).await;
    let mut body = String::from("{\"id\":0,\"v\":\"one\"}\n{\"id\":1,\"v\":{\"x\":1}}\n");
    body.push_str("{\"id\":2,\"v\":7}\n{\"id\":3,\"v\":[1,{\"y\":2}]}\n{\"id\":4}\n");
    let out = put_and_convert(
        &s3,
        &c,
        &bucket,
        "raw/shape/mixed.ndjson",
        body.into_bytes(),
    )
    .await;
    assert_eq!(out.results[0].status(), "converted", "{out}");
    assert_eq!(converted(&out).rows, 5, "{out}");
    assert_eq!(converted(&out).bad_rows, 0, "{out}");
    let batches = all_batches(&read_parquet(&s3, &bucket, "processed/shape/").await);
    let v = column::<StringArray>(&batches[0], "v");
    let got: Vec<Option<&str>> = (0..v.len())
        .map(|i| v.is_valid(i).then(|| v.value(i)))
        .collect();
    assert_eq!(
        got,
        [
            Some("one"),
            Some(r#"{"x":1}"#),
            Some("7"),
            Some(r#"[1,{"y":2}]"#),
            None
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn numbers_that_do_not_fit_are_kept_as_text_not_rounded() {
    let s3 = TestS3::start().await;
    let bucket = s3.bucket().await;
    let c = converter(&s3, &[("INFER_ROWS", "10"), ("BATCH_ROWS", "64")]).await;
    // In the sample (`big`) and after it (`late`, `huge`): an integer beyond int64 and a
    // number beyond float64.
    let mut json =
        String::from("{\"id\":0,\"big\":18446744073709551615,\"late\":1,\"huge\":1.5}\n");
    let mut csv = String::from("id,late,huge\n0,1,1.5\n");
    for i in 1..100 {
        json.push_str(&format!(
            "{{\"id\":{i},\"big\":{i},\"late\":{i},\"huge\":{i}.5}}\n"
        ));
        csv.push_str(&format!("{i},{i},{i}.5\n"));
    }
    json.push_str("{\"id\":100,\"big\":1,\"late\":9223372036854775808,\"huge\":1e400}\n");
    csv.push_str("100,-9223372036854775809,1e400\n");
    for (key, body) in [("raw/n/j.ndjson", json), ("raw/n/c.csv", csv)] {
        let out = put_and_convert(&s3, &c, &bucket, key, body.into_bytes()).await;
        let r = converted(&out);
        assert_eq!(r.rows, 101, "{out}");
        assert_eq!(r.bad_rows, 0, "{out}");
    }
    for (file, cols) in [
        (
            "/j-",
            vec![
                ("big", "18446744073709551615", 0usize),
                ("late", "9223372036854775808", 100),
                ("huge", "1e400", 100),
            ],
        ),
        (
            "/c-",
            vec![
                ("late", "-9223372036854775809", 100),
                ("huge", "1e400", 100),
            ],
        ),
    ] {
        let files: Vec<_> = read_parquet(&s3, &bucket, "processed/n/")
            .await
            .into_iter()
            .filter(|(k, _)| k.contains(file))
            .collect();
        let batches = all_batches(&files);
        for (name, want, row) in cols {
            let mut values = Vec::new();
            for b in &batches {
                let a = column::<StringArray>(b, name);
                values.extend((0..a.len()).map(|i| a.value(i).to_owned()));
            }
            assert_eq!(values[row], want, "{file} {name}");
            // The other rows keep their text as written.
            assert_eq!(
                values[1],
                if name == "huge" { "1.5" } else { "1" },
                "{file} {name}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_are_named_when_a_record_or_value_is_too_big() {
    let s3 = TestS3::start().await;
    let bucket = s3.bucket().await;
    let c = converter(&s3, &[("PARTITION_BY", "p")]).await;
    // A 10 MiB JSON line first: longer than the usual sample, still one row.
    let big = "x".repeat(10 << 20);
    let body = format!(
        "{{\"id\":1,\"p\":\"a\",\"blob\":\"{big}\"}}\n{{\"id\":2,\"p\":\"a\",\"blob\":\"y\"}}\n"
    );
    let out = put_and_convert(&s3, &c, &bucket, "raw/lim/long.ndjson", body.into_bytes()).await;
    assert_eq!(converted(&out).rows, 2, "{out}");
    // Nesting beyond the JSON parser's depth limit, in the first rows: the limit is named.
    let deep = format!(
        "{{\"id\":1,\"p\":\"a\",\"v\":{}1{}}}\n",
        "[".repeat(3000),
        "]".repeat(3000)
    );
    let err = convert_err(&s3, &c, &bucket, "raw/lim/deep.ndjson", deep.into_bytes()).await;
    assert_eq!(err.error_type(), "DecodeError", "{err}");
    assert!(err.to_string().contains("recursion limit"), "{err}");
    assert!(err.to_string().contains("line 1"), "{err}");
    // A partition value too long for an S3 key: the limit is named, nothing is written.
    let csv = format!("id,p\n1,{}\n", "v".repeat(1500));
    let err = convert_err(&s3, &c, &bucket, "raw/lim/wide.csv", csv.into_bytes()).await;
    assert_eq!(err.error_type(), "LimitExceeded", "{err}");
    assert!(err.to_string().contains("1024-byte key limit"), "{err}");
    let written = s3.keys(&bucket, "processed/lim/").await;
    assert!(written.iter().all(|k| k.contains("long-")), "{written:?}");
    assert!(s3.open_uploads(&bucket).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_or_truncated_gzip_input_is_a_decode_error_not_a_retryable_one() {
    use std::io::Write;
    let s3 = TestS3::start().await;
    let bucket = s3.bucket().await;
    let c = converter(&s3, &[]).await;
    let mut csv = String::from("id,name\n");
    for i in 0..20_000 {
        csv.push_str(&format!("{i},name-{}\n", i * 7919 % 10_007));
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(csv.as_bytes()).expect("gzip");
    let whole = gz.finish().expect("gzip");
    let mut damaged = whole.clone();
    let mid = damaged.len() / 2;
    damaged[mid..mid + 64].fill(0xAA);
    let truncated = whole[..whole.len() / 2].to_vec();
    for (key, body) in [
        ("raw/gz/damaged.csv.gz", damaged),
        ("raw/gz/cut.csv.gz", truncated),
    ] {
        let err = convert_err(&s3, &c, &bucket, key, body).await;
        assert_eq!(err.error_type(), "DecodeError", "{key}: {err}");
        assert!(!err.is_transient(), "{key}: {err}");
        assert!(err.to_string().contains(key), "{key}: {err}");
    }
    assert!(s3.keys(&bucket, "processed/").await.is_empty());
    assert!(s3.open_uploads(&bucket).await.is_empty());
}
