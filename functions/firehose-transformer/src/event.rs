//! The Firehose data-transformation request and response, as they travel on the wire.
//!
//! Field-compatible with `aws_lambda_events`' `KinesisFirehoseEvent` and
//! `KinesisFirehoseResponse` (a test checks both directions), with two deliberate differences:
//!
//! * record `data` stays a base64 **string** until the record is processed, so one record with
//!   bad base64 becomes `ProcessingFailed` instead of failing the whole batch's deserialisation;
//! * `metadata` is left out of a response record when there are no partition keys, and
//!   `result` is a closed enum, spelled exactly as Firehose expects.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A batch of records from Firehose.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FirehoseEvent {
    /// Id of this invocation.
    #[serde(default)]
    pub invocation_id: Option<String>,
    /// ARN of the delivery stream.
    #[serde(default)]
    pub delivery_stream_arn: Option<String>,
    /// ARN of the source Kinesis stream, when there is one.
    #[serde(default)]
    pub source_kinesis_stream_arn: Option<String>,
    /// Region of the stream.
    #[serde(default)]
    pub region: Option<String>,
    /// The records, in order.
    pub records: Vec<FirehoseRecord>,
}

impl FirehoseEvent {
    /// A batch of `records` with no stream metadata (tests, tools, benchmarks).
    pub fn new(records: Vec<FirehoseRecord>) -> Self {
        FirehoseEvent {
            invocation_id: None,
            delivery_stream_arn: None,
            source_kinesis_stream_arn: None,
            region: None,
            records,
        }
    }
}

/// One input record.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FirehoseRecord {
    /// Id to echo back in the response.
    pub record_id: String,
    /// When Firehose received the record, epoch milliseconds.
    #[serde(default)]
    pub approximate_arrival_timestamp: Option<f64>,
    /// The payload, base64 (decoded by us, per record).
    #[serde(default)]
    pub data: String,
    /// Present when the source is a Kinesis data stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kinesis_record_metadata: Option<serde_json::Value>,
}

/// What happened to a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RecordResult {
    /// Transformed; deliver `data`.
    Ok,
    /// Intentionally discarded (filtered out, control message).
    Dropped,
    /// Could not be transformed; Firehose delivers the original to its error prefix.
    ProcessingFailed,
}

impl RecordResult {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            RecordResult::Ok => "Ok",
            RecordResult::Dropped => "Dropped",
            RecordResult::ProcessingFailed => "ProcessingFailed",
        }
    }
}

/// The answer to Firehose.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FirehoseResponse {
    /// One entry per input record, same ids, same order.
    pub records: Vec<ResponseRecord>,
}

/// One output record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResponseRecord {
    /// The input record's id.
    pub record_id: String,
    /// The outcome.
    pub result: RecordResult,
    /// The output payload, base64.
    pub data: String,
    /// Partition keys for dynamic partitioning, when configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<ResponseMetadata>,
}

/// Per-record metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResponseMetadata {
    /// Referenced in the delivery prefix as `!{partitionKeyFromLambda:<key>}`.
    pub partition_keys: BTreeMap<String, String>,
}

/// Length of `s` as a JSON string literal, quotes included.
pub fn json_string_len(s: &str) -> usize {
    if s.bytes()
        .all(|b| b >= 0x20 && b != b'"' && b != b'\\' && b != 0x7f)
    {
        return s.len() + 2;
    }
    serde_json::to_string(s)
        .map(|j| j.len())
        .unwrap_or(s.len() * 6 + 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_string_len_matches_serde() {
        for s in ["", "plain", "a\"b\\c\u{1}é", "tab\tnew\nline", "\u{7f}"] {
            assert_eq!(
                json_string_len(s),
                serde_json::to_string(s).expect("ser").len(),
                "{s:?}"
            );
        }
    }

    #[test]
    fn metadata_is_absent_without_partition_keys() {
        let r = ResponseRecord {
            record_id: "1".into(),
            result: RecordResult::Dropped,
            data: String::new(),
            metadata: None,
        };
        assert_eq!(
            serde_json::to_string(&r).expect("serialise"),
            r#"{"recordId":"1","result":"Dropped","data":""}"#
        );
    }
}
