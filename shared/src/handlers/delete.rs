//! `DELETE /connections/{id}`. Holds no key: deleting needs no secret.

use std::sync::Arc;

use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, Response};

use super::{audit, method_not_allowed, respond};
use crate::config::Settings;
use crate::http::{IfMatch, connection_id, empty_response, if_match, principal, request_id};
use crate::problem::ApiError;
use crate::store::{Connections, Expected};

pub struct DeleteHandler {
    /// Only the connections aggregate: a function holding no more than it uses links
    /// no other aggregate's DynamoDB code (see `runtime::connections`).
    pub store: Arc<dyn Connections>,
    pub settings: Settings,
}

impl DeleteHandler {
    pub async fn handle(&self, request: Request) -> Response<Body> {
        let request_id = request_id(&request);
        respond(self.delete(&request, &request_id).await, &request_id)
    }

    async fn delete(&self, request: &Request, request_id: &str) -> Result<Response<Body>, ApiError> {
        if request.method() != Method::DELETE {
            return Err(method_not_allowed(request));
        }
        let owner = principal(request, self.settings.identity)?;
        let id = connection_id(request)?;
        let precondition = if_match(request.headers());
        let expected = match &precondition {
            IfMatch::Absent | IfMatch::Any => Expected::Any,
            IfMatch::Versions(versions) => Expected::Versions(versions),
        };
        let limit = self.settings.max_connections_per_owner;
        self.store.delete(&owner, &id, expected).await.map_err(|e| e.into_api("", limit))?;
        audit("delete", &owner, &id.to_string(), "deleted", request_id);
        Ok(empty_response(StatusCode::NO_CONTENT))
    }
}
