use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};

use super::{Announced, Due, DueAt, DuePage, Schedule};
use crate::domain::{Connection, ConnectionId, Owner, Status};
use crate::seal::Sealed;
use crate::store::StoreError;
use crate::store::embedded::{EmbeddedStore, decode, due_seconds, encode, sql_error, status_text};

#[async_trait]
impl Schedule for EmbeddedStore {
    async fn due(&self, now: i64, limit: usize, after: Option<&str>) -> Result<DuePage, StoreError> {
        // The continuation is the last row's (due_at, owner, id).
        let after: (i64, String, String) = match after {
            Some(text) => serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("due cursor: {e}")))?,
            None => (i64::MIN, String::new(), String::new()),
        };
        let fetch = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self
            .with_db(move |db| {
                let mut statement = db
                    .prepare_cached(
                        "SELECT owner, id, doc, sealed, COALESCE(notified, 'verified'), due_at FROM connections
                         WHERE due_at IS NOT NULL AND due_at <= ?1 AND (due_at, owner, id) > (?2, ?3, ?4)
                         ORDER BY due_at, owner, id LIMIT ?5",
                    )
                    .map_err(sql_error)?;
                let rows = statement
                    .query_map(params![now, after.0, after.1, after.2, fetch], |r| {
                        Ok((
                            r.get::<_, String>(0)?,
                            r.get::<_, String>(1)?,
                            r.get::<_, String>(2)?,
                            r.get::<_, Vec<u8>>(3)?,
                            r.get::<_, String>(4)?,
                            r.get::<_, i64>(5)?,
                        ))
                    })
                    .map_err(sql_error)?;
                rows.collect::<Result<Vec<_>, _>>().map_err(sql_error)
            })
            .await?;
        let next = (rows.len() == limit)
            .then(|| rows.last().map(|(owner, id, _, _, _, due)| serde_json::json!([due, owner, id]).to_string()))
            .flatten();
        let mut items = Vec::new();
        for (stored_owner, id, doc, sealed, notified, due_at) in rows {
            // One unreadable row must not stop the recheck for everyone: it is left out,
            // logged, and taken off the schedule (if still due as read) until it is deleted and added again.
            let (Some(owner), Ok(connection)) = (Owner::parse(&stored_owner), decode(&doc)) else {
                tracing::error!(connection_id = %id, "unreadable due connection: not rechecked until it is deleted and added again");
                let unscheduled = self
                    .with_db(move |db| {
                        db.execute(
                            "UPDATE connections SET due_at = NULL WHERE owner = ?1 AND id = ?2 AND due_at = ?3",
                            params![stored_owner, id, due_at],
                        )
                        .map_err(sql_error)
                    })
                    .await;
                if let Err(error) = unscheduled {
                    tracing::error!(error = %error, "could not take an unreadable connection off the schedule");
                }
                continue;
            };
            let notified = serde_json::from_value(serde_json::Value::String(notified)).unwrap_or(Status::Verified);
            items.push(Due { owner, connection, sealed: Sealed(sealed), notified, due_at: Some(due_at) });
        }
        Ok(DuePage { items, next })
    }

    async fn due_one(&self, owner: &Owner, id: &ConnectionId) -> Result<Option<Due>, StoreError> {
        let (owner_text, id) = (owner.as_str().to_owned(), id.to_string());
        let row = self
            .with_db(move |db| {
                db.query_row(
                    "SELECT doc, sealed, COALESCE(notified, 'verified'), due_at FROM connections WHERE owner = ?1 AND id = ?2",
                    [&owner_text, &id],
                    |r| Ok((r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?, r.get::<_, String>(2)?, r.get::<_, Option<i64>>(3)?)),
                )
                .optional()
                .map_err(sql_error)
            })
            .await?;
        let Some((doc, sealed, notified, due_at)) = row else { return Ok(None) };
        let notified = serde_json::from_value(serde_json::Value::String(notified)).unwrap_or(Status::Verified);
        Ok(Some(Due { owner: owner.clone(), connection: decode(&doc)?, sealed: Sealed(sealed), notified, due_at }))
    }

    async fn lease(&self, owner: &Owner, id: &str, seen: i64, until: i64) -> Result<bool, StoreError> {
        let (owner, id) = (owner.as_str().to_owned(), id.to_owned());
        self.with_db(move |db| {
            let changed = db
                .execute(
                    "UPDATE connections SET due_at = ?1 WHERE owner = ?2 AND id = ?3 AND due_at = ?4",
                    params![until, owner, id, seen],
                )
                .map_err(sql_error)?;
            Ok(changed == 1)
        })
        .await
    }

    async fn record_check(
        &self,
        owner: &Owner,
        previous: &Connection,
        next: &Connection,
        notified: Status,
        due: DueAt,
    ) -> Result<(), StoreError> {
        let (owner, doc) = (owner.as_str().to_owned(), encode(next)?);
        let (id, version, expected) = (next.id.clone(), next.version, previous.version);
        let due_at = due_seconds(due);
        let notified = status_text(notified);
        self.with_db(move |db| {
            let changed = db
                .execute(
                    "UPDATE connections SET version = ?1, doc = ?2, notified = ?3, due_at = ?4
                     WHERE owner = ?5 AND id = ?6 AND version = ?7",
                    params![version, doc, notified, due_at, owner, id, expected],
                )
                .map_err(sql_error)?;
            if changed == 0 { Err(StoreError::VersionMismatch) } else { Ok(()) }
        })
        .await
    }

    async fn mark_announced(&self, owner: &Owner, announced: Announced<'_>) -> Result<(), StoreError> {
        let (owner, id) = (owner.as_str().to_owned(), announced.id.to_owned());
        let (from, to) = (status_text(announced.from), status_text(announced.to));
        let (version, due_at) = (announced.version, due_seconds(announced.then));
        self.with_db(move |db| {
            // Unchanged since the check: the schedule moves on with the announcement;
            // after a user edit only the announcement is recorded.
            let changed = db
                .execute(
                    "UPDATE connections SET notified = ?1, due_at = CASE WHEN version = ?5 THEN ?6 ELSE due_at END
                     WHERE owner = ?2 AND id = ?3 AND COALESCE(notified, 'verified') = ?4",
                    params![to, owner, id, from, version, due_at],
                )
                .map_err(sql_error)?;
            if changed == 0 { Err(StoreError::VersionMismatch) } else { Ok(()) }
        })
        .await
    }
}
