//! DynamoDB adapter. One table; the owner is in the partition key, so no query
//! can reach another owner's items.
//!
//! | item                | pk           | sk                  |
//! |---------------------|--------------|---------------------|
//! | connection          | `USER#<sub>` | `CONN#<id>`         |
//! | name reservation    | `USER#<sub>` | `NAME#<folded name>`|
//! | per-owner counter   | `USER#<sub>` | `OWNER`             |
//! | idempotency record  | `USER#<sub>` | `IDEM#<key>`        | (TTL `expires_at`)
//! | verification slots  | `USER#<sub>` | `RATE#checks`       | (TTL `expires_at`; slots `s<n>`)
//! | browse budget       | `USER#<sub>` | `BROWSE`            | (TTL `expires_at`; a document)
//!
//! The recheck function finds due connections through the sparse index `due`
//! (`due_shard` = `DUE#0` … `DUE#15` by a hash of the connection's key, or `DUE` on
//! items written before the sharding; `due_at` = Unix seconds): only connection items
//! that need a look carry those attributes, so its queries read only due items.
//!
//! Delete is one call: it removes the connection and decrements the counter but
//! leaves the name reservation behind, since its key is only known from the
//! item. A reservation whose connection is gone is stale, and the next create or
//! rename that wants the name takes it over in its own transaction, on the
//! condition that the holder still does not exist.

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::DisplayErrorContext;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeValue, ConditionCheck, Delete, Put, ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update,
};

use super::{Due, DueAt, StoreError};
use crate::domain::{Connection, Owner, Status};
use crate::seal::Sealed;

pub const PARTITION_KEY: &str = "pk";
pub const SORT_KEY: &str = "sk";
pub(super) const SECRET: &str = "secret";
pub(super) const NAME_FOLDED: &str = "name_folded";
pub(super) const CONNECTION_ID: &str = "connection_id";
pub(super) const COUNT: &str = "connection_count";
pub(super) const FINGERPRINT: &str = "fingerprint";
pub(super) const RESPONSE: &str = "response";
pub const DUE_INDEX: &str = "due";
pub(super) const DUE_SHARD: &str = "due_shard";
/// What items due before the index was sharded carry; still read until none is left.
pub(super) const LEGACY_DUE_SHARD: &str = "DUE";
/// The `due` index's partition keys, `DUE#0` … `DUE#15`: one key takes at most about
/// 1,000 writes a second, and every check writes the index.
pub(super) const DUE_SHARDS: u32 = 16;
pub(super) const DUE_AT: &str = "due_at";
pub(super) const NOTIFIED: &str = "notified_status";
pub(super) const LAST_USED: &str = "last_used";
/// The second of `last_used.at`, for the once-an-hour condition (RFC 3339 text does
/// not compare in order).
pub(super) const LAST_USED_SECOND: &str = "last_used_second";
/// The table's TTL attribute: DynamoDB removes expired idempotency records.
pub(super) const EXPIRES_AT: &str = "expires_at";
/// Attributes of the public resource: what `get` and `list` project, never the secret.
pub(super) const PUBLIC_FIELDS: &[&str] = &[
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
pub(super) const CONFLICT_BUDGET: std::time::Duration = std::time::Duration::from_millis(5_000);
pub(super) const BACKOFF_BASE_MS: u64 = 10;
pub(super) const BACKOFF_CAP_MS: u64 = 500;
/// Rounds of taking over a stale name reservation: another writer may take it
/// first, and then the name is rightly theirs.
pub(super) const TAKEOVER_ROUNDS: usize = 3;

pub(super) type Item = HashMap<String, AttributeValue>;

#[derive(Clone, Debug)]
pub struct DynamoStore {
    pub(super) client: Client,
    pub(super) table: String,
}

impl DynamoStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into() }
    }

    /// Opens the connection the first request's calls will use (`aws::warm`).
    pub async fn open_connection(&self) -> bool {
        let key = AttributeValue::S("warm-up".into());
        let key = HashMap::from([(PARTITION_KEY.to_owned(), key.clone()), (SORT_KEY.to_owned(), key)]);
        crate::aws::warm::dynamodb(&self.client, &self.table, key).await
    }

    pub(super) fn key(owner: &Owner, sk: String) -> Item {
        HashMap::from([
            (PARTITION_KEY.to_owned(), AttributeValue::S(format!("USER#{}", owner.as_str()))),
            (SORT_KEY.to_owned(), AttributeValue::S(sk)),
        ])
    }

    pub(super) fn connection_key(owner: &Owner, id: &str) -> Item {
        Self::key(owner, format!("CONN#{id}"))
    }

    pub(super) fn name_key(owner: &Owner, folded: &str) -> Item {
        Self::key(owner, format!("NAME#{folded}"))
    }

    pub(super) fn idempotency_key(owner: &Owner, key: &str) -> Item {
        Self::key(owner, format!("IDEM#{key}"))
    }

    pub(super) fn owner_key(owner: &Owner) -> Item {
        Self::key(owner, "OWNER".to_owned())
    }

    /// The whole connection item, secret included, read strongly consistent.
    pub(super) async fn connection_item(&self, owner: &Owner, id: &str) -> Result<Option<Item>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(Self::connection_key(owner, id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        Ok(output.item)
    }

    /// Reserves `folded` for `id`: a new reservation, or the takeover of one
    /// whose holder `stale` no longer exists (see `stale_holder_gone`).
    pub(super) fn name_reservation(
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
    pub(super) fn stale_holder_gone(&self, owner: &Owner, stale: &str) -> Result<TransactWriteItem, StoreError> {
        let check = ConditionCheck::builder()
            .table_name(&self.table)
            .set_key(Some(Self::connection_key(owner, stale)))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(unavailable)?;
        Ok(TransactWriteItem::builder().condition_check(check).build())
    }

    pub(super) fn release_name(&self, owner: &Owner, folded: &str, id: &str) -> Result<TransactWriteItem, StoreError> {
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

    pub(super) fn count_change(
        &self,
        owner: &Owner,
        delta: i64,
        max: Option<usize>,
    ) -> Result<TransactWriteItem, StoreError> {
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
    pub(super) fn conditional_update(
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
        attributes.extend(due_attributes(owner, &next.id, due));
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

    pub(super) async fn transact(&self, items: Vec<TransactWriteItem>) -> Result<(), Vec<Cancellation>> {
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
    pub(super) async fn update_one(&self, update: Update) -> Result<(), StoreError> {
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
    pub(super) async fn transact_reserving(
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
pub(super) struct Backoff {
    started: std::time::Instant,
    attempt: u32,
}

impl Backoff {
    pub(super) fn new() -> Self {
        Self { started: std::time::Instant::now(), attempt: 0 }
    }

    /// Waits before the next attempt; `false` when the budget would be exceeded.
    pub(super) async fn wait(&mut self) -> bool {
        let ceiling = BACKOFF_CAP_MS.min(BACKOFF_BASE_MS << self.attempt.min(10));
        let wait = std::time::Duration::from_millis(fastrand::u64(0..=ceiling));
        if self.started.elapsed() + wait >= CONFLICT_BUDGET {
            return false;
        }
        self.attempt += 1;
        tokio::time::sleep(wait).await;
        true
    }

    pub(super) fn attempts(&self) -> u32 {
        self.attempt + 1
    }
}

/// Why one item of a cancelled transaction failed, with the item as it was
/// when the request asked for it (`ReturnValuesOnConditionCheckFailure`).
pub(super) struct Cancellation {
    pub(super) code: Option<String>,
    pub(super) item: Option<Item>,
}

/// The code only: a returned connection item holds the sealed secret, which
/// has no business in a log line.
impl std::fmt::Debug for Cancellation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.code.as_deref().unwrap_or("None"))
    }
}

impl Cancellation {
    pub(super) fn unavailable(error: StoreError) -> Self {
        Self { code: Some(format!("Unavailable: {error}")), item: None }
    }
}

pub(super) fn cancellation_reasons(error: Option<&TransactWriteItemsError>) -> Vec<Cancellation> {
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
pub(super) fn mark_failed(len: usize, index: usize) -> Vec<Cancellation> {
    (0..len.max(index + 1))
        .map(|i| Cancellation { code: (i == index).then(|| "ConditionalCheckFailed".to_owned()), item: None })
        .collect()
}

pub(super) fn now_seconds() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

pub(super) fn update_error(reasons: &[Cancellation]) -> StoreError {
    if failed_condition(reasons, 0) || failed_condition(reasons, 1) {
        StoreError::VersionMismatch
    } else if failed_condition(reasons, 2) {
        StoreError::DuplicateName
    } else {
        StoreError::Unavailable(format!("update cancelled: {reasons:?}"))
    }
}

pub(super) fn failed_condition(reasons: &[Cancellation], index: usize) -> bool {
    reasons.get(index).and_then(|r| r.code.as_deref()) == Some("ConditionalCheckFailed")
}

pub(super) fn unavailable<E: std::error::Error>(error: E) -> StoreError {
    StoreError::Unavailable(DisplayErrorContext(error).to_string())
}

pub(super) fn status_value(status: Status) -> AttributeValue {
    AttributeValue::S(serde_json::to_value(status).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default())
}

/// The sparse index's attributes: present only while the item is due.
/// The `due` index's partition key for a connection: spread by a hash of its key, the
/// same for every write of it.
pub(super) fn due_shard(owner: &Owner, id: &str) -> String {
    // FNV-1a: stable across builds and platforms, unlike the std hasher.
    let hash = format!("{}#{id}", owner.as_str())
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3));
    format!("DUE#{}", hash % u64::from(DUE_SHARDS))
}

/// Every partition key of the `due` index, in the order a run reads them.
pub(super) fn due_shards() -> Vec<String> {
    std::iter::once(LEGACY_DUE_SHARD.to_owned()).chain((0..DUE_SHARDS).map(|n| format!("DUE#{n}"))).collect()
}

pub(super) fn due_attributes(owner: &Owner, id: &str, due: DueAt) -> Vec<(String, AttributeValue)> {
    match due.second(now_seconds()) {
        Some(at) => vec![
            (DUE_SHARD.to_owned(), AttributeValue::S(due_shard(owner, id))),
            (DUE_AT.to_owned(), AttributeValue::N(at.to_string())),
        ],
        None => Vec::new(),
    }
}

pub(super) fn due_from(mut item: Item) -> Result<Due, StoreError> {
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
    let due_at = item.get(DUE_AT).and_then(|v| v.as_n().ok()).and_then(|n| n.parse().ok());
    Ok(Due { owner, connection: connection_from(item)?, sealed, notified, due_at })
}

pub(super) fn public_item(connection: &Connection) -> Result<Item, StoreError> {
    serde_dynamo::to_item(connection).map_err(|e| StoreError::Corrupt(e.to_string()))
}

pub(super) fn connection_from(item: Item) -> Result<Connection, StoreError> {
    serde_dynamo::from_item(item).map_err(|e| StoreError::Corrupt(e.to_string()))
}

pub(super) fn projection() -> (String, HashMap<String, String>) {
    let names: HashMap<String, String> =
        PUBLIC_FIELDS.iter().enumerate().map(|(i, f)| (format!("#p{i}"), (*f).to_owned())).collect();
    let expression = (0..PUBLIC_FIELDS.len()).map(|i| format!("#p{i}")).collect::<Vec<_>>().join(", ");
    (expression, names)
}
