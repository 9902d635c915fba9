use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};

use super::{Flow, OauthFlows};
use crate::domain::Owner;
use crate::store::StoreError;
use crate::store::dynamo::{DynamoStore, EXPIRES_AT, unavailable};

const FLOW: &str = "flow";
/// Marks a flow taken. An update, not a delete: the add function's role holds no
/// `DeleteItem` (IAM cannot narrow it to these items), and TTL removes the item.
const TAKEN: &str = "taken";

fn key(state_key: &str) -> String {
    format!("OAUTH#{state_key}")
}

#[async_trait]
impl OauthFlows for DynamoStore {
    async fn begin_flow(&self, owner: &Owner, state_key: &str, flow: &Flow) -> Result<(), StoreError> {
        let mut item = Self::key(owner, key(state_key));
        item.insert(FLOW.into(), AttributeValue::S(flow.to_text()));
        item.insert(EXPIRES_AT.into(), AttributeValue::N(flow.expires_at.to_string()));
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn take_flow(&self, owner: &Owner, state_key: &str, now: i64) -> Result<Option<Flow>, StoreError> {
        let taken = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(owner, key(state_key))))
            .update_expression("SET #t = :taken")
            .condition_expression("attribute_exists(pk) AND attribute_not_exists(#t)")
            .expression_attribute_names("#t", TAKEN)
            .expression_attribute_values(":taken", AttributeValue::Bool(true))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        let item = match taken {
            Ok(output) => output.attributes,
            Err(error) if error.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) => None,
            Err(error) => return Err(unavailable(error)),
        };
        let Some(text) = item.as_ref().and_then(|item| item.get(FLOW)).and_then(|v| v.as_s().ok()) else {
            return Ok(None);
        };
        // TTL removes expired items within days, not at once.
        Ok(Some(Flow::from_text(text)?).filter(|flow| flow.expires_at > now))
    }
}
