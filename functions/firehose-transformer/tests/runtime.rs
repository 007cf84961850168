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

/// Set in the environment of this test binary when it runs as the function process of
/// [`a_panicking_handler_is_an_invocation_error_and_the_next_event_is_served`].
const PANICKING_FUNCTION: &str = "TRIBUTARY_TEST_PANICKING_FUNCTION";

/// The function process of the test below (this test binary run again under the emulator):
/// `serve_raw` with a handler that panics on the event `"panic now"` (while being called), on
/// `"panic later"` (while its future runs) and echoes every other event. Does nothing in an
/// ordinary test run.
#[test]
fn panicking_function_process() {
    if std::env::var_os(PANICKING_FUNCTION).is_none() {
        return;
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let served = runtime.block_on(tributary::runtime::serve_raw(
        async |_: &tributary::Env| Ok(()),
        |_, body: bytes::Bytes, _| {
            if body.as_ref() == br#""panic now""# {
                panic!("a bug while starting the invocation");
            }
            async move {
                if body.as_ref() == br#""panic later""# {
                    panic!("a bug in the middle of the invocation");
                }
                Ok(body.to_vec())
            }
        },
    ));
    panic!("the runtime loop ended: {served:?}");
}

/// Regression: `serve_raw` answered invocations without lambda_runtime's panic catching, so a
/// panic in the handler ended the process instead of being reported on `.../error` (and the
/// next invocation was never served).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_handler_is_an_invocation_error_and_the_next_event_is_served() {
    let api = RuntimeApi::start().await;
    let mut child = api
        .command(
            &std::env::current_exe()
                .expect("this test binary")
                .to_string_lossy(),
        )
        .args(["--exact", "panicking_function_process", "--nocapture"])
        .env(PANICKING_FUNCTION, "1")
        .env("RUST_LOG", "warn")
        .spawn()
        .expect("start the function process");
    for (event, message) in [
        ("panic now", "a bug while starting the invocation"),
        ("panic later", "a bug in the middle of the invocation"),
    ] {
        let answer = tokio::time::timeout(Duration::from_secs(20), api.invoke(Value::from(event)))
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "no answer to {event:?}: the function process {}",
                    match child.try_wait() {
                        Ok(Some(status)) => format!("ended ({status})"),
                        _ => "is still running".to_owned(),
                    }
                )
            });
        let Answer::Error(kind, text) = answer else {
            panic!("{event:?}: answered {answer:?}, not an invocation error");
        };
        assert_eq!(kind, "InternalError", "{event:?}: {text}");
        assert!(
            text.contains("panicked") && text.contains(message),
            "{event:?}: {text}"
        );
    }
    // The process lives on and serves the next event.
    let answer = tokio::time::timeout(Duration::from_secs(20), api.invoke(Value::from("fine")))
        .await
        .expect("an answer after the panics");
    assert_eq!(answer, Answer::Response(Value::from("fine")));
    child.kill().expect("stop the function");
    let _ = child.wait();
}
