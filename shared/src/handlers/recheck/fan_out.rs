//! The recheck fanned out: a scheduled run plans (owner shares, leases, the queue),
//! and workers check the batches the queue's event source mapping hands them. What
//! checking one connection means is in the parent module, shared with a run that
//! checks everything itself.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde::Serialize;
use time::OffsetDateTime;

use super::{Outcome, RecheckHandler, RunReport};
use crate::domain::{ConnectionId, Owner};
use crate::work::{Work, WorkQueue};

/// What one planner run did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PlanReport {
    /// Connections leased and queued for a worker.
    pub queued: usize,
    /// Left due for the next run: their owner had their share of this one.
    pub over_share: usize,
    /// Changed since they were read (an edit, another run): not queued by this one.
    pub changed: usize,
    /// Leased but refused by the queue: due again when the lease ends.
    pub not_queued: usize,
    pub stopped_early: bool,
}

impl RecheckHandler {
    /// What an invocation asks: a batch from the work queue (SQS's event), or the
    /// schedule's run, which plans when there is a queue and checks everything itself
    /// when there is none. Ends by `deadline`.
    pub async fn handle(
        &self,
        event: &serde_json::Value,
        queue: Option<&dyn WorkQueue>,
        deadline: Instant,
    ) -> serde_json::Value {
        if let Some(batch) = queued_work(event) {
            let (report, failed) = self.work_batch(batch, deadline).await;
            // What the event source mapping reads (ReportBatchItemFailures): the rest are deleted.
            let failures: Vec<_> = failed.into_iter().map(|id| serde_json::json!({"itemIdentifier": id})).collect();
            let mut answer = serde_json::to_value(report).unwrap_or_default();
            answer["batchItemFailures"] = serde_json::Value::Array(failures);
            return answer;
        }
        match queue {
            Some(queue) => serde_json::to_value(self.plan(queue, deadline).await).unwrap_or_default(),
            None => serde_json::to_value(self.run(deadline).await).unwrap_or_default(),
        }
    }

    /// Queues every due connection, at most `owner_share` of each owner, each held off
    /// the schedule for the lease. Nothing secret is read or queued.
    pub async fn plan(&self, queue: &dyn WorkQueue, deadline: Instant) -> PlanReport {
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let until = now + i64::try_from(self.settings.lease.as_secs()).unwrap_or(900);
        let mut taken: HashMap<String, usize> = HashMap::new();
        let mut report = PlanReport::default();
        let mut after: Option<String> = None;
        loop {
            if Instant::now() + Duration::from_secs(2) >= deadline {
                report.stopped_early = true;
                break;
            }
            let Some(page) = self.due_page(now, after.as_deref()).await else { break };
            let mut mine = Vec::new();
            for due in page.items {
                let share = taken.entry(due.owner.as_str().to_owned()).or_default();
                if *share >= self.settings.owner_share {
                    report.over_share += 1;
                    continue;
                }
                *share += 1;
                mine.push(due);
            }
            let leased: Vec<Option<Work>> = futures::stream::iter(mine)
                .map(|due| async move {
                    let seen = due.due_at?;
                    match self.store.lease(&due.owner, &due.connection.id, seen, until).await {
                        Ok(true) => Some(Work {
                            owner: due.owner.as_str().to_owned(),
                            connection_id: due.connection.id,
                            leased_until: until,
                        }),
                        Ok(false) => None,
                        Err(error) => {
                            tracing::warn!(error = %error, "could not lease a due connection; left for the next run");
                            None
                        }
                    }
                })
                .buffer_unordered(16)
                .collect()
                .await;
            report.changed += leased.iter().filter(|work| work.is_none()).count();
            let work: Vec<Work> = leased.into_iter().flatten().collect();
            match queue.enqueue(&work).await {
                Ok(()) => report.queued += work.len(),
                Err((failed, why)) => {
                    tracing::error!(
                        failed = failed.len(),
                        why,
                        "the queue refused work; due again when the lease ends"
                    );
                    report.queued += work.len() - failed.len();
                    report.not_queued += failed.len();
                }
            }
            after = page.next;
            if after.is_none() {
                break;
            }
        }
        tracing::info!(report = %serde_json::to_string(&report).unwrap_or_default(), "recheck plan");
        report
    }

    /// Checks one batch of queued connections, each read afresh: one that a user
    /// deleted, or that another message already saw to (delivered twice, or queued again
    /// after its lease ran out), is passed over. The report names the messages to hand
    /// back to the queue (stopped for time, or the store failing): they come again, and
    /// after three tries go to the dead-letter queue.
    pub async fn work(&self, batch: Vec<Work>, deadline: Instant) -> RunReport {
        self.work_batch(batch.into_iter().map(|work| (String::new(), work)).collect(), deadline).await.0
    }

    async fn work_batch(&self, batch: Vec<(String, Work)>, deadline: Instant) -> (RunReport, Vec<String>) {
        let started = OffsetDateTime::now_utc();
        let now = started.unix_timestamp();
        let reserve = self.verifier.deadline() + Duration::from_secs(2);
        let outcomes: Vec<(String, Option<(Outcome, usize)>)> = futures::stream::iter(batch)
            .map(|(message, work)| async move {
                let (Some(owner), Some(id)) = (Owner::parse(&work.owner), ConnectionId::parse(&work.connection_id))
                else {
                    tracing::error!("queued work names no connection; dropped");
                    return (message, Some((Outcome::Skipped, 0)));
                };
                if Instant::now() + reserve >= deadline {
                    return (message, None);
                }
                let outcome = match self.store.due_one(&owner, &id).await {
                    // Still this message's lease, or due again anyway (a user's edit, a put-back).
                    Ok(Some(due)) if due.due_at.is_some_and(|at| at == work.leased_until || at <= now) => {
                        Some(self.look(due, started).await)
                    }
                    Ok(_) => Some((Outcome::Skipped, 0)),
                    Err(error) => {
                        tracing::error!(error = %error, connection_id = %id, "could not read a queued connection; handed back");
                        None
                    }
                };
                (message, outcome)
            })
            .buffer_unordered(self.settings.concurrency.max(1))
            .collect()
            .await;
        let mut report = RunReport::default();
        let mut failed = Vec::new();
        for (message, outcome) in outcomes {
            if outcome.is_none() {
                failed.push(message);
            }
            report.tally(outcome);
        }
        tracing::info!(report = %serde_json::to_string(&report).unwrap_or_default(), "recheck batch");
        (report, failed)
    }
}

/// The connections an SQS event carries, with their message ids, if it is one.
fn queued_work(event: &serde_json::Value) -> Option<Vec<(String, Work)>> {
    let records = event.get("Records")?.as_array()?;
    if !records.iter().all(|r| r.get("eventSource").and_then(|s| s.as_str()) == Some("aws:sqs")) {
        return None;
    }
    Some(
        records
            .iter()
            .filter_map(|record| {
                let work = record.get("body")?.as_str().and_then(|body| serde_json::from_str(body).ok());
                if work.is_none() {
                    tracing::error!("a queued message is not work; dropped");
                }
                let message = record.get("messageId").and_then(|id| id.as_str()).unwrap_or_default().to_owned();
                Some((message, work?))
            })
            .collect(),
    )
}
