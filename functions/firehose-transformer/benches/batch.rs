//! Bench command: `cargo bench -p firehose-transformer`.
//!
//! Prints, on this machine, in one run:
//! * the time to process a ~6 MB batch of ~5,000 JSON records with a transform and dynamic
//!   partitioning configured (in process, release build), and the seed's Python handler on
//!   the same batch when `python3` is available (also timed in process);
//! * the release binary's size and its cold start: from process spawn to its first request
//!   to a Lambda Runtime API served on 127.0.0.1.
//!
//! `BENCH_JSON=path` also writes the figures as JSON (for BENCHMARKS.md).

use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine as _;
use chrono::Utc;
use firehose_transformer::Processor;
use firehose_transformer::event::{FirehoseEvent, FirehoseRecord};
use tributary::Env;

/// The allocator the binary uses (see `src/main.rs`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const RECORDS: usize = 5_000;

fn batch() -> FirehoseEvent {
    let b64 = base64::engine::general_purpose::STANDARD;
    let actions = ["view", "click", "purchase", "search", "logout"];
    let tenants = ["acme", "globex", "initech", "umbrella"];
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let records = (0..RECORDS)
        .map(|i| {
            let r = next();
            let ts = 1_709_787_967 + (r % 86_400) as i64;
            let payload = serde_json::json!({
                "event_id": format!("e-{i:07}"),
                "ts": chrono::DateTime::from_timestamp(ts, 0).map(|t| t.to_rfc3339()),
                "user_id": format!("u-{}", r % 10_000),
                "tenant": tenants[(r % 4) as usize],
                "action": actions[(r % 5) as usize],
                "status": if r % 17 == 0 { 500 } else { 200 },
                "latency_ms": (r % 1000) as f64 / 7.0,
                "debug": null,
                "user_agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36",
                "page": {"path": format!("/products/{}", r % 500), "referrer": "https://example.com/search?q=shoes", "title": "Running shoes, lightweight, breathable mesh upper"},
                "tags": ["web", "eu-west-1", "beta", format!("cohort-{}", r % 12)],
                "cart": {"items": (r % 5), "value": (r % 50_000) as f64 / 100.0, "currency": "EUR"},
                "note": "x".repeat(180 + (r % 150) as usize),
            });
            FirehoseRecord {
                record_id: format!("4954698668313554428650745793632162567570019247115{i:07}"),
                approximate_arrival_timestamp: Some(1_709_787_967_000.0 + i as f64),
                data: b64.encode(serde_json::to_vec(&payload).unwrap_or_default()),
                kinesis_record_metadata: None,
            }
        })
        .collect();
    FirehoseEvent {
        invocation_id: Some("bench".into()),
        delivery_stream_arn: Some(
            "arn:aws:firehose:us-east-1:123456789012:deliverystream/bench".into(),
        ),
        source_kinesis_stream_arn: None,
        region: Some("us-east-1".into()),
        records,
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Spawns the binary against the testkit's Runtime API emulator; returns ms until its first
/// `next` request.
fn cold_start_ms(bin: &str) -> Option<f64> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ok()?;
    rt.block_on(async {
        let api = tributary_testkit::runtime::RuntimeApi::start().await;
        let t0 = Instant::now();
        let mut child = api.spawn(
            bin,
            &[
                ("TRANSFORM", r#"{"drop":["debug"]}"#),
                ("PARTITION_TIMESTAMP_FIELD", "ts"),
            ],
        );
        let polled = api.first_poll(Duration::from_secs(10)).await;
        let _ = child.kill();
        let _ = child.wait();
        Some(polled?.duration_since(t0).as_secs_f64() * 1000.0)
    })
}

fn python_peer_ms(batch_path: &std::path::Path) -> Option<f64> {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../bench/peers/firehose_seed_handler.py"
    );
    let out = Command::new("python3")
        .arg(script)
        .arg(batch_path)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("median_ms=")?.trim().parse().ok())
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument is accepted and ignored.
    let ev = batch();
    let request = serde_json::to_vec(&ev).unwrap_or_default();
    let request_bytes = request.len();
    let env = Env::from_pairs([
        (
            "TRANSFORM",
            r#"{"filter":[{"field":"status","op":"lt","value":500}],"rename":{"user_id":"user"},
                "drop":["debug","note"],"drop_nulls":true,"add":{"source":"firehose"},
                "add_processing_time":"processed_at","add_arrival_time":"arrived_at"}"#,
        ),
        ("PARTITION_TIMESTAMP_FIELD", "ts"),
        ("PARTITION_FIELDS", "tenant"),
    ]);
    let Ok(processor) = Processor::from_env(&env) else {
        eprintln!("bench config rejected");
        std::process::exit(1);
    };
    // Warm up, then time what an invocation does: parse the request JSON (as the runtime
    // does), process the batch, and build the response JSON.
    let time = |p: &Processor| {
        let mut times = Vec::new();
        let mut last = (0usize, String::new());
        for round in 0..25 {
            let t0 = Instant::now();
            let ev: FirehoseEvent = match serde_json::from_slice(&request) {
                Ok(ev) => ev,
                Err(e) => {
                    eprintln!("bench request does not parse: {e}");
                    std::process::exit(1);
                }
            };
            let parsed = t0.elapsed();
            let (json, stats) = p.process(&ev, Utc::now());
            let processed = t0.elapsed();
            let len = json.len();
            let raw = serde_json::value::RawValue::from_string(json);
            let ms = t0.elapsed().as_secs_f64() * 1000.0;
            if std::env::var_os("BENCH_SPLIT").is_some() {
                println!(
                    "  parse {:.1} ms, process {:.1} ms, response check {:.1} ms",
                    parsed.as_secs_f64() * 1e3,
                    (processed - parsed).as_secs_f64() * 1e3,
                    ms - processed.as_secs_f64() * 1e3
                );
            }
            if round == 0 {
                last = (
                    len,
                    format!(
                        "{} records, request {:.2} MB, response {:.2} MB (valid: {}), ok {} dropped {} failed {}",
                        stats.records_in,
                        request_bytes as f64 / 1e6,
                        len as f64 / 1e6,
                        raw.is_ok(),
                        stats.ok,
                        stats.dropped,
                        stats.failed
                    ),
                );
            } else {
                times.push(ms);
            }
        }
        (
            median(times.clone()),
            times.iter().copied().fold(f64::INFINITY, f64::min),
            last,
        )
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (one, one_best, (response_bytes, summary)) = time(&processor.clone().with_workers(1));
    println!("batch: {summary}");
    println!(
        "firehose-transformer, 1 thread: median {one:.2} ms, best {one_best:.2} ms per batch ({:.0} MB/s of request JSON)",
        request_bytes as f64 / 1e6 / (one / 1000.0)
    );
    let (ours, best, _) = time(&processor);
    println!(
        "firehose-transformer, {cores} threads: median {ours:.2} ms, best {best:.2} ms per batch ({:.0} MB/s)",
        request_bytes as f64 / 1e6 / (ours / 1000.0)
    );

    // The seed's Python handler on the same batch.
    let dir = std::env::temp_dir().join(format!("tributary-bench-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join("batch.json");
    let python = std::fs::write(&path, &request)
        .ok()
        .and_then(|_| python_peer_ms(&path));
    let _ = std::fs::remove_dir_all(&dir);
    match python {
        Some(py) => println!(
            "seed Python lambda_handler: median {py:.2} ms per batch -> ours is {:.1}x faster",
            py / ours
        ),
        None => println!("seed Python lambda_handler: not measured (python3 unavailable)"),
    }

    // Binary size and cold start.
    let bin = env!("CARGO_BIN_EXE_firehose-transformer");
    // The bench profile keeps symbols for profilers; report the size as shipped (stripped).
    let stripped =
        std::env::temp_dir().join(format!("firehose-transformer-{}", std::process::id()));
    let size = std::fs::copy(bin, &stripped)
        .ok()
        .and_then(|_| Command::new("strip").arg(&stripped).status().ok())
        .filter(|s| s.success())
        .and_then(|_| std::fs::metadata(&stripped).ok())
        .or_else(|| std::fs::metadata(bin).ok())
        .map(|m| m.len())
        .unwrap_or(0);
    let _ = std::fs::remove_file(&stripped);
    let starts: Vec<f64> = (0..15).filter_map(|_| cold_start_ms(bin)).collect();
    let cold = if starts.is_empty() {
        f64::NAN
    } else {
        median(starts)
    };
    println!(
        "binary: {:.2} MB stripped; cold start to first Runtime API request: median {cold:.2} ms",
        size as f64 / 1e6
    );
    if let Ok(out) = std::env::var("BENCH_JSON") {
        let doc = serde_json::json!({
            "records": RECORDS, "request_bytes": request_bytes, "response_bytes": response_bytes,
            "median_ms": ours, "best_ms": best, "single_thread_median_ms": one, "threads": cores, "python_seed_median_ms": python,
            "binary_bytes": size, "cold_start_ms": cold,
        });
        let _ = std::fs::write(out, doc.to_string());
    }
    std::thread::sleep(Duration::from_millis(10));
}
