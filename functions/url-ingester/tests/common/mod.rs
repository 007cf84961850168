//! The set-up the ingester's integration tests share: an S3 endpoint with a bucket (embedded
//! s3s-fs, or `TEST_S3_ENDPOINT`), the harness's HTTP server as the source, and an
//! [`Ingester`] configured for both; a fake Lambda Invoke endpoint that records continuations.
#![allow(dead_code)]

use std::time::Duration;

use tributary::Env;
use tributary::s3::S3Settings;
use tributary_testkit::s3::eventually;
use tributary_testkit::{HttpServer, TestS3};
use url_ingester::{Config, Ingester};

/// An S3 client for the test endpoint.
pub async fn s3_client(s3: &TestS3) -> aws_sdk_s3::Client {
    let mut settings = S3Settings::for_endpoint(&s3.endpoint, &s3.access_key, &s3.secret_key);
    settings.force_path_style = s3.path_style;
    settings.service.region = Some(s3.region.clone());
    settings.build_client().await
}

/// An ingester with the configuration `env`, writing through `client`.
pub fn ingester_for(env: &Env, client: aws_sdk_s3::Client) -> Ingester {
    let config = Config::from_env(env).expect("config");
    Ingester::new(config, client, None).expect("ingester")
}

/// An S3 endpoint with a fresh bucket, a client for it, and an HTTP source.
pub struct World {
    pub s3: TestS3,
    pub http: HttpServer,
    pub bucket: String,
    pub client: aws_sdk_s3::Client,
}

impl World {
    pub async fn new() -> World {
        let s3 = TestS3::start().await;
        let bucket = s3.bucket().await;
        let client = s3_client(&s3).await;
        World {
            http: HttpServer::start().await,
            s3,
            bucket,
            client,
        }
    }

    /// The tests' configuration: the bucket as `DEFAULT_BUCKET`, the local source allowed,
    /// 5 MiB parts, three at once, a short read timeout; `extra` added or overriding.
    pub fn env(&self, extra: &[(&str, &str)]) -> Env {
        let mut env = Env::from_pairs([
            ("DEFAULT_BUCKET", self.bucket.as_str()),
            ("ALLOW_PRIVATE_NETWORKS", "127.0.0.1/32"),
            ("PART_SIZE_MIB", "5"),
            ("CONCURRENCY", "3"),
            ("READ_TIMEOUT_SECS", "5"),
        ]);
        for (k, v) in extra {
            env = env.with(*k, *v);
        }
        env
    }

    /// An ingester with [`World::env`] and `extra`.
    pub fn ingester(&self, extra: &[(&str, &str)]) -> Ingester {
        ingester_for(&self.env(extra), self.client.clone())
    }

    /// Waits (up to 5 s, aborts run on spawned tasks) until the bucket has no open upload.
    pub async fn assert_no_uploads_left(&self) {
        let clean = eventually(Duration::from_secs(5), || async {
            self.s3.open_uploads(&self.bucket).await.is_empty()
        })
        .await;
        assert!(
            clean,
            "uploads left: {:?}",
            self.s3.open_uploads(&self.bucket).await
        );
    }
}

/// A Lambda Invoke endpoint on 127.0.0.1 that records what it is sent (head, body) and
/// answers 202, and a Lambda client for it.
pub async fn fake_lambda() -> (
    aws_sdk_lambda::Client,
    tokio::sync::mpsc::UnboundedReceiver<(String, String)>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let mut buf = Vec::new();
            let mut tmp = [0u8; 65536];
            // Read the head, then as many body bytes as Content-Length says.
            let (head, body) = loop {
                let Ok(n) = s.read(&mut tmp).await else {
                    break (String::new(), String::new());
                };
                if n == 0 {
                    break (String::new(), String::new());
                }
                buf.extend_from_slice(&tmp[..n]);
                let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                    continue;
                };
                let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                let len: usize = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse().unwrap_or(0))
                    })
                    .unwrap_or(0);
                while buf.len() < end + 4 + len {
                    match s.read(&mut tmp).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => buf.extend_from_slice(&tmp[..n]),
                    }
                }
                let body = String::from_utf8_lossy(&buf[end + 4..]).into_owned();
                break (head, body);
            };
            let _ = s
                .write_all(
                    b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\nx-amzn-RequestId: fake\r\n\r\n",
                )
                .await;
            let _ = tx.send((head, body));
        }
    });
    let lambda = aws_sdk_lambda::Client::from_conf(
        aws_sdk_lambda::config::Builder::new()
            .behavior_version(aws_sdk_lambda::config::BehaviorVersion::latest())
            .endpoint_url(format!("http://{addr}"))
            .region(aws_sdk_lambda::config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_lambda::config::Credentials::new(
                "AKID", "SECRET", None, None, "test",
            ))
            .build(),
    );
    (lambda, rx)
}
