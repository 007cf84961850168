//! Where outputs go: datasets and deterministic file names (partition segments are
//! [`tributary::partition`]'s).
//!
//! `{OUTPUT_PREFIX}{dataset}/{partition path}/{stem}-{digest}-{NNNN}.parquet`, where `dataset` is
//! the first path segment after `INPUT_PREFIX`, `stem` the file name without its extensions and
//! `digest` 8 hex digits of SHA-256 over bucket, key and ETag/version: the same input always
//! yields the same keys, so a redelivered event overwrites instead of duplicating. A large
//! object converted in byte ranges names each range's files `{stem}-{digest}-r{RRRR}-{NNNN}`.

use sha2::{Digest, Sha256};
use tributary::ObjectRef;

/// Longest dataset name: Glue's limit for a table name.
pub const MAX_DATASET: usize = 255;

/// A dataset name is a folder under `OUTPUT_PREFIX` and (lowercased, anything outside
/// `[a-z0-9_]` as `_`) a table name. Refused: empty (`raw//f.csv`), starting with `_` or `.`
/// (Hive, Athena and Spark treat such folders as hidden, and `_manifests` is the
/// converter's own), or longer than a table name may be.
pub fn check_dataset(dataset: &str) -> Result<(), String> {
    if dataset.is_empty() {
        return Err("an empty dataset name (two slashes after INPUT_PREFIX)".into());
    }
    if dataset.starts_with(['_', '.']) {
        return Err(format!(
            "dataset {dataset:?} starts with '_' or '.': readers treat such folders as hidden (and _manifests is the converter's own)"
        ));
    }
    if dataset.len() > MAX_DATASET {
        return Err(format!(
            "a dataset name of {} bytes (at most {MAX_DATASET}, the longest table name)",
            dataset.len()
        ));
    }
    Ok(())
}

/// The names derived from one input object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    /// First segment after the input prefix.
    pub dataset: String,
    /// File name without extensions.
    pub stem: String,
    /// 8 hex digits identifying this exact input.
    pub digest: String,
    /// `k=v` segments found between the dataset and the file name (Firehose partitions).
    pub key_partitions: Vec<String>,
    /// The byte range of the object these names are for, when it is converted in ranges.
    pub range: Option<u32>,
}

impl Names {
    /// Derives the names of `object`, whose key starts with `input_prefix`; why not, when
    /// the key names no file or no usable dataset.
    pub fn of(object: &ObjectRef, input_prefix: &str) -> Result<Names, String> {
        let rest = object
            .key
            .strip_prefix(input_prefix)
            .ok_or_else(|| format!("not under INPUT_PREFIX {input_prefix:?}"))?;
        let mut segments: Vec<&str> = rest.split('/').collect();
        let file = segments.pop().unwrap_or_default();
        if file.is_empty() {
            return Err("no file name under INPUT_PREFIX".into());
        }
        let dataset = if segments.is_empty() {
            "default".to_owned()
        } else {
            segments.remove(0).to_owned()
        };
        check_dataset(&dataset)?;
        let key_partitions = segments
            .iter()
            .filter(|s| s.split_once('=').is_some_and(|(k, _)| !k.is_empty()))
            .map(|s| (*s).to_owned())
            .collect();
        let stem = file
            .split('.')
            .next()
            .filter(|s| !s.is_empty())
            .unwrap_or(file)
            .to_owned();
        let mut h = Sha256::new();
        h.update(object.bucket.as_bytes());
        h.update([0]);
        h.update(object.key.as_bytes());
        h.update([0]);
        h.update(
            object
                .version_id
                .as_deref()
                .or(object.etag.as_deref())
                .unwrap_or("")
                .as_bytes(),
        );
        let digest = hex::encode(&h.finalize()[..4]);
        Ok(Names {
            dataset,
            stem,
            digest,
            key_partitions,
            range: None,
        })
    }

    /// The names of range `index` of the same object.
    pub fn for_range(&self, index: u32) -> Names {
        Names {
            range: Some(index),
            ..self.clone()
        }
    }

    /// `{stem}-{digest}`, and `-r{RRRR}` for a range: how this input's files begin.
    fn base(&self) -> String {
        match self.range {
            Some(r) => format!("{}-{}-r{r:04}", self.stem, self.digest),
            None => format!("{}-{}", self.stem, self.digest),
        }
    }

    /// How the file names of every range of this input begin (`{stem}-{digest}-r`).
    pub fn range_file_prefix(&self) -> String {
        format!("{}-{}-r", self.stem, self.digest)
    }

    /// Where the work of a conversion in ranges is kept until it is committed: the plan
    /// and each range's manifest (`{OUTPUT_PREFIX}_ranges/{dataset}/{stem}-{digest}/`).
    pub fn ranges_prefix(&self, output_prefix: &str) -> String {
        format!(
            "{output_prefix}_ranges/{}/{}-{}/",
            self.dataset, self.stem, self.digest
        )
    }

    /// The key of output file `n` in `partition` (a path like `year=2024/month=01`, or empty).
    pub fn output_key(&self, output_prefix: &str, partition: &str, n: usize) -> String {
        let part = if partition.is_empty() {
            String::new()
        } else {
            format!("{partition}/")
        };
        format!(
            "{output_prefix}{}/{part}{}-{n:04}.parquet",
            self.dataset,
            self.base()
        )
    }

    /// The key of the quarantine file (bad rows as JSON lines).
    pub fn bad_rows_key(&self, error_prefix: &str) -> String {
        format!(
            "{error_prefix}{}/{}.bad-rows.jsonl",
            self.dataset,
            self.base()
        )
    }

    /// The manifest's key.
    pub fn manifest_key(&self, output_prefix: &str) -> String {
        format!(
            "{output_prefix}_manifests/{}/{}-{}.json",
            self.dataset, self.stem, self.digest
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_deterministic_and_keep_firehose_partitions() {
        let o = ObjectRef::new("bkt", "raw/events/year=2024/month=03/events-1-2024.gz")
            .with_etag(Some("e1"));
        let n = Names::of(&o, "raw/").expect("under prefix");
        assert_eq!(n.dataset, "events");
        assert_eq!(n.stem, "events-1-2024");
        assert_eq!(n.key_partitions, ["year=2024", "month=03"]);
        assert_eq!(n.digest.len(), 8);
        assert_eq!(Names::of(&o, "raw/").expect("same"), n);
        let other = Names::of(&o.clone().with_etag(Some("e2")), "raw/").expect("other etag");
        assert_ne!(other.digest, n.digest);
        assert_eq!(
            n.output_key("processed/", "year=2024/month=03", 0),
            format!(
                "processed/events/year=2024/month=03/events-1-2024-{}-0000.parquet",
                n.digest
            )
        );
        assert_eq!(
            n.manifest_key("processed/"),
            format!(
                "processed/_manifests/events/events-1-2024-{}.json",
                n.digest
            )
        );
        let flat =
            Names::of(&ObjectRef::new("b", "raw/taxi/trips 2024.csv.gz"), "raw/").expect("flat");
        assert_eq!(
            (flat.dataset.as_str(), flat.stem.as_str()),
            ("taxi", "trips 2024")
        );
        assert!(Names::of(&ObjectRef::new("b", "other/x.csv"), "raw/").is_err());
        let r = n.for_range(7);
        assert_eq!(
            r.output_key("processed/", "year=2024/month=03", 2),
            format!(
                "processed/events/year=2024/month=03/events-1-2024-{}-r0007-0002.parquet",
                n.digest
            )
        );
        assert_eq!(
            r.bad_rows_key("errors/"),
            format!(
                "errors/events/events-1-2024-{}-r0007.bad-rows.jsonl",
                n.digest
            )
        );
        assert_eq!(r.manifest_key("processed/"), n.manifest_key("processed/"));
        assert!(r.output_key("p/", "", 0).contains(&n.range_file_prefix()));
    }
}
