//! Retries on top of the SDK's ([`retrying`], with exponential backoff and jitter:
//! [`backoff`]), and one part's upload under them: transient errors only.

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
        let (bucket, key, number) = (&self.bucket, &self.key, self.number);
        retrying(
            self.attempts,
            self.base_delay,
            number as u64,
            Error::is_transient,
            |_| self.upload(&encoded, crc),
            |attempt, delay, err| {
                warn!(bucket = %bucket, key = %key, part = number, attempt,
                    delay_ms = delay.as_millis() as u64, error = %err, "part upload failed; retrying");
            },
        )
        .await
    }

    /// One attempt at the upload.
    async fn upload(&self, encoded: &str, crc: u64) -> Result<DonePart> {
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
            ChecksumAlgorithm::Crc64Nvme => req.checksum_crc64_nvme(encoded),
            ChecksumAlgorithm::Crc32c => req.checksum_crc32_c(encoded),
        };
        // The part's CRC (checked by S3) protects its content, so the SigV4 payload hash, a
        // second full pass over the data, is skipped.
        let out = req
            .customize()
            .disable_payload_signing()
            .send()
            .await
            .map_err(|e| Error::s3("UploadPart", &self.bucket, &self.key, e))?;
        Ok(DonePart {
            number: self.number,
            etag: out.e_tag.unwrap_or_default().trim_matches('"').to_owned(),
            crc,
            len: self.data.len() as u64,
        })
    }
}

/// Runs `op` (given the attempt, from 1) until it succeeds, fails with an error `retry` does
/// not take, or has been tried `attempts` times; before each new attempt, `before_retry` is told
/// the attempt that failed, the wait and the error (to log them), then [`backoff`] from `base`
/// is waited (`salt` spreads concurrent callers apart). The last error is the answer.
pub async fn retrying<T, Fut>(
    attempts: u32,
    base: Duration,
    salt: u64,
    retry: impl Fn(&Error) -> bool,
    mut op: impl FnMut(u32) -> Fut,
    before_retry: impl Fn(u32, Duration, &Error),
) -> Result<T>
where
    Fut: Future<Output = Result<T>>,
{
    let mut attempt = 0;
    loop {
        attempt += 1;
        match op(attempt).await {
            Err(e) if attempt < attempts && retry(&e) => {
                let delay = backoff(base, attempt, salt);
                before_retry(attempt, delay, &e);
                tokio::time::sleep(delay).await;
            }
            done => return done,
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

    /// An operation that fails `failures` times with `message`, then answers its attempt.
    async fn attempts_of(
        attempts: u32,
        failures: u32,
        message: &'static str,
    ) -> (Result<u32>, Vec<u32>) {
        let told = std::sync::Mutex::new(Vec::new());
        let answer = retrying(
            attempts,
            Duration::from_millis(1),
            0,
            |e| e.to_string().contains("passes"),
            |attempt| async move {
                if attempt <= failures {
                    Err(Error::Internal(message.to_owned()))
                } else {
                    Ok(attempt)
                }
            },
            |attempt, _, _| told.lock().expect("lock").push(attempt),
        )
        .await;
        (answer, told.into_inner().expect("lock"))
    }

    #[tokio::test]
    async fn retrying_retries_what_may_pass_and_answers_the_last_error() {
        // Two failures that pass, then success: three attempts, two retries told.
        let (answer, told) = attempts_of(3, 2, "passes").await;
        assert_eq!(answer.expect("third attempt"), 3);
        assert_eq!(told, [1, 2]);
        // An error that does not pass is answered at once.
        let (answer, told) = attempts_of(3, 2, "stays").await;
        assert!(answer.expect_err("no retry").to_string().contains("stays"));
        assert!(told.is_empty());
        // Out of attempts: the last error.
        let (answer, told) = attempts_of(2, 5, "passes").await;
        assert!(
            answer
                .expect_err("out of attempts")
                .to_string()
                .contains("passes")
        );
        assert_eq!(told, [1]);
    }

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
