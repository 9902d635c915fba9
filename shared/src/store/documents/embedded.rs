use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};

use super::Documents;
use crate::domain::Owner;
use crate::store::StoreError;
use crate::store::embedded::{EmbeddedStore, sql_error};

#[async_trait]
impl Documents for EmbeddedStore {
    async fn read_document(&self, owner: &Owner, name: &str) -> Result<Option<(String, u64)>, StoreError> {
        let (owner, name) = (owner.as_str().to_owned(), name.to_owned());
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        self.with_db(move |db| {
            db.query_row(
                "SELECT text, version FROM documents WHERE owner = ?1 AND name = ?2 AND expires_at > ?3",
                params![owner, name, now],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(sql_error)
        })
        .await
    }

    async fn write_document(
        &self,
        owner: &Owner,
        name: &str,
        text: &str,
        read: Option<u64>,
        expires_at: i64,
    ) -> Result<bool, StoreError> {
        let (owner, name, text) = (owner.as_str().to_owned(), name.to_owned(), text.to_owned());
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        self.with_db(move |db| {
            let written = match read {
                // An expired document counts as absent, as DynamoDB's TTL would have removed it.
                None => db.execute(
                    "INSERT INTO documents (owner, name, text, version, expires_at) VALUES (?1, ?2, ?3, 1, ?4)
                     ON CONFLICT (owner, name) DO UPDATE SET text = excluded.text, version = 1,
                     expires_at = excluded.expires_at WHERE documents.expires_at <= ?5",
                    params![owner, name, text, expires_at, now],
                ),
                Some(version) => db.execute(
                    "UPDATE documents SET text = ?3, version = version + 1, expires_at = ?4
                     WHERE owner = ?1 AND name = ?2 AND version = ?5 AND expires_at > ?6",
                    params![owner, name, text, expires_at, version, now],
                ),
            };
            Ok(written.map_err(sql_error)? == 1)
        })
        .await
    }
}
