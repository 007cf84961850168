//! [`LocalCatalog`]: the [`Catalog`] as JSON files in a folder, for the local demo (no Python,
//! no network) and for tests.
//!
//! Layout, under the catalog's folder:
//!
//! ```text
//! <database>/<table>.json             {"version": 3, "table": {...}, "format": {...}}
//! <database>/<table>.partitions.json  [{"values": ["2024", "01"], "location": "s3://..."}]
//! <database>/<table>.lock             held (an OS file lock) while the table is changed
//! ```
//!
//! The semantics are Glue's: creating an existing table answers
//! [`CreateOutcome::AlreadyExists`]; the version starts at 1 and grows by one per update, and
//! an update given another version than the current one answers
//! [`UpdateOutcome::ConcurrentModification`] without writing; partitions that exist are kept.
//! Every change happens under an exclusive lock on the table's lock file and lands with a
//! rename, so concurrent writers (tasks or processes) never lose an update and readers never
//! see half a file.

use std::fs::File;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{
    Catalog, CreateOutcome, PartitionSpec, StorageFormat, Table, TableDef, UpdateOutcome,
    catalog_error, invalid, table_ref,
};

/// A catalog of JSON files under one folder.
#[derive(Debug, Clone)]
pub struct LocalCatalog {
    root: PathBuf,
}

/// A table file.
#[derive(Debug, Serialize, Deserialize)]
struct Stored {
    version: u64,
    table: TableDef,
    format: StorageFormat,
}

/// One registered partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalPartition {
    /// Its values, in partition-key order.
    pub values: Vec<String>,
    /// Its `s3://` location.
    pub location: String,
}

impl LocalCatalog {
    /// A catalog stored under `root` (created when first written).
    pub fn new(root: impl Into<PathBuf>) -> LocalCatalog {
        LocalCatalog { root: root.into() }
    }

    /// The folder the catalog lives in.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Every table of every database, sorted by database and name (for the demo's summary).
    pub async fn tables(&self) -> tributary::Result<Vec<Table>> {
        let root = self.root.clone();
        blocking("local catalog listing", move || {
            let mut out = Vec::new();
            let dbs = match std::fs::read_dir(&root) {
                Ok(d) => d,
                Err(e) if e.kind() == ErrorKind::NotFound => return Ok(out),
                Err(e) => return Err(io("local catalog listing", e)),
            };
            for db in dbs {
                let db = db.map_err(|e| io("local catalog listing", e))?;
                if !db.path().is_dir() {
                    continue;
                }
                for f in std::fs::read_dir(db.path()).map_err(|e| io("local catalog listing", e))? {
                    let path = f.map_err(|e| io("local catalog listing", e))?.path();
                    let name = path
                        .file_name()
                        .and_then(|n| n.to_str())
                        .unwrap_or_default();
                    if name.ends_with(".json")
                        && !name.ends_with(".partitions.json")
                        && let Some(stored) = read_table(&path)?
                    {
                        out.push(table_of(stored));
                    }
                }
            }
            out.sort_by(|a, b| (&a.def.database, &a.def.name).cmp(&(&b.def.database, &b.def.name)));
            Ok(out)
        })
        .await
    }

    /// The partitions registered for a table, in registration order.
    pub async fn partitions(
        &self,
        database: &str,
        name: &str,
    ) -> tributary::Result<Vec<LocalPartition>> {
        let files = self.files(database, name, "partitions")?;
        blocking("local catalog partitions", move || {
            read_partitions(&files.partitions, &files.what)
        })
        .await
    }

    fn files(&self, database: &str, name: &str, op: &str) -> tributary::Result<Files> {
        let what = format!("local catalog {op} of {}", table_ref(database, name));
        for part in [database, name] {
            let ok = !part.is_empty()
                && !part.starts_with('.')
                && part
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
            if !ok {
                return Err(invalid(
                    what,
                    format!("{part:?} is not a database or table name (letters, digits, _ - .)"),
                ));
            }
        }
        let dir = self.root.join(database);
        Ok(Files {
            database: database.to_owned(),
            name: name.to_owned(),
            table: dir.join(format!("{name}.json")),
            partitions: dir.join(format!("{name}.partitions.json")),
            lock: dir.join(format!("{name}.lock")),
            dir,
            what,
        })
    }
}

/// The files of one table, and `what` for errors.
#[derive(Debug, Clone)]
struct Files {
    database: String,
    name: String,
    dir: PathBuf,
    table: PathBuf,
    partitions: PathBuf,
    lock: PathBuf,
    what: String,
}

impl Files {
    /// What Glue answers for a table that does not exist.
    fn not_found(&self, operation: &'static str) -> tributary::Error {
        catalog_error(
            operation,
            &self.database,
            &self.name,
            Some("EntityNotFoundException"),
            format!(
                "local catalog: table {}.{} not found",
                self.database, self.name
            ),
        )
    }

    /// Holds the table's lock until the returned file is dropped.
    fn lock(&self) -> tributary::Result<File> {
        std::fs::create_dir_all(&self.dir).map_err(|e| io(&self.what, e))?;
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&self.lock)
            .map_err(|e| io(&self.what, e))?;
        f.lock().map_err(|e| io(&self.what, e))?;
        Ok(f)
    }
}

#[async_trait]
impl Catalog for LocalCatalog {
    async fn get_table(&self, database: &str, name: &str) -> tributary::Result<Option<Table>> {
        let files = self.files(database, name, "GetTable")?;
        blocking("local catalog GetTable", move || {
            Ok(read_table(&files.table)?.map(table_of))
        })
        .await
    }

    async fn create_table(&self, def: &TableDef) -> tributary::Result<CreateOutcome> {
        let files = self.files(&def.database, &def.name, "CreateTable")?;
        let mut table = def.clone();
        table.parameters = def.parameters_to_write();
        blocking("local catalog CreateTable", move || {
            let _lock = files.lock()?;
            if read_table(&files.table)?.is_some() {
                return Ok(CreateOutcome::AlreadyExists);
            }
            let stored = Stored {
                version: 1,
                table,
                format: StorageFormat::parquet(),
            };
            write_json(&files.table, &stored, &files.what)?;
            Ok(CreateOutcome::Created)
        })
        .await
    }

    async fn update_table(
        &self,
        def: &TableDef,
        expected_version: Option<&str>,
    ) -> tributary::Result<UpdateOutcome> {
        let files = self.files(&def.database, &def.name, "UpdateTable")?;
        let mut table = def.clone();
        table.parameters = def.parameters_to_write();
        let expected = expected_version.map(str::to_owned);
        blocking("local catalog UpdateTable", move || {
            let _lock = files.lock()?;
            let Some(current) = read_table(&files.table)? else {
                return Err(files.not_found("UpdateTable"));
            };
            if let Some(v) = expected
                && v != current.version.to_string()
            {
                return Ok(UpdateOutcome::ConcurrentModification);
            }
            let stored = Stored {
                version: current.version + 1,
                table,
                format: StorageFormat::parquet(),
            };
            write_json(&files.table, &stored, &files.what)?;
            Ok(UpdateOutcome::Updated)
        })
        .await
    }

    async fn create_partitions(
        &self,
        table: &TableDef,
        partitions: &[PartitionSpec],
    ) -> tributary::Result<()> {
        let files = self.files(&table.database, &table.name, "BatchCreatePartition")?;
        let keys = table.partition_keys.len();
        let wanted: Vec<LocalPartition> = partitions
            .iter()
            .map(|(values, location)| LocalPartition {
                values: values.clone(),
                location: location.clone(),
            })
            .collect();
        blocking("local catalog BatchCreatePartition", move || {
            if let Some(p) = wanted.iter().find(|p| p.values.len() != keys) {
                return Err(invalid(
                    files.what.clone(),
                    format!(
                        "partition {:?} has {} values for {keys} partition keys",
                        p.values,
                        p.values.len()
                    ),
                ));
            }
            let _lock = files.lock()?;
            if read_table(&files.table)?.is_none() {
                return Err(files.not_found("BatchCreatePartition"));
            }
            let mut all = read_partitions(&files.partitions, &files.what)?;
            let before = all.len();
            for p in wanted {
                if !all.iter().any(|q| q.values == p.values) {
                    all.push(p);
                }
            }
            if all.len() != before {
                write_json(&files.partitions, &all, &files.what)?;
            }
            Ok(())
        })
        .await
    }
}

fn table_of(stored: Stored) -> Table {
    Table {
        def: stored.table,
        version_id: Some(stored.version.to_string()),
        format: stored.format,
    }
}

/// Runs blocking file work off the async threads.
async fn blocking<T, F>(what: &str, f: F) -> tributary::Result<T>
where
    F: FnOnce() -> tributary::Result<T> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| tributary::Error::Internal(format!("{what}: the file task failed: {e}")))?
}

fn io(what: &str, e: std::io::Error) -> tributary::Error {
    tributary::Error::Io {
        context: what.to_owned(),
        source: e,
    }
}

fn read_table(path: &Path) -> tributary::Result<Option<Stored>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            invalid(
                format!("local catalog table {}", path.display()),
                e.to_string(),
            )
        }),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io(&format!("local catalog table {}", path.display()), e)),
    }
}

fn read_partitions(path: &Path, what: &str) -> tributary::Result<Vec<LocalPartition>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| invalid(format!("{what}: {}", path.display()), e.to_string())),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(io(what, e)),
    }
}

/// Writes `value` as pretty JSON next to `path`, then renames it over `path`.
fn write_json(path: &Path, value: &impl Serialize, what: &str) -> tributary::Result<()> {
    let mut bytes = serde_json::to_vec_pretty(value)
        .map_err(|e| tributary::Error::Internal(format!("{what}: {e}")))?;
    bytes.push(b'\n');
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    std::fs::write(&tmp, &bytes).map_err(|e| io(what, e))?;
    std::fs::rename(&tmp, path).map_err(|e| io(what, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn names_that_would_leave_the_folder_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let c = LocalCatalog::new(dir.path());
        for (db, t) in [("..", "t"), ("d", "../x"), ("d", ""), ("d/e", "t")] {
            let err = c.get_table(db, t).await.expect_err("refused");
            assert_eq!(err.error_type(), "InvalidInput", "{db}/{t}: {err}");
        }
        assert!(c.get_table("d", "t").await.expect("fine").is_none());
    }
}
