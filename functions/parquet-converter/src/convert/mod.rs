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
//! 6. **Table** (`GLUE_DATABASE`, [`crate::contract`]): the dataset's table types the columns
//!    it has (values that do not fit are bad rows, never drift); when the pass is done and
//!    before any file completes, the table is created or given the new columns; a table that
//!    changed under us means another pass under it.
//! 7. **Finish**: only when the whole input decoded are the files completed; a failure aborts
//!    every upload, and a failure while completing deletes what was already completed. Then
//!    the files' partitions are registered in the table.

mod conform;
mod decode;
mod encode;
pub mod manifest;
mod outputs;
mod partition;
mod plain;
mod plan;
pub mod ranges;

use std::collections::VecDeque;
use std::sync::Arc;

use arrow::array::{BooleanArray, RecordBatch, UInt32Array};
use arrow::compute::{filter_record_batch, take_record_batch};
use arrow::datatypes::DataType;
use tokio::io::AsyncReadExt;
use tracing::info;
use tributary::reader::{Compression, open, open_range};
use tributary::{Error, ObjectRef};

use self::decode::{
    Decoding, Types, arrow_err, fits, is_integer, rewrite_json, scrub, value_as_text,
};
use self::outputs::{BadRow, Outputs};
use self::partition::Partitioner;
use self::plan::{Change, Plan, format_from_key, read_sample, sniff_format};
use crate::config::{Config, Evolution, Format};
use crate::contract::{Commit, Contract};
use crate::naming::Names;
use crate::records::{Rec, Splitter};

const READ_CHUNK: usize = 256 * 1024;
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
    /// Converted in byte ranges: the quarantine file of each range that had bad rows.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bad_rows_files: Vec<OutputFile>,
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
    /// The dataset's table, when the catalog contract is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<TableUse>,
}

/// What the conversion did with its dataset's table.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TableUse {
    /// `database.table`.
    pub table: String,
    /// This object created the table.
    pub created: bool,
    /// Columns this object appended to the table.
    pub columns_added: Vec<String>,
    /// Input columns the table lacks, not written (`SCHEMA_EVOLUTION=ignore`).
    pub columns_ignored: Vec<String>,
    /// Rows quarantined because a value does not fit its table column's type.
    pub cast_bad_rows: u64,
    /// Partitions registered (existing ones included).
    pub partitions: usize,
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

/// Converts one object (already checked to be a valid input), under its dataset's table when
/// `contract` is given.
pub async fn convert(
    client: &aws_sdk_s3::Client,
    cfg: &Config,
    object: &ObjectRef,
    names: &Names,
    contract: Option<&Contract>,
) -> Result<Summary, Error> {
    match convert_input(client, cfg, object, names, contract, None).await? {
        Finished::Complete(summary) => Ok(summary),
        Finished::Sealed(_) => Err(Error::Internal(
            "a whole object's conversion left its files sealed".into(),
        )),
    }
}

/// How a conversion ended: files completed, or (a range of an object) sealed, to be
/// completed by the commit of every range.
enum Finished {
    Complete(Summary),
    Sealed(ranges::SealedRange),
}

/// Converts `object`, or only `range` of it: then the columns keep the types the head of the
/// object gives them (every range infers from the same bytes, so every range agrees), a
/// value that does not fit is a bad row instead of a widening, and the files are sealed,
/// not completed.
async fn convert_input(
    client: &aws_sdk_s3::Client,
    cfg: &Config,
    object: &ObjectRef,
    names: &Names,
    contract: Option<&Contract>,
    range: Option<&ranges::ByteRange>,
) -> Result<Finished, Error> {
    let part_names;
    let names = match range {
        Some(r) => {
            part_names = names.for_range(r.index);
            &part_names
        }
        None => names,
    };
    let (reader, sample, mut inferred) = read_head(client, cfg, object, names).await?;
    // A range reads its bytes after the object's header (the header's bytes first, so its
    // records decode as the object's do), numbering lines from where the range begins.
    let mut header = Vec::new();
    let mut first_line = 1;
    if let Some(r) = range.filter(|r| !r.whole) {
        inferred.fix_types();
        header = inferred.header_bytes(&sample);
        first_line = r.first_line - memchr::memchr_iter(b'\n', &header).count() as u64;
    }
    let out_bucket = cfg
        .output_bucket
        .clone()
        .unwrap_or_else(|| object.bucket.clone());
    let mut plan = inferred.clone();
    let mut table = None;
    // The dataset's table under the contract: its name, and `database.table` for messages.
    let name = contract.map_or_else(String::new, |c| c.settings().table_name(&names.dataset));
    let qualified = contract.map_or_else(String::new, |c| c.qualified(&name));
    if let Some(contract) = contract {
        table = contract.table(&name).await?;
        check_parquet_table(table.as_ref(), &qualified)?;
        plan.conform(
            table.as_ref().map(|t| &t.def),
            contract.settings().evolution,
            cfg.schema.of(&names.dataset),
            &qualified,
        )?;
    }
    let mut widenings = 0;
    // A table from the cache is read again once before rows are quarantined as casts.
    let mut rechecked = false;
    if range.is_some_and(|r| !r.whole) {
        plan.fix_types();
    }
    // The first pass reuses the open reader and its sample; later passes read the object (or
    // the range) again.
    let mut first = match range {
        Some(r) if !r.whole => None,
        _ => Some((reader, sample)),
    };
    loop {
        let (reader, sample) = match (first.take(), range) {
            (Some(r), _) => r,
            (None, Some(r)) if !r.whole => (
                open_range(client, object, r.start..r.end).await?,
                header.clone(),
            ),
            (None, _) => (open(client, object, Compression::Auto).await?, Vec::new()),
        };
        let mut run = Run::new(client, cfg, names, object, &out_bucket, &plan)?;
        run.first_line = first_line;
        match run.decode_all(reader, sample).await {
            Ok(bytes_in) => {
                let mut used = None;
                if let Some(contract) = contract {
                    let desired =
                        conform::desired(&plan, cfg, names, &out_bucket, run.partitioner().keys())
                            .map_err(|reason| Error::SchemaMismatch {
                                table: qualified.clone(),
                                reason,
                            });
                    let mut current = table.take();
                    if run.cast_bad_rows > 0 && !rechecked {
                        rechecked = true;
                        match contract.fresh(&name).await {
                            Ok(fresh) => current = fresh,
                            Err(e) => {
                                run.abort().await;
                                return Err(e);
                            }
                        }
                    }
                    let commit = match desired {
                        Ok(d) => contract.commit(&name, &d, current).await,
                        Err(e) => Err(e),
                    };
                    match commit {
                        Ok(Commit::Ready {
                            table: t,
                            created,
                            added,
                        }) => {
                            used = Some((t, created, added, run.cast_bad_rows));
                        }
                        Ok(Commit::Changed(t)) => {
                            run.abort().await;
                            widenings += 1;
                            if widenings as usize >= MAX_PASSES {
                                return Err(Error::undecodable(
                                    object.to_string(),
                                    format!("the table kept changing over {widenings} passes"),
                                ));
                            }
                            info!(object = %object, table = %qualified, "the table changed while converting: reading again under it");
                            plan = inferred.clone();
                            plan.conform(
                                Some(&t.def),
                                contract.settings().evolution,
                                cfg.schema.of(&names.dataset),
                                &qualified,
                            )?;
                            if range.is_some_and(|r| !r.whole) {
                                plan.fix_types();
                            }
                            table = Some(t);
                            continue;
                        }
                        Err(e) => {
                            run.abort().await;
                            return Err(e);
                        }
                    }
                }
                let table_use = |partitions: usize| {
                    used.as_ref()
                        .map(|(t, created, added, cast_bad_rows)| TableUse {
                            table: contract.map_or_else(String::new, |c| c.qualified(&t.def.name)),
                            created: *created,
                            columns_added: added.clone(),
                            columns_ignored: plan
                                .columns
                                .iter()
                                .filter(|c| !c.written)
                                .map(|c| c.name.clone())
                                .collect(),
                            cast_bad_rows: *cast_bad_rows,
                            partitions,
                        })
                };
                if range.is_some() {
                    // Partitions are registered by the commit, once every range's files are.
                    let mut sealed = run.seal().await?;
                    sealed.summary.bytes_in = bytes_in;
                    sealed.summary.type_widenings = widenings;
                    sealed.summary.table = table_use(0);
                    return Ok(Finished::Sealed(sealed));
                }
                let mut summary = run.finish().await?;
                summary.bytes_in = bytes_in;
                summary.type_widenings = widenings;
                if let (Some(contract), Some((t, _, _, _))) = (contract, &used) {
                    let partitions = conform::partitions_of(cfg, names, &out_bucket, &summary);
                    contract.register(&t.def, &partitions).await?;
                    summary.table = table_use(partitions.len());
                }
                return Ok(Finished::Complete(summary));
            }
            Err(Failure::Drift(Change::Add(field))) if plan.evolution == Some(Evolution::Fail) => {
                run.abort().await;
                return Err(Error::SchemaMismatch {
                    table: qualified,
                    reason: format!(
                        "new column {:?} and SCHEMA_EVOLUTION=fail",
                        field.name().to_ascii_lowercase()
                    ),
                });
            }
            Err(Failure::Drift(change)) => {
                run.abort().await;
                widenings += 1;
                if widenings as usize >= MAX_PASSES {
                    return Err(Error::undecodable(
                        object.to_string(),
                        format!("types still do not fit after {widenings} widenings"),
                    ));
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

/// Opens `object`, reads its type sample and infers how to read it: the open reader (past the
/// sample), the sample, the plan.
async fn read_head(
    client: &aws_sdk_s3::Client,
    cfg: &Config,
    object: &ObjectRef,
    names: &Names,
) -> Result<(tributary::reader::ObjectReader, Vec<u8>, Plan), Error> {
    let mut reader = open(client, object, Compression::Auto).await?;
    let mut sample = Vec::with_capacity(MIB);
    read_sample(object, &mut reader, &mut sample, cfg.infer_rows).await?;
    let format = cfg
        .input_format
        .or(format_from_key(&object.key))
        .unwrap_or_else(|| sniff_format(&sample));
    let plan = Plan::infer(cfg, &names.dataset, format, &sample)
        .map_err(|reason| Error::undecodable(object.to_string(), reason))?;
    Ok((reader, sample, plan))
}

/// A table whose files are not Parquet cannot take ours.
fn check_parquet_table(
    table: Option<&crate::catalog::Table>,
    qualified: &str,
) -> Result<(), Error> {
    match table {
        Some(t) if !t.format.is_parquet() => Err(Error::SchemaMismatch {
            table: qualified.to_owned(),
            reason: format!(
                "the table is not stored as Parquet (SerDe {:?}): its files could not be read",
                t.format.serde_library.as_deref().unwrap_or("none")
            ),
        }),
        _ => Ok(()),
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

/// One pass over the object with one plan: the records are cut here, decoded on the worker
/// pool a batch at a time, and the decoded batches appended to the outputs in input order.
struct Run<'a> {
    /// The line number of the first record read (after a range's header).
    first_line: u64,
    /// Rows quarantined because a value does not fit a table column's type.
    cast_bad_rows: u64,
    /// Rows whose partition value was null or unparseable.
    default_rows: u64,
    cfg: &'a Config,
    object: &'a ObjectRef,
    /// What a worker needs to decode a batch.
    job: Arc<Job>,
    outputs: Outputs<'a>,
}

impl<'a> Run<'a> {
    fn new(
        client: &'a aws_sdk_s3::Client,
        cfg: &'a Config,
        names: &'a Names,
        object: &'a ObjectRef,
        bucket: &'a str,
        plan: &Plan,
    ) -> Result<Self, Error> {
        let schema = plan.output_schema();
        Ok(Run {
            first_line: 1,
            cast_bad_rows: 0,
            default_rows: 0,
            cfg,
            object,
            job: Arc::new(Job {
                decoding: Decoding::new(plan, Types::Plan).map_err(arrow_err)?,
                plan: plan.clone(),
                schema: schema.clone(),
                partitioner: Partitioner::new(cfg, plan, names),
            }),
            outputs: Outputs::new(client, cfg, names, object, bucket, schema),
        })
    }

    /// The partitioner of this pass.
    fn partitioner(&self) -> &Partitioner {
        &self.job.partitioner
    }

    /// Decodes the whole object (after `sample`, which was already read from `reader`).
    async fn decode_all(
        &mut self,
        mut reader: tributary::reader::ObjectReader,
        sample: Vec<u8>,
    ) -> Result<u64, Failure> {
        let mut splitter = Splitter::new(self.job.plan.framing).at_line(self.first_line);
        let mut pending = sample;
        let mut chunk = vec![0u8; READ_CHUNK];
        let mut recs: Vec<Rec> = Vec::with_capacity(self.cfg.batch_rows);
        let mut scanned = 0;
        let mut eof = false;
        let mut first = true;
        let mut header = self.job.plan.header;
        // Batches being decoded, oldest first; at most `in_flight` at a time.
        let mut decoding = VecDeque::new();
        let in_flight = rayon::current_num_threads() + 1;
        // Batch buffers back from the workers, for the next batches: fresh multi-megabyte
        // buffers for every batch cost a page fault per 4 KiB touched.
        let mut spare: Vec<Spent> = Vec::with_capacity(in_flight);
        loop {
            if !eof && (pending.len() - scanned < READ_CHUNK || recs.is_empty()) {
                let n = reader
                    .read(&mut chunk)
                    .await
                    .map_err(|e| Error::read(self.object, e))?;
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
                    source: None,
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
            // The batch takes its bytes and records along; the unscanned rest starts the next
            // one, in a buffer a finished batch gave back when there is one.
            let Spent {
                bytes: mut rest,
                recs: next_recs,
            } = spare.pop().unwrap_or_default();
            rest.clear();
            rest.reserve(pending.len().max(READ_CHUNK) + READ_CHUNK);
            rest.extend_from_slice(&pending[scanned..]);
            pending.truncate(scanned);
            let bytes = std::mem::replace(&mut pending, rest);
            let mut batch = std::mem::replace(&mut recs, next_recs);
            recs.clear();
            if skip > 0 {
                batch.drain(..skip);
            }
            scanned = 0;
            decoding.push_back(self.job.spawn(bytes, batch));
            while decoding.len() >= in_flight || (done && !decoding.is_empty()) {
                if let Some(next) = decoding.pop_front() {
                    let mut next = next.await;
                    if let Ok(decoded) = &mut next {
                        spare.push(std::mem::take(&mut decoded.spent));
                    }
                    self.append(next).await?;
                }
            }
            if done {
                break;
            }
        }
        Ok(reader.raw_bytes_read())
    }

    /// Appends one decoded batch: its rows to their partitions' files, its bad rows to the
    /// quarantine.
    async fn append(&mut self, decoded: Result<Decoded, Failure>) -> Result<(), Failure> {
        let decoded = decoded?;
        self.cast_bad_rows += decoded.cast_bad_rows;
        self.default_rows += decoded.default_rows;
        for parts in decoded.parts {
            self.outputs.write(parts).await?;
        }
        for row in decoded.bad_rows {
            self.outputs.bad_row(row).await?;
        }
        Ok(())
    }

    /// Seals every file of the pass (a range's): uploaded, left for the commit to complete.
    async fn seal(self) -> Result<ranges::SealedRange, Error> {
        let mut sealed = self.outputs.seal_all().await?;
        sealed.summary.default_partition_rows = self.default_rows;
        Ok(sealed)
    }

    /// Completes every file of the pass.
    async fn finish(self) -> Result<Summary, Error> {
        let mut summary = self.outputs.finish().await?;
        summary.default_partition_rows = self.default_rows;
        Ok(summary)
    }

    /// Aborts every output of the pass.
    async fn abort(&mut self) {
        self.outputs.abort().await;
    }
}

/// What a worker needs to decode a batch of records: the pass's plan, output schema and
/// partitioning.
struct Job {
    /// The pass's decoder settings, copied by each batch (its scratch space is its own).
    decoding: Decoding,
    plan: Plan,
    schema: arrow::datatypes::SchemaRef,
    partitioner: Partitioner,
}

/// One batch of records, decoded: its rows by partition (one list per run of good records),
/// its bad rows in input order.
struct Decoded {
    parts: Vec<Vec<(String, RecordBatch)>>,
    bad_rows: Vec<BadRow>,
    cast_bad_rows: u64,
    default_rows: u64,
    /// The batch's buffers, done with, for the next batch.
    spent: Spent,
}

/// A decoded batch's input buffers, handed back for reuse.
#[derive(Default)]
struct Spent {
    bytes: Vec<u8>,
    recs: Vec<Rec>,
}

impl Job {
    /// Decodes a batch on the worker pool; the answer arrives when it is done. A panic in a
    /// worker is an internal error of this object, not the end of the process.
    fn spawn(
        self: &Arc<Self>,
        bytes: Vec<u8>,
        recs: Vec<Rec>,
    ) -> impl std::future::Future<Output = Result<Decoded, Failure>> + use<> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job = Arc::clone(self);
        rayon::spawn(move || {
            let decoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                job.decode(&bytes, &recs)
            }))
            .map(|decoded| {
                decoded.map(|d| Decoded {
                    spent: Spent { bytes, recs },
                    ..d
                })
            })
            .unwrap_or_else(|_| {
                Err(Failure::Other(Error::Internal(
                    "a worker decoding a batch panicked".into(),
                )))
            });
            let _ = tx.send(decoded);
        });
        async move {
            rx.await.unwrap_or_else(|_| {
                Err(Failure::Other(Error::Internal(
                    "a worker decoding a batch stopped without an answer".into(),
                )))
            })
        }
    }

    /// Decodes one batch of records, sets bad rows aside and splits the rest by partition.
    fn decode(&self, buf: &[u8], recs: &[Rec]) -> Result<Decoded, Failure> {
        let mut decoding = self.decoding.clone();
        let mut decoded = Decoded {
            parts: Vec::new(),
            bad_rows: Vec::new(),
            cast_bad_rows: 0,
            default_rows: 0,
            spent: Spent::default(),
        };
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
        decoding.decode_batch(dbuf, drecs, &mut good, &mut bad);
        let mut bad_rows = Vec::new();
        for (i, message) in bad {
            if let Some(change) = self.drift_in(dbuf, &drecs[i]) {
                return Err(Failure::Drift(change));
            }
            let reason = match self.plan.cast_failure(dbuf, &drecs[i]) {
                Some(reason) => {
                    decoded.cast_bad_rows += 1;
                    reason
                }
                None => scrub(&message),
            };
            bad_rows.push((i, reason));
        }
        for (batch, range) in good {
            let (out, failures) = decoding.to_output(&self.plan, &self.schema, &batch);
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
                        let reason = if self.plan.evolution.is_some() && c.fixed {
                            decoded.cast_bad_rows += 1;
                            self.plan.cast_message(*col, value)
                        } else {
                            format!(
                                "cannot read {value:?} as {} (column {:?})",
                                c.data_type, c.name
                            )
                        };
                        bad_rows.push((range.start + row, reason));
                    }
                }
                filter_record_batch(&out, &BooleanArray::from(keep)).map_err(arrow_err)?
            };
            if out.num_rows() == 0 {
                continue;
            }
            let (groups, defaulted) = self.partitioner.groups(&out)?;
            decoded.default_rows += defaulted;
            decoded.parts.push(split_by_partition(&out, groups)?);
        }
        bad_rows.sort_by_key(|b| b.0);
        for (i, error) in bad_rows {
            let r = &recs[i];
            let raw = &buf[r.start..r.end];
            let raw = raw.strip_suffix(b"\n").unwrap_or(raw);
            let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
            decoded.bad_rows.push(BadRow {
                line: r.line,
                error,
                raw: String::from_utf8_lossy(raw).into_owned(),
            });
        }
        Ok(decoded)
    }

    /// The plan change a failing record asks for, if it is type drift rather than a bad
    /// row. Decided from the record's values, never from a decoder's wording: a CSV record
    /// that does not read even as text, or JSON that is not one object, is malformed; a JSON
    /// field outside the columns is a new column; otherwise the first column whose own type cannot read this record's value
    /// is widened (an integer beyond int64 becomes text), unless `SCHEMA` fixed it.
    fn drift_in(&self, buf: &[u8], rec: &Rec) -> Option<Change> {
        let plan = &self.plan;
        if plan.format == Format::Json {
            // Not one JSON object (bad syntax, a bare value): malformed.
            let body = buf[rec.start..rec.end].trim_ascii();
            if !body.starts_with(b"{")
                || serde_json::from_slice::<serde::de::IgnoredAny>(body).is_err()
            {
                return None;
            }
            if let Some(field) = plan.new_json_field(buf, rec) {
                return Some(Change::Add(field));
            }
        } else {
            Decoding::new(plan, Types::Text)
                .ok()?
                .decode(buf, std::slice::from_ref(rec))
                .ok()?;
        }
        let col = (0..plan.columns.len())
            .find(|&c| plan.columns[c].in_input && !fits(plan, buf, rec, c))?;
        if !plan.can_widen(col) {
            return None;
        }
        if plan.columns[col].data_type == DataType::Int64
            && value_as_text(plan, buf, rec, col).is_some_and(|v| is_integer(&v))
        {
            return Some(Change::Text(col));
        }
        Some(Change::Widen(col))
    }
}

/// A batch's rows, one batch per partition path.
fn split_by_partition(
    batch: &RecordBatch,
    groups: Vec<(String, Vec<u32>)>,
) -> Result<Vec<(String, RecordBatch)>, Error> {
    if let [(path, _)] = &groups[..] {
        return Ok(vec![(path.clone(), batch.clone())]);
    }
    groups
        .into_iter()
        .map(|(path, rows)| {
            take_record_batch(batch, &UInt32Array::from(rows))
                .map(|b| (path, b))
                .map_err(arrow_err)
        })
        .collect()
}
