//! One large object converted in byte ranges, by many invocations at once, all or nothing.
//!
//! 1. **Plan** ([`plan`]): the object is read once and cut into ranges of about `SPLIT_MB` at
//!    record boundaries, with the splitter the conversion itself uses (CSV quote-aware, so a
//!    quoted field with line breaks never straddles two ranges; JSON at the end of each
//!    value). A compressed object, or one no larger than one range, is one range. Under the
//!    catalog contract the dataset's table is made to exist first, from the head's sample,
//!    so every range converts under the same table.
//! 2. **Range** ([`convert_range`]): a range is read after the object's header, with the
//!    types the head of the object gives (every range infers from the same bytes, so every
//!    range agrees; a value that does not fit is a bad row, as under a table). Its files are
//!    uploaded and sealed, not completed: invisible. The sealed uploads go into the range's
//!    manifest under `{OUTPUT_PREFIX}_ranges/{dataset}/{stem}-{digest}/`.
//! 3. **Commit** ([`commit`]): every range's uploads are completed, or none: a missing range
//!    or a failed completion rolls back every one (completed files deleted again, the rest
//!    aborted). Then the object's manifest (the cleanup of an earlier run's files with it)
//!    and the partitions, as for a whole object. [`abort`] undoes the ranges of a run that
//!    failed.

use std::collections::BTreeSet;

use futures::{FutureExt, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt;
use tracing::{info, warn};
use tributary::reader::Compression;
use tributary::writer::DetachedUpload;
use tributary::{Error, ObjectRef};

use super::manifest::{self, Manifest, put_json, read_json};
use super::outputs::complete_together;
use super::partition::Partitioner;
use super::plan::{Plan, strip_bom};
use super::{Finished, MAX_PASSES, MIB, OutputFile, Summary, TableUse, conform, convert_input};
use crate::config::Config;
use crate::contract::{Commit, Contract};
use crate::naming::Names;
use crate::records::Splitter;

/// Bytes read at a time by the plan's scan.
const SCAN_CHUNK: usize = 8 * MIB;
/// Range manifests read at once by the commit.
const READ_AT_ONCE: usize = 16;

/// One range of an object: `start..end` of its stored bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ByteRange {
    /// Its number, from 0.
    pub index: u32,
    /// First byte.
    pub start: u64,
    /// One past the last byte.
    pub end: u64,
    /// The line number at `start` (1-based), for bad rows' line numbers.
    pub first_line: u64,
    /// The whole object, read as a whole (compressed, or small): no header to carry.
    #[serde(default)]
    pub whole: bool,
}

/// A range converted: what it wrote, its uploads sealed and detached.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SealedRange {
    /// The range's conversion, its files listed as they will be once committed.
    pub summary: Summary,
    /// The uploads of its files (the quarantine file's too), to complete or abort.
    pub uploads: Vec<DetachedUpload>,
}

/// What a range leaves for the commit: `range-NNNNN.json` under the run's prefix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RangeManifest {
    /// The object (its ETag: every range of one run reads the same bytes).
    pub source: manifest::Source,
    /// The range.
    pub range: ByteRange,
    /// What it wrote.
    #[serde(flatten)]
    pub sealed: SealedRange,
}

/// Where the work of a run is kept until the commit.
fn range_key(names: &Names, cfg: &Config, index: u32) -> String {
    format!(
        "{}range-{index:05}.json",
        names.ranges_prefix(&cfg.output_prefix)
    )
}

/// The key of the plan's JSON lines (one range per line).
pub fn plan_key(names: &Names, cfg: &Config) -> String {
    format!("{}plan.jsonl", names.ranges_prefix(&cfg.output_prefix))
}

fn out_bucket(cfg: &Config, object: &ObjectRef) -> String {
    cfg.output_bucket
        .clone()
        .unwrap_or_else(|| object.bucket.clone())
}

/// Cuts `object` (pinned to its ETag) into ranges of about `split` bytes at record
/// boundaries; under `contract`, makes sure the dataset's table exists first.
pub async fn plan(
    client: &aws_sdk_s3::Client,
    cfg: &Config,
    object: &ObjectRef,
    names: &Names,
    contract: Option<&Contract>,
    split: u64,
) -> Result<Vec<ByteRange>, Error> {
    let (mut reader, mut buf, plan) = super::read_head(client, cfg, object, names).await?;
    let size = reader.content_length.unwrap_or_default();
    if let Some(contract) = contract {
        ensure_table(cfg, names, &out_bucket(cfg, object), contract, &plan).await?;
    }
    let whole = vec![ByteRange {
        index: 0,
        start: 0,
        end: size,
        first_line: 1,
        whole: true,
    }];
    if reader.compression != Compression::None || size <= split {
        return Ok(whole);
    }
    // The rest is scanned in order as the reader fetches it in ranges, several at once: one
    // stream would hold the scan of a 100 GB object to the speed of one connection.
    let bom = (buf.len() - strip_bom(&buf).len()) as u64;
    let mut splitter = Splitter::new(plan.framing);
    let mut recs = Vec::new();
    // `buf[0]` is byte `base` of the object; `from` where the next record starts in `buf`.
    let (mut base, mut from, mut eof) = (0u64, bom as usize, false);
    let mut header = plan.header;
    let mut ranges = Vec::new();
    // The range being cut: where it starts, its line there; `None` before the first record.
    let mut current: Option<(u64, u64)> = None;
    let mut data_start = bom;
    loop {
        recs.clear();
        from = splitter
            .split(&buf, from, eof, usize::MAX, &mut recs)
            .map_err(|t| {
                Error::undecodable(
                    object.to_string(),
                    format!(
                        "the record starting at line {} never ends (an unclosed quote?)",
                        t.line
                    ),
                )
            })?;
        for r in &recs {
            let at = base + r.start as u64;
            if header {
                header = false;
                data_start = base + r.end as u64;
                continue;
            }
            match current {
                None => {
                    // The first range begins right after the header, at its line.
                    let head = &buf[..(data_start - base) as usize];
                    let line = 1 + memchr::memchr_iter(b'\n', head).count() as u64;
                    current = Some((data_start, line));
                }
                Some((start, _)) if at >= start + split => {
                    ranges.push((start, at, current.map_or(1, |c| c.1)));
                    current = Some((at, r.line));
                }
                Some(_) => {}
            }
        }
        if eof {
            break;
        }
        // Keep the unfinished record (and, before the first range, the header) only.
        let keep_from = if current.is_none() { 0 } else { from };
        buf.drain(..keep_from);
        base += keep_from as u64;
        from -= keep_from;
        let read = (&mut reader)
            .take(SCAN_CHUNK as u64)
            .read_to_end(&mut buf)
            .await
            .map_err(|e| Error::read(object, e))?;
        eof = read == 0;
    }
    let Some((start, line)) = current else {
        // No record after the header: nothing to cut.
        return Ok(whole);
    };
    ranges.push((start, size, line));
    if ranges.len() == 1 {
        return Ok(whole);
    }
    Ok(ranges
        .into_iter()
        .enumerate()
        .map(|(i, (start, end, first_line))| ByteRange {
            index: i as u32,
            start,
            end,
            first_line,
            whole: false,
        })
        .collect())
}

/// Makes sure the dataset's table exists, with the columns the head of the object gives.
async fn ensure_table(
    cfg: &Config,
    names: &Names,
    bucket: &str,
    contract: &Contract,
    inferred: &Plan,
) -> Result<(), Error> {
    let name = contract.settings().table_name(&names.dataset);
    let qualified = contract.qualified(&name);
    let mut table = contract.table(&name).await?;
    for _ in 0..MAX_PASSES {
        super::check_parquet_table(table.as_ref(), &qualified)?;
        let mut plan = inferred.clone();
        plan.conform(
            table.as_ref().map(|t| &t.def),
            contract.settings().evolution,
            cfg.schema.of(&names.dataset),
            &qualified,
        )?;
        let keys = Partitioner::new(cfg, &plan, names).keys();
        let desired = conform::desired(&plan, cfg, names, bucket, keys).map_err(|reason| {
            Error::SchemaMismatch {
                table: qualified.clone(),
                reason,
            }
        })?;
        match contract.commit(&name, &desired, table.take()).await? {
            Commit::Ready { .. } => return Ok(()),
            Commit::Changed(t) => table = Some(t),
        }
    }
    Err(Error::undecodable(
        object_of(names),
        format!("the table {qualified} kept changing while it was being made ready"),
    ))
}

fn object_of(names: &Names) -> String {
    format!("{}/{}", names.dataset, names.stem)
}

/// Converts one range and records its sealed uploads in its manifest. A range whose
/// manifest is already there (a retry after it was written) answers what it recorded.
pub async fn convert_range(
    client: &aws_sdk_s3::Client,
    cfg: &Config,
    object: &ObjectRef,
    names: &Names,
    contract: Option<&Contract>,
    range: &ByteRange,
) -> Result<RangeManifest, Error> {
    let bucket = out_bucket(cfg, object);
    let key = range_key(names, cfg, range.index);
    if let Some(done) = read_json::<RangeManifest>(client, &bucket, &key).await?
        && done.range == *range
        && done.source.etag == object.etag
    {
        info!(object = %object, range = range.index, "range already converted");
        return Ok(done);
    }
    let sealed = match convert_input(client, cfg, object, names, contract, Some(range)).await? {
        Finished::Sealed(s) => s,
        Finished::Complete(_) => {
            return Err(Error::Internal("a range's files were completed".into()));
        }
    };
    let manifest = RangeManifest {
        source: source_of(object),
        range: *range,
        sealed,
    };
    if let Err(e) = put_json(client, &bucket, &key, &manifest).await {
        abort_uploads(client, manifest.sealed.uploads).await;
        return Err(e);
    }
    Ok(manifest)
}

fn source_of(object: &ObjectRef) -> manifest::Source {
    manifest::Source {
        bucket: object.bucket.clone(),
        key: object.key.clone(),
        version_id: object.version_id.clone(),
        etag: object.etag.clone(),
    }
}

/// Completes the files of all `count` ranges (every one or none), then writes the object's
/// manifest, removes an earlier run's files this one replaced, registers the partitions
/// and clears the run's work. A commit repeated after it succeeded answers the manifest.
pub async fn commit(
    client: &aws_sdk_s3::Client,
    cfg: &Config,
    object: &ObjectRef,
    names: &Names,
    contract: Option<&Contract>,
    count: u32,
) -> Result<Summary, Error> {
    let bucket = out_bucket(cfg, object);
    let manifest_key = names.manifest_key(&cfg.output_prefix);
    let previous = Manifest::read(client, &bucket, &manifest_key).await?;
    let (ranges, missing) = read_ranges(client, cfg, object, names, count).await?;
    if !missing.is_empty() {
        if let Some(done) = previous.as_ref().filter(|m| {
            ranges.is_empty()
                && m.source == source_of(object)
                && m.keys().any(|k| k.contains(&names.range_file_prefix()))
        }) {
            info!(object = %object, "already committed");
            return Ok(done.summary());
        }
        let aborted = undo(client, cfg, names, &bucket, ranges).await;
        return Err(Error::invalid_input(
            "ranges",
            format!(
                "{} of {count} ranges of {object} left no result (range {}): nothing was committed, {aborted} uploads aborted",
                missing.len(),
                missing
                    .iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    let uploads: Vec<(DetachedUpload, u64)> = ranges
        .iter()
        .flat_map(|r| {
            let s = &r.sealed.summary;
            let rows = |key: &str| {
                s.files
                    .iter()
                    .chain(&s.bad_rows_file)
                    .find(|f| f.key == key)
                    .map_or(0, |f| f.rows)
            };
            r.sealed
                .uploads
                .iter()
                .map(move |u| (u.clone(), rows(&u.key)))
        })
        .collect();
    let completing = uploads.into_iter().map(|(u, rows)| {
        let client = client.clone();
        async move { (complete_once(&client, u).await, rows) }.boxed()
    });
    let completed = complete_together(client, completing).await?;
    let summary = combine(object, &ranges, completed);
    let mut summary = summary;
    if let Some(contract) = contract {
        let name = contract.settings().table_name(&names.dataset);
        match contract.fresh(&name).await? {
            Some(t) => {
                let partitions = conform::partitions_of(cfg, names, &bucket, &summary);
                contract.register(&t.def, &partitions).await?;
                if let Some(table) = &mut summary.table {
                    table.partitions = partitions.len();
                }
            }
            None => {
                warn!(table = %contract.qualified(&name), "the table is gone: partitions not registered")
            }
        }
    }
    Manifest::of(object, &summary)
        .commit(client, &bucket, &manifest_key, previous.as_ref())
        .await?;
    clear(client, cfg, names, &bucket, count).await;
    let swept = sweep(client, cfg, names, &bucket).await;
    if swept > 0 {
        info!(object = %object, uploads = swept, "uploads of earlier range attempts aborted");
    }
    Ok(summary)
}

/// Undoes a run whose ranges (some or all) failed: every upload any range recorded is
/// aborted, so nothing of the run becomes visible; the run's work is cleared. The uploads
/// aborted.
pub async fn abort(
    client: &aws_sdk_s3::Client,
    cfg: &Config,
    object: &ObjectRef,
    names: &Names,
    count: u32,
) -> Result<usize, Error> {
    let bucket = out_bucket(cfg, object);
    let (ranges, _) = read_ranges(client, cfg, object, names, count).await?;
    Ok(undo(client, cfg, names, &bucket, ranges).await)
}

async fn undo(
    client: &aws_sdk_s3::Client,
    cfg: &Config,
    names: &Names,
    bucket: &str,
    ranges: Vec<RangeManifest>,
) -> usize {
    let count = ranges.iter().map(|r| r.range.index + 1).max().unwrap_or(0);
    let uploads: Vec<DetachedUpload> = ranges.into_iter().flat_map(|r| r.sealed.uploads).collect();
    let n = uploads.len();
    abort_uploads(client, uploads).await;
    let swept = sweep(client, cfg, names, bucket).await;
    clear(client, cfg, names, bucket, count).await;
    n + swept
}

/// Reads the manifests of ranges `0..count`: those found (of this object's ETag), and the
/// indexes without one.
async fn read_ranges(
    client: &aws_sdk_s3::Client,
    cfg: &Config,
    object: &ObjectRef,
    names: &Names,
    count: u32,
) -> Result<(Vec<RangeManifest>, Vec<u32>), Error> {
    let bucket = out_bucket(cfg, object);
    let read: Vec<(u32, Result<Option<RangeManifest>, Error>)> = futures::stream::iter(0..count)
        .map(|i| {
            let key = range_key(names, cfg, i);
            let bucket = bucket.clone();
            async move { (i, read_json::<RangeManifest>(client, &bucket, &key).await) }
        })
        .buffered(READ_AT_ONCE)
        .collect()
        .await;
    let mut found = Vec::new();
    let mut missing = Vec::new();
    for (i, r) in read {
        match r? {
            Some(m) if m.source.etag == object.etag && m.range.index == i => found.push(m),
            _ => missing.push(i),
        }
    }
    Ok((found, missing))
}

/// Completes one upload; one that is already complete (a commit repeated after it
/// completed some) counts when the object is there with its size.
async fn complete_once(
    client: &aws_sdk_s3::Client,
    upload: DetachedUpload,
) -> Result<tributary::WriteOutcome, Error> {
    let (bucket, key, bytes, parts) = (
        upload.bucket.clone(),
        upload.key.clone(),
        upload.bytes,
        upload.parts.len() as u32,
    );
    match upload.attach(client).complete().await {
        Ok(o) => Ok(o),
        Err(e @ Error::S3 { .. }) | Err(e @ Error::NotFound { .. }) => {
            let head = client.head_object().bucket(&bucket).key(&key).send().await;
            match head {
                Ok(h) if h.content_length() == Some(bytes as i64) => Ok(tributary::WriteOutcome {
                    bucket,
                    key,
                    etag: h.e_tag().map(|t| t.trim_matches('"').to_owned()),
                    version_id: h.version_id().map(str::to_owned),
                    bytes,
                    parts,
                    checksum: tributary::checksum::FullObjectChecksum {
                        algorithm: String::new(),
                        value: String::new(),
                    },
                }),
                _ => Err(e),
            }
        }
        Err(e) => Err(e),
    }
}

/// The ranges' conversions as one: the object's summary.
fn combine(object: &ObjectRef, ranges: &[RangeManifest], completed: Vec<OutputFile>) -> Summary {
    let bad_rows_keys: BTreeSet<&str> = ranges
        .iter()
        .filter_map(|r| r.sealed.summary.bad_rows_file.as_ref())
        .map(|f| f.key.as_str())
        .collect();
    let (mut bad_rows_files, mut files): (Vec<OutputFile>, Vec<OutputFile>) = completed
        .into_iter()
        .partition(|f| bad_rows_keys.contains(f.key.as_str()));
    files.sort_by(|a, b| a.key.cmp(&b.key));
    bad_rows_files.sort_by(|a, b| a.key.cmp(&b.key));
    let sum = |f: fn(&Summary) -> u64| ranges.iter().map(|r| f(&r.sealed.summary)).sum::<u64>();
    let mut schema: Vec<String> = Vec::new();
    for r in ranges {
        for c in &r.sealed.summary.schema {
            if !schema.contains(c) {
                schema.push(c.clone());
            }
        }
    }
    let partitions: BTreeSet<&str> = files
        .iter()
        .map(|f| f.key.rsplit_once('/').map_or("", |(dir, _)| dir))
        .collect();
    let tables: Vec<&TableUse> = ranges
        .iter()
        .filter_map(|r| r.sealed.summary.table.as_ref())
        .collect();
    let table = tables.first().map(|first| {
        let mut t = TableUse {
            table: first.table.clone(),
            ..TableUse::default()
        };
        for u in &tables {
            t.created |= u.created;
            t.cast_bad_rows += u.cast_bad_rows;
            for c in &u.columns_added {
                if !t.columns_added.contains(c) {
                    t.columns_added.push(c.clone());
                }
            }
            for c in &u.columns_ignored {
                if !t.columns_ignored.contains(c) {
                    t.columns_ignored.push(c.clone());
                }
            }
        }
        t
    });
    Summary {
        source: object.to_string(),
        rows: sum(|s| s.rows),
        bad_rows: sum(|s| s.bad_rows),
        bad_rows_file: None,
        bytes_in: sum(|s| s.bytes_in),
        bytes_out: files.iter().map(|f| f.bytes).sum(),
        partitions: partitions.len(),
        files,
        bad_rows_files,
        default_partition_rows: sum(|s| s.default_partition_rows),
        type_widenings: ranges.iter().map(|r| r.sealed.summary.type_widenings).sum(),
        schema,
        table,
    }
}

async fn abort_uploads(client: &aws_sdk_s3::Client, uploads: Vec<DetachedUpload>) {
    futures::stream::iter(uploads)
        .for_each_concurrent(8, |u| async move {
            let key = u.key.clone();
            if let Err(e) = u.attach(client).abort().await {
                warn!(key = %key, error = %e, "abort failed; the bucket's lifecycle rule will clean up");
            }
        })
        .await;
}

/// Aborts uploads of this object's ranges that no manifest recorded (a range attempt that
/// ended without cleaning up: a timeout, a crash), where the store lists uploads. The
/// number aborted.
async fn sweep(client: &aws_sdk_s3::Client, cfg: &Config, names: &Names, bucket: &str) -> usize {
    let mut aborted = 0;
    let file_prefix = names.range_file_prefix();
    for prefix in [
        format!("{}{}/", cfg.output_prefix, names.dataset),
        format!("{}{}/", cfg.error_prefix, names.dataset),
    ] {
        let mut markers: (Option<String>, Option<String>) = (None, None);
        loop {
            let page = match client
                .list_multipart_uploads()
                .bucket(bucket)
                .prefix(&prefix)
                .set_key_marker(markers.0.take())
                .set_upload_id_marker(markers.1.take())
                .send()
                .await
            {
                Ok(p) => p,
                Err(e) => {
                    tracing::debug!(error = %e, "uploads not listed: left to the lifecycle rule");
                    break;
                }
            };
            for u in page.uploads() {
                let (Some(key), Some(id)) = (u.key(), u.upload_id()) else {
                    continue;
                };
                let file = key.rsplit('/').next().unwrap_or(key);
                if file.starts_with(&file_prefix)
                    && tributary::writer::abort_upload(client, bucket, key, id)
                        .await
                        .is_ok()
                {
                    aborted += 1;
                }
            }
            if page.is_truncated() != Some(true) {
                break;
            }
            markers = (
                page.next_key_marker().map(str::to_owned),
                page.next_upload_id_marker().map(str::to_owned),
            );
            if markers.0.is_none() {
                break;
            }
        }
    }
    aborted
}

/// Removes the run's plan and range manifests.
async fn clear(client: &aws_sdk_s3::Client, cfg: &Config, names: &Names, bucket: &str, count: u32) {
    let keys = (0..count)
        .map(|i| range_key(names, cfg, i))
        .chain([plan_key(names, cfg)]);
    futures::stream::iter(keys)
        .for_each_concurrent(16, |key| async move {
            if let Err(e) = client.delete_object().bucket(bucket).key(&key).send().await {
                warn!(key = %key, error = %e, "could not remove a finished run's work");
            }
        })
        .await;
}
