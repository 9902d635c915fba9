//! The per-owner limit on checks against Bitbucket: at most `limit` in any 60
//! seconds (a calendar-minute counter let twice the limit through across a minute's
//! boundary). Each admission claims one of `limit` slots that no admission holds
//! from the last 60 seconds; racing admissions claim different slots, so a burst
//! is admitted at once instead of one racer a round.

use std::time::{Duration, Instant};

use async_trait::async_trait;

use crate::domain::Owner;
use crate::store::StoreError;
use crate::store::slots::{Claims, Slots};

/// The window the limit holds over, in seconds.
pub const WINDOW_SECONDS: i64 = 60;

/// The owner's item of admissions, one slot each.
const ADMISSIONS: &str = "RATE#checks";

/// Racers choose among this many of the lowest free slots: enough that a burst
/// rarely picks one slot twice, few enough that the item stays small.
const CHOICES: usize = 16;

/// Claims that keep losing (an owner racing far more requests than the 16 choices,
/// on a slow table) give up, with "try again in a second". A racer loses a round only
/// to another that took a slot, so a burst of 40 needs a few rounds: 5 s leaves a
/// table answering in hundreds of milliseconds room for them.
const CONTENTION_BUDGET: Duration = Duration::from_secs(5);

/// The slot an admission at `now` may claim (`pick` chooses among the lowest free
/// ones), or the seconds until the earliest admission that counts leaves the window.
pub fn free_slot(claims: &Claims, limit: u32, now: i64, pick: impl FnOnce(usize) -> usize) -> Result<u32, u64> {
    let free: Vec<u32> =
        (0..limit).filter(|slot| claims.get(slot).is_none_or(|at| *at <= now - WINDOW_SECONDS)).take(CHOICES).collect();
    if free.is_empty() {
        let leaving = (0..limit).filter_map(|slot| claims.get(&slot)).min().copied().unwrap_or(now);
        return Err(u64::try_from(leaving + WINDOW_SECONDS - now).unwrap_or(1).max(1));
    }
    Ok(free[pick(free.len()).min(free.len() - 1)])
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
impl<S: Slots> RateLimits for S {
    async fn count_verification(&self, owner: &Owner, limit: u32, now: i64) -> Result<Option<u64>, StoreError> {
        let started = Instant::now();
        let mut claims = self.read_slots(owner, ADMISSIONS).await?;
        while started.elapsed() < CONTENTION_BUDGET {
            let slot = match free_slot(&claims, limit, now, |choices| fastrand::usize(..choices)) {
                Ok(slot) => slot,
                Err(wait) => return Ok(Some(wait)),
            };
            let expires_at = now + 2 * WINDOW_SECONDS;
            match self.claim_slot(owner, ADMISSIONS, slot, now, now - WINDOW_SECONDS, expires_at).await? {
                Ok(()) => return Ok(None),
                Err(fresher) => claims = fresher,
            }
        }
        Ok(Some(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admit(claims: &mut Claims, limit: u32, at: i64) -> Result<(), u64> {
        let slot = free_slot(claims, limit, at, |_| 0)?;
        claims.insert(slot, at);
        Ok(())
    }

    #[test]
    fn the_limit_holds_over_any_sixty_seconds() {
        let start = 1_800_000_000; // a minute's boundary is at start + 60
        let mut claims = Claims::new();
        for at in [start + 50, start + 55, start + 59] {
            admit(&mut claims, 3, at).unwrap();
        }
        assert_eq!(admit(&mut claims, 3, start + 61), Err(49), "a new calendar minute admits nothing more");
        assert_eq!(admit(&mut claims, 3, start + 109), Err(1));
        assert_eq!(admit(&mut claims, 3, start + 110), Ok(()), "the oldest left the window");
        assert_eq!(claims, Claims::from([(0, start + 110), (1, start + 55), (2, start + 59)]));
        assert_eq!(admit(&mut Claims::new(), 0, start), Err(60), "a limit of zero admits nothing");
        let mut same_second = Claims::new();
        assert!((0..3).all(|_| admit(&mut same_second, 3, start).is_ok()), "one second may hold several");
    }

    #[test]
    fn racers_choose_among_the_lowest_free_slots_only() {
        let claims = Claims::from([(0, 100), (2, 100)]);
        let chosen: Vec<u32> = (0..20).map(|n| free_slot(&claims, 1000, 120, |_| n).unwrap()).collect();
        assert_eq!(chosen[..3], [1, 3, 4]);
        assert_eq!(chosen.iter().max(), Some(&17), "sixteen choices, the lowest free ones");
        assert_eq!(free_slot(&claims, 1000, 160, |_| 0), Ok(0), "a slot frees as its admission leaves the window");
        assert_eq!(free_slot(&claims, 2, 120, |_| 1), Ok(1), "slots at or past the limit never count");
    }
}
