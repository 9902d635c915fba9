//! Small per-owner documents (the verification log, the browse budget), each read,
//! computed on and written back only if no other writer changed it meanwhile: one
//! conditional write, a version apart, whichever adapter holds them.

mod dynamo;
#[cfg(feature = "embedded")]
mod embedded;

use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::domain::Owner;
use crate::store::StoreError;

/// Writers that lost a race for the same owner's document try again, with full-jitter
/// backoff, for this long (one owner racing themselves, e.g. ten pages at once: each
/// round lets one through; no other owner's document is involved).
const CONTENTION_BUDGET: Duration = Duration::from_secs(3);
const BACKOFF_CAP_MS: u64 = 100;

/// What a change makes of a document: a new one to write and the answer, or the
/// answer alone.
pub enum Change<T, R> {
    Write(T, R),
    Keep(R),
}

#[async_trait]
pub trait Documents: Send + Sync {
    /// The document's text and version, if there is one.
    async fn read_document(&self, owner: &Owner, name: &str) -> Result<Option<(String, u64)>, StoreError>;

    /// Writes `text` if the document is still at version `read` (`None`: still
    /// absent); `false` when another writer changed it first. It expires, unless
    /// written again, at `expires_at` (Unix seconds).
    async fn write_document(
        &self,
        owner: &Owner,
        name: &str,
        text: &str,
        read: Option<u64>,
        expires_at: i64,
    ) -> Result<bool, StoreError>;
}

/// Applies `change` to `owner`'s document `name` until a write wins; `contended`
/// is the answer when every attempt lost. A document that no longer parses is
/// started afresh: it holds counts and leases, never anything a user gave.
pub async fn change<D, T, R>(
    store: &D,
    owner: &Owner,
    name: &str,
    expires_at: i64,
    contended: R,
    change: impl Fn(Option<T>) -> Change<T, R> + Send + Sync,
) -> Result<R, StoreError>
where
    D: Documents + ?Sized,
    T: Serialize + DeserializeOwned + Send,
    R: Send,
{
    let started = std::time::Instant::now();
    let mut attempt: u32 = 0;
    while started.elapsed() < CONTENTION_BUDGET {
        let (current, version) = match store.read_document(owner, name).await? {
            Some((text, version)) => (serde_json::from_str(&text).ok(), Some(version)),
            None => (None, None),
        };
        match change(current) {
            Change::Keep(answer) => return Ok(answer),
            Change::Write(next, answer) => {
                let text = serde_json::to_string(&next).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                if store.write_document(owner, name, &text, version, expires_at).await? {
                    return Ok(answer);
                }
                attempt += 1;
                let ceiling = BACKOFF_CAP_MS.min(2u64 << attempt.min(8));
                tokio::time::sleep(Duration::from_millis(fastrand::u64(1..=ceiling))).await;
            }
        }
    }
    Ok(contended)
}
