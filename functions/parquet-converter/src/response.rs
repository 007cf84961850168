//! What the handler answers: one [`Outcome`] per object of the event, and for SQS the
//! messages to retry. Serialised as the Lambda response; the demo and the tests read it back
//! through these types.

use serde::{Deserialize, Serialize};

use crate::convert::Summary;

/// The handler's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    /// From SQS only: the messages that failed, for Lambda to make visible again (partial
    /// batch responses); the others are deleted.
    #[serde(
        rename = "batchItemFailures",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub batch_item_failures: Option<Vec<ItemFailure>>,
    /// What happened to each object, in event order.
    pub results: Vec<Outcome>,
}

/// One SQS message to retry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemFailure {
    /// The SQS message id.
    #[serde(rename = "itemIdentifier")]
    pub item_identifier: String,
}

/// What happened to one object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Outcome {
    /// Converted.
    Converted(Box<Summary>),
    /// Nothing to do, and why.
    Skipped {
        /// The object, when the event named one.
        object: Option<String>,
        /// Why.
        reason: String,
    },
    /// A conversion in ranges undone (`commit` with `abort`): nothing of it is visible.
    Aborted {
        /// The object.
        object: String,
        /// The ranges' uploads aborted.
        uploads_aborted: usize,
    },
    /// Failed; everything it started was aborted.
    Failed {
        /// The object.
        object: String,
        /// `errorType`.
        error_type: String,
        /// Why.
        message: String,
    },
}

impl Response {
    /// The summaries of the objects converted, in event order.
    pub fn converted(&self) -> impl Iterator<Item = &Summary> {
        self.results.iter().filter_map(Outcome::summary)
    }

    /// The one object converted, if exactly one was.
    pub fn only_converted(&self) -> Option<&Summary> {
        let mut it = self.converted();
        match (it.next(), it.next()) {
            (Some(s), None) => Some(s),
            _ => None,
        }
    }

    /// The SQS message ids to retry (empty outside SQS).
    pub fn failed_messages(&self) -> Vec<&str> {
        self.batch_item_failures
            .iter()
            .flatten()
            .map(|f| f.item_identifier.as_str())
            .collect()
    }
}

impl Outcome {
    /// `converted`, `skipped`, `aborted` or `failed`, as serialised.
    pub fn status(&self) -> &'static str {
        match self {
            Outcome::Converted(_) => "converted",
            Outcome::Aborted { .. } => "aborted",
            Outcome::Skipped { .. } => "skipped",
            Outcome::Failed { .. } => "failed",
        }
    }

    /// The summary, when the object was converted.
    pub fn summary(&self) -> Option<&Summary> {
        match self {
            Outcome::Converted(s) => Some(s),
            _ => None,
        }
    }
}

/// The response as the JSON Lambda returns.
impl std::fmt::Display for Response {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let json = serde_json::to_string(self).map_err(|_| std::fmt::Error)?;
        f.write_str(&json)
    }
}
