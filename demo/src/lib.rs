//! The whole pipeline in one process, on an S3 endpoint embedded in it (s3s + s3s-fs serving
//! a folder you can browse afterwards), or on an endpoint you name:
//!
//! 1. a generated NYC-taxi-like CSV is served over HTTP on 127.0.0.1 (or `--url` names a
//!    file) and **url-ingester** streams it into `raw/taxi/`;
//! 2. the S3 notification for the new object is built as S3 sends it (form-encoded key, size,
//!    ETag) and **parquet-converter** turns it into `processed/taxi/year=…/month=…/day=…/`;
//! 3. **firehose-transformer** processes the sample Firehose events of `events/`, and the
//!    `Ok` records are written the way Firehose delivers them (GZIP, under the partition
//!    prefix from the returned keys) to `raw/events/…`, then converted too;
//! 4. a summary, each table of the catalog with its Athena DDL, and a few rows read back from
//!    the Parquet output.
//!
//! The converter keeps each dataset's table in a catalog (`GLUE_DATABASE` set, the catalog
//! contract on): here the local catalog, JSON files under `<dir>/_catalog/`, behind the same
//! interface as the Glue Data Catalog. `Options::catalog = false` (`--no-catalog`) runs
//! without it. Every function runs through its real handler and `Config::from_env`.

mod progress;
mod report;
mod steps;

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;

use parquet_converter::catalog::local::LocalPartition;
use parquet_converter::catalog::{LocalCatalog, Table};
use parquet_converter::convert::TableUse;
use tributary::Env;

/// The sample Firehose batches the demo replays.
pub const FIREHOSE_EVENTS: [(&str, &str); 4] = [
    (
        "direct-put",
        include_str!("../../events/firehose-transformer/direct-put.json"),
    ),
    (
        "kinesis-source",
        include_str!("../../events/firehose-transformer/kinesis-source.json"),
    ),
    (
        "cloudwatch-logs",
        include_str!("../../events/firehose-transformer/cloudwatch-logs.json"),
    ),
    (
        "bad-records",
        include_str!("../../events/firehose-transformer/bad-records.json"),
    ),
];

/// The folder of the local catalog, under `Options::dir`.
pub const CATALOG_DIR: &str = "_catalog";

/// The catalog database the converter's tables go in (`GLUE_DATABASE`).
pub const DATABASE: &str = "tributary";

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Rows of generated taxi data.
    pub rows: u64,
    /// Every n-th generated row is malformed (shows the quarantine).
    pub bad_every: Option<u64>,
    /// Folder the embedded S3 endpoint serves; the local catalog is in its `_catalog/`.
    pub dir: PathBuf,
    /// Ingest this URL instead of the generated file.
    pub url: Option<String>,
    /// Use this S3 endpoint (credentials from the standard AWS chain) instead of the embedded one.
    pub endpoint: Option<String>,
    /// Bucket.
    pub bucket: String,
    /// `PARTITION_BY` for the converter.
    pub partition_by: String,
    /// The catalog contract: the converter writes each dataset under its table in the local
    /// catalog (`GLUE_DATABASE` set). `false`: no catalog (`--no-catalog`).
    pub catalog: bool,
    /// Convert the taxi file in this many byte ranges (plan, ranges at once, commit: what
    /// the large-object state machine does), instead of in one invocation.
    pub ranges: Option<u32>,
    /// Progress on stderr.
    pub progress: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            rows: 1_000_000,
            bad_every: Some(100_000),
            dir: PathBuf::from("tributary-demo-data"),
            url: None,
            endpoint: None,
            bucket: "demo-lake".into(),
            partition_by: "tpep_pickup_datetime:day".into(),
            catalog: true,
            ranges: None,
            progress: true,
        }
    }
}

/// One step's figures.
#[derive(Debug, Clone, Default)]
pub struct Step {
    /// What ran.
    pub name: String,
    /// Bytes in.
    pub bytes_in: u64,
    /// Wall time.
    pub seconds: f64,
    /// Rows (or records) in.
    pub rows_in: Option<u64>,
    /// Rows (or records) out.
    pub rows_out: Option<u64>,
    /// Bad rows (quarantined) or failed records.
    pub bad: Option<u64>,
    /// Partitions written.
    pub partitions: Option<u64>,
    /// Files written.
    pub files: u64,
    /// Bytes written.
    pub bytes_out: u64,
    /// Where the output went.
    pub output: String,
    /// What each conversion of the step did with its dataset's table (catalog contract on).
    pub tables: Vec<TableUse>,
}

/// A table of the local catalog, as it stands after the run.
#[derive(Debug, Clone)]
pub struct CatalogTable {
    /// Its definition, version and storage.
    pub table: Table,
    /// The partitions registered, in registration order.
    pub partitions: Vec<LocalPartition>,
}

/// What the demo did.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// The steps, in order.
    pub steps: Vec<Step>,
    /// The folder the embedded endpoint served, when it was embedded.
    pub browse: Option<PathBuf>,
    /// The local catalog's folder, when the catalog contract was on.
    pub catalog: Option<PathBuf>,
    /// The tables of the local catalog after the run, by database and name.
    pub tables: Vec<CatalogTable>,
    /// Good rows generated (when generated).
    pub generated_good_rows: Option<u64>,
    /// Records the transformer returned `Ok`.
    pub firehose_ok: u64,
    /// JSON lines in them (a CloudWatch Logs record carries several).
    pub firehose_lines: u64,
    /// The text printed at the end.
    pub table: String,
}

/// Runs the pipeline.
pub async fn run(opts: &Options) -> Result<Report, String> {
    tributary::observability::set_emf_output(false);
    let mut report = Report::default();
    let (client, endpoint) = steps::endpoint(opts, &mut report).await?;
    let catalog = if opts.catalog {
        // The catalog describes this run: the tables of an earlier one go.
        let root = opts.dir.join(CATALOG_DIR);
        let db = root.join(DATABASE);
        if db.exists() {
            std::fs::remove_dir_all(&db)
                .map_err(|e| format!("cannot clear {}: {e}", db.display()))?;
        }
        report.catalog = Some(root.clone());
        Some(Arc::new(LocalCatalog::new(root)))
    } else {
        None
    };
    eprintln!(
        "Tributary demo: S3 endpoint {endpoint}, bucket {}, {}",
        opts.bucket,
        match &report.catalog {
            Some(root) => format!("catalog {}/ (database {DATABASE})", root.display()),
            None => "no catalog".to_owned(),
        }
    );
    let mut env = Env::from_pairs([
        ("AWS_ENDPOINT_URL_S3", endpoint.as_str()),
        ("S3_FORCE_PATH_STYLE", "true"),
        ("AWS_REGION", "us-east-1"),
        ("DEFAULT_BUCKET", opts.bucket.as_str()),
        ("PARTITION_BY", opts.partition_by.as_str()),
        ("PARTITION_TIMESTAMP_FIELD", "ts"),
    ]);
    if catalog.is_some() {
        env = env.with("GLUE_DATABASE", DATABASE);
    }

    // 1. url-ingester.
    let raw_key = steps::ingest(&env, &client, opts, &mut report).await?;

    // 2. parquet-converter on the S3 event for the new object.
    let mut converter = parquet_converter::Converter::new(
        parquet_converter::Config::from_env(&env).map_err(|e| e.to_string())?,
        client.clone(),
    );
    if let Some(c) = &catalog {
        converter = converter.with_catalog(c.clone());
    }
    let step = match opts.ranges {
        Some(n) => steps::convert_in_ranges(&converter, &client, opts, &raw_key, n).await?,
        None => {
            steps::convert(
                &converter,
                opts,
                std::slice::from_ref(&raw_key),
                "parquet-converter",
            )
            .await?
        }
    };
    report.steps.push(step);

    // 3. firehose-transformer on the sample batches; deliver like Firehose; convert.
    let delivered = steps::firehose(&env, &client, opts, &mut report).await?;
    let step = steps::convert(&converter, opts, &delivered, "parquet-converter (events)").await?;
    report.steps.push(step);

    // 4. The summary, the catalog's tables, and rows read back.
    let mut text = report::summary_table(&report.steps);
    if let Some(c) = &catalog {
        for table in c.tables().await.map_err(|e| e.to_string())? {
            let partitions = c
                .partitions(&table.def.database, &table.def.name)
                .await
                .map_err(|e| e.to_string())?;
            report.tables.push(CatalogTable { table, partitions });
        }
        let root = format!("{}/", c.root().display());
        text.push_str(&report::catalog_section(
            &root,
            &report.tables,
            &report.steps,
        ));
    }
    if let Some(first) = report
        .steps
        .get(1)
        .and_then(|s| s.output.split(", ").next())
    {
        let _ = writeln!(text, "\nFirst rows of s3://{}/{first}:", opts.bucket);
        text.push_str(&report::read_back(&client, &opts.bucket, first, 5).await?);
    }
    if let Some(dir) = &report.browse {
        let _ = writeln!(
            text,
            "\nBrowse the results: {}/ (raw/, processed/, errors/)",
            dir.display()
        );
    }
    report.table = text;
    Ok(report)
}
