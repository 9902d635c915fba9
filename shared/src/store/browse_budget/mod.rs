//! The share of Bitbucket's time one owner's browsing may hold: at most `slots`
//! pages in flight at once across every Lambda, each slot a lease that expires by
//! itself if its invocation dies; and a rest for a server that keeps timing out,
//! during which that owner's pages from it are answered without calling it.

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::domain::Owner;
use crate::store::StoreError;
use crate::store::documents::{Change, Documents, change};

/// The owner's document: the leases in flight and the servers resting.
const BUDGET: &str = "BROWSE";

/// How much browsing one owner may hold (milliseconds throughout).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BrowseRules {
    /// Pages in flight at once.
    pub slots: usize,
    /// How long a slot is held at most: the page's deadline and a margin.
    pub hold_ms: i64,
    /// Timeouts in a row from one server before it rests.
    pub timeouts_to_rest: u32,
    pub rest_ms: i64,
}

impl Default for BrowseRules {
    fn default() -> Self {
        Self { slots: 4, hold_ms: 10_000, timeouts_to_rest: 2, rest_ms: 60_000 }
    }
}

/// Whether a page may call Bitbucket now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Yes, holding this lease until it is given back.
    Taken(String),
    /// Every slot is held; one frees within this many milliseconds.
    Busy { retry_after_ms: i64 },
    /// The server kept timing out; it is not called again for this long.
    Resting { retry_after_ms: i64 },
}

/// How a page's call to Bitbucket ended, for the server's record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallOutcome {
    Answered,
    TimedOut,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
struct Budget {
    /// Lease id → when it expires.
    leases: BTreeMap<String, i64>,
    /// Server origin → its record.
    servers: BTreeMap<String, Server>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
struct Server {
    /// Timeouts in a row, the last at `last_timeout`.
    timeouts: u32,
    #[serde(default)]
    last_timeout: i64,
    rest_until: i64,
}

impl Budget {
    /// "In a row" means within a rest's length of each other: an old timeout is forgotten.
    fn forget_the_past(&mut self, now: i64, rules: &BrowseRules) {
        self.leases.retain(|_, expires| *expires > now);
        self.servers.retain(|_, server| {
            server.rest_until > now || (server.timeouts > 0 && server.last_timeout + rules.rest_ms > now)
        });
    }

    fn take(mut self, origin: &str, lease: &str, rules: &BrowseRules, now: i64) -> Change<Budget, Admission> {
        self.forget_the_past(now, rules);
        if let Some(server) = self.servers.get(origin).filter(|s| s.rest_until > now) {
            return Change::Keep(Admission::Resting { retry_after_ms: server.rest_until - now });
        }
        if self.leases.len() >= rules.slots {
            let first_free = self.leases.values().min().copied().unwrap_or(now);
            return Change::Keep(Admission::Busy { retry_after_ms: (first_free - now).max(1) });
        }
        self.leases.insert(lease.to_owned(), now + rules.hold_ms);
        Change::Write(self, Admission::Taken(lease.to_owned()))
    }

    fn give_back(mut self, lease: &str, origin: &str, outcome: CallOutcome, rules: &BrowseRules, now: i64) -> Budget {
        self.leases.remove(lease);
        self.forget_the_past(now, rules);
        let server = self.servers.entry(origin.to_owned()).or_default();
        match outcome {
            CallOutcome::Answered => server.timeouts = 0,
            CallOutcome::TimedOut => {
                server.timeouts += 1;
                server.last_timeout = now;
                if server.timeouts >= rules.timeouts_to_rest {
                    server.timeouts = 0;
                    server.rest_until = now + rules.rest_ms;
                }
            }
        }
        self.forget_the_past(now, rules);
        self
    }
}

#[async_trait]
pub trait BrowseBudget: Send + Sync {
    /// Takes one of `owner`'s slots for a page from `origin` at `now` (Unix ms).
    async fn take_slot(
        &self,
        owner: &Owner,
        origin: &str,
        rules: &BrowseRules,
        now: i64,
    ) -> Result<Admission, StoreError>;

    /// Gives the slot back, recording how the call to `origin` ended.
    async fn give_back(
        &self,
        owner: &Owner,
        lease: &str,
        origin: &str,
        outcome: CallOutcome,
        rules: &BrowseRules,
        now: i64,
    ) -> Result<(), StoreError>;
}

/// When the budget may go (Unix seconds): after every lease and rest it can hold.
fn document_expiry(rules: &BrowseRules, now: i64) -> i64 {
    (now + rules.hold_ms.max(rules.rest_ms)) / 1000 + 60
}

#[async_trait]
impl<D: Documents> BrowseBudget for D {
    async fn take_slot(
        &self,
        owner: &Owner,
        origin: &str,
        rules: &BrowseRules,
        now: i64,
    ) -> Result<Admission, StoreError> {
        let lease = uuid::Uuid::now_v7().to_string();
        let expires = document_expiry(rules, now);
        // Racing writes of one owner's own pages: answered as busy, briefly.
        let contended = Admission::Busy { retry_after_ms: 1_000 };
        change(self, owner, BUDGET, expires, contended, |budget: Option<Budget>| {
            budget.unwrap_or_default().take(origin, &lease, rules, now)
        })
        .await
    }

    async fn give_back(
        &self,
        owner: &Owner,
        lease: &str,
        origin: &str,
        outcome: CallOutcome,
        rules: &BrowseRules,
        now: i64,
    ) -> Result<(), StoreError> {
        let expires = document_expiry(rules, now);
        // A slot not given back (every write lost) frees itself when its lease expires.
        change(self, owner, BUDGET, expires, (), |budget: Option<Budget>| {
            Change::Write(budget.unwrap_or_default().give_back(lease, origin, outcome, rules, now), ())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULES: BrowseRules = BrowseRules { slots: 2, hold_ms: 10_000, timeouts_to_rest: 2, rest_ms: 60_000 };

    fn taken(change: Change<Budget, Admission>) -> Budget {
        match change {
            Change::Write(budget, Admission::Taken(_)) => budget,
            Change::Write(_, other) | Change::Keep(other) => panic!("not taken: {other:?}"),
        }
    }

    fn refused(change: Change<Budget, Admission>) -> Admission {
        match change {
            Change::Keep(answer) => answer,
            Change::Write(..) => panic!("taken"),
        }
    }

    #[test]
    fn slots_are_held_until_given_back_or_expired() {
        let origin = "https://slow.example:443";
        let budget = taken(Budget::default().take(origin, "a", &RULES, 0));
        let budget = taken(budget.take(origin, "b", &RULES, 1_000));
        assert_eq!(refused(budget.clone().take(origin, "c", &RULES, 2_000)), Admission::Busy { retry_after_ms: 8_000 });
        let freed = budget.clone().give_back("a", origin, CallOutcome::Answered, &RULES, 3_000);
        taken(freed.take(origin, "c", &RULES, 3_000));
        // An invocation that died never gives its slot back; the lease runs out.
        taken(budget.take(origin, "d", &RULES, 10_001));
    }

    #[test]
    fn a_server_that_keeps_timing_out_rests() {
        let (slow, other) = ("https://slow.example:443", "https://fine.example:443");
        let budget = taken(Budget::default().take(slow, "a", &RULES, 0));
        let budget = budget.give_back("a", slow, CallOutcome::TimedOut, &RULES, 5_000);
        let budget = taken(budget.take(slow, "b", &RULES, 5_000));
        let budget = budget.give_back("b", slow, CallOutcome::TimedOut, &RULES, 10_000);
        assert_eq!(
            refused(budget.clone().take(slow, "c", &RULES, 10_000)),
            Admission::Resting { retry_after_ms: 60_000 }
        );
        let budget = taken(budget.take(other, "c", &RULES, 10_000));
        taken(budget.give_back("c", other, CallOutcome::Answered, &RULES, 11_000).take(slow, "d", &RULES, 70_000));
    }

    #[test]
    fn timeouts_far_apart_are_not_in_a_row() {
        let slow = "https://slow.example:443";
        let budget = taken(Budget::default().take(slow, "a", &RULES, 0));
        let budget = budget.give_back("a", slow, CallOutcome::TimedOut, &RULES, 1_000);
        let budget = taken(budget.take(slow, "b", &RULES, 2 * 60_000));
        let budget = budget.give_back("b", slow, CallOutcome::TimedOut, &RULES, 2 * 60_000 + 1_000);
        taken(budget.take(slow, "c", &RULES, 2 * 60_000 + 1_000));
    }

    #[test]
    fn an_answer_between_timeouts_starts_the_count_again() {
        let slow = "https://slow.example:443";
        let mut budget = Budget::default();
        for (n, outcome) in
            [CallOutcome::TimedOut, CallOutcome::Answered, CallOutcome::TimedOut].into_iter().enumerate()
        {
            let lease = n.to_string();
            budget = taken(budget.take(slow, &lease, &RULES, 0)).give_back(&lease, slow, outcome, &RULES, 0);
        }
        taken(budget.take(slow, "z", &RULES, 0));
    }
}
