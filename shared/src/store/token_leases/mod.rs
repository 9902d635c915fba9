//! Single-flight refresh of an OAuth connection's tokens across every Lambda: a
//! refresher first takes a short lease on the connection item (only while the
//! tokens are still the ones it read and no other lease is live), then writes the
//! new tokens, the rotated refresh token with them, in one write conditioned on
//! still holding that lease and on the tokens it refreshed from. Neither write
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

    /// Replaces the tokens `read` by `next` and ends the lease, if `lease` is still
    /// held: `false` otherwise (nothing written).
    async fn store_tokens(
        &self,
        owner: &Owner,
        id: &ConnectionId,
        lease: &str,
        read: &Sealed,
        next: &Sealed,
    ) -> Result<bool, StoreError>;

    /// Ends `lease` without new tokens (the refresh failed), if it is still held.
    async fn release_token_lease(&self, owner: &Owner, id: &ConnectionId, lease: &str) -> Result<(), StoreError>;
}
