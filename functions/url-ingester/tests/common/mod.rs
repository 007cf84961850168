//! The set-up the ingester's integration tests share: an S3 endpoint with a bucket (embedded
//! s3s-fs, or `TEST_S3_ENDPOINT`), the harness's HTTP server as the source, and an
//! [`Ingester`] configured for both.
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
    settings.region = Some(s3.region.clone());
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
