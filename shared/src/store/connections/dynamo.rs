use async_trait::async_trait;
use aws_sdk_dynamodb::types::{
    AttributeValue, Delete, Put, ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update,
};

use super::{Connections, Expected, Page};
use crate::domain::{Connection, ConnectionId, LastUsed, Owner};
use crate::seal::Sealed;
use crate::store::dynamo::{
    CONNECTION_ID, DynamoStore, EXPIRES_AT, FINGERPRINT, LAST_USED, LAST_USED_SECOND, NAME_FOLDED, NOTIFIED,
    PARTITION_KEY, RESPONSE, SECRET, SORT_KEY, connection_from, due_attributes, failed_condition, now_seconds,
    projection, public_item, status_value, unavailable, update_error,
};
use crate::store::{DueAt, IdempotencyRecord, StoreError};

#[async_trait]
impl Connections for DynamoStore {
    async fn create(
        &self,
        owner: &Owner,
        connection: &Connection,
        sealed: &Sealed,
        max_per_owner: usize,
        idempotency: Option<&IdempotencyRecord>,
    ) -> Result<(), StoreError> {
        let mut item = public_item(connection)?;
        item.extend(Self::connection_key(owner, &connection.id));
        let folded = connection.folded_name();
        item.insert(NAME_FOLDED.into(), AttributeValue::S(folded.clone()));
        item.insert(SECRET.into(), AttributeValue::B(sealed.0.clone().into()));
        item.insert(NOTIFIED.into(), status_value(connection.status));
        item.extend(due_attributes(owner, &connection.id, DueAt::Now));
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(unavailable)?;
        let record = match idempotency {
            Some(record) => {
                let mut item = Self::idempotency_key(owner, &record.key);
                item.insert(FINGERPRINT.into(), AttributeValue::S(record.fingerprint.clone()));
                item.insert(CONNECTION_ID.into(), AttributeValue::S(record.connection_id.clone()));
                item.insert(RESPONSE.into(), AttributeValue::S(record.response.clone()));
                item.insert(EXPIRES_AT.into(), AttributeValue::N(record.expires_at.to_string()));
                // An expired record that TTL has not removed yet may be replaced.
                let put = Put::builder()
                    .table_name(&self.table)
                    .set_item(Some(item))
                    .condition_expression("attribute_not_exists(pk) OR #e < :now")
                    .expression_attribute_names("#e", EXPIRES_AT)
                    .expression_attribute_values(":now", AttributeValue::N(now_seconds().to_string()))
                    .build()
                    .map_err(unavailable)?;
                Some(TransactWriteItem::builder().put(put).build())
            }
            None => None,
        };
        let build = |stale: Option<&str>| {
            let mut items = vec![
                TransactWriteItem::builder().put(put.clone()).build(),
                self.name_reservation(owner, &folded, &connection.id, stale)?,
                self.count_change(owner, 1, Some(max_per_owner))?,
            ];
            items.extend(record.clone());
            Ok(items)
        };
        self.transact_reserving(owner, &connection.id, 1, build).await.map_err(|reasons| {
            if idempotency.is_some() && failed_condition(&reasons, 3) {
                StoreError::IdempotencyKeyTaken
            } else if failed_condition(&reasons, 1) {
                StoreError::DuplicateName
            } else if failed_condition(&reasons, 2) {
                StoreError::TooManyConnections
            } else {
                StoreError::Unavailable(format!("create cancelled: {reasons:?}"))
            }
        })
    }

    async fn get(&self, owner: &Owner, id: &ConnectionId) -> Result<Option<Connection>, StoreError> {
        let (expression, names) = projection();
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(Self::connection_key(owner, &id.to_string())))
            .projection_expression(expression)
            .set_expression_attribute_names(Some(names))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        output.item.map(connection_from).transpose()
    }

    async fn get_sealed(&self, owner: &Owner, id: &ConnectionId) -> Result<Option<(Connection, Sealed)>, StoreError> {
        let Some(mut item) = self.connection_item(owner, &id.to_string()).await? else { return Ok(None) };
        let sealed = match item.remove(SECRET) {
            Some(AttributeValue::B(blob)) => Sealed(blob.into_inner()),
            _ => return Err(StoreError::Corrupt("connection item without a secret".into())),
        };
        Ok(Some((connection_from(item)?, sealed)))
    }

    async fn list(&self, owner: &Owner, limit: usize, after: Option<&ConnectionId>) -> Result<Page, StoreError> {
        let (expression, mut names) = projection();
        names.insert("#pk".into(), PARTITION_KEY.into());
        names.insert("#sk".into(), SORT_KEY.into());
        let start = after.map(|id| Self::connection_key(owner, &id.to_string()));
        let output = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("#pk = :pk AND begins_with(#sk, :prefix)")
            .expression_attribute_values(":pk", AttributeValue::S(format!("USER#{}", owner.as_str())))
            .expression_attribute_values(":prefix", AttributeValue::S("CONN#".into()))
            .projection_expression(expression)
            .set_expression_attribute_names(Some(names))
            .limit(i32::try_from(limit).unwrap_or(i32::MAX))
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(unavailable)?;
        // One unreadable connection must not hide the others: left out and logged.
        let items = output
            .items
            .unwrap_or_default()
            .into_iter()
            .filter_map(|item| {
                let sk = item.get(SORT_KEY).and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
                connection_from(item)
                    .map_err(|e| tracing::error!(sk, error = %e, "unreadable connection left out of a list"))
                    .ok()
            })
            .collect();
        let next = output
            .last_evaluated_key
            .and_then(|key| key.get(SORT_KEY).and_then(|v| v.as_s().ok()).cloned())
            .and_then(|sk| ConnectionId::parse(sk.trim_start_matches("CONN#")));
        Ok(Page { items, next })
    }

    async fn update(
        &self,
        owner: &Owner,
        previous: &Connection,
        next: &Connection,
        sealed: Option<&Sealed>,
    ) -> Result<(), StoreError> {
        let update = self.conditional_update(owner, next, previous.version, sealed, DueAt::Now, None)?;
        let update = TransactWriteItem::builder().update(update).build();
        if previous.folded_name() == next.folded_name() {
            return self
                .update_one(update.update().cloned().ok_or_else(|| StoreError::Unavailable("no update".into()))?)
                .await;
        }
        let build = |stale: Option<&str>| {
            Ok(vec![
                update.clone(),
                self.release_name(owner, &previous.folded_name(), &previous.id)?,
                self.name_reservation(owner, &next.folded_name(), &next.id, stale)?,
            ])
        };
        self.transact_reserving(owner, &next.id, 2, build).await.map_err(|reasons| update_error(&reasons))
    }

    async fn delete(&self, owner: &Owner, id: &ConnectionId, expected: Expected<'_>) -> Result<(), StoreError> {
        let mut delete = Delete::builder()
            .table_name(&self.table)
            .set_key(Some(Self::connection_key(owner, &id.to_string())))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        delete = match expected {
            Expected::Any => delete.condition_expression("attribute_exists(pk)"),
            Expected::Versions(versions) => {
                // No acceptable version: a condition no item meets, still telling 404 from 412.
                let listed: &[u64] = if versions.is_empty() { &[u64::MAX] } else { versions };
                let placeholders: Vec<String> = (0..listed.len()).map(|i| format!(":v{i}")).collect();
                for (placeholder, version) in placeholders.iter().zip(listed) {
                    delete = delete.expression_attribute_values(placeholder, AttributeValue::N(version.to_string()));
                }
                delete
                    .condition_expression(format!("attribute_exists(pk) AND #v IN ({})", placeholders.join(", ")))
                    .expression_attribute_names("#v", "version")
            }
        };
        let items = vec![
            TransactWriteItem::builder().delete(delete.build().map_err(unavailable)?).build(),
            self.count_change(owner, -1, None)?,
        ];
        match self.transact(items).await {
            Ok(()) => Ok(()),
            // The item as it was tells a stale version from an absent connection.
            Err(reasons) if failed_condition(&reasons, 0) => match reasons[0].item {
                Some(_) => Err(StoreError::VersionMismatch),
                None => Err(StoreError::NotFound),
            },
            Err(reasons) => Err(StoreError::Unavailable(format!("delete cancelled: {reasons:?}"))),
        }
    }

    async fn record_use(&self, owner: &Owner, id: &ConnectionId, used: &LastUsed) -> Result<(), StoreError> {
        let value = serde_dynamo::to_attribute_value(used).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let second = used.at.unix_timestamp();
        let update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(Self::connection_key(owner, &id.to_string())))
            .condition_expression("attribute_exists(pk) AND (attribute_not_exists(#s) OR #s < :cutoff)")
            .update_expression("SET #u = :used, #s = :second")
            .expression_attribute_names("#u", LAST_USED)
            .expression_attribute_names("#s", LAST_USED_SECOND)
            .expression_attribute_values(":used", value)
            .expression_attribute_values(":second", AttributeValue::N(second.to_string()))
            .expression_attribute_values(
                ":cutoff",
                AttributeValue::N((second - LastUsed::EVERY.whole_seconds()).to_string()),
            )
            .build()
            .map_err(unavailable)?;
        match self.update_one(update).await {
            // Recorded less than an hour ago, or deleted meanwhile: nothing to write.
            Err(StoreError::VersionMismatch) => Ok(()),
            done => done,
        }
    }
}
