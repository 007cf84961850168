//! The catalog client layer against a real Glue API (moto on loopback, behind the testkit's
//! fault proxy) and against the local JSON catalog: one behavioural test body, two catalogs.
//! moto 5.2 does not check UpdateTable's `VersionId`; the proxy does, as Glue does, so the
//! optimistic-update tests run on moto through it.

use std::collections::BTreeMap;
use std::sync::Arc;

use parquet_converter::catalog::{
    Catalog, CreateOutcome, GlueCatalog, GlueSettings, LocalCatalog, PARQUET_SERDE, StorageFormat,
    TableColumn, TableDef, UpdateOutcome,
};
use serde_json::{Value, json};
use tributary::Env;
use tributary_testkit::faults::Calls;
use tributary_testkit::glue::{GlueAction, TestGlue};

fn def(database: &str, name: &str) -> TableDef {
    TableDef {
        database: database.to_owned(),
        name: name.to_owned(),
        columns: vec![
            TableColumn::new("trip_id", "bigint"),
            TableColumn::new("fare", "double"),
            TableColumn::new("amount", "decimal(10,2)"),
            TableColumn::new("tags", "array<string>"),
            TableColumn::new("pickup", "struct<lat:double,lon:double>"),
            TableColumn::new("ts", "timestamp"),
            TableColumn::new("day", "date"),
            TableColumn::new("paid", "boolean"),
            TableColumn {
                name: "note".into(),
                type_name: "string".into(),
                comment: Some("free text".into()),
            },
        ],
        partition_keys: vec![
            TableColumn::new("year", "string"),
            TableColumn::new("month", "string"),
        ],
        location: format!("s3://lake/processed/{name}/"),
        parameters: BTreeMap::from([("tributary.producer".into(), "parquet-converter".into())]),
    }
}

fn partition(def: &TableDef, year: u32, month: u32) -> (Vec<String>, String) {
    (
        vec![year.to_string(), format!("{month:02}")],
        format!("{}year={year}/month={month:02}/", def.location),
    )
}

/// Partition values of 2024's `months`.
fn months(months: &[u32]) -> Vec<Vec<String>> {
    months
        .iter()
        .map(|m| vec!["2024".to_owned(), format!("{m:02}")])
        .collect()
}

/// What every catalog must do; returns the table's final definition.
async fn behaves_like_a_catalog(c: &dyn Catalog, database: &str) -> TableDef {
    let want = def(database, "taxi");
    assert!(c.get_table(database, "taxi").await.expect("get").is_none());

    // Create, then read back: types, partition keys, storage, location, parameters.
    assert_eq!(
        c.create_table(&want).await.expect("create"),
        CreateOutcome::Created
    );
    let t = c
        .get_table(database, "taxi")
        .await
        .expect("get")
        .expect("table");
    assert_eq!(t.def.database, database);
    assert_eq!(t.def.name, "taxi");
    assert_eq!(t.def.columns, want.columns);
    assert_eq!(t.def.partition_keys, want.partition_keys);
    assert_eq!(t.def.location, want.location);
    assert_eq!(t.def.parameters, want.parameters_to_write());
    assert_eq!(t.def.parameters["classification"], "parquet");
    assert_eq!(t.format, StorageFormat::parquet());
    let v1 = t.version_id.clone().expect("a version");

    // Creating again changes nothing.
    let mut other = want.clone();
    other.columns.truncate(1);
    assert_eq!(
        c.create_table(&other).await.expect("create"),
        CreateOutcome::AlreadyExists
    );
    let same = c
        .get_table(database, "taxi")
        .await
        .expect("get")
        .expect("table");
    assert_eq!(same.def.columns, want.columns);
    assert_eq!(same.version_id.as_deref(), Some(v1.as_str()));

    // An update at the version read applies and moves the version.
    let mut added = t.def.clone();
    added.columns.push(TableColumn::new("tip", "double"));
    assert_eq!(
        c.update_table(&added, Some(&v1)).await.expect("update"),
        UpdateOutcome::Updated
    );
    let t2 = c
        .get_table(database, "taxi")
        .await
        .expect("get")
        .expect("table");
    assert_eq!(t2.def.columns, added.columns);
    let v2 = t2.version_id.clone().expect("a version");
    assert_ne!(v2, v1);

    // An update at a stale version writes nothing.
    let mut stale = t.def.clone();
    stale.columns.push(TableColumn::new("lost", "string"));
    assert_eq!(
        c.update_table(&stale, Some(&v1)).await.expect("update"),
        UpdateOutcome::ConcurrentModification
    );
    let t3 = c
        .get_table(database, "taxi")
        .await
        .expect("get")
        .expect("table");
    assert_eq!(t3.def.columns, added.columns);
    assert_eq!(t3.version_id.as_deref(), Some(v2.as_str()));

    // Without a version the update is unconditional.
    let mut last = t3.def.clone();
    last.columns.push(TableColumn::new("toll", "double"));
    assert_eq!(
        c.update_table(&last, None).await.expect("update"),
        UpdateOutcome::Updated
    );

    // Partitions: registering them twice, and overlapping, is fine.
    let first = [partition(&last, 2024, 1), partition(&last, 2024, 2)];
    c.create_partitions(&last, &first)
        .await
        .expect("partitions");
    c.create_partitions(&last, &first)
        .await
        .expect("the same again");
    let more = [partition(&last, 2024, 2), partition(&last, 2024, 3)];
    c.create_partitions(&last, &more)
        .await
        .expect("overlapping");
    c.create_partitions(&last, &[]).await.expect("none");

    // Partition values that do not match the keys, and a table that is not there.
    let bad = [(vec!["2024".to_owned()], "s3://lake/x/".to_owned())];
    let err = c
        .create_partitions(&last, &bad)
        .await
        .expect_err("one value for two keys");
    assert_eq!(err.error_type(), "InvalidInput", "{err}");
    let missing = def(database, "nothere");
    let err = c
        .update_table(&missing, None)
        .await
        .expect_err("no such table");
    assert_eq!(err.error_type(), "CatalogError", "{err}");
    assert!(!err.is_transient());
    last
}

/// Many writers, each adding its own column by read, update at that version, re-read on a
/// concurrent modification: no column is lost. And many creators: one wins.
async fn concurrent_writers_lose_nothing(c: Arc<dyn Catalog>, database: &str) {
    let base = def(database, "events");
    let mut creators = Vec::new();
    for _ in 0..8 {
        let (c, base) = (c.clone(), base.clone());
        creators.push(tokio::spawn(async move { c.create_table(&base).await }));
    }
    let mut created = 0;
    for h in creators {
        if h.await.expect("task").expect("create") == CreateOutcome::Created {
            created += 1;
        }
    }
    assert_eq!(created, 1, "exactly one creator wins");

    let mut writers = Vec::new();
    for i in 0..8 {
        let (c, db) = (c.clone(), database.to_owned());
        writers.push(tokio::spawn(async move {
            for attempt in 0.. {
                assert!(attempt < 50, "writer {i} never got its update in");
                let t = c.get_table(&db, "events").await?.expect("table");
                let mut d = t.def.clone();
                d.columns
                    .push(TableColumn::new(format!("extra_{i}"), "string"));
                match c.update_table(&d, t.version_id.as_deref()).await? {
                    UpdateOutcome::Updated => return Ok::<u32, tributary::Error>(attempt),
                    UpdateOutcome::ConcurrentModification => tokio::task::yield_now().await,
                }
            }
            unreachable!()
        }));
    }
    for h in writers {
        h.await.expect("task").expect("writer");
    }
    let t = c
        .get_table(database, "events")
        .await
        .expect("get")
        .expect("table");
    for i in 0..8 {
        let name = format!("extra_{i}");
        assert!(
            t.def.column(&name).is_some(),
            "{name} lost: {:?}",
            t.def.columns
        );
    }
    assert_eq!(t.def.columns.len(), base.columns.len() + 8);
}

async fn glue_catalog(glue: &TestGlue) -> GlueCatalog {
    let settings = GlueSettings::for_endpoint(
        &glue.endpoint,
        &glue.region,
        &glue.access_key,
        &glue.secret_key,
    );
    GlueCatalog::from_settings(&settings).await
}

/// The partitions moto holds, read straight from it: (values, location, columns).
async fn glue_partitions(
    glue: &TestGlue,
    database: &str,
    table: &str,
) -> Vec<(Vec<String>, String, usize)> {
    let (status, body) = glue
        .call(
            "GetPartitions",
            json!({"DatabaseName": database, "TableName": table}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let mut out: Vec<_> = body["Partitions"]
        .as_array()
        .expect("partitions")
        .iter()
        .map(|p| {
            let values = p["Values"]
                .as_array()
                .expect("values")
                .iter()
                .map(|v| v.as_str().expect("value").to_owned())
                .collect();
            let sd = &p["StorageDescriptor"];
            let location = sd["Location"].as_str().unwrap_or_default().to_owned();
            assert_eq!(sd["SerdeInfo"]["SerializationLibrary"], PARQUET_SERDE);
            let columns = sd["Columns"].as_array().map(Vec::len).unwrap_or_default();
            (values, location, columns)
        })
        .collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn glue_catalog_behaves_like_a_catalog() {
    let Some(glue) = TestGlue::start_with_faults("glue_catalog_behaves_like_a_catalog").await
    else {
        return;
    };
    let db = glue.database().await;
    let c = glue_catalog(&glue).await;
    let last = behaves_like_a_catalog(&c, &db).await;

    // What moto holds, read without our client: Glue's own field names and values.
    let (status, raw) = glue
        .call("GetTable", json!({"DatabaseName": db, "Name": "taxi"}))
        .await;
    assert_eq!(status, 200, "{raw}");
    let t = &raw["Table"];
    assert_eq!(t["TableType"], "EXTERNAL_TABLE");
    assert_eq!(t["Parameters"]["classification"], "parquet");
    let sd = &t["StorageDescriptor"];
    assert_eq!(sd["SerdeInfo"]["SerializationLibrary"], PARQUET_SERDE);
    assert_eq!(
        sd["InputFormat"],
        "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat"
    );
    assert_eq!(
        sd["OutputFormat"],
        "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat"
    );
    assert_eq!(sd["Location"], last.location);
    assert_eq!(
        sd["Columns"][2],
        json!({"Name": "amount", "Type": "decimal(10,2)"})
    );
    assert_eq!(sd["Columns"][8]["Comment"], "free text");
    assert_eq!(
        t["PartitionKeys"][1],
        json!({"Name": "month", "Type": "string"})
    );

    let parts = glue_partitions(&glue, &db, "taxi").await;
    let values: Vec<Vec<String>> = parts.iter().map(|(v, _, _)| v.clone()).collect();
    assert_eq!(values, months(&[1, 2, 3]));
    assert_eq!(parts[0].1, format!("{}year=2024/month=01/", last.location));
    assert!(
        parts.iter().all(|(_, _, cols)| *cols == last.columns.len()),
        "{parts:?}"
    );

    let faults = glue.faults().expect("proxy");
    assert_eq!(
        faults.version_conflicts(),
        1,
        "the stale update, refused by VersionId"
    );
    assert_eq!(faults.injected(), 0);
}

#[tokio::test]
async fn local_catalog_behaves_like_a_catalog() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = LocalCatalog::new(dir.path());
    let last = behaves_like_a_catalog(&c, "lake").await;
    let parts = c.partitions("lake", "taxi").await.expect("partitions");
    let values: Vec<Vec<String>> = parts.iter().map(|p| p.values.clone()).collect();
    assert_eq!(values, months(&[1, 2, 3]));
    assert_eq!(
        parts[2].location,
        format!("{}year=2024/month=03/", last.location)
    );
    let tables = c.tables().await.expect("tables");
    assert_eq!(tables.len(), 1);
    assert!(dir.path().join("lake/taxi.json").exists());
    let ddl = tables[0].def.athena_ddl();
    assert!(
        ddl.starts_with("CREATE EXTERNAL TABLE `lake`.`taxi` (\n  `trip_id` bigint,"),
        "{ddl}"
    );
    assert!(
        ddl.contains("PARTITIONED BY (\n  `year` string,\n  `month` string\n)"),
        "{ddl}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn glue_catalog_concurrent_writers_lose_nothing() {
    let Some(glue) =
        TestGlue::start_with_faults("glue_catalog_concurrent_writers_lose_nothing").await
    else {
        return;
    };
    let db = glue.database().await;
    let c: Arc<dyn Catalog> = Arc::new(glue_catalog(&glue).await);
    concurrent_writers_lose_nothing(c, &db).await;
    let f = glue.faults().expect("proxy");
    assert_eq!(f.calls("CreateTable"), 8);
    assert_eq!(f.calls("UpdateTable"), 8 + f.version_conflicts());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_catalog_concurrent_writers_lose_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c: Arc<dyn Catalog> = Arc::new(LocalCatalog::new(dir.path()));
    concurrent_writers_lose_nothing(c, "lake").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_glue_faults_map_to_outcomes_and_errors() {
    let Some(glue) =
        TestGlue::start_with_faults("injected_glue_faults_map_to_outcomes_and_errors").await
    else {
        return;
    };
    let f = glue.faults().expect("proxy");
    let db = glue.database().await;
    let c = glue_catalog(&glue).await;
    let want = def(&db, "taxi");

    // A CreateTable answered AlreadyExists (another writer won) is that outcome.
    f.add("CreateTable", Calls::Nth(1), GlueAction::already_exists());
    assert_eq!(
        c.create_table(&want).await.expect("create"),
        CreateOutcome::AlreadyExists
    );
    assert_eq!(
        c.create_table(&want).await.expect("create"),
        CreateOutcome::Created
    );

    // The first UpdateTable answered ConcurrentModification, even at the right version.
    let t = c.get_table(&db, "taxi").await.expect("get").expect("table");
    f.add(
        "UpdateTable",
        Calls::Nth(1),
        GlueAction::concurrent_modification(),
    );
    let v = t.version_id.as_deref();
    assert_eq!(
        c.update_table(&t.def, v).await.expect("update"),
        UpdateOutcome::ConcurrentModification
    );
    assert_eq!(
        c.update_table(&t.def, v).await.expect("update"),
        UpdateOutcome::Updated
    );
    assert_eq!((f.calls("UpdateTable"), f.injected()), (2, 2));

    // Throttling and internal errors: retried by the SDK (3 attempts), then retryable.
    for (action, op) in [
        (GlueAction::throttling(), "GetTable"),
        (GlueAction::internal(), "BatchCreatePartition"),
    ] {
        f.clear();
        let before = f.calls(op);
        f.add(op, Calls::From(1), action.clone());
        let err = if op == "GetTable" {
            c.get_table(&db, "taxi")
                .await
                .map(|_| ())
                .expect_err("keeps failing")
        } else {
            c.create_partitions(&t.def, &[partition(&t.def, 2024, 1)])
                .await
                .expect_err("keeps failing")
        };
        assert_eq!(err.error_type(), "CatalogUnavailable", "{action:?}: {err}");
        assert!(err.is_transient());
        assert!(
            err.to_string().contains(&format!("Glue {op} of {db}.taxi")),
            "{err}"
        );
        assert_eq!(f.calls(op) - before, 3, "{op}: the SDK's attempts");
    }

    // A refusal is permanent and not retried.
    f.clear();
    let before = f.calls("GetTable");
    f.add("GetTable", Calls::From(1), GlueAction::access_denied());
    let err = c.get_table(&db, "taxi").await.expect_err("denied");
    assert_eq!(err.error_type(), "CatalogError", "{err}");
    assert!(!err.is_transient());
    assert_eq!(f.calls("GetTable") - before, 1);
    f.clear();

    // A table in a database that does not exist: GetTable says none, CreateTable refuses.
    assert!(
        c.get_table("no_such_db", "taxi")
            .await
            .expect("get")
            .is_none()
    );
    let err = c
        .create_table(&def("no_such_db", "taxi"))
        .await
        .expect_err("no database");
    assert_eq!(err.error_type(), "CatalogError", "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn glue_partitions_go_in_batches_of_100() {
    let Some(glue) = TestGlue::start_with_faults("glue_partitions_go_in_batches_of_100").await
    else {
        return;
    };
    let db = glue.database().await;
    let c = glue_catalog(&glue).await;
    let mut d = def(&db, "daily");
    d.partition_keys = vec![TableColumn::new("day", "string")];
    assert_eq!(
        c.create_table(&d).await.expect("create"),
        CreateOutcome::Created
    );
    let parts: Vec<_> = (0..250)
        .map(|i| {
            (
                vec![format!("d{i:03}")],
                format!("{}day=d{i:03}/", d.location),
            )
        })
        .collect();
    c.create_partitions(&d, &parts).await.expect("partitions");
    let f = glue.faults().expect("proxy");
    assert_eq!(f.calls("BatchCreatePartition"), 3);
    c.create_partitions(&d, &parts)
        .await
        .expect("all exist already");
    assert_eq!(f.calls("BatchCreatePartition"), 6);
    assert_eq!(glue_partitions(&glue, &db, "daily").await.len(), 250);
}

/// moto alone takes any `VersionId` (which is why the proxy checks it): if this starts failing,
/// moto enforces it now and the proxy's check can go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moto_alone_ignores_update_table_version_id() {
    let Some(glue) = TestGlue::start("moto_alone_ignores_update_table_version_id").await else {
        return;
    };
    if std::env::var_os("TEST_GLUE_ENDPOINT").is_some() {
        tributary_testkit::skip(
            "moto_alone_ignores_update_table_version_id",
            "external Glue API",
        );
        return;
    }
    let db = glue.database().await;
    let c = glue_catalog(&glue).await;
    let d = def(&db, "taxi");
    c.create_table(&d).await.expect("create");
    assert_eq!(
        c.update_table(&d, Some("1")).await.expect("update"),
        UpdateOutcome::Updated
    );
    assert_eq!(
        c.update_table(&d, Some("1")).await.expect("update"),
        UpdateOutcome::Updated
    );
}

/// The SDK itself reads `AWS_ENDPOINT_URL_GLUE` (and the credentials) from the process
/// environment: checked in a child run of this test binary, so that this process's
/// environment stays untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_endpoint_url_glue_points_the_sdk_at_the_endpoint() {
    const CHILD: &str = "TRIBUTARY_GLUE_ENV_CHILD";
    if let Ok(db) = std::env::var(CHILD) {
        // In the child: the SDK's own configuration chain and our settings, both from the
        // process environment.
        let shared = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        let sdk = GlueCatalog::from_sdk_config(&shared, None);
        let ours = GlueCatalog::from_settings(
            &GlueSettings::from_env(&Env::from_process()).expect("settings"),
        )
        .await;
        for (c, name) in [(&sdk, "env_sdk"), (&ours, "env_ours")] {
            let d = def(&db, name);
            assert_eq!(
                c.create_table(&d).await.expect("create"),
                CreateOutcome::Created,
                "{c:?}"
            );
            assert!(c.get_table(&db, name).await.expect("get").is_some());
            c.update_table(&d, None).await.expect("update");
        }
        return;
    }
    let Some(glue) =
        TestGlue::start_with_faults("aws_endpoint_url_glue_points_the_sdk_at_the_endpoint").await
    else {
        return;
    };
    let db = glue.database().await;
    let exe = std::env::current_exe().expect("test binary");
    let mut cmd = std::process::Command::new(exe);
    cmd.args([
        "--exact",
        "aws_endpoint_url_glue_points_the_sdk_at_the_endpoint",
        "--nocapture",
        "--test-threads=1",
    ]);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("AWS_") {
            cmd.env_remove(k);
        }
    }
    cmd.env(CHILD, &db)
        .env("AWS_ENDPOINT_URL_GLUE", &glue.endpoint)
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9") // not Glue's: the specific one wins
        .env("AWS_REGION", &glue.region)
        .env("AWS_ACCESS_KEY_ID", &glue.access_key)
        .env("AWS_SECRET_ACCESS_KEY", &glue.secret_key)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("AWS_MAX_ATTEMPTS", "1");
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .expect("task")
        .expect("run the child");
    assert!(
        out.status.success(),
        "child failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let f = glue.faults().expect("proxy");
    // Two clients, one create, one get and one update each, all through the endpoint.
    assert_eq!(f.calls("CreateTable"), 2);
    assert_eq!(f.calls("UpdateTable"), 2);
    for name in ["env_sdk", "env_ours"] {
        let (_, raw): (u16, Value) = glue
            .call("GetTable", json!({"DatabaseName": db, "Name": name}))
            .await;
        assert_eq!(raw["Table"]["Name"], name);
    }
}
