//! Which product a connection is for, and how it stands.

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Provider {
    BitbucketCloud,
    BitbucketDataCenter,
}

/// `expiring` and `expired` are never stored: they follow from `expires_at` and
/// the clock, so a list shows them the moment they become true.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Verified,
    Invalid,
    Expiring,
    Expired,
}

/// How long before `expires_at` a verified connection shows as `expiring`.
pub const EXPIRY_WARNING: time::Duration = time::Duration::days(14);
