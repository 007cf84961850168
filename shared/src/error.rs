//! The one error type of Tributary, its `Result` alias, and its mapping to a Lambda error.
//!
//! Every variant carries the context a reader of the error needs (the variable, the object, the
//! operation) and maps to a stable, readable Lambda `errorType` through [`Error::error_type`].

use std::fmt;

/// `Result` with [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A library's error (arrow, parquet, HTTP, ...) kept as the `source` of ours, for callers
/// that inspect the cause; the message of ours already says what it means.
pub type Cause = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong in the shared library and the functions built on it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An environment variable (or a config field) holds a value we cannot use.
    #[error("invalid configuration: {var}={value:?}: {reason} (accepted: {expected})")]
    Config {
        /// The variable or field name.
        var: String,
        /// The value found (never a secret: secrets are not parsed through here).
        value: String,
        /// Why it was rejected.
        reason: String,
        /// What would have been accepted.
        expected: String,
    },

    /// An S3 object key from an event could not be decoded.
    #[error("invalid object key {key:?}: {reason}")]
    InvalidKey {
        /// The key as received.
        key: String,
        /// What is wrong with it.
        reason: String,
    },

    /// Input the caller gave us (an event, a field, a document) is not acceptable.
    #[error("invalid input: {what}: {reason}")]
    InvalidInput {
        /// What was being read.
        what: String,
        /// What is wrong with it.
        reason: String,
    },

    /// The invocation's payload is not the event this function handles (the wrong trigger,
    /// a hand-written test event, a JSON value of another shape).
    #[error("invalid event: {reason} (expected {expected})")]
    InvalidEvent {
        /// The event this function takes, e.g. "a Kinesis Data Firehose transformation event".
        expected: String,
        /// What the payload is instead (its shape, never its content).
        reason: String,
    },

    /// An S3 call failed after the retry policy gave up.
    #[error("S3 {operation} on s3://{bucket}/{key} failed: {message}")]
    S3 {
        /// The S3 operation (e.g. `UploadPart`).
        operation: &'static str,
        /// Target bucket.
        bucket: String,
        /// Target key.
        key: String,
        /// The service error code, if S3 sent one (e.g. `SlowDown`).
        code: Option<String>,
        /// The rendered error chain.
        message: String,
    },

    /// The object asked for does not exist (or the version asked for is gone).
    #[error("s3://{bucket}/{key} not found")]
    NotFound {
        /// Bucket.
        bucket: String,
        /// Key.
        key: String,
    },

    /// The object changed between the event and the read (its ETag no longer matches),
    /// or a conditional write found an existing object.
    #[error("s3://{bucket}/{key}: precondition failed: {reason}")]
    PreconditionFailed {
        /// Bucket.
        bucket: String,
        /// Key.
        key: String,
        /// Which precondition did not hold.
        reason: String,
    },

    /// Data could not be decompressed, decoded or encoded.
    #[error("cannot decode {what}: {reason}")]
    Decode {
        /// The object or stream being decoded.
        what: String,
        /// The decoder's complaint (never the row's content).
        reason: String,
        /// The library error behind it, when there is one.
        #[source]
        source: Option<Cause>,
    },

    /// The source of a download failed in a way that can pass: an HTTP 5xx or 429, a reset
    /// connection, a timeout. Retrying later can succeed.
    #[error("{what}: {reason} (the source may recover; retrying later can succeed)")]
    SourceUnavailable {
        /// What was being fetched (a redacted URL).
        what: String,
        /// What happened.
        reason: String,
        /// The HTTP client's error, when there is one.
        #[source]
        source: Option<Cause>,
    },

    /// A Lambda `Invoke` call failed.
    #[error("lambda:InvokeFunction of {function} failed: {message}")]
    Invoke {
        /// The function invoked.
        function: String,
        /// The service error code, if Lambda sent one (e.g. `TooManyRequestsException`).
        code: Option<String>,
        /// The rendered error chain.
        message: String,
    },

    /// A row that cannot be read, when bad rows fail the object (`BAD_ROWS=fail`).
    #[error("bad row at line {line} of {what}: {reason}")]
    BadRow {
        /// The object.
        what: String,
        /// 1-based line where the row starts.
        line: u64,
        /// What is wrong with it.
        reason: String,
    },

    /// The content does not match what the caller said it would be (size, checksum).
    #[error("integrity check failed for {what}: {reason}")]
    Integrity {
        /// The object or stream.
        what: String,
        /// Expected versus actual.
        reason: String,
    },

    /// A limit (S3's or ours) would be exceeded.
    #[error("limit exceeded: {0}")]
    Limit(String),

    /// An I/O error, with what we were doing.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// A JSON document could not be (de)serialised.
    #[error("JSON error in {what}: {source}")]
    Json {
        /// Which document.
        what: String,
        /// The parser error (line and column included).
        #[source]
        source: serde_json::Error,
    },

    /// The data does not fit the dataset's table (the schema contract) in a way no row-level
    /// quarantine can fix: input columns that differ only by case, a new column under
    /// `SCHEMA_EVOLUTION=fail`, partition keys other than the table's, a `SCHEMA` type that
    /// disagrees with the table.
    #[error("schema mismatch with table {table}: {reason}")]
    SchemaMismatch {
        /// `database.table`.
        table: String,
        /// What does not fit, naming the columns.
        reason: String,
    },

    /// A Data Catalog (Glue) call failed.
    #[error("Glue {operation} of {table} failed: {message}")]
    Catalog {
        /// The operation (e.g. `UpdateTable`).
        operation: &'static str,
        /// `database.table`.
        table: String,
        /// The service error code, if Glue sent one (e.g. `ThrottlingException`).
        code: Option<String>,
        /// The rendered error chain.
        message: String,
    },

    /// An invariant of ours did not hold (a bug, not the input): a task panicked, a writer was
    /// used after it closed, a checkpoint fell between part boundaries.
    #[error("internal error: {0}")]
    Internal(String),

    /// Some items of a batch failed; reported with the type of the first failure retrying can
    /// help (so a retry policy retries the batch), else of the first failure.
    #[error("{message}")]
    Batch {
        /// The `errorType` reported.
        error_type: String,
        /// Every failure, summarised.
        message: String,
    },
}

impl Error {
    /// A stable name for the kind of error, used as the Lambda `errorType`. A name is
    /// retryable or not, never both: the retryable ones are [`RETRYABLE_ERROR_TYPES`], so a
    /// Step Functions `Retry` on them (or S3's asynchronous retries) can only help.
    pub fn error_type(&self) -> &str {
        match self {
            Error::S3 { .. } if self.is_transient() => "S3Unavailable",
            Error::Invoke { .. } if self.is_transient() => "InvokeUnavailable",
            Error::Catalog { .. } if self.is_transient() => "CatalogUnavailable",
            Error::Config { .. } => "ConfigError",
            Error::InvalidKey { .. } => "InvalidObjectKey",
            Error::InvalidInput { .. } => "InvalidInput",
            Error::InvalidEvent { .. } => "InvalidEvent",
            Error::S3 { .. } => "S3Error",
            Error::NotFound { .. } => "ObjectNotFound",
            Error::PreconditionFailed { .. } => "PreconditionFailed",
            Error::Decode { .. } => "DecodeError",
            Error::SourceUnavailable { .. } => "SourceUnavailable",
            Error::Invoke { .. } => "InvokeFailed",
            Error::BadRow { .. } => "BadRow",
            Error::Integrity { .. } => "IntegrityError",
            Error::Limit(_) => "LimitExceeded",
            Error::Io { .. } => "IoError",
            Error::Json { .. } => "JsonError",
            Error::SchemaMismatch { .. } => "SchemaMismatch",
            Error::Catalog { .. } => "CatalogError",
            Error::Internal(_) => "InternalError",
            Error::Batch { error_type, .. } => error_type,
        }
    }

    /// Whether retrying the same work later could succeed (throttling, 5xx, resets, I/O).
    pub fn is_transient(&self) -> bool {
        match self {
            Error::S3 { code, .. } => code.as_deref().is_none_or(is_transient_s3_code),
            Error::Invoke { code, .. } => code.as_deref().is_none_or(is_transient_lambda_code),
            Error::Catalog { code, .. } => code.as_deref().is_none_or(is_transient_glue_code),
            Error::Io { .. } | Error::SourceUnavailable { .. } => true,
            Error::Batch { error_type, .. } => RETRYABLE_ERROR_TYPES.contains(&error_type.as_str()),
            _ => false,
        }
    }

    /// An [`Error::Batch`] of the `(errorType, message)` of each failed item (at least one) of
    /// `total` items, e.g. "2 of 3 objects failed: ...".
    pub fn batch<'a>(
        failures: impl IntoIterator<Item = (&'a str, String)>,
        total: usize,
        items: &str,
    ) -> Self {
        let failures: Vec<(&str, String)> = failures.into_iter().collect();
        let error_type = failures
            .iter()
            .map(|(t, _)| *t)
            .find(|t| RETRYABLE_ERROR_TYPES.contains(t))
            .or(failures.first().map(|(t, _)| *t))
            .unwrap_or("InternalError")
            .to_owned();
        let text: Vec<&str> = failures.iter().map(|(_, m)| m.as_str()).collect();
        Error::Batch {
            error_type,
            message: format!(
                "{} of {total} {items} failed: {}",
                failures.len(),
                text.join("; ")
            ),
        }
    }

    /// Shorthand for [`Error::Decode`] caused by a library error: its message (made safe by
    /// `scrub`, which removes row content some decoders quote) is the reason, and the error
    /// itself the source.
    pub fn decode<E>(what: impl Into<String>, err: E, scrub: impl Fn(&str) -> String) -> Self
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        Error::Decode {
            what: what.into(),
            reason: scrub(&err.to_string()),
            source: Some(Box::new(err)),
        }
    }

    /// Shorthand for [`Error::Decode`] without a library error behind it.
    pub fn undecodable(what: impl Into<String>, reason: impl fmt::Display) -> Self {
        Error::Decode {
            what: what.into(),
            reason: reason.to_string(),
            source: None,
        }
    }

    /// Builds an [`Error::Catalog`] from a Glue SDK error (every AWS SDK shares one `SdkError`
    /// type); `table` is `database.table`.
    pub fn catalog<E>(
        operation: &'static str,
        table: &str,
        err: &aws_sdk_s3::error::SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
    ) -> Self
    where
        E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        use aws_sdk_s3::error::ProvideErrorMetadata;
        Error::Catalog {
            operation,
            table: table.to_owned(),
            code: err.code().map(str::to_owned),
            message: aws_sdk_s3::error::DisplayErrorContext(err).to_string(),
        }
    }

    /// Builds an [`Error::Invoke`] from a Lambda SDK error.
    /// (Every AWS SDK shares one `SdkError` type, so this takes the Lambda client's errors.)
    pub fn invoke<E>(
        function: &str,
        err: aws_sdk_s3::error::SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
    ) -> Self
    where
        E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        use aws_sdk_s3::error::ProvideErrorMetadata;
        Error::Invoke {
            function: function.to_owned(),
            code: err.code().map(str::to_owned),
            message: aws_sdk_s3::error::DisplayErrorContext(&err).to_string(),
        }
    }

    /// Shorthand for [`Error::Config`].
    pub fn config(
        var: impl Into<String>,
        value: impl Into<String>,
        reason: impl Into<String>,
        expected: impl Into<String>,
    ) -> Self {
        Error::Config {
            var: var.into(),
            value: value.into(),
            reason: reason.into(),
            expected: expected.into(),
        }
    }

    /// Shorthand for [`Error::InvalidInput`].
    pub fn invalid_input(what: impl Into<String>, reason: impl fmt::Display) -> Self {
        Error::InvalidInput {
            what: what.into(),
            reason: reason.to_string(),
        }
    }

    /// Shorthand for [`Error::InvalidEvent`].
    pub fn invalid_event(expected: impl Into<String>, reason: impl fmt::Display) -> Self {
        Error::InvalidEvent {
            expected: expected.into(),
            reason: reason.to_string(),
        }
    }

    /// An error reading the data stream of `what` (an object): damaged or truncated
    /// compressed data (`InvalidData`, `UnexpectedEof`) is [`Error::Decode`], which no retry
    /// mends; anything else (the connection) is [`Error::Io`]. An error of ours carried through the stream (a chunk's GetObject) is given back as it
    /// was.
    pub fn read(what: impl fmt::Display, source: std::io::Error) -> Self {
        use std::io::ErrorKind;
        if source.get_ref().is_some_and(|e| e.is::<Error>()) {
            return match source.into_inner().map(|e| e.downcast::<Error>()) {
                Some(Ok(e)) => *e,
                _ => Error::Internal(format!("reading {what}: a lost stream error")),
            };
        }
        if matches!(
            source.kind(),
            ErrorKind::InvalidData | ErrorKind::UnexpectedEof
        ) {
            return Error::Decode {
                what: what.to_string(),
                reason: source.to_string(),
                source: Some(Box::new(source)),
            };
        }
        Error::io(format!("reading {what}"), source)
    }

    /// Shorthand for [`Error::Io`].
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// Builds an [`Error::S3`] (or a more precise variant) from an SDK error.
    pub fn s3<E>(
        operation: &'static str,
        bucket: &str,
        key: &str,
        err: aws_sdk_s3::error::SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
    ) -> Self
    where
        E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        use aws_sdk_s3::error::ProvideErrorMetadata;
        let code = err.code().map(str::to_owned);
        // The status helps when the body carried no code (HEAD requests have no body).
        let status = err.raw_response().map(|r| r.status().as_u16());
        match code.as_deref() {
            Some("NoSuchKey") | Some("NotFound") | Some("NoSuchVersion") => {
                return Error::NotFound {
                    bucket: bucket.to_owned(),
                    key: key.to_owned(),
                };
            }
            Some("PreconditionFailed") => {
                return Error::PreconditionFailed {
                    bucket: bucket.to_owned(),
                    key: key.to_owned(),
                    reason: err.message().unwrap_or("condition did not hold").to_owned(),
                };
            }
            _ => {}
        }
        if status == Some(404) {
            return Error::NotFound {
                bucket: bucket.to_owned(),
                key: key.to_owned(),
            };
        }
        if status == Some(412) {
            return Error::PreconditionFailed {
                bucket: bucket.to_owned(),
                key: key.to_owned(),
                reason: "the object changed (HTTP 412)".to_owned(),
            };
        }
        Error::S3 {
            operation,
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            code,
            message: aws_sdk_s3::error::DisplayErrorContext(&err).to_string(),
        }
    }
}

/// S3 error codes after which the same request may succeed later.
fn is_transient_s3_code(code: &str) -> bool {
    matches!(
        code,
        "SlowDown"
            | "InternalError"
            | "ServiceUnavailable"
            | "RequestTimeout"
            | "RequestTimeTooSkewed"
            | "Throttling"
            | "ThrottlingException"
            | "OperationAborted"
    )
}

/// Lambda error codes after which the same `Invoke` may succeed later.
fn is_transient_lambda_code(code: &str) -> bool {
    matches!(
        code,
        "TooManyRequestsException"
            | "ServiceException"
            | "EC2ThrottledException"
            | "ResourceNotReadyException"
            | "ResourceConflictException"
            | "ENILimitReachedException"
            | "SubnetIPAddressLimitReachedException"
    )
}

/// Glue error codes after which the same call may succeed later (a concurrent modification
/// is retried by the caller, re-reading the table, before it ever becomes an error).
fn is_transient_glue_code(code: &str) -> bool {
    matches!(
        code,
        "ThrottlingException"
            | "InternalServiceException"
            | "OperationTimeoutException"
            | "ConcurrentModificationException"
            | "ResourceNotReadyException"
    )
}

/// Every `errorType` after which trying the same work again can succeed; any other one means
/// the input, the configuration or the code must change first.
pub const RETRYABLE_ERROR_TYPES: &[&str] = &[
    "S3Unavailable",
    "SourceUnavailable",
    "InvokeUnavailable",
    "CatalogUnavailable",
    "IoError",
];

impl From<Error> for lambda_runtime::Diagnostic {
    fn from(err: Error) -> Self {
        lambda_runtime::Diagnostic {
            error_type: err.error_type().to_owned(),
            error_message: err.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_error_names_variable_value_and_accepted_values() {
        let err = Error::config(
            "PART_SIZE_MIB",
            "abc",
            "not a number",
            "an integer 5..=5120",
        );
        let text = err.to_string();
        assert!(text.contains("PART_SIZE_MIB"), "{text}");
        assert!(text.contains("\"abc\""), "{text}");
        assert!(text.contains("5..=5120"), "{text}");
        let diag = lambda_runtime::Diagnostic::from(err);
        assert_eq!(diag.error_type, "ConfigError");
        assert_eq!(diag.error_message, text);
    }

    #[test]
    fn invalid_event_names_what_was_expected() {
        let err = Error::invalid_event("an S3 event", "a JSON string");
        assert_eq!(err.error_type(), "InvalidEvent");
        assert_eq!(
            err.to_string(),
            "invalid event: a JSON string (expected an S3 event)"
        );
    }

    #[test]
    fn transient_classification() {
        let s3 = |code: Option<&str>| Error::S3 {
            operation: "UploadPart",
            bucket: "b".into(),
            key: "k".into(),
            code: code.map(str::to_owned),
            message: "m".into(),
        };
        assert!(s3(Some("SlowDown")).is_transient());
        assert!(s3(None).is_transient());
        assert!(!s3(Some("AccessDenied")).is_transient());
        assert!(!Error::Limit("x".into()).is_transient());
    }

    #[test]
    fn an_error_type_is_retryable_or_not_never_both() {
        let s3 = |code: &str| Error::S3 {
            operation: "PutObject",
            bucket: "b".into(),
            key: "k".into(),
            code: Some(code.to_owned()),
            message: "m".into(),
        };
        let invoke = |code: Option<&str>| Error::Invoke {
            function: "f".into(),
            code: code.map(str::to_owned),
            message: "m".into(),
        };
        let unavailable = Error::SourceUnavailable {
            what: "download of https://example.com/x".into(),
            reason: "HTTP 503".into(),
            source: None,
        };
        let cases = [
            (s3("SlowDown"), "S3Unavailable"),
            (s3("AccessDenied"), "S3Error"),
            (
                invoke(Some("TooManyRequestsException")),
                "InvokeUnavailable",
            ),
            (invoke(Some("AccessDeniedException")), "InvokeFailed"),
            (unavailable, "SourceUnavailable"),
            (Error::invalid_input("url", "HTTP 404"), "InvalidInput"),
            (Error::Internal("bug".into()), "InternalError"),
            (
                Error::SchemaMismatch {
                    table: "lake.taxi".into(),
                    reason: "columns a and A".into(),
                },
                "SchemaMismatch",
            ),
            (
                Error::Catalog {
                    operation: "GetTable",
                    table: "lake.taxi".into(),
                    code: Some("ThrottlingException".into()),
                    message: "m".into(),
                },
                "CatalogUnavailable",
            ),
            (
                Error::Catalog {
                    operation: "CreateTable",
                    table: "lake.taxi".into(),
                    code: Some("AccessDeniedException".into()),
                    message: "m".into(),
                },
                "CatalogError",
            ),
            (Error::undecodable("x", "bad"), "DecodeError"),
        ];
        for (err, want) in cases {
            assert_eq!(err.error_type(), want, "{err}");
            assert_eq!(
                err.is_transient(),
                RETRYABLE_ERROR_TYPES.contains(&want),
                "{want}: {err}"
            );
        }
    }

    #[test]
    fn a_batch_reports_a_retryable_failure_first_so_a_retry_policy_retries_it() {
        let err = Error::batch(
            [
                ("DecodeError", "a.csv: bad".to_owned()),
                ("S3Unavailable", "b.csv: slow down".to_owned()),
            ],
            3,
            "objects",
        );
        assert_eq!(err.error_type(), "S3Unavailable");
        assert!(err.is_transient());
        assert_eq!(
            err.to_string(),
            "2 of 3 objects failed: a.csv: bad; b.csv: slow down"
        );
        let err = Error::batch([("DecodeError", "a.csv: bad".to_owned())], 1, "objects");
        assert_eq!(err.error_type(), "DecodeError");
        assert!(!err.is_transient());
    }

    #[test]
    fn a_library_error_is_kept_as_the_source() {
        let parse = serde_json::from_str::<u8>("x").expect_err("not a number");
        let err = Error::decode("a manifest", parse, str::to_owned);
        let source = std::error::Error::source(&err).expect("a source");
        assert!(source.downcast_ref::<serde_json::Error>().is_some());
        assert!(
            err.to_string().starts_with("cannot decode a manifest: "),
            "{err}"
        );
    }
}
