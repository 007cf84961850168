//! The converter's configuration, read once at cold start.
//!
//! Every choice among fixed words (`BAD_ROWS`, `INPUT_FORMAT`, `COMPRESSION`, the levels of
//! `PARTITION_BY`) is an enum whose `FromStr` names the accepted words, read through
//! [`Env::choice_or`] or [`Env::parse_list`].

use std::str::FromStr;

use parquet::basic::{Compression, GzipLevel, ZstdLevel};
use tributary::config::{UnknownChoice, choice};
use tributary::partition::TimeLevel;
use tributary::{Env, Error};

use crate::types::{Schemas, check_format, parse_schemas};

/// What happens to a row that cannot be read (`BAD_ROWS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadRows {
    /// Written as JSON lines under `ERROR_PREFIX` (line, error, raw text); the rest converts.
    Quarantine,
    /// The object fails.
    Fail,
}

impl FromStr for BadRows {
    type Err = UnknownChoice;

    /// `quarantine` or `fail`, any case.
    fn from_str(s: &str) -> Result<BadRows, UnknownChoice> {
        choice(
            s,
            &[("quarantine", BadRows::Quarantine), ("fail", BadRows::Fail)],
            &["quarantine", "fail"],
        )
    }
}

/// What `PARTITION_BY` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartitionSpec {
    /// `col:year|month|day|hour`: date parts of a timestamp/date column, down to this level.
    Time {
        /// Column.
        column: String,
        /// The finest level written.
        level: TimeLevel,
    },
    /// `col`: `col=value`.
    Value {
        /// Column.
        column: String,
    },
}

impl PartitionSpec {
    /// What a `PARTITION_BY` item may be.
    pub const EXPECTED: &'static str = "col, or col:year|month|day|hour";
}

impl FromStr for PartitionSpec {
    type Err = String;

    /// One `PARTITION_BY` item: `col`, or `col:level` with a [`TimeLevel`].
    fn from_str(item: &str) -> Result<PartitionSpec, String> {
        Ok(match item.split_once(':') {
            None => PartitionSpec::Value {
                column: item.to_owned(),
            },
            Some((col, level)) => PartitionSpec::Time {
                column: col.to_owned(),
                level: level
                    .parse()
                    .map_err(|_| format!("unknown time level {level:?}"))?,
            },
        })
    }
}

/// Input formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Comma- (or `CSV_DELIMITER`-) separated values with a header line.
    Csv,
    /// Tab-separated values with a header line.
    Tsv,
    /// JSON lines, or concatenated JSON objects.
    Json,
}

impl FromStr for Format {
    type Err = UnknownChoice;

    /// `csv`, `tsv`, or `json` (also `jsonl`, `ndjson`), any case.
    fn from_str(s: &str) -> Result<Format, UnknownChoice> {
        choice(
            s,
            &[
                ("csv", Format::Csv),
                ("tsv", Format::Tsv),
                ("json", Format::Json),
                ("jsonl", Format::Json),
                ("ndjson", Format::Json),
            ],
            &["csv", "tsv", "json", "jsonl", "ndjson"],
        )
    }
}

/// `INPUT_FORMAT`: fixed, or `auto` (from the key's extension, else sniffed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct InputFormat(Option<Format>);

impl FromStr for InputFormat {
    type Err = UnknownChoice;

    /// `auto` or a [`Format`].
    fn from_str(s: &str) -> Result<InputFormat, UnknownChoice> {
        if s.trim().eq_ignore_ascii_case("auto") {
            return Ok(InputFormat(None));
        }
        s.parse()
            .map(|f| InputFormat(Some(f)))
            .map_err(|e| UnknownChoice {
                accepted: &["auto", "csv", "tsv", "json", "jsonl", "ndjson"],
                ..e
            })
    }
}

/// Parquet compression codecs (`COMPRESSION`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// zstd level 3 (the default).
    Zstd,
    /// Snappy.
    Snappy,
    /// gzip, default level.
    Gzip,
    /// LZ4 (raw, the Parquet `LZ4_RAW` codec).
    Lz4,
    /// Uncompressed.
    None,
}

impl Codec {
    /// The Parquet writer's setting.
    pub fn compression(self) -> Compression {
        match self {
            Codec::Zstd => Compression::ZSTD(ZstdLevel::try_new(3).unwrap_or_default()),
            Codec::Snappy => Compression::SNAPPY,
            Codec::Gzip => Compression::GZIP(GzipLevel::default()),
            Codec::Lz4 => Compression::LZ4_RAW,
            Codec::None => Compression::UNCOMPRESSED,
        }
    }
}

impl FromStr for Codec {
    type Err = UnknownChoice;

    /// `zstd`, `snappy`, `gzip`, `lz4` or `none`, any case.
    fn from_str(s: &str) -> Result<Codec, UnknownChoice> {
        choice(
            s,
            &[
                ("zstd", Codec::Zstd),
                ("snappy", Codec::Snappy),
                ("gzip", Codec::Gzip),
                ("lz4", Codec::Lz4),
                ("none", Codec::None),
            ],
            &["zstd", "snappy", "gzip", "lz4", "none"],
        )
    }
}

/// Converter settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Inputs live under this prefix (`INPUT_PREFIX`, default `raw/`).
    pub input_prefix: String,
    /// Outputs go under this prefix (`OUTPUT_PREFIX`, default `processed/`).
    pub output_prefix: String,
    /// Error records go under this prefix (`ERROR_PREFIX`, default `errors/`).
    pub error_prefix: String,
    /// Output bucket (`OUTPUT_BUCKET`, default: the input's bucket).
    pub output_bucket: Option<String>,
    /// Forced input format (`INPUT_FORMAT`: csv, tsv, json; default: from the key or sniffed).
    pub input_format: Option<Format>,
    /// CSV delimiter (`CSV_DELIMITER`, one byte, default `,`).
    pub csv_delimiter: u8,
    /// Cells read as null besides empty ones (`NULL_VALUES`, default `NULL,null,NA,N/A`).
    pub null_values: Vec<String>,
    /// `NULL_VALUES` and the empty cell as one anchored pattern, compiled once.
    pub null_regex: regex::Regex,
    /// Partitioning (`PARTITION_BY`).
    pub partition_by: Vec<PartitionSpec>,
    /// Parquet compression (`COMPRESSION`: zstd default, snappy, gzip, lz4, none).
    pub compression: Compression,
    /// Rows per row group at most (`ROW_GROUP_ROWS`, default 1,048,576).
    pub row_group_rows: usize,
    /// Buffered bytes per row group at most (`ROW_GROUP_MB`, default 64).
    pub row_group_bytes: usize,
    /// Rows sampled to infer types (`INFER_ROWS`, default 10,000).
    pub infer_rows: usize,
    /// Rows per decoded batch (`BATCH_ROWS`, default 16,384).
    pub batch_rows: usize,
    /// Multipart part size of outputs, MiB (`PART_SIZE_MIB`, default 5, S3's minimum: every
    /// open file holds up to one part in memory).
    pub part_size_mib: usize,
    /// Parts uploaded at once per output (`CONCURRENCY`, default 4).
    pub concurrency: usize,
    /// EMF namespace (`METRICS_NAMESPACE`, default `Tributary`).
    pub metrics_namespace: String,
    /// Column types fixed by `SCHEMA` (for every dataset, or per dataset); other columns are
    /// inferred.
    pub schema: Schemas,
    /// Extra timestamp/date formats, chrono `strftime` syntax (`TIMESTAMP_FORMATS`).
    pub timestamp_formats: Vec<String>,
    /// `BAD_ROWS`: quarantine (default) or fail.
    pub bad_rows: BadRows,
    /// A file is closed and the next one started past this size (`TARGET_FILE_MB`, default 128).
    pub target_file_bytes: u64,
    /// Files open at once (`MAX_OPEN_PARTITIONS`, default 64); beyond it the least recently
    /// written one is closed.
    pub max_open_partitions: usize,
    /// Bytes of output held in memory at most (`MEMORY_BUDGET_MB`; default 25% of
    /// `AWS_LAMBDA_FUNCTION_MEMORY_SIZE`, or 64 MB outside Lambda).
    pub memory_budget: usize,
    /// The Glue Data Catalog as each dataset's schema contract (`GLUE_DATABASE` set).
    pub catalog: Option<CatalogSettings>,
    /// A large object converted in ranges is cut into ranges of about this many bytes
    /// (`SPLIT_MB`, default 1024).
    pub split_bytes: u64,
}

/// What happens to an input column its dataset's table lacks (`SCHEMA_EVOLUTION`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Evolution {
    /// Appended to the table (its type inferred) before the files complete.
    Add,
    /// Not written; counted in the response and the metrics.
    Ignore,
    /// The object fails with `SchemaMismatch` naming the columns.
    Fail,
}

impl FromStr for Evolution {
    type Err = UnknownChoice;

    /// `add`, `ignore` or `fail`, any case.
    fn from_str(s: &str) -> Result<Evolution, UnknownChoice> {
        choice(
            s,
            &[
                ("add", Evolution::Add),
                ("ignore", Evolution::Ignore),
                ("fail", Evolution::Fail),
            ],
            &["add", "ignore", "fail"],
        )
    }
}

/// The catalog contract's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogSettings {
    /// `GLUE_DATABASE`: the database holding one table per dataset.
    pub database: String,
    /// `GLUE_CATALOG_ID`: another account's catalog (default: this account's).
    pub catalog_id: Option<String>,
    /// `TABLE_PREFIX`: put before each dataset's table name (default none).
    pub table_prefix: String,
    /// `SCHEMA_EVOLUTION` (default `add`).
    pub evolution: Evolution,
    /// `CATALOG_CACHE_SECS`: how long a table read stays good in a warm container (default 60).
    pub cache: std::time::Duration,
}

impl CatalogSettings {
    /// The table of `dataset`: `TABLE_PREFIX` + the name made a valid Athena name (lowercase,
    /// anything outside `[a-z0-9_]` becomes `_`).
    pub fn table_name(&self, dataset: &str) -> String {
        format!("{}{dataset}", self.table_prefix)
            .chars()
            .map(|c| match c.to_ascii_lowercase() {
                c @ ('a'..='z' | '0'..='9' | '_') => c,
                _ => '_',
            })
            .collect()
    }

    fn from_env(env: &Env) -> tributary::Result<Option<CatalogSettings>> {
        let Some(database) = env.get("GLUE_DATABASE").filter(|d| !d.is_empty()) else {
            return Ok(None);
        };
        let valid = |s: &str| {
            s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        };
        if database.len() > 255 || !valid(database) {
            return Err(Error::config(
                "GLUE_DATABASE",
                database,
                "not a database name Athena can query",
                "1-255 lowercase letters, digits and _",
            ));
        }
        let table_prefix = env.string_or("TABLE_PREFIX", "");
        if !valid(&table_prefix) {
            return Err(Error::config(
                "TABLE_PREFIX",
                &table_prefix,
                "table names Athena can query",
                "lowercase letters, digits and _",
            ));
        }
        Ok(Some(CatalogSettings {
            database: database.to_owned(),
            catalog_id: env
                .get("GLUE_CATALOG_ID")
                .filter(|c| !c.is_empty())
                .map(str::to_owned),
            table_prefix,
            evolution: env.choice_or("SCHEMA_EVOLUTION", Evolution::Add)?,
            cache: std::time::Duration::from_secs(env.int_in(
                "CATALOG_CACHE_SECS",
                60u64,
                0,
                86_400,
            )?),
        }))
    }
}

impl Config {
    /// Reads and validates the configuration; errors name the variable.
    pub fn from_env(env: &Env) -> tributary::Result<Config> {
        let input_prefix = env.string_or("INPUT_PREFIX", "raw/");
        let output_prefix = env.string_or("OUTPUT_PREFIX", "processed/");
        let error_prefix = env.string_or("ERROR_PREFIX", "errors/");
        for (var, v) in [
            ("OUTPUT_PREFIX", &output_prefix),
            ("ERROR_PREFIX", &error_prefix),
        ] {
            if v.starts_with(&input_prefix) || input_prefix.starts_with(v.as_str()) {
                return Err(Error::config(
                    var,
                    v,
                    format!(
                        "overlaps INPUT_PREFIX {input_prefix:?}: the function would trigger itself"
                    ),
                    "a prefix disjoint from INPUT_PREFIX",
                ));
            }
        }
        let InputFormat(input_format) = env.choice_or("INPUT_FORMAT", InputFormat(None))?;
        let delim = env.string_or("CSV_DELIMITER", ",");
        let csv_delimiter = match delim.as_str() {
            "\\t" | "tab" => b'\t',
            d if d.len() == 1 => d.as_bytes()[0],
            d => {
                return Err(Error::config(
                    "CSV_DELIMITER",
                    d,
                    "must be one byte",
                    "e.g. `,`, `;`, `|`, `tab`",
                ));
            }
        };
        let null_values = match env.get("NULL_VALUES") {
            Some(_) => env.list("NULL_VALUES"),
            None => ["NULL", "null", "NA", "N/A"].map(str::to_owned).to_vec(),
        };
        let alternatives: Vec<String> = null_values.iter().map(|v| regex::escape(v)).collect();
        let null_regex =
            regex::Regex::new(&format!("^(?:{})?$", alternatives.join("|"))).map_err(|e| {
                Error::config(
                    "NULL_VALUES",
                    null_values.join(","),
                    e.to_string(),
                    "plain words",
                )
            })?;
        let partition_by = env.parse_list("PARTITION_BY", PartitionSpec::EXPECTED)?;
        let compression = env.choice_or("COMPRESSION", Codec::Zstd)?.compression();
        let schema = match env.get("SCHEMA") {
            Some(text) => parse_schemas(text).map_err(|why| {
                Error::config(
                    "SCHEMA",
                    text,
                    why,
                    r#"[{"name": "...", "type": "int64|float64|bool|string|date|timestamp|timestamp_tz|decimal(p,s)"}], or {"dataset": [...], ...}"#,
                )
            })?,
            None => Schemas::default(),
        };
        let timestamp_formats = match env.get("TIMESTAMP_FORMATS") {
            Some(text) if text.trim_start().starts_with('[') => {
                serde_json::from_str::<Vec<String>>(text).map_err(|e| {
                    Error::config(
                        "TIMESTAMP_FORMATS",
                        text,
                        e.to_string(),
                        "a JSON array of strftime formats, or a comma-separated list",
                    )
                })?
            }
            Some(_) => env.list("TIMESTAMP_FORMATS"),
            None => Vec::new(),
        };
        for f in &timestamp_formats {
            check_format(f).map_err(|why| {
                Error::config(
                    "TIMESTAMP_FORMATS",
                    f,
                    why,
                    "chrono strftime formats, e.g. %d/%m/%Y %H:%M:%S",
                )
            })?;
        }
        let bad_rows = env.choice_or("BAD_ROWS", BadRows::Quarantine)?;
        let lambda_mb: Option<usize> = env
            .get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
            .and_then(|v| v.parse().ok());
        // Open files hold about twice the bytes their writers report (buffer growth,
        // dictionaries), on top of ~60 MB of decoding: a quarter of the function's memory.
        let default_budget = lambda_mb.map_or(64, |mb| (mb / 4).max(16));
        Ok(Config {
            catalog: CatalogSettings::from_env(env)?,
            schema,
            timestamp_formats,
            bad_rows,
            target_file_bytes: env.int_in("TARGET_FILE_MB", 128u64, 1, 1 << 20)? << 20,
            max_open_partitions: env.int_in("MAX_OPEN_PARTITIONS", 64usize, 1, 10_000)?,
            memory_budget: env.int_in("MEMORY_BUDGET_MB", default_budget, 16, 1 << 20)? << 20,
            input_prefix,
            output_prefix,
            error_prefix,
            output_bucket: env.get("OUTPUT_BUCKET").map(str::to_owned),
            input_format,
            csv_delimiter,
            null_values,
            null_regex,
            partition_by,
            compression,
            row_group_rows: env.int_in("ROW_GROUP_ROWS", 1 << 20, 1024, 1 << 26)?,
            row_group_bytes: env.int_in("ROW_GROUP_MB", 64usize, 1, 1024)? << 20,
            infer_rows: env.int_in("INFER_ROWS", 10_000usize, 10, 10_000_000)?,
            batch_rows: env.int_in("BATCH_ROWS", 16_384usize, 64, 1 << 20)?,
            part_size_mib: env.int_in("PART_SIZE_MIB", 5usize, 5, 5120)?,
            concurrency: env.int_in("CONCURRENCY", 4usize, 1, 64)?,
            metrics_namespace: env.string_or("METRICS_NAMESPACE", "Tributary"),
            split_bytes: env.int_in("SPLIT_MB", 1024u64, 1, 1 << 20)? << 20,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(pairs: &[(&str, &str)]) -> tributary::Result<Config> {
        Config::from_env(&Env::from_pairs(pairs.iter().copied()))
    }

    #[test]
    fn choices_parse_in_any_case_and_default_when_unset() {
        let c = cfg(&[
            ("BAD_ROWS", "FAIL"),
            ("INPUT_FORMAT", "ndjson"),
            ("COMPRESSION", "Snappy"),
            ("PARTITION_BY", "ts:Hour, tenant"),
        ])
        .expect("valid");
        assert_eq!(c.bad_rows, BadRows::Fail);
        assert_eq!(c.input_format, Some(Format::Json));
        assert_eq!(c.compression, Compression::SNAPPY);
        assert_eq!(
            c.partition_by,
            [
                PartitionSpec::Time {
                    column: "ts".into(),
                    level: TimeLevel::Hour
                },
                PartitionSpec::Value {
                    column: "tenant".into()
                }
            ]
        );
        let d = cfg(&[("INPUT_FORMAT", "auto")]).expect("defaults");
        assert_eq!(d.bad_rows, BadRows::Quarantine);
        assert_eq!(d.input_format, None);
        assert!(matches!(d.compression, Compression::ZSTD(_)));
        assert!(d.partition_by.is_empty());
    }

    #[test]
    fn a_bad_choice_names_the_variable_and_every_accepted_word() {
        for (var, value, accepted) in [
            ("BAD_ROWS", "drop", "quarantine, fail"),
            ("INPUT_FORMAT", "xml", "auto, csv, tsv, json, jsonl, ndjson"),
            ("COMPRESSION", "brotli", "zstd, snappy, gzip, lz4, none"),
            ("PARTITION_BY", "ts:week", "col, or col:year|month|day|hour"),
        ] {
            let err = cfg(&[(var, value)]).expect_err(value).to_string();
            assert!(err.contains(&format!("{var}={value:?}")), "{err}");
            assert!(err.contains(accepted), "{err}");
        }
        let err = cfg(&[("PARTITION_BY", "a,ts:week")])
            .expect_err("week")
            .to_string();
        assert!(err.contains("unknown time level \"week\""), "{err}");
    }
}
