//! The demo end to end, with its output read back by an independent reader (pyarrow), and
//! the local catalog it kept checked against the Parquet written.

use std::path::Path;

use serde_json::Value;
use tributary_demo::{CATALOG_DIR, DATABASE, Options, run};

/// The stored definition of a table of the local catalog: `<dir>/_catalog/<db>/<table>.json`.
fn stored_table(dir: &Path, name: &str) -> Value {
    let path = dir
        .join(CATALOG_DIR)
        .join(DATABASE)
        .join(format!("{name}.json"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("catalog file {}: {e}", path.display()));
    serde_json::from_str(&text).expect("catalog file is JSON")
}

/// `(name, type)` of a list of columns of a stored table.
fn columns(list: &Value) -> Vec<(String, String)> {
    list.as_array()
        .expect("a column list")
        .iter()
        .map(|c| {
            (
                c["name"].as_str().expect("name").to_owned(),
                c["type_name"].as_str().expect("type").to_owned(),
            )
        })
        .collect()
}

/// The Athena type a Parquet column read by pyarrow stands for: `int64` is `bigint`, `double`
/// `double`, `string` `string`, `timestamp[..]` `timestamp`, `bool` `boolean`; structs and
/// lists (described by the script as `{"struct": [[name, type]...]}`, `{"list": type}`) by
/// their fields and items. `None` for a type the converter should not write.
fn athena_type(arrow: &Value) -> Option<String> {
    if let Some(fields) = arrow.get("struct").and_then(Value::as_array) {
        let fields = fields
            .iter()
            .map(|f| Some(format!("{}:{}", f[0].as_str()?, athena_type(&f[1])?)))
            .collect::<Option<Vec<_>>>()?;
        return Some(format!("struct<{}>", fields.join(",")));
    }
    if let Some(item) = arrow.get("list") {
        return Some(format!("array<{}>", athena_type(item)?));
    }
    let t = arrow.as_str()?;
    Some(
        match t {
            "int64" => "bigint",
            "int32" => "int",
            "double" => "double",
            "string" | "large_string" => "string",
            "bool" => "boolean",
            "date32[day]" => "date",
            t if t.starts_with("timestamp[") => "timestamp",
            _ => return None,
        }
        .to_owned(),
    )
}

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

    // The catalog: one table per dataset, created by the first conversion of each, printed
    // with its DDL.
    let tables: Vec<String> = report
        .tables
        .iter()
        .map(|t| format!("{}.{}", t.table.def.database, t.table.def.name))
        .collect();
    assert_eq!(tables, ["tributary.events", "tributary.taxi"]);
    assert!(conv.tables.iter().all(|u| u.table == "tributary.taxi"));
    assert!(conv.tables[0].created, "{:?}", conv.tables);
    assert!(report.steps[3].tables.iter().any(|u| u.created));
    for t in ["tributary.taxi", "tributary.events"] {
        assert!(
            report.table.contains(&format!("\n{t}: created by")),
            "{}",
            report.table
        );
    }
    assert!(
        report
            .table
            .contains("CREATE EXTERNAL TABLE `tributary`.`taxi` ("),
        "{}",
        report.table
    );
    let taxi = stored_table(dir.path(), "taxi");
    let events = stored_table(dir.path(), "events");
    let keys = |t: &Value| -> Vec<(String, String)> { columns(&t["table"]["partition_keys"]) };
    let ints = |names: &[&str]| -> Vec<(String, String)> {
        names
            .iter()
            .map(|n| ((*n).to_owned(), "int".to_owned()))
            .collect()
    };
    assert_eq!(keys(&taxi), ints(&["year", "month", "day"]));
    assert_eq!(keys(&events), ints(&["year", "month", "day", "hour"]));
    assert_eq!(
        taxi["table"]["location"], "s3://demo-lake/processed/taxi/",
        "{taxi}"
    );
    let taxi_report = &report.tables[1];
    assert_eq!(taxi_report.partitions.len(), 31, "one registered per day");
    let declared = |t: &Value| columns(&t["table"]["columns"]);
    let taxi_cols = declared(&taxi);
    for (name, ty) in [
        ("tpep_pickup_datetime", "timestamp"),
        ("fare_amount", "double"),
        ("passenger_count", "bigint"),
    ] {
        assert!(
            taxi_cols.iter().any(|(n, t)| n == name && t == ty),
            "{name} {ty} in {taxi_cols:?}"
        );
    }

    let Some(python) = std::env::var_os("TRIBUTARY_VENV")
        .map(|v| std::path::PathBuf::from(v).join("bin/python"))
        .filter(|p| p.exists())
    else {
        return tributary_testkit::skip("demo_pyarrow", "no TRIBUTARY_VENV with pyarrow");
    };
    // Every Parquet file's own schema (as pyarrow reads it), and each dataset's rows.
    let script = r#"
import json, pathlib, sys
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pyarrow.types as pt
def describe(t):
    if pt.is_struct(t):
        return {"struct": [[t.field(i).name, describe(t.field(i).type)] for i in range(t.num_fields)]}
    if pt.is_list(t) or pt.is_large_list(t):
        return {"list": describe(t.value_type)}
    return str(t)
out = {}
for name in ("taxi", "events"):
    root = pathlib.Path(sys.argv[1]) / "processed" / name
    d = ds.dataset(str(root), format="parquet", partitioning="hive")
    out[name] = d.count_rows()
    out[name + "_columns"] = d.schema.names
    out[name + "_files"] = {
        str(f.relative_to(root)): [[field.name, describe(field.type)] for field in pq.read_schema(f)]
        for f in sorted(root.rglob("*.parquet"))
    }
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

    // Each file's columns are the table's, with the types the table declares; every declared
    // column is in some file.
    for (name, table) in [("taxi", &taxi), ("events", &events)] {
        let cols = declared(table);
        let files = v[format!("{name}_files")].as_object().expect("files");
        assert!(!files.is_empty(), "{name}: no Parquet files");
        let mut seen = std::collections::BTreeSet::new();
        for (file, schema) in files {
            for field in schema.as_array().expect("schema") {
                let (col, arrow) = (field[0].as_str().expect("name"), &field[1]);
                let Some((_, athena)) = cols.iter().find(|(n, _)| n == col) else {
                    panic!("{name}/{file}: column {col} ({arrow}) is not in the table: {cols:?}");
                };
                assert_eq!(
                    athena_type(arrow).as_deref(),
                    Some(athena.as_str()),
                    "{name}/{file}: column {col} is {arrow} in the file, {athena} in the table"
                );
                seen.insert(col.to_owned());
            }
        }
        for (col, _) in &cols {
            assert!(
                seen.contains(col),
                "{name}: declared column {col} is in no file"
            );
        }
    }
}

/// `--ranges N`: the taxi file converted in byte ranges (plan, ranges, commit) gives the rows,
/// bad rows and partitions of the one-invocation run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_converts_the_taxi_file_in_ranges_like_in_one_invocation() {
    let mut steps = Vec::new();
    for ranges in [None, Some(4)] {
        let dir = tempfile::tempdir().expect("tempdir");
        let opts = Options {
            rows: 60_000,
            bad_every: Some(1_000),
            dir: dir.path().to_owned(),
            progress: false,
            ranges,
            ..Options::default()
        };
        let report = run(&opts).await.expect("the demo runs");
        steps.push(report.steps[1].clone());
    }
    let (one, ranged) = (&steps[0], &steps[1]);
    assert_eq!(one.name, "parquet-converter");
    assert!(
        ranged.name.ends_with(" ranges)") && ranged.name != "parquet-converter (1 ranges)",
        "{}",
        ranged.name
    );
    assert_eq!(ranged.rows_out, one.rows_out);
    assert_eq!((ranged.bad, one.bad), (Some(60), Some(60)));
    assert_eq!(ranged.partitions, one.partitions);
    assert!(ranged.files >= one.files);
}
