//! A real Secrets Manager API on loopback for tests: the same `moto_server` as [`crate::glue`]
//! (moto serves every API it knows on one port).
//!
//! [`TestSecrets::start`] runs moto from the test venv on `127.0.0.1:<free port>` and stops it
//! when the handle is dropped, exactly as [`crate::glue::TestGlue::start`] does;
//! `TEST_SECRETS_ENDPOINT` names an external one instead. Without the venv or moto it prints
//! `SKIPPED <test>: ...` and returns `None`, or panics under `TEST_GLUE_REQUIRED=1` (CI).
//! Tests create secrets with [`TestSecrets::create`], straight on the server.

use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Value, json};

use crate::glue::{ACCESS_KEY, Moto, REGION, SECRET_KEY, moto_required, post_to};

/// A running Secrets Manager API.
pub struct TestSecrets {
    /// `http://127.0.0.1:port`.
    pub endpoint: String,
    /// Region to sign for.
    pub region: String,
    /// Access key (dummy).
    pub access_key: String,
    /// Secret key (dummy).
    pub secret_key: String,
    _moto: Option<Moto>,
}

impl std::fmt::Debug for TestSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestSecrets")
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl TestSecrets {
    /// moto (or `TEST_SECRETS_ENDPOINT`), or `None` after printing why `test` is skipped.
    pub async fn start(test: &str) -> Option<TestSecrets> {
        let (endpoint, moto) = match std::env::var("TEST_SECRETS_ENDPOINT")
            .ok()
            .filter(|s| !s.trim().is_empty())
        {
            Some(ep) => (ep.trim().trim_end_matches('/').to_owned(), None),
            None => match Moto::start().await {
                Ok(m) => (format!("http://{}", m.addr), Some(m)),
                Err(why) if moto_required() => {
                    panic!("{test}: no Secrets Manager API (TEST_GLUE_REQUIRED): {why}")
                }
                Err(why) => {
                    crate::skip(test, &format!("no Secrets Manager API: {why}"));
                    return None;
                }
            },
        };
        Some(TestSecrets {
            endpoint,
            region: REGION.to_owned(),
            access_key: ACCESS_KEY.to_owned(),
            secret_key: SECRET_KEY.to_owned(),
            _moto: moto,
        })
    }

    /// A fresh name under `prefix` (unique per call and process).
    pub fn name(&self, prefix: &str) -> String {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        format!(
            "{prefix}-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// Creates secret `name` holding `secret_string` and returns its ARN.
    pub async fn create(&self, name: &str, secret_string: &str) -> String {
        let (status, body) = self
            .call(
                "CreateSecret",
                json!({"Name": name, "SecretString": secret_string}),
            )
            .await;
        assert_eq!(status, 200, "CreateSecret {name}: {body}");
        body["ARN"]
            .as_str()
            .unwrap_or_else(|| panic!("CreateSecret {name}: no ARN in {body}"))
            .to_owned()
    }

    /// One Secrets Manager call straight to the server (`operation` such as `GetSecretValue`):
    /// its status and JSON answer.
    pub async fn call(&self, operation: &str, body: Value) -> (u16, Value) {
        let target = format!("secretsmanager.{operation}");
        let (status, bytes) = post_to(&self.endpoint, "secretsmanager", &target, &body)
            .await
            .unwrap_or_else(|e| panic!("Secrets Manager {operation} on {}: {e}", self.endpoint));
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }
}
