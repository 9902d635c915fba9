use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;

use super::Documents;
use crate::domain::Owner;
use crate::store::StoreError;
use crate::store::dynamo::{DynamoStore, EXPIRES_AT, unavailable};

/// The document's item: `pk` the owner's, `sk` its name; the text, a version for the
/// conditional write, and the table's TTL attribute.
const TEXT: &str = "document";
const VERSION: &str = "version";

#[async_trait]
impl Documents for DynamoStore {
    async fn read_document(&self, owner: &Owner, name: &str) -> Result<Option<(String, u64)>, StoreError> {
        let read = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(owner, name.to_owned())))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        Ok(read.item.and_then(|item| {
            let text = item.get(TEXT)?.as_s().ok()?.clone();
            let version = item.get(VERSION)?.as_n().ok()?.parse().ok()?;
            Some((text, version))
        }))
    }

    async fn write_document(
        &self,
        owner: &Owner,
        name: &str,
        text: &str,
        read: Option<u64>,
        expires_at: i64,
    ) -> Result<bool, StoreError> {
        let update = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(owner, name.to_owned())))
            .update_expression("SET #d = :text, #v = :next, #e = :expires")
            .expression_attribute_names("#d", TEXT)
            .expression_attribute_names("#v", VERSION)
            .expression_attribute_names("#e", EXPIRES_AT)
            .expression_attribute_values(":text", AttributeValue::S(text.to_owned()))
            .expression_attribute_values(":next", AttributeValue::N((read.unwrap_or(0) + 1).to_string()))
            .expression_attribute_values(":expires", AttributeValue::N(expires_at.to_string()));
        let update = match read {
            None => update.condition_expression("attribute_not_exists(pk)"),
            Some(version) => update
                .condition_expression("#v = :read")
                .expression_attribute_values(":read", AttributeValue::N(version.to_string())),
        };
        match update.send().await {
            Ok(_) => Ok(true),
            Err(error) if error.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) => {
                Ok(false)
            }
            Err(error) => Err(unavailable(error)),
        }
    }
}
