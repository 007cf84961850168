//! One object to Parquet: infer, decode, partition, encode, upload; all or nothing.
//!
//! 1. **Types**: the first `INFER_ROWS` rows are sampled to infer a schema (timestamps kept
//!    at microsecond precision, all-null columns become nullable strings). The sample is kept
//!    and replayed, so the object is read once when the types hold.
//! 2. **Decode** the stream with arrow's push decoders (CSV/TSV, JSON lines or concatenated
//!    objects), batch by batch, never holding the object.
//! 3. **Type drift**: when a value later in the file does not fit its column (an `int64`
//!    column meets `1.5`, then `n/a`), every output is aborted, the column is widened
//!    (`int64 -> float64 -> string`) and the object is read again; nothing is dropped.
//! 4. **Partition** each batch (`PARTITION_BY`, or the `k=v` segments of the input key) and
//!    append it to that partition's Parquet writer, whose bytes stream into an S3 multipart
//!    upload as row groups fill.
//! 5. **Finish**: only when the whole input decoded are the files completed; a failure aborts
//!    every upload, and a failure while completing deletes what was already completed.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, RecordBatch, UInt32Array};
use arrow::compute::kernels::cast::cast;
use arrow::compute::kernels::temporal::{DatePart, date_part};
use arrow::compute::take_record_batch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;
use tokio::io::AsyncReadExt;
use tracing::{info, warn};
use tributary::reader::{Compression, open};
use tributary::{Error, ObjectRef, S3Writer, WriterConfig};

use crate::config::{Config, Format, PartitionSpec};
use crate::naming::{HIVE_DEFAULT_PARTITION, Names, hive_escape};

const READ_CHUNK: usize = 256 * 1024;
const MIB: usize = 1024 * 1024;

/// What one conversion produced.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Summary {
    /// The input, `s3://bucket/key`.
    pub source: String,
    /// Rows written.
    pub rows: u64,
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

/// One Parquet file.
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
    let format = cfg
        .input_format
        .unwrap_or_else(|| format_from_key(&object.key).unwrap_or(Format::Json));
    let sniff = cfg.input_format.is_none() && format_from_key(&object.key).is_none();
    let mut reader = open(client, object, Compression::Auto).await?;
    let mut sample = Vec::with_capacity(MIB);
    read_sample(&mut reader, &mut sample, cfg.infer_rows).await?;
    let format = if sniff { sniff_format(&sample) } else { format };
    let mut schema = infer(cfg, format, &sample)?;
    let out_bucket = cfg
        .output_bucket
        .clone()
        .unwrap_or_else(|| object.bucket.clone());
    let mut widenings = 0;
    let max_widenings = schema.fields().len() * 2 + 1;
    // The first pass reuses the open reader and its sample; later passes read the object again.
    let mut first = Some((reader, sample));
    loop {
        let (reader, sample) = match first.take() {
            Some(r) => r,
            None => (open(client, object, Compression::Auto).await?, Vec::new()),
        };
        let mut run = Run::new(client, cfg, names, &out_bucket, schema.clone());
        match run.decode_all(format, reader, sample).await {
            Ok(bytes_in) => {
                let mut summary = run.finish(object).await?;
                summary.bytes_in = bytes_in;
                summary.type_widenings = widenings;
                return Ok(summary);
            }
            Err(Failure::Drift(message)) => {
                run.abort().await;
                let widened = widen(&schema, &message).ok_or_else(|| Error::Decode {
                    what: object.to_string(),
                    reason: message.clone(),
                })?;
                widenings += 1;
                if widenings as usize > max_widenings {
                    return Err(Error::Decode {
                        what: object.to_string(),
                        reason: format!(
                            "types still do not fit after {widenings} widenings: {message}"
                        ),
                    });
                }
                info!(object = %object, reason = %message, "a value does not fit its inferred type: widening and reading again");
                schema = widened;
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
    /// A value did not fit its column's type (message from the decoder).
    Drift(String),
    /// Anything else.
    Other(Error),
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
    match sample
        .iter()
        .find(|b| !b.is_ascii_whitespace() && **b != 0xEF && **b != 0xBB && **b != 0xBF)
    {
        Some(b'{') | Some(b'[') => Format::Json,
        _ => Format::Csv,
    }
}

/// Reads about `rows` lines (at most 8 MiB) into `sample`.
async fn read_sample(
    reader: &mut tributary::reader::ObjectReader,
    sample: &mut Vec<u8>,
    rows: usize,
) -> Result<(), Error> {
    let mut chunk = vec![0u8; READ_CHUNK];
    let mut lines = 0usize;
    while lines <= rows && sample.len() < 8 * MIB {
        let n = reader
            .read(&mut chunk)
            .await
            .map_err(|e| Error::io("reading the input", e))?;
        if n == 0 {
            break;
        }
        lines += chunk[..n].iter().filter(|b| **b == b'\n').count();
        sample.extend_from_slice(&chunk[..n]);
    }
    Ok(())
}

fn strip_bom(data: &[u8]) -> &[u8] {
    data.strip_prefix(&[0xEF, 0xBB, 0xBF]).unwrap_or(data)
}

fn null_regex(cfg: &Config) -> Result<regex::Regex, Error> {
    let alts: Vec<String> = cfg.null_values.iter().map(|v| regex_escape(v)).collect();
    let pattern = format!("^(?:{})?$", alts.join("|"));
    regex::Regex::new(&pattern).map_err(|e| {
        Error::config(
            "NULL_VALUES",
            cfg.null_values.join(","),
            e.to_string(),
            "plain words",
        )
    })
}

fn regex_escape(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            let special = "\\.+*?()|[]{}^$#&-~".contains(c);
            special
                .then_some('\\')
                .into_iter()
                .chain(std::iter::once(c))
        })
        .collect()
}

fn delimiter(cfg: &Config, format: Format) -> u8 {
    match format {
        Format::Tsv => b'\t',
        _ => cfg.csv_delimiter,
    }
}

/// Infers a schema from the sample and normalises it for Parquet readers.
fn infer(cfg: &Config, format: Format, sample: &[u8]) -> Result<SchemaRef, Error> {
    let data = strip_bom(sample);
    // Only whole lines: a cut last line could suggest the wrong type.
    let whole = match data.iter().rposition(|b| *b == b'\n') {
        Some(end) if end + 1 < data.len() => &data[..=end],
        _ => data,
    };
    let schema = match format {
        Format::Csv | Format::Tsv => arrow::csv::reader::Format::default()
            .with_header(true)
            .with_delimiter(delimiter(cfg, format))
            .with_null_regex(null_regex(cfg)?)
            .infer_schema(std::io::Cursor::new(whole), Some(cfg.infer_rows))
            .map(|(s, _)| s),
        Format::Json => {
            let lines = one_object_per_line(whole);
            arrow::json::reader::infer_json_schema(
                std::io::Cursor::new(lines),
                Some(cfg.infer_rows),
            )
            .map(|(s, _)| s)
        }
    }
    .map_err(|e| Error::Decode {
        what: "the input's first rows".into(),
        reason: e.to_string(),
    })?;
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| {
            let dt = match f.data_type() {
                DataType::Null => DataType::Utf8,
                DataType::Timestamp(_, tz) => {
                    DataType::Timestamp(TimeUnit::Microsecond, tz.clone())
                }
                other => other.clone(),
            };
            Field::new(f.name(), dt, true)
        })
        .collect();
    if fields.is_empty() {
        return Err(Error::Decode {
            what: "the input's first rows".into(),
            reason: "no columns found".into(),
        });
    }
    Ok(Arc::new(Schema::new(fields)))
}

/// Puts every top-level JSON value on its own line (concatenated objects, as Firehose writes
/// them without a delimiter, become JSON lines); a value cut at the end is dropped.
fn one_object_per_line(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + data.len() / 64);
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    let mut start = 0;
    for (i, &b) in data.iter().enumerate() {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    out.extend_from_slice(data[start..=i].trim_ascii());
                    out.push(b'\n');
                    start = i + 1;
                }
            }
            _ => {}
        }
    }
    out
}

/// The schema with the column named in a decoder error widened one step, if possible.
fn widen(schema: &SchemaRef, message: &str) -> Option<SchemaRef> {
    let idx = column_in_error(schema, message)?;
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    let next = match fields[idx].data_type() {
        DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64 => DataType::Float64,
        DataType::Utf8 | DataType::LargeUtf8 => return None,
        _ => DataType::Utf8,
    };
    fields[idx] = Field::new(fields[idx].name(), next, true);
    Some(Arc::new(Schema::new(fields)))
}

/// Finds the column an arrow decoder error talks about (`for column N` or `field 'name'`).
fn column_in_error(schema: &SchemaRef, message: &str) -> Option<usize> {
    if let Some(rest) = message.split("for column ").nth(1) {
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        if let Ok(i) = digits.parse::<usize>()
            && i < schema.fields().len()
        {
            return Some(i);
        }
    }
    schema.fields().iter().position(|f| {
        message.contains(&format!("'{}'", f.name()))
            || message.contains(&format!("\"{}\"", f.name()))
    })
}

/// Whether a decoder error is a value that does not fit its type (vs. malformed input).
fn is_drift(message: &str) -> bool {
    message.contains("Error while parsing value")
        || message.contains("failed to parse")
        || message.contains("expected")
            && (message.contains("Int") || message.contains("Float") || message.contains("Boolean"))
}

/// One pass over the object with one schema.
struct Run<'a> {
    client: &'a aws_sdk_s3::Client,
    cfg: &'a Config,
    names: &'a Names,
    bucket: &'a str,
    schema: SchemaRef,
    props: WriterProperties,
    outputs: BTreeMap<String, Output>,
    rows: u64,
    default_partition_rows: u64,
}

/// One partition's file being written.
struct Output {
    key: String,
    parquet: ArrowWriter<Vec<u8>>,
    upload: S3Writer,
    rows: u64,
    bytes: u64,
}

impl<'a> Run<'a> {
    fn new(
        client: &'a aws_sdk_s3::Client,
        cfg: &'a Config,
        names: &'a Names,
        bucket: &'a str,
        schema: SchemaRef,
    ) -> Self {
        let props = WriterProperties::builder()
            .set_compression(cfg.compression)
            .set_max_row_group_row_count(Some(cfg.row_group_rows))
            .set_created_by(
                concat!("tributary parquet-converter ", env!("CARGO_PKG_VERSION")).to_owned(),
            )
            .build();
        Run {
            client,
            cfg,
            names,
            bucket,
            schema,
            props,
            outputs: BTreeMap::new(),
            rows: 0,
            default_partition_rows: 0,
        }
    }

    /// Decodes the whole object (after `sample`, which was already read from `reader`).
    async fn decode_all(
        &mut self,
        format: Format,
        mut reader: tributary::reader::ObjectReader,
        sample: Vec<u8>,
    ) -> Result<u64, Failure> {
        let mut decoder =
            Decoder::new(self.cfg, format, self.schema.clone()).map_err(Failure::Other)?;
        let mut pending = sample;
        let mut chunk = vec![0u8; READ_CHUNK];
        let mut first = true;
        let mut eof = false;
        loop {
            if pending.is_empty() && !eof {
                let n = reader
                    .read(&mut chunk)
                    .await
                    .map_err(|e| Failure::Other(Error::io("reading the input", e)))?;
                if n == 0 {
                    eof = true;
                } else {
                    pending.extend_from_slice(&chunk[..n]);
                }
            }
            if first && !pending.is_empty() {
                first = false;
                if pending.starts_with(&[0xEF, 0xBB, 0xBF]) {
                    pending.drain(..3);
                }
            }
            let consumed = decoder.decode(&pending).map_err(classify)?;
            pending.drain(..consumed);
            // A full batch, or the end of the input: flush what was decoded.
            if consumed == 0 || (eof && pending.is_empty()) {
                if let Some(batch) = decoder.flush().map_err(classify)? {
                    self.write(batch).await.map_err(Failure::Other)?;
                }
                if eof && pending.is_empty() {
                    break;
                }
                if consumed == 0 && eof {
                    // Bytes left that the decoder cannot use: a truncated last record.
                    return Err(Failure::Other(Error::Decode {
                        what: "the input".into(),
                        reason: format!(
                            "{} bytes at the end do not form a complete record",
                            pending.len()
                        ),
                    }));
                }
            }
        }
        if let Some(batch) = decoder.flush().map_err(classify)? {
            self.write(batch).await.map_err(Failure::Other)?;
        }
        Ok(reader.raw_bytes_read())
    }

    /// Splits a batch by partition and appends each part to its file.
    async fn write(&mut self, batch: RecordBatch) -> Result<(), Error> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        self.rows += batch.num_rows() as u64;
        let paths = self.partition_paths(&batch)?;
        let mut groups: HashMap<&str, Vec<u32>> = HashMap::new();
        for (i, p) in paths.iter().enumerate() {
            groups.entry(p.as_str()).or_default().push(i as u32);
        }
        let single = groups.len() == 1;
        for (path, rows) in groups {
            let part = if single {
                batch.clone()
            } else {
                take_record_batch(&batch, &UInt32Array::from(rows)).map_err(arrow_err)?
            };
            self.append(path, part).await?;
        }
        Ok(())
    }

    async fn append(&mut self, path: &str, batch: RecordBatch) -> Result<(), Error> {
        if !self.outputs.contains_key(path) {
            let key = self.names.output_key(&self.cfg.output_prefix, path, 0);
            let parquet = ArrowWriter::try_new(
                Vec::with_capacity(MIB),
                self.schema.clone(),
                Some(self.props.clone()),
            )
            .map_err(parquet_err)?;
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
                    bytes: 0,
                },
            );
        }
        let limit = self.cfg.row_group_bytes;
        let Some(out) = self.outputs.get_mut(path) else {
            return Ok(());
        };
        out.rows += batch.num_rows() as u64;
        out.parquet.write(&batch).map_err(parquet_err)?;
        if out.parquet.in_progress_size() >= limit {
            out.parquet.flush().map_err(parquet_err)?;
        }
        // Stream finished row groups to S3 as they appear.
        let bytes = std::mem::take(out.parquet.inner_mut());
        if !bytes.is_empty() {
            out.bytes += bytes.len() as u64;
            out.upload.write(&bytes).await?;
        }
        Ok(())
    }

    fn partition_paths(&mut self, batch: &RecordBatch) -> Result<Vec<String>, Error> {
        let n = batch.num_rows();
        let mut paths = vec![String::new(); n];
        if self.cfg.partition_by.is_empty() {
            let fixed = self.names.key_partitions.join("/");
            return Ok(vec![fixed; n]);
        }
        let mut defaulted = vec![false; n];
        for spec in &self.cfg.partition_by {
            let segs = match spec {
                PartitionSpec::Time { column, depth } => time_segments(batch, column, *depth)?,
                PartitionSpec::Value { column } => value_segments(batch, column)?,
            };
            for (i, seg) in segs.into_iter().enumerate() {
                if seg.contains(HIVE_DEFAULT_PARTITION) {
                    defaulted[i] = true;
                }
                if !paths[i].is_empty() {
                    paths[i].push('/');
                }
                paths[i].push_str(&seg);
            }
        }
        self.default_partition_rows += defaulted.iter().filter(|d| **d).count() as u64;
        Ok(paths)
    }

    /// Closes every file and completes every upload; on failure removes what was completed.
    async fn finish(mut self, object: &ObjectRef) -> Result<Summary, Error> {
        let mut files = Vec::new();
        let mut pending = Vec::new();
        for (_, mut out) in std::mem::take(&mut self.outputs) {
            let tail = match out.parquet.into_inner() {
                Ok(t) => t,
                Err(e) => {
                    self.abort_uploads(pending).await;
                    let _ = out.upload.abort().await;
                    return Err(parquet_err(e));
                }
            };
            out.bytes += tail.len() as u64;
            if let Err(e) = out.upload.write(&tail).await {
                self.abort_uploads(pending).await;
                return Err(e);
            }
            pending.push((out.key, out.upload, out.rows, out.bytes));
        }
        let mut completed: Vec<String> = Vec::new();
        let mut iter = pending.into_iter();
        while let Some((key, upload, rows, bytes)) = iter.next() {
            match upload.finish().await {
                Ok(_) => {
                    completed.push(key.clone());
                    files.push(OutputFile {
                        bucket: self.bucket.to_owned(),
                        key,
                        rows,
                        bytes,
                    });
                }
                Err(e) => {
                    for (_, rest, _, _) in iter {
                        let _ = rest.abort().await;
                    }
                    for k in &completed {
                        if let Err(del) = self
                            .client
                            .delete_object()
                            .bucket(self.bucket)
                            .key(k)
                            .send()
                            .await
                        {
                            warn!(key = %k, error = %del, "could not remove a completed output after a failure");
                        }
                    }
                    return Err(e);
                }
            }
        }
        Ok(Summary {
            source: object.to_string(),
            rows: self.rows,
            bytes_in: 0,
            bytes_out: files.iter().map(|f| f.bytes).sum(),
            partitions: files.len(),
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

    async fn abort_uploads(&self, pending: Vec<(String, S3Writer, u64, u64)>) {
        for (_, upload, _, _) in pending {
            let _ = upload.abort().await;
        }
    }

    /// Aborts every output of this pass.
    async fn abort(&mut self) {
        for (_, out) in std::mem::take(&mut self.outputs) {
            if let Err(e) = out.upload.abort().await {
                warn!(key = %out.key, error = %e, "abort failed; the bucket's lifecycle rule will clean up");
            }
        }
    }
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

fn time_segments(batch: &RecordBatch, name: &str, depth: usize) -> Result<Vec<String>, Error> {
    let col = column(batch, name)?;
    let col: ArrayRef = match col.data_type() {
        DataType::Utf8 | DataType::LargeUtf8 => {
            cast(col, &DataType::Timestamp(TimeUnit::Microsecond, None))
                .unwrap_or_else(|_| col.clone())
        }
        _ => col.clone(),
    };
    let parts = [
        DatePart::Year,
        DatePart::Month,
        DatePart::Day,
        DatePart::Hour,
    ];
    let names = ["year", "month", "day", "hour"];
    let mut out = vec![String::new(); batch.num_rows()];
    for level in 0..depth {
        let values = date_part(col.as_ref(), parts[level]).ok();
        let ints = values
            .as_ref()
            .and_then(|v| v.as_any().downcast_ref::<arrow::array::Int32Array>());
        for (i, seg) in out.iter_mut().enumerate() {
            if !seg.is_empty() {
                seg.push('/');
            }
            let v = ints.filter(|a| a.is_valid(i)).map(|a| a.value(i));
            match v {
                Some(v) if level == 0 => seg.push_str(&format!("{}={v:04}", names[level])),
                Some(v) => seg.push_str(&format!("{}={v:02}", names[level])),
                None => seg.push_str(&format!("{}={HIVE_DEFAULT_PARTITION}", names[level])),
            }
        }
    }
    Ok(out)
}

fn value_segments(batch: &RecordBatch, name: &str) -> Result<Vec<String>, Error> {
    let col = column(batch, name)?;
    let strings = cast(col, &DataType::Utf8).map_err(arrow_err)?;
    let strings = strings
        .as_any()
        .downcast_ref::<arrow::array::StringArray>()
        .ok_or_else(|| Error::Decode {
            what: format!("partition column {name}"),
            reason: "cannot be read as text".into(),
        })?;
    let key = hive_escape(name);
    Ok((0..batch.num_rows())
        .map(|i| {
            let v = if strings.is_valid(i) {
                hive_escape(strings.value(i))
            } else {
                HIVE_DEFAULT_PARTITION.to_owned()
            };
            format!("{key}={v}")
        })
        .collect())
}

/// CSV or JSON push decoder behind one interface.
enum Decoder {
    Csv(Box<arrow::csv::reader::Decoder>),
    Json(arrow::json::reader::Decoder),
}

impl Decoder {
    fn new(cfg: &Config, format: Format, schema: SchemaRef) -> Result<Decoder, Error> {
        Ok(match format {
            Format::Csv | Format::Tsv => Decoder::Csv(Box::new(
                arrow::csv::ReaderBuilder::new(schema)
                    .with_header(true)
                    .with_delimiter(delimiter(cfg, format))
                    .with_null_regex(null_regex(cfg)?)
                    .with_batch_size(cfg.batch_rows)
                    .build_decoder(),
            )),
            Format::Json => Decoder::Json(
                arrow::json::ReaderBuilder::new(schema)
                    .with_batch_size(cfg.batch_rows)
                    .build_decoder()
                    .map_err(arrow_err)?,
            ),
        })
    }

    fn decode(&mut self, buf: &[u8]) -> Result<usize, arrow::error::ArrowError> {
        match self {
            Decoder::Csv(d) => d.decode(buf),
            Decoder::Json(d) => d.decode(buf),
        }
    }

    fn flush(&mut self) -> Result<Option<RecordBatch>, arrow::error::ArrowError> {
        match self {
            Decoder::Csv(d) => d.flush(),
            Decoder::Json(d) => d.flush(),
        }
    }
}

fn classify(e: arrow::error::ArrowError) -> Failure {
    let message = e.to_string();
    if is_drift(&message) {
        Failure::Drift(message)
    } else {
        Failure::Other(Error::Decode {
            what: "the input".into(),
            reason: message,
        })
    }
}

fn arrow_err(e: arrow::error::ArrowError) -> Error {
    Error::Decode {
        what: "a record batch".into(),
        reason: e.to_string(),
    }
}

fn parquet_err(e: parquet::errors::ParquetError) -> Error {
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

    /// Runs the whole decoding path (sniffing, inference, push decoding, widening) on bytes.
    fn decode_bytes(cfg: &Config, data: &[u8]) -> Result<usize, String> {
        let format = sniff_format(data);
        let mut schema = infer(cfg, format, data).map_err(|e| e.to_string())?;
        for _ in 0..(schema.fields().len() * 2 + 1) {
            let mut d = Decoder::new(cfg, format, schema.clone()).map_err(|e| e.to_string())?;
            let mut rows = 0;
            let mut rest = strip_bom(data);
            // The decoders' protocol, as `Run::decode_all` follows it: decode until nothing is
            // consumed (a full batch, or the end signalled by an empty buffer), then flush.
            let outcome = loop {
                match d.decode(rest) {
                    Ok(0) => match d.flush() {
                        Ok(b) => {
                            rows += b.map_or(0, |b| b.num_rows());
                            if rest.is_empty() {
                                break Ok(());
                            }
                        }
                        Err(e) => break Err(e),
                    },
                    Ok(n) => rest = &rest[n..],
                    Err(e) => break Err(e),
                }
            };
            match outcome {
                Ok(()) => return Ok(rows),
                Err(e) if is_drift(&e.to_string()) => match widen(&schema, &e.to_string()) {
                    Some(w) => schema = w,
                    None => return Err(e.to_string()),
                },
                Err(e) => return Err(e.to_string()),
            }
        }
        Err("too many widenings".into())
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config {
            cases: 300,
            rng_seed: proptest::test_runner::RngSeed::Fixed(20261123),
            ..proptest::test_runner::Config::default()
        })]

        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)) {
            let cfg = Config::from_env(&tributary::Env::default()).expect("defaults");
            let _ = decode_bytes(&cfg, &data);
            let _ = one_object_per_line(&data);
        }

        #[test]
        fn csv_like_text_never_panics(lines in proptest::collection::vec("[a-z0-9.,\"\n -]{0,30}", 1..30)) {
            let cfg = Config::from_env(&tributary::Env::default()).expect("defaults");
            let text = lines.join("\n");
            let _ = decode_bytes(&cfg, text.as_bytes());
        }

        #[test]
        fn json_like_text_never_panics(parts in proptest::collection::vec("[{}\\[\\]:,\"a-z0-9. ]{0,20}", 1..20)) {
            let cfg = Config::from_env(&tributary::Env::default()).expect("defaults");
            let text = format!("{{{}}}", parts.join(""));
            let _ = decode_bytes(&cfg, text.as_bytes());
        }
    }

    #[test]
    fn decoding_path_reads_what_it_should() {
        let cfg = Config::from_env(&tributary::Env::default()).expect("defaults");
        assert_eq!(decode_bytes(&cfg, b"a,b\n1,x\n2,y\n"), Ok(2));
        assert_eq!(decode_bytes(&cfg, b"{\"a\":1}{\"a\":2}\n{\"a\":3}"), Ok(3));
        assert_eq!(decode_bytes(&cfg, b"n\n1\n2\n1.5\n"), Ok(3));
    }

    #[test]
    fn concatenated_objects_become_lines() {
        let out = one_object_per_line(b"{\"a\":\"}{\"}{\"b\":[1,{\"c\":2}]}\n{\"d\":3}{\"cut\":");
        assert_eq!(out, b"{\"a\":\"}{\"}\n{\"b\":[1,{\"c\":2}]}\n{\"d\":3}\n");
    }

    #[test]
    fn widening_follows_int_float_string() {
        let schema: SchemaRef = Arc::new(Schema::new(vec![
            Field::new("a", DataType::Utf8, true),
            Field::new("n", DataType::Int64, true),
        ]));
        let msg = "Parser error: Error while parsing value '1.5' as type 'Int64' for column 1 at line 50001";
        assert!(is_drift(msg));
        let w = widen(&schema, msg).expect("widen");
        assert_eq!(w.field(1).data_type(), &DataType::Float64);
        let w2 = widen(&w, msg).expect("widen again");
        assert_eq!(w2.field(1).data_type(), &DataType::Utf8);
        assert!(widen(&w2, msg).is_none());
        assert_eq!(
            column_in_error(&schema, "failed to parse \"x\" for field 'n'"),
            Some(1)
        );
    }
}
