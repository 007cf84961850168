//! The streaming reader against a real S3 endpoint (embedded s3s-fs, or `TEST_S3_ENDPOINT`).

mod common;

use std::io::Write;

use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;
use tributary::ObjectRef;
use tributary::reader::{Compression, open};
use tributary_testkit::TestS3;
use tributary_testkit::data::{MIB, random_bytes, sha256_hex};

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).expect("gzip");
    e.finish().expect("gzip")
}

fn zstd(data: &[u8]) -> Vec<u8> {
    zstd::encode_all(data, 1).expect("zstd")
}

fn text(lines: usize, seed: usize) -> Vec<u8> {
    (0..lines)
        .map(|i| format!("{},{},row {}\n", i + seed, (i * 7919) % 1000, i))
        .collect::<String>()
        .into_bytes()
}

async fn read_all(s3: &TestS3, bucket: &str, key: &str, c: Compression) -> (Compression, Vec<u8>) {
    let client = common::client(s3).await;
    let mut r = open(&client, &ObjectRef::new(bucket, key), c)
        .await
        .expect("open");
    let mut out = Vec::new();
    r.read_to_end(&mut out).await.expect("read");
    (r.compression, out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_gzip_multi_member_gzip_and_zstd() {
    let s3 = TestS3::start().await;
    let bucket = s3.bucket().await;
    let a = text(20_000, 0);
    let b = text(15_000, 1_000_000);
    let ab: Vec<u8> = [a.clone(), b.clone()].concat();

    s3.put(&bucket, "in/plain.csv", a.clone()).await;
    s3.put(&bucket, "in/one.csv.gz", gzip(&a)).await;
    s3.put(&bucket, "in/two.csv.gz", [gzip(&a), gzip(&b)].concat())
        .await;
    s3.put(&bucket, "in/two.csv.zst", [zstd(&a), zstd(&b)].concat())
        .await;
    // No extension: detected from the magic bytes (what Firehose writes).
    s3.put(&bucket, "in/firehose-1-2024", [gzip(&a), gzip(&b)].concat())
        .await;
    s3.put(&bucket, "in/frames", zstd(&ab)).await;

    let cases = [
        ("in/plain.csv", Compression::None, &a),
        ("in/one.csv.gz", Compression::Gzip, &a),
        ("in/two.csv.gz", Compression::Gzip, &ab),
        ("in/two.csv.zst", Compression::Zstd, &ab),
        ("in/firehose-1-2024", Compression::Gzip, &ab),
        ("in/frames", Compression::Zstd, &ab),
    ];
    for (key, want_c, want) in cases {
        let (c, got) = read_all(&s3, &bucket, key, Compression::Auto).await;
        assert_eq!(c, want_c, "{key}");
        assert_eq!(sha256_hex(&got), sha256_hex(want), "{key}");
    }
    // An explicit choice overrides detection: read the gzip bytes as they are.
    let (_, raw) = read_all(&s3, &bucket, "in/one.csv.gz", Compression::None).await;
    assert_eq!(raw, gzip(&a));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_compressed_data_is_a_read_error() {
    let s3 = TestS3::start().await;
    let bucket = s3.bucket().await;
    let mut bad = gzip(&text(1000, 0));
    let mid = bad.len() / 2;
    bad[mid..mid + 16].fill(0xAA);
    s3.put(&bucket, "bad.csv.gz", bad).await;
    let client = common::client(&s3).await;
    let mut r = open(
        &client,
        &ObjectRef::new(&bucket, "bad.csv.gz"),
        Compression::Auto,
    )
    .await
    .expect("open succeeds; the damage is found while reading");
    let mut out = Vec::new();
    let err = r.read_to_end(&mut out).await.expect_err("corrupt gzip");
    assert!(!err.to_string().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_object_is_not_found() {
    let s3 = TestS3::start().await;
    let bucket = s3.bucket().await;
    let client = common::client(&s3).await;
    let err = open(
        &client,
        &ObjectRef::new(&bucket, "nope.csv"),
        Compression::Auto,
    )
    .await
    .expect_err("missing");
    assert_eq!(err.error_type(), "ObjectNotFound", "{err}");
    assert!(err.to_string().contains("nope.csv"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_mib_streams_in_small_reads() {
    let s3 = TestS3::start().await;
    let bucket = s3.bucket().await;
    let client = common::client(&s3).await;
    // Store 100 MiB through the streaming writer (bounded), then stream it back.
    let mut w = tributary::S3Writer::new(client.clone(), &bucket, "big.bin", Default::default());
    let mut want = Sha256::new();
    for i in 0..100 {
        let chunk = random_bytes(MIB, i);
        want.update(&chunk);
        w.write(&chunk).await.expect("write");
    }
    w.finish().await.expect("finish");
    let mut r = open(
        &client,
        &ObjectRef::new(&bucket, "big.bin"),
        Compression::Auto,
    )
    .await
    .expect("open");
    assert_eq!(r.content_length, Some(100 * MIB as u64));
    let mut got = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        let n = r.read(&mut buf).await.expect("read");
        if n == 0 {
            break;
        }
        total += n as u64;
        got.update(&buf[..n]);
    }
    assert_eq!(total, 100 * MIB as u64);
    assert_eq!(r.raw_bytes_read(), total);
    assert_eq!(hex::encode(got.finalize()), hex::encode(want.finalize()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_pinned_to_an_etag_fails_when_the_object_was_replaced() {
    let s3 = TestS3::start().await;
    if !s3.honours_get_if_match() {
        return common::skip(
            "pinned_read",
            "s3s-fs ignores If-Match on GetObject; runs against SeaweedFS",
        );
    }
    let bucket = s3.bucket().await;
    let client = common::client(&s3).await;
    let old = s3.put(&bucket, "pinned.csv", b"a,b\n1,2\n".to_vec()).await;
    // Reading with the current ETag works.
    let obj = ObjectRef::new(&bucket, "pinned.csv").with_etag(old.clone());
    let mut r = open(&client, &obj, Compression::Auto)
        .await
        .expect("current etag");
    let mut out = Vec::new();
    r.read_to_end(&mut out).await.expect("read");
    assert_eq!(out, b"a,b\n1,2\n");
    // Replace the object: the event's ETag no longer matches.
    s3.put(&bucket, "pinned.csv", b"a,b\n3,4\n5,6\n".to_vec())
        .await;
    let err = open(&client, &obj, Compression::Auto)
        .await
        .expect_err("object changed since the event");
    assert_eq!(err.error_type(), "PreconditionFailed", "{err}");
    assert!(err.to_string().contains("pinned.csv"), "{err}");
}
