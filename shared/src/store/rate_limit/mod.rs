//! The per-owner limit on checks against Bitbucket.

mod dynamo;
#[cfg(feature = "embedded")]
mod embedded;

use async_trait::async_trait;

use crate::domain::Owner;
use crate::store::StoreError;

/// The rate-limit window a moment falls in, and the seconds left in it.
pub fn verification_window(now: i64) -> (i64, u64) {
    let start = now - now.rem_euclid(60);
    (start, u64::try_from(start + 60 - now).unwrap_or(60))
}

#[async_trait]
pub trait RateLimits: Send + Sync {
    /// Counts one check against Bitbucket for `owner` in the minute of `now`
    /// (Unix seconds). `Some(seconds)` to wait when `limit` is already reached.
    async fn count_verification(&self, owner: &Owner, limit: u32, now: i64) -> Result<Option<u64>, StoreError>;
}
