//! The stored `Connection` record (also the API resource) and how it changes.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::{
    Account, ConnectionId, EXPIRY_WARNING, LastUsed, Provider, ServerUrl, Status, Verification, Warning, fold_name,
};
use crate::credential::{Capabilities, CredentialType, Resource};
use crate::username::Username;

/// The longest an OAuth connection goes without a check (and so without a refresh).
pub const OAUTH_KEEP_ALIVE: time::Duration = time::Duration::days(60);

/// A stored connection without its secret. This is also the API resource. The
/// server URL, login and resource are held parsed: a stored item whose values no
/// longer parse is refused by the store that reads it, once, as `StoreError::Corrupt`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Connection {
    pub id: String,
    pub name: String,
    pub provider: Provider,
    pub url: ServerUrl,
    /// Absent for credentials that have no login (access tokens).
    #[serde(default)]
    pub username: Option<Username>,
    pub credential_type: CredentialType,
    /// What an access token is bound to (`workspace/repo`, `workspace/PROJECT`,
    /// `workspace`; on Data Center `PROJECT` or `PROJECT/repo`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<Resource>,
    /// `null` when the credentials may not read their own account.
    #[serde(default)]
    pub account: Option<Account>,
    pub scopes: Vec<String>,
    #[serde(default)]
    pub capabilities: Capabilities,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<Warning>,
    /// The user git over HTTPS authenticates as; absent when git takes a Bearer header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git_username: Option<String>,
    pub status: Status,
    /// The problem code of the last failed verification, while `status` is `invalid`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_reason: Option<String>,
    /// What to do about it, in the user's words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_detail: Option<String>,
    /// When the token stops working, as the user told us: no Bitbucket API reads it back.
    /// Stored as text, so DynamoDB's TTL (which reads numbers only) never deletes the connection.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
    /// When a worker last obtained the credentials, and which: recorded at most once an
    /// hour, so a busy worker adds no write per use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_used: Option<LastUsed>,
    #[serde(with = "time::serde::rfc3339")]
    pub verified_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    pub version: u64,
}

/// What a new connection is made of, besides Bitbucket's verdict.
pub struct NewConnection<'a> {
    pub id: &'a ConnectionId,
    pub name: &'a str,
    pub url: &'a ServerUrl,
    pub username: Option<&'a Username>,
    pub resource: Option<&'a Resource>,
    pub expires_at: Option<OffsetDateTime>,
}

impl Connection {
    /// A connection Bitbucket has just accepted: version 1, created, updated and verified `at`.
    pub fn verified(new: NewConnection<'_>, verification: Verification, at: OffsetDateTime) -> Self {
        let mut connection = Self {
            id: new.id.to_string(),
            name: new.name.to_owned(),
            provider: verification.provider,
            url: new.url.as_stored(),
            username: new.username.cloned(),
            credential_type: verification.credential_type,
            resource: new.resource.map(Resource::as_stored),
            account: None,
            scopes: Vec::new(),
            capabilities: Capabilities::default(),
            warnings: Vec::new(),
            git_username: None,
            status: Status::Verified,
            status_reason: None,
            status_detail: None,
            expires_at: new.expires_at,
            last_used: None,
            verified_at: at,
            created_at: at,
            updated_at: at,
            version: 1,
        };
        connection.record_success(verification, at);
        connection
    }

    /// Takes in what a successful verification found.
    pub fn record_success(&mut self, verified: Verification, at: OffsetDateTime) {
        self.provider = verified.provider;
        self.credential_type = verified.credential_type;
        self.account = verified.account;
        self.scopes = verified.scopes;
        self.capabilities = verified.capabilities;
        self.warnings = verified.warnings;
        self.git_username = verified.git_username;
        self.status = Status::Verified;
        self.status_reason = None;
        self.status_detail = None;
        self.verified_at = at;
    }

    /// Records a definite verdict against the stored credentials.
    pub fn record_failure(&mut self, code: &str, detail: String, at: OffsetDateTime) {
        self.status = Status::Invalid;
        self.status_reason = Some(code.to_owned());
        self.status_detail = Some(detail);
        self.verified_at = at;
    }

    /// The status as of `now`: a verified connection whose token runs out soon is
    /// `expiring`, and one past its expiry `expired`.
    pub fn with_status_at(mut self, now: OffsetDateTime) -> Self {
        if self.status == Status::Verified
            && let Some(expires) = self.expires_at
        {
            if expires <= now {
                self.status = Status::Expired;
            } else if expires - now <= EXPIRY_WARNING {
                self.status = Status::Expiring;
            }
        }
        self
    }

    /// When the recheck function should next look: a fresh verification every
    /// `interval`, and the moments it turns `expiring` and `expired`. `None` once
    /// only the user can change anything (invalid, or expired).
    /// How long this connection may go unchecked: the operator's interval, and for an
    /// OAuth connection at most 60 days, so that its refresh token is used (each check
    /// refreshes the hours-long access token) well before Bitbucket Cloud expires a
    /// refresh token unused for 3 months.
    pub fn check_interval(&self, interval: time::Duration) -> time::Duration {
        if self.credential_type == CredentialType::Oauth { interval.min(OAUTH_KEEP_ALIVE) } else { interval }
    }

    pub fn next_check(&self, interval: time::Duration, now: OffsetDateTime) -> Option<OffsetDateTime> {
        if self.status == Status::Invalid {
            return None;
        }
        let mut due = self.verified_at + self.check_interval(interval);
        if let Some(expires) = self.expires_at {
            if expires <= now {
                return None;
            }
            for moment in [expires - EXPIRY_WARNING, expires] {
                if moment > now {
                    due = due.min(moment);
                }
            }
        }
        Some(due)
    }

    pub fn folded_name(&self) -> String {
        fold_name(&self.name)
    }

    /// The strong validator used for `ETag` / `If-Match`.
    pub fn etag(&self) -> String {
        format!("\"{}\"", self.version)
    }
}

/// Now, truncated to whole seconds so stored and returned times compare equal.
pub fn now() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    now.replace_nanosecond(0).unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_shows_in_the_status() {
        let now = now();
        let id = ConnectionId::new();
        let url = ServerUrl::parse(super::super::DEFAULT_CLOUD_URL).unwrap();
        let new =
            |expires_at| NewConnection { id: &id, name: "w", url: &url, username: None, resource: None, expires_at };
        let verification = Verification::for_tests();
        let at = |days| Some(now + time::Duration::days(days));
        assert_eq!(
            Connection::verified(new(at(30)), verification.clone(), now).with_status_at(now).status,
            Status::Verified
        );
        assert_eq!(
            Connection::verified(new(at(10)), verification.clone(), now).with_status_at(now).status,
            Status::Expiring
        );
        assert_eq!(
            Connection::verified(new(at(-1)), verification.clone(), now).with_status_at(now).status,
            Status::Expired
        );
        let mut invalid = Connection::verified(new(at(-1)), verification, now);
        invalid.record_failure("invalid_credentials", String::new(), now);
        assert_eq!(invalid.with_status_at(now).status, Status::Invalid);
    }

    #[test]
    fn an_oauth_connection_is_checked_at_least_every_sixty_days() {
        let now = now();
        let id = ConnectionId::new();
        let url = ServerUrl::parse(super::super::DEFAULT_CLOUD_URL).unwrap();
        let new = NewConnection { id: &id, name: "w", url: &url, username: None, resource: None, expires_at: None };
        let mut connection = Connection::verified(new, Verification::for_tests(), now);
        let year = time::Duration::days(365);
        assert_eq!(connection.next_check(year, now), Some(now + year), "a token waits for the operator's interval");
        connection.credential_type = CredentialType::Oauth;
        assert_eq!(connection.next_check(year, now), Some(now + OAUTH_KEEP_ALIVE), "its refresh token stays alive");
        assert_eq!(connection.next_check(time::Duration::DAY, now), Some(now + time::Duration::DAY));
    }
}
