//! CSV records without quotes, decoded straight into Arrow columns.
//!
//! Most CSV has no quoted field: a record is then its fields between delimiters, and the
//! general tokenizer, its per-row string records and the per-value iterator chains are work
//! the batch does not need. [`decode`] reads such a batch field by field into column
//! builders, parsing the common number shapes itself and every other value with the very
//! parser the general decoder uses, so a batch it decodes equals the general decoder's (a
//! property test holds it to that). It declines (returns `None`) whenever it could differ:
//! a quote or a bare `\r` in a record, an empty record, invalid UTF-8, a record with another
//! number of fields, a value that does not parse, a column type it does not build. The
//! general decoder then reads the batch and reports what is wrong as before.
//!
//! Null values: only an empty field is null here, as in the general decoder without the
//! `NULL_VALUES` regex (the words are applied to text columns afterwards).
//!
//! Dates and timestamps: where the schema asks for `Date32` or microsecond timestamps, the
//! values are parsed here with the converter's own parsers ([`crate::types::parse_date`],
//! [`crate::types::parse_timestamp`]), the ones that parse the general decoder's text later,
//! so the column is the same without the text array between. A value that does not parse
//! declines the batch: the general path then reads it as text and sets the row aside.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanBuilder, Date32Builder, Float64Builder, Int64Builder, RecordBatch,
    StringBuilder, TimestampMicrosecondBuilder,
};
use arrow::compute::kernels::cast_utils::Parser;
use arrow::datatypes::{DataType, Float64Type, Int64Type, SchemaRef, TimeUnit};

use crate::records::Rec;

/// One output column being built.
enum Builder {
    Text(StringBuilder),
    Int(Int64Builder),
    Float(Float64Builder),
    Bool(BooleanBuilder),
    Date(Date32Builder),
    /// Microseconds since the epoch (with the schema's time zone, if any).
    Time(TimestampMicrosecondBuilder),
}

impl Builder {
    fn new(data_type: &DataType, rows: usize) -> Option<Builder> {
        Some(match data_type {
            DataType::Utf8 => Builder::Text(StringBuilder::with_capacity(rows, rows * 8)),
            DataType::Int64 => Builder::Int(Int64Builder::with_capacity(rows)),
            DataType::Float64 => Builder::Float(Float64Builder::with_capacity(rows)),
            DataType::Boolean => Builder::Bool(BooleanBuilder::with_capacity(rows)),
            DataType::Date32 => Builder::Date(Date32Builder::with_capacity(rows)),
            DataType::Timestamp(TimeUnit::Microsecond, _) => Builder::Time(
                TimestampMicrosecondBuilder::with_capacity(rows).with_data_type(data_type.clone()),
            ),
            _ => return None,
        })
    }

    /// Appends one field's value; `None` when it does not parse as the column's type.
    /// `formats`: the `TIMESTAMP_FORMATS` tried after ISO 8601 for dates and timestamps.
    #[inline]
    fn push(&mut self, v: &str, formats: &[String]) -> Option<()> {
        if v.is_empty() {
            match self {
                Builder::Text(b) => b.append_null(),
                Builder::Int(b) => b.append_null(),
                Builder::Float(b) => b.append_null(),
                Builder::Bool(b) => b.append_null(),
                Builder::Date(b) => b.append_null(),
                Builder::Time(b) => b.append_null(),
            }
            return Some(());
        }
        match self {
            Builder::Text(b) => b.append_value(v),
            Builder::Int(b) => b.append_value(parse_int(v)?),
            Builder::Float(b) => b.append_value(parse_float(v)?),
            Builder::Bool(b) => b.append_value(if v.eq_ignore_ascii_case("true") {
                true
            } else if v.eq_ignore_ascii_case("false") {
                false
            } else {
                return None;
            }),
            Builder::Date(b) => b.append_value(crate::types::parse_date(v, formats)?),
            Builder::Time(b) => b.append_value(crate::types::parse_timestamp(v, formats)?.0),
        }
        Some(())
    }

    fn finish(self) -> ArrayRef {
        match self {
            Builder::Text(mut b) => Arc::new(b.finish()),
            Builder::Int(mut b) => Arc::new(b.finish()),
            Builder::Float(mut b) => Arc::new(b.finish()),
            Builder::Bool(mut b) => Arc::new(b.finish()),
            Builder::Date(mut b) => Arc::new(b.finish()),
            Builder::Time(mut b) => Arc::new(b.finish()),
        }
    }
}

/// Decodes `recs` (all from `buf`, one CSV record each, without a header) into a batch of
/// `schema`, or `None` where the general decoder must read them (see the module's text).
/// `formats`: the timestamp formats tried after ISO 8601 (dates and timestamps only).
pub(super) fn decode(
    buf: &[u8],
    recs: &[Rec],
    delimiter: u8,
    schema: &SchemaRef,
    formats: &[String],
) -> Option<RecordBatch> {
    // A delimiter outside ASCII could cut a character in two.
    if !delimiter.is_ascii() || delimiter == b'"' || delimiter == b'\r' || delimiter == b'\n' {
        return None;
    }
    let mut columns = schema
        .fields()
        .iter()
        .map(|f| Builder::new(f.data_type(), recs.len()))
        .collect::<Option<Vec<_>>>()?;
    let last = columns.len().checked_sub(1)?;
    let mut ends = Vec::with_capacity(columns.len());
    for r in recs {
        let mut line = buf.get(r.start..r.end)?;
        line = line.strip_suffix(b"\n").unwrap_or(line);
        line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() || memchr::memchr3(b'"', b'\r', b'\n', line).is_some() {
            return None;
        }
        let line = simdutf8::basic::from_utf8(line).ok()?;
        delimiters(line.as_bytes(), delimiter, &mut ends);
        if ends.len() != last {
            return None;
        }
        ends.push(line.len());
        let mut start = 0;
        for (column, &end) in columns.iter_mut().zip(&ends) {
            // `start` and `end` sit next to an ASCII delimiter or at the ends: char bounds.
            column.push(line.get(start..end)?, formats)?;
            start = end + 1;
        }
    }
    let arrays = columns.into_iter().map(Builder::finish).collect();
    RecordBatch::try_new(schema.clone(), arrays).ok()
}

/// Sets `out` to the positions of `delimiter` in `bytes`, in order: one pass over the record
/// eight bytes at a time, where a search per field would start over for every field.
fn delimiters(bytes: &[u8], delimiter: u8, out: &mut Vec<usize>) {
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    out.clear();
    let pattern = u64::from_ne_bytes([delimiter; 8]);
    let (words, tail) = bytes.as_chunks::<8>();
    let mut at = 0;
    for word in words {
        let x = u64::from_le_bytes(*word) ^ pattern;
        // 0x80 in each byte of `x` that is zero (the delimiter), 0 in every other byte: the
        // low seven bits of a byte plus 0x7f cannot carry into the next byte.
        let mut found = !(((x & LOW7) + LOW7) | x | LOW7);
        while found != 0 {
            out.push(at + (found.trailing_zeros() / 8) as usize);
            found &= found - 1;
        }
        at += 8;
    }
    out.extend((at..bytes.len()).filter(|&i| tail[i - at] == delimiter));
}

/// `digits` (ASCII) as a number, or `None` if any is not a digit. At most 19 digits.
#[inline]
fn digits_value(n: u64, digits: &[u8]) -> Option<u64> {
    digits.iter().try_fold(n, |n, d| {
        let d = d.wrapping_sub(b'0');
        (d <= 9).then_some(n * 10 + u64::from(d))
    })
}

/// An `Int64` as the general decoder reads it: plain runs of up to 18 digits here, every
/// other shape by its parser.
#[inline]
fn parse_int(v: &str) -> Option<i64> {
    let (negative, digits) = match v.as_bytes() {
        [b'-', rest @ ..] => (true, rest),
        rest => (false, rest),
    };
    if digits.is_empty() || digits.len() > 18 {
        return Int64Type::parse(v);
    }
    // At most 18 digits: below 10^18 < 2^63.
    let Some(n) = digits_value(0, digits) else {
        return Int64Type::parse(v);
    };
    let n = n as i64;
    Some(if negative { -n } else { n })
}

/// Exact powers of ten as `f64` (every one up to 10^22 is representable).
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// A `Float64` as the general decoder reads it. `-?digits[.digits]` with a mantissa below
/// 2^53 is the mantissa divided by a power of ten: both are exact doubles and the division
/// rounds once, so the result is the correctly rounded value the general parser gives.
/// Every other shape (exponents, `NaN`, long mantissas, `.5`, `5.`) goes to that parser.
#[inline]
fn parse_float(v: &str) -> Option<f64> {
    let (negative, rest) = match v.as_bytes() {
        [b'-', rest @ ..] => (true, rest),
        rest => (false, rest),
    };
    let (int, frac) = match memchr::memchr(b'.', rest) {
        Some(dot) if dot + 1 < rest.len() => (&rest[..dot], &rest[dot + 1..]),
        Some(_) => return Float64Type::parse(v),
        None => (rest, &[][..]),
    };
    if int.is_empty() || int.len() + frac.len() > 15 {
        return Float64Type::parse(v);
    }
    // At most 15 digits: below 10^15 < 2^53.
    let Some(mantissa) = digits_value(0, int).and_then(|n| digits_value(n, frac)) else {
        return Float64Type::parse(v);
    };
    let x = mantissa as f64 / POW10[frac.len()];
    Some(if negative { -x } else { x })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn number_shapes_read_as_the_general_parser_reads_them() {
        for v in [
            "0",
            "-0",
            "7",
            "-7",
            "007",
            "123456789012345678",
            "-123456789012345678",
            "1234567890123456789",
            "9223372036854775807",
            "-9223372036854775808",
            "9223372036854775808",
            "+7",
            " 7",
            "7 ",
            "1.5",
            "",
            "-",
            "1e3",
            "٣",
        ] {
            assert_eq!(parse_int(v), Int64Type::parse(v), "{v:?}");
        }
        for v in [
            "0",
            "-0",
            "0.0",
            "-0.0",
            "1.5",
            "-1.5",
            "0.1",
            "0.3",
            "12.34",
            "-73.987654",
            "40.7127281",
            "999999999999999",
            "0.000000000000001",
            "1.",
            ".5",
            "-.5",
            "1e5",
            "1E-3",
            "NaN",
            "inf",
            "-inf",
            "+1.5",
            "1..5",
            "1.5.",
            "12345678901234567",
            "0.12345678901234567",
            "1e400",
            " 1.5",
            "1.5 ",
            "",
            "-",
            ".",
            "1,5",
        ] {
            let (ours, theirs) = (parse_float(v), Float64Type::parse(v));
            assert_eq!(ours.map(f64::to_bits), theirs.map(f64::to_bits), "{v:?}");
        }
    }

    /// The general decoder over the same records, as the converter runs it without the regex.
    fn general(bytes: &[u8], rows: usize, schema: &SchemaRef) -> Option<RecordBatch> {
        let mut d = arrow::csv::ReaderBuilder::new(schema.clone())
            .with_header(false)
            .with_batch_size(rows + 1)
            .build_decoder();
        crate::convert::decode::feed(bytes, |b| d.decode(b)).ok()?;
        d.flush().ok()?.filter(|b| b.num_rows() == rows)
    }

    fn schema() -> SchemaRef {
        use arrow::datatypes::{Field, Schema};
        Arc::new(Schema::new(
            [
                DataType::Int64,
                DataType::Float64,
                DataType::Utf8,
                DataType::Boolean,
            ]
            .into_iter()
            .enumerate()
            .map(|(i, t)| Field::new(format!("c{i}"), t, true))
            .collect::<Vec<_>>(),
        ))
    }

    /// Records cut one per line, as the splitter cuts unquoted CSV.
    fn records(text: &[u8]) -> Vec<Rec> {
        let mut recs = Vec::new();
        let mut start = 0;
        for (line, l) in text.split_inclusive(|b| *b == b'\n').enumerate() {
            recs.push(Rec {
                start,
                end: start + l.len(),
                line: line as u64 + 1,
            });
            start += l.len();
        }
        recs
    }

    #[test]
    fn plain_records_decode_without_the_general_decoder() {
        let text = b"1,1.5,a,true\n-2,,,FALSE\n,0.25,b c,\r\n4,-7,d,true";
        let recs = records(text);
        let ours = decode(text, &recs, b',', &schema(), &[]).expect("plain records");
        assert_eq!(Some(ours.clone()), general(text, recs.len(), &schema()));
        assert_eq!(ours.num_rows(), 4);
        assert_eq!(ours.column(2).null_count(), 1);
        for declined in [
            &b"1,1.5,\"a\",true\n"[..],
            b"1,1.5,a\rb,true\n",
            b"1,1.5,a\n",
            b"1,1.5,a,true,x\n",
            b"x,1.5,a,true\n",
            b"1,1.5,\xff,true\n",
            b"\n",
        ] {
            assert!(decode(declined, &records(declined), b',', &schema(), &[]).is_none());
        }
    }

    fn fields(types: &[DataType]) -> SchemaRef {
        use arrow::datatypes::{Field, Schema};
        Arc::new(Schema::new(
            types
                .iter()
                .enumerate()
                .map(|(i, t)| Field::new(format!("c{i}"), t.clone(), true))
                .collect::<Vec<_>>(),
        ))
    }

    /// `TIMESTAMP_FORMATS` for the temporal tests.
    fn formats() -> Vec<String> {
        vec!["%d/%m/%Y %H:%M".to_owned(), "%d/%m/%Y".to_owned()]
    }

    /// What the converter makes of a text column afterwards: every value parsed as `to`'s
    /// type, or `None` when one does not parse.
    fn parsed_after(text: &ArrayRef, to: &DataType) -> Option<ArrayRef> {
        use arrow::array::{Array, Date32Array, StringArray, TimestampMicrosecondArray};
        let text = text.as_any().downcast_ref::<StringArray>()?;
        let f = formats();
        Some(match to {
            DataType::Date32 => Arc::new(
                text.iter()
                    .map(|v| {
                        v.map(|v| crate::types::parse_date(v, &f).ok_or(()))
                            .transpose()
                    })
                    .collect::<Result<Date32Array, ()>>()
                    .ok()?,
            ),
            _ => Arc::new(
                text.iter()
                    .map(|v| {
                        v.map(|v| crate::types::parse_timestamp(v, &f).map(|t| t.0).ok_or(()))
                            .transpose()
                    })
                    .collect::<Result<TimestampMicrosecondArray, ()>>()
                    .ok()?
                    .with_data_type(to.clone()),
            ) as ArrayRef,
        })
        .filter(|a| a.len() == text.len())
    }

    #[test]
    fn dates_and_timestamps_are_parsed_while_decoding() {
        use arrow::array::{Array, TimestampMicrosecondArray};
        let typed = fields(&[
            DataType::Timestamp(TimeUnit::Microsecond, None),
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            DataType::Date32,
        ]);
        let text = b"2024-03-07 10:00:00,2024-03-07T10:00:00.5+02:00,2024-03-07\n\
            07/03/2024 10:30,,07/03/2024\n";
        let recs = records(text);
        let ours = decode(text, &recs, b',', &typed, &formats()).expect("plain records");
        assert_eq!(ours.schema(), typed);
        let t = ours
            .column(0)
            .as_any()
            .downcast_ref::<TimestampMicrosecondArray>()
            .expect("timestamps");
        assert_eq!(t.value(0), 1_709_805_600_000_000);
        assert_eq!(t.value(1), 1_709_807_400_000_000);
        let tz = ours
            .column(1)
            .as_any()
            .downcast_ref::<TimestampMicrosecondArray>()
            .expect("timestamps");
        assert_eq!(tz.value(0), 1_709_798_400_500_000, "the offset made UTC");
        assert!(tz.is_null(1));
        for declined in [
            &b"2024-02-30 10:00:00,,2024-03-07\n"[..],
            b"2024-03-07 10:00:00,,2024-03-07 10:00:00\n",
            b"10:00,,2024-03-07\n",
            b"NA,,2024-03-07\n",
        ] {
            let recs = records(declined);
            assert!(decode(declined, &recs, b',', &typed, &formats()).is_none());
        }
    }

    /// Values that make a record something else: quotes, a bare `\r`, more fields.
    const HOSTILE: &str = "(\"x\"|a\"b|x\\ry|1,2|NaN|inf| 5|\\+5|\\.5|5\\.)";

    proptest! {
        #[test]
        fn delimiters_are_found_where_a_byte_search_finds_them(
            bytes in proptest::collection::vec(prop_oneof![4 => Just(b','), 1 => Just(b';'), 1 => Just(0xACu8), 1 => Just(0u8), 4 => any::<u8>()], 0..80),
            delimiter in prop_oneof![Just(b','), Just(b';'), Just(b'\t'), Just(0u8), Just(0x7fu8)],
        ) {
            let want: Vec<usize> = (0..bytes.len()).filter(|&i| bytes[i] == delimiter).collect();
            let mut got = vec![99];
            delimiters(&bytes, delimiter, &mut got);
            prop_assert_eq!(got, want);
        }

        #[test]
        fn a_batch_decoded_plainly_equals_the_general_decoders(
            rows in proptest::collection::vec(
                (
                    prop_oneof![4 => "-?[0-9]{1,19}", 1 => HOSTILE],
                    prop_oneof![4 => "-?[0-9]{0,17}(\\.[0-9]{0,17})?", 1 => "[0-9]\\.[0-9]{0,3}[eE]-?[0-9]{1,3}", 1 => HOSTILE],
                    prop_oneof![4 => "[a-zA-Z0-9 .é]{0,6}", 1 => HOSTILE],
                    prop_oneof![4 => "(true|false|TRUE|False|)", 1 => HOSTILE],
                ),
                1..8,
            ),
            crlf: bool,
        ) {
            let mut text = Vec::new();
            for (a, b, c, d) in &rows {
                text.extend_from_slice(format!("{a},{b},{c},{d}").as_bytes());
                text.extend_from_slice(if crlf { b"\r\n" } else { b"\n" });
            }
            let recs = records(&text);
            let ours = decode(&text, &recs, b',', &schema(), &[]);
            let theirs = general(&text, recs.len(), &schema());
            if let Some(ours) = ours {
                prop_assert_eq!(Some(ours), theirs);
            } else if !text.iter().any(|b| matches!(b, b'"' | b'\r')) {
                // Without quotes or `\r`, only what the general decoder refuses is declined.
                prop_assert!(theirs.is_none());
            }
        }

        #[test]
        fn a_batch_with_dates_and_timestamps_equals_its_text_parsed_after(
            rows in proptest::collection::vec(
                (
                    prop_oneof![
                        4 => "20[0-9]{2}-[01][0-9]-[0-3][0-9]([ T][0-2][0-9]:[0-6][0-9](:[0-6][0-9](\\.[0-9]{1,9})?)?)?(Z|[+-][01][0-9]:?[0-5][0-9])?",
                        1 => "[0-3][0-9]/[01][0-9]/20[0-9]{2}( [0-2][0-9]:[0-6][0-9])?",
                        1 => "[0-9/: TZx-]{0,12}",
                    ],
                    prop_oneof![
                        4 => "20[0-9]{2}-[01][0-9]-[0-3][0-9]",
                        1 => "[0-3][0-9]/[01][0-9]/20[0-9]{2}( [0-2][0-9]:[0-6][0-9])?",
                        1 => "[0-9/: TZx-]{0,12}",
                    ],
                    "-?[0-9]{1,5}",
                ),
                1..8,
            ),
        ) {
            let mut text = Vec::new();
            for (t, d, n) in &rows {
                text.extend_from_slice(format!("{t},{t},{d},{n}\n").as_bytes());
            }
            let recs = records(&text);
            let types = [
                DataType::Timestamp(TimeUnit::Microsecond, None),
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                DataType::Date32,
                DataType::Int64,
            ];
            let as_text = fields(&[DataType::Utf8, DataType::Utf8, DataType::Utf8, DataType::Int64]);
            let text_batch = decode(&text, &recs, b',', &as_text, &formats()).expect("as text");
            let columns: Option<Vec<ArrayRef>> = text_batch
                .columns()
                .iter()
                .zip(&types)
                .map(|(c, t)| if *t == DataType::Int64 { Some(c.clone()) } else { parsed_after(c, t) })
                .collect();
            let typed = fields(&types);
            let ours = decode(&text, &recs, b',', &typed, &formats());
            match columns {
                Some(columns) => {
                    let expected = RecordBatch::try_new(typed, columns).expect("batch");
                    prop_assert_eq!(ours, Some(expected));
                }
                // A value the converter would set aside: the general path reads the batch.
                None => prop_assert!(ours.is_none()),
            }
        }

        #[test]
        fn decimals_read_as_the_general_parser_reads_them(
            int in "-?[0-9]{1,16}", frac in proptest::option::of("[0-9]{0,16}")
        ) {
            let v = match frac {
                Some(f) => format!("{int}.{f}"),
                None => int,
            };
            prop_assert_eq!(
                parse_float(&v).map(f64::to_bits),
                Float64Type::parse(&v).map(f64::to_bits),
                "{:?}", v
            );
            prop_assert_eq!(parse_int(&v), Int64Type::parse(&v), "{:?}", v);
        }
    }
}
