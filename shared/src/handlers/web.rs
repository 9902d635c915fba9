//! `GET /` and the settings page's files, plus `GET /config.json`: the browser page,
//! served by the `web` function without authentication. It holds no data: the page
//! signs the user in (OpenID Connect, when configured) and calls the API with a token.
//!
//! The files are embedded at build time, each with a strong `ETag` (a hash of its
//! bytes, computed by build.rs), so a repeat load is a 304 without a body.

use lambda_http::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use lambda_http::{Body, Request, Response};
use sha2::{Digest, Sha256};

use crate::domain::{Flavor, ServerUrl};

/// The page's files as the browser asks for them: path, file in `web/`, type, bytes.
/// `/` is `index.html`.
const FILES: &[(&str, &str, &str, &str)] = &[
    ("/", "index.html", "text/html; charset=utf-8", include_str!("../../../web/index.html")),
    ("/app.js", "app.js", "text/javascript; charset=utf-8", include_str!("../../../web/app.js")),
    ("/api.js", "api.js", "text/javascript; charset=utf-8", include_str!("../../../web/api.js")),
    ("/auth.js", "auth.js", "text/javascript; charset=utf-8", include_str!("../../../web/auth.js")),
    ("/kinds.js", "kinds.js", "text/javascript; charset=utf-8", include_str!("../../../web/kinds.js")),
    ("/style.css", "style.css", "text/css; charset=utf-8", include_str!("../../../web/style.css")),
];

include!(concat!(env!("OUT_DIR"), "/web_etags.rs"));

pub const CONFIG_PATH: &str = "/config.json";

/// Every path the function answers with 200: the files and `/config.json`.
pub fn paths() -> Vec<&'static str> {
    FILES.iter().map(|(path, ..)| *path).chain([CONFIG_PATH]).collect()
}

/// The sum of the embedded files' sizes, in bytes (the page's whole weight).
pub fn page_bytes() -> usize {
    FILES.iter().map(|(.., text)| text.len()).sum()
}

/// Sign-in for the deployed page: the identity provider's issuer and this page's client id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Oidc {
    pub issuer: String,
    pub client_id: String,
    /// The origins the page fetches from besides its own: the issuer's (discovery)
    /// and, when the token endpoint lives elsewhere (Cognito's hosted UI domain), that one.
    connect_origins: Vec<String>,
}

/// What the web function reads from the environment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WebConfig {
    /// `None`: no sign-in (a local run, where the API takes the development identity).
    pub oidc: Option<Oidc>,
    /// The servers "Connect with Bitbucket" is offered for (`OAUTH_SERVERS`, or the
    /// servers of `OAUTH_CLIENTS` where that list is given), as stored.
    pub oauth_servers: Vec<ServerUrl>,
}

impl WebConfig {
    pub fn from_env() -> Result<Self, String> {
        Self::from_lookup(|key| std::env::var(key).ok().filter(|v| !v.trim().is_empty()))
    }

    /// `OIDC_ISSUER` and `OIDC_CLIENT_ID` (both or neither), optional `OIDC_TOKEN_ORIGIN`.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let oauth_servers = oauth_servers(&lookup)?;
        let (issuer, client_id) = match (lookup("OIDC_ISSUER"), lookup("OIDC_CLIENT_ID")) {
            (None, None) => return Ok(Self { oidc: None, oauth_servers }),
            (Some(issuer), Some(client_id)) => (issuer.trim().to_owned(), client_id.trim().to_owned()),
            _ => return Err("OIDC_ISSUER and OIDC_CLIENT_ID go together: set both for sign-in, or neither".into()),
        };
        if client_id.len() > 256 || !client_id.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("OIDC_CLIENT_ID must be 1 to 256 visible ASCII characters".into());
        }
        let mut connect_origins = vec![origin_of("OIDC_ISSUER", &issuer)?];
        if let Some(token) = lookup("OIDC_TOKEN_ORIGIN") {
            let token = origin_of("OIDC_TOKEN_ORIGIN", token.trim())?;
            if !connect_origins.contains(&token) {
                connect_origins.push(token);
            }
        }
        let issuer = issuer.trim_end_matches('/').to_owned();
        Ok(Self { oidc: Some(Oidc { issuer, client_id, connect_origins }), oauth_servers })
    }
}

/// Deployed, the web function never holds the OAuth clients (their secrets): the stack
/// names the servers. Locally, the one list serves both.
fn oauth_servers(lookup: &impl Fn(&str) -> Option<String>) -> Result<Vec<ServerUrl>, String> {
    let listed: Vec<String> = match (lookup("OAUTH_SERVERS"), lookup("OAUTH_CLIENTS")) {
        (Some(servers), _) => servers.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect(),
        (None, Some(clients)) => {
            crate::oauth::OauthClients::parse(&clients)?.servers().map(|s| s.as_str().to_owned()).collect()
        }
        (None, None) => Vec::new(),
    };
    listed
        .iter()
        .map(|text| {
            ServerUrl::parse(text).map(|url| url.as_stored()).map_err(|why| format!("OAUTH_SERVERS {text:?}: {why}"))
        })
        .collect()
}

/// The origin (`scheme://host[:port]`) of an https URL; plain http only for loopback (tests).
fn origin_of(name: &str, text: &str) -> Result<String, String> {
    let url = url::Url::parse(text).map_err(|_| format!("{name} must be an absolute URL, not '{text}'"))?;
    let loopback = match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(domain)) => domain == "localhost",
        None => false,
    };
    if !(url.scheme() == "https" || (url.scheme() == "http" && loopback)) {
        return Err(format!("{name} must be an https URL, not '{text}'"));
    }
    if !url.username().is_empty() || url.password().is_some() || url.query().is_some() || url.fragment().is_some() {
        return Err(format!("{name} must not carry credentials, a query or a fragment"));
    }
    // The origin goes into the CSP header: letters, digits and URL punctuation only
    // (a host may contain ';' by URL rules, which would end the directive).
    let origin = url.origin().ascii_serialization();
    if !origin.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.:/[]".contains(&b)) {
        return Err(format!("{name} has characters that do not belong in a host name: '{text}'"));
    }
    Ok(origin)
}

struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: String,
    etag: String,
}

impl Asset {
    fn new(path: &'static str, content_type: &'static str, body: String) -> Self {
        let etag = strong_etag(&body);
        Self { path, content_type, body, etag }
    }

    fn embedded((path, file, content_type, body): &(&'static str, &str, &'static str, &str)) -> Self {
        match ETAGS.iter().find(|(name, _)| name == file) {
            Some((_, etag)) => Self { path, content_type, body: (*body).to_owned(), etag: (*etag).to_owned() },
            None => Self::new(path, content_type, (*body).to_owned()),
        }
    }
}

/// The first 128 bits of the SHA-256 of the bytes, in hex, quoted.
fn strong_etag(body: &str) -> String {
    let digest = Sha256::digest(body.as_bytes());
    format!("\"{}\"", digest[..16].iter().map(|b| format!("{b:02x}")).collect::<String>())
}

pub struct WebHandler {
    assets: Vec<Asset>,
    csp: HeaderValue,
    /// Deployed, the page signs in and is served over HTTPS only (API Gateway has no
    /// plain-HTTP endpoint); locally it is plain HTTP on loopback, where HSTS would
    /// stick to 127.0.0.1 for every other local server.
    strict_transport: bool,
}

impl WebHandler {
    pub fn new(config: &WebConfig) -> Self {
        let mut assets: Vec<Asset> = FILES.iter().map(Asset::embedded).collect();
        let oidc = config
            .oidc
            .as_ref()
            .map(|oidc| serde_json::json!({"issuer": oidc.issuer, "client_id": oidc.client_id, "scopes": "openid"}));
        let mut body = serde_json::json!({"api_base": "", "oidc": oidc});
        if !config.oauth_servers.is_empty() {
            let servers: Vec<serde_json::Value> = config
                .oauth_servers
                .iter()
                .map(|url| {
                    let label = match url.flavor() {
                        Flavor::Cloud => "Bitbucket Cloud".to_owned(),
                        Flavor::DataCenter => url.url().host_str().unwrap_or("Bitbucket Data Center").to_owned(),
                    };
                    serde_json::json!({"url": url.as_str(), "label": label})
                })
                .collect();
            body["bitbucket_oauth"] = serde_json::json!(servers);
        }
        let body = body.to_string();
        assets.push(Asset::new(CONFIG_PATH, "application/json", body));
        let connect = config.oidc.iter().flat_map(|o| o.connect_origins.iter()).fold(
            String::from("'self'"),
            |mut all, origin| {
                all.push(' ');
                all.push_str(origin);
                all
            },
        );
        let csp = format!(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src {connect}; \
             frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
        );
        // Origins were checked to be plain ASCII URLs: the value is always valid.
        let csp = HeaderValue::from_str(&csp).unwrap_or_else(|_| HeaderValue::from_static("default-src 'none'"));
        Self { assets, csp, strict_transport: config.oidc.is_some() }
    }

    pub async fn handle(&self, request: Request) -> Response<Body> {
        self.respond(request.method(), request.uri().path(), request.headers())
    }

    fn respond(&self, method: &Method, path: &str, headers: &HeaderMap) -> Response<Body> {
        if method != Method::GET && method != Method::HEAD {
            let mut response = self.problem(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "Only GET and HEAD are served here.",
            );
            response.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            return response;
        }
        let Some(asset) = self.assets.iter().find(|asset| asset.path == path) else {
            return self.problem(
                StatusCode::NOT_FOUND,
                "not_found",
                "Nothing is served at this address; the settings page is at /.",
            );
        };
        let not_modified = if_none_match(headers, &asset.etag);
        let body = if not_modified || method == Method::HEAD { Body::Empty } else { Body::Text(asset.body.clone()) };
        let mut response = Response::new(body);
        *response.status_mut() = if not_modified { StatusCode::NOT_MODIFIED } else { StatusCode::OK };
        let headers = response.headers_mut();
        if !not_modified {
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
        }
        if let Ok(etag) = HeaderValue::from_str(&asset.etag) {
            headers.insert(header::ETAG, etag);
        }
        // Revalidate every time: the names carry no hash, so a long max-age would
        // keep an old app.js next to a new index.html. A 304 costs no body.
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        self.secure(&mut response);
        response
    }

    fn problem(&self, status: StatusCode, code: &str, detail: &str) -> Response<Body> {
        let body = serde_json::json!({
            "type": format!("urn:problem:git-connections:{code}"),
            "title": status.canonical_reason().unwrap_or("Error"),
            "status": status.as_u16(),
            "code": code,
            "detail": detail,
        });
        let mut response = Response::new(Body::Text(body.to_string()));
        *response.status_mut() = status;
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        self.secure(&mut response);
        response
    }

    fn secure(&self, response: &mut Response<Body>) {
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_SECURITY_POLICY, self.csp.clone());
        headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
        headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
        if self.strict_transport {
            headers.insert(header::STRICT_TRANSPORT_SECURITY, HeaderValue::from_static("max-age=31536000"));
        }
    }
}

/// `If-None-Match` (RFC 9110 §13.1.2): `*`, or a list of tags compared weakly.
fn if_none_match(headers: &HeaderMap, etag: &str) -> bool {
    headers.get_all(header::IF_NONE_MATCH).iter().filter_map(|value| value.to_str().ok()).any(|line| {
        line.split(',').map(str::trim).any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(handler: &WebHandler, path: &str, if_none_match: Option<&str>) -> Response<Body> {
        let mut headers = HeaderMap::new();
        if let Some(tag) = if_none_match {
            headers.insert(header::IF_NONE_MATCH, HeaderValue::from_str(tag).unwrap());
        }
        handler.respond(&Method::GET, path, &headers)
    }

    fn text(response: &Response<Body>) -> &str {
        match response.body() {
            Body::Text(text) => text,
            _ => "",
        }
    }

    fn config(pairs: &[(&str, &str)]) -> Result<WebConfig, String> {
        let map: std::collections::HashMap<String, String> =
            pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        WebConfig::from_lookup(|key| map.get(key).cloned())
    }

    #[test]
    fn serves_each_file_with_its_type_a_strong_etag_and_the_security_headers() {
        let handler = WebHandler::new(&WebConfig::default());
        for (path, content_type) in [("/", "text/html"), ("/app.js", "text/javascript"), ("/style.css", "text/css")] {
            let response = get(&handler, path, None);
            assert_eq!(response.status(), StatusCode::OK, "{path}");
            let headers = response.headers();
            assert!(headers[header::CONTENT_TYPE].to_str().unwrap().starts_with(content_type), "{path}");
            let etag = headers[header::ETAG].to_str().unwrap();
            assert!(etag.starts_with('"') && etag.len() == 34, "{etag}");
            assert_eq!(headers[header::CACHE_CONTROL], "no-cache");
            assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
            assert_eq!(headers[header::REFERRER_POLICY], "no-referrer");
            let csp = headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
            assert!(csp.contains("script-src 'self';") && csp.contains("connect-src 'self';"), "{csp}");
            assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        }
        assert!(text(&get(&handler, "/", None)).contains("<!doctype html>"));
    }

    #[test]
    fn strict_transport_security_is_sent_where_the_page_signs_in_and_never_locally() {
        let local = WebHandler::new(&WebConfig::default());
        assert!(get(&local, "/", None).headers().get(header::STRICT_TRANSPORT_SECURITY).is_none());
        let deployed = WebHandler::new(
            &config(&[("OIDC_ISSUER", "https://login.example.com"), ("OIDC_CLIENT_ID", "page")]).unwrap(),
        );
        for path in ["/", "/app.js", "/missing"] {
            let response = get(&deployed, path, None);
            assert_eq!(response.headers()[header::STRICT_TRANSPORT_SECURITY], "max-age=31536000", "{path}");
        }
    }

    #[test]
    fn every_file_has_the_etag_of_its_bytes_as_built() {
        let handler = WebHandler::new(&WebConfig::default());
        for (path, file, _, body) in FILES {
            assert!(ETAGS.iter().any(|(name, _)| name == file), "build.rs hashed {file}");
            assert_eq!(get(&handler, path, None).headers()[header::ETAG], strong_etag(body).as_str(), "{path}");
        }
    }

    #[test]
    fn a_known_etag_is_answered_with_304_and_no_body() {
        let handler = WebHandler::new(&WebConfig::default());
        let first = get(&handler, "/app.js", None);
        let etag = first.headers()[header::ETAG].to_str().unwrap().to_owned();
        let again = get(&handler, "/app.js", Some(&etag));
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
        assert!(matches!(again.body(), Body::Empty));
        assert_eq!(again.headers()[header::ETAG], etag.as_str());
        assert_eq!(get(&handler, "/app.js", Some(&format!("\"x\", W/{etag}"))).status(), StatusCode::NOT_MODIFIED);
        assert_eq!(get(&handler, "/app.js", Some("*")).status(), StatusCode::NOT_MODIFIED);
        assert_eq!(get(&handler, "/app.js", Some("\"other\"")).status(), StatusCode::OK);
        assert_ne!(etag, get(&handler, "/style.css", None).headers()[header::ETAG], "one tag per content");
    }

    #[test]
    fn anything_else_is_a_problem() {
        let handler = WebHandler::new(&WebConfig::default());
        for path in ["/nope", "/index.html", "/../Cargo.toml", "/app.js/", "/connections"] {
            let response = get(&handler, path, None);
            assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
            assert_eq!(response.headers()[header::CONTENT_TYPE], "application/problem+json");
            assert!(text(&response).contains("\"code\":\"not_found\""));
        }
        let post = handler.respond(&Method::POST, "/", &HeaderMap::new());
        assert_eq!(post.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(post.headers()[header::ALLOW], "GET, HEAD");
    }

    #[test]
    fn config_json_says_whether_and_where_to_sign_in() {
        let local = WebHandler::new(&config(&[]).unwrap());
        let body: serde_json::Value = serde_json::from_str(text(&get(&local, "/config.json", None))).unwrap();
        assert_eq!(body, serde_json::json!({"api_base": "", "oidc": null}));
        let offering =
            WebHandler::new(&config(&[("OAUTH_SERVERS", "https://bitbucket.org, https://git.corp.example/")]).unwrap());
        let body: serde_json::Value = serde_json::from_str(text(&get(&offering, "/config.json", None))).unwrap();
        assert_eq!(
            body["bitbucket_oauth"],
            serde_json::json!([
                {"url": "https://api.bitbucket.org/2.0", "label": "Bitbucket Cloud"},
                {"url": "https://git.corp.example", "label": "git.corp.example"}
            ]),
            "the page offers Connect with Bitbucket for these servers, named for people"
        );

        let deployed = config(&[
            ("OIDC_ISSUER", "https://login.example.com/realms/acme/"),
            ("OIDC_CLIENT_ID", "settings-page"),
            ("OIDC_TOKEN_ORIGIN", "https://acme.auth.eu-west-1.amazoncognito.com"),
        ])
        .unwrap();
        let handler = WebHandler::new(&deployed);
        let response = get(&handler, "/config.json", None);
        let body: serde_json::Value = serde_json::from_str(text(&response)).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"api_base": "", "oidc": {"issuer": "https://login.example.com/realms/acme", "client_id": "settings-page", "scopes": "openid"}})
        );
        let csp = response.headers()[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
        assert!(
            csp.contains("connect-src 'self' https://login.example.com https://acme.auth.eu-west-1.amazoncognito.com;"),
            "{csp}"
        );
    }

    #[test]
    fn sign_in_settings_are_checked_at_start() {
        assert!(config(&[("OIDC_ISSUER", "https://login.example.com")]).is_err(), "a client id is needed too");
        assert!(config(&[("OIDC_CLIENT_ID", "x")]).is_err(), "an issuer is needed too");
        for bad in ["http://login.example.com", "not a url", "https://a;b.example/", "https://u:p@login.example.com"] {
            assert!(config(&[("OIDC_ISSUER", bad), ("OIDC_CLIENT_ID", "x")]).is_err(), "{bad}");
        }
        assert!(
            config(&[("OIDC_ISSUER", "http://127.0.0.1:4000"), ("OIDC_CLIENT_ID", "x")]).is_ok(),
            "loopback for tests"
        );
        assert!(config(&[("OIDC_ISSUER", "https://login.example.com"), ("OIDC_CLIENT_ID", "a b")]).is_err());
    }

    #[test]
    fn the_page_stays_small() {
        assert!(page_bytes() < 60 * 1024, "the page weighs {} bytes", page_bytes());
    }
}
