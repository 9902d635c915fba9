//! Bitbucket Cloud: `GET {base}/user` with Basic auth, scopes from `x-oauth-scopes`.

use serde_json::Value;

use super::client::{Auth, BitbucketHttp, Reply};
use super::{Claim, Verification, common_failure, not_json};
use crate::domain::{Account, CredentialType, Provider};
use crate::problem::{ApiError, FieldError};

pub async fn verify(http: &BitbucketHttp, claim: &Claim<'_>) -> Result<Verification, ApiError> {
    let declared = claim.credential_type.unwrap_or_else(|| CredentialType::infer_for_cloud(claim.username));
    if declared == CredentialType::HttpAccessToken {
        return Err(ApiError::ValidationFailed {
            errors: vec![FieldError::new(
                "credential_type",
                "invalid",
                "http_access_token is for Bitbucket Data Center; on Bitbucket Cloud use api_token (with your Atlassian email)",
            )],
        });
    }
    if declared == CredentialType::AppPassword && claim.username.is_email() {
        return Err(ApiError::UsernameIsEmail);
    }
    let host = claim.url.url().host_str().unwrap_or_default().to_owned();
    let reply = http.get(claim.url.join(&["user"]), Auth::Basic(claim.username.as_str(), claim.secret)).await?;
    let kind = match reply.header("x-credential-type") {
        Some("api_token") => CredentialType::ApiToken,
        Some("app_password") => CredentialType::AppPassword,
        _ => declared,
    };
    match reply.status.as_u16() {
        200 => accept(&reply, kind, &host),
        401 => Err(rejected(claim, kind)),
        403 => Err(forbidden(&reply, kind)),
        _ => Err(common_failure(&reply, &host)),
    }
}

fn accept(reply: &Reply, kind: CredentialType, host: &str) -> Result<Verification, ApiError> {
    let user = reply
        .json()
        .filter(|v| v.get("uuid").is_some() || v.get("account_id").is_some())
        .ok_or_else(|| not_json(host))?;
    let text = |key: &str| user.get(key).and_then(Value::as_str).map(str::to_owned);
    let account = Account {
        uuid: text("uuid"),
        display_name: text("display_name"),
        // `username` may be absent since Bitbucket's privacy changes; `nickname` is what remains.
        username: text("username").or_else(|| text("nickname")),
    };
    let scopes: Vec<String> = reply
        .header("x-oauth-scopes")
        .map(|list| list.split(',').map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect())
        .unwrap_or_default();
    // Without the header there is nothing to judge; Bitbucket sends it for app
    // passwords and API tokens alike.
    if reply.header("x-oauth-scopes").is_some() {
        let missing = missing_scopes(kind, &scopes);
        if !missing.is_empty() {
            return Err(missing_permissions(kind, missing, scopes));
        }
    }
    Ok(Verification { provider: Provider::BitbucketCloud, credential_type: kind, account, scopes })
}

/// Read-write on projects, repositories and pull requests, in each kind's vocabulary.
fn missing_scopes(kind: CredentialType, granted: &[String]) -> Vec<String> {
    let has = |any: &[&str]| any.iter().any(|s| granted.iter().any(|g| g == s));
    let needs: &[(&str, &[&str])] = match kind {
        // On app passwords write implies read, admin implies write.
        CredentialType::AppPassword => &[
            ("project:write", &["project:write", "project:admin"]),
            ("repository:write", &["repository:write", "repository:admin"]),
            ("pullrequest:write", &["pullrequest:write"]),
        ],
        // On API tokens each scope stands alone, and there is no write:project.
        _ => &[
            ("read:project:bitbucket", &["read:project:bitbucket", "admin:project:bitbucket"]),
            ("read:repository:bitbucket", &["read:repository:bitbucket"]),
            ("write:repository:bitbucket", &["write:repository:bitbucket"]),
            ("read:pullrequest:bitbucket", &["read:pullrequest:bitbucket"]),
            ("write:pullrequest:bitbucket", &["write:pullrequest:bitbucket"]),
        ],
    };
    needs.iter().filter(|(_, any)| !has(any)).map(|(name, _)| (*name).to_owned()).collect()
}

fn missing_permissions(kind: CredentialType, missing: Vec<String>, granted: Vec<String>) -> ApiError {
    let how = match kind {
        CredentialType::AppPassword => {
            "Create a new app password with read-write access to Projects, Repositories and Pull requests"
        }
        _ => {
            "Create a new API token with scopes (Atlassian account settings > Security > API tokens > Create API token with scopes > Bitbucket) and select"
        }
    };
    let detail = format!("The credentials work but lack {}. {how}: {}.", missing.join(", "), missing.join(", "));
    ApiError::MissingPermissions { missing, granted, detail }
}

fn rejected(claim: &Claim<'_>, kind: CredentialType) -> ApiError {
    if kind == CredentialType::AppPassword && claim.username.is_email() {
        return ApiError::UsernameIsEmail;
    }
    let detail = match kind {
        CredentialType::AppPassword => "Bitbucket rejected the username and app password. Bitbucket retired app passwords on 2026-07-28: create an API token instead (Atlassian account settings > Security > API tokens > Create API token with scopes > Bitbucket) and enter your Atlassian account email as the username.".to_owned(),
        _ if !claim.username.is_email() => "Bitbucket rejected the API token. API tokens go with your Atlassian account email as the username, not the Bitbucket username.".to_owned(),
        _ => "Bitbucket rejected the email and API token. Check that the token was copied whole, has not expired or been revoked, and belongs to this email.".to_owned(),
    };
    ApiError::InvalidCredentials { detail }
}

/// A 403 on `/user` means valid credentials without the scope `/user` needs.
fn forbidden(reply: &Reply, kind: CredentialType) -> ApiError {
    let detail = reply.json().and_then(|v| v.get("error")?.get("detail").cloned());
    let list = |key: &str| -> Vec<String> {
        detail
            .as_ref()
            .and_then(|d| d.get(key))
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).map(str::to_owned).collect())
            .unwrap_or_default()
    };
    let granted = list("granted");
    let mut missing: Vec<String> = list("required").into_iter().filter(|s| !granted.contains(s)).collect();
    if missing.is_empty() {
        let account_scope = if kind == CredentialType::AppPassword { "account" } else { "read:user:bitbucket" };
        missing.push(account_scope.to_owned());
    }
    for needed in missing_scopes(kind, &granted) {
        if !missing.contains(&needed) {
            missing.push(needed);
        }
    }
    missing_permissions(kind, missing, granted)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owned(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn app_password_write_implies_read_and_admin_implies_write() {
        let granted = owned(&["project:admin", "repository:write", "pullrequest:write"]);
        assert!(missing_scopes(CredentialType::AppPassword, &granted).is_empty());
        let granted = owned(&["project", "repository", "pullrequest"]);
        assert_eq!(
            missing_scopes(CredentialType::AppPassword, &granted),
            owned(&["project:write", "repository:write", "pullrequest:write"])
        );
    }

    #[test]
    fn api_token_write_does_not_imply_read() {
        let granted = owned(&["read:project:bitbucket", "write:repository:bitbucket", "write:pullrequest:bitbucket"]);
        assert_eq!(
            missing_scopes(CredentialType::ApiToken, &granted),
            owned(&["read:repository:bitbucket", "read:pullrequest:bitbucket"])
        );
    }
}
