//! The `credentials` function: no HTTP route. The product's own git and
//! pull-request workers invoke it (IAM allows only the roles the template
//! names) to get what a connection authenticates with, and report what
//! Bitbucket said when they used it. The user's browser never sees a secret.
//!
//! Request: `{"action": "get", "owner", "connection_id", "purpose": "git"|"api", "caller"}`
//! or `{"action": "report", "owner", "connection_id", "version", "report_token", "outcome":
//! "unauthorized"|"forbidden", "caller", "detail"}` with the `version` and `report_token`
//! of a `get` answer: only a worker that obtained the credentials may report on them.
//! Answer: `{"ok": true, ...}` or `{"ok": false, "code", "detail"}`; never an invocation error.

use std::sync::Arc;

use base64::Engine;
use serde::Deserialize;
use serde_json::{Value, json};

use super::report_token::{self, Subject};
use crate::config::Settings;
use crate::domain::{Connection, ConnectionId, LastUsed, Owner, Status, now};
use crate::domain::{DEFAULT_CLOUD_URL, Flavor, ServerUrl};
use crate::oauth::{TokenKeeper, Usable};
use crate::problem::ApiError;
use crate::seal::Sealer;
use crate::secret::Secret;
use crate::store::{ConnectionStore, StoreError};
use crate::text::{clean_text, quoted};
use crate::username::Username;

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Purpose {
    /// git over HTTPS: a username and password, or a Bearer header.
    Git,
    /// Bitbucket's REST API: an Authorization header and the API base.
    Api,
}

impl Purpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Git => "git",
            Self::Api => "api",
        }
    }
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Bitbucket answered 401 to a use of the connection.
    Unauthorized,
    /// Bitbucket answered 403: the token lacks what the product needs.
    Forbidden,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub enum CredentialsRequest {
    Get {
        owner: String,
        connection_id: String,
        purpose: Purpose,
        caller: Option<String>,
    },
    Report {
        owner: String,
        connection_id: String,
        /// The `version` the `get` answer carried: a report about credentials the
        /// user has since replaced is stale and changes nothing.
        version: u64,
        /// From the same `get` answer (see `report_token`).
        report_token: String,
        outcome: Outcome,
        caller: Option<String>,
        detail: Option<String>,
    },
}

/// A report's claim to have used the credentials of one `get`.
struct ReportClaim<'a> {
    version: u64,
    token: &'a str,
    outcome: Outcome,
    detail: Option<&'a str>,
}

const CALLER_MAX_CHARS: usize = 64;
const DETAIL_MAX_CHARS: usize = 160;

pub struct CredentialsHandler {
    pub store: Arc<dyn ConnectionStore>,
    pub settings: Settings,
    /// Opens secrets for use, refreshing OAuth access tokens single-flight.
    pub keeper: TokenKeeper,
}

impl CredentialsHandler {
    pub fn new(store: Arc<dyn ConnectionStore>, sealer: Arc<dyn Sealer>, settings: Settings) -> Self {
        let keeper = settings.token_keeper(store.clone(), sealer.clone());
        Self { store, settings, keeper }
    }
}

/// A refusal the worker can act on.
fn refusal(code: &str, detail: impl Into<String>) -> Value {
    json!({"ok": false, "code": code, "detail": detail.into()})
}

fn from_api(error: &ApiError) -> Value {
    refusal(error.code(), error.detail())
}

impl CredentialsHandler {
    pub async fn handle(&self, event: Value, request_id: &str) -> Value {
        let request: CredentialsRequest = match serde_json::from_value(event) {
            Ok(request) => request,
            Err(_) => {
                return refusal(
                    "invalid_request",
                    "Expected {\"action\": \"get\", \"owner\", \"connection_id\", \"purpose\": \"git\"|\"api\", \"caller\"} or {\"action\": \"report\", \"owner\", \"connection_id\", \"version\" and \"report_token\" (from the get answer), \"outcome\": \"unauthorized\"|\"forbidden\", \"caller\"}.",
                );
            }
        };
        match request {
            CredentialsRequest::Get { owner, connection_id, purpose, caller } => {
                let caller = caller_name(caller.as_deref());
                let answer = self.get(&owner, &connection_id, purpose, &caller).await;
                let outcome = answer.get("code").and_then(Value::as_str).unwrap_or("issued");
                let purpose = purpose.as_str();
                tracing::info!(
                    audit = true,
                    action = "use",
                    owner,
                    connection_id,
                    purpose,
                    caller,
                    outcome,
                    request_id,
                    "audit"
                );
                answer
            }
            CredentialsRequest::Report { owner, connection_id, version, report_token, outcome, caller, detail } => {
                let caller = caller_name(caller.as_deref());
                let claim = ReportClaim { version, token: &report_token, outcome, detail: detail.as_deref() };
                let answer = self.report(&owner, &connection_id, claim, &caller).await;
                let result = answer.get("code").and_then(Value::as_str).unwrap_or("recorded");
                tracing::info!(
                    audit = true,
                    action = "report",
                    owner,
                    connection_id,
                    caller,
                    outcome = result,
                    request_id,
                    "audit"
                );
                answer
            }
        }
    }

    fn load(&self, owner: &str, id: &str) -> Result<(Owner, ConnectionId), Value> {
        let owner =
            Owner::parse(owner).ok_or_else(|| refusal("invalid_request", "'owner' is not a valid principal."))?;
        let id = ConnectionId::parse(id).ok_or_else(|| from_api(&ApiError::NotFound))?;
        Ok((owner, id))
    }

    async fn get(&self, owner: &str, id: &str, purpose: Purpose, caller: &str) -> Value {
        let (owner, id) = match self.load(owner, id) {
            Ok(found) => found,
            Err(refused) => return refused,
        };
        let limit = self.settings.max_connections_per_owner;
        let (connection, sealed) = match self.store.get_sealed(&owner, &id).await {
            Ok(Some(found)) => found,
            Ok(None) => return from_api(&ApiError::NotFound),
            Err(error) => return from_api(&error.into_api("", limit)),
        };
        let connection = connection.with_status_at(now());
        match connection.status {
            Status::Invalid => {
                let reason = connection.status_detail.clone().unwrap_or_default();
                return refusal("connection_invalid", format!("The connection is invalid: {reason}"));
            }
            Status::Expired => {
                return refusal(
                    "connection_expired",
                    "The connection's token has expired; the user must enter a new one.",
                );
            }
            Status::Verified | Status::Expiring => {}
        }
        let url = connection.url.clone();
        // An OAuth connection's access token, fresh for a few minutes at least.
        let Usable { secret, expires_at: token_expiry } = match self.keeper.usable(&owner, &connection, sealed).await {
            Ok(usable) => usable,
            Err(error) => return from_api(&error),
        };
        let mut answer = match purpose {
            Purpose::Git => git_credentials(&connection, &url, &secret),
            Purpose::Api => json!({
                "ok": true,
                "purpose": "api",
                "connection_id": connection.id,
                "credential_type": connection.credential_type.as_str(),
                "version": connection.version,
                "api_base": api_base(&url),
                "authorization": authorization(&connection, &secret),
            }),
        };
        let token_expiry = token_expiry.and_then(|at| time::OffsetDateTime::from_unix_timestamp(at).ok());
        if let Some(at) = token_expiry {
            answer["expires_at"] = json!(at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default());
        }
        // Reports on these credentials are taken for an hour, or until the token itself expires.
        let hour = now() + report_token::LIFETIME;
        let expires_at = connection.expires_at.or(token_expiry).map_or(hour, |token_expiry| token_expiry.min(hour));
        let subject = Subject { owner: &owner, connection: &id, version: connection.version };
        answer["report_token"] = json!(report_token::issue(&secret, &subject, expires_at));
        answer["report_token_expires_at"] =
            json!(expires_at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default());
        self.record_use(&owner, &id, &connection, purpose, caller).await;
        answer
    }

    /// "Last used 3 hours ago by pr-worker": checked against what was read, so a busy
    /// worker costs at most one write an hour, and the store checks again.
    async fn record_use(
        &self,
        owner: &Owner,
        id: &ConnectionId,
        connection: &Connection,
        purpose: Purpose,
        caller: &str,
    ) {
        let at = now();
        if connection.last_used.as_ref().is_some_and(|last| last.at > at - LastUsed::EVERY) {
            return;
        }
        let used = LastUsed { at, purpose: purpose.as_str().to_owned(), caller: caller.to_owned() };
        if let Err(error) = self.store.record_use(owner, id, &used).await {
            // The credentials were issued; only the record of their use waits for the next.
            tracing::warn!(error = %error, connection_id = %id, "use not recorded");
        }
    }

    /// What a worker saw in use becomes the connection's status, conditioned
    /// on the version read: a concurrent user edit is never overwritten.
    async fn report(&self, owner: &str, id: &str, claim: ReportClaim<'_>, caller: &str) -> Value {
        let ReportClaim { version, token, outcome, detail } = claim;
        let (owner, id) = match self.load(owner, id) {
            Ok(found) => found,
            Err(refused) => return refused,
        };
        let limit = self.settings.max_connections_per_owner;
        let (previous, sealed) = match self.store.get_sealed(&owner, &id).await {
            Ok(Some(found)) => found,
            Ok(None) => return from_api(&ApiError::NotFound),
            Err(error) => return from_api(&error.into_api("", limit)),
        };
        // Reports are tokened on what a get handed out: for OAuth, the access token.
        let secret = match self.keeper.as_stored(&owner, &previous, &sealed).await {
            Ok(secret) => secret,
            Err(error) => return from_api(&error),
        };
        // Checked against the version the worker was issued, so that a worker whose
        // credentials were superseded hears `stale_report`, not a forgery.
        if !report_token::holds(token, &secret, &Subject { owner: &owner, connection: &id, version }, now()) {
            return refusal(
                "invalid_report_token",
                "The report_token is not one a get of this connection issued, has expired (an hour after the get), or the credentials were replaced since; nothing was recorded. Get the credentials again and report with that answer's version and report_token.",
            );
        }
        if previous.version != version {
            return refusal(
                "stale_report",
                "The connection changed since these credentials were issued (the user may have replaced them); nothing was recorded.",
            );
        }
        // The worker's words, quoted and capped inside a fixed sentence of ours.
        let seen = detail
            .map(without_userinfo)
            .filter(|d| clean_text(d).is_some())
            .map(|d| format!(" The worker said: {}.", quoted(&d, DETAIL_MAX_CHARS)))
            .unwrap_or_default();
        let caller = quoted(caller, CALLER_MAX_CHARS);
        let at = now();
        let mut next = previous.clone();
        next.version += 1;
        next.updated_at = at;
        let code = match outcome {
            Outcome::Unauthorized => {
                let fix = if previous.credential_type == crate::credential::CredentialType::Oauth {
                    "Reconnect with Bitbucket."
                } else {
                    "Edit the connection with a new token."
                };
                let what =
                    format!("Bitbucket refused these credentials when the worker {caller} used them. {fix}{seen}");
                next.record_failure("invalid_credentials", what, at);
                "invalid_credentials"
            }
            // One refused action (a branch restriction, another repository) is not a verdict
            // on the credentials: the connection stays usable and says what happened.
            Outcome::Forbidden => {
                next.warnings.retain(|w| w.code != "refused_in_use");
                next.warnings.push(crate::domain::Warning {
                    code: "refused_in_use".into(),
                    detail: format!("Bitbucket refused the worker {caller} an action with these credentials. If the token lacks a scope, edit the connection with one that has read and write on repositories and pull requests.{seen}"),
                });
                "refused_in_use"
            }
        };
        match self.store.update(&owner, &previous, &next, None).await {
            Ok(()) => json!({"ok": true, "status": next.status, "recorded": code, "version": next.version}),
            Err(StoreError::VersionMismatch) => refusal(
                "version_mismatch",
                "The connection changed while the report was recorded (the user may have just fixed it); check it again before retrying.",
            ),
            Err(error) => from_api(&error.into_api("", limit)),
        }
    }
}

/// A worker's text may quote a URL with credentials in it (`https://user:token@host`):
/// those never reach the stored status or an event.
fn without_userinfo(text: &str) -> String {
    text.split_whitespace()
        .map(|word| match url::Url::parse(word) {
            Ok(mut url) if !url.username().is_empty() || url.password().is_some() => {
                let _ = url.set_username("");
                let _ = url.set_password(None);
                url.to_string()
            }
            _ => word.to_owned(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The worker's declared name, for the audit line; sentences quote it.
fn caller_name(caller: Option<&str>) -> String {
    caller.and_then(clean_text).map(|c| c.chars().take(CALLER_MAX_CHARS).collect()).unwrap_or_else(|| "unnamed".into())
}

/// The API base requests go to: the connection's URL (`…/2.0`, or the Data
/// Center root's `/rest/api/1.0`).
fn api_base(url: &ServerUrl) -> String {
    match url.flavor() {
        Flavor::Cloud => url.as_str().to_owned(),
        Flavor::DataCenter => format!("{}/rest/api/1.0", url.as_str()),
    }
}

/// Where repositories are cloned from: bitbucket.org for Cloud's API, the
/// server's `/scm/` on Data Center.
fn clone_url_base(url: &ServerUrl) -> String {
    match url.flavor() {
        Flavor::Cloud if url.as_str() == DEFAULT_CLOUD_URL => "https://bitbucket.org/".into(),
        Flavor::Cloud => format!("{}/", url.url().origin().ascii_serialization()),
        Flavor::DataCenter => format!("{}/scm/", url.as_str()),
    }
}

fn authorization(connection: &Connection, secret: &Secret) -> String {
    match connection.username.as_ref().map(Username::as_str).filter(|_| connection.credential_type.has_username()) {
        Some(user) => {
            let pair = format!("{user}:{}", secret.expose());
            format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(pair))
        }
        None => format!("Bearer {}", secret.expose()),
    }
}

fn git_credentials(connection: &Connection, url: &ServerUrl, secret: &Secret) -> Value {
    let base = json!({
        "ok": true,
        "purpose": "git",
        "connection_id": connection.id,
        "credential_type": connection.credential_type.as_str(),
        "clone_url_base": clone_url_base(url),
        "version": connection.version,
    });
    let mut answer = base;
    // Connections stored before git users were recorded derive theirs from the kind.
    let login = connection.username.as_ref().map(Username::as_str);
    let git_user = connection.git_username.clone().or_else(|| connection.credential_type.git_username(login));
    match &git_user {
        Some(user) => {
            answer["username"] = json!(user);
            answer["password"] = json!(secret.expose());
        }
        // Bearer-only tokens: git sends the header itself (`-c http.extraHeader=…`).
        None => answer["http_extra_header"] = json!(format!("Authorization: Bearer {}", secret.expose())),
    }
    answer
}
