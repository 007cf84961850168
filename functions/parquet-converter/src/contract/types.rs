//! Athena's column types and the Arrow types the converter writes for them: one mapping, both
//! ways, so a table the converter creates declares exactly what its files hold, and a file
//! written under an existing table holds what Athena reads for each declared type.
//!
//! | Athena | written as (Arrow -> Parquet) |
//! |---|---|
//! | `tinyint`, `smallint`, `int`, `bigint` | `Int8`, `Int16`, `Int32`, `Int64` |
//! | `float`, `double` | `Float32`, `Float64` |
//! | `boolean` | `Boolean` |
//! | `string`, `varchar(n)`, `char(n)` | `Utf8` |
//! | `date` | `Date32` |
//! | `timestamp` | `Timestamp(µs)` without a zone, the UTC instant's wall time |
//! | `decimal(p,s)` | `Decimal128(p, s)` |
//! | `array<t>`, `struct<a:t,…>` | `List`, `Struct` of the mapped types |

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Fields, TimeUnit};

/// The Athena type of an Arrow type as the converter writes it (`Null`, a column with no
/// value, is `string`).
pub fn athena_type(dt: &DataType) -> Result<String, String> {
    Ok(match dt {
        DataType::Int8 => "tinyint".into(),
        DataType::Int16 => "smallint".into(),
        DataType::Int32 => "int".into(),
        DataType::Int64 => "bigint".into(),
        DataType::Float32 => "float".into(),
        DataType::Float64 => "double".into(),
        DataType::Boolean => "boolean".into(),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Null => "string".into(),
        DataType::Date32 => "date".into(),
        DataType::Timestamp(_, _) => "timestamp".into(),
        DataType::Decimal128(p, s) => format!("decimal({p},{s})"),
        DataType::List(f) | DataType::LargeList(f) => {
            format!("array<{}>", athena_type(f.data_type())?)
        }
        DataType::Struct(fields) => {
            let inner: Result<Vec<String>, String> = fields
                .iter()
                .map(|f| Ok(format!("{}:{}", f.name(), athena_type(f.data_type())?)))
                .collect();
            format!("struct<{}>", inner?.join(","))
        }
        other => return Err(format!("no Athena type for {other}")),
    })
}

/// The Arrow type written for an Athena type, e.g. `bigint`, `decimal(10,2)`,
/// `array<struct<a:int,b:string>>`. Case and spaces do not matter.
pub fn arrow_type(athena: &str) -> Result<DataType, String> {
    let text: String = athena
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_ascii_lowercase();
    let mut p = Parser { s: &text, at: 0 };
    let dt = p.ty()?;
    if p.at != text.len() {
        return Err(format!(
            "unexpected {:?} in Athena type {athena:?}",
            &text[p.at..]
        ));
    }
    Ok(dt)
}

/// The type a value must have under this table column type: the written type for temporal
/// and nested columns, so two spellings of one type compare equal.
pub fn same_type(a: &DataType, b: &DataType) -> bool {
    match (athena_type(a), athena_type(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}

struct Parser<'a> {
    s: &'a str,
    at: usize,
}

impl Parser<'_> {
    fn rest(&self) -> &str {
        &self.s[self.at..]
    }

    fn eat(&mut self, token: &str) -> bool {
        if self.rest().starts_with(token) {
            self.at += token.len();
            true
        } else {
            false
        }
    }

    fn expect(&mut self, token: &str) -> Result<(), String> {
        if self.eat(token) {
            Ok(())
        } else {
            Err(format!("expected {token:?} at {:?}", self.rest()))
        }
    }

    fn word(&mut self) -> &str {
        let start = self.at;
        let len = self
            .rest()
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(self.rest().len());
        self.at += len;
        &self.s[start..start + len]
    }

    fn number(&mut self) -> Result<u32, String> {
        let w = self.word().to_owned();
        w.parse()
            .map_err(|_| format!("expected a number, found {w:?}"))
    }

    fn ty(&mut self) -> Result<DataType, String> {
        let name = self.word().to_owned();
        Ok(match name.as_str() {
            "tinyint" => DataType::Int8,
            "smallint" => DataType::Int16,
            "int" | "integer" => DataType::Int32,
            "bigint" => DataType::Int64,
            "float" | "real" => DataType::Float32,
            "double" => DataType::Float64,
            "boolean" => DataType::Boolean,
            "string" => DataType::Utf8,
            "varchar" | "char" => {
                if self.eat("(") {
                    self.number()?;
                    self.expect(")")?;
                }
                DataType::Utf8
            }
            "date" => DataType::Date32,
            "timestamp" => DataType::Timestamp(TimeUnit::Microsecond, None),
            "decimal" => {
                let (p, s) = if self.eat("(") {
                    let p = self.number()?;
                    self.expect(",")?;
                    let s = self.number()?;
                    self.expect(")")?;
                    (p, s)
                } else {
                    (10, 0)
                };
                if !(1..=38).contains(&p) || s > p {
                    return Err(format!("decimal({p},{s}) is outside 1 <= s <= p <= 38"));
                }
                DataType::Decimal128(p as u8, s as i8)
            }
            "array" => {
                self.expect("<")?;
                let inner = self.ty()?;
                self.expect(">")?;
                DataType::List(Arc::new(Field::new("item", inner, true)))
            }
            "struct" => {
                self.expect("<")?;
                let mut fields = Vec::new();
                loop {
                    let name = self.word().to_owned();
                    if name.is_empty() {
                        return Err(format!("expected a field name at {:?}", self.rest()));
                    }
                    self.expect(":")?;
                    fields.push(Field::new(name, self.ty()?, true));
                    if !self.eat(",") {
                        break;
                    }
                }
                self.expect(">")?;
                DataType::Struct(Fields::from(fields))
            }
            "" => return Err(format!("expected a type at {:?}", self.rest())),
            other => return Err(format!("the converter cannot write Athena type {other:?}")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_written_type_maps_back_to_itself() {
        for text in [
            "tinyint",
            "smallint",
            "int",
            "bigint",
            "float",
            "double",
            "boolean",
            "string",
            "date",
            "timestamp",
            "decimal(12,2)",
            "array<bigint>",
            "struct<a:bigint,b:array<string>,c:struct<d:double>>",
        ] {
            let dt = arrow_type(text).expect(text);
            assert_eq!(athena_type(&dt).expect(text), text);
        }
    }

    #[test]
    fn spellings_athena_accepts_are_read() {
        assert_eq!(arrow_type("INTEGER"), Ok(DataType::Int32));
        assert_eq!(arrow_type("varchar(20)"), Ok(DataType::Utf8));
        assert_eq!(arrow_type("decimal"), Ok(DataType::Decimal128(10, 0)));
        assert_eq!(
            arrow_type("array< struct< A : int > >").map(|t| athena_type(&t)),
            Ok(Ok("array<struct<a:int>>".to_owned()))
        );
        assert!(same_type(
            &DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            &DataType::Timestamp(TimeUnit::Microsecond, None)
        ));
    }

    #[test]
    fn types_the_converter_cannot_write_are_named() {
        for bad in [
            "map<string,int>",
            "decimal(40,2)",
            "array<int",
            "binary",
            "",
        ] {
            let err = arrow_type(bad).expect_err(bad);
            assert!(!err.is_empty(), "{bad}");
        }
        assert!(
            arrow_type("map<string,int>")
                .expect_err("map")
                .contains("map")
        );
    }
}
