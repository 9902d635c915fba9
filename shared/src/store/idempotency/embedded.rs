use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};

use super::{Idempotency, IdempotencyRecord};
use crate::domain::Owner;
use crate::store::StoreError;
use crate::store::embedded::{EmbeddedStore, sql_error};

#[async_trait]
impl Idempotency for EmbeddedStore {
    async fn idempotency_record(&self, owner: &Owner, key: &str) -> Result<Option<IdempotencyRecord>, StoreError> {
        let (owner, key) = (owner.as_str().to_owned(), key.to_owned());
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        self.with_db(move |db| {
            db.query_row(
                "SELECT fingerprint, connection_id, response, expires_at FROM idempotency_records WHERE owner = ?1 AND key = ?2 AND expires_at >= ?3",
                params![owner, key, now],
                |r| {
                    Ok(IdempotencyRecord {
                        key: key.clone(),
                        fingerprint: r.get(0)?,
                        connection_id: r.get(1)?,
                        response: r.get(2)?,
                        expires_at: r.get(3)?,
                    })
                },
            )
            .optional()
            .map_err(sql_error)
        })
        .await
    }
}
