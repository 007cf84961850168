//! A reader of the few `FileMetaData` fields the footer amendment needs, over the Thrift
//! compact encoding (the parquet crate's codec is private): column orders, each column
//! chunk's statistics (byte ranges of its bounds, its NaN count) and page index location, and
//! the bounds in a column index. Every other field is skipped by its wire type.

use std::ops::Range;

// Thrift compact protocol wire types.
const TRUE: u8 = 1;
const FALSE: u8 = 2;
const BYTE: u8 = 3;
const I16: u8 = 4;
const I32: u8 = 5;
const I64: u8 = 6;
const DOUBLE: u8 = 7;
pub(super) const BINARY: u8 = 8;
const LIST: u8 = 9;
const SET: u8 = 10;
const MAP: u8 = 11;
pub(super) const STRUCT: u8 = 12;
/// `ColumnOrder` union members.
pub(super) const TYPE_DEFINED_ORDER: u8 = 1;
pub(super) const IEEE_754_TOTAL_ORDER: u8 = 2;
/// Nesting deeper than this is not a footer we wrote.
const MAX_DEPTH: usize = 64;

/// A column's entry in `column_orders`.
pub(super) struct Order {
    /// Which union member.
    pub(super) id: u8,
    /// Offset of its field header byte.
    pub(super) header: usize,
}

/// What is needed of one column chunk.
#[derive(Default)]
pub(super) struct Chunk {
    /// The statistics struct: offset of its first byte and that byte (a field header).
    pub(super) stats: Option<(usize, u8)>,
    pub(super) nan_count: Option<i64>,
    /// Byte ranges of the legacy `min`/`max` values, and of `min_value`/`max_value`.
    pub(super) mins: Vec<Range<usize>>,
    pub(super) maxes: Vec<Range<usize>>,
    pub(super) min_value: Option<Range<usize>>,
    pub(super) max_value: Option<Range<usize>>,
    /// The page index entry: absolute offset and length.
    pub(super) column_index: Option<(u64, usize)>,
}

/// What is needed of `FileMetaData`: each row group's chunks, each column's order.
pub(super) struct FileMeta {
    pub(super) row_groups: Vec<Vec<Chunk>>,
    pub(super) orders: Vec<Order>,
}

/// Byte ranges of a column index's per-page bounds.
pub(super) struct ColumnIndex {
    pub(super) mins: Vec<Range<usize>>,
    pub(super) maxes: Vec<Range<usize>>,
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

pub(super) fn read_file_metadata(b: &[u8]) -> Result<FileMeta, String> {
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

pub(super) fn read_column_index(b: &[u8]) -> Result<ColumnIndex, String> {
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
