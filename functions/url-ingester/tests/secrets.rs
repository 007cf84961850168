//! `headers_secret_arn`: source headers read from a real Secrets Manager API (moto) on every
//! leg, used like `headers`, and never copied into a continuation, a checkpoint, a response or
//! a log line.

mod common;

use std::time::{Duration, SystemTime};

use lambda_runtime::{Context, LambdaEvent};
use serde_json::Value;
use tributary_testkit::data::{MIB, random_bytes, sha256_hex};
use tributary_testkit::logs::Logged;
use tributary_testkit::runtime::{Answer, RuntimeApi};
use tributary_testkit::secrets::TestSecrets;
use tributary_testkit::{HttpFault, Resource};
use url_ingester::secrets::SecretsSettings;
use url_ingester::{Config, IngestRequest, IngestResponse, Ingester};

use common::World;

const BIN: &str = env!("CARGO_BIN_EXE_url-ingester");
const SAMPLE: &str = include_str!("../../../events/url-ingester/with-secret-headers.json");

fn settings(sm: &TestSecrets) -> SecretsSettings {
    SecretsSettings::for_endpoint(&sm.endpoint, &sm.region, &sm.access_key, &sm.secret_key)
}

/// A credential no other text in a test contains.
fn token() -> String {
    format!("Bearer tok-{:016x}", rand_u64())
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    h.finish()
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_secret_s_headers_reach_the_source_beside_plain_headers() {
    let Some(sm) = TestSecrets::start("the_secret_s_headers_reach_the_source").await else {
        return;
    };
    let w = World::new().await;
    let token = token();
    let arn = sm
        .create(
            &sm.name("src"),
            &serde_json::json!({"Authorization": token}).to_string(),
        )
        .await;
    let body = random_bytes(6 * MIB + 11, 31);
    w.http.serve(
        "/private.csv",
        Resource::new(body.clone()).require_header("Authorization", &token),
    );
    let ing = w.ingester(&[]).with_secrets(settings(&sm));
    let request = IngestRequest {
        url: w.http.url("/private.csv"),
        key: Some("raw/private.csv".to_owned()),
        headers: Some([("Accept".to_owned(), "text/csv".to_owned())].into()),
        headers_secret_arn: Some(arn.clone()),
        ..IngestRequest::default()
    };
    let out = ing
        .handle(LambdaEvent::new(
            serde_json::to_value(&request).expect("ser"),
            Context::default(),
        ))
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", e.error_type()));
    let IngestResponse::Complete(done) = &out else {
        panic!("{out:?}");
    };
    assert_eq!(done.sha256, sha256_hex(&body));
    assert_eq!(
        sha256_hex(&w.s3.get(&w.bucket, "raw/private.csv").await),
        sha256_hex(&body)
    );
    let seen = w.http.requests();
    assert!(
        seen.iter()
            .all(|r| r.headers.get("accept").map(String::as_str) == Some("text/csv")),
        "the plain headers go too"
    );
    let shown = serde_json::to_vec(&out).expect("ser");
    assert!(!contains(&shown, &token), "the response holds the secret");
    let debug = format!("{request:?} {ing:?}");
    assert!(debug.contains(&arn) && !debug.contains(&token), "{debug}");
    // Without the secret the source refuses: the header came from the secret alone.
    let err = ing
        .run(
            IngestRequest {
                headers_secret_arn: None,
                key: Some("raw/refused.csv".to_owned()),
                ..request
            },
            None,
            None,
        )
        .await
        .expect_err("401 without the secret");
    assert!(err.to_string().contains("401"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn continuations_carry_the_secret_s_arn_never_its_values_and_each_leg_rereads_it() {
    let Some(sm) = TestSecrets::start("continuations_carry_the_secret_s_arn").await else {
        return;
    };
    let w = World::new().await;
    let name = sm.name("chain");
    let first = token();
    let arn = sm
        .create(
            &name,
            &serde_json::json!({"Authorization": first}).to_string(),
        )
        .await;
    let body = random_bytes(3 * 5 * MIB + 123, 32);
    // A part and a bit at once, then a stall past the leg's deadline: one part a leg.
    let resource = |token: &str| {
        Resource::new(body.clone())
            .require_header("Authorization", token)
            .fault(HttpFault::StallAfter {
                after: 5 * MIB + 256 * 1024,
                pause: Duration::from_millis(1_500),
            })
    };
    w.http.serve("/chain.bin", resource(&first));
    let (lambda, mut invoked) = common::fake_lambda().await;
    let env = w.env(&[("DEADLINE_MARGIN_SECS", "1"), ("CONTINUE_ASYNC", "true")]);
    let ing = Ingester::new(
        Config::from_env(&env).expect("config"),
        w.client.clone(),
        Some(lambda),
    )
    .expect("ingester")
    .with_secrets(settings(&sm));
    let function = "arn:aws:lambda:us-east-1:123456789012:function:url-ingester";
    let mut request = IngestRequest {
        url: w.http.url("/chain.bin"),
        key: Some("raw/chain.bin".to_owned()),
        headers_secret_arn: Some(arn.clone()),
        ..IngestRequest::default()
    };
    let mut tokens = vec![first];
    let mut legs = 0;
    let done = loop {
        legs += 1;
        assert!(legs <= 8, "the chain does not end");
        let deadline = SystemTime::now() + Duration::from_millis(2_200);
        let out = ing
            .run(request.clone(), Some(deadline), Some(function.to_owned()))
            .await
            .unwrap_or_else(|e| panic!("leg {legs}: {}: {e}", e.error_type()));
        let answer = serde_json::to_vec(&out).expect("ser");
        for t in &tokens {
            assert!(
                !contains(&answer, t),
                "leg {legs}: the answer holds the secret"
            );
        }
        let inc = match out {
            IngestResponse::Complete(c) => break c,
            IngestResponse::Incomplete(inc) => inc,
        };
        assert!(inc.continued_async);
        let checkpoint = serde_json::to_vec(&inc.checkpoint).expect("ser");
        let (_, payload) = tokio::time::timeout(Duration::from_secs(5), invoked.recv())
            .await
            .expect("invoked in time")
            .expect("a continuation");
        for t in &tokens {
            assert!(!contains(&checkpoint, t), "the checkpoint holds the secret");
            assert!(
                !contains(payload.as_bytes(), t),
                "the continuation holds the secret"
            );
        }
        assert!(payload.contains(&arn), "the continuation names the secret");
        request = serde_json::from_str(&payload).expect("the continuation is a request");
        assert_eq!(request.headers_secret_arn.as_deref(), Some(arn.as_str()));
        assert!(request.headers.is_none());
        // Rotate the credential: the next leg gets through only if it reads the secret again.
        let next = token();
        let (status, answer) = sm
            .call(
                "PutSecretValue",
                serde_json::json!({"SecretId": name,
                    "SecretString": serde_json::json!({"Authorization": next}).to_string()}),
            )
            .await;
        assert_eq!(status, 200, "{answer}");
        w.http.serve("/chain.bin", resource(&next));
        tokens.push(next);
    };
    assert!(legs >= 3, "{legs} legs");
    assert_eq!(done.invocations, legs);
    assert_eq!(done.sha256, sha256_hex(&body));
    assert_eq!(
        sha256_hex(&w.s3.get(&w.bucket, "raw/chain.bin").await),
        sha256_hex(&body)
    );
    w.assert_no_uploads_left().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_or_malformed_secret_is_invalid_input_naming_the_field_never_the_value() {
    let Some(sm) = TestSecrets::start("a_missing_or_malformed_secret").await else {
        return;
    };
    let w = World::new().await;
    w.http.serve("/f.csv", Resource::new(&b"a,b\n1,2\n"[..]));
    let ing = w.ingester(&[]).with_secrets(settings(&sm));
    let missing = "arn:aws:secretsmanager:us-east-1:123456789012:secret:nowhere-AbCdEf";
    let mut cases = vec![(missing.to_owned(), "not found")];
    for (value, want) in [
        ("Bearer s3cr3t-not-json", "not JSON"),
        (r#"["Bearer s3cr3t-in-an-array"]"#, "a JSON array"),
        (r#"{"Authorization": ["s3cr3t-in-a-list"]}"#, "not a string"),
        (
            r#"{"Bad Name": "s3cr3t-bad-name"}"#,
            "not a valid header name",
        ),
        (
            r#"{"X-Key": "s3cr3t\nnewline"}"#,
            "not a valid header value",
        ),
        (r#"{"Host": "s3cr3t.example.com"}"#, "Host may not be set"),
    ] {
        cases.push((sm.create(&sm.name("bad"), value).await, want));
    }
    for (arn, want) in cases {
        let event = serde_json::json!({
            "url": w.http.url("/f.csv"), "key": "raw/f.csv", "headers_secret_arn": arn,
        });
        let err = ing
            .handle(LambdaEvent::new(event, Context::default()))
            .await
            .expect_err(want);
        let text = err.to_string();
        assert_eq!(err.error_type(), "InvalidInput", "{text}");
        assert!(
            text.contains("headers_secret_arn") && text.contains(want),
            "{want}: {text}"
        );
        assert!(
            !text.contains("s3cr3t"),
            "the error shows the secret: {text}"
        );
    }
    assert!(
        w.http.requests().is_empty(),
        "no request without the headers"
    );
    assert!(!w.s3.exists(&w.bucket, "raw/f.csv").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_named_in_headers_and_in_the_secret_is_refused_by_name() {
    let Some(sm) = TestSecrets::start("a_header_named_in_headers_and_in_the_secret").await else {
        return;
    };
    let w = World::new().await;
    w.http.serve("/f.csv", Resource::new(&b"a\n1\n"[..]));
    let arn = sm
        .create(
            &sm.name("dup"),
            r#"{"Authorization": "Bearer from-the-secret"}"#,
        )
        .await;
    let ing = w.ingester(&[]).with_secrets(settings(&sm));
    let event = serde_json::json!({
        "url": w.http.url("/f.csv"), "key": "raw/f.csv", "headers_secret_arn": arn,
        // Names ignore case: the same header.
        "headers": {"authorization": "Bearer from-the-request"},
    });
    let err = ing
        .handle(LambdaEvent::new(event, Context::default()))
        .await
        .expect_err("a header given twice");
    let text = err.to_string();
    assert_eq!(err.error_type(), "InvalidInput", "{text}");
    assert!(
        text.contains("headers_secret_arn")
            && text.contains("\"Authorization\"")
            && text.contains("both in headers and in the secret"),
        "{text}"
    );
    assert!(
        !text.contains("from-the-secret") && !text.contains("from-the-request"),
        "{text}"
    );
    assert!(w.http.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_secrets_manager_is_retryable() {
    let w = World::new().await;
    // A port nothing listens on: connection refused on every attempt.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let ing = w.ingester(&[]).with_secrets(SecretsSettings::for_endpoint(
        &format!("http://127.0.0.1:{port}"),
        "us-east-1",
        "AKID",
        "SECRET",
    ));
    let event = serde_json::json!({
        "url": w.http.url("/f.csv"), "key": "raw/f.csv", "headers_secret_arn": "src-api",
    });
    let err = ing
        .handle(LambdaEvent::new(event, Context::default()))
        .await
        .expect_err("unreachable");
    assert_eq!(err.error_type(), "SourceUnavailable", "{err}");
    assert!(err.is_transient());
    assert!(err.to_string().contains("headers_secret_arn"), "{err}");
}

/// The real binary at TRACE with JSON logs answers the sample event; no line it writes, the
/// SDK's and the HTTP stack's included, holds the secret's value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_log_line_holds_the_secret_even_at_trace() {
    let Some(sm) = TestSecrets::start("no_log_line_holds_the_secret").await else {
        return;
    };
    let w = World::new().await;
    let token = token();
    let arn = sm
        .create(
            &sm.name("logs"),
            &serde_json::json!({"Authorization": token}).to_string(),
        )
        .await;
    let body = random_bytes(64 * 1024 + 5, 33);
    let mut event: Value = serde_json::from_str(SAMPLE).expect("sample");
    let path = reqwest_path(event["url"].as_str().expect("url"));
    w.http.serve(
        &path,
        Resource::new(body.clone()).require_header("Authorization", &token),
    );
    event["url"] = Value::from(w.http.url(&path));
    event["headers_secret_arn"] = Value::from(arn.clone());
    event.as_object_mut().expect("object").remove("bucket");
    let api = RuntimeApi::start().await;
    let mut env = vec![
        ("AWS_ENDPOINT_URL_S3", w.s3.endpoint.clone()),
        ("AWS_ENDPOINT_URL_SECRETS_MANAGER", sm.endpoint.clone()),
        ("AWS_ACCESS_KEY_ID", w.s3.access_key.clone()),
        ("AWS_SECRET_ACCESS_KEY", w.s3.secret_key.clone()),
        ("AWS_REGION", sm.region.clone()),
        ("DEFAULT_BUCKET", w.bucket.clone()),
        ("ALLOW_PRIVATE_NETWORKS", "127.0.0.1/32".to_owned()),
    ];
    if w.s3.path_style {
        env.push(("S3_FORCE_PATH_STYLE", "true".to_owned()));
    }
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let run = Logged::spawn(&api, BIN, "TRACE", &env);
    let answer = api.invoke(event.clone()).await;
    let Answer::Response(r) = answer else {
        panic!("the sample failed: {answer:?}");
    };
    assert_eq!(r["status"], "complete", "{r}");
    assert_eq!(
        sha256_hex(&w.s3.get(&w.bucket, r["key"].as_str().expect("key")).await),
        sha256_hex(&body)
    );
    assert!(!r.to_string().contains(&token));
    // A refused secret logs a warning: it names the field, not a value.
    event["headers_secret_arn"] =
        Value::from("arn:aws:secretsmanager:us-east-1:123456789012:secret:gone-AbCdEf");
    let answer = api.invoke(event).await;
    assert!(
        matches!(&answer, Answer::Error(kind, _) if kind == "InvalidInput"),
        "{answer:?}"
    );
    let lines = run.stop();
    assert!(
        lines.iter().any(|l| l.text.contains("GetSecretValue")),
        "TRACE shows the SDK's calls"
    );
    for line in &lines {
        assert!(
            !line.text.contains(&token) && !line.text.contains(token.trim_start_matches("Bearer ")),
            "a log line holds the secret: {}",
            line.text
        );
    }
}

/// The path of a URL (the sample names a public host).
fn reqwest_path(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.find('/')
        .map_or("/".to_owned(), |i| rest[i..].to_owned())
}
