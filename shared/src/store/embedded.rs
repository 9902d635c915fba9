//! SQLite on disk, for running on a laptop. Several function processes share
//! one file under `cargo lambda watch`, so every write is one transaction and
//! SQLite's locking serialises them.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::{Connection as Db, ErrorCode};

use super::{DueAt, StoreError};
use crate::domain::{Connection, Status};

pub(super) const SCHEMA: &str = "
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
CREATE TABLE IF NOT EXISTS documents (
    owner      TEXT    NOT NULL,
    name       TEXT    NOT NULL,
    text       TEXT    NOT NULL,
    version    INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (owner, name)
);
CREATE TABLE IF NOT EXISTS slots (
    owner TEXT    NOT NULL,
    name  TEXT    NOT NULL,
    slot  INTEGER NOT NULL,
    at    INTEGER NOT NULL,
    PRIMARY KEY (owner, name, slot)
);
CREATE TABLE IF NOT EXISTS oauth_flows (
    owner      TEXT    NOT NULL,
    state_key  TEXT    NOT NULL,
    flow       TEXT    NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (owner, state_key)
);
CREATE TABLE IF NOT EXISTS token_leases (
    owner    TEXT    NOT NULL,
    id       TEXT    NOT NULL,
    lease    TEXT    NOT NULL,
    until_ms INTEGER NOT NULL,
    PRIMARY KEY (owner, id)
);";

#[derive(Clone)]
pub struct EmbeddedStore {
    pub(super) db: Arc<Mutex<Db>>,
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

    pub(super) fn try_open(path: &Path) -> Result<Db, rusqlite::Error> {
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
    pub(super) async fn with_db<T, F>(&self, work: F) -> Result<T, StoreError>
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

pub(super) fn now_seconds() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

pub(super) fn due_seconds(due: DueAt) -> Option<i64> {
    due.second(now_seconds())
}

pub(super) fn status_text(status: Status) -> String {
    serde_json::to_value(status).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

pub(super) fn sql_error(error: rusqlite::Error) -> StoreError {
    if error.sqlite_error_code() == Some(ErrorCode::ConstraintViolation) {
        return StoreError::DuplicateName;
    }
    StoreError::Unavailable(error.to_string())
}

pub(super) fn encode(connection: &Connection) -> Result<String, StoreError> {
    serde_json::to_string(connection).map_err(|e| StoreError::Corrupt(e.to_string()))
}

pub(super) fn decode(doc: &str) -> Result<Connection, StoreError> {
    serde_json::from_str(doc).map_err(|e| StoreError::Corrupt(e.to_string()))
}
