//! Numbered slots in one per-owner item, each holding the time it was last claimed.
//! A claim is conditioned on its own slot alone, so writers that pick different
//! slots never race each other (a whole-document write lets one racer through per
//! round: twenty adds at once took longer than any budget on a busy table).

mod dynamo;
#[cfg(feature = "embedded")]
mod embedded;

use std::collections::BTreeMap;

use async_trait::async_trait;

use crate::domain::Owner;
use crate::store::StoreError;

/// Slot number → Unix seconds it was claimed at.
pub type Claims = BTreeMap<u32, i64>;

#[async_trait]
pub trait Slots: Send + Sync {
    /// The claims on `owner`'s item `name`, strongly consistent.
    async fn read_slots(&self, owner: &Owner, name: &str) -> Result<Claims, StoreError>;

    /// Claims `slot` at `now` if it is unclaimed or was claimed at `free_before` or
    /// earlier: `Ok(())`, or the claims as they were when another writer held it.
    /// The item expires, unless claimed in again, at `expires_at` (Unix seconds).
    async fn claim_slot(
        &self,
        owner: &Owner,
        name: &str,
        slot: u32,
        now: i64,
        free_before: i64,
        expires_at: i64,
    ) -> Result<Result<(), Claims>, StoreError>;
}
