//! The HTTP edge: who is calling, what they sent, and JSON responses.

use lambda_http::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt, Response};
use serde::Serialize;

use crate::domain::{ConnectionId, Owner};
use crate::problem::{ApiError, FieldError};

/// Header a local run may use to act as another user. Never read when deployed.
pub const DEV_USER_HEADER: &str = "x-dev-user";
pub const DEV_DEFAULT_USER: &str = "local-user";

/// How the caller is identified.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Identity {
    /// Only the JWT authorizer's `sub` claim counts.
    Authorizer,
    /// Local development: also `x-dev-user`, else a fixed local user.
    LocalDevelopment,
}

/// The authenticated owner of the request.
pub fn principal(request: &Request, identity: Identity) -> Result<Owner, ApiError> {
    if let Some(sub) = authorizer_subject(request) {
        return Owner::parse(sub).ok_or(ApiError::Unauthenticated);
    }
    match identity {
        Identity::Authorizer => Err(ApiError::Unauthenticated),
        // Only a caller on this machine may pick an identity, even in local mode.
        Identity::LocalDevelopment if !from_loopback(request) => Err(ApiError::Unauthenticated),
        Identity::LocalDevelopment => {
            let header = request.headers().get(DEV_USER_HEADER).and_then(|v| v.to_str().ok());
            Owner::parse(header.unwrap_or(DEV_DEFAULT_USER)).ok_or(ApiError::Unauthenticated)
        }
    }
}

fn from_loopback(request: &Request) -> bool {
    match request.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(context)) => context
            .http
            .source_ip
            .as_deref()
            .and_then(|ip| ip.parse::<std::net::IpAddr>().ok())
            .is_some_and(|ip| ip.is_loopback()),
        _ => false,
    }
}

fn authorizer_subject(request: &Request) -> Option<&str> {
    match request.request_context_ref()? {
        RequestContext::ApiGatewayV2(context) => {
            let jwt = context.authorizer.as_ref()?.jwt.as_ref()?;
            jwt.claims.get("sub").map(String::as_str)
        }
        _ => None,
    }
}

/// The request id API Gateway assigned, for logs.
pub fn request_id(request: &Request) -> String {
    match request.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(context)) => context.request_id.clone().unwrap_or_default(),
        _ => String::new(),
    }
}

/// The `{id}` of `/connections/{id}[/verify]`. An id that cannot exist is simply not found.
pub fn connection_id(request: &Request) -> Result<ConnectionId, ApiError> {
    let from_parameters = request.path_parameters_ref().and_then(|p| p.first("id").map(str::to_owned));
    let raw = match from_parameters {
        Some(id) => id,
        // Routers that do not fill path parameters (plain invokes) still carry the path.
        None => request
            .uri()
            .path()
            .split('/')
            .skip_while(|segment| *segment != "connections")
            .nth(1)
            .unwrap_or_default()
            .to_owned(),
    };
    ConnectionId::parse(&raw).ok_or(ApiError::NotFound)
}

/// Whether this request is the `/verify` action rather than the resource itself.
pub fn is_verify_action(request: &Request) -> bool {
    request.method() == Method::POST && request.uri().path().trim_end_matches('/').ends_with("/verify")
}

/// The JSON object in the body, or the problem that explains why there is none.
pub fn json_body(request: &Request, limit: usize) -> Result<serde_json::Map<String, serde_json::Value>, ApiError> {
    let is_json = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or_default().trim().to_ascii_lowercase())
        .is_some_and(|media| media == "application/json" || media.ends_with("+json"));
    if !is_json {
        return Err(ApiError::UnsupportedMediaType);
    }
    let bytes: &[u8] = match request.body() {
        Body::Empty => b"",
        Body::Text(text) => text.as_bytes(),
        Body::Binary(bytes) => bytes,
        _ => b"",
    };
    if bytes.len() > limit {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::MalformedJson { detail: "the body is empty; send a JSON object".into() });
    }
    match serde_json::from_slice::<serde_json::Value>(bytes) {
        Ok(serde_json::Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::MalformedJson { detail: "expected a JSON object".into() }),
        Err(error) => Err(ApiError::MalformedJson {
            detail: format!("{} at line {} column {}", describe_json_error(&error), error.line(), error.column()),
        }),
    }
}

// serde_json's message can quote input; the position is enough and leaks nothing.
fn describe_json_error(error: &serde_json::Error) -> &'static str {
    use serde_json::error::Category;
    match error.classify() {
        Category::Eof => "unexpected end of input",
        Category::Syntax => "syntax error",
        Category::Data | Category::Io => "invalid data",
    }
}

pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// The `Idempotency-Key` header: 1–255 visible ASCII characters, when present.
pub fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get(IDEMPOTENCY_KEY) else { return Ok(None) };
    let key = value.to_str().ok().map(str::trim).unwrap_or_default();
    if key.is_empty() || key.len() > 255 || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ApiError::ValidationFailed {
            errors: vec![crate::problem::FieldError::new(
                "Idempotency-Key",
                "invalid",
                "must be 1 to 255 visible ASCII characters, such as a UUID",
            )],
        });
    }
    Ok(Some(key.to_owned()))
}

/// An `If-Match` precondition (RFC 9110 §13.1.1), judged against the current
/// version only once the resource is known to exist.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IfMatch {
    /// No header: unconditional.
    Absent,
    /// `*`: any current representation.
    Any,
    /// The versions of the strong tags listed; weak and foreign tags never match.
    Versions(Vec<u64>),
}

impl IfMatch {
    pub fn allows(&self, version: u64) -> bool {
        match self {
            Self::Absent | Self::Any => true,
            Self::Versions(versions) => versions.contains(&version),
        }
    }
}

/// Reads every `If-Match` line. Never an error: a tag that cannot match just
/// does not, and the answer (404 or 412) depends on the resource.
pub fn if_match(headers: &HeaderMap) -> IfMatch {
    let mut lines = headers.get_all(header::IF_MATCH).iter().peekable();
    if lines.peek().is_none() {
        return IfMatch::Absent;
    }
    let mut versions = Vec::new();
    for line in lines {
        let Ok(text) = line.to_str() else { continue };
        let mut rest = text.trim();
        while !rest.is_empty() {
            rest = rest.trim_start_matches([',', ' ', '\t']);
            if let Some(after) = rest.strip_prefix('*')
                && (after.trim_start_matches([' ', '\t']).is_empty() || after.trim_start().starts_with(','))
            {
                return IfMatch::Any;
            }
            let weak = rest.starts_with("W/");
            let tag_start = if weak { &rest[2..] } else { rest };
            let Some(quoted) = tag_start.strip_prefix('"') else {
                // Not an entity tag: skip to the next list member.
                rest = rest.find(',').map_or("", |i| &rest[i + 1..]);
                continue;
            };
            let Some(end) = quoted.find('"') else { break };
            // Strong comparison is character by character: "01" is not version 1.
            let tag = &quoted[..end];
            if !weak
                && let Ok(version) = tag.parse::<u64>()
                && version.to_string() == tag
            {
                versions.push(version);
            }
            rest = &quoted[end + 1..];
        }
    }
    versions.truncate(100);
    IfMatch::Versions(versions)
}

pub fn json_response<T: Serialize + ?Sized>(status: StatusCode, body: &T) -> Response<Body> {
    // Serialising our own plain structs cannot fail; if it ever did, say so without a panic.
    let text = serde_json::to_string(body).unwrap_or_else(|_| "{}".into());
    let mut response = Response::new(Body::Text(text));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

pub fn empty_response(status: StatusCode) -> Response<Body> {
    let mut response = Response::new(Body::Empty);
    *response.status_mut() = status;
    response
}

/// Sets a header whose value we built ourselves (ids, numbers).
pub fn set_header(response: &mut Response<Body>, name: header::HeaderName, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        response.headers_mut().insert(name, value);
    }
}

/// Problems are data (`crate::problem`); this is the one place that turns them into
/// responses: `application/problem+json`, with `Retry-After` and `Allow` where due.
impl ApiError {
    pub fn to_response(&self) -> Response<Body> {
        let mut body = serde_json::json!({
            "type": format!("urn:problem:git-connections:{}", self.code()),
            "title": self.title(),
            "status": self.status().as_u16(),
            "code": self.code(),
            "detail": self.detail(),
        });
        match self {
            Self::ValidationFailed { errors } => body["errors"] = serde_json::json!(errors),
            Self::UrlNotAllowed { .. } => {
                body["errors"] = serde_json::json!([FieldError::new("url", "url_not_allowed", self.detail())]);
            }
            Self::UsernameIsEmail => {
                body["errors"] = serde_json::json!([FieldError::new(
                    "username",
                    "username_is_email",
                    "is an email address; app passwords use the Bitbucket username"
                )]);
            }
            Self::DuplicateName { .. } => {
                body["errors"] = serde_json::json!([FieldError::new(
                    "name",
                    "duplicate_name",
                    "is already used by another of your connections"
                )]);
            }
            Self::SecretRequired | Self::SecretUnreadable => {
                body["errors"] =
                    serde_json::json!([FieldError::new("password", self.code(), "enter the password or token again")]);
            }
            Self::InvalidCredentials { .. } | Self::AppPasswordRetired => {
                body["errors"] =
                    serde_json::json!([FieldError::new("password", self.code(), "was refused by Bitbucket")]);
            }
            Self::WrongResource { .. } => {
                body["errors"] =
                    serde_json::json!([FieldError::new("resource", self.code(), "is not what this token belongs to")]);
            }
            Self::MissingPermissions { missing, granted, .. } => {
                body["missing_scopes"] = serde_json::json!(missing);
                body["granted_scopes"] = serde_json::json!(granted);
            }
            _ => {}
        }
        let mut response = json_response(self.status(), &body);
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        if let Some(wait) = self.retry_after() {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(wait.as_secs().max(1)));
        }
        if let Self::MethodNotAllowed { allow } = self {
            response.headers_mut().insert(header::ALLOW, HeaderValue::from_static(allow));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn problem_responses_carry_code_and_media_type() {
        let response = ApiError::DuplicateName { name: "work".into() }.to_response();
        assert_eq!(response.status(), StatusCode::CONFLICT);
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/problem+json");
        let Body::Text(text) = response.body() else { panic!("expected a text body") };
        let json: serde_json::Value = serde_json::from_str(text).unwrap();
        assert_eq!(json["code"], "duplicate_name");
        assert_eq!(json["errors"][0]["field"], "name");
    }

    #[test]
    fn rate_limits_tell_when_to_retry() {
        let response = ApiError::BitbucketRateLimited { retry_after: Some(Duration::from_secs(30)) }.to_response();
        assert_eq!(response.headers()[header::RETRY_AFTER], "30");
    }

    #[test]
    fn if_match_follows_rfc_9110() {
        let parse = |values: &[&str]| {
            let mut headers = HeaderMap::new();
            for value in values {
                headers.append(header::IF_MATCH, HeaderValue::from_str(value).unwrap());
            }
            if_match(&headers)
        };
        assert_eq!(parse(&[]), IfMatch::Absent);
        assert_eq!(parse(&["*"]), IfMatch::Any);
        assert_eq!(parse(&["\"3\""]), IfMatch::Versions(vec![3]));
        assert!(parse(&["\"1\", \"2\""]).allows(1), "a list containing the current tag matches");
        assert!(parse(&["\"2\"", "\"1\""]).allows(1), "several header lines form one list");
        assert!(!parse(&["W/\"1\""]).allows(1), "strong comparison: weak tags never match");
        assert!(!parse(&["\"abc\""]).allows(1));
        assert!(!parse(&[""]).allows(1));
        assert!(!parse(&["garbage, \"7\""]).allows(1));
        assert!(parse(&["garbage, \"7\""]).allows(7));
        assert!(!parse(&["\"01\""]).allows(1), "strong comparison is exact");
        assert!(!parse(&["\"+1\""]).allows(1));
    }
}
