//! The streaming reader against a real S3 endpoint (embedded s3s-fs, or `TEST_S3_ENDPOINT`).

mod common;

use std::io::Write;

use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;
use tributary::Error;
use tributary::ObjectRef;
use tributary::reader::{Compression, ObjectReader, ReadAhead, open, open_ahead};
use tributary_testkit::data::{MIB, random_bytes, sha256_hex};
use tributary_testkit::{Action, Calls, Op, TestS3};

/// Chunks small enough that a test object spans many ranged GETs.
const SMALL: ReadAhead = ReadAhead {
    chunk: 64 * 1024,
    ahead: 3,
};

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

/// Reads `r` to its end in reads of an odd size (so chunk ends fall inside reads).
async fn read_unevenly(r: &mut ObjectReader) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 10_007];
    loop {
        let n = r.read(&mut buf).await?;
        if n == 0 {
            return Ok(out);
        }
        out.extend_from_slice(&buf[..n]);
    }
}

fn gets(s3: &TestS3) -> Option<u64> {
    s3.faults().map(|f| f.calls(Op::GetObject))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_object_read_in_ranged_gets_arrives_whole_and_in_order() {
    let s3 = TestS3::start().await;
    let bucket = s3.bucket().await;
    let client = common::client(&s3).await;
    let data = random_bytes(MIB + 12_345, 7);
    s3.put(&bucket, "big.bin", data.clone()).await;
    let obj = ObjectRef::new(&bucket, "big.bin");

    let before = gets(&s3);
    let mut r = open_ahead(&client, &obj, Compression::None, None, SMALL)
        .await
        .expect("open");
    assert_eq!(r.content_length, Some(data.len() as u64));
    let got = read_unevenly(&mut r).await.expect("read");
    assert_eq!(got.len(), data.len());
    assert_eq!(sha256_hex(&got), sha256_hex(&data));
    assert_eq!(r.raw_bytes_read(), data.len() as u64);
    if let (Some(before), Some(after)) = (before, gets(&s3)) {
        // One GET per 64 KiB: the object was read in ranges, each once.
        assert_eq!(after - before, data.len().div_ceil(64 * 1024) as u64);
    }

    // A range of it, read in chunks the same way.
    let range = 1_000..(data.len() as u64 - 777);
    let mut r = open_ahead(&client, &obj, Compression::None, Some(range.clone()), SMALL)
        .await
        .expect("open range");
    assert_eq!(r.content_length, Some(range.end - range.start));
    let got = read_unevenly(&mut r).await.expect("read range");
    assert_eq!(got, data[range.start as usize..range.end as usize]);

    // Compressed data is undone over the chunks.
    let text = text(80_000, 3);
    let packed = gzip(&text);
    assert!(packed.len() > 3 * 64 * 1024, "{} bytes", packed.len());
    s3.put(&bucket, "big.csv.gz", packed).await;
    let mut r = open_ahead(
        &client,
        &ObjectRef::new(&bucket, "big.csv.gz"),
        Compression::Auto,
        None,
        SMALL,
    )
    .await
    .expect("open gzip");
    assert_eq!(r.compression, Compression::Gzip);
    assert_eq!(read_unevenly(&mut r).await.expect("gunzip"), text);
}

/// A reader that stops after the object's first bytes (a range reads only the object's header
/// and type sample this way) must not have fetched the chunks after them: eight ranges of a
/// large object each fetched several 16 MiB chunks they never read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_dropped_after_its_first_bytes_fetched_no_chunk_ahead() {
    let s3 = TestS3::start().await;
    let Some(before) = gets(&s3) else {
        return common::skip("early_drop", "needs the embedded store's request counts");
    };
    let bucket = s3.bucket().await;
    let client = common::client(&s3).await;
    let data = random_bytes(MIB, 5);
    s3.put(&bucket, "big.bin", data.clone()).await;
    let obj = ObjectRef::new(&bucket, "big.bin");
    let settle = || tokio::time::sleep(std::time::Duration::from_millis(300));

    let mut r = open_ahead(&client, &obj, Compression::None, None, SMALL)
        .await
        .expect("open");
    let mut head = vec![0u8; 4 * 1024];
    r.read_exact(&mut head).await.expect("the first bytes");
    assert_eq!(head, data[..head.len()]);
    settle().await;
    drop(r);
    assert_eq!(
        gets(&s3).unwrap_or_default() - before,
        1,
        "only the first GET, for the bytes read"
    );

    // Past half of the first chunk the next ones are fetched (`ahead` of them), and the
    // bytes still arrive whole and in order.
    let before = gets(&s3).unwrap_or_default();
    let mut r = open_ahead(&client, &obj, Compression::None, None, SMALL)
        .await
        .expect("open");
    let mut part = vec![0u8; 40 * 1024];
    r.read_exact(&mut part)
        .await
        .expect("past half the first chunk");
    // The fetches run in spawned tasks: wait (up to 10 s, for a loaded machine) until they
    // have reached the store, then a little more for any beyond them.
    let want = before + 1 + SMALL.ahead as u64;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while gets(&s3).unwrap_or_default() < want && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    settle().await;
    assert_eq!(
        gets(&s3).unwrap_or_default() - before,
        1 + SMALL.ahead as u64,
        "the first GET and the chunks ahead"
    );
    let mut rest = Vec::new();
    r.read_to_end(&mut rest).await.expect("the rest");
    assert_eq!(sha256_hex(&[part, rest].concat()), sha256_hex(&data));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_or_small_object_reads_whole_when_reading_in_ranges() {
    let s3 = TestS3::start().await;
    let bucket = s3.bucket().await;
    let client = common::client(&s3).await;
    s3.put(&bucket, "empty.csv", Vec::new()).await;
    s3.put(&bucket, "small.csv", b"a,b\n1,2\n".to_vec()).await;
    for (key, want) in [("empty.csv", &b""[..]), ("small.csv", &b"a,b\n1,2\n"[..])] {
        let mut r = open_ahead(
            &client,
            &ObjectRef::new(&bucket, key),
            Compression::Auto,
            None,
            SMALL,
        )
        .await
        .expect(key);
        assert_eq!(r.content_length, Some(want.len() as u64), "{key}");
        assert_eq!(read_unevenly(&mut r).await.expect(key), want, "{key}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunk_whose_body_breaks_off_is_fetched_again() {
    let s3 = TestS3::start().await;
    let Some(faults) = s3.faults() else {
        return common::skip(
            "chunk_refetch",
            "needs the embedded store's fault injection",
        );
    };
    let bucket = s3.bucket().await;
    let client = common::client(&s3).await;
    let data = random_bytes(MIB, 11);
    s3.put(&bucket, "cut.bin", data.clone()).await;
    // The third GET (a chunk fetched ahead) stops after 1,000 bytes of its 64 KiB.
    faults.add(Op::GetObject, Calls::Nth(3), Action::CutBody(1_000));
    let before = faults.calls(Op::GetObject);
    let mut r = open_ahead(
        &client,
        &ObjectRef::new(&bucket, "cut.bin"),
        Compression::None,
        None,
        SMALL,
    )
    .await
    .expect("open");
    let got = read_unevenly(&mut r).await.expect("read despite the cut");
    assert_eq!(sha256_hex(&got), sha256_hex(&data));
    assert_eq!(faults.injected(), 1);
    assert_eq!(
        faults.calls(Op::GetObject) - before,
        16 + 1,
        "16 chunks, one twice"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunk_that_keeps_breaking_off_fails_the_read_instead_of_shortening_it() {
    let s3 = TestS3::start().await;
    let Some(faults) = s3.faults() else {
        return common::skip("chunk_fails", "needs the embedded store's fault injection");
    };
    let bucket = s3.bucket().await;
    let client = common::client(&s3).await;
    s3.put(&bucket, "cut.bin", random_bytes(MIB, 12)).await;
    // Every GET after the first breaks off.
    faults.add(Op::GetObject, Calls::From(2), Action::CutBody(1_000));
    let obj = ObjectRef::new(&bucket, "cut.bin");
    let mut r = open_ahead(&client, &obj, Compression::None, None, SMALL)
        .await
        .expect("open");
    let err = read_unevenly(&mut r)
        .await
        .expect_err("the rest never arrives");
    let err = Error::read(&obj, err);
    assert!(err.is_transient(), "{err}");
    assert!(err.to_string().contains("cut.bin"), "{err}");

    // The first response breaking off is an error too, not a short read.
    faults.clear();
    faults.add(Op::GetObject, Calls::From(1), Action::CutBody(1_000));
    let outcome = match open_ahead(&client, &obj, Compression::None, None, SMALL).await {
        Ok(mut r) => read_unevenly(&mut r)
            .await
            .map(|b| b.len())
            .map_err(|e| Error::read(&obj, e)),
        Err(e) => Err(e),
    };
    let err = outcome.expect_err("a cut first response");
    assert!(err.is_transient(), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ranged_read_fails_when_the_object_is_replaced_between_chunks() {
    let s3 = TestS3::start().await;
    if !s3.honours_get_if_match() {
        return common::skip(
            "replaced_between_chunks",
            "s3s-fs ignores If-Match on GetObject; runs against SeaweedFS",
        );
    }
    let bucket = s3.bucket().await;
    let client = common::client(&s3).await;
    s3.put(&bucket, "moving.bin", random_bytes(MIB, 13)).await;
    // No ETag from an event: the first response's pins the chunks after it.
    let obj = ObjectRef::new(&bucket, "moving.bin");
    let ahead = ReadAhead {
        chunk: 64 * 1024,
        ahead: 1,
    };
    let mut r = open_ahead(&client, &obj, Compression::None, None, ahead)
        .await
        .expect("open");
    let mut first = vec![0u8; 64 * 1024];
    r.read_exact(&mut first).await.expect("first chunk");
    // Replaced while the reader is inside the object: the third chunk is asked for after.
    s3.put(&bucket, "moving.bin", random_bytes(MIB, 14)).await;
    let err = read_unevenly(&mut r)
        .await
        .expect_err("old and new bytes never mix");
    let err = Error::read(&obj, err);
    assert_eq!(err.error_type(), "PreconditionFailed", "{err}");
    assert!(err.to_string().contains("moving.bin"), "{err}");
}
