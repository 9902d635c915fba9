//! Single-flight refresh of an OAuth connection's tokens across every Lambda: a
//! refresher first takes a short lease on the connection item (only while the
//! tokens are still the ones it read and no other lease is live), then writes the
//! new tokens, the rotated refresh token with them, in one write conditioned on the
//! tokens it refreshed from (not on still holding the lease: tokens newer than the
//! stored ones are always worth keeping, even from a refresher whose lease ran out).
//! Waiters read the lease's end and try to take it only once it has passed. No write
//! touches the connection's version, so a user's edit never conflicts with one.

mod dynamo;
#[cfg(feature = "embedded")]
mod embedded;

use async_trait::async_trait;

use crate::domain::{ConnectionId, Owner};
use crate::seal::Sealed;
use crate::store::StoreError;

#[async_trait]
pub trait TokenLeases: Send + Sync {
    /// Takes the refresh lease `lease` until `until_ms` if the stored tokens are
    /// still `read` and no lease is live at `now_ms`: `false` when another
    /// refresher holds one or already replaced the tokens (or the connection is gone).
    async fn take_token_lease(
        &self,
        owner: &Owner,
        id: &ConnectionId,
        read: &Sealed,
        lease: &str,
        now_ms: i64,
        until_ms: i64,
    ) -> Result<bool, StoreError>;

    /// Replaces the tokens `read` by `next` and ends any lease, if the stored tokens
    /// are still `read`: `false` otherwise (nothing written).
    async fn store_tokens(
        &self,
        owner: &Owner,
        id: &ConnectionId,
        read: &Sealed,
        next: &Sealed,
    ) -> Result<bool, StoreError>;

    /// The stored tokens and, while one is taken, when the refresh lease ends (Unix
    /// milliseconds); `None` when the connection is gone.
    async fn token_state(&self, owner: &Owner, id: &ConnectionId) -> Result<Option<(Sealed, Option<i64>)>, StoreError>;

    /// Ends `lease` without new tokens (the refresh failed), if it is still held.
    async fn release_token_lease(&self, owner: &Owner, id: &ConnectionId, lease: &str) -> Result<(), StoreError>;
}
