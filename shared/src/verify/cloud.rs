//! Bitbucket Cloud. Login-based credentials (API tokens, app passwords) prove
//! themselves on `GET {base}/user`; access tokens, which `/user` refuses, on the
//! repository, project or workspace they are bound to. The granted scopes come
//! from `x-oauth-scopes`, or from a 403's `error.detail.granted`: credentials
//! whose scopes are unknown are never accepted.

use serde_json::Value;

use super::client::{Auth, BitbucketHttp, Reply};
use super::{Claim, Verification, clean_scopes, common_failure, judge, not_json};
use crate::credential::{Bound, Capabilities, CredentialType};
use crate::domain::{Account, Provider, Warning};
use crate::problem::ApiError;

const API_TOKEN_HOW: &str = "Create an API token with scopes (Atlassian account settings > Security > API tokens > Create API token with scopes > Bitbucket) and select";
const CLASSIC_HOW: &str = "Create a new token with read-write access to Repositories and Pull requests, that is";

pub async fn verify(
    http: &BitbucketHttp,
    claim: &Claim<'_>,
    declared: CredentialType,
) -> Result<Verification, ApiError> {
    match declared.bound_to() {
        Some(bound) => verify_access_token(http, claim, declared, bound).await,
        None => verify_login(http, claim, declared).await,
    }
}

async fn verify_login(
    http: &BitbucketHttp,
    claim: &Claim<'_>,
    declared: CredentialType,
) -> Result<Verification, ApiError> {
    let host = host(claim);
    let reply = http.get(claim.url.join(&["user"]), Auth::Basic(claim.username(), claim.secret)).await?;
    let kind = reported_kind(&reply, declared);
    let (account, scopes) = match reply.status.as_u16() {
        200 => {
            let user = reply.json().ok_or_else(|| not_json(&host))?;
            let text = |key: &str| user.get(key).and_then(Value::as_str);
            // `username` may be absent since Bitbucket's privacy changes; `nickname` remains.
            let account = Account::new(
                text("uuid"),
                text("account_id"),
                text("display_name"),
                text("username").or(text("nickname")),
            )
            .ok_or_else(|| not_bitbucket(&host, "named no account (uuid or account_id)"))?;
            let scopes = reply.header("x-oauth-scopes").map(|list| clean_scopes(list.split(',')));
            (
                Some(account),
                scopes.ok_or_else(|| not_bitbucket(&host, "did not report the granted scopes (x-oauth-scopes)"))?,
            )
        }
        401 => return Err(rejected(claim, kind)),
        // Valid credentials without the scope `/user` needs: the 403 lists what was granted.
        403 => match granted_on_403(&reply) {
            Some(granted) => (None, granted),
            None => {
                let scope = identity_scope(kind);
                return Err(ApiError::MissingPermissions {
                    missing: vec![scope.to_owned()],
                    granted: Vec::new(),
                    detail: format!(
                        "Bitbucket refused to show the account and did not say which scopes the credentials have. Add the {scope} scope."
                    ),
                });
            }
        },
        _ => return Err(common_failure(&reply, &host)),
    };
    let capabilities = Capabilities::from_cloud_scopes(kind, &scopes);
    judge(&scopes, &capabilities, if kind == CredentialType::ApiToken { API_TOKEN_HOW } else { CLASSIC_HOW })?;
    let mut warnings = Vec::new();
    if account.is_none() {
        warnings.push(Warning {
            code: "account_hidden".into(),
            detail: format!(
                "Everything the product needs works. Bitbucket does not show which account this is because the token lacks {}; add that scope to see the account here.",
                identity_scope(kind)
            ),
        });
    }
    let login = match kind {
        CredentialType::AppPassword => {
            account.as_ref().and_then(|a| a.username.as_deref()).or(claim.username.map(|u| u.as_str()))
        }
        _ => None,
    };
    Ok(Verification {
        provider: Provider::BitbucketCloud,
        credential_type: kind,
        git_username: kind.git_username(login),
        account,
        scopes,
        capabilities,
        warnings,
    })
}

async fn verify_access_token(
    http: &BitbucketHttp,
    claim: &Claim<'_>,
    declared: CredentialType,
    bound: Bound,
) -> Result<Verification, ApiError> {
    let host = host(claim);
    let parts: Vec<&str> = claim.resource.map(|r| r.parts.iter().map(String::as_str).collect()).unwrap_or_default();
    let (path, what): (Vec<&str>, &str) = match (bound, parts.as_slice()) {
        (Bound::Repository, [ws, repo]) => (vec!["repositories", ws, repo], "repository"),
        (Bound::Project, [ws, key]) => (vec!["workspaces", ws, "projects", key], "project"),
        (Bound::Workspace, [ws]) => (vec!["workspaces", ws], "workspace"),
        _ => return Err(resource_shape(bound)),
    };
    let reply = http.get(claim.url.join(&path), Auth::Bearer(claim.secret)).await?;
    let kind = reported_kind(&reply, declared);
    let scopes = match reply.status.as_u16() {
        200 => {
            let body = reply.json().ok_or_else(|| not_json(&host))?;
            if body.get("uuid").and_then(Value::as_str).is_none() {
                return Err(not_bitbucket(&host, &format!("answered for the {what} without its uuid")));
            }
            let scopes = reply.header("x-oauth-scopes").map(|list| clean_scopes(list.split(',')));
            scopes.ok_or_else(|| not_bitbucket(&host, "did not report the granted scopes (x-oauth-scopes)"))?
        }
        401 => {
            return Err(ApiError::InvalidCredentials {
                detail: "Bitbucket rejected the access token. Check that it was copied whole and has not expired or been revoked.".into(),
            });
        }
        // A scope the resource needs is missing: a verdict on the scopes, not the resource.
        403 if lacks_a_required_scope(&reply) => granted_on_403(&reply).unwrap_or_default(),
        403 | 404 => {
            let resource = parts.join("/");
            return Err(ApiError::WrongResource {
                detail: format!(
                    "This access token does not open the {what} '{resource}'. An access token works only for the {what} it was created in: enter that one (for example by pasting its address), or choose the right kind of token."
                ),
            });
        }
        _ => return Err(common_failure(&reply, &host)),
    };
    let capabilities = Capabilities::from_cloud_scopes(kind, &scopes);
    judge(&scopes, &capabilities, CLASSIC_HOW)?;
    Ok(Verification {
        provider: Provider::BitbucketCloud,
        credential_type: kind,
        account: None,
        git_username: kind.git_username(None),
        scopes,
        capabilities,
        warnings: Vec::new(),
    })
}

/// The kind Bitbucket names, when it is of the family the user declared (a login
/// kind for a login, a bound token for a bound token); otherwise the declared one.
fn reported_kind(reply: &Reply, declared: CredentialType) -> CredentialType {
    let reported = reply.header("x-credential-type").and_then(CredentialType::from_cloud_header);
    let same_family = |kind: &CredentialType| kind.has_username() == declared.has_username();
    reported.filter(same_family).unwrap_or(declared)
}

/// A 403 whose `error.detail.required` names a scope not in `granted`.
fn lacks_a_required_scope(reply: &Reply) -> bool {
    let Some(body) = reply.json() else { return false };
    let detail = body.get("error").and_then(|e| e.get("detail"));
    let list = |key: &str| -> Vec<String> {
        detail
            .and_then(|d| d.get(key))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect()
    };
    let granted = list("granted");
    list("required").iter().any(|scope| !granted.contains(scope))
}

fn host(claim: &Claim<'_>) -> String {
    claim.url.url().host_str().unwrap_or_default().to_owned()
}

fn identity_scope(kind: CredentialType) -> &'static str {
    if kind == CredentialType::ApiToken { "read:user:bitbucket" } else { "account" }
}

fn not_bitbucket(host: &str, what: &str) -> ApiError {
    ApiError::NotBitbucket { detail: format!("{host} {what}, which Bitbucket always does. Check the server URL.") }
}

fn resource_shape(bound: Bound) -> ApiError {
    let shape = match bound {
        Bound::Repository => "'workspace/repository'",
        Bound::Project => "'workspace/PROJECT_KEY'",
        Bound::Workspace => "'workspace'",
    };
    ApiError::ValidationFailed {
        errors: vec![crate::problem::FieldError::new(
            "resource",
            "invalid",
            format!("must be {shape} for this kind of token, or the address of its page"),
        )],
    }
}

/// `error.detail.granted` of a 403 (`detail` is an object there although the
/// OpenAPI says string).
fn granted_on_403(reply: &Reply) -> Option<Vec<String>> {
    let body = reply.json()?;
    let granted = body.get("error")?.get("detail")?.get("granted")?.as_array()?;
    Some(clean_scopes(granted.iter().filter_map(Value::as_str)))
}

fn rejected(claim: &Claim<'_>, kind: CredentialType) -> ApiError {
    match kind {
        CredentialType::AppPassword => ApiError::AppPasswordRetired,
        _ if !claim.username.is_some_and(|u| u.is_email()) => ApiError::InvalidCredentials {
            detail: "Bitbucket rejected the API token. API tokens go with your Atlassian account email as the username, not the Bitbucket username.".into(),
        },
        _ => ApiError::InvalidCredentials {
            detail: "Bitbucket rejected the email and API token. Check that the token was copied whole, has not expired or been revoked, and belongs to this email.".into(),
        },
    }
}
