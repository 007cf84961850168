//! The Firehose data-transformation request and response, as they travel on the wire.
//!
//! Field-compatible with `aws_lambda_events`' `KinesisFirehoseEvent` and
//! `KinesisFirehoseResponse` (a test checks both directions), with two deliberate differences:
//!
//! * record `data` stays a base64 **string** until the record is processed, so one record with
//!   bad base64 becomes `ProcessingFailed` instead of failing the whole batch's deserialisation;
//! * `metadata` is left out of a response record when there are no partition keys, and
//!   `result` is a closed enum, spelled exactly as Firehose expects.
//!
//! A payload that is not a Firehose event (another trigger's event, a bare string) is an
//! [`Invocation`] that knows why, in one pass over the request: the handler answers it with
//! the `InvalidEvent` error naming what was expected, never the runtime's deserialisation
//! error. A request of the shape Firehose sends is read by a scanner of its own ([`scan`]);
//! anything else by serde, which decides what a refusal says.

mod scan;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::value::RawValue;

/// What this function takes, for [`tributary::Error::InvalidEvent`].
pub const EXPECTED_EVENT: &str = "a Kinesis Data Firehose data-transformation event: an object \
    with `records`, an array of objects each with a string `recordId` and base64 `data`";

/// A batch of records from Firehose.
///
/// Deserialising one fails with the reason an [`Invocation`] gives.
#[derive(Debug, Clone, Serialize)]
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
#[derive(Debug, Clone, Serialize)]
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

/// A batch as read from the request body: strings borrowed from it (JSON strings without
/// escapes, which every base64 `data` is), so reading a 6 MB request copies none of its
/// records. [`FirehoseEvent`] is the same, owned.
#[derive(Debug, Clone, Default)]
pub struct EventRef<'a> {
    /// Id of this invocation.
    pub invocation_id: Option<Cow<'a, str>>,
    /// ARN of the delivery stream.
    pub delivery_stream_arn: Option<Cow<'a, str>>,
    /// ARN of the source Kinesis stream, when there is one.
    pub source_kinesis_stream_arn: Option<Cow<'a, str>>,
    /// Region of the stream.
    pub region: Option<Cow<'a, str>>,
    /// The records, in order.
    pub records: Vec<RecordRef<'a>>,
}

/// One input record, its strings borrowed from the request where they hold no escapes.
#[derive(Debug, Clone)]
pub struct RecordRef<'a> {
    /// Id to echo back in the response.
    pub record_id: Cow<'a, str>,
    /// When Firehose received the record, epoch milliseconds.
    pub approximate_arrival_timestamp: Option<f64>,
    /// The payload, base64.
    pub data: Cow<'a, str>,
    /// Present when the source is a Kinesis data stream (kept as text: nothing reads it).
    pub kinesis_record_metadata: Option<Box<RawValue>>,
}

impl<'a> EventRef<'a> {
    /// Reads a request body: the event, or why it is not one (the reason an [`Invocation`]
    /// gives; a body that is not JSON at all says so).
    pub fn parse(body: &'a [u8]) -> Result<EventRef<'a>, String> {
        if let Some(event) = scan::parse(body) {
            return Ok(event);
        }
        Self::parse_with_serde(body)
    }

    /// [`EventRef::parse`] by serde alone (what the request scanner must agree with).
    pub fn parse_with_serde(body: &'a [u8]) -> Result<EventRef<'a>, String> {
        let mut de = serde_json::Deserializer::from_slice(body);
        let shaped = Shaped::<EventRef<'a>>::deserialize(&mut de)
            .and_then(|s| de.end().map(|()| s))
            .map_err(|e| format!("the payload is not JSON: {e}"))?;
        match shaped.0 {
            Ok(event) => Ok(event),
            Err(Bad::Shape(shape)) => Err(format!("the payload is {shape}, not an object")),
            Err(Bad::Content(reason)) => Err(reason),
        }
    }

    /// Borrows an owned event.
    pub fn of(event: &'a FirehoseEvent) -> EventRef<'a> {
        let text = |s: &'a Option<String>| s.as_deref().map(Cow::Borrowed);
        EventRef {
            invocation_id: text(&event.invocation_id),
            delivery_stream_arn: text(&event.delivery_stream_arn),
            source_kinesis_stream_arn: text(&event.source_kinesis_stream_arn),
            region: text(&event.region),
            records: event
                .records
                .iter()
                .map(|r| RecordRef {
                    record_id: Cow::Borrowed(&r.record_id),
                    approximate_arrival_timestamp: r.approximate_arrival_timestamp,
                    data: Cow::Borrowed(&r.data),
                    kinesis_record_metadata: None,
                })
                .collect(),
        }
    }

    fn into_owned(self) -> FirehoseEvent {
        let text = |s: Option<Cow<'a, str>>| s.map(Cow::into_owned);
        FirehoseEvent {
            invocation_id: text(self.invocation_id),
            delivery_stream_arn: text(self.delivery_stream_arn),
            source_kinesis_stream_arn: text(self.source_kinesis_stream_arn),
            region: text(self.region),
            records: self
                .records
                .into_iter()
                .map(RecordRef::into_owned)
                .collect(),
        }
    }
}

impl RecordRef<'_> {
    fn into_owned(self) -> FirehoseRecord {
        FirehoseRecord {
            record_id: self.record_id.into_owned(),
            approximate_arrival_timestamp: self.approximate_arrival_timestamp,
            data: self.data.into_owned(),
            kinesis_record_metadata: self
                .kinesis_record_metadata
                .and_then(|raw| serde_json::from_str(raw.get()).ok()),
        }
    }
}

/// The payload of one invocation: a Firehose event, or why it is not one.
#[derive(Debug, Clone)]
pub struct Invocation(Result<FirehoseEvent, String>);

impl Invocation {
    /// The event, or [`tributary::Error::InvalidEvent`] saying what the payload is instead.
    pub fn into_event(self) -> tributary::Result<FirehoseEvent> {
        self.0
            .map_err(|reason| tributary::Error::invalid_event(EXPECTED_EVENT, reason))
    }
}

impl From<FirehoseEvent> for Invocation {
    fn from(event: FirehoseEvent) -> Self {
        Invocation(Ok(event))
    }
}

impl<'de> Deserialize<'de> for Invocation {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Invocation(
            match Shaped::<EventRef<'de>>::deserialize(d)?.0 {
                Ok(event) => Ok(event.into_owned()),
                Err(Bad::Shape(shape)) => Err(format!("the payload is {shape}, not an object")),
                Err(Bad::Content(reason)) => Err(reason),
            },
        ))
    }
}

impl<'de> Deserialize<'de> for FirehoseEvent {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Invocation::deserialize(d)?.0.map_err(de::Error::custom)
    }
}

impl<'de> Deserialize<'de> for FirehoseRecord {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Shaped::<RecordRef<'de>>::deserialize(d)?.0 {
            Ok(record) => Ok(record.into_owned()),
            Err(Bad::Shape(shape)) => Err(de::Error::custom(format!(
                "a record is {shape}, not an object"
            ))),
            Err(Bad::Content(reason)) => Err(de::Error::custom(reason)),
        }
    }
}

/// Why a value is not what was expected.
#[derive(Debug)]
enum Bad {
    /// It is another JSON type (named with its article: "a string").
    Shape(&'static str),
    /// It has the right type but its content is wrong (the reason names the field).
    Content(String),
}

/// A value read whatever its JSON type: `T` when the type is right, else why not. Every other
/// value is consumed and named, so reading goes on and the reason can be reported.
struct Shaped<T>(Result<T, Bad>);

/// How a [`Shaped`] type reads the container it expects; the other one is consumed.
trait Expect<'de>: Sized {
    /// Reads an object.
    fn object<A: MapAccess<'de>>(mut map: A) -> Result<Result<Self, Bad>, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Err(Bad::Shape("an object")))
    }

    /// Reads an array.
    fn array<A: SeqAccess<'de>>(mut seq: A) -> Result<Result<Self, Bad>, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Err(Bad::Shape("an array")))
    }
}

impl<'de, T: Expect<'de>> Deserialize<'de> for Shaped<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: Expect<'de>> Visitor<'de> for V<T> {
            type Value = Shaped<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                T::object(map).map(Shaped)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                T::array(seq).map(Shaped)
            }
            fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
                Ok(Shaped(Err(Bad::Shape("a boolean"))))
            }
            fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
                Ok(Shaped(Err(Bad::Shape("a number"))))
            }
            fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
                Ok(Shaped(Err(Bad::Shape("a number"))))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
                Ok(Shaped(Err(Bad::Shape("a number"))))
            }
            fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
                Ok(Shaped(Err(Bad::Shape("a string"))))
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(Shaped(Err(Bad::Shape("null"))))
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

/// A scalar field's value, kept when it is a string (borrowed when it can be) or a number.
enum Scalar<'de> {
    Text(Cow<'de, str>),
    Number(f64),
    Null,
    Other(&'static str),
}

impl Scalar<'_> {
    fn shape(&self) -> &'static str {
        match self {
            Scalar::Text(_) => "a string",
            Scalar::Number(_) => "a number",
            Scalar::Null => "null",
            Scalar::Other(shape) => shape,
        }
    }
}

impl<'de> Deserialize<'de> for Scalar<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Scalar<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Scalar<'de>, E> {
                Ok(Scalar::Text(Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> Result<Scalar<'de>, E> {
                Ok(Scalar::Text(Cow::Owned(s.to_owned())))
            }
            fn visit_string<E>(self, s: String) -> Result<Scalar<'de>, E> {
                Ok(Scalar::Text(Cow::Owned(s)))
            }
            fn visit_i64<E>(self, n: i64) -> Result<Scalar<'de>, E> {
                Ok(Scalar::Number(n as f64))
            }
            fn visit_u64<E>(self, n: u64) -> Result<Scalar<'de>, E> {
                Ok(Scalar::Number(n as f64))
            }
            fn visit_f64<E>(self, n: f64) -> Result<Scalar<'de>, E> {
                Ok(Scalar::Number(n))
            }
            fn visit_unit<E>(self) -> Result<Scalar<'de>, E> {
                Ok(Scalar::Null)
            }
            fn visit_bool<E>(self, _: bool) -> Result<Scalar<'de>, E> {
                Ok(Scalar::Other("a boolean"))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Scalar<'de>, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Scalar::Other("an array"))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Scalar<'de>, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Scalar::Other("an object"))
            }
        }
        d.deserialize_any(V)
    }
}

/// Member names a visitor knows; `Other` for the rest.
macro_rules! member_names {
    ($name:ident { $($variant:ident = $text:literal),* $(,)? }) => {
        #[derive(Clone, Copy, PartialEq, Eq)]
        enum $name { $($variant,)* Other }
        impl $name {
            fn text(self) -> &'static str {
                match self { $($name::$variant => $text,)* $name::Other => "" }
            }
        }
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl<'de> Visitor<'de> for V {
                    type Value = $name;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str("a member name")
                    }
                    fn visit_str<E>(self, s: &str) -> Result<$name, E> {
                        Ok(match s { $($text => $name::$variant,)* _ => $name::Other })
                    }
                }
                d.deserialize_identifier(V)
            }
        }
    };
}

member_names!(EventMember {
    Records = "records",
    InvocationId = "invocationId",
    DeliveryStreamArn = "deliveryStreamArn",
    SourceKinesisStreamArn = "sourceKinesisStreamArn",
    Region = "region",
});

member_names!(RecordMember {
    RecordId = "recordId",
    ApproximateArrivalTimestamp = "approximateArrivalTimestamp",
    Data = "data",
    KinesisRecordMetadata = "kinesisRecordMetadata",
});

/// Notes the first problem only.
fn note(problem: &mut Option<String>, reason: impl FnOnce() -> String) {
    if problem.is_none() {
        *problem = Some(reason());
    }
}

/// An optional text member: a string or null, else a problem naming it.
fn optional_text<'de>(
    value: Scalar<'de>,
    name: &str,
    problem: &mut Option<String>,
) -> Option<Cow<'de, str>> {
    match value {
        Scalar::Text(s) => Some(s),
        Scalar::Null => None,
        other => {
            note(problem, || {
                format!("`{name}` is {}, not a string", other.shape())
            });
            None
        }
    }
}

impl<'de> Expect<'de> for EventRef<'de> {
    fn object<A: MapAccess<'de>>(mut map: A) -> Result<Result<Self, Bad>, A::Error> {
        let mut event = EventRef::default();
        let mut records = None;
        let mut problem = None;
        while let Some(member) = map.next_key::<EventMember>()? {
            let text = |map: &mut A, problem: &mut Option<String>| {
                map.next_value::<Scalar<'de>>()
                    .map(|v| optional_text(v, member.text(), problem))
            };
            match member {
                EventMember::Records if records.is_some() => {
                    map.next_value::<IgnoredAny>()?;
                    note(&mut problem, || "`records` appears twice".to_owned());
                }
                EventMember::Records => match map.next_value::<Shaped<Records<'de>>>()?.0 {
                    Ok(Records(Ok(list))) => records = Some(list),
                    Ok(Records(Err(reason))) => {
                        records = Some(Vec::new());
                        note(&mut problem, || reason);
                    }
                    Err(bad) => {
                        records = Some(Vec::new());
                        note(&mut problem, || match bad {
                            Bad::Shape(shape) => format!("`records` is {shape}, not an array"),
                            Bad::Content(reason) => reason,
                        });
                    }
                },
                EventMember::InvocationId => event.invocation_id = text(&mut map, &mut problem)?,
                EventMember::DeliveryStreamArn => {
                    event.delivery_stream_arn = text(&mut map, &mut problem)?;
                }
                EventMember::SourceKinesisStreamArn => {
                    event.source_kinesis_stream_arn = text(&mut map, &mut problem)?;
                }
                EventMember::Region => event.region = text(&mut map, &mut problem)?,
                EventMember::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(match (problem, records) {
            (Some(reason), _) => Err(Bad::Content(reason)),
            (None, None) => Err(Bad::Content(
                "the object has no `records` member".to_owned(),
            )),
            (None, Some(records)) => {
                event.records = records;
                Ok(event)
            }
        })
    }
}

/// The `records` array: every record, or the first problem (with the record's index).
struct Records<'de>(Result<Vec<RecordRef<'de>>, String>);

impl<'de> Expect<'de> for Records<'de> {
    fn array<A: SeqAccess<'de>>(mut seq: A) -> Result<Result<Self, Bad>, A::Error> {
        let mut records = Vec::new();
        while let Some(record) = seq.next_element::<Shaped<RecordRef<'de>>>()? {
            let reason = match record.0 {
                Ok(r) => {
                    records.push(r);
                    continue;
                }
                Err(Bad::Shape(shape)) => {
                    format!("`records[{}]` is {shape}, not an object", records.len())
                }
                Err(Bad::Content(reason)) => format!("`records[{}]`: {reason}", records.len()),
            };
            // The rest is only stepped over.
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            return Ok(Ok(Records(Err(reason))));
        }
        Ok(Ok(Records(Ok(records))))
    }
}

impl<'de> Expect<'de> for RecordRef<'de> {
    fn object<A: MapAccess<'de>>(mut map: A) -> Result<Result<Self, Bad>, A::Error> {
        let mut record_id = None;
        let mut arrival = None;
        let mut data = None;
        let mut metadata = None;
        let mut problem = None;
        while let Some(member) = map.next_key::<RecordMember>()? {
            let seen = match member {
                RecordMember::RecordId => record_id.is_some(),
                RecordMember::ApproximateArrivalTimestamp => arrival.is_some(),
                RecordMember::Data => data.is_some(),
                RecordMember::KinesisRecordMetadata => metadata.is_some(),
                RecordMember::Other => false,
            };
            if seen {
                map.next_value::<IgnoredAny>()?;
                note(&mut problem, || {
                    format!("`{}` appears twice", member.text())
                });
                continue;
            }
            match member {
                RecordMember::RecordId => match map.next_value::<Scalar<'de>>()? {
                    Scalar::Text(id) => record_id = Some(id),
                    other => note(&mut problem, || {
                        format!("`recordId` is {}, not a string", other.shape())
                    }),
                },
                RecordMember::ApproximateArrivalTimestamp => {
                    match map.next_value::<Scalar<'de>>()? {
                        Scalar::Number(ms) => arrival = Some(Some(ms)),
                        Scalar::Null => arrival = Some(None),
                        other => note(&mut problem, || {
                            format!(
                                "`approximateArrivalTimestamp` is {}, not a number",
                                other.shape()
                            )
                        }),
                    }
                }
                RecordMember::Data => match map.next_value::<Scalar<'de>>()? {
                    Scalar::Text(text) => data = Some(text),
                    Scalar::Null => data = Some(Cow::Borrowed("")),
                    other => note(&mut problem, || {
                        format!("`data` is {}, not a base64 string", other.shape())
                    }),
                },
                RecordMember::KinesisRecordMetadata => {
                    metadata = Some(map.next_value::<Option<Box<RawValue>>>()?);
                }
                RecordMember::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(match (problem, record_id) {
            (Some(reason), _) => Err(Bad::Content(reason)),
            (None, None) => Err(Bad::Content("no `recordId`".to_owned())),
            (None, Some(record_id)) => Ok(RecordRef {
                record_id,
                approximate_arrival_timestamp: arrival.flatten(),
                data: data.unwrap_or_default(),
                kinesis_record_metadata: metadata.flatten(),
            }),
        })
    }
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
    use proptest::prelude::*;

    /// A Firehose request of many spellings: members in any order, whitespace, escapes, numbers of
    /// every form, nulls, unknown and repeated members, metadata objects; then random byte edits.
    fn request() -> impl Strategy<Value = Vec<u8>> {
        let ws = prop_oneof![Just(""), Just(""), Just(" "), Just("\n\t"), Just("\r ")];
        let text = prop_oneof![
            4 => "[a-zA-Z0-9+/=]{0,24}".prop_map(|s| format!("\"{s}\"")),
            1 => r#""([a-z]|\\["\\/bfnrtu]|\\u00e9|é|\t){0,6}""#,
            1 => Just("null".to_owned()),
            1 => Just("7".to_owned()),
            1 => Just("{}".to_owned()),
        ];
        let number = prop_oneof![
            4 => any::<u64>().prop_map(|n| (n >> (n % 64)).to_string()),
            1 => Just("null".to_owned()),
            1 => "-?(0|[1-9][0-9]{0,20})(\\.[0-9]{1,3})?([eE][-+]?[0-9]{1,3})?",
            1 => "0[0-9]{1,3}",
            2 => any::<u64>().prop_map(|n| format!("{}.{}", n >> (n % 64), "0".repeat((n % 4) as usize))),
            1 => Just("\"1\"".to_owned()),
        ];
        let metadata = prop_oneof![
        Just("null".to_owned()),
        Just(r#"{"shardId":"shardId-000000000000","partitionKey":"k","sequenceNumber":"4954","approximateArrivalTimestamp":1709787967000,"subsequenceNumber":0}"#.to_owned()),
        Just(r#"{ "a" : [1, {"b": "\u00e9"}], "c": null }"#.to_owned()),
        Just("[]".to_owned()),
        Just("{\"a\":1".to_owned()),
    ];
        let member = prop_oneof![
            4 => text.clone().prop_map(|v| ("recordId", v)),
            4 => text.clone().prop_map(|v| ("data", v)),
            2 => number.prop_map(|v| ("approximateArrivalTimestamp", v)),
            3 => metadata.prop_map(|v| ("kinesisRecordMetadata", v)),
            1 => text.clone().prop_map(|v| ("other", v)),
        ];
        // An id and data (mostly plain), then any members, in any order.
        let record = (
            "[a-zA-Z0-9]{1,12}",
            "[a-zA-Z0-9+/]{0,40}={0,2}",
            prop::collection::vec((member, ws.clone()), 0..5),
            any::<prop::sample::Index>(),
        )
            .prop_map(|(id, data, extra, at)| {
                let mut members = vec![
                    format!("\"recordId\":\"{id}\""),
                    format!("\"data\":\"{data}\""),
                ];
                for ((k, v), w) in &extra {
                    members.insert(
                        at.index(members.len() + 1),
                        format!("{w}\"{k}\"{w}:{w}{v}{w}"),
                    );
                }
                format!("{{{}}}", members.join(","))
            });
        // Mostly well-formed records (each with an id and data), some of any members.
        let good = (
            "[a-zA-Z0-9]{1,12}",
            "[a-zA-Z0-9+/]{0,40}={0,2}",
            any::<u32>(),
        )
            .prop_map(|(id, data, ms)| {
                format!(
                    r#"{{"recordId":"{id}","approximateArrivalTimestamp":{ms},"data":"{data}"}}"#
                )
            });
        let records = prop::collection::vec(
            prop_oneof![3 => good, 3 => record, 1 => Just("7".to_owned())],
            0..6,
        )
        .prop_map(|r| format!("[{}]", r.join(",")));
        let top = prop_oneof![
            1 => records.clone().prop_map(|v| ("records", v)),
            1 => text.clone().prop_map(|v| ("invocationId", v)),
            1 => text.clone().prop_map(|v| ("deliveryStreamArn", v)),
            1 => text.clone().prop_map(|v| ("sourceKinesisStreamArn", v)),
            1 => text.clone().prop_map(|v| ("region", v)),
            1 => text.prop_map(|v| ("unknown", v)),
        ];
        // `records`, then other members (another `records` among them at times), in any order.
        let event = (
            records,
            prop::collection::vec((top, ws.clone()), 0..4),
            any::<prop::sample::Index>(),
            ws,
        )
            .prop_map(|(records, extra, at, w)| {
                let mut members = vec![format!("\"records\":{records}")];
                for ((k, v), w) in &extra {
                    members.insert(
                        at.index(members.len() + 1),
                        format!("{w}\"{k}\"{w}:{w}{v}{w}"),
                    );
                }
                format!("{w}{{{}}}{w}", members.join(",")).into_bytes()
            });
        let edit = (any::<prop::sample::Index>(), any::<u8>(), 0u8..4);
        (
            event,
            prop_oneof![3 => Just(Vec::new()), 2 => prop::collection::vec(edit, 1..3)],
        )
            .prop_map(|(mut bytes, edits)| {
                crate::edits::apply(&mut bytes, edits, b"{}[]\":,\\ n0");
                bytes
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]

        /// The request scanner reads every request it takes exactly as serde reads it (and what it
        /// leaves to serde reads as before: the same event, or the same refusal).
        #[test]
        fn the_request_scanner_reads_what_serde_reads(body in request()) {
            let serde = EventRef::parse_with_serde(&body).map(|e| format!("{e:?}"));
            if let Some(fast) = scan::parse(&body) {
                prop_assert_eq!(Ok(format!("{fast:?}")), serde.clone(), "{}", String::from_utf8_lossy(&body));
            }
            prop_assert_eq!(EventRef::parse(&body).map(|e| format!("{e:?}")), serde);
        }
    }

    /// Requests at the edges of what the scanner takes: each reads as serde reads it.
    #[test]
    fn the_request_scanner_agrees_at_the_edges() {
        let r = |members: &str| format!(r#"{{"records":[{{{members}}}]}}"#);
        let cases = [
            r(r#""recordId":"1","data":"eA==""#),
            r(r#""recordId":"1","recordId":"2","data":"eA==""#),
            r(r#""recordId":"1","data":"eA==","data":"eQ==""#),
            r(r#""recordId":"1","data":null"#),
            r(r#""recordId":null,"data":"eA==""#),
            r(r#""data":"eA==""#),
            r(r#""recordId":"1","approximateArrivalTimestamp":1,"approximateArrivalTimestamp":2"#),
            r(r#""recordId":"1","approximateArrivalTimestamp":1.5"#),
            r(r#""recordId":"1","approximateArrivalTimestamp":-1"#),
            r(r#""recordId":"1","approximateArrivalTimestamp":01"#),
            r(r#""recordId":"1","approximateArrivalTimestamp":1e3"#),
            r(r#""recordId":"1","approximateArrivalTimestamp":123456789012345678901"#),
            r(r#""recordId":"1","approximateArrivalTimestamp":"1""#),
            r(r#""recordId":"1","approximateArrivalTimestamp":1709787967000.0"#),
            r(r#""recordId":"1","approximateArrivalTimestamp":1709787967000.000"#),
            r(r#""recordId":"1","approximateArrivalTimestamp":1709787967000.10"#),
            r(r#""recordId":"1","approximateArrivalTimestamp":1709787967000.0e1"#),
            r(r#""recordId":"1","approximateArrivalTimestamp":1709787967000."#),
            r(r#""recordId":"1","approximateArrivalTimestamp":9007199254740993"#),
            r(r#""recordId":"1","approximateArrivalTimestamp":900719925474099.30"#),
            r(r#""recordId":"1","approximateArrivalTimestamp":0.0"#),
            r(r#""recordId":"1","kinesisRecordMetadata":null"#),
            r(r#""recordId":"1","kinesisRecordMetadata":{"a": [1, {"b":"é"}]}"#),
            r(r#""recordId":"1","kinesisRecordMetadata":{},"kinesisRecordMetadata":{}"#),
            r(r#""recordId":"1","kinesisRecordMetadata":{"a":1"#),
            r(r#""recordId":"1","kinesisRecordMetadata":[]"#),
            r(r#""recordId":"a\"b","data":"eA==""#),
            r(r#""recordId":"é","data":"eA==""#),
            r("\"recordId\":\"\t\""),
            r(r#""recordId":"1","other":1"#),
            r#"{"records":[],"records":[]}"#.to_owned(),
            r#"{"records":[],"region":"r","region":"s","invocationId":null}"#.to_owned(),
            r#"{"records":[],"region":5}"#.to_owned(),
            r#"{"records":[] } x"#.to_owned(),
            r#" {"records":[ ] } "#.to_owned(),
            r#"{"records":[7]}"#.to_owned(),
            r#"{"region":"r"}"#.to_owned(),
        ];
        for case in &cases {
            let body = case.as_bytes();
            let serde = EventRef::parse_with_serde(body).map(|e| format!("{e:?}"));
            if let Some(fast) = scan::parse(body) {
                assert_eq!(Ok(format!("{fast:?}")), serde, "{case}");
            }
            assert_eq!(
                EventRef::parse(body).map(|e| format!("{e:?}")),
                serde,
                "{case}"
            );
        }
    }

    /// What Firehose sends (the sample events) and what [`FirehoseEvent`] writes are read by the
    /// scanner, not left to serde.
    #[test]
    fn the_request_scanner_takes_the_events_firehose_sends() {
        for sample in [
            include_str!("../../../events/firehose-transformer/direct-put.json"),
            include_str!("../../../events/firehose-transformer/kinesis-source.json"),
            include_str!("../../../events/firehose-transformer/cloudwatch-logs.json"),
            include_str!("../../../events/firehose-transformer/bad-records.json"),
        ] {
            let fast = scan::parse(sample.as_bytes()).map(|e| format!("{e:?}"));
            let serde = EventRef::parse_with_serde(sample.as_bytes()).map(|e| format!("{e:?}"));
            assert_eq!(
                fast.ok_or("left to serde"),
                serde.as_deref().map(str::to_owned).map_err(|_| "refused"),
                "{sample}"
            );
        }
        let mut written = FirehoseEvent::new(vec![FirehoseRecord {
            record_id: "49546986683135544286507457936321625675700192471156785154".into(),
            approximate_arrival_timestamp: Some(1_709_787_967_000.0),
            data: "eyJhIjoxfQ==".into(),
            kinesis_record_metadata: None,
        }]);
        written.delivery_stream_arn = Some("arn:aws:firehose:us-east-1:1:deliverystream/s".into());
        let body = serde_json::to_vec(&written).expect("JSON");
        assert!(
            scan::parse(&body).is_some(),
            "{}",
            String::from_utf8_lossy(&body)
        );
    }

    /// The property above sees both sides: requests the scanner takes and requests it leaves.
    #[test]
    fn the_request_strategy_reaches_both_readers() {
        use proptest::strategy::ValueTree;
        let mut runner = proptest::test_runner::TestRunner::deterministic();
        let strategy = request();
        let (mut taken, mut events) = (0, 0);
        for _ in 0..2000 {
            let body = strategy.new_tree(&mut runner).expect("a case").current();
            taken += usize::from(scan::parse(&body).is_some());
            events += usize::from(EventRef::parse_with_serde(&body).is_ok());
        }
        assert!(
            taken > 150 && events - taken > 50,
            "{taken} taken of {events} events"
        );
    }

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
