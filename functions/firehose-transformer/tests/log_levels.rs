//! The real binary at `AWS_LAMBDA_LOG_LEVEL=WARN` with JSON logs: its EMF line survives
//! Lambda's log-level filter and every JSON line it writes carries a level and a timestamp.

use serde_json::Value;
use tributary_testkit::logs::{Logged, assert_metrics_survive};
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
async fn metrics_survive_lambda_log_level_warn() {
    for level in ["WARN", "ERROR"] {
        let api = RuntimeApi::start().await;
        let run = Logged::spawn(&api, BIN, level, &[("PARTITION_TIMESTAMP_FIELD", "ts")]);
        for name in ["direct-put", "bad-records"] {
            let Answer::Response(_) = api.invoke(sample(name)).await else {
                panic!("{name}: the invocation failed");
            };
        }
        let lines = run.stop();
        let emf = assert_metrics_survive(&lines, level, "firehose-transformer");
        assert_eq!(emf.len(), 2, "one EMF line per invocation at {level}");
        assert!(emf.iter().any(|d| d["RecordsFailed"] == 4.0), "{emf:?}");
    }
}
