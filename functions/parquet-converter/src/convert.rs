//! One object to Parquet: infer, decode, partition, encode, upload; all or nothing.
//!
//! 1. **Types**: the first `INFER_ROWS` rows are sampled and each column gets the narrowest
//!    type holding all its sampled values (see [`crate::types`]); `SCHEMA` fixes types by
//!    name. The sample is kept and replayed, so the object is read once when the types hold.
//! 2. **Records**: the stream is cut into records ([`crate::records`]) and decoded batch by
//!    batch with arrow's CSV/JSON decoders; dates and timestamps are parsed here.
//! 3. **Bad rows**: when a batch does not decode, it is split in halves until the rows at
//!    fault are found; those go to the quarantine file (`BAD_ROWS=quarantine`, JSON lines of
//!    line, error, raw text under `ERROR_PREFIX`) or fail the object (`BAD_ROWS=fail`).
//! 4. **Type drift**: a value in an inferred column that does not fit its type is not a bad
//!    row: every output is aborted, the column is widened (`int64 -> float64 -> string`,
//!    `date -> timestamp -> string`) and the object is read again; nothing is dropped. A JSON
//!    field first seen after the sample adds a column the same way.
//! 5. **Partition** each batch (`PARTITION_BY`, or the `k=v` segments of the input key) and
//!    append it to that partition's Parquet file, whose bytes stream into an S3 multipart
//!    upload as row groups fill. A file is closed ("sealed": uploaded, not yet visible) when
//!    it reaches `TARGET_FILE_MB`, when more than `MAX_OPEN_PARTITIONS` are open (the least
//!    recently written one), or when the bytes held exceed `MEMORY_BUDGET_MB` (idle files
//!    first, then the largest row group is flushed, then the largest file is closed).
//! 6. **Finish**: only when the whole input decoded are the files completed; a failure aborts
//!    every upload, and a failure while completing deletes what was already completed.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, BooleanArray, Date32Array, RecordBatch, StringArray,
    TimestampMicrosecondArray, UInt32Array, new_null_array,
};
use arrow::compute::kernels::cast::cast;
use arrow::compute::{filter_record_batch, take_record_batch};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::error::ArrowError;
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;
use tokio::io::AsyncReadExt;
use tracing::{info, warn};
use tributary::reader::{Compression, open};
use tributary::{Error, ObjectRef, S3Writer, SealedUpload, WriterConfig};

use crate::config::{BadRows, Config, Format, PartitionSpec};
use crate::naming::{HIVE_DEFAULT_PARTITION, Names, hive_escape};
use crate::records::{Framing, Rec, Splitter, json_framing};
use crate::types::{ColType, Inference};

const READ_CHUNK: usize = 256 * 1024;
/// S3's longest key, in bytes.
const MAX_KEY: usize = 1024;
const MIB: usize = 1024 * 1024;
/// Passes over one object at most (each widens a column or adds one).
const MAX_PASSES: usize = 64;

/// What one conversion produced.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Summary {
    /// The input, `s3://bucket/key`.
    pub source: String,
    /// Rows written.
    pub rows: u64,
    /// Rows that could not be read (quarantined).
    pub bad_rows: u64,
    /// The quarantine file, when there were bad rows.
    pub bad_rows_file: Option<OutputFile>,
    /// Bytes read from S3 (compressed).
    pub bytes_in: u64,
    /// Parquet bytes written.
    pub bytes_out: u64,
    /// Output files, `s3://bucket/key` with their rows.
    pub files: Vec<OutputFile>,
    /// Distinct partitions.
    pub partitions: usize,
    /// Rows whose partition value was null or unparseable.
    pub default_partition_rows: u64,
    /// Times the object was re-read after widening a column.
    pub type_widenings: u32,
    /// The schema written, `name: type`.
    pub schema: Vec<String>,
}

/// One file written.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OutputFile {
    /// Bucket.
    pub bucket: String,
    /// Key.
    pub key: String,
    /// Rows in it.
    pub rows: u64,
    /// Size in bytes.
    pub bytes: u64,
}

/// Converts one object (already checked to be a valid input).
pub async fn convert(
    client: &aws_sdk_s3::Client,
    cfg: &Config,
    object: &ObjectRef,
    names: &Names,
) -> Result<Summary, Error> {
    let from_key = format_from_key(&object.key);
    let mut reader = open(client, object, Compression::Auto).await?;
    let mut sample = Vec::with_capacity(MIB);
    read_sample(&mut reader, &mut sample, cfg.infer_rows).await?;
    let format = cfg
        .input_format
        .or(from_key)
        .unwrap_or_else(|| sniff_format(&sample));
    let mut plan = Plan::infer(cfg, format, &sample).map_err(|reason| Error::Decode {
        what: object.to_string(),
        reason,
    })?;
    let out_bucket = cfg
        .output_bucket
        .clone()
        .unwrap_or_else(|| object.bucket.clone());
    let mut widenings = 0;
    // The first pass reuses the open reader and its sample; later passes read the object again.
    let mut first = Some((reader, sample));
    loop {
        let (reader, sample) = match first.take() {
            Some(r) => r,
            None => (open(client, object, Compression::Auto).await?, Vec::new()),
        };
        let mut run = Run::new(client, cfg, names, object, &out_bucket, &plan);
        match run.decode_all(reader, sample).await {
            Ok(bytes_in) => {
                let mut summary = run.finish().await?;
                summary.bytes_in = bytes_in;
                summary.type_widenings = widenings;
                return Ok(summary);
            }
            Err(Failure::Drift(change)) => {
                run.abort().await;
                widenings += 1;
                if widenings as usize >= MAX_PASSES {
                    return Err(Error::Decode {
                        what: object.to_string(),
                        reason: format!("types still do not fit after {widenings} widenings"),
                    });
                }
                info!(object = %object, change = %change.describe(&plan), "a value does not fit the inferred types: widening and reading again");
                plan.apply(change);
            }
            Err(Failure::Other(e)) => {
                run.abort().await;
                return Err(e);
            }
        }
    }
}

/// Why a pass stopped.
enum Failure {
    /// The types must change; the object is read again.
    Drift(Change),
    /// Anything else.
    Other(Error),
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Other(e)
    }
}

/// A change to the column plan.
#[derive(Debug, Clone, PartialEq)]
enum Change {
    /// Column `i` takes the next wider type.
    Widen(usize),
    /// Column `i` becomes text: an integer too large for `int64`, which `float64` would
    /// round, is kept exactly as written.
    Text(usize),
    /// A JSON field not seen in the sample.
    Add(Field),
}

impl Change {
    fn describe(&self, plan: &Plan) -> String {
        match self {
            Change::Widen(i) => {
                let c = &plan.columns[*i];
                format!("column {:?} is wider than {}", c.name, c.data_type)
            }
            Change::Text(i) => {
                let c = &plan.columns[*i];
                format!(
                    "column {:?} holds an integer beyond {}",
                    c.name, c.data_type
                )
            }
            Change::Add(f) => format!("new field {:?} ({})", f.name(), f.data_type()),
        }
    }
}

fn format_from_key(key: &str) -> Option<Format> {
    let lower = key.to_ascii_lowercase();
    let base = lower
        .trim_end_matches(".gz")
        .trim_end_matches(".gzip")
        .trim_end_matches(".zst")
        .trim_end_matches(".zstd");
    if base.ends_with(".csv") {
        Some(Format::Csv)
    } else if base.ends_with(".tsv") || base.ends_with(".tab") {
        Some(Format::Tsv)
    } else if base.ends_with(".json") || base.ends_with(".jsonl") || base.ends_with(".ndjson") {
        Some(Format::Json)
    } else {
        None
    }
}

fn sniff_format(sample: &[u8]) -> Format {
    match strip_bom(sample).iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') | Some(b'[') => Format::Json,
        _ => Format::Csv,
    }
}

/// Reads about `rows` lines into `sample`: at most 8 MiB, unless fewer than two lines (a
/// header and a record) have arrived by then; then on up to the longest record.
async fn read_sample(
    reader: &mut tributary::reader::ObjectReader,
    sample: &mut Vec<u8>,
    rows: usize,
) -> Result<(), Error> {
    let mut chunk = vec![0u8; READ_CHUNK];
    let mut lines = 0usize;
    while lines <= rows
        && (sample.len() < 8 * MIB
            || (lines < 2 && sample.len() <= crate::records::MAX_RECORD + MIB))
    {
        let n = reader
            .read(&mut chunk)
            .await
            .map_err(|e| Error::io("reading the input", e))?;
        if n == 0 {
            break;
        }
        lines += memchr::memchr_iter(b'\n', &chunk[..n]).count();
        sample.extend_from_slice(&chunk[..n]);
    }
    Ok(())
}

fn strip_bom(data: &[u8]) -> &[u8] {
    data.strip_prefix(&[0xEF, 0xBB, 0xBF]).unwrap_or(data)
}

/// One output column.
#[derive(Debug, Clone, PartialEq)]
struct Column {
    name: String,
    /// Type written to Parquet.
    data_type: DataType,
    /// Typed by `SCHEMA`: a value that does not fit is a bad row, not drift.
    fixed: bool,
    /// Present in the input (a `SCHEMA` column missing from a CSV header is all null).
    in_input: bool,
    /// JSON: nested values are kept as JSON text (the field mixes objects or arrays with
    /// other values, so no one Arrow type holds it).
    json_text: bool,
}

impl Column {
    fn temporal(&self) -> Option<ColType> {
        ColType::of_arrow(&self.data_type).filter(|t| t.is_temporal())
    }

    /// What the decoder produces for it: text for dates and timestamps (parsed here).
    fn decode_type(&self) -> DataType {
        match self.temporal() {
            Some(_) => DataType::Utf8,
            None => self.data_type.clone(),
        }
    }
}

/// How to read one object: format, framing and columns.
#[derive(Debug, Clone)]
struct Plan {
    format: Format,
    framing: Framing,
    delimiter: u8,
    null_regex: regex::Regex,
    formats: Vec<String>,
    columns: Vec<Column>,
    /// CSV: the first record is the header.
    header: bool,
}

impl Plan {
    /// Infers the plan from the sample (whole records only: the last may be cut).
    fn infer(cfg: &Config, format: Format, sample: &[u8]) -> Result<Plan, String> {
        let data = strip_bom(sample);
        let delimiter = match format {
            Format::Tsv => b'\t',
            _ => cfg.csv_delimiter,
        };
        let framing = match format {
            Format::Csv | Format::Tsv => Framing::Csv { delimiter },
            Format::Json => {
                if data.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
                    return Err(
                        "a JSON array document: expected JSON lines or concatenated JSON objects"
                            .into(),
                    );
                }
                json_framing(data)
            }
        };
        let mut recs = Vec::new();
        Splitter::new(framing)
            .split(data, 0, false, cfg.infer_rows + 1, &mut recs)
            .map_err(|t| format!("a record starting at line {} never ends", t.line))?;
        if recs.is_empty() && !data.is_empty() {
            // Smaller than one record: the sample is the whole input.
            Splitter::new(framing)
                .split(data, 0, true, 1, &mut recs)
                .map_err(|t| format!("a record starting at line {} never ends", t.line))?;
        }
        let mut plan = Plan {
            format,
            framing,
            delimiter,
            null_regex: cfg.null_regex.clone(),
            formats: cfg.timestamp_formats.clone(),
            columns: Vec::new(),
            header: matches!(format, Format::Csv | Format::Tsv),
        };
        match format {
            Format::Csv | Format::Tsv => plan.infer_csv(data, &recs)?,
            Format::Json => plan.infer_json(data, &recs)?,
        }
        for spec in &cfg.schema {
            match plan.columns.iter_mut().find(|c| c.name == spec.name) {
                Some(c) => {
                    c.data_type = spec.ty.arrow();
                    c.fixed = true;
                }
                None => plan.columns.push(Column {
                    name: spec.name.clone(),
                    data_type: spec.ty.arrow(),
                    fixed: true,
                    in_input: format == Format::Json,
                    json_text: false,
                }),
            }
        }
        if plan.columns.is_empty() {
            return Err("no columns found in the first rows".into());
        }
        Ok(plan)
    }

    fn infer_csv(&mut self, data: &[u8], recs: &[Rec]) -> Result<(), String> {
        let Some(head) = recs.first() else {
            return Err("no header line".into());
        };
        let names = arrow::csv::reader::Format::default()
            .with_header(true)
            .with_delimiter(self.delimiter)
            .infer_schema(std::io::Cursor::new(&data[head.start..head.end]), Some(0))
            .map_err(|e| format!("the header line: {e}"))?
            .0;
        let mut seen: HashMap<String, usize> = HashMap::new();
        for (i, f) in names.fields().iter().enumerate() {
            let base = match f.name().trim() {
                "" => format!("column_{}", i + 1),
                n => n.to_owned(),
            };
            let n = seen.entry(base.clone()).or_insert(0);
            *n += 1;
            let name = if *n == 1 { base } else { format!("{base}_{n}") };
            self.columns.push(Column {
                name,
                data_type: DataType::Utf8,
                fixed: false,
                in_input: true,
                json_text: false,
            });
        }
        // Decode the sampled rows as text and look at every value.
        let mut text = Decoding::new(self, true).map_err(|e| e.to_string())?;
        let mut inference = vec![Inference::default(); self.columns.len()];
        let mut good = Vec::new();
        let mut bad = Vec::new();
        text.isolate(data, &recs[1..], 0, &mut good, &mut bad);
        for (batch, _) in &good {
            for (i, inf) in inference.iter_mut().enumerate() {
                let Some(col) = batch.column(i).as_any().downcast_ref::<StringArray>() else {
                    continue;
                };
                for v in col.iter().flatten() {
                    inf.see(v, &self.formats);
                }
            }
        }
        for (c, inf) in self.columns.iter_mut().zip(&inference) {
            c.data_type = inf.result().arrow();
        }
        Ok(())
    }

    fn infer_json(&mut self, data: &[u8], recs: &[Rec]) -> Result<(), String> {
        // Objects only, for arrow's inference; values that do not parse are left to the
        // decoding pass (which quarantines them).
        let mut first_error = None;
        let mut objects: Vec<serde_json::Map<String, serde_json::Value>> = recs
            .iter()
            .filter_map(
                |r| match serde_json::from_slice(data[r.start..r.end].trim_ascii()) {
                    Ok(serde_json::Value::Object(m)) => Some(m),
                    Ok(_) => {
                        first_error.get_or_insert((r.line, "not a JSON object".to_owned()));
                        None
                    }
                    Err(e) => {
                        // serde_json's message names its limits (nesting depth: 128).
                        first_error.get_or_insert((r.line, e.to_string()));
                        None
                    }
                },
            )
            .collect();
        if objects.is_empty()
            && let Some((line, why)) = first_error
        {
            return Err(format!(
                "no JSON object in the first rows could be read; line {line}: {why}"
            ));
        }
        // A field holding objects or arrays in some rows and something else in others has no
        // one Arrow type: it is kept as JSON text.
        let mut kinds: HashMap<String, (bool, bool)> = HashMap::new();
        for o in &objects {
            for (k, v) in o {
                let e = kinds.entry(k.clone()).or_default();
                match v {
                    serde_json::Value::Object(_) | serde_json::Value::Array(_) => e.0 = true,
                    serde_json::Value::Null => {}
                    _ => e.1 = true,
                }
            }
        }
        let mut text: Vec<String> = kinds
            .iter()
            .filter(|(_, (nested, scalar))| *nested && *scalar)
            .map(|(k, _)| k.clone())
            .collect();
        let schema = loop {
            // Fields kept as text hold their nested values as JSON strings before inference
            // sees them (whichever shape came first in the sample).
            for o in &mut objects {
                for t in &text {
                    if let Some(v) = o.get_mut(t)
                        && (v.is_object() || v.is_array())
                    {
                        *v = serde_json::Value::String(v.to_string());
                    }
                }
            }
            let mut lines = Vec::with_capacity(data.len());
            for o in &objects {
                serde_json::to_writer(&mut lines, o).map_err(|e| e.to_string())?;
                lines.push(b'\n');
            }
            match arrow::json::reader::infer_json_schema(std::io::Cursor::new(lines), None) {
                Ok((schema, _)) => break schema,
                // Nested values whose shapes conflict: keep the field named as text.
                Err(e) => {
                    let msg = e.to_string();
                    let culprit = kinds
                        .keys()
                        .find(|k| !text.iter().any(|t| t == *k) && msg.contains(&format!("'{k}'")))
                        .or_else(|| {
                            kinds
                                .iter()
                                .find(|(k, (nested, _))| *nested && !text.iter().any(|t| t == *k))
                                .map(|(k, _)| k)
                        });
                    match culprit {
                        Some(k) => text.push(k.clone()),
                        None => return Err(format!("inferring JSON types: {e}")),
                    }
                }
            }
        };
        for f in schema.fields() {
            let json_text = text.iter().any(|t| t == f.name());
            let mut data_type = if json_text {
                DataType::Utf8
            } else {
                normalise(f.data_type())
            };
            if data_type == DataType::Utf8 && !json_text {
                // JSON has no date type: strings that all read as dates/timestamps become one.
                let mut inf = Inference::default();
                for o in &objects {
                    if let Some(serde_json::Value::String(s)) = o.get(f.name()) {
                        inf.see(s, &self.formats);
                    }
                }
                if let ty @ (ColType::Date | ColType::Timestamp | ColType::TimestampTz) =
                    inf.result()
                {
                    data_type = ty.arrow();
                }
            }
            if matches!(data_type, DataType::Int64 | DataType::Float64)
                && objects.iter().any(|o| {
                    o.get(f.name())
                        .and_then(serde_json::Value::as_number)
                        .is_some_and(|n| n.is_u64() && !n.is_i64())
                })
            {
                // An integer beyond int64: float64 would round it; its text is exact.
                data_type = DataType::Utf8;
            }
            self.columns.push(Column {
                name: f.name().clone(),
                data_type,
                fixed: false,
                in_input: true,
                json_text,
            });
        }
        Ok(())
    }

    fn apply(&mut self, change: Change) {
        match change {
            Change::Widen(i) => {
                let json = self.format == Format::Json;
                let c = &mut self.columns[i];
                match ColType::of_arrow(&c.data_type).and_then(ColType::widen) {
                    Some(next) => c.data_type = next.arrow(),
                    None if json => {
                        c.data_type = DataType::Utf8;
                        c.json_text = true;
                    }
                    None => {}
                }
            }
            Change::Text(i) => self.columns[i].data_type = DataType::Utf8,
            Change::Add(f) => self.columns.push(Column {
                name: f.name().clone(),
                data_type: normalise(f.data_type()),
                fixed: false,
                in_input: true,
                json_text: false,
            }),
        }
    }

    fn can_widen(&self, i: usize) -> bool {
        let c = &self.columns[i];
        let wider = ColType::of_arrow(&c.data_type)
            .and_then(ColType::widen)
            .is_some();
        !c.fixed && !c.json_text && (wider || self.format == Format::Json)
    }

    /// JSON fields kept as text, if any.
    fn text_fields(&self) -> Vec<&str> {
        self.columns
            .iter()
            .filter(|c| c.json_text)
            .map(|c| c.name.as_str())
            .collect()
    }

    fn output_schema(&self) -> SchemaRef {
        Arc::new(Schema::new(
            self.columns
                .iter()
                .map(|c| Field::new(&c.name, c.data_type.clone(), true))
                .collect::<Vec<_>>(),
        ))
    }
}

/// Types as written: microsecond timestamps, text for all-null columns.
fn normalise(dt: &DataType) -> DataType {
    match dt {
        DataType::Null => DataType::Utf8,
        DataType::Timestamp(_, tz) => DataType::Timestamp(TimeUnit::Microsecond, tz.clone()),
        DataType::List(f) => DataType::List(Arc::new(Field::new(
            f.name(),
            normalise(f.data_type()),
            true,
        ))),
        DataType::Struct(fields) => DataType::Struct(
            fields
                .iter()
                .map(|f| Field::new(f.name(), normalise(f.data_type()), true))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Decoding records into batches of the plan's decode types.
struct Decoding {
    format: Format,
    delimiter: u8,
    null_regex: regex::Regex,
    /// Decode schema: the input's columns, temporal ones as text.
    schema: SchemaRef,
    /// Output column -> decode column.
    map: Vec<Option<usize>>,
    scratch: Vec<u8>,
}

impl Decoding {
    /// `as_text`: every column as text (for inference).
    fn new(plan: &Plan, as_text: bool) -> Result<Decoding, ArrowError> {
        let mut fields = Vec::new();
        let mut map = Vec::new();
        for c in &plan.columns {
            if c.in_input {
                map.push(Some(fields.len()));
                let dt = if as_text {
                    DataType::Utf8
                } else {
                    c.decode_type()
                };
                fields.push(Field::new(&c.name, dt, true));
            } else {
                map.push(None);
            }
        }
        Ok(Decoding {
            format: plan.format,
            delimiter: plan.delimiter,
            null_regex: plan.null_regex.clone(),
            schema: Arc::new(Schema::new(fields)),
            map,
            scratch: Vec::new(),
        })
    }

    /// Decodes exactly `recs` (all from `buf`) into one batch.
    fn decode(&mut self, buf: &[u8], recs: &[Rec]) -> Result<RecordBatch, ArrowError> {
        let (Some(first), Some(last)) = (recs.first(), recs.last()) else {
            return Ok(RecordBatch::new_empty(self.schema.clone()));
        };
        let contiguous = recs.windows(2).all(|w| w[0].end == w[1].start);
        let bytes: &[u8] = if contiguous {
            &buf[first.start..last.end]
        } else {
            self.scratch.clear();
            for r in recs {
                self.scratch.extend_from_slice(&buf[r.start..r.end]);
                if !self.scratch.ends_with(b"\n") {
                    self.scratch.push(b'\n');
                }
            }
            &self.scratch
        };
        let batch = match self.format {
            Format::Csv | Format::Tsv => {
                // Room for one more row than there are records: the CSV tokenizer ends a
                // record at the `\r` of a CRLF and takes its `\n` only when it reads on, so a
                // batch that is full at the last `\r` would leave that `\n` unread. The row
                // count is checked below.
                let mut d = arrow::csv::ReaderBuilder::new(self.schema.clone())
                    .with_header(false)
                    .with_delimiter(self.delimiter)
                    .with_null_regex(self.null_regex.clone())
                    .with_batch_size(recs.len() + 1)
                    .build_decoder();
                feed(bytes, |b| d.decode(b))?;
                d.flush()?
            }
            Format::Json => {
                let mut d = arrow::json::ReaderBuilder::new(self.schema.clone())
                    .with_batch_size(recs.len())
                    .with_coerce_primitive(true)
                    .with_strict_mode(true)
                    .build_decoder()?;
                feed(bytes, |b| d.decode(b))?;
                d.flush()?
            }
        };
        let batch = batch.unwrap_or_else(|| RecordBatch::new_empty(self.schema.clone()));
        if batch.num_rows() != recs.len() {
            return Err(ArrowError::ParseError(format!(
                "{} records decoded into {} rows",
                recs.len(),
                batch.num_rows()
            )));
        }
        Ok(batch)
    }

    /// Decodes `recs`, splitting in halves around records that fail: good batches go to
    /// `good` (with the index range of their records, offset by `base`), failing records to
    /// `bad` with the decoder's message.
    fn isolate(
        &mut self,
        buf: &[u8],
        recs: &[Rec],
        base: usize,
        good: &mut Vec<(RecordBatch, std::ops::Range<usize>)>,
        bad: &mut Vec<(usize, String)>,
    ) {
        if recs.is_empty() {
            return;
        }
        match self.decode(buf, recs) {
            Ok(b) => good.push((b, base..base + recs.len())),
            Err(e) if recs.len() == 1 => bad.push((base, e.to_string())),
            Err(_) => {
                let mid = recs.len() / 2;
                self.isolate(buf, &recs[..mid], base, good, bad);
                self.isolate(buf, &recs[mid..], base + mid, good, bad);
            }
        }
    }
}

/// Copies JSON records with the nested values of `text` fields turned into JSON strings.
/// A record that does not parse is copied as it is (the decoder then reports it).
fn rewrite_json(buf: &[u8], recs: &[Rec], text: &[&str], out: &mut (Vec<u8>, Vec<Rec>)) {
    use serde_json::value::RawValue;
    let (bytes, new_recs) = out;
    for r in recs {
        let raw = &buf[r.start..r.end];
        let start = bytes.len();
        match serde_json::from_slice::<std::collections::BTreeMap<String, &RawValue>>(
            raw.trim_ascii(),
        ) {
            Ok(fields) => {
                bytes.push(b'{');
                for (n, (k, v)) in fields.iter().enumerate() {
                    if n > 0 {
                        bytes.push(b',');
                    }
                    let _ = serde_json::to_writer(&mut *bytes, k);
                    bytes.push(b':');
                    let v = v.get();
                    if v.starts_with(['{', '[']) && text.contains(&k.as_str()) {
                        let _ = serde_json::to_writer(&mut *bytes, v);
                    } else {
                        bytes.extend_from_slice(v.as_bytes());
                    }
                }
                bytes.extend_from_slice(b"}\n");
            }
            Err(_) => bytes.extend_from_slice(raw),
        }
        new_recs.push(Rec {
            start,
            end: bytes.len(),
            line: r.line,
        });
    }
}

/// Feeds all of `bytes` to a push decoder, then signals the end of input.
fn feed(
    bytes: &[u8],
    mut decode: impl FnMut(&[u8]) -> Result<usize, ArrowError>,
) -> Result<(), ArrowError> {
    let mut off = 0;
    while off < bytes.len() {
        let n = decode(&bytes[off..])?;
        if n == 0 {
            return Err(ArrowError::ParseError(
                "more rows than records in a batch".into(),
            ));
        }
        off += n;
    }
    decode(&[])?;
    Ok(())
}

/// Drops arrow's `Row data: '...'` suffix: a message may name a value, never a whole row.
fn scrub(message: &str) -> String {
    match message.find(". Row data: ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

/// The column a decoder error is about (`for column N`, or `field 'name'`).
fn column_in_error(schema: &SchemaRef, message: &str) -> Option<usize> {
    if let Some(rest) = message.split("for column ").nth(1) {
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        if let Ok(i) = digits.parse::<usize>()
            && i < schema.fields().len()
        {
            return Some(i);
        }
    }
    let name = message
        .split("whilst decoding field '")
        .nth(1)
        .and_then(|r| r.split('\'').next())?;
    schema.fields().iter().position(|f| f.name() == name)
}

/// Whether a decoder error is a value that does not fit its type (vs. a malformed row).
fn is_type_error(message: &str) -> bool {
    message.contains("Error while parsing value")
        || message.contains("failed to parse")
        || message.contains("expected")
            && !message.contains("incorrect number of fields")
            && (message.contains("got") || message.contains("Int") || message.contains("Float"))
}

/// The text of decode column `dc` in one record, read with every column as text.
fn value_as_text(plan: &Plan, buf: &[u8], rec: &Rec, dc: usize) -> Option<String> {
    let mut text = Decoding::new(plan, true).ok()?;
    let batch = text.decode(buf, std::slice::from_ref(rec)).ok()?;
    let col = batch.column(dc).as_any().downcast_ref::<StringArray>()?;
    col.is_valid(0).then(|| col.value(0).to_owned())
}

/// An optionally signed run of digits.
fn is_integer(v: &str) -> bool {
    let digits = v.strip_prefix(['-', '+']).unwrap_or(v);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

/// A row set aside.
struct BadRow {
    line: u64,
    error: String,
    raw: String,
}

/// One pass over the object with one plan.
struct Run<'a> {
    client: &'a aws_sdk_s3::Client,
    cfg: &'a Config,
    names: &'a Names,
    object: &'a ObjectRef,
    bucket: &'a str,
    plan: &'a Plan,
    schema: SchemaRef,
    props: WriterProperties,
    outputs: HashMap<String, Output>,
    /// Closed files, uploaded but not yet visible.
    sealed: Vec<(SealedUpload, u64)>,
    /// Next file number per partition (its keys are the partitions written).
    next_file: HashMap<String, usize>,
    quarantine: Option<S3Writer>,
    bad_rows: u64,
    rows: u64,
    default_partition_rows: u64,
    /// Batches appended so far (the clock for "least recently written").
    tick: u64,
    /// `PARTITION_BY`, or nothing when this input has none of its columns (then the `k=v`
    /// segments of the input key are the partition path, as for Firehose output).
    partition_by: Vec<PartitionSpec>,
}

/// One partition's file being written.
struct Output {
    key: String,
    parquet: ArrowWriter<Vec<u8>>,
    upload: S3Writer,
    rows: u64,
    last_write: u64,
}

impl Output {
    fn held(&self) -> usize {
        self.parquet.memory_size() + self.parquet.inner().len() + self.upload.bytes_held()
    }
}

impl<'a> Run<'a> {
    fn new(
        client: &'a aws_sdk_s3::Client,
        cfg: &'a Config,
        names: &'a Names,
        object: &'a ObjectRef,
        bucket: &'a str,
        plan: &'a Plan,
    ) -> Self {
        let props = WriterProperties::builder()
            .set_compression(cfg.compression)
            .set_max_row_group_row_count(Some(cfg.row_group_rows))
            .set_created_by(
                concat!("tributary parquet-converter ", env!("CARGO_PKG_VERSION")).to_owned(),
            )
            .build();
        let has = |c: &str| plan.columns.iter().any(|col| col.name == c);
        let partition_by = if cfg.partition_by.iter().any(|spec| match spec {
            PartitionSpec::Time { column, .. } | PartitionSpec::Value { column } => has(column),
        }) {
            cfg.partition_by.clone()
        } else {
            Vec::new()
        };
        Run {
            partition_by,
            client,
            cfg,
            names,
            object,
            bucket,
            plan,
            schema: plan.output_schema(),
            props,
            outputs: HashMap::new(),
            sealed: Vec::new(),
            next_file: HashMap::new(),
            quarantine: None,
            bad_rows: 0,
            rows: 0,
            default_partition_rows: 0,
            tick: 0,
        }
    }

    /// Decodes the whole object (after `sample`, which was already read from `reader`).
    async fn decode_all(
        &mut self,
        mut reader: tributary::reader::ObjectReader,
        sample: Vec<u8>,
    ) -> Result<u64, Failure> {
        let mut decoding = Decoding::new(self.plan, false).map_err(|e| arrow_err(&e))?;
        let mut splitter = Splitter::new(self.plan.framing);
        let mut pending = sample;
        let mut chunk = vec![0u8; READ_CHUNK];
        let mut recs: Vec<Rec> = Vec::with_capacity(self.cfg.batch_rows);
        let mut scanned = 0;
        let mut eof = false;
        let mut first = true;
        let mut header = self.plan.header;
        loop {
            if !eof && (pending.len() - scanned < READ_CHUNK || recs.is_empty()) {
                let n = reader
                    .read(&mut chunk)
                    .await
                    .map_err(|e| Error::io("reading the input", e))?;
                eof = n == 0;
                pending.extend_from_slice(&chunk[..n]);
            }
            if first && pending.len() >= 3 || eof {
                if first && pending.starts_with(&[0xEF, 0xBB, 0xBF]) {
                    pending.drain(..3);
                }
                first = false;
            }
            if first {
                continue;
            }
            let want = self.cfg.batch_rows + usize::from(header) - recs.len();
            scanned = splitter
                .split(&pending, scanned, eof, want, &mut recs)
                .map_err(|t| Error::Decode {
                    what: self.object.to_string(),
                    reason: if t.unclosed {
                        format!(
                            "the quoted field of the record starting at line {} never closes (a stray quote?)",
                            t.line
                        )
                    } else {
                        format!(
                            "the record starting at line {} is longer than {} MiB (an unclosed quote?)",
                            t.line,
                            crate::records::MAX_RECORD / MIB
                        )
                    },
                })?;
            let full = recs.len() >= self.cfg.batch_rows + usize::from(header);
            let done = eof && scanned == pending.len();
            if !(full || done) {
                continue;
            }
            let skip = usize::from(header && !recs.is_empty());
            header &= recs.is_empty();
            self.batch(&mut decoding, &pending, &recs[skip..]).await?;
            pending.drain(..scanned);
            scanned = 0;
            recs.clear();
            if done {
                break;
            }
        }
        Ok(reader.raw_bytes_read())
    }

    /// Decodes one batch of records, sets bad rows aside and appends the rest.
    async fn batch(
        &mut self,
        decoding: &mut Decoding,
        buf: &[u8],
        recs: &[Rec],
    ) -> Result<(), Failure> {
        let text = self.plan.text_fields();
        let mut rewritten = (Vec::new(), Vec::new());
        let (dbuf, drecs) = if text.is_empty() {
            (buf, recs)
        } else {
            rewrite_json(buf, recs, &text, &mut rewritten);
            (&rewritten.0[..], &rewritten.1[..])
        };
        let mut good = Vec::new();
        let mut bad = Vec::new();
        decoding.isolate(dbuf, drecs, 0, &mut good, &mut bad);
        let mut bad_rows = Vec::new();
        for (i, message) in bad {
            if let Some(change) = self.drift_in(decoding, dbuf, &drecs[i], &message) {
                return Err(Failure::Drift(change));
            }
            bad_rows.push((i, scrub(&message)));
        }
        for (batch, range) in good {
            let (out, failures) = self.to_output(decoding, &batch);
            if let Some(col) = failures
                .iter()
                .map(|f| f.1)
                .find(|c| self.plan.can_widen(*c))
            {
                return Err(Failure::Drift(Change::Widen(col)));
            }
            let out = if failures.is_empty() {
                out
            } else {
                let mut keep = vec![true; out.num_rows()];
                for (row, col, value) in &failures {
                    if keep[*row] {
                        keep[*row] = false;
                        let c = &self.plan.columns[*col];
                        bad_rows.push((
                            range.start + row,
                            format!(
                                "cannot read {value:?} as {} (column {:?})",
                                c.data_type, c.name
                            ),
                        ));
                    }
                }
                filter_record_batch(&out, &BooleanArray::from(keep)).map_err(|e| arrow_err(&e))?
            };
            self.write(out).await?;
        }
        bad_rows.sort_by_key(|b| b.0);
        for (i, error) in bad_rows {
            let r = &recs[i];
            let raw = &buf[r.start..r.end];
            let raw = raw.strip_suffix(b"\n").unwrap_or(raw);
            let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
            self.bad_row(BadRow {
                line: r.line,
                error,
                raw: String::from_utf8_lossy(raw).into_owned(),
            })
            .await?;
        }
        Ok(())
    }

    /// The plan change a failing record asks for, if it is type drift rather than a bad row.
    fn drift_in(
        &self,
        decoding: &Decoding,
        buf: &[u8],
        rec: &Rec,
        message: &str,
    ) -> Option<Change> {
        if let Some(rest) = message.strip_prefix("Json error: column '") {
            // A top-level field the sample did not show: infer its type from this record.
            let name = rest.split('\'').next()?;
            let body = buf[rec.start..rec.end].trim_ascii();
            let value: serde_json::Value = serde_json::from_slice(body).ok()?;
            let one = serde_json::to_vec(&serde_json::json!({ name: value.get(name)? })).ok()?;
            let (schema, _) =
                arrow::json::reader::infer_json_schema(std::io::Cursor::new(one), None).ok()?;
            return schema
                .field_with_name(name)
                .ok()
                .map(|f| Change::Add(f.clone()));
        }
        if !is_type_error(message) {
            return None;
        }
        let dc = column_in_error(&decoding.schema, message)?;
        let col = decoding.map.iter().position(|m| *m == Some(dc))?;
        if !self.plan.can_widen(col) {
            return None;
        }
        // An integer that does not fit int64 would lose digits as float64: keep it as text.
        if self.plan.columns[col].data_type == DataType::Int64
            && value_as_text(self.plan, buf, rec, dc).is_some_and(|v| is_integer(&v))
        {
            return Some(Change::Text(col));
        }
        Some(Change::Widen(col))
    }

    /// Builds the output columns from a decoded batch, parsing dates and timestamps. Returns
    /// the values that did not parse as (row, column, value).
    fn to_output(
        &self,
        decoding: &Decoding,
        batch: &RecordBatch,
    ) -> (RecordBatch, Vec<(usize, usize, String)>) {
        let n = batch.num_rows();
        let mut failures = Vec::new();
        let mut arrays: Vec<ArrayRef> = Vec::with_capacity(self.plan.columns.len());
        for (ci, c) in self.plan.columns.iter().enumerate() {
            let Some(di) = decoding.map[ci] else {
                arrays.push(new_null_array(&c.data_type, n));
                continue;
            };
            let col = batch.column(di);
            if !c.fixed
                && let Some(f) = col.as_any().downcast_ref::<arrow::array::Float64Array>()
            {
                // Inference never reads `inf`/`NaN` as a number: a non-finite value here is
                // a number out of range (`1e400`), which must not become infinity.
                for (row, v) in f.iter().enumerate() {
                    if let Some(v) = v.filter(|v| !v.is_finite()) {
                        failures.push((row, ci, v.to_string()));
                    }
                }
            }
            let (Some(kind), Some(text)) =
                (c.temporal(), col.as_any().downcast_ref::<StringArray>())
            else {
                arrays.push(col.clone());
                continue;
            };
            let formats = &self.plan.formats;
            let mut bad = |row: usize, v: &str| failures.push((row, ci, v.to_owned()));
            let array: ArrayRef = if kind == ColType::Date {
                Arc::new(Date32Array::from_iter(text.iter().enumerate().map(
                    |(row, v)| {
                        let v = v?;
                        let d = crate::types::parse_date(v, formats);
                        if d.is_none() {
                            bad(row, v);
                        }
                        d
                    },
                )))
            } else {
                let values = TimestampMicrosecondArray::from_iter(text.iter().enumerate().map(
                    |(row, v)| {
                        let v = v?;
                        let t = crate::types::parse_timestamp(v, formats).map(|t| t.0);
                        if t.is_none() {
                            bad(row, v);
                        }
                        t
                    },
                ));
                match kind {
                    ColType::TimestampTz => Arc::new(values.with_timezone("UTC")),
                    _ => Arc::new(values),
                }
            };
            arrays.push(array);
        }
        let out = RecordBatch::try_new(self.schema.clone(), arrays)
            .unwrap_or_else(|_| RecordBatch::new_empty(self.schema.clone()));
        (out, failures)
    }

    /// Quarantines or fails on one bad row.
    async fn bad_row(&mut self, row: BadRow) -> Result<(), Failure> {
        if self.cfg.bad_rows == BadRows::Fail {
            return Err(Failure::Other(Error::BadRow {
                what: self.object.to_string(),
                line: row.line,
                reason: row.error,
            }));
        }
        self.bad_rows += 1;
        let writer = self.quarantine.get_or_insert_with(|| {
            let key = self.names.bad_rows_key(&self.cfg.error_prefix);
            S3Writer::new(
                self.client.clone(),
                self.bucket,
                key,
                WriterConfig {
                    content_type: Some("application/x-ndjson".into()),
                    concurrency: 1,
                    ..WriterConfig::default()
                },
            )
        });
        let mut line = serde_json::to_vec(&serde_json::json!({
            "source": self.object.to_string(),
            "line": row.line,
            "error": row.error,
            "raw": row.raw,
        }))
        .map_err(|e| Error::Json {
            what: "a quarantined row".into(),
            source: e,
        })?;
        line.push(b'\n');
        writer.write(&line).await?;
        Ok(())
    }

    /// Splits a batch by partition and appends each part to its file.
    async fn write(&mut self, batch: RecordBatch) -> Result<(), Error> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        self.tick += 1;
        self.rows += batch.num_rows() as u64;
        let groups = self.partition_groups(&batch)?;
        let single = groups.len() == 1;
        for (path, rows) in groups {
            let part = if single {
                batch.clone()
            } else {
                take_record_batch(&batch, &UInt32Array::from(rows)).map_err(|e| arrow_err(&e))?
            };
            self.append(&path, part).await?;
        }
        self.keep_to_budget().await
    }

    async fn append(&mut self, path: &str, batch: RecordBatch) -> Result<(), Error> {
        if !self.outputs.contains_key(path) {
            while self.outputs.len() >= self.cfg.max_open_partitions {
                let lru = self
                    .outputs
                    .iter()
                    .min_by_key(|(_, o)| o.last_write)
                    .map(|(p, _)| p.clone());
                match lru {
                    Some(p) => self.seal(&p).await?,
                    None => break,
                }
            }
            self.open(path)?;
        }
        let (limit, target) = (self.cfg.row_group_bytes, self.cfg.target_file_bytes);
        let tick = self.tick;
        let Some(out) = self.outputs.get_mut(path) else {
            return Ok(());
        };
        out.rows += batch.num_rows() as u64;
        out.last_write = tick;
        out.parquet.write(&batch).map_err(|e| parquet_err(&e))?;
        if out.parquet.in_progress_size() >= limit {
            out.parquet.flush().map_err(|e| parquet_err(&e))?;
        }
        Self::drain(out).await?;
        let size = out.parquet.bytes_written() + out.parquet.in_progress_size();
        if size as u64 >= target {
            self.seal(path).await?;
        }
        Ok(())
    }

    fn open(&mut self, path: &str) -> Result<(), Error> {
        let n = self.next_file.entry(path.to_owned()).or_insert(0);
        let key = self.names.output_key(&self.cfg.output_prefix, path, *n);
        if key.len() > MAX_KEY {
            let shown: String = path.chars().take(120).collect();
            return Err(Error::Limit(format!(
                "the output key for partition {shown:?}… is {} bytes, over S3's {MAX_KEY}-byte key limit: a partition value that long cannot be a folder (PARTITION_BY)",
                key.len()
            )));
        }
        *n += 1;
        let parquet = ArrowWriter::try_new(
            Vec::with_capacity(64 * 1024),
            self.schema.clone(),
            Some(self.props.clone()),
        )
        .map_err(|e| parquet_err(&e))?;
        let upload = S3Writer::new(
            self.client.clone(),
            self.bucket,
            &key,
            WriterConfig {
                part_size: self.cfg.part_size_mib * MIB,
                concurrency: self.cfg.concurrency,
                content_type: Some("application/vnd.apache.parquet".into()),
                ..WriterConfig::default()
            },
        );
        self.outputs.insert(
            path.to_owned(),
            Output {
                key,
                parquet,
                upload,
                rows: 0,
                last_write: self.tick,
            },
        );
        Ok(())
    }

    /// Moves finished row groups from the Parquet writer to the upload.
    async fn drain(out: &mut Output) -> Result<(), Error> {
        if !out.parquet.inner().is_empty() {
            let bytes = std::mem::take(out.parquet.inner_mut());
            out.upload.write(&bytes).await?;
            // Keep the allocation for the next row group.
            let mut bytes = bytes;
            bytes.clear();
            *out.parquet.inner_mut() = bytes;
        }
        Ok(())
    }

    /// Closes a partition's file: footer written, every part uploaded, completed at the end.
    async fn seal(&mut self, path: &str) -> Result<(), Error> {
        let Some(out) = self.outputs.remove(path) else {
            return Ok(());
        };
        let Output {
            key,
            parquet,
            mut upload,
            rows,
            ..
        } = out;
        let tail = match close_file(parquet, &upload, &key) {
            Ok(t) => t,
            Err(e) => {
                let _ = upload.abort().await;
                return Err(e);
            }
        };
        upload.write(&tail).await?;
        let sealed = upload.seal().await?;
        tracing::debug!(key = %key, rows, bytes = sealed.bytes(), "file closed");
        self.sealed.push((sealed, rows));
        Ok(())
    }

    /// Keeps the bytes held by open files within `MEMORY_BUDGET_MB`.
    async fn keep_to_budget(&mut self) -> Result<(), Error> {
        loop {
            let held: usize = self.outputs.values().map(Output::held).sum();
            if held <= self.cfg.memory_budget {
                return Ok(());
            }
            // Files not written by this batch are done for now: close the stalest.
            let idle = self
                .outputs
                .iter()
                .filter(|(_, o)| o.last_write < self.tick)
                .min_by_key(|(_, o)| o.last_write)
                .map(|(p, _)| p.clone());
            if let Some(p) = idle {
                self.seal(&p).await?;
                continue;
            }
            let Some((path, flushable)) = self
                .outputs
                .iter()
                .max_by_key(|(_, o)| o.held())
                .map(|(p, o)| (p.clone(), o.parquet.in_progress_size() > 0))
            else {
                return Ok(());
            };
            if flushable && let Some(out) = self.outputs.get_mut(&path) {
                // A smaller row group first; the file goes on.
                out.parquet.flush().map_err(|e| parquet_err(&e))?;
                Self::drain(out).await?;
                if out.held() + MIB < self.cfg.memory_budget / self.outputs.len().max(1) {
                    continue;
                }
            }
            self.seal(&path).await?;
        }
    }

    /// The batch's rows grouped by partition path, paths in order. Each distinct value is
    /// formatted once per batch, not once per row.
    fn partition_groups(&mut self, batch: &RecordBatch) -> Result<Vec<(String, Vec<u32>)>, Error> {
        let n = batch.num_rows();
        if self.partition_by.is_empty() {
            let fixed = self.names.key_partitions.join("/");
            return Ok(vec![(fixed, (0..n as u32).collect())]);
        }
        let specs = self
            .partition_by
            .iter()
            .map(|spec| match spec {
                PartitionSpec::Time { column, depth } => {
                    time_segments(batch, column, *depth, &self.plan.formats)
                }
                PartitionSpec::Value { column } => value_segments(batch, column),
            })
            .collect::<Result<Vec<Segments>, Error>>()?;
        // Rows with the same code in every spec share a path: one number per row when the
        // codes fit (mixed radix), else the list of codes.
        let fits = specs
            .iter()
            .try_fold(1u64, |acc, s| acc.checked_mul(s.segments.len() as u64))
            .is_some();
        let groups: Vec<Vec<u32>> = if fits {
            let mut g: HashMap<u64, Vec<u32>> = HashMap::new();
            for row in 0..n {
                let key = specs.iter().fold(0u64, |k, s| {
                    k * s.segments.len() as u64 + u64::from(s.codes[row])
                });
                g.entry(key).or_default().push(row as u32);
            }
            g.into_values().collect()
        } else {
            let mut g: HashMap<Vec<u32>, Vec<u32>> = HashMap::new();
            for row in 0..n {
                let key = specs.iter().map(|s| s.codes[row]).collect();
                g.entry(key).or_default().push(row as u32);
            }
            g.into_values().collect()
        };
        let mut out: Vec<(String, Vec<u32>)> = groups
            .into_iter()
            .map(|rows| {
                let first = rows[0] as usize;
                let mut defaulted = false;
                let path = specs
                    .iter()
                    .map(|s| {
                        let (seg, d) = &s.segments[s.codes[first] as usize];
                        defaulted |= *d;
                        seg.as_str()
                    })
                    .collect::<Vec<_>>()
                    .join("/");
                if defaulted {
                    self.default_partition_rows += rows.len() as u64;
                }
                (path, rows)
            })
            .collect();
        out.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// Closes every file and completes every upload; on failure removes what was completed.
    /// Files still open go up now (one PutObject when small); sealed ones are completed.
    async fn finish(mut self) -> Result<Summary, Error> {
        let mut last: Vec<(S3Writer, u64)> = Vec::new();
        for (_, out) in std::mem::take(&mut self.outputs) {
            let Output {
                key,
                parquet,
                mut upload,
                rows,
                ..
            } = out;
            let written = match close_file(parquet, &upload, &key) {
                Ok(tail) => upload.write(&tail).await,
                Err(e) => Err(e),
            };
            if let Err(e) = written {
                let _ = upload.abort().await;
                for (w, _) in last {
                    let _ = w.abort().await;
                }
                self.abort().await;
                return Err(e);
            }
            last.push((upload, rows));
        }
        let bad_rows_key = self
            .quarantine
            .as_ref()
            .map(|_| self.names.bad_rows_key(&self.cfg.error_prefix));
        if let Some(writer) = self.quarantine.take() {
            last.push((writer, self.bad_rows));
        }
        let sealed = std::mem::take(&mut self.sealed);
        // Complete them all, a few at a time; any failure removes the others again.
        let results: Vec<(Result<tributary::WriteOutcome, Error>, u64)> = {
            use futures::{FutureExt, StreamExt};
            let finishing = last
                .into_iter()
                .map(|(w, rows)| async move { (w.finish().await, rows) }.boxed());
            let completing = sealed
                .into_iter()
                .map(|(s, rows)| async move { (s.complete().await, rows) }.boxed());
            futures::stream::iter(finishing.chain(completing))
                .buffered(8)
                .collect()
                .await
        };
        let mut files = Vec::with_capacity(results.len());
        let mut failure = None;
        for (r, rows) in results {
            match r {
                Ok(o) => files.push(OutputFile {
                    bucket: o.bucket,
                    key: o.key,
                    rows,
                    bytes: o.bytes,
                }),
                Err(e) => {
                    failure.get_or_insert(e);
                }
            }
        }
        if let Some(e) = failure {
            for f in &files {
                if let Err(del) = self
                    .client
                    .delete_object()
                    .bucket(&f.bucket)
                    .key(&f.key)
                    .send()
                    .await
                {
                    warn!(key = %f.key, error = %del, "could not remove a completed output after a failure");
                }
            }
            return Err(e);
        }
        let bad_rows_file = bad_rows_key.and_then(|k| {
            let i = files.iter().position(|f| f.key == k)?;
            Some(files.remove(i))
        });
        files.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(Summary {
            source: self.object.to_string(),
            rows: self.rows,
            bad_rows: self.bad_rows,
            bad_rows_file,
            bytes_in: 0,
            bytes_out: files.iter().map(|f| f.bytes).sum(),
            // Every partition opened at least one file.
            partitions: self.next_file.len(),
            files,
            default_partition_rows: self.default_partition_rows,
            type_widenings: 0,
            schema: self
                .schema
                .fields()
                .iter()
                .map(|f| format!("{}: {}", f.name(), f.data_type()))
                .collect(),
        })
    }

    /// Aborts every output of this pass.
    async fn abort(&mut self) {
        for (_, out) in std::mem::take(&mut self.outputs) {
            if let Err(e) = out.upload.abort().await {
                warn!(key = %out.key, error = %e, "abort failed; the bucket's lifecycle rule will clean up");
            }
        }
        for (s, _) in std::mem::take(&mut self.sealed) {
            let key = s.key().to_owned();
            if let Err(e) = s.abort().await {
                warn!(key = %key, error = %e, "abort failed; the bucket's lifecycle rule will clean up");
            }
        }
        if let Some(w) = self.quarantine.take() {
            let _ = w.abort().await;
        }
    }
}

/// Closes a file's Parquet writer: its last bytes, footer included, with float statistics
/// every reader uses ([`crate::footer`]).
fn close_file(
    parquet: ArrowWriter<Vec<u8>>,
    upload: &S3Writer,
    key: &str,
) -> Result<Vec<u8>, Error> {
    let mut tail = parquet.into_inner().map_err(|e| parquet_err(&e))?;
    if let Err(reason) = crate::footer::amend_float_statistics(&mut tail, upload.bytes_written()) {
        warn!(key, reason = %reason, "float statistics left in the total order only newer readers use");
    }
    Ok(tail)
}

fn column<'b>(batch: &'b RecordBatch, name: &str) -> Result<&'b ArrayRef, Error> {
    batch.column_by_name(name).ok_or_else(|| {
        Error::config(
            "PARTITION_BY",
            name,
            "no such column in this input",
            batch
                .schema()
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .collect::<Vec<_>>()
                .join(", "),
        )
    })
}

/// One partition spec over a batch: a code per row into distinct path segments
/// (`year=2024/month=01`, `col=value`), each with whether it holds a default value.
struct Segments {
    codes: Vec<u32>,
    segments: Vec<(String, bool)>,
}

/// `year=/month=/day=/hour=` segments (the first `depth`) of a date or timestamp column, from
/// its UTC instant: a timestamp with an offset lands on the UTC day and hour it denotes
/// (`2024-03-10T23:30:00-05:00` is `day=11/hour=04`), a naive one on its wall-clock day. Text
/// columns are read with the converter's own timestamp parser; a value that is not a date or
/// timestamp, and a null, go to the default partition.
fn time_segments(
    batch: &RecordBatch,
    name: &str,
    depth: usize,
    formats: &[String],
) -> Result<Segments, Error> {
    use arrow::array::AsArray;
    use arrow::datatypes::{
        Date32Type, Date64Type, TimestampMicrosecondType, TimestampMillisecondType,
        TimestampNanosecondType, TimestampSecondType,
    };
    let col = column(batch, name)?;
    let depth = depth.clamp(1, 4);
    // One bucket per hour at depth 4, per day otherwise; each distinct bucket is formatted once.
    let unit: i64 = if depth == 4 {
        3_600_000_000
    } else {
        86_400_000_000
    };
    let n = batch.num_rows();
    let micros: Vec<Option<i64>> = match col.data_type() {
        DataType::Timestamp(TimeUnit::Second, _) => col
            .as_primitive::<TimestampSecondType>()
            .iter()
            .map(|v| v.and_then(|v| v.checked_mul(1_000_000)))
            .collect(),
        DataType::Timestamp(TimeUnit::Millisecond, _) => col
            .as_primitive::<TimestampMillisecondType>()
            .iter()
            .map(|v| v.and_then(|v| v.checked_mul(1_000)))
            .collect(),
        DataType::Timestamp(TimeUnit::Microsecond, _) => col
            .as_primitive::<TimestampMicrosecondType>()
            .iter()
            .collect(),
        DataType::Timestamp(TimeUnit::Nanosecond, _) => col
            .as_primitive::<TimestampNanosecondType>()
            .iter()
            .map(|v| v.map(|v| v.div_euclid(1_000)))
            .collect(),
        DataType::Date32 => col
            .as_primitive::<Date32Type>()
            .iter()
            .map(|d| d.map(|d| i64::from(d) * 86_400_000_000))
            .collect(),
        DataType::Date64 => col
            .as_primitive::<Date64Type>()
            .iter()
            .map(|d| d.and_then(|d| d.checked_mul(1_000)))
            .collect(),
        _ => {
            let text = cast(col, &DataType::Utf8).map_err(|e| arrow_err(&e))?;
            text.as_string::<i32>()
                .iter()
                .map(|v| {
                    v.and_then(|v| crate::types::parse_timestamp(v, formats))
                        .map(|t| t.0)
                })
                .collect()
        }
    };
    let names = ["year", "month", "day", "hour"];
    let mut dict: HashMap<Option<i64>, u32> = HashMap::new();
    let mut out = Segments {
        codes: Vec::with_capacity(n),
        segments: Vec::new(),
    };
    for v in micros {
        let bucket = v.map(|t| t.div_euclid(unit));
        let code = *dict.entry(bucket).or_insert_with(|| {
            let at = bucket
                .and_then(|b| b.checked_mul(unit))
                .and_then(chrono::DateTime::from_timestamp_micros);
            let seg = match at {
                Some(at) => {
                    use chrono::{Datelike, Timelike};
                    let values = [
                        at.year(),
                        at.month() as i32,
                        at.day() as i32,
                        at.hour() as i32,
                    ];
                    (0..depth)
                        .map(|l| match l {
                            0 => format!("{}={:04}", names[l], values[l]),
                            _ => format!("{}={:02}", names[l], values[l]),
                        })
                        .collect::<Vec<_>>()
                        .join("/")
                }
                None => (0..depth)
                    .map(|l| format!("{}={HIVE_DEFAULT_PARTITION}", names[l]))
                    .collect::<Vec<_>>()
                    .join("/"),
            };
            out.segments.push((seg, at.is_none()));
            out.segments.len() as u32 - 1
        });
        out.codes.push(code);
    }
    Ok(out)
}

fn value_segments(batch: &RecordBatch, name: &str) -> Result<Segments, Error> {
    let col = column(batch, name)?;
    let strings = cast(col, &DataType::Utf8).map_err(|e| arrow_err(&e))?;
    let strings = strings
        .as_any()
        .downcast_ref::<StringArray>()
        .ok_or_else(|| Error::Decode {
            what: format!("partition column {name}"),
            reason: "cannot be read as text".into(),
        })?;
    let key = hive_escape(name);
    let mut dict: HashMap<Option<&str>, u32> = HashMap::new();
    let mut out = Segments {
        codes: Vec::with_capacity(batch.num_rows()),
        segments: Vec::new(),
    };
    for row in 0..batch.num_rows() {
        let v = strings.is_valid(row).then(|| strings.value(row));
        let code = *dict.entry(v).or_insert_with(|| {
            let (value, defaulted) = match v {
                Some(v) if !v.is_empty() => (hive_escape(v), false),
                _ => (HIVE_DEFAULT_PARTITION.to_owned(), true),
            };
            out.segments.push((format!("{key}={value}"), defaulted));
            out.segments.len() as u32 - 1
        });
        out.codes.push(code);
    }
    Ok(out)
}

fn arrow_err(e: &ArrowError) -> Error {
    Error::Decode {
        what: "a record batch".into(),
        reason: scrub(&e.to_string()),
    }
}

fn parquet_err(e: &parquet::errors::ParquetError) -> Error {
    Error::Decode {
        what: "Parquet output".into(),
        reason: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_from_keys_and_sniffing() {
        assert_eq!(format_from_key("raw/a/b.csv.gz"), Some(Format::Csv));
        assert_eq!(format_from_key("raw/a/b.TSV"), Some(Format::Tsv));
        assert_eq!(format_from_key("raw/a/b.ndjson.zst"), Some(Format::Json));
        assert_eq!(format_from_key("raw/events/firehose-1-2024-03-07"), None);
        assert_eq!(sniff_format(b"  {\"a\":1}"), Format::Json);
        assert_eq!(sniff_format(b"\xEF\xBB\xBFid,name"), Format::Csv);
    }

    /// The whole decoding path on bytes, without S3: sniffing, inference, record splitting,
    /// decoding with bad-row isolation, temporal parsing, widening. Returns (rows, bad rows).
    fn decode_bytes(cfg: &Config, data: &[u8]) -> Result<(usize, usize), String> {
        let data = strip_bom(data);
        let mut plan = Plan::infer(cfg, sniff_format(data), data)?;
        'pass: for _ in 0..MAX_PASSES {
            let mut decoding = Decoding::new(&plan, false).map_err(|e| e.to_string())?;
            let mut recs = Vec::new();
            Splitter::new(plan.framing)
                .split(data, 0, true, usize::MAX, &mut recs)
                .map_err(|t| format!("too long at {}", t.line))?;
            let recs = &recs[usize::from(plan.header).min(recs.len())..];
            let (mut rows, mut bad_rows) = (0, 0);
            for chunk in recs.chunks(7) {
                let mut good = Vec::new();
                let mut bad = Vec::new();
                decoding.isolate(data, chunk, 0, &mut good, &mut bad);
                for (_, message) in &bad {
                    if is_type_error(message)
                        && let Some(dc) = column_in_error(&decoding.schema, message)
                        && let Some(col) = decoding.map.iter().position(|m| *m == Some(dc))
                        && plan.can_widen(col)
                    {
                        plan.apply(Change::Widen(col));
                        continue 'pass;
                    }
                }
                bad_rows += bad.len();
                for (batch, _) in good {
                    let names = Names {
                        dataset: "d".into(),
                        stem: "s".into(),
                        digest: "0".into(),
                        key_partitions: Vec::new(),
                    };
                    let object = ObjectRef::new("b", "raw/d/s");
                    let client = aws_sdk_s3::Client::from_conf(
                        aws_sdk_s3::Config::builder()
                            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
                            .build(),
                    );
                    let run = Run::new(&client, cfg, &names, &object, "b", &plan);
                    let (out, failures) = run.to_output(&decoding, &batch);
                    if let Some(f) = failures.iter().find(|f| plan.can_widen(f.1)) {
                        plan.apply(Change::Widen(f.1));
                        continue 'pass;
                    }
                    rows += out.num_rows();
                    bad_rows += failures.len();
                }
            }
            return Ok((rows, bad_rows));
        }
        Err("too many passes".into())
    }

    fn defaults() -> Config {
        Config::from_env(&tributary::Env::default()).expect("defaults")
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config {
            cases: 300,
            rng_seed: proptest::test_runner::RngSeed::Fixed(20261123),
            ..proptest::test_runner::Config::default()
        })]

        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)) {
            let _ = decode_bytes(&defaults(), &data);
        }

        #[test]
        fn csv_like_text_never_panics(lines in proptest::collection::vec("[a-z0-9.,\"\n :-]{0,30}", 1..30)) {
            let _ = decode_bytes(&defaults(), lines.join("\n").as_bytes());
        }

        #[test]
        fn json_like_text_never_panics(parts in proptest::collection::vec("[{}\\[\\]:,\"a-z0-9. \n]{0,20}", 1..20)) {
            let _ = decode_bytes(&defaults(), format!("{{{}}}", parts.join("")).as_bytes());
        }

        #[test]
        fn every_row_is_kept_or_counted_bad(values in proptest::collection::vec("[0-9]{1,3}|[0-9]\\.[0-9]|x|2024-0[1-9]-1[0-9]|", 1..60)) {
            // One column whatever its values: every line is a row or a bad row, never lost.
            let text = format!("v\n{}\n", values.join("\n"));
            let (rows, bad) = decode_bytes(&defaults(), text.as_bytes()).expect("decodes");
            let blank = values.iter().filter(|v| v.is_empty()).count();
            proptest::prop_assert_eq!(rows + bad + blank, values.len());
            proptest::prop_assert_eq!(bad, 0);
        }
    }

    #[test]
    fn decoding_path_reads_what_it_should() {
        let cfg = defaults();
        assert_eq!(decode_bytes(&cfg, b"a,b\n1,x\n2,y\n"), Ok((2, 0)));
        assert_eq!(decode_bytes(&cfg, b"a,b\n1,x\n2\n3,z"), Ok((2, 1)));
        // CRLF record ends: the batch's last `\r\n` is consumed whole.
        assert_eq!(decode_bytes(&cfg, b"a,b\r\n1,x\r\n2,y\r\n"), Ok((2, 0)));
        assert_eq!(decode_bytes(&cfg, b"a,b\r\n1,\"x\r\ny\"\r\n"), Ok((1, 0)));
        assert_eq!(
            decode_bytes(&cfg, b"{\"a\":1}{\"a\":2}\n{\"a\":3}"),
            Ok((3, 0))
        );
        assert_eq!(decode_bytes(&cfg, b"n\n1\n2\n1.5\nn/a\n"), Ok((4, 0)));
        assert_eq!(
            decode_bytes(&cfg, b"t\n2024-01-01\n2024-01-01 10:00\nlater\n"),
            Ok((3, 0))
        );
        assert!(decode_bytes(&cfg, b"[{\"a\":1}]").is_err());
    }

    #[test]
    fn widening_follows_int_float_string_and_date_timestamp_string() {
        for (from, to) in [
            (ColType::Int64, Some(ColType::Float64)),
            (ColType::Float64, Some(ColType::String)),
            (ColType::Date, Some(ColType::Timestamp)),
            (ColType::Timestamp, Some(ColType::String)),
            (ColType::TimestampTz, Some(ColType::String)),
            (ColType::Bool, Some(ColType::String)),
            (ColType::String, None),
        ] {
            assert_eq!(from.widen(), to, "{from:?}");
        }
        let schema: SchemaRef = Arc::new(Schema::new(vec![
            Field::new("a", DataType::Utf8, true),
            Field::new("n", DataType::Int64, true),
        ]));
        let csv = "Parser error: Error while parsing value '1.5' as type 'Int64' for column 1 at line 50001. Row data: '[secret,1.5]'";
        assert!(is_type_error(csv));
        assert_eq!(column_in_error(&schema, csv), Some(1));
        assert!(!scrub(csv).contains("secret"));
        let json = "Json error: whilst decoding field 'n': failed to parse \"x\" as Int64";
        assert!(is_type_error(json));
        assert_eq!(column_in_error(&schema, json), Some(1));
        assert!(!is_type_error(
            "Csv error: incorrect number of fields for line 3, expected 2 got 1"
        ));
    }
}
