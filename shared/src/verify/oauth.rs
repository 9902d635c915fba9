//! An OAuth access token, proven like every other kind: who it acts for, and what
//! its scopes let the product do. The token goes only in `Authorization: Bearer`
//! (Cloud refuses it anywhere else since CHANGE-3052).

use serde_json::Value;

use super::client::{Auth, BitbucketHttp};
use super::{Claim, Verification, common_failure, judge, not_json};
use crate::credential::{Capabilities, CredentialType};
use crate::domain::{Account, Flavor, Provider};
use crate::problem::ApiError;

const CLOUD_HOW: &str = "Your operator must give the OAuth consumer these permissions (Bitbucket workspace settings > OAuth consumers > Edit), then you reconnect";
const DATA_CENTER_HOW: &str = "Your operator must let the application link ask for these scopes, then you reconnect";

/// `granted`: the scopes the token answer listed, if it listed any.
pub async fn verify(
    http: &BitbucketHttp,
    claim: &Claim<'_>,
    granted: Option<&[String]>,
) -> Result<Verification, ApiError> {
    let host = claim.url.url().host_str().unwrap_or_default().to_owned();
    match claim.url.flavor() {
        Flavor::Cloud => cloud(http, claim, granted, &host).await,
        Flavor::DataCenter => data_center(http, claim, granted, &host).await,
    }
}

fn revoked() -> ApiError {
    ApiError::OauthRevoked
}

async fn cloud(
    http: &BitbucketHttp,
    claim: &Claim<'_>,
    granted: Option<&[String]>,
    host: &str,
) -> Result<Verification, ApiError> {
    let reply = http.get(claim.url.join(&["user"]), Auth::Bearer(claim.secret)).await?;
    match reply.status.as_u16() {
        200 => {}
        401 => return Err(revoked()),
        _ => return Err(common_failure(&reply, host)),
    }
    let user = reply.json().ok_or_else(|| not_json(host))?;
    let text = |key: &str| user.get(key).and_then(Value::as_str);
    let account = Account::new(text("uuid"), text("account_id"), text("display_name"), text("nickname"))
        .ok_or_else(|| not_json(host))?;
    let scopes: Vec<String> = match granted {
        Some(scopes) => scopes.to_vec(),
        None => reply
            .header("x-oauth-scopes")
            .map(|list| list.split(',').map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect())
            .unwrap_or_default(),
    };
    let capabilities = Capabilities::from_cloud_scopes(CredentialType::Oauth, &scopes);
    judge(&scopes, &capabilities, CLOUD_HOW)?;
    Ok(Verification {
        provider: Provider::BitbucketCloud,
        credential_type: CredentialType::Oauth,
        git_username: Some("x-token-auth".into()),
        account: Some(account),
        scopes,
        capabilities,
        warnings: Vec::new(),
    })
}

/// No "who am I" on Data Center: any authenticated answer names the user in
/// `X-AUSERNAME`, and the profile comes from `users/{slug}`.
async fn data_center(
    http: &BitbucketHttp,
    claim: &Claim<'_>,
    granted: Option<&[String]>,
    host: &str,
) -> Result<Verification, ApiError> {
    let mut repos = claim.url.join(&["rest", "api", "1.0", "repos"]);
    repos.query_pairs_mut().append_pair("limit", "1");
    let reply = http.get(repos, Auth::Bearer(claim.secret)).await?;
    match reply.status.as_u16() {
        200 => {}
        401 => return Err(revoked()),
        _ => return Err(common_failure(&reply, host)),
    }
    // Every authenticated Data Center answer names its user; one that does not is not
    // Data Center as documented (a proxy in between, say), which says nothing about the token.
    let slug =
        reply.header("x-ausername").filter(|s| !s.is_empty()).map(str::to_owned).ok_or_else(|| not_json(host))?;
    let profile = http.get(claim.url.join(&["rest", "api", "1.0", "users", &slug]), Auth::Bearer(claim.secret)).await?;
    let profile = if profile.status.as_u16() == 200 { profile.json().unwrap_or(Value::Null) } else { Value::Null };
    let id = profile.get("id").and_then(Value::as_u64).map(|id| id.to_string());
    let display = profile.get("displayName").and_then(Value::as_str);
    let account = Account::new(id.as_deref().or(Some(&slug)), None, display, Some(&slug)).ok_or_else(revoked)?;
    // Older servers list no scope in the token answer: what was asked for stands.
    let scopes: Vec<String> = granted.map(<[String]>::to_vec).unwrap_or_else(|| vec!["REPO_WRITE".into()]);
    let capabilities = Capabilities::from_data_center_scopes(&scopes);
    judge(&scopes, &capabilities, DATA_CENTER_HOW)?;
    Ok(Verification {
        provider: Provider::BitbucketDataCenter,
        credential_type: CredentialType::Oauth,
        git_username: None,
        account: Some(account),
        scopes,
        capabilities,
        warnings: Vec::new(),
    })
}
