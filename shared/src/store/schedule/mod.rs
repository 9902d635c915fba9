//! The recheck's schedule: which connections are due, what a check found, and which
//! status change was announced.

mod dynamo;
#[cfg(feature = "embedded")]
mod embedded;

use async_trait::async_trait;

use crate::domain::{Connection, ConnectionId, Owner, Status};
use crate::seal::Sealed;
use crate::store::StoreError;

/// When the recheck function should next look at a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DueAt {
    /// At its next run (a user change, or an event still to publish).
    Now,
    /// At this Unix second.
    At(i64),
    /// Not until a user changes it (invalid or expired, and already announced).
    Never,
}

impl DueAt {
    /// The Unix second it names, given the current one; `None` for never.
    pub fn second(self, now: i64) -> Option<i64> {
        match self {
            DueAt::Now => Some(now),
            DueAt::At(at) => Some(at),
            DueAt::Never => None,
        }
    }
}

/// A status change the recheck function announced, and when to look next.
#[derive(Debug, Clone, Copy)]
pub struct Announced<'a> {
    pub id: &'a str,
    pub from: Status,
    pub to: Status,
    /// The version the check wrote; a later one means a user edit came in between.
    pub version: u64,
    pub then: DueAt,
}

/// A connection the recheck function should look at, with what it needs to do so.
#[derive(Debug)]
pub struct Due {
    pub owner: Owner,
    pub connection: Connection,
    pub sealed: Sealed,
    /// The status last announced in an event.
    pub notified: Status,
    /// When it is due (Unix seconds); `None` when it is off the schedule.
    pub due_at: Option<i64>,
}

#[derive(Debug, Default)]
pub struct DuePage {
    pub items: Vec<Due>,
    /// Where the next page starts; opaque, for the recheck function only.
    pub next: Option<String>,
}

#[async_trait]
pub trait Schedule: Send + Sync {
    /// Connections due by `now` (Unix seconds), oldest due first within each shard of
    /// the index: queries, never a scan. A page may be short where a shard ends.
    async fn due(&self, now: i64, limit: usize, after: Option<&str>) -> Result<DuePage, StoreError>;

    /// One connection with what a check needs, read afresh (a queued check's first step).
    async fn due_one(&self, owner: &Owner, id: &ConnectionId) -> Result<Option<Due>, StoreError>;

    /// Moves a connection still due at `seen` to `until`, so that no other run queues it
    /// meanwhile: `false` when it changed since (a user's edit, another run). Touches
    /// neither the version nor anything a user sees.
    async fn lease(&self, owner: &Owner, id: &str, seen: i64, until: i64) -> Result<bool, StoreError>;

    /// Records what the recheck function found: `next` replaces `previous`
    /// (matched on its version; `next.version` is bumped only for a status
    /// change), with the status now announced and the next time to look.
    async fn record_check(
        &self,
        owner: &Owner,
        previous: &Connection,
        next: &Connection,
        notified: Status,
        due: DueAt,
    ) -> Result<(), StoreError>;

    /// Records that the change from `from` to `to` was announced, whatever else
    /// changed meanwhile (conditioned on the announced status, not the version),
    /// and, if the connection is still at `version`, schedules its next check.
    async fn mark_announced(&self, owner: &Owner, announced: Announced<'_>) -> Result<(), StoreError>;
}
