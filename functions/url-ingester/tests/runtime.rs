//! The real `bootstrap` binary under a Lambda Runtime API emulator: the sample events of
//! `events/url-ingester/` (their URLs pointed at a local server) get the right answers, the
//! ranged one through its plan, ranges and commit; a bad configuration is an init error.

use std::time::Duration;

use serde_json::Value;
use tributary_testkit::runtime::{Answer, RuntimeApi};
use tributary_testkit::{HttpServer, Resource, TestS3};

const BIN: &str = env!("CARGO_BIN_EXE_url-ingester");

fn sample(name: &str) -> Value {
    let path = format!(
        "{}/../../events/url-ingester/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(&path).expect("sample")).expect("JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_answers_every_sample_event() {
    let s3 = TestS3::start().await;
    let bucket = s3.bucket().await;
    let http = HttpServer::start().await;
    let api = RuntimeApi::start().await;
    let mut env = vec![
        ("AWS_ENDPOINT_URL_S3", s3.endpoint.clone()),
        ("AWS_ACCESS_KEY_ID", s3.access_key.clone()),
        ("AWS_SECRET_ACCESS_KEY", s3.secret_key.clone()),
        ("AWS_REGION", s3.region.clone()),
        ("DEFAULT_BUCKET", bucket.clone()),
        ("ALLOW_PRIVATE_NETWORKS", "127.0.0.1/32".to_owned()),
    ];
    if s3.path_style {
        env.push(("S3_FORCE_PATH_STYLE", "true".to_owned()));
    }
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut child = api.spawn(BIN, &env);
    let body = tributary_testkit::data::random_bytes(3 * 1024 * 1024 + 17, 5);
    for name in ["basic", "with-checksum", "with-headers", "resume"] {
        let mut event = sample(name);
        // Same path, served locally: the samples name public URLs.
        let url = url_path(event["url"].as_str().expect("url"));
        http.serve(&url, Resource::new(body.clone()));
        event["url"] = Value::from(http.url(&url));
        event.as_object_mut().expect("object").remove("bucket");
        let answer = api.invoke(event.clone()).await;
        match (name, answer) {
            ("basic" | "with-headers", Answer::Response(r)) => {
                assert_eq!(r["status"], "complete", "{name}: {r}");
                assert_eq!(r["bytes"], body.len() as u64);
                assert_eq!(
                    s3.sha256(&bucket, r["key"].as_str().expect("key")).await,
                    tributary_testkit::data::sha256_hex(&body)
                );
            }
            // The sample's checksum is the real file's: ours differs, and nothing is written.
            ("with-checksum", Answer::Error(kind, message)) => {
                assert_eq!(kind, "IntegrityError", "{message}");
                assert!(
                    !s3.exists(&bucket, event["key"].as_str().unwrap_or("raw/none"))
                        .await
                );
            }
            // The sample's checkpoint names an upload this bucket never had.
            ("resume", Answer::Error(kind, message)) => {
                assert!(!kind.is_empty() && !message.is_empty(), "{kind}: {message}");
            }
            (name, other) => panic!("{name}: unexpected answer {other:?}"),
        }
    }
    let auth = http
        .requests()
        .iter()
        .any(|r| r.headers.contains_key("authorization"));
    assert!(auth, "the with-headers sample's headers reached the server");

    // The ranged sample, through the binary as the state machine runs it: the plan, each of
    // its items, the commit. Smaller parts, so a small source still makes two ranges.
    let mut event = sample("plan-ranges");
    let url = url_path(event["url"].as_str().expect("url"));
    let source = tributary_testkit::http::Generated {
        len: 12 * 1024 * 1024 + 5,
        seed: 11,
    };
    http.serve(&url, Resource::generated(source.len, source.seed));
    event["url"] = Value::from(http.url(&url));
    // Another key than the basic sample's: s3s-fs keeps an overwritten object's stored
    // checksum across a multipart completion, and a full GET would check the stale one.
    event["key"] = Value::from("raw/taxi/ranged.parquet");
    event["part_size_mib"] = Value::from(5);
    event["ranges"] = Value::from(2);
    let plan = match api.invoke(event).await {
        Answer::Response(r) => r,
        other => panic!("plan-ranges: unexpected answer {other:?}"),
    };
    assert_eq!(plan["status"], "planned", "{plan}");
    assert_eq!(plan["ranged"], true, "{plan}");
    let items = plan["Items"].as_array().expect("Items").clone();
    assert_eq!(items.len(), 2, "{plan}");
    let mut results = Vec::new();
    for item in items {
        match api.invoke(item).await {
            Answer::Response(r) => {
                assert_eq!(r["status"], "range_done", "{r}");
                results.push(r);
            }
            other => panic!("range: unexpected answer {other:?}"),
        }
    }
    let commit = serde_json::json!({"mode": "commit", "commit": plan["commit"], "ranges": results});
    match api.invoke(commit).await {
        Answer::Response(r) => {
            assert_eq!(r["status"], "complete", "{r}");
            assert_eq!(r["sha256"], source.sha256().as_str());
            assert_eq!(
                s3.sha256(&bucket, r["key"].as_str().expect("key")).await,
                source.sha256()
            );
        }
        other => panic!("commit: unexpected answer {other:?}"),
    }
    child.kill().expect("stop the function");
    let _ = child.wait();
}

fn url_path(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.find('/').map_or("/".to_owned(), |i| {
        rest[i..].split('?').next().unwrap_or("/").to_owned()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_configuration_is_an_init_error_naming_the_variable() {
    let api = RuntimeApi::start().await;
    let mut child = api.spawn(BIN, &[("PART_SIZE_MIB", "1")]);
    let (kind, message) = api
        .init_error(Duration::from_secs(20))
        .await
        .expect("an init error");
    assert_eq!(kind, "ConfigError");
    assert!(message.contains("PART_SIZE_MIB"), "{message}");
    assert!(!child.wait().expect("exits").success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_in_the_environment_does_not_bypass_the_guard() {
    let s3 = TestS3::start().await;
    let bucket = s3.bucket().await;
    let http = HttpServer::start().await;
    http.serve("/x", Resource::new(b"internal".to_vec()));
    let proxy = HttpServer::start().await;
    let proxy_url = proxy.url("");
    let api = RuntimeApi::start().await;
    let mut env = vec![
        ("AWS_ENDPOINT_URL_S3", s3.endpoint.clone()),
        ("AWS_ACCESS_KEY_ID", s3.access_key.clone()),
        ("AWS_SECRET_ACCESS_KEY", s3.secret_key.clone()),
        ("AWS_REGION", s3.region.clone()),
        ("DEFAULT_BUCKET", bucket.clone()),
        ("ALLOW_PRIVATE_NETWORKS", "false".to_owned()),
        // S3 and the Runtime API are on 127.0.0.1: keep them off the proxy.
        ("NO_PROXY", "127.0.0.1".to_owned()),
        ("no_proxy", "127.0.0.1".to_owned()),
    ];
    for var in [
        "HTTP_PROXY",
        "http_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
    ] {
        env.push((var, proxy_url.clone()));
    }
    if s3.path_style {
        env.push(("S3_FORCE_PATH_STYLE", "true".to_owned()));
    }
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut child = api.spawn(BIN, &env);
    let url = format!("http://localhost:{}/x", http.addr.port());
    let answer = api
        .invoke(serde_json::json!({"url": url, "key": "raw/x"}))
        .await;
    child.kill().expect("stop the function");
    let _ = child.wait();
    match answer {
        Answer::Error(kind, message) => {
            assert_eq!(kind, "InvalidInput", "{message}");
            assert!(
                message.contains("refused") || message.contains("resolves to"),
                "{message}"
            );
        }
        other => panic!("localhost was fetched: {other:?}"),
    }
    assert!(proxy.requests().is_empty(), "the request went to the proxy");
    assert!(http.requests().is_empty(), "the request reached the server");
    assert!(!s3.exists(&bucket, "raw/x").await);
}
