//! The resume checkpoint: everything needed to continue a download in a later invocation.
//!
//! It records the open multipart upload (id, parts with their ETags and CRCs, part size), the
//! byte offset the parts cover, the source's validator (ETag / Last-Modified, sent back as
//! `If-Range` so a changed source is never stitched to the old bytes) and the running SHA-256
//! at that offset. Request headers are never part of it (they may hold credentials). It is
//! checked, before a resume moves any byte, in [`crate::request::resume`].

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2_resumable::Digest;
use sha2_resumable::digest::common::hazmat::{SerializableState, SerializedState};
use tributary::writer::WriterCheckpoint;

/// Where an interrupted ingestion stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    /// Format version of this document.
    pub version: u32,
    /// The URL being downloaded (after redirects).
    pub url: String,
    /// Target bucket.
    pub bucket: String,
    /// Target key.
    pub key: String,
    /// The multipart upload, its parts and the offset they cover.
    pub upload: WriterCheckpoint,
    /// The source's `ETag`, if it sent one.
    pub source_etag: Option<String>,
    /// The source's `Last-Modified`, if it sent one.
    pub source_last_modified: Option<String>,
    /// The total size the source announced, if any.
    pub total_bytes: Option<u64>,
    /// Running SHA-256 of the first `upload.bytes` bytes (serialised hash state, base64).
    pub sha256_state: String,
    /// Invocations so far (this one included).
    pub invocations: u32,
    /// Milliseconds spent in earlier invocations.
    pub elapsed_ms: u64,
}

/// Current checkpoint format.
pub const VERSION: u32 = 1;

/// Bytes of a serialized SHA-256 state: the eight state words, the count of 64-byte blocks
/// compressed (u64, little endian), the count of buffered bytes (one byte, below 64) and the
/// buffer (63 bytes).
const STATE_LEN: usize = 32 + 8 + 1 + 63;

impl Checkpoint {
    /// The validator to send as `If-Range`: a strong ETag, else Last-Modified.
    pub fn validator(&self) -> Option<&str> {
        self.source_etag
            .as_deref()
            .filter(|e| !e.starts_with("W/"))
            .or(self.source_last_modified.as_deref())
    }
}

/// SHA-256 whose running state can be saved and restored.
#[derive(Clone, Default)]
pub struct ResumableSha256(sha2_resumable::Sha256);

impl std::fmt::Debug for ResumableSha256 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ResumableSha256")
    }
}

impl ResumableSha256 {
    /// Adds bytes.
    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    /// The digest so far, hex (the hasher keeps going).
    pub fn hex(&self) -> String {
        hex::encode(self.0.clone().finalize())
    }

    /// The running state, base64.
    pub fn save(&self) -> String {
        let state = self.0.serialize();
        base64::engine::general_purpose::STANDARD.encode(state.as_slice())
    }

    /// Bytes hashed so far, read from the state (whole blocks compressed plus bytes buffered).
    pub fn bytes_hashed(&self) -> u64 {
        let state = self.0.serialize();
        let s = state.as_slice();
        if s.len() != STATE_LEN {
            return u64::MAX;
        }
        let mut blocks = [0u8; 8];
        blocks.copy_from_slice(&s[32..40]);
        u64::from_le_bytes(blocks)
            .saturating_mul(64)
            .saturating_add(u64::from(s[40]))
    }

    /// Restores a state from [`ResumableSha256::save`].
    pub fn restore(saved: &str) -> Result<Self, String> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(saved)
            .map_err(|e| format!("sha256_state is not base64: {e}"))?;
        let state = SerializedState::<sha2_resumable::Sha256>::try_from(bytes.as_slice()).map_err(
            |_| {
                format!(
                    "sha256_state has {} bytes, not a SHA-256 state",
                    bytes.len()
                )
            },
        )?;
        sha2_resumable::Sha256::deserialize(&state)
            .map(ResumableSha256)
            .map_err(|_| "sha256_state is not a valid SHA-256 state".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_saved_hash_continues_where_it_stopped() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let mut whole = ResumableSha256::default();
        whole.update(&data);
        for cut in [0, 1, 63, 64, 65, 70_001] {
            let mut first = ResumableSha256::default();
            first.update(&data[..cut]);
            let mut second = ResumableSha256::restore(&first.save()).expect("restore");
            second.update(&data[cut..]);
            assert_eq!(second.hex(), whole.hex(), "cut at {cut}");
        }
        assert_eq!(
            ResumableSha256::default().hex(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert!(ResumableSha256::restore("AAAA").is_err());
        for len in [0usize, 1, 63, 64, 65, 100_000] {
            let mut h = ResumableSha256::default();
            h.update(&data[..len]);
            let restored = ResumableSha256::restore(&h.save()).expect("restore");
            assert_eq!(restored.bytes_hashed(), len as u64, "{len}");
        }
        assert!(ResumableSha256::restore("!!").is_err());
    }
}
