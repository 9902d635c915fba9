//! A worker's use of a connection.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// A worker's use of a connection, as the worker declared it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastUsed {
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// `git` or `api`.
    pub purpose: String,
    /// The worker's declared name (plain, capped).
    pub caller: String,
}

impl LastUsed {
    /// How often a use is written down: a busy worker costs one write an hour.
    pub const EVERY: time::Duration = time::Duration::hours(1);
}
