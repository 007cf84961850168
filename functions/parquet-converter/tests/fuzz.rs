//! Property tests of the whole conversion as an outsider reaches it: generated CSV and JSON
//! inputs (quoting, delimiters and line breaks inside fields, CRLF, a BOM, malformed rows,
//! arbitrary bytes) through the real handler on a real S3 endpoint. Properties: no panic;
//! nothing silently dropped (rows out + bad rows = records in); good rows read back exactly.
//! A fixed number of cases runs in CI; `PROPTEST_CASES=10000 cargo test -p parquet-converter
//! --test fuzz` is a longer run.

use arrow::array::{Array, StringArray};
use proptest::prelude::*;
use proptest::test_runner::{Config as RunnerConfig, RngSeed, TestCaseError, TestRunner};
use tributary_testkit::TestS3;

mod common;
use common::{converted, converter, put_and_handle, read_parquet};

fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn runner(default_cases: u32) -> TestRunner {
    TestRunner::new(RunnerConfig {
        cases: cases(default_cases),
        rng_seed: RngSeed::Fixed(20261201),
        failure_persistence: None,
        ..RunnerConfig::default()
    })
}

/// A runtime, a store, a bucket and a converter for a property test's cases.
fn setup(
    env: &[(&str, &str)],
) -> (
    tokio::runtime::Runtime,
    TestS3,
    String,
    parquet_converter::Converter,
) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let s3 = rt.block_on(TestS3::start());
    let bucket = rt.block_on(s3.bucket());
    let c = rt.block_on(converter(&s3, env));
    (rt, s3, bucket, c)
}

/// One generated CSV document: rows of field values, which rows are malformed, and how it
/// is written.
#[derive(Debug, Clone)]
struct Doc {
    columns: usize,
    rows: Vec<(Vec<String>, bool)>,
    crlf: bool,
    bom: bool,
}

/// A field value: starts with a letter (so the column stays text and no value reads as
/// null), then anything a spreadsheet writes, quotes, delimiters and line breaks included.
fn value() -> impl Strategy<Value = String> {
    (
        "[a-z]",
        proptest::collection::vec(
            prop_oneof![
                4 => "[a-zA-Z0-9 ]".prop_map(|s| s),
                1 => Just(",".to_owned()),
                1 => Just("\"".to_owned()),
                1 => Just("\n".to_owned()),
                1 => Just("\r\n".to_owned()),
                1 => Just("\t".to_owned()),
            ],
            0..8,
        ),
    )
        .prop_map(|(first, rest)| format!("{first}{}", rest.concat()))
}

fn doc() -> impl Strategy<Value = Doc> {
    (1usize..5, any::<bool>(), any::<bool>()).prop_flat_map(|(columns, crlf, bom)| {
        proptest::collection::vec(
            (
                proptest::collection::vec(value(), columns),
                proptest::bool::weighted(0.1),
            ),
            1..30,
        )
        .prop_map(move |rows| Doc {
            columns,
            rows,
            crlf,
            bom,
        })
    })
}

impl Doc {
    fn text(&self) -> Vec<u8> {
        let end = if self.crlf { "\r\n" } else { "\n" };
        let mut s = String::new();
        if self.bom {
            s.push('\u{FEFF}');
        }
        let header: Vec<String> = (0..self.columns).map(|i| format!("c{i}")).collect();
        s.push_str(&header.join(","));
        s.push_str(end);
        for (fields, malformed) in &self.rows {
            let mut cells: Vec<String> = fields.iter().map(|f| quote(f)).collect();
            if *malformed {
                // One field too many: the decoder cannot take it as a row.
                cells.push("extra".into());
            }
            s.push_str(&cells.join(","));
            s.push_str(end);
        }
        s.into_bytes()
    }
}

fn quote(v: &str) -> String {
    if v.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", v.replace('"', "\"\""))
    } else {
        v.to_owned()
    }
}

#[test]
fn generated_csv_converts_exactly_or_is_counted_bad() {
    let (rt, s3, bucket, c) = setup(&[]);
    let counter = std::sync::atomic::AtomicU32::new(0);
    runner(24)
        .run(&doc(), |doc| {
            let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            let key = format!("raw/fuzz{n}/doc.csv");
            rt.block_on(async {
                let out = put_and_handle(&s3, &c, &bucket, &key, doc.text())
                    .await
                    .map_err(|e| TestCaseError::fail(format!("{e}")))?;
                let r = converted(&out);
                let good: Vec<&Vec<String>> =
                    doc.rows.iter().filter(|r| !r.1).map(|r| &r.0).collect();
                let bad = doc.rows.len() - good.len();
                prop_assert_eq!(r.bad_rows, bad as u64, "{}", out);
                prop_assert_eq!(r.rows, good.len() as u64, "{}", out);
                let files = read_parquet(&s3, &bucket, &format!("processed/fuzz{n}/")).await;
                let mut got: Vec<Vec<String>> = Vec::new();
                for b in files.iter().flat_map(|f| &f.1) {
                    for row in 0..b.num_rows() {
                        got.push(
                            (0..doc.columns)
                                .map(|i| {
                                    let a = b
                                        .column_by_name(&format!("c{i}"))
                                        .and_then(|a| a.as_any().downcast_ref::<StringArray>());
                                    a.filter(|a| a.is_valid(row))
                                        .map(|a| a.value(row).to_owned())
                                        .unwrap_or_else(|| "<null>".into())
                                })
                                .collect(),
                        );
                    }
                }
                let want: Vec<Vec<String>> = good.into_iter().cloned().collect();
                prop_assert_eq!(got, want);
                Ok(())
            })
        })
        .unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn arbitrary_bytes_never_panic_and_always_answer() {
    let (rt, s3, bucket, c) = setup(&[]);
    let bytes = proptest::collection::vec(
        prop_oneof![
            4 => proptest::sample::select(b"ab1.,\"\n\r{}[]:\\ -".to_vec()),
            1 => any::<u8>(),
        ],
        1..500,
    );
    let counter = std::sync::atomic::AtomicU32::new(0);
    runner(48)
        .run(&(bytes, 0usize..3), |(body, ext)| {
            let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            let key = format!("raw/bytes{n}/x.{}", ["csv", "json", "txt"][ext]);
            rt.block_on(async {
                match put_and_handle(&s3, &c, &bucket, &key, body).await {
                    Ok(v) => {
                        let r = &v.results[0];
                        prop_assert!(matches!(r.status(), "converted" | "skipped"), "{}", v);
                    }
                    // A failure names what was wrong; it never leaves an upload open.
                    Err(e) => {
                        prop_assert!(
                            matches!(e.error_type(), "DecodeError" | "BadRow" | "LimitExceeded"),
                            "{}: {}",
                            e.error_type(),
                            e
                        );
                        prop_assert!(s3.open_uploads(&bucket).await.is_empty());
                    }
                }
                Ok(())
            })
        })
        .unwrap_or_else(|e| panic!("{e}"));
}

/// (rows, bad rows), or the error type.
type Outcome = Result<(u64, u64), String>;

/// Converts `body` under a fresh key; (rows, bad rows), or the error type.
async fn rows_and_bad(
    s3: &TestS3,
    c: &parquet_converter::Converter,
    bucket: &str,
    key: &str,
    body: &[u8],
) -> Outcome {
    let out = put_and_handle(s3, c, bucket, key, body.to_vec())
        .await
        .map_err(|e| e.error_type().to_owned())?;
    let r = out.results[0].summary();
    Ok((r.map_or(0, |r| r.rows), r.map_or(0, |r| r.bad_rows)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_decoding_path_reads_what_it_should() {
    let s3 = TestS3::start().await;
    let bucket = s3.bucket().await;
    let c = converter(&s3, &[]).await;
    let cases: [(&str, &[u8], Outcome); 9] = [
        ("a.csv", b"a,b\n1,x\n2,y\n", Ok((2, 0))),
        ("b.csv", b"a,b\n1,x\n2\n3,z", Ok((2, 1))),
        // CRLF record ends: the batch's last `\r\n` is consumed whole.
        ("c.csv", b"a,b\r\n1,x\r\n2,y\r\n", Ok((2, 0))),
        ("d.csv", b"a,b\r\n1,\"x\r\ny\"\r\n", Ok((1, 0))),
        ("e.json", b"{\"a\":1}{\"a\":2}\n{\"a\":3}", Ok((3, 0))),
        ("f.csv", b"n\n1\n2\n1.5\nn/a\n", Ok((4, 0))),
        (
            "g.csv",
            b"t\n2024-01-01\n2024-01-01 10:00\nlater\n",
            Ok((3, 0)),
        ),
        ("h.json", b"[{\"a\":1}]", Err("DecodeError".to_owned())),
        // A later JSON field of another shape, and a new one: drift, never a bad row.
        (
            "i.json",
            b"{\"a\":1}\n{\"a\":\"x\",\"b\":[1]}\n",
            Ok((2, 0)),
        ),
    ];
    for (name, body, want) in cases {
        let got = rows_and_bad(&s3, &c, &bucket, &format!("raw/path/{name}"), body).await;
        assert_eq!(got, want, "{name}");
    }
}

#[test]
fn every_value_of_one_column_is_a_row_never_lost() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let s3 = rt.block_on(TestS3::start());
    let bucket = rt.block_on(s3.bucket());
    let c = rt.block_on(converter(
        &s3,
        &[("INFER_ROWS", "10"), ("BATCH_ROWS", "64")],
    ));
    let counter = std::sync::atomic::AtomicU32::new(0);
    let values = proptest::collection::vec(
        "[0-9]{1,3}|[0-9]\\.[0-9]|x|2024-0[1-9]-1[0-9]|18446744073709551615|1e400|",
        1..80,
    );
    runner(24)
        .run(&values, |values| {
            let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            // One column whatever its values: every line is a row, widened as needed.
            let text = format!("v\n{}\n", values.join("\n"));
            let got = rt.block_on(rows_and_bad(
                &s3,
                &c,
                &bucket,
                &format!("raw/col{n}/v.csv"),
                text.as_bytes(),
            ));
            let blank = values.iter().filter(|v| v.is_empty()).count() as u64;
            prop_assert_eq!(got, Ok((values.len() as u64 - blank, 0)));
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
}
