use async_trait::async_trait;
use rusqlite::params;

use super::{Claims, Slots};
use crate::domain::Owner;
use crate::store::StoreError;
use crate::store::embedded::{EmbeddedStore, sql_error};

fn read(db: &rusqlite::Connection, owner: &str, name: &str) -> Result<Claims, StoreError> {
    let mut query =
        db.prepare_cached("SELECT slot, at FROM slots WHERE owner = ?1 AND name = ?2").map_err(sql_error)?;
    let rows = query.query_map(params![owner, name], |r| Ok((r.get(0)?, r.get(1)?))).map_err(sql_error)?;
    rows.collect::<Result<_, _>>().map_err(sql_error)
}

#[async_trait]
impl Slots for EmbeddedStore {
    async fn read_slots(&self, owner: &Owner, name: &str) -> Result<Claims, StoreError> {
        let (owner, name) = (owner.as_str().to_owned(), name.to_owned());
        self.with_db(move |db| read(db, &owner, &name)).await
    }

    async fn claim_slot(
        &self,
        owner: &Owner,
        name: &str,
        slot: u32,
        now: i64,
        free_before: i64,
        _expires_at: i64,
    ) -> Result<Result<(), Claims>, StoreError> {
        let (owner, name) = (owner.as_str().to_owned(), name.to_owned());
        self.with_db(move |db| {
            let claimed = db
                .execute(
                    "INSERT INTO slots (owner, name, slot, at) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (owner, name, slot) DO UPDATE SET at = excluded.at WHERE slots.at <= ?5",
                    params![owner, name, slot, now, free_before],
                )
                .map_err(sql_error)?;
            if claimed == 1 { Ok(Ok(())) } else { Ok(Err(read(db, &owner, &name)?)) }
        })
        .await
    }
}
