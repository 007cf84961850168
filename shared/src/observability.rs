//! Logging and metrics: tracing set-up and CloudWatch Embedded Metric Format (EMF) lines.
//!
//! * [`init_tracing`] installs a `tracing` subscriber once per cold start: JSON lines when
//!   `AWS_LAMBDA_LOG_FORMAT=JSON` (Lambda's structured logging setting), compact text otherwise.
//!   The level comes from `RUST_LOG`, else `AWS_LAMBDA_LOG_LEVEL`, else `info`.
//! * [`Metrics`] collects the figures of one unit of work and prints them as one EMF JSON line
//!   on stdout, which CloudWatch turns into metrics without any API call.
//!
//! # Lambda's log-level filter
//!
//! With `LoggingConfig.LogFormat: JSON`, Lambda sets `AWS_LAMBDA_LOG_LEVEL` and filters
//! application output itself ("Log-level filtering", AWS Lambda developer guide,
//! `monitoring-cloudwatchlogs-log-level`): a line on stdout or stderr is kept when it is a JSON
//! object whose `level` is at or above `ApplicationLogLevel` (TRACE < DEBUG < INFO < WARN <
//! ERROR < FATAL). "If the `level` value field is invalid or missing, Lambda will assign the log
//! output the level INFO", and a line without a valid RFC 3339 `timestamp` is also assigned
//! INFO (Lambda then adds a timestamp). So at WARN or ERROR every line without both fields is
//! dropped before CloudWatch Logs sees it, and an EMF document that never reaches CloudWatch
//! Logs is never turned into metrics. Hence:
//!
//! * every JSON tracing line carries `timestamp` (RFC 3339, UTC) and `level`;
//! * every EMF line carries a `timestamp` and the level Lambda keeps at the configured
//!   threshold: `INFO` at TRACE, DEBUG and INFO (an ordinary line there), else the threshold
//!   itself (`WARN`, `ERROR`, `FATAL`), so no application log level filters a metric out. The
//!   two keys are plain EMF properties (the metric timestamp stays `_aws.Timestamp`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value, json};
use tracing_subscriber::EnvFilter;

use crate::config::Env;

/// Installs the global tracing subscriber (a second call does nothing).
pub fn init_tracing(env: &Env) {
    let level = env
        .get("RUST_LOG")
        .map(str::to_owned)
        .or_else(|| {
            env.get("AWS_LAMBDA_LOG_LEVEL")
                .map(|l| l.to_ascii_lowercase())
        })
        .unwrap_or_else(|| "info".to_owned());
    // `EnvFilter` has no FATAL (Lambda's highest level): the closest is error.
    let level = level.replace("fatal", "error");
    let _ = EMF_LEVEL.set(emf_level(env.get("AWS_LAMBDA_LOG_LEVEL")));
    let filter = EnvFilter::try_new(&level).unwrap_or_else(|_| EnvFilter::new("info"));
    let json = env
        .get("AWS_LAMBDA_LOG_FORMAT")
        .is_some_and(|f| f.eq_ignore_ascii_case("json"));
    let in_lambda = env.get("AWS_LAMBDA_FUNCTION_NAME").is_some();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(std::io::stderr);
    let result = if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            // Keep the timer: Lambda's filter needs an RFC 3339 `timestamp` beside `level`
            // (see the module docs); the default timer writes one, in UTC.
            .try_init()
    } else if in_lambda {
        // Lambda adds its own timestamps and does not render colours.
        builder.with_ansi(false).without_time().compact().try_init()
    } else {
        builder.compact().try_init()
    };
    // Already initialised (tests, tools that set their own): keep the existing one.
    let _ = result;
}

/// Units CloudWatch knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// A plain count.
    Count,
    /// Bytes.
    Bytes,
    /// Milliseconds.
    Milliseconds,
    /// Bytes per second.
    BytesPerSecond,
}

impl Unit {
    fn as_str(self) -> &'static str {
        match self {
            Unit::Count => "Count",
            Unit::Bytes => "Bytes",
            Unit::Milliseconds => "Milliseconds",
            Unit::BytesPerSecond => "Bytes/Second",
        }
    }
}

/// One EMF record: a namespace, dimensions, metric values and free-form properties.
#[derive(Debug, Clone)]
pub struct Metrics {
    namespace: String,
    dimensions: Vec<(String, String)>,
    values: Vec<(String, f64, Unit)>,
    properties: Map<String, Value>,
}

impl Metrics {
    /// A record in `namespace` with one dimension, `Function = function`.
    pub fn new(namespace: &str, function: &str) -> Self {
        Metrics {
            namespace: namespace.to_owned(),
            dimensions: vec![("Function".to_owned(), function.to_owned())],
            values: Vec::new(),
            properties: Map::new(),
        }
    }

    /// Sets (or replaces) a metric value.
    pub fn put(&mut self, name: &str, value: f64, unit: Unit) -> &mut Self {
        if let Some(slot) = self.values.iter_mut().find(|(n, _, _)| n == name) {
            slot.1 = value;
            slot.2 = unit;
        } else {
            self.values.push((name.to_owned(), value, unit));
        }
        self
    }

    /// A count.
    pub fn count(&mut self, name: &str, value: u64) -> &mut Self {
        self.put(name, value as f64, Unit::Count)
    }

    /// A byte amount.
    pub fn bytes(&mut self, name: &str, value: u64) -> &mut Self {
        self.put(name, value as f64, Unit::Bytes)
    }

    /// A duration, in milliseconds.
    pub fn duration(&mut self, name: &str, value: Duration) -> &mut Self {
        self.put(name, value.as_secs_f64() * 1000.0, Unit::Milliseconds)
    }

    /// A searchable property that is not a metric (an object key, a request id).
    pub fn property(&mut self, name: &str, value: impl Into<Value>) -> &mut Self {
        self.properties.insert(name.to_owned(), value.into());
        self
    }

    /// The value of a metric, if set.
    pub fn get(&self, name: &str) -> Option<f64> {
        self.values
            .iter()
            .find(|(n, _, _)| n == name)
            .map(|(_, v, _)| *v)
    }

    /// The EMF JSON document, stamped with `timestamp_ms`, at log level `INFO`.
    pub fn to_json(&self, timestamp_ms: u64) -> Value {
        self.to_json_at(timestamp_ms, "INFO")
    }

    /// The EMF JSON document, stamped with `timestamp_ms` (as `_aws.Timestamp` and as the
    /// RFC 3339 `timestamp` Lambda's log filter reads) and carrying `level`.
    pub fn to_json_at(&self, timestamp_ms: u64, level: &str) -> Value {
        let mut root = self.properties.clone();
        let rfc3339 = DateTime::<Utc>::from_timestamp_millis(timestamp_ms as i64)
            .unwrap_or_default()
            .to_rfc3339_opts(SecondsFormat::Millis, true);
        root.insert("timestamp".to_owned(), Value::String(rfc3339));
        root.insert("level".to_owned(), Value::String(level.to_owned()));
        for (k, v) in &self.dimensions {
            root.insert(k.clone(), Value::String(v.clone()));
        }
        let mut defs = Vec::with_capacity(self.values.len());
        for (name, value, unit) in &self.values {
            root.insert(name.clone(), json!(value));
            defs.push(json!({"Name": name, "Unit": unit.as_str()}));
        }
        let dims: Vec<&str> = self.dimensions.iter().map(|(k, _)| k.as_str()).collect();
        root.insert(
            "_aws".to_owned(),
            json!({
                "Timestamp": timestamp_ms,
                "CloudWatchMetrics": [{
                    "Namespace": self.namespace,
                    "Dimensions": [dims],
                    "Metrics": defs,
                }],
            }),
        );
        Value::Object(root)
    }

    /// Prints the record as one line on stdout, where CloudWatch picks EMF up.
    pub fn emit(&self) {
        if !EMF_ENABLED.load(std::sync::atomic::Ordering::Relaxed) {
            return;
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let level = EMF_LEVEL
            .get_or_init(|| emf_level(std::env::var("AWS_LAMBDA_LOG_LEVEL").ok().as_deref()));
        println!("{}", self.to_json_at(now, level));
    }
}

/// The level EMF lines carry, set from `AWS_LAMBDA_LOG_LEVEL` at the first [`init_tracing`]
/// (or the first [`Metrics::emit`]).
static EMF_LEVEL: std::sync::OnceLock<&'static str> = std::sync::OnceLock::new();

/// The level an EMF line needs to pass Lambda's filter at `threshold` (`AWS_LAMBDA_LOG_LEVEL`,
/// any case): INFO up to INFO, the threshold above it; INFO when unset or not a level.
fn emf_level(threshold: Option<&str>) -> &'static str {
    match threshold.map(|l| l.trim().to_ascii_uppercase()).as_deref() {
        Some("WARN" | "WARNING") => "WARN",
        Some("ERROR") => "ERROR",
        Some("FATAL" | "CRITICAL") => "FATAL",
        _ => "INFO",
    }
}

static EMF_ENABLED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

/// Turns the EMF lines on stdout on or off (on by default; tools that run the handlers in
/// their own process, like the local demo, turn them off to keep their output readable).
pub fn set_emf_output(enabled: bool) {
    EMF_ENABLED.store(enabled, std::sync::atomic::Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emf_document_declares_every_metric_and_dimension() {
        let mut m = Metrics::new("Tributary", "firehose-transformer");
        m.count("RecordsIn", 3)
            .bytes("BytesIn", 1024)
            .duration("Duration", Duration::from_millis(12))
            .property("RequestId", "abc");
        m.count("RecordsIn", 4);
        let doc = m.to_json(1_700_000_000_000);
        assert_eq!(doc["Function"], "firehose-transformer");
        assert_eq!(doc["RecordsIn"], 4.0);
        assert_eq!(doc["BytesIn"], 1024.0);
        assert_eq!(doc["Duration"], 12.0);
        assert_eq!(doc["RequestId"], "abc");
        let cw = &doc["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(doc["_aws"]["Timestamp"], 1_700_000_000_000u64);
        assert_eq!(cw["Namespace"], "Tributary");
        assert_eq!(cw["Dimensions"], json!([["Function"]]));
        let names: Vec<&str> = cw["Metrics"]
            .as_array()
            .expect("array")
            .iter()
            .map(|d| d["Name"].as_str().expect("name"))
            .collect();
        assert_eq!(names, ["RecordsIn", "BytesIn", "Duration"]);
        assert_eq!(cw["Metrics"][1]["Unit"], "Bytes");
        assert_eq!(m.get("BytesIn"), Some(1024.0));
        assert_eq!(doc["level"], "INFO");
        assert_eq!(doc["timestamp"], "2023-11-14T22:13:20.000Z");
    }

    #[test]
    fn emf_lines_are_at_a_level_lambda_keeps_at_every_threshold() {
        let rank = |l: &str| {
            ["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"]
                .iter()
                .position(|x| *x == l)
                .expect("a Lambda level")
        };
        for threshold in ["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"] {
            let level = emf_level(Some(threshold));
            assert!(rank(level) >= rank(threshold), "{threshold}: {level}");
            assert!(rank(level) >= rank("INFO"), "{threshold}: {level}");
        }
        assert_eq!(emf_level(Some("warn")), "WARN");
        assert_eq!(emf_level(None), "INFO");
        assert_eq!(emf_level(Some("bogus")), "INFO");
        let doc = Metrics::new("N", "f").to_json_at(0, "ERROR");
        assert_eq!(doc["level"], "ERROR");
        assert_eq!(doc["timestamp"], "1970-01-01T00:00:00.000Z");
    }
}
