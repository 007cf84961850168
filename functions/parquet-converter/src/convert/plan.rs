//! How to read one object: format (from the key, `INPUT_FORMAT`, or sniffed), the type
//! sample, record framing, and the columns: inferred from the sample ([`crate::types`]),
//! fixed by `SCHEMA`, widened or added when a later value asks for it ([`Change`]).

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Array, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use tokio::io::AsyncReadExt;
use tributary::Error;

use super::decode::{Decoding, Types};
use super::{MIB, READ_CHUNK};
use crate::config::{Config, Format};
use crate::records::{Framing, Rec, Splitter, json_framing};
use crate::types::{ColType, Inference};

/// A change to the column plan.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Change {
    /// Column `i` takes the next wider type.
    Widen(usize),
    /// Column `i` becomes text: an integer too large for `int64`, which `float64` would
    /// round, is kept exactly as written.
    Text(usize),
    /// A JSON field not seen in the sample.
    Add(Field),
}

impl Change {
    pub(super) fn describe(&self, plan: &Plan) -> String {
        match self {
            Change::Widen(i) => {
                let c = &plan.columns[*i];
                format!("column {:?} is wider than {}", c.name, c.data_type)
            }
            Change::Text(i) => {
                let c = &plan.columns[*i];
                format!(
                    "column {:?} holds an integer beyond {}",
                    c.name, c.data_type
                )
            }
            Change::Add(f) => format!("new field {:?} ({})", f.name(), f.data_type()),
        }
    }
}

pub(super) fn format_from_key(key: &str) -> Option<Format> {
    let lower = key.to_ascii_lowercase();
    let base = lower
        .trim_end_matches(".gz")
        .trim_end_matches(".gzip")
        .trim_end_matches(".zst")
        .trim_end_matches(".zstd");
    if base.ends_with(".csv") {
        Some(Format::Csv)
    } else if base.ends_with(".tsv") || base.ends_with(".tab") {
        Some(Format::Tsv)
    } else if base.ends_with(".json") || base.ends_with(".jsonl") || base.ends_with(".ndjson") {
        Some(Format::Json)
    } else {
        None
    }
}

pub(super) fn sniff_format(sample: &[u8]) -> Format {
    match strip_bom(sample).iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') | Some(b'[') => Format::Json,
        _ => Format::Csv,
    }
}

/// Reads about `rows` lines into `sample`: at most 8 MiB, unless fewer than two lines (a
/// header and a record) have arrived by then; then on up to the longest record.
pub(super) async fn read_sample(
    object: &tributary::ObjectRef,
    reader: &mut tributary::reader::ObjectReader,
    sample: &mut Vec<u8>,
    rows: usize,
) -> Result<(), Error> {
    let mut chunk = vec![0u8; READ_CHUNK];
    let mut lines = 0usize;
    while lines <= rows
        && (sample.len() < 8 * MIB
            || (lines < 2 && sample.len() <= crate::records::MAX_RECORD + MIB))
    {
        let n = reader
            .read(&mut chunk)
            .await
            .map_err(|e| Error::read(object, e))?;
        if n == 0 {
            break;
        }
        lines += memchr::memchr_iter(b'\n', &chunk[..n]).count();
        sample.extend_from_slice(&chunk[..n]);
    }
    Ok(())
}

pub(super) fn strip_bom(data: &[u8]) -> &[u8] {
    data.strip_prefix(&[0xEF, 0xBB, 0xBF]).unwrap_or(data)
}

/// One output column.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Column {
    pub(super) name: String,
    /// Type written to Parquet.
    pub(super) data_type: DataType,
    /// Typed by `SCHEMA`: a value that does not fit is a bad row, not drift.
    pub(super) fixed: bool,
    /// Present in the input (a `SCHEMA` column missing from a CSV header is all null).
    pub(super) in_input: bool,
    /// JSON: nested values are kept as JSON text (the field mixes objects or arrays with
    /// other values, so no one Arrow type holds it).
    pub(super) json_text: bool,
    /// The input's spelling of the name, when the output spells it otherwise (the table's
    /// spelling, under the catalog contract).
    pub(super) source: Option<String>,
    /// Written to the file (`false`: a new column under `SCHEMA_EVOLUTION=ignore`, decoded
    /// only to keep the other columns in place).
    pub(super) written: bool,
}

impl Column {
    /// An input column of `name`, written, typed by `data_type`.
    pub(super) fn new(name: impl Into<String>, data_type: DataType, fixed: bool) -> Column {
        Column {
            name: name.into(),
            data_type,
            fixed,
            in_input: true,
            json_text: false,
            source: None,
            written: true,
        }
    }

    /// The name as the input spells it.
    pub(super) fn input_name(&self) -> &str {
        self.source.as_deref().unwrap_or(&self.name)
    }

    pub(super) fn temporal(&self) -> Option<ColType> {
        ColType::of_arrow(&self.data_type).filter(|t| t.is_temporal())
    }

    /// What the decoder produces for it: text for dates and timestamps (parsed here).
    pub(super) fn decode_type(&self) -> DataType {
        match self.temporal() {
            Some(_) => DataType::Utf8,
            None => self.data_type.clone(),
        }
    }
}

/// How to read one object: format, framing and columns.
#[derive(Debug, Clone)]
pub(super) struct Plan {
    pub(super) format: Format,
    pub(super) framing: Framing,
    pub(super) delimiter: u8,
    pub(super) null_regex: regex::Regex,
    /// `NULL_VALUES` for decoding CSV without the regex, when that reads the same.
    pub(super) null_words: Option<std::sync::Arc<super::decode::NullWords>>,
    pub(super) formats: Vec<String>,
    pub(super) columns: Vec<Column>,
    /// CSV: the first record is the header.
    pub(super) header: bool,
    /// Under a table (the catalog contract): what a column the table lacks becomes.
    pub(super) evolution: Option<crate::config::Evolution>,
}

impl Plan {
    /// Infers the plan from the sample (whole records only: the last may be cut).
    pub(super) fn infer(
        cfg: &Config,
        dataset: &str,
        format: Format,
        sample: &[u8],
    ) -> Result<Plan, String> {
        let data = strip_bom(sample);
        let delimiter = match format {
            Format::Tsv => b'\t',
            _ => cfg.csv_delimiter,
        };
        let framing = match format {
            Format::Csv | Format::Tsv => Framing::Csv { delimiter },
            Format::Json => {
                if data.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
                    return Err(
                        "a JSON array document: expected JSON lines or concatenated JSON objects"
                            .into(),
                    );
                }
                json_framing(data)
            }
        };
        let mut recs = Vec::new();
        Splitter::new(framing)
            .split(data, 0, false, cfg.infer_rows + 1, &mut recs)
            .map_err(|t| format!("a record starting at line {} never ends", t.line))?;
        if recs.is_empty() && !data.is_empty() {
            // Smaller than one record: the sample is the whole input.
            Splitter::new(framing)
                .split(data, 0, true, 1, &mut recs)
                .map_err(|t| format!("a record starting at line {} never ends", t.line))?;
        }
        let mut plan = Plan {
            format,
            framing,
            delimiter,
            null_regex: cfg.null_regex.clone(),
            null_words: super::decode::NullWords::new(&cfg.null_values).map(std::sync::Arc::new),
            formats: cfg.timestamp_formats.clone(),
            columns: Vec::new(),
            header: matches!(format, Format::Csv | Format::Tsv),
            evolution: None,
        };
        match format {
            Format::Csv | Format::Tsv => plan.infer_csv(data, &recs)?,
            Format::Json => plan.infer_json(data, &recs)?,
        }
        for spec in cfg.schema.of(dataset) {
            match plan
                .columns
                .iter_mut()
                .find(|c| c.name.eq_ignore_ascii_case(&spec.name))
            {
                Some(c) => {
                    c.data_type = spec.ty.arrow();
                    c.fixed = true;
                }
                None => plan.columns.push(Column {
                    in_input: format == Format::Json,
                    ..Column::new(&spec.name, spec.ty.arrow(), true)
                }),
            }
        }
        if plan.columns.is_empty() {
            return Err("no columns found in the first rows".into());
        }
        Ok(plan)
    }

    pub(super) fn infer_csv(&mut self, data: &[u8], recs: &[Rec]) -> Result<(), String> {
        let Some(head) = recs.first() else {
            return Err("no header line".into());
        };
        let names = arrow::csv::reader::Format::default()
            .with_header(true)
            .with_delimiter(self.delimiter)
            .infer_schema(std::io::Cursor::new(&data[head.start..head.end]), Some(0))
            .map_err(|e| format!("the header line: {e}"))?
            .0;
        let mut seen: HashMap<String, usize> = HashMap::new();
        for (i, f) in names.fields().iter().enumerate() {
            let base = match f.name().trim() {
                "" => format!("column_{}", i + 1),
                n => n.to_owned(),
            };
            let n = seen.entry(base.clone()).or_insert(0);
            *n += 1;
            let name = if *n == 1 { base } else { format!("{base}_{n}") };
            self.columns.push(Column::new(name, DataType::Utf8, false));
        }
        // Decode the sampled rows as text and look at every value.
        let mut text = Decoding::new(self, Types::Text).map_err(|e| e.to_string())?;
        let mut inference = vec![Inference::default(); self.columns.len()];
        let mut good = Vec::new();
        let mut bad = Vec::new();
        text.isolate(data, &recs[1..], 0, &mut good, &mut bad);
        for (batch, _) in &good {
            for (i, inf) in inference.iter_mut().enumerate() {
                let Some(col) = batch.column(i).as_any().downcast_ref::<StringArray>() else {
                    continue;
                };
                for v in col.iter().flatten() {
                    inf.see(v, &self.formats);
                }
            }
        }
        for (c, inf) in self.columns.iter_mut().zip(&inference) {
            c.data_type = inf.result().arrow();
        }
        Ok(())
    }

    pub(super) fn infer_json(&mut self, data: &[u8], recs: &[Rec]) -> Result<(), String> {
        // Objects only, for arrow's inference; values that do not parse are left to the
        // decoding pass (which quarantines them).
        let mut first_error = None;
        let mut objects: Vec<serde_json::Map<String, serde_json::Value>> = recs
            .iter()
            .filter_map(
                |r| match serde_json::from_slice(data[r.start..r.end].trim_ascii()) {
                    Ok(serde_json::Value::Object(m)) => Some(m),
                    Ok(_) => {
                        first_error.get_or_insert((r.line, "not a JSON object".to_owned()));
                        None
                    }
                    Err(e) => {
                        // serde_json's message names its limits (nesting depth: 128).
                        first_error.get_or_insert((r.line, e.to_string()));
                        None
                    }
                },
            )
            .collect();
        if objects.is_empty()
            && let Some((line, why)) = first_error
        {
            return Err(format!(
                "no JSON object in the first rows could be read; line {line}: {why}"
            ));
        }
        // A field holding objects or arrays in some rows and something else in others has no
        // one Arrow type: it is kept as JSON text.
        let mut kinds: HashMap<String, (bool, bool)> = HashMap::new();
        for o in &objects {
            for (k, v) in o {
                let e = kinds.entry(k.clone()).or_default();
                match v {
                    serde_json::Value::Object(_) | serde_json::Value::Array(_) => e.0 = true,
                    serde_json::Value::Null => {}
                    _ => e.1 = true,
                }
            }
        }
        let mut text: Vec<String> = kinds
            .iter()
            .filter(|(_, (nested, scalar))| *nested && *scalar)
            .map(|(k, _)| k.clone())
            .collect();
        let schema = loop {
            // Fields kept as text hold their nested values as JSON strings before inference
            // sees them (whichever shape came first in the sample).
            for o in &mut objects {
                for t in &text {
                    if let Some(v) = o.get_mut(t)
                        && (v.is_object() || v.is_array())
                    {
                        *v = serde_json::Value::String(v.to_string());
                    }
                }
            }
            let mut lines = Vec::with_capacity(data.len());
            for o in &objects {
                serde_json::to_writer(&mut lines, o).map_err(|e| e.to_string())?;
                lines.push(b'\n');
            }
            match arrow::json::reader::infer_json_schema(std::io::Cursor::new(lines), None) {
                Ok((schema, _)) => break schema,
                // Nested values whose shapes conflict: keep the field named as text.
                Err(e) => {
                    let msg = e.to_string();
                    let culprit = kinds
                        .keys()
                        .find(|k| !text.iter().any(|t| t == *k) && msg.contains(&format!("'{k}'")))
                        .or_else(|| {
                            kinds
                                .iter()
                                .find(|(k, (nested, _))| *nested && !text.iter().any(|t| t == *k))
                                .map(|(k, _)| k)
                        });
                    match culprit {
                        Some(k) => text.push(k.clone()),
                        None => return Err(format!("inferring JSON types: {e}")),
                    }
                }
            }
        };
        for f in schema.fields() {
            let json_text = text.iter().any(|t| t == f.name());
            let mut data_type = if json_text {
                DataType::Utf8
            } else {
                normalise(f.data_type())
            };
            if data_type == DataType::Utf8 && !json_text {
                // JSON has no date type: strings that all read as dates/timestamps become one.
                let mut inf = Inference::default();
                for o in &objects {
                    if let Some(serde_json::Value::String(s)) = o.get(f.name()) {
                        inf.see(s, &self.formats);
                    }
                }
                if let ty @ (ColType::Date | ColType::Timestamp | ColType::TimestampTz) =
                    inf.result()
                {
                    data_type = ty.arrow();
                }
            }
            if matches!(data_type, DataType::Int64 | DataType::Float64)
                && objects.iter().any(|o| {
                    o.get(f.name())
                        .and_then(serde_json::Value::as_number)
                        .is_some_and(|n| n.is_u64() && !n.is_i64())
                })
            {
                // An integer beyond int64: float64 would round it; its text is exact.
                data_type = DataType::Utf8;
            }
            self.columns.push(Column {
                json_text,
                ..Column::new(f.name(), data_type, false)
            });
        }
        Ok(())
    }

    pub(super) fn apply(&mut self, change: Change) {
        match change {
            Change::Widen(i) => {
                let json = self.format == Format::Json;
                let c = &mut self.columns[i];
                match ColType::of_arrow(&c.data_type).and_then(ColType::widen) {
                    Some(next) => c.data_type = next.arrow(),
                    None if json => {
                        c.data_type = DataType::Utf8;
                        c.json_text = true;
                    }
                    None => {}
                }
            }
            Change::Text(i) => self.columns[i].data_type = DataType::Utf8,
            Change::Add(f) => {
                let mut c = Column::new(f.name(), normalise(f.data_type()), false);
                if let Some(evolution) = self.evolution {
                    // Under a table: named as the table will name it, or not written.
                    c.source = Some(c.name.clone());
                    c.name = c.name.to_ascii_lowercase();
                    c.written = evolution != crate::config::Evolution::Ignore;
                    if let DataType::Timestamp(unit, Some(_)) = &c.data_type {
                        c.data_type = DataType::Timestamp(*unit, None);
                    }
                }
                self.columns.push(c);
            }
        }
    }

    /// Fixes every column's type as it stands: a value that does not fit is a bad row, never
    /// a widening (the byte ranges of one object must write the same types).
    pub(super) fn fix_types(&mut self) {
        for c in &mut self.columns {
            c.fixed = true;
        }
    }

    /// CSV: the header record's bytes at the start of `sample` (a leading byte order mark
    /// included); empty without a header.
    pub(super) fn header_bytes(&self, sample: &[u8]) -> Vec<u8> {
        if !self.header {
            return Vec::new();
        }
        let bom = sample.len() - strip_bom(sample).len();
        let mut recs = Vec::new();
        let end = Splitter::new(self.framing)
            .split(&sample[bom..], 0, false, 1, &mut recs)
            .ok()
            .and_then(|_| recs.first().map(|r| r.end))
            .unwrap_or(sample.len() - bom);
        sample[..bom + end].to_vec()
    }

    pub(super) fn can_widen(&self, i: usize) -> bool {
        let c = &self.columns[i];
        let wider = ColType::of_arrow(&c.data_type)
            .and_then(ColType::widen)
            .is_some();
        !c.fixed && !c.json_text && (wider || self.format == Format::Json)
    }

    /// JSON fields kept as text, if any.
    pub(super) fn text_fields(&self) -> Vec<&str> {
        self.columns
            .iter()
            .filter(|c| c.json_text)
            .map(|c| c.input_name())
            .collect()
    }

    /// JSON: a top-level field of this record that is not a column yet, typed from its
    /// value (the sample did not show it).
    pub(super) fn new_json_field(&self, buf: &[u8], rec: &Rec) -> Option<Field> {
        let body = buf[rec.start..rec.end].trim_ascii();
        let object: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(body).ok()?;
        let (name, value) = object
            .iter()
            .find(|(k, _)| !self.columns.iter().any(|c| c.input_name() == *k))?;
        let one = serde_json::to_vec(&serde_json::json!({ name: value })).ok()?;
        let (schema, _) =
            arrow::json::reader::infer_json_schema(std::io::Cursor::new(one), None).ok()?;
        schema.field_with_name(name).ok().cloned()
    }

    pub(super) fn output_schema(&self) -> SchemaRef {
        Arc::new(Schema::new(
            self.columns
                .iter()
                .filter(|c| c.written)
                .map(|c| Field::new(&c.name, c.data_type.clone(), true))
                .collect::<Vec<_>>(),
        ))
    }
}

/// Types as written: microsecond timestamps, text for all-null columns.
pub(super) fn normalise(dt: &DataType) -> DataType {
    match dt {
        DataType::Null => DataType::Utf8,
        DataType::Timestamp(_, tz) => DataType::Timestamp(TimeUnit::Microsecond, tz.clone()),
        DataType::List(f) => DataType::List(Arc::new(Field::new(
            f.name(),
            normalise(f.data_type()),
            true,
        ))),
        DataType::Struct(fields) => DataType::Struct(
            fields
                .iter()
                .map(|f| Field::new(f.name(), normalise(f.data_type()), true))
                .collect(),
        ),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_from_keys_and_sniffing() {
        assert_eq!(format_from_key("raw/a/b.csv.gz"), Some(Format::Csv));
        assert_eq!(format_from_key("raw/a/b.TSV"), Some(Format::Tsv));
        assert_eq!(format_from_key("raw/a/b.ndjson.zst"), Some(Format::Json));
        assert_eq!(format_from_key("raw/events/firehose-1-2024-03-07"), None);
        assert_eq!(sniff_format(b"  {\"a\":1}"), Format::Json);
        assert_eq!(sniff_format(b"\xEF\xBB\xBFid,name"), Format::Csv);
    }
}
