//! Float statistics every reader can use.
//!
//! The parquet crate marks every `float`/`double` column with the `IEEE_754_TOTAL_ORDER`
//! column order, and has no writer option for another. Readers that predate that order
//! (pyarrow, DuckDB, and the parquet-mr based engines: Athena/Trino, Spark, Hive) ignore the
//! min/max of a column whose order they do not know, so no engine could skip a row group on
//! `fare_amount > 100`. So once a file's footer is written, before its last bytes are
//! uploaded, it is amended (only the footer changes; no offset into the file moves):
//!
//! * a float column with no NaN in any row group gets `TYPE_DEFINED_ORDER`, the order every
//!   reader knows. Its min/max already exclude NaN (the crate never puts NaN in them), and a
//!   zero bound is written as the format asks for that order: a zero min as `-0.0`, a zero max
//!   as `+0.0`, in the column chunk statistics and in the page index, so a reader comparing
//!   with the sign of zero never skips a row group that holds the other zero; and the legacy
//!   `min`/`max` statistics fields are written beside `min_value`/`max_value`, as other
//!   writers do for this order, for readers and tools that look only at those;
//! * a float column holding NaN keeps `IEEE_754_TOTAL_ORDER` (readers that know it use its
//!   NaN counts; the others ignore its min/max, which is safe: a reader that sorts NaN above
//!   every number would otherwise skip row groups whose NaNs match `x > 100`).
//!
//! The footer is the Thrift compact encoding of `FileMetaData`; the crate's codec is private,
//! so the few fields needed are located by the small reader in [`thrift`], which skips
//! everything else by its wire type. The amended footer is checked by decoding it with the crate's own
//! reader in the tests.

mod thrift;

use std::ops::Range;

use thrift::{
    BINARY, Chunk, IEEE_754_TOTAL_ORDER, STRUCT, TYPE_DEFINED_ORDER, read_column_index,
    read_file_metadata,
};

/// What the amendment changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Amended {
    /// Float columns given `TYPE_DEFINED_ORDER`.
    pub columns: usize,
    /// Float columns left at `IEEE_754_TOTAL_ORDER` because they hold NaN.
    pub with_nan: usize,
}

/// Amends the footer at the end of `tail`, the last bytes of a Parquet file that starts
/// `offset` bytes before `tail` (the page index is amended when it lies in `tail`).
pub fn amend_float_statistics(tail: &mut Vec<u8>, offset: u64) -> Result<Amended, String> {
    let n = tail.len();
    if n < 12 || &tail[n - 4..] != b"PAR1" {
        return Err("no Parquet footer at the end of the file".into());
    }
    let len = u32::from_le_bytes([tail[n - 8], tail[n - 7], tail[n - 6], tail[n - 5]]) as usize;
    let start = (n - 8)
        .checked_sub(len)
        .ok_or("the footer is longer than the bytes held")?;
    let meta = read_file_metadata(&tail[start..n - 8])?;
    let mut plan = Amended::default();
    // Same-length edits first (one byte each), then the legacy `min`/`max` fields inserted.
    let mut edits: Vec<(usize, u8)> = Vec::new();
    let mut inserts: Vec<&Chunk> = Vec::new();
    for (col, order) in meta.orders.iter().enumerate() {
        if order.id != IEEE_754_TOTAL_ORDER {
            continue;
        }
        let chunks: Vec<&Chunk> = meta
            .row_groups
            .iter()
            .filter_map(|rg| rg.get(col))
            .collect();
        if chunks
            .iter()
            .any(|c| c.stats.is_some() && c.nan_count != Some(0))
        {
            plan.with_nan += 1;
            continue;
        }
        plan.columns += 1;
        edits.push((start + order.header, (TYPE_DEFINED_ORDER << 4) | STRUCT));
        for c in &chunks {
            let footer = &tail[start..n - 8];
            for r in c.mins.iter().chain(&c.min_value) {
                negative_zero(footer, r, start, &mut edits);
            }
            for r in c.maxes.iter().chain(&c.max_value) {
                positive_zero(footer, r, start, &mut edits);
            }
            if let Some((at, len)) = c.column_index
                && let Some(rel) = at.checked_sub(offset)
                && let Ok(rel) = usize::try_from(rel)
                && rel + len <= start
            {
                let index = read_column_index(&tail[rel..rel + len])?;
                for r in &index.mins {
                    negative_zero(&tail[rel..rel + len], r, rel, &mut edits);
                }
                for r in &index.maxes {
                    positive_zero(&tail[rel..rel + len], r, rel, &mut edits);
                }
            }
            if c.mins.is_empty() && c.maxes.is_empty() {
                inserts.push(c);
            }
        }
    }
    for (at, byte) in edits {
        tail[at] = byte;
    }
    if inserts.is_empty() {
        return Ok(plan);
    }
    // Readers of the legacy fields (and tools that show only them) get the same bounds, as
    // other writers give them for this order: `max` (1) and `min` (2) go first in the
    // statistics struct, and the field that was first is re-based on field 2.
    let footer = tail[start..n - 8].to_vec();
    let mut out = Vec::with_capacity(footer.len() + inserts.len() * 24);
    let mut copied = 0;
    inserts.sort_by_key(|c| c.stats.map(|s| s.0));
    for c in inserts {
        let (Some((at, first)), Some(min), Some(max)) = (c.stats, &c.min_value, &c.max_value)
        else {
            continue;
        };
        let delta = first >> 4;
        if first != 0 && delta < 3 && delta != 0 {
            // A field before `min_value` that is not `null_count` or later: leave it.
            continue;
        }
        out.extend_from_slice(&footer[copied..at]);
        for r in [max, min] {
            out.push((1 << 4) | BINARY);
            varint(&mut out, r.len() as u64);
            out.extend_from_slice(&footer[r.clone()]);
        }
        // A short-form header counts from the previous field id, now 2; a long-form one
        // names its id and the struct's stop byte needs nothing.
        out.push(if delta == 0 {
            first
        } else {
            ((delta - 2) << 4) | (first & 0x0F)
        });
        copied = at + 1;
    }
    out.extend_from_slice(&footer[copied..]);
    let len = u32::try_from(out.len()).map_err(|_| "the footer grew past 4 GiB")?;
    tail.truncate(start);
    tail.extend_from_slice(&out);
    tail.extend_from_slice(&len.to_le_bytes());
    tail.extend_from_slice(b"PAR1");
    Ok(plan)
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A zero (either sign) of any float width, little-endian: all bits clear but the sign.
fn is_zero(v: &[u8]) -> bool {
    match v.split_last() {
        Some((last, rest)) => last & 0x7F == 0 && rest.iter().all(|b| *b == 0),
        None => false,
    }
}

fn negative_zero(buf: &[u8], r: &Range<usize>, base: usize, edits: &mut Vec<(usize, u8)>) {
    if is_zero(&buf[r.clone()]) {
        edits.push((base + r.end - 1, 0x80));
    }
}

fn positive_zero(buf: &[u8], r: &Range<usize>, base: usize, edits: &mut Vec<(usize, u8)>) {
    if is_zero(&buf[r.clone()]) {
        edits.push((base + r.end - 1, 0x00));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Float32Array, Float64Array, Int64Array, RecordBatch};
    use arrow::datatypes::{DataType, Field, Schema};
    use bytes::Bytes;
    use parquet::arrow::ArrowWriter;
    use parquet::basic::{ColumnOrder, SortOrder};
    use parquet::file::metadata::{PageIndexPolicy, ParquetMetaData, ParquetMetaDataReader};
    use parquet::file::page_index::column_index::ColumnIndexMetaData;
    use parquet::file::properties::WriterProperties;
    use parquet::file::statistics::Statistics;
    use std::sync::Arc;

    /// A file of `rows` per row group (two row groups) with the given columns, its tail
    /// amended as the converter does it, after `split` bytes were already uploaded.
    fn write(columns: Vec<(&str, arrow::array::ArrayRef)>, split: usize) -> (Vec<u8>, Amended) {
        let schema = Arc::new(Schema::new(
            columns
                .iter()
                .map(|(n, a)| Field::new(*n, a.data_type().clone(), true))
                .collect::<Vec<_>>(),
        ));
        let batch = RecordBatch::try_new(
            schema.clone(),
            columns.into_iter().map(|(_, a)| a).collect(),
        )
        .expect("batch");
        let props = WriterProperties::builder()
            .set_max_row_group_row_count(Some(batch.num_rows() / 2))
            .build();
        let mut w = ArrowWriter::try_new(Vec::new(), schema, Some(props)).expect("writer");
        w.write(&batch).expect("write");
        let file = w.into_inner().expect("close");
        let split = split.min(file.len());
        let mut tail = file[split..].to_vec();
        let amended = amend_float_statistics(&mut tail, split as u64).expect("amend");
        let mut file = file[..split].to_vec();
        file.extend_from_slice(&tail);
        (file, amended)
    }

    fn metadata(file: &[u8]) -> ParquetMetaData {
        ParquetMetaDataReader::new()
            .with_page_index_policy(PageIndexPolicy::Required)
            .parse_and_finish(&Bytes::copy_from_slice(file))
            .expect("the amended file reads")
    }

    fn min_max(m: &ParquetMetaData, rg: usize, col: usize) -> (f64, f64) {
        match m.row_group(rg).column(col).statistics() {
            Some(Statistics::Double(s)) => (*s.min_opt().expect("min"), *s.max_opt().expect("max")),
            Some(Statistics::Float(s)) => (
                f64::from(*s.min_opt().expect("min")),
                f64::from(*s.max_opt().expect("max")),
            ),
            other => panic!("no float statistics: {other:?}"),
        }
    }

    #[test]
    fn float_columns_without_nan_get_the_order_every_reader_knows() {
        let d = Float64Array::from(vec![Some(1.5), None, Some(-2.0), Some(7.25)]);
        let f = Float32Array::from(vec![Some(0.5), Some(3.0), Some(-1.0), Some(2.0)]);
        let i = Int64Array::from(vec![1, 2, 3, 4]);
        let (file, amended) = write(
            vec![("d", Arc::new(d)), ("i", Arc::new(i)), ("f", Arc::new(f))],
            0,
        );
        assert_eq!(
            amended,
            Amended {
                columns: 2,
                with_nan: 0
            }
        );
        let m = metadata(&file);
        let fm = m.file_metadata();
        assert_eq!(
            fm.column_order(0),
            ColumnOrder::TYPE_DEFINED_ORDER(SortOrder::SIGNED)
        );
        assert_eq!(
            fm.column_order(2),
            ColumnOrder::TYPE_DEFINED_ORDER(SortOrder::SIGNED)
        );
        assert!(matches!(
            fm.column_order(1),
            ColumnOrder::TYPE_DEFINED_ORDER(_)
        ));
        assert_eq!(min_max(&m, 0, 0), (1.5, 1.5));
        assert_eq!(min_max(&m, 1, 0), (-2.0, 7.25));
        assert_eq!(min_max(&m, 1, 2), (-1.0, 2.0));
    }

    /// Where the footer starts in a whole file.
    fn footer_start(file: &[u8]) -> usize {
        let n = file.len();
        let len = u32::from_le_bytes(file[n - 8..n - 4].try_into().expect("4 bytes")) as usize;
        n - 8 - len
    }

    #[test]
    fn zero_bounds_are_signed_as_the_format_asks() {
        // Row group 0: +0.0 and 1.0 (min +0 becomes -0); row group 1: -3.0 and -0.0 (max -0
        // becomes +0). The page index says the same when it is among the bytes held.
        let d = Float64Array::from(vec![0.0, 1.0, -3.0, -0.0]);
        let f = Float32Array::from(vec![0.0f32, 1.0, -3.0, -0.0]);
        let columns = || -> Vec<(&str, arrow::array::ArrayRef)> {
            vec![("d", Arc::new(d.clone())), ("f", Arc::new(f.clone()))]
        };
        let whole = write(columns(), 0).0;
        for (split, index_held) in [(0, true), (footer_start(&whole), false)] {
            let (file, amended) = write(columns(), split);
            assert_eq!(
                amended,
                Amended {
                    columns: 2,
                    with_nan: 0
                }
            );
            let m = metadata(&file);
            for col in 0..2 {
                let (min0, max0) = min_max(&m, 0, col);
                assert!(min0 == 0.0 && min0.is_sign_negative(), "min {min0}");
                assert_eq!(max0, 1.0);
                let (min1, max1) = min_max(&m, 1, col);
                assert_eq!(min1, -3.0);
                assert!(max1 == 0.0 && max1.is_sign_positive(), "max {max1:?}");
            }
            let index = m.page_index_for_row_group(0);
            let Some(ColumnIndexMetaData::DOUBLE(ci)) = index.column_index(0) else {
                panic!("a double page index")
            };
            let min = *ci.min_value(0).expect("page min");
            assert_eq!(min.is_sign_negative(), index_held, "page min {min:?}");
            let index = m.page_index_for_row_group(1);
            let Some(ColumnIndexMetaData::DOUBLE(ci)) = index.column_index(0) else {
                panic!("a double page index")
            };
            let max = *ci.max_value(0).expect("page max");
            assert_eq!(max.is_sign_positive(), index_held, "page max {max:?}");
        }
    }

    #[test]
    fn a_float_column_with_nan_keeps_the_total_order() {
        let d = Float64Array::from(vec![1.0, f64::NAN, 2.0, 3.0]);
        let e = Float64Array::from(vec![1.0, 2.0, 3.0, 4.0]);
        let (file, amended) = write(vec![("d", Arc::new(d)), ("e", Arc::new(e))], 0);
        assert_eq!(
            amended,
            Amended {
                columns: 1,
                with_nan: 1
            }
        );
        let fm = metadata(&file).file_metadata().clone();
        assert_eq!(fm.column_order(0), ColumnOrder::IEEE_754_TOTAL_ORDER);
        assert_eq!(
            fm.column_order(1),
            ColumnOrder::TYPE_DEFINED_ORDER(SortOrder::SIGNED)
        );
    }

    #[test]
    fn nested_and_many_columns_are_walked() {
        // More than 14 columns (a long list header) and a struct column with a float inside.
        let mut cols: Vec<(String, arrow::array::ArrayRef)> = (0..20)
            .map(|i| {
                (
                    format!("c{i}"),
                    Arc::new(Float64Array::from(vec![i as f64, 1.0, 2.0, 3.0])) as _,
                )
            })
            .collect();
        let inner = arrow::array::StructArray::from(vec![(
            Arc::new(Field::new("x", DataType::Float32, true)),
            Arc::new(Float32Array::from(vec![1.0f32, 2.0, 3.0, 4.0])) as arrow::array::ArrayRef,
        )]);
        cols.push(("s".into(), Arc::new(inner)));
        let (file, amended) = write(
            cols.iter().map(|(n, a)| (n.as_str(), a.clone())).collect(),
            0,
        );
        assert_eq!(amended.columns, 21);
        let m = metadata(&file);
        for i in 0..21 {
            assert_eq!(
                m.file_metadata().column_order(i),
                ColumnOrder::TYPE_DEFINED_ORDER(SortOrder::SIGNED)
            );
        }
    }

    #[test]
    fn a_tail_without_a_footer_is_an_error() {
        assert!(amend_float_statistics(&mut b"PAR1 not a footer".to_vec(), 0).is_err());
        let mut truncated = b"\x00\x00\x00\x00\xff\x00\x00\x00PAR1".to_vec();
        assert!(amend_float_statistics(&mut truncated, 0).is_err());
    }
}
