//! The per-owner limit on checks against Bitbucket: at most `limit` in any 60
//! seconds, as a sliding log of the admissions themselves (a calendar-minute counter
//! let twice the limit through across a minute's boundary).

use async_trait::async_trait;

use crate::domain::Owner;
use crate::store::StoreError;
use crate::store::documents::{Change, Documents, change};

/// The window the limit holds over, in seconds.
pub const WINDOW_SECONDS: i64 = 60;

/// The owner's document: the Unix seconds of the admissions still in the window.
const LOG: &str = "RATE#verify";

/// One more admission at `now` (Unix seconds) against the admissions stored: the
/// log to store, or the seconds to wait until the oldest admission that counts
/// leaves the window.
pub fn admit(stored: &[i64], limit: u32, now: i64) -> Result<Vec<i64>, u64> {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let mut recent: Vec<i64> = stored.iter().copied().filter(|at| *at > now - WINDOW_SECONDS).collect();
    recent.sort_unstable();
    if limit == 0 {
        return Err(WINDOW_SECONDS.unsigned_abs());
    }
    if recent.len() >= limit {
        let leaving = recent[recent.len() - limit];
        return Err(u64::try_from(leaving + WINDOW_SECONDS - now).unwrap_or(1).max(1));
    }
    recent.push(now);
    Ok(recent)
}

#[async_trait]
pub trait RateLimits: Send + Sync {
    /// Admits one check against Bitbucket for `owner` at `now` (Unix seconds) if
    /// fewer than `limit` were admitted in the 60 seconds before it. `Some(seconds)`
    /// to wait otherwise. One read and one small write per admission; a refusal
    /// writes nothing.
    async fn count_verification(&self, owner: &Owner, limit: u32, now: i64) -> Result<Option<u64>, StoreError>;
}

#[async_trait]
impl<D: Documents> RateLimits for D {
    async fn count_verification(&self, owner: &Owner, limit: u32, now: i64) -> Result<Option<u64>, StoreError> {
        // An owner whose writes keep racing each other waits a second.
        change(self, owner, LOG, now + 2 * WINDOW_SECONDS, Some(1), |log: Option<Vec<i64>>| {
            match admit(&log.unwrap_or_default(), limit, now) {
                Ok(times) => Change::Write(times, None),
                Err(wait) => Change::Keep(Some(wait)),
            }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_holds_over_any_sixty_seconds() {
        let start = 1_800_000_000; // a minute's boundary is at start + 60
        let mut log = Vec::new();
        for at in [start + 50, start + 55, start + 59] {
            log = admit(&log, 3, at).unwrap();
        }
        assert_eq!(admit(&log, 3, start + 61), Err(49), "a new calendar minute admits nothing more");
        assert_eq!(admit(&log, 3, start + 109), Err(1));
        let log = admit(&log, 3, start + 110).unwrap();
        assert_eq!(log, vec![start + 55, start + 59, start + 110], "what left the window is dropped");
        assert_eq!(admit(&[], 0, start), Err(60), "a limit of zero admits nothing");
        assert_eq!(admit(&[start; 2], 3, start).unwrap().len(), 3, "one second may hold several");
    }
}
