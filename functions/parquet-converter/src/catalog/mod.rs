//! The table catalog: where each dataset's schema contract lives.
//!
//! A [`Catalog`] reads, creates and evolves table definitions ([`TableDef`]) and registers
//! partitions. Two implementations sit behind the one trait:
//!
//! * [`glue::GlueCatalog`]: the AWS Glue Data Catalog (what Athena reads), over `aws-sdk-glue`.
//! * [`local::LocalCatalog`]: table definitions as JSON files in a folder, for the local demo
//!   and tests that need no Python and no network.
//!
//! Both have the same semantics, which is what the converter relies on for concurrency:
//!
//! * [`Catalog::create_table`] is create-if-absent: exactly one of several concurrent creators
//!   gets [`CreateOutcome::Created`], the others [`CreateOutcome::AlreadyExists`] (and then
//!   re-read the table).
//! * [`Catalog::update_table`] is optimistic: given the version read ([`Table::version_id`]), it
//!   applies only if the table is still at that version, else answers
//!   [`UpdateOutcome::ConcurrentModification`] (re-read, merge, retry).
//! * [`Catalog::create_partitions`] is idempotent: partitions that already exist are fine.
//!
//! Errors: a refused call (access denied, a missing database or table, an invalid definition)
//! is [`tributary::Error::Catalog`] with Glue's error code, `errorType` `CatalogError`;
//! throttling, a 5xx, a timeout or a broken connection, once the SDK's retries are spent, is
//! the same variant with a transient code (or none), `errorType` `CatalogUnavailable`, which is
//! retryable. The local catalog answers with the same codes (`EntityNotFoundException`), and
//! its file I/O failures are [`tributary::Error::Io`]. A definition the catalog could never
//! accept (partition values that do not match the partition keys, a name that is not one) is
//! [`tributary::Error::InvalidInput`].

pub mod glue;
pub mod local;

use std::collections::BTreeMap;
use std::fmt::Write as _;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub use self::glue::{GlueCatalog, GlueSettings};
pub use self::local::LocalCatalog;

/// The Hive SerDe that reads and writes Parquet (what Athena's `STORED AS PARQUET` sets).
pub const PARQUET_SERDE: &str = "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe";
/// The Hive input format of Parquet tables.
pub const PARQUET_INPUT_FORMAT: &str =
    "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat";
/// The Hive output format of Parquet tables.
pub const PARQUET_OUTPUT_FORMAT: &str =
    "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat";
/// The table type of tables over files in S3.
pub const EXTERNAL_TABLE: &str = "EXTERNAL_TABLE";

/// One column (or partition key) of a table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableColumn {
    /// The column name as the table spells it.
    pub name: String,
    /// The Athena / Hive type text: `bigint`, `double`, `decimal(10,2)`, `array<string>`,
    /// `struct<a:bigint,b:string>`, ... (partition keys: usually `string`).
    pub type_name: String,
    /// The column's comment, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

impl TableColumn {
    /// A column without a comment.
    pub fn new(name: impl Into<String>, type_name: impl Into<String>) -> TableColumn {
        TableColumn {
            name: name.into(),
            type_name: type_name.into(),
            comment: None,
        }
    }
}

/// What a table is: its name, columns, partition keys, location and properties. This is what
/// [`Catalog::create_table`] and [`Catalog::update_table`] write; the storage format is always
/// Parquet ([`StorageFormat::parquet`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableDef {
    /// The database (Glue) the table belongs to.
    pub database: String,
    /// The table name.
    pub name: String,
    /// Data columns, in table order (the order new files should follow).
    pub columns: Vec<TableColumn>,
    /// Partition keys, in path order (`year`, `month`, `day`, ...).
    pub partition_keys: Vec<TableColumn>,
    /// Where the table's files live: `s3://bucket/prefix/` (with the trailing slash).
    pub location: String,
    /// Table properties (`TBLPROPERTIES`). `classification=parquet` is added on writing when
    /// absent; on reading they are the table's, as stored.
    pub parameters: BTreeMap<String, String>,
}

/// How a table's files are stored, as read from the catalog (for checking that an existing
/// table is one the converter can write under).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct StorageFormat {
    /// `EXTERNAL_TABLE`, `VIRTUAL_VIEW`, ...
    pub table_type: Option<String>,
    /// The SerDe class (`serializationLib`).
    pub serde_library: Option<String>,
    /// The Hive input format class.
    pub input_format: Option<String>,
    /// The Hive output format class.
    pub output_format: Option<String>,
}

impl StorageFormat {
    /// The Parquet storage the converter writes: an external table with the Parquet SerDe and
    /// Hive's Parquet input and output formats.
    pub fn parquet() -> StorageFormat {
        StorageFormat {
            table_type: Some(EXTERNAL_TABLE.to_owned()),
            serde_library: Some(PARQUET_SERDE.to_owned()),
            input_format: Some(PARQUET_INPUT_FORMAT.to_owned()),
            output_format: Some(PARQUET_OUTPUT_FORMAT.to_owned()),
        }
    }

    /// Whether files of this table are read as Parquet (its SerDe or input format says so).
    pub fn is_parquet(&self) -> bool {
        let parquet = |s: &Option<String>| {
            s.as_deref()
                .is_some_and(|s| s.to_ascii_lowercase().contains("parquet"))
        };
        parquet(&self.serde_library) || parquet(&self.input_format)
    }
}

/// A table as read from the catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Table {
    /// Its definition.
    pub def: TableDef,
    /// The catalog's version of the table (Glue `VersionId`), to pass to
    /// [`Catalog::update_table`] for an optimistic update; `None` when the catalog gave none.
    pub version_id: Option<String>,
    /// How its files are stored.
    pub format: StorageFormat,
}

/// What [`Catalog::create_table`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreateOutcome {
    /// The table was created by this call.
    Created,
    /// A table of that name already existed (another writer won): read it and use it.
    AlreadyExists,
}

/// What [`Catalog::update_table`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateOutcome {
    /// The table now has the definition given.
    Updated,
    /// The table changed since the version given was read: nothing was written; re-read,
    /// merge and try again.
    ConcurrentModification,
}

/// One partition to register: its values in partition-key order, and its `s3://` location.
pub type PartitionSpec = (Vec<String>, String);

/// A table catalog (Glue, or the local one): see the module documentation for the semantics
/// every implementation keeps.
#[async_trait]
pub trait Catalog: Send + Sync + std::fmt::Debug {
    /// The table, or `None` when it does not exist (nor its database).
    async fn get_table(&self, database: &str, name: &str) -> tributary::Result<Option<Table>>;

    /// Creates the table (Parquet storage, the definition's columns, partition keys, location
    /// and properties, plus `classification=parquet`) unless one of that name exists.
    async fn create_table(&self, def: &TableDef) -> tributary::Result<CreateOutcome>;

    /// Replaces the table's definition. With `expected_version`, only if the table is still at
    /// that version (else [`UpdateOutcome::ConcurrentModification`], nothing written); without,
    /// unconditionally. A table that does not exist is an error.
    async fn update_table(
        &self,
        def: &TableDef,
        expected_version: Option<&str>,
    ) -> tributary::Result<UpdateOutcome>;

    /// Registers partitions of `table` (values in partition-key order, each with its `s3://`
    /// location); partitions that already exist are fine. Each partition is described with the
    /// table's columns and Parquet storage, as Glue's crawler and Athena do, because Athena
    /// reads a partition under the partition's own column list.
    async fn create_partitions(
        &self,
        table: &TableDef,
        partitions: &[PartitionSpec],
    ) -> tributary::Result<()>;
}

impl TableDef {
    /// The table's parameters as written: the definition's, plus `classification=parquet`
    /// when it sets no classification.
    pub fn parameters_to_write(&self) -> BTreeMap<String, String> {
        let mut p = self.parameters.clone();
        p.entry("classification".to_owned())
            .or_insert_with(|| "parquet".to_owned());
        p
    }

    /// The column of that name, matched case-insensitively (Athena's names are).
    pub fn column(&self, name: &str) -> Option<&TableColumn> {
        self.columns
            .iter()
            .find(|c| c.name.eq_ignore_ascii_case(name))
    }

    /// The Athena DDL that creates this table by hand:
    ///
    /// ```text
    /// CREATE EXTERNAL TABLE `db`.`taxi` (
    ///   `fare` double,
    ///   ...
    /// )
    /// PARTITIONED BY (
    ///   `year` string
    /// )
    /// STORED AS PARQUET
    /// LOCATION 's3://bucket/processed/taxi/'
    /// TBLPROPERTIES ('classification'='parquet')
    /// ```
    pub fn athena_ddl(&self) -> String {
        let column = |c: &TableColumn| {
            let mut s = format!("  {} {}", quote_name(&c.name), c.type_name);
            if let Some(comment) = &c.comment {
                let _ = write!(s, " COMMENT {}", quote_string(comment));
            }
            s
        };
        let list = |cols: &[TableColumn]| cols.iter().map(column).collect::<Vec<_>>().join(",\n");
        let mut ddl = format!(
            "CREATE EXTERNAL TABLE {}.{} (\n{}\n)\n",
            quote_name(&self.database),
            quote_name(&self.name),
            list(&self.columns)
        );
        if !self.partition_keys.is_empty() {
            let _ = writeln!(ddl, "PARTITIONED BY (\n{}\n)", list(&self.partition_keys));
        }
        let _ = writeln!(ddl, "STORED AS PARQUET");
        let _ = writeln!(ddl, "LOCATION {}", quote_string(&self.location));
        let props = self
            .parameters_to_write()
            .iter()
            .map(|(k, v)| format!("{}={}", quote_string(k), quote_string(v)))
            .collect::<Vec<_>>()
            .join(", ");
        let _ = write!(ddl, "TBLPROPERTIES ({props})");
        ddl
    }
}

/// A name in backquotes (a backquote inside is doubled).
fn quote_name(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// A Hive string literal in single quotes (backslash and quote escaped).
fn quote_string(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// `db.table`, for error messages.
fn table_ref(database: &str, name: &str) -> String {
    format!("{database}.{name}")
}

/// An [`tributary::Error::Catalog`] that did not come from the SDK (a per-partition error of
/// BatchCreatePartition, the local catalog's answers).
fn catalog_error(
    operation: &'static str,
    database: &str,
    name: &str,
    code: Option<&str>,
    message: impl Into<String>,
) -> tributary::Error {
    tributary::Error::Catalog {
        operation,
        table: table_ref(database, name),
        code: code.map(str::to_owned),
        message: message.into(),
    }
}

/// A definition no catalog would accept.
fn invalid(what: String, reason: impl Into<String>) -> tributary::Error {
    tributary::Error::InvalidInput {
        what,
        reason: reason.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def() -> TableDef {
        TableDef {
            database: "lake".into(),
            name: "taxi".into(),
            columns: vec![
                TableColumn::new("fare", "decimal(10,2)"),
                TableColumn {
                    name: "tags".into(),
                    type_name: "array<string>".into(),
                    comment: Some("it's a list".into()),
                },
            ],
            partition_keys: vec![TableColumn::new("year", "string")],
            location: "s3://b/processed/taxi/".into(),
            parameters: BTreeMap::from([("producer".into(), "tributary".into())]),
        }
    }

    #[test]
    fn athena_ddl_quotes_names_and_strings() {
        assert_eq!(
            def().athena_ddl(),
            "CREATE EXTERNAL TABLE `lake`.`taxi` (\n  `fare` decimal(10,2),\n  `tags` \
             array<string> COMMENT 'it\\'s a list'\n)\nPARTITIONED BY (\n  `year` string\n)\n\
             STORED AS PARQUET\nLOCATION 's3://b/processed/taxi/'\n\
             TBLPROPERTIES ('classification'='parquet', 'producer'='tributary')"
        );
    }

    #[test]
    fn athena_ddl_of_an_unpartitioned_table_has_no_partition_clause() {
        let mut d = def();
        d.partition_keys.clear();
        d.parameters
            .insert("classification".into(), "custom".into());
        let ddl = d.athena_ddl();
        assert!(!ddl.contains("PARTITIONED BY"), "{ddl}");
        assert!(ddl.ends_with("TBLPROPERTIES ('classification'='custom', 'producer'='tributary')"));
    }

    #[test]
    fn columns_match_case_insensitively() {
        assert_eq!(def().column("FARE").map(|c| c.name.as_str()), Some("fare"));
        assert!(
            def().column("year").is_none(),
            "partition keys are not columns"
        );
    }

    #[test]
    fn parquet_storage_is_recognised() {
        assert!(StorageFormat::parquet().is_parquet());
        assert!(!StorageFormat::default().is_parquet());
        let csv = StorageFormat {
            serde_library: Some("org.apache.hadoop.hive.serde2.lazy.LazySimpleSerDe".into()),
            input_format: Some("org.apache.hadoop.mapred.TextInputFormat".into()),
            ..StorageFormat::default()
        };
        assert!(!csv.is_parquet());
    }
}
