//! One handler per function. Each takes a request and always answers: errors
//! become problem responses here, never an `Err` that API Gateway turns into 502.

pub mod add;
pub mod delete;
pub mod edit;
pub mod list;

pub use add::AddHandler;
pub use delete::DeleteHandler;
pub use edit::EditHandler;
pub use list::ListHandler;

use lambda_http::http::{StatusCode, header};
use lambda_http::{Body, Response};

use crate::domain::{Connection, Owner};
use crate::http::{json_response, set_header};
use crate::problem::ApiError;
use crate::seal::SealError;

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
    let mut body = serde_json::to_value(connection).unwrap_or_default();
    if let (Some((key, value)), Some(object)) = (extra, body.as_object_mut()) {
        object.insert(key.to_owned(), value);
    }
    let mut response = json_response(status, &body);
    set_header(&mut response, header::ETAG, &connection.etag());
    response
}

fn seal_failure(error: SealError) -> ApiError {
    tracing::error!(error = %error, "sealing failed");
    match error {
        SealError::Unavailable(_) => ApiError::ServiceUnavailable {
            detail: "The encryption service is unavailable. Try again shortly; nothing was changed.",
        },
        SealError::Rejected => ApiError::ServiceUnavailable {
            detail: "The stored credentials cannot be decrypted. Enter the password again with PATCH to replace them.",
        },
    }
}

/// One structured line per change, for the audit trail. Owner and id only.
fn audit(action: &str, owner: &Owner, connection_id: &str, outcome: &str, request_id: &str) {
    tracing::info!(audit = true, action, owner = owner.as_str(), connection_id, outcome, request_id, "audit");
}
