//! Where an unfinished multipart upload stands ([`WriterCheckpoint`]), and whether a writer
//! can resume it ([`WriterCheckpoint::validate`]).

use super::config::{MAX_PARTS, WriterConfig};

/// A part that reached S3.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DonePart {
    /// Part number (1-based).
    pub number: i32,
    /// ETag S3 returned for it.
    pub etag: String,
    /// Its CRC (of the writer's checksum algorithm).
    pub crc: u64,
    /// Its length in bytes.
    pub len: u64,
}

/// Where an unfinished multipart upload stands, to continue it later (possibly in another
/// process) with [`S3Writer::resume`](super::S3Writer::resume). The bytes after `bytes` must be written again.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WriterCheckpoint {
    /// The open multipart upload; `None` when no part was uploaded yet (start over).
    pub upload_id: Option<String>,
    /// Parts S3 has, in order.
    pub parts: Vec<DonePart>,
    /// The part size the upload was cut with (it keeps growing by the same rule).
    pub part_size: usize,
    /// Bytes covered by `parts`: where writing resumes.
    pub bytes: u64,
}

/// What is wrong with a [`WriterCheckpoint`]: the field (`upload_id`, `bytes`, `part_size`,
/// `parts[3].len`, ...) and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct CheckpointProblem {
    /// The field, as named in the checkpoint's JSON (`parts[i]` counts from 0).
    pub field: String,
    /// Why it cannot be resumed from.
    pub reason: String,
}

impl WriterCheckpoint {
    /// Checks that this checkpoint describes an upload a writer with `cfg` cut, so that
    /// resuming it at `bytes` gives the source's bytes in order: an upload id whenever there
    /// are parts (and none without), part numbers 1, 2, 3, ... in order, at most 10,000 parts,
    /// every part of the size the writer cuts at its number (the last may be shorter only when
    /// it ends the object, `end` being the object's size when known), their sizes summing to
    /// `bytes`, and `part_size` the size of the next part. It does not ask S3.
    pub fn validate(
        &self,
        cfg: &WriterConfig,
        end: Option<u64>,
    ) -> std::result::Result<(), CheckpointProblem> {
        let problem = |field: String, reason: String| Err(CheckpointProblem { field, reason });
        if self.parts.len() > MAX_PARTS as usize {
            return problem(
                "parts".into(),
                format!("{} parts; S3 allows at most {MAX_PARTS}", self.parts.len()),
            );
        }
        match (&self.upload_id, self.parts.is_empty()) {
            (None, false) => {
                return problem(
                    "upload_id".into(),
                    format!("missing, but {} parts are listed", self.parts.len()),
                );
            }
            (Some(id), false) if id.trim().is_empty() => {
                return problem("upload_id".into(), "is empty".into());
            }
            (Some(_), true) => {
                return problem("upload_id".into(), "names an upload but no parts".into());
            }
            _ => {}
        }
        if self.parts.is_empty() && self.bytes > 0 {
            return problem(
                "bytes".into(),
                format!(
                    "{} bytes but no parts (and no upload) hold them",
                    self.bytes
                ),
            );
        }
        let last = self.parts.len().saturating_sub(1);
        let mut sum: u64 = 0;
        for (i, p) in self.parts.iter().enumerate() {
            let number = i as u32 + 1;
            if i64::from(p.number) != i64::from(number) {
                return problem(
                    format!("parts[{i}].number"),
                    format!(
                        "is {}; parts must be numbered 1, 2, 3, ... in order, so {number}",
                        p.number
                    ),
                );
            }
            if p.etag.trim_matches('"').trim().is_empty() {
                return problem(format!("parts[{i}].etag"), "is empty".into());
            }
            let want = cfg.part_size_for(number) as u64;
            let ends_object = i == last && end.is_some_and(|e| sum.checked_add(p.len) == Some(e));
            let ok = if ends_object {
                (1..=want).contains(&p.len)
            } else {
                p.len == want
            };
            if !ok {
                return problem(
                    format!("parts[{i}].len"),
                    format!(
                        "is {} bytes; this upload cuts part {number} at {want} bytes{}",
                        p.len,
                        if i == last {
                            " (only a part that ends the object may be shorter)"
                        } else {
                            ""
                        }
                    ),
                );
            }
            sum += p.len;
        }
        if sum != self.bytes {
            return problem(
                "bytes".into(),
                format!("is {}, the parts hold {sum}", self.bytes),
            );
        }
        if !self.parts.is_empty() {
            let next = cfg.part_size_for(self.parts.len() as u32 + 1);
            if self.part_size != next {
                return problem(
                    "part_size".into(),
                    format!(
                        "is {} bytes; this upload's next part is {next} bytes (resume with the part size the upload was started with)",
                        self.part_size
                    ),
                );
            }
        }
        Ok(())
    }
}
