//! The catalog as each dataset's schema contract (`GLUE_DATABASE`): which table a dataset is,
//! reading it (cached across the invocations of a warm container), creating it from the first
//! file, adding the columns a file brings, registering its partitions. Every change to a table
//! is made before the files it describes complete, so no reader sees a file its table cannot
//! read; concurrent writers are reconciled with Glue's table versions, never by overwriting.

pub mod types;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tracing::{info, warn};
use tributary::Error;

use self::types::{arrow_type, same_type};
use crate::catalog::{Catalog, CreateOutcome, PartitionSpec, Table, TableColumn, TableDef};
use crate::catalog::{StorageFormat, UpdateOutcome};
use crate::config::CatalogSettings;

/// Creates and updates before giving up on concurrent writers (each one re-reads the table).
const COMMIT_ATTEMPTS: usize = 6;

/// The table property naming who created the table.
pub const PRODUCER_PROPERTY: &str = "tributary.producer";

/// The catalog, its settings and the tables read lately.
#[derive(Debug)]
pub struct Contract {
    settings: CatalogSettings,
    catalog: Arc<dyn Catalog>,
    cache: Mutex<HashMap<String, (Instant, Option<Table>)>>,
}

/// What one object's files need from their table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired {
    /// The written columns, in file order, with their Athena types.
    pub columns: Vec<TableColumn>,
    /// The partition keys of the output layout.
    pub partition_keys: Vec<TableColumn>,
    /// `s3://bucket/prefix/dataset/`.
    pub location: String,
}

/// What [`Contract::commit`] found.
#[derive(Debug, Clone)]
pub enum Commit {
    /// The table holds every column of the files, as typed: complete them.
    Ready {
        /// The table as it now is.
        table: Table,
        /// This object created it.
        created: bool,
        /// Columns this object appended to it.
        added: Vec<String>,
    },
    /// The table changed under us (another writer created it or typed a column otherwise):
    /// the object must be read again under this table.
    Changed(Table),
}

impl Contract {
    /// A contract over `catalog`.
    pub fn new(settings: CatalogSettings, catalog: Arc<dyn Catalog>) -> Contract {
        Contract {
            settings,
            catalog,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The settings.
    pub fn settings(&self) -> &CatalogSettings {
        &self.settings
    }

    /// `database.table`, for messages.
    pub fn qualified(&self, table: &str) -> String {
        format!("{}.{table}", self.settings.database)
    }

    /// The table, from the cache while younger than `CATALOG_CACHE_SECS`.
    pub async fn table(&self, name: &str) -> tributary::Result<Option<Table>> {
        let cached = self.cache.lock().ok().and_then(|c| {
            c.get(name)
                .filter(|(at, _)| at.elapsed() < self.settings.cache)
                .map(|(_, t)| t.clone())
        });
        match cached {
            Some(t) => Ok(t),
            None => self.fresh(name).await,
        }
    }

    /// The table as the catalog has it now (and remembered).
    pub async fn fresh(&self, name: &str) -> tributary::Result<Option<Table>> {
        let table = self
            .catalog
            .get_table(&self.settings.database, name)
            .await?;
        self.remember(name, table.clone());
        Ok(table)
    }

    fn remember(&self, name: &str, table: Option<Table>) {
        if let Ok(mut c) = self.cache.lock() {
            c.insert(name.to_owned(), (Instant::now(), table));
        }
    }

    /// Makes the table hold `desired`: creates it when `current` is `None`, appends the
    /// columns it lacks, and reports a table that changed under us. Concurrent creates and
    /// updates are re-read and merged, a bounded number of times.
    pub async fn commit(
        &self,
        name: &str,
        desired: &Desired,
        mut current: Option<Table>,
    ) -> tributary::Result<Commit> {
        let qualified = self.qualified(name);
        for _ in 0..COMMIT_ATTEMPTS {
            let Some(table) = current.take() else {
                let def = TableDef {
                    database: self.settings.database.clone(),
                    name: name.to_owned(),
                    columns: desired.columns.clone(),
                    partition_keys: desired.partition_keys.clone(),
                    location: desired.location.clone(),
                    parameters: BTreeMap::from([(
                        PRODUCER_PROPERTY.to_owned(),
                        "parquet-converter".to_owned(),
                    )]),
                };
                match self.catalog.create_table(&def).await? {
                    CreateOutcome::Created => {
                        info!(table = %qualified, columns = def.columns.len(), "table created");
                        let table = Table {
                            def,
                            version_id: None,
                            format: StorageFormat::parquet(),
                        };
                        // Re-read next time: the catalog gives the version.
                        self.forget(name);
                        return Ok(Commit::Ready {
                            table,
                            created: true,
                            added: Vec::new(),
                        });
                    }
                    CreateOutcome::AlreadyExists => {
                        info!(table = %qualified, "another conversion created the table first: using it");
                        current = self.fresh(name).await?;
                        continue;
                    }
                }
            };
            check_partition_keys(&qualified, &table.def, &desired.partition_keys)?;
            let mut new = Vec::new();
            for c in &desired.columns {
                match table.def.column(&c.name) {
                    Some(t) if declares(&t.type_name, &c.type_name) => {}
                    Some(_) => return Ok(Commit::Changed(table)),
                    None => new.push(c.clone()),
                }
            }
            if new.is_empty() {
                return Ok(Commit::Ready {
                    table,
                    created: false,
                    added: Vec::new(),
                });
            }
            let mut def = table.def.clone();
            def.columns.extend(new.iter().cloned());
            match self
                .catalog
                .update_table(&def, table.version_id.as_deref())
                .await?
            {
                UpdateOutcome::Updated => {
                    let added: Vec<String> = new.into_iter().map(|c| c.name).collect();
                    info!(table = %qualified, ?added, "columns added to the table");
                    self.forget(name);
                    return Ok(Commit::Ready {
                        table: Table { def, ..table },
                        created: false,
                        added,
                    });
                }
                UpdateOutcome::ConcurrentModification => {
                    warn!(table = %qualified, "the table changed while adding columns: reading it again");
                    current = self.fresh(name).await?;
                    if current.is_none() {
                        return Err(Error::SchemaMismatch {
                            table: qualified,
                            reason: "the table was deleted while this object was converted".into(),
                        });
                    }
                }
            }
        }
        Err(Error::Catalog {
            operation: "UpdateTable",
            table: qualified,
            code: Some("ConcurrentModificationException".into()),
            message: format!(
                "other writers kept changing the table; gave up after {COMMIT_ATTEMPTS} attempts"
            ),
        })
    }

    /// Registers the partitions of `table` that the files went to (existing ones are fine).
    pub async fn register(
        &self,
        table: &TableDef,
        partitions: &[PartitionSpec],
    ) -> tributary::Result<()> {
        if partitions.is_empty() || table.partition_keys.is_empty() {
            return Ok(());
        }
        self.catalog.create_partitions(table, partitions).await
    }

    fn forget(&self, name: &str) {
        if let Ok(mut c) = self.cache.lock() {
            c.remove(name);
        }
    }
}

/// Whether a table column declared `declared` holds values written as `written`.
fn declares(declared: &str, written: &str) -> bool {
    match (arrow_type(declared), arrow_type(written)) {
        (Ok(a), Ok(b)) => same_type(&a, &b),
        _ => declared.eq_ignore_ascii_case(written),
    }
}

/// The table's partition keys must be the output layout's, in order: files elsewhere would
/// be invisible, or read under the wrong values.
fn check_partition_keys(
    qualified: &str,
    table: &TableDef,
    keys: &[TableColumn],
) -> tributary::Result<()> {
    let names = |k: &[TableColumn]| -> Vec<String> {
        k.iter().map(|c| c.name.to_ascii_lowercase()).collect()
    };
    if names(&table.partition_keys) != names(keys) {
        return Err(Error::SchemaMismatch {
            table: qualified.to_owned(),
            reason: format!(
                "the table is partitioned by {:?}, the output layout (PARTITION_BY, or the input key's k=v segments) by {:?}",
                names(&table.partition_keys),
                names(keys)
            ),
        });
    }
    Ok(())
}
