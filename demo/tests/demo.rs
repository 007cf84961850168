//! The demo end to end, with its output read back by an independent reader (pyarrow).

use tributary_demo::{Options, run};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_runs_end_to_end_and_pyarrow_reads_what_it_wrote() {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = Options {
        rows: 20_000,
        bad_every: Some(1_000),
        dir: dir.path().to_owned(),
        progress: false,
        ..Options::default()
    };
    let report = run(&opts).await.expect("the demo runs");
    let good = report.generated_good_rows.expect("generated");
    assert_eq!(good, 19_980);
    let names: Vec<&str> = report.steps.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "url-ingester",
            "parquet-converter",
            "firehose-transformer",
            "parquet-converter (events)"
        ]
    );
    let conv = &report.steps[1];
    assert_eq!((conv.rows_out, conv.bad), (Some(good), Some(20)));
    assert_eq!(conv.partitions, Some(31));
    assert_eq!(report.steps[3].rows_out, Some(report.firehose_lines));
    assert!(
        report.firehose_lines > report.firehose_ok,
        "CloudWatch records carry several lines"
    );
    assert!(report.table.contains("First rows of"), "{}", report.table);
    let lake = report.browse.clone().expect("embedded");
    assert!(
        lake.join("processed/taxi/year=2024/month=01/day=31")
            .is_dir()
    );
    assert!(lake.join("errors/taxi").is_dir(), "bad rows quarantined");

    let Some(python) = std::env::var_os("TRIBUTARY_VENV")
        .map(|v| std::path::PathBuf::from(v).join("bin/python"))
        .filter(|p| p.exists())
    else {
        return tributary_testkit::skip("demo_pyarrow", "no TRIBUTARY_VENV with pyarrow");
    };
    let script = r#"
import json, sys
import pyarrow.dataset as ds
out = {}
for name in ("taxi", "events"):
    d = ds.dataset(sys.argv[1] + "/processed/" + name, format="parquet", partitioning="hive")
    out[name] = d.count_rows()
    out[name + "_columns"] = d.schema.names
print(json.dumps(out))
"#;
    let out = std::process::Command::new(python)
        .arg("-c")
        .arg(script)
        .arg(&lake)
        .output()
        .expect("python");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["taxi"], good);
    assert_eq!(v["events"], report.firehose_lines);
    let cols = v["taxi_columns"].as_array().expect("columns");
    assert!(cols.iter().any(|c| c == "tpep_pickup_datetime") && cols.iter().any(|c| c == "day"));
}
