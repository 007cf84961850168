//! The Glue Data Catalog as each dataset's schema contract, end to end: the real handler, a
//! real S3 (embedded or `TEST_S3_ENDPOINT`) and a real Glue API (moto on loopback, behind the
//! harness's version-checking fault proxy). Every dataset is then checked independently: each
//! Parquet file's physical and logical types are the ones Athena reads for the table's
//! declared column types (pyarrow, from the test venv).

mod common;

use std::sync::Arc;

use parquet_converter::catalog::{GlueCatalog, GlueSettings};
use parquet_converter::{Config, Converter, Response};
use serde_json::{Value, json};
use tributary::Env;
use tributary::s3::S3Settings;
use tributary_testkit::TestS3;
use tributary_testkit::faults::Calls;
use tributary_testkit::glue::{GlueAction, TestGlue};

use common::{converted, put_and_convert, put_and_handle, venv_python};

/// A converter under the contract of `database`, with its own table cache (a container).
async fn converter(
    s3: &TestS3,
    glue: &TestGlue,
    database: &str,
    extra: &[(&str, &str)],
) -> Converter {
    let mut env = Env::from_pairs([
        ("INFER_ROWS", "10"),
        ("BATCH_ROWS", "256"),
        ("GLUE_DATABASE", database),
        ("CATALOG_CACHE_SECS", "60"),
    ]);
    for (k, v) in extra {
        env = env.with(*k, *v);
    }
    let mut settings = S3Settings::for_endpoint(&s3.endpoint, &s3.access_key, &s3.secret_key);
    settings.force_path_style = s3.path_style;
    settings.service.region = Some(s3.region.clone());
    let glue = GlueSettings::for_endpoint(
        &glue.endpoint,
        &glue.region,
        &glue.access_key,
        &glue.secret_key,
    );
    Converter::new(
        Config::from_env(&env).expect("config"),
        settings.build_client().await,
    )
    .with_catalog(Arc::new(GlueCatalog::from_settings(&glue).await))
}

/// The table as Glue holds it: `(columns as (name, type), partition keys as (name, type))`.
async fn table(
    glue: &TestGlue,
    database: &str,
    name: &str,
) -> (Vec<(String, String)>, Vec<(String, String)>, Value) {
    let (status, body) = glue
        .call("GetTable", json!({"DatabaseName": database, "Name": name}))
        .await;
    assert_eq!(status, 200, "GetTable {name}: {body}");
    let t = &body["Table"];
    let pairs = |v: &Value| -> Vec<(String, String)> {
        v.as_array()
            .into_iter()
            .flatten()
            .map(|c| {
                (
                    c["Name"].as_str().unwrap_or_default().to_owned(),
                    c["Type"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    };
    (
        pairs(&t["StorageDescriptor"]["Columns"]),
        pairs(&t["PartitionKeys"]),
        t.clone(),
    )
}

fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect()
}

/// The independent check: every Parquet file under `prefix`, its physical and logical types
/// against the declared `columns`, by Athena's rules for Parquet. Returns the problems found.
async fn athena_reads(
    s3: &TestS3,
    bucket: &str,
    prefix: &str,
    columns: &[(String, String)],
) -> Vec<String> {
    let Some(python) = venv_python() else {
        tributary_testkit::skip("athena_reads", "no test venv (pyarrow)");
        return Vec::new();
    };
    let declared = serde_json::to_string(columns).expect("json");
    let script = format!(
        r#"
import json, os, re, sys
import pyarrow as pa, pyarrow.parquet as pq
declared = json.loads({declared:?})
def athena_of(t):
    if pa.types.is_int64(t): return "bigint"
    if pa.types.is_int32(t): return "int"
    if pa.types.is_int16(t): return "smallint"
    if pa.types.is_int8(t): return "tinyint"
    if pa.types.is_float64(t): return "double"
    if pa.types.is_float32(t): return "float"
    if pa.types.is_boolean(t): return "boolean"
    if pa.types.is_string(t) or pa.types.is_large_string(t): return "string"
    if pa.types.is_date32(t): return "date"
    if pa.types.is_timestamp(t): return "timestamp"
    if pa.types.is_decimal(t): return f"decimal({{t.precision}},{{t.scale}})"
    if pa.types.is_list(t) or pa.types.is_large_list(t): return f"array<{{athena_of(t.value_type)}}>"
    if pa.types.is_struct(t): return "struct<" + ",".join(f"{{t.field(i).name.lower()}}:{{athena_of(t.field(i).type)}}" for i in range(t.num_fields)) + ">"
    return str(t)
# Physical types Athena reads for each scalar Athena type.
PHYSICAL = {{"bigint": ("INT64",), "int": ("INT32",), "smallint": ("INT32",), "tinyint": ("INT32",),
    "double": ("DOUBLE",), "float": ("FLOAT",), "boolean": ("BOOLEAN",), "string": ("BYTE_ARRAY",),
    "date": ("INT32",), "timestamp": ("INT64", "INT96")}}
def ok(athena, field, leaf):
    want = re.sub(r"\s+", "", athena.lower())
    want = re.sub(r"^(varchar|char)\(\d+\)$", "string", want)
    if athena_of(field.type) != want:
        return False
    if leaf is None:
        return True  # nested: its leaves were compared through the Arrow types
    if want.startswith("decimal"):
        return leaf.physical_type in ("INT32", "INT64", "FIXED_LEN_BYTE_ARRAY") and str(leaf.logical_type).startswith("Decimal")
    if want == "string" and not str(leaf.logical_type).startswith("String"):
        return False
    return leaf.physical_type in PHYSICAL.get(want, ())
problems = []
files = sorted(os.listdir(sys.argv[1]))
for name in files:
    path = os.path.join(sys.argv[1], name)
    f = pq.ParquetFile(path)
    schema = f.schema_arrow
    by_name = {{n.lower(): i for i, n in enumerate(schema.names)}}
    for cname, athena in declared:
        i = by_name.get(cname.lower())
        if i is None:
            continue  # a column the file lacks reads as null
        field = schema.field(i)
        leaves = {{f.schema.column(j).path: f.schema.column(j) for j in range(len(f.schema))}}
        leaf = leaves.get(field.name)
        if not ok(athena, field, leaf):
            shown = f"{{leaf.physical_type}}, {{leaf.logical_type}}" if leaf is not None else "nested"
            problems.append(f"{{name}}: column {{cname}} is {{field.type}} ({{shown}}); the table declares {{athena}}")
    # Readable under the declared names and types, with nothing cast.
    f.read(columns=[schema.names[by_name[c.lower()]] for c, _ in declared if c.lower() in by_name])
print(json.dumps({{"files": len(files), "problems": problems}}))
"#
    );
    let out = common::python_over_parquet(&python, s3, bucket, prefix, &script).await;
    assert!(
        out["files"].as_u64().unwrap_or(0) > 0,
        "no Parquet under {prefix}"
    );
    out["problems"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| p.as_str().unwrap_or_default().to_owned())
        .collect()
}

fn first_file() -> Vec<u8> {
    let mut s = String::from("VendorID,fare_amount,note,pickup,paid\n");
    for i in 0..40 {
        let note = if i < 20 {
            String::new()
        } else {
            format!("n{i}")
        };
        s.push_str(&format!(
            "{},{}.5,{note},2024-01-0{} 10:{:02}:00,{}\n",
            i % 3,
            i,
            1 + i % 2,
            i,
            i % 2 == 0
        ));
    }
    s.into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_file_creates_the_table_and_later_files_are_written_under_its_types() {
    let Some(glue) = TestGlue::start_with_faults("contract_first_file").await else {
        return;
    };
    let s3 = TestS3::start().await;
    let bucket = s3.bucket().await;
    let db = glue.database().await;
    let c = converter(&s3, &glue, &db, &[("PARTITION_BY", "pickup:day")]).await;

    let out = put_and_convert(&s3, &c, &bucket, "raw/trips/first.csv", first_file()).await;
    let used = converted(&out)
        .table
        .clone()
        .expect("the table is reported");
    assert_eq!(used.table, format!("{db}.trips"));
    assert!(used.created, "{out}");
    let (columns, keys, t) = table(&glue, &db, "trips").await;
    assert_eq!(
        columns,
        pairs(&[
            ("vendorid", "bigint"),
            ("fare_amount", "double"),
            ("note", "string"),
            ("pickup", "timestamp"),
            ("paid", "boolean"),
        ])
    );
    assert_eq!(
        keys,
        pairs(&[("year", "int"), ("month", "int"), ("day", "int")])
    );
    let sd = &t["StorageDescriptor"];
    assert_eq!(sd["Location"], format!("s3://{bucket}/processed/trips/"));
    assert_eq!(
        sd["SerdeInfo"]["SerializationLibrary"],
        "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
    );
    assert_eq!(t["Parameters"]["classification"], "parquet");
    assert_eq!(t["Parameters"]["tributary.producer"], "parquet-converter");
    // Both days registered, at the files' locations.
    let (_, parts) = glue
        .call(
            "GetPartitions",
            json!({"DatabaseName": db, "TableName": "trips"}),
        )
        .await;
    let mut values: Vec<Value> = parts["Partitions"]
        .as_array()
        .expect("partitions")
        .iter()
        .map(|p| p["Values"].clone())
        .collect();
    values.sort_by_key(|v| v.to_string());
    assert_eq!(
        values,
        [json!(["2024", "01", "01"]), json!(["2024", "01", "02"])]
    );
    assert_eq!(used.partitions, 2);

    // A later file whose inference differs: whole-number fares (int64 on their own), a note
    // that looks numeric, offset timestamps, a new column. Written under the table's types;
    // the new column is appended once.
    // `paid` is empty in the whole type sample (10 rows), which alone would infer `string`.
    let mut later = String::from("vendorid,FARE_AMOUNT,note,pickup,paid,tip\n");
    for i in 0..30 {
        let paid = if i < 12 { "" } else { "false" };
        later.push_str(&format!(
            "{},{},{},2024-01-02T1{}:00:00+02:00,{paid},{}\n",
            i % 2,
            20 + i,
            7 * i,
            i % 10,
            i % 5
        ));
    }
    let updates = glue.faults().expect("faults").calls("UpdateTable");
    let out = put_and_convert(
        &s3,
        &c,
        &bucket,
        "raw/trips/later.csv",
        later.clone().into_bytes(),
    )
    .await;
    let s = converted(&out);
    assert_eq!(s.rows, 30, "{out}");
    assert_eq!(
        s.table.as_ref().map(|t| t.columns_added.clone()),
        Some(vec!["tip".to_owned()])
    );
    let (columns, _, _) = table(&glue, &db, "trips").await;
    assert_eq!(
        columns.last(),
        Some(&("tip".to_owned(), "bigint".to_owned()))
    );
    assert_eq!(
        glue.faults().expect("faults").calls("UpdateTable"),
        updates + 1
    );
    // The same column again: nothing to add.
    let out = put_and_convert(&s3, &c, &bucket, "raw/trips/again.csv", later.into_bytes()).await;
    assert_eq!(
        converted(&out)
            .table
            .as_ref()
            .map(|t| t.columns_added.len()),
        Some(0)
    );
    assert_eq!(
        glue.faults().expect("faults").calls("UpdateTable"),
        updates + 1
    );

    let problems = athena_reads(&s3, &bucket, "processed/trips/", &columns).await;
    assert!(problems.is_empty(), "{problems:#?}");

    // The check is not vacuous: the same later file converted without the contract holds
    // an int64 fare and a numeric note, which the table cannot read.
    let plain = common::converter(
        &s3,
        &[("PARTITION_BY", "pickup:day"), ("OUTPUT_PREFIX", "plain/")],
    )
    .await;
    let mut body = String::from("vendorid,fare_amount,note,pickup,paid\n");
    for i in 0..30 {
        body.push_str(&format!(
            "{},{},{},2024-01-02 10:00:00,true\n",
            i % 2,
            20 + i,
            7 * i
        ));
    }
    put_and_convert(
        &s3,
        &plain,
        &bucket,
        "raw/trips/plain.csv",
        body.into_bytes(),
    )
    .await;
    let problems = athena_reads(&s3, &bucket, "plain/trips/", &columns).await;
    if venv_python().is_some() {
        assert!(
            problems.iter().any(|p| p.contains("fare_amount")),
            "{problems:#?}"
        );
        assert!(problems.iter().any(|p| p.contains("note")), "{problems:#?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_that_do_not_fit_the_table_are_quarantined_naming_the_column_and_both_types() {
    let Some(glue) = TestGlue::start_with_faults("contract_casts").await else {
        return;
    };
    let s3 = TestS3::start().await;
    let bucket = s3.bucket().await;
    let db = glue.database().await;
    let c = converter(&s3, &glue, &db, &[]).await;
    put_and_convert(
        &s3,
        &c,
        &bucket,
        "raw/casts/a.csv",
        b"id,amount\n1,2.5\n2,3.5\n".to_vec(),
    )
    .await;
    let out = put_and_convert(
        &s3,
        &c,
        &bucket,
        "raw/casts/b.csv",
        b"id,amount\n3,4\nfour,5\n5,n/a\n6,7\n".to_vec(),
    )
    .await;
    let s = converted(&out);
    assert_eq!((s.rows, s.bad_rows), (2, 2), "{out}");
    assert_eq!(s.table.as_ref().map(|t| t.cast_bad_rows), Some(2), "{out}");
    let quarantine = s.bad_rows_file.as_ref().expect("quarantined");
    let text = String::from_utf8(s3.get(&bucket, &quarantine.key).await).expect("utf-8");
    assert!(
        text.contains(r#"column \"id\": a string value does not fit the table's type bigint"#),
        "{text}"
    );
    assert!(
        text.contains(r#"column \"amount\": a string value does not fit the table's type double"#),
        "{text}"
    );
    let (columns, _, _) = table(&glue, &db, "casts").await;
    assert_eq!(columns, pairs(&[("id", "bigint"), ("amount", "double")]));
    let problems = athena_reads(&s3, &bucket, "processed/casts/", &columns).await;
    assert!(problems.is_empty(), "{problems:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_columns_are_refused_or_ignored_as_schema_evolution_says() {
    let Some(glue) = TestGlue::start_with_faults("contract_evolution").await else {
        return;
    };
    let s3 = TestS3::start().await;
    let bucket = s3.bucket().await;
    let db = glue.database().await;
    let add = converter(&s3, &glue, &db, &[]).await;
    put_and_convert(
        &s3,
        &add,
        &bucket,
        "raw/evo/a.json",
        b"{\"id\":1,\"name\":\"a\"}\n".to_vec(),
    )
    .await;

    let fail = converter(&s3, &glue, &db, &[("SCHEMA_EVOLUTION", "fail")]).await;
    let body = b"{\"id\":2,\"name\":\"b\",\"surge\":1.5}\n".to_vec();
    let err = put_and_handle(&s3, &fail, &bucket, "raw/evo/b.json", body.clone())
        .await
        .expect_err("a new column under fail");
    assert_eq!(err.error_type(), "SchemaMismatch", "{err}");
    assert!(err.to_string().contains("surge"), "{err}");
    assert_eq!(s3.keys(&bucket, "processed/evo/").await.len(), 1);
    // A field first seen after the sample is refused the same way.
    let mut late = String::new();
    for i in 0..40 {
        late.push_str(&format!("{{\"id\":{i},\"name\":\"x\"}}\n"));
    }
    late.push_str("{\"id\":99,\"name\":\"x\",\"Late\":true}\n");
    let err = put_and_handle(&s3, &fail, &bucket, "raw/evo/late.json", late.into_bytes())
        .await
        .expect_err("a late new column under fail");
    assert_eq!(err.error_type(), "SchemaMismatch", "{err}");
    assert!(err.to_string().contains("late"), "{err}");

    let ignore = converter(&s3, &glue, &db, &[("SCHEMA_EVOLUTION", "ignore")]).await;
    let out = put_and_convert(&s3, &ignore, &bucket, "raw/evo/c.json", body).await;
    let s = converted(&out);
    assert_eq!(s.rows, 1);
    assert_eq!(
        s.table.as_ref().map(|t| t.columns_ignored.clone()),
        Some(vec!["surge".to_owned()])
    );
    assert!(
        s.schema.iter().all(|c| !c.starts_with("surge")),
        "{:?}",
        s.schema
    );
    let (columns, _, _) = table(&glue, &db, "evo").await;
    assert_eq!(columns, pairs(&[("id", "bigint"), ("name", "string")]));

    // A per-dataset SCHEMA must agree with the table it meets.
    let typed = converter(
        &s3,
        &glue,
        &db,
        &[("SCHEMA", r#"{"evo": [{"name": "ID", "type": "string"}]}"#)],
    )
    .await;
    let err = put_and_handle(
        &s3,
        &typed,
        &bucket,
        "raw/evo/e.json",
        b"{\"id\":5}\n".to_vec(),
    )
    .await
    .expect_err("SCHEMA disagrees with the table");
    assert_eq!(err.error_type(), "SchemaMismatch", "{err}");
    assert!(
        err.to_string().contains("bigint") && err.to_string().contains("string"),
        "{err}"
    );

    // Input columns that differ only by case cannot share one table column.
    let err = put_and_handle(
        &s3,
        &add,
        &bucket,
        "raw/evo/d.csv",
        b"id,ID\n1,2\n".to_vec(),
    )
    .await
    .expect_err("id and ID");
    assert_eq!(err.error_type(), "SchemaMismatch", "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_conversions_of_a_new_dataset_end_with_one_table_every_file_conforming() {
    let Some(glue) = TestGlue::start_with_faults("contract_concurrency").await else {
        return;
    };
    let s3 = TestS3::start().await;
    let bucket = s3.bucket().await;
    let db = glue.database().await;
    let mut tasks = Vec::new();
    for n in 0..8u32 {
        // Each its own container; half the files see whole-number amounts, one a new column.
        let c = converter(&s3, &glue, &db, &[]).await;
        let mut body = if n == 7 {
            String::from("id,amount,extra\n")
        } else {
            String::from("id,amount\n")
        };
        for i in 0..50u32 {
            let amount = if n % 2 == 0 {
                format!("{i}")
            } else {
                format!("{i}.25")
            };
            if n == 7 {
                body.push_str(&format!("{i},{amount},x{i}\n"));
            } else {
                body.push_str(&format!("{i},{amount}\n"));
            }
        }
        let key = format!("raw/burst/f{n}.csv");
        s3.put(&bucket, &key, body.into_bytes()).await;
        let bucket = bucket.clone();
        tasks.push(async move {
            let event = c.put_event_for(&bucket, &key).await.expect("head");
            c.handle(lambda_runtime::LambdaEvent::new(
                event,
                lambda_runtime::Context::default(),
            ))
            .await
        });
    }
    // All at once, as S3 fans out (one task: the handler's future is not Send).
    let mut tables_created = 0;
    for out in futures::future::join_all(tasks).await {
        let out: Response = out.expect("every conversion succeeds");
        let s = converted(&out);
        // Whoever created the table typed `amount`: under `bigint`, quarter amounts do not fit
        // and are quarantined as casts; nothing else is lost.
        let t = s.table.as_ref().expect("the table is reported");
        assert_eq!(s.rows + s.bad_rows, 50, "{out}");
        assert_eq!(s.bad_rows, t.cast_bad_rows, "{out}");
        tables_created += usize::from(t.created);
    }
    assert_eq!(tables_created, 1);
    let (columns, _, _) = table(&glue, &db, "burst").await;
    assert_eq!(columns.len(), 3, "{columns:?}");
    assert!(
        columns.contains(&("extra".to_owned(), "string".to_owned())),
        "{columns:?}"
    );
    let amount = columns.iter().find(|c| c.0 == "amount").expect("amount");
    let problems = athena_reads(&s3, &bucket, "processed/burst/", &columns).await;
    assert!(problems.is_empty(), "amount is {}: {problems:#?}", amount.1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_concurrent_modification_while_adding_a_column_is_read_again_and_retried() {
    let Some(glue) = TestGlue::start_with_faults("contract_conflict").await else {
        return;
    };
    let s3 = TestS3::start().await;
    let bucket = s3.bucket().await;
    let db = glue.database().await;
    let c = converter(&s3, &glue, &db, &[]).await;
    put_and_convert(&s3, &c, &bucket, "raw/conflict/a.csv", b"id\n1\n".to_vec()).await;
    let faults = glue.faults().expect("faults");
    let before = faults.calls("UpdateTable");
    faults.add(
        "UpdateTable",
        Calls::Nth(before + 1),
        GlueAction::concurrent_modification(),
    );
    let out = put_and_convert(
        &s3,
        &c,
        &bucket,
        "raw/conflict/b.csv",
        b"id,more\n2,x\n".to_vec(),
    )
    .await;
    assert_eq!(
        converted(&out)
            .table
            .as_ref()
            .map(|t| t.columns_added.clone()),
        Some(vec!["more".to_owned()])
    );
    assert_eq!(faults.calls("UpdateTable"), before + 2);
    assert_eq!(faults.injected(), 1);
    let (columns, _, _) = table(&glue, &db, "conflict").await;
    assert_eq!(columns, pairs(&[("id", "bigint"), ("more", "string")]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_changed_since_it_was_cached_is_read_again_before_rows_are_quarantined() {
    let Some(glue) = TestGlue::start_with_faults("contract_stale_cache").await else {
        return;
    };
    let s3 = TestS3::start().await;
    let bucket = s3.bucket().await;
    let db = glue.database().await;
    let c = converter(&s3, &glue, &db, &[]).await;
    put_and_convert(
        &s3,
        &c,
        &bucket,
        "raw/stale/a.csv",
        b"id,amount\n1,2\n".to_vec(),
    )
    .await;
    // Warm the cache, then widen `amount` by hand, as an operator would (the converter never
    // changes a column's type).
    put_and_convert(
        &s3,
        &c,
        &bucket,
        "raw/stale/b.csv",
        b"id,amount\n2,3\n".to_vec(),
    )
    .await;
    let (_, _, t) = table(&glue, &db, "stale").await;
    let mut input = t.clone();
    for k in [
        "DatabaseName",
        "CreateTime",
        "UpdateTime",
        "CreatedBy",
        "IsRegisteredWithLakeFormation",
        "CatalogId",
        "VersionId",
    ] {
        input.as_object_mut().expect("table").remove(k);
    }
    input["StorageDescriptor"]["Columns"][1]["Type"] = json!("double");
    let (status, body) = glue
        .call(
            "UpdateTable",
            json!({"DatabaseName": db, "TableInput": input}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let out = put_and_convert(
        &s3,
        &c,
        &bucket,
        "raw/stale/c.csv",
        b"id,amount\n3,4.5\n".to_vec(),
    )
    .await;
    let s = converted(&out);
    assert_eq!((s.rows, s.bad_rows), (1, 0), "{out}");
    assert!(
        s.schema.contains(&"amount: Float64".to_owned()),
        "{:?}",
        s.schema
    );
    // The manifest records the table too.
    let manifests = s3.keys(&bucket, "processed/_manifests/stale/").await;
    let last = manifests
        .iter()
        .find(|k| k.contains("/c-"))
        .expect("c's manifest");
    let m: Value = serde_json::from_slice(&s3.get(&bucket, last).await).expect("json");
    assert_eq!(m["table"]["table"], format!("{db}.stale"), "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nested_json_fields_are_written_under_the_tables_struct_and_array_types() {
    let Some(glue) = TestGlue::start_with_faults("contract_nested").await else {
        return;
    };
    let s3 = TestS3::start().await;
    let bucket = s3.bucket().await;
    let db = glue.database().await;
    let c = converter(&s3, &glue, &db, &[]).await;
    let first = b"{\"id\":1,\"page\":{\"path\":\"/a\",\"ms\":1.5},\"tags\":[\"x\"],\"ts\":\"2024-03-07T05:00:00Z\"}\n".to_vec();
    put_and_convert(&s3, &c, &bucket, "raw/nested/a.json", first).await;
    let (columns, _, _) = table(&glue, &db, "nested").await;
    assert_eq!(
        columns,
        pairs(&[
            ("id", "bigint"),
            ("page", "struct<ms:double,path:string>"),
            ("tags", "array<string>"),
            ("ts", "timestamp"),
        ])
    );
    // A whole-number `ms` (int64 alone), an id written as text in the JSON, a missing field.
    let later =
        b"{\"id\":2,\"page\":{\"path\":\"/b\",\"ms\":2},\"ts\":\"2024-03-07T06:00:00+01:00\"}\n"
            .to_vec();
    let out = put_and_convert(&s3, &c, &bucket, "raw/nested/b.json", later).await;
    let s = converted(&out);
    assert_eq!((s.rows, s.bad_rows), (1, 0), "{out}");
    let problems = athena_reads(&s3, &bucket, "processed/nested/", &columns).await;
    assert!(problems.is_empty(), "{problems:#?}");
    let files = common::read_parquet(&s3, &bucket, "processed/nested/").await;
    let schemas: Vec<String> = files
        .iter()
        .map(|(_, b)| {
            format!(
                "{:?}",
                b[0].schema()
                    .field_with_name("page")
                    .map(|f| f.data_type().clone())
            )
        })
        .collect();
    assert!(schemas.windows(2).all(|w| w[0] == w[1]), "{schemas:#?}");
}
