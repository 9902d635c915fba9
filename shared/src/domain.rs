//! Value objects and the `Connection` record. Values are parsed at the edge
//! (see `input`), so everything past it holds only valid ones.

use std::fmt;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use unicode_normalization::UnicodeNormalization;
use uuid::Uuid;

use crate::text::{clean_text, is_invisible_format};

pub use crate::credential::{Capabilities, Capability, CredentialType};

pub const NAME_MAX_CHARS: usize = 100;
pub const SECRET_MAX_CHARS: usize = 1024;
pub const OWNER_MAX_BYTES: usize = 256;

/// The authenticated principal (`sub` claim) that owns connections.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Owner(String);

impl Owner {
    /// `None` for a subject no identity provider would issue (empty, huge, control characters).
    pub fn parse(sub: &str) -> Option<Self> {
        let ok = !sub.is_empty() && sub.len() <= OWNER_MAX_BYTES && !sub.chars().any(char::is_control);
        ok.then(|| Self(sub.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Time-ordered (UUIDv7), so a listing in key order is a listing by creation time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionId(Uuid);

impl ConnectionId {
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }

    /// Only the canonical lower-case hyphenated form: one id, one spelling.
    pub fn parse(text: &str) -> Option<Self> {
        let id = Uuid::try_parse(text).ok()?;
        (id.hyphenated().to_string() == text).then_some(Self(id))
    }
}

impl Default for ConnectionId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

/// What the user calls the connection; unique per owner, ignoring case.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectionName(String);

impl ConnectionName {
    pub fn parse(text: &str) -> Result<Self, &'static str> {
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Err("must not be empty");
        }
        if trimmed.chars().count() > NAME_MAX_CHARS {
            return Err("must be at most 100 characters");
        }
        if trimmed.chars().any(|c| c.is_control() || is_invisible_format(c)) {
            return Err("must not contain control characters or invisible formatting characters");
        }
        Ok(Self(trimmed.nfc().collect()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key uniqueness is enforced on.
    pub fn folded(&self) -> String {
        fold_name(&self.0)
    }
}

/// Names that differ only in case or in how their characters are composed are
/// one name: "Straße", "STRASSE" and "strasse" (Unicode full case folding, NFC).
pub fn fold_name(name: &str) -> String {
    let composed: String = name.nfc().collect();
    caseless::default_case_fold_str(&composed).nfc().collect()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Provider {
    BitbucketCloud,
    BitbucketDataCenter,
}

/// `expiring` and `expired` are never stored: they follow from `expires_at` and
/// the clock, so a list shows them the moment they become true.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Verified,
    Invalid,
    Expiring,
    Expired,
}

/// How long before `expires_at` a verified connection shows as `expiring`.
pub const EXPIRY_WARNING: time::Duration = time::Duration::days(14);

/// The Bitbucket account the credentials belong to, as Bitbucket reported it.
/// Built only through [`Account::new`], so it always carries an identifier.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// Cloud's `{uuid}`, or a Data Center user's numeric id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
    /// Cloud's Atlassian account id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
}

impl Account {
    /// `None` unless Bitbucket named the account by a real identifier. Every
    /// field is cleaned: Bitbucket's answer is untrusted input.
    pub fn new(
        uuid: Option<&str>,
        account_id: Option<&str>,
        display_name: Option<&str>,
        username: Option<&str>,
    ) -> Option<Self> {
        let uuid = uuid.and_then(clean_text);
        let account_id = account_id.and_then(clean_text);
        if uuid.is_none() && account_id.is_none() {
            return None;
        }
        Some(Self {
            uuid,
            account_id,
            display_name: display_name.and_then(clean_text),
            username: username.and_then(clean_text),
        })
    }

    /// Same account only when a real identifier matches: an account we know
    /// nothing about never equals another.
    pub fn same_as(&self, other: &Account) -> bool {
        match (&self.uuid, &other.uuid, &self.account_id, &other.account_id) {
            (Some(a), Some(b), _, _) => a == b,
            (_, _, Some(a), Some(b)) => a == b,
            _ => false,
        }
    }

    /// How the account is named to the user.
    pub fn label(&self) -> String {
        self.username
            .clone()
            .or_else(|| self.display_name.clone())
            .or_else(|| self.uuid.clone())
            .or_else(|| self.account_id.clone())
            .unwrap_or_default()
    }
}

/// Something the connection works without, and what would change that.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Warning {
    pub code: String,
    pub detail: String,
}

/// A stored connection without its secret. This is also the API resource.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Connection {
    pub id: String,
    pub name: String,
    pub provider: Provider,
    pub url: String,
    /// Absent for credentials that have no login (access tokens).
    #[serde(default)]
    pub username: Option<String>,
    pub credential_type: CredentialType,
    /// What an access token is bound to (`workspace/repo`, `workspace/PROJECT`,
    /// `workspace`; on Data Center `PROJECT` or `PROJECT/repo`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
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

/// What Bitbucket told us about working credentials.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verification {
    pub provider: Provider,
    pub credential_type: CredentialType,
    pub account: Option<Account>,
    pub scopes: Vec<String>,
    pub capabilities: Capabilities,
    pub warnings: Vec<Warning>,
    pub git_username: Option<String>,
}

impl Verification {
    /// A verified API token with every scope, for unit tests elsewhere in the crate.
    #[cfg(test)]
    pub fn for_tests() -> Self {
        Self {
            provider: Provider::BitbucketCloud,
            credential_type: CredentialType::ApiToken,
            account: Account::new(Some("{1}"), None, Some("J"), Some("j")),
            scopes: Vec::new(),
            capabilities: Capabilities::default(),
            warnings: Vec::new(),
            git_username: None,
        }
    }
}

/// A worker's use of a connection, as the worker declared it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastUsed {
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// `git` or `api`.
    pub purpose: String,
    /// The worker's declared name (plain, capped).
    pub caller: String,
}

impl LastUsed {
    /// How often a use is written down: a busy worker costs one write an hour.
    pub const EVERY: time::Duration = time::Duration::hours(1);
}

/// What a new connection is made of, besides Bitbucket's verdict.
pub struct NewConnection<'a> {
    pub id: &'a ConnectionId,
    pub name: &'a str,
    pub url: &'a str,
    pub username: Option<&'a str>,
    pub resource: Option<&'a str>,
    pub expires_at: Option<OffsetDateTime>,
}

impl Connection {
    /// A connection Bitbucket has just accepted: version 1, created, updated and verified `at`.
    pub fn verified(new: NewConnection<'_>, verification: Verification, at: OffsetDateTime) -> Self {
        let mut connection = Self {
            id: new.id.to_string(),
            name: new.name.to_owned(),
            provider: verification.provider,
            url: new.url.to_owned(),
            username: new.username.map(str::to_owned),
            credential_type: verification.credential_type,
            resource: new.resource.map(str::to_owned),
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
    pub fn next_check(&self, interval: time::Duration, now: OffsetDateTime) -> Option<OffsetDateTime> {
        if self.status == Status::Invalid {
            return None;
        }
        let mut due = self.verified_at + interval;
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
    fn names_are_trimmed_bounded_and_fold_case() {
        assert_eq!(ConnectionName::parse("  Work ").unwrap().as_str(), "Work");
        assert_eq!(ConnectionName::parse("Work").unwrap().folded(), "work");
        assert!(ConnectionName::parse("   ").is_err());
        assert!(ConnectionName::parse(&"x".repeat(101)).is_err());
        assert!(ConnectionName::parse(&"é".repeat(100)).is_ok());
        assert!(ConnectionName::parse("a\u{0}b").is_err());
    }

    #[test]
    fn ids_have_one_spelling() {
        let id = ConnectionId::new();
        assert_eq!(ConnectionId::parse(&id.to_string()), Some(id));
        assert!(ConnectionId::parse(&id.to_string().to_uppercase()).is_none());
        assert!(ConnectionId::parse(&id.to_string().replace('-', "")).is_none());
        assert!(ConnectionId::parse("../etc/passwd").is_none());
    }

    #[test]
    fn names_fold_case_and_composition_and_refuse_invisible_characters() {
        let fold = |t: &str| ConnectionName::parse(t).unwrap().folded();
        assert_eq!(fold("Straße"), fold("STRASSE"));
        assert_eq!(fold("Caf\u{0065}\u{0301}"), fold("CAF\u{00C9}"));
        for bad in ["a\u{202E}b", "a\u{200B}b", "\u{FEFF}work", "a\u{0007}b"] {
            assert!(ConnectionName::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn accounts_compare_by_a_real_identifier_only() {
        let a = Account::new(Some("{1}"), None, None, Some("x")).unwrap();
        let b = Account::new(Some("{2}"), None, None, Some("x")).unwrap();
        assert!(!a.same_as(&b));
        assert!(a.same_as(&a.clone()));
        let by_id = Account::new(None, Some("557058:1"), None, None).unwrap();
        assert!(!a.same_as(&by_id), "no shared identifier: never the same");
        assert!(Account::new(None, None, Some("J Doe"), Some("jdoe")).is_none());
    }

    #[test]
    fn fields_from_bitbucket_are_cleaned_and_capped() {
        let huge = format!("<b>{}</b>\u{202E}\u{0000}", "x".repeat(200_000));
        let account = Account::new(Some("{1}"), None, Some(&huge), None).unwrap();
        let name = account.display_name.unwrap();
        assert!(name.chars().count() <= 200);
        assert!(!name.contains('\u{202E}') && !name.contains('\0'));
    }

    #[test]
    fn expiry_shows_in_the_status() {
        let now = now();
        let id = ConnectionId::new();
        let new =
            |expires_at| NewConnection { id: &id, name: "w", url: "u", username: None, resource: None, expires_at };
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
}
