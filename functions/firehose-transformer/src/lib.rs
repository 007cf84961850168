//! firehose-transformer: a Kinesis Data Firehose data-transformation processor.
//!
//! For every input record, in order, exactly one output record with the same `recordId` and a
//! result of `Ok`, `Dropped` or `ProcessingFailed`. A problem with one record never fails the
//! batch. See [`Processor::process`] for the steps a record goes through, [`transform`] for the
//! `TRANSFORM` document and [`partition`] for dynamic-partitioning keys.

pub mod cloudwatch;
pub mod event;
pub mod partition;
pub mod record;
pub mod transform;

use std::collections::BTreeMap;
use std::io::Read;
use std::time::Instant;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use lambda_runtime::LambdaEvent;
use tracing::{info, warn};
use tributary::observability::Metrics;
use tributary::{Env, Error};

use crate::event::{
    FirehoseEvent, FirehoseRecord, FirehoseResponse, RecordResult, ResponseMetadata, ResponseRecord,
};
use crate::partition::{HIVE_DEFAULT_PARTITION, PartitionSpec, rfc3339_millis};
use crate::record::Fields;
use crate::transform::{Stamps, Transform};

/// Lambda's limit on a synchronous response payload, in bytes.
pub const LAMBDA_RESPONSE_LIMIT: usize = 6_291_556;
/// Per-record failures logged one by one; the rest are summarised.
const LOGGED_FAILURES: usize = 20;

/// Configuration, read once at cold start.
#[derive(Debug, Clone)]
pub struct Config {
    /// The record transform (`TRANSFORM`).
    pub transform: Transform,
    /// Dynamic partitioning (`PARTITION_TIMESTAMP_FIELD`, `PARTITION_FIELDS`, `PARTITION_DEFAULT`).
    pub partition: PartitionSpec,
    /// Largest response we produce (`MAX_RESPONSE_BYTES`, default and maximum: Lambda's limit).
    pub max_response_bytes: usize,
    /// Largest decompressed record (`MAX_RECORD_BYTES`, default 64 MiB): a gzip bomb is refused.
    pub max_record_bytes: usize,
    /// Namespace of the EMF metrics (`METRICS_NAMESPACE`, default `Tributary`).
    pub metrics_namespace: String,
}

impl Config {
    /// Reads and validates the configuration; errors name the variable.
    pub fn from_env(env: &Env) -> tributary::Result<Config> {
        let transform = match env.get("TRANSFORM") {
            Some(doc) => Transform::parse(doc)?,
            None => Transform::default(),
        };
        let fields = env.list("PARTITION_FIELDS");
        for f in &fields {
            if f.split('.').any(str::is_empty) {
                return Err(Error::config(
                    "PARTITION_FIELDS",
                    env.get("PARTITION_FIELDS").unwrap_or_default(),
                    format!("{f:?} is not a field name or dotted path"),
                    "comma-separated field names, e.g. tenant,geo.region",
                ));
            }
        }
        let partition = PartitionSpec {
            timestamp_field: env.get("PARTITION_TIMESTAMP_FIELD").map(str::to_owned),
            fields,
            default_value: env.string_or("PARTITION_DEFAULT", HIVE_DEFAULT_PARTITION),
        };
        if partition::safe_value(&serde_json::Value::String(partition.default_value.clone()))
            .as_deref()
            != Some(partition.default_value.as_str())
        {
            return Err(Error::config(
                "PARTITION_DEFAULT",
                &partition.default_value,
                "not safe in an S3 prefix",
                "letters, digits, '-', '_' and '.'",
            ));
        }
        Ok(Config {
            transform,
            partition,
            max_response_bytes: env.int_in(
                "MAX_RESPONSE_BYTES",
                LAMBDA_RESPONSE_LIMIT,
                1024,
                LAMBDA_RESPONSE_LIMIT,
            )?,
            max_record_bytes: env.int_in("MAX_RECORD_BYTES", 64 << 20, 1024, 1 << 30)?,
            metrics_namespace: env.string_or("METRICS_NAMESPACE", "Tributary"),
        })
    }
}

/// Counts of one batch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Records received.
    pub records_in: u64,
    /// Records answered `Ok`.
    pub ok: u64,
    /// Records answered `Dropped`.
    pub dropped: u64,
    /// Records answered `ProcessingFailed`.
    pub failed: u64,
    /// Records failed only because the response would have exceeded the size limit.
    pub oversize: u64,
    /// Decoded input bytes.
    pub bytes_in: u64,
    /// Output bytes (before base64).
    pub bytes_out: u64,
    /// Records whose partition time came from the arrival time.
    pub partition_fallbacks: u64,
}

/// What one record became before the size guard.
struct Outcome {
    result: RecordResult,
    data: Vec<u8>,
    keys: Option<BTreeMap<String, String>>,
    reason: Option<String>,
    /// The input's data is valid base64 and may be echoed back with a failure.
    echo: bool,
}

impl Outcome {
    fn ok(data: Vec<u8>, keys: Option<BTreeMap<String, String>>) -> Outcome {
        Outcome {
            result: RecordResult::Ok,
            data,
            keys,
            reason: None,
            echo: true,
        }
    }

    fn dropped() -> Outcome {
        Outcome {
            result: RecordResult::Dropped,
            data: Vec::new(),
            keys: None,
            reason: None,
            echo: true,
        }
    }

    fn failed(reason: impl Into<String>) -> Outcome {
        Outcome {
            result: RecordResult::ProcessingFailed,
            data: Vec::new(),
            keys: None,
            reason: Some(reason.into()),
            echo: true,
        }
    }
}

/// The transformer: configuration plus the per-batch logic.
#[derive(Debug, Clone)]
pub struct Processor {
    config: Config,
}

impl Processor {
    /// A processor with `config`.
    pub fn new(config: Config) -> Processor {
        Processor { config }
    }

    /// Reads the configuration from `env`.
    pub fn from_env(env: &Env) -> tributary::Result<Processor> {
        Ok(Processor::new(Config::from_env(env)?))
    }

    /// The Lambda handler: processes the batch, logs and emits one EMF line.
    pub async fn handle(
        &self,
        event: LambdaEvent<FirehoseEvent>,
    ) -> Result<FirehoseResponse, Error> {
        let started = Instant::now();
        let (payload, ctx) = event.into_parts();
        let stream = payload
            .delivery_stream_arn
            .as_deref()
            .and_then(|a| a.rsplit('/').next())
            .unwrap_or("unknown")
            .to_owned();
        let (response, stats) = self.process(&payload, Utc::now());
        let elapsed = started.elapsed();
        let mut m = Metrics::new(&self.config.metrics_namespace, "firehose-transformer");
        m.count("RecordsIn", stats.records_in)
            .count("RecordsOk", stats.ok)
            .count("RecordsDropped", stats.dropped)
            .count("RecordsFailed", stats.failed)
            .count("RecordsOversize", stats.oversize)
            .bytes("BytesIn", stats.bytes_in)
            .bytes("BytesOut", stats.bytes_out)
            .count("PartitionFallbacks", stats.partition_fallbacks)
            .duration("Duration", elapsed)
            .property("RequestId", ctx.request_id.clone())
            .property("DeliveryStream", stream.clone());
        m.emit();
        info!(request_id = %ctx.request_id, stream, records = stats.records_in, ok = stats.ok,
            dropped = stats.dropped, failed = stats.failed, oversize = stats.oversize,
            bytes_in = stats.bytes_in, bytes_out = stats.bytes_out,
            partition_fallbacks = stats.partition_fallbacks,
            ms = elapsed.as_secs_f64() * 1000.0, "batch processed");
        Ok(response)
    }

    /// Processes a batch: one response record per input record, same ids, same order.
    ///
    /// Each record is base64-decoded, gunzipped when its data starts with the gzip magic,
    /// unpacked when it is a CloudWatch Logs subscription message (a control message is
    /// `Dropped`, a data message becomes one line per log event), parsed as one JSON object,
    /// transformed (a record the filter rejects is `Dropped`), given partition keys, and
    /// written as compact JSON with one trailing newline. Then the size guard keeps the whole
    /// response under `max_response_bytes`: records that would push it over become
    /// `ProcessingFailed` with empty data, so Firehose routes their originals to its error
    /// output instead of the invocation failing with 413.
    pub fn process(&self, event: &FirehoseEvent, now: DateTime<Utc>) -> (FirehoseResponse, Stats) {
        let processing_time = rfc3339_millis(now);
        let mut stats = Stats {
            records_in: event.records.len() as u64,
            ..Stats::default()
        };
        let b64 = base64::engine::general_purpose::STANDARD;

        // Reserve room for a minimal entry per record, so a failed stub always fits.
        let envelope = r#"{"records":[]}"#.len() + event.records.len().saturating_sub(1);
        let stub = |r: &FirehoseRecord| {
            ResponseRecord {
                record_id: r.record_id.clone(),
                result: RecordResult::ProcessingFailed,
                data: String::new(),
                metadata: None,
            }
            .encoded_len()
        };
        let mut used = envelope + event.records.iter().map(stub).sum::<usize>();

        let mut records = Vec::with_capacity(event.records.len());
        let mut logged = 0usize;
        for input in &event.records {
            let outcome = self.record(input, &processing_time, &mut stats);
            let mut out = ResponseRecord {
                record_id: input.record_id.clone(),
                result: outcome.result,
                data: String::new(),
                metadata: outcome.keys.map(|k| ResponseMetadata { partition_keys: k }),
            };
            match outcome.result {
                RecordResult::Ok => out.data = b64.encode(&outcome.data),
                // Failed records carry their original payload back when it is valid and fits.
                RecordResult::ProcessingFailed if outcome.echo => out.data = input.data.clone(),
                RecordResult::ProcessingFailed => {}
                RecordResult::Dropped => {}
            }
            // A Dropped or short Ok entry can be smaller than the reserved stub: then it fits.
            let extra = out.encoded_len().saturating_sub(stub(input));
            if used + extra <= self.config.max_response_bytes {
                used += extra;
            } else {
                if out.result == RecordResult::Ok {
                    stats.oversize += 1;
                    warn!(record_id = %input.record_id,
                        "response size limit reached: record returned as ProcessingFailed");
                }
                out.result = RecordResult::ProcessingFailed;
                out.data.clear();
                out.metadata = None;
            }
            match out.result {
                RecordResult::Ok => {
                    stats.ok += 1;
                    stats.bytes_out += outcome.data.len() as u64;
                }
                RecordResult::Dropped => stats.dropped += 1,
                RecordResult::ProcessingFailed => {
                    stats.failed += 1;
                    if let Some(reason) = &outcome.reason {
                        if logged < LOGGED_FAILURES {
                            warn!(record_id = %input.record_id, reason = %reason, "record failed");
                        }
                        logged += 1;
                    }
                }
            }
            records.push(out);
        }
        if logged > LOGGED_FAILURES {
            warn!(
                more = logged - LOGGED_FAILURES,
                "further failed records not logged one by one"
            );
        }
        (FirehoseResponse { records }, stats)
    }

    /// One record, up to (not including) the size guard.
    fn record(&self, input: &FirehoseRecord, processing_time: &str, stats: &mut Stats) -> Outcome {
        let b64 = base64::engine::general_purpose::STANDARD;
        let decoded = match b64.decode(&input.data) {
            Ok(d) => d,
            Err(e) => {
                return Outcome {
                    echo: false,
                    ..Outcome::failed(format!("data is not valid base64: {e}"))
                };
            }
        };
        stats.bytes_in += decoded.len() as u64;
        let data = if decoded.starts_with(&[0x1f, 0x8b]) {
            match gunzip(&decoded, self.config.max_record_bytes) {
                Ok(d) => d,
                Err(reason) => return Outcome::failed(reason),
            }
        } else {
            decoded
        };
        let arrival_ms = input
            .approximate_arrival_timestamp
            .filter(|t| t.is_finite())
            .map(|t| t as i64);
        let arrival_time = arrival_ms
            .and_then(DateTime::<Utc>::from_timestamp_millis)
            .map(rfc3339_millis);
        let stamps = Stamps {
            processing_time,
            arrival_time: arrival_time.as_deref(),
        };

        if cloudwatch::looks_like_subscription(&data) {
            return match cloudwatch::parse(&data) {
                Ok(cloudwatch::Message::Control) => Outcome::dropped(),
                Ok(cloudwatch::Message::Data(events)) => {
                    let mut out = Vec::new();
                    let mut keys = None;
                    for line in &events {
                        let mut fields = match Fields::parse(line) {
                            Ok(f) => f,
                            Err(reason) => return Outcome::failed(reason),
                        };
                        if !self.config.transform.apply(&mut fields, stamps) {
                            continue;
                        }
                        if keys.is_none() && self.config.partition.is_enabled() {
                            // One record has one set of keys: the first kept event's.
                            let k = self.config.partition.keys(&fields, arrival_ms);
                            stats.partition_fallbacks += u64::from(k.fell_back);
                            keys = Some(k.keys);
                        }
                        fields.write_line(&mut out);
                    }
                    if out.is_empty() {
                        Outcome::dropped()
                    } else {
                        Outcome::ok(out, keys)
                    }
                }
                Err(reason) => Outcome::failed(reason),
            };
        }

        let mut fields = match Fields::parse(&data) {
            Ok(f) => f,
            Err(reason) => return Outcome::failed(reason),
        };
        if !self.config.transform.apply(&mut fields, stamps) {
            return Outcome::dropped();
        }
        let keys = self.config.partition.is_enabled().then(|| {
            let k = self.config.partition.keys(&fields, arrival_ms);
            stats.partition_fallbacks += u64::from(k.fell_back);
            k.keys
        });
        let mut out = Vec::with_capacity(data.len() + 64);
        fields.write_line(&mut out);
        Outcome::ok(out, keys)
    }
}

/// Decompresses every gzip member, refusing more than `limit` bytes of output.
fn gunzip(data: &[u8], limit: usize) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(data.len() * 4);
    let mut reader = flate2::read::MultiGzDecoder::new(data).take(limit as u64 + 1);
    reader
        .read_to_end(&mut out)
        .map_err(|e| format!("gzip data cannot be decompressed: {e}"))?;
    if out.len() > limit {
        return Err(format!(
            "decompressed record exceeds MAX_RECORD_BYTES ({limit} bytes)"
        ));
    }
    Ok(out)
}
