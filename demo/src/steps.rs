//! The steps of the demo: the S3 endpoint, url-ingester, firehose-transformer (and the
//! delivery Firehose would make), parquet-converter.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Instant;

use base64::Engine as _;
use lambda_runtime::{Context, LambdaEvent};
use serde_json::{Value, json};
use tributary::Env;
use tributary::s3::S3Settings;
use tributary_testkit::data::taxi::{TaxiOptions, write_csv};

use crate::progress::{Spinner, mib};
use crate::{FIREHOSE_EVENTS, Options, Report, Step};

fn ctx() -> Context {
    Context::default()
}

/// The S3 endpoint the functions talk to: the one named by `--endpoint`, or one embedded in
/// this process serving `opts.dir` (the bucket's folder emptied first; recorded in
/// `report.browse`). Returns the client and the endpoint URL; the embedded server runs until
/// the process ends.
pub(crate) async fn endpoint(
    opts: &Options,
    report: &mut Report,
) -> Result<(aws_sdk_s3::Client, String), String> {
    let Some(endpoint) = &opts.endpoint else {
        let bucket_dir = opts.dir.join(&opts.bucket);
        if bucket_dir.exists() {
            std::fs::remove_dir_all(&bucket_dir)
                .map_err(|e| format!("cannot clear {}: {e}", bucket_dir.display()))?;
        }
        std::fs::create_dir_all(&bucket_dir)
            .map_err(|e| format!("cannot create {}: {e}", bucket_dir.display()))?;
        let (addr, _faults, _server) = tributary_testkit::s3::serve_on(&opts.dir, 0)
            .await
            .map_err(|e| format!("cannot start the embedded S3 endpoint: {e}"))?;
        let endpoint = format!("http://{addr}");
        let mut s = S3Settings::for_endpoint(
            &endpoint,
            tributary_testkit::s3::ACCESS_KEY,
            tributary_testkit::s3::SECRET_KEY,
        );
        s.force_path_style = true;
        s.service.region = Some("us-east-1".into());
        report.browse = Some(bucket_dir);
        return Ok((s.build_client().await, endpoint));
    };
    let env = Env::from_process()
        .with("AWS_ENDPOINT_URL_S3", endpoint.as_str())
        .with("S3_FORCE_PATH_STYLE", "true");
    let s = S3Settings::from_env(&env).map_err(|e| e.to_string())?;
    Ok((s.build_client().await, endpoint.clone()))
}

/// url-ingester on the generated taxi CSV (served on 127.0.0.1) or on `--url`; the key of the
/// raw object it wrote.
pub(crate) async fn ingest(
    env: &Env,
    client: &aws_sdk_s3::Client,
    opts: &Options,
    report: &mut Report,
) -> Result<String, String> {
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
    Ok(raw_key)
}

/// firehose-transformer on the sample batches, the `Ok` records delivered the way Firehose
/// does (GZIP, under the prefix of their partition keys); the keys of the objects delivered.
pub(crate) async fn firehose(
    env: &Env,
    client: &aws_sdk_s3::Client,
    opts: &Options,
    report: &mut Report,
) -> Result<Vec<String>, String> {
    let processor = firehose_transformer::Processor::from_env(env).map_err(|e| e.to_string())?;
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
        ..Step::default()
    });
    Ok(delivered)
}

/// parquet-converter on the S3 event of each of `keys`, one event each; one step with the
/// totals (and what each conversion did with its dataset's table).
pub(crate) async fn convert(
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
            step.tables.extend(r.table.clone());
        }
    }
    step.seconds = started.elapsed().as_secs_f64();
    step.output = outputs.join(", ");
    sp.done(&format!(
        "{name}: {} rows -> {} files in {} partitions, {} bad rows quarantined, {:.2} s{}",
        step.rows_out.unwrap_or(0),
        step.files,
        step.partitions.unwrap_or(0),
        step.bad.unwrap_or(0),
        step.seconds,
        table_note(&step.tables)
    ))
    .await;
    Ok(step)
}

/// parquet-converter on `key` in about `n` byte ranges, as the large-object state machine runs
/// it: the plan, every range at once, the commit; one step with the totals.
pub(crate) async fn convert_in_ranges(
    converter: &parquet_converter::Converter,
    client: &aws_sdk_s3::Client,
    opts: &Options,
    key: &str,
    n: u32,
) -> Result<Step, String> {
    use futures::StreamExt;
    let name = format!("parquet-converter ({n} ranges)");
    let sp = Spinner::start(&format!("{name}: plan -> ranges -> commit"), opts.progress);
    let started = Instant::now();
    let fail = |e: tributary::Error| format!("{name}: {}: {e}", e.error_type());
    let head = client
        .head_object()
        .bucket(&opts.bucket)
        .key(key)
        .send()
        .await
        .map_err(|e| format!("{name}: HeadObject {key}: {e}"))?;
    let size = head.content_length().unwrap_or_default().max(0) as u64;
    let split_mb = size.div_ceil(u64::from(n) << 20).max(1);
    let invoke = |event: serde_json::Value| converter.invoke(LambdaEvent::new(event, ctx()));
    let plan: parquet_converter::ranged::PlanAnswer = serde_json::from_value(
        invoke(
            serde_json::json!({"mode": "plan", "bucket": opts.bucket, "key": key,
            "etag": head.e_tag(), "split_mb": split_mb}),
        )
        .await
        .map_err(fail)?,
    )
    .map_err(|e| format!("{name}: the plan's answer: {e}"))?;
    let lines = client
        .get_object()
        .bucket(&plan.manifest.bucket)
        .key(&plan.manifest.key)
        .send()
        .await
        .map_err(|e| format!("{name}: the plan: {e}"))?
        .body
        .collect()
        .await
        .map_err(|e| format!("{name}: the plan: {e}"))?
        .into_bytes();
    let items: Vec<serde_json::Value> = lines
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(serde_json::from_slice)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{name}: a line of the plan: {e}"))?;
    let answers: Vec<Result<serde_json::Value, tributary::Error>> = futures::stream::iter(items)
        .map(&invoke)
        .buffer_unordered(n as usize)
        .collect()
        .await;
    let failed = answers
        .iter()
        .find_map(|a| a.as_ref().err().map(|e| e.to_string()));
    let commit = serde_json::json!({"mode": "commit", "bucket": plan.object.bucket,
        "key": plan.object.key, "etag": plan.object.etag, "ranges": plan.ranges,
        "abort": failed.is_some()});
    let answer = invoke(commit).await.map_err(fail)?;
    if let Some(e) = failed {
        return Err(format!("{name}: a range failed, every range aborted: {e}"));
    }
    let outcome: parquet_converter::Outcome =
        serde_json::from_value(answer).map_err(|e| format!("{name}: the commit's answer: {e}"))?;
    let r = outcome
        .summary()
        .ok_or_else(|| format!("{name}: not converted: {}", outcome.status()))?;
    let step = Step {
        name: format!("parquet-converter ({} ranges)", plan.ranges),
        rows_in: Some(r.rows + r.bad_rows),
        rows_out: Some(r.rows),
        bad: Some(r.bad_rows),
        partitions: Some(r.partitions as u64),
        bytes_in: r.bytes_in,
        bytes_out: r.bytes_out,
        files: r.files.len() as u64,
        output: r
            .files
            .iter()
            .map(|f| f.key.clone())
            .collect::<Vec<_>>()
            .join(", "),
        tables: r.table.clone().into_iter().collect(),
        seconds: started.elapsed().as_secs_f64(),
    };
    sp.done(&format!(
        "{}: {} rows -> {} files in {} partitions, {} bad rows quarantined, {:.2} s{}",
        step.name,
        r.rows,
        step.files,
        r.partitions,
        r.bad_rows,
        step.seconds,
        table_note(&step.tables)
    ))
    .await;
    Ok(step)
}

/// `; table db.t created, 2 columns added` for the progress line (empty without the catalog).
fn table_note(uses: &[parquet_converter::convert::TableUse]) -> String {
    let mut names: Vec<&str> = uses.iter().map(|u| u.table.as_str()).collect();
    names.dedup();
    if names.is_empty() {
        return String::new();
    }
    let mut note = format!("; table {}", names.join(", "));
    if uses.iter().any(|u| u.created) {
        note.push_str(" created");
    }
    let added: usize = uses.iter().map(|u| u.columns_added.len()).sum();
    if added > 0 {
        note.push_str(&format!(", {added} columns added"));
    }
    note
}
