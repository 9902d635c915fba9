use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, Update};

use super::{Announced, DueAt, DuePage, Schedule};
use crate::domain::{Connection, Owner, Status};
use crate::store::StoreError;
use crate::store::dynamo::{
    DUE_AT, DUE_INDEX, DUE_SHARD, DUE_SHARD_VALUE, DynamoStore, Item, NOTIFIED, PARTITION_KEY, SORT_KEY, due_from,
    now_seconds, status_value, unavailable,
};

impl DynamoStore {
    /// Takes an item out of the `due` index; a failure is logged, and the item is
    /// left out again by the next run.
    async fn unschedule(&self, key: Item) {
        let removed = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key))
            .condition_expression("attribute_exists(pk)")
            .update_expression("REMOVE #s, #d")
            .expression_attribute_names("#s", DUE_SHARD)
            .expression_attribute_names("#d", DUE_AT)
            .send()
            .await;
        if let Err(error) = removed {
            tracing::error!(error = %unavailable(error), "could not take an unreadable connection off the schedule");
        }
    }
}

#[async_trait]
impl Schedule for DynamoStore {
    async fn due(&self, now: i64, limit: usize, after: Option<&str>) -> Result<DuePage, StoreError> {
        let start: Option<Item> = match after {
            Some(text) => {
                let keys: HashMap<String, String> =
                    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("due cursor: {e}")))?;
                Some(
                    keys.into_iter()
                        .map(|(k, v)| {
                            let value = if k == DUE_AT { AttributeValue::N(v) } else { AttributeValue::S(v) };
                            (k, value)
                        })
                        .collect(),
                )
            }
            None => None,
        };
        let output = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(DUE_INDEX)
            .key_condition_expression("#s = :s AND #d <= :now")
            .expression_attribute_names("#s", DUE_SHARD)
            .expression_attribute_names("#d", DUE_AT)
            .expression_attribute_values(":s", AttributeValue::S(DUE_SHARD_VALUE.into()))
            .expression_attribute_values(":now", AttributeValue::N(now.to_string()))
            .limit(i32::try_from(limit).unwrap_or(i32::MAX))
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(unavailable)?;
        // One unreadable item must not stop the recheck for everyone: it is left out,
        // logged, and taken off the schedule until a user's edit or re-add.
        let mut items = Vec::new();
        for item in output.items.unwrap_or_default() {
            let key: Item = item
                .iter()
                .filter(|(k, _)| *k == PARTITION_KEY || *k == SORT_KEY)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            match due_from(item) {
                Ok(due) => items.push(due),
                Err(error) => {
                    let sk = key.get(SORT_KEY).and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
                    tracing::error!(sk, error = %error, "unreadable due connection: not rechecked until it is edited");
                    self.unschedule(key).await;
                }
            }
        }
        let next = output.last_evaluated_key.map(|key| {
            let plain: HashMap<String, String> = key
                .into_iter()
                .filter_map(|(k, v)| match v {
                    AttributeValue::S(s) | AttributeValue::N(s) => Some((k, s)),
                    _ => None,
                })
                .collect();
            serde_json::to_string(&plain).unwrap_or_default()
        });
        Ok(DuePage { items, next })
    }

    async fn record_check(
        &self,
        owner: &Owner,
        previous: &Connection,
        next: &Connection,
        notified: Status,
        due: DueAt,
    ) -> Result<(), StoreError> {
        let update = self.conditional_update(owner, next, previous.version, None, due, Some(notified))?;
        self.update_one(update).await
    }

    async fn mark_announced(&self, owner: &Owner, announced: Announced<'_>) -> Result<(), StoreError> {
        let base = |condition: &str| {
            Update::builder()
                .table_name(&self.table)
                .set_key(Some(Self::connection_key(owner, announced.id)))
                .condition_expression(condition)
                .expression_attribute_names("#n", NOTIFIED)
                .expression_attribute_values(":to", status_value(announced.to))
                .expression_attribute_values(":from", status_value(announced.from))
        };
        // Unchanged since the check: the schedule moves on with the announcement.
        let reschedule = base("attribute_exists(pk) AND #n = :from AND #v = :version")
            .expression_attribute_names("#v", "version")
            .expression_attribute_values(":version", AttributeValue::N(announced.version.to_string()))
            .expression_attribute_names("#s", DUE_SHARD)
            .expression_attribute_names("#a", DUE_AT);
        let reschedule = match announced.then.second(now_seconds()) {
            Some(at) => reschedule
                .update_expression("SET #n = :to, #s = :shard, #a = :at")
                .expression_attribute_values(":shard", AttributeValue::S(DUE_SHARD_VALUE.to_owned()))
                .expression_attribute_values(":at", AttributeValue::N(at.to_string())),
            None => reschedule.update_expression("SET #n = :to REMOVE #s, #a"),
        };
        match self.update_one(reschedule.build().map_err(unavailable)?).await {
            Err(StoreError::VersionMismatch) => {}
            done => return done,
        }
        // A user edit came in between: it made the connection due already, so only the
        // announcement is recorded; the next run reschedules it.
        let update = base("attribute_exists(pk) AND #n = :from").update_expression("SET #n = :to");
        self.update_one(update.build().map_err(unavailable)?).await
    }
}
