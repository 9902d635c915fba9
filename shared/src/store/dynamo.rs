//! DynamoDB adapter. One table; the owner is in the partition key, so no query
//! can reach another owner's items.
//!
//! | item                | pk           | sk                  |
//! |---------------------|--------------|---------------------|
//! | connection          | `USER#<sub>` | `CONN#<id>`         |
//! | name reservation    | `USER#<sub>` | `NAME#<folded name>`|
//! | per-owner counter   | `USER#<sub>` | `OWNER`             |
//! | idempotency record  | `USER#<sub>` | `IDEM#<key>`        | (TTL `expires_at`)
//! | verification count  | `USER#<sub>` | `RATE#<minute>`     | (TTL `expires_at`)
//!
//! The recheck function finds due connections through the sparse index `due`
//! (`due_shard` = `DUE`, `due_at` = Unix seconds): only connection items that
//! need a look carry those attributes, so one query reads only due items.
//!
//! Delete is one call: it removes the connection and decrements the counter but
//! leaves the name reservation behind, since its key is only known from the
//! item. A reservation whose connection is gone is stale, and the next create or
//! rename that wants the name takes it over in its own transaction, on the
//! condition that the holder still does not exist.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::DisplayErrorContext;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeValue, ConditionCheck, Delete, Put, ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update,
};

use super::{
    Announced, ConnectionStore, Due, DueAt, DuePage, Expected, IdempotencyRecord, Page, StoreError, verification_window,
};
use crate::domain::{Connection, ConnectionId, LastUsed, Owner, Status};
use crate::seal::Sealed;

pub const PARTITION_KEY: &str = "pk";
pub const SORT_KEY: &str = "sk";
const SECRET: &str = "secret";
const NAME_FOLDED: &str = "name_folded";
const CONNECTION_ID: &str = "connection_id";
const COUNT: &str = "connection_count";
const FINGERPRINT: &str = "fingerprint";
const RESPONSE: &str = "response";
pub const DUE_INDEX: &str = "due";
const DUE_SHARD: &str = "due_shard";
const DUE_SHARD_VALUE: &str = "DUE";
const DUE_AT: &str = "due_at";
const NOTIFIED: &str = "notified_status";
const LAST_USED: &str = "last_used";
/// The second of `last_used.at`, for the once-an-hour condition (RFC 3339 text does
/// not compare in order).
const LAST_USED_SECOND: &str = "last_used_second";
/// The table's TTL attribute: DynamoDB removes expired idempotency records.
const EXPIRES_AT: &str = "expires_at";
/// Attributes of the public resource: what `get` and `list` project, never the secret.
const PUBLIC_FIELDS: &[&str] = &[
    "id",
    "name",
    "provider",
    "url",
    "username",
    "credential_type",
    "resource",
    "account",
    "scopes",
    "capabilities",
    "warnings",
    "git_username",
    "expires_at",
    "last_used",
    "status",
    "status_reason",
    "status_detail",
    "verified_at",
    "created_at",
    "updated_at",
    "version",
];
/// Another writer's transaction on the same items (DynamoDB cancels with
/// `TransactionConflict`) is retried with full-jitter exponential backoff for
/// up to this long, then reported as unavailable.
const CONFLICT_BUDGET: std::time::Duration = std::time::Duration::from_millis(5_000);
const BACKOFF_BASE_MS: u64 = 10;
const BACKOFF_CAP_MS: u64 = 500;
/// Rounds of taking over a stale name reservation: another writer may take it
/// first, and then the name is rightly theirs.
const TAKEOVER_ROUNDS: usize = 3;

type Item = HashMap<String, AttributeValue>;

#[derive(Clone, Debug)]
pub struct DynamoStore {
    client: Client,
    table: String,
}

impl DynamoStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into() }
    }

    fn key(owner: &Owner, sk: String) -> Item {
        HashMap::from([
            (PARTITION_KEY.to_owned(), AttributeValue::S(format!("USER#{}", owner.as_str()))),
            (SORT_KEY.to_owned(), AttributeValue::S(sk)),
        ])
    }

    fn connection_key(owner: &Owner, id: &str) -> Item {
        Self::key(owner, format!("CONN#{id}"))
    }

    fn name_key(owner: &Owner, folded: &str) -> Item {
        Self::key(owner, format!("NAME#{folded}"))
    }

    fn idempotency_key(owner: &Owner, key: &str) -> Item {
        Self::key(owner, format!("IDEM#{key}"))
    }

    fn owner_key(owner: &Owner) -> Item {
        Self::key(owner, "OWNER".to_owned())
    }

    /// Reserves `folded` for `id`: a new reservation, or the takeover of one
    /// whose holder `stale` no longer exists (see `stale_holder_gone`).
    fn name_reservation(
        &self,
        owner: &Owner,
        folded: &str,
        id: &str,
        stale: Option<&str>,
    ) -> Result<TransactWriteItem, StoreError> {
        let mut item = Self::name_key(owner, folded);
        item.insert(CONNECTION_ID.into(), AttributeValue::S(id.to_owned()));
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        let put = match stale {
            None => put.condition_expression("attribute_not_exists(pk)"),
            Some(stale) => put
                .condition_expression("#cid = :stale")
                .expression_attribute_names("#cid", CONNECTION_ID)
                .expression_attribute_values(":stale", AttributeValue::S(stale.to_owned())),
        };
        Ok(TransactWriteItem::builder().put(put.build().map_err(unavailable)?).build())
    }

    /// The condition under which a reservation held by `stale` may be taken over.
    fn stale_holder_gone(&self, owner: &Owner, stale: &str) -> Result<TransactWriteItem, StoreError> {
        let check = ConditionCheck::builder()
            .table_name(&self.table)
            .set_key(Some(Self::connection_key(owner, stale)))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(unavailable)?;
        Ok(TransactWriteItem::builder().condition_check(check).build())
    }

    fn release_name(&self, owner: &Owner, folded: &str, id: &str) -> Result<TransactWriteItem, StoreError> {
        let delete = Delete::builder()
            .table_name(&self.table)
            .set_key(Some(Self::name_key(owner, folded)))
            .condition_expression("#cid = :cid")
            .expression_attribute_names("#cid", CONNECTION_ID)
            .expression_attribute_values(":cid", AttributeValue::S(id.to_owned()))
            .build()
            .map_err(unavailable)?;
        Ok(TransactWriteItem::builder().delete(delete).build())
    }

    fn count_change(&self, owner: &Owner, delta: i64, max: Option<usize>) -> Result<TransactWriteItem, StoreError> {
        let mut update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(Self::owner_key(owner)))
            .update_expression("ADD #n :delta")
            .expression_attribute_names("#n", COUNT)
            .expression_attribute_values(":delta", AttributeValue::N(delta.to_string()));
        if let Some(max) = max {
            update = update
                .condition_expression("attribute_not_exists(#n) OR #n < :max")
                .expression_attribute_values(":max", AttributeValue::N(max.to_string()));
        }
        Ok(TransactWriteItem::builder().update(update.build().map_err(unavailable)?).build())
    }

    /// Sets every public attribute of `next` (and the secret when given), only
    /// if the stored version is still `previous.version`.
    fn conditional_update(
        &self,
        owner: &Owner,
        next: &Connection,
        expected: u64,
        sealed: Option<&Sealed>,
        due: DueAt,
        notified: Option<Status>,
    ) -> Result<Update, StoreError> {
        let mut attributes = public_item(next)?;
        attributes.insert(NAME_FOLDED.into(), AttributeValue::S(next.folded_name()));
        if let Some(sealed) = sealed {
            attributes.insert(SECRET.into(), AttributeValue::B(sealed.0.clone().into()));
        }
        if let Some(notified) = notified {
            attributes.insert(NOTIFIED.into(), status_value(notified));
        }
        attributes.extend(due_attributes(due));
        let mut update = Update::builder().table_name(&self.table).set_key(Some(Self::connection_key(owner, &next.id)));
        let mut sets = Vec::new();
        let mut removes = Vec::new();
        let kept_unless_given = [SECRET, NOTIFIED];
        for (i, field) in
            PUBLIC_FIELDS.iter().chain([NAME_FOLDED, SECRET, NOTIFIED, DUE_SHARD, DUE_AT].iter()).enumerate()
        {
            let name = format!("#f{i}");
            match attributes.remove(*field) {
                Some(value) => {
                    sets.push(format!("{name} = :f{i}"));
                    update = update.expression_attribute_values(format!(":f{i}"), value);
                }
                // A field that became empty (status_reason after a good verify) goes away;
                // the secret is only ever replaced, never removed.
                None if !kept_unless_given.contains(field) => removes.push(name.clone()),
                None => continue,
            }
            update = update.expression_attribute_names(name, *field);
        }
        let mut expression = format!("SET {}", sets.join(", "));
        if !removes.is_empty() {
            expression.push_str(&format!(" REMOVE {}", removes.join(", ")));
        }
        update
            .update_expression(expression)
            .condition_expression("attribute_exists(pk) AND #v = :expected")
            .expression_attribute_names("#v", "version")
            .expression_attribute_values(":expected", AttributeValue::N(expected.to_string()))
            .build()
            .map_err(unavailable)
    }

    async fn transact(&self, items: Vec<TransactWriteItem>) -> Result<(), Vec<Cancellation>> {
        let mut backoff = Backoff::new();
        loop {
            let result = self.client.transact_write_items().set_transact_items(Some(items.clone())).send().await;
            match result {
                Ok(_) => return Ok(()),
                Err(error) => {
                    let reasons = cancellation_reasons(error.as_service_error());
                    let conflict = reasons.iter().any(|r| r.code.as_deref() == Some("TransactionConflict"));
                    if conflict {
                        if backoff.wait().await {
                            continue;
                        }
                        tracing::warn!(
                            attempts = backoff.attempts(),
                            "transaction conflicts outlasted the retry budget"
                        );
                    }
                    if reasons.is_empty() {
                        tracing::error!(error = %DisplayErrorContext(&error), "TransactWriteItems failed");
                        return Err(vec![Cancellation { code: Some("Unavailable".into()), item: None }]);
                    }
                    return Err(reasons);
                }
            }
        }
    }

    /// One conditional UpdateItem: a single item needs no transaction (which
    /// would cost twice the write capacity). An in-flight transaction on the item
    /// (`TransactionConflictException`) is waited out like a cancelled transaction.
    async fn update_one(&self, update: Update) -> Result<(), StoreError> {
        let mut backoff = Backoff::new();
        loop {
            let result = self
                .client
                .update_item()
                .table_name(update.table_name())
                .set_key(Some(update.key().clone()))
                .update_expression(update.update_expression())
                .set_condition_expression(update.condition_expression().map(str::to_owned))
                .set_expression_attribute_names(update.expression_attribute_names().cloned())
                .set_expression_attribute_values(update.expression_attribute_values().cloned())
                .send()
                .await;
            let error = match result {
                Ok(_) => return Ok(()),
                Err(error) => error,
            };
            match error.as_service_error() {
                Some(e) if e.is_conditional_check_failed_exception() => return Err(StoreError::VersionMismatch),
                Some(e) if e.is_transaction_conflict_exception() => {
                    if backoff.wait().await {
                        continue;
                    }
                    return Err(StoreError::Unavailable("transaction conflicts outlasted the retry budget".into()));
                }
                _ => return Err(unavailable(error)),
            }
        }
    }

    /// Runs the transaction `build` makes for a reservation of a name, taking
    /// over a stale reservation when the name's holder no longer exists.
    /// `name_at` is the index of the reservation in the transaction.
    async fn transact_reserving(
        &self,
        owner: &Owner,
        id: &str,
        name_at: usize,
        build: impl Fn(Option<&str>) -> Result<Vec<TransactWriteItem>, StoreError>,
    ) -> Result<(), Vec<Cancellation>> {
        let mut stale: Option<String> = None;
        for _ in 0..TAKEOVER_ROUNDS {
            let mut items = build(stale.as_deref()).map_err(|e| vec![Cancellation::unavailable(e)])?;
            if let Some(stale) = &stale {
                items.push(self.stale_holder_gone(owner, stale).map_err(|e| vec![Cancellation::unavailable(e)])?);
            }
            let check_at = items.len() - 1;
            let reasons = match self.transact(items).await {
                Ok(()) => return Ok(()),
                Err(reasons) => reasons,
            };
            if stale.is_some() && failed_condition(&reasons, check_at) {
                // The holder exists: the name is taken.
                return Err(mark_failed(reasons.len(), name_at));
            }
            if !failed_condition(&reasons, name_at) {
                return Err(reasons);
            }
            let holder = reasons[name_at]
                .item
                .as_ref()
                .and_then(|item| item.get(CONNECTION_ID))
                .and_then(|v| v.as_s().ok())
                .cloned();
            match holder {
                Some(holder) if holder == id => return Err(reasons),
                holder => stale = holder,
            }
        }
        Err(mark_failed(name_at + 1, name_at))
    }
}

/// Full-jitter exponential backoff within `CONFLICT_BUDGET`, for writes that
/// another in-flight transaction holds off.
struct Backoff {
    started: std::time::Instant,
    attempt: u32,
}

impl Backoff {
    fn new() -> Self {
        Self { started: std::time::Instant::now(), attempt: 0 }
    }

    /// Waits before the next attempt; `false` when the budget would be exceeded.
    async fn wait(&mut self) -> bool {
        let ceiling = BACKOFF_CAP_MS.min(BACKOFF_BASE_MS << self.attempt.min(10));
        let wait = std::time::Duration::from_millis(fastrand::u64(0..=ceiling));
        if self.started.elapsed() + wait >= CONFLICT_BUDGET {
            return false;
        }
        self.attempt += 1;
        tokio::time::sleep(wait).await;
        true
    }

    fn attempts(&self) -> u32 {
        self.attempt + 1
    }
}

/// Why one item of a cancelled transaction failed, with the item as it was
/// when the request asked for it (`ReturnValuesOnConditionCheckFailure`).
struct Cancellation {
    code: Option<String>,
    item: Option<Item>,
}

/// The code only: a returned connection item holds the sealed secret, which
/// has no business in a log line.
impl std::fmt::Debug for Cancellation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.code.as_deref().unwrap_or("None"))
    }
}

impl Cancellation {
    fn unavailable(error: StoreError) -> Self {
        Self { code: Some(format!("Unavailable: {error}")), item: None }
    }
}

fn cancellation_reasons(error: Option<&TransactWriteItemsError>) -> Vec<Cancellation> {
    match error {
        Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) => cancelled
            .cancellation_reasons()
            .iter()
            .map(|r| Cancellation { code: r.code().map(str::to_owned), item: r.item().cloned() })
            .collect(),
        _ => Vec::new(),
    }
}

/// Reasons in which only the item at `index` failed its condition.
fn mark_failed(len: usize, index: usize) -> Vec<Cancellation> {
    (0..len.max(index + 1))
        .map(|i| Cancellation { code: (i == index).then(|| "ConditionalCheckFailed".to_owned()), item: None })
        .collect()
}

fn now_seconds() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn update_error(reasons: &[Cancellation]) -> StoreError {
    if failed_condition(reasons, 0) || failed_condition(reasons, 1) {
        StoreError::VersionMismatch
    } else if failed_condition(reasons, 2) {
        StoreError::DuplicateName
    } else {
        StoreError::Unavailable(format!("update cancelled: {reasons:?}"))
    }
}

fn failed_condition(reasons: &[Cancellation], index: usize) -> bool {
    reasons.get(index).and_then(|r| r.code.as_deref()) == Some("ConditionalCheckFailed")
}

fn unavailable<E: std::error::Error>(error: E) -> StoreError {
    StoreError::Unavailable(DisplayErrorContext(error).to_string())
}

fn status_value(status: Status) -> AttributeValue {
    AttributeValue::S(serde_json::to_value(status).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default())
}

/// The sparse index's attributes: present only while the item is due.
fn due_attributes(due: DueAt) -> Vec<(String, AttributeValue)> {
    match due.second(now_seconds()) {
        Some(at) => vec![
            (DUE_SHARD.to_owned(), AttributeValue::S(DUE_SHARD_VALUE.to_owned())),
            (DUE_AT.to_owned(), AttributeValue::N(at.to_string())),
        ],
        None => Vec::new(),
    }
}

fn due_from(mut item: Item) -> Result<Due, StoreError> {
    let owner = item
        .get(PARTITION_KEY)
        .and_then(|v| v.as_s().ok())
        .and_then(|pk| pk.strip_prefix("USER#"))
        .and_then(Owner::parse)
        .ok_or_else(|| StoreError::Corrupt("due item without an owner".into()))?;
    let sealed = match item.remove(SECRET) {
        Some(AttributeValue::B(blob)) => Sealed(blob.into_inner()),
        _ => return Err(StoreError::Corrupt("connection item without a secret".into())),
    };
    let notified = item
        .get(NOTIFIED)
        .and_then(|v| v.as_s().ok())
        .and_then(|s| serde_json::from_value(serde_json::Value::String(s.clone())).ok())
        .unwrap_or(Status::Verified);
    Ok(Due { owner, connection: connection_from(item)?, sealed, notified })
}

fn public_item(connection: &Connection) -> Result<Item, StoreError> {
    serde_dynamo::to_item(connection).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn connection_from(item: Item) -> Result<Connection, StoreError> {
    serde_dynamo::from_item(item).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn projection() -> (String, HashMap<String, String>) {
    let names: HashMap<String, String> =
        PUBLIC_FIELDS.iter().enumerate().map(|(i, f)| (format!("#p{i}"), (*f).to_owned())).collect();
    let expression = (0..PUBLIC_FIELDS.len()).map(|i| format!("#p{i}")).collect::<Vec<_>>().join(", ");
    (expression, names)
}

#[async_trait]
impl ConnectionStore for DynamoStore {
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
        item.extend(due_attributes(DueAt::Now));
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
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(Self::connection_key(owner, &id.to_string())))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        let Some(mut item) = output.item else { return Ok(None) };
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
        let items = output.items.unwrap_or_default().into_iter().map(connection_from).collect::<Result<Vec<_>, _>>()?;
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
        // One unreadable item must not stop the recheck for everyone: it is left out (and logged).
        let items = output
            .items
            .unwrap_or_default()
            .into_iter()
            .filter_map(|item| {
                let sk = item.get(SORT_KEY).and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
                due_from(item).map_err(|e| tracing::error!(sk, error = %e, "unreadable due connection")).ok()
            })
            .collect();
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
