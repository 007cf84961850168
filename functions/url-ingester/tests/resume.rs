//! Resuming from a checkpoint: every field is checked before any byte moves, a bad one is
//! refused with `InvalidInput` naming it, and no checkpoint, however mangled, completes an
//! object whose bytes differ from the source. Runs on the embedded server and, with
//! `TEST_S3_ENDPOINT`, on another store.

use std::time::{Duration, SystemTime};

use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestCaseError, TestRunner};
use tributary::Error;
use tributary::writer::{S3Writer, WriterConfig, abort_upload};
use tributary_testkit::Resource;
use tributary_testkit::data::{MIB, random_bytes, sha256_hex};
use url_ingester::checkpoint::{Checkpoint, ResumableSha256, VERSION};
use url_ingester::{IngestRequest, IngestResponse};

mod common;
use common::World;

/// Part size of every upload here (the smallest S3 allows).
const PART: usize = 5 * MIB;

impl World {
    /// Serves `body` at `path` and returns the resource's ETag.
    fn serve(&self, path: &str, body: &[u8]) -> Option<String> {
        let res = Resource::new(body.to_vec());
        let etag = res.etag.clone();
        self.http.serve(path, res);
        etag
    }

    /// A checkpoint as the ingester writes one: the first `parts` parts of `body` uploaded
    /// (by the same writer, with the ingester's part size and size hint) and the hash of
    /// those bytes; the upload stays open.
    async fn checkpoint(&self, path: &str, key: &str, body: &[u8], parts: usize) -> Checkpoint {
        let etag = self.serve(path, body);
        let cfg = WriterConfig {
            part_size: PART,
            concurrency: 3,
            size_hint: Some(body.len() as u64),
            ..WriterConfig::default()
        };
        let mut writer = S3Writer::new(self.client.clone(), &self.bucket, key, cfg);
        let covered = parts * PART;
        writer.write(&body[..covered]).await.expect("write parts");
        let upload = writer.checkpoint().await.expect("checkpoint");
        assert_eq!(upload.bytes, covered as u64);
        assert_eq!(upload.parts.len(), parts);
        let mut hash = ResumableSha256::default();
        hash.update(&body[..covered]);
        Checkpoint {
            version: VERSION,
            url: self.http.url(path),
            bucket: self.bucket.clone(),
            key: key.to_owned(),
            upload,
            source_etag: etag,
            source_last_modified: None,
            total_bytes: Some(body.len() as u64),
            sha256_state: hash.save(),
            invocations: 1,
            elapsed_ms: 1000,
        }
    }

    fn request(&self, cp: &Checkpoint, path: &str) -> IngestRequest {
        IngestRequest {
            url: self.http.url(path),
            key: Some(cp.key.clone()),
            resume: Some(cp.clone()),
            ..IngestRequest::default()
        }
    }

    /// Aborts the checkpoint's upload if it is still open.
    async fn abort(&self, cp: &Checkpoint) {
        if let Some(id) = &cp.upload.upload_id {
            abort_upload(&self.client, &self.bucket, &cp.key, id)
                .await
                .expect("abort");
        }
    }
}

/// A change made to a checkpoint.
type Mutate = Box<dyn Fn(&mut Checkpoint)>;

/// The error must be `InvalidInput` naming `field`, and the object must not exist.
async fn assert_refused(w: &World, key: &str, result: Result<IngestResponse, Error>, field: &str) {
    let err = match result {
        Ok(IngestResponse::Complete(c)) => panic!(
            "{field}: completed {} bytes (sha256 {}) instead of refusing",
            c.bytes, c.sha256
        ),
        Ok(IngestResponse::Incomplete(i)) => {
            panic!("{field}: stopped at {} bytes instead of refusing", i.bytes)
        }
        Err(e) => e,
    };
    assert_eq!(err.error_type(), "InvalidInput", "{field}: {err}");
    assert!(
        err.to_string().contains(field),
        "the error names {field}: {err}"
    );
    assert!(!w.s3.exists(&w.bucket, key).await, "{key} must not exist");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_without_an_upload_id_is_refused() {
    let w = World::new().await;
    let ing = w.ingester(&[]);
    let body = random_bytes(2 * PART + 1000, 31);
    let cp = w.checkpoint("/noid.bin", "raw/noid.bin", &body, 2).await;
    let mut bad = cp.clone();
    bad.upload.upload_id = None;
    let res = ing.run(w.request(&bad, "/noid.bin"), None, None).await;
    assert_refused(&w, "raw/noid.bin", res, "resume.upload.upload_id").await;
    // Nothing moved: no download started, the real upload is untouched and still resumable.
    assert!(
        w.http.requests().is_empty(),
        "no request reached the source"
    );
    let out = ing
        .run(w.request(&cp, "/noid.bin"), None, None)
        .await
        .expect("the intact checkpoint resumes");
    let IngestResponse::Complete(out) = out else {
        panic!("expected complete");
    };
    assert_eq!(out.sha256, sha256_hex(&body));
    assert_eq!(
        w.s3.sha256(&w.bucket, "raw/noid.bin").await,
        sha256_hex(&body)
    );
    w.assert_no_uploads_left().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_whose_bytes_differ_from_its_parts_is_refused() {
    let w = World::new().await;
    let ing = w.ingester(&[]);
    let body = random_bytes(3 * PART + 7, 32);
    let cp = w.checkpoint("/sum.bin", "raw/sum.bin", &body, 2).await;
    let cases: Vec<(&str, Mutate)> = vec![
        (
            "resume.upload.bytes",
            Box::new(|c: &mut Checkpoint| c.upload.bytes += PART as u64),
        ),
        (
            "resume.upload.bytes",
            Box::new(|c: &mut Checkpoint| c.upload.bytes -= 1),
        ),
        (
            "resume.upload.parts[1].len",
            Box::new(|c: &mut Checkpoint| {
                c.upload.parts[1].len -= 1;
                c.upload.bytes -= 1;
            }),
        ),
        (
            "resume.upload.parts[1].number",
            Box::new(|c: &mut Checkpoint| c.upload.parts[1].number = 3),
        ),
        (
            "resume.upload.parts[0].number",
            Box::new(|c: &mut Checkpoint| c.upload.parts.swap(0, 1)),
        ),
        (
            "resume.upload.part_size",
            Box::new(|c: &mut Checkpoint| c.upload.part_size *= 2),
        ),
        (
            "resume.upload.bytes",
            Box::new(|c: &mut Checkpoint| {
                c.upload.parts.clear();
                c.upload.upload_id = None;
            }),
        ),
        (
            "resume.total_bytes",
            Box::new(|c: &mut Checkpoint| c.total_bytes = Some(PART as u64)),
        ),
    ];
    for (field, mutate) in cases {
        let mut bad = cp.clone();
        mutate(&mut bad);
        let res = ing.run(w.request(&bad, "/sum.bin"), None, None).await;
        assert_refused(&w, "raw/sum.bin", res, field).await;
    }
    assert!(
        w.http.requests().is_empty(),
        "no request reached the source"
    );
    w.abort(&cp).await;
    w.assert_no_uploads_left().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hash_state_at_another_offset_is_refused() {
    let w = World::new().await;
    let ing = w.ingester(&[]);
    let body = random_bytes(2 * PART + 99, 33);
    let cp = w.checkpoint("/hash.bin", "raw/hash.bin", &body, 2).await;
    for len in [0, PART, 2 * PART - 1, 2 * PART + 1] {
        let mut hash = ResumableSha256::default();
        hash.update(&body[..len]);
        let mut bad = cp.clone();
        bad.sha256_state = hash.save();
        let res = ing.run(w.request(&bad, "/hash.bin"), None, None).await;
        assert_refused(&w, "raw/hash.bin", res, "resume.sha256_state").await;
    }
    let mut bad = cp.clone();
    bad.sha256_state = "bm90IGEgaGFzaA==".into();
    let res = ing.run(w.request(&bad, "/hash.bin"), None, None).await;
    assert_refused(&w, "raw/hash.bin", res, "resume.sha256_state").await;
    w.abort(&cp).await;
    w.assert_no_uploads_left().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_whose_upload_is_gone_is_refused() {
    let w = World::new().await;
    let ing = w.ingester(&[]);
    let body = random_bytes(2 * PART + 5, 34);
    let cp = w.checkpoint("/gone.bin", "raw/gone.bin", &body, 1).await;
    w.abort(&cp).await;
    let res = ing.run(w.request(&cp, "/gone.bin"), None, None).await;
    assert_refused(&w, "raw/gone.bin", res, "resume.upload.upload_id").await;
    let mut other = cp.clone();
    other.upload.upload_id = Some("00000000-0000-4000-8000-000000000000".into());
    let res = ing.run(w.request(&other, "/gone.bin"), None, None).await;
    assert_refused(&w, "raw/gone.bin", res, "resume.upload.upload_id").await;
    assert!(
        w.http.requests().is_empty(),
        "no request reached the source"
    );
    w.assert_no_uploads_left().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_early_stop_right_after_a_resume_does_not_underflow() {
    let w = World::new().await;
    let ing = w.ingester(&[("DEADLINE_MARGIN_SECS", "60")]);
    let body = random_bytes(3 * PART + 3, 35);
    let cp = w.checkpoint("/early.bin", "raw/early.bin", &body, 2).await;
    // The deadline is already inside the margin: the leg stops before reading anything.
    let deadline = Some(SystemTime::now() + Duration::from_secs(5));
    let mut bad = cp.clone();
    bad.upload.upload_id = None;
    let res = ing.run(w.request(&bad, "/early.bin"), deadline, None).await;
    assert_refused(&w, "raw/early.bin", res, "resume.upload.upload_id").await;
    // A sound checkpoint stops where it started, with the same upload.
    let out = ing
        .run(w.request(&cp, "/early.bin"), deadline, None)
        .await
        .expect("early stop");
    let IngestResponse::Incomplete(inc) = out else {
        panic!("expected a checkpoint");
    };
    assert_eq!(inc.bytes, cp.upload.bytes);
    assert_eq!(inc.checkpoint.upload, cp.upload);
    assert_eq!(inc.checkpoint.sha256_state, cp.sha256_state);
    assert_eq!(inc.checkpoint.invocations, 2);
    w.abort(&cp).await;
    w.assert_no_uploads_left().await;
}

/// One way to spoil a checkpoint.
#[derive(Debug, Clone)]
enum Mutation {
    DropUploadId,
    UploadId(String),
    Bytes(i64),
    PartLen(usize, i64),
    PartNumber(usize, i32),
    DropPart(usize),
    DuplicatePart(usize),
    SwapParts(usize, usize),
    PartEtag(usize, String),
    PartCrc(usize, u64),
    PartSize(i64),
    TotalBytes(Option<u64>),
    HashAt(usize),
    HashGarbage(Vec<u8>),
    SourceEtag(Option<String>),
    NoValidators,
    Invocations(u32),
    ElapsedMs(u64),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let delta = prop_oneof![
        Just(1i64),
        Just(-1),
        Just(PART as i64),
        Just(-(PART as i64)),
        -3_000_000i64..3_000_000
    ];
    prop_oneof![
        Just(Mutation::DropUploadId),
        "[a-zA-Z0-9-]{0,40}".prop_map(Mutation::UploadId),
        delta.clone().prop_map(Mutation::Bytes),
        (0usize..3, delta.clone()).prop_map(|(i, d)| Mutation::PartLen(i, d)),
        (0usize..3, -2i32..5).prop_map(|(i, n)| Mutation::PartNumber(i, n)),
        (0usize..3).prop_map(Mutation::DropPart),
        (0usize..3).prop_map(Mutation::DuplicatePart),
        (0usize..3, 0usize..3).prop_map(|(a, b)| Mutation::SwapParts(a, b)),
        (0usize..3, "[0-9a-f]{0,32}").prop_map(|(i, e)| Mutation::PartEtag(i, e)),
        (0usize..3, any::<u64>()).prop_map(|(i, c)| Mutation::PartCrc(i, c)),
        delta.prop_map(Mutation::PartSize),
        proptest::option::of(0u64..(4 * PART as u64)).prop_map(Mutation::TotalBytes),
        (0usize..(3 * PART)).prop_map(Mutation::HashAt),
        proptest::collection::vec(any::<u8>(), 0..120).prop_map(Mutation::HashGarbage),
        proptest::option::of("\"[a-z0-9-]{0,12}\"").prop_map(Mutation::SourceEtag),
        Just(Mutation::NoValidators),
        any::<u32>().prop_map(Mutation::Invocations),
        any::<u64>().prop_map(Mutation::ElapsedMs),
    ]
}

fn apply(cp: &mut Checkpoint, m: &Mutation, body: &[u8]) {
    use base64::Engine as _;
    let add = |v: u64, d: i64| v.saturating_add_signed(d);
    let parts = &mut cp.upload.parts;
    let n = parts.len();
    match m {
        Mutation::DropUploadId => cp.upload.upload_id = None,
        Mutation::UploadId(id) => cp.upload.upload_id = Some(id.clone()),
        Mutation::Bytes(d) => cp.upload.bytes = add(cp.upload.bytes, *d),
        Mutation::PartLen(i, d) if *i < n => parts[*i].len = add(parts[*i].len, *d),
        Mutation::PartNumber(i, v) if *i < n => parts[*i].number = *v,
        Mutation::DropPart(i) if *i < n => {
            parts.remove(*i);
        }
        Mutation::DuplicatePart(i) if *i < n => {
            let p = parts[*i].clone();
            parts.insert(*i, p);
        }
        Mutation::SwapParts(a, b) if *a < n && *b < n => parts.swap(*a, *b),
        Mutation::PartEtag(i, e) if *i < n => parts[*i].etag = e.clone(),
        Mutation::PartCrc(i, c) if *i < n => parts[*i].crc = *c,
        Mutation::PartSize(d) => {
            cp.upload.part_size = (cp.upload.part_size as u64).saturating_add_signed(*d) as usize
        }
        Mutation::TotalBytes(t) => cp.total_bytes = *t,
        Mutation::HashAt(len) => {
            let mut h = ResumableSha256::default();
            h.update(&body[..(*len).min(body.len())]);
            cp.sha256_state = h.save();
        }
        Mutation::HashGarbage(raw) => {
            cp.sha256_state = base64::engine::general_purpose::STANDARD.encode(raw)
        }
        Mutation::SourceEtag(e) => cp.source_etag = e.clone(),
        Mutation::NoValidators => {
            cp.source_etag = None;
            cp.source_last_modified = None;
        }
        Mutation::Invocations(v) => cp.invocations = *v,
        Mutation::ElapsedMs(v) => cp.elapsed_ms = *v,
        _ => {}
    }
}

/// Whatever is done to a sound checkpoint, a `complete` answer means the stored object is the
/// source, byte for byte; anything else must be an error that leaves no object behind.
#[test]
fn mutated_checkpoints_never_complete_with_wrong_bytes() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let w = rt.block_on(World::new());
    let ing = w.ingester(&[]);
    let body = random_bytes(2 * PART + 300_000, 36);
    let digest = sha256_hex(&body);
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(24);
    let mut runner = TestRunner::new(ProptestConfig {
        cases,
        max_shrink_iters: 32,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let seq = std::sync::atomic::AtomicU32::new(0);
    let strategy = proptest::collection::vec(mutation(), 1..4);
    let result = runner.run(&strategy, |mutations| {
        rt.block_on(async {
            let n = seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let (path, key) = (format!("/p{n}.bin"), format!("raw/p{n}.bin"));
            let sound = w.checkpoint(&path, &key, &body, 2).await;
            let mut cp = sound.clone();
            for m in &mutations {
                apply(&mut cp, m, &body);
            }
            let mut req = w.request(&cp, &path);
            // The request names the checkpoint's target, as a continuation does.
            req.key = Some(key.clone());
            let res = ing.run(req, None, None).await;
            let outcome = match &res {
                Ok(IngestResponse::Complete(c)) => {
                    let stored = w.s3.sha256(&w.bucket, &key).await;
                    prop_assert_eq!(
                        &stored,
                        &digest,
                        "completed with other bytes after {:?}",
                        mutations
                    );
                    prop_assert_eq!(c.bytes, body.len() as u64);
                    Ok(())
                }
                Ok(IngestResponse::Incomplete(i)) => Err(TestCaseError::fail(format!(
                    "incomplete at {} without a deadline after {mutations:?}",
                    i.bytes
                ))),
                Err(_) => {
                    prop_assert!(
                        !w.s3.exists(&w.bucket, &key).await,
                        "an error left {} after {:?}",
                        key,
                        mutations
                    );
                    Ok(())
                }
            };
            // A refused checkpoint leaves its upload open: close it.
            if res.is_err()
                && let Some(id) = &sound.upload.upload_id
            {
                let _ = abort_upload(&w.client, &w.bucket, &key, id).await;
            }
            outcome
        })
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    rt.block_on(w.assert_no_uploads_left());
}
