//! The benchmark store (`local-s3 --lean`), a lean S3 store for throughput benchmarks: the S3
//! protocol (`s3s`, SigV4 checked) over plain files, doing as little work per byte as a store
//! can.
//!
//! Why it exists: a benchmark of an uploader on one 2-core machine shares those cores with the
//! store, so the store's own cost per byte decides much of the result. Real S3 runs elsewhere
//! and completes a multipart upload as a metadata operation; `s3s-fs` (the test store)
//! re-reads and re-hashes every byte with MD5 on CompleteMultipartUpload, which takes about half
//! of a 1 GiB multipart upload's time here. This store writes each body to a file once and
//! completes an upload by joining its part files in the kernel (`copy_file_range`), so the
//! uploaders being compared are what differs. It serves what the benchmarks use: PutObject,
//! CreateMultipartUpload, UploadPart, CompleteMultipartUpload, AbortMultipartUpload, HeadObject,
//! GetObject, HeadBucket. ETags are CRC-64/NVME digests (hex), not MD5: nothing here checks them
//! beyond matching a part's ETag on completion, as S3 does. Not for the test suite, which runs
//! on `s3s-fs` and SeaweedFS.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Component, Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use futures::StreamExt;
use s3s::dto::{
    AbortMultipartUploadInput, AbortMultipartUploadOutput, CompleteMultipartUploadInput,
    CompleteMultipartUploadOutput, CreateMultipartUploadInput, CreateMultipartUploadOutput, ETag,
    GetObjectInput, GetObjectOutput, HeadBucketInput, HeadBucketOutput, HeadObjectInput,
    HeadObjectOutput, PutObjectInput, PutObjectOutput, StreamingBlob, UploadPartInput,
    UploadPartOutput,
};
use s3s::{S3, S3Request, S3Response, S3Result, s3_error};

/// Bytes gathered from a request body before one blocking write.
const WRITE_BATCH: usize = 4 << 20;
/// S3's smallest part, except the last.
const MIN_PART: u64 = 5 << 20;

/// The store: objects are files at `root/bucket/key`; uploads live under `root/.lean-uploads`.
pub struct BenchStore {
    root: PathBuf,
    next: AtomicU64,
    uploads: Mutex<HashMap<String, Upload>>,
}

struct Upload {
    bucket: String,
    key: String,
    dir: PathBuf,
    /// Part number -> (size, ETag).
    parts: BTreeMap<i32, (u64, String)>,
}

impl std::fmt::Debug for BenchStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BenchStore")
            .field("root", &self.root)
            .finish()
    }
}

impl BenchStore {
    /// A store over `root` (which must exist; buckets are its folders).
    pub fn new(root: &Path) -> std::io::Result<BenchStore> {
        std::fs::create_dir_all(root.join(".lean-uploads"))?;
        std::fs::create_dir_all(root.join(".lean-tmp"))?;
        Ok(BenchStore {
            root: root.to_path_buf(),
            next: AtomicU64::new(1),
            uploads: Mutex::new(HashMap::new()),
        })
    }

    fn bucket_dir(&self, bucket: &str) -> S3Result<PathBuf> {
        let dir = self.root.join(bucket);
        if bucket.starts_with('.') || bucket.contains('/') || !dir.is_dir() {
            return Err(s3_error!(NoSuchBucket));
        }
        Ok(dir)
    }

    fn object_path(&self, bucket: &str, key: &str) -> S3Result<PathBuf> {
        let safe = Path::new(key)
            .components()
            .all(|c| matches!(c, Component::Normal(_)));
        if key.is_empty() || !safe {
            return Err(s3_error!(
                InvalidArgument,
                "key not supported by this store"
            ));
        }
        Ok(self.bucket_dir(bucket)?.join(key))
    }

    fn temp_path(&self) -> PathBuf {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        self.root.join(".lean-tmp").join(n.to_string())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Upload>> {
        self.uploads
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn io_error(e: std::io::Error) -> s3s::S3Error {
    s3_error!(InternalError, "{e}")
}

fn crc_hex(crc: u64) -> String {
    format!("{crc:016x}")
}

/// Writes a request body to `path` in batches of blocking writes; returns (bytes, CRC-64/NVME).
async fn write_body(body: Option<StreamingBlob>, path: PathBuf) -> S3Result<(u64, u64)> {
    let file = std::fs::File::create(&path).map_err(io_error)?;
    let mut file = Some(file);
    let mut digest = crc_fast::Digest::new(crc_fast::CrcAlgorithm::Crc64Nvme);
    let mut size = 0u64;
    let mut batch: Vec<Bytes> = Vec::new();
    let mut batched = 0usize;
    let mut body = body;
    loop {
        let next = match body.as_mut() {
            Some(b) => b.next().await,
            None => None,
        };
        let end = next.is_none();
        if let Some(chunk) = next {
            let chunk = chunk.map_err(|e| s3_error!(IncompleteBody, "{e}"))?;
            digest.update(&chunk);
            size += chunk.len() as u64;
            batched += chunk.len();
            batch.push(chunk);
        }
        if batched >= WRITE_BATCH || (end && !batch.is_empty()) {
            let mut f = file.take().ok_or_else(|| s3_error!(InternalError))?;
            let chunks = std::mem::take(&mut batch);
            f = tokio::task::spawn_blocking(move || {
                for c in &chunks {
                    f.write_all(c)?;
                }
                Ok::<_, std::io::Error>(f)
            })
            .await
            .map_err(|e| s3_error!(InternalError, "{e}"))?
            .map_err(io_error)?;
            file = Some(f);
            batched = 0;
        }
        if end {
            return Ok((size, digest.finalize()));
        }
    }
}

#[async_trait::async_trait]
impl S3 for BenchStore {
    async fn head_bucket(
        &self,
        req: S3Request<HeadBucketInput>,
    ) -> S3Result<S3Response<HeadBucketOutput>> {
        self.bucket_dir(&req.input.bucket)?;
        Ok(S3Response::new(HeadBucketOutput::default()))
    }

    async fn put_object(
        &self,
        req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        let input = req.input;
        let path = self.object_path(&input.bucket, &input.key)?;
        let tmp = self.temp_path();
        let written = write_body(input.body, tmp.clone()).await;
        let (_, crc) = match written {
            Ok(w) => w,
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(e);
            }
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io_error)?;
        }
        std::fs::rename(&tmp, &path).map_err(io_error)?;
        Ok(S3Response::new(PutObjectOutput {
            e_tag: Some(ETag::Strong(crc_hex(crc))),
            ..Default::default()
        }))
    }

    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        let input = req.input;
        self.object_path(&input.bucket, &input.key)?;
        let id = format!("lean-{}", self.next.fetch_add(1, Ordering::Relaxed));
        let dir = self.root.join(".lean-uploads").join(&id);
        std::fs::create_dir_all(&dir).map_err(io_error)?;
        self.lock().insert(
            id.clone(),
            Upload {
                bucket: input.bucket.clone(),
                key: input.key.clone(),
                dir,
                parts: BTreeMap::new(),
            },
        );
        Ok(S3Response::new(CreateMultipartUploadOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            upload_id: Some(id),
            ..Default::default()
        }))
    }

    async fn upload_part(
        &self,
        req: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        let input = req.input;
        if !(1..=10_000).contains(&input.part_number) {
            return Err(s3_error!(InvalidArgument, "part number out of range"));
        }
        let dir = match self.lock().get(&input.upload_id) {
            Some(u) if u.bucket == input.bucket && u.key == input.key => u.dir.clone(),
            _ => return Err(s3_error!(NoSuchUpload)),
        };
        let path = dir.join(input.part_number.to_string());
        let (size, crc) = write_body(input.body, path).await?;
        let etag = crc_hex(crc);
        match self.lock().get_mut(&input.upload_id) {
            Some(u) => {
                u.parts.insert(input.part_number, (size, etag.clone()));
            }
            None => return Err(s3_error!(NoSuchUpload)),
        }
        Ok(S3Response::new(UploadPartOutput {
            e_tag: Some(ETag::Strong(etag)),
            ..Default::default()
        }))
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        let input = req.input;
        let path = self.object_path(&input.bucket, &input.key)?;
        let listed = input
            .multipart_upload
            .and_then(|m| m.parts)
            .unwrap_or_default();
        let (dir, files, joined_etag) = {
            let uploads = self.lock();
            let upload = match uploads.get(&input.upload_id) {
                Some(u) if u.bucket == input.bucket && u.key == input.key => u,
                _ => return Err(s3_error!(NoSuchUpload)),
            };
            if listed.is_empty() {
                return Err(s3_error!(MalformedXML, "no parts listed"));
            }
            let mut digest = crc_fast::Digest::new(crc_fast::CrcAlgorithm::Crc64Nvme);
            let mut files = Vec::with_capacity(listed.len());
            let mut previous = 0;
            for (i, part) in listed.iter().enumerate() {
                let number = part.part_number.unwrap_or(0);
                if number <= previous {
                    return Err(s3_error!(InvalidPartOrder));
                }
                previous = number;
                let Some((size, etag)) = upload.parts.get(&number) else {
                    return Err(s3_error!(InvalidPart, "part {number} was not uploaded"));
                };
                let listed_etag = part.e_tag.as_ref().map(|e| match e {
                    ETag::Strong(v) | ETag::Weak(v) => v.as_str(),
                });
                if listed_etag != Some(etag.as_str()) {
                    return Err(s3_error!(InvalidPart, "part {number}: ETag does not match"));
                }
                if i + 1 < listed.len() && *size < MIN_PART {
                    return Err(s3_error!(EntityTooSmall));
                }
                digest.update(etag.as_bytes());
                files.push(upload.dir.join(number.to_string()));
            }
            (
                upload.dir.clone(),
                files,
                format!("{}-{}", crc_hex(digest.finalize()), listed.len()),
            )
        };
        let tmp = self.temp_path();
        let joined = tokio::task::spawn_blocking(move || {
            let mut out = std::fs::File::create(&tmp)?;
            for f in &files {
                // `io::copy` between files uses copy_file_range: the kernel moves the bytes.
                std::io::copy(&mut std::fs::File::open(f)?, &mut out)?;
            }
            Ok::<_, std::io::Error>(tmp)
        })
        .await
        .map_err(|e| s3_error!(InternalError, "{e}"))?
        .map_err(io_error)?;
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io_error)?;
        }
        std::fs::rename(&joined, &path).map_err(io_error)?;
        self.lock().remove(&input.upload_id);
        let _ = std::fs::remove_dir_all(dir);
        Ok(S3Response::new(CompleteMultipartUploadOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            e_tag: Some(ETag::Strong(joined_etag)),
            ..Default::default()
        }))
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        let removed = self.lock().remove(&req.input.upload_id);
        match removed {
            Some(u) => {
                let _ = std::fs::remove_dir_all(u.dir);
                Ok(S3Response::new(AbortMultipartUploadOutput::default()))
            }
            None => Err(s3_error!(NoSuchUpload)),
        }
    }

    async fn head_object(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        let path = self.object_path(&req.input.bucket, &req.input.key)?;
        let meta = std::fs::metadata(&path).map_err(|_| s3_error!(NoSuchKey))?;
        Ok(S3Response::new(HeadObjectOutput {
            content_length: Some(meta.len() as i64),
            ..Default::default()
        }))
    }

    async fn get_object(
        &self,
        req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        let path = self.object_path(&req.input.bucket, &req.input.key)?;
        let file = tokio::fs::File::open(&path)
            .await
            .map_err(|_| s3_error!(NoSuchKey))?;
        let len = file.metadata().await.map_err(io_error)?.len();
        let chunks = futures::stream::unfold(file, |mut file| async move {
            use tokio::io::AsyncReadExt;
            let mut buf = vec![0u8; 1 << 20];
            match file.read(&mut buf).await {
                Ok(0) => None,
                Ok(n) => {
                    buf.truncate(n);
                    Some((Ok::<_, std::io::Error>(Bytes::from(buf)), file))
                }
                Err(e) => Some((Err(e), file)),
            }
        });
        Ok(S3Response::new(GetObjectOutput {
            body: Some(StreamingBlob::wrap(chunks)),
            content_length: Some(len as i64),
            ..Default::default()
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_s3::primitives::ByteStream;
    use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};

    async fn start() -> (
        tempfile::TempDir,
        aws_sdk_s3::Client,
        tokio::task::JoinHandle<()>,
    ) {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(dir.path().join("bkt")).expect("bucket");
        let store = BenchStore::new(dir.path()).expect("store");
        let (addr, _, server) = crate::s3::serve_store(store, 0).await.expect("serve");
        let client = crate::s3::client_for(
            &format!("http://{addr}"),
            crate::s3::ACCESS_KEY,
            crate::s3::SECRET_KEY,
            "us-east-1",
            true,
        );
        (dir, client, server)
    }

    async fn get(client: &aws_sdk_s3::Client, key: &str) -> Vec<u8> {
        let out = client.get_object().bucket("bkt").key(key).send().await;
        let body = out.expect("GetObject").body.collect().await.expect("body");
        body.into_bytes().to_vec()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn put_multipart_and_abort_keep_the_s3_contract() {
        let (dir, client, server) = start().await;
        let small = crate::data::random_bytes(100_000, 7);
        client
            .put_object()
            .bucket("bkt")
            .key("dir/small.bin")
            .body(ByteStream::from(small.clone()))
            .send()
            .await
            .expect("PutObject");
        assert_eq!(get(&client, "dir/small.bin").await, small);

        let parts = [
            crate::data::random_bytes(5 << 20, 1),
            crate::data::random_bytes(1234, 2),
        ];
        let up = client
            .create_multipart_upload()
            .bucket("bkt")
            .key("big.bin")
            .send()
            .await
            .expect("CreateMultipartUpload");
        let id = up.upload_id().expect("upload id").to_owned();
        let mut done = Vec::new();
        for (i, p) in parts.iter().enumerate() {
            let n = i as i32 + 1;
            let out = client
                .upload_part()
                .bucket("bkt")
                .key("big.bin")
                .upload_id(&id)
                .part_number(n)
                .body(ByteStream::from(p.clone()))
                .send()
                .await
                .expect("UploadPart");
            done.push((n, out.e_tag().expect("etag").to_owned()));
        }
        let complete = |etags: Vec<(i32, String)>| {
            let parts = etags
                .into_iter()
                .map(|(n, e)| CompletedPart::builder().part_number(n).e_tag(e).build())
                .collect();
            client
                .complete_multipart_upload()
                .bucket("bkt")
                .key("big.bin")
                .upload_id(&id)
                .multipart_upload(
                    CompletedMultipartUpload::builder()
                        .set_parts(Some(parts))
                        .build(),
                )
                .send()
        };
        let mut wrong = done.clone();
        wrong[1].1 = "\"0000\"".into();
        assert!(complete(wrong).await.is_err(), "a wrong ETag is refused");
        let reversed: Vec<_> = done.iter().rev().cloned().collect();
        assert!(complete(reversed).await.is_err(), "parts out of order");
        complete(done).await.expect("CompleteMultipartUpload");
        assert_eq!(get(&client, "big.bin").await, parts.concat());
        let head = client
            .head_object()
            .bucket("bkt")
            .key("big.bin")
            .send()
            .await;
        assert_eq!(
            head.expect("HeadObject").content_length(),
            Some((5 << 20) + 1234)
        );

        let up = client
            .create_multipart_upload()
            .bucket("bkt")
            .key("gone.bin")
            .send()
            .await
            .expect("CreateMultipartUpload");
        let id = up.upload_id().expect("upload id");
        client
            .abort_multipart_upload()
            .bucket("bkt")
            .key("gone.bin")
            .upload_id(id)
            .send()
            .await
            .expect("AbortMultipartUpload");
        let leftovers = std::fs::read_dir(dir.path().join(".lean-uploads"))
            .expect("uploads dir")
            .count();
        assert_eq!(leftovers, 0, "completed and aborted uploads leave nothing");
        assert!(
            client
                .get_object()
                .bucket("bkt")
                .key("gone.bin")
                .send()
                .await
                .is_err(),
            "an aborted upload creates no object"
        );
        server.abort();
    }
}
