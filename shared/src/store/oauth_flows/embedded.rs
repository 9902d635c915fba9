use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};

use super::{Flow, OauthFlows};
use crate::domain::Owner;
use crate::store::StoreError;
use crate::store::embedded::{EmbeddedStore, sql_error};

#[async_trait]
impl OauthFlows for EmbeddedStore {
    async fn begin_flow(&self, owner: &Owner, state_key: &str, flow: &Flow) -> Result<(), StoreError> {
        let (owner, state_key, text, expires_at) =
            (owner.as_str().to_owned(), state_key.to_owned(), flow.to_text(), flow.expires_at);
        self.with_db(move |db| {
            db.execute(
                "INSERT INTO oauth_flows (owner, state_key, flow, expires_at) VALUES (?1, ?2, ?3, ?4)",
                params![owner, state_key, text, expires_at],
            )
            .map_err(sql_error)?;
            Ok(())
        })
        .await
    }

    async fn take_flow(&self, owner: &Owner, state_key: &str, now: i64) -> Result<Option<Flow>, StoreError> {
        let (owner, state_key) = (owner.as_str().to_owned(), state_key.to_owned());
        let text: Option<String> = self
            .with_db(move |db| {
                db.query_row(
                    "DELETE FROM oauth_flows WHERE owner = ?1 AND state_key = ?2 RETURNING flow",
                    params![owner, state_key],
                    |r| r.get(0),
                )
                .optional()
                .map_err(sql_error)
            })
            .await?;
        Ok(text.map(|t| Flow::from_text(&t)).transpose()?.filter(|flow| flow.expires_at > now))
    }
}
