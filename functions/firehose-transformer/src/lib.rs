//! firehose-transformer: a Kinesis Data Firehose data-transformation processor.
//!
//! For every input record, in order, exactly one output record with the same `recordId` and a
//! result of `Ok`, `Dropped` or `ProcessingFailed`. A problem with one record never fails the
//! batch. See [`Processor::process`] for the steps a record goes through, [`config`] for the
//! settings, [`transform`] for the `TRANSFORM` document (its conditions in [`filter`]) and
//! [`partition`] for dynamic-partitioning keys.

pub mod cloudwatch;
pub mod compare;
pub mod config;
pub mod event;
pub mod filter;
pub mod partition;
pub mod record;
pub mod text;
pub mod transform;

#[cfg(test)]
mod edits;

use std::io::Read;
use std::time::Instant;

use chrono::{DateTime, Utc};
use lambda_runtime::LambdaEvent;
use tracing::{info, warn};
use tributary::observability::Metrics;
use tributary::{Env, Error};

use serde_json::value::RawValue;

use crate::event::{EventRef, FirehoseEvent, Invocation, RecordRef, RecordResult, json_string_len};
use crate::record::{Fields, Raw, push_json_string};
use crate::transform::{Stamps, json_text, push_rfc3339_millis_json, rfc3339_millis};

pub use crate::config::Config;
pub use crate::event::FirehoseResponse;

/// Lambda's limit on a synchronous response payload, in bytes.
pub const LAMBDA_RESPONSE_LIMIT: usize = 6_291_556;
/// Per-record failures logged one by one; the rest are summarised.
const LOGGED_FAILURES: usize = 20;

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

/// A record's response entry, written in a worker's buffer before the size guard.
struct Entry {
    /// Where the entry starts in the worker's buffer (after its separating comma).
    start: usize,
    /// Where it ends.
    end: usize,
    /// Length of the failed stub that replaces it when the response is full.
    stub_len: usize,
    result: RecordResult,
    /// Bytes of output (before base64), for the `BytesOut` metric.
    out_bytes: usize,
    /// Why the record failed (logged with its id, never its content).
    reason: Option<String>,
}

/// One worker's share of a batch: entries written one after another, each preceded by the
/// comma that separates it from the previous record (the first chunk starts the document).
#[derive(Default)]
struct Chunk {
    buf: String,
    entries: Vec<Entry>,
    stats: Stats,
}

/// Scratch buffers a worker reuses from record to record.
#[derive(Default)]
struct Scratch {
    decoded: Vec<u8>,
    inflated: Vec<u8>,
    /// The output (after the copied part, if any).
    line: Vec<u8>,
    /// The record's arrival stamp, as JSON text.
    stamp: String,
    /// The output starts with this many whole base64 groups of the input's `data` (3 bytes
    /// each), copied as text instead of decoded and encoded again; `line` holds the rest.
    copied_groups: usize,
}

/// What one record became.
enum Outcome {
    Ok { keys: Option<String> },
    Dropped,
    Failed { reason: String, echo: bool },
}

/// Lambda's memory per vCPU: a function gets one full vCPU at 1,769 MB, in proportion below.
const MB_PER_VCPU: usize = 1769;
/// Records per worker (and per piece) below which a batch is not split further.
const MIN_RECORDS_PER_WORKER: usize = 256;
/// Pieces a batch is cut into per worker.
const PIECES_PER_WORKER: usize = 4;

/// The transformer: configuration plus the per-batch logic.
#[derive(Debug, Clone)]
pub struct Processor {
    config: Config,
    workers: usize,
    /// No transform and no partitioning: a record's output is its JSON, compacted.
    verbatim: bool,
}

impl Processor {
    /// A processor with `config`, using every available core for large batches.
    pub fn new(config: Config) -> Processor {
        let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
        let verbatim = config.transform.is_identity() && !config.partition.is_enabled();
        Processor {
            config,
            workers,
            verbatim,
        }
    }

    /// Reads the configuration from `env`. In Lambda (`AWS_LAMBDA_FUNCTION_MEMORY_SIZE` set),
    /// batches use as many threads as the function has vCPUs by its memory (one per 1,769 MB,
    /// rounded up, at most the cores the process sees): below 1,769 MB the function has a
    /// fraction of one vCPU, where a second thread adds work and no speed.
    pub fn from_env(env: &Env) -> tributary::Result<Processor> {
        let processor = Processor::new(Config::from_env(env)?);
        let vcpus = env
            .get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
            .and_then(|mb| mb.parse::<usize>().ok())
            .map(|mb| mb.div_ceil(MB_PER_VCPU));
        Ok(match vcpus {
            Some(vcpus) => {
                let workers = processor.workers.min(vcpus);
                processor.with_workers(workers)
            }
            None => processor,
        })
    }

    /// Limits the worker threads (1 processes batches on the calling thread only).
    pub fn with_workers(mut self, workers: usize) -> Processor {
        self.workers = workers.max(1);
        self
    }

    /// The Lambda handler: processes the batch, logs and emits one EMF line. A payload that is
    /// not a Firehose event fails the invocation with `InvalidEvent`, saying what it is.
    pub async fn handle(
        &self,
        event: LambdaEvent<impl Into<Invocation>>,
    ) -> Result<Box<RawValue>, Error> {
        let started = Instant::now();
        let (payload, ctx) = event.into_parts();
        let payload = Into::<Invocation>::into(payload)
            .into_event()
            .inspect_err(|e| {
                warn!(request_id = %ctx.request_id, error_type = e.error_type(), "{e}");
            })?;
        let response = self.batch(&EventRef::of(&payload), &ctx.request_id, started);
        RawValue::from_string(response).map_err(|e| Error::Json {
            what: "the Firehose response we built".into(),
            source: e,
        })
    }

    /// The handler on the request body as it arrived: the response body, the same bytes
    /// [`Processor::handle`] answers. The event is read in place (no record copied) and the
    /// response is built in one buffer that is sent as it is.
    pub fn handle_raw(&self, body: &[u8], request_id: &str) -> Result<Vec<u8>, Error> {
        let started = Instant::now();
        let event = EventRef::parse(body)
            .map_err(|reason| Error::invalid_event(event::EXPECTED_EVENT, reason))
            .inspect_err(|e| {
                warn!(request_id, error_type = e.error_type(), "{e}");
            })?;
        Ok(self.batch(&event, request_id, started).into_bytes())
    }

    /// One batch: processed, logged, counted in one EMF line.
    fn batch(&self, event: &EventRef<'_>, request_id: &str, started: Instant) -> String {
        let stream = event
            .delivery_stream_arn
            .as_deref()
            .and_then(|a| a.rsplit('/').next())
            .unwrap_or("unknown")
            .to_owned();
        let (response, stats) = self.process_records(
            &event.records,
            DateTime::<Utc>::from(std::time::SystemTime::now()),
        );
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
            .property("RequestId", request_id.to_owned())
            .property("DeliveryStream", stream.clone());
        m.emit();
        info!(
            request_id,
            stream,
            records = stats.records_in,
            ok = stats.ok,
            dropped = stats.dropped,
            failed = stats.failed,
            oversize = stats.oversize,
            bytes_in = stats.bytes_in,
            bytes_out = stats.bytes_out,
            partition_fallbacks = stats.partition_fallbacks,
            ms = elapsed.as_secs_f64() * 1000.0,
            "batch processed"
        );
        response
    }

    /// Processes a batch into the response JSON: one entry per input record, same ids, same
    /// order (parse it with [`FirehoseResponse`] to inspect it).
    ///
    /// Each record is base64-decoded, gunzipped when its data starts with the gzip magic,
    /// unpacked when it is a CloudWatch Logs subscription message (a control message is
    /// `Dropped`, a data message becomes one line per log event), parsed as one JSON object,
    /// transformed (a record the filter rejects is `Dropped`), given partition keys, and
    /// written as compact JSON with one trailing newline. Large batches are split over the
    /// available cores. Then the size guard keeps the whole response within
    /// `max_response_bytes`: records that would push it over become `ProcessingFailed` with
    /// empty data, so Firehose routes their originals to its error output instead of the
    /// invocation failing with 413.
    pub fn process(&self, event: &FirehoseEvent, now: DateTime<Utc>) -> (String, Stats) {
        self.process_records(&EventRef::of(event).records, now)
    }

    /// [`Processor::process`] on records read in place.
    pub fn process_records(
        &self,
        records: &[RecordRef<'_>],
        now: DateTime<Utc>,
    ) -> (String, Stats) {
        let processing_time = json_text(&rfc3339_millis(now));
        let workers = self
            .workers
            .min(records.len() / MIN_RECORDS_PER_WORKER)
            .max(1);
        // A few pieces per worker, taken in turn from a shared queue: a core that runs slow
        // (shared or throttled vCPUs) takes fewer pieces instead of holding up the batch.
        let pieces = if workers == 1 {
            1
        } else {
            (workers * PIECES_PER_WORKER).min(records.len() / MIN_RECORDS_PER_WORKER)
        };
        let per = records.len().div_ceil(pieces.max(1)).max(1);
        // Every buffer is allocated here, on the calling thread: the first one large enough
        // for the whole response (the others are appended to it), so assembling it neither
        // reallocates nor frees memory across threads.
        let estimate = |part: &[RecordRef<'_>]| {
            part.iter()
                .map(|r| r.data.len() * 5 / 4 + 192)
                .sum::<usize>()
        };
        let mut chunks: Vec<Chunk> = records
            .chunks(per)
            .enumerate()
            .map(|(i, part)| Chunk {
                buf: String::with_capacity(
                    if i == 0 {
                        estimate(records)
                    } else {
                        estimate(part)
                    } + 16,
                ),
                entries: Vec::with_capacity(part.len()),
                stats: Stats::default(),
            })
            .collect();
        if chunks.is_empty() {
            chunks.push(Chunk::default());
        }
        if workers == 1 {
            self.chunk(&mut chunks[0], records, true, &processing_time);
        } else {
            let queue =
                std::sync::Mutex::new(records.chunks(per).zip(chunks.iter_mut()).enumerate());
            let work = || {
                loop {
                    // A poisoned queue (a worker panicked) still hands out the remaining pieces.
                    let next = queue
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .next();
                    let Some((i, (part, chunk))) = next else {
                        break;
                    };
                    self.chunk(chunk, part, i == 0, &processing_time);
                }
            };
            std::thread::scope(|scope| {
                let handles: Vec<_> = (1..workers).map(|_| scope.spawn(work)).collect();
                work();
                // A worker cannot panic on record data (no unwraps on that path); should one
                // still, the records it did not finish are failed below rather than lost.
                for h in handles {
                    let _ = h.join();
                }
            });
        }
        self.assemble(records, chunks, per)
    }

    /// The size guard and the final response, in input order.
    fn assemble(
        &self,
        records: &[RecordRef<'_>],
        chunks: Vec<Chunk>,
        per: usize,
    ) -> (String, Stats) {
        let mut stats = Stats {
            records_in: records.len() as u64,
            ..Stats::default()
        };
        let mut logged = 0usize;
        let mut complete = true;
        for (c, chunk) in chunks.iter().enumerate() {
            stats.bytes_in += chunk.stats.bytes_in;
            stats.partition_fallbacks += chunk.stats.partition_fallbacks;
            complete &=
                chunk.entries.len() == records[(c * per).min(records.len())..].len().min(per);
            for (entry, rec) in chunk.entries.iter().zip(&records[c * per..]) {
                match entry.result {
                    RecordResult::Ok => {
                        stats.ok += 1;
                        stats.bytes_out += entry.out_bytes as u64;
                    }
                    RecordResult::Dropped => stats.dropped += 1,
                    RecordResult::ProcessingFailed => stats.failed += 1,
                }
                if let Some(reason) = &entry.reason {
                    if logged < LOGGED_FAILURES {
                        warn!(record_id = %rec.record_id, reason = %reason, "record failed");
                    }
                    logged += 1;
                }
            }
        }
        if logged > LOGGED_FAILURES {
            warn!(
                more = logged - LOGGED_FAILURES,
                "further failed records not logged one by one"
            );
        }
        let total: usize = chunks.iter().map(|c| c.buf.len()).sum::<usize>() + 2;

        // Fast path: everything fits, so the workers' buffers, joined, are the response.
        if complete && total <= self.config.max_response_bytes {
            let mut chunks = chunks.into_iter();
            let mut out = chunks.next().map(|c| c.buf).unwrap_or_default();
            if out.is_empty() {
                out.push_str(r#"{"records":["#);
            }
            out.reserve(total.saturating_sub(out.len()));
            for c in chunks {
                out.push_str(&c.buf);
            }
            out.push_str("]}");
            return (out, stats);
        }

        // Room for a failed stub per record is reserved up front, so a stub always fits.
        let stub = |id: &str| {
            r#"{"recordId":,"result":"ProcessingFailed","data":""}"#.len() + json_string_len(id)
        };
        let envelope = r#"{"records":[]}"#.len() + records.len().saturating_sub(1);
        let mut used = envelope + records.iter().map(|r| stub(&r.record_id)).sum::<usize>();
        let mut out = String::with_capacity(self.config.max_response_bytes.min(total));
        out.push_str(r#"{"records":["#);
        for (c, chunk) in chunks.iter().enumerate() {
            let base = c * per;
            for (i, rec) in records[base.min(records.len())..]
                .iter()
                .take(per)
                .enumerate()
            {
                if base + i > 0 {
                    out.push(',');
                }
                let Some(entry) = chunk.entries.get(i) else {
                    // Only after a worker panicked: fail the record, keep its id.
                    write_stub(&mut out, &rec.record_id);
                    stats.failed += 1;
                    warn!(record_id = %rec.record_id, "record failed: internal error in its worker");
                    continue;
                };
                let extra = (entry.end - entry.start).saturating_sub(entry.stub_len);
                if used + extra <= self.config.max_response_bytes {
                    used += extra;
                    out.push_str(&chunk.buf[entry.start..entry.end]);
                    continue;
                }
                write_stub(&mut out, &rec.record_id);
                if entry.result == RecordResult::Ok {
                    stats.ok -= 1;
                    stats.bytes_out -= entry.out_bytes as u64;
                    stats.failed += 1;
                    stats.oversize += 1;
                    warn!(record_id = %rec.record_id,
                        "response size limit reached: record returned as ProcessingFailed");
                }
            }
        }
        out.push_str("]}");
        (out, stats)
    }

    /// Processes a run of records into full response entries.
    fn chunk(
        &self,
        chunk: &mut Chunk,
        records: &[RecordRef<'_>],
        first: bool,
        processing_time: &RawValue,
    ) {
        if first {
            chunk.buf.push_str(r#"{"records":["#);
        }
        let mut scratch = Scratch::default();
        for (i, rec) in records.iter().enumerate() {
            scratch.line.clear();
            scratch.copied_groups = 0;
            let outcome = self.record(rec, processing_time, &mut scratch, &mut chunk.stats);
            let buf = &mut chunk.buf;
            if !(first && i == 0) {
                buf.push(',');
            }
            let start = buf.len();
            buf.push_str(r#"{"recordId":"#);
            push_json_string(buf, &rec.record_id);
            let id_end = buf.len();
            let (result, out_bytes, reason) = match outcome {
                Outcome::Ok { keys } => {
                    buf.push_str(r#","result":"Ok","data":""#);
                    // Whole groups of the input are the same groups of the output.
                    let copied = rec
                        .data
                        .get(..scratch.copied_groups * 4)
                        .unwrap_or_default();
                    buf.push_str(copied);
                    base64_simd::STANDARD.encode_append(&scratch.line, buf);
                    buf.push('"');
                    if let Some(keys) = keys {
                        buf.push_str(r#","metadata":{"partitionKeys":{"#);
                        buf.push_str(&keys);
                        buf.push_str("}}");
                    }
                    (
                        RecordResult::Ok,
                        copied.len() / 4 * 3 + scratch.line.len(),
                        None,
                    )
                }
                Outcome::Dropped => {
                    buf.push_str(r#","result":"Dropped","data":"""#);
                    (RecordResult::Dropped, 0, None)
                }
                Outcome::Failed { reason, echo } => {
                    buf.push_str(r#","result":"ProcessingFailed","data":""#);
                    // The original goes back when it is valid base64 (which needs no escaping).
                    if echo {
                        buf.push_str(&rec.data);
                    }
                    buf.push('"');
                    (RecordResult::ProcessingFailed, 0, Some(reason))
                }
            };
            buf.push('}');
            chunk.entries.push(Entry {
                start,
                end: buf.len(),
                stub_len: (id_end - start) + r#","result":"ProcessingFailed","data":""}"#.len(),
                result,
                out_bytes,
                reason,
            });
        }
    }

    /// One record: its output line goes to `scratch.line`.
    fn record(
        &self,
        input: &RecordRef<'_>,
        processing_time: &RawValue,
        scratch: &mut Scratch,
        stats: &mut Stats,
    ) -> Outcome {
        scratch.decoded.clear();
        // SIMD base64: decoding and encoding are a large share of a batch's time.
        if base64_simd::STANDARD
            .decode_append(input.data.as_bytes(), &mut scratch.decoded)
            .is_err()
        {
            return Outcome::Failed {
                reason: "data is not valid base64".to_owned(),
                echo: false,
            };
        }
        stats.bytes_in += scratch.decoded.len() as u64;
        let data: &[u8] = if scratch.decoded.starts_with(&[0x1f, 0x8b]) {
            scratch.inflated.clear();
            if let Err(reason) = gunzip(
                &scratch.decoded,
                self.config.max_record_bytes,
                &mut scratch.inflated,
            ) {
                return Outcome::Failed { reason, echo: true };
            }
            &scratch.inflated
        } else {
            &scratch.decoded
        };
        let arrival_ms = input
            .approximate_arrival_timestamp
            .filter(|t| t.is_finite())
            .map(|t| t as i64);
        let arrival_time = match (&self.config.transform.add_arrival_time, arrival_ms) {
            (Some(_), Some(ms)) => DateTime::<Utc>::from_timestamp_millis(ms).map(|t| {
                scratch.stamp.clear();
                push_rfc3339_millis_json(t, &mut scratch.stamp);
                Raw::written(&scratch.stamp)
            }),
            _ => None,
        };
        let stamps = Stamps {
            processing_time,
            arrival_time,
        };
        let partition = &self.config.partition;
        let mut keys_of = |fields: &Fields<'_>| {
            let mut keys = String::with_capacity(96);
            stats.partition_fallbacks +=
                u64::from(partition.write_json(fields, arrival_ms, &mut keys));
            keys
        };

        if cloudwatch::looks_like_subscription(data) {
            return match cloudwatch::parse(data) {
                Ok(cloudwatch::Message::Control) => Outcome::Dropped,
                Ok(cloudwatch::Message::Data(events)) => {
                    let mut keys = None;
                    for line in &events {
                        let mut fields = match Fields::parse(line) {
                            Ok(f) => f,
                            Err(reason) => return Outcome::Failed { reason, echo: true },
                        };
                        if !self.config.transform.apply(&mut fields, stamps) {
                            continue;
                        }
                        if keys.is_none() && partition.is_enabled() {
                            // One record has one set of keys: the first kept event's.
                            keys = Some(keys_of(&fields));
                        }
                        fields.write_line(&mut scratch.line);
                    }
                    if scratch.line.is_empty() {
                        Outcome::Dropped
                    } else {
                        Outcome::Ok { keys }
                    }
                }
                Err(reason) => Outcome::Failed { reason, echo: true },
            };
        }

        if self.verbatim {
            // Nothing to change: a record already written as it would be written is copied
            // after the same validation (the others take the full path).
            match Fields::compact_span(data) {
                Ok(Some(object)) => {
                    // The output is the object and a newline: when the object starts the
                    // input's bytes, the input's base64 for its whole 3-byte groups is the
                    // output's too (a full group maps to one text), so only the rest is
                    // encoded.
                    let from = if object.start == 0 && std::ptr::eq(data, &scratch.decoded[..]) {
                        scratch.copied_groups = object.end / 3;
                        scratch.copied_groups * 3
                    } else {
                        object.start
                    };
                    scratch.line.extend_from_slice(&data[from..object.end]);
                    scratch.line.push(b'\n');
                    return Outcome::Ok { keys: None };
                }
                Ok(None) => {}
                Err(reason) => return Outcome::Failed { reason, echo: true },
            }
        }
        let mut fields = match Fields::parse(data) {
            Ok(f) => f,
            Err(reason) => return Outcome::Failed { reason, echo: true },
        };
        if !self.config.transform.apply(&mut fields, stamps) {
            return Outcome::Dropped;
        }
        let keys = partition.is_enabled().then(|| keys_of(&fields));
        fields.write_line(&mut scratch.line);
        Outcome::Ok { keys }
    }
}

fn write_stub(out: &mut String, record_id: &str) {
    out.push_str(r#"{"recordId":"#);
    push_json_string(out, record_id);
    out.push_str(r#","result":"ProcessingFailed","data":""}"#);
}

/// Decompresses every gzip member into `out`, refusing more than `limit` bytes of output.
fn gunzip(data: &[u8], limit: usize, out: &mut Vec<u8>) -> Result<(), String> {
    let mut reader = flate2::read::MultiGzDecoder::new(data).take(limit as u64 + 1);
    reader
        .read_to_end(out)
        .map_err(|e| format!("gzip data cannot be decompressed: {e}"))?;
    if out.len() > limit {
        return Err(format!(
            "decompressed record exceeds MAX_RECORD_BYTES ({limit} bytes)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threads_follow_the_functions_vcpus_by_memory() {
        let cores = Processor::new(Config::from_env(&Env::default()).expect("defaults")).workers;
        let workers = |mb: &str| {
            Processor::from_env(&Env::from_pairs([("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", mb)]))
                .expect("config")
                .workers
        };
        assert_eq!(workers("128"), 1);
        assert_eq!(workers("1769"), 1);
        assert_eq!(workers("1770"), cores.min(2));
        assert_eq!(workers("10240"), cores.min(6));
        assert_eq!(workers("not a number"), cores);
        let outside = Processor::from_env(&Env::default())
            .expect("config")
            .workers;
        assert_eq!(outside, cores);
    }
}
