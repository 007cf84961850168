//! Helpers shared by the shared crate's integration tests.
#![allow(dead_code)]

use tributary::s3::S3Settings;
use tributary_testkit::TestS3;

/// A client built the way the functions build theirs (retry policy included), for `s3`.
pub async fn client(s3: &TestS3) -> aws_sdk_s3::Client {
    let mut settings = S3Settings::for_endpoint(&s3.endpoint, &s3.access_key, &s3.secret_key);
    settings.force_path_style = s3.path_style;
    settings.service.region = Some(s3.region.clone());
    settings.build_client().await
}

pub use tributary_testkit::skip;
