//! Property test of the request an outsider sends: any JSON payload, with fields of the
//! request's names and values of any shape, pointed at sources the guard must refuse. It is
//! answered with an error naming what was wrong, never a panic, and no byte reaches S3 (no
//! object, no open upload). `PROPTEST_CASES=5000 cargo test -p url-ingester --test fuzz` is a
//! longer run.

use lambda_runtime::{Context, LambdaEvent};
use proptest::prelude::*;
use proptest::test_runner::{Config as RunnerConfig, RngSeed, TestRunner};
use serde_json::{Value, json};
use tributary::Env;
use tributary_testkit::TestS3;

mod common;

fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// URLs the guard refuses before connecting (no name to resolve, so no network is used).
fn url() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!("http://127.0.0.1:1/x")),
        Just(json!("http://169.254.169.254/latest/meta-data/")),
        Just(json!("https://10.0.0.1/a.csv")),
        Just(json!("http://[::1]/")),
        Just(json!("http://[::ffff:7f00:1]/")),
        Just(json!("http://0x7f.1/")),
        Just(json!("ftp://198.51.100.1/f")),
        Just(json!("http://user:pw@127.0.0.1/")),
        Just(json!("not a url")),
        "[a-z:/.%@\\[\\]0-9]{0,30}".prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        Just(Value::Null),
    ]
}

fn any_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        ".{0,20}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Value::from),
            prop::collection::btree_map("[a-zA-Z-]{1,8}", inner, 0..3)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn request() -> impl Strategy<Value = Value> {
    let field = prop_oneof![
        Just("bucket"),
        Just("key"),
        Just("part_size_mib"),
        Just("concurrency"),
        Just("expected_sha256"),
        Just("expected_size"),
        Just("content_type"),
        Just("headers"),
        Just("forward_headers_on_redirect"),
        Just("if_none_match"),
        Just("resume"),
        Just("unknown_field"),
    ];
    (url(), prop::collection::vec((field, any_value()), 0..5)).prop_map(|(url, fields)| {
        let mut o = serde_json::Map::new();
        if !url.is_null() {
            o.insert("url".into(), url);
        }
        for (k, v) in fields {
            o.insert(k.into(), v);
        }
        Value::Object(o)
    })
}

#[test]
fn any_request_to_a_refused_source_is_an_error_and_moves_no_byte() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let s3 = rt.block_on(TestS3::start());
    let bucket = rt.block_on(s3.bucket());
    let env = Env::from_pairs([
        ("DEFAULT_BUCKET", bucket.as_str()),
        ("CONNECT_TIMEOUT_SECS", "2"),
    ]);
    let ing = rt.block_on(async { common::ingester_for(&env, common::s3_client(&s3).await) });
    let mut runner = TestRunner::new(RunnerConfig {
        cases: cases(96),
        rng_seed: RngSeed::Fixed(20261201),
        failure_persistence: None,
        ..RunnerConfig::default()
    });
    runner
        .run(&request(), |payload| {
            rt.block_on(async {
                let out = ing
                    .handle(LambdaEvent::new(payload.clone(), Context::default()))
                    .await;
                let err = match out {
                    Ok(v) => return Err(TestCaseError::fail(format!("{payload} answered {v:?}"))),
                    Err(e) => e,
                };
                prop_assert!(!err.to_string().is_empty());
                prop_assert!(
                    s3.keys(&bucket, "").await.is_empty(),
                    "{payload}: an object was stored"
                );
                prop_assert!(
                    s3.open_uploads(&bucket).await.is_empty(),
                    "{payload}: upload left"
                );
                Ok(())
            })
        })
        .unwrap_or_else(|e| panic!("{e}"));
}
