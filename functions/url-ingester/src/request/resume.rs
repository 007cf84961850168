//! The checkpoint of a resume, checked before any byte moves: that it is for the requested
//! object (`check_target`), that it holds together and matches the writer configuration it
//! resumes with ([`Checkpoint::validate`]), and that S3 still has its upload and parts as
//! listed (`check`). Every error is `InvalidInput` naming the field (`resume.version`,
//! `resume.upload.parts[3].len`, `resume.sha256_state`, ...).

use std::collections::BTreeMap;

use tracing::warn;
use tributary::checksum::ChecksumAlgorithm;
use tributary::{Error, WriterConfig};

use super::Plan;
use crate::checkpoint::{Checkpoint, ResumableSha256, VERSION};

/// Everything about the plan's checkpoint, offline and then against S3: returns the restored
/// hash of the bytes the upload already holds. `cfg` is the writer configuration the upload
/// continues with.
pub(crate) async fn check(
    s3: &aws_sdk_s3::Client,
    plan: &Plan,
    cp: &Checkpoint,
    cfg: &WriterConfig,
) -> Result<ResumableSha256, Error> {
    let hasher = cp.validate(cfg)?;
    check_upload_listed(s3, plan, cp, cfg.checksum).await?;
    Ok(hasher)
}

/// The checkpoint is in the current format and for `s3://bucket/key`.
pub(crate) fn check_target(cp: &Checkpoint, bucket: &str, key: &str) -> Result<(), Error> {
    check_version(cp)?;
    if cp.bucket != bucket || cp.key != key {
        return Err(Error::invalid_input(
            if cp.bucket != bucket {
                "resume.bucket"
            } else {
                "resume.key"
            },
            format!(
                "the checkpoint is for s3://{}/{}, not s3://{bucket}/{key}",
                cp.bucket, cp.key
            ),
        ));
    }
    Ok(())
}

fn check_version(cp: &Checkpoint) -> Result<(), Error> {
    if cp.version != VERSION {
        return Err(Error::invalid_input(
            "resume.version",
            format!("checkpoint version {} is not {VERSION}", cp.version),
        ));
    }
    Ok(())
}

impl Checkpoint {
    /// Checks the whole checkpoint against the writer configuration it will resume with,
    /// before any byte moves: the upload (see [`tributary::writer::WriterCheckpoint::validate`]),
    /// the total size, the source validator, and the hash state, which must have hashed
    /// exactly `upload.bytes` bytes. Returns the restored hash. Errors are `InvalidInput`
    /// naming the field (`resume.upload.parts[3].len`, `resume.sha256_state`, ...).
    pub fn validate(&self, cfg: &WriterConfig) -> Result<ResumableSha256, Error> {
        let bytes = self.upload.bytes;
        check_version(self)?;
        self.upload
            .validate(cfg, self.total_bytes)
            .map_err(|p| Error::invalid_input(format!("resume.upload.{}", p.field), p.reason))?;
        if let Some(total) = self.total_bytes
            && bytes > total
        {
            return Err(Error::invalid_input(
                "resume.total_bytes",
                format!("is {total}, below the {bytes} bytes the upload already holds"),
            ));
        }
        if bytes > 0 && self.validator().is_none() {
            return Err(Error::invalid_input(
                "resume.source_etag",
                "the checkpoint has no strong source ETag or Last-Modified to continue safely with",
            ));
        }
        let hash = ResumableSha256::restore(&self.sha256_state)
            .map_err(|e| Error::invalid_input("resume.sha256_state", e))?;
        let hashed = hash.bytes_hashed();
        if hashed != bytes {
            return Err(Error::invalid_input(
                "resume.sha256_state",
                format!("has hashed {hashed} bytes, the upload holds {bytes}"),
            ));
        }
        Ok(hash)
    }
}

/// Asks S3 whether the checkpoint's upload is still open and holds the checkpoint's parts
/// as listed (size, and ETag and CRC where the store reports them), with ListParts; where
/// ListParts is not implemented, whether ListMultipartUploads still lists the upload; a
/// store that implements neither is trusted, with a warning.
async fn check_upload_listed(
    s3: &aws_sdk_s3::Client,
    plan: &Plan,
    cp: &Checkpoint,
    checksum: ChecksumAlgorithm,
) -> Result<(), Error> {
    let Some(upload_id) = cp.upload.upload_id.as_deref() else {
        return Ok(());
    };
    let gone = || {
        Error::invalid_input(
            "resume.upload.upload_id",
            format!(
                "S3 no longer has upload {upload_id} of s3://{}/{} open (completed, aborted or \
                 expired); start again without resume",
                plan.bucket, plan.key
            ),
        )
    };
    let mut listed = BTreeMap::new();
    let mut pages = s3
        .list_parts()
        .bucket(&plan.bucket)
        .key(&plan.key)
        .upload_id(upload_id)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let out = match page {
            Ok(out) => out,
            Err(e) => {
                return match Error::s3("ListParts", &plan.bucket, &plan.key, e) {
                    Error::NotFound { .. } => Err(gone()),
                    Error::S3 { code: Some(c), .. } if c == "NoSuchUpload" => Err(gone()),
                    Error::S3 { code: Some(c), .. } if c == "NotImplemented" => {
                        check_upload_in_list(s3, plan, upload_id).await
                    }
                    other => Err(other),
                };
            }
        };
        for p in out.parts() {
            if let Some(n) = p.part_number() {
                let crc = match checksum {
                    ChecksumAlgorithm::Crc64Nvme => p.checksum_crc64_nvme(),
                    ChecksumAlgorithm::Crc32c => p.checksum_crc32_c(),
                };
                listed.insert(
                    n,
                    (
                        p.size(),
                        p.e_tag().map(|e| e.trim_matches('"').to_owned()),
                        crc.map(str::to_owned),
                    ),
                );
            }
        }
    }
    if listed.is_empty() {
        // s3s-fs answers ListParts of an unknown upload with an empty list.
        return Err(gone());
    }
    for (i, part) in cp.upload.parts.iter().enumerate() {
        let field = |f: &str| format!("resume.upload.parts[{i}]{f}");
        let Some((size, etag, crc)) = listed.get(&part.number) else {
            return Err(Error::invalid_input(
                field(""),
                format!(
                    "S3 does not list part {} of upload {upload_id}",
                    part.number
                ),
            ));
        };
        if let Some(size) = size
            && u64::try_from(*size).ok() != Some(part.len)
        {
            return Err(Error::invalid_input(
                field(".len"),
                format!(
                    "is {}, S3 holds {size} bytes for part {}",
                    part.len, part.number
                ),
            ));
        }
        if let Some(etag) = etag.as_deref().filter(|e| !e.is_empty())
            && etag != part.etag.trim_matches('"')
        {
            return Err(Error::invalid_input(
                field(".etag"),
                format!("is {}, S3 lists {etag} for part {}", part.etag, part.number),
            ));
        }
        let ours = checksum.encode(part.crc);
        if let Some(crc) = crc.as_deref().filter(|c| !c.is_empty())
            && crc != ours
        {
            return Err(Error::invalid_input(
                field(".crc"),
                format!(
                    "encodes {ours}, S3 holds {} {crc} for part {}",
                    checksum.as_str(),
                    part.number
                ),
            ));
        }
    }
    Ok(())
}

/// Whether ListMultipartUploads still lists `upload_id` for the key (for stores without
/// ListParts); a store without either is trusted, with a warning.
async fn check_upload_in_list(
    s3: &aws_sdk_s3::Client,
    plan: &Plan,
    upload_id: &str,
) -> Result<(), Error> {
    let (mut key_marker, mut id_marker) = (None::<String>, None::<String>);
    loop {
        let out = match s3
            .list_multipart_uploads()
            .bucket(&plan.bucket)
            .prefix(&plan.key)
            .set_key_marker(key_marker.take())
            .set_upload_id_marker(id_marker.take())
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) => {
                return match Error::s3("ListMultipartUploads", &plan.bucket, &plan.key, e) {
                    Error::S3 { code: Some(c), .. } if c == "NotImplemented" => {
                        warn!(bucket = %plan.bucket, key = %plan.key, upload_id,
                            "this S3 store lists neither parts nor uploads: the checkpoint's upload is not checked");
                        Ok(())
                    }
                    other => Err(other),
                };
            }
        };
        if out
            .uploads()
            .iter()
            .any(|u| u.upload_id() == Some(upload_id) && u.key() == Some(plan.key.as_str()))
        {
            return Ok(());
        }
        if out.is_truncated() != Some(true) {
            return Err(Error::invalid_input(
                "resume.upload.upload_id",
                format!(
                    "S3 does not list upload {upload_id} of s3://{}/{} (completed, aborted or \
                     expired); start again without resume",
                    plan.bucket, plan.key
                ),
            ));
        }
        key_marker = out.next_key_marker().map(str::to_owned);
        id_marker = out.next_upload_id_marker().map(str::to_owned);
        if key_marker.is_none() && id_marker.is_none() {
            return Ok(());
        }
    }
}
