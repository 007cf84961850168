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

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanBuilder, Float64Builder, Int64Builder, RecordBatch, StringBuilder,
};
use arrow::compute::kernels::cast_utils::Parser;
use arrow::datatypes::{DataType, Float64Type, Int64Type, SchemaRef};

use crate::records::Rec;

/// One output column being built.
enum Builder {
    Text(StringBuilder),
    Int(Int64Builder),
    Float(Float64Builder),
    Bool(BooleanBuilder),
}

impl Builder {
    fn new(data_type: &DataType, rows: usize) -> Option<Builder> {
        Some(match data_type {
            DataType::Utf8 => Builder::Text(StringBuilder::with_capacity(rows, rows * 8)),
            DataType::Int64 => Builder::Int(Int64Builder::with_capacity(rows)),
            DataType::Float64 => Builder::Float(Float64Builder::with_capacity(rows)),
            DataType::Boolean => Builder::Bool(BooleanBuilder::with_capacity(rows)),
            _ => return None,
        })
    }

    /// Appends one field's value; `None` when it does not parse as the column's type.
    #[inline]
    fn push(&mut self, v: &str) -> Option<()> {
        if v.is_empty() {
            match self {
                Builder::Text(b) => b.append_null(),
                Builder::Int(b) => b.append_null(),
                Builder::Float(b) => b.append_null(),
                Builder::Bool(b) => b.append_null(),
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
        }
        Some(())
    }

    fn finish(self) -> ArrayRef {
        match self {
            Builder::Text(mut b) => Arc::new(b.finish()),
            Builder::Int(mut b) => Arc::new(b.finish()),
            Builder::Float(mut b) => Arc::new(b.finish()),
            Builder::Bool(mut b) => Arc::new(b.finish()),
        }
    }
}

/// Decodes `recs` (all from `buf`, one CSV record each, without a header) into a batch of
/// `schema`, or `None` where the general decoder must read them (see the module's text).
pub(super) fn decode(
    buf: &[u8],
    recs: &[Rec],
    delimiter: u8,
    schema: &SchemaRef,
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
    for r in recs {
        let mut line = buf.get(r.start..r.end)?;
        line = line.strip_suffix(b"\n").unwrap_or(line);
        line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() || memchr::memchr3(b'"', b'\r', b'\n', line).is_some() {
            return None;
        }
        let line = simdutf8::basic::from_utf8(line).ok()?;
        let bytes = line.as_bytes();
        let mut start = 0;
        for (i, column) in columns.iter_mut().enumerate() {
            let end = if i == last {
                if memchr::memchr(delimiter, &bytes[start..]).is_some() {
                    return None;
                }
                bytes.len()
            } else {
                start + memchr::memchr(delimiter, &bytes[start..])?
            };
            // `start` and `end` sit next to an ASCII delimiter or at the ends: char bounds.
            column.push(line.get(start..end)?)?;
            start = end + 1;
        }
    }
    let arrays = columns.into_iter().map(Builder::finish).collect();
    RecordBatch::try_new(schema.clone(), arrays).ok()
}

/// An `Int64` as the general decoder reads it: plain runs of up to 18 digits here, every
/// other shape by its parser.
#[inline]
fn parse_int(v: &str) -> Option<i64> {
    let (negative, digits) = match v.as_bytes() {
        [b'-', rest @ ..] => (true, rest),
        rest => (false, rest),
    };
    if digits.is_empty() || digits.len() > 18 || !digits.iter().all(u8::is_ascii_digit) {
        return Int64Type::parse(v);
    }
    let n = digits
        .iter()
        .fold(0i64, |n, d| n * 10 + i64::from(d - b'0'));
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
    let simple = !int.is_empty()
        && int.len() + frac.len() <= 15
        && int.iter().chain(frac).all(u8::is_ascii_digit);
    if !simple {
        return Float64Type::parse(v);
    }
    // At most 15 digits: below 10^15 < 2^53.
    let mantissa = int
        .iter()
        .chain(frac)
        .fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
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
        let ours = decode(text, &recs, b',', &schema()).expect("plain records");
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
            assert!(decode(declined, &records(declined), b',', &schema()).is_none());
        }
    }

    /// Values that make a record something else: quotes, a bare `\r`, more fields.
    const HOSTILE: &str = "(\"x\"|a\"b|x\\ry|1,2|NaN|inf| 5|\\+5|\\.5|5\\.)";

    proptest! {
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
            let ours = decode(&text, &recs, b',', &schema());
            let theirs = general(&text, recs.len(), &schema());
            if let Some(ours) = ours {
                prop_assert_eq!(Some(ours), theirs);
            } else if !text.iter().any(|b| matches!(b, b'"' | b'\r')) {
                // Without quotes or `\r`, only what the general decoder refuses is declined.
                prop_assert!(theirs.is_none());
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
