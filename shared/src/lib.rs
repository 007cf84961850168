//! Tributary's shared library: everything the Lambda functions have in common.
//!
//! * [`config`]: typed configuration from environment variables, read once at cold start.
//! * [`s3`]: S3 client construction (endpoint, path style, timeouts, retry policy).
//! * [`object`]: object references and the decoding of keys from S3 event notifications.
//! * [`writer`]: a streaming S3 writer (parallel multipart, bounded memory, all or nothing).
//! * [`reader`]: a streaming S3 reader (pinned to version/ETag, gzip/zstd transparently).
//! * [`checksum`]: full-object CRC64NVME/CRC32C as S3 stores them.
//! * [`error`]: the one error enum and its mapping to a Lambda `errorType`.
//! * [`observability`]: tracing set-up and CloudWatch Embedded Metric Format lines.
//! * [`partition`]: Hive partitions: the default partition, value escaping, the time layout.
//! * [`time`]: the time strings every function accepts (ISO 8601 / RFC 3339, epoch numbers).

pub mod checksum;
pub mod config;
pub mod error;
pub mod object;
pub mod observability;
pub mod partition;
pub mod reader;
pub mod runtime;
pub mod s3;
pub mod time;
pub mod writer;

pub use config::Env;
pub use error::{Error, Result};
pub use object::ObjectRef;
pub use writer::{S3Writer, SealedUpload, WriteOutcome, WriterConfig};
