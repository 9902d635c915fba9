//! Proving credentials against Bitbucket before anything is stored.

pub mod client;
mod cloud;
mod data_center;
pub mod net;
pub mod target;

use std::time::Duration;

use crate::domain::{Account, CredentialType, Provider, Username};
use crate::problem::ApiError;
use crate::secret::Secret;
use client::{BitbucketHttp, ClientSettings};
use target::{Flavor, ServerUrl};

/// What Bitbucket told us about working credentials.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verification {
    pub provider: Provider,
    pub credential_type: CredentialType,
    pub account: Account,
    pub scopes: Vec<String>,
}

/// What is being proven.
pub struct Claim<'a> {
    pub url: &'a ServerUrl,
    pub username: &'a Username,
    pub secret: &'a Secret,
    /// As the user declared it; inferred when `None`.
    pub credential_type: Option<CredentialType>,
}

#[derive(Clone)]
pub struct Verifier {
    http: BitbucketHttp,
    deadline: Duration,
}

impl Verifier {
    pub fn new(settings: &ClientSettings) -> Result<Self, String> {
        // Data Center needs three calls; the whole check still ends well before
        // the function's own timeout.
        let deadline = settings.request_timeout * 2;
        Ok(Self { http: BitbucketHttp::new(settings)?, deadline })
    }

    pub async fn verify(&self, claim: &Claim<'_>) -> Result<Verification, ApiError> {
        let check = async {
            match claim.url.flavor() {
                Flavor::Cloud => cloud::verify(&self.http, claim).await,
                Flavor::DataCenter => data_center::verify(&self.http, claim).await,
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
            | ApiError::MissingPermissions { .. }
            | ApiError::UsernameIsEmail
            | ApiError::NotBitbucket { .. }
            | ApiError::WrongApiPath { .. }
            | ApiError::BitbucketRedirected { .. }
            | ApiError::UrlNotAllowed { .. }
            | ApiError::AccountMismatch { .. }
    )
}

/// Shared handling of answers that mean the same on Cloud and Data Center.
fn common_failure(reply: &client::Reply, host: &str) -> ApiError {
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

fn not_json(host: &str) -> ApiError {
    ApiError::NotBitbucket {
        detail: format!("{host} did not answer with Bitbucket API JSON (perhaps a web page). Check the server URL."),
    }
}
