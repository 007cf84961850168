//! What the demo prints at the end: the summary table, the tables of the catalog (with their
//! Athena DDL), and the first rows read back from the Parquet output.

use std::fmt::Write as _;

use crate::progress::mib;
use crate::{CatalogTable, Step};

/// One line per step: bytes, rate, rows, bad rows, partitions, files.
pub(crate) fn summary_table(steps: &[Step]) -> String {
    let mut t = String::new();
    let opt = |v: Option<u64>| v.map_or("-".to_owned(), |v| v.to_string());
    let _ = writeln!(
        t,
        "\n{:<28}{:>10}{:>9}{:>9}{:>10}{:>10}{:>6}{:>11}{:>7}{:>11}",
        "step",
        "in MiB",
        "MiB/s",
        "s",
        "rows in",
        "rows out",
        "bad",
        "partitions",
        "files",
        "out MiB"
    );
    for s in steps {
        let rate = if s.seconds > 0.0 {
            mib(s.bytes_in) / s.seconds
        } else {
            0.0
        };
        let _ = writeln!(
            t,
            "{:<28}{:>10.2}{:>9.1}{:>9.2}{:>10}{:>10}{:>6}{:>11}{:>7}{:>11.2}",
            s.name,
            mib(s.bytes_in),
            rate,
            s.seconds,
            opt(s.rows_in),
            opt(s.rows_out),
            opt(s.bad),
            opt(s.partitions),
            s.files,
            mib(s.bytes_out)
        );
    }
    t
}

/// Each table of the catalog: name, who created or changed it, location, partition keys,
/// columns with their types, partitions registered; then the Athena DDL that would create it.
pub(crate) fn catalog_section(catalog: &str, tables: &[CatalogTable], steps: &[Step]) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "\nCatalog: {} table{} in {catalog} (JSON files: the definitions the Glue Data Catalog would hold)",
        tables.len(),
        if tables.len() == 1 { "" } else { "s" }
    );
    for table in tables {
        let def = &table.table.def;
        let full = format!("{}.{}", def.database, def.name);
        let mut history = Vec::new();
        for step in steps {
            let uses = step.tables.iter().filter(|u| u.table == full);
            let (mut created, mut added, mut casts) = (false, Vec::new(), 0);
            for u in uses {
                created |= u.created;
                added.extend(u.columns_added.iter().map(String::as_str));
                casts += u.cast_bad_rows;
            }
            if created {
                history.push(format!("created by {}", step.name));
            }
            if !added.is_empty() {
                history.push(format!("{} added by {}", added.join(", "), step.name));
            }
            if casts > 0 {
                history.push(format!("{casts} rows quarantined by {} (casts)", step.name));
            }
        }
        if let Some(v) = &table.table.version_id {
            history.push(format!("version {v}"));
        }
        let _ = writeln!(t, "\n{full}: {}", history.join("; "));
        let _ = writeln!(t, "  location        {}", def.location);
        let keys = if def.partition_keys.is_empty() {
            "(none)".to_owned()
        } else {
            typed(&def.partition_keys).join(", ")
        };
        let _ = writeln!(t, "  partition keys  {keys}");
        let _ = writeln!(
            t,
            "  partitions      {}",
            partitions(&def.partition_keys, &table.partitions)
        );
        let label = format!("  {:<16}", format!("columns ({})", def.columns.len()));
        t.push_str(&wrapped(&label, &typed(&def.columns), 100));
        let _ = writeln!(t, "  Athena DDL:");
        for line in def.athena_ddl().lines() {
            let _ = writeln!(t, "    {line}");
        }
    }
    t
}

/// `3 registered: year=2024/month=01/day=01 … year=2024/month=01/day=03`.
fn partitions(
    keys: &[parquet_converter::catalog::TableColumn],
    registered: &[parquet_converter::catalog::local::LocalPartition],
) -> String {
    let path = |p: &parquet_converter::catalog::local::LocalPartition| {
        keys.iter()
            .zip(&p.values)
            .map(|(k, v)| format!("{}={v}", k.name))
            .collect::<Vec<_>>()
            .join("/")
    };
    let mut sorted: Vec<_> = registered.iter().collect();
    sorted.sort_by(|a, b| a.values.cmp(&b.values));
    match sorted.as_slice() {
        [] => "none registered".to_owned(),
        [one] => format!("1 registered: {}", path(one)),
        [first, .., last] => format!(
            "{} registered: {} … {}",
            sorted.len(),
            path(first),
            path(last)
        ),
    }
}

/// `name type` of each column.
fn typed(cols: &[parquet_converter::catalog::TableColumn]) -> Vec<String> {
    cols.iter()
        .map(|c| format!("{} {}", c.name, c.type_name))
        .collect()
}

/// `items` comma-separated after `label`, wrapped at `width` with the continuation lines
/// indented under the first item.
fn wrapped(label: &str, items: &[String], width: usize) -> String {
    let indent = " ".repeat(label.chars().count());
    let mut out = String::new();
    let mut line = label.to_owned();
    for (i, item) in items.iter().enumerate() {
        let piece = if i + 1 < items.len() {
            format!("{item},")
        } else {
            item.clone()
        };
        let at_start = line.chars().count() == indent.len();
        if !at_start && line.chars().count() + 1 + piece.chars().count() > width {
            out.push_str(line.trim_end());
            out.push('\n');
            line.clone_from(&indent);
        } else if !at_start {
            line.push(' ');
        }
        line.push_str(&piece);
    }
    out.push_str(line.trim_end());
    out.push('\n');
    out
}

/// The first `n` rows of a Parquet object, as text.
pub(crate) async fn read_back(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    n: usize,
) -> Result<String, String> {
    use arrow::util::display::{ArrayFormatter, FormatOptions};
    let body = client
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .map_err(|e| format!("reading {key}: {e}"))?
        .body
        .collect()
        .await
        .map_err(|e| format!("reading {key}: {e}"))?
        .into_bytes();
    let mut reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(body)
        .map_err(|e| format!("{key} is not Parquet: {e}"))?
        .with_batch_size(n)
        .build()
        .map_err(|e| e.to_string())?;
    let Some(batch) = reader.next().transpose().map_err(|e| e.to_string())? else {
        return Ok("(no rows)\n".into());
    };
    let schema = batch.schema();
    let cols: Vec<usize> = (0..batch.num_columns()).take(8).collect();
    let opts = FormatOptions::default().with_null("null");
    let mut cells: Vec<Vec<String>> = vec![
        cols.iter()
            .map(|&c| {
                format!(
                    "{} ({})",
                    schema.field(c).name(),
                    schema.field(c).data_type()
                )
            })
            .collect(),
    ];
    for row in 0..batch.num_rows().min(n) {
        let mut line = Vec::new();
        for &c in &cols {
            let f = ArrayFormatter::try_new(batch.column(c).as_ref(), &opts)
                .map_err(|e| e.to_string())?;
            line.push(f.value(row).to_string());
        }
        cells.push(line);
    }
    let widths: Vec<usize> = (0..cols.len())
        .map(|i| {
            cells
                .iter()
                .map(|r| r[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in cells {
        for (i, cell) in row.iter().enumerate() {
            let _ = write!(out, "{cell:<w$}  ", w = widths[i]);
        }
        out.push('\n');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::wrapped;

    #[test]
    fn lists_wrap_under_their_first_item() {
        let items: Vec<String> = ["a bigint", "bb double", "ccc string"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        assert_eq!(
            wrapped("  cols  ", &items, 22),
            "  cols  a bigint,\n        bb double,\n        ccc string\n"
        );
        assert_eq!(
            wrapped("x ", &items, 80),
            "x a bigint, bb double, ccc string\n"
        );
    }
}
