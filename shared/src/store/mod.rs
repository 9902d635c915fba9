//! Storage: one module an aggregate, each a port (a trait) with its DynamoDB and
//! SQLite adapters side by side: `connections`, `idempotency`, `schedule`, `oauth_flows` (round trips in flight),
//! `token_leases` (single-flight OAuth refresh), and
//! `documents` (small per-owner documents changed by conditional writes) and `slots`
//! (per-owner numbered slots claimed one at a time), which `browse_budget` and
//! `rate_limit` keep their state in. `dynamo` and `embedded` hold what an adapter's aggregates share (the
//! table's keys, item codec and transactions; the database file and its schema).
//! A stored item that no longer parses is refused where it is read, as
//! `StoreError::Corrupt`.

mod browse_budget;
mod connections;
mod documents;
mod dynamo;
#[cfg(feature = "embedded")]
mod embedded;
mod idempotency;
mod oauth_flows;
mod rate_limit;
mod schedule;
mod slots;
mod token_leases;

pub use browse_budget::{Admission, BrowseBudget, BrowseRules, CallOutcome};
pub use connections::{Connections, Expected, Page};
pub use documents::{Change, Documents};
pub use dynamo::{DUE_INDEX, DynamoStore, PARTITION_KEY, SORT_KEY};
#[cfg(feature = "embedded")]
pub use embedded::EmbeddedStore;
pub use idempotency::{Idempotency, IdempotencyRecord};
pub use oauth_flows::{FLOW_SECONDS, Flow, OauthFlows};
pub use rate_limit::{RateLimits, WINDOW_SECONDS};
pub use schedule::{Announced, Due, DueAt, DuePage, Schedule};
pub use slots::{Claims, Slots};
pub use token_leases::TokenLeases;

use crate::problem::ApiError;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StoreError {
    #[error("the name is already used by another connection of this owner")]
    DuplicateName,
    #[error("the owner has reached the connection limit")]
    TooManyConnections,
    #[error("the stored version is not the expected one")]
    VersionMismatch,
    #[error("no such connection")]
    NotFound,
    /// The backend failed; the message is for logs only and names no secret.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("stored data is unreadable: {0}")]
    Corrupt(String),
    /// Another request with the same idempotency key got there first.
    #[error("the idempotency key is already recorded")]
    IdempotencyKeyTaken,
}

impl StoreError {
    pub fn into_api(self, name: &str, limit: usize) -> ApiError {
        match self {
            Self::DuplicateName => ApiError::DuplicateName { name: name.to_owned() },
            Self::TooManyConnections => ApiError::TooManyConnections { limit },
            Self::VersionMismatch => ApiError::VersionMismatch,
            Self::NotFound => ApiError::NotFound,
            Self::IdempotencyKeyTaken => ApiError::IdempotencyKeyReused,
            Self::Unavailable(reason) => {
                tracing::error!(reason = %reason, "connection store failed");
                ApiError::ServiceUnavailable {
                    detail: "The connection store is unavailable. Try again shortly; nothing was changed.",
                }
            }
            Self::Corrupt(reason) => {
                tracing::error!(reason = %reason, "stored connection holds a value that no longer parses");
                ApiError::ServiceUnavailable {
                    detail: "The stored connection is unreadable. Delete it and add it again.",
                }
            }
        }
    }
}

/// Every aggregate: what a function's handler holds (`Arc<dyn ConnectionStore>`).
pub trait ConnectionStore:
    Connections + Idempotency + RateLimits + BrowseBudget + Schedule + OauthFlows + TokenLeases
{
}

impl<T> ConnectionStore for T where
    T: Connections + Idempotency + RateLimits + BrowseBudget + Schedule + OauthFlows + TokenLeases + ?Sized
{
}
