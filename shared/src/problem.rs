//! The one error type of the API and its RFC 9457 problem responses.

use std::time::Duration;

use lambda_http::http::StatusCode;
use serde::Serialize;

/// A problem with one field of the request body or query.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub field: String,
    pub code: &'static str,
    pub detail: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, code: &'static str, detail: impl Into<String>) -> Self {
        Self { field: field.into(), code, detail: detail.into() }
    }
}

/// Everything a request can end with other than success. Each variant has one
/// stable `code`; the `detail` tells the user what to do.
/// (`MethodNotAllowed::allow` lists the resource's methods for the `Allow` header
/// RFC 9110 requires.)
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApiError {
    Unauthenticated,
    NotFound,
    MethodNotAllowed {
        allow: &'static str,
    },
    UnsupportedMediaType,
    PayloadTooLarge {
        limit: usize,
    },
    MalformedJson {
        detail: String,
    },
    MalformedQuery,
    ValidationFailed {
        errors: Vec<FieldError>,
    },
    UrlNotAllowed {
        detail: String,
    },
    UsernameIsEmail,
    InvalidCredentials {
        detail: String,
    },
    AppPasswordRetired,
    WrongResource {
        detail: String,
    },
    BitbucketNotFound {
        detail: String,
    },
    ConnectionUnusable {
        detail: String,
    },
    SecretRequired,
    SecretUnreadable,
    TooManyVerifications {
        retry_after: Duration,
    },
    MissingPermissions {
        missing: Vec<String>,
        granted: Vec<String>,
        detail: String,
    },
    AccountMismatch {
        expected: String,
        found: String,
    },
    NotBitbucket {
        detail: String,
    },
    WrongApiPath {
        detail: String,
    },
    BitbucketRedirected {
        detail: String,
    },
    BitbucketUnreachable {
        detail: String,
    },
    BitbucketTlsError {
        detail: String,
    },
    BitbucketTimeout,
    BitbucketRateLimited {
        retry_after: Option<Duration>,
    },
    /// Every one of the owner's browse slots is busy with a page from Bitbucket.
    BrowseBusy {
        retry_after: Duration,
    },
    /// The server kept timing out on this owner's pages: not called until then.
    BitbucketResting {
        retry_after: Duration,
    },
    BitbucketUnavailable {
        detail: String,
    },
    DuplicateName {
        name: String,
    },
    VersionMismatch,
    TooManyConnections {
        limit: usize,
    },
    IdempotencyKeyReused,
    ServiceUnavailable {
        detail: &'static str,
    },
    /// No OAuth client is registered for the server asked for.
    OauthNotOffered {
        detail: String,
    },
    /// The callback's `state` names no flow this user started (another user's link,
    /// used already, or older than 10 minutes).
    OauthFlowUnknown,
    /// The user did not approve on Bitbucket.
    OauthDenied {
        detail: String,
    },
    /// Bitbucket refused the authorization code.
    OauthCodeRejected {
        detail: String,
    },
    /// Bitbucket refused the operator's OAuth client itself.
    OauthClientRejected,
    /// The connection's refresh token no longer works: revoked, or unused too long.
    OauthRevoked,
    /// Credentials of a "Connect with Bitbucket" connection change only by reconnecting.
    OauthReconnectRequired,
}

impl ApiError {
    /// One of each kind, for documents and tests that must list every code.
    pub fn catalogue() -> Vec<ApiError> {
        let text = String::new;
        vec![
            Self::Unauthenticated,
            Self::NotFound,
            Self::MethodNotAllowed { allow: "GET" },
            Self::UnsupportedMediaType,
            Self::PayloadTooLarge { limit: 0 },
            Self::MalformedJson { detail: text() },
            Self::MalformedQuery,
            Self::ValidationFailed { errors: Vec::new() },
            Self::UrlNotAllowed { detail: text() },
            Self::UsernameIsEmail,
            Self::InvalidCredentials { detail: text() },
            Self::AppPasswordRetired,
            Self::WrongResource { detail: text() },
            Self::BitbucketNotFound { detail: text() },
            Self::ConnectionUnusable { detail: text() },
            Self::SecretRequired,
            Self::SecretUnreadable,
            Self::TooManyVerifications { retry_after: Duration::ZERO },
            Self::MissingPermissions { missing: Vec::new(), granted: Vec::new(), detail: text() },
            Self::AccountMismatch { expected: text(), found: text() },
            Self::NotBitbucket { detail: text() },
            Self::WrongApiPath { detail: text() },
            Self::BitbucketRedirected { detail: text() },
            Self::BitbucketUnreachable { detail: text() },
            Self::BitbucketTlsError { detail: text() },
            Self::BitbucketTimeout,
            Self::BitbucketRateLimited { retry_after: None },
            Self::BrowseBusy { retry_after: Duration::ZERO },
            Self::BitbucketResting { retry_after: Duration::ZERO },
            Self::BitbucketUnavailable { detail: text() },
            Self::DuplicateName { name: text() },
            Self::VersionMismatch,
            Self::TooManyConnections { limit: 0 },
            Self::IdempotencyKeyReused,
            Self::ServiceUnavailable { detail: "" },
            Self::OauthNotOffered { detail: text() },
            Self::OauthFlowUnknown,
            Self::OauthDenied { detail: text() },
            Self::OauthCodeRejected { detail: text() },
            Self::OauthClientRejected,
            Self::OauthRevoked,
            Self::OauthReconnectRequired,
        ]
    }

    pub fn code(&self) -> &'static str {
        match self {
            Self::Unauthenticated => "unauthenticated",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed { .. } => "method_not_allowed",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::PayloadTooLarge { .. } => "payload_too_large",
            Self::MalformedJson { .. } => "malformed_json",
            Self::MalformedQuery => "malformed_query",
            Self::ValidationFailed { .. } => "validation_failed",
            Self::UrlNotAllowed { .. } => "url_not_allowed",
            Self::UsernameIsEmail => "username_is_email",
            Self::InvalidCredentials { .. } => "invalid_credentials",
            Self::AppPasswordRetired => "app_password_retired",
            Self::WrongResource { .. } => "wrong_resource",
            Self::BitbucketNotFound { .. } => "bitbucket_not_found",
            Self::ConnectionUnusable { .. } => "connection_unusable",
            Self::SecretRequired => "secret_required",
            Self::SecretUnreadable => "secret_unreadable",
            Self::TooManyVerifications { .. } => "too_many_verifications",
            Self::MissingPermissions { .. } => "missing_permissions",
            Self::AccountMismatch { .. } => "account_mismatch",
            Self::NotBitbucket { .. } => "not_bitbucket",
            Self::WrongApiPath { .. } => "wrong_api_path",
            Self::BitbucketRedirected { .. } => "bitbucket_redirected",
            Self::BitbucketUnreachable { .. } => "bitbucket_unreachable",
            Self::BitbucketTlsError { .. } => "bitbucket_tls_error",
            Self::BitbucketTimeout => "bitbucket_timeout",
            Self::BitbucketRateLimited { .. } => "bitbucket_rate_limited",
            Self::BrowseBusy { .. } => "browse_busy",
            Self::BitbucketResting { .. } => "bitbucket_resting",
            Self::BitbucketUnavailable { .. } => "bitbucket_unavailable",
            Self::DuplicateName { .. } => "duplicate_name",
            Self::VersionMismatch => "version_mismatch",
            Self::TooManyConnections { .. } => "too_many_connections",
            Self::IdempotencyKeyReused => "idempotency_key_reused",
            Self::ServiceUnavailable { .. } => "service_unavailable",
            Self::OauthNotOffered { .. } => "oauth_not_offered",
            Self::OauthFlowUnknown => "oauth_flow_unknown",
            Self::OauthDenied { .. } => "oauth_denied",
            Self::OauthCodeRejected { .. } => "oauth_code_rejected",
            Self::OauthClientRejected => "oauth_client_rejected",
            Self::OauthRevoked => "oauth_revoked",
            Self::OauthReconnectRequired => "oauth_reconnect_required",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::Unauthenticated => StatusCode::UNAUTHORIZED,
            Self::NotFound | Self::BitbucketNotFound { .. } => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::MalformedJson { .. } | Self::MalformedQuery => StatusCode::BAD_REQUEST,
            Self::DuplicateName { .. } => StatusCode::CONFLICT,
            Self::VersionMismatch => StatusCode::PRECONDITION_FAILED,
            Self::TooManyConnections { .. } | Self::SecretUnreadable | Self::ConnectionUnusable { .. } => {
                StatusCode::CONFLICT
            }
            Self::TooManyVerifications { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::BitbucketTimeout => StatusCode::GATEWAY_TIMEOUT,
            Self::BitbucketUnavailable { .. } => StatusCode::BAD_GATEWAY,
            Self::BitbucketRateLimited { .. } | Self::BitbucketResting { .. } | Self::ServiceUnavailable { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::BrowseBusy { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::OauthClientRejected => StatusCode::BAD_GATEWAY,
            Self::OauthReconnectRequired => StatusCode::CONFLICT,
            // The user's input (URL, username, secret) is what Bitbucket refused:
            // never 401/403, which would tell the caller its own session ended.
            Self::ValidationFailed { .. }
            | Self::UrlNotAllowed { .. }
            | Self::UsernameIsEmail
            | Self::InvalidCredentials { .. }
            | Self::AppPasswordRetired
            | Self::WrongResource { .. }
            | Self::SecretRequired
            | Self::MissingPermissions { .. }
            | Self::AccountMismatch { .. }
            | Self::NotBitbucket { .. }
            | Self::WrongApiPath { .. }
            | Self::BitbucketRedirected { .. }
            | Self::BitbucketUnreachable { .. }
            | Self::BitbucketTlsError { .. }
            | Self::IdempotencyKeyReused
            | Self::OauthNotOffered { .. }
            | Self::OauthFlowUnknown
            | Self::OauthDenied { .. }
            | Self::OauthCodeRejected { .. }
            | Self::OauthRevoked => StatusCode::UNPROCESSABLE_ENTITY,
        }
    }

    pub fn title(&self) -> &'static str {
        match self {
            Self::Unauthenticated => "Not signed in",
            Self::NotFound => "No such connection",
            Self::MethodNotAllowed { .. } => "Method not allowed",
            Self::UnsupportedMediaType => "Unsupported media type",
            Self::PayloadTooLarge { .. } => "Request body too large",
            Self::MalformedJson { .. } => "Malformed JSON",
            Self::MalformedQuery => "Malformed query string",
            Self::ValidationFailed { .. } => "Invalid request",
            Self::UrlNotAllowed { .. } => "URL not allowed",
            Self::UsernameIsEmail => "Username is an email address",
            Self::InvalidCredentials { .. } => "Bitbucket rejected the credentials",
            Self::AppPasswordRetired => "App passwords are retired",
            Self::WrongResource { .. } => "The token belongs to another resource",
            Self::BitbucketNotFound { .. } => "Not found on Bitbucket",
            Self::ConnectionUnusable { .. } => "The connection cannot be used",
            Self::SecretRequired => "The password or token is required",
            Self::SecretUnreadable => "The stored secret cannot be read",
            Self::TooManyVerifications { .. } => "Too many verifications",
            Self::MissingPermissions { .. } => "The credentials lack permissions",
            Self::AccountMismatch { .. } => "The new credentials belong to another account",
            Self::NotBitbucket { .. } => "Not a Bitbucket API",
            Self::WrongApiPath { .. } => "Wrong Bitbucket API path",
            Self::BitbucketRedirected { .. } => "Bitbucket answered with a redirect",
            Self::BitbucketUnreachable { .. } => "Bitbucket is unreachable",
            Self::BitbucketTlsError { .. } => "TLS connection to Bitbucket failed",
            Self::BitbucketTimeout => "Bitbucket did not answer in time",
            Self::BitbucketRateLimited { .. } => "Bitbucket rate limit reached",
            Self::BrowseBusy { .. } => "Too many pages loading",
            Self::BitbucketResting { .. } => "Bitbucket keeps timing out",
            Self::BitbucketUnavailable { .. } => "Bitbucket is failing",
            Self::DuplicateName { .. } => "Name already used",
            Self::VersionMismatch => "The connection changed",
            Self::TooManyConnections { .. } => "Too many connections",
            Self::IdempotencyKeyReused => "Idempotency key reused",
            Self::ServiceUnavailable { .. } => "Temporarily unavailable",
            Self::OauthNotOffered { .. } => "Connect with Bitbucket is not offered for this server",
            Self::OauthFlowUnknown => "This Bitbucket sign-in is not yours or has expired",
            Self::OauthDenied { .. } => "Access was not approved on Bitbucket",
            Self::OauthCodeRejected { .. } => "Bitbucket refused the authorization",
            Self::OauthClientRejected => "Bitbucket refused this product's OAuth client",
            Self::OauthRevoked => "Access to Bitbucket was revoked or has expired",
            Self::OauthReconnectRequired => "Reconnect with Bitbucket to change these credentials",
        }
    }

    pub fn detail(&self) -> String {
        match self {
            Self::Unauthenticated => "Sign in again: the request carried no authenticated user.".into(),
            Self::NotFound => "No connection with this id exists for you.".into(),
            Self::MethodNotAllowed { allow } => format!("This resource supports {allow} only."),
            Self::UnsupportedMediaType => "Send the body as JSON with 'Content-Type: application/json'.".into(),
            Self::PayloadTooLarge { limit } => format!("The request body must be at most {limit} bytes."),
            Self::MalformedJson { detail } => format!("The body is not valid JSON: {detail}."),
            Self::MalformedQuery => "The query string holds characters a URL may not carry as they are (a space, '\"', '<', '>' …). Percent-encode them: a space is %20.".into(),
            Self::ValidationFailed { errors } => match errors.as_slice() {
                [one] => format!("'{}' {}.", one.field, one.detail),
                _ => "Some fields are invalid; see 'errors'.".into(),
            },
            Self::UsernameIsEmail => "App passwords go with your Bitbucket username, not your email. Find the username under Personal settings > Account settings on bitbucket.org; or, if this is an Atlassian API token, set credential_type to 'api_token'.".into(),
            Self::AppPasswordRetired => "Bitbucket no longer accepts app passwords (retired on 2026-07-28). Create an API token with scopes (Atlassian account settings > Security > API tokens > Create API token with scopes > Bitbucket) with read:repository:bitbucket, write:repository:bitbucket, read:pullrequest:bitbucket and write:pullrequest:bitbucket, and enter it with your Atlassian account email as the username.".into(),
            Self::SecretRequired => "The stored password or token is only ever sent to the server it was verified with. To point this connection at another server, enter the password or token again.".into(),
            Self::SecretUnreadable => "The stored password or token can no longer be decrypted. Enter it again (PATCH with 'password') to repair this connection.".into(),
            Self::TooManyVerifications { retry_after } => format!("You have checked credentials against Bitbucket too often. Try again in {} seconds.", retry_after.as_secs().max(1)),
            Self::AccountMismatch { expected, found } => format!("The new credentials belong to Bitbucket account '{found}', not '{expected}'. Send \"confirm_account_change\": true to switch accounts."),
            Self::BitbucketTimeout => "Bitbucket did not answer in time. Try again; if it persists, check the URL.".into(),
            Self::BitbucketRateLimited { retry_after } => match retry_after {
                Some(wait) => format!("Bitbucket is rate limiting this account. Try again in {} seconds.", wait.as_secs()),
                None => "Bitbucket is rate limiting this account (about 1,000 requests an hour). Try again later.".into(),
            },
            Self::BrowseBusy { retry_after } => format!("Several of your lists are still loading from Bitbucket. Try again in {} seconds.", retry_after.as_secs().max(1)),
            Self::BitbucketResting { retry_after } => format!("This Bitbucket server did not answer in time several times in a row, so it is not asked again for {} seconds. Check that it is up, then try again.", retry_after.as_secs().max(1)),
            Self::DuplicateName { name } => format!("You already have a connection named '{name}'. Choose another name."),
            Self::VersionMismatch => "The connection was changed since you read it. Fetch it again and retry with the new ETag.".into(),
            Self::TooManyConnections { limit } => format!("You have reached the limit of {limit} connections. Delete one first."),
            Self::IdempotencyKeyReused => "This Idempotency-Key was already used with a different request body. Use a new key.".into(),
            Self::ServiceUnavailable { detail } => (*detail).into(),
            Self::OauthFlowUnknown => "This answer from Bitbucket does not belong to a sign-in you started in the last 10 minutes (it may come from someone else's link, or was used already). Start \"Connect with Bitbucket\" again.".into(),
            Self::OauthClientRejected => "Bitbucket refused this product's OAuth client: its key or secret is wrong, or the consumer has no callback URL. Tell your operator; meanwhile you can connect with a token.".into(),
            Self::OauthRevoked => "Bitbucket no longer accepts this connection's authorization: it was revoked (Bitbucket: Personal settings > App authorizations, or your Data Center profile > Authorized applications) or went unused too long. Reconnect with Bitbucket.".into(),
            Self::OauthReconnectRequired => "This connection was made with \"Connect with Bitbucket\": its server and credentials change only by reconnecting (POST /oauth/flows with its connection_id). Its name can be changed as usual.".into(),
            Self::UrlNotAllowed { detail }
            | Self::InvalidCredentials { detail }
            | Self::WrongResource { detail }
            | Self::BitbucketNotFound { detail }
            | Self::ConnectionUnusable { detail }
            | Self::MissingPermissions { detail, .. }
            | Self::NotBitbucket { detail }
            | Self::WrongApiPath { detail }
            | Self::BitbucketRedirected { detail }
            | Self::BitbucketUnreachable { detail }
            | Self::BitbucketTlsError { detail }
            | Self::BitbucketUnavailable { detail }
            | Self::OauthNotOffered { detail }
            | Self::OauthDenied { detail }
            | Self::OauthCodeRejected { detail } => detail.clone(),
        }
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::BitbucketRateLimited { retry_after } => Some(retry_after.unwrap_or(Duration::from_secs(60))),
            Self::ServiceUnavailable { .. } => Some(Duration::from_secs(1)),
            Self::TooManyVerifications { retry_after }
            | Self::BrowseBusy { retry_after }
            | Self::BitbucketResting { retry_after } => Some(*retry_after),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitbucket_refusals_are_never_401_or_403() {
        let refusals = [
            ApiError::InvalidCredentials { detail: String::new() },
            ApiError::MissingPermissions { missing: vec![], granted: vec![], detail: String::new() },
            ApiError::UsernameIsEmail,
        ];
        for error in refusals {
            assert_eq!(error.status(), StatusCode::UNPROCESSABLE_ENTITY, "{}", error.code());
        }
    }
}
