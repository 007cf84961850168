//! Event records that cannot be read fail like failed objects: the invocation fails (S3,
//! EventBridge) or reports the message in `batchItemFailures` (SQS), after every readable
//! record was converted. Only records that are not object creations are skipped.

use lambda_runtime::{Context, LambdaEvent};
use serde_json::{Value, json};
use tributary_testkit::TestS3;

mod common;
use common::{converter, s3_event};
use parquet_converter::Outcome;

/// An S3 notification with one record per (key as S3 sends it, already form-encoded).
fn notification(bucket: &str, raw_keys: &[&str]) -> Value {
    let mut records = Vec::new();
    for raw in raw_keys {
        let mut one = s3_event(bucket, "placeholder", 8, "e");
        one["Records"][0]["s3"]["object"]["key"] = Value::from(*raw);
        one["Records"][0]["s3"]["object"]
            .as_object_mut()
            .map(|o| o.remove("eTag"));
        records.push(one["Records"][0].clone());
    }
    json!({ "Records": records })
}

fn sqs_message(id: &str, body: &str) -> Value {
    json!({
        "messageId": id,
        "receiptHandle": format!("handle-{id}"),
        "body": body,
        "attributes": {},
        "messageAttributes": {},
        "md5OfBody": "0",
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:tributary-convert",
        "awsRegion": "us-east-1"
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecodable_key_fails_the_invocation_after_the_other_records() {
    let s3 = TestS3::start().await;
    let bucket = s3.bucket().await;
    let c = converter(&s3, &[]).await;
    s3.put(&bucket, "raw/keys/good.csv", b"a,b\n1,2\n".to_vec())
        .await;
    let event = notification(&bucket, &["raw/keys/bad%ZZname.csv", "raw/keys/good.csv"]);
    let err = c
        .handle(LambdaEvent::new(event, Context::default()))
        .await
        .expect_err("an unreadable key fails the invocation");
    assert_eq!(err.error_type(), "InvalidObjectKey", "{err}");
    let text = err.to_string();
    assert!(text.contains("bad%ZZname.csv"), "{text}");
    assert!(text.contains("1 of 2"), "{text}");
    // The readable record was converted all the same.
    let out = s3.keys(&bucket, "processed/keys/").await;
    assert!(out.iter().any(|k| k.ends_with(".parquet")), "{out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqs_messages_that_cannot_be_read_are_reported_not_deleted() {
    let s3 = TestS3::start().await;
    let bucket = s3.bucket().await;
    let c = converter(&s3, &[]).await;
    s3.put(&bucket, "raw/q/good.csv", b"a,b\n1,2\n".to_vec())
        .await;
    let good = notification(&bucket, &["raw/q/good.csv"]).to_string();
    let bad_key = notification(&bucket, &["raw/q/bad%ZZname.csv"]).to_string();
    let test_event =
        json!({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": bucket}).to_string();
    let mut delete = notification(&bucket, &["raw/q/gone.csv"]);
    delete["Records"][0]["eventName"] = Value::from("ObjectRemoved:Delete");
    let event = json!({"Records": [
        sqs_message("m1-good", &good),
        sqs_message("m2-bad-key", &bad_key),
        sqs_message("m3-not-json", "this is not JSON"),
        sqs_message("m4-not-s3", r#"{"hello": "world"}"#),
        sqs_message("m5-test-event", &test_event),
        sqs_message("m6-delete", &delete.to_string()),
    ]});
    let out = c
        .handle(LambdaEvent::new(event, Context::default()))
        .await
        .expect("an SQS batch answers with its failures");
    assert_eq!(
        out.failed_messages(),
        ["m2-bad-key", "m3-not-json", "m4-not-s3"],
        "{out}"
    );
    let statuses: Vec<&str> = out.results.iter().map(Outcome::status).collect();
    assert_eq!(
        statuses,
        [
            "converted",
            "failed",
            "failed",
            "failed",
            "skipped",
            "skipped"
        ],
        "{out}"
    );
    let Outcome::Failed {
        error_type, object, ..
    } = &out.results[1]
    else {
        panic!("the bad key fails: {out}");
    };
    assert_eq!(error_type, "InvalidObjectKey", "{out}");
    assert!(object.contains("bad%ZZname.csv"), "{out}");
    assert!(
        matches!(&out.results[2], Outcome::Failed { error_type, .. } if error_type == "InvalidInput"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_created_record_without_a_key_fails() {
    let s3 = TestS3::start().await;
    let bucket = s3.bucket().await;
    let c = converter(&s3, &[]).await;
    let mut event = notification(&bucket, &["raw/x/a.csv"]);
    event["Records"][0]["s3"]["object"]
        .as_object_mut()
        .map(|o| o.remove("key"));
    let err = c
        .handle(LambdaEvent::new(event, Context::default()))
        .await
        .expect_err("a record naming no object is not acknowledged");
    assert_eq!(err.error_type(), "InvalidInput", "{err}");
    assert!(err.to_string().contains("Records[0]"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dataset_names_that_collide_or_hide_are_refused() {
    let s3 = TestS3::start().await;
    let bucket = s3.bucket().await;
    let c = converter(&s3, &[]).await;
    for (key, why) in [
        ("raw/_manifests/f.csv", "starts with '_'"),
        ("raw//f.csv", "empty dataset"),
        ("raw/.hidden/f.csv", "starts with '_' or '.'"),
    ] {
        let err = c
            .handle(LambdaEvent::new(
                s3_event(&bucket, key, 8, "e"),
                Context::default(),
            ))
            .await
            .expect_err(key);
        assert_eq!(err.error_type(), "InvalidObjectKey", "{key}: {err}");
        assert!(err.to_string().contains(why), "{key}: {err}");
    }
    assert!(s3.keys(&bucket, "processed/").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payload_that_is_no_event_is_an_invalid_event() {
    let s3 = TestS3::start().await;
    let c = converter(&s3, &[]).await;
    for payload in [json!("x"), json!({"hello": 1}), json!([1, 2]), Value::Null] {
        let err = c
            .handle(LambdaEvent::new(payload.clone(), Context::default()))
            .await
            .expect_err("not an event");
        assert_eq!(err.error_type(), "InvalidEvent", "{payload}: {err}");
        assert!(err.to_string().contains("S3 notification"), "{err}");
    }
}

/// Any JSON value, biased towards the members the three event shapes have.
fn event_json() -> impl proptest::strategy::Strategy<Value = Value> {
    use proptest::prelude::*;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        prop_oneof![
            Just("aws:sqs".to_owned()),
            Just("ObjectCreated:Put".to_owned()),
            Just("Object Created".to_owned()),
            Just("raw/x/a%ZZ.csv".to_owned()),
            Just("s3:TestEvent".to_owned()),
            "[a-z/%+.]{0,12}",
        ]
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(5, 40, 5, |inner| {
        let key = prop_oneof![
            Just("Records"),
            Just("eventSource"),
            Just("eventName"),
            Just("s3"),
            Just("bucket"),
            Just("object"),
            Just("name"),
            Just("key"),
            Just("body"),
            Just("messageId"),
            Just("detail"),
            Just("detail-type"),
            Just("Event"),
        ];
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            proptest::collection::vec((key, inner), 0..5).prop_map(|kv| {
                Value::Object(kv.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
            }),
        ]
    })
}

#[test]
fn any_payload_is_answered_with_results_or_a_named_error() {
    use proptest::test_runner::{Config, RngSeed, TestRunner};
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let s3 = rt.block_on(TestS3::start());
    let c = rt.block_on(converter(&s3, &[]));
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    let mut runner = TestRunner::new(Config {
        cases,
        rng_seed: RngSeed::Fixed(20261201),
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&event_json(), |payload| {
            // No bucket exists by these names: whatever converts must fail as S3 would say.
            match rt.block_on(c.handle(LambdaEvent::new(payload.clone(), Context::default()))) {
                Ok(v) => {
                    // An SQS batch reports every failed message; other shapes fail instead.
                    let failed = v.results.iter().filter(|r| r.status() == "failed").count();
                    let reported = v.failed_messages().len();
                    proptest::prop_assert!(failed == 0 || reported > 0, "{}: {}", payload, v);
                }
                Err(e) => proptest::prop_assert!(!e.to_string().is_empty()),
            }
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_named_item_and_a_batch_of_listing_entries_convert_like_notifications() {
    let s3 = TestS3::start().await;
    let bucket = s3.bucket().await;
    let c = converter(&s3, &[]).await;
    // A key as stored, never URL-encoded: a space and a plus stay what they are.
    let keys = [
        "raw/items/a b+c.csv",
        "raw/items/two.csv",
        "raw/items/three.csv",
    ];
    let mut etags = Vec::new();
    for k in keys {
        etags.push(s3.put(&bucket, k, b"a,b\n1,2\n3,4\n".to_vec()).await);
    }
    let one = json!({"bucket": bucket, "key": keys[0]});
    let out = c
        .handle(LambdaEvent::new(one.clone(), Context::default()))
        .await
        .expect("a named item converts");
    assert_eq!(out.results.len(), 1, "{out}");
    assert!(
        matches!(&out.results[0], Outcome::Converted(s) if s.rows == 2 && s.source.ends_with("a b+c.csv")),
        "{out}"
    );
    assert!(out.batch_item_failures.is_none(), "{out}");
    // A batch as a map with a batcher sends it: listing entries (ETag quoted, as S3 lists
    // it), the bucket once; a folder marker among them is skipped.
    let batch = json!({
        "BatchInput": {"bucket": bucket},
        "Items": [
            {"Key": keys[1], "Etag": format!("\"{}\"", etags[1].clone().unwrap_or_default()), "Size": 12, "StorageClass": "STANDARD"},
            {"key": keys[2]},
            {"Key": "raw/items/"},
        ]
    });
    let out = c
        .handle(LambdaEvent::new(batch, Context::default()))
        .await
        .expect("a batch converts");
    let statuses: Vec<&str> = out.results.iter().map(Outcome::status).collect();
    assert_eq!(statuses, ["converted", "converted", "skipped"], "{out}");
    let converted = s3.keys(&bucket, "processed/items/").await;
    assert_eq!(
        converted.iter().filter(|k| k.ends_with(".parquet")).count(),
        3,
        "{converted:?}"
    );
    // An item that names no object fails as bad input, never as a skip.
    let err = c
        .handle(LambdaEvent::new(json!({"key": ""}), Context::default()))
        .await
        .expect_err("an empty item fails");
    assert_eq!(err.error_type(), "InvalidInput", "{err}");
    // Converting the same item again is an overwrite of the same keys, not a second copy.
    let before = s3.keys(&bucket, "processed/items/").await;
    c.handle(LambdaEvent::new(one, Context::default()))
        .await
        .expect("again");
    assert_eq!(s3.keys(&bucket, "processed/items/").await, before);
}
