//! How a ranged ingestion cuts an object: parts of one size (the last may be shorter), and
//! ranges of whole parts, as even as they can be. Pure arithmetic, shared by the plan (which
//! cuts), the range children (which check their range is one of the cuts) and the commit
//! (which checks every part and range is there).

use serde::{Deserialize, Serialize};
use tributary::writer::{MAX_PART_SIZE, MAX_PARTS, MIN_PART_SIZE};

/// An object of `total` bytes cut into parts of `part_size` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// The object's size (at least 1 byte).
    pub total: u64,
    /// Every part's size but the last's.
    pub part_size: u64,
    /// How many parts.
    pub parts: u32,
}

/// One child's share: whole parts `first_part..first_part + parts`, bytes `start..=end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Span {
    /// 0-based range number.
    pub index: u32,
    /// Its first part number (1-based).
    pub first_part: u32,
    /// How many parts it uploads.
    pub parts: u32,
    /// First byte.
    pub start: u64,
    /// Last byte (inclusive).
    pub end: u64,
}

impl Span {
    /// Bytes in the range.
    pub fn len(&self) -> u64 {
        self.end - self.start + 1
    }

    /// Whether the range holds no byte (never, for a span of a layout).
    pub fn is_empty(&self) -> bool {
        self.end < self.start
    }
}

impl Layout {
    /// The layout of `total` bytes in parts of `part_size`; errors say why it cannot be one.
    pub fn new(total: u64, part_size: u64) -> Result<Layout, String> {
        if total == 0 {
            return Err("an empty object has no parts to split".into());
        }
        if !(MIN_PART_SIZE as u64..=MAX_PART_SIZE as u64).contains(&part_size) {
            return Err(format!(
                "part size {part_size} is outside S3's {MIN_PART_SIZE}..={MAX_PART_SIZE} bytes"
            ));
        }
        let parts = total.div_ceil(part_size);
        if parts > u64::from(MAX_PARTS) {
            return Err(format!(
                "{total} bytes in parts of {part_size} make {parts} parts; S3 allows {MAX_PARTS}"
            ));
        }
        Ok(Layout {
            total,
            part_size,
            parts: parts as u32,
        })
    }

    /// The size of part `number` (1-based).
    pub fn part_len(&self, number: u32) -> u64 {
        if number == self.parts {
            self.total - u64::from(self.parts - 1) * self.part_size
        } else {
            self.part_size
        }
    }

    /// `n` ranges (at most one per part) of whole parts, the first ones one part longer when
    /// the parts do not divide evenly.
    pub fn spans(&self, n: u32) -> Vec<Span> {
        let n = n.clamp(1, self.parts);
        let (base, extra) = (self.parts / n, self.parts % n);
        let mut first_part = 1u32;
        (0..n)
            .map(|index| {
                let parts = base + u32::from(index < extra);
                let start = u64::from(first_part - 1) * self.part_size;
                let last = first_part + parts - 1;
                let end = if last == self.parts {
                    self.total - 1
                } else {
                    u64::from(last) * self.part_size - 1
                };
                let span = Span {
                    index,
                    first_part,
                    parts,
                    start,
                    end,
                };
                first_part += parts;
                span
            })
            .collect()
    }

    /// The span of whole parts that bytes `start..=end` starting at part `first_part` are,
    /// or why they are not one (a range must start on a part boundary and end on one or at
    /// the object's end).
    pub fn span_at(
        &self,
        index: u32,
        first_part: u32,
        start: u64,
        end: u64,
    ) -> Result<Span, String> {
        if first_part == 0 || first_part > self.parts {
            return Err(format!(
                "first_part {first_part} is outside 1..={}",
                self.parts
            ));
        }
        let boundary = u64::from(first_part - 1) * self.part_size;
        if start != boundary {
            return Err(format!(
                "start {start} is not where part {first_part} starts ({boundary})"
            ));
        }
        if end < start || end >= self.total {
            return Err(format!(
                "end {end} is outside {start}..{} (the object has {} bytes)",
                self.total, self.total
            ));
        }
        let len = end - start + 1;
        if end + 1 != self.total && !len.is_multiple_of(self.part_size) {
            return Err(format!(
                "bytes {start}-{end} are not whole parts of {} bytes",
                self.part_size
            ));
        }
        Ok(Span {
            index,
            first_part,
            parts: len.div_ceil(self.part_size) as u32,
            start,
            end,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;

    #[test]
    fn spans_cover_every_part_once_in_whole_parts() {
        for (total, part, n) in [
            (80 * MIB - 12_345, 5 * MIB, 8),
            (64 * MIB, 5 * MIB, 8),
            (1024 * MIB, 16 * MIB, 8),
            (5 * MIB + 1, 5 * MIB, 8),
            (17 * MIB, 5 * MIB, 3),
        ] {
            let l = Layout::new(total, part).expect("layout");
            let spans = l.spans(n);
            assert_eq!(spans.len() as u32, n.min(l.parts), "{total}");
            let mut next_part = 1;
            let mut next_byte = 0;
            for s in &spans {
                assert_eq!(s.first_part, next_part);
                assert_eq!(s.start, next_byte);
                let bytes: u64 = (s.first_part..s.first_part + s.parts)
                    .map(|p| l.part_len(p))
                    .sum();
                assert_eq!(bytes, s.len());
                assert_eq!(l.span_at(s.index, s.first_part, s.start, s.end), Ok(*s));
                next_part += s.parts;
                next_byte = s.end + 1;
            }
            assert_eq!(next_part, l.parts + 1);
            assert_eq!(next_byte, total);
            let most = spans.iter().map(|s| s.parts).max().unwrap_or(0);
            let least = spans.iter().map(|s| s.parts).min().unwrap_or(0);
            assert!(most - least <= 1, "{spans:?}");
        }
    }

    #[test]
    fn a_range_that_is_not_whole_parts_is_refused() {
        let l = Layout::new(20 * MIB, 5 * MIB).expect("layout");
        assert!(l.span_at(0, 1, 0, 7 * MIB).is_err());
        assert!(l.span_at(0, 2, 0, 5 * MIB - 1).is_err());
        assert!(l.span_at(0, 1, 0, 20 * MIB).is_err());
        assert!(l.span_at(0, 5, 20 * MIB, 20 * MIB).is_err());
        assert!(Layout::new(0, 5 * MIB).is_err());
        assert!(Layout::new(10, MIB).is_err());
        assert!(Layout::new(10_001 * 5 * MIB, 5 * MIB).is_err());
    }
}
