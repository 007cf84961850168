//! Bench command: `cargo bench -p firehose-transformer` (`scripts/bench.sh firehose`).
//!
//! Prints, on this machine, in one run, for two Firehose events:
//! * `small`: a ~6 MB event of 17,944 small JSON records, no transform configured;
//! * `transform`: a ~6 MB batch of 5,000 larger JSON records with a transform (filter, rename,
//!   drop, add, time stamps) and dynamic partitioning configured;
//!
//! the wall time and the CPU time per event of
//! * the handler in process (release build): request body in, response body out, exactly
//!   what the function does with an invocation, on all cores and on one thread;
//! * the real binary through a Lambda Runtime API emulator on 127.0.0.1 (the test harness's,
//!   which gives the function 1,024 MB: a fraction of a vCPU, so one thread): wall time from
//!   queueing the event to receiving the response, and the CPU time of the function's process
//!   (all its threads) per invocation;
//! * the seed's Python handler on the same request bytes (`json.loads` + handler +
//!   `json.dumps`, one thread, in its own process, `time.process_time`);
//!
//! then the binary's size and its cold start (process spawn to its first Runtime API request).
//! CPU times come from `/proc/<pid>/stat` (clock ticks) over many rounds.
//!
//! `BENCH_JSON=path` also writes the figures as JSON (for BENCHMARKS.md).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use firehose_transformer::Processor;
use firehose_transformer::event::{FirehoseEvent, FirehoseRecord};
use serde_json::json;
use tributary::Env;
use tributary_testkit::runtime::RuntimeApi;

/// The allocator the binary uses (see `src/main.rs`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Records of the small-record event (what fits a ~6 MB request at ~170 bytes a record).
const SMALL_RECORDS: usize = 17_944;
/// Records of the transform batch.
const BATCH_RECORDS: usize = 5_000;
/// The target: at least this many times less CPU (and wall time in process) than the seed.
const SEED_RATIO_TARGET: f64 = 20.0;
/// The target: through the runtime within this factor of the in-process wall time.
const RUNTIME_OVERHEAD_TARGET: f64 = 1.5;

/// A xorshift generator, so every run builds the same events.
fn rng() -> impl FnMut() -> u64 {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    }
}

fn record(i: usize, payload: &serde_json::Value) -> FirehoseRecord {
    FirehoseRecord {
        record_id: format!("4954698668313554428650745793632162567570019247115{i:07}"),
        approximate_arrival_timestamp: Some(1_709_787_967_000.0 + i as f64),
        data: base64::engine::general_purpose::STANDARD
            .encode(serde_json::to_vec(payload).unwrap_or_default()),
        kinesis_record_metadata: None,
    }
}

fn event(records: Vec<FirehoseRecord>) -> FirehoseEvent {
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

/// 17,944 small JSON records (clickstream-like, ~170 bytes each).
fn small_event() -> FirehoseEvent {
    let actions = ["view", "click", "purchase", "search", "logout"];
    let mut next = rng();
    let records = (0..SMALL_RECORDS)
        .map(|i| {
            let r = next();
            let ts = 1_709_787_967 + (r % 86_400) as i64;
            let payload = json!({
                "event_id": format!("e-{i:07}"),
                "ts": chrono::DateTime::from_timestamp(ts, 0).map(|t| t.to_rfc3339()),
                "user_id": format!("u-{}", r % 10_000),
                "action": actions[(r % 5) as usize],
                "status": if r.is_multiple_of(17) { 500 } else { 200 },
                "latency_ms": (r % 1000) as f64 / 8.0,
                "page": format!("/products/{}", r % 500),
                "ok": !r.is_multiple_of(3),
            });
            record(i, &payload)
        })
        .collect();
    event(records)
}

/// 5,000 JSON records of ~900 bytes, for the transform and partitioning.
fn transform_batch() -> FirehoseEvent {
    let actions = ["view", "click", "purchase", "search", "logout"];
    let tenants = ["acme", "globex", "initech", "umbrella"];
    let mut next = rng();
    let records = (0..BATCH_RECORDS)
        .map(|i| {
            let r = next();
            let ts = 1_709_787_967 + (r % 86_400) as i64;
            let payload = json!({
                "event_id": format!("e-{i:07}"),
                "ts": chrono::DateTime::from_timestamp(ts, 0).map(|t| t.to_rfc3339()),
                "user_id": format!("u-{}", r % 10_000),
                "tenant": tenants[(r % 4) as usize],
                "action": actions[(r % 5) as usize],
                "status": if r.is_multiple_of(17) { 500 } else { 200 },
                "latency_ms": (r % 1000) as f64 / 7.0,
                "debug": null,
                "user_agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36",
                "page": {"path": format!("/products/{}", r % 500), "referrer": "https://example.com/search?q=shoes", "title": "Running shoes, lightweight, breathable mesh upper"},
                "tags": ["web", "eu-west-1", "beta", format!("cohort-{}", r % 12)],
                "cart": {"items": (r % 5), "value": (r % 50_000) as f64 / 100.0, "currency": "EUR"},
                "note": "x".repeat(180 + (r % 150) as usize),
            });
            record(i, &payload)
        })
        .collect();
    event(records)
}

/// The transform batch's configuration.
const TRANSFORM_ENV: &[(&str, &str)] = &[
    (
        "TRANSFORM",
        r#"{"filter":[{"field":"status","op":"lt","value":500}],"rename":{"user_id":"user"},
            "drop":["debug","note"],"drop_nulls":true,"add":{"source":"firehose"},
            "add_processing_time":"processed_at","add_arrival_time":"arrived_at"}"#,
    ),
    ("PARTITION_TIMESTAMP_FIELD", "ts"),
    ("PARTITION_FIELDS", "tenant"),
];

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// CPU time (user + system, every thread, finished ones included) of a process, in ms.
fn cpu_ms(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    (ticks(11) + ticks(12)) * 1000.0 / clock_ticks()
}

/// `getconf CLK_TCK` (100 on Linux).
fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// Wall and CPU per event, in ms.
#[derive(Clone, Copy, Debug)]
struct Cost {
    wall_ms: f64,
    cpu_ms: f64,
}

impl Cost {
    fn json(&self) -> serde_json::Value {
        json!({"wall_ms": self.wall_ms, "cpu_ms": self.cpu_ms})
    }
}

/// The handler in process: request body in, response body out, `rounds` times after warm-up.
fn in_process(p: &Processor, request: &[u8], rounds: usize) -> (Cost, Vec<u8>) {
    let mut last = Vec::new();
    for _ in 0..3 {
        last = p.handle_raw(request, "bench").unwrap_or_default();
    }
    let mut times = Vec::with_capacity(rounds);
    let cpu0 = cpu_ms("self");
    for _ in 0..rounds {
        let t0 = Instant::now();
        let out = p.handle_raw(request, "bench").unwrap_or_default();
        times.push(t0.elapsed().as_secs_f64() * 1000.0);
        drop(out);
    }
    let cpu = (cpu_ms("self") - cpu0) / rounds as f64;
    if let Ok(out) = p.handle_raw(request, "bench") {
        last = out;
    }
    (
        Cost {
            wall_ms: median(times),
            cpu_ms: cpu,
        },
        last,
    )
}

/// The real binary under the Runtime API emulator with `env`: wall per invocation (queue to
/// answer) and the function process's CPU per invocation; `None` if it did not answer.
fn through_runtime(bin: &str, env: &[(&str, &str)], request: &[u8], rounds: usize) -> Option<Cost> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ok()?;
    rt.block_on(async {
        let api = RuntimeApi::start().await;
        let mut cmd = api.command(bin);
        cmd.env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().ok()?;
        let pid = child.id().to_string();
        let body = bytes::Bytes::copy_from_slice(request);
        let result = async {
            api.first_poll(Duration::from_secs(10)).await?;
            for _ in 0..3 {
                api.invoke_raw(body.clone()).await.ok()?;
            }
            let cpu0 = cpu_ms(&pid);
            let mut times = Vec::with_capacity(rounds);
            for _ in 0..rounds {
                let t0 = Instant::now();
                api.invoke_raw(body.clone()).await.ok()?;
                times.push(t0.elapsed().as_secs_f64() * 1000.0);
            }
            let cpu = (cpu_ms(&pid) - cpu0) / rounds as f64;
            Some(Cost {
                wall_ms: median(times),
                cpu_ms: cpu,
            })
        }
        .await;
        let _ = child.kill();
        let _ = child.wait();
        result
    })
}

/// The seed's Python handler on the request in its own process.
fn seed(request_path: &std::path::Path, rounds: usize) -> Option<Cost> {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../bench/peers/firehose_seed_handler.py"
    );
    let out = Command::new("python3")
        .arg(script)
        .arg(request_path)
        .arg(rounds.to_string())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse::<f64>().ok())
    };
    Some(Cost {
        wall_ms: field("median_ms=")?,
        cpu_ms: field("cpu_ms=")?,
    })
}

/// Spawns the binary against the Runtime API emulator; returns ms until its first `next`
/// request.
fn cold_start_ms(bin: &str) -> Option<f64> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ok()?;
    rt.block_on(async {
        let api = RuntimeApi::start().await;
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

/// One event measured every way.
fn case(
    name: &str,
    what: &str,
    ev: &FirehoseEvent,
    env: &[(&str, &str)],
    bin: &str,
    dir: &std::path::Path,
) -> serde_json::Value {
    let request = serde_json::to_vec(ev).unwrap_or_default();
    let Ok(processor) = Processor::from_env(&Env::from_pairs(env.iter().copied())) else {
        eprintln!("bench config rejected");
        std::process::exit(1);
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (ours, response) = in_process(&processor, &request, 150);
    let (one, _) = in_process(&processor.clone().with_workers(1), &request, 150);
    let counts = serde_json::from_slice::<serde_json::Value>(&response)
        .ok()
        .and_then(|v| {
            let recs = v["records"].as_array()?.clone();
            let n = |r: &str| recs.iter().filter(|x| x["result"] == r).count();
            Some((recs.len(), n("Ok"), n("Dropped"), n("ProcessingFailed")))
        })
        .unwrap_or_default();
    let runtime = through_runtime(bin, env, &request, 60);
    let path = dir.join(format!("{name}.json"));
    let py = std::fs::write(&path, &request)
        .ok()
        .and_then(|_| seed(&path, 20));
    println!(
        "{name}: {what}; {} records, request {:.2} MB, response {:.2} MB (answered {}: ok {}, dropped {}, failed {})",
        ev.records.len(),
        request.len() as f64 / 1e6,
        response.len() as f64 / 1e6,
        counts.0,
        counts.1,
        counts.2,
        counts.3
    );
    let row = |label: &str, c: Option<Cost>| match c {
        Some(c) => println!(
            "  {label:<44} wall {:>7.2} ms   CPU {:>7.2} ms per event",
            c.wall_ms, c.cpu_ms
        ),
        None => println!("  {label:<44} not measured"),
    };
    row(
        &format!("firehose-transformer in process, {cores} threads"),
        Some(ours),
    );
    row("firehose-transformer in process, 1 thread", Some(one));
    row(
        "firehose-transformer through the Runtime API, 1024 MB",
        runtime,
    );
    row("seed Python lambda_handler (one thread)", py);
    let mut targets = Vec::new();
    if let Some(py) = py {
        let cpu_ratio = py.cpu_ms / ours.cpu_ms;
        let wall_ratio = py.wall_ms / ours.wall_ms;
        targets.push((
            format!("CPU per event >= {SEED_RATIO_TARGET:.0}x less than the seed"),
            cpu_ratio >= SEED_RATIO_TARGET,
            format!(
                "{:.2} ms vs {:.1} ms: {cpu_ratio:.1}x",
                ours.cpu_ms, py.cpu_ms
            ),
        ));
        targets.push((
            format!("wall time in process >= {SEED_RATIO_TARGET:.0}x below the seed"),
            wall_ratio >= SEED_RATIO_TARGET,
            format!(
                "{:.2} ms vs {:.1} ms: {wall_ratio:.1}x",
                ours.wall_ms, py.wall_ms
            ),
        ));
        if let Some(rt) = runtime {
            let cpu_ratio = py.cpu_ms / rt.cpu_ms;
            targets.push((
                format!("CPU per invocation through the runtime >= {SEED_RATIO_TARGET:.0}x less than the seed"),
                cpu_ratio >= SEED_RATIO_TARGET,
                format!("{:.2} ms vs {:.1} ms: {cpu_ratio:.1}x", rt.cpu_ms, py.cpu_ms),
            ));
        }
    }
    if let Some(rt) = runtime {
        // The function under the emulator has 1,024 MB, so one thread: the same in process.
        let ratio = rt.wall_ms / one.wall_ms;
        targets.push((
            format!(
                "through the runtime within {RUNTIME_OVERHEAD_TARGET}x of in process (median wall per event: \
                 queueing the event to receiving the response, against request body in to response \
                 body out in process; one thread each)"
            ),
            ratio <= RUNTIME_OVERHEAD_TARGET,
            format!(
                "{:.2} ms vs {:.2} ms: {ratio:.2}x",
                rt.wall_ms, one.wall_ms
            ),
        ));
    }
    for (target, met, figures) in &targets {
        println!(
            "  target {target}: {} ({figures})",
            if *met { "met" } else { "MISSED" }
        );
    }
    json!({
        "name": name, "what": what, "records": ev.records.len(), "request_bytes": request.len(),
        "response_bytes": response.len(), "ok": counts.1, "dropped": counts.2, "failed": counts.3,
        "threads": cores, "in_process": ours.json(), "in_process_one_thread": one.json(),
        "through_runtime": runtime.map(|c| c.json()), "seed": py.map(|c| c.json()),
        "targets": targets.iter().map(|(t, m, f)| json!({"target": t, "met": m, "figures": f})).collect::<Vec<_>>(),
    })
}

/// `BENCH_PROFILE=small|transform`: only that event's handler, in process on one thread (or
/// `BENCH_WORKERS`), for a few seconds (under `perf record`; `BENCH_ROUNDS` sets how many).
/// `BENCH_PROFILE=runtime-small|runtime-transform`: the same event through the Runtime API
/// emulator and the release binary instead (`perf record` follows the child).
fn profile(name: &str) {
    let event = name.strip_prefix("runtime-");
    let (ev, env) = if event.unwrap_or(name) == "small" {
        (small_event(), &[][..])
    } else {
        (transform_batch(), TRANSFORM_ENV)
    };
    let request = serde_json::to_vec(&ev).unwrap_or_default();
    // `BENCH_ROUNDS=n`: n events instead of 400 (under an instruction counter).
    let rounds = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(400);
    if event.is_some() {
        let bin = env!("CARGO_BIN_EXE_firehose-transformer");
        match through_runtime(bin, env, &request, rounds) {
            Some(cost) => println!(
                "{name}: wall {:.2} ms, CPU {:.2} ms per event",
                cost.wall_ms, cost.cpu_ms
            ),
            None => println!("{name}: not measured"),
        }
        return;
    }
    let Ok(p) = Processor::from_env(&Env::from_pairs(env.iter().copied())) else {
        return;
    };
    // `BENCH_WORKERS=n`: on n threads instead.
    let workers = std::env::var("BENCH_WORKERS")
        .ok()
        .and_then(|w| w.parse().ok())
        .unwrap_or(1);
    let p = p.with_workers(workers);
    let (cost, _) = in_process(&p, &request, rounds);
    println!(
        "{name}: wall {:.2} ms, CPU {:.2} ms per event",
        cost.wall_ms, cost.cpu_ms
    );
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument is accepted and ignored.
    tributary::observability::set_emf_output(false);
    if let Ok(name) = std::env::var("BENCH_PROFILE") {
        return profile(&name);
    }
    let bin = env!("CARGO_BIN_EXE_firehose-transformer");
    let dir = std::env::temp_dir().join(format!("tributary-bench-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let small = case(
        "small",
        "small JSON records, no transform",
        &small_event(),
        &[],
        bin,
        &dir,
    );
    let transform = case(
        "transform",
        "transform and dynamic partitioning",
        &transform_batch(),
        TRANSFORM_ENV,
        bin,
        &dir,
    );
    let _ = std::fs::remove_dir_all(&dir);

    // Binary size and cold start.
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
    let cold = median(starts);
    println!(
        "binary: {:.2} MB stripped; cold start to first Runtime API request: median {cold:.2} ms",
        size as f64 / 1e6
    );
    if let Ok(out) = std::env::var("BENCH_JSON") {
        let doc = json!({
            "events": [small, transform], "binary_bytes": size, "cold_start_ms": cold,
            "seed_ratio_target": SEED_RATIO_TARGET, "runtime_overhead_target": RUNTIME_OVERHEAD_TARGET,
        });
        let _ = std::fs::write(out, doc.to_string());
    }
    std::thread::sleep(Duration::from_millis(10));
}
