//! parquet-converter: S3 "object created" -> CSV / TSV / JSON lines -> Hive-partitioned Parquet.
//!
//! [`Converter::handle`] accepts S3 notifications, EventBridge "Object Created" events and SQS
//! batches of S3 notifications. Each object is checked against the prefixes (the function never
//! converts its own outputs), converted by [`convert::convert`] (streaming, all or nothing), and
//! recorded in a manifest written last. One failing object never stops the others; the
//! invocation then fails with that object's `errorType` (or, from SQS, reports it in
//! `batchItemFailures`) so the platform retries it.

pub mod catalog;
pub mod config;
pub mod contract;
pub mod convert;
pub mod event;
pub mod footer;
pub mod naming;
pub mod ranged;
pub mod records;
pub mod response;
pub mod totals;
pub mod types;

use std::sync::Arc;
use std::time::Instant;

use lambda_runtime::LambdaEvent;
use serde_json::Value;
use tracing::{info, warn};
use tributary::observability::Metrics;
use tributary::{Env, Error, ObjectRef};

use crate::catalog::{Catalog, GlueCatalog, GlueSettings};
pub use crate::config::Config;
use crate::contract::Contract;
use crate::convert::Summary;
use crate::convert::manifest::Manifest;
use crate::event::{Item, Source, Target, Work};
use crate::naming::Names;
pub use crate::response::{ItemFailure, Outcome, Response};

/// The function: configuration, the S3 client and the catalog contract, built once per cold
/// start (so tables read stay cached across the invocations of a warm container).
#[derive(Debug, Clone)]
pub struct Converter {
    config: Config,
    s3: aws_sdk_s3::Client,
    contract: Option<Arc<Contract>>,
}

impl Converter {
    /// A converter with `config`, writing through `s3`; with `GLUE_DATABASE` set, give it a
    /// catalog with [`Converter::with_catalog`].
    pub fn new(config: Config, s3: aws_sdk_s3::Client) -> Converter {
        Converter {
            config,
            s3,
            contract: None,
        }
    }

    /// The catalog the contract (`GLUE_DATABASE`) is kept in; without `GLUE_DATABASE` the
    /// converter does not use it.
    pub fn with_catalog(mut self, catalog: Arc<dyn Catalog>) -> Converter {
        self.contract = self
            .config
            .catalog
            .clone()
            .map(|settings| Arc::new(Contract::new(settings, catalog)));
        self
    }

    /// Reads the configuration and builds the clients (Glue's only with `GLUE_DATABASE`).
    pub async fn from_env(env: &Env) -> tributary::Result<Converter> {
        let config = Config::from_env(env)?;
        let s3 = tributary::s3::S3Settings::from_env(env)?
            .build_client()
            .await;
        let glue = match &config.catalog {
            Some(_) => Some(GlueCatalog::from_settings(&GlueSettings::from_env(env)?).await),
            None => None,
        };
        let converter = Converter::new(config, s3);
        Ok(match glue {
            Some(g) => converter.with_catalog(Arc::new(g)),
            None => converter,
        })
    }

    /// The Lambda handler: a request with `"mode"` (one large object in ranges, [`ranged`]),
    /// else an event naming objects ([`Converter::handle`]).
    pub async fn invoke(&self, event: LambdaEvent<Value>) -> Result<Value, Error> {
        if let Some(mode) = event.payload.get("mode") {
            let Some(mode) = mode.as_str().map(str::to_owned) else {
                return Err(Error::invalid_input(
                    "mode",
                    format!("{mode}: expected one of {}", ranged::MODES.join(", ")),
                ));
            };
            return self.handle_mode(&mode, event.payload).await;
        }
        let response = self.handle(event).await?;
        serde_json::to_value(response).map_err(|e| Error::Json {
            what: "the answer".into(),
            source: e,
        })
    }

    /// The handler of events naming objects (S3, EventBridge, SQS, items).
    pub async fn handle(&self, event: LambdaEvent<Value>) -> Result<Response, Error> {
        let (payload, ctx) = event.into_parts();
        let (source, items) = event::parse(&payload)?;
        let mut results = Vec::with_capacity(items.len());
        let mut failed_messages: Vec<ItemFailure> = Vec::new();
        for item in items {
            let outcome = self.process(&item).await;
            if let (Outcome::Failed { .. }, Some(id)) = (&outcome, &item.message_id)
                && !failed_messages.iter().any(|f| &f.item_identifier == id)
            {
                failed_messages.push(ItemFailure {
                    item_identifier: id.clone(),
                });
            }
            results.push(outcome);
        }
        info!(request_id = %ctx.request_id, objects = results.len(), "event processed");
        if source == Source::Sqs {
            return Ok(Response {
                batch_item_failures: Some(failed_messages),
                results,
            });
        }
        let failures: Vec<(&str, String)> = results
            .iter()
            .filter_map(|o| match o {
                Outcome::Failed {
                    object,
                    error_type,
                    message,
                } => Some((error_type.as_str(), format!("{object}: {message}"))),
                _ => None,
            })
            .collect();
        if !failures.is_empty() {
            return Err(Error::batch(failures, results.len(), "objects"));
        }
        Ok(Response {
            batch_item_failures: None,
            results,
        })
    }

    /// The S3 notification S3 would send for an existing object (size and ETag from
    /// HeadObject): for running the converter by hand and in the local demo.
    pub async fn put_event_for(&self, bucket: &str, key: &str) -> Result<Value, Error> {
        let head = self
            .s3
            .head_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| Error::s3("HeadObject", bucket, key, e))?;
        Ok(event::s3_put_event(
            bucket,
            key,
            head.content_length().unwrap_or_default().max(0) as u64,
            head.e_tag(),
            head.version_id(),
        ))
    }

    /// One item of an event.
    pub async fn process(&self, item: &Item) -> Outcome {
        let target = match &item.work {
            Work::Convert(t) => t,
            Work::Skip(reason) => {
                info!(reason = %reason, "skipped");
                return Outcome::Skipped {
                    object: None,
                    reason: reason.clone(),
                };
            }
            Work::Fail {
                object,
                error_type,
                message,
            } => {
                warn!(object = %object, error_type = %error_type, "unreadable event record: {message}");
                return Outcome::Failed {
                    object: object.clone(),
                    error_type: error_type.clone(),
                    message: message.clone(),
                };
            }
        };
        if let Some(reason) = self.skip_reason(target) {
            info!(object = %target.object, reason = %reason, "skipped");
            return Outcome::Skipped {
                object: Some(target.object.to_string()),
                reason,
            };
        }
        match self.convert(&target.object).await {
            Ok(summary) => Outcome::Converted(Box::new(summary)),
            Err(e) => {
                warn!(object = %target.object, error_type = e.error_type(), "conversion failed: {e}");
                Outcome::Failed {
                    object: target.object.to_string(),
                    error_type: e.error_type().to_owned(),
                    message: e.to_string(),
                }
            }
        }
    }

    /// Why an object is not converted (the recursion guard and friends), if it is not.
    pub fn skip_reason(&self, t: &Target) -> Option<String> {
        let key = &t.object.key;
        let c = &self.config;
        if key.ends_with('/') {
            return Some("a folder marker".into());
        }
        if t.size == Some(0) {
            return Some("an empty object".into());
        }
        let same_bucket = c
            .output_bucket
            .as_deref()
            .is_none_or(|b| b == t.object.bucket);
        if same_bucket && (key.starts_with(&c.output_prefix) || key.starts_with(&c.error_prefix)) {
            return Some(format!(
                "under the output or error prefix ({:?}, {:?}): never converted again",
                c.output_prefix, c.error_prefix
            ));
        }
        let lower = key.to_ascii_lowercase();
        if let Some(ext) = [".parquet", ".orc", ".avro"]
            .iter()
            .find(|e| lower.ends_with(*e))
        {
            return Some(format!(
                "already a columnar file ({ext}): nothing to convert"
            ));
        }
        if !key.starts_with(&c.input_prefix) {
            return Some(format!("outside INPUT_PREFIX {:?}", c.input_prefix));
        }
        None
    }

    /// Converts one object and writes its manifest; removes files an earlier run of the same
    /// input produced that this run did not.
    pub async fn convert(&self, object: &ObjectRef) -> Result<Summary, Error> {
        let started = Instant::now();
        let names =
            Names::of(object, &self.config.input_prefix).map_err(|reason| Error::InvalidKey {
                key: object.key.clone(),
                reason,
            })?;
        let out_bucket = self
            .config
            .output_bucket
            .clone()
            .unwrap_or_else(|| object.bucket.clone());
        let manifest_key = names.manifest_key(&self.config.output_prefix);
        let previous = Manifest::read(&self.s3, &out_bucket, &manifest_key).await?;
        let summary = convert::convert(
            &self.s3,
            &self.config,
            object,
            &names,
            self.contract.as_deref(),
        )
        .await?;
        Manifest::of(object, &summary)
            .commit(&self.s3, &out_bucket, &manifest_key, previous.as_ref())
            .await?;
        self.report(object, &summary, started.elapsed());
        Ok(summary)
    }

    /// The metrics and the log line of one object converted.
    pub(crate) fn report(
        &self,
        object: &ObjectRef,
        summary: &Summary,
        elapsed: std::time::Duration,
    ) {
        let mut m = Metrics::new(&self.config.metrics_namespace, "parquet-converter");
        m.count("Rows", summary.rows)
            .count("BadRows", summary.bad_rows)
            .count("Files", summary.files.len() as u64)
            .count("Partitions", summary.partitions as u64)
            .count("DefaultPartitionRows", summary.default_partition_rows)
            .bytes("BytesIn", summary.bytes_in)
            .bytes("BytesOut", summary.bytes_out)
            .duration("Duration", elapsed)
            .property("Object", object.to_string());
        if let Some(t) = &summary.table {
            m.count("ColumnsAdded", t.columns_added.len() as u64)
                .count("ColumnsIgnored", t.columns_ignored.len() as u64)
                .count("CastBadRows", t.cast_bad_rows)
                .count("TablesCreated", u64::from(t.created))
                .property("Table", t.table.clone());
        }
        m.emit();
        info!(object = %object, rows = summary.rows, bad_rows = summary.bad_rows, files = summary.files.len(),
            bytes_in = summary.bytes_in, bytes_out = summary.bytes_out,
            widenings = summary.type_widenings, ms = elapsed.as_millis() as u64, "converted");
    }
}
