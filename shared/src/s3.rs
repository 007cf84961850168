//! AWS client construction: S3, and the settings every client shares ([`ServiceSettings`]).
//!
//! One client is built per cold start from [`S3Settings`] and shared by every invocation.
//!
//! * Credentials and region come from the standard AWS chain (environment, profile, container
//!   and instance metadata; in Lambda the execution role's variables), unless the settings carry
//!   static keys (tests, tools).
//! * `AWS_ENDPOINT_URL_S3`, then `AWS_ENDPOINT_URL`, point the client at another S3-compatible
//!   store; `S3_FORCE_PATH_STYLE=true` is needed by most of those (SeaweedFS, MinIO).
//! * **Timeouts**: connect 5 s, read (time to the first response byte of an attempt) 60 s. There
//!   is no total operation timeout: a large part on a slow link is not cut short.
//! * **Retry policy**: the SDK's *standard* mode: exponential backoff with full jitter starting
//!   at 200 ms (capped at 20 s), retrying throttling (`SlowDown`, 503), 5xx, timeouts and
//!   connection errors, up to `AWS_MAX_ATTEMPTS` attempts in all (default 5). The streaming
//!   writer adds its own, outer retry per part on top (see [`crate::writer`]), so a part gets
//!   a second chance even after the SDK gave up on a burst of errors.

use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{Credentials, Region};

use crate::config::Env;
use crate::error::Result;

/// Where and how to reach S3: what every client has ([`ServiceSettings`], endpoint from
/// `AWS_ENDPOINT_URL_S3`), and path-style addressing.
#[derive(Debug, Clone, Default)]
pub struct S3Settings {
    /// Endpoint, region, keys and retries.
    pub service: ServiceSettings,
    /// Use path-style addressing (`S3_FORCE_PATH_STYLE`).
    pub force_path_style: bool,
}

impl S3Settings {
    /// Reads the settings from the environment; credentials stay with the default chain.
    pub fn from_env(env: &Env) -> Result<Self> {
        Ok(S3Settings {
            service: ServiceSettings::from_env(env, "AWS_ENDPOINT_URL_S3")?,
            force_path_style: env.bool_or("S3_FORCE_PATH_STYLE", false)?,
        })
    }

    /// Settings for an explicit endpoint with static keys (tests and local tools).
    pub fn for_endpoint(endpoint: &str, access_key: &str, secret_key: &str) -> Self {
        S3Settings {
            service: ServiceSettings::for_endpoint(endpoint, "us-east-1", access_key, secret_key),
            force_path_style: true,
        }
    }

    /// Builds the client. Call once per process and clone the client (it is an `Arc`).
    pub async fn build_client(&self) -> aws_sdk_s3::Client {
        let shared = self.service.sdk_config(Duration::from_secs(60)).await;
        let conf = aws_sdk_s3::config::Builder::from(&shared)
            .force_path_style(self.force_path_style)
            .build();
        aws_sdk_s3::Client::from_conf(conf)
    }
}

/// Where and how an AWS client (S3, Glue, Secrets Manager) reaches its service: one
/// definition for every client ([`ServiceSettings::sdk_config`]). `Debug` never shows the secret
/// key.
#[derive(Clone)]
pub struct ServiceSettings {
    /// Custom endpoint (the service's `AWS_ENDPOINT_URL_<SERVICE>`, then `AWS_ENDPOINT_URL`);
    /// `None` leaves it to the SDK.
    pub endpoint_url: Option<String>,
    /// Region override (`AWS_REGION`); `None` lets the default chain decide.
    pub region: Option<String>,
    /// Static credentials (access key, secret key); `None` uses the default chain.
    pub static_credentials: Option<(String, String)>,
    /// Total attempts per request, including the first (`AWS_MAX_ATTEMPTS`, default 5).
    pub max_attempts: u32,
    /// Initial backoff of the SDK's retry policy.
    pub initial_backoff: Duration,
}

impl Default for ServiceSettings {
    /// The SDK's endpoint and credentials chain, five attempts from 200 ms.
    fn default() -> ServiceSettings {
        ServiceSettings {
            endpoint_url: None,
            region: None,
            static_credentials: None,
            max_attempts: 5,
            initial_backoff: Duration::from_millis(200),
        }
    }
}

impl std::fmt::Debug for ServiceSettings {
    // Hand-written so that a secret key never reaches a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceSettings")
            .field("endpoint_url", &self.endpoint_url)
            .field("region", &self.region)
            .field(
                "static_credentials",
                &self
                    .static_credentials
                    .as_ref()
                    .map(|(ak, _)| (ak, "<redacted>")),
            )
            .field("max_attempts", &self.max_attempts)
            .finish()
    }
}

impl ServiceSettings {
    /// Reads the settings from the environment (`endpoint_var`, then `AWS_ENDPOINT_URL`;
    /// `AWS_REGION`; `AWS_MAX_ATTEMPTS`); credentials stay with the default chain.
    pub fn from_env(env: &Env, endpoint_var: &str) -> Result<ServiceSettings> {
        Ok(ServiceSettings {
            endpoint_url: env
                .get(endpoint_var)
                .or_else(|| env.get("AWS_ENDPOINT_URL"))
                .map(str::to_owned),
            region: env
                .get("AWS_REGION")
                .or_else(|| env.get("AWS_DEFAULT_REGION"))
                .map(str::to_owned),
            static_credentials: None,
            max_attempts: env.int_in("AWS_MAX_ATTEMPTS", 5u32, 1, 20)?,
            initial_backoff: Duration::from_millis(200),
        })
    }

    /// Settings for an explicit endpoint with static keys (tests and local tools): three
    /// attempts, 20 ms initial backoff.
    pub fn for_endpoint(
        endpoint: &str,
        region: &str,
        access_key: &str,
        secret_key: &str,
    ) -> ServiceSettings {
        ServiceSettings {
            endpoint_url: Some(endpoint.to_owned()),
            region: Some(region.to_owned()),
            static_credentials: Some((access_key.to_owned(), secret_key.to_owned())),
            max_attempts: 3,
            initial_backoff: Duration::from_millis(20),
        }
    }

    /// The shared SDK configuration for these settings: standard retries (at most 20 s
    /// apart), 5 s to connect, `read_timeout` to a response's first byte.
    pub async fn sdk_config(&self, read_timeout: Duration) -> aws_config::SdkConfig {
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(self.max_attempts.max(1))
                    .with_initial_backoff(self.initial_backoff)
                    .with_max_backoff(Duration::from_secs(20)),
            )
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(5))
                    .read_timeout(read_timeout)
                    .build(),
            );
        if let Some(region) = &self.region {
            loader = loader.region(Region::new(region.clone()));
        }
        if let Some(endpoint) = &self.endpoint_url {
            loader = loader.endpoint_url(endpoint);
        }
        if let Some((ak, sk)) = &self.static_credentials {
            loader = loader.credentials_provider(Credentials::new(
                ak.clone(),
                sk.clone(),
                None,
                None,
                "tributary-static",
            ));
        }
        loader.load().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_from_env_prefers_the_s3_specific_endpoint() {
        let env = Env::from_pairs([
            ("AWS_ENDPOINT_URL", "http://generic:1"),
            ("AWS_ENDPOINT_URL_S3", "http://s3:2"),
            ("S3_FORCE_PATH_STYLE", "true"),
            ("AWS_REGION", "eu-west-1"),
        ]);
        let s = S3Settings::from_env(&env).expect("valid");
        assert_eq!(s.service.endpoint_url.as_deref(), Some("http://s3:2"));
        assert!(s.force_path_style);
        assert_eq!(s.service.region.as_deref(), Some("eu-west-1"));
        assert_eq!(s.service.max_attempts, 5);
    }

    #[test]
    fn bad_path_style_flag_is_a_config_error() {
        let env = Env::from_pairs([("S3_FORCE_PATH_STYLE", "sometimes")]);
        let err = S3Settings::from_env(&env).expect_err("invalid").to_string();
        assert!(err.contains("S3_FORCE_PATH_STYLE"), "{err}");
    }

    #[test]
    fn debug_output_never_shows_the_secret_key() {
        let s = S3Settings::for_endpoint("http://127.0.0.1:1", "AKID", "very-secret");
        let text = format!("{s:?}");
        assert!(text.contains("AKID"));
        assert!(!text.contains("very-secret"), "{text}");
    }
}
