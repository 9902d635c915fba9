use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};

use super::{RateLimits, verification_window};
use crate::domain::Owner;
use crate::store::StoreError;
use crate::store::embedded::{EmbeddedStore, sql_error};

#[async_trait]
impl RateLimits for EmbeddedStore {
    async fn count_verification(&self, owner: &Owner, limit: u32, now: i64) -> Result<Option<u64>, StoreError> {
        let owner = owner.as_str().to_owned();
        let (window, left) = verification_window(now);
        self.with_db(move |db| {
            let tx = db.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(sql_error)?;
            tx.execute("DELETE FROM verifications WHERE owner = ?1 AND window < ?2", params![owner, window])
                .map_err(sql_error)?;
            let count: u32 = tx
                .query_row(
                    "SELECT count FROM verifications WHERE owner = ?1 AND window = ?2",
                    params![owner, window],
                    |r| r.get(0),
                )
                .optional()
                .map_err(sql_error)?
                .unwrap_or(0);
            if count >= limit {
                return Ok(Some(left));
            }
            tx.execute(
                "INSERT INTO verifications (owner, window, count) VALUES (?1, ?2, 1)
                 ON CONFLICT (owner, window) DO UPDATE SET count = count + 1",
                params![owner, window],
            )
            .map_err(sql_error)?;
            tx.commit().map_err(sql_error)?;
            Ok(None)
        })
        .await
    }
}
