//! Property tests of what an outsider reaches: any JSON payload through the event reader
//! (an event or an `InvalidEvent`, never a panic), and gzip-compressed CloudWatch Logs
//! messages of any shape (every record answered once; each log event becomes one line or
//! the record fails alone). `PROPTEST_CASES=100000 cargo test -p firehose-transformer --test
//! fuzz` is a longer run.

use std::io::Write;

use base64::Engine as _;
use chrono::Utc;
use firehose_transformer::Processor;
use firehose_transformer::event::{FirehoseEvent, FirehoseRecord, Invocation, RecordResult};
use lambda_runtime::{Context, LambdaEvent};
use proptest::prelude::*;
use tributary::Env;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Any JSON value, biased towards the shapes a Firehose event has.
fn json() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        "[a-zA-Z0-9+/=]{0,12}".prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
            prop::collection::vec(
                (
                    prop_oneof![
                        Just("records".to_owned()),
                        Just("recordId".to_owned()),
                        Just("data".to_owned()),
                        Just("approximateArrivalTimestamp".to_owned()),
                        Just("invocationId".to_owned()),
                        "[a-z]{1,6}",
                    ],
                    inner
                ),
                0..5
            )
            .prop_map(|kv| serde_json::Value::Object(kv.into_iter().collect())),
        ]
    })
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).expect("gzip");
    e.finish().expect("gzip")
}

fn record(i: usize, data: Vec<u8>) -> FirehoseRecord {
    serde_json::from_value(serde_json::json!({
        "recordId": format!("r{i}"),
        "approximateArrivalTimestamp": 1_709_787_967_000i64,
        "data": B64.encode(data),
    }))
    .expect("record")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(512), ..ProptestConfig::default() })]

    #[test]
    fn any_payload_is_an_event_or_an_invalid_event(payload in json()) {
        let text = payload.to_string();
        let invocation: Invocation = serde_json::from_str(&text).expect("any JSON is read");
        let p = Processor::from_env(&Env::default()).expect("defaults");
        let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
        match rt.block_on(p.handle(LambdaEvent::new(invocation, Context::default()))) {
            Ok(raw) => {
                let ev: FirehoseEvent = serde_json::from_str(&text).expect("it was an event");
                let resp: serde_json::Value = serde_json::from_str(raw.get()).expect("response");
                prop_assert_eq!(resp["records"].as_array().map(Vec::len), Some(ev.records.len()));
            }
            Err(e) => {
                prop_assert_eq!(e.error_type(), "InvalidEvent", "{}", e);
                prop_assert!(serde_json::from_str::<FirehoseEvent>(&text).is_err());
            }
        }
    }

    #[test]
    fn cloudwatch_logs_messages_of_any_shape_are_answered_once(
        messages in prop::collection::vec(
            prop_oneof![
                // DATA_MESSAGE with log events of any text.
                prop::collection::vec(".{0,40}", 0..6).prop_map(|events| {
                    let events: Vec<_> = events.iter().enumerate()
                        .map(|(i, m)| serde_json::json!({"id": i.to_string(), "timestamp": 1_709_787_967_000i64 + i as i64, "message": m}))
                        .collect();
                    serde_json::json!({"messageType": "DATA_MESSAGE", "owner": "1", "logGroup": "/g",
                        "logStream": "s", "subscriptionFilters": ["f"], "logEvents": events}).to_string().into_bytes()
                }),
                Just(br#"{"messageType":"CONTROL_MESSAGE","logEvents":[]}"#.to_vec()),
                json().prop_map(|v| v.to_string().into_bytes()),
                prop::collection::vec(any::<u8>(), 0..80),
            ].prop_map(|m| gzip(&m)),
            1..20,
        )
    ) {
        let p = Processor::from_env(&Env::default()).expect("defaults");
        let records: Vec<FirehoseRecord> =
            messages.into_iter().enumerate().map(|(i, d)| record(i, d)).collect();
        let n = records.len();
        let ev = FirehoseEvent::new(records);
        let (json, stats) = p.process(&ev, Utc::now());
        let resp: firehose_transformer::event::FirehoseResponse =
            serde_json::from_str(&json).expect("response");
        prop_assert_eq!(resp.records.len(), n);
        for (i, o) in resp.records.iter().enumerate() {
            prop_assert_eq!(&o.record_id, &format!("r{i}"));
            if o.result == RecordResult::Ok {
                let text = String::from_utf8(B64.decode(&o.data).expect("base64")).expect("utf8");
                for line in text.lines() {
                    prop_assert!(serde_json::from_str::<serde_json::Value>(line).is_ok(), "{}", line);
                }
            }
        }
        prop_assert_eq!(stats.ok + stats.dropped + stats.failed, stats.records_in);
    }
}
