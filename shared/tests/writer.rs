//! The streaming writer against a real S3 endpoint (embedded s3s-fs, or `TEST_S3_ENDPOINT`).

mod common;

use std::time::Duration;

use sha2::{Digest, Sha256};
use tributary::checksum::ChecksumAlgorithm;
use tributary::{Error, S3Writer, WriterConfig};
use tributary_testkit::data::{MIB, random_bytes, sha256_hex};
use tributary_testkit::s3::eventually;
use tributary_testkit::{Action, Calls, Op, TestS3};

fn small_parts() -> WriterConfig {
    WriterConfig {
        part_size: 5 * MIB,
        concurrency: 4,
        retry_base_delay: Duration::from_millis(10),
        ..Default::default()
    }
}

/// Streams `len` deterministic bytes through a writer in uneven chunks; returns the digest.
async fn write_stream(writer: &mut S3Writer, len: usize, seed: u64) -> String {
    let mut hasher = Sha256::new();
    let mut left = len;
    let mut i = 0u64;
    while left > 0 {
        // Uneven chunk sizes exercise the part cutting at every offset.
        let n = left.min(MIB - 7 * (i as usize % 13) * 1024);
        let chunk = random_bytes(n, seed ^ i);
        hasher.update(&chunk);
        writer.write(&chunk).await.expect("write");
        left -= n;
        i += 1;
    }
    hex::encode(hasher.finalize())
}

async fn stored_digest(s3: &TestS3, bucket: &str, key: &str) -> String {
    s3.sha256(bucket, key).await
}

async fn assert_nothing_left(s3: &TestS3, bucket: &str, key: &str) {
    let clean = eventually(Duration::from_secs(5), || async {
        s3.open_uploads(bucket).await.is_empty()
    })
    .await;
    assert!(
        clean,
        "multipart uploads left behind: {:?}",
        s3.open_uploads(bucket).await
    );
    assert!(!s3.exists(bucket, key).await, "object {key} must not exist");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sizes_round_trip_with_single_put_or_multipart() {
    let s3 = TestS3::start().await;
    let client = common::client(&s3).await;
    let bucket = s3.bucket().await;
    // (bytes, expected parts)
    let cases = [
        (0, 1),
        (1, 1),
        (5 * MIB - 1, 1),
        (5 * MIB, 1),
        (5 * MIB + 1, 2),
        (17 * MIB + 3, 4),
    ];
    for (len, parts) in cases {
        let key = format!("sizes/{len}.bin");
        let mut w = S3Writer::new(client.clone(), &bucket, &key, small_parts());
        let digest = write_stream(&mut w, len, len as u64).await;
        let out = w.finish().await.expect("finish");
        assert_eq!(out.bytes, len as u64, "{key}");
        assert_eq!(out.parts, parts, "{key}");
        assert_eq!(stored_digest(&s3, &bucket, &key).await, digest, "{key}");
        assert_eq!(out.checksum.algorithm, "CRC64NVME");
    }
    // The full-object checksum is the CRC of the whole content, however it was cut.
    let data = random_bytes(11 * MIB, 42);
    let mut w = S3Writer::new(client.clone(), &bucket, "crc.bin", small_parts());
    w.write(&data).await.expect("write");
    let out = w.finish().await.expect("finish");
    let alg = ChecksumAlgorithm::Crc64Nvme;
    assert_eq!(out.checksum.value, alg.encode(alg.checksum(&data)));
    assert_eq!(out.parts, 3);
    assert!(s3.open_uploads(&bucket).await.is_empty());
    eprintln!("sizes round trip on {}", s3.kind());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crc32c_full_object_checksum_is_supported() {
    let s3 = TestS3::start().await;
    let client = common::client(&s3).await;
    let bucket = s3.bucket().await;
    let data = random_bytes(6 * MIB, 7);
    let cfg = WriterConfig {
        checksum: ChecksumAlgorithm::Crc32c,
        ..small_parts()
    };
    let mut w = S3Writer::new(client, &bucket, "c.bin", cfg);
    w.write(&data).await.expect("write");
    let out = w.finish().await.expect("finish");
    let alg = ChecksumAlgorithm::Crc32c;
    assert_eq!(out.checksum.algorithm, "CRC32C");
    assert_eq!(out.checksum.value, alg.encode(alg.checksum(&data)));
    assert_eq!(
        sha256_hex(&s3.get(&bucket, "c.bin").await),
        sha256_hex(&data)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_mib_with_concurrent_parts_stays_within_the_memory_budget() {
    let s3 = TestS3::start().await;
    let client = common::client(&s3).await;
    let bucket = s3.bucket().await;
    let cfg = small_parts();
    let budget = cfg.budget();
    let mut w = S3Writer::new(client, &bucket, "big/100mib.bin", cfg);
    let digest = write_stream(&mut w, 100 * MIB, 100).await;
    let peak = w.peak_bytes_held();
    let out = w.finish().await.expect("finish");
    assert_eq!(out.parts, 20);
    assert_eq!(out.bytes, 100 * MIB as u64);
    assert_eq!(stored_digest(&s3, &bucket, "big/100mib.bin").await, digest);
    eprintln!(
        "100 MiB written: peak held {:.1} MiB, budget {:.1} MiB ({})",
        peak as f64 / MIB as f64,
        budget as f64 / MIB as f64,
        s3.kind()
    );
    assert!(peak <= budget, "peak {peak} over budget {budget}");
    assert!(peak > 5 * MIB, "parts should overlap: peak {peak}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_part_failing_twice_then_succeeding_still_completes() {
    let s3 = TestS3::start().await;
    let Some(faults) = s3.faults() else {
        return common::skip(
            "part_failing_twice",
            "needs fault injection (embedded server)",
        );
    };
    let client = common::client(&s3).await;
    let bucket = s3.bucket().await;
    // The second UploadPart call fails, and so does its first retry.
    faults.add(
        Op::UploadPart,
        Calls::Range { from: 2, count: 2 },
        Action::slow_down(),
    );
    let mut w = S3Writer::new(client, &bucket, "retry.bin", small_parts());
    let digest = write_stream(&mut w, 16 * MIB, 3).await;
    let out = w.finish().await.expect("finish despite two failures");
    assert_eq!(faults.injected(), 2);
    assert_eq!(faults.calls(Op::UploadPart), 4 + 2);
    assert_eq!(out.parts, 4);
    assert_eq!(stored_digest(&s3, &bucket, "retry.bin").await, digest);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_resets_and_500s_are_retried() {
    let s3 = TestS3::start().await;
    let Some(faults) = s3.faults() else {
        return common::skip(
            "connection_resets",
            "needs fault injection (embedded server)",
        );
    };
    let client = common::client(&s3).await;
    let bucket = s3.bucket().await;
    faults.add(Op::UploadPart, Calls::Nth(1), Action::Reset);
    faults.add(Op::UploadPart, Calls::Nth(3), Action::internal_error());
    faults.add(
        Op::CompleteMultipartUpload,
        Calls::Nth(1),
        Action::slow_down(),
    );
    let mut w = S3Writer::new(client, &bucket, "reset.bin", small_parts());
    let digest = write_stream(&mut w, 11 * MIB, 9).await;
    w.finish().await.expect("finish");
    assert_eq!(faults.injected(), 3);
    assert_eq!(stored_digest(&s3, &bucket, "reset.bin").await, digest);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_part_failing_every_time_aborts_and_leaves_nothing() {
    let s3 = TestS3::start().await;
    let Some(faults) = s3.faults() else {
        return common::skip(
            "part_failing_every_time",
            "needs fault injection (embedded server)",
        );
    };
    let client = common::client(&s3).await;
    let bucket = s3.bucket().await;
    faults.add(Op::UploadPart, Calls::From(2), Action::internal_error());
    let mut w = S3Writer::new(client, &bucket, "doomed.bin", small_parts());
    let mut result: Result<(), Error> = Ok(());
    for i in 0..30u64 {
        if let Err(e) = w.write(&random_bytes(MIB, i)).await {
            result = Err(e);
            break;
        }
    }
    let err = match result {
        Err(e) => e,
        Ok(()) => w.finish().await.expect_err("every retry fails"),
    };
    // A 500 can pass: the errorType says retrying can help.
    assert_eq!(err.error_type(), "S3Unavailable", "{err}");
    assert!(err.to_string().contains("UploadPart"), "{err}");
    assert!(err.to_string().contains("doomed.bin"), "{err}");
    assert!(faults.calls(Op::AbortMultipartUpload) >= 1);
    assert_nothing_left(&s3, &bucket, "doomed.bin").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_error_is_not_retried() {
    let s3 = TestS3::start().await;
    let Some(faults) = s3.faults() else {
        return common::skip("permanent_error", "needs fault injection (embedded server)");
    };
    let client = common::client(&s3).await;
    let bucket = s3.bucket().await;
    faults.add(
        Op::UploadPart,
        Calls::From(1),
        Action::Status(403, "AccessDenied"),
    );
    let mut w = S3Writer::new(client, &bucket, "denied.bin", small_parts());
    let _ = w.write(&random_bytes(6 * MIB, 1)).await;
    let err = w.finish().await.expect_err("access denied");
    assert!(err.to_string().contains("AccessDenied"), "{err}");
    // At most one call per part (the second part may not even start): no retry.
    let calls = faults.calls(Op::UploadPart);
    assert!(
        (1..=2).contains(&calls),
        "{calls} UploadPart calls for 2 parts"
    );
    assert_nothing_left(&s3, &bucket, "denied.bin").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_complete_aborts_the_upload() {
    let s3 = TestS3::start().await;
    let Some(faults) = s3.faults() else {
        return common::skip("failed_complete", "needs fault injection (embedded server)");
    };
    let client = common::client(&s3).await;
    let bucket = s3.bucket().await;
    faults.add(
        Op::CompleteMultipartUpload,
        Calls::From(1),
        Action::Status(400, "InvalidPart"),
    );
    let mut w = S3Writer::new(client, &bucket, "incomplete.bin", small_parts());
    w.write(&random_bytes(7 * MIB, 5)).await.expect("write");
    let err = w.finish().await.expect_err("complete refused");
    assert!(err.to_string().contains("CompleteMultipartUpload"), "{err}");
    assert_nothing_left(&s3, &bucket, "incomplete.bin").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_dropped_unfinished_leaves_no_object_and_no_upload() {
    let s3 = TestS3::start().await;
    let client = common::client(&s3).await;
    let bucket = s3.bucket().await;
    {
        let mut w = S3Writer::new(client.clone(), &bucket, "dropped.bin", small_parts());
        w.write(&random_bytes(12 * MIB, 8)).await.expect("write");
        assert!(
            w.upload_id().is_some(),
            "a multipart upload must be open by now"
        );
        // Dropped here without finish().
    }
    assert_nothing_left(&s3, &bucket, "dropped.bin").await;

    // An explicit abort does the same, synchronously.
    let mut w = S3Writer::new(client, &bucket, "aborted.bin", small_parts());
    w.write(&random_bytes(12 * MIB, 9)).await.expect("write");
    w.abort().await.expect("abort");
    assert!(s3.open_uploads(&bucket).await.is_empty());
    assert!(!s3.exists(&bucket, "aborted.bin").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn if_none_match_refuses_to_overwrite() {
    let s3 = TestS3::start().await;
    let client = common::client(&s3).await;
    let bucket = s3.bucket().await;
    s3.put(&bucket, "exists.bin", b"old".to_vec()).await;
    for len in [10, 6 * MIB] {
        let cfg = WriterConfig {
            if_none_match: true,
            ..small_parts()
        };
        let mut w = S3Writer::new(client.clone(), &bucket, "exists.bin", cfg);
        w.write(&random_bytes(len, 1)).await.expect("write");
        let err = w.finish().await.expect_err("must not overwrite");
        assert_eq!(err.error_type(), "PreconditionFailed", "{len}: {err}");
        assert_eq!(s3.get(&bucket, "exists.bin").await, b"old");
    }
    assert!(
        eventually(Duration::from_secs(5), || async {
            s3.open_uploads(&bucket).await.is_empty()
        })
        .await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_failure_is_reported_and_leaves_nothing() {
    let s3 = TestS3::start().await;
    let Some(faults) = s3.faults() else {
        return common::skip("create_failure", "needs fault injection (embedded server)");
    };
    let client = common::client(&s3).await;
    let bucket = s3.bucket().await;
    faults.add(
        Op::CreateMultipartUpload,
        Calls::From(1),
        Action::Status(403, "AccessDenied"),
    );
    let mut w = S3Writer::new(client, &bucket, "nocreate.bin", small_parts());
    let err = w
        .write(&random_bytes(11 * MIB, 2))
        .await
        .expect_err("create refused");
    assert!(err.to_string().contains("CreateMultipartUpload"), "{err}");
    assert!(
        w.write(b"more").await.is_err(),
        "a failed writer stays failed"
    );
    assert_nothing_left(&s3, &bucket, "nocreate.bin").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sealed_uploads_appear_only_when_completed() {
    let s3 = TestS3::start().await;
    let client = common::client(&s3).await;
    let bucket = s3.bucket().await;
    // A small object (would have been one PutObject) and a multipart one with a short tail.
    let mut small = S3Writer::new(client.clone(), &bucket, "sealed/small", small_parts());
    let small_digest = write_stream(&mut small, 1000, 1).await;
    let mut big = S3Writer::new(client.clone(), &bucket, "sealed/big", small_parts());
    let big_digest = write_stream(&mut big, 11 * MIB + 5, 2).await;
    let small = small.seal().await.expect("seal small");
    let big = big.seal().await.expect("seal big");
    assert_eq!((small.key(), small.bytes()), ("sealed/small", 1000));
    assert!(!s3.exists(&bucket, "sealed/small").await);
    assert!(!s3.exists(&bucket, "sealed/big").await);
    assert_eq!(s3.open_uploads(&bucket).await.len(), 2);
    let out = big.complete().await.expect("complete big");
    assert_eq!((out.bytes, out.parts), (11 * MIB as u64 + 5, 3));
    assert_eq!(stored_digest(&s3, &bucket, "sealed/big").await, big_digest);
    small.complete().await.expect("complete small");
    assert_eq!(
        stored_digest(&s3, &bucket, "sealed/small").await,
        small_digest
    );
    assert!(s3.open_uploads(&bucket).await.is_empty());

    // Aborted, or dropped: nothing appears, nothing is left open.
    let mut w = S3Writer::new(client.clone(), &bucket, "sealed/aborted", small_parts());
    write_stream(&mut w, 6 * MIB, 3).await;
    w.seal().await.expect("seal").abort().await.expect("abort");
    assert_nothing_left(&s3, &bucket, "sealed/aborted").await;
    let mut w = S3Writer::new(client.clone(), &bucket, "sealed/dropped", small_parts());
    write_stream(&mut w, 100, 4).await;
    drop(w.seal().await.expect("seal"));
    assert_nothing_left(&s3, &bucket, "sealed/dropped").await;
}
