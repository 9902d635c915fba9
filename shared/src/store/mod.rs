//! The connection store port and its adapters.

mod dynamo;
#[cfg(feature = "embedded")]
mod embedded;

pub use dynamo::{DUE_INDEX, DynamoStore, PARTITION_KEY, SORT_KEY};
#[cfg(feature = "embedded")]
pub use embedded::EmbeddedStore;

use async_trait::async_trait;

use crate::domain::{Connection, ConnectionId, LastUsed, Owner, Status};
use crate::problem::ApiError;
use crate::seal::Sealed;

/// One page of an owner's connections, oldest first.
#[derive(Debug, Default)]
pub struct Page {
    pub items: Vec<Connection>,
    pub next: Option<ConnectionId>,
}

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

/// What a create with an `Idempotency-Key` leaves behind, so a retry can be
/// answered with the original result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdempotencyRecord {
    pub key: String,
    /// Of the request without its password (see `input::CreateRequest::fingerprint`).
    pub fingerprint: String,
    pub connection_id: String,
    /// The connection as the original 201 returned it (no secret), replayed
    /// within the key's lifetime even if the connection has since changed or gone.
    pub response: String,
    /// Unix seconds after which the key may be reused (DynamoDB TTL attribute).
    pub expires_at: i64,
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

/// When the recheck function should next look at a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DueAt {
    /// At its next run (a user change, or an event still to publish).
    Now,
    /// At this Unix second.
    At(i64),
    /// Not until a user changes it (invalid or expired, and already announced).
    Never,
}

impl DueAt {
    /// The Unix second it names, given the current one; `None` for never.
    pub fn second(self, now: i64) -> Option<i64> {
        match self {
            DueAt::Now => Some(now),
            DueAt::At(at) => Some(at),
            DueAt::Never => None,
        }
    }
}

/// A status change the recheck function announced, and when to look next.
#[derive(Debug, Clone, Copy)]
pub struct Announced<'a> {
    pub id: &'a str,
    pub from: Status,
    pub to: Status,
    /// The version the check wrote; a later one means a user edit came in between.
    pub version: u64,
    pub then: DueAt,
}

/// A connection the recheck function should look at, with what it needs to do so.
#[derive(Debug)]
pub struct Due {
    pub owner: Owner,
    pub connection: Connection,
    pub sealed: Sealed,
    /// The status last announced in an event.
    pub notified: Status,
}

#[derive(Debug, Default)]
pub struct DuePage {
    pub items: Vec<Due>,
    /// Where the next page starts; opaque, for the recheck function only.
    pub next: Option<String>,
}

/// Which versions a conditional write accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expected<'a> {
    Any,
    /// One of these (none: nothing matches, but a missing item is still told apart).
    Versions(&'a [u64]),
}

/// The rate-limit window a moment falls in, and the seconds left in it.
pub fn verification_window(now: i64) -> (i64, u64) {
    let start = now - now.rem_euclid(60);
    (start, u64::try_from(start + 60 - now).unwrap_or(60))
}

/// Every write is conditional; a failed condition changes nothing.
#[async_trait]
pub trait ConnectionStore: Send + Sync {
    /// Stores a new connection, reserves its name and records the idempotency
    /// key, atomically; refuses a duplicate name (case-folded), an owner already
    /// at `max_per_owner`, or a key already recorded.
    async fn create(
        &self,
        owner: &Owner,
        connection: &Connection,
        sealed: &Sealed,
        max_per_owner: usize,
        idempotency: Option<&IdempotencyRecord>,
    ) -> Result<(), StoreError>;

    /// The unexpired record of an idempotency key.
    async fn idempotency_record(&self, owner: &Owner, key: &str) -> Result<Option<IdempotencyRecord>, StoreError>;

    /// The connection without its secret.
    async fn get(&self, owner: &Owner, id: &ConnectionId) -> Result<Option<Connection>, StoreError>;

    /// The connection and its sealed secret, for the paths that must open it.
    async fn get_sealed(&self, owner: &Owner, id: &ConnectionId) -> Result<Option<(Connection, Sealed)>, StoreError>;

    /// A page in creation order, never reading secrets.
    async fn list(&self, owner: &Owner, limit: usize, after: Option<&ConnectionId>) -> Result<Page, StoreError>;

    /// Replaces `previous` (matched on its `version`) by `next`, moving the name
    /// reservation when the name changed; `sealed` replaces the secret when given.
    async fn update(
        &self,
        owner: &Owner,
        previous: &Connection,
        next: &Connection,
        sealed: Option<&Sealed>,
    ) -> Result<(), StoreError>;

    /// Deletes the connection (its name reservation becomes stale), only if its
    /// version is one of those `expected`.
    async fn delete(&self, owner: &Owner, id: &ConnectionId, expected: Expected<'_>) -> Result<(), StoreError>;

    /// Connections due by `now` (Unix seconds), oldest due first: a query, never a scan.
    async fn due(&self, now: i64, limit: usize, after: Option<&str>) -> Result<DuePage, StoreError>;

    /// Records what the recheck function found: `next` replaces `previous`
    /// (matched on its version; `next.version` is bumped only for a status
    /// change), with the status now announced and the next time to look.
    async fn record_check(
        &self,
        owner: &Owner,
        previous: &Connection,
        next: &Connection,
        notified: Status,
        due: DueAt,
    ) -> Result<(), StoreError>;

    /// Records a worker's use, unless one was recorded less than [`LastUsed::EVERY`]
    /// before it (or the connection is gone): never touches the version, so neither
    /// a user's edit nor a worker's report conflicts with it.
    async fn record_use(&self, owner: &Owner, id: &ConnectionId, used: &LastUsed) -> Result<(), StoreError>;

    /// Records that the change from `from` to `to` was announced, whatever else
    /// changed meanwhile (conditioned on the announced status, not the version),
    /// and, if the connection is still at `version`, schedules its next check.
    async fn mark_announced(&self, owner: &Owner, announced: Announced<'_>) -> Result<(), StoreError>;

    /// Counts one check against Bitbucket for `owner` in the minute of `now`
    /// (Unix seconds). `Some(seconds)` to wait when `limit` is already reached.
    async fn count_verification(&self, owner: &Owner, limit: u32, now: i64) -> Result<Option<u64>, StoreError>;
}
