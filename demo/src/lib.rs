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
//! 4. a summary, and a few rows read back from the Parquet output.
//!
//! Every function runs through its real handler and `Config::from_env`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use base64::Engine as _;
use lambda_runtime::{Context, LambdaEvent};
use serde_json::{Value, json};
use tributary::Env;
use tributary::s3::S3Settings;
use tributary_testkit::data::taxi::{TaxiOptions, write_csv};

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

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Rows of generated taxi data.
    pub rows: u64,
    /// Every n-th generated row is malformed (shows the quarantine).
    pub bad_every: Option<u64>,
    /// Folder the embedded S3 endpoint serves.
    pub dir: PathBuf,
    /// Ingest this URL instead of the generated file.
    pub url: Option<String>,
    /// Use this S3 endpoint (credentials from the standard AWS chain) instead of the embedded one.
    pub endpoint: Option<String>,
    /// Bucket.
    pub bucket: String,
    /// `PARTITION_BY` for the converter.
    pub partition_by: String,
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
}

/// What the demo did.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// The steps, in order.
    pub steps: Vec<Step>,
    /// The folder the embedded endpoint served, when it was embedded.
    pub browse: Option<PathBuf>,
    /// Good rows generated (when generated).
    pub generated_good_rows: Option<u64>,
    /// Records the transformer returned `Ok`.
    pub firehose_ok: u64,
    /// JSON lines in them (a CloudWatch Logs record carries several).
    pub firehose_lines: u64,
    /// The table printed at the end.
    pub table: String,
}

/// Prints a spinner with the elapsed time while a step runs (when stderr is a terminal).
struct Spinner {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Spinner {
    fn start(label: &str, enabled: bool) -> Spinner {
        if !enabled || !std::io::stderr().is_terminal() {
            eprintln!("  {label} …");
            return Spinner {
                stop: None,
                task: None,
            };
        }
        let (tx, mut rx) = tokio::sync::oneshot::channel::<()>();
        let label = label.to_owned();
        let task = tokio::spawn(async move {
            let frames = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
            let started = Instant::now();
            let mut i = 0;
            loop {
                eprint!(
                    "\r  {} {label}  {:.1} s ",
                    frames[i % frames.len()],
                    started.elapsed().as_secs_f64()
                );
                i += 1;
                tokio::select! {
                    _ = &mut rx => break,
                    _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                }
            }
            eprint!("\r\x1b[2K");
        });
        Spinner {
            stop: Some(tx),
            task: Some(task),
        }
    }

    async fn done(mut self, line: &str) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
        eprintln!("  ✓ {line}");
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn ctx() -> Context {
    Context::default()
}

/// Runs the pipeline.
pub async fn run(opts: &Options) -> Result<Report, String> {
    tributary::observability::set_emf_output(false);
    let mut report = Report::default();
    // The S3 endpoint.
    let mut _server = None;
    let (client, endpoint) = match &opts.endpoint {
        None => {
            let bucket_dir = opts.dir.join(&opts.bucket);
            if bucket_dir.exists() {
                std::fs::remove_dir_all(&bucket_dir)
                    .map_err(|e| format!("cannot clear {}: {e}", bucket_dir.display()))?;
            }
            std::fs::create_dir_all(&bucket_dir)
                .map_err(|e| format!("cannot create {}: {e}", bucket_dir.display()))?;
            let (addr, _faults, server) = tributary_testkit::s3::serve_on(&opts.dir, 0)
                .await
                .map_err(|e| format!("cannot start the embedded S3 endpoint: {e}"))?;
            _server = Some(server);
            let endpoint = format!("http://{addr}");
            let mut s = S3Settings::for_endpoint(
                &endpoint,
                tributary_testkit::s3::ACCESS_KEY,
                tributary_testkit::s3::SECRET_KEY,
            );
            s.force_path_style = true;
            s.region = Some("us-east-1".into());
            report.browse = Some(bucket_dir);
            (s.build_client().await, endpoint)
        }
        Some(endpoint) => {
            let env = Env::from_process()
                .with("AWS_ENDPOINT_URL_S3", endpoint.as_str())
                .with("S3_FORCE_PATH_STYLE", "true");
            let s = S3Settings::from_env(&env).map_err(|e| e.to_string())?;
            (s.build_client().await, endpoint.clone())
        }
    };
    eprintln!(
        "Tributary demo: S3 endpoint {endpoint}, bucket {}",
        opts.bucket
    );
    let env = Env::from_pairs([
        ("AWS_ENDPOINT_URL_S3", endpoint.as_str()),
        ("S3_FORCE_PATH_STYLE", "true"),
        ("AWS_REGION", "us-east-1"),
        ("DEFAULT_BUCKET", opts.bucket.as_str()),
        ("PARTITION_BY", opts.partition_by.as_str()),
        ("PARTITION_TIMESTAMP_FIELD", "ts"),
    ]);

    // 1. url-ingester.
    let mut _http = None;
    let (url, key) = match &opts.url {
        Some(u) => (u.clone(), None),
        None => {
            let sp = Spinner::start("generating NYC-taxi-like trips", opts.progress);
            let mut csv = Vec::with_capacity((opts.rows * 105) as usize);
            let stats = write_csv(
                &mut csv,
                &TaxiOptions {
                    rows: Some(opts.rows),
                    bad_every: opts.bad_every,
                    ..TaxiOptions::default()
                },
            )
            .map_err(|e| format!("generating data: {e}"))?;
            report.generated_good_rows = Some(stats.rows - stats.bad_rows);
            sp.done(&format!(
                "generated {} trips ({} malformed on purpose), {:.1} MiB of CSV",
                stats.rows,
                stats.bad_rows,
                mib(stats.bytes)
            ))
            .await;
            let http = tributary_testkit::HttpServer::start().await;
            http.serve(
                "/trips/yellow_tripdata_2024-01.csv",
                tributary_testkit::Resource::new(csv).content_type("text/csv"),
            );
            let url = http.url("/trips/yellow_tripdata_2024-01.csv");
            _http = Some(http);
            (url, Some("raw/taxi/yellow_tripdata_2024-01.csv".to_owned()))
        }
    };
    let mut ingest_env = env.clone().with(
        "DEFAULT_PREFIX",
        if key.is_some() {
            "raw/taxi/"
        } else {
            "raw/url/"
        },
    );
    if opts.url.is_none() {
        // Our own loopback server: open the SSRF guard for it only.
        ingest_env = ingest_env.with("ALLOW_PRIVATE_NETWORKS", "127.0.0.1/32");
    } else if let Ok(v) = std::env::var("ALLOW_PRIVATE_NETWORKS") {
        ingest_env = ingest_env.with("ALLOW_PRIVATE_NETWORKS", v);
    }
    let ingester = url_ingester::Ingester::new(
        url_ingester::Config::from_env(&ingest_env).map_err(|e| e.to_string())?,
        client.clone(),
        None,
    )
    .map_err(|e| e.to_string())?;
    let mut request = json!({"url": url, "bucket": opts.bucket});
    if let Some(k) = &key {
        request["key"] = Value::from(k.as_str());
    }
    let sp = Spinner::start("url-ingester: HTTP -> S3 multipart upload", opts.progress);
    let started = Instant::now();
    let resp = ingester
        .handle(LambdaEvent::new(request, ctx()))
        .await
        .map_err(|e| format!("url-ingester: {}: {e}", e.error_type()))?;
    let resp = serde_json::to_value(&resp).map_err(|e| e.to_string())?;
    let seconds = started.elapsed().as_secs_f64();
    let raw_key = resp["key"].as_str().unwrap_or_default().to_owned();
    let bytes = resp["bytes"].as_u64().unwrap_or_default();
    sp.done(&format!(
        "url-ingester: {:.1} MiB in {seconds:.2} s -> s3://{}/{raw_key}",
        mib(bytes),
        opts.bucket
    ))
    .await;
    report.steps.push(Step {
        name: "url-ingester".into(),
        bytes_in: bytes,
        seconds,
        files: 1,
        bytes_out: bytes,
        output: raw_key.clone(),
        ..Step::default()
    });

    // 2. parquet-converter on the S3 event for the new object.
    let converter = parquet_converter::Converter::new(
        parquet_converter::Config::from_env(&env).map_err(|e| e.to_string())?,
        client.clone(),
    );
    let step = convert(
        &converter,
        opts,
        std::slice::from_ref(&raw_key),
        "parquet-converter",
    )
    .await?;
    report.steps.push(step);

    // 3. firehose-transformer on the sample batches; deliver like Firehose; convert.
    let processor = firehose_transformer::Processor::from_env(&env).map_err(|e| e.to_string())?;
    let sp = Spinner::start("firehose-transformer: sample batches", opts.progress);
    let started = Instant::now();
    let mut groups: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let (mut records, mut ok, mut failed, mut bytes_in) = (0u64, 0u64, 0u64, 0u64);
    for (name, text) in FIREHOSE_EVENTS {
        let event: firehose_transformer::event::FirehoseEvent = serde_json::from_str(text)
            .map_err(|e| format!("events/firehose-transformer/{name}.json: {e}"))?;
        let raw: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
        bytes_in += raw["records"]
            .as_array()
            .map(|r| {
                r.iter()
                    .map(|x| x["data"].as_str().map_or(0, str::len) as u64)
                    .sum()
            })
            .unwrap_or(0);
        let out = processor
            .handle(LambdaEvent::new(event, ctx()))
            .await
            .map_err(|e| format!("firehose-transformer: {e}"))?;
        let out: Value = serde_json::from_str(out.get()).map_err(|e| e.to_string())?;
        for r in out["records"].as_array().into_iter().flatten() {
            records += 1;
            match r["result"].as_str() {
                Some("Ok") => {
                    ok += 1;
                    let k = &r["metadata"]["partitionKeys"];
                    let prefix = format!(
                        "raw/events/year={}/month={}/day={}/hour={}/",
                        k["year"].as_str().unwrap_or("none"),
                        k["month"].as_str().unwrap_or("none"),
                        k["day"].as_str().unwrap_or("none"),
                        k["hour"].as_str().unwrap_or("none"),
                    );
                    let data = base64::engine::general_purpose::STANDARD
                        .decode(r["data"].as_str().unwrap_or_default())
                        .map_err(|e| format!("transformer output is not base64: {e}"))?;
                    groups.entry(prefix).or_default().extend_from_slice(&data);
                }
                Some("ProcessingFailed") => failed += 1,
                _ => {}
            }
        }
    }
    // Firehose's object names: {stream}-{version}-{yyyy-MM-dd-HH-mm-ss}-{id}, `.gz` with GZIP.
    let mut delivered = Vec::new();
    let mut bytes_out = 0;
    for (prefix, data) in &groups {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(data).map_err(|e| e.to_string())?;
        let body = gz.finish().map_err(|e| e.to_string())?;
        let id = &hex::encode(<sha2::Sha256 as sha2::Digest>::digest(data))[..12];
        let stamp = prefix
            .split('/')
            .filter_map(|s| s.split_once('=').map(|(_, v)| v))
            .collect::<Vec<_>>()
            .join("-");
        let key = format!("{prefix}tributary-events-1-{stamp}-00-00-{id}.gz");
        bytes_out += body.len() as u64;
        client
            .put_object()
            .bucket(&opts.bucket)
            .key(&key)
            .body(body.into())
            .send()
            .await
            .map_err(|e| format!("writing {key}: {e}"))?;
        delivered.push(key);
    }
    let seconds = started.elapsed().as_secs_f64();
    sp.done(&format!(
        "firehose-transformer: {records} records -> {ok} Ok, {failed} ProcessingFailed; {} GZIP objects under raw/events/",
        delivered.len()
    ))
    .await;
    report.firehose_ok = ok;
    report.firehose_lines = groups
        .values()
        .map(|d| d.iter().filter(|b| **b == b'\n').count() as u64)
        .sum();
    report.steps.push(Step {
        name: "firehose-transformer".into(),
        bytes_in,
        seconds,
        rows_in: Some(records),
        rows_out: Some(ok),
        bad: Some(failed),
        partitions: Some(groups.len() as u64),
        files: delivered.len() as u64,
        bytes_out,
        output: "raw/events/".into(),
    });
    let step = convert(&converter, opts, &delivered, "parquet-converter (events)").await?;
    report.steps.push(step);

    // 4. The summary, and rows read back.
    let mut table = summary_table(&report.steps);
    if let Some(first) = report
        .steps
        .get(1)
        .and_then(|s| s.output.split(", ").next())
    {
        let _ = writeln!(table, "\nFirst rows of s3://{}/{first}:", opts.bucket);
        table.push_str(&read_back(&client, &opts.bucket, first, 5).await?);
    }
    if let Some(dir) = &report.browse {
        let _ = writeln!(
            table,
            "\nBrowse the results: {}/ (raw/, processed/, errors/)",
            dir.display()
        );
    }
    report.table = table;
    Ok(report)
}

/// Converts `keys` one event each; one step with the totals.
async fn convert(
    converter: &parquet_converter::Converter,
    opts: &Options,
    keys: &[String],
    name: &str,
) -> Result<Step, String> {
    let sp = Spinner::start(&format!("{name}: S3 event -> Parquet"), opts.progress);
    let started = Instant::now();
    let mut step = Step {
        name: name.into(),
        rows_in: Some(0),
        rows_out: Some(0),
        bad: Some(0),
        partitions: Some(0),
        ..Step::default()
    };
    let mut outputs = Vec::new();
    for key in keys {
        let event = converter
            .put_event_for(&opts.bucket, key)
            .await
            .map_err(|e| e.to_string())?;
        let out = converter
            .handle(LambdaEvent::new(event, ctx()))
            .await
            .map_err(|e| format!("{name}: {}: {e}", e.error_type()))?;
        for r in out.converted() {
            let add = |v: &mut Option<u64>, x: u64| *v = Some(v.unwrap_or(0) + x);
            add(&mut step.rows_out, r.rows);
            add(&mut step.bad, r.bad_rows);
            add(&mut step.rows_in, r.rows + r.bad_rows);
            add(&mut step.partitions, r.partitions as u64);
            step.bytes_in += r.bytes_in;
            step.bytes_out += r.bytes_out;
            step.files += r.files.len() as u64;
            outputs.extend(r.files.iter().map(|f| f.key.clone()));
        }
    }
    step.seconds = started.elapsed().as_secs_f64();
    step.output = outputs.join(", ");
    sp.done(&format!(
        "{name}: {} rows -> {} files in {} partitions, {} bad rows quarantined, {:.2} s",
        step.rows_out.unwrap_or(0),
        step.files,
        step.partitions.unwrap_or(0),
        step.bad.unwrap_or(0),
        step.seconds
    ))
    .await;
    Ok(step)
}

fn summary_table(steps: &[Step]) -> String {
    let mut t = String::new();
    let opt = |v: Option<u64>| v.map_or("-".to_owned(), |v| v.to_string());
    let _ = writeln!(
        t,
        "\n{:<28}{:>10}{:>9}{:>9}{:>10}{:>10}{:>6}{:>11}{:>7}{:>11}",
        "step",
        "in MiB",
        "MiB/s",
        "s",
        "rows in",
        "rows out",
        "bad",
        "partitions",
        "files",
        "out MiB"
    );
    for s in steps {
        let rate = if s.seconds > 0.0 {
            mib(s.bytes_in) / s.seconds
        } else {
            0.0
        };
        let _ = writeln!(
            t,
            "{:<28}{:>10.2}{:>9.1}{:>9.2}{:>10}{:>10}{:>6}{:>11}{:>7}{:>11.2}",
            s.name,
            mib(s.bytes_in),
            rate,
            s.seconds,
            opt(s.rows_in),
            opt(s.rows_out),
            opt(s.bad),
            opt(s.partitions),
            s.files,
            mib(s.bytes_out)
        );
    }
    t
}

/// The first `n` rows of a Parquet object, as text.
async fn read_back(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    n: usize,
) -> Result<String, String> {
    use arrow::util::display::{ArrayFormatter, FormatOptions};
    let body = client
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .map_err(|e| format!("reading {key}: {e}"))?
        .body
        .collect()
        .await
        .map_err(|e| format!("reading {key}: {e}"))?
        .into_bytes();
    let mut reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(body)
        .map_err(|e| format!("{key} is not Parquet: {e}"))?
        .with_batch_size(n)
        .build()
        .map_err(|e| e.to_string())?;
    let Some(batch) = reader.next().transpose().map_err(|e| e.to_string())? else {
        return Ok("(no rows)\n".into());
    };
    let schema = batch.schema();
    let cols: Vec<usize> = (0..batch.num_columns()).take(8).collect();
    let opts = FormatOptions::default().with_null("null");
    let mut cells: Vec<Vec<String>> = vec![
        cols.iter()
            .map(|&c| {
                format!(
                    "{} ({})",
                    schema.field(c).name(),
                    schema.field(c).data_type()
                )
            })
            .collect(),
    ];
    for row in 0..batch.num_rows().min(n) {
        let mut line = Vec::new();
        for &c in &cols {
            let f = ArrayFormatter::try_new(batch.column(c).as_ref(), &opts)
                .map_err(|e| e.to_string())?;
            line.push(f.value(row).to_string());
        }
        cells.push(line);
    }
    let widths: Vec<usize> = (0..cols.len())
        .map(|i| {
            cells
                .iter()
                .map(|r| r[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in cells {
        for (i, cell) in row.iter().enumerate() {
            let _ = write!(out, "{cell:<w$}  ", w = widths[i]);
        }
        out.push('\n');
    }
    Ok(out)
}
