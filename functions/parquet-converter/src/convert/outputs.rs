//! The files of one pass: one Parquet file per partition streaming into its multipart
//! upload, rotation at `TARGET_FILE_MB`, the open-file limit and the memory budget, the
//! quarantine file, and the commit: everything completed at the end, or rolled back.

use std::collections::HashMap;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use futures::FutureExt;
use futures::future::BoxFuture;
use parquet::file::properties::WriterProperties;
use tracing::warn;
use tributary::{Error, ObjectRef, S3Writer, SealedUpload, WriteOutcome, WriterConfig};

use super::encode::FileEncoder;
use super::ranges::SealedRange;
use super::{MIB, OutputFile, Summary};

/// S3's longest key, in bytes.
const MAX_KEY: usize = 1024;
/// A file not written by this many batches in a row is closed: its partition's rows have
/// passed (time-ordered input moves from day to day), and what it holds is better freed
/// than kept until the memory budget asks for it.
const IDLE_BATCHES: u64 = 32;
use crate::config::{BadRows, Config};
use crate::naming::Names;

/// A row set aside.
pub(super) struct BadRow {
    pub(super) line: u64,
    pub(super) error: String,
    pub(super) raw: String,
}

/// The files of one pass over one object.
pub(super) struct Outputs<'a> {
    client: &'a aws_sdk_s3::Client,
    cfg: &'a Config,
    names: &'a Names,
    object: &'a ObjectRef,
    bucket: &'a str,
    schema: SchemaRef,
    props: WriterProperties,
    open: HashMap<String, Output>,
    /// Closed files, uploaded but not yet visible.
    sealed: Vec<(SealedUpload, u64)>,
    /// Next file number per partition (its keys are the partitions written).
    next_file: HashMap<String, usize>,
    quarantine: Option<S3Writer>,
    bad_rows: u64,
    rows: u64,
    /// Batches appended so far (the clock for "least recently written").
    tick: u64,
}

/// One partition's file being written.
struct Output {
    key: String,
    parquet: FileEncoder,
    upload: S3Writer,
    rows: u64,
    last_write: u64,
}

impl Output {
    fn held(&self) -> usize {
        self.parquet.memory_size() + self.parquet.inner().len() + self.upload.bytes_held()
    }

    /// Writes the file's last bytes (footer included) into its upload, which is returned
    /// with the file's rows; on failure the upload is aborted.
    async fn close(self) -> Result<(S3Writer, u64), Error> {
        let Output {
            key,
            parquet,
            mut upload,
            rows,
            ..
        } = self;
        let written = match close_file(parquet, &upload, &key) {
            Ok(tail) => upload.write(&tail).await,
            Err(e) => Err(e),
        };
        match written {
            Ok(()) => Ok((upload, rows)),
            Err(e) => {
                let _ = upload.abort().await;
                Err(e)
            }
        }
    }
}

impl<'a> Outputs<'a> {
    pub(super) fn new(
        client: &'a aws_sdk_s3::Client,
        cfg: &'a Config,
        names: &'a Names,
        object: &'a ObjectRef,
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
        Outputs {
            client,
            cfg,
            names,
            object,
            bucket,
            schema,
            props,
            open: HashMap::new(),
            sealed: Vec::new(),
            next_file: HashMap::new(),
            quarantine: None,
            bad_rows: 0,
            rows: 0,
            tick: 0,
        }
    }

    /// Quarantines or fails on one bad row.
    pub(super) async fn bad_row(&mut self, row: BadRow) -> Result<(), Error> {
        if self.cfg.bad_rows == BadRows::Fail {
            return Err(Error::BadRow {
                what: self.object.to_string(),
                line: row.line,
                reason: row.error,
            });
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

    /// Appends a batch's rows, already split by partition path, to their files.
    pub(super) async fn write(&mut self, parts: Vec<(String, RecordBatch)>) -> Result<(), Error> {
        if parts.is_empty() {
            return Ok(());
        }
        self.tick += 1;
        for (path, part) in parts {
            self.rows += part.num_rows() as u64;
            self.append(&path, part).await?;
        }
        self.close_idle().await?;
        self.keep_to_budget().await
    }

    /// Closes the files no batch has written for [`IDLE_BATCHES`].
    async fn close_idle(&mut self) -> Result<(), Error> {
        let idle: Vec<String> = self
            .open
            .iter()
            .filter(|(_, o)| o.last_write + IDLE_BATCHES < self.tick)
            .map(|(p, _)| p.clone())
            .collect();
        for path in idle {
            self.seal(&path).await?;
        }
        Ok(())
    }

    async fn append(&mut self, path: &str, batch: RecordBatch) -> Result<(), Error> {
        if !self.open.contains_key(path) {
            while self.open.len() >= self.cfg.max_open_partitions {
                let lru = self
                    .open
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
        let Some(out) = self.open.get_mut(path) else {
            return Ok(());
        };
        out.rows += batch.num_rows() as u64;
        out.last_write = tick;
        out.parquet.write(&batch).map_err(parquet_err)?;
        if out.parquet.in_progress_size() >= limit {
            out.parquet.flush().map_err(parquet_err)?;
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
        let parquet = FileEncoder::try_new(
            Vec::with_capacity(64 * 1024),
            self.schema.clone(),
            self.props.clone(),
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
        self.open.insert(
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
        let Some(out) = self.open.remove(path) else {
            return Ok(());
        };
        let (upload, rows) = out.close().await?;
        let sealed = upload.seal().await?;
        tracing::debug!(key = %sealed.key(), rows, bytes = sealed.bytes(), "file closed");
        self.sealed.push((sealed, rows));
        Ok(())
    }

    /// Keeps the bytes held by open files within `MEMORY_BUDGET_MB`.
    async fn keep_to_budget(&mut self) -> Result<(), Error> {
        loop {
            let held: usize = self.open.values().map(Output::held).sum();
            if held <= self.cfg.memory_budget {
                return Ok(());
            }
            // Files not written by this batch are done for now: close the stalest.
            let idle = self
                .open
                .iter()
                .filter(|(_, o)| o.last_write < self.tick)
                .min_by_key(|(_, o)| o.last_write)
                .map(|(p, _)| p.clone());
            if let Some(p) = idle {
                self.seal(&p).await?;
                continue;
            }
            let Some((path, flushable)) = self
                .open
                .iter()
                .max_by_key(|(_, o)| o.held())
                .map(|(p, o)| (p.clone(), o.parquet.in_progress_size() > 0))
            else {
                return Ok(());
            };
            if flushable && let Some(out) = self.open.get_mut(&path) {
                // A smaller row group first; the file goes on.
                out.parquet.flush().map_err(parquet_err)?;
                Self::drain(out).await?;
                if out.held() + MIB < self.cfg.memory_budget / self.open.len().max(1) {
                    continue;
                }
            }
            self.seal(&path).await?;
        }
    }

    /// Closes every file and completes every upload; on failure removes what was completed.
    /// Files still open go up now (one PutObject when small); sealed ones are completed.
    pub(super) async fn finish(mut self) -> Result<Summary, Error> {
        let mut last: Vec<(S3Writer, u64)> = Vec::new();
        for (_, out) in std::mem::take(&mut self.open) {
            match out.close().await {
                Ok(closed) => last.push(closed),
                Err(e) => {
                    for (w, _) in last {
                        let _ = w.abort().await;
                    }
                    self.abort().await;
                    return Err(e);
                }
            }
        }
        let bad_rows_key = self
            .quarantine
            .as_ref()
            .map(|_| self.names.bad_rows_key(&self.cfg.error_prefix));
        if let Some(writer) = self.quarantine.take() {
            last.push((writer, self.bad_rows));
        }
        let sealed = std::mem::take(&mut self.sealed);
        let finishing = last
            .into_iter()
            .map(|(w, rows)| async move { (w.finish().await, rows) }.boxed());
        let completing = sealed
            .into_iter()
            .map(|(s, rows)| async move { (s.complete().await, rows) }.boxed());
        let mut files = complete_together(self.client, finishing.chain(completing)).await?;
        let bad_rows_file = bad_rows_key.and_then(|k| {
            let i = files.iter().position(|f| f.key == k)?;
            Some(files.remove(i))
        });
        Ok(self.summary(files, bad_rows_file))
    }

    /// What the pass wrote: `files` (sorted here) and the quarantine file.
    fn summary(&self, mut files: Vec<OutputFile>, bad_rows_file: Option<OutputFile>) -> Summary {
        files.sort_by(|a, b| a.key.cmp(&b.key));
        Summary {
            source: self.object.to_string(),
            rows: self.rows,
            bad_rows: self.bad_rows,
            bad_rows_file,
            bad_rows_files: Vec::new(),
            bytes_in: 0,
            bytes_out: files.iter().map(|f| f.bytes).sum(),
            // Every partition opened at least one file.
            partitions: self.next_file.len(),
            files,
            default_partition_rows: 0,
            type_widenings: 0,
            table: None,
            schema: self
                .schema
                .fields()
                .iter()
                .map(|f| format!("{}: {}", f.name(), f.data_type()))
                .collect(),
        }
    }

    /// Closes every file and seals every upload (the quarantine's too), completing none: a
    /// range's files, made visible by the commit of all ranges. On failure everything is
    /// aborted.
    pub(super) async fn seal_all(mut self) -> Result<SealedRange, Error> {
        let paths: Vec<String> = self.open.keys().cloned().collect();
        for path in paths {
            if let Err(e) = self.seal(&path).await {
                self.abort().await;
                return Err(e);
            }
        }
        let mut sealed = std::mem::take(&mut self.sealed);
        let mut bad_rows_file = None;
        if let Some(writer) = self.quarantine.take() {
            match writer.seal().await {
                Ok(s) => {
                    bad_rows_file = Some(s.key().to_owned());
                    sealed.push((s, self.bad_rows));
                }
                Err(e) => {
                    self.sealed = sealed;
                    self.abort().await;
                    return Err(e);
                }
            }
        }
        let mut files = Vec::with_capacity(sealed.len());
        let mut uploads = Vec::with_capacity(sealed.len());
        for (s, rows) in sealed {
            files.push(OutputFile {
                bucket: self.bucket.to_owned(),
                key: s.key().to_owned(),
                rows,
                bytes: s.bytes(),
            });
            uploads.push(s.detach()?);
        }
        let bad_rows_file = bad_rows_file.and_then(|k| {
            let i = files.iter().position(|f| f.key == k)?;
            Some(files.remove(i))
        });
        Ok(SealedRange {
            summary: self.summary(files, bad_rows_file),
            uploads,
        })
    }

    /// Aborts every output of this pass.
    pub(super) async fn abort(&mut self) {
        for (_, out) in std::mem::take(&mut self.open) {
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

/// Completes objects together, a few at a time: every one, or (on any failure) none, those
/// already completed deleted again and the rest aborted. The files, each with its rows.
pub(super) async fn complete_together(
    client: &aws_sdk_s3::Client,
    completing: impl Iterator<Item = BoxFuture<'static, (Result<WriteOutcome, Error>, u64)>>,
) -> Result<Vec<OutputFile>, Error> {
    use futures::StreamExt;
    let results: Vec<(Result<WriteOutcome, Error>, u64)> = futures::stream::iter(completing)
        .buffered(8)
        .collect()
        .await;
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
            if let Err(del) = client
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
    Ok(files)
}

/// Closes a file's Parquet writer: its last bytes, footer included, with float statistics
/// every reader uses ([`crate::footer`]).
fn close_file(parquet: FileEncoder, upload: &S3Writer, key: &str) -> Result<Vec<u8>, Error> {
    let mut tail = parquet.into_inner().map_err(parquet_err)?;
    if let Err(reason) = crate::footer::amend_float_statistics(&mut tail, upload.bytes_written()) {
        warn!(key, reason = %reason, "float statistics left in the total order only newer readers use");
    }
    Ok(tail)
}

/// A parquet error as ours, the error kept as the source.
fn parquet_err(e: parquet::errors::ParquetError) -> Error {
    Error::decode("Parquet output", e, str::to_owned)
}
