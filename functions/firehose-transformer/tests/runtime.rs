//! The real `bootstrap` binary under a Lambda Runtime API emulator: every sample event in
//! `events/firehose-transformer/` gets the right answer; a payload of another shape answers
//! `InvalidEvent`; a bad configuration is an init error.

use std::time::Duration;

use serde_json::Value;
use tributary_testkit::runtime::{Answer, RuntimeApi};

const BIN: &str = env!("CARGO_BIN_EXE_firehose-transformer");

fn sample(name: &str) -> Value {
    let path = format!(
        "{}/../../events/firehose-transformer/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(&path).expect("sample")).expect("JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_answers_every_sample_event() {
    let api = RuntimeApi::start().await;
    let mut child = api.spawn(BIN, &[("PARTITION_TIMESTAMP_FIELD", "ts")]);
    for name in [
        "direct-put",
        "kinesis-source",
        "cloudwatch-logs",
        "bad-records",
    ] {
        let event = sample(name);
        let Answer::Response(resp) = api.invoke(event.clone()).await else {
            panic!("{name}: the invocation failed");
        };
        let ids = |v: &Value, f: &str| -> Vec<String> {
            v[f].as_array()
                .expect("records")
                .iter()
                .map(|r| r["recordId"].as_str().expect("id").to_owned())
                .collect()
        };
        assert_eq!(
            ids(&resp, "records"),
            ids(&event, "records"),
            "{name}: same ids, same order"
        );
        let results: Vec<&str> = resp["records"]
            .as_array()
            .expect("records")
            .iter()
            .map(|r| r["result"].as_str().expect("result"))
            .collect();
        if name == "bad-records" {
            // Bad base64, not JSON, an array, empty; then one good record.
            assert_eq!(
                results,
                [
                    "ProcessingFailed",
                    "ProcessingFailed",
                    "ProcessingFailed",
                    "ProcessingFailed",
                    "Ok"
                ]
            );
        } else {
            assert!(results.contains(&"Ok"), "{name}: {results:?}");
            assert!(
                results.iter().all(|r| *r == "Ok" || *r == "Dropped"),
                "{name}: {results:?}"
            );
            for r in resp["records"]
                .as_array()
                .expect("records")
                .iter()
                .filter(|r| r["result"] == "Ok")
            {
                assert!(
                    r["metadata"]["partitionKeys"]["year"].is_string(),
                    "{name}: {r}"
                );
            }
        }
    }
    child.kill().expect("stop the function");
    let _ = child.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_configuration_is_an_init_error_naming_the_variable() {
    let api = RuntimeApi::start().await;
    let mut child = api.spawn(BIN, &[("TRANSFORM", "{not json")]);
    let (kind, message) = api
        .init_error(Duration::from_secs(20))
        .await
        .expect("an init error");
    assert_eq!(kind, "ConfigError");
    assert!(message.contains("TRANSFORM"), "{message}");
    let status = child.wait().expect("the process exits");
    assert!(!status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payload_that_is_not_a_firehose_event_answers_invalid_event() {
    let api = RuntimeApi::start().await;
    let mut child = api.spawn(BIN, &[]);
    for payload in [
        Value::from("x"),
        serde_json::json!({"Records": [{"eventSource": "aws:s3"}]}),
    ] {
        let Answer::Error(kind, message) = api.invoke(payload.clone()).await else {
            panic!("{payload}: answered as if it were a Firehose event");
        };
        assert_eq!(kind, "InvalidEvent", "{payload}: {message}");
        assert!(message.contains("Kinesis Data Firehose"), "{message}");
    }
    // The function keeps serving.
    let Answer::Response(resp) = api.invoke(sample("direct-put")).await else {
        panic!("a Firehose event after an invalid one failed");
    };
    assert!(resp["records"].is_array());
    child.kill().expect("stop the function");
    let _ = child.wait();
}
