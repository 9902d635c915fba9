//! The one HTTP client that talks to user-supplied Bitbucket URLs: no redirects,
//! no proxies, bounded time and body size, internal addresses refused.

use std::error::Error as StdError;
use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use url::{Host, Url};

use super::net::{BlockedAddress, GuardedResolver, NetPolicy, UnknownHost};
use crate::problem::ApiError;
use crate::secret::Secret;

/// Bitbucket's answers we read are a few KB; anything far bigger is not one.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

#[derive(Clone, Debug)]
pub struct ClientSettings {
    pub policy: NetPolicy,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    /// For a whole verification, however many calls it makes.
    pub deadline: Duration,
    /// Extra trust anchors (PEM), for servers with a private CA and for TLS tests.
    pub extra_roots_pem: Vec<Vec<u8>>,
    /// Host names answered without DNS (still subject to the policy).
    pub static_hosts: Vec<(String, std::net::IpAddr)>,
}

impl Default for ClientSettings {
    fn default() -> Self {
        Self {
            policy: NetPolicy::default(),
            connect_timeout: Duration::from_secs(3),
            request_timeout: Duration::from_secs(8),
            deadline: Duration::from_secs(10),
            extra_roots_pem: Vec::new(),
            static_hosts: Vec::new(),
        }
    }
}

#[derive(Clone, Copy)]
pub enum Auth<'a> {
    None,
    Basic(&'a str, &'a Secret),
    Bearer(&'a Secret),
}

impl<'a> Auth<'a> {
    /// How a stored connection authenticates: with its login (Basic) or alone (Bearer).
    pub fn for_connection(
        kind: crate::credential::CredentialType,
        username: Option<&'a str>,
        secret: &'a Secret,
    ) -> Self {
        match username {
            Some(user) if kind.has_username() => Self::Basic(user, secret),
            _ => Self::Bearer(secret),
        }
    }
}

/// A complete, size-capped answer.
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

/// A `BitbucketHttp` built on its first use, not at start-up: its TLS configuration
/// was 20 k of a function's start-up instructions, and many invocations never call
/// Bitbucket (a recheck run with nothing due, a rename). Clones share one client.
#[derive(Clone)]
pub struct LazyHttp {
    settings: Arc<ClientSettings>,
    client: Arc<std::sync::OnceLock<Result<BitbucketHttp, String>>>,
}

impl LazyHttp {
    pub fn new(settings: &ClientSettings) -> Self {
        Self { settings: Arc::new(settings.clone()), client: Arc::default() }
    }

    pub fn settings(&self) -> &ClientSettings {
        &self.settings
    }

    /// The client; a configuration it cannot be built from (a CA bundle that does not
    /// parse) is logged and answered as unavailable.
    pub fn get(&self) -> Result<&BitbucketHttp, ApiError> {
        self.client.get_or_init(|| BitbucketHttp::new(&self.settings)).as_ref().map_err(|error| {
            tracing::error!(error = %error, "the Bitbucket client cannot be built");
            ApiError::ServiceUnavailable { detail: "Connecting to Bitbucket is misconfigured. Try again later." }
        })
    }
}

#[derive(Clone)]
pub struct BitbucketHttp {
    client: reqwest::Client,
    policy: Arc<NetPolicy>,
}

impl BitbucketHttp {
    pub fn new(settings: &ClientSettings) -> Result<Self, String> {
        let policy = Arc::new(settings.policy.clone());
        let builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .connect_timeout(settings.connect_timeout)
            .timeout(settings.request_timeout)
            .user_agent(concat!("git-connections/", env!("CARGO_PKG_VERSION")))
            .dns_resolver(GuardedResolver {
                policy: policy.clone(),
                static_hosts: Arc::new(settings.static_hosts.clone()),
            })
            .tls_backend_preconfigured(crate::tls::bitbucket_client_config(&settings.extra_roots_pem)?);
        let client = builder.build().map_err(|e| format!("cannot build the Bitbucket HTTP client: {e}"))?;
        Ok(Self { client, policy })
    }

    /// Refuses URLs the policy forbids before anything leaves the machine.
    pub fn check_url(&self, url: &Url) -> Result<(), ApiError> {
        check_url(&self.policy, url)
    }

    pub async fn get(&self, url: Url, auth: Auth<'_>) -> Result<Reply, ApiError> {
        self.check_url(&url)?;
        let request = self.client.get(url.clone()).header("accept", "application/json");
        self.send(&url, request, auth).await
    }

    /// A form-encoded POST (OAuth token endpoints), with the same guards as `get`.
    pub async fn post_form(&self, url: Url, auth: Auth<'_>, form: &[(&str, &str)]) -> Result<Reply, ApiError> {
        self.check_url(&url)?;
        let body = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(form).finish();
        let request = self
            .client
            .post(url.clone())
            .header("accept", "application/json")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        self.send(&url, request, auth).await
    }

    async fn send(&self, url: &Url, request: reqwest::RequestBuilder, auth: Auth<'_>) -> Result<Reply, ApiError> {
        let host = url.host_str().unwrap_or_default().to_owned();
        let request = match auth {
            Auth::None => request,
            Auth::Basic(user, secret) => request.basic_auth(user, Some(secret.expose())),
            Auth::Bearer(secret) => request.bearer_auth(secret.expose()),
        };
        let mut response = request.send().await.map_err(|e| classify(&e, &host))?;
        let status = response.status();
        let headers = response.headers().clone();
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| classify(&e, &host))? {
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(ApiError::NotBitbucket {
                    detail: format!(
                        "{host} sent a response far larger than any Bitbucket API answer; check the server URL."
                    ),
                });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Reply { status, headers, body })
    }
}

/// Refuses URLs `policy` forbids: a scheme other than https (unless allowed for the
/// host), an IP literal in a refused range.
pub fn check_url(policy: &NetPolicy, url: &Url) -> Result<(), ApiError> {
    let host = url.host_str().unwrap_or_default();
    if url.scheme() != "https" && !policy.allows_plain_http(host) {
        return Err(ApiError::UrlNotAllowed { detail: "The URL must start with https://.".into() });
    }
    // IP literals never reach the resolver, so they are judged here.
    let literal = match url.host() {
        Some(Host::Ipv4(v4)) => Some(v4.into()),
        Some(Host::Ipv6(v6)) => Some(v6.into()),
        _ => None,
    };
    if literal.is_some_and(|ip| !policy.allows_ip(ip)) {
        return Err(not_allowed(host));
    }
    Ok(())
}

fn not_allowed(host: &str) -> ApiError {
    ApiError::UrlNotAllowed {
        detail: format!(
            "{host} is an internal address. Use the public address of your Bitbucket server, or ask your operator to allow it."
        ),
    }
}

/// Turns a transport failure into the problem the user can act on. The error
/// text itself is never shown: it can quote the URL.
fn classify(error: &reqwest::Error, host: &str) -> ApiError {
    if error.is_timeout() {
        return ApiError::BitbucketTimeout;
    }
    for cause in causes(error) {
        if cause.is::<BlockedAddress>() {
            return not_allowed(host);
        }
        if cause.is::<UnknownHost>() {
            return ApiError::BitbucketUnreachable {
                detail: format!("The host {host} does not exist (DNS lookup failed). Check the server URL."),
            };
        }
        if cause.is::<rustls::Error>() {
            return ApiError::BitbucketTlsError {
                detail: format!(
                    "A secure (TLS) connection to {host} failed: its certificate is not trusted, does not match the host, or it does not speak HTTPS on this port. Check the server URL; a private CA must be configured by your operator."
                ),
            };
        }
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            match io.kind() {
                std::io::ErrorKind::ConnectionRefused => {
                    return ApiError::BitbucketUnreachable {
                        detail: format!("{host} refused the connection. Check the server URL and port."),
                    };
                }
                std::io::ErrorKind::TimedOut => return ApiError::BitbucketTimeout,
                _ => {}
            }
        }
    }
    ApiError::BitbucketUnreachable {
        detail: format!("Could not connect to {host}. Check the server URL and that the server is up."),
    }
}

/// Every error in the chain, including the ones an `io::Error` wraps (its
/// `source()` skips the wrapped error itself).
fn causes<'a>(error: &'a (dyn StdError + 'static)) -> Vec<&'a (dyn StdError + 'static)> {
    fn collect<'a>(error: &'a (dyn StdError + 'static), found: &mut Vec<&'a (dyn StdError + 'static)>) {
        found.push(error);
        if let Some(inner) = error.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()) {
            collect(inner, found);
        }
        if let Some(source) = error.source() {
            collect(source, found);
        }
    }
    let mut found = Vec::new();
    if let Some(source) = error.source() {
        collect(source, &mut found);
    }
    found
}
