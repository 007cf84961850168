//! One part's upload, with its own retries on top of the SDK's: transient errors only, with
//! exponential backoff and jitter ([`backoff`]).

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use bytes::Bytes;
use tracing::warn;

use super::DonePart;
use crate::checksum::ChecksumAlgorithm;
use crate::error::{Error, Result};

/// One part's upload, with its own retries: the part's CRC sent for S3 to check (and no SigV4
/// payload hash), transient failures retried with [`backoff`]. The writer's parts, and those of
/// an upload another process opened and completes (a ranged ingestion's children).
#[derive(Debug)]
pub struct PartTask {
    /// The client.
    pub client: aws_sdk_s3::Client,
    /// Bucket.
    pub bucket: Arc<str>,
    /// Key.
    pub key: Arc<str>,
    /// The open multipart upload.
    pub upload_id: String,
    /// Part number (1-based).
    pub number: i32,
    /// The part's bytes.
    pub data: Bytes,
    /// The upload's checksum algorithm.
    pub algorithm: ChecksumAlgorithm,
    /// Attempts at this level (each attempt may itself be retried by the SDK).
    pub attempts: u32,
    /// First backoff delay.
    pub base_delay: Duration,
}

impl PartTask {
    /// Uploads the part; the part as S3 confirmed it.
    pub async fn run(self) -> Result<DonePart> {
        let crc = self.algorithm.checksum(&self.data);
        let encoded = self.algorithm.encode(crc);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let req = self
                .client
                .upload_part()
                .bucket(&*self.bucket)
                .key(&*self.key)
                .upload_id(&self.upload_id)
                .part_number(self.number)
                .content_length(self.data.len() as i64)
                .body(ByteStream::from(self.data.clone()));
            let req = match self.algorithm {
                ChecksumAlgorithm::Crc64Nvme => req.checksum_crc64_nvme(&encoded),
                ChecksumAlgorithm::Crc32c => req.checksum_crc32_c(&encoded),
            };
            // The part's CRC (checked by S3) protects its content, so the SigV4 payload hash,
            // a second full pass over the data, is skipped.
            match req.customize().disable_payload_signing().send().await {
                Ok(out) => {
                    let etag = out.e_tag.unwrap_or_default().trim_matches('"').to_owned();
                    let part = DonePart {
                        number: self.number,
                        etag,
                        crc,
                        len: self.data.len() as u64,
                    };
                    return Ok(part);
                }
                Err(e) => {
                    let err = Error::s3("UploadPart", &self.bucket, &self.key, e);
                    if attempt >= self.attempts || !err.is_transient() {
                        return Err(err);
                    }
                    let delay = backoff(self.base_delay, attempt, self.number as u64);
                    warn!(bucket = %self.bucket, key = %self.key, part = self.number, attempt,
                        delay_ms = delay.as_millis() as u64, error = %err, "part upload failed; retrying");
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }
}

/// Exponential backoff with jitter: `base x 2^(attempt-1)`, scaled by 0.5..1.5, capped at 20 s.
pub fn backoff(base: Duration, attempt: u32, salt: u64) -> Duration {
    let exp = base.saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64)
        .unwrap_or(0);
    // A cheap mix of time and salt: enough to spread retries of concurrent parts apart.
    let mix = (nanos ^ salt.wrapping_mul(0x9E37_79B9_7F4A_7C15)) % 1000;
    let scaled = exp.mul_f64(0.5 + mix as f64 / 1000.0);
    scaled.min(Duration::from_secs(20))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let base = Duration::from_millis(100);
        let first = backoff(base, 1, 1);
        assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(150));
        let fourth = backoff(base, 4, 1);
        assert!(fourth >= Duration::from_millis(400) && fourth <= Duration::from_millis(1200));
        assert_eq!(
            backoff(base, 30, 1).min(Duration::from_secs(20)),
            backoff(base, 30, 1)
        );
    }
}
