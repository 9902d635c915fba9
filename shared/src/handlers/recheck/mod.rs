//! The `recheck` function, run by an EventBridge Scheduler schedule: keeps
//! every connection's status true by itself. It reads only due connections
//! (a query on the sparse `due` index, never a scan), re-verifies those not
//! checked for `interval`, announces every status change (`verified` ↔
//! `invalid`, `expiring`, `expired`) as one event, and stops before its time
//! runs out, leaving the rest due for the next run.
//!
//! Writes never clobber a user: each is conditioned on the version it read,
//! and a conflict skips that connection for this run. Only a status change
//! bumps the version; a fresh `verified_at`, the announced status and the next
//! due time are bookkeeping, so a user's `If-Match` stays valid across runs.
//! Events are at least once: the status is written first (still due), then
//! published, then marked announced; a failed publish is retried next run.
//!
//! Deployed with a queue, the work fans out: the scheduled run only plans (it
//! reads the due index, takes at most `owner_share` connections of each owner, holds
//! each off the schedule for a lease and queues its key), and the queue's event
//! source mapping hands batches to as many workers as the operator allows, each of
//! which reads its connections afresh and checks them as a run would. A server that
//! times out or asks to slow down is left alone by that worker for a while (a
//! circuit per host), so a few tarpits cost a few timeouts, not a run.

mod fan_out;

pub use fan_out::PlanReport;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde::Serialize;
use time::OffsetDateTime;

use crate::config::RecheckSettings;
use crate::domain::{Connection, Status};
use crate::events::{Event, Events, StatusChanged, Unused};
use crate::oauth::TokenKeeper;
use crate::problem::ApiError;
use crate::store::{Announced, ConnectionStore, Due, DueAt, StoreError};
use crate::verify::{Claim, Verification, Verifier};

pub struct RecheckHandler {
    pub store: Arc<dyn ConnectionStore>,
    pub verifier: Verifier,
    pub events: Arc<dyn Events>,
    pub settings: RecheckSettings,
    /// Hosts left alone until then: they asked to slow down or timed out. Kept for
    /// the process's life, so a warm worker remembers across its batches.
    pub circuits: Circuits,
    /// Opens secrets for use, refreshing OAuth access tokens single-flight: a daily
    /// check keeps an idle OAuth connection's refresh token alive.
    pub keeper: TokenKeeper,
}

/// Server origin → until when it is left alone.
pub type Circuits = Mutex<HashMap<String, Instant>>;

/// What one run did, for its log line and for tests.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RunReport {
    pub looked_at: usize,
    pub verified: usize,
    pub invalidated: usize,
    pub events: usize,
    pub conflicts: usize,
    pub transient: usize,
    pub rate_limited: usize,
    /// The run stopped for time with due connections left for the next run.
    pub stopped_early: bool,
}

/// How one connection fared.
enum Outcome {
    Rescheduled,
    Verified,
    Invalidated,
    Conflict,
    Transient,
    RateLimited,
    /// Queued, but gone or checked meanwhile.
    Skipped,
}

impl RecheckHandler {
    /// One run, which must end by `deadline`.
    pub async fn run(&self, deadline: Instant) -> RunReport {
        let started = OffsetDateTime::now_utc();
        let now = started.unix_timestamp();
        // A run's circuits are its own (runs are an hour apart); a worker's outlive its
        // batch, since the next batch comes moments later.
        if let Ok(mut circuits) = self.circuits.lock() {
            circuits.clear();
        }
        let mut report = RunReport::default();
        let mut after: Option<String> = None;
        // One verification may take the verifier's whole deadline: never start one that cannot finish.
        let reserve = self.verifier.deadline() + Duration::from_secs(2);
        loop {
            if Instant::now() + reserve >= deadline {
                report.stopped_early = true;
                break;
            }
            let Some(page) = self.due_page(now, after.as_deref()).await else { break };
            let outcomes: Vec<Option<(Outcome, usize)>> = futures::stream::iter(page.items)
                .map(|due| async move {
                    if Instant::now() + reserve >= deadline {
                        return None;
                    }
                    Some(self.look(due, started).await)
                })
                .buffer_unordered(self.settings.concurrency.max(1))
                .collect()
                .await;
            for outcome in outcomes {
                report.tally(outcome);
            }
            after = page.next;
            if after.is_none() || report.stopped_early {
                break;
            }
        }
        tracing::info!(report = %serde_json::to_string(&report).unwrap_or_default(), "recheck run");
        report
    }

    async fn look(&self, due: Due, now: OffsetDateTime) -> (Outcome, usize) {
        let previous = due.connection.clone();
        let mut next = previous.clone();
        let interval = time::Duration::try_from(self.settings.interval).unwrap_or(time::Duration::DAY);
        let mut outcome = Outcome::Rescheduled;
        // An expired token would only earn a 401: `expired` says more, without asking.
        let expired = previous.clone().with_status_at(now).status == Status::Expired;
        if previous.status == Status::Verified
            && !expired
            && previous.verified_at + previous.check_interval(interval) <= now
        {
            match self.reverify(&due).await {
                Ok(verified) => {
                    // Told before the check is written: should the event not be taken, the
                    // connection stays as it was and the next run tells it again (at least once).
                    if let Some(unused) = unused_since_last_check(&due, now)
                        && let Err(error) = self.events.publish(Event::Unused(&unused)).await
                    {
                        tracing::warn!(error = %error, connection_id = %previous.id, "unused event not published; retried next run");
                        return (self.postpone(&due, now, Outcome::Transient).await, 0);
                    }
                    let mut refreshed = next.clone();
                    refreshed.record_success(verified, now);
                    // What Bitbucket grants changed: the representation did, so its version does.
                    let granted = |c: &Connection| {
                        (c.account.clone(), c.scopes.clone(), c.capabilities.clone(), c.warnings.clone())
                    };
                    if granted(&refreshed) != granted(&next) {
                        refreshed.version += 1;
                        refreshed.updated_at = now;
                    }
                    next = refreshed;
                    outcome = Outcome::Verified;
                }
                Err(Check::Verdict(error)) => {
                    next.version += 1;
                    next.updated_at = now;
                    next.record_failure(error.code(), error.detail(), now);
                    outcome = Outcome::Invalidated;
                }
                // Nothing definite was learned: looked at again by the next run, behind every
                // connection already due, so a dead or limiting host cannot take every run.
                Err(Check::Transient) => return (self.postpone(&due, now, Outcome::Transient).await, 0),
                Err(Check::RateLimited) => return (self.postpone(&due, now, Outcome::RateLimited).await, 0),
                Err(Check::Unusable) => {
                    tracing::error!(connection_id = %previous.id, "stored connection no longer parses; not rechecked");
                    let _ = self.store.record_check(&due.owner, &previous, &previous, due.notified, DueAt::Never).await;
                    return (Outcome::Transient, 0);
                }
            }
        }
        let status = next.clone().with_status_at(now).status;
        let announce = status != due.notified;
        // Written first: a change still to announce keeps the connection due for the next run.
        let retry = self.retry_at(now);
        let first = if announce { retry } else { schedule(&next, interval, now) };
        match self.store.record_check(&due.owner, &previous, &next, due.notified, first).await {
            Ok(()) => {}
            Err(StoreError::VersionMismatch) => return (Outcome::Conflict, 0),
            Err(error) => {
                tracing::error!(error = %error, connection_id = %previous.id, "could not record a check");
                return (Outcome::Transient, 0);
            }
        }
        if !announce {
            return (outcome, 0);
        }
        let event = StatusChanged {
            owner: due.owner.as_str().to_owned(),
            connection_id: next.id.clone(),
            name: next.name.clone(),
            old_status: due.notified,
            new_status: status,
            reason: next.status_reason.clone().filter(|_| status == Status::Invalid),
            detail: next.status_detail.clone().filter(|_| status == Status::Invalid),
            expires_at: next.expires_at,
            changed_at: now,
        };
        if let Err(error) = self.events.publish(Event::StatusChanged(&event)).await {
            tracing::warn!(error = %error, connection_id = %next.id, "event not published; retried next run");
            return (outcome, 0);
        }
        // Marked on the announced status, not the version: a user edit in between must not
        // leave the change unannounced forever. Without one, the same write reschedules.
        let announced = Announced {
            id: &next.id,
            from: due.notified,
            to: status,
            version: next.version,
            then: schedule(&next, interval, now),
        };
        if let Err(error) = self.store.mark_announced(&due.owner, announced).await {
            // Either a retried write whose first attempt landed, another run that got there
            // first, or a failure: in the last case a later run publishes again (at least once).
            tracing::warn!(error = %error, connection_id = %next.id, "event published; announcement not recorded by this write");
        }
        (outcome, 1)
    }

    fn retry_at(&self, now: OffsetDateTime) -> DueAt {
        let after = i64::try_from(self.settings.retry_after.as_secs()).unwrap_or(60).max(1);
        DueAt::At(now.unix_timestamp() + after)
    }

    /// Leaves the connection as it is, due again for a later run.
    async fn postpone(&self, due: &Due, now: OffsetDateTime, outcome: Outcome) -> Outcome {
        let connection = &due.connection;
        match self.store.record_check(&due.owner, connection, connection, due.notified, self.retry_at(now)).await {
            Err(StoreError::VersionMismatch) => Outcome::Conflict,
            _ => outcome,
        }
    }

    /// Verifies the stored credentials as the user's own re-verify does, with
    /// the same account pinning; sorts the outcome into definite or not.
    async fn reverify(&self, due: &Due) -> Result<Verification, Check> {
        let connection = &due.connection;
        let url = &connection.url;
        // Per origin: two servers on one host (ports apart) are two servers.
        let host = url.origin().to_string();
        if self.circuits.lock().map(|c| c.get(&host).is_some_and(|until| *until > Instant::now())).unwrap_or(false) {
            return Err(Check::RateLimited);
        }
        let secret = match self.keeper.usable(&due.owner, connection, due.sealed.clone()).await {
            Ok(usable) => usable.secret,
            Err(error @ (ApiError::SecretUnreadable | ApiError::OauthRevoked)) => return Err(Check::Verdict(error)),
            Err(ApiError::NotFound) => return Err(Check::Unusable),
            Err(_) => return Err(Check::Transient),
        };
        let claim = Claim {
            url,
            username: connection.username.as_ref(),
            secret: &secret,
            credential_type: Some(connection.credential_type),
            resource: connection.resource.as_ref(),
        };
        match self.verifier.verify(&claim).await {
            Ok(verified) => match (&connection.account, &verified.account) {
                (Some(before), Some(now)) if !before.same_as(now) => {
                    Err(Check::Verdict(ApiError::AccountMismatch { expected: before.label(), found: now.label() }))
                }
                _ => Ok(verified),
            },
            Err(ApiError::BitbucketRateLimited { retry_after }) => {
                self.open_circuit(host, retry_after.unwrap_or(self.settings.rate_limit_pause));
                Err(Check::RateLimited)
            }
            // A tarpit costs one timeout, not one per connection pointing at it.
            Err(ApiError::BitbucketTimeout) => {
                self.open_circuit(host, self.settings.rate_limit_pause);
                Err(Check::Transient)
            }
            Err(error) if about_the_credentials(&error) => Err(Check::Verdict(error)),
            // A maintenance page, a redirect to SSO or a DNS blip says nothing about the
            // credentials: unlike a user's own re-verify, the schedule waits for certainty.
            Err(_) => Err(Check::Transient),
        }
    }
}

impl RecheckHandler {
    /// A page of due connections; `None` (logged) when the store fails: the run ends
    /// and the rest stays due.
    async fn due_page(&self, now: i64, after: Option<&str>) -> Option<crate::store::DuePage> {
        self.store
            .due(now, self.settings.page_size, after)
            .await
            .map_err(|error| tracing::error!(error = %error, "could not read due connections"))
            .ok()
    }

    fn open_circuit(&self, host: String, pause: Duration) {
        if let Ok(mut circuits) = self.circuits.lock() {
            circuits.insert(host, Instant::now() + pause);
        }
    }
}

impl RunReport {
    fn tally(&mut self, outcome: Option<(Outcome, usize)>) {
        let Some((outcome, events)) = outcome else {
            self.stopped_early = true;
            return;
        };
        if matches!(outcome, Outcome::Skipped) {
            return;
        }
        self.looked_at += 1;
        self.events += events;
        match outcome {
            Outcome::Rescheduled | Outcome::Skipped => {}
            Outcome::Verified => self.verified += 1,
            Outcome::Invalidated => self.invalidated += 1,
            Outcome::Conflict => self.conflicts += 1,
            Outcome::Transient => self.transient += 1,
            Outcome::RateLimited => self.rate_limited += 1,
        }
    }
}

/// Why a re-verification did not succeed.
enum Check {
    /// A definite answer against the credentials: the connection turns invalid.
    Verdict(ApiError),
    /// Timeouts, 5xx, unreachable, not Bitbucket-like: says nothing about the credentials.
    Transient,
    /// The host asked us to slow down: left for the next run.
    RateLimited,
    /// The stored connection no longer parses: nothing a run can do.
    Unusable,
}

/// The verdicts that are about the credentials themselves.
fn about_the_credentials(error: &ApiError) -> bool {
    matches!(
        error,
        ApiError::InvalidCredentials { .. }
            | ApiError::AppPasswordRetired
            | ApiError::MissingPermissions { .. }
            | ApiError::WrongResource { .. }
            | ApiError::AccountMismatch { .. }
            | ApiError::SecretUnreadable
            | ApiError::UsernameIsEmail
            | ApiError::OauthRevoked
    )
}

/// The connection's idle time crossed a multiple of [`Unused::DAYS`] between its last
/// check and this one: told once per 90 idle days, with no flag to keep, since each
/// check moves `verified_at` past the crossing.
fn unused_since_last_check(due: &Due, now: OffsetDateTime) -> Option<Unused> {
    let connection = &due.connection;
    let idle_since = connection.last_used.as_ref().map_or(connection.created_at, |last| last.at);
    let period = time::Duration::days(i64::from(Unused::DAYS));
    let periods = u32::try_from((now - idle_since).whole_seconds() / period.whole_seconds()).ok().filter(|n| *n > 0)?;
    let crossing = idle_since + period * periods;
    (connection.verified_at < crossing).then(|| Unused {
        owner: due.owner.as_str().to_owned(),
        connection_id: connection.id.clone(),
        name: connection.name.clone(),
        last_used: connection.last_used.clone(),
        idle_since,
        days: Unused::DAYS * periods,
    })
}

fn schedule(connection: &Connection, interval: time::Duration, now: OffsetDateTime) -> DueAt {
    match connection.next_check(interval, now) {
        Some(at) => DueAt::At(at.unix_timestamp()),
        None => DueAt::Never,
    }
}
