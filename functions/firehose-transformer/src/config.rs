//! The transformer's configuration, read once at cold start: the `TRANSFORM` document,
//! dynamic partitioning (`PARTITION_TIMESTAMP_FIELD`, `PARTITION_FIELDS`,
//! `PARTITION_DEFAULT`) and the size limits. Every error names its variable.

use tributary::partition::{HIVE_DEFAULT_PARTITION, escape};
use tributary::{Env, Error};

use crate::LAMBDA_RESPONSE_LIMIT;
use crate::partition::PartitionSpec;
use crate::transform::Transform;

/// Configuration, read once at cold start.
#[derive(Debug, Clone)]
pub struct Config {
    /// The record transform (`TRANSFORM`).
    pub transform: Transform,
    /// Dynamic partitioning (`PARTITION_TIMESTAMP_FIELD`, `PARTITION_FIELDS`, `PARTITION_DEFAULT`).
    pub partition: PartitionSpec,
    /// Largest response we produce (`MAX_RESPONSE_BYTES`, default and maximum: Lambda's limit).
    pub max_response_bytes: usize,
    /// Largest decompressed record (`MAX_RECORD_BYTES`, default 64 MiB): a gzip bomb is refused.
    pub max_record_bytes: usize,
    /// Namespace of the EMF metrics (`METRICS_NAMESPACE`, default `Tributary`).
    pub metrics_namespace: String,
}

impl Config {
    /// Reads and validates the configuration; errors name the variable.
    pub fn from_env(env: &Env) -> tributary::Result<Config> {
        let transform = match env.get("TRANSFORM") {
            Some(doc) => Transform::parse(doc)?,
            None => Transform::default(),
        };
        let fields = env.list("PARTITION_FIELDS");
        for f in &fields {
            if f.split('.').any(str::is_empty) {
                return Err(Error::config(
                    "PARTITION_FIELDS",
                    env.get("PARTITION_FIELDS").unwrap_or_default(),
                    format!("{f:?} is not a field name or dotted path"),
                    "comma-separated field names, e.g. tenant,geo.region",
                ));
            }
        }
        let partition = PartitionSpec::new(
            env.get("PARTITION_TIMESTAMP_FIELD").map(str::to_owned),
            fields,
            env.string_or("PARTITION_DEFAULT", HIVE_DEFAULT_PARTITION),
        )
        .map_err(|reason| {
            Error::config(
                "PARTITION_FIELDS",
                env.get("PARTITION_FIELDS").unwrap_or_default(),
                reason,
                "distinct key names (year, month, day, hour are taken by PARTITION_TIMESTAMP_FIELD)",
            )
        })?;
        // The default stands for a missing value as is: it must be its own escaped form.
        if escape(&partition.default_value).as_deref() != Some(partition.default_value.as_str()) {
            return Err(Error::config(
                "PARTITION_DEFAULT",
                &partition.default_value,
                "would need escaping in a partition path",
                "a value without / = % : ? # * ' \" \\ { [ ] ^ or control characters, not only dots",
            ));
        }
        Ok(Config {
            transform,
            partition,
            max_response_bytes: env.int_in(
                "MAX_RESPONSE_BYTES",
                LAMBDA_RESPONSE_LIMIT,
                1024,
                LAMBDA_RESPONSE_LIMIT,
            )?,
            max_record_bytes: env.int_in("MAX_RECORD_BYTES", 64 << 20, 1024, 1 << 30)?,
            metrics_namespace: env.string_or("METRICS_NAMESPACE", "Tributary"),
        })
    }
}
