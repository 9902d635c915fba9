//! Idempotency records: what a create with an `Idempotency-Key` left behind (written in
//! the create's own transaction, `Connections::create`), for a retry to be answered with.

mod dynamo;
#[cfg(feature = "embedded")]
mod embedded;

use async_trait::async_trait;

use crate::domain::Owner;
use crate::store::StoreError;

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

#[async_trait]
pub trait Idempotency: Send + Sync {
    /// The unexpired record of an idempotency key.
    async fn idempotency_record(&self, owner: &Owner, key: &str) -> Result<Option<IdempotencyRecord>, StoreError>;
}
