//! A backfill's totals, from its Map Run's result files: `{"mode": "totals", "bucket", "key"}`
//! names the `manifest.json` the Map's `ResultWriter` wrote (`ResultWriterDetails`); the answer
//! counts the objects, rows and bad rows and lists the failed objects with their keys.
//!
//! The result files are JSON arrays of child executions (`Input`: the item event as text,
//! `Output`: the converter's answer as text, or `Error` and `Cause`), read one entry at a time:
//! memory stays bounded whatever the size of the backfill.

use std::io::Read;

use bytes::{Buf, Bytes};
use serde::de::{SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use tributary::Error;

use crate::{Outcome, Response};

/// Failed objects listed in the answer at most (the rest are counted): the answer stays well
/// inside Step Functions' 256 KiB state.
pub const MAX_LISTED: usize = 100;

/// Where the Map Run's results are.
#[derive(Debug, Clone, Deserialize)]
pub struct TotalsRequest {
    /// The results' bucket.
    pub bucket: String,
    /// The `manifest.json` key.
    pub key: String,
}

/// What a backfill did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    /// Objects the Map ran (children).
    pub objects: u64,
    /// Objects converted.
    pub converted: u64,
    /// Objects skipped (folder markers, columnar files, ...).
    pub skipped: u64,
    /// Objects that failed.
    pub failed: u64,
    /// Rows written.
    pub rows: u64,
    /// Rows set aside.
    pub bad_rows: u64,
    /// The first failed objects (at most [`MAX_LISTED`]).
    pub failures: Vec<FailedObject>,
}

/// One object that failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedObject {
    /// Its key.
    pub key: String,
    /// `errorType`.
    pub error: String,
    /// Why.
    pub cause: String,
}

#[derive(Debug, Deserialize)]
struct ResultManifest {
    #[serde(rename = "ResultFiles")]
    files: ResultFiles,
}

#[derive(Debug, Default, Deserialize)]
struct ResultFiles {
    #[serde(rename = "SUCCEEDED", default)]
    succeeded: Vec<FileRef>,
    #[serde(rename = "FAILED", default)]
    failed: Vec<FileRef>,
}

#[derive(Debug, Deserialize)]
struct FileRef {
    #[serde(rename = "Key")]
    key: String,
}

/// One child execution, as the result files hold it.
#[derive(Debug, Deserialize)]
struct Child {
    #[serde(rename = "Input", default)]
    input: Option<String>,
    #[serde(rename = "Output", default)]
    output: Option<String>,
    #[serde(rename = "Error", default)]
    error: Option<String>,
    #[serde(rename = "Cause", default)]
    cause: Option<String>,
}

impl Totals {
    fn fail(&mut self, key: String, error: String, cause: String) {
        self.failed += 1;
        if self.failures.len() < MAX_LISTED {
            self.failures.push(FailedObject { key, error, cause });
        }
    }

    fn add(&mut self, child: Child) {
        self.objects += 1;
        let key = child
            .input
            .as_deref()
            .and_then(|i| serde_json::from_str::<serde_json::Value>(i).ok())
            .and_then(|v| v.get("key").and_then(|k| k.as_str()).map(str::to_owned))
            .unwrap_or_default();
        let answer = child
            .output
            .as_deref()
            .and_then(|o| serde_json::from_str::<Response>(o).ok());
        match answer {
            Some(r) if child.error.is_none() => {
                for o in &r.results {
                    match o {
                        Outcome::Converted(s) => {
                            self.converted += 1;
                            self.rows += s.rows;
                            self.bad_rows += s.bad_rows;
                        }
                        Outcome::Skipped { .. } => self.skipped += 1,
                        Outcome::Failed {
                            object,
                            error_type,
                            message,
                        } => self.fail(object.clone(), error_type.clone(), message.clone()),
                        Outcome::Aborted { object, .. } => {
                            self.fail(object.clone(), "Aborted".into(), String::new());
                        }
                    }
                }
            }
            _ => self.fail(
                key,
                child.error.unwrap_or_else(|| "UnreadableResult".into()),
                child.cause.unwrap_or_default(),
            ),
        }
    }
}

/// Reads the Map Run's manifest and every result file it lists.
pub async fn totals(client: &aws_sdk_s3::Client, req: &TotalsRequest) -> Result<Totals, Error> {
    let manifest: ResultManifest = {
        let body = get(client, &req.bucket, &req.key).await?;
        let mut all = Vec::new();
        let mut body = body;
        while let Some(chunk) = body.next().await {
            all.extend_from_slice(&chunk.map_err(|e| body_err(&req.bucket, &req.key, e))?);
        }
        serde_json::from_slice(&all).map_err(|e| {
            Error::decode(
                format!(
                    "s3://{}/{} (a Map Run's manifest.json)",
                    req.bucket, req.key
                ),
                e,
                str::to_owned,
            )
        })?
    };
    let mut totals = Totals::default();
    for file in manifest
        .files
        .succeeded
        .iter()
        .chain(&manifest.files.failed)
    {
        totals = read_file(client, &req.bucket, &file.key, totals).await?;
    }
    Ok(totals)
}

async fn get(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
) -> Result<aws_sdk_s3::primitives::ByteStream, Error> {
    Ok(client
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .map_err(|e| Error::s3("GetObject", bucket, key, e))?
        .body)
}

fn body_err(bucket: &str, key: &str, e: impl std::fmt::Display) -> Error {
    Error::S3 {
        operation: "GetObject",
        bucket: bucket.to_owned(),
        key: key.to_owned(),
        code: None,
        message: format!("reading the body: {e}"),
    }
}

/// Adds one result file's children to `totals`, parsed as the body arrives (a blocking
/// parser fed chunk by chunk).
async fn read_file(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    totals: Totals,
) -> Result<Totals, Error> {
    let mut body = get(client, bucket, key).await?;
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(4);
    let what = format!("s3://{bucket}/{key} (a Map Run's results)");
    let parse = tokio::task::spawn_blocking(move || {
        let mut totals = totals;
        let reader = std::io::BufReader::new(Chunks {
            rx,
            buf: Bytes::new(),
        });
        let mut de = serde_json::Deserializer::from_reader(reader);
        serde::Deserializer::deserialize_seq(&mut de, Children(&mut totals))
            .map(|()| totals)
            .map_err(|e| Error::decode(what, e, str::to_owned))
    });
    let mut failure = None;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| std::io::Error::other(e.to_string()));
        let stop = chunk.is_err();
        if let Err(e) = &chunk {
            failure = Some(body_err(bucket, key, e));
        }
        if tx.send(chunk).await.is_err() || stop {
            break;
        }
    }
    drop(tx);
    let parsed = parse
        .await
        .map_err(|e| Error::Internal(format!("reading a result file: {e}")))?;
    match failure {
        Some(e) => Err(e),
        None => parsed,
    }
}

/// The chunks of a body as a blocking reader.
struct Chunks {
    rx: tokio::sync::mpsc::Receiver<std::io::Result<Bytes>>,
    buf: Bytes,
}

impl Read for Chunks {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.buf.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(b)) => self.buf = b,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.buf.len());
        out[..n].copy_from_slice(&self.buf[..n]);
        self.buf.advance(n);
        Ok(n)
    }
}

/// Visits the array of children one at a time.
struct Children<'a>(&'a mut Totals);

impl<'de> Visitor<'de> for Children<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an array of child executions")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(child) = seq.next_element::<Child>()? {
            self.0.add(child);
        }
        Ok(())
    }
}
