//! Bitbucket's OAuth 2.0 authorization server, as documented: Cloud's
//! `/site/oauth2/{authorize,access_token}` and Data Center's
//! `/rest/oauth2/latest/{authorize,token}`. Form-encoded token requests with the
//! client in HTTP Basic; refresh tokens that rotate (Cloud since May 2026: the used
//! one keeps working for a grace period after its first use, then dies; Data Center
//! answers a refresh without a new one); Data Center codes that live 10 seconds and
//! check the PKCE S256 verifier; `invalid_grant` bodies as RFC 6749 §5.2 writes them.
//! The authorize endpoint approves at once (the user pressing "Grant access").

use std::collections::HashMap;
use std::time::{Duration, Instant};

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::json;
use sha2::Digest;

use super::{Shared, basic, json_response};

pub const CLIENT_KEY: &str = "Zx4kq8TnVw2Lr7Hb9Mc3Pd6Fg1Js5Ya0";
/// 76 characters, as 2026 consumers have.
pub const CLIENT_SECRET: &str = "sEcReT-7f3c9a1e5b8d2f6a4c0e9b7d5f3a1c8e6b4d2f0a9c7e5b3d1f8a6c4e2b0d9f7a5c3e1b";
pub const CLOUD_SCOPES: &str = "repository:write pullrequest:write account";
pub const DATA_CENTER_SCOPES: &str = "PUBLIC_REPOS REPO_WRITE";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    Cloud,
    DataCenter,
}

struct Code {
    flavor: Flavor,
    challenge: Option<String>,
    redirect_uri: String,
    issued: Instant,
    used: bool,
}

struct Refresh {
    flavor: Flavor,
    issued: Instant,
    first_used: Option<Instant>,
}

pub struct AuthServer {
    codes: HashMap<String, Code>,
    access: HashMap<String, (Flavor, Instant)>,
    refresh: HashMap<String, Refresh>,
    /// Token requests with `grant_type=refresh_token`, answered or not.
    pub refresh_calls: usize,
    /// Lifetimes: access tokens (Cloud 2 h), the grace of a used refresh token
    /// (about 10 min), an unused refresh token (3 months), a Data Center code (10 s).
    pub access_ttl: Duration,
    pub grace: Duration,
    pub idle: Duration,
    pub data_center_code_ttl: Duration,
    /// The next authorization is denied (`error=access_denied`).
    pub deny_next: bool,
    /// When each authorization code arrived to be traded, for timing the callbacks.
    pub exchanges: Vec<Instant>,
    /// Scopes granted, as the token answer lists them.
    pub cloud_scopes: String,
}

impl Default for AuthServer {
    fn default() -> Self {
        Self {
            codes: HashMap::new(),
            access: HashMap::new(),
            refresh: HashMap::new(),
            refresh_calls: 0,
            access_ttl: Duration::from_secs(7200),
            grace: Duration::from_secs(600),
            idle: Duration::from_secs(90 * 24 * 3600),
            data_center_code_ttl: Duration::from_secs(10),
            deny_next: false,
            exchanges: Vec::new(),
            cloud_scopes: CLOUD_SCOPES.into(),
        }
    }
}

impl AuthServer {
    /// Which server a live access token was issued by.
    pub fn access_flavor(&self, token: &str) -> Option<Flavor> {
        self.access.get(token).filter(|(_, expires)| *expires > Instant::now()).map(|(flavor, _)| *flavor)
    }

    /// Every access token issued so far stops working (time passed).
    pub fn expire_access_tokens(&mut self) {
        let past = Instant::now().checked_sub(Duration::from_secs(1)).unwrap_or_else(Instant::now);
        for (_, expires) in self.access.values_mut() {
            *expires = past;
        }
    }

    /// The user revoked the app: every token dies.
    pub fn revoke_all(&mut self) {
        self.access.clear();
        self.refresh.clear();
    }

    fn issue(&mut self, flavor: Flavor, with_refresh: bool) -> serde_json::Value {
        // Tokens run past 2,500 characters; nothing should assume a length.
        let access = format!("oat-{}", random(2600));
        self.access.insert(access.clone(), (flavor, Instant::now() + self.access_ttl));
        let mut body = json!({
            "access_token": access,
            "token_type": "bearer",
            "expires_in": self.access_ttl.as_secs(),
        });
        if with_refresh {
            let refresh = format!("ort-{}", random(120));
            self.refresh.insert(refresh.clone(), Refresh { flavor, issued: Instant::now(), first_used: None });
            body["refresh_token"] = json!(refresh);
        }
        match flavor {
            // Cloud's answers name the granted scopes `scopes`.
            Flavor::Cloud => body["scopes"] = json!(self.cloud_scopes),
            Flavor::DataCenter => body["scope"] = json!(DATA_CENTER_SCOPES),
        }
        body
    }
}

fn random(length: usize) -> String {
    std::iter::repeat_with(fastrand::alphanumeric).take(length).collect()
}

fn invalid_grant(description: &str) -> Response {
    json_response(StatusCode::BAD_REQUEST, &[], json!({"error": "invalid_grant", "error_description": description}))
}

pub(super) async fn authorize_cloud(
    State(shared): State<Shared>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    authorize(&shared, Flavor::Cloud, &query)
}

pub(super) async fn authorize_data_center(
    State(shared): State<Shared>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    authorize(&shared, Flavor::DataCenter, &query)
}

fn authorize(shared: &Shared, flavor: Flavor, query: &HashMap<String, String>) -> Response {
    let get = |key: &str| query.get(key).cloned().unwrap_or_default();
    if get("client_id") != CLIENT_KEY || get("response_type") != "code" {
        return (StatusCode::BAD_REQUEST, "Invalid client_id or response_type").into_response();
    }
    let redirect_uri = get("redirect_uri");
    let challenge = query.get("code_challenge").cloned();
    if flavor == Flavor::DataCenter && (challenge.is_none() || get("code_challenge_method") != "S256") {
        return (StatusCode::BAD_REQUEST, "PKCE (S256) is required").into_response();
    }
    let mut server = shared.oauth.lock().unwrap();
    let mut target = match url::Url::parse(&redirect_uri) {
        Ok(url) => url,
        Err(_) => return (StatusCode::BAD_REQUEST, "Invalid redirect_uri").into_response(),
    };
    if std::mem::take(&mut server.deny_next) {
        target
            .query_pairs_mut()
            .append_pair("error", "access_denied")
            .append_pair("error_description", "The user denied access.")
            .append_pair("state", &get("state"));
    } else {
        let code = random(32);
        server
            .codes
            .insert(code.clone(), Code { flavor, challenge, redirect_uri, issued: Instant::now(), used: false });
        target.query_pairs_mut().append_pair("code", &code).append_pair("state", &get("state"));
    }
    (StatusCode::FOUND, [("location", target.to_string())]).into_response()
}

pub(super) async fn token_cloud(State(shared): State<Shared>, headers: HeaderMap, body: String) -> Response {
    token(&shared, Flavor::Cloud, &headers, &body)
}

pub(super) async fn token_data_center(State(shared): State<Shared>, headers: HeaderMap, body: String) -> Response {
    token(&shared, Flavor::DataCenter, &headers, &body)
}

fn token(shared: &Shared, flavor: Flavor, headers: &HeaderMap, body: &str) -> Response {
    let form_encoded = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !form_encoded {
        return invalid_grant("Unsupported grant type: None");
    }
    if basic(headers) != Some((CLIENT_KEY.to_owned(), CLIENT_SECRET.to_owned())) {
        return json_response(
            StatusCode::UNAUTHORIZED,
            &[],
            json!({"error": "invalid_client", "error_description": "Invalid OAuth client credentials"}),
        );
    }
    let form: HashMap<String, String> = url::form_urlencoded::parse(body.as_bytes()).into_owned().collect();
    let get = |key: &str| form.get(key).cloned().unwrap_or_default();
    let mut server = shared.oauth.lock().unwrap();
    match get("grant_type").as_str() {
        "authorization_code" => {
            server.exchanges.push(Instant::now());
            let ttl = match flavor {
                Flavor::DataCenter => server.data_center_code_ttl,
                Flavor::Cloud => Duration::from_secs(600),
            };
            let Some(code) = server.codes.get_mut(&get("code")) else {
                return invalid_grant("Invalid authorization code");
            };
            if code.used || code.flavor != flavor || code.issued.elapsed() > ttl {
                return invalid_grant("The authorization code has expired or was already used");
            }
            if code.redirect_uri != get("redirect_uri") {
                return invalid_grant("redirect_uri does not match");
            }
            if let Some(challenge) = &code.challenge {
                let verifier = get("code_verifier");
                let computed =
                    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()));
                if &computed != challenge {
                    return invalid_grant("PKCE verification failed");
                }
            }
            code.used = true;
            let body = server.issue(flavor, true);
            json_response(StatusCode::OK, &[], body)
        }
        "refresh_token" => {
            server.refresh_calls += 1;
            let (grace, idle) = (server.grace, server.idle);
            let Some(refresh) = server.refresh.get_mut(&get("refresh_token")) else {
                return invalid_grant("Invalid refresh_token");
            };
            // Cloud's used refresh tokens die after the grace; Data Center's are kept.
            let dead = refresh.flavor != flavor
                || (flavor == Flavor::Cloud && refresh.first_used.is_some_and(|first| first.elapsed() > grace))
                || refresh.issued.elapsed() > idle;
            if dead {
                return invalid_grant("Invalid refresh_token");
            }
            refresh.first_used.get_or_insert_with(Instant::now);
            // Cloud rotates; Data Center keeps the refresh token it issued.
            let body = server.issue(flavor, flavor == Flavor::Cloud);
            json_response(StatusCode::OK, &[], body)
        }
        _ => invalid_grant("Unsupported grant type"),
    }
}
