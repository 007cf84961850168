//! A plan conformed to its dataset's table (the catalog contract): the table's columns type
//! the file, matched in any case and written as the table spells them; a table column the
//! input lacks is written as nulls; a column the table lacks is added, ignored or refused
//! (`SCHEMA_EVOLUTION`). Without a table yet, the names are made the ones the table will have
//! (lowercase), so the file and the table it creates agree.

use arrow::datatypes::{DataType, TimeUnit};
use tributary::Error;

use super::Summary;
use super::decode::{fits, value_as_text};
use super::plan::{Column, Plan};
use crate::catalog::{PartitionSpec, TableColumn, TableDef};
use crate::config::Config;
use crate::config::{Evolution, Format};
use crate::contract::Desired;
use crate::contract::types::{arrow_type, athena_type, same_type};
use crate::naming::Names;
use crate::records::Rec;
use crate::types::ColumnSpec;
use crate::types::Inference;

/// What conforming changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Conformed {
    /// Input columns the table lacks, to be appended to it (`add`).
    pub(super) added: Vec<String>,
    /// Input columns the table lacks, not written (`ignore`).
    pub(super) ignored: Vec<String>,
}

impl Plan {
    /// Conforms the plan to `table` (`None`: the table does not exist yet). `table_name` is
    /// `database.table`, for errors; `schema` the dataset's `SCHEMA` entries, which must agree
    /// with an existing table.
    pub(super) fn conform(
        &mut self,
        table: Option<&TableDef>,
        evolution: Evolution,
        schema: &[ColumnSpec],
        table_name: &str,
    ) -> Result<Conformed, Error> {
        let mismatch = |reason: String| Error::SchemaMismatch {
            table: table_name.to_owned(),
            reason,
        };
        for (i, a) in self.columns.iter().enumerate() {
            if let Some(b) = self.columns[..i]
                .iter()
                .find(|b| b.name.eq_ignore_ascii_case(&a.name))
            {
                return Err(mismatch(format!(
                    "input columns {:?} and {:?} differ only by case: the table has one column for both",
                    b.name, a.name
                )));
            }
        }
        self.evolution = Some(evolution);
        let mut out = Conformed::default();
        let Some(table) = table else {
            for c in &mut self.columns {
                rename(c, c.name.to_ascii_lowercase());
                c.data_type = written_type(&c.data_type);
            }
            return Ok(out);
        };
        for spec in schema {
            let Some(col) = table
                .columns
                .iter()
                .find(|t| t.name.eq_ignore_ascii_case(&spec.name))
            else {
                continue;
            };
            let declared = arrow_type(&col.type_name).map_err(&mismatch)?;
            if !same_type(&declared, &spec.ty.arrow()) {
                return Err(mismatch(format!(
                    "SCHEMA types {:?} as {:?}, the table declares {}",
                    spec.name,
                    athena_type(&spec.ty.arrow()).unwrap_or_default(),
                    col.type_name
                )));
            }
        }
        let mut matched = vec![false; table.columns.len()];
        for c in &mut self.columns {
            match table
                .columns
                .iter()
                .position(|t| t.name.eq_ignore_ascii_case(&c.name))
            {
                Some(t) => {
                    matched[t] = true;
                    let col = &table.columns[t];
                    c.data_type = arrow_type(&col.type_name).map_err(|why| {
                        mismatch(format!("column {:?} ({}): {why}", col.name, col.type_name))
                    })?;
                    c.fixed = true;
                    c.json_text = false;
                    rename(c, col.name.clone());
                }
                None => {
                    rename(c, c.name.to_ascii_lowercase());
                    c.data_type = written_type(&c.data_type);
                    match evolution {
                        Evolution::Add => out.added.push(c.name.clone()),
                        Evolution::Ignore => {
                            c.written = false;
                            out.ignored.push(c.name.clone());
                        }
                        Evolution::Fail => out.added.push(c.name.clone()),
                    }
                }
            }
        }
        if evolution == Evolution::Fail && !out.added.is_empty() {
            return Err(mismatch(format!(
                "new columns {:?} and SCHEMA_EVOLUTION=fail",
                out.added
            )));
        }
        for (col, _) in table.columns.iter().zip(&matched).filter(|(_, m)| !**m) {
            let data_type = arrow_type(&col.type_name).map_err(|why| {
                mismatch(format!("column {:?} ({}): {why}", col.name, col.type_name))
            })?;
            self.columns.push(Column {
                // A JSON object without the field reads as null; a CSV has no such column.
                in_input: self.format == Format::Json,
                ..Column::new(col.name.clone(), data_type, true)
            });
        }
        Ok(out)
    }

    /// Under a table, why a well-formed record is a bad row: the first table-typed column
    /// whose value does not fit, named with the value's type and the table's type (never the
    /// value itself, which may be private). `None` outside the contract or when every value
    /// fits (the record is malformed).
    pub(super) fn cast_failure(&self, buf: &[u8], rec: &Rec) -> Option<String> {
        self.evolution?;
        let col = (0..self.columns.len()).find(|&c| {
            let column = &self.columns[c];
            column.fixed && column.in_input && !fits(self, buf, rec, c)
        })?;
        let value = value_as_text(self, buf, rec, col)?;
        Some(self.cast_message(col, &value))
    }

    /// "column "amount": a string value does not fit the table's type bigint".
    pub(super) fn cast_message(&self, col: usize, value: &str) -> String {
        let c = &self.columns[col];
        let mut inference = Inference::default();
        inference.see(value, &self.formats);
        let kind = athena_type(&inference.result().arrow()).unwrap_or_else(|_| "string".into());
        format!(
            "column {:?}: a {kind} value does not fit the table's type {}",
            c.name,
            athena_type(&c.data_type).unwrap_or_else(|_| c.data_type.to_string())
        )
    }

    /// The written columns as the table declares them: `(name, Athena type)`.
    pub(super) fn table_columns(&self) -> Result<Vec<(String, String)>, String> {
        self.columns
            .iter()
            .filter(|c| c.written)
            .map(|c| Ok((c.name.clone(), athena_type(&c.data_type)?)))
            .collect()
    }
}

/// What the files of a finished pass need from their table: the written columns (less the
/// ones the layout makes partition keys), the partition keys (`keys`, from the
/// partitioner), the location.
pub(super) fn desired(
    plan: &Plan,
    cfg: &Config,
    names: &Names,
    bucket: &str,
    keys: Vec<(String, &'static str)>,
) -> Result<Desired, String> {
    let partition_keys: Vec<TableColumn> = keys
        .into_iter()
        .map(|(k, t)| TableColumn::new(k, t))
        .collect();
    let columns = plan
        .table_columns()?
        .into_iter()
        .filter(|(name, _)| {
            !partition_keys
                .iter()
                .any(|k| k.name.eq_ignore_ascii_case(name))
        })
        .map(|(name, ty)| TableColumn::new(name, ty))
        .collect();
    Ok(Desired {
        columns,
        partition_keys,
        location: format!("s3://{bucket}/{}{}/", cfg.output_prefix, names.dataset),
    })
}

/// The partitions the files went to: values (unescaped) and `s3://` location of each.
pub(super) fn partitions_of(
    cfg: &Config,
    names: &Names,
    bucket: &str,
    summary: &Summary,
) -> Vec<PartitionSpec> {
    let base = format!("{}{}/", cfg.output_prefix, names.dataset);
    let mut out: Vec<PartitionSpec> = Vec::new();
    for f in &summary.files {
        let Some(rest) = f.key.strip_prefix(&base) else {
            continue;
        };
        let Some((path, _file)) = rest.rsplit_once('/') else {
            continue;
        };
        let values: Vec<String> = path
            .split('/')
            .filter_map(|seg| {
                seg.split_once('=')
                    .map(|(_, v)| tributary::partition::unescape(v))
            })
            .collect();
        let location = format!("s3://{bucket}/{base}{path}/");
        if !out.iter().any(|(_, l)| *l == location) {
            out.push((values, location));
        }
    }
    out
}

/// Gives `c` the output name `name`, keeping the input's spelling for decoding.
fn rename(c: &mut Column, name: String) {
    if c.name != name {
        c.source.get_or_insert_with(|| c.name.clone());
        c.name = name;
    }
}

/// The type written under a table: timestamps without a zone (Athena's `timestamp`), the
/// instant's UTC wall time; everything else as inferred.
fn written_type(dt: &DataType) -> DataType {
    match dt {
        DataType::Timestamp(_, Some(_)) => DataType::Timestamp(TimeUnit::Microsecond, None),
        other => other.clone(),
    }
}
