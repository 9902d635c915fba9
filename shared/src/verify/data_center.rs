//! Bitbucket Data Center / Server: recognise the server without credentials,
//! then prove the HTTP access token and its write access. Every call stays
//! under `/rest`: tokens sent elsewhere earn login redirects and, after
//! repeated 401s, a CAPTCHA lock on the user's account.

use serde_json::Value;

use super::client::{Auth, BitbucketHttp};
use super::{Claim, Verification, common_failure, not_json};
use crate::credential::{Bound, Capabilities, CredentialType};
use crate::domain::{Account, Provider};
use crate::problem::ApiError;

const API: [&str; 3] = ["rest", "api", "1.0"];
pub const WRITE_PERMISSION: &str = "REPO_WRITE";

pub async fn verify(http: &BitbucketHttp, claim: &Claim<'_>, kind: CredentialType) -> Result<Verification, ApiError> {
    let host = claim.url.url().host_str().unwrap_or_default().to_owned();
    recognise(http, claim, &host).await?;
    let (account, auth): (Option<Account>, Auth<'_>) = match kind.bound_to() {
        None => (Some(prove_user(http, claim, &host).await?), Auth::Basic(claim.username(), claim.secret)),
        Some(bound) => {
            prove_resource(http, claim, bound, &host).await?;
            (None, Auth::Bearer(claim.secret))
        }
    };
    // Which repositories this credential may write to: any answer proves write access.
    let mut repos_url = claim.url.join(&[API[0], API[1], API[2], "repos"]);
    repos_url.query_pairs_mut().append_pair("permission", WRITE_PERMISSION).append_pair("limit", "1");
    let repos = http.get(repos_url, auth).await?;
    match repos.status.as_u16() {
        200 => {}
        401 | 403 => return Err(missing(vec![WRITE_PERMISSION.into()])),
        _ => return Err(common_failure(&repos, &host)),
    }
    let writable = repos.json().and_then(|v| v.get("size").and_then(Value::as_u64)).ok_or_else(|| not_json(&host))?;
    if writable == 0 {
        return Err(missing(vec![WRITE_PERMISSION.into()]));
    }
    let login = account.as_ref().and(claim.username.map(|u| u.as_str()));
    Ok(Verification {
        provider: Provider::BitbucketDataCenter,
        credential_type: kind,
        git_username: kind.git_username(login),
        account,
        scopes: vec![WRITE_PERMISSION.into()],
        capabilities: Capabilities::data_center(kind),
        warnings: Vec::new(),
    })
}

/// A personal token: Basic `username:token` on the user's own profile, and
/// `X-AUSERNAME` must name that user.
async fn prove_user(http: &BitbucketHttp, claim: &Claim<'_>, host: &str) -> Result<Account, ApiError> {
    let url = claim.url.join(&[API[0], API[1], API[2], "users", claim.username()]);
    let user = http.get(url, Auth::Basic(claim.username(), claim.secret)).await?;
    match user.status.as_u16() {
        200 | 404 => {}
        401 => return Err(rejected()),
        403 => return Err(missing(vec!["PROJECT_READ".into()])),
        _ => return Err(common_failure(&user, host)),
    }
    // Data Center names the authenticated user on every authenticated answer.
    let authenticated = user.header("x-ausername").map(str::to_owned);
    match &authenticated {
        Some(name) if name.eq_ignore_ascii_case(claim.username()) => {}
        Some(name) => {
            // The server's header, so quoted and capped: a hostile server writes no sentence of ours.
            let name = crate::text::quoted(name, 64);
            return Err(ApiError::InvalidCredentials {
                detail: format!(
                    "This token belongs to the Data Center user {name}, not '{}'. Enter that username, or a token of your own.",
                    claim.username()
                ),
            });
        }
        None => return Err(rejected()),
    }
    let profile = user.json().unwrap_or(Value::Null);
    let text = |key: &str| profile.get(key).and_then(Value::as_str);
    let id = profile.get("id").and_then(Value::as_u64).map(|id| id.to_string());
    let slug = text("slug").or(authenticated.as_deref());
    // The slug is the user's identity on Data Center when the profile is hidden.
    Account::new(id.as_deref().or(slug), None, text("displayName"), slug).ok_or_else(rejected)
}

/// A project or repository token: Bearer on the resource it is bound to.
async fn prove_resource(http: &BitbucketHttp, claim: &Claim<'_>, bound: Bound, host: &str) -> Result<(), ApiError> {
    let parts: Vec<&str> = claim.resource.map(|r| r.parts.iter().map(String::as_str).collect()).unwrap_or_default();
    let (mut path, what) =
        (vec![API[0], API[1], API[2], "projects"], if bound == Bound::Project { "project" } else { "repository" });
    match (bound, parts.as_slice()) {
        (Bound::Project, [key]) => path.push(key),
        (Bound::Repository, [key, slug]) => path.extend([*key, "repos", *slug]),
        _ => {
            return Err(ApiError::ValidationFailed {
                errors: vec![crate::problem::FieldError::new(
                    "resource",
                    "invalid",
                    "must be 'PROJECT' for a project token or 'PROJECT/repository' for a repository token, or the address of its page",
                )],
            });
        }
    }
    let reply = http.get(claim.url.join(&path), Auth::Bearer(claim.secret)).await?;
    match reply.status.as_u16() {
        200 => reply.json().filter(|v| v.get("key").is_some() || v.get("slug").is_some()).map(|_| ()).ok_or_else(|| not_json(host)),
        401 => Err(ApiError::InvalidCredentials {
            detail: "Bitbucket Data Center rejected the token. Check that it was copied whole and has not expired or been revoked.".into(),
        }),
        403 | 404 => Err(ApiError::WrongResource {
            detail: format!(
                "This token does not open the {what} '{}'. Project and repository tokens work only for the {what} they were created in: enter that one.",
                parts.join("/")
            ),
        }),
        _ => Err(common_failure(&reply, host)),
    }
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
