//! SQLite on disk, for running on a laptop. Several function processes share
//! one file under `cargo lambda watch`, so every write is one transaction and
//! SQLite's locking serialises them.

use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rusqlite::{Connection as Db, ErrorCode, OptionalExtension, params};

use super::{ConnectionStore, IdempotencyRecord, Page, StoreError};
use crate::domain::{Connection, ConnectionId, Owner};
use crate::seal::Sealed;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS connections (
    owner       TEXT    NOT NULL,
    id          TEXT    NOT NULL,
    name_folded TEXT    NOT NULL,
    version     INTEGER NOT NULL,
    doc         TEXT    NOT NULL,
    sealed      BLOB    NOT NULL,
    PRIMARY KEY (owner, id),
    UNIQUE (owner, name_folded)
);
CREATE TABLE IF NOT EXISTS idempotency (
    owner         TEXT    NOT NULL,
    key           TEXT    NOT NULL,
    fingerprint   TEXT    NOT NULL,
    connection_id TEXT    NOT NULL,
    expires_at    INTEGER NOT NULL,
    PRIMARY KEY (owner, key)
);";

#[derive(Clone)]
pub struct EmbeddedStore {
    db: Arc<Mutex<Db>>,
}

impl EmbeddedStore {
    pub fn open(path: &Path) -> Result<Self, String> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        let db = Db::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        db.busy_timeout(std::time::Duration::from_secs(5)).map_err(|e| e.to_string())?;
        db.pragma_update(None, "journal_mode", "WAL").map_err(|e| e.to_string())?;
        db.execute_batch(SCHEMA).map_err(|e| e.to_string())?;
        Ok(Self { db: Arc::new(Mutex::new(db)) })
    }

    /// Runs blocking SQLite work off the async executor.
    async fn with_db<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Db) -> Result<T, StoreError> + Send + 'static,
    {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = db.lock().map_err(|_| StoreError::Unavailable("database lock poisoned".into()))?;
            work(&mut guard)
        })
        .await
        .map_err(|e| StoreError::Unavailable(e.to_string()))?
    }
}

fn sql_error(error: rusqlite::Error) -> StoreError {
    if error.sqlite_error_code() == Some(ErrorCode::ConstraintViolation) {
        return StoreError::DuplicateName;
    }
    StoreError::Unavailable(error.to_string())
}

fn encode(connection: &Connection) -> Result<String, StoreError> {
    serde_json::to_string(connection).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn decode(doc: &str) -> Result<Connection, StoreError> {
    serde_json::from_str(doc).map_err(|e| StoreError::Corrupt(e.to_string()))
}

#[async_trait]
impl ConnectionStore for EmbeddedStore {
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
                tx.execute("DELETE FROM idempotency WHERE owner = ?1 AND key = ?2 AND expires_at < ?3", params![owner, record.key, now])
                    .map_err(sql_error)?;
                tx.execute(
                    "INSERT INTO idempotency (owner, key, fingerprint, connection_id, expires_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![owner, record.key, record.fingerprint, record.connection_id, record.expires_at],
                )
                .map_err(|e| match sql_error(e) {
                    StoreError::DuplicateName => StoreError::IdempotencyKeyTaken,
                    other => other,
                })?;
            }
            tx.execute(
                "INSERT INTO connections (owner, id, name_folded, version, doc, sealed) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![owner, id, folded, version, doc, sealed],
            )
            .map_err(sql_error)?;
            tx.commit().map_err(sql_error)
        })
        .await
    }

    async fn idempotency_record(&self, owner: &Owner, key: &str) -> Result<Option<IdempotencyRecord>, StoreError> {
        let (owner, key) = (owner.as_str().to_owned(), key.to_owned());
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        self.with_db(move |db| {
            db.query_row(
                "SELECT fingerprint, connection_id, expires_at FROM idempotency WHERE owner = ?1 AND key = ?2 AND expires_at >= ?3",
                params![owner, key, now],
                |r| Ok(IdempotencyRecord { key: key.clone(), fingerprint: r.get(0)?, connection_id: r.get(1)?, expires_at: r.get(2)? }),
            )
            .optional()
            .map_err(sql_error)
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
        let docs = self
            .with_db(move |db| {
                let mut statement = db
                    .prepare_cached("SELECT doc FROM connections WHERE owner = ?1 AND id > ?2 ORDER BY id LIMIT ?3")
                    .map_err(sql_error)?;
                let rows =
                    statement.query_map(params![owner, after, fetch], |r| r.get::<_, String>(0)).map_err(sql_error)?;
                rows.collect::<Result<Vec<String>, _>>().map_err(sql_error)
            })
            .await?;
        let mut items = docs.iter().map(|doc| decode(doc)).collect::<Result<Vec<_>, _>>()?;
        let next = if items.len() > limit {
            items.truncate(limit);
            items.last().and_then(|c| ConnectionId::parse(&c.id))
        } else {
            None
        };
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
                    "UPDATE connections SET name_folded = ?1, version = ?2, doc = ?3, sealed = COALESCE(?4, sealed)
                     WHERE owner = ?5 AND id = ?6 AND version = ?7",
                    params![folded, version, doc, sealed, owner, id, expected],
                )
                .map_err(sql_error)?;
            if changed == 0 { Err(StoreError::VersionMismatch) } else { Ok(()) }
        })
        .await
    }

    async fn delete(&self, owner: &Owner, id: &ConnectionId, expected_version: Option<u64>) -> Result<(), StoreError> {
        let (owner, id) = (owner.as_str().to_owned(), id.to_string());
        self.with_db(move |db| {
            let tx = db.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(sql_error)?;
            let stored: Option<u64> = tx
                .query_row("SELECT version FROM connections WHERE owner = ?1 AND id = ?2", [&owner, &id], |r| r.get(0))
                .optional()
                .map_err(sql_error)?;
            match (stored, expected_version) {
                (None, _) => return Err(StoreError::NotFound),
                (Some(stored), Some(expected)) if stored != expected => return Err(StoreError::VersionMismatch),
                _ => {}
            }
            tx.execute("DELETE FROM connections WHERE owner = ?1 AND id = ?2", [&owner, &id]).map_err(sql_error)?;
            tx.commit().map_err(sql_error)
        })
        .await
    }
}
