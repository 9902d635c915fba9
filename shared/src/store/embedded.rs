//! SQLite on disk, for running on a laptop. Several function processes share
//! one file under `cargo lambda watch`, so every write is one transaction and
//! SQLite's locking serialises them.

use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rusqlite::{Connection as Db, ErrorCode, OptionalExtension, params};

use super::{
    Announced, ConnectionStore, Due, DueAt, DuePage, Expected, IdempotencyRecord, Page, StoreError, verification_window,
};
use crate::domain::{Connection, ConnectionId, LastUsed, Owner, Status};
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
CREATE TABLE IF NOT EXISTS idempotency_records (
    owner         TEXT    NOT NULL,
    key           TEXT    NOT NULL,
    fingerprint   TEXT    NOT NULL,
    connection_id TEXT    NOT NULL,
    response      TEXT    NOT NULL,
    expires_at    INTEGER NOT NULL,
    PRIMARY KEY (owner, key)
);
CREATE TABLE IF NOT EXISTS verifications (
    owner   TEXT    NOT NULL,
    window  INTEGER NOT NULL,
    count   INTEGER NOT NULL,
    PRIMARY KEY (owner, window)
);";

#[derive(Clone)]
pub struct EmbeddedStore {
    db: Arc<Mutex<Db>>,
}

impl EmbeddedStore {
    /// Opens (creating it private to this user) the database at `path`.
    /// Several functions start at once under `cargo lambda watch`, so a busy
    /// database is waited for, never reported.
    pub fn open(path: &Path) -> Result<Self, String> {
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        // SQLite gives the -wal and -shm files the database file's permissions.
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        let started = std::time::Instant::now();
        loop {
            match Self::try_open(path) {
                Ok(db) => return Ok(Self { db: Arc::new(Mutex::new(db)) }),
                Err(e)
                    if e.sqlite_error_code() == Some(ErrorCode::DatabaseBusy) && started.elapsed().as_secs() < 10 =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(20 + u64::from(fastrand::u8(..))));
                }
                Err(e) => return Err(format!("cannot open {}: {e}", path.display())),
            }
        }
    }

    fn try_open(path: &Path) -> Result<Db, rusqlite::Error> {
        let db = Db::open(path)?;
        db.busy_timeout(std::time::Duration::from_secs(5))?;
        db.pragma_update(None, "journal_mode", "WAL")?;
        db.execute_batch(SCHEMA)?;
        // Columns added after the first release: older local databases gain them here.
        for column in ["due_at INTEGER", "notified TEXT"] {
            match db.execute(&format!("ALTER TABLE connections ADD COLUMN {column}"), []) {
                Err(e) if !e.to_string().contains("duplicate column") => return Err(e),
                _ => {}
            }
        }
        Ok(db)
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

fn now_seconds() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn due_seconds(due: DueAt) -> Option<i64> {
    due.second(now_seconds())
}

fn status_text(status: Status) -> String {
    serde_json::to_value(status).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
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
        for (owner, id, doc, sealed, notified, _) in rows {
            // One unreadable row must not stop the recheck for everyone.
            let (Some(owner), Ok(connection)) = (Owner::parse(&owner), decode(&doc)) else {
                tracing::error!(connection_id = %id, "unreadable due connection");
                continue;
            };
            let notified = serde_json::from_value(serde_json::Value::String(notified)).unwrap_or(Status::Verified);
            items.push(Due { owner, connection, sealed: Sealed(sealed), notified });
        }
        Ok(DuePage { items, next })
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
}
