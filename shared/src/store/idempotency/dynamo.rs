use async_trait::async_trait;

use super::{Idempotency, IdempotencyRecord};
use crate::domain::Owner;
use crate::store::StoreError;
use crate::store::dynamo::{CONNECTION_ID, DynamoStore, EXPIRES_AT, FINGERPRINT, RESPONSE, now_seconds, unavailable};

#[async_trait]
impl Idempotency for DynamoStore {
    async fn idempotency_record(&self, owner: &Owner, key: &str) -> Result<Option<IdempotencyRecord>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(Self::idempotency_key(owner, key)))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        let Some(item) = output.item else { return Ok(None) };
        let text = |name: &str| item.get(name).and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
        let expires_at = item.get(EXPIRES_AT).and_then(|v| v.as_n().ok()).and_then(|n| n.parse().ok()).unwrap_or(0);
        if expires_at < now_seconds() {
            return Ok(None);
        }
        Ok(Some(IdempotencyRecord {
            key: key.to_owned(),
            fingerprint: text(FINGERPRINT),
            connection_id: text(CONNECTION_ID),
            response: text(RESPONSE),
            expires_at,
        }))
    }
}
