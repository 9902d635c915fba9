//! Request bodies and query strings, parsed into valid values with one error per
//! field at fault.

use serde_json::{Map, Value};

use time::OffsetDateTime;

use crate::credential::Resource;
use crate::domain::{ConnectionId, ConnectionName, CredentialType, SECRET_MAX_CHARS};
use crate::domain::{DEFAULT_CLOUD_URL, ServerUrl};
use crate::problem::{ApiError, FieldError};
use crate::secret::Secret;
use crate::username::Username;

pub const LIST_LIMIT_DEFAULT: usize = 50;
pub const LIST_LIMIT_MAX: usize = 100;

/// `POST /connections`.
#[derive(Debug)]
pub struct CreateRequest {
    pub name: ConnectionName,
    pub url: ServerUrl,
    /// Absent for access tokens, which have no login.
    pub username: Option<Username>,
    pub password: Secret,
    pub credential_type: Option<CredentialType>,
    pub resource: Option<Resource>,
    pub expires_at: Option<OffsetDateTime>,
}

impl CreateRequest {
    /// Identifies the request for `Idempotency-Key` replays. The password is left
    /// out on purpose: nothing derived from a secret is stored outside KMS, so a
    /// retry that differs only in its password counts as the same request.
    pub fn fingerprint(&self) -> String {
        use sha2::{Digest, Sha256};
        let kind = self.credential_type.map(CredentialType::as_str).unwrap_or_default();
        let username = self.username.as_ref().map(Username::as_str).unwrap_or_default();
        let resource = self.resource.as_ref().map(Resource::as_path).unwrap_or_default();
        let expires = self.expires_at.map(|t| t.unix_timestamp().to_string()).unwrap_or_default();
        let mut hasher = Sha256::new();
        for part in [self.name.as_str(), self.url.as_str(), username, kind, &resource, &expires] {
            hasher.update((part.len() as u64).to_be_bytes());
            hasher.update(part.as_bytes());
        }
        hasher.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// `PATCH /connections/{id}`: every field optional.
#[derive(Debug, Default)]
pub struct PatchRequest {
    pub name: Option<ConnectionName>,
    pub url: Option<ServerUrl>,
    pub username: Option<Username>,
    pub password: Option<Secret>,
    pub credential_type: Option<CredentialType>,
    pub resource: Option<Resource>,
    /// `Some(None)` clears the expiry.
    pub expires_at: Option<Option<OffsetDateTime>>,
    pub confirm_account_change: bool,
}

impl PatchRequest {
    /// Whatever Bitbucket would judge differently: these changes must be re-verified.
    pub fn changes_credentials(&self) -> bool {
        self.url.is_some()
            || self.username.is_some()
            || self.password.is_some()
            || self.credential_type.is_some()
            || self.resource.is_some()
    }
}

const CREATE_FIELDS: &[&str] = &["name", "url", "username", "password", "credential_type", "resource", "expires_at"];
const PATCH_FIELDS: &[&str] =
    &["name", "url", "username", "password", "credential_type", "resource", "expires_at", "confirm_account_change"];

pub fn parse_create(body: &Map<String, Value>) -> Result<CreateRequest, ApiError> {
    let mut fields = Fields::new(body, CREATE_FIELDS);
    let name = fields.required("name", ConnectionName::parse);
    let url = match fields.optional_string("url") {
        Some(text) => fields.check("url", ServerUrl::parse(text)),
        None => ServerUrl::parse(DEFAULT_CLOUD_URL).ok(),
    };
    // An empty login is no login: what an access-token form sends.
    let username = fields.optional_string("username").filter(|t| !t.trim().is_empty());
    let username = username.and_then(|t| fields.check("username", Username::parse(t)));
    let password = fields.required("password", parse_secret);
    let credential_type = fields.credential_type();
    let resource = fields.optional_string("resource").filter(|t| !t.trim().is_empty());
    let resource = resource.and_then(|t| fields.check("resource", Resource::parse(t)));
    let expires_at = fields.expires_at().flatten();
    fields.finish()?;
    match (name, url, password) {
        (Some(name), Some(url), Some(password)) => {
            Ok(CreateRequest { name, url, username, password, credential_type, resource, expires_at })
        }
        // `finish` reports every missing field, so this arm is never reached with all present.
        _ => Err(ApiError::ValidationFailed { errors: Vec::new() }),
    }
}

/// `POST /oauth/flows`: which server, and what the connection will be called (or
/// which connection it reconnects).
#[derive(Debug)]
pub struct OauthStart {
    pub url: ServerUrl,
    pub name: Option<ConnectionName>,
    pub reconnect: Option<ConnectionId>,
}

/// `POST /oauth/callbacks`: what Bitbucket put in the redirect's query.
#[derive(Debug)]
pub struct OauthCallback {
    pub state: String,
    /// `Ok(code)`, or `Err((error, description))` when the user did not approve.
    pub outcome: Result<Secret, (String, Option<String>)>,
}

const OAUTH_START_FIELDS: &[&str] = &["url", "name", "connection_id"];
const OAUTH_CALLBACK_FIELDS: &[&str] = &["state", "code", "error", "error_description"];
/// Codes and states are opaque; Bitbucket's run to a few hundred characters.
const OAUTH_VALUE_MAX_CHARS: usize = 2048;

pub fn parse_oauth_start(body: &Map<String, Value>) -> Result<OauthStart, ApiError> {
    let mut fields = Fields::new(body, OAUTH_START_FIELDS);
    let url = match fields.optional_string("url") {
        Some(text) => fields.check("url", ServerUrl::parse(text)),
        None => ServerUrl::parse(DEFAULT_CLOUD_URL).ok(),
    };
    let name = fields.optional_string("name").and_then(|t| fields.check("name", ConnectionName::parse(t)));
    let reconnect = fields
        .optional_string("connection_id")
        .and_then(|t| fields.check("connection_id", ConnectionId::parse(t).ok_or("must be a connection's id")));
    fields.finish()?;
    let url = url.ok_or(ApiError::ValidationFailed { errors: Vec::new() })?;
    Ok(OauthStart { url, name, reconnect })
}

pub fn parse_oauth_callback(body: &Map<String, Value>) -> Result<OauthCallback, ApiError> {
    let opaque = |text: &str| -> Result<String, &'static str> {
        let fits =
            !text.is_empty() && text.len() <= OAUTH_VALUE_MAX_CHARS && text.chars().all(|c| c.is_ascii_graphic());
        if fits { Ok(text.to_owned()) } else { Err("must be the value Bitbucket sent back, unchanged") }
    };
    let mut fields = Fields::new(body, OAUTH_CALLBACK_FIELDS);
    let state = fields.required("state", opaque);
    let code = fields.optional_string("code").and_then(|t| fields.check("code", opaque(t)));
    let error = fields.optional_string("error").and_then(|t| fields.check("error", opaque(t)));
    let description = fields.optional_string("error_description").and_then(crate::text::clean_text);
    if code.is_none() && error.is_none() {
        fields.check::<()>("code", Err("is required (or 'error', when Bitbucket sent one)"));
    }
    fields.finish()?;
    let state = state.ok_or(ApiError::ValidationFailed { errors: Vec::new() })?;
    let outcome = match (code, error) {
        (_, Some(error)) => Err((error, description)),
        (Some(code), None) => Ok(Secret::new(code)),
        (None, None) => return Err(ApiError::ValidationFailed { errors: Vec::new() }),
    };
    Ok(OauthCallback { state, outcome })
}

pub fn parse_patch(body: &Map<String, Value>) -> Result<PatchRequest, ApiError> {
    let mut fields = Fields::new(body, PATCH_FIELDS);
    let name = fields.optional_string("name").and_then(|t| fields.check("name", ConnectionName::parse(t)));
    let url = fields.optional_string("url").and_then(|t| fields.check("url", ServerUrl::parse(t)));
    let username = fields.optional_string("username").and_then(|t| fields.check("username", Username::parse(t)));
    let password = fields.optional_string("password").and_then(|t| fields.check("password", parse_secret(t)));
    let credential_type = fields.credential_type();
    let resource = fields.optional_string("resource").and_then(|t| fields.check("resource", Resource::parse(t)));
    // Known from the body alone, so refused before the stored connection is read
    // (a 422, not a 412 for an old ETag): a kind with a login is bound to nothing.
    let resource = match credential_type {
        Some(kind) if kind.bound_to().is_none() && resource.is_some() => {
            fields.check::<Resource>("resource", Err("must be empty: only access tokens are bound to a resource"))
        }
        _ => resource,
    };
    let expires_at = fields.expires_at();
    let confirm_account_change = fields.optional_bool("confirm_account_change").unwrap_or(false);
    fields.finish()?;
    let patch =
        PatchRequest { name, url, username, password, credential_type, resource, expires_at, confirm_account_change };
    if patch.name.is_none() && patch.expires_at.is_none() && !patch.changes_credentials() {
        return Err(ApiError::ValidationFailed {
            errors: vec![FieldError::new(
                "body",
                "empty_patch",
                "must change at least one of name, url, username, password, credential_type, resource, expires_at",
            )],
        });
    }
    Ok(patch)
}

fn parse_secret(text: &str) -> Result<Secret, &'static str> {
    if text.is_empty() {
        return Err("must not be empty");
    }
    // Characters, as JSON Schema's maxLength counts them, so clients validate as the server does.
    if text.chars().count() > SECRET_MAX_CHARS {
        return Err("must be at most 1024 characters");
    }
    if text.chars().any(char::is_control) || text.trim() != text {
        return Err(
            "must not contain spaces at either end or control characters; paste the token exactly as Bitbucket showed it",
        );
    }
    Ok(Secret::new(text.to_owned()))
}

/// `GET /connections?limit=&cursor=`.
#[derive(Debug, PartialEq, Eq)]
pub struct ListQuery {
    pub limit: usize,
    pub after: Option<ConnectionId>,
}

pub fn parse_list_query(limit: Option<&str>, cursor: Option<&str>) -> Result<ListQuery, ApiError> {
    let mut errors = Vec::new();
    let limit = match limit {
        None => LIST_LIMIT_DEFAULT,
        Some(text) => match text.parse::<usize>() {
            Ok(n) if (1..=LIST_LIMIT_MAX).contains(&n) => n,
            _ => {
                errors.push(FieldError::new("limit", "out_of_range", "must be a whole number from 1 to 100"));
                0
            }
        },
    };
    let after = match cursor {
        None | Some("") => None,
        Some(text) => {
            let id = decode_cursor(text);
            if id.is_none() {
                errors.push(FieldError::new(
                    "cursor",
                    "invalid_cursor",
                    "is not a cursor this API returned; start again without it",
                ));
            }
            id
        }
    };
    if errors.is_empty() { Ok(ListQuery { limit, after }) } else { Err(ApiError::ValidationFailed { errors }) }
}

/// The cursor names only the last id seen; the owner always comes from the
/// principal, so no cursor can lead into another owner's items.
pub fn encode_cursor(id: &ConnectionId) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("c1:{id}"))
}

fn decode_cursor(text: &str) -> Option<ConnectionId> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text).ok()?;
    let text = std::str::from_utf8(&bytes).ok()?;
    ConnectionId::parse(text.strip_prefix("c1:")?)
}

/// Collects one error per field while the body is read.
struct Fields<'a> {
    body: &'a Map<String, Value>,
    errors: Vec<FieldError>,
}

impl<'a> Fields<'a> {
    fn new(body: &'a Map<String, Value>, known: &[&str]) -> Self {
        let mut errors = Vec::new();
        for key in body.keys() {
            if !known.contains(&key.as_str()) {
                let field: String = key.chars().take(64).collect();
                errors.push(FieldError::new(
                    field,
                    "unknown_field",
                    format!("is not a known field; expected one of {}", known.join(", ")),
                ));
            }
        }
        Self { body, errors }
    }

    fn optional_string(&mut self, field: &str) -> Option<&'a str> {
        match self.body.get(field) {
            None | Some(Value::Null) => None,
            Some(Value::String(text)) => Some(text),
            Some(_) => {
                self.errors.push(FieldError::new(field, "wrong_type", "must be a string"));
                None
            }
        }
    }

    fn optional_bool(&mut self, field: &str) -> Option<bool> {
        match self.body.get(field) {
            None | Some(Value::Null) => None,
            Some(Value::Bool(b)) => Some(*b),
            Some(_) => {
                self.errors.push(FieldError::new(field, "wrong_type", "must be true or false"));
                None
            }
        }
    }

    fn required<T>(&mut self, field: &str, parse: impl FnOnce(&str) -> Result<T, &'static str>) -> Option<T> {
        match self.body.get(field) {
            None | Some(Value::Null) => {
                self.errors.push(FieldError::new(field, "required", "is required"));
                None
            }
            Some(_) => {
                let text = self.optional_string(field)?;
                self.check(field, parse(text))
            }
        }
    }

    fn check<T>(&mut self, field: &str, parsed: Result<T, &'static str>) -> Option<T> {
        match parsed {
            Ok(value) => Some(value),
            Err(reason) => {
                self.errors.push(FieldError::new(field, "invalid", reason));
                None
            }
        }
    }

    fn credential_type(&mut self) -> Option<CredentialType> {
        let text = self.optional_string("credential_type")?;
        let parsed = CredentialType::parse(text);
        if parsed == Some(CredentialType::Oauth) {
            let detail = "'oauth' connections are made by \"Connect with Bitbucket\" (POST /oauth/flows), not entered";
            self.errors.push(FieldError::new("credential_type", "invalid", detail));
            return None;
        }
        if parsed.is_none() {
            let expected = format!("must be one of {}", CredentialType::ALL.join(", "));
            self.errors.push(FieldError::new("credential_type", "invalid", expected));
        }
        parsed
    }

    /// `expires_at`: an RFC 3339 time or a date (the end of that day, UTC);
    /// `null` clears it. `Some(None)` means present and null.
    fn expires_at(&mut self) -> Option<Option<OffsetDateTime>> {
        let text = match self.body.get("expires_at") {
            None => return None,
            Some(Value::Null) => return Some(None),
            Some(Value::String(text)) => text.trim(),
            Some(_) => {
                self.errors.push(FieldError::new("expires_at", "wrong_type", "must be a date such as 2027-06-30"));
                return None;
            }
        };
        let format = time::format_description::well_known::Rfc3339;
        let date_format = time::macros::format_description!("[year]-[month]-[day]");
        let parsed = OffsetDateTime::parse(text, &format).ok().or_else(|| {
            let date = time::Date::parse(text, &date_format).ok()?;
            Some(date.with_hms(23, 59, 59).ok()?.assume_utc())
        });
        match parsed {
            Some(at) if at > OffsetDateTime::now_utc() => Some(Some(at.replace_nanosecond(0).unwrap_or(at))),
            Some(_) => {
                self.errors.push(FieldError::new("expires_at", "invalid", "must be in the future"));
                None
            }
            None => {
                self.errors.push(FieldError::new(
                    "expires_at",
                    "invalid",
                    "must be a date (2027-06-30) or an RFC 3339 time (2027-06-30T12:00:00Z)",
                ));
                None
            }
        }
    }

    fn finish(self) -> Result<(), ApiError> {
        if self.errors.is_empty() { Ok(()) } else { Err(ApiError::ValidationFailed { errors: self.errors }) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap_or_default()
    }

    fn field_codes(error: ApiError) -> Vec<(String, &'static str)> {
        match error {
            ApiError::ValidationFailed { errors } => errors.into_iter().map(|e| (e.field, e.code)).collect(),
            other => panic!("expected validation_failed, got {other:?}"),
        }
    }

    #[test]
    fn create_defaults_the_url_to_bitbucket_cloud() {
        let request = parse_create(&object(json!({"name": "w", "username": "jdoe", "password": "p"}))).unwrap();
        assert_eq!(request.url.as_str(), DEFAULT_CLOUD_URL);
        assert_eq!(request.credential_type, None);
    }

    #[test]
    fn create_reports_every_bad_field_at_once() {
        let body = object(json!({"name": "", "username": 7, "url": "not a url", "extra": 1, "credential_type": "ssh"}));
        let codes = field_codes(parse_create(&body).unwrap_err());
        assert!(codes.contains(&("extra".into(), "unknown_field")));
        assert!(codes.contains(&("name".into(), "invalid")));
        assert!(codes.contains(&("username".into(), "wrong_type")));
        assert!(codes.contains(&("url".into(), "invalid")));
        assert!(codes.contains(&("password".into(), "required")));
        assert!(codes.contains(&("credential_type".into(), "invalid")));
        let past = object(json!({"name": "w", "password": "p", "expires_at": "2001-01-01"}));
        assert_eq!(field_codes(parse_create(&past).unwrap_err()), vec![("expires_at".to_string(), "invalid")]);
    }

    #[test]
    fn patch_must_change_something() {
        let codes = field_codes(parse_patch(&object(json!({}))).unwrap_err());
        assert_eq!(codes, vec![("body".to_string(), "empty_patch")]);
        let patch = parse_patch(&object(json!({"name": "new"}))).unwrap();
        assert!(!patch.changes_credentials());
        let patch = parse_patch(&object(json!({"password": "rotated"}))).unwrap();
        assert!(patch.changes_credentials());
    }

    #[test]
    fn a_patch_naming_a_kind_with_a_login_carries_no_resource() {
        let bound = json!({"credential_type": "api_token", "resource": "acme/api"});
        assert_eq!(field_codes(parse_patch(&object(bound)).unwrap_err()), vec![("resource".to_string(), "invalid")]);
        let access = json!({"credential_type": "repository_access_token", "resource": "acme/api"});
        assert!(parse_patch(&object(access)).is_ok());
    }

    #[test]
    fn limits_and_cursors_are_checked() {
        assert_eq!(parse_list_query(None, None).unwrap().limit, LIST_LIMIT_DEFAULT);
        for bad in ["0", "-1", "101", "100000000000000000000", "ten"] {
            assert!(parse_list_query(Some(bad), None).is_err(), "{bad}");
        }
        let id = ConnectionId::new();
        assert_eq!(parse_list_query(None, Some(&encode_cursor(&id))).unwrap().after, Some(id));
        assert!(parse_list_query(None, Some("garbage")).is_err());
    }
}
