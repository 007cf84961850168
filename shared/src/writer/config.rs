//! How a writer cuts, uploads and checks its parts: [`WriterConfig`], S3's part limits, and
//! the part-size rule (grown for a size hint, doubled every 1,000 parts without one).

use std::collections::HashMap;
use std::time::Duration;

use crate::checksum::ChecksumAlgorithm;

/// S3's smallest allowed part (all parts but the last).
pub const MIN_PART_SIZE: usize = 5 * 1024 * 1024;
/// S3's largest allowed part.
pub const MAX_PART_SIZE: usize = 5 * 1024 * 1024 * 1024;
/// S3's largest part number.
pub const MAX_PARTS: u32 = 10_000;
/// Parts per tier before the part size doubles (unknown total size only).
const PARTS_PER_TIER: u32 = 1_000;
pub(super) const MIB: usize = 1024 * 1024;

/// How an [`S3Writer`](super::S3Writer) cuts, uploads and checks its parts.
#[derive(Debug, Clone)]
pub struct WriterConfig {
    /// Size of each part (the last may be smaller). Clamped to 5 MiB..=5 GiB.
    pub part_size: usize,
    /// Parts uploaded at once.
    pub concurrency: usize,
    /// Upper bound of bytes held; `None` means `part_size x (concurrency + 1)`.
    pub memory_budget: Option<usize>,
    /// Full-object checksum stored with the object.
    pub checksum: ChecksumAlgorithm,
    /// Attempts per part at this level (each attempt may itself be retried by the SDK).
    pub part_attempts: u32,
    /// First backoff delay between part attempts; doubles per attempt, with jitter.
    pub retry_base_delay: Duration,
    /// Expected total size, when known: the part size grows so it fits in 10,000 parts.
    pub size_hint: Option<u64>,
    /// `Content-Type` of the object.
    pub content_type: Option<String>,
    /// Refuse to overwrite an existing object (`If-None-Match: *`).
    pub if_none_match: bool,
    /// User metadata (`x-amz-meta-*`).
    pub metadata: HashMap<String, String>,
}

impl Default for WriterConfig {
    fn default() -> Self {
        WriterConfig {
            part_size: 8 * MIB,
            concurrency: 4,
            memory_budget: None,
            checksum: ChecksumAlgorithm::default(),
            part_attempts: 4,
            retry_base_delay: Duration::from_millis(250),
            size_hint: None,
            content_type: None,
            if_none_match: false,
            metadata: HashMap::new(),
        }
    }
}

impl WriterConfig {
    /// The part size the writer starts with, after clamping and growing for `size_hint`.
    pub fn initial_part_size(&self) -> usize {
        let mut size = self.part_size.clamp(MIN_PART_SIZE, MAX_PART_SIZE);
        if let Some(hint) = self.size_hint {
            let needed = hint.div_ceil(u64::from(MAX_PARTS));
            let needed = usize::try_from(needed)
                .unwrap_or(MAX_PART_SIZE)
                .div_ceil(MIB)
                * MIB;
            size = size.max(needed).min(MAX_PART_SIZE);
        }
        size
    }

    /// The size of part `number` (1-based) as the writer cuts it: the initial part size, or
    /// without a `size_hint`, that size doubled every 1,000 parts (capped at 5 GiB).
    pub fn part_size_for(&self, number: u32) -> usize {
        let base = self.initial_part_size();
        if self.size_hint.is_some() {
            return base;
        }
        let tier = number.saturating_sub(1) / PARTS_PER_TIER;
        (base << tier.min(10)).min(MAX_PART_SIZE)
    }

    /// The memory budget in bytes.
    pub fn budget(&self) -> usize {
        self.memory_budget
            .unwrap_or_else(|| self.initial_part_size() * (self.concurrency.max(1) + 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_size_is_clamped_and_grows_for_large_hints() {
        let cfg = WriterConfig {
            part_size: 1,
            ..Default::default()
        };
        assert_eq!(cfg.initial_part_size(), MIN_PART_SIZE);
        let cfg = WriterConfig {
            part_size: 8 * MIB,
            size_hint: Some(200 * 1024 * MIB as u64), // 200 GiB
            ..Default::default()
        };
        let size = cfg.initial_part_size();
        assert!(size as u64 * u64::from(MAX_PARTS) >= 200 * 1024 * MIB as u64);
        assert_eq!(size % MIB, 0);
        assert_eq!(size, 21 * MIB);
        assert_eq!(cfg.budget(), size * 5);
    }

    #[test]
    fn unknown_size_growth_covers_s3s_largest_object() {
        // Summing the tiers' capacity: 1,000 parts per tier, doubling from the minimum.
        let total: u64 = (0..10u32)
            .map(|tier| 1000 * ((MIN_PART_SIZE as u64) << tier))
            .sum();
        assert!(total >= 4_800_000 * MIB as u64, "{total}");
        let total8: u64 = (0..10u32)
            .map(|tier| 1000 * ((8 * MIB as u64) << tier))
            .sum();
        assert!(total8 > 5 * 1024 * 1024 * MIB as u64, "{total8}");
    }
}
