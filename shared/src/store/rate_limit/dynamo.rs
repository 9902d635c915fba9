use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;

use super::{RateLimits, verification_window};
use crate::domain::Owner;
use crate::store::StoreError;
use crate::store::dynamo::{COUNT, DynamoStore, EXPIRES_AT, unavailable};

#[async_trait]
impl RateLimits for DynamoStore {
    async fn count_verification(&self, owner: &Owner, limit: u32, now: i64) -> Result<Option<u64>, StoreError> {
        let (window, left) = verification_window(now);
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(owner, format!("RATE#{window}"))))
            .update_expression("ADD #n :one SET #e = :expires")
            .condition_expression("attribute_not_exists(#n) OR #n < :limit")
            .expression_attribute_names("#n", COUNT)
            .expression_attribute_names("#e", EXPIRES_AT)
            .expression_attribute_values(":one", AttributeValue::N("1".into()))
            .expression_attribute_values(":limit", AttributeValue::N(limit.to_string()))
            // TTL removes the counter once its minute is well past.
            .expression_attribute_values(":expires", AttributeValue::N((window + 120).to_string()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(None),
            Err(error) if error.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) => {
                Ok(Some(left))
            }
            Err(error) => Err(unavailable(error)),
        }
    }
}
