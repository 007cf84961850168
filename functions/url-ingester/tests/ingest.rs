//! url-ingester end to end: the harness's HTTP server as the source, a real S3 endpoint as the
//! sink (embedded s3s-fs, or `TEST_S3_ENDPOINT`). After every failure no upload is left.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use aws_sdk_s3::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_s3::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_s3::error::BoxError;
use aws_sdk_s3::primitives::SdkBody;

use lambda_runtime::{Context, LambdaEvent};
use tributary::Env;
use tributary_testkit::data::{MIB, random_bytes, sha256_hex};
use tributary_testkit::{Action, Calls, HttpFault, Op, Resource};
use url_ingester::{IngestRequest, IngestResponse, Ingester};

mod common;
use common::World;

const BASIC: &str = include_str!("../../../events/url-ingester/basic.json");
const WITH_CHECKSUM: &str = include_str!("../../../events/url-ingester/with-checksum.json");
const WITH_HEADERS: &str = include_str!("../../../events/url-ingester/with-headers.json");
const RESUME: &str = include_str!("../../../events/url-ingester/resume.json");

impl World {
    fn request(&self, path: &str, key: &str) -> IngestRequest {
        IngestRequest {
            url: self.http.url(path),
            key: Some(key.to_owned()),
            ..IngestRequest::default()
        }
    }

    async fn assert_clean(&self, key: &str) {
        self.assert_no_uploads_left().await;
        assert!(
            !self.s3.exists(&self.bucket, key).await,
            "{key} must not exist"
        );
    }
}

fn complete(r: IngestResponse) -> url_ingester::Completed {
    match r {
        IngestResponse::Complete(c) => c,
        IngestResponse::Incomplete(i) => panic!("incomplete at {} bytes", i.bytes),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_arrives_intact_at_every_size() {
    let w = World::new().await;
    let ing = w.ingester(&[]);
    for (len, parts) in [(0usize, 1u32), (1, 1), (5 * MIB, 1), (23 * MIB + 17, 5)] {
        let body = random_bytes(len, len as u64);
        let path = format!("/sizes/{len}.bin");
        w.http.serve(&path, Resource::new(body.clone()));
        let key = format!("raw/sizes/{len}.bin");
        let out = complete(
            ing.run(w.request(&path, &key), None, None)
                .await
                .expect("ingest"),
        );
        assert_eq!(out.bytes, len as u64);
        assert_eq!(out.parts, parts, "{len}");
        assert_eq!(out.sha256, sha256_hex(&body));
        assert_eq!(
            sha256_hex(&w.s3.get(&w.bucket, &key).await),
            out.sha256,
            "{len}"
        );
    }
    // Unknown length (chunked transfer).
    let body = random_bytes(12 * MIB + 5, 99);
    w.http
        .serve("/chunked.bin", Resource::new(body.clone()).chunked());
    let out = complete(
        ing.run(w.request("/chunked.bin", "raw/chunked.bin"), None, None)
            .await
            .expect("chunked"),
    );
    assert_eq!(out.bytes, body.len() as u64);
    assert_eq!(out.parts, 3);
    assert_eq!(
        sha256_hex(&w.s3.get(&w.bucket, "raw/chunked.bin").await),
        sha256_hex(&body)
    );
    assert!(w.s3.open_uploads(&w.bucket).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_key_comes_from_the_url_and_the_sample_event_works() {
    let w = World::new().await;
    let ing = w.ingester(&[("DEFAULT_PREFIX", "raw/taxi/")]);
    w.http.serve(
        "/trips%202024.csv",
        Resource::new(b"a,b\n1,2\n".to_vec()).content_type("text/csv"),
    );
    let req = IngestRequest {
        url: w.http.url("/trips%202024.csv?token=abc"),
        ..IngestRequest::default()
    };
    let out = complete(ing.run(req, None, None).await.expect("ingest"));
    assert_eq!(out.key, "raw/taxi/trips 2024.csv");
    assert_eq!(out.bucket, w.bucket);
    let head =
        w.s3.client
            .head_object()
            .bucket(&w.bucket)
            .key("raw/taxi/trips 2024.csv")
            .send()
            .await
            .expect("head");
    assert_eq!(head.content_type(), Some("text/csv"));

    // The sample events parse as requests (their URLs point elsewhere).
    for sample in [BASIC, WITH_CHECKSUM, WITH_HEADERS, RESUME] {
        let req: IngestRequest = serde_json::from_str(sample).expect("sample event");
        assert!(req.url.starts_with("https://"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_failures_abort_and_say_why() {
    let w = World::new().await;
    let ing = w.ingester(&[]);
    let body = random_bytes(11 * MIB, 5);
    w.http.serve(
        "/trunc",
        Resource::new(body.clone())
            .no_ranges()
            .fault(HttpFault::Truncate { at: 7 * MIB }),
    );
    w.http.serve(
        "/short",
        Resource::new(body.clone())
            .no_ranges()
            .fault(HttpFault::WrongLength {
                claimed: body.len() as u64 + 1000,
            }),
    );
    w.http.serve(
        "/err500",
        Resource::new(body.clone()).fault(HttpFault::Status(500)),
    );
    let cases = [
        ("/trunc", "does not support resuming"),
        ("/short", "does not support resuming"),
        ("/missing", "404"),
        ("/err500", "500"),
    ];
    for (path, want) in cases {
        let key = format!("raw{path}");
        let err = ing
            .run(w.request(path, &key), None, None)
            .await
            .expect_err(path)
            .to_string();
        assert!(err.contains(want), "{path}: {err}");
        w.assert_clean(&key).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_connection_continues_with_a_range_request() {
    let w = World::new().await;
    let ing = w.ingester(&[]);
    let body = random_bytes(13 * MIB + 3, 6);
    w.http.serve(
        "/cut",
        Resource::new(body.clone()).fault(HttpFault::CutOnce { at: 6 * MIB + 1 }),
    );
    let out = complete(
        ing.run(w.request("/cut", "raw/cut.bin"), None, None)
            .await
            .expect("resumed"),
    );
    assert_eq!(out.source_resumes, 1);
    assert_eq!(
        sha256_hex(&w.s3.get(&w.bucket, "raw/cut.bin").await),
        sha256_hex(&body)
    );
    let ranged: Vec<_> = w
        .http
        .requests()
        .into_iter()
        .filter(|r| r.path == "/cut" && r.headers.contains_key("range"))
        .collect();
    assert_eq!(ranged.len(), 1);
    assert!(ranged[0].headers["range"].starts_with("bytes="));
    assert!(ranged[0].headers.contains_key("if-range"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_are_followed_within_limits_and_checked_at_every_hop() {
    let w = World::new().await;
    let ing = w.ingester(&[]);
    let body = random_bytes(1000, 7);
    w.http.serve("/target.bin", Resource::new(body.clone()));
    let first = w.http.redirect_chain("ok", 3, &w.http.url("/target.bin"));
    let out = complete(
        ing.run(w.request(&first, "raw/redirected.bin"), None, None)
            .await
            .expect("3 hops"),
    );
    assert_eq!(out.sha256, sha256_hex(&body));

    let too_many = w.http.redirect_chain("long", 7, &w.http.url("/target.bin"));
    let err = ing
        .run(w.request(&too_many, "raw/r2.bin"), None, None)
        .await
        .expect_err("7 hops");
    assert!(err.to_string().contains("redirect"), "{err}");

    // Only 127.0.0.1 is allowed here: another loopback address or the metadata service is not.
    for target in [
        "http://127.0.0.2:9/x",
        "http://169.254.169.254/latest/meta-data/",
    ] {
        w.http.redirect("/evil", 302, target);
        let err = ing
            .run(w.request("/evil", "raw/evil.bin"), None, None)
            .await
            .expect_err(target);
        let text = err.to_string();
        assert!(text.contains("refused"), "{target}: {text}");
        w.assert_clean("raw/evil.bin").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_addresses_are_refused_by_default() {
    let w = World::new().await;
    let ing = w.ingester(&[("ALLOW_PRIVATE_NETWORKS", "false")]);
    w.http.serve("/x", Resource::new(b"x".to_vec()));
    for url in [
        w.http.url("/x"),
        format!("http://localhost:{}/x", w.http.addr.port()),
        "http://169.254.169.254/latest/meta-data/".to_owned(),
        "http://[::1]/x".to_owned(),
    ] {
        let req = IngestRequest {
            url: url.clone(),
            key: Some("raw/x".into()),
            ..IngestRequest::default()
        };
        let err = ing.run(req, None, None).await.expect_err(&url).to_string();
        assert!(
            err.contains("refused") || err.contains("resolves to"),
            "{url}: {err}"
        );
    }
    assert!(
        w.http.requests().is_empty(),
        "no request may reach the server"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checksum_or_size_mismatch_aborts_and_creates_nothing() {
    let w = World::new().await;
    let ing = w.ingester(&[]);
    let body = random_bytes(12 * MIB, 8);
    w.http.serve("/f.bin", Resource::new(body.clone()));
    let mut req = w.request("/f.bin", "raw/f.bin");
    req.expected_sha256 = Some("0".repeat(64));
    let err = ing.run(req, None, None).await.expect_err("wrong sha");
    assert_eq!(err.error_type(), "IntegrityError");
    assert!(err.to_string().contains(&sha256_hex(&body)), "{err}");
    w.assert_clean("raw/f.bin").await;

    let mut req = w.request("/f.bin", "raw/f.bin");
    req.expected_size = Some(5);
    let err = ing.run(req, None, None).await.expect_err("wrong size");
    assert!(err.to_string().contains("expected_size"), "{err}");
    w.assert_clean("raw/f.bin").await;

    // The right values pass.
    let mut req = w.request("/f.bin", "raw/f.bin");
    req.expected_sha256 = Some(sha256_hex(&body).to_uppercase());
    req.expected_size = Some(body.len() as u64);
    complete(ing.run(req, None, None).await.expect("matching"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_part_failures_are_retried_and_persistent_ones_abort() {
    let w = World::new().await;
    let Some(faults) = w.s3.faults() else {
        return tributary_testkit::skip(
            "s3_part_failures",
            "needs fault injection (embedded server)",
        );
    };
    let ing = w.ingester(&[]);
    let body = random_bytes(16 * MIB, 9);
    w.http.serve("/g.bin", Resource::new(body.clone()));
    faults.add(
        Op::UploadPart,
        Calls::Range { from: 2, count: 2 },
        Action::slow_down(),
    );
    let out = complete(
        ing.run(w.request("/g.bin", "raw/g.bin"), None, None)
            .await
            .expect("retried"),
    );
    assert_eq!(out.sha256, sha256_hex(&body));
    assert_eq!(faults.injected(), 2);

    faults.add(Op::UploadPart, Calls::From(1), Action::internal_error());
    let err = ing
        .run(w.request("/g.bin", "raw/g2.bin"), None, None)
        .await
        .expect_err("persistent");
    assert!(err.to_string().contains("UploadPart"), "{err}");
    w.assert_clean("raw/g2.bin").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadline_checkpoint_then_resume_gives_the_identical_object() {
    let w = World::new().await;
    let ing = w.ingester(&[("DEADLINE_MARGIN_SECS", "1")]);
    let body = random_bytes(40 * MIB + 11, 10);
    // ~20 MiB/s: the first leg gets through a few parts before its deadline.
    w.http.serve(
        "/slow.bin",
        Resource::new(body.clone()).fault(HttpFault::Trickle {
            chunk: 256 * 1024,
            delay: Duration::from_millis(12),
        }),
    );
    let deadline = SystemTime::now() + Duration::from_millis(2_500);
    let first = ing
        .run(w.request("/slow.bin", "raw/slow.bin"), Some(deadline), None)
        .await
        .expect("first leg");
    let IngestResponse::Incomplete(inc) = first else {
        panic!("expected a checkpoint");
    };
    assert!(
        inc.bytes > 0 && inc.bytes < body.len() as u64,
        "{}",
        inc.bytes
    );
    assert_eq!(
        inc.bytes % (5 * MIB as u64),
        0,
        "checkpoints sit on part boundaries"
    );
    assert!(!inc.continued_async);
    assert!(
        !w.s3.exists(&w.bucket, "raw/slow.bin").await,
        "nothing visible yet"
    );
    // The checkpoint survives a round trip through JSON, as it would through an invocation.
    let json = serde_json::to_string(&inc.checkpoint).expect("ser");
    assert!(json.contains("upload_id"));
    let mut req = w.request("/slow.bin", "raw/slow.bin");
    req.resume = Some(serde_json::from_str(&json).expect("de"));
    let out = complete(ing.run(req, None, None).await.expect("second leg"));
    assert_eq!(out.invocations, 2);
    assert_eq!(out.bytes, body.len() as u64);
    assert_eq!(out.sha256, sha256_hex(&body), "the hash spans both legs");
    assert_eq!(
        sha256_hex(&w.s3.get(&w.bucket, "raw/slow.bin").await),
        sha256_hex(&body)
    );
    assert!(w.s3.open_uploads(&w.bucket).await.is_empty());
    let ranged = w
        .http
        .requests()
        .into_iter()
        .filter(|r| r.headers.contains_key("range"))
        .count();
    assert_eq!(ranged, 1, "the second leg starts with a Range request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_reach_the_source_but_never_an_error_message() {
    let w = World::new().await;
    let ing = w.ingester(&[]);
    w.http
        .serve("/private.bin", Resource::new(b"secret data".to_vec()));
    let mut req = w.request("/private.bin", "raw/private.bin");
    req.headers = Some([("Authorization".to_owned(), "Bearer hunter2".to_owned())].into());
    complete(ing.run(req, None, None).await.expect("ingest"));
    let seen = w.http.requests();
    assert_eq!(
        seen[0].headers.get("authorization").map(String::as_str),
        Some("Bearer hunter2")
    );

    let mut req = w.request("/nowhere", "raw/n.bin");
    req.headers = Some([("Authorization".to_owned(), "Bearer hunter2".to_owned())].into());
    let err = ing.run(req, None, None).await.expect_err("404");
    assert!(!err.to_string().contains("hunter2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn if_none_match_refuses_to_overwrite_and_bad_requests_are_named() {
    let w = World::new().await;
    let ing = w.ingester(&[]);
    w.s3.put(&w.bucket, "raw/exists.bin", b"old".to_vec()).await;
    w.http
        .serve("/new.bin", Resource::new(random_bytes(100, 1)));
    let mut req = w.request("/new.bin", "raw/exists.bin");
    req.if_none_match = Some(true);
    let err = ing.run(req, None, None).await.expect_err("exists");
    assert_eq!(err.error_type(), "PreconditionFailed", "{err}");
    assert_eq!(w.s3.get(&w.bucket, "raw/exists.bin").await, b"old");

    let event = serde_json::json!({"url": w.http.url("/new.bin"), "bucket_name": "x"});
    let err = ing
        .handle(LambdaEvent::new(event, Context::default()))
        .await
        .expect_err("unknown field");
    assert_eq!(err.error_type(), "InvalidInput");
    assert!(err.to_string().contains("bucket_name"), "{err}");
    for (field, value) in [
        ("part_size_mib", serde_json::json!(2)),
        ("concurrency", serde_json::json!(0)),
        ("expected_sha256", serde_json::json!("abc")),
        ("url", serde_json::json!("ftp://x.org/a")),
    ] {
        let mut event = serde_json::json!({"url": w.http.url("/new.bin"), "key": "raw/k"});
        event[field] = value;
        let err = ing
            .handle(LambdaEvent::new(event, Context::default()))
            .await
            .expect_err(field);
        assert!(err.to_string().contains(field), "{field}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn continue_async_reinvokes_the_function_with_the_checkpoint() {
    let w = World::new().await;
    let (lambda, mut seen) = common::fake_lambda().await;
    let env = Env::from_pairs([
        ("DEFAULT_BUCKET", w.bucket.as_str()),
        ("ALLOW_PRIVATE_NETWORKS", "127.0.0.1/32"),
        ("PART_SIZE_MIB", "5"),
        ("DEADLINE_MARGIN_SECS", "1"),
        ("CONTINUE_ASYNC", "true"),
    ]);
    let ing = Ingester::new(
        url_ingester::Config::from_env(&env).expect("config"),
        w.client.clone(),
        Some(lambda),
    )
    .expect("ingester");
    let body = random_bytes(30 * MIB, 12);
    w.http.serve(
        "/async.bin",
        Resource::new(body).fault(HttpFault::Trickle {
            chunk: 256 * 1024,
            delay: Duration::from_millis(12),
        }),
    );
    let mut req = w.request("/async.bin", "raw/async.bin");
    req.headers = Some(
        [(
            "Authorization".to_owned(),
            "Bearer token-for-the-next-leg".to_owned(),
        )]
        .into(),
    );
    let arn = "arn:aws:lambda:us-east-1:123456789012:function:url-ingester";
    let deadline = SystemTime::now() + Duration::from_millis(2_000);
    let IngestResponse::Incomplete(inc) = ing
        .run(req, Some(deadline), Some(arn.into()))
        .await
        .expect("leg")
    else {
        panic!("expected a checkpoint");
    };
    assert!(inc.continued_async);
    let (head, body) = tokio::time::timeout(Duration::from_secs(5), seen.recv())
        .await
        .expect("invoked in time")
        .expect("a request");
    assert!(head.starts_with("POST /2015-03-31/functions/"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("x-amz-invocation-type: event"),
        "{head}"
    );
    let next: IngestRequest = serde_json::from_str(&body).expect("the payload is a request");
    assert_eq!(
        next.resume.as_ref().map(|c| c.upload.bytes),
        Some(inc.bytes)
    );
    assert_eq!(next.key.as_deref(), Some("raw/async.bin"));
    // The next leg needs the caller's headers; the checkpoint returned to the caller has none.
    assert!(next.headers.is_some());
    assert!(
        !serde_json::to_string(&inc.checkpoint)
            .expect("ser")
            .contains("token-for-the-next-leg")
    );
    // Clean up the open upload as a later leg would have completed it.
    if let Some(id) = &inc.checkpoint.upload.upload_id {
        tributary::writer::abort_upload(&w.s3.client, &w.bucket, "raw/async.bin", id)
            .await
            .expect("abort");
    }
}

/// Keeps a reference to every UploadPart body for `hold` after the SDK signed it, as an HTTP
/// connection still writing a body or a retry's copy of the request does past the call, and
/// records the most distinct part buffers alive at once.
#[derive(Debug, Clone)]
struct HoldBodies {
    hold: Duration,
    held: Arc<Mutex<HeldBodies>>,
}

#[derive(Debug, Default)]
struct HeldBodies {
    next: u64,
    /// id -> (address of the part's bytes, a reference to them)
    alive: BTreeMap<u64, (usize, SdkBody)>,
    most_at_once: usize,
    parts: usize,
}

impl Intercept for HoldBodies {
    fn name(&self) -> &'static str {
        "HoldBodies"
    }

    fn read_before_signing(
        &self,
        ctx: &BeforeTransmitInterceptorContextRef<'_>,
        _rc: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let req = ctx.request();
        if !req.uri().contains("partNumber=") {
            return Ok(());
        }
        let body = req.body();
        let (Some(bytes), Some(copy)) = (body.bytes(), body.try_clone()) else {
            return Err("an UploadPart body that is not in memory".into());
        };
        let addr = bytes.as_ptr() as usize;
        let id = {
            let mut h = self.held.lock().map_err(|_| "poisoned")?;
            let id = h.next;
            h.next += 1;
            h.parts += 1;
            h.alive.insert(id, (addr, copy));
            let distinct: std::collections::BTreeSet<usize> =
                h.alive.values().map(|(a, _)| *a).collect();
            h.most_at_once = h.most_at_once.max(distinct.len());
            id
        };
        let (held, hold) = (self.held.clone(), self.hold);
        tokio::spawn(async move {
            tokio::time::sleep(hold).await;
            if let Ok(mut h) = held.lock() {
                h.alive.remove(&id);
            }
        });
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn part_buffers_still_held_by_the_http_stack_are_waited_for_not_reallocated() {
    let w = World::new().await;
    let holder = HoldBodies {
        hold: Duration::from_millis(300),
        held: Arc::default(),
    };
    let client = aws_sdk_s3::Client::from_conf(
        w.client
            .config()
            .to_builder()
            .interceptor(holder.clone())
            .build(),
    );
    let env = Env::from_pairs([
        ("DEFAULT_BUCKET", w.bucket.as_str()),
        ("ALLOW_PRIVATE_NETWORKS", "127.0.0.1/32"),
        ("PART_SIZE_MIB", "5"),
        ("CONCURRENCY", "3"),
    ]);
    let ing = common::ingester_for(&env, client);
    let body = random_bytes(60 * MIB + 3, 21);
    w.http.serve("/held.bin", Resource::new(body.clone()));
    let out = complete(
        ing.run(w.request("/held.bin", "raw/held.bin"), None, None)
            .await
            .expect("ingest"),
    );
    assert_eq!(out.parts, 13);
    assert_eq!(
        w.s3.sha256(&w.bucket, "raw/held.bin").await,
        sha256_hex(&body)
    );
    let held = holder.held.lock().expect("lock");
    assert_eq!(held.parts, 13, "every part went through the holder");
    // part x (concurrency + 1): the part being filled and three in flight, never a fifth
    // buffer while an earlier part's bytes are still referenced.
    assert!(
        held.most_at_once <= 4,
        "{} distinct part buffers alive at once; the budget holds 4",
        held.most_at_once
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_headers_do_not_follow_a_cross_origin_redirect() {
    let w = World::new().await;
    let ing = w.ingester(&[]);
    // Another port is another origin.
    let other = tributary_testkit::HttpServer::start().await;
    other.serve("/data.bin", Resource::new(b"elsewhere".to_vec()));
    w.http.redirect("/away", 302, &other.url("/data.bin"));
    let headers: BTreeMap<String, String> = [
        ("X-Api-Key".to_owned(), "k-123".to_owned()),
        ("Authorization".to_owned(), "Bearer hunter2".to_owned()),
        ("Cookie".to_owned(), "session=1".to_owned()),
    ]
    .into();
    let mut req = w.request("/away", "raw/away.bin");
    req.headers = Some(headers.clone());
    complete(ing.run(req, None, None).await.expect("redirected"));
    let first = w.http.requests();
    assert_eq!(
        first[0].headers.get("x-api-key").map(String::as_str),
        Some("k-123")
    );
    let seen = other.requests();
    assert_eq!(seen.len(), 1);
    for h in ["x-api-key", "authorization", "cookie"] {
        assert!(
            !seen[0].headers.contains_key(h),
            "{h} followed the redirect to another origin"
        );
    }

    // Same origin: the headers go along.
    w.http.serve("/here.bin", Resource::new(b"here".to_vec()));
    w.http.redirect("/stay", 302, &w.http.url("/here.bin"));
    let mut req = w.request("/stay", "raw/stay.bin");
    req.headers = Some(headers.clone());
    complete(ing.run(req, None, None).await.expect("same origin"));
    let last = w.http.requests();
    let here = last.iter().rfind(|r| r.path == "/here.bin").expect("hop");
    assert_eq!(
        here.headers.get("x-api-key").map(String::as_str),
        Some("k-123")
    );

    // Opted in: they follow.
    let mut req = w.request("/away", "raw/away2.bin");
    req.headers = Some(headers);
    req.forward_headers_on_redirect = Some(true);
    complete(ing.run(req, None, None).await.expect("opted in"));
    let seen = other.requests();
    assert_eq!(
        seen[1].headers.get("x-api-key").map(String::as_str),
        Some("k-123")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_supplied_host_header_is_refused() {
    let w = World::new().await;
    let ing = w.ingester(&[]);
    w.http.serve("/h.bin", Resource::new(b"h".to_vec()));
    let mut req = w.request("/h.bin", "raw/h.bin");
    req.headers = Some([("host".to_owned(), "metadata.internal".to_owned())].into());
    let err = ing.run(req, None, None).await.expect_err("Host");
    assert_eq!(err.error_type(), "InvalidInput", "{err}");
    assert!(err.to_string().contains("Host"), "{err}");
    assert!(w.http.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_over_1024_bytes_is_invalid_input_before_any_byte_moves() {
    let w = World::new().await;
    let ing = w.ingester(&[]);
    w.http.serve("/k.bin", Resource::new(random_bytes(1000, 3)));
    let long = format!("raw/{}", "k".repeat(1021));
    assert_eq!(long.len(), 1025);
    let err = ing
        .run(w.request("/k.bin", &long), None, None)
        .await
        .expect_err("long key");
    assert_eq!(err.error_type(), "InvalidInput", "{err}");
    assert!(err.to_string().contains("1024"), "{err}");
    assert!(w.http.requests().is_empty(), "no byte may move");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_bucket_name_is_invalid_input_before_any_byte_moves() {
    let w = World::new().await;
    let ing = w.ingester(&[]);
    w.http.serve("/b.bin", Resource::new(random_bytes(1000, 4)));
    for bucket in [
        "Bad_Bucket",
        "ab",
        "-edge",
        "a..b",
        "192.168.1.1",
        "bucket/key",
    ] {
        let mut req = w.request("/b.bin", "raw/b.bin");
        req.bucket = Some(bucket.to_owned());
        let err = ing.run(req, None, None).await.expect_err(bucket);
        assert_eq!(err.error_type(), "InvalidInput", "{bucket}: {err}");
        assert!(err.to_string().contains("bucket"), "{bucket}: {err}");
    }
    assert!(w.http.requests().is_empty(), "no byte may move");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payload_that_is_not_a_request_object_is_invalid_event() {
    let w = World::new().await;
    let ing = w.ingester(&[]);
    for payload in [
        serde_json::json!("x"),
        serde_json::json!(42),
        serde_json::json!(null),
        serde_json::json!([{"url": "https://x.org/a"}]),
    ] {
        let err = ing
            .handle(LambdaEvent::new(payload.clone(), Context::default()))
            .await
            .expect_err("not an object");
        assert_eq!(err.error_type(), "InvalidEvent", "{payload}: {err}");
        assert!(
            err.to_string().contains("ingest request object"),
            "{payload}: {err}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_proxy_still_refuses_what_the_guard_refuses() {
    let w = World::new().await;
    let proxy = tributary_testkit::HttpServer::start().await;
    let proxy_url = proxy.url("");
    let ing = w.ingester(&[
        ("ALLOW_PRIVATE_NETWORKS", "false"),
        ("SOURCE_PROXY", proxy_url.as_str()),
    ]);
    for url in [
        format!("http://localhost:{}/x", w.http.addr.port()),
        "http://169.254.169.254/latest/meta-data/".to_owned(),
        "http://[::ffff:127.0.0.1]/x".to_owned(),
    ] {
        let req = IngestRequest {
            url: url.clone(),
            key: Some("raw/p".into()),
            ..IngestRequest::default()
        };
        let err = ing.run(req, None, None).await.expect_err(&url).to_string();
        assert!(
            err.contains("refused") || err.contains("resolves to"),
            "{url}: {err}"
        );
    }
    assert!(
        proxy.requests().is_empty(),
        "nothing refused reaches the proxy"
    );
    // A public address goes through the proxy (which answers 404 here).
    let req = IngestRequest {
        url: "http://93.184.215.14/public.bin".into(),
        key: Some("raw/public.bin".into()),
        ..IngestRequest::default()
    };
    let err = ing
        .run(req, None, None)
        .await
        .expect_err("404 from the proxy");
    assert!(err.to_string().contains("404"), "{err}");
    let seen = proxy.requests();
    assert_eq!(seen.len(), 1);
    assert!(seen[0].path.contains("93.184.215.14"), "{:?}", seen[0].path);
}
