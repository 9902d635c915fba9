use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};

use super::TokenLeases;
use crate::domain::{ConnectionId, Owner};
use crate::seal::Sealed;
use crate::store::StoreError;
use crate::store::embedded::{EmbeddedStore, sql_error};

#[async_trait]
impl TokenLeases for EmbeddedStore {
    async fn take_token_lease(
        &self,
        owner: &Owner,
        id: &ConnectionId,
        read: &Sealed,
        lease: &str,
        now_ms: i64,
        until_ms: i64,
    ) -> Result<bool, StoreError> {
        let (owner, id, read, lease) = (owner.as_str().to_owned(), id.to_string(), read.0.clone(), lease.to_owned());
        self.with_db(move |db| {
            let tx = db.transaction().map_err(sql_error)?;
            let current: u64 = tx
                .query_row(
                    "SELECT count(*) FROM connections WHERE owner = ?1 AND id = ?2 AND sealed = ?3",
                    params![owner, id, read],
                    |r| r.get(0),
                )
                .map_err(sql_error)?;
            let taken = current == 1
                && tx
                    .execute(
                        "INSERT INTO token_leases (owner, id, lease, until_ms) VALUES (?1, ?2, ?3, ?4)
                         ON CONFLICT (owner, id) DO UPDATE SET lease = excluded.lease, until_ms = excluded.until_ms
                         WHERE token_leases.until_ms < ?5",
                        params![owner, id, lease, until_ms, now_ms],
                    )
                    .map_err(sql_error)?
                    == 1;
            tx.commit().map_err(sql_error)?;
            Ok(taken)
        })
        .await
    }

    async fn store_tokens(
        &self,
        owner: &Owner,
        id: &ConnectionId,
        read: &Sealed,
        next: &Sealed,
    ) -> Result<bool, StoreError> {
        let (owner, id, read, next) = (owner.as_str().to_owned(), id.to_string(), read.0.clone(), next.0.clone());
        self.with_db(move |db| {
            let tx = db.transaction().map_err(sql_error)?;
            let stored = tx
                .execute(
                    "UPDATE connections SET sealed = ?3 WHERE owner = ?1 AND id = ?2 AND sealed = ?4",
                    params![owner, id, next, read],
                )
                .map_err(sql_error)?
                == 1;
            if stored {
                tx.execute("DELETE FROM token_leases WHERE owner = ?1 AND id = ?2", params![owner, id])
                    .map_err(sql_error)?;
                tx.commit().map_err(sql_error)?;
            }
            Ok(stored)
        })
        .await
    }

    async fn token_state(&self, owner: &Owner, id: &ConnectionId) -> Result<Option<(Sealed, Option<i64>)>, StoreError> {
        let (owner, id) = (owner.as_str().to_owned(), id.to_string());
        self.with_db(move |db| {
            db.query_row(
                "SELECT c.sealed, l.until_ms FROM connections c
                 LEFT JOIN token_leases l ON l.owner = c.owner AND l.id = c.id
                 WHERE c.owner = ?1 AND c.id = ?2",
                params![owner, id],
                |r| Ok((Sealed(r.get(0)?), r.get(1)?)),
            )
            .optional()
            .map_err(sql_error)
        })
        .await
    }

    async fn release_token_lease(&self, owner: &Owner, id: &ConnectionId, lease: &str) -> Result<(), StoreError> {
        let (owner, id, lease) = (owner.as_str().to_owned(), id.to_string(), lease.to_owned());
        self.with_db(move |db| {
            db.execute(
                "DELETE FROM token_leases WHERE owner = ?1 AND id = ?2 AND lease = ?3",
                params![owner, id, lease],
            )
            .map_err(sql_error)?;
            Ok(())
        })
        .await
    }
}
