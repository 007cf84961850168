//! Partitioning: a batch's rows grouped by Hive partition path (`PARTITION_BY`, or the `k=v`
//! segments of the input key), each distinct value formatted once per batch.

use std::collections::HashMap;

use arrow::array::{Array, ArrayRef, RecordBatch, StringArray};
use arrow::compute::kernels::cast::cast;
use arrow::datatypes::{DataType, TimeUnit};
use tributary::Error;

use super::decode::arrow_err;
use super::plan::Plan;
use crate::config::{Config, PartitionSpec};
use crate::naming::Names;
use tributary::partition::{self, HIVE_DEFAULT_PARTITION, TimeLevel};

/// Turns batches into groups of rows per partition path.
pub(super) struct Partitioner {
    /// `PARTITION_BY`, or nothing when this input has none of its columns (then the `k=v`
    /// segments of the input key are the partition path, as for Firehose output).
    specs: Vec<PartitionSpec>,
    /// The input key's `k=v` segments, joined.
    key_partitions: String,
    /// `TIMESTAMP_FORMATS`, for text partition columns.
    formats: Vec<String>,
}

/// A batch's rows by partition path, and the number of rows in default partitions.
pub(super) type Groups = (Vec<(String, Vec<u32>)>, u64);

impl Partitioner {
    pub(super) fn new(cfg: &Config, plan: &Plan, names: &Names) -> Partitioner {
        let has = |c: &str| {
            plan.columns
                .iter()
                .any(|col| col.name.eq_ignore_ascii_case(c) || col.input_name() == c)
        };
        let specs = if cfg.partition_by.iter().any(|spec| match spec {
            PartitionSpec::Time { column, .. } | PartitionSpec::Value { column } => has(column),
        }) {
            cfg.partition_by.clone()
        } else {
            Vec::new()
        };
        Partitioner {
            specs,
            key_partitions: names.key_partitions.join("/"),
            formats: plan.formats.clone(),
        }
    }

    /// The partition keys of the paths this partitioner writes, with their Athena types
    /// (the time levels as `int`, values as `string`), outermost first.
    pub(super) fn keys(&self) -> Vec<(String, &'static str)> {
        let kind = |name: &str| {
            if TimeLevel::ACCEPTED.contains(&name) {
                "int"
            } else {
                "string"
            }
        };
        if self.specs.is_empty() {
            return self
                .key_partitions
                .split('/')
                .filter_map(|seg| seg.split_once('=').map(|(k, _)| k.to_ascii_lowercase()))
                .map(|k| {
                    let t = kind(&k);
                    (k, t)
                })
                .collect();
        }
        self.specs
            .iter()
            .flat_map(|spec| match spec {
                PartitionSpec::Time { level, .. } => level
                    .levels()
                    .iter()
                    .map(|l| (l.name().to_owned(), "int"))
                    .collect::<Vec<_>>(),
                PartitionSpec::Value { column } => vec![(column.to_ascii_lowercase(), "string")],
            })
            .collect()
    }

    /// The batch's rows grouped by partition path, paths in order, and how many of them went
    /// to a default partition. Each distinct value is formatted once per batch, not once per
    /// row.
    pub(super) fn groups(&self, batch: &RecordBatch) -> Result<Groups, Error> {
        let n = batch.num_rows();
        if self.specs.is_empty() {
            let fixed = self.key_partitions.clone();
            return Ok((vec![(fixed, (0..n as u32).collect())], 0));
        }
        let specs = self
            .specs
            .iter()
            .map(|spec| match spec {
                PartitionSpec::Time { column, level } => {
                    time_segments(batch, column, *level, &self.formats)
                }
                PartitionSpec::Value { column } => value_segments(batch, column),
            })
            .collect::<Result<Vec<Segments>, Error>>()?;
        // Rows with the same code in every spec share a path: one number per row when the
        // codes fit (mixed radix), else the list of codes.
        let fits = specs
            .iter()
            .try_fold(1u64, |acc, s| acc.checked_mul(s.segments.len() as u64))
            .is_some();
        let groups: Vec<Vec<u32>> = if fits {
            let mut g: HashMap<u64, Vec<u32>> = HashMap::new();
            for row in 0..n {
                let key = specs.iter().fold(0u64, |k, s| {
                    k * s.segments.len() as u64 + u64::from(s.codes[row])
                });
                g.entry(key).or_default().push(row as u32);
            }
            g.into_values().collect()
        } else {
            let mut g: HashMap<Vec<u32>, Vec<u32>> = HashMap::new();
            for row in 0..n {
                let key = specs.iter().map(|s| s.codes[row]).collect();
                g.entry(key).or_default().push(row as u32);
            }
            g.into_values().collect()
        };
        let mut default_rows = 0;
        let mut out: Vec<(String, Vec<u32>)> = groups
            .into_iter()
            .map(|rows| {
                let first = rows[0] as usize;
                let mut defaulted = false;
                let path = specs
                    .iter()
                    .map(|s| {
                        let (seg, d) = &s.segments[s.codes[first] as usize];
                        defaulted |= *d;
                        seg.as_str()
                    })
                    .collect::<Vec<_>>()
                    .join("/");
                if defaulted {
                    default_rows += rows.len() as u64;
                }
                (path, rows)
            })
            .collect();
        out.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        Ok((out, default_rows))
    }
}

fn column<'b>(batch: &'b RecordBatch, name: &str) -> Result<&'b ArrayRef, Error> {
    let schema = batch.schema_ref();
    let found = schema
        .index_of(name)
        .ok()
        .or_else(|| {
            schema
                .fields()
                .iter()
                .position(|f| f.name().eq_ignore_ascii_case(name))
        })
        .map(|i| batch.column(i));
    found.ok_or_else(|| {
        Error::config(
            "PARTITION_BY",
            name,
            "no such column in this input",
            batch
                .schema()
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .collect::<Vec<_>>()
                .join(", "),
        )
    })
}

/// One partition spec over a batch: a code per row into distinct path segments
/// (`year=2024/month=01`, `col=value`), each with whether it holds a default value.
struct Segments {
    codes: Vec<u32>,
    segments: Vec<(String, bool)>,
}

/// The time layout's segments ([`TimeLevel::path`], down to `level`) of a date or timestamp
/// column, from its UTC instant: a timestamp with an offset lands on the UTC day and hour it
/// denotes (`2024-03-10T23:30:00-05:00` is `day=11/hour=04`), a naive one on its wall-clock
/// day. Text columns are read as timestamp columns are ([`crate::types::parse_timestamp`]:
/// ISO 8601 and `TIMESTAMP_FORMATS`); a value that is not a date or timestamp, and a null, go
/// to the default partition.
fn time_segments(
    batch: &RecordBatch,
    name: &str,
    level: TimeLevel,
    formats: &[String],
) -> Result<Segments, Error> {
    use arrow::array::AsArray;
    use arrow::datatypes::{
        Date32Type, Date64Type, TimestampMicrosecondType, TimestampMillisecondType,
        TimestampNanosecondType, TimestampSecondType,
    };
    let col = column(batch, name)?;
    // One bucket per hour at the hour level, per day otherwise; each distinct bucket is
    // formatted once.
    let unit: i64 = if level == TimeLevel::Hour {
        3_600_000_000
    } else {
        86_400_000_000
    };
    let n = batch.num_rows();
    let micros: Vec<Option<i64>> = match col.data_type() {
        DataType::Timestamp(TimeUnit::Second, _) => col
            .as_primitive::<TimestampSecondType>()
            .iter()
            .map(|v| v.and_then(|v| v.checked_mul(1_000_000)))
            .collect(),
        DataType::Timestamp(TimeUnit::Millisecond, _) => col
            .as_primitive::<TimestampMillisecondType>()
            .iter()
            .map(|v| v.and_then(|v| v.checked_mul(1_000)))
            .collect(),
        DataType::Timestamp(TimeUnit::Microsecond, _) => col
            .as_primitive::<TimestampMicrosecondType>()
            .iter()
            .collect(),
        DataType::Timestamp(TimeUnit::Nanosecond, _) => col
            .as_primitive::<TimestampNanosecondType>()
            .iter()
            .map(|v| v.map(|v| v.div_euclid(1_000)))
            .collect(),
        DataType::Date32 => col
            .as_primitive::<Date32Type>()
            .iter()
            .map(|d| d.map(|d| i64::from(d) * 86_400_000_000))
            .collect(),
        DataType::Date64 => col
            .as_primitive::<Date64Type>()
            .iter()
            .map(|d| d.and_then(|d| d.checked_mul(1_000)))
            .collect(),
        _ => {
            let text = cast(col, &DataType::Utf8).map_err(arrow_err)?;
            text.as_string::<i32>()
                .iter()
                .map(|v| {
                    v.and_then(|v| crate::types::parse_timestamp(v, formats))
                        .map(|t| t.0)
                })
                .collect()
        }
    };
    let mut dict: HashMap<Option<i64>, u32> = HashMap::new();
    let mut out = Segments {
        codes: Vec::with_capacity(n),
        segments: Vec::new(),
    };
    // Rows of one batch mostly fall in the bucket of the row before: asked of the map only
    // when the bucket changes.
    let mut last: Option<(Option<i64>, u32)> = None;
    for v in micros {
        let bucket = v.map(|t| t.div_euclid(unit));
        if let Some((b, code)) = last
            && b == bucket
        {
            out.codes.push(code);
            continue;
        }
        let code = *dict.entry(bucket).or_insert_with(|| {
            let at = bucket
                .and_then(|b| b.checked_mul(unit))
                .and_then(chrono::DateTime::from_timestamp_micros);
            let seg = level.path(at.as_ref());
            out.segments.push((seg, at.is_none()));
            out.segments.len() as u32 - 1
        });
        last = Some((bucket, code));
        out.codes.push(code);
    }
    Ok(out)
}

fn value_segments(batch: &RecordBatch, name: &str) -> Result<Segments, Error> {
    let col = column(batch, name)?;
    let strings = cast(col, &DataType::Utf8).map_err(arrow_err)?;
    let strings = strings
        .as_any()
        .downcast_ref::<StringArray>()
        .ok_or_else(|| {
            Error::undecodable(format!("partition column {name}"), "cannot be read as text")
        })?;
    let key = partition::escape(name).unwrap_or_else(|| HIVE_DEFAULT_PARTITION.to_owned());
    let mut dict: HashMap<Option<&str>, u32> = HashMap::new();
    let mut out = Segments {
        codes: Vec::with_capacity(batch.num_rows()),
        segments: Vec::new(),
    };
    for row in 0..batch.num_rows() {
        let v = strings.is_valid(row).then(|| strings.value(row));
        let code = *dict.entry(v).or_insert_with(|| {
            let (value, defaulted) = match v.and_then(partition::escape) {
                Some(value) => (value, false),
                None => (HIVE_DEFAULT_PARTITION.to_owned(), true),
            };
            out.segments.push((format!("{key}={value}"), defaulted));
            out.segments.len() as u32 - 1
        });
        out.codes.push(code);
    }
    Ok(out)
}
