use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;

use super::TokenLeases;
use crate::domain::{ConnectionId, Owner};
use crate::seal::Sealed;
use crate::store::StoreError;
use crate::store::dynamo::{DynamoStore, SECRET, unavailable};

/// Attributes of the connection item, outside its public fields.
const LEASE: &str = "token_lease";
const LEASE_UNTIL: &str = "token_lease_until";

fn conditional_failed<E, R>(error: &aws_sdk_dynamodb::error::SdkError<E, R>) -> bool
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata,
{
    error.as_service_error().and_then(|e| e.code()) == Some("ConditionalCheckFailedException")
}

fn blob(sealed: &Sealed) -> AttributeValue {
    AttributeValue::B(sealed.0.clone().into())
}

#[async_trait]
impl TokenLeases for DynamoStore {
    async fn take_token_lease(
        &self,
        owner: &Owner,
        id: &ConnectionId,
        read: &Sealed,
        lease: &str,
        now_ms: i64,
        until_ms: i64,
    ) -> Result<bool, StoreError> {
        let taken = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::connection_key(owner, &id.to_string())))
            .update_expression("SET #l = :lease, #u = :until")
            .condition_expression("attribute_exists(pk) AND #s = :read AND (attribute_not_exists(#u) OR #u < :now)")
            .expression_attribute_names("#l", LEASE)
            .expression_attribute_names("#u", LEASE_UNTIL)
            .expression_attribute_names("#s", SECRET)
            .expression_attribute_values(":lease", AttributeValue::S(lease.to_owned()))
            .expression_attribute_values(":until", AttributeValue::N(until_ms.to_string()))
            .expression_attribute_values(":now", AttributeValue::N(now_ms.to_string()))
            .expression_attribute_values(":read", blob(read))
            .send()
            .await;
        match taken {
            Ok(_) => Ok(true),
            Err(error) if conditional_failed(&error) => Ok(false),
            Err(error) => Err(unavailable(error)),
        }
    }

    async fn store_tokens(
        &self,
        owner: &Owner,
        id: &ConnectionId,
        read: &Sealed,
        next: &Sealed,
    ) -> Result<bool, StoreError> {
        let stored = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::connection_key(owner, &id.to_string())))
            .update_expression("SET #s = :next REMOVE #l, #u")
            .condition_expression("attribute_exists(pk) AND #s = :read")
            .expression_attribute_names("#l", LEASE)
            .expression_attribute_names("#u", LEASE_UNTIL)
            .expression_attribute_names("#s", SECRET)
            .expression_attribute_values(":read", blob(read))
            .expression_attribute_values(":next", blob(next))
            .send()
            .await;
        match stored {
            Ok(_) => Ok(true),
            Err(error) if conditional_failed(&error) => Ok(false),
            Err(error) => Err(unavailable(error)),
        }
    }

    async fn token_state(&self, owner: &Owner, id: &ConnectionId) -> Result<Option<(Sealed, Option<i64>)>, StoreError> {
        let read = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(Self::connection_key(owner, &id.to_string())))
            .consistent_read(true)
            .projection_expression("#s, #u")
            .expression_attribute_names("#s", SECRET)
            .expression_attribute_names("#u", LEASE_UNTIL)
            .send()
            .await
            .map_err(unavailable)?;
        let Some(item) = read.item else { return Ok(None) };
        let sealed = item
            .get(SECRET)
            .and_then(|v| v.as_b().ok())
            .map(|b| Sealed(b.as_ref().to_vec()))
            .ok_or_else(|| StoreError::Corrupt("a connection without its secret".into()))?;
        let until = item.get(LEASE_UNTIL).and_then(|v| v.as_n().ok()).and_then(|n| n.parse().ok());
        Ok(Some((sealed, until)))
    }

    async fn release_token_lease(&self, owner: &Owner, id: &ConnectionId, lease: &str) -> Result<(), StoreError> {
        let released = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::connection_key(owner, &id.to_string())))
            .update_expression("REMOVE #l, #u")
            .condition_expression("attribute_exists(pk) AND #l = :lease")
            .expression_attribute_names("#l", LEASE)
            .expression_attribute_names("#u", LEASE_UNTIL)
            .expression_attribute_values(":lease", AttributeValue::S(lease.to_owned()))
            .send()
            .await;
        match released {
            Ok(_) => Ok(()),
            Err(error) if conditional_failed(&error) => Ok(()),
            Err(error) => Err(unavailable(error)),
        }
    }
}
