//! Value objects and the `Connection` record. Values are parsed at the edge
//! (see `input`), so everything past it holds only valid ones.

use std::fmt;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

pub const NAME_MAX_CHARS: usize = 100;
pub const USERNAME_MAX_CHARS: usize = 255;
pub const SECRET_MAX_BYTES: usize = 1024;
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
        if trimmed.chars().any(char::is_control) {
            return Err("must not contain control characters");
        }
        Ok(Self(trimmed.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key uniqueness is enforced on: "Work" and "work" are the same name.
    pub fn folded(&self) -> String {
        self.0.to_lowercase()
    }
}

/// The login that goes with the secret: a Bitbucket username, an Atlassian
/// account email (API tokens) or a Data Center user slug.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Username(String);

impl Username {
    pub fn parse(text: &str) -> Result<Self, &'static str> {
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Err("must not be empty");
        }
        if trimmed.chars().count() > USERNAME_MAX_CHARS {
            return Err("must be at most 255 characters");
        }
        if trimmed.contains(':') {
            // Basic auth splits on the first colon; no Bitbucket login contains one.
            return Err("must not contain ':'");
        }
        if trimmed.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err("must not contain spaces or control characters");
        }
        Ok(Self(trimmed.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_email(&self) -> bool {
        self.0.contains('@')
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Provider {
    BitbucketCloud,
    BitbucketDataCenter,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CredentialType {
    AppPassword,
    ApiToken,
    HttpAccessToken,
}

impl CredentialType {
    pub const ALL: [&'static str; 3] = ["app_password", "api_token", "http_access_token"];

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "app_password" => Some(Self::AppPassword),
            "api_token" => Some(Self::ApiToken),
            "http_access_token" => Some(Self::HttpAccessToken),
            _ => None,
        }
    }

    /// Atlassian API tokens authenticate with the account email, app passwords
    /// with the Bitbucket username: the username's shape tells them apart.
    pub fn infer_for_cloud(username: &Username) -> Self {
        if username.is_email() { Self::ApiToken } else { Self::AppPassword }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Verified,
    Invalid,
}

/// The Bitbucket account the credentials belong to, as Bitbucket reported it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
}

impl Account {
    /// Two accounts are the same when their strongest shared identifier matches.
    pub fn same_as(&self, other: &Account) -> bool {
        match (&self.uuid, &other.uuid) {
            (Some(a), Some(b)) => a == b,
            _ => match (&self.username, &other.username) {
                (Some(a), Some(b)) => a.eq_ignore_ascii_case(b),
                _ => true,
            },
        }
    }
}

/// A stored connection without its secret. This is also the API resource.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Connection {
    pub id: String,
    pub name: String,
    pub provider: Provider,
    pub url: String,
    pub username: String,
    pub credential_type: CredentialType,
    pub account: Account,
    pub scopes: Vec<String>,
    pub status: Status,
    /// The problem code of the last failed verification, while `status` is `invalid`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_reason: Option<String>,
    /// What to do about it, in the user's words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_detail: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub verified_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    pub version: u64,
}

impl Connection {
    /// A connection Bitbucket has just accepted: version 1, created, updated and verified `at`.
    pub fn verified(
        id: &ConnectionId,
        name: &str,
        url: &str,
        username: &str,
        verification: crate::verify::Verification,
        at: OffsetDateTime,
    ) -> Self {
        Self {
            id: id.to_string(),
            name: name.to_owned(),
            provider: verification.provider,
            url: url.to_owned(),
            username: username.to_owned(),
            credential_type: verification.credential_type,
            account: verification.account,
            scopes: verification.scopes,
            status: Status::Verified,
            status_reason: None,
            status_detail: None,
            verified_at: at,
            created_at: at,
            updated_at: at,
            version: 1,
        }
    }

    pub fn folded_name(&self) -> String {
        self.name.to_lowercase()
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
    fn usernames_reject_what_basic_auth_cannot_carry() {
        assert!(Username::parse("jdoe").is_ok());
        assert!(Username::parse("j:doe").is_err());
        assert!(Username::parse("j doe").is_err());
        assert!(Username::parse("").is_err());
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
    fn credential_type_is_inferred_from_username_shape() {
        let email = Username::parse("j@example.com").unwrap();
        let plain = Username::parse("jdoe").unwrap();
        assert_eq!(CredentialType::infer_for_cloud(&email), CredentialType::ApiToken);
        assert_eq!(CredentialType::infer_for_cloud(&plain), CredentialType::AppPassword);
    }

    #[test]
    fn accounts_compare_by_uuid_first() {
        let a = Account { uuid: Some("{1}".into()), username: Some("x".into()), ..Default::default() };
        let b = Account { uuid: Some("{2}".into()), username: Some("x".into()), ..Default::default() };
        assert!(!a.same_as(&b));
        assert!(a.same_as(&a.clone()));
    }
}
