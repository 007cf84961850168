//! The end of an upload: completing it with the full-object checksum (from
//! [`S3Writer::finish`](super::S3Writer::finish) or a [`SealedUpload`]), or aborting it.

use std::sync::Arc;

use aws_sdk_s3::types::{ChecksumType, CompletedMultipartUpload, CompletedPart};
use tracing::{debug, warn};

use super::{DonePart, WriteOutcome, WriterConfig};
use crate::checksum::{ChecksumAlgorithm, FullObjectChecksum};
use crate::error::{Error, Result};

/// A multipart upload with every part uploaded, from [`S3Writer::seal`](super::S3Writer::seal): complete it to make
/// the object appear, or abort it. Dropped without either, it is aborted.
#[derive(Debug)]
pub struct SealedUpload {
    pub(super) client: aws_sdk_s3::Client,
    pub(super) bucket: Arc<str>,
    pub(super) key: Arc<str>,
    pub(super) cfg: WriterConfig,
    pub(super) upload_id: Option<String>,
    pub(super) parts: Vec<DonePart>,
    pub(super) bytes: u64,
}

impl SealedUpload {
    /// The object's key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Bytes in the object.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Completes the object. On error the upload is aborted.
    pub async fn complete(mut self) -> Result<WriteOutcome> {
        let Some(upload_id) = self.upload_id.take() else {
            return Err(Error::Internal("sealed upload already closed".into()));
        };
        let res = complete_upload(
            &self.client,
            &self.bucket,
            &self.key,
            &upload_id,
            &self.parts,
            &self.cfg,
            self.bytes,
        )
        .await;
        if res.is_err()
            && let Err(abort_err) =
                abort_upload(&self.client, &self.bucket, &self.key, &upload_id).await
        {
            warn!(bucket = %self.bucket, key = %self.key, upload_id, error = %abort_err,
                "could not abort the multipart upload; the bucket's lifecycle rule will");
        }
        res
    }

    /// Abandons the object.
    pub async fn abort(mut self) -> Result<()> {
        match self.upload_id.take() {
            Some(id) => abort_upload(&self.client, &self.bucket, &self.key, &id).await,
            None => Ok(()),
        }
    }

    /// The upload as data, to be completed or aborted later, possibly by another process
    /// ([`DetachedUpload::attach`]). It is no longer aborted when dropped: whoever holds the
    /// detached form answers for it (the bucket's lifecycle rule is the last resort).
    pub fn detach(mut self) -> Result<DetachedUpload> {
        let Some(upload_id) = self.upload_id.take() else {
            return Err(Error::Internal("sealed upload already closed".into()));
        };
        Ok(DetachedUpload {
            bucket: self.bucket.to_string(),
            key: self.key.to_string(),
            upload_id,
            parts: std::mem::take(&mut self.parts),
            bytes: self.bytes,
            checksum: self.cfg.checksum,
            if_none_match: self.cfg.if_none_match,
        })
    }
}

/// A sealed multipart upload as data ([`SealedUpload::detach`]): every part uploaded, the
/// object not visible until completed. Serialised into the manifests of work that is
/// committed elsewhere (a range of a large object, completed by the commit step).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DetachedUpload {
    /// Bucket.
    pub bucket: String,
    /// Key the object appears under when completed.
    pub key: String,
    /// The open multipart upload.
    pub upload_id: String,
    /// Its parts, in order.
    pub parts: Vec<DonePart>,
    /// Bytes in the object.
    pub bytes: u64,
    /// The full-object checksum's algorithm (the parts' CRCs are of this algorithm).
    pub checksum: ChecksumAlgorithm,
    /// Completed with `If-None-Match: *`.
    #[serde(default)]
    pub if_none_match: bool,
}

impl DetachedUpload {
    /// The upload as a [`SealedUpload`] of `client`, to complete or abort (and aborted when
    /// dropped, like any other).
    pub fn attach(self, client: &aws_sdk_s3::Client) -> SealedUpload {
        SealedUpload {
            client: client.clone(),
            bucket: self.bucket.into(),
            key: self.key.into(),
            cfg: WriterConfig {
                checksum: self.checksum,
                if_none_match: self.if_none_match,
                ..WriterConfig::default()
            },
            upload_id: Some(self.upload_id),
            parts: self.parts,
            bytes: self.bytes,
        }
    }
}

impl Drop for SealedUpload {
    fn drop(&mut self) {
        if let Some(upload_id) = self.upload_id.take() {
            warn!(bucket = %self.bucket, key = %self.key, upload_id,
                "sealed upload dropped unfinished: aborting it");
            spawn_abort(&self.client, &self.bucket, &self.key, upload_id);
        }
    }
}

/// Aborts an upload on a spawned task (from `Drop`, which cannot wait).
pub(super) fn spawn_abort(
    client: &aws_sdk_s3::Client,
    bucket: &Arc<str>,
    key: &Arc<str>,
    upload_id: String,
) {
    if let Ok(handle) = tokio::runtime::Handle::try_current() {
        let client = client.clone();
        let (bucket, key) = (bucket.clone(), key.clone());
        handle.spawn(async move {
            if let Err(e) = abort_upload(&client, &bucket, &key, &upload_id).await {
                warn!(error = %e, "abort after drop failed; the lifecycle rule will clean up");
            }
        });
    }
}

/// Completes a multipart upload of `parts` (in order) with the full-object checksum combined
/// from theirs, and checks what S3 stored.
pub(super) async fn complete_upload(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    upload_id: &str,
    done: &[DonePart],
    cfg: &WriterConfig,
    bytes: u64,
) -> Result<WriteOutcome> {
    let alg = cfg.checksum;
    let mut crc = alg.empty();
    let mut parts = Vec::with_capacity(done.len());
    for p in done {
        crc = alg.combine(crc, p.crc, p.len);
        let b = CompletedPart::builder()
            .part_number(p.number)
            .e_tag(&p.etag);
        let b = match alg {
            ChecksumAlgorithm::Crc64Nvme => b.checksum_crc64_nvme(alg.encode(p.crc)),
            ChecksumAlgorithm::Crc32c => b.checksum_crc32_c(alg.encode(p.crc)),
        };
        parts.push(b.build());
    }
    let encoded = alg.encode(crc);
    let mut req = client
        .complete_multipart_upload()
        .bucket(bucket)
        .key(key)
        .upload_id(upload_id)
        .checksum_type(ChecksumType::FullObject)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(parts))
                .build(),
        );
    req = match alg {
        ChecksumAlgorithm::Crc64Nvme => req.checksum_crc64_nvme(&encoded),
        ChecksumAlgorithm::Crc32c => req.checksum_crc32_c(&encoded),
    };
    if cfg.if_none_match {
        req = req.if_none_match("*");
    }
    let out = req
        .send()
        .await
        .map_err(|e| Error::s3("CompleteMultipartUpload", bucket, key, e))?;
    let returned = match alg {
        ChecksumAlgorithm::Crc64Nvme => out.checksum_crc64_nvme.as_deref(),
        ChecksumAlgorithm::Crc32c => out.checksum_crc32_c.as_deref(),
    };
    if let Some(returned) = returned
        && out.checksum_type == Some(ChecksumType::FullObject)
        && returned != encoded
    {
        return Err(Error::Integrity {
            what: format!("s3://{bucket}/{key}"),
            reason: format!("S3 stored {} {returned}, we sent {encoded}", alg.as_str()),
        });
    }
    Ok(WriteOutcome {
        bucket: bucket.to_owned(),
        key: key.to_owned(),
        etag: out.e_tag.map(|e| e.trim_matches('"').to_owned()),
        version_id: out.version_id,
        bytes,
        parts: done.len() as u32,
        checksum: FullObjectChecksum {
            algorithm: alg.as_str().to_owned(),
            value: encoded,
        },
    })
}

/// Aborts a multipart upload; an upload that is already gone counts as aborted.
pub async fn abort_upload(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    upload_id: &str,
) -> Result<()> {
    match client
        .abort_multipart_upload()
        .bucket(bucket)
        .key(key)
        .upload_id(upload_id)
        .send()
        .await
    {
        Ok(_) => {
            debug!(bucket, key, upload_id, "multipart upload aborted");
            Ok(())
        }
        Err(e) => match Error::s3("AbortMultipartUpload", bucket, key, e) {
            Error::NotFound { .. } => Ok(()),
            Error::S3 { code: Some(c), .. } if c == "NoSuchUpload" => Ok(()),
            other => Err(other),
        },
    }
}
