//! Bitbucket Data Center / Server: recognise the server without credentials,
//! then prove the HTTP access token and its write access. Every call stays
//! under `/rest`: tokens sent elsewhere earn login redirects and, after
//! repeated 401s, a CAPTCHA lock on the user's account.

use serde_json::Value;

use super::client::{Auth, BitbucketHttp};
use super::{Claim, Verification, common_failure, not_json};
use crate::domain::{Account, CredentialType, Provider};
use crate::problem::{ApiError, FieldError};

const API: [&str; 3] = ["rest", "api", "1.0"];
pub const WRITE_PERMISSION: &str = "REPO_WRITE";

pub async fn verify(http: &BitbucketHttp, claim: &Claim<'_>) -> Result<Verification, ApiError> {
    if matches!(claim.credential_type, Some(CredentialType::AppPassword | CredentialType::ApiToken)) {
        return Err(ApiError::ValidationFailed {
            errors: vec![FieldError::new(
                "credential_type",
                "invalid",
                "this URL is a Bitbucket Data Center server, which uses http_access_token; for Bitbucket Cloud use https://api.bitbucket.org/2.0",
            )],
        });
    }
    let host = claim.url.url().host_str().unwrap_or_default().to_owned();
    recognise(http, claim, &host).await?;

    let auth = || Auth::Basic(claim.username.as_str(), claim.secret);
    let user = http.get(claim.url.join(&[API[0], API[1], API[2], "users", claim.username.as_str()]), auth()).await?;
    match user.status.as_u16() {
        200 | 404 => {}
        401 => return Err(rejected()),
        403 => return Err(missing(vec!["PROJECT_READ".into()])),
        _ => return Err(common_failure(&user, &host)),
    }
    // Data Center names the authenticated user on every authenticated answer.
    let authenticated = user.header("x-ausername").map(str::to_owned);
    match &authenticated {
        Some(name) if name.eq_ignore_ascii_case(claim.username.as_str()) => {}
        Some(name) => {
            return Err(ApiError::InvalidCredentials {
                detail: format!(
                    "This token belongs to the Data Center user '{name}', not '{}'. Enter that username, or a token of your own.",
                    claim.username.as_str()
                ),
            });
        }
        None => return Err(rejected()),
    }
    let profile = user.json().unwrap_or(Value::Null);
    let text = |key: &str| profile.get(key).and_then(Value::as_str).map(str::to_owned);
    let account = Account {
        uuid: profile.get("id").map(|id| id.to_string()).filter(|id| id != "null"),
        display_name: text("displayName"),
        username: text("slug").or(authenticated),
    };

    let mut repos_url = claim.url.join(&[API[0], API[1], API[2], "repos"]);
    repos_url.query_pairs_mut().append_pair("permission", WRITE_PERMISSION).append_pair("limit", "1");
    let repos = http.get(repos_url, auth()).await?;
    match repos.status.as_u16() {
        200 => {}
        401 | 403 => return Err(missing(vec![WRITE_PERMISSION.into()])),
        _ => return Err(common_failure(&repos, &host)),
    }
    let writable = repos.json().and_then(|v| v.get("size").and_then(Value::as_u64)).ok_or_else(|| not_json(&host))?;
    if writable == 0 {
        return Err(missing(vec![WRITE_PERMISSION.into()]));
    }
    Ok(Verification {
        provider: Provider::BitbucketDataCenter,
        credential_type: CredentialType::HttpAccessToken,
        account,
        scopes: vec![WRITE_PERMISSION.into()],
    })
}

/// `application-properties` needs no credentials, so nothing secret goes to a
/// server before it has shown it is Bitbucket.
async fn recognise(http: &BitbucketHttp, claim: &Claim<'_>, host: &str) -> Result<(), ApiError> {
    let reply = http.get(claim.url.join(&[API[0], API[1], API[2], "application-properties"]), Auth::None).await?;
    if reply.status.as_u16() == 404 {
        return Err(ApiError::NotBitbucket {
            detail: format!(
                "{host} is not a Bitbucket Data Center server (no /rest/api/1.0/application-properties). For Bitbucket Cloud use https://api.bitbucket.org/2.0."
            ),
        });
    }
    if !reply.status.is_success() {
        return Err(common_failure(&reply, host));
    }
    let version = reply.json().and_then(|v| v.get("version").and_then(Value::as_str).map(str::to_owned));
    version.map(|_| ()).ok_or_else(|| not_json(host))
}

fn rejected() -> ApiError {
    ApiError::InvalidCredentials {
        detail: "Bitbucket Data Center rejected the username and token. Create an HTTP access token under your avatar > Manage account > HTTP access tokens with Repository write permission, and enter your Data Center username.".into(),
    }
}

fn missing(missing: Vec<String>) -> ApiError {
    let detail = format!(
        "The token works but lacks {}. Create an HTTP access token with Project read and Repository write permissions.",
        missing.join(", ")
    );
    ApiError::MissingPermissions { missing, granted: Vec::new(), detail }
}
