use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, Update};

use super::{Announced, Due, DueAt, DuePage, Schedule};
use crate::domain::{Connection, ConnectionId, Owner, Status};
use crate::store::StoreError;
use crate::store::dynamo::{
    DUE_AT, DUE_INDEX, DUE_SHARD, DynamoStore, Item, NOTIFIED, PARTITION_KEY, SORT_KEY, due_from, due_shard,
    due_shards, now_seconds, status_value, unavailable,
};

/// Where a reading of the `due` index stands: the shard, and the key to go on from.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct DueCursor {
    shard: usize,
    key: Option<HashMap<String, String>>,
}

impl DynamoStore {
    /// Takes an item out of the `due` index if it is still due at `seen` (the index is
    /// read eventually consistently: a re-add in between keeps its schedule); a failure is
    /// logged, and the item is left out again by the next run.
    async fn unschedule(&self, key: Item, seen: Option<AttributeValue>) {
        let removed = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key))
            .condition_expression("#d = :seen")
            .update_expression("REMOVE #s, #d")
            .expression_attribute_names("#s", DUE_SHARD)
            .expression_attribute_names("#d", DUE_AT)
            .expression_attribute_values(":seen", seen.unwrap_or(AttributeValue::Null(true)))
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
        let shards = due_shards();
        let mut cursor: DueCursor = match after {
            Some(text) => serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("due cursor: {e}")))?,
            None => DueCursor::default(),
        };
        let mut items = Vec::new();
        // Empty shards are passed over within one call; a page ends where a shard does.
        loop {
            let Some(shard) = shards.get(cursor.shard) else { return Ok(DuePage { items, next: None }) };
            let start: Option<Item> = cursor.key.take().map(|keys| {
                keys.into_iter()
                    .map(|(k, v)| {
                        let value = if k == DUE_AT { AttributeValue::N(v) } else { AttributeValue::S(v) };
                        (k, value)
                    })
                    .collect()
            });
            let output = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(DUE_INDEX)
                .key_condition_expression("#s = :s AND #d <= :now")
                .expression_attribute_names("#s", DUE_SHARD)
                .expression_attribute_names("#d", DUE_AT)
                .expression_attribute_values(":s", AttributeValue::S(shard.clone()))
                .expression_attribute_values(":now", AttributeValue::N(now.to_string()))
                .limit(i32::try_from(limit.max(1)).unwrap_or(i32::MAX))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(unavailable)?;
            // One unreadable item must not stop the recheck for everyone: it is left out,
            // logged, and taken off the schedule until it is deleted and added again.
            for item in output.items.unwrap_or_default() {
                let seen = item.get(DUE_AT).cloned();
                let key: Item = item
                    .iter()
                    .filter(|(k, _)| *k == PARTITION_KEY || *k == SORT_KEY)
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                match due_from(item) {
                    Ok(due) => items.push(due),
                    Err(error) => {
                        let sk = key.get(SORT_KEY).and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
                        tracing::error!(sk, error = %error, "unreadable due connection: not rechecked until it is deleted and added again");
                        self.unschedule(key, seen).await;
                    }
                }
            }
            match output.last_evaluated_key {
                Some(key) => {
                    let plain = key
                        .into_iter()
                        .filter_map(|(k, v)| match v {
                            AttributeValue::S(s) | AttributeValue::N(s) => Some((k, s)),
                            _ => None,
                        })
                        .collect();
                    cursor.key = Some(plain);
                }
                None => cursor.shard += 1,
            }
            let more = cursor.shard < shards.len();
            if !items.is_empty() || !more {
                let next = more.then(|| serde_json::to_string(&cursor).unwrap_or_default());
                return Ok(DuePage { items, next });
            }
        }
    }

    async fn due_one(&self, owner: &Owner, id: &ConnectionId) -> Result<Option<Due>, StoreError> {
        self.connection_item(owner, &id.to_string()).await?.map(due_from).transpose()
    }

    async fn lease(&self, owner: &Owner, id: &str, seen: i64, until: i64) -> Result<bool, StoreError> {
        let leased = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::connection_key(owner, id)))
            .condition_expression("#d = :seen")
            .update_expression("SET #d = :until")
            .expression_attribute_names("#d", DUE_AT)
            .expression_attribute_values(":seen", AttributeValue::N(seen.to_string()))
            .expression_attribute_values(":until", AttributeValue::N(until.to_string()))
            .send()
            .await;
        match leased {
            Ok(_) => Ok(true),
            Err(error) if error.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) => {
                Ok(false)
            }
            Err(error) => Err(unavailable(error)),
        }
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
                .expression_attribute_values(":shard", AttributeValue::S(due_shard(owner, announced.id)))
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
