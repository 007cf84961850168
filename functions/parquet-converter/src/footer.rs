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
//! so the few fields needed are located by the small reader below, which skips everything
//! else by its wire type. The amended footer is checked by decoding it with the crate's own
//! reader in the tests.

use std::ops::Range;

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

// Thrift compact protocol wire types.
const TRUE: u8 = 1;
const FALSE: u8 = 2;
const BYTE: u8 = 3;
const I16: u8 = 4;
const I32: u8 = 5;
const I64: u8 = 6;
const DOUBLE: u8 = 7;
const BINARY: u8 = 8;
const LIST: u8 = 9;
const SET: u8 = 10;
const MAP: u8 = 11;
const STRUCT: u8 = 12;
/// `ColumnOrder` union members.
const TYPE_DEFINED_ORDER: u8 = 1;
const IEEE_754_TOTAL_ORDER: u8 = 2;
/// Nesting deeper than this is not a footer we wrote.
const MAX_DEPTH: usize = 64;

/// A column's entry in `column_orders`.
struct Order {
    /// Which union member.
    id: u8,
    /// Offset of its field header byte.
    header: usize,
}

/// What is needed of one column chunk.
#[derive(Default)]
struct Chunk {
    /// The statistics struct: offset of its first byte and that byte (a field header).
    stats: Option<(usize, u8)>,
    nan_count: Option<i64>,
    /// Byte ranges of the legacy `min`/`max` values, and of `min_value`/`max_value`.
    mins: Vec<Range<usize>>,
    maxes: Vec<Range<usize>>,
    min_value: Option<Range<usize>>,
    max_value: Option<Range<usize>>,
    /// The page index entry: absolute offset and length.
    column_index: Option<(u64, usize)>,
}

struct FileMeta {
    row_groups: Vec<Vec<Chunk>>,
    orders: Vec<Order>,
}

struct ColumnIndex {
    mins: Vec<Range<usize>>,
    maxes: Vec<Range<usize>>,
}

/// A cursor over Thrift compact bytes.
struct Cursor<'a> {
    b: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn byte(&mut self) -> Result<u8, String> {
        let v = *self.b.get(self.pos).ok_or("the footer ends early")?;
        self.pos += 1;
        Ok(v)
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7F) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("a varint longer than 64 bits".into())
    }

    fn zigzag(&mut self) -> Result<i64, String> {
        let v = self.varint()?;
        Ok((v >> 1) as i64 ^ -((v & 1) as i64))
    }

    /// The next field of a struct as (id, wire type), `None` at its end.
    fn field(&mut self, last: &mut i16) -> Result<Option<(i16, u8)>, String> {
        let h = self.byte()?;
        if h == 0 {
            return Ok(None);
        }
        let delta = i16::from(h >> 4);
        let id = if delta == 0 {
            i16::try_from(self.zigzag()?).map_err(|_| "a field id out of range")?
        } else {
            last.checked_add(delta).ok_or("a field id out of range")?
        };
        *last = id;
        Ok(Some((id, h & 0x0F)))
    }

    /// A list or set header: (element count, element wire type).
    fn list(&mut self) -> Result<(usize, u8), String> {
        let h = self.byte()?;
        let n = match h >> 4 {
            15 => usize::try_from(self.varint()?).map_err(|_| "a list too long")?,
            n => usize::from(n),
        };
        if n > self.b.len() {
            return Err("a list longer than the footer".into());
        }
        Ok((n, h & 0x0F))
    }

    fn binary(&mut self) -> Result<Range<usize>, String> {
        let len = usize::try_from(self.varint()?).map_err(|_| "a binary too long")?;
        let start = self.pos;
        let end = start
            .checked_add(len)
            .filter(|e| *e <= self.b.len())
            .ok_or("a binary runs past the footer")?;
        self.pos = end;
        Ok(start..end)
    }

    /// Skips one value of wire type `ty` (a list element when `element`).
    fn skip(&mut self, ty: u8, element: bool, depth: usize) -> Result<(), String> {
        if depth > MAX_DEPTH {
            return Err("nesting too deep".into());
        }
        match ty {
            TRUE | FALSE if !element => {}
            TRUE | FALSE | BYTE => {
                self.byte()?;
            }
            I16 | I32 | I64 => {
                self.varint()?;
            }
            DOUBLE => {
                self.pos = self
                    .pos
                    .checked_add(8)
                    .filter(|e| *e <= self.b.len())
                    .ok_or("the footer ends early")?;
            }
            BINARY => {
                self.binary()?;
            }
            LIST | SET => {
                let (n, et) = self.list()?;
                for _ in 0..n {
                    self.skip(et, true, depth + 1)?;
                }
            }
            MAP => {
                let n = usize::try_from(self.varint()?).map_err(|_| "a map too long")?;
                if n > 0 {
                    let kv = self.byte()?;
                    for _ in 0..n {
                        self.skip(kv >> 4, true, depth + 1)?;
                        self.skip(kv & 0x0F, true, depth + 1)?;
                    }
                }
            }
            STRUCT => {
                let mut last = 0;
                while let Some((_, t)) = self.field(&mut last)? {
                    self.skip(t, false, depth + 1)?;
                }
            }
            other => return Err(format!("unknown Thrift wire type {other}")),
        }
        Ok(())
    }

    /// Reads a struct, handing each field to `f`, which reads it or returns `false` to have
    /// it skipped.
    fn each_field(
        &mut self,
        mut f: impl FnMut(&mut Self, i16, u8) -> Result<bool, String>,
    ) -> Result<(), String> {
        let mut last = 0;
        while let Some((id, ty)) = self.field(&mut last)? {
            if !f(self, id, ty)? {
                self.skip(ty, false, 1)?;
            }
        }
        Ok(())
    }

    /// Reads a list of structs with `f`.
    fn each_struct(
        &mut self,
        ty: u8,
        mut f: impl FnMut(&mut Self) -> Result<(), String>,
    ) -> Result<bool, String> {
        if ty != LIST {
            return Ok(false);
        }
        let (n, et) = self.list()?;
        for _ in 0..n {
            if et == STRUCT {
                f(self)?;
            } else {
                self.skip(et, true, 1)?;
            }
        }
        Ok(true)
    }
}

fn read_file_metadata(b: &[u8]) -> Result<FileMeta, String> {
    let mut c = Cursor { b, pos: 0 };
    let mut meta = FileMeta {
        row_groups: Vec::new(),
        orders: Vec::new(),
    };
    c.each_field(|c, id, ty| match id {
        4 => c.each_struct(ty, |c| {
            let mut chunks = Vec::new();
            c.each_field(|c, id, ty| match id {
                1 => c.each_struct(ty, |c| {
                    chunks.push(read_chunk(c)?);
                    Ok(())
                }),
                _ => Ok(false),
            })?;
            meta.row_groups.push(chunks);
            Ok(())
        }),
        7 => c.each_struct(ty, |c| {
            let header = c.pos;
            let mut order = None;
            c.each_field(|_, id, ty| {
                if order.is_none() && ty == STRUCT {
                    order = Some(u8::try_from(id).unwrap_or(0));
                }
                Ok(false)
            })?;
            meta.orders.push(Order {
                id: order.unwrap_or(0),
                header,
            });
            Ok(())
        }),
        _ => Ok(false),
    })?;
    Ok(meta)
}

fn read_chunk(c: &mut Cursor<'_>) -> Result<Chunk, String> {
    let mut chunk = Chunk::default();
    let (mut index_at, mut index_len) = (None, None);
    c.each_field(|c, id, ty| match (id, ty) {
        // ColumnChunk.meta_data
        (3, STRUCT) => {
            c.each_field(|c, id, ty| match (id, ty) {
                // ColumnMetaData.statistics
                (12, STRUCT) => {
                    chunk.stats = c.b.get(c.pos).map(|first| (c.pos, *first));
                    c.each_field(|c, id, ty| match (id, ty) {
                        (1, BINARY) => {
                            chunk.maxes.push(c.binary()?);
                            Ok(true)
                        }
                        (2, BINARY) => {
                            chunk.mins.push(c.binary()?);
                            Ok(true)
                        }
                        (5, BINARY) => {
                            chunk.max_value = Some(c.binary()?);
                            Ok(true)
                        }
                        (6, BINARY) => {
                            chunk.min_value = Some(c.binary()?);
                            Ok(true)
                        }
                        (9, I64) => {
                            chunk.nan_count = Some(c.zigzag()?);
                            Ok(true)
                        }
                        _ => Ok(false),
                    })?;
                    Ok(true)
                }
                _ => Ok(false),
            })?;
            Ok(true)
        }
        // ColumnChunk.column_index_offset / column_index_length
        (6, I64) => {
            index_at = u64::try_from(c.zigzag()?).ok();
            Ok(true)
        }
        (7, I32) => {
            index_len = usize::try_from(c.zigzag()?).ok();
            Ok(true)
        }
        _ => Ok(false),
    })?;
    chunk.column_index = index_at.zip(index_len);
    Ok(chunk)
}

fn read_column_index(b: &[u8]) -> Result<ColumnIndex, String> {
    let mut c = Cursor { b, pos: 0 };
    let mut index = ColumnIndex {
        mins: Vec::new(),
        maxes: Vec::new(),
    };
    c.each_field(|c, id, ty| match (id, ty) {
        (2 | 3, LIST) => {
            let (n, et) = c.list()?;
            for _ in 0..n {
                if et != BINARY {
                    c.skip(et, true, 1)?;
                    continue;
                }
                let r = c.binary()?;
                if id == 2 {
                    index.mins.push(r);
                } else {
                    index.maxes.push(r);
                }
            }
            Ok(true)
        }
        _ => Ok(false),
    })?;
    Ok(index)
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
