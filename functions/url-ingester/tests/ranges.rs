//! Ranged ingestion through the real handler: the test stands in for the Step Functions Map
//! (plan -> the plan's items run concurrently -> commit, or the Catch's abort), nothing else.
//! The source is the harness's HTTP server on 127.0.0.1, the sink a real S3 endpoint (embedded
//! s3s-fs, or `TEST_S3_ENDPOINT`). After every failure no object and no upload is left.
//!
//! `TRIBUTARY_RANGED_BYTES` sets the size of the main case (default 64 MiB less a little, so
//! the last part is short); the source is generated on the fly, never held whole, so
//! `TRIBUTARY_RANGED_BYTES=1073741824 cargo test --release -p url-ingester --test ranges` is
//! the 1 GiB by 8 children.

use std::io::Write as _;
use std::time::Instant;

use lambda_runtime::{Context, LambdaEvent};
use serde_json::{Value, json};
use tributary::Error;
use tributary_testkit::data::MIB;
use tributary_testkit::http::Generated;
use tributary_testkit::{Action, Calls, HttpFault, Op, Resource};
use url_ingester::ranged::{PlanAnswer, RangeAnswer};
use url_ingester::{Answer, Completed, Ingester};

mod common;
use common::World;

const PLAN_SAMPLE: &str = include_str!("../../../events/url-ingester/plan-ranges.json");

async fn call(ing: &Ingester, payload: Value) -> Result<Answer, Error> {
    ing.dispatch(LambdaEvent::new(payload, Context::default()))
        .await
}

async fn plan(ing: &Ingester, payload: Value) -> PlanAnswer {
    match call(ing, payload).await.expect("plan") {
        Answer::Planned(p) => p,
        other => panic!("not a plan: {other:?}"),
    }
}

/// The Map: every item at once, each through the handler; the answers (as JSON, as Step
/// Functions passes them on) or the errors, in item order.
async fn run_items(ing: &Ingester, items: &[Value]) -> Vec<Result<Value, Error>> {
    let tasks: Vec<_> = items
        .iter()
        .cloned()
        .map(|item| {
            let ing = ing.clone();
            tokio::spawn(async move { call(&ing, item).await })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        let answer = t.await.expect("child task");
        out.push(answer.map(|a| serde_json::to_value(a).expect("answer JSON")));
    }
    out
}

fn commit_of(p: &PlanAnswer) -> Value {
    serde_json::to_value(p.commit.as_ref().expect("a ranged plan has a commit")).expect("JSON")
}

fn complete(a: Answer) -> Completed {
    match a {
        Answer::Complete(c) => c,
        other => panic!("not complete: {other:?}"),
    }
}

/// As Step Functions' Catch passes a failure on.
fn failure(e: &Error) -> Value {
    json!({"Error": e.error_type(),
        "Cause": json!({"errorType": e.error_type(), "errorMessage": e.to_string()}).to_string()})
}

impl World {
    fn plan_request(&self, path: &str, key: &str, ranges: u32, part_mib: u64) -> Value {
        json!({"mode": "plan", "url": self.http.url(path), "key": key, "ranges": ranges,
            "part_size_mib": part_mib})
    }

    async fn assert_nothing_left(&self, key: &str) {
        self.assert_no_uploads_left().await;
        assert!(
            !self.s3.exists(&self.bucket, key).await,
            "{key} must not exist"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranged_ingestion_by_8_children_gives_the_sources_sha256() {
    let len: u64 = std::env::var("TRIBUTARY_RANGED_BYTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64 * MIB as u64 - 12_345);
    let part_mib = if len >= 512 * MIB as u64 { 16 } else { 5 };
    let w = World::new().await;
    let ing = w.ingester(&[]);
    let source = Generated {
        len,
        seed: 0x7269_6275,
    };
    let sha = tokio::task::spawn_blocking(move || source.sha256())
        .await
        .expect("hash");
    w.http
        .serve("/big/source.bin", Resource::generated(len, source.seed));
    let key = "raw/big/source.bin";

    let started = Instant::now();
    let mut req = w.plan_request("/big/source.bin", key, 8, part_mib);
    req["expected_sha256"] = Value::from(sha.clone());
    req["expected_size"] = Value::from(len);
    req["concurrency"] = Value::from(2);
    let p = plan(&ing, req).await;
    assert!(p.ranged, "{:?}", p.reason);
    assert_eq!(p.items.len(), 8);
    assert_eq!(p.total_bytes, Some(len));
    let part_size = part_mib * MIB as u64;
    assert_eq!(p.parts, Some(len.div_ceil(part_size) as u32));
    for (i, item) in p.items.iter().enumerate() {
        assert_eq!(item["mode"], "range", "{item}");
        assert_eq!(item["index"], i as u64);
        assert_eq!(item["upload_id"], Value::from(p.upload_id.clone()));
        assert_eq!(item["part_size"], part_size);
    }
    // The probe asked for one byte, and the plan wrote nothing visible yet.
    let probe = &w.http.requests()[0];
    assert_eq!(
        probe.headers.get("range").map(String::as_str),
        Some("bytes=0-0")
    );
    assert!(!w.s3.exists(&w.bucket, key).await);
    let planned = started.elapsed();

    let results = run_items(&ing, &p.items).await;
    let ranges_took = started.elapsed() - planned;
    let answers: Vec<Value> = results
        .into_iter()
        .map(|r| r.expect("every range uploads"))
        .collect();
    let mut covered = 0;
    for a in &answers {
        let r: Answer = serde_json::from_value(a.clone()).expect("answer");
        let Answer::RangeDone(r) = r else {
            panic!("not a range answer: {a}")
        };
        covered += r.bytes;
    }
    assert_eq!(covered, len);
    // Every child read its own range pinned to the plan's ETag.
    let ranged: Vec<_> = w
        .http
        .requests()
        .into_iter()
        .skip(1)
        .filter(|r| r.headers.contains_key("if-match"))
        .collect();
    assert_eq!(ranged.len(), 8, "one pinned request per range");
    assert!(
        ranged
            .iter()
            .all(|r| r.headers.get("if-range") == r.headers.get("if-match"))
    );

    let done = complete(
        call(
            &ing,
            json!({"mode": "commit", "commit": commit_of(&p), "ranges": answers}),
        )
        .await
        .expect("commit"),
    );
    let total = started.elapsed();
    assert_eq!(done.bytes, len);
    assert_eq!(done.sha256, sha, "the commit's SHA-256 is the source's");
    assert_eq!(done.parts, p.parts.unwrap_or_default());
    assert_eq!(done.checksum.algorithm, "CRC64NVME");
    assert_eq!(w.s3.sha256(&w.bucket, key).await, sha, "the object's");
    w.assert_no_uploads_left().await;
    let secs = total.as_secs_f64();
    // Straight to stderr, around the harness's capture: the run's figures.
    let _ = writeln!(
        std::io::stderr(),
        "ranged ingestion: {len} bytes, 8 ranges, {} parts of {part_mib} MiB: plan {:.2} s, ranges {:.2} s, commit {:.2} s, total {secs:.2} s, {:.1} MiB/s; SHA-256 {sha} matches",
        done.parts,
        planned.as_secs_f64(),
        ranges_took.as_secs_f64(),
        (total - planned - ranges_took).as_secs_f64(),
        len as f64 / MIB as f64 / secs
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_range_that_fails_then_the_abort_leaves_no_object_and_no_upload() {
    let w = World::new().await;
    let ing = w.ingester(&[]);
    let len = 30 * MIB as u64 + 7;
    w.http.serve("/fail.bin", Resource::generated(len, 1));
    let key = "raw/fail.bin";
    let p = plan(&ing, w.plan_request("/fail.bin", key, 3, 5)).await;
    assert_eq!(p.items.len(), 3);
    // The source fails for the second range only (the same content and ETag otherwise).
    let second = p.items[1]["start"].as_u64().expect("start");
    w.http.serve(
        "/fail.bin",
        Resource::generated(len, 1).fault(HttpFault::RangeStatus {
            start: second,
            status: 500,
        }),
    );
    let results = run_items(&ing, &p.items).await;
    assert!(results[0].is_ok() && results[2].is_ok());
    let err = results[1].as_ref().expect_err("the second range fails");
    assert_eq!(err.error_type(), "SourceUnavailable", "{err}");
    assert!(err.is_transient(), "a 500 is worth the Map's retry");
    // Parts of the other ranges are in the open upload, invisible.
    assert!(!w.s3.exists(&w.bucket, key).await);

    // The Map's retries are spent: its Catch calls the commit with abort.
    let aborted = call(
        &ing,
        json!({"mode": "commit", "commit": commit_of(&p), "abort": true, "failure": failure(err)}),
    )
    .await
    .expect("abort");
    let Answer::Aborted(a) = aborted else {
        panic!("not aborted: {aborted:?}")
    };
    assert_eq!(a.upload_id, p.upload_id);
    assert!(a.reason.contains("SourceUnavailable"), "{}", a.reason);
    assert!(a.reason.contains("HTTP 500"), "{}", a.reason);
    w.assert_nothing_left(key).await;
    // Aborting again (a retried Catch) is fine.
    let again = call(
        &ing,
        json!({"mode": "commit", "commit": commit_of(&p), "abort": true}),
    )
    .await
    .expect("abort twice");
    assert!(matches!(again, Answer::Aborted(_)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_missing_a_range_or_its_parts_aborts_the_upload() {
    let w = World::new().await;
    let ing = w.ingester(&[]);
    let len = 30 * MIB as u64;
    w.http.serve("/gap.bin", Resource::generated(len, 2));
    for (n, key) in ["raw/gap-answer.bin", "raw/gap-parts.bin"]
        .into_iter()
        .enumerate()
    {
        let p = plan(&ing, w.plan_request("/gap.bin", key, 3, 5)).await;
        // Ranges 0 and 2 run; range 1 never does.
        let done: Vec<Value> = run_items(&ing, &[p.items[0].clone(), p.items[2].clone()])
            .await
            .into_iter()
            .map(|r| r.expect("range"))
            .collect();
        let mut ranges = done.clone();
        if n == 1 {
            // An answer for range 1 whose parts never reached S3.
            let mut fake: RangeAnswer =
                serde_json::from_value(done[0].clone()).expect("range answer");
            let item = &p.items[1];
            fake.index = 1;
            fake.first_part = item["first_part"].as_u64().expect("first_part") as u32;
            fake.start = item["start"].as_u64().expect("start");
            fake.end = item["end"].as_u64().expect("end");
            fake.bytes = fake.end - fake.start + 1;
            let mut v = serde_json::to_value(Answer::RangeDone(fake)).expect("JSON");
            v["parts"] = Value::from(2);
            ranges.push(v);
        }
        let err = call(
            &ing,
            json!({"mode": "commit", "commit": commit_of(&p), "ranges": ranges}),
        )
        .await
        .expect_err("a commit with a gap fails");
        if n == 0 {
            assert_eq!(err.error_type(), "InvalidInput", "{err}");
            assert!(err.to_string().contains("no answer (1)"), "{err}");
        } else {
            assert_eq!(err.error_type(), "IntegrityError", "{err}");
            assert!(err.to_string().contains("parts are missing (3-4)"), "{err}");
        }
        assert!(err.to_string().contains("aborted"), "{err}");
        w.assert_nothing_left(key).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_commit_leaves_no_object_and_no_upload() {
    let w = World::new().await;
    let ing = w.ingester(&[]);
    let len = 20 * MIB as u64 + 3;
    w.http.serve("/commit.bin", Resource::generated(len, 3));

    // The content is not what the caller expected: found after completing, so the object is
    // deleted.
    let key = "raw/wrong-sha.bin";
    let mut req = w.plan_request("/commit.bin", key, 2, 5);
    req["expected_sha256"] = Value::from("0".repeat(64));
    let p = plan(&ing, req).await;
    let answers: Vec<Value> = run_items(&ing, &p.items)
        .await
        .into_iter()
        .map(|r| r.expect("range"))
        .collect();
    let err = call(
        &ing,
        json!({"mode": "commit", "commit": commit_of(&p), "ranges": answers}),
    )
    .await
    .expect_err("wrong SHA-256");
    assert_eq!(err.error_type(), "IntegrityError", "{err}");
    assert!(
        err.to_string().contains("expected_sha256") && err.to_string().contains("deleted"),
        "{err}"
    );
    w.assert_nothing_left(key).await;

    // S3 refuses the completion: the upload is aborted.
    let Some(faults) = w.s3.faults() else {
        tributary_testkit::skip(
            "a_failing_commit (S3 refusal)",
            "fault injection needs the embedded server",
        );
        return;
    };
    let key = "raw/refused.bin";
    let p = plan(&ing, w.plan_request("/commit.bin", key, 2, 5)).await;
    let answers: Vec<Value> = run_items(&ing, &p.items)
        .await
        .into_iter()
        .map(|r| r.expect("range"))
        .collect();
    faults.add(
        Op::CompleteMultipartUpload,
        Calls::From(1),
        Action::Status(400, "InvalidPart"),
    );
    let err = call(
        &ing,
        json!({"mode": "commit", "commit": commit_of(&p), "ranges": answers}),
    )
    .await
    .expect_err("refused");
    faults.clear();
    assert_eq!(err.error_type(), "S3Error", "{err}");
    w.assert_nothing_left(key).await;

    // S3 throttles the completion: retryable, the upload stays for the retry, which succeeds.
    let key = "raw/throttled.bin";
    let p = plan(&ing, w.plan_request("/commit.bin", key, 2, 5)).await;
    let answers: Vec<Value> = run_items(&ing, &p.items)
        .await
        .into_iter()
        .map(|r| r.expect("range"))
        .collect();
    let commit = json!({"mode": "commit", "commit": commit_of(&p), "ranges": answers});
    faults.add(
        Op::CompleteMultipartUpload,
        Calls::From(1),
        Action::slow_down(),
    );
    let err = call(&ing, commit.clone()).await.expect_err("throttled");
    faults.clear();
    assert_eq!(err.error_type(), "S3Unavailable", "{err}");
    assert!(!w.s3.exists(&w.bucket, key).await);
    let done = complete(call(&ing, commit.clone()).await.expect("the retry commits"));
    assert_eq!(done.sha256, Generated { len, seed: 3 }.sha256());
    // A commit retried after it succeeded (its answer lost) verifies and answers the same.
    let again = complete(call(&ing, commit).await.expect("a second commit"));
    assert_eq!(again.sha256, done.sha256);
    w.assert_no_uploads_left().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_without_ranges_length_or_validator_is_one_ordinary_item() {
    let w = World::new().await;
    let ing = w.ingester(&[]);
    let len = 12 * MIB as u64 + 1;
    let mut no_validator = Resource::generated(len, 4).no_etag();
    no_validator.last_modified = None;
    let cases = [
        (
            "/plain.bin",
            Resource::generated(len, 4).no_ranges(),
            "does not serve byte ranges",
        ),
        ("/bare.bin", no_validator, "no strong ETag or Last-Modified"),
        (
            "/small.bin",
            Resource::generated(3 * MIB as u64, 4),
            "make one range",
        ),
    ];
    for (path, resource, why) in cases {
        let size = resource.len();
        w.http.serve(path, resource);
        let key = format!("raw{path}");
        let p = plan(&ing, w.plan_request(path, &key, 4, 5)).await;
        assert!(!p.ranged, "{path}");
        assert!(
            p.reason.as_deref().is_some_and(|r| r.contains(why)),
            "{path}: {:?}",
            p.reason
        );
        assert!(p.commit.is_none() && p.upload_id.is_none());
        assert_eq!(p.items.len(), 1);
        let item = &p.items[0];
        assert!(item.get("mode").is_none(), "the ordinary request: {item}");
        assert_eq!(item["key"], key.as_str());
        let results = run_items(&ing, &p.items).await;
        let answers: Vec<Value> = results.into_iter().map(|r| r.expect("ingest")).collect();
        // The state machine's commit passes the one answer on.
        let done = complete(
            call(
                &ing,
                json!({"mode": "commit", "commit": null, "ranges": answers}),
            )
            .await
            .expect("commit"),
        );
        assert_eq!(done.bytes, size);
        assert_eq!(
            done.sha256,
            Generated { len: size, seed: 4 }.sha256(),
            "{path}"
        );
        w.assert_no_uploads_left().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_that_changed_since_the_plan_is_refused() {
    let w = World::new().await;
    let ing = w.ingester(&[]);
    let len = 20 * MIB as u64;
    // Pinned by its ETag (If-Match: the server answers 412), then by Last-Modified only
    // (If-Range: the server answers with the whole new resource).
    let by_etag = (
        Resource::generated(len, 5),
        Resource::generated(len, 6),
        "412",
    );
    let by_date = (
        Resource::generated(len, 5).no_etag(),
        Resource::generated(len, 6)
            .no_etag()
            .last_modified("Thu, 02 Jan 2025 00:00:00 GMT"),
        "whole resource",
    );
    for (n, (before, after, how)) in [by_etag, by_date].into_iter().enumerate() {
        let path = format!("/changing-{n}.bin");
        let key = format!("raw/changing-{n}.bin");
        w.http.serve(&path, before);
        let p = plan(&ing, w.plan_request(&path, &key, 2, 5)).await;
        assert!(p.ranged);
        w.http.serve(&path, after);
        let results = run_items(&ing, &p.items).await;
        for r in &results {
            let err = r.as_ref().expect_err("a changed source is refused");
            assert_eq!(err.error_type(), "InvalidInput", "{err}");
            let msg = err.to_string();
            assert!(
                msg.contains("changed since it was planned") && msg.contains(how),
                "{msg}"
            );
        }
        let e = results[0].as_ref().expect_err("refused");
        call(
            &ing,
            json!({"mode": "commit", "commit": commit_of(&p), "abort": true, "failure": failure(e)}),
        )
        .await
        .expect("abort");
        w.assert_nothing_left(&key).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranged_requests_pass_the_ssrf_guard_like_any_other() {
    let w = World::new().await;
    let ing = w.ingester(&[]);
    let len = 12 * MIB as u64;
    w.http.serve("/guarded.bin", Resource::generated(len, 7));
    let key = "raw/guarded.bin";
    let p = plan(&ing, w.plan_request("/guarded.bin", key, 2, 5)).await;
    let seen = w.http.requests().len();

    // A function that may not reach private addresses refuses the plan and the range alike,
    // before any request.
    let strict = w.ingester(&[("ALLOW_PRIVATE_NETWORKS", "false")]);
    let err = call(&strict, w.plan_request("/guarded.bin", key, 2, 5))
        .await
        .expect_err("plan refused");
    assert_eq!(err.error_type(), "InvalidInput", "{err}");
    assert!(err.to_string().contains("refused"), "{err}");
    let err = call(&strict, p.items[0].clone())
        .await
        .expect_err("range refused");
    assert_eq!(err.error_type(), "InvalidInput", "{err}");
    assert!(err.to_string().contains("127.0.0.1 is loopback"), "{err}");
    assert_eq!(w.http.requests().len(), seen, "nothing reached the source");

    // A range whose URL redirects to the metadata address: refused at the hop.
    w.http.redirect(
        "/to-metadata",
        302,
        "http://169.254.169.254/latest/meta-data/",
    );
    let mut item = p.items[1].clone();
    item["url"] = Value::from(w.http.url("/to-metadata"));
    let err = call(&ing, item).await.expect_err("redirect refused");
    assert_eq!(err.error_type(), "InvalidInput", "{err}");
    assert!(err.to_string().contains("redirect refused"), "{err}");

    // A child's range must be one of the plan's cuts.
    let mut item = p.items[1].clone();
    item["start"] = Value::from(item["start"].as_u64().unwrap_or(0) + 1);
    let err = call(&ing, item).await.expect_err("not whole parts");
    assert!(err.to_string().contains("range"), "{err}");

    call(
        &ing,
        json!({"mode": "commit", "commit": commit_of(&p), "abort": true}),
    )
    .await
    .expect("abort");
    w.assert_nothing_left(key).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn modes_and_their_fields_are_checked_by_name() {
    let w = World::new().await;
    let ing = w.ingester(&[]);
    for (payload, what) in [
        (json!({"mode": "split", "url": "https://x.org/a"}), "mode"),
        (json!({"mode": 3, "url": "https://x.org/a"}), "mode"),
        (
            json!({"mode": "plan", "url": "https://x.org/a", "ranges": 0}),
            "ranges",
        ),
        (
            json!({"mode": "plan", "url": "https://x.org/a", "rangez": 2}),
            "rangez",
        ),
        (
            json!({"mode": "range", "url": "https://x.org/a"}),
            "range request",
        ),
        (json!({"mode": "commit", "comit": {}}), "comit"),
    ] {
        let err = call(&ing, payload.clone()).await.expect_err("refused");
        assert_eq!(err.error_type(), "InvalidInput", "{payload}: {err}");
        assert!(err.to_string().contains(what), "{payload}: {err}");
    }
    // The sample plan parses (its URL is public; only the fields are checked here).
    let sample: Value = serde_json::from_str(PLAN_SAMPLE).expect("sample JSON");
    assert_eq!(sample["mode"], "plan");
}
