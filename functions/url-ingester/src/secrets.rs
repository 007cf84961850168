//! Request headers kept in AWS Secrets Manager (`headers_secret_arn`): the client, reading the
//! secret, and what its failures mean.
//!
//! * **Client**: built from the shared AWS configuration like the S3 client
//!   (`AWS_ENDPOINT_URL_SECRETS_MANAGER`, then `AWS_ENDPOINT_URL`, point it at another
//!   endpoint: moto in the tests), on the first request that names a secret (most name none)
//!   and kept for the process.
//! * **The secret**: `GetSecretValue`; its `SecretString` must be a JSON object of header name
//!   to string value, e.g. `{"Authorization": "Bearer ..."}`. Read on every leg of an
//!   ingestion: only the secret's ARN or name travels with a continuation, never its values.
//! * **Values are never shown**: [`SecretHeaders`]' `Debug` lists the names only, no error
//!   message quotes the secret (a JSON syntax error says where, not what), and the SDK's own
//!   output type redacts `SecretString`.
//! * **Errors**: a secret that is missing, refused (access denied, its KMS key), not JSON or not
//!   an object of strings is `InvalidInput` naming `headers_secret_arn`; throttling, 5xx,
//!   timeouts and connection errors, after the SDK's retries (standard mode, `AWS_MAX_ATTEMPTS`),
//!   are `SourceUnavailable` (retryable): the source cannot be reached without its headers.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_secretsmanager::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_secretsmanager::operation::get_secret_value::GetSecretValueError;
use tokio::sync::OnceCell;
use tributary::s3::ServiceSettings;

use crate::request::json_kind;
use tributary::{Env, Error};

/// The request field the secret is named by (every error names it).
pub const FIELD: &str = "headers_secret_arn";

/// The longest secret ARN or name accepted (a name is at most 512 characters; an ARN adds
/// the partition, region, account and a suffix).
pub const MAX_ID_CHARS: usize = 2048;

/// Where and how to reach Secrets Manager (`AWS_ENDPOINT_URL_SECRETS_MANAGER`, then
/// `AWS_ENDPOINT_URL`).
#[derive(Debug, Clone, Default)]
pub struct SecretsSettings {
    /// Endpoint, region, keys and retries, as every non-S3 client of the project has them.
    pub service: ServiceSettings,
}

impl SecretsSettings {
    /// Reads the settings from the environment; credentials stay with the default chain.
    pub fn from_env(env: &Env) -> tributary::Result<SecretsSettings> {
        Ok(SecretsSettings {
            service: ServiceSettings::from_env(env, "AWS_ENDPOINT_URL_SECRETS_MANAGER")?,
        })
    }

    /// Settings for an explicit endpoint with static keys (tests and local tools).
    pub fn for_endpoint(
        endpoint: &str,
        region: &str,
        access_key: &str,
        secret_key: &str,
    ) -> SecretsSettings {
        SecretsSettings {
            service: ServiceSettings::for_endpoint(endpoint, region, access_key, secret_key),
        }
    }

    /// Builds the client.
    pub async fn build_client(&self) -> aws_sdk_secretsmanager::Client {
        let shared = self.service.sdk_config(Duration::from_secs(10)).await;
        aws_sdk_secretsmanager::Client::new(&shared)
    }
}

/// Header names and values read from a secret. `Debug` shows the names only.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SecretHeaders(BTreeMap<String, String>);

impl std::fmt::Debug for SecretHeaders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("SecretHeaders")
            .field(&self.0.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl SecretHeaders {
    /// The headers of a `SecretString`: a JSON object of string values, at least one. The
    /// error says what is wrong (and where), never what the secret holds.
    pub fn parse(secret_string: &str) -> Result<SecretHeaders, String> {
        let value: serde_json::Value = serde_json::from_str(secret_string).map_err(|e| {
            format!(
                "its SecretString is not JSON (a syntax error at line {}, column {}); \
                 expected an object such as {{\"Authorization\": \"Bearer ...\"}}",
                e.line(),
                e.column()
            )
        })?;
        let serde_json::Value::Object(map) = value else {
            return Err(format!(
                "its SecretString is {}, not a JSON object of header names to string values",
                json_kind(&value)
            ));
        };
        if map.is_empty() {
            return Err("its SecretString is an empty JSON object: no headers".to_owned());
        }
        let mut out = BTreeMap::new();
        for (name, value) in map {
            match value {
                serde_json::Value::String(s) => {
                    out.insert(name, s);
                }
                other => {
                    return Err(format!(
                        "the value of header {name:?} is {}, not a string",
                        json_kind(&other)
                    ));
                }
            }
        }
        Ok(SecretHeaders(out))
    }

    /// The headers, by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

/// Secrets Manager for the process: its client made on first use.
#[derive(Debug)]
pub(crate) struct Secrets {
    settings: SecretsSettings,
    client: OnceCell<aws_sdk_secretsmanager::Client>,
}

impl Secrets {
    pub fn new(settings: SecretsSettings) -> Secrets {
        Secrets {
            settings,
            client: OnceCell::new(),
        }
    }

    /// The headers in secret `id` (an ARN or a name), read now.
    pub async fn headers(&self, id: &str) -> Result<SecretHeaders, Error> {
        let client = self
            .client
            .get_or_init(|| self.settings.build_client())
            .await;
        let out = client
            .get_secret_value()
            .secret_id(id)
            .send()
            .await
            .map_err(|e| failure(id, &e))?;
        let Some(text) = out.secret_string() else {
            return Err(Error::invalid_input(
                FIELD,
                format!(
                    "secret {id:?} holds no SecretString (a binary secret): store the headers \
                     as a JSON object"
                ),
            ));
        };
        SecretHeaders::parse(text)
            .map_err(|why| Error::invalid_input(FIELD, format!("secret {id:?}: {why}")))
    }
}

/// Checks the form of a secret's ARN or name before any call.
pub fn check_id(id: &str) -> Result<(), Error> {
    let bad = |why: &str| Err(Error::invalid_input(FIELD, why));
    if id.trim().is_empty() {
        return bad("is empty: a Secrets Manager secret ARN or name");
    }
    if id.chars().count() > MAX_ID_CHARS {
        return bad("is too long for a secret ARN or name");
    }
    if id.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return bad("holds whitespace or control characters: not a secret ARN or name");
    }
    Ok(())
}

/// What a failed `GetSecretValue` means for the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// The secret cannot be used as named: the request must change (`InvalidInput`).
    Refused,
    /// Secrets Manager could not answer now (`SourceUnavailable`, retryable).
    Unavailable,
}

/// The meaning of a service error by its code and HTTP status.
pub(crate) fn classify(code: Option<&str>, status: Option<u16>) -> Failure {
    match code {
        Some(
            "ThrottlingException"
            | "InternalServiceError"
            | "InternalFailure"
            | "ServiceUnavailable"
            | "RequestTimeout"
            | "RequestTimeoutException",
        ) => Failure::Unavailable,
        _ if status.is_some_and(|s| s == 429 || s >= 500) => Failure::Unavailable,
        _ => Failure::Refused,
    }
}

fn failure(
    id: &str,
    err: &SdkError<GetSecretValueError, aws_sdk_secretsmanager::config::http::HttpResponse>,
) -> Error {
    let unavailable = |reason: String| Error::SourceUnavailable {
        what: format!("{FIELD} {id:?} (Secrets Manager GetSecretValue)"),
        reason,
        source: None,
    };
    match err {
        SdkError::ServiceError(se) => {
            let code = se.err().code();
            let message = se.err().message().unwrap_or("no message");
            let status = se.raw().status().as_u16();
            if classify(code, Some(status)) == Failure::Unavailable {
                return unavailable(format!(
                    "{} (HTTP {status}): {message}",
                    code.unwrap_or("error")
                ));
            }
            let why = match code {
                Some("ResourceNotFoundException") => {
                    format!("secret {id:?} not found (Secrets Manager: {message})")
                }
                Some("AccessDeniedException") => format!(
                    "access to secret {id:?} denied: the function's role needs \
                     secretsmanager:GetSecretValue on it (the IngesterSecretsPrefix parameter), \
                     and kms:Decrypt on its key when it has its own ({message})"
                ),
                Some("DecryptionFailure") => format!(
                    "secret {id:?} cannot be decrypted: the function's role needs kms:Decrypt \
                     on its KMS key ({message})"
                ),
                Some(code) => format!("secret {id:?}: {code}: {message}"),
                None => format!("secret {id:?}: HTTP {status}: {message}"),
            };
            Error::invalid_input(FIELD, why)
        }
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            unavailable(DisplayErrorContext(err).to_string())
        }
        _ => Error::invalid_input(
            FIELD,
            format!(
                "secret {id:?}: the request could not be made: {}",
                DisplayErrorContext(err)
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_string_is_an_object_of_strings() {
        let h = SecretHeaders::parse(r#"{"Authorization":"Bearer s3cr3t","X-Api-Key":"k3y"}"#)
            .expect("headers");
        assert_eq!(
            h.iter().collect::<Vec<_>>(),
            [("Authorization", "Bearer s3cr3t"), ("X-Api-Key", "k3y")]
        );
        let shown = format!("{h:?}");
        assert!(
            shown.contains("Authorization") && shown.contains("X-Api-Key"),
            "{shown}"
        );
        assert!(
            !shown.contains("s3cr3t") && !shown.contains("k3y\""),
            "{shown}"
        );
    }

    #[test]
    fn a_malformed_secret_string_is_described_never_quoted() {
        for (text, want) in [
            ("Bearer s3cr3t", "not JSON"),
            (r#"{"Authorization": "Bearer s3cr3t""#, "not JSON"),
            (r#"["Bearer s3cr3t"]"#, "a JSON array"),
            (r#""Bearer s3cr3t""#, "a JSON string"),
            (
                r#"{"Authorization": 12345}"#,
                "\"Authorization\" is a JSON number",
            ),
            (
                r#"{"Authorization": {"v": "s3cr3t"}}"#,
                "a JSON object, not a string",
            ),
            ("{}", "empty"),
        ] {
            let err = SecretHeaders::parse(text).expect_err(text);
            assert!(err.contains(want), "{text}: {err}");
            assert!(!err.contains("s3cr3t") && !err.contains("12345"), "{err}");
        }
    }

    #[test]
    fn throttling_and_server_errors_are_retryable_refusals_are_not() {
        assert_eq!(
            classify(Some("ThrottlingException"), Some(400)),
            Failure::Unavailable
        );
        assert_eq!(
            classify(Some("InternalServiceError"), Some(500)),
            Failure::Unavailable
        );
        assert_eq!(classify(None, Some(503)), Failure::Unavailable);
        assert_eq!(classify(None, Some(429)), Failure::Unavailable);
        for code in [
            "ResourceNotFoundException",
            "AccessDeniedException",
            "DecryptionFailure",
            "InvalidRequestException",
            "InvalidParameterException",
        ] {
            assert_eq!(classify(Some(code), Some(400)), Failure::Refused, "{code}");
        }
    }

    #[test]
    fn ids_are_checked_for_form() {
        assert!(
            check_id("arn:aws:secretsmanager:eu-west-1:123456789012:secret:src-AbCdEf").is_ok()
        );
        assert!(check_id("tributary/source-api").is_ok());
        for bad in ["", "  ", "a b", "x\n"] {
            let err = check_id(bad).expect_err(bad).to_string();
            assert!(err.contains(FIELD), "{err}");
        }
    }

    #[test]
    fn settings_prefer_the_secrets_manager_endpoint_and_hide_keys() {
        let env = Env::from_pairs([
            ("AWS_ENDPOINT_URL", "http://generic:1"),
            ("AWS_ENDPOINT_URL_SECRETS_MANAGER", "http://sm:2"),
        ]);
        let s = SecretsSettings::from_env(&env).expect("settings");
        assert_eq!(s.service.endpoint_url.as_deref(), Some("http://sm:2"));
        let s =
            SecretsSettings::for_endpoint("http://127.0.0.1:1", "us-east-1", "AKID", "very-secret");
        let shown = format!("{s:?}");
        assert!(
            shown.contains("AKID") && !shown.contains("very-secret"),
            "{shown}"
        );
    }
}
