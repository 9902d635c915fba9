//! One handler per function. Each takes a request and always answers: errors
//! become problem responses here, never an `Err` that API Gateway turns into 502.

pub mod add;
pub mod browse;
pub mod credentials;
pub mod delete;
pub mod edit;
pub mod list;
pub mod oauth;
pub mod recheck;
mod report_token;
pub mod web;

pub use add::AddHandler;
pub use browse::BrowseHandler;
pub use credentials::CredentialsHandler;
pub use delete::DeleteHandler;
pub use edit::EditHandler;
pub use list::ListHandler;
pub use recheck::RecheckHandler;
pub use web::WebHandler;

use lambda_http::http::{StatusCode, header};
use lambda_http::{Body, Response};

use crate::config::Settings;
use crate::domain::{Connection, Owner};
use crate::http::{json_response, set_header};
use crate::problem::ApiError;
use crate::store::ConnectionStore;

/// A method the resource does not have. Each function serves some of a resource's
/// methods; the `Allow` header names all of them, as the API defines them.
fn method_not_allowed(request: &lambda_http::Request) -> ApiError {
    ApiError::MethodNotAllowed { allow: allowed_methods(request.uri().path()) }
}

fn allowed_methods(path: &str) -> &'static str {
    let mut segments = path.split('/').filter(|segment| !segment.is_empty());
    // From the first `connections`: a stage prefix may come before it, a repository may be named so after it.
    if segments.by_ref().any(|segment| segment == "connections") {
        match (segments.next(), segments.next(), segments.next()) {
            (None, ..) => return "GET, POST",
            (Some(_), None, _) => return "GET, PATCH, DELETE",
            (Some(_), Some("verify"), None) => return "POST",
            _ => {}
        }
    }
    "GET"
}

/// The response for a result, logging failures by code (never by content).
fn respond(result: Result<Response<Body>, ApiError>, request_id: &str) -> Response<Body> {
    match result {
        Ok(response) => response,
        Err(error) => {
            tracing::info!(code = error.code(), status = error.status().as_u16(), request_id, "request refused");
            error.to_response()
        }
    }
}

/// A connection as the API returns it, with its `ETag`.
fn connection_response(
    status: StatusCode,
    connection: &Connection,
    extra: Option<(&str, serde_json::Value)>,
) -> Response<Body> {
    let current = connection.clone().with_status_at(crate::domain::now());
    let mut body = serde_json::to_value(&current).unwrap_or_default();
    if let (Some((key, value)), Some(object)) = (extra, body.as_object_mut()) {
        object.insert(key.to_owned(), value);
    }
    let mut response = json_response(status, &body);
    set_header(&mut response, header::ETAG, &connection.etag());
    response
}

/// Counts one check against Bitbucket for the owner; refused past the per-minute
/// limit, so one account cannot keep the verifying functions busy for everyone.
async fn admit_verification(store: &dyn ConnectionStore, owner: &Owner, settings: &Settings) -> Result<(), ApiError> {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let limit = settings.verifications_per_minute;
    match store.count_verification(owner, limit, now).await {
        Ok(None) => Ok(()),
        Ok(Some(wait)) => Err(ApiError::TooManyVerifications { retry_after: std::time::Duration::from_secs(wait) }),
        Err(error) => Err(error.into_api("", settings.max_connections_per_owner)),
    }
}

/// One structured line per change, for the audit trail. Owner and id only.
fn audit(action: &str, owner: &Owner, connection_id: &str, outcome: &str, request_id: &str) {
    tracing::info!(audit = true, action, owner = owner.as_str(), connection_id, outcome, request_id, "audit");
}

#[cfg(test)]
mod tests {
    use super::allowed_methods;

    #[test]
    fn allow_names_the_methods_of_the_resource_the_path_is() {
        for (path, allow) in [
            ("/connections", "GET, POST"),
            ("/connections/", "GET, POST"),
            ("/prod/connections", "GET, POST"),
            ("/connections/0192", "GET, PATCH, DELETE"),
            ("/connections/verify", "GET, PATCH, DELETE"),
            ("/prod/connections/x/", "GET, PATCH, DELETE"),
            ("/connections/0192/verify", "POST"),
            ("/connections/0192/verify/", "POST"),
            ("/connections/0192/workspaces", "GET"),
            ("/connections/0192/repositories", "GET"),
            ("/connections/0192/repositories/connections/verify/branches", "GET"),
            ("/elsewhere", "GET"),
        ] {
            assert_eq!(allowed_methods(path), allow, "{path}");
        }
    }
}
