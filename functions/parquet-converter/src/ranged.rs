//! The converter's modes for one large object in byte ranges (`"mode"` in the event), as the
//! large-object state machine runs them: `plan`, then `range` for each line of the plan (the
//! Map's items), then `commit`, or `commit` with `"abort": true` when a range failed. The
//! mechanics are [`crate::convert::ranges`]'s.
//!
//! * `{"mode": "plan", "bucket", "key", "etag"?, "version_id"?, "split_mb"?}` answers
//!   [`PlanAnswer`]; the ranges are written as JSON lines, one `range` request per line.
//! * `{"mode": "range", "bucket", "key", "etag", "version_id"?, "index", "start", "end",
//!   "first_line", "whole"}` answers [`RangeAnswer`].
//! * `{"mode": "commit", "bucket", "key", "etag", "version_id"?, "ranges", "abort"?}`
//!   answers the object's [`Outcome`] (`converted`, or `aborted`).
//!
//! And for the backfill: `{"mode": "totals", "bucket", "key"}` adds up a Map Run's results
//! ([`crate::totals`]).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tracing::info;
use tributary::{Error, ObjectRef};

use crate::convert::ranges::{self, ByteRange};
use crate::event::Target;
use crate::naming::Names;
use crate::{Converter, Outcome};

/// The modes a request names.
pub const MODES: [&str; 4] = ["plan", "range", "commit", "totals"];

/// The object a request is about.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ObjectArgs {
    /// Bucket.
    pub bucket: String,
    /// Key, as stored (not URL-encoded).
    pub key: String,
    /// ETag (quotes optional); the plan reads it when absent, every later step needs it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    /// Version, when the bucket is versioned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
}

impl ObjectArgs {
    fn object(&self) -> ObjectRef {
        ObjectRef::new(&self.bucket, &self.key)
            .with_version(self.version_id.as_deref())
            .with_etag(self.etag.as_deref().map(|e| e.trim_matches('"')))
    }
}

#[derive(Debug, Deserialize)]
struct PlanRequest {
    #[serde(flatten)]
    object: ObjectArgs,
    /// Overrides `SPLIT_MB`.
    #[serde(default)]
    split_mb: Option<u64>,
}

/// One line of the plan: a `range` request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RangeRequest {
    /// Always `range`.
    pub mode: String,
    #[serde(flatten)]
    /// The object.
    pub object: ObjectArgs,
    #[serde(flatten)]
    /// Its bytes to convert.
    pub range: ByteRange,
}

#[derive(Debug, Deserialize)]
struct CommitRequest {
    #[serde(flatten)]
    object: ObjectArgs,
    /// How many ranges the plan cut.
    ranges: u32,
    /// A range failed: undo every range instead.
    #[serde(default)]
    abort: bool,
}

/// Where the plan's lines are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Location {
    /// Bucket.
    pub bucket: String,
    /// Key.
    pub key: String,
}

/// The plan: the object pinned, how many ranges, and where their requests are.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlanAnswer {
    /// The object, its ETag read when the request had none.
    #[serde(flatten)]
    pub object: ObjectArgs,
    /// Its stored size.
    pub bytes: u64,
    /// Ranges cut.
    pub ranges: u32,
    /// The JSON lines of the range requests (the Map's item reader reads them).
    pub manifest: Location,
}

/// A range converted (its files sealed, invisible until the commit).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeAnswer {
    /// The range.
    pub index: u32,
    /// Rows written.
    pub rows: u64,
    /// Rows set aside.
    pub bad_rows: u64,
    /// Files written (sealed).
    pub files: usize,
    /// Parquet bytes.
    pub bytes_out: u64,
}

fn parse<T: serde::de::DeserializeOwned>(event: Value, mode: &str) -> Result<T, Error> {
    serde_json::from_value(event).map_err(|e| {
        Error::invalid_event(
            format!("a {mode:?} request (see the README's \"One large object\")"),
            e,
        )
    })
}

impl Converter {
    /// A request with `"mode"`: `plan`, `range` or `commit`.
    pub async fn handle_mode(&self, mode: &str, event: Value) -> Result<Value, Error> {
        let answer = match mode {
            "plan" => serde_json::to_value(self.plan(parse(event, mode)?).await?),
            "range" => serde_json::to_value(self.range(parse(event, mode)?).await?),
            "commit" => serde_json::to_value(self.commit(parse(event, mode)?).await?),
            "totals" => {
                serde_json::to_value(crate::totals::totals(&self.s3, &parse(event, mode)?).await?)
            }
            other => {
                return Err(Error::invalid_input(
                    "mode",
                    format!("{other:?}: expected one of {}", MODES.join(", ")),
                ));
            }
        };
        answer.map_err(|e| Error::Json {
            what: format!("the {mode} answer"),
            source: e,
        })
    }

    /// The object and its names, after the checks every conversion makes.
    fn checked(&self, args: &ObjectArgs, need_etag: bool) -> Result<(ObjectRef, Names), Error> {
        let object = args.object();
        if need_etag && object.etag.is_none() {
            return Err(Error::invalid_input(
                "etag",
                "missing: every step after the plan reads the object the plan cut (its ETag)",
            ));
        }
        let target = Target {
            object: object.clone(),
            size: None,
        };
        if let Some(reason) = self.skip_reason(&target) {
            return Err(Error::invalid_input(
                "key",
                format!("{object} is not converted: {reason}"),
            ));
        }
        let names =
            Names::of(&object, &self.config.input_prefix).map_err(|reason| Error::InvalidKey {
                key: object.key.clone(),
                reason,
            })?;
        Ok((object, names))
    }

    async fn plan(&self, req: PlanRequest) -> Result<PlanAnswer, Error> {
        let mut args = req.object;
        if args.etag.is_none() {
            let head = self
                .s3
                .head_object()
                .bucket(&args.bucket)
                .key(&args.key)
                .set_version_id(args.version_id.clone())
                .send()
                .await
                .map_err(|e| Error::s3("HeadObject", &args.bucket, &args.key, e))?;
            args.etag = head.e_tag().map(|e| e.trim_matches('"').to_owned());
        }
        let (object, names) = self.checked(&args, true)?;
        let split = match req.split_mb {
            Some(mb) if (1..=1 << 20).contains(&mb) => mb << 20,
            Some(mb) => {
                return Err(Error::invalid_input(
                    "split_mb",
                    format!("{mb}: expected 1 to 1048576"),
                ));
            }
            None => self.config.split_bytes,
        };
        let cut = ranges::plan(
            &self.s3,
            &self.config,
            &object,
            &names,
            self.contract.as_deref(),
            split,
        )
        .await?;
        let bucket = self
            .config
            .output_bucket
            .clone()
            .unwrap_or_else(|| object.bucket.clone());
        let key = ranges::plan_key(&names, &self.config);
        let mut lines = Vec::new();
        for r in &cut {
            let req = RangeRequest {
                mode: "range".into(),
                object: args.clone(),
                range: *r,
            };
            serde_json::to_writer(&mut lines, &req).map_err(|e| Error::Json {
                what: "the plan".into(),
                source: e,
            })?;
            lines.push(b'\n');
        }
        self.s3
            .put_object()
            .bucket(&bucket)
            .key(&key)
            .content_type("application/x-ndjson")
            .body(lines.into())
            .send()
            .await
            .map_err(|e| Error::s3("PutObject", &bucket, &key, e))?;
        let bytes = cut.last().map_or(0, |r| r.end);
        info!(object = %object, bytes, ranges = cut.len(), "planned");
        Ok(PlanAnswer {
            object: args,
            bytes,
            ranges: cut.len() as u32,
            manifest: Location { bucket, key },
        })
    }

    async fn range(&self, req: RangeRequest) -> Result<RangeAnswer, Error> {
        let (object, names) = self.checked(&req.object, true)?;
        let r = req.range;
        if r.end < r.start || r.first_line == 0 {
            return Err(Error::invalid_input(
                "start, end, first_line",
                format!(
                    "bytes {}..{} from line {}: not a range the plan cuts",
                    r.start, r.end, r.first_line
                ),
            ));
        }
        let done = ranges::convert_range(
            &self.s3,
            &self.config,
            &object,
            &names,
            self.contract.as_deref(),
            &r,
        )
        .await?;
        let s = &done.sealed.summary;
        info!(object = %object, range = r.index, rows = s.rows, bad_rows = s.bad_rows, files = s.files.len(), "range converted (sealed)");
        Ok(RangeAnswer {
            index: r.index,
            rows: s.rows,
            bad_rows: s.bad_rows,
            files: s.files.len(),
            bytes_out: s.bytes_out,
        })
    }

    async fn commit(&self, req: CommitRequest) -> Result<Outcome, Error> {
        let (object, names) = self.checked(&req.object, true)?;
        if req.abort {
            let aborted =
                ranges::abort(&self.s3, &self.config, &object, &names, req.ranges).await?;
            info!(object = %object, uploads = aborted, "ranges aborted: nothing committed");
            return Ok(Outcome::Aborted {
                object: object.to_string(),
                uploads_aborted: aborted,
            });
        }
        let started = std::time::Instant::now();
        let summary = ranges::commit(
            &self.s3,
            &self.config,
            &object,
            &names,
            self.contract.as_deref(),
            req.ranges,
        )
        .await?;
        self.report(&object, &summary, started.elapsed());
        Ok(Outcome::Converted(Box::new(summary)))
    }
}
