//! Calls to a client's token endpoint: form data, the client's key and secret in
//! HTTP Basic (a JSON body fails on Cloud), through the guarded Bitbucket client.

use super::clients::OauthClient;
use super::tokens::{Granted, Refused, read_reply};
use crate::problem::ApiError;
use crate::secret::Secret;
use crate::verify::client::{Auth, BitbucketHttp};

/// Trades an authorization code (and the PKCE verifier it was issued against).
pub async fn exchange(
    http: &BitbucketHttp,
    client: &OauthClient,
    code: &str,
    verifier: &Secret,
    redirect_uri: &str,
    now: i64,
) -> Result<Result<Granted, Refused>, ApiError> {
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", redirect_uri),
        ("code_verifier", verifier.expose()),
    ];
    call(http, client, &form, now).await
}

/// Trades a refresh token for a new access token (and, on Cloud since May 2026, a
/// new refresh token).
pub async fn refresh(
    http: &BitbucketHttp,
    client: &OauthClient,
    refresh_token: &Secret,
    now: i64,
) -> Result<Result<Granted, Refused>, ApiError> {
    let form = [("grant_type", "refresh_token"), ("refresh_token", refresh_token.expose())];
    call(http, client, &form, now).await
}

async fn call(
    http: &BitbucketHttp,
    client: &OauthClient,
    form: &[(&str, &str)],
    now: i64,
) -> Result<Result<Granted, Refused>, ApiError> {
    let reply = http.post_form(client.token_url.clone(), Auth::Basic(&client.key, &client.secret), form).await?;
    Ok(read_reply(&reply, now))
}
