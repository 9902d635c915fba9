//! Connections: the records themselves, their names (unique per owner, case-folded) and
//! the per-owner count, and the last use a worker made of one.

mod dynamo;
#[cfg(feature = "embedded")]
mod embedded;

use async_trait::async_trait;

use crate::domain::{Connection, ConnectionId, LastUsed, Owner};
use crate::seal::Sealed;
use crate::store::{IdempotencyRecord, StoreError};

/// One page of an owner's connections, oldest first.
#[derive(Debug, Default)]
pub struct Page {
    pub items: Vec<Connection>,
    pub next: Option<ConnectionId>,
}

/// Which versions a conditional write accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expected<'a> {
    Any,
    /// One of these (none: nothing matches, but a missing item is still told apart).
    Versions(&'a [u64]),
}

/// Every write is conditional; a failed condition changes nothing.
#[async_trait]
pub trait Connections: Send + Sync {
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

    /// Records a worker's use, unless one was recorded less than [`LastUsed::EVERY`]
    /// before it (or the connection is gone): never touches the version, so neither
    /// a user's edit nor a worker's report conflicts with it.
    async fn record_use(&self, owner: &Owner, id: &ConnectionId, used: &LastUsed) -> Result<(), StoreError>;
}
