//! [`GlueCatalog`]: the [`Catalog`] over the AWS Glue Data Catalog (`aws-sdk-glue`).
//!
//! * **Client**: built from the shared AWS configuration (credentials chain, region) like the
//!   S3 client: `AWS_ENDPOINT_URL_GLUE`, then `AWS_ENDPOINT_URL`, point it at another Glue API
//!   (moto in the tests); `GLUE_CATALOG_ID` names another account's catalog.
//! * **Retries**: the SDK's standard mode (exponential backoff with jitter from 200 ms, at most
//!   `AWS_MAX_ATTEMPTS` attempts, default 5) retries `ThrottlingException`, 5xx, timeouts and
//!   connection errors. What is left after that is a [`tributary::Error::Catalog`] that is
//!   transient (`CatalogUnavailable`, retryable); any other refusal is `CatalogError`.
//! * **Tables** are written as `EXTERNAL_TABLE`s with the Parquet SerDe
//!   (`ParquetHiveSerDe`, `MapredParquetInputFormat` / `MapredParquetOutputFormat`), the
//!   definition's location and parameters, and `classification=parquet`.
//! * **Outcomes**: CreateTable's `AlreadyExistsException` is [`CreateOutcome::AlreadyExists`];
//!   UpdateTable passes `VersionId` and maps `ConcurrentModificationException` to
//!   [`UpdateOutcome::ConcurrentModification`]; GetTable's `EntityNotFoundException` is
//!   `Ok(None)`; BatchCreatePartition goes in chunks of 100 (Glue's limit) and ignores the
//!   per-partition `AlreadyExistsException`.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_glue::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_glue::types::{Column, PartitionInput, SerDeInfo, StorageDescriptor, TableInput};
use tributary::Env;
use tributary::s3::ServiceSettings;

use super::{
    Catalog, CreateOutcome, EXTERNAL_TABLE, PARQUET_INPUT_FORMAT, PARQUET_OUTPUT_FORMAT,
    PARQUET_SERDE, PartitionSpec, StorageFormat, Table, TableColumn, TableDef, UpdateOutcome,
    catalog_error, invalid, table_ref,
};

/// BatchCreatePartition takes at most this many partitions per call.
pub const PARTITIONS_PER_BATCH: usize = 100;

/// Error codes Glue answers that retrying can help with (besides any 5xx and 429); the same
/// list as `tributary::Error::is_transient` uses for [`tributary::Error::Catalog`].
const TRANSIENT_CODES: &[&str] = &[
    "ThrottlingException",
    "InternalServiceException",
    "OperationTimeoutException",
    "ResourceNotReadyException",
    "ConcurrentModificationException",
];

/// Where and how to reach the Glue Data Catalog (`AWS_ENDPOINT_URL_GLUE`, then
/// `AWS_ENDPOINT_URL`), and whose catalog.
#[derive(Debug, Clone, Default)]
pub struct GlueSettings {
    /// Endpoint, region, keys and retries, as every non-S3 client of the project has them.
    pub service: ServiceSettings,
    /// The catalog's account (`GLUE_CATALOG_ID`); `None`: the caller's.
    pub catalog_id: Option<String>,
}

impl GlueSettings {
    /// Reads the settings from the environment; credentials stay with the default chain.
    pub fn from_env(env: &Env) -> tributary::Result<GlueSettings> {
        let catalog_id = env.get("GLUE_CATALOG_ID").map(str::to_owned);
        if let Some(id) = &catalog_id
            && !(id.len() == 12 && id.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(tributary::Error::config(
                "GLUE_CATALOG_ID",
                id,
                "is not an AWS account id",
                "12 digits",
            ));
        }
        Ok(GlueSettings {
            service: ServiceSettings::from_env(env, "AWS_ENDPOINT_URL_GLUE")?,
            catalog_id,
        })
    }

    /// Settings for an explicit endpoint with static keys (tests and local tools): three
    /// attempts, 20 ms initial backoff.
    pub fn for_endpoint(
        endpoint: &str,
        region: &str,
        access_key: &str,
        secret_key: &str,
    ) -> GlueSettings {
        GlueSettings {
            service: ServiceSettings::for_endpoint(endpoint, region, access_key, secret_key),
            catalog_id: None,
        }
    }

    /// Builds the client. Call once per process and clone it (it is an `Arc`).
    pub async fn build_client(&self) -> aws_sdk_glue::Client {
        let shared = self.service.sdk_config(Duration::from_secs(30)).await;
        aws_sdk_glue::Client::new(&shared)
    }
}

/// The Glue Data Catalog, through one SDK client.
#[derive(Debug, Clone)]
pub struct GlueCatalog {
    client: aws_sdk_glue::Client,
    catalog_id: Option<String>,
}

impl GlueCatalog {
    /// A catalog over `client`; `catalog_id` names another account's catalog.
    pub fn new(client: aws_sdk_glue::Client, catalog_id: Option<String>) -> GlueCatalog {
        GlueCatalog { client, catalog_id }
    }

    /// A catalog built from the shared AWS configuration (credentials, region, endpoint
    /// variables as the SDK reads them).
    pub fn from_sdk_config(
        config: &aws_config::SdkConfig,
        catalog_id: Option<String>,
    ) -> GlueCatalog {
        GlueCatalog::new(aws_sdk_glue::Client::new(config), catalog_id)
    }

    /// A catalog from settings (see [`GlueSettings::from_env`]).
    pub async fn from_settings(settings: &GlueSettings) -> GlueCatalog {
        GlueCatalog::new(settings.build_client().await, settings.catalog_id.clone())
    }

    /// The SDK client.
    pub fn client(&self) -> &aws_sdk_glue::Client {
        &self.client
    }

    /// The catalog id calls are made with, if not the caller's account.
    pub fn catalog_id(&self) -> Option<&str> {
        self.catalog_id.as_deref()
    }
}

#[async_trait]
impl Catalog for GlueCatalog {
    async fn get_table(&self, database: &str, name: &str) -> tributary::Result<Option<Table>> {
        let out = self
            .client
            .get_table()
            .set_catalog_id(self.catalog_id.clone())
            .database_name(database)
            .name(name)
            .send()
            .await;
        match out {
            Ok(out) => {
                let table = out.table.ok_or_else(|| {
                    catalog_error(
                        "GetTable",
                        database,
                        name,
                        Some("InternalServiceException"),
                        "Glue answered without a table",
                    )
                })?;
                Ok(Some(from_glue(database, &table)))
            }
            Err(e) if code_of(&e) == Some("EntityNotFoundException") => Ok(None),
            Err(e) => Err(failure("GetTable", database, name, &e)),
        }
    }

    async fn create_table(&self, def: &TableDef) -> tributary::Result<CreateOutcome> {
        let input = table_input(def)?;
        let out = self
            .client
            .create_table()
            .set_catalog_id(self.catalog_id.clone())
            .database_name(&def.database)
            .table_input(input)
            .send()
            .await;
        match out {
            Ok(_) => Ok(CreateOutcome::Created),
            Err(e) if code_of(&e) == Some("AlreadyExistsException") => {
                Ok(CreateOutcome::AlreadyExists)
            }
            Err(e) => Err(failure("CreateTable", &def.database, &def.name, &e)),
        }
    }

    async fn update_table(
        &self,
        def: &TableDef,
        expected_version: Option<&str>,
    ) -> tributary::Result<UpdateOutcome> {
        let input = table_input(def)?;
        let out = self
            .client
            .update_table()
            .set_catalog_id(self.catalog_id.clone())
            .database_name(&def.database)
            .table_input(input)
            .set_version_id(expected_version.map(str::to_owned))
            // Archived versions are kept (the default): whether Glue still advances VersionId
            // with SkipArchive is not documented, and the optimistic update depends on it.
            .send()
            .await;
        match out {
            Ok(_) => Ok(UpdateOutcome::Updated),
            Err(e) if code_of(&e) == Some("ConcurrentModificationException") => {
                Ok(UpdateOutcome::ConcurrentModification)
            }
            Err(e) => Err(failure("UpdateTable", &def.database, &def.name, &e)),
        }
    }

    async fn create_partitions(
        &self,
        table: &TableDef,
        partitions: &[PartitionSpec],
    ) -> tributary::Result<()> {
        let columns = glue_columns(&table.columns, "column", table)?;
        for chunk in partitions.chunks(PARTITIONS_PER_BATCH) {
            let inputs = chunk
                .iter()
                .map(|(values, location)| {
                    if values.len() != table.partition_keys.len() {
                        return Err(invalid(
                            what("BatchCreatePartition", &table.database, &table.name),
                            format!(
                                "partition {values:?} has {} values for {} partition keys",
                                values.len(),
                                table.partition_keys.len()
                            ),
                        ));
                    }
                    Ok(PartitionInput::builder()
                        .set_values(Some(values.clone()))
                        .storage_descriptor(storage_descriptor(columns.clone(), location))
                        .build())
                })
                .collect::<tributary::Result<Vec<_>>>()?;
            let out = self
                .client
                .batch_create_partition()
                .set_catalog_id(self.catalog_id.clone())
                .database_name(&table.database)
                .table_name(&table.name)
                .set_partition_input_list(Some(inputs))
                .send()
                .await
                .map_err(|e| failure("BatchCreatePartition", &table.database, &table.name, &e))?;
            // The first refusal decides the code (a permanent one before a transient one).
            let mut first: Option<(String, bool)> = None;
            let mut lines = Vec::new();
            for err in out.errors() {
                let (code, message) = err
                    .error_detail()
                    .map(|d| {
                        (
                            d.error_code().unwrap_or_default(),
                            d.error_message().unwrap_or_default(),
                        )
                    })
                    .unwrap_or_default();
                if code == "AlreadyExistsException" {
                    continue;
                }
                lines.push(format!("{:?}: {code}: {message}", err.partition_values()));
                let transient = TRANSIENT_CODES.contains(&code);
                if first.as_ref().is_none_or(|(_, t)| *t && !transient) {
                    first = Some((code.to_owned(), transient));
                }
            }
            if let Some((code, _)) = first {
                return Err(catalog_error(
                    "BatchCreatePartition",
                    &table.database,
                    &table.name,
                    Some(code.as_str()).filter(|c| !c.is_empty()),
                    format!("{} partitions refused: {}", lines.len(), lines.join("; ")),
                ));
            }
        }
        Ok(())
    }
}

/// `Glue <Operation> of <db>.<table>`.
fn what(operation: &str, database: &str, name: &str) -> String {
    format!("Glue {operation} of {}", table_ref(database, name))
}

/// The service error code, when Glue answered with one.
fn code_of<E: ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> Option<&str> {
    match e {
        SdkError::ServiceError(se) => se.err().code(),
        _ => None,
    }
}

/// Our error for a failed call: [`tributary::Error::Catalog`] with Glue's code, so that
/// throttling and internal errors are `CatalogUnavailable` (retryable) and refusals
/// `CatalogError`. A 5xx or 429 whose code is not one of the transient ones, and failures
/// without an answer (timeouts, connections), carry no code: transient too.
fn failure<E>(
    operation: &'static str,
    database: &str,
    name: &str,
    e: &SdkError<E, aws_sdk_glue::config::http::HttpResponse>,
) -> tributary::Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let message = DisplayErrorContext(e).to_string();
    let code = match e {
        SdkError::ServiceError(se) => {
            let status = se.raw().status().as_u16();
            let code = se.err().code();
            let transient = code.is_some_and(|c| TRANSIENT_CODES.contains(&c));
            if (status >= 500 || status == 429) && !transient {
                None
            } else {
                // An answer without a code (an unparsable error body) is no refusal we know.
                Some(code.unwrap_or("Unknown"))
            }
        }
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            None
        }
        // The request could not be built: ours to fix, not Glue's.
        _ => Some("ConstructionFailure"),
    };
    catalog_error(operation, database, name, code, message)
}

/// Glue columns of ours.
fn glue_columns(
    cols: &[TableColumn],
    kind: &str,
    def: &TableDef,
) -> tributary::Result<Vec<Column>> {
    cols.iter()
        .map(|c| {
            Column::builder()
                .name(&c.name)
                .r#type(&c.type_name)
                .set_comment(c.comment.clone())
                .build()
                .map_err(|e| {
                    invalid(
                        format!(
                            "{kind} {:?} of {}",
                            c.name,
                            table_ref(&def.database, &def.name)
                        ),
                        e.to_string(),
                    )
                })
        })
        .collect()
}

/// The Parquet storage descriptor over `columns` at `location`.
fn storage_descriptor(columns: Vec<Column>, location: &str) -> StorageDescriptor {
    StorageDescriptor::builder()
        .set_columns(Some(columns))
        .location(location)
        .input_format(PARQUET_INPUT_FORMAT)
        .output_format(PARQUET_OUTPUT_FORMAT)
        .compressed(false)
        .serde_info(
            SerDeInfo::builder()
                .serialization_library(PARQUET_SERDE)
                .parameters("serialization.format", "1")
                .build(),
        )
        .build()
}

/// The TableInput of a definition.
fn table_input(def: &TableDef) -> tributary::Result<TableInput> {
    let columns = glue_columns(&def.columns, "column", def)?;
    let keys = glue_columns(&def.partition_keys, "partition key", def)?;
    let parameters: HashMap<String, String> = def.parameters_to_write().into_iter().collect();
    TableInput::builder()
        .name(&def.name)
        .table_type(EXTERNAL_TABLE)
        .set_parameters(Some(parameters))
        .set_partition_keys(Some(keys))
        .storage_descriptor(storage_descriptor(columns, &def.location))
        .build()
        .map_err(|e| {
            invalid(
                format!("table {}", table_ref(&def.database, &def.name)),
                e.to_string(),
            )
        })
}

/// Our table of Glue's.
fn from_glue(database: &str, t: &aws_sdk_glue::types::Table) -> Table {
    let column = |c: &Column| TableColumn {
        name: c.name().to_owned(),
        type_name: c.r#type().unwrap_or_default().to_owned(),
        comment: c.comment().map(str::to_owned),
    };
    let sd = t.storage_descriptor();
    let parameters: BTreeMap<String, String> = t
        .parameters()
        .map(|p| p.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    Table {
        def: TableDef {
            database: t.database_name().unwrap_or(database).to_owned(),
            name: t.name().to_owned(),
            columns: sd
                .map(|sd| sd.columns().iter().map(column).collect())
                .unwrap_or_default(),
            partition_keys: t.partition_keys().iter().map(column).collect(),
            location: sd
                .and_then(|sd| sd.location())
                .unwrap_or_default()
                .to_owned(),
            parameters,
        },
        version_id: t.version_id().map(str::to_owned),
        format: StorageFormat {
            table_type: t.table_type().map(str::to_owned),
            serde_library: sd
                .and_then(|sd| sd.serde_info())
                .and_then(|s| s.serialization_library())
                .map(str::to_owned),
            input_format: sd.and_then(|sd| sd.input_format()).map(str::to_owned),
            output_format: sd.and_then(|sd| sd.output_format()).map(str::to_owned),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_prefer_the_glue_specific_endpoint() {
        let env = Env::from_pairs([
            ("AWS_ENDPOINT_URL", "http://generic:1"),
            ("AWS_ENDPOINT_URL_GLUE", "http://glue:2"),
            ("GLUE_CATALOG_ID", "123456789012"),
        ]);
        let s = GlueSettings::from_env(&env).expect("settings");
        assert_eq!(s.service.endpoint_url.as_deref(), Some("http://glue:2"));
        assert_eq!(s.catalog_id.as_deref(), Some("123456789012"));
        assert_eq!(s.service.max_attempts, 5);
        let s = GlueSettings::from_env(&Env::from_pairs([("AWS_ENDPOINT_URL", "http://g:1")]))
            .expect("settings");
        assert_eq!(s.service.endpoint_url.as_deref(), Some("http://g:1"));
        assert_eq!(s.catalog_id, None);
    }

    #[test]
    fn a_catalog_id_that_is_not_an_account_fails_naming_the_variable() {
        let err = GlueSettings::from_env(&Env::from_pairs([("GLUE_CATALOG_ID", "lake")]))
            .expect_err("not an account id");
        assert_eq!(err.error_type(), "ConfigError");
        assert!(err.to_string().contains("GLUE_CATALOG_ID"), "{err}");
    }

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let s = GlueSettings::for_endpoint("http://x", "us-east-1", "ak", "very-secret");
        assert!(!format!("{s:?}").contains("very-secret"));
    }

    #[test]
    fn table_input_is_parquet_external_with_classification() {
        let def = TableDef {
            database: "d".into(),
            name: "t".into(),
            columns: vec![TableColumn::new("a", "bigint")],
            partition_keys: vec![TableColumn::new("year", "string")],
            location: "s3://b/p/".into(),
            parameters: BTreeMap::new(),
        };
        let input = table_input(&def).expect("input");
        assert_eq!(input.table_type(), Some(EXTERNAL_TABLE));
        assert_eq!(
            input
                .parameters()
                .and_then(|p| p.get("classification"))
                .map(String::as_str),
            Some("parquet")
        );
        let sd = input.storage_descriptor().expect("sd");
        assert_eq!(sd.location(), Some("s3://b/p/"));
        assert_eq!(
            sd.serde_info().and_then(|s| s.serialization_library()),
            Some(PARQUET_SERDE)
        );
        assert_eq!(input.partition_keys()[0].name(), "year");
    }
}
