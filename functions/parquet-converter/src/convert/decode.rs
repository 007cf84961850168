//! Records to Arrow batches: arrow's CSV / JSON decoders over exactly the records the
//! splitter cut, bad rows isolated by halving, nested JSON of mixed shape rewritten as text,
//! dates and timestamps parsed with the converter's own parsers.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, Date32Array, RecordBatch, StringArray, TimestampMicrosecondArray,
    new_null_array,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::error::ArrowError;
use tributary::Error;

use super::plan::Plan;
use crate::config::Format;
use crate::records::Rec;
use crate::types::ColType;

/// Which types a [`Decoding`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Types {
    /// The plan's decode types.
    Plan,
    /// Every column as text (for inference).
    Text,
    /// Only column `.0`, with its type (or as text when `.1`): a probe of one value.
    Only(usize, bool),
}

/// Decoding records into batches of the plan's decode types.
#[derive(Clone)]
pub(super) struct Decoding {
    pub(super) format: Format,
    pub(super) delimiter: u8,
    pub(super) null_regex: regex::Regex,
    /// CSV: the `NULL_VALUES` words, when a batch may be decoded without the regex.
    null_words: Option<Arc<NullWords>>,
    /// JSON: a field outside the schema is an error (off for probes of one field).
    pub(super) strict: bool,
    /// Decode schema: the input's columns, temporal ones as text.
    pub(super) schema: SchemaRef,
    /// The decode schema with the plan's dates and timestamps as such, for CSV decoded
    /// without the general decoder (which then parses them itself: see [`super::plain`]).
    plain_schema: SchemaRef,
    /// `TIMESTAMP_FORMATS`.
    formats: Arc<[String]>,
    /// Output column -> decode column.
    pub(super) map: Vec<Option<usize>>,
    pub(super) scratch: Vec<u8>,
}

impl Decoding {
    /// `as_text`: every column as text (for inference).
    pub(super) fn new(plan: &Plan, types: Types) -> Result<Decoding, ArrowError> {
        let mut fields = Vec::new();
        let mut plain_fields = Vec::new();
        let mut map = Vec::new();
        for (i, c) in plan.columns.iter().enumerate() {
            if !c.in_input {
                map.push(None);
                continue;
            }
            let dt = match types {
                Types::Plan => c.decode_type(),
                Types::Text => DataType::Utf8,
                Types::Only(col, as_text) if col == i => {
                    if as_text {
                        DataType::Utf8
                    } else {
                        c.decode_type()
                    }
                }
                // JSON: the one field alone; CSV: every other column as text (its position
                // still counts).
                Types::Only(..) if plan.format == Format::Json => {
                    map.push(None);
                    continue;
                }
                Types::Only(..) => DataType::Utf8,
            };
            map.push(Some(fields.len()));
            let plain_type = match (types, c.temporal()) {
                (Types::Plan, Some(_)) => c.data_type.clone(),
                _ => dt.clone(),
            };
            plain_fields.push(Field::new(c.input_name(), plain_type, true));
            fields.push(Field::new(c.input_name(), dt, true));
        }
        Ok(Decoding {
            format: plan.format,
            delimiter: plan.delimiter,
            null_regex: plan.null_regex.clone(),
            null_words: plan
                .null_words
                .clone()
                .filter(|_| matches!(plan.format, Format::Csv | Format::Tsv)),
            strict: !matches!(types, Types::Only(..)),
            schema: Arc::new(Schema::new(fields)),
            plain_schema: Arc::new(Schema::new(plain_fields)),
            formats: plan.formats.clone().into(),
            map,
            scratch: Vec::new(),
        })
    }

    /// Decodes exactly `recs` (all from `buf`) into one batch.
    pub(super) fn decode(&mut self, buf: &[u8], recs: &[Rec]) -> Result<RecordBatch, ArrowError> {
        self.decode_with(buf, recs, true)
    }

    /// Decodes `recs` into one batch; `regex`: null values are told by `NULL_VALUES`' regex
    /// on every field (else only an empty field is null, and the words are looked for in
    /// the text columns afterwards: see [`NullWords`]).
    fn decode_with(
        &mut self,
        buf: &[u8],
        recs: &[Rec],
        regex: bool,
    ) -> Result<RecordBatch, ArrowError> {
        let (Some(first), Some(last)) = (recs.first(), recs.last()) else {
            return Ok(RecordBatch::new_empty(self.schema.clone()));
        };
        if !regex
            && matches!(self.format, Format::Csv | Format::Tsv)
            && let Some(batch) =
                super::plain::decode(buf, recs, self.delimiter, &self.plain_schema, &self.formats)
        {
            return match &self.null_words {
                Some(words) => words.apply(batch),
                None => Ok(batch),
            };
        }
        let contiguous = recs.windows(2).all(|w| w[0].end == w[1].start);
        let bytes: &[u8] = if contiguous {
            &buf[first.start..last.end]
        } else {
            self.scratch.clear();
            for r in recs {
                self.scratch.extend_from_slice(&buf[r.start..r.end]);
                if !self.scratch.ends_with(b"\n") {
                    self.scratch.push(b'\n');
                }
            }
            &self.scratch
        };
        let batch = match self.format {
            Format::Csv | Format::Tsv => {
                // Room for one more row than there are records: the CSV tokenizer ends a
                // record at the `\r` of a CRLF and takes its `\n` only when it reads on, so a
                // batch that is full at the last `\r` would leave that `\n` unread. The row
                // count is checked below.
                let mut b = arrow::csv::ReaderBuilder::new(self.schema.clone())
                    .with_header(false)
                    .with_delimiter(self.delimiter)
                    .with_batch_size(recs.len() + 1);
                if regex {
                    b = b.with_null_regex(self.null_regex.clone());
                }
                let mut d = b.build_decoder();
                feed(bytes, |b| d.decode(b))?;
                match (d.flush()?, &self.null_words) {
                    (Some(batch), Some(words)) if !regex => Some(words.apply(batch)?),
                    (batch, _) => batch,
                }
            }
            Format::Json => {
                let mut d = arrow::json::ReaderBuilder::new(self.schema.clone())
                    .with_batch_size(recs.len())
                    .with_coerce_primitive(true)
                    .with_strict_mode(self.strict)
                    .build_decoder()?;
                feed(bytes, |b| d.decode(b))?;
                d.flush()?
            }
        };
        let batch = batch.unwrap_or_else(|| RecordBatch::new_empty(self.schema.clone()));
        if batch.num_rows() != recs.len() {
            return Err(ArrowError::ParseError(format!(
                "{} records decoded into {} rows",
                recs.len(),
                batch.num_rows()
            )));
        }
        Ok(batch)
    }

    /// Decodes a batch of `recs` as [`Decoding::isolate`] does; CSV whose null words cannot
    /// be read as values is first decoded without the null regex (most of the decoding
    /// time), and only a batch that fails that way is decoded again with it.
    pub(super) fn decode_batch(
        &mut self,
        buf: &[u8],
        recs: &[Rec],
        good: &mut Vec<(RecordBatch, std::ops::Range<usize>)>,
        bad: &mut Vec<(usize, String)>,
    ) {
        if let Some(words) = self.null_words.clone()
            && !recs.is_empty()
            && words.worth_trying()
        {
            match self.decode_with(buf, recs, false) {
                Ok(batch) => {
                    good.push((batch, 0..recs.len()));
                    return;
                }
                Err(_) => words.failed(),
            }
        }
        self.isolate(buf, recs, 0, good, bad);
    }

    /// Decodes `recs`, splitting in halves around records that fail: good batches go to
    /// `good` (with the index range of their records, offset by `base`), failing records to
    /// `bad` with the decoder's message.
    pub(super) fn isolate(
        &mut self,
        buf: &[u8],
        recs: &[Rec],
        base: usize,
        good: &mut Vec<(RecordBatch, std::ops::Range<usize>)>,
        bad: &mut Vec<(usize, String)>,
    ) {
        if recs.is_empty() {
            return;
        }
        match self.decode(buf, recs) {
            Ok(b) => good.push((b, base..base + recs.len())),
            Err(e) if recs.len() == 1 => bad.push((base, e.to_string())),
            Err(_) => {
                let mid = recs.len() / 2;
                self.isolate(buf, &recs[..mid], base, good, bad);
                self.isolate(buf, &recs[mid..], base + mid, good, bad);
            }
        }
    }

    /// Builds the output columns from a decoded batch, parsing dates and timestamps (those
    /// still text: the plain decoder parses its own). Returns the values that did not parse
    /// as (row, column, value).
    pub(super) fn to_output(
        &self,
        plan: &Plan,
        schema: &SchemaRef,
        batch: &RecordBatch,
    ) -> (RecordBatch, Vec<(usize, usize, String)>) {
        let decoding = self;
        let n = batch.num_rows();
        let mut failures = Vec::new();
        let mut arrays: Vec<ArrayRef> = Vec::with_capacity(plan.columns.len());
        for (ci, c) in plan.columns.iter().enumerate() {
            if !c.written {
                continue;
            }
            let Some(di) = decoding.map[ci] else {
                arrays.push(new_null_array(&c.data_type, n));
                continue;
            };
            let col = batch.column(di);
            if !c.fixed
                && let Some(f) = col.as_any().downcast_ref::<arrow::array::Float64Array>()
            {
                // Inference never reads `inf`/`NaN` as a number: a non-finite value here is
                // a number out of range (`1e400`), which must not become infinity.
                for (row, v) in f.iter().enumerate() {
                    if let Some(v) = v.filter(|v| !v.is_finite()) {
                        failures.push((row, ci, v.to_string()));
                    }
                }
            }
            let (Some(kind), Some(text)) =
                (c.temporal(), col.as_any().downcast_ref::<StringArray>())
            else {
                arrays.push(col.clone());
                continue;
            };
            let formats = &plan.formats;
            let mut bad = |row: usize, v: &str| failures.push((row, ci, v.to_owned()));
            let array: ArrayRef = if kind == ColType::Date {
                Arc::new(Date32Array::from_iter(text.iter().enumerate().map(
                    |(row, v)| {
                        let v = v?;
                        let d = crate::types::parse_date(v, formats);
                        if d.is_none() {
                            bad(row, v);
                        }
                        d
                    },
                )))
            } else {
                let values = TimestampMicrosecondArray::from_iter(text.iter().enumerate().map(
                    |(row, v)| {
                        let v = v?;
                        let t = crate::types::parse_timestamp(v, formats).map(|t| t.0);
                        if t.is_none() {
                            bad(row, v);
                        }
                        t
                    },
                ));
                match kind {
                    ColType::TimestampTz => Arc::new(values.with_timezone("UTC")),
                    _ => Arc::new(values),
                }
            };
            arrays.push(array);
        }
        let out = RecordBatch::try_new(schema.clone(), arrays)
            .unwrap_or_else(|_| RecordBatch::new_empty(schema.clone()));
        (out, failures)
    }
}

/// The `NULL_VALUES` words, for decoding CSV without running the null regex over every
/// field. Without it only an empty field is null; a word in a typed column then fails to
/// parse (and the batch is decoded again with the regex), and a word in a text column is
/// found here and made null. That equals the regex only when no word reads as a value of a
/// typed column: words with a digit, numbers (`NaN`, `inf`) and booleans keep the regex.
#[derive(Debug)]
pub(super) struct NullWords {
    words: Vec<String>,
    longest: usize,
    /// Batches of this object that failed without the regex: past a few, the data has
    /// null words in typed columns, and every batch goes straight to the regex.
    failures: std::sync::atomic::AtomicU32,
}

impl NullWords {
    /// The words, when they can be told apart from values this way.
    pub(super) fn new(words: &[String]) -> Option<NullWords> {
        const BOOLEANS: [&str; 12] = [
            "true", "false", "t", "f", "yes", "no", "y", "n", "on", "off", "1", "0",
        ];
        let value_like = |w: &str| {
            w.bytes().any(|b| b.is_ascii_digit())
                || w.parse::<f64>().is_ok()
                || BOOLEANS.contains(&w.to_ascii_lowercase().as_str())
        };
        let words: Vec<String> = words.iter().filter(|w| !w.is_empty()).cloned().collect();
        if words.iter().any(|w| value_like(w)) {
            return None;
        }
        Some(NullWords {
            longest: words.iter().map(String::len).max().unwrap_or(0),
            words,
            failures: std::sync::atomic::AtomicU32::new(0),
        })
    }

    fn worth_trying(&self) -> bool {
        self.failures.load(std::sync::atomic::Ordering::Relaxed) < 4
    }

    fn failed(&self) {
        self.failures
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// The batch with every null word in its text columns made null.
    fn apply(&self, batch: RecordBatch) -> Result<RecordBatch, ArrowError> {
        if self.words.is_empty() {
            return Ok(batch);
        }
        let mut columns = batch.columns().to_vec();
        let mut changed = false;
        for column in &mut columns {
            let Some(text) = column.as_any().downcast_ref::<StringArray>() else {
                continue;
            };
            let is_word = |v: &str| v.len() <= self.longest && self.words.iter().any(|w| w == v);
            if !text.iter().flatten().any(is_word) {
                continue;
            }
            let mask: arrow::array::BooleanArray =
                text.iter().map(|v| Some(v.is_some_and(is_word))).collect();
            *column = arrow::compute::nullif(text, &mask)?;
            changed = true;
        }
        if !changed {
            return Ok(batch);
        }
        RecordBatch::try_new(batch.schema(), columns)
    }
}

/// Copies JSON records with the nested values of `text` fields turned into JSON strings.
/// A record that does not parse is copied as it is (the decoder then reports it).
pub(super) fn rewrite_json(buf: &[u8], recs: &[Rec], text: &[&str], out: &mut (Vec<u8>, Vec<Rec>)) {
    use serde_json::value::RawValue;
    let (bytes, new_recs) = out;
    for r in recs {
        let raw = &buf[r.start..r.end];
        let start = bytes.len();
        match serde_json::from_slice::<std::collections::BTreeMap<String, &RawValue>>(
            raw.trim_ascii(),
        ) {
            Ok(fields) => {
                bytes.push(b'{');
                for (n, (k, v)) in fields.iter().enumerate() {
                    if n > 0 {
                        bytes.push(b',');
                    }
                    let _ = serde_json::to_writer(&mut *bytes, k);
                    bytes.push(b':');
                    let v = v.get();
                    if v.starts_with(['{', '[']) && text.contains(&k.as_str()) {
                        let _ = serde_json::to_writer(&mut *bytes, v);
                    } else {
                        bytes.extend_from_slice(v.as_bytes());
                    }
                }
                bytes.extend_from_slice(b"}\n");
            }
            Err(_) => bytes.extend_from_slice(raw),
        }
        new_recs.push(Rec {
            start,
            end: bytes.len(),
            line: r.line,
        });
    }
}

/// Feeds all of `bytes` to a push decoder, then signals the end of input.
pub(super) fn feed(
    bytes: &[u8],
    mut decode: impl FnMut(&[u8]) -> Result<usize, ArrowError>,
) -> Result<(), ArrowError> {
    let mut off = 0;
    while off < bytes.len() {
        let n = decode(&bytes[off..])?;
        if n == 0 {
            return Err(ArrowError::ParseError(
                "more rows than records in a batch".into(),
            ));
        }
        off += n;
    }
    decode(&[])?;
    Ok(())
}

/// Drops arrow's `Row data: '...'` suffix: a message may name a value, never a whole row.
pub(super) fn scrub(message: &str) -> String {
    match message.find(". Row data: ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

/// Whether column `col` of the plan reads this record's value with its type.
pub(super) fn fits(plan: &Plan, buf: &[u8], rec: &Rec, col: usize) -> bool {
    Decoding::new(plan, Types::Only(col, false))
        .and_then(|mut d| d.decode(buf, std::slice::from_ref(rec)))
        .is_ok()
}

/// The text of column `col` of the plan in one record.
pub(super) fn value_as_text(plan: &Plan, buf: &[u8], rec: &Rec, col: usize) -> Option<String> {
    let mut text = Decoding::new(plan, Types::Only(col, true)).ok()?;
    let batch = text.decode(buf, std::slice::from_ref(rec)).ok()?;
    let dc = text.map[col]?;
    let a = batch.column(dc).as_any().downcast_ref::<StringArray>()?;
    a.is_valid(0).then(|| a.value(0).to_owned())
}

/// An optionally signed run of digits.
pub(super) fn is_integer(v: &str) -> bool {
    let digits = v.strip_prefix(['-', '+']).unwrap_or(v);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

/// An arrow error as ours: its message scrubbed of row content, the error kept as the source.
pub(super) fn arrow_err(e: ArrowError) -> Error {
    Error::decode("a record batch", e, scrub)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_decoder_message_never_carries_the_row() {
        let csv = "Parser error: Error while parsing value '1.5' as type 'Int64' for column 1 at line 50001. Row data: '[secret,1.5]'";
        assert!(!scrub(csv).contains("secret"));
        assert!(scrub(csv).contains("'1.5'"));
    }

    #[test]
    fn null_words_that_read_as_values_keep_the_regex() {
        let words =
            |w: &[&str]| NullWords::new(&w.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert!(words(&["NULL", "null", "NA", "N/A", ""]).is_some());
        for value_like in ["-1", "0", "NaN", "inf", "true", "F", "yes", "n/a1"] {
            assert!(words(&["NA", value_like]).is_none(), "{value_like}");
        }
    }

    #[test]
    fn csv_decoded_without_the_regex_equals_csv_decoded_with_it() {
        use crate::config::Config;
        let cfg = Config::from_env(&tributary::Env::from_pairs(Vec::<(String, String)>::new()))
            .expect("config");
        let text = "1,NA,1.5\n2,a,NULL\n,null,\n4,N/A,2\n5,NAN,3\n";
        let plan =
            Plan::infer(&cfg, "t", Format::Csv, format!("n,s,x\n{text}").as_bytes()).expect("plan");
        let types: Vec<_> = plan.columns.iter().map(|c| c.data_type.clone()).collect();
        assert_eq!(types, [DataType::Int64, DataType::Utf8, DataType::Float64]);
        let (buf, recs) = records(text);
        let mut d = Decoding::new(&plan, Types::Plan).expect("decoding");
        assert!(d.null_words.is_some());
        let with_regex = d.decode(&buf, &recs).expect("regex");
        let (mut good, mut bad) = (Vec::new(), Vec::new());
        d.decode_batch(&buf, &recs, &mut good, &mut bad);
        assert!(bad.is_empty());
        assert_eq!(good.len(), 1);
        assert_eq!(good[0].0, with_regex);
        let s = with_regex
            .column(1)
            .as_any()
            .downcast_ref::<StringArray>()
            .expect("text");
        assert_eq!(
            s.iter().collect::<Vec<_>>(),
            [None, Some("a"), None, None, Some("NAN")]
        );
        assert_eq!(with_regex.column(2).null_count(), 2);
        // A null word in a typed column: decoded again with the regex, the same batch.
        let (buf, recs) = records("NA,x,1\n7,NA,N/A\n");
        let with_regex = d.decode(&buf, &recs).expect("regex");
        let (mut good, mut bad) = (Vec::new(), Vec::new());
        d.decode_batch(&buf, &recs, &mut good, &mut bad);
        assert!(bad.is_empty());
        assert_eq!(good[0].0, with_regex);
        assert_eq!(with_regex.column(0).null_count(), 1);
    }

    #[test]
    fn dates_and_timestamps_parsed_while_decoding_equal_those_parsed_from_text() {
        use crate::config::Config;
        use arrow::datatypes::TimeUnit;
        let cfg = Config::from_env(&tributary::Env::from_pairs(Vec::<(String, String)>::new()))
            .expect("config");
        let text = "1,2024-03-07 10:00:00,2024-03-07T10:00:00Z,2024-03-07\n\
            2,,2024-03-07T10:00:00.123456+02:00,\n\
            3,2024-03-08 00:00:01.5,2024-03-08T00:00:00Z,2024-02-29\n";
        let plan = Plan::infer(
            &cfg,
            "t",
            Format::Csv,
            format!("n,t,tz,d\n{text}").as_bytes(),
        )
        .expect("plan");
        let types: Vec<_> = plan.columns.iter().map(|c| c.data_type.clone()).collect();
        assert_eq!(
            types,
            [
                DataType::Int64,
                DataType::Timestamp(TimeUnit::Microsecond, None),
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                DataType::Date32
            ]
        );
        let schema = plan.output_schema();
        let mut d = Decoding::new(&plan, Types::Plan).expect("decoding");
        // The general decoder (with the regex) gives text; the batch path parses as it reads.
        let output = |d: &mut Decoding, text: &str| {
            let (buf, recs) = records(text);
            let general = d.decode(&buf, &recs).expect("general");
            assert!(general.column(1).as_any().is::<StringArray>());
            let (mut good, mut bad) = (Vec::new(), Vec::new());
            d.decode_batch(&buf, &recs, &mut good, &mut bad);
            assert!(bad.is_empty());
            assert_eq!(good.len(), 1);
            (
                d.to_output(&plan, &schema, &general),
                d.to_output(&plan, &schema, &good[0].0),
                good,
            )
        };
        let (general, batch, good) = output(&mut d, text);
        assert!(
            !good[0].0.column(1).as_any().is::<StringArray>(),
            "parsed while decoding"
        );
        assert_eq!(batch, general);
        assert!(batch.1.is_empty());
        assert_eq!(batch.0.column(3).null_count(), 1);
        // A timestamp that does not parse: read as text, the value reported as before.
        let (general, batch, good) = output(&mut d, "4,2024-13-45 10:00:00,,\n5,,,2024-01-01\n");
        assert!(good[0].0.column(1).as_any().is::<StringArray>());
        assert_eq!(batch, general);
        assert_eq!(batch.1, [(0, 1, "2024-13-45 10:00:00".to_owned())]);
    }

    /// `text` cut into one record per line.
    fn records(text: &str) -> (Vec<u8>, Vec<Rec>) {
        let mut recs = Vec::new();
        let mut start = 0;
        for (line, l) in text.split_inclusive('\n').enumerate() {
            recs.push(Rec {
                start,
                end: start + l.len(),
                line: line as u64 + 1,
            });
            start += l.len();
        }
        (text.as_bytes().to_vec(), recs)
    }

    #[test]
    fn integers_are_runs_of_digits() {
        assert!(is_integer("18446744073709551615") && is_integer("-1") && is_integer("+7"));
        assert!(!is_integer("") && !is_integer("-") && !is_integer("1.5") && !is_integer("1e3"));
    }
}
