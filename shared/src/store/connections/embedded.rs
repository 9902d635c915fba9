use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};

use super::{Connections, Expected, Page};
use crate::domain::{Connection, ConnectionId, LastUsed, Owner};
use crate::seal::Sealed;
use crate::store::embedded::{EmbeddedStore, decode, encode, now_seconds, sql_error};
use crate::store::{IdempotencyRecord, StoreError};

#[async_trait]
impl Connections for EmbeddedStore {
    async fn create(
        &self,
        owner: &Owner,
        connection: &Connection,
        sealed: &Sealed,
        max_per_owner: usize,
        idempotency: Option<&IdempotencyRecord>,
    ) -> Result<(), StoreError> {
        let idempotency = idempotency.cloned();
        let (owner, doc, sealed) = (owner.as_str().to_owned(), encode(connection)?, sealed.0.clone());
        let (id, folded, version) = (connection.id.clone(), connection.folded_name(), connection.version);
        self.with_db(move |db| {
            let tx = db.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(sql_error)?;
            let count: i64 = tx.query_row("SELECT COUNT(*) FROM connections WHERE owner = ?1", [&owner], |r| r.get(0)).map_err(sql_error)?;
            if usize::try_from(count).unwrap_or(usize::MAX) >= max_per_owner {
                return Err(StoreError::TooManyConnections);
            }
            if let Some(record) = &idempotency {
                let now = time::OffsetDateTime::now_utc().unix_timestamp();
                tx.execute("DELETE FROM idempotency_records WHERE owner = ?1 AND key = ?2 AND expires_at < ?3", params![owner, record.key, now])
                    .map_err(sql_error)?;
                tx.execute(
                    "INSERT INTO idempotency_records (owner, key, fingerprint, connection_id, response, expires_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![owner, record.key, record.fingerprint, record.connection_id, record.response, record.expires_at],
                )
                .map_err(|e| match sql_error(e) {
                    StoreError::DuplicateName => StoreError::IdempotencyKeyTaken,
                    other => other,
                })?;
            }
            tx.execute(
                "INSERT INTO connections (owner, id, name_folded, version, doc, sealed, due_at, notified)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'verified')",
                params![owner, id, folded, version, doc, sealed, now_seconds()],
            )
            .map_err(sql_error)?;
            tx.commit().map_err(sql_error)
        })
        .await
    }

    async fn get(&self, owner: &Owner, id: &ConnectionId) -> Result<Option<Connection>, StoreError> {
        Ok(self.get_sealed(owner, id).await?.map(|(connection, _)| connection))
    }

    async fn get_sealed(&self, owner: &Owner, id: &ConnectionId) -> Result<Option<(Connection, Sealed)>, StoreError> {
        let (owner, id) = (owner.as_str().to_owned(), id.to_string());
        let row = self
            .with_db(move |db| {
                db.query_row("SELECT doc, sealed FROM connections WHERE owner = ?1 AND id = ?2", [&owner, &id], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?))
                })
                .optional()
                .map_err(sql_error)
            })
            .await?;
        row.map(|(doc, sealed)| Ok((decode(&doc)?, Sealed(sealed)))).transpose()
    }

    async fn list(&self, owner: &Owner, limit: usize, after: Option<&ConnectionId>) -> Result<Page, StoreError> {
        let (owner, after) = (owner.as_str().to_owned(), after.map(ToString::to_string).unwrap_or_default());
        let fetch = i64::try_from(limit).unwrap_or(i64::MAX).saturating_add(1);
        let mut rows = self
            .with_db(move |db| {
                let mut statement = db
                    .prepare_cached("SELECT id, doc FROM connections WHERE owner = ?1 AND id > ?2 ORDER BY id LIMIT ?3")
                    .map_err(sql_error)?;
                let rows = statement
                    .query_map(params![owner, after, fetch], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
                    .map_err(sql_error)?;
                rows.collect::<Result<Vec<(String, String)>, _>>().map_err(sql_error)
            })
            .await?;
        let next = if rows.len() > limit {
            rows.truncate(limit);
            rows.last().and_then(|(id, _)| ConnectionId::parse(id))
        } else {
            None
        };
        // One unreadable connection must not hide the others: left out and logged.
        let items = rows
            .iter()
            .filter_map(|(id, doc)| {
                decode(doc).map_err(|e| tracing::error!(connection_id = %id, error = %e, "unreadable connection left out of a list")).ok()
            })
            .collect();
        Ok(Page { items, next })
    }

    async fn update(
        &self,
        owner: &Owner,
        previous: &Connection,
        next: &Connection,
        sealed: Option<&Sealed>,
    ) -> Result<(), StoreError> {
        let (owner, doc, sealed) = (owner.as_str().to_owned(), encode(next)?, sealed.map(|s| s.0.clone()));
        let (id, folded, version, expected) = (next.id.clone(), next.folded_name(), next.version, previous.version);
        self.with_db(move |db| {
            let changed = db
                .execute(
                    "UPDATE connections SET name_folded = ?1, version = ?2, doc = ?3, sealed = COALESCE(?4, sealed), due_at = ?8
                     WHERE owner = ?5 AND id = ?6 AND version = ?7",
                    params![folded, version, doc, sealed, owner, id, expected, now_seconds()],
                )
                .map_err(sql_error)?;
            if changed == 0 { Err(StoreError::VersionMismatch) } else { Ok(()) }
        })
        .await
    }

    async fn delete(&self, owner: &Owner, id: &ConnectionId, expected: Expected<'_>) -> Result<(), StoreError> {
        let (owner, id) = (owner.as_str().to_owned(), id.to_string());
        let expected = match expected {
            Expected::Any => None,
            Expected::Versions(versions) => Some(versions.to_vec()),
        };
        self.with_db(move |db| {
            let tx = db.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(sql_error)?;
            let stored: Option<u64> = tx
                .query_row("SELECT version FROM connections WHERE owner = ?1 AND id = ?2", [&owner, &id], |r| r.get(0))
                .optional()
                .map_err(sql_error)?;
            match (stored, expected) {
                (None, _) => return Err(StoreError::NotFound),
                (Some(stored), Some(expected)) if !expected.contains(&stored) => {
                    return Err(StoreError::VersionMismatch);
                }
                _ => {}
            }
            tx.execute("DELETE FROM connections WHERE owner = ?1 AND id = ?2", [&owner, &id]).map_err(sql_error)?;
            tx.commit().map_err(sql_error)
        })
        .await
    }

    async fn record_use(&self, owner: &Owner, id: &ConnectionId, used: &LastUsed) -> Result<(), StoreError> {
        let (owner, id, used) = (owner.as_str().to_owned(), id.to_string(), used.clone());
        self.with_db(move |db| {
            let doc: Option<String> = db
                .query_row("SELECT doc FROM connections WHERE owner = ?1 AND id = ?2", [&owner, &id], |r| r.get(0))
                .optional()
                .map_err(sql_error)?;
            let Some(doc) = doc else { return Ok(()) };
            let mut connection = decode(&doc)?;
            if connection.last_used.as_ref().is_some_and(|last| last.at > used.at - LastUsed::EVERY) {
                return Ok(());
            }
            connection.last_used = Some(used);
            // Matched on the document read: a write in between wins, and this use waits for the next.
            db.execute(
                "UPDATE connections SET doc = ?1 WHERE owner = ?2 AND id = ?3 AND doc = ?4",
                params![encode(&connection)?, owner, id, doc],
            )
            .map_err(sql_error)?;
            Ok(())
        })
        .await
    }
}
