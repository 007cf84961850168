//! One Parquet file in memory, its columns encoded on every core.
//!
//! The same file arrow's `ArrowWriter` writes (its schema metadata, properties and row-group
//! boundaries), built from its lower-level parts: each row group has one column writer per
//! leaf column, and a batch's columns are encoded (dictionary, pages, compression) in
//! parallel on the worker pool. A column's bytes do not depend on which thread encoded it,
//! so the file is byte-for-byte the one a single thread writes.

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_writer::{
    ArrowColumnWriter, ArrowLeafColumn, ArrowRowGroupWriterFactory, compute_leaves,
};
use parquet::errors::Result;
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use rayon::prelude::*;

/// Below this many values in a batch (rows x columns) its columns are encoded on the
/// calling thread: handing them out would cost more than it saves.
const PARALLEL_VALUES: usize = 64 * 1024;

/// A Parquet file being written into memory: finished row groups accumulate in
/// [`FileEncoder::inner`] until they are taken for upload.
pub(super) struct FileEncoder {
    file: SerializedFileWriter<Vec<u8>>,
    factory: ArrowRowGroupWriterFactory,
    schema: SchemaRef,
    max_rows: usize,
    group: Option<RowGroup>,
}

/// The row group being encoded.
struct RowGroup {
    columns: Vec<ArrowColumnWriter>,
    rows: usize,
}

impl FileEncoder {
    /// A file of `schema` with `props` (row groups of at most `max_row_group_row_count`).
    pub(super) fn try_new(
        buf: Vec<u8>,
        schema: SchemaRef,
        props: WriterProperties,
    ) -> Result<FileEncoder> {
        let max_rows = props.max_row_group_row_count().unwrap_or(usize::MAX).max(1);
        let (file, factory) =
            ArrowWriter::try_new(buf, schema.clone(), Some(props))?.into_serialized_writer()?;
        Ok(FileEncoder {
            file,
            factory,
            schema,
            max_rows,
            group: None,
        })
    }

    /// Encodes a batch, starting a new row group whenever one reaches its row limit.
    pub(super) fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        let mut rest = batch.clone();
        while rest.num_rows() > 0 {
            let group = match &mut self.group {
                Some(g) => g,
                none => none.insert(RowGroup {
                    columns: self
                        .factory
                        .create_column_writers(self.file.flushed_row_groups().len())?,
                    rows: 0,
                }),
            };
            let take = rest.num_rows().min(self.max_rows - group.rows);
            let now = rest.slice(0, take);
            rest = rest.slice(take, rest.num_rows() - take);
            let mut leaves: Vec<ArrowLeafColumn> = Vec::with_capacity(group.columns.len());
            for (field, column) in self.schema.fields().iter().zip(now.columns()) {
                leaves.extend(compute_leaves(field, column)?);
            }
            let pairs = group.columns.iter_mut().zip(&leaves);
            if take * leaves.len() >= PARALLEL_VALUES {
                pairs
                    .collect::<Vec<_>>()
                    .into_par_iter()
                    .try_for_each(|(w, leaf)| w.write(leaf))?;
            } else {
                for (w, leaf) in pairs {
                    w.write(leaf)?;
                }
            }
            group.rows += take;
            if group.rows >= self.max_rows {
                self.flush()?;
            }
        }
        Ok(())
    }

    /// Closes the row group being encoded (its columns finished in parallel) and appends it
    /// to the file's bytes.
    pub(super) fn flush(&mut self) -> Result<()> {
        let Some(group) = self.group.take() else {
            return Ok(());
        };
        let chunks = group
            .columns
            .into_par_iter()
            .map(ArrowColumnWriter::close)
            .collect::<Result<Vec<_>>>()?;
        let mut row_group = self.file.next_row_group()?;
        for chunk in chunks {
            chunk.append_to_row_group(&mut row_group)?;
        }
        row_group.close()?;
        Ok(())
    }

    /// Memory held by the row group being encoded.
    pub(super) fn memory_size(&self) -> usize {
        self.group.as_ref().map_or(0, |g| {
            g.columns.iter().map(ArrowColumnWriter::memory_size).sum()
        })
    }

    /// The encoded size the row group being encoded is heading for.
    pub(super) fn in_progress_size(&self) -> usize {
        self.group.as_ref().map_or(0, |g| {
            g.columns
                .iter()
                .map(ArrowColumnWriter::get_estimated_total_bytes)
                .sum()
        })
    }

    /// Bytes of the file so far (taken for upload or not).
    pub(super) fn bytes_written(&self) -> usize {
        self.file.bytes_written()
    }

    /// Finished bytes not yet taken.
    pub(super) fn inner(&self) -> &Vec<u8> {
        self.file.inner()
    }

    /// Finished bytes, to take for upload (the file's offsets count them all the same).
    pub(super) fn inner_mut(&mut self) -> &mut Vec<u8> {
        self.file.inner_mut()
    }

    /// The last row group and the footer: the file's remaining bytes.
    pub(super) fn into_inner(mut self) -> Result<Vec<u8>> {
        self.flush()?;
        self.file.into_inner()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{ArrayRef, Float64Array, Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use parquet::basic::{Compression, ZstdLevel};

    use super::*;

    fn batch(schema: &SchemaRef, from: i64, rows: i64) -> RecordBatch {
        let ids: Int64Array = (from..from + rows)
            .map(|i| (i % 7 != 0).then_some(i))
            .collect();
        let fares =
            Float64Array::from_iter_values((from..from + rows).map(|i| (i % 500) as f64 / 4.0));
        let tags: StringArray = (from..from + rows)
            .map(|i| (i % 11 != 0).then(|| format!("tag-{}", i % 37)))
            .collect();
        let columns: Vec<ArrayRef> = vec![Arc::new(ids), Arc::new(fares), Arc::new(tags)];
        RecordBatch::try_new(schema.clone(), columns).expect("batch")
    }

    #[test]
    fn columns_encoded_in_parallel_give_the_bytes_of_arrows_writer() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("fare", DataType::Float64, true),
            Field::new("tag", DataType::Utf8, true),
        ]));
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).expect("level")))
            .set_max_row_group_row_count(Some(70_000))
            .build();
        let mut theirs =
            ArrowWriter::try_new(Vec::new(), schema.clone(), Some(props.clone())).expect("writer");
        let mut ours = FileEncoder::try_new(Vec::new(), schema.clone(), props).expect("encoder");
        let mut taken = Vec::new();
        // Batches large and small (parallel and not), row groups cut by the row limit inside
        // a batch and by an explicit flush, bytes taken midway as uploads take them.
        let mut from = 0;
        for (i, rows) in [50_000, 3, 40_000, 100_000, 17, 9_000]
            .into_iter()
            .enumerate()
        {
            let b = batch(&schema, from, rows);
            from += rows;
            theirs.write(&b).expect("theirs");
            ours.write(&b).expect("ours");
            if i == 4 {
                theirs.flush().expect("flush");
                ours.flush().expect("flush");
            }
            assert_eq!(ours.in_progress_size(), theirs.in_progress_size());
            assert_eq!(ours.bytes_written(), theirs.bytes_written());
            taken.append(ours.inner_mut());
        }
        taken.extend(ours.into_inner().expect("ours"));
        let theirs = theirs.into_inner().expect("theirs");
        assert!(theirs.len() > 100_000);
        assert!(taken == theirs, "the files differ");
    }
}
