//! A local Bitbucket that answers with the real wire format: Cloud's `/2.0/user`
//! (Basic auth, `x-oauth-scopes`, `x-credential-type`, the 401/403 bodies) and
//! Data Center's `/rest/api/1.0` (`application-properties`, `X-AUSERNAME`,
//! `repos?permission=`). A path prefix picks the server's behaviour, so one fake
//! serves every scenario at once.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub mod oauth;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use serde_json::json;

pub const APP_PASSWORD_USER: &str = "jdoe";
pub const APP_PASSWORD: &str = "app-pass-good-4Kq9";
pub const APP_PASSWORD_READ_ONLY: &str = "app-pass-readonly-7Zt2";
pub const API_TOKEN_EMAIL: &str = "jdoe@example.com";
pub const API_TOKEN: &str = "ATATT3xFfGF0-good-token-value";
pub const API_TOKEN_NO_ACCOUNT_SCOPE: &str = "ATATT3xFfGF0-no-user-scope";
pub const API_TOKEN_WRITE_ONLY: &str = "ATATT3xFfGF0-write-only";
pub const OTHER_EMAIL: &str = "someone.else@example.com";
pub const OTHER_TOKEN: &str = "ATATT3xFfGF0-other-account";
pub const DC_USER: &str = "alice";
pub const DC_TOKEN: &str = "BBDC-dc-token-good-Mzc1";
pub const DC_TOKEN_READ_ONLY: &str = "BBDC-dc-token-readonly";
pub const DC_TOKEN_OF_BOB: &str = "BBDC-dc-token-of-bob";
/// Brainboard's page: an API token with exactly the four repository and pull-request scopes.
pub const BRAINBOARD_TOKEN: &str = "ATATT3xFfGF0-four-scopes";
pub const BRAINBOARD_SCOPES: [&str; 4] = [
    "read:repository:bitbucket",
    "write:repository:bitbucket",
    "read:pullrequest:bitbucket",
    "write:pullrequest:bitbucket",
];
/// Cloud access tokens, bound to `acme/api`, project `acme/OPS` and workspace `acme`.
pub const REPO_ACCESS_TOKEN: &str = "ATCTT3x-repo-acme-api";
pub const PROJECT_ACCESS_TOKEN: &str = "ATCTT3x-project-acme-ops";
pub const WORKSPACE_ACCESS_TOKEN: &str = "ATCTT3x-workspace-acme";
pub const REPO_ACCESS_TOKEN_READ_ONLY: &str = "ATCTT3x-repo-acme-api-read";
/// Data Center project (OPS) and repository (OPS/infra) tokens: Bearer only.
pub const DC_PROJECT_TOKEN: &str = "BBDC-project-ops";
pub const DC_REPO_TOKEN: &str = "BBDC-repo-ops-infra";
/// An API token that may also list workspaces and read the account.
pub const API_TOKEN_ALL_SCOPES: &str = "ATATT3xFfGF0-every-scope";

pub const JDOE_UUID: &str = "{4f6d1a2c-8e0b-4c8f-9d1e-2b7a3c5d6e7f}";
pub const OTHER_UUID: &str = "{9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d}";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recorded {
    pub path: String,
    pub authorized: bool,
    /// The Authorization header as sent, to prove where secrets went (and did not).
    pub authorization: Option<String>,
}

#[derive(Clone, Default)]
struct Shared {
    revoked: Arc<Mutex<HashSet<String>>>,
    requests: Arc<Mutex<Vec<Recorded>>>,
    /// Bare repositories served over git's smart HTTP under `/git/`.
    git_root: Arc<Mutex<Option<std::path::PathBuf>>>,
    /// Every answer delayed by this long (a slow Bitbucket).
    delay: Arc<Mutex<Duration>>,
    /// Every answer replaced by this status (an outage) when set.
    outage: Arc<Mutex<Option<StatusCode>>>,
    /// Requests allowed before each answer is 429, as Bitbucket's hourly limit does.
    rate_limit: Arc<Mutex<Option<usize>>>,
    /// The OAuth authorization server's codes and tokens.
    oauth: Arc<Mutex<oauth::AuthServer>>,
}

pub struct FakeBitbucket {
    /// `http://127.0.0.1:<port>`
    pub origin: String,
    shared: Shared,
    app: Router,
}

impl FakeBitbucket {
    pub async fn start() -> Self {
        let shared = Shared::default();
        let app = Router::new()
            .route("/cloud/2.0/user", get(cloud_user))
            .route("/site/oauth2/authorize", get(oauth::authorize_cloud))
            .route("/site/oauth2/access_token", axum::routing::post(oauth::token_cloud))
            .route("/dc/rest/oauth2/latest/authorize", get(oauth::authorize_data_center))
            .route("/dc/rest/oauth2/latest/token", axum::routing::post(oauth::token_data_center))
            // Test-only: revokes the secret in the body, for tests that run outside this process (a browser).
            .route("/__revoke", axum::routing::post(revoke_by_request))
            // Test-only: the user revokes the app (every token dies), for a browser's test.
            .route(
                "/__oauth/revoke-all",
                axum::routing::post(|State(shared): State<Shared>| async move {
                    shared.oauth.lock().unwrap().revoke_all();
                    StatusCode::NO_CONTENT
                }),
            )
            // Test-only: the next authorization is denied, for a browser's test.
            .route(
                "/__oauth/deny-next",
                axum::routing::post(|State(shared): State<Shared>| async move {
                    shared.oauth.lock().unwrap().deny_next = true;
                    StatusCode::NO_CONTENT
                }),
            )
            .route(
                "/html/2.0/user",
                get(|| async { ([("content-type", "text/html")], "<html><body>Log in</body></html>") }),
            )
            .route(
                "/ratelimited/2.0/user",
                get(|| async { (StatusCode::TOO_MANY_REQUESTS, "Rate limit for this resource has been exceeded") }),
            )
            .route(
                "/ratelimited-retry/2.0/user",
                get(|| async { (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "42")], "") }),
            )
            .route(
                "/broken/2.0/user",
                get(|| async {
                    (
                        StatusCode::SERVICE_UNAVAILABLE,
                        [("content-type", "application/json")],
                        r#"{"type":"error","error":{"message":"Service unavailable"}}"#,
                    )
                }),
            )
            .route(
                "/login/2.0/user",
                get(|| async {
                    (
                        StatusCode::FOUND,
                        [("location", "https://id.atlassian.com/login?continue=https%3A%2F%2Fbitbucket.org")],
                        "",
                    )
                }),
            )
            .route(
                "/moved/2.0/user",
                get(|| async {
                    (StatusCode::MOVED_PERMANENTLY, [("location", "http://169.254.169.254/latest/meta-data/")], "")
                }),
            )
            .route(
                "/slow/2.0/user",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    "too late"
                }),
            )
            .route(
                "/huge/2.0/user",
                get(|| async { ([("content-type", "application/json")], "[".repeat(1024 * 1024)) }),
            )
            .route("/cloud/2.0/repositories/{workspace}/{repo}", get(cloud_repository))
            .route("/cloud/2.0/workspaces/{workspace}/projects/{key}", get(cloud_project))
            .route("/cloud/2.0/workspaces/{workspace}", get(cloud_workspace))
            .route(
                "/impostor/2.0/user",
                get(|| async { ([("content-type", "application/json")], r#"{"account_id":"x"}"#) }),
            )
            .route(
                "/anonymous/2.0/user",
                get(|| async {
                    (
                        [("content-type", "application/json"), ("x-oauth-scopes", TOKEN_SCOPES)],
                        r#"{"type":"user","display_name":"Nobody","nickname":"nobody"}"#,
                    )
                }),
            )
            .route(
                "/bloated/2.0/user",
                get(|| async {
                    let mut body = cloud_user_body(
                        JDOE_UUID,
                        &format!("<img src=x onerror=alert(1)>{}\u{202e}", "J".repeat(200_000)),
                        "jdoe",
                    );
                    body["scopes_note"] = json!("x");
                    let scopes = (0..500).map(|i| format!("scope:{i}")).collect::<Vec<_>>().join(", ");
                    json_response(StatusCode::OK, &[("x-oauth-scopes", &format!("{TOKEN_SCOPES}, {scopes}"))], body)
                }),
            )
            .route("/dc/rest/api/1.0/application-properties", get(dc_properties))
            .route("/dc/rest/api/1.0/projects/{key}", get(dc_project))
            .route("/dc/rest/api/1.0/projects/{key}/repos/{slug}", get(dc_repository))
            .route("/cloud/2.0/user/workspaces", get(cloud_user_workspaces))
            .route("/cloud/2.0/repositories/{workspace}", get(cloud_repositories))
            .route("/cloud/2.0/repositories/{workspace}/{repo}/refs/branches", get(cloud_branches))
            .route(
                "/cloud/2.0/repositories",
                get(|| async { cloud_error(StatusCode::GONE, "Resource removed (CHANGE-2770)") }),
            )
            .route("/dc/rest/api/1.0/projects", get(dc_projects))
            .route("/dc/rest/api/1.0/projects/{key}/repos", get(dc_repositories))
            .route("/dc/rest/api/1.0/projects/{key}/repos/{slug}/branches", get(dc_branches))
            .route("/git/{workspace}/{repo}/info/refs", get(git_http))
            .route("/git/{workspace}/{repo}/git-upload-pack", axum::routing::post(git_http))
            .route("/dc/rest/api/1.0/users/{slug}", get(dc_user))
            .route("/dc/rest/api/1.0/repos", get(dc_repos))
            .route(
                "/web/rest/api/1.0/application-properties",
                get(|| async { ([("content-type", "text/html")], "<html>Welcome</html>") }),
            )
            .fallback(|uri: Uri| async move {
                (
                    StatusCode::NOT_FOUND,
                    [("content-type", "text/html")],
                    format!("<html>{} not found</html>", uri.path()),
                )
            })
            .layer(axum::middleware::from_fn_with_state(shared.clone(), record))
            .with_state(shared.clone());
        let app_clone = app.clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind fake Bitbucket");
        let origin = format!("http://{}", listener.local_addr().expect("local addr"));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app.clone()).await;
        });
        Self { origin, shared, app: app_clone }
    }

    /// The same fake behind TLS with `certificate` (PEM chain + key); returns `https://127.0.0.1:<port>`.
    pub async fn serve_tls(&self, cert_pem: &str, key_pem: &str) -> String {
        use rustls::pki_types::pem::PemObject;
        let certs = rustls::pki_types::CertificateDer::pem_slice_iter(cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let origin = format!("https://{}", listener.local_addr().unwrap());
        let app = self.app.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (acceptor, app) = (acceptor.clone(), app.clone());
                tokio::spawn(async move {
                    // A client that rejects our certificate ends the handshake: nothing to serve.
                    let Ok(tls) = acceptor.accept(stream).await else { return };
                    let service = hyper_util::service::TowerToHyperService::new(app);
                    let _ = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        origin
    }

    /// The API base for a behaviour: `cloud`, `html`, `ratelimited`, … (Cloud) or `dc`, `web` (Data Center root).
    pub fn url(&self, behaviour: &str) -> String {
        match behaviour {
            "dc" | "web" => format!("{}/{behaviour}", self.origin),
            _ => format!("{}/{behaviour}/2.0", self.origin),
        }
    }

    /// Serves the bare repositories under `root` (`<root>/<workspace>/<repo>.git`)
    /// at `/git/<workspace>/<repo>.git` over git's smart HTTP, for the API token's
    /// git user (`x-bitbucket-api-token-auth`) only, as Bitbucket does.
    pub fn serve_git(&self, root: &std::path::Path) {
        *self.shared.git_root.lock().unwrap() = Some(root.to_owned());
    }

    /// Every answer from now on comes after `delay`.
    pub fn delay(&self, delay: Duration) {
        *self.shared.delay.lock().unwrap() = delay;
    }

    /// Every answer from now on is `status` (an outage), or normal again with `None`.
    pub fn outage(&self, status: Option<u16>) {
        *self.shared.outage.lock().unwrap() = status.and_then(|s| StatusCode::from_u16(s).ok());
    }

    /// From now on, requests beyond `allowed` more are answered 429 (plain text,
    /// no `Retry-After`, as Bitbucket Cloud does); `None` lifts the limit.
    pub fn rate_limit(&self, allowed: Option<usize>) {
        let seen = self.shared.requests.lock().unwrap().len();
        *self.shared.rate_limit.lock().unwrap() = allowed.map(|a| seen + a);
    }

    /// From now on this password or token is refused with 401, as after revocation.
    pub fn revoke(&self, secret: &str) {
        self.shared.revoked.lock().unwrap().insert(secret.to_owned());
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.requests.lock().unwrap().clone()
    }

    /// The OAuth authorization server, to set lifetimes and read what it saw.
    pub fn oauth(&self) -> std::sync::MutexGuard<'_, oauth::AuthServer> {
        self.shared.oauth.lock().unwrap()
    }

    /// The operator's client list registering this fake as Bitbucket Cloud (at
    /// `url("cloud")`) and as a Data Center server (at `url("dc")`).
    pub fn oauth_clients_json(&self) -> String {
        json!([
            {
                "server": self.url("cloud"),
                "key": oauth::CLIENT_KEY,
                "secret": oauth::CLIENT_SECRET,
                "authorize_url": format!("{}/site/oauth2/authorize", self.origin),
                "token_url": format!("{}/site/oauth2/access_token", self.origin),
            },
            {"server": self.url("dc"), "key": oauth::CLIENT_KEY, "secret": oauth::CLIENT_SECRET},
        ])
        .to_string()
    }
}

/// A live OAuth access token in `Authorization: Bearer`, and the server that issued it.
fn oauth_bearer(shared: &Shared, headers: &HeaderMap) -> Option<oauth::Flavor> {
    let token = headers.get("authorization")?.to_str().ok()?.strip_prefix("Bearer ")?;
    shared.oauth.lock().unwrap().access_flavor(token)
}

async fn revoke_by_request(State(shared): State<Shared>, secret: String) -> StatusCode {
    shared.revoked.lock().unwrap().insert(secret);
    StatusCode::NO_CONTENT
}

async fn record(
    State(shared): State<Shared>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let authorization = request.headers().get("authorization").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let recorded =
        Recorded { path: request.uri().path().to_owned(), authorized: authorization.is_some(), authorization };
    let seen = {
        let mut requests = shared.requests.lock().unwrap();
        requests.push(recorded);
        requests.len()
    };
    let delay = *shared.delay.lock().unwrap();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    if let Some(status) = *shared.outage.lock().unwrap() {
        return cloud_error(status, "Something went wrong");
    }
    let limited = shared.rate_limit.lock().unwrap().is_some_and(|allowed| seen > allowed);
    if limited {
        return (StatusCode::TOO_MANY_REQUESTS, "Rate limit for this resource has been exceeded").into_response();
    }
    next.run(request).await
}

fn basic(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get("authorization")?.to_str().ok()?.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD.decode(value).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

fn json_response(status: StatusCode, headers: &[(&'static str, &str)], body: serde_json::Value) -> Response {
    let mut response = (status, axum::Json(body)).into_response();
    for (name, value) in headers {
        response.headers_mut().insert(*name, HeaderValue::from_str(value).unwrap());
    }
    response
}

fn cloud_user_body(uuid: &str, display_name: &str, nickname: &str) -> serde_json::Value {
    json!({
        "type": "user",
        "uuid": uuid,
        "account_id": "557058:0d6f1a2b-3c4d-5e6f-7a8b-9c0d1e2f3a4b",
        "display_name": display_name,
        "nickname": nickname,
        "account_status": "active",
        "created_on": "2019-04-01T10:00:00.000000+00:00",
        "links": {
            "self": {"href": "https://api.bitbucket.org/2.0/users/%7B4f6d1a2c%7D"},
            "html": {"href": "https://bitbucket.org/%7B4f6d1a2c%7D/"},
            "avatar": {"href": "https://secure.gravatar.com/avatar/x"}
        }
    })
}

const TOKEN_SCOPES: &str = "read:user:bitbucket, read:repository:bitbucket, write:repository:bitbucket, read:pullrequest:bitbucket, write:pullrequest:bitbucket, read:project:bitbucket";

async fn cloud_user(State(shared): State<Shared>, headers: HeaderMap) -> Response {
    let unauthorized = || {
        let mut response = (StatusCode::UNAUTHORIZED, "").into_response();
        response
            .headers_mut()
            .insert("www-authenticate", HeaderValue::from_static("Basic realm=\"Bitbucket.org HTTP\""));
        response
    };
    if oauth_bearer(&shared, &headers) == Some(oauth::Flavor::Cloud) {
        let scopes = shared.oauth.lock().unwrap().cloud_scopes.replace(' ', ", ");
        return json_response(
            StatusCode::OK,
            &[("x-oauth-scopes", &scopes)],
            cloud_user_body(JDOE_UUID, "J Doe", "jdoe"),
        );
    }
    let Some((user, password)) = basic(&headers) else { return unauthorized() };
    if shared.revoked.lock().unwrap().contains(&password) {
        return unauthorized();
    }
    let jdoe = || cloud_user_body(JDOE_UUID, "J Doe", "jdoe");
    match (user.as_str(), password.as_str()) {
        (APP_PASSWORD_USER, APP_PASSWORD) => json_response(
            StatusCode::OK,
            &[("x-oauth-scopes", "pullrequest:write, project:write, repository:write, account")],
            jdoe(),
        ),
        (APP_PASSWORD_USER, APP_PASSWORD_READ_ONLY) => {
            json_response(StatusCode::OK, &[("x-oauth-scopes", "pullrequest, project, repository, account")], jdoe())
        }
        (API_TOKEN_EMAIL, API_TOKEN) => json_response(
            StatusCode::OK,
            &[("x-oauth-scopes", TOKEN_SCOPES), ("x-credential-type", "api_token")],
            jdoe(),
        ),
        (API_TOKEN_EMAIL, API_TOKEN_WRITE_ONLY) => json_response(
            StatusCode::OK,
            &[
                (
                    "x-oauth-scopes",
                    "read:user:bitbucket, write:repository:bitbucket, write:pullrequest:bitbucket, read:project:bitbucket",
                ),
                ("x-credential-type", "api_token"),
            ],
            jdoe(),
        ),
        (OTHER_EMAIL, OTHER_TOKEN) => json_response(
            StatusCode::OK,
            &[("x-oauth-scopes", TOKEN_SCOPES), ("x-credential-type", "api_token")],
            cloud_user_body(OTHER_UUID, "Someone Else", "someone"),
        ),
        (API_TOKEN_EMAIL, API_TOKEN_ALL_SCOPES) => json_response(
            StatusCode::OK,
            &[
                ("x-oauth-scopes", &format!("{TOKEN_SCOPES}, read:workspace:bitbucket")),
                ("x-credential-type", "api_token"),
            ],
            jdoe(),
        ),
        (API_TOKEN_EMAIL, BRAINBOARD_TOKEN) => json_response(
            StatusCode::FORBIDDEN,
            &[("x-credential-type", "api_token"), ("x-accepted-oauth-scopes", "read:user:bitbucket")],
            json!({
                "type": "error",
                "error": {
                    "message": "Your credentials lack one or more required privilege scopes.",
                    "detail": {"granted": BRAINBOARD_SCOPES, "required": ["read:user:bitbucket"]}
                }
            }),
        ),
        (API_TOKEN_EMAIL, API_TOKEN_NO_ACCOUNT_SCOPE) => json_response(
            StatusCode::FORBIDDEN,
            &[("x-credential-type", "api_token"), ("x-accepted-oauth-scopes", "read:user:bitbucket")],
            json!({
                "type": "error",
                "error": {
                    "message": "Your credentials lack one or more required privilege scopes.",
                    "detail": {
                        "granted": ["read:repository:bitbucket", "write:repository:bitbucket", "read:pullrequest:bitbucket", "write:pullrequest:bitbucket", "read:project:bitbucket"],
                        "required": ["read:user:bitbucket"]
                    }
                }
            }),
        ),
        _ => unauthorized(),
    }
}

async fn dc_properties() -> Response {
    json_response(
        StatusCode::OK,
        &[],
        json!({"version": "8.19.12", "buildNumber": "8019012", "buildDate": "1717000000000", "displayName": "Bitbucket"}),
    )
}

fn dc_unauthorized() -> Response {
    json_response(
        StatusCode::UNAUTHORIZED,
        &[],
        json!({"errors": [{
            "context": null,
            "message": "Authentication failed. Please check your credentials and try again.",
            "exceptionName": "com.atlassian.bitbucket.auth.IncorrectPasswordAuthenticationException"
        }]}),
    )
}

/// The Data Center user a token authenticates as, if it is a known token.
fn dc_authenticate(shared: &Shared, headers: &HeaderMap) -> Option<&'static str> {
    if oauth_bearer(shared, headers) == Some(oauth::Flavor::DataCenter) {
        return Some(DC_USER);
    }
    let (user, token) = basic(headers)?;
    if shared.revoked.lock().unwrap().contains(&token) {
        return None;
    }
    match (user.as_str(), token.as_str()) {
        (DC_USER, DC_TOKEN | DC_TOKEN_READ_ONLY) => Some(DC_USER),
        // A user token authenticates its owner whatever username is sent with it.
        (_, DC_TOKEN_OF_BOB) => Some("bob"),
        _ => None,
    }
}

async fn dc_user(State(shared): State<Shared>, Path(slug): Path<String>, headers: HeaderMap) -> Response {
    let Some(authenticated) = dc_authenticate(&shared, &headers) else { return dc_unauthorized() };
    let au = [("x-ausername", authenticated)];
    if slug != authenticated {
        return json_response(
            StatusCode::OK,
            &au,
            json!({"name": slug, "slug": slug, "id": 99, "displayName": slug, "active": true, "type": "NORMAL"}),
        );
    }
    json_response(
        StatusCode::OK,
        &au,
        json!({"name": "alice", "emailAddress": "alice@corp.example", "id": 101, "displayName": "Alice Admin", "active": true, "slug": "alice", "type": "NORMAL"}),
    )
}

async fn dc_repos(
    State(shared): State<Shared>,
    Query(query): Query<std::collections::HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    // Project and repository tokens authenticate as a service user; Data Center
    // does not document which name X-AUSERNAME carries for them.
    let authenticated = match (dc_authenticate(&shared, &headers), dc_bearer(&shared, &headers)) {
        (Some(user), _) => user,
        (None, Some(_)) => "service-user",
        (None, None) => return dc_unauthorized(),
    };
    let read_only = basic(&headers).is_some_and(|(_, token)| token == DC_TOKEN_READ_ONLY);
    let wants_write = query.get("permission").map(String::as_str) == Some("REPO_WRITE");
    let values = if wants_write && read_only {
        json!([])
    } else {
        json!([{"slug": "infra", "name": "infra", "project": {"key": "OPS"}}])
    };
    let size = values.as_array().map_or(0, Vec::len);
    json_response(
        StatusCode::OK,
        &[("x-ausername", authenticated)],
        json!({"size": size, "limit": 1, "isLastPage": size == 0, "values": values, "start": 0}),
    )
}

/// Which access token a Bearer header carries, unless revoked.
fn bearer<'a>(shared: &Shared, headers: &'a HeaderMap) -> Option<&'a str> {
    let token = headers.get("authorization")?.to_str().ok()?.strip_prefix("Bearer ")?;
    (!shared.revoked.lock().unwrap().contains(token)).then_some(token)
}

fn cloud_error(status: StatusCode, message: &str) -> Response {
    json_response(status, &[], json!({"type": "error", "error": {"message": message}}))
}

/// A Cloud access token on a resource: 200 for its own, 403 for anything else.
fn cloud_resource(shared: &Shared, headers: &HeaderMap, allowed: &[&str], body: serde_json::Value) -> Response {
    let Some(token) = bearer(shared, headers) else {
        return cloud_error(StatusCode::UNAUTHORIZED, "Token is invalid, expired, or not supported for this endpoint.");
    };
    let (kind, scopes) = match token {
        REPO_ACCESS_TOKEN => ("repo_access_token", "repository:write, pullrequest:write"),
        REPO_ACCESS_TOKEN_READ_ONLY => ("repo_access_token", "repository, pullrequest"),
        PROJECT_ACCESS_TOKEN => ("project_access_token", "repository:write, pullrequest:write, project"),
        WORKSPACE_ACCESS_TOKEN => ("workspace_access_token", "repository:admin, pullrequest:write, project, webhook"),
        _ => {
            return cloud_error(
                StatusCode::UNAUTHORIZED,
                "Token is invalid, expired, or not supported for this endpoint.",
            );
        }
    };
    if !allowed.contains(&token) {
        return cloud_error(StatusCode::FORBIDDEN, "Access denied. You must have write or admin access.");
    }
    json_response(StatusCode::OK, &[("x-oauth-scopes", scopes), ("x-credential-type", kind)], body)
}

async fn cloud_repository(
    State(shared): State<Shared>,
    Path((workspace, repo)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let allowed: &[&str] = if (workspace.as_str(), repo.as_str()) == ("acme", "api") {
        &[REPO_ACCESS_TOKEN, REPO_ACCESS_TOKEN_READ_ONLY, PROJECT_ACCESS_TOKEN, WORKSPACE_ACCESS_TOKEN]
    } else {
        &[]
    };
    let body = json!({"type": "repository", "uuid": "{7d1e2b7a-0000-4000-8000-000000000001}", "full_name": format!("{workspace}/{repo}"), "slug": repo});
    cloud_resource(&shared, &headers, allowed, body)
}

async fn cloud_project(
    State(shared): State<Shared>,
    Path((workspace, key)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let allowed: &[&str] = if (workspace.as_str(), key.as_str()) == ("acme", "OPS") {
        &[PROJECT_ACCESS_TOKEN, WORKSPACE_ACCESS_TOKEN]
    } else {
        &[]
    };
    let body =
        json!({"type": "project", "uuid": "{7d1e2b7a-0000-4000-8000-000000000002}", "key": key, "name": "Operations"});
    cloud_resource(&shared, &headers, allowed, body)
}

async fn cloud_workspace(State(shared): State<Shared>, Path(workspace): Path<String>, headers: HeaderMap) -> Response {
    let allowed: &[&str] = if workspace == "acme" { &[WORKSPACE_ACCESS_TOKEN] } else { &[] };
    let body = json!({"type": "workspace", "uuid": "{7d1e2b7a-0000-4000-8000-000000000003}", "slug": workspace, "name": "Acme"});
    cloud_resource(&shared, &headers, allowed, body)
}

/// Data Center project and repository tokens: Bearer only; Basic with them fails.
fn dc_bearer<'a>(shared: &Shared, headers: &'a HeaderMap) -> Option<&'a str> {
    bearer(shared, headers).filter(|t| [DC_PROJECT_TOKEN, DC_REPO_TOKEN].contains(t))
}

async fn dc_project(State(shared): State<Shared>, Path(key): Path<String>, headers: HeaderMap) -> Response {
    let Some(token) = dc_bearer(&shared, &headers) else { return dc_unauthorized() };
    if key != "OPS" || token != DC_PROJECT_TOKEN {
        return json_response(
            StatusCode::NOT_FOUND,
            &[],
            json!({"errors": [{"message": format!("Project {key} does not exist.")}]}),
        );
    }
    json_response(
        StatusCode::OK,
        &[],
        json!({"key": "OPS", "id": 1, "name": "Operations", "public": false, "type": "NORMAL"}),
    )
}

async fn dc_repository(
    State(shared): State<Shared>,
    Path((key, slug)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let Some(_) = dc_bearer(&shared, &headers) else { return dc_unauthorized() };
    if (key.as_str(), slug.as_str()) != ("OPS", "infra") {
        return json_response(
            StatusCode::NOT_FOUND,
            &[],
            json!({"errors": [{"message": format!("Repository {key}/{slug} does not exist.")}]}),
        );
    }
    json_response(StatusCode::OK, &[], json!({"slug": "infra", "id": 7, "name": "infra", "project": {"key": "OPS"}}))
}

/// Who a Cloud listing call authenticates as: an API token's email (Basic) or
/// an access token (Bearer); `None` when refused.
fn cloud_caller(shared: &Shared, headers: &HeaderMap) -> Option<String> {
    if oauth_bearer(shared, headers) == Some(oauth::Flavor::Cloud) {
        return Some("oauth".into());
    }
    if let Some(token) = bearer(shared, headers) {
        return [REPO_ACCESS_TOKEN, PROJECT_ACCESS_TOKEN, WORKSPACE_ACCESS_TOKEN]
            .contains(&token)
            .then(|| token.to_owned());
    }
    let (user, password) = basic(headers)?;
    let known =
        user == API_TOKEN_EMAIL && [API_TOKEN, API_TOKEN_ALL_SCOPES, BRAINBOARD_TOKEN].contains(&password.as_str());
    (known && !shared.revoked.lock().unwrap().contains(&password)).then_some(password)
}

fn unauthorized_cloud() -> Response {
    let mut response = (StatusCode::UNAUTHORIZED, "").into_response();
    response.headers_mut().insert("www-authenticate", HeaderValue::from_static("Basic realm=\"Bitbucket.org HTTP\""));
    response
}

/// Cloud pagination: `page`, `pagelen`, and `next` as an absolute URL, here
/// deliberately on another origin: a client must never follow it.
fn cloud_page(values: Vec<serde_json::Value>, query: &std::collections::HashMap<String, String>) -> Response {
    let page: usize = query.get("page").and_then(|p| p.parse().ok()).unwrap_or(1);
    // Bitbucket may answer with fewer items than asked; two a page exercises paging.
    let pagelen: usize = query.get("pagelen").and_then(|p| p.parse().ok()).unwrap_or(10).clamp(1, 2);
    let filter = query.get("q").and_then(|q| q.split('"').nth(1)).map(str::to_lowercase);
    let values: Vec<_> = values
        .into_iter()
        .filter(|v| {
            filter.as_ref().is_none_or(|f| v["name"].as_str().unwrap_or_default().to_lowercase().contains(f.as_str()))
        })
        .collect();
    let chunk: Vec<_> = values.iter().skip((page - 1) * pagelen).take(pagelen).cloned().collect();
    let mut body = json!({"pagelen": pagelen, "page": page, "size": values.len(), "values": chunk});
    if page * pagelen < values.len() {
        body["next"] = json!(format!("https://evil.example/2.0/next?page={}", page + 1));
    }
    json_response(StatusCode::OK, &[], body)
}

async fn cloud_user_workspaces(
    State(shared): State<Shared>,
    Query(query): Query<std::collections::HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    match cloud_caller(&shared, &headers).as_deref() {
        None => unauthorized_cloud(),
        Some(API_TOKEN_ALL_SCOPES) => {
            let values = (0..3)
                .map(|i| {
                    let slug = if i == 0 { "acme".to_owned() } else { format!("team-{i}") };
                    json!({"type": "workspace_access", "administrator": false, "workspace": {"type": "workspace_base", "slug": slug, "name": slug.to_uppercase(), "uuid": "{w}"}})
                })
                .collect();
            cloud_page(values, &query)
        }
        Some(_) => json_response(
            StatusCode::FORBIDDEN,
            &[],
            json!({"type": "error", "error": {"message": "Your credentials lack one or more required privilege scopes.", "detail": {"granted": [], "required": ["read:workspace:bitbucket"]}}}),
        ),
    }
}

fn cloud_repo_json(workspace: &str, slug: &str) -> serde_json::Value {
    json!({
        "type": "repository", "slug": slug, "name": slug.to_uppercase(), "full_name": format!("{workspace}/{slug}"),
        "uuid": "{r}", "is_private": true, "mainbranch": {"type": "branch", "name": "main"},
        "workspace": {"slug": workspace},
        "links": {"clone": [
            {"name": "https", "href": format!("https://jdoe@bitbucket.org/{workspace}/{slug}.git")},
            {"name": "ssh", "href": format!("git@bitbucket.org:{workspace}/{slug}.git")}
        ]}
    })
}

async fn cloud_repositories(
    State(shared): State<Shared>,
    Path(workspace): Path<String>,
    Query(query): Query<std::collections::HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if cloud_caller(&shared, &headers).is_none() {
        return unauthorized_cloud();
    }
    if workspace != "acme" {
        return cloud_error(StatusCode::NOT_FOUND, "No workspace with identifier 'x'.");
    }
    let values = ["api", "web", "infra", "docs"].iter().map(|slug| cloud_repo_json("acme", slug)).collect();
    cloud_page(values, &query)
}

async fn cloud_branches(
    State(shared): State<Shared>,
    Path((workspace, repo)): Path<(String, String)>,
    Query(query): Query<std::collections::HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if cloud_caller(&shared, &headers).is_none() {
        return unauthorized_cloud();
    }
    if (workspace.as_str(), repo.as_str()) != ("acme", "api") {
        return cloud_error(StatusCode::NOT_FOUND, "Repository not found");
    }
    let values = ["main", "feature/login", "release/1.0"]
        .iter()
        .map(|name| json!({"type": "branch", "name": name, "target": {"hash": "4f2a0c9e1b7d3a5f6e8c0b2d4f6a8c0e1b3d5f7a"}}))
        .collect();
    cloud_page(values, &query)
}

/// Data Center paging: `start`, `limit`, `isLastPage`, `nextPageStart`.
fn dc_page(values: Vec<serde_json::Value>, query: &std::collections::HashMap<String, String>) -> Response {
    let start: usize = query.get("start").and_then(|p| p.parse().ok()).unwrap_or(0);
    let limit: usize = query.get("limit").and_then(|p| p.parse().ok()).unwrap_or(25).clamp(1, 2);
    let chunk: Vec<_> = values.iter().skip(start).take(limit).cloned().collect();
    let last = start + limit >= values.len();
    let mut body = json!({"size": chunk.len(), "limit": limit, "start": start, "isLastPage": last, "values": chunk});
    if !last {
        body["nextPageStart"] = json!(start + limit);
    }
    json_response(StatusCode::OK, &[], body)
}

fn dc_caller(shared: &Shared, headers: &HeaderMap) -> bool {
    dc_authenticate(shared, headers).is_some() || dc_bearer(shared, headers).is_some()
}

async fn dc_projects(
    State(shared): State<Shared>,
    Query(query): Query<std::collections::HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if !dc_caller(&shared, &headers) {
        return dc_unauthorized();
    }
    let values = ["OPS", "WEB"]
        .iter()
        .map(|key| json!({"key": key, "id": 1, "name": format!("{key} project"), "type": "NORMAL"}))
        .collect();
    dc_page(values, &query)
}

async fn dc_repositories(
    State(shared): State<Shared>,
    Path(key): Path<String>,
    Query(query): Query<std::collections::HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if !dc_caller(&shared, &headers) {
        return dc_unauthorized();
    }
    let values = ["infra", "tools", "legacy"]
        .iter()
        .map(|slug| {
            json!({"slug": slug, "id": 7, "name": slug, "project": {"key": key},
                   "links": {"clone": [{"name": "http", "href": format!("https://alice@git.corp.example/scm/{}/{slug}.git", key.to_lowercase())}]}})
        })
        .collect();
    dc_page(values, &query)
}

async fn dc_branches(
    State(shared): State<Shared>,
    Path((_key, _slug)): Path<(String, String)>,
    Query(query): Query<std::collections::HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if !dc_caller(&shared, &headers) {
        return dc_unauthorized();
    }
    let values = ["main", "develop"]
        .iter()
        .map(|name| json!({"id": format!("refs/heads/{name}"), "displayId": name, "latestCommit": "8d2c1e0f4b6a8c0e1b3d5f7a9c1e3b5d7f9a1c3e", "isDefault": *name == "main"}))
        .collect();
    dc_page(values, &query)
}

/// git's smart HTTP through `git http-backend` (CGI), behind Basic auth.
async fn git_http(
    State(shared): State<Shared>,
    Path((workspace, repo)): Path<(String, String)>,
    request: axum::extract::Request,
) -> Response {
    let root = shared.git_root.lock().unwrap().clone();
    let Some(root) = root else { return StatusCode::NOT_FOUND.into_response() };
    let allowed = basic(request.headers()).is_some_and(|(user, password)| {
        user == "x-bitbucket-api-token-auth" && (password == API_TOKEN || password == API_TOKEN_ALL_SCOPES)
    });
    if !allowed {
        return unauthorized_cloud();
    }
    let path = request.uri().path().trim_start_matches("/git").to_owned();
    let query = request.uri().query().unwrap_or_default().to_owned();
    let method = request.method().as_str().to_owned();
    let content_type =
        request.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let encoding = request.headers().get("content-encoding").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let body = axum::body::to_bytes(request.into_body(), 64 * 1024 * 1024).await.unwrap_or_default();
    let _ = (workspace, repo);
    let mut command = tokio::process::Command::new("git");
    command
        .arg("http-backend")
        .env("GIT_PROJECT_ROOT", &root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("PATH_INFO", &path)
        .env("QUERY_STRING", &query)
        .env("REQUEST_METHOD", &method)
        .env("CONTENT_TYPE", &content_type)
        .env("CONTENT_LENGTH", body.len().to_string())
        .env("REMOTE_USER", "x-bitbucket-api-token-auth")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    if let Some(encoding) = encoding {
        command.env("HTTP_CONTENT_ENCODING", encoding);
    }
    let Ok(mut child) = command.spawn() else { return StatusCode::INTERNAL_SERVER_ERROR.into_response() };
    if let Some(mut stdin) = child.stdin.take() {
        use tokio::io::AsyncWriteExt;
        let _ = stdin.write_all(&body).await;
    }
    let Ok(output) = child.wait_with_output().await else { return StatusCode::INTERNAL_SERVER_ERROR.into_response() };
    let split = output
        .stdout
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, 4))
        .or_else(|| output.stdout.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2)));
    let Some((end, gap)) = split else { return StatusCode::BAD_GATEWAY.into_response() };
    let head = String::from_utf8_lossy(&output.stdout[..end]).into_owned();
    let mut response = axum::body::Body::from(output.stdout[end + gap..].to_vec()).into_response();
    for line in head.lines() {
        let Some((name, value)) = line.split_once(':') else { continue };
        if name.eq_ignore_ascii_case("status") {
            let code = value.trim().split(' ').next().and_then(|c| c.parse().ok()).unwrap_or(200);
            *response.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::OK);
        } else if let (Ok(name), Ok(value)) =
            (axum::http::HeaderName::from_bytes(name.trim().as_bytes()), HeaderValue::from_str(value.trim()))
        {
            response.headers_mut().insert(name, value);
        }
    }
    response
}
