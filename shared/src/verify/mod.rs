//! Proving credentials against Bitbucket before anything is stored.

pub mod client;
mod cloud;
mod data_center;
pub mod net;
mod oauth;

use std::time::Duration;

use crate::credential::{Capabilities, CredentialType, Resource};
use crate::domain::{Flavor, ServerUrl};
use crate::problem::{ApiError, FieldError};
use crate::secret::Secret;
use crate::username::Username;
use client::{BitbucketHttp, ClientSettings, LazyHttp};

pub use crate::domain::Verification;

/// What is being proven.
pub struct Claim<'a> {
    pub url: &'a ServerUrl,
    pub username: Option<&'a Username>,
    pub secret: &'a Secret,
    /// As the user declared it; inferred when `None`.
    pub credential_type: Option<CredentialType>,
    pub resource: Option<&'a Resource>,
}

impl Claim<'_> {
    fn username(&self) -> &str {
        self.username.map(Username::as_str).unwrap_or_default()
    }
}

/// Cheap to clone: clones share one client.
#[derive(Clone)]
pub struct Verifier {
    http: LazyHttp,
    deadline: Duration,
}

impl Verifier {
    pub fn new(settings: &ClientSettings) -> Result<Self, String> {
        Ok(Self { http: LazyHttp::new(settings), deadline: settings.deadline })
    }

    /// The client, built on its first use.
    pub fn http(&self) -> Result<&BitbucketHttp, ApiError> {
        self.http.get()
    }

    /// The client itself, to share with what else calls Bitbucket in this process.
    pub fn lazy_http(&self) -> LazyHttp {
        self.http.clone()
    }

    /// The longest one verification may take.
    pub fn deadline(&self) -> Duration {
        self.deadline
    }

    /// Everything that can be judged without a request: the URL's scheme and
    /// literal address, and whether the fields fit the kind of credential. The
    /// kind the claim will be verified as.
    pub fn check(&self, claim: &Claim<'_>) -> Result<CredentialType, ApiError> {
        client::check_url(&self.http.settings().policy, claim.url.url())?;
        let cloud = claim.url.flavor() == Flavor::Cloud;
        if claim.credential_type == Some(CredentialType::Oauth) {
            return Ok(CredentialType::Oauth);
        }
        let kind =
            claim.credential_type.unwrap_or_else(|| CredentialType::infer(cloud, claim.username, claim.resource));
        let field = |name: &str, detail: &str| ApiError::ValidationFailed {
            errors: vec![FieldError::new(name, "invalid", detail)],
        };
        if kind.is_cloud() != cloud {
            return Err(field(
                "credential_type",
                if cloud {
                    "this kind is for Bitbucket Data Center; on Bitbucket Cloud use api_token (with your Atlassian email) or an access token"
                } else {
                    "this URL is a Bitbucket Data Center server, which uses http_access_token (or a project or repository HTTP access token); for Bitbucket Cloud use https://api.bitbucket.org/2.0"
                },
            ));
        }
        if kind.has_username() && claim.username.is_none() {
            return Err(ApiError::ValidationFailed {
                errors: vec![FieldError::new("username", "required", "is required for this kind of credential")],
            });
        }
        if !kind.has_username() && claim.username.is_some() {
            return Err(field("username", "must be empty: access tokens authenticate without a username"));
        }
        if kind.bound_to().is_some() && claim.resource.is_none() {
            return Err(ApiError::ValidationFailed {
                errors: vec![FieldError::new(
                    "resource",
                    "required",
                    "is required for access tokens: the repository, project or workspace the token was created in",
                )],
            });
        }
        if kind.bound_to().is_none() && claim.resource.is_some() {
            return Err(field("resource", "must be empty: only access tokens are bound to a resource"));
        }
        if kind == CredentialType::AppPassword && claim.username.is_some_and(Username::is_email) {
            return Err(ApiError::UsernameIsEmail);
        }
        Ok(kind)
    }

    /// One deadline for the whole check, however many calls it takes, so a
    /// slow server holds an invocation for a bounded time.
    pub async fn verify(&self, claim: &Claim<'_>) -> Result<Verification, ApiError> {
        self.verify_granted(claim, None).await
    }

    /// `verify`, with the scopes an OAuth token answer granted (it knows them best).
    pub async fn verify_granted(
        &self,
        claim: &Claim<'_>,
        granted: Option<&[String]>,
    ) -> Result<Verification, ApiError> {
        let kind = self.check(claim)?;
        let http = self.http()?;
        let check = async {
            if kind == CredentialType::Oauth {
                return oauth::verify(http, claim, granted).await;
            }
            match claim.url.flavor() {
                Flavor::Cloud => cloud::verify(http, claim, kind).await,
                Flavor::DataCenter => data_center::verify(http, claim, kind).await,
            }
        };
        tokio::time::timeout(self.deadline, check).await.unwrap_or(Err(ApiError::BitbucketTimeout))
    }
}

/// Whether a failed verification is a verdict on the stored credentials (record
/// `invalid`) rather than a passing trouble (answer, record nothing).
pub fn is_verdict(error: &ApiError) -> bool {
    matches!(
        error,
        ApiError::InvalidCredentials { .. }
            | ApiError::AppPasswordRetired
            | ApiError::MissingPermissions { .. }
            | ApiError::UsernameIsEmail
            | ApiError::NotBitbucket { .. }
            | ApiError::WrongApiPath { .. }
            | ApiError::WrongResource { .. }
            | ApiError::BitbucketRedirected { .. }
            | ApiError::UrlNotAllowed { .. }
            | ApiError::AccountMismatch { .. }
            | ApiError::OauthRevoked
    )
}

/// Scopes as Bitbucket listed them, cleaned: at most 64 plausible scope names.
fn clean_scopes<'a>(listed: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut scopes: Vec<String> = Vec::new();
    for scope in listed.into_iter().map(str::trim) {
        let plausible = !scope.is_empty()
            && scope.len() <= 64
            && scope.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, ':' | '_' | '-'));
        if plausible && !scopes.iter().any(|s| s == scope) && scopes.len() < 64 {
            scopes.push(scope.to_owned());
        }
    }
    scopes
}

/// Refused when the scopes make the product's core job impossible.
fn judge(granted: &[String], capabilities: &Capabilities, how: &str) -> Result<(), ApiError> {
    let missing = capabilities.core_missing();
    if missing.is_empty() {
        return Ok(());
    }
    let detail = format!(
        "The credentials work but lack {list}, which importing code and opening pull requests need. {how}: {list}.",
        list = missing.join(", ")
    );
    Err(ApiError::MissingPermissions { missing, granted: granted.to_vec(), detail })
}

/// Shared handling of answers that mean the same on Cloud and Data Center.
pub(crate) fn common_failure(reply: &client::Reply, host: &str) -> ApiError {
    let status = reply.status;
    if status.is_redirection() {
        let location = reply.header("location").unwrap_or_default().to_ascii_lowercase();
        let detail = if location.contains("login") || location.contains("signin") || location.contains("id.atlassian") {
            format!(
                "{host} redirected to a login page: this is the web address, not the API. For Bitbucket Cloud use https://api.bitbucket.org/2.0; for Data Center use the server's base URL."
            )
        } else {
            format!(
                "{host} answered with a redirect, which is not followed. Use the final address of the Bitbucket API as the URL."
            )
        };
        return ApiError::BitbucketRedirected { detail };
    }
    if status.as_u16() == 429 {
        let retry_after = reply.header("retry-after").and_then(|v| v.trim().parse().ok()).map(Duration::from_secs);
        return ApiError::BitbucketRateLimited { retry_after };
    }
    if status.is_server_error() {
        return ApiError::BitbucketUnavailable {
            detail: format!("Bitbucket at {host} answered HTTP {}. Try again later.", status.as_u16()),
        };
    }
    if status.as_u16() == 404 {
        return ApiError::WrongApiPath {
            detail: format!(
                "{host} has no Bitbucket API at this path (HTTP 404). For Bitbucket Cloud use https://api.bitbucket.org/2.0; for Data Center use the server's base URL."
            ),
        };
    }
    ApiError::NotBitbucket {
        detail: format!("{host} answered HTTP {} in a way Bitbucket does not. Check the server URL.", status.as_u16()),
    }
}

pub(crate) fn not_json(host: &str) -> ApiError {
    ApiError::NotBitbucket {
        detail: format!("{host} did not answer with Bitbucket API JSON (perhaps a web page). Check the server URL."),
    }
}
