//! The three ways an "object created" reaches the converter, reduced to one list of objects.
//!
//! * S3 notifications (`Records[].s3`), keys URL-encoded in form style;
//! * EventBridge "Object Created" events (`detail.bucket.name`, `detail.object.key`, not
//!   encoded);
//! * SQS messages whose body is an S3 notification; each object remembers its message id so
//!   the handler can answer with `batchItemFailures`;
//! * items: `{"bucket", "key", "etag"?, "size"?}` (key as stored, not encoded), one object
//!   named directly, as a backfill's map sends it; or a batch of them, `{"Items": [...],
//!   "BatchInput": {"bucket"}}`, whose items may be S3 listing entries (`Key`, `Etag`, `Size`).
//!
//! Anything that is not an object creation (deletes, S3's `s3:TestEvent`) is skipped with a
//! reason. Anything that should name an object and cannot be read (a key that is not valid
//! form encoding, a record without a bucket or key, an SQS body that is not an S3
//! notification) is a failure, never a skip: the invocation fails (or, from SQS, the message
//! is reported in `batchItemFailures`), so S3's retries, the on-failure destination or the
//! dead-letter queue see it instead of it being acknowledged and lost.

use serde_json::Value;
use tributary::object::decode_event_key;
use tributary::{Error, ObjectRef};

/// One object to convert, or why there is nothing to convert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// The SQS message it came in, if any.
    pub message_id: Option<String>,
    /// What to do.
    pub work: Work,
}

/// What one record of an event asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Work {
    /// Convert this object.
    Convert(Target),
    /// Nothing to do (not an object creation, a test event), and why.
    Skip(String),
    /// The record cannot be read: it fails like a failed conversion.
    Fail {
        /// What it names, as far as it could be read (`s3://bucket/raw-key`, the message id).
        object: String,
        /// `errorType`.
        error_type: String,
        /// What is wrong, naming the key or field.
        message: String,
    },
}

impl Work {
    fn fail(object: impl Into<String>, e: &Error) -> Work {
        Work::Fail {
            object: object.into(),
            error_type: e.error_type().to_owned(),
            message: e.to_string(),
        }
    }
}

/// An object to convert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Bucket, decoded key, version, ETag.
    pub object: ObjectRef,
    /// Size from the event, when it said.
    pub size: Option<i64>,
}

/// How the event arrived (decides the response shape).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// S3 notification, invoked directly.
    S3,
    /// EventBridge.
    EventBridge,
    /// SQS batch.
    Sqs,
    /// Objects named directly (a backfill's items); answered as an S3 notification is.
    Item,
}

/// Reads any of the shapes.
pub fn parse(event: &Value) -> Result<(Source, Vec<Item>), Error> {
    if event.get("detail-type").is_some() || event.get("detail").is_some() {
        return Ok((Source::EventBridge, vec![eventbridge(event)]));
    }
    if event.get("Records").is_none() {
        if let Some(items) = event.get("Items") {
            let bucket = event["BatchInput"]["bucket"].as_str();
            let Some(items) = items.as_array() else {
                return Err(Error::invalid_event(
                    "Items: an array of {bucket, key} items",
                    "Items that is not an array",
                ));
            };
            let items = items
                .iter()
                .enumerate()
                .map(|(i, it)| named(it, bucket, &format!("Items[{i}]")))
                .collect();
            return Ok((Source::Item, items));
        }
        if event.get("key").is_some() || event.get("Key").is_some() {
            return Ok((Source::Item, vec![named(event, None, "the item")]));
        }
    }
    let records = event
        .get("Records")
        .and_then(Value::as_array)
        .ok_or_else(|| {
            let shape = match event {
                Value::Object(_) => "an object without Records or detail",
                Value::Array(_) => "an array",
                Value::String(_) => "a string",
                Value::Number(_) => "a number",
                Value::Bool(_) => "a boolean",
                Value::Null => "null",
            };
            Error::invalid_event(
                "an S3 notification (Records), an SQS batch of them (Records), an EventBridge Object Created event (detail) or an item naming an object ({bucket, key}, or Items)",
                shape,
            )
        })?;
    let is_sqs = records
        .first()
        .and_then(|r| r.get("eventSource"))
        .and_then(Value::as_str)
        == Some("aws:sqs");
    if !is_sqs {
        return Ok((Source::S3, s3_records(event, None)?));
    }
    let mut items = Vec::new();
    for rec in records {
        let id = rec
            .get("messageId")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let what = format!("SQS message {}", id.as_deref().unwrap_or("(no messageId)"));
        let body = rec.get("body").and_then(Value::as_str).unwrap_or_default();
        match serde_json::from_str::<Value>(body) {
            Ok(inner) if inner.get("Event").and_then(Value::as_str) == Some("s3:TestEvent") => {
                items.push(Item {
                    message_id: id,
                    work: Work::Skip("S3 test event".into()),
                })
            }
            Ok(inner) => match s3_records(&inner, id.clone()) {
                Ok(mut found) => items.append(&mut found),
                Err(e) => items.push(Item {
                    message_id: id,
                    work: Work::fail(
                        &what,
                        &Error::invalid_input(
                            &what,
                            format!("the body is not an S3 notification: {e}"),
                        ),
                    ),
                }),
            },
            Err(e) => items.push(Item {
                message_id: id,
                work: Work::fail(
                    &what,
                    &Error::invalid_input(&what, format!("the body is not JSON: {e}")),
                ),
            }),
        }
    }
    Ok((Source::Sqs, items))
}

fn s3_records(event: &Value, message_id: Option<String>) -> Result<Vec<Item>, Error> {
    // Read leniently: only the fields used, so events from S3-compatible stores that omit
    // the rest (userIdentity, requestParameters, ...) work too.
    let records = event
        .get("Records")
        .and_then(Value::as_array)
        .ok_or_else(|| Error::invalid_input("S3 event", "no Records array"))?;
    Ok(records
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let name = r["eventName"].as_str().unwrap_or_default();
            let obj = &r["s3"]["object"];
            let work = if !name.starts_with("ObjectCreated:") {
                Work::Skip(format!("event {name:?} is not an object creation"))
            } else {
                match (r["s3"]["bucket"]["name"].as_str(), obj["key"].as_str()) {
                    (Some(bucket), Some(raw_key)) => match decode_event_key(raw_key) {
                        Ok(key) => Work::Convert(Target {
                            object: ObjectRef::new(bucket, key)
                                .with_version(obj["versionId"].as_str())
                                .with_etag(obj["eTag"].as_str()),
                            size: obj["size"].as_i64(),
                        }),
                        Err(e) => Work::fail(format!("s3://{bucket}/{raw_key}"), &e),
                    },
                    (bucket, _) => {
                        let what = format!("Records[{i}]");
                        Work::fail(
                            bucket.map_or(what.clone(), |b| format!("s3://{b}/")),
                            &Error::invalid_input(
                                what,
                                "an ObjectCreated record without s3.bucket.name or s3.object.key",
                            ),
                        )
                    }
                }
            };
            Item {
                message_id: message_id.clone(),
                work,
            }
        })
        .collect())
}

/// One object named directly: `bucket` (or the batch's), `key` as stored, `etag` and `size`
/// when known; S3 listing spellings (`Key`, `Etag`/`ETag`, `Size`) read the same.
fn named(item: &Value, batch_bucket: Option<&str>, what: &str) -> Item {
    let field = |names: &[&str]| names.iter().find_map(|n| item.get(*n));
    let bucket = field(&["bucket", "Bucket"])
        .and_then(Value::as_str)
        .or(batch_bucket);
    let key = field(&["key", "Key"]).and_then(Value::as_str);
    let work = match (bucket, key) {
        (Some(b), Some(k)) if !b.is_empty() && !k.is_empty() => Work::Convert(Target {
            object: ObjectRef::new(b, k)
                .with_version(field(&["version_id", "VersionId"]).and_then(Value::as_str))
                .with_etag(field(&["etag", "Etag", "ETag"]).and_then(Value::as_str)),
            size: field(&["size", "Size"]).and_then(Value::as_i64),
        }),
        (bucket, _) => Work::fail(
            bucket.map_or_else(|| what.to_owned(), |b| format!("s3://{b}/")),
            &Error::invalid_input(
                what,
                "an item names its object with a non-empty \"bucket\" (or the batch's BatchInput.bucket) and \"key\"",
            ),
        ),
    };
    Item {
        message_id: None,
        work,
    }
}

fn eventbridge(event: &Value) -> Item {
    let detail_type = event
        .get("detail-type")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let detail = &event["detail"];
    let work = if detail_type != "Object Created" {
        Work::Skip(format!(
            "EventBridge {detail_type:?} is not an object creation"
        ))
    } else {
        match (
            detail["bucket"]["name"].as_str(),
            detail["object"]["key"].as_str(),
        ) {
            (Some(b), Some(k)) if !k.is_empty() => Work::Convert(Target {
                object: ObjectRef::new(b, k)
                    .with_version(detail["object"]["version-id"].as_str())
                    .with_etag(detail["object"]["etag"].as_str()),
                size: detail["object"]["size"].as_i64(),
            }),
            (bucket, _) => Work::fail(
                bucket.map_or("EventBridge event".to_owned(), |b| format!("s3://{b}/")),
                &Error::invalid_input(
                    "EventBridge detail",
                    "an Object Created event without bucket.name or object.key",
                ),
            ),
        }
    };
    Item {
        message_id: None,
        work,
    }
}

/// The S3 notification S3 sends for a `PutObject` of `key` (form-encoded), `size` bytes,
/// `etag`: what the local demo and the example binary hand to the handler.
pub fn s3_put_event(
    bucket: &str,
    key: &str,
    size: u64,
    etag: Option<&str>,
    version_id: Option<&str>,
) -> Value {
    let mut object = serde_json::json!({
        "key": tributary::object::encode_event_key(key),
        "size": size,
        "sequencer": "0000000000000000",
    });
    if let Some(e) = etag {
        object["eTag"] = Value::from(e.trim_matches('"'));
    }
    if let Some(v) = version_id {
        object["versionId"] = Value::from(v);
    }
    serde_json::json!({"Records": [{
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": "us-east-1",
        "eventTime": chrono::DateTime::<chrono::Utc>::from(std::time::SystemTime::now())
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "eventName": "ObjectCreated:Put",
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": "tributary-local",
            "bucket": {"name": bucket, "arn": format!("arn:aws:s3:::{bucket}")},
            "object": object,
        }
    }]})
}
