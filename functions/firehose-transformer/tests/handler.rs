//! The handler on the sample events of `events/firehose-transformer/`, the size guard, config
//! errors, wire compatibility with `aws_lambda_events`, and a property test over arbitrary bytes.

use std::io::Write;

use base64::Engine as _;
use chrono::{TimeZone, Utc};
use firehose_transformer::event::{
    FirehoseEvent, FirehoseRecord, FirehoseResponse, Invocation, RecordResult,
};
use firehose_transformer::{LAMBDA_RESPONSE_LIMIT, Processor, Stats};
use lambda_runtime::{Context, LambdaEvent};
use proptest::prelude::*;
use tributary::Env;

const DIRECT_PUT: &str = include_str!("../../../events/firehose-transformer/direct-put.json");
const KINESIS: &str = include_str!("../../../events/firehose-transformer/kinesis-source.json");
const CWL: &str = include_str!("../../../events/firehose-transformer/cloudwatch-logs.json");
const BAD: &str = include_str!("../../../events/firehose-transformer/bad-records.json");

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

fn processor(pairs: &[(&str, &str)]) -> Processor {
    Processor::from_env(&Env::from_pairs(pairs.iter().copied())).expect("valid config")
}

fn event(json: &str) -> FirehoseEvent {
    serde_json::from_str(json).expect("sample event")
}

async fn handle(p: &Processor, ev: FirehoseEvent) -> FirehoseResponse {
    let raw = p
        .handle(LambdaEvent::new(ev, Context::default()))
        .await
        .expect("a batch never fails");
    serde_json::from_str(raw.get()).expect("response JSON")
}

/// Processes in process; returns the parsed response, its encoded size and the counts.
fn process(p: &Processor, ev: &FirehoseEvent) -> (FirehoseResponse, usize, Stats) {
    let (json, stats) = p.process(ev, Utc::now());
    let resp = serde_json::from_str(&json).expect("response JSON");
    (resp, json.len(), stats)
}

fn decoded(resp: &FirehoseResponse, i: usize) -> String {
    String::from_utf8(B64.decode(&resp.records[i].data).expect("base64")).expect("utf8")
}

fn assert_same_ids(ev: &FirehoseEvent, resp: &FirehoseResponse) {
    let ids_in: Vec<&str> = ev.records.iter().map(|r| r.record_id.as_str()).collect();
    let ids_out: Vec<&str> = resp.records.iter().map(|r| r.record_id.as_str()).collect();
    assert_eq!(ids_in, ids_out);
}

#[tokio::test]
async fn direct_put_with_transform_and_partitioning() {
    let p = processor(&[
        (
            "TRANSFORM",
            r#"{"filter":[{"field":"status","op":"lt","value":500}],
                "rename":{"user_id":"user"},"drop":["debug"],"drop_nulls":true,
                "add":{"source":"firehose"},"add_arrival_time":"arrived_at"}"#,
        ),
        ("PARTITION_TIMESTAMP_FIELD", "ts"),
        ("PARTITION_FIELDS", "tenant"),
    ]);
    let ev = event(DIRECT_PUT);
    let resp = handle(&p, ev.clone()).await;
    assert_same_ids(&ev, &resp);
    let results: Vec<RecordResult> = resp.records.iter().map(|r| r.result).collect();
    assert_eq!(
        results,
        [RecordResult::Ok, RecordResult::Ok, RecordResult::Dropped]
    );
    assert_eq!(
        decoded(&resp, 0),
        concat!(
            // `user_id` renamed in place.
            r#"{"event_id":"e-1001","ts":"2024-03-07T05:06:07.123Z","user":"u-42","action":"view","#,
            r#""status":200,"page":{"path":"/home","ref":null},"source":"firehose","#,
            r#""arrived_at":"2024-03-07T05:06:08.000Z"}"#,
            "\n"
        )
    );
    let keys = &resp.records[0]
        .metadata
        .as_ref()
        .expect("partitioned")
        .partition_keys;
    assert_eq!(keys["year"], "2024");
    assert_eq!(keys["month"], "03");
    assert_eq!(keys["day"], "07");
    assert_eq!(keys["hour"], "05");
    assert_eq!(keys["tenant"], "__HIVE_DEFAULT_PARTITION__");
    let keys = &resp.records[1]
        .metadata
        .as_ref()
        .expect("partitioned")
        .partition_keys;
    assert_eq!(
        (keys["hour"].as_str(), keys["tenant"].as_str()),
        ("05", "acme")
    );
    assert_eq!(resp.records[2].data, "");
}

#[tokio::test]
async fn without_config_records_pass_unchanged_with_one_newline_and_no_metadata() {
    let p = processor(&[]);
    for sample in [DIRECT_PUT, KINESIS] {
        let ev = event(sample);
        let resp = handle(&p, ev.clone()).await;
        assert_same_ids(&ev, &resp);
        for (i, r) in resp.records.iter().enumerate() {
            assert_eq!(r.result, RecordResult::Ok);
            assert!(r.metadata.is_none());
            let input =
                String::from_utf8(B64.decode(&ev.records[i].data).expect("b64")).expect("utf8");
            let want: serde_json::Value = serde_json::from_str(&input).expect("json");
            let out = decoded(&resp, i);
            assert!(out.ends_with("}\n") && !out.ends_with("\n\n"), "{out:?}");
            assert_eq!(
                serde_json::from_str::<serde_json::Value>(&out).expect("json"),
                want
            );
        }
        let (json, _) = p.process(&ev, Utc::now());
        assert!(!json.contains("metadata"), "{json}");
    }
}

#[tokio::test]
async fn cloudwatch_logs_data_is_unpacked_and_control_is_dropped() {
    let p = processor(&[("PARTITION_TIMESTAMP_FIELD", "timestamp")]);
    let ev = event(CWL);
    let resp = handle(&p, ev.clone()).await;
    assert_same_ids(&ev, &resp);
    assert_eq!(resp.records[0].result, RecordResult::Ok);
    assert_eq!(resp.records[1].result, RecordResult::Dropped);
    let out = decoded(&resp, 0);
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["logGroup"], "/aws/lambda/orders");
    assert_eq!(
        lines[0]["message"],
        "START RequestId: 1f2e Version: $LATEST"
    );
    assert_eq!(
        lines[1]["message"]["level"], "ERROR",
        "JSON message embedded as object"
    );
    assert_eq!(lines[2]["timestamp"], 1_709_787_967_200i64);
    let keys = &resp.records[0]
        .metadata
        .as_ref()
        .expect("keys")
        .partition_keys;
    assert_eq!(keys["hour"], "05");
}

#[tokio::test]
async fn bad_records_fail_alone_and_the_good_one_passes() {
    let p = processor(&[]);
    let ev = event(BAD);
    let resp = handle(&p, ev.clone()).await;
    assert_same_ids(&ev, &resp);
    let results: Vec<(&str, RecordResult)> = resp
        .records
        .iter()
        .map(|r| (r.record_id.as_str(), r.result))
        .collect();
    assert_eq!(
        results,
        [
            ("bad-base64", RecordResult::ProcessingFailed),
            ("not-json", RecordResult::ProcessingFailed),
            ("json-array", RecordResult::ProcessingFailed),
            ("empty", RecordResult::ProcessingFailed),
            ("good", RecordResult::Ok),
        ]
    );
    // Invalid base64 is never echoed back (Firehose would reject it); valid originals are.
    assert_eq!(resp.records[0].data, "");
    assert_eq!(resp.records[1].data, ev.records[1].data);
}

#[tokio::test]
async fn gzip_json_records_are_decompressed() {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(br#"{"a": 1, "b": [1, 2]}"#).expect("gzip");
    let data = B64.encode(gz.finish().expect("gzip"));
    let ev = FirehoseEvent::new(vec![FirehoseRecord {
        record_id: "gz".into(),
        approximate_arrival_timestamp: None,
        data,
        kinesis_record_metadata: None,
    }]);
    let resp = handle(&processor(&[]), ev).await;
    assert_eq!(resp.records[0].result, RecordResult::Ok);
    assert_eq!(decoded(&resp, 0), "{\"a\":1,\"b\":[1,2]}\n");
}

fn record(i: usize, data: String) -> FirehoseRecord {
    FirehoseRecord {
        record_id: format!("rec-{i:05}"),
        approximate_arrival_timestamp: Some(1_709_787_967_000.0),
        data,
        kinesis_record_metadata: None,
    }
}

#[test]
fn the_response_never_exceeds_the_lambda_limit() {
    // Gzip records that expand: ~12 MB of output from a small request.
    let body = format!(r#"{{"ts":1709787967,"pad":"{}"}}"#, "x".repeat(3000));
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(body.as_bytes()).expect("gzip");
    let data = B64.encode(gz.finish().expect("gzip"));
    let records: Vec<FirehoseRecord> = (0..3000).map(|i| record(i, data.clone())).collect();
    let ev = FirehoseEvent::new(records);
    for workers in [1, 2, 3] {
        let p = processor(&[("PARTITION_TIMESTAMP_FIELD", "ts")]).with_workers(workers);
        check_guard(&ev, &p);
    }
}

fn check_guard(ev: &FirehoseEvent, p: &Processor) {
    let (resp, encoded, stats) = process(p, ev);
    assert!(encoded <= LAMBDA_RESPONSE_LIMIT, "{encoded} bytes");
    assert!(
        encoded > LAMBDA_RESPONSE_LIMIT - 8192,
        "the budget is used, not wasted"
    );
    assert_same_ids(ev, &resp);
    assert!(stats.oversize > 1000, "{stats:?}");
    assert_eq!(stats.ok + stats.oversize, 3000);
    assert_eq!(stats.failed, stats.oversize);
    // Records are accepted in order until the budget runs out.
    let first_failed = resp
        .records
        .iter()
        .position(|r| r.result == RecordResult::ProcessingFailed)
        .expect("some fail");
    assert!(
        resp.records[..first_failed]
            .iter()
            .all(|r| r.result == RecordResult::Ok)
    );
    assert!(
        resp.records[first_failed..]
            .iter()
            .all(|r| r.result == RecordResult::ProcessingFailed && r.data.is_empty())
    );
}

#[test]
fn a_smaller_configured_limit_is_honoured_exactly() {
    let records: Vec<FirehoseRecord> = (0..200)
        .map(|i| {
            record(
                i,
                B64.encode(format!(r#"{{"i":{i},"pad":"{}"}}"#, "y".repeat(i))),
            )
        })
        .collect();
    let ev = FirehoseEvent::new(records);
    for limit in [20_000usize, 25_000, 31_337] {
        let p = processor(&[("MAX_RESPONSE_BYTES", &limit.to_string())]);
        let (resp, n, _) = process(&p, &ev);
        assert!(n <= limit, "{n} > {limit}");
        assert_same_ids(&ev, &resp);
    }
}

#[test]
fn processing_and_arrival_times_are_rfc3339_utc() {
    let p = processor(&[(
        "TRANSFORM",
        r#"{"add_processing_time":"processed_at","add_arrival_time":"arrived_at"}"#,
    )]);
    let ev = event(DIRECT_PUT);
    let now = Utc
        .with_ymd_and_hms(2024, 5, 1, 12, 0, 0)
        .single()
        .expect("time");
    let (json, _) = p.process(&ev, now);
    let resp: FirehoseResponse = serde_json::from_str(&json).expect("json");
    let v: serde_json::Value = serde_json::from_str(&decoded(&resp, 0)).expect("json");
    assert_eq!(v["processed_at"], "2024-05-01T12:00:00.000Z");
    assert_eq!(v["arrived_at"], "2024-03-07T05:06:08.000Z");
}

#[test]
fn bad_configuration_names_the_variable() {
    for (var, value, want) in [
        ("TRANSFORM", "{\"drop\": 5}", "TRANSFORM"),
        ("PARTITION_FIELDS", "a,,b.", "PARTITION_FIELDS"),
        ("PARTITION_DEFAULT", "no/slashes", "PARTITION_DEFAULT"),
        ("MAX_RESPONSE_BYTES", "99999999", "MAX_RESPONSE_BYTES"),
    ] {
        let err = Processor::from_env(&Env::from_pairs([(var, value)]))
            .expect_err(var)
            .to_string();
        assert!(err.contains(want), "{var}: {err}");
    }
}

#[test]
fn wire_format_is_compatible_with_aws_lambda_events() {
    use aws_lambda_events::event::firehose::{KinesisFirehoseEvent, KinesisFirehoseResponse};
    for sample in [DIRECT_PUT, KINESIS, CWL] {
        let theirs: KinesisFirehoseEvent =
            serde_json::from_str(sample).expect("their type reads it");
        assert_eq!(theirs.records.len(), event(sample).records.len());
    }
    // Ours also reads metadata the crate's type rejects (a string subsequence number).
    let odd = KINESIS.replace(r#""subsequenceNumber": 0"#, r#""subsequenceNumber": """#);
    assert!(serde_json::from_str::<KinesisFirehoseEvent>(&odd).is_err());
    assert_eq!(event(&odd).records.len(), 2);
    // The crate's type rejects the whole batch over one bad record: why we decode per record.
    assert!(serde_json::from_str::<KinesisFirehoseEvent>(BAD).is_err());
    let p = processor(&[("PARTITION_FIELDS", "tenant")]);
    let (resp, _, _) = process(&p, &event(DIRECT_PUT));
    let theirs: KinesisFirehoseResponse =
        serde_json::from_slice(&serde_json::to_vec(&resp).expect("serialise")).expect("parse");
    assert_eq!(theirs.records.len(), resp.records.len());
    assert_eq!(theirs.records[1].metadata.partition_keys["tenant"], "acme");
    assert_eq!(theirs.records[0].result.as_deref(), Some("Ok"));
}

/// The handler on a payload the runtime reads as an [`Invocation`]: its error, if any.
async fn handle_payload(
    p: &Processor,
    payload: &str,
) -> Result<FirehoseResponse, tributary::Error> {
    let invocation: Invocation = serde_json::from_str(payload).expect("any JSON is an invocation");
    let raw = p
        .handle(LambdaEvent::new(invocation, Context::default()))
        .await?;
    Ok(serde_json::from_str(raw.get()).expect("response JSON"))
}

#[tokio::test]
async fn a_payload_that_is_not_a_firehose_event_is_an_invalid_event() {
    let p = processor(&[]);
    for (payload, what) in [
        (r#""x""#, "the payload is a string, not an object"),
        ("[1,2]", "the payload is an array"),
        ("42", "the payload is a number"),
        ("null", "the payload is null"),
        (r#"{"Records":[{"s3":{}}]}"#, "no `records` member"),
        (r#"{"records":"x"}"#, "`records` is a string, not an array"),
        (
            r#"{"records":[{"recordId":"1","data":""},7]}"#,
            "`records[1]` is a number",
        ),
        (
            r#"{"records":[{"data":"e30="}]}"#,
            "`records[0]`: no `recordId`",
        ),
        (
            r#"{"records":[{"recordId":1,"data":"e30="}]}"#,
            "`recordId` is a number",
        ),
        (
            r#"{"records":[{"recordId":"1","data":{}}]}"#,
            "`data` is an object",
        ),
        (r#"{"records":[],"region":5}"#, "`region` is a number"),
    ] {
        let err = handle_payload(&p, payload).await.expect_err(payload);
        assert_eq!(err.error_type(), "InvalidEvent", "{payload}: {err}");
        let text = err.to_string();
        assert!(text.contains(what), "{payload}: {text}");
        assert!(text.contains("Kinesis Data Firehose"), "{payload}: {text}");
    }
    // The shapes Firehose sends still read, unknown members ignored.
    let resp = handle_payload(
        &p,
        r#"{"records":[{"recordId":"1","data":"e30=","approximateArrivalTimestamp":null,"x":[{}]}],"y":{}}"#,
    )
    .await
    .expect("a Firehose event");
    assert_eq!(resp.records[0].result, RecordResult::Ok);
    // Reading the event type directly fails with the same reason.
    let err = serde_json::from_str::<FirehoseEvent>(r#""x""#).expect_err("not an event");
    assert!(err.to_string().contains("a string"), "{err}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_batch_keeps_ids_order_and_valid_results(
        payloads in prop::collection::vec(
            prop_oneof![
                prop::collection::vec(any::<u8>(), 0..200).prop_map(|b| B64.encode(b)),
                ".{0,60}",
                prop::collection::vec(any::<u8>(), 0..200).prop_map(|mut b| {
                    // gzip magic followed by junk
                    b.splice(0..0, [0x1f, 0x8b]);
                    B64.encode(b)
                }),
                "[a-z]{1,8}".prop_map(|k| B64.encode(format!(r#"{{"{k}":1,"ts":"2024-01-01T00:00:00Z"}}"#))),
            ],
            0..40,
        )
    ) {
        let p = processor(&[
            ("TRANSFORM", r#"{"filter":[{"field":"a","op":"ne","value":1}],"drop_nulls":true,"add":{"x":1}}"#),
            ("PARTITION_TIMESTAMP_FIELD", "ts"),
            ("PARTITION_FIELDS", "k"),
        ]);
        let records: Vec<FirehoseRecord> =
            payloads.into_iter().enumerate().map(|(i, d)| record(i, d)).collect();
        let ev = FirehoseEvent::new(records);
        let (resp, _, stats) = process(&p, &ev);
        prop_assert_eq!(resp.records.len(), ev.records.len());
        for (i, o) in ev.records.iter().zip(&resp.records) {
            prop_assert_eq!(&i.record_id, &o.record_id);
            prop_assert!(B64.decode(&o.data).is_ok());
            if o.result == RecordResult::Ok {
                let text = String::from_utf8(B64.decode(&o.data).unwrap()).unwrap();
                prop_assert!(text.ends_with('\n'));
                for line in text.lines() {
                    prop_assert!(serde_json::from_str::<serde_json::Value>(line).unwrap().is_object());
                }
            }
        }
        prop_assert_eq!(stats.ok + stats.dropped + stats.failed, stats.records_in);
    }
}

#[test]
fn splitting_a_batch_over_threads_changes_nothing() {
    let records: Vec<FirehoseRecord> = (0..2000)
        .map(|i| {
            let data = match i % 7 {
                0 => "%%% not base64".to_owned(),
                1 => B64.encode("not json"),
                _ => B64.encode(format!(
                    r#"{{"i":{i},"ts":{},"status":{}}}"#,
                    1_709_787_967 + i,
                    200 + i % 3
                )),
            };
            record(i, data)
        })
        .collect();
    let ev = FirehoseEvent::new(records);
    let pairs = [
        (
            "TRANSFORM",
            r#"{"filter":[{"field":"status","op":"ne","value":202}]}"#,
        ),
        ("PARTITION_TIMESTAMP_FIELD", "ts"),
    ];
    let now = Utc::now();
    let (one, s1) = processor(&pairs).with_workers(1).process(&ev, now);
    for workers in [2, 3, 8] {
        let (many, s) = processor(&pairs).with_workers(workers).process(&ev, now);
        assert_eq!(one, many, "{workers} workers");
        assert_eq!(s1, s);
    }
    assert!(s1.ok > 0 && s1.dropped > 0 && s1.failed > 0, "{s1:?}");
    let resp: FirehoseResponse = serde_json::from_str(&one).expect("json");
    assert_same_ids(&ev, &resp);
}

/// The raw handler (request body in, response body out: what the binary runs) answers
/// byte for byte what the handler on a deserialised event answers, with and without a
/// transform, for every sample event, records that need compacting and bad records; and
/// refuses what is not an event with the same error.
#[tokio::test]
async fn the_raw_handler_answers_exactly_what_the_handler_answers() {
    let spaced = FirehoseEvent::new(
        [
            &br#" { "a" : [1, 2], "b":"x  y" }  "#[..],
            br#"{"k\u00e9y":1,"n":null}"#,
            br#"{"a":1,"a":2}"#,
            b"{\"c\":{\"d\":\"e\"}}\n",
            b"{}",
            b"[1]",
            b"{\"a\":1",
            b"not json",
        ]
        .iter()
        .enumerate()
        .map(|(i, data)| FirehoseRecord {
            record_id: format!("r{i}"),
            approximate_arrival_timestamp: Some(1_709_787_967_000.0),
            data: B64.encode(data),
            kinesis_record_metadata: None,
        })
        .collect(),
    );
    let spaced = serde_json::to_string(&spaced).expect("event JSON");
    let configs: [&[(&str, &str)]; 3] = [
        &[],
        &[("TRANSFORM", r#"{"drop":["n"],"add":{"s":"f"}}"#)],
        &[
            ("PARTITION_TIMESTAMP_FIELD", "ts"),
            ("PARTITION_FIELDS", "a"),
        ],
    ];
    for config in configs {
        let p = processor(config);
        for body in [DIRECT_PUT, KINESIS, CWL, BAD, &spaced] {
            let want = p
                .handle(LambdaEvent::new(event(body), Context::default()))
                .await
                .expect("a batch never fails");
            let got = p.handle_raw(body.as_bytes(), "test").expect("a batch");
            assert_eq!(
                String::from_utf8(got).expect("utf8"),
                want.get(),
                "{config:?}"
            );
        }
        for payload in [
            r#"{"Records":[]}"#,
            "[]",
            r#"{"records":[{"data":"eA=="}]}"#,
        ] {
            let invocation: Invocation = serde_json::from_str(payload).expect("JSON");
            let want = p
                .handle(LambdaEvent::new(invocation, Context::default()))
                .await
                .expect_err("not an event");
            let got = p
                .handle_raw(payload.as_bytes(), "test")
                .expect_err("not an event");
            assert_eq!(got.to_string(), want.to_string());
            assert_eq!(got.error_type(), want.error_type());
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    /// Without a transform, every answer is what writing the parsed record gives (compact
    /// JSON and a newline, encoded afresh), whether the record took the copy path (its base64
    /// groups copied as text) or not: any length modulo 3, whitespace around or inside, a
    /// newline already there, escapes, bad JSON, non-canonical base64 padding bits.
    #[test]
    fn an_untransformed_record_answers_what_writing_it_gives(
        records in prop::collection::vec(
            (
                prop_oneof![
                    Just(String::new()), Just(" ".to_owned()), Just("\n".to_owned())
                ],
                prop::collection::vec(("[a-z]{0,4}", "[a-z \\\\\"é]{0,5}", 0u32..1000), 0..5),
                prop_oneof![Just(""), Just(""), Just(" "), Just("\n"), Just("x")],
                any::<bool>(),
                any::<bool>(),
            ),
            1..12,
        )
    ) {
        let ev = FirehoseEvent::new(
            records
                .iter()
                .enumerate()
                .map(|(i, (before, members, after, spaced, flip_padding))| {
                    let sep = if *spaced { ", " } else { "," };
                    let members: Vec<String> = members
                        .iter()
                        .map(|(k, v, n)| {
                            format!("{}:[{n},{}]", serde_json::json!(k), serde_json::json!(v))
                        })
                        .collect();
                    let text = format!("{before}{{{}}}{after}", members.join(sep));
                    let mut data = B64.encode(&text);
                    // A padded final group whose unused bits are set.
                    if *flip_padding && data.ends_with("==") {
                        let mut bytes = data.into_bytes();
                        let at = bytes.len() - 3;
                        bytes[at] = match bytes[at] { b'A' => b'B', b'Q' => b'R', b'g' => b'h', b'w' => b'x', c => c };
                        data = String::from_utf8(bytes).expect("ascii");
                    }
                    record(i, data)
                })
                .collect(),
        );
        let (resp, _, _) = process(&processor(&[]), &ev);
        for (input, output) in ev.records.iter().zip(&resp.records) {
            let want = B64
                .decode(&input.data)
                .ok()
                .and_then(|bytes| firehose_transformer::record::Fields::parse(&bytes).ok().map(|f| {
                    let mut line = Vec::new();
                    f.write_line(&mut line);
                    B64.encode(line)
                }));
            match want {
                Some(want) => {
                    prop_assert_eq!(output.result, RecordResult::Ok);
                    prop_assert_eq!(&output.data, &want);
                }
                None => prop_assert_eq!(output.result, RecordResult::ProcessingFailed),
            }
        }
    }
}
