use async_trait::async_trait;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure};

use super::{Claims, Slots};
use crate::domain::Owner;
use crate::store::StoreError;
use crate::store::dynamo::{DynamoStore, EXPIRES_AT, Item, unavailable};

/// Slot `n` is the number attribute `s<n>` of the item.
const PREFIX: char = 's';

fn claims(item: &Item) -> Claims {
    item.iter()
        .filter_map(|(name, value)| {
            let slot = name.strip_prefix(PREFIX)?.parse().ok()?;
            Some((slot, value.as_n().ok()?.parse().ok()?))
        })
        .collect()
}

#[async_trait]
impl Slots for DynamoStore {
    async fn read_slots(&self, owner: &Owner, name: &str) -> Result<Claims, StoreError> {
        let read = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(owner, name.to_owned())))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        Ok(read.item.as_ref().map(claims).unwrap_or_default())
    }

    async fn claim_slot(
        &self,
        owner: &Owner,
        name: &str,
        slot: u32,
        now: i64,
        free_before: i64,
        expires_at: i64,
    ) -> Result<Result<(), Claims>, StoreError> {
        let claimed = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(owner, name.to_owned())))
            .update_expression("SET #s = :now, #e = :expires")
            .condition_expression("attribute_not_exists(#s) OR #s <= :free_before")
            .expression_attribute_names("#s", format!("{PREFIX}{slot}"))
            .expression_attribute_names("#e", EXPIRES_AT)
            .expression_attribute_values(":now", AttributeValue::N(now.to_string()))
            .expression_attribute_values(":free_before", AttributeValue::N(free_before.to_string()))
            .expression_attribute_values(":expires", AttributeValue::N(expires_at.to_string()))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match claimed {
            Ok(_) => Ok(Ok(())),
            Err(error) => match error.as_service_error() {
                Some(UpdateItemError::ConditionalCheckFailedException(failed)) => Ok(Err(match &failed.item {
                    Some(item) => claims(item),
                    // An emulator that leaves the item out: read it.
                    None => self.read_slots(owner, name).await?,
                })),
                _ => Err(unavailable(error)),
            },
        }
    }
}
