//! Typed configuration from environment variables.
//!
//! Functions read their configuration once, at cold start, through an [`Env`]: a snapshot of
//! the variables that tests can build from pairs instead of mutating the process environment.
//! Every parse error is an [`Error::Config`] naming the variable, the bad value and what would
//! have been accepted, so a misconfigured function fails its init with a message that says
//! exactly what to fix.

use std::collections::HashMap;
use std::fmt::Display;
use std::str::FromStr;

use crate::error::{Error, Result};

/// A snapshot of environment variables.
#[derive(Debug, Clone, Default)]
pub struct Env {
    vars: HashMap<String, String>,
}

impl Env {
    /// Snapshot of the process environment (variables that are not UTF-8 are ignored).
    pub fn from_process() -> Self {
        Env {
            vars: std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
                .collect(),
        }
    }

    /// An environment made of the given pairs only (for tests and tools).
    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        Env {
            vars: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }

    /// Returns a copy with `name` set to `value`.
    pub fn with(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.vars.insert(name.into(), value.into());
        self
    }

    /// The raw value, `None` when unset or empty (an empty variable counts as unset, which is
    /// what SAM parameters with an empty default produce).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .get(name)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
    }

    /// A string with a default.
    pub fn string_or(&self, name: &str, default: &str) -> String {
        self.get(name).unwrap_or(default).to_owned()
    }

    /// An optional value parsed with `FromStr`; `expected` describes accepted values.
    pub fn parse<T>(&self, name: &str, expected: &str) -> Result<Option<T>>
    where
        T: FromStr,
        T::Err: Display,
    {
        match self.get(name) {
            None => Ok(None),
            Some(raw) => raw
                .parse::<T>()
                .map(Some)
                .map_err(|e| Error::config(name, raw, e.to_string(), expected)),
        }
    }

    /// A value parsed with `FromStr`, or `default` when unset.
    pub fn parse_or<T>(&self, name: &str, default: T, expected: &str) -> Result<T>
    where
        T: FromStr,
        T::Err: Display,
    {
        Ok(self.parse(name, expected)?.unwrap_or(default))
    }

    /// An integer within `range` (inclusive), or `default` when unset.
    pub fn int_in<T>(&self, name: &str, default: T, min: T, max: T) -> Result<T>
    where
        T: FromStr + PartialOrd + Display + Copy,
        T::Err: Display,
    {
        let expected = format!("an integer from {min} to {max}");
        let value = self.parse_or(name, default, &expected)?;
        if value < min || value > max {
            return Err(Error::config(
                name,
                value.to_string(),
                "out of range",
                expected,
            ));
        }
        Ok(value)
    }

    /// A boolean: `true/false`, `1/0`, `yes/no`, `on/off` (any case), or `default` when unset.
    pub fn bool_or(&self, name: &str, default: bool) -> Result<bool> {
        match self.get(name) {
            None => Ok(default),
            Some(raw) => parse_bool(raw).ok_or_else(|| {
                Error::config(
                    name,
                    raw,
                    "not a boolean",
                    "true, false, 1, 0, yes, no, on, off",
                )
            }),
        }
    }

    /// A comma-separated list, items trimmed, empty items dropped; empty when unset.
    pub fn list(&self, name: &str) -> Vec<String> {
        self.get(name)
            .map(|raw| {
                raw.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A config choice (an enum whose `FromStr` fails with [`UnknownChoice`]), or `default`
    /// when unset; a bad word is an error naming the variable, the value and every accepted
    /// word.
    pub fn choice_or<T>(&self, name: &str, default: T) -> Result<T>
    where
        T: FromStr<Err = UnknownChoice>,
    {
        match self.get(name) {
            None => Ok(default),
            Some(raw) => raw
                .parse::<T>()
                .map_err(|e| Error::config(name, raw, "unknown value", e.accepted.join(", "))),
        }
    }

    /// A comma-separated list whose items parse with `FromStr` (empty when unset); a bad item
    /// is an error naming the variable, the item, why, and `expected`.
    pub fn parse_list<T>(&self, name: &str, expected: &str) -> Result<Vec<T>>
    where
        T: FromStr,
        T::Err: Display,
    {
        self.list(name)
            .into_iter()
            .map(|item| {
                item.parse::<T>()
                    .map_err(|e| Error::config(name, &item, e.to_string(), expected))
            })
            .collect()
    }
}

/// The error of a config choice's `FromStr`: a word that is none of the accepted ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownChoice {
    /// The word given.
    pub value: String,
    /// Every accepted word.
    pub accepted: &'static [&'static str],
}

impl Display for UnknownChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "unknown value {:?} (accepted: {})",
            self.value,
            self.accepted.join(", ")
        )
    }
}

impl std::error::Error for UnknownChoice {}

/// The `FromStr` of a config choice: the value of the word in `choices` equal to `raw`,
/// compared case-insensitively (several words may name one value). `accepted` lists the
/// words an error names (usually every word of `choices`).
pub fn choice<T: Copy>(
    raw: &str,
    choices: &[(&str, T)],
    accepted: &'static [&'static str],
) -> std::result::Result<T, UnknownChoice> {
    let raw = raw.trim();
    choices
        .iter()
        .find(|(word, _)| word.eq_ignore_ascii_case(raw))
        .map(|(_, value)| *value)
        .ok_or_else(|| UnknownChoice {
            value: raw.to_owned(),
            accepted,
        })
}

/// Parses the usual spellings of a boolean.
pub fn parse_bool(raw: &str) -> Option<bool> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unset_and_empty_values_take_the_default() {
        let env = Env::from_pairs([("EMPTY", "  ")]);
        assert_eq!(env.int_in("EMPTY", 8u64, 5, 10).ok(), Some(8));
        assert_eq!(env.int_in("MISSING", 8u64, 5, 10).ok(), Some(8));
    }

    #[test]
    fn bad_integer_names_variable_value_and_range() {
        let env = Env::from_pairs([("PART_SIZE_MIB", "12x"), ("CONCURRENCY", "99")]);
        let err = env
            .int_in("PART_SIZE_MIB", 8u64, 5, 5120)
            .expect_err("12x is not an integer")
            .to_string();
        assert!(err.contains("PART_SIZE_MIB=\"12x\""), "{err}");
        assert!(err.contains("from 5 to 5120"), "{err}");
        let err = env
            .int_in("CONCURRENCY", 4usize, 1, 64)
            .expect_err("99 is out of range")
            .to_string();
        assert!(err.contains("CONCURRENCY=\"99\": out of range"), "{err}");
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Codec {
        Zstd,
        Snappy,
    }

    impl FromStr for Codec {
        type Err = UnknownChoice;
        fn from_str(s: &str) -> std::result::Result<Codec, UnknownChoice> {
            choice(
                s,
                &[("zstd", Codec::Zstd), ("snappy", Codec::Snappy)],
                &["zstd", "snappy"],
            )
        }
    }

    #[test]
    fn choices_and_lists_parse_through_from_str() {
        let env = Env::from_pairs([("M", "ZSTD"), ("N", "brotli"), ("L", "1, 2,x")]);
        assert_eq!(env.choice_or("M", Codec::Snappy).ok(), Some(Codec::Zstd));
        assert_eq!(env.choice_or("Z", Codec::Snappy).ok(), Some(Codec::Snappy));
        let err = env
            .choice_or("N", Codec::Zstd)
            .expect_err("invalid")
            .to_string();
        assert!(
            err.contains("N=\"brotli\": unknown value (accepted: zstd, snappy)"),
            "{err}"
        );
        let e = "brotli".parse::<Codec>().expect_err("invalid").to_string();
        assert_eq!(e, "unknown value \"brotli\" (accepted: zstd, snappy)");
        let err = env
            .parse_list::<u8>("L", "small integers")
            .expect_err("x")
            .to_string();
        assert!(
            err.contains("L=\"x\"") && err.contains("small integers"),
            "{err}"
        );
        assert_eq!(env.parse_list::<u8>("NONE", "").ok(), Some(vec![]));
    }

    #[test]
    fn booleans_and_lists() {
        let env = Env::from_pairs([
            ("A", "TRUE"),
            ("B", "off"),
            ("C", "maybe"),
            ("L", " a, ,b ,"),
        ]);
        assert!(env.bool_or("A", false).expect("valid"));
        assert!(!env.bool_or("B", true).expect("valid"));
        assert!(env.bool_or("Z", true).expect("default"));
        let err = env.bool_or("C", false).expect_err("invalid").to_string();
        assert!(
            err.contains("C=\"maybe\"") && err.contains("yes, no"),
            "{err}"
        );
        assert_eq!(env.list("L"), vec!["a", "b"]);
        assert!(env.list("NONE").is_empty());
    }
}
