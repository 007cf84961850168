//! A range child's upload: its bytes cut into parts with fixed numbers of an upload someone
//! else opened and will complete.
//!
//! Unlike [`tributary::S3Writer`], it never creates, completes or aborts the upload: a failed
//! child leaves the upload to the Map's retry (re-uploading a part number replaces it) or to
//! the commit's abort. Memory: the part being filled plus at most `concurrency` parts in
//! flight, each exactly `part_size`. Every part carries its CRC (S3 checks it); the parts'
//! CRCs combine into the range's, which the commit combines into the object's.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::task::JoinSet;
use tributary::Error;
use tributary::checksum::ChecksumAlgorithm;
use tributary::writer::PartTask;

/// Attempts per part at this level (each attempt may itself be retried by the SDK).
const PART_ATTEMPTS: u32 = 4;

/// A part S3 confirmed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Uploaded {
    /// Part number.
    pub number: u32,
    /// Its CRC.
    pub crc: u64,
    /// Its length.
    pub len: u64,
}

/// Uploads parts `first_part, first_part + 1, ...` of an open multipart upload.
#[derive(Debug)]
pub struct PartUploader {
    client: aws_sdk_s3::Client,
    bucket: Arc<str>,
    key: Arc<str>,
    upload_id: Arc<str>,
    algorithm: ChecksumAlgorithm,
    part_size: usize,
    concurrency: usize,
    next: u32,
    buf: Vec<u8>,
    in_flight: JoinSet<Result<Uploaded, Error>>,
    done: Vec<Uploaded>,
}

impl PartUploader {
    /// An uploader for `upload_id` at `s3://bucket/key`, starting at part `first_part`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        client: aws_sdk_s3::Client,
        bucket: &str,
        key: &str,
        upload_id: &str,
        algorithm: ChecksumAlgorithm,
        part_size: usize,
        concurrency: usize,
        first_part: u32,
    ) -> PartUploader {
        PartUploader {
            client,
            bucket: Arc::from(bucket),
            key: Arc::from(key),
            upload_id: Arc::from(upload_id),
            algorithm,
            part_size,
            concurrency: concurrency.max(1),
            next: first_part,
            buf: Vec::new(),
            in_flight: JoinSet::new(),
            done: Vec::new(),
        }
    }

    /// Parts confirmed so far.
    pub fn parts_uploaded(&self) -> usize {
        self.done.len()
    }

    /// Takes `data`; a full part goes up as soon as it is full. Waits when `concurrency` parts
    /// are in flight. On error the parts in flight are cancelled (the upload stays open).
    pub async fn write(&mut self, mut data: &[u8]) -> Result<(), Error> {
        while !data.is_empty() {
            if self.buf.capacity() == 0 {
                // Allocate the next part only once a slot is free: the bound holds.
                while self.in_flight.len() >= self.concurrency {
                    self.reap().await?;
                }
                self.buf = Vec::with_capacity(self.part_size);
            }
            let take = (self.part_size - self.buf.len()).min(data.len());
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.buf.len() == self.part_size {
                self.send();
            }
        }
        Ok(())
    }

    /// Uploads what is left (a short last part) and waits for every part; returns them in
    /// order.
    pub async fn finish(mut self) -> Result<Vec<Uploaded>, Error> {
        if !self.buf.is_empty() {
            self.send();
        }
        while !self.in_flight.is_empty() {
            self.reap().await?;
        }
        let mut done = std::mem::take(&mut self.done);
        done.sort_by_key(|p| p.number);
        Ok(done)
    }

    fn send(&mut self) {
        let data = Bytes::from(std::mem::take(&mut self.buf));
        let number = self.next;
        self.next += 1;
        let task = PartTask {
            client: self.client.clone(),
            bucket: self.bucket.clone(),
            key: self.key.clone(),
            upload_id: self.upload_id.to_string(),
            number: number as i32,
            data,
            algorithm: self.algorithm,
            attempts: PART_ATTEMPTS,
            base_delay: Duration::from_millis(250),
        };
        self.in_flight.spawn(async move {
            task.run().await.map(|p| Uploaded {
                number,
                crc: p.crc,
                len: p.len,
            })
        });
    }

    async fn reap(&mut self) -> Result<(), Error> {
        if let Some(res) = self.in_flight.join_next().await {
            let part =
                res.map_err(|e| Error::Internal(format!("part upload task failed: {e}")))??;
            self.done.push(part);
        }
        Ok(())
    }
}
