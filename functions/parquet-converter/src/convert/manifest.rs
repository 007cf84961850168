//! The last step of the commit protocol: the manifest of one input, written after every
//! output was completed, and the cleanup it allows. A re-run of the same input reads the
//! previous manifest first; once its own files are complete it writes its manifest and
//! deletes the files the previous run listed that this run did not produce.

use serde::{Deserialize, Serialize};
use tracing::warn;
use tributary::{Error, ObjectRef};

use super::{OutputFile, Summary};

/// `{OUTPUT_PREFIX}_manifests/{dataset}/{stem}-{digest}.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// The input it describes.
    pub source: Source,
    /// The Parquet files written.
    pub files: Vec<OutputFile>,
    /// Rows written.
    #[serde(default)]
    pub rows: u64,
    /// Bytes read (compressed).
    #[serde(default)]
    pub bytes_in: u64,
    /// Parquet bytes written.
    #[serde(default)]
    pub bytes_out: u64,
    /// Distinct partitions.
    #[serde(default)]
    pub partitions: usize,
    /// Rows in the default partition.
    #[serde(default)]
    pub default_partition_rows: u64,
    /// Times the object was read again after widening a column.
    #[serde(default)]
    pub type_widenings: u32,
    /// Rows quarantined.
    #[serde(default)]
    pub bad_rows: u64,
    /// The quarantine file.
    #[serde(default)]
    pub bad_rows_file: Option<OutputFile>,
    /// Converted in byte ranges: the quarantine file of each range that had bad rows.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bad_rows_files: Vec<OutputFile>,
    /// The schema written, `name: type`.
    #[serde(default)]
    pub schema: Vec<String>,
    /// The dataset's table, under the catalog contract.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<super::TableUse>,
}

/// The input a manifest describes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    /// Bucket.
    pub bucket: String,
    /// Key.
    pub key: String,
    /// Version, when the event named one.
    pub version_id: Option<String>,
    /// ETag, when the event named one.
    pub etag: Option<String>,
}

impl Manifest {
    /// The manifest of a conversion of `object`.
    pub fn of(object: &ObjectRef, s: &Summary) -> Manifest {
        Manifest {
            source: Source {
                bucket: object.bucket.clone(),
                key: object.key.clone(),
                version_id: object.version_id.clone(),
                etag: object.etag.clone(),
            },
            files: s.files.clone(),
            rows: s.rows,
            bytes_in: s.bytes_in,
            bytes_out: s.bytes_out,
            partitions: s.partitions,
            default_partition_rows: s.default_partition_rows,
            type_widenings: s.type_widenings,
            bad_rows: s.bad_rows,
            bad_rows_file: s.bad_rows_file.clone(),
            bad_rows_files: s.bad_rows_files.clone(),
            schema: s.schema.clone(),
            table: s.table.clone(),
        }
    }

    /// The conversion it records, as the handler answered it.
    pub fn summary(&self) -> Summary {
        let s = &self.source;
        Summary {
            source: ObjectRef::new(&s.bucket, &s.key)
                .with_version(s.version_id.as_deref())
                .to_string(),
            rows: self.rows,
            bad_rows: self.bad_rows,
            bad_rows_file: self.bad_rows_file.clone(),
            bad_rows_files: self.bad_rows_files.clone(),
            bytes_in: self.bytes_in,
            bytes_out: self.bytes_out,
            files: self.files.clone(),
            partitions: self.partitions,
            default_partition_rows: self.default_partition_rows,
            type_widenings: self.type_widenings,
            schema: self.schema.clone(),
            table: self.table.clone(),
        }
    }

    /// Every key it lists: the Parquet files and the quarantine files.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.files
            .iter()
            .chain(&self.bad_rows_file)
            .chain(&self.bad_rows_files)
            .map(|f| f.key.as_str())
    }

    /// The previous run's manifest, `None` on a first run. Only a real NotFound means "first
    /// run": any other failure (throttling, 5xx, a timeout, a 403, a body cut short) is
    /// retried, then fails the object before anything is written, so a re-run never leaves
    /// an earlier run's extra files beside its own. A manifest that cannot be read as one
    /// fails the object too, naming the key.
    pub async fn read(
        client: &aws_sdk_s3::Client,
        bucket: &str,
        key: &str,
    ) -> Result<Option<Manifest>, Error> {
        const ATTEMPTS: u32 = 3;
        let read = tributary::writer::retrying(
            ATTEMPTS,
            std::time::Duration::from_millis(200),
            0,
            |_| true,
            |_| get_bytes(client, bucket, key),
            |attempt, _, e| {
                warn!(key = %key, attempt, error = %e, "reading the previous manifest failed; retrying");
            },
        )
        .await;
        let body = match read {
            Ok(Some(body)) => body,
            Ok(None) => return Ok(None),
            Err(e) => {
                warn!(key = %key, error = %e, "cannot read the previous manifest: not converting, so no earlier output is left behind");
                return Err(e);
            }
        };
        serde_json::from_slice(&body).map(Some).map_err(|e| {
            Error::decode(
                format!("s3://{bucket}/{key} (the previous run's manifest)"),
                e,
                str::to_owned,
            )
        })
    }

    /// Writes this manifest (after every output was completed), then deletes what the
    /// previous run listed that this one did not produce.
    pub async fn commit(
        &self,
        client: &aws_sdk_s3::Client,
        bucket: &str,
        key: &str,
        previous: Option<&Manifest>,
    ) -> Result<(), Error> {
        put_json(client, bucket, key, self).await?;
        let produced: Vec<&str> = self.keys().collect();
        for stale in previous
            .into_iter()
            .flat_map(Manifest::keys)
            .filter(|k| !produced.contains(k))
        {
            if let Err(e) = client
                .delete_object()
                .bucket(bucket)
                .key(stale)
                .send()
                .await
            {
                warn!(key = %stale, error = %e, "could not delete a stale output of an earlier run");
            }
        }
        Ok(())
    }
}

/// An object's bytes; `None` when there is none (NotFound).
async fn get_bytes(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
) -> Result<Option<bytes::Bytes>, Error> {
    let out = match client.get_object().bucket(bucket).key(key).send().await {
        Ok(o) => o,
        Err(e) => {
            return match Error::s3("GetObject", bucket, key, e) {
                Error::NotFound { .. } => Ok(None),
                other => Err(other),
            };
        }
    };
    let body = out.body.collect().await.map_err(|e| Error::S3 {
        operation: "GetObject",
        bucket: bucket.to_owned(),
        key: key.to_owned(),
        code: None,
        message: format!("reading the body: {e}"),
    })?;
    Ok(Some(body.into_bytes()))
}

/// Writes `value` as JSON (manifests, a run's range manifests).
pub(super) async fn put_json<T: Serialize>(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    value: &T,
) -> Result<(), Error> {
    let body = serde_json::to_vec(value).map_err(|e| Error::Json {
        what: key.to_owned(),
        source: e,
    })?;
    client
        .put_object()
        .bucket(bucket)
        .key(key)
        .content_type("application/json")
        .body(body.into())
        .send()
        .await
        .map_err(|e| Error::s3("PutObject", bucket, key, e))?;
    Ok(())
}

/// Reads a JSON object; `None` when there is none.
pub(super) async fn read_json<T: serde::de::DeserializeOwned>(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
) -> Result<Option<T>, Error> {
    match get_bytes(client, bucket, key).await? {
        Some(body) => serde_json::from_slice(&body)
            .map(Some)
            .map_err(|e| Error::decode(format!("s3://{bucket}/{key}"), e, str::to_owned)),
        None => Ok(None),
    }
}
